//! A durable store for [`saga_core`]'s journaled sagas in PostgreSQL, for
//! sagas driven by many workers at once: leases say which worker drives
//! which saga, and fencing keeps a worker that lost its lease from writing.
//!
//! A [`PgStore`] wraps the [`PgPool`] you already hold. Its
//! tables live in their own PostgreSQL schema, `saga`, created by
//! [`PgStore::migrate`] (or [`PgStore::open`]). A worker
//! [creates](PgStore::create) a saga, or [claims](PgStore::claim) sagas
//! that another worker left, and gets a [`Claim`] for each; the claim's
//! [journal](PgStore::journal), a [`PgJournal`], is what a run writes
//! through ([`Saga::run_journaled`](saga_core::Saga::run_journaled), or
//! [`Saga::resume`](saga_core::Saga::resume) with the [`History`] that
//! [`PgStore::history`] reads). An operator [lists](PgStore::list) the
//! sagas, [abandons](PgStore::abandon) one, or [reopens](PgStore::reopen)
//! a stuck one, with the same meaning as in `saga-sqlite`.
//!
//! Most applications do not handle claims themselves: a [`Worker`] puts a
//! store and a [`Registry`](saga_core::journal::Registry) of saga
//! definitions together. Any process [submits](Worker::submit) a saga by
//! its definition's name and parameters; each worker, in one future
//! ([`Worker::run`]), claims sagas (new ones, and those other workers
//! left), builds each again through the registry and resumes it from its
//! journal, drives many at once, renews their leases, and hands back what
//! it still holds when it stops.
//!
//! A saga whose run crashes the process that drives it (an abort, the
//! kernel's OOM killer) would take down each worker that claims it in
//! turn, once its lease expires. With [`Worker::max_recoveries`], a worker
//! [quarantines](PgStore::quarantine) a saga taken over more often than the
//! limit, with a reason that says so, instead of resuming it; the other
//! sagas go on.
//!
//! # Leases
//!
//! Each saga's row names its *owner* (a worker's name, chosen by the
//! worker) and the time its *lease* expires, as the database's clock tells
//! it (`clock_timestamp()`), so the workers' own clocks never matter. A
//! worker holds a saga while its lease lasts, and keeps it by
//! [renewing](PgStore::renew) its leases (all of them in one statement)
//! well before they expire. A worker that stops gracefully
//! [releases](PgStore::release) its sagas (their leases expire at once); a
//! worker that crashes or hangs simply stops renewing.
//!
//! [`PgStore::claim`] takes unfinished sagas whose lease has expired (or
//! was released): it locks them with `SELECT ... FOR UPDATE SKIP LOCKED`,
//! so two workers claiming at once never get the same saga, and for each
//! one it sets the new owner and lease, counts one more recovery, and
//! raises the saga's *epoch* by one.
//!
//! # Fencing
//!
//! This is rule 16 of `saga_core`'s crate docs (one driver at a time). A
//! worker can lose a lease without knowing it (a long pause, a slow
//! network). Its journal then must not write: every flush of a
//! [`PgJournal`] is one statement that writes only if the saga's row still
//! names the journal's owner and epoch, the lease has not expired, and the
//! saga's next record number is the journal's. If not, nothing of the
//! flush is written and it fails as
//! [`Fenced`](saga_core::journal::JournalErrorKind::Fenced): the run stops
//! without compensating, and the saga is finished by the worker that holds
//! it now. The row's lock orders the flush and the claim: a flush that
//! committed did so while its lease held, and the next owner reads its
//! records.
//!
//! The epoch is also a *fencing token* for the systems the saga's steps
//! call: [`Claim::context`] puts it in the
//! [`SagaContext`](saga_core::journal::SagaContext) the saga is built with
//! ([`SagaContext::epoch`](saga_core::journal::SagaContext::epoch)). A
//! system that remembers the highest epoch it saw for a saga can refuse a
//! call carrying a lower one, from a worker that no longer holds it.
//!
//! # Guarantees
//!
//! - A flush is ready with `Ok` only after its transaction committed.
//!   PostgreSQL's durability then applies (with its defaults, the commit
//!   is on disk).
//! - Records are numbered without gaps; a flush writes all its records or
//!   none.
//! - At most one worker writes a saga's records at a time, and a worker
//!   that lost its lease writes nothing more.
//! - Actions and compensations run *at least once*: an attempt that ran
//!   and whose outcome was not committed (its worker died) runs again, or
//!   is compensated, on the next owner. Make them idempotent, keyed by
//!   [`SagaContext::key`](saga_core::journal::SagaContext::key).
//! - A lease does not stop a worker's steps from running after it expired
//!   (only its journal is fenced): keep steps shorter than the lease, or
//!   pass the epoch to what they call.
//!
//! Each record is kept as its [`Record::to_bytes`] bytes with a checksum
//! over the saga id, its number and its bytes; reading refuses, with a
//! [`StoreErrorKind::Corrupt`] error naming the saga and the record, a
//! record that does not decode, does not match its checksum, or follows a
//! missing one.
//!
//! # Operators
//!
//! [`PgStore::list`] shows each saga (or those in one state) with its
//! owner, lease, age, recoveries and last error, read from the sagas' rows
//! (each flush keeps its saga's row up to date). [`PgStore::abandon`] gives
//! a saga up and [`PgStore::reopen`] has a stuck one compensated again, as
//! in `saga-sqlite`; both lock the saga's row, write their record, and
//! fence whatever worker still drove it. [`PgStore::quarantine`] sets aside
//! a saga that cannot be resumed (a [`Worker`] does so with the reason), and
//! [`PgStore::release_quarantine`] lets it be claimed again.
//! [`PgStore::summary`] reads one saga's row as [`PgStore::list`] shows it.
//!
//! # Command line
//!
//! The crate's binary, `saga-pg` (`cargo install saga-postgres`, or
//! `cargo run -p saga-postgres --bin saga-pg --`), does the same from a
//! shell. The database is `--url URL` or, without it, `DATABASE_URL`
//! (`postgres://user:password@host/db`, or
//! `postgres:///db?host=/run/postgresql` for a Unix socket); it never
//! creates the store's tables.
//!
//! ```text
//! saga-pg list [--state forward|unwinding|committed|compensated|stuck|abandoned]
//! saga-pg show ID                      # the summary, then each record on a line
//! saga-pg abandon ID --reason TEXT
//! saga-pg reopen ID
//! saga-pg release-quarantine ID
//! ```
//!
//! `list` prints a table, a saga a line: id, definition@version, state,
//! owner, epoch, lease left, recoveries, age, last error and quarantine
//! (the last two cut to 40 characters; `show` prints them whole). Control
//! characters in messages are escaped, so that a record stays on its
//! line. It exits with 0 when the command did what it says, 1 when it
//! failed (no database, no such saga, a change the store refuses, with
//! the store's message), and 2 when the command line is wrong.
//!
//! ```text
//! $ saga-pg list --state stuck
//! ID                                DEFINITION  STATE  OWNER  EPOCH  LEASE  RECOVERIES  AGE   LAST ERROR                                QUARANTINE
//! 18edc00effe3017060415c3400000002  refund@2    stuck  -      1      -      0           0.3s  step 1 failed: card declined\nby the is…  -
//! $ saga-pg reopen 18edc00effe3017060415c3400000002
//! saga 18edc00effe3017060415c3400000002 reopened: the next worker to claim it compensates it
//! ```
//!
//! # Schema
//!
//! In the PostgreSQL schema `saga`:
//!
//! - `saga.sagas`, one row per saga: `id` (`uuid`), `definition`,
//!   `version`, `state` (`forward`, `unwinding`, `committed`,
//!   `compensated`, `stuck` or `abandoned`), `owner`, `epoch`,
//!   `lease_expires_at`, `recoveries`, `next_seq`, `created_at`,
//!   `updated_at`, `last_error`, `quarantine`;
//! - `saga.records`, one row per record, primary key `(saga_id, seq)`:
//!   `body` (the record's bytes), `checksum`, `written_at`;
//! - `saga.schema_version`, the version of these tables.
//!
//! They are plain tables: an operator may read them with `psql`.
//! Writing to them other than through this crate voids the guarantees.
//!
//! # Runtime
//!
//! The store needs a Tokio runtime, as `sqlx` does: make it inside one. Its
//! calls are `async`. A journal's flush runs as a task on that runtime, so
//! the saga runs themselves may be polled by any executor. Each flush is
//! one statement on a connection from the pool (there is no group commit
//! yet): size the pool for the flushes that run at once.
//!
//! # Examples
//!
//! Not run here (they need a PostgreSQL server; the crate's tests start
//! their own):
//!
//! ```no_run
//! use std::time::Duration;
//! use saga_core::journal::{Outcome, SagaState, Start};
//! use saga_core::{Saga, SagaBuilder};
//! use saga_postgres::PgStore;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
//! let store = PgStore::open(pool).await?;
//!
//! let id = store.new_id();
//! let claim = store.create(id, "worker-1", Duration::from_secs(30)).await?;
//! let mut saga: Saga<String> = SagaBuilder::new()
//!     .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
//!     .build();
//! let mut journal = store.journal(&claim);
//! saga.run_journaled(&mut journal, Start::new("one-step", 1, vec![]))?
//!     .await
//!     .map_err(|error| error.to_string())?;
//!
//! let history = store.history(id).await?;
//! assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
//! # Ok(())
//! # }
//! ```

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std crate: std paths read as what they are"
)]

