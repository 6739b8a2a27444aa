//! The stored form of every time: whole milliseconds since the Unix epoch.

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, rounded down: the stored form of every time.
pub(crate) fn millis(at: OffsetDateTime) -> i64 {
    let millis = at.unix_timestamp_nanos().div_euclid(1_000_000);
    // OffsetDateTime spans years -9999 to 9999, about 3.2e14 ms either way: always fits.
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

pub(super) fn from_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// The wall clock in stored form (whole milliseconds): with expiries on whole milliseconds,
/// `expires_at > now` means the same for `now` and for `now` truncated.
pub(super) fn wall_clock_now() -> i64 {
    millis(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use narvik_core::time_util::truncate_to_millis;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn times_are_whole_milliseconds_rounded_down_both_sides_of_the_epoch() {
        for (at, expected) in [
            (datetime!(1970-01-01 0:00:00.0015 UTC), 1),
            (datetime!(1969-12-31 23:59:59.9985 UTC), -2),
            (datetime!(2030-01-01 0:00:00.123_999 UTC), 1_893_456_000_123),
            (datetime!(-9999-01-01 0:00 UTC), -377_705_116_800_000),
            (datetime!(+9999-12-31 23:59:59.999 UTC), 253_402_300_799_999),
        ] {
            assert_eq!(millis(at), expected, "{at}");
            assert_eq!(from_millis(expected), Some(truncate_to_millis(at)));
        }
        assert_eq!(from_millis(i64::MAX), None);
    }
}
