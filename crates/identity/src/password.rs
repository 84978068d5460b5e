//! Password hashing: argon2id with the OWASP parameters (19 MiB, t=2, p=1),
//! stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), run
//! off the async runtime because it is deliberately slow. Passwords are
//! never logged.
//!
//! Memory: each hash needs a 19 MiB work area. Allocating it per call let
//! the allocator keep freed areas around (measured: 228 MiB resident after
//! 21 logins). Instead a fixed set of hashing threads (one per core, at
//! most 4) each keep one work area for their whole life, so the cost is
//! bounded to 19 MiB per thread, paid at the first login, and given back
//! after a minute without logins.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use oxistack_model::{AppError, AppResult};
use rand::Rng;

type Job = Box<dyn FnOnce() + Send>;

/// How long a hashing thread keeps its work area without a login.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(60);

thread_local! {
    /// This hashing thread's work area, reused by every hash it computes.
    static WORK_AREA: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The hashing threads, each with its own queue (so each can notice its
/// own idleness and give its work area back).
fn hashers() -> &'static [Mutex<mpsc::Sender<Job>>] {
    static HASHERS: OnceLock<Vec<Mutex<mpsc::Sender<Job>>>> = OnceLock::new();
    HASHERS.get_or_init(|| {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        (0..n)
            .map(|i| {
                let (tx, rx) = mpsc::channel::<Job>();
                let _ = std::thread::Builder::new()
                    .name(format!("password-hash-{i}"))
                    .spawn(move || loop {
                        match rx.recv_timeout(IDLE_RELEASE) {
                            Ok(job) => job(),
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                WORK_AREA.with(|a| *a.borrow_mut() = Vec::new());
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    });
                Mutex::new(tx)
            })
            .collect()
    })
}

/// Runs `f` on a hashing thread and waits for its answer.
async fn on_hasher<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let all = hashers();
    all[NEXT.fetch_add(1, Ordering::Relaxed) % all.len()]
        .lock()
        .map_err(|_| AppError::internal("password hasher lock poisoned"))?
        .send(job)
        .map_err(|_| AppError::internal("password hasher stopped"))?;
    rx.await
        .map_err(|_| AppError::internal("password hashing task failed"))
}

/// The raw argon2id hash of `password` with `salt` (raw bytes) into `out`,
/// in this thread's work area.
fn raw_hash(password: &[u8], salt: &[u8], params: Params, out: &mut [u8]) -> AppResult<()> {
    WORK_AREA.with(|area| {
        let mut area = area.borrow_mut();
        let need = params.block_count();
        if area.len() < need {
            area.resize(need, Block::default());
        }
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(password, salt, out, &mut area[..need])
            .map_err(|e| AppError::internal(format!("password hashing failed: {e}")))
    })
}

fn hash_blocking(password: &[u8]) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut raw_salt)
        .map_err(|e| AppError::internal(format!("salt: {e}")))?;
    let params = Params::DEFAULT;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    raw_hash(password, salt_bytes, params.clone(), &mut out)?;
    let output = Output::new(&out).map_err(|e| AppError::internal(format!("hash output: {e}")))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e| AppError::internal(format!("hash params: {e}")))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (argon2id only).
fn verify_blocking(password: &[u8], stored: &str) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    if phc.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&phc), phc.salt, phc.hash)
    else {
        return false;
    };
    let mut raw_salt = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if raw_hash(password, salt_bytes, params, &mut out).is_err() {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(&out).map(|o| o == expected).unwrap_or(false)
}

/// A PHC string (`$argon2id$v=19$…`) for `password`.
pub async fn hash(password: &str) -> AppResult<String> {
    let password = password.to_string();
    on_hasher(move || hash_blocking(password.as_bytes())).await?
}

/// Whether `password` matches `stored`. With no stored hash (unknown user,
/// or a user without a password) a dummy hash is still computed, so the
/// answer takes as long either way and does not reveal which.
pub async fn verify(password: &str, stored: Option<&str>) -> AppResult<bool> {
    let password = password.to_string();
    let stored = stored.map(str::to_string);
    on_hasher(move || match stored.as_deref() {
        Some(s) => verify_blocking(password.as_bytes(), s),
        None => {
            let _ = hash_blocking(password.as_bytes());
            false
        }
    })
    .await
}

/// A random password for the bootstrap admin: 32 alphanumeric characters.
pub fn generate() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHasher;

    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_match_the_argon2_crate() {
        let h = hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", Some(&h)).await.unwrap());
        assert!(!verify("wrong", Some(&h)).await.unwrap());
        assert!(!verify("x", None).await.unwrap());
        assert!(!verify("x", Some("not a phc string")).await.unwrap());
        // A hash made by the argon2 crate's own PHC API verifies here, and
        // ours verifies there: the stored format is the standard one.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify("pw", Some(&theirs)).await.unwrap());
        let ours = PasswordHash::new(&h).unwrap();
        use argon2::password_hash::PasswordVerifier;
        assert!(Argon2::default()
            .verify_password(b"correct horse", &ours)
            .is_ok());
    }
}
