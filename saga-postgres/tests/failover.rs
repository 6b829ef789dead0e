//! Worker processes against a real server. Each worker is a child process
//! (this test binary, re-run in child mode with the server's socket
//! directory and a working directory passed in its environment) running a
//! [`Worker`]. Their steps write each run's start and end, with the saga,
//! the step, the claim's epoch, the process and the time, to a ledger file
//! shared by all of them (appended with one write, then `fsync`), as a
//! downstream system keyed by (saga, step) would see the calls. The tests:
//!
//! - failover: one of three workers is killed (SIGKILL) mid-run; the others
//!   take its sagas over once their leases expire, and everything finishes
//!   with gap-free journals, no step run by two workers at once, and the
//!   books right;
//! - zombie: a worker stopped (SIGSTOP) in the middle of a step, past its
//!   lease, is continued (SIGCONT) after another worker took its saga over
//!   and finished it: its step ends, but nothing it writes reaches the
//!   journal, and it drives the saga no further;
//! - poison: a saga whose step aborts the process is quarantined after
//!   [`Worker::max_recoveries`] takeovers, and the other sagas finish;
//! - server restart: PostgreSQL is stopped and started again under running
//!   workers, which reconnect and finish every saga.
//!
//! The tests run one at a time (each starts a cluster and several
//! processes; together they would compete for the machine and stretch the
//! leases' timing).

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::env;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use saga_core::journal::{Event, Outcome, Record, Registry, SagaContext, SagaId, SagaState};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_postgres::{PgStore, SagaSummary, Worker};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use cluster::Cluster;

/// Set in a child: the worker's name.
const CHILD: &str = "SAGA_POSTGRES_FAILOVER_CHILD";
/// The test's working directory: the ledger, the children's logs and
/// reports, the files that tell them to go on or stop.
const DIR: &str = "SAGA_POSTGRES_FAILOVER_DIR";
/// The directory of the server's socket.
const SOCKET: &str = "SAGA_POSTGRES_FAILOVER_SOCKET";
/// How many sagas a child's worker runs at once.
const MAX_SAGAS: &str = "SAGA_POSTGRES_FAILOVER_MAX_SAGAS";
/// The child's worker's `max_recoveries`, if set.
const MAX_RECOVERIES: &str = "SAGA_POSTGRES_FAILOVER_MAX_RECOVERIES";

const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(300);
const CLAIM_EVERY: Duration = Duration::from_millis(50);
/// Steps of a "books" saga.
const STEPS: usize = 3;

// ---------------------------------------------------------------------
// The sagas, as every process registers them.

/// What a "books" saga does, drawn from its id (so that the parent knows
/// it too): most commit; some fail at a step and are compensated; some
/// fail at a step and cannot undo their first one, and end stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Commits,
    Compensates { at: usize },
    Sticks { at: usize },
}

