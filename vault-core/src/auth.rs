//! Keys that authenticate what the vault stores and that unlink an erased citizen, all
//! derived (HKDF-SHA256, one label each) from one random 256-bit vault key, `record_key`,
//! sealed under the current KEK in the engine configuration like the vault's other
//! secrets (re-sealed when the KEK rotates; `docs/keys.md`).
//!
//! - [`RecordMac`]: HMAC-SHA256 over (tree, key, value) appended to every token, consent
//!   artefact or request, enrolment and to the engine configuration, so that an offline
//!   edit (a changed, added or swapped record) is refused at use.
//! - the tombstone key: HMAC-SHA256 of an erased citizen's id, the only trace of it.
//! - the backup key: HMAC-SHA256 over a whole backup file.
//! - the notification root: HMAC-SHA256 of a generation number gives the seed of that
//!   generation's Ed25519 notification key (`engine/notify.rs`).
//! - the private-row key: HMAC-SHA256 of a row's tree and key gives that row's AES-256-GCM
//!   key, for stored rows that name a citizen beside what the log keeps pseudonymous (a
//!   covert access's pending disclosure, a queued notification), so that neither the store
//!   nor a backup tells who they are about ([`VaultKeys::seal_private`]).
//! - the outbox-subject key: HMAC-SHA256 of a citizen id, 8 bytes of it in a queued
//!   notification's key ([`VaultKeys::outbox_subject`]).

use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::keys::{fill_random, KeyError};
use crate::storage::Tree;

/// Length of every MAC and of the vault key.
pub const MAC_LEN: usize = 32;

const SALT: &[u8] = b"consent-vault record_key v1";
const LABEL_RECORDS: &[u8] = b"record-mac";
const LABEL_TOMBSTONE: &[u8] = b"tombstone";
const LABEL_BACKUP: &[u8] = b"backup-mac";
const LABEL_NOTIFY: &[u8] = b"notification-key";
const LABEL_PRIVATE: &[u8] = b"private-rows";
const LABEL_OUTBOX_SUBJECT: &[u8] = b"outbox-subject";

/// The first byte of a value [`VaultKeys::seal_private`] sealed (the rows that use it
/// were MAC-only before, with a first byte of 1: their format).
pub const PRIVATE_ROW: u8 = 2;

/// The first byte of a tombstone's key in `Tree::Keys` (no citizen id starts with it).
pub const TOMBSTONE_PREFIX: u8 = 0;

/// A stored record failed its authentication check.
#[derive(Debug, thiserror::Error)]
#[error("a stored {kind} record fails its authentication check: it was changed, added or moved outside the vault (an offline edit of the data directory or of a backup); stop the vault and restore the data directory from a trusted backup")]
pub struct Tampered {
    /// The record kind (`token`, `consent artefact`, `agency enrolment`, `engine config`).
    pub kind: &'static str,
}

fn derive(ikm: &[u8], label: &[u8]) -> hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(ikm);
    let info = [label];
    // Invariant: one HMAC-SHA256 key length (32 bytes) is far under HKDF's 255 * 32 limit.
    let okm = prk
        .expand(&info, hmac::HMAC_SHA256)
        .expect("HKDF output of one hash length");
    hmac::Key::from(okm)
}

/// The associated data of a private row: its tree's name, 0, its key's length and key.
fn private_ad(tree: Tree, key: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(tree.name().len() + 9 + key.len());
    ad.extend_from_slice(tree.name().as_bytes());
    ad.push(0);
    ad.extend_from_slice(&(key.len() as u64).to_be_bytes());
    ad.extend_from_slice(key);
    ad
}

/// A fresh random vault key.
pub fn generate_vault_key() -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut k = Zeroizing::new(vec![0u8; MAC_LEN]);
    fill_random(&mut k)?;
    Ok(k)
}

/// The keys derived from the vault key.
pub struct VaultKeys {
    records: RecordMac,
    tombstone: hmac::Key,
    backup: hmac::Key,
    notify: hmac::Key,
    private: hmac::Key,
    outbox_subject: hmac::Key,
}

impl std::fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultKeys(..)")
    }
}

impl VaultKeys {
    /// Derives every key from the vault key's bytes.
    pub fn derive(vault_key: &[u8]) -> Self {
        VaultKeys {
            records: RecordMac(derive(vault_key, LABEL_RECORDS)),
            tombstone: derive(vault_key, LABEL_TOMBSTONE),
            backup: derive(vault_key, LABEL_BACKUP),
            notify: derive(vault_key, LABEL_NOTIFY),
            private: derive(vault_key, LABEL_PRIVATE),
            outbox_subject: derive(vault_key, LABEL_OUTBOX_SUBJECT),
        }
    }

