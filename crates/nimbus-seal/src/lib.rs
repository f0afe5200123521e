//! Keys at rest: the platform's master key, which seals what must never be stored in the
//! clear (access-key secrets, auth signing keys) with AES-256-GCM, each sealed value bound to
//! a context (its id) so it cannot be moved to another.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::io::{self, Write};
use std::path::Path;

/// The master key's file in the data directory (32 random bytes, mode 0600).
pub const MASTER_KEY_FILE: &str = "master.key";
/// Beside the data: a value sealed under the master key when it was first used, so a start
/// with another key is refused before anything is sealed under the wrong one.
pub const CHECK_FILE: &str = "master.check";
/// The environment variable an operator may put the master key in (64 hex digits).
pub const MASTER_KEY_ENV: &str = "NIMBUS_MASTER_KEY";
/// While a rotation is under way: the new key, staged beside `master.key`.
pub const NEXT_KEY_FILE: &str = "master.key.next";
/// Present while a rotation is under way: the data directory holds values under both keys,
/// so nothing may start until the rotation is finished.
pub const ROTATING_FILE: &str = "master.rotating";

const CHECK_CONTEXT: &[u8] = b"nimbus master key check";
const CHECK_PLAINTEXT: &[u8] = b"this data directory's master key";

/// Where the master key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// `master.key` in the data directory, created at first start.
    DataDir,
    /// A file the operator keeps elsewhere: 32 raw bytes or 64 hex digits.
    File(std::path::PathBuf),
    /// The key itself (from [`MASTER_KEY_ENV`]).
    Bytes([u8; 32]),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::DataDir => f.write_str("DataDir"),
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            KeySource::Bytes(_) => f.write_str("Bytes(..)"),
        }
    }
}

