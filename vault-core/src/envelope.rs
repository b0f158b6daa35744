//! Field sealing: each field value is sealed with AES-256-GCM under the citizen's DEK with a
//! fresh random 96-bit nonce, and associated data binding it to (format, citizen, category,
//! field, record version, DEK generation).
//!
//! Field ciphertext format v1 (`docs/keys.md`):
//!
//! ```text
//! 0x01 || DEK generation (u32 BE) || nonce (12 bytes) || AES-256-GCM ciphertext || tag (16)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{self, Dek, KeyError, NONCE_LEN, TAG_LEN};

/// The first byte of a v1 field ciphertext.
pub const FIELD_FORMAT_V1: u8 = 0x01;
/// Bytes before the AES-GCM ciphertext: format, generation, nonce.
pub const FIELD_HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// Bytes a sealed field adds to its plaintext.
pub const FIELD_OVERHEAD: usize = FIELD_HEADER_LEN + TAG_LEN;
/// Longest citizen id, in bytes.
pub const MAX_CITIZEN_ID_LEN: usize = 64;

const FIELD_AD_LABEL: &[u8] = b"vault-field-v1";

/// A citizen's opaque id: 1 to 64 characters of `[A-Za-z0-9._-]`. Not personal data (the
/// vault never needs the person's name or national number as a key).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CitizenId(String);

/// Why a string is not a citizen id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CitizenIdError {
    /// Empty, too long or a character outside the set.
    #[error(
        "invalid citizen id: use 1 to {MAX_CITIZEN_ID_LEN} characters of letters, digits, \
         '.', '_' or '-'"
    )]
    Invalid,
}

impl CitizenId {
    /// Validates `s` as a citizen id.
    pub fn new(s: &str) -> Result<Self, CitizenIdError> {
        Self::try_from(s.to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CitizenId {
    type Error = CitizenIdError;

    fn try_from(s: String) -> Result<Self, CitizenIdError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CITIZEN_ID_LEN
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if ok {
            Ok(CitizenId(s))
        } else {
            Err(CitizenIdError::Invalid)
        }
    }
}

impl From<CitizenId> for String {
    fn from(c: CitizenId) -> String {
        c.0
    }
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenId({})", self.0)
    }
}

/// A field's plaintext value (the server puts the UTF-8 JSON encoding of the value here).
/// Zeroized on drop, never printed; the bytes through [`Plaintext::expose_bytes`].
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }

    /// Copies `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Plaintext(Zeroizing::new(bytes.to_vec()))
    }

    /// The plaintext bytes, for the caller that must use them (never log them).
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext(..)")
    }
}

/// Where a field ciphertext belongs: every part is bound into its associated data.
#[derive(Clone, Copy, Debug)]
pub struct FieldContext<'a> {
    /// The citizen.
    pub citizen: &'a CitizenId,
    /// The data category (`health`).
    pub category: &'a str,
    /// The field's name within the category (`blood_type`).
    pub field: &'a str,
    /// The version of the record the value was sealed for.
    pub record_version: u64,
}

/// Why a field ciphertext could not be sealed or opened. Never carries plaintext; the
/// caller adds the field's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a v1 field ciphertext (too short or another format byte).
    #[error("not a field ciphertext: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The ciphertext names another DEK generation than the key given.
    #[error("sealed under data key generation {found}, opened with generation {given}")]
    WrongGeneration {
        /// Generation named by the ciphertext.
        found: u32,
        /// Generation of the key given.
        given: u32,
    },
    /// Authentication failed: altered, moved to another place, or another key.
    #[error("failed its integrity check (altered, moved or under another key)")]
    Integrity,
    /// The random generator failed while sealing.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The associated data of a field ciphertext: every item length-prefixed or fixed-width,
/// so no two tuples encode alike.
pub fn associated_data(ctx: &FieldContext<'_>, generation: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(
        FIELD_AD_LABEL.len()
            + ctx.citizen.as_str().len()
            + ctx.category.len()
            + ctx.field.len()
            + 32,
    );
    keys::push_lp(&mut ad, FIELD_AD_LABEL);
    ad.push(FIELD_FORMAT_V1);
    keys::push_lp(&mut ad, ctx.citizen.as_str().as_bytes());
    keys::push_lp(&mut ad, ctx.category.as_bytes());
    keys::push_lp(&mut ad, ctx.field.as_bytes());
    ad.extend_from_slice(&ctx.record_version.to_be_bytes());
    ad.extend_from_slice(&generation.to_be_bytes());
    ad
}

