//! A durable store for [`saga_core`]'s journaled sagas in one SQLite file:
//! the embedded default.
//!
//! A [`Store`] is one database file. It hands out a [`SqliteJournal`] per
//! saga ([`Store::journal`]), which a run writes through
//! ([`Saga::run_journaled`](saga_core::Saga::run_journaled), or
//! [`Saga::resume`](saga_core::Saga::resume) with the
//! [`History`] that
//! [`replay`] read from [`Store::records`]). It
//! answers what an operator asks: which sagas are not finished
//! ([`Store::unfinished`]), a summary of each ([`Store::list`]), and it can
//! give a saga up ([`Store::abandon`]) or have a stuck one compensated again
//! ([`Store::reopen`]).
//!
//! [`Durable`] puts a store and a [`Registry`](saga_core::journal::Registry)
//! of saga definitions together: [`Durable::start`] starts a saga by its
//! definition's name and parameters, and [`Durable::recover`], at start-up,
//! finishes every saga a crashed process left, forward or backward. A
//! definition may be a saga ([`Registry::register`](saga_core::journal::Registry::register))
//! or a flow ([`Registry::register_flow`](saga_core::journal::Registry::register_flow),
//! whose input is the parameters, and whose saved values a recovered flow's
//! later steps read).
//!
//! # Durability
//!
//! A journal's flush is ready only after the SQLite transaction holding
//! every record appended before it has committed, in WAL mode with
//! `synchronous=FULL`: the write-ahead log is synced to disk at each commit,
//! so a flushed record survives a crash of the process or of the machine.
//! Records that were appended and not flushed may be lost; a crash never
//! leaves a gap or a half-written record (a transaction is committed whole
//! or not at all, and the store refuses a record that is not the next of its
//! saga).
//!
//! Each record is kept as its [`Record::to_bytes`] bytes with a checksum
//! over the saga id, its number and its bytes. Reading refuses, with a
//! [`StoreErrorKind::Corrupt`] error that names the saga and the record,
//! a record that does not decode, does not match its checksum, or comes
//! after a missing one: a damaged file (a torn copy, a truncated main file)
//! gives either a prefix of each saga's records or an error, never a record
//! that was not written. [`Store::list`] shows such a saga with its error
//! ([`SagaSummary::corrupt`]) beside the others. Dropping the store
//! checkpoints the write-ahead log into the main file.
//!
//! # Group commit
//!
//! One writer thread owns the write connection. A flush sends the
//! journal's new records to it as one message; the writer blocks for the
//! first message, takes every other one already queued (from every saga),
//! commits them all in one transaction, then wakes every flush it
//! committed. Under load, many sagas share each fsync: [`Store::commits`]
//! counts the transactions.
//!
//! # Threads
//!
//! [`Store::open`] starts the writer thread (named `saga-sqlite-writer`);
//! dropping the [`Store`] commits what was queued and joins it. The
//! journals need no runtime: a flush registers its task's waker and the
//! writer wakes it, so a saga runs on any executor. Reads
//! ([`Store::records`], [`Store::list`], ...) and [`Store::abandon`] block
//! the caller's thread (reads go through a second, read-only connection,
//! which WAL mode lets run beside the writer): call them from a thread
//! that may block, not from an executor's task.
//!
//! # Examples
//!
//! ```
//! use saga_core::journal::{replay, Outcome, SagaState, Start};
//! use saga_core::{Saga, SagaBuilder};
//! use saga_sqlite::Store;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("sagas.db"))?;
//! let id = store.new_id();
//!
//! let mut saga: Saga<String> = SagaBuilder::new()
//!     .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
//!     .build();
//! let mut journal = store.journal(id)?;
//! let run = saga.run_journaled(&mut journal, Start::new("one-step", 1, vec![]))?;
//! smol::block_on(run).map_err(|error| error.to_string())?;
//!
//! let history = replay(&store.records(id)?)?;
//! assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
//! assert!(store.unfinished()?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std crate: std paths read as what they are"
)]

