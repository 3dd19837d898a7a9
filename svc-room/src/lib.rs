//! The route layer of live rooms: each room instance owns the rooms that
//! rendezvous hashing gives it, numbers their messages, keeps a short ring of
//! recent ones, and sends each room's traffic only to the gateways holding
//! viewers of it.
//!
//! # Layout
//! - [`config`]: `[room]` settings.
//! - [`api`]: the `hubbub.v1.Room` handlers.
//! - [`publish_many`]: whose `PublishMany` item it is, and its outcome.
//! - [`router`]: `RoomRouter`, rooms and attached gateways, batching.
//! - [`room_state`]: one room's sequence, ring, lanes and pending batch.
//! - [`priority`]: the lane of each message kind.
//! - [`metrics`], [`error`].

pub mod api;
pub mod config;
pub mod error;
pub mod metrics;
pub mod priority;
pub mod publish_many;
pub mod room_state;
pub mod router;

pub use config::RoomConfig;

use hubbub_kit::serve::{RoleMetrics, ServeError, ServeOptions, serve as serve_role};
use hubbub_proto::v1::room_server::{RoomServer, SERVICE_NAME};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Serves a room instance on `listener` until `shutdown` is cancelled.
pub async fn serve(
    config: RoomConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let mut registry = Registry::default();
    let metrics = metrics::RoomMetrics::register(&mut registry);
    let config = Arc::new(config);
    let router = Arc::new(router::RoomRouter::new(config.clone(), metrics));
    // Tick at the shorter window so high-priority batches are not late.
    let tick = match config.high_window_ms {
        0 => config.batch_window_ms,
        high => high.min(config.batch_window_ms),
    };
    tokio::spawn(router::run_flusher(
        router.clone(),
        std::time::Duration::from_millis(tick),
        std::time::Duration::from_secs(config.idle_room_secs),
        shutdown.clone(),
    ));
    let instances = match &config.instances_dns {
        Some(name) => {
            let refresh = std::time::Duration::from_millis(config.dns_refresh_ms.max(100));
            match hubbub_kit::discovery::dns(name.clone(), refresh, shutdown.clone()).await {
                Ok(instances) => instances,
                // The role still serves; ownership checks wait for DNS.
                Err(err) => {
                    tracing::warn!(%err, "room.instances_dns does not resolve yet; owning every room until it does");
                    hubbub_kit::discovery::fixed(&[]).1
                }
            }
        }
        None => hubbub_kit::discovery::fixed(&config.instances).1,
    };
    // A publish is a body plus a few ids; attach commands list room ids; a
    // PublishGifts call carries a run of gifts and a PublishMany call a
    // gateway's batch, both cut at batch_item::MAX_BYTES, plus the item
    // that crossed the cut.
    let max_request = hubbub_kit::batch_item::MAX_BYTES + config.max_body_bytes + 256 * 1024;
    let api = api::RoomApi::new(
        router,
        config,
        instances,
        shutdown.clone(),
        options.internal_key.clone(),
    );
    let routes = Routes::new(RoomServer::new(api).max_decoding_message_size(max_request));
    let server = options.internal("room", routes, vec![SERVICE_NAME], RoleMetrics::new(registry));
    serve_role(server, listener, shutdown).await
}
