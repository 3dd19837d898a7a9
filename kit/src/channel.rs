//! Client channels to other roles. Channels connect lazily and reconnect on
//! their own, so roles may start in any order. Every call on them carries
//! the caller's trace context and its service credential.

use crate::{service_auth::Credentials, tracecontext};
use std::time::Duration;
use tonic::{
    Request, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

/// A channel that propagates trace context and presents a credential on
/// every call.
pub type TracedChannel = InterceptedService<Channel, CallInterceptor>;

/// Adds trace context and the role's credential to every outgoing call. A
/// call that already carries `authorization` (a per-call credential naming
/// a user, see [`Credentials::act_for`]) keeps it.
#[derive(Debug, Clone)]
pub struct CallInterceptor {
    credentials: Credentials,
}

impl Interceptor for CallInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        tracecontext::inject_current(request.metadata_mut());
        if !request.metadata().contains_key("authorization") {
            request.metadata_mut().insert("authorization", self.credentials.header());
        }
        Ok(request)
    }
}

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

/// A lazily connected channel to `address` (`http://host:port`) whose calls
/// present `credentials`.
pub fn traced(address: &str, credentials: &Credentials) -> Result<TracedChannel, AddressError> {
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|source| AddressError {
        address: address.to_owned(),
        source,
    })?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        // Below the servers' keepalive timeout and any mesh's idle timeout,
        // so long-lived attach streams are never cut as idle.
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(InterceptedService::new(
        channel,
        CallInterceptor {
            credentials: credentials.clone(),
        },
    ))
}
