//! Group chat: groups, members, messages and per-user mailboxes.
//!
//! # Layout
//! - [`config`]: `[group]` settings.
//! - [`api`]: the `hubbub.v1.Group` handlers.
//! - [`store`]: `GroupStore` and its PostgreSQL and SQLite backends.

pub mod api;
pub mod config;
pub mod store;

pub use config::GroupConfig;

use hubbub_kit::serve::{RoleMetrics, ServeError, ServeOptions, serve as serve_role};
use hubbub_proto::v1::group_server::{GroupServer, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Serves the group role on `listener` until `shutdown` is cancelled.
pub async fn serve(
    _config: GroupConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let routes = Routes::new(GroupServer::new(api::GroupApi).max_decoding_message_size(1024 * 1024));
    let server = options.internal(
        "group",
        routes,
        vec![SERVICE_NAME],
        RoleMetrics::new(Default::default()),
    );
    serve_role(server, listener, shutdown).await
}
