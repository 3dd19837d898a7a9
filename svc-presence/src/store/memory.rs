//! The in-memory `PresenceStore` of `hubbub all`: the same semantics as the
//! Redis backend (expiry by TTL, numbered deltas, HyperLogLog uniques) in
//! one process.

use super::{
    Applied, GatewayReport, Location, PresenceStore, RoomCount, SessionEntry, StoreError, hll::HyperLogLog, unix_ms,
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

#[derive(Debug, Default)]
struct GatewayState {
    address: String,
    last_seq: u64,
    expires_at_ms: i64,
    sessions: HashMap<String, SessionEntry>,
    rooms: HashMap<String, u64>,
}

#[derive(Debug, Default)]
struct State {
    gateways: BTreeMap<String, GatewayState>,
    uniques: HashMap<String, HyperLogLog>,
}

/// Presence in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    // One lock: reports arrive once per interval per gateway, so contention
    // is negligible, and one lock keeps every answer consistent.
    state: Mutex<State>,
}

impl MemoryPresence {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
                let hll = state.uniques.entry(room.room_id.clone()).or_default();
                for viewer in &room.new_viewers {
                    hll.add(viewer);
                }
            }
        }
        let gateway = state.gateways.entry(report.gateway_id.clone()).or_default();
        let continues = gateway.expires_at_ms > now && gateway.last_seq + 1 == report.report_seq;
        if !report.full && !continues {
            return Ok(Applied::NeedFullSnapshot);
        }
        if report.full {
            gateway.sessions.clear();
        }
        for session in &report.sessions_added {
            gateway.sessions.insert(session.session_id.clone(), session.clone());
        }
        for session_id in &report.sessions_removed {
            gateway.sessions.remove(session_id);
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
        let state = self.lock();
        let mut found = Vec::new();
        for (gateway_id, gateway) in live(&state, now) {
            let mut sessions: Vec<SessionEntry> = gateway
                .sessions
                .values()
                .filter(|s| user_ids.contains(&s.user_id))
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
                unique_viewers: state.uniques.get(room_id).map_or(0, HyperLogLog::count),
            })
            .collect())
    }
}
