//! Login attempt limits. Three budgets of failed attempts, each a [`KeyBudget`]:
//!
//! | key | burst | then one more per | stops |
//! | --- | --- | --- | --- |
//! | (account, address) | 10 | 60 s | guessing one account from one place |
//! | address | 30 | 6 s | one place spraying many accounts |
//! | account | 100 | 36 s | many places guessing one account |
//!
//! An address is an [`IpKey`] (IPv6 by /64). A guesser at one address is stopped by its own
//! (account, address) budget after 10 failures, while the owner at another address still logs
//! in: one address can spend at most 10 + 1/min of the account's budget, which refills at
//! 100/h, so locking an account for everyone takes at least 10 addresses guessing at once,
//! and even then one attempt comes free every 36 s.
//!
//! An attempt is reserved in all three budgets BEFORE its password is verified and given back
//! on success (or when it never got verified), so only failures count — people and scripts
//! that log in often are never slowed — and no number of concurrent requests verifies more
//! passwords than the budgets hold. Accounts are keyed by a keyed hash of the folded name, so
//! the maps hold fixed-size keys whatever names peers send.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::auth::fold;
use crate::http::error::ApiError;
use crate::http::key_budget::KeyBudget;
use crate::ip_key::IpKey;

/// Keys each budget tracks at most (tens of bytes each).
const MAX_KEYS: usize = 100_000;

pub struct LoginLimiter {
    names: RandomState,
    per_account_ip: KeyBudget<(u64, IpKey)>,
    per_ip: KeyBudget<IpKey>,
    per_account: KeyBudget<u64>,
}

/// A reserved login attempt: it counts as a failure unless given back with
/// [`LoginLimiter::refund`].
#[must_use = "an attempt is a failure unless refunded"]
pub struct Attempt {
    account: u64,
    ip: IpKey,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        let secs = Duration::from_secs;
        LoginLimiter {
            names: RandomState::new(),
            per_account_ip: KeyBudget::new(10, secs(60), MAX_KEYS),
            per_ip: KeyBudget::new(30, secs(6), MAX_KEYS),
            per_account: KeyBudget::new(100, secs(36), MAX_KEYS),
        }
    }
}

impl LoginLimiter {
    /// Reserve one attempt by `ip` at `username`, or refuse (429 with Retry-After) while any
    /// of its three budgets is spent.
    pub fn reserve(&self, ip: IpAddr, username: &str) -> Result<Attempt, ApiError> {
        self.reserve_at(ip, username, Instant::now())
    }

    /// Give back an attempt that succeeded or was never verified.
    pub fn refund(&self, attempt: Attempt) {
        let now = Instant::now();
        self.per_account_ip
            .refund(&(attempt.account, attempt.ip), now);
        self.per_ip.refund(&attempt.ip, now);
        self.per_account.refund(&attempt.account, now);
    }

    /// Forget budgets that have refilled (bounded memory).
    pub fn retain_recent(&self) {
        let now = Instant::now();
        self.per_account_ip.retain_recent(now);
        self.per_ip.retain_recent(now);
        self.per_account.retain_recent(now);
    }

    fn reserve_at(&self, ip: IpAddr, username: &str, now: Instant) -> Result<Attempt, ApiError> {
        let account = self.names.hash_one(fold(username));
        let ip = IpKey::of(ip);
        self.per_account_ip.reserve(&(account, ip), now)?;
        if let Err(refused) = self.per_ip.reserve(&ip, now) {
            self.per_account_ip.refund(&(account, ip), now);
            return Err(refused.into());
        }
        if let Err(refused) = self.per_account.reserve(&account, now) {
            self.per_account_ip.refund(&(account, ip), now);
            self.per_ip.refund(&ip, now);
            return Err(refused.into());
        }
        Ok(Attempt { account, ip })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Makes `n` attempts that fail; returns how many were refused.
    fn fail(limiter: &LoginLimiter, from: &str, user: &str, n: usize, now: Instant) -> usize {
        (0..n)
            .filter(|_| limiter.reserve_at(ip(from), user, now).is_err())
            .count()
    }

    #[test]
    fn successes_never_count_and_a_guesser_does_not_lock_the_owner_out() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        // Logging in successfully, however often, spends nothing.
        for _ in 0..500 {
            let attempt = limiter.reserve_at(ip("127.0.0.1"), "alice", now).unwrap();
            limiter.refund(attempt);
        }
        // 10 failures from one address; the 11th is refused with a Retry-After...
        assert_eq!(fail(&limiter, "127.0.0.1", "Alice", 10, now), 0);
        let err = limiter
            .reserve_at(ip("127.0.0.1"), "ALICE", now)
            .err()
            .unwrap();
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(60));
        // ...while the owner elsewhere, and the guesser at other accounts, go on.
        assert!(limiter.reserve_at(ip("127.0.0.2"), "alice", now).is_ok());
        assert!(limiter.reserve_at(ip("127.0.0.1"), "bob", now).is_ok());
        // IPv6 counts per /64: another address in the guesser's /64 is the guesser.
        assert_eq!(fail(&limiter, "2001:db8::1", "carol", 10, now), 0);
        assert!(limiter.reserve_at(ip("2001:db8::2"), "carol", now).is_err());
        assert!(
            limiter
                .reserve_at(ip("2001:db8:0:1::1"), "carol", now)
                .is_ok()
        );
    }

    #[test]
    fn one_address_spraying_accounts_is_stopped_at_30() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        for n in 0..30 {
            assert!(
                limiter
                    .reserve_at(ip("192.0.2.1"), &format!("user{n}"), now)
                    .is_ok()
            );
        }
        assert!(limiter.reserve_at(ip("192.0.2.1"), "user99", now).is_err());
        assert!(limiter.reserve_at(ip("192.0.2.2"), "user99", now).is_ok());
    }

    #[test]
    fn many_addresses_spend_the_account_budget_and_it_refills() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        // Ten addresses × 10 failures = the account's 100.
        for a in 0..10 {
            assert_eq!(
                fail(&limiter, &format!("198.51.100.{a}"), "dora", 10, now),
                0
            );
        }
        let err = limiter
            .reserve_at(ip("203.0.113.9"), "dora", now)
            .err()
            .unwrap();
        assert_eq!(err.retry_after, Some(36));
        // The owner waits for one refill period, not for the guessers' lockout to end.
        assert!(
            limiter
                .reserve_at(ip("203.0.113.9"), "dora", now + Duration::from_secs(36))
                .is_ok()
        );
    }

    #[test]
    fn a_refusal_spends_nothing_anywhere() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        assert_eq!(fail(&limiter, "127.0.0.1", "erin", 10, now), 0);
        // 1,000 refused tries at erin from 127.0.0.1 leave the address's budget (30) alone:
        // 20 more accounts still get tried.
        assert_eq!(fail(&limiter, "127.0.0.1", "erin", 1000, now), 1000);
        for n in 0..20 {
            assert!(
                limiter
                    .reserve_at(ip("127.0.0.1"), &format!("u{n}"), now)
                    .is_ok()
            );
        }
        assert!(limiter.reserve_at(ip("127.0.0.1"), "u99", now).is_err());
    }
}
