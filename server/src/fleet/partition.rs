//! Which Redis channel carries a conversation: a fixed number of partitions, a conversation in
//! one of them by a hash of its id, each partition one sharded pub/sub channel. Every channel
//! name carries its own hash tag (`{qN}`), so on Redis Cluster each channel lives in one slot
//! and the partitions spread over the masters; a command never names two channels (a
//! multi-channel `SSUBSCRIBE` across slots is refused there). One more channel, [`CONTROL`],
//! carries the fleet's control events (bans, sign-outs, typing, ...), which have no order to
//! keep with any conversation.

use quibble_protocol::ConversationId;

/// How many partitions (and channels) the fleet uses. Every node must agree: it is part of
/// the fleet's wire format.
pub const PARTITIONS: usize = 16;
/// The index of the control channel, after the partitions'.
pub const CONTROL: usize = PARTITIONS;
/// Every channel a node subscribes: the partitions' and the control channel.
pub const CHANNELS: usize = PARTITIONS + 1;

/// The partition `conversation`'s commits travel on. Conversation ids are dense and
/// sequential, so they are mixed first (Fibonacci hashing) to spread neighbours apart.
pub fn partition_of(conversation: ConversationId) -> usize {
    let mixed = conversation.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 60) as usize % PARTITIONS
}

/// The sharded pub/sub channel of partition `index` (or of [`CONTROL`]).
pub fn channel(index: usize) -> String {
    if index == CONTROL {
        return CONTROL_CHANNEL.to_owned();
    }
    format!("quibble:{{q{index}}}:commits")
}

const CONTROL_CHANNEL: &str = "quibble:{qctl}:control";

/// The partition (or [`CONTROL`]) whose channel is `name`, if it is one of ours.
pub fn of_channel(name: &[u8]) -> Option<usize> {
    if name == CONTROL_CHANNEL.as_bytes() {
        return Some(CONTROL);
    }
    let rest = name.strip_prefix(b"quibble:{q")?;
    let rest = rest.strip_suffix(b"}:commits")?;
    let index: usize = std::str::from_utf8(rest).ok()?.parse().ok()?;
    (index < PARTITIONS && channel(index).as_bytes() == name).then_some(index)
}

/// How many hash slots Redis Cluster has.
pub const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of `key` (a channel name here): CRC16/XMODEM of its hash tag
/// (the text between the first `{` and the next `}`, when not empty) or of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn channels_name_their_partition_and_nothing_else() {
        for index in 0..CHANNELS {
            assert_eq!(of_channel(channel(index).as_bytes()), Some(index));
        }
        for other in [
            &b"quibble:{q16}:commits"[..],
            b"quibble:{q01}:commits",
            b"quibble:{q-1}:commits",
            b"quibble:{q1}:other",
            b"",
        ] {
            assert_eq!(of_channel(other), None, "{other:?}");
        }
    }

    #[test]
    fn conversations_spread_over_every_partition() {
        let mut counts = [0usize; PARTITIONS];
        for id in 1..=1600u64 {
            counts[partition_of(ConversationId(id))] += 1;
        }
        // 100 each on average; no partition is empty or holds a quarter.
        assert!(counts.iter().all(|&n| n > 50 && n < 400), "{counts:?}");
    }

    #[test]
    fn slots_follow_the_cluster_spec() {
        // The examples of the Redis Cluster specification.
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(
            slot(b"foo{}{bar}"),
            crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % SLOTS
        );
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn each_channel_has_its_own_slot() {
        let slots: HashSet<u16> = (0..CHANNELS)
            .map(|index| slot(channel(index).as_bytes()))
            .collect();
        assert_eq!(slots.len(), CHANNELS);
    }
}
