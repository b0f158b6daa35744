//! Compliance replay of an audit export (`vault-cli audit replay`): every access decision
//! of a verified log evaluated again with the pure evaluator, under the policy set the
//! entry names (found by its digest among the sets given) and the consent state rebuilt
//! from the log's own consent entries, and compared with what the entry says was released
//! and withheld, on what basis.
//!
//! It lives here, beside the other offline checks, because it needs both `audit` (the
//! export, the entries) and `policies` (the evaluator), which know nothing of each other;
//! the entry an access would have made is built by the engine's own pure `access_entry`.
//!
//! What counts as a finding (`docs/audit-log.md`, "Compliance replay"): a field released
//! that the policy did not allow, a field refused that it would have allowed, another
//! refusal reason, another basis (legal basis, reference, consents used, decision, review),
//! a decision naming a policy set none of the given sets has or naming none, an entry the
//! vault could not have written (ids that do not parse), and a consent step the consent
//! state machine refuses. Decisions the log cannot replay are counted, not reported: those
//! written before entry format 5 (no claim), and those about a subject whose consent
//! history begins before format 5 (the log does not hold the terms of its artefacts).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use audit::export::{Summary, VerifyError};
use audit::{ActorKind, Entry, SubjectTag};
use policies::{
    evaluate, AccessRequest, AgencyId, CitizenRef, ConsentArtefact, ConsentId, ConsentTerms,
    FieldName, LegalBasis, Outcome, PolicySet, PurposeCode, Timestamp,
};

use crate::engine::{hex, policy_set_digest};
use crate::offline::OfflineError;

/// A policy set given to the replay, with the directory it was read from.
#[derive(Debug)]
pub struct ReplaySet {
    /// Where its files are.
    pub dir: PathBuf,
    /// Its digest ([`crate::policy_set_digest`]).
    pub digest: [u8; 32],
    set: PolicySet,
}

impl ReplaySet {
    /// Loads and checks the policy files of `dir`, as the vault does at open.
    pub fn load(dir: &Path) -> Result<Self, OfflineError> {
        let set = PolicySet::load_dir(dir).map_err(|errors| OfflineError::InvalidPolicies {
            dir: dir.to_path_buf(),
            errors,
        })?;
        Ok(Self::new(dir.to_path_buf(), set))
    }

    /// A set already loaded.
    pub fn new(dir: PathBuf, set: PolicySet) -> Self {
        Self {
            dir,
            digest: policy_set_digest(&set),
            set,
        }
    }
}

/// What a finding is about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// The entry released a field the policy in force did not allow.
    ReleasedNotAllowed {
        /// The field.
        field: String,
        /// Why the policy withholds it (a reason code).
        policy_reason: &'static str,
    },
    /// The entry withheld a field the policy in force allowed.
    RefusedButAllowed {
        /// The field.
        field: String,
        /// The reason the entry gives.
        entry_reason: String,
    },
    /// Both withhold the field, for other reasons.
    ReasonDiffers {
        /// The field.
        field: String,
        /// The entry's reason.
        entry_reason: String,
        /// The policy's reason.
        policy_reason: &'static str,
    },
    /// The fields agree but an item saying on what basis does not.
    BasisDiffers {
        /// The item (`legal_basis`, `legal_reference`, `consent_id`, `decision`, `review`).
        item: &'static str,
        /// What the entry says.
        entry: String,
        /// What the replay says.
        replay: String,
    },
    /// The decision names a policy set none of the given sets has.
    UnknownPolicySet {
        /// Its digest, hex.
        digest: String,
    },
    /// A decision of entry format 5 that names no policy set.
    NoPolicySet,
    /// The entry holds what the vault could not have written.
    Malformed {
        /// What.
        what: String,
    },
    /// A consent entry the consent state machine refuses, or one naming an artefact the
    /// log never created.
    ConsentStep {
        /// The artefact.
        consent_id: String,
        /// Why.
        problem: String,
    },
}

