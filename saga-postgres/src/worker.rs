//! [`Worker`]: one future that claims sagas, resumes them through a
//! [`Registry`], renews their leases, and hands them back when it stops.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use saga_core::Crashed;
use saga_core::journal::{
    Codec, DurableError, JournalErrorKind, Quarantined, Refused, Registry, SagaId, SagaState,
};
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use crate::{Claim, PgStore, StoreError, StoreErrorKind};

/// A worker: claims unfinished sagas from a [`PgStore`] (new ones
/// [submitted](Worker::submit) by any process, and those other workers
/// left), builds each again through the [`Registry`] and resumes it from
/// its journal, runs many at once (each as a Tokio task), renews their
/// leases together, and on shutdown hands back what it still holds.
///
/// Run any number of workers, in any number of processes, on one
/// database: a saga is driven by one worker at a time (see the
/// [crate docs](crate) on leases and fencing). Give each worker a name
/// unique among the live ones (a host name and a process id, for
/// instance).
///
/// What it does with each claimed saga:
///
/// - a saga that resumes runs to its end, or until its journal fails;
/// - a saga whose definition is unknown, whose shape changed, whose
///   parameters or records do not decode, is
///   [quarantined](PgStore::quarantine) with the reason: no worker claims it
///   until an operator [releases](PgStore::release_quarantine) it;
/// - with a [limit of recoveries](Worker::max_recoveries), a saga taken
///   over more often than that (its runs may be what kills the workers
///   that drive it) is quarantined too, without being resumed;
/// - a saga [created](PgStore::create) and never written (its process died
///   before its first record) is [abandoned](PgStore::abandon): nothing of
///   it ran;
/// - a saga whose lease it fails to renew (another worker, or an
///   operator, took it) is stopped at once: its task is aborted;
/// - a saga whose lease it can no longer be sure it holds (no renewal
///   succeeded for the lease less two renewal intervals, counted from when
///   the last successful claim or renewal was sent: the store is out of
///   reach, or slow) is stopped the same way, without compensating, before
///   the database's clock lets another worker take it over;
/// - a saga whose run stopped on a store error is
///   [released](PgStore::release), for a worker to try again.
///
/// # Examples
///
/// Not run here (it needs a server):
///
/// ```no_run
/// use saga_core::journal::{Registry, SagaContext};
/// use saga_core::{Saga, SagaBuilder};
/// use saga_postgres::{PgStore, Worker};
///
/// fn transfer(amount: &u64, context: &SagaContext) -> Saga<String> {
///     let (amount, epoch) = (*amount, context.epoch());
///     SagaBuilder::new()
///         .add_step(move || async move { let _ = (amount, epoch); Ok::<_, String>(()) }, || async { Ok(()) })
///         .build()
/// }
///
/// # async fn example(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::new();
/// registry.register("transfer", 1, transfer);
/// let worker = Worker::new(PgStore::open(pool).await?, registry, "host-a-4242");
///
/// worker.submit("transfer", &250_u64).await?;
/// // Drive sagas for an hour, then hand back what is still running.
/// let report = worker.run(tokio::time::sleep(std::time::Duration::from_secs(3600))).await;
/// println!("{report:?}");
/// # Ok(())
/// # }
/// ```
pub struct Worker<E: 'static> {
    store: PgStore,
    registry: Arc<Registry<E>>,
    owner: Arc<str>,
    lease: Duration,
    renew_every: Duration,
    claim_every: Duration,
    max_sagas: usize,
    grace: Duration,
    max_recoveries: Option<u64>,
}

impl<E: 'static> fmt::Debug for Worker<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("renew_every", &self.renew_every)
            .field("claim_every", &self.claim_every)
            .field("max_sagas", &self.max_sagas)
            .field("grace", &self.grace)
            .field("max_recoveries", &self.max_recoveries)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Why a saga was not submitted. Nothing was written.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotRun {
    /// The store failed.
    Store(StoreError),
    /// The definition is unknown, or its parameters do not decode.
    Quarantined(Quarantined),
    /// The saga cannot run with a journal (see [`Refused`]).
    Refused(Refused),
}

impl fmt::Display for NotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRun::Store(error) => write!(f, "not run: {error}"),
            NotRun::Quarantined(why) => write!(f, "quarantined: {why}"),
            NotRun::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl std::error::Error for NotRun {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotRun::Store(error) => Some(error),
            NotRun::Quarantined(why) => Some(why),
            NotRun::Refused(why) => Some(why),
        }
    }
}

