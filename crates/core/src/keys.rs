//! Private key inspection before any connection: is it a private key at all, and is it encrypted?
//!
//! Seed lesson: a passphrase-protected deploy key hung the pipeline at a prompt nobody could answer.
//! We read the key ourselves and refuse an encrypted key without a passphrase with a clear message.

use base64::Engine;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----`
    OpenSsh { encrypted: bool },
    /// `-----BEGIN RSA/EC/DSA PRIVATE KEY-----` or PKCS#8 `PRIVATE KEY` / `ENCRYPTED PRIVATE KEY`
    Pem { encrypted: bool },
}

impl KeyFormat {
    pub fn encrypted(self) -> bool {
        match self {
            KeyFormat::OpenSsh { encrypted } | KeyFormat::Pem { encrypted } => encrypted,
        }
    }
}

/// Find the format of a private key given as text.
pub fn key_format(text: &str) -> Result<KeyFormat> {
    let text = text.trim();
    if text.starts_with("ssh-") || text.starts_with("ecdsa-") {
        return Err(Error::bad_input("`ssh-key` holds a public key, not a private key")
            .hint("pass the private key file (e.g. ~/.ssh/id_ed25519, without .pub) and put the public key in the server's authorized_keys"));
    }
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        let raw = base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| {
            Error::bad_input("`ssh-key` is not a valid OpenSSH private key (its base64 does not decode)")
                .hint("paste the whole key file, including the BEGIN and END lines, with its line breaks")
        })?;
        let magic = b"openssh-key-v1\0";
        if !raw.starts_with(magic) || raw.len() < magic.len() + 4 {
            return Err(Error::bad_input("`ssh-key` is not a valid OpenSSH private key")
                .hint("paste the whole key file, including the BEGIN and END lines"));
        }
        let rest = &raw[magic.len()..];
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let cipher = rest.get(4..4 + n).unwrap_or(b"");
        return Ok(KeyFormat::OpenSsh { encrypted: cipher != b"none" });
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Ok(KeyFormat::Pem { encrypted: true });
    }
    if text.contains("PRIVATE KEY-----") {
        return Ok(KeyFormat::Pem { encrypted: text.contains("Proc-Type: 4,ENCRYPTED") });
    }
    Err(Error::bad_input("`ssh-key` is not a private key in OpenSSH or PEM format")
        .hint("paste the whole key file, including the `-----BEGIN … PRIVATE KEY-----` line"))
}

/// Refuse an encrypted key without passphrase (exit 2) before anything connects.
pub fn check_private_key(text: &str, has_passphrase: bool) -> Result<KeyFormat> {
    let format = key_format(text)?;
    if format.encrypted() && !has_passphrase {
        return Err(Error::bad_input("the SSH key is encrypted with a passphrase and no `ssh-key-passphrase` was given")
            .hint("pass the passphrase as `ssh-key-passphrase: ${{ secrets.DEPLOY_KEY_PASSPHRASE }}`, or use a deploy key without passphrase (`ssh-keygen -p -N ''`)"));
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssh(cipher: &str) -> String {
        let mut raw = b"openssh-key-v1\0".to_vec();
        raw.extend_from_slice(&(cipher.len() as u32).to_be_bytes());
        raw.extend_from_slice(cipher.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{b64}\n-----END OPENSSH PRIVATE KEY-----\n")
    }

    #[test]
    fn detects_encrypted_openssh_keys() {
        assert_eq!(key_format(&openssh("none")).unwrap(), KeyFormat::OpenSsh { encrypted: false });
        assert_eq!(key_format(&openssh("aes256-ctr")).unwrap(), KeyFormat::OpenSsh { encrypted: true });
        let e = check_private_key(&openssh("aes256-ctr"), false).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("encrypted"));
        assert!(check_private_key(&openssh("aes256-ctr"), true).is_ok());
    }

    #[test]
    fn detects_encrypted_pem_keys() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----";
        assert!(key_format(pem).unwrap().encrypted());
        assert!(key_format("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA\n-----END ENCRYPTED PRIVATE KEY-----")
            .unwrap()
            .encrypted());
        assert!(!key_format("-----BEGIN RSA PRIVATE KEY-----\nAA\n-----END RSA PRIVATE KEY-----").unwrap().encrypted());
    }

    #[test]
    fn refuses_public_keys_and_junk() {
        assert!(key_format("ssh-ed25519 AAAA user@host").unwrap_err().message.contains("public key"));
        assert!(key_format("hello").is_err());
    }
}
