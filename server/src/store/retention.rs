//! Per-room retention, as both engines store and apply it: the setting ([`Retention`]), what
//! one sweep step did ([`Retained`]), and the rule that picks which messages a step retains
//! away ([`retain_through`]), written once so the engines cannot disagree.
//!
//! Design. A room may keep messages for at most `max_age_ms` and/or keep only its newest
//! `max_messages`; a message breaking either rule is "retained away": it becomes a tombstone
//! exactly as a deletion makes one (same record, same deletions index, same commit hook), so
//! seqs stay contiguous and every reader sees it as deleted. Each room also stores
//! `retained_through`, the seq up to which every message has been retained away (all earlier
//! ones are tombstones): a step starts after it, so a sweep never rescans old history. One step
//! looks at no more than `limit` seqs and commits on its own (never one giant transaction).
//!
//! The age rule assumes that times rise with seqs (both engines keep a conversation's times
//! from going back), so the messages to retain away by age are a prefix: the step stops at the
//! first message young enough. Tombstoning is idempotent (a tombstone is skipped, and a step
//! never moves `retained_through` back), so several nodes may sweep one room at once.
//! DMs have no retention: only rooms can hold a setting.

use quibble_protocol::wire::ChatMessage;

/// Most seqs one retention step looks at (so one step's transaction stays small).
pub const MAX_RETAIN_BATCH: usize = 1000;

/// A room's retention: `None` in a field means that rule is off; both off is no retention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this (ms) are retained away.
    pub max_age_ms: Option<u64>,
    /// Only this many of the newest messages are kept (at least 1).
    pub max_messages: Option<u64>,
}

impl Retention {
    /// Whether neither rule is on.
    pub fn is_none(&self) -> bool {
        self.max_age_ms.is_none() && self.max_messages.is_none()
    }

    /// The setting as the embedded engine stores it: 0 for a rule that is off.
    pub(crate) fn to_raw(self) -> (u64, u64) {
        (self.max_age_ms.unwrap_or(0), self.max_messages.unwrap_or(0))
    }

    /// The setting from its stored form (0: off).
    pub(crate) fn from_raw(max_age_ms: u64, max_messages: u64) -> Retention {
        Retention {
            max_age_ms: (max_age_ms > 0).then_some(max_age_ms),
            max_messages: (max_messages > 0).then_some(max_messages),
        }
    }
}

/// What one retention step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retained {
    /// The messages it turned into tombstones, ascending by seq (the tombstones).
    pub tombstones: Vec<ChatMessage>,
    /// The room's head seq when the step ran.
    pub head: u64,
    /// Whether the step stopped at its `limit` with more possibly due (call again).
    pub more: bool,
}

/// The seq a step retains through: every live message in `(through, result]` is retained
/// away. `head` is the room's highest seq, `limit` the most seqs one step looks at, and
/// `first_young` the lowest seq in `(through, through + limit]` whose message is not older
/// than the age rule allows (`None`: none in that window is; ignored without an age rule).
/// Returns `through` when nothing is due.
pub fn retain_through(
    retention: Retention,
    through: u64,
    head: u64,
    limit: u64,
    first_young: Option<u64>,
) -> u64 {
    let window_end = head.min(through.saturating_add(limit));
    let by_count = retention
        .max_messages
        .map_or(0, |keep| head.saturating_sub(keep));
    let by_age = match retention.max_age_ms {
        None => 0,
        Some(_) => first_young.map_or(window_end, |young| young.saturating_sub(1)),
    };
    by_count.max(by_age).min(window_end).max(through)
}

/// The setting in words, for the audit log: `max_age_ms=…, max_messages=…` (`off` for a rule
/// that is off).
pub fn describe(retention: Retention) -> String {
    let show = |rule: Option<u64>| rule.map_or_else(|| "off".to_owned(), |n| n.to_string());
    format!(
        "max_age_ms={}, max_messages={}",
        show(retention.max_age_ms),
        show(retention.max_messages)
    )
}

/// The highest `sent_at_ms` a message may have and still be retained away by age at `now_ms`.
pub fn age_cutoff(max_age_ms: u64, now_ms: u64) -> Option<u64> {
    now_ms.checked_sub(max_age_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(keep: u64) -> Retention {
        Retention {
            max_age_ms: None,
            max_messages: Some(keep),
        }
    }

    fn age() -> Retention {
        Retention {
            max_age_ms: Some(1000),
            max_messages: None,
        }
    }

    #[test]
    fn count_keeps_the_newest_in_steps_of_limit() {
        assert_eq!(retain_through(count(3), 0, 10, 100, None), 7);
        assert_eq!(retain_through(count(3), 0, 10, 4, None), 4);
        assert_eq!(retain_through(count(3), 4, 10, 4, None), 7);
        assert_eq!(retain_through(count(3), 7, 10, 4, None), 7);
        assert_eq!(retain_through(count(20), 0, 10, 4, None), 0);
    }

    #[test]
    fn age_stops_before_the_first_young_message() {
        assert_eq!(retain_through(age(), 0, 10, 100, Some(6)), 5);
        assert_eq!(retain_through(age(), 0, 10, 100, None), 10);
        assert_eq!(retain_through(age(), 0, 10, 4, None), 4);
        assert_eq!(retain_through(age(), 5, 10, 100, Some(6)), 5);
    }

    #[test]
    fn either_rule_retains_and_none_never_does() {
        let both = Retention {
            max_age_ms: Some(1000),
            max_messages: Some(5),
        };
        assert_eq!(retain_through(both, 0, 10, 100, Some(2)), 5);
        assert_eq!(retain_through(both, 0, 10, 100, Some(8)), 7);
        assert_eq!(retain_through(Retention::default(), 0, 10, 100, None), 0);
        assert_eq!(retain_through(count(3), 9, 10, 100, None), 9);
    }
}
