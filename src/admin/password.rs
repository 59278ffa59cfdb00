//! Password hashing for users and relay accounts: argon2id with the OWASP parameters
//! (19 MiB, two passes, one lane), the argon2 crate's defaults.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand_core::OsRng;

use crate::model::Secret;

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password is shorter than {MIN_LENGTH} characters")]
    TooShort,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Hashes a password into a PHC string. Slow by design: call it off async threads.
pub fn hash(password: &Secret) -> Result<String, PasswordError> {
    if password.expose().chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `password` matches a stored PHC hash. A malformed hash matches nothing.
pub fn verify(hash: &str, password: &Secret) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash(&Secret::new("correct horse")).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify(&h, &Secret::new("correct horse")));
        assert!(!verify(&h, &Secret::new("wrong horse")));
        assert!(!verify("not a hash", &Secret::new("correct horse")));
        assert_eq!(hash(&Secret::new("short")), Err(PasswordError::TooShort));
    }
}
