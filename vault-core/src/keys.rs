//! The key hierarchy: the master key (KEK) sealed under an operator passphrase, and each
//! citizen's data keys (DEK, one per generation) and subject-tag key, stored only wrapped by
//! a KEK. Byte formats are in `docs/keys.md`.
//!
//! Crypto: AES-256-GCM (`aes-gcm`) for every seal and wrap; PBKDF2-HMAC-SHA256, HMAC-SHA256
//! and randomness from `ring`. Every secret lives in its own type: heap-allocated, zeroized
//! on drop, a `Debug` that prints only its id, bytes reachable only through a method named
//! for what it does.

use std::fmt;
use std::num::NonZeroU32;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Length of every symmetric key, in bytes (256 bits).
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce, in bytes (96 bits).
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag, in bytes.
pub const TAG_LEN: usize = 16;
/// Length of the passphrase KDF salt, in bytes.
pub const SALT_LEN: usize = 32;
/// PBKDF2-HMAC-SHA256 iterations for a new passphrase seal (OWASP 2023 guidance).
pub const DEFAULT_KDF_ITERATIONS: u32 = 600_000;
/// The fewest PBKDF2 iterations accepted, when sealing and when unsealing. Only tests and
/// development data directories should go below [`DEFAULT_KDF_ITERATIONS`].
pub const MIN_KDF_ITERATIONS: u32 = 10_000;
/// The shortest operator passphrase accepted at `init` or on a passphrase change.
pub const MIN_PASSPHRASE_LEN: usize = 12;
/// Name of the only passphrase KDF this version writes and reads.
pub const KDF_PBKDF2_SHA256: &str = "pbkdf2-hmac-sha256";

const KEK_AD_LABEL: &[u8] = b"vault-kek-v1";
const WRAP_AD_LABEL: &[u8] = b"vault-wrap-v1";
const SUBJECT_TAG_LABEL: &[u8] = b"vault-subject-tag-v1";
/// HMAC label of a citizen's note key (derived from the tag key).
const NOTE_KEY_LABEL: &[u8] = b"vault-audit-note-key-v1";

/// Why a key operation failed. Never carries key bytes or citizen data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase does not open the sealed master key.
    #[error(
        "wrong passphrase: the passphrase does not open master key {kek_id}; nothing was \
         changed, try again with the passphrase given at init or at the last change"
    )]
    WrongPassphrase {
        /// The master key that did not open.
        kek_id: u32,
    },
    /// A new passphrase is too short.
    #[error("passphrase is too short: use at least {min} characters")]
    PassphraseTooShort {
        /// The minimum length.
        min: usize,
    },
    /// KDF parameters below the floor or of an unknown algorithm.
    #[error("key derivation parameters refused: {reason}")]
    KdfParams {
        /// What is wrong.
        reason: String,
    },
    /// A wrapped key does not open under its KEK (altered, moved, or the wrong KEK).
    #[error(
        "wrapped {purpose} key of citizen {citizen} (generation {generation}, master key \
         {kek_id}) failed its integrity check: the key record was altered or moved; restore \
         it from a backup"
    )]
    Unwrap {
        /// The citizen the key belongs to.
        citizen: String,
        /// `dek` or `tag`.
        purpose: &'static str,
        /// The DEK generation (0 for the tag key).
        generation: u32,
        /// The KEK it claims to be wrapped under.
        kek_id: u32,
    },
    /// A stored key has the wrong length.
    #[error("stored {what} has {len} bytes, expected {expected}: the key store is damaged")]
    BadLength {
        /// What was read.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The expected length.
        expected: usize,
    },
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed: retry, and check the host")]
    Random,
}

impl KeyError {
    /// A stable code for the error, for adapters and logs.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::WrongPassphrase { .. } => "wrong_passphrase",
            KeyError::PassphraseTooShort { .. } => "passphrase_too_short",
            KeyError::KdfParams { .. } => "kdf_params",
            KeyError::Unwrap { .. } => "key_integrity",
            KeyError::BadLength { .. } => "key_integrity",
            KeyError::Random => "random_failed",
        }
    }
}

