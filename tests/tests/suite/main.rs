//! The end-to-end test binary: one binary, one module per concern.

mod api;
mod audit_trail;
mod backup;
mod cli;
mod connections;
mod crash;
mod dev_mode;
mod erasure;
mod flows;
mod openapi;
mod operator_audit;
mod repo_rules;
mod revocation;
mod seal;
mod security;
mod web;
