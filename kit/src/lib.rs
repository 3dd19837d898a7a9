//! The shared runtime of hubbub roles. It knows no service: each `svc-*`
//! crate uses it to load configuration, authenticate, serve and call peers.
//!
//! # Layout
//! - [`config`]: file + environment + flags, unknown keys rejected.
//! - [`jwt`]: HS256 tokens, the core of both kinds of credential.
//! - [`auth`]: client tokens and the identity of a client call.
//! - [`service_auth`]: service credentials between roles and backends.
//! - [`policy`]: who may call what on internal ports, in one table.
//! - [`batch_item`]: batched internal calls: shared limits, each item's sender.
//! - [`internal_auth`]: the layer that enforces it on every internal listener.
//! - [`telemetry`]: logs and OTLP span export.
//! - [`span_routing`]: each span exported under its role's service name.
//! - [`tracecontext`]: W3C trace context in gRPC metadata and in messages.
//! - [`serve`]: the public and internal serving stacks (health, reflection,
//!   `/metrics`, gRPC-web, CORS, connection limits).
//! - [`served`]: what a listener serves: reflection's files, metrics' methods.
//! - [`call_trace`]: the span of every served call; failures logged by who caused them.
//! - [`accept`]: the accept loop: connection caps, back-off on accept errors.
//! - [`conn_guard`]: connections that must speak within a deadline.
//! - [`metrics`]: Prometheus registry helpers.
//! - [`channel`]: trace-propagating client channels.
//! - [`tls`]: optional (m)TLS between roles, `[internal_tls]`.
//! - [`rendezvous`]: which instance owns a key.
//! - [`rlimit`]: the open-file limit, raised at start.
//! - [`discovery`]: instance lists, fixed or from DNS.
//! - [`ids`]: validation of ids that cross the API.
//! - [`closeable`]: server streams their owner can end.
//! - [`sharded`]: state split over many locks.
//! - [`rate`]: token buckets for limits and caps.
//! - [`shutdown`]: signal handling.

pub mod accept;
pub mod auth;
pub mod batch_item;
pub mod call_trace;
pub mod channel;
pub mod closeable;
pub mod config;
pub mod conn_guard;
pub mod discovery;
mod grpc_metrics;
pub mod ids;
pub mod internal_auth;
pub mod jwt;
pub mod lean;
pub mod metrics;
mod metrics_endpoint;
pub mod policy;
pub mod process_metrics;
pub mod rate;
pub mod rendezvous;
pub mod rlimit;
pub mod schema;
pub mod serve;
pub mod served;
pub mod service_auth;
pub mod sharded;
pub mod shutdown;
pub mod span_routing;
pub mod telemetry;
pub mod tls;
pub mod tracecontext;

pub use tokio_util::sync::CancellationToken;
