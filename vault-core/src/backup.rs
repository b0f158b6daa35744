//! Backups: a consistent copy of every tree of a store in one versioned file, and its
//! restore into a new data directory. Field values stay sealed under citizens' keys and
//! those under the sealed master key: a backup is no more readable than the store.
//!
//! Format v1: `b"CVBK" || version u8 (1) || for each tree: name_len u8 || name ||
//! count u64 BE || (key_len u32 BE || key || value_len u32 BE || value)*` and finally a
//! SHA-256 of everything before it.

use std::io::{Read, Write};

use crate::storage::{Storage, StorageError, Tree, WriteBatch};

const MAGIC: &[u8; 4] = b"CVBK";
const VERSION: u8 = 1;
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
}

fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), BackupError> {
    let n = u32::try_from(n).map_err(|_| BackupError::Invalid("item over 4 GiB"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Writes every tree of `store` to `out`. The caller keeps writers out meanwhile (the
/// engine holds its writer lock), so the copy is consistent.
pub fn write(store: &dyn Storage, mut out: impl Write) -> Result<(), BackupError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
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
    let digest = ctx.finish();
    out.write_all(digest.as_ref())?;
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

/// Checks a backup file and restores it into `store` (a newly created, empty store),
/// in batches; the format marker of the new store is kept.
pub fn restore(mut input: impl Read, store: &dyn Storage) -> Result<u64, BackupError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    if bytes.len() < MAGIC.len() + 1 + 32 {
        return Err(BackupError::Invalid("too short"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    let actual = ring::digest::digest(&ring::digest::SHA256, body);
    if !crate::ct::eq(actual.as_ref(), digest) {
        return Err(BackupError::Invalid(
            "checksum mismatch (damaged or truncated file)",
        ));
    }
    let mut buf = body;
    if take(&mut buf, 4)? != MAGIC {
        return Err(BackupError::Invalid("not a vault backup (bad magic)"));
    }
    if take(&mut buf, 1)?[0] != VERSION {
        return Err(BackupError::Invalid("unsupported backup version"));
    }
    let mut restored = 0u64;
    let mut batch = WriteBatch::new();
    // The init marker goes in last, so a restore cut short is refused as half-initialised.
    let mut marker: Option<Vec<u8>> = None;
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
            let k = take(&mut buf, kl)?;
            let vl = u32_at(&mut buf)?;
            let v = take(&mut buf, vl)?;
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
