//! Millisecond time, the precision every store keeps.

use time::OffsetDateTime;

/// Drops everything below the millisecond, so that what the engine returns equals what any
/// store gives back.
///
/// ```
/// use narvik_core::time_util::truncate_to_millis;
/// use time::macros::datetime;
/// assert_eq!(
///     truncate_to_millis(datetime!(2030-01-01 0:00:00.123_456_789 UTC)),
///     datetime!(2030-01-01 0:00:00.123 UTC)
/// );
/// ```
pub fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let nanos = at.nanosecond();
    at - time::Duration::nanoseconds(i64::from(nanos % 1_000_000))
}
