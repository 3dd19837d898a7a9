//! The in-memory `PresenceStore` of `hubbub all`: the same semantics as the
//! Redis backend (expiry by TTL, numbered deltas, HyperLogLog uniques) in
//! one process.

use super::{
    Applied, GatewayReport, Location, PresenceStore, RoomCount, SessionEntry, StoreError, hll::HyperLogLog, unix_ms,
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

#[derive(Debug, Default)]
struct GatewayState {
    address: String,
    last_seq: u64,
    expires_at_ms: i64,
    sessions: HashMap<String, SessionEntry>,
    /// Session ids by user, so a lookup costs the users asked for, not the
    /// sessions held (a gateway holds ~100k; a notify asks for ~1,000).
    by_user: HashMap<String, Vec<String>>,
    rooms: HashMap<String, u64>,
}

impl GatewayState {
    fn add_session(&mut self, session: &SessionEntry) {
        self.remove_session(&session.session_id);
        self.by_user
            .entry(session.user_id.clone())
            .or_default()
            .push(session.session_id.clone());
        self.sessions.insert(session.session_id.clone(), session.clone());
    }

    fn remove_session(&mut self, session_id: &str) {
        let Some(old) = self.sessions.remove(session_id) else {
            return;
        };
        if let Some(ids) = self.by_user.get_mut(&old.user_id) {
            ids.retain(|id| id != session_id);
            if ids.is_empty() {
                self.by_user.remove(&old.user_id);
            }
        }
    }

    fn clear_sessions(&mut self) {
        self.sessions.clear();
        self.by_user.clear();
    }
}

/// A room's unique-viewer estimate and when a viewer was last added.
#[derive(Debug, Default)]
struct Uniques {
    hll: HyperLogLog,
    last_added_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    gateways: BTreeMap<String, GatewayState>,
    uniques: HashMap<String, Uniques>,
    last_sweep_ms: i64,
}

/// Rooms whose unique viewers are kept at most (16 KiB each): guests can
/// name any room, so the oldest estimates go first beyond this.
pub const DEFAULT_MAX_UNIQUE_ROOMS: usize = 10_000;
/// How long a room's unique viewers are kept after the last new viewer.
pub const DEFAULT_UNIQUES_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Presence in this process's memory.
#[derive(Debug)]
pub struct MemoryPresence {
    // One lock: reports arrive once per interval per gateway, so contention
    // is negligible, and one lock keeps every answer consistent.
    state: Mutex<State>,
    max_unique_rooms: usize,
    retention_ms: i64,
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self::with_limits(DEFAULT_MAX_UNIQUE_ROOMS, DEFAULT_UNIQUES_RETENTION)
    }
}

impl MemoryPresence {
    /// An empty store with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping at most `max_unique_rooms` estimates, each for
    /// `retention` after its last new viewer.
    pub fn with_limits(max_unique_rooms: usize, retention: Duration) -> Self {
        Self {
            state: Mutex::default(),
            max_unique_rooms: max_unique_rooms.max(1),
            retention_ms: retention.as_millis() as i64,
        }
    }

    /// Rooms whose unique viewers are held now.
    pub fn unique_rooms(&self) -> usize {
        self.lock().uniques.len()
    }

