//! `RoomLinks`: one long-lived attach stream to every room instance. Each
//! link subscribes the rooms this gateway holds that its instance owns,
//! feeds the instance's batches into `LocalRooms`, and after a broken stream
//! attaches again and re-subscribes everything, so viewers see a short gap at
//! worst (and the ring fills it). When the instance list changes, links to
//! new instances start, links to departed ones stop, and every held room
//! whose owner changed is subscribed at its new owner.
//!
//! Every queue is bounded: commands to a link that is far behind are
//! dropped (and counted), which is safe because every (re-)attach
//! re-subscribes from `LocalRooms`, the source of truth.

use crate::{
    delivery::{Deliveries, Delivery},
    publish_batch::{PublishBounds, PublishManyCall, RoomPublisher},
    rooms::LocalRooms,
};
use hubbub_kit::{
    channel::{AddressError, Dialer, TracedChannel},
    discovery::Instances,
    rendezvous,
};
use hubbub_proto::v1::{
    AttachHello, RoomAttachRequest, RoomSubscribe, RoomUnsubscribe, room_attach_request::Command,
    room_attach_response::Event, room_client::RoomClient,
};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Longest pause between attempts to attach to an instance that stays down.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Commands queued per link, and messages queued on an attach stream.
const COMMAND_QUEUE: usize = 4096;

/// The current instance list, shared with the attach tasks.
type SharedAddresses = Arc<RwLock<Arc<Vec<String>>>>;

/// The attach streams of this gateway, one per room instance.
#[derive(Debug)]
pub struct RoomLinks {
    gateway_id: String,
    dialer: Dialer,
    rooms: Arc<LocalRooms>,
    deliveries: Deliveries,
    retry: Duration,
    shutdown: CancellationToken,
    addresses: SharedAddresses,
    publishing: PublishBounds,
    // Why a lock: the set changes only when the instance list does; every
    // publish and subscription reads it.
    links: RwLock<HashMap<String, RoomLink>>,
}

#[derive(Debug, Clone)]
struct RoomLink {
    publisher: RoomPublisher,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
}

impl RoomLink {
    fn command(&self, command: Command) {
        match self.commands.try_send(command) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            // The next attach re-subscribes what LocalRooms holds.
            Err(TrySendError::Full(_)) => tracing::warn!("room link far behind: a command waits for the next attach"),
        }
    }
}

