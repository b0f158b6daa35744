//! The consent artefact (after India's Account Aggregator consent artefact and ISO/IEC
//! TS 27560): its terms, its state machine and its canonical receipt text.
//!
//! ```text
//!             grant                 revoke
//!  request ─► pending ────────► active ─────► revoked
//!               │ deny            │ (now >= expires_at)
//!               ▼                 ▼
//!             denied            expired   (a pending request expires too)
//! ```
//! A citizen's direct grant starts at `active`. The terms (agency, purpose, fields,
//! validity, limits) never change after creation: a change is a new artefact whose
//! `supersedes` names the old one.

use serde::{Deserialize, Serialize};

use crate::ids::{AgencyId, CitizenRef, ConsentId, FieldName, PurposeCode};
use crate::time::Timestamp;

/// The artefact format version written by this code.
pub const ARTEFACT_VERSION: u16 = 1;

/// The first line of every receipt text; names the receipt format and its version.
pub const RECEIPT_HEADER: &str = "consent-receipt v1";

/// Where an artefact is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsentStatus {
    /// Requested by an agency, not yet answered by the citizen.
    Pending,
    /// Granted and not revoked (it may still be before `valid_from`).
    Active,
    /// The citizen refused the request.
    Denied,
    /// The citizen withdrew it.
    Revoked,
    /// Its `expires_at` has passed.
    Expired,
}

impl ConsentStatus {
    /// The stable code (`active`).
    pub const fn code(self) -> &'static str {
        match self {
            ConsentStatus::Pending => "pending",
            ConsentStatus::Active => "active",
            ConsentStatus::Denied => "denied",
            ConsentStatus::Revoked => "revoked",
            ConsentStatus::Expired => "expired",
        }
    }
}

/// What happened to an artefact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsentEventKind {
    /// An agency asked for consent.
    Requested,
    /// The citizen granted it (answering a request or directly).
    Granted,
    /// The citizen refused the request.
    Denied,
    /// The citizen revoked it.
    Revoked,
    /// It was recorded as expired.
    Expired,
}

/// One event in an artefact's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsentEvent {
    /// What happened.
    pub kind: ConsentEventKind,
    /// When.
    pub at: Timestamp,
}

/// The terms of a consent: what the agency may receive, for what, when and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentTerms {
    /// The agency that may receive the fields.
    pub agency: AgencyId,
    /// The purpose it may use them for.
    pub purpose: PurposeCode,
    /// The fields (non-empty, distinct).
    pub fields: Vec<FieldName>,
    /// First instant the consent covers (inclusive).
    pub valid_from: Timestamp,
    /// First instant the consent no longer covers (exclusive).
    pub expires_at: Timestamp,
    /// How many requests it may serve; `None` for no limit.
    pub max_uses: Option<u32>,
    /// How long, in seconds, the agency may keep what it receives; `None` for no limit
    /// beyond the agency's own retention rules.
    pub data_life: Option<u64>,
}

