//! Identifiers, validated on construction, and the legal bases.
//!
//! Every identifier that names a policy object is lowercase snake case ASCII
//! (`[a-z][a-z0-9_]*`, at most 64 bytes), so it is safe in file names, audit entries,
//! receipts and URLs alike. A field name is `category.field`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string breaks the identifier rule of its kind.
    #[error("invalid {kind} {value:?}: {rule}")]
    Invalid {
        /// What kind of identifier was expected (`agency id`, `field name`...).
        kind: &'static str,
        /// The offending text (policy-file vocabulary, never citizen data).
        value: String,
        /// The rule it breaks, phrased as what to write instead.
        rule: &'static str,
    },
}

const SNAKE_RULE: &str =
    "use lowercase snake case: a letter, then letters, digits or '_', at most 64 bytes";

fn is_snake(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

macro_rules! snake_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` (lowercase snake case, at most 64 bytes).
            pub fn new(s: &str) -> Result<Self, IdError> {
                if is_snake(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError::Invalid { kind: $kind, value: s.to_owned(), rule: SNAKE_RULE })
                }
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                if is_snake(&s) {
                    Ok(Self(s))
                } else {
                    Err(IdError::Invalid { kind: $kind, value: s, rule: SNAKE_RULE })
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

snake_id!(
    /// An agency's identifier (`tax_authority`), as enrolled in the registry.
    AgencyId,
    "agency id"
);
snake_id!(
    /// A processing purpose's code (`tax_assessment`).
    PurposeCode,
    "purpose code"
);
snake_id!(
    /// A data category (`health`): the first part of a field name.
    Category,
    "category"
);
snake_id!(
    /// The identifier of a statutory or break-glass rule (`tax_income_assessment`).
    RuleId,
    "rule id"
);

const FIELD_RULE: &str =
    "write category.field, both parts lowercase snake case (for example health.blood_type)";

/// A field's full name, `category.field` (`health.blood_type`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldName(String);

impl FieldName {
    /// Validates `s` as `category.field`, both parts lowercase snake case.
    pub fn new(s: &str) -> Result<Self, IdError> {
        Self::try_from(s.to_owned())
    }

    /// The field name from its category and its name within the category.
    pub fn from_parts(category: &Category, field: &str) -> Result<Self, IdError> {
        Self::try_from(format!("{category}.{field}"))
    }

    /// The full name, `category.field`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The category part (`health` of `health.blood_type`).
    pub fn category(&self) -> &str {
        // Invariant (checked on construction): the name holds exactly one '.'.
        self.0.split_once('.').map_or("", |(c, _)| c)
    }

    /// The part after the category (`blood_type` of `health.blood_type`).
    pub fn field(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, f)| f)
    }
}

impl TryFrom<String> for FieldName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        let ok = s.len() <= 2 * MAX_ID_LEN + 1
            && s.split_once('.')
                .is_some_and(|(c, f)| is_snake(c) && is_snake(f));
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::Invalid {
                kind: "field name",
                value: s,
                rule: FIELD_RULE,
            })
        }
    }
}

impl From<FieldName> for String {
    fn from(v: FieldName) -> String {
        v.0
    }
}

impl FromStr for FieldName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The opaque identifier the engine gives a citizen in consent artefacts (never a name or
/// a national number): 1 to 128 bytes of `[A-Za-z0-9._:-]`, so it fits on a receipt line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CitizenRef(String);

impl CitizenRef {
    /// Validates `s` as an opaque citizen reference.
    pub fn new(s: &str) -> Result<Self, IdError> {
        Self::try_from(s.to_owned())
    }

    /// The reference as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CitizenRef {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::Invalid {
                kind: "citizen reference",
                // The engine's opaque id, never personal data; kept for the message.
                value: s,
                rule: "use 1 to 128 bytes of letters, digits, '.', '_', ':' or '-'",
            })
        }
    }
}

impl From<CitizenRef> for String {
    fn from(v: CitizenRef) -> String {
        v.0
    }
}

impl fmt::Display for CitizenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A consent artefact's identifier: 16 bytes the engine draws from the OS CSPRNG,
/// shown as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConsentId([u8; 16]);

impl ConsentId {
    /// The identifier made of these 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        ConsentId(bytes)
    }

    /// The 16 bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Parses 32 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        let bad = || IdError::Invalid {
            kind: "consent id",
            value: s.to_owned(),
            rule: "write 32 lowercase hex digits",
        };
        if b.len() != 32 {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let hi = hex_val(b[2 * i]).ok_or_else(bad)?;
            let lo = hex_val(b[2 * i + 1]).ok_or_else(bad)?;
            *o = hi << 4 | lo;
        }
        Ok(ConsentId(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for ConsentId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        ConsentId::parse(&s)
    }
}

impl From<ConsentId> for String {
    fn from(v: ConsentId) -> String {
        v.to_string()
    }
}

impl FromStr for ConsentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        ConsentId::parse(s)
    }
}

/// The lawful bases of GDPR Art. 6(1) the vault uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// The citizen consented (Art. 6(1)(a)).
    Consent,
    /// Necessary for a legal obligation of the agency (Art. 6(1)(c)).
    LegalObligation,
    /// Necessary for a task in the public interest or official authority (Art. 6(1)(e)).
    PublicTask,
    /// Necessary to protect someone's vital interests: break-glass (Art. 6(1)(d)).
    VitalInterest,
}

impl LegalBasis {
    /// All four, in GDPR order of mention in this vault's documents.
    pub const ALL: [LegalBasis; 4] = [
        LegalBasis::Consent,
        LegalBasis::LegalObligation,
        LegalBasis::PublicTask,
        LegalBasis::VitalInterest,
    ];

    /// The stable code used in policy files, requests and audit entries.
    pub const fn code(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::LegalObligation => "legal_obligation",
            LegalBasis::PublicTask => "public_task",
            LegalBasis::VitalInterest => "vital_interest",
        }
    }

    /// The W3C Data Privacy Vocabulary concept.
    pub const fn dpv_iri(self) -> &'static str {
        match self {
            LegalBasis::Consent => "https://w3id.org/dpv#Consent",
            LegalBasis::LegalObligation => "https://w3id.org/dpv#LegalObligation",
            LegalBasis::PublicTask => "https://w3id.org/dpv#PublicInterest",
            LegalBasis::VitalInterest => "https://w3id.org/dpv#VitalInterest",
        }
    }

    /// The GDPR provision.
    pub const fn gdpr_article(self) -> &'static str {
        match self {
            LegalBasis::Consent => "GDPR Art. 6(1)(a)",
            LegalBasis::LegalObligation => "GDPR Art. 6(1)(c)",
            LegalBasis::PublicTask => "GDPR Art. 6(1)(e)",
            LegalBasis::VitalInterest => "GDPR Art. 6(1)(d)",
        }
    }

    /// Parses a code (`legal_obligation`).
    pub fn from_code(code: &str) -> Option<Self> {
        LegalBasis::ALL.into_iter().find(|b| b.code() == code)
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_ids_accept_and_refuse() {
        assert!(AgencyId::new("tax_authority").is_ok());
        assert!(AgencyId::new(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "Tax",
            "1tax",
            "_tax",
            "tax-authority",
            "tax authority",
            "täx",
        ] {
            assert!(AgencyId::new(bad).is_err(), "{bad}");
        }
        assert!(AgencyId::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn field_names_have_one_dot_and_two_snake_parts() {
        let f = FieldName::new("health.blood_type").expect("valid");
        assert_eq!((f.category(), f.field()), ("health", "blood_type"));
        for bad in [
            "health",
            "health.",
            ".blood",
            "health.blood.type",
            "Health.x",
            "h.x y",
        ] {
            assert!(FieldName::new(bad).is_err(), "{bad}");
        }
        let c = Category::new("tax").expect("valid");
        assert_eq!(
            FieldName::from_parts(&c, "annual_income").map(|f| f.to_string()),
            Ok("tax.annual_income".to_owned())
        );
    }

    #[test]
    fn consent_ids_round_trip_as_hex() {
        let id = ConsentId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(ConsentId::parse(&id.to_string()), Ok(id));
        assert!(ConsentId::parse(&"AB".repeat(16)).is_err());
        assert!(ConsentId::parse("abcd").is_err());
    }

    #[test]
    fn citizen_refs_fit_on_a_receipt_line() {
        assert!(CitizenRef::new("c-7f3a:01").is_ok());
        for bad in ["", "a b", "a\nb", "é"] {
            assert!(CitizenRef::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn legal_bases_carry_dpv_and_gdpr() {
        assert_eq!(
            LegalBasis::from_code("public_task"),
            Some(LegalBasis::PublicTask)
        );
        assert_eq!(LegalBasis::from_code("contract"), None);
        assert_eq!(
            LegalBasis::VitalInterest.gdpr_article(),
            "GDPR Art. 6(1)(d)"
        );
        assert!(LegalBasis::ALL
            .iter()
            .all(|b| b.dpv_iri().starts_with("https://w3id.org/dpv#")));
    }
}
