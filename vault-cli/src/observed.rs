//! The observed use of the policy rules in an audit export, for `vault-cli policies
//! report --export`: access entries counted per agency and per rule in a period.
//!
//! [`Counter`] is pure (it is fed decoded entries); [`LeafTap`] lets it see the leaves of
//! an export while `audit::export::verify` reads them, so the counts come from exactly the
//! bytes that were verified, in one pass, without holding the file in memory.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;
use vault_core::policies::report::RuleKind;
use vault_core::policies::{PolicySet, Timestamp};

/// The half-open period `[since, until)` whose entries are counted.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Period {
    pub(crate) since: Option<Timestamp>,
    pub(crate) until: Option<Timestamp>,
}

impl Period {
    fn contains(&self, time_ms: u64) -> bool {
        let secs = time_ms / 1000;
        self.since.is_none_or(|s| secs >= s.unix_seconds())
            && self.until.is_none_or(|u| secs < u.unix_seconds())
    }
}

/// Parses `--since`/`--until`: an RFC 3339 timestamp, or a date `YYYY-MM-DD` meaning its
/// midnight UTC.
pub(crate) fn parse_instant(text: &str) -> Result<Timestamp, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    Timestamp::parse(&full).map_err(|e| format!("{text:?}: {e} (or a date like 2026-11-29)"))
}

/// Access decisions counted by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Outcomes {
    pub(crate) granted: u64,
    pub(crate) partial: u64,
    pub(crate) refused: u64,
}

impl Outcomes {
    fn add(&mut self, decision: &str) {
        match decision {
            "granted" => self.granted += 1,
            "partial" => self.partial += 1,
            _ => self.refused += 1,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.granted + self.partial + self.refused
    }
}

/// One agency's accesses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct AgencyUse {
    /// The agency id (the entry's actor).
    pub(crate) agency: String,
    /// Whether the policy files in force know it.
    pub(crate) in_policy: bool,
    /// Every access, by outcome.
    pub(crate) accesses: Outcomes,
    /// Accesses that released something under a statutory rule.
    pub(crate) statutory: u64,
    /// Accesses that released something under consent.
    pub(crate) consent: u64,
    /// Accesses claiming or releasing under `vital_interest` (break-glass), by outcome.
    pub(crate) break_glass: Outcomes,
    /// Accesses flagged for review.
    pub(crate) flagged_for_review: u64,
}

/// The accesses that released fields under one rule (matched by its legal reference).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct RuleUse {
    pub(crate) rule: String,
    pub(crate) agency: String,
    pub(crate) kind: RuleKind,
    pub(crate) reference: String,
    pub(crate) accesses: Outcomes,
    pub(crate) flagged_for_review: u64,
}

/// A legal reference in the log that no rule of the agency (for the purpose) cites in the
/// policy files in force, e.g. after a rule changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct UnknownReference {
    pub(crate) agency: String,
    pub(crate) purpose: String,
    pub(crate) reference: String,
    pub(crate) accesses: u64,
}

/// Break-glass use across all agencies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct BreakGlassUse {
    pub(crate) accesses: Outcomes,
    pub(crate) flagged_for_review: u64,
    /// Whether the log records the outcome of reviews. It does not today, so every
    /// flagged access counts as not known to be reviewed.
    pub(crate) review_outcomes_logged: bool,
}

/// What an export shows of the use of the rules in a period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ObservedUse {
    /// Entries in the period (every action).
    pub(crate) entries_in_period: u64,
    /// Access entries in the period.
    pub(crate) accesses: Outcomes,
    /// Per agency, ordered by id; every agency of the policy files, then any other actor.
    pub(crate) agencies: Vec<AgencyUse>,
    /// Per rule of the policy files, in the report's order.
    pub(crate) rules: Vec<RuleUse>,
    /// References matching no rule in force.
    pub(crate) unknown_references: Vec<UnknownReference>,
    pub(crate) break_glass: BreakGlassUse,
}