/// Fills `out` from the OS CSPRNG.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), KeyError> {
    SystemRandom::new().fill(out).map_err(|_| KeyError::Random)
}

/// A fresh random 96-bit nonce.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], KeyError> {
    let mut n = [0u8; NONCE_LEN];
    fill_random(&mut n)?;
    Ok(n)
}

fn random_key() -> Result<Box<Zeroizing<[u8; KEY_LEN]>>, KeyError> {
    let mut k = Box::new(Zeroizing::new([0u8; KEY_LEN]));
    fill_random(&mut k[..])?;
    Ok(k)
}

fn key_from_slice(
    what: &'static str,
    bytes: &[u8],
) -> Result<Box<Zeroizing<[u8; KEY_LEN]>>, KeyError> {
    if bytes.len() != KEY_LEN {
        return Err(KeyError::BadLength {
            what,
            len: bytes.len(),
            expected: KEY_LEN,
        });
    }
    let mut k = Box::new(Zeroizing::new([0u8; KEY_LEN]));
    k.copy_from_slice(bytes);
    Ok(k)
}

/// AES-256-GCM seal of `plaintext` into `nonce`-specific `ciphertext || tag`.
pub(crate) fn aead_seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    aead_seal_in_place(key, nonce, ad, &mut out, 0);
    out
}

/// Encrypts `buf[from..]` in place and appends the tag.
pub(crate) fn aead_seal_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: &mut Vec<u8>,
    from: usize,
) {
    let cipher = Aes256Gcm::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), ad, &mut buf[from..])
        // Invariant: aes-gcm fails only for messages over 2^36 bytes; ours are bounded.
        .expect("AES-GCM encryption of a bounded message");
    buf.extend_from_slice(&tag);
}

/// AES-256-GCM open of `ciphertext || tag`; `None` when authentication fails.
pub(crate) fn aead_open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(TAG_LEN)?;
    let (ct, tag) = sealed.split_at(split);
    let mut buf = Zeroizing::new(ct.to_vec());
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            ad,
            &mut buf[..],
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(buf)
}

/// Appends `bytes` prefixed with its length as a u32 big-endian.
pub(crate) fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    // Invariant: every length-prefixed item (labels, ids, names, salts) is far below 4 GiB.
    let len = u32::try_from(bytes.len()).expect("length-prefixed item under 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident, $id_doc:literal, $debug:literal) => {
        $(#[$doc])*
        pub struct $name {
            id: u32,
            bytes: Box<Zeroizing<[u8; KEY_LEN]>>,
        }

        impl $name {
            #[doc = $id_doc]
            #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
            pub fn id(&self) -> u32 {
                self.id
            }

            /// A new random key from the OS CSPRNG.
            pub fn generate(id: u32) -> Result<Self, KeyError> {
                Ok(Self { id, bytes: random_key()? })
            }

            pub(crate) fn from_slice(id: u32, what: &'static str, bytes: &[u8]) -> Result<Self, KeyError> {
                Ok(Self { id, bytes: key_from_slice(what, bytes)? })
            }

            /// The raw key bytes, for the cipher that uses them (never store or log them).
            pub(crate) fn secret_bytes(&self) -> &[u8; KEY_LEN] {
                &self.bytes
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($debug, "({})"), self.id)
            }
        }
    };
}

secret_key!(
    /// The master key (KEK): wraps every citizen's keys. Stored only sealed under the
    /// operator passphrase ([`SealedKek`]).
    Kek,
    "The KEK's id (1 for the key made at init, +1 per rotation).",
    "Kek"
);
secret_key!(
    /// A citizen's data key for one generation: seals that citizen's field values.
    Dek,
    "The DEK's generation (1 for the first, +1 per rotation).",
    "Dek"
);
secret_key!(
    /// A citizen's subject-tag key: the HMAC key behind the citizen's audit subject tag.
    /// Stored wrapped beside the DEK and destroyed with it at erasure.
    TagKey,
    "Always 0: one tag key per citizen, never rotated (the tag must stay stable).",
    "TagKey"
);

