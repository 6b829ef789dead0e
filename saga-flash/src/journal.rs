//! [`FlashJournal`]: one saga's journal, writing through a
//! [`FlashStore`].

use alloc::vec::Vec;
use core::fmt;
use core::task::{Context, Poll};

use embedded_storage::nor_flash::NorFlash;
use saga_core::journal::{Journal, JournalError, Record, SagaId};

use crate::{Error, FlashStore};

/// The [`Journal`] of one saga in a [`FlashStore`], from
/// [`FlashStore::journal`]. It holds a handle to the store, so a run (or a
/// [`Registry`](saga_core::journal::Registry)'s durable run) can own it.
///
/// [`append`](Journal::append) keeps the record in RAM;
/// [`poll_flush`](Journal::poll_flush) writes every kept record to flash,
/// together in one entry (so a power cut keeps all of a flush's records or
/// none: the "started" records of a parallel group's members, for one), and
/// returns `Ready(Ok(()))` once they are written
/// (the flash driver blocks; the flush returns `Pending`, having woken its
/// task, only when another thread holds the store). Records must be
/// numbered on from the saga's last record on flash; any other number is
/// refused with [`Error::OutOfOrder`], and the store checks it again, so a
/// second journal of the same saga cannot leave a gap either. Once a flush
/// failed, the journal keeps failing with the same error.
///
/// # Examples
///
/// ```
/// use core::task::{Context, Poll, Waker};
/// use saga_core::journal::{Event, Journal, Record, SagaId};
/// use saga_flash::FlashStore;
/// use saga_flash::sim::SimFlash;
///
/// let store = FlashStore::mount(SimFlash::<4, 1024>::new(2))?;
/// let mut journal = store.journal(SagaId(5))?;
/// let created = Record { seq: 0, event: Event::Created {
///     definition: "valve".into(), version: 1, fingerprint: 7, parameters: vec![],
/// } };
/// journal.append(&created)?;
/// assert!(store.records(SagaId(5))?.is_empty()); // not flushed yet
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(journal.poll_flush(&mut cx), Poll::Ready(Ok(())));
/// assert_eq!(store.records(SagaId(5))?, [created]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FlashJournal<F> {
    store: FlashStore<F>,
    id: SagaId,
    kept: Vec<Record>,
    next_seq: u64,
    error: Option<JournalError>,
}

impl<F> fmt::Debug for FlashJournal<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlashJournal")
            .field("id", &self.id)
            .field("kept", &self.kept.len())
            .field("next_seq", &self.next_seq)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<F: NorFlash> FlashJournal<F> {
    pub(crate) fn new(store: FlashStore<F>, id: SagaId, next_seq: u64) -> Self {
        FlashJournal {
            store,
            id,
            kept: Vec::new(),
            next_seq,
            error: None,
        }
    }

    /// The saga this journal holds.
    pub fn id(&self) -> SagaId {
        self.id
    }

    /// The number the next appended record must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn fail(&mut self, error: Error) -> JournalError {
        let error = JournalError::from(error);
        self.error.get_or_insert(error.clone());
        error
    }
}

impl<F: NorFlash> Journal for FlashJournal<F> {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if record.seq != self.next_seq {
            let refused = Error::OutOfOrder {
                saga: self.id,
                expected: self.next_seq,
                found: record.seq,
            };
            return Err(refused.into());
        }
        self.kept.push(record.clone());
        self.next_seq += 1;
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        if let Some(error) = &self.error {
            return Poll::Ready(Err(error.clone()));
        }
        if self.kept.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match self.store.append_all(self.id, &self.kept) {
            Ok(()) => self.kept.clear(),
            Err(Error::Busy) => {
                // Another thread holds the store: yield, and try again.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Err(error) => return Poll::Ready(Err(self.fail(error))),
        }
        Poll::Ready(Ok(()))
    }
}