/// Why a lifecycle step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentError {
    /// The terms name no field.
    #[error("a consent must cover at least one field: name the fields")]
    NoFields,
    /// The terms name a field twice.
    #[error("field {field} is named twice: name each field once")]
    DuplicateField {
        /// The field.
        field: FieldName,
    },
    /// `expires_at` is not after `valid_from`.
    #[error("expires_at {expires_at} is not after valid_from {valid_from}: choose a later expiry")]
    EmptyValidity {
        /// Start of validity.
        valid_from: Timestamp,
        /// End of validity.
        expires_at: Timestamp,
    },
    /// `expires_at` has already passed.
    #[error("expires_at {expires_at} is not in the future: choose a later expiry")]
    ExpiresInPast {
        /// End of validity.
        expires_at: Timestamp,
    },
    /// `max_uses` is zero.
    #[error("max_uses of 0 would allow nothing: give at least 1 or no limit")]
    ZeroUses,
    /// The superseded artefact is for another citizen, agency or purpose.
    #[error("consent {old} is for another citizen, agency or purpose: a new consent may only supersede one with the same citizen, agency and purpose")]
    SupersedeMismatch {
        /// The artefact that was to be superseded.
        old: ConsentId,
    },
    /// The superseded artefact was never granted.
    #[error("consent {old} was never granted: only a granted consent can be superseded")]
    SupersedeNotGranted {
        /// The artefact that was to be superseded.
        old: ConsentId,
    },
    /// The step does not apply in the artefact's current status.
    #[error("consent {id} is {}: it cannot be {action}", status.code())]
    InvalidTransition {
        /// The artefact.
        id: ConsentId,
        /// Its status at the time of the attempt.
        status: ConsentStatus,
        /// The attempted step (`granted`, `denied`, `revoked`, `expired`, `used`).
        action: &'static str,
    },
    /// The time given is before the artefact's last event.
    #[error("time {now} is before consent {id}'s last event at {last}: check the clock")]
    TimeWentBackwards {
        /// The artefact.
        id: ConsentId,
        /// The time given.
        now: Timestamp,
        /// Its last event's time.
        last: Timestamp,
    },
    /// A use before `valid_from`.
    #[error("consent {id} is not valid before {valid_from}")]
    NotYetValid {
        /// The artefact.
        id: ConsentId,
        /// Start of validity.
        valid_from: Timestamp,
    },
    /// Every allowed use has been made.
    #[error(
        "consent {id} has served all of its {max_uses} uses: ask the citizen for a new consent"
    )]
    UsesExhausted {
        /// The artefact.
        id: ConsentId,
        /// Its limit.
        max_uses: u32,
    },
}

impl ConsentError {
    /// A stable code for the server's error body.
    pub const fn code(&self) -> &'static str {
        match self {
            ConsentError::NoFields => "no_fields",
            ConsentError::DuplicateField { .. } => "duplicate_field",
            ConsentError::EmptyValidity { .. } => "empty_validity",
            ConsentError::ExpiresInPast { .. } => "expires_in_past",
            ConsentError::ZeroUses => "zero_uses",
            ConsentError::SupersedeMismatch { .. } => "supersede_mismatch",
            ConsentError::SupersedeNotGranted { .. } => "supersede_not_granted",
            ConsentError::InvalidTransition { .. } => "invalid_transition",
            ConsentError::TimeWentBackwards { .. } => "time_went_backwards",
            ConsentError::NotYetValid { .. } => "consent_not_yet_valid",
            ConsentError::UsesExhausted { .. } => "uses_exhausted",
        }
    }
}

/// A consent artefact. Built only by [`ConsentArtefact::request`] or
/// [`ConsentArtefact::grant_direct`]; changed only by its lifecycle methods (or read back
/// from the engine's storage).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentArtefact {
    #[serde(deserialize_with = "known_version")]
    version: u16,
    id: ConsentId,
    citizen: CitizenRef,
    agency: AgencyId,
    purpose: PurposeCode,
    fields: Vec<FieldName>,
    created_at: Timestamp,
    valid_from: Timestamp,
    expires_at: Timestamp,
    max_uses: Option<u32>,
    uses: u32,
    data_life: Option<u64>,
    status: ConsentStatus,
    events: Vec<ConsentEvent>,
    supersedes: Option<ConsentId>,
}

/// Refuses to read an artefact written in a format version this code does not know.
fn known_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u16::deserialize(d)?;
    if v == ARTEFACT_VERSION {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "consent artefact format version {v} is not supported (this build reads version {ARTEFACT_VERSION}): upgrade the vault"
        )))
    }
}

impl ConsentArtefact {
    /// An agency's request for consent: `pending` until the citizen answers.
    pub fn request(
        id: ConsentId,
        citizen: CitizenRef,
        terms: ConsentTerms,
        supersedes: Option<&ConsentArtefact>,
        now: Timestamp,
    ) -> Result<Self, ConsentError> {
        Self::create(id, citizen, terms, supersedes, now, ConsentStatus::Pending)
    }

    /// A citizen's own grant, with no request before it: `active` at once.
    pub fn grant_direct(
        id: ConsentId,
        citizen: CitizenRef,
        terms: ConsentTerms,
        supersedes: Option<&ConsentArtefact>,
        now: Timestamp,
    ) -> Result<Self, ConsentError> {
        Self::create(id, citizen, terms, supersedes, now, ConsentStatus::Active)
    }

