//! A server stream that its owner can close: gracefully (what is queued is
//! still sent, then the stream ends) or with an error status (sent at once,
//! ahead of the queue, because the queue is what could not drain).

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

/// Closes a [`CloseableStream`] from anywhere.
#[derive(Debug, Clone, Default)]
pub struct Closer {
    token: CancellationToken,
    reason: Arc<Mutex<Option<Status>>>,
}

impl Closer {
    /// A closer for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the stream after what is queued.
    pub fn close(&self) {
        self.token.cancel();
    }

    /// Ends the stream now with `status`. The first reason given wins.
    pub fn fail(&self, status: Status) {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if !self.token.is_cancelled() {
            reason.get_or_insert(status);
        }
        drop(reason);
        self.token.cancel();
    }

    /// True once `close` or `fail` was called.
    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the stream is closed.
    pub async fn closed(&self) {
        self.token.cancelled().await
    }
}

/// A receiver turned into a response stream that a [`Closer`] can end, and
/// that holds a guard dropped with the stream (to clean up after a client
/// that went away).
pub struct CloseableStream<T> {
    receiver: mpsc::Receiver<Result<T, Status>>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    closer: Closer,
    is_closed: bool,
    done: bool,
    _guard: Option<Box<dyn Send + Sync>>,
}

impl<T> CloseableStream<T> {
    /// Streams what `receiver` yields until `closer` closes it.
    pub fn new(receiver: mpsc::Receiver<Result<T, Status>>, closer: Closer) -> Self {
        Self {
            receiver,
            closed: Box::pin(closer.token.clone().cancelled_owned()),
            closer,
            is_closed: false,
            done: false,
            _guard: None,
        }
    }

    /// Keeps `guard` alive as long as the stream.
    pub fn with_guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }
}

impl<T> Stream for CloseableStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.is_closed && this.closed.as_mut().poll(cx).is_ready() {
            this.is_closed = true;
        }
        if this.is_closed {
            let failure = this.closer.reason.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(status) = failure {
                this.done = true;
                return Poll::Ready(Some(Err(status)));
            }
            // Graceful: flush what is already queued, then end.
            return match this.receiver.try_recv() {
                Ok(item) => Poll::Ready(Some(item)),
                Err(_) => {
                    this.done = true;
                    Poll::Ready(None)
                }
            };
        }
        match this.receiver.poll_recv(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn close_flushes_the_queue_and_fail_jumps_it() {
        let (tx, rx) = mpsc::channel(4);
        let closer = Closer::new();
        let mut stream = CloseableStream::new(rx, closer.clone());
        tx.send(Ok(1)).await.unwrap();
        tx.send(Ok(2)).await.unwrap();
        closer.close();
        let got: Vec<_> = (&mut stream).map(|r| r.unwrap()).collect().await;
        assert_eq!(got, vec![1, 2]);

        let (tx, rx) = mpsc::channel(4);
        let closer = Closer::new();
        let mut stream = CloseableStream::new(rx, closer.clone());
        tx.send(Ok(1)).await.unwrap();
        closer.fail(Status::resource_exhausted("too slow"));
        let first = stream.next().await.unwrap().unwrap_err();
        assert_eq!(first.code(), tonic::Code::ResourceExhausted);
        assert!(stream.next().await.is_none());
    }
}
