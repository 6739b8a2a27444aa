//! The single-server steps of [`RedisStore`](super::RedisStore)'s calls: every key lives on
//! the one server, so each call is one atomic script over all of its keys.

use narvik_core::{Error, Result, SessionRecord};

use super::unavailable;
use crate::connection::Conn;
use crate::keys::{KeySpace, QueueEntry, QUEUE_GRACE_MS};
use crate::record::{now_ms, time_field};
use crate::scripts::SCRIPTS;

/// Insert-only save of `record` (encoded as `value`) with its index and queue entries.
pub(super) async fn save(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    record: &SessionRecord,
    value: &[u8],
    expires: i64,
    now: i64,
) -> Result<()> {
    let outcome: i64 = SCRIPTS
        .save
        .key(keys.record(&record.id))
        .key(keys.index(&record.user_id))
        .key(keys.queue_bucket(&record.id))
        .arg(value)
        .arg(expires)
        .arg(now)
        .arg(&record.id)
        .arg(keys.queue_member(&record.user_id, &record.id))
        .arg(expires.saturating_add(QUEUE_GRACE_MS))
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    if outcome == 0 {
        Err(Error::DuplicateId)
    } else {
        Ok(())
    }
}

/// Moves the expiry of `record` (its user known) to `expires`: one script over the record,
/// the index and the queue.
pub(super) async fn update_record(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    record: &SessionRecord,
    expires: i64,
) -> Result<()> {
    // -1 (the id now belongs to another user: the engine's record is stale) and 0 (gone or
    // expired) both leave everything as it is.
    let _: i64 = SCRIPTS
        .update
        .key(keys.record(&record.id))
        .key(keys.index(&record.user_id))
        .key(keys.queue_bucket(&record.id))
        .arg(expires)
        .arg(time_field(expires))
        .arg(&record.id)
        .arg(&record.user_id)
        .arg(now_ms())
        .arg(keys.queue_member(&record.user_id, &record.id))
        .arg(expires.saturating_add(QUEUE_GRACE_MS))
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Moves the expiry of `session_id` to `expires`, knowing the id alone.
pub(super) async fn update_by_id(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    session_id: &str,
    expires: i64,
) -> Result<()> {
    // One script: it reads the user from the record and names its index itself.
    let _: i64 = SCRIPTS
        .update_by_id
        .key(keys.record(session_id))
        .key(keys.queue_bucket(session_id))
        .arg(expires)
        .arg(time_field(expires))
        .arg(session_id)
        .arg(now_ms())
        .arg(keys.index_prefix())
        .arg(expires.saturating_add(QUEUE_GRACE_MS))
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Deletes `session_id` and its index entry.
pub(super) async fn delete(keys: &KeySpace, conn: &mut Conn<'_>, session_id: &str) -> Result<()> {
    // One script: it reads the user from the record and names its index itself.
    let _: i64 = SCRIPTS
        .delete
        .key(keys.record(session_id))
        .arg(session_id)
        .arg(keys.index_prefix())
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Deletes one batch of the ids in a user's `index`: records and index entries in one script.
pub(super) async fn delete_batch(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    index: &str,
    ids: &[String],
) -> Result<()> {
    let mut purge = SCRIPTS.purge.key(index);
    for id in ids {
        purge.key(keys.record(id)).arg(id);
    }
    let _: i64 = purge.invoke_async(conn).await.map_err(unavailable)?;
    Ok(())
}

/// One batch of due queue entries of `bucket`: one script judges and deletes the records and
/// moves or removes their entries. Returns how many records it deleted.
pub(super) async fn expire(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    bucket: &str,
    entries: &[(&str, QueueEntry<'_>)],
    now: i64,
) -> Result<u64> {
    let mut expire = SCRIPTS.expire.key(bucket);
    expire.arg(now).arg(QUEUE_GRACE_MS);
    for (member, entry) in entries {
        expire
            .key(keys.record(entry.session_id))
            .key(&entry.index)
            .arg(*member)
            .arg(entry.session_id)
            .arg(&entry.user_id);
    }
    expire.invoke_async::<u64>(conn).await.map_err(unavailable)
}
