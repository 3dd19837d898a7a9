//! `PushSink`: members with no online session, handed to the platform's
//! push service (an HTTP webhook), batched, signed and retried.
//!
//! The notify step ([`crate::notify`]) asks presence where a commit's
//! members are; the users it did not find on any gateway are offline, and
//! for each message of the commit they are queued here as user-message
//! pairs (a *push*), never for their own messages and never for group
//! events (membership changes). Off unless `[group.push] url` is set.
//!
//! # The request
//! `POST <url>`, `content-type: application/json`:
//!
//! ```json
//! {"events": [{
//!   "message_id": "g-42:17",          // "{group_id}:{seq}", the same on every retry
//!   "group_id": "g-42",
//!   "seq": 17,
//!   "sender_user_id": "alice",
//!   "content_type": "text/plain",
//!   "sent_at_ms": 1767225600000,
//!   "user_ids": ["bob", "carol"],     // offline members to push; never the sender
//!   "body_base64": "aGVsbG8=",        // only when not encrypted and at most max_body_bytes
//!   "body_truncated": true,           // only when the body was longer than max_body_bytes
//!   "encrypted": false                // end-to-end encrypted group: a body never goes
//! }]}
//! ```
//!
//! One event per message, with its offline users; a message with more
//! offline users than `max_batch` is split into several events with the same
//! `message_id` and different `user_ids`. A request holds at most
//! `max_batch` pairs and leaves when full or `flush_ms` after its first pair.
//!
//! # The signature
//! Headers `x-hubbub-timestamp: <unix seconds>` and
//! `x-hubbub-signature: v1=<hex of HMAC-SHA256(secret, timestamp + "." + body)>`,
//! the body being the exact bytes received. A receiver:
//! 1. reads the raw body before parsing it;
//! 2. computes `HMAC-SHA256(secret, "<x-hubbub-timestamp>." + body)` and
//!    compares its lowercase hex with what follows `v1=`, in constant time;
//! 3. refuses a timestamp more than a few minutes from its clock (a replay
//!    of a captured request carries its old timestamp, and changing it
//!    breaks the signature);
//! 4. dedupes on (`message_id`, user id): delivery is at least once.
//!
//! A retry is signed again with a fresh timestamp over the same body.
//!
//! # Answers and retries
//! - 2xx: delivered (`hubbub_group_pushes_delivered_total`, in pairs).
//! - 5xx, 429, no connection, no answer within `timeout_ms`: retried with
//!   exponential backoff and full jitter (a random delay up to
//!   200 ms x 2^attempt, at most 30 s), or after `retry-after` seconds when a
//!   5xx or 429 says so (an HTTP-date there is ignored; at most 30 s).
//!   Each failed attempt counts in `hubbub_group_push_batch_failures_total`.
//! - Any other status (4xx but 429, 3xx): a permanent refusal. The batch is
//!   dropped, counted in `hubbub_group_pushes_dropped_total` and logged at WARN
//!   with the status and the start of the answer (at most one such line per
//!   10 s; the line counts the refusals in between).
//!
//! One batch is in flight at a time and is retried until it is delivered or
//! refused, so a receiver that is down holds the queue; the queue then
//! fills and new pushes are dropped (counted), never waited for: a commit
//! never slows down for the push.
//!
//! # Limits
//! Pending pushes live in memory only, at most `queue` pairs per replica
//! (queued or being retried). A replica that crashes loses what it had not
//! delivered; one that stops gives what it holds one last attempt, within
//! one `timeout_ms`, and counts the rest as dropped. A notify dropped on the
//! notifier's own full queue (`hubbub_group_notifies_dropped_total`), or whose
//! presence call failed, pushes nothing: a user presence could not place is
//! not taken for offline. None of this loses a message: devices pull it.
//! The URL is plain `http`: TLS to the receiver belongs to a sidecar or the
//! mesh.

use crate::config::PushConfig;
use crate::metrics::GroupMetrics;
use crate::store::{GROUP_EVENT_CONTENT_TYPE, GroupMessage};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::Rng;
use serde::Serialize;
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod delivery;
use delivery::*;
pub use delivery::{Verdict, backoff, backoff_ceiling, verdict};

/// Shortest signing secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;
/// The first retry waits up to this; each next one up to twice the last.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// No retry waits longer, `retry-after` included.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Header carrying the unix seconds the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-hubbub-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-hubbub-signature";
/// Failed attempts of one batch before a WARN says the receiver is away.
const FAILURES_BEFORE_WARN: u32 = 5;
/// At most one WARN about refused batches per this.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);
/// Bytes of an answer read (and then dropped): enough for an error text,
/// and reading it lets the connection be reused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Bytes of a refusal's answer shown in the log.
const ANSWER_PREVIEW_BYTES: usize = 256;

