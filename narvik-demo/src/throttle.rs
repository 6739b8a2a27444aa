// Over 400 lines in one file: the three failure tables and the known-address set live in the
// throttle's one private `State` behind one lock, and an attempt updates them together. (The
// unit tests are a third of the file.)
//! Throttling of failed password checks (ASVS 5.0 V6.3.1), built so that an attacker cannot
//! turn it into a lockout of the account's owner.
//!
//! Three counters of failures, each with its own [`Backoff`]:
//!
//! - **per account and client address**, the strict one: it stops one client from guessing one
//!   account's password, and touches no one else;
//! - **per account**, from any address: against guessing spread over many addresses, kept a
//!   short, capped slow-down because an attacker can feed it;
//! - **per client address**, over all accounts: against one client trying many accounts.
//!
//! An attempt is counted as a failure when it is admitted, before the password is checked, so
//! that many concurrent attempts cannot all pass a counter that is still low; a success (or a
//! check that never ran) takes it back. An address the account has signed in from before (a
//! *known address*) is exempt from the per-account and per-address counters, so the owner at
//! their usual address is never slowed down by someone else's failures. A successful sign-in
//! resets the counter of its (account, address) pair; the other two counters only decay, or an
//! attacker could reset them with an account of their own.
//!
//! Client addresses are grouped as narrowly as a client can cheaply change them: an IPv4
//! address on its own, an IPv6 address by its /64 prefix (one subscriber's allocation), an
//! IPv4-mapped IPv6 address as the IPv4 address.
//!
//! Every table holds at most [`ThrottlePolicy::max_entries`] entries. When one is full, expired
//! entries go first, then the one whose wait ends soonest: a flood of fresh keys cannot push out
//! the entry that keeps a persistent attacker waiting.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use narvik_core::Clock;
use time::{Duration, OffsetDateTime};

/// One counter's rule: after `free_failures` failures, each further attempt waits
/// `first_delay`, doubled for each failure since, never more than `max_delay`; failures are
/// forgotten `window` after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures allowed without any wait (typing mistakes).
    pub free_failures: u32,
    /// The wait after the first failure beyond the free ones.
    pub first_delay: Duration,
    /// The longest wait: the worst a person behind this counter can be made to wait.
    pub max_delay: Duration,
    /// How long after the last failure the counter is forgotten. At least `max_delay`, so that
    /// no wait outlives its counter.
    pub window: Duration,
}

impl Backoff {
    /// The wait after `failures` failures.
    fn delay(&self, failures: u32) -> Duration {
        let Some(past_free) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        // 2^30 times any sane first delay is past any sane cap.
        let factor = 1_i32 << past_free.min(30);
        self.first_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }

    fn check(&self, name: &str) -> Result<(), String> {
        if self.first_delay <= Duration::ZERO || self.max_delay < self.first_delay {
            return Err(format!(
                "throttle {name}: the first delay must be positive and at most the maximum delay"
            ));
        }
        if self.window < self.max_delay {
            return Err(format!(
                "throttle {name}: the window must be at least the maximum delay"
            ));
        }
        if self.window > Duration::days(366) {
            return Err(format!("throttle {name}: a window of more than a year"));
        }
        Ok(())
    }
}

/// The throttle's settings. The defaults:
///
/// | counter | free failures | then waits | at most | forgotten after |
/// | --- | --- | --- | --- | --- |
/// | account and address | 5 | 1 s, doubling | 15 min | 1 h |
/// | account | 10 | 1 s, doubling | 1 min | 1 h |
/// | address | 20 | 1 s, doubling | 15 min | 1 h |
///
/// So one client gets 5 guesses at a password, then one every 15 minutes at best; guessing from
/// many addresses gets at most one guess per minute per account; the owner from a new address
/// waits at most a minute, and from an address they signed in from in the last 30 days not at
/// all (beyond their own pair's counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// The strict counter, per (account, client address).
    pub per_account_and_address: Backoff,
    /// The capped slow-down per account, from any address not known for it.
    pub per_account: Backoff,
    /// Per client address, over all accounts not known for it.
    pub per_address: Backoff,
    /// Entries per table (three counter tables and the known addresses): about 200 bytes
    /// each, so the default 10 000 bounds the throttle at about 8 MiB.
    pub max_entries: usize,
    /// Addresses remembered per account after a successful sign-in.
    pub known_addresses_per_account: usize,
    /// How long a known address stays known after its last successful sign-in.
    pub known_address_lifetime: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        let hour = Duration::hours(1);
        Self {
            per_account_and_address: Backoff {
                free_failures: 5,
                first_delay: Duration::seconds(1),
                max_delay: Duration::minutes(15),
                window: hour,
            },
            per_account: Backoff {
                free_failures: 10,
                first_delay: Duration::seconds(1),
                max_delay: Duration::minutes(1),
                window: hour,
            },
            per_address: Backoff {
                free_failures: 20,
                first_delay: Duration::seconds(1),
                max_delay: Duration::minutes(15),
                window: hour,
            },
            max_entries: 10_000,
            known_addresses_per_account: 8,
            known_address_lifetime: Duration::days(30),
        }
    }
}

