//! Sign-up limits per address ([`IpKey`]: IPv6 by /64): every sign-up request counts, whether
//! it creates an account, finds the name taken (409 — so sign-up is no fast oracle for which
//! names exist) or is refused as invalid. A burst (default 64) passes at once, then one more
//! per `3600 / signups_per_hour` seconds (default 10 s); past that, 429 with Retry-After. A
//! sign-up the server could not serve (503: the hashing queue is full) is given back.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::http::error::ApiError;
use crate::http::key_budget::KeyBudget;
use crate::ip_key::IpKey;

/// Addresses tracked at most (tens of bytes each).
const MAX_KEYS: usize = 100_000;

pub struct SignupLimiter {
    per_ip: KeyBudget<IpKey>,
}

impl SignupLimiter {
    pub fn new(burst: u32, per_hour: u32) -> Self {
        let period = Duration::from_secs(3600) / per_hour.max(1);
        SignupLimiter {
            per_ip: KeyBudget::new(burst, period, MAX_KEYS),
        }
    }

    /// Spend one sign-up of `ip`'s budget, or refuse with 429 and Retry-After.
    pub fn reserve(&self, ip: IpAddr) -> Result<(), ApiError> {
        Ok(self.per_ip.reserve(&IpKey::of(ip), Instant::now())?)
    }

    /// Give back a sign-up the server did not get to serve.
    pub fn refund(&self, ip: IpAddr) {
        self.per_ip.refund(&IpKey::of(ip), Instant::now());
    }

    /// Forget budgets that have refilled (bounded memory).
    pub fn retain_recent(&self) {
        self.per_ip.retain_recent(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_address_and_refunds_give_back() {
        let limiter = SignupLimiter::new(3, 360);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let b: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limiter.reserve(a).unwrap();
        }
        let err = limiter.reserve(same_64).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(10));
        limiter.reserve(b).unwrap();
        limiter.refund(a);
        limiter.reserve(a).unwrap();
        assert!(limiter.reserve(a).is_err());
    }
}
