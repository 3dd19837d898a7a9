//! A viewer's `Connect` over HTTP/1.1 binary gRPC-web, as a browser's fetch
//! sends it: the gateway's lean path. Its other calls (JoinRoom) go over a
//! shared HTTP/2 connection ([`crate::grpc_conn::GrpcConn`]), as a browser
//! multiplexes them.

use crate::grpc_conn::MessageStream;
use anyhow::{Context, bail};
use http::{Request, header};
use http_body_util::Full;
use hubbub_proto::v1::{ConnectRequest, ServerEvent, server_event::Event};
use hyper::{body::Bytes, client::conn::http1};
use hyper_util::rt::TokioIo;
use prost::Message;
use std::net::{IpAddr, SocketAddr};

/// Opens a lean Connect from `source` to `target`: the Welcome's session id
/// and guest token, and the events after it.
pub async fn open(
    source: Option<IpAddr>,
    target: SocketAddr,
    device_id: String,
) -> anyhow::Result<(String, String, MessageStream)> {
    let stream = crate::grpc_conn::dial(source, target).await?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    let message = ConnectRequest {
        device_id,
        client_info: "hubbub-bench lean".into(),
    }
    .encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    // Origin-form, as browsers send it (the lean path judges the request line).
    let request = Request::post("/hubbub.v1.ClientApi/Connect")
        .header(header::HOST, target.to_string())
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(Full::new(Bytes::from(framed)))?;
    let response = sender.send_request(request).await?;
    if let Some(status) = response.headers().get("grpc-status").filter(|s| *s != "0") {
        bail!("Connect: grpc-status {status:?}");
    }
    if response.headers().get("cache-control").is_none_or(|v| v != "no-store") {
        bail!("Connect was not served by the lean path (is gateway.lean_connect on?)");
    }
    let mut events = MessageStream::new(response.into_body());
    let welcome = events.next().await?.context("stream ended before Welcome")?;
    let Some(Event::Welcome(welcome)) = ServerEvent::decode(welcome)?.event else {
        bail!("first event was not Welcome");
    };
    Ok((welcome.session_id, welcome.guest_token, events))
}