    /// Forgets estimates past their retention, then the oldest ones beyond
    /// the cap.
    fn evict_uniques(&self, state: &mut State, now: i64) {
        if now - state.last_sweep_ms >= 1_000 {
            state.last_sweep_ms = now;
            let retention = self.retention_ms;
            state.uniques.retain(|_, u| now - u.last_added_ms < retention);
        }
        let over = state.uniques.len().saturating_sub(self.max_unique_rooms);
        if over > 0 {
            let mut by_age: Vec<(i64, String)> = state
                .uniques
                .iter()
                .map(|(room, u)| (u.last_added_ms, room.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, room) in by_age.into_iter().take(over) {
                state.uniques.remove(&room);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (what a Redis restart without persistence does).
    pub fn flush(&self) {
        *self.lock() = State::default();
    }
}

fn live(state: &State, now: i64) -> impl Iterator<Item = (&String, &GatewayState)> {
    state.gateways.iter().filter(move |(_, g)| g.expires_at_ms > now)
}

impl PresenceStore for MemoryPresence {
    async fn report(&self, report: &GatewayReport) -> Result<Applied, StoreError> {
        let now = unix_ms();
        let mut state = self.lock();
        state.gateways.retain(|_, g| g.expires_at_ms > now);
        for room in &report.rooms {
            if !room.new_viewers.is_empty() {
                let uniques = state.uniques.entry(room.room_id.clone()).or_default();
                uniques.last_added_ms = now;
                for viewer in &room.new_viewers {
                    uniques.hll.add(viewer);
                }
            }
        }
        self.evict_uniques(&mut state, now);
        let gateway = state.gateways.entry(report.gateway_id.clone()).or_default();
        let continues = gateway.expires_at_ms > now && gateway.last_seq + 1 == report.report_seq;
        if !report.full && !continues {
            return Ok(Applied::NeedFullSnapshot);
        }
        if report.full {
            gateway.clear_sessions();
        }
        for session in &report.sessions_added {
            gateway.add_session(session);
        }
        for session_id in &report.sessions_removed {
            gateway.remove_session(session_id);
        }
        gateway.rooms = report.rooms.iter().map(|r| (r.room_id.clone(), r.online)).collect();
        gateway.address = report.address.clone();
        gateway.last_seq = report.report_seq;
        gateway.expires_at_ms = now + report.ttl.as_millis() as i64;
        Ok(Applied::Yes {
            expires_at_ms: gateway.expires_at_ms,
        })
    }

    async fn locate(&self, user_ids: &[String]) -> Result<Vec<Location>, StoreError> {
        let now = unix_ms();
        let mut wanted: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let state = self.lock();
        let mut found = Vec::new();
        for (gateway_id, gateway) in live(&state, now) {
            let mut sessions: Vec<SessionEntry> = wanted
                .iter()
                .filter_map(|user| gateway.by_user.get(*user))
                .flatten()
                .filter_map(|id| gateway.sessions.get(id))
                .cloned()
                .collect();
            if sessions.is_empty() {
                continue;
            }
            sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
            found.push(Location {
                gateway_id: gateway_id.clone(),
                address: gateway.address.clone(),
                sessions,
            });
        }
        Ok(found)
    }

    async fn room_counts(&self, room_ids: &[String]) -> Result<Vec<RoomCount>, StoreError> {
        let now = unix_ms();
        let state = self.lock();
        Ok(room_ids
            .iter()
            .map(|room_id| RoomCount {
                online: live(&state, now).filter_map(|(_, g)| g.rooms.get(room_id)).sum(),
                unique_viewers: state.uniques.get(room_id).map_or(0, |u| u.hll.count()),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RoomReport;

    fn report(seq: u64, rooms: &[&str]) -> GatewayReport {
        GatewayReport {
            gateway_id: "gw".into(),
            address: "http://gw".into(),
            report_seq: seq,
            full: true,
            sessions_added: Vec::new(),
            sessions_removed: Vec::new(),
            rooms: rooms
                .iter()
                .map(|room| RoomReport {
                    room_id: (*room).into(),
                    online: 1,
                    new_viewers: vec!["guest:1".into()],
                })
                .collect(),
            ttl: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn unique_viewer_estimates_are_capped_and_expire() {
        let store = MemoryPresence::with_limits(3, Duration::from_secs(3600));
        for (seq, room) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            store.report(&report(seq as u64 + 1, &[room])).await.unwrap();
        }
        assert_eq!(store.unique_rooms(), 3, "the oldest estimates go beyond the cap");
        let counts = store.room_counts(&["e".into(), "a".into()]).await.unwrap();
        assert_eq!((counts[0].unique_viewers, counts[1].unique_viewers), (1, 0));

        let store = MemoryPresence::with_limits(100, Duration::ZERO);
        store.report(&report(1, &["a"])).await.unwrap();
        store.lock().last_sweep_ms = 0;
        store.report(&report(2, &[])).await.unwrap();
        assert_eq!(store.unique_rooms(), 0, "forgotten after the retention");
    }
}
