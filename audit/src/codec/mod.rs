//! The canonical CBOR codec of entries (the only module that knows `serde_cbor`).
//!
//! An entry (format version 4) is a CBOR array of its 21 fields in a fixed order (the
//! actor and each withheld item are arrays of 2), `null` for an absent value, definite
//! lengths and shortest integer forms; `docs/audit-log.md` lists the items. Version 4 is
//! version 3 with the justification (item 18) as a 32-byte commitment instead of its text
//! and one more item, `official` (20), the commitment to the official a caller named
//! (`crate::Commitment`): no caller-supplied free text is in a leaf. Version 3 is still
//! read: logs hold it from before the upgrade. The leaf bytes
//! are what every verifier hashes, so each byte saved is hashing saved on every audit:
//! version 2 was the same fields as a map with the integer keys 0..=19, always all of them
//! and in ascending order, so its keys carried no information (24 bytes of a typical
//! access entry). Version 2 is still read: logs hold it from before the upgrade.
//!
//! Encoding goes through `serde_cbor` (sequences of the fields, `AsArray`) and writes
//! version 4 only.
//! Decoding is one hand-written strict reader of the three forms (`Reader::entry`, with the
//! form as const parameters: in the array forms there are no key bytes to check): each head must
//! use the shortest form, lengths are definite, in version 2 each key must be the next one
//! in order, and no byte may follow the entry. It accepts exactly the bytes an encoder of
//! the entry's version produces for a valid entry (a map carrying `v` = 3 or an array
//! carrying `v` = 2 is refused), so one entry has exactly one encoding per version, without
//! re-encoding anything (the previous decode, re-encode and compare path is kept in the
//! tests as the reference model the reader is checked against, with the derived map form
//! as the version-2 encoder).
//!
//! Files by job: `encode.rs` (the wire structs and the encoder), `rules.rs` (the field
//! rules, shared by the encoder and the reader), `reader.rs` (the strict reader, its
//! borrowed [`reader::View`] and the verifier's [`decode_links`]), `decode.rs` (the owning
//! [`decode_entry`]); `tests/` checks them against the reference model and against the
//! entry vectors of `testdata/entries/`.

mod decode;
mod encode;
mod reader;
mod rules;
#[cfg(test)]
mod tests;

pub(crate) use decode::{decode_entry, decode_entry_into};
pub(crate) use encode::encode_entry;
pub(crate) use reader::{decode_links, EntryLinks};

use crate::entry::EntryError;

/// The entry format version that is a map with integer keys (still read, never written).
const MAP_VERSION: u64 = 2;

/// The refusal of an entry over [`crate::MAX_ENTRY_LEN`] bytes.
fn too_large() -> EntryError {
    EntryError::Invalid {
        field: "entry",
        rule: "encoded entry larger than 1 MiB",
    }
}

/// The refusal of bytes that are not a canonical entry.
fn malformed(reason: impl Into<String>) -> EntryError {
    EntryError::Malformed {
        reason: reason.into(),
    }
}
