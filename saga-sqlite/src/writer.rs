//! The writer thread: it owns the write connection, and commits what every
//! journal sent it in as few transactions as it can (group commit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use saga_core::journal::{JournalError, JournalErrorKind, SagaId};

/// Most requests committed in one transaction: a flood of flushes is
/// committed in several transactions rather than one unbounded one.
const MAX_BATCH: usize = 4096;

/// What a journal sends the writer.
pub(crate) enum Request {
    /// Records of one saga, to commit.
    Write(Batch),
    /// Commit what is queued, then stop.
    Shutdown,
}

/// One record, encoded, as the writer inserts it.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) seq: u64,
    pub(crate) body: Vec<u8>,
    pub(crate) finished: bool,
}

/// One flush of one journal: its records, and whom to tell.
pub(crate) struct Batch {
    pub(crate) saga: SagaId,
    pub(crate) rows: Vec<Row>,
    pub(crate) completion: Completion,
}

/// What a journal's flushes came to, shared between the journal and the
/// writer.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    state: Mutex<FlushedState>,
}

#[derive(Debug, Default)]
pub(crate) struct FlushedState {
    /// The last flush (numbered by the journal, from 1) whose records are
    /// committed.
    pub(crate) done: u64,
    /// The first error: once a flush failed, every later one fails.
    pub(crate) error: Option<JournalError>,
    /// Who waits for a flush.
    pub(crate) waker: Option<Waker>,
}

impl Flushed {
    pub(crate) fn lock(&self) -> MutexGuard<'_, FlushedState> {
        // A panic while holding the lock leaves the state consistent (each
        // update is one assignment), so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Resolves one flush. If it is dropped unresolved (the writer stopped or
/// panicked before committing it), the flush fails as closed, so that no
/// journal waits for ever.
pub(crate) struct Completion {
    flushed: Arc<Flushed>,
    flush: u64,
    resolved: bool,
}

impl Completion {
    pub(crate) fn new(flushed: Arc<Flushed>, flush: u64) -> Self {
        Completion {
            flushed,
            flush,
            resolved: false,
        }
    }

    fn resolve(mut self, result: Result<(), JournalError>) {
        self.resolved = true;
        self.finish(result);
    }

    fn finish(&self, result: Result<(), JournalError>) {
        let waker = {
            let mut state = self.flushed.lock();
            match result {
                Ok(()) => state.done = state.done.max(self.flush),
                Err(error) => {
                    state.error.get_or_insert(error);
                }
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.resolved {
            self.finish(Err(JournalError::new(
                JournalErrorKind::Closed,
                "the store's writer stopped before committing the records",
            )));
        }
    }
}

/// The writer's loop: block for a request, drain the queue, commit it all
/// in one transaction, tell every flusher; stop at `Shutdown` (after
/// committing what came before it) or when every sender is gone.
pub(crate) fn run(
    mut connection: Connection,
    requests: Receiver<Request>,
    commits: Arc<AtomicU64>,
) {
    let mut batches = Vec::new();
    loop {
        let mut stop = false;
        match requests.recv() {
            Ok(Request::Write(batch)) => batches.push(batch),
            Ok(Request::Shutdown) | Err(_) => stop = true,
        }
        while batches.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(Request::Write(batch)) => batches.push(batch),
                Ok(Request::Shutdown) => stop = true,
                Err(_) => break,
            }
        }
        if !batches.is_empty() {
            commit(&mut connection, &mut batches, &commits);
        }
        if stop {
            // Whatever was sent before the shutdown is committed; later
            // sends fail (the receiver is dropped) or their completions
            // resolve as closed when the queue is dropped.
            while let Ok(request) = requests.try_recv() {
                if let Request::Write(batch) = request {
                    batches.push(batch);
                }
            }
            if !batches.is_empty() {
                commit(&mut connection, &mut batches, &commits);
            }
            // Moves the log into the main file, so that a closed store is
            // one file. Best effort: the log is as durable as the file, and
            // the next open reads it either way.
            let _ = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            return;
        }
    }
}

fn storage(message: String) -> JournalError {
    JournalError::new(JournalErrorKind::Storage, message)
}

/// Commits `batches` in one transaction and resolves each one: a batch
/// whose first record is not the next of its saga is refused alone; a
/// failing transaction fails them all.
fn commit(connection: &mut Connection, batches: &mut Vec<Batch>, commits: &AtomicU64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    let mut verdicts: Vec<Result<(), JournalError>> = Vec::with_capacity(batches.len());
    let outcome = (|| -> rusqlite::Result<bool> {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut wrote = false;
        {
            let mut last =
                transaction.prepare_cached("SELECT MAX(seq) FROM records WHERE saga_id = ?1")?;
            let mut insert = transaction.prepare_cached(
                "INSERT INTO records (saga_id, seq, body, checksum, finished, written_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for batch in batches.iter() {
                let id = batch.saga.0.to_be_bytes();
                let last_seq: Option<i64> = last
                    .query_row(params![&id[..]], |row| row.get(0))
                    .optional()?
                    .flatten();
                let expected = last_seq.map_or(0, |seq| seq as u64 + 1);
                if let Err(error) = check(batch, expected) {
                    verdicts.push(Err(error));
                    continue;
                }
                for row in &batch.rows {
                    let seq = row.seq as i64; // checked by `check`
                    let sum = checksum(batch.saga, row.seq, &row.body);
                    insert.execute(params![&id[..], seq, &row.body, sum, row.finished, now])?;
                    wrote = true;
                }
                verdicts.push(Ok(()));
            }
        }
        transaction.commit()?;
        Ok(wrote)
    })();
    let batches = batches.drain(..);
    match outcome {
        Ok(wrote) => {
            if wrote {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            for (batch, verdict) in batches.zip(verdicts) {
                batch.completion.resolve(verdict);
            }
        }
        Err(error) => {
            for batch in batches {
                let message = format!("saga {}: the transaction failed: {error}", batch.saga);
                batch.completion.resolve(Err(storage(message)));
            }
        }
    }
}

/// Whether `batch`'s records are numbered on from `expected`, without a
/// gap and within SQLite's integers.
fn check(batch: &Batch, expected: u64) -> Result<(), JournalError> {
    for (row, want) in batch.rows.iter().zip(expected..) {
        if row.seq != want {
            return Err(storage(format!(
                "saga {}: record {} refused, the next record is number {want}",
                batch.saga, row.seq
            )));
        }
        if i64::try_from(row.seq).is_err() {
            return Err(storage(format!(
                "saga {}: record {} is numbered beyond what the store keeps",
                batch.saga, row.seq
            )));
        }
    }
    Ok(())
}

/// The checksum kept beside each record: 64-bit FNV-1a over the saga id,
/// the record's number and its bytes, so that a damaged file's bytes (or a
/// row moved to another key) are told apart from what was written.
pub(crate) fn checksum(saga: SagaId, seq: u64, body: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let key = saga.0.to_be_bytes();
    let seq = seq.to_be_bytes();
    for byte in key.iter().chain(&seq).chain(body) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}
