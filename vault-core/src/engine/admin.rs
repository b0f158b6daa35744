//! Operator and auditor operations: enrolment, tokens, key rotation, erasure, import,
//! the log's entries and proofs, export and backup.

use audit::{ActorKind, Entry, EntryDraft, Hash};
use policies::AgencyId;

use super::ops::{citizen_id, record_err};
use super::secrets::SealedSecret;
use super::{
    encode_config, load_config, log, now_parts, to_system_time, EngineConfig, Plaintext, Vault,
    VaultError, ENGINE_KEY,
};
use crate::agencies::{self, Enrolment, Pin, PinnedCert};
use crate::datadir::DataDirError;
use crate::envelope::CitizenId;
use crate::keys::KeyError;
use crate::keys::Passphrase;
use crate::pki::{Fingerprint, Issued, Usage};
use crate::records::{in_batches, Progress};
use crate::storage::{Tree, WriteBatch};
use crate::tokens::{self, IssuedToken, Role};

/// The result of an enrolment: the agency's new certificate and key (shown once).
#[derive(Debug)]
pub struct EnrolOutcome {
    /// Agency id.
    pub agency: String,
    /// Certificate and key.
    pub issued: Issued,
    /// The vault CA certificate (PEM).
    pub ca_pem: String,
    /// Audit entry.
    pub audit_index: u64,
}

/// Which token to issue.
#[derive(Clone, Debug)]
pub enum TokenRequest {
    /// For a citizen.
    Citizen {
        /// Citizen id.
        citizen: String,
        /// Days of validity ([`DEFAULT_TOKEN_DAYS`], at most [`MAX_TOKEN_DAYS`]).
        valid_days: Option<u32>,
    },
    /// For an auditor.
    Auditor {
        /// A label for the auditor.
        name: String,
        /// Days of validity ([`DEFAULT_TOKEN_DAYS`], at most [`MAX_TOKEN_DAYS`]).
        valid_days: Option<u32>,
    },
}

/// A citizen as their bearer token authenticated them. Whoever holds the token acts as
/// the citizen: the citizen, or the operator who issued it and could have kept a copy. So
/// every entry of what is done with it names the token's public id (its `initiator`), and
/// the entry of its issue (with the citizen's subject tag) names the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CitizenToken {
    pub(super) citizen: String,
    pub(super) token_id: String,
}

impl CitizenToken {
    /// The citizen's id.
    pub fn citizen(&self) -> &str {
        &self.citizen
    }

    /// The token's public id (16 hex digits).
    pub fn token_id(&self) -> &str {
        &self.token_id
    }
}

/// Who a bearer token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bearer {
    /// A citizen, with the token used.
    Citizen(CitizenToken),
    /// An auditor.
    Auditor {
        /// The auditor's label.
        name: String,
        /// The token's public id (16 hex digits).
        token_id: String,
    },
}

/// An issued token (the secret is shown once).
#[derive(Debug)]
pub struct TokenOutcome {
    /// The token.
    pub token: IssuedToken,
    /// Audit entry.
    pub audit_index: u64,
}

/// Which key a rotation replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// The master key: a new KEK re-wraps every citizen's data key and the vault's own
    /// secrets (field ciphertexts are not touched).
    Kek,
    /// One citizen's data key: their fields are re-encrypted under a new generation.
    Dek(CitizenId),
}

/// The result of a key rotation.
#[derive(Clone, Debug)]
pub struct RotateOutcome {
    /// Citizens (KEK) or records (DEK) rewritten.
    pub rotated: usize,
    /// The new key id (KEK id or DEK generation).
    pub key_id: Option<u32>,
    /// Audit entry.
    pub audit_index: u64,
}

/// The result of an erasure.
#[derive(Clone, Debug)]
pub struct ErasureOutcome {
    /// Audit entry (it keeps the fact of erasure, never the data).
    pub audit_index: u64,
}

