//! The policy-file loader: TOML files in one directory, validated as a whole, every error
//! reported with its file, line and what to do (format: `docs/policies.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::dpv::{self, DpvKind};
use crate::ids::{AgencyId, Category, FieldName, IdError, LegalBasis, PurposeCode, RuleId};
use crate::model::{
    Agency, BreakGlassRule, CategoryDef, Disclosure, FieldDef, PolicySet, Purpose, Sensitivity,
    StatutoryRule,
};

/// The policy-file format version this loader reads.
pub const FORMAT_VERSION: u32 = 1;

/// The largest policy file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The longest validity a break-glass rule may grant: 30 days.
pub const MAX_BREAK_GLASS_SECS: u64 = 30 * 86_400;

/// The longest vocabulary field name (`category.field`), in bytes: the longest an agency
/// may name in a request, so that every audit entry fits one stored value.
pub const MAX_FIELD_NAME_LEN: usize = 64;

/// The longest legal reference of a rule, in bytes (it is copied into audit entries).
pub const MAX_REFERENCE_LEN: usize = 200;

/// One problem in the policy files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyError {
    /// The file, as named to the loader (a path for [`PolicySet::load_dir`]).
    pub file: String,
    /// The 1-based line; 0 when the problem concerns the whole file or directory.
    pub line: u32,
    /// What is wrong.
    pub kind: PolicyErrorKind,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.kind)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.kind)
        }
    }
}

impl std::error::Error for PolicyError {}

/// What is wrong at a [`PolicyError`]'s location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The directory holds no `*.toml` file.
    #[error("no policy files (*.toml) here: point at the directory that holds them")]
    NoPolicyFiles,
    /// The file or directory could not be read.
    #[error("cannot read: {reason}: check the path and its permissions")]
    Io {
        /// The operating system's reason.
        reason: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("file is larger than {max} bytes: split it into several files", max = MAX_FILE_BYTES)]
    TooLarge,
    /// The file is not UTF-8.
    #[error("file is not UTF-8: save it as UTF-8")]
    NotUtf8,
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type.
    #[error("{message}: fix the TOML (see docs/policies.md for the keys)")]
    Syntax {
        /// The TOML parser's description.
        message: String,
    },
    /// The `version` key is not [`FORMAT_VERSION`].
    #[error("unsupported format version {found}: write `version = 1`")]
    UnsupportedVersion {
        /// The version found.
        found: i64,
    },
    /// An identifier or field name breaks its rule.
    #[error("{0}")]
    InvalidId(IdError),
    /// The same identifier is defined twice.
    #[error("duplicate {what} {id} (first defined at {first}): give each {what} a unique id")]
    Duplicate {
        /// What kind of thing (`purpose`, `agency`, `field`, `rule`).
        what: &'static str,
        /// The identifier.
        id: String,
        /// Where it was first defined, `file:line`.
        first: String,
    },
    /// The same value is listed twice in one list.
    #[error("{value} is listed twice in {list}: list it once")]
    Repeated {
        /// The list (`writes`, `purposes`, `fields`).
        list: &'static str,
        /// The value.
        value: String,
    },
    /// A list that must not be empty is empty.
    #[error("{list} is empty: list at least one")]
    EmptyList {
        /// The list.
        list: &'static str,
    },
    /// A text that must say something is empty.
    #[error("{what} is empty: write it out")]
    EmptyText {
        /// Which text (`description`, `name`, `reference`).
        what: &'static str,
    },
    /// A text or name longer than the audit log can carry.
    #[error("{what} is {len} bytes: at most {max}; shorten it")]
    TooLong {
        /// Which text (`field name`, `reference`).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A category that is not in the vocabulary.
    #[error("unknown category {category}: define it with [[category]] or fix the spelling")]
    UnknownCategory {
        /// The category.
        category: String,
    },
    /// A purpose that is not in the vocabulary.
    #[error("unknown purpose {purpose}: define it with [[purpose]] or fix the spelling")]
    UnknownPurpose {
        /// The purpose.
        purpose: String,
    },
    /// A field that is not in the vocabulary.
    #[error("unknown field {field}: add it to its [[category.field]] list or fix the spelling")]
    UnknownField {
        /// The field.
        field: String,
    },
    /// An agency that is not in the registry.
    #[error("unknown agency {agency}: define it with [[agency]] or fix the spelling")]
    UnknownAgency {
        /// The agency.
        agency: String,
    },
    /// A rule names a purpose its agency may not claim.
    #[error("agency {agency} may not claim purpose {purpose}: add it to the agency's purposes or change the rule")]
    PurposeNotClaimable {
        /// The agency.
        agency: String,
        /// The purpose.
        purpose: String,
    },
    /// A legal basis code that does not exist.
    #[error("unknown legal basis {value}: use legal_obligation or public_task")]
    UnknownLegalBasis {
        /// The code found.
        value: String,
    },
    /// A statutory rule names `consent` or `vital_interest`.
    #[error("a statutory rule cannot rest on {basis}: use legal_obligation or public_task (consent comes from artefacts, vital_interest from [[break_glass]])")]
    StatutoryBasisNotAllowed {
        /// The basis found.
        basis: LegalBasis,
    },
    /// A sensitivity class that does not exist.
    #[error("unknown sensitivity {value}: use ordinary or special_category")]
    UnknownSensitivity {
        /// The value found.
        value: String,
    },
    /// A duration that does not parse.
    #[error("invalid duration {value:?}: write a whole number followed by s, m, h or d (for example \"24h\")")]
    InvalidDuration {
        /// The text found.
        value: String,
    },
    /// A break-glass validity outside 1 s ..= 30 days.
    #[error("break-glass validity of {secs} s is outside 1 s to 30 days: shorten it")]
    ValidityOutOfRange {
        /// The validity, in seconds.
        secs: u64,
    },
    /// A statutory rule's `disclosure` that is not exactly one of `after_days = N`
    /// (1..=3650) or `until_lifted = true`.
    #[error("invalid disclosure: {reason}: write disclosure = {{ after_days = N }} (1 to 3650) or disclosure = {{ until_lifted = true }}")]
    InvalidDisclosure {
        /// What is wrong.
        reason: &'static str,
    },
    /// A DPV concept reference that is neither a prefixed name nor an https IRI.
    #[error("invalid DPV concept {value:?}: write a prefixed name (for example dpv:ServiceProvision or pd:HealthRecord) or its https:// IRI")]
    InvalidIri {
        /// The text found.
        value: String,
    },
    /// A DPV concept that is not in the shipped list, or not of the kind the key takes.
    #[error("{value} is not a DPV {kind} concept the vault knows: use one of kind {kind} in policies/dpv/concepts.tsv (for example {example})")]
    UnknownDpvConcept {
        /// The text found.
        value: String,
        /// The kind the key takes (`purpose`, `personal-data`).
        kind: &'static str,
        /// A listed concept of that kind.
        example: &'static str,
    },
}

