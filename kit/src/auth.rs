//! Client identity from `authorization: Bearer <JWT>` metadata on the public
//! port.
//!
//! The token's `sub` claim is the user id; `exp` is required; `aud` and `iss`
//! are checked when configured. A device that connects without a token is a
//! guest: the gateway gives it a guest token of its own in `Welcome`, so each
//! guest connection has its own identity and no guest can act on another's
//! session.

use crate::jwt::{Hs256, TimedClaims, TokenError, bearer, unix_now};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tonic::{Status, metadata::MetadataMap};

/// Longest accepted user id, in bytes.
const MAX_USER_ID_BYTES: usize = 128;
/// `typ` of client tokens.
const CLIENT_TYP: &str = "JWT";
/// Prefix of guest ids, which never collide with users: identities compare
/// by kind as well as id.
const GUEST_PREFIX: &str = "guest:";

/// Prefix of the sender names of backend services (`service:moderation`):
/// no user may take one.
pub const SERVICE_PREFIX: &str = "service:";

/// Characters a user id must not hold: they would let one id pass for
/// another on a viewer's screen or break a log line.
fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A verified user.
    User(String),
    /// A guest connection, by its own id: may watch, never send.
    Guest(String),
}

impl Identity {
    /// The user id, or `None` for a guest.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Identity::User(id) => Some(id),
            Identity::Guest(_) => None,
        }
    }

    /// The id, user or guest.
    pub fn id(&self) -> &str {
        match self {
            Identity::User(id) | Identity::Guest(id) => id,
        }
    }

    /// True for a guest.
    pub fn is_guest(&self) -> bool {
        matches!(self, Identity::Guest(_))
    }

    /// The user id, or UNAUTHENTICATED for a guest trying to `action`.
    pub fn require_user(&self, action: &str) -> Result<&str, Status> {
        self.user_id().ok_or_else(|| {
            Status::unauthenticated(format!(
                "{action} needs a signed-in user: send `authorization: Bearer <token>` metadata"
            ))
        })
    }
}

/// A verified caller and when its credential runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who.
    pub identity: Identity,
    /// The token's `exp`, unix seconds.
    pub expires_at: u64,
}

/// Claims hubbub puts in and reads from a client token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id (a guest id for guest tokens).
    pub sub: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Not before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Audience; checked when the key is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer; checked when the key is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// True for a guest token minted by a gateway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gst: bool,
}

impl TimedClaims for Claims {
    fn exp(&self) -> u64 {
        self.exp
    }
    fn nbf(&self) -> Option<u64> {
        self.nbf
    }
}

/// The HS256 key that signs and verifies client tokens, with the optional
/// audience and issuer they must name.
#[derive(Clone, Debug)]
pub struct JwtKey {
    key: Hs256,
    audience: Option<String>,
    issuer: Option<String>,
}

