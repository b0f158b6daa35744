//! Consent operations: an agency's request, the citizen's direct grant, revocation and
//! answer, the citizen's lists, and the consent artefacts' storage (`Tree::Consents`).
//!
//! Keys in `Tree::Consents` (ids never hold the bytes 0x00 or 0x01):
//! - an artefact, sealed with its MAC: citizen id `|| 0x00 ||` artefact id (16 bytes);
//! - its index entry, value `[1]`: citizen id `|| 0x01 ||` agency `|| 0x00 ||` purpose
//!   `|| 0x00 ||` artefact id, so an access decision reads only the artefacts of the
//!   requesting agency and purpose. A store written before the index has it built once
//!   at open ([`build_index`], marked by `consent_index` in `Tree::Meta`).

use audit::{ActorKind, EntryDraft, SubjectTag};
use policies::{
    AgencyId, CitizenRef, ConsentArtefact, ConsentId, ConsentRecord, ConsentStatus, ConsentTerms,
    FieldName, PurposeCode, Timestamp,
};
use ring::rand::SecureRandom;

use super::notes::CallerTexts;
use super::ops::{actor, bad_id, check_text, citizen_actor, citizen_id, field_names, parse_time};
use super::{now_parts, CitizenToken, ConsentLimit, Tx, Vault, VaultError};
use crate::auth::RecordMac;
use crate::codec;
use crate::envelope::CitizenId;
use crate::records::{citizen_key, citizen_prefix};
use crate::storage::{Storage, Tree, WriteBatch};

const CONSENT_FORMAT: u8 = 1;

/// Pending consent requests an agency may have for one citizen at a time; a request over
/// it is refused (and logged) until the citizen answers one or one expires.
pub const MAX_PENDING_REQUESTS: usize = 20;

/// How far ahead, in days, a consent request's `expires_at` may be. A pending request
/// lives until it is answered or expires, so this also bounds how long it waits.
pub const MAX_CONSENT_REQUEST_DAYS: u32 = 366;

/// An agency's consent request.
#[derive(Clone, Debug)]
pub struct ConsentRequestInput {
    /// Citizen id.
    pub citizen: String,
    /// Purpose code.
    pub purpose: String,
    /// Fields asked for.
    pub fields: Vec<String>,
    /// When the consent would end (RFC 3339).
    pub expires_at: String,
    /// The official who asked.
    pub initiator: Option<String>,
}

/// A citizen's direct grant.
#[derive(Clone, Debug)]
pub struct GrantInput {
    /// Agency id.
    pub agency: String,
    /// Purpose code.
    pub purpose: String,
    /// Fields.
    pub fields: Vec<String>,
    /// End of validity (RFC 3339).
    pub expires_at: String,
    /// Start of validity (RFC 3339; default now).
    pub valid_from: Option<String>,
    /// Most uses.
    pub max_uses: Option<u32>,
    /// How long the agency may keep what it receives.
    pub data_life_days: Option<u32>,
}

/// A consent artefact with the words people read and its signed receipt.
#[derive(Clone, Debug)]
pub struct ConsentView {
    /// The artefact.
    pub artefact: ConsentArtefact,
    /// Its status now (`expired` computed at read time).
    pub status: String,
    /// The agency's name.
    pub agency_name: String,
    /// The purpose in words.
    pub purpose_description: String,
    /// The signed consent receipt (C2SP signed note), for granted artefacts.
    pub receipt: Option<String>,
}

/// The parties and terms a consent request and a direct grant both name, validated.
struct Parties {
    citizen: CitizenId,
    citizen_ref: CitizenRef,
    agency: AgencyId,
    purpose: PurposeCode,
    fields: Vec<FieldName>,
}

fn parties(
    citizen: &str,
    agency: &str,
    purpose: &str,
    fields: &[String],
) -> Result<Parties, VaultError> {
    let citizen = citizen_id(citizen)?;
    Ok(Parties {
        citizen_ref: CitizenRef::new(citizen.as_str()).map_err(|e| bad_id("invalid_citizen", e))?,
        citizen,
        agency: AgencyId::new(agency).map_err(|e| bad_id("invalid_agency", e))?,
        purpose: PurposeCode::new(purpose).map_err(|e| bad_id("invalid_purpose", e))?,
        fields: field_names(fields)?,
    })
}