impl ThrottlePolicy {
    /// Refuses settings under which a wait could outlive its counter, or nothing is bounded.
    pub fn check(&self) -> Result<(), String> {
        self.per_account_and_address
            .check("per account and address")?;
        self.per_account.check("per account")?;
        self.per_address.check("per address")?;
        if self.max_entries == 0 || self.known_addresses_per_account == 0 {
            return Err("throttle: every table needs room for at least one entry".to_owned());
        }
        if self.known_address_lifetime <= Duration::ZERO
            || self.known_address_lifetime > Duration::days(366)
        {
            return Err("throttle: a known address lifetime between 0 and a year".to_owned());
        }
        Ok(())
    }
}

/// The attempt was refused without checking the password: answer `429` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until an attempt from this client for this account is admitted again.
    pub retry_after: Duration,
}

impl Throttled {
    /// `retry_after` in whole seconds, rounded up, at least 1: the `Retry-After` value.
    pub fn retry_after_seconds(&self) -> u64 {
        let whole = self.retry_after.whole_seconds();
        let rounded = if self.retry_after.subsec_nanoseconds() > 0 {
            whole.saturating_add(1)
        } else {
            whole
        };
        u64::try_from(rounded.max(1)).unwrap_or(1)
    }
}

/// An admitted attempt, already counted as a failure. Report how it ended: a success resets
/// the client's counter for the account; a check that never ran is taken back; a failure (or an
/// attempt whose handler was cancelled) stays counted.
#[must_use = "report the outcome: succeeded, failed or not_checked"]
#[derive(Debug)]
pub struct Attempt {
    account: String,
    address: IpAddr,
}

/// The throttle: the counters, the known addresses and the clock they are read against.
pub struct SignInThrottle {
    clock: Arc<dyn Clock>,
    policy: ThrottlePolicy,
    state: Mutex<State>,
}

impl std::fmt::Debug for SignInThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInThrottle")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

struct State {
    pairs: Table<(String, IpAddr)>,
    accounts: Table<String>,
    addresses: Table<IpAddr>,
    known: KnownAddresses,
}

impl SignInThrottle {
    /// A throttle on `clock` (the engine's, so tests move both at once).
    pub fn new(policy: ThrottlePolicy, clock: Arc<dyn Clock>) -> Result<Self, String> {
        policy.check()?;
        let state = State {
            pairs: Table::new(policy.per_account_and_address, policy.max_entries),
            accounts: Table::new(policy.per_account, policy.max_entries),
            addresses: Table::new(policy.per_address, policy.max_entries),
            known: KnownAddresses {
                lifetime: policy.known_address_lifetime,
                per_account: policy.known_addresses_per_account,
                max_accounts: policy.max_entries,
                accounts: HashMap::new(),
            },
        };
        Ok(Self {
            clock,
            policy,
            state: Mutex::new(state),
        })
    }

    /// The settings in force.
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits an attempt at `account`'s password from `client`, counting it as a failure until
    /// told otherwise, or refuses it with the wait that applies.
    pub fn admit(&self, account: &str, client: IpAddr) -> Result<Attempt, Throttled> {
        let now = self.clock.now();
        let address = address_key(client);
        let pair = (account.to_owned(), address);
        let mut state = self.state();
        let mut until = state.pairs.locked_until(&pair, now);
        if !state.known.contains(account, address, now) {
            until = until
                .max(state.accounts.locked_until(account, now))
                .max(state.addresses.locked_until(&address, now));
        }
        if let Some(until) = until {
            return Err(Throttled {
                retry_after: until - now,
            });
        }
        state.pairs.fail(pair, now);
        state.accounts.fail(account.to_owned(), now);
        state.addresses.fail(address, now);
        Ok(Attempt {
            account: account.to_owned(),
            address,
        })
    }

