//! What the gift store takes and returns.

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A gift from the catalogue.
    Gift,
    /// A request to co-stream with one user.
    CoStreamRequest,
    /// The answer to a request (accept, decline, cancel).
    CoStreamAnswer,
}

impl Kind {
    /// The number stored (the contract's enum value).
    pub fn as_i32(self) -> i32 {
        match self {
            Kind::Gift => 1,
            Kind::CoStreamRequest => 2,
            Kind::CoStreamAnswer => 3,
        }
    }

    /// The kind stored as `n`.
    pub fn from_i32(n: i32) -> Option<Kind> {
        match n {
            1 => Some(Kind::Gift),
            2 => Some(Kind::CoStreamRequest),
            3 => Some(Kind::CoStreamAnswer),
            _ => None,
        }
    }
}

/// A record to commit, as its sender asked (sender verified by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// The room.
    pub room_id: String,
    /// The sender.
    pub sender_user_id: String,
    /// What it is.
    pub kind: Kind,
    /// The user aimed at; empty for a gift to the room's host.
    pub target_user_id: String,
    /// The catalogue item (gifts only).
    pub gift_id: String,
    /// How many (gifts: at least 1; requests: 0).
    pub count: u32,
    /// The catalogue's value of one item, as the service priced it (never
    /// taken from a client).
    pub unit_value: u64,
    /// The sender's idempotency key, 1 to 64 bytes.
    pub client_key: String,
    /// Opaque application data.
    pub payload: Vec<u8>,
    /// For an answer: the request's seq.
    pub answers_seq: u64,
    /// For an answer: 1 accept, 2 decline, 3 cancel (the contract's
    /// `CoStreamAnswer`).
    pub answer: i32,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The room.
    pub room_id: String,
    /// Per-room seq, 1, 2, 3... without gaps.
    pub seq: u64,
    /// The sender.
    pub sender_user_id: String,
    /// What it is (the contract's number).
    pub kind: i32,
    /// The user the sender aimed at; empty: the host.
    pub target_user_id: String,
    /// Who received it: the target, or the room's host at commit.
    pub recipient_user_id: String,
    /// The catalogue item.
    pub gift_id: String,
    /// How many.
    pub count: u32,
    /// count times the unit value.
    pub value: u64,
    /// The sender's idempotency key.
    pub client_key: String,
    /// Opaque application data.
    pub payload: Vec<u8>,
    /// When it was committed, unix milliseconds.
    pub sent_at_ms: i64,
    /// For an answer: the request's seq.
    pub answers_seq: u64,
    /// For an answer: what it says.
    pub answer: i32,
    /// For a request: when it expires unanswered, unix milliseconds.
    pub expires_at_ms: i64,
}

/// A co-streaming request's state, as a commit reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoStream {
    /// Who asked.
    pub requester_user_id: String,
    /// Who was asked.
    pub addressee_user_id: String,
    /// 0 pending, else the answer it took.
    pub state: i32,
    /// When it expires unanswered.
    pub expires_at_ms: i64,
}

/// A co-streaming request whose time is up, still waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCoStream {
    /// Its room.
    pub room_id: String,
    /// Its seq.
    pub request_seq: u64,
    /// Who was asked (and did not answer).
    pub addressee_user_id: String,
}

/// One answer of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The record (for a duplicate: the original).
    pub record: Record,
    /// A retry answered with its original; nothing was stored.
    pub duplicate: bool,
}

/// A page of a room's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Ascending by seq.
    pub records: Vec<Record>,
    /// More records follow the last one.
    pub has_more: bool,
    /// The room's last seq.
    pub last_seq: u64,
}

/// A room's ledger head and host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Room {
    /// The room.
    pub room_id: String,
    /// Its last seq (0: no record yet).
    pub last_seq: u64,
    /// Its host; empty: none.
    pub host_user_id: String,
}

/// A running total of one gift item (or of one sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemTotal {
    /// The gift item, or the sender's user id.
    pub key: String,
    /// Items.
    pub count: u64,
    /// Their value.
    pub value: u64,
}

/// A room's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTotals {
    /// By gift item, ordered by item.
    pub items: Vec<ItemTotal>,
    /// The biggest senders by value, biggest first.
    pub top_senders: Vec<ItemTotal>,
}
