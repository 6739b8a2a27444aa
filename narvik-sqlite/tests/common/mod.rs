//! The test harness: stores on fresh database files, or fresh databases in memory.
//!
//! Files live in `<tmp>/narvik-sqlite-tests/<pid>-<random>/`, one directory per test process.
//! The Rust test harness has no global teardown, so a process cannot remove its own directory
//! when it ends; instead each process removes, when it starts, the directories of processes
//! that are gone (no `/proc/<pid>`), so runs never fill the disk and a run going on in parallel
//! is never disturbed.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use narvik_conformance::harness::random_suffix;
use narvik_sqlite::SqliteStore;

fn root() -> PathBuf {
    std::env::temp_dir().join("narvik-sqlite-tests")
}

fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        remove_orphans();
        let dir = root().join(format!("{}-{}", std::process::id(), random_suffix()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create the test directory {dir:?}: {e}"));
        dir
    })
}

/// Best effort: a failure here leaves files for the next run, it never fails a test.
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir(root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A path for a new database file owned by this test process.
pub fn fresh_path() -> PathBuf {
    process_dir().join(format!("{}.db", random_suffix()))
}

/// A migrated store on a new database file, opened as the README shows.
pub async fn fresh_file_store() -> SqliteStore {
    let store = SqliteStore::open(fresh_path())
        .await
        .expect("open a test database file");
    store.migrate().await.expect("migrate the test database");
    store
}

/// A migrated store on a new database in memory, opened as the README shows.
pub async fn fresh_memory_store() -> SqliteStore {
    let store = SqliteStore::open_in_memory()
        .await
        .expect("open a database in memory");
    store
        .migrate()
        .await
        .expect("migrate the in-memory database");
    store
}
