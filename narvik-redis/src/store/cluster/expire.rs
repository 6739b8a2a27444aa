//! Cluster expired deletion, one batch of queue entries at a time: the records are judged
//! and deleted one script each (on the shared connection many at once), then the index and
//! queue entries follow, and entries of ids saved again in between come back.

use std::collections::HashMap;

use narvik_core::Result;
use redis::Value;

use super::{expiry_if_owned, queue_no_later, retrack_resaved};
use crate::connection::Conn;
use crate::keys::{KeySpace, QueueEntry, QUEUE_GRACE_MS};
use crate::scripts::SCRIPTS;
use crate::store::unavailable;

/// Commands a cluster purge keeps in flight at once on the shared connection (a whole batch:
/// the multiplexed connection pipelines them).
#[cfg(feature = "cluster")]
const IN_FLIGHT: usize = crate::store::BATCH;

/// Runs `futures` concurrently on the current task and returns their outputs in order (the
/// crate has no `futures` dependency for its one use of this).
#[cfg(feature = "cluster")]
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut running: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in running.iter_mut().zip(outputs.iter_mut()) {
            // A finished future is never polled again.
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// One batch of due queue entries of `bucket`. Each record is judged and deleted on its own
/// (one script on its key); then the queue entries of those live at `now` move to their
/// expiry, and the index and queue entries of the others go. Returns how many records it
/// deleted.
pub(in crate::store) async fn expire(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    bucket: &str,
    entries: &[(&str, QueueEntry<'_>)],
    now: i64,
) -> Result<u64> {
    let mut deleted = 0;
    let mut live: Vec<(&str, &QueueEntry<'_>, i64)> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let mut stale: HashMap<&str, (&str, Vec<&str>)> = HashMap::new();
    let outcomes = expire_records(keys, conn, entries, now).await?;
    for ((member, entry), outcome) in entries.iter().zip(outcomes) {
        match outcome {
            Value::BulkString(expires) => {
                let expires = std::str::from_utf8(&expires)
                    .ok()
                    .and_then(|expires| expires.parse::<i64>().ok());
                if let Some(expires) = expires {
                    live.push((member, entry, expires));
                    continue;
                }
            }
            Value::Int(1) => deleted += 1,
            _ => {}
        }
        done.push(member);
        stale
            .entry(entry.index.as_str())
            .or_insert_with(|| (entry.user_id.as_str(), Vec::new()))
            .1
            .push(entry.session_id);
    }
    for (member, entry, expires) in live {
        // Live at `now` (extended): back in the queue at its expiry.
        let _: i64 = SCRIPTS
            .track
            .key(bucket)
            .arg("GT")
            .arg(expires)
            .arg(member)
            .arg("")
            .arg(expires.saturating_add(QUEUE_GRACE_MS))
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        // A shortening racing this purge may have moved the record earlier since it was
        // read: the entry must not stay later than the record.
        let current = expiry_if_owned(keys, conn, entry.session_id, &entry.user_id).await?;
        if current > 0 && current < expires {
            queue_no_later(keys, conn, entry.session_id, &entry.user_id, current).await?;
        }
    }
    let mut removals: Vec<redis::Cmd> = stale
        .iter()
        .map(|(index, (_, ids))| {
            let mut removal = redis::cmd("ZREM");
            removal.arg(*index).arg(ids);
            removal
        })
        .collect();
    if !done.is_empty() {
        let mut removal = redis::cmd("ZREM");
        removal.arg(bucket).arg(&done);
        removals.push(removal);
    }
    run_independent(conn, removals).await?;
    // A save of one of those ids racing this purge may have landed in between: its index
    // and queue entries come back. One multi-slot EXISTS over the whole batch settles the
    // common case (none did) in one round trip.
    if stale.is_empty() {
        return Ok(deleted);
    }
    let mut exists = redis::cmd("EXISTS");
    for (_, ids) in stale.values() {
        for id in ids {
            exists.arg(keys.record(id));
        }
    }
    let back: i64 = exists.query_async(conn).await.map_err(unavailable)?;
    if back > 0 {
        for (index, (user_id, ids)) in &stale {
            retrack_resaved(keys, conn, index, user_id, ids, true).await?;
        }
    }
    Ok(deleted)
}

/// Runs independent `commands` (each on its own slot) and returns their outputs in order: on
/// the shared cluster connection all at once, so a purge batch costs one round trip per step
/// instead of one per user index.
async fn run_independent(conn: &mut Conn<'_>, commands: Vec<redis::Cmd>) -> Result<()> {
    #[cfg(feature = "cluster")]
    if let Some(handle) = conn.cluster_handle() {
        let calls = commands.iter().map(|command| {
            let mut connection = handle.clone();
            async move { command.query_async::<Value>(&mut connection).await }
        });
        for outcome in join_all(calls).await {
            outcome.map_err(unavailable)?;
        }
        return Ok(());
    }
    for command in &commands {
        let _: Value = command.query_async(conn).await.map_err(unavailable)?;
    }
    Ok(())
}

/// The record step of expired deletion for each of `entries` (see
/// `scripts/expire_record.lua`), in order.
async fn expire_records(
    keys: &KeySpace,
    conn: &mut Conn<'_>,
    entries: &[(&str, QueueEntry<'_>)],
    now: i64,
) -> Result<Vec<Value>> {
    // The records live on every node: on the shared cluster connection they go out IN_FLIGHT
    // at a time rather than one round trip after another.
    #[cfg(feature = "cluster")]
    if let Some(handle) = conn.cluster_handle() {
        let mut outcomes = Vec::with_capacity(entries.len());
        for group in entries.chunks(IN_FLIGHT) {
            let calls = group.iter().map(|(_, entry)| {
                let invocation = expire_record(keys, entry, now);
                let mut connection = handle.clone();
                async move { invocation.invoke_async::<Value>(&mut connection).await }
            });
            for outcome in join_all(calls).await {
                outcomes.push(outcome.map_err(unavailable)?);
            }
        }
        return Ok(outcomes);
    }
    let mut outcomes = Vec::with_capacity(entries.len());
    for (_, entry) in entries {
        let outcome = expire_record(keys, entry, now)
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn expire_record(
    keys: &KeySpace,
    entry: &QueueEntry<'_>,
    now: i64,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = SCRIPTS.expire_record.key(keys.record(entry.session_id));
    invocation.arg(now).arg(&entry.user_id);
    invocation
}
