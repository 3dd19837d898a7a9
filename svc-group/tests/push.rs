//! The offline push sink against a real HTTP receiver on a free port: the
//! receiver checks every signature with the secret and answers from a
//! script (then a default), and the tests drive the sink through its public
//! API. Waits poll a predicate with a generous bound; nothing measures speed.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use svc_group::config::PushConfig;
use svc_group::metrics::GroupMetrics;
use svc_group::push::{PushConfigError, PushSink, Pushable};
use svc_group::store::{GROUP_EVENT_CONTENT_TYPE, GroupMessage};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
}

const OK: Answer = Answer {
    status: 200,
    retry_after: None,
};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    /// What it answered.
    status: u16,
    /// The signature matched HMAC-SHA256(secret, timestamp "." body).
    signed: bool,
    /// The timestamp is within five minutes of now.
    fresh: bool,
    body: Value,
}

impl Received {
    fn events(&self) -> &[Value] {
        self.body["events"].as_array().expect("an events array")
    }

    fn pairs(&self) -> usize {
        self.events()
            .iter()
            .map(|e| e["user_ids"].as_array().unwrap().len())
            .sum()
    }
}

struct State {
    script: Mutex<VecDeque<Answer>>,
    then: Answer,
    received: Mutex<Vec<Received>>,
}