/// Counts access entries against a policy set.
pub(crate) struct Counter<'a> {
    set: &'a PolicySet,
    period: Period,
    out: ObservedUse,
    agencies: BTreeMap<String, AgencyUse>,
    unknown: BTreeMap<(String, String, String), u64>,
}

/// Whether `part` is one of the `"; "`-joined references of `joined` (how the engine
/// writes the references of an access released under several rules).
fn cites(joined: &str, part: &str) -> bool {
    joined == part
        || joined.starts_with(&format!("{part}; "))
        || joined.ends_with(&format!("; {part}"))
        || joined.contains(&format!("; {part}; "))
}

impl<'a> Counter<'a> {
    pub(crate) fn new(set: &'a PolicySet, period: Period) -> Self {
        let rules = set
            .statutory_rules()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.agency.as_str(),
                    RuleKind::Statutory,
                    &r.legal_reference,
                )
            })
            .chain(set.break_glass_rules().map(|r| {
                (
                    r.id.as_str(),
                    r.agency.as_str(),
                    RuleKind::BreakGlass,
                    &r.legal_reference,
                )
            }))
            .map(|(rule, agency, kind, reference)| RuleUse {
                rule: rule.to_owned(),
                agency: agency.to_owned(),
                kind,
                reference: reference.clone(),
                accesses: Outcomes::default(),
                flagged_for_review: 0,
            })
            .collect();
        let agencies = set
            .agencies()
            .map(|a| {
                (
                    a.id.as_str().to_owned(),
                    AgencyUse {
                        agency: a.id.as_str().to_owned(),
                        in_policy: true,
                        ..AgencyUse::default()
                    },
                )
            })
            .collect();
        Counter {
            set,
            period,
            out: ObservedUse {
                rules,
                ..ObservedUse::default()
            },
            agencies,
            unknown: BTreeMap::new(),
        }
    }

    /// Counts one entry: one outside the period not at all, one of another action than
    /// `access` only in `entries_in_period`.
    pub(crate) fn push(&mut self, e: &audit::EntryDraft) {
        if !self.period.contains(e.time_ms) {
            return;
        }
        self.out.entries_in_period += 1;
        if e.action != "access" {
            return;
        }
        self.out.accesses.add(&e.decision);
        let bases: Vec<&str> = e
            .legal_basis
            .as_deref()
            .map(|b| b.split(',').collect())
            .unwrap_or_default();
        let released = !e.released.is_empty();
        let break_glass = bases.contains(&"vital_interest");
        let a = self
            .agencies
            .entry(e.actor.id.clone())
            .or_insert_with(|| AgencyUse {
                agency: e.actor.id.clone(),
                ..AgencyUse::default()
            });
        a.accesses.add(&e.decision);
        if released
            && bases
                .iter()
                .any(|b| *b == "legal_obligation" || *b == "public_task")
        {
            a.statutory += 1;
        }
        if released && bases.contains(&"consent") {
            a.consent += 1;
        }
        if break_glass {
            a.break_glass.add(&e.decision);
            self.out.break_glass.accesses.add(&e.decision);
            if e.review {
                self.out.break_glass.flagged_for_review += 1;
            }
        }
        if e.review {
            a.flagged_for_review += 1;
        }
        let (Some(reference), Some(purpose)) = (e.legal_reference.as_deref(), e.purpose.as_deref())
        else {
            return;
        };
        let set = self.set;
        let mut matched: Vec<String> = Vec::new();
        for r in self
            .out
            .rules
            .iter_mut()
            .filter(|r| r.agency == e.actor.id && cites(reference, &r.reference))
        {
            let purpose_ok = set
                .statutory_rules()
                .map(|s| (s.id.as_str(), s.purpose.as_str()))
                .chain(
                    set.break_glass_rules()
                        .map(|b| (b.id.as_str(), b.purpose.as_str())),
                )
                .any(|(id, p)| id == r.rule && p == purpose);
            if !purpose_ok {
                continue;
            }
            r.accesses.add(&e.decision);
            if e.review {
                r.flagged_for_review += 1;
            }
            matched.push(r.reference.clone());
        }
        for part in reference.split("; ") {
            if !matched.iter().any(|m| m.contains(part)) {
                *self
                    .unknown
                    .entry((e.actor.id.clone(), purpose.to_owned(), part.to_owned()))
                    .or_default() += 1;
            }
        }
    }

    pub(crate) fn finish(mut self) -> ObservedUse {
        // The agencies of the policy files first (ordered by id), then other actors.
        let (known, other): (Vec<AgencyUse>, Vec<AgencyUse>) =
            self.agencies.into_values().partition(|a| a.in_policy);
        self.out.agencies = known.into_iter().chain(other).collect();
        self.out.unknown_references = self
            .unknown
            .into_iter()
            .map(
                |((agency, purpose, reference), accesses)| UnknownReference {
                    agency,
                    purpose,
                    reference,
                    accesses,
                },
            )
            .collect();
        self.out
    }
}