    fn create(
        id: ConsentId,
        citizen: CitizenRef,
        terms: ConsentTerms,
        supersedes: Option<&ConsentArtefact>,
        now: Timestamp,
        status: ConsentStatus,
    ) -> Result<Self, ConsentError> {
        if terms.fields.is_empty() {
            return Err(ConsentError::NoFields);
        }
        for (i, f) in terms.fields.iter().enumerate() {
            if terms.fields[..i].contains(f) {
                return Err(ConsentError::DuplicateField { field: f.clone() });
            }
        }
        if terms.expires_at <= terms.valid_from {
            return Err(ConsentError::EmptyValidity {
                valid_from: terms.valid_from,
                expires_at: terms.expires_at,
            });
        }
        if terms.expires_at <= now {
            return Err(ConsentError::ExpiresInPast {
                expires_at: terms.expires_at,
            });
        }
        if terms.max_uses == Some(0) {
            return Err(ConsentError::ZeroUses);
        }
        if let Some(old) = supersedes {
            if old.citizen != citizen || old.agency != terms.agency || old.purpose != terms.purpose
            {
                return Err(ConsentError::SupersedeMismatch { old: old.id });
            }
            if old.granted_at().is_none() {
                return Err(ConsentError::SupersedeNotGranted { old: old.id });
            }
        }
        let kind = if status == ConsentStatus::Active {
            ConsentEventKind::Granted
        } else {
            ConsentEventKind::Requested
        };
        Ok(ConsentArtefact {
            version: ARTEFACT_VERSION,
            id,
            citizen,
            agency: terms.agency,
            purpose: terms.purpose,
            fields: terms.fields,
            created_at: now,
            valid_from: terms.valid_from,
            expires_at: terms.expires_at,
            max_uses: terms.max_uses,
            uses: 0,
            data_life: terms.data_life,
            status,
            events: vec![ConsentEvent { kind, at: now }],
            supersedes: supersedes.map(|o| o.id),
        })
    }

    /// Checks that `now` does not go before the last event and that the status at `now`
    /// is `from`; otherwise the refusal for `action`.
    fn step(
        &self,
        now: Timestamp,
        from: ConsentStatus,
        action: &'static str,
    ) -> Result<(), ConsentError> {
        let last = self.events.last().map_or(self.created_at, |e| e.at);
        if now < last {
            return Err(ConsentError::TimeWentBackwards {
                id: self.id,
                now,
                last,
            });
        }
        let status = self.status_at(now);
        if status != from {
            return Err(ConsentError::InvalidTransition {
                id: self.id,
                status,
                action,
            });
        }
        Ok(())
    }

    fn record(&mut self, status: ConsentStatus, kind: ConsentEventKind, at: Timestamp) {
        self.status = status;
        self.events.push(ConsentEvent { kind, at });
    }

    /// The citizen grants a pending request (before it expires).
    pub fn grant(&mut self, now: Timestamp) -> Result<(), ConsentError> {
        self.step(now, ConsentStatus::Pending, "granted")?;
        self.record(ConsentStatus::Active, ConsentEventKind::Granted, now);
        Ok(())
    }

    /// The citizen refuses a pending request.
    pub fn deny(&mut self, now: Timestamp) -> Result<(), ConsentError> {
        self.step(now, ConsentStatus::Pending, "denied")?;
        self.record(ConsentStatus::Denied, ConsentEventKind::Denied, now);
        Ok(())
    }

    /// The citizen revokes an active consent; it covers no request from `now` on.
    pub fn revoke(&mut self, now: Timestamp) -> Result<(), ConsentError> {
        self.step(now, ConsentStatus::Active, "revoked")?;
        self.record(ConsentStatus::Revoked, ConsentEventKind::Revoked, now);
        Ok(())
    }

    /// Records the expiry of an artefact whose `expires_at` has passed (housekeeping:
    /// [`status_at`](Self::status_at) reports `expired` whether or not this is called).
    pub fn expire(&mut self, now: Timestamp) -> Result<(), ConsentError> {
        if self.status == ConsentStatus::Expired {
            return Err(ConsentError::InvalidTransition {
                id: self.id,
                status: ConsentStatus::Expired,
                action: "expired",
            });
        }
        self.step(now, ConsentStatus::Expired, "expired")?;
        self.record(ConsentStatus::Expired, ConsentEventKind::Expired, now);
        Ok(())
    }

