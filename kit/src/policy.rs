//! Who may call what on internal ports: the one table every role enforces.
//!
//! A rule names a method, a caller (a role, or a backend service holding a
//! scope) and whether the call must be made for a user. The internal auth
//! layer refuses any call no rule allows, before a handler runs. Finer
//! checks that need the request body live in the handlers and are listed
//! here too, so this file stays the one place to read:
//! - `Room.Publish`: the kinds each caller may publish ([`publishable_kinds`]);
//!   the sender is the user the credential names (gateway, gift) or the
//!   backend service itself (`service:<name>`), never the request field.
//! - `Room.PublishMany`: as `Room.Publish`, item by item; a gateway's item
//!   carries a per-call `Room.Publish` credential, minted by the calling
//!   gateway instance, naming the item's sender; a backend's item carries none.
//! - `Room.Attach`: `hello.gateway_id` must be the caller's instance.
//! - `Presence.ReportGateway`: `gateway_id` must be the caller's instance.
//! - `Gift.SendGifts`: each item's credential must be a per-call one for
//!   `Gift.SendGift`, minted by the calling gateway instance, naming the
//!   item's `sender_user_id`.
//! - `Group.*`: for a gateway, `actor_user_id` must be the user the
//!   credential names; a backend with `group.post`/`group.manage` acts for
//!   the `actor_user_id` it gives.
//!
//! Health, reflection and `/metrics` are open: probes, load balancers,
//! grpcurl and Prometheus reach them without a credential, and they reveal
//! only the public contract and counters.

use crate::service_auth::{Caller, Role};
use hubbub_proto::v1::RoomMessageKind;

/// The method a user's room message is published with, alone or as an
/// item of `Room.PublishMany`; its per-call credentials are for it.
pub const ROOM_PUBLISH: &str = "/hubbub.v1.Room/Publish";

/// Scopes a backend service credential can hold.
pub const SCOPES: &[(&str, &str)] = &[
    ("room.publish", "publish SYSTEM, STREAMER and ENTER messages into rooms"),
    ("room.read", "read rooms' recent messages and online counts"),
    ("group.post", "post messages into groups"),
    ("group.manage", "create groups and change their members"),
    ("gift.read", "read rooms' gift ledgers"),
    ("gift.manage", "set rooms' hosts"),
];

/// Who a rule lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Any instance of a role.
    Role(Role),
    /// A backend service holding this scope.
    Scope(&'static str),
}

/// Whether the call must be made for someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acting {
    /// The caller acts for itself.
    Itself,
    /// The credential must name a signed-in user.
    User,
    /// The credential must name a user or a guest.
    UserOrGuest,
}

use Acting::{Itself, User, UserOrGuest};
use Role::{Gateway, Gift, Group};
use Who::Scope;

const fn role(r: Role) -> Who {
    Who::Role(r)
}

