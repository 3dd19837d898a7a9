//! The demo page of `hubbub all`: a live room and a group chat in the
//! browser, made with `@hubbub/client` (its bundle is built from
//! `clients/ts/demo` and embedded here, so nothing else is needed to see
//! it). Served on its own port, never on the public one, which serves only
//! the client API.
//!
//! It mints tokens, so it is a door of its own: on by default only when
//! `all` made up its token secret (a development process; with a
//! configured secret it takes `demo.enabled = true`, and says so loudly);
//! loopback addresses only; tokens only for `demo-` users; `/token` takes
//! JSON only (a cross-site form cannot post it and there is no CORS to read
//! the answer) and answers only hosts that are IP literals or `localhost`
//! (a rebound DNS name is refused); heads, bodies, connections and their
//! lifetime are bounded.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hubbub_kit::auth::JwtKey;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// `[demo]`: the page `hubbub all` serves (ignored by single roles).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Serve it. Unset: only when `all` made up its token secret (then no
    /// real account's token can exist); `true` with a configured secret
    /// hands out tokens for `demo-*` users signed with it.
    pub enabled: Option<bool>,
    /// Where: a loopback address (the page hands out tokens).
    pub listen: SocketAddr,
    /// Life of the tokens it mints, in seconds (the client renews them).
    pub token_ttl_secs: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7780)),
            token_ttl_secs: 3600,
        }
    }
}

const INDEX: &str = include_str!("../demo/index.html");
const STYLE: &str = include_str!("../demo/demo.css");
const SCRIPT: &str = include_str!("../demo/demo.js");
const WORKER: &str = include_str!("../demo/worker.js");

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;
/// A connection's whole life (keep-alive included).
const CONNECTION_LIFE: Duration = Duration::from_secs(60);
/// Time to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/token` body.
const MAX_BODY: usize = 1024;

/// What the page needs to know.
#[derive(Debug, Clone)]
pub struct Demo {
    key: Arc<JwtKey>,
    token_ttl: Duration,
    /// The gateway's public port, and whether it speaks TLS.
    gateway_port: u16,
    gateway_tls: bool,
}

impl DemoConfig {
    /// Whether to serve it, given whether the token secret was made up by
    /// this process; an error for a listen address off loopback.
    pub fn serve(&self, made_up_secret: bool) -> anyhow::Result<bool> {
        let on = self.enabled.unwrap_or(made_up_secret);
        if on && !self.listen.ip().is_loopback() {
            anyhow::bail!(
                "demo.listen = {} is not a loopback address: the demo page hands out tokens, it listens on 127.0.0.1 or ::1 only",
                self.listen
            );
        }
        if on && !made_up_secret {
            tracing::warn!(
                "demo.enabled with a configured token secret: the demo page mints tokens for demo-* users signed with it"
            );
        }
        Ok(on)
    }
}

impl Demo {
    /// `key`: the gateway's client key, with its audience and issuer.
    pub fn new(key: JwtKey, config: &DemoConfig, gateway: SocketAddr, gateway_tls: bool) -> Self {
        Self {
            key: Arc::new(key),
            token_ttl: Duration::from_secs(config.token_ttl_secs.max(5)),
            gateway_port: gateway.port(),
            gateway_tls,
        }
    }

