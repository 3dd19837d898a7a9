//! Failures of the room service and the gRPC status each maps to.

use tonic::Status;

/// What can go wrong in a room instance.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// A malformed request (message says which field and why).
    #[error("{0}")]
    Invalid(String),
    /// The body is above the configured limit.
    #[error("message body is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Body size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Another instance owns the room.
    #[error(
        "room {room_id:?} is owned by {owner}, not by this instance ({this}): refresh the room instance list"
    )]
    NotOwner {
        /// The room.
        room_id: String,
        /// The owning instance.
        owner: String,
        /// This instance.
        this: String,
    },
    /// The instance is shutting down.
    #[error("room instance is draining; retry on the new owner")]
    Draining,
}

impl From<RoomError> for Status {
    fn from(err: RoomError) -> Self {
        let message = err.to_string();
        match err {
            RoomError::Invalid(_) => Status::invalid_argument(message),
            RoomError::TooLarge { .. } => Status::resource_exhausted(message),
            RoomError::NotOwner { .. } => Status::failed_precondition(message),
            RoomError::Draining => Status::unavailable(message),
        }
    }
}
