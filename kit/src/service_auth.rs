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
//! A role's credential names the one service it is for (`aud`), and a
//! per-call credential also the one method (`mth`) and lives for a call's
//! length, so whoever receives one (a compromised role, someone on the path)
//! cannot replay it against another service or method. Backend credentials
//! are bound by their scopes instead.
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
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};
use tonic::{Request, Status, metadata::MetadataValue};

/// `typ` of service credentials.
const SERVICE_TYP: &str = "hubbub-svc";
/// Life of a role's own credential; re-minted at half of it.
const ROLE_CREDENTIAL_TTL: Duration = Duration::from_secs(600);
/// Life of a per-call credential naming a user: a call's length, plus the
/// clock skew the leeway absorbs.
const ACTING_CREDENTIAL_TTL: Duration = Duration::from_secs(10);
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
    /// The service the credential is for (`hubbub.v1.Room`); required for
    /// roles, optional for backends (their scopes bind them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The method a per-call credential is for (`/hubbub.v1.Room/Publish`);
    /// required when it acts for a user or guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mth: Option<String>,
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
    /// The service the credential is for.
    pub audience: Option<String>,
    /// The method the credential is for.
    pub method: Option<String>,
}

/// Why a verified credential is not good for this call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misdirected {
    /// Made for another service (or for none).
    #[error("this credential is for {0:?}, not for this service: mint one for the service called")]
    Audience(Option<String>),
    /// A per-call credential made for another method.
    #[error("this per-call credential is for {0:?}, not for this method")]
    Method(Option<String>),
}

impl Caller {
    /// Checks that the credential was made for `path` (`/pkg.Service/Method`):
    /// a role's for its service, a per-call one for its method too.
    pub fn check_bound_to(&self, path: &str) -> Result<(), Misdirected> {
        let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        let audience_ok = match (&self.audience, self.role) {
            (Some(audience), _) => audience == service,
            (None, role) => role == Role::Service,
        };
        if !audience_ok {
            return Err(Misdirected::Audience(self.audience.clone()));
        }
        if self.acting_for.is_some() && self.method.as_deref() != Some(path) {
            return Err(Misdirected::Method(self.method.clone()));
        }
        Ok(())
    }

    /// True when the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What a credential grants.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    /// The calling role.
    pub role: Role,
    /// The calling instance.
    pub instance: &'a str,
    /// Scopes of a backend.
    pub scopes: &'a [String],
    /// The user or guest the call is made for.
    pub acting: Option<&'a Identity>,
    /// The service it is for.
    pub audience: Option<&'a str>,
    /// The method it is for.
    pub method: Option<&'a str>,
    /// Its life.
    pub ttl: Duration,
}

impl Default for Grant<'_> {
    fn default() -> Self {
        Self {
            role: Role::Service,
            instance: "",
            scopes: &[],
            acting: None,
            audience: None,
            method: None,
            ttl: Duration::ZERO,
        }
    }
}

/// The user or guest a call is made for, put in a request's extensions by
/// [`Credentials::act_for`] and turned into a per-call credential by the
/// channel's interceptor, which knows the method.
#[derive(Debug, Clone)]
pub struct ActingFor(pub Identity);

/// The key that signs and verifies service credentials.
#[derive(Clone, Debug)]
pub struct InternalKey(Hs256);

impl InternalKey {
    /// A key from the shared internal secret.
    pub fn new(secret: &[u8]) -> Self {
        Self(Hs256::new(secret, SERVICE_TYP))
    }

    /// Signs a backend credential for `instance` with `scopes`, valid for `ttl`.
    pub fn mint(&self, role: Role, instance: &str, scopes: &[String], ttl: Duration) -> String {
        self.sign(&Grant {
            role,
            instance,
            scopes,
            ttl,
            ..Grant::default()
        })
    }

    /// Signs what `grant` says.
    pub fn sign(&self, grant: &Grant<'_>) -> String {
        let now = unix_now();
        let acting = grant.acting;
        self.0.sign(&ServiceClaims {
            role: grant.role,
            ins: grant.instance.to_owned(),
            scp: grant.scopes.to_vec(),
            usr: acting.and_then(|a| a.user_id()).map(str::to_owned),
            gst: acting.filter(|a| a.is_guest()).map(|a| a.id().to_owned()),
            aud: grant.audience.map(str::to_owned),
            mth: grant.method.map(str::to_owned),
            exp: now.saturating_add(grant.ttl.as_secs()),
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
            audience: claims.aud,
            method: claims.mth,
        })
    }
}

/// A role's own credentials: mints, caches and renews the credential its
/// client channels present to each service, and mints per-call ones naming
/// a user. Cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    key: InternalKey,
    role: Role,
    instance: Arc<str>,
    scopes: Arc<[String]>,
    // Why a lock: every outgoing call reads the cached header of its
    // service; each is replaced a few times an hour. One entry per service
    // this role calls (a handful).
    cached: Arc<RwLock<HashMap<String, (Header, u64)>>>,
}