/// Why `[group.push]` cannot be used; each says what to set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushConfigError {
    /// A URL without its secret.
    #[error(
        "group.push.url is set but group.push.secret is not: set group.push.secret \
         (or HUBBUB_GROUP__PUSH__SECRET) to a random secret of at least {MIN_SECRET_BYTES} bytes \
         (`openssl rand -hex 32`), the one the push receiver verifies signatures with"
    )]
    MissingSecret,
    /// A secret too short to sign with.
    #[error("group.push.secret is {0} bytes; use at least {MIN_SECRET_BYTES} (`openssl rand -hex 32`)")]
    ShortSecret(usize),
    /// A URL the sink cannot post to.
    #[error("group.push.url {url:?} {why}")]
    Url {
        /// The configured value.
        url: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The validated target of an enabled sink.
struct Target {
    url: Uri,
    secret: Vec<u8>,
}

fn target(config: &PushConfig) -> Result<Option<Target>, PushConfigError> {
    // Empty counts as unset: charts and env files often carry `url = ""`.
    let Some(url) = config.url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let bad = |why: &str| PushConfigError::Url {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|e| bad(&format!("is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "uses https, which the push sink does not speak: give an http:// URL inside the cluster \
                 and put TLS on a sidecar or the mesh",
            ));
        }
        _ => return Err(bad("must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    let secret = config.secret.as_deref().ok_or(PushConfigError::MissingSecret)?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(PushConfigError::ShortSecret(secret.len()));
    }
    Ok(Some(Target {
        url: uri,
        secret: secret.as_bytes().to_vec(),
    }))
}

/// A commit's messages, as the notify step hands them to the sink.
#[derive(Debug, Clone, Copy)]
pub struct Pushable<'a> {
    /// The group's bodies are end-to-end encrypted: none is ever sent.
    pub end_to_end_encrypted: bool,
    /// The commit's messages in the group, ascending by seq.
    pub messages: &'a [GroupMessage],
}

/// What of a commit may be pushed, already cut to what may leave the
/// replica (no group events, no encrypted or long bodies): small, so the
/// notifier can hold it until presence says who is offline.
#[derive(Debug, Clone)]
pub struct PushMessages {
    group_id: String,
    encrypted: bool,
    messages: Vec<PushMessage>,
}

#[derive(Debug, Clone)]
struct PushMessage {
    seq: u64,
    sender_user_id: String,
    content_type: String,
    sent_at_ms: i64,
    body_base64: Option<String>,
    body_truncated: bool,
}

/// One event of the request body; see the module documentation.
#[derive(Debug, Serialize)]
struct Event {
    message_id: String,
    group_id: String,
    seq: u64,
    sender_user_id: String,
    content_type: String,
    sent_at_ms: i64,
    user_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    body_truncated: bool,
    encrypted: bool,
}

/// An event waiting to be sent, holding its room in the queue: the permits
/// go back when it is delivered or dropped, so the queue bounds what is
/// queued and what is being retried alike.
struct Chunk {
    event: Event,
    _room: OwnedSemaphorePermit,
}

impl Chunk {
    fn pairs(&self) -> usize {
        self.event.user_ids.len()
    }
}

/// The handle pushes are queued through. Cheap to clone; a disabled sink
/// (no URL) takes nothing.
#[derive(Clone)]
pub struct PushSink {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    chunks: mpsc::UnboundedSender<Chunk>,
    /// One permit per pair the sink may hold; `chunks` is unbounded because
    /// this bounds it.
    room: Arc<Semaphore>,
    capacity: usize,
    max_batch: usize,
    max_body_bytes: usize,
    timeout: Duration,
    metrics: GroupMetrics,
    closing: CancellationToken,
    // Why a std lock: taken once, by `close`, never across an await.
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: the worker gives what it holds its last
        // attempt and stops.
        self.closing.cancel();
    }
}

impl std::fmt::Debug for PushSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSink")
            .field("enabled", &self.is_enabled())
            .field("pending", &self.pending())
            .finish()
    }
}

impl PushSink {
    /// A sink that pushes nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Checks `config` without starting anything, so a role can refuse to
    /// start before it opens its store.
    pub fn check(config: &PushConfig) -> Result<(), PushConfigError> {
        target(config).map(drop)
    }

