//! Shared helpers for the end-to-end tests (starting real binaries, TLS clients).
