//! The store's unit of time: Unix milliseconds, the precision every narvik store keeps, and
//! the wall clock in that unit.

use std::time::{SystemTime, UNIX_EPOCH};

use narvik_core::{Error, Result};
use time::{Duration, OffsetDateTime};

/// `at` in Unix milliseconds, rounded down: the precision every narvik store keeps (the engine
/// only makes whole milliseconds). For a `now`, rounding down changes no decision against a
/// whole-millisecond expiry: `now < expires_at` exactly when `floor(now) < expires_at`.
pub(super) fn millis(at: OffsetDateTime) -> i64 {
    // An OffsetDateTime spans ±9999 years: its milliseconds always fit in an i64.
    at.unix_timestamp() * 1_000 + i64::from(at.millisecond())
}

/// The time of a Unix millisecond that [`millis`] made.
pub(super) fn time_of(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1_000))
        .and_then(|at| at.replace_millisecond(ms.rem_euclid(1_000) as u16))
        // Never taken: `ms` came from an OffsetDateTime, so it is in range.
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The wall clock in Unix milliseconds, rounded down, without calendar arithmetic: the clock
/// of the two decisions the required calls make by themselves.
pub(super) fn wall_millis() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration().as_nanos().div_ceil(1_000_000);
            -i64::try_from(before).unwrap_or(i64::MAX)
        }
    }
}

/// A session's own lifetime as the record keeps it: whole milliseconds, 0 for none. A
/// lifetime of no positive millisecond (which the engine never makes) cannot be kept.
pub(super) fn lifetime_ms(lifetime: Option<Duration>) -> Result<u64> {
    let Some(lifetime) = lifetime else {
        return Ok(0);
    };
    u64::try_from(lifetime.whole_milliseconds())
        .ok()
        .filter(|ms| (1..=i64::MAX as u64).contains(ms))
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "narvik-memory keeps session lifetimes of 1 ms or more, not {lifetime}"
            ))
        })
}
