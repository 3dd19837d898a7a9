//! `CloseHttp1Layer`: every HTTP/1.1 answer tonic gives on a port with a
//! lean call says `connection: close`. The lean path judges a connection on
//! its first request only; a browser (or a proxy's upstream pool) that
//! reused a connection after a unary call or a CORS preflight would carry
//! its long `Connect` to hyper instead. Closed after each answer, every
//! HTTP/1.1 request opens a connection of its own, and each `Connect` is
//! judged. HTTP/2 connections are untouched.

use http::{HeaderValue, Request, Response, Version, header::CONNECTION};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// See the module.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloseHttp1Layer;

impl<S> Layer<S> for CloseHttp1Layer {
    type Service = CloseHttp1<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CloseHttp1 { inner }
    }
}

/// See [`CloseHttp1Layer`].
#[derive(Debug, Clone)]
pub struct CloseHttp1<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for CloseHttp1<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let http1 = request.version() <= Version::HTTP_11;
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if http1 {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn http1_answers_close_their_connection_and_http2_ones_do_not() {
        let service = CloseHttp1Layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }));
        for (version, closes) in [
            (Version::HTTP_11, true),
            (Version::HTTP_10, true),
            (Version::HTTP_2, false),
        ] {
            let request = Request::builder().version(version).body(()).unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(
                response.headers().get(CONNECTION).is_some_and(|v| v == "close"),
                closes,
                "{version:?}"
            );
        }
    }
}