fn random_consent_id() -> Result<ConsentId, VaultError> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| VaultError::internal("the system random generator failed"))?;
    Ok(ConsentId::from_bytes(b))
}

fn consent_key(citizen: &CitizenId, id: ConsentId) -> Vec<u8> {
    citizen_key(citizen, &id.to_bytes())
}

/// The `Tree::Meta` key whose presence says every artefact has its index entry.
const INDEX_MARKER: &[u8] = b"consent_index";

/// The index prefix of `citizen`'s artefacts for `agency` (and `purpose`, if given).
fn index_prefix(citizen: &str, agency: &str, purpose: Option<&str>) -> Vec<u8> {
    let mut k = Vec::with_capacity(citizen.len() + agency.len() + 80);
    k.extend_from_slice(citizen.as_bytes());
    k.push(1);
    k.extend_from_slice(agency.as_bytes());
    k.push(0);
    if let Some(p) = purpose {
        k.extend_from_slice(p.as_bytes());
        k.push(0);
    }
    k
}

fn index_key(a: &ConsentArtefact) -> Vec<u8> {
    let mut k = index_prefix(
        a.citizen().as_str(),
        a.agency().as_str(),
        Some(a.purpose().as_str()),
    );
    k.extend_from_slice(&a.id().to_bytes());
    k
}

/// The end (exclusive) of the range of keys starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    // The prefix ends with a separator (0x00 or 0x01), so this never overflows.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// `citizen`'s artefacts for `agency` (and `purpose`, if given), through the index.
pub(super) fn load_consents_of(
    store: &dyn Storage,
    mac: &RecordMac,
    citizen: &CitizenId,
    agency: &AgencyId,
    purpose: Option<&PurposeCode>,
) -> Result<Vec<ConsentArtefact>, VaultError> {
    let prefix = index_prefix(
        citizen.as_str(),
        agency.as_str(),
        purpose.map(PurposeCode::as_str),
    );
    let mut out = Vec::new();
    for (k, _) in store.scan(
        Tree::Consents,
        &prefix,
        Some(&prefix_end(&prefix)),
        usize::MAX,
    )? {
        let id = k
            .len()
            .checked_sub(16)
            .and_then(|at| <[u8; 16]>::try_from(&k[at..]).ok())
            .map(ConsentId::from_bytes)
            .ok_or_else(|| VaultError::internal("a consent index key is too short"))?;
        let key = consent_key(citizen, id);
        let Some(bytes) = store.get(Tree::Consents, &key)? else {
            return Err(VaultError::internal(
                "the consent index names an artefact that is not stored",
            ));
        };
        let a = decode_consent(mac, &key, &bytes)?;
        // The index is not authenticated: the artefact's own terms decide.
        if a.agency() == agency && purpose.is_none_or(|p| a.purpose() == p) {
            out.push(a);
        }
    }
    Ok(out)
}

/// Builds the index of a store written before it (every artefact's index entry), once:
/// `Tree::Meta` then holds [`INDEX_MARKER`]. Idempotent, so an interrupted build is simply
/// done again at the next open.
pub(super) fn build_index(store: &dyn Storage, mac: &RecordMac) -> Result<(), VaultError> {
    if store.get(Tree::Meta, INDEX_MARKER)?.is_some() {
        return Ok(());
    }
    let mut batch = WriteBatch::new();
    let mut staged = 0usize;
    for item in crate::storage::scan_all(store, Tree::Consents) {
        let (key, value) = item?;
        // Artefact keys have 0x00 after the citizen id; index keys 0x01.
        if key.iter().find(|b| **b <= 1) != Some(&0) {
            continue;
        }
        let a = decode_consent(mac, &key, &value)?;
        batch.put(Tree::Consents, index_key(&a), vec![1]);
        staged += 1;
        if staged == 1000 {
            store.commit(std::mem::take(&mut batch))?;
            staged = 0;
        }
    }
    batch.put(Tree::Meta, INDEX_MARKER, vec![1]);
    store.commit(batch)?;
    Ok(())
}

const CONSENT_KIND: &str = "consent artefact";

