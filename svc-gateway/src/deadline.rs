//! Calls the gateway makes to other roles, bounded in time. The deadline is
//! sent along (`grpc-timeout`, so the callee gives up too) and kept here,
//! because a peer that is down or hung would otherwise hold the client's
//! call until its own deadline, if it has one.

use std::{future::Future, time::Duration};
use tonic::{Request, Response, Status};

/// Gives `request` the deadline `timeout`.
pub fn bound<T>(mut request: Request<T>, timeout: Duration) -> Request<T> {
    request.set_timeout(timeout);
    request
}

/// The answer of `call`, or UNAVAILABLE naming `callee` when it takes longer
/// than `timeout` or went away mid-call (a callee shutting down resets its
/// streams, which the channel reports as CANCELLED; the client did not
/// cancel anything, and should retry).
pub async fn answer<T>(
    timeout: Duration,
    callee: impl std::fmt::Display,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| {
            Status::unavailable(format!(
                "{callee} did not answer within {} ms: retry",
                timeout.as_millis()
            ))
        })?
        .map(Response::into_inner)
        .map_err(|status| match status.code() {
            tonic::Code::Cancelled => Status::unavailable(format!(
                "{callee} went away during the call ({}): retry",
                status.message()
            )),
            _ => status,
        })
}
