//! The SSH executor on `ssh2` (being written: API fixed, body lands next).

use crate::cmd::Cmd;
use crate::error::{Error, Result};
use crate::exec::{Executor, Output};
use crate::input::{HostSpec, SshConfig};

/// One verified, authenticated SSH connection to one host, reused for every command of a step.
pub struct SshExecutor {
    label: String,
    sudo: bool,
}

impl SshExecutor {
    /// Connect, verify the host key by the config's policy, and log in with the key.
    pub fn connect(host: &HostSpec, cfg: &SshConfig) -> Result<SshExecutor> {
        let _ = (host, cfg);
        Err(Error::failed("SSH executor not written yet"))
    }
}

impl Executor for SshExecutor {
    fn label(&self) -> &str {
        &self.label
    }
    fn sudo(&self) -> bool {
        self.sudo
    }
    fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<Output> {
        let _ = (cmd, stdin);
        Err(Error::failed("SSH executor not written yet"))
    }
}
