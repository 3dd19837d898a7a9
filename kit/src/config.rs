//! Layered configuration: a TOML file, then environment variables, then
//! `--set key=value` flags, merged into one table and decoded into a typed
//! struct whose unknown keys are rejected.
//!
//! The environment is passed in as a map so tests can drive it without
//! touching the process environment.

use serde::de::DeserializeOwned;
use std::{collections::BTreeMap, path::Path};
use toml::{Table, Value};

/// Prefix of environment variables that configure hubbub.
pub const ENV_PREFIX: &str = "HUBBUB_";

/// Why a configuration could not be loaded. Each variant names where the bad
/// value came from, so the person fixing it knows which layer to look at.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
    /// A `--set` flag is not `key=value`.
    #[error("--set {0:?} is not of the form section.key=value")]
    BadFlag(String),
    /// A key is set twice at incompatible levels (`a=1` and `a.b=2`).
    #[error("{origin}: key {key:?} conflicts with a value already set at {conflict:?}")]
    Conflict {
        /// Where the second value came from.
        origin: String,
        /// The full key.
        key: String,
        /// The part of the key that already holds a plain value.
        conflict: String,
    },
    /// The merged table does not fit the schema (unknown key, wrong type).
    #[error("invalid configuration at `{path}`: {message}")]
    Invalid {
        /// Dotted path of the offending key.
        path: String,
        /// What is wrong, with the expected keys for unknown ones.
        message: String,
    },
}

/// Builds a configuration from its layers, later layers winning.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    table: Table,
    aliases: BTreeMap<String, String>,
}

impl ConfigLoader {
    /// An empty loader: decoding it yields the struct's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps a whole environment variable name to a dotted key, for names that
    /// people expect (`HUBBUB_JWT_SECRET` -> `auth.jwt_secret`).
    pub fn alias(mut self, env_name: &str, key: &str) -> Self {
        self.aliases.insert(env_name.to_owned(), key.to_owned());
        self
    }

    /// Merges a TOML file.
    pub fn file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let table: Table = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown.clone(),
            source,
        })?;
        merge(&mut self.table, table);
        Ok(self)
    }

    /// Merges environment variables: `HUBBUB_<SECTION>__<KEY>` sets
    /// `section.key`, plus the registered aliases. Other variables, including
    /// `HUBBUB_*` names without a `__`, are not configuration and are ignored.
    pub fn env<'a>(mut self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ConfigError> {
        let mut pairs: Vec<(String, &str, String)> = Vec::new();
        for (name, raw) in vars {
            let key = if let Some(key) = self.aliases.get(name) {
                key.clone()
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX).filter(|rest| rest.contains("__")) {
                rest.split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join(".")
            } else {
                continue;
            };
            pairs.push((key, raw, format!("environment variable {name}")));
        }
        // Sorted so the outcome never depends on the environment's order.
        pairs.sort();
        for (key, raw, origin) in pairs {
            self.set(&key, raw, &origin)?;
        }
        Ok(self)
    }

    /// Merges `--set section.key=value` flags.
    pub fn flags<'a>(mut self, sets: impl IntoIterator<Item = &'a str>) -> Result<Self, ConfigError> {
        for flag in sets {
            let (key, raw) = flag
                .split_once('=')
                .ok_or_else(|| ConfigError::BadFlag(flag.to_owned()))?;
            if key.trim().is_empty() {
                return Err(ConfigError::BadFlag(flag.to_owned()));
            }
            self.set(key.trim(), raw, &format!("--set {flag}"))?;
        }
        Ok(self)
    }

    /// Decodes the merged table; unknown keys and wrong types are errors that
    /// name the offending path.
    pub fn load<T: DeserializeOwned>(self) -> Result<T, ConfigError> {
        let value = Value::Table(self.table);
        serde_path_to_error::deserialize(value).map_err(|err| ConfigError::Invalid {
            path: err.path().to_string(),
            message: err.inner().to_string(),
        })
    }

    fn set(&mut self, key: &str, raw: &str, origin: &str) -> Result<(), ConfigError> {
        let parts: Vec<&str> = key.split('.').collect();
        let (last, sections) = parts.split_last().expect("split yields one part at least");
        let mut table = &mut self.table;
        for (depth, section) in sections.iter().enumerate() {
            let entry = table
                .entry((*section).to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            table = entry.as_table_mut().ok_or_else(|| ConfigError::Conflict {
                origin: origin.to_owned(),
                key: key.to_owned(),
                conflict: parts[..=depth].join("."),
            })?;
        }
        table.insert((*last).to_owned(), parse_scalar(raw));
        Ok(())
    }
}

/// Reads a flag or environment value as TOML when it is one (numbers,
/// booleans, arrays, quoted strings), else as a plain string, so
/// `HUBBUB_GATEWAY__HEARTBEAT_INTERVAL_MS=1000` and `...__ID=gw-1` both work.
fn parse_scalar(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => merge(existing, incoming),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// For optional peer addresses whose default is set (`presence_address`,
/// `group_address`...): an empty string means none, so a deployment
/// without that role can say so in TOML, which has no null.
pub fn empty_is_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        auth: Auth,
        gateway: Gateway,
    }
    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Auth {
        jwt_secret: Option<String>,
    }
    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Gateway {
        id: String,
        heartbeat_interval_ms: u32,
        rooms: Vec<String>,
    }

    #[test]
    fn layers_merge_in_order_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("hubbub-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hubbub.toml");
        std::fs::write(&file, "[gateway]\nid = \"from-file\"\nheartbeat_interval_ms = 1\n").unwrap();
        let env = [
            ("HUBBUB_GATEWAY__HEARTBEAT_INTERVAL_MS", "2000"),
            ("HUBBUB_JWT_SECRET", "s3cret"),
            ("HUBBUB_TEST_RUNNER", "ignored: no double underscore"),
            ("PATH", "/bin"),
        ];
        let cfg: Sample = ConfigLoader::new()
            .alias("HUBBUB_JWT_SECRET", "auth.jwt_secret")
            .file(&file)
            .unwrap()
            .env(env)
            .unwrap()
            .flags(["gateway.id=from-flag", "gateway.rooms=[\"a\", \"b\"]"])
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(cfg.gateway.id, "from-flag");
        assert_eq!(cfg.gateway.heartbeat_interval_ms, 2000);
        assert_eq!(cfg.gateway.rooms, vec!["a", "b"]);
        assert_eq!(cfg.auth.jwt_secret.as_deref(), Some("s3cret"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let err = ConfigLoader::new()
            .flags(["gateway.heartbeat=5"])
            .unwrap()
            .load::<Sample>()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("gateway"), "{text}");
        assert!(text.contains("unknown field `heartbeat`"), "{text}");
        assert!(text.contains("heartbeat_interval_ms"), "lists expected keys: {text}");

        let err = ConfigLoader::new()
            .env([("HUBBUB_GATEWAY__NOPE", "1")])
            .unwrap()
            .load::<Sample>()
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `nope`"), "{err}");
    }

    #[test]
    fn wrong_types_and_bad_flags_are_explained() {
        let err = ConfigLoader::new()
            .flags(["gateway.heartbeat_interval_ms=soon"])
            .unwrap()
            .load::<Sample>()
            .unwrap_err();
        assert!(err.to_string().contains("gateway.heartbeat_interval_ms"), "{err}");
        assert!(matches!(
            ConfigLoader::new().flags(["gateway.id"]),
            Err(ConfigError::BadFlag(_))
        ));
        assert!(matches!(
            ConfigLoader::new().flags(["gateway=1", "gateway.id=x"]),
            Err(ConfigError::Conflict { .. })
        ));
    }
}
