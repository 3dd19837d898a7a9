//! Client channels to other roles. Channels connect lazily and reconnect on
//! their own, so roles may start in any order. Every call on them carries
//! the caller's trace context and its service credential; with
//! `[internal_tls]` they speak TLS and present the role's certificate.

use crate::{
    service_auth::{ActingFor, Credentials},
    tls::InternalTls,
    tracecontext,
};
use std::time::Duration;
use tonic::{
    Request, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

/// A channel that propagates trace context and presents a credential on
/// every call.
pub type TracedChannel = InterceptedService<Channel, CallInterceptor>;

/// Adds trace context and a credential to every outgoing call: the role's
/// own for the service called, or, for a call made for a user
/// ([`Credentials::act_for`]), one signed for that user and that method. A
/// call that already carries `authorization` keeps it.
#[derive(Debug, Clone)]
pub struct CallInterceptor {
    credentials: Credentials,
}

impl Interceptor for CallInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        tracecontext::inject_current(request.metadata_mut());
        if request.metadata().contains_key("authorization") {
            return Ok(request);
        }
        // Generated clients name the method of every call.
        let Some(method) = request.extensions().get::<tonic::GrpcMethod>() else {
            return Err(Status::internal(
                "an internal call without its method cannot be credentialed",
            ));
        };
        let header = match request.extensions().get::<ActingFor>() {
            Some(ActingFor(identity)) => {
                let path = format!("/{}/{}", method.service(), method.method());
                self.credentials.header_acting(&path, identity)
            }
            None => self.credentials.header_for(method.service()),
        };
        request.metadata_mut().insert("authorization", header);
        Ok(request)
    }
}

/// Why an address cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "{address:?} is not a valid peer address (expected http://host:port, or https://host:port whose host is a \
     DNS name or IP address, unless internal_tls.server_name is set): {source}"
)]
pub struct AddressError {
    /// The address as configured.
    pub address: String,
    /// What is wrong with it.
    #[source]
    pub source: tonic::transport::Error,
}

/// How a role dials its peers: its credential on every call and, when
/// `[internal_tls]` is set, TLS with its certificate. One per role, cloned
/// wherever channels are made.
#[derive(Debug, Clone)]
pub struct Dialer {
    credentials: Credentials,
    tls: Option<InternalTls>,
}

impl Dialer {
    /// Dials presenting `credentials`, over `tls` when set.
    pub fn new(credentials: Credentials, tls: Option<InternalTls>) -> Self {
        Self { credentials, tls }
    }

    /// A lazily connected channel to `address`. With TLS, `http://`
    /// addresses (as DNS discovery yields) are dialled as `https://`: a role
    /// told to use TLS never falls back to plaintext.
    pub fn dial(&self, address: &str) -> Result<TracedChannel, AddressError> {
        connect(address, &self.credentials, self.tls.as_ref())
    }
}

/// A lazily connected plaintext channel to `address` (`http://host:port`)
/// whose calls present `credentials`. Roles dial through a [`Dialer`], which
/// adds TLS when configured.
pub fn traced(address: &str, credentials: &Credentials) -> Result<TracedChannel, AddressError> {
    connect(address, credentials, None)
}

/// Checks that `address` is one a role can dial (`http://host:port`),
/// without dialling it: for `--check-config`.
pub fn check_address(address: &str) -> Result<(), AddressError> {
    Endpoint::from_shared(address.to_owned())
        .map(drop)
        .map_err(|source| AddressError {
            address: address.to_owned(),
            source,
        })
}

/// How long a connection (TCP, then the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn connect(address: &str, credentials: &Credentials, tls: Option<&InternalTls>) -> Result<TracedChannel, AddressError> {
    let invalid = |source| AddressError {
        address: address.to_owned(),
        source,
    };
    let mut endpoint = match (tls, address.strip_prefix("http://")) {
        (Some(_), Some(rest)) => Endpoint::from_shared(format!("https://{rest}")),
        _ => Endpoint::from_shared(address.to_owned()),
    }
    .map_err(invalid)?;
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client_config().timeout(CONNECT_TIMEOUT))
            .map_err(invalid)?;
    }
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
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
