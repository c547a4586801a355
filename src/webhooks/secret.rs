//! Endpoint signing secrets: `whsec_` and the base64 of 32 random bytes, as
//! Standard Webhooks writes them. Shown once (on creation and rotation),
//! stored sealed with AES-256-GCM under the key-encryption key, with the
//! endpoint's id as associated data (a sealed secret moved to another
//! endpoint's row does not open).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;

use crate::signing::{seal_under, unseal_under};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use uuid::Uuid;

pub const PREFIX: &str = "whsec_";
const SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the key-encryption key is not 32 bytes of hex")]
    BadKek,
    #[error("an endpoint secret cannot be unsealed with this key-encryption key")]
    Unseal,
    #[error("sealing failed")]
    Seal,
}

/// A new secret: its bytes (kept secret) and its `whsec_` form.
pub struct NewSecret {
    pub bytes: SecretSlice<u8>,
    pub shown: SecretString,
}

pub fn generate() -> NewSecret {
    let bytes: [u8; SECRET_LEN] = rand::rng().random();
    let shown = format!("{PREFIX}{}", STANDARD.encode(bytes));
    NewSecret {
        bytes: SecretSlice::from(bytes.to_vec()),
        shown: SecretString::from(shown),
    }
}

#[derive(Clone)]
pub struct Sealer {
    kek: Aes256Gcm,
}

impl Sealer {
    pub fn from_hex(kek_hex: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(kek_hex).map_err(|_| SecretError::BadKek)?;
        let kek = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::BadKek)?;
        Ok(Sealer { kek })
    }

    pub fn seal(&self, endpoint: Uuid, secret: &SecretSlice<u8>) -> Result<Vec<u8>, SecretError> {
        seal_under(&self.kek, endpoint.as_bytes(), secret.expose_secret()).ok_or(SecretError::Seal)
    }

    pub fn unseal(&self, endpoint: Uuid, sealed: &[u8]) -> Result<SecretSlice<u8>, SecretError> {
        unseal_under(&self.kek, endpoint.as_bytes(), sealed)
            .map(SecretSlice::from)
            .ok_or(SecretError::Unseal)
    }
}
