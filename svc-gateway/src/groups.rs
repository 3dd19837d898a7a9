//! `GroupLink`: the gateway's calls to the group service for its clients.
//! Each is made for the user the gateway verified, who travels in a
//! per-call credential; the request's `actor_user_id` says the same, so the
//! group service can check that the two agree. Calls acting for a device
//! (pull, ack, read) take the device from the session they name.

use crate::deadline;
use hubbub_kit::{auth::Identity, channel::TracedChannel, service_auth::Credentials};
use hubbub_proto::v1::{self as pb, group_client::GroupClient};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tonic::{Request, Status};

/// A client of the group service.
#[derive(Debug, Clone)]
pub struct GroupLink {
    client: GroupClient<TracedChannel>,
    credentials: Credentials,
    timeout: Duration,
    /// Bounds the on-Connect cursor checks in flight (a mass reconnect
    /// must not become as many calls at once; a check skipped costs only
    /// the early notify).
    checks: Arc<Semaphore>,
}

/// On-Connect cursor checks in flight per gateway.
const MAX_CHECKS: usize = 64;

impl GroupLink {
    /// Calls the group service on `channel` as `credentials`, each call
    /// bounded by `timeout`.
    pub fn new(channel: TracedChannel, credentials: Credentials, timeout: Duration) -> Self {
        Self {
            // Pages are cut near 2 MiB of bodies (plus one item) by the
            // group service, key claims at 50 users: 8 MiB is headroom.
            client: GroupClient::new(channel).max_decoding_message_size(8 * 1024 * 1024),
            credentials,
            timeout,
            checks: Arc::new(Semaphore::new(MAX_CHECKS)),
        }
    }

    fn request<T>(&self, user: &Identity, message: T) -> Request<T> {
        let mut request = Request::new(message);
        self.credentials.act_for(&mut request, user);
        deadline::bound(request, self.timeout)
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<tonic::Response<T>, Status>>) -> Result<T, Status> {
        deadline::answer(self.timeout, "the group service", call).await
    }

    /// ClientApi.CreateGroup.
    pub async fn create_group(
        &self,
        user: &Identity,
        call: pb::CreateGroupRequest,
    ) -> Result<pb::CreateGroupResponse, Status> {
        let request = self.request(
            user,
            pb::GroupCreateGroupRequest {
                actor_user_id: user.id().to_owned(),
                name: call.name,
                member_user_ids: call.member_user_ids,
                end_to_end_encrypted: call.end_to_end_encrypted,
                client_key: call.client_key,
            },
        );
        let answer = self.bounded(self.client.clone().create_group(request)).await?;
        Ok(pb::CreateGroupResponse {
            group: answer.group,
            members: answer.members,
        })
    }

