//! The long-connection layer: terminates client streams (gRPC and gRPC-web),
//! authenticates them, holds `room -> local viewers` and writes each room
//! batch to every local viewer, and forwards session calls to the replica
//! that owns the session.
//!
//! # Layout
//! - [`config`]: `[gateway]` settings.
//! - [`api`]: the `hubbub.v1.ClientApi` handlers.
//! - [`control`]: the `hubbub.v1.GatewayControl` handlers.
//! - [`gateway`]: `Gateway`, the replica's state and session calls.
//! - [`sessions`]: client streams by session id.
//! - [`rooms`]: `LocalRooms`, room -> local viewers, and the fan-out.
//! - [`deadline`]: calls to other roles, bounded in time.
//! - [`groups`]: calls to the group service for clients.
//! - [`gifts`]: calls to the gift service for clients.
//! - [`room_link`]: attach streams to the room instances.
//! - [`batcher`]: clients' calls of one kind, batched into one internal call;
//!   [`gift_batch`] (`Gift.SendGifts`) and [`publish_batch`] (`Room.PublishMany`).
//! - [`delivery`]: the workers that write room traffic to local viewers.
//! - [`batch`]: a room batch encoded (and compressed) once for all viewers.
//! - [`outbox`]: the bounded, laned queue of one client stream.
//! - [`limits`]: per-caller rates (publishes; Connect, JoinRoom, LeaveRoom).
//! - [`presence_link`]: aggregated reports to presence, online counts back.
//! - [`metrics`].

pub mod api;
pub mod batch;
mod batcher;
pub mod config;
pub mod control;
pub mod deadline;
pub mod delivery;
pub mod gateway;
mod gift_batch;
mod gifts;
pub mod groups;
pub mod lean_connect;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod peers;
pub mod presence_link;
mod publish_batch;
pub mod room_link;
pub mod rooms;
pub mod sessions;
mod spread;

pub use config::GatewayConfig;

use hubbub_kit::{
    auth::JwtKey,
    channel,
    serve::{Exposure, RoleMetrics, RoleServer, ServeError, ServeOptions, serve as serve_role},
    service_auth::{Credentials, Role},
};
use hubbub_proto::{
    v1::{Heartbeat, ServerEvent, gateway_control_server::GatewayControlServer, server_event::Event},
    wire::{EncodedEvent, server::client_api_server::ClientApiServer},
};
use prometheus_client::registry::Registry;
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Recent messages a gateway keeps per held room for joiners.
const KEEP_RECENT: usize = 20;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting is unusable.
    #[error("invalid [gateway] configuration: {0}")]
    Config(String),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The two listeners of a gateway.
#[derive(Debug)]
pub struct GatewayListeners {
    /// The public one: ClientApi.
    pub public: TcpListener,
    /// The internal one: GatewayControl and `/metrics`.
    pub internal: TcpListener,
}

/// Serves a gateway replica on its listeners until `shutdown` is cancelled;
/// then clients are told to reconnect elsewhere and their streams end.
pub async fn serve(
    config: GatewayConfig,
    jwt: JwtKey,
    options: ServeOptions,
    listeners: GatewayListeners,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let instances = hubbub_kit::discovery::configured(
        "room_instances",
        &config.room_instances,
        config.room_instances_dns.as_deref(),
        Duration::from_millis(config.room_dns_refresh_ms.max(100)),
        shutdown.clone(),
    )
    .await
    .map_err(GatewayError::Config)?;
    serve_with(config, instances, jwt, options, listeners, shutdown).await
}

