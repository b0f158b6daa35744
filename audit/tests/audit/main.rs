//! Integration tests of the audit crate: published vectors, the log's append and
//! checkpoint rules, and the tamper suite over export files.

mod common;
mod log;
mod notes;
mod tamper;
