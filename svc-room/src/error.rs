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
    #[error("room {room_id:?} is owned by {owner}, not by this instance ({this}): refresh the room instance list")]
    NotOwner {
        /// The room.
        room_id: String,
        /// The owning instance.
        owner: String,
        /// This instance.
        this: String,
    },
    /// The room is above its publish cap.
    #[error("room {room_id:?} is above its publish cap of {cap_per_sec}/s: retry after {} ms", retry_after.as_millis().max(1))]
    OverCap {
        /// The room.
        room_id: String,
        /// The cap.
        cap_per_sec: f64,
        /// When it takes messages again.
        retry_after: std::time::Duration,
    },
    /// A new room, and the instance holds as many as it may.
    #[error("this room instance holds its limit of {0} rooms: retry later")]
    TooManyRooms(usize),
    /// The instance is shutting down.
    #[error("room instance is draining; retry on the new owner")]
    Draining,
}

impl From<RoomError> for Status {
    fn from(err: RoomError) -> Self {
        let message = err.to_string();
        if let RoomError::OverCap { retry_after, .. } = &err {
            return hubbub_kit::rate::exhausted_retry_after(message, *retry_after);
        }
        match err {
            RoomError::Invalid(_) => Status::invalid_argument(message),
            RoomError::TooLarge { .. } => Status::resource_exhausted(message),
            RoomError::NotOwner { .. } => Status::failed_precondition(message),
            RoomError::Draining => Status::unavailable(message),
            RoomError::TooManyRooms(_) => Status::resource_exhausted(message),
            RoomError::OverCap { .. } => unreachable!("handled above"),
        }
    }
}