    /// The first 8 bytes of HMAC-SHA256(outbox-subject key, citizen id): in a queued
    /// notification's key, which events share a citizen, without naming them (an unkeyed
    /// hash of an id from a known, small space would be reversed by trying them all).
    pub fn outbox_subject(&self, citizen: &str) -> [u8; 8] {
        let tag = hmac::sign(&self.outbox_subject, citizen.as_bytes());
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag.as_ref()[..8]);
        out
    }

    /// The first 16 bytes of HMAC-SHA256(outbox-subject key, `"tag" || 0x00 || tag`): the
    /// key of the outbox row that names the citizen behind a log subject tag, so that the
    /// store does not hold the tag itself there (a citizen id is never 36 bytes with a 0x00
    /// in it, so the two uses of the key do not meet).
    pub fn outbox_tag(&self, tag: &[u8; 32]) -> [u8; 16] {
        let mut msg = Vec::with_capacity(36);
        msg.extend_from_slice(b"tag\0");
        msg.extend_from_slice(tag);
        let mac = hmac::sign(&self.outbox_subject, &msg);
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.as_ref()[..16]);
        out
    }

    /// `plain` encrypted and authenticated for `tree` and `key`: `PRIVATE_ROW || nonce (12)
    /// || AES-256-GCM(plain) || tag (16)`, the associated data binding it to its tree and
    /// key as the record MAC does. The AES key is the row's own, HMAC-SHA256(private-row
    /// key, associated data): one key seals only the few versions of one row, so random
    /// 96-bit nonces stay far from their bound of 2^32 messages per key however many rows
    /// the vault writes.
    pub fn seal_private(&self, tree: Tree, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; crate::keys::NONCE_LEN];
        fill_random(&mut nonce)?;
        let ad = private_ad(tree, key);
        let mut out = vec![PRIVATE_ROW];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&crate::keys::aead_seal(
            &self.row_key(&ad),
            &nonce,
            &ad,
            plain,
        ));
        Ok(out)
    }

    /// The AES-256-GCM key of the private row with associated data `ad`.
    fn row_key(&self, ad: &[u8]) -> Zeroizing<[u8; MAC_LEN]> {
        let tag = hmac::sign(&self.private, ad);
        let mut k = Zeroizing::new([0u8; MAC_LEN]);
        k.copy_from_slice(tag.as_ref());
        k
    }

    /// The plaintext of a value [`VaultKeys::seal_private`] stored in `tree` under `key`,
    /// once it authenticates.
    pub fn open_private(
        &self,
        kind: &'static str,
        tree: Tree,
        key: &[u8],
        stored: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Tampered> {
        let (nonce, sealed) = stored
            .strip_prefix(&[PRIVATE_ROW])
            .and_then(<[u8]>::split_first_chunk::<{ crate::keys::NONCE_LEN }>)
            .ok_or(Tampered { kind })?;
        let ad = private_ad(tree, key);
        crate::keys::aead_open(&self.row_key(&ad), nonce, &ad, sealed).ok_or(Tampered { kind })
    }

    /// The plaintext of a private row in either stored form, once it authenticates, and
    /// whether it is the earlier form: sealed by [`VaultKeys::seal_private`] (first byte
    /// [`PRIVATE_ROW`]), or written before private rows were encrypted, its body with the
    /// record MAC appended (the body's first byte is its own format byte, never
    /// [`PRIVATE_ROW`]). Callers rewrite rows of the earlier form encrypted at open.
    pub fn open_private_or_legacy(
        &self,
        kind: &'static str,
        tree: Tree,
        key: &[u8],
        stored: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, bool), Tampered> {
        if stored.first() == Some(&PRIVATE_ROW) {
            Ok((self.open_private(kind, tree, key, stored)?, false))
        } else {
            let body = self.records.open(kind, tree, key, stored)?;
            Ok((Zeroizing::new(body.to_vec()), true))
        }
    }

    /// The record MAC.
    pub fn records(&self) -> &RecordMac {
        &self.records
    }

    /// The key of a citizen's tombstone in `Tree::Keys`: [`TOMBSTONE_PREFIX`] followed by
    /// HMAC-SHA256(tombstone key, citizen id).
    pub fn tombstone_key(&self, citizen: &str) -> Vec<u8> {
        let tag = hmac::sign(&self.tombstone, citizen.as_bytes());
        let mut k = Vec::with_capacity(1 + MAC_LEN);
        k.push(TOMBSTONE_PREFIX);
        k.extend_from_slice(tag.as_ref());
        k
    }

    /// The key each generation of the notification signing key is derived from.
    pub fn notification_root(&self) -> hmac::Key {
        self.notify.clone()
    }

    /// The MAC of a backup's bytes.
    pub fn backup_mac(&self) -> hmac::Context {
        hmac::Context::with_key(&self.backup)
    }

    /// Checks a backup's MAC.
    pub fn verify_backup(&self, body: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.backup, body, mac).is_ok()
    }
}

