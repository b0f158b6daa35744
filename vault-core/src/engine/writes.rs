//! The rule for a record write, in one place: an agency's write, an operator's import row
//! and `vault-cli import`'s check of a whole file before anything is sent all use it.

use policies::{AgencyId, Category, FieldName, IdError, PolicySet};

use crate::envelope::{CitizenId, CitizenIdError, FIELD_OVERHEAD};
use crate::records::{MAX_FIELD_LEN, MAX_RECORD_LEN};

/// Most fields in one record write.
pub const MAX_WRITE_FIELDS: usize = 64;

/// Why a record write is refused before anything is stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteRejected {
    /// The citizen id is malformed.
    #[error(transparent)]
    InvalidCitizen(#[from] CitizenIdError),
    /// The category name is malformed.
    #[error(transparent)]
    InvalidCategory(IdError),
    /// No field.
    #[error("a record write needs at least one field")]
    NoFields,
    /// More fields than one write may carry.
    #[error("{count} fields in one write: at most {MAX_WRITE_FIELDS}; split it")]
    TooManyFields {
        /// Fields sent.
        count: usize,
    },
    /// A field name is malformed.
    #[error(transparent)]
    InvalidField(IdError),
    /// A field is not in the vocabulary of the policy files.
    #[error("field {field} is not in the vocabulary of the policy files")]
    UnknownField {
        /// The field (`category.field`).
        field: String,
    },
    /// The same field twice.
    #[error("field {field} appears twice in one write: send each field once")]
    DuplicateField {
        /// The field (`category.field`).
        field: String,
    },
    /// A value larger than a field may hold.
    #[error("the value of {field} is {len} bytes; at most {MAX_FIELD_LEN}")]
    FieldTooLarge {
        /// The field (`category.field`).
        field: String,
        /// Its size.
        len: usize,
    },
    /// The fields of one write cannot fit in one stored record.
    #[error("the record would take about {len} bytes, more than the limit of {MAX_RECORD_LEN}: split the data over fewer or smaller fields")]
    RecordTooLarge {
        /// The bound computed.
        len: usize,
    },
    /// The agency is not the source of the category.
    #[error("agency {agency} is not the source of category {category} (see the agency registry)")]
    NotSource {
        /// The agency.
        agency: String,
        /// The category.
        category: String,
    },
}

impl WriteRejected {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            WriteRejected::InvalidCitizen(_) => "invalid_citizen",
            WriteRejected::InvalidCategory(_) => "invalid_category",
            WriteRejected::NoFields => "no_fields",
            WriteRejected::TooManyFields { .. }
            | WriteRejected::FieldTooLarge { .. }
            | WriteRejected::RecordTooLarge { .. } => "too_large",
            WriteRejected::InvalidField(_) => "invalid_field",
            WriteRejected::UnknownField { .. } => "unknown_field",
            WriteRejected::DuplicateField { .. } => "duplicate_field",
            WriteRejected::NotSource { .. } => "not_source",
        }
    }
}

/// A write that passed [`check_write`] (or its shape check), with typed names.
#[derive(Clone, Debug)]
pub struct CheckedWrite {
    /// The citizen.
    pub citizen: CitizenId,
    /// The category.
    pub category: Category,
    /// The fields' full names, in the order sent.
    pub fields: Vec<FieldName>,
}

/// An upper bound of the stored size of a record holding just these fields (name and
/// value length each): what a field costs sealed, plus the record's own framing. The
/// store checks the exact size of the merged record when it writes it.
fn record_bound(fields: &[(&str, usize)]) -> usize {
    fields
        .iter()
        .map(|(name, len)| name.len() + len + FIELD_OVERHEAD + 16)
        .sum::<usize>()
        + 64
}

