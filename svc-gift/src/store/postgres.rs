//! The PostgreSQL `GiftStore`. A commit locks its rooms' rows in id order
//! (creating missing ones in the same statement), so replicas committing
//! into one room serialise there and seqs stay gap-free; then one statement
//! stores the records, moves the rooms' seqs and adds up every total.

use super::batch::{self, Key};
use super::rows::{CoStreamRow, RECORD_COLUMNS, RecordRow, RoomRow, TotalRow};
use super::rules::{self, Limits};
use super::*;
use hubbub_kit::schema::Schema;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::collections::HashMap;
use std::time::Duration;

/// The gift ledger in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgGiftStore {
    pool: PgPool,
    limits: Limits,
}

/// The gift schema's migration history.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations_gift";

impl PgGiftStore {
    /// Connects to `url` and brings the schema up to date (sqlx's migrator
    /// holds an advisory lock, so replicas starting at once do not race).
    pub async fn connect(url: &str, max_connections: u32, limits: Limits) -> Result<Self, StoreError> {
        Self::open(url, max_connections, limits, Schema::Migrate).await
    }

    /// Connects to `url`; applies the migrations, or only checks that
    /// `hubbub migrate` did, as `schema` says.
    pub async fn open(url: &str, max_connections: u32, limits: Limits, schema: Schema) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let mut migrator = sqlx::migrate!("../migrations/gift/postgres");
        // Own table, so the group store's migrations may share the database.
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        hubbub_kit::schema::bring_up(&pool, &migrator, MIGRATIONS_TABLE, schema).await?;
        Ok(Self { pool, limits })
    }
}

impl GiftStore for PgGiftStore {
    async fn commit(&self, records: &[NewRecord]) -> StoreResult<Vec<StoreResult<Sent>>> {
        let checked = batch::checked(records, &self.limits);
        let room_ids = batch::rooms(records, &checked);
        if room_ids.is_empty() {
            return Ok(batch::refusals(checked));
        }
        let keys = batch::keys(records, &checked);
        let mut tx = self.pool.begin().await?;
        // Creates missing rooms and locks all of them, in id order, in one
        // statement (the no-op update is what takes the lock).
        let rooms: HashMap<String, Room> = sqlx::query_as::<_, RoomRow>(
            "INSERT INTO gift_rooms AS r (room_id) SELECT * FROM unnest($1::text[]) ORDER BY 1 \
             ON CONFLICT (room_id) DO UPDATE SET last_seq = r.last_seq \
             RETURNING r.room_id, r.last_seq, r.host_user_id",
        )
        .bind(&room_ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| {
            let room = Room::from(r);
            (room.room_id.clone(), room)
        })
        .collect();
        let originals = originals(&mut tx, &keys).await?;
        let requests = requests(&mut tx, &batch::answered(records, &checked)).await?;
        let plan = batch::plan(records, checked, &rooms, &originals, &requests, &self.limits, unix_ms());
        if !plan.new.is_empty() {
            write(&mut tx, &plan).await?;
        }
        tx.commit().await?;
        Ok(plan.answers)
    }

    // Two statements, not one with `$4 IS NULL OR ..`: a generic plan of
    // that could not use the recipient index.
    shared_pull!(|recipient: Option<&str>| match recipient {
        None => format!(
            "SELECT {RECORD_COLUMNS} FROM gift_records WHERE room_id = $1 AND seq > $2 \
             AND $4::text IS NULL ORDER BY seq LIMIT $3"
        ),
        Some(_) => format!(
            "SELECT {RECORD_COLUMNS} FROM gift_records WHERE room_id = $1 AND seq > $2 \
             AND recipient_user_id = $4 ORDER BY seq LIMIT $3"
        ),
    });

    shared_reads!();
}

