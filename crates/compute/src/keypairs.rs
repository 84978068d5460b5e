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
        if key_type != "ssh" && key_type != "x509" {
            return Err(AppError::bad_request(format!(
                "Invalid input for field/attribute type. Value: {key_type}. '{key_type}' is not one of ['ssh', 'x509']"
            )));
        }
        let (public_key, private) = match public_key {
            Some(pk) => (pk.trim().to_string(), None),
            None if key_type == "x509" => {
                let (cert, private) = x509::generate(&owner.to_string())?;
                (cert, Some(private))
            }
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
            fingerprint: if key_type == "x509" {
                x509::fingerprint(&public_key)?
            } else {
                fingerprint(&public_key)?
            },
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

/// Nova's `x509` keypairs: a self-signed certificate (the "public key") and
/// its private key in PEM, with the SHA-1 fingerprint of the certificate.
/// Nova makes RSA certificates; OxiStack makes Ed25519 ones (RFC 8410), which
/// are generated instantly and need no RSA code. The DER is written here by
/// hand: the structure is fixed and small.
mod x509 {
    use base64::Engine;
    use oxistack_model::{AppError, AppResult};
    use sha1::{Digest, Sha1};
    use ssh_key::SigningKey;

    /// `1.3.101.112`, id-Ed25519, as an AlgorithmIdentifier.
    const ED25519_ALG: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
    /// `2.5.4.3`, commonName.
    const CN_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    const VALID_DAYS: i64 = 3650;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    fn time(t: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
        use chrono::Datelike;
        // UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
        if t.year() < 2050 {
            tlv(0x17, t.format("%y%m%d%H%M%SZ").to_string().as_bytes())
        } else {
            tlv(0x18, t.format("%Y%m%d%H%M%SZ").to_string().as_bytes())
        }
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    fn sign<K: SigningKey>(key: &K, msg: &[u8]) -> AppResult<Vec<u8>> {
        key.try_sign(msg)
            .map(|s| s.as_bytes().to_vec())
            .map_err(|e| AppError::internal(format!("certificate signing: {e}")))
    }

    /// (certificate PEM, private key PEM) for `common_name`.
    pub fn generate(common_name: &str) -> AppResult<(String, String)> {
        let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
            .map_err(|e| AppError::internal(format!("key generation: {e}")))?;
        let pair = key
            .key_data()
            .ed25519()
            .ok_or_else(|| AppError::internal("generated key is not Ed25519"))?;
        let mut serial: [u8; 16] = rand::random();
        serial[0] = (serial[0] & 0x7f) | 0x01; // positive, no leading zero
        let name = seq(&[&tlv(
            0x31,
            &seq(&[CN_OID, &tlv(0x0c, common_name.as_bytes())]),
        )]);
        let now = chrono::Utc::now();
        let validity = seq(&[&time(now), &time(now + chrono::Duration::days(VALID_DAYS))]);
        let mut bits = vec![0u8];
        bits.extend_from_slice(&pair.public.0);
        let spki = seq(&[ED25519_ALG, &tlv(0x03, &bits)]);
        let tbs = seq(&[
            &[0xa0, 0x03, 0x02, 0x01, 0x02], // [0] version v3
            &tlv(0x02, &serial),
            ED25519_ALG,
            &name,
            &validity,
            &name,
            &spki,
        ]);
        let mut sig = vec![0u8];
        sig.extend(sign(&key, &tbs)?);
        let cert = seq(&[&tbs, ED25519_ALG, &tlv(0x03, &sig)]);
        // PKCS#8 (RFC 8410): version 0, the algorithm, the seed in an OCTET STRING.
        let private = seq(&[
            &[0x02, 0x01, 0x00],
            ED25519_ALG,
            &tlv(0x04, &tlv(0x04, &pair.private.to_bytes())),
        ]);
        Ok((pem("CERTIFICATE", &cert), pem("PRIVATE KEY", &private)))
    }

    /// The SHA-1 of the certificate's DER, as Nova prints it (`aa:bb:…`).
    pub fn fingerprint(cert_pem: &str) -> AppResult<String> {
        let invalid =
            || AppError::bad_request("Keypair data is invalid: failed to generate fingerprint");
        let body: String = cert_pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN CERTIFICATE-----")
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| invalid())?;
        if der.first() != Some(&0x30) {
            return Err(invalid());
        }
        Ok(Sha1::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn generated_certificate_is_pem_der_and_fingerprints() {
            let (cert, key) = generate("user-1").unwrap();
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"));
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let fp = fingerprint(&cert).unwrap();
            assert_eq!(fp.len(), 20 * 3 - 1);
            // Two certificates differ (fresh key and serial).
            let (other, _) = generate("user-1").unwrap();
            assert_ne!(fingerprint(&other).unwrap(), fp);
        }

        #[test]
        fn fingerprint_refuses_what_is_not_a_certificate() {
            assert!(fingerprint("ssh-ed25519 AAAA").is_err());
            assert!(
                fingerprint("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_err()
            );
        }

        #[test]
        fn long_lengths_use_the_long_form() {
            let v = tlv(0x04, &[0u8; 200]);
            assert_eq!(&v[..3], &[0x04, 0x81, 200]);
            let v = tlv(0x04, &[0u8; 300]);
            assert_eq!(&v[..4], &[0x04, 0x82, 0x01, 0x2c]);
        }
    }
}
