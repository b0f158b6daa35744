//! Agency and citizen operations: record writes, access decisions (the audit entry built
//! by the pure `access_entry`), the citizen's records, history with proofs and export;
//! and the input checks the consent operations (`consents.rs`) share.

use std::collections::BTreeSet;

use audit::{Actor, ActorKind, Entry, EntryDraft, SubjectTag, Withheld};
use policies::{
    evaluate, AccessRequest, AgencyId, Basis, Category, ConsentId, ConsentRecord, Decision,
    FieldName, LegalBasis, Outcome, PurposeCode, Timestamp,
};

use super::consents::{load_consents, load_consents_of, ConsentView};
use super::error::AuditFailure;
use super::notes::{self, CallerTexts, EntryText};
use super::{log, now_parts, CitizenToken, Plaintext, Tx, Vault, VaultError};
use crate::envelope::CitizenId;
use crate::keys::NoteKey;
use crate::records::{CitizenState, FieldRead, PutOutcome, RecordError};
use crate::storage::{CommitTicket, Storage};

/// Most fields one access request or consent may name. With [`MAX_TEXT`],
/// [`MAX_FIELD_NAME_LEN`] and the policy files' own bounds, every audit entry fits one
/// stored value (`tests::the_largest_entries_fit_one_stored_value`).
pub const MAX_REQUEST_FIELDS: usize = 16;
/// Longest justification or initiator text, in bytes.
pub const MAX_TEXT: usize = 1000;
/// Longest field name (`category.field`) a request may name, in bytes; the vocabulary's
/// own names are no longer.
pub const MAX_FIELD_NAME_LEN: usize = policies::load::MAX_FIELD_NAME_LEN;

/// The result of a record write.
#[derive(Clone, Debug)]
pub struct WriteOutcome {
    /// The record's new version.
    pub version: u64,
    /// The audit entry of the write.
    pub audit_index: u64,
}

/// An agency's access request, validated: built only by [`AccessInput::new`], so every id
/// is parsed and every limit checked before the engine sees it.
#[derive(Clone, Debug)]
pub struct AccessInput {
    citizen: CitizenId,
    purpose: PurposeCode,
    fields: Vec<FieldName>,
    legal_basis: Option<LegalBasis>,
    justification: Option<String>,
    initiator: Option<String>,
}

impl AccessInput {
    /// Parses a request as received: the citizen id, the purpose code, 1 to
    /// [`MAX_REQUEST_FIELDS`] field names (`category.field`), an optional claimed legal
    /// basis code, and a justification and initiator of at most [`MAX_TEXT`] bytes.
    pub fn new(
        citizen: &str,
        purpose: &str,
        fields: &[String],
        legal_basis: Option<&str>,
        justification: Option<String>,
        initiator: Option<String>,
    ) -> Result<Self, VaultError> {
        let citizen = citizen_id(citizen)?;
        let purpose = PurposeCode::new(purpose).map_err(|e| bad_id("invalid_purpose", e))?;
        let fields = field_names(fields)?;
        let legal_basis = legal_basis
            .map(|b| {
                LegalBasis::from_code(b).ok_or_else(|| {
                    VaultError::bad(
                        "invalid_legal_basis",
                        "legal_basis must be one of consent, legal_obligation, public_task, vital_interest",
                    )
                })
            })
            .transpose()?;
        check_text("justification", &justification)?;
        check_text("initiator", &initiator)?;
        Ok(AccessInput {
            citizen,
            purpose,
            fields,
            legal_basis,
            justification,
            initiator,
        })
    }
}

/// The answer to an access request.
#[derive(Debug)]
pub struct AccessOutcome {
    /// Identifies the decision (its audit entry).
    pub decision_id: String,
    /// Released fields and their values.
    pub released: Vec<(String, Plaintext)>,
    /// Withheld fields and the reason code.
    pub withheld: Vec<Withheld>,
    /// The audit entry of the decision.
    pub audit_index: u64,
}

/// An access decision whose audit entry is applied but not yet durable
/// ([`Vault::access_decide`]); [`Vault::access_finish`] turns it into the answer. Holds
/// only field names, reason codes and ciphertexts; its `Debug` prints the entry index.
pub struct PendingAccess {
    citizen: CitizenId,
    released: Vec<FieldName>,
    withheld: Vec<Withheld>,
    read: FieldRead,
    index: u64,
    ticket: CommitTicket,
}

impl std::fmt::Debug for PendingAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAccess")
            .field("audit_index", &self.index)
            .finish_non_exhaustive()
    }
}

/// A decrypted record with names.
#[derive(Debug)]
pub struct RecordView {
    /// Category.
    pub category: String,
    /// Version.
    pub version: u64,
    /// Last write.
    pub updated_at: Timestamp,
    /// The agency that wrote it last.
    pub source: String,
    /// That agency's name.
    pub source_name: String,
    /// Fields (`name` within the category) and values.
    pub fields: Vec<(String, Plaintext)>,
}

/// One entry of a citizen's history, with its proof.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// Log index.
    pub index: u64,
    /// The exact leaf bytes.
    pub leaf: Vec<u8>,
    /// Inclusion proof against the history's checkpoint.
    pub proof: Vec<audit::Hash>,
    /// The decoded entry.
    pub entry: Entry,
    /// The free texts the entry commits to (`official`, `justification`), with their
    /// salts, opened from the citizen's sealed note: check each against the leaf's
    /// commitment before trusting it. Empty for an entry without free texts.
    pub texts: Vec<EntryText>,
}

