//! `[internal_tls]`: internal listeners speak only (m)TLS, channels between
//! roles present their certificate, and a whole room path works over it.
//! `gateway.public_tls`: clients reach the public port over TLS (HTTP/2).
//! The certificates are made for each run with the `openssl` command line.

mod support;

use hubbub_kit::{
    channel::{Dialer, TracedChannel},
    serve::ServeOptions,
    service_auth::Credentials,
    tls::{InternalTls, InternalTlsConfig},
};
use hubbub_proto::v1::{RoomGetRecentRequest, RoomMessageKind, SendRoomMessageRequest, room_client::RoomClient};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};
use support::{Sandbox, Viewer, authed};
use svc_gateway::GatewayConfig;
use svc_room::RoomConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    Request,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

/// A throwaway PKI in a fresh directory, removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is needed to make test certificates");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hubbub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ca.ext"),
            "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n",
        )
        .unwrap();
        // One certificate per role, for its listener and as its client
        // certificate, naming the address peers dial in the tests.
        std::fs::write(
            dir.join("role.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth, clientAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .unwrap();
        Self { dir }
    }

    fn key(&self, name: &str) {
        let key = format!("{name}.key");
        openssl(
            &self.dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
    }

    /// A self-signed CA `name` (`name.pem`, `name.key`).
    fn ca(&self, name: &str) {
        self.key(name);
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let subject = format!("/CN=hubbub test {name}");
        openssl(
            &self.dir,
            &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
        );
        openssl(
            &self.dir,
            &[
                "x509", "-req", "-in", &csr, "-signkey", &key, "-days", "2", "-extfile", "ca.ext", "-out", &pem,
            ],
        );
    }

    /// A role certificate `name` signed by CA `ca`.
    fn role(&self, name: &str, ca: &str) {
        self.key(name);
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let subject = format!("/CN={name}");
        openssl(
            &self.dir,
            &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &serial(name),
                "-days",
                "2",
                "-extfile",
                "role.ext",
                "-out",
                &pem,
            ],
        );
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }

    /// `[internal_tls]` of role `name`, trusting `ca`.
    fn config(&self, name: &str, ca: &str) -> InternalTlsConfig {
        InternalTlsConfig {
            cert_file: self.path(&format!("{name}.pem")),
            key_file: self.path(&format!("{name}.key")),
            ca_file: self.path(&format!("{ca}.pem")),
            require_client_cert: true,
            server_name: None,
        }
    }
}

fn serial(name: &str) -> String {
    let sum: u32 = name.bytes().map(u32::from).sum();
    format!("0x{:x}", 0x1000 + sum)
}

/// A PKI with CA `ca`, roles `room` and `gateway` under it, and `stranger`
/// under a second CA `other-ca`.
fn pki(name: &str) -> Pki {
    let pki = Pki::new(name);
    pki.ca("ca");
    pki.role("room", "ca");
    pki.role("gateway", "ca");
    pki.ca("other-ca");
    pki.role("stranger", "other-ca");
    pki
}

fn options(tls: InternalTls) -> ServeOptions {
    ServeOptions {
        tls: Some(tls),
        ..support::options()
    }
}

/// Starts a room instance with `tls` on 127.0.0.1:0.
async fn tls_room(tls: InternalTls, shutdown: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = RoomConfig {
        listen: address,
        advertise: format!("http://{address}"),
        ..RoomConfig::default()
    };
    tokio::spawn(svc_room::serve(config, options(tls), listener, shutdown.child_token()));
    address
}

/// `Room.GetRecent` on `channel`, with the reader's credential set by hand
/// (channels made outside kit carry none).
async fn get_recent(channel: Channel, reader: &Credentials) -> Result<(), tonic::Status> {
    let mut request = Request::new(RoomGetRecentRequest {
        room_id: "stage".into(),
    });
    request
        .metadata_mut()
        .insert("authorization", reader.header_for("hubbub.v1.Room"));
    RoomClient::new(channel).get_recent(request).await.map(drop)
}

