//! [`SqliteJournal`]: one saga's journal, sending its records to the
//! store's writer thread.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::task::{Context, Poll};

use saga_core::journal::{Event, Journal, JournalError, JournalErrorKind, Record, SagaId};

use crate::writer::{Batch, Completion, Flushed, Request, Row};

/// The [`Journal`] of one saga in a [`Store`](crate::Store), from
/// [`Store::journal`](crate::Store::journal).
///
/// [`append`](Journal::append) encodes the record and keeps it;
/// [`poll_flush`](Journal::poll_flush) sends everything kept since the last
/// flush to the store's writer thread as one message, and is ready once the
/// writer has committed a transaction holding it (with
/// `synchronous=FULL`). A flush with nothing new to send and nothing in
/// flight is ready at once.
///
/// Records must be numbered on from the saga's last record in the store
/// (from 0 for a new saga): `append` refuses any other number with a
/// [`Storage`](JournalErrorKind::Storage) error, and the writer checks it
/// again against the database, so a second journal of the same saga cannot
/// leave a gap or overwrite a record either. Once a flush failed, the
/// journal keeps failing with the same error.
///
/// A journal may outlive its [`Store`](crate::Store): once the store is
/// dropped (its writer has committed what was sent and stopped), a flush
/// fails with [`Closed`](JournalErrorKind::Closed).
#[derive(Debug)]
pub struct SqliteJournal {
    id: SagaId,
    writer: Sender<Request>,
    flushed: Arc<Flushed>,
    kept: Vec<Row>,
    next_seq: u64,
    /// The number of the last flush sent (from 1).
    sent: u64,
    error: Option<JournalError>,
}

impl SqliteJournal {
    pub(crate) fn new(id: SagaId, writer: Sender<Request>, next_seq: u64) -> Self {
        SqliteJournal {
            id,
            writer,
            flushed: Arc::default(),
            kept: Vec::new(),
            next_seq,
            sent: 0,
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

    fn fail(&mut self, error: JournalError) -> Poll<Result<(), JournalError>> {
        self.error.get_or_insert(error.clone());
        Poll::Ready(Err(error))
    }
}

impl Journal for SqliteJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if record.seq != self.next_seq {
            return Err(JournalError::new(
                JournalErrorKind::Storage,
                format!(
                    "saga {}: record {} refused, the next record is number {}",
                    self.id, record.seq, self.next_seq
                ),
            ));
        }
        self.kept.push(Row {
            seq: record.seq,
            body: record.to_bytes(),
            finished: matches!(record.event, Event::Finished { .. }),
        });
        self.next_seq += 1;
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        if let Some(error) = &self.error {
            return Poll::Ready(Err(error.clone()));
        }
        if !self.kept.is_empty() {
            let flush = self.sent + 1;
            let batch = Batch {
                saga: self.id,
                rows: core::mem::take(&mut self.kept),
                completion: Completion::new(Arc::clone(&self.flushed), flush),
            };
            if self.writer.send(Request::Write(batch)).is_err() {
                return self.fail(JournalError::new(
                    JournalErrorKind::Closed,
                    format!("saga {}: the store is closed", self.id),
                ));
            }
            self.sent = flush;
        }
        let mut state = self.flushed.lock();
        if let Some(error) = &state.error {
            let error = error.clone();
            drop(state);
            return self.fail(error);
        }
        if state.done >= self.sent {
            return Poll::Ready(Ok(()));
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
