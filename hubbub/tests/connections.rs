//! Every listener drops connections that never speak, and scanners cannot
//! grow the metrics: a silent TCP connection, an HTTP/2 connection that sent
//! its preface and then stops answering, and a flood of made-up method
//! names, against a real listener.

mod support;

use hubbub_kit::serve::{ListenerLimits, ServeOptions};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// A room instance whose listener gives up on silent peers quickly.
async fn impatient_room(shutdown: &CancellationToken) -> SocketAddr {
    room_with(
        shutdown,
        ListenerLimits {
            handshake_timeout_ms: 300,
            keepalive_interval_ms: 200,
            keepalive_timeout_ms: 200,
            ..ListenerLimits::default()
        },
    )
    .await
}

/// A room instance whose listener has `limits`.
async fn room_with(shutdown: &CancellationToken, limits: ListenerLimits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = svc_room::RoomConfig {
        listen: address,
        advertise: format!("http://{address}"),
        ..Default::default()
    };
    let options = ServeOptions {
        limits,
        ..support::options()
    };
    tokio::spawn(svc_room::serve(config, options, listener, shutdown.clone()));
    address
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(mut stream: TcpStream, patience: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

async fn connect(address: SocketAddr) -> TcpStream {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => return stream,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(err) => panic!("{address}: {err}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_speak_are_dropped() {
    let shutdown = CancellationToken::new();
    let room = impatient_room(&shutdown).await;

    let silent: Vec<TcpStream> = silent_connections(room, 50).await;
    for stream in silent {
        let took = closed_within(stream, Duration::from_secs(5)).await;
        assert!(took.is_some(), "a silent connection is still held after 5 s");
    }

    // The preface and an empty SETTINGS frame, then never a read or a PING ack.
    let mut stream = connect(room).await;
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let took = closed_within(stream, Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "a peer that stops answering pings is still held after 5 s"
    );
    shutdown.cancel();
}

/// `count` connections that send nothing.
async fn silent_connections(address: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(connect(address).await);
    }
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_method_names_share_one_metrics_label() {
    let shutdown = CancellationToken::new();
    let room = impatient_room(&shutdown).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{room}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..40 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/hubbub.v1.Scan{i}/Probe{i}").parse().unwrap();
        let codec = hubbub_proto::codec::StrictCodec::<(), ()>::default();
        let _ = grpc.unary(tonic::Request::new(()), path, codec).await;
    }
    let text = support::scrape(room).await;
    assert!(!text.contains("Scan"), "a made-up method got a label of its own");
    assert!(
        text.lines()
            .any(|l| l.starts_with("hubbub_grpc_requests_total{method=\"other\"} 40")),
        "{text}"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let shutdown = CancellationToken::new();
    let room = room_with(
        &shutdown,
        ListenerLimits {
            max_connections_per_address: 3,
            ..ListenerLimits::default()
        },
    )
    .await;
    let mut held = silent_connections(room, 3).await;
    // The fourth is closed at once, long before any handshake timeout.
    let over = connect(room).await;
    assert!(
        closed_within(over, Duration::from_secs(2)).await.is_some(),
        "a fourth connection from one address is held"
    );
    for stream in &held {
        stream.peer_addr().unwrap();
    }
    // A place given back is taken again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let again = connect(room).await;
        if closed_within(again, Duration::from_millis(300)).await.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed place never came back"
        );
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_only_answers_pings_is_sent_away() {
    let shutdown = CancellationToken::new();
    let room = room_with(
        &shutdown,
        ListenerLimits {
            keepalive_interval_ms: 200,
            keepalive_timeout_ms: 500,
            max_connection_age_secs: 1,
            ..ListenerLimits::default()
        },
    )
    .await;
    let mut stream = connect(room).await;
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    // A well-behaved HTTP/2 peer that never opens a stream: it acknowledges
    // SETTINGS and PINGs, so keepalive alone would hold it forever.
    let started = tokio::time::Instant::now();
    let mut saw_goaway = false;
    let outcome = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return;
            }
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let mut payload = vec![0u8; length];
            if stream.read_exact(&mut payload).await.is_err() {
                return;
            }
            match (kind, flags & 1) {
                (4, 0) => stream.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await.unwrap(),
                (6, 0) => {
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    stream.write_all(&ack).await.unwrap();
                }
                (7, _) => saw_goaway = true,
                _ => {}
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "a connection with no stream is still held after 8 s");
    assert!(saw_goaway, "it was told to go away first");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before its age");
    shutdown.cancel();
}
