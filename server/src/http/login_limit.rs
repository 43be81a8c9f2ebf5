//! Login attempt limits, per client IP and per account name: only failed attempts count, so
//! honest users and scripts that log in often are never slowed, while password guessing —
//! from one address against many accounts or many addresses against one — is locked out
//! for a while once its quota of failures is spent.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::fold;
use crate::http::error::ApiError;

pub struct LoginLimiter {
    per_ip: Failures<IpAddr>,
    per_account: Failures<String>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        // Room for honest typos; then one more failure per 6 s per IP, per 12 s per account.
        Self::new(
            quota(20, Duration::from_secs(6)),
            quota(10, Duration::from_secs(12)),
        )
    }
}

fn quota(burst: u32, period: Duration) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl LoginLimiter {
    pub fn new(per_ip: Quota, per_account: Quota) -> Self {
        LoginLimiter {
            per_ip: Failures::new(per_ip),
            per_account: Failures::new(per_account),
        }
    }

    /// Refuse (429 with Retry-After) while either key is locked out.
    pub fn check(&self, ip: IpAddr, username: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let wait = [
            self.per_ip.locked(&ip, now),
            self.per_account.locked(&fold(username), now),
        ]
        .into_iter()
        .flatten()
        .max();
        match wait {
            Some(wait) => Err(ApiError::rate_limited(wait.as_secs().max(1))),
            None => Ok(()),
        }
    }

    /// Count a failed attempt.
    pub fn failed(&self, ip: IpAddr, username: &str) {
        let now = Instant::now();
        self.per_ip.fail(ip, now);
        self.per_account.fail(fold(username), now);
    }

    /// Drop state for keys back at full quota and lockouts that ended (bounded memory).
    pub fn retain_recent(&self) {
        let now = Instant::now();
        self.per_ip.retain_recent(now);
        self.per_account.retain_recent(now);
    }
}

/// Failures per key: a GCRA quota, and the lockouts it has caused.
struct Failures<K: Hash + Eq + Clone> {
    quota: DefaultKeyedRateLimiter<K>,
    locked_until: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(quota: Quota) -> Self {
        Failures {
            quota: RateLimiter::keyed(quota),
            locked_until: Mutex::new(HashMap::new()),
        }
    }

    fn locked(&self, key: &K, now: Instant) -> Option<Duration> {
        let locks = self.locked_until.lock().unwrap_or_else(|p| p.into_inner());
        locks
            .get(key)
            .and_then(|until| until.checked_duration_since(now))
    }

    fn fail(&self, key: K, now: Instant) {
        if let Err(not_until) = self.quota.check_key(&key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut locks = self.locked_until.lock().unwrap_or_else(|p| p.into_inner());
            locks.insert(key, now + wait);
        }
    }

    fn retain_recent(&self, now: Instant) {
        self.quota.retain_recent();
        let mut locks = self.locked_until.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_count_and_exhausting_them_locks_the_key() {
        let limiter = LoginLimiter::new(
            quota(3, Duration::from_secs(60)),
            quota(2, Duration::from_secs(60)),
        );
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        // Successful logins (checks without failures) never lock anyone out.
        for _ in 0..50 {
            assert!(limiter.check(ip, "alice").is_ok());
        }
        // Two failures fit alice's quota; the third locks her account, from any address.
        limiter.failed(ip, "alice");
        limiter.failed(other, "Alice");
        assert!(limiter.check(ip, "alice").is_ok());
        limiter.failed(ip, "ALICE");
        let err = limiter.check(other, "alice").unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(err.retry_after.unwrap() >= 1);
        // 127.0.0.1 has failed twice (quota 3): one more failure locks the address.
        assert!(limiter.check(ip, "bob").is_ok());
        limiter.failed(ip, "bob");
        limiter.failed(ip, "carol");
        assert!(limiter.check(ip, "dave").is_err());
        assert!(limiter.check(other, "dave").is_ok());
    }
}
