use huiliu_domain::FieldError;

/// What can go wrong in a store, split by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input broke a rule only the store can check (e.g. a merged record grows too large).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The database URL or file cannot be used; the message says why and what is accepted.
    #[error("{0}")]
    Config(String),
    /// The database could not be reached or did not answer in time: retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the message is for the log, never for the client.
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        StoreError::Internal(error.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(error.to_string())
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}