impl FindingKind {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ReleasedNotAllowed { .. } => "released_not_allowed",
            Self::RefusedButAllowed { .. } => "refused_but_allowed",
            Self::ReasonDiffers { .. } => "reason_differs",
            Self::BasisDiffers { .. } => "basis_differs",
            Self::UnknownPolicySet { .. } => "unknown_policy_set",
            Self::NoPolicySet => "no_policy_set",
            Self::Malformed { .. } => "malformed_decision",
            Self::ConsentStep { .. } => "consent_step",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReleasedNotAllowed {
                field,
                policy_reason,
            } => write!(
                f,
                "released {field}, which the policy in force did not allow ({policy_reason})"
            ),
            Self::RefusedButAllowed {
                field,
                entry_reason,
            } => write!(
                f,
                "withheld {field} ({entry_reason}), which the policy in force allowed"
            ),
            Self::ReasonDiffers {
                field,
                entry_reason,
                policy_reason,
            } => write!(
                f,
                "withheld {field} as {entry_reason}, the policy in force says {policy_reason}"
            ),
            Self::BasisDiffers {
                item,
                entry,
                replay,
            } => write!(f, "{item} is {entry}, the replay gives {replay}"),
            Self::UnknownPolicySet { digest } => write!(
                f,
                "made under policy set sha256:{digest}, which none of the given policy directories holds: add that set with --policies"
            ),
            Self::NoPolicySet => write!(f, "a decision that names no policy set"),
            Self::Malformed { what } => write!(f, "not a decision the vault writes: {what}"),
            Self::ConsentStep {
                consent_id,
                problem,
            } => write!(f, "consent {consent_id}: {problem}"),
        }
    }
}

/// One finding: the entry and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The entry's index.
    pub index: u64,
    /// What.
    pub kind: FindingKind,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}: {}", self.index, self.kind)
    }
}

/// The outcome of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries read.
    pub entries: u64,
    /// Access decisions evaluated again.
    pub decisions: u64,
    /// Access decisions that cannot be replayed (written before entry format 5, or about
    /// a subject whose consent history begins before it).
    pub not_replayable: u64,
    /// Consent entries applied to the rebuilt consent state.
    pub consent_steps: u64,
    /// Every finding, in entry order.
    pub findings: Vec<Finding>,
}

/// A subject's consent artefacts, ordered as the vault's index reads them: by agency,
/// purpose, then id bytes, so one request's artefacts are one contiguous run.
#[derive(Default)]
struct Artefacts(Vec<ConsentArtefact>);

impl Artefacts {
    fn order(a: &ConsentArtefact) -> (&str, &str, [u8; 16]) {
        (a.agency().as_str(), a.purpose().as_str(), a.id().to_bytes())
    }

    fn insert(&mut self, a: ConsentArtefact) {
        let at = self.0.partition_point(|x| Self::order(x) < Self::order(&a));
        self.0.insert(at, a);
    }

    fn find(&mut self, id: ConsentId) -> Option<&mut ConsentArtefact> {
        self.0.iter_mut().find(|a| a.id() == id)
    }

    fn of(&self, agency: &AgencyId, purpose: &PurposeCode) -> &[ConsentArtefact] {
        let key = (agency.as_str(), purpose.as_str());
        let start = self
            .0
            .partition_point(|a| (a.agency().as_str(), a.purpose().as_str()) < key);
        let len = self.0[start..]
            .iter()
            .take_while(|a| (a.agency().as_str(), a.purpose().as_str()) == key)
            .count();
        &self.0[start..start + len]
    }
}

/// The replay's state: the sets by digest, the consent state rebuilt so far, the report.
pub struct Replay {
    sets: HashMap<[u8; 32], PolicySet>,
    /// The one set every decision is judged under, whatever set it names (an audit
    /// against the published policy rather than the one the vault ran).
    against: Option<PolicySet>,
    consents: HashMap<SubjectTag, Artefacts>,
    /// Subjects with consent entries written before format 5.
    legacy: HashSet<SubjectTag>,
    report: ReplayReport,
    /// The requests parsed lately: a log repeats a few requests many times.
    requests: Vec<AccessRequest>,
}

/// Most requests [`Replay`] keeps parsed.
const REQUEST_CACHE: usize = 16;

/// Whether `r` is the request entry `e` records.
fn same_request(r: &AccessRequest, e: &Entry, claim: &audit::Claim) -> bool {
    r.agency.as_str() == e.actor.id
        && Some(r.purpose.as_str()) == e.purpose.as_deref()
        && r.fields
            .iter()
            .map(FieldName::as_str)
            .eq(e.requested.iter().map(String::as_str))
        && r.legal_basis.map(LegalBasis::code) == claim.legal_basis.as_deref()
        && r.justification.is_some() == claim.justified
}

