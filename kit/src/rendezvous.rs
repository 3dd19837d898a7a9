//! Rendezvous (highest random weight) hashing: which instance owns a key.
//! Every role computes the same answer from the same instance list, and a
//! change of the list moves only the keys of the instances that came or went.

use std::hash::{Hash, Hasher};

/// The index of the instance in `instances` that owns `key`, or `None` for
/// an empty list.
pub fn owner<S: AsRef<str>>(key: &str, instances: &[S]) -> Option<usize> {
    instances
        .iter()
        .enumerate()
        .max_by_key(|(_, instance)| weight(key, instance.as_ref()))
        .map(|(index, _)| index)
}

/// A stable 64-bit weight of (key, instance). FNV-1a: fixed across builds and
/// platforms, unlike std's randomly seeded hasher.
fn weight(key: &str, instance: &str) -> u64 {
    let mut hasher = Fnv1a::default();
    key.hash(&mut hasher);
    instance.hash(&mut hasher);
    // Mix so neighbouring hashes spread over the whole range.
    let mut x = hasher.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn owners_are_stable_and_spread_and_move_little() {
        let three = ["room-0", "room-1", "room-2"];
        let keys: Vec<String> = (0..3000).map(|i| format!("room-{i}")).collect();
        let mut counts = [0usize; 3];
        for key in &keys {
            let first = owner(key, &three).unwrap();
            assert_eq!(owner(key, &three), Some(first), "same answer twice");
            counts[first] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "spread: {counts:?}");

        let four = ["room-0", "room-1", "room-2", "room-3"];
        let moved = keys
            .iter()
            .filter(|key| {
                let before = three[owner(key, &three).unwrap()];
                let after = four[owner(key, &four).unwrap()];
                before != after && after != "room-3"
            })
            .count();
        assert_eq!(moved, 0, "adding an instance only takes keys for itself");
        assert_eq!(owner::<&str>("x", &[]), None);
    }
}
