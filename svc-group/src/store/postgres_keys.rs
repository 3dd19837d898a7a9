//! PostgreSQL: device keys and one-time key claims (`KeyStore`).

use super::keys::{self, ClaimedRow, DeviceBundle, DeviceKeys, KeyStore, KeysRow, OneTimeKey};
use super::postgres::PgGroupStore;
use super::{StoreResult, rules, unix_ms};

impl KeyStore for PgGroupStore {
    async fn upload_keys(
        &self,
        user_id: &str,
        device_id: &str,
        k: &DeviceKeys,
        one_time: &[OneTimeKey],
    ) -> StoreResult<u32> {
        rules::id("user_id", user_id)?;
        rules::id("device_id", device_id)?;
        keys::upload(k, one_time)?;
        let mut tx = self.pool.begin().await?;
        // One upload per user at a time, so the device and key limits hold
        // under concurrent first uploads.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT identity_key FROM device_keys WHERE user_id = $1 AND device_id = $2 FOR UPDATE")
                .bind(user_id)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?;
        keys::same_identity(device_id, stored.as_deref(), k)?;
        let ids: Vec<&str> = one_time.iter().map(|o| o.key_id.as_str()).collect();
        let (devices, held, known): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM device_keys WHERE user_id = $1), \
             (SELECT count(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND NOT claimed), \
             (SELECT count(DISTINCT key_id) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 \
               AND key_id = ANY($3))",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let held_after = held as usize + distinct.len() - known as usize;
        keys::room_for(stored.is_none(), devices as usize, held_after)?;
        // The identity key is only ever written once: a racing first upload
        // with another key updates nothing here and is refused.
        let written = sqlx::query(
            "INSERT INTO device_keys AS d (user_id, device_id, identity_key, signed_prekey, signed_prekey_signature, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET signed_prekey = EXCLUDED.signed_prekey, \
               signed_prekey_signature = EXCLUDED.signed_prekey_signature, updated_at_ms = EXCLUDED.updated_at_ms \
             WHERE d.identity_key = EXCLUDED.identity_key",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&k.identity_key)
        .bind(&k.signed_prekey)
        .bind(&k.signed_prekey_signature)
        .bind(unix_ms())
        .execute(&mut *tx)
        .await?;
        if written.rows_affected() == 0 {
            return Err(keys::identity_taken(device_id));
        }
        let public: Vec<&[u8]> = one_time.iter().map(|o| o.public_key.as_slice()).collect();
        sqlx::query(
            "INSERT INTO one_time_keys (user_id, device_id, key_id, public_key) \
             SELECT $1, $2, k.key_id, k.public_key FROM unnest($3::text[], $4::bytea[]) AS k(key_id, public_key) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&ids)
        .bind(&public)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held_after as u32)
    }

    async fn claim_group_keys(
        &self,
        actor: &str,
        device_id: &str,
        group_id: &str,
        user_ids: &[String],
    ) -> StoreResult<Vec<DeviceBundle>> {
        rules::id("group_id", group_id)?;
        rules::id("device_id", device_id)?;
        keys::claim_users(user_ids)?;
        let mut tx = self.pool.begin().await?;
        PgGroupStore::visible(&mut tx, actor, group_id).await?;
        let devices: Vec<KeysRow> = sqlx::query_as(
            "SELECT k.user_id, k.device_id, k.identity_key, k.signed_prekey, k.signed_prekey_signature \
             FROM group_members m JOIN device_keys k ON k.user_id = m.user_id \
             WHERE m.group_id = $1 AND m.user_id = ANY($4) AND NOT (k.user_id = $2 AND k.device_id = $3) \
             ORDER BY k.user_id, k.device_id",
        )
        .bind(group_id)
        .bind(actor)
        .bind(device_id)
        .bind(user_ids)
        .fetch_all(&mut *tx)
        .await?;
        let users: Vec<&str> = devices.iter().map(|d| d.user_id.as_str()).collect();
        let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        // One key per device; SKIP LOCKED: two members claiming at once get
        // different keys instead of waiting for each other.
        let claimed: Vec<ClaimedRow> = sqlx::query_as(
            "WITH pick AS (SELECT o.user_id, o.device_id, o.key_id \
               FROM unnest($1::text[], $2::text[]) AS d(user_id, device_id) \
               CROSS JOIN LATERAL (SELECT k.user_id, k.device_id, k.key_id FROM one_time_keys k \
                 WHERE k.user_id = d.user_id AND k.device_id = d.device_id AND NOT k.claimed \
                 ORDER BY k.key_id LIMIT 1 FOR UPDATE SKIP LOCKED) o) \
             UPDATE one_time_keys k SET claimed = true FROM pick p \
             WHERE k.user_id = p.user_id AND k.device_id = p.device_id AND k.key_id = p.key_id \
             RETURNING k.user_id, k.device_id, k.key_id, k.public_key",
        )
        .bind(&users)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(keys::bundles(devices, claimed))
    }
}