/// An id parsed from an entry, or the finding that it does not parse.
fn parse<T, E>(
    what: &str,
    s: &str,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, FindingKind> {
    f(s).map_err(|_| FindingKind::Malformed {
        what: format!("{what} {s:?} does not parse"),
    })
}

/// The purpose an entry names, parsed.
fn entry_purpose(e: &Entry) -> Result<PurposeCode, FindingKind> {
    parse(
        "purpose",
        e.purpose.as_deref().unwrap_or_default(),
        PurposeCode::new,
    )
}

/// The fields an entry requested, parsed.
fn entry_fields(e: &Entry) -> Result<Vec<FieldName>, FindingKind> {
    e.requested
        .iter()
        .map(|f| parse("field", f, FieldName::new))
        .collect()
}

fn citizen_ref(tag: &SubjectTag) -> CitizenRef {
    CitizenRef::new(&hex(&tag.0)).expect("64 hex digits are a valid citizen reference")
}

fn or_none(s: Option<&str>) -> String {
    s.map_or_else(|| "none".to_owned(), |s| format!("{s:?}"))
}

impl Replay {
    /// A replay under these sets (found by their digests).
    pub fn new(sets: impl IntoIterator<Item = ReplaySet>) -> Self {
        Self {
            sets: sets.into_iter().map(|s| (s.digest, s.set)).collect(),
            against: None,
            consents: HashMap::new(),
            legacy: HashSet::new(),
            report: ReplayReport::default(),
            requests: Vec::new(),
        }
    }

    /// A replay that judges every decision under `set`, whatever set the decision names.
    pub fn against(set: ReplaySet) -> Self {
        let mut r = Self::new([]);
        r.against = Some(set.set);
        r
    }

    /// Takes the next entry of the log (in index order).
    pub fn entry(&mut self, index: u64, e: &Entry) {
        self.report.entries += 1;
        let found = match e.action.as_str() {
            "access" => self.access(index, e),
            "consent.request" | "consent.grant" | "consent.revoke" | "consent.deny" => {
                self.consent(e)
            }
            "erasure" => {
                if let Some(tag) = e.subject {
                    self.consents.remove(&tag);
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(kind) = found {
            self.report.findings.push(Finding { index, kind });
        }
    }

    /// The report, once every entry was given.
    pub fn finish(self) -> ReplayReport {
        self.report
    }

    fn now(e: &Entry) -> Timestamp {
        Timestamp::from_unix_seconds(e.time_ms / 1000)
    }

    fn consent(&mut self, e: &Entry) -> Result<(), FindingKind> {
        let Some(tag) = e.subject else {
            return Ok(());
        };
        let (Some(terms), Some(id)) = (&e.terms, &e.consent_id) else {
            // A refused request stores nothing; an entry before format 5 has no terms.
            if e.claim.is_none() && e.policy_set.is_none() && e.decision != "refused" {
                self.legacy.insert(tag);
            }
            return Ok(());
        };
        self.report.consent_steps += 1;
        let now = Self::now(e);
        let id_parsed = parse("consent_id", id, ConsentId::parse)?;
        let step = |problem: String| FindingKind::ConsentStep {
            consent_id: id.clone(),
            problem,
        };
        let artefacts = self.consents.entry(tag).or_default();
        if let Some(a) = artefacts.find(id_parsed) {
            let done = match e.action.as_str() {
                "consent.grant" => a.grant(now),
                "consent.revoke" => a.revoke(now),
                "consent.deny" => a.deny(now),
                _ => {
                    return Err(step(
                        "requested again under an id the log already holds".to_owned(),
                    ))
                }
            };
            return done.map_err(|err| step(err.to_string()));
        }
        let direct = match e.action.as_str() {
            "consent.request" => false,
            "consent.grant" => true,
            _ if self.legacy.contains(&tag) => return Ok(()),
            _ => return Err(step("names an artefact the log never created".to_owned())),
        };
        let supersedes = terms
            .supersedes
            .as_deref()
            .map(|s| parse("terms.supersedes", s, ConsentId::parse))
            .transpose()?;
        let old = supersedes.and_then(|s| artefacts.find(s).map(|a| a.clone()));
        let terms = ConsentTerms {
            agency: parse("terms.agency", &terms.agency, AgencyId::new)?,
            purpose: entry_purpose(e)?,
            fields: entry_fields(e)?,
            valid_from: Timestamp::from_unix_seconds(terms.valid_from),
            expires_at: Timestamp::from_unix_seconds(terms.expires_at),
            max_uses: terms
                .max_uses
                .map(|n| parse("terms.max_uses", &n.to_string(), str::parse::<u32>))
                .transpose()?,
            data_life: terms.data_life,
        };
        let create = if direct {
            ConsentArtefact::grant_direct
        } else {
            ConsentArtefact::request
        };
        let a = create(id_parsed, citizen_ref(&tag), terms, old.as_ref(), now)
            .map_err(|err| step(err.to_string()))?;
        artefacts.insert(a);
        Ok(())
    }

    fn access(&mut self, index: u64, e: &Entry) -> Result<(), FindingKind> {
        let Some(claim) = &e.claim else {
            self.report.not_replayable += 1;
            return Ok(());
        };
        let set = match &self.against {
            Some(set) => set,
            None => {
                let digest = e.policy_set.ok_or(FindingKind::NoPolicySet)?;
                self.sets
                    .get(&digest)
                    .ok_or_else(|| FindingKind::UnknownPolicySet {
                        digest: hex(&digest),
                    })?
            }
        };
        if e.subject.is_some_and(|t| self.legacy.contains(&t)) {
            self.report.not_replayable += 1;
            return Ok(());
        }
        if e.actor.kind != ActorKind::Agency {
            return Err(FindingKind::Malformed {
                what: "an access by another actor than an agency".to_owned(),
            });
        }
        let cached = self.requests.iter().position(|r| same_request(r, e, claim));
        let at = match cached {
            Some(at) => at,
            None => {
                let request = AccessRequest {
                    agency: parse("agency", &e.actor.id, AgencyId::new)?,
                    purpose: entry_purpose(e)?,
                    fields: entry_fields(e)?,
                    legal_basis: claim
                        .legal_basis
                        .as_deref()
                        .map(|b| {
                            parse("claimed legal basis", b, |b| {
                                LegalBasis::from_code(b).ok_or(())
                            })
                        })
                        .transpose()?,
                    // Only whether it is blank counts for the evaluation.
                    justification: claim.justified.then(|| "justified".to_owned()),
                };
                if self.requests.len() == REQUEST_CACHE {
                    self.requests.remove(0);
                }
                self.requests.push(request);
                self.requests.len() - 1
            }
        };
        let request = &self.requests[at];
        self.report.decisions += 1;
        let now = Self::now(e);
        let artefacts = match e.subject.and_then(|t| self.consents.get(&t)) {
            Some(a) => a.of(&request.agency, &request.purpose),
            None => &[],
        };
        let decision = evaluate(set, request, artefacts, now);
        let released = |f: &str| e.released.iter().any(|r| r == f);
        let withheld = |f: &str| {
            e.withheld
                .iter()
                .find(|w| w.field == f)
                .map(|w| w.reason.as_str())
        };
        let mut found = Vec::new();
        let mut note = |k: FindingKind| found.push(k);
        let covert = matches!(e.deferral, Some(audit::Deferral::Deferred { .. }));
        for d in &decision.fields {
            let field = d.field.as_str();
            match d.outcome {
                Outcome::Released(_) if released(field) || withheld(field) == Some("no_data") => {}
                // A covert access withholds what it would release under the citizen's
                // consent. Until its disclosure the replay does not know whose access it
                // was, so it has no consent to judge by: "no consent" is that outcome.
                Outcome::Withheld(policies::Reason::NoConsent)
                    if covert && withheld(field) == Some(crate::engine::COVERT_ACCESS) => {}
                Outcome::Released(_) => note(FindingKind::RefusedButAllowed {
                    field: field.to_owned(),
                    entry_reason: withheld(field).unwrap_or("not listed").to_owned(),
                }),
                Outcome::Withheld(r) if released(field) => note(FindingKind::ReleasedNotAllowed {
                    field: field.to_owned(),
                    policy_reason: r.code(),
                }),
                Outcome::Withheld(r) if withheld(field) != Some(r.code()) => {
                    note(FindingKind::ReasonDiffers {
                        field: field.to_owned(),
                        entry_reason: withheld(field).unwrap_or("not listed").to_owned(),
                        policy_reason: r.code(),
                    })
                }
                Outcome::Withheld(_) => {}
            }
        }
        for f in &e.released {
            if !e.requested.contains(f) {
                note(FindingKind::ReleasedNotAllowed {
                    field: f.clone(),
                    policy_reason: "not_requested",
                });
            }
        }
        if found.is_empty() {
            for (item, entry, replay) in basis_items(&decision, e, request, &withheld) {
                found.push(FindingKind::BasisDiffers {
                    item,
                    entry,
                    replay,
                });
            }
        }
        // The uses the vault recorded: those of the artefacts the entry names.
        if let (Some(ids), Some(tag)) = (&e.consent_id, e.subject) {
            if let Some(artefacts) = self.consents.get_mut(&tag) {
                for id in ids.split(',') {
                    if let Some(a) = ConsentId::parse(id).ok().and_then(|id| artefacts.find(id)) {
                        // A use the state machine refuses was already reported above.
                        let _ = a.record_use(now);
                    }
                }
            }
        }
        self.report
            .findings
            .extend(found.into_iter().map(|kind| Finding { index, kind }));
        Ok(())
    }
}

/// The legal bases in the order the engine lists them (`access_entry`: sorted codes).
const BASES: [LegalBasis; 4] = [
    LegalBasis::Consent,
    LegalBasis::LegalObligation,
    LegalBasis::PublicTask,
    LegalBasis::VitalInterest,
];

/// The items of the entry that say on what basis (`legal_basis`, `legal_reference`,
/// `consent_id`, `decision`, `review`) that differ from what the engine's `access_entry`
/// writes for `decision`: `(item, entry's, replay's)`. The same rules as `access_entry`,
/// without building an entry (a replay does this for every decision; the unit tests hold
/// the two to the same answers).
fn basis_items<'e>(
    decision: &policies::Decision<'_>,
    e: &'e Entry,
    request: &AccessRequest,
    withheld: &dyn Fn(&str) -> Option<&'e str>,
) -> Vec<(&'static str, String, String)> {
    let mut bases = [false; 4];
    let mut references: Vec<&str> = Vec::new();
    let mut used: Vec<ConsentId> = Vec::new();
    let (mut released, mut not_released) = (0usize, 0usize);
    for d in &decision.fields {
        match d.outcome {
            Outcome::Released(basis) if withheld(d.field.as_str()) != Some("no_data") => {
                released += 1;
                let b = basis.legal_basis();
                if let Some(i) = BASES.iter().position(|x| *x == b) {
                    bases[i] = true;
                }
                match basis {
                    policies::Basis::Consent { artefact_id } => {
                        if !used.contains(&artefact_id) {
                            used.push(artefact_id);
                        }
                    }
                    policies::Basis::Statutory {
                        legal_reference, ..
                    }
                    | policies::Basis::VitalInterest {
                        legal_reference, ..
                    } => {
                        if !references.contains(&legal_reference) {
                            references.push(legal_reference);
                        }
                    }
                }
            }
            _ => not_released += 1,
        }
    }
    let mut out = Vec::new();
    let codes = || {
        BASES
            .iter()
            .zip(bases)
            .filter(|(_, on)| *on)
            .map(|(b, _)| b.code())
    };
    let basis_ok = match (released, e.legal_basis.as_deref()) {
        (0, entry) => entry == request.legal_basis.map(|b| b.code()),
        (_, Some(entry)) => entry.split(',').eq(codes()),
        (_, None) => false,
    };
    if !basis_ok {
        let replay = if released == 0 {
            request.legal_basis.map(|b| b.code().to_owned())
        } else {
            Some(codes().collect::<Vec<_>>().join(","))
        };
        out.push((
            "legal_basis",
            or_none(e.legal_basis.as_deref()),
            or_none(replay.as_deref()),
        ));
    }
    let reference_ok = match (references.as_slice(), e.legal_reference.as_deref()) {
        ([], None) => true,
        ([one], Some(entry)) => *one == entry,
        (many, Some(entry)) if many.len() > 1 => entry == many.join("; "),
        _ => false,
    };
    if !reference_ok {
        let replay = (!references.is_empty()).then(|| references.join("; "));
        out.push((
            "legal_reference",
            or_none(e.legal_reference.as_deref()),
            or_none(replay.as_deref()),
        ));
    }
    let consents_ok = match e.consent_id.as_deref() {
        None => used.is_empty(),
        Some(ids) => ids
            .split(',')
            .map(|id| ConsentId::parse(id).ok())
            .eq(used.iter().map(|u| Some(*u))),
    };
    if !consents_ok {
        let replay = (!used.is_empty()).then(|| {
            used.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        out.push((
            "consent_id",
            or_none(e.consent_id.as_deref()),
            or_none(replay.as_deref()),
        ));
    }
    let outcome = match (released, not_released) {
        (0, _) => "refused",
        (_, 0) => "granted",
        _ => "partial",
    };
    if e.decision != outcome {
        out.push((
            "decision",
            or_none(Some(&e.decision)),
            or_none(Some(outcome)),
        ));
    }
    let review = decision.obligations.review && released > 0;
    if e.review != review {
        out.push(("review", e.review.to_string(), review.to_string()));
    }
    out
}

/// Verifies the export against the trusted key `vkey` (as `audit verify` does) and, in the
/// same pass, replays every access decision in it with `replay` ([`Replay::new`] to judge
/// each decision under the set it names, [`Replay::against`] under one set). The report
/// is returned only for a log that verified.
pub fn replay_export(
    reader: impl Read,
    vkey: &str,
    mut replay: Replay,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Summary, ReplayReport), VerifyError> {
    // Each leaf is decoded once, for the verifier and the replay.
    let summary =
        audit::export::verify_entries(reader, vkey, progress, &mut |e| replay.entry(e.index, e))?;
    Ok((summary, replay.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit::{Actor, EntryDraft};

    const T0: u64 = 1_767_225_600;

    fn examples() -> PolicySet {
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples"))
            .expect("the example set loads")
    }

    /// A vault in miniature: the engine's pure pieces (the evaluator, `access_entry`, the
    /// artefacts' state machine) writing the entries the engine writes, for one citizen.
    struct World {
        set: PolicySet,
        digest: [u8; 32],
        tag: SubjectTag,
        artefacts: Vec<ConsentArtefact>,
        entries: Vec<Entry>,
    }

    impl World {
        fn new() -> Self {
            let set = examples();
            Self {
                digest: policy_set_digest(&set),
                set,
                tag: SubjectTag([7; 32]),
                artefacts: Vec::new(),
                entries: Vec::new(),
            }
        }

        fn push(&mut self, d: EntryDraft) -> u64 {
            let index = self.entries.len() as u64;
            self.entries.push(Entry {
                index,
                prev: [0; 32],
                body: d,
            });
            index
        }

        fn consent_entry(&mut self, action: &str, a: &ConsentArtefact, secs: u64) -> u64 {
            let mut d = EntryDraft::new(
                secs * 1000,
                Actor {
                    kind: ActorKind::Citizen,
                    id: String::new(),
                },
                action,
                "done",
            );
            d.purpose = Some(a.purpose().as_str().to_owned());
            d.requested = a.fields().iter().map(|f| f.as_str().to_owned()).collect();
            d.consent_id = Some(a.id().to_string());
            d.subject = Some(self.tag);
            d.policy_set = Some(self.digest);
            d.terms = Some(crate::engine::terms_item(a));
            self.push(d)
        }

        fn grant(
            &mut self,
            id: u8,
            agency: &str,
            purpose: &str,
            fields: &[&str],
            secs: u64,
            until: u64,
        ) -> u64 {
            let terms = ConsentTerms {
                agency: AgencyId::new(agency).unwrap(),
                purpose: PurposeCode::new(purpose).unwrap(),
                fields: fields.iter().map(|f| FieldName::new(f).unwrap()).collect(),
                valid_from: Timestamp::from_unix_seconds(secs),
                expires_at: Timestamp::from_unix_seconds(until),
                max_uses: Some(2),
                data_life: None,
            };
            let a = ConsentArtefact::grant_direct(
                ConsentId::from_bytes([id; 16]),
                citizen_ref(&self.tag),
                terms,
                None,
                Timestamp::from_unix_seconds(secs),
            )
            .unwrap();
            self.artefacts.push(a.clone());
            self.consent_entry("consent.grant", &a, secs)
        }

        fn revoke(&mut self, id: u8, secs: u64) -> u64 {
            let a = self
                .artefacts
                .iter_mut()
                .find(|a| a.id() == ConsentId::from_bytes([id; 16]))
                .unwrap();
            a.revoke(Timestamp::from_unix_seconds(secs)).unwrap();
            let a = a.clone();
            self.consent_entry("consent.revoke", &a, secs)
        }

        fn access(
            &mut self,
            agency: &str,
            purpose: &str,
            fields: &[&str],
            basis: Option<LegalBasis>,
            secs: u64,
        ) -> u64 {
            let request = AccessRequest {
                agency: AgencyId::new(agency).unwrap(),
                purpose: PurposeCode::new(purpose).unwrap(),
                fields: fields.iter().map(|f| FieldName::new(f).unwrap()).collect(),
                legal_basis: basis,
                justification: None,
            };
            let now = Timestamp::from_unix_seconds(secs);
            let mut mine: Vec<ConsentArtefact> = self
                .artefacts
                .iter()
                .filter(|a| a.agency() == &request.agency && a.purpose() == &request.purpose)
                .cloned()
                .collect();
            mine.sort_by_key(|a| a.id().to_bytes());
            let decision = evaluate(&self.set, &request, &mine, now);
            // The citizen holds no value for the allergies field (`no_data`).
            let built = crate::engine::access_entry(
                &decision,
                |f| f.as_str() != "health.allergies",
                &request,
                agency,
                secs * 1000,
                false,
            );
            for id in &built.used {
                if let Some(a) = self.artefacts.iter_mut().find(|a| a.id() == *id) {
                    a.record_use(now).unwrap();
                }
            }
            let mut d = built.draft;
            d.subject = Some(self.tag);
            d.policy_set = Some(self.digest);
            self.push(d)
        }

        fn replay(&self, set: PolicySet) -> ReplayReport {
            let mut r = Replay::new([ReplaySet::new(PathBuf::from("examples"), set)]);
            for e in &self.entries {
                r.entry(e.index, e);
            }
            r.finish()
        }
    }

    fn at(report: &ReplayReport) -> Vec<(u64, &'static str)> {
        report
            .findings
            .iter()
            .map(|f| (f.index, f.kind.code()))
            .collect()
    }

    #[test]
    fn decisions_the_engine_makes_replay_clean_and_each_change_is_found_where_it_acts() {
        let mut w = World::new();
        let ask = [
            "health.blood_type",
            "health.allergies",
            "health.vaccinations",
        ];
        let none = w.access("tax_authority", "tax_assessment", &ask, None, T0);
        w.grant(
            1,
            "tax_authority",
            "tax_assessment",
            &ask[..2],
            T0 + 10,
            T0 + 1000,
        );
        let first = w.access("tax_authority", "tax_assessment", &ask, None, T0 + 20);
        let second = w.access(
            "tax_authority",
            "tax_assessment",
            &ask,
            Some(LegalBasis::Consent),
            T0 + 30,
        );
        let exhausted = w.access("tax_authority", "tax_assessment", &ask, None, T0 + 40);
        w.grant(
            2,
            "tax_authority",
            "tax_assessment",
            &ask[..1],
            T0 + 50,
            T0 + 100,
        );
        let second_consent = w.access("tax_authority", "tax_assessment", &ask, None, T0 + 60);
        w.revoke(2, T0 + 70);
        let revoked = w.access("tax_authority", "tax_assessment", &ask, None, T0 + 80);
        let expired = w.access("tax_authority", "tax_assessment", &ask, None, T0 + 2000);
        let statute = w.access(
            "national_police",
            "road_safety_enforcement",
            &[
                "vehicle.registration",
                "identity.full_name",
                "health.blood_type",
            ],
            Some(LegalBasis::PublicTask),
            T0 + 90,
        );
        let wrong_claim = w.access(
            "national_police",
            "road_safety_enforcement",
            &["vehicle.registration"],
            Some(LegalBasis::LegalObligation),
            T0 + 95,
        );
        let report = w.replay(examples());
        assert_eq!(at(&report), [], "{:#?}", report.findings);
        assert_eq!(report.decisions, 9);
        assert_eq!(report.consent_steps, 3);
        let _ = wrong_claim;

        // A release the log claims but the policy did not allow.
        let mut forged = World {
            entries: w.entries.clone(),
            ..World::new()
        };
        let e = &mut forged.entries[revoked as usize].body;
        e.released.push("health.blood_type".into());
        e.withheld.retain(|x| x.field != "health.blood_type");
        assert_eq!(
            at(&forged.replay(examples())),
            [(revoked, "released_not_allowed")]
        );

        // `covert_access` is a covert access's reason only: on an ordinary entry it differs
        // from the policy's `no_consent`; on a deferred one it is that.
        let mut covert = World {
            entries: w.entries.clone(),
            ..World::new()
        };
        let e = &mut covert.entries[none as usize].body;
        let w0 = e
            .withheld
            .iter_mut()
            .find(|x| x.reason == "no_consent")
            .expect("a field withheld for want of consent");
        w0.reason = crate::engine::COVERT_ACCESS.to_owned();
        assert_eq!(at(&covert.replay(examples())), [(none, "reason_differs")]);
        covert.entries[none as usize].body.deferral =
            Some(audit::Deferral::Deferred { disclose_at: None });
        assert_eq!(at(&covert.replay(examples())), []);

        // The grant's fields altered: the decisions of that agency for that purpose change.
        let mut altered = World {
            entries: w.entries.clone(),
            ..World::new()
        };
        altered.entries[1].body.requested = vec!["health.blood_type".into()];
        let found = at(&altered.replay(examples()));
        // (allergies, which the citizen holds no value for, is now withheld as not covered
        // instead of `no_data`, in every later decision of the agency for the purpose).
        let later = [first, second, exhausted, second_consent, revoked, expired];
        assert_eq!(found, later.map(|i| (i, "reason_differs")));

        // The basis an entry names, changed alone.
        let mut relabelled = World {
            entries: w.entries.clone(),
            ..World::new()
        };
        relabelled.entries[statute as usize].body.legal_basis = Some("legal_obligation".into());
        assert_eq!(
            at(&relabelled.replay(examples())),
            [(statute, "basis_differs")]
        );
    }

    #[test]
    fn a_set_without_a_statutory_rule_finds_the_releases_that_rested_on_it() {
        let mut w = World::new();
        let statute = w.access(
            "national_police",
            "road_safety_enforcement",
            &["vehicle.registration"],
            None,
            T0,
        );
        let other = w.access(
            "tax_authority",
            "tax_assessment",
            &["identity.full_name"],
            None,
            T0 + 1,
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        for (_, text) in &mut files {
            if let Some(start) = text.find("[[agency.statutory]]\nid = \"police_roadside_check\"") {
                let end = start + 1 + text[start + 1..].find("[[agency").unwrap();
                text.replace_range(start..end, "");
            }
        }
        let trimmed = PolicySet::from_sources(&files).unwrap();
        let mut r = Replay::against(ReplaySet::new(PathBuf::from("trimmed"), trimmed));
        for e in &w.entries {
            r.entry(e.index, e);
        }
        let report = r.finish();
        assert_eq!(at(&report), [(statute, "released_not_allowed")]);
        let _ = other;
        // Under --policies the trimmed set matches no decision's digest.
        let report = w.replay(PolicySet::from_sources(&files).unwrap());
        assert_eq!(
            at(&report),
            [
                (statute, "unknown_policy_set"),
                (other, "unknown_policy_set")
            ]
        );
    }

    #[test]
    fn decisions_before_format_5_are_counted_not_judged() {
        let mut w = World::new();
        let i = w.access(
            "tax_authority",
            "tax_assessment",
            &["identity.full_name"],
            None,
            T0,
        );
        w.entries[i as usize].body.claim = None;
        w.entries[i as usize].body.policy_set = None;
        let report = w.replay(examples());
        assert_eq!((report.decisions, report.not_replayable), (0, 1));
        assert_eq!(at(&report), []);
    }
}
