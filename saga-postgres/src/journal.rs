//! [`PgJournal`]: one claimed saga's journal; each flush is one fenced
//! transaction.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use saga_core::journal::{
    Event, Journal, JournalError, JournalErrorKind, Outcome, Record, SagaId, SagaState,
};
use sqlx::{PgPool, Row as _};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::{Claim, checksum, id_text, state_name};

/// The [`Journal`] of one claimed saga, from
/// [`PgStore::journal`](crate::PgStore::journal).
///
/// [`append`](Journal::append) encodes the record and keeps it;
/// [`poll_flush`](Journal::poll_flush) writes everything kept since the
/// last flush in one statement (one transaction), and is ready with `Ok`
/// once it committed. The statement writes only while the journal's
/// [`Claim`] still holds the saga: the same owner and epoch, a lease that
/// has not expired by the database's clock, and the saga's next record
/// number the first one sent. Otherwise it writes nothing and the flush
/// fails, as [`Fenced`](JournalErrorKind::Fenced) when the claim lost the
/// saga (the run must stop: another worker drives it now, or will), as
/// [`Storage`](JournalErrorKind::Storage) when the numbers do not follow
/// or PostgreSQL failed. Once a flush failed, the journal keeps failing
/// with the same error.
///
/// The flush's statement runs as a task on the Tokio runtime the store was
/// made in, so the run that polls the journal may be polled by any
/// executor; a flush that was sent goes on (commits or not) even if the
/// run is dropped.
///
/// Each flush also keeps the saga's row up to date: its state, its last
/// error, its definition (from the [`Created`](Event::Created) record),
/// and, with the [`Finished`](Event::Finished) record, it clears the owner
/// and the lease.
#[derive(Debug)]
pub struct PgJournal {
    pool: PgPool,
    runtime: Handle,
    id: SagaId,
    owner: Arc<str>,
    epoch: u64,
    /// The number of the first record not yet sent.
    sent_seq: u64,
    next_seq: u64,
    kept: Vec<(u64, Vec<u8>)>,
    /// What the saga's row says once the kept records are written.
    row: RowUpdate,
    in_flight: Option<JoinHandle<Result<(), JournalError>>>,
    error: Option<JournalError>,
}

/// The row's columns that records change.
#[derive(Debug, Clone)]
struct RowUpdate {
    state: SagaState,
    last_error: Option<String>,
    definition: Option<(String, u32)>,
    finished: bool,
}

impl RowUpdate {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Created {
                definition,
                version,
                ..
            } => self.definition = Some((definition.clone(), *version)),
            Event::ActionFailed { message, .. } | Event::CompensationFailed { message, .. } => {
                self.last_error = Some(message.clone());
            }
            Event::Unwinding { .. } | Event::Reopened => {
                self.state = SagaState::Unwinding;
                self.finished = false;
            }
            Event::Finished { outcome, message } => {
                self.state = SagaState::Finished(*outcome);
                self.finished = true;
                if !message.is_empty() {
                    self.last_error = Some(message.clone());
                }
            }
            _ => {}
        }
    }
}

impl PgJournal {
    pub(crate) fn new(pool: PgPool, runtime: Handle, claim: &Claim) -> Self {
        PgJournal {
            pool,
            runtime,
            id: claim.id,
            owner: Arc::clone(&claim.owner),
            epoch: claim.epoch,
            sent_seq: claim.next_seq,
            next_seq: claim.next_seq,
            kept: Vec::new(),
            row: RowUpdate {
                state: claim.state,
                last_error: None,
                definition: None,
                finished: false,
            },
            in_flight: None,
            error: None,
        }
    }

    /// The saga this journal holds.
    pub fn id(&self) -> SagaId {
        self.id
    }

    /// The epoch of the claim the journal writes under: its fencing token.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The worker the journal writes for.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The number the next appended record must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn fail(&mut self, error: JournalError) -> Poll<Result<(), JournalError>> {
        self.error.get_or_insert(error.clone());
        Poll::Ready(Err(error))
    }

    /// Sends the kept records as one flush task.
    fn send(&mut self) {
        let rows = core::mem::take(&mut self.kept);
        let batch = Batch {
            id: self.id,
            owner: Arc::clone(&self.owner),
            epoch: self.epoch,
            first: self.sent_seq,
            rows,
            row: self.row.clone(),
        };
        self.sent_seq = self.next_seq;
        // The row's error and definition are sent once.
        self.row.last_error = None;
        self.row.definition = None;
        let pool = self.pool.clone();
        self.in_flight = Some(self.runtime.spawn(flush(pool, batch)));
    }
}

impl Journal for PgJournal {
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
        if i64::try_from(record.seq).is_err() {
            return Err(JournalError::new(
                JournalErrorKind::Storage,
                format!(
                    "saga {}: record {} is numbered beyond what the store keeps",
                    self.id, record.seq
                ),
            ));
        }
        self.kept.push((record.seq, record.to_bytes()));
        self.row.apply(&record.event);
        self.next_seq += 1;
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        loop {
            if let Some(error) = &self.error {
                return Poll::Ready(Err(error.clone()));
            }
            if let Some(in_flight) = &mut self.in_flight {
                let result = match Pin::new(in_flight).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(result)) => result,
                    Poll::Ready(Err(join)) => Err(JournalError::new(
                        JournalErrorKind::Closed,
                        format!("saga {}: the flush task did not finish: {join}", self.id),
                    )),
                };
                self.in_flight = None;
                if let Err(error) = result {
                    return self.fail(error);
                }
            }
            if self.kept.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.send();
        }
    }
}

