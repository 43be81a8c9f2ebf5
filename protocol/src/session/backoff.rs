//! Reconnect delays: capped exponential backoff with full jitter. The randomness comes from the
//! caller, so the schedule is deterministic for a given sequence of random numbers.

/// The failed-attempt counter and the delay bounds it implies.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    base_ms: u64,
    cap_ms: u64,
    attempt: u32,
}

impl Backoff {
    pub(super) fn new(base_ms: u64, cap_ms: u64) -> Self {
        Backoff {
            base_ms,
            cap_ms,
            attempt: 0,
        }
    }

    /// Failed attempts since the last success.
    pub(super) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A connection succeeded: the next delay starts from the base again.
    pub(super) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The largest delay after `attempt` failures: `min(cap, base * 2^attempt)`.
    pub(super) fn ceiling(&self, attempt: u32) -> u64 {
        let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.cap_ms)
    }

    /// Count a failed attempt and pick its delay uniformly-ish in `[0, ceiling]` from `random`
    /// (full jitter).
    pub(super) fn next_delay(&mut self, random: u64) -> u64 {
        let ceiling = self.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        random % ceiling.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_doubling_capped_ceiling() {
        let mut b = Backoff::new(250, 30_000);
        for attempt in 0..80u32 {
            let ceiling = b.ceiling(attempt);
            let expected = 250u64
                .saturating_mul(1u64.checked_shl(attempt).unwrap_or(u64::MAX))
                .min(30_000);
            assert_eq!(ceiling, expected);
            assert_eq!(b.attempt(), attempt);
            assert!(b.clone().next_delay(u64::MAX) <= ceiling);
            assert_eq!(b.clone().next_delay(ceiling), ceiling);
            assert_eq!(b.next_delay(ceiling + 1), 0);
        }
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(0), 250);
    }

    #[test]
    fn extreme_settings_do_not_overflow() {
        let mut b = Backoff::new(u64::MAX, u64::MAX);
        assert_eq!(b.ceiling(200), u64::MAX);
        assert!(b.next_delay(u64::MAX) < u64::MAX);
        let mut zero = Backoff::new(0, 0);
        assert_eq!(zero.next_delay(12345), 0);
    }
}
