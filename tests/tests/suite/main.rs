//! The end-to-end test binary: one binary, one module per concern.

mod repo_rules;
