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
}