impl PolicyErrorKind {
    /// A stable code (used by `vault-cli policies check --json` and tests).
    pub const fn code(&self) -> &'static str {
        match self {
            PolicyErrorKind::NoPolicyFiles => "no_policy_files",
            PolicyErrorKind::Io { .. } => "io",
            PolicyErrorKind::TooLarge => "too_large",
            PolicyErrorKind::NotUtf8 => "not_utf8",
            PolicyErrorKind::Syntax { .. } => "syntax",
            PolicyErrorKind::UnsupportedVersion { .. } => "unsupported_version",
            PolicyErrorKind::InvalidId(_) => "invalid_id",
            PolicyErrorKind::Duplicate { .. } => "duplicate",
            PolicyErrorKind::Repeated { .. } => "repeated",
            PolicyErrorKind::EmptyList { .. } => "empty_list",
            PolicyErrorKind::EmptyText { .. } => "empty_text",
            PolicyErrorKind::TooLong { .. } => "too_long",
            PolicyErrorKind::UnknownCategory { .. } => "unknown_category",
            PolicyErrorKind::UnknownPurpose { .. } => "unknown_purpose",
            PolicyErrorKind::UnknownField { .. } => "unknown_field",
            PolicyErrorKind::UnknownAgency { .. } => "unknown_agency",
            PolicyErrorKind::PurposeNotClaimable { .. } => "purpose_not_claimable",
            PolicyErrorKind::UnknownLegalBasis { .. } => "unknown_legal_basis",
            PolicyErrorKind::StatutoryBasisNotAllowed { .. } => "statutory_basis_not_allowed",
            PolicyErrorKind::UnknownSensitivity { .. } => "unknown_sensitivity",
            PolicyErrorKind::InvalidDuration { .. } => "invalid_duration",
            PolicyErrorKind::ValidityOutOfRange { .. } => "validity_out_of_range",
            PolicyErrorKind::InvalidIri { .. } => "invalid_iri",
            PolicyErrorKind::UnknownDpvConcept { .. } => "unknown_dpv_concept",
            PolicyErrorKind::InvalidDisclosure { .. } => "invalid_disclosure",
        }
    }
}

/// Every problem found in a set of policy files (never empty), in file and line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(Vec<PolicyError>);

impl PolicyErrors {
    /// The errors.
    pub fn errors(&self) -> &[PolicyError] {
        &self.0
    }

