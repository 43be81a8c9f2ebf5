//! Login attempt limits, per client IP and per account name, so password guessing is slow
//! whether it comes from one address against many accounts or many addresses against one.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::fold;
use crate::http::error::ApiError;

pub struct LoginLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        // Bursts for honest typos; then one attempt per 6 s per IP, per 12 s per account.
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
            per_ip: RateLimiter::keyed(per_ip),
            per_account: RateLimiter::keyed(per_account),
        }
    }

    /// Count an attempt; refuse it (429 with Retry-After) when either key is over its quota.
    pub fn check(&self, ip: IpAddr, username: &str) -> Result<(), ApiError> {
        let now = DefaultClock::default().now();
        let ip_check = self.per_ip.check_key(&ip);
        let account_check = self.per_account.check_key(&fold(username));
        let wait = [ip_check.err(), account_check.err()]
            .into_iter()
            .flatten()
            .map(|not_until| not_until.wait_time_from(now))
            .max();
        match wait {
            Some(wait) => Err(ApiError::rate_limited(wait.as_secs().max(1))),
            None => Ok(()),
        }
    }

    /// Drop state for keys that are back at full quota (bounded memory).
    pub fn retain_recent(&self) {
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_burst_per_account_and_per_ip() {
        let limiter = LoginLimiter::new(
            quota(3, Duration::from_secs(60)),
            quota(2, Duration::from_secs(60)),
        );
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limiter.check(ip, "alice").is_ok());
        assert!(limiter.check(other, "ALICE").is_ok());
        let err = limiter.check(ip, "Alice").unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(err.retry_after.unwrap() >= 1);
        // carol is fine per account, until 127.0.0.1 has used its 3 attempts.
        assert!(limiter.check(ip, "carol").is_ok());
        assert!(limiter.check(ip, "dave").is_err());
        assert!(limiter.check(other, "erin").is_ok());
    }
}
