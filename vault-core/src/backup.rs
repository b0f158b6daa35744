//! Backups: a consistent copy of every tree of a store in one versioned file, and its
//! restore into a new data directory. Field values stay sealed under citizens' keys and
//! those under the sealed master key: a backup is no more readable than the store. The
//! file is authenticated: whoever edits it without the vault's keys cannot make it pass.
//!
//! Format v2: `b"CVBK" || version u8 (2) || for each tree: name_len u8 || name ||
//! count u64 BE || (key_len u32 BE || key || value_len u32 BE || value)*` and finally an
//! HMAC-SHA256 of everything before it under the backup key
//! ([`crate::auth::VaultKeys`], derived from the vault key sealed under the KEK in the
//! engine configuration). A restore parses the file, unseals the master keys it holds
//! with the passphrase, opens the vault key, checks the MAC, and only then writes.
//! Format v1 (a plain SHA-256 in place of the MAC) is refused: it is not authenticated.

use std::io::{Read, Write};
use std::ops::Range;

use crate::auth::{VaultKeys, MAC_LEN};
use crate::storage::{Storage, StorageError, Tree, WriteBatch};

const MAGIC: &[u8; 4] = b"CVBK";
const VERSION: u8 = 2;
const UNAUTHENTICATED_VERSION: u8 = 1;
/// Writes per commit while restoring.
const RESTORE_BATCH: usize = 2048;

/// A backup could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading or writing the file failed.
    #[error("backup file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a backup this program reads, or it was damaged.
    #[error("not a valid backup: {0}")]
    Invalid(&'static str),
    /// The file does not authenticate under the keys the passphrase opens.
    #[error("the backup is not authentic: {0}; nothing was restored. Restore an unmodified backup (check its copy against the original), with the passphrase of the vault it was taken from")]
    NotAuthentic(String),
}

fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), BackupError> {
    let n = u32::try_from(n).map_err(|_| BackupError::Invalid("item over 4 GiB"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Writes every tree of `store` to `out`, authenticated under `keys`. The caller keeps
/// writers out meanwhile (the engine holds its writer lock), so the copy is consistent.
pub fn write(
    store: &dyn Storage,
    keys: &VaultKeys,
    mut out: impl Write,
) -> Result<(), BackupError> {
    let mut ctx = keys.backup_mac();
    let mut emit = |bytes: &[u8]| -> Result<(), BackupError> {
        ctx.update(bytes);
        out.write_all(bytes)?;
        Ok(())
    };
    emit(MAGIC)?;
    emit(&[VERSION])?;
    for tree in Tree::ALL {
        let entries = crate::storage::scan_all(store, tree).collect::<Result<Vec<_>, _>>()?;
        let name = tree.name().as_bytes();
        let mut head =
            vec![u8::try_from(name.len()).map_err(|_| BackupError::Invalid("tree name"))?];
        head.extend_from_slice(name);
        head.extend_from_slice(&(entries.len() as u64).to_be_bytes());
        emit(&head)?;
        for (k, v) in entries {
            let mut item = Vec::with_capacity(8 + k.len() + v.len());
            put_u32(&mut item, k.len())?;
            item.extend_from_slice(&k);
            put_u32(&mut item, v.len())?;
            item.extend_from_slice(&v);
            emit(&item)?;
        }
    }
    let mac = ctx.sign();
    out.write_all(mac.as_ref())?;
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], BackupError> {
    if buf.len() < n {
        return Err(BackupError::Invalid("truncated"));
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

fn u32_at(buf: &mut &[u8]) -> Result<usize, BackupError> {
    let b = take(buf, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// A backup file read whole and parsed, not yet authenticated.
pub struct ParsedBackup {
    bytes: Vec<u8>,
    /// (tree, key range, value range) of every entry, in file order.
    entries: Vec<(Tree, Range<usize>, Range<usize>)>,
}

impl std::fmt::Debug for ParsedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedBackup")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// Reads and parses a backup file (structure only: [`ParsedBackup::authenticate`] checks
/// its MAC).
pub fn parse(mut input: impl Read) -> Result<ParsedBackup, BackupError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    if bytes.len() < MAGIC.len() + 1 + MAC_LEN {
        return Err(BackupError::Invalid("too short"));
    }
    let body_len = bytes.len() - MAC_LEN;
    let mut buf = &bytes[..body_len];
    let at = |buf: &[u8]| body_len - buf.len();
    if take(&mut buf, 4)? != MAGIC {
        return Err(BackupError::Invalid("not a vault backup (bad magic)"));
    }
    match take(&mut buf, 1)?[0] {
        VERSION => {}
        UNAUTHENTICATED_VERSION => {
            return Err(BackupError::Invalid(
                "backup format 1 is not authenticated and is no longer restored: take a new backup with this version (`vault-cli backup`)",
            ))
        }
        _ => return Err(BackupError::Invalid("unsupported backup version")),
    }
    let mut entries = Vec::new();
    while !buf.is_empty() {
        let name_len = usize::from(take(&mut buf, 1)?[0]);
        let name = take(&mut buf, name_len)?;
        let tree = Tree::ALL
            .into_iter()
            .find(|t| t.name().as_bytes() == name)
            .ok_or(BackupError::Invalid("unknown tree"))?;
        let c = take(&mut buf, 8)?;
        let count = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        for _ in 0..count {
            let kl = u32_at(&mut buf)?;
            let k_start = at(buf);
            take(&mut buf, kl)?;
            let vl = u32_at(&mut buf)?;
            let v_start = at(buf);
            take(&mut buf, vl)?;
            entries.push((tree, k_start..k_start + kl, v_start..v_start + vl));
        }
    }
    Ok(ParsedBackup { bytes, entries })
}

impl ParsedBackup {
    /// The entries of the backup's `Meta` tree (unauthenticated until
    /// [`ParsedBackup::authenticate`]).
    pub fn meta(&self) -> Vec<(&[u8], &[u8])> {
        self.entries
            .iter()
            .filter(|(t, _, _)| *t == Tree::Meta)
            .map(|(_, k, v)| (&self.bytes[k.clone()], &self.bytes[v.clone()]))
            .collect()
    }

    /// Checks the file's MAC under `keys`.
    pub fn authenticate(self, keys: &VaultKeys) -> Result<AuthenticBackup, BackupError> {
        let (body, mac) = self.bytes.split_at(self.bytes.len() - MAC_LEN);
        if !keys.verify_backup(body, mac) {
            return Err(BackupError::NotAuthentic(
                "its MAC does not match its content (the file was modified, truncated or damaged)"
                    .to_owned(),
            ));
        }
        Ok(AuthenticBackup(self))
    }
}

/// A backup whose MAC checked.
#[derive(Debug)]
pub struct AuthenticBackup(ParsedBackup);

impl AuthenticBackup {
    /// Restores the backup into `store` (a newly created, empty store), in batches; the
    /// format marker of the new store is kept. Returns the entries written.
    pub fn restore(self, store: &dyn Storage) -> Result<u64, BackupError> {
        let ParsedBackup { bytes, entries } = self.0;
        let mut restored = 0u64;
        let mut batch = WriteBatch::new();
        // The init marker goes in last, so a restore cut short is refused as
        // half-initialised.
        let mut marker: Option<Vec<u8>> = None;
        for (tree, k, v) in entries {
            let (k, v) = (&bytes[k], &bytes[v]);
            if tree == Tree::Meta && k == crate::storage::sled::FORMAT_KEY {
                continue;
            }
            if tree == Tree::Meta && k == crate::datadir::INIT_KEY {
                marker = Some(v.to_vec());
                continue;
            }
            batch.put(tree, k.to_vec(), v.to_vec());
            restored += 1;
            if batch.len() >= RESTORE_BATCH {
                store.commit(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            store.commit(batch)?;
        }
        let marker = marker.ok_or(BackupError::Invalid(
            "no init marker: the backup is of a half-initialised vault",
        ))?;
        let mut last = WriteBatch::new();
        last.put(Tree::Meta, crate::datadir::INIT_KEY, marker);
        store.commit(last)?;
        Ok(restored + 1)
    }
}
