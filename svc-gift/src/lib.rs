//! The reliable gift ledger of live rooms: gifts and co-streaming requests.
//!
//! # Layout
//! - [`config`]: `[gift]` settings.
//! - [`api`]: the `hubbub.v1.Gift` handlers.

pub mod api;
pub mod config;

pub use config::GiftConfig;

use hubbub_kit::serve::{RoleServer, ServeError, serve as serve_role};
use hubbub_proto::v1::gift_server::{GiftServer, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Serves the gift role on `listener` until `shutdown` is cancelled.
pub async fn serve(_config: GiftConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let server = RoleServer {
        role: "gift",
        routes: Routes::new(GiftServer::new(api::GiftApi)),
        service_names: vec![SERVICE_NAME],
        registry: Default::default(),
        http2_keepalive: None,
    };
    serve_role(server, listener, shutdown).await
}
