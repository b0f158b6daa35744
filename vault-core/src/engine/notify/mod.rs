//! Notifications (`docs/notifications.md`): events about consents and accesses, derived
//! from the audit entry each change appends in its own commit (so an event exists if and
//! only if its change does), then delivered by the server as Standard Webhooks signed
//! with the vault's notification key (`v1a`, Ed25519), at least once, in order per
//! citizen.
//!
//! Most events are not written as rows: an endpoint reads them from the log
//! ([`Stream`], `from_log.rs`), after a cursor stored in the outbox. The log entry that reports a change
//! is in the change's commit, so the event exists if and only if the change does, and the
//! access path writes no outbox row (docs/notifications.md, "Events from the log"). An
//! event becomes a row when its first attempt fails (to be retried), when its endpoint is
//! disabled with it undelivered, and for the two kinds the log cannot give: a consent's
//! expiry (scheduled) and an erasure's own event (the erasure removes what names the
//! citizen).
//!
//! Outbox rows (`Tree::Outbox`), each encrypted and authenticated ([`seal_row`]): a row
//! names a citizen, and an offline edit must not make the vault sign an event it did not
//! produce:
//! - `q || len || endpoint || position (u64 BE) || origin (u64 BE) || subject (8 bytes)`:
//!   queued for delivery, in position order per endpoint; `subject` is
//!   [`VaultKeys::outbox_subject`] of the citizen id, so that the order per citizen is kept
//!   from the keys alone. The position of an event is the log index of the entry that
//!   produced it; a scheduled event gets the log size when it falls due.
//! - `s || due (ms, u64 BE) || len || endpoint || origin (u64 BE)`: scheduled (a consent's
//!   expiry), moved to the queue when due if the consent is still active then.
//! - `c || len || endpoint`: the endpoint's cursor (u64 BE): every event of a log entry
//!   below it was delivered, or is a queued row.
//! - `t || VaultKeys::outbox_tag(subject tag)`: the citizen id behind a log subject tag,
//!   written with the first entry about them that notifies while an endpoint is set, and
//!   removed by their erasure.
//!
//! Payloads are thin: the event type, ids, the audit index and times; never a field value
//! or a caller's text.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use audit::{ActorKind, EntryDraft, SubjectTag};
use base64::Engine as _;
use policies::{AgencyId, Timestamp};
use ring::hmac;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{now_parts, system, Vault, VaultError};
use crate::auth::VaultKeys;
use crate::codec;
use crate::envelope::CitizenId;
use crate::storage::{self, Storage, Tree, WriteBatch};

mod from_log;
use from_log::{cursor_key, merge_queue, open_cursor, seal_cursor, tag_key, Known, Stream};

const CONFIG_KEY: &[u8] = b"notify_config";
const CONFIG_KIND: &str = "notification configuration";
const CONFIG_FORMAT: u8 = 1;
const ROW_KIND: &str = "queued notification";
const ROW_FORMAT: u8 = 1;
const QUEUED: u8 = b'q';
const SCHEDULED: u8 = b's';

/// An event is retried for this long after it fell due, then given up (counted failed).
pub const NOTIFY_RETRY_HOURS: u64 = 72;
/// The first retry waits this long; each later one twice as long, up to
/// [`NOTIFY_MAX_BACKOFF`], plus up to a quarter more at random.
pub const NOTIFY_FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const NOTIFY_MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// A rotated-out notification key goes on signing beside the new one for this many days,
/// so receivers can switch keys without missing an event.
pub const NOTIFY_KEY_OVERLAP_DAYS: u64 = 7;
/// The longest webhook URL accepted.
pub const MAX_WEBHOOK_URL: usize = 2048;
/// The most events one message to an endpoint may carry (its `batch` setting).
pub const MAX_WEBHOOK_BATCH: u16 = 1000;
/// Rows of one endpoint's queue looked at in one delivery round, at most: four times what
/// its deliveries can carry and a few more (rows of citizens with an event in flight are
/// skipped).
const SCAN_WINDOW: usize = 16_384;
/// A delivery round reads the outbox's queued and scheduled rows at least this often, even
/// when its counts say there are none (ms).
const OUTBOX_READ_EVERY_MS: u64 = 1000;
/// Scheduled rows moved to the queue in one round.
const PROMOTE_BATCH: usize = 256;

/// Who receives an event: an agency's endpoint, or the citizens' notification gateway the
/// government runs (it forwards by e-mail, SMS or app push).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WebhookTarget {
    /// The endpoint of the agency with this id.
    Agency(String),
    /// The citizens' notification gateway.
    Gateway,
}

impl WebhookTarget {
    /// How the log and the API name the target: `gateway` or `agency:<id>`.
    pub fn reference(&self) -> String {
        match self {
            WebhookTarget::Gateway => "gateway".to_owned(),
            WebhookTarget::Agency(a) => format!("agency:{a}"),
        }
    }

    fn from_key(k: &[u8]) -> Option<WebhookTarget> {
        match k {
            b"g" => Some(WebhookTarget::Gateway),
            _ => k
                .strip_prefix(b"a:")
                .and_then(|a| std::str::from_utf8(a).ok())
                .map(|a| WebhookTarget::Agency(a.to_owned())),
        }
    }
}

impl std::fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookTarget::Gateway => f.write_str("the citizens' notification gateway"),
            WebhookTarget::Agency(a) => write!(f, "agency {a}"),
        }
    }
}

/// An endpoint as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EndpointConfig {
    url: String,
    set_at_ms: u64,
    /// When the endpoint answered `410 Gone` (delivery stops until it is set again).
    disabled_at_ms: Option<u64>,
    /// The most events one message carries; above 1 every message is a batch.
    #[serde(default = "one_event")]
    batch: u16,
}

fn one_event() -> u16 {
    1
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Config {
    gateway: Option<EndpointConfig>,
    agencies: BTreeMap<String, EndpointConfig>,
    /// The generation of the current notification key (from 1).
    key_generation: u32,
    /// The previous generation and when it was rotated out.
    retired: Option<(u32, u64)>,
}

impl Config {
    fn endpoint(&self, t: &WebhookTarget) -> Option<&EndpointConfig> {
        match t {
            WebhookTarget::Gateway => self.gateway.as_ref(),
            WebhookTarget::Agency(a) => self.agencies.get(a),
        }
    }

    fn endpoint_mut(&mut self, t: &WebhookTarget) -> Option<&mut EndpointConfig> {
        match t {
            WebhookTarget::Gateway => self.gateway.as_mut(),
            WebhookTarget::Agency(a) => self.agencies.get_mut(a),
        }
    }

    fn set(&mut self, t: &WebhookTarget, e: Option<EndpointConfig>) {
        match (t, e) {
            (WebhookTarget::Gateway, e) => self.gateway = e,
            (WebhookTarget::Agency(a), Some(e)) => {
                self.agencies.insert(a.clone(), e);
            }
            (WebhookTarget::Agency(a), None) => {
                self.agencies.remove(a);
            }
        }
    }

    /// The endpoints that receive events now (set and not disabled).
    fn live(&self, t: &WebhookTarget) -> bool {
        self.endpoint(t).is_some_and(|e| e.disabled_at_ms.is_none())
    }

    fn targets(&self) -> Vec<WebhookTarget> {
        let mut out: Vec<WebhookTarget> = self
            .agencies
            .keys()
            .map(|a| WebhookTarget::Agency(a.clone()))
            .collect();
        if self.gateway.is_some() {
            out.push(WebhookTarget::Gateway);
        }
        out
    }
}

/// One queued or scheduled event.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    /// The `webhook-id`: the same on every attempt.
    id: String,
    /// The event type.
    kind: Cow<'static, str>,
    /// Events about one subject (a citizen) are delivered in order.
    subject: String,
    /// When the event happened (for a scheduled one, when it falls due), ms.
    at_ms: u64,
    /// The exact JSON body sent.
    body: String,
    attempts: u32,
    /// Not to be attempted before (ms).
    next_ms: u64,
    /// For a scheduled expiry: the consent to check when it falls due (citizen, id).
    check: Option<(String, String)>,
}

