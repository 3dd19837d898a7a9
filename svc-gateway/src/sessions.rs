//! `Sessions`: the client streams this replica holds, by session id, in
//! sharded maps (no global lock on connect, disconnect or lookup).

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

/// The sessions of this replica.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Sharded<HashMap<Arc<str>, Arc<Session>>>,
    count: AtomicUsize,
}

impl Sessions {
    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a session.
    pub fn insert(&self, session: Arc<Session>) {
        if self.map.lock(&session.id).insert(session.id.clone(), session).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes a session, returning it when it was held.
    pub fn remove(&self, session_id: &str) -> Option<Arc<Session>> {
        let removed = self.map.lock(session_id).remove(session_id);
        if removed.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
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
    fn session_ids_name_their_gateway_and_are_unique() {
        let a = new_session_id("gw-1");
        let b = new_session_id("gw-1");
        assert_ne!(a, b);
        assert_eq!(gateway_of(&a), Some("gw-1"));
        assert_eq!(gateway_of("no-separator"), None);
    }
}