    /// Counts one use (one request it served) at `now`: the artefact must be active,
    /// within its validity, with a use left.
    pub fn record_use(&mut self, now: Timestamp) -> Result<(), ConsentError> {
        self.step(now, ConsentStatus::Active, "used")?;
        if now < self.valid_from {
            return Err(ConsentError::NotYetValid {
                id: self.id,
                valid_from: self.valid_from,
            });
        }
        if let Some(max_uses) = self.max_uses {
            if self.uses >= max_uses {
                return Err(ConsentError::UsesExhausted {
                    id: self.id,
                    max_uses,
                });
            }
        }
        self.uses += 1;
        Ok(())
    }

    /// The status at `now`: the recorded status, except that a pending or active
    /// artefact is `expired` from `expires_at` on.
    pub fn status_at(&self, now: Timestamp) -> ConsentStatus {
        match self.status {
            ConsentStatus::Pending | ConsentStatus::Active if now >= self.expires_at => {
                ConsentStatus::Expired
            }
            s => s,
        }
    }

    /// Whether a use is left (always, without a limit).
    pub fn has_use_left(&self) -> bool {
        self.max_uses.is_none_or(|m| self.uses < m)
    }

    /// Its identifier.
    pub fn id(&self) -> ConsentId {
        self.id
    }
    /// The citizen it belongs to.
    pub fn citizen(&self) -> &CitizenRef {
        &self.citizen
    }
    /// The agency it lets receive data.
    pub fn agency(&self) -> &AgencyId {
        &self.agency
    }
    /// The purpose it allows.
    pub fn purpose(&self) -> &PurposeCode {
        &self.purpose
    }
    /// The fields it covers.
    pub fn fields(&self) -> &[FieldName] {
        &self.fields
    }
    /// Whether it names `field`.
    pub fn covers(&self, field: &FieldName) -> bool {
        self.fields.iter().any(|f| f == field)
    }
    /// When it was created (requested, or granted directly).
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// First instant it covers.
    pub fn valid_from(&self) -> Timestamp {
        self.valid_from
    }
    /// First instant it no longer covers.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
    /// Its use limit, if any.
    pub fn max_uses(&self) -> Option<u32> {
        self.max_uses
    }
    /// How many uses have been recorded.
    pub fn uses(&self) -> u32 {
        self.uses
    }
    /// How long (seconds) the agency may keep what it receives, if limited.
    pub fn data_life(&self) -> Option<u64> {
        self.data_life
    }
    /// The recorded status (see [`status_at`](Self::status_at) for the effective one).
    pub fn status(&self) -> ConsentStatus {
        self.status
    }
    /// Its events, oldest first.
    pub fn events(&self) -> &[ConsentEvent] {
        &self.events
    }
    /// The artefact it replaces, if any.
    pub fn supersedes(&self) -> Option<ConsentId> {
        self.supersedes
    }
    /// When it was granted, if it was.
    pub fn granted_at(&self) -> Option<Timestamp> {
        self.event_at(ConsentEventKind::Granted)
    }
    /// When it was revoked, if it was.
    pub fn revoked_at(&self) -> Option<Timestamp> {
        self.event_at(ConsentEventKind::Revoked)
    }

    fn event_at(&self, kind: ConsentEventKind) -> Option<Timestamp> {
        self.events.iter().find(|e| e.kind == kind).map(|e| e.at)
    }