    /// How many errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `PolicyErrors` holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

// ---- the file format, as serde reads it -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Spanned<i64>,
    #[serde(default)]
    purpose: Vec<Spanned<RawPurpose>>,
    #[serde(default)]
    category: Vec<Spanned<RawCategory>>,
    #[serde(default)]
    agency: Vec<Spanned<RawAgency>>,
    #[serde(default)]
    break_glass: Vec<Spanned<RawBreakGlass>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    code: Spanned<String>,
    description: Spanned<String>,
    dpv: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    id: Spanned<String>,
    description: Spanned<String>,
    sensitivity: Spanned<String>,
    dpv: Option<Spanned<String>>,
    #[serde(default)]
    field: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    description: Spanned<String>,
    sensitivity: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgency {
    id: Spanned<String>,
    name: Spanned<String>,
    #[serde(default)]
    writes: Vec<Spanned<String>>,
    #[serde(default)]
    purposes: Vec<Spanned<String>>,
    #[serde(default)]
    statutory: Vec<Spanned<RawStatutory>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatutory {
    id: Spanned<String>,
    purpose: Spanned<String>,
    fields: Spanned<Vec<Spanned<String>>>,
    legal_basis: Spanned<String>,
    reference: Spanned<String>,
    #[serde(default)]
    disclosure: Option<Spanned<RawDisclosure>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisclosure {
    after_days: Option<i64>,
    until_lifted: Option<bool>,
}

/// A statutory rule's `disclosure`, checked (`docs/policies.md`).
fn disclosure(f: &Parsed, d: &Spanned<RawDisclosure>, sink: &mut Sink) -> Option<Disclosure> {
    let line = f.line(d.span().start);
    let d = d.get_ref();
    let out = match (d.after_days, d.until_lifted) {
        (Some(n), None | Some(false)) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=Disclosure::MAX_DAYS).contains(n))
            .map(Disclosure::AfterDays)
            .ok_or("after_days is outside 1 to 3650"),
        (None, Some(true)) => Ok(Disclosure::UntilLifted),
        (Some(_), Some(true)) => Err("after_days and until_lifted = true exclude each other \
                                     (an operator may lift any deferral sooner)"),
        (None, Some(false)) | (None, None) => Err("it defers nothing"),
    };
    out.map_err(|reason| {
        sink.push(&f.name, line, PolicyErrorKind::InvalidDisclosure { reason });
    })
    .ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakGlass {
    id: Spanned<String>,
    agency: Spanned<String>,
    purpose: Spanned<String>,
    fields: Spanned<Vec<Spanned<String>>>,
    max_validity: Spanned<String>,
    reference: Spanned<String>,
}

// ---- loading ----------------------------------------------------------------------------

/// One parsed file with what is needed to turn byte offsets into lines.
struct Parsed {
    name: String,
    line_starts: Vec<usize>,
    raw: RawFile,
}

impl Parsed {
    fn line(&self, offset: usize) -> u32 {
        let idx = self.line_starts.partition_point(|&s| s <= offset);
        u32::try_from(idx.max(1)).unwrap_or(u32::MAX)
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Collects errors; `at` records a located problem.
struct Sink {
    errors: Vec<PolicyError>,
}

impl Sink {
    fn push(&mut self, file: &str, line: u32, kind: PolicyErrorKind) {
        self.errors.push(PolicyError {
            file: file.to_owned(),
            line,
            kind,
        });
    }
}

/// Where a definition was first seen, for duplicate reports.
type Seen<K> = BTreeMap<K, String>;

fn parse_file(name: &str, bytes: &[u8], sink: &mut Sink) -> Option<Parsed> {
    if bytes.len() > MAX_FILE_BYTES {
        sink.push(name, 0, PolicyErrorKind::TooLarge);
        return None;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let starts = line_starts(&String::from_utf8_lossy(&bytes[..e.valid_up_to()]));
            let line = u32::try_from(starts.len()).unwrap_or(u32::MAX);
            sink.push(name, line, PolicyErrorKind::NotUtf8);
            return None;
        }
    };
    let line_starts = line_starts(text);
    match toml::from_str::<RawFile>(text) {
        Ok(raw) => Some(Parsed {
            name: name.to_owned(),
            line_starts,
            raw,
        }),
        Err(e) => {
            let line = e.span().map_or(1, |s| {
                let idx = line_starts.partition_point(|&st| st <= s.start);
                u32::try_from(idx.max(1)).unwrap_or(u32::MAX)
            });
            sink.push(
                name,
                line,
                PolicyErrorKind::Syntax {
                    message: e.message().trim().to_owned(),
                },
            );
            None
        }
    }
}

impl PolicySet {
    /// Loads every `*.toml` file directly inside `dir` (sorted by name; subdirectories are
    /// not read) and validates them as one policy set. Reports every problem found.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
        let dir_name = dir.display().to_string();
        let io = |e: std::io::Error| {
            PolicyErrors(vec![PolicyError {
                file: dir_name.clone(),
                line: 0,
                kind: PolicyErrorKind::Io {
                    reason: e.to_string(),
                },
            }])
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        let mut sink = Sink { errors: Vec::new() };
        for path in paths {
            let name = path.display().to_string();
            match std::fs::read(&path) {
                Ok(bytes) => sources.push((name, bytes)),
                Err(e) => sink.push(
                    &name,
                    0,
                    PolicyErrorKind::Io {
                        reason: e.to_string(),
                    },
                ),
            }
        }
        if sources.is_empty() && sink.errors.is_empty() {
            sink.push(&dir_name, 0, PolicyErrorKind::NoPolicyFiles);
        }
        build(
            sources.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
            sink,
        )
    }

    /// Validates a policy set given as `(file name, text)` pairs (tests, fuzzing, and
    /// callers that read the files themselves). Reports every problem found.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<PolicySet, PolicyErrors> {
        let mut sink = Sink { errors: Vec::new() };
        if sources.is_empty() {
            sink.push("(no files)", 0, PolicyErrorKind::NoPolicyFiles);
        }
        build(
            sources
                .iter()
                .map(|(n, t)| (n.as_ref(), t.as_ref().as_bytes())),
            sink,
        )
    }
}

fn build<'a>(
    sources: impl Iterator<Item = (&'a str, &'a [u8])>,
    mut sink: Sink,
) -> Result<PolicySet, PolicyErrors> {
    let files: Vec<Parsed> = sources
        .filter_map(|(name, bytes)| parse_file(name, bytes, &mut sink))
        .collect();
    let mut set = PolicySet::default();
    // Phase 1: definitions (purposes, categories and fields), from every file.
    let mut seen_purpose: Seen<PurposeCode> = BTreeMap::new();
    let mut seen_category: Seen<Category> = BTreeMap::new();
    for f in &files {
        let v = &f.raw.version;
        if *v.get_ref() != i64::from(FORMAT_VERSION) {
            sink.push(
                &f.name,
                f.line(v.span().start),
                PolicyErrorKind::UnsupportedVersion {
                    found: *v.get_ref(),
                },
            );
        }
        for p in &f.raw.purpose {
            define_purpose(f, p.get_ref(), &mut set, &mut seen_purpose, &mut sink);
        }
        for c in &f.raw.category {
            define_category(f, c.get_ref(), &mut set, &mut seen_category, &mut sink);
        }
    }
    // Phase 2: agencies and rules, which refer to the definitions.
    let mut seen_agency: Seen<AgencyId> = BTreeMap::new();
    let mut seen_rule: Seen<RuleId> = BTreeMap::new();
    for f in &files {
        for a in &f.raw.agency {
            define_agency(
                f,
                a.get_ref(),
                &mut set,
                &mut seen_agency,
                &mut seen_rule,
                &mut sink,
            );
        }
    }
    for f in &files {
        for b in &f.raw.break_glass {
            define_break_glass(f, b.get_ref(), &mut set, &mut seen_rule, &mut sink);
        }
    }
    if sink.errors.is_empty() {
        Ok(set)
    } else {
        Err(PolicyErrors(sink.errors))
    }
}

/// Validates an identifier at its location, recording the error.
fn id<T>(
    f: &Parsed,
    s: &Spanned<String>,
    make: impl FnOnce(&str) -> Result<T, IdError>,
    sink: &mut Sink,
) -> Option<T> {
    match make(s.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            sink.push(
                &f.name,
                f.line(s.span().start),
                PolicyErrorKind::InvalidId(e),
            );
            None
        }
    }
}

