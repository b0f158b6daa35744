//! Integration tests of the audit crate: published vectors, the log's append and
//! checkpoint rules, the tamper suite over export files, and logs of entry format
//! version 2 (written before version 3) alone and continued in version 3.

mod common;
mod log;
mod notes;
mod tamper;
mod versions;
