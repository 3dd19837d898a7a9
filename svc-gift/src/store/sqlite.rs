//! The SQLite `GiftStore`, for `hubbub all`: one file, WAL journal, a pool
//! of one connection, so there is exactly one writer and a commit's reads
//! are exclusive. The rules are `batch.rs`'s, as on PostgreSQL.

use super::batch::{self, Key};
use super::rows::{CoStreamRow, RECORD_COLUMNS, RecordRow, RoomRow, TotalRow};
use super::rules::{self, Limits};
use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The gift ledger in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteGiftStore {
    pool: SqlitePool,
    limits: Limits,
}

impl SqliteGiftStore {
    /// Opens (creating it if missing) the database file `path` and brings
    /// the schema up to date.
    pub async fn open(path: &Path, limits: Limits) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let mut migrator = sqlx::migrate!("../migrations/gift/sqlite");
        migrator.dangerous_set_table_name("_sqlx_migrations_gift");
        migrator.run(&pool).await?;
        Ok(Self { pool, limits })
    }
}

/// Adds `sums` to the totals table `table` keyed by (`scope`, `key`).
async fn add(conn: &mut sqlx::SqliteConnection, upsert: &'static str, sums: &batch::Sums) -> StoreResult<()> {
    for ((scope, key), (count, value)) in sums {
        sqlx::query(upsert)
            .bind(scope)
            .bind(key)
            .bind(count)
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl GiftStore for SqliteGiftStore {
    async fn commit(&self, records: &[NewRecord]) -> StoreResult<Vec<StoreResult<Sent>>> {
        let checked = batch::checked(records, &self.limits);
        let room_ids = batch::rooms(records, &checked);
        if room_ids.is_empty() {
            return Ok(batch::refusals(checked));
        }
        let keys: Vec<Key> = batch::keys(records, &checked);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut rooms = HashMap::new();
        for room_id in &room_ids {
            let row: RoomRow = sqlx::query_as(
                "INSERT INTO gift_rooms (room_id) VALUES ($1) ON CONFLICT (room_id) DO UPDATE SET last_seq = last_seq \
                 RETURNING room_id, last_seq, host_user_id",
            )
            .bind(room_id)
            .fetch_one(&mut *tx)
            .await?;
            rooms.insert(room_id.clone(), Room::from(row));
        }
        let mut originals = HashMap::new();
        let find = format!(
            "SELECT {RECORD_COLUMNS} FROM gift_records WHERE room_id = $1 AND sender_user_id = $2 AND client_key = $3"
        );
        for key in keys {
            let row: Option<RecordRow> = sqlx::query_as(sqlx::AssertSqlSafe(find.clone()))
                .bind(&key.0)
                .bind(&key.1)
                .bind(&key.2)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = row {
                originals.insert(key, Record::from(row));
            }
        }
        let mut requests = HashMap::new();
        for (room_id, seq) in batch::answered(records, &checked) {
            let row: Option<CoStreamRow> = sqlx::query_as(
                "SELECT room_id, request_seq, requester_user_id, addressee_user_id, state, expires_at_ms \
                 FROM gift_co_streams WHERE room_id = $1 AND request_seq = $2",
            )
            .bind(&room_id)
            .bind(seq as i64)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                let (key, state) = row.split();
                requests.insert(key, state);
            }
        }
        let plan = batch::plan(records, checked, &rooms, &originals, &requests, &self.limits, unix_ms());
        for r in &plan.new {
            sqlx::query(
                "INSERT INTO gift_records (room_id, seq, sender_user_id, kind, target_user_id, recipient_user_id, \
                 gift_id, count, value, client_key, payload, sent_at_ms, answers_seq, answer, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&r.room_id)
            .bind(r.seq as i64)
            .bind(&r.sender_user_id)
            .bind(r.kind)
            .bind(&r.target_user_id)
            .bind(&r.recipient_user_id)
            .bind(&r.gift_id)
            .bind(i64::from(r.count))
            .bind(r.value as i64)
            .bind(&r.client_key)
            .bind(&r.payload)
            .bind(r.sent_at_ms)
            .bind(r.answers_seq as i64)
            .bind(r.answer)
            .bind(r.expires_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        for ((room_id, seq), c) in &plan.co_streams {
            sqlx::query(
                "INSERT INTO gift_co_streams (room_id, request_seq, requester_user_id, addressee_user_id, state, \
                 expires_at_ms) VALUES ($1, $2, $3, $4, 0, $5)",
            )
            .bind(room_id)
            .bind(*seq as i64)
            .bind(&c.requester_user_id)
            .bind(&c.addressee_user_id)
            .bind(c.expires_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        for ((room_id, seq), answer) in &plan.answered {
            sqlx::query("UPDATE gift_co_streams SET state = $3 WHERE room_id = $1 AND request_seq = $2")
                .bind(room_id)
                .bind(*seq as i64)
                .bind(answer)
                .execute(&mut *tx)
                .await?;
        }
        for (room_id, last) in &plan.last_seqs {
            sqlx::query("UPDATE gift_rooms SET last_seq = $2 WHERE room_id = $1")
                .bind(room_id)
                .bind(*last as i64)
                .execute(&mut *tx)
                .await?;
        }
        add(
            &mut tx,
            "INSERT INTO gift_room_totals (room_id, gift_id, count, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id, gift_id) DO UPDATE SET count = count + excluded.count, value = value + excluded.value",
            &plan.room_items,
        )
        .await?;
        add(
            &mut tx,
            "INSERT INTO gift_recipient_totals (recipient_user_id, gift_id, count, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (recipient_user_id, gift_id) DO UPDATE SET count = count + excluded.count, \
             value = value + excluded.value",
            &plan.recipient_items,
        )
        .await?;
        add(
            &mut tx,
            "INSERT INTO gift_room_senders (room_id, sender_user_id, count, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id, sender_user_id) DO UPDATE SET count = count + excluded.count, \
             value = value + excluded.value",
            &plan.room_senders,
        )
        .await?;
        tx.commit().await?;
        Ok(plan.answers)
    }

    shared_pull!(|_: Option<&str>| format!(
        "SELECT {RECORD_COLUMNS} FROM gift_records WHERE room_id = $1 AND seq > $2 \
         AND ($4 IS NULL OR recipient_user_id = $4) ORDER BY seq LIMIT $3"
    ));

    shared_reads!();
}
