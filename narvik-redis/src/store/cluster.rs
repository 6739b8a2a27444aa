//! The cluster steps of [`RedisStore`](super::RedisStore)'s calls. A record, its user's index
//! and its queue bucket live in different slots, so no script may span them: each call is a
//! sequence of single-key steps in an order that keeps the index a superset of the live
//! records, followed by repairs for what a racing call on the same id may have undone in
//! between.

mod expire;

use narvik_core::{Error, Result, SessionRecord};
use time::OffsetDateTime;

use super::unavailable;
use crate::connection::Conn;
use crate::keys::{KeySpace, QUEUE_GRACE_MS};
use crate::record::{now_ms, time_field};
use crate::scripts::SCRIPTS;

pub(super) use expire::expire;

/// How a cluster expiry update treats the expiry-queue entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// The new expiry is no earlier than the old: the entry is due no later than the record.
    Keep,
    /// The new expiry may be earlier: move the entry earlier first.
    Lower,
}

/// Insert-only save of `record` (encoded as `value`).
pub(super) async fn save(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    record: &SessionRecord,
    value: &[u8],
    expires: i64,
    now: i64,
) -> Result<()> {
    let record_key = keys.record(&record.id);
    let index = keys.index(&record.user_id);
    // The index entry first, then the record, then the queue entry. A failure part-way leaves
    // at most an index entry without a record (skipped and pruned), never a record missing
    // from its user's index; and a queue entry is only ever written for a record that exists,
    // so the purge can drop an entry whose record it does not find.
    if expires <= now {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&record_key)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        return if exists {
            Err(Error::DuplicateId)
        } else {
            Ok(())
        };
    }
    let added: i64 = SCRIPTS
        .track
        .key(&index)
        .arg("GT")
        .arg(expires)
        .arg(&record.id)
        .arg("1")
        .arg(expires)
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    // `GET` returns what was there: the cluster client resends a command whose answer a
    // dropped connection lost, so an existing record that is this one byte for byte is
    // this call's own write, not another session's (ids are 256 random bits). Taking it
    // for a duplicate would remove the index entry of a live record.
    let existing: Option<Vec<u8>> = redis::cmd("SET")
        .arg(&record_key)
        .arg(value)
        .arg("NX")
        .arg("GET")
        .arg("PXAT")
        .arg(expires)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    if existing.as_ref().is_none_or(|existing| *existing == value) {
        // A delete of the same id racing this save may have removed the entry between the
        // two steps: put it back now that the record exists.
        track_in_index(conn, &index, &record.id, expires).await?;
        queue_no_later(keys, conn, &record.id, &record.user_id, expires).await?;
        return Ok(());
    }
    // Duplicate id: take back the index entry if this call added it.
    if added == 1 {
        let _: i64 = redis::cmd("ZREM")
            .arg(&index)
            .arg(&record.id)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
    }
    Err(Error::DuplicateId)
}

/// Moves the expiry of `record` to `expires_at` (`expires` in ms), its user known: three steps
/// with nothing read first.
pub(super) async fn update_record(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    record: &SessionRecord,
    expires_at: OffsetDateTime,
    expires: i64,
) -> Result<()> {
    let queue = if expires_at < record.expires_at {
        Queue::Lower
    } else {
        Queue::Keep
    };
    update(keys, conn, &record.id, &record.user_id, expires, queue).await?;
    Ok(())
}

/// Moves the expiry of `session_id` to `expires`, knowing the id alone.
pub(super) async fn update_by_id(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    session_id: &str,
    expires: i64,
) -> Result<()> {
    // The record and the index live in different slots, so the user is read first (one round
    // trip more than `update_record_expiry`). Two tries: the id may change hands between the
    // read and the update.
    for _ in 0..2 {
        let owner: Option<String> = SCRIPTS
            .owner
            .key(keys.record(session_id))
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        let Some(owner) = owner else {
            return Ok(());
        };
        // The old expiry is unknown here: the queue entry may have to move earlier.
        let outcome = update(keys, conn, session_id, &owner, expires, Queue::Lower).await?;
        if outcome != -1 {
            return Ok(());
        }
    }
    Ok(())
}

