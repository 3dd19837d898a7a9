//! `--check-config`: what each role would listen on and call with the
//! configuration it was given, without starting it. Deployment tooling
//! (the Helm chart's tests) runs it on the rendered configuration.

use crate::config::Config;
use crate::roles::Role;
use hubbub_kit::channel::check_address;
use serde_json::{Value, json};

/// One JSON description per role, or the first reason one would not start.
pub fn check(roles: &[Role], config: &Config) -> Result<Vec<Value>, String> {
    config.auth.check(roles.contains(&Role::Gateway))?;
    roles.iter().map(|role| describe(*role, config)).collect()
}

fn describe(role: Role, config: &Config) -> Result<Value, String> {
    let described = match role {
        Role::Gateway => {
            let g = &config.gateway;
            if g.room_instances.is_empty() && g.room_instances_dns.is_none() {
                return Err("gateway: set gateway.room_instances or gateway.room_instances_dns".into());
            }
            json!({
                "role": "gateway",
                // The files are read when the gateway starts (they may live
                // only where it runs, as a mounted Secret).
                "public_tls": g.public_tls.as_ref().map(|tls| json!({
                    "cert_file": tls.cert_file,
                    "key_file": tls.key_file,
                })),
                "listen": { "public": g.listen.to_string(), "internal": g.internal_listen.to_string() },
                "id": g.id,
                "advertise": addresses("gateway.advertise", [&g.advertise])?,
                "calls": {
                    "room": addresses("gateway.room_instances", &g.room_instances)?,
                    "room_dns": g.room_instances_dns,
                    "presence": optional("gateway.presence_address", &g.presence_address)?,
                    "group": optional("gateway.group_address", &g.group_address)?,
                    "gift": optional("gateway.gift_address", &g.gift_address)?,
                    "peers": addresses("gateway.peers", g.peers.values())?,
                    "peer_template": g.peer_address_template,
                },
            })
        }
        Role::Room => {
            let r = &config.room;
            json!({
                "role": "room",
                "listen": { "internal": r.listen.to_string() },
                "advertise": r.advertise,
                "instances": addresses("room.instances", &r.instances)?,
                "instances_dns": r.instances_dns,
                "calls": {},
            })
        }
        Role::Group => {
            let g = &config.group;
            json!({
                "role": "group",
                "listen": { "internal": g.listen.to_string() },
                "store": if g.store.database_url.is_some() { "postgres" } else { "sqlite" },
                "migrate_on_start": g.store.migrate_on_start,
                "calls": {
                    "presence": optional("group.presence_address", &g.presence_address)?,
                    // GatewayControl.Deliver, at the addresses presence reports.
                    "gateways": if g.presence_address.is_some() { "advertised" } else { "none" },
                    "push": g.push.url.is_some(),
                },
            })
        }
        Role::Gift => {
            let g = &config.gift;
            if g.room_instances.is_empty() && g.room_instances_dns.is_none() {
                return Err("gift: set gift.room_instances or gift.room_instances_dns".into());
            }
            json!({
                "role": "gift",
                "listen": { "internal": g.listen.to_string() },
                "store": if g.store.database_url.is_some() { "postgres" } else { "sqlite" },
                "migrate_on_start": g.store.migrate_on_start,
                "calls": {
                    "room": addresses("gift.room_instances", &g.room_instances)?,
                    "room_dns": g.room_instances_dns,
                    "presence": optional("gift.presence_address", &g.presence_address)?,
                    // GatewayControl.Deliver, at the addresses presence reports.
                    "gateways": if g.presence_address.is_some() { "advertised" } else { "none" },
                },
            })
        }
        Role::Presence => json!({
            "role": "presence",
            "listen": { "internal": config.presence.listen.to_string() },
            "store": if config.presence.redis_url.is_some() { "redis" } else { "memory" },
            "calls": {},
        }),
    };
    Ok(described)
}

fn addresses<'a>(key: &str, list: impl IntoIterator<Item = &'a String>) -> Result<Vec<String>, String> {
    list.into_iter()
        .map(|address| {
            check_address(address)
                .map(|()| address.clone())
                .map_err(|err| format!("{key}: {err}"))
        })
        .collect()
}

fn optional(key: &str, address: &Option<String>) -> Result<Option<String>, String> {
    Ok(addresses(key, address)?.pop())
}