    /// The password was right: the client's counter for this account starts again, this attempt
    /// is taken back from the others, and the address becomes known for the account.
    pub fn succeeded(&self, attempt: Attempt) {
        let now = self.clock.now();
        let mut state = self.state();
        state
            .pairs
            .forget(&(attempt.account.clone(), attempt.address));
        state.accounts.undo(&attempt.account);
        state.addresses.undo(&attempt.address);
        state.known.add(&attempt.account, attempt.address, now);
    }

    /// The password was wrong: the attempt stays counted.
    pub fn failed(&self, attempt: Attempt) {
        drop(attempt);
    }

    /// The password was never checked (the sign-in bound was saturated): the attempt is
    /// taken back.
    pub fn not_checked(&self, attempt: Attempt) {
        let mut state = self.state();
        state
            .pairs
            .undo(&(attempt.account.clone(), attempt.address));
        state.accounts.undo(&attempt.account);
        state.addresses.undo(&attempt.address);
    }

    /// Entries held over all tables (each table is capped at `max_entries`).
    pub fn entries(&self) -> usize {
        let state = self.state();
        state.pairs.entries.len()
            + state.accounts.entries.len()
            + state.addresses.entries.len()
            + state.known.accounts.len()
    }
}

/// The key a client address is counted under: IPv6 by its /64, IPv4-mapped as IPv4.
fn address_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: OffsetDateTime,
}

struct Table<K> {
    backoff: Backoff,
    max_entries: usize,
    entries: HashMap<K, Record>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(backoff: Backoff, max_entries: usize) -> Self {
        Self {
            backoff,
            max_entries,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, record: &Record, now: OffsetDateTime) -> bool {
        now >= record.last.saturating_add(self.backoff.window)
    }

    fn wait_ends(&self, record: &Record) -> OffsetDateTime {
        record
            .last
            .saturating_add(self.backoff.delay(record.failures))
    }

    fn locked_until<Q>(&self, key: &Q, now: OffsetDateTime) -> Option<OffsetDateTime>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let record = self.entries.get(key)?;
        if self.expired(record, now) {
            return None;
        }
        let until = self.wait_ends(record);
        (until > now).then_some(until)
    }

    fn fail(&mut self, key: K, now: OffsetDateTime) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.max_entries {
            self.make_room(now);
        }
        let fresh = Record {
            failures: 0,
            last: now,
        };
        let expired = self
            .entries
            .get(&key)
            .is_some_and(|record| self.expired(record, now));
        let record = self.entries.entry(key).or_insert(fresh);
        if expired {
            *record = fresh;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
    }

    fn undo(&mut self, key: &K) {
        if let Some(record) = self.entries.get_mut(key) {
            record.failures = record.failures.saturating_sub(1);
            if record.failures == 0 {
                self.entries.remove(key);
            }
        }
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Drops expired entries, then the ones whose wait ends soonest (ties: the oldest failure).
    fn make_room(&mut self, now: OffsetDateTime) {
        let window = self.backoff.window;
        self.entries
            .retain(|_, record| now < record.last.saturating_add(window));
        while self.entries.len() >= self.max_entries {
            let evict = self
                .entries
                .iter()
                .min_by_key(|(_, record)| (self.wait_ends(record), record.last))
                .map(|(key, _)| key.clone());
            match evict {
                Some(key) => {
                    self.entries.remove(&key);
                }
                None => break,
            }
        }
    }
}

/// Addresses each account signed in from, newest last.
struct KnownAddresses {
    lifetime: Duration,
    per_account: usize,
    max_accounts: usize,
    accounts: HashMap<String, Vec<(IpAddr, OffsetDateTime)>>,
}

impl KnownAddresses {
    fn contains(&self, account: &str, address: IpAddr, now: OffsetDateTime) -> bool {
        self.accounts.get(account).is_some_and(|addresses| {
            addresses
                .iter()
                .any(|(known, at)| *known == address && now < at.saturating_add(self.lifetime))
        })
    }