/// The table: method, caller, acting.
pub const RULES: &[(&str, Who, Acting)] = &[
    ("/hubbub.v1.GatewayControl/Deliver", role(Group), Itself),
    ("/hubbub.v1.GatewayControl/Deliver", role(Gift), Itself),
    ("/hubbub.v1.GatewayControl/Forward", role(Gateway), UserOrGuest),
    ("/hubbub.v1.Room/Attach", role(Gateway), Itself),
    ("/hubbub.v1.Room/Publish", role(Gateway), User),
    ("/hubbub.v1.Room/Publish", role(Gift), User),
    ("/hubbub.v1.Room/Publish", Scope("room.publish"), Itself),
    // A gateway's items each carry their own per-call Publish credential
    // naming their sender, verified by the handler; a backend's are its own.
    ("/hubbub.v1.Room/PublishMany", role(Gateway), Itself),
    ("/hubbub.v1.Room/PublishMany", Scope("room.publish"), Itself),
    // The ledger names each gift's sender: it verified and recorded them.
    ("/hubbub.v1.Room/PublishGifts", role(Gift), Itself),
    ("/hubbub.v1.Room/GetRecent", role(Gateway), Itself),
    ("/hubbub.v1.Room/GetRecent", role(Gift), Itself),
    ("/hubbub.v1.Room/GetRecent", Scope("room.read"), Itself),
    ("/hubbub.v1.Presence/ReportGateway", role(Gateway), Itself),
    ("/hubbub.v1.Presence/LocateUsers", role(Group), Itself),
    ("/hubbub.v1.Presence/LocateUsers", role(Gift), Itself),
    ("/hubbub.v1.Presence/GetRoomCounts", role(Gateway), Itself),
    ("/hubbub.v1.Presence/GetRoomCounts", role(Gift), Itself),
    ("/hubbub.v1.Presence/GetRoomCounts", Scope("room.read"), Itself),
    ("/hubbub.v1.Group/CreateGroup", role(Gateway), User),
    ("/hubbub.v1.Group/CreateGroup", Scope("group.manage"), Itself),
    ("/hubbub.v1.Group/AddGroupMembers", role(Gateway), User),
    ("/hubbub.v1.Group/AddGroupMembers", Scope("group.manage"), Itself),
    ("/hubbub.v1.Group/RemoveGroupMembers", role(Gateway), User),
    ("/hubbub.v1.Group/RemoveGroupMembers", Scope("group.manage"), Itself),
    ("/hubbub.v1.Group/ListMyGroups", role(Gateway), User),
    ("/hubbub.v1.Group/SendGroupMessage", role(Gateway), User),
    ("/hubbub.v1.Group/SendGroupMessage", Scope("group.post"), Itself),
    ("/hubbub.v1.Group/PullMailbox", role(Gateway), User),
    ("/hubbub.v1.Group/Ack", role(Gateway), User),
    ("/hubbub.v1.Group/MarkRead", role(Gateway), User),
    ("/hubbub.v1.Group/GetReadReceipts", role(Gateway), User),
    ("/hubbub.v1.Group/GetReadPositions", role(Gateway), User),
    ("/hubbub.v1.Group/GetGroupMembers", role(Gateway), User),
    ("/hubbub.v1.Group/GetGroupMembers", Scope("group.manage"), Itself),
    ("/hubbub.v1.Group/TransferGroupOwnership", role(Gateway), User),
    ("/hubbub.v1.Group/TransferGroupOwnership", Scope("group.manage"), Itself),
    ("/hubbub.v1.Group/GetGroupHistory", role(Gateway), User),
    ("/hubbub.v1.Group/ClearGroupHistory", role(Gateway), User),
    ("/hubbub.v1.Group/GetMailboxCursor", role(Gateway), User),
    ("/hubbub.v1.Group/UploadDeviceKeys", role(Gateway), User),
    ("/hubbub.v1.Group/ClaimGroupKeys", role(Gateway), User),
    ("/hubbub.v1.Gift/SendGift", role(Gateway), User),
    // Each item carries its own per-call SendGift credential naming its
    // sender, verified by the handler.
    ("/hubbub.v1.Gift/SendGifts", role(Gateway), Itself),
    ("/hubbub.v1.Gift/PullGifts", role(Gateway), UserOrGuest),
    ("/hubbub.v1.Gift/PullGifts", Scope("gift.read"), Itself),
    ("/hubbub.v1.Gift/SetRoomHost", Scope("gift.manage"), Itself),
    ("/hubbub.v1.Gift/GetRoomTotals", role(Gateway), UserOrGuest),
    ("/hubbub.v1.Gift/GetRoomTotals", Scope("gift.read"), Itself),
    ("/hubbub.v1.Gift/GetRecipientTotals", role(Gateway), User),
    ("/hubbub.v1.Gift/GetRecipientTotals", Scope("gift.read"), Itself),
    ("/hubbub.v1.Gift/ListPendingCoStreams", role(Gateway), User),
    ("/hubbub.v1.Gift/ListPendingCoStreams", Scope("gift.read"), Itself),
    ("/hubbub.v1.Gift/GetRoomHead", role(Gateway), Itself),
    ("/hubbub.v1.Gift/GetRoomHead", Scope("gift.read"), Itself),
];