    /// Starts the sink's worker when `config.url` is set (a disabled sink
    /// otherwise). Must be called inside a Tokio runtime.
    pub fn start(config: &PushConfig, metrics: GroupMetrics) -> Result<Self, PushConfigError> {
        let Some(target) = target(config)? else {
            return Ok(Self::disabled());
        };
        let capacity = config.queue.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        // A chunk is at most one batch, and a batch must fit in the queue.
        let max_batch = config.max_batch.clamp(1, capacity);
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        let (chunks, receiver) = mpsc::unbounded_channel();
        let closing = CancellationToken::new();
        let worker = Worker {
            client,
            url: target.url,
            mac: Hmac::new_from_slice(&target.secret).expect("HMAC takes keys of any length"),
            timeout,
            flush: Duration::from_millis(config.flush_ms),
            max_batch,
            metrics: metrics.clone(),
            closing: closing.clone(),
            refusals: Refusals::default(),
        };
        let handle = tokio::spawn(worker.run(receiver));
        Ok(Self {
            inner: Some(Arc::new(Inner {
                chunks,
                room: Arc::new(Semaphore::new(capacity)),
                capacity,
                max_batch,
                max_body_bytes: config.max_body_bytes,
                timeout,
                metrics,
                closing,
                worker: Mutex::new(Some(handle)),
            })),
        })
    }

