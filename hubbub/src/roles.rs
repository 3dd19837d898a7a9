//! Starting roles: one, or all of them in this process.

use crate::config::Config;
use anyhow::{Context, anyhow};
use hubbub_kit::{auth::JwtKey, serve::ServeOptions, service_auth::InternalKey};
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

    fn service(self) -> &'static str {
        match self {
            Role::Gateway => "GatewayControl",
            Role::Room => "Room",
            Role::Group => "Group",
            Role::Gift => "Gift",
            Role::Presence => "Presence",
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
/// stops the others. `with_demo`: also the demo page (for `all`), when the
/// configuration keeps it on.
pub async fn run(roles: &[Role], config: Config, shutdown: CancellationToken, with_demo: bool) -> anyhow::Result<()> {
    let with_demo = with_demo && config.demo.serve(config.auth.made_up_secret)?;
    // Unusable certificate files stop the start before any port is bound.
    let tls = config.internal_tls.as_ref().map(|tls| tls.load()).transpose()?;
    let mut bound = Vec::with_capacity(roles.len());
    for role in roles {
        let address = role.listen(&config);
        let listener = bind(address, &format!("{}.listen", role.name())).await?;
        let internal = match role {
            Role::Gateway => {
                println!(
                    "{:<9} listening on {} (public: ClientApi over gRPC and gRPC-web, health, reflection)",
                    role.name(),
                    listener.local_addr()?
                );
                let internal = bind(config.gateway.internal_listen, "gateway.internal_listen").await?;
                println!(
                    "{:<9} listening on {} (internal: GatewayControl, health, reflection, /metrics)",
                    role.name(),
                    internal.local_addr()?
                );
                Some(internal)
            }
            _ => {
                println!(
                    "{:<9} listening on {} (internal: {}, health, reflection, /metrics)",
                    role.name(),
                    listener.local_addr()?,
                    role.service()
                );
                None
            }
        };
        bound.push((*role, listener, internal));
    }
    let demo = match bound.iter().find(|(role, ..)| *role == Role::Gateway) {
        Some((_, gateway, _)) if with_demo => {
            let listener = bind(config.demo.listen, "demo.listen").await?;
            let tls = config.gateway.public_tls.is_some();
            let demo = crate::demo::Demo::new(client_key(&config)?, &config.demo, gateway.local_addr()?, tls);
            println!(
                "{:<9} open http://{}/ in a browser: a live room and a group chat (demo.enabled = false turns it off)",
                "demo",
                listener.local_addr()?
            );
            Some((demo, listener))
        }
        _ => None,
    };

    let key = config.auth.internal_key.as_deref().context("no internal key")?;
    let options = ServeOptions {
        internal_key: InternalKey::new(key.as_bytes()),
        limits: config.listener.clone(),
        tls,
    };
    let mut tasks = JoinSet::new();
    for (role, listener, internal) in bound {
        let future = start(role, &config, &options, listener, internal, shutdown.clone())?;
        let name = role.name();
        tasks.spawn(async move { future.await.with_context(|| format!("{name} role stopped")) });
    }
    if let Some((demo, listener)) = demo {
        let future = demo.serve(listener, shutdown.clone());
        tasks.spawn(async move { future.await.context("the demo page stopped") });
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

/// The client token key with its audience and issuer checks: what the
/// gateway verifies with, and what the demo page mints with.
fn client_key(config: &Config) -> anyhow::Result<JwtKey> {
    let secret = config.auth.jwt_secret.as_deref().context("no client token secret")?;
    Ok(JwtKey::new(secret.as_bytes()).with_checks(config.auth.audience.clone(), config.auth.issuer.clone()))
}

async fn bind(address: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} ({key})"))
}

fn start(
    role: Role,
    config: &Config,
    options: &ServeOptions,
    listener: TcpListener,
    internal: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<RoleFuture> {
    let options = options.clone();
    Ok(match role {
        Role::Gateway => {
            let jwt = client_key(config)?;
            let listeners = svc_gateway::GatewayListeners {
                public: listener,
                internal: internal.ok_or_else(|| anyhow!("the gateway's internal listener is missing"))?,
            };
            let future = svc_gateway::serve(config.gateway.clone(), jwt, options, listeners, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Room => {
            let future = svc_room::serve(config.room.clone(), options, listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Group => {
            let future = svc_group::serve(config.group.clone(), options, listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Gift => {
            let future = svc_gift::serve(config.gift.clone(), options, listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
        Role::Presence => {
            let future = svc_presence::serve(config.presence.clone(), options, listener, shutdown);
            Box::pin(async move { Ok(future.await?) })
        }
    })
}
