//! Real crashes by `std::process::abort()` at each flush point: a child
//! process (this test binary, re-run in child mode) runs one durable saga
//! through a journal that wraps [`SqliteJournal`], counts its flushes and
//! aborts the process at flush number K, either right after it became
//! durable or right before it is issued (its records appended, not
//! flushed). For every K of an uncrashed run (measured in a first child),
//! so that the child dies with every number of durable flushes from 0 (before
//! the first is issued) to all of them (after the last, holding the saga's
//! end), and for several saga shapes (all steps succeed; the last fails and
//! everything compensates; a compensation fails once and succeeds on its
//! retry; a parallel group that succeeds, and one whose member fails), the
//! crashed saga is recovered at once by a child with [`Durable::recover`],
//! or first resumed by a child (through the same aborting journal, with
//! [`Saga::resume`]) that aborts again at one of its own flush points.
//!
//! A ledger file outside the store, keyed by (saga id, step) as a
//! downstream system would key it and fsynced line by line, checks the
//! books: each saga finished committed with every step applied, or
//! compensated with none left applied; no compensation ran for a step whose
//! action had not started (by the journal: its "started" record may have
//! been durable); and each action or compensation ran at most once, plus
//! once per crash that caught it in flight (its "started" record possibly
//! durable, its outcome not).
#![cfg(unix)]
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use saga_core::journal::{
    DurableError, Event, Journal, JournalError, Outcome, Record, Registry, SagaContext, SagaState,
    Start, replay,
};
use saga_core::{Retry, Saga, SagaBuilder, StepPolicy};
use saga_sqlite::{Durable, Recovered, SqliteJournal, Store};

const TEST: &str = "sagas_aborted_at_every_flush_point_finish_with_the_books_right";
/// The child's directory; its presence switches the test binary to a child.
const CHILD: &str = "SAGA_SQLITE_ABORT_CHILD";
/// What the child does: `run` (start the saga), `resume` (resume what is
/// unfinished through the aborting journal) or `recover` (`Durable::recover`).
const ROLE: &str = "SAGA_SQLITE_ABORT_ROLE";
/// The saga's shape, for `run`.
const SHAPE: &str = "SAGA_SQLITE_ABORT_SHAPE";
/// Where to abort: `before:K`, `after:K`, or absent.
const AT: &str = "SAGA_SQLITE_ABORT_AT";
const DEFINITION: &str = "abort-points";
/// Where the resuming child aborts, in turn.
const SECOND: [Point; 6] = [
    Point::After(1),
    Point::Before(1),
    Point::Before(2),
    Point::After(2),
    Point::Before(3),
    Point::After(3),
];
/// What an aborted child's status says.
const SIGABRT: i32 = 6;

/// The saga shapes: what each does, and how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Four steps, all succeed.
    Commit,
    /// Four steps, the last refuses: everything compensates.
    FailLast,
    /// As `FailLast`, and step 1's compensation fails once, then succeeds
    /// on its retry.
    UndoRetry,
    /// A step, a parallel group of three, a step: all succeed.
    Group,
    /// A step, then a parallel group of three whose second member refuses.
    GroupFail,
}

const SHAPES: [Shape; 5] = [
    Shape::Commit,
    Shape::FailLast,
    Shape::UndoRetry,
    Shape::Group,
    Shape::GroupFail,
];

impl Shape {
    fn code(self) -> u64 {
        SHAPES.iter().position(|shape| *shape == self).unwrap() as u64
    }

    fn steps(self) -> usize {
        match self {
            Shape::Commit | Shape::FailLast | Shape::UndoRetry => 4,
            Shape::Group => 5,
            Shape::GroupFail => 4,
        }
    }

    /// The step whose action refuses, if any.
    fn refusing(self) -> Option<usize> {
        match self {
            Shape::Commit | Shape::Group => None,
            Shape::FailLast | Shape::UndoRetry => Some(3),
            Shape::GroupFail => Some(2),
        }
    }

    fn outcome(self) -> Outcome {
        match self.refusing() {
            None => Outcome::Committed,
            Some(_) => Outcome::Compensated,
        }
    }

    /// Whether its flushes are the same in every run: a parallel group's
    /// members may share a flush or not, as the writer thread is quick.
    fn deterministic(self) -> bool {
        !matches!(self, Shape::Group | Shape::GroupFail)
    }
}

