//! The `hubbub.v1.Group` handlers: who acts, cheap argument checks, one
//! store call, the answer, and the notify of what the call committed.
//!
//! # Who acts
//! - A gateway calls for a user: the acting user is the one its per-call
//!   credential names (`Caller::acting_for`), and the request's
//!   `actor_user_id` must be that same user (PERMISSION_DENIED otherwise).
//! - A backend service holding scope `group.post` (sends) or `group.manage`
//!   (create, add, remove) acts for the user its request names in
//!   `actor_user_id`: the platform's backend is trusted to act for any user
//!   (a bot posting as a user, an admin tool managing groups), and the
//!   policy table (`kit/src/policy.rs`) lets it call nothing else.
//!
//! Everything the store decides (membership, roles, limits, positions) it
//! refuses with its own precise codes (`StoreError` maps to `Status`).

use crate::commit::GroupCommit;
use crate::convert;
use crate::metrics::GroupMetrics;
use crate::notify::Notifier;
use crate::store::keys::{DeviceKeys, KeyStore, OneTimeKey};
use crate::store::{Dispatch, GroupStore, NewGroup, NewMessage, Position};
use hubbub_kit::ids::{self, MAX_ID_BYTES};
use hubbub_kit::service_auth::{self, Role};
use hubbub_proto::v1::{self as pb, group_server::Group};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// ListMyGroups page size when the caller asks for 0.
const DEFAULT_LIST_PAGE: u32 = 100;

/// Serves `hubbub.v1.Group` over a store.
#[derive(Debug)]
pub struct GroupApi<S> {
    store: Arc<S>,
    sends: GroupCommit,
    notifier: Notifier,
    metrics: GroupMetrics,
    max_page: u32,
}

impl<S: GroupStore> GroupApi<S> {
    /// Handlers over `store`, notifying commits through `notifier`; pages of
    /// ListMyGroups hold at most `max_page` groups.
    pub fn new(store: Arc<S>, sends: GroupCommit, notifier: Notifier, metrics: GroupMetrics, max_page: u32) -> Self {
        Self {
            store,
            sends,
            notifier,
            metrics,
            max_page: max_page.max(1),
        }
    }

    /// Counts and notifies what a commit wrote into mailboxes.
    fn dispatched(&self, dispatch: Option<Dispatch>) {
        if let Some(dispatch) = dispatch {
            self.metrics.mailbox_entries.inc_by(dispatch.deliveries.len() as u64);
            // A membership event is a message too, but it is not pushed.
            self.notifier
                .notify(&dispatch.message.group_id, dispatch.deliveries, None);
        }
    }
}

/// The user a call acts for; see the module documentation.
fn actor<T>(request: &Request<T>, claimed: &str) -> Result<String, Status> {
    let caller = service_auth::caller(request)?;
    match &caller.acting_for {
        Some(identity) => {
            let user = identity
                .user_id()
                .ok_or_else(|| Status::permission_denied("group calls are made for a signed-in user, not a guest"))?;
            if claimed != user {
                return Err(Status::permission_denied(format!(
                    "actor_user_id {claimed:?} is not the user the credential acts for ({user:?}); \
                     a caller acts only for the user it was credentialed for"
                )));
            }
            Ok(user.to_owned())
        }
        None if caller.role == Role::Service => {
            user_id("actor_user_id", claimed)?;
            Ok(claimed.to_owned())
        }
        None => Err(Status::permission_denied(format!(
            "{} {:?} called the group service without acting for a user",
            caller.role, caller.instance
        ))),
    }
}