    /// ClientApi.AddGroupMembers.
    pub async fn add_members(
        &self,
        user: &Identity,
        call: pb::AddGroupMembersRequest,
    ) -> Result<pb::AddGroupMembersResponse, Status> {
        let request = self.request(
            user,
            pb::GroupAddGroupMembersRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
                user_ids: call.user_ids,
                role: call.role,
            },
        );
        let answer = self.bounded(self.client.clone().add_group_members(request)).await?;
        Ok(pb::AddGroupMembersResponse {
            group: answer.group,
            added: answer.added,
        })
    }

    /// ClientApi.RemoveGroupMembers.
    pub async fn remove_members(
        &self,
        user: &Identity,
        call: pb::RemoveGroupMembersRequest,
    ) -> Result<pb::RemoveGroupMembersResponse, Status> {
        let request = self.request(
            user,
            pb::GroupRemoveGroupMembersRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
                user_ids: call.user_ids,
            },
        );
        let answer = self.bounded(self.client.clone().remove_group_members(request)).await?;
        Ok(pb::RemoveGroupMembersResponse {
            group: answer.group,
            removed_user_ids: answer.removed_user_ids,
        })
    }

    /// ClientApi.ListMyGroups.
    pub async fn list_my_groups(
        &self,
        user: &Identity,
        call: pb::ListMyGroupsRequest,
    ) -> Result<pb::ListMyGroupsResponse, Status> {
        let request = self.request(
            user,
            pb::GroupListMyGroupsRequest {
                actor_user_id: user.id().to_owned(),
                page_size: call.page_size,
                page_token: call.page_token,
            },
        );
        let answer = self.bounded(self.client.clone().list_my_groups(request)).await?;
        Ok(pb::ListMyGroupsResponse {
            groups: answer.groups,
            next_page_token: answer.next_page_token,
        })
    }

    /// ClientApi.SendGroupMessage.
    pub async fn send(
        &self,
        user: &Identity,
        call: pb::SendGroupMessageRequest,
    ) -> Result<pb::SendGroupMessageResponse, Status> {
        let request = self.request(
            user,
            pb::GroupSendGroupMessageRequest {
                actor_user_id: user.id().to_owned(),
                sender_device_id: call.device_id,
                group_id: call.group_id,
                client_message_id: call.client_message_id,
                content_type: call.content_type,
                body: call.body,
            },
        );
        let answer = self.bounded(self.client.clone().send_group_message(request)).await?;
        Ok(pb::SendGroupMessageResponse {
            message: answer.message,
            duplicate: answer.duplicate,
        })
    }

    /// ClientApi.PullMailbox, for `device` of `user`.
    pub async fn pull(
        &self,
        user: &Identity,
        device: &str,
        call: pb::PullMailboxRequest,
    ) -> Result<pb::PullMailboxResponse, Status> {
        let request = self.request(
            user,
            pb::GroupPullMailboxRequest {
                actor_user_id: user.id().to_owned(),
                device_id: device.to_owned(),
                after_mailbox_seq: call.after_mailbox_seq,
                limit: call.limit,
                ack_mailbox_seq: call.ack_mailbox_seq,
            },
        );
        let answer = self.bounded(self.client.clone().pull_mailbox(request)).await?;
        Ok(pb::PullMailboxResponse {
            items: answer.items,
            has_more: answer.has_more,
            cursor: answer.cursor,
            head_mailbox_seq: answer.head_mailbox_seq,
            trimmed_mailbox_seq: answer.trimmed_mailbox_seq,
        })
    }

    /// ClientApi.Ack, for `device` of `user`.
    pub async fn ack(&self, user: &Identity, device: &str, call: pb::AckRequest) -> Result<pb::AckResponse, Status> {
        let request = self.request(
            user,
            pb::GroupAckRequest {
                actor_user_id: user.id().to_owned(),
                device_id: device.to_owned(),
                mailbox_seq: call.mailbox_seq,
            },
        );
        let answer = self.bounded(self.client.clone().ack(request)).await?;
        Ok(pb::AckResponse { cursor: answer.cursor })
    }

    /// ClientApi.MarkRead, for `device` of `user`.
    pub async fn mark_read(
        &self,
        user: &Identity,
        device: &str,
        call: pb::MarkReadRequest,
    ) -> Result<pb::MarkReadResponse, Status> {
        let request = self.request(
            user,
            pb::GroupMarkReadRequest {
                actor_user_id: user.id().to_owned(),
                device_id: device.to_owned(),
                group_id: call.group_id,
                seq: call.seq,
                mailbox_seq: call.mailbox_seq,
            },
        );
        let answer = self.bounded(self.client.clone().mark_read(request)).await?;
        Ok(pb::MarkReadResponse {
            read_seq: answer.read_seq,
            cursor: answer.cursor,
        })
    }

    /// ClientApi.GetReadReceipts.
    pub async fn get_read_receipts(
        &self,
        user: &Identity,
        call: pb::GetReadReceiptsRequest,
    ) -> Result<pb::GetReadReceiptsResponse, Status> {
        let request = self.request(
            user,
            pb::GroupGetReadReceiptsRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
                seq: call.seq,
            },
        );
        let answer = self.bounded(self.client.clone().get_read_receipts(request)).await?;
        Ok(pb::GetReadReceiptsResponse {
            reader_user_ids: answer.reader_user_ids,
            unread_count: answer.unread_count,
        })
    }

    /// ClientApi.GetReadPositions.
    pub async fn get_read_positions(
        &self,
        user: &Identity,
        call: pb::GetReadPositionsRequest,
    ) -> Result<pb::GetReadPositionsResponse, Status> {
        let request = self.request(
            user,
            pb::GroupGetReadPositionsRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
            },
        );
        let answer = self.bounded(self.client.clone().get_read_positions(request)).await?;
        Ok(pb::GetReadPositionsResponse {
            positions: answer.positions,
        })
    }

    /// ClientApi.GetGroupMembers.
    pub async fn get_group_members(
        &self,
        user: &Identity,
        call: pb::GetGroupMembersRequest,
    ) -> Result<pb::GetGroupMembersResponse, Status> {
        let request = self.request(
            user,
            pb::GroupGetGroupMembersRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
            },
        );
        let answer = self.bounded(self.client.clone().get_group_members(request)).await?;
        Ok(pb::GetGroupMembersResponse {
            group: answer.group,
            members: answer.members,
        })
    }

    /// ClientApi.TransferGroupOwnership.
    pub async fn transfer_group_ownership(
        &self,
        user: &Identity,
        call: pb::TransferGroupOwnershipRequest,
    ) -> Result<pb::TransferGroupOwnershipResponse, Status> {
        let request = self.request(
            user,
            pb::GroupTransferGroupOwnershipRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
                new_owner_user_id: call.new_owner_user_id,
            },
        );
        let answer = self
            .bounded(self.client.clone().transfer_group_ownership(request))
            .await?;
        Ok(pb::TransferGroupOwnershipResponse { group: answer.group })
    }

    /// ClientApi.GetGroupHistory.
    pub async fn get_group_history(
        &self,
        user: &Identity,
        call: pb::GetGroupHistoryRequest,
    ) -> Result<pb::GetGroupHistoryResponse, Status> {
        let request = self.request(
            user,
            pb::GroupGetGroupHistoryRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
                before_seq: call.before_seq,
                limit: call.limit,
            },
        );
        let answer = self.bounded(self.client.clone().get_group_history(request)).await?;
        Ok(pb::GetGroupHistoryResponse {
            messages: answer.messages,
            has_more: answer.has_more,
            begin_seq: answer.begin_seq,
            expired_through_seq: answer.expired_through_seq,
        })
    }

    /// ClientApi.ClearGroupHistory.
    pub async fn clear_group_history(
        &self,
        user: &Identity,
        call: pb::ClearGroupHistoryRequest,
    ) -> Result<pb::ClearGroupHistoryResponse, Status> {
        let request = self.request(
            user,
            pb::GroupClearGroupHistoryRequest {
                actor_user_id: user.id().to_owned(),
                group_id: call.group_id,
            },
        );
        let answer = self.bounded(self.client.clone().clear_group_history(request)).await?;
        Ok(pb::ClearGroupHistoryResponse {
            begin_seq: answer.begin_seq,
        })
    }

    /// The mailbox head of `user` when `device` has items past its ack;
    /// `Ok(None)` too when too many checks are in flight already.
    pub async fn pending(&self, user: &Identity, device: &str) -> Result<Option<u64>, Status> {
        let Ok(_permit) = self.checks.clone().try_acquire_owned() else {
            return Ok(None);
        };
        let request = self.request(
            user,
            pb::GroupGetMailboxCursorRequest {
                actor_user_id: user.id().to_owned(),
                device_id: device.to_owned(),
            },
        );
        let answer = self.bounded(self.client.clone().get_mailbox_cursor(request)).await?;
        let acked = answer.cursor.map_or(0, |c| c.ack_seq);
        Ok((answer.head_mailbox_seq > acked).then_some(answer.head_mailbox_seq))
    }

    /// ClientApi.UploadDeviceKeys, for `device` of `user`.
    pub async fn upload_keys(
        &self,
        user: &Identity,
        device: &str,
        call: pb::UploadDeviceKeysRequest,
    ) -> Result<pb::UploadDeviceKeysResponse, Status> {
        let request = self.request(
            user,
            pb::GroupUploadDeviceKeysRequest {
                actor_user_id: user.id().to_owned(),
                device_id: device.to_owned(),
                keys: call.keys,
                one_time_keys: call.one_time_keys,
            },
        );
        let answer = self.bounded(self.client.clone().upload_device_keys(request)).await?;
        Ok(pb::UploadDeviceKeysResponse {
            one_time_key_count: answer.one_time_key_count,
        })
    }

    /// ClientApi.ClaimGroupKeys, for `device` of `user`.
    pub async fn claim_keys(
        &self,
        user: &Identity,
        device: &str,
        call: pb::ClaimGroupKeysRequest,
    ) -> Result<pb::ClaimGroupKeysResponse, Status> {
        let request = self.request(
            user,
            pb::GroupClaimGroupKeysRequest {
                actor_user_id: user.id().to_owned(),
                device_id: device.to_owned(),
                group_id: call.group_id,
                user_ids: call.user_ids,
            },
        );
        let answer = self.bounded(self.client.clone().claim_group_keys(request)).await?;
        Ok(pb::ClaimGroupKeysResponse {
            devices: answer.devices,
        })
    }
}
