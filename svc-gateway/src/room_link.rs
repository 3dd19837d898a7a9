//! `RoomLinks`: one long-lived attach stream to every room instance. Each
//! link subscribes the rooms this gateway holds that its instance owns,
//! feeds the instance's batches into `LocalRooms`, and after a broken stream
//! attaches again and re-subscribes everything, so viewers see a short gap at
//! worst (and the ring fills it).

use crate::rooms::LocalRooms;
use hubbub_kit::{
    channel::{self, AddressError, TracedChannel},
    rendezvous, tracecontext,
};
use hubbub_proto::v1::{
    AttachHello, RoomAttachRequest, RoomSubscribe, RoomUnsubscribe, room_attach_request::Command,
    room_attach_response::Event, room_client::RoomClient,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

/// Longest pause between attempts to attach to an instance that stays down.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// The attach streams of this gateway, one per room instance.
#[derive(Debug)]
pub struct RoomLinks {
    addresses: Vec<String>,
    links: Vec<RoomLink>,
}

#[derive(Debug)]
struct RoomLink {
    client: RoomClient<TracedChannel>,
    commands: mpsc::UnboundedSender<Command>,
}

impl RoomLinks {
    /// Starts a link to every address in `addresses`; they run until
    /// `shutdown` is cancelled.
    pub fn start(
        gateway_id: &str,
        addresses: &[String],
        rooms: Arc<LocalRooms>,
        retry: Duration,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, AddressError> {
        let mut links = Vec::with_capacity(addresses.len());
        let mut tasks = Vec::with_capacity(addresses.len());
        for address in addresses {
            let client = RoomClient::new(channel::traced(address)?);
            let (commands, receiver) = mpsc::unbounded_channel();
            links.push(RoomLink {
                client: client.clone(),
                commands,
            });
            tasks.push(Attacher {
                gateway_id: gateway_id.to_owned(),
                address: address.clone(),
                all_addresses: addresses.to_vec(),
                client,
                commands: receiver,
                rooms: rooms.clone(),
                retry,
                shutdown: shutdown.clone(),
            });
        }
        for task in tasks {
            tokio::spawn(task.run());
        }
        Ok(Arc::new(Self {
            addresses: addresses.to_vec(),
            links,
        }))
    }

    /// A client of the instance owning `room_id`.
    pub fn client_for(&self, room_id: &str) -> RoomClient<TracedChannel> {
        self.owner(room_id).client.clone()
    }

    /// Asks the owner of `room_id` for its traffic.
    pub fn subscribe(&self, room_id: &str) {
        let command = Command::Subscribe(RoomSubscribe {
            room_ids: vec![room_id.to_owned()],
        });
        // A closed link is down: it re-subscribes from LocalRooms when back.
        let _ = self.owner(room_id).commands.send(command);
    }

    /// Tells the owner of `room_id` to stop sending it here.
    pub fn unsubscribe(&self, room_id: &str) {
        let command = Command::Unsubscribe(RoomUnsubscribe {
            room_ids: vec![room_id.to_owned()],
        });
        let _ = self.owner(room_id).commands.send(command);
    }

    fn owner(&self, room_id: &str) -> &RoomLink {
        let index = rendezvous::owner(room_id, &self.addresses).expect("config validation requires a room instance");
        &self.links[index]
    }
}

/// The task behind one link.
struct Attacher {
    gateway_id: String,
    address: String,
    all_addresses: Vec<String>,
    client: RoomClient<TracedChannel>,
    commands: mpsc::UnboundedReceiver<Command>,
    rooms: Arc<LocalRooms>,
    retry: Duration,
    shutdown: CancellationToken,
}

impl Attacher {
    async fn run(mut self) {
        let mut pause = self.retry / 2;
        while !self.shutdown.is_cancelled() {
            let started = tokio::time::Instant::now();
            match self.attach_once().await {
                Ok(()) => tracing::info!(room = %self.address, "attach stream ended"),
                Err(status) => {
                    tracing::warn!(room = %self.address, %status, "attach stream failed")
                }
            }
            // Back off while the instance stays down; a stream that lived a
            // while resets the pause, so a restarted instance is picked up fast.
            pause = if started.elapsed() > MAX_RETRY_PAUSE {
                self.retry
            } else {
                (pause * 2).min(MAX_RETRY_PAUSE).max(self.retry)
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// One attach: hello, re-subscribe what we hold, then relay commands out
    /// and batches in until the stream breaks.
    async fn attach_once(&mut self) -> Result<(), tonic::Status> {
        // Commands queued while down are stale: the held rooms are re-read below.
        while self.commands.try_recv().is_ok() {}
        let (outbound, receiver) = mpsc::unbounded_channel::<RoomAttachRequest>();
        let send = |command| outbound.send(RoomAttachRequest { command: Some(command) });
        let _ = send(Command::Hello(AttachHello {
            gateway_id: self.gateway_id.clone(),
        }));
        let held = self.rooms.room_ids(|room_id| {
            rendezvous::owner(room_id, &self.all_addresses).map(|i| &self.all_addresses[i]) == Some(&self.address)
        });
        if !held.is_empty() {
            let _ = send(Command::Subscribe(RoomSubscribe { room_ids: held }));
        }

        let mut inbound = self
            .client
            .attach(UnboundedReceiverStream::new(receiver))
            .await?
            .into_inner();
        tracing::info!(room = %self.address, "attached");
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => { let _ = send(command); }
                    None => return Ok(()),
                },
                message = inbound.message() => match message? {
                    Some(response) => self.handle(response.event),
                    None => return Ok(()),
                },
                _ = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    fn handle(&self, event: Option<Event>) {
        match event {
            Some(Event::Batch(batch)) => {
                let span = tracing::info_span!(
                    "gateway.deliver",
                    gateway_id = %self.gateway_id,
                    room_id = %batch.room_id,
                    messages = batch.messages.len(),
                    viewers = tracing::field::Empty,
                );
                tracecontext::set_parent_from(&span, &batch.traceparent, &batch.tracestate);
                let rooms = &self.rooms;
                span.in_scope(|| {
                    let viewers = rooms.on_batch(batch);
                    tracing::Span::current().record("viewers", viewers);
                });
            }
            Some(Event::Subscribed(subscribed)) => self.rooms.on_subscribed(subscribed),
            Some(Event::Accepted(_)) | None => {}
        }
    }
}