impl From<StoreError> for NotRun {
    fn from(error: StoreError) -> Self {
        NotRun::Store(error)
    }
}

impl From<Quarantined> for NotRun {
    /// A refusal stays one; any other quarantine is
    /// [`NotRun::Quarantined`].
    fn from(why: Quarantined) -> Self {
        match why {
            Quarantined::Refused(refused) => NotRun::Refused(refused),
            other => NotRun::Quarantined(other),
        }
    }
}

/// What one [`Worker::run`] did, counted.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Sagas claimed.
    pub claimed: u64,
    /// Sagas run to their end (committed, compensated or stuck).
    pub finished: u64,
    /// Sagas stopped because the worker lost them: a flush was fenced, a
    /// renewal did not include them, or they were finished by another hand
    /// (an operator's abandon) between their claim and the start of their
    /// run. (A renewal also misses a saga whose last record was just
    /// written, which let go of the lease: the store says it finished at
    /// the claim's epoch, so its run is left to return, and it is counted
    /// finished.)
    pub lost: u64,
    /// Sagas quarantined.
    pub quarantined: u64,
    /// Sagas created and never written, abandoned.
    pub abandoned: u64,
    /// Sagas handed back: after a store error in their run, and at
    /// shutdown.
    pub released: u64,
    /// Calls to the store that failed (claims, renewals, releases, reads).
    pub store_errors: u64,
    /// The last of those errors.
    pub last_store_error: Option<StoreError>,
}

impl WorkerReport {
    fn store_error(&mut self, error: StoreError) {
        self.store_errors += 1;
        self.last_store_error = Some(error);
    }
}

/// A saga the worker drives.
struct Running {
    claim: Claim,
    handle: AbortHandle,
    /// A renewal did not include it, or its lease may have run out: its
    /// task was aborted.
    lost: bool,
    /// Until when the lease is surely held ([`Worker::held_until`]),
    /// counted from when the claim or the last renewal that included it
    /// was sent (the database's clock, which judges expiry, counted from
    /// later).
    held_until: Instant,
}

/// How one saga's task ended.
enum Done {
    /// The run ended: the saga finished, or its journal failed.
    Ran(JournalEnd),
    /// Set aside for an operator.
    Quarantined,
    /// Created and never written: abandoned.
    Abandoned,
    /// A call to the store failed before the run.
    Store(StoreError),
}

enum JournalEnd {
    Finished,
    Fenced,
    Failed,
}

