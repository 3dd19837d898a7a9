//! Between the store's types and the contract's messages, and the page
//! tokens of ListMyGroups.

use crate::store::{self, Role};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hubbub_proto::v1 as pb;
use tonic::Status;

/// The contract's role of a stored one.
pub fn role(role: Role) -> pb::GroupRole {
    match role {
        Role::Member => pb::GroupRole::Member,
        Role::Admin => pb::GroupRole::Admin,
        Role::Owner => pb::GroupRole::Owner,
    }
}

/// The role asked for in a request: UNSPECIFIED means MEMBER.
pub fn requested_role(value: i32) -> Result<Role, Status> {
    match pb::GroupRole::try_from(value) {
        Ok(pb::GroupRole::Unspecified) => Ok(Role::Member),
        Ok(pb::GroupRole::Member) => Ok(Role::Member),
        Ok(pb::GroupRole::Admin) => Ok(Role::Admin),
        Ok(pb::GroupRole::Owner) => Err(Status::invalid_argument(
            "role OWNER cannot be given when adding members: a group has one owner, its creator",
        )),
        Err(_) => Err(Status::invalid_argument(format!(
            "role {value} is not a GroupRole (use MEMBER or ADMIN)"
        ))),
    }
}

/// A group's description.
pub fn group(info: store::GroupInfo) -> pb::GroupInfo {
    pb::GroupInfo {
        group_id: info.group_id,
        name: info.name,
        owner_user_id: info.owner_user_id,
        member_count: info.member_count,
        created_at_ms: info.created_at_ms,
        end_to_end_encrypted: info.end_to_end_encrypted,
        last_seq: info.last_seq,
        epoch: info.epoch,
    }
}

/// A member.
pub fn member(member: store::Member) -> pb::GroupMember {
    pb::GroupMember {
        user_id: member.user_id,
        role: role(member.role).into(),
        joined_at_ms: member.joined_at_ms,
    }
}

/// An entry of ListMyGroups.
pub fn membership(membership: store::Membership) -> pb::GroupMembership {
    pb::GroupMembership {
        group: Some(group(membership.group)),
        role: role(membership.role).into(),
        joined_at_ms: membership.joined_at_ms,
        read_seq: membership.read_seq,
    }
}

/// A stored message.
pub fn message(message: store::GroupMessage) -> pb::GroupMessage {
    pb::GroupMessage {
        group_id: message.group_id,
        seq: message.seq,
        sender_user_id: message.sender_user_id,
        sender_device_id: message.sender_device_id,
        client_message_id: message.client_message_id,
        content_type: message.content_type,
        body: message.body.into(),
        sent_at_ms: message.sent_at_ms,
    }
}

/// A device's cursor.
pub fn cursor(cursor: store::DeviceCursor) -> pb::DeviceCursor {
    pb::DeviceCursor {
        device_id: cursor.device_id,
        begin_seq: cursor.begin_seq,
        fetch_seq: cursor.fetch_seq,
        ack_seq: cursor.ack_seq,
        read_seq: cursor.read_seq,
    }
}

/// A page of a mailbox.
pub fn pulled(pulled: store::Pulled) -> pb::GroupPullMailboxResponse {
    pb::GroupPullMailboxResponse {
        items: pulled
            .items
            .into_iter()
            .map(|item| pb::MailboxItem {
                mailbox_seq: item.mailbox_seq,
                message: Some(message(item.message)),
                expired: item.expired,
            })
            .collect(),
        has_more: pulled.has_more,
        cursor: Some(cursor(pulled.cursor)),
        head_mailbox_seq: pulled.head_mailbox_seq,
        trimmed_mailbox_seq: pulled.trimmed_mailbox_seq,
    }
}

/// The page token that resumes a listing after `last_group_id`. Opaque to
/// clients, so the encoding may change without breaking them.
pub fn page_token(last_group_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_group_id)
}

/// The group id a page token resumes after (None for the first page).
pub fn after_group(token: &str) -> Result<Option<String>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let refused = || {
        Status::invalid_argument(
            "page_token was not issued by this service: pass the next_page_token of the previous page, or \"\"",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused())?;
    let group_id = String::from_utf8(bytes).map_err(|_| refused())?;
    hubbub_kit::ids::validate("group_id", &group_id).map_err(|_| refused())?;
    Ok(Some(group_id))
}

/// A device's keys as a member claimed them.
pub fn bundle(b: store::keys::DeviceBundle) -> pb::DeviceKeyBundle {
    pb::DeviceKeyBundle {
        user_id: b.user_id,
        device_id: b.device_id,
        keys: Some(pb::DeviceKeys {
            identity_key: b.keys.identity_key.into(),
            signed_prekey: b.keys.signed_prekey.into(),
            signed_prekey_signature: b.keys.signed_prekey_signature.into(),
        }),
        one_time_key: b.one_time_key.map(|k| pb::OneTimeKey {
            key_id: k.key_id,
            public_key: k.public_key.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        let token = page_token("g0123abc");
        assert_eq!(after_group(&token).unwrap().as_deref(), Some("g0123abc"));
        assert_eq!(after_group("").unwrap(), None);
        let err = after_group("not a token!").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("page_token"));
    }

    #[test]
    fn roles_default_to_member_and_owner_is_refused() {
        assert_eq!(requested_role(0).unwrap(), Role::Member);
        assert_eq!(requested_role(2).unwrap(), Role::Admin);
        assert_eq!(requested_role(3).unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(requested_role(9).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