/// A stored artefact, once its MAC (bound to its key) checks.
fn decode_consent(
    mac: &RecordMac,
    key: &[u8],
    stored: &[u8],
) -> Result<ConsentArtefact, VaultError> {
    let bytes = mac.open(CONSENT_KIND, Tree::Consents, key, stored)?;
    Ok(codec::decode(CONSENT_KIND, CONSENT_FORMAT, bytes)?)
}

/// Whether the citizen's consent `id` is granted and not withdrawn (expired or not);
/// `false` when it is not there (erased, or a bad id).
pub(super) fn is_active(
    store: &dyn Storage,
    mac: &RecordMac,
    citizen: &CitizenId,
    id: &str,
) -> Result<bool, VaultError> {
    let Ok(id) = ConsentId::parse(id) else {
        return Ok(false);
    };
    let key = consent_key(citizen, id);
    let Some(bytes) = store.get(Tree::Consents, &key)? else {
        return Ok(false);
    };
    Ok(decode_consent(mac, &key, &bytes)?.status() == ConsentStatus::Active)
}

pub(super) fn load_consents(
    store: &dyn Storage,
    mac: &RecordMac,
    citizen: &CitizenId,
) -> Result<Vec<ConsentArtefact>, VaultError> {
    let (start, end) = citizen_prefix(citizen);
    store
        .scan(Tree::Consents, &start, Some(&end), usize::MAX)?
        .into_iter()
        .map(|(k, v)| decode_consent(mac, &k, &v))
        .collect()
}

/// The requests of `like`'s agency still pending for `citizen` at `now`.
fn pending_requests(
    store: &dyn Storage,
    mac: &RecordMac,
    citizen: &CitizenId,
    like: &ConsentArtefact,
    now: Timestamp,
) -> Result<usize, VaultError> {
    Ok(load_consents_of(store, mac, citizen, like.agency(), None)?
        .iter()
        .filter(|a| a.status_at(now) == ConsentStatus::Pending)
        .count())
}

impl Tx<'_> {
    /// Stages the deletion of every consent artefact of the citizen.
    pub(super) fn delete_consents(&mut self, citizen: &CitizenId) -> Result<(), VaultError> {
        let (start, end) = citizen_prefix(citizen);
        for (k, _) in self
            .store()
            .scan(Tree::Consents, &start, Some(&end), usize::MAX)?
        {
            self.batch.delete(Tree::Consents, k);
        }
        // And their index entries: citizen id `|| 0x01 ||` ...
        let mut start = citizen.as_str().as_bytes().to_vec();
        start.push(1);
        for (k, _) in self.store().scan(
            Tree::Consents,
            &start,
            Some(&prefix_end(&start)),
            usize::MAX,
        )? {
            self.batch.delete(Tree::Consents, k);
        }
        Ok(())
    }

    pub(super) fn put_consent(&mut self, a: &ConsentArtefact) -> Result<(), VaultError> {
        let citizen = citizen_id(a.citizen().as_str())?;
        let key = consent_key(&citizen, a.id());
        let value = self.vault.keys.records().seal(
            Tree::Consents,
            &key,
            codec::encode(CONSENT_KIND, CONSENT_FORMAT, a)?,
        );
        self.batch.put(Tree::Consents, key, value);
        self.batch.put(Tree::Consents, index_key(a), vec![1]);
        Ok(())
    }
}

impl Vault {
    /// The consent of `v` as an ISO/IEC TS 27560 record in the W3C DPV profile (JSON-LD,
    /// derived, unsigned, naming the SHA-256 of its signed receipt); `None` for a consent
    /// never granted. Built only where it is served (the record route, the export).
    pub(super) fn consent_record(&self, v: &ConsentView, now: Timestamp) -> Option<ConsentRecord> {
        let digest = ring::digest::digest(&ring::digest::SHA256, v.receipt.as_ref()?.as_bytes());
        let hash: [u8; 32] = digest.as_ref().try_into().ok()?;
        policies::consent_record(&v.artefact, &self.policy, &hash, now)
    }

