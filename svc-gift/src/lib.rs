//! The reliable gift ledger of live rooms: gifts and co-streaming requests.
//! Persist first, then publish through the room, and let viewers pull what
//! they missed. The model and its invariants are in `svc-gift/LEDGER.md`.
//!
//! # Layout
//! - [`config`]: `[gift]` settings.
//! - [`api`]: the `hubbub.v1.Gift` handlers.
//! - [`commit`]: group commit, concurrent records in one transaction, each
//!   answered on its own.
//! - [`publish`]: a committed gift published through its room's owner.
//! - [`addressee`]: a co-streaming record delivered to its addressee only.
//! - [`recent`]: the newest records of hot rooms in memory, for pulls.
//! - [`convert`]: store types to contract messages.
//! - [`metrics`]: the role's counters.
//! - [`store`]: `GiftStore`, the ledger, on PostgreSQL and SQLite.

pub mod addressee;
pub mod api;
pub mod commit;
pub mod config;
pub mod convert;
pub mod expiry;
pub mod metrics;
pub mod publish;
pub mod recent;
pub mod store;

pub use config::GiftConfig;

use hubbub_kit::channel::Dialer;
use hubbub_kit::discovery::Instances;
use hubbub_kit::serve::{RoleMetrics, ServeError, ServeOptions, serve as serve_role};
use hubbub_kit::service_auth::{Credentials, Role};
use hubbub_proto::v1::gift_server::{GiftServer, SERVICE_NAME};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use store::{GiftStore, StoreError, postgres::PgGiftStore, rules::Limits, sqlite::SqliteGiftStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Why the gift role could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GiftError {
    /// The store could not be opened or migrated.
    #[error("gift store: {0}")]
    Store(#[from] StoreError),
    /// The room instances cannot be found.
    #[error("gift: {0}")]
    Config(String),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Bytes of items a gateway puts in one SendGifts at most.
const SEND_GIFTS_BYTES: usize = hubbub_kit::batch_item::MAX_BYTES;

/// Serves the gift role on `listener` until `shutdown` is cancelled: on
/// PostgreSQL when `store.database_url` is set (migrations applied first),
/// else on SQLite in `store.data_dir`.
pub async fn serve(
    config: GiftConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GiftError> {
    let instances = hubbub_kit::discovery::configured(
        "gift.room_instances",
        &config.room_instances,
        config.room_instances_dns.as_deref(),
        Duration::from_millis(config.room_instances_refresh_ms.max(100)),
        shutdown.clone(),
    )
    .await
    .map_err(GiftError::Config)?;
    let limits = Limits {
        max_payload_bytes: config.store.max_payload_bytes,
        max_count: config.max_count,
        co_stream_ttl_ms: config.co_stream_ttl_secs.saturating_mul(1000).min(i64::MAX as u64) as i64,
    };
    match &config.store.database_url {
        Some(url) => {
            let store = PgGiftStore::open(
                url,
                config.store.max_connections,
                limits,
                hubbub_kit::schema::Schema::from_settings(config.store.migrate_on_start, config.store.schema_wait_secs),
            )
            .await?;
            tracing::info!("gift store: PostgreSQL, schema up to date");
            serve_with_store(Arc::new(store), instances, config, options, listener, shutdown).await
        }
        None => {
            std::fs::create_dir_all(&config.store.data_dir)
                .map_err(|e| GiftError::Store(StoreError::Unavailable(e.to_string())))?;
            let path = config.store.data_dir.join("gift.sqlite3");
            let store = SqliteGiftStore::open(&path, limits).await?;
            println!("{:<9} storing gifts in SQLite at {}", "gift", path.display());
            serve_with_store(Arc::new(store), instances, config, options, listener, shutdown).await
        }
    }
}

/// Serves the gift role over `store`, publishing through `instances`.
pub async fn serve_with_store<S: GiftStore>(
    store: Arc<S>,
    instances: Instances,
    config: GiftConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GiftError> {
    let mut registry = Registry::default();
    let metrics = metrics::GiftMetrics::register(&mut registry);
    let credentials = Credentials::new(options.internal_key.clone(), Role::Gift, "gift");
    let dialer = Dialer::new(credentials, options.tls.clone());
    let publisher = publish::RoomPublisher::new(
        instances,
        dialer.clone(),
        Duration::from_millis(config.publish_timeout_ms.max(1)),
        metrics.clone(),
    );
    let presence = match &config.presence_address {
        Some(address) => Some(hubbub_proto::v1::presence_client::PresenceClient::new(
            dialer
                .dial(address)
                .map_err(|e| GiftError::Config(format!("gift.presence_address: {e}")))?,
        )),
        None => None,
    };
    let addressee = addressee::Addressee::new(
        presence,
        dialer.clone(),
        Duration::from_millis(config.publish_timeout_ms.max(1)),
    );
    let settings = commit::CommitSettings {
        lanes: config.commit_lanes,
        queue: config.commit_queue,
        max_batch: config.commit_max_batch,
    };
    let recent = Arc::new(recent::Recent::new(
        store.clone(),
        recent::RecentSettings {
            rooms: config.recent_rooms,
            records: config.recent_records,
            ttl: Duration::from_millis(config.recent_ttl_ms),
        },
    ));
    registry.register(
        "hubbub_gift_pull_store_reads",
        "Store reads made to answer pulls (window refreshes, and pulls no window covers)",
        recent.reads(),
    );
    let outlets = commit::Outlets {
        rooms: Arc::new(publisher),
        addressees: Arc::new(addressee),
        recent: recent.clone(),
    };
    let commits = commit::GiftCommit::start(store.clone(), settings, outlets, metrics);
    tokio::spawn(expiry::run(
        store.clone(),
        commits.clone(),
        Duration::from_millis(config.co_stream_sweep_ms),
        shutdown.child_token(),
    ));
    let api = api::GiftApi::new(
        store,
        commits,
        recent,
        config.catalogue.clone(),
        Duration::from_millis(config.publish_timeout_ms.max(1)),
        options.internal_key.clone(),
        config.public_window_records,
    );
    // A record is a payload plus a few ids; anything a gateway lets through
    // (64 KiB by default) decodes, so an oversized payload is refused by
    // the ledger's own limit, with its words.
    // A SendGifts batch is cut at 1 MiB by the gateway, plus the one item
    // that did not fit.
    let max_request = config.store.max_payload_bytes + 64 * 1024 + SEND_GIFTS_BYTES;
    let routes = Routes::new(GiftServer::new(api).max_decoding_message_size(max_request));
    let server = options.internal("gift", routes, vec![SERVICE_NAME], RoleMetrics::new(registry));
    Ok(serve_role(server, listener, shutdown).await?)
}
