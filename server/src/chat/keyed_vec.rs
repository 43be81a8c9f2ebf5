//! A small map from `u64` keys to values, kept as a vector sorted by key: what a user's live
//! connections are held in ([`crate::chat::users`]). A user has one or a few connections, and a
//! hash map with one entry already allocates four buckets; this holds one slot for one entry,
//! doubles past it, and gives memory back when it is less than half full. Keys are handed out
//! in increasing order, so an insert is a push at the end; a lookup is a binary search; a
//! removal shifts the entries after it (a user's connections: a few, at worst a few thousand).

/// Values by increasing `u64` key.
pub struct KeyedVec<V>(Vec<(u64, V)>);

impl<V> Default for KeyedVec<V> {
    fn default() -> Self {
        KeyedVec(Vec::new())
    }
}

impl<V> KeyedVec<V> {
    /// Insert `value` at `key`, replacing any value already there.
    pub fn insert(&mut self, key: u64, value: V) {
        match self.0.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(at) => self.0[at].1 = value,
            Err(at) => {
                // A first entry gets a slot of its own; past it the vector doubles (growing by
                // one would reallocate on every insert and strew the heap with the old blocks).
                if self.0.capacity() == 0 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, (key, value));
            }
        }
    }

    pub fn get_mut(&mut self, key: &u64) -> Option<&mut V> {
        let at = self.0.binary_search_by_key(key, |(k, _)| *k).ok()?;
        Some(&mut self.0[at].1)
    }

    pub fn contains_key(&self, key: &u64) -> bool {
        self.0.binary_search_by_key(key, |(k, _)| *k).is_ok()
    }

    /// Remove `key`'s value.
    pub fn remove(&mut self, key: &u64) -> Option<V> {
        let at = self.0.binary_search_by_key(key, |(k, _)| *k).ok()?;
        let (_, value) = self.0.remove(at);
        self.fit();
        Some(value)
    }

    /// Keep only the entries `keep` returns true for.
    pub fn retain(&mut self, mut keep: impl FnMut(&u64, &mut V) -> bool) {
        self.0.retain_mut(|(key, value)| keep(key, value));
        self.fit();
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, value)| value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Give memory back once less than half of it is used.
    fn fit(&mut self) {
        if self.0.len() * 2 < self.0.capacity() {
            self.0.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_has_in_key_order_and_gives_memory_back() {
        let mut map = KeyedVec::default();
        map.insert(9, 90);
        assert_eq!(map.0.capacity(), 1, "one entry, one slot");
        assert_eq!(map.remove(&9), Some(90));
        for key in [3, 1, 2, 5, 4] {
            map.insert(key, key * 10);
        }
        assert_eq!(map.len(), 5);
        assert!(map.0.capacity() <= 8, "doubled as it grew");
        assert_eq!(
            map.values().copied().collect::<Vec<_>>(),
            [10, 20, 30, 40, 50]
        );
        map.insert(2, 21);
        assert_eq!(map.get_mut(&2), Some(&mut 21));
        assert_eq!(map.len(), 5, "an insert on a key replaces its value");
        assert_eq!(map.remove(&4), Some(40));
        assert_eq!(map.remove(&4), None);
        assert!(!map.contains_key(&4));
        map.retain(|key, _| *key == 1);
        assert_eq!(map.values().copied().collect::<Vec<_>>(), [10]);
        assert!(
            map.0.capacity() < 5,
            "less than half used: the rest is given back"
        );
        assert_eq!(map.remove(&1), Some(10));
        assert!(map.is_empty());
        assert_eq!(map.0.capacity(), 0);
    }
}