/// Authenticates stored values: `value || HMAC-SHA256(key, tree || len(key) || key ||
/// value)`, so a value is valid only in its own tree under its own key.
pub struct RecordMac(hmac::Key);

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMac(..)")
    }
}

impl RecordMac {
    fn tag(&self, tree: Tree, key: &[u8], value: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(tree.name().as_bytes());
        ctx.update(&[0]);
        ctx.update(&(key.len() as u64).to_be_bytes());
        ctx.update(key);
        ctx.update(value);
        ctx.sign()
    }

    /// `value` with its MAC appended, to store in `tree` under `key`.
    pub fn seal(&self, tree: Tree, key: &[u8], mut value: Vec<u8>) -> Vec<u8> {
        let tag = self.tag(tree, key, &value);
        value.extend_from_slice(tag.as_ref());
        value
    }

    /// The value stored in `tree` under `key`, once its MAC checks.
    pub fn open<'a>(
        &self,
        kind: &'static str,
        tree: Tree,
        key: &[u8],
        stored: &'a [u8],
    ) -> Result<&'a [u8], Tampered> {
        let split = stored.len().checked_sub(MAC_LEN).ok_or(Tampered { kind })?;
        let (value, mac) = stored.split_at(split);
        if crate::ct::eq(self.tag(tree, key, value).as_ref(), mac) {
            Ok(value)
        } else {
            Err(Tampered { kind })
        }
    }

    /// The value of a stored record without checking its MAC (for reading only what a
    /// check must not depend on, such as which KEK seals a secret).
    pub fn strip_unchecked(stored: &[u8]) -> &[u8] {
        &stored[..stored.len().saturating_sub(MAC_LEN)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_under_its_own_tree_and_key() {
        let keys = VaultKeys::derive(&[7u8; 32]);
        let mac = keys.records();
        let stored = mac.seal(Tree::Tokens, b"k1", b"value".to_vec());
        assert_eq!(
            mac.open("token", Tree::Tokens, b"k1", &stored).unwrap(),
            b"value"
        );
        assert!(mac.open("token", Tree::Tokens, b"k2", &stored).is_err());
        assert!(mac.open("token", Tree::Agencies, b"k1", &stored).is_err());
        let mut edited = stored.clone();
        edited[0] ^= 1;
        assert!(mac.open("token", Tree::Tokens, b"k1", &edited).is_err());
        assert!(mac.open("token", Tree::Tokens, b"k1", b"short").is_err());
        let other = VaultKeys::derive(&[8u8; 32]);
        assert!(other
            .records()
            .open("token", Tree::Tokens, b"k1", &stored)
            .is_err());
    }

    #[test]
    fn a_private_row_hides_its_value_and_opens_only_under_its_own_tree_and_key() {
        let keys = VaultKeys::derive(&[7u8; 32]);
        let plain = b"EE38001010001 under a covert access";
        let stored = keys.seal_private(Tree::Meta, b"k1", plain).unwrap();
        assert!(!stored.windows(13).any(|w| w == b"EE38001010001"));
        assert_ne!(stored, keys.seal_private(Tree::Meta, b"k1", plain).unwrap());
        assert_eq!(
            &keys
                .open_private("row", Tree::Meta, b"k1", &stored)
                .unwrap()[..],
            plain
        );
        assert!(keys
            .open_private("row", Tree::Meta, b"k2", &stored)
            .is_err());
        assert!(keys
            .open_private("row", Tree::Outbox, b"k1", &stored)
            .is_err());
        for i in 0..stored.len() {
            let mut edited = stored.clone();
            edited[i] ^= 1;
            assert!(keys
                .open_private("row", Tree::Meta, b"k1", &edited)
                .is_err());
        }
        assert!(keys
            .open_private("row", Tree::Meta, b"k1", &stored[..20])
            .is_err());
        let other = VaultKeys::derive(&[8u8; 32]);
        assert!(other
            .open_private("row", Tree::Meta, b"k1", &stored)
            .is_err());
    }

    #[test]
    fn tombstone_keys_depend_on_the_key_and_the_id() {
        let a = VaultKeys::derive(&[7u8; 32]);
        let b = VaultKeys::derive(&[8u8; 32]);
        assert_eq!(a.tombstone_key("c-1"), a.tombstone_key("c-1"));
        assert_ne!(a.tombstone_key("c-1"), a.tombstone_key("c-2"));
        assert_ne!(a.tombstone_key("c-1"), b.tombstone_key("c-1"));
        assert_eq!(a.tombstone_key("c-1")[0], TOMBSTONE_PREFIX);
        assert_eq!(a.tombstone_key("c-1").len(), 1 + MAC_LEN);
    }
}