/// A page of a citizen's access history.
#[derive(Clone, Debug)]
pub struct History {
    /// The signed checkpoint every proof is against.
    pub checkpoint: String,
    /// The log's verifier key.
    pub key: String,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// Entries, newest first.
    pub entries: Vec<HistoryEntry>,
    /// The `start` of the next (older) page, if any.
    pub next: Option<u64>,
}

/// Everything the vault holds about a citizen; its history is read page by page
/// ([`Vault::export_history_page`]).
#[derive(Debug)]
pub struct CitizenExport {
    /// Citizen id.
    pub citizen: String,
    /// When.
    pub exported_at: Timestamp,
    /// Records, decrypted.
    pub records: Vec<RecordView>,
    /// Consents and requests, each with its DPV record (`None` if never granted).
    pub consents: Vec<(ConsentView, Option<ConsentRecord>)>,
    /// The signed checkpoint every proof of the history is against.
    pub checkpoint: String,
    /// The log's verifier key.
    pub key: String,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The citizen's subject tag and note key (`None`: the vault holds no history of them).
    subject: Option<(SubjectTag, NoteKey)>,
}

pub(super) fn bad_id(kind: &'static str, e: impl std::fmt::Display) -> VaultError {
    VaultError::bad(kind, e.to_string())
}

pub(super) fn citizen_id(s: &str) -> Result<CitizenId, VaultError> {
    CitizenId::new(s).map_err(|e| bad_id("invalid_citizen", e))
}

pub(super) fn check_text(what: &str, t: &Option<String>) -> Result<(), VaultError> {
    match t {
        Some(s) if s.len() > MAX_TEXT || s.chars().any(char::is_control) => Err(VaultError::bad(
            "invalid_text",
            format!("{what} must be at most {MAX_TEXT} bytes without control characters"),
        )),
        _ => Ok(()),
    }
}

pub(super) fn field_names(fields: &[String]) -> Result<Vec<FieldName>, VaultError> {
    if fields.is_empty() {
        return Err(VaultError::bad("invalid_fields", "name at least one field"));
    }
    if fields.len() > MAX_REQUEST_FIELDS {
        return Err(VaultError::TooLarge {
            message: format!("at most {MAX_REQUEST_FIELDS} fields per request"),
        });
    }
    fields
        .iter()
        .map(|f| {
            if f.len() > MAX_FIELD_NAME_LEN {
                return Err(VaultError::bad(
                    "invalid_field",
                    format!("a field name is at most {MAX_FIELD_NAME_LEN} bytes (`category.field`); no field of the vocabulary is longer"),
                ));
            }
            FieldName::new(f).map_err(|e| bad_id("invalid_field", e))
        })
        .collect()
}

pub(super) fn parse_time(what: &str, s: &str) -> Result<Timestamp, VaultError> {
    Timestamp::parse(s).map_err(|e| VaultError::bad("invalid_time", format!("{what}: {e}")))
}

pub(super) fn record_err(e: RecordError) -> VaultError {
    match e {
        RecordError::Erased { .. } => VaultError::Erased,
        RecordError::InvalidField { .. }
        | RecordError::DuplicateField { .. }
        | RecordError::NoFields
        | RecordError::InvalidSource => VaultError::bad(e.code(), e.to_string()),
        RecordError::FieldTooLarge { .. } | RecordError::RecordTooLarge { .. } => {
            VaultError::TooLarge {
                message: e.to_string(),
            }
        }
        RecordError::Storage(e) => VaultError::from(e),
        RecordError::SealLimitTooSmall { .. }
        | RecordError::FieldIntegrity { .. }
        | RecordError::UnknownGeneration { .. }
        | RecordError::Key(_)
        | RecordError::KekUnavailable { .. }
        | RecordError::VaultKeyUnavailable
        | RecordError::Codec(_) => VaultError::internal(e),
    }
}

pub(super) fn actor(kind: ActorKind, id: &str) -> Actor {
    Actor {
        kind,
        id: id.to_owned(),
    }
}

pub(super) fn citizen_actor() -> Actor {
    actor(ActorKind::Citizen, "")
}

impl Tx<'_> {
    /// The citizen's subject tag, creating their keys when `create` (refused writes and
    /// reads never create keys for a citizen the vault does not know). Without `create`, an
    /// erased citizen has no tag (`None`, like a citizen the vault never knew); with it,
    /// erasure is an error: keys are never re-created for an erased citizen.
    pub(super) fn tag(
        &mut self,
        citizen: &CitizenId,
        create: bool,
    ) -> Result<Option<SubjectTag>, VaultError> {
        let records = self.vault.unsealed.records();
        let tag = if create {
            Some(
                records
                    .stage_ensure_keys(&*self.vault.store, &mut self.batch, citizen)
                    .map_err(record_err)?,
            )
        } else {
            match records.subject_tag(self.store(), citizen) {
                Err(RecordError::Erased { .. }) => None,
                tag => tag.map_err(record_err)?,
            }
        };
        Ok(tag)
    }

    /// The citizen's subject tag and note key, as staged so far in this transaction;
    /// `None` when the citizen has no keys or was erased (nothing is sealed for them).
    pub(super) fn subject_keys(
        &self,
        citizen: &CitizenId,
    ) -> Result<Option<(SubjectTag, NoteKey)>, VaultError> {
        match self
            .vault
            .unsealed
            .records()
            .subject_keys(self.store(), Some(&self.batch), citizen)
        {
            Err(RecordError::Erased { .. }) => Ok(None),
            keys => keys.map_err(record_err),
        }
    }

    /// True when the citizen was erased (read under the writer lock).
    pub(super) fn is_erased(&self, citizen: &CitizenId) -> Result<bool, VaultError> {
        let state = self
            .vault
            .unsealed
            .records()
            .citizen_state(self.store(), citizen)
            .map_err(record_err)?;
        Ok(matches!(state, CitizenState::Erased))
    }
}