    pub(super) fn view(&self, a: ConsentArtefact, now: Timestamp) -> ConsentView {
        let status = a.status_at(now);
        let receipt = a
            .granted_at()
            .and_then(|_| self.receipt_signer.sign(&a.receipt_text()).ok());
        ConsentView {
            status: status_code(status).to_owned(),
            agency_name: self.agency_name(a.agency().as_str()),
            purpose_description: self
                .policy
                .purpose(a.purpose())
                .map(|p| p.description.clone())
                .unwrap_or_default(),
            receipt,
            artefact: a,
        }
    }

    /// An agency asks a citizen for consent (a pending artefact the citizen answers).
    pub fn request_consent(
        &self,
        agency: &str,
        input: ConsentRequestInput,
    ) -> Result<ConsentView, VaultError> {
        let Parties {
            citizen,
            citizen_ref,
            agency: agency_id,
            purpose,
            fields,
        } = parties(&input.citizen, agency, &input.purpose, &input.fields)?;
        let expires_at = parse_time("expires_at", &input.expires_at)?;
        check_text("initiator", &input.initiator)?;
        let (now, now_ms) = now_parts();
        let refused_draft = |tx: &mut Tx<'_>| -> Result<(), VaultError> {
            // Logged like every refused attempt; nothing else is stored and no key is
            // created for a citizen the vault does not know.
            let mut draft = EntryDraft::new(
                now_ms,
                actor(ActorKind::Agency, agency),
                "consent.request",
                "refused",
            );
            draft.purpose = Some(purpose.as_str().to_owned());
            draft.requested = fields.iter().map(|f| f.as_str().to_owned()).collect();
            draft.legal_basis = Some("consent".to_owned());
            draft.policy_set = Some(self.policy_digest);
            // One read of the citizen's keys gives both the tag and the note key.
            let keys = tx.subject_keys(&citizen)?;
            draft.subject = keys.as_ref().map(|(tag, _)| *tag);
            let texts = CallerTexts {
                official: input.initiator.clone(),
                justification: None,
                lift: None,
            };
            tx.entry_with_texts(draft, texts, keys.map(|(_, k)| k))?;
            Ok(())
        };
        if let Err(refusal) = self
            .policy
            .check_consent_request(&agency_id, &purpose, &fields)
        {
            let ((), index) = self.transact(|tx| refused_draft(tx))?;
            return Err(VaultError::Forbidden {
                code: "consent_request_refused",
                message: refusal.to_string(),
                audit_index: Some(index),
            });
        }
        let latest = now.saturating_add(u64::from(MAX_CONSENT_REQUEST_DAYS) * 86_400);
        if expires_at > latest {
            let ((), index) = self.transact(|tx| refused_draft(tx))?;
            return Err(VaultError::ConsentLimit {
                limit: ConsentLimit::ExpiresTooLate {
                    max_days: MAX_CONSENT_REQUEST_DAYS,
                },
                audit_index: Some(index),
            });
        }
        let id = random_consent_id()?;
        let terms = ConsentTerms {
            agency: agency_id,
            purpose: purpose.clone(),
            fields: fields.clone(),
            valid_from: now,
            expires_at,
            max_uses: None,
            data_life: None,
        };
        let artefact = ConsentArtefact::request(id, citizen_ref, terms, None, now)
            .map_err(|e| VaultError::bad("invalid_consent", e.to_string()))?;
        let (stored, index) = self.transact(|tx| {
            // Counted under the writer lock, so concurrent requests cannot pass the cap.
            let pending =
                pending_requests(tx.store(), self.keys.records(), &citizen, &artefact, now)?;
            if pending >= MAX_PENDING_REQUESTS {
                refused_draft(tx)?;
                return Ok(None);
            }
            // For an erased citizen the request is answered like any other (an agency
            // learns nothing) but dropped: nothing about the person is stored again, no
            // key is re-created, and the entry says it was refused.
            let erased = tx.is_erased(&citizen)?;
            if !erased {
                tx.put_consent(&artefact)?;
            }
            let mut draft = EntryDraft::new(
                now_ms,
                actor(ActorKind::Agency, agency),
                "consent.request",
                if erased { "refused" } else { "pending" },
            );
            draft.purpose = Some(artefact.purpose().as_str().to_owned());
            draft.requested = artefact
                .fields()
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect();
            draft.legal_basis = Some("consent".to_owned());
            draft.consent_id = Some(artefact.id().to_string());
            draft.policy_set = Some(self.policy_digest);
            draft.terms = (!erased).then(|| terms_item(&artefact));
            draft.subject = tx.tag(&citizen, !erased)?;
            let key = tx.subject_keys(&citizen)?.map(|(_, k)| k);
            let texts = CallerTexts {
                official: input.initiator.clone(),
                justification: None,
                lift: None,
            };
            tx.entry_with_texts(draft, texts, key)?;
            tx.notify_about(&citizen);
            Ok(Some(artefact))
        })?;
        let Some(artefact) = stored else {
            return Err(VaultError::ConsentLimit {
                limit: ConsentLimit::TooManyPending {
                    max: MAX_PENDING_REQUESTS,
                },
                audit_index: Some(index),
            });
        };
        Ok(self.view(artefact, now))
    }

    /// The citizen's consents (every status), newest first.
    pub fn citizen_consents(&self, citizen: &str) -> Result<Vec<ConsentView>, VaultError> {
        let citizen = citizen_id(citizen)?;
        let (now, _) = now_parts();
        let mut list = load_consents(&*self.store, self.keys.records(), &citizen)?;
        list.sort_by_key(|a| std::cmp::Reverse(a.created_at()));
        Ok(list
            .into_iter()
            .filter(|a| a.granted_at().is_some() || a.status() != ConsentStatus::Pending)
            .map(|a| self.view(a, now))
            .collect())
    }

    /// One of the citizen's consents as an ISO/IEC TS 27560 record in the W3C DPV
    /// profile. `NotFound` for an id the citizen has no consent under, and for a consent
    /// never granted (it has no signed receipt, so no record).
    pub fn citizen_consent_record(
        &self,
        citizen: &str,
        id: &str,
    ) -> Result<ConsentRecord, VaultError> {
        let citizen = citizen_id(citizen)?;
        let id = ConsentId::parse(id).map_err(|_| VaultError::NotFound { what: "consent" })?;
        let (now, _) = now_parts();
        let key = consent_key(&citizen, id);
        let Some(bytes) = self.store.get(Tree::Consents, &key)? else {
            return Err(VaultError::NotFound { what: "consent" });
        };
        let a = decode_consent(self.keys.records(), &key, &bytes)?;
        self.consent_record(&self.view(a, now), now)
            .ok_or(VaultError::NotFound { what: "consent" })
    }

    /// The citizen's pending consent requests.
    pub fn citizen_consent_requests(&self, citizen: &str) -> Result<Vec<ConsentView>, VaultError> {
        let citizen = citizen_id(citizen)?;
        let (now, _) = now_parts();
        let mut list = load_consents(&*self.store, self.keys.records(), &citizen)?;
        list.sort_by_key(|a| std::cmp::Reverse(a.created_at()));
        Ok(list
            .into_iter()
            .filter(|a| a.status_at(now) == ConsentStatus::Pending)
            .map(|a| self.view(a, now))
            .collect())
    }

    /// A citizen grants consent directly.
    pub fn grant_consent(
        &self,
        me: &CitizenToken,
        input: GrantInput,
    ) -> Result<ConsentView, VaultError> {
        let citizen = me.citizen();
        let Parties {
            citizen,
            citizen_ref,
            agency: agency_id,
            purpose,
            fields,
        } = parties(citizen, &input.agency, &input.purpose, &input.fields)?;
        self.policy
            .check_consent_request(&agency_id, &purpose, &fields)
            .map_err(|e| VaultError::bad("invalid_consent", e.to_string()))?;
        self.refuse_erased(&citizen)?;
        let (now, now_ms) = now_parts();
        let valid_from = match &input.valid_from {
            Some(v) => parse_time("valid_from", v)?,
            None => now,
        };
        let terms = ConsentTerms {
            agency: agency_id,
            purpose,
            fields,
            valid_from,
            expires_at: parse_time("expires_at", &input.expires_at)?,
            max_uses: input.max_uses,
            data_life: input.data_life_days.map(|d| u64::from(d) * 86_400),
        };
        let id = random_consent_id()?;
        let artefact = ConsentArtefact::grant_direct(id, citizen_ref, terms, None, now)
            .map_err(|e| VaultError::bad("invalid_consent", e.to_string()))?;
        let (artefact, _) = self.transact(|tx| {
            tx.put_consent(&artefact)?;
            let tag = tx.tag(&citizen, true)?;
            let mut draft = consent_draft(now_ms, "consent.grant", &artefact, tag, me);
            draft.policy_set = Some(self.policy_digest);
            tx.entry(draft);
            tx.notify_about(&citizen);
            Ok(artefact)
        })?;
        Ok(self.view(artefact, now))
    }

    fn change_consent(
        &self,
        me: &CitizenToken,
        id: &str,
        action: &'static str,
        step: impl FnOnce(&mut ConsentArtefact, Timestamp) -> Result<(), policies::ConsentError>,
    ) -> Result<ConsentView, VaultError> {
        let citizen = citizen_id(me.citizen())?;
        let id = ConsentId::parse(id).map_err(|_| VaultError::NotFound { what: "consent" })?;
        let (now, now_ms) = now_parts();
        let (artefact, _) = self.transact(|tx| {
            let key = consent_key(&citizen, id);
            let Some(bytes) = tx.store().get(Tree::Consents, &key)? else {
                return Err(VaultError::NotFound { what: "consent" });
            };
            let mut a = decode_consent(self.keys.records(), &key, &bytes)?;
            step(&mut a, now)
                .map_err(|e| VaultError::conflict("invalid_transition", e.to_string()))?;
            tx.put_consent(&a)?;
            let tag = tx.tag(&citizen, false)?;
            let mut draft = consent_draft(now_ms, action, &a, tag, me);
            draft.policy_set = Some(self.policy_digest);
            tx.entry(draft);
            tx.notify_about(&citizen);
            Ok(a)
        })?;
        Ok(self.view(artefact, now))
    }

    /// A citizen revokes a consent; effective for the next request.
    pub fn revoke_consent(&self, me: &CitizenToken, id: &str) -> Result<ConsentView, VaultError> {
        self.change_consent(me, id, "consent.revoke", |a, now| a.revoke(now))
    }

    /// A citizen approves or denies a pending consent request.
    pub fn answer_consent_request(
        &self,
        me: &CitizenToken,
        id: &str,
        approve: bool,
    ) -> Result<ConsentView, VaultError> {
        if approve {
            self.change_consent(me, id, "consent.grant", |a, now| a.grant(now))
        } else {
            self.change_consent(me, id, "consent.deny", |a, now| a.deny(now))
        }
    }
}

