//! `hubbub token`: mints a client token with the configured secret.

use anyhow::{Context, bail};
use hubbub_kit::auth::JwtKey;
use std::time::Duration;

/// Parses "90s", "30m", "24h", "7d" or plain seconds.
pub fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .with_context(|| format!("ttl {text:?} must be a number with an optional unit s, m, h or d"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        other => bail!("ttl unit {other:?} is not one of s, m, h, d"),
    };
    Ok(Duration::from_secs(seconds))
}

/// A service credential for the backend `service` with `scopes`, valid for
/// `ttl`, signed with the internal key.
pub fn mint_service(internal_key: Option<&str>, service: &str, scopes: &[String], ttl: &str) -> anyhow::Result<String> {
    let Some(key) = internal_key else {
        bail!("no internal key: set HUBBUB_INTERNAL_KEY (or auth.internal_key) to the key the roles use");
    };
    hubbub_kit::ids::validate("--service", service).map_err(|status| anyhow::anyhow!(status.message().to_owned()))?;
    if scopes.is_empty() {
        bail!(
            "give the credential at least one --scope; known scopes: {}",
            known_scopes()
        );
    }
    for scope in scopes {
        if !hubbub_kit::policy::SCOPES.iter().any(|(name, _)| name == scope) {
            bail!("unknown scope {scope:?}; known scopes: {}", known_scopes());
        }
    }
    let key = hubbub_kit::service_auth::InternalKey::new(key.as_bytes());
    Ok(key.mint(
        hubbub_kit::service_auth::Role::Service,
        service,
        scopes,
        parse_ttl(ttl)?,
    ))
}

/// The credential of role `role` instance `instance` for `call`
/// (`/pkg.Service/Method`), acting for `user` when given, valid for `ttl`.
/// Without a user it is good for every method of that service.
pub fn mint_role(
    internal_key: Option<&str>,
    role: &str,
    instance: &str,
    call: &str,
    user: Option<&str>,
    ttl: &str,
) -> anyhow::Result<String> {
    use hubbub_kit::{
        auth::Identity,
        service_auth::{Grant, InternalKey, Role},
    };
    let Some(key) = internal_key else {
        bail!("no internal key: set HUBBUB_INTERNAL_KEY (or auth.internal_key) to the key the roles use");
    };
    let role = match role {
        "gateway" => Role::Gateway,
        "room" => Role::Room,
        "group" => Role::Group,
        "gift" => Role::Gift,
        "presence" => Role::Presence,
        other => bail!("unknown role {other:?}: gateway, room, group, gift or presence"),
    };
    hubbub_kit::ids::validate("--service", instance).map_err(|status| anyhow::anyhow!(status.message().to_owned()))?;
    let Some((service, method)) = call.strip_prefix('/').and_then(|c| c.split_once('/')) else {
        bail!("--call {call:?} must name a method: /hubbub.v1.Room/Publish");
    };
    if service.is_empty() || method.is_empty() {
        bail!("--call {call:?} must name a method: /hubbub.v1.Room/Publish");
    }
    let acting = user.map(|user| Identity::User(user.to_owned()));
    Ok(InternalKey::new(key.as_bytes()).sign(&Grant {
        role,
        instance,
        acting: acting.as_ref(),
        audience: Some(service),
        method: acting.as_ref().map(|_| call),
        ttl: parse_ttl(ttl)?,
        ..Grant::default()
    }))
}

fn known_scopes() -> String {
    hubbub_kit::policy::SCOPES
        .iter()
        .map(|(name, what)| format!("{name} ({what})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a token for `user` valid for `ttl`.
pub fn mint(secret: Option<&str>, user: &str, ttl: &str) -> anyhow::Result<String> {
    let Some(secret) = secret else {
        bail!("no signing secret: set HUBBUB_JWT_SECRET (or auth.jwt_secret) to the secret the gateway uses");
    };
    hubbub_kit::ids::validate("--user", user).map_err(|status| anyhow::anyhow!(status.message().to_owned()))?;
    Ok(JwtKey::new(secret.as_bytes()).mint(user, parse_ttl(ttl)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("5y").is_err());
    }

    #[test]
    fn minting_needs_a_secret_and_a_valid_user() {
        assert!(mint(None, "alice", "1h").is_err());
        assert!(mint(Some("s"), "bad user", "1h").is_err());
        let token = mint(Some("s"), "alice", "1h").unwrap();
        assert_eq!(JwtKey::new(b"s").verify(&token).unwrap().sub, "alice");
    }

    #[test]
    fn service_credentials_carry_known_scopes_only() {
        let key = "k".repeat(32);
        assert!(mint_service(None, "bot", &["room.publish".into()], "1h").is_err());
        assert!(mint_service(Some(&key), "bot", &[], "1h").is_err());
        let err = mint_service(Some(&key), "bot", &["root".into()], "1h").unwrap_err();
        assert!(err.to_string().contains("room.publish"), "{err}");
        let token = mint_service(Some(&key), "bot", &["room.publish".into()], "1h").unwrap();
        let caller = hubbub_kit::service_auth::InternalKey::new(key.as_bytes())
            .verify(&token)
            .unwrap();
        assert_eq!(
            (caller.instance.as_str(), caller.scopes.as_slice()),
            ("bot", &["room.publish".to_owned()][..])
        );
    }
}
