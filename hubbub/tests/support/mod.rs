//! A sandbox of real roles on 127.0.0.1 port 0, talked to over real gRPC.
//! Dropping it shuts every role down.

#![allow(dead_code)]

pub mod all;
pub mod lean;
pub mod node;
pub mod proxy;

use hubbub_kit::{
    auth::{Identity, JwtKey},
    channel::{self, TracedChannel},
    serve::ServeOptions,
    service_auth::{Credentials, InternalKey, Role},
};
use hubbub_proto::v1::{
    ConnectRequest, JoinRoomRequest, RoomMessage, RoomMessageKind, SendRoomMessageRequest, ServerEvent,
    client_api_client::ClientApiClient, server_event::Event,
};
use std::{net::SocketAddr, time::Duration};
use svc_gateway::GatewayConfig;
use svc_room::RoomConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Streaming, metadata::MetadataValue, transport::Channel};

/// The secret every sandbox gateway verifies client tokens with.
pub const SECRET: &[u8] = b"sandbox-secret-of-at-least-32-bytes";
/// The internal key of every sandbox role.
pub const INTERNAL_KEY: &[u8] = b"sandbox-internal-key-of-32-bytes-or-more";

/// The serving options of every sandbox role.
pub fn options() -> ServeOptions {
    ServeOptions::new(InternalKey::new(INTERNAL_KEY))
}

/// Credentials of `role` instance `instance`.
pub fn credentials(role: Role, instance: &str) -> Credentials {
    Credentials::new(InternalKey::new(INTERNAL_KEY), role, instance)
}

/// Credentials of a backend service with `scopes`.
pub fn service(name: &str, scopes: &[&str]) -> Credentials {
    let scopes = scopes.iter().map(|s| s.to_string()).collect();
    Credentials::with_scopes(InternalKey::new(INTERNAL_KEY), Role::Service, name, scopes)
}

/// A channel to `address` (host:port) presenting `credentials`.
pub fn internal_channel(address: SocketAddr, credentials: &Credentials) -> TracedChannel {
    channel::traced(&format!("http://{address}"), credentials).unwrap()
}

/// A call to `method` made for `user` with `credentials` (as a gateway or
/// the gift service would), whatever the channel's own credentials.
pub fn acting<T>(credentials: &Credentials, user: &str, method: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let header = credentials.header_acting(method, &Identity::User(user.into()));
    request.metadata_mut().insert("authorization", header);
    request
}

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One room instance and some gateways.
pub struct Sandbox {
    /// The room instance's address.
    pub room: SocketAddr,
    /// The gateways' public addresses, by index; ids are `gw-<index>`.
    pub gateways: Vec<SocketAddr>,
    /// The gateways' internal addresses, by index.
    pub gateways_internal: Vec<SocketAddr>,
    /// Cancels everything.
    pub shutdown: CancellationToken,
    /// Cancels one gateway only.
    pub gateway_shutdowns: Vec<CancellationToken>,
    /// Cancels the room instance only.
    pub room_shutdown: CancellationToken,
    /// Each gateway's configuration, to start it again.
    pub gateway_configs: Vec<GatewayConfig>,
    /// How [`Viewer::connect`] opens its stream.
    pub connect_over: ConnectOver,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a room instance and `gateways` gateways (peers of each other),
/// each gateway config adjusted by `tweak`.
pub async fn start(gateways: usize, tweak: impl Fn(&mut GatewayConfig)) -> Sandbox {
    start_with_room(gateways, tweak, |_| {}).await
}

/// [`start`], with the room config adjusted by `tweak_room`.
pub async fn start_with_room(
    gateways: usize,
    tweak: impl Fn(&mut GatewayConfig),
    tweak_room: impl Fn(&mut RoomConfig) + Send + Sync + 'static,
) -> Sandbox {
    let shutdown = CancellationToken::new();
    let room_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let room = room_listener.local_addr().unwrap();
    let room_shutdown = shutdown.child_token();
    let mut config = room_config(room);
    tweak_room(&mut config);
    tokio::spawn(svc_room::serve(config, options(), room_listener, room_shutdown.clone()));

    let mut listeners = Vec::new();
    for _ in 0..gateways {
        listeners.push((
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ));
    }
    let addresses: Vec<SocketAddr> = listeners.iter().map(|l| l.0.local_addr().unwrap()).collect();
    let internal: Vec<SocketAddr> = listeners.iter().map(|l| l.1.local_addr().unwrap()).collect();
    let mut gateway_shutdowns = Vec::new();
    let mut gateway_configs = Vec::new();
    for (index, (public, internal_listener)) in listeners.into_iter().enumerate() {
        let mut config = GatewayConfig {
            listen: addresses[index],
            internal_listen: internal[index],
            advertise: format!("http://{}", internal[index]),
            id: format!("gw-{index}"),
            room_instances: vec![format!("http://{room}")],
            peers: internal
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(other, address)| (format!("gw-{other}"), format!("http://{address}")))
                .collect(),
            heartbeat_interval_ms: 500,
            attach_retry_ms: 50,
            presence_address: None,
            group_address: None,
            // Tests send in bursts; the limit has its own test.
            user_publish_per_sec: 10_000.0,
            user_publish_burst: 10_000.0,
            ..GatewayConfig::default()
        };
        tweak(&mut config);
        gateway_configs.push(config.clone());
        let own = shutdown.child_token();
        gateway_shutdowns.push(own.clone());
        let listeners = svc_gateway::GatewayListeners {
            public,
            internal: internal_listener,
        };
        tokio::spawn(svc_gateway::serve(
            config,
            JwtKey::new(SECRET),
            options(),
            listeners,
            own,
        ));
    }
    Sandbox {
        room,
        gateways: addresses,
        gateways_internal: internal,
        shutdown,
        gateway_shutdowns,
        gateway_configs,
        room_shutdown,
        connect_over: ConnectOver::Http2,
    }
}