mod claim;
mod error;
mod journal;
mod schema;
mod worker;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use saga_core::journal::{Event, History, Outcome, Record, SagaId, SagaState, Start, replay};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row as _, Transaction};
use tokio::runtime::Handle;

pub use claim::Claim;
pub use error::{StoreError, StoreErrorKind};
pub use journal::PgJournal;
pub use worker::{NotRun, Worker, WorkerReport};

/// A PostgreSQL store of saga journals, over the application's pool.
///
/// See the [crate docs](crate) for leases, fencing and what is
/// guaranteed. Cloning a store is cheap (the pool is shared); it is
/// `Send + Sync`.
///
/// # Examples
///
/// Not run here (it needs a server):
///
/// ```no_run
/// use std::time::Duration;
/// use saga_postgres::PgStore;
///
/// # async fn example(pool: sqlx::PgPool) -> Result<(), saga_postgres::StoreError> {
/// let store = PgStore::open(pool).await?;
/// // Take up to 10 sagas that crashed workers left.
/// for claim in store.claim("worker-2", Duration::from_secs(30), 10).await? {
///     let history = store.history(claim.id()).await?;
///     // ... rebuild the saga from `history` and resume it ...
/// #   let _ = history;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    runtime: Handle,
}

/// One saga as [`PgStore::list`] shows it to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SagaSummary {
    /// The saga.
    pub id: SagaId,
    /// Its definition's name (empty until its first record is written).
    pub definition: String,
    /// Its definition's version.
    pub version: u32,
    /// Where it is, as its last written record says.
    pub state: SagaState,
    /// The worker that holds it, if any.
    pub owner: Option<String>,
    /// The epoch of its last claim (1 when it was created, and no worker
    /// took it over since).
    pub epoch: u64,
    /// How long its lease has left, by the database's clock (`None`: no
    /// lease, or it expired).
    pub lease_left: Option<Duration>,
    /// How many times it was claimed after its first hold (by
    /// [`create`](PgStore::create), or the first claim of a
    /// [submitted](PgStore::submit) saga): how often a worker took it over.
    pub recoveries: u64,
    /// How many records it has.
    pub records: u64,
    /// When it was created, by the database's clock.
    pub created: SystemTime,
    /// When its row last changed (a record written, a claim, an
    /// operator's action), by the database's clock.
    pub updated: SystemTime,
    /// How long ago it was created, by the database's clock.
    pub age: Duration,
    /// The last error its records mention, as it displayed (or an
    /// operator's reason to abandon it).
    pub last_error: Option<String>,
    /// Why it is set aside and not claimed, if it is (see
    /// [`PgStore::quarantine`]).
    pub quarantine: Option<String>,
}