/// A citizen's note key: seals the free texts of the audit entries about the citizen
/// (`engine::notes`). Derived from the tag key ([`TagKey::note_key`]), so erasure, which
/// destroys the tag key, destroys it too; never stored. Zeroized on drop.
pub struct NoteKey {
    bytes: Box<Zeroizing<[u8; KEY_LEN]>>,
}

impl NoteKey {
    /// The raw key bytes, for the cipher that uses them (never store or log them).
    pub(crate) fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for NoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoteKey")
    }
}

impl TagKey {
    /// The citizen's note key: HMAC-SHA256 under this key over its own label (another
    /// label than the subject tag's, so the tag, which is public, reveals nothing of it).
    pub fn note_key(&self) -> NoteKey {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.secret_bytes());
        let derived = ring::hmac::sign(&key, NOTE_KEY_LABEL);
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        bytes.copy_from_slice(derived.as_ref());
        NoteKey { bytes }
    }

    /// The citizen's audit subject tag: HMAC-SHA256 under this key over a fixed label.
    pub fn subject_tag(&self) -> audit::SubjectTag {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.secret_bytes());
        let tag = ring::hmac::sign(&key, SUBJECT_TAG_LABEL);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        audit::SubjectTag(out)
    }
}

impl Dek {
    /// DANGEROUS, tests only (feature `test-hooks`): a copy of the raw key bytes, so that a test can search a
    /// data directory for them. Never call this in the vault.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_copy_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.bytes.to_vec())
    }
}

impl Kek {
    /// DANGEROUS, tests only (feature `test-hooks`): a copy of the raw key bytes, so that a test can search a
    /// data directory for them. Never call this in the vault.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_copy_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.bytes.to_vec())
    }
}

impl TagKey {
    /// DANGEROUS, tests only (feature `test-hooks`): a copy of the raw key bytes.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_copy_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.bytes.to_vec())
    }
}

/// The operator's passphrase. Zeroized on drop; never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase (trailing newline characters, as left by a file, are removed).
    pub fn new(mut text: String) -> Self {
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        Passphrase(Zeroizing::new(text))
    }

    /// Refuses a passphrase shorter than [`MIN_PASSPHRASE_LEN`] characters (for new ones).
    pub fn check_strength(&self) -> Result<(), KeyError> {
        if self.0.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(KeyError::PassphraseTooShort {
                min: MIN_PASSPHRASE_LEN,
            });
        }
        Ok(())
    }

    fn secret_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Parameters of the passphrase KDF, stored with each sealed KEK.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Always [`KDF_PBKDF2_SHA256`] in this version.
    pub algorithm: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Random salt, [`SALT_LEN`] bytes.
    #[serde(with = "crate::serde_bytes")]
    pub salt: Vec<u8>,
}

impl KdfParams {
    /// Fresh parameters with a random salt; refuses iterations below [`MIN_KDF_ITERATIONS`].
    pub fn generate(iterations: u32) -> Result<Self, KeyError> {
        let mut salt = vec![0u8; SALT_LEN];
        fill_random(&mut salt)?;
        let params = KdfParams {
            algorithm: KDF_PBKDF2_SHA256.to_owned(),
            iterations,
            salt,
        };
        params.check()?;
        Ok(params)
    }

