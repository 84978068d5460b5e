//! Keypairs, per user: import a public key, or generate a pair (the private
//! key is returned once and never stored).

use md5::{Digest, Md5};
use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, UserId};
use oxistack_store::compute::Keypair;

use crate::Compute;

/// A generated keypair: the record and its private key, shown once.
pub struct Generated {
    pub keypair: Keypair,
    pub private_key: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_ .@".contains(c))
}

/// The MD5 fingerprint of an OpenSSH public key, as Nova prints it
/// (`aa:bb:…`).
pub fn fingerprint(public_key: &str) -> AppResult<String> {
    let key = ssh_key::PublicKey::from_openssh(public_key.trim()).map_err(|_| {
        AppError::bad_request("Keypair data is invalid: failed to generate fingerprint")
    })?;
    let blob = key.to_bytes().map_err(|_| {
        AppError::bad_request("Keypair data is invalid: failed to generate fingerprint")
    })?;
    let digest = Md5::digest(&blob);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

impl Compute {
    /// The user a keypair call acts for: the caller, or (admins, 2.10+) another user.
    fn keypair_owner(ctx: &AuthContext, user_id: Option<&str>) -> AppResult<UserId> {
        match user_id {
            Some(u) if u != ctx.user_id.to_string() => {
                ctx.require_admin()?;
                u.parse()
                    .map_err(|_| AppError::not_found(format!("User {u} could not be found.")))
            }
            _ => Ok(ctx.user_id),
        }
    }

    pub async fn keypair_create(
        &self,
        ctx: &AuthContext,
        name: &str,
        key_type: Option<&str>,
        public_key: Option<&str>,
        user_id: Option<&str>,
    ) -> AppResult<(Keypair, Option<String>)> {
        let owner = Self::keypair_owner(ctx, user_id)?;
        if !valid_name(name) {
            return Err(AppError::bad_request(
                "Keypair data is invalid: Keypair name contains unsafe characters",
            ));
        }
        let key_type = key_type.unwrap_or("ssh");
        if key_type != "ssh" {
            return Err(AppError::bad_request(format!(
                "Keypair data is invalid: keypair type {key_type} is not supported; use ssh"
            )));
        }
        let (public_key, private) = match public_key {
            Some(pk) => (pk.trim().to_string(), None),
            None => {
                let key = ssh_key::PrivateKey::random(
                    &mut rand::rngs::OsRng,
                    ssh_key::Algorithm::Ed25519,
                )
                .map_err(|e| AppError::internal(format!("key generation: {e}")))?;
                let private = key
                    .to_openssh(ssh_key::LineEnding::LF)
                    .map_err(|e| AppError::internal(format!("key encoding: {e}")))?
                    .to_string();
                let public = key
                    .public_key()
                    .to_openssh()
                    .map_err(|e| AppError::internal(format!("key encoding: {e}")))?;
                (format!("{public} Generated-by-OxiStack"), Some(private))
            }
        };
        let kp = Keypair {
            user_id: owner,
            name: name.to_string(),
            key_type: key_type.to_string(),
            fingerprint: fingerprint(&public_key)?,
            public_key,
            created_at: now(),
        };
        let limit = self
            .quota_limit_for(
                &ctx.project_id.map(|p| p.to_string()).unwrap_or_default(),
                "key_pairs",
            )
            .await?;
        self.store.keypair_create(&kp, limit).await?;
        Ok((kp, private))
    }

    pub async fn keypair_list(
        &self,
        ctx: &AuthContext,
        user_id: Option<&str>,
    ) -> AppResult<Vec<Keypair>> {
        let owner = Self::keypair_owner(ctx, user_id)?;
        self.store.keypair_list(&owner).await
    }

    pub async fn keypair_get(
        &self,
        ctx: &AuthContext,
        name: &str,
        user_id: Option<&str>,
    ) -> AppResult<Keypair> {
        let owner = Self::keypair_owner(ctx, user_id)?;
        self.store.keypair_get(&owner, name).await
    }

    pub async fn keypair_delete(
        &self,
        ctx: &AuthContext,
        name: &str,
        user_id: Option<&str>,
    ) -> AppResult<()> {
        let owner = Self::keypair_owner(ctx, user_id)?;
        self.store.keypair_delete(&owner, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // `ssh-keygen -l -E md5` prints MD5:96:91:db:… for this key.
        let pk =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGOLF97YB5npRs4VCBG+xNCNgBfEbm71q/eHppE89M9m test";
        assert_eq!(
            fingerprint(pk).unwrap(),
            "96:91:db:a6:d3:6f:f9:bf:93:17:e3:57:31:ba:44:e2"
        );
        assert!(fingerprint("ssh-rsa notbase64!").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("my-key_1"));
        assert!(!valid_name(""));
        assert!(!valid_name(" lead"));
        assert!(!valid_name("semi;colon"));
    }
}
