//! The whole configuration of the binary: one section per role, plus auth
//! and telemetry. Loaded from `--config FILE`, then `HUBBUB_<SECTION>__<KEY>`
//! environment variables, then `--set section.key=value` flags.

use hubbub_kit::{
    config::{ConfigError, ConfigLoader},
    telemetry::TelemetryConfig,
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
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret that signs client tokens (`HUBBUB_JWT_SECRET`). `all`
    /// mode makes up a development secret when none is set.
    pub jwt_secret: Option<String>,
}

impl Config {
    /// Loads the layers in order; `env` is the process environment.
    pub fn load<'a>(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        sets: &[String],
    ) -> Result<Self, ConfigError> {
        let mut loader = ConfigLoader::new().alias("HUBBUB_JWT_SECRET", "auth.jwt_secret");
        if let Some(file) = file {
            loader = loader.file(file)?;
        }
        loader.env(env)?.flags(sets.iter().map(String::as_str))?.load()
    }
}
