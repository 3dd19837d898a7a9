//! Client channels to other roles. Channels connect lazily and reconnect on
//! their own, so roles may start in any order.

use crate::tracecontext::TraceInterceptor;
use std::time::Duration;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

/// A channel that propagates the caller's trace context on every call.
pub type TracedChannel = InterceptedService<Channel, TraceInterceptor>;

/// Why an address cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{address:?} is not a valid peer address (expected http://host:port): {source}")]
pub struct AddressError {
    /// The address as configured.
    pub address: String,
    /// What is wrong with it.
    #[source]
    pub source: tonic::transport::Error,
}

/// A lazily connected, trace-propagating channel to `address`
/// (`http://host:port`).
pub fn traced(address: &str) -> Result<TracedChannel, AddressError> {
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|source| AddressError {
        address: address.to_owned(),
        source,
    })?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(InterceptedService::new(channel, TraceInterceptor))
}