type Header = MetadataValue<tonic::metadata::Ascii>;

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
        Self {
            key,
            role,
            instance: instance.into(),
            scopes: scopes.into(),
            cached: Arc::default(),
        }
    }

    /// The calling role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The calling instance.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The `authorization` value of this role's own calls to `service`.
    pub fn header_for(&self, service: &str) -> Header {
        let now = unix_now();
        if let Some((value, renew_at)) = self.cached.read().unwrap_or_else(|p| p.into_inner()).get(service)
            && now < *renew_at
        {
            return value.clone();
        }
        let token = self.key.sign(&Grant {
            role: self.role,
            instance: &self.instance,
            scopes: &self.scopes,
            audience: Some(service),
            ttl: ROLE_CREDENTIAL_TTL,
            ..Grant::default()
        });
        let value = bearer_header(&token);
        let renew_at = now + ROLE_CREDENTIAL_TTL.as_secs() / 2;
        self.cached
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.to_owned(), (value.clone(), renew_at));
        value
    }

    /// The `authorization` value of one call to `method` (`/pkg.Service/M`)
    /// made for `identity`.
    pub fn header_acting(&self, method: &str, identity: &Identity) -> Header {
        bearer_header(&self.token_acting(method, identity))
    }

    /// The per-call credential itself (no `Bearer`), for a call carried
    /// inside a batch rather than in its own request's metadata.
    pub fn token_acting(&self, method: &str, identity: &Identity) -> String {
        let service = method.trim_start_matches('/').split('/').next().unwrap_or_default();
        self.key.sign(&Grant {
            role: self.role,
            instance: &self.instance,
            scopes: &self.scopes,
            acting: Some(identity),
            audience: Some(service),
            method: Some(method),
            ttl: ACTING_CREDENTIAL_TTL,
        })
    }

    /// Makes `request` a call for `identity`: the channel's interceptor
    /// signs a credential naming that user or guest for that one method.
    pub fn act_for<T>(&self, request: &mut Request<T>, identity: &Identity) {
        request.extensions_mut().insert(ActingFor(identity.clone()));
    }
}

fn bearer_header(token: &str) -> Header {
    format!("Bearer {token}").parse().expect("a token is ASCII")
}

/// The verified caller of an internal call, put there by the internal auth
/// layer. INTERNAL when absent: a handler was served without the layer.
pub fn caller<T>(request: &Request<T>) -> Result<&Caller, Status> {
    request.extensions().get::<Caller>().ok_or_else(no_caller)
}

/// [`caller`], taken out of the request rather than copied (the handler
/// consumes the request next).
pub fn take_caller<T>(request: &mut Request<T>) -> Result<Caller, Status> {
    request.extensions_mut().remove::<Caller>().ok_or_else(no_caller)
}

fn no_caller() -> Status {
    Status::internal("internal call without a verified caller: the auth layer is missing")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::JwtKey;

    fn verify(key: &InternalKey, header: &Header) -> Caller {
        key.verify(crate::jwt::bearer(header.to_str().unwrap()).unwrap())
            .unwrap()
    }

    #[test]
    fn credentials_name_role_instance_service_and_the_user_acted_for() {
        let key = InternalKey::new(&[7; 32]);
        let credentials = Credentials::new(key.clone(), Role::Gateway, "gw-0");
        let caller = verify(&key, &credentials.header_for("hubbub.v1.Room"));
        assert_eq!((caller.role, caller.instance.as_str()), (Role::Gateway, "gw-0"));
        assert_eq!(caller.acting_for, None);
        assert!(caller.check_bound_to("/hubbub.v1.Room/Attach").is_ok());
        assert!(matches!(
            caller.check_bound_to("/hubbub.v1.Presence/ReportGateway"),
            Err(Misdirected::Audience(_))
        ));

        let alice = Identity::User("alice".into());
        let caller = verify(&key, &credentials.header_acting("/hubbub.v1.Room/Publish", &alice));
        assert_eq!(caller.acting_for, Some(alice));
        assert!(caller.check_bound_to("/hubbub.v1.Room/Publish").is_ok());
        assert!(matches!(
            caller.check_bound_to("/hubbub.v1.Room/GetRecent"),
            Err(Misdirected::Method(_))
        ));
        assert!(
            caller.check_bound_to("/hubbub.v1.Gift/SendGift").is_err(),
            "no replay elsewhere"
        );
    }

    #[test]
    fn role_credentials_need_an_audience_backends_do_not() {
        let key = InternalKey::new(&[7; 32]);
        let unbound = key
            .verify(&key.mint(Role::Gateway, "gw", &[], Duration::from_secs(60)))
            .unwrap();
        assert!(unbound.check_bound_to("/hubbub.v1.Room/Attach").is_err());
        let backend = key
            .verify(&key.mint(Role::Service, "bot", &[], Duration::from_secs(60)))
            .unwrap();
        assert!(backend.check_bound_to("/hubbub.v1.Room/Publish").is_ok());
    }

    #[test]
    fn client_tokens_and_other_keys_are_refused() {
        let key = InternalKey::new(&[7; 32]);
        let client = JwtKey::new(&[7; 32]).mint("alice", Duration::from_secs(60));
        let err = key.verify(&client).unwrap_err();
        assert!(err.to_string().contains("client tokens"), "{err}");
        let foreign = InternalKey::new(&[8; 32]).mint(Role::Gateway, "gw", &[], Duration::from_secs(60));
        assert_eq!(key.verify(&foreign), Err(TokenError::Signature));
        // And the other way round: a credential is no client token.
        let credential = key.mint(Role::Gateway, "gw", &[], Duration::from_secs(60));
        assert!(JwtKey::new(&[7; 32]).verify(&credential).is_err());
    }
}