/// A key as an operator writes it: 32 raw bytes, or 64 hex digits (surrounding white space
/// ignored).
pub fn parse_key(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The master key of the data directory `dir`, from `source`, checked against the value
/// sealed at its first use (written now if there is none). Refuses — changing nothing — a key
/// that is not the one the directory's data was sealed with, and a missing `master.key` when
/// the data says there was one. Blocking.
pub fn open_for_data_dir(dir: &Path, source: &KeySource) -> io::Result<MasterKey> {
    let rotating = dir.join(ROTATING_FILE);
    if rotating.exists() {
        return Err(invalid(format!(
            "a master-key rotation of this data directory was interrupted ({} exists): run \
             `nimbus master-key rotate` again, with the same options, to finish it",
            rotating.display()
        )));
    }
    let check_path = dir.join(CHECK_FILE);
    let check = read_optional(&check_path)?;
    let key = load(dir, source, check.is_some())?;
    match check {
        Some(sealed) => {
            if !opens_check(&key, &sealed) {
                return Err(invalid(format!(
                    "the master key is not the one this data directory's secrets and keys were \
                     sealed with ({} does not open with it); start with the right key — nothing \
                     has been changed",
                    check_path.display()
                )));
            }
        }
        None => write_new(&check_path, &key.seal(CHECK_CONTEXT, CHECK_PLAINTEXT))?,
    }
    Ok(key)
}

fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn opens_check(key: &MasterKey, sealed: &[u8]) -> bool {
    key.open(CHECK_CONTEXT, sealed).as_deref() == Some(CHECK_PLAINTEXT)
}

/// A master-key rotation of a data directory, begun: the new key chosen (and, for a key kept
/// in the data directory, staged in [`NEXT_KEY_FILE`]) and [`ROTATING_FILE`] written, so no
/// server starts while values are sealed under both keys. The caller re-seals every value
/// from `old` to `new` — idempotently, leaving values already under `new` — then calls
/// [`Rotation::commit`]. Begun again after a crash, it resumes with the same new key.
pub struct Rotation {
    pub old: std::sync::Arc<MasterKey>,
    pub new: std::sync::Arc<MasterKey>,
    dir: std::path::PathBuf,
    source: KeySource,
}

/// Begin (or resume) rotating `dir`'s master key from the one `source` gives to `new` — for a
/// key in the data directory, a fresh random key when `None`; a key kept elsewhere needs the
/// new one given. Blocking.
pub fn begin_rotation(
    dir: &Path,
    source: &KeySource,
    new: Option<[u8; 32]>,
) -> io::Result<Rotation> {
    let check_path = dir.join(CHECK_FILE);
    let check = read_optional(&check_path)?;
    let old = load(dir, source, check.is_some())?;
    let new = match source {
        KeySource::DataDir => {
            let next = dir.join(NEXT_KEY_FILE);
            match (read_optional(&next)?, new) {
                (Some(staged), given) => {
                    let staged = <[u8; 32]>::try_from(staged.as_slice())
                        .map_err(|_| invalid(format!("{} is not a 32-byte key", next.display())))?;
                    if given.is_some_and(|given| given != staged) {
                        return Err(invalid(format!(
                            "a rotation to another key is under way ({}): finish it first \
                             (run again without a new key)",
                            next.display()
                        )));
                    }
                    staged
                }
                (None, given) => {
                    let key = given.unwrap_or_else(rand::random);
                    write_new(&next, &key)?;
                    key
                }
            }
        }
        KeySource::File(_) | KeySource::Bytes(_) => new.ok_or_else(|| {
            invalid(
                "the master key is kept outside the data directory, so the new one is too: \
                 give it with --new-key-file"
                    .into(),
            )
        })?,
    };
    let new = MasterKey::from_bytes(&new);
    if let Some(sealed) = &check
        && !opens_check(&old, sealed)
        && !opens_check(&new, sealed)
    {
        return Err(invalid(format!(
            "{} opens with neither the current key nor the new one: give the key this data \
             directory was sealed with — nothing has been changed",
            check_path.display()
        )));
    }
    let rotating = dir.join(ROTATING_FILE);
    if !rotating.exists() {
        write_new(&rotating, b"")?;
    }
    Ok(Rotation {
        old: old.into(),
        new: new.into(),
        dir: dir.to_owned(),
        source: source.clone(),
    })
}

impl Rotation {
    /// Every value is under the new key: seal the check value with it, make it the data
    /// directory's key (for a key kept there) and end the rotation. Blocking.
    pub fn commit(self) -> io::Result<()> {
        let check = self.dir.join(CHECK_FILE);
        let staged = self.dir.join(format!("{CHECK_FILE}.next"));
        let _ = std::fs::remove_file(&staged);
        write_new(&staged, &self.new.seal(CHECK_CONTEXT, CHECK_PLAINTEXT))?;
        std::fs::rename(&staged, &check)?;
        if let KeySource::DataDir = self.source {
            let next = self.dir.join(NEXT_KEY_FILE);
            if next.exists() {
                std::fs::rename(&next, self.dir.join(MASTER_KEY_FILE))?;
            }
        }
        std::fs::File::open(&self.dir)?.sync_all()?;
        std::fs::remove_file(self.dir.join(ROTATING_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// The key `source` gives; `sealed_before` says the directory's data was sealed already (so a
/// missing `master.key` is a loss, not a first start).
fn load(dir: &Path, source: &KeySource, sealed_before: bool) -> io::Result<MasterKey> {
    let check_path = dir.join(CHECK_FILE);
    let check = sealed_before.then_some(());
    let key = match source {
        KeySource::DataDir => {
            let path = dir.join(MASTER_KEY_FILE);
            if check.is_some() && !path.exists() {
                return Err(invalid(format!(
                    "{} is missing, but this data directory holds values sealed with a master key \
                     ({}): restore the key from a backup, or give it with --master-key-file or \
                     {MASTER_KEY_ENV}",
                    path.display(),
                    check_path.display()
                )));
            }
            MasterKey::load_or_create(&path)?
        }
        KeySource::File(path) => {
            let bytes = std::fs::read(path).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("read the master key {}: {error}", path.display()),
                )
            })?;
            let key = parse_key(&bytes).ok_or_else(|| {
                invalid(format!(
                    "{} is not a master key: it must hold 32 bytes or 64 hex digits",
                    path.display()
                ))
            })?;
            MasterKey::from_bytes(&key)
        }
        KeySource::Bytes(key) => MasterKey::from_bytes(key),
    };
    Ok(key)
}

/// Write `bytes` to a new file at `path` (0600), durably.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

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
        write_new(path, &key)?;
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
    fn a_rotation_resumes_with_its_key_and_nothing_starts_until_it_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let old = open_for_data_dir(dir.path(), &KeySource::DataDir).unwrap();
        let sealed = old.seal(b"c", b"v");

        let begun = begin_rotation(dir.path(), &KeySource::DataDir, None).unwrap();
        assert_eq!(begun.old.open(b"c", &sealed).as_deref(), Some(&b"v"[..]));
        let moved = begun.new.seal(b"c", b"v");
        drop(begun); // interrupted
        let error = open_for_data_dir(dir.path(), &KeySource::DataDir).unwrap_err();
        assert!(error.to_string().contains("interrupted"), "{error}");
        // Resumed: the same new key; another one is refused while this one is under way.
        assert!(begin_rotation(dir.path(), &KeySource::DataDir, Some([3; 32])).is_err());
        let resumed = begin_rotation(dir.path(), &KeySource::DataDir, None).unwrap();
        assert_eq!(resumed.new.open(b"c", &moved).as_deref(), Some(&b"v"[..]));
        resumed.commit().unwrap();

        let now = open_for_data_dir(dir.path(), &KeySource::DataDir).unwrap();
        assert_eq!(now.open(b"c", &moved).as_deref(), Some(&b"v"[..]));
        assert_eq!(now.open(b"c", &sealed), None, "the old key is gone");
        assert!(!dir.path().join(ROTATING_FILE).exists());
        assert!(!dir.path().join(NEXT_KEY_FILE).exists());

        // A key kept elsewhere: the new one must be given, and the old one must be right.
        let outside = tempfile::tempdir().unwrap();
        let first = KeySource::Bytes([1; 32]);
        open_for_data_dir(outside.path(), &first).unwrap();
        assert!(begin_rotation(outside.path(), &first, None).is_err());
        assert!(begin_rotation(outside.path(), &KeySource::Bytes([7; 32]), Some([2; 32])).is_err());
        assert!(
            !outside.path().join(ROTATING_FILE).exists(),
            "a refused rotation changes nothing"
        );
        begin_rotation(outside.path(), &first, Some([2; 32]))
            .unwrap()
            .commit()
            .unwrap();
        assert!(open_for_data_dir(outside.path(), &first).is_err());
        open_for_data_dir(outside.path(), &KeySource::Bytes([2; 32])).unwrap();
    }

    #[test]
    fn a_data_directory_refuses_any_key_but_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_for_data_dir(dir.path(), &KeySource::DataDir).unwrap();
        assert!(dir.path().join(CHECK_FILE).exists());
        let again = open_for_data_dir(dir.path(), &KeySource::DataDir).unwrap();
        assert_eq!(
            again.open(b"c", &first.seal(b"c", b"v")).as_deref(),
            Some(&b"v"[..])
        );

        let error = open_for_data_dir(dir.path(), &KeySource::Bytes([9; 32])).unwrap_err();
        assert!(error.to_string().contains("not the one"), "{error}");
        let other = dir.path().join("other.key");
        std::fs::write(&other, hex::encode([9u8; 32]) + "\n").unwrap();
        let error = open_for_data_dir(dir.path(), &KeySource::File(other)).unwrap_err();
        assert!(
            error.to_string().contains("nothing has been changed"),
            "{error}"
        );

        let key = std::fs::read(dir.path().join(MASTER_KEY_FILE)).unwrap();
        let elsewhere = dir.path().join("kept-elsewhere.key");
        std::fs::write(&elsewhere, hex::encode(&key)).unwrap();
        std::fs::remove_file(dir.path().join(MASTER_KEY_FILE)).unwrap();
        let error = open_for_data_dir(dir.path(), &KeySource::DataDir).unwrap_err();
        assert!(error.to_string().contains("is missing"), "{error}");
        assert!(
            !dir.path().join(MASTER_KEY_FILE).exists(),
            "no new key is made over sealed data"
        );
        let moved = open_for_data_dir(dir.path(), &KeySource::File(elsewhere)).unwrap();
        assert_eq!(
            moved.open(b"c", &first.seal(b"c", b"v")).as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn keys_are_read_raw_or_in_hex() {
        assert_eq!(parse_key(&[1; 32]), Some([1; 32]));
        assert_eq!(
            parse_key(format!(" {}\n", hex::encode([2u8; 32])).as_bytes()),
            Some([2; 32])
        );
        assert_eq!(parse_key(b"short"), None);
        assert_eq!(parse_key(hex::encode([2u8; 31]).as_bytes()), None);
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