    /// The canonical receipt text of the terms (format `docs/policies.md`): versioned,
    /// one `key value` per line, UTF-8 (ASCII in fact), no blank line, ending with a
    /// newline. The engine signs it as a C2SP signed note.
    pub fn receipt_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(256 + 40 * self.fields.len());
        let opt = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
        // `write!` into a String cannot fail.
        let _ = writeln!(s, "{RECEIPT_HEADER}");
        let _ = writeln!(s, "id {}", self.id);
        let _ = writeln!(s, "citizen {}", self.citizen);
        let _ = writeln!(s, "agency {}", self.agency);
        let _ = writeln!(s, "purpose {}", self.purpose);
        for f in &self.fields {
            let _ = writeln!(s, "field {f}");
        }
        let _ = writeln!(s, "created {}", self.created_at);
        let _ = writeln!(s, "valid-from {}", self.valid_from);
        let _ = writeln!(s, "expires {}", self.expires_at);
        let _ = writeln!(s, "max-uses {}", opt(self.max_uses.map(|m| m.to_string())));
        let _ = writeln!(
            s,
            "data-life {}",
            opt(self.data_life.map(|d| format!("{d}s")))
        );
        let _ = writeln!(
            s,
            "supersedes {}",
            opt(self.supersedes.map(|i| i.to_string()))
        );
        let _ = writeln!(
            s,
            "granted {}",
            opt(self.granted_at().map(|t| t.to_string()))
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_unix_seconds(s)
    }

    fn terms() -> ConsentTerms {
        ConsentTerms {
            agency: AgencyId::new("hospital").expect("id"),
            purpose: PurposeCode::new("care").expect("id"),
            fields: vec![
                FieldName::new("health.blood_type").expect("id"),
                FieldName::new("health.allergies").expect("id"),
            ],
            valid_from: t(1000),
            expires_at: t(2000),
            max_uses: Some(2),
            data_life: Some(3600),
        }
    }

    fn citizen() -> CitizenRef {
        CitizenRef::new("c-1").expect("ref")
    }

    fn pending() -> ConsentArtefact {
        ConsentArtefact::request(
            ConsentId::from_bytes([1; 16]),
            citizen(),
            terms(),
            None,
            t(500),
        )
        .expect("valid request")
    }