/// [`serve`] with an explicit room instance list (tests, embedders).
pub async fn serve_with(
    config: GatewayConfig,
    instances: hubbub_kit::discovery::Instances,
    jwt: JwtKey,
    options: ServeOptions,
    listeners: GatewayListeners,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    hubbub_kit::ids::validate("gateway.id", &config.id).map_err(|s| GatewayError::Config(s.message().to_owned()))?;
    let credentials = Credentials::new(options.internal_key.clone(), Role::Gateway, &config.id);
    let dialer = channel::Dialer::new(credentials.clone(), options.tls.clone());
    let mut registry = Registry::default();
    let metrics = metrics::GatewayMetrics::register(&mut registry);
    let fanout_threads = match config.fanout_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        threads => threads,
    };
    let rooms = Arc::new(
        rooms::LocalRooms::new(KEEP_RECENT, config.compress_above_bytes, metrics.clone())
            .with_fanout_threads(fanout_threads),
    );
    let links = room_link::RoomLinks::start(
        &config.id,
        &dialer,
        instances,
        rooms.clone(),
        Duration::from_millis(config.attach_retry_ms),
        publish_batch::PublishBounds {
            queue: config.room_publish_queue,
            in_flight: config.room_publish_batches_in_flight,
            timeout: Duration::from_millis(config.call_timeout_ms),
        },
        shutdown.clone(),
    )
    .map_err(|err| GatewayError::Config(err.to_string()))?;
    let peers = peers::Peers::new(&config.peers, config.peer_address_template.as_deref(), &dialer)
        .map_err(|err| GatewayError::Config(err.to_string()))?;
    let limiter = limits::RateLimiter::new(config.user_publish_per_sec, config.user_publish_burst);
    let session_limiter = limits::RateLimiter::new(config.session_calls_per_sec, config.session_calls_burst);
    let group_limiter = limits::RateLimiter::new(config.group_calls_per_sec, config.group_calls_burst);
    let gift_limiter = limits::RateLimiter::new(config.gift_calls_per_sec, config.gift_calls_burst);
    let presence_changes = config.presence_address.is_some().then(Default::default);
    let groups = match &config.group_address {
        Some(address) => {
            let channel = dialer
                .dial(address)
                .map_err(|err| GatewayError::Config(err.to_string()))?;
            let timeout = Duration::from_millis(config.call_timeout_ms);
            Some(groups::GroupLink::new(channel, credentials.clone(), timeout))
        }
        None => None,
    };
    let gifts = match &config.gift_address {
        Some(address) => {
            let channel = dialer
                .dial(address)
                .map_err(|err| GatewayError::Config(err.to_string()))?;
            let timeout = Duration::from_millis(config.call_timeout_ms);
            Some(gifts::GiftLink::new(
                channel,
                credentials.clone(),
                timeout,
                config.gift_send_queue,
                config.gift_batches_in_flight,
            ))
        }
        None => None,
    };
    let gateway = Arc::new(gateway::Gateway {
        config,
        sessions: Default::default(),
        rooms,
        links,
        peers,
        limiter,
        session_limiter,
        group_limiter,
        gift_limiter,
        presence_changes,
        groups,
        gifts,
        credentials: credentials.clone(),
        metrics,
    });
    if let Some(address) = &gateway.config.presence_address {
        let channel = dialer
            .dial(address)
            .map_err(|err| GatewayError::Config(err.to_string()))?;
        let client = hubbub_proto::v1::presence_client::PresenceClient::new(channel);
        presence_link::start(gateway.clone(), client, shutdown.clone());
    }

    tokio::spawn(heartbeats(gateway.clone(), shutdown.clone()));
    {
        let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            gateway.drain();
        });
    }

    tokio::spawn(end_expired_streams(gateway.clone(), shutdown.clone()));

    let public_tls = gateway
        .config
        .public_tls
        .as_ref()
        .map(|tls| tls.load())
        .transpose()
        .map_err(|err| GatewayError::Config(format!("gateway.public_tls: {err}")))?;
    let metrics = RoleMetrics::new(registry);
    let max_request = gateway.config.max_request_bytes;
    let service = api::ClientApiService::new(gateway.clone(), jwt, shutdown.clone());
    let lean = gateway.config.lean_connect.then(|| {
        // A device that reads nothing for two heartbeats is gone.
        let write_timeout = Duration::from_millis(u64::from(gateway.config.heartbeat_interval_ms).max(2_500) * 2);
        hubbub_kit::serve::LeanRoute {
            calls: Arc::new(lean_connect::LeanConnect::new(service.clone(), write_timeout)),
            limits: hubbub_kit::lean::head::HeadLimits::default(),
            head_timeout: Duration::from_millis(options.limits.handshake_timeout_ms.max(1)),
        }
    });
    let client_api = ClientApiServer::new(service).max_decoding_message_size(max_request);
    let public = RoleServer {
        role: "gateway",
        exposure: Exposure::Public {
            tls: public_tls,
            lean,
            proxies: gateway.config.trusted_proxies.clone(),
        },
        routes: Routes::new(client_api),
        service_names: vec![hubbub_proto::wire::server::client_api_server::SERVICE_NAME],
        metrics: metrics.clone(),
        limits: options.limits.clone(),
    };
    // Forwarded calls carry a client request; notifies are small.
    let control = GatewayControlServer::new(control::GatewayControlService::new(gateway))
        .max_decoding_message_size(max_request + 4096);
    let internal = options.internal(
        "gateway",
        Routes::new(control),
        vec![hubbub_proto::v1::gateway_control_server::SERVICE_NAME],
        metrics,
    );
    tokio::try_join!(
        serve_role(public, listeners.public, shutdown.clone()),
        serve_role(internal, listeners.internal, shutdown),
    )?;
    Ok(())
}

/// Ends streams whose token expired, once a second.
async fn end_expired_streams(gateway: Arc<gateway::Gateway>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let ended = gateway.end_expired(hubbub_kit::jwt::unix_now());
        gateway.metrics.expired_closed.inc_by(ended as u64);
    }
}

/// One ticker for the whole replica rather than a timer per connection.
async fn heartbeats(gateway: Arc<gateway::Gateway>, shutdown: CancellationToken) {
    let period = Duration::from_millis(u64::from(gateway.config.heartbeat_interval_ms.max(100)));
    let mut ticker = tokio::time::interval(period);
    // After a stall, the next beat a period later, not a burst of the
    // missed ones (a burst says nothing a single beat does not).
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let event = EncodedEvent::encode(&ServerEvent {
            event: Some(Event::Heartbeat(Heartbeat { server_time_ms: now })),
        });
        for session in gateway.sessions.snapshot() {
            session.outbox.offer(&event);
        }
        gateway.limiter.sweep();
        gateway.session_limiter.sweep();
        gateway.group_limiter.sweep();
    }
}
