//! `[internal_tls]`: optional TLS, and by default mutual TLS, on every
//! role's internal listener and on the channels roles open to each other,
//! for clusters without a service mesh. With a mesh, leave it out: the mesh
//! does mTLS. Either way every internal call still carries its service
//! credential; TLS only adds privacy and peer authentication on the wire.
//!
//! The gateway's public listener never uses it: TLS for clients is
//! `gateway.public_tls` ([`PublicTlsConfig`]), or the load balancer's.
//!
//! The files are read and checked once, when a role starts: a role with an
//! unusable certificate refuses to start and names the file and what is
//! wrong with it, instead of failing every handshake later.
//!
//! With TLS on, an internal listener offers only HTTP/2 (ALPN `h2`), so:
//! Prometheus must scrape `/metrics` over `https` with HTTP/2 enabled
//! (`enable_http2: true`) and, with `require_client_cert`, a client
//! certificate; Kubernetes' built-in `grpc` probes speak no TLS, so probe
//! these ports with `tcpSocket` or a TLS-capable probe command instead.

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::Deserialize;
use std::{fmt, path::PathBuf, sync::Arc, time::Duration};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// `[internal_tls]`. Absent: internal listeners and peer channels are
/// plaintext. Present: every internal listener serves TLS only, and every
/// channel to a peer uses TLS, including to `http://` addresses (as DNS
/// discovery yields them), which are dialled as `https://`: a role told to
/// use TLS never falls back to plaintext.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InternalTlsConfig {
    /// PEM certificate chain of this role, its own certificate first. Served
    /// on its internal listener and presented as its client certificate when
    /// it calls peers, so it must name (as subject alternative names) every
    /// host or IP peers dial it by, or the name in `server_name`, and allow
    /// both server and client authentication if it restricts key usage.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC),
    /// unencrypted.
    pub key_file: PathBuf,
    /// PEM certificate(s) of the CA that peers' certificates must chain to:
    /// listeners check client certificates against it, channels check the
    /// certificates of the listeners they dial.
    pub ca_file: PathBuf,
    /// Mutual TLS: internal listeners refuse connections that present no
    /// client certificate chaining to `ca_file`. Default true. When false, a
    /// client certificate that is presented is still verified.
    #[serde(default = "require_client_cert_default")]
    pub require_client_cert: bool,
    /// The name channels expect in peers' certificates, instead of the host
    /// of the address they dial. Set it when peers are dialled by addresses
    /// their certificates do not name, such as pod IPs from DNS discovery.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn require_client_cert_default() -> bool {
    true
}

/// Why `[internal_tls]` cannot be used: which key, which file, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("internal_tls.{key} ({path}): {problem}")]
pub struct TlsConfigError {
    /// The configuration key at fault (`cert_file`, `ca_file`, ...).
    pub key: &'static str,
    /// Its value: the file, or the name.
    pub path: String,
    /// What is wrong, in words a person can act on.
    pub problem: String,
}

/// `[internal_tls]` loaded and checked: what listeners and channels need.
/// Cheap to clone: every listener and channel of a role shares one.
#[derive(Clone)]
pub struct InternalTls(Arc<Loaded>);

struct Loaded {
    cert_file: PathBuf,
    identity: Identity,
    ca: Certificate,
    require_client_cert: bool,
    server_name: Option<String>,
}

// By hand: the derived one would print the private key.
impl fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalTls")
            .field("cert_file", &self.0.cert_file)
            .field("require_client_cert", &self.0.require_client_cert)
            .field("server_name", &self.0.server_name)
            .finish_non_exhaustive()
    }
}

/// A certificate chain and its key, read and checked as PEM.
fn read_identity(cert_file: &std::path::Path, key_file: &std::path::Path) -> Result<Identity, TlsConfigError> {
    let cert = read("cert_file", cert_file)?;
    check_certificates("cert_file", cert_file, &cert)?;
    let key = read("key_file", key_file)?;
    check_private_key(key_file, &key)?;
    Ok(Identity::from_pem(&cert, &key))
}

/// Tries `identity` as a listener's: only rustls tells a key of another
/// certificate, or a certificate it cannot parse, and it says so now rather
/// than at every handshake.
fn check_identity(
    identity: &Identity,
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<(), TlsConfigError> {
    Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity.clone()))
        .map(drop)
        .map_err(|err| TlsConfigError {
            key: "key_file",
            path: key_file.display().to_string(),
            problem: format!(
                "is not a usable key for the certificate in {}: {}",
                cert_file.display(),
                causes(&err)
            ),
        })
}

impl InternalTlsConfig {
    /// Reads the three files and checks that they make a usable listener
    /// and client: PEM that holds what each key promises, a private key
    /// that belongs to the certificate, a CA that can verify peers, and a
    /// valid `server_name`.
    pub fn load(&self) -> Result<InternalTls, TlsConfigError> {
        let identity = read_identity(&self.cert_file, &self.key_file)?;
        let ca = read("ca_file", &self.ca_file)?;
        check_certificates("ca_file", &self.ca_file, &ca)?;
        check_identity(&identity, &self.cert_file, &self.key_file)?;
        let tls = InternalTls(Arc::new(Loaded {
            cert_file: self.cert_file.clone(),
            identity,
            ca: Certificate::from_pem(&ca),
            require_client_cert: self.require_client_cert,
            server_name: self.server_name.clone(),
        }));
        // Building what serving and dialling will build reports, now, what
        // only rustls can tell: a CA it cannot parse, a bad server name.
        Server::builder()
            .tls_config(tls.server_config(Duration::from_secs(1)))
            .map_err(|err| TlsConfigError {
                key: "ca_file",
                path: self.ca_file.display().to_string(),
                problem: format!("cannot verify client certificates: {}", causes(&err)),
            })?;
        let dialled = self.server_name.as_deref().unwrap_or("localhost");
        Endpoint::from_static("https://localhost")
            .tls_config(tls.client_config())
            .map_err(|err| TlsConfigError {
                key: "server_name",
                path: dialled.to_owned(),
                problem: format!(
                    "is not a usable TLS server name (a DNS name or an IP address): {}",
                    causes(&err)
                ),
            })?;
        Ok(tls)
    }
}