/// An endpoint as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookView {
    /// Who receives.
    pub target: WebhookTarget,
    /// Where events are posted.
    pub url: String,
    /// When it was set.
    pub set_at: Timestamp,
    /// When it answered `410 Gone`; nothing is delivered until it is set again.
    pub disabled_at: Option<Timestamp>,
    /// Events queued for it (up to the first 1,000,000).
    pub queued: u64,
    /// The most events one message carries: 1 posts each event as its own message; above
    /// 1 every message is a `batch` of up to this many events (docs/notifications.md).
    pub batch: u16,
}

/// One of the vault's notification keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationKey {
    /// The key's generation, from 1.
    pub generation: u32,
    /// The public key in Standard Webhooks form: `whpk_` and base64 of the 32-byte
    /// Ed25519 public key.
    pub public_key: String,
    /// Signs every event now (the current key), or only beside it until `signs_until`.
    pub current: bool,
    /// For a rotated-out key: the end of its overlap.
    pub signs_until: Option<Timestamp>,
}

/// An attempt to make: post `body` to `url` with the three Standard Webhooks headers
/// ([`Vault::sign_notification`] gives the signature for the attempt's timestamp).
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The outbox rows of the events it carries, in order (one, unless the endpoint
    /// takes batches); hand it back to [`Vault::notification_result`].
    pub rows: Vec<DeliveryKey>,
    /// Who receives it.
    pub target: WebhookTarget,
    /// The endpoint URL.
    pub url: String,
    /// `webhook-id`: an event's id, or for a batch one derived from its events' ids (the
    /// same on a retry of the same events).
    pub id: String,
    /// The event type, or `batch`.
    pub kind: String,
    /// The JSON body.
    pub body: String,
    /// When each event happened (for their latency).
    pub at: Vec<Duration>,
    /// Attempts made before this one (the most of its events').
    pub attempts: u32,
}

/// An outbox row's identity (opaque).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryKey(Vec<u8>);

// A `Vec<u8>` hashes and compares as its slice, so a set of keys can be asked by slice.
impl std::borrow::Borrow<[u8]> for DeliveryKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub enum DeliveryOutcome {
    /// A 2xx answer: delivered.
    Delivered,
    /// `410 Gone`: the receiver wants no more; the endpoint is disabled.
    Gone,
    /// Anything else (an error, a timeout, another status): retried later.
    Failed {
        /// What went wrong, in words (for the server log and `/metrics`; no payload).
        error: String,
        /// The receiver's `retry-after`, if it sent one.
        retry_after: Option<Duration>,
    },
}

/// Delivery counters since this process opened the vault, and the queue now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationStats {
    /// Events queued, due or waiting for a retry: queued rows, events read from the log
    /// and not yet delivered, and per endpoint the log entries it has not read yet (an
    /// upper bound: not every entry holds an event for it).
    pub queued: u64,
    /// Events scheduled for later (consent expiries).
    pub scheduled: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Events given up after [`NOTIFY_RETRY_HOURS`], or dropped because their stored row
    /// failed its check.
    pub failed: u64,
    /// Attempts that failed (each is retried).
    pub failed_attempts: u64,
    /// When the oldest queued event happened (ms since the epoch), at the last round.
    pub oldest_queued_ms: Option<u64>,
}

/// The notification state of an open vault.
pub(super) struct Notifier {
    config: RwLock<Config>,
    /// Derives each generation's signing seed.
    root: hmac::Key,
    stats: Mutex<NotificationStats>,
    /// Serialises the read-modify-write of outbox rows (results, promotions, removals).
    rows: Mutex<()>,
    /// Each generation's key pair, derived once.
    pairs: Mutex<BTreeMap<u32, Arc<Ed25519KeyPair>>>,
    /// Queued rows waiting for a retry, and when it is due (ms): read from the rows at
    /// open, kept by the results since.
    retry: Mutex<HashMap<Vec<u8>, u64>>,
    /// Each set endpoint's events from the log (a disabled endpoint has none).
    streams: Mutex<HashMap<WebhookTarget, Stream>>,
    /// Subject tags whose outbox tag row is stored, with the citizen id it holds.
    tags: Mutex<HashMap<SubjectTag, Known>>,
    /// When a delivery round last read the outbox whatever the counts said (ms).
    outbox_read_ms: Mutex<u64>,
}

impl Notifier {
    /// Loads the configuration and counts the outbox. Rows of the earlier MAC-only form
    /// (written before outbox rows were encrypted, their keys with an unkeyed hash of the
    /// citizen) are rewritten encrypted under keys with the keyed hash, in one commit.
    ///
    /// An endpoint's stream starts at its stored cursor; one set without a cursor (stored
    /// before events came from the log) starts at `log_size`, stored now, its earlier
    /// events being rows.
    pub(super) fn open(
        store: &dyn Storage,
        keys: &VaultKeys,
        log_size: u64,
    ) -> Result<Notifier, VaultError> {
        let config = match store.get(Tree::Meta, CONFIG_KEY)? {
            Some(stored) => {
                let bytes = keys
                    .records()
                    .open(CONFIG_KIND, Tree::Meta, CONFIG_KEY, &stored)?;
                codec::decode(CONFIG_KIND, CONFIG_FORMAT, bytes)?
            }
            None => Config {
                key_generation: 1,
                ..Config::default()
            },
        };
        let mut stats = NotificationStats::default();
        let mut retry = HashMap::new();
        let mut rewrite = WriteBatch::new();
        for item in rows_under(store, &[QUEUED]).chain(rows_under(store, &[SCHEDULED])) {
            let (mut k, v) = item?;
            let opened = open_row_form(keys, &k, &v);
            if let Ok((row, true)) = &opened {
                let old = k.clone();
                if k.first() == Some(&QUEUED) && k.len() >= 8 {
                    k.truncate(k.len() - 8);
                    k.extend_from_slice(&keys.outbox_subject(&row.subject));
                }
                if k != old {
                    rewrite.delete(Tree::Outbox, old);
                }
                rewrite.put(Tree::Outbox, k.clone(), seal_row(keys, &k, row)?);
            }
            match k.first() {
                Some(&QUEUED) => {
                    stats.queued += 1;
                    if let Ok((row, _)) = opened {
                        if row.attempts > 0 {
                            retry.insert(k, row.next_ms);
                        }
                    }
                }
                Some(&SCHEDULED) => stats.scheduled += 1,
                _ => {}
            }
        }
        let mut streams = HashMap::new();
        for target in config.targets() {
            if !config.live(&target) {
                continue;
            }
            let key = cursor_key(&target);
            let at = match store.get(Tree::Outbox, &key)? {
                Some(v) => open_cursor(keys, &key, &v)?,
                None => {
                    rewrite.put(
                        Tree::Outbox,
                        key.clone(),
                        seal_cursor(keys, &key, log_size)?,
                    );
                    log_size
                }
            };
            streams.insert(target, Stream::at(at));
        }
        if !rewrite.is_empty() {
            store.commit(rewrite)?;
        }
        Ok(Notifier {
            config: RwLock::new(config),
            root: keys.notification_root(),
            stats: Mutex::new(stats),
            rows: Mutex::new(()),
            pairs: Mutex::new(BTreeMap::new()),
            retry: Mutex::new(retry),
            streams: Mutex::new(streams),
            tags: Mutex::new(HashMap::new()),
            outbox_read_ms: Mutex::new(0),
        })
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<WebhookTarget, Stream>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tags(&self) -> std::sync::MutexGuard<'_, HashMap<SubjectTag, Known>> {
        self.tags.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config(&self) -> std::sync::RwLockReadGuard<'_, Config> {
        self.config.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, NotificationStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signer(&self, generation: u32) -> Result<Arc<Ed25519KeyPair>, VaultError> {
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pairs.get(&generation) {
            return Ok(p.clone());
        }
        let mut msg = b"ed25519 seed ".to_vec();
        msg.extend_from_slice(&generation.to_be_bytes());
        let tag = hmac::sign(&self.root, &msg);
        let seed = Zeroizing::new(tag.as_ref()[..32].to_vec());
        let pair = Arc::new(
            Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|_| VaultError::internal("cannot derive the notification key"))?,
        );
        pairs.insert(generation, pair.clone());
        Ok(pair)
    }