/// Streams a gateway has served on its lean path, from its `/metrics`.
async fn lean_streams(internal: SocketAddr) -> u64 {
    scrape(internal)
        .await
        .lines()
        .find_map(|line| line.strip_prefix("hubbub_gateway_lean_streams_total ")?.parse().ok())
        .unwrap_or(0)
}

/// The transport of viewers' `Connect` streams (their other calls go over
/// HTTP/2 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOver {
    /// gRPC over HTTP/2, served by tonic.
    Http2,
    /// gRPC-web over HTTP/1.1, served by the gateway's lean path.
    Lean,
}

fn room_config(room: SocketAddr) -> RoomConfig {
    RoomConfig {
        listen: room,
        advertise: format!("http://{room}"),
        ..RoomConfig::default()
    }
}

impl Sandbox {
    /// Stops gateway `index` (it drains: its clients are told to
    /// reconnect) and starts a fresh one on the same addresses.
    pub async fn restart_gateway(&mut self, index: usize) {
        self.gateway_shutdowns[index].cancel();
        let public = rebind(self.gateways[index]).await;
        let internal = rebind(self.gateways_internal[index]).await;
        self.gateway_shutdowns[index] = self.shutdown.child_token();
        tokio::spawn(svc_gateway::serve(
            self.gateway_configs[index].clone(),
            JwtKey::new(SECRET),
            options(),
            svc_gateway::GatewayListeners { public, internal },
            self.gateway_shutdowns[index].clone(),
        ));
    }