impl RoomLinks {
    /// Starts a link to every instance in `instances`, and follows the list
    /// as it changes, until `shutdown` is cancelled.
    pub fn start(
        gateway_id: &str,
        dialer: &Dialer,
        mut instances: Instances,
        rooms: Arc<LocalRooms>,
        retry: Duration,
        publishing: PublishBounds,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, AddressError> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let links = Arc::new(Self {
            gateway_id: gateway_id.to_owned(),
            dialer: dialer.clone(),
            deliveries: Deliveries::start(rooms.clone(), workers, gateway_id),
            rooms,
            retry,
            shutdown: shutdown.clone(),
            addresses: Arc::default(),
            publishing,
            links: RwLock::default(),
        });
        links.apply(instances.borrow_and_update().clone())?;
        let follower = links.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = instances.changed() => if changed.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
                let list = instances.borrow_and_update().clone();
                if let Err(err) = follower.apply(list) {
                    tracing::warn!(%err, "ignoring an unusable room instance list");
                }
            }
        });
        Ok(links)
    }

    /// Where messages for the instance owning `room_id` queue.
    pub fn publisher_for(&self, room_id: &str) -> Result<RoomPublisher, Status> {
        self.owner(room_id)
            .map(|link| link.publisher)
            .ok_or_else(|| Status::unavailable("no room instance is known yet: retry"))
    }

    /// Asks the owner of `room_id` for its traffic.
    pub fn subscribe(&self, room_id: &str) {
        let command = Command::Subscribe(RoomSubscribe {
            room_ids: vec![room_id.to_owned()],
        });
        // A link that is down re-subscribes from LocalRooms when back.
        if let Some(link) = self.owner(room_id) {
            link.command(command);
        }
    }

    /// Tells the owner of `room_id` to stop sending it here.
    pub fn unsubscribe(&self, room_id: &str) {
        let command = Command::Unsubscribe(RoomUnsubscribe {
            room_ids: vec![room_id.to_owned()],
        });
        if let Some(link) = self.owner(room_id) {
            link.command(command);
        }
    }

    fn owner(&self, room_id: &str) -> Option<RoomLink> {
        let addresses = self.addresses.read().unwrap_or_else(|p| p.into_inner()).clone();
        let owner = &addresses[rendezvous::owner(room_id, &addresses)?];
        self.links.read().unwrap_or_else(|p| p.into_inner()).get(owner).cloned()
    }

    /// Moves to a new instance list: starts and stops links, then moves each
    /// held room whose owner changed.
    fn apply(&self, addresses: Arc<Vec<String>>) -> Result<(), AddressError> {
        let mut links = self.links.write().unwrap_or_else(|p| p.into_inner());
        let mut started = Vec::new();
        let new: Vec<&String> = addresses.iter().filter(|a| !links.contains_key(*a)).collect();
        for address in new {
            let client = RoomClient::new(self.dialer.dial(address)?);
            let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
            let stop = self.shutdown.child_token();
            started.push(Attacher {
                gateway_id: self.gateway_id.clone(),
                address: address.clone(),
                addresses: self.addresses.clone(),
                client: client.clone(),
                commands: receiver,
                rooms: self.rooms.clone(),
                deliveries: self.deliveries.clone(),
                retry: self.retry,
                shutdown: stop.clone(),
            });
            let PublishBounds {
                queue,
                in_flight,
                timeout,
            } = self.publishing;
            // Its task ends with the link's last handle, once its batches in
            // flight are answered.
            let publisher = RoomPublisher::start(PublishManyCall(client.clone()), queue, in_flight, timeout);
            links.insert(
                address.clone(),
                RoomLink {
                    publisher,
                    commands,
                    stop,
                },
            );
        }
        links.retain(|address, link| {
            let keep = addresses.contains(address);
            if !keep {
                tracing::info!(room = %address, "room instance left the list");
                link.stop.cancel();
            }
            keep
        });
        let before = std::mem::replace(
            &mut *self.addresses.write().unwrap_or_else(|p| p.into_inner()),
            addresses.clone(),
        );
        for attacher in started {
            tokio::spawn(attacher.run());
        }
        if before.is_empty() || before == addresses {
            return Ok(());
        }
        for room_id in self.rooms.room_ids(|_| true) {
            let old = rendezvous::owner(&room_id, &before).map(|i| &before[i]);
            let new = rendezvous::owner(&room_id, &addresses).map(|i| &addresses[i]);
            if old == new {
                continue;
            }
            tracing::debug!(room_id, ?old, ?new, "room moves to another instance");
            if let Some(link) = new.and_then(|address| links.get(address)) {
                let room_ids = vec![room_id.clone()];
                link.command(Command::Subscribe(RoomSubscribe { room_ids }));
            }
            if let Some(link) = old.and_then(|address| links.get(address)) {
                let room_ids = vec![room_id.clone()];
                link.command(Command::Unsubscribe(RoomUnsubscribe { room_ids }));
            }
        }
        Ok(())
    }
}

/// The task behind one link.
struct Attacher {
    gateway_id: String,
    address: String,
    addresses: SharedAddresses,
    client: RoomClient<TracedChannel>,
    commands: mpsc::Receiver<Command>,
    rooms: Arc<LocalRooms>,
    deliveries: Deliveries,
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
        let (outbound, receiver) = mpsc::channel::<RoomAttachRequest>(COMMAND_QUEUE);
        let send = |command| outbound.try_send(RoomAttachRequest { command: Some(command) });
        let _ = send(Command::Hello(AttachHello {
            gateway_id: self.gateway_id.clone(),
        }));
        let addresses = self.addresses.read().unwrap_or_else(|p| p.into_inner()).clone();
        let held = self
            .rooms
            .room_ids(|room_id| rendezvous::owner(room_id, &addresses).map(|i| &addresses[i]) == Some(&self.address));
        for room_ids in held.chunks(1000) {
            let _ = send(Command::Subscribe(RoomSubscribe {
                room_ids: room_ids.to_vec(),
            }));
        }

        let mut inbound = self.client.attach(ReceiverStream::new(receiver)).await?.into_inner();
        tracing::info!(room = %self.address, "attached");
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => {
                        let request = RoomAttachRequest { command: Some(command) };
                        if outbound.send(request).await.is_err() {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                },
                message = inbound.message() => match message? {
                    Some(response) => self.handle(response.event).await,
                    None => return Ok(()),
                },
                _ = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn handle(&self, event: Option<Event>) {
        match event {
            Some(Event::Batch(batch)) => self.deliveries.send(Delivery::Batch(batch)).await,
            Some(Event::Subscribed(subscribed)) => self.deliveries.send(Delivery::Subscribed(subscribed)).await,
            Some(Event::Accepted(_)) | Some(Event::Heartbeat(_)) | None => {}
        }
    }
}
