//! Passwords: hashed with Argon2id at OWASP's recommended parameters (19 MiB, 2 passes, one
//! lane), checked against Argon2 PHC strings or imported bcrypt hashes (GoTrue's and Auth0's),
//! which are rehashed with Argon2id on the next successful sign-in. Hashing is slow by design:
//! callers run it on the blocking pool, a bounded number at once.

use crate::error::ApiError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id memory in KiB, passes and lanes: OWASP's first recommendation.
pub const MEMORY_KIB: u32 = 19_456;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

/// The longest password accepted, as GoTrue (bcrypt's limit, kept so hashes can move back).
pub const MAX_LENGTH: usize = 72;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` under a fresh random salt.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// How a password compared with a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Wrong,
    /// It matches; `rehash` when the stored hash is not Argon2id at the current parameters.
    Right {
        rehash: bool,
    },
}

/// Compare `password` with `stored` (a PHC string or a bcrypt hash) in constant time.
pub fn verify(password: &str, stored: &str) -> Checked {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Checked::Right { rehash: true },
            _ => Checked::Wrong,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Checked::Wrong;
    };
    if argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Checked::Wrong;
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed)
            .is_ok_and(|p| p.m_cost() == MEMORY_KIB && p.t_cost() == PASSES && p.p_cost() == LANES);
    Checked::Right { rehash: !current }
}

/// Whether `stored` is a hash nimbus can check: what an import must bring.
pub fn is_supported_hash(stored: &str) -> bool {
    let bcrypt = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| stored.starts_with(prefix))
        && stored.len() == 60;
    bcrypt
        || PasswordHash::new(stored).is_ok_and(|h| {
            matches!(h.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d")
                && h.salt.is_some()
                && h.hash.is_some()
                && Params::try_from(&h).is_ok()
        })
}

/// The character classes a password rule can require.
pub const CLASSES: [(&str, &str); 4] = [
    ("lowercase", "abcdefghijklmnopqrstuvwxyz"),
    ("uppercase", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("digits", "0123456789"),
    ("symbols", "!@#$%^&*()_+-=[]{};'\\:\"|<>?,./`~"),
];

/// Check `password` against the app's rules, as GoTrue words its refusals.
pub fn check_strength(
    password: &str,
    min_length: usize,
    required: &[String],
) -> Result<(), ApiError> {
    if password.len() > MAX_LENGTH {
        return Err(ApiError::validation(format!(
            "Password cannot be longer than {MAX_LENGTH} characters"
        )));
    }
    let mut reasons = Vec::new();
    let mut messages = Vec::new();
    if password.chars().count() < min_length {
        reasons.push("length");
        messages.push(format!(
            "Password should be at least {min_length} characters."
        ));
    }
    let sets: Vec<&str> = required
        .iter()
        .filter_map(|class| CLASSES.iter().find(|(name, _)| name == class))
        .map(|(_, set)| *set)
        .collect();
    if sets
        .iter()
        .any(|set| !password.chars().any(|c| set.contains(c)))
    {
        reasons.push("characters");
        messages.push(format!(
            "Password should contain at least one character of each: {}.",
            sets.join(", ")
        ));
    }
    if reasons.is_empty() {
        return Ok(());
    }
    let mut error = ApiError::unprocessable("weak_password", messages.join(" "));
    error.reasons = reasons;
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_hashes_verify_and_do_not_need_rehashing() {
        let stored = hash("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_eq!(
            verify("correct horse", &stored),
            Checked::Right { rehash: false }
        );
        assert_eq!(verify("correct horsf", &stored), Checked::Wrong);
        assert_ne!(hash("correct horse").unwrap(), stored, "salted");
        assert!(is_supported_hash(&stored));
    }

    #[test]
    fn imported_hashes_verify_and_ask_for_rehashing() {
        let bcrypt = bcrypt::hash("hunter22", 4).unwrap();
        assert!(is_supported_hash(&bcrypt));
        assert_eq!(verify("hunter22", &bcrypt), Checked::Right { rehash: true });
        assert_eq!(verify("hunter23", &bcrypt), Checked::Wrong);
        // Argon2id at weaker parameters still verifies, then is upgraded.
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
        .unwrap()
        .to_string();
        assert_eq!(verify("pw", &weak), Checked::Right { rehash: true });
        for junk in ["", "plain", "$2b$short", "$argon2id$garbage", "$md5$x"] {
            assert_eq!(verify("pw", junk), Checked::Wrong, "{junk}");
            assert!(!is_supported_hash(junk), "{junk}");
        }
    }

    #[test]
    fn strength_rules_name_their_reasons() {
        let all = ["lowercase", "uppercase", "digits"].map(String::from);
        assert!(check_strength("Abcdef12", 8, &all).is_ok());
        let short = check_strength("Ab1", 8, &all).unwrap_err();
        assert_eq!(
            (short.code, short.reasons.clone()),
            ("weak_password", vec!["length"])
        );
        assert_eq!(short.message, "Password should be at least 8 characters.");
        let classes = check_strength("abcdefgh", 8, &all).unwrap_err();
        assert_eq!(classes.reasons, ["characters"]);
        assert!(
            classes.message.contains("0123456789"),
            "{}",
            classes.message
        );
        let long = check_strength(&"a".repeat(73), 8, &[]).unwrap_err();
        assert_eq!(long.code, "validation_failed");
        assert!(
            check_strength("ünïcødé", 7, &[]).is_ok(),
            "length counts characters"
        );
    }
}
