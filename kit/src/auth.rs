//! Identity from `authorization: Bearer <JWT>` metadata.
//!
//! hubbub signs and verifies HS256 tokens only, so a small hand-written
//! verifier over `hmac` + `sha2` replaces a general JWT crate whose other
//! algorithms we would never use. The token's `sub` claim is the user id;
//! `exp` is required.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::{Status, metadata::MetadataMap};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// Longest accepted user id, in bytes.
const MAX_USER_ID_BYTES: usize = 128;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A verified user.
    User(String),
    /// No token: may watch, never send.
    Guest,
}

impl Identity {
    /// The user id, or `None` for a guest.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Identity::User(id) => Some(id),
            Identity::Guest => None,
        }
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

/// Claims hubbub puts in and reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Not before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Why a token was refused; shown to the caller, so each says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("token is not a well-formed JWT (expected header.payload.signature in base64url)")]
    Malformed,
    /// Header names another algorithm.
    #[error("token algorithm {0:?} is not accepted; hubbub tokens are HS256")]
    Algorithm(String),
    /// Signature does not match the key.
    #[error("token signature does not match: it was signed with another key")]
    Signature,
    /// Past `exp`.
    #[error("token expired at {0} (unix seconds): mint a new one")]
    Expired(u64),
    /// Before `nbf`.
    #[error("token is not valid before {0} (unix seconds)")]
    NotYetValid(u64),
    /// Missing, empty or over-long `sub`.
    #[error("token subject (`sub`) must be a user id of 1 to 128 bytes")]
    Subject,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// An HS256 key that signs and verifies tokens.
#[derive(Clone)]
pub struct JwtKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(..)")
    }
}

impl JwtKey {
    /// A key from a shared secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"),
        }
    }

    /// Signs a token for `user_id` valid for `ttl`.
    pub fn mint(&self, user_id: &str, ttl: Duration) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: user_id.to_owned(),
            exp: now + ttl.as_secs(),
            iat: now,
            nbf: None,
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.sign(signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    /// Verifies a token's signature and times and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_json(header)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm(header.alg));
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(&token.as_bytes()[..header_payload_len(token)]);
        // verify_slice compares in constant time.
        mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;

        let claims: Claims = decode_json(payload)?;
        let now = unix_now();
        if claims.exp + LEEWAY_SECS < now {
            return Err(TokenError::Expired(claims.exp));
        }
        if let Some(nbf) = claims.nbf.filter(|nbf| *nbf > now + LEEWAY_SECS) {
            return Err(TokenError::NotYetValid(nbf));
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_USER_ID_BYTES {
            return Err(TokenError::Subject);
        }
        Ok(claims)
    }

    /// The caller's identity from request metadata: a guest without an
    /// `authorization` header, UNAUTHENTICATED for a header that does not
    /// hold a valid token (a bad token never falls back to guest).
    pub fn identify(&self, metadata: &MetadataMap) -> Result<Identity, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Ok(Identity::Guest);
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not ASCII"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization metadata must be `Bearer <token>`"))?;
        let claims = self
            .verify(token.trim())
            .map_err(|err| Status::unauthenticated(err.to_string()))?;
        Ok(Identity::User(claims.sub))
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}

fn header_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let (head, _) = token.rsplit_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","exp":99999999999}"#);
        let forged = format!(
            "{}.{}.{}",
            head.split('.').next().unwrap(),
            forged_payload,
            token.rsplit('.').next().unwrap()
        );
        assert_eq!(key().verify(&forged), Err(TokenError::Signature));

        assert_eq!(key().verify("not-a-token"), Err(TokenError::Malformed));

        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":99999999999}"#)
        );
        assert_eq!(key().verify(&none_alg), Err(TokenError::Algorithm("none".into())));

        let expired = key().mint("alice", Duration::ZERO);
        let mut claims: Claims = decode_json(expired.split('.').nth(1).unwrap()).unwrap();
        claims.exp -= 3600;
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let header = expired.split('.').next().unwrap();
        let input = format!("{header}.{payload}");
        let signed = format!("{input}.{}", URL_SAFE_NO_PAD.encode(key().sign(input.as_bytes())));
        assert!(matches!(key().verify(&signed), Err(TokenError::Expired(_))));
    }

    #[test]
    fn metadata_without_token_is_a_guest_and_bad_tokens_are_unauthenticated() {
        let mut md = MetadataMap::new();
        assert_eq!(key().identify(&md).unwrap(), Identity::Guest);
        md.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(key().identify(&md).unwrap_err().code(), tonic::Code::Unauthenticated);
        let token = key().mint("bob", Duration::from_secs(60));
        md.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert_eq!(key().identify(&md).unwrap(), Identity::User("bob".into()));
    }
}
