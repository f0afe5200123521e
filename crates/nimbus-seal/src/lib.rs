//! Keys at rest: the platform's master key, which seals what must never be stored in the
//! clear (access-key secrets, auth signing keys) with AES-256-GCM, each sealed value bound to
//! a context (its id) so it cannot be moved to another.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::io::{self, Write};
use std::path::Path;

/// The master key's file in the data directory (32 random bytes, mode 0600).
pub const MASTER_KEY_FILE: &str = "master.key";

const NONCE_BYTES: usize = 12;

/// The key that seals secrets at rest.
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Read the master key at `path`, creating it (mode 0600) if there is none. Blocking.
    pub fn load_or_create(path: &Path) -> io::Result<MasterKey> {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} holds {} bytes, not a 32-byte master key; restore it from a backup",
                            path.display(),
                            bytes.len()
                        ),
                    )
                })?;
                return Ok(MasterKey::from_bytes(&key));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let key: [u8; 32] = rand::random();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(&key)?;
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(MasterKey::from_bytes(&key))
    }

    pub fn from_bytes(key: &[u8; 32]) -> MasterKey {
        MasterKey(Aes256Gcm::new(key.into()))
    }

    /// Encrypt `plaintext`, bound to `context`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        // Encryption into a Vec fails only past GCM's 64 GiB message limit.
        #[allow(clippy::expect_used, reason = "secrets are far below AES-GCM's limit")]
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM encryption of a short secret");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypt what [`MasterKey::seal`] sealed with the same `context`; `None` if it was sealed
    /// under another key or context, or altered.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_BYTES)?;
        let payload = Payload {
            msg: ciphertext,
            aad: context,
        };
        self.0.decrypt(Nonce::from_slice(nonce), payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let master = MasterKey::from_bytes(&[7; 32]);
        let sealed = master.seal(b"k1", b"secret");
        assert_eq!(master.open(b"k1", &sealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(master.open(b"k2", &sealed), None, "bound to its context");
        assert_eq!(MasterKey::from_bytes(&[8; 32]).open(b"k1", &sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(master.open(b"k1", &altered), None);
        assert_ne!(
            master.seal(b"k1", b"secret"),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn the_key_file_is_created_once_private_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let first = MasterKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(
            again.open(b"c", &first.seal(b"c", b"v")).as_deref(),
            Some(&b"v"[..])
        );
        std::fs::write(&path, b"short").unwrap();
        let error = MasterKey::load_or_create(&path).unwrap_err();
        assert!(
            error.to_string().contains("not a 32-byte master key"),
            "{error}"
        );
    }
}
