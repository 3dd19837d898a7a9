//! `Connect` on the lean path, spoken byte by byte as a browser's fetch
//! over HTTP/1.1 would: one chunk per event, the same call as on tonic
//! (unary calls on the same port still reach tonic, over HTTP/2 and
//! HTTP/1.1), errors as gRPC-web trailers, and the attacks on the parser
//! and the connection: a head sent a byte at a time, an oversized head, a
//! pipelined request, a half-closed socket, an abrupt reset, a client that
//! never reads, and the trust boundary's Connect cases (bad, foreign,
//! expired and service tokens, limits, rates, expiry mid-stream).

mod support;

use hubbub_proto::v1::{
    ConnectRequest, JoinRoomRequest, RoomMessageKind, SendRoomMessageRequest, ServerEvent, server_event::Event,
};
use prost::Message;
use std::time::Duration;
use support::{Viewer, authed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A Connect request as connect-web sends it.
fn request(token: Option<&str>, device: &str) -> Vec<u8> {
    let message = ConnectRequest {
        device_id: device.into(),
        client_info: "raw".into(),
    }
    .encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut bytes = format!(
        "POST /hubbub.v1.ClientApi/Connect HTTP/1.1\r\nhost: gw\r\ncontent-type: application/grpc-web+proto\r\n\
         x-grpc-web: 1\r\norigin: https://app.example\r\n{auth}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// A raw lean stream: the response head, then one event per chunk.
struct Raw {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Raw {
    async fn open(address: std::net::SocketAddr, request: &[u8]) -> Raw {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        Raw {
            stream,
            read: Vec::new(),
        }
    }

    async fn more(&mut self) -> usize {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(support::PATIENCE, self.stream.read(&mut buf))
            .await
            .expect("the gateway said something in time")
            .unwrap_or(0);
        self.read.extend_from_slice(&buf[..n]);
        n
    }

    /// The response head, as text.
    async fn head(&mut self) -> String {
        loop {
            if let Some(end) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.read[..end + 4].to_vec()).unwrap();
                self.read.drain(..end + 4);
                return head;
            }
            assert!(self.more().await > 0, "closed before the response head");
        }
    }

    /// The next chunk's bytes.
    async fn chunk(&mut self) -> Vec<u8> {
        loop {
            if let Some(line) = self.read.windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(std::str::from_utf8(&self.read[..line]).unwrap(), 16).unwrap();
                if self.read.len() >= line + 2 + size + 2 {
                    let chunk = self.read[line + 2..line + 2 + size].to_vec();
                    assert_eq!(&self.read[line + 2 + size..line + 4 + size], b"\r\n");
                    self.read.drain(..line + 4 + size);
                    return chunk;
                }
            }
            assert!(self.more().await > 0, "closed mid-stream");
        }
    }

    /// The next event that is not a heartbeat or presence.
    async fn event(&mut self) -> Event {
        loop {
            let chunk = self.chunk().await;
            assert_eq!(chunk[0], 0, "a data frame");
            let length = u32::from_be_bytes(chunk[1..5].try_into().unwrap()) as usize;
            assert_eq!(chunk.len(), 5 + length, "one frame per chunk");
            match ServerEvent::decode(&chunk[5..]).unwrap().event.unwrap() {
                Event::Heartbeat(_) | Event::RoomPresence(_) => continue,
                event => return event,
            }
        }
    }

    /// Waits for the gateway to close the connection.
    async fn closed(&mut self) {
        while self.more().await > 0 {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lean_connect_streams_one_chunk_per_event_and_other_calls_still_reach_tonic() {
    let sandbox = support::start(1, |config| config.lean_connect = true).await;
    let mut raw = Raw::open(sandbox.gateways[0], &request(None, "browser")).await;
    let head = raw.head().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("transfer-encoding: chunked") && head.contains("cache-control: no-store"),
        "lean: {head}"
    );
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    assert!(head.contains("retry-after-ms"), "exposed to browsers: {head}");
    let Event::Welcome(welcome) = raw.event().await else {
        panic!("Welcome first")
    };
    assert!(welcome.guest);

    // JoinRoom over HTTP/2 on the same port: tonic, with the sniffed bytes put back.
    let mut client = sandbox.client(0).await;
    let join = JoinRoomRequest {
        session_id: welcome.session_id.clone(),
        room_id: "lean".into(),
    };
    client
        .join_room(authed(join, Some(&welcome.guest_token)))
        .await
        .unwrap();
    let mut sender = Viewer::connect(&sandbox, 0, Some("lean-sender")).await;
    sender.join("lean").await;
    for n in 0..3 {
        let send = SendRoomMessageRequest {
            session_id: sender.session_id.clone(),
            room_id: "lean".into(),
            body: format!("m{n}").into_bytes().into(),
            kind: RoomMessageKind::Comment as i32,
        };
        sender
            .client
            .send_room_message(authed(send, sender.token.as_deref()))
            .await
            .unwrap();
        let Event::RoomBatch(batch) = raw.event().await else {
            panic!("a room batch")
        };
        assert_eq!(
            batch.messages[0].body,
            format!("m{n}").into_bytes(),
            "each before the next is sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_grpc_web_trailers_a_browser_reads() {
    let sandbox = support::start(1, |config| config.lean_connect = true).await;
    let mut raw = Raw::open(sandbox.gateways[0], &request(Some("not-a-token"), "browser")).await;
    let head = raw.head().await;
    assert!(
        head.contains("grpc-status: 16\r\n"),
        "UNAUTHENTICATED, trailers-only: {head}"
    );
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    raw.closed().await;

    let mut raw = Raw::open(sandbox.gateways[0], &request(None, "")).await;
    assert!(
        raw.head().await.contains("grpc-status: 3\r\n"),
        "INVALID_ARGUMENT for an empty device id"
    );

    // A body that is not one gRPC-web frame.
    let bad = b"POST /hubbub.v1.ClientApi/Connect HTTP/1.1\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 3\r\n\r\nabc";
    let mut raw = Raw::open(sandbox.gateways[0], bad).await;
    assert!(raw.head().await.contains("grpc-status: 3\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_slow_heads_and_smuggled_framing_are_refused() {
    let sandbox = support::start(1, |config| config.lean_connect = true).await;
    let line = "POST /hubbub.v1.ClientApi/Connect HTTP/1.1\r\ncontent-type: application/grpc-web+proto\r\n";
    let oversized = format!("{line}x-pad: {}\r\n\r\n", "a".repeat(9000));
    let mut raw = Raw::open(sandbox.gateways[0], oversized.as_bytes()).await;
    assert!(raw.head().await.starts_with("HTTP/1.1 431"), "oversized");
    let smuggled = format!("{line}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
    let mut raw = Raw::open(sandbox.gateways[0], smuggled.as_bytes()).await;
    assert!(raw.head().await.starts_with("HTTP/1.1 400"), "both framings");

    // A head sent a byte at a time, and never finished: cut at the handshake timeout.
    let mut slow = TcpStream::connect(sandbox.gateways[0]).await.unwrap();
    let started = tokio::time::Instant::now();
    for byte in line.as_bytes().iter().take(60) {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut answer)).await;
    assert!(started.elapsed() < Duration::from_secs(15), "cut, not held");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_request_a_half_close_or_a_reset_ends_the_stream_and_frees_its_place() {
    // One stream per user, so a stream that is not cleaned up would refuse the next.
    let sandbox = support::start(1, |config| {
        config.lean_connect = true;
        config.max_streams_per_user = 1;
    })
    .await;
    let token = support::token("lean-user");
    let mut raw = Raw::open(sandbox.gateways[0], &request(Some(&token), "phone")).await;
    raw.head().await;
    assert!(matches!(raw.event().await, Event::Welcome(_)));
    raw.stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    raw.closed().await;

    let reopen = async || loop {
        let mut raw = Raw::open(sandbox.gateways[0], &request(Some(&token), "phone")).await;
        if raw.head().await.contains("grpc-status: 8") {
            tokio::time::sleep(Duration::from_millis(50)).await; // the last one still closing
            continue;
        }
        assert!(matches!(raw.event().await, Event::Welcome(_)));
        return raw;
    };
    let mut raw = tokio::time::timeout(support::PATIENCE, reopen())
        .await
        .expect("its place was freed");
    raw.stream.shutdown().await.unwrap(); // half-closed: the client is gone
    raw.closed().await;

    let raw = tokio::time::timeout(support::PATIENCE, reopen())
        .await
        .expect("freed after a half-close");
    raw.stream.set_zero_linger().unwrap();
    drop(raw); // a reset
    let _raw = tokio::time::timeout(support::PATIENCE, reopen())
        .await
        .expect("freed after a reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_its_place_freed() {
    let sandbox = support::start_with_room(
        1,
        |config| {
            config.lean_connect = true;
            // Writes stuck for two heartbeats end the stream: 5 s here.
            config.heartbeat_interval_ms = 1_000;
            config.session_calls_per_sec = 1e9;
            config.session_calls_burst = 1e9;
            config.user_publish_per_sec = 1e9;
            config.user_publish_burst = 1e9;
        },
        |room| {
            room.limits.delivery_cap_per_sec = 1e9;
            room.limits.publish_cap_per_sec = 1e9;
        },
    )
    .await;
    let mut raw = Raw::open(sandbox.gateways[0], &request(None, "stuck")).await;
    raw.head().await;
    let Event::Welcome(welcome) = raw.event().await else {
        panic!("Welcome first")
    };
    let mut client = sandbox.client(0).await;
    let join = JoinRoomRequest {
        session_id: welcome.session_id.clone(),
        room_id: "flood".into(),
    };
    client
        .join_room(authed(join, Some(&welcome.guest_token)))
        .await
        .unwrap();
    // From here on the client reads nothing; 4 KiB comments pile up.
    let mut sender = Viewer::connect(&sandbox, 0, Some("flooder")).await;
    sender.join("flood").await;
    // Incompressible (batches are compressed): every byte must be written.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move || {
        (0..4000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect::<Vec<u8>>()
    };
    let started = tokio::time::Instant::now();
    let mut closed = false;
    let mut last = String::new();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(30) {
        for _ in 0..200 {
            let send = SendRoomMessageRequest {
                session_id: sender.session_id.clone(),
                room_id: "flood".into(),
                body: noise().into(),
                kind: RoomMessageKind::Comment as i32,
            };
            sent += usize::from(
                sender
                    .client
                    .send_room_message(authed(send, sender.token.as_deref()))
                    .await
                    .is_ok(),
            );
        }
        let metrics = support::scrape(sandbox.gateways_internal[0]).await;
        last = metrics
            .lines()
            .filter(|l| l.starts_with("hubbub_gateway"))
            .collect::<Vec<_>>()
            .join("\n");
        // The flooder's own stream is the one left.
        if metrics.contains("hubbub_gateway_connections 1\n") {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a stream that never reads is closed, not held (sent {sent}): {last}"
    );
    // Its socket is closed too: what it had not read, then the end.
    let drained = tokio::time::timeout(support::PATIENCE, async {
        let mut buf = vec![0u8; 1 << 16];
        while raw.stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(drained.is_ok(), "the gateway closed the connection");
}

/// Reads chunks until the trailer frame; its text.
async fn trailers(raw: &mut Raw) -> String {
    loop {
        let chunk = raw.chunk().await;
        if chunk[0] & 0x80 != 0 {
            return String::from_utf8_lossy(&chunk[5..]).into_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_boundary_holds_on_the_lean_path_too() {
    use hubbub_kit::auth::{Claims, JwtKey};
    use hubbub_kit::jwt::{Hs256, unix_now};
    use hubbub_kit::service_auth::{InternalKey, Role};

    let sandbox = support::start(1, |config| {
        config.lean_connect = true;
        config.session_calls_per_sec = 0.01;
        config.session_calls_burst = 1.0;
    })
    .await;
    let claims = |sub: &str, exp: u64| Claims {
        sub: sub.into(),
        exp,
        iat: unix_now() - 600,
        nbf: None,
        aud: None,
        iss: None,
        gst: false,
    };
    let expired = Hs256::new(support::SECRET, "JWT").sign(&claims("mallory", 1_000));
    let foreign = JwtKey::new(b"another-secret-of-at-least-32-bytes!").mint("mallory", Duration::from_secs(60));
    let service = InternalKey::new(support::INTERNAL_KEY).mint(Role::Gateway, "gw-0", &[], Duration::from_secs(60));
    for (what, token) in [
        ("an expired token", expired.as_str()),
        ("another secret's token", foreign.as_str()),
        ("a service credential", service.as_str()),
        ("garbage", "not.a.token"),
    ] {
        let mut raw = Raw::open(sandbox.gateways[0], &request(Some(token), "d")).await;
        let head = raw.head().await;
        assert!(head.contains("grpc-status: 16\r\n"), "{what}: {head}");
    }
    let mut raw = Raw::open(sandbox.gateways[0], &request(None, &"d".repeat(129))).await;
    assert!(
        raw.head().await.contains("grpc-status: 3\r\n"),
        "an over-long device id"
    );

    // The identity is the token's; a second connect at once is over the rate, with a hint.
    let alice = support::token("alice");
    let mut raw = Raw::open(sandbox.gateways[0], &request(Some(&alice), "laptop")).await;
    raw.head().await;
    let Event::Welcome(welcome) = raw.event().await else {
        panic!("Welcome first")
    };
    assert_eq!(welcome.user_id, "alice");
    let mut again = Raw::open(sandbox.gateways[0], &request(Some(&alice), "phone")).await;
    let head = again.head().await;
    assert!(
        head.contains("grpc-status: 8\r\n") && head.contains("retry-after-ms: "),
        "{head}"
    );

    // A token that expires while streaming ends the stream, UNAUTHENTICATED.
    let short = Hs256::new(support::SECRET, "JWT").sign(&claims("short-lived", unix_now() - 29));
    let mut raw = Raw::open(sandbox.gateways[0], &request(Some(&short), "d")).await;
    raw.head().await;
    assert!(matches!(raw.event().await, Event::Welcome(_)));
    let ended = tokio::time::timeout(Duration::from_secs(15), trailers(&mut raw))
        .await
        .expect("the stream ended");
    assert!(ended.contains("grpc-status:16"), "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_chunked_body_is_refused_without_harm() {
    let sandbox = support::start(1, |config| config.lean_connect = true).await;
    let head = "POST /hubbub.v1.ClientApi/Connect HTTP/1.1\r\ncontent-type: application/grpc-web+proto\r\ntransfer-encoding: chunked\r\n\r\n";
    for body in [
        "1\r\nA\r\nffffffffffffffff\r\nB\r\n0\r\n\r\n", // a size that would wrap
        "+5\r\nAAAAA\r\n0\r\n\r\n",                     // a sign
        "5\r\nAAAAAxx0\r\n\r\n",                        // no CRLF after the data
        "2000\r\n",                                     // above the limit
    ] {
        let mut raw = Raw::open(sandbox.gateways[0], format!("{head}{body}").as_bytes()).await;
        let answer = raw.head().await;
        assert!(
            answer.contains("grpc-status: 3\r\n") || answer.contains("grpc-status: 8\r\n"),
            "{body:?}: {answer}"
        );
    }
    // Still serving.
    let mut raw = Raw::open(sandbox.gateways[0], &request(None, "after")).await;
    raw.head().await;
    assert!(matches!(raw.event().await, Event::Welcome(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_tells_lean_streams_to_reconnect_and_ends_them_with_trailers() {
    let sandbox = support::start(1, |config| {
        config.lean_connect = true;
        config.drain_reconnect_after_ms = 200;
    })
    .await;
    let mut raw = Raw::open(sandbox.gateways[0], &request(None, "drained")).await;
    raw.head().await;
    assert!(matches!(raw.event().await, Event::Welcome(_)));
    sandbox.gateway_shutdowns[0].cancel();
    let Event::Reconnect(reconnect) = raw.event().await else {
        panic!("Reconnect before the end")
    };
    assert!(reconnect.after_ms <= 200, "{reconnect:?}");
    let ended = trailers(&mut raw).await;
    assert!(ended.contains("grpc-status:0"), "a clean end: {ended}");
    raw.closed().await;
}
