//! The Lua scripts, each compiled once with the shared prelude (`scripts/lib.lua`) in front.
//!
//! Every script names its keys in `KEYS` and gets every value in `ARGV`; on a cluster only
//! single-key scripts run (see the crate docs for the guarantees).

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
    /// Cluster: add to the user index or a queue bucket.
    pub(crate) track: Script,
    /// Single node: expiry update of record and index.
    pub(crate) update: Script,
    /// Cluster: the record half of an expiry update.
    pub(crate) update_record: Script,
    /// Cluster: the index half of an expiry update.
    pub(crate) update_index: Script,
    /// Single node: delete record and index entry.
    pub(crate) delete: Script,
    /// Cluster: delete a record, returning its user.
    pub(crate) take: Script,
    /// The user of a record.
    pub(crate) owner: Script,
    /// Single node: delete a batch of a user's records and index entries.
    pub(crate) purge: Script,
    /// Remove expired entries of one user index.
    pub(crate) reap: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    save: script!("save.lua"),
    track: script!("track.lua"),
    update: script!("update.lua"),
    update_record: script!("update_record.lua"),
    update_index: script!("update_index.lua"),
    delete: script!("delete.lua"),
    take: script!("take.lua"),
    owner: script!("owner.lua"),
    purge: script!("purge.lua"),
    reap: script!("reap.lua"),
});
