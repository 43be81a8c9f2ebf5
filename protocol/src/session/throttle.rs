//! Pacing of the sends the server refused with `RateLimited`. Such a send stays in the outbox
//! (same client id, so exactly-once still holds) and its conversation becomes throttled: from
//! then on it sends one message at a time, the oldest pending first, and after a refusal
//! nothing until the server's hint has passed. So a refused message is never overtaken by a
//! later one the session transmits, and the resends do not arrive all at once only to be
//! refused again. A conversation goes back to pipelining when its outbox is empty.
//!
//! The hint is the "retry in N ms" the server writes in the refusal's reason (the wire has no
//! field for it); without one the delay doubles per consecutive refusal. Either is capped.
//!
//! Sends already in flight when the first refusal arrives cannot overtake it either: the server
//! refuses a stream's later sends until the refused one comes back (its `chat/send_order.rs`),
//! and this session then resends them in order behind it.

use std::collections::BTreeMap;

use crate::wire::ConversationId;

/// A throttled conversation.
#[derive(Debug, Clone, Copy)]
struct Throttle {
    /// Nothing is sent before this time.
    retry_at_ms: u64,
    /// Refusals since the last acknowledged send, for the delay when there is no hint.
    refusals: u32,
}

/// The throttled conversations.
#[derive(Debug, Default)]
pub(super) struct Throttles {
    by_conversation: BTreeMap<ConversationId, Throttle>,
}

impl Throttles {
    /// A send of `conversation` was refused at `now_ms`. `delay` maps the consecutive
    /// refusal count (from 0) to the fallback delay. Returns the wait before the next send.
    pub(super) fn refused(
        &mut self,
        conversation: ConversationId,
        reason: &str,
        now_ms: u64,
        cap_ms: u64,
        delay: impl Fn(u32) -> u64,
    ) -> u64 {
        let throttle = self
            .by_conversation
            .entry(conversation)
            .or_insert(Throttle {
                retry_at_ms: 0,
                refusals: 0,
            });
        let wait = retry_hint_ms(reason)
            .unwrap_or_else(|| delay(throttle.refusals))
            .clamp(1, cap_ms.max(1));
        throttle.refusals = throttle.refusals.saturating_add(1);
        throttle.retry_at_ms = throttle.retry_at_ms.max(now_ms.saturating_add(wait));
        wait
    }

    /// A send of `conversation` was acknowledged: the fallback delay starts over.
    pub(super) fn acknowledged(&mut self, conversation: ConversationId) {
        if let Some(throttle) = self.by_conversation.get_mut(&conversation) {
            throttle.refusals = 0;
        }
    }

    /// When `conversation` may send again, if it is throttled.
    pub(super) fn retry_at(&self, conversation: ConversationId) -> Option<u64> {
        self.by_conversation
            .get(&conversation)
            .map(|t| t.retry_at_ms)
    }

    /// `conversation` has nothing pending any more (or was left): back to pipelining.
    pub(super) fn release(&mut self, conversation: ConversationId) {
        self.by_conversation.remove(&conversation);
    }

    /// The throttled conversations and when each may send again.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ConversationId, u64)> + '_ {
        self.by_conversation
            .iter()
            .map(|(&c, t)| (c, t.retry_at_ms))
    }
}

/// The `N` of "retry in N ms" in a refusal's reason.
fn retry_hint_ms(reason: &str) -> Option<u64> {
    let (_, after) = reason.split_once("retry in ")?;
    let (number, unit) = after.split_once(' ')?;
    if !unit.starts_with("ms") {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ConversationId = ConversationId(1);

    #[test]
    fn reads_the_servers_hint_and_nothing_else() {
        let reason = "sending too fast: at most 50 messages per second (bursts of 200); \
                      retry in 17 ms";
        assert_eq!(retry_hint_ms(reason), Some(17));
        assert_eq!(retry_hint_ms("retry in 5 ms, please"), Some(5));
        for bad in [
            "slow down",
            "retry in soon ms",
            "retry in 5 s",
            "retry in 5",
            "",
        ] {
            assert_eq!(retry_hint_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn waits_for_the_hint_or_a_doubling_delay_capped() {
        let mut throttles = Throttles::default();
        let doubling = |n: u32| 100u64 << n;
        assert_eq!(
            throttles.refused(C, "retry in 7 ms", 1_000, 5_000, doubling),
            7
        );
        assert_eq!(throttles.retry_at(C), Some(1_007));
        assert_eq!(throttles.refused(C, "no hint", 1_000, 5_000, doubling), 200);
        assert_eq!(
            throttles.refused(C, "retry in 99999 ms", 1_000, 5_000, doubling),
            5_000
        );
        assert_eq!(throttles.retry_at(C), Some(6_000));
        throttles.acknowledged(C);
        assert_eq!(throttles.refused(C, "", 7_000, 5_000, doubling), 100);
        throttles.release(C);
        assert_eq!(throttles.retry_at(C), None);
        assert_eq!(throttles.iter().count(), 0);
    }
}
