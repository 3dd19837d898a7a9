//! The delivery half of the push sink: one worker per sink that packs
//! queued pairs into batches, signs and POSTs them, and retries with
//! backoff; see the parent module for the contract.

use super::*;

/// The most a retry after `attempt` failed attempts before it (0 for the
/// first retry) may wait: `BACKOFF_BASE` x 2^attempt, at most `BACKOFF_CAP`.
pub fn backoff_ceiling(attempt: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(BACKOFF_CAP)
}

/// The delay before a retry: uniform in `0..=backoff_ceiling(attempt)`
/// (full jitter, so replicas that failed together do not retry together).
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(attempt).as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ceiling))
}

/// What an answer's status means for its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken.
    Delivered,
    /// Worth another attempt (5xx, 429).
    Retry,
    /// Never worth another attempt (any other status).
    Refused,
}

/// The verdict on a status; see the module documentation.
pub fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Verdict::Retry
    } else {
        Verdict::Refused
    }
}

/// `v1=<hex of HMAC-SHA256(key, timestamp + "." + body)>`.
pub(super) fn signature(mac: &Hmac<Sha256>, timestamp: &str, body: &[u8]) -> String {
    let mut mac = mac.clone();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + digest.len() * 2);
    out.push_str("v1=");
    for byte in digest.iter() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
    out
}

/// `retry-after` in seconds; an HTTP-date is not read.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error with its causes (hyper's own text is only "client error").
pub(super) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Up to `max_batch` pairs, sent in one request.
pub(super) struct Batch {
    pub(super) chunks: Vec<Chunk>,
    pub(super) pairs: usize,
}

impl Batch {
    fn new(first: Chunk) -> Self {
        let pairs = first.pairs();
        Self {
            chunks: vec![first],
            pairs,
        }
    }

    fn add(&mut self, chunk: Chunk) {
        self.pairs += chunk.pairs();
        self.chunks.push(chunk);
    }

    fn body(&self) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            events: Vec<&'a Event>,
        }
        let body = Body {
            events: self.chunks.iter().map(|c| &c.event).collect(),
        };
        Bytes::from(serde_json::to_vec(&body).expect("push events serialise"))
    }
}

/// Packs chunks, in order, into batches of at most `max_batch` pairs.
pub(super) fn pack(chunks: impl IntoIterator<Item = Chunk>, max_batch: usize) -> Vec<Batch> {
    let mut batches: Vec<Batch> = Vec::new();
    for chunk in chunks {
        match batches.last_mut() {
            Some(last) if last.pairs + chunk.pairs() <= max_batch => last.add(chunk),
            _ => batches.push(Batch::new(chunk)),
        }
    }
    batches
}

/// How one attempt ended.
pub(super) enum Outcome {
    Delivered,
    Refused { status: StatusCode, answer: Bytes },
    Failed { why: String, retry_after: Option<Duration> },
}

/// Refusals since the last WARN about them.
#[derive(Default)]
pub(super) struct Refusals {
    pub(super) last_warned: Option<Instant>,
    pub(super) unreported: u64,
}

pub(super) struct Worker {
    pub(super) client: Client<HttpConnector, Full<Bytes>>,
    pub(super) url: Uri,
    pub(super) mac: Hmac<Sha256>,
    pub(super) timeout: Duration,
    pub(super) flush: Duration,
    pub(super) max_batch: usize,
    pub(super) metrics: GroupMetrics,
    pub(super) closing: CancellationToken,
    pub(super) refusals: Refusals,
}

impl Worker {
    pub(super) async fn run(mut self, mut chunks: mpsc::UnboundedReceiver<Chunk>) {
        // A chunk that did not fit in the last batch opens the next one.
        let mut carry: Option<Chunk> = None;
        let mut interrupted: Option<Batch> = None;
        while !self.closing.is_cancelled() {
            let first = match carry.take() {
                Some(chunk) => chunk,
                None => tokio::select! {
                    chunk = chunks.recv() => match chunk {
                        Some(chunk) => chunk,
                        None => return,
                    },
                    _ = self.closing.cancelled() => break,
                },
            };
            let mut batch = Batch::new(first);
            let flush_at = Instant::now() + self.flush;
            while batch.pairs < self.max_batch {
                let chunk = tokio::select! {
                    chunk = chunks.recv() => chunk,
                    _ = tokio::time::sleep_until(flush_at) => None,
                    _ = self.closing.cancelled() => None,
                };
                let Some(chunk) = chunk else { break };
                if batch.pairs + chunk.pairs() > self.max_batch {
                    carry = Some(chunk);
                    break;
                }
                batch.add(chunk);
            }
            if let Some(batch) = self.deliver(batch).await {
                interrupted = Some(batch);
                break;
            }
        }
        // Stopping: take nothing new, give what is held one last attempt.
        chunks.close();
        let mut held: Vec<Chunk> = carry.into_iter().collect();
        while let Ok(chunk) = chunks.try_recv() {
            held.push(chunk);
        }
        let batches = interrupted.into_iter().chain(pack(held, self.max_batch));
        self.last_attempts(batches.collect()).await;
    }

