//! A viewer's `Connect` over HTTP/1.1 binary gRPC-web, as a browser's fetch
//! sends it: the gateway's lean path. Its other calls (JoinRoom) go over a
//! shared HTTP/2 connection ([`crate::grpc_conn::GrpcConn`]), as a browser
//! multiplexes them.

use anyhow::{Context, bail};
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hubbub_proto::v1::{ConnectRequest, ServerEvent, server_event::Event};
use hyper::{body::Bytes, client::conn::http1};
use hyper_util::rt::TokioIo;
use prost::Message;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpSocket;

/// The events of a lean Connect: gRPC-web frames from a chunked body.
pub struct LeanEvents {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

/// Opens a lean Connect from `source` to `target`: the Welcome's session id
/// and guest token, and the events after it.
pub async fn open(
    source: Option<IpAddr>,
    target: SocketAddr,
    device_id: String,
) -> anyhow::Result<(String, String, LeanEvents)> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("bind {source}"))?;
    }
    socket.set_nodelay(true)?;
    let stream = socket
        .connect(target)
        .await
        .with_context(|| format!("connect {target}"))?;
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
    let mut events = LeanEvents {
        body: response.into_body(),
        buffer: Vec::new(),
    };
    let welcome = events.next().await?.context("stream ended before Welcome")?;
    let Some(Event::Welcome(welcome)) = ServerEvent::decode(welcome)?.event else {
        bail!("first event was not Welcome");
    };
    Ok((welcome.session_id, welcome.guest_token, events))
}

impl LeanEvents {
    /// The next event, or None at the end of the stream (its trailers).
    pub async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if self.buffer.len() >= 5 {
                let len = u32::from_be_bytes(self.buffer[1..5].try_into().expect("4 bytes")) as usize;
                if self.buffer.len() >= 5 + len {
                    if self.buffer[0] & 0x80 != 0 {
                        let trailers = String::from_utf8_lossy(&self.buffer[5..5 + len]).into_owned();
                        if !trailers.contains("grpc-status:0") {
                            bail!("stream ended: {}", trailers.trim());
                        }
                        return Ok(None);
                    }
                    let message = Bytes::copy_from_slice(&self.buffer[5..5 + len]);
                    self.buffer.drain(..5 + len);
                    return Ok(Some(message));
                }
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            if let Ok(data) = frame?.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }
}