fn consent_draft(
    now_ms: u64,
    action: &str,
    a: &ConsentArtefact,
    subject: Option<SubjectTag>,
    me: &CitizenToken,
) -> EntryDraft {
    let mut draft = EntryDraft::new(now_ms, citizen_actor(), action, "done");
    draft.initiator = Some(me.token_id().to_owned());
    draft.purpose = Some(a.purpose().as_str().to_owned());
    draft.requested = a.fields().iter().map(|f| f.as_str().to_owned()).collect();
    draft.legal_basis = Some("consent".to_owned());
    draft.consent_id = Some(a.id().to_string());
    draft.processing = Some("consent".to_owned());
    draft.subject = subject;
    draft.terms = Some(terms_item(a));
    draft
}

/// The artefact's terms as a consent entry carries them (item 23), so a replay of the log
/// rebuilds the artefact from the log alone.
pub(crate) fn terms_item(a: &ConsentArtefact) -> audit::Terms {
    audit::Terms {
        agency: a.agency().as_str().to_owned(),
        valid_from: a.valid_from().unix_seconds(),
        expires_at: a.expires_at().unix_seconds(),
        max_uses: a.max_uses().map(u64::from),
        data_life: a.data_life(),
        supersedes: a.supersedes().map(|s| s.to_string()),
    }
}

fn status_code(s: ConsentStatus) -> &'static str {
    match s {
        ConsentStatus::Pending => "pending",
        ConsentStatus::Active => "active",
        ConsentStatus::Denied => "denied",
        ConsentStatus::Revoked => "revoked",
        ConsentStatus::Expired => "expired",
        _ => "other",
    }
}