impl JwtKey {
    /// A key from a shared secret, checking neither audience nor issuer.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: Hs256::new(secret, CLIENT_TYP),
            audience: None,
            issuer: None,
        }
    }

    /// Requires tokens to name `audience` (`aud`) and `issuer` (`iss`) when set;
    /// tokens minted here name them too.
    pub fn with_checks(mut self, audience: Option<String>, issuer: Option<String>) -> Self {
        self.audience = audience;
        self.issuer = issuer;
        self
    }

    /// Signs a token for `user_id` valid for `ttl`.
    pub fn mint(&self, user_id: &str, ttl: Duration) -> String {
        self.mint_claims(user_id, ttl, false)
    }

    /// A fresh guest identity and its token, valid for `ttl`.
    pub fn mint_guest(&self, ttl: Duration) -> (Identity, String) {
        let id = format!("{GUEST_PREFIX}{:032x}", rand::random::<u128>());
        let token = self.mint_claims(&id, ttl, true);
        (Identity::Guest(id), token)
    }

    fn mint_claims(&self, sub: &str, ttl: Duration, guest: bool) -> String {
        let now = unix_now();
        self.key.sign(&Claims {
            sub: sub.to_owned(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            nbf: None,
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
            gst: guest,
        })
    }

    /// Verifies a token's signature, times, audience and issuer and returns
    /// its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims: Claims = self.key.verify(
            token,
            "this is not a client token (service credentials are for internal ports only)",
        )?;
        if claims.sub.is_empty() || claims.sub.len() > MAX_USER_ID_BYTES {
            return Err(TokenError::Claim(
                "token subject (`sub`) must be a user id of 1 to 128 bytes".into(),
            ));
        }
        if claims.gst != claims.sub.starts_with(GUEST_PREFIX) {
            return Err(TokenError::Claim("token subject does not match its guest flag".into()));
        }
        if claims.sub.starts_with(SERVICE_PREFIX) {
            return Err(TokenError::Claim(format!(
                "token subject may not start with {SERVICE_PREFIX:?}: that names backend services"
            )));
        }
        if claims.sub.chars().any(is_deceptive) {
            return Err(TokenError::Claim(
                "token subject contains control or text-direction characters".into(),
            ));
        }
        if let Some(audience) = &self.audience
            && claims.aud.as_ref() != Some(audience)
        {
            return Err(TokenError::Claim(format!(
                "token audience (`aud`) must be {audience:?}"
            )));
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_ref() != Some(issuer)
        {
            return Err(TokenError::Claim(format!("token issuer (`iss`) must be {issuer:?}")));
        }
        Ok(claims)
    }

    /// The caller from request metadata: `None` without an `authorization`
    /// header, UNAUTHENTICATED for a header that does not hold a valid token
    /// (a bad token never falls back to guest).
    pub fn identify(&self, metadata: &MetadataMap) -> Result<Option<Verified>, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Ok(None);
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not ASCII"))?;
        let token =
            bearer(value).ok_or_else(|| Status::unauthenticated("authorization metadata must be `Bearer <token>`"))?;
        let claims = self
            .verify(token)
            .map_err(|err| Status::unauthenticated(err.to_string()))?;
        let identity = if claims.gst {
            Identity::Guest(claims.sub)
        } else {
            Identity::User(claims.sub)
        };
        Ok(Some(Verified {
            identity,
            expires_at: claims.exp,
        }))
    }

    /// Like [`JwtKey::identify`], but a call without a token is refused:
    /// every call but `Connect` needs a user token or the guest token of the
    /// caller's `Welcome`.
    pub fn require(&self, metadata: &MetadataMap) -> Result<Verified, Status> {
        self.identify(metadata)?.ok_or_else(|| {
            Status::unauthenticated(
                "send `authorization: Bearer <token>`: a user token, or for a guest the guest_token of Welcome",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    fn key() -> JwtKey {
        JwtKey::new(b"test-secret")
    }

    #[test]
    fn a_minted_token_verifies_to_its_user() {
        let token = key().mint("alice", Duration::from_secs(60));
        assert_eq!(key().verify(&token).unwrap().sub, "alice");
    }

    #[test]
    fn tampering_other_keys_and_expiry_are_refused() {
        let token = key().mint("alice", Duration::from_secs(60));
        assert_eq!(JwtKey::new(b"other").verify(&token), Err(TokenError::Signature));

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","exp":99999999999}"#);
        parts[1] = &forged_payload;
        assert_eq!(key().verify(&parts.join(".")), Err(TokenError::Signature));
        assert_eq!(key().verify("not-a-token"), Err(TokenError::Malformed));

        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":99999999999}"#)
        );
        assert_eq!(key().verify(&none_alg), Err(TokenError::Algorithm("none".into())));

        let expired = Hs256::new(b"test-secret", CLIENT_TYP).sign(&Claims {
            sub: "alice".into(),
            exp: unix_now() - 3600,
            iat: 0,
            nbf: None,
            aud: None,
            iss: None,
            gst: false,
        });
        assert!(matches!(key().verify(&expired), Err(TokenError::Expired(_))));
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let strict = key().with_checks(Some("app".into()), Some("login".into()));
        let plain = key().mint("alice", Duration::from_secs(60));
        assert!(matches!(strict.verify(&plain), Err(TokenError::Claim(_))));
        let good = strict.mint("alice", Duration::from_secs(60));
        assert_eq!(strict.verify(&good).unwrap().aud.as_deref(), Some("app"));
        let other = key()
            .with_checks(Some("app".into()), Some("elsewhere".into()))
            .mint("alice", Duration::from_secs(60));
        assert!(strict.verify(&other).unwrap_err().to_string().contains("issuer"));
    }

    #[test]
    fn guests_get_identities_of_their_own() {
        let (a, token_a) = key().mint_guest(Duration::from_secs(60));
        let (b, _) = key().mint_guest(Duration::from_secs(60));
        assert_ne!(a, b);
        assert!(a.is_guest() && a.user_id().is_none());
        let mut md = MetadataMap::new();
        md.insert("authorization", format!("Bearer {token_a}").parse().unwrap());
        assert_eq!(key().identify(&md).unwrap().unwrap().identity, a);
        // A user token whose subject looks like a guest id or a backend
        // service, or that hides control or direction characters, is refused.
        for sub in ["guest:0123", "service:moderation", "ali\u{202e}ce", "a\nb"] {
            let fake = key().mint(sub, Duration::from_secs(60));
            assert!(matches!(key().verify(&fake), Err(TokenError::Claim(_))), "{sub:?}");
        }
    }

    #[test]
    fn metadata_without_token_is_none_and_bad_tokens_are_unauthenticated() {
        let mut md = MetadataMap::new();
        assert_eq!(key().identify(&md).unwrap(), None);
        assert_eq!(key().require(&md).unwrap_err().code(), tonic::Code::Unauthenticated);
        md.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(key().identify(&md).unwrap_err().code(), tonic::Code::Unauthenticated);
        let token = key().mint("bob", Duration::from_secs(60));
        md.insert("authorization", format!("Bearer  {token}").parse().unwrap());
        assert_eq!(key().identify(&md).unwrap_err().code(), tonic::Code::Unauthenticated);
        md.insert("authorization", format!("bearer {token}").parse().unwrap());
        assert_eq!(
            key().identify(&md).unwrap().unwrap().identity,
            Identity::User("bob".into())
        );
    }
}
