//! Pacing of the sends the server refused with `RateLimited` (its per-user limit, or ingress
//! backpressure when a conversation's readers are behind). Such a send stays in the outbox
//! (same client id, so exactly-once still holds) and its conversation becomes throttled:
//!
//! - Paused: from the refusal until the server's hint has passed *and* every send of the
//!   conversation still in flight has been answered, nothing of it is transmitted. The sends
//!   transmitted after the refused one come back refused too (the server holds a stream's later
//!   sends behind a refused one, its `chat/send_order.rs`), so once all are answered the oldest
//!   pending send is the refused one, and nothing can overtake it. Those follow-up refusals
//!   neither extend the pause (their hint is the server's hold, hint plus a grace) nor count
//!   as new congestion.
//! - Then pipelining again, within a window: the oldest pending sends go out, up to `window`
//!   in flight; each acknowledgement widens the window by one (so it doubles per round trip),
//!   and a new refusal halves it and pauses again. The first window is half of what was in
//!   flight when the first refusal came. So after a refusal throughput is bound by the
//!   server's admission (its in-flight budget per conversation), not by one ack round trip per
//!   message, and the resends do not arrive all at once only to be refused again.
//! - A conversation with nothing pending is released: back to unlimited pipelining.
//!
//! The hint is the "retry in N ms" the server writes in the refusal's reason (the wire has no
//! field for it); without one the delay doubles per consecutive refusal. Either is capped.

use std::collections::BTreeMap;

use crate::wire::ConversationId;

/// A throttled conversation.
#[derive(Debug, Clone, Copy)]
struct Throttle {
    /// Paused: nothing is sent before this time (nor while a send is in flight).
    paused_until_ms: Option<u64>,
    /// Refusals since the last acknowledged send, for the delay when there is no hint.
    refusals: u32,
    /// Sends that may be in flight at once once the pause is over.
    window: usize,
}

/// The throttled conversations.
#[derive(Debug, Default)]
pub(super) struct Throttles {
    by_conversation: BTreeMap<ConversationId, Throttle>,
}

impl Throttles {
    /// A send of `conversation` was refused at `now_ms`, with `in_flight` of its sends in
    /// flight just before (the refused one included). `delay` maps the consecutive refusal
    /// count (from 0) to the fallback delay. Returns the wait before the conversation sends
    /// again: a refusal while already paused only tells how long the pause still lasts.
    pub(super) fn refused(
        &mut self,
        conversation: ConversationId,
        reason: &str,
        now_ms: u64,
        cap_ms: u64,
        in_flight: usize,
        delay: impl Fn(u32) -> u64,
    ) -> u64 {
        let throttle = self
            .by_conversation
            .entry(conversation)
            .or_insert(Throttle {
                paused_until_ms: None,
                refusals: 0,
                window: in_flight,
            });
        if let Some(until) = throttle.paused_until_ms {
            return until.saturating_sub(now_ms);
        }
        let wait = retry_hint_ms(reason)
            .unwrap_or_else(|| delay(throttle.refusals))
            .clamp(1, cap_ms.max(1));
        throttle.refusals = throttle.refusals.saturating_add(1);
        throttle.window = (throttle.window / 2).max(1);
        throttle.paused_until_ms = Some(now_ms.saturating_add(wait));
        wait
    }

    /// A send of `conversation` was acknowledged: the fallback delay starts over, and outside
    /// a pause the window widens by one.
    pub(super) fn acknowledged(&mut self, conversation: ConversationId) {
        if let Some(throttle) = self.by_conversation.get_mut(&conversation) {
            throttle.refusals = 0;
            if throttle.paused_until_ms.is_none() {
                throttle.window = throttle.window.saturating_add(1);
            }
        }
    }

    /// Whether `conversation` is throttled (paused or within a window).
    pub(super) fn contains(&self, conversation: ConversationId) -> bool {
        self.by_conversation.contains_key(&conversation)
    }

    /// Until when `conversation` is paused, if it is.
    pub(super) fn paused_until(&self, conversation: ConversationId) -> Option<u64> {
        self.by_conversation.get(&conversation)?.paused_until_ms
    }