/// Appends one line to the ledger, durably, in one `write` (O_APPEND).
fn ledger(path: &Path, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
    file.sync_data().unwrap();
}

type Attempt = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A step's action: writes `apply KEY` (or `refuse KEY`, and fails).
fn action(path: &Path, key: String, refuse: bool) -> impl FnMut() -> Attempt + Send + 'static {
    let path = path.to_path_buf();
    move || {
        let (path, key) = (path.clone(), key.clone());
        Box::pin(async move {
            if refuse {
                ledger(&path, &format!("refuse {key}"));
                return Err(format!("{key} refused"));
            }
            ledger(&path, &format!("apply {key}"));
            Ok(())
        })
    }
}

/// A step's compensation: writes `undo KEY`; when `flaky`, the first call
/// ever (as the ledger tells) writes `undo-fail KEY` and fails instead.
fn compensation(path: &Path, key: String, flaky: bool) -> impl FnMut() -> Attempt + Send + 'static {
    let path = path.to_path_buf();
    move || {
        let (path, key) = (path.clone(), key.clone());
        Box::pin(async move {
            let failed = format!("undo-fail {key}");
            if flaky {
                let lines = std::fs::read_to_string(&path).unwrap_or_default();
                if !lines.lines().any(|line| line == failed) {
                    ledger(&path, &failed);
                    return Err(format!("{key}: the refund service is down"));
                }
            }
            ledger(&path, &format!("undo {key}"));
            Ok(())
        })
    }
}

fn policy(refuse: bool) -> StepPolicy {
    // A succeeding action cut short by a crash runs again: more attempts
    // than there are crashes in a case. A refusing one is not retried, so
    // a crash that caught it in flight has it compensated unrun.
    StepPolicy::new().retry(Retry::attempts(if refuse { 1 } else { 3 }))
}

fn definition(path: PathBuf) -> Registry<String> {
    let mut registry = Registry::new();
    registry.register(
        DEFINITION,
        1,
        move |code: &u64, context: &SagaContext| -> Saga<String> {
            let shape = SHAPES[*code as usize];
            let step = |index: usize| {
                let refuse = shape.refusing() == Some(index);
                let flaky = shape == Shape::UndoRetry && index == 1;
                (
                    action(&path, context.key(index), refuse),
                    compensation(&path, context.key(index), flaky),
                    policy(refuse),
                )
            };
            // A crashed attempt counts against its retry policy: the flaky
            // compensation may be caught by both crashes of a case, then
            // fail once, and still have an attempt left.
            let mut builder = SagaBuilder::new().compensation_retry(Retry::attempts(4));
            match shape {
                Shape::Commit | Shape::FailLast | Shape::UndoRetry => {
                    for index in 0..shape.steps() {
                        let (act, undo, policy) = step(index);
                        builder = builder.add_step_with(act, undo, policy);
                    }
                }
                Shape::Group | Shape::GroupFail => {
                    let (act, undo, policy) = step(0);
                    builder = builder.add_step_with(act, undo, policy);
                    builder = builder.parallel(|mut group| {
                        for index in 1..4 {
                            let (act, undo, policy) = step(index);
                            group = group.add_step_with(act, undo, policy);
                        }
                        group
                    });
                    if shape == Shape::Group {
                        let (act, undo, policy) = step(4);
                        builder = builder.add_step_with(act, undo, policy);
                    }
                }
            }
            builder.build()
        },
    );
    registry
}

/// Where a child aborts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// Right before flush K (from 1) is issued: its records are appended,
    /// not flushed, and flushes 1..K are durable.
    Before(u32),
    /// Right after flush K became durable.
    After(u32),
}

impl Point {
    fn parse(text: &str) -> Point {
        let (when, k) = text.split_once(':').unwrap();
        let k = k.parse().unwrap();
        match when {
            "before" => Point::Before(k),
            "after" => Point::After(k),
            _ => panic!("{text:?}"),
        }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Point::Before(k) => write!(f, "before:{k}"),
            Point::After(k) => write!(f, "after:{k}"),
        }
    }
}

/// A [`SqliteJournal`] that counts its flushes and aborts the process at
/// one of them. Before aborting, it writes to the ledger which steps'
/// actions and compensations the crash caught in flight.
struct Aborting {
    inner: SqliteJournal,
    at: Option<Point>,
    ledger: PathBuf,
    /// The saga's records: those the store held when the journal was taken,
    /// then those appended to it.
    records: Vec<Record>,
    /// How many of `records` are durable (a flush returned `Ready(Ok)`).
    durable: usize,
    /// How many of `records` were sent with a flush (durable or not).
    issued: usize,
    /// How many flushes were issued.
    flushes: u32,
}

