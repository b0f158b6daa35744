//! The sled backend's write-ahead log (store format 2, `docs/storage.md`).
//!
//! A durability step writes its group of batches as **one record** at the end of the log
//! file `vault.wal` and runs `fdatasync` on it: that is the commit. sled receives the same
//! writes afterwards as plain inserts (no sled transaction and no `Db::flush` on the commit
//! path; why: `docs/storage.md`, "The write-ahead log"). When the log is full, a checkpoint makes sled durable (`Db::flush` + `fsync` of `db`),
//! records in sled where the log starts again, empties the file (no byte of a checkpointed
//! record stays in it), and the next record is written at offset 0.
//! At open, every record from that start on is replayed into sled, in order, then
//! checkpointed.
//!
//! Record layout (integers big-endian):
//!
//! | bytes | content |
//! | --- | --- |
//! | 4 | magic `VWAL` |
//! | 4 | `n` = payload length, 1..=[`MAX_PAYLOAD`] |
//! | 8 | sequence number: the log's start for the first record at offset 0, then +1 each |
//! | 4 | CRC-32 (IEEE) of the 16 bytes above and the payload |
//! | n | the writes: per write, op (`1` put, `2` delete), tree (index in [`Tree::ALL`]), key length (u16), key, and for a put the value length (u32) and value |
//!
//! Replay stops at the first record that is not exactly the expected one (wrong magic,
//! length out of range or past the end of the file, wrong sequence number, bad CRC): that
//! is the end of the log. A record is written only after the one before it was synced, so
//! a torn record can only be the last one, and it was never acknowledged. Sequence numbers
//! only grow, across checkpoints too, so a record left over from an earlier pass through
//! the file (a crash between a checkpoint and the truncation: always a smaller number) is
//! never taken for the next one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::storage::{Tree, Write};

/// The log's file name inside the store directory.
pub const WAL_FILE: &str = "vault.wal";

/// Key, in sled's default tree (not one of the vault's [`Tree`]s, so never backed up or
/// restored), of the sequence number of the record at offset 0 (u64 big-endian).
pub(super) const WAL_START_KEY: &[u8] = b"vault.wal.start";

/// The log is checkpointed and restarted at offset 0 before a record would end past this.
pub const WAL_CAPACITY: u64 = 32 << 20;

/// The largest payload of one record. A group of several batches is at most 256 KiB of
/// keys and values; a single batch can be larger (a restore writes 2,048 entries of up to
/// 8.5 KiB at a time), and `apply` refuses one whose record would exceed this
/// ([`encoded_len`]), so a durability step never meets a record it cannot write.
pub const MAX_PAYLOAD: usize = 64 << 20;

const MAGIC: &[u8; 4] = b"VWAL";
const HEADER_LEN: usize = 20;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One write as the log holds it: tree, key, and the value (`None`: delete).
pub(super) type LoggedWrite<'a> = (Tree, &'a [u8], Option<&'a [u8]>);

/// The log file and where the next record goes.
pub(super) struct Wal {
    file: File,
    /// Offset of the next record.
    offset: u64,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Reused buffer for the record being written.
    buf: Vec<u8>,
    /// Checkpoint before a record would end past this offset.
    capacity: u64,
}

