//! A lean gRPC client over one HTTP/2 connection, as a browser tab would
//! hold: hyper's HTTP/2 client with no pool, no buffer layer and no retry, so
//! tens of thousands fit in one process. Messages stay raw bytes: the load
//! generator scans them instead of decoding them.

use anyhow::{Context, bail};
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hubbub_proto::v1::{ConnectRequest, ServerEvent, server_event::Event};
use hyper::{body::Bytes, client::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpSocket;

/// A TCP connection from `source` (a loopback address, to spread
/// connections over many source addresses) to `target`, without Nagle.
pub async fn dial(source: Option<IpAddr>, target: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
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
    socket
        .connect(target)
        .await
        .with_context(|| format!("connect {target}"))
}

/// One HTTP/2 connection to a gateway.
#[derive(Clone)]
pub struct GrpcConn {
    sender: http2::SendRequest<Full<Bytes>>,
    authority: String,
    /// `authorization` of every call: the guest token of the session, once
    /// Welcome gave one, or a credential set with [`GrpcConn::authorize`].
    authorization: Option<http::HeaderValue>,
}

impl GrpcConn {
    /// Connects from `source` (a loopback address, to spread connections
    /// over many source addresses) to `target`.
    pub async fn connect(source: Option<IpAddr>, target: SocketAddr) -> anyhow::Result<Self> {
        let stream = dial(source, target).await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        // Small windows and buffers: a viewer reads as it goes.
        builder
            .initial_stream_window_size(256 * 1024)
            .initial_connection_window_size(512 * 1024);
        let (sender, connection) = builder.handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            authority: target.to_string(),
            authorization: None,
        })
    }

    /// Sends `token` as `authorization: Bearer <token>` on every call.
    pub fn authorize(&mut self, token: &str) -> anyhow::Result<()> {
        self.authorization = Some(format!("Bearer {token}").parse()?);
        Ok(())
    }

    fn request(&self, path: &str, message: &impl Message) -> Request<Full<Bytes>> {
        let body = message.encode_to_vec();
        let mut framed = Vec::with_capacity(body.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        let mut request = Request::post(format!("http://{}{path}", self.authority))
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers");
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        request
            .body(Full::new(Bytes::from(framed)))
            .expect("static request parts are valid")
    }

    /// Opens a device's `Connect` stream and reads its `Welcome`: the
    /// session id and the stream of the events that follow.
    pub async fn open_session(&mut self, device_id: String) -> anyhow::Result<(String, MessageStream)> {
        let connect = ConnectRequest {
            device_id,
            client_info: "hubbub-bench".into(),
        };
        let mut events = self.server_stream("/hubbub.v1.ClientApi/Connect", &connect).await?;
        let welcome = events.next().await?.context("stream ended before Welcome")?;
        let Some(Event::Welcome(welcome)) = ServerEvent::decode(welcome)?.event else {
            bail!("first event was not Welcome");
        };
        if welcome.guest {
            // A guest's calls carry the guest token of its own Welcome.
            self.authorize(&welcome.guest_token)?;
        }
        Ok((welcome.session_id, events))
    }

    /// A unary call: the response message's bytes.
    pub async fn unary(&mut self, path: &str, message: &impl Message) -> anyhow::Result<Bytes> {
        let mut stream = self.server_stream(path, message).await?;
        let reply = stream.next().await?.context("no response message")?;
        Ok(reply)
    }

    /// A server-streaming call: its messages, one by one.
    pub async fn server_stream(&mut self, path: &str, message: &impl Message) -> anyhow::Result<MessageStream> {
        self.sender.ready().await?;
        let response = self.sender.send_request(self.request(path, message)).await?;
        if let Some(status) = response.headers().get("grpc-status").filter(|s| *s != "0") {
            let message = response
                .headers()
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or("");
            bail!("{path}: grpc-status {status:?} {message}");
        }
        Ok(MessageStream::new(response.into_body()))
    }
}

/// Length-prefixed gRPC messages read from a response body: gRPC over
/// HTTP/2 (status in the HTTP trailers) or gRPC-web (status in a trailer
/// frame, flag 0x80), from hyper or straight from a socket's HTTP/1.1 chunks.
pub struct MessageStream {
    source: Source,
    /// Frames' bytes not yet taken.
    buffer: Vec<u8>,
}

enum Source {
    Body(hyper::body::Incoming),
    Chunked(Dechunk),
}

/// A chunked HTTP/1.1 body read from its socket as it comes, with no
/// HTTP client in between: what a browser's network stack would do, at a
/// fraction of a task hop per event.
struct Dechunk {
    socket: tokio::net::TcpStream,
    /// Read and not yet de-chunked.
    raw: Vec<u8>,
    /// Data bytes left in the current chunk, then its CRLF.
    left: Option<usize>,
    ended: bool,
}

impl MessageStream {
    /// The messages of `body`.
    pub fn new(body: hyper::body::Incoming) -> Self {
        Self {
            source: Source::Body(body),
            buffer: Vec::new(),
        }
    }

    /// The messages of a chunked body read from `socket`, `read` being
    /// what came after the response head.
    pub fn chunked(socket: tokio::net::TcpStream, read: Vec<u8>) -> Self {
        Self {
            source: Source::Chunked(Dechunk {
                socket,
                raw: read,
                left: None,
                ended: false,
            }),
            buffer: Vec::new(),
        }
    }

    /// The next message, or None at the end of the stream.
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
            match &mut self.source {
                Source::Chunked(chunks) => {
                    if !chunks.more(&mut self.buffer).await? {
                        return Ok(None);
                    }
                }
                Source::Body(body) => {
                    let Some(frame) = body.frame().await else {
                        return Ok(None);
                    };
                    let frame = frame?;
                    if let Some(trailers) = frame.trailers_ref() {
                        if let Some(status) = trailers.get("grpc-status").filter(|s| *s != "0") {
                            let message = trailers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("");
                            bail!("stream ended with grpc-status {status:?} {message}");
                        }
                        return Ok(None);
                    }
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

impl Dechunk {
    /// Moves at least one more data byte into `out`; false at the body's end.
    async fn more(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        use tokio::io::AsyncReadExt;
        let before = out.len();
        loop {
            self.take(out)?;
            if out.len() > before {
                return Ok(true);
            }
            if self.ended {
                return Ok(false);
            }
            self.raw.reserve(4096);
            if self.socket.read_buf(&mut self.raw).await? == 0 {
                return Ok(false);
            }
        }
    }

    /// De-chunks what `raw` holds.
    fn take(&mut self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        let mut at = 0;
        loop {
            match self.left {
                Some(0) => {
                    if self.raw.len() < at + 2 {
                        break;
                    }
                    if &self.raw[at..at + 2] != b"\r\n" {
                        bail!("a chunk did not end with CRLF");
                    }
                    at += 2;
                    self.left = None;
                }
                Some(left) => {
                    let n = left.min(self.raw.len() - at);
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&self.raw[at..at + n]);
                    at += n;
                    self.left = Some(left - n);
                }
                None => {
                    let Some(end) = self.raw[at..].windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let line = std::str::from_utf8(&self.raw[at..at + end])?;
                    let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                        .with_context(|| format!("chunk size line {line:?}"))?;
                    at += end + 2;
                    if size == 0 {
                        self.ended = true;
                        break;
                    }
                    self.left = Some(size);
                }
            }
        }
        self.raw.drain(..at);
        Ok(())
    }
}
