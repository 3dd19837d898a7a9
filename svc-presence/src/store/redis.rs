//! The Redis `PresenceStore`, through a deadpool-redis pool.
//!
//! Keys (`P` is the configured prefix, `{G}` a gateway id as a hash tag):
//! - `P:gateways`: sorted set, gateway -> expiry (unix ms); who is live.
//! - `P:gw:{G}:meta`: hash `seq`, `address`; TTL = report TTL.
//! - `P:gw:{G}:sessions`: hash session -> user; TTL.
//! - `P:gw:{G}:users`: hash user -> that user's sessions on G; TTL.
//! - `P:gw:{G}:rooms`: hash room -> online viewers on G; TTL.
//! - `P:room:{R}:uv`: HyperLogLog of viewers ever seen in room R (0.81%
//!   standard error); kept `uniques_ttl` after its last addition.
//!
//! A report is one round trip: a Lua script over the gateway's four keys
//! (one hash tag, so one Redis Cluster node) pipelined with the gateways
//! set and the rooms' HyperLogLogs. Reads take two round trips (live
//! gateways, then their hashes). Under Redis Cluster, the gateway keys of a
//! report share a slot; the pipeline's other keys need a cluster-aware
//! client that splits it by slot.

use super::{Applied, GatewayReport, Location, PresenceStore, RoomCount, SessionEntry, StoreError, unix_ms};
use deadpool_redis::{Config, Pool, Runtime};
use redis::{AsyncCommands, Script};
use std::time::Duration;

/// How long a room's unique viewers are kept after the last new one.
const UNIQUES_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const SEPARATOR_FIELD: char = '\u{1f}';
const SEPARATOR_ENTRY: char = '\u{1e}';

/// Presence in Redis.
pub struct RedisPresence {
    pool: Pool,
    prefix: String,
    script: Script,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence").field("prefix", &self.prefix).finish()
    }
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

impl RedisPresence {
    /// A store at `url` (`redis://host:port/db`) whose keys start with `prefix`.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let pool = Config::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .map_err(unavailable)?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            script: Script::new(include_str!("report.lua")),
        })
    }

    fn gateways_key(&self) -> String {
        format!("{}:gateways", self.prefix)
    }

    fn gateway_key(&self, gateway_id: &str, part: &str) -> String {
        format!("{}:gw:{{{gateway_id}}}:{part}", self.prefix)
    }

    fn uniques_key(&self, room_id: &str) -> String {
        format!("{}:room:{{{room_id}}}:uv", self.prefix)
    }

    /// Deletes every key of this store (tests; what a Redis flush does).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<String> = conn.scan_match(&pattern).await.map_err(unavailable)?;
            let mut keys = Vec::new();
            while let Some(key) = iter.next_item().await {
                keys.push(key.map_err(unavailable)?);
            }
            keys
        };
        if !keys.is_empty() {
            let _: () = conn.del(keys).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn live_gateways(&self, conn: &mut deadpool_redis::Connection) -> Result<Vec<String>, StoreError> {
        let now = unix_ms();
        let (_, live): ((), Vec<String>) = redis::pipe()
            .zrembyscore(self.gateways_key(), "-inf", now)
            .zrangebyscore(self.gateways_key(), now, "+inf")
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(live)
    }
}