/// Everything but the agency's right to write the category and the record bound: ids,
/// the vocabulary, counts and field sizes. `fields` are (name within the category, value
/// length in bytes). An agency's write runs this, then logs a write it may not make.
pub(crate) fn check_shape(
    policy: &PolicySet,
    citizen: &str,
    category: &str,
    fields: &[(&str, usize)],
) -> Result<CheckedWrite, WriteRejected> {
    let citizen = CitizenId::new(citizen)?;
    let category = Category::new(category).map_err(WriteRejected::InvalidCategory)?;
    if fields.is_empty() {
        return Err(WriteRejected::NoFields);
    }
    if fields.len() > MAX_WRITE_FIELDS {
        return Err(WriteRejected::TooManyFields {
            count: fields.len(),
        });
    }
    let mut names: Vec<FieldName> = Vec::with_capacity(fields.len());
    for &(name, len) in fields {
        let full = FieldName::from_parts(&category, name).map_err(WriteRejected::InvalidField)?;
        if policy.field(&full).is_none() {
            return Err(WriteRejected::UnknownField {
                field: full.as_str().to_owned(),
            });
        }
        if names.contains(&full) {
            return Err(WriteRejected::DuplicateField {
                field: full.as_str().to_owned(),
            });
        }
        if len > MAX_FIELD_LEN {
            return Err(WriteRejected::FieldTooLarge {
                field: full.as_str().to_owned(),
                len,
            });
        }
        names.push(full);
    }
    Ok(CheckedWrite {
        citizen,
        category,
        fields: names,
    })
}

/// The whole rule for `agency` writing `fields` (name within the category, value length)
/// of `citizen`'s `category` under `policy`, including a bound on the record these fields
/// alone make (an import row must fit one stored record; the store checks the exact size
/// of the merged record when it writes it).
pub fn check_write(
    policy: &PolicySet,
    agency: &AgencyId,
    citizen: &str,
    category: &str,
    fields: &[(&str, usize)],
) -> Result<CheckedWrite, WriteRejected> {
    let checked = check_shape(policy, citizen, category, fields)?;
    let len = record_bound(fields);
    if len > MAX_RECORD_LEN {
        return Err(WriteRejected::RecordTooLarge { len });
    }
    if !policy.may_write(agency, &checked.category) {
        return Err(WriteRejected::NotSource {
            agency: agency.as_str().to_owned(),
            category: checked.category.as_str().to_owned(),
        });
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PolicySet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
        PolicySet::load_dir(&dir).expect("the example policies load")
    }

    fn civil() -> AgencyId {
        AgencyId::new("civil_registry").expect("valid id")
    }

    #[test]
    fn a_valid_write_passes_with_typed_names() {
        let c = check_write(
            &policy(),
            &civil(),
            "EE38001010001",
            "identity",
            &[("full_name", 10), ("nationality", 4)],
        )
        .expect("allowed");
        assert_eq!(c.citizen.as_str(), "EE38001010001");
        let names: Vec<&str> = c.fields.iter().map(FieldName::as_str).collect();
        assert_eq!(names, ["identity.full_name", "identity.nationality"]);
    }

    #[test]
    fn each_rule_refuses_with_its_code() {
        let p = policy();
        let big = [("full_name", MAX_FIELD_LEN + 1)];
        let many: Vec<(&str, usize)> = (0..=MAX_WRITE_FIELDS).map(|_| ("full_name", 1)).collect();
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, usize)], &'a str);
        let cases: [Case<'_>; 9] = [
            (
                "bad id!",
                "identity",
                &[("full_name", 1)],
                "invalid_citizen",
            ),
            ("EE1", "Identity", &[("full_name", 1)], "invalid_category"),
            ("EE1", "identity", &[], "no_fields"),
            ("EE1", "identity", &many, "too_large"),
            ("EE1", "identity", &[("Full", 1)], "invalid_field"),
            ("EE1", "identity", &[("shoe_size", 1)], "unknown_field"),
            (
                "EE1",
                "identity",
                &[("full_name", 1), ("full_name", 2)],
                "duplicate_field",
            ),
            ("EE1", "identity", &big, "too_large"),
            ("EE1", "tax", &[("annual_income", 1)], "not_source"),
        ];
        for (citizen, category, fields, code) in cases {
            let e = check_write(&p, &civil(), citizen, category, fields).expect_err("refused");
            assert_eq!(e.code(), code, "{citizen} {category} {fields:?}: {e}");
        }
    }

    #[test]
    fn fields_that_cannot_fit_one_record_are_refused() {
        let p = policy();
        let fields = [
            ("full_name", MAX_FIELD_LEN),
            ("date_of_birth", MAX_FIELD_LEN),
        ];
        let e = check_write(&p, &civil(), "EE1", "identity", &fields).expect_err("refused");
        assert!(matches!(e, WriteRejected::RecordTooLarge { .. }), "{e}");
    }
}
