//! `Room.PublishMany` item by item: whose item it is, and its outcome.

use hubbub_kit::batch_item;
use hubbub_kit::policy::ROOM_PUBLISH;
use hubbub_kit::service_auth::{Caller, InternalKey, Role};
use hubbub_proto::v1::RoomPublishOutcome;
use tonic::Status;

/// Who sends an item: for a gateway's batch, the user its own credential
/// names (see [`batch_item::item_caller`]; a room message is a user's, never
/// a guest's); for a backend's, the backend itself.
pub fn item_caller(key: &InternalKey, batch: &Caller, credential: &str) -> Result<Sender, Status> {
    if batch.role != Role::Gateway {
        if !credential.is_empty() {
            tracing::debug!(caller = %batch.instance, "refused a PublishMany item with a credential from a backend");
            return Err(Status::permission_denied(
                "a backend's PublishMany item carries no credential: its items are sent as the backend itself",
            ));
        }
        return Ok(Sender::Batch);
    }
    let caller = batch_item::item_caller(key, batch, credential, ROOM_PUBLISH, "PublishMany")?;
    if caller.acting_for.as_ref().and_then(|a| a.user_id()).is_none() {
        tracing::error!(gateway = %batch.instance, "refused a PublishMany item: its credential names a guest");
        return Err(Status::permission_denied(
            "a PublishMany item's credential names a guest: room messages are sent by signed-in users",
        ));
    }
    Ok(Sender::Item(caller))
}

/// Whose an item is.
#[derive(Debug)]
pub enum Sender {
    /// The user its own credential names.
    Item(Caller),
    /// The backend that sent the batch.
    Batch,
}

impl Sender {
    /// The caller to publish as, given the batch's.
    pub fn caller<'a>(&'a self, batch: &'a Caller) -> &'a Caller {
        match self {
            Sender::Item(caller) => caller,
            Sender::Batch => batch,
        }
    }
}

/// An item's answer as its outcome; a cap's retry hint travels with it.
pub fn outcome(answer: Result<u64, Status>) -> RoomPublishOutcome {
    match answer {
        Ok(seq) => RoomPublishOutcome {
            seq,
            ..Default::default()
        },
        Err(status) => RoomPublishOutcome {
            seq: 0,
            code: status.code() as i32,
            message: status.message().to_owned(),
            retry_after_ms: status
                .metadata()
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_kit::auth::Identity;
    use hubbub_kit::service_auth::{Credentials, Grant};
    use std::time::Duration;
    use tonic::Code;

    fn key() -> InternalKey {
        InternalKey::new(&[9; 32])
    }

    fn gateway(instance: &str) -> Caller {
        Caller {
            role: Role::Gateway,
            instance: instance.into(),
            scopes: Vec::new(),
            acting_for: None,
            audience: Some("hubbub.v1.Room".into()),
            method: None,
        }
    }

    fn item(instance: &str, method: &str, who: Identity) -> String {
        Credentials::new(key(), Role::Gateway, instance).token_acting(method, &who)
    }

    #[test]
    fn a_gateway_item_is_sent_by_the_user_its_own_credential_names() {
        let alice = Identity::User("alice".into());
        let Sender::Item(caller) =
            item_caller(&key(), &gateway("gw-0"), &item("gw-0", ROOM_PUBLISH, alice.clone())).unwrap()
        else {
            panic!("a gateway's item is its user's");
        };
        assert_eq!(caller.acting_for, Some(alice));
    }

    #[test]
    fn a_gateway_item_credential_that_is_foreign_misdirected_or_userless_is_refused() {
        let alice = Identity::User("alice".into());
        let batch = gateway("gw-0");
        let refused = |credential: &str| item_caller(&key(), &batch, credential).unwrap_err().code();
        assert_eq!(refused(""), Code::PermissionDenied);
        assert_eq!(refused("not-a-token"), Code::PermissionDenied);
        // Another gateway's credential, replayed inside this one's batch.
        assert_eq!(
            refused(&item("gw-1", ROOM_PUBLISH, alice.clone())),
            Code::PermissionDenied
        );
        // A credential for another method.
        assert_eq!(
            refused(&item("gw-0", "/hubbub.v1.Gift/SendGift", alice)),
            Code::PermissionDenied
        );
        // A guest cannot publish.
        assert_eq!(
            refused(&item("gw-0", ROOM_PUBLISH, Identity::Guest("guest:1".into()))),
            Code::PermissionDenied
        );
        // Signed by another key.
        let other = Credentials::new(InternalKey::new(&[1; 32]), Role::Gateway, "gw-0")
            .token_acting(ROOM_PUBLISH, &Identity::User("alice".into()));
        assert_eq!(refused(&other), Code::PermissionDenied);
        // The gateway's own role credential acts for nobody.
        let own = key().sign(&Grant {
            role: Role::Gateway,
            instance: "gw-0",
            audience: Some("hubbub.v1.Room"),
            ttl: Duration::from_secs(60),
            ..Grant::default()
        });
        assert_eq!(refused(&own), Code::PermissionDenied);
    }

    #[test]
    fn a_backend_item_is_the_backends_own_and_carries_no_credential() {
        let backend = Caller {
            role: Role::Service,
            instance: "moderation".into(),
            scopes: vec!["room.publish".into()],
            acting_for: None,
            audience: None,
            method: None,
        };
        assert!(matches!(item_caller(&key(), &backend, "").unwrap(), Sender::Batch));
        let smuggled = item("gw-0", ROOM_PUBLISH, Identity::User("alice".into()));
        assert_eq!(
            item_caller(&key(), &backend, &smuggled).unwrap_err().code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn an_outcome_carries_the_seq_or_the_error_and_its_retry_hint() {
        assert_eq!(outcome(Ok(7)).seq, 7);
        assert_eq!(outcome(Ok(7)).code, 0);
        let capped = hubbub_kit::rate::exhausted_retry_after("slow down", Duration::from_millis(250));
        let out = outcome(Err(capped));
        assert_eq!((out.code, out.retry_after_ms), (Code::ResourceExhausted as i32, 250));
        assert_eq!(out.message, "slow down");
    }
}
