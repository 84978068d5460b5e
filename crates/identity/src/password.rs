//! Password hashing: argon2id with the crate's default (OWASP) parameters,
//! run off the async runtime because it is deliberately slow. Passwords are
//! never logged.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use oxistack_model::{AppError, AppResult};
use rand::Rng;

/// A PHC string (`$argon2id$v=19$…`) for `password`.
pub async fn hash(password: &str) -> AppResult<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| AppError::internal(format!("password hashing task failed: {e}")))?
}

/// Whether `password` matches `stored`. With no stored hash (unknown user,
/// or a user without a password) a dummy hash is still computed, so the
/// answer takes as long either way and does not reveal which.
pub async fn verify(password: &str, stored: Option<&str>) -> AppResult<bool> {
    let password = password.to_string();
    let stored = stored.map(str::to_string);
    tokio::task::spawn_blocking(move || match stored.as_deref().map(PasswordHash::new) {
        Some(Ok(parsed)) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        _ => {
            let salt = SaltString::generate(&mut OsRng);
            let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            false
        }
    })
    .await
    .map_err(|e| AppError::internal(format!("password check task failed: {e}")))
}

/// A random password for the bootstrap admin: 32 alphanumeric characters.
pub fn generate() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}
