//! The shared runtime of hubbub roles. It knows no service: each `svc-*`
//! crate uses it to load configuration, authenticate, serve and call peers.
//!
//! # Layout
//! - [`config`]: file + environment + flags, unknown keys rejected.
//! - [`auth`]: HS256 JWT minting and verification, caller identity.
//! - [`telemetry`]: logs and OTLP span export.
//! - [`tracecontext`]: W3C trace context in gRPC metadata and in messages.
//! - [`serve`]: the serving stack (health, reflection, `/metrics`, gRPC-web, CORS).
//! - [`metrics`]: Prometheus registry helpers.
//! - [`channel`]: trace-propagating client channels.
//! - [`rendezvous`]: which instance owns a key.
//! - [`discovery`]: instance lists, fixed or from DNS.
//! - [`ids`]: validation of ids that cross the API.
//! - [`closeable`]: server streams their owner can end.
//! - [`sharded`]: state split over many locks.
//! - [`rate`]: token buckets for limits and caps.
//! - [`shutdown`]: signal handling.

pub mod auth;
pub mod channel;
pub mod closeable;
pub mod config;
pub mod discovery;
mod grpc_metrics;
pub mod ids;
pub mod metrics;
mod metrics_endpoint;
pub mod process_metrics;
pub mod rate;
pub mod rendezvous;
pub mod serve;
pub mod sharded;
pub mod shutdown;
pub mod telemetry;
pub mod tracecontext;

pub use tokio_util::sync::CancellationToken;