    fn retry(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, u64>> {
        self.retry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generations that sign now: the current one, and the previous one during its
    /// overlap.
    fn signing_generations(&self, now_ms: u64) -> Vec<(u32, Option<u64>)> {
        let c = self.config();
        let mut out = vec![(c.key_generation, None)];
        if let Some((g, at)) = c.retired {
            let until = at.saturating_add(NOTIFY_KEY_OVERLAP_DAYS * 86_400_000);
            if now_ms < until {
                out.push((g, Some(until)));
            }
        }
        out
    }

    /// Stages what the events `draft` (log index `index`, about `citizen`) produces for
    /// the endpoints set now need beside the entry: the rows of a scheduled event and of
    /// an erasure's own event, and the citizen's tag row if not stored yet (each endpoint
    /// reads the other events from the log). A tag row staged is added to `fresh`, for
    /// [`Notifier::tags_stored`] once the commit is applied.
    #[allow(clippy::too_many_arguments)] // The writer's one call per notifying entry.
    pub(super) fn stage(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        keys: &VaultKeys,
        draft: &EntryDraft,
        index: u64,
        citizen: &CitizenId,
        fresh: &mut Vec<(SubjectTag, String)>,
    ) -> Result<(), VaultError> {
        let Some(tag) = draft.subject else {
            return Ok(());
        };
        let config = self.config();
        if config.gateway.is_none() && config.agencies.is_empty() {
            // No endpoint: nothing to build (the access path's common case).
            return Ok(());
        }
        let erasure = draft.action == ERASURE_ACTION;
        if !erasure && draft.action != "consent.grant" {
            // Every event of the entry comes from the log (the access path): only the tag
            // row may be needed, and no event is built here.
            if citizen_event_type(&draft.action, &draft.decision, draft.review).is_none() {
                return Ok(());
            }
            let agency = || match (&draft.actor.kind, &draft.terms) {
                (ActorKind::Agency, _) => Some(draft.actor.id.clone()),
                (_, Some(t)) => Some(t.agency.clone()),
                _ => None,
            };
            let from_log = config.live(&WebhookTarget::Gateway)
                || (matches!(draft.action.as_str(), "consent.revoke" | "consent.deny")
                    && agency().is_some_and(|a| config.live(&WebhookTarget::Agency(a))));
            drop(config);
            if from_log {
                self.stage_tag(store, batch, keys, tag, citizen, fresh)?;
            }
            return Ok(());
        }
        let mut from_log = false;
        let mut added = (0u64, 0u64);
        for ev in events_of(draft, index, citizen.as_str()) {
            if !config.live(&ev.target) {
                continue;
            }
            if !ev.scheduled && !erasure {
                from_log = true;
                continue;
            }
            let (key, row) = ev.row(keys, index);
            let scheduled = key.first() == Some(&SCHEDULED);
            batch.put(Tree::Outbox, key.clone(), seal_row(keys, &key, &row)?);
            if scheduled {
                added.1 += 1;
            } else {
                added.0 += 1;
            }
        }
        drop(config);
        if added != (0, 0) {
            let mut s = self.stats();
            s.queued += added.0;
            s.scheduled += added.1;
        }
        if from_log {
            self.stage_tag(store, batch, keys, tag, citizen, fresh)?;
        }
        Ok(())
    }
}

impl Notifier {
    /// Stages the deletion of every queued or scheduled event about `citizen` (an
    /// erasure: nothing about the person stays in the outbox but the erasure's own event,
    /// staged after this). Reads the whole outbox, which is small unless a receiver has
    /// been down for long.
    /// The citizen's tag row goes too, and their events read from the log and not yet
    /// delivered; those of their entries not read yet are not read (no tag row names them).
    pub(super) fn stage_forget(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        keys: &VaultKeys,
        citizen: &CitizenId,
        tag: Option<&SubjectTag>,
    ) -> Result<(), VaultError> {
        if let Some(tag) = tag {
            batch.delete(Tree::Outbox, tag_key(keys, tag).to_vec());
        }
        self.tags().retain(|_, k| k.citizen != citizen.as_str());
        for stream in self.streams().values_mut() {
            stream.held.retain(|_, r| r.subject != citizen.as_str());
            let gone: Vec<Vec<u8>> = stream
                .flying
                .iter()
                .filter(|(_, r)| r.subject == citizen.as_str())
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                stream.take(&k);
            }
        }
        let mut forgotten = (0u64, 0u64);
        for item in rows_under(store, &[QUEUED]).chain(rows_under(store, &[SCHEDULED])) {
            let (k, v) = item?;
            // A row that fails its check is dropped too: it is not the vault's.
            let about = open_row(keys, &k, &v).map_or(true, |r| r.subject == citizen.as_str());
            if about {
                if k.first() == Some(&SCHEDULED) {
                    forgotten.1 += 1;
                } else {
                    forgotten.0 += 1;
                }
                self.retry().remove(&k);
                batch.delete(Tree::Outbox, k);
            }
        }
        let mut s = self.stats();
        s.queued = s.queued.saturating_sub(forgotten.0);
        s.scheduled = s.scheduled.saturating_sub(forgotten.1);
        Ok(())
    }
}

/// The stored form of an outbox row: [`VaultKeys::seal_private`] of it. A row names a
/// citizen beside an agency and a purpose, which the log keeps pseudonymous.
fn seal_row(keys: &VaultKeys, key: &[u8], row: &Row) -> Result<Vec<u8>, VaultError> {
    let body = Zeroizing::new(codec::encode(ROW_KIND, ROW_FORMAT, row)?);
    keys.seal_private(Tree::Outbox, key, &body)
        .map_err(VaultError::internal)
}

/// An outbox row, once it authenticates: encrypted ([`seal_row`]), or of the earlier
/// MAC-only form (its first byte is [`ROW_FORMAT`]), which [`Notifier::open`] rewrites.
fn open_row(keys: &VaultKeys, key: &[u8], stored: &[u8]) -> Result<Row, VaultError> {
    open_row_form(keys, key, stored).map(|(row, _)| row)
}

/// [`open_row`], and whether the row is of the earlier MAC-only form.
fn open_row_form(keys: &VaultKeys, key: &[u8], stored: &[u8]) -> Result<(Row, bool), VaultError> {
    let (body, legacy) = keys.open_private_or_legacy(ROW_KIND, Tree::Outbox, key, stored)?;
    Ok((codec::decode(ROW_KIND, ROW_FORMAT, &body)?, legacy))
}

fn endpoint_part(out: &mut Vec<u8>, target: &WebhookTarget) {
    let (head, id) = match target {
        WebhookTarget::Gateway => (&b"g"[..], ""),
        WebhookTarget::Agency(a) => (&b"a:"[..], a.as_str()),
    };
    // Agency ids are short identifiers (the policy files bound them well under 255).
    out.push(u8::try_from(head.len() + id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(head);
    out.extend_from_slice(id.as_bytes());
}

/// The action of an erasure's entry, whose event is queued as a row.
const ERASURE_ACTION: &str = "erasure";

/// The outbox rows whose keys start with `prefix`, a page at a time.
fn rows_under<'a>(store: &'a dyn Storage, prefix: &[u8]) -> storage::ScanAll<'a> {
    let (start, end) = prefix_range(prefix);
    storage::scan_range(store, Tree::Outbox, &start, &end)
}

fn queue_prefix(target: &WebhookTarget) -> Vec<u8> {
    // With room for the rest of a queued row's key.
    let mut k = Vec::with_capacity(64);
    k.push(QUEUED);
    endpoint_part(&mut k, target);
    k
}

/// A queued row's key: its endpoint, position and origin, and `subject_hash`
/// ([`VaultKeys::outbox_subject`] of its citizen).
fn queue_key(target: &WebhookTarget, position: u64, origin: u64, subject_hash: [u8; 8]) -> Vec<u8> {
    let mut k = queue_prefix(target);
    k.extend_from_slice(&position.to_be_bytes());
    k.extend_from_slice(&origin.to_be_bytes());
    k.extend_from_slice(&subject_hash);
    k
}

/// The subject hash at the end of a queued row's key.
fn key_subject(key: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    if let Some(tail) = key.len().checked_sub(8).and_then(|at| key.get(at..)) {
        out.copy_from_slice(tail);
    }
    out
}

fn scheduled_key(due_ms: u64, target: &WebhookTarget, origin: u64) -> Vec<u8> {
    let mut k = vec![SCHEDULED];
    k.extend_from_slice(&due_ms.to_be_bytes());
    endpoint_part(&mut k, target);
    k.extend_from_slice(&origin.to_be_bytes());
    k
}

/// The target and origin of a scheduled row's key.
fn parse_scheduled(key: &[u8]) -> Option<(WebhookTarget, u64)> {
    let rest = key.get(9..)?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    let target = WebhookTarget::from_key(rest.get(..len)?)?;
    let origin = u64::from_be_bytes(rest.get(len..len + 8)?.try_into().ok()?);
    Some((target, origin))
}

/// An event's `data`: ids, the audit index and times (serialised with its keys in
/// alphabetical order, the members absent when `None`).
#[derive(Clone, Default, Serialize)]
struct EventData {
    #[serde(skip_serializing_if = "Option::is_none")]
    agency: Option<String>,
    audit_index: u64,
    citizen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discloses: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<String>,
}

/// An event's JSON body (keys in alphabetical order).
#[derive(Serialize)]
struct EventBody<'a> {
    data: &'a EventData,
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// One event an entry produces.
struct Event {
    target: WebhookTarget,
    kind: &'static str,
    subject: String,
    /// When it happens (ms): the entry's time, or a consent's expiry.
    at_ms: u64,
    data: EventData,
    scheduled: bool,
    check: Option<(String, String)>,
    /// The subject's hash in queue keys, when known (computed from `subject` if not).
    subject_hash: Option<[u8; 8]>,
}

impl Event {
    fn row(self, keys: &VaultKeys, index: u64) -> (Vec<u8>, Row) {
        let id = if self.scheduled {
            format!("msg_{index}_{}", self.kind.replace('.', "_"))
        } else {
            format!("msg_{index}")
        };
        let mut body = Vec::with_capacity(384);
        let event = EventBody {
            data: &self.data,
            timestamp: rfc3339_ms(self.at_ms),
            kind: self.kind,
        };
        // Serialising plain strings and numbers into memory does not fail.
        let body = match serde_json::to_writer(&mut body, &event) {
            Ok(()) => String::from_utf8(body).unwrap_or_default(),
            Err(_) => String::new(),
        };
        let key = if self.scheduled {
            scheduled_key(self.at_ms, &self.target, index)
        } else {
            let hash = self
                .subject_hash
                .unwrap_or_else(|| keys.outbox_subject(&self.subject));
            queue_key(&self.target, index, index, hash)
        };
        let row = Row {
            id,
            kind: Cow::Borrowed(self.kind),
            subject: self.subject,
            at_ms: self.at_ms,
            body,
            attempts: 0,
            next_ms: self.at_ms,
            check: self.check,
        };
        (key, row)
    }
}

/// The attempt carrying `rows` (in queue order) to `target`: the event itself, or for an
/// endpoint that takes batches a `batch` message of them, each with its own `id`.
fn message(
    target: &WebhookTarget,
    endpoint: &EndpointConfig,
    mut rows: Vec<(DeliveryKey, Cow<'_, Row>)>,
    now_ms: u64,
) -> Delivery {
    let attempts = rows.iter().map(|(_, r)| r.attempts).max().unwrap_or(0);
    let at = rows
        .iter()
        .map(|(_, r)| Duration::from_millis(r.at_ms))
        .collect();
    let single = if endpoint.batch <= 1 && rows.len() == 1 {
        rows.pop()
    } else {
        None
    };
    let (id, kind, body, keys) = if let Some((key, row)) = single {
        let row = row.into_owned();
        (row.id, row.kind.into_owned(), row.body, vec![key])
    } else {
        let mut ids = ring::digest::Context::new(&ring::digest::SHA256);
        let size: usize = rows
            .iter()
            .map(|(_, r)| r.id.len() + r.body.len() + 8)
            .sum();
        let mut body = String::with_capacity(size + 96);
        body.push_str("{\"type\":\"batch\",\"timestamp\":\"");
        body.push_str(&rfc3339_ms(now_ms));
        body.push_str("\",\"data\":{\"events\":[");
        let mut keys = Vec::with_capacity(rows.len());
        for (i, (key, row)) in rows.into_iter().enumerate() {
            ids.update(row.id.as_bytes());
            ids.update(b"\n");
            if i > 0 {
                body.push(',');
            }
            // The stored body is a JSON object; the event's id goes first in it.
            body.push_str("{\"id\":");
            if row
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                body.push('"');
                body.push_str(&row.id);
                body.push('"');
            } else {
                body.push_str(&Value::String(row.id.clone()).to_string());
            }
            body.push(',');
            body.push_str(row.body.strip_prefix('{').unwrap_or(&row.body));
            keys.push(key);
        }
        body.push_str("]}}");
        let id = format!("msg_batch_{}", super::hex(&ids.finish().as_ref()[..16]));
        (id, "batch".to_owned(), body, keys)
    };
    Delivery {
        rows: keys,
        target: target.clone(),
        url: endpoint.url.clone(),
        id,
        kind,
        body,
        at,
        attempts,
    }
}

/// RFC 3339 in UTC with milliseconds. The date and time of the second last formatted on
/// this thread are kept: the events of a round mostly share their second.
fn rfc3339_ms(ms: u64) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = ms / 1000;
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = Timestamp::from_unix_seconds(secs).to_string();
            // Without its `Z`.
            text.pop();
        }
        let frac = ms % 1000;
        let mut out = String::with_capacity(text.len() + 5);
        out.push_str(text);
        out.push('.');
        for d in [frac / 100, frac / 10 % 10, frac % 10] {
            out.push(char::from(b'0' + d as u8));
        }
        out.push('Z');
        out
    })
}

