//! What one client, or one attacker with a client's access, can and cannot
//! do on the public port: each guest is someone of its own, a token's
//! expiry ends its stream, streams and session calls per caller are
//! capped, calls are authenticated before anything else, and malformed or
//! oversized requests get a precise status.

mod support;

use hubbub_kit::{
    auth::Claims,
    jwt::{Hs256, unix_now},
};
use hubbub_proto::v1::{ConnectRequest, JoinRoomRequest, ListMyGroupsRequest};
use std::time::Duration;
use support::{Viewer, authed};
use tonic::{Code, codegen::http::uri::PathAndQuery};

fn connect_request() -> ConnectRequest {
    ConnectRequest {
        device_id: "phone".into(),
        client_info: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_act_on_another_guests_session() {
    let sandbox = support::start(1, |_| {}).await;
    let victim = Viewer::connect(&sandbox, 0, None).await;
    let mut attacker = Viewer::connect(&sandbox, 0, None).await;
    assert_ne!(victim.token, attacker.token, "each guest has an identity of its own");

    let join = |token: Option<&str>| {
        authed(
            JoinRoomRequest {
                session_id: victim.session_id.clone(),
                room_id: "elsewhere".into(),
            },
            token,
        )
    };
    let err = attacker
        .client
        .join_room(join(attacker.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another guest's session: {err:?}");
    let err = attacker.client.join_room(join(None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "no token at all: {err:?}");
    assert!(err.message().contains("guest_token"), "{}", err.message());
    // The victim itself still can.
    let mut client = sandbox.client(0).await;
    client.join_room(join(victim.token.as_deref())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let sandbox = support::start(1, |_| {}).await;
    // Expired 29 s ago: still within the 30 s leeway at connect, past it in a second.
    let token = Hs256::new(support::SECRET, "JWT").sign(&Claims {
        sub: "short-lived".into(),
        exp: unix_now() - 29,
        iat: unix_now() - 600,
        nbf: None,
        aud: None,
        iss: None,
        gst: false,
    });
    let mut client = sandbox.client(0).await;
    let mut events = client
        .connect(authed(connect_request(), Some(&token)))
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::time::timeout(support::PATIENCE, async {
        loop {
            match events.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without saying why"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends once the token has expired");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("expired"), "{}", ended.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_user_are_capped() {
    let sandbox = support::start(1, |config| config.max_streams_per_user = 2).await;
    let token = support::token("hoarder");
    let mut client = sandbox.client(0).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            client
                .connect(authed(connect_request(), Some(&token)))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let err = client
        .connect(authed(connect_request(), Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Someone else is not affected, and a closed stream frees its place.
    let _other = Viewer::connect(&sandbox, 0, Some("someone-else")).await;
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        match client.connect(authed(connect_request(), Some(&token))).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(err) => panic!("the freed place was never given back: {err:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_calls_are_rate_limited_with_a_retry_hint() {
    let sandbox = support::start(1, |config| {
        config.session_calls_per_sec = 1.0;
        config.session_calls_burst = 3.0;
    })
    .await;
    let mut viewer = Viewer::connect(&sandbox, 0, Some("busy")).await; // 1 of 3
    viewer.join("a").await; // 2
    viewer.join("b").await; // 3
    let request = authed(
        JoinRoomRequest {
            session_id: viewer.session_id.clone(),
            room_id: "c".into(),
        },
        viewer.token.as_deref(),
    );
    let err = viewer.client.join_room(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.metadata().get("retry-after-ms").is_some(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_authenticated_before_anything_else() {
    let sandbox = support::start(1, |_| {}).await;
    let mut client = sandbox.client(0).await;
    let err = client
        .list_my_groups(authed(ListMyGroupsRequest::default(), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let guest = Viewer::connect(&sandbox, 0, None).await;
    let err = client
        .list_my_groups(authed(ListMyGroupsRequest::default(), guest.token.as_deref()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "guests have no groups: {err:?}");
    let err = client
        .list_my_groups(authed(ListMyGroupsRequest::default(), Some(&support::token("u"))))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unavailable,
        "past the token, to the (absent) group service: {err:?}"
    );
}

/// Sends raw bytes as the body of a unary call.
async fn raw_call(sandbox: &support::Sandbox, path: &'static str, body: Vec<u8>, token: &str) -> tonic::Status {
    use prost::bytes::{Buf, BufMut, Bytes};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    /// Passes bytes through untouched, so the server sees exactly `body`.
    #[derive(Default)]
    struct Raw;
    impl Encoder for Raw {
        type Item = Bytes;
        type Error = tonic::Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put(item);
            Ok(())
        }
    }
    impl Decoder for Raw {
        type Item = Bytes;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }
    impl Codec for Raw {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }

    let _up = sandbox.client(0).await; // waits until the gateway answers
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", sandbox.gateways[0]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    grpc.ready().await.unwrap();
    let request = authed(Bytes::from(body), Some(token));
    match grpc.unary(request, PathAndQuery::from_static(path), Raw).await {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_precise_codes() {
    let sandbox = support::start(1, |_| {}).await;
    let token = support::token("u");
    // Field 1 (session_id), length 10, but only 3 bytes follow: truncated.
    let status = raw_call(
        &sandbox,
        "/hubbub.v1.ClientApi/JoinRoom",
        vec![0x0a, 10, b'a', b'b', b'c'],
        &token,
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "truncated: {status:?}");
    // Field 1 holding bytes that are not UTF-8.
    let status = raw_call(
        &sandbox,
        "/hubbub.v1.ClientApi/JoinRoom",
        vec![0x0a, 2, 0xff, 0xfe],
        &token,
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "invalid UTF-8: {status:?}");
    // 1 MiB where 64 KiB is the most a client call may be.
    let mut big = vec![0x1a, 0x80, 0x80, 0x40]; // field 3 (body), length 2^20
    big.resize(4 + (1 << 20), b'x');
    let status = raw_call(&sandbox, "/hubbub.v1.ClientApi/SendRoomMessage", big, &token).await;
    // tonic's code for a message above the limit, with the limit named.
    assert_eq!(status.code(), Code::OutOfRange, "oversized: {status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    // The gateway is still well.
    let mut viewer = Viewer::connect(&sandbox, 0, Some("after")).await;
    assert!(viewer.join("r").await.last_seq > 0);
}
