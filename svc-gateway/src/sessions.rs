//! `Sessions`: the client streams this replica holds, by session id, in
//! sharded maps (no global lock on connect, disconnect or lookup), with the
//! replica's and each user's stream limits enforced atomically.

use crate::outbox::Outbox;
use hubbub_kit::{auth::Identity, sharded::Sharded};
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
};
use tonic::Status;

/// Separates the gateway id from the random part of a session id.
pub const SESSION_ID_SEPARATOR: char = '~';

/// One device's stream.
#[derive(Debug)]
pub struct Session {
    /// `<gateway id>~<128 random bits in hex>`.
    pub id: Arc<str>,
    /// Who opened it.
    pub identity: Identity,
    /// The device.
    pub device_id: String,
    /// When it connected, unix milliseconds.
    pub connected_at_ms: i64,
    /// When the token it was opened with expires, unix seconds.
    pub expires_at: Option<u64>,
    /// For a guest: the source address its stream counts against.
    pub guest_address: Option<String>,
    /// Its outbound queue.
    pub outbox: Outbox,
    /// Rooms it has joined. Why a mutex of its own: joins and leaves of one
    /// session are rare and must not contend with other sessions.
    pub rooms: Mutex<HashSet<String>>,
}

impl Session {
    /// The rooms this session is in.
    pub fn rooms(&self) -> MutexGuard<'_, HashSet<String>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The gateway id a session id names, if it is well-formed.
pub fn gateway_of(session_id: &str) -> Option<&str> {
    session_id.split_once(SESSION_ID_SEPARATOR).map(|(gateway, _)| gateway)
}

/// A fresh, unguessable session id of gateway `gateway_id`.
pub fn new_session_id(gateway_id: &str) -> String {
    format!("{gateway_id}{SESSION_ID_SEPARATOR}{:032x}", rand::random::<u128>())
}

/// The stream limits a reservation is checked against.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Streams on the replica.
    pub total: usize,
    /// Streams per user or guest identity.
    pub per_identity: usize,
    /// Guest streams per source address.
    pub guests_per_address: usize,
}

/// The sessions of this replica.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Sharded<HashMap<Arc<str>, Arc<Session>>>,
    count: AtomicUsize,
    /// Streams per identity (user or guest id) and guest streams per source
    /// address (`ip:` keys); entries leave with their last stream, so the
    /// map follows who is connected.
    per_identity: Sharded<HashMap<String, usize>>,
}

