//! Which lane a message travels in follows from its kind.

use hubbub_proto::v1::{Priority, RoomMessageKind};

/// The delivery priority of a message kind.
pub fn priority_of(kind: RoomMessageKind) -> Priority {
    match kind {
        RoomMessageKind::Comment => Priority::Normal,
        RoomMessageKind::Like | RoomMessageKind::Enter => Priority::Low,
        RoomMessageKind::System
        | RoomMessageKind::Streamer
        | RoomMessageKind::Gift
        | RoomMessageKind::CoStreamRequest => Priority::High,
        RoomMessageKind::Unspecified => Priority::Unspecified,
    }
}
