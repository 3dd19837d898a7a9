//! Why the group store refused or failed, mapped to the contract's codes in
//! one place.

/// A refusal (with a message a person can act on) or an outage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A malformed request: empty or over-long ids, zero positions...
    #[error("{0}")]
    InvalidArgument(String),
    /// The group does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The actor is not a member, or its role does not allow the change.
    #[error("{0}")]
    PermissionDenied(String),
    /// A position past what exists.
    #[error("{0}")]
    OutOfRange(String),
    /// An idempotency key reused with other content.
    #[error("{0}")]
    AlreadyExists(String),
    /// A limit (members, body size) would be exceeded; nothing changed.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The change is not possible in the group's state (the owner leaving,
    /// ownership to a non-member).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database is unreachable or failed; safe to retry.
    #[error("group store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The schema could not be brought up to date at start.
    #[error("group store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Unavailable(err)
    }
}

impl From<StoreError> for tonic::Status {
    fn from(err: StoreError) -> Self {
        use tonic::Status;
        let message = err.to_string();
        match err {
            StoreError::InvalidArgument(_) => Status::invalid_argument(message),
            StoreError::NotFound(_) => Status::not_found(message),
            StoreError::PermissionDenied(_) => Status::permission_denied(message),
            StoreError::OutOfRange(_) => Status::out_of_range(message),
            StoreError::AlreadyExists(_) => Status::already_exists(message),
            StoreError::ResourceExhausted(_) => Status::resource_exhausted(message),
            StoreError::FailedPrecondition(_) => Status::failed_precondition(message),
            // The database's own words stay in the log: they are for the
            // operator, and a refusal by the database (a constraint, bad
            // input that got through) is not worth a retry.
            StoreError::Unavailable(sqlx::Error::Database(e)) => {
                tracing::error!(error = %e, "the group store refused a statement");
                Status::internal("the group store failed on this request; it has been logged")
            }
            StoreError::Unavailable(e) => {
                tracing::error!(error = %e, "the group store is unavailable");
                Status::unavailable("the group store is unavailable; retry shortly")
            }
            StoreError::Migration(_) => Status::unavailable(message),
        }
    }
}