/// Why the log file cannot be read at open.
#[derive(Debug, thiserror::Error)]
pub(super) enum WalError {
    #[error("cannot read the write-ahead log `{WAL_FILE}`: {0}")]
    Io(#[from] std::io::Error),
    #[error("the write-ahead log `{WAL_FILE}` is larger than any log this program writes ({0} bytes): it is not a vault log")]
    TooLarge(u64),
    #[error("record {0} of the write-ahead log `{WAL_FILE}` passes its checksum but does not parse: the log is damaged")]
    Damaged(u64),
}

impl Wal {
    /// Creates an empty log file (refusing an existing one) and syncs it; [`Wal::at`] makes
    /// it a log.
    pub(super) fn create(dir: &Path) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(WAL_FILE))?;
        file.sync_all()?;
        Ok(file)
    }

    /// Opens the existing log file (read and write); [`Wal::at`] makes it a log.
    pub(super) fn open(dir: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(WAL_FILE))
    }

    /// A log that writes its next record at offset 0 with sequence number `next_seq`,
    /// checkpointed before it would grow past `capacity` (default [`WAL_CAPACITY`]).
    pub(super) fn at(file: File, next_seq: u64, capacity: Option<u64>) -> Self {
        Self {
            file,
            offset: 0,
            next_seq,
            buf: Vec::new(),
            capacity: capacity.unwrap_or(WAL_CAPACITY).min(WAL_CAPACITY),
        }
    }

    /// The log file.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// After replaying records up to (not including) `end`: the next record is `end`, and
    /// a checkpoint (which restarts the log at offset 0) must follow before it is written.
    pub(super) fn replayed_to(&mut self, end: u64) {
        self.next_seq = end;
    }

    /// The sequence number the next record gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// True when a record of `payload_len` bytes would end past the capacity (the caller
    /// checkpoints and calls [`Wal::restart`] first). An empty log always takes it.
    pub(super) fn is_full_for(&self, payload_len: usize) -> bool {
        self.offset > 0 && self.offset + (HEADER_LEN + payload_len) as u64 > self.capacity
    }

    /// After a checkpoint that recorded [`Wal::next_seq`] as the start: empties the file
    /// (so no byte of a checkpointed record, such as an erased citizen's id, stays in it)
    /// and writes from offset 0.
    pub(super) fn restart(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.offset = 0;
        Ok(())
    }

    /// Encodes `writes` as the next record into the reused buffer and returns its payload
    /// length (callers check [`Wal::is_full_for`] with it before [`Wal::write_encoded`]).
    pub(super) fn encode<'a>(&mut self, writes: impl Iterator<Item = LoggedWrite<'a>>) -> usize {
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&[0u8; HEADER_LEN]);
        for (tree, key, value) in writes {
            buf.push(if value.is_some() { OP_PUT } else { OP_DELETE });
            buf.push(tree.index() as u8);
            // Keys are at most MAX_KEY_LEN (512) and values MAX_VALUE_LEN (8 KiB): `apply`
            // refuses larger ones before they are queued.
            buf.extend_from_slice(&(key.len() as u16).to_be_bytes());
            buf.extend_from_slice(key);
            if let Some(value) = value {
                buf.extend_from_slice(&(value.len() as u32).to_be_bytes());
                buf.extend_from_slice(value);
            }
        }
        buf.len() - HEADER_LEN
    }

    /// Writes the encoded record at the current offset and syncs the file's data
    /// (`fdatasync`). The record is durable when this returns `Ok`.
    pub(super) fn write_encoded(&mut self) -> std::io::Result<()> {
        let payload_len = self.buf.len() - HEADER_LEN;
        let len = u32::try_from(payload_len)
            .ok()
            .filter(|l| (1..=MAX_PAYLOAD as u32).contains(l))
            .ok_or_else(|| std::io::Error::other("write-ahead log record size out of range"))?;
        self.buf[..4].copy_from_slice(MAGIC);
        self.buf[4..8].copy_from_slice(&len.to_be_bytes());
        self.buf[8..16].copy_from_slice(&self.next_seq.to_be_bytes());
        let crc = record_crc(&self.buf[..16], &self.buf[HEADER_LEN..]);
        self.buf[16..20].copy_from_slice(&crc.to_be_bytes());
        self.file.write_all_at(&self.buf, self.offset)?;
        self.file.sync_data()?;
        self.offset += self.buf.len() as u64;
        self.next_seq += 1;
        Ok(())
    }
}

/// The bytes `write` takes in a record's payload.
pub(super) fn encoded_len(write: &Write) -> usize {
    let (_, key, value) = write.parts();
    1 + 1 + 2 + key.len() + value.map_or(0, |v| 4 + v.len())
}

fn record_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// The records of a log file from offset 0, starting at sequence number `start`, parsed
/// whole before anything is applied: their writes in order, and the sequence number after
/// the last one. A record whose CRC matches but whose payload does not parse is damage
/// ([`WalError::Damaged`]), not the end of the log.
pub(super) fn read_records(file: &File, start: u64) -> Result<(Vec<Vec<Write>>, u64), WalError> {
    let len = file.metadata()?.len();
    if len > WAL_CAPACITY + (HEADER_LEN + MAX_PAYLOAD) as u64 {
        return Err(WalError::TooLarge(len));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    let mut rest: &[u8] = &bytes;
    let mut seq = start;
    let mut records = Vec::new();
    while let Some(payload) = next_record(&mut rest, seq) {
        records.push(parse_payload(payload).ok_or(WalError::Damaged(seq))?);
        seq += 1;
    }
    Ok((records, seq))
}

/// The payload of the record at the start of `rest` if it is exactly record `seq`, and
/// advances `rest` past it.
fn next_record<'a>(rest: &mut &'a [u8], seq: u64) -> Option<&'a [u8]> {
    let (header, after) = rest.split_first_chunk::<HEADER_LEN>()?;
    if &header[..4] != MAGIC {
        return None;
    }
    let len = u32::from_be_bytes(header[4..8].try_into().ok()?) as usize;
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    if u64::from_be_bytes(header[8..16].try_into().ok()?) != seq {
        return None;
    }
    let payload = after.get(..len)?;
    let crc = u32::from_be_bytes(header[16..20].try_into().ok()?);
    if record_crc(&header[..16], payload) != crc {
        return None;
    }
    *rest = &after[len..];
    Some(payload)
}