/// A TLS channel trusting `ca` that presents `identity`, if any.
fn tls_channel(address: SocketAddr, ca: Vec<u8>, identity: Option<Identity>) -> Channel {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

/// Asserts that `err` came from the connection, not from a server answer:
/// the handshake failed or the server dropped the connection.
fn refused_by_transport(err: &tonic::Status, what: &str) {
    let transport = std::error::Error::source(err).is_some_and(|source| source.is::<tonic::transport::Error>());
    assert!(transport, "{what}: expected a refused connection, got {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_listener_with_mtls_answers_only_clients_with_a_certificate_of_its_ca() {
    let pki = pki("mtls");
    let shutdown = CancellationToken::new();
    let room = tls_room(pki.config("room", "ca").load().unwrap(), &shutdown).await;
    let reader = support::service("reader", &["room.read"]);

    // A role dialling with its own certificate, to an http:// address as
    // configured lists and DNS discovery give: dialled over TLS, answered.
    let gateway = Dialer::new(reader.clone(), Some(pki.config("gateway", "ca").load().unwrap()));
    let channel: TracedChannel = gateway.dial(&format!("http://{room}")).unwrap();
    RoomClient::new(channel)
        .get_recent(RoomGetRecentRequest {
            room_id: "stage".into(),
        })
        .await
        .expect("a client with a certificate of the CA is answered");

    // Plaintext, with a valid credential: refused by the transport.
    let err = RoomClient::new(support::internal_channel(room, &reader))
        .get_recent(RoomGetRecentRequest {
            room_id: "stage".into(),
        })
        .await
        .expect_err("a plaintext client must not be answered");
    refused_by_transport(&err, "a plaintext client must not be answered");

    // TLS that trusts the CA but presents no client certificate.
    let err = get_recent(tls_channel(room, pki.read("ca.pem"), None), &reader)
        .await
        .expect_err("mTLS must refuse a client without a certificate");
    refused_by_transport(&err, "mTLS must refuse a client without a certificate");

    // A client certificate of another CA.
    let stranger = Identity::from_pem(pki.read("stranger.pem"), pki.read("stranger.key"));
    let err = get_recent(tls_channel(room, pki.read("ca.pem"), Some(stranger)), &reader)
        .await
        .expect_err("mTLS must refuse a certificate of another CA");
    refused_by_transport(&err, "mTLS must refuse a certificate of another CA");

    // The certificate is not the credential: TLS without one is still UNAUTHENTICATED.
    let identity = Identity::from_pem(pki.read("gateway.pem"), pki.read("gateway.key"));
    let err = RoomClient::new(tls_channel(room, pki.read("ca.pem"), Some(identity)))
        .get_recent(RoomGetRecentRequest {
            room_id: "stage".into(),
        })
        .await
        .expect_err("a certificate alone is no credential");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // A role that does not trust the room's CA refuses the room.
    let untrusting = Dialer::new(reader, Some(pki.config("stranger", "other-ca").load().unwrap()));
    let err = RoomClient::new(untrusting.dial(&format!("https://{room}")).unwrap())
        .get_recent(RoomGetRecentRequest {
            room_id: "stage".into(),
        })
        .await
        .expect_err("a listener whose certificate the client cannot verify is not used");
    refused_by_transport(
        &err,
        "a listener whose certificate the client cannot verify is not used",
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_require_client_cert_tls_clients_need_no_certificate_but_plaintext_still_fails() {
    let pki = pki("tls-only");
    let shutdown = CancellationToken::new();
    let config = InternalTlsConfig {
        require_client_cert: false,
        ..pki.config("room", "ca")
    };
    let room = tls_room(config.load().unwrap(), &shutdown).await;
    let reader = support::service("reader", &["room.read"]);

    get_recent(tls_channel(room, pki.read("ca.pem"), None), &reader)
        .await
        .expect("TLS without a client certificate is answered");
    let err = RoomClient::new(support::internal_channel(room, &reader))
        .get_recent(RoomGetRecentRequest {
            room_id: "stage".into(),
        })
        .await
        .expect_err("a plaintext client must not be answered");
    refused_by_transport(&err, "a plaintext client must not be answered");
    shutdown.cancel();
}

#[test]
fn a_key_of_another_certificate_is_refused_at_load_naming_the_files() {
    let pki = pki("mismatch");
    let config = InternalTlsConfig {
        key_file: pki.path("gateway.key"),
        ..pki.config("room", "ca")
    };
    let err = config.load().unwrap_err();
    assert_eq!(err.key, "key_file", "{err}");
    let message = err.to_string();
    assert!(
        message.contains("gateway.key") && message.contains("room.pem") && message.contains("not a usable key"),
        "{message}"
    );
    let config = InternalTlsConfig {
        server_name: Some("not a name".into()),
        ..pki.config("room", "ca")
    };
    let err = config.load().unwrap_err();
    assert_eq!(err.key, "server_name", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_and_a_room_over_mtls_carry_a_room_message_to_its_viewers() {
    let pki = pki("path");
    let shutdown = CancellationToken::new();
    let room = tls_room(pki.config("room", "ca").load().unwrap(), &shutdown).await;

    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_address, internal_address) = (public.local_addr().unwrap(), internal.local_addr().unwrap());
    let config = GatewayConfig {
        listen: public_address,
        internal_listen: internal_address,
        advertise: format!("http://{internal_address}"),
        id: "gw-0".into(),
        room_instances: vec![format!("http://{room}")],
        attach_retry_ms: 50,
        presence_address: None,
        ..GatewayConfig::default()
    };
    let gateway_shutdown = shutdown.child_token();
    let listeners = svc_gateway::GatewayListeners { public, internal };
    let gateway_configs = vec![config.clone()];
    tokio::spawn(svc_gateway::serve(
        config,
        hubbub_kit::auth::JwtKey::new(support::SECRET),
        options(pki.config("gateway", "ca").load().unwrap()),
        listeners,
        gateway_shutdown.clone(),
    ));
    let sandbox = Sandbox {
        room,
        gateways: vec![public_address],
        gateways_internal: vec![internal_address],
        shutdown: shutdown.clone(),
        gateway_shutdowns: vec![gateway_shutdown],
        room_shutdown: shutdown.child_token(),
        gateway_configs,
        connect_over: support::ConnectOver::Http2,
    };

    // The public port stays plaintext: viewers connect as always.
    let mut viewer = Viewer::connect(&sandbox, 0, Some("viewer")).await;
    viewer.join("stage").await;
    let mut alice = Viewer::connect(&sandbox, 0, Some("alice")).await;
    alice.join("stage").await;
    let request = authed(
        SendRoomMessageRequest {
            session_id: alice.session_id.clone(),
            room_id: "stage".into(),
            body: b"over mtls".to_vec().into(),
            kind: RoomMessageKind::Comment as i32,
        },
        alice.token.as_deref(),
    );
    alice
        .client
        .send_room_message(request)
        .await
        .expect("the gateway publishes to the room over mTLS");
    let got = viewer.room_messages(1).await;
    assert_eq!(got[0].body.as_ref(), b"over mtls");

    // The gateway's internal listener is TLS-only too: even health, which
    // needs no credential, is refused in plaintext.
    let plaintext = Endpoint::from_shared(format!("http://{internal_address}"))
        .unwrap()
        .connect_lazy();
    let err = tonic_health::pb::health_client::HealthClient::new(plaintext)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect_err("the gateway's internal listener refuses plaintext");
    refused_by_transport(&err, "the gateway's internal listener refuses plaintext");
    let health = tonic_health::pb::health_client::HealthClient::new(tls_channel(
        internal_address,
        pki.read("ca.pem"),
        Some(Identity::from_pem(pki.read("room.pem"), pki.read("room.key"))),
    ))
    .check(tonic_health::pb::HealthCheckRequest::default())
    .await
    .expect("health over mTLS");
    assert_eq!(
        health.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_clients_over_tls_with_http2() {
    use hubbub_proto::v1::{ConnectRequest, client_api_client::ClientApiClient, server_event::Event};
    let pki = pki("public-tls");
    let sandbox = support::start(1, |config| {
        config.public_tls = Some(hubbub_kit::tls::PublicTlsConfig {
            cert_file: pki.path("gateway.pem"),
            key_file: pki.path("gateway.key"),
        });
    })
    .await;
    let address = sandbox.gateways[0];
    let ca = std::fs::read(pki.path("ca.pem")).unwrap();
    // A client trusting the CA gets its Welcome over TLS (HTTP/2: ALPN h2).
    let mut client = ClientApiClient::new(tls_channel(address, ca, None));
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let mut events = loop {
        match client
            .connect(ConnectRequest {
                device_id: "tab".into(),
                client_info: "test".into(),
            })
            .await
        {
            Ok(events) => break events.into_inner(),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(err) => panic!("no TLS connect: {err:?}"),
        }
    };
    let welcome = events.message().await.unwrap().unwrap();
    assert!(matches!(welcome.event, Some(Event::Welcome(_))), "{welcome:?}");
    // Plaintext to the TLS port is refused by the transport.
    let plain = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy();
    let err = ClientApiClient::new(plain)
        .connect(ConnectRequest {
            device_id: "tab".into(),
            client_info: "test".into(),
        })
        .await
        .unwrap_err();
    refused_by_transport(&err, "plaintext to the TLS public port");
    // A certificate file that is not one stops the gateway at start, naming it.
    let broken = hubbub_kit::tls::PublicTlsConfig {
        cert_file: pki.path("ca.ext"),
        key_file: pki.path("gateway.key"),
    };
    let err = broken.load().unwrap_err().to_string();
    assert!(err.contains("ca.ext"), "{err}");
}
