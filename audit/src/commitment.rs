//! Commitments to free texts: a leaf of format version 4 carries, for each text a caller
//! supplied (an agency's justification, the official behind a request), only
//! `SHA-256(label || field || salt || len(text) || text)`; the text and its salt are kept
//! elsewhere, where they can be destroyed (`docs/audit-log.md`, "Free texts").

use ring::digest::{Context, SHA256};

/// The length of a commitment's salt: 32 fresh random bytes per text.
pub const SALT_LEN: usize = 32;

/// The domain-separation label every commitment starts with (NUL-terminated).
pub const COMMITMENT_LABEL: &[u8] = b"vault audit text commitment v1\0";

/// Which free text of an entry a commitment is to (bound into the commitment, so a text
/// committed as one field does not verify as the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextField {
    /// The official behind a caller's request (item 20 `official`).
    Official,
    /// The justification of an access request (item 18 `justification`).
    Justification,
    /// The reference of the decision that lifted the secrecy of a deferred access (the
    /// `lift` of a disclosure's item 24, version 6).
    Lift,
}

impl TextField {
    /// The field's name, as hashed into the commitment and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Official => "official",
            Self::Justification => "justification",
            Self::Lift => "lift",
        }
    }
}

/// A commitment to one free text: what a leaf of format version 4 carries instead of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commitment(pub [u8; 32]);

impl std::fmt::Debug for Commitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Commitment(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl Commitment {
    /// The commitment to `text` as the field `field`, under `salt`:
    /// `SHA-256(COMMITMENT_LABEL || field || 0x00 || salt || u32be(len(text)) || text)`.
    pub fn to_text(field: TextField, salt: &[u8; SALT_LEN], text: &str) -> Self {
        let mut ctx = Context::new(&SHA256);
        ctx.update(COMMITMENT_LABEL);
        ctx.update(field.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(salt);
        // Texts are bounded far below 4 GiB (`MAX_TEXT_LEN`); a longer one saturates the
        // prefix and still commits to every byte.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(text.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    /// True when `text` under `salt` is what this commits to (the commitment is public:
    /// a plain comparison leaks nothing).
    pub fn matches(&self, field: TextField, salt: &[u8; SALT_LEN], text: &str) -> bool {
        Self::to_text(field, salt, text) == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of `docs/audit-log.md` ("Free texts") and of the entry corpus
    /// (`testdata/entries/vectors.json`, `commitments`), which the page's test checks too.
    #[test]
    fn the_documented_commitment_vector_holds() {
        let salt: [u8; 32] = std::array::from_fn(|i| i as u8);
        let c = Commitment::to_text(TextField::Justification, &salt, "unconscious patient");
        assert_eq!(
            hex::encode(c.0),
            "a94cf4bea4d89fc657257fe59705af3c952a43e7ec370857c33cba6b05b43511"
        );
    }

    #[test]
    fn a_commitment_binds_the_field_the_salt_and_every_byte_of_the_text() {
        let salt = [7u8; 32];
        let c = Commitment::to_text(TextField::Official, &salt, "dr who");
        assert!(c.matches(TextField::Official, &salt, "dr who"));
        assert!(!c.matches(TextField::Justification, &salt, "dr who"));
        assert!(!c.matches(TextField::Official, &[8u8; 32], "dr who"));
        assert!(!c.matches(TextField::Official, &salt, "dr who "));
        assert!(!c.matches(TextField::Official, &salt, ""));
    }
}
