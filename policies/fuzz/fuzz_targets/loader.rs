//! Fuzz target: the policy loader must never panic, whatever the files hold, and a set
//! it accepts must be internally consistent.
//!
//! Input: up to three files separated by a 0xFF byte (never valid UTF-8, so never inside
//! a file's text).

#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::PolicySet;

fuzz_target!(|data: &[u8]| {
    let files: Vec<(String, String)> = data
        .split(|b| *b == 0xFF)
        .take(3)
        .enumerate()
        .map(|(i, bytes)| {
            (
                format!("f{i}.toml"),
                String::from_utf8_lossy(bytes).into_owned(),
            )
        })
        .collect();
    match PolicySet::from_sources(&files) {
        Ok(set) => {
            // Every reference resolves: what the evaluation relies on.
            for rule in set.statutory_rules() {
                let agency = set.agency(&rule.agency).expect("rule's agency exists");
                assert!(agency.may_claim(&rule.purpose));
                assert!(rule.fields.iter().all(|f| set.field(f).is_some()));
            }
            for rule in set.break_glass_rules() {
                let agency = set.agency(&rule.agency).expect("rule's agency exists");
                assert!(agency.may_claim(&rule.purpose));
                assert!(rule.fields.iter().all(|f| set.field(f).is_some()));
            }
            for agency in set.agencies() {
                assert!(agency.purposes.iter().all(|p| set.purpose(p).is_some()));
                assert!(agency.writes.iter().all(|c| set.category(c).is_some()));
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors.errors() {
                assert!(!e.to_string().is_empty());
                assert!(files.iter().any(|(n, _)| *n == e.file) || e.line == 0);
            }
        }
    }
});
