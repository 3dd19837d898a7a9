//! Who is where: session locations (user -> devices -> gateway) for group
//! notify routing, room online counts and cumulative unique viewers, fed by
//! gateways' aggregated reports.
//!
//! # Layout
//! - [`config`]: `[presence]` settings.
//! - [`api`]: the `hubbub.v1.Presence` handlers.
//! - [`store`]: `PresenceStore` and its memory and Redis backends.

pub mod api;
pub mod config;
pub mod store;

pub use config::PresenceConfig;

use hubbub_kit::serve::{RoleMetrics, ServeError, ServeOptions, serve as serve_role};
use hubbub_proto::v1::presence_server::{PresenceServer, SERVICE_NAME};
use std::sync::Arc;
use store::{PresenceStore, memory::MemoryPresence, redis::RedisPresence};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Why the presence role could not start.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The store could not be set up.
    #[error("presence store: {0}")]
    Store(#[from] store::StoreError),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves the presence role on `listen` until `shutdown`: on Redis when
/// `redis_url` is set, else in memory.
pub async fn serve(
    config: PresenceConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), PresenceError> {
    match &config.redis_url {
        Some(url) => {
            let store = RedisPresence::new(url, &config.key_prefix)?;
            Ok(serve_with_store(Arc::new(store), &config, options, listener, shutdown).await?)
        }
        None => {
            let store = MemoryPresence::with_limits(
                config.max_unique_rooms,
                std::time::Duration::from_secs(config.uniques_retention_secs),
            );
            Ok(serve_with_store(Arc::new(store), &config, options, listener, shutdown).await?)
        }
    }
}

/// Serves the presence role over `store`.
pub async fn serve_with_store<S: PresenceStore>(
    store: Arc<S>,
    config: &PresenceConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // Reports are chunked by gateways to about 1 MB; 4 MiB leaves room.
    let presence = PresenceServer::new(api::PresenceApi::new(store, config.max_ids_per_call))
        .max_decoding_message_size(4 * 1024 * 1024);
    let server = options.internal(
        "presence",
        Routes::new(presence),
        vec![SERVICE_NAME],
        RoleMetrics::new(Default::default()),
    );
    serve_role(server, listener, shutdown).await
}