mod durable;
mod error;
mod journal;
mod writer;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use saga_core::journal::{
    Event, History, Journal, Outcome, Record, ReplayError, SagaId, SagaState, replay,
};

pub use durable::{Durable, NotRun, Recovered};
pub use error::{StoreError, StoreErrorKind};
pub use journal::SqliteJournal;

use writer::Request;

/// The schema this version writes, in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    saga_id BLOB NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    body BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (saga_id, seq)
) WITHOUT ROWID;
";

/// How long a connection waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite store of saga journals: one database file, one writer thread.
///
/// See the [crate docs](crate) for its durability guarantee and group
/// commit. A store is `Send + Sync`: share it (by reference or in an
/// `Arc`) between the threads that start sagas.
///
/// Dropping it commits what journals had sent and stops the writer thread;
/// the journals it handed out then fail with
/// [`Closed`](saga_core::journal::JournalErrorKind::Closed).
///
/// # Examples
///
/// A saga's records, written through its journal and read back:
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use saga_core::journal::{Event, Journal, Record};
/// use saga_sqlite::Store;
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path().join("sagas.db"))?;
/// let id = store.new_id();
/// let mut journal = store.journal(id)?;
///
/// let records = [
///     Record { seq: 0, event: Event::Created {
///         definition: "trip".into(), version: 1, fingerprint: 7, parameters: vec![1, 2],
///     } },
///     Record { seq: 1, event: Event::ActionStarted { step: 0, attempt: 1 } },
/// ];
/// for record in &records {
///     journal.append(record)?;
/// }
/// // A flush is ready once the writer committed the records; a real run
/// // awaits it on its executor.
/// let mut cx = Context::from_waker(Waker::noop());
/// while journal.poll_flush(&mut cx).is_pending() {
///     std::thread::yield_now();
/// }
///
/// assert_eq!(store.records(id)?, records);
/// assert_eq!(store.unfinished()?, [id]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    reader: Mutex<Connection>,
    writer: Sender<Request>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

/// One saga as [`Store::list`] shows it to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SagaSummary {
    /// The saga.
    pub id: SagaId,
    /// Its definition's name (empty when its first record is not
    /// [`Created`](Event::Created)).
    pub definition: String,
    /// Its definition's version.
    pub version: u32,
    /// Where it is, as [`replay`] reads its records; the replay's error
    /// when they cannot be resumed from.
    pub state: Result<SagaState, ReplayError>,
    /// How many records it has (its rows in the store, corrupt ones
    /// included).
    pub records: u64,
    /// When its first record was committed.
    pub created: SystemTime,
    /// When its last record was committed.
    pub updated: SystemTime,
    /// The last error its records mention, as it displayed.
    pub last_error: Option<String>,
    /// Why its records cannot be read: a [`StoreErrorKind::Corrupt`] error
    /// naming the saga and the first record that is missing, does not match
    /// its checksum or does not decode, as [`Store::records`] fails for
    /// it. `None` when every record was read.
    ///
    /// When it is `Some`, [`definition`](SagaSummary::definition),
    /// [`version`](SagaSummary::version),
    /// [`state`](SagaSummary::state) and
    /// [`last_error`](SagaSummary::last_error) tell of the records before
    /// that one (`state` is `Err(ReplayError::Empty)` when it is the first):
    /// where the saga had got to at least, not where it is. Such a saga
    /// cannot be resumed ([`Durable::recover`] leaves it in the store, with
    /// the error); an operator can [abandon](Store::abandon) it only once
    /// its records are repaired.
    pub corrupt: Option<StoreError>,
}

impl Store {
    /// Opens the store at `path`, creating the file and its schema if they
    /// are not there, and starts its writer thread.
    ///
    /// Fails with [`StoreErrorKind::Sqlite`] when the file cannot be opened
    /// or is not a database, and with [`StoreErrorKind::Schema`] when it
    /// was written by an unknown schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let sqlite = |what: &str, error| StoreError::sqlite(format!("{shown}: {what}"), error);

