//! Group chat: groups, members, messages and per-user mailboxes.
//!
//! # Layout
//! - [`config`]: `[group]` settings.
//! - [`api`]: the `hubbub.v1.Group` handlers.

pub mod api;
pub mod config;

pub use config::GroupConfig;

use hubbub_kit::serve::{RoleServer, ServeError, serve as serve_role};
use hubbub_proto::v1::group_server::{GroupServer, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Serves the group role on `listener` until `shutdown` is cancelled.
pub async fn serve(_config: GroupConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let server = RoleServer {
        role: "group",
        routes: Routes::new(GroupServer::new(api::GroupApi)),
        service_names: vec![SERVICE_NAME],
        registry: Default::default(),
        http2_keepalive: None,
    };
    serve_role(server, listener, shutdown).await
}
