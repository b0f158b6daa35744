//! Prometheus counters: requests by status, decisions by outcome, engine call latency;
//! the audit log size, the checkpoints signed and commit latency come from the engine at
//! scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/// The server's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    status: [AtomicU64; 6],
    released: AtomicU64,
    partial: AtomicU64,
    refused: AtomicU64,
    call_count: AtomicU64,
    call_micros: AtomicU64,
    call_buckets: [AtomicU64; 10],
}

impl Metrics {
    /// Counts a response by status class (1xx..5xx).
    pub(crate) fn response(&self, status: u16) {
        let class = usize::from(status / 100).min(5);
        self.status[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an access decision.
    pub(crate) fn decision(&self, outcome: &str) {
        let c = match outcome {
            "released" => &self.released,
            "partial" => &self.partial,
            _ => &self.refused,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the latency of one engine call (evaluation + durable commit).
    pub(crate) fn engine_call(&self, d: Duration) {
        self.call_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.call_micros.fetch_add(micros, Ordering::Relaxed);
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if micros <= b * 1000 {
                self.call_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(
        &self,
        audit_size: Option<u64>,
        checkpoints_signed: Option<u64>,
        store: Option<&vault_core::StoreHealth>,
    ) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP vault_http_responses_total HTTP responses by status class."
        );
        let _ = writeln!(s, "# TYPE vault_http_responses_total counter");
        for class in 1..=5 {
            let _ = writeln!(
                s,
                "vault_http_responses_total{{class=\"{class}xx\"}} {}",
                self.status[class].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP vault_access_decisions_total Access decisions by outcome."
        );
        let _ = writeln!(s, "# TYPE vault_access_decisions_total counter");
        for (name, c) in [
            ("released", &self.released),
            ("partial", &self.partial),
            ("refused", &self.refused),
        ] {
            let _ = writeln!(
                s,
                "vault_access_decisions_total{{outcome=\"{name}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(s, "# HELP vault_audit_log_size Entries in the audit log.");
        let _ = writeln!(s, "# TYPE vault_audit_log_size gauge");
        let _ = writeln!(s, "vault_audit_log_size {}", audit_size.unwrap_or(0));
        let _ = writeln!(
            s,
            "# HELP vault_checkpoints_signed_total Checkpoints signed since the vault was unsealed."
        );
        let _ = writeln!(s, "# TYPE vault_checkpoints_signed_total counter");
        let _ = writeln!(
            s,
            "vault_checkpoints_signed_total {}",
            checkpoints_signed.unwrap_or(0)
        );
        let _ = writeln!(
            s,
            "# HELP vault_commit_seconds Engine operations (evaluation, audit append, durable group commit)."
        );
        let _ = writeln!(s, "# TYPE vault_commit_seconds histogram");
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                s,
                "vault_commit_seconds_bucket{{le=\"{}\"}} {}",
                *b as f64 / 1000.0,
                self.call_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.call_count.load(Ordering::Relaxed);
        let _ = writeln!(s, "vault_commit_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "vault_commit_seconds_sum {}",
            self.call_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "vault_commit_seconds_count {count}");
        if let Some(lease) = store.and_then(|h| h.lease.as_ref()) {
            let _ = writeln!(s, "# HELP vault_store_active 1 while this node holds the writer lease of its PostgreSQL store.");
            let _ = writeln!(s, "# TYPE vault_store_active gauge");
            let _ = writeln!(s, "vault_store_active {}", u8::from(lease.valid));
            let _ = writeln!(s, "# HELP vault_store_lease_epoch The writer lease's epoch (one more at every takeover).");
            let _ = writeln!(s, "# TYPE vault_store_lease_epoch gauge");
            let _ = writeln!(s, "vault_store_lease_epoch {}", lease.epoch);
        }
        if let Some(rtt) = store.and_then(|h| h.round_trip) {
            let _ = writeln!(s, "# HELP vault_store_round_trip_seconds The database's round trip for a trivial query, measured at this scrape.");
            let _ = writeln!(s, "# TYPE vault_store_round_trip_seconds gauge");
            let _ = writeln!(s, "vault_store_round_trip_seconds {}", rtt.as_secs_f64());
        }
        s
    }
}
