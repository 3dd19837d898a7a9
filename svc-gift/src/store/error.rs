//! Why the gift store refused or failed, mapped to the contract's codes in
//! one place.

/// A refusal (with a message a person can act on) or an outage.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A malformed record: ids, keys, counts.
    #[error("{0}")]
    InvalidArgument(String),
    /// A client key reused with other content.
    #[error("{0}")]
    AlreadyExists(String),
    /// Over a limit (payload size, a total's range).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The sender may not do this (answer a request not theirs to answer).
    #[error("{0}")]
    PermissionDenied(String),
    /// Not possible in the room's state (a gift to the host of a room
    /// without one).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database refused a statement (a constraint, a value out of
    /// range): a fault of this service, not worth a retry as is. (The
    /// database's words, for the log.)
    #[error("gift store refused a statement: {0}")]
    Rejected(String),
    /// The database is unreachable or failed; safe to retry. (The
    /// database's words, for the log.)
    #[error("gift store unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(e) => StoreError::Rejected(e.to_string()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Unavailable(format!("migration failed: {err}"))
    }
}

impl From<StoreError> for tonic::Status {
    fn from(err: StoreError) -> Self {
        use tonic::Status;
        match err {
            StoreError::InvalidArgument(m) => Status::invalid_argument(m),
            StoreError::AlreadyExists(m) => Status::already_exists(m),
            StoreError::ResourceExhausted(m) => Status::resource_exhausted(m),
            StoreError::FailedPrecondition(m) => Status::failed_precondition(m),
            StoreError::PermissionDenied(m) => Status::permission_denied(m),
            StoreError::Rejected(m) => {
                tracing::error!(error = %m, "the gift store refused a statement");
                Status::internal("the gift ledger failed on this record; it has been logged")
            }
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "the gift store failed");
                Status::unavailable("the gift ledger is unavailable; retry with the same client_key")
            }
        }
    }
}
