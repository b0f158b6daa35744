//! The vault's own secrets (the log and receipt signing seeds, the CA key, the server's
//! TLS key), sealed at rest under the current KEK like citizens' keys are.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{aead_open, aead_seal, push_lp, random_nonce, Kek, NONCE_LEN};

use super::VaultError;

const LABEL: &[u8] = b"vault-secret-v1";

/// One sealed secret, as stored in `Tree::Meta`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SealedSecret {
    pub(crate) kek_id: u32,
    pub(crate) nonce: [u8; NONCE_LEN],
    #[serde(with = "crate::serde_bytes")]
    pub(crate) ciphertext: Vec<u8>,
}

fn ad(name: &str, kek_id: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64);
    push_lp(&mut ad, LABEL);
    push_lp(&mut ad, name.as_bytes());
    ad.extend_from_slice(&kek_id.to_be_bytes());
    ad
}

impl SealedSecret {
    /// Seals `secret`, bound to its `name` and the KEK's id.
    pub(crate) fn seal(kek: &Kek, name: &str, secret: &[u8]) -> Result<Self, VaultError> {
        let nonce = random_nonce().map_err(VaultError::internal)?;
        Ok(SealedSecret {
            kek_id: kek.id(),
            nonce,
            ciphertext: aead_seal(kek.secret_bytes(), &nonce, &ad(name, kek.id()), secret),
        })
    }

    /// Opens it with the KEK it was sealed under.
    pub(crate) fn open(&self, kek: &Kek, name: &str) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if kek.id() != self.kek_id {
            return Err(VaultError::internal(format!(
                "secret {name} is sealed under master key {}, not {}",
                self.kek_id,
                kek.id()
            )));
        }
        aead_open(
            kek.secret_bytes(),
            &self.nonce,
            &ad(name, self.kek_id),
            &self.ciphertext,
        )
        .ok_or_else(|| {
            VaultError::internal(format!(
                "secret {name} does not open: the data directory is corrupt or was tampered with"
            ))
        })
    }
}