/// A user id: 1 to 128 bytes.
fn user_id(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes; the limit is {MAX_ID_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// A list of user ids, each 1 to 128 bytes; at least one when `required`.
fn user_ids(field: &str, values: &[String], required: bool) -> Result<(), Status> {
    if required && values.is_empty() {
        return Err(Status::invalid_argument(format!("{field} must name at least one user")));
    }
    for (index, value) in values.iter().enumerate() {
        user_id(&format!("{field}[{index}]"), value)?;
    }
    Ok(())
}

#[tonic::async_trait]
impl<S: GroupStore + KeyStore> Group for GroupApi<S> {
    #[tracing::instrument(name = "group.create", skip_all)]
    async fn create_group(
        &self,
        request: Request<pb::GroupCreateGroupRequest>,
    ) -> Result<Response<pb::GroupCreateGroupResponse>, Status> {
        let owner = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        user_ids("member_user_ids", &call.member_user_ids, false)?;
        let created = self
            .store
            .create_group(&NewGroup {
                owner_user_id: owner,
                name: call.name,
                member_user_ids: call.member_user_ids,
                end_to_end_encrypted: call.end_to_end_encrypted,
                client_key: call.client_key,
            })
            .await?;
        self.dispatched(created.dispatch);
        Ok(Response::new(pb::GroupCreateGroupResponse {
            group: Some(convert::group(created.group.group)),
            members: created.group.members.into_iter().map(convert::member).collect(),
        }))
    }

    #[tracing::instrument(name = "group.add_members", skip_all)]
    async fn add_group_members(
        &self,
        request: Request<pb::GroupAddGroupMembersRequest>,
    ) -> Result<Response<pb::GroupAddGroupMembersResponse>, Status> {
        let actor = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        user_ids("user_ids", &call.user_ids, true)?;
        let role = convert::requested_role(call.role)?;
        let changed = self
            .store
            .add_members(&actor, &call.group_id, &call.user_ids, role)
            .await?;
        self.dispatched(changed.dispatch);
        Ok(Response::new(pb::GroupAddGroupMembersResponse {
            group: Some(convert::group(changed.group)),
            added: changed.changed.into_iter().map(convert::member).collect(),
        }))
    }

    #[tracing::instrument(name = "group.remove_members", skip_all)]
    async fn remove_group_members(
        &self,
        request: Request<pb::GroupRemoveGroupMembersRequest>,
    ) -> Result<Response<pb::GroupRemoveGroupMembersResponse>, Status> {
        let actor = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        user_ids("user_ids", &call.user_ids, true)?;
        let changed = self
            .store
            .remove_members(&actor, &call.group_id, &call.user_ids)
            .await?;
        // The removal event reaches the removed users too: it is the last
        // item of the group in their mailboxes.
        self.dispatched(changed.dispatch);
        Ok(Response::new(pb::GroupRemoveGroupMembersResponse {
            group: Some(convert::group(changed.group)),
            removed_user_ids: changed.changed.into_iter().map(|m| m.user_id).collect(),
        }))
    }

    #[tracing::instrument(name = "group.list_mine", skip_all)]
    async fn list_my_groups(
        &self,
        request: Request<pb::GroupListMyGroupsRequest>,
    ) -> Result<Response<pb::GroupListMyGroupsResponse>, Status> {
        let actor = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        let after = convert::after_group(&call.page_token)?;
        let page = match call.page_size {
            0 => DEFAULT_LIST_PAGE.min(self.max_page),
            asked => asked.min(self.max_page),
        };
        // One more than the page tells whether another page follows; at the
        // store's cap that is not possible, and a full page gets a token (the
        // page after it may then be empty, with no token).
        let ask = if page < self.max_page { page + 1 } else { page };
        let mut groups = self.store.list_groups(&actor, after.as_deref(), ask).await?;
        let more = groups.len() > page as usize || (ask == page && groups.len() == page as usize);
        groups.truncate(page as usize);
        let next_page_token = match (more, groups.last()) {
            (true, Some(last)) => convert::page_token(&last.group.group_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::GroupListMyGroupsResponse {
            groups: groups.into_iter().map(convert::membership).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(name = "group.send", skip_all)]
    async fn send_group_message(
        &self,
        request: Request<pb::GroupSendGroupMessageRequest>,
    ) -> Result<Response<pb::GroupSendGroupMessageResponse>, Status> {
        let sender = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        if call.sender_device_id.len() > MAX_ID_BYTES {
            return Err(Status::invalid_argument(format!(
                "sender_device_id is {} bytes; the limit is {MAX_ID_BYTES}",
                call.sender_device_id.len()
            )));
        }
        // The store checks the key, content type and body with the limits
        // it was configured with.
        // Group commit: counted and notified by its lane (commit.rs).
        let sent = self
            .sends
            .send(NewMessage {
                group_id: call.group_id,
                sender_user_id: sender,
                sender_device_id: call.sender_device_id,
                client_message_id: call.client_message_id,
                content_type: call.content_type,
                body: call.body.into(),
            })
            .await?;
        Ok(Response::new(pb::GroupSendGroupMessageResponse {
            message: Some(convert::message(sent.message)),
            duplicate: sent.duplicate,
        }))
    }

    #[tracing::instrument(name = "group.pull", skip_all)]
    async fn pull_mailbox(
        &self,
        request: Request<pb::GroupPullMailboxRequest>,
    ) -> Result<Response<pb::GroupPullMailboxResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("device_id", &call.device_id)?;
        let pulled = self
            .store
            .pull(
                &user,
                &call.device_id,
                Position {
                    after: call.after_mailbox_seq,
                    ack: call.ack_mailbox_seq,
                },
                call.limit,
            )
            .await?;
        Ok(Response::new(convert::pulled(pulled)))
    }

    #[tracing::instrument(name = "group.ack", skip_all)]
    async fn ack(&self, request: Request<pb::GroupAckRequest>) -> Result<Response<pb::GroupAckResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("device_id", &call.device_id)?;
        let cursor = self.store.ack(&user, &call.device_id, call.mailbox_seq).await?;
        Ok(Response::new(pb::GroupAckResponse {
            cursor: Some(convert::cursor(cursor)),
        }))
    }

    #[tracing::instrument(name = "group.mark_read", skip_all)]
    async fn mark_read(
        &self,
        request: Request<pb::GroupMarkReadRequest>,
    ) -> Result<Response<pb::GroupMarkReadResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("device_id", &call.device_id)?;
        ids::validate("group_id", &call.group_id)?;
        let marked = self
            .store
            .mark_read(&user, &call.device_id, &call.group_id, call.seq, call.mailbox_seq)
            .await?;
        Ok(Response::new(pb::GroupMarkReadResponse {
            read_seq: marked.read_seq,
            cursor: Some(convert::cursor(marked.cursor)),
        }))
    }

    #[tracing::instrument(name = "group.read_receipts", skip_all)]
    async fn get_read_receipts(
        &self,
        request: Request<pb::GroupGetReadReceiptsRequest>,
    ) -> Result<Response<pb::GroupGetReadReceiptsResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        if call.seq == 0 {
            return Err(Status::invalid_argument("seq must be at least 1"));
        }
        let receipts = self.store.receipts(&user, &call.group_id, call.seq).await?;
        Ok(Response::new(pb::GroupGetReadReceiptsResponse {
            reader_user_ids: receipts.reader_user_ids,
            unread_count: receipts.unread_count,
        }))
    }

    #[tracing::instrument(name = "group.read_positions", skip_all)]
    async fn get_read_positions(
        &self,
        request: Request<pb::GroupGetReadPositionsRequest>,
    ) -> Result<Response<pb::GroupGetReadPositionsResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        let positions = self.store.read_positions(&user, &call.group_id).await?;
        Ok(Response::new(pb::GroupGetReadPositionsResponse {
            positions: positions
                .into_iter()
                .map(|p| pb::GroupReadPosition {
                    user_id: p.user_id,
                    read_seq: p.read_seq,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(name = "group.members", skip_all)]
    async fn get_group_members(
        &self,
        request: Request<pb::GroupGetGroupMembersRequest>,
    ) -> Result<Response<pb::GroupGetGroupMembersResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        let found = self.store.members(&user, &call.group_id).await?;
        Ok(Response::new(pb::GroupGetGroupMembersResponse {
            group: Some(convert::group(found.group)),
            members: found.members.into_iter().map(convert::member).collect(),
        }))
    }

    #[tracing::instrument(name = "group.transfer", skip_all)]
    async fn transfer_group_ownership(
        &self,
        request: Request<pb::GroupTransferGroupOwnershipRequest>,
    ) -> Result<Response<pb::GroupTransferGroupOwnershipResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        user_id("new_owner_user_id", &call.new_owner_user_id)?;
        let changed = self
            .store
            .transfer_ownership(&user, &call.group_id, &call.new_owner_user_id)
            .await?;
        self.dispatched(changed.dispatch);
        Ok(Response::new(pb::GroupTransferGroupOwnershipResponse {
            group: Some(convert::group(changed.group)),
        }))
    }

    #[tracing::instrument(name = "group.history", skip_all)]
    async fn get_group_history(
        &self,
        request: Request<pb::GroupGetGroupHistoryRequest>,
    ) -> Result<Response<pb::GroupGetGroupHistoryResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        let page = self
            .store
            .history(&user, &call.group_id, call.before_seq, call.limit)
            .await?;
        Ok(Response::new(pb::GroupGetGroupHistoryResponse {
            messages: page.messages.into_iter().map(convert::message).collect(),
            has_more: page.has_more,
            begin_seq: page.begin_seq,
            expired_through_seq: page.expired_through_seq,
        }))
    }

    #[tracing::instrument(name = "group.clear_history", skip_all)]
    async fn clear_group_history(
        &self,
        request: Request<pb::GroupClearGroupHistoryRequest>,
    ) -> Result<Response<pb::GroupClearGroupHistoryResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        let begin_seq = self.store.clear_history(&user, &call.group_id).await?;
        Ok(Response::new(pb::GroupClearGroupHistoryResponse { begin_seq }))
    }

    #[tracing::instrument(name = "group.cursor", skip_all)]
    async fn get_mailbox_cursor(
        &self,
        request: Request<pb::GroupGetMailboxCursorRequest>,
    ) -> Result<Response<pb::GroupGetMailboxCursorResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("device_id", &call.device_id)?;
        let (cursor, head) = self.store.cursor(&user, &call.device_id).await?;
        Ok(Response::new(pb::GroupGetMailboxCursorResponse {
            cursor: Some(convert::cursor(cursor)),
            head_mailbox_seq: head,
        }))
    }

    #[tracing::instrument(name = "group.upload_keys", skip_all)]
    async fn upload_device_keys(
        &self,
        request: Request<pb::GroupUploadDeviceKeysRequest>,
    ) -> Result<Response<pb::GroupUploadDeviceKeysResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("device_id", &call.device_id)?;
        let keys = call.keys.ok_or_else(|| {
            Status::invalid_argument("keys are required: the device's identity key and signed prekey")
        })?;
        let keys = DeviceKeys {
            identity_key: keys.identity_key.into(),
            signed_prekey: keys.signed_prekey.into(),
            signed_prekey_signature: keys.signed_prekey_signature.into(),
        };
        let one_time: Vec<OneTimeKey> = call
            .one_time_keys
            .into_iter()
            .map(|k| OneTimeKey {
                key_id: k.key_id,
                public_key: k.public_key.into(),
            })
            .collect();
        let count = self.store.upload_keys(&user, &call.device_id, &keys, &one_time).await?;
        Ok(Response::new(pb::GroupUploadDeviceKeysResponse {
            one_time_key_count: count,
        }))
    }

    #[tracing::instrument(name = "group.claim_keys", skip_all)]
    async fn claim_group_keys(
        &self,
        request: Request<pb::GroupClaimGroupKeysRequest>,
    ) -> Result<Response<pb::GroupClaimGroupKeysResponse>, Status> {
        let user = actor(&request, &request.get_ref().actor_user_id)?;
        let call = request.into_inner();
        ids::validate("group_id", &call.group_id)?;
        ids::validate("device_id", &call.device_id)?;
        let bundles = self
            .store
            .claim_group_keys(&user, &call.device_id, &call.group_id, &call.user_ids)
            .await?;
        Ok(Response::new(pb::GroupClaimGroupKeysResponse {
            devices: bundles.into_iter().map(convert::bundle).collect(),
        }))
    }
}