        let connection = Connection::open(&path).map_err(|e| sqlite("cannot open", e))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sqlite("cannot set the busy timeout", e))?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| sqlite("cannot switch to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(
                StoreErrorKind::Sqlite,
                format!("{shown}: SQLite kept journal mode {mode:?} instead of WAL"),
            ));
        }
        connection
            .execute_batch("PRAGMA synchronous = FULL;")
            .map_err(|e| sqlite("cannot set synchronous=FULL", e))?;
        create_schema(&connection).map_err(|error| match error {
            Schema::Sqlite(error) => sqlite("cannot create the schema", error),
            Schema::Version(version) => StoreError::new(
                StoreErrorKind::Schema,
                format!("{shown}: schema version {version} is not this store's ({SCHEMA_VERSION})"),
            ),
        })?;

        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite("cannot open for reading", e))?;
        reader
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sqlite("cannot set the busy timeout", e))?;

        let (writer, requests) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let thread = thread::Builder::new()
            .name("saga-sqlite-writer".into())
            .spawn({
                let commits = Arc::clone(&commits);
                move || writer::run(connection, requests, commits)
            })
            .map_err(|error| {
                StoreError::with_source(
                    StoreErrorKind::Thread,
                    format!("{shown}: cannot start the writer thread"),
                    error,
                )
            })?;
        Ok(Store {
            path,
            reader: Mutex::new(reader),
            writer,
            thread: Some(thread),
            commits,
        })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal of saga `id`: a new saga (its first record is number 0)
    /// or one the store holds (its next record is numbered on from its
    /// last, as [`History::next_seq`] says).
    pub fn journal(&self, id: SagaId) -> Result<SqliteJournal, StoreError> {
        let last: Option<i64> = self
            .read(|reader| {
                reader
                    .query_row(
                        "SELECT MAX(seq) FROM records WHERE saga_id = ?1",
                        params![&id.0.to_be_bytes()[..]],
                        |row| row.get(0),
                    )
                    .optional()
                    .map(Option::flatten)
            })
            .map_err(|e| {
                StoreError::sqlite(format!("saga {id}: cannot read its last record"), e)
            })?;
        let next = last.map_or(0, |seq| seq as u64 + 1);
        Ok(SqliteJournal::new(id, self.writer.clone(), next))
    }

    /// Every committed record of saga `id`, in order (none for a saga the
    /// store does not know).
    ///
    /// Fails with [`StoreErrorKind::Corrupt`], naming the saga and the
    /// record, when a record cannot be decoded or is missing (the rows are
    /// not numbered 0, 1, 2, ...: a damaged file lost some).
    pub fn records(&self, id: SagaId) -> Result<Vec<Record>, StoreError> {
        let rows = self
            .read(|reader| {
                let mut statement = reader.prepare_cached(
                    "SELECT seq, body, checksum FROM records WHERE saga_id = ?1 ORDER BY seq",
                )?;
                let rows = statement
                    .query_map(params![&id.0.to_be_bytes()[..]], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .map_err(|e| StoreError::sqlite(format!("saga {id}: cannot read its records"), e))?;
        rows.iter()
            .zip(0..)
            .map(|((seq, body, checksum), want)| decode(id, *seq, want, body, *checksum))
            .collect()
    }

    /// The sagas whose last record is not [`Finished`](Event::Finished):
    /// those to resume after a restart, in the order of their ids.
    pub fn unfinished(&self) -> Result<Vec<SagaId>, StoreError> {
        let ids = self
            .read(|reader| {
                // SQLite takes `finished` from the row holding MAX(seq).
                let mut statement = reader.prepare_cached(
                    "SELECT saga_id, MAX(seq), finished FROM records \
                     GROUP BY saga_id ORDER BY saga_id",
                )?;
                let rows = statement
                    .query_map([], |row| {
                        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, bool>(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .map_err(|e| StoreError::sqlite("cannot list the unfinished sagas", e))?;
        let mut unfinished = Vec::new();
        for (id, finished) in ids {
            if !finished {
                unfinished.push(saga_id(&id)?);
            }
        }
        Ok(unfinished)
    }

    /// A summary of every saga in the store, in the order of their ids:
    /// definition, state, age and last error.
    ///
    /// A saga whose records cannot all be read (one is missing, does not
    /// match its checksum or does not decode, as [`records`](Store::records)
    /// refuses it) does not hide the others: it is listed with the error in
    /// its summary's [`corrupt`](SagaSummary::corrupt), and what its
    /// readable records tell.
    ///
    /// Fails with [`StoreErrorKind::Sqlite`] when the records cannot be
    /// read at all, and with [`StoreErrorKind::Corrupt`] for a row whose
    /// saga id is not 16 bytes (no saga can be named for it: the table
    /// itself is damaged).
    ///
    /// # Examples
    ///
    /// Two sagas, and the record of one overwritten behind the store's
    /// back: both are listed, and only the damaged one says it is corrupt.
    ///
    /// ```
    /// use std::task::{Context, Waker};
    /// use saga_core::journal::{Event, Journal, Record, SagaState};
    /// use saga_sqlite::{Store, StoreErrorKind};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("sagas.db");
    /// let store = Store::open(&path)?;
    /// let (sound, damaged) = (store.new_id(), store.new_id());
    /// for id in [sound, damaged] {
    ///     let mut journal = store.journal(id)?;
    ///     journal.append(&Record { seq: 0, event: Event::Created {
    ///         definition: "trip".into(), version: 1, fingerprint: 7, parameters: vec![],
    ///     } })?;
    ///     journal.append(&Record { seq: 1, event: Event::ActionStarted { step: 0, attempt: 1 } })?;
    ///     let mut cx = Context::from_waker(Waker::noop());
    ///     while journal.poll_flush(&mut cx).is_pending() {
    ///         std::thread::yield_now();
    ///     }
    /// }
    /// rusqlite::Connection::open(&path)?.execute(
    ///     "UPDATE records SET body = x'00' WHERE saga_id = ?1 AND seq = 1",
    ///     [&damaged.0.to_be_bytes()[..]],
    /// )?;
    ///
    /// let list = store.list()?;
    /// assert_eq!(list.len(), 2);
    /// let (first, second) = (&list[0], &list[1]);
    /// assert_eq!((first.id, second.id), (sound, damaged));
    /// assert_eq!(first.corrupt, None);
    /// assert_eq!(first.state, Ok(SagaState::Forward));
    /// let error = second.corrupt.as_ref().expect("the damaged saga says so");
    /// assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    /// assert!(error.to_string().contains("record 1"));
    /// // What its readable record tells.
    /// assert_eq!((second.definition.as_str(), second.records), ("trip", 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn list(&self) -> Result<Vec<SagaSummary>, StoreError> {
        type Row = (Vec<u8>, i64, Vec<u8>, i64, i64);
        let rows: Vec<Row> = self
            .read(|reader| {
                let mut statement = reader.prepare_cached(
                    "SELECT saga_id, seq, body, written_at, checksum FROM records \
                     ORDER BY saga_id, seq",
                )?;
                let rows = statement
                    .query_map([], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .map_err(|e| StoreError::sqlite("cannot list the sagas", e))?;

        let mut summaries = Vec::new();
        let mut rows = rows.into_iter().peekable();
        while let Some((raw_id, seq, body, written_at, checksum)) = rows.next() {
            let id = saga_id(&raw_id)?;
            let created = millis(written_at);
            let mut updated = created;
            let mut count = 1;
            let mut records = Vec::new();
            // The first record that cannot be read ends what is summarized;
            // the saga's other rows are still counted.
            let mut corrupt = decode(id, seq, 0, &body, checksum)
                .map(|record| records.push(record))
                .err();
            while let Some((_, seq, body, written_at, checksum)) =
                rows.next_if(|row| row.0 == raw_id)
            {
                if corrupt.is_none() {
                    let want = records.len() as i64;
                    match decode(id, seq, want, &body, checksum) {
                        Ok(record) => records.push(record),
                        Err(error) => corrupt = Some(error),
                    }
                }
                count += 1;
                updated = millis(written_at);
            }
            let mut summary = summarize(id, &records, created, updated);
            summary.records = count;
            summary.corrupt = corrupt;
            summaries.push(summary);
        }
        Ok(summaries)
    }

    /// Gives saga `id` up: appends [`Finished`](Event::Finished) with
    /// [`Outcome::Abandoned`] and `reason` at its next number, and returns
    /// once it is committed. Nothing is compensated.
    ///
    /// Fails for a saga the store does not know
    /// ([`StoreErrorKind::UnknownSaga`]), one that finished
    /// ([`StoreErrorKind::Finished`]), one whose records cannot be replayed
    /// ([`StoreErrorKind::Replay`]), and when the record cannot be written
    /// ([`StoreErrorKind::Journal`], for instance because a run appended a
    /// record in between).
    pub fn abandon(&self, id: SagaId, reason: &str) -> Result<(), StoreError> {
        let history = self.history_of(id)?;
        if let SagaState::Finished(outcome) = history.state() {
            return Err(StoreError::new(
                StoreErrorKind::Finished(outcome),
                format!("saga {id} already finished ({outcome})"),
            ));
        }
        let finished = Event::Finished {
            outcome: Outcome::Abandoned,
            message: reason.to_owned(),
        };
        self.append_for_operator(id, &history, finished, "that it was abandoned")
    }

    /// Reopens a saga that finished stuck (a compensation kept failing, or
    /// its failure was propagated without compensating), after an operator
    /// fixed what made it fail: appends [`Event::Reopened`], so that the
    /// next recovery ([`Durable::recover`]) compensates again what it left
    /// applied, attempting its failed compensations again.
    ///
    /// Fails for an unknown saga, one whose records do not replay, and one
    /// that is not stuck ([`StoreErrorKind::Finished`] with its outcome, or
    /// [`StoreErrorKind::Replay`] for a saga still running).
    pub fn reopen(&self, id: SagaId) -> Result<(), StoreError> {
        let history = self.history_of(id)?;
        match history.state() {
            SagaState::Finished(Outcome::Stuck) => {}
            SagaState::Finished(outcome) => {
                return Err(StoreError::new(
                    StoreErrorKind::Finished(outcome),
                    format!("saga {id} finished {outcome}: only a stuck saga is reopened"),
                ));
            }
            _ => {
                return Err(StoreError::new(
                    StoreErrorKind::Replay,
                    format!("saga {id} has not finished: only a stuck saga is reopened"),
                ));
            }
        }
        self.append_for_operator(id, &history, Event::Reopened, "that it was reopened")
    }

    /// Saga `id`'s history, for an operator's action.
    fn history_of(&self, id: SagaId) -> Result<History, StoreError> {
        let records = self.records(id)?;
        if records.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::UnknownSaga,
                format!("saga {id} is not in the store"),
            ));
        }
        let history = replay(&records).map_err(|error| {
            StoreError::with_source(
                StoreErrorKind::Replay,
                format!("saga {id}: its records cannot be replayed"),
                error,
            )
        })?;
        Ok(history)
    }

    /// Appends an operator's record to saga `id`, durably.
    fn append_for_operator(
        &self,
        id: SagaId,
        history: &History,
        event: Event,
        what: &str,
    ) -> Result<(), StoreError> {
        let record = Record {
            seq: history.next_seq(),
            event,
        };
        let mut journal = SqliteJournal::new(id, self.writer.clone(), history.next_seq());
        let journal_error = |error| {
            StoreError::with_source(
                StoreErrorKind::Journal,
                format!("saga {id}: cannot record {what}"),
                error,
            )
        };
        journal.append(&record).map_err(journal_error)?;
        block_on_flush(&mut journal).map_err(journal_error)
    }

    /// How many transactions the writer committed since the store was
    /// opened (each one syncs the write-ahead log once): with
    /// the number of flushes, what group commit saved.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// A new saga id, unique across restarts: the time in nanoseconds since
    /// the Unix epoch (the high 64 bits, so ids sort by creation), a tag
    /// drawn at random once per process (mixed with its process id) and a
    /// counter.
    pub fn new_id(&self) -> SagaId {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        static TAG: OnceLock<u32> = OnceLock::new();
        let tag = *TAG.get_or_init(|| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.finish() as u32
        });
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        SagaId(((nanos as u128) << 64) | ((tag as u128) << 32) | count as u128)
    }

    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        read(&reader)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The writer commits what was sent before this, then stops.
        let _ = self.writer.send(Request::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Schema {
    Sqlite(rusqlite::Error),
    Version(i64),
}

fn create_schema(connection: &Connection) -> Result<(), Schema> {
    let transaction = connection.unchecked_transaction().map_err(Schema::Sqlite)?;
    let version: i64 = transaction
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(Schema::Sqlite)?;
    match version {
        0 => {
            transaction.execute_batch(SCHEMA).map_err(Schema::Sqlite)?;
            transaction
                .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
                .map_err(Schema::Sqlite)?;
        }
        SCHEMA_VERSION => {
            // Checks that the table is there and readable.
            transaction
                .query_row("SELECT COUNT(*) FROM records WHERE 0", [], |_| Ok(()))
                .map_err(Schema::Sqlite)?;
        }
        other => return Err(Schema::Version(other)),
    }
    transaction.commit().map_err(Schema::Sqlite)
}

fn saga_id(raw: &[u8]) -> Result<SagaId, StoreError> {
    let bytes: [u8; 16] = raw.try_into().map_err(|_| {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("a saga id of {} bytes (not 16) in the store", raw.len()),
        )
    })?;
    Ok(SagaId(u128::from_be_bytes(bytes)))
}

/// Decodes the record in row `seq` of saga `id`, which should be its
/// record number `want` (a damaged file can lose rows) and match its
/// checksum (a damaged file can return bytes that were never written).
fn decode(
    id: SagaId,
    seq: i64,
    want: i64,
    body: &[u8],
    checksum: i64,
) -> Result<Record, StoreError> {
    if seq != want {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("saga {id}: record {want} is missing (record {seq} came instead)"),
        ));
    }
    if writer::checksum(id, seq as u64, body) != checksum {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("saga {id}: record {seq} does not match its checksum"),
        ));
    }
    let record = Record::from_bytes(body).map_err(|error| {
        StoreError::with_source(
            StoreErrorKind::Corrupt,
            format!("saga {id}: record {seq} cannot be decoded"),
            error,
        )
    })?;
    if i64::try_from(record.seq).ok() != Some(seq) {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("saga {id}: record {seq} says it is record {}", record.seq),
        ));
    }
    Ok(record)
}

