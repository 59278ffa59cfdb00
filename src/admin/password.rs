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

/// Threads that check passwords, at most.
const CHECKER_THREADS: usize = 4;
/// Checks waiting for a thread before callers wait to hand theirs over.
const CHECKS_QUEUED: usize = 256;

/// Checks passwords on a few threads of its own, for the daemon's logins.
///
/// Each argon2id check allocates 19 MiB. On tokio's blocking pool a flood of AUTH
/// attempts would run on as many threads as there are attempts, and each thread's
/// allocator arena keeps its share after the check; a fixed set of threads bounds both
/// the checks running at once and the memory they leave behind. A caller that goes away
/// does not stop its check, so the bound holds against clients that hang up too.
#[derive(Debug, Clone)]
pub struct Checker {
    tx: tokio::sync::mpsc::Sender<Check>,
}

struct Check {
    /// `None` for an unknown account: a hash nobody matches is checked instead, so that
    /// the answer takes as long as for a known one.
    hash: Option<String>,
    password: Secret,
    reply: tokio::sync::oneshot::Sender<bool>,
}

impl Checker {
    /// Starts one thread per core, at most four.
    pub fn start() -> Checker {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(CHECKER_THREADS);
        let (tx, rx) = tokio::sync::mpsc::channel::<Check>(CHECKS_QUEUED);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for n in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("passwords-{n}"))
                .spawn(move || {
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                        let Some(check) = next else { return };
                        let ok = match &check.hash {
                            Some(hash) => verify(hash, &check.password),
                            None => {
                                verify(dummy_hash(), &check.password);
                                false
                            }
                        };
                        let _ = check.reply.send(ok);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-checking thread");
            }
        }
        Checker { tx }
    }

    /// Whether `password` matches `hash`; `None` (no such account) never matches, and
    /// takes as long as a real check.
    pub async fn check(&self, hash: Option<String>, password: Secret) -> bool {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let check = Check {
            hash,
            password,
            reply,
        };
        if self.tx.send(check).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// A hash of a password nobody has.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash(&Secret::new("no account has this password")).unwrap_or_default())
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

    #[tokio::test]
    async fn the_checker_matches_only_the_right_password() {
        let checker = Checker::start();
        let h = hash(&Secret::new("correct horse")).unwrap();
        assert!(
            checker
                .check(Some(h.clone()), Secret::new("correct horse"))
                .await
        );
        assert!(!checker.check(Some(h), Secret::new("wrong horse")).await);
        assert!(
            !checker
                .check(None, Secret::new("no account has this password"))
                .await
        );
    }
}
