//! `Recent`: the newest records of hot rooms in memory, so a reconnect storm
//! (a million viewers pulling after the gift they last saw) costs the
//! database one read per room and refresh, not one per viewer.
//!
//! Each room's window holds its newest records (at most `records`) as read
//! at one moment, plus what this replica committed since. A public pull
//! (no target) whose `after` falls inside a window fresher than `ttl` is
//! answered from it; otherwise one caller per room reads the window again
//! while the others wait for that read (single flight), and a pull older
//! than any window goes to the database. A window may lag the database by
//! at most `ttl` for records other replicas committed: a viewer then sees
//! them on the room's stream and pulls again, nothing is lost. At most
//! `rooms` windows are held; the least recently used goes first.

use crate::store::{GiftStore, Page, Record, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Mutex as AsyncMutex;

/// How much is kept (`[gift]` settings).
#[derive(Debug, Clone, Copy)]
pub struct RecentSettings {
    /// Rooms with a window, at most.
    pub rooms: usize,
    /// Records per window, at most.
    pub records: usize,
    /// How long a read window answers pulls.
    pub ttl: Duration,
}

#[derive(Debug, Default)]
struct Window {
    /// Contiguous records, ascending; the first is `start + 1`.
    records: VecDeque<Record>,
    /// The seq before the first record (the window covers `start + 1 ..=
    /// last`).
    start: u64,
    /// The room's last seq as far as this window knows.
    last: u64,
    /// When it was read from the database; `None`: never.
    read_at: Option<Instant>,
}

impl Window {
    fn fresh(&self, ttl: Duration) -> bool {
        self.read_at.is_some_and(|at| at.elapsed() < ttl)
    }

    fn covers(&self, after: u64) -> bool {
        after >= self.start && after <= self.last
    }

    fn page(&self, after: u64, limit: usize) -> Page {
        let skip = (after - self.start) as usize;
        let records: Vec<Record> = self.records.iter().skip(skip).take(limit).cloned().collect();
        let has_more = self.records.len() > skip + records.len();
        Page {
            records,
            has_more,
            last_seq: self.last,
        }
    }

    fn push(&mut self, record: &Record, max: usize) {
        if record.seq != self.last + 1 {
            return; // not contiguous with what is held: the next read fixes it
        }
        self.records.push_back(record.clone());
        self.last = record.seq;
        while self.records.len() > max {
            self.records.pop_front();
            self.start += 1;
        }
    }
}

struct Slot {
    window: Arc<AsyncMutex<Window>>,
    used: Instant,
}

/// The windows of this replica. Cheap to share.
pub struct Recent<S> {
    store: Arc<S>,
    settings: RecentSettings,
    slots: Mutex<HashMap<String, Slot>>,
    /// Store reads made to answer pulls (exported as a metric).
    reads: prometheus_client::metrics::counter::Counter,
}

impl<S> std::fmt::Debug for Recent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent").field("settings", &self.settings).finish()
    }
}

impl<S: GiftStore> Recent<S> {
    /// Windows over `store`.
    pub fn new(store: Arc<S>, settings: RecentSettings) -> Self {
        Self {
            store,
            settings,
            slots: Mutex::new(HashMap::new()),
            reads: Default::default(),
        }
    }

    /// A public pull of `room_id` after `after`, at most `limit` (already
    /// capped): from the window when it covers `after`, else from the store.
    pub async fn pull(&self, room_id: &str, after: u64, limit: u32) -> Result<Page, StoreError> {
        crate::store::rules::id("room_id", room_id)?;
        let limit = crate::store::rules::page(limit) as usize;
        let held = self.held(room_id).await?;
        if held.covers(after) {
            return Ok(held.page(after, limit));
        }
        drop(held);
        self.reads.inc();
        self.store.pull(room_id, after, limit as u32, None).await
    }

    /// The counter of store reads made to answer pulls: the window's and,
    /// through it, the ones callers make for pulls it does not serve.
    pub fn reads(&self) -> prometheus_client::metrics::counter::Counter {
        self.reads.clone()
    }

    /// The room's last seq, as fresh as the window.
    pub async fn head(&self, room_id: &str) -> Result<u64, StoreError> {
        crate::store::rules::id("room_id", room_id)?;
        Ok(self.held(room_id).await?.last)
    }

    /// The room's window, read again first when stale: one caller per room
    /// reads, the others wait for that read.
    async fn held(&self, room_id: &str) -> Result<tokio::sync::OwnedMutexGuard<Window>, StoreError> {
        let mut held = self.window(room_id).lock_owned().await;
        if held.fresh(self.settings.ttl) {
            return Ok(held);
        }
        self.reads.inc();
        let room = self.store.room(room_id).await?;
        let from = room.last_seq.saturating_sub(self.settings.records as u64);
        let mut records = Vec::with_capacity(self.settings.records);
        loop {
            let after = records.last().map_or(from, |r: &Record| r.seq);
            self.reads.inc();
            let page = self
                .store
                .pull(room_id, after, crate::store::rules::MAX_PAGE, None)
                .await?;
            records.extend(page.records);
            if !page.has_more || records.len() >= self.settings.records {
                break;
            }
        }
        *held = Window {
            start: from,
            last: records.last().map_or(from, |r| r.seq).max(from),
            records: records.into(),
            read_at: Some(Instant::now()),
        };
        Ok(held)
    }

    /// Adds what this replica just committed to the room's window, if held.
    pub fn committed(&self, record: &Record) {
        let window = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.get(&record.room_id) {
                Some(slot) => slot.window.clone(),
                None => return,
            }
        };
        // A window being read is replaced by that read anyway.
        if let Ok(mut held) = window.try_lock() {
            held.push(record, self.settings.records);
        }
    }

    fn window(&self, room_id: &str) -> Arc<AsyncMutex<Window>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(slot) = slots.get_mut(room_id) {
            slot.used = now;
            return slot.window.clone();
        }
        if slots.len() >= self.settings.rooms.max(1) {
            let oldest = slots.iter().min_by_key(|(_, s)| s.used).map(|(room, _)| room.clone());
            if let Some(room) = oldest {
                slots.remove(&room);
            }
        }
        let window = Arc::new(AsyncMutex::new(Window::default()));
        slots.insert(
            room_id.to_owned(),
            Slot {
                window: window.clone(),
                used: now,
            },
        );
        window
    }
}