impl<E> Worker<E>
where
    E: fmt::Display + From<Crashed> + Send + 'static,
{
    /// A worker named `owner`, driving sagas of `registry`'s definitions
    /// from `store`. Leases last 30 s and are renewed every 10 s; it looks
    /// for sagas to claim every second, runs at most 64 at once, and at
    /// shutdown hands back at once what is still running.
    pub fn new(store: PgStore, registry: Registry<E>, owner: impl Into<String>) -> Self {
        Worker {
            store,
            registry: Arc::new(registry),
            owner: Arc::from(owner.into()),
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            claim_every: Duration::from_secs(1),
            max_sagas: 64,
            grace: Duration::ZERO,
            max_recoveries: None,
        }
    }

    /// How long each lease lasts, and how often they are renewed. Renew
    /// well within the lease: a saga is stopped once no renewal succeeded
    /// for the lease less two renewal intervals (the worker's margin to be
    /// sure it stops before the lease can run out), so `renew_every` is
    /// capped at a quarter of the lease.
    pub fn lease(mut self, lease: Duration, renew_every: Duration) -> Self {
        self.lease = lease;
        self.renew_every = renew_every.min(lease / 4).max(Duration::from_millis(1));
        self
    }

    /// Until when a lease obtained by a request sent at `sent` is surely
    /// held, as the worker checks it (at that moment, or up to one renewal
    /// interval later when a call to the store is under way: each is given
    /// that long at most).
    fn held_until(&self, sent: Instant) -> Instant {
        sent + self.lease.saturating_sub(self.renew_every * 2)
    }

    /// How often the worker looks for sagas to claim, while it runs fewer
    /// than its maximum.
    pub fn claim_every(mut self, every: Duration) -> Self {
        self.claim_every = every.max(Duration::from_millis(1));
        self
    }

    /// How many sagas it runs at once, at most.
    pub fn max_sagas(mut self, max: usize) -> Self {
        self.max_sagas = max.max(1);
        self
    }

    /// How long, once asked to stop, it goes on driving (and renewing)
    /// the sagas it runs, claiming no more, before it stops them and hands
    /// them back. Without one (the default), a run that had just written
    /// its last record but not yet returned is stopped too, and counted as
    /// handed back rather than finished (the store says it finished).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How many times a saga may be taken over and still be resumed: a
    /// claimed saga whose [`Claim::recoveries`] is more than `max` is
    /// [quarantined](PgStore::quarantine) instead, with a reason that says
    /// so, and no worker claims it until an operator
    /// [releases](PgStore::release_quarantine) it. Without a limit (the
    /// default), a saga is resumed however often it was taken over.
    ///
    /// This sets aside a *poison* saga: one whose run crashes the process
    /// that drives it (an abort, a stack overflow, the kernel's OOM killer),
    /// so that every worker that claims it dies in turn. With
    /// `max_recoveries(2)`, its first claim and two takeovers are resumed,
    /// and the third takeover quarantines it.
    ///
    /// The count is of takeovers, not of crashes caused: a saga that was
    /// running in a worker that another saga crashed is taken over too.
    /// Leave the limit well above the crashes a healthy saga may meet, or
    /// have workers that drive few sagas at once
    /// ([`max_sagas`](Worker::max_sagas)).
    pub fn max_recoveries(mut self, max: u64) -> Self {
        self.max_recoveries = Some(max);
        self
    }

    /// The store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The worker's name, its sagas' owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Submits a saga of `definition`'s latest version with `parameters`,
    /// for any worker to run (see [`PgStore::submit`]): its id. The saga is
    /// built once here, to check that it can run with a journal and to
    /// take its fingerprint.
    pub async fn submit<P: Codec>(
        &self,
        definition: &str,
        parameters: &P,
    ) -> Result<SagaId, NotRun> {
        let start = (self.registry).start_latest(definition, parameters)?;
        let id = self.store.new_id();
        let context = saga_core::journal::SagaContext::new(id);
        let fingerprint = (self.registry)
            .check(
                &start.definition,
                start.version,
                &start.parameters,
                &context,
            )
            .map_err(NotRun::from)?;
        self.store.submit(id, &start, fingerprint).await?;
        Ok(id)
    }

    /// Drives sagas until `shutdown` completes, then hands back what it
    /// still runs (after the [grace](Worker::grace) period, if any) and
    /// returns what it did.
    ///
    /// `shutdown` is polled by this future, between its own calls to the
    /// store: make it a signal (a channel, a timer, `ctrl_c`), not work of
    /// its own on the store. (An operator's [`abandon`](PgStore::abandon)
    /// run inside it could wait for a saga's row lock while a renewal here
    /// waits for the same lock, and neither would go on.)
    ///
    /// Store errors do not stop it: they are counted in the report, and
    /// the next claim or renewal tries again. Each call to the store is
    /// given one renewal interval; one that takes longer (a server that
    /// hangs, a network that drops packets) counts as a store error, so
    /// that a store out of reach never keeps the worker from stopping a
    /// saga whose lease may run out. (A claim cut off so may have been
    /// granted: the worker does not drive those sagas, and they are claimed
    /// again once their leases expire.) Sagas are driven by tasks on
    /// the current Tokio runtime; dropping this future aborts them (they
    /// are resumed by the worker that next claims them, once their leases
    /// expire).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let mut report = WorkerReport::default();
        let mut running: HashMap<SagaId, Running> = HashMap::new();
        let mut tasks: HashMap<Id, SagaId> = HashMap::new();
        let mut set: JoinSet<Done> = JoinSet::new();
        let mut claim_tick = interval(self.claim_every);
        claim_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renew_tick = interval(self.renew_every);
        renew_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        renew_tick.reset();
        let shutdown = std::pin::pin!(shutdown);
        let mut shutdown = shutdown;
        let mut deadline: Option<Instant> = None;

        loop {
            // A saga whose lease may run out is stopped before it can: at
            // every turn, and at the earliest lease end (every store call
            // below is bounded by one renewal interval, so this check is
            // never late by more than that).
            let expiry = stop_unsure(&mut running);
            let draining = deadline.is_some();
            if draining && running.is_empty() {
                break;
            }
            let room = self.max_sagas.saturating_sub(running.len());
            tokio::select! {
                () = &mut shutdown, if !draining => {
                    deadline = Some(Instant::now() + self.grace);
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if draining => break,
                () = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {}
                _ = claim_tick.tick(), if !draining && room > 0 => {
                    let sent = Instant::now();
                    let claim = self.store.claim(&self.owner, self.lease, room);
                    match self.bounded("claiming sagas", claim).await {
                        Ok(claims) => {
                            for claim in claims {
                                report.claimed += 1;
                                let id = claim.id();
                                let handle = set.spawn(self.drive(claim.clone()));
                                tasks.insert(handle.id(), id);
                                let held_until = self.held_until(sent);
                                running.insert(id, Running { claim, handle, lost: false, held_until });
                            }
                        }
                        Err(error) => report.store_error(error),
                    }
                }
                _ = renew_tick.tick(), if running.values().any(|run| !run.lost) => {
                    let claims: Vec<Claim> = running
                        .values()
                        .filter(|run| !run.lost)
                        .map(|run| run.claim.clone())
                        .collect();
                    let sent = Instant::now();
                    match self.bounded("renewing the leases", self.renew(&claims)).await {
                        Ok(renewal) => {
                            renewal.errors.into_iter().for_each(|error| report.store_error(error));
                            for (id, run) in running.iter_mut().filter(|(_, run)| !run.lost) {
                                if renewal.renewed.binary_search(id).is_ok() {
                                    run.held_until = self.held_until(sent);
                                } else if !renewal.finished_here.contains(id) {
                                    run.lost = true;
                                    run.handle.abort();
                                }
                            }
                        }
                        Err(error) => report.store_error(error),
                    }
                }
                Some(joined) = set.join_next_with_id() => {
                    if let Some(claim) = settle(joined, &mut running, &mut tasks, &mut report) {
                        match self.bounded("releasing a lease", self.store.release([&claim])).await {
                            Ok(released) => report.released += released.len() as u64,
                            Err(error) => report.store_error(error),
                        }
                    }
                }
            }
        }

        // Stop what still runs, and hand it back in one statement.
        set.abort_all();
        let mut left = Vec::new();
        while let Some(joined) = set.join_next_with_id().await {
            left.extend(settle(joined, &mut running, &mut tasks, &mut report));
        }
        // Every task was settled above: nothing should be left running.
        left.extend(
            running
                .into_values()
                .filter(|run| !run.lost)
                .map(|run| run.claim),
        );
        if !left.is_empty() {
            match self
                .bounded("handing the leases back", self.store.release(&left))
                .await
            {
                Ok(released) => report.released += released.len() as u64,
                Err(error) => report.store_error(error),
            }
        }
        report
    }

    /// `call` to the store, given one renewal interval: a store out of
    /// reach (a server that hangs, a network that drops packets) must not
    /// hold up the check of the leases.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.renew_every, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Postgres,
                format!("{what} took longer than the renewal interval"),
            )),
        }
    }

    /// Renews the leases of `claims`. A saga not renewed was taken over,
    /// abandoned, or just finished by its own run (its last flush let go of
    /// the lease, at the claim's epoch): only the first two are stopped, so
    /// the store is asked which.
    async fn renew(&self, claims: &[Claim]) -> Result<Renewal, StoreError> {
        let renewed = self.store.renew(claims, self.lease).await?;
        let mut renewal = Renewal {
            renewed,
            finished_here: Vec::new(),
            errors: Vec::new(),
        };
        for claim in claims {
            let id = claim.id();
            if renewal.renewed.binary_search(&id).is_ok() {
                continue;
            }
            match self.store.summary(id).await {
                Ok(Some(summary))
                    if matches!(summary.state, SagaState::Finished(_))
                        && claim.epoch() == summary.epoch =>
                {
                    renewal.finished_here.push(id);
                }
                Ok(_) => {}
                Err(error) => renewal.errors.push(error),
            }
        }
        Ok(renewal)
    }

    /// One claimed saga's task: read, rebuild, resume, run.
    fn drive(&self, claim: Claim) -> impl Future<Output = Done> + Send + 'static {
        let store = self.store.clone();
        let registry = Arc::clone(&self.registry);
        let max_recoveries = self.max_recoveries;
        async move {
            let id = claim.id();
            if let Some(max) = max_recoveries.filter(|&max| claim.recoveries() > max) {
                let reason = format!(
                    "taken over {} times, more than the limit of {max} \
                     (Worker::max_recoveries): its runs may crash the workers that drive it",
                    claim.recoveries()
                );
                return quarantine(&store, &claim, &reason).await;
            }
            let history = match store.history(id).await {
                Ok(history) => history,
                Err(error) => {
                    return match error.kind() {
                        StoreErrorKind::UnknownSaga => {
                            match store.abandon(id, "created and never written").await {
                                Ok(()) => Done::Abandoned,
                                Err(error) => Done::Store(error),
                            }
                        }
                        StoreErrorKind::Corrupt | StoreErrorKind::Replay => {
                            quarantine(&store, &claim, &error.to_string()).await
                        }
                        _ => Done::Store(error),
                    };
                }
            };
            // Finished by another hand between the claim and now (an
            // operator's abandon): the worker lost it.
            if let SagaState::Finished(_) = history.state() {
                return Done::Ran(JournalEnd::Fenced);
            }
            // A saga or a flow, rebuilt by its definition and resumed.
            let journal = Box::new(store.journal(&claim));
            let run = match registry.resume(journal, history, &claim.context()) {
                Ok(run) => run,
                Err(why) => return quarantine(&store, &claim, &why.to_string()).await,
            };
            Done::Ran(match run.await {
                Ok(()) | Err(DurableError::Saga(_)) => JournalEnd::Finished,
                Err(DurableError::Journal(error)) if error.kind() == JournalErrorKind::Fenced => {
                    JournalEnd::Fenced
                }
                Err(_) => JournalEnd::Failed,
            })
        }
    }
}