/// One flush: the records and what the row becomes.
struct Batch {
    id: SagaId,
    owner: Arc<str>,
    epoch: u64,
    first: u64,
    rows: Vec<(u64, Vec<u8>)>,
    row: RowUpdate,
}

/// The fenced write: the row's update is the fence (it matches only while
/// the claim holds the saga and the numbers follow on), and the records
/// are inserted only for a row it matched, all in one statement.
const FLUSH: &str = "
WITH fence AS (
    UPDATE saga.sagas SET
        next_seq = $5,
        state = $6,
        last_error = COALESCE($7, last_error),
        definition = COALESCE($8, definition),
        version = COALESCE($9, version),
        owner = CASE WHEN $10 THEN NULL ELSE owner END,
        lease_expires_at = CASE WHEN $10 THEN NULL ELSE lease_expires_at END,
        updated_at = clock_timestamp()
    WHERE id = $1::uuid AND owner = $2 AND epoch = $3 AND next_seq = $4
        AND lease_expires_at > clock_timestamp()
    RETURNING id
), written AS (
    INSERT INTO saga.records (saga_id, seq, body, checksum)
    SELECT fence.id, r.seq, r.body, r.checksum
    FROM fence, UNNEST($11::int8[], $12::bytea[], $13::int8[]) AS r (seq, body, checksum)
    RETURNING 1
)
SELECT (SELECT count(*) FROM fence) AS fenced, (SELECT count(*) FROM written) AS written
";

/// Why the fence did not match: read after the fact, to word the error.
const DIAGNOSE: &str = "
SELECT owner, epoch, next_seq, state,
    COALESCE(lease_expires_at > clock_timestamp(), false) AS live
FROM saga.sagas WHERE id = $1::uuid
";

async fn flush(pool: PgPool, batch: Batch) -> Result<(), JournalError> {
    let id = batch.id;
    let storage = |what: String| JournalError::new(JournalErrorKind::Storage, what);
    let postgres = |error: sqlx::Error| storage(format!("saga {id}: the flush failed: {error}"));
    let count = batch.rows.len();
    let last = batch.first + count as u64;
    let (seqs, bodies, sums) = batch.rows.into_iter().fold(
        (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        ),
        |(mut seqs, mut bodies, mut sums), (seq, body)| {
            seqs.push(seq as i64); // checked by `append`
            sums.push(checksum(id, seq, &body));
            bodies.push(body);
            (seqs, bodies, sums)
        },
    );
    let (definition, version) = batch
        .row
        .definition
        .map_or((None, None), |(name, version)| {
            (Some(name), Some(i64::from(version)))
        });
    let row = sqlx::query(FLUSH)
        .bind(id_text(id))
        .bind(&*batch.owner)
        .bind(batch.epoch as i64)
        .bind(batch.first as i64)
        .bind(last as i64)
        .bind(state_name(batch.row.state))
        .bind(batch.row.last_error)
        .bind(definition)
        .bind(version)
        .bind(batch.row.finished)
        .bind(seqs)
        .bind(bodies)
        .bind(sums)
        .fetch_one(&pool)
        .await
        .map_err(postgres)?;
    let fenced: i64 = row.try_get("fenced").map_err(postgres)?;
    let written: i64 = row.try_get("written").map_err(postgres)?;
    if fenced == 1 && written == count as i64 {
        return Ok(());
    }
    if fenced == 1 {
        // Cannot happen: the insert failing fails the statement.
        return Err(storage(format!(
            "saga {id}: {written} of {count} records were written"
        )));
    }
    let now = sqlx::query(DIAGNOSE)
        .bind(id_text(id))
        .fetch_optional(&pool)
        .await
        .map_err(postgres)?;
    let Some(now) = now else {
        return Err(storage(format!("saga {id} is not in the store")));
    };
    let owner: Option<String> = now.try_get("owner").map_err(postgres)?;
    let epoch: i64 = now.try_get("epoch").map_err(postgres)?;
    let next_seq: i64 = now.try_get("next_seq").map_err(postgres)?;
    let live: bool = now.try_get("live").map_err(postgres)?;
    let state: String = now.try_get("state").map_err(postgres)?;
    let fenced = |why: String| {
        JournalError::new(
            JournalErrorKind::Fenced,
            format!(
                "saga {id}: {why}; nothing of this flush was written (worker {}, epoch {})",
                batch.owner, batch.epoch
            ),
        )
    };
    if !matches!(state.as_str(), "forward" | "unwinding") {
        return Err(fenced(format!("the saga finished ({state})")));
    }
    if epoch as u64 != batch.epoch {
        let holder = owner.as_deref().unwrap_or("no worker");
        return Err(fenced(format!(
            "claimed again, now at epoch {epoch} (held by {holder})"
        )));
    }
    if owner.as_deref() != Some(&*batch.owner) {
        return Err(fenced(String::from(
            "the lease was released (or the saga quarantined)",
        )));
    }
    if !live {
        return Err(fenced(String::from("the lease expired")));
    }
    if next_seq as u64 != batch.first {
        return Err(storage(format!(
            "saga {id}: record {} refused, the next record is number {next_seq}",
            batch.first
        )));
    }
    // The row matches now, and did not when the statement ran (a lease
    // renewed in between).
    Err(fenced(String::from(
        "the lease had expired when the flush ran",
    )))
}

// A finished saga's outcome, for the row (an outcome of a later saga-core
// is kept as stuck: an operator looks at it).
pub(crate) fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Committed => "committed",
        Outcome::Compensated => "compensated",
        Outcome::Abandoned => "abandoned",
        _ => "stuck",
    }
}