fn text(f: &Parsed, s: &Spanned<String>, what: &'static str, sink: &mut Sink) -> String {
    let t = s.get_ref().trim();
    if t.is_empty() {
        sink.push(
            &f.name,
            f.line(s.span().start),
            PolicyErrorKind::EmptyText { what },
        );
    }
    if what == "reference" && t.len() > MAX_REFERENCE_LEN {
        sink.push(
            &f.name,
            f.line(s.span().start),
            PolicyErrorKind::TooLong {
                what,
                len: t.len(),
                max: MAX_REFERENCE_LEN,
            },
        );
    }
    t.to_owned()
}

/// Records `key` as first seen here, or reports a duplicate. Returns whether it is new.
fn first_seen<K: Ord + Clone + fmt::Display>(
    f: &Parsed,
    at: &Spanned<String>,
    key: &K,
    what: &'static str,
    seen: &mut Seen<K>,
    sink: &mut Sink,
) -> bool {
    let line = f.line(at.span().start);
    if let Some(first) = seen.get(key) {
        sink.push(
            &f.name,
            line,
            PolicyErrorKind::Duplicate {
                what,
                id: key.to_string(),
                first: first.clone(),
            },
        );
        false
    } else {
        seen.insert(key.clone(), format!("{}:{line}", f.name));
        true
    }
}

