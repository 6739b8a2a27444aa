//! The checks of a store's settings that are the same in every sqlx store.

use narvik_core::{Error, Result};

/// Checks that `name` (the `kind` of name: "table", "schema", ...) is a plain identifier:
/// ASCII letters, digits and `_`, not starting with a digit, at most `max_bytes` bytes. Such a
/// name is safe to splice into SQL once quoted, whatever the quoting of the database; each
/// store quotes it its own way and may add rules of its own.
pub fn check_identifier(kind: &str, name: &str, max_bytes: usize) -> Result<()> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    let rest_is_plain = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_well || !rest_is_plain {
        return Err(Error::InvalidConfiguration(format!(
            "the {kind} name {name:?} is not a plain identifier \
             (ASCII letters, digits and `_`, not starting with a digit)"
        )));
    }
    if name.len() > max_bytes {
        return Err(Error::InvalidConfiguration(format!(
            "the {kind} name {name:?} is longer than {max_bytes} bytes"
        )));
    }
    Ok(())
}

/// Refuses a purge batch of zero rows, with which the expired purge would never progress.
pub fn check_purge_batch_size(rows: u32) -> Result<()> {
    if rows == 0 {
        return Err(Error::InvalidConfiguration(
            "the purge batch size must be at least 1".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_identifiers_pass() {
        for good in ["sessions", "_t", "Auth_2"] {
            assert!(check_identifier("table", good, 10).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2fa",
            "a-b",
            "a\"b",
            "a`b",
            "sessions; drop table users",
            "é",
        ] {
            let error = check_identifier("table", bad, 64).expect_err(bad);
            assert!(
                error.to_string().contains("not a plain identifier"),
                "{error}"
            );
        }
        let long = check_identifier("schema", "abcdefghijk", 10).expect_err("too long");
        assert!(
            long.to_string()
                .contains("schema name \"abcdefghijk\" is longer than 10 bytes"),
            "{long}"
        );
    }

    #[test]
    fn a_zero_purge_batch_is_refused() {
        assert!(check_purge_batch_size(1).is_ok());
        assert!(matches!(
            check_purge_batch_size(0),
            Err(Error::InvalidConfiguration(_))
        ));
    }
}