/// A reader that passes an export's bytes through unchanged and hands each leaf (the
/// length-prefixed entries after the header, `docs/audit-log.md`) to `on_leaf`. Framing it
/// cannot follow stops the tapping; the verifier reading through it reports the error.
pub(crate) struct LeafTap<R, F> {
    inner: R,
    on_leaf: F,
    buf: Vec<u8>,
    state: TapState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TapState {
    /// Magic and version (9 bytes), then the key length.
    Start,
    /// The key bytes, then the note length.
    Key(usize),
    /// The note bytes, then the entry count.
    Note(usize),
    /// The length of the next leaf.
    LeafLen,
    /// The bytes of a leaf.
    Leaf(usize),
    /// Done, or the framing is broken.
    Stopped,
}

impl<R: Read, F: FnMut(&[u8])> LeafTap<R, F> {
    pub(crate) fn new(inner: R, on_leaf: F) -> Self {
        LeafTap {
            inner,
            on_leaf,
            buf: Vec::new(),
            state: TapState::Start,
        }
    }

    fn need(&self) -> Option<usize> {
        match self.state {
            TapState::Start => Some(11),
            TapState::Key(n) => Some(n + 4),
            TapState::Note(n) => Some(n + 8),
            TapState::LeafLen => Some(4),
            TapState::Leaf(n) => Some(n),
            TapState::Stopped => None,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(need) = self.need() {
            let take = need.saturating_sub(self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() < need {
                return;
            }
            let item = std::mem::take(&mut self.buf);
            let tail = |k: usize| -> [u8; 4] {
                let mut a = [0u8; 4];
                if let Some(s) = item.get(k..k + 4) {
                    a.copy_from_slice(s);
                }
                a
            };
            self.state = match self.state {
                TapState::Start => {
                    let [_, _, a, b] = tail(7);
                    TapState::Key(usize::from(u16::from_be_bytes([a, b])))
                }
                TapState::Key(n) => TapState::Note(u32::from_be_bytes(tail(n)) as usize),
                // The entry count ends the note item; the leaves follow.
                TapState::Note(_) => TapState::LeafLen,
                TapState::LeafLen => match u32::from_be_bytes(tail(0)) as usize {
                    n if n == 0 || n > audit::MAX_ENTRY_LEN => TapState::Stopped,
                    n => TapState::Leaf(n),
                },
                TapState::Leaf(_) => {
                    (self.on_leaf)(&item);
                    TapState::LeafLen
                }
                TapState::Stopped => TapState::Stopped,
            };
            // The verifier refuses longer notes; the tap buffers none.
            if matches!(self.state, TapState::Note(n) if n > audit::export::MAX_NOTE_LEN) {
                self.state = TapState::Stopped;
            }
            self.buf = item;
            self.buf.clear();
        }
    }
}

impl<R: Read, F: FnMut(&[u8])> Read for LeafTap<R, F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.feed(&out[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit::{sign_checkpoint, Actor, ActorKind, EntryDraft, LogState, MemStore, NoteSigner};

    fn example() -> PolicySet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
        PolicySet::load_dir(&dir).expect("the example set is valid")
    }

    const TAX_ID: &str = "Income Tax Act 2019, s. 42(1) (identification of the taxpayer)";
    const TAX_BEN: &str = "Income Tax Act 2019, s. 32b (benefits subject to progression)";
    const EMERGENCY: &str =
        "Emergency Medical Care Act 2021, s. 12(2) (access to records of an unconscious patient)";

    /// An access entry at second `t` by `agency`.
    fn access(
        t: u64,
        agency: &str,
        purpose: &str,
        decision: &str,
        basis: Option<&str>,
        reference: Option<&str>,
    ) -> EntryDraft {
        let mut d = EntryDraft::new(
            t * 1000,
            Actor {
                kind: ActorKind::Agency,
                id: agency.to_owned(),
            },
            "access",
            decision,
        );
        d.purpose = Some(purpose.to_owned());
        d.legal_basis = basis.map(str::to_owned);
        d.legal_reference = reference.map(str::to_owned);
        if decision != "refused" {
            d.released = vec!["identity.full_name".to_owned()];
        }
        d
    }

    /// A small log: statutory, joined references, consent, refused, break-glass, an
    /// unknown reference, an unknown actor and a non-access entry; times 100..=109 s.
    fn drafts() -> Vec<EntryDraft> {
        let mut bg = access(
            105,
            "general_hospital",
            "emergency_care",
            "granted",
            Some("vital_interest"),
            Some(EMERGENCY),
        );
        bg.review = true;
        vec![
            access(
                100,
                "tax_authority",
                "tax_assessment",
                "granted",
                Some("legal_obligation"),
                Some(TAX_ID),
            ),
            access(
                101,
                "tax_authority",
                "tax_assessment",
                "partial",
                Some("legal_obligation"),
                Some(&format!("{TAX_ID}; {TAX_BEN}")),
            ),
            access(
                102,
                "tax_authority",
                "tax_assessment",
                "refused",
                Some("public_task"),
                None,
            ),
            access(
                103,
                "health_research_institute",
                "health_research",
                "granted",
                Some("consent"),
                None,
            ),
            access(
                104,
                "general_hospital",
                "emergency_care",
                "refused",
                Some("vital_interest"),
                None,
            ),
            bg,
            access(
                106,
                "tax_authority",
                "tax_assessment",
                "granted",
                Some("legal_obligation"),
                Some("Repealed Act, s. 1"),
            ),
            access(
                107,
                "unknown_agency",
                "tax_assessment",
                "refused",
                None,
                None,
            ),
            EntryDraft::new(
                108_000,
                Actor {
                    kind: ActorKind::Operator,
                    id: "op".to_owned(),
                },
                "token.issue",
                "done",
            ),
            access(
                109,
                "tax_authority",
                "tax_assessment",
                "granted",
                Some("legal_obligation"),
                Some(TAX_ID),
            ),
        ]
    }

    fn count(period: Period) -> ObservedUse {
        let set = example();
        let mut c = Counter::new(&set, period);
        for d in drafts() {
            c.push(&d);
        }
        c.finish()
    }

    fn rule<'a>(o: &'a ObservedUse, id: &str) -> &'a RuleUse {
        o.rules.iter().find(|r| r.rule == id).expect("rule listed")
    }