    /// Sends `batch` until it is delivered or refused; gives it back when
    /// the sink starts closing between two attempts.
    async fn deliver(&mut self, batch: Batch) -> Option<Batch> {
        let body = batch.body();
        let mut failures: u32 = 0;
        loop {
            match self.attempt(&body, self.timeout).await {
                Outcome::Delivered => {
                    self.metrics.pushes_delivered.inc_by(batch.pairs as u64);
                    return None;
                }
                Outcome::Refused { status, answer } => {
                    self.refused(&batch, status, &answer);
                    return None;
                }
                Outcome::Failed { why, retry_after } => {
                    self.metrics.push_batch_failures.inc();
                    failures = failures.saturating_add(1);
                    if failures == FAILURES_BEFORE_WARN {
                        tracing::warn!(
                            url = %self.url, why, failures, pushes = batch.pairs,
                            "the push receiver keeps failing; retrying (new pushes are dropped once the queue is full)"
                        );
                    } else {
                        tracing::debug!(url = %self.url, why, failures, "push attempt failed; retrying");
                    }
                    let delay =
                        retry_after.map_or_else(|| backoff(failures - 1), |d| d.clamp(BACKOFF_BASE, BACKOFF_CAP));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.closing.cancelled() => return Some(batch),
                    }
                }
            }
        }
    }

    /// One attempt per batch, all within one `timeout`; what fails is dropped.
    async fn last_attempts(&mut self, batches: Vec<Batch>) {
        let deadline = Instant::now() + self.timeout;
        let mut lost = 0usize;
        for batch in batches {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = if left.is_zero() {
                None
            } else {
                Some(self.attempt(&batch.body(), left).await)
            };
            match outcome {
                Some(Outcome::Delivered) => {
                    self.metrics.pushes_delivered.inc_by(batch.pairs as u64);
                }
                Some(Outcome::Refused { status, answer }) => self.refused(&batch, status, &answer),
                Some(Outcome::Failed { .. }) => {
                    self.metrics.push_batch_failures.inc();
                    lost += batch.pairs;
                }
                None => lost += batch.pairs,
            }
        }
        if lost > 0 {
            self.metrics.pushes_dropped.inc_by(lost as u64);
            tracing::warn!(
                url = %self.url, pushes = lost,
                "the group role stopped before these offline pushes were delivered; they are dropped"
            );
        }
    }

    async fn attempt(&self, body: &Bytes, limit: Duration) -> Outcome {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("hubbub-group/", env!("CARGO_PKG_VERSION")))
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature(&self.mac, &timestamp, body))
            .body(Full::new(body.clone()))
            .expect("a validated URL and ASCII headers make a valid request");
        let exchange = async {
            let answer = self.client.request(request).await.map_err(|e| chain(&e))?;
            let status = answer.status();
            let after = retry_after(answer.headers());
            // Read (bounded) so the connection can serve the next batch.
            let text = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, after, text))
        };
        match tokio::time::timeout(limit, exchange).await {
            Err(_) => Outcome::Failed {
                why: format!("no answer within {} ms", limit.as_millis()),
                retry_after: None,
            },
            Ok(Err(why)) => Outcome::Failed { why, retry_after: None },
            Ok(Ok((status, after, answer))) => match verdict(status) {
                Verdict::Delivered => Outcome::Delivered,
                Verdict::Retry => Outcome::Failed {
                    why: format!("answered {status}"),
                    retry_after: after,
                },
                Verdict::Refused => Outcome::Refused { status, answer },
            },
        }
    }

    fn refused(&mut self, batch: &Batch, status: StatusCode, answer: &[u8]) {
        self.metrics.push_batch_failures.inc();
        self.metrics.pushes_dropped.inc_by(batch.pairs as u64);
        self.refusals.unreported += 1;
        let preview = String::from_utf8_lossy(&answer[..answer.len().min(ANSWER_PREVIEW_BYTES)]);
        if self
            .refusals
            .last_warned
            .is_none_or(|at| at.elapsed() >= REFUSAL_WARN_EVERY)
        {
            tracing::warn!(
                url = %self.url,
                status = status.as_u16(),
                pushes = batch.pairs,
                refused_batches = self.refusals.unreported,
                answer = %preview,
                "the push receiver refused a batch; it is dropped, not retried"
            );
            self.refusals = Refusals {
                last_warned: Some(Instant::now()),
                unreported: 0,
            };
        } else {
            tracing::debug!(url = %self.url, status = status.as_u16(), answer = %preview, "push batch refused");
        }
    }
}
