//! SQLite: groups and membership, as in `postgres_groups.rs`. Every change
//! is itself a message of the group, written by `append` in the same
//! transaction.

use super::rows::{GroupRow, MemberRow, MembershipRow};
use super::rules;
use super::sqlite::SqliteGroupStore;
use super::sqlite::{WRITE, json};
use super::*;

impl SqliteGroupStore {
    pub(super) async fn create(&self, new: &NewGroup) -> StoreResult<Created> {
        let members = rules::new_group(new, &self.limits)?;
        let now = unix_ms();
        let group_id = rules::new_group_id();
        let mut tx = self.pool.begin_with(WRITE).await?;
        if !new.client_key.is_empty() {
            // A concurrent create with the same key waits on this unique
            // index until the first commits, then finds its group.
            let inserted = sqlx::query(
                "INSERT INTO group_create_keys (owner_user_id, client_key, group_id) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&new.owner_user_id)
            .bind(&new.client_key)
            .bind(&group_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                let g = sqlx::query_as::<_, GroupRow>(concat!(
                    "SELECT ",
                    group_columns!(),
                    " FROM group_create_keys k JOIN groups g ON g.group_id = k.group_id \
                     WHERE k.owner_user_id = $1 AND k.client_key = $2"
                ))
                .bind(&new.owner_user_id)
                .bind(&new.client_key)
                .fetch_one(&mut *tx)
                .await?;
                let group = Self::members_of(&mut tx, g).await?;
                tx.commit().await?;
                return Ok(Created {
                    group,
                    existed: true,
                    dispatch: None,
                });
            }
        }
        let mut g = GroupRow {
            group_id,
            name: new.name.clone(),
            owner_user_id: new.owner_user_id.clone(),
            member_count: members.len() as i64 + 1,
            created_at_ms: now,
            e2e: new.end_to_end_encrypted,
            last_seq: 0,
            epoch: 1,
        };
        sqlx::query(
            "INSERT INTO groups (group_id, name, owner_user_id, e2e, created_at_ms, last_seq, epoch, member_count) \
             VALUES ($1, $2, $3, $4, $5, 0, 1, $6)",
        )
        .bind(&g.group_id)
        .bind(&g.name)
        .bind(&g.owner_user_id)
        .bind(g.e2e)
        .bind(now)
        .bind(g.member_count)
        .execute(&mut *tx)
        .await?;
        let mut users = vec![new.owner_user_id.clone()];
        users.extend(members.iter().cloned());
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, role, joined_at_ms, begin_seq) \
             SELECT $1, u.value, CASE WHEN u.key = 0 THEN $3 ELSE $5 END, $4, 1 FROM json_each($2) AS u",
        )
        .bind(&g.group_id)
        .bind(json(&users))
        .bind(Role::Owner as i32)
        .bind(now)
        .bind(Role::Member as i32)
        .execute(&mut *tx)
        .await?;
        let body = rules::event_body("created", &new.owner_user_id, &members, None, 1);
        let dispatch = Self::append(&mut tx, &mut g, rules::event("event-1", &body, now)).await?;
        let group = Self::members_of(&mut tx, g).await?;
        tx.commit().await?;
        Ok(Created {
            group,
            existed: false,
            dispatch: Some(dispatch),
        })
    }

    pub(super) async fn add(
        &self,
        actor: &str,
        group_id: &str,
        user_ids: &[String],
        role: Role,
    ) -> StoreResult<MembersChanged> {
        rules::id("group_id", group_id)?;
        let users = rules::user_list(user_ids)?;
        if role == Role::Owner {
            return Err(rules::may_add(actor, Role::Owner, role).unwrap_err());
        }
        let now = unix_ms();
        let mut tx = self.pool.begin_with(WRITE).await?;
        let mut g = Self::lock_group(&mut tx, group_id).await?;
        let actor_role = rules::member(actor, group_id, Self::role(&mut tx, group_id, actor).await?)?;
        rules::may_add(actor, actor_role, role)?;
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM group_members WHERE group_id = $1 AND user_id IN (SELECT value FROM json_each($2))",
        )
        .bind(group_id)
        .bind(json(&users))
        .fetch_all(&mut *tx)
        .await?;
        let added: Vec<String> = users.into_iter().filter(|u| !existing.contains(u)).collect();
        if added.is_empty() {
            return Ok(MembersChanged {
                group: g.into(),
                changed: Vec::new(),
                dispatch: None,
            });
        }
        rules::room_for(g.member_count as u64, added.len() as u64, &self.limits, group_id)?;
        // Added members see history from the event announcing them.
        let begin = g.last_seq + 1;
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, role, joined_at_ms, begin_seq) \
             SELECT $1, value, $3, $4, $5 FROM json_each($2)",
        )
        .bind(group_id)
        .bind(json(&added))
        .bind(role as i32)
        .bind(now)
        .bind(begin)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE groups SET epoch = epoch + 1, member_count = member_count + $2 WHERE group_id = $1")
            .bind(group_id)
            .bind(added.len() as i64)
            .execute(&mut *tx)
            .await?;
        g.epoch += 1;
        g.member_count += added.len() as i64;
        let body = rules::event_body("members_added", actor, &added, Some(role), g.epoch as u64);
        let key = format!("event-{begin}");
        let dispatch = Self::append(&mut tx, &mut g, rules::event(&key, &body, now)).await?;
        tx.commit().await?;
        let changed = added
            .into_iter()
            .map(|user_id| Member {
                user_id,
                role,
                joined_at_ms: now,
            })
            .collect();
        Ok(MembersChanged {
            group: g.into(),
            changed,
            dispatch: Some(dispatch),
        })
    }

    pub(super) async fn remove(&self, actor: &str, group_id: &str, user_ids: &[String]) -> StoreResult<MembersChanged> {
        rules::id("group_id", group_id)?;
        let users = rules::user_list(user_ids)?;
        let now = unix_ms();
        let mut tx = self.pool.begin_with(WRITE).await?;
        let mut g = Self::lock_group(&mut tx, group_id).await?;
        let actor_role = rules::member(actor, group_id, Self::role(&mut tx, group_id, actor).await?)?;
        let targets: Vec<Member> = sqlx::query_as::<_, MemberRow>(
            "SELECT user_id, role, joined_at_ms FROM group_members WHERE group_id = $1 AND user_id IN (SELECT value FROM json_each($2)) \
             ORDER BY user_id",
        )
        .bind(group_id)
        .bind(json(&users))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(Member::from)
        .collect();
        for t in &targets {
            rules::may_remove(actor, actor_role, &t.user_id, t.role)?;
        }
        if targets.is_empty() {
            return Ok(MembersChanged {
                group: g.into(),
                changed: Vec::new(),
                dispatch: None,
            });
        }
        let removed: Vec<String> = targets.iter().map(|t| t.user_id.clone()).collect();
        g.epoch += 1;
        // The event goes out before the rows are deleted: it is the last
        // message the removed members receive, so their devices learn it.
        let body = rules::event_body("members_removed", actor, &removed, None, g.epoch as u64);
        let key = format!("event-{}", g.last_seq + 1);
        let dispatch = Self::append(&mut tx, &mut g, rules::event(&key, &body, now)).await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id IN (SELECT value FROM json_each($2))")
            .bind(group_id)
            .bind(json(&removed))
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE groups SET epoch = epoch + 1, member_count = member_count - $2 WHERE group_id = $1")
            .bind(group_id)
            .bind(removed.len() as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        g.member_count -= removed.len() as i64;
        Ok(MembersChanged {
            group: g.into(),
            changed: targets,
            dispatch: Some(dispatch),
        })
    }

    pub(super) async fn transfer(&self, actor: &str, group_id: &str, new_owner: &str) -> StoreResult<MembersChanged> {
        rules::id("group_id", group_id)?;
        rules::id("new_owner", new_owner)?;
        let now = unix_ms();
        let mut tx = self.pool.begin_with(WRITE).await?;
        let mut g = Self::lock_group(&mut tx, group_id).await?;
        let actor_role = rules::member(actor, group_id, Self::role(&mut tx, group_id, actor).await?)?;
        rules::may_transfer(actor, actor_role)?;
        if new_owner == actor {
            return Ok(MembersChanged {
                group: g.into(),
                changed: Vec::new(),
                dispatch: None,
            });
        }
        rules::transfer_target(new_owner, group_id, Self::role(&mut tx, group_id, new_owner).await?)?;
        let mut changed: Vec<Member> = sqlx::query_as::<_, MemberRow>(
            "UPDATE group_members SET role = CASE WHEN user_id = $2 THEN 3 ELSE 2 END \
             WHERE group_id = $1 AND user_id IN ($2, $3) RETURNING user_id, role, joined_at_ms",
        )
        .bind(group_id)
        .bind(new_owner)
        .bind(actor)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(Member::from)
        .collect();
        changed.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        sqlx::query("UPDATE groups SET owner_user_id = $2 WHERE group_id = $1")
            .bind(group_id)
            .bind(new_owner)
            .execute(&mut *tx)
            .await?;
        g.owner_user_id = new_owner.to_owned();
        let body = rules::event_body(
            "ownership_transferred",
            actor,
            &[new_owner.to_owned()],
            Some(Role::Owner),
            g.epoch as u64,
        );
        let key = format!("event-{}", g.last_seq + 1);
        let dispatch = Self::append(&mut tx, &mut g, rules::event(&key, &body, now)).await?;
        tx.commit().await?;
        Ok(MembersChanged {
            group: g.into(),
            changed,
            dispatch: Some(dispatch),
        })
    }

    pub(super) async fn members(&self, actor: &str, group_id: &str) -> StoreResult<GroupWithMembers> {
        let mut conn = self.pool.acquire().await?;
        let g = sqlx::query_as::<_, GroupRow>(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups g WHERE g.group_id = $1"
        ))
        .bind(group_id)
        .fetch_optional(&mut *conn)
        .await?;
        let g = rules::found(group_id, g)?;
        let all = Self::members_of(&mut conn, g).await?;
        rules::member(
            actor,
            group_id,
            all.members.iter().find(|m| m.user_id == actor).map(|m| m.role),
        )?;
        Ok(all)
    }

    pub(super) async fn list(&self, user_id: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query_as::<_, MembershipRow>(concat!(
            "SELECT ",
            group_columns!(),
            ", m.role, m.joined_at_ms, m.begin_seq, m.read_seq FROM group_members m \
             JOIN groups g ON g.group_id = m.group_id WHERE m.user_id = $1 AND m.group_id > $2 \
             ORDER BY m.group_id LIMIT $3"
        ))
        .bind(user_id)
        .bind(after.unwrap_or(""))
        .bind(self.limits.page(limit) as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Membership::from).collect())
    }

    pub(super) async fn clear(&self, actor: &str, group_id: &str) -> StoreResult<u64> {
        let mut conn = self.pool.acquire().await?;
        Self::visible(&mut conn, actor, group_id).await?;
        let begin: i64 = sqlx::query_scalar(
            "UPDATE group_members SET begin_seq = MAX(begin_seq, (SELECT last_seq + 1 FROM groups WHERE group_id = $1)) \
             WHERE group_id = $1 AND user_id = $2 RETURNING begin_seq",
        )
        .bind(group_id)
        .bind(actor)
        .fetch_one(&mut *conn)
        .await?;
        Ok(begin as u64)
    }
}
