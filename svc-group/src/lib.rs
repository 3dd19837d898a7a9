//! Group chat: groups, members, messages and per-user mailboxes, delivered
//! by notify + pull.
//!
//! # Layout
//! - [`config`]: `[group]` settings.
//! - [`api`]: the `hubbub.v1.Group` handlers (who acts, checks, answers).
//! - [`commit`]: group commit, concurrent sends batched into one
//!   transaction, each answered on its own.
//! - [`convert`]: store types to contract messages, page tokens.
//! - [`notify`]: after a commit, where the members' devices are (presence)
//!   and a notify to their gateways, off the send's path.
//! - [`push`]: members with no online session, posted (batched, signed,
//!   retried) to the platform's push service.
//! - [`retention`]: the sweep that trims mailboxes and expires messages.
//! - [`metrics`]: the role's counters.
//! - [`store`]: `GroupStore` and its PostgreSQL and SQLite backends.
//!
//! The model and its invariants are in `svc-group/MODEL.md`.

pub mod api;
pub mod commit;
pub mod config;
pub mod convert;
pub mod metrics;
pub mod notify;
pub mod push;
pub mod retention;
pub mod store;

pub use config::GroupConfig;

use hubbub_kit::channel::{AddressError, Dialer};
use hubbub_kit::serve::{RoleMetrics, ServeError, ServeOptions, serve as serve_role};
use hubbub_kit::service_auth::{Credentials, Role};
use hubbub_proto::v1::group_server::{GroupServer, SERVICE_NAME};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use store::{GroupStore, StoreError, keys::KeyStore, postgres::PgGroupStore, sqlite::SqliteGroupStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Why the group role could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The store could not be opened or migrated.
    #[error("group store: {0}")]
    Store(#[from] StoreError),
    /// `group.presence_address` cannot be dialled.
    #[error("group.presence_address: {0}")]
    Presence(#[from] AddressError),
    /// `[group.push]` is unusable.
    #[error(transparent)]
    Push(#[from] push::PushConfigError),
    /// A push URL without presence, which alone knows who is offline.
    #[error(
        "group.push.url is set but group.presence_address is not: the push sink learns who is offline \
         from presence; set group.presence_address, or unset group.push.url"
    )]
    PushWithoutPresence,
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Refuses a configuration the role could not honour, before anything opens.
fn check(config: &GroupConfig) -> Result<(), GroupError> {
    push::PushSink::check(&config.push)?;
    let pushes = config.push.url.as_deref().is_some_and(|url| !url.trim().is_empty());
    if pushes && config.presence_address.is_none() {
        return Err(GroupError::PushWithoutPresence);
    }
    Ok(())
}

/// Serves the group role on `listener` until `shutdown` is cancelled: on
/// PostgreSQL when `store.database_url` is set (migrations applied first),
/// else on SQLite in `store.data_dir` (its path is printed at start).
pub async fn serve(
    config: GroupConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GroupError> {
    check(&config)?;
    match &config.store.database_url {
        Some(url) => {
            let store = PgGroupStore::connect(url, &config.store).await?;
            tracing::info!("group store: PostgreSQL, schema up to date");
            serve_with_store(Arc::new(store), config, options, listener, shutdown).await
        }
        None => {
            let (store, path) = SqliteGroupStore::open_in_data_dir(&config.store).await?;
            // Printed, not only logged: a newcomer running `hubbub all` should
            // see where their groups live (and what to delete to start over).
            println!("{:<9} storing groups in SQLite at {}", "group", path.display());
            tracing::info!(path = %path.display(), "group store: SQLite");
            serve_with_store(Arc::new(store), config, options, listener, shutdown).await
        }
    }
}

/// Serves the group role over `store`; the offline push sink, when
/// configured, runs with it and gets its last attempt once serving stopped.
pub async fn serve_with_store<S: GroupStore + KeyStore>(
    store: Arc<S>,
    config: GroupConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GroupError> {
    check(&config)?;
    let mut registry = Registry::default();
    let metrics = metrics::GroupMetrics::register(&mut registry);
    // Only with presence (`check` refused a URL without it): presence alone
    // knows who is offline.
    let push = push::PushSink::start(&config.push, metrics.clone())?;
    if let Some(url) = config.push.url.as_deref().filter(|_| push.is_enabled()) {
        tracing::info!(url, "offline pushes go to this receiver");
    }
    let notifier = match &config.presence_address {
        Some(address) => {
            let credentials = Credentials::new(options.internal_key.clone(), Role::Group, "group");
            let dialer = Dialer::new(credentials, options.tls.clone());
            notify::Notifier::start(
                dialer.dial(address)?,
                dialer,
                push.clone(),
                config.notify_queue,
                Duration::from_millis(config.notify_timeout_ms.max(1)),
                metrics.clone(),
                shutdown.clone(),
            )
        }
        None => notify::Notifier::disabled(metrics.clone()),
    };
    // A send is a body plus a few ids; a create or an add names up to the
    // member limit of ids (129 bytes each at most on the wire).
    let max_request = config.store.max_body_bytes
        + config.store.max_members as usize * (hubbub_kit::ids::MAX_ID_BYTES + 3)
        + 64 * 1024;
    let settings = commit::CommitSettings {
        lanes: config.commit_lanes,
        queue: config.commit_queue,
        max_batch: config.commit_max_batch,
    };
    retention::start(
        store.clone(),
        config.retention.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let sends = commit::GroupCommit::start(store.clone(), settings, notifier.clone(), metrics.clone());
    let api = api::GroupApi::new(store, sends, notifier, metrics, config.store.max_page);
    let routes = Routes::new(GroupServer::new(api).max_decoding_message_size(max_request));
    let server = options.internal("group", routes, vec![SERVICE_NAME], RoleMetrics::new(registry));
    let served = serve_role(server, listener, shutdown).await;
    // No call is left to commit anything: what the sink holds gets its
    // last attempt now, bounded by its timeout.
    push.close().await;
    Ok(served?)
}
