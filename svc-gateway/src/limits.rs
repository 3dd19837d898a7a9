//! `RateLimiter`: a token bucket per caller, checked at the gateway before a
//! call costs anything further down (room messages per user; Connect,
//! JoinRoom and LeaveRoom per caller).

use hubbub_kit::{rate::TokenBucket, sharded::Sharded};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// A token bucket per caller seen recently.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Sharded<HashMap<String, TokenBucket>>,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    /// `rate` messages per second per user, bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            buckets: Sharded::default(),
            rate,
            burst,
        }
    }

    /// Takes one message from `user_id`'s allowance; when it is spent, how
    /// long until the next is allowed.
    pub fn check(&self, user_id: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut shard = self.buckets.lock(user_id);
        let bucket = match shard.get_mut(user_id) {
            Some(bucket) => bucket,
            None => shard
                .entry(user_id.to_owned())
                .or_insert_with(|| TokenBucket::at(self.rate, self.burst, now)),
        };
        bucket.take_at(now)
    }

    /// Forgets users whose allowance is full again (they behave as new), so
    /// memory follows the active senders only.
    pub fn sweep(&self) {
        let now = Instant::now();
        for mut shard in self.buckets.each() {
            shard.retain(|_, bucket| !bucket.is_full_at(now));
        }
    }

    /// Users remembered now.
    pub fn len(&self) -> usize {
        self.buckets.each().map(|shard| shard.len()).sum()
    }

    /// True when no user is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;

    #[test]
    fn each_user_has_their_own_allowance_and_idle_ones_are_forgotten() {
        let limiter = RateLimiter::new(1000.0, 2.0);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
        assert!(limiter.check("b").is_ok(), "b is not limited by a");
        std::thread::sleep(std::time::Duration::from_millis(5));
        limiter.sweep();
        assert!(limiter.is_empty());
    }
}
