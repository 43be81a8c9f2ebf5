//! A stream's sends stay in order across a rate-limit refusal. When the per-user limit refuses
//! a send, the stream's later sends are refused too (`RateLimited`, with the same kind of hint)
//! until the refused one comes back: otherwise a quota that refills in the middle of a
//! pipelined burst would store a later message ahead of an earlier one. Clients resend the
//! refused message first (the protocol session does), so the hold ends with that resend. It
//! also lapses a little after the hint, so a client that never resends cannot wedge its stream.

use std::time::Duration;

use tokio::time::Instant;

/// How long past the hint a refused send keeps the stream's later sends back.
const GRACE: Duration = Duration::from_secs(2);

/// The hold of one conversation stream.
#[derive(Debug, Default)]
pub struct SendOrder {
    /// The refused client id, and until when later sends wait for it.
    held: Option<(u64, Instant)>,
}

impl SendOrder {
    /// Whether `client_id` may go on to the rate limiter now; `Err` with how long the refused
    /// send it waits behind is still to wait.
    pub fn admit(&mut self, client_id: u64, now: Instant) -> Result<(), Duration> {
        match self.held {
            Some((refused, _)) if refused == client_id => {
                self.held = None;
                Ok(())
            }
            Some((_, until)) if now < until => Err(until.saturating_duration_since(now)),
            Some(_) => {
                self.held = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The rate limiter refused `client_id`, to be retried after `wait`.
    pub fn refused(&mut self, client_id: u64, wait: Duration, now: Instant) {
        if self.held.is_none() {
            self.held = Some((client_id, now + wait + GRACE));
        }
    }
}

/// The reason given to a send held back behind a refused one.
pub fn held_back_reason(refused_wait: Duration) -> String {
    format!(
        "an earlier message on this stream was refused for sending too fast; resend it first; \
         retry in {} ms",
        refused_wait.as_millis().max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sends_wait_for_the_refused_one_until_it_returns_or_the_hold_lapses() {
        let start = Instant::now();
        let mut order = SendOrder::default();
        assert_eq!(order.admit(1, start), Ok(()));
        order.refused(2, Duration::from_millis(100), start);
        // 3 was sent after 2: it waits, even once the quota would let it through.
        let later = start + Duration::from_millis(500);
        assert!(order.admit(3, later).is_err());
        // 2 comes back: the hold ends, and 3 may go.
        assert_eq!(order.admit(2, later), Ok(()));
        assert_eq!(order.admit(3, later), Ok(()));
        // A refused send that never comes back holds the stream only until the hint + grace.
        order.refused(4, Duration::from_millis(100), later);
        assert!(order.admit(5, later + Duration::from_secs(1)).is_err());
        assert_eq!(order.admit(5, later + Duration::from_secs(3)), Ok(()));
    }
}