    fn add(&mut self, account: &str, address: IpAddr, now: OffsetDateTime) {
        let lifetime = self.lifetime;
        if !self.accounts.contains_key(account) && self.accounts.len() >= self.max_accounts {
            self.accounts.retain(|_, addresses| {
                addresses.retain(|(_, at)| now < at.saturating_add(lifetime));
                !addresses.is_empty()
            });
            while self.accounts.len() >= self.max_accounts {
                let oldest = self
                    .accounts
                    .iter()
                    .min_by_key(|(_, addresses)| addresses.last().map(|(_, at)| *at))
                    .map(|(account, _)| account.clone());
                match oldest {
                    Some(account) => {
                        self.accounts.remove(&account);
                    }
                    None => break,
                }
            }
        }
        let addresses = self.accounts.entry(account.to_owned()).or_default();
        addresses.retain(|(known, at)| *known != address && now < at.saturating_add(lifetime));
        addresses.push((address, now));
        if addresses.len() > self.per_account {
            addresses.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use narvik_core::ManualClock;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn throttle(policy: ThrottlePolicy) -> (SignInThrottle, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::starting_now());
        let throttle = SignInThrottle::new(policy, clock.clone()).expect("a valid policy");
        (throttle, clock)
    }

    /// `n` wrong passwords, each admitted; panics if one is refused.
    fn fail_times(throttle: &SignInThrottle, account: &str, client: IpAddr, n: u32) {
        for i in 0..n {
            let attempt = throttle
                .admit(account, client)
                .unwrap_or_else(|refused| panic!("attempt {i} refused: {refused:?}"));
            throttle.failed(attempt);
        }
    }

    #[test]
    fn the_wait_doubles_from_the_first_delay_up_to_the_cap() {
        let backoff = ThrottlePolicy::default().per_account_and_address;
        let waits: Vec<i64> = (0..20)
            .map(|failures| backoff.delay(failures).whole_seconds())
            .collect();
        assert_eq!(&waits[..5], &[0, 0, 0, 0, 0]);
        assert_eq!(&waits[5..16], &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900]);
        assert!(waits[16..].iter().all(|&wait| wait == 900));
        assert_eq!(backoff.delay(u32::MAX), Duration::minutes(15));
    }

    #[test]
    fn one_client_is_stopped_after_its_free_failures_and_waits_longer_each_time() {
        let (throttle, clock) = throttle(ThrottlePolicy::default());
        let attacker = ip("192.0.2.66");
        fail_times(&throttle, "alice", attacker, 5);
        let refused = throttle.admit("alice", attacker).expect_err("throttled");
        assert_eq!(refused.retry_after, Duration::seconds(1));
        assert_eq!(refused.retry_after_seconds(), 1);
        clock.advance(Duration::seconds(1));
        fail_times(&throttle, "alice", attacker, 1);
        let refused = throttle.admit("alice", attacker).expect_err("throttled");
        assert_eq!(refused.retry_after, Duration::seconds(2));
        // Refused attempts are not failures: asking again does not lengthen the wait.
        for _ in 0..50 {
            assert!(throttle.admit("alice", attacker).is_err());
        }
        clock.advance(Duration::seconds(2));
        assert!(throttle.admit("alice", attacker).is_ok());
    }

    #[test]
    fn forty_guesses_from_one_address_take_hours() {
        let (throttle, clock) = throttle(ThrottlePolicy::default());
        let attacker = ip("192.0.2.66");
        let start = clock.now();
        let mut guesses = 0;
        while guesses < 40 {
            match throttle.admit("alice", attacker) {
                Ok(attempt) => {
                    throttle.failed(attempt);
                    guesses += 1;
                }
                Err(refused) => clock.advance(refused.retry_after),
            }
        }
        let took = clock.now() - start;
        // 1 + 2 + ... + 512 s, then 15 minutes for each of the last 25.
        assert_eq!(took, Duration::seconds(1023 + 25 * 900));
        println!("40 guesses at one account from one address: {took} of waiting");
    }

    #[test]
    fn failures_are_forgotten_a_window_after_the_last() {
        let (throttle, clock) = throttle(ThrottlePolicy::default());
        let client = ip("192.0.2.10");
        fail_times(&throttle, "alice", client, 5);
        assert!(throttle.admit("alice", client).is_err());
        clock.advance(Duration::minutes(59));
        // The 1 s wait is over; the counter (5) is not: the next failure waits 2 s.
        fail_times(&throttle, "alice", client, 1);
        assert!(throttle.admit("alice", client).is_err());
        clock.advance(Duration::hours(1));
        fail_times(&throttle, "alice", client, 5);
    }

    #[test]
    fn another_address_is_only_slowed_by_the_capped_account_counter() {
        let (throttle, clock) = throttle(ThrottlePolicy::default());
        // 40 wrong passwords from many addresses, 4 each.
        for client in 0..10 {
            let client = ip(&format!("198.51.100.{client}"));
            for _ in 0..4 {
                match throttle.admit("alice", client) {
                    Ok(attempt) => throttle.failed(attempt),
                    Err(_) => clock.advance(Duration::minutes(1)),
                }
            }
        }
        // The owner from a new address waits at most the account cap, then gets in.
        let owner = ip("203.0.113.5");
        let wait = match throttle.admit("alice", owner) {
            Ok(attempt) => {
                throttle.succeeded(attempt);
                Duration::ZERO
            }
            Err(refused) => refused.retry_after,
        };
        assert!(wait <= Duration::minutes(1), "{wait}");
        clock.advance(wait);
        let attempt = throttle.admit("alice", owner).expect("admitted");
        throttle.succeeded(attempt);
    }

