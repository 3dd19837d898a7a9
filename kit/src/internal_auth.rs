//! The layer in front of every internal listener: verifies the caller's
//! service credential and checks it against [`crate::policy`] before any
//! handler runs, then hands the verified [`Caller`] to the handler through
//! the request's extensions.
//!
//! No credential, a client token, a foreign or expired credential:
//! UNAUTHENTICATED. A verified caller that the table does not allow:
//! PERMISSION_DENIED. Health and reflection stay open.

use crate::{jwt::bearer, policy, service_auth::InternalKey};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use tonic::Status;
use tower::{Layer, Service};

/// Authenticates and authorises internal calls.
#[derive(Debug, Clone)]
pub struct InternalAuthLayer {
    key: InternalKey,
}

impl InternalAuthLayer {
    /// Verifies credentials with `key`.
    pub fn new(key: InternalKey) -> Self {
        Self { key }
    }
}

impl<S> Layer<S> for InternalAuthLayer {
    type Service = InternalAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InternalAuth {
            inner,
            key: self.key.clone(),
        }
    }
}

/// See [`InternalAuthLayer`].
#[derive(Debug, Clone)]
pub struct InternalAuth<S> {
    inner: S,
    key: InternalKey,
}

impl<S> InternalAuth<S> {
    fn authorise<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let path = request.uri().path();
        if policy::is_open(path) {
            return Ok(());
        }
        let value = request.headers().get(http::header::AUTHORIZATION).ok_or_else(|| {
            Status::unauthenticated(
                "internal port: calls need a service credential in `authorization: Bearer <credential>` \
                 (backends mint one with `hubbub token --service NAME --scope ...`)",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or_else(|| Status::unauthenticated("authorization metadata must be `Bearer <credential>`"))?;
        let caller = self
            .key
            .verify(token)
            .map_err(|err| Status::unauthenticated(format!("service credential refused: {err}")))?;
        caller
            .check_bound_to(path)
            .map_err(|misdirected| Status::unauthenticated(format!("service credential refused: {misdirected}")))?;
        policy::check(path, &caller).map_err(|denied| Status::permission_denied(denied.to_string()))?;
        request.extensions_mut().insert(caller);
        Ok(())
    }
}

impl<S, B> Service<http::Request<B>> for InternalAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.authorise(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                // A caller's mistake (or an attacker's try), not a fault here.
                tracing::debug!(path = %request.uri().path(), code = ?status.code(), "internal call refused");
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