/// The citizen-facing event type of an entry (the citizen's feed and the gateway's
/// events), if it is one a citizen is told of.
pub fn citizen_event_type(action: &str, decision: &str, review: bool) -> Option<&'static str> {
    Some(match action {
        "access" if review => "access.break_glass",
        "access" => match decision {
            "granted" => "access.released",
            "partial" => "access.partly_released",
            _ => "access.refused",
        },
        "consent.request" if decision == "pending" => "consent.requested",
        "consent.grant" => "consent.granted",
        "consent.revoke" => "consent.withdrawn",
        "consent.deny" => "consent.declined",
        "erasure" => "erasure.done",
        audit::DISCLOSE_ACTION => "access.disclosed",
        _ => return None,
    })
}

/// The events of an entry about `citizen` at log index `index`.
fn events_of(draft: &EntryDraft, index: u64, citizen: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let Some(kind) = citizen_event_type(&draft.action, &draft.decision, draft.review) else {
        return out;
    };
    let mut data = EventData {
        citizen: citizen.to_owned(),
        audit_index: index,
        ..EventData::default()
    };
    let agency = match (&draft.actor.kind, &draft.terms) {
        (ActorKind::Agency, _) => Some(draft.actor.id.as_str()),
        (_, Some(t)) => Some(t.agency.as_str()),
        _ => None,
    };
    data.agency = agency.map(str::to_owned);
    if let Some(p) = &draft.purpose {
        data.purpose = Some(p.clone());
    }
    if draft.action == "access" {
        data.decision = Some(draft.decision.clone());
    }
    if let Some(audit::Deferral::Disclosure { of, .. }) = &draft.deferral {
        data.discloses = Some(*of);
    }
    if let Some(c) = &draft.consent_id {
        if draft.action != "access" {
            data.consent_id = Some(c.clone());
        }
    }
    let event = |target: WebhookTarget, data: EventData| Event {
        target,
        kind,
        subject: citizen.to_owned(),
        at_ms: draft.time_ms,
        data,
        scheduled: false,
        check: None,
        subject_hash: None,
    };
    let consent_change = matches!(
        draft.action.as_str(),
        "consent.grant" | "consent.revoke" | "consent.deny"
    );
    if consent_change {
        if let Some(a) = &agency {
            out.push(event(WebhookTarget::Agency((*a).to_owned()), data.clone()));
        }
    }
    // A granted consent expires at its time unless withdrawn first: scheduled now, checked
    // when due.
    let mut scheduled = Vec::new();
    if draft.action == "consent.grant" {
        if let (Some(t), Some(c), Some(a)) = (&draft.terms, &draft.consent_id, &agency) {
            let at_ms = t.expires_at.saturating_mul(1000);
            let mut d = data.clone();
            d.expires_at = Some(rfc3339_ms(at_ms));
            for target in [
                WebhookTarget::Agency((*a).to_owned()),
                WebhookTarget::Gateway,
            ] {
                scheduled.push(Event {
                    target,
                    kind: "consent.expired",
                    subject: citizen.to_owned(),
                    at_ms,
                    data: d.clone(),
                    scheduled: true,
                    check: Some((citizen.to_owned(), c.clone())),
                    subject_hash: None,
                });
            }
        }
    }
    out.push(event(WebhookTarget::Gateway, data));
    out.extend(scheduled);
    out
}