impl PgStore {
    /// A store over `pool`, without touching the database (see
    /// [`migrate`](PgStore::migrate)).
    ///
    /// Fails with [`StoreErrorKind::Runtime`] outside a Tokio runtime: the
    /// store runs the journals' flushes on the runtime it was made in.
    pub fn new(pool: PgPool) -> Result<PgStore, StoreError> {
        let runtime = Handle::try_current().map_err(|error| {
            StoreError::with_source(
                StoreErrorKind::Runtime,
                "a PgStore is made inside a Tokio runtime",
                error,
            )
        })?;
        Ok(PgStore { pool, runtime })
    }

    /// A store over `pool`, its tables created if they are not there
    /// ([`new`](PgStore::new) then [`migrate`](PgStore::migrate)).
    pub async fn open(pool: PgPool) -> Result<PgStore, StoreError> {
        let store = PgStore::new(pool)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the `saga` schema and its tables and indexes where they are
    /// missing, in one transaction, under a transaction-level advisory
    /// lock so that workers starting together migrate one at a time.
    /// Running it again changes nothing.
    ///
    /// Fails with [`StoreErrorKind::Schema`] when the database holds
    /// another schema version (one written by a newer version of this
    /// crate), leaving it as it is.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        schema::migrate(&self.pool).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A new saga id, unique across processes and restarts: the time in
    /// nanoseconds since the Unix epoch (the high 64 bits, so ids sort by
    /// creation), a tag drawn at random once per process (mixed with its
    /// process id) and a counter.
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

    /// Creates saga `id`, held by `owner` for `lease` (by the database's
    /// clock), at epoch 1: the claim to write its records under, from
    /// number 0 (its [`Created`](Event::Created) record, which
    /// [`Saga::run_journaled`](saga_core::Saga::run_journaled) writes).
    ///
    /// A saga created and never written (its worker died first) has no
    /// record; once its lease expires, [`claim`](PgStore::claim) returns
    /// it with [`Claim::next_seq`] 0 and nothing to resume: abandon it.
    ///
    /// Fails with [`StoreErrorKind::Exists`] when the store has a saga of
    /// this id.
    pub async fn create(
        &self,
        id: SagaId,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let created = sqlx::query(
            "INSERT INTO saga.sagas (id, owner, epoch, lease_expires_at) \
             VALUES ($1::uuid, $2, 1, clock_timestamp() + $3 * interval '1 microsecond') \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id_text(id))
        .bind(owner)
        .bind(micros(lease))
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::postgres(format!("saga {id}: cannot create it"), e))?;
        if created.rows_affected() == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Exists,
                format!("saga {id} is already in the store"),
            ));
        }
        Ok(Claim {
            id,
            owner: Arc::from(owner),
            epoch: 1,
            next_seq: 0,
            state: SagaState::Forward,
            recoveries: 0,
        })
    }

    /// Submits saga `id` for any worker to run: writes its row, with no
    /// owner and claimable at once (epoch 0), and its first record,
    /// [`Created`](Event::Created) with `start` and the saga's
    /// `fingerprint` ([`Saga::fingerprint`](saga_core::Saga::fingerprint)),
    /// in one transaction. The worker that [claims](PgStore::claim) it
    /// resumes it from that record: [`Saga::resume`](saga_core::Saga::resume)
    /// of a history with no step runs the saga from its first step.
    ///
    /// Fails with [`StoreErrorKind::Exists`] when the store has a saga of
    /// this id.
    pub async fn submit(
        &self,
        id: SagaId,
        start: &Start,
        fingerprint: u64,
    ) -> Result<(), StoreError> {
        let record = Record {
            seq: 0,
            event: Event::Created {
                definition: start.definition.clone(),
                version: start.version,
                fingerprint,
                parameters: start.parameters.clone(),
            },
        };
        let body = record.to_bytes();
        let submitted = sqlx::query(
            "WITH saga AS ( \
                 INSERT INTO saga.sagas (id, definition, version, next_seq) \
                 VALUES ($1::uuid, $2, $3, 1) \
                 ON CONFLICT (id) DO NOTHING \
                 RETURNING id \
             ) \
             INSERT INTO saga.records (saga_id, seq, body, checksum) \
             SELECT id, 0, $4, $5 FROM saga",
        )
        .bind(id_text(id))
        .bind(&start.definition)
        .bind(i64::from(start.version))
        .bind(&body)
        .bind(checksum(id, 0, &body))
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::postgres(format!("saga {id}: cannot submit it"), e))?;
        match submitted.rows_affected() {
            0 => Err(StoreError::new(
                StoreErrorKind::Exists,
                format!("saga {id} is already in the store"),
            )),
            _ => Ok(()),
        }
    }

    /// Claims for `owner`, for `lease`, up to `limit` unfinished sagas whose
    /// lease has expired or was released (and that are not
    /// [quarantined](PgStore::quarantine)): first those whose lease
    /// expired (the sagas of a worker that died or was fenced, oldest lease
    /// first, so that a takeover does not wait behind new work), then those
    /// never claimed ([submitted](PgStore::submit)).
    ///
    /// One statement: it locks the sagas it picks with `FOR UPDATE SKIP
    /// LOCKED` (so that two claimers never take the same saga: each skips
    /// what the other locked), and for each it raises the epoch by one,
    /// sets the owner and `lease_expires_at = clock_timestamp() + lease`,
    /// and counts one more recovery (except for the first claim of a
    /// [submitted](PgStore::submit) saga, at epoch 0). Resume each claimed saga from its
    /// [`history`](PgStore::history).
    pub async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let rows = sqlx::query(
            "WITH picked AS ( \
                 SELECT id FROM saga.sagas \
                 WHERE state IN ('forward', 'unwinding') AND quarantine IS NULL \
                     AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp()) \
                 ORDER BY lease_expires_at NULLS LAST, id \
                 LIMIT $3 \
                 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE saga.sagas AS s SET \
                 owner = $1, \
                 epoch = s.epoch + 1, \
                 lease_expires_at = clock_timestamp() + $2 * interval '1 microsecond', \
                 recoveries = s.recoveries + CASE WHEN s.epoch > 0 THEN 1 ELSE 0 END, \
                 updated_at = clock_timestamp() \
             FROM picked WHERE s.id = picked.id \
             RETURNING s.id::text AS id, s.epoch, s.next_seq, s.state, s.recoveries",
        )
        .bind(owner)
        .bind(micros(lease))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::postgres(format!("worker {owner}: cannot claim sagas"), e))?;
        let owner: Arc<str> = Arc::from(owner);
        let mut claims = rows
            .iter()
            .map(|row| {
                let get = |e| StoreError::postgres("cannot read a claimed saga", e);
                Ok(Claim {
                    id: parse_id(&row.try_get::<String, _>("id").map_err(get)?)?,
                    owner: Arc::clone(&owner),
                    epoch: row.try_get::<i64, _>("epoch").map_err(get)? as u64,
                    next_seq: row.try_get::<i64, _>("next_seq").map_err(get)? as u64,
                    state: parse_state(&row.try_get::<String, _>("state").map_err(get)?)?,
                    recoveries: row.try_get::<i64, _>("recoveries").map_err(get)? as u64,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claims.sort_by_key(|claim| claim.id);
        Ok(claims)
    }

    /// Renews the leases of `claims`, in one statement: each lease that
    /// its claim still holds (same owner and epoch, not expired) now
    /// expires `lease` from now, by the database's clock. Returns the sagas
    /// renewed; a claim missing from them has lost its saga (its journal is
    /// fenced: stop its run).
    pub async fn renew<'a>(
        &self,
        claims: impl IntoIterator<Item = &'a Claim>,
        lease: Duration,
    ) -> Result<Vec<SagaId>, StoreError> {
        let (ids, owners, epochs) = claim_arrays(claims);
        let rows = sqlx::query(
            "UPDATE saga.sagas AS s \
             SET lease_expires_at = clock_timestamp() + $4 * interval '1 microsecond' \
             FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS c (id, owner, epoch) \
             WHERE s.id = c.id::uuid AND s.owner = c.owner AND s.epoch = c.epoch \
                 AND s.lease_expires_at > clock_timestamp() \
             RETURNING s.id::text AS id",
        )
        .bind(ids)
        .bind(owners)
        .bind(epochs)
        .bind(micros(lease))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::postgres("cannot renew leases", e))?;
        ids_of(&rows)
    }

    /// Hands `claims`' sagas back, in one statement: each one its claim
    /// still holds is left with no owner and a lease that expired now, so
    /// that any worker can claim it at once. Returns the sagas released.
    /// The claims' journals are fenced from then on.
    pub async fn release<'a>(
        &self,
        claims: impl IntoIterator<Item = &'a Claim>,
    ) -> Result<Vec<SagaId>, StoreError> {
        let (ids, owners, epochs) = claim_arrays(claims);
        let rows = sqlx::query(
            "UPDATE saga.sagas AS s \
             SET owner = NULL, lease_expires_at = clock_timestamp(), updated_at = clock_timestamp() \
             FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS c (id, owner, epoch) \
             WHERE s.id = c.id::uuid AND s.owner = c.owner AND s.epoch = c.epoch \
             RETURNING s.id::text AS id",
        )
        .bind(ids)
        .bind(owners)
        .bind(epochs)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::postgres("cannot release leases", e))?;
        ids_of(&rows)
    }

    /// The journal of `claim`'s saga: its records are numbered on from
    /// [`Claim::next_seq`], and written only while the claim holds the
    /// saga (see [`PgJournal`]).
    ///
    /// Take one journal per claim, and keep it for the claim's run: the
    /// claim's `next_seq` is what it was when the saga was claimed, so a
    /// second journal of a claim whose first one wrote records would be
    /// refused (with a [`Storage`](saga_core::journal::JournalErrorKind::Storage)
    /// error, writing nothing).
    pub fn journal(&self, claim: &Claim) -> PgJournal {
        PgJournal::new(self.pool.clone(), self.runtime.clone(), claim)
    }

    /// Sets `claim`'s saga aside, with `reason` for an operator: it is not
    /// claimed again (its definition is unknown, its shape changed, its
    /// records are corrupt) until [`release_quarantine`](PgStore::release_quarantine).
    /// The claim's lease is released.
    ///
    /// Fails with [`StoreErrorKind::Fenced`] when the claim no longer holds
    /// the saga.
    pub async fn quarantine(&self, claim: &Claim, reason: &str) -> Result<(), StoreError> {
        let id = claim.id;
        let done = sqlx::query(
            "UPDATE saga.sagas SET quarantine = $4, owner = NULL, lease_expires_at = NULL, \
                 updated_at = clock_timestamp() \
             WHERE id = $1::uuid AND owner = $2 AND epoch = $3 \
                 AND lease_expires_at > clock_timestamp()",
        )
        .bind(id_text(id))
        .bind(claim.owner())
        .bind(claim.epoch as i64)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::postgres(format!("saga {id}: cannot quarantine it"), e))?;
        match done.rows_affected() {
            0 => Err(StoreError::new(
                StoreErrorKind::Fenced,
                format!(
                    "saga {id}: not quarantined, worker {} no longer holds it at epoch {}",
                    claim.owner(),
                    claim.epoch
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Lets a quarantined saga be claimed again (after an operator
    /// registered its definition, for instance).
    ///
    /// Fails with [`StoreErrorKind::UnknownSaga`] for a saga the store does
    /// not know, and with [`StoreErrorKind::Replay`] for one that is not
    /// quarantined.
    pub async fn release_quarantine(&self, id: SagaId) -> Result<(), StoreError> {
        let mut transaction = self.begin(id).await?;
        let result = release_quarantine_in(&mut transaction, id).await;
        finish(transaction, id, result).await
    }

    /// Every committed record of saga `id`, in order (none for a saga the
    /// store does not know, or one with no record yet).
    ///
    /// Fails with [`StoreErrorKind::Corrupt`], naming the saga and the
    /// record, when a record does not match its checksum, cannot be
    /// decoded, or is missing.
    pub async fn records(&self, id: SagaId) -> Result<Vec<Record>, StoreError> {
        let mut connection =
            self.pool.acquire().await.map_err(|e| {
                StoreError::postgres(format!("saga {id}: cannot read its records"), e)
            })?;
        read_records(&mut connection, id).await
    }

    /// Saga `id`'s [`History`], as [`replay`] reads its
    /// [records](PgStore::records): what a resumed run starts from.
    ///
    /// Fails as [`records`](PgStore::records) does, with
    /// [`StoreErrorKind::UnknownSaga`] when there is no record, and with
    /// [`StoreErrorKind::Replay`] when the records cannot be replayed.
    pub async fn history(&self, id: SagaId) -> Result<History, StoreError> {
        history_of(id, &self.records(id).await?)
    }

    /// The unfinished sagas (running forward or compensating, quarantined
    /// or not), in the order of their ids.
    pub async fn unfinished(&self) -> Result<Vec<SagaId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id::text AS id FROM saga.sagas \
             WHERE state IN ('forward', 'unwinding') ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::postgres("cannot list the unfinished sagas", e))?;
        ids_of(&rows)
    }

    /// A summary of each saga in `state` (every saga with `None`), in the
    /// order of their ids: owner, lease, age, recoveries and last error.
    /// Read from the sagas' rows, which each flush keeps up to date (so
    /// without reading the records).
    pub async fn list(&self, state: Option<SagaState>) -> Result<Vec<SagaSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SUMMARY_COLUMNS} WHERE ($1::text IS NULL OR state = $1) ORDER BY id"
        ))
        .bind(state.map(state_name))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::postgres("cannot list the sagas", e))?;
        rows.iter().map(summary_of).collect()
    }

    /// The summary of saga `id`, as [`list`](PgStore::list) shows it
    /// (`None` for a saga the store does not know).
    pub async fn summary(&self, id: SagaId) -> Result<Option<SagaSummary>, StoreError> {
        let row = sqlx::query(&format!("{SUMMARY_COLUMNS} WHERE id = $1::uuid"))
            .bind(id_text(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::postgres(format!("saga {id}: cannot read its row"), e))?;
        row.as_ref().map(summary_of).transpose()
    }

    /// Gives saga `id` up: appends [`Finished`](Event::Finished) with
    /// [`Outcome::Abandoned`] and `reason` at its next number, in one
    /// transaction that locks its row, clears its owner and lease, and
    /// raises its epoch (so a worker still driving it is fenced). Nothing is
    /// compensated. A saga with no record (created, never written) is
    /// marked abandoned without one.
    ///
    /// Fails for a saga the store does not know
    /// ([`StoreErrorKind::UnknownSaga`]), one that finished
    /// ([`StoreErrorKind::Finished`]), and one whose records cannot be read
    /// ([`StoreErrorKind::Corrupt`]) or replayed ([`StoreErrorKind::Replay`]).
    pub async fn abandon(&self, id: SagaId, reason: &str) -> Result<(), StoreError> {
        let mut transaction = self.begin(id).await?;
        let result = abandon_in(&mut transaction, id, reason).await;
        finish(transaction, id, result).await
    }

    /// Reopens a saga that finished stuck (a compensation kept failing, or
    /// its failure was propagated without compensating), after an operator
    /// fixed what made it fail: appends [`Event::Reopened`] and makes it
    /// claimable at once, so that the next worker to claim it compensates
    /// again what it left applied, attempting its failed compensations
    /// again.
    ///
    /// Fails for an unknown saga, one whose records cannot be read or
    /// replayed, and one that is not stuck ([`StoreErrorKind::Finished`]
    /// with its outcome, or [`StoreErrorKind::Replay`] for a saga still
    /// running).
    pub async fn reopen(&self, id: SagaId) -> Result<(), StoreError> {
        let mut transaction = self.begin(id).await?;
        let result = reopen_in(&mut transaction, id).await;
        finish(transaction, id, result).await
    }

    async fn begin(&self, id: SagaId) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(|e| StoreError::postgres(format!("saga {id}: cannot begin a transaction"), e))
    }
}

