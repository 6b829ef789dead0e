//! [`Error`]: what a [`FlashStore`](crate::FlashStore) can fail with.

use core::fmt;

use embedded_storage::nor_flash::NorFlashErrorKind;
use saga_core::journal::{JournalError, JournalErrorKind, SagaId};

/// Why a [`FlashStore`](crate::FlashStore) operation failed.
///
/// Converts into the core's [`JournalError`] (as a
/// [`Storage`](JournalErrorKind::Storage) error, or
/// [`Closed`](JournalErrorKind::Closed) for [`Error::Failed`]) when a
/// journal's flush fails, so a run ends without compensating and the saga
/// is resumed from flash after the next mount.
///
/// ```
/// use saga_flash::Error;
/// use saga_core::journal::{JournalError, JournalErrorKind};
///
/// let error = Error::Full { needed: 64 };
/// assert_eq!(error.to_string(), "the flash is full: no room for an entry of 64 bytes, even after reclaiming");
/// let journal: JournalError = error.into();
/// assert_eq!(journal.kind(), JournalErrorKind::Storage);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The flash driver failed (a power cut, a bad address, a hardware
    /// fault). The store refuses every later operation: mount it again.
    Flash(NorFlashErrorKind),
    /// An earlier operation failed with [`Error::Flash`]: the store's view
    /// of the flash may be stale, so it must be mounted again.
    Failed,
    /// The flash's geometry does not suit the store (too few sectors, a
    /// range not aligned to sectors, a read size that does not divide the
    /// write size, sectors too small or too large).
    Geometry(&'static str),
    /// No room for an entry of `needed` bytes, even after reclaiming every
    /// finished saga: the unfinished sagas fill the flash.
    Full {
        /// The entry's size on flash, padding included.
        needed: usize,
    },
    /// A record does not fit in one sector.
    TooLarge {
        /// The entry's size on flash, padding included.
        size: usize,
        /// The largest entry a sector takes.
        max: usize,
    },
    /// A record was not the next of its saga (records are numbered from 0
    /// without gaps, and only once).
    OutOfOrder {
        /// The saga.
        saga: SagaId,
        /// The number the next record must have.
        expected: u64,
        /// The number it had.
        found: u64,
    },
    /// The saga has finished: nothing more can be appended to it.
    Finished(SagaId),
    /// The store holds no record of the saga.
    Unknown(SagaId),
    /// The saga's records on flash are not `0, 1, 2, ...`, or one does not
    /// decode: `seq` is the first one missing or unreadable.
    Corrupt {
        /// The saga.
        saga: SagaId,
        /// The first record missing or unreadable.
        seq: u64,
    },
    /// The saga finished and some of its records were already reclaimed.
    Reclaimed(SagaId),
    /// Another operation on the store was under way (from another thread,
    /// or an interrupt handler): nothing was done; try again.
    Busy,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Flash(kind) => write!(f, "the flash failed: {kind}; mount the store again"),
            Error::Failed => {
                f.write_str("an earlier flash operation failed; mount the store again")
            }
            Error::Geometry(why) => write!(f, "unsuitable flash geometry: {why}"),
            Error::Full { needed } => write!(
                f,
                "the flash is full: no room for an entry of {needed} bytes, even after reclaiming"
            ),
            Error::TooLarge { size, max } => {
                write!(
                    f,
                    "an entry of {size} bytes does not fit in a sector (at most {max})"
                )
            }
            Error::OutOfOrder {
                saga,
                expected,
                found,
            } => write!(
                f,
                "saga {saga}: record {found} refused, the next record is number {expected}"
            ),
            Error::Finished(saga) => write!(f, "saga {saga} has finished: nothing can follow"),
            Error::Unknown(saga) => write!(f, "saga {saga} is not in the store"),
            Error::Corrupt { saga, seq } => {
                write!(f, "saga {saga}: record {seq} is missing or unreadable")
            }
            Error::Reclaimed(saga) => {
                write!(
                    f,
                    "saga {saga} finished and its records were partly reclaimed"
                )
            }
            Error::Busy => f.write_str("the store is busy with another operation"),
        }
    }
}

impl core::error::Error for Error {}

impl From<Error> for JournalError {
    fn from(error: Error) -> Self {
        let kind = match error {
            Error::Failed => JournalErrorKind::Closed,
            _ => JournalErrorKind::Storage,
        };
        JournalError::new(kind, alloc::format!("{error}"))
    }
}