    /// True when a URL is configured.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// User-message pairs held (queued or being sent).
    pub fn pending(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.capacity - inner.room.available_permits())
    }

    /// What of `pushable` (a commit in `group_id`) may be pushed; None when
    /// the sink is disabled or nothing may be (group events only).
    pub fn prepare(&self, group_id: &str, pushable: Pushable<'_>) -> Option<PushMessages> {
        let inner = self.inner.as_ref()?;
        let messages: Vec<PushMessage> = pushable
            .messages
            .iter()
            .filter(|m| m.content_type != GROUP_EVENT_CONTENT_TYPE && !m.sender_user_id.is_empty())
            .map(|m| {
                let (body_base64, body_truncated) = if pushable.end_to_end_encrypted {
                    (None, false)
                } else if m.body.len() <= inner.max_body_bytes {
                    (Some(STANDARD.encode(&m.body)), false)
                } else {
                    (None, true)
                };
                PushMessage {
                    seq: m.seq,
                    sender_user_id: m.sender_user_id.clone(),
                    content_type: m.content_type.clone(),
                    sent_at_ms: m.sent_at_ms,
                    body_base64,
                    body_truncated,
                }
            })
            .collect();
        (!messages.is_empty()).then(|| PushMessages {
            group_id: group_id.to_owned(),
            encrypted: pushable.end_to_end_encrypted,
            messages,
        })
    }

    /// Queues a push of every message in `messages` to each of
    /// `offline_user_ids` but its sender; never waits. Pairs that do not
    /// fit in the queue are dropped and counted.
    pub fn enqueue(&self, messages: &PushMessages, offline_user_ids: &[String]) {
        let Some(inner) = &self.inner else { return };
        for message in &messages.messages {
            let users: Vec<&String> = offline_user_ids
                .iter()
                .filter(|user| **user != message.sender_user_id)
                .collect();
            for part in users.chunks(inner.max_batch) {
                let pairs = part.len();
                // `pairs` <= max_batch <= capacity <= u32::MAX.
                let Ok(room) = inner.room.clone().try_acquire_many_owned(pairs as u32) else {
                    inner.metrics.pushes_dropped.inc_by(pairs as u64);
                    continue;
                };
                let event = Event {
                    message_id: format!("{}:{}", messages.group_id, message.seq),
                    group_id: messages.group_id.clone(),
                    seq: message.seq,
                    sender_user_id: message.sender_user_id.clone(),
                    content_type: message.content_type.clone(),
                    sent_at_ms: message.sent_at_ms,
                    user_ids: part.iter().map(|user| (*user).clone()).collect(),
                    body_base64: message.body_base64.clone(),
                    body_truncated: message.body_truncated,
                    encrypted: messages.encrypted,
                };
                if inner.chunks.send(Chunk { event, _room: room }).is_err() {
                    // The worker has stopped.
                    inner.metrics.pushes_dropped.inc_by(pairs as u64);
                }
            }
        }
    }

    /// `prepare` then `enqueue`: pushes `pushable` (a commit in `group_id`)
    /// to `offline_user_ids`.
    pub fn push(&self, group_id: &str, pushable: Pushable<'_>, offline_user_ids: &[String]) {
        if let Some(messages) = self.prepare(group_id, pushable) {
            self.enqueue(&messages, offline_user_ids);
        }
    }

    /// Stops the worker: what it holds gets one last attempt, within one
    /// `timeout_ms`, and the rest is counted as dropped. Later pushes are
    /// dropped and counted.
    pub async fn close(&self) {
        let Some(inner) = &self.inner else { return };
        inner.closing.cancel();
        let worker = inner.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut worker) = worker {
            // The worker bounds its last attempts itself; this only keeps a
            // stuck one from holding the shutdown.
            let bound = inner.timeout.saturating_mul(2) + Duration::from_secs(1);
            if tokio::time::timeout(bound, &mut worker).await.is_err() {
                worker.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_the_base_to_the_cap_with_full_jitter() {
        assert_eq!(backoff_ceiling(0), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(1), Duration::from_millis(400));
        assert_eq!(backoff_ceiling(7), Duration::from_millis(25_600));
        assert_eq!(backoff_ceiling(8), BACKOFF_CAP);
        assert_eq!(backoff_ceiling(u32::MAX), BACKOFF_CAP);
        for attempt in [0, 1, 3, 8, 40, u32::MAX] {
            for _ in 0..500 {
                assert!(backoff(attempt) <= backoff_ceiling(attempt), "attempt {attempt}");
            }
        }
        // Full jitter: delays spread over the whole range, not just its top.
        let ceiling = backoff_ceiling(5);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff(5)).collect();
        assert!(delays.iter().any(|d| *d < ceiling / 4));
        assert!(delays.iter().any(|d| *d > ceiling * 3 / 4));
    }

    #[test]
    fn server_errors_and_429_are_retried_other_failures_refused() {
        assert_eq!(verdict(StatusCode::OK), Verdict::Delivered);
        assert_eq!(verdict(StatusCode::ACCEPTED), Verdict::Delivered);
        assert_eq!(verdict(StatusCode::SERVICE_UNAVAILABLE), Verdict::Retry);
        assert_eq!(verdict(StatusCode::INTERNAL_SERVER_ERROR), Verdict::Retry);
        assert_eq!(verdict(StatusCode::TOO_MANY_REQUESTS), Verdict::Retry);
        assert_eq!(verdict(StatusCode::BAD_REQUEST), Verdict::Refused);
        assert_eq!(verdict(StatusCode::UNAUTHORIZED), Verdict::Refused);
        assert_eq!(verdict(StatusCode::MOVED_PERMANENTLY), Verdict::Refused);
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed apart: Python's hmac.new(b"Jefe", b'1700000000.{"events":[]}', sha256).
        let mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        assert_eq!(
            signature(&mac, "1700000000", br#"{"events":[]}"#),
            "v1=a110c986da302c5f37accf36f899e479e3fefc1bf8e4d6b0c91b30f3838ed197"
        );
    }

    #[test]
    fn config_errors_name_what_to_set() {
        let mut config = PushConfig::default();
        assert!(target(&config).unwrap().is_none());
        config.url = Some("  ".into());
        assert!(target(&config).unwrap().is_none(), "an empty url is unset");
        config.url = Some("http://push.internal:8080/hubbub".into());
        let missing = target(&config).err().unwrap();
        assert_eq!(missing, PushConfigError::MissingSecret);
        assert!(missing.to_string().contains("HUBBUB_GROUP__PUSH__SECRET"));
        config.secret = Some("short".into());
        assert_eq!(target(&config).err(), Some(PushConfigError::ShortSecret(5)));
        config.secret = Some("s".repeat(MIN_SECRET_BYTES));
        assert!(target(&config).unwrap().is_some());
        for (url, says) in [
            ("https://push.internal/hubbub", "https"),
            ("push.internal:8080", "http://"),
            ("not a url", "not a URL"),
        ] {
            config.url = Some(url.into());
            let error = target(&config).err().unwrap().to_string();
            assert!(
                error.contains("group.push.url") && error.contains(says),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn the_config_section_rejects_unknown_keys_and_redacts_its_secret() {
        let config: PushConfig = serde_json::from_value(serde_json::json!({
            "url": "http://push:8080", "secret": "0123456789abcdef0123456789abcdef"
        }))
        .unwrap();
        assert_eq!((config.max_batch, config.flush_ms, config.queue), (500, 200, 10_000));
        assert_eq!(config.max_body_bytes, 1024);
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        let unknown = serde_json::from_value::<PushConfig>(serde_json::json!({"batch": 3}));
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    }
}