/// Locks saga `id`'s row for an operator's change: its state, next record
/// number and quarantine reason.
async fn lock_row(
    transaction: &mut Transaction<'static, Postgres>,
    id: SagaId,
) -> Result<(SagaState, u64, Option<String>), StoreError> {
    let postgres = |e| StoreError::postgres(format!("saga {id}: cannot read its row"), e);
    let row = sqlx::query(
        "SELECT state, next_seq, quarantine FROM saga.sagas WHERE id = $1::uuid FOR UPDATE",
    )
    .bind(id_text(id))
    .fetch_optional(&mut **transaction)
    .await
    .map_err(postgres)?;
    let Some(row) = row else {
        return Err(StoreError::new(
            StoreErrorKind::UnknownSaga,
            format!("saga {id} is not in the store"),
        ));
    };
    let state = parse_state(&row.try_get::<String, _>("state").map_err(postgres)?)?;
    let next_seq = row.try_get::<i64, _>("next_seq").map_err(postgres)? as u64;
    let quarantine = row.try_get("quarantine").map_err(postgres)?;
    Ok((state, next_seq, quarantine))
}

/// Appends an operator's record (checked against the saga's history) and
/// sets the row's state, in the caller's transaction, which holds the
/// row's lock. The owner and lease are cleared and the epoch raised.
async fn operator_write(
    transaction: &mut Transaction<'static, Postgres>,
    id: SagaId,
    event: Option<Event>,
    state: &str,
    last_error: Option<&str>,
) -> Result<(), StoreError> {
    let postgres = |e| StoreError::postgres(format!("saga {id}: cannot write the change"), e);
    let mut next_seq = 0;
    if let Some(event) = event {
        let records = read_records(transaction, id).await?;
        let mut history = history_of(id, &records)?;
        let record = Record {
            seq: history.next_seq(),
            event,
        };
        history.apply(&record).map_err(|error| {
            StoreError::with_source(
                StoreErrorKind::Replay,
                format!("saga {id}: the change does not follow its records"),
                error,
            )
        })?;
        let body = record.to_bytes();
        sqlx::query(
            "INSERT INTO saga.records (saga_id, seq, body, checksum) VALUES ($1::uuid, $2, $3, $4)",
        )
        .bind(id_text(id))
        .bind(record.seq as i64)
        .bind(&body)
        .bind(checksum(id, record.seq, &body))
        .execute(&mut **transaction)
        .await
        .map_err(postgres)?;
        next_seq = history.next_seq();
    }
    sqlx::query(
        "UPDATE saga.sagas SET state = $2, next_seq = GREATEST(next_seq, $3), \
             last_error = COALESCE($4, last_error), owner = NULL, lease_expires_at = NULL, \
             epoch = epoch + 1, updated_at = clock_timestamp() \
         WHERE id = $1::uuid",
    )
    .bind(id_text(id))
    .bind(state)
    .bind(next_seq as i64)
    .bind(last_error)
    .execute(&mut **transaction)
    .await
    .map_err(postgres)?;
    Ok(())
}