    fn check(&self) -> Result<NonZeroU32, KeyError> {
        if self.algorithm != KDF_PBKDF2_SHA256 {
            return Err(KeyError::KdfParams {
                reason: format!(
                    "unknown algorithm {:?}: this program reads {KDF_PBKDF2_SHA256}",
                    self.algorithm
                ),
            });
        }
        if self.salt.len() < 16 {
            return Err(KeyError::KdfParams {
                reason: format!("salt of {} bytes is shorter than 16", self.salt.len()),
            });
        }
        match NonZeroU32::new(self.iterations) {
            Some(n) if self.iterations >= MIN_KDF_ITERATIONS => Ok(n),
            _ => Err(KeyError::KdfParams {
                reason: format!(
                    "{} iterations is below the floor of {MIN_KDF_ITERATIONS}",
                    self.iterations
                ),
            }),
        }
    }
}

/// The key derived from the passphrase and [`KdfParams`]: seals and opens KEKs.
pub struct SealingKey {
    params: KdfParams,
    bytes: Box<Zeroizing<[u8; KEY_LEN]>>,
}

impl SealingKey {
    /// Runs PBKDF2-HMAC-SHA256 (slow on purpose: [`KdfParams::iterations`]).
    pub fn derive(passphrase: &Passphrase, params: &KdfParams) -> Result<Self, KeyError> {
        let iterations = params.check()?;
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &params.salt,
            passphrase.secret_bytes(),
            &mut bytes[..],
        );
        Ok(SealingKey {
            params: params.clone(),
            bytes,
        })
    }

    /// The parameters it was derived with.
    pub fn params(&self) -> &KdfParams {
        &self.params
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey({} iterations)", self.params.iterations)
    }
}

/// A KEK sealed under a passphrase-derived key, as stored in `Tree::Meta`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKek {
    /// The KEK's id.
    pub kek_id: u32,
    /// How the sealing key is derived from the passphrase.
    pub kdf: KdfParams,
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// AES-256-GCM ciphertext of the 32 key bytes, then the 16-byte tag.
    #[serde(with = "crate::serde_bytes")]
    pub ciphertext: Vec<u8>,
}

fn kek_ad(kek_id: u32, kdf: &KdfParams) -> Vec<u8> {
    let mut ad = Vec::with_capacity(96);
    push_lp(&mut ad, KEK_AD_LABEL);
    ad.extend_from_slice(&kek_id.to_be_bytes());
    push_lp(&mut ad, kdf.algorithm.as_bytes());
    ad.extend_from_slice(&kdf.iterations.to_be_bytes());
    push_lp(&mut ad, &kdf.salt);
    ad
}

impl SealedKek {
    /// Seals `kek` under `key`, binding its id and the KDF parameters.
    pub fn seal(kek: &Kek, key: &SealingKey) -> Result<Self, KeyError> {
        let nonce = random_nonce()?;
        let ad = kek_ad(kek.id(), key.params());
        let ciphertext = aead_seal(&key.bytes, &nonce, &ad, kek.secret_bytes());
        Ok(SealedKek {
            kek_id: kek.id(),
            kdf: key.params().clone(),
            nonce,
            ciphertext,
        })
    }

    /// Opens the sealed KEK; [`KeyError::WrongPassphrase`] when `key` is not the right one
    /// (or the sealed bytes were altered).
    pub fn open(&self, key: &SealingKey) -> Result<Kek, KeyError> {
        let ad = kek_ad(self.kek_id, &self.kdf);
        let plain = if key.params() == &self.kdf {
            aead_open(&key.bytes, &self.nonce, &ad, &self.ciphertext)
        } else {
            None
        };
        let plain = plain.ok_or(KeyError::WrongPassphrase {
            kek_id: self.kek_id,
        })?;
        Kek::from_slice(self.kek_id, "master key", &plain)
    }
}

const CHECK_AD_LABEL: &[u8] = b"vault-passphrase-check-v1";

