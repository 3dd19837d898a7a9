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

use hubbub_kit::serve::{RoleServer, ServeError, serve as serve_role};
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
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), PresenceError> {
    match &config.redis_url {
        Some(url) => {
            let store = RedisPresence::new(url, &config.key_prefix)?;
            Ok(serve_with_store(Arc::new(store), &config, listener, shutdown).await?)
        }
        None => Ok(serve_with_store(Arc::new(MemoryPresence::new()), &config, listener, shutdown).await?),
    }
}

/// Serves the presence role over `store`.
pub async fn serve_with_store<S: PresenceStore>(
    store: Arc<S>,
    config: &PresenceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server = RoleServer {
        role: "presence",
        routes: Routes::new(PresenceServer::new(api::PresenceApi::new(
            store,
            config.max_ids_per_call,
        ))),
        service_names: vec![SERVICE_NAME],
        registry: Default::default(),
        http2_keepalive: None,
    };
    serve_role(server, listener, shutdown).await
}
