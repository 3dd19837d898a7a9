//! `Sharded<T>`: a value split over N mutexes by a hash of its key, so that
//! work on different keys rarely waits on one lock (the fan-out state of
//! gateways and room instances lives in these).

use std::{
    hash::{BuildHasher, RandomState},
    sync::{Mutex, MutexGuard},
};

/// Shards most maps here use: enough that two cores almost never collide.
pub const DEFAULT_SHARDS: usize = 64;

/// N independently locked parts of a map-like value.
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Mutex<T>]>,
    hasher: RandomState,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self::new(DEFAULT_SHARDS)
    }
}

impl<T: Default> Sharded<T> {
    /// `shards` empty parts (at least one).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<T> Sharded<T> {
    /// Locks the part holding `key`.
    pub fn lock(&self, key: &str) -> MutexGuard<'_, T> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        lock(&self.shards[index])
    }

    /// Locks each part in turn (one at a time, never all at once).
    pub fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.shards.iter().map(lock)
    }
}

/// A poisoned shard means a panic mid-update elsewhere; its data is still
/// the best we have, so keep serving rather than spreading the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::Sharded;
    use std::collections::HashMap;

    #[test]
    fn a_key_always_lands_in_the_same_shard() {
        let map: Sharded<HashMap<String, u32>> = Sharded::new(8);
        for i in 0..100 {
            map.lock(&format!("k{i}")).insert(format!("k{i}"), i);
        }
        for i in 0..100 {
            assert_eq!(map.lock(&format!("k{i}")).get(&format!("k{i}")), Some(&i));
        }
        assert_eq!(map.each().map(|shard| shard.len()).sum::<usize>(), 100);
    }
}
