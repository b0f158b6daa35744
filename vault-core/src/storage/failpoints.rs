//! Test-only failpoints of a store (feature `test-hooks`; `docs/storage.md`, "Dangerous
//! switches"): applies that fail and change nothing, and durability steps that fail as a
//! failed fsync would, armed by a test through the store's `dangerous_*` methods or, in a
//! process a test starts, through [`DANGEROUS_FAILPOINT_ENV`] at open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::{lock, StorageError};

/// Environment variable read at open: `apply` (every apply fails), `apply-after=N` (every
/// apply after the first N fails), `durability` (the first durability step fails, which
/// poisons the store), `durability-panic` (the first durability step panics).
pub const DANGEROUS_FAILPOINT_ENV: &str = "VAULT_DANGEROUS_FAILPOINT";

/// A failure injected by a failpoint.
#[derive(Debug, thiserror::Error)]
#[error("store failure: {0}")]
pub(crate) struct Failpoint(pub(crate) &'static str);

/// The armed failpoints of one store.
#[derive(Debug, Default)]
pub(crate) struct Failpoints {
    /// When > 0, the next applies fail (and decrement it). `u64::MAX` = forever.
    fail_applies: AtomicU64,
    /// `apply-after=N`: applies that still succeed before every apply fails.
    succeed_applies_before_failing: Mutex<Option<u64>>,
    /// The next durability steps fail.
    fail_durability: AtomicU64,
    /// The next durability step panics.
    panic_durability: AtomicBool,
}

impl Failpoints {
    /// The next `n` applies fail (`u64::MAX`: every one).
    pub(crate) fn fail_next_applies(&self, n: u64) {
        self.fail_applies.store(n, Ordering::SeqCst);
    }

    /// The next `n` durability steps fail.
    pub(crate) fn fail_next_durability(&self, n: u64) {
        self.fail_durability.store(n, Ordering::SeqCst);
    }

    /// The next durability step panics (as a bug in a backend would).
    pub(crate) fn panic_next_durability(&self) {
        self.panic_durability.store(true, Ordering::SeqCst);
    }

    /// Arms the failpoints named by [`DANGEROUS_FAILPOINT_ENV`], if it is set; an unknown
    /// value is refused with what to do about it.
    pub(crate) fn arm_from_env(&self) -> Result<(), String> {
        match std::env::var(DANGEROUS_FAILPOINT_ENV) {
            Ok(value) => self.arm(&value),
            Err(_) => Ok(()),
        }
    }

    /// Arms the failpoints named by a [`DANGEROUS_FAILPOINT_ENV`] value.
    pub(crate) fn arm(&self, value: &str) -> Result<(), String> {
        match value {
            "apply" => self.fail_next_applies(u64::MAX),
            "durability" => self.fail_next_durability(1),
            "durability-panic" => self.panic_next_durability(),
            other => match other.strip_prefix("apply-after=").map(str::parse::<u64>) {
                Some(Ok(n)) => *lock(&self.succeed_applies_before_failing) = Some(n),
                _ => {
                    return Err(format!(
                        "{DANGEROUS_FAILPOINT_ENV}={other:?} is not a failpoint (`apply`, \
                         `apply-after=N`, `durability`, `durability-panic`): unset it"
                    ))
                }
            },
        }
        Ok(())
    }

    /// Fails if an apply failpoint is armed (and counts it down).
    pub(crate) fn apply(&self) -> Result<(), StorageError> {
        let fails = {
            let mut before = lock(&self.succeed_applies_before_failing);
            match before.as_mut() {
                Some(0) => true,
                Some(n) => {
                    *n -= 1;
                    false
                }
                None => false,
            }
        } || self
            .fail_applies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u64::MAX => Some(u64::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if fails {
            return Err(StorageError::backend(
                "applying a batch",
                Failpoint("dangerous test failpoint `apply` triggered"),
            ));
        }
        Ok(())
    }

    /// Fails if a durability failpoint is armed (and counts it down).
    pub(crate) fn durability(&self) -> Result<(), StorageError> {
        if self.panic_durability.swap(false, Ordering::SeqCst) {
            panic!("dangerous test failpoint `durability-panic` triggered");
        }
        if self
            .fail_durability
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StorageError::backend(
                "writing the write-ahead log",
                Failpoint("dangerous test failpoint `durability` triggered"),
            ));
        }
        Ok(())
    }
}
