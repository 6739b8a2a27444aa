//! The Lua scripts, each compiled once with the shared prelude (`scripts/lib.lua`) in front.
//!
//! Every script names its keys in `KEYS` and gets every value in `ARGV`; on a cluster only
//! single-key scripts run (see the crate docs for the guarantees). The one exception: the
//! single-node scripts for the calls that get a session id alone (`update_by_id.lua`,
//! `delete.lua`) name the index of the user they read from the record, which cannot be known
//! before; they never run on a cluster.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../scripts/lib.lua"),
            "\n",
            include_str!(concat!("../scripts/", $file))
        ))
    };
}

/// All scripts of the store.
pub(crate) struct Scripts {
    /// Single node: insert-only save with index and queue entries.
    pub(crate) save: Script,
    /// Cluster: add to (or move within) the user index or a queue bucket.
    pub(crate) track: Script,
    /// Single node: expiry update of record, index and queue, the user known.
    pub(crate) update: Script,
    /// Single node: expiry update knowing the session id alone.
    pub(crate) update_by_id: Script,
    /// Cluster: the record half of an expiry update.
    pub(crate) update_record: Script,
    /// Cluster: the index half of an expiry update.
    pub(crate) update_index: Script,
    /// Single node: delete record and index entry.
    pub(crate) delete: Script,
    /// Cluster: delete a record, returning its user.
    pub(crate) take: Script,
    /// Cluster: the user of a record.
    pub(crate) owner: Script,
    /// Cluster: the expiry of a record if it is this user's.
    pub(crate) expiry_if_owned: Script,
    /// Single node: delete a batch of a user's records and index entries.
    pub(crate) purge: Script,
    /// Prune a user's index by the server's clock and read the ids live at `now`.
    pub(crate) list: Script,
    /// Single node: one batch of due expiry-queue entries.
    pub(crate) expire: Script,
    /// Cluster: the record step of expired deletion.
    pub(crate) expire_record: Script,
    /// Single node and cluster (one key): the versioned data update.
    pub(crate) update_data: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    save: script!("save.lua"),
    track: script!("track.lua"),
    update: script!("update.lua"),
    update_by_id: script!("update_by_id.lua"),
    update_record: script!("update_record.lua"),
    update_index: script!("update_index.lua"),
    delete: script!("delete.lua"),
    take: script!("take.lua"),
    owner: script!("owner.lua"),
    expiry_if_owned: script!("expiry_if_owned.lua"),
    purge: script!("purge.lua"),
    list: script!("list.lua"),
    expire: script!("expire.lua"),
    expire_record: script!("expire_record.lua"),
    update_data: script!("update_data.lua"),
});