/// The stored records of `keys`, one primary-key probe each.
async fn originals(conn: &mut sqlx::PgConnection, keys: &[Key]) -> StoreResult<HashMap<Key, Record>> {
    let (rooms, senders, ids): (Vec<&str>, Vec<&str>, Vec<&str>) = keys
        .iter()
        .map(|(r, s, k)| (r.as_str(), s.as_str(), k.as_str()))
        .collect();
    let sql = format!(
        "SELECT g.* FROM unnest($1::text[], $2::text[], $3::text[]) AS k(room_id, sender, client_key) \
         CROSS JOIN LATERAL (SELECT {RECORD_COLUMNS} FROM gift_records g WHERE g.room_id = k.room_id \
           AND g.sender_user_id = k.sender AND g.client_key = k.client_key OFFSET 0) AS g"
    );
    let rows = sqlx::query_as::<_, RecordRow>(sqlx::AssertSqlSafe(sql))
        .bind(&rooms)
        .bind(&senders)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let record = Record::from(r);
            let key = (
                record.room_id.clone(),
                record.sender_user_id.clone(),
                record.client_key.clone(),
            );
            (key, record)
        })
        .collect())
}

/// The co-streaming requests `keys` (room, seq) name, locked: an answer
/// moves its request's state in its own commit, one answer per request.
async fn requests(
    conn: &mut sqlx::PgConnection,
    keys: &[(String, u64)],
) -> StoreResult<HashMap<(String, u64), CoStream>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rooms: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let seqs: Vec<i64> = keys.iter().map(|k| k.1 as i64).collect();
    let rows: Vec<CoStreamRow> = sqlx::query_as(
        "SELECT c.room_id, c.request_seq, c.requester_user_id, c.addressee_user_id, c.state, c.expires_at_ms \
         FROM gift_co_streams c JOIN unnest($1::text[], $2::bigint[]) AS k(room_id, seq) \
           ON c.room_id = k.room_id AND c.request_seq = k.seq \
         ORDER BY c.room_id, c.request_seq FOR UPDATE OF c",
    )
    .bind(&rooms)
    .bind(&seqs)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(CoStreamRow::split).collect())
}

