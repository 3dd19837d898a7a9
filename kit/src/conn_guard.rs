//! `HandshakeDeadline`: an accepted TCP connection that must send its first
//! bytes in time. A peer that connects and stays silent (or sends less than
//! an HTTP/2 preface) would otherwise hold a socket and a task forever; past
//! the deadline its reads fail and the server drops it. After the handshake
//! the HTTP/2 keepalive takes over: a peer that stops answering pings is
//! dropped too.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Sleep,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::accept::Place;

/// Bytes a peer must send before the deadline: the HTTP/2 connection
/// preface (an HTTP/1.1 request line with its headers is longer).
const HANDSHAKE_BYTES: usize = 24;

/// A connection whose peer must send [`HANDSHAKE_BYTES`] within a deadline.
#[derive(Debug)]
pub struct HandshakeDeadline {
    stream: TcpStream,
    received: usize,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Its place under the listener's caps, given back when it closes.
    place: Option<Place>,
}

impl HandshakeDeadline {
    /// Guards `stream`, accepted just now, holding `place`.
    pub fn new(stream: TcpStream, timeout: Duration, place: Option<Place>) -> Self {
        Self {
            stream,
            received: 0,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            place,
        }
    }

    /// The socket and its place under the caps, once the handshake is
    /// over: for a caller that drives the socket itself (the lean path).
    pub fn into_parts(self) -> (TcpStream, Option<Place>) {
        (self.stream, self.place)
    }
}

impl AsyncRead for HandshakeDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(deadline) = &mut this.deadline {
            this.received += buf.filled().len() - before;
            if this.received >= HANDSHAKE_BYTES {
                this.deadline = None;
            } else if polled.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer sent no request within the handshake timeout",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for HandshakeDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for HandshakeDeadline {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
