//! Time as the policy engine sees it: whole seconds since the Unix epoch, UTC.
//!
//! Written by hand (no date crate): strict RFC 3339 parsing and RFC 3339 UTC display.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An instant, in whole seconds since 1970-01-01T00:00:00Z (UTC, no leap seconds).
///
/// Evaluation never reads a clock: the caller passes `now` as a `Timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

/// The largest instant the engine represents: 9999-12-31T23:59:59Z.
const MAX_SECS: u64 = 253_402_300_799;

/// Why a string is not a strict RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The text does not have the shape `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
    #[error("timestamp is not RFC 3339: write it like 2026-11-29T10:00:00Z")]
    Malformed,
    /// A component is out of its range (month 13, day 31 in April, hour 24...).
    #[error("timestamp has an out-of-range {component}: check the date and time")]
    OutOfRange {
        /// The component that is out of range.
        component: &'static str,
    },
    /// The instant is before 1970-01-01T00:00:00Z or after 9999-12-31T23:59:59Z.
    #[error("timestamp is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z")]
    OutOfEpoch,
}

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The instant `secs` seconds after the Unix epoch.
    pub const fn from_unix_seconds(secs: u64) -> Self {
        Timestamp(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix_seconds(self) -> u64 {
        self.0
    }

    /// This instant plus `secs` seconds, saturating at the largest representable instant.
    pub const fn saturating_add(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs))
    }

    /// Parses a strict RFC 3339 timestamp (`2026-11-29T10:00:00Z`, or with an offset such as
    /// `+01:00`). Fractional seconds are accepted and truncated; leap seconds are refused.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(TimestampError::Malformed);
        }
        let year = digits(b, 0, 4)?;
        expect(b, 4, b'-')?;
        let month = digits(b, 5, 2)?;
        expect(b, 7, b'-')?;
        let day = digits(b, 8, 2)?;
        expect(b, 10, b'T')?;
        let hour = digits(b, 11, 2)?;
        expect(b, 13, b':')?;
        let minute = digits(b, 14, 2)?;
        expect(b, 16, b':')?;
        let second = digits(b, 17, 2)?;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return Err(TimestampError::Malformed);
            }
        }
        let offset_secs: i64 = match b.get(i) {
            Some(b'Z') if b.len() == i + 1 => 0,
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 => {
                let oh = digits(b, i + 1, 2)?;
                expect(b, i + 3, b':')?;
                let om = digits(b, i + 4, 2)?;
                if oh > 23 || om > 59 {
                    return Err(TimestampError::OutOfRange {
                        component: "offset",
                    });
                }
                let v = (oh * 3600 + om * 60) as i64;
                if sign == b'+' {
                    v
                } else {
                    -v
                }
            }
            _ => return Err(TimestampError::Malformed),
        };
        if !(1..=12).contains(&month) {
            return Err(TimestampError::OutOfRange { component: "month" });
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(TimestampError::OutOfRange { component: "day" });
        }
        if hour > 23 {
            return Err(TimestampError::OutOfRange { component: "hour" });
        }
        if minute > 59 {
            return Err(TimestampError::OutOfRange {
                component: "minute",
            });
        }
        if second > 59 {
            return Err(TimestampError::OutOfRange {
                component: "second",
            });
        }
        let days = days_from_civil(year as i64, month, day);
        let local = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64;
        let utc = local - offset_secs;
        if utc < 0 || utc as u64 > MAX_SECS {
            return Err(TimestampError::OutOfEpoch);
        }
        Ok(Timestamp(utc as u64))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with a `Z`, whole seconds: `2026-11-29T10:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TimestampError> {
    let mut v = 0u32;
    for i in at..at + n {
        match b.get(i) {
            Some(c) if c.is_ascii_digit() => v = v * 10 + u32::from(c - b'0'),
            _ => return Err(TimestampError::Malformed),
        }
    }
    Ok(v)
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), TimestampError> {
    if b.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(TimestampError::Malformed)
    }
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(Timestamp::parse("1970-01-01T00:00:00Z"), Ok(Timestamp(0)));
        assert_eq!(
            Timestamp::parse("2026-11-29T10:00:00Z").map(Timestamp::unix_seconds),
            Ok(1_795_946_400)
        );
        assert_eq!(
            Timestamp::parse("2026-11-29T11:30:00+01:30"),
            Timestamp::parse("2026-11-29T10:00:00Z")
        );
        assert_eq!(
            Timestamp::parse("2026-11-29T08:00:00-02:00"),
            Timestamp::parse("2026-11-29T10:00:00Z")
        );
        assert_eq!(
            Timestamp::parse("2024-02-29T23:59:59.999Z"),
            Timestamp::parse("2024-02-29T23:59:59Z")
        );
    }

    #[test]
    fn refuses_what_is_not_strict_rfc3339() {
        for bad in [
            "",
            "2026-11-29",
            "2026-11-29 10:00:00Z",
            "2026-11-29t10:00:00z",
            "2026-11-29T10:00:00",
            "2026-11-29T10:00:00+0100",
            "2026-11-29T10:00:00.Z",
            "2026-1-29T10:00:00Z",
            "+026-11-29T10:00:00Z",
            "2026-11-29T10:00:00Zjunk",
        ] {
            assert_eq!(
                Timestamp::parse(bad),
                Err(TimestampError::Malformed),
                "{bad}"
            );
        }
        for (bad, component) in [
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-00-01T00:00:00Z", "month"),
            ("2026-04-31T00:00:00Z", "day"),
            ("2025-02-29T00:00:00Z", "day"),
            ("2026-11-29T24:00:00Z", "hour"),
            ("2026-11-29T10:60:00Z", "minute"),
            ("2026-11-29T10:00:60Z", "second"),
            ("2026-11-29T10:00:00+24:00", "offset"),
        ] {
            assert_eq!(
                Timestamp::parse(bad),
                Err(TimestampError::OutOfRange { component }),
                "{bad}"
            );
        }
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00+00:01"),
            Err(TimestampError::OutOfEpoch)
        );
        assert_eq!(
            Timestamp::parse("1969-12-31T23:59:59Z"),
            Err(TimestampError::OutOfEpoch)
        );
    }

    #[test]
    fn displays_rfc3339_utc() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(1_795_946_400).to_string(), "2026-11-29T10:00:00Z");
        assert_eq!(Timestamp(MAX_SECS).to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp(951_782_400).to_string(), "2000-02-29T00:00:00Z");
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(secs in 0..=MAX_SECS) {
            let t = Timestamp(secs);
            prop_assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panic(s in "\\PC{0,40}", secs in 0..=MAX_SECS) {
            let _ = Timestamp::parse(&s);
            // Mutating a valid timestamp one character at a time never panics either.
            let valid = Timestamp(secs).to_string();
            for (i, _) in valid.char_indices() {
                let mut v = valid.clone();
                v.replace_range(i..=i, "9");
                let _ = Timestamp::parse(&v);
            }
        }
    }
}