fn millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64)
}

fn summarize(
    id: SagaId,
    records: &[Record],
    created: SystemTime,
    updated: SystemTime,
) -> SagaSummary {
    let mut summary = SagaSummary {
        id,
        definition: String::new(),
        version: 0,
        state: Err(ReplayError::NotCreated),
        records: records.len() as u64,
        created,
        updated,
        last_error: None,
        corrupt: None,
    };
    // Replayed record by record, so that a saga whose records stop making
    // sense still shows its definition and last error.
    let mut history: History = match replay(records.get(..1).unwrap_or_default()) {
        Ok(history) => history,
        Err(error) => {
            summary.state = Err(error);
            return summary;
        }
    };
    let mut failed = None;
    for record in records.get(1..).unwrap_or_default() {
        if let Err(error) = history.apply(record) {
            failed = Some(error);
            break;
        }
    }
    summary.definition = history.definition.clone();
    summary.version = history.version;
    summary.last_error = history.last_error().map(str::to_owned);
    summary.state = match failed {
        Some(error) => Err(error),
        None => Ok(history.state()),
    };
    summary
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on_flush(journal: &mut SqliteJournal) -> Result<(), saga_core::journal::JournalError> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match journal.poll_flush(&mut cx) {
            Poll::Ready(result) => return result,
            Poll::Pending => thread::park(),
        }
    }
}
