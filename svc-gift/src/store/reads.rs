//! The reads and the host change, whose SQL both backends accept as it
//! is: written once, expanded into each backend's `impl GiftStore`.

/// `set_host`, `room`, `room_totals` and `recipient_totals` over
/// `self.pool`.
macro_rules! shared_reads {
    () => {
        async fn set_host(&self, room_id: &str, host_user_id: &str) -> StoreResult<Room> {
            rules::id("room_id", room_id)?;
            if !host_user_id.is_empty() {
                rules::user("host_user_id", host_user_id)?;
            }
            let row: RoomRow = sqlx::query_as(
                "INSERT INTO gift_rooms AS r (room_id, host_user_id) VALUES ($1, $2) \
             ON CONFLICT (room_id) DO UPDATE SET host_user_id = excluded.host_user_id \
             RETURNING room_id, last_seq, host_user_id",
            )
            .bind(room_id)
            .bind(host_user_id)
            .fetch_one(&self.pool)
            .await?;
            Ok(row.into())
        }

        async fn room(&self, room_id: &str) -> StoreResult<Room> {
            rules::id("room_id", room_id)?;
            let row: Option<RoomRow> =
                sqlx::query_as("SELECT room_id, last_seq, host_user_id FROM gift_rooms WHERE room_id = $1")
                    .bind(room_id)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(Room::from).unwrap_or_else(|| Room {
                room_id: room_id.to_owned(),
                ..Room::default()
            }))
        }

        async fn room_totals(&self, room_id: &str, top: u32) -> StoreResult<RoomTotals> {
            rules::id("room_id", room_id)?;
            let mut conn = self.pool.acquire().await?;
            let items = sqlx::query_as::<_, TotalRow>(
                "SELECT gift_id AS key, count, value FROM gift_room_totals WHERE room_id = $1 ORDER BY gift_id",
            )
            .bind(room_id)
            .fetch_all(&mut *conn)
            .await?;
            let top_senders = sqlx::query_as::<_, TotalRow>(
                "SELECT sender_user_id AS key, count, value FROM gift_room_senders WHERE room_id = $1 \
             ORDER BY value DESC, sender_user_id LIMIT $2",
            )
            .bind(room_id)
            .bind(i64::from(rules::page(top)))
            .fetch_all(&mut *conn)
            .await?;
            Ok(RoomTotals {
                items: items.into_iter().map(ItemTotal::from).collect(),
                top_senders: top_senders.into_iter().map(ItemTotal::from).collect(),
            })
        }

        async fn due_co_streams(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<DueCoStream>> {
            let rows: Vec<(String, i64, String)> = sqlx::query_as(
                "SELECT room_id, request_seq, addressee_user_id FROM gift_co_streams \
                 WHERE state = 0 AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2",
            )
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(room_id, seq, addressee_user_id)| DueCoStream {
                    room_id,
                    request_seq: seq as u64,
                    addressee_user_id,
                })
                .collect())
        }

        async fn pending(&self, room_id: &str, user_id: &str) -> StoreResult<Vec<Record>> {
            rules::id("room_id", room_id)?;
            rules::user("user_id", user_id)?;
            let sql = format!(
                "SELECT {} FROM gift_co_streams c JOIN gift_records r \
                   ON r.room_id = c.room_id AND r.seq = c.request_seq \
                 WHERE c.room_id = $1 AND c.addressee_user_id = $2 AND c.state = 0 AND c.expires_at_ms > $3 \
                 ORDER BY c.request_seq LIMIT 500",
                super::rows::RECORD_COLUMNS
                    .split(", ")
                    .map(|c| format!("r.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let rows: Vec<RecordRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(room_id)
                .bind(user_id)
                .bind(unix_ms())
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(Record::from).collect())
        }

        async fn recipient_totals(&self, user_id: &str) -> StoreResult<Vec<ItemTotal>> {
            rules::user("user_id", user_id)?;
            let rows = sqlx::query_as::<_, TotalRow>(
                "SELECT gift_id AS key, count, value FROM gift_recipient_totals WHERE recipient_user_id = $1 \
             ORDER BY gift_id",
            )
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(ItemTotal::from).collect())
        }
    };
}

/// `pull` over `self.pool`, with the backend's query for a recipient (or
/// none) from `$sql`.
macro_rules! shared_pull {
    ($sql:expr) => {
        async fn pull(&self, room_id: &str, after: u64, limit: u32, recipient: Option<&str>) -> StoreResult<Page> {
            rules::id("room_id", room_id)?;
            if let Some(user) = recipient {
                rules::user("target_user_id", user)?;
            }
            let limit = rules::page(limit) as i64;
            let after =
                i64::try_from(after).map_err(|_| StoreError::InvalidArgument("after_seq is out of range".into()))?;
            let mut conn = self.pool.acquire().await?;
            let last: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM gift_rooms WHERE room_id = $1")
                .bind(room_id)
                .fetch_optional(&mut *conn)
                .await?;
            let sql = $sql(recipient);
            let mut records: Vec<Record> = sqlx::query_as::<_, RecordRow>(sqlx::AssertSqlSafe(sql))
                .bind(room_id)
                .bind(after)
                .bind(limit + 1)
                .bind(recipient)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(Record::from)
                .collect();
            let has_more = records.len() as i64 > limit;
            records.truncate(limit as usize);
            Ok(Page {
                records,
                has_more,
                last_seq: last.unwrap_or(0) as u64,
            })
        }
    };
}
