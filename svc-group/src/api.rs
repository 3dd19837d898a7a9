//! The `hubbub.v1.Group` handlers. The contract is final; the behaviour
//! (durable mailboxes, write diffusion, cursors) lands with its own issue,
//! and until then every call answers UNIMPLEMENTED.

use hubbub_proto::v1::{self as pb, group_server::Group};
use tonic::{Request, Response, Status};

/// Serves `hubbub.v1.Group`.
#[derive(Debug, Clone, Default)]
pub struct GroupApi;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("Group.{rpc} is not available in this release yet"))
}

#[tonic::async_trait]
impl Group for GroupApi {
    async fn create_group(
        &self,
        _: Request<pb::GroupCreateGroupRequest>,
    ) -> Result<Response<pb::GroupCreateGroupResponse>, Status> {
        Err(not_yet("CreateGroup"))
    }

    async fn add_group_members(
        &self,
        _: Request<pb::GroupAddGroupMembersRequest>,
    ) -> Result<Response<pb::GroupAddGroupMembersResponse>, Status> {
        Err(not_yet("AddGroupMembers"))
    }

    async fn remove_group_members(
        &self,
        _: Request<pb::GroupRemoveGroupMembersRequest>,
    ) -> Result<Response<pb::GroupRemoveGroupMembersResponse>, Status> {
        Err(not_yet("RemoveGroupMembers"))
    }

    async fn list_my_groups(
        &self,
        _: Request<pb::GroupListMyGroupsRequest>,
    ) -> Result<Response<pb::GroupListMyGroupsResponse>, Status> {
        Err(not_yet("ListMyGroups"))
    }

    async fn send_group_message(
        &self,
        _: Request<pb::GroupSendGroupMessageRequest>,
    ) -> Result<Response<pb::GroupSendGroupMessageResponse>, Status> {
        Err(not_yet("SendGroupMessage"))
    }

    async fn pull_mailbox(
        &self,
        _: Request<pb::GroupPullMailboxRequest>,
    ) -> Result<Response<pb::GroupPullMailboxResponse>, Status> {
        Err(not_yet("PullMailbox"))
    }

    async fn ack(&self, _: Request<pb::GroupAckRequest>) -> Result<Response<pb::GroupAckResponse>, Status> {
        Err(not_yet("Ack"))
    }

    async fn mark_read(
        &self,
        _: Request<pb::GroupMarkReadRequest>,
    ) -> Result<Response<pb::GroupMarkReadResponse>, Status> {
        Err(not_yet("MarkRead"))
    }

    async fn get_read_receipts(
        &self,
        _: Request<pb::GroupGetReadReceiptsRequest>,
    ) -> Result<Response<pb::GroupGetReadReceiptsResponse>, Status> {
        Err(not_yet("GetReadReceipts"))
    }
}