/// One row of a legacy import.
#[derive(Debug)]
pub struct ImportRow {
    /// Citizen id.
    pub citizen: String,
    /// Category.
    pub category: String,
    /// Fields within the category and their values.
    pub fields: Vec<(String, Plaintext)>,
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct ImportOutcome {
    /// Rows imported.
    pub rows: usize,
    /// The first audit entry of the import.
    pub audit_index: u64,
}

/// One leaf of the log, for auditors.
#[derive(Clone, Debug)]
pub struct LeafView {
    /// Index.
    pub index: u64,
    /// Exact stored bytes.
    pub leaf: Vec<u8>,
    /// RFC 9162 leaf hash.
    pub leaf_hash: Hash,
    /// Decoded.
    pub entry: Entry,
}

pub(super) fn operator_draft(now_ms: u64, action: &str) -> EntryDraft {
    let mut d = EntryDraft::new(
        now_ms,
        audit::Actor {
            kind: ActorKind::Operator,
            id: "operator".to_owned(),
        },
        action,
        "done",
    );
    d.processing = Some("administration".to_owned());
    d
}

/// Most rows in one import request.
pub const MAX_IMPORT_ROWS: usize = 500;

/// Days an agency certificate is valid when the operator names none.
pub const DEFAULT_AGENCY_CERT_DAYS: u32 = 365;
/// Longest validity of an agency certificate, in days (the CA/Browser Forum's former
/// 825-day ceiling for TLS certificates).
pub const MAX_AGENCY_CERT_DAYS: u32 = 825;
/// Days an operator certificate is valid (as the one made at `init`).
pub(crate) const OPERATOR_CERT_DAYS: u64 = 2 * 365;
/// Days a token is valid when the operator names none.
pub const DEFAULT_TOKEN_DAYS: u32 = 30;
/// Longest validity of a token, in days.
pub const MAX_TOKEN_DAYS: u32 = 366;

/// `requested` days (or `default`), at least one and at most `max`.
fn validity_days(requested: Option<u32>, default: u32, max: u32) -> u64 {
    u64::from(requested.unwrap_or(default).clamp(1, max))
}

impl Vault {
    /// Enrols `agency` (of the policy registry) and issues its client certificate, valid
    /// for `valid_days` ([`DEFAULT_AGENCY_CERT_DAYS`], at most [`MAX_AGENCY_CERT_DAYS`]).
    pub fn enrol_agency(
        &self,
        agency: &str,
        valid_days: Option<u32>,
    ) -> Result<EnrolOutcome, VaultError> {
        let id =
            AgencyId::new(agency).map_err(|e| VaultError::bad("invalid_agency", e.to_string()))?;
        if self.policy.agency(&id).is_none() {
            return Err(VaultError::bad(
                "unknown_agency",
                format!("agency {agency} is not in the policy registry: add it to the policy files first"),
            ));
        }
        let (now, now_ms) = now_parts();
        let not_after = now.saturating_add(
            validity_days(valid_days, DEFAULT_AGENCY_CERT_DAYS, MAX_AGENCY_CERT_DAYS) * 86_400,
        );
        let issued = self
            .ca
            .issue(
                Usage::Client,
                agency,
                &[],
                to_system_time(now),
                to_system_time(not_after),
            )
            .map_err(VaultError::internal)?;
        let fp = issued.fingerprint();
        let ((), index) = self.transact(|tx| {
            let mut e = agencies::get(tx.store(), self.keys.records(), agency)
                .map_err(VaultError::internal)?
                .unwrap_or(Enrolment {
                    agency: agency.to_owned(),
                    certs: Vec::new(),
                    revoked_at: None,
                });
            // The agency is active again through its new certificate only: certificates
            // revoked earlier stay revoked.
            e.revoked_at = None;
            e.certs.push(PinnedCert {
                fingerprint: fp,
                issued_at: now,
                not_after,
                revoked_at: None,
            });
            agencies::stage_put(&mut tx.batch, self.keys.records(), &e)
                .map_err(VaultError::internal)?;
            let mut d = operator_draft(now_ms, "agency.enrol");
            d.initiator = Some(agency.to_owned());
            tx.entry(d);
            Ok(())
        })?;
        self.agency_pins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                fp,
                Pin {
                    agency: agency.to_owned(),
                    not_after,
                },
            );
        Ok(EnrolOutcome {
            agency: agency.to_owned(),
            issued,
            ca_pem: self.ca.cert_pem(),
            audit_index: index,
        })
    }

    /// Every enrolment.
    pub fn list_agencies(&self) -> Result<Vec<Enrolment>, VaultError> {
        agencies::list(&*self.store, self.keys.records()).map_err(VaultError::internal)
    }

