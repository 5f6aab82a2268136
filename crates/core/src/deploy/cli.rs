//! The SSH inputs as deploy-remote and rollback read them.
//!
//! Mirrors [`crate::input::SshArgs`] field for field and converts into it. It exists because clap's
//! derive reads `Option<Vec<String>>` with a list value parser as "many `String` values" and panics when
//! `host` is accessed ("Mismatch between definition and access of `host`"); spelling the type
//! `Option<::std::vec::Vec<String>>` makes clap keep the parsed list as one value. Drop this module once
//! `SshArgs::host` is spelled that way.

use std::time::Duration;

use clap::Args;

use crate::input::{list_value, parse_bool, parse_duration, SshArgs};
use crate::secret::Secret;

fn secret_key_value(s: &str) -> std::result::Result<Secret, String> {
    if !s.contains("-----BEGIN") && !s.contains('\n') && std::path::Path::new(s.trim()).is_file() {
        let text = std::fs::read_to_string(s.trim()).map_err(|e| format!("cannot read key file {s}: {e}"))?;
        return Ok(Secret::new(text));
    }
    Ok(Secret::new(s))
}

fn secret_value(s: &str) -> std::result::Result<Secret, String> {
    Ok(Secret::new(s))
}

/// SSH inputs (spec/actions.md, "SSH inputs").
#[derive(Debug, Clone, Args)]
pub struct SshInputs {
    /// One or more `[user@]host[:port]`, newline- or comma-separated
    #[arg(long, env = "INPUT_HOST", value_parser = list_value)]
    pub host: Option<::std::vec::Vec<String>>,

    /// Login user when `host` names none
    #[arg(long, env = "INPUT_USER", default_value = "root")]
    pub user: String,

    /// SSH port when `host` names none
    #[arg(long, env = "INPUT_PORT", default_value_t = 22)]
    pub port: u16,

    /// Private key text (OpenSSH or PEM); locally also a path to a key file
    #[arg(long, env = "INPUT_SSH_KEY", hide_env_values = true, value_parser = secret_key_value)]
    pub ssh_key: Option<Secret>,

    /// Passphrase of an encrypted key
    #[arg(long, env = "INPUT_SSH_KEY_PASSPHRASE", hide_env_values = true, value_parser = secret_value)]
    pub ssh_key_passphrase: Option<Secret>,

    /// known_hosts lines for the target hosts, as ssh-keyscan prints them (hashed or not)
    #[arg(long, env = "INPUT_KNOWN_HOSTS")]
    pub known_hosts: Option<String>,

    /// Alternative to known-hosts: `SHA256:…` as `ssh-keygen -lf` prints it
    #[arg(long, env = "INPUT_HOST_FINGERPRINT")]
    pub host_fingerprint: Option<String>,

    /// Skip host key checking (the only way to; prints a warning)
    #[arg(long, env = "INPUT_INSECURE_IGNORE_HOST_KEY", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub insecure_ignore_host_key: bool,

    /// How long to wait for the TCP connection and SSH handshake
    #[arg(long, env = "INPUT_CONNECT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Prefix privileged commands with `sudo -n`
    #[arg(long, env = "INPUT_SUDO", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub sudo: bool,
}

impl SshInputs {
    pub fn to_ssh_args(&self) -> SshArgs {
        SshArgs {
            host: self.host.clone(),
            user: self.user.clone(),
            port: self.port,
            ssh_key: self.ssh_key.clone(),
            ssh_key_passphrase: self.ssh_key_passphrase.clone(),
            known_hosts: self.known_hosts.clone(),
            host_fingerprint: self.host_fingerprint.clone(),
            insecure_ignore_host_key: self.insecure_ignore_host_key,
            connect_timeout: self.connect_timeout,
            sudo: self.sudo,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        ssh: SshInputs,
    }

    #[test]
    fn hosts_parse_as_one_list() {
        let t = T::try_parse_from(["t", "--host", "a@h1:2222, h2\nh3"]).unwrap();
        assert_eq!(t.ssh.to_ssh_args().host.unwrap(), vec!["a@h1:2222", "h2", "h3"]);
    }
}