/// Commits an operator's change that succeeded, and rolls back one that
/// failed at once (so that the row's lock is not held until the pool gets
/// round to it).
async fn finish(
    transaction: Transaction<'static, Postgres>,
    id: SagaId,
    result: Result<(), StoreError>,
) -> Result<(), StoreError> {
    match result {
        Ok(()) => transaction
            .commit()
            .await
            .map_err(|e| StoreError::postgres(format!("saga {id}: cannot commit the change"), e)),
        Err(error) => {
            // The connection rolls back when it returns to the pool even if
            // this fails.
            let _ = transaction.rollback().await;
            Err(error)
        }
    }
}

async fn release_quarantine_in(
    transaction: &mut Transaction<'static, Postgres>,
    id: SagaId,
) -> Result<(), StoreError> {
    let (_, _, quarantine) = lock_row(transaction, id).await?;
    if quarantine.is_none() {
        return Err(StoreError::new(
            StoreErrorKind::Replay,
            format!("saga {id} is not quarantined"),
        ));
    }
    sqlx::query(
        "UPDATE saga.sagas SET quarantine = NULL, updated_at = clock_timestamp() \
             WHERE id = $1::uuid",
    )
    .bind(id_text(id))
    .execute(&mut **transaction)
    .await
    .map_err(|e| StoreError::postgres(format!("saga {id}: cannot release it"), e))?;
    Ok(())
}