impl Tx<'_> {
    /// Stages a record write by `agency` ([`Records::stage_put`](crate::records::Records::stage_put)).
    pub(super) fn stage_put(
        &mut self,
        citizen: &CitizenId,
        category: &Category,
        fields: Vec<(String, Plaintext)>,
        agency: &str,
        now: Timestamp,
    ) -> Result<PutOutcome, RecordError> {
        self.vault.unsealed.records().stage_put(
            &*self.vault.store,
            &mut self.batch,
            citizen,
            category,
            fields,
            agency,
            now,
        )
    }
}

impl Vault {
    pub(super) fn agency_name(&self, id: &str) -> String {
        AgencyId::new(id)
            .ok()
            .and_then(|a| self.policy.agency(&a).map(|a| a.name.clone()))
            .unwrap_or_else(|| id.to_owned())
    }

    pub(super) fn refuse_erased(&self, citizen: &CitizenId) -> Result<(), VaultError> {
        refuse_erased(&*self.store, self.unsealed.records(), citizen)
    }

    /// An agency writes a category of a citizen's record it is the source of. A refused
    /// write is logged too.
    pub fn write_record(
        &self,
        agency: &str,
        initiator: Option<&str>,
        citizen: &str,
        category: &str,
        fields: Vec<(String, Plaintext)>,
    ) -> Result<WriteOutcome, VaultError> {
        let agency_id = AgencyId::new(agency).map_err(|e| bad_id("invalid_agency", e))?;
        let initiator = initiator.map(str::to_owned);
        check_text("initiator", &initiator)?;
        let lens: Vec<(&str, usize)> = fields.iter().map(|(f, v)| (f.as_str(), v.len())).collect();
        let checked = super::writes::check_shape(&self.policy, citizen, category, &lens)?;
        let (citizen, category) = (checked.citizen, checked.category);
        let names: Vec<String> = checked
            .fields
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect();
        let allowed = self.policy.may_write(&agency_id, &category);
        let (now, now_ms) = now_parts();
        let (version, index) = self.transact(|tx| {
            let mut draft = EntryDraft::new(
                now_ms,
                actor(ActorKind::Agency, agency),
                "record.write",
                "done",
            );
            draft.processing = Some("collection".to_owned());
            draft.requested = names.clone();
            draft.policy_set = Some(self.policy_digest);
            let texts = CallerTexts {
                official: initiator.clone(),
                justification: None,
                lift: None,
            };
            // A write the vault refuses (not the source, or an erased citizen) is logged
            // as refused, never creates keys, and gets one answer whatever the reason.
            if !allowed || tx.is_erased(&citizen)? {
                draft.decision = "refused".to_owned();
                let keys = tx.subject_keys(&citizen)?;
                draft.subject = keys.as_ref().map(|(t, _)| *t);
                tx.entry_with_texts(draft, texts, keys.map(|(_, k)| k))?;
                return Ok(None);
            }
            let out = tx
                .stage_put(&citizen, &category, fields, agency, now)
                .map_err(record_err)?;
            draft.subject = Some(out.subject_tag);
            let key = tx.subject_keys(&citizen)?.map(|(_, k)| k);
            tx.entry_with_texts(draft, texts, key)?;
            Ok(Some(out.version))
        })?;
        match version {
            Some(version) => Ok(WriteOutcome {
                version,
                audit_index: index,
            }),
            None => Err(VaultError::forbidden(
                "not_source",
                format!(
                    "agency {agency} may not write category {category} of this citizen: only the category's source may, and only while the vault accepts records for the citizen; nothing was stored"
                ),
            )),
        }
    }

    /// An access request: evaluate, log (released and withheld), commit durably, and only
    /// then decrypt the released fields.
    pub fn access(&self, agency: &str, input: AccessInput) -> Result<AccessOutcome, VaultError> {
        let pending = self.access_decide(agency, input)?;
        self.store.wait_durable(pending.ticket)?;
        self.access_open(pending)
    }

    /// [`Vault::access`] for async callers, second half: waits without blocking a thread
    /// until the decision's audit entry is durable, then decrypts the released fields.
    pub async fn access_finish(&self, pending: PendingAccess) -> Result<AccessOutcome, VaultError> {
        self.durable(pending.ticket).await?;
        self.access_open(pending)
    }

