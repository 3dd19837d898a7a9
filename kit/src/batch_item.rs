//! Batched internal calls (`Gift.SendGifts`, `Room.PublishMany`): the limits
//! both sides share, and who sends each item. A gateway batches its
//! clients' calls; each item carries the per-call credential the gateway
//! minted for the user behind it, so the callee learns the sender from a
//! signature, never from a field.

use crate::service_auth::{Caller, InternalKey};
use tonic::Status;

/// Items per batch at most (refused on the wire above it, before decoding).
pub const MAX_ITEMS: usize = hubbub_proto::codec::MAX_BATCH_ITEMS;

/// Encoded items per batch at most, as the gateway cuts them; the callee
/// decodes this much plus one item of its own request limit (the item that
/// crossed the cut opens the next batch, so it never exceeds this by more).
pub const MAX_BYTES: usize = 1024 * 1024;

/// The caller one item's own credential names: valid, a per-call credential
/// for `method` acting for someone, and minted by the instance that sent
/// the batch (a batch carries only its own gateway's clients). `call` names
/// the batch for errors and logs.
pub fn item_caller(
    key: &InternalKey,
    batch: &Caller,
    credential: &str,
    method: &str,
    call: &str,
) -> Result<Caller, Status> {
    // A gateway that works never sends these: loud here, refused there.
    let denied = |why: String| {
        tracing::error!(caller = %batch.instance, "refused a {call} item: its credential {why}");
        Status::permission_denied(format!("a {call} item's credential {why}"))
    };
    let caller = key
        .verify(credential)
        .map_err(|e| denied(format!("is not valid: {e}")))?;
    if caller.role != batch.role || caller.instance != batch.instance {
        return Err(denied("was not minted by the gateway that sent the batch".into()));
    }
    caller.check_bound_to(method).map_err(|e| denied(e.to_string()))?;
    if caller.acting_for.is_none() {
        return Err(denied(format!("is not a per-call credential for {method}")));
    }
    Ok(caller)
}