    /// Revokes an agency: every certificate of it is revoked for good and refused from the
    /// next request on; a later enrolment issues a new certificate and revokes nothing back.
    pub fn revoke_agency(&self, agency: &str) -> Result<u64, VaultError> {
        let (now, now_ms) = now_parts();
        let (fps, index) = self.transact(|tx| {
            let Some(mut e) = agencies::get(tx.store(), self.keys.records(), agency)
                .map_err(VaultError::internal)?
            else {
                return Err(VaultError::NotFound {
                    what: "agency enrolment",
                });
            };
            e.revoked_at = Some(now);
            for c in &mut e.certs {
                c.revoked_at.get_or_insert(now);
            }
            agencies::stage_put(&mut tx.batch, self.keys.records(), &e)
                .map_err(VaultError::internal)?;
            let mut d = operator_draft(now_ms, "agency.revoke");
            d.initiator = Some(agency.to_owned());
            tx.entry(d);
            Ok(e.certs.iter().map(|c| c.fingerprint).collect::<Vec<_>>())
        })?;
        let mut pins = self
            .agency_pins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for fp in fps {
            pins.remove(&fp);
        }
        Ok(index)
    }

    /// Revokes one agency certificate by its SHA-256 fingerprint (hex), for good, without
    /// revoking the agency: its other certificates stay valid. Returns the agency and the
    /// audit entry.
    pub fn revoke_certificate(&self, fingerprint: &str) -> Result<(String, u64), VaultError> {
        let fp = Fingerprint::from_hex(fingerprint).ok_or_else(|| {
            VaultError::bad(
                "invalid_fingerprint",
                "give the certificate's SHA-256 fingerprint as 64 hex digits (`vault-cli agency list` shows them)",
            )
        })?;
        let (now, now_ms) = now_parts();
        let (agency, index) = self.transact(|tx| {
            let found = agencies::list(tx.store(), self.keys.records())
                .map_err(VaultError::internal)?
                .into_iter()
                .find(|e| e.certs.iter().any(|c| c.fingerprint == fp));
            let Some(mut e) = found else {
                return Err(VaultError::NotFound {
                    what: "agency certificate",
                });
            };
            for c in e.certs.iter_mut().filter(|c| c.fingerprint == fp) {
                if let Some(t) = c.revoked_at {
                    return Err(VaultError::conflict(
                        "already_revoked",
                        format!(
                            "certificate {fp} of {} was already revoked at {t}",
                            e.agency
                        ),
                    ));
                }
                c.revoked_at = Some(now);
            }
            agencies::stage_put(&mut tx.batch, self.keys.records(), &e)
                .map_err(VaultError::internal)?;
            let mut d = operator_draft(now_ms, "agency.revoke_cert");
            d.initiator = Some(format!("{} certificate {fp}", e.agency));
            tx.entry(d);
            Ok(e.agency)
        })?;
        self.agency_pins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&fp);
        Ok((agency, index))
    }

    /// Issues a new operator certificate and pins it in place of the current one, which is
    /// refused from the commit on. Reached offline through
    /// [`crate::DataDir::replace_operator_cert`]: the running vault keeps the pin it
    /// opened with until it is closed.
    pub(crate) fn replace_operator_cert(&self) -> Result<(Issued, u64), VaultError> {
        let (now, now_ms) = now_parts();
        let issued = self
            .ca
            .issue(
                Usage::Client,
                "vault operator",
                &[],
                to_system_time(now),
                to_system_time(now.saturating_add(OPERATOR_CERT_DAYS * 86_400)),
            )
            .map_err(VaultError::internal)?;
        let new_fp = issued.fingerprint();
        let ((), index) = self.transact(|tx| {
            let bytes = tx
                .store()
                .get(Tree::Meta, ENGINE_KEY)?
                .ok_or_else(|| VaultError::internal("the engine configuration is missing"))?;
            let ring = self.unsealed.records().ring();
            let (mut config, _) = load_config(&bytes, &ring)?;
            drop(ring);
            let old_fp = config.operator_fp;
            config.operator_fp = new_fp;
            tx.batch
                .put(Tree::Meta, ENGINE_KEY, encode_config(&config, &self.keys)?);
            let mut d = operator_draft(now_ms, "operator.replace_cert");
            d.initiator = Some(format!("certificate {new_fp} replaces {old_fp}"));
            tx.entry(d);
            Ok(())
        })?;
        Ok((issued, index))
    }

    /// Issues a citizen or auditor token.
    pub fn issue_token(&self, req: TokenRequest) -> Result<TokenOutcome, VaultError> {
        let (now, now_ms) = now_parts();
        let (role, days) = match req {
            TokenRequest::Citizen {
                citizen,
                valid_days,
            } => {
                let id = citizen_id(&citizen)?;
                (
                    Role::Citizen {
                        citizen: id.as_str().to_owned(),
                    },
                    valid_days,
                )
            }
            TokenRequest::Auditor { name, valid_days } => {
                if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                    return Err(VaultError::bad(
                        "invalid_name",
                        "an auditor name is 1-100 printable characters",
                    ));
                }
                (Role::Auditor { name }, valid_days)
            }
        };
        let expires =
            now.saturating_add(validity_days(days, DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS) * 86_400);
        let (token, index) = self.transact(|tx| {
            let mut d = operator_draft(now_ms, "token.issue");
            let t = tokens::stage_issue(
                &mut tx.batch,
                self.keys.records(),
                role.clone(),
                now,
                expires,
            )
            .map_err(VaultError::internal)?;
            if let Role::Citizen { citizen } = &role {
                d.subject = tx.tag(&citizen_id(citizen)?, false)?;
                // The id that every entry made with this token names.
                d.initiator = Some(t.record.id.clone());
            } else if let Role::Auditor { name } = &role {
                d.initiator = Some(name.clone());
            }
            d.consent_id = None;
            tx.entry(d);
            Ok(t)
        })?;
        Ok(TokenOutcome {
            token,
            audit_index: index,
        })
    }

    /// Revokes the tokens whose id starts with `id` (8+ hex digits).
    pub fn revoke_token(&self, id: &str) -> Result<(usize, u64), VaultError> {
        if id.len() < 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(VaultError::bad(
                "invalid_token_id",
                "give at least 8 hex digits of the token id",
            ));
        }
        let (now, now_ms) = now_parts();
        let (n, index) = self.transact(|tx| {
            let revoked = tokens::stage_revoke(
                &*tx.vault.store,
                self.keys.records(),
                &mut tx.batch,
                id,
                now,
            )
            .map_err(VaultError::internal)?;
            if revoked.is_empty() {
                return Err(VaultError::NotFound { what: "token" });
            }
            tx.entry(operator_draft(now_ms, "token.revoke"));
            Ok(revoked.len())
        })?;
        Ok((n, index))
    }

    /// Rotates the master key (re-wraps every citizen key and the vault's own secrets) or
    /// one citizen's data key (re-encrypts their fields).
    pub fn rotate_keys(&self, kind: KeyKind) -> Result<RotateOutcome, VaultError> {
        self.rotate(kind, None)
    }

    /// Rotates the master key and changes the passphrase that seals it: the new master
    /// key and every older one are sealed under `new_passphrase` (checked for strength);
    /// from the commit on, only the new passphrase unseals the vault. Refused while an
    /// earlier rotation is unfinished (run [`Vault::rotate_keys`] with `kek` first).
    pub fn rotate_kek_with_new_passphrase(
        &self,
        new_passphrase: &str,
    ) -> Result<RotateOutcome, VaultError> {
        let pass = Passphrase::new(new_passphrase.to_owned());
        self.rotate(KeyKind::Kek, Some(&pass))
    }

    /// The rotation's core: `new_passphrase` only with [`KeyKind::Kek`].
    fn rotate(
        &self,
        kind: KeyKind,
        mut new_passphrase: Option<&Passphrase>,
    ) -> Result<RotateOutcome, VaultError> {
        let (now, now_ms) = now_parts();
        match kind {
            KeyKind::Kek => {
                let changes_passphrase = new_passphrase.is_some();
                let moved = self.rotate_in_slices(1024, |room| {
                    // The new passphrase goes with the first slice, which starts the
                    // rotation; the later slices continue it.
                    self.unsealed
                        .rotate_kek(new_passphrase.take(), now, Some(room))
                        .map_err(rotation_error)
                })?;
                let key_id = {
                    let ring = self.unsealed.records().ring();
                    ring.current().id()
                };
                let ((), index) = self.transact(|tx| {
                    self.stage_reseal_secrets(&mut tx.batch)?;
                    let mut d = operator_draft(now_ms, "key.rotate");
                    d.initiator = Some(format!("kek {key_id}"));
                    if changes_passphrase {
                        d.processing = Some("passphrase_change".to_owned());
                    }
                    tx.entry(d);
                    Ok(())
                })?;
                Ok(RotateOutcome {
                    rotated: moved,
                    key_id: Some(key_id),
                    audit_index: index,
                })
            }
            KeyKind::Dek(citizen) => {
                let moved = self.rotate_in_slices(256, |room| {
                    self.unsealed
                        .records()
                        .rotate_dek(&*self.store, &citizen, Some(room))
                        .map_err(record_err)
                })?;
                let ((), index) = self.transact(|tx| {
                    let mut d = operator_draft(now_ms, "key.rotate");
                    d.initiator = Some("dek".to_owned());
                    d.subject = tx.tag(&citizen, false)?;
                    tx.entry(d);
                    Ok(())
                })?;
                Ok(RotateOutcome {
                    rotated: moved,
                    key_id: None,
                    audit_index: index,
                })
            }
        }
    }

    /// Runs a resumable rotation to the end in slices of at most `slice` items, each
    /// under the writer lock (a concurrent record write must not write back a key record
    /// a slice just rewrote); returns the items moved.
    fn rotate_in_slices(
        &self,
        slice: usize,
        mut step: impl FnMut(usize) -> Result<Progress, VaultError>,
    ) -> Result<usize, VaultError> {
        let progress = in_batches(None, slice, |room| {
            let _writers = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            step(room)
        })?;
        Ok(progress.moved)
    }

    /// Re-seals the vault's own secrets under the current KEK (after a KEK rotation).
    fn stage_reseal_secrets(&self, batch: &mut WriteBatch) -> Result<(), VaultError> {
        let Some(bytes) = self.store.get(Tree::Meta, ENGINE_KEY)? else {
            return Err(VaultError::internal("engine config missing"));
        };
        let ring = self.unsealed.records().ring();
        let (mut config, _) = load_config(&bytes, &ring)?;
        let current = ring.current();
        let reseal = |s: &SealedSecret, name: &str| -> Result<SealedSecret, VaultError> {
            let kek = ring.get(s.kek_id).map_err(VaultError::internal)?;
            let plain = s.open(kek, name)?;
            SealedSecret::seal(current, name, &plain)
        };
        config.ca_key = reseal(&config.ca_key, "ca_key")?;
        config.server_key = reseal(&config.server_key, "server_key")?;
        config.log_seed = reseal(&config.log_seed, "log_seed")?;
        config.receipt_seed = reseal(&config.receipt_seed, "receipt_seed")?;
        config.record_key = match &config.record_key {
            Some(k) => Some(reseal(k, "record_key")?),
            None => None,
        };
        batch.put(Tree::Meta, ENGINE_KEY, encode_config(&config, &self.keys)?);
        Ok(())
    }

    /// The upgrade of a data directory written before records were authenticated (see
    /// [`Vault::open_with`]): `config` (holding the new sealed vault key) with its MAC,
    /// a MAC on every token, consent artefact and enrolment as stored now, legacy
    /// tombstones rekeyed; one commit with the entry `vault.upgrade`.
    pub(super) fn upgrade_records(&self, config: &EngineConfig) -> Result<(), VaultError> {
        let (_, now_ms) = now_parts();
        let mac = self.keys.records();
        self.transact(|tx| {
            tx.batch
                .put(Tree::Meta, ENGINE_KEY, encode_config(config, &self.keys)?);
            for tree in [Tree::Tokens, Tree::Consents, Tree::Agencies] {
                for item in crate::storage::scan_all(&*self.store, tree) {
                    let (key, value) = item?;
                    let sealed = mac.seal(tree, &key, value);
                    tx.batch.put(tree, key, sealed);
                }
            }
            self.unsealed
                .records()
                .stage_upgrade_tombstones(&*self.store, &mut tx.batch)
                .map_err(record_err)?;
            let mut d = super::system("vault.upgrade", now_ms);
            d.processing = Some("administration".to_owned());
            tx.entry(d);
            Ok(())
        })?;
        Ok(())
    }

    /// Erases a citizen: destroys their keys (crypto-shredding), deletes their ciphertexts,
    /// consents and tokens. The log keeps the fact, under a tag nobody can link any more.
    /// `by` is the citizen's token when they ask themselves, `None` when the operator does.
    pub fn erase_citizen(
        &self,
        citizen: &str,
        by: Option<&CitizenToken>,
    ) -> Result<ErasureOutcome, VaultError> {
        let id = citizen_id(citizen)?;
        if by.is_some_and(|t| t.citizen != citizen) {
            return Err(VaultError::internal(
                "an erasure by a citizen token names another citizen",
            ));
        }
        let (_, now_ms) = now_parts();
        let ((), index) = self.transact(|tx| {
            let out = tx
                .vault
                .unsealed
                .records()
                .stage_erase(&*tx.vault.store, &mut tx.batch, &id)
                .map_err(record_err)?;
            tx.delete_consents(&id)?;
            for (key, rec) in
                tokens::list(tx.store(), self.keys.records()).map_err(VaultError::internal)?
            {
                if rec.role
                    == (Role::Citizen {
                        citizen: id.as_str().to_owned(),
                    })
                {
                    tx.batch.delete(Tree::Tokens, key.to_vec());
                }
            }
            let actor = if by.is_none() {
                audit::Actor {
                    kind: ActorKind::Operator,
                    id: "operator".to_owned(),
                }
            } else {
                audit::Actor {
                    kind: ActorKind::Citizen,
                    id: String::new(),
                }
            };
            if let Some(tag) = &out.subject_tag {
                log::stage_blank_notes(&*tx.vault.store, &mut tx.batch, tag)?;
            }
            tx.vault.notifier.stage_forget(
                &*tx.vault.store,
                &mut tx.batch,
                &tx.vault.keys,
                &id,
                out.subject_tag.as_ref(),
            )?;
            // Deferred accesses not yet disclosed are still disclosed when due, into the
            // erased subject's chain; their rows stop naming the citizen.
            super::deferred::stage_forget(
                &*tx.vault.store,
                &tx.vault.keys,
                &mut tx.batch,
                id.as_str(),
                out.subject_tag.as_ref(),
            )?;
            let mut d = EntryDraft::new(now_ms, actor, "erasure", "done");
            d.initiator = by.map(|t| t.token_id.clone());
            d.processing = Some("erasure".to_owned());
            d.subject = out.subject_tag;
            tx.entry(d);
            tx.notify_about(&id);
            Ok(())
        })?;
        Ok(ErasureOutcome { audit_index: index })
    }

    /// Imports legacy rows written by `agency`, all in one commit or none.
    pub fn import(&self, agency: &str, rows: Vec<ImportRow>) -> Result<ImportOutcome, VaultError> {
        if rows.is_empty() {
            return Err(VaultError::bad("no_rows", "the import has no rows"));
        }
        if rows.len() > MAX_IMPORT_ROWS {
            return Err(VaultError::TooLarge {
                message: format!(
                    "at most {MAX_IMPORT_ROWS} rows per import request: split the file"
                ),
            });
        }
        let agency_id =
            AgencyId::new(agency).map_err(|e| VaultError::bad("invalid_agency", e.to_string()))?;
        let (now, now_ms) = now_parts();
        let n = rows.len();
        let ((), index) = self.transact(|tx| {
            for (i, row) in rows.into_iter().enumerate() {
                let at =
                    |e: VaultError| VaultError::bad("invalid_row", format!("row {}: {e}", i + 1));
                let lens: Vec<(&str, usize)> = row
                    .fields
                    .iter()
                    .map(|(f, v)| (f.as_str(), v.len()))
                    .collect();
                let checked = super::check_write(
                    &self.policy,
                    &agency_id,
                    &row.citizen,
                    &row.category,
                    &lens,
                )
                .map_err(|e| at(e.into()))?;
                let names: Vec<String> = checked
                    .fields
                    .iter()
                    .map(|f| f.as_str().to_owned())
                    .collect();
                let (citizen, category) = (checked.citizen, checked.category);
                let out = tx
                    .stage_put(&citizen, &category, row.fields, agency, now)
                    .map_err(|e| at(record_err(e)))?;
                let mut d = EntryDraft::new(
                    now_ms,
                    audit::Actor {
                        kind: ActorKind::Operator,
                        id: "operator".to_owned(),
                    },
                    "record.import",
                    "done",
                );
                d.processing = Some("collection".to_owned());
                d.initiator = Some(agency.to_owned());
                d.requested = names;
                d.subject = Some(out.subject_tag);
                tx.entry(d);
            }
            Ok(())
        })?;
        Ok(ImportOutcome {
            rows: n,
            audit_index: index,
        })
    }

    /// Entries `start..start+limit` of the log, for auditors, bounded by the latest signed
    /// checkpoint's size: only entries a signed checkpoint covers (durable) are listed.
    pub fn audit_entries(&self, start: u64, limit: u64) -> Result<Vec<LeafView>, VaultError> {
        super::standby::audit_entries(&*self.store, self.checkpoint_size(), start, limit)
    }

    /// The leaf hash of `index` and its inclusion proof in the tree of `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), VaultError> {
        super::standby::inclusion_proof(&*self.store, self.checkpoint_size(), index, size)
    }

    /// The bytes of a C2SP tlog-tiles tile or entry bundle of the tree of the latest
    /// signed checkpoint; `None` when that tree does not hold the whole tile.
    pub fn tile(&self, tile: audit::TileId) -> Result<Option<Vec<u8>>, VaultError> {
        super::standby::tile(&*self.store, self.checkpoint_size(), tile)
    }

    /// The consistency proof between two tree sizes.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError> {
        super::standby::consistency_proof(&*self.store, self.checkpoint_size(), from, to)
    }

    /// The auditor export of the log up to a freshly signed checkpoint. Its entry
    /// (`audit.export`) is appended first, so the export contains it.
    pub fn audit_export(&self) -> Result<Vec<u8>, VaultError> {
        self.begin_audit_export()?;
        let signed = self
            .checkpoint
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.write_audit_export(&signed)
    }

    /// Appends the `audit.export` entry and signs a checkpoint covering it; returns that
    /// checkpoint's size. With witnesses, the export then waits for a witnessed checkpoint
    /// of at least that size ([`Vault::witnessed_audit_export`]).
    pub fn begin_audit_export(&self) -> Result<u64, VaultError> {
        let (_, now_ms) = now_parts();
        self.transact(|tx| {
            tx.entry(operator_draft(now_ms, "audit.export"));
            Ok(())
        })?;
        self.sign_checkpoint_now()?;
        Ok(self.checkpoint_size())
    }

    /// The auditor export of the log up to the last checkpoint published with a quorum of
    /// witness cosignatures, which the export carries (`vault-cli audit verify --policy`).
    pub fn witnessed_audit_export(&self) -> Result<Vec<u8>, VaultError> {
        let note = self.witnessed_checkpoint().ok_or_else(|| {
            VaultError::conflict(
                "not_witnessed",
                "no checkpoint has reached the witness quorum yet: see /healthz and the server \
                 log for the witnesses' answers, then try again",
            )
        })?;
        let verifier = audit::NoteVerifier::parse(&self.log_vkey).map_err(VaultError::internal)?;
        let signed = audit::SignedCheckpoint::parse(&note, &verifier).map_err(|e| {
            VaultError::internal(format!("the witnessed checkpoint does not verify: {e}"))
        })?;
        self.write_audit_export(&signed)
    }

    fn write_audit_export(&self, signed: &audit::SignedCheckpoint) -> Result<Vec<u8>, VaultError> {
        let mut out = Vec::new();
        audit::export::write(
            &log::StoreLog::new(&*self.store),
            signed,
            &self.log_vkey,
            &mut out,
        )
        .map_err(VaultError::audit)?;
        Ok(out)
    }
}

