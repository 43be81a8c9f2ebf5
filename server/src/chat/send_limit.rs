//! Per-user message rate limit, shared by all of a user's connections (GCRA via governor):
//! bursts up to the quota pass; past it, each send is refused with `RateLimited` and a hint
//! of when to retry, until the quota refills.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use quibble_protocol::UserId;

pub struct SendLimiter {
    limiter: DefaultKeyedRateLimiter<u64>,
    per_second: u32,
    burst: u32,
}

impl SendLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let per_second = per_second.max(1);
        let burst = burst.max(1);
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        SendLimiter {
            limiter: RateLimiter::keyed(quota),
            per_second,
            burst,
        }
    }

    /// `Ok` to send now, or how long until the user may send again.
    pub fn check(&self, user: UserId) -> Result<(), Duration> {
        self.limiter
            .check_key(&user.0)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// The reason to give a sender refused for `wait` (clients read the "retry in N ms").
    pub fn reason(&self, wait: Duration) -> String {
        format!(
            "sending too fast: at most {} messages per second (bursts of {}); retry in {} ms",
            self.per_second,
            self.burst,
            wait.as_millis().max(1)
        )
    }

    /// Drop state for users back at full quota (bounded memory).
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_then_sends_are_refused_with_a_hint() {
        let limiter = SendLimiter::new(1, 3);
        let user = UserId(7);
        for _ in 0..3 {
            assert!(limiter.check(user).is_ok());
        }
        let wait = limiter.check(user).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        let reason = limiter.reason(wait);
        assert!(reason.contains("retry in"), "{reason}");
        assert!(limiter.check(UserId(8)).is_ok(), "quotas are per user");
    }
}