/// A well-mixed 64-bit hash of a saga id (SplitMix64's finalizer).
fn mix(id: SagaId) -> u64 {
    let mut z = (id.0 as u64) ^ ((id.0 >> 64) as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fate(id: SagaId) -> Fate {
    let hash = mix(id);
    let at = 1 + (hash >> 8) as usize % (STEPS - 1);
    match hash % 8 {
        0 | 1 => Fate::Compensates { at },
        2 => Fate::Sticks { at },
        _ => Fate::Commits,
    }
}

/// How long a step's action takes: 40 to 160 ms, drawn from the saga id.
fn step_time(id: SagaId, step: usize) -> Duration {
    Duration::from_millis(40 + (mix(id) >> (16 + 8 * step)) % 120)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

/// Appends `<act|undo> <saga> <step> <epoch> <pid> <start|ok|err> <µs>` to
/// the ledger: one `write` of the whole line (O_APPEND), so that lines of
/// processes writing at once, or killed, never mix, then `fsync`.
fn ledger(dir: &Path, kind: &str, context: &SagaContext, step: usize, phase: &str) {
    let line = format!(
        "{kind} {} {step} {} {} {phase} {}\n",
        context.id(),
        context.epoch(),
        std::process::id(),
        now()
    );
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ledger"))
        .expect("the ledger opens");
    file.write_all(line.as_bytes()).expect("a ledger line");
    file.sync_data().expect("the ledger syncs");
}

fn registry(dir: &Path) -> Registry<String> {
    let mut registry = Registry::new();

    // Three steps, their fate drawn from the saga's id. A run cut short by
    // a crash counts as an attempt: each action has 5 and each
    // compensation 3, more than the crashes a saga meets here.
    let books = dir.to_path_buf();
    registry.register(
        "books",
        1,
        move |_: &u64, context: &SagaContext| -> Saga<String> {
            let (context, fate) = (*context, fate(context.id()));
            let mut builder = SagaBuilder::new()
                .action_retry(Retry::attempts(5))
                .compensation_retry(Retry::attempts(3));
            for step in 0..STEPS {
                let (act, undo) = (books.clone(), books.clone());
                builder = builder.add_step(
                    move || {
                        let dir = act.clone();
                        async move {
                            ledger(&dir, "act", &context, step, "start");
                            if matches!(fate, Fate::Compensates { at } | Fate::Sticks { at } if at == step)
                            {
                                ledger(&dir, "act", &context, step, "err");
                                return Err(format!("step {step} refused"));
                            }
                            tokio::time::sleep(step_time(context.id(), step)).await;
                            ledger(&dir, "act", &context, step, "ok");
                            Ok(())
                        }
                    },
                    move || {
                        let dir = undo.clone();
                        async move {
                            ledger(&dir, "undo", &context, step, "start");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if step == 0 && matches!(fate, Fate::Sticks { .. }) {
                                ledger(&dir, "undo", &context, step, "err");
                                return Err(String::from("the refund of step 0 refused"));
                            }
                            ledger(&dir, "undo", &context, step, "ok");
                            Ok(())
                        }
                    },
                );
            }
            builder.build()
        },
    );

    // Two steps; at epoch 1 (the first claim), step 0 blocks its thread
    // until the file `go` exists: a process that hangs in a step.
    let hold = dir.to_path_buf();
    registry.register(
        "hold",
        1,
        move |_: &(), context: &SagaContext| -> Saga<String> {
            let context = *context;
            let mut builder = SagaBuilder::new().action_retry(Retry::attempts(3));
            for step in 0..2 {
                let (act, undo) = (hold.clone(), hold.clone());
                builder = builder.add_step(
                    move || {
                        let dir = act.clone();
                        async move {
                            ledger(&dir, "act", &context, step, "start");
                            if step == 0 && context.epoch() == 1 {
                                while !dir.join("go").exists() {
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                            } else {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            ledger(&dir, "act", &context, step, "ok");
                            Ok::<_, String>(())
                        }
                    },
                    move || {
                        let dir = undo.clone();
                        async move {
                            ledger(&dir, "undo", &context, step, "ok");
                            Ok(())
                        }
                    },
                );
            }
            builder.build()
        },
    );

    // One step, which kills the process that runs it. An attempt cut short
    // by a crash counts: with a single one, the saga would fail (and be
    // compensated) at its first takeover, instead of running again.
    let poison = dir.to_path_buf();
    registry.register(
        "poison",
        1,
        move |_: &(), context: &SagaContext| -> Saga<String> {
            let (dir, context) = (poison.clone(), *context);
            SagaBuilder::new()
                .action_retry(Retry::attempts(10))
                .add_step(
                    move || {
                        let dir = dir.clone();
                        async move {
                            ledger(&dir, "act", &context, 0, "start");
                            std::process::abort();
                            #[allow(unreachable_code, reason = "gives the future its type")]
                            Ok::<_, String>(())
                        }
                    },
                    || async { Ok(()) },
                )
                .build()
        },
    );
    registry
}

// ---------------------------------------------------------------------
// The child: one worker, until the file `stop` exists; then its report.

/// Runs the child's worker if this process is a child.
fn child_mode() -> bool {
    let Ok(name) = env::var(CHILD) else {
        return false;
    };
    let dir = PathBuf::from(env::var(DIR).expect("the working directory"));
    let socket = PathBuf::from(env::var(SOCKET).expect("the socket directory"));
    let max_sagas: usize = env::var(MAX_SAGAS).map_or(8, |n| n.parse().expect("a number"));
    let max_recoveries: Option<u64> = env::var(MAX_RECOVERIES)
        .ok()
        .map(|n| n.parse().expect("a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let options = PgConnectOptions::new()
            .socket(&socket)
            .username("postgres")
            .database("postgres")
            // Names the worker in the server's log.
            .application_name(&name);
        let pool = PgPoolOptions::new()
            .max_connections(max_sagas as u32 + 4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        let store = PgStore::new(pool).expect("in a runtime");
        let mut worker = Worker::new(store, registry(&dir), name.clone())
            .lease(LEASE, RENEW)
            .claim_every(CLAIM_EVERY)
            .max_sagas(max_sagas)
            .grace(Duration::from_secs(10));
        if let Some(max) = max_recoveries {
            worker = worker.max_recoveries(max);
        }
        let stop = dir.join("stop");
        let report = worker
            .run(async move {
                while !stop.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        let text = format!(
            "claimed={} finished={} lost={} quarantined={} abandoned={} released={} \
             store_errors={}\nlast store error: {:?}\n",
            report.claimed,
            report.finished,
            report.lost,
            report.quarantined,
            report.abandoned,
            report.released,
            report.store_errors,
            report.last_store_error.map(|error| error.to_string()),
        );
        fs::write(dir.join(format!("report-{name}")), text).expect("the report");
    });
    true
}

// ---------------------------------------------------------------------
// The parent's tools.

/// One test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The worker processes; dropping it kills (SIGKILL) and reaps those still
/// running, so that a failing test leaves none behind.
struct Children {
    test: &'static str,
    dir: PathBuf,
    socket: PathBuf,
    running: Vec<(String, Child)>,
}

impl Children {
    fn new(test: &'static str, dir: &Path, cluster: &Cluster) -> Self {
        Children {
            test,
            dir: dir.to_path_buf(),
            socket: cluster.socket_dir().to_path_buf(),
            running: Vec::new(),
        }
    }

    /// Starts worker `name`, with extra environment `settings`: its pid.
    fn spawn(&mut self, name: &str, settings: &[(&str, &str)]) -> u32 {
        let log = File::create(self.dir.join(format!("child-{name}.log"))).expect("a log");
        let child = Command::new(env::current_exe().expect("the test binary"))
            .args(["--exact", self.test, "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .env(DIR, &self.dir)
            .env(SOCKET, &self.socket)
            .envs(settings.iter().copied())
            // Where a core dump of an aborted child would go.
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log"))
            .stderr(log)
            .spawn()
            .expect("the child starts");
        let pid = child.id();
        self.running.push((name.to_owned(), child));
        pid
    }

    fn pid(&self, name: &str) -> u32 {
        self.running
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, child)| child.id())
            .expect("a running child")
    }

    /// SIGKILLs worker `name` and reaps it: the time it was gone by.
    fn kill(&mut self, name: &str) -> u64 {
        let at = self
            .running
            .iter()
            .position(|(n, _)| n == name)
            .expect("a running child");
        let (_, mut child) = self.running.remove(at);
        child.kill().expect("SIGKILL");
        child.wait().expect("the child is reaped");
        now()
    }

    /// The children that exited since the last call: name, pid, status.
    fn exited(&mut self) -> Vec<(String, u32, ExitStatus)> {
        let mut exited = Vec::new();
        let mut index = 0;
        while index < self.running.len() {
            match self.running[index].1.try_wait().expect("try_wait") {
                Some(status) => {
                    let (name, child) = self.running.remove(index);
                    exited.push((name, child.id(), status));
                }
                None => index += 1,
            }
        }
        exited
    }

    /// Tells every worker to stop (the file `stop`), waits for them to
    /// exit (30 s at most), and reads their reports.
    fn stop(&mut self) -> BTreeMap<String, Report> {
        File::create(self.dir.join("stop")).expect("the stop file");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut reports = BTreeMap::new();
        while !self.running.is_empty() {
            for (name, _, status) in self.exited() {
                assert!(
                    status.success(),
                    "worker {name} exited {status}:\n{}",
                    self.log(&name)
                );
                reports.insert(name.clone(), self.report(&name));
            }
            assert!(
                Instant::now() < deadline,
                "workers did not stop: {:?}",
                self.running.iter().map(|(n, _)| n).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        reports
    }

    fn report(&self, name: &str) -> Report {
        let text = fs::read_to_string(self.dir.join(format!("report-{name}")))
            .unwrap_or_else(|error| panic!("no report of {name} ({error}):\n{}", self.log(name)));
        let first = text.lines().next().unwrap_or_default();
        let counts = first
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.parse().expect("a count")))
            .collect();
        Report { counts, text }
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("child-{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a child's worker reported.
#[derive(Debug)]
struct Report {
    counts: BTreeMap<String, u64>,
    text: String,
}

impl Report {
    fn get(&self, key: &str) -> u64 {
        self.counts[key]
    }
}

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// Waits, polling the store every 50 ms, until `done` holds of its sagas:
/// how long it took. Store errors (while the server restarts) are waited
/// out. Panics at `deadline`, saying `what` was waited for.
async fn until(
    store: &PgStore,
    deadline: Instant,
    what: &str,
    done: impl Fn(&[SagaSummary]) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut last = None;
    loop {
        match store.list(None).await {
            Ok(list) if done(&list) => return started.elapsed(),
            Ok(list) => last = Some(states(&list)),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; the sagas: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many sagas are in each state (and quarantined).
fn states(list: &[SagaSummary]) -> BTreeMap<String, usize> {
    let mut states = BTreeMap::new();
    for saga in list {
        let state = match &saga.quarantine {
            Some(_) => String::from("quarantined"),
            None => format!("{:?}", saga.state),
        };
        *states.entry(state).or_default() += 1;
    }
    states
}

fn finished(list: &[SagaSummary]) -> usize {
    list.iter()
        .filter(|s| matches!(s.state, SagaState::Finished(_)))
        .count()
}

/// Waits (polling every 20 ms, until `deadline`) until a ledger line
/// satisfies `wanted`.
async fn until_ledger(dir: &Path, deadline: Instant, what: &str, wanted: impl Fn(&Entry) -> bool) {
    loop {
        if read_ledger(dir).iter().any(&wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the ledger to show {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit_all<P: saga_core::journal::Codec>(
    submitter: &Worker<String>,
    definition: &str,
    parameters: impl IntoIterator<Item = P>,
) -> Vec<SagaId> {
    let mut ids = Vec::new();
    for parameter in parameters {
        ids.push(submitter.submit(definition, &parameter).await.unwrap());
    }
    ids
}

// ---------------------------------------------------------------------
// Reading the ledger.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Ok,
    Err,
}

/// One ledger line.
#[derive(Debug, Clone, Copy)]
struct Entry {
    compensation: bool,
    saga: SagaId,
    step: usize,
    epoch: u64,
    pid: u32,
    phase: Phase,
    /// Microseconds since the Unix epoch.
    at: u64,
}

fn read_ledger(dir: &Path) -> Vec<Entry> {
    let text = fs::read_to_string(dir.join("ledger")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            fn torn<T>(line: &str) -> T {
                panic!("a torn ledger line {line:?}")
            }
            if fields.len() != 7 {
                torn::<()>(line);
            }
            Entry {
                compensation: match fields[0] {
                    "act" => false,
                    "undo" => true,
                    _ => torn(line),
                },
                saga: SagaId(u128::from_str_radix(fields[1], 16).unwrap_or_else(|_| torn(line))),
                step: fields[2].parse().unwrap_or_else(|_| torn(line)),
                epoch: fields[3].parse().unwrap_or_else(|_| torn(line)),
                pid: fields[4].parse().unwrap_or_else(|_| torn(line)),
                phase: match fields[5] {
                    "start" => Phase::Start,
                    "ok" => Phase::Ok,
                    "err" => Phase::Err,
                    _ => torn(line),
                },
                at: fields[6].parse().unwrap_or_else(|_| torn(line)),
            }
        })
        .collect()
}

/// One run of a step's action or compensation, by one process.
#[derive(Debug, Clone, Copy)]
struct StepRun {
    pid: u32,
    epoch: u64,
    #[allow(dead_code, reason = "shown in a failure's message")]
    compensation: bool,
    start: u64,
    end: u64,
    /// It never wrote its end: its process died, or the run was stopped.
    cut: bool,
}

/// Each (saga, step)'s runs, from the ledger's start and end lines. A run
/// of a process in `dead` that never ended ends when the process was gone;
/// one of a live process ends `now` (it was stopped, sometime before).
fn step_runs(
    ledger: &[Entry],
    dead: &HashMap<u32, u64>,
) -> BTreeMap<(SagaId, usize), Vec<StepRun>> {
    let mut open: HashMap<(SagaId, usize, bool, u32, u64), u64> = HashMap::new();
    let mut runs: BTreeMap<(SagaId, usize), Vec<StepRun>> = BTreeMap::new();
    for entry in ledger {
        let key = (
            entry.saga,
            entry.step,
            entry.compensation,
            entry.pid,
            entry.epoch,
        );
        match entry.phase {
            Phase::Start => {
                let before = open.insert(key, entry.at);
                assert!(
                    before.is_none(),
                    "two runs at once in one process: {entry:?}"
                );
            }
            Phase::Ok | Phase::Err => {
                let start = open
                    .remove(&key)
                    .unwrap_or_else(|| panic!("an end with no start: {entry:?}"));
                runs.entry((entry.saga, entry.step))
                    .or_default()
                    .push(StepRun {
                        pid: entry.pid,
                        epoch: entry.epoch,
                        compensation: entry.compensation,
                        start,
                        end: entry.at,
                        cut: false,
                    });
            }
        }
    }
    let now = now();
    for ((saga, step, compensation, pid, epoch), start) in open {
        runs.entry((saga, step)).or_default().push(StepRun {
            pid,
            epoch,
            compensation,
            start,
            end: dead.get(&pid).copied().unwrap_or(now),
            cut: true,
        });
    }
    for list in runs.values_mut() {
        list.sort_by_key(|run| run.start);
    }
    runs
}

/// The pairs of runs of one (saga, step) that overlapped in time.
fn overlaps(
    runs: &BTreeMap<(SagaId, usize), Vec<StepRun>>,
) -> Vec<(SagaId, usize, StepRun, StepRun)> {
    let mut found = Vec::new();
    for (&(saga, step), list) in runs {
        for (index, earlier) in list.iter().enumerate() {
            for later in &list[index + 1..] {
                if later.start < earlier.end {
                    found.push((saga, step, *earlier, *later));
                }
            }
        }
    }
    found
}

/// The books of a downstream system keyed by (saga, step) that keeps the
/// highest epoch it saw for each key and refuses calls with a lower one
/// (the epoch is the claim's fencing token).
#[derive(Debug, Default)]
struct Books {
    /// Whether each (saga, step) is applied.
    applied: BTreeMap<(SagaId, usize), bool>,
    /// The processes whose action was taken, for each (saga, step).
    applies: BTreeMap<(SagaId, usize), Vec<u32>>,
    /// The calls refused for their stale epoch.
    refused: Vec<Entry>,
}

fn books(ledger: &[Entry]) -> Books {
    let mut books = Books::default();
    let mut highest: HashMap<(SagaId, usize), u64> = HashMap::new();
    for entry in ledger {
        let key = (entry.saga, entry.step);
        let seen = highest.entry(key).or_insert(0);
        if entry.epoch < *seen {
            books.refused.push(*entry);
            continue;
        }
        *seen = entry.epoch;
        match (entry.compensation, entry.phase) {
            (false, Phase::Ok) => {
                books.applied.insert(key, true);
                books.applies.entry(key).or_default().push(entry.pid);
            }
            (true, Phase::Ok) => {
                books.applied.insert(key, false);
            }
            _ => {}
        }
    }
    books
}

/// Checks each "books" saga: it ended as its fate says, its journal reads
/// back gap-free and ends with that outcome, and the ledger's books agree
/// (committed: every step applied; compensated: none; stuck: only step 0,
/// whose refund was refused). Returns (committed, compensated, stuck).
async fn check_books(store: &PgStore, ids: &[SagaId], books: &Books) -> (usize, usize, usize) {
    let list = store.list(None).await.unwrap();
    let summaries: HashMap<SagaId, &SagaSummary> = list.iter().map(|s| (s.id, s)).collect();
    let mut counts = (0, 0, 0);
    for &id in ids {
        let summary = summaries[&id];
        let fate = fate(id);
        let (outcome, applied): (Outcome, Vec<bool>) = match fate {
            Fate::Commits => {
                counts.0 += 1;
                (Outcome::Committed, vec![true; STEPS])
            }
            Fate::Compensates { .. } => {
                counts.1 += 1;
                (Outcome::Compensated, vec![false; STEPS])
            }
            Fate::Sticks { .. } => {
                counts.2 += 1;
                let mut applied = vec![false; STEPS];
                applied[0] = true;
                (Outcome::Stuck, applied)
            }
        };
        assert_eq!(
            summary.state,
            SagaState::Finished(outcome),
            "saga {id} ({fate:?}): {summary:?}"
        );
        assert!(summary.quarantine.is_none(), "{summary:?}");
        if outcome == Outcome::Stuck {
            let reason = summary.last_error.as_deref().unwrap_or_default();
            assert!(reason.contains("refund of step 0 refused"), "{summary:?}");
        }
        let records = store.records(id).await.unwrap();
        check_journal(id, &records, outcome);
        assert_eq!(summary.records, records.len() as u64, "{summary:?}");
        let on_books: Vec<bool> = (0..STEPS)
            .map(|step| books.applied.get(&(id, step)).copied().unwrap_or(false))
            .collect();
        assert_eq!(on_books, applied, "saga {id} ({fate:?}) on the books");
    }
    counts
}

/// Records numbered 0, 1, 2 ... without a gap, from `Created` to one
/// `Finished` with `outcome`, last.
fn check_journal(id: SagaId, records: &[Record], outcome: Outcome) {
    for (want, record) in records.iter().enumerate() {
        assert_eq!(record.seq, want as u64, "saga {id}: {records:?}");
    }
    assert!(
        matches!(
            records.first().map(|r| &r.event),
            Some(Event::Created { .. })
        ),
        "saga {id}: {records:?}"
    );
    let finished: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.event, Event::Finished { .. }))
        .collect();
    assert_eq!(finished.len(), 1, "saga {id}: {records:?}");
    assert!(
        matches!(records.last().map(|r| &r.event), Some(Event::Finished { outcome: o, .. }) if *o == outcome),
        "saga {id} should have finished {outcome}: {records:?}"
    );
}

/// How many statements the server logged (with `log_statement = 'all'`
/// and the application name in brackets after the time) from application
/// `app` that contain `text`. A statement may span lines: each belongs to
/// the last line that starts with a time.
fn statements_of(log: &str, app: &str, text: &str) -> usize {
    let tag = format!(" [{app}] ");
    let mut from_app = false;
    let mut count = 0;
    for line in log.lines() {
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            from_app = line.contains(&tag);
        }
        if from_app && line.contains(text) {
            count += 1;
        }
    }
    count
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Runs a parent's test body on a runtime of its own, one test at a time.
fn parent(test: impl Future<Output = ()>) {
    let _one = serial();
    runtime().block_on(test);
}

// ---------------------------------------------------------------------
// The tests.

#[test]
fn a_killed_worker_s_sagas_are_taken_over_and_finish_with_the_books_right() {
    if child_mode() {
        return;
    }
    parent(failover());
}

async fn failover() {
    const SAGAS: usize = 200;
    const TEST: &str = "a_killed_worker_s_sagas_are_taken_over_and_finish_with_the_books_right";
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = PgStore::open(cluster.pool(5).await).await.unwrap();
    let submitter = Worker::new(store.clone(), registry(dir.path()), "submitter");
    let ids = submit_all(&submitter, "books", 0..SAGAS as u64).await;
    let mut children = Children::new(TEST, dir.path(), &cluster);
    let started = Instant::now();
    for name in ["w0", "w1", "w2"] {
        children.spawn(name, &[(MAX_SAGAS, "8")]);
    }
    let victim = children.pid("w0");

    // Mid-run: some sagas finished, and the victim is running steps.
    let deadline = Instant::now() + Duration::from_secs(30);
    until(&store, deadline, "40 sagas finished", |list| {
        finished(list) >= 40
    })
    .await;
    until_ledger(dir.path(), deadline, "a step of w0", |e| e.pid == victim).await;
    let killed = children.kill("w0");
    let run_before = started.elapsed();

    // Its leases expire within LEASE; the others claim its sagas as soon as
    // they have room (after the sagas never claimed yet, which go first).
    let slack = Duration::from_secs(30);
    let all = |list: &[SagaSummary]| list.len() == SAGAS && finished(list) == SAGAS;
    let to_finish = until(
        &store,
        Instant::now() + LEASE + slack,
        "every saga finished",
        all,
    )
    .await;
    let reports = children.stop();

    let ledger = read_ledger(dir.path());
    let dead = HashMap::from([(victim, killed)]);
    let runs = step_runs(&ledger, &dead);
    let books = books(&ledger);
    let (committed, compensated, stuck) = check_books(&store, &ids, &books).await;

    // No step of a saga ran in two places at once.
    let overlapping = overlaps(&runs);
    assert!(overlapping.is_empty(), "runs overlapped: {overlapping:#?}");
    // Only the victim's runs were cut short, and some were: it was killed
    // mid-step. Each saga it was in the middle of was finished by another.
    let cut: Vec<(SagaId, StepRun)> = runs
        .iter()
        .flat_map(|(&(saga, _), list)| list.iter().filter(|r| r.cut).map(move |r| (saga, *r)))
        .collect();
    assert!(cut.iter().all(|(_, run)| run.pid == victim), "{cut:#?}");
    assert!(!cut.is_empty(), "w0 was killed between steps");
    let list = store.list(None).await.unwrap();
    for (saga, run) in &cut {
        let summary = list.iter().find(|s| s.id == *saga).unwrap();
        assert!(
            summary.epoch > run.epoch && summary.recoveries >= 1,
            "{summary:?}"
        );
    }
    // An action applied twice (at least once: its end was not journaled)
    // was first applied by the victim.
    let twice: Vec<_> = books
        .applies
        .iter()
        .filter(|(_, pids)| pids.len() > 1)
        .collect();
    for (key, pids) in &twice {
        assert_eq!(pids.len(), 2, "{key:?}: {pids:?}");
        assert_eq!(pids[0], victim, "{key:?}: {pids:?}");
    }
    assert!(books.refused.is_empty(), "{:?}", books.refused);

    // The takeovers: for each saga the victim ran a step of and that
    // another worker went on with, the first ledger line of that worker.
    let mut victims_epochs: BTreeMap<SagaId, u64> = BTreeMap::new();
    for entry in ledger.iter().filter(|e| e.pid == victim) {
        let epoch = victims_epochs.entry(entry.saga).or_default();
        *epoch = (*epoch).max(entry.epoch);
    }
    let takeovers: Vec<u64> = victims_epochs
        .iter()
        .filter_map(|(saga, epoch)| {
            ledger
                .iter()
                .find(|e| e.saga == *saga && e.pid != victim && e.epoch > *epoch)
                .map(|e| e.at.saturating_sub(killed))
        })
        .collect();
    assert!(!takeovers.is_empty());
    let recovered = list.iter().filter(|s| s.recoveries > 0).count();
    // Only the victim's sagas changed hands: every line of a survivor is
    // at its saga's last epoch (a survivor that lost a lease would have
    // lines at an earlier one).
    let epochs: HashMap<SagaId, u64> = list.iter().map(|s| (s.id, s.epoch)).collect();
    let stale: Vec<&Entry> = ledger
        .iter()
        .filter(|e| e.pid != victim && e.epoch != epochs[&e.saga])
        .collect();
    assert!(stale.is_empty(), "survivors lost sagas: {stale:#?}");
    for (name, report) in &reports {
        // A survivor loses nothing: a saga a renewal misses just after its
        // own last record let go of it is counted finished.
        assert_eq!(report.get("lost"), 0, "{name}: {}", report.text);
        assert_eq!(
            report.get("claimed"),
            report.get("finished"),
            "{name}: {}",
            report.text
        );
        assert_eq!(report.get("store_errors"), 0, "{name}: {}", report.text);
        assert_eq!(report.get("quarantined"), 0, "{name}: {}", report.text);
    }
    let survivors_finished: u64 = reports.values().map(|r| r.get("finished")).sum();
    assert!(survivors_finished >= recovered as u64);
    assert!(survivors_finished < SAGAS as u64, "w0 finished none");

    println!(
        "failover: {SAGAS} sagas, 3 workers; w0 killed after {run_before:?} with {} steps \
         in flight; {recovered} sagas taken over (recoveries > 0), {} of them by ledger; \
         first takeover {:.0} ms after the kill, last {:.0} ms (lease {LEASE:?}); every saga \
         finished {to_finish:?} after the kill (deadline: lease + {slack:?}); {committed} \
         committed, {compensated} compensated, {stuck} stuck; {} actions applied twice \
         (first by w0); survivors finished {survivors_finished}",
        cut.len(),
        takeovers.len(),
        millis(*takeovers.iter().min().unwrap()),
        millis(*takeovers.iter().max().unwrap()),
        twice.len(),
    );
    for (name, report) in &reports {
        println!(
            "  {name}: {}",
            report.text.lines().next().unwrap_or_default()
        );
    }
}

#[test]
fn a_stopped_worker_continued_after_a_takeover_writes_nothing_more() {
    if child_mode() {
        return;
    }
    parent(zombie());
}

async fn zombie() {
    const TEST: &str = "a_stopped_worker_continued_after_a_takeover_writes_nothing_more";
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = PgStore::open(cluster.pool(5).await).await.unwrap();
    let submitter = Worker::new(store.clone(), registry(dir.path()), "submitter");
    let id = submitter.submit("hold", &()).await.unwrap();
    let mut children = Children::new(TEST, dir.path(), &cluster);
    let zombie = children.spawn("z", &[]);

    // z is in step 0 (which waits for `go`): stop the whole process.
    let deadline = Instant::now() + Duration::from_secs(30);
    until_ledger(dir.path(), deadline, "z in step 0", |e| {
        e.pid == zombie && e.step == 0 && e.phase == Phase::Start
    })
    .await;
    signal(zombie, "STOP");
    let stopped = now();
    let before = store.list(None).await.unwrap();
    assert_eq!(before[0].owner.as_deref(), Some("z"));
    assert_eq!(before[0].epoch, 1);

    // Another worker takes it over once z's lease expires, and finishes it.
    let other = children.spawn("b", &[]);
    let committed = |list: &[SagaSummary]| list[0].state == SagaState::Finished(Outcome::Committed);
    let took = until(
        &store,
        Instant::now() + LEASE + Duration::from_secs(30),
        "b committed the saga",
        committed,
    )
    .await;
    let after_takeover = store.list(None).await.unwrap()[0].clone();
    assert_eq!((after_takeover.epoch, after_takeover.recoveries), (2, 1));
    let records = store.records(id).await.unwrap();
    check_journal(id, &records, Outcome::Committed);

    // z goes on: its step ends, and what it appends next is fenced. The
    // server logs each statement from here on, with the worker's name.
    for setting in [
        "ALTER SYSTEM SET log_statement = 'all'",
        "ALTER SYSTEM SET log_line_prefix = '%m [%a] '",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(setting).execute(store.pool()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    File::create(dir.path().join("go")).unwrap();
    // (Read before the signal: z may run before `kill` returns.)
    let continued = now();
    signal(zombie, "CONT");
    until_ledger(
        dir.path(),
        Instant::now() + Duration::from_secs(20),
        "z's step 0 ended",
        |e| e.pid == zombie && e.step == 0 && e.phase == Phase::Ok,
    )
    .await;
    // A few renewals' time for z to see it lost the saga.
    tokio::time::sleep(RENEW * 4).await;
    let reports = children.stop();
    let (z, b) = (&reports["z"], &reports["b"]);

    // z claimed it, and lost it; b claimed it and finished it.
    assert_eq!(
        (z.get("claimed"), z.get("finished"), z.get("lost")),
        (1, 0, 1),
        "z: {}",
        z.text
    );
    assert_eq!(
        (b.get("claimed"), b.get("finished"), b.get("lost")),
        (1, 1, 0),
        "b: {}",
        b.text
    );
    // Nothing was written after b's takeover but b's records: the journal
    // and the row are as b left them.
    assert_eq!(store.records(id).await.unwrap(), records);
    let last = store.list(None).await.unwrap()[0].clone();
    assert_eq!(
        (
            last.state,
            last.epoch,
            last.records,
            last.updated,
            last.owner
        ),
        (
            after_takeover.state,
            2,
            records.len() as u64,
            after_takeover.updated,
            None
        )
    );
    // z did try to write: its flush found the fence closed (the journal
    // reads the row again, to say why, only then), and wrote nothing.
    let log = cluster.server_log();
    let flushed = statements_of(&log, "z", "WITH fence AS");
    let diagnosed = statements_of(&log, "z", "AS live");
    assert!(
        flushed >= 1 && diagnosed >= 1,
        "z's fenced flush is not in the server's log:\n{log}"
    );
    // z wrote one record (step 0's first attempt started) before it was
    // stopped; b journaled that attempt as cut short and ran a second.
    let history = store.history(id).await.unwrap();
    assert_eq!(history.step(0).action_attempts, 2);
    assert_eq!(history.step(1).action_attempts, 1);
    let succeeded = |step| {
        records
            .iter()
            .filter(|r| matches!(r.event, Event::ActionSucceeded { step: s, .. } if s == step))
            .count()
    };
    assert_eq!((succeeded(0), succeeded(1)), (1, 1), "{records:?}");

    // The ledger: z's step 0 ended after it was continued, and z ran
    // nothing else; b ran both steps, at epoch 2. z's step overlapped b's
    // (a lease does not stop a step): the epoch is what keeps the books
    // right, as a downstream that refuses stale epochs refuses z's.
    let ledger = read_ledger(dir.path());
    let by_z: Vec<&Entry> = ledger.iter().filter(|e| e.pid == zombie).collect();
    assert_eq!(by_z.len(), 2, "{by_z:?}");
    assert!(
        by_z.iter()
            .all(|e| e.step == 0 && e.epoch == 1 && !e.compensation)
    );
    assert!(
        by_z[1].at > continued,
        "z's step ended before it was continued"
    );
    let by_b: Vec<&Entry> = ledger.iter().filter(|e| e.pid == other).collect();
    assert_eq!(by_b.len(), 4, "{by_b:?}");
    assert!(by_b.iter().all(|e| e.epoch == 2));
    let runs = step_runs(&ledger, &HashMap::new());
    let overlapping = overlaps(&runs);
    assert_eq!(overlapping.len(), 1, "{overlapping:#?}");
    assert_eq!(
        (overlapping[0].2.pid, overlapping[0].3.pid),
        (zombie, other)
    );
    let books = books(&ledger);
    assert_eq!(books.refused.len(), 1, "{:?}", books.refused);
    assert_eq!(books.refused[0].pid, zombie);
    assert_eq!(books.applies[&(id, 0)], [other]);
    assert!(books.applied[&(id, 0)]);
    assert!(books.applied[&(id, 1)]);

    println!(
        "zombie: z stopped {:.0} ms (lease {LEASE:?}); b committed the saga {took:?} after it \
         started; z's step ended {:.0} ms after SIGCONT; its fenced flush seen in the server's log \
         ({flushed} flush, {diagnosed} diagnosis); z: {}; b: {}",
        millis(continued - stopped),
        millis(by_z[1].at - continued),
        z.text.lines().next().unwrap_or_default(),
        b.text.lines().next().unwrap_or_default(),
    );
}

#[test]
fn a_saga_that_crashes_its_workers_is_quarantined_and_the_others_finish() {
    if child_mode() {
        return;
    }
    parent(poison());
}

async fn poison() {
    const TEST: &str = "a_saga_that_crashes_its_workers_is_quarantined_and_the_others_finish";
    const MAX: u64 = 2;
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = PgStore::open(cluster.pool(5).await).await.unwrap();
    let submitter = Worker::new(store.clone(), registry(dir.path()), "submitter");
    let mut ids = submit_all(&submitter, "books", 0..6_u64).await;
    let poison = submitter.submit("poison", &()).await.unwrap();
    ids.extend(submit_all(&submitter, "books", 6..20_u64).await);

    // Two workers, each driving one saga at a time (so that a crash takes
    // no other saga with it), restarted when they die, as a supervisor
    // would.
    let max = MAX.to_string();
    let settings = [(MAX_SAGAS, "1"), (MAX_RECOVERIES, max.as_str())];
    let mut children = Children::new(TEST, dir.path(), &cluster);
    let mut spawned = 0;
    for _ in 0..2 {
        children.spawn(&format!("p{spawned}"), &settings);
        spawned += 1;
    }
    let started = Instant::now();
    let deadline =
        started + (LEASE + Duration::from_secs(5)) * (MAX as u32 + 1) + Duration::from_secs(30);
    let mut crashed: HashMap<u32, u64> = HashMap::new();
    loop {
        for (name, pid, status) in children.exited() {
            assert_eq!(
                status.signal(),
                Some(6),
                "{name} exited {status}, not by SIGABRT:\n{}",
                children.log(&name)
            );
            crashed.insert(pid, now());
            children.spawn(&format!("p{spawned}"), &settings);
            spawned += 1;
        }
        let list = store.list(None).await.unwrap();
        let poisoned = list.iter().find(|s| s.id == poison).unwrap();
        assert_eq!(poisoned.state, SagaState::Forward, "{poisoned:?}");
        let poisoned = poisoned.quarantine.is_some();
        if poisoned && finished(&list) == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {:?}, {} crashes",
            states(&list),
            crashed.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let reports = children.stop();

    // It crashed a worker at its first claim and at each of MAX takeovers;
    // the next takeover quarantined it, with the reason.
    let list = store.list(None).await.unwrap();
    let summary = list.iter().find(|s| s.id == poison).unwrap();
    let reason = summary.quarantine.as_deref().unwrap();
    assert!(
        reason.contains(&format!("taken over {} times", MAX + 1))
            && reason.contains(&format!("limit of {MAX}")),
        "{reason}"
    );
    assert_eq!(summary.state, SagaState::Forward);
    assert_eq!((summary.recoveries, summary.epoch), (MAX + 1, MAX + 2));
    assert_eq!(summary.owner, None);
    assert_eq!(crashed.len() as u64, MAX + 1, "{crashed:?}");
    let ledger = read_ledger(dir.path());
    let runs: Vec<&Entry> = ledger.iter().filter(|e| e.saga == poison).collect();
    let epochs: Vec<u64> = runs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, (1..=MAX + 1).collect::<Vec<_>>(), "{runs:?}");
    let pids: BTreeSet<u32> = runs.iter().map(|e| e.pid).collect();
    assert_eq!(
        pids,
        crashed.keys().copied().collect(),
        "each run crashed its worker"
    );
    let quarantined: u64 = reports.values().map(|r| r.get("quarantined")).sum();
    assert_eq!(quarantined, 1);

    // The others finished as their fates say, none taken over, no step
    // run in two places at once.
    let books = books(&ledger);
    let (committed, compensated, stuck) = check_books(&store, &ids, &books).await;
    for saga in list.iter().filter(|s| s.id != poison) {
        assert_eq!(saga.recoveries, 0, "{saga:?}");
    }
    let overlapping = overlaps(&step_runs(&ledger, &crashed));
    assert!(overlapping.is_empty(), "{overlapping:#?}");

    println!(
        "poison: quarantined after {} crashes in {took:?}: {reason:?}; the other {} sagas: \
         {committed} committed, {compensated} compensated, {stuck} stuck",
        crashed.len(),
        ids.len()
    );
}

#[test]
fn workers_reconnect_after_the_server_restarts_and_finish_every_saga() {
    if child_mode() {
        return;
    }
    parent(server_restart());
}

async fn server_restart() {
    const SAGAS: usize = 80;
    const TEST: &str = "workers_reconnect_after_the_server_restarts_and_finish_every_saga";
    /// Longer than the lease: the workers' leases expire while it is down.
    const DOWN: Duration = Duration::from_secs(3);
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = PgStore::open(cluster.pool(5).await).await.unwrap();
    let submitter = Worker::new(store.clone(), registry(dir.path()), "submitter");
    let ids = submit_all(&submitter, "books", 0..SAGAS as u64).await;
    let mut children = Children::new(TEST, dir.path(), &cluster);
    for name in ["r0", "r1"] {
        children.spawn(name, &[(MAX_SAGAS, "8")]);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    until(&store, deadline, "15 sagas finished", |list| {
        finished(list) >= 15
    })
    .await;

    let stopping = Instant::now();
    cluster.stop_server();
    let stop_took = stopping.elapsed();
    let down_at = now();
    tokio::time::sleep(DOWN).await;
    // The server is down from `down_at` to `up_at` at least (it may accept
    // connections a moment before `pg_ctl start` returns).
    let up_at = now();
    let starting = Instant::now();
    cluster.start_server();
    let start_took = starting.elapsed();
    let unfinished_at_restart = {
        let list = store.list(None).await.unwrap();
        SAGAS - finished(&list)
    };
    assert!(
        unfinished_at_restart > 0,
        "every saga finished before the restart"
    );

    let all = |list: &[SagaSummary]| list.len() == SAGAS && finished(list) == SAGAS;
    let slack = Duration::from_secs(40);
    let to_finish = until(
        &store,
        Instant::now() + LEASE + slack,
        "every saga finished",
        all,
    )
    .await;
    let reports = children.stop();

    let ledger = read_ledger(dir.path());
    let books = books(&ledger);
    let (committed, compensated, stuck) = check_books(&store, &ids, &books).await;
    // No step started while the server was down (its start was journaled
    // first), and none ran in two places at once.
    let runs = step_runs(&ledger, &HashMap::new());
    // (A start journaled just before the server went down may be written
    // to the ledger a moment after: 200 ms of margin.)
    let started_while_down: Vec<&Entry> = ledger
        .iter()
        .filter(|e| e.phase == Phase::Start && e.at > down_at + 200_000 && e.at < up_at)
        .collect();
    assert!(started_while_down.is_empty(), "{started_while_down:#?}");
    let overlapping = overlaps(&runs);
    assert!(overlapping.is_empty(), "runs overlapped: {overlapping:#?}");
    assert!(books.refused.is_empty(), "{:?}", books.refused);
    // The restart reached the workers: flushes failed, leases were lost.
    let count = |key| reports.values().map(|r: &Report| r.get(key)).sum::<u64>();
    let (lost, released, errors) = (count("lost"), count("released"), count("store_errors"));
    assert!(lost + released + errors > 0, "{reports:#?}");
    let recovered = store
        .list(None)
        .await
        .unwrap()
        .iter()
        .filter(|s| s.recoveries > 0)
        .count();
    assert!(recovered > 0, "no saga was taken over after the restart");

    println!(
        "server restart: stop took {stop_took:?}, down {DOWN:?}, start took {start_took:?}; \
         {unfinished_at_restart} of {SAGAS} sagas unfinished at the restart, every saga \
         finished {to_finish:?} after it (deadline: lease + {slack:?}); {recovered} taken \
         over; {committed} committed, {compensated} compensated, {stuck} stuck; the workers \
         lost {lost}, handed back {released}, saw {errors} store errors",
    );
    for (name, report) in &reports {
        println!("  {name}: {}", report.text.replace('\n', " | "));
    }
}
