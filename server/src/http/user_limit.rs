//! Per-user rate limit of an action that makes records for others to see (GCRA via governor): a
//! burst passes, then one more per refill interval; past it the endpoint answers 429 with
//! `Retry-After`. One limiter each for room creation (`POST /api/rooms`), friend requests
//! (`POST /api/users/add`) and joining rooms (`POST /api/rooms/{id}/join`, and the membership a
//! room stream's `Join` records), and deleting messages (`DELETE
//! /api/conversations/{id}/messages/{seq}`, admins aside). Keyed by user id, so one account cannot flood the room list or
//! others' requests however many connections it uses; state for users back at full quota is
//! dropped by [`UserLimiter::retain_recent`].

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use quibble_protocol::UserId;

pub struct UserLimiter {
    limiter: DefaultKeyedRateLimiter<u64>,
}

impl UserLimiter {
    /// Allows `burst` actions at once and `per_hour` sustained (each at least 1).
    pub fn new(per_hour: u32, burst: u32) -> Self {
        let per_hour = NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        UserLimiter {
            limiter: RateLimiter::keyed(Quota::per_hour(per_hour).allow_burst(burst)),
        }
    }

    /// `Ok` to act now, or the whole seconds to wait (at least 1).
    pub fn check(&self, user: UserId) -> Result<(), u64> {
        self.limiter.check_key(&user.0).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
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
    fn a_burst_passes_then_creation_waits() {
        let limiter = UserLimiter::new(60, 3);
        let user = UserId(7);
        for _ in 0..3 {
            assert_eq!(limiter.check(user), Ok(()));
        }
        let wait = limiter.check(user).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(limiter.check(UserId(8)), Ok(()), "quotas are per user");
    }
}
