//! Integration tests of the `policies` crate: the example policy set, the malformed-file
//! table, boundary cases, and the evaluation against a reference model.

mod bad_files;
mod boundaries;
mod examples;
mod reference;