/// Checks and normalises a webhook URL: `https://`, a host, no user name or password, no
/// fragment, no spaces or control characters, at most [`MAX_WEBHOOK_URL`] bytes.
fn check_url(url: &str) -> Result<String, VaultError> {
    let bad = |why: &str| {
        VaultError::bad(
            "invalid_webhook_url",
            format!("the webhook URL {why}: give an https:// URL such as https://gateway.example.gov/vault-events"),
        )
    };
    if url.len() > MAX_WEBHOOK_URL {
        return Err(bad(&format!("is longer than {MAX_WEBHOOK_URL} bytes")));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("contains spaces or control characters"));
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(bad("does not start with https://"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad("has no host"));
    }
    if authority.contains('@') {
        return Err(bad("holds a user name or password"));
    }
    if url.contains('#') {
        return Err(bad("has a fragment"));
    }
    Ok(url.to_owned())
}

/// Base64 (standard, padded).
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The wait before attempt `attempts + 1`, `attempts` >= 1, before jitter.
fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    NOTIFY_FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(NOTIFY_MAX_BACKOFF)
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = crate::keys::fill_random(&mut b)
        .map(|()| u16::from_be_bytes(b))
        .unwrap_or(0);
    d + d.mul_f64(f64::from(r) / f64::from(u16::MAX) / 4.0)
}

impl Vault {
    fn store_notify_config(&self, batch: &mut WriteBatch, c: &Config) -> Result<(), VaultError> {
        let bytes = codec::encode(CONFIG_KIND, CONFIG_FORMAT, c)?;
        batch.put(
            Tree::Meta,
            CONFIG_KEY,
            self.keys.records().seal(Tree::Meta, CONFIG_KEY, bytes),
        );
        Ok(())
    }

    fn webhook_target(&self, target: &WebhookTarget) -> Result<(), VaultError> {
        if let WebhookTarget::Agency(a) = target {
            let id =
                AgencyId::new(a).map_err(|e| VaultError::bad("invalid_agency", e.to_string()))?;
            if self.policy.agency(&id).is_none() {
                return Err(VaultError::NotFound { what: "agency" });
            }
        }
        Ok(())
    }

    /// Sets (or, with `None`, removes) the webhook endpoint of `target`. Events are queued
    /// for an endpoint from when it is set; removing one drops what is queued for it.
    /// Setting an endpoint that answered `410 Gone` enables it again. Logged
    /// (`webhook.set`, `webhook.remove`; the URL is not in the log).
    pub fn set_webhook(
        &self,
        target: &WebhookTarget,
        url: Option<&str>,
    ) -> Result<Option<WebhookView>, VaultError> {
        self.set_webhook_batched(target, url, 1)
    }

    /// [`Vault::set_webhook`] for an endpoint that takes up to `batch` events in one
    /// message (1 to [`MAX_WEBHOOK_BATCH`]; 1 is one message per event).
    pub fn set_webhook_batched(
        &self,
        target: &WebhookTarget,
        url: Option<&str>,
        batch: u16,
    ) -> Result<Option<WebhookView>, VaultError> {
        self.webhook_target(target)?;
        if !(1..=MAX_WEBHOOK_BATCH).contains(&batch) {
            return Err(VaultError::bad(
                "invalid_batch",
                format!("a webhook's batch is 1 to {MAX_WEBHOOK_BATCH} events, not {batch}"),
            ));
        }
        let url = url.map(check_url).transpose()?;
        let removing = url.is_none();
        let (_, now_ms) = now_parts();
        let _rows = self
            .notifier
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut config = self.notifier.config().clone();
        let was_live = config.live(target);
        let removed = if url.is_none() {
            if config.endpoint(target).is_none() {
                return Err(VaultError::NotFound { what: "webhook" });
            }
            keys_under(&*self.store, &queue_prefix(target), usize::MAX)?
        } else {
            Vec::new()
        };
        config.set(
            target,
            url.map(|url| EndpointConfig {
                url,
                set_at_ms: now_ms,
                disabled_at_ms: None,
                batch,
            }),
        );
        self.transact(|tx| {
            self.store_notify_config(&mut tx.batch, &config)?;
            for k in &removed {
                tx.batch.delete(Tree::Outbox, k.clone());
            }
            if removing {
                tx.batch.delete(Tree::Outbox, cursor_key(target));
            }
            let action = if removed.is_empty() && config.endpoint(target).is_some() {
                "webhook.set"
            } else {
                "webhook.remove"
            };
            let mut d = super::admin::operator_draft(now_ms, action);
            d.initiator = Some(target.reference());
            tx.entry(d);
            Ok(())
        })?;
        let live = config.live(target);
        *self
            .notifier
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        if !live {
            self.notifier.streams().remove(target);
        } else if !was_live {
            // A new (or re-enabled) endpoint reads the log from here: every entry from now
            // on was staged with the endpoint set (its citizen's tag row written).
            let at = self.log_size();
            let key = cursor_key(target);
            let mut b = WriteBatch::new();
            b.put(
                Tree::Outbox,
                key.clone(),
                seal_cursor(&self.keys, &key, at)?,
            );
            self.store.commit(b)?;
            self.notifier
                .streams()
                .insert(target.clone(), Stream::at(at));
        }
        if !removed.is_empty() {
            let mut s = self.notifier.stats();
            s.queued = s.queued.saturating_sub(removed.len() as u64);
        }
        drop(_rows);
        self.webhook(target)
    }

    /// The endpoint of `target`, if set.
    pub fn webhook(&self, target: &WebhookTarget) -> Result<Option<WebhookView>, VaultError> {
        self.webhook_target(target)?;
        let Some(e) = self.notifier.config().endpoint(target).cloned() else {
            return Ok(None);
        };
        let held = self
            .notifier
            .streams()
            .get(target)
            .map_or(0, Stream::pending);
        let queued =
            keys_under(&*self.store, &queue_prefix(target), 1_000_000)?.len() as u64 + held;
        Ok(Some(WebhookView {
            target: target.clone(),
            url: e.url,
            set_at: Timestamp::from_unix_seconds(e.set_at_ms / 1000),
            disabled_at: e
                .disabled_at_ms
                .map(|ms| Timestamp::from_unix_seconds(ms / 1000)),
            queued,
            batch: e.batch,
        }))
    }