    /// [`Vault::access`] for async callers, first half (blocking: run it off the async
    /// threads): evaluates the request and applies its audit entry, not yet durable. Nothing
    /// of the decision may be acknowledged before [`Vault::access_finish`] returns it.
    pub fn access_decide(
        &self,
        agency: &str,
        input: AccessInput,
    ) -> Result<PendingAccess, VaultError> {
        let agency_id = AgencyId::new(agency).map_err(|e| bad_id("invalid_agency", e))?;
        let AccessInput {
            citizen,
            purpose,
            fields,
            legal_basis,
            justification,
            initiator,
        } = input;
        let request = AccessRequest {
            agency: agency_id,
            purpose,
            fields,
            legal_basis,
            justification,
        };
        let (now, now_ms) = now_parts();
        let records = self.unsealed.records();
        let ((released, withheld, read), index, ticket) = self.transact_applied(|tx| {
            let artefacts = load_consents_of(
                tx.store(),
                self.keys.records(),
                &citizen,
                &request.agency,
                Some(&request.purpose),
            )?;
            let decision = evaluate(&self.policy, &request, &artefacts, now);
            // Only the requested categories are read (not every record of the citizen),
            // once: what exists, the subject tag, and the values opened after the commit.
            // An erased citizen reads as one the vault never knew: nothing found, no
            // subject tag, and the decision is logged like any other.
            let read = match records.read_sealed(tx.store(), &citizen, &request.fields) {
                Err(RecordError::Erased { .. }) => FieldRead::nothing(&citizen),
                read => read.map_err(record_err)?,
            };
            let deferral =
                super::deferred::deferral_of(&self.policy, &decision, |f| read.contains(f));
            let AccessEntry {
                mut draft,
                released,
                withheld,
                used,
            } = access_entry(
                &decision,
                |f| read.contains(f),
                &request,
                agency,
                now_ms,
                deferral.is_some(),
            );
            draft.policy_set = Some(self.policy_digest);
            for id in &used {
                if let Some(a) = artefacts.iter().find(|a| a.id() == *id) {
                    let mut a = a.clone();
                    a.record_use(now).map_err(VaultError::internal)?;
                    tx.put_consent(&a)?;
                }
            }
            let (tag, key) = read
                .subject_keys(records)
                .map_err(record_err)?
                .map_or((None, None), |(t, k)| (Some(t), Some(k)));
            draft.subject = tag;
            let texts = CallerTexts {
                official: initiator.clone(),
                justification: request.justification.clone(),
                lift: None,
            };
            match (deferral, tag, key) {
                // Released under a rule that defers its disclosure: logged now, shown to
                // the citizen later (`deferred.rs`).
                (Some(d), Some(tag), Some(key)) if !released.is_empty() => tx.deferred_entry(
                    draft,
                    texts,
                    key,
                    citizen.as_str(),
                    tag,
                    d.deadline_ms(now_ms),
                )?,
                (_, _, key) => {
                    tx.entry_with_texts(draft, texts, key)?;
                    // A deferred access notifies nobody now: its disclosure does.
                    tx.notify_about(&citizen);
                }
            }
            Ok((released, withheld, read))
        })?;
        Ok(PendingAccess {
            citizen,
            released,
            withheld,
            read,
            index,
            ticket,
        })
    }

    /// Opens the released fields of a decision whose audit entry is durable.
    fn access_open(&self, pending: PendingAccess) -> Result<AccessOutcome, VaultError> {
        let PendingAccess {
            citizen,
            released,
            withheld,
            read,
            index,
            ..
        } = pending;
        let records = self.unsealed.records();
        // The entry recording the release is durable: open the values decided on.
        let values = if released.is_empty() {
            Vec::new()
        } else {
            match read.open(records, &released) {
                // A KEK retired since the read (the citizen was re-wrapped meanwhile).
                Err(RecordError::KekUnavailable { .. }) => {
                    records.read_fields(&*self.store, &citizen, &released)
                }
                other => other,
            }
            .map_err(record_err)?
        };
        let mut out_released = Vec::new();
        let mut out_withheld = withheld;
        for (field, value) in values {
            match value {
                Some(v) => out_released.push((field.as_str().to_owned(), v)),
                // Erased or rewritten between the commit and the read: nothing to give.
                None => out_withheld.push(Withheld {
                    field: field.as_str().to_owned(),
                    reason: "no_data".to_owned(),
                }),
            }
        }
        Ok(AccessOutcome {
            decision_id: format!("dec-{index}"),
            released: out_released,
            withheld: out_withheld,
            audit_index: index,
        })
    }

    /// The citizen's records, decrypted. Logged as the citizen's own access, naming the
    /// token used.
    pub fn citizen_records(&self, me: &CitizenToken) -> Result<Vec<RecordView>, VaultError> {
        let citizen = citizen_id(me.citizen())?;
        self.refuse_erased(&citizen)?;
        self.citizen_read(&citizen, me, "citizen.view_records")?;
        self.records_of(&citizen)
    }

    fn records_of(&self, citizen: &CitizenId) -> Result<Vec<RecordView>, VaultError> {
        let list = self
            .unsealed
            .records()
            .read_all(&*self.store, citizen)
            .map_err(record_err)?;
        Ok(list
            .into_iter()
            .map(|r| RecordView {
                source_name: self.agency_name(&r.info.source),
                category: r.info.category,
                version: r.info.version,
                updated_at: r.info.updated_at,
                source: r.info.source,
                fields: r.fields,
            })
            .collect())
    }

    fn citizen_read(
        &self,
        citizen: &CitizenId,
        me: &CitizenToken,
        action: &str,
    ) -> Result<u64, VaultError> {
        let (_, now_ms) = now_parts();
        let ((), index) = self.transact(|tx| {
            let mut draft = EntryDraft::new(now_ms, citizen_actor(), action, "done");
            draft.initiator = Some(me.token_id().to_owned());
            draft.processing = Some("consultation".to_owned());
            draft.subject = tx.tag(citizen, false)?;
            tx.entry(draft);
            Ok(())
        })?;
        Ok(index)
    }

    /// A page of the citizen's own history (newest first), each entry with an inclusion
    /// proof against one checkpoint that covers them all.
    pub fn access_history(
        &self,
        citizen: &str,
        start: Option<u64>,
        limit: usize,
    ) -> Result<History, VaultError> {
        let keys = history_keys(&*self.store, self.unsealed.records(), citizen)?;
        self.history_of(keys.as_ref(), start, limit.max(1))
    }