/// Seals `plaintext` for `ctx` under `dek`, with a fresh random nonce.
pub fn seal(dek: &Dek, ctx: &FieldContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let nonce = keys::random_nonce()?;
    let ad = associated_data(ctx, dek.id());
    let mut out = Vec::with_capacity(FIELD_OVERHEAD + plaintext.len());
    out.push(FIELD_FORMAT_V1);
    out.extend_from_slice(&dek.id().to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    keys::aead_seal_in_place(dek.secret_bytes(), &nonce, &ad, &mut out, FIELD_HEADER_LEN);
    Ok(out)
}

/// The DEK generation a field ciphertext names (to pick the key that opens it).
pub fn generation_of(sealed: &[u8]) -> Result<u32, EnvelopeError> {
    if sealed.len() < FIELD_OVERHEAD {
        return Err(EnvelopeError::Malformed {
            reason: "shorter than the header and tag",
        });
    }
    if sealed[0] != FIELD_FORMAT_V1 {
        return Err(EnvelopeError::Malformed {
            reason: "unknown format byte",
        });
    }
    let mut g = [0u8; 4];
    g.copy_from_slice(&sealed[1..5]);
    Ok(u32::from_be_bytes(g))
}

/// Opens a field ciphertext sealed for `ctx` under `dek`.
pub fn open(dek: &Dek, ctx: &FieldContext<'_>, sealed: &[u8]) -> Result<Plaintext, EnvelopeError> {
    let generation = generation_of(sealed)?;
    if generation != dek.id() {
        return Err(EnvelopeError::WrongGeneration {
            found: generation,
            given: dek.id(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[5..FIELD_HEADER_LEN]);
    let ad = associated_data(ctx, generation);
    let plain = keys::aead_open(dek.secret_bytes(), &nonce, &ad, &sealed[FIELD_HEADER_LEN..])
        .ok_or(EnvelopeError::Integrity)?;
    Ok(Plaintext(plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx<'a>(c: &'a CitizenId, cat: &'a str, f: &'a str, v: u64) -> FieldContext<'a> {
        FieldContext {
            citizen: c,
            category: cat,
            field: f,
            record_version: v,
        }
    }

    #[test]
    fn citizen_ids_are_validated() {
        assert!(CitizenId::new("c-0001.x_y").is_ok());
        assert!(CitizenId::new("").is_err());
        assert!(CitizenId::new(&"a".repeat(65)).is_err());
        assert!(CitizenId::new("a/b").is_err());
        assert!(CitizenId::new("a\0b").is_err());
    }

    #[test]
    fn associated_data_has_no_ambiguous_tuples() {
        let a = CitizenId::new("ab").unwrap();
        let b = CitizenId::new("a").unwrap();
        // ("ab", "c") vs ("a", "bc") must differ.
        assert_ne!(
            associated_data(&ctx(&a, "c", "f", 1), 1),
            associated_data(&ctx(&b, "bc", "f", 1), 1)
        );
    }

    #[test]
    fn format_is_as_documented() {
        let dek = Dek::generate(0x0102_0304).unwrap();
        let c = CitizenId::new("c1").unwrap();
        let s = seal(&dek, &ctx(&c, "health", "blood_type", 3), b"\"A+\"").unwrap();
        assert_eq!(s.len(), FIELD_OVERHEAD + 4);
        assert_eq!(&s[..5], &[1, 1, 2, 3, 4]);
        assert_eq!(generation_of(&s).unwrap(), 0x0102_0304);
    }

    #[test]
    fn plaintext_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Plaintext::from_slice(b"secret")),
            "Plaintext(..)"
        );
    }

    proptest! {
        #[test]
        fn seal_open_round_trips_and_binds_the_context(
            value in proptest::collection::vec(any::<u8>(), 0..512),
            version in any::<u64>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let dek = Dek::generate(1).unwrap();
            let c = CitizenId::new("citizen-1").unwrap();
            let here = ctx(&c, "tax", "income", version);
            let sealed = seal(&dek, &here, &value).unwrap();
            let opened = open(&dek, &here, &sealed).unwrap();
            prop_assert_eq!(opened.expose_bytes(), &value[..]);
            let elsewhere = ctx(&c, "tax", "income", version.wrapping_add(1));
            prop_assert!(open(&dek, &elsewhere, &sealed).is_err());
            let mut bad = sealed.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 0x01;
            prop_assert!(open(&dek, &here, &bad).is_err());
        }
    }
}
