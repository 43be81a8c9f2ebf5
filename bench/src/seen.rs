//! Which messages one bot has already seen, so that a first arrival is told from a duplicate
//! while the run goes on, at no allocation per arrival: per author (a room has few, so a map
//! entry is made once per author, then only looked up), a bitmap over the author's client ids.
//! An author's client ids are consecutive (Quibble's client counts up from a random seed, the
//! peers' links from 1), so the bitmap spans about as many bits as the author sent messages:
//! it starts at the word of the first id seen, grows by whole words as ids advance and, for an
//! id below its start (out of order), by whole words at the front. An id further than
//! [`MAX_SPAN`] from the rest (which no server here sends) goes to an exact set beside it, so
//! the answer stays exact whatever arrives.

use std::collections::{HashMap, HashSet};

use quibble_client::UserId;

use crate::record::MessageKey;

/// The widest span of one author's client ids kept as bits (2^24 ids: 2 MiB).
const MAX_SPAN: u64 = 1 << 24;
const WORD: u64 = u64::BITS as u64;

/// The messages seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    authors: HashMap<UserId, Bits>,
    /// Ids outside their author's span.
    far: HashSet<MessageKey>,
}

/// One author's client ids seen: bit `i` of the words is id `start + i`.
#[derive(Debug)]
struct Bits {
    /// A multiple of [`WORD`].
    start: u64,
    words: Vec<u64>,
}

impl Seen {
    /// Record `key`; whether it is new.
    pub fn insert(&mut self, key: MessageKey) -> bool {
        let (author, id) = key;
        let bits = self.authors.entry(author).or_insert_with(|| Bits {
            start: id - id % WORD,
            words: Vec::new(),
        });
        match bits.insert(id) {
            Some(new) => new,
            None => self.far.insert(key),
        }
    }
}

impl Bits {
    /// Record `id`: whether it is new, or `None` if it lies too far from the span.
    fn insert(&mut self, id: u64) -> Option<bool> {
        if id < self.start {
            let start = id - id % WORD;
            let end = self.start.saturating_add(WORD * self.words.len() as u64);
            if end - start > MAX_SPAN {
                return None;
            }
            let more = usize::try_from((self.start - start) / WORD).ok()?;
            self.words.splice(0..0, std::iter::repeat_n(0, more));
            self.start = start;
        }
        let offset = id - self.start;
        if offset >= MAX_SPAN {
            return None;
        }
        let word = usize::try_from(offset / WORD).ok()?;
        if word >= self.words.len() {
            // Grown geometrically by `Vec`, so this is rare.
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << (offset % WORD);
        let new = self.words[word] & mask == 0;
        self.words[word] |= mask;
        Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_first_arrivals_from_duplicates_in_any_order() {
        let mut seen = Seen::default();
        let (ann, bob) = (UserId(1), UserId(2));
        let seed = 9_000_000_123;
        // In order, a gap, then the gap filled late, and ids below the first one seen.
        for id in [seed, seed + 1, seed + 5, seed + 3, seed - 70, seed - 1] {
            assert!(seen.insert((ann, id)), "{id} is new");
        }
        for id in [seed, seed + 5, seed - 70, seed - 1] {
            assert!(!seen.insert((ann, id)), "{id} was seen");
        }
        assert!(seen.insert((ann, seed + 2)));
        // Another author's ids are apart.
        assert!(seen.insert((bob, seed)));
        assert!(!seen.insert((bob, seed)));
        // Ids far from the span, above and below, are still told apart exactly.
        for id in [seed + MAX_SPAN * 3, 5, u64::MAX] {
            assert!(seen.insert((ann, id)), "{id} is new");
            assert!(!seen.insert((ann, id)), "{id} was seen");
        }
        // The first id of an author at 0 and at the top of the range.
        assert!(seen.insert((UserId(3), 0)));
        assert!(seen.insert((UserId(4), u64::MAX)));
        assert!(!seen.insert((UserId(4), u64::MAX)));
    }
}