impl Aborting {
    fn new(inner: SqliteJournal, held: Vec<Record>, at: Option<Point>, ledger: PathBuf) -> Self {
        let durable = held.len();
        Aborting {
            inner,
            at,
            ledger,
            records: held,
            durable,
            issued: durable,
            flushes: 0,
        }
    }

    /// Writes what the crash catches in flight, then aborts.
    fn abort(&self) -> ! {
        // An attempt is in flight when its "started" record may be durable
        // (it was sent) and its outcome is not known to be: the recovery
        // may run it again, or compensate it.
        let mut actions = BTreeMap::new();
        let mut compensations = BTreeMap::new();
        for (index, record) in self.records[..self.issued].iter().enumerate() {
            let known = index < self.durable;
            match record.event {
                Event::ActionStarted { step, .. } => {
                    actions.insert(step, true);
                }
                Event::ActionSucceeded { step, .. } | Event::ActionFailed { step, .. } if known => {
                    actions.insert(step, false);
                }
                Event::CompensationStarted { step, .. } => {
                    compensations.insert(step, true);
                }
                Event::CompensationSucceeded { step } | Event::CompensationFailed { step, .. }
                    if known =>
                {
                    compensations.insert(step, false);
                }
                _ => {}
            }
        }
        let context = SagaContext::new(self.inner.id());
        let mut line = String::from("crash");
        for (prefix, steps) in [("a", actions), ("c", compensations)] {
            for (step, _) in steps.into_iter().filter(|(_, open)| *open) {
                line.push_str(&format!(" {prefix}:{}", context.key(step as usize)));
            }
        }
        ledger(&self.ledger, &line);
        std::process::abort()
    }
}

impl Journal for Aborting {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.inner.append(record)?;
        self.records.push(record.clone());
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        if self.records.len() > self.issued {
            // This call issues a new flush.
            let flush = self.flushes + 1;
            if self.at == Some(Point::Before(flush)) {
                self.abort();
            }
            self.flushes = flush;
            self.issued = self.records.len();
        }
        let polled = self.inner.poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            self.durable = self.issued;
            if let Some(Point::After(k)) = self.at
                && self.flushes >= k
            {
                self.abort();
            }
        }
        polled
    }
}

fn block_on_run(run: impl Future<Output = Result<(), DurableError<String>>>) {
    match smol::block_on(run) {
        Ok(()) | Err(DurableError::Saga(_)) => {}
        Err(error) => panic!("the journal failed: {error}"),
    }
}

/// The child: runs as `ROLE` says, in `dir`.
fn child(dir: &Path) {
    let role = std::env::var(ROLE).unwrap();
    let at = std::env::var(AT).ok().map(|text| Point::parse(&text));
    let ledger_path = dir.join("ledger");
    let registry = definition(ledger_path.clone());
    let store = Store::open(dir.join("sagas.db")).unwrap();
    match role.as_str() {
        "run" => {
            let code: u64 = std::env::var(SHAPE).unwrap().parse().unwrap();
            let id = store.new_id();
            let parameters = registry.encode_parameters(&code);
            let mut saga = registry
                .build(DEFINITION, 1, &parameters, &SagaContext::new(id))
                .unwrap();
            let mut journal = Aborting::new(store.journal(id).unwrap(), vec![], at, ledger_path);
            let run = saga
                .run_journaled(&mut journal, Start::new(DEFINITION, 1, parameters))
                .unwrap();
            block_on_run(run);
            std::fs::write(dir.join("flushes"), journal.flushes.to_string()).unwrap();
        }
        "resume" => {
            for id in store.unfinished().unwrap() {
                let records = store.records(id).unwrap();
                let history = replay(&records).unwrap();
                let mut saga = registry.rebuild(&history, &SagaContext::new(id)).unwrap();
                let mut journal =
                    Aborting::new(store.journal(id).unwrap(), records, at, ledger_path.clone());
                block_on_run(saga.resume(&mut journal, &history).unwrap());
            }
        }
        "recover" => {
            let durable = Durable::new(store, registry);
            for (id, recovered) in smol::block_on(durable.recover()).unwrap() {
                match recovered {
                    Recovered::Ran(Ok(()) | Err(DurableError::Saga(_))) => {}
                    other => panic!("{id}: {other:?}"),
                }
            }
        }
        other => panic!("unknown role {other:?}"),
    }
}

