//! Envelope encryption of one secret version: the value is sealed (AES-256-GCM) under a fresh
//! data key of its own, and the data key is sealed under the master key; both bound to the
//! version's identity (app, name, number), so a sealed value moved to another secret or
//! version does not open. Re-wrapping under a new master key touches only the data key.
//!
//! Format: `1` ‖ the wrapped data key (60 bytes: nonce, key, tag) ‖ the sealed value (nonce,
//! ciphertext, tag).

use nimbus_seal::MasterKey;

const FORMAT: u8 = 1;
/// A 32-byte key sealed by [`MasterKey::seal`]: 12-byte nonce, 32 bytes, 16-byte tag.
const WRAPPED_BYTES: usize = 12 + 32 + 16;

/// What a sealed version is bound to.
pub(crate) fn context(app: &str, name: &str, version: u64) -> Vec<u8> {
    format!("nimbus secret\0{app}\0{name}\0{version}").into_bytes()
}

fn key_context(context: &[u8]) -> Vec<u8> {
    let mut bound = b"data key\0".to_vec();
    bound.extend_from_slice(context);
    bound
}

/// Seal `value` for `context` under a fresh data key wrapped by `master`.
pub(crate) fn seal(master: &MasterKey, context: &[u8], value: &[u8]) -> Vec<u8> {
    let data_key: [u8; 32] = rand::random();
    let wrapped = master.seal(&key_context(context), &data_key);
    let sealed = MasterKey::from_bytes(&data_key).seal(context, value);
    let mut out = Vec::with_capacity(1 + wrapped.len() + sealed.len());
    out.push(FORMAT);
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&sealed);
    out
}

fn split(sealed: &[u8]) -> Option<(&[u8], &[u8])> {
    let (format, rest) = sealed.split_first()?;
    if *format != FORMAT {
        return None;
    }
    rest.split_at_checked(WRAPPED_BYTES)
}

fn data_key(master: &MasterKey, context: &[u8], wrapped: &[u8]) -> Option<MasterKey> {
    let key = master.open(&key_context(context), wrapped)?;
    let key: [u8; 32] = key.as_slice().try_into().ok()?;
    Some(MasterKey::from_bytes(&key))
}

/// The value [`seal`] sealed for `context`; `None` if it was sealed under another master key
/// or for another context, or altered.
pub(crate) fn open(master: &MasterKey, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let (wrapped, value) = split(sealed)?;
    data_key(master, context, wrapped)?.open(context, value)
}

/// The same sealed value with its data key wrapped under `new` instead of `old`.
pub(crate) fn rewrap(
    old: &MasterKey,
    new: &MasterKey,
    context: &[u8],
    sealed: &[u8],
) -> Option<Vec<u8>> {
    let (wrapped, value) = split(sealed)?;
    let key = old.open(&key_context(context), wrapped)?;
    let mut out = Vec::with_capacity(sealed.len());
    out.push(FORMAT);
    out.extend_from_slice(&new.seal(&key_context(context), &key));
    out.extend_from_slice(value);
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_master_key_and_identity() {
        let master = MasterKey::from_bytes(&[1; 32]);
        let here = context("shop", "stripe", 1);
        let sealed = seal(&master, &here, b"sk_live_123");
        assert_eq!(open(&master, &here, &sealed).unwrap(), b"sk_live_123");
        assert!(!sealed.windows(11).any(|w| w == b"sk_live_123"));
        assert_eq!(open(&master, &context("shop", "stripe", 2), &sealed), None);
        assert_eq!(open(&master, &context("blog", "stripe", 1), &sealed), None);
        assert_eq!(open(&MasterKey::from_bytes(&[2; 32]), &here, &sealed), None);
        for at in [0, 1, 30, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[at] ^= 1;
            assert_eq!(open(&master, &here, &altered), None, "byte {at} altered");
        }
        assert_eq!(open(&master, &here, &sealed[..40]), None);
        assert_eq!(open(&master, &here, &[]), None);
    }

    #[test]
    fn rewrapping_moves_the_data_key_to_the_new_master_key() {
        let (old, new) = (
            MasterKey::from_bytes(&[1; 32]),
            MasterKey::from_bytes(&[2; 32]),
        );
        let here = context("shop", "stripe", 4);
        let sealed = seal(&old, &here, b"value");
        let moved = rewrap(&old, &new, &here, &sealed).unwrap();
        assert_eq!(open(&new, &here, &moved).unwrap(), b"value");
        assert_eq!(open(&old, &here, &moved), None);
        assert_eq!(
            moved[1 + WRAPPED_BYTES..],
            sealed[1 + WRAPPED_BYTES..],
            "the value itself is not re-encrypted"
        );
        assert_eq!(
            rewrap(&new, &old, &here, &sealed),
            None,
            "needs the key it was under"
        );
    }
}