impl PresenceStore for RedisPresence {
    async fn report(&self, report: &GatewayReport) -> Result<Applied, StoreError> {
        let ttl_ms = report.ttl.as_millis().max(1) as u64;
        let expires_at_ms = unix_ms() + ttl_ms as i64;
        let gw = &report.gateway_id;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(self.gateway_key(gw, "meta"))
            .key(self.gateway_key(gw, "sessions"))
            .key(self.gateway_key(gw, "users"))
            .key(self.gateway_key(gw, "rooms"))
            .arg(report.report_seq)
            .arg(u8::from(report.full))
            .arg(ttl_ms)
            .arg(&report.address)
            .arg(report.sessions_added.len());
        for s in &report.sessions_added {
            invocation
                .arg(&s.session_id)
                .arg(&s.user_id)
                .arg(&s.device_id)
                .arg(s.connected_at_ms);
        }
        invocation.arg(report.sessions_removed.len());
        for session_id in &report.sessions_removed {
            invocation.arg(session_id);
        }
        invocation.arg(report.rooms.len());
        for room in &report.rooms {
            invocation.arg(&room.room_id).arg(room.online);
        }

        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        pipe.zadd(self.gateways_key(), gw, expires_at_ms).ignore();
        // The set itself goes when no gateway has reported for a day.
        pipe.expire(self.gateways_key(), 24 * 3600).ignore();
        for room in report.rooms.iter().filter(|r| !r.new_viewers.is_empty()) {
            let key = self.uniques_key(&room.room_id);
            pipe.pfadd(&key, &room.new_viewers).ignore();
            pipe.expire(&key, UNIQUES_TTL.as_secs() as i64).ignore();
        }
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let result: redis::RedisResult<(i64,)> = pipe.query_async(&mut conn).await;
        let (applied,) = match result {
            // Redis restarted and forgot the script: load it and go again.
            Err(err) if err.to_string().to_ascii_lowercase().contains("noscript") => {
                invocation.load_async(&mut conn).await.map_err(unavailable)?;
                pipe.query_async(&mut conn).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
        Ok(match applied {
            1 => Applied::Yes { expires_at_ms },
            _ => Applied::NeedFullSnapshot,
        })
    }

    async fn locate(&self, user_ids: &[String]) -> Result<Vec<Location>, StoreError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let gateways = self.live_gateways(&mut conn).await?;
        if gateways.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for gw in &gateways {
            pipe.hget(self.gateway_key(gw, "meta"), "address");
            pipe.cmd("HMGET").arg(self.gateway_key(gw, "users")).arg(user_ids);
        }
        let answers: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut found = Vec::new();
        for (gw, pair) in gateways.iter().zip(answers.chunks(2)) {
            let address: Option<String> = redis::from_redis_value(pair[0].clone()).map_err(unavailable)?;
            let entries: Vec<Option<String>> = redis::from_redis_value(pair[1].clone()).map_err(unavailable)?;
            let mut sessions: Vec<SessionEntry> = user_ids
                .iter()
                .zip(entries)
                .filter_map(|(user, entry)| entry.map(|entry| (user, entry)))
                .flat_map(|(user, entry)| parse_sessions(user, &entry))
                .collect();
            if sessions.is_empty() {
                continue;
            }
            sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
            found.push(Location {
                gateway_id: gw.clone(),
                address: address.unwrap_or_default(),
                sessions,
            });
        }
        found.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
        Ok(found)
    }

    async fn room_counts(&self, room_ids: &[String]) -> Result<Vec<RoomCount>, StoreError> {
        if room_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let gateways = self.live_gateways(&mut conn).await?;
        let mut pipe = redis::pipe();
        for gw in &gateways {
            pipe.cmd("HMGET").arg(self.gateway_key(gw, "rooms")).arg(room_ids);
        }
        for room_id in room_ids {
            pipe.pfcount(self.uniques_key(room_id));
        }
        let answers: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut counts = vec![RoomCount::default(); room_ids.len()];
        for answer in &answers[..gateways.len()] {
            let online: Vec<Option<u64>> = redis::from_redis_value(answer.clone()).map_err(unavailable)?;
            for (count, online) in counts.iter_mut().zip(online) {
                count.online += online.unwrap_or(0);
            }
        }
        for (count, answer) in counts.iter_mut().zip(&answers[gateways.len()..]) {
            count.unique_viewers = redis::from_redis_value(answer.clone()).map_err(unavailable)?;
        }
        Ok(counts)
    }
}

fn parse_sessions(user_id: &str, entry: &str) -> Vec<SessionEntry> {
    entry
        .split(SEPARATOR_ENTRY)
        .filter_map(|session| {
            let mut fields = session.split(SEPARATOR_FIELD);
            Some(SessionEntry {
                session_id: fields.next()?.to_owned(),
                user_id: user_id.to_owned(),
                device_id: fields.next()?.to_owned(),
                connected_at_ms: fields.next()?.parse().ok()?,
            })
        })
        .collect()
}
