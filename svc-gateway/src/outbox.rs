//! `Outbox`: the bounded queue of one client stream. Nothing ever waits on a
//! slow device: a full outbox closes the stream with RESOURCE_EXHAUSTED so
//! the device reconnects and pulls what it missed.

use crate::metrics::GatewayMetrics;
use hubbub_kit::closeable::Closer;
use hubbub_proto::v1::ServerEvent;
use tokio::sync::mpsc::{self, error::TrySendError};
use tonic::Status;

/// The sending side of a client stream.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::Sender<Result<ServerEvent, Status>>,
    closer: Closer,
}

impl Outbox {
    /// An outbox over `sender`, closed through `closer`.
    pub fn new(sender: mpsc::Sender<Result<ServerEvent, Status>>, closer: Closer) -> Self {
        Self { sender, closer }
    }

    /// Queues an event the device must get; closes the stream when the queue
    /// is full. False when the event was not queued.
    pub fn push(&self, event: ServerEvent, metrics: &GatewayMetrics) -> bool {
        match self.sender.try_send(Ok(event)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if !self.closer.is_closed() {
                    metrics.slow_closed.inc();
                }
                self.closer.fail(Status::resource_exhausted(
                    "this device did not read its stream fast enough: reconnect, re-join rooms and pull",
                ));
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Queues an event only when there is room (heartbeats: a busy stream
    /// needs none).
    pub fn offer(&self, event: ServerEvent) {
        let _ = self.sender.try_send(Ok(event));
    }

    /// Ends the stream after what is queued.
    pub fn close(&self) {
        self.closer.close();
    }
}