/// A passphrase check value: an AES-GCM tag over nothing under the passphrase-derived key,
/// kept in a file beside the store so that a wrong passphrase is refused before the store
/// is opened (opening sled writes to its files). No weaker than the sealed KEK it mirrors:
/// same KDF parameters, same derived key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassphraseCheck {
    /// The KEK sealed under the same derived key (for the error message).
    pub kek_id: u32,
    /// How the key is derived from the passphrase.
    pub kdf: KdfParams,
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The 16-byte AES-GCM tag of the empty message.
    #[serde(with = "crate::serde_bytes")]
    pub tag: Vec<u8>,
}

fn check_ad(kek_id: u32, kdf: &KdfParams) -> Vec<u8> {
    let mut ad = kek_ad(kek_id, kdf);
    push_lp(&mut ad, CHECK_AD_LABEL);
    ad
}

impl PassphraseCheck {
    /// The check value of `key`, naming `kek_id`.
    pub fn new(kek_id: u32, key: &SealingKey) -> Result<Self, KeyError> {
        let nonce = random_nonce()?;
        let tag = aead_seal(&key.bytes, &nonce, &check_ad(kek_id, key.params()), &[]);
        Ok(PassphraseCheck {
            kek_id,
            kdf: key.params().clone(),
            nonce,
            tag,
        })
    }

    /// True when `key` (derived with [`PassphraseCheck::kdf`]) is the one checked.
    pub fn matches(&self, key: &SealingKey) -> bool {
        key.params() == &self.kdf
            && aead_open(
                &key.bytes,
                &self.nonce,
                &check_ad(self.kek_id, &self.kdf),
                &self.tag,
            )
            .is_some()
    }
}

/// What a wrapped key is for; bound into the wrap's associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapPurpose {
    /// A data key.
    Dek,
    /// A subject-tag key.
    Tag,
}

impl WrapPurpose {
    fn label(self) -> &'static str {
        match self {
            WrapPurpose::Dek => "dek",
            WrapPurpose::Tag => "tag",
        }
    }
}

/// A citizen key wrapped under a KEK, as stored in the citizen's key record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The KEK it is wrapped under.
    pub kek_id: u32,
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// AES-256-GCM ciphertext of the 32 key bytes, then the 16-byte tag.
    #[serde(with = "crate::serde_bytes")]
    pub ciphertext: Vec<u8>,
}

fn wrap_ad(citizen: &str, generation: u32, kek_id: u32, purpose: WrapPurpose) -> Vec<u8> {
    let mut ad = Vec::with_capacity(128);
    push_lp(&mut ad, WRAP_AD_LABEL);
    push_lp(&mut ad, citizen.as_bytes());
    ad.extend_from_slice(&generation.to_be_bytes());
    ad.extend_from_slice(&kek_id.to_be_bytes());
    push_lp(&mut ad, purpose.label().as_bytes());
    ad
}

impl WrappedKey {
    fn wrap(
        kek: &Kek,
        citizen: &str,
        generation: u32,
        purpose: WrapPurpose,
        key: &[u8; KEY_LEN],
    ) -> Result<Self, KeyError> {
        let nonce = random_nonce()?;
        let ad = wrap_ad(citizen, generation, kek.id(), purpose);
        Ok(WrappedKey {
            kek_id: kek.id(),
            nonce,
            ciphertext: aead_seal(kek.secret_bytes(), &nonce, &ad, key),
        })
    }

    fn unwrap_bytes(
        &self,
        kek: &Kek,
        citizen: &str,
        generation: u32,
        purpose: WrapPurpose,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let fail = || KeyError::Unwrap {
            citizen: citizen.to_owned(),
            purpose: purpose.label(),
            generation,
            kek_id: self.kek_id,
        };
        if kek.id() != self.kek_id {
            return Err(fail());
        }
        let ad = wrap_ad(citizen, generation, self.kek_id, purpose);
        aead_open(kek.secret_bytes(), &self.nonce, &ad, &self.ciphertext).ok_or_else(fail)
    }

    /// Wraps a DEK for `citizen` under `kek`.
    pub fn wrap_dek(kek: &Kek, citizen: &str, dek: &Dek) -> Result<Self, KeyError> {
        Self::wrap(kek, citizen, dek.id(), WrapPurpose::Dek, dek.secret_bytes())
    }

