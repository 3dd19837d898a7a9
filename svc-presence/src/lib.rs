//! Who is where: session locations, room online counts and unique viewers.
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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Serves the presence role on `listener` until `shutdown` is cancelled.
pub async fn serve(
    _config: PresenceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server = RoleServer {
        role: "presence",
        routes: Routes::new(PresenceServer::new(api::PresenceApi)),
        service_names: vec![SERVICE_NAME],
        registry: Default::default(),
        http2_keepalive: None,
    };
    serve_role(server, listener, shutdown).await
}
