//! SQLite: device keys and one-time key claims (`KeyStore`), in the single
//! writer's transactions.

use super::keys::{self, ClaimedRow, DeviceBundle, DeviceKeys, KeyStore, KeysRow, OneTimeKey};
use super::sqlite::{SqliteGroupStore, WRITE};
use super::{StoreResult, rules, unix_ms};

impl KeyStore for SqliteGroupStore {
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
        let mut tx = self.pool.begin_with(WRITE).await?;
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT identity_key FROM device_keys WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?;
        keys::same_identity(device_id, stored.as_deref(), k)?;
        let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM device_keys WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut held_after: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND NOT claimed",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_one(&mut *tx)
        .await?;
        let mut distinct: Vec<&OneTimeKey> = one_time.iter().collect();
        distinct.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        distinct.dedup_by(|a, b| a.key_id == b.key_id);
        for o in &distinct {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3")
                    .bind(user_id)
                    .bind(device_id)
                    .bind(&o.key_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            held_after += i64::from(known.is_none());
        }
        keys::room_for(stored.is_none(), devices as usize, held_after as usize)?;
        sqlx::query(
            "INSERT INTO device_keys (user_id, device_id, identity_key, signed_prekey, signed_prekey_signature, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET signed_prekey = excluded.signed_prekey, \
               signed_prekey_signature = excluded.signed_prekey_signature, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&k.identity_key)
        .bind(&k.signed_prekey)
        .bind(&k.signed_prekey_signature)
        .bind(unix_ms())
        .execute(&mut *tx)
        .await?;
        for o in distinct {
            sqlx::query(
                "INSERT INTO one_time_keys (user_id, device_id, key_id, public_key) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(&o.key_id)
            .bind(&o.public_key)
            .execute(&mut *tx)
            .await?;
        }
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
        let mut tx = self.pool.begin_with(WRITE).await?;
        SqliteGroupStore::visible(&mut tx, actor, group_id).await?;
        let devices: Vec<KeysRow> = sqlx::query_as(
            "SELECT k.user_id, k.device_id, k.identity_key, k.signed_prekey, k.signed_prekey_signature \
             FROM group_members m JOIN device_keys k ON k.user_id = m.user_id \
             WHERE m.group_id = $1 AND m.user_id IN (SELECT value FROM json_each($4)) \
               AND NOT (k.user_id = $2 AND k.device_id = $3) ORDER BY k.user_id, k.device_id",
        )
        .bind(group_id)
        .bind(actor)
        .bind(device_id)
        .bind(serde_json::to_string(user_ids).expect("strings serialise"))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::new();
        for d in &devices {
            let row: Option<ClaimedRow> = sqlx::query_as(
                "UPDATE one_time_keys SET claimed = 1 WHERE rowid = (SELECT rowid FROM one_time_keys \
                   WHERE user_id = $1 AND device_id = $2 AND NOT claimed ORDER BY key_id LIMIT 1) \
                 RETURNING user_id, device_id, key_id, public_key",
            )
            .bind(&d.user_id)
            .bind(&d.device_id)
            .fetch_optional(&mut *tx)
            .await?;
            claimed.extend(row);
        }
        tx.commit().await?;
        Ok(keys::bundles(devices, claimed))
    }
}