impl Sessions {
    /// Takes a place for one more stream of `identity` (and, for a guest,
    /// of its source address), or says which limit refuses it. Checked and
    /// counted in one step, so a burst of connects cannot overshoot. The
    /// place is given back by [`Sessions::release`] with the same arguments.
    pub fn reserve(
        &self,
        identity: &Identity,
        guest_address: Option<&str>,
        limits: StreamLimits,
    ) -> Result<(), Status> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limits.total).then_some(n + 1)
            })
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "this gateway holds its limit of {} streams: retry on another replica",
                    limits.total
                ))
            })?;
        if let Err(held) = self.take(identity.id(), limits.per_identity) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(Status::resource_exhausted(format!(
                "this identity already has {held} streams open, the most allowed: close one first"
            )));
        }
        if let Some(address) = guest_address
            && let Err(held) = self.take(address, limits.guests_per_address)
        {
            self.give_back(identity.id());
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(Status::resource_exhausted(format!(
                "your address already holds {held} guest streams, the most allowed: sign in, or close one"
            )));
        }
        Ok(())
    }

    /// Gives back a place taken by [`Sessions::reserve`].
    pub fn release(&self, identity: &Identity, guest_address: Option<&str>) {
        self.give_back(identity.id());
        if let Some(address) = guest_address {
            self.give_back(address);
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    fn take(&self, key: &str, max: usize) -> Result<(), usize> {
        let mut shard = self.per_identity.lock(key);
        let held = shard.entry(key.to_owned()).or_default();
        if *held >= max {
            let held = *held;
            if held == 0 {
                shard.remove(key);
            }
            return Err(held);
        }
        *held += 1;
        Ok(())
    }

    fn give_back(&self, key: &str) {
        let mut shard = self.per_identity.lock(key);
        if let Some(held) = shard.get_mut(key) {
            *held -= 1;
            if *held == 0 {
                shard.remove(key);
            }
        }
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a session whose place was reserved.
    pub fn insert(&self, session: Arc<Session>) {
        self.map.lock(&session.id).insert(session.id.clone(), session);
    }

    /// Removes a session, returning it when it was held (its place is
    /// released by whoever reserved it).
    pub fn remove(&self, session_id: &str) -> Option<Arc<Session>> {
        self.map.lock(session_id).remove(session_id)
    }

    /// The session `session_id` when it belongs to `identity`. Unknown ids
    /// and other users' ids get the same NOT_FOUND, so ids cannot be probed.
    pub fn owned_by(&self, session_id: &str, identity: &Identity) -> Result<Arc<Session>, Status> {
        self.map.lock(session_id)
            .get(session_id)
            .filter(|session| session.identity == *identity)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "session {session_id:?} is not open for this caller: open a stream with Connect and use the session_id of its Welcome"
                ))
            })
    }

    /// The session `session_id`, whoever holds it (internal delivery).
    pub fn get(&self, session_id: &str) -> Option<Arc<Session>> {
        self.map.lock(session_id).get(session_id).cloned()
    }

    /// Every session, shard by shard (a snapshot: no lock is held while the
    /// caller works on them).
    pub fn snapshot(&self) -> Vec<Arc<Session>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.map.each() {
            all.extend(shard.values().cloned());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_limits_hold_per_identity_and_in_total() {
        let sessions = Sessions::default();
        let limits = StreamLimits {
            total: 3,
            per_identity: 2,
            guests_per_address: 1,
        };
        let alice = Identity::User("alice".into());
        let bob = Identity::User("bob".into());
        sessions.reserve(&alice, None, limits).unwrap();
        sessions.reserve(&alice, None, limits).unwrap();
        let err = sessions.reserve(&alice, None, limits).unwrap_err();
        assert!(err.message().contains("2 streams"), "{err:?}");
        sessions.reserve(&bob, None, limits).unwrap();
        assert!(
            sessions
                .reserve(&bob, None, limits)
                .unwrap_err()
                .message()
                .contains("limit of 3")
        );
        sessions.release(&alice, None);
        sessions.release(&alice, None);
        assert!(
            sessions
                .per_identity
                .each()
                .all(|shard| shard.is_empty() || shard.contains_key("bob"))
        );
        sessions.reserve(&bob, None, limits).unwrap();
        assert_eq!(sessions.len(), 2);

        // Guests are capped per address too, whatever their identities.
        let (one, two) = (Identity::Guest("guest:1".into()), Identity::Guest("guest:2".into()));
        sessions.release(&bob, None);
        sessions.reserve(&one, Some("ip:192.0.2.1"), limits).unwrap();
        let err = sessions.reserve(&two, Some("ip:192.0.2.1"), limits).unwrap_err();
        assert!(err.message().contains("guest streams"), "{err:?}");
        sessions.reserve(&two, Some("ip:192.0.2.2"), limits).unwrap();
        sessions.release(&one, Some("ip:192.0.2.1"));
        sessions.release(&two, Some("ip:192.0.2.2"));
        assert_eq!(sessions.len(), 1);
        assert!(
            sessions
                .per_identity
                .each()
                .all(|shard| shard.keys().all(|k| k == "bob"))
        );
    }

    #[test]
    fn session_ids_name_their_gateway_and_are_unique() {
        let a = new_session_id("gw-1");
        let b = new_session_id("gw-1");
        assert_ne!(a, b);
        assert_eq!(gateway_of(&a), Some("gw-1"));
        assert_eq!(gateway_of("no-separator"), None);
    }
}