impl InternalTls {
    /// TLS for an internal listener: this role's certificate, client
    /// certificates verified against the CA (and required, with mTLS), and
    /// the handshake bounded by `handshake_timeout`.
    pub fn server_config(&self, handshake_timeout: Duration) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.0.identity.clone())
            .client_ca_root(self.0.ca.clone())
            .client_auth_optional(!self.0.require_client_cert)
            .timeout(handshake_timeout)
    }

    /// TLS for a channel to a peer: listeners verified against the CA (by
    /// `server_name` when set), this role's certificate as client identity.
    pub fn client_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(self.0.ca.clone())
            .identity(self.0.identity.clone());
        match &self.0.server_name {
            Some(name) => config.domain_name(name.clone()),
            None => config,
        }
    }
}

fn read(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|err| TlsConfigError {
        key,
        path: path.display().to_string(),
        problem: format!("cannot be read: {err}"),
    })
}

fn check_certificates(key: &'static str, path: &std::path::Path, pem: &[u8]) -> Result<(), TlsConfigError> {
    let problem = |problem: String| TlsConfigError {
        key,
        path: path.display().to_string(),
        problem,
    };
    let mut found = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|err| problem(format!("is not valid PEM: {err}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(problem("holds no PEM certificate (a `BEGIN CERTIFICATE` block)".into()));
    }
    Ok(())
}

fn check_private_key(path: &std::path::Path, pem: &[u8]) -> Result<(), TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map(drop)
        .map_err(|err| TlsConfigError {
            key: "key_file",
            path: path.display().to_string(),
            problem: match err {
                rustls_pki_types::pem::Error::NoItemsFound => "holds no unencrypted PEM private key \
                 (a `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)"
                    .into(),
                err => format!("is not valid PEM: {err}"),
            },
        })
}

/// An error and its causes on one line: tonic's own message says only
/// "transport error", rustls's reason is further down.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> InternalTlsConfig {
        InternalTlsConfig {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            ca_file: dir.join("ca.pem"),
            require_client_cert: true,
            server_name: None,
        }
    }

    #[test]
    fn the_section_defaults_to_mutual_tls_and_rejects_unknown_keys() {
        let parsed: InternalTlsConfig = toml::from_str("cert_file = \"a\"\nkey_file = \"b\"\nca_file = \"c\"").unwrap();
        assert!(parsed.require_client_cert);
        assert_eq!(parsed.server_name, None);
        let err =
            toml::from_str::<InternalTlsConfig>("cert_file = \"a\"\nkey_file = \"b\"\nca_file = \"c\"\nca = \"d\"")
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `ca`"), "{err}");
    }

    #[test]
    fn unusable_files_are_named_with_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("hubbub-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = config(&dir);

        let err = config.load().unwrap_err();
        assert_eq!(err.key, "cert_file");
        assert!(
            err.to_string().contains("cert.pem") && err.problem.contains("cannot be read"),
            "{err}"
        );

        std::fs::write(&config.cert_file, "not a certificate").unwrap();
        let err = config.load().unwrap_err();
        assert!(err.problem.contains("no PEM certificate"), "{err}");

        std::fs::write(
            &config.cert_file,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = config.load().unwrap_err();
        assert!(err.problem.contains("not valid PEM"), "{err}");

        std::fs::write(
            &config.cert_file,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &config.key_file,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = config.load().unwrap_err();
        assert_eq!(err.key, "key_file");
        assert!(err.problem.contains("no unencrypted PEM private key"), "{err}");

        std::fs::write(
            &config.key_file,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = config.load().unwrap_err();
        assert_eq!(err.key, "ca_file");
        assert!(err.problem.contains("cannot be read"), "{err}");

        // Well-formed PEM, but not a key rustls can use with this certificate.
        std::fs::write(
            &config.ca_file,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = config.load().unwrap_err();
        assert_eq!(err.key, "key_file");
        assert!(err.problem.contains("not a usable key for the certificate in"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `gateway.public_tls`: TLS on the gateway's public listener, so browsers
/// speak HTTP/2 to it (ALPN `h2`) and every tab's calls share one
/// connection instead of queueing behind HTTP/1.1's six per origin.
/// Absent: plaintext, with TLS on the load balancer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublicTlsConfig {
    /// PEM certificate chain clients verify, its own certificate first.
    pub cert_file: PathBuf,
    /// Its PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub key_file: PathBuf,
}

/// `gateway.public_tls`, read and checked.
#[derive(Clone)]
pub struct PublicTls(Identity);

// By hand: the derived one would print the private key.
impl fmt::Debug for PublicTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicTls")
    }
}

impl PublicTlsConfig {
    /// Reads both files and checks they make a usable listener.
    pub fn load(&self) -> Result<PublicTls, TlsConfigError> {
        let identity = read_identity(&self.cert_file, &self.key_file)?;
        check_identity(&identity, &self.cert_file, &self.key_file)?;
        Ok(PublicTls(identity))
    }
}

impl PublicTls {
    /// TLS for the public listener: no client certificates (clients prove
    /// who they are with tokens), the handshake bounded.
    pub fn server_config(&self, handshake_timeout: Duration) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.0.clone())
            .timeout(handshake_timeout)
    }
}
