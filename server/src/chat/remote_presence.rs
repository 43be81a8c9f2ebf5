//! Who is online on the other nodes of a fleet, as this node has heard
//! ([`crate::fleet::control`]): per user, their name, the rooms whose members see their
//! presence, and which nodes (by their random id) said they are online there, and when. A node
//! repeats its list every few seconds, so an entry a node stops repeating (it died, or the
//! user's "offline" was lost) runs out after [`REMOTE_TTL`]. One entry per user online
//! elsewhere, each holding at most one stamp per node and the rooms the user is in (bounded by
//! the membership cap), and an index from room to its members online elsewhere.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use quibble_protocol::{ConversationId, UserId};

/// How long a node's word that a user is online holds without being repeated.
pub const REMOTE_TTL: Duration = Duration::from_secs(45);

#[derive(Default)]
pub struct RemotePresence {
    users: HashMap<UserId, Remote>,
    /// Room → its members online elsewhere (so a connection's snapshot does not scan them all).
    by_room: HashMap<ConversationId, HashSet<UserId>>,
}

pub struct Remote {
    pub username: String,
    /// The rooms whose members see the user's presence.
    pub rooms: Vec<ConversationId>,
    /// The nodes the user is online on, with when each last said so.
    nodes: Vec<(u64, Instant)>,
}

impl RemotePresence {
    /// Node `node` says `user` is online there now; `true` if they were online on no other
    /// node until now.
    pub fn online(
        &mut self,
        node: u64,
        user: UserId,
        username: String,
        rooms: Vec<ConversationId>,
        now: Instant,
    ) -> bool {
        let remote = self.users.entry(user).or_insert_with(|| Remote {
            username: String::new(),
            rooms: Vec::new(),
            nodes: Vec::new(),
        });
        let new = remote.nodes.is_empty();
        remote.username = username;
        unindex(&mut self.by_room, user, &remote.rooms);
        for room in &rooms {
            self.by_room.entry(*room).or_default().insert(user);
        }
        remote.rooms = rooms;
        match remote.nodes.iter_mut().find(|(n, _)| *n == node) {
            Some((_, heard)) => *heard = now,
            None => remote.nodes.push((node, now)),
        }
        new
    }

    /// Node `node` says `user` went offline there; the entry if they are online on no node now.
    pub fn offline(&mut self, node: u64, user: UserId) -> Option<Remote> {
        let remote = self.users.get_mut(&user)?;
        remote.nodes.retain(|(n, _)| *n != node);
        if !remote.nodes.is_empty() {
            return None;
        }
        let gone = self.users.remove(&user)?;
        unindex(&mut self.by_room, user, &gone.rooms);
        Some(gone)
    }

    /// Forget what no node has repeated since `cutoff`; the users that leaves online nowhere.
    pub fn expire(&mut self, cutoff: Instant) -> Vec<(UserId, Remote)> {
        let mut gone = Vec::new();
        self.users.retain(|&user, remote| {
            remote.nodes.retain(|(_, heard)| *heard >= cutoff);
            if remote.nodes.is_empty() {
                gone.push((
                    user,
                    Remote {
                        username: std::mem::take(&mut remote.username),
                        rooms: std::mem::take(&mut remote.rooms),
                        nodes: Vec::new(),
                    },
                ));
                false
            } else {
                true
            }
        });
        for (user, remote) in &gone {
            unindex(&mut self.by_room, *user, &remote.rooms);
        }
        gone
    }

    /// `user`'s entry, if some node says they are online.
    pub fn get(&self, user: UserId) -> Option<&Remote> {
        self.users.get(&user)
    }

    /// The users online elsewhere who are in one of `rooms`.
    pub fn in_rooms<'a>(
        &'a self,
        rooms: &'a HashSet<ConversationId>,
    ) -> impl Iterator<Item = UserId> + 'a {
        rooms
            .iter()
            .filter_map(|room| self.by_room.get(room))
            .flatten()
            .copied()
    }
}

/// Takes `user` out of the index of each of `rooms`.
fn unindex(
    by_room: &mut HashMap<ConversationId, HashSet<UserId>>,
    user: UserId,
    rooms: &[ConversationId],
) {
    for room in rooms {
        if let Some(members) = by_room.get_mut(room) {
            members.remove(&user);
            if members.is_empty() {
                by_room.remove(room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_while_any_node_says_so_until_it_stops_repeating() {
        let mut remote = RemotePresence::default();
        let (u, t0) = (UserId(7), Instant::now());
        let room = ConversationId(3);
        assert!(remote.online(1, u, "ann".into(), vec![room], t0));
        assert!(!remote.online(2, u, "ann".into(), vec![room], t0));
        assert!(remote.offline(1, u).is_none(), "still on node 2");
        let rooms = [room].into_iter().collect();
        assert_eq!(remote.in_rooms(&rooms).collect::<Vec<_>>(), [u]);
        // Node 2 repeats later; node 3's word runs out.
        assert!(!remote.online(3, u, "ann".into(), vec![], t0));
        let t1 = t0 + REMOTE_TTL;
        remote.online(2, u, "ann".into(), vec![room], t1);
        assert!(remote.expire(t1).is_empty());
        assert_eq!(remote.get(u).map(|r| r.nodes.len()), Some(1));
        let gone = remote.offline(2, u).expect("online nowhere now");
        assert_eq!(gone.username, "ann");
        assert!(remote.get(u).is_none());
        // A node that stops repeating takes its users offline.
        remote.online(4, u, "ann".into(), vec![], t1);
        let gone = remote.expire(t1 + Duration::from_millis(1));
        assert_eq!(gone.len(), 1);
        assert!(remote.get(u).is_none());
        assert!(
            remote.by_room.is_empty(),
            "the room index follows the entries"
        );
    }
}
