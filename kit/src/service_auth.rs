//! Service credentials: how roles (and the platform's own backends) prove
//! who they are on internal ports.
//!
//! A credential is a short-lived HS256 token signed with the **internal
//! key**, which is not the client key: a client token never passes for a
//! credential, nor the other way round (their `typ` differs as well as their
//! key). It names the calling role and instance (`gateway` / `gateway-0`),
//! the scopes of a backend service, and, for a call made for a user, that
//! user. A gateway mints a fresh per-call credential naming the user it
//! verified, so the user travels signed, never as a bare request field.
//!
//! [`Credentials`] mints and caches a role's credential for the client
//! interceptor; [`verify`](InternalKey::verify) turns one back into a
//! [`Caller`], which the internal auth layer puts into the request's
//! extensions for handlers to read with [`caller`].

use crate::{
    auth::Identity,
    jwt::{Hs256, TimedClaims, TokenError, unix_now},
};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};
use tonic::{Request, Status, metadata::MetadataValue};

/// `typ` of service credentials.
const SERVICE_TYP: &str = "hubbub-svc";
/// Life of a role's own credential; re-minted at half of it.
const ROLE_CREDENTIAL_TTL: Duration = Duration::from_secs(600);
/// Life of a per-call credential naming a user: long enough for the call.
const ACTING_CREDENTIAL_TTL: Duration = Duration::from_secs(120);
/// Shortest internal key accepted.
pub const MIN_INTERNAL_KEY_BYTES: usize = 32;

/// The kinds of callers on internal ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A gateway replica.
    Gateway,
    /// A room instance.
    Room,
    /// The group service.
    Group,
    /// The gift service.
    Gift,
    /// The presence service.
    Presence,
    /// One of the platform's own backends, limited to its scopes.
    Service,
}

impl Role {
    /// The role's name, as in credentials and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Room => "room",
            Role::Group => "group",
            Role::Gift => "gift",
            Role::Presence => "presence",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a credential says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceClaims {
    /// The calling role.
    pub role: Role,
    /// The calling instance (a gateway id, a backend's name).
    pub ins: String,
    /// Scopes of a backend service (see [`crate::policy::SCOPES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scp: Vec<String>,
    /// The user a call is made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usr: Option<String>,
    /// The guest a call is made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gst: Option<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    #[serde(default)]
    pub iat: u64,
}

impl TimedClaims for ServiceClaims {
    fn exp(&self) -> u64 {
        self.exp
    }
}

/// A verified caller of an internal port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its role.
    pub role: Role,
    /// Its instance.
    pub instance: String,
    /// Its scopes (backend services).
    pub scopes: Vec<String>,
    /// The user or guest the call is made for, signed with the credential.
    pub acting_for: Option<Identity>,
}

impl Caller {
    /// True when the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The key that signs and verifies service credentials.
#[derive(Clone, Debug)]
pub struct InternalKey(Hs256);

impl InternalKey {
    /// A key from the shared internal secret.
    pub fn new(secret: &[u8]) -> Self {
        Self(Hs256::new(secret, SERVICE_TYP))
    }

    /// Signs a credential for `role`/`instance` with `scopes`, valid for `ttl`.
    pub fn mint(&self, role: Role, instance: &str, scopes: &[String], ttl: Duration) -> String {
        self.sign(role, instance, scopes, None, ttl)
    }

    /// Signs a credential acting for `acting` (None: for itself).
    pub fn sign(
        &self,
        role: Role,
        instance: &str,
        scopes: &[String],
        acting: Option<&Identity>,
        ttl: Duration,
    ) -> String {
        let now = unix_now();
        self.0.sign(&ServiceClaims {
            role,
            ins: instance.to_owned(),
            scp: scopes.to_vec(),
            usr: acting.and_then(|a| a.user_id()).map(str::to_owned),
            gst: acting.filter(|a| a.is_guest()).map(|a| a.id().to_owned()),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
        })
    }

    /// Verifies a credential.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let claims: ServiceClaims = self.0.verify(
            token,
            "this is not a service credential: internal ports do not accept client tokens",
        )?;
        if claims.ins.is_empty() || claims.ins.len() > crate::ids::MAX_ID_BYTES {
            return Err(TokenError::Claim(
                "credential instance (`ins`) must be 1 to 128 bytes".into(),
            ));
        }
        let acting_for = match (claims.usr, claims.gst) {
            (Some(_), Some(_)) => {
                return Err(TokenError::Claim(
                    "a credential acts for a user or a guest, not both".into(),
                ));
            }
            (Some(user), None) => Some(Identity::User(user)),
            (None, Some(guest)) => Some(Identity::Guest(guest)),
            (None, None) => None,
        };
        Ok(Caller {
            role: claims.role,
            instance: claims.ins,
            scopes: claims.scp,
            acting_for,
        })
    }
}

