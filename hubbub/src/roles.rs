//! Starting roles: one, or all of them in this process.

use crate::config::Config;
use anyhow::{Context, anyhow};
use hubbub_kit::auth::JwtKey;
use std::{future::Future, net::SocketAddr, pin::Pin};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// A role to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// svc-gateway.
    Gateway,
    /// svc-room.
    Room,
    /// svc-group.
    Group,
    /// svc-gift.
    Gift,
    /// svc-presence.
    Presence,
}

impl Role {
    /// Every role, in the order `all` starts them.
    pub const ALL: [Role; 5] = [Role::Room, Role::Presence, Role::Group, Role::Gift, Role::Gateway];

    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Room => "room",
            Role::Group => "group",
            Role::Gift => "gift",
            Role::Presence => "presence",
        }
    }

    fn listen(self, config: &Config) -> SocketAddr {
        match self {
            Role::Gateway => config.gateway.listen,
            Role::Room => config.room.listen,
            Role::Group => config.group.listen,
            Role::Gift => config.gift.listen,
            Role::Presence => config.presence.listen,
        }
    }
}

type RoleFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Binds every role's port first (so a busy port fails fast, before anything
/// serves), then serves them all until `shutdown`; the first role to fail
/// stops the others.
pub async fn run(roles: &[Role], config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut bound = Vec::with_capacity(roles.len());
    for role in roles {
        let address = role.listen(&config);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} ({}.listen)", role.name()))?;
        println!(
            "{:<9} listening on {} (gRPC, health, reflection, /metrics)",
            role.name(),
            listener.local_addr()?
        );
        bound.push((*role, listener));
    }

    let mut tasks = JoinSet::new();
    for (role, listener) in bound {
        let future = start(role, &config, listener, shutdown.clone())?;
        let name = role.name();
        tasks.spawn(async move { future.await.with_context(|| format!("{name} role stopped")) });
    }
    let mut outcome = Ok(());
    while let Some(done) = tasks.join_next().await {
        let result = done.map_err(|err| anyhow!("a role panicked: {err}")).and_then(|r| r);
        if let Err(err) = result {
            shutdown.cancel();
            if outcome.is_ok() {
                outcome = Err(err);
            }
        }
    }
    outcome
}

fn start(
    role: Role,
    config: &Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<RoleFuture> {
    Ok(match role {
        Role::Gateway => {
            let secret =
                config.auth.jwt_secret.as_deref().ok_or_else(|| {
                    anyhow!("the gateway needs a token secret: set HUBBUB_JWT_SECRET or auth.jwt_secret")
                })?;
            let future = svc_gateway::serve(
                config.gateway.clone(),
                JwtKey::new(secret.as_bytes()),
                listener,
                shutdown,
            );
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Room => {
            let future = svc_room::serve(config.room.clone(), listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Group => {
            let future = svc_group::serve(config.group.clone(), listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Gift => {
            let future = svc_gift::serve(config.gift.clone(), listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Presence => {
            let future = svc_presence::serve(config.presence.clone(), listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
    })
}