fn sensitivity(f: &Parsed, s: &Spanned<String>, sink: &mut Sink) -> Option<Sensitivity> {
    match s.get_ref().as_str() {
        "ordinary" => Some(Sensitivity::Ordinary),
        "special_category" => Some(Sensitivity::SpecialCategory),
        other => {
            sink.push(
                &f.name,
                f.line(s.span().start),
                PolicyErrorKind::UnknownSensitivity {
                    value: other.to_owned(),
                },
            );
            None
        }
    }
}

fn define_purpose(
    f: &Parsed,
    p: &RawPurpose,
    set: &mut PolicySet,
    seen: &mut Seen<PurposeCode>,
    sink: &mut Sink,
) {
    let code = id(f, &p.code, PurposeCode::new, sink);
    let description = text(f, &p.description, "description", sink);
    let dpv = p
        .dpv
        .as_ref()
        .and_then(|d| dpv_concept(f, d, DpvKind::Purpose, sink));
    if let Some(code) = code {
        if first_seen(f, &p.code, &code, "purpose", seen, sink) {
            set.purposes.insert(
                code.clone(),
                Purpose {
                    code,
                    description,
                    dpv,
                },
            );
        }
    }
}

fn define_category(
    f: &Parsed,
    c: &RawCategory,
    set: &mut PolicySet,
    seen: &mut Seen<Category>,
    sink: &mut Sink,
) {
    let cat = id(f, &c.id, Category::new, sink);
    let description = text(f, &c.description, "description", sink);
    let default_sensitivity = sensitivity(f, &c.sensitivity, sink);
    let dpv = c
        .dpv
        .as_ref()
        .and_then(|d| dpv_concept(f, d, DpvKind::PersonalData, sink));
    if c.field.is_empty() {
        sink.push(
            &f.name,
            f.line(c.id.span().start),
            PolicyErrorKind::EmptyList { list: "field" },
        );
    }
    let Some(cat) = cat else { return };
    if !first_seen(f, &c.id, &cat, "category", seen, sink) {
        return;
    }
    let mut names = Vec::with_capacity(c.field.len());
    for raw in &c.field {
        let raw = raw.get_ref();
        let line = f.line(raw.name.span().start);
        let name = match FieldName::from_parts(&cat, raw.name.get_ref()) {
            Ok(n) => n,
            Err(e) => {
                sink.push(&f.name, line, PolicyErrorKind::InvalidId(e));
                continue;
            }
        };
        if name.as_str().len() > MAX_FIELD_NAME_LEN {
            sink.push(
                &f.name,
                line,
                PolicyErrorKind::TooLong {
                    what: "field name",
                    len: name.as_str().len(),
                    max: MAX_FIELD_NAME_LEN,
                },
            );
            continue;
        }
        let description = text(f, &raw.description, "description", sink);
        let sens = match &raw.sensitivity {
            Some(s) => sensitivity(f, s, sink),
            None => default_sensitivity,
        };
        if names.contains(&name) {
            sink.push(
                &f.name,
                line,
                PolicyErrorKind::Repeated {
                    list: "field",
                    value: name.to_string(),
                },
            );
            continue;
        }
        names.push(name.clone());
        if let Some(sensitivity) = sens {
            set.fields.insert(
                name.clone(),
                FieldDef {
                    name,
                    description,
                    sensitivity,
                },
            );
        }
    }
    set.categories.insert(
        cat.clone(),
        CategoryDef {
            id: cat,
            description,
            fields: names,
            dpv,
        },
    );
}

/// The IRI of the DPV concept of `kind` that `d` names (prefixed name or IRI), or an
/// error at its line: not a reference, or not a listed concept of that kind.
fn dpv_concept(f: &Parsed, d: &Spanned<String>, kind: DpvKind, sink: &mut Sink) -> Option<String> {
    let v = d.get_ref();
    let line = f.line(d.span().start);
    if !dpv::is_reference(v) {
        sink.push(
            &f.name,
            line,
            PolicyErrorKind::InvalidIri { value: v.clone() },
        );
        return None;
    }
    if let Some(c) = dpv::lookup(kind, v) {
        return Some(c.iri.to_owned());
    }
    let example = match kind {
        DpvKind::PersonalData => "pd:HealthRecord",
        _ => "dpv:ServiceProvision",
    };
    sink.push(
        &f.name,
        line,
        PolicyErrorKind::UnknownDpvConcept {
            value: v.clone(),
            kind: kind.code(),
            example,
        },
    );
    None
}