impl Vault {
    /// A consistent backup of the whole store (writers wait while it is taken). Its entry
    /// (`backup`) is the last one of the log the backup holds: the copy is made under the
    /// same writer lock, right after that entry is applied. The backup is returned only
    /// once the entry is durable; if the copy fails, the entry stays as the record of a
    /// failed attempt.
    pub fn backup(&self) -> Result<Vec<u8>, VaultError> {
        let (_, now_ms) = now_parts();
        let ((), _, ticket, copy) = self.transact_applied_then(
            |tx| {
                tx.entry(operator_draft(now_ms, "backup"));
                Ok(())
            },
            |store| {
                let mut out = Vec::new();
                crate::backup::write(store, &self.keys, &mut out).map(|()| out)
            },
        )?;
        self.store.wait_durable(ticket)?;
        copy.map_err(VaultError::internal)
    }

    /// Appends the entry of the operator sealing the vault (`vault.seal`), naming the
    /// sealed-mode server certificate (`sealed-mode certificate <fingerprint>` in
    /// `initiator`, from [`Vault::sealed_server_identity`]) when there is one; call it
    /// before the vault is dropped.
    pub fn record_seal(&self, sealed_cert: Option<&Fingerprint>) -> Result<u64, VaultError> {
        let (_, now_ms) = now_parts();
        let ((), index) = self.transact(|tx| {
            let mut d = operator_draft(now_ms, "vault.seal");
            d.initiator = sealed_cert.map(|fp| format!("sealed-mode certificate {fp}"));
            tx.entry(d);
            Ok(())
        })?;
        Ok(index)
    }