    /// The history of the citizen whose subject tag and note key are `keys`.
    fn history_of(
        &self,
        keys: Option<&(SubjectTag, NoteKey)>,
        start: Option<u64>,
        limit: usize,
    ) -> Result<History, VaultError> {
        // A checkpoint that covers the citizen's newest entry of the page covers them all.
        let newest = match keys {
            Some((t, _)) => log::rows_about(&*self.store, t, start, 1)?
                .first()
                .map(|(i, _)| i + 1),
            None => None,
        };
        if let Some(size) = newest {
            self.checkpoint_covering(size)?;
        }
        let (checkpoint, tree_size) = {
            let c = self
                .checkpoint
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (c.note_text.clone(), c.checkpoint.size)
        };
        let (entries, next) = history_page(&*self.store, keys, start, limit, tree_size)?;
        Ok(History {
            checkpoint,
            key: self.log_vkey.clone(),
            tree_size,
            entries,
            next,
        })
    }

    /// The tree size of the latest signed checkpoint.
    pub(super) fn checkpoint_size(&self) -> u64 {
        self.checkpoint
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .checkpoint
            .size
    }

    /// Everything about the citizen: records, consents, and the history's head (its
    /// checkpoint); the history itself is read page by page with
    /// [`Vault::export_history_page`], so an export's memory does not grow with it.
    /// Logged, naming the token used; the history covers that entry.
    pub fn citizen_export(&self, me: &CitizenToken) -> Result<CitizenExport, VaultError> {
        let id = citizen_id(me.citizen())?;
        self.refuse_erased(&id)?;
        let logged = self.citizen_read(&id, me, "citizen.export")?;
        self.checkpoint_covering(logged + 1)?;
        let (now, _) = now_parts();
        let keys = self
            .unsealed
            .records()
            .subject_keys(&*self.store, None, &id)
            .map_err(record_err)?;
        let (checkpoint, tree_size) = {
            let c = self
                .checkpoint
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (c.note_text.clone(), c.checkpoint.size)
        };
        Ok(CitizenExport {
            citizen: id.as_str().to_owned(),
            exported_at: now,
            records: self.records_of(&id)?,
            consents: load_consents(&*self.store, self.keys.records(), &id)?
                .into_iter()
                .map(|a| {
                    let v = self.view(a, now);
                    let record = self.consent_record(&v, now);
                    (v, record)
                })
                .collect(),
            checkpoint,
            key: self.log_vkey.clone(),
            tree_size,
            subject: keys,
        })
    }

    /// A page of an export's history: up to `limit` (at least 1) entries newest first from
    /// `start` (`None`: the newest), each with its proof against the export's checkpoint;
    /// and the `start` of the next page, `None` after the last.
    pub fn export_history_page(
        &self,
        export: &CitizenExport,
        start: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<HistoryEntry>, Option<u64>), VaultError> {
        history_page(
            &*self.store,
            export.subject.as_ref(),
            start,
            limit.max(1),
            export.tree_size,
        )
    }
}

/// The access entry of a decision, and what it releases and withholds.
#[derive(Debug)]
pub(crate) struct AccessEntry {
    /// The audit entry, without its subject tag (the caller adds it).
    pub(crate) draft: EntryDraft,
    /// Fields released: the decision releases them and the read found a value.
    pub(crate) released: Vec<FieldName>,
    /// Fields withheld and the reason code (`no_data` when the read found no value).
    pub(crate) withheld: Vec<Withheld>,
    /// The consent artefacts the release rests on (one use of each to record).
    pub(crate) used: Vec<ConsentId>,
}

/// The withholding reason of a field a covert access (one whose disclosure a statutory rule
/// defers) would have released under the citizen's consent: such an access releases only
/// under statute.
pub(crate) const COVERT_ACCESS: &str = "covert_access";