async fn abandon_in(
    transaction: &mut Transaction<'static, Postgres>,
    id: SagaId,
    reason: &str,
) -> Result<(), StoreError> {
    let (state, next_seq, _) = lock_row(transaction, id).await?;
    if let SagaState::Finished(outcome) = state {
        return Err(StoreError::new(
            StoreErrorKind::Finished(outcome),
            format!("saga {id} already finished ({outcome})"),
        ));
    }
    let finished = Event::Finished {
        outcome: Outcome::Abandoned,
        message: reason.to_owned(),
    };
    let appended = match next_seq {
        0 => None,
        _ => Some(finished),
    };
    operator_write(transaction, id, appended, "abandoned", Some(reason)).await?;
    Ok(())
}

async fn reopen_in(
    transaction: &mut Transaction<'static, Postgres>,
    id: SagaId,
) -> Result<(), StoreError> {
    let (state, _, _) = lock_row(transaction, id).await?;
    match state {
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
    operator_write(transaction, id, Some(Event::Reopened), "unwinding", None).await?;
    Ok(())
}

async fn read_records(
    connection: &mut sqlx::PgConnection,
    id: SagaId,
) -> Result<Vec<Record>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, body, checksum FROM saga.records WHERE saga_id = $1::uuid ORDER BY seq",
    )
    .bind(id_text(id))
    .fetch_all(connection)
    .await
    .map_err(|e| StoreError::postgres(format!("saga {id}: cannot read its records"), e))?;
    rows.iter()
        .zip(0..)
        .map(|(row, want)| {
            let get = |e| StoreError::postgres(format!("saga {id}: cannot read a record"), e);
            let seq: i64 = row.try_get("seq").map_err(get)?;
            let body: Vec<u8> = row.try_get("body").map_err(get)?;
            let sum: i64 = row.try_get("checksum").map_err(get)?;
            decode(id, seq, want, &body, sum)
        })
        .collect()
}

