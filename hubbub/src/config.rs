//! The whole configuration of the binary: one section per role, plus auth
//! and telemetry. Loaded from `--config FILE`, then `HUBBUB_<SECTION>__<KEY>`
//! environment variables, then `--set section.key=value` flags.

use hubbub_kit::{
    config::{ConfigError, ConfigLoader},
    serve::ListenerLimits,
    telemetry::TelemetryConfig,
    tls::InternalTlsConfig,
};
use serde::Deserialize;
use std::path::Path;
use svc_gateway::GatewayConfig;
use svc_gift::GiftConfig;
use svc_group::GroupConfig;
use svc_presence::PresenceConfig;
use svc_room::RoomConfig;

/// Everything hubbub can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Token verification.
    pub auth: AuthConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Connection limits of every listener.
    pub listener: ListenerLimits,
    /// TLS (mutual by default) on internal listeners and between roles;
    /// absent: plaintext, for a mesh to secure.
    pub internal_tls: Option<InternalTlsConfig>,
    /// The gateway role.
    pub gateway: GatewayConfig,
    /// The room role.
    pub room: RoomConfig,
    /// The group role.
    pub group: GroupConfig,
    /// The gift role.
    pub gift: GiftConfig,
    /// The presence role.
    pub presence: PresenceConfig,
    /// The demo page (`hubbub all` only).
    pub demo: crate::demo::DemoConfig,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret that signs client tokens (`HUBBUB_JWT_SECRET`), at
    /// least 32 bytes. `all` mode makes up a development secret when none
    /// is set.
    pub jwt_secret: Option<String>,
    /// The internal key that signs service credentials between roles
    /// (`HUBBUB_INTERNAL_KEY`), at least 32 bytes and not the client secret.
    /// `all` mode makes one up; separate roles refuse to start without it.
    pub internal_key: Option<String>,
    /// When set, client tokens must carry this `aud`.
    pub audience: Option<String>,
    /// When set, client tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// Set by `all` when it made up `jwt_secret` (a development process).
    #[serde(skip)]
    pub made_up_secret: bool,
}

impl Config {
    /// Loads the layers in order; `env` is the process environment.
    pub fn load<'a>(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        sets: &[String],
    ) -> Result<Self, ConfigError> {
        let mut loader = ConfigLoader::new()
            .alias("HUBBUB_JWT_SECRET", "auth.jwt_secret")
            .alias("HUBBUB_INTERNAL_KEY", "auth.internal_key");
        if let Some(file) = file {
            loader = loader.file(file)?;
        }
        loader.env(env)?.flags(sets.iter().map(String::as_str))?.load()
    }
}

/// Shortest client secret accepted.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl AuthConfig {
    /// Checks the secrets a role needs, with a message that says what to set.
    pub fn check(&self, needs_jwt: bool) -> Result<(), String> {
        let internal = self.internal_key.as_deref().ok_or(
            "no internal key: set HUBBUB_INTERNAL_KEY (or auth.internal_key) to a random secret of at least 32 bytes, \
             the same for every role (`openssl rand -hex 32`)",
        )?;
        if internal.len() < hubbub_kit::service_auth::MIN_INTERNAL_KEY_BYTES {
            return Err(format!(
                "auth.internal_key is {} bytes; use at least {} (`openssl rand -hex 32`)",
                internal.len(),
                hubbub_kit::service_auth::MIN_INTERNAL_KEY_BYTES
            ));
        }
        if needs_jwt {
            let jwt = self
                .jwt_secret
                .as_deref()
                .ok_or("the gateway needs the client token secret: set HUBBUB_JWT_SECRET or auth.jwt_secret")?;
            if jwt.len() < MIN_JWT_SECRET_BYTES {
                return Err(format!(
                    "auth.jwt_secret is {} bytes; use at least {MIN_JWT_SECRET_BYTES} (`openssl rand -hex 32`)",
                    jwt.len()
                ));
            }
            if jwt == internal {
                return Err("auth.internal_key must differ from auth.jwt_secret: a client token must never pass for a service credential".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_refuse_missing_short_or_shared_secrets() {
        let long = "x".repeat(32);
        let mut auth = AuthConfig::default();
        assert!(auth.check(false).unwrap_err().contains("HUBBUB_INTERNAL_KEY"));
        auth.internal_key = Some("short".into());
        assert!(auth.check(false).unwrap_err().contains("at least 32"));
        auth.internal_key = Some(long.clone());
        assert!(auth.check(false).is_ok());
        assert!(auth.check(true).unwrap_err().contains("HUBBUB_JWT_SECRET"));
        auth.jwt_secret = Some("too-short".into());
        assert!(auth.check(true).unwrap_err().contains("at least 32"));
        auth.jwt_secret = Some(long);
        assert!(auth.check(true).unwrap_err().contains("must differ"));
        auth.jwt_secret = Some("y".repeat(40));
        assert!(auth.check(true).is_ok());
    }
}