/// What a renewal found: the sagas renewed (sorted), those not renewed
/// because their own run finished them, and the store's errors on the way.
struct Renewal {
    renewed: Vec<SagaId>,
    finished_here: Vec<SagaId>,
    errors: Vec<StoreError>,
}

/// Stops every saga whose lease may have run out by now (it is no longer
/// surely held: another worker may take it over), without compensating;
/// returns the earliest lease end of those still held.
fn stop_unsure(running: &mut HashMap<SagaId, Running>) -> Option<Instant> {
    let now = Instant::now();
    let mut earliest: Option<Instant> = None;
    for run in running.values_mut().filter(|run| !run.lost) {
        if now >= run.held_until {
            run.lost = true;
            run.handle.abort();
        } else {
            earliest = Some(earliest.map_or(run.held_until, |at| at.min(run.held_until)));
        }
    }
    earliest
}

/// Accounts for a task that ended: the claim to hand back, if it is to be.
fn settle(
    joined: Result<(Id, Done), tokio::task::JoinError>,
    running: &mut HashMap<SagaId, Running>,
    tasks: &mut HashMap<Id, SagaId>,
    report: &mut WorkerReport,
) -> Option<Claim> {
    let (task, done) = match joined {
        Ok((task, done)) => (task, Some(done)),
        Err(error) => (error.id(), None),
    };
    let id = tasks.remove(&task)?;
    let Running { claim, lost, .. } = running.remove(&id)?;
    let release = match done {
        Some(Done::Ran(JournalEnd::Finished)) => {
            report.finished += 1;
            false
        }
        Some(Done::Ran(JournalEnd::Fenced)) => {
            report.lost += 1;
            false
        }
        Some(Done::Ran(JournalEnd::Failed)) => true,
        Some(Done::Quarantined) => {
            report.quarantined += 1;
            false
        }
        Some(Done::Abandoned) => {
            report.abandoned += 1;
            false
        }
        Some(Done::Store(error)) => {
            report.store_error(error);
            true
        }
        // Aborted when its lease was lost.
        None if lost => {
            report.lost += 1;
            false
        }
        // Aborted at shutdown, or panicked.
        None => true,
    };
    release.then_some(claim)
}

async fn quarantine(store: &PgStore, claim: &Claim, reason: &str) -> Done {
    match store.quarantine(claim, reason).await {
        Ok(()) => Done::Quarantined,
        Err(error) => Done::Store(error),
    }
}
