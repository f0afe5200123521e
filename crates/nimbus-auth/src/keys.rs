//! An app's token signing keys: ES256 (P-256) key pairs generated with `ring`, the private
//! half stored sealed under the platform's master key (bound to the app and the key id), the
//! public halves published as a JWKS. Rotation puts a new key in front; the old one stops
//! signing but stays published until every token it signed has expired.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use nimbus_seal::MasterKey;
use nimbus_store::auth::SigningKeyRecord;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use std::sync::Arc;
use std::time::Duration;

/// What binds a sealed key to its app and id.
fn context(app: &str, kid: &str) -> Vec<u8> {
    format!("nimbus-auth-signing-key/{app}/{kid}").into_bytes()
}

/// A fresh ES256 key for `app`, sealed.
pub fn generate(app: &str, master: &MasterKey, now_ms: u64) -> Result<SigningKeyRecord, String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "generating a P-256 key failed".to_owned())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "a generated P-256 key does not parse".to_owned())?;
    // An uncompressed point: 0x04 ‖ x ‖ y.
    let point = pair.public_key().as_ref();
    let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
        return Err("a P-256 public key is not 65 bytes".into());
    };
    let kid = uuid::Uuid::new_v4().to_string();
    let jwk = serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
        "key_ops": ["verify"],
    });
    Ok(SigningKeyRecord {
        sealed_private: master.seal(&context(app, &kid), pkcs8.as_ref()),
        kid,
        algorithm: "ES256".into(),
        public_jwk: jwk.to_string(),
        created_ms: now_ms,
        retired_ms: None,
    })
}

/// The key that signs.
pub struct Signer {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: EncodingKey,
}

/// An app's keys in use: the signer, every published key for verification, and the JWKS.
pub struct KeyRing {
    pub signer: Signer,
    pub verifiers: Vec<(String, DecodingKey)>,
    pub jwks: Arc<[u8]>,
}

impl KeyRing {
    /// The ring of `records` (newest first; the first signs).
    pub fn open(
        app: &str,
        records: &[SigningKeyRecord],
        master: &MasterKey,
    ) -> Result<KeyRing, String> {
        let first = records.first().ok_or("the app has no signing key")?;
        let der = master
            .open(&context(app, &first.kid), &first.sealed_private)
            .ok_or_else(|| {
                format!(
                    "signing key {} of app {app:?} cannot be opened with this data directory's \
                     master key; restore the master key or rotate the app's keys",
                    first.kid
                )
            })?;
        let signer = Signer {
            kid: first.kid.clone(),
            algorithm: Algorithm::ES256,
            key: EncodingKey::from_ec_der(&der),
        };
        let mut verifiers = Vec::new();
        let mut published = Vec::new();
        for record in records {
            let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk)
                .map_err(|e| format!("signing key {}: {e}", record.kid))?;
            let (Some(x), Some(y)) = (
                jwk.get("x").and_then(serde_json::Value::as_str),
                jwk.get("y").and_then(serde_json::Value::as_str),
            ) else {
                return Err(format!("signing key {} has no coordinates", record.kid));
            };
            let key = DecodingKey::from_ec_components(x, y)
                .map_err(|e| format!("signing key {}: {e}", record.kid))?;
            verifiers.push((record.kid.clone(), key));
            published.push(jwk);
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
            .map_err(|e| e.to_string())?;
        Ok(KeyRing {
            signer,
            verifiers,
            jwks: jwks.into(),
        })
    }

    pub fn verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifiers
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, key)| key)
    }
}

/// `records` after a rotation at `now_ms`: a new key in front, the current one retired, and
/// keys retired longer than `keep` ago (the longest a token lives, plus leeway) dropped.
pub fn rotated(
    app: &str,
    records: &[SigningKeyRecord],
    master: &MasterKey,
    now_ms: u64,
    keep: Duration,
) -> Result<Vec<SigningKeyRecord>, String> {
    let mut next = vec![generate(app, master, now_ms)?];
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    for record in records {
        let mut record = record.clone();
        let retired = *record.retired_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(retired) <= keep_ms {
            next.push(record);
        }
    }
    Ok(next)
}

/// `records` with every private key re-sealed from `old` to `new` (a master-key rotation),
/// and how many were moved; keys already under `new` are left as they are.
pub fn resealed(
    app: &str,
    records: &[SigningKeyRecord],
    old: &MasterKey,
    new: &MasterKey,
) -> Result<(Vec<SigningKeyRecord>, usize), String> {
    let mut moved = 0;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let context = context(app, &record.kid);
        let mut record = record.clone();
        match old.open(&context, &record.sealed_private) {
            Some(private) => {
                record.sealed_private = new.seal(&context, &private);
                moved += 1;
            }
            None if new.open(&context, &record.sealed_private).is_some() => {}
            None => {
                return Err(format!(
                    "signing key {} of app {app:?} opens under neither key",
                    record.kid
                ));
            }
        }
        out.push(record);
    }
    Ok((out, moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resealed_keys_open_under_the_new_key_only() {
        let (old, new) = (
            MasterKey::from_bytes(&[1; 32]),
            MasterKey::from_bytes(&[2; 32]),
        );
        let records = vec![
            generate("shop", &old, 1).unwrap(),
            generate("shop", &old, 2).unwrap(),
        ];
        let (moved, count) = resealed("shop", &records, &old, &new).unwrap();
        assert_eq!(count, 2);
        KeyRing::open("shop", &moved, &new).unwrap();
        assert!(KeyRing::open("shop", &moved, &old).is_err());
        let (again, count) = resealed("shop", &moved, &old, &new).unwrap();
        assert_eq!(
            (again, count),
            (moved.clone(), 0),
            "already moved: left as they are"
        );
        let stranger = MasterKey::from_bytes(&[3; 32]);
        assert!(resealed("shop", &moved, &stranger, &stranger).is_err());
    }

    #[test]
    fn keys_sign_verify_and_rotate() {
        let master = MasterKey::from_bytes(&[9; 32]);
        let first = generate("shop", &master, 1_000).unwrap();
        let ring = KeyRing::open("shop", std::slice::from_ref(&first), &master).unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(ring.signer.kid.clone());
        let claims = serde_json::json!({"sub": "u1", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(&header, &claims, &ring.signer.key).unwrap();
        let validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            ring.verifier(&first.kid).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "u1");
        let jwks: serde_json::Value = serde_json::from_slice(&ring.jwks).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], first.kid.as_str());
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "no private part published"
        );

        // Bound to its app: another app's ring cannot open it.
        assert!(KeyRing::open("blog", std::slice::from_ref(&first), &master).is_err());
        assert!(
            KeyRing::open(
                "shop",
                std::slice::from_ref(&first),
                &MasterKey::from_bytes(&[8; 32])
            )
            .is_err()
        );

        let keep = Duration::from_secs(3600);
        let two = rotated("shop", std::slice::from_ref(&first), &master, 2_000, keep).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].kid, first.kid);
        assert_eq!(two[1].retired_ms, Some(2_000));
        let ring = KeyRing::open("shop", &two, &master).unwrap();
        assert_ne!(ring.signer.kid, first.kid, "the new key signs");
        assert!(
            ring.verifier(&first.kid).is_some(),
            "the old one still verifies"
        );
        // Once the retired key's tokens have expired, the next rotation drops it.
        let later = rotated("shop", &two, &master, 2_000 + 3_600_001, keep).unwrap();
        assert_eq!(later.len(), 2);
        assert!(later.iter().all(|k| k.kid != first.kid));
    }
}