    /// Stops the room instance and starts a fresh one (empty state) on the
    /// same address, as a restarted pod would be.
    pub async fn restart_room(&mut self) {
        self.room_shutdown.cancel();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let listener = loop {
            match TcpListener::bind(self.room).await {
                Ok(listener) => break listener,
                Err(err) if tokio::time::Instant::now() > deadline => {
                    panic!("cannot rebind {}: {err}", self.room)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.room_shutdown = self.shutdown.child_token();
        tokio::spawn(svc_room::serve(
            room_config(self.room),
            options(),
            listener,
            self.room_shutdown.clone(),
        ));
    }

    /// A client of gateway `index`.
    pub async fn client(&self, index: usize) -> ClientApiClient<Channel> {
        let address = format!("http://{}", self.gateways[index]);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match Channel::from_shared(address.clone()).unwrap().connect().await {
                Ok(channel) => return ClientApiClient::new(channel),
                Err(err) if tokio::time::Instant::now() > deadline => {
                    panic!("gateway {address} unreachable: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// A token for `user`.
pub fn token(user: &str) -> String {
    JwtKey::new(SECRET).mint(user, Duration::from_secs(600))
}

/// Wraps a message with `authorization` metadata for `token` (None: guest).
pub fn authed<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A connected device: its session and its event stream.
pub struct Viewer {
    /// Gateway client.
    pub client: ClientApiClient<Channel>,
    /// Token: the user's, or a guest's own guest token.
    pub token: Option<String>,
    /// Session id from Welcome.
    pub session_id: String,
    /// The event stream.
    pub events: Streaming<ServerEvent>,
}

impl Viewer {
    /// Connects to gateway `index` as `user` (None: guest).
    pub async fn connect(sandbox: &Sandbox, index: usize, user: Option<&str>) -> Viewer {
        let mut client = sandbox.client(index).await;
        let token = user.map(token);
        let request = authed(
            ConnectRequest {
                device_id: "device-1".into(),
                client_info: "test".into(),
            },
            token.as_deref(),
        );
        let lean_before = match sandbox.connect_over {
            ConnectOver::Http2 => 0,
            ConnectOver::Lean => lean_streams(sandbox.gateways_internal[index]).await,
        };
        let mut events = match sandbox.connect_over {
            ConnectOver::Http2 => client.connect(request).await,
            ConnectOver::Lean => lean::client(sandbox.gateways[index]).connect(request).await,
        }
        .expect("connect")
        .into_inner();
        if sandbox.connect_over == ConnectOver::Lean {
            let after = lean_streams(sandbox.gateways_internal[index]).await;
            assert!(
                after > lean_before,
                "the stream took the lean path ({lean_before} -> {after})"
            );
        }
        let (session_id, token) = match next_event(&mut events).await {
            Some(Event::Welcome(welcome)) if welcome.guest => (welcome.session_id, Some(welcome.guest_token)),
            Some(Event::Welcome(welcome)) => (welcome.session_id, token),
            other => panic!("first event must be Welcome, got {other:?}"),
        };
        Viewer {
            client,
            token,
            session_id,
            events,
        }
    }

    /// Joins a room, returning the answer.
    pub async fn join(&mut self, room_id: &str) -> hubbub_proto::v1::JoinRoomResponse {
        let request = authed(
            JoinRoomRequest {
                session_id: self.session_id.clone(),
                room_id: room_id.into(),
            },
            self.token.as_deref(),
        );
        self.client.join_room(request).await.expect("join").into_inner()
    }

    /// Sends a comment into `room_id` from this device: its seq, or the
    /// refusal.
    pub async fn send_comment(&mut self, room_id: &str, body: &str) -> Result<u64, tonic::Status> {
        let request = SendRoomMessageRequest {
            session_id: self.session_id.clone(),
            room_id: room_id.into(),
            body: body.as_bytes().to_vec().into(),
            kind: RoomMessageKind::Comment as i32,
        };
        let request = authed(request, self.token.as_deref());
        self.client
            .send_room_message(request)
            .await
            .map(|answer| answer.into_inner().seq)
    }

    /// Room messages until `count` have arrived (heartbeats skipped).
    /// Fails when a whole patience window passes without one: heartbeats
    /// alone do not keep a test waiting forever.
    pub async fn room_messages(&mut self, count: usize) -> Vec<RoomMessage> {
        let mut got = Vec::new();
        let mut deadline = tokio::time::Instant::now() + PATIENCE;
        while got.len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no room message within the patience window after {} of {count}",
                got.len()
            );
            match next_event(&mut self.events).await {
                Some(Event::RoomBatch(batch)) => {
                    got.extend(batch.messages);
                    deadline = tokio::time::Instant::now() + PATIENCE;
                }
                Some(_) => {}
                None => panic!("stream ended after {} of {count} messages", got.len()),
            }
        }
        got
    }

    /// The next room batch within `wait`, skipping other events.
    pub async fn room_batch_within(&mut self, wait: Duration) -> Option<Vec<RoomMessage>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.message()).await.ok()?;
            match event.expect("stream error") {
                Some(ServerEvent {
                    event: Some(Event::RoomBatch(batch)),
                }) => return Some(batch.messages),
                Some(_) => {}
                None => return None,
            }
        }
    }
}

/// The next event within [`PATIENCE`]; None when the stream ended.
pub async fn next_event(events: &mut Streaming<ServerEvent>) -> Option<Event> {
    tokio::time::timeout(PATIENCE, events.message())
        .await
        .expect("no event within the patience window")
        .expect("stream error")
        .map(|event| event.event.expect("event set"))
}

/// The whole HTTP/1.1 response to `GET path` at `address` (status line,
/// headers and body), as Prometheus or a scanner would get it.
pub async fn http_get(address: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    // A listener that refuses the request may also just close: what came is the answer.
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response)).await;
    response
}

/// `GET /metrics` from an internal listener.
pub async fn scrape(address: SocketAddr) -> String {
    http_get(address, "/metrics").await
}

/// Serves the presence role (in memory) on `listener` until `shutdown`.
pub fn serve_presence(listener: TcpListener, shutdown: CancellationToken) {
    let config = svc_presence::PresenceConfig {
        listen: listener.local_addr().unwrap(),
        ..Default::default()
    };
    tokio::spawn(svc_presence::serve(config, options(), listener, shutdown));
}

/// A listener on `address` once its previous owner has let it go.
async fn rebind(address: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(err) if tokio::time::Instant::now() > deadline => panic!("cannot rebind {address}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