fn history_of(id: SagaId, records: &[Record]) -> Result<History, StoreError> {
    if records.is_empty() {
        return Err(StoreError::new(
            StoreErrorKind::UnknownSaga,
            format!("saga {id} has no record in the store"),
        ));
    }
    replay(records).map_err(|error| {
        StoreError::with_source(
            StoreErrorKind::Replay,
            format!("saga {id}: its records cannot be replayed"),
            error,
        )
    })
}

/// Decodes the record in row `seq` of saga `id`, which should be its
/// record number `want` and match its checksum.
fn decode(id: SagaId, seq: i64, want: i64, body: &[u8], sum: i64) -> Result<Record, StoreError> {
    let corrupt = |what: String| StoreError::new(StoreErrorKind::Corrupt, what);
    if seq != want {
        return Err(corrupt(format!(
            "saga {id}: record {want} is missing (record {seq} came instead)"
        )));
    }
    if checksum(id, seq as u64, body) != sum {
        return Err(corrupt(format!(
            "saga {id}: record {seq} does not match its checksum"
        )));
    }
    let record = Record::from_bytes(body).map_err(|error| {
        StoreError::with_source(
            StoreErrorKind::Corrupt,
            format!("saga {id}: record {seq} cannot be decoded"),
            error,
        )
    })?;
    if i64::try_from(record.seq).ok() != Some(seq) {
        return Err(corrupt(format!(
            "saga {id}: record {seq} says it is record {}",
            record.seq
        )));
    }
    Ok(record)
}

/// What [`summary_of`] reads of a saga's row, `FROM saga.sagas`.
const SUMMARY_COLUMNS: &str = "SELECT id::text AS id, definition, version, state, owner, epoch, \
         (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1e6)::int8 AS lease_left, \
         recoveries, next_seq, \
         (extract(epoch FROM created_at) * 1e6)::int8 AS created, \
         (extract(epoch FROM updated_at) * 1e6)::int8 AS updated, \
         (extract(epoch FROM clock_timestamp() - created_at) * 1e6)::int8 AS age, \
         last_error, quarantine \
     FROM saga.sagas";

fn summary_of(row: &PgRow) -> Result<SagaSummary, StoreError> {
    let get = |e| StoreError::postgres("cannot read a saga's row", e);
    let id = parse_id(&row.try_get::<String, _>("id").map_err(get)?)?;
    let lease_left: Option<i64> = row.try_get("lease_left").map_err(get)?;
    Ok(SagaSummary {
        id,
        definition: row.try_get("definition").map_err(get)?,
        version: u32::try_from(row.try_get::<i64, _>("version").map_err(get)?).unwrap_or(u32::MAX),
        state: parse_state(&row.try_get::<String, _>("state").map_err(get)?)?,
        owner: row.try_get("owner").map_err(get)?,
        epoch: row.try_get::<i64, _>("epoch").map_err(get)? as u64,
        lease_left: lease_left
            .filter(|&left| left > 0)
            .map(|left| Duration::from_micros(left as u64)),
        recoveries: row.try_get::<i64, _>("recoveries").map_err(get)? as u64,
        records: row.try_get::<i64, _>("next_seq").map_err(get)? as u64,
        created: time(row.try_get("created").map_err(get)?),
        updated: time(row.try_get("updated").map_err(get)?),
        age: Duration::from_micros(row.try_get::<i64, _>("age").map_err(get)?.max(0) as u64),
        last_error: row.try_get("last_error").map_err(get)?,
        quarantine: row.try_get("quarantine").map_err(get)?,
    })
}

fn claim_arrays<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
) -> (Vec<String>, Vec<String>, Vec<i64>) {
    let (mut ids, mut owners, mut epochs) = (Vec::new(), Vec::new(), Vec::new());
    for claim in claims {
        ids.push(id_text(claim.id));
        owners.push(claim.owner().to_owned());
        epochs.push(claim.epoch as i64);
    }
    (ids, owners, epochs)
}

fn ids_of(rows: &[PgRow]) -> Result<Vec<SagaId>, StoreError> {
    let mut ids = rows
        .iter()
        .map(|row| {
            let text: String = row
                .try_get("id")
                .map_err(|e| StoreError::postgres("cannot read a saga id", e))?;
            parse_id(&text)
        })
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    Ok(ids)
}

