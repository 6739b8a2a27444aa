//! The two columns of a session row beyond the original's five: `lifetime_ms` (the session's
//! own sliding lifetime, NULL for the engine's) and `data_version` (the version
//! `update_session_data` compares on), read and written the same way by every sqlx store.

use narvik_core::{Error, Result};
use time::Duration;

/// A `lifetime_ms` value as a record's lifetime: NULL is the engine's configured one; anything
/// but a positive count of milliseconds cannot have been written by a narvik store, so it is
/// [`Error::CorruptRecord`].
pub fn lifetime_from_column(millis: Option<i64>) -> Result<Option<Duration>> {
    match millis {
        None => Ok(None),
        Some(millis) if millis > 0 => Ok(Some(Duration::milliseconds(millis))),
        Some(millis) => Err(Error::CorruptRecord {
            reason: format!(
                "the lifetime_ms of a session row is {millis}, not a positive count of \
                 milliseconds"
            ),
            source: None,
        }),
    }
}

/// A `data_version` value as a record's: never negative when a narvik store wrote it, else
/// [`Error::CorruptRecord`].
pub fn data_version_from_column(version: i64) -> Result<u64> {
    u64::try_from(version).map_err(|_| Error::CorruptRecord {
        reason: format!("the data_version of a session row is {version}, which is negative"),
        source: None,
    })
}

/// A record's lifetime for the `lifetime_ms` column: whole milliseconds (the engine only makes
/// those), positive and within a 64-bit integer, or [`Error::InvalidData`] before anything is
/// sent.
pub fn lifetime_column(lifetime: Option<Duration>) -> Result<Option<i64>> {
    let Some(lifetime) = lifetime else {
        return Ok(None);
    };
    let millis = i64::try_from(lifetime.whole_milliseconds()).map_err(|_| {
        Error::InvalidData(format!(
            "a session lifetime of {lifetime} does not fit a 64-bit count of milliseconds"
        ))
    })?;
    if millis <= 0 || Duration::milliseconds(millis) != lifetime {
        return Err(Error::InvalidData(format!(
            "a session lifetime of {lifetime} is not a positive whole number of milliseconds"
        )));
    }
    Ok(Some(millis))
}

/// A data version for the `data_version` column (a 64-bit signed integer), or
/// [`Error::InvalidData`] (the engine never gets near `i64::MAX`).
pub fn data_version_column(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| {
        Error::InvalidData(format!(
            "a data version of {version} does not fit a 64-bit signed column"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_refuse_what_no_store_writes() {
        for lifetime in [
            None,
            Some(Duration::seconds(1)),
            Some(Duration::days(36_500)),
        ] {
            let column = lifetime_column(lifetime).expect("a lifetime the engine makes");
            assert_eq!(lifetime_from_column(column).expect("reads back"), lifetime);
        }
        for bad in [
            Duration::ZERO,
            Duration::seconds(-1),
            Duration::microseconds(1_500),
        ] {
            assert!(matches!(
                lifetime_column(Some(bad)),
                Err(Error::InvalidData(_))
            ));
        }
        for bad in [0, -1, i64::MIN] {
            assert!(matches!(
                lifetime_from_column(Some(bad)),
                Err(Error::CorruptRecord { .. })
            ));
        }
        assert_eq!(data_version_from_column(7).expect("positive"), 7);
        assert!(matches!(
            data_version_from_column(-1),
            Err(Error::CorruptRecord { .. })
        ));
        assert_eq!(data_version_column(7).expect("small"), 7);
        assert!(matches!(
            data_version_column(u64::MAX),
            Err(Error::InvalidData(_))
        ));
    }
}
