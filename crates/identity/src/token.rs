//! The token format: `base64url(payload JSON) "." base64url(HMAC-SHA256)`.
//!
//! The payload names the user, the scope, the methods, issue and expiry
//! times and the audit ids; nothing else. Roles are not in the token: they
//! are read from the store at validation, so removing an assignment takes
//! effect at once. The key is shared by every controller through the store's
//! `secrets` table. See docs/design/0003-tokens.md.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use oxistack_model::time::Timestamp;
use oxistack_model::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPayload {
    /// User id.
    pub u: String,
    /// Authentication methods (`password`, `token`).
    pub m: Vec<String>,
    /// Project scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// Domain scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// System scope (`{"system": {"all": true}}`): roles held on the system.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub s: bool,
    /// Issued at, microseconds since the epoch.
    pub i: i64,
    /// Expires at, microseconds since the epoch.
    pub e: i64,
    /// Audit ids: this token's, then the one it was rescoped from.
    pub a: Vec<String>,
}

impl TokenPayload {
    pub fn issued_at(&self) -> Timestamp {
        micros(self.i)
    }
    pub fn expires_at(&self) -> Timestamp {
        micros(self.e)
    }
}

fn micros(v: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(v).unwrap_or_default()
}

fn invalid() -> AppError {
    AppError::unauthenticated("The request you have made requires authentication.")
}

pub fn sign(key: &[u8], payload: &TokenPayload) -> AppResult<String> {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload)?);
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|e| AppError::internal(format!("token key: {e}")))?;
    mac.update(body.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{body}.{sig}"))
}

/// Checks the signature (in constant time) and decodes the payload. Expiry
/// and revocation are the caller's to check.
pub fn open(key: &[u8], token: &str) -> AppResult<TokenPayload> {
    let (body, sig) = token.split_once('.').ok_or_else(invalid)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|e| AppError::internal(format!("token key: {e}")))?;
    mac.update(body.as_bytes());
    mac.verify_slice(&sig).map_err(|_| invalid())?;
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// A new audit id: 16 random bytes, URL-safe base64 (22 characters), as
/// Keystone makes them.
pub fn new_audit_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> TokenPayload {
        TokenPayload {
            u: "u1".into(),
            m: vec!["password".into()],
            p: Some("p1".into()),
            d: None,
            s: false,
            i: 1_700_000_000_000_000,
            e: 1_700_003_600_000_000,
            a: vec![new_audit_id()],
        }
    }

    #[test]
    fn signed_tokens_open_with_the_same_key_only() {
        let t = sign(b"key-one", &payload()).unwrap();
        assert_eq!(open(b"key-one", &t).unwrap(), payload_with(&t));
        assert!(open(b"key-two", &t).is_err());
    }

    fn payload_with(t: &str) -> TokenPayload {
        open(b"key-one", t).unwrap()
    }

    #[test]
    fn any_change_to_the_payload_breaks_the_signature() {
        let p = payload();
        let t = sign(b"k", &p).unwrap();
        let (body, sig) = t.split_once('.').unwrap();
        let mut forged = p.clone();
        forged.u = "admin".into();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(open(b"k", &format!("{forged_body}.{sig}")).is_err());
        assert!(open(b"k", body).is_err());
        assert!(open(b"k", &format!("{body}.")).is_err());
        assert_eq!(open(b"k", &t).unwrap(), p);
        assert_eq!(new_audit_id().len(), 22);
    }
}