/// A saga id as PostgreSQL's `uuid` reads it: 32 hex digits.
pub(crate) fn id_text(id: SagaId) -> String {
    id.to_string()
}

/// A saga id from a `uuid`'s text (with or without hyphens).
fn parse_id(text: &str) -> Result<SagaId, StoreError> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    u128::from_str_radix(&digits, 16)
        .ok()
        .filter(|_| digits.len() == 32)
        .map(SagaId)
        .ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("a saga id {text:?} in the store is not a uuid"),
            )
        })
}

/// The `state` column's value for `state`.
pub(crate) fn state_name(state: SagaState) -> &'static str {
    match state {
        SagaState::Forward => "forward",
        SagaState::Unwinding => "unwinding",
        SagaState::Finished(outcome) => journal::outcome_name(outcome),
        // A state of a later saga-core: kept as stuck, for an operator.
        _ => "stuck",
    }
}

fn parse_state(name: &str) -> Result<SagaState, StoreError> {
    Ok(match name {
        "forward" => SagaState::Forward,
        "unwinding" => SagaState::Unwinding,
        "committed" => SagaState::Finished(Outcome::Committed),
        "compensated" => SagaState::Finished(Outcome::Compensated),
        "stuck" => SagaState::Finished(Outcome::Stuck),
        "abandoned" => SagaState::Finished(Outcome::Abandoned),
        other => {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("a saga's state {other:?} is not one this store writes"),
            ));
        }
    })
}

/// A duration in microseconds, for `interval` arithmetic.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn time(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64)
}

/// The checksum kept beside each record: 64-bit FNV-1a over the saga id
/// (16 bytes, big-endian), the record's number (8 bytes, big-endian) and
/// its bytes, so that damaged bytes, or a row moved to another key, are
/// told apart from what was written.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_postgres_writes_them() {
        let id = SagaId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id_text(id), "0123456789abcdef0011223344556677");
        // PostgreSQL shows a uuid with hyphens.
        let shown = "01234567-89ab-cdef-0011-223344556677";
        assert_eq!(parse_id(shown).unwrap(), id);
        assert_eq!(parse_id(&id_text(id)).unwrap(), id);
        for bad in ["", "0123", "zz234567-89ab-cdef-0011-223344556677"] {
            assert_eq!(parse_id(bad).unwrap_err().kind(), StoreErrorKind::Corrupt);
        }
    }

    #[test]
    fn states_round_trip_through_their_column() {
        let states = [
            SagaState::Forward,
            SagaState::Unwinding,
            SagaState::Finished(Outcome::Committed),
            SagaState::Finished(Outcome::Compensated),
            SagaState::Finished(Outcome::Stuck),
            SagaState::Finished(Outcome::Abandoned),
        ];
        for state in states {
            assert_eq!(parse_state(state_name(state)).unwrap(), state);
        }
        assert!(parse_state("running").is_err());
    }

    #[test]
    fn the_checksum_covers_the_saga_the_number_and_the_bytes() {
        let sum = checksum(SagaId(1), 2, b"abc");
        assert_eq!(sum, checksum(SagaId(1), 2, b"abc"));
        assert_ne!(sum, checksum(SagaId(2), 2, b"abc"));
        assert_ne!(sum, checksum(SagaId(1), 3, b"abc"));
        assert_ne!(sum, checksum(SagaId(1), 2, b"abd"));
        let record = Record {
            seq: 2,
            event: Event::Reopened,
        };
        let body = record.to_bytes();
        let good = checksum(SagaId(1), 2, &body);
        assert_eq!(decode(SagaId(1), 2, 2, &body, good).unwrap(), record);
        let error = decode(SagaId(1), 2, 2, &body, good ^ 1).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Corrupt);
        assert!(
            error
                .to_string()
                .contains("record 2 does not match its checksum")
        );
        let error = decode(SagaId(1), 3, 2, &body, good).unwrap_err();
        assert!(error.to_string().contains("record 2 is missing"), "{error}");
    }

    #[test]
    fn durations_become_microseconds() {
        assert_eq!(micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(micros(Duration::MAX), i64::MAX);
        assert_eq!(time(1_000_000), UNIX_EPOCH + Duration::from_secs(1));
    }

    fn send<T: Send>(_: T) {}

    // Compiled, not run: the store's futures can be spawned.
    #[allow(dead_code, reason = "a compile-time check")]
    fn futures_are_send(store: &PgStore, claim: &Claim) {
        send(store.migrate());
        send(store.create(SagaId(1), "", Duration::ZERO));
        send(store.claim("", Duration::ZERO, 1));
        send(store.renew([claim], Duration::ZERO));
        send(store.release(vec![claim]));
        send(store.quarantine(claim, ""));
        send(store.release_quarantine(SagaId(1)));
        send(store.records(SagaId(1)));
        send(store.history(SagaId(1)));
        send(store.unfinished());
        send(store.list(None));
        send(store.summary(SagaId(1)));
        send(store.abandon(SagaId(1), ""));
        send(store.reopen(SagaId(1)));
        send(store.submit(SagaId(1), &Start::new("", 0, Vec::new()), 0));
    }

    // Compiled, not run: a worker's future can be spawned.
    #[allow(dead_code, reason = "a compile-time check")]
    fn worker_futures_are_send(worker: &Worker<String>) {
        send(worker.submit("x", &1_u64));
        send(worker.run(std::future::pending::<()>()));
    }
}
