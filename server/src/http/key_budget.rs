//! Keyed attempt budgets: a token bucket per key (an address, an account, a pair of them)
//! that is reserved BEFORE the attempt it pays for and can be given back afterwards, which a
//! plain rate limiter (governor) cannot do. Login limits need exactly that: reserve, verify the
//! password, and refund on success, so only failures count and no number of concurrent
//! requests can verify more passwords than the budget holds.
//!
//! A bucket is stored as the instant at which it is full again (GCRA's "theoretical arrival
//! time"): reserving pushes that instant one period later, refunding pulls it one period back,
//! and a bucket whose instant has passed is full, so it is dropped from the map (memory holds
//! only keys that spent something recently). The map holds at most `max_keys` keys; when a new
//! key finds it full even after dropping full buckets, the attempt is refused (fail closed)
//! rather than forgetting someone's spent budget.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::http::error::ApiError;

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The key's budget is spent; one more attempt fits after this long.
    Wait(Duration),
    /// Too many keys are tracked at once to take a new one.
    Full,
}

impl From<Refused> for ApiError {
    /// 429 with the wait in whole seconds (at least 1), or 503 when no key can be tracked.
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Wait(wait) => {
                ApiError::rate_limited(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
            Refused::Full => {
                ApiError::busy(60, "too many clients are being limited; try again later")
            }
        }
    }
}

pub struct KeyBudget<K> {
    burst: u32,
    period: Duration,
    max_keys: usize,
    full_at: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> KeyBudget<K> {
    /// `burst` attempts at once (at least 1), then one more per `period`; at most `max_keys`
    /// keys tracked.
    pub fn new(burst: u32, period: Duration, max_keys: usize) -> Self {
        KeyBudget {
            burst: burst.max(1),
            period,
            max_keys,
            full_at: Mutex::new(HashMap::new()),
        }
    }

    /// Spend one attempt of `key`'s budget, if there is one.
    pub fn reserve(&self, key: &K, now: Instant) -> Result<(), Refused> {
        let mut map = self.map();
        let full_at = match map.get(key) {
            Some(at) => (*at).max(now),
            None => {
                if map.len() >= self.max_keys {
                    map.retain(|_, at| *at > now);
                    if map.len() >= self.max_keys {
                        return Err(Refused::Full);
                    }
                }
                now
            }
        };
        let next = full_at + self.period;
        let allowed = self.period * self.burst;
        let debt = next - now;
        if debt > allowed {
            return Err(Refused::Wait(debt - allowed));
        }
        map.insert(key.clone(), next);
        Ok(())
    }

    /// Give back one attempt reserved earlier.
    pub fn refund(&self, key: &K, now: Instant) {
        let mut map = self.map();
        if let Some(at) = map.get_mut(key) {
            match at.checked_sub(self.period) {
                Some(earlier) if earlier > now => *at = earlier,
                _ => {
                    map.remove(key);
                }
            }
        }
    }

    /// Drop full buckets (the periodic sweep; reserving also sweeps when the map is full).
    pub fn retain_recent(&self, now: Instant) {
        self.map().retain(|_, at| *at > now);
    }

    fn map(&self) -> MutexGuard<'_, HashMap<K, Instant>> {
        self.full_at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn burst_then_one_per_period_and_refunds_give_back() {
        let budget = KeyBudget::new(3, MINUTE, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(budget.reserve(&"a", t0), Ok(()));
        }
        assert_eq!(budget.reserve(&"a", t0), Err(Refused::Wait(MINUTE)));
        // Other keys have their own budget.
        assert_eq!(budget.reserve(&"b", t0), Ok(()));
        // A refund gives one attempt back at once.
        budget.refund(&"a", t0);
        assert_eq!(budget.reserve(&"a", t0), Ok(()));
        assert!(budget.reserve(&"a", t0).is_err());
        // One period later exactly one more fits.
        let t1 = t0 + MINUTE;
        assert_eq!(budget.reserve(&"a", t1), Ok(()));
        assert_eq!(budget.reserve(&"a", t1), Err(Refused::Wait(MINUTE)));
        // After burst × period the bucket is full again and forgotten.
        let t2 = t1 + 3 * MINUTE;
        budget.retain_recent(t2);
        assert_eq!(budget.map().len(), 0);
        for _ in 0..3 {
            assert_eq!(budget.reserve(&"a", t2), Ok(()));
        }
    }

    #[test]
    fn refunding_a_full_bucket_keeps_it_full() {
        let budget = KeyBudget::new(2, MINUTE, 100);
        let t0 = Instant::now();
        budget.refund(&"a", t0);
        budget.reserve(&"a", t0).unwrap();
        budget.refund(&"a", t0);
        budget.refund(&"a", t0);
        assert_eq!(budget.map().len(), 0);
        budget.reserve(&"a", t0).unwrap();
        budget.reserve(&"a", t0).unwrap();
        assert!(budget.reserve(&"a", t0).is_err());
    }

    #[test]
    fn key_count_is_bounded_and_full_buckets_make_room() {
        let budget = KeyBudget::new(1, MINUTE, 2);
        let t0 = Instant::now();
        budget.reserve(&1, t0).unwrap();
        budget.reserve(&2, t0 + MINUTE / 2).unwrap();
        assert_eq!(budget.reserve(&3, t0), Err(Refused::Full));
        // Known keys still get their answer.
        assert_eq!(budget.reserve(&1, t0), Err(Refused::Wait(MINUTE)));
        // Once key 1's bucket has refilled, a new key takes its place.
        assert_eq!(budget.reserve(&3, t0 + MINUTE), Ok(()));
        assert_eq!(budget.map().len(), 2);
    }
}