fn parse_payload(mut p: &[u8]) -> Option<Vec<Write>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = p.split_at_checked(n)?;
        *p = rest;
        Some(head)
    }
    let mut writes = Vec::new();
    while !p.is_empty() {
        let op = take(&mut p, 1)?[0];
        let tree = *Tree::ALL.get(usize::from(take(&mut p, 1)?[0]))?;
        let klen = u16::from_be_bytes(take(&mut p, 2)?.try_into().ok()?);
        let key = take(&mut p, usize::from(klen))?.to_vec();
        writes.push(match op {
            OP_PUT => {
                let vlen = u32::from_be_bytes(take(&mut p, 4)?.try_into().ok()?);
                let value = take(&mut p, usize::try_from(vlen).ok()?)?.to_vec();
                Write::Put { tree, key, value }
            }
            OP_DELETE => Write::Delete { tree, key },
            _ => return None,
        });
    }
    Some(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: Tree, k: &[u8], v: &[u8]) -> Write {
        Write::Put {
            tree,
            key: k.to_vec(),
            value: v.to_vec(),
        }
    }

    fn append(wal: &mut Wal, writes: &[Write]) {
        wal.encode(writes.iter().map(Write::parts));
        wal.write_encoded().expect("write");
    }

    fn read_all(dir: &Path, start: u64) -> (Vec<Vec<Write>>, u64) {
        read_records(&Wal::open(dir).expect("open"), start).expect("read")
    }

    #[test]
    fn records_come_back_in_order_and_a_restart_hides_the_old_ones() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut wal = Wal::at(Wal::create(tmp.path()).expect("create"), 7, None);
        let a = vec![put(Tree::Records, b"k1", b"v1"), put(Tree::Meta, b"m", b"")];
        let b = vec![Write::Delete {
            tree: Tree::Records,
            key: b"k1".to_vec(),
        }];
        append(&mut wal, &a);
        append(&mut wal, &b);
        assert_eq!(read_all(tmp.path(), 7), (vec![a.clone(), b.clone()], 9));
        // Another start: the first record is not the expected one, nothing is replayed.
        assert_eq!(read_all(tmp.path(), 9), (vec![], 9));
        // After a checkpoint the file is emptied and the log restarts at 0 with the next
        // number (an old record left by a crash before the truncation has a smaller
        // number, never taken for seq 10).
        wal.restart().expect("restart");
        assert_eq!(
            std::fs::metadata(tmp.path().join(WAL_FILE))
                .expect("meta")
                .len(),
            0
        );
        let c = vec![put(Tree::Keys, b"x", b"short")];
        append(&mut wal, &c);
        assert_eq!(read_all(tmp.path(), 9), (vec![c], 10));
    }

    #[test]
    fn a_torn_or_altered_last_record_ends_the_log() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut wal = Wal::at(Wal::create(tmp.path()).expect("create"), 1, None);
        let a = vec![put(Tree::Records, b"k1", b"value one")];
        let b = vec![put(Tree::Records, b"k2", b"value two")];
        append(&mut wal, &a);
        let first_end = wal.offset;
        append(&mut wal, &b);
        let path = tmp.path().join(WAL_FILE);
        let full = std::fs::read(&path).expect("read");
        // Every truncation inside the second record, and every single-byte change in it,
        // leaves exactly the first record.
        for cut in first_end as usize..full.len() {
            std::fs::write(&path, &full[..cut]).expect("write");
            assert_eq!(read_all(tmp.path(), 1), (vec![a.clone()], 2), "cut {cut}");
        }
        for at in first_end as usize..full.len() {
            let mut bad = full.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).expect("write");
            assert_eq!(read_all(tmp.path(), 1), (vec![a.clone()], 2), "byte {at}");
        }
    }

    #[test]
    fn encoded_len_is_what_a_record_payload_takes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut wal = Wal::at(Wal::create(tmp.path()).expect("create"), 1, None);
        let writes = [
            put(Tree::Records, b"key", &[7u8; 300]),
            Write::Delete {
                tree: Tree::Meta,
                key: b"gone".to_vec(),
            },
            put(Tree::AuditLeaves, &[], &[]),
        ];
        let len = wal.encode(writes.iter().map(Write::parts));
        assert_eq!(len, writes.iter().map(encoded_len).sum::<usize>());
    }

    #[test]
    fn a_full_log_asks_for_a_checkpoint_and_an_empty_one_takes_any_record() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut wal = Wal::at(Wal::create(tmp.path()).expect("create"), 1, None);
        assert!(!wal.is_full_for(MAX_PAYLOAD));
        wal.offset = WAL_CAPACITY - 100;
        assert!(!wal.is_full_for(100 - HEADER_LEN));
        assert!(wal.is_full_for(101 - HEADER_LEN));
        wal.restart().expect("restart");
        assert!(!wal.is_full_for(101 - HEADER_LEN));
    }
}
