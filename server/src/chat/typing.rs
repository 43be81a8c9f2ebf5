//! Who is typing where: per user, the conversations they said they are typing in, each until
//! a deadline ([`TYPING_TTL_MS`] after the last `Typing` frame). A sweeper
//! ([`Typing::sweep`], every [`SWEEP`]) ends the expired ones, and the server then tells the
//! other members "stopped"; sending a message there ends it at once. Only the start and the
//! end are announced, so a client refreshing every few seconds costs no fan-out.
//!
//! Bounded: at most [`MAX_PER_USER`] conversations per user (`Typing` for a further one is
//! ignored), and entries only for users who sent a `Typing` within the last TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use quibble_protocol::{ConversationId, TYPING_TTL_MS, UserId};
use tokio::time::Instant;

/// Conversations one user may be typing in at once; more `Typing` frames are ignored.
pub const MAX_PER_USER: usize = 4;
/// How often expired entries are looked for.
pub const SWEEP: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Typing {
    users: Mutex<HashMap<UserId, HashMap<ConversationId, Instant>>>,
}

impl Typing {
    /// `user` is typing in `conversation` now; `true` if that is news (not a refresh) and
    /// should be announced.
    pub fn start(&self, user: UserId, conversation: ConversationId, now: Instant) -> bool {
        let deadline = now + Duration::from_millis(u64::from(TYPING_TTL_MS));
        let mut users = self.lock();
        let entries = users.entry(user).or_default();
        if let Some(until) = entries.get_mut(&conversation) {
            *until = deadline;
            return false;
        }
        if entries.len() < MAX_PER_USER {
            entries.insert(conversation, deadline);
            return true;
        }
        false
    }

    /// `user` stopped typing in `conversation` (they sent a message); `true` if they were.
    pub fn stop(&self, user: UserId, conversation: ConversationId) -> bool {
        let mut users = self.lock();
        let Some(entries) = users.get_mut(&user) else {
            return false;
        };
        let was = entries.remove(&conversation).is_some();
        if entries.is_empty() {
            users.remove(&user);
        }
        was
    }

    /// Removes and returns the entries whose deadline has passed.
    pub fn sweep(&self, now: Instant) -> Vec<(UserId, ConversationId)> {
        let mut expired = Vec::new();
        self.lock().retain(|&user, entries| {
            entries.retain(|&conversation, until| {
                let keep = *until > now;
                if !keep {
                    expired.push((user, conversation));
                }
                keep
            });
            !entries.is_empty()
        });
        expired
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, HashMap<ConversationId, Instant>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_expires_unless_refreshed_and_is_bounded_per_user() {
        let typing = Typing::default();
        let (u, c) = (UserId(1), ConversationId(1));
        let t0 = Instant::now();
        assert!(typing.start(u, c, t0));
        let ttl = Duration::from_millis(u64::from(TYPING_TTL_MS));
        assert!(!typing.start(u, c, t0 + ttl / 2), "a refresh is no news");
        assert!(typing.sweep(t0 + ttl).is_empty(), "refreshed");
        assert_eq!(typing.sweep(t0 + ttl * 2), vec![(u, c)]);
        assert!(typing.start(u, c, t0 + ttl * 2), "news again");
        assert!(typing.stop(u, c));
        assert!(!typing.stop(u, c));
        for i in 0..10 {
            typing.start(u, ConversationId(100 + i), t0);
        }
        assert_eq!(typing.sweep(t0 + ttl).len(), MAX_PER_USER);
    }
}