    /// Wraps a tag key for `citizen` under `kek`.
    pub fn wrap_tag(kek: &Kek, citizen: &str, tag: &TagKey) -> Result<Self, KeyError> {
        Self::wrap(kek, citizen, 0, WrapPurpose::Tag, tag.secret_bytes())
    }

    /// Unwraps the DEK of `generation` for `citizen`.
    pub fn unwrap_dek(&self, kek: &Kek, citizen: &str, generation: u32) -> Result<Dek, KeyError> {
        let bytes = self.unwrap_bytes(kek, citizen, generation, WrapPurpose::Dek)?;
        Dek::from_slice(generation, "data key", &bytes)
    }

    /// Unwraps the tag key of `citizen`.
    pub fn unwrap_tag(&self, kek: &Kek, citizen: &str) -> Result<TagKey, KeyError> {
        let bytes = self.unwrap_bytes(kek, citizen, 0, WrapPurpose::Tag)?;
        TagKey::from_slice(0, "subject tag key", &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned())
    }

    #[test]
    fn sealed_kek_opens_only_with_the_right_passphrase() {
        let kek = Kek::generate(1).unwrap();
        let params = KdfParams::generate(MIN_KDF_ITERATIONS).unwrap();
        let key = SealingKey::derive(&pass("correct horse battery"), &params).unwrap();
        let sealed = SealedKek::seal(&kek, &key).unwrap();
        let opened = sealed.open(&key).unwrap();
        assert_eq!(opened.secret_bytes(), kek.secret_bytes());

        let wrong = SealingKey::derive(&pass("correct horse battery!"), &params).unwrap();
        let err = sealed.open(&wrong).unwrap_err();
        assert!(err.to_string().starts_with("wrong passphrase: "), "{err}");

        let mut moved = sealed.clone();
        moved.kek_id = 2;
        assert!(matches!(
            moved.open(&key),
            Err(KeyError::WrongPassphrase { kek_id: 2 })
        ));
    }

    #[test]
    fn kdf_floor_and_algorithm_are_enforced() {
        assert!(KdfParams::generate(MIN_KDF_ITERATIONS - 1).is_err());
        let mut p = KdfParams::generate(MIN_KDF_ITERATIONS).unwrap();
        p.algorithm = "md5".into();
        assert!(SealingKey::derive(&pass("correct horse battery"), &p).is_err());
    }

    #[test]
    fn wraps_are_bound_to_citizen_generation_and_purpose() {
        let kek = Kek::generate(3).unwrap();
        let dek = Dek::generate(7).unwrap();
        let w = WrappedKey::wrap_dek(&kek, "alice", &dek).unwrap();
        assert_eq!(
            w.unwrap_dek(&kek, "alice", 7).unwrap().secret_bytes(),
            dek.secret_bytes()
        );
        assert!(w.unwrap_dek(&kek, "bob", 7).is_err());
        assert!(w.unwrap_dek(&kek, "alice", 8).is_err());
        assert!(w.unwrap_tag(&kek, "alice").is_err());
        let other = Kek::generate(3).unwrap();
        assert!(w.unwrap_dek(&other, "alice", 7).is_err());
    }

    #[test]
    fn debug_prints_only_the_id() {
        let dek = Dek::generate(42).unwrap();
        assert_eq!(format!("{dek:?}"), "Dek(42)");
        assert_eq!(
            format!("{:?}", pass("secret secret secret")),
            "Passphrase(..)"
        );
    }

    #[test]
    fn subject_tag_is_stable_and_key_specific() {
        let a = TagKey::generate(0).unwrap();
        let b = TagKey::generate(0).unwrap();
        assert_eq!(a.subject_tag(), a.subject_tag());
        assert_ne!(a.subject_tag(), b.subject_tag());
    }
}