/// The plan's records, the rooms' seqs and the three totals, in one
/// statement. Totals are upserted in key order, so commits of different
/// rooms sharing a recipient lock its rows in the same order.
async fn write(conn: &mut sqlx::PgConnection, plan: &batch::Plan) -> StoreResult<()> {
    let n = &plan.new;
    let text = |f: fn(&Record) -> &str| n.iter().map(f).collect::<Vec<&str>>();
    let seqs: Vec<i64> = n.iter().map(|r| r.seq as i64).collect();
    let kinds: Vec<i32> = n.iter().map(|r| r.kind).collect();
    let counts: Vec<i64> = n.iter().map(|r| i64::from(r.count)).collect();
    let values: Vec<i64> = n.iter().map(|r| r.value as i64).collect();
    let payloads: Vec<&[u8]> = n.iter().map(|r| r.payload.as_slice()).collect();
    let at: Vec<i64> = n.iter().map(|r| r.sent_at_ms).collect();
    let (seq_rooms, last_seqs): (Vec<&str>, Vec<i64>) = plan
        .last_seqs
        .iter()
        .map(|(room, seq)| (room.as_str(), *seq as i64))
        .unzip();
    let room_items = batch::columns(&plan.room_items);
    let recipient_items = batch::columns(&plan.recipient_items);
    let room_senders = batch::columns(&plan.room_senders);
    let answers_seqs: Vec<i64> = n.iter().map(|r| r.answers_seq as i64).collect();
    let answers: Vec<i32> = n.iter().map(|r| r.answer).collect();
    let expires: Vec<i64> = n.iter().map(|r| r.expires_at_ms).collect();
    sqlx::query(
        "WITH stored AS (INSERT INTO gift_records (room_id, seq, sender_user_id, kind, target_user_id, \
           recipient_user_id, gift_id, count, value, client_key, payload, sent_at_ms, answers_seq, answer, \
           expires_at_ms) \
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::text[], $6::text[], \
             $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::bytea[], $12::bigint[], $27::bigint[], \
             $28::int[], $29::bigint[])), \
         seqs AS (UPDATE gift_rooms r SET last_seq = v.last_seq \
           FROM unnest($13::text[], $14::bigint[]) AS v(room_id, last_seq) WHERE r.room_id = v.room_id), \
         items AS (INSERT INTO gift_room_totals AS t (room_id, gift_id, count, value) \
           SELECT * FROM unnest($15::text[], $16::text[], $17::bigint[], $18::bigint[]) ORDER BY 1, 2 \
           ON CONFLICT (room_id, gift_id) DO UPDATE SET count = t.count + EXCLUDED.count, \
             value = t.value + EXCLUDED.value), \
         recipients AS (INSERT INTO gift_recipient_totals AS t (recipient_user_id, gift_id, count, value) \
           SELECT * FROM unnest($19::text[], $20::text[], $21::bigint[], $22::bigint[]) ORDER BY 1, 2 \
           ON CONFLICT (recipient_user_id, gift_id) DO UPDATE SET count = t.count + EXCLUDED.count, \
             value = t.value + EXCLUDED.value) \
         INSERT INTO gift_room_senders AS t (room_id, sender_user_id, count, value) \
           SELECT * FROM unnest($23::text[], $24::text[], $25::bigint[], $26::bigint[]) ORDER BY 1, 2 \
           ON CONFLICT (room_id, sender_user_id) DO UPDATE SET count = t.count + EXCLUDED.count, \
             value = t.value + EXCLUDED.value",
    )
    .bind(text(|r| &r.room_id))
    .bind(&seqs)
    .bind(text(|r| &r.sender_user_id))
    .bind(&kinds)
    .bind(text(|r| &r.target_user_id))
    .bind(text(|r| &r.recipient_user_id))
    .bind(text(|r| &r.gift_id))
    .bind(&counts)
    .bind(&values)
    .bind(text(|r| &r.client_key))
    .bind(&payloads)
    .bind(&at)
    .bind(&seq_rooms)
    .bind(&last_seqs)
    .bind(&room_items.0)
    .bind(&room_items.1)
    .bind(&room_items.2)
    .bind(&room_items.3)
    .bind(&recipient_items.0)
    .bind(&recipient_items.1)
    .bind(&recipient_items.2)
    .bind(&recipient_items.3)
    .bind(&room_senders.0)
    .bind(&room_senders.1)
    .bind(&room_senders.2)
    .bind(&room_senders.3)
    .bind(&answers_seqs)
    .bind(&answers)
    .bind(&expires)
    .execute(&mut *conn)
    .await?;
    if plan.co_streams.is_empty() && plan.answered.is_empty() {
        return Ok(());
    }
    // Requests and answers are rare next to gifts: their own statement.
    let new: Vec<(&(String, u64), &CoStream)> = plan.co_streams.iter().collect();
    let answered: Vec<(&(String, u64), &i32)> = plan.answered.iter().collect();
    sqlx::query(
        "WITH new AS (INSERT INTO gift_co_streams (room_id, request_seq, requester_user_id, addressee_user_id, \
           state, expires_at_ms) \
           SELECT r, s, q, a, 0, e FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) \
             AS v(r, s, q, a, e)) \
         UPDATE gift_co_streams c SET state = v.state \
           FROM unnest($6::text[], $7::bigint[], $8::int[]) AS v(room_id, seq, state) \
           WHERE c.room_id = v.room_id AND c.request_seq = v.seq",
    )
    .bind(new.iter().map(|(k, _)| k.0.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|(k, _)| k.1 as i64).collect::<Vec<_>>())
    .bind(
        new.iter()
            .map(|(_, c)| c.requester_user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, c)| c.addressee_user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|(_, c)| c.expires_at_ms).collect::<Vec<_>>())
    .bind(answered.iter().map(|(k, _)| k.0.as_str()).collect::<Vec<_>>())
    .bind(answered.iter().map(|(k, _)| k.1 as i64).collect::<Vec<_>>())
    .bind(answered.iter().map(|(_, a)| **a).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