/// Moves the expiry of `user_id`'s record `session_id`. Returns as `retime_record` in
/// `scripts/lib.lua` (1 done, 0 gone or expired, -1 another user's).
async fn update(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    session_id: &str,
    user_id: &str,
    expires: i64,
    queue: Queue,
) -> Result<i64> {
    let index = keys.index(user_id);
    // Index first, only ever later: its entry never falls before the record's expiry. (A
    // shortened record keeps a later entry, which listing and purge judge by the record.)
    let _: i64 = SCRIPTS
        .update_index
        .key(&index)
        .arg(expires)
        .arg(session_id)
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    if queue == Queue::Lower {
        // Before the record: the queue entry is due no later than the record expires.
        queue_no_later(keys, conn, session_id, user_id, expires).await?;
    }
    let outcome: i64 = SCRIPTS
        .update_record
        .key(keys.record(session_id))
        .arg(expires)
        .arg(time_field(expires))
        .arg(user_id)
        .arg(now_ms())
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    if outcome == 1 {
        // A delete and a re-save of this id racing the update may have replaced the entry
        // with an earlier score in between.
        track_in_index(conn, &index, session_id, expires).await?;
        if queue == Queue::Lower {
            // And a purge that read the old expiry may have requeued the entry there in
            // between (it re-reads the record afterwards, so one of the two lowers it).
            queue_no_later(keys, conn, session_id, user_id, expires).await?;
        }
    }
    Ok(outcome)
}

/// Deletes `session_id`: the record first, then its index entry, so the index stays a superset
/// of live records.
pub(super) async fn delete(keys: &KeySpace, conn: &mut Conn<'_>, session_id: &str) -> Result<()> {
    let owner: Option<String> = SCRIPTS
        .take
        .key(keys.record(session_id))
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    let Some(owner) = owner else {
        return Ok(());
    };
    let index = keys.index(&owner);
    let _: i64 = redis::cmd("ZREM")
        .arg(&index)
        .arg(session_id)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    // A save of the same id racing this delete may have landed in between: if a record is
    // back, so is its entry.
    retrack_resaved(keys, conn, &index, &owner, &[session_id], false).await
}

/// Deletes one batch of `user_id`'s ids in `index`: the records first (`DEL` spans slots),
/// then the index entries.
pub(super) async fn delete_batch(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    index: &str,
    user_id: &str,
    ids: &[String],
) -> Result<()> {
    let mut del = redis::cmd("DEL");
    for id in ids {
        del.arg(keys.record(id));
    }
    let _: i64 = del.query_async(conn).await.map_err(unavailable)?;
    let _: i64 = redis::cmd("ZREM")
        .arg(index)
        .arg(ids)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    retrack_resaved(keys, conn, index, user_id, &ids, false).await
}

/// After removing index entries of `user_id` (and, with `requeue`, their queue entries): a
/// save of one of those ids may have landed in between, and its entries must come back.
async fn retrack_resaved(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    index: &str,
    user_id: &str,
    ids: &[&str],
    requeue: bool,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    // One multi-slot EXISTS (the client splits it by slot) settles the common case.
    let mut exists = redis::cmd("EXISTS");
    for id in ids {
        exists.arg(keys.record(id));
    }
    let back: i64 = exists.query_async(conn).await.map_err(unavailable)?;
    if back == 0 {
        return Ok(());
    }
    for id in ids {
        // Only a record of this user belongs in this index (the id may have been saved again
        // by someone else).
        let expires = expiry_if_owned(keys, conn, id, user_id).await?;
        if expires <= 0 {
            continue;
        }
        track_in_index(conn, index, id, expires).await?;
        if requeue {
            queue_no_later(keys, conn, id, user_id, expires).await?;
        }
    }
    Ok(())
}

/// The expiry (ms) of `user_id`'s record `session_id`, or 0 when there is none.
async fn expiry_if_owned(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    session_id: &str,
    user_id: &str,
) -> Result<i64> {
    SCRIPTS
        .expiry_if_owned
        .key(keys.record(session_id))
        .arg(user_id)
        .invoke_async(conn)
        .await
        .map_err(unavailable)
}

/// Makes sure the queue entry of `session_id` is due no later than `expires` (added if
/// missing), keeping its bucket alive past it.
async fn queue_no_later(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    session_id: &str,
    user_id: &str,
    expires: i64,
) -> Result<()> {
    let _: i64 = SCRIPTS
        .track
        .key(keys.queue_bucket(session_id))
        .arg("LT")
        .arg(expires)
        .arg(keys.queue_member(user_id, session_id))
        .arg("")
        .arg(expires.saturating_add(QUEUE_GRACE_MS))
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Makes sure `session_id` is in `index` with a score no earlier than `expires`.
async fn track_in_index(
    conn: &mut Conn<'_>,
    index: &str,
    session_id: &str,
    expires: i64,
) -> Result<()> {
    let _: i64 = SCRIPTS
        .track
        .key(index)
        .arg("GT")
        .arg(expires)
        .arg(session_id)
        .arg("")
        .arg(expires)
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}