    /// Every endpoint set.
    pub fn webhooks(&self) -> Result<Vec<WebhookView>, VaultError> {
        let targets = self.notifier.config().targets();
        let mut out = Vec::new();
        for t in targets {
            if let Some(v) = self.webhook(&t)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The notification keys that sign now, current first (published at
    /// `/v1/notifications/keys`).
    pub fn notification_keys(&self) -> Result<Vec<NotificationKey>, VaultError> {
        let (_, now_ms) = now_parts();
        self.notifier
            .signing_generations(now_ms)
            .into_iter()
            .map(|(g, until)| {
                let pair = self.notifier.signer(g)?;
                Ok(NotificationKey {
                    generation: g,
                    public_key: format!("whpk_{}", b64(pair.public_key().as_ref())),
                    current: until.is_none(),
                    signs_until: until.map(|ms| Timestamp::from_unix_seconds(ms / 1000)),
                })
            })
            .collect()
    }

    /// Starts a new notification key; the old one goes on signing beside it for
    /// [`NOTIFY_KEY_OVERLAP_DAYS`] days. Logged (`notification_key.rotate`).
    pub fn rotate_notification_key(&self) -> Result<Vec<NotificationKey>, VaultError> {
        let (_, now_ms) = now_parts();
        let _rows = self
            .notifier
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut config = self.notifier.config().clone();
        let old = config.key_generation;
        config.retired = Some((old, now_ms));
        config.key_generation = old
            .checked_add(1)
            .ok_or_else(|| VaultError::internal("notification key generations exhausted"))?;
        self.transact(|tx| {
            self.store_notify_config(&mut tx.batch, &config)?;
            let mut d = super::admin::operator_draft(now_ms, "notification_key.rotate");
            d.initiator = Some(format!("generation {}", config.key_generation));
            tx.entry(d);
            Ok(())
        })?;
        *self
            .notifier
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        drop(_rows);
        self.notification_keys()
    }

    /// The `webhook-signature` header of an attempt at `timestamp` (seconds): a `v1a`
    /// signature over `id.timestamp.body` by each key that signs now.
    pub fn sign_notification(&self, d: &Delivery, timestamp: u64) -> Result<String, VaultError> {
        let (_, now_ms) = now_parts();
        let content = format!("{}.{}.{}", d.id, timestamp, d.body);
        let mut sigs = Vec::new();
        for (g, _) in self.notifier.signing_generations(now_ms) {
            let pair = self.notifier.signer(g)?;
            sigs.push(format!(
                "v1a,{}",
                b64(pair.sign(content.as_bytes()).as_ref())
            ));
        }
        Ok(sigs.join(" "))
    }

    /// Delivery counters and the queue. The endpoints first read the log's new entries (as
    /// a delivery round does), so `queued` counts the events they hold exactly, unless
    /// more than a round reads are waiting.
    pub fn notification_stats(&self) -> NotificationStats {
        let size = self.log_size();
        let config = self.notifier.config();
        let mut streams = self.notifier.streams();
        // A failure leaves the entries counted as not read; the next delivery round
        // reports it.
        let _ = self.read_streams(&mut streams, &config, size);
        let mut stats = self.notifier.stats().clone();
        for s in streams.values() {
            stats.queued += s.pending() + size.saturating_sub(s.next);
        }
        stats
    }

    /// The attempts to make now: for each live endpoint, up to `per_endpoint` minus what is
    /// `in_flight` there, in order. An attempt carries one event, or for an endpoint that
    /// takes batches up to its `batch` events (several of one citizen's among them, in
    /// order); a batch that is not full is sent only when nothing is in flight to its
    /// endpoint, so that events gather while a message is under way. A citizen's events
    /// are in at most one attempt at a time, and none is taken while an earlier one of
    /// theirs is in flight or waiting for a retry. Scheduled events that fell due are
    /// queued first (an expiry only if the consent is still active). An event read from
    /// the log and handed out here stays in flight until the attempt's result is
    /// recorded ([`Vault::notification_results`]), whatever `in_flight` says; a stored
    /// row is in flight while `in_flight` holds its key. Only events of durable log entries
    /// are handed out: the round first waits for the store's durability step (shared with
    /// the accesses'), and fails if the store has failed.
    pub fn notifications_due(
        &self,
        in_flight: &HashSet<DeliveryKey>,
        per_endpoint: usize,
    ) -> Result<Vec<Delivery>, VaultError> {
        let (_, now_ms) = now_parts();
        // The outbox is read when the counts say it holds rows, and once a second anyway
        // (so that a count gone wrong delays a row by a second at most): most rounds find
        // every event in the log.
        let (queued_rows, scheduled_rows) = {
            let s = self.notifier.stats();
            (s.queued, s.scheduled)
        };
        let full = {
            let mut last = self
                .notifier
                .outbox_read_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = now_ms.abs_diff(*last) >= OUTBOX_READ_EVERY_MS;
            if due {
                *last = now_ms;
            }
            due
        };
        if full || scheduled_rows > 0 {
            self.promote_due(now_ms)?;
        }
        let size = self.durable_log_size()?;
        let config = self.notifier.config();
        let keys = &self.keys;
        let mut out = Vec::new();
        let mut oldest: Option<u64> = None;
        let mut tampered: Vec<Vec<u8>> = Vec::new();
        let mut streams = self.notifier.streams();
        self.read_streams(&mut streams, &config, size)?;
        let retry = self.notifier.retry();
        for target in config.targets() {
            let Some(endpoint) = config.endpoint(&target) else {
                continue;
            };
            let prefix = queue_prefix(&target);
            let (start, end) = prefix_range(&prefix);
            let batch = usize::from(endpoint.batch.max(1));
            let busy_rows = in_flight
                .iter()
                .filter(|k| k.0.starts_with(&prefix))
                .count();
            // Messages in flight: every one is full but at most one (a partial batch is
            // only sent when none is in flight, below).
            let busy = busy_rows.div_ceil(batch);
            // The rows in flight are near the head of the queue; look past them for what
            // the free slots can carry, twice over.
            let window = per_endpoint
                .saturating_sub(busy)
                .saturating_mul(batch)
                .saturating_mul(2)
                .saturating_add(busy_rows)
                .saturating_add(16)
                .min(SCAN_WINDOW);
            let rows = if full || queued_rows > 0 {
                self.store.scan(Tree::Outbox, &start, Some(&end), window)?
            } else {
                Vec::new()
            };
            // The rows and the events read from the log, in queue order; past the last
            // row read when more rows may follow (a later row of a citizen must not be
            // passed by an event of theirs read from the log).
            let last_row = (rows.len() >= window)
                .then(|| rows.last().map(|(k, _)| k.clone()))
                .flatten();
            let stream = streams.get(&target);
            // Events read from the log and in an attempt: not looked at again, but their
            // citizens' later events wait.
            let flying = stream.map(|s| &s.flying_subjects);
            if let Some(r) = stream.and_then(|s| s.flying.values().next()) {
                oldest = Some(oldest.map_or(r.at_ms, |o| o.min(r.at_ms)));
            }
            let held = stream
                .into_iter()
                .flat_map(|s| s.held.iter())
                .take_while(|(k, _)| last_row.as_ref().is_none_or(|l| *k < l));
            let candidates = merge_queue(rows, held);
            let first_out = out.len();
            // Decided from the keys (the subject hash) and the retry times; only the rows
            // taken (and the first, for the oldest age) are opened and authenticated.
            let mut blocked: HashSet<[u8; 8]> = HashSet::new();
            let mut taking: Vec<(DeliveryKey, Cow<'_, Row>)> = Vec::new();
            let mut taking_subjects: HashSet<[u8; 8]> = HashSet::new();
            let mut picked = 0usize;
            let mut first = true;
            for (k, v) in candidates {
                let subject = key_subject(&k);
                let mut opened = None;
                if first {
                    first = false;
                    match v.open(keys, &k) {
                        Ok(r) => {
                            oldest = Some(oldest.map_or(r.at_ms, |o| o.min(r.at_ms)));
                            opened = Some(r);
                        }
                        Err(_) => {
                            tampered.push(k.into_owned());
                            continue;
                        }
                    }
                    if endpoint.disabled_at_ms.is_some() {
                        break;
                    }
                }
                if busy + picked >= per_endpoint {
                    break;
                }
                if blocked.contains(&subject) {
                    continue;
                }
                if flying.is_some_and(|f| f.contains_key(&subject)) {
                    blocked.insert(subject);
                    continue;
                }
                let waiting = retry.get(&*k).is_some_and(|&at| at > now_ms);
                if in_flight.contains(&*k) || waiting {
                    blocked.insert(subject);
                    continue;
                }
                let key = DeliveryKey(k.into_owned());
                let row = match opened {
                    Some(r) => r,
                    None => match v.open(keys, &key.0) {
                        Ok(r) => r,
                        Err(_) => {
                            // Not what the vault wrote: never signed, dropped below.
                            tampered.push(key.0);
                            continue;
                        }
                    },
                };
                taking.push((key, row));
                taking_subjects.insert(subject);
                if taking.len() == batch {
                    out.push(message(
                        &target,
                        endpoint,
                        std::mem::take(&mut taking),
                        now_ms,
                    ));
                    blocked.extend(taking_subjects.drain());
                    picked += 1;
                }
            }
            // A batch that is not full goes only when nothing is in flight to the endpoint:
            // events go at once when it is idle, and gather while a message is under way.
            if !taking.is_empty() && busy + picked == 0 {
                out.push(message(&target, endpoint, taking, now_ms));
            }
            // What was read from the log and handed out now is in flight until its result
            // is recorded ([`Vault::notification_results`]).
            if let Some(stream) = streams.get_mut(&target) {
                for d in out.get(first_out..).unwrap_or_default() {
                    for k in &d.rows {
                        stream.fly(&k.0);
                    }
                }
            }
        }
        drop(retry);
        drop(streams);
        drop(config);
        let dropped = tampered.len() as u64;
        if !tampered.is_empty() {
            let _rows = self
                .notifier
                .rows
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut b = WriteBatch::new();
            for k in tampered {
                b.delete(Tree::Outbox, k);
            }
            self.store.apply(b)?;
        }
        let mut s = self.notifier.stats();
        s.oldest_queued_ms = oldest;
        s.failed += dropped;
        s.queued = s.queued.saturating_sub(dropped);
        Ok(out)
    }

    /// Moves scheduled events that fell due to their endpoint's queue.
    fn promote_due(&self, now_ms: u64) -> Result<(), VaultError> {
        let mut end = vec![SCHEDULED];
        end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let due = self
            .store
            .scan(Tree::Outbox, &[SCHEDULED], Some(&end), PROMOTE_BATCH)?;
        if due.is_empty() {
            return Ok(());
        }
        let config = self.notifier.config().clone();
        let mac = self.keys.records();
        let _rows = self
            .notifier
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let position = self.log_size();
        let mut batch = WriteBatch::new();
        let (mut queued, mut gone) = (0u64, 0u64);
        for (k, v) in due {
            batch.delete(Tree::Outbox, k.clone());
            gone += 1;
            let (Some((target, origin)), Ok(row)) =
                (parse_scheduled(&k), open_row(&self.keys, &k, &v))
            else {
                continue;
            };
            if !config.live(&target) {
                continue;
            }
            let still = match &row.check {
                Some((citizen, id)) => {
                    let citizen = super::ops::citizen_id(citizen)?;
                    super::consents::is_active(&*self.store, mac, &citizen, id)?
                }
                None => true,
            };
            if still {
                let key = queue_key(
                    &target,
                    position,
                    origin,
                    self.keys.outbox_subject(&row.subject),
                );
                batch.put(Tree::Outbox, key.clone(), seal_row(&self.keys, &key, &row)?);
                queued += 1;
            }
        }
        self.store.apply(batch)?;
        let mut s = self.notifier.stats();
        s.scheduled = s.scheduled.saturating_sub(gone);
        s.queued += queued;
        Ok(())
    }

    /// Records how an attempt ended: a delivered event leaves the outbox; a failed one is
    /// retried after a back-off (the receiver's `retry-after` if longer, up to an hour)
    /// until [`NOTIFY_RETRY_HOURS`] after it fell due, then given up; `410 Gone` disables
    /// the endpoint (logged, `webhook.disable`) and keeps its events queued.
    pub fn notification_result(
        &self,
        d: &Delivery,
        outcome: &DeliveryOutcome,
    ) -> Result<(), VaultError> {
        self.notification_results(&[(d.clone(), outcome.clone())])
    }

    /// [`Vault::notification_result`] for several attempts, in one store write: the
    /// delivered rows removed, the failed events stored or updated for their retry, and
    /// each endpoint's cursor moved past what is done.
    pub fn notification_results(
        &self,
        done: &[(Delivery, DeliveryOutcome)],
    ) -> Result<(), VaultError> {
        let (_, now_ms) = now_parts();
        for (d, outcome) in done {
            if let DeliveryOutcome::Gone = outcome {
                self.disable_webhook(&d.target, now_ms)?;
            }
        }
        let _rows = self
            .notifier
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut streams = self.notifier.streams();
        let mut batch = WriteBatch::new();
        // Counts: delivered, of them stored rows; attempts failed; given up, of them
        // stored rows; events read from the log that became rows.
        let (mut delivered, mut delivered_rows) = (0u64, 0u64);
        let mut failed_attempts = 0u64;
        let (mut given_up, mut given_up_rows) = (0u64, 0u64);
        let mut stored_now = 0u64;
        let mut retry_ended: Vec<Vec<u8>> = Vec::new();
        let mut waits: Vec<(Vec<u8>, u64)> = Vec::new();
        // Citizens with an event waiting for a retry, per endpoint.
        let mut behind: Vec<(WebhookTarget, [u8; 8])> = Vec::new();
        for (d, outcome) in done {
            let mut stream = streams.get_mut(&d.target);
            match outcome {
                DeliveryOutcome::Delivered => {
                    for key in &d.rows {
                        if stream.as_mut().and_then(|s| s.take(&key.0)).is_some() {
                            delivered += 1;
                        } else if self.store.get(Tree::Outbox, &key.0)?.is_some() {
                            // (Absent: removed meanwhile with its endpoint; nothing to count.)
                            batch.delete(Tree::Outbox, key.0.clone());
                            delivered += 1;
                            delivered_rows += 1;
                        }
                        retry_ended.push(key.0.clone());
                    }
                }
                DeliveryOutcome::Failed { retry_after, .. } => {
                    failed_attempts += 1;
                    for key in &d.rows {
                        let held = stream.as_mut().and_then(|s| s.take(&key.0));
                        let from_log = held.is_some();
                        let mut row = match held {
                            Some(r) => r,
                            None => match self.store.get(Tree::Outbox, &key.0)? {
                                Some(stored) => open_row(&self.keys, &key.0, &stored)?,
                                None => continue,
                            },
                        };
                        row.attempts = row.attempts.saturating_add(1);
                        if now_ms.saturating_sub(row.at_ms) >= NOTIFY_RETRY_HOURS * 3_600_000 {
                            if !from_log {
                                batch.delete(Tree::Outbox, key.0.clone());
                                given_up_rows += 1;
                            }
                            given_up += 1;
                            retry_ended.push(key.0.clone());
                        } else {
                            behind.push((d.target.clone(), key_subject(&key.0)));
                            let wait = jitter(backoff(row.attempts))
                                .max(retry_after.unwrap_or_default().min(NOTIFY_MAX_BACKOFF));
                            row.next_ms = now_ms.saturating_add(wait.as_millis() as u64);
                            waits.push((key.0.clone(), row.next_ms));
                            batch.put(
                                Tree::Outbox,
                                key.0.clone(),
                                seal_row(&self.keys, &key.0, &row)?,
                            );
                            if from_log {
                                stored_now += 1;
                            }
                        }
                    }
                }
                // Disabled above; its events stay queued for when it is set again.
                DeliveryOutcome::Gone => {}
            }
        }
        // Their later events read from the log wait behind it as rows (none is in flight:
        // a citizen's events are in one attempt at a time), so that they do not hold the
        // cursor back until the retry.
        for (target, subject) in &behind {
            let Some(stream) = streams.get_mut(target) else {
                continue;
            };
            let later: Vec<Vec<u8>> = stream
                .held
                .keys()
                .filter(|k| key_subject(k) == *subject)
                .cloned()
                .collect();
            for k in later {
                if let Some(row) = stream.held.remove(&k) {
                    batch.put(Tree::Outbox, k.clone(), seal_row(&self.keys, &k, &row)?);
                    stored_now += 1;
                }
            }
        }
        let mut moved = Vec::new();
        for (target, stream) in streams.iter() {
            let at = stream.cursor();
            if at != stream.stored {
                let key = cursor_key(target);
                batch.put(
                    Tree::Outbox,
                    key.clone(),
                    seal_cursor(&self.keys, &key, at)?,
                );
                moved.push((target.clone(), at));
            }
        }
        if !batch.is_empty() {
            self.store.apply(batch)?;
        }
        for (target, at) in moved {
            if let Some(s) = streams.get_mut(&target) {
                s.stored = at;
            }
        }
        drop(streams);
        let mut retry = self.notifier.retry();
        for k in &retry_ended {
            retry.remove(k);
        }
        retry.extend(waits);
        drop(retry);
        let mut s = self.notifier.stats();
        s.delivered += delivered;
        s.failed_attempts += failed_attempts;
        s.failed += given_up;
        s.queued = (s.queued + stored_now).saturating_sub(delivered_rows + given_up_rows);
        Ok(())
    }

    fn disable_webhook(&self, target: &WebhookTarget, now_ms: u64) -> Result<(), VaultError> {
        let _rows = self
            .notifier
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut config = self.notifier.config().clone();
        match config.endpoint_mut(target) {
            Some(e) if e.disabled_at_ms.is_none() => e.disabled_at_ms = Some(now_ms),
            _ => return Ok(()),
        }
        let ((), index) = self.transact(|tx| {
            self.store_notify_config(&mut tx.batch, &config)?;
            let mut d = system("webhook.disable", now_ms);
            d.initiator = Some(target.reference());
            tx.entry(d);
            Ok(())
        })?;
        *self
            .notifier
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        self.stream_to_rows(target, index)
    }
}

/// Up to `max` keys of `Tree::Outbox` that start with `prefix`, in order, read a page at a
/// time.
fn keys_under(store: &dyn Storage, prefix: &[u8], max: usize) -> Result<Vec<Vec<u8>>, VaultError> {
    let (mut start, end) = prefix_range(prefix);
    let mut out = Vec::new();
    while out.len() < max {
        let page = store.scan(Tree::Outbox, &start, Some(&end), 1024.min(max - out.len()))?;
        let Some((last, _)) = page.last() else { break };
        start = last.clone();
        start.push(0);
        let n = page.len();
        out.extend(page.into_iter().map(|(k, _)| k));
        if n < 1024 {
            break;
        }
    }
    Ok(out)
}

/// The keys from `prefix` (inclusive) to the first key after every key it starts.
fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut end = prefix.to_vec();
    end.push(0xff);
    end.extend_from_slice(&[0xff; 16]);
    (prefix.to_vec(), end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PRIVATE_ROW;

    /// Outbox rows are encrypted (no byte of the citizen id), and a row of the earlier
    /// MAC-only form, under a key with the unkeyed hash, is rewritten at open: encrypted,
    /// under the keyed hash, its retry time kept.
    #[test]
    fn outbox_rows_are_encrypted_and_legacy_rows_are_rewritten_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::storage::sled::SledStore::create(tmp.path().join("s")).unwrap();
        let keys = VaultKeys::derive(&[6u8; 32]);
        let row = |attempts| Row {
            id: "msg_5".into(),
            kind: "access.released".into(),
            subject: "EE38001010001".into(),
            at_ms: 1_000,
            body: r#"{"data":{"citizen":"EE38001010001"}}"#.into(),
            attempts,
            next_ms: 9_000,
            check: None,
        };
        let fresh = queue_key(
            &WebhookTarget::Gateway,
            5,
            5,
            keys.outbox_subject("EE38001010001"),
        );
        let mut old = queue_prefix(&WebhookTarget::Gateway);
        old.extend_from_slice(&6u64.to_be_bytes());
        old.extend_from_slice(&6u64.to_be_bytes());
        let sha = ring::digest::digest(&ring::digest::SHA256, b"EE38001010001");
        old.extend_from_slice(&sha.as_ref()[..8]);
        let legacy = keys.records().seal(
            Tree::Outbox,
            &old,
            codec::encode(ROW_KIND, ROW_FORMAT, &row(2)).unwrap(),
        );
        let mut b = WriteBatch::new();
        b.put(
            Tree::Outbox,
            fresh.clone(),
            seal_row(&keys, &fresh, &row(0)).unwrap(),
        );
        b.put(Tree::Outbox, old.clone(), legacy);
        store.commit(b).unwrap();
        let stored = store.get(Tree::Outbox, &fresh).unwrap().unwrap();
        assert!(!stored.windows(13).any(|w| w == b"EE38001010001"));

        let n = Notifier::open(&store, &keys, 0).unwrap();
        assert_eq!(n.stats().queued, 2);
        assert!(store.get(Tree::Outbox, &old).unwrap().is_none());
        let rows = store.scan(Tree::Outbox, &[], None, 10).unwrap();
        assert_eq!(rows.len(), 2);
        for (k, v) in &rows {
            assert_eq!(v[0], PRIVATE_ROW);
            assert!(!v.windows(13).any(|w| w == b"EE38001010001"));
            assert_eq!(key_subject(k), keys.outbox_subject("EE38001010001"));
            assert_eq!(open_row(&keys, k, v).unwrap().subject, "EE38001010001");
        }
        assert_eq!(n.retry().values().copied().collect::<Vec<_>>(), [9_000]);
        // An encrypted row moved to another key is refused.
        assert!(open_row(&keys, &old, &rows[0].1).is_err());
    }

    #[test]
    fn backoff_doubles_from_a_second_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(13), Duration::from_secs(3600));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(3600));
        let j = jitter(Duration::from_secs(4));
        assert!(j >= Duration::from_secs(4) && j <= Duration::from_secs(5));
    }

