//! [`StoreError`]: what went wrong with a [`PgStore`](crate::PgStore).

use std::error::Error;
use std::fmt;

use saga_core::journal::Outcome;

/// What kind of [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// PostgreSQL failed: the pool could not hand out a connection, a
    /// statement failed, the connection was lost.
    Postgres,
    /// A record in the store could not be decoded, does not match its
    /// checksum, or does not say what its row says (its number), or one is
    /// missing: the message names the saga and the record.
    Corrupt,
    /// The database holds the tables of a newer (or foreign) schema
    /// version.
    Schema,
    /// The store has no saga of this id.
    UnknownSaga,
    /// A saga of this id is already in the store.
    Exists,
    /// The saga already finished, with this outcome.
    Finished(Outcome),
    /// The saga's records cannot be replayed (see
    /// [`replay`](saga_core::journal::replay)), or the saga is not in the
    /// state the call needs (for instance, reopening a saga that is still
    /// running).
    Replay,
    /// The claim no longer holds the saga's lease: the lease expired, was
    /// released, or another worker claimed the saga (a higher epoch).
    Fenced,
    /// The store was made outside a Tokio runtime.
    Runtime,
}

/// An error from a [`PgStore`](crate::PgStore): its
/// [kind](StoreError::kind), a message naming what failed, and the
/// underlying error as its [source](Error::source) when there is one.
///
/// ```
/// use saga_postgres::StoreErrorKind;
///
/// // Errors are matched by kind.
/// fn retry_later(kind: StoreErrorKind) -> bool {
///     matches!(kind, StoreErrorKind::Postgres)
/// }
/// assert!(!retry_later(StoreErrorKind::Fenced));
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl StoreError {
    pub(crate) fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: StoreErrorKind,
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn postgres(context: impl Into<String>, error: sqlx::Error) -> Self {
        StoreError::with_source(StoreErrorKind::Postgres, context, error)
    }

    /// What kind of error.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// What failed, without the source's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}
