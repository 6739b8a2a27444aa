//! The SQL of a store's calls, one statement per call of the storage contract.

use sqlx::SqlStr;

/// The SQL of every call, rendered once per store with its configured (validated, quoted)
/// table name; everything else is a bind parameter. The text is each store's own; what is
/// shared is which calls have one and how they are named.
#[derive(Debug, Clone)]
pub struct Statements {
    /// `save_session`: an insert, never an upsert.
    pub insert: SqlStr,
    /// `fetch_session`: the record by id.
    pub select: SqlStr,
    /// `update_session_expiry`: a new expiry for a live record only.
    pub update_expiry: SqlStr,
    /// `delete_session`: the record by id.
    pub delete: SqlStr,
    /// `fetch_sessions_for_user`: a user's live records.
    pub select_for_user: SqlStr,
    /// `delete_sessions_for_user`: every record of a user.
    pub delete_for_user: SqlStr,
    /// `delete_all_expired_sessions`: one bounded batch of the purge.
    pub purge_batch: SqlStr,
}

impl Statements {
    /// The column list every statement reads or writes, in the order the inserts bind.
    pub const COLUMNS: &'static str = "id, user_id, expires_at, created_at, data";

    /// Each statement by the name of the call that runs it: for `EXPLAIN`, for review, and for
    /// the tests that prove the indexes are used.
    pub fn by_call(&self) -> [(&'static str, &str); 7] {
        [
            ("save_session", self.insert.as_str()),
            ("fetch_session", self.select.as_str()),
            ("update_session_expiry", self.update_expiry.as_str()),
            ("delete_session", self.delete.as_str()),
            ("fetch_sessions_for_user", self.select_for_user.as_str()),
            ("delete_sessions_for_user", self.delete_for_user.as_str()),
            ("delete_all_expired_sessions", self.purge_batch.as_str()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{AssertSqlSafe, SqlSafeStr as _};

    use super::*;

    #[test]
    fn every_call_is_named_with_its_own_statement() {
        let sql = |text: &str| AssertSqlSafe(text.to_owned()).into_sql_str();
        let statements = Statements {
            insert: sql("i"),
            select: sql("s"),
            update_expiry: sql("u"),
            delete: sql("d"),
            select_for_user: sql("su"),
            delete_for_user: sql("du"),
            purge_batch: sql("p"),
        };
        assert_eq!(
            statements.by_call(),
            [
                ("save_session", "i"),
                ("fetch_session", "s"),
                ("update_session_expiry", "u"),
                ("delete_session", "d"),
                ("fetch_sessions_for_user", "su"),
                ("delete_sessions_for_user", "du"),
                ("delete_all_expired_sessions", "p"),
            ]
        );
    }
}