/// Paths anyone may call on an internal port.
pub fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// Why a verified caller is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No rule lets this caller call this method.
    #[error("{caller} may not call {method}")]
    NotAllowed {
        /// Who called.
        caller: String,
        /// What.
        method: String,
    },
    /// The method must be called for a user and the credential names none.
    #[error("{method} must be called for a user: the credential names none")]
    NeedsUser {
        /// What.
        method: String,
    },
}

/// Checks `caller` against the table for `method`.
pub fn check(method: &str, caller: &Caller) -> Result<(), Denied> {
    let mut allowed_without_user = false;
    for (rule_method, who, acting) in RULES {
        if *rule_method != method {
            continue;
        }
        let matches = match who {
            Who::Role(role) => *role == caller.role && *role != Role::Service,
            Who::Scope(scope) => caller.role == Role::Service && caller.has_scope(scope),
        };
        if !matches {
            continue;
        }
        let acting_ok = match acting {
            Itself => true,
            User => caller.acting_for.as_ref().is_some_and(|a| a.user_id().is_some()),
            UserOrGuest => caller.acting_for.is_some(),
        };
        if acting_ok {
            return Ok(());
        }
        allowed_without_user = true;
    }
    if allowed_without_user {
        return Err(Denied::NeedsUser {
            method: method.to_owned(),
        });
    }
    Err(Denied::NotAllowed {
        caller: format!("{} {:?}", caller.role, caller.instance),
        method: method.to_owned(),
    })
}

/// The room message kinds `caller` may publish with `Room.Publish`. Gifts
/// and co-streaming requests come only from the gift ledger, so a gift is
/// never seen that the ledger does not hold.
pub fn publishable_kinds(caller: &Caller) -> &'static [RoomMessageKind] {
    match caller.role {
        Role::Gateway => &[RoomMessageKind::Comment, RoomMessageKind::Like],
        Role::Gift => &[RoomMessageKind::Gift, RoomMessageKind::CoStreamRequest],
        Role::Service => &[
            RoomMessageKind::System,
            RoomMessageKind::Streamer,
            RoomMessageKind::Enter,
        ],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;

    fn caller(role: Role, scopes: &[&str], acting: Option<Identity>) -> Caller {
        Caller {
            role,
            instance: "x".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            acting_for: acting,
            audience: None,
            method: None,
        }
    }

    #[test]
    fn the_table_decides() {
        let alice = Some(Identity::User("alice".into()));
        let guest = Some(Identity::Guest("guest:1".into()));
        let publish = "/hubbub.v1.Room/Publish";
        assert!(check(publish, &caller(Role::Gateway, &[], alice.clone())).is_ok());
        assert!(matches!(
            check(publish, &caller(Role::Gateway, &[], None)),
            Err(Denied::NeedsUser { .. })
        ));
        assert!(matches!(
            check(publish, &caller(Role::Gateway, &[], guest.clone())),
            Err(Denied::NeedsUser { .. })
        ));
        assert!(check(publish, &caller(Role::Service, &["room.publish"], None)).is_ok());
        assert!(check(publish, &caller(Role::Service, &["room.read"], None)).is_err());
        assert!(check(publish, &caller(Role::Presence, &[], None)).is_err());
        assert!(check("/hubbub.v1.GatewayControl/Forward", &caller(Role::Gateway, &[], guest)).is_ok());
        assert!(check("/hubbub.v1.Presence/LocateUsers", &caller(Role::Gateway, &[], None)).is_err());
        assert!(
            check(
                "/hubbub.v1.Presence/ReportGateway",
                &caller(Role::Service, &["room.read"], None)
            )
            .is_err()
        );
        assert!(check("/hubbub.v1.Nope/Nope", &caller(Role::Gateway, &[], None)).is_err());
    }

    #[test]
    fn every_scope_in_the_table_is_documented() {
        for (_, who, _) in RULES {
            if let Who::Scope(scope) = who {
                assert!(SCOPES.iter().any(|(name, _)| name == scope), "{scope}");
            }
        }
    }
}
