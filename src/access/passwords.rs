//! Stored passwords: argon2id (the `granary hash-password` output, a PHC string) and
//! bcrypt (what `htpasswd -B` writes), so an existing htpasswd file can be used.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A password hash from the configuration or an htpasswd file.
#[derive(Clone)]
pub enum StoredPassword {
    Argon2(String),
    Bcrypt(String),
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Argon2(_) => "Argon2(<redacted>)",
            Self::Bcrypt(_) => "Bcrypt(<redacted>)",
        })
    }
}

/// A hash that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswordHashError(String);

impl StoredPassword {
    /// Recognizes a stored hash by its form: `$argon2id$…` or `$2a$`/`$2b$`/`$2y$…`.
    ///
    /// # Errors
    /// Any other form (plain text, MD5 or SHA-1 htpasswd entries are refused).
    pub fn parse(hash: &str) -> Result<Self, PasswordHashError> {
        if hash.starts_with("$argon2") {
            PasswordHash::new(hash).map_err(|e| PasswordHashError(format!("argon2: {e}")))?;
            Ok(Self::Argon2(hash.to_owned()))
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            Ok(Self::Bcrypt(hash.to_owned()))
        } else {
            Err(PasswordHashError(
                "only argon2id (`granary hash-password`) and bcrypt (`htpasswd -B`) hashes are accepted"
                    .to_owned(),
            ))
        }
    }

    /// Whether `password` matches (constant time, by the algorithms' own checks).
    #[must_use]
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Self::Argon2(hash) => PasswordHash::new(hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            }),
            Self::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// An argon2id PHC string for `password` (`granary hash-password`).
///
/// # Errors
/// Never in practice (the parameters are the defaults).
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| PasswordHashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordHashError(e.to_string()))
}

/// The work of one verification, for unknown users (so they cost the same).
pub(super) fn burn() {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("granary").unwrap_or_default());
    let _ = StoredPassword::Argon2(hash.clone()).verify("not it");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_hashes_verify() {
        let hash = hash_password("correct horse").expect("hash");
        let stored = StoredPassword::parse(&hash).expect("argon2");
        assert!(stored.verify("correct horse"));
        assert!(!stored.verify("wrong"));
        let bcrypt = bcrypt::hash("battery", 4).expect("bcrypt");
        let stored = StoredPassword::parse(&bcrypt).expect("bcrypt form");
        assert!(stored.verify("battery"));
        assert!(!stored.verify("staple"));
        assert!(StoredPassword::parse("plaintext").is_err());
        assert!(StoredPassword::parse("{SHA}abc").is_err());
        assert!(!format!("{stored:?}").contains("$2"));
    }
}
