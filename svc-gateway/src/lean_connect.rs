//! `Connect` on the lean path: an HTTP/1.1 gRPC-web request served without
//! hyper or h2. The call itself is the tonic path's (the same
//! `ClientApiService::connect`: the same authentication, limits, session
//! and outbox); only its framing differs. Each event is one HTTP chunk
//! holding one gRPC-web frame, encoded once per gateway (`EncodedEvent`'s
//! chunk) and written by whoever pushes it, with one non-blocking write,
//! straight from the fan-out: a delivery wakes no task. Only when the socket
//! is full does the outbox queue (laned, dropping low first), and this
//! connection's task writes the queue as the socket drains; the queue is
//! the only memory that grows. Errors are gRPC-web trailers, before the
//! stream (trailers-only) or at its end.

use crate::api::ClientApiService;
use crate::outbox::OutboxStream;
use hubbub_kit::conn_guard::HandshakeDeadline;
use hubbub_kit::lean::head::BodyFraming;
use hubbub_kit::lean::split::{LeanCalls, LeanConn};
use hubbub_kit::metrics::CallTimer;
use hubbub_proto::v1::ConnectRequest;
use hubbub_proto::wire::server::client_api_server::ClientApi;
use prost::Message;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::{Code, Status};

/// The path of the call served here.
pub const CONNECT_PATH: &str = "/hubbub.v1.ClientApi/Connect";
/// Largest Connect request body (a device id and a client string).
const MAX_BODY: usize = 4 * 1024;
/// Time to send the body after the head.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The response headers CORS lets a browser read.
const EXPOSED: &str =
    "grpc-status, grpc-message, grpc-status-details-bin, retry-after-ms, grpc-encoding, grpc-accept-encoding";

/// The lean `Connect` of a gateway.
#[derive(Debug, Clone)]
pub struct LeanConnect {
    /// Shared, not copied into each connection's future.
    api: Arc<ClientApiService>,
    /// A write that waits longer than this (a client that stopped reading
    /// while its socket buffer is full) ends the stream.
    write_timeout: Duration,
}

impl LeanConnect {
    pub fn new(api: ClientApiService, write_timeout: Duration) -> Self {
        Self {
            api: Arc::new(api),
            write_timeout,
        }
    }
}

impl LeanCalls for LeanConnect {
    fn path(&self) -> &'static str {
        CONNECT_PATH
    }

    fn serve(&self, conn: Box<LeanConn>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let this = self.clone();
        // The span the tonic path's trace layer would make: the call
        // continues the client's trace (W3C context from its headers).
        let span = hubbub_kit::telemetry::role_span("gateway", CONNECT_PATH);
        hubbub_kit::tracecontext::set_parent_from(
            &span,
            conn.head.traceparent.as_deref().unwrap_or(""),
            conn.head.tracestate.as_deref().unwrap_or(""),
        );
        Box::pin(tracing::Instrument::instrument(
            async move { this.connect(conn).await },
            span,
        ))
    }
}

impl LeanConnect {
    async fn connect(self, conn: Box<LeanConn>) {
        // The opening runs in a future of its own, freed before the stream
        // starts: a streaming connection holds its socket, its outbox and
        // the few words of `stream`, not the opening's state.
        let opened = Box::pin(self.open(conn)).await;
        if let Some((io, events)) = opened {
            self.stream(io, events).await;
        }
    }