    fn agency<'a>(o: &'a ObservedUse, id: &str) -> &'a AgencyUse {
        o.agencies
            .iter()
            .find(|a| a.agency == id)
            .expect("agency listed")
    }

    #[test]
    fn accesses_are_counted_per_agency_and_per_rule() {
        let o = count(Period::default());
        assert_eq!(o.entries_in_period, 10);
        assert_eq!(
            o.accesses,
            Outcomes {
                granted: 5,
                partial: 1,
                refused: 3
            }
        );
        let tax = agency(&o, "tax_authority");
        assert_eq!(
            tax.accesses,
            Outcomes {
                granted: 3,
                partial: 1,
                refused: 1
            }
        );
        assert_eq!(tax.statutory, 4);
        assert_eq!(tax.consent, 0);
        assert_eq!(
            rule(&o, "tax_assessment_identity").accesses,
            Outcomes {
                granted: 2,
                partial: 1,
                refused: 0
            }
        );
        assert_eq!(
            rule(&o, "tax_assessment_benefits").accesses,
            Outcomes {
                granted: 0,
                partial: 1,
                refused: 0
            }
        );
        assert_eq!(rule(&o, "hospital_billing").accesses.total(), 0);
        assert_eq!(agency(&o, "health_research_institute").consent, 1);
        // Every rule of the policy set is listed, used or not.
        assert_eq!(o.rules.len(), 11);
        // A reference no rule in force cites, and an actor not in the policy files.
        assert_eq!(o.unknown_references.len(), 1);
        assert_eq!(o.unknown_references[0].reference, "Repealed Act, s. 1");
        let stranger = o.agencies.last().expect("agencies");
        assert_eq!(stranger.agency, "unknown_agency");
        assert!(!stranger.in_policy);
    }

    #[test]
    fn break_glass_is_counted_with_its_review_flags() {
        let o = count(Period::default());
        assert_eq!(
            o.break_glass.accesses,
            Outcomes {
                granted: 1,
                partial: 0,
                refused: 1
            }
        );
        assert_eq!(o.break_glass.flagged_for_review, 1);
        assert!(!o.break_glass.review_outcomes_logged);
        let r = rule(&o, "emergency_medical_access");
        assert_eq!(r.accesses.granted, 1);
        assert_eq!(r.flagged_for_review, 1);
        assert_eq!(agency(&o, "general_hospital").flagged_for_review, 1);
    }

    #[test]
    fn the_period_is_half_open() {
        let o = count(Period {
            since: Some(Timestamp::from_unix_seconds(101)),
            until: Some(Timestamp::from_unix_seconds(105)),
        });
        assert_eq!(o.entries_in_period, 4);
        assert_eq!(
            o.accesses,
            Outcomes {
                granted: 1,
                partial: 1,
                refused: 2
            }
        );
        assert_eq!(o.break_glass.flagged_for_review, 0);
        assert_eq!(
            parse_instant("2026-11-29").map(Timestamp::unix_seconds),
            parse_instant("2026-11-29T00:00:00Z").map(Timestamp::unix_seconds)
        );
        let err = parse_instant("29/11/2026").expect_err("not a date");
        assert!(err.contains("2026-11-29"), "{err}");
    }

    #[test]
    fn the_tap_sees_exactly_the_verified_leaves() {
        let mut store = MemStore::new();
        let mut state = LogState::new();
        let drafts = drafts();
        let n = drafts.len() as u64;
        store.append(&mut state, drafts).expect("appends");
        let signer = NoteSigner::from_seed("t.example/log", &[3; 32]).expect("key");
        let signed = sign_checkpoint(&store, &signer, n, None).expect("signs");
        let mut file = Vec::new();
        audit::export::write(&store, &signed, &signer.verifier_key(), &mut file).expect("exports");
        let set = example();
        let mut counter = Counter::new(&set, Period::default());
        let mut leaves = 0;
        // Reads of 7 bytes at a time cross every item boundary.
        struct Small<'a>(&'a [u8]);
        impl Read for Small<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = out.len().min(7).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let tap = LeafTap::new(Small(&file), |leaf: &[u8]| {
            leaves += 1;
            counter.push(&audit::Entry::decode(leaf).expect("decodes"));
        });
        let summary =
            audit::export::verify(tap, &signer.verifier_key(), &mut |_, _| {}).expect("verifies");
        assert_eq!(summary.size, n);
        assert_eq!(leaves, n);
        assert_eq!(counter.finish(), count(Period::default()));
    }
}
