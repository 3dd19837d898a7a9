//! `TokenBucket`: a rate with a burst. Used for publish limits (refuse what
//! is over) and delivery caps (sample away what is over).

use std::time::{Duration, Instant};
use tonic::Status;

/// RESOURCE_EXHAUSTED with `message` and a `retry-after-ms` metadata entry,
/// so clients need not parse the message to back off.
pub fn exhausted_retry_after(message: impl Into<String>, retry_after: Duration) -> Status {
    let mut status = Status::resource_exhausted(message);
    let millis = retry_after.as_millis().max(1).to_string();
    if let Ok(value) = millis.parse() {
        status.metadata_mut().insert("retry-after-ms", value);
    }
    status
}

/// Tokens refill at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate of 0 refuses everything after the burst.
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        Self::at(rate_per_sec, burst, Instant::now())
    }

    /// A full bucket as of `now`.
    pub fn at(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate_per_sec.max(0.0),
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// Takes one token at `now`; when none is left, how long until one is.
    pub fn take_at(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.rate == 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    /// Takes one token now.
    pub fn take(&mut self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }

    /// True when the bucket has been full long enough to be forgotten
    /// (a new one would behave the same).
    pub fn is_full_at(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }
}

/// Unix milliseconds now (0 before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_then_the_rate_with_a_retry_hint() {
        let start = Instant::now();
        let mut bucket = TokenBucket::at(10.0, 3.0, start);
        for _ in 0..3 {
            assert!(bucket.take_at(start).is_ok());
        }
        let wait = bucket.take_at(start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait >= Duration::from_millis(99),
            "{wait:?}"
        );
        assert!(bucket.take_at(start + Duration::from_millis(100)).is_ok());
        assert!(bucket.take_at(start + Duration::from_millis(100)).is_err());
        assert!(bucket.is_full_at(start + Duration::from_secs(1)));
    }
}