    /// Serves `listener` until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        let demo = Arc::new(self);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit?,
                () = shutdown.cancelled() => return Ok(()),
            };
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::debug!(%err, "demo accept failed");
                        continue;
                    }
                },
                () = shutdown.cancelled() => return Ok(()),
            };
            let demo = demo.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let demo = demo.clone();
                    async move { Ok::<_, std::convert::Infallible>(demo.answer(request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_LIFE, connection).await;
                drop(permit);
            });
        }
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(host) = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(page_host)
        else {
            return plain(
                StatusCode::MISDIRECTED_REQUEST,
                "open the demo at http://127.0.0.1:<port>/ or http://localhost:<port>/",
            );
        };
        // The host the browser used (a loopback address reaches this
        // machine's gateway by any of its names).
        let scheme = if self.gateway_tls { "https" } else { "http" };
        let gateway = format!("{scheme}://{host}:{}", self.gateway_port);
        let page = |body: &'static str, content_type: &'static str| asset(body, content_type, &gateway);
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/") => page(INDEX, "text/html; charset=utf-8"),
            (&Method::GET, "/demo.css") => page(STYLE, "text/css; charset=utf-8"),
            (&Method::GET, "/demo.js") => page(SCRIPT, "text/javascript; charset=utf-8"),
            (&Method::GET, "/worker.js") => page(WORKER, "text/javascript; charset=utf-8"),
            (&Method::GET, "/config.json") => {
                let body = serde_json::json!({
                    "gateway": gateway,
                    "tokenTtlSecs": self.token_ttl.as_secs(),
                });
                json(StatusCode::OK, &body)
            }
            (&Method::POST, "/token") => self.token(request).await,
            (&Method::GET, "/favicon.ico") => {
                let mut response = plain(StatusCode::NO_CONTENT, "");
                response.headers_mut().remove(header::CONTENT_TYPE);
                response
            }
            (_, "/" | "/demo.css" | "/demo.js" | "/worker.js" | "/config.json" | "/token") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => plain(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// `POST /token {"user": "alice"}`: a token for `demo-alice`.
    async fn token(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim() == "application/json"));
        if !is_json {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send {\"user\": \"name\"} as application/json",
            );
        }
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "the body is limited to 1 KiB"),
        };
        #[derive(Deserialize)]
        struct Asked {
            user: String,
        }
        let Ok(asked) = serde_json::from_slice::<Asked>(&body) else {
            return plain(StatusCode::BAD_REQUEST, "send {\"user\": \"name\"}");
        };
        let Some(user) = demo_user(&asked.user) else {
            return plain(StatusCode::BAD_REQUEST, "a name is 1 to 32 of a-z, 0-9, '-' and '_'");
        };
        let token = self.key.mint(&user, self.token_ttl);
        json(StatusCode::OK, &serde_json::json!({ "token": token, "userId": user }))
    }
}

/// The user id a demo name stands for: always under `demo-`, so the page
/// can never hand out a token for a real account.
fn demo_user(name: &str) -> Option<String> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    ok.then(|| format!("demo-{name}"))
}

/// The host part of a `Host` header when it is an IP literal or
/// `localhost`; anything else (a DNS name rebound to this machine) is refused.
fn page_host(value: &str) -> Option<&str> {
    if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        rest[..end].parse::<std::net::Ipv6Addr>().ok()?;
        return Some(&value[..end + 2]);
    }
    let host = value.rsplit_once(':').map_or(value, |(host, _)| host);
    (host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok()).then_some(host)
}

/// A page, whose scripts may talk to `gateway` and nowhere else.
fn asset(body: &'static str, content_type: &'static str, gateway: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    let policy = format!(
        "default-src 'self'; connect-src 'self' {gateway}; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    );
    if let Ok(policy) = header::HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_users_are_always_under_the_demo_prefix() {
        assert_eq!(demo_user("alice").as_deref(), Some("demo-alice"));
        for bad in ["", "Alice", "a b", "../x", "x".repeat(33).as_str(), "é"] {
            assert_eq!(demo_user(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_page_is_on_by_itself_only_for_a_made_up_secret_and_only_on_loopback() {
        let mut config = DemoConfig::default();
        assert!(config.serve(true).unwrap());
        assert!(!config.serve(false).unwrap(), "a configured secret needs demo.enabled");
        config.enabled = Some(true);
        assert!(config.serve(false).unwrap());
        config.listen = "0.0.0.0:7780".parse().unwrap();
        assert!(config.serve(true).unwrap_err().to_string().contains("loopback"));
        config.enabled = Some(false);
        assert!(!config.serve(true).unwrap(), "off, wherever it would listen");
        config.listen = "[::1]:7780".parse().unwrap();
        config.enabled = None;
        assert!(config.serve(true).unwrap());
    }

    #[test]
    fn only_ip_literals_and_localhost_are_answered() {
        assert_eq!(page_host("127.0.0.1:7780"), Some("127.0.0.1"));
        assert_eq!(page_host("localhost:7780"), Some("localhost"));
        assert_eq!(page_host("192.168.1.5"), Some("192.168.1.5"));
        assert_eq!(page_host("[::1]:7780"), Some("[::1]"));
        assert_eq!(page_host("evil.example:7780"), None);
        assert_eq!(page_host("[nonsense]:1"), None);
        assert_eq!(page_host("127.0.0.1.evil.example"), None);
    }
}