    /// Reads the request, opens the call and writes the response head; the
    /// connection and its events, or None when it was refused (answered).
    async fn open(&self, conn: Box<LeanConn>) -> Option<(HandshakeDeadline, OutboxStream)> {
        // Timed until its answer's head is written, as tonic's calls are.
        let LeanConn {
            mut io,
            head,
            rest,
            info,
            timer,
        } = *conn;
        let cors = cors_headers(head.origin.as_deref());
        let body = match tokio::time::timeout(BODY_TIMEOUT, read_body(&mut io, rest, head.body)).await {
            Ok(Ok(body)) => body,
            Ok(Err(status)) => return trailers_only(&mut io, &cors, &status, timer).await,
            Err(_) => {
                let status = Status::deadline_exceeded("the request body was not sent in time");
                return trailers_only(&mut io, &cors, &status, timer).await;
            }
        };
        let message = match unframe(&body).and_then(|m| {
            ConnectRequest::decode(m)
                .map_err(|err| Status::invalid_argument(format!("the ConnectRequest does not decode: {err}")))
        }) {
            Ok(message) => message,
            Err(status) => return trailers_only(&mut io, &cors, &status, timer).await,
        };
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        // As bytes, as hyper keeps them: a value the token check cannot
        // read is refused there (UNAUTHENTICATED), never dropped into a guest.
        let mut put = |name: &'static str, value: &str| {
            if let Ok(value) = MetadataValue::try_from(value.as_bytes()) {
                metadata.append(MetadataKey::from_static(name), value);
            }
        };
        if let Some(value) = &head.authorization {
            put("authorization", value);
        }
        if let Some(value) = &head.traceparent {
            put("traceparent", value);
        }
        if let Some(value) = &head.tracestate {
            put("tracestate", value);
        }
        for value in &head.forwarded_for {
            put("x-forwarded-for", value);
        }
        request.extensions_mut().insert(info);
        let events = match self.api.connect(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return trailers_only(&mut io, &cors, &status, timer).await,
        };
        self.api.metrics().lean_streams.inc();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\ntransfer-encoding: chunked\r\ncache-control: no-store\r\nconnection: close\r\n{cors}\r\n"
        );
        io.write_all(head.as_bytes()).await.ok()?;
        Some((io, events))
    }

    async fn stream(&self, io: HandshakeDeadline, mut events: OutboxStream) {
        let (socket, _place) = io.into_parts();
        let socket = Arc::new(socket);
        // From here pushers write events on the socket themselves while
        // nothing is queued; this task writes only what had to wait.
        events.write_directly(socket.clone());
        let status = loop {
            tokio::select! {
                next = std::future::poll_fn(|cx| events.poll_chunk(cx)) => match next {
                    Some(Ok(chunk)) => {
                        // Boxed: a write that waits is the exception (the socket
                        // was full), and an idle stream's future stays small.
                        match Box::pin(write_within(&socket, &chunk, self.write_timeout)).await {
                            Ok(()) => events.written(),
                            // Trailers only after whole chunks: after a half-written
                            // one they would be read as its rest.
                            Err(Written::Broken | Written::Partly) => return,
                            Err(Written::Nothing) => break Status::resource_exhausted("the device stopped reading"),
                        }
                    }
                    Some(Err(status)) => break status,
                    None => break Status::ok(""),
                },
                // A byte from the client after its request is a close (EOF),
                // a reset, or a pipelined request it has no business
                // sending: each ends the stream. Nothing is buffered for it.
                readable = socket.readable() => {
                    if readable.is_err() || !matches!(socket.try_read(&mut [0u8; 1]), Err(ref err) if err.kind() == io::ErrorKind::WouldBlock) {
                        return;
                    }
                }
            }
        };
        // No pusher writes past this point: the trailers come last.
        drop(events);
        Box::pin(end_with(socket, status)).await;
    }
}

/// The request body, from what came after the head and more reads.
async fn read_body(io: &mut HandshakeDeadline, mut read: Vec<u8>, framing: BodyFraming) -> Result<Vec<u8>, Status> {
    let too_big = || Status::resource_exhausted(format!("the Connect request is larger than {MAX_BODY} bytes"));
    match framing {
        BodyFraming::Length(length) => {
            let length = usize::try_from(length).map_err(|_| too_big())?;
            if length > MAX_BODY {
                return Err(too_big());
            }
            while read.len() < length {
                if fill(io, &mut read, MAX_BODY + 64).await? == 0 {
                    return Err(Status::invalid_argument("the request body ended early"));
                }
            }
            read.truncate(length);
            Ok(read)
        }
        BodyFraming::Chunked => {
            let mut body = Vec::new();
            let mut at = 0;
            loop {
                let Some(line_end) = find_crlf(&read[at..]) else {
                    if read.len() > MAX_BODY + 1024 {
                        return Err(too_big());
                    }
                    if fill(io, &mut read, MAX_BODY + 1024).await? == 0 {
                        return Err(Status::invalid_argument("the request body ended early"));
                    }
                    continue;
                };
                let malformed = || Status::invalid_argument("a malformed chunk in the request body");
                // Hex digits only, at most 4 of them (MAX_BODY is 4 KiB): no
                // sign, no whitespace, no overflow.
                let size_text = &read[at..at + line_end];
                let digits = size_text.split(|b| *b == b';').next().unwrap_or_default();
                if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_hexdigit) {
                    return Err(malformed());
                }
                let size = usize::from_str_radix(std::str::from_utf8(digits).map_err(|_| malformed())?, 16)
                    .map_err(|_| malformed())?;
                if size > MAX_BODY - body.len() {
                    return Err(too_big());
                }
                let start = at + line_end + 2;
                while read.len() < start + size + 2 {
                    if fill(io, &mut read, MAX_BODY + 1024).await? == 0 {
                        return Err(Status::invalid_argument("the request body ended early"));
                    }
                }
                if &read[start + size..start + size + 2] != b"\r\n" {
                    return Err(malformed());
                }
                if size == 0 {
                    return Ok(body);
                }
                body.extend_from_slice(&read[start..start + size]);
                at = start + size + 2;
            }
        }
    }
}

