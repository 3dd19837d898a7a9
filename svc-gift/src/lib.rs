//! The reliable gift ledger of live rooms: gifts and co-streaming requests.
//!
//! # Layout
//! - [`config`]: `[gift]` settings.
//! - [`api`]: the `hubbub.v1.Gift` handlers.
//! - [`store`]: `GiftStore`, the ledger, on PostgreSQL and SQLite.

pub mod api;
pub mod config;
pub mod store;

pub use config::GiftConfig;

use hubbub_kit::serve::{RoleMetrics, ServeError, ServeOptions, serve as serve_role};
use hubbub_proto::v1::gift_server::{GiftServer, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Serves the gift role on `listener` until `shutdown` is cancelled.
pub async fn serve(
    _config: GiftConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let routes = Routes::new(GiftServer::new(api::GiftApi).max_decoding_message_size(1024 * 1024));
    let server = options.internal("gift", routes, vec![SERVICE_NAME], RoleMetrics::new(Default::default()));
    serve_role(server, listener, shutdown).await
}