    #[test]
    fn request_then_grant_then_revoke() {
        let mut a = pending();
        assert_eq!(a.status_at(t(500)), ConsentStatus::Pending);
        a.grant(t(600)).expect("grant");
        assert_eq!(a.status_at(t(600)), ConsentStatus::Active);
        assert_eq!(a.granted_at(), Some(t(600)));
        a.revoke(t(1500)).expect("revoke");
        assert_eq!(a.status_at(t(1500)), ConsentStatus::Revoked);
        assert_eq!(a.revoked_at(), Some(t(1500)));
        let kinds: Vec<_> = a.events().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                ConsentEventKind::Requested,
                ConsentEventKind::Granted,
                ConsentEventKind::Revoked
            ]
        );
        let err = a.revoke(t(1600)).expect_err("twice");
        assert_eq!(err.code(), "invalid_transition");
        assert_eq!(
            err.to_string(),
            format!("consent {} is revoked: it cannot be revoked", a.id())
        );
    }

    #[test]
    fn deny_is_final_and_grant_needs_pending() {
        let mut a = pending();
        a.deny(t(600)).expect("deny");
        assert_eq!(a.status_at(t(600)), ConsentStatus::Denied);
        assert!(a.grant(t(700)).is_err());
        assert!(a.revoke(t(700)).is_err());
        assert!(a.record_use(t(1100)).is_err());
    }

    #[test]
    fn expiry_is_exclusive_and_blocks_every_step() {
        let mut a = pending();
        assert_eq!(a.status_at(t(1999)), ConsentStatus::Pending);
        assert_eq!(a.status_at(t(2000)), ConsentStatus::Expired);
        assert!(a.grant(t(2000)).is_err());
        a.grant(t(1999)).expect("grant just before expiry");
        assert!(a.revoke(t(2000)).is_err());
        assert!(a.expire(t(1999)).is_err());
        a.expire(t(2000)).expect("expire");
        assert_eq!(a.status(), ConsentStatus::Expired);
        assert!(a.expire(t(2001)).is_err());
    }

    #[test]
    fn uses_are_counted_within_validity_up_to_the_limit() {
        let mut a = pending();
        a.grant(t(600)).expect("grant");
        assert_eq!(
            a.record_use(t(999)),
            Err(ConsentError::NotYetValid {
                id: a.id(),
                valid_from: t(1000)
            })
        );
        a.record_use(t(1000)).expect("first use at valid_from");
        assert!(a.has_use_left());
        a.record_use(t(1001)).expect("last use");
        assert!(!a.has_use_left());
        assert_eq!(a.uses(), 2);
        assert_eq!(
            a.record_use(t(1002)).map_err(|e| e.code()),
            Err("uses_exhausted")
        );
        assert_eq!(a.uses(), 2);
    }

    #[test]
    fn time_may_not_go_backwards() {
        let mut a = pending();
        assert_eq!(
            a.grant(t(499)).map_err(|e| e.code()),
            Err("time_went_backwards")
        );
        a.grant(t(500)).expect("same second is fine");
    }

    #[test]
    fn invalid_terms_are_refused() {
        let id = ConsentId::from_bytes([2; 16]);
        let go = |tm: ConsentTerms| {
            ConsentArtefact::request(id, citizen(), tm, None, t(500)).map_err(|e| e.code())
        };
        assert_eq!(
            go(ConsentTerms {
                fields: vec![],
                ..terms()
            }),
            Err("no_fields")
        );
        let mut dup = terms();
        dup.fields.push(dup.fields[0].clone());
        assert_eq!(go(dup), Err("duplicate_field"));
        assert_eq!(
            go(ConsentTerms {
                expires_at: t(1000),
                ..terms()
            }),
            Err("empty_validity")
        );
        assert_eq!(
            go(ConsentTerms {
                valid_from: t(0),
                expires_at: t(500),
                ..terms()
            }),
            Err("expires_in_past")
        );
        assert_eq!(
            go(ConsentTerms {
                max_uses: Some(0),
                ..terms()
            }),
            Err("zero_uses")
        );
    }

    #[test]
    fn supersede_needs_same_parties_and_a_granted_original() {
        let old = pending();
        let id = ConsentId::from_bytes([3; 16]);
        let err = ConsentArtefact::grant_direct(id, citizen(), terms(), Some(&old), t(700));
        assert_eq!(err.map_err(|e| e.code()), Err("supersede_not_granted"));
        let mut old = old;
        old.grant(t(600)).expect("grant");
        let other = ConsentTerms {
            purpose: PurposeCode::new("research").expect("id"),
            ..terms()
        };
        let err = ConsentArtefact::grant_direct(id, citizen(), other, Some(&old), t(700));
        assert_eq!(err.map_err(|e| e.code()), Err("supersede_mismatch"));
        let other_agency = ConsentTerms {
            agency: AgencyId::new("clinic").expect("id"),
            ..terms()
        };
        let err = ConsentArtefact::grant_direct(id, citizen(), other_agency, Some(&old), t(700));
        assert_eq!(err.map_err(|e| e.code()), Err("supersede_mismatch"));
        let someone_else = CitizenRef::new("c-2").expect("ref");
        let err = ConsentArtefact::grant_direct(id, someone_else, terms(), Some(&old), t(700));
        assert_eq!(err.map_err(|e| e.code()), Err("supersede_mismatch"));
        let new = ConsentArtefact::grant_direct(id, citizen(), terms(), Some(&old), t(700))
            .expect("supersede");
        assert_eq!(new.supersedes(), Some(old.id()));
        assert_eq!(new.status(), ConsentStatus::Active);
    }

    /// The stored shape of a version-1 artefact, as the engine's serde codecs see it.
    const FIXTURE_V1: &str = r#"{"version":1,"id":"01010101010101010101010101010101","citizen":"c-1","agency":"hospital","purpose":"care","fields":["health.blood_type","health.allergies"],"created_at":500,"valid_from":1000,"expires_at":2000,"max_uses":2,"uses":1,"data_life":3600,"status":"revoked","events":[{"kind":"requested","at":500},{"kind":"granted","at":600},{"kind":"revoked","at":1500}],"supersedes":null}"#;

    #[test]
    fn the_version_1_format_round_trips_and_is_kept() {
        let mut a = pending();
        a.grant(t(600)).expect("grant");
        a.record_use(t(1000)).expect("use");
        a.revoke(t(1500)).expect("revoke");
        let json = serde_json::to_string(&a).expect("serialise");
        assert_eq!(json, FIXTURE_V1);
        let back: ConsentArtefact = serde_json::from_str(FIXTURE_V1).expect("read v1");
        assert_eq!(back, a);
        let v2 = FIXTURE_V1.replace(r#""version":1"#, r#""version":2"#);
        let err = serde_json::from_str::<ConsentArtefact>(&v2).expect_err("unknown version");
        assert!(
            err.to_string().contains("version 2 is not supported"),
            "{err}"
        );
        let bad_field = FIXTURE_V1.replace("health.blood_type", "Blood Type");
        assert!(serde_json::from_str::<ConsentArtefact>(&bad_field).is_err());
    }

    proptest::proptest! {
        /// The state machine against a small model of it: random steps at random,
        /// non-decreasing times.
        #[test]
        fn lifecycle_agrees_with_a_model(
            direct: bool,
            max_uses in proptest::option::of(1..3u32),
            steps in proptest::collection::vec((0..5u8, 0..400u64), 0..12),
        ) {
            let tm = ConsentTerms { max_uses, ..terms() };
            let id = ConsentId::from_bytes([9; 16]);
            let mut a = if direct {
                ConsentArtefact::grant_direct(id, citizen(), tm, None, t(500))
            } else {
                ConsentArtefact::request(id, citizen(), tm, None, t(500))
            }
            .expect("valid terms");
            let mut state = if direct { ConsentStatus::Active } else { ConsentStatus::Pending };
            let (mut uses, mut events, mut now) = (0u32, 1usize, 500u64);
            for (op, dt) in steps {
                now += dt;
                let live = matches!(state, ConsentStatus::Pending | ConsentStatus::Active);
                let eff = if live && now >= 2000 { ConsentStatus::Expired } else { state };
                let (allowed, next) = match op {
                    0 => (eff == ConsentStatus::Pending, ConsentStatus::Active),
                    1 => (eff == ConsentStatus::Pending, ConsentStatus::Denied),
                    2 => (eff == ConsentStatus::Active, ConsentStatus::Revoked),
                    3 => (
                        eff == ConsentStatus::Active
                            && now >= 1000
                            && max_uses.is_none_or(|m| uses < m),
                        state,
                    ),
                    _ => (
                        eff == ConsentStatus::Expired && state != ConsentStatus::Expired,
                        ConsentStatus::Expired,
                    ),
                };
                let result = match op {
                    0 => a.grant(t(now)),
                    1 => a.deny(t(now)),
                    2 => a.revoke(t(now)),
                    3 => a.record_use(t(now)),
                    _ => a.expire(t(now)),
                };
                proptest::prop_assert_eq!(result.is_ok(), allowed, "op {} at {}", op, now);
                if allowed {
                    if op == 3 {
                        uses += 1;
                    } else {
                        state = next;
                        events += 1;
                    }
                }
                proptest::prop_assert_eq!(a.status(), state);
                proptest::prop_assert_eq!(a.uses(), uses);
                proptest::prop_assert_eq!(a.events().len(), events);
                let eff_after = if matches!(state, ConsentStatus::Pending | ConsentStatus::Active) && now >= 2000 {
                    ConsentStatus::Expired
                } else {
                    state
                };
                proptest::prop_assert_eq!(a.status_at(t(now)), eff_after);
            }
        }
    }

    #[test]
    fn receipt_text_is_canonical_line_based_and_versioned() {
        let mut a = pending();
        a.grant(t(600)).expect("grant");
        let r = a.receipt_text();
        let expected = format!(
            "consent-receipt v1\n\
             id {}\n\
             citizen c-1\n\
             agency hospital\n\
             purpose care\n\
             field health.blood_type\n\
             field health.allergies\n\
             created 1970-01-01T00:08:20Z\n\
             valid-from 1970-01-01T00:16:40Z\n\
             expires 1970-01-01T00:33:20Z\n\
             max-uses 2\n\
             data-life 3600s\n\
             supersedes none\n\
             granted 1970-01-01T00:10:00Z\n",
            "01".repeat(16)
        );
        assert_eq!(r, expected);
        assert!(!r.contains("\n\n") && r.ends_with('\n') && r.is_ascii());
        // Uses and later events do not change the signed terms.
        a.record_use(t(1000)).expect("use");
        assert_eq!(a.receipt_text(), expected);
    }
}
