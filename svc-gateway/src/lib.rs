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
//! - [`room_link`]: attach streams to the room instances.
//! - [`batch`]: a room batch encoded (and compressed) once for all viewers.
//! - [`outbox`]: the bounded, laned queue of one client stream.
//! - [`limits`]: the per-user publish rate.
//! - [`presence_link`]: aggregated reports to presence, online counts back.
//! - [`metrics`].

pub mod api;
pub mod batch;
pub mod config;
pub mod control;
pub mod gateway;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod presence_link;
pub mod room_link;
pub mod rooms;
pub mod sessions;

pub use config::GatewayConfig;

use hubbub_kit::{
    auth::JwtKey,
    channel,
    serve::{RoleServer, ServeError, serve as serve_role},
};
use hubbub_proto::{
    v1::{
        Heartbeat, ServerEvent, gateway_control_client::GatewayControlClient,
        gateway_control_server::GatewayControlServer, server_event::Event,
    },
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

/// Serves a gateway replica on `listener` until `shutdown` is cancelled;
/// then clients are told to reconnect elsewhere and their streams end.
pub async fn serve(
    config: GatewayConfig,
    jwt: JwtKey,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let instances = match &config.room_instances_dns {
        Some(name) => {
            let refresh = Duration::from_millis(config.room_dns_refresh_ms.max(100));
            hubbub_kit::discovery::dns(name.clone(), refresh, shutdown.clone())
                .await
                .map_err(|err| GatewayError::Config(err.to_string()))?
        }
        None if config.room_instances.is_empty() => {
            return Err(GatewayError::Config(
                "set room_instances (addresses) or room_instances_dns (host:port)".into(),
            ));
        }
        None => hubbub_kit::discovery::fixed(&config.room_instances).1,
    };
    serve_with(config, instances, jwt, listener, shutdown).await
}

/// [`serve`] with an explicit room instance list (tests, embedders).
pub async fn serve_with(
    config: GatewayConfig,
    instances: hubbub_kit::discovery::Instances,
    jwt: JwtKey,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    hubbub_kit::ids::validate("gateway.id", &config.id).map_err(|s| GatewayError::Config(s.message().to_owned()))?;
    let mut registry = Registry::default();
    let metrics = metrics::GatewayMetrics::register(&mut registry);
    let rooms = Arc::new(rooms::LocalRooms::new(
        KEEP_RECENT,
        config.compress_above_bytes,
        metrics.clone(),
    ));
    let links = room_link::RoomLinks::start(
        &config.id,
        instances,
        rooms.clone(),
        Duration::from_millis(config.attach_retry_ms),
        shutdown.clone(),
    )
    .map_err(|err| GatewayError::Config(err.to_string()))?;
    let mut peers = std::collections::HashMap::new();
    for (id, address) in &config.peers {
        let channel = channel::traced(address).map_err(|err| GatewayError::Config(err.to_string()))?;
        peers.insert(id.clone(), GatewayControlClient::new(channel));
    }
    let limiter = limits::PublishLimiter::new(config.user_publish_per_sec, config.user_publish_burst);
    let gateway = Arc::new(gateway::Gateway {
        config,
        sessions: Default::default(),
        rooms,
        links,
        peers,
        limiter,
        presence_changes: Default::default(),
        metrics,
    });
    if let Some(address) = &gateway.config.presence_address {
        let channel = channel::traced(address).map_err(|err| GatewayError::Config(err.to_string()))?;
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

    let client_api = api::ClientApiService::new(gateway.clone(), jwt, shutdown.clone());
    let control = control::GatewayControlService::new(gateway);
    let server = RoleServer {
        role: "gateway",
        routes: Routes::new(ClientApiServer::new(client_api)).add_service(GatewayControlServer::new(control)),
        service_names: vec![
            hubbub_proto::wire::server::client_api_server::SERVICE_NAME,
            hubbub_proto::v1::gateway_control_server::SERVICE_NAME,
        ],
        registry,
        http2_keepalive: None,
    };
    Ok(serve_role(server, listener, shutdown).await?)
}

/// One ticker for the whole replica rather than a timer per connection.
async fn heartbeats(gateway: Arc<gateway::Gateway>, shutdown: CancellationToken) {
    let period = Duration::from_millis(u64::from(gateway.config.heartbeat_interval_ms.max(100)));
    let mut ticker = tokio::time::interval(period);
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
            session.outbox.offer(event.clone());
        }
        gateway.limiter.sweep();
    }
}
