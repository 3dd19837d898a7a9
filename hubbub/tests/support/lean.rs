//! `Connect` as a browser makes it on the gateway's lean path: gRPC-web on
//! a fresh HTTP/1.1 connection of its own (hyper's client, tonic-web's
//! framing), so a test reads the same `Streaming<ServerEvent>` whichever
//! transport carried it.

use hubbub_proto::v1::client_api_client::ClientApiClient;
use hyper::body::{Body, Incoming};
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};
use tonic_web::GrpcWebClientService;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Each request on a new HTTP/1.1 connection to one address.
#[derive(Debug, Clone, Copy)]
pub struct Http1 {
    address: SocketAddr,
}

impl<B> tower::Service<http::Request<B>> for Http1
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let address = self.address;
        Box::pin(async move {
            // Origin form and a Host header, as a browser sends them.
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).parse()?;
            *request.uri_mut() = path;
            request
                .headers_mut()
                .insert(http::header::HOST, address.to_string().parse()?);
            let stream = tokio::net::TcpStream::connect(address).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            Ok(sender.send_request(request).await?)
        })
    }
}

/// A client whose calls go as gRPC-web over HTTP/1.1 to `address`.
pub fn client(address: SocketAddr) -> ClientApiClient<GrpcWebClientService<Http1>> {
    let origin = format!("http://{address}").parse().expect("an address is a URI");
    ClientApiClient::with_origin(GrpcWebClientService::new(Http1 { address }), origin)
}