/// Reads more into `read`, never past `cap` bytes in all.
async fn fill(io: &mut HandshakeDeadline, read: &mut Vec<u8>, cap: usize) -> Result<usize, Status> {
    if read.len() >= cap {
        return Err(Status::resource_exhausted(format!(
            "the Connect request is larger than {MAX_BODY} bytes"
        )));
    }
    read.reserve((cap - read.len()).min(4096));
    io.read_buf(read)
        .await
        .map_err(|_| Status::cancelled("the client went away"))
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

/// The message of the one gRPC-web data frame of a request body.
fn unframe(body: &[u8]) -> Result<&[u8], Status> {
    let (Some(&flags), Some(length)) = (body.first(), body.get(1..5)) else {
        return Err(Status::invalid_argument("the request body is not a gRPC-web frame"));
    };
    if flags != 0 {
        return Err(Status::unimplemented("compressed requests are not accepted on Connect"));
    }
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    body.get(5..5 + length)
        .filter(|_| body.len() == 5 + length)
        .ok_or_else(|| Status::invalid_argument("the request body is not exactly one gRPC-web frame"))
}

/// A chunk holding a gRPC-web trailer frame (flag 0x80) saying `status`.
fn trailer_chunk(status: &Status) -> Vec<u8> {
    let mut text = format!("grpc-status:{}\r\n", status.code() as i32);
    if !status.message().is_empty() {
        text.push_str(&format!("grpc-message:{}\r\n", percent_encode(status.message())));
    }
    let mut chunk = format!("{:x}\r\n", text.len() + 5).into_bytes();
    chunk.push(0x80);
    chunk.extend_from_slice(&(text.len() as u32).to_be_bytes());
    chunk.extend_from_slice(text.as_bytes());
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// A refusal before any event: status and message as headers, no body.
async fn trailers_only<T>(
    io: &mut HandshakeDeadline,
    cors: &str,
    status: &Status,
    timer: Option<CallTimer>,
) -> Option<T> {
    if status.code() == Code::Internal || status.code() == Code::Unknown {
        tracing::error!(%status, "lean connect failed");
    } else {
        tracing::debug!(%status, "lean connect refused");
    }
    let mut head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\ngrpc-status: {}\r\ngrpc-message: {}\r\n",
        status.code() as i32,
        percent_encode(status.message())
    );
    if let Some(hint) = status.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()) {
        head.push_str(&format!("retry-after-ms: {hint}\r\n"));
    }
    head.push_str(&format!("content-length: 0\r\nconnection: close\r\n{cors}\r\n"));
    let _ = tokio::time::timeout(Duration::from_secs(1), io.write_all(head.as_bytes())).await;
    drop(timer); // answered: the linger is not the call's time
    hubbub_kit::lean::split::close_lingering(io).await;
    None
}

fn cors_headers(origin: Option<&str>) -> String {
    match origin {
        // The token, not the origin, authorises (as on the tonic path).
        Some(origin) => format!(
            "access-control-allow-origin: {origin}\r\nvary: origin\r\naccess-control-expose-headers: {EXPOSED}\r\n"
        ),
        None => String::new(),
    }
}

/// gRPC's percent-encoding of a status message.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Writes the trailers in the last data chunk, then the end of the body,
/// and closes.
async fn end_with(socket: Arc<TcpStream>, status: Status) {
    let mut end = trailer_chunk(&status);
    end.extend_from_slice(b"0\r\n\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(1), write_all(&socket, &mut end.as_slice())).await;
    // The outbox let go of its handle with the stream: the socket is ours.
    if let Ok(mut socket) = Arc::try_unwrap(socket) {
        let _ = socket.shutdown().await;
    }
}

/// How a write that did not finish left the socket.
enum Written {
    /// Failed (closed, reset).
    Broken,
    /// Timed out with nothing of it written.
    Nothing,
    /// Timed out part way through.
    Partly,
}

/// Writes all of `chunk` within `limit`.
async fn write_within(socket: &TcpStream, chunk: &[u8], limit: Duration) -> Result<(), Written> {
    let mut left = chunk;
    match tokio::time::timeout(limit, write_all(socket, &mut left)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Written::Broken),
        Err(_) if left.len() < chunk.len() => Err(Written::Partly),
        Err(_) => Err(Written::Nothing),
    }
}

/// Writes every byte of `bytes` on a socket others may write on too (never
/// at the same time: the outbox orders them).
/// `bytes` is left holding what was not written.
async fn write_all(socket: &TcpStream, bytes: &mut &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => *bytes = &bytes[written..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_chunks_are_laid_out_as_grpc_web_over_http1() {
        let trailer = trailer_chunk(&Status::unavailable("draining: 100% gone\n"));
        let text = b"grpc-status:14\r\ngrpc-message:draining: 100%25 gone%0A\r\n";
        assert_eq!(&trailer[..4], format!("{:x}\r\n", text.len() + 5).as_bytes());
        assert_eq!(trailer[4], 0x80);
        assert_eq!(&trailer[5..9], &(text.len() as u32).to_be_bytes());
        assert_eq!(&trailer[9..], [&text[..], b"\r\n"].concat().as_slice());
        assert_eq!(unframe(b"\0\0\0\0\x02hi").unwrap(), b"hi");
        assert!(unframe(b"\0\0\0\0\x05hi").is_err());
        assert!(unframe(b"\x01\0\0\0\x02hi").is_err());
        assert!(unframe(b"\0\0").is_err());
    }
}