/// A role's own credentials: mints, caches and renews the token its client
/// channels present, and mints per-call tokens naming a user. Cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    key: InternalKey,
    role: Role,
    instance: Arc<str>,
    scopes: Arc<[String]>,
    // Why a lock: every outgoing call reads the cached header; it is
    // replaced a few times an hour.
    cached: Arc<RwLock<(MetadataValue<tonic::metadata::Ascii>, u64)>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}/{})", self.role, self.instance)
    }
}

impl Credentials {
    /// Credentials of `role` instance `instance`.
    pub fn new(key: InternalKey, role: Role, instance: &str) -> Self {
        Self::with_scopes(key, role, instance, Vec::new())
    }

    /// Credentials with scopes (backend services).
    pub fn with_scopes(key: InternalKey, role: Role, instance: &str, scopes: Vec<String>) -> Self {
        let this = Self {
            key,
            role,
            instance: instance.into(),
            scopes: scopes.into(),
            cached: Arc::new(RwLock::new((MetadataValue::from_static(""), 0))),
        };
        this.renew();
        this
    }

    /// The calling role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The calling instance.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The `authorization` value of this role's own calls.
    pub fn header(&self) -> MetadataValue<tonic::metadata::Ascii> {
        let (value, renew_at) = self.cached.read().unwrap_or_else(|p| p.into_inner()).clone();
        if unix_now() < renew_at {
            return value;
        }
        self.renew()
    }

    fn renew(&self) -> MetadataValue<tonic::metadata::Ascii> {
        let token = self
            .key
            .mint(self.role, &self.instance, &self.scopes, ROLE_CREDENTIAL_TTL);
        let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("a token is ASCII");
        let renew_at = unix_now() + ROLE_CREDENTIAL_TTL.as_secs() / 2;
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = (value.clone(), renew_at);
        value
    }

    /// Makes `request` a call for `identity`: it carries a per-call
    /// credential naming that user or guest, signed with this role's.
    pub fn act_for<T>(&self, request: &mut Request<T>, identity: &Identity) {
        let token = self.key.sign(
            self.role,
            &self.instance,
            &self.scopes,
            Some(identity),
            ACTING_CREDENTIAL_TTL,
        );
        let value = format!("Bearer {token}").parse().expect("a token is ASCII");
        request.metadata_mut().insert("authorization", value);
    }
}

/// The verified caller of an internal call, put there by the internal auth
/// layer. INTERNAL when absent: a handler was served without the layer.
pub fn caller<T>(request: &Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::internal("internal call without a verified caller: the auth layer is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::JwtKey;

    #[test]
    fn credentials_name_role_instance_and_the_user_acted_for() {
        let key = InternalKey::new(&[7; 32]);
        let credentials = Credentials::new(key.clone(), Role::Gateway, "gw-0");
        let header = credentials.header();
        let token = crate::jwt::bearer(header.to_str().unwrap()).unwrap().to_owned();
        let caller = key.verify(&token).unwrap();
        assert_eq!((caller.role, caller.instance.as_str()), (Role::Gateway, "gw-0"));
        assert_eq!(caller.acting_for, None);

        let mut request = Request::new(());
        credentials.act_for(&mut request, &Identity::User("alice".into()));
        let value = request.metadata().get("authorization").unwrap().to_str().unwrap();
        let caller = key.verify(crate::jwt::bearer(value).unwrap()).unwrap();
        assert_eq!(caller.acting_for, Some(Identity::User("alice".into())));
    }

    #[test]
    fn client_tokens_and_other_keys_are_refused() {
        let key = InternalKey::new(&[7; 32]);
        let client = JwtKey::new(&[7; 32]).mint("alice", Duration::from_secs(60));
        let err = key.verify(&client).unwrap_err();
        assert!(err.to_string().contains("client tokens"), "{err}");
        let foreign = InternalKey::new(&[8; 32]).mint(Role::Gateway, "gw", &[], Duration::from_secs(60));
        assert_eq!(key.verify(&foreign), Err(TokenError::Signature));
        let expired = key.sign(Role::Gateway, "gw", &[], None, Duration::ZERO);
        assert!(key.verify(&expired).is_ok(), "within the leeway");
        // And the other way round: a credential is no client token.
        let credential = key.mint(Role::Gateway, "gw", &[], Duration::from_secs(60));
        assert!(JwtKey::new(&[7; 32]).verify(&credential).is_err());
    }
}