    /// Appends the entry of a successful unseal (`vault.unseal`), naming the failed
    /// attempts since the last successful one (`failed_attempts=N` in `initiator`, also
    /// when N is 0): a failed attempt opens nothing, so it cannot be an entry of its own.
    pub fn record_unseal(&self, failed_attempts: u64) -> Result<u64, VaultError> {
        let (_, now_ms) = now_parts();
        let ((), index) = self.transact(|tx| {
            let mut d = operator_draft(now_ms, "vault.unseal");
            d.initiator = Some(format!("failed_attempts={failed_attempts}"));
            tx.entry(d);
            Ok(())
        })?;
        Ok(index)
    }
}

/// A master key rotation's failure: a refused new passphrase or an unfinished earlier
/// rotation are the operator's to fix; anything else is internal.
fn rotation_error(e: DataDirError) -> VaultError {
    match e {
        DataDirError::Key(KeyError::PassphraseTooShort { .. }) => {
            VaultError::bad("passphrase_too_short", e.to_string())
        }
        DataDirError::RotationInProgress { .. } => {
            VaultError::conflict("rotation_in_progress", e.to_string())
        }
        DataDirError::Storage(e) => VaultError::from(e),
        DataDirError::AlreadyInitialised { .. }
        | DataDirError::NotInitialised { .. }
        | DataDirError::Key(_)
        | DataDirError::Records(_)
        | DataDirError::Codec(_)
        | DataDirError::KekInUse { .. }
        | DataDirError::KekSealsSecrets { .. }
        | DataDirError::KekIsCurrent { .. }
        | DataDirError::UnknownKek { .. }
        | DataDirError::Io { .. } => VaultError::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use policies::Timestamp;

    use crate::{DataDir, VaultError};

    const PASS: &str = "correct horse battery staple revoked";

    fn init() -> (tempfile::TempDir, DataDir) {
        crate::engine::test_data_dir(PASS, &["localhost"])
    }

    fn refused(r: Result<String, VaultError>) -> bool {
        matches!(r, Err(VaultError::Unauthenticated { .. }))
    }

    #[test]
    fn a_pin_is_refused_from_its_not_after_on() {
        let (_tmp, dir) = init();
        let vault = dir.open(PASS).unwrap();
        let out = vault.enrol_agency("civil_registry", Some(1)).unwrap();
        let fp = out.issued.fingerprint();
        let cert = &vault.list_agencies().unwrap()[0].certs[0];
        let before = Timestamp::from_unix_seconds(cert.not_after.unix_seconds() - 1);
        assert_eq!(
            vault.authenticate_agency_at(&fp, before).unwrap(),
            "civil_registry"
        );
        assert!(refused(vault.authenticate_agency_at(&fp, cert.not_after)));
        vault.shutdown();
    }

    #[test]
    fn a_revoked_certificate_stays_revoked_after_re_enrolment_and_reopen() {
        let (_tmp, dir) = init();
        let vault = dir.open(PASS).unwrap();
        let old = vault.enrol_agency("civil_registry", None).unwrap();
        let old_fp = old.issued.fingerprint();
        vault.revoke_agency("civil_registry").unwrap();
        let new = vault.enrol_agency("civil_registry", None).unwrap();
        let new_fp = new.issued.fingerprint();
        assert!(refused(vault.authenticate_agency(&old_fp)));
        assert!(vault.authenticate_agency(&new_fp).is_ok());
        // Roll over: a third certificate, then the second revoked alone.
        let third = vault.enrol_agency("civil_registry", None).unwrap();
        let (agency, _) = vault.revoke_certificate(&new_fp.to_hex()).unwrap();
        assert_eq!(agency, "civil_registry");
        assert!(matches!(
            vault.revoke_certificate(&new_fp.to_hex()),
            Err(VaultError::Conflict { .. })
        ));
        vault.shutdown();
        drop(vault);
        let vault = dir.open(PASS).unwrap();
        assert!(refused(vault.authenticate_agency(&old_fp)));
        assert!(refused(vault.authenticate_agency(&new_fp)));
        assert!(vault
            .authenticate_agency(&third.issued.fingerprint())
            .is_ok());
        vault.shutdown();
    }

    #[test]
    fn the_replaced_operator_certificate_is_refused() {
        let (_tmp, dir) = init();
        let vault = dir.open(PASS).unwrap();
        let old = vault.operator_fingerprint();
        vault.shutdown();
        drop(vault);
        let (issued, _) = dir.replace_operator_cert(PASS).unwrap();
        let vault = dir.open(PASS).unwrap();
        assert!(!vault.is_operator(&old));
        assert!(vault.is_operator(&issued.fingerprint()));
        vault.shutdown();
    }
}
