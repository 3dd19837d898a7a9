//! HS256 JSON Web Tokens, signed and verified by one small piece of code.
//!
//! hubbub signs and verifies HS256 only, so this hand-written core over
//! `hmac` + `sha2` replaces a general JWT crate whose other algorithms we
//! would never use. Client tokens ([`crate::auth`]) and service credentials
//! ([`crate::service_auth`]) are both built on it, with different keys and a
//! different `typ` in the header, so one can never pass for the other.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// Longest token accepted, in bytes: a bound on work done for garbage.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Why a token was refused; shown to the caller, so each says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("token is not a well-formed JWT (expected header.payload.signature in base64url)")]
    Malformed,
    /// Header names another algorithm.
    #[error("token algorithm {0:?} is not accepted; hubbub tokens are HS256")]
    Algorithm(String),
    /// Header names another kind of token.
    #[error("{0}")]
    Kind(String),
    /// Signature does not match the key.
    #[error("token signature does not match: it was signed with another key")]
    Signature,
    /// Past `exp`.
    #[error("token expired at {0} (unix seconds): mint a new one")]
    Expired(u64),
    /// Before `nbf`.
    #[error("token is not valid before {0} (unix seconds)")]
    NotYetValid(u64),
    /// A claim has a value this key does not accept (subject, audience, issuer).
    #[error("{0}")]
    Claim(String),
}

/// Claims every token carries.
pub trait TimedClaims {
    /// Expiry, unix seconds.
    fn exp(&self) -> u64;
    /// Not before, unix seconds.
    fn nbf(&self) -> Option<u64> {
        None
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: String,
}

/// An HS256 key for one kind of token (`typ`).
#[derive(Clone)]
pub struct Hs256 {
    mac: Hmac<Sha256>,
    typ: &'static str,
}

impl std::fmt::Debug for Hs256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hs256({}, ..)", self.typ)
    }
}

impl Hs256 {
    /// A key from a shared secret, for tokens of kind `typ`.
    pub fn new(secret: &[u8], typ: &'static str) -> Self {
        Self {
            mac: Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"),
            typ,
        }
    }

    /// Signs `claims`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> String {
        let header = Header {
            alg: "HS256".into(),
            typ: self.typ.into(),
        };
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serialises"));
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Verifies a token's form, kind, signature and times, and returns its
    /// claims. `wrong_kind` is the message for a token of another `typ`.
    pub fn verify<C: DeserializeOwned + TimedClaims>(&self, token: &str, wrong_kind: &str) -> Result<C, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
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
        // Checked before the signature so the message can say what was sent
        // where; the signature check below still guards everything.
        if header.typ != self.typ {
            return Err(TokenError::Kind(wrong_kind.to_owned()));
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(&token.as_bytes()[..token.rfind('.').unwrap_or(token.len())]);
        // verify_slice compares in constant time.
        mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;

        let claims: C = decode_json(payload)?;
        let now = unix_now();
        if claims.exp().saturating_add(LEEWAY_SECS) < now {
            return Err(TokenError::Expired(claims.exp()));
        }
        if let Some(nbf) = claims.nbf().filter(|nbf| *nbf > now.saturating_add(LEEWAY_SECS)) {
            return Err(TokenError::NotYetValid(nbf));
        }
        Ok(claims)
    }
}

/// The token of an `authorization: Bearer <token>` value: the scheme is
/// matched without regard to case (RFC 9110), followed by exactly one space
/// and a token with no whitespace in it.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") || token.is_empty() {
        return None;
    }
    if token.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return None;
    }
    Some(token)
}

fn decode_json<T: DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct C {
        exp: u64,
    }
    impl TimedClaims for C {
        fn exp(&self) -> u64 {
            self.exp
        }
    }

    #[test]
    fn kinds_keys_and_times_are_checked() {
        let key = Hs256::new(b"k", "a");
        let token = key.sign(&C { exp: u64::MAX });
        assert_eq!(
            key.verify::<C>(&token, "x").unwrap().exp,
            u64::MAX,
            "no overflow at the top"
        );
        assert_eq!(
            Hs256::new(b"k", "b").verify::<C>(&token, "wrong kind"),
            Err(TokenError::Kind("wrong kind".into()))
        );
        assert_eq!(
            Hs256::new(b"other", "a").verify::<C>(&token, "x"),
            Err(TokenError::Signature)
        );
        let old = key.sign(&C { exp: 1 });
        assert_eq!(key.verify::<C>(&old, "x"), Err(TokenError::Expired(1)));
        assert_eq!(key.verify::<C>(&"a".repeat(5000), "x"), Err(TokenError::Malformed));
    }

    #[test]
    fn bearer_is_parsed_strictly() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bEaReR abc"), Some("abc"));
        assert_eq!(bearer("Bearer  abc"), None, "two spaces");
        assert_eq!(bearer("Bearer abc def"), None);
        assert_eq!(bearer("Bearerabc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bear"), None);
    }
}