    #[test]
    fn webhook_urls_must_be_plain_https() {
        assert!(check_url("https://gw.example.gov/events").is_ok());
        assert!(check_url("https://127.0.0.1:8443/x?y=1").is_ok());
        for bad in [
            "http://gw.example.gov/",
            "https://",
            "https:///path",
            "https://user:pw@gw.example.gov/",
            "https://gw.example.gov/a b",
            "https://gw.example.gov/#frag",
            "ftp://x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://x/{}", "a".repeat(MAX_WEBHOOK_URL))).is_err());
    }

    #[test]
    fn rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn scheduled_keys_round_trip_and_sort_by_due_time() {
        let a = scheduled_key(5, &WebhookTarget::Agency("tax-office".into()), 9);
        let b = scheduled_key(6, &WebhookTarget::Gateway, 1);
        assert!(a < b);
        assert_eq!(
            parse_scheduled(&a),
            Some((WebhookTarget::Agency("tax-office".into()), 9))
        );
        assert_eq!(parse_scheduled(&b), Some((WebhookTarget::Gateway, 1)));
        assert_eq!(parse_scheduled(&a[..a.len() - 1]), None);
    }

    #[test]
    fn entries_a_citizen_is_told_of() {
        assert_eq!(
            citizen_event_type("access", "granted", false),
            Some("access.released")
        );
        assert_eq!(
            citizen_event_type("access", "partial", false),
            Some("access.partly_released")
        );
        assert_eq!(
            citizen_event_type("access", "refused", false),
            Some("access.refused")
        );
        assert_eq!(
            citizen_event_type("access", "granted", true),
            Some("access.break_glass")
        );
        assert_eq!(
            citizen_event_type("consent.request", "pending", false),
            Some("consent.requested")
        );
        assert_eq!(
            citizen_event_type("consent.request", "refused", false),
            None
        );
        assert_eq!(
            citizen_event_type("citizen.view_records", "done", false),
            None
        );
        assert_eq!(
            citizen_event_type("erasure", "done", false),
            Some("erasure.done")
        );
        assert_eq!(
            citizen_event_type(audit::DISCLOSE_ACTION, "done", false),
            Some("access.disclosed")
        );
    }

    #[test]
    fn an_access_event_names_no_field_and_no_text() {
        let mut d = EntryDraft::new(
            1_700_000_000_000,
            audit::Actor {
                kind: ActorKind::Agency,
                id: "tax-office".into(),
            },
            "access",
            "partial",
        );
        d.subject = Some(audit::SubjectTag([1; 32]));
        d.purpose = Some("tax assessment".into());
        d.requested = vec!["income".into(), "address".into()];
        d.released = vec!["address".into()];
        let events = events_of(&d, 42, "c-1");
        assert_eq!(events.len(), 1);
        let keys = VaultKeys::derive(&[3u8; 32]);
        let (key, row) = events.into_iter().next().unwrap().row(&keys, 42);
        assert_eq!(
            key,
            queue_key(&WebhookTarget::Gateway, 42, 42, keys.outbox_subject("c-1"))
        );
        assert_eq!(key_subject(&key), keys.outbox_subject("c-1"));
        assert_ne!(keys.outbox_subject("c-1"), keys.outbox_subject("c-2"));
        assert_ne!(
            keys.outbox_subject("c-1"),
            VaultKeys::derive(&[4u8; 32]).outbox_subject("c-1"),
            "keyed: not computable without the vault key"
        );
        assert_eq!(row.id, "msg_42");
        let v: Value = serde_json::from_str(&row.body).unwrap();
        assert_eq!(v["type"], "access.partly_released");
        assert_eq!(v["data"]["audit_index"], 42);
        assert_eq!(v["data"]["citizen"], "c-1");
        assert_eq!(v["data"]["agency"], "tax-office");
        assert!(!row.body.contains("income") && !row.body.contains("address"));
    }
}
