//! `Peers`: the other gateway replicas, for forwarding a session call to
//! the replica holding its stream. Fixed ones come from `gateway.peers`
//! (id -> address); with `gateway.peer_address_template` any other replica
//! is reached by its id (`http://{id}.hubbub-gateway-peers:7705`: gateways
//! as a Deployment, pods named by their ids behind a headless Service).
//!
//! A session id comes from the client, so the id in it is untrusted: only a
//! DNS label (a-z, 0-9, `-`, at most 63) is put into the template, so it
//! names a host inside the template's domain and nothing else, and at most
//! `MAX_DIALLED` such channels are kept.

use hubbub_kit::channel::{AddressError, Dialer, TracedChannel};
use hubbub_proto::v1::gateway_control_client::GatewayControlClient;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A replica's client.
pub type PeerClient = GatewayControlClient<TracedChannel>;

/// Channels to replicas found through the template, at most.
const MAX_DIALLED: usize = 1024;

/// The other replicas.
#[derive(Debug)]
pub struct Peers {
    fixed: HashMap<String, PeerClient>,
    template: Option<(String, Dialer)>,
    dialled: Mutex<HashMap<String, PeerClient>>,
}

impl Peers {
    /// The fixed peers dialled now (lazily connected); the template kept
    /// for the others.
    pub fn new(
        fixed: &BTreeMap<String, String>,
        template: Option<&str>,
        dialer: &Dialer,
    ) -> Result<Self, AddressError> {
        let fixed = fixed
            .iter()
            .map(|(id, address)| Ok((id.clone(), GatewayControlClient::new(dialer.dial(address)?))))
            .collect::<Result<_, AddressError>>()?;
        if let Some(template) = template {
            // The template must make a valid address for a valid id.
            hubbub_kit::channel::check_address(&template.replace("{id}", "gateway-0"))?;
        }
        Ok(Self {
            fixed,
            template: template.map(|t| (t.to_owned(), dialer.clone())),
            dialled: Mutex::new(HashMap::new()),
        })
    }

    /// The replica `id`, if it is known or reachable by the template.
    pub fn get(&self, id: &str) -> Option<PeerClient> {
        if let Some(peer) = self.fixed.get(id) {
            return Some(peer.clone());
        }
        let (template, dialer) = self.template.as_ref()?;
        if !is_dns_label(id) {
            return None;
        }
        let mut dialled = self.dialled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(peer) = dialled.get(id) {
            return Some(peer.clone());
        }
        let peer = GatewayControlClient::new(dialer.dial(&template.replace("{id}", id)).ok()?);
        if dialled.len() >= MAX_DIALLED
            && let Some(any) = dialled.keys().next().cloned()
        {
            // Replicas come and go; one old entry makes room, never all.
            dialled.remove(&any);
        }
        dialled.insert(id.to_owned(), peer.clone());
        Some(peer)
    }
}

fn is_dns_label(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_kit::service_auth::{Credentials, InternalKey, Role};

    fn dialer() -> Dialer {
        Dialer::new(
            Credentials::new(InternalKey::new(&[1; 32]), Role::Gateway, "gateway-0"),
            None,
        )
    }

    #[tokio::test]
    async fn only_dns_labels_are_put_into_the_template() {
        let fixed = BTreeMap::from([("edge-1".to_owned(), "http://10.0.0.9:7705".to_owned())]);
        let peers = Peers::new(&fixed, Some("http://{id}.hubbub-gateway-peers:7705"), &dialer()).unwrap();
        assert!(peers.get("edge-1").is_some(), "a fixed peer");
        assert!(peers.get("hubbub-gateway-7d9f-x2").is_some(), "a pod name");
        for hostile in [
            "evil.com",
            "a:80",
            "UPPER",
            "-x",
            "x-",
            "",
            &"a".repeat(64),
            "a/b",
            "a@b",
        ] {
            assert!(peers.get(hostile).is_none(), "{hostile:?}");
        }
        let none = Peers::new(&fixed, None, &dialer()).unwrap();
        assert!(none.get("hubbub-gateway-7d9f-x2").is_none(), "no template, no guess");
        assert!(Peers::new(&fixed, Some("not a url {id}"), &dialer()).is_err());
    }

    #[tokio::test]
    async fn dialled_peers_stay_bounded() {
        let peers = Peers::new(&BTreeMap::new(), Some("http://{id}.peers:7705"), &dialer()).unwrap();
        for i in 0..(MAX_DIALLED + 50) {
            assert!(peers.get(&format!("gw-{i}")).is_some());
        }
        assert_eq!(peers.dialled.lock().unwrap().len(), MAX_DIALLED);
    }
}
