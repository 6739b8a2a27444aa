//! The sign-in bound: at most `permits` password checks run at once, each on a blocking thread
//! with Argon2 working memory that only a permit hands out.
//!
//! A check needs `m_cost` of memory while it runs (19 MiB with Argon2's defaults). Without a
//! bound, every concurrent sign-in holds its own, and 64 wrong passwords sent at once grew the
//! demo by 1.2 GiB. Here a check first takes a permit from a semaphore (waiting at most a short
//! while, else the request gets `503` with `Retry-After`), then, on a blocking thread, takes one
//! of the pooled memory areas (allocating it on first use). The permit moves into the blocking
//! task and is released only after the memory is back in the pool, so even a request cancelled
//! by its client keeps its permit until its check has ended. There are never more memory areas
//! than permits: the bound's worth is `permits × m_cost`, allocated once and reused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::users::{Argon2Memory, Users};

/// The check was not run: every permit stayed taken for the whole wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

pub(crate) struct PasswordChecks {
    users: Arc<Users>,
    permits: Arc<Semaphore>,
    permit_count: usize,
    memory_per_check: usize,
    wait: Duration,
    memory: Arc<Mutex<Vec<Argon2Memory>>>,
}

impl PasswordChecks {
    /// `memory_per_check`: the Argon2 memory of one check (`m_cost`), for [`Self::memory_bound`].
    pub(crate) fn new(
        users: Arc<Users>,
        permits: usize,
        memory_per_check: usize,
        wait: Duration,
    ) -> Self {
        Self {
            users,
            permits: Arc::new(Semaphore::new(permits)),
            permit_count: permits,
            memory_per_check,
            wait,
            memory: Arc::new(Mutex::new(Vec::with_capacity(permits))),
        }
    }

    pub(crate) fn users(&self) -> &Users {
        &self.users
    }

    /// The bound's worth of Argon2 memory.
    pub(crate) fn memory_bound(&self) -> usize {
        self.permit_count * self.memory_per_check
    }

    /// Takes every permit, for tests that need the bound saturated.
    #[cfg(test)]
    pub(crate) async fn hold_all(&self) -> tokio::sync::OwnedSemaphorePermit {
        let count = u32::try_from(self.permit_count).expect("a few permits");
        Arc::clone(&self.permits)
            .acquire_many_owned(count)
            .await
            .expect("the semaphore is never closed")
    }

    /// Whether `password` is `username`'s, or `Busy` when no permit came free within the wait.
    pub(crate) async fn check(&self, username: String, password: String) -> Result<bool, Busy> {
        let permit = match tokio::time::timeout(
            self.wait,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            // Timed out, or the semaphore was closed (never: nothing closes it).
            Ok(Err(_)) | Err(_) => return Err(Busy),
        };
        let users = Arc::clone(&self.users);
        let pool = Arc::clone(&self.memory);
        let check = tokio::task::spawn_blocking(move || {
            let mut memory = take(&pool).unwrap_or_default();
            let valid = users.verify(&username, &password, &mut memory);
            put_back(&pool, memory);
            // Only now may another check take memory.
            drop(permit);
            valid
        });
        // A panic in the check (there is none to expect) counts as a wrong password.
        Ok(check.await.unwrap_or(false))
    }
}

fn take(pool: &Mutex<Vec<Argon2Memory>>) -> Option<Argon2Memory> {
    pool.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop()
}

fn put_back(pool: &Mutex<Vec<Argon2Memory>>, memory: Argon2Memory) {
    pool.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(memory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{ARGON2_MEMORY_BYTES, SEED_USERS};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_memory_areas_than_permits_and_busy_past_the_wait() {
        let users = Arc::new(Users::seeded(&SEED_USERS[..1]).expect("hashing"));
        let checks = Arc::new(PasswordChecks::new(
            users,
            2,
            ARGON2_MEMORY_BYTES,
            Duration::from_millis(50),
        ));

        // Every permit taken: a check waits its 50 ms and gives up, allocating nothing.
        let held = Arc::clone(&checks.permits)
            .acquire_many_owned(2)
            .await
            .expect("permits");
        let refused = checks.check("alice".to_owned(), "wrong".to_owned()).await;
        assert_eq!(refused, Err(Busy));
        assert!(checks.memory.lock().expect("pool").is_empty());
        drop(held);

        // Eight at once on two permits: all run (the wait is long enough here), on two areas.
        let patient = Arc::new(PasswordChecks::new(
            Arc::clone(&checks.users),
            2,
            ARGON2_MEMORY_BYTES,
            Duration::from_secs(300),
        ));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let checks = Arc::clone(&patient);
                tokio::spawn(
                    async move { checks.check("alice".to_owned(), "wrong".to_owned()).await },
                )
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("no panic"), Ok(false));
        }
        let areas: Vec<usize> = patient
            .memory
            .lock()
            .expect("pool")
            .iter()
            .map(Argon2Memory::bytes)
            .collect();
        assert!(
            (1..=2).contains(&areas.len()),
            "{} memory areas for 2 permits",
            areas.len()
        );
        assert!(areas.iter().all(|&bytes| bytes == ARGON2_MEMORY_BYTES));
        assert_eq!(patient.memory_bound(), 2 * 19 * 1024 * 1024);
        assert_eq!(
            patient
                .check("alice".to_owned(), "wonderland-rabbit".to_owned())
                .await,
            Ok(true)
        );
    }
}