    #[test]
    fn a_known_address_is_exempt_from_the_account_and_address_counters() {
        let (throttle, _clock) = throttle(ThrottlePolicy::default());
        let owner = ip("203.0.113.5");
        let attempt = throttle.admit("alice", owner).expect("admitted");
        throttle.succeeded(attempt);
        for client in 0..20 {
            let client = ip(&format!("198.51.100.{client}"));
            if let Ok(attempt) = throttle.admit("alice", client) {
                throttle.failed(attempt);
            }
        }
        assert!(
            throttle.admit("alice", ip("203.0.113.6")).is_err(),
            "the account counter holds back a new address"
        );
        let attempt = throttle
            .admit("alice", owner)
            .expect("the owner is not slowed down");
        throttle.succeeded(attempt);
    }

    #[test]
    fn success_resets_the_pair_and_an_unchecked_attempt_is_taken_back() {
        let (throttle, _clock) = throttle(ThrottlePolicy::default());
        let client = ip("192.0.2.10");
        fail_times(&throttle, "alice", client, 4);
        let attempt = throttle.admit("alice", client).expect("the fifth");
        throttle.succeeded(attempt);
        fail_times(&throttle, "alice", client, 4);
        let attempt = throttle.admit("alice", client).expect("admitted");
        throttle.not_checked(attempt);
        // Still 4 failures counted: one more free one.
        fail_times(&throttle, "alice", client, 1);
        assert!(throttle.admit("alice", client).is_err());
    }

    #[test]
    fn concurrent_attempts_count_at_admission() {
        let (throttle, _clock) = throttle(ThrottlePolicy::default());
        let client = ip("192.0.2.10");
        // Five checks in flight at once, none finished: the sixth is refused already.
        let in_flight: Vec<Attempt> = (0..5)
            .map(|_| throttle.admit("alice", client).expect("free"))
            .collect();
        assert!(throttle.admit("alice", client).is_err());
        for attempt in in_flight {
            throttle.failed(attempt);
        }
    }

    #[test]
    fn one_client_trying_many_accounts_is_stopped_by_the_address_counter() {
        let (throttle, _clock) = throttle(ThrottlePolicy::default());
        let client = ip("192.0.2.10");
        for account in 0..20 {
            fail_times(&throttle, &format!("user{account}"), client, 1);
        }
        assert!(throttle.admit("user99", client).is_err());
        assert!(throttle.admit("user99", ip("192.0.2.11")).is_ok());
    }

    #[test]
    fn ipv6_clients_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let (throttle, _clock) = throttle(ThrottlePolicy::default());
        for host in 0..5 {
            fail_times(&throttle, "alice", ip(&format!("2001:db8:1:2::{host}")), 1);
        }
        assert!(throttle.admit("alice", ip("2001:db8:1:2::99")).is_err());
    }

    #[test]
    fn tables_stay_bounded_and_a_flood_does_not_evict_a_waiting_attacker() {
        let policy = ThrottlePolicy {
            max_entries: 100,
            ..ThrottlePolicy::default()
        };
        let (throttle, _clock) = throttle(policy);
        let attacker = ip("192.0.2.66");
        fail_times(&throttle, "alice", attacker, 5);
        for n in 0..2_000_u32 {
            let [_, _, high, low] = n.to_be_bytes();
            let client = IpAddr::from([10, 9, high, low]);
            fail_times(&throttle, &format!("user{n}"), client, 1);
        }
        assert!(throttle.entries() <= 3 * 100, "{}", throttle.entries());
        assert!(
            throttle.admit("alice", attacker).is_err(),
            "the attacker still waits"
        );
    }

    #[test]
    fn policies_whose_waits_outlive_their_counters_are_refused() {
        let mut policy = ThrottlePolicy::default();
        policy.per_account.window = Duration::seconds(30);
        assert!(SignInThrottle::new(policy, Arc::new(ManualClock::starting_now())).is_err());
        let policy = ThrottlePolicy {
            max_entries: 0,
            ..ThrottlePolicy::default()
        };
        assert!(policy.check().is_err());
        assert!(ThrottlePolicy::default().check().is_ok());
    }
}
