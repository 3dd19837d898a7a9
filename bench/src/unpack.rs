//! Compressed batches, unpacked once per process: the viewers of a room all
//! receive the same bytes, so the benchmark need not pay for gunzip once per
//! viewer (a real client unpacks only its own copy).

use crate::scan::{self, Seen};
use flate2::read::GzDecoder;
use std::{
    collections::{HashMap, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
    io::Read,
};

/// Batches remembered at most.
const KEEP: usize = 256;

/// Recently unpacked batches, by a hash of their compressed bytes.
#[derive(Default)]
pub struct Unpacked {
    seen: HashMap<u64, Vec<Seen>>,
    order: VecDeque<u64>,
}

impl Unpacked {
    /// The messages of a compressed batch (empty when it does not unpack).
    pub fn get(&mut self, compressed: &[u8]) -> &[Seen] {
        let mut hasher = DefaultHasher::new();
        compressed.hash(&mut hasher);
        let key = hasher.finish();
        if !self.seen.contains_key(&key) {
            let mut plain = Vec::new();
            let mut messages = Vec::new();
            if GzDecoder::new(compressed).read_to_end(&mut plain).is_ok() {
                scan::scan_list(&plain, |seen| messages.push(seen));
            }
            if self.order.len() >= KEEP
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
            self.order.push_back(key);
            self.seen.insert(key, messages);
        }
        &self.seen[&key]
    }
}