/// Builds the access entry of `decision` on `request`: a field the decision releases is
/// released only if `found` (the read has a value for it), else withheld as `no_data`, or
/// as [`COVERT_ACCESS`] when `covert` and it would be released under a consent.
/// The entry names the legal bases, legal references and consents the releases rest on,
/// and asks for review when the decision does and something is released. The caller's
/// free texts (official, justification) are not in it: the caller commits them
/// ([`CallerTexts`]).
pub(crate) fn access_entry(
    decision: &Decision<'_>,
    found: impl Fn(&FieldName) -> bool,
    request: &AccessRequest,
    agency: &str,
    now_ms: u64,
    covert: bool,
) -> AccessEntry {
    let mut released: Vec<FieldName> = Vec::new();
    let mut withheld: Vec<Withheld> = Vec::new();
    let mut bases: BTreeSet<&'static str> = BTreeSet::new();
    let mut references: Vec<String> = Vec::new();
    let mut used: Vec<ConsentId> = Vec::new();
    for d in &decision.fields {
        match d.outcome {
            // A covert access uses no consent: a use would show in the consent's count,
            // which the citizen sees at once (docs/audit-log.md, "Mixed accesses").
            Outcome::Released(Basis::Consent { .. }) if covert && found(d.field) => {
                withheld.push(Withheld {
                    field: d.field.as_str().to_owned(),
                    reason: COVERT_ACCESS.to_owned(),
                })
            }
            Outcome::Released(basis) if found(d.field) => {
                released.push(d.field.clone());
                bases.insert(basis.legal_basis().code());
                match basis {
                    Basis::Consent { artefact_id } => {
                        if !used.contains(&artefact_id) {
                            used.push(artefact_id);
                        }
                    }
                    Basis::Statutory {
                        legal_reference, ..
                    }
                    | Basis::VitalInterest {
                        legal_reference, ..
                    } => {
                        if !references.iter().any(|r| r == legal_reference) {
                            references.push(legal_reference.to_owned());
                        }
                    }
                }
            }
            Outcome::Released(_) => withheld.push(Withheld {
                field: d.field.as_str().to_owned(),
                reason: "no_data".to_owned(),
            }),
            Outcome::Withheld(reason) => withheld.push(Withheld {
                field: d.field.as_str().to_owned(),
                reason: reason.code().to_owned(),
            }),
        }
    }
    let review = decision.obligations.review && !released.is_empty();
    let mut draft = EntryDraft::new(
        now_ms,
        actor(ActorKind::Agency, agency),
        "access",
        if released.is_empty() {
            "refused"
        } else if withheld.is_empty() {
            "granted"
        } else {
            "partial"
        },
    );
    draft.processing = Some("disclosure".to_owned());
    draft.purpose = Some(request.purpose.as_str().to_owned());
    draft.requested = request
        .fields
        .iter()
        .map(|f| f.as_str().to_owned())
        .collect();
    draft.released = released.iter().map(|f| f.as_str().to_owned()).collect();
    draft.withheld = withheld.to_vec();
    draft.legal_basis = match bases.len() {
        0 => request.legal_basis.map(|b| b.code().to_owned()),
        _ => Some(bases.into_iter().collect::<Vec<_>>().join(",")),
    };
    draft.legal_reference = (!references.is_empty()).then(|| references.join("; "));
    draft.consent_id = (!used.is_empty()).then(|| {
        used.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    draft.review = review;
    draft.claim = Some(audit::Claim {
        legal_basis: request.legal_basis.map(|b| b.code().to_owned()),
        justified: request
            .justification
            .as_deref()
            .is_some_and(|j| !j.trim().is_empty()),
    });
    AccessEntry {
        draft,
        released,
        withheld,
        used,
    }
}

/// Refuses an erased citizen ([`VaultError::Erased`]).
fn refuse_erased(
    store: &dyn Storage,
    records: &crate::records::Records,
    citizen: &CitizenId,
) -> Result<(), VaultError> {
    match records.citizen_state(store, citizen).map_err(record_err)? {
        CitizenState::Erased => Err(VaultError::Erased),
        _ => Ok(()),
    }
}

/// The subject tag and note key of `citizen`'s history (`None`: the vault holds nothing
/// about them); an erased citizen is refused.
pub(super) fn history_keys(
    store: &dyn Storage,
    records: &crate::records::Records,
    citizen: &str,
) -> Result<Option<(SubjectTag, NoteKey)>, VaultError> {
    let citizen = citizen_id(citizen)?;
    refuse_erased(store, records, &citizen)?;
    records
        .subject_keys(store, None, &citizen)
        .map_err(record_err)
}

/// Up to `limit` entries about the citizen whose subject tag and note key are `keys`,
/// newest first from `start` (inclusive; `None`: the newest), each with its proof against
/// the checkpoint of `tree_size`; and the `start` of the next page.
pub(super) fn history_page(
    store: &dyn Storage,
    keys: Option<&(SubjectTag, NoteKey)>,
    start: Option<u64>,
    limit: usize,
    tree_size: u64,
) -> Result<(Vec<HistoryEntry>, Option<u64>), VaultError> {
    let before = Some(start.unwrap_or(u64::MAX).min(tree_size.saturating_sub(1)));
    let mut rows = match (keys, tree_size) {
        (Some((t, _)), 1..) => log::rows_about(store, t, before, limit + 1)?,
        _ => Vec::new(),
    };
    let next = (rows.len() > limit)
        .then(|| rows.pop().map(|(i, _)| i))
        .flatten();
    let mut entries = Vec::with_capacity(rows.len());
    for (index, note) in rows {
        let leaf = log::leaf(store, index)
            .map_err(log::store_failure)?
            .ok_or_else(|| VaultError::audit(AuditFailure::Missing { index }))?;
        let entry = Entry::decode(&leaf)
            .map_err(|source| VaultError::audit(AuditFailure::Entry { index, source }))?;
        let proof = audit::inclusion_proof(&log::StoreLog::new(store), index, tree_size)
            .map_err(VaultError::audit)?;
        let texts = match keys {
            Some((tag, key)) => notes::open(key, tag, index, &note)?,
            None => Vec::new(),
        };
        entries.push(HistoryEntry {
            index,
            leaf,
            proof,
            entry,
            texts,
        });
    }
    Ok((entries, next))
}

#[cfg(test)]
mod tests {
    use policies::{FieldDecision, Obligations, Reason, RuleId};

    use super::*;

    fn field(s: &str) -> FieldName {
        FieldName::new(s).unwrap()
    }

    fn request(fields: &[FieldName], legal_basis: Option<LegalBasis>) -> AccessRequest {
        AccessRequest {
            agency: AgencyId::new("hospital").unwrap(),
            purpose: PurposeCode::new("emergency_care").unwrap(),
            fields: fields.to_vec(),
            legal_basis,
            justification: None,
        }
    }

    fn decision<'a>(outcomes: Vec<(&'a FieldName, Outcome<'a>)>, review: bool) -> Decision<'a> {
        Decision {
            fields: outcomes
                .into_iter()
                .map(|(field, outcome)| FieldDecision { field, outcome })
                .collect(),
            obligations: Obligations {
                notify_citizen: review,
                review,
                delete_by: None,
            },
        }
    }

    fn names(fields: &[FieldName]) -> Vec<&str> {
        fields.iter().map(FieldName::as_str).collect()
    }

    #[test]
    fn released_by_one_consent_names_it_once() {
        let fields = [field("health.blood_type"), field("health.allergies")];
        let id = ConsentId::from_bytes([7; 16]);
        let consent = Outcome::Released(Basis::Consent { artefact_id: id });
        let d = decision(vec![(&fields[0], consent), (&fields[1], consent)], false);
        let e = access_entry(&d, |_| true, &request(&fields, None), "hospital", 42, false);
        assert_eq!(
            names(&e.released),
            ["health.blood_type", "health.allergies"]
        );
        assert!(e.withheld.is_empty());
        assert_eq!(e.used, [id]);
        let draft = e.draft;
        assert_eq!(draft.decision, "granted");
        assert_eq!(draft.action, "access");
        assert_eq!(draft.actor.kind, ActorKind::Agency);
        assert_eq!(draft.actor.id, "hospital");
        // The caller's free texts are committed by the caller, never put in the draft.
        assert_eq!(draft.initiator, None);
        assert_eq!(draft.official, None);
        assert_eq!(draft.processing.as_deref(), Some("disclosure"));
        assert_eq!(draft.purpose.as_deref(), Some("emergency_care"));
        assert_eq!(draft.requested, ["health.blood_type", "health.allergies"]);
        assert_eq!(draft.released, draft.requested);
        assert!(draft.withheld.is_empty());
        assert_eq!(draft.legal_basis.as_deref(), Some("consent"));
        assert_eq!(draft.consent_id, Some(id.to_string()));
        assert_eq!(draft.legal_reference, None);
        assert!(!draft.review);
        assert_eq!(draft.subject, None);
    }

    #[test]
    fn withheld_fields_carry_their_reason_and_make_it_partial() {
        let fields = [field("health.blood_type"), field("health.allergies")];
        let id = ConsentId::from_bytes([1; 16]);
        let d = decision(
            vec![
                (
                    &fields[0],
                    Outcome::Released(Basis::Consent { artefact_id: id }),
                ),
                (&fields[1], Outcome::Withheld(Reason::FieldNotCovered)),
            ],
            false,
        );
        let e = access_entry(&d, |_| true, &request(&fields, None), "hospital", 1, false);
        assert_eq!(names(&e.released), ["health.blood_type"]);
        assert_eq!(
            e.withheld,
            [Withheld {
                field: "health.allergies".to_owned(),
                reason: "field_not_covered".to_owned()
            }]
        );
        assert_eq!(e.draft.decision, "partial");
        assert_eq!(e.draft.withheld.len(), 1);
        assert_eq!(e.draft.withheld[0].field, "health.allergies");
        assert_eq!(e.draft.withheld[0].reason, "field_not_covered");
    }

    #[test]
    fn a_refusal_releases_nothing_and_logs_the_claimed_basis() {
        let fields = [field("health.blood_type")];
        let d = decision(
            vec![(&fields[0], Outcome::Withheld(Reason::NoStatutoryRule))],
            false,
        );
        let req = request(&fields, Some(LegalBasis::PublicTask));
        let e = access_entry(&d, |_| true, &req, "hospital", 1, false);
        assert!(e.released.is_empty());
        assert!(e.used.is_empty());
        assert_eq!(e.draft.decision, "refused");
        assert_eq!(e.draft.legal_basis.as_deref(), Some("public_task"));
        assert_eq!(e.draft.consent_id, None);
        assert!(e.draft.released.is_empty());
    }

    #[test]
    fn a_released_field_without_a_value_is_withheld_as_no_data() {
        let fields = [field("health.blood_type"), field("health.allergies")];
        let rule = RuleId::new("care_law").unwrap();
        let statutory = Outcome::Released(Basis::Statutory {
            rule_id: &rule,
            legal_basis: LegalBasis::LegalObligation,
            legal_reference: "Care Act s. 4",
        });
        let d = decision(
            vec![(&fields[0], statutory), (&fields[1], statutory)],
            false,
        );
        let found = |f: &FieldName| f.as_str() == "health.blood_type";
        let e = access_entry(&d, found, &request(&fields, None), "hospital", 1, false);
        assert_eq!(names(&e.released), ["health.blood_type"]);
        assert_eq!(
            e.withheld,
            [Withheld {
                field: "health.allergies".to_owned(),
                reason: "no_data".to_owned()
            }]
        );
        assert_eq!(e.draft.decision, "partial");
        assert_eq!(e.draft.legal_basis.as_deref(), Some("legal_obligation"));
        assert_eq!(e.draft.legal_reference.as_deref(), Some("Care Act s. 4"));

        let none = access_entry(&d, |_| false, &request(&fields, None), "hospital", 1, false);
        assert!(none.released.is_empty());
        assert_eq!(none.draft.decision, "refused");
        assert_eq!(none.draft.legal_basis, None);
        assert_eq!(none.draft.legal_reference, None);
    }

    #[test]
    fn break_glass_asks_for_review_only_when_something_is_released() {
        let fields = [field("health.blood_type")];
        let rule = RuleId::new("emergency").unwrap();
        let glass = Outcome::Released(Basis::VitalInterest {
            rule_id: &rule,
            legal_reference: "Art. 6(1)(d) GDPR",
        });
        let d = decision(vec![(&fields[0], glass)], true);
        let mut req = request(&fields, Some(LegalBasis::VitalInterest));
        req.justification = Some("unconscious patient".to_owned());
        let e = access_entry(&d, |_| true, &req, "hospital", 1, false);
        assert_eq!(e.draft.decision, "granted");
        assert!(e.draft.review);
        assert_eq!(e.draft.legal_basis.as_deref(), Some("vital_interest"));
        assert_eq!(
            e.draft.legal_reference.as_deref(),
            Some("Art. 6(1)(d) GDPR")
        );
        assert_eq!(e.draft.justification, None);
        assert_eq!(e.draft.justification_commitment, None);

        let nothing = access_entry(&d, |_| false, &req, "hospital", 1, false);
        assert_eq!(nothing.draft.decision, "refused");
        assert!(!nothing.draft.review);
        assert_eq!(
            nothing.withheld,
            [Withheld {
                field: "health.blood_type".to_owned(),
                reason: "no_data".to_owned()
            }]
        );
    }

    /// The leaf of `draft` with the largest index, time and subject the log can give it.
    fn leaf_len(mut draft: EntryDraft) -> usize {
        draft.time_ms = u64::MAX;
        draft.subject = Some(SubjectTag([0xff; 32]));
        draft.subject_prev = Some(u64::MAX - 1);
        Entry {
            index: u64::MAX,
            prev: [0xff; 32],
            body: draft,
        }
        .encode()
        .expect("the worst-case entry is a valid entry")
        .len()
    }

    /// `draft` with the caller's texts committed, as the engine logs it.
    fn committed(
        mut draft: EntryDraft,
        official: Option<&str>,
        justification: Option<&str>,
    ) -> EntryDraft {
        CallerTexts {
            official: official.map(str::to_owned),
            justification: justification.map(str::to_owned),
            lift: None,
        }
        .commit_into(&mut draft)
        .expect("random salts");
        draft
    }

    /// `n` distinct field names of exactly [`MAX_FIELD_NAME_LEN`] bytes.
    fn longest_fields(n: usize) -> Vec<FieldName> {
        (0..n)
            .map(|i| {
                let name = format!("c{i:02}.");
                field(&format!(
                    "{name}{}",
                    "f".repeat(MAX_FIELD_NAME_LEN - name.len())
                ))
            })
            .collect()
    }

    #[test]
    fn the_largest_entries_fit_one_stored_value() {
        let max = crate::storage::sled::MAX_VALUE_LEN;
        let text = "\u{2603}".repeat(MAX_TEXT / 3) + "x";
        assert_eq!(text.len(), MAX_TEXT);
        let agency = "a".repeat(policies::ids::MAX_ID_LEN);
        let fields = longest_fields(MAX_REQUEST_FIELDS);
        let mut req = AccessRequest {
            agency: AgencyId::new(&agency).unwrap(),
            purpose: PurposeCode::new(&"p".repeat(policies::ids::MAX_ID_LEN)).unwrap(),
            fields: fields.clone(),
            legal_basis: Some(LegalBasis::LegalObligation),
            justification: Some(text.clone()),
        };
        // Access: every field withheld for the longest reason, released on a distinct
        // consent each, or released under a distinct statutory rule of the longest
        // reference (the policy files' bound) each.
        let longest_reason = Reason::ConsentNotYetValid;
        for r in Reason::ALL {
            assert!(r.code().len() <= longest_reason.code().len());
        }
        let rule = RuleId::new("rule").unwrap();
        let references: Vec<String> = (0..MAX_REQUEST_FIELDS)
            .map(|i| {
                format!(
                    "{i:02}{}",
                    "r".repeat(policies::load::MAX_REFERENCE_LEN - 2)
                )
            })
            .collect();
        let outcome = |kind: usize, i: usize| match kind {
            0 => Outcome::Withheld(longest_reason),
            1 => Outcome::Released(Basis::Consent {
                artefact_id: ConsentId::from_bytes([i as u8; 16]),
            }),
            2 => Outcome::Released(Basis::Statutory {
                rule_id: &rule,
                legal_basis: LegalBasis::LegalObligation,
                legal_reference: references[i].as_str(),
            }),
            _ => Outcome::Released(Basis::VitalInterest {
                rule_id: &rule,
                legal_reference: references[i].as_str(),
            }),
        };
        for kind in 0..4 {
            let d = decision(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f, outcome(kind, i)))
                    .collect(),
                true,
            );
            let mut e = access_entry(&d, |_| true, &req, &agency, 0, false);
            e.draft.policy_set = Some([0xff; 32]);
            let len = leaf_len(committed(e.draft, Some(&text), Some(&text)));
            assert!(len <= max, "access entry of {len} bytes > {max}");
        }
        // Every basis at once (the longest legal_basis list).
        let mixed: Vec<_> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f, outcome(1 + i % 3, i)))
            .collect();
        let e = access_entry(&decision(mixed, true), |_| true, &req, &agency, 0, false);
        let len = leaf_len(committed(e.draft, Some(&text), Some(&text)));
        assert!(len <= max, "access entry of {len} bytes > {max}");

        // A record write (or import row) of the most fields, with the longest official.
        let mut d = EntryDraft::new(
            0,
            actor(ActorKind::Agency, &agency),
            "record.write",
            "refused",
        );
        d.processing = Some("collection".to_owned());
        d.requested = longest_fields(super::super::writes::MAX_WRITE_FIELDS)
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect();
        let len = leaf_len(committed(d, Some(&text), None));
        assert!(len <= max, "write entry of {len} bytes > {max}");

        // A consent request (and a citizen's grant: the same terms, no free text).
        req.justification = None;
        let mut d = EntryDraft::new(
            0,
            actor(ActorKind::Agency, &agency),
            "consent.request",
            "pending",
        );
        d.purpose = Some(req.purpose.as_str().to_owned());
        d.requested = fields.iter().map(|f| f.as_str().to_owned()).collect();
        d.legal_basis = Some("consent".to_owned());
        d.consent_id = Some(ConsentId::from_bytes([0xff; 16]).to_string());
        d.policy_set = Some([0xff; 32]);
        d.terms = Some(audit::Terms {
            agency: agency.clone(),
            valid_from: u64::MAX,
            expires_at: u64::MAX,
            max_uses: Some(u64::MAX),
            data_life: Some(u64::MAX),
            supersedes: Some(ConsentId::from_bytes([0xff; 16]).to_string()),
        });
        let len = leaf_len(committed(d, Some(&text), None));
        assert!(len <= max, "consent entry of {len} bytes > {max}");
    }
}
