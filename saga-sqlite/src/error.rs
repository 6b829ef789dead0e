//! [`StoreError`]: what went wrong with a [`Store`](crate::Store).

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use saga_core::journal::Outcome;

/// What kind of [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// SQLite failed: the file could not be opened or read, a disk is full,
    /// the file is not a database or is damaged.
    Sqlite,
    /// A record in the store could not be decoded, or does not say what
    /// its row says (its number): the message names the saga and the
    /// record.
    Corrupt,
    /// The database was written by a newer (or foreign) schema, as its
    /// `PRAGMA user_version` says.
    Schema,
    /// The store has no record of the saga.
    UnknownSaga,
    /// The saga already finished, with this outcome.
    Finished(Outcome),
    /// The saga's records cannot be replayed (see
    /// [`replay`](saga_core::journal::replay)).
    Replay,
    /// A record could not be written (the journal's error is the source).
    Journal,
    /// The writer thread could not be started.
    Thread,
}

/// An error from a [`Store`](crate::Store): its [kind](StoreError::kind),
/// a message naming what failed, and the underlying error as its
/// [source](Error::source) when there is one.
///
/// It is `Clone` (a clone shares the source), so that a
/// [`SagaSummary`](crate::SagaSummary) can hold one. Two errors are equal
/// when they are of the same kind, with the same message, and sources that
/// display the same (or neither has a source).
///
/// ```
/// use saga_sqlite::{Store, StoreErrorKind};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path().join("sagas.db"))?;
/// let id = store.new_id();
/// let error = store.abandon(id, "never started").unwrap_err();
/// assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
/// assert_eq!(error.clone(), error);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
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
            source: Some(Arc::new(source)),
        }
    }

    pub(crate) fn sqlite(context: impl Into<String>, error: rusqlite::Error) -> Self {
        StoreError::with_source(StoreErrorKind::Sqlite, context, error)
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

impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.message == other.message
            && match (&self.source, &other.source) {
                (None, None) => true,
                (Some(ours), Some(theirs)) => ours.to_string() == theirs.to_string(),
                _ => false,
            }
    }
}

impl Eq for StoreError {}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}