    /// The pause of `conversation` is over: it pipelines within its window.
    pub(super) fn resume(&mut self, conversation: ConversationId) {
        if let Some(throttle) = self.by_conversation.get_mut(&conversation) {
            throttle.paused_until_ms = None;
        }
    }

    /// How many sends `conversation` may have in flight (unlimited when not throttled).
    pub(super) fn window(&self, conversation: ConversationId) -> usize {
        self.by_conversation
            .get(&conversation)
            .map_or(usize::MAX, |t| t.window)
    }

    /// `conversation` has nothing pending any more (or was left): back to pipelining.
    pub(super) fn release(&mut self, conversation: ConversationId) {
        self.by_conversation.remove(&conversation);
    }

    /// The paused conversations and when each pause ends.
    pub(super) fn paused(&self) -> impl Iterator<Item = (ConversationId, u64)> + '_ {
        self.by_conversation
            .iter()
            .filter_map(|(&c, t)| Some((c, t.paused_until_ms?)))
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
    const CAP: u64 = 5_000;

    fn doubling(n: u32) -> u64 {
        100u64 << n
    }

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
        let wait = |t: &mut Throttles, reason: &str, now: u64| {
            let wait = t.refused(C, reason, now, CAP, 1, doubling);
            t.resume(C);
            wait
        };
        assert_eq!(wait(&mut throttles, "retry in 7 ms", 1_000), 7);
        assert_eq!(wait(&mut throttles, "no hint", 1_000), 200);
        assert_eq!(wait(&mut throttles, "retry in 99999 ms", 1_000), CAP);
        throttles.acknowledged(C);
        assert_eq!(wait(&mut throttles, "", 7_000), 100);
        throttles.release(C);
        assert_eq!(throttles.paused_until(C), None);
        assert!(!throttles.contains(C));
        assert_eq!(throttles.window(C), usize::MAX, "released: unlimited");
    }

    #[test]
    fn refusals_during_a_pause_neither_extend_it_nor_shrink_the_window() {
        let mut throttles = Throttles::default();
        // Eight in flight when the first refusal comes: the window starts at half of them.
        let first = throttles.refused(C, "retry in 25 ms", 100, CAP, 8, doubling);
        assert_eq!(first, 25);
        assert_eq!(throttles.paused_until(C), Some(125));
        assert_eq!(throttles.window(C), 4);
        // The later sends come back held behind it, with the server's longer hold as hint.
        let held = throttles.refused(C, "retry in 2025 ms", 110, CAP, 7, doubling);
        assert_eq!(held, 15, "what is left of the pause");
        assert_eq!(throttles.paused_until(C), Some(125));
        assert_eq!(throttles.window(C), 4);
        assert_eq!(throttles.paused().collect::<Vec<_>>(), [(C, 125)]);
    }

    #[test]
    fn the_window_widens_per_ack_and_halves_per_new_refusal() {
        let mut throttles = Throttles::default();
        throttles.refused(C, "retry in 10 ms", 0, CAP, 6, doubling);
        assert_eq!(throttles.window(C), 3);
        // Acks during the pause (of sends admitted before the refusal) do not widen it.
        throttles.acknowledged(C);
        assert_eq!(throttles.window(C), 3);
        throttles.resume(C);
        assert_eq!(throttles.paused().count(), 0);
        assert!(
            throttles.contains(C),
            "still throttled: pipelining within the window"
        );
        for _ in 0..5 {
            throttles.acknowledged(C);
        }
        assert_eq!(throttles.window(C), 8);
        // A refusal after the pause is new congestion: pause again, half the window.
        let again = throttles.refused(C, "retry in 30 ms", 50, CAP, 8, doubling);
        assert_eq!(again, 30);
        assert_eq!(throttles.paused_until(C), Some(80));
        assert_eq!(throttles.window(C), 4);
        // Never below one.
        for now in [100, 200, 300, 400] {
            throttles.resume(C);
            throttles.refused(C, "retry in 1 ms", now, CAP, 1, doubling);
        }
        assert_eq!(throttles.window(C), 1);
    }
}
