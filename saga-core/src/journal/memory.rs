//! [`MemoryJournal`]: a journal in memory that can lose power.

use alloc::vec::Vec;
use core::task::{Context, Poll};

use super::{Journal, JournalError, JournalErrorKind, Record};

/// A [`Journal`] kept in memory, for tests and for sagas that need no
/// durability across processes. Appended records are *pending* until a
/// flush makes them *durable*; [`lose_power`](MemoryJournal::lose_power)
/// drops what is pending, as a crash would, so a test can resume from
/// exactly what a real store would have kept.
///
/// # Examples
///
/// ```
/// use core::task::{Context, Poll};
/// use futures_util::task::noop_waker_ref;
/// use saga_core::journal::{Event, Journal, MemoryJournal, Record};
///
/// let mut journal = MemoryJournal::new();
/// let started = |seq| Record { seq, event: Event::ActionStarted { step: 0, attempt: 1 } };
/// journal.append(&started(0))?;
/// let mut cx = Context::from_waker(noop_waker_ref());
/// assert!(journal.poll_flush(&mut cx).is_ready());
/// journal.append(&started(1))?;
/// assert_eq!(journal.durable().len(), 1);
/// assert_eq!(journal.pending().len(), 1);
///
/// journal.lose_power();
/// assert_eq!(journal.durable().len(), 1);
/// assert!(journal.pending().is_empty());
/// assert_eq!(journal.flushes(), 1);
/// # Ok::<(), saga_core::journal::JournalError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    durable: Vec<Record>,
    pending: Vec<Record>,
    flushes: u64,
    // Flushes left before the journal fails (`None`: never).
    fail_after: Option<u64>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A journal holding `records`, durable (a store's copy, read back).
    pub fn from_records(records: Vec<Record>) -> Self {
        MemoryJournal {
            durable: records,
            ..Self::default()
        }
    }

    /// The records made durable by a flush.
    pub fn durable(&self) -> &[Record] {
        &self.durable
    }

    /// The records appended since the last flush.
    pub fn pending(&self) -> &[Record] {
        &self.pending
    }

    /// How many flushes made records durable.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Drops every pending record, as a crash before the next flush would.
    pub fn lose_power(&mut self) {
        self.pending.clear();
    }

    /// Makes every flush after the next `flushes` ones fail with a storage
    /// error, as a full disk would: the failed flush drops the pending
    /// records (none becomes durable, and [`pending`](Self::pending) is
    /// empty after it) and is not counted in [`flushes`](Self::flushes).
    pub fn fail_after(&mut self, flushes: u64) {
        self.fail_after = Some(flushes);
    }
}

impl Journal for MemoryJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.pending.push(record.clone());
        Ok(())
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        if let Some(left) = &mut self.fail_after {
            match left.checked_sub(1) {
                Some(rest) => *left = rest,
                None => {
                    self.pending.clear();
                    let error = JournalError::new(JournalErrorKind::Storage, "flush failed");
                    return Poll::Ready(Err(error));
                }
            }
        }
        if !self.pending.is_empty() {
            self.flushes += 1;
            self.durable.append(&mut self.pending);
        }
        Poll::Ready(Ok(()))
    }
}
