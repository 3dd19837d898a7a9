//! The accept loop of a public port with a lean call: each connection's
//! first bytes are read (within the head limits and time) and judged; a
//! lean call goes to the role's [`LeanCalls`], anything else to tonic with
//! those bytes put back in front, and a refused head gets its status and
//! is closed.

use super::head::{self, ConnectHead, HeadLimits, Sniffed};
use super::rewind::Rewind;
use crate::accept::GuardedIncoming;
use crate::conn_guard::HandshakeDeadline;
use crate::metrics::{CallTimer, GrpcMetrics};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A connection whose head is a lean call's.
pub struct LeanConn {
    /// The connection (its place under the listener's caps held).
    pub io: HandshakeDeadline,
    /// The parsed head.
    pub head: ConnectHead,
    /// What came after the head in the first reads (the body's start).
    pub rest: Vec<u8>,
    /// Its addresses.
    pub info: TcpConnectInfo,
    /// The call counted in the role's gRPC metrics, timed until dropped
    /// (drop it once the response head is written).
    pub timer: Option<CallTimer>,
}

/// A role's lean call.
pub trait LeanCalls: Send + Sync + 'static {
    /// The call's path (`/pkg.Service/Method`).
    fn path(&self) -> &'static str;
    /// Serves one connection until the call ends (boxed: a streaming
    /// connection should not carry its opening in its future).
    fn serve(&self, conn: Box<LeanConn>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Connections handed to tonic at once, waiting for it to take them.
const HANDED_OVER: usize = 1024;

/// `incoming`, split: lean calls served by `lean`, the rest yielded. The
/// tracker holds every connection being judged or served on the lean path:
/// a drain waits for it as tonic waits for its own.
pub fn split(
    mut incoming: GuardedIncoming,
    lean: Arc<dyn LeanCalls>,
    limits: HeadLimits,
    head_timeout: Duration,
    metrics: GrpcMetrics,
) -> (ReceiverStream<io::Result<Rewind<HandshakeDeadline>>>, TaskTracker) {
    let (to_tonic, stream) = tokio::sync::mpsc::channel(HANDED_OVER);
    let line: Arc<[u8]> = head::request_line(lean.path()).into();
    let tracker = TaskTracker::new();
    let connections = tracker.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = incoming.next() => next,
                // tonic stopped taking connections: the server is done.
                () = to_tonic.closed() => return,
            };
            let Some(accepted) = next else { return };
            let Ok(io) = accepted else { continue };
            let (lean, line, to_tonic, metrics) = (lean.clone(), line.clone(), to_tonic.clone(), metrics.clone());
            connections.spawn(async move {
                // Judged in a future of its own, freed once judged: this task
                // lives as long as the connection, and keeps only a few words.
                let judged = Box::pin(judge(io, &line, limits, head_timeout)).await;
                match judged {
                    Judged::Tonic(io) => {
                        let _ = to_tonic.send(Ok(io)).await;
                    }
                    Judged::Lean(mut conn) => {
                        conn.timer = Some(metrics.start_call(lean.path()));
                        lean.serve(conn).await
                    }
                    Judged::Done => {}
                }
            });
        }
    });
    (ReceiverStream::new(stream), tracker)
}

enum Judged {
    Tonic(Rewind<HandshakeDeadline>),
    Lean(Box<LeanConn>),
    Done,
}

async fn judge(mut io: HandshakeDeadline, line: &[u8], limits: HeadLimits, head_timeout: Duration) -> Judged {
    let mut read = Vec::with_capacity(512);
    let judged = tokio::time::timeout(head_timeout, async {
        loop {
            let room = limits.max_head_bytes.saturating_sub(read.len()).clamp(1, 4096);
            read.reserve(room);
            let before = read.len();
            match io.read_buf(&mut read).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            // A lean call's head is parsed again only when a line ended:
            // a head trickled byte by byte costs a parse per line, not per
            // byte (a line without a colon is refused at once).
            let seen = read.len().min(line.len());
            let lean_so_far = read[..seen] == line[..seen];
            if lean_so_far
                && read.len() > line.len()
                && read.len() < limits.max_head_bytes
                && !read[before..].contains(&b'\n')
            {
                continue;
            }
            match head::sniff(&read, line, limits) {
                Sniffed::Incomplete => continue,
                judged => return Some(judged),
            }
        }
    })
    .await;
    match judged {
        Ok(Some(Sniffed::Other)) => Judged::Tonic(Rewind::new(read, io)),
        Ok(Some(Sniffed::Connect(head))) => {
            let rest = read[head.len..].to_vec();
            let info = io.connect_info();
            Judged::Lean(Box::new(LeanConn {
                io,
                head,
                rest,
                info,
                timer: None,
            }))
        }
        Ok(Some(Sniffed::Refused(refusal))) => {
            refuse(&mut io, refusal.status(), "request head refused").await;
            Judged::Done
        }
        Ok(Some(Sniffed::Incomplete) | None) => Judged::Done,
        // A lean call's head that never completed (a slowloris).
        Err(_) => {
            refuse(&mut io, 408, "request head not sent in time").await;
            Judged::Done
        }
    }
}

async fn refuse(io: &mut HandshakeDeadline, status: u16, reason: &str) {
    let answer = format!("HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(1), io.write_all(answer.as_bytes())).await;
    close_lingering(io).await;
}

/// Ends a connection after an answer: our side first, then what the client
/// still sends is read and dropped (a second at most, 64 KiB at most), so
/// closing with unread bytes does not reset the connection and destroy the
/// answer before the client has read it.
pub async fn close_lingering(io: &mut HandshakeDeadline) {
    let _ = io.shutdown().await;
    let drain = async {
        let mut scratch = [0u8; 1024];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

impl<T: Connected> Connected for Rewind<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}