/// Resolves a list of references, reporting unknown and repeated entries.
fn refs<T: PartialEq + fmt::Display>(
    f: &Parsed,
    list: &[Spanned<String>],
    list_name: &'static str,
    parse: impl Fn(&str) -> Result<T, IdError>,
    known: impl Fn(&T) -> bool,
    unknown: impl Fn(&str) -> PolicyErrorKind,
    sink: &mut Sink,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(list.len());
    for s in list {
        let line = f.line(s.span().start);
        let Some(v) = id(f, s, &parse, sink) else {
            continue;
        };
        if !known(&v) {
            sink.push(&f.name, line, unknown(s.get_ref()));
        } else if out.contains(&v) {
            sink.push(
                &f.name,
                line,
                PolicyErrorKind::Repeated {
                    list: list_name,
                    value: v.to_string(),
                },
            );
        } else {
            out.push(v);
        }
    }
    out
}

fn rule_fields(
    f: &Parsed,
    fields: &Spanned<Vec<Spanned<String>>>,
    set: &PolicySet,
    sink: &mut Sink,
) -> Vec<FieldName> {
    if fields.get_ref().is_empty() {
        sink.push(
            &f.name,
            f.line(fields.span().start),
            PolicyErrorKind::EmptyList { list: "fields" },
        );
    }
    refs(
        f,
        fields.get_ref(),
        "fields",
        FieldName::new,
        |n| set.fields.contains_key(n),
        |v| PolicyErrorKind::UnknownField {
            field: v.to_owned(),
        },
        sink,
    )
}

/// Resolves a rule's purpose against its agency's claimable purposes.
fn rule_purpose(
    f: &Parsed,
    p: &Spanned<String>,
    agency: &AgencyId,
    agency_purposes: &[PurposeCode],
    set: &PolicySet,
    sink: &mut Sink,
) -> Option<PurposeCode> {
    let code = id(f, p, PurposeCode::new, sink)?;
    let line = f.line(p.span().start);
    if !set.purposes.contains_key(&code) {
        sink.push(
            &f.name,
            line,
            PolicyErrorKind::UnknownPurpose {
                purpose: code.to_string(),
            },
        );
        None
    } else if !agency_purposes.contains(&code) {
        sink.push(
            &f.name,
            line,
            PolicyErrorKind::PurposeNotClaimable {
                agency: agency.to_string(),
                purpose: code.to_string(),
            },
        );
        None
    } else {
        Some(code)
    }
}

fn define_agency(
    f: &Parsed,
    a: &RawAgency,
    set: &mut PolicySet,
    seen: &mut Seen<AgencyId>,
    seen_rule: &mut Seen<RuleId>,
    sink: &mut Sink,
) {
    let agency_id = id(f, &a.id, AgencyId::new, sink);
    let name = text(f, &a.name, "name", sink);
    let writes = refs(
        f,
        &a.writes,
        "writes",
        Category::new,
        |c| set.categories.contains_key(c),
        |v| PolicyErrorKind::UnknownCategory {
            category: v.to_owned(),
        },
        sink,
    );
    let purposes = refs(
        f,
        &a.purposes,
        "purposes",
        PurposeCode::new,
        |p| set.purposes.contains_key(p),
        |v| PolicyErrorKind::UnknownPurpose {
            purpose: v.to_owned(),
        },
        sink,
    );
    let Some(agency_id) = agency_id else { return };
    if !first_seen(f, &a.id, &agency_id, "agency", seen, sink) {
        return;
    }
    let mut statutory = Vec::with_capacity(a.statutory.len());
    for r in &a.statutory {
        let r = r.get_ref();
        let rule_id = id(f, &r.id, RuleId::new, sink);
        let purpose = rule_purpose(f, &r.purpose, &agency_id, &purposes, set, sink);
        let fields = rule_fields(f, &r.fields, set, sink);
        let basis_line = f.line(r.legal_basis.span().start);
        let basis = match LegalBasis::from_code(r.legal_basis.get_ref()) {
            Some(b @ (LegalBasis::LegalObligation | LegalBasis::PublicTask)) => Some(b),
            Some(b) => {
                sink.push(
                    &f.name,
                    basis_line,
                    PolicyErrorKind::StatutoryBasisNotAllowed { basis: b },
                );
                None
            }
            None => {
                sink.push(
                    &f.name,
                    basis_line,
                    PolicyErrorKind::UnknownLegalBasis {
                        value: r.legal_basis.get_ref().clone(),
                    },
                );
                None
            }
        };
        let legal_reference = text(f, &r.reference, "reference", sink);
        let deferral = r.disclosure.as_ref().map(|d| disclosure(f, d, sink));
        let Some(rule_id) = rule_id else { continue };
        let fresh = first_seen(f, &r.id, &rule_id, "rule", seen_rule, sink);
        if let (true, Some(purpose), Some(legal_basis)) = (fresh, purpose, basis) {
            statutory.push(StatutoryRule {
                id: rule_id,
                agency: agency_id.clone(),
                purpose,
                fields,
                legal_basis,
                legal_reference,
                disclosure: deferral.flatten(),
            });
        }
    }
    set.agencies.insert(
        agency_id.clone(),
        Agency {
            id: agency_id,
            name,
            writes,
            purposes,
            statutory,
            break_glass: Vec::new(),
        },
    );
}

