//! Bounded calls on pooled connections.

use std::time::Duration;

use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::{Connection, Database, Pool};

use narvik_core::deadline::{self, Bound, StoreFault};
use narvik_core::{Error, Result};

use crate::error::MapError;

/// How long a store waits for the pool and for a whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The longest a call waits for a connection from the pool, opening one included.
    pub acquire: Duration,
    /// The longest a call takes, end to end.
    pub call: Duration,
}

impl Timeouts {
    /// Refuses a zero bound, with which no call could ever succeed:
    /// [`Error::InvalidConfiguration`] naming the bound.
    pub fn check(&self) -> Result<()> {
        for (name, timeout) in [("acquire", self.acquire), ("call", self.call)] {
            if timeout.is_zero() {
                return Err(Error::InvalidConfiguration(format!(
                    "the {name} timeout must be more than zero"
                )));
            }
        }
        Ok(())
    }
}

/// What becomes of a connection whose call was cancelled (its deadline passed, or its caller
/// gave up) before the statement answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Detach it from the pool and close its socket at once (see [`Checkout`]): for drivers
    /// over a network socket, where a cancelled statement leaves the connection in an unknown
    /// state.
    Detach,
    /// Give it back to the pool: for drivers whose statements run to the end on a thread of
    /// their own (SQLite), so that a cancelled call leaves no half-read socket behind.
    Return,
}

/// A connection taken from the pool for one call.
///
/// Once its work has answered (successfully or not), the connection goes back to the pool,
/// where sqlx checks that it is still usable. Dropped before that, the call was cancelled
/// mid-statement (its deadline passed, or its caller gave up): the connection may hold half a
/// message or an answer nobody will read, so it is detached from the pool and its socket
/// closed at once. sqlx would otherwise test it with a ping that has no timeout, and its
/// graceful close waits for the server too: either keeps the pool's slot taken for as long as
/// a frozen server stays frozen. The pool opens a replacement when one is needed.
pub struct Checkout<DB: Database>(Option<PoolConnection<DB>>);

impl<DB: Database> Checkout<DB> {
    /// Wraps a connection just taken from the pool.
    pub fn new(connection: PoolConnection<DB>) -> Self {
        Self(Some(connection))
    }

    /// Runs `work` on the connection, then returns the connection to the pool.
    pub async fn run<T>(
        mut self,
        store: &'static str,
        operation: &'static str,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T>,
    ) -> Result<T> {
        let Some(connection) = self.0.as_deref_mut() else {
            // Not reached: a checkout is made with its connection and runs once.
            return Err(StoreFault::new(store, operation, "no connection checked out").into());
        };
        let outcome = work(connection).await;
        drop(self.0.take());
        outcome
    }
}

impl<DB: Database> Drop for Checkout<DB> {
    fn drop(&mut self) {
        if let Some(cancelled) = self.0.take() {
            drop(cancelled.detach());
        }
    }
}

/// How one store bounds its calls: its name (in every [`StoreFault`]), its [`Timeouts`], and
/// what becomes of the connection of a cancelled call.
#[derive(Debug, Clone, Copy)]
pub struct Calls {
    /// The store's name in the faults it reports.
    pub store: &'static str,
    /// The acquire and call bounds.
    pub timeouts: Timeouts,
    /// What becomes of a connection whose call was cancelled.
    pub cancelled: Cancelled,
}

impl Calls {
    /// Takes a connection from `pool` for `operation`, waiting at most the acquire timeout (or
    /// the pool's own, if shorter). Driver errors other than the pool's timeout go through
    /// `map`.
    pub async fn acquire<DB: Database>(
        &self,
        pool: &Pool<DB>,
        operation: &'static str,
        map: MapError,
    ) -> Result<PoolConnection<DB>> {
        let store = self.store;
        let limit = self.timeouts.acquire;
        match tokio::time::timeout(limit, pool.acquire()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error @ sqlx::Error::PoolTimedOut)) => {
                let limit = limit.min(pool.options().get_acquire_timeout());
                Err(
                    StoreFault::bound_hit(store, operation, Bound::Acquire, limit)
                        .with_source(error)
                        .into(),
                )
            }
            Ok(Err(error)) => Err(map(operation, error)),
            Err(_elapsed) => {
                Err(StoreFault::bound_hit(store, operation, Bound::Acquire, limit).into())
            }
        }
    }

    /// Runs `work` on a connection of `pool`, bounded by the acquire timeout only: for work
    /// that takes its time (a migration). The connection of a cancelled call goes as
    /// [`Calls::cancelled`] says.
    pub async fn unbounded<DB: Database, T>(
        &self,
        pool: &Pool<DB>,
        operation: &'static str,
        map: MapError,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T>,
    ) -> Result<T> {
        let connection = self.acquire(pool, operation, map).await?;
        match self.cancelled {
            Cancelled::Detach => {
                Checkout::new(connection)
                    .run(self.store, operation, work)
                    .await
            }
            Cancelled::Return => {
                let mut connection = connection;
                work(&mut connection).await
            }
        }
    }

    /// Runs `statement` on a connection of `pool` under the call deadline: the one place a
    /// store's calls are bounded. Driver errors go through `map`.
    pub async fn call<DB: Database, T>(
        &self,
        pool: &Pool<DB>,
        operation: &'static str,
        map: MapError,
        statement: impl AsyncFnOnce(&mut DB::Connection) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        deadline::within(self.store, operation, self.timeouts.call, async {
            self.unbounded(pool, operation, map, async |connection| {
                statement(connection)
                    .await
                    .map_err(|error| map(operation, error))
            })
            .await
        })
        .await
    }
}

/// Builds a pool and opens its first connection, bounded by the pool's acquire timeout: a
/// server that does not answer is [`Error::Unavailable`] naming [`Bound::Connect`]; other
/// driver errors go through `map`.
pub async fn connect_pool<DB: Database>(
    store: &'static str,
    pool_options: PoolOptions<DB>,
    options: <DB::Connection as Connection>::Options,
    map: MapError,
) -> Result<Pool<DB>> {
    let limit = pool_options.get_acquire_timeout();
    pool_options
        .connect_with(options)
        .await
        .map_err(|error| match error {
            sqlx::Error::PoolTimedOut => {
                StoreFault::bound_hit(store, "connect", Bound::Connect, limit)
                    .with_source(error)
                    .into()
            }
            other => map("connect", other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_bound_is_refused_by_name() {
        let bounds = Timeouts {
            acquire: Duration::from_secs(2),
            call: Duration::from_secs(5),
        };
        assert!(bounds.check().is_ok());
        for (zeroed, name) in [
            (
                Timeouts {
                    acquire: Duration::ZERO,
                    ..bounds
                },
                "acquire",
            ),
            (
                Timeouts {
                    call: Duration::ZERO,
                    ..bounds
                },
                "call",
            ),
        ] {
            let error = zeroed.check().expect_err("a zero bound");
            assert!(
                matches!(&error, Error::InvalidConfiguration(message)
                    if message == &format!("the {name} timeout must be more than zero")),
                "{error:?}"
            );
        }
    }
}