/// A push receiver; stops when dropped.
struct Receiver {
    url: String,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Receiver {
    async fn start(script: Vec<Answer>, then: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hubbub/push", listener.local_addr().unwrap());
        let state = Arc::new(State {
            script: Mutex::new(script.into()),
            then,
            received: Mutex::default(),
        });
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| answer(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, state, accept }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// (message_id, user) of every request answered 200.
    fn delivered_pairs(&self) -> BTreeSet<(String, String)> {
        let mut pairs = BTreeSet::new();
        for request in self.received().iter().filter(|r| r.status == 200) {
            for event in request.events() {
                for user in event["user_ids"].as_array().unwrap() {
                    pairs.insert((
                        event["message_id"].as_str().unwrap().to_owned(),
                        user.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
        pairs
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (timestamp, signature) = (header("x-hubbub-timestamp"), header("x-hubbub-signature"));
    let json = header("content-type").as_deref() == Some("application/json");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let signed = match (&timestamp, &signature) {
        (Some(timestamp), Some(signature)) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(&body);
            *signature == format!("v1={}", hex(&mac.finalize().into_bytes()))
        }
        _ => false,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let fresh = timestamp
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|t| t.abs_diff(now) <= 300);
    let reply = if signed && fresh && json {
        state.script.lock().unwrap().pop_front().unwrap_or(state.then)
    } else {
        Answer {
            status: 401,
            retry_after: None,
        }
    };
    state.received.lock().unwrap().push(Received {
        status: reply.status,
        signed,
        fresh,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    if let Some(after) = reply.retry_after {
        response = response.header("retry-after", after);
    }
    Ok(response
        .body(Full::new(Bytes::from_static(b"scripted answer")))
        .unwrap())
}

fn config(url: &str) -> PushConfig {
    PushConfig {
        url: Some(url.to_owned()),
        secret: Some(SECRET.to_owned()),
        max_batch: 500,
        flush_ms: 50,
        queue: 10_000,
        timeout_ms: 5_000,
        max_body_bytes: 16,
    }
}

fn message(group_id: &str, seq: u64, sender: &str, body: &[u8]) -> GroupMessage {
    GroupMessage {
        group_id: group_id.to_owned(),
        seq,
        sender_user_id: sender.to_owned(),
        sender_device_id: "phone".to_owned(),
        client_message_id: format!("c-{seq}"),
        content_type: "text/plain".to_owned(),
        body: body.to_vec(),
        sent_at_ms: 1_767_225_600_000 + seq as i64,
    }
}

fn group_event(group_id: &str, seq: u64) -> GroupMessage {
    GroupMessage {
        sender_user_id: String::new(),
        content_type: GROUP_EVENT_CONTENT_TYPE.to_owned(),
        ..message(group_id, seq, "", br#"{"kind":"members_added"}"#)
    }
}

fn users(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn plain(messages: &[GroupMessage]) -> Pushable<'_> {
    Pushable {
        end_to_end_encrypted: false,
        messages,
    }
}

/// Polls `done` every 10 ms for up to 20 s.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn pair(message_id: &str, user: &str) -> (String, String) {
    (message_id.to_owned(), user.to_owned())
}

#[tokio::test]
async fn every_offline_pair_arrives_signed_after_503_and_429_in_one_batch_of_several_events() {
    let receiver = Receiver::start(
        vec![
            Answer {
                status: 503,
                retry_after: None,
            },
            Answer {
                status: 429,
                retry_after: Some("0"),
            },
        ],
        OK,
    )
    .await;
    let metrics = GroupMetrics::default();
    // The five pairs pushed below fill one batch, which then leaves at once
    // holding them all (the long flush never comes into play).
    let sink = PushSink::start(
        &PushConfig {
            max_batch: 5,
            flush_ms: 60_000,
            ..config(&receiver.url)
        },
        metrics.clone(),
    )
    .unwrap();
    let long = [b'x'; 17];
    let plain_messages = [
        message("g-plain", 1, "alice", b"hello"),
        message("g-plain", 2, "bob", &long),
        group_event("g-plain", 3),
    ];
    sink.push("g-plain", plain(&plain_messages), &users(&["alice", "bob", "carol"]));
    let secret_messages = [message("g-secret", 5, "dave", b"ciphertext")];
    let e2e = Pushable {
        end_to_end_encrypted: true,
        messages: &secret_messages,
    };
    sink.push("g-secret", e2e, &users(&["dave", "erin"]));

    let expected: BTreeSet<_> = [
        pair("g-plain:1", "bob"),
        pair("g-plain:1", "carol"),
        pair("g-plain:2", "alice"),
        pair("g-plain:2", "carol"),
        pair("g-secret:5", "erin"),
    ]
    .into();
    until("every pair answered 200", || receiver.delivered_pairs() == expected).await;
    until("the sink to count them", || metrics.pushes_delivered.get() == 5).await;

    let received = receiver.received();
    assert!(received.iter().all(|r| r.signed && r.fresh), "{received:?}");
    let statuses: Vec<u16> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 429, 200], "one batch, retried twice");
    // A retry sends the same events (re-signed), so the receiver can dedupe.
    assert_eq!(received[0].body, received[2].body);
    assert_eq!(received[1].body, received[2].body);
    let events = received[2].events();
    assert_eq!(events.len(), 3, "one event per message with offline users: {events:?}");
    assert_eq!(received[2].pairs(), 5);
    assert_eq!(metrics.push_batch_failures.get(), 2);
    assert_eq!(metrics.pushes_dropped.get(), 0);

    let event = |id: &str| events.iter().find(|e| e["message_id"] == id).unwrap().clone();
    let short = event("g-plain:1");
    assert_eq!(short["group_id"], "g-plain");
    assert_eq!(short["seq"], 1);
    assert_eq!(short["sender_user_id"], "alice");
    assert_eq!(short["content_type"], "text/plain");
    assert_eq!(short["sent_at_ms"], 1_767_225_600_001i64);
    assert_eq!(
        short["user_ids"],
        serde_json::json!(["bob", "carol"]),
        "never the sender"
    );
    assert_eq!(short["body_base64"], STANDARD.encode("hello"));
    assert_eq!(short["encrypted"], false);
    assert!(short.get("body_truncated").is_none());
    let truncated = event("g-plain:2");
    assert!(
        truncated.get("body_base64").is_none(),
        "17 bytes is over the 16-byte limit"
    );
    assert_eq!(truncated["body_truncated"], true);
    let secret = event("g-secret:5");
    assert!(secret.get("body_base64").is_none(), "an e2e body never leaves");
    assert!(secret.get("body_truncated").is_none());
    assert_eq!(secret["encrypted"], true);
    assert_eq!(secret["user_ids"], serde_json::json!(["erin"]));

    until("the queue to empty", || sink.pending() == 0).await;
    sink.close().await;
}

#[tokio::test]
async fn a_message_with_more_offline_users_than_a_batch_is_split_across_requests() {
    let receiver = Receiver::start(Vec::new(), OK).await;
    let metrics = GroupMetrics::default();
    let sink = PushSink::start(
        &PushConfig {
            max_batch: 2,
            ..config(&receiver.url)
        },
        metrics.clone(),
    )
    .unwrap();
    let messages = [message("g-big", 9, "alice", b"hi")];
    let offline = users(&["alice", "u1", "u2", "u3", "u4", "u5"]);
    sink.push("g-big", plain(&messages), &offline);
    let expected: BTreeSet<_> = ["u1", "u2", "u3", "u4", "u5"]
        .into_iter()
        .map(|u| pair("g-big:9", u))
        .collect();
    until("all five users", || receiver.delivered_pairs() == expected).await;
    until("the sink to count them", || metrics.pushes_delivered.get() == 5).await;
    let received = receiver.received();
    assert_eq!(received.len(), 3, "2 + 2 + 1 pairs");
    assert!(received.iter().all(|r| r.pairs() <= 2), "{received:?}");
    sink.close().await;
}

#[tokio::test]
async fn a_400_drops_the_batch_without_retrying_it_and_counts_it() {
    let receiver = Receiver::start(
        Vec::new(),
        Answer {
            status: 400,
            retry_after: None,
        },
    )
    .await;
    let metrics = GroupMetrics::default();
    let sink = PushSink::start(&config(&receiver.url), metrics.clone()).unwrap();
    let messages = [message("g-refused", 1, "alice", b"hi")];
    sink.push("g-refused", plain(&messages), &users(&["bob", "carol", "dave"]));
    until("the refusal to be counted", || metrics.pushes_dropped.get() == 3).await;
    assert_eq!(sink.pending(), 0, "a refused batch is let go");
    // A batch still held (being retried) would get its last attempt here.
    sink.close().await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "not retried: {received:?}");
    assert!(received[0].signed);
    assert_eq!(metrics.pushes_delivered.get(), 0);
    assert_eq!(metrics.push_batch_failures.get(), 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    // Nobody listens there: the first batch is retried and holds its room.
    let unreachable: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let metrics = GroupMetrics::default();
    let sink = PushSink::start(
        &PushConfig {
            queue: 3,
            max_batch: 3,
            timeout_ms: 1_000,
            ..config(&format!("http://{unreachable}/push"))
        },
        metrics.clone(),
    )
    .unwrap();
    let messages = [message("g-full", 1, "alice", b"hi")];
    let offline: Vec<String> = (0..10).map(|i| format!("user-{i}")).collect();
    // Synchronous: it returns at once whatever the receiver does.
    sink.push("g-full", plain(&messages), &offline);
    assert_eq!(sink.pending(), 3, "the queue holds 3 pairs");
    assert_eq!(metrics.pushes_dropped.get(), 7, "the 7 that did not fit");
    sink.push("g-full", plain(&messages), &offline);
    assert_eq!(sink.pending(), 3);
    assert_eq!(metrics.pushes_dropped.get(), 17);
    until("a failed attempt", || metrics.push_batch_failures.get() >= 1).await;
    // Stopping: the held batch gets its last attempt, fails, and is counted.
    sink.close().await;
    assert_eq!(sink.pending(), 0);
    assert_eq!(metrics.pushes_dropped.get(), 20);
    assert_eq!(metrics.pushes_delivered.get(), 0);
    sink.push("g-full", plain(&messages), &offline[..1]);
    assert_eq!(metrics.pushes_dropped.get(), 21, "a closed sink drops and counts");
}

#[tokio::test]
async fn nothing_is_queued_or_sent_without_a_url() {
    let receiver = Receiver::start(Vec::new(), OK).await;
    let metrics = GroupMetrics::default();
    for url in [None, Some(String::new())] {
        let sink = PushSink::start(
            &PushConfig {
                url,
                ..config(&receiver.url)
            },
            metrics.clone(),
        )
        .unwrap();
        assert!(!sink.is_enabled());
        let messages = [message("g-off", 1, "alice", b"hi")];
        assert!(sink.prepare("g-off", plain(&messages)).is_none());
        sink.push("g-off", plain(&messages), &users(&["bob"]));
        assert_eq!(sink.pending(), 0);
        sink.close().await;
    }
    assert_eq!(metrics.pushes_delivered.get(), 0);
    assert_eq!(metrics.pushes_dropped.get(), 0);
    assert_eq!(metrics.push_batch_failures.get(), 0);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_url_needs_a_long_enough_secret() {
    let metrics = GroupMetrics::default();
    let mut push = config("http://push.internal:8080/hubbub");
    push.secret = None;
    let error = PushSink::start(&push, metrics.clone()).unwrap_err();
    assert_eq!(error, PushConfigError::MissingSecret);
    push.secret = Some("x".repeat(31));
    assert_eq!(
        PushSink::start(&push, metrics).unwrap_err(),
        PushConfigError::ShortSecret(31)
    );
}