/// Runs a child in `dir`; its status and output.
fn spawn(dir: &Path, role: &str, shape: Shape, at: Option<Point>) -> Output {
    // Through `sh`, for `ulimit -c 0`: an abort dumps no core.
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -c 0; exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture"])
        .env(CHILD, dir)
        .env(ROLE, role)
        .env(SHAPE, shape.code().to_string())
        .env_remove(AT)
        .stdin(Stdio::null());
    if let Some(at) = at {
        command.env(AT, at.to_string());
    }
    command.output().unwrap()
}

fn aborted(status: ExitStatus) -> bool {
    status.signal() == Some(SIGABRT)
}

/// Panics, with the child's output, unless it aborted (when `may_abort`)
/// or succeeded (when `may_finish`). Whether it aborted.
fn expect(output: &Output, what: &str, may_abort: bool, may_finish: bool) -> bool {
    let ok = (may_abort && aborted(output.status)) || (may_finish && output.status.success());
    assert!(
        ok,
        "{what}: the child ended {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    aborted(output.status)
}

#[derive(Default)]
struct Count {
    allowed: u32,
    ran: u32,
}

/// Checks the store and the ledger of one case: `crashes` children aborted.
fn check(dir: &Path, shape: Shape, crashes: usize, what: &str) {
    let store = Store::open(dir.join("sagas.db")).unwrap();
    assert!(store.unfinished().unwrap().is_empty(), "{what}");
    let sagas = store.list().unwrap();
    let lines = std::fs::read_to_string(dir.join("ledger")).unwrap_or_default();
    let lines: Vec<&str> = lines.lines().collect();

    let crash_lines = lines
        .iter()
        .filter(|line| line.starts_with("crash"))
        .count();
    assert_eq!(crash_lines, crashes, "{what}: a crash line per abort");
    if sagas.is_empty() {
        // Aborted before its `Created` record was durable: nothing ran.
        assert_eq!(crash_lines, lines.len(), "{what}: {lines:?}");
        return;
    }
    assert_eq!(sagas.len(), 1, "{what}");
    let saga = &sagas[0];

    let mut actions: BTreeMap<&str, Count> = BTreeMap::new();
    let mut compensations: BTreeMap<&str, Count> = BTreeMap::new();
    // Steps whose action started: it ran, or a crash caught its "started"
    // record possibly durable.
    let mut started = BTreeSet::new();
    let mut applied = BTreeSet::new();
    let mut undone = 0;
    for line in &lines {
        let mut words = line.split(' ');
        let (word, key) = (words.next().unwrap(), words.next());
        match (word, key) {
            ("crash", _) => {
                for caught in line.split(' ').skip(1) {
                    match caught.split_once(':') {
                        Some(("a", key)) => {
                            actions.entry(key).or_default().allowed += 1;
                            started.insert(key);
                        }
                        Some(("c", key)) => compensations.entry(key).or_default().allowed += 1,
                        _ => panic!("{what}: a torn ledger line {line:?}"),
                    }
                }
            }
            ("apply" | "refuse", Some(key)) => {
                let count = actions.entry(key).or_default();
                count.ran += 1;
                assert!(
                    count.ran <= 1 + count.allowed,
                    "{what}: the action of {key} ran again with no crash in between: {lines:#?}"
                );
                started.insert(key);
                if word == "apply" {
                    applied.insert(key);
                }
            }
            ("undo" | "undo-fail", Some(key)) => {
                assert!(
                    started.contains(key),
                    "{what}: {key} compensated, its action never started: {lines:#?}"
                );
                if word == "undo" {
                    let count = compensations.entry(key).or_default();
                    count.ran += 1;
                    assert!(
                        count.ran <= 1 + count.allowed,
                        "{what}: {key} compensated again with no crash in between: {lines:#?}"
                    );
                    applied.remove(key);
                    undone += 1;
                }
            }
            _ => panic!("{what}: a torn ledger line {line:?}"),
        }
    }

    let keys: Vec<String> = (0..shape.steps())
        .map(|step| format!("{}-{step}", saga.id))
        .collect();
    assert_eq!(
        saga.state,
        Ok(SagaState::Finished(shape.outcome())),
        "{what}: {lines:#?}"
    );
    match shape.outcome() {
        Outcome::Committed => {
            assert!(
                keys.iter().all(|key| applied.contains(key.as_str())),
                "{what}: committed with a step not applied: {lines:#?}"
            );
            assert_eq!(undone, 0, "{what}: a committed saga compensated");
        }
        _ => assert!(
            applied.is_empty(),
            "{what}: compensated with {applied:?} left applied: {lines:#?}"
        ),
    }
    for key in applied.iter().chain(&started) {
        assert!(keys.iter().any(|k| k == key), "{what}: unknown key {key}");
    }
    if shape == Shape::UndoRetry {
        let flaky = format!("undo-fail {}", keys[1]);
        assert_eq!(
            lines.iter().filter(|line| **line == flaky).count(),
            1,
            "{what}: the flaky compensation failed once: {lines:#?}"
        );
    }
}

/// One case: the saga of `shape`, aborted at `first`, resumed by a child
/// that may abort at `second`, then recovered. Which of the first two
/// children aborted.
fn case(shape: Shape, first: Point, second: Option<Point>) -> (bool, bool) {
    let what = format!("{shape:?}, abort {first}, then {second:?}");
    let dir = tempfile::tempdir().unwrap();
    let run = spawn(dir.path(), "run", shape, Some(first));
    // A parallel group's flushes vary: this run may have had fewer.
    let first_aborted = expect(&run, &what, true, !shape.deterministic());
    let second_aborted = second.is_some_and(|second| {
        // Nothing may be left to resume, or fewer flushes than `second`.
        let resume = spawn(dir.path(), "resume", shape, Some(second));
        expect(&resume, &what, true, true)
    });
    let recover = spawn(dir.path(), "recover", shape, None);
    expect(&recover, &what, false, true);
    let crashes = usize::from(first_aborted) + usize::from(second_aborted);
    check(dir.path(), shape, crashes, &what);
    (first_aborted, second_aborted)
}

#[test]
fn sagas_aborted_at_every_flush_point_finish_with_the_books_right() {
    if let Ok(dir) = std::env::var(CHILD) {
        return child(Path::new(&dir));
    }
    let begun = Instant::now();
    // An uncrashed run of each shape: its flushes, and its books.
    let mut cases = Vec::new();
    for shape in SHAPES {
        let dir = tempfile::tempdir().unwrap();
        let run = spawn(dir.path(), "run", shape, None);
        expect(&run, &format!("{shape:?} uncrashed"), false, true);
        check(dir.path(), shape, 0, &format!("{shape:?} uncrashed"));
        let flushes: u32 = std::fs::read_to_string(dir.path().join("flushes"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            flushes > shape.steps() as u32,
            "{shape:?}: {flushes} flushes"
        );
        println!("{shape:?}: {flushes} flushes uncrashed");
        for k in 1..=flushes {
            for first in [Point::Before(k), Point::After(k)] {
                // Recovered at once, and resumed by a child that aborts too,
                // at a point that varies from case to case.
                let second = SECOND[cases.len() / 2 % SECOND.len()];
                cases.push((shape, first, None));
                cases.push((shape, first, Some(second)));
            }
        }
    }

    // Two workers: the children are cheap, mostly waiting on fsync.
    let next = AtomicUsize::new(0);
    let crashes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(&(shape, first, second)) =
                    cases.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    let (first, second) = case(shape, first, second);
                    crashes.lock().unwrap().push((shape, first, second));
                }
            });
        }
    });
    let crashes = crashes.into_inner().unwrap();
    assert_eq!(crashes.len(), cases.len());
    let first = crashes
        .iter()
        .filter(|(shape, aborted, _)| *aborted && !shape.deterministic());
    let grouped = cases.iter().filter(|(shape, ..)| !shape.deterministic());
    let (first, grouped) = (first.count(), grouped.count());
    // Each run of a deterministic shape aborted (`case` checks it); most
    // runs of a parallel group did too, or the group is hardly tested.
    assert!(
        first * 4 >= grouped * 3,
        "{first} of {grouped} group runs aborted"
    );
    let second = crashes.iter().filter(|(_, _, aborted)| *aborted).count();
    assert!(
        second * 2 >= cases.len() / 2,
        "{second} resuming children aborted"
    );
    println!(
        "{} cases ({first} of {grouped} group runs reached their abort point), \
         {second} resuming children aborted too; {:?}",
        cases.len(),
        begun.elapsed()
    );
}