/// Parses `<n>s`, `<n>m`, `<n>h` or `<n>d` into seconds.
fn parse_duration(s: &str) -> Option<u64> {
    let unit = match s.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86_400,
        _ => return None,
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

fn define_break_glass(
    f: &Parsed,
    b: &RawBreakGlass,
    set: &mut PolicySet,
    seen_rule: &mut Seen<RuleId>,
    sink: &mut Sink,
) {
    let rule_id = id(f, &b.id, RuleId::new, sink);
    let agency_id = id(f, &b.agency, AgencyId::new, sink);
    let agency_purposes = match agency_id.as_ref().map(|a| set.agencies.get(a)) {
        Some(Some(a)) => Some(a.purposes.clone()),
        Some(None) => {
            sink.push(
                &f.name,
                f.line(b.agency.span().start),
                PolicyErrorKind::UnknownAgency {
                    agency: b.agency.get_ref().clone(),
                },
            );
            None
        }
        None => None,
    };
    let purpose = match (&agency_id, &agency_purposes) {
        (Some(a), Some(ps)) => rule_purpose(f, &b.purpose, a, ps, set, sink),
        _ => None,
    };
    let fields = rule_fields(f, &b.fields, set, sink);
    let vline = f.line(b.max_validity.span().start);
    let validity = match parse_duration(b.max_validity.get_ref()) {
        Some(secs) if (1..=MAX_BREAK_GLASS_SECS).contains(&secs) => Some(secs),
        Some(secs) => {
            sink.push(&f.name, vline, PolicyErrorKind::ValidityOutOfRange { secs });
            None
        }
        None => {
            sink.push(
                &f.name,
                vline,
                PolicyErrorKind::InvalidDuration {
                    value: b.max_validity.get_ref().clone(),
                },
            );
            None
        }
    };
    let legal_reference = text(f, &b.reference, "reference", sink);
    let Some(rule_id) = rule_id else { return };
    let fresh = first_seen(f, &b.id, &rule_id, "rule", seen_rule, sink);
    if let (true, Some(agency), Some(purpose), Some(max_validity_secs)) =
        (fresh, agency_id, purpose, validity)
    {
        if let Some(a) = set.agencies.get_mut(&agency) {
            a.break_glass.push(BreakGlassRule {
                id: rule_id,
                agency,
                purpose,
                fields,
                max_validity_secs,
                legal_reference,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
version = 1

[[purpose]]
code = "care"
description = "Medical care"
dpv = "https://w3id.org/dpv#ServiceProvision"

[[category]]
id = "health"
description = "Health record"
sensitivity = "special_category"

[[category.field]]
name = "blood_type"
description = "ABO and Rh type"

[[category.field]]
name = "insurer"
description = "Health insurer"
sensitivity = "ordinary"

[[agency]]
id = "hospital"
name = "General Hospital"
writes = ["health"]
purposes = ["care"]

[[agency.statutory]]
id = "hospital_insurer"
purpose = "care"
fields = ["health.insurer"]
legal_basis = "public_task"
reference = "Health Care Act, s. 3"

[[break_glass]]
id = "emergency"
agency = "hospital"
purpose = "care"
fields = ["health.blood_type"]
max_validity = "24h"
reference = "Emergency Care Act, s. 9"
"#;

    #[test]
    fn a_minimal_set_loads_with_everything_resolved() {
        let set = PolicySet::from_sources(&[("min.toml", MINIMAL)]).expect("valid");
        let h = AgencyId::new("hospital").expect("id");
        let a = set.agency(&h).expect("hospital");
        assert_eq!(a.statutory.len(), 1);
        assert_eq!(a.break_glass.len(), 1);
        assert_eq!(a.break_glass[0].max_validity_secs, 86_400);
        let bt = FieldName::new("health.blood_type").expect("name");
        assert_eq!(
            set.field(&bt).map(|f| f.sensitivity),
            Some(Sensitivity::SpecialCategory)
        );
        let ins = FieldName::new("health.insurer").expect("name");
        assert_eq!(
            set.field(&ins).map(|f| f.sensitivity),
            Some(Sensitivity::Ordinary)
        );
        assert!(set.may_write(&h, &Category::new("health").expect("cat")));
        assert!(!set.may_write(&h, &Category::new("tax").expect("cat")));
    }

    #[test]
    fn field_names_and_references_longer_than_the_log_carries_are_refused() {
        let long_field = "f".repeat(MAX_FIELD_NAME_LEN - "health.".len() + 1);
        let long_ref = "r".repeat(MAX_REFERENCE_LEN + 1);
        let src = MINIMAL
            .replacen("name = \"insurer\"", &format!("name = \"{long_field}\""), 1)
            .replacen("Health Care Act, s. 3", &long_ref, 1);
        let errs = PolicySet::from_sources(&[("min.toml", src.as_str())]).expect_err("too long");
        let codes: Vec<&str> = errs.errors().iter().map(|e| e.kind.code()).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == "too_long").count(),
            2,
            "{errs}"
        );
        let ok = "f".repeat(MAX_FIELD_NAME_LEN - "health.".len());
        let src = MINIMAL
            .replace("health.insurer", &format!("health.{ok}"))
            .replacen("name = \"insurer\"", &format!("name = \"{ok}\""), 1)
            .replacen("Health Care Act, s. 3", &"r".repeat(MAX_REFERENCE_LEN), 1);
        let set = PolicySet::from_sources(&[("min.toml", src.as_str())]);
        assert!(set.is_ok(), "{set:?}");
    }

    #[test]
    fn files_may_come_in_any_order() {
        let (vocab, rest) = MINIMAL.split_at(MINIMAL.find("[[agency]]").expect("agency"));
        let rest = format!("version = 1\n{rest}");
        let a = PolicySet::from_sources(&[("a.toml", rest.as_str()), ("b.toml", vocab)]);
        assert!(a.is_ok(), "{a:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("2d"), Some(172_800));
        for bad in ["", "h", "1", "1x", "-1h", "1.5h", " 1h", "9999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines_are_one_based() {
        let set = PolicySet::from_sources(&[("x.toml", "version = 1\n\nversion = 2\n")]);
        let errs = set.expect_err("duplicate key");
        assert_eq!(errs.errors()[0].line, 3);
        let errs = PolicySet::from_sources(&[("x.toml", "version = 2\n")]).expect_err("v2");
        assert_eq!(
            errs.to_string(),
            "x.toml:1: unsupported format version 2: write `version = 1`"
        );
    }

    #[test]
    fn a_statutory_rule_defers_disclosure_by_days_or_until_lifted() {
        let with = |d: &str| {
            let text = MINIMAL.replace(
                "reference = \"Health Care Act, s. 3\"\n",
                &format!("reference = \"Health Care Act, s. 3\"\ndisclosure = {d}\n"),
            );
            PolicySet::from_sources(&[("p.toml", text.as_str())])
        };
        let rule = |set: PolicySet| set.statutory_rules().next().unwrap().disclosure;
        assert_eq!(
            rule(with("{ after_days = 90 }").unwrap()),
            Some(Disclosure::AfterDays(90))
        );
        assert_eq!(
            rule(with("{ until_lifted = true }").unwrap()),
            Some(Disclosure::UntilLifted)
        );
        assert_eq!(
            rule(PolicySet::from_sources(&[("p.toml", MINIMAL)]).unwrap()),
            None
        );
        let line = MINIMAL
            .lines()
            .position(|l| l.starts_with("reference = \"Health"))
            .unwrap()
            + 2;
        for bad in [
            "{ after_days = 0 }",
            "{ after_days = 3651 }",
            "{ after_days = -1 }",
            "{ after_days = 9, until_lifted = true }",
            "{ until_lifted = false }",
            "{}",
        ] {
            let errs = with(bad).expect_err(bad);
            let e = &errs.errors()[0];
            assert_eq!(
                (e.kind.code(), e.line),
                ("invalid_disclosure", line as u32),
                "{bad}"
            );
            assert!(
                e.to_string()
                    .starts_with(&format!("p.toml:{line}: invalid disclosure: ")),
                "{e}"
            );
        }
        assert!(
            with("{ after_day = 9 }").is_err(),
            "unknown keys are refused"
        );
        // A deferring rule changes the set's digest; a set without one keeps its digest.
        let plain = PolicySet::from_sources(&[("p.toml", MINIMAL)]).unwrap();
        assert_ne!(
            plain.canonical_bytes(),
            with("{ after_days = 90 }").unwrap().canonical_bytes()
        );
        assert!(!String::from_utf8(plain.canonical_bytes())
            .unwrap()
            .contains("disclosure"));
    }
}
