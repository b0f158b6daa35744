//! Request quotas: token buckets per agency, per agency for consent requests, and per
//! bearer token for citizens and auditors. Only authenticated callers get a bucket, and
//! idle buckets (refilled to their burst, so the same as no bucket) are evicted, so the
//! memory they take follows the callers active in the last few seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::StatusCode;

use crate::error::ApiError;

/// Buckets kept before the first sweep of idle ones.
const MIN_SWEEP: usize = 1024;

/// Requests per second of each kind of caller (each with bursts of twice that).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rates {
    /// Each agency, every route.
    pub(crate) agency: f64,
    /// Each agency, consent requests.
    pub(crate) consent_request: f64,
    /// Each citizen token.
    pub(crate) citizen: f64,
    /// Each auditor token.
    pub(crate) auditor: f64,
}

/// Which quota a request is counted against.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Quota {
    Agency,
    ConsentRequest,
    Citizen,
    Auditor,
}

/// The server's quotas.
pub(crate) struct Quotas {
    agency: RateLimiter,
    consent_request: RateLimiter,
    citizen: RateLimiter,
    auditor: RateLimiter,
}

impl Quotas {
    pub(crate) fn new(rates: Rates) -> Self {
        Quotas {
            agency: RateLimiter::new(rates.agency),
            consent_request: RateLimiter::new(rates.consent_request),
            citizen: RateLimiter::new(rates.citizen),
            auditor: RateLimiter::new(rates.auditor),
        }
    }

    /// Counts one request of `key` (an agency id or a token id) against `quota`; over it,
    /// a 429 answer with its `Retry-After`.
    pub(crate) fn check(&self, quota: Quota, key: &str) -> Result<(), ApiError> {
        let (limiter, who) = match quota {
            Quota::Agency => (&self.agency, "this agency"),
            Quota::ConsentRequest => (&self.consent_request, "this agency's consent requests"),
            Quota::Citizen => (&self.citizen, "this citizen token"),
            Quota::Auditor => (&self.auditor, "this auditor token"),
        };
        limiter.take(key, Instant::now()).map_err(|retry_after| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from {who}: slow down and retry after {retry_after} s"),
            )
            .with_retry_after(retry_after)
        })
    }

    /// Buckets held now, all quotas together.
    #[cfg(test)]
    fn held(&self) -> usize {
        [
            &self.agency,
            &self.consent_request,
            &self.citizen,
            &self.auditor,
        ]
        .iter()
        .map(|l| l.held())
        .sum()
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Buckets {
    map: HashMap<String, Bucket>,
    /// The map's size at which idle buckets are swept next.
    sweep_at: usize,
}

/// Token buckets by key: `rate` per second, bursts of twice that.
struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    fn new(rate: f64) -> Self {
        RateLimiter {
            rate,
            burst: (rate * 2.0).max(1.0),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * self.rate).min(self.burst)
    }

    /// Takes one token from `key`'s bucket, or says in how many whole seconds (at least 1)
    /// one will be there.
    fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut guard = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let buckets = &mut *guard;
        if !buckets.map.contains_key(key) && buckets.map.len() >= buckets.sweep_at {
            // A full bucket is the same as none: drop them, and sweep again when the map
            // has doubled (amortised O(1) per new key).
            buckets
                .map
                .retain(|_, b| self.refilled(b, now) < self.burst);
            buckets.sweep_at = (buckets.map.len() * 2).max(MIN_SWEEP);
        }
        let bucket = buckets.map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / self.rate).ceil();
            // `as` saturates; the rate is positive and finite, so `wait` is too.
            Err((wait as u64).max(1))
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let l = RateLimiter::new(0.5);
        let t = Instant::now();
        assert_eq!(l.take("a", t), Ok(()));
        assert_eq!(l.take("a", t), Err(2), "one token in 2 s at 0.5/s");
        assert_eq!(l.take("b", t), Ok(()), "per key");
        assert_eq!(l.take("a", t + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn a_flood_of_distinct_keys_does_not_grow_the_map_without_bound() {
        let l = RateLimiter::new(100.0);
        let mut t = Instant::now();
        for i in 0..100_000u32 {
            // Each key's bucket is idle again 20 ms later (burst 200 at 100/s: one
            // token back in 10 ms).
            t += Duration::from_millis(1);
            assert_eq!(l.take(&format!("token-{i}"), t), Ok(()));
            assert!(l.held() <= 2 * MIN_SWEEP, "{} buckets held", l.held());
        }
    }

    #[test]
    fn a_sweep_keeps_the_buckets_in_use() {
        let l = RateLimiter::new(1.0);
        let t = Instant::now();
        assert_eq!(l.take("busy", t), Ok(()));
        assert_eq!(l.take("busy", t), Ok(()));
        for i in 0..MIN_SWEEP + 10 {
            assert_eq!(l.take(&format!("k{i}"), t), Ok(()));
        }
        assert_eq!(l.held(), MIN_SWEEP + 11, "nothing was idle");
        assert_eq!(l.take("busy", t), Err(1), "its bucket is still empty");
    }

    #[test]
    fn quotas_answer_429_with_retry_after() {
        let q = Quotas::new(Rates {
            agency: 1.0,
            consent_request: 1.0,
            citizen: 1.0,
            auditor: 1.0,
        });
        assert!(q.check(Quota::Citizen, "t1").is_ok());
        assert!(q.check(Quota::Citizen, "t1").is_ok());
        let e = q.check(Quota::Citizen, "t1").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code, "rate_limited");
        assert_eq!(e.retry_after, Some(1));
        assert!(q.check(Quota::Auditor, "t1").is_ok(), "separate quotas");
        assert_eq!(q.held(), 2);
    }
}
