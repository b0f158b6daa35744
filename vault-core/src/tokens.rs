//! Bearer tokens for citizens and auditors: random 256-bit secrets handed out once, stored
//! only as their SHA-256 hash, expiring and revocable.

use std::fmt;

use policies::Timestamp;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::{RecordMac, Tampered};
use crate::codec::{self, CodecError};
use crate::storage::{Storage, StorageError, Tree, WriteBatch};

const FORMAT: u8 = 1;
const PREFIX: &str = "vt1_";

/// Who a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Role {
    /// A citizen, who can only ever see themselves.
    Citizen {
        /// The citizen's id.
        citizen: String,
    },
    /// An auditor, named for the log.
    Auditor {
        /// A label for the auditor (shown in the audit log).
        name: String,
    },
}

/// What is stored for a token (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id of the token (first 8 bytes of its hash, hex), for listing and revoking.
    pub id: String,
    /// Who it speaks for.
    pub role: Role,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A freshly issued token: shown once to its holder, never stored.
pub struct IssuedToken {
    secret: Zeroizing<String>,
    /// What is stored for it.
    pub record: TokenRecord,
}

impl IssuedToken {
    /// The bearer secret, to hand to its holder once.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuedToken({})", self.record.id)
    }
}

/// Why a token was not accepted, or could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Malformed, unknown, expired or revoked (one answer for all: no oracle).
    #[error("the bearer token is not valid: ask the vault operator for a new one")]
    Invalid,
    /// The system random generator failed.
    #[error("cannot draw a random token: the system random generator failed")]
    Random,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored token record is not readable.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A stored token record fails its authentication check.
    #[error(transparent)]
    Tampered(#[from] Tampered),
}

const KIND: &str = "token";

fn encode(mac: &RecordMac, key: &[u8], record: &TokenRecord) -> Result<Vec<u8>, TokenError> {
    Ok(mac.seal(Tree::Tokens, key, codec::encode(KIND, FORMAT, record)?))
}

fn decode(mac: &RecordMac, key: &[u8], stored: &[u8]) -> Result<TokenRecord, TokenError> {
    let bytes = mac.open(KIND, Tree::Tokens, key, stored)?;
    Ok(codec::decode(KIND, FORMAT, bytes)?)
}

fn hash(secret: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_secret(raw: &[u8; 32]) -> Zeroizing<String> {
    use base64::Engine as _;
    let mut s = Zeroizing::new(String::from(PREFIX));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(raw, &mut s);
    s
}

/// Creates a token for `role` valid until `expires_at`, staging its record into `batch`.
pub fn stage_issue(
    batch: &mut WriteBatch,
    mac: &RecordMac,
    role: Role,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<IssuedToken, TokenError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut raw[..])
        .map_err(|_| TokenError::Random)?;
    let secret = encode_secret(&raw);
    let key = hash(secret.as_bytes());
    let record = TokenRecord {
        id: hex(&key[..8]),
        role,
        issued_at: now,
        expires_at,
        revoked_at: None,
    };
    batch.put(Tree::Tokens, key.to_vec(), encode(mac, &key, &record)?);
    Ok(IssuedToken { secret, record })
}

/// The record of a presented token, if it is well-formed, known, unexpired and unrevoked;
/// a stored record whose MAC does not check is [`TokenError::Tampered`].
pub fn check(
    store: &dyn Storage,
    mac: &RecordMac,
    presented: &str,
    now: Timestamp,
) -> Result<TokenRecord, TokenError> {
    if !presented.starts_with(PREFIX) || presented.len() != PREFIX.len() + 43 {
        return Err(TokenError::Invalid);
    }
    // Looking up by the hash of the secret: the comparison that matters is the store's
    // exact-key match on a value an attacker cannot choose, so no timing oracle remains.
    let key = hash(presented.as_bytes());
    let Some(bytes) = store.get(Tree::Tokens, &key)? else {
        return Err(TokenError::Invalid);
    };
    let record = decode(mac, &key, &bytes)?;
    if record.revoked_at.is_some() || now >= record.expires_at {
        return Err(TokenError::Invalid);
    }
    Ok(record)
}

/// Every stored token record (for listing and revocation by id).
pub fn list(
    store: &dyn Storage,
    mac: &RecordMac,
) -> Result<Vec<([u8; 32], TokenRecord)>, TokenError> {
    let mut out = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = store.scan(Tree::Tokens, &start, None, 512)?;
        let Some((last, _)) = page.last() else { break };
        let mut next = last.clone();
        next.push(0);
        for (k, v) in page {
            let Ok(key) = <[u8; 32]>::try_from(k.as_slice()) else {
                return Err(Tampered { kind: KIND }.into());
            };
            out.push((key, decode(mac, &key, &v)?));
        }
        start = next;
    }
    Ok(out)
}

/// Stages the revocation of every token whose id starts with `id` (at least 8 hex digits),
/// returning the records revoked.
pub fn stage_revoke(
    store: &dyn Storage,
    mac: &RecordMac,
    batch: &mut WriteBatch,
    id: &str,
    now: Timestamp,
) -> Result<Vec<TokenRecord>, TokenError> {
    let mut revoked = Vec::new();
    if id.len() < 8 {
        return Ok(revoked);
    }
    for (key, mut record) in list(store, mac)? {
        if record.id.starts_with(id) && record.revoked_at.is_none() {
            record.revoked_at = Some(now);
            batch.put(Tree::Tokens, key.to_vec(), encode(mac, &key, &record)?);
            revoked.push(record);
        }
    }
    Ok(revoked)
}
