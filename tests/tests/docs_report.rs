//! The failure report, tested from the documentation alone: the README and
//! the rustdoc of `saga-core` (the table "Where and why the saga stopped" on
//! `SagaError`, its documented `Display` format, `StopReason`, `Handling`,
//! `StepFailure`, the `Observer` events, aborts, deadlines, timeouts,
//! retries, classifiers, compensation modes, parallel groups and panics under
//! `rt::CatchPanics`).
//!
//! Time is a manual clock: the saga's `Sleeper` and the steps' own work both
//! sleep on it, and the driver advances it to the next timer only when
//! nothing else can make progress, so every run is deterministic.
//!
//! Written without reading the engine: the four mismatches it found (no
//! `action_failed` when an abort or the deadline ends a retry wait, an
//! abort during compensation, and the attempts of other failed group
//! members in `Display`) were fixed in the code or the docs.

extern crate alloc;

use alloc::sync::Arc;
use alloc::task::Wake;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::Mutex;

use saga_core::rt::CatchPanics;
use saga_core::{
    AbortHandle, Aborted, CompensationMode, FnStep, Handling, InFlight, Observer, Panicked,
    ParallelGroup, Recovery, Retry, SagaBuilder, SagaError, StepFailure, StepPolicy, StepRef,
    StopReason, TimedOut,
};

// ---------------------------------------------------------------------------
// The error type
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum E {
    Op(&'static str),
    TimedOut,
    Aborted,
    Panicked(String),
}

impl fmt::Display for E {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            E::Op(message) => f.write_str(message),
            E::TimedOut => f.write_str("timed out"),
            E::Aborted => f.write_str("aborted"),
            E::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

impl From<TimedOut> for E {
    fn from(_: TimedOut) -> Self {
        E::TimedOut
    }
}

impl From<Aborted> for E {
    fn from(_: Aborted) -> Self {
        E::Aborted
    }
}

impl From<Panicked> for E {
    fn from(panic: Panicked) -> Self {
        E::Panicked(panic.message().to_owned())
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------
// A manual clock
// ---------------------------------------------------------------------------

#[derive(Default)]
struct ClockState {
    now: Duration,
    next_id: u64,
    timers: Vec<(u64, Duration, Option<Waker>)>,
}

#[derive(Clone, Default)]
struct Clock(Arc<Mutex<ClockState>>);

impl Clock {
    fn now(&self) -> Duration {
        self.0.lock().unwrap().now
    }

    /// A timer that completes once the clock reads `now + duration`.
    fn sleep(&self, duration: Duration) -> Sleep {
        let mut state = self.0.lock().unwrap();
        let id = state.next_id;
        state.next_id += 1;
        let deadline = state.now + duration;
        state.timers.push((id, deadline, None));
        Sleep {
            clock: self.clone(),
            id,
            deadline,
        }
    }

    /// The documented `Sleeper`: any `Fn(Duration) -> impl Future`.
    fn sleeper(&self) -> impl Fn(Duration) -> Sleep + Send + Sync + 'static {
        let clock = self.clone();
        move |duration| clock.sleep(duration)
    }

    fn advance_to(&self, to: Duration) {
        let wakers: Vec<Waker> = {
            let mut state = self.0.lock().unwrap();
            if to > state.now {
                state.now = to;
            }
            let now = state.now;
            state
                .timers
                .iter_mut()
                .filter(|(_, deadline, _)| *deadline <= now)
                .filter_map(|(_, _, waker)| waker.take())
                .collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    fn advance(&self, by: Duration) {
        let to = self.now() + by;
        self.advance_to(to);
    }

    /// Moves the clock to the earliest pending timer; `false` if none.
    fn advance_to_next(&self) -> bool {
        let next = {
            let state = self.0.lock().unwrap();
            state
                .timers
                .iter()
                .map(|(_, deadline, _)| *deadline)
                .filter(|deadline| *deadline > state.now)
                .min()
        };
        match next {
            Some(to) => {
                self.advance_to(to);
                true
            }
            None => false,
        }
    }
}

struct Sleep {
    clock: Clock,
    id: u64,
    deadline: Duration,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.0.lock().unwrap();
        if state.now >= self.deadline {
            return Poll::Ready(());
        }
        let id = self.id;
        if let Some(timer) = state.timers.iter_mut().find(|timer| timer.0 == id) {
            timer.2 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Ok(mut state) = self.clock.0.lock() {
            state.timers.retain(|timer| timer.0 != self.id);
        }
    }
}

// ---------------------------------------------------------------------------
// A driver: polls while woken, advances the clock only when stalled
// ---------------------------------------------------------------------------

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const LIMIT: usize = 100_000;

struct Poller<F: Future> {
    future: Pin<Box<F>>,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<F: Future> Poller<F> {
    fn new(future: F) -> Self {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        Poller {
            future: Box::pin(future),
            flag,
            waker,
        }
    }

    fn poll(&mut self) -> Poll<F::Output> {
        self.flag.0.store(false, Ordering::SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        self.future.as_mut().poll(&mut cx)
    }

    /// Polls at least once, then again while something woke the run.
    fn until_stalled(&mut self) -> Option<F::Output> {
        for _ in 0..LIMIT {
            match self.poll() {
                Poll::Ready(output) => return Some(output),
                Poll::Pending if self.flag.0.load(Ordering::SeqCst) => {}
                Poll::Pending => return None,
            }
        }
        panic!("the run keeps waking itself without finishing");
    }

    fn finish(&mut self, clock: &Clock) -> F::Output {
        for _ in 0..LIMIT {
            if let Some(output) = self.until_stalled() {
                return output;
            }
            assert!(
                clock.advance_to_next(),
                "the run is pending, nothing woke it and no timer is pending (lost wake-up)"
            );
        }
        panic!("the run never finished");
    }
}

fn drive<F: Future>(clock: &Clock, future: F) -> F::Output {
    Poller::new(future).finish(clock)
}

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

type Fut = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

#[derive(Clone, Copy, Debug)]
enum Out {
    Ok,
    Err(&'static str),
    Panic(&'static str),
}

/// An action or compensation that, on its n-th call, waits `plan[n].0`
/// seconds on the clock and then does `plan[n].1` (the last entry repeats).
fn plan(clock: &Clock, plan: &[(u64, Out)]) -> impl FnMut() -> Fut + Send + use<> {
    let clock = clock.clone();
    let plan = plan.to_vec();
    let mut calls = 0;
    move || -> Fut {
        let (wait, out) = plan[calls.min(plan.len() - 1)];
        calls += 1;
        let clock = clock.clone();
        Box::pin(async move {
            if wait > 0 {
                clock.sleep(secs(wait)).await;
            }
            match out {
                Out::Ok => Ok(()),
                Out::Err(message) => Err(E::Op(message)),
                Out::Panic(message) => panic!("{message}"),
            }
        })
    }
}

fn done() -> impl FnMut() -> Fut + Send + 'static {
    || -> Fut { Box::pin(async { Ok(()) }) }
}

fn fails(message: &'static str) -> impl FnMut() -> Fut + Send + 'static {
    move || -> Fut { Box::pin(async move { Err(E::Op(message)) }) }
}

fn after(clock: &Clock, wait: u64, out: Out) -> impl FnMut() -> Fut + Send + use<> {
    plan(clock, &[(wait, out)])
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Wraps a closure so that `entry` is logged when its future completes.
fn logged<F: FnMut() -> Fut + Send + 'static>(
    log: &Log,
    entry: &'static str,
    mut inner: F,
) -> impl FnMut() -> Fut + Send + use<F> {
    let log = log.clone();
    move || -> Fut {
        let future = inner();
        let log = log.clone();
        Box::pin(async move {
            let result = future.await;
            log.0.lock().unwrap().push(entry.to_owned());
            result
        })
    }
}

// ---------------------------------------------------------------------------
// An observer that records every event
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Rec {
    events: Mutex<Vec<String>>,
    finished: Mutex<Vec<Result<(), SagaError<E>>>>,
    panic_on: Option<&'static str>,
}

impl Rec {
    fn new() -> Arc<Self> {
        Arc::new(Rec::default())
    }

    /// An observer that panics when told of an event starting with `prefix`.
    fn panicking_on(prefix: &'static str) -> Arc<Self> {
        Arc::new(Rec {
            panic_on: Some(prefix),
            ..Rec::default()
        })
    }

    fn push(&self, event: String) {
        let hit = self
            .panic_on
            .is_some_and(|prefix| event.starts_with(prefix));
        self.events.lock().unwrap().push(event);
        if hit {
            panic!("observer bug");
        }
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// The events whose text starts with `prefix`.
    fn kinds(&self, prefix: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|event| event.starts_with(prefix))
            .collect()
    }

    fn has(&self, event: &str) -> bool {
        self.events().iter().any(|e| e == event)
    }

    /// The observer received exactly the report the run returned.
    fn assert_finished_with(&self, result: &Result<(), SagaError<E>>) {
        let finished = self.finished.lock().unwrap();
        assert_eq!(finished.len(), 1, "saga_finished is called once");
        assert_eq!(
            &finished[0], result,
            "saga_finished receives the same report"
        );
    }
}

fn at(step: StepRef<'_>) -> String {
    match step.name {
        Some(name) => format!("{}({name})", step.index),
        None => step.index.to_string(),
    }
}

impl Observer<E> for Rec {
    fn saga_started(&self, steps: usize) {
        self.push(format!("saga_started {steps}"));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<E>>) {
        self.finished
            .lock()
            .unwrap()
            .push(result.map_err(Clone::clone));
        let outcome = if result.is_ok() { "ok" } else { "err" };
        self.push(format!("saga_finished {outcome}"));
    }
    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("action_started {} {attempt}", at(step)));
    }
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("action_succeeded {} {attempt}", at(step)));
    }
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &E) {
        self.push(format!("action_failed {} {attempt} {error}", at(step)));
    }
    fn action_cut_short(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("action_cut_short {} {attempt}", at(step)));
    }
    fn action_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        self.push(format!(
            "action_retried {} {next_attempt} {delay:?}",
            at(step)
        ));
    }
    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("compensation_started {} {attempt}", at(step)));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("compensation_succeeded {} {attempt}", at(step)));
    }
    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &E) {
        self.push(format!(
            "compensation_failed {} {attempt} {error}",
            at(step)
        ));
    }
    fn compensation_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        self.push(format!(
            "compensation_retried {} {next_attempt} {delay:?}",
            at(step)
        ));
    }
    fn aborted(&self, step: StepRef<'_>) {
        self.push(format!("aborted {}", at(step)));
    }
    fn deadline_passed(&self, step: StepRef<'_>) {
        self.push(format!("deadline_passed {}", at(step)));
    }
}

/// Asserts that `expected` occur in `events` in this order (others may be
/// interleaved).
fn assert_in_order(events: &[String], expected: &[&str]) {
    let mut rest = events.iter();
    for wanted in expected {
        assert!(
            rest.any(|event| event == wanted),
            "expected {wanted:?} (in order {expected:?}) in {events:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The report, as one comparable value
// ---------------------------------------------------------------------------

/// A `StepFailure`: step, name, error, attempts, timed out.
type Fail = (usize, Option<String>, E, u32, bool);

fn failure(failure: &StepFailure<E>) -> Fail {
    (
        failure.step(),
        failure.name().map(str::to_owned),
        failure.error().clone(),
        failure.attempts(),
        failure.timed_out(),
    )
}

#[derive(Debug, PartialEq)]
struct Report {
    reason: StopReason,
    failed_step: usize,
    name: Option<String>,
    error: E,
    attempts: u32,
    handling: Handling,
    timed_out: bool,
    aborted: bool,
    compensated: usize,
    uncompensated: Vec<usize>,
    fully: bool,
    concurrent: Vec<Fail>,
    comp_errors: Vec<Fail>,
    display: String,
}

fn report(error: &SagaError<E>) -> Report {
    let uncompensated: Vec<usize> = error.uncompensated_steps().collect();
    assert_eq!(error.uncompensated_count(), uncompensated.len());
    let display = error.to_string();
    assert!(!display.contains('\n'), "Display is one line: {display:?}");
    Report {
        reason: error.reason(),
        failed_step: error.failed_step(),
        name: error.failed_step_name().map(str::to_owned),
        error: error.error().clone(),
        attempts: error.attempts(),
        handling: error.handling(),
        timed_out: error.timed_out(),
        aborted: error.aborted(),
        compensated: error.compensated_count(),
        uncompensated,
        fully: error.is_fully_compensated(),
        concurrent: error.concurrent_failures().iter().map(failure).collect(),
        comp_errors: error.compensation_errors().iter().map(failure).collect(),
        display: error.to_string(),
    }
}

/// A report with the defaults of a compensated run with nothing left applied.
fn base(reason: StopReason, failed_step: usize, error: E, attempts: u32, display: &str) -> Report {
    Report {
        reason,
        failed_step,
        name: None,
        error,
        attempts,
        handling: Handling::Compensated,
        timed_out: false,
        aborted: false,
        compensated: 0,
        uncompensated: Vec::new(),
        fully: true,
        concurrent: Vec::new(),
        comp_errors: Vec::new(),
        display: display.to_owned(),
    }
}

fn ev(events: &[&str]) -> Vec<String> {
    events.iter().map(|event| (*event).to_owned()).collect()
}

// ===========================================================================
// Row: an action returned `Err`
// ===========================================================================

#[test]
fn row_failed_after_retries_unnamed() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step_with(
            fails("boom"),
            done(),
            StepPolicy::new().retry(Retry::attempts(3)),
        )
        .add_step(done(), done())
        .observer(rec.clone())
        .build();
    let result = smol::block_on(saga.run());
    let error = result.as_ref().unwrap_err();
    assert_eq!(
        report(error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                3,
                "step 1 failed: boom (after 3 attempts); fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 3",
            "action_started 0 1",
            "action_succeeded 0 1",
            "action_started 1 1",
            "action_failed 1 1 boom",
            "action_retried 1 2 0ns",
            "action_started 1 2",
            "action_failed 1 2 boom",
            "action_retried 1 3 0ns",
            "action_started 1 3",
            "action_failed 1 3 boom",
            "compensation_started 1 1",
            "compensation_succeeded 1 1",
            "compensation_started 0 1",
            "compensation_succeeded 0 1",
            "saga_finished err",
        ])
    );
    rec.assert_finished_with(&result);
}

#[test]
fn row_failed_named_step_single_attempt() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .step(FnStep::new(done(), done()).named("reserve"))
        .step(FnStep::new(fails("sold out"), done()).named("charge"))
        .observer(rec.clone())
        .build();
    assert_eq!(
        saga.step_names().collect::<Vec<_>>(),
        [Some("reserve"), Some("charge")]
    );
    let result = smol::block_on(saga.run());
    let error = result.as_ref().unwrap_err();
    assert_eq!(
        report(error),
        Report {
            name: Some("charge".into()),
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("sold out"),
                1,
                "step 1 (charge) failed: sold out; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 2",
            "action_started 0(reserve) 1",
            "action_succeeded 0(reserve) 1",
            "action_started 1(charge) 1",
            "action_failed 1(charge) 1 sold out",
            "compensation_started 1(charge) 1",
            "compensation_succeeded 1(charge) 1",
            "compensation_started 0(reserve) 1",
            "compensation_succeeded 0(reserve) 1",
            "saga_finished err",
        ])
    );
    rec.assert_finished_with(&result);
}

#[test]
fn retry_attempts_zero_means_one_attempt() {
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(0))
        .add_step(fails("boom"), done())
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Failed,
                0,
                E::Op("boom"),
                1,
                "step 0 failed: boom; fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn failed_action_that_does_not_compensate_itself_needs_nothing() {
    let mut saga = SagaBuilder::<E>::new()
        .step(
            FnStep::new(fails("card declined"), done())
                .named("charge card")
                .compensate_failed_action(false),
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("charge card".into()),
            ..base(
                StopReason::Failed,
                0,
                E::Op("card declined"),
                1,
                "step 0 (charge card) failed: card declined; nothing needed compensation"
            )
        }
    );
}

#[test]
fn failed_typed_step_is_not_compensated() {
    let undone = Log::default();
    let undo_log = undone.clone();
    let mut saga = SagaBuilder::<E>::new()
        .add_typed_step(
            || async { Ok::<u32, E>(7) },
            move |id: u32| {
                let log = undo_log.clone();
                async move {
                    log.0.lock().unwrap().push(format!("undo {id}"));
                    Ok(())
                }
            },
        )
        .add_typed_step(
            || async { Err::<u32, E>(E::Op("no stock")) },
            |_: u32| async { panic!("a failed typed step is not compensated") },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Failed,
                1,
                E::Op("no stock"),
                1,
                "step 1 failed: no stock; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(undone.entries(), ["undo 7"]);
}

#[test]
fn empty_saga_succeeds_and_is_observed() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new().observer(rec.clone()).build();
    let result = smol::block_on(saga.run());
    assert_eq!(result, Ok(()));
    assert_eq!(rec.events(), ev(&["saga_started 0", "saga_finished ok"]));
    rec.assert_finished_with(&result);
}

// ===========================================================================
// Classifier: Retry, Compensate, Propagate
// ===========================================================================

#[test]
fn classifier_compensate_skips_the_retries() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(5))
        .add_step(fails("declined"), done())
        .classify(|_: &E| Recovery::Compensate)
        .observer(rec.clone())
        .build();
    let result = smol::block_on(saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            compensated: 1,
            ..base(
                StopReason::Failed,
                0,
                E::Op("declined"),
                1,
                "step 0 failed: declined; fully compensated (1 step)"
            )
        }
    );
    assert!(rec.kinds("action_retried").is_empty());
    rec.assert_finished_with(&result);
}

#[test]
fn classifier_retry_then_compensate_counts_attempts() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(5))
        .add_step(
            plan(&clock, &[(0, Out::Err("busy")), (0, Out::Err("declined"))]),
            done(),
        )
        .classify(|error: &E| match error {
            E::Op("busy") => Recovery::Retry,
            _ => Recovery::Compensate,
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Failed,
                0,
                E::Op("declined"),
                2,
                "step 0 failed: declined (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn classifier_propagate_leaves_every_step_that_ran_applied() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(done(), done())
        .add_step_with(
            fails("disk"),
            done(),
            StepPolicy::new().retry(Retry::attempts(3)),
        )
        .classify(|_: &E| Recovery::Propagate)
        .observer(rec.clone())
        .build();
    let result = smol::block_on(saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            handling: Handling::Propagated,
            uncompensated: vec![0, 1, 2],
            fully: false,
            ..base(
                StopReason::Failed,
                2,
                E::Op("disk"),
                1,
                "step 2 failed: disk; propagated without compensation, 3 steps left applied"
            )
        }
    );
    assert!(rec.kinds("compensation_").is_empty());
    assert!(rec.kinds("action_retried").is_empty());
    assert_eq!(rec.kinds("action_failed"), ["action_failed 2 1 disk"]);
    rec.assert_finished_with(&result);
}

#[test]
fn classifier_propagate_on_first_step_one_step_left_applied() {
    let mut saga = SagaBuilder::<E>::new()
        .step(FnStep::new(fails("disk"), done()).named("write"))
        .classify(|_: &E| Recovery::Propagate)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("write".into()),
            handling: Handling::Propagated,
            uncompensated: vec![0],
            fully: false,
            ..base(
                StopReason::Failed,
                0,
                E::Op("disk"),
                1,
                "step 0 (write) failed: disk; propagated without compensation, 1 step left applied"
            )
        }
    );
}

#[test]
fn classifier_sees_a_timeout_and_propagates_it() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .add_step(after(&clock, 10, Out::Ok), done())
        .classify(|error: &E| match error {
            E::TimedOut => Recovery::Propagate,
            _ => Recovery::Compensate,
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            handling: Handling::Propagated,
            timed_out: true,
            uncompensated: vec![0],
            fully: false,
            ..base(
                StopReason::TimedOut,
                0,
                E::TimedOut,
                1,
                "step 0 failed: timed out; propagated without compensation, 1 step left applied"
            )
        }
    );
    assert_eq!(clock.now(), secs(5));
}

// ===========================================================================
// Row: an action's last attempt ran out of time
// ===========================================================================

#[test]
fn row_timed_out_single_attempt() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .add_step(done(), done())
        .add_step(after(&clock, 10, Out::Ok), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            timed_out: true,
            compensated: 2,
            ..base(
                StopReason::TimedOut,
                1,
                E::TimedOut,
                1,
                "step 1 failed: timed out; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 2",
            "action_started 0 1",
            "action_succeeded 0 1",
            "action_started 1 1",
            "action_failed 1 1 timed out",
            "compensation_started 1 1",
            "compensation_succeeded 1 1",
            "compensation_started 0 1",
            "compensation_succeeded 0 1",
            "saga_finished err",
        ])
    );
    assert_eq!(clock.now(), secs(5));
    rec.assert_finished_with(&result);
}

#[test]
fn row_timed_out_after_retries() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .action_retry(Retry::attempts(2))
        .add_step(after(&clock, 10, Out::Ok), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            timed_out: true,
            compensated: 1,
            ..base(
                StopReason::TimedOut,
                0,
                E::TimedOut,
                2,
                "step 0 failed: timed out (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
    assert_eq!(
        rec.kinds("action_"),
        [
            "action_started 0 1",
            "action_failed 0 1 timed out",
            "action_retried 0 2 0ns",
            "action_started 0 2",
            "action_failed 0 2 timed out",
        ]
    );
    assert_eq!(clock.now(), secs(10));
    rec.assert_finished_with(&result);
}

#[test]
fn timeout_then_plain_error_reports_failed_not_timed_out() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .action_retry(Retry::attempts(2))
        .add_step(
            plan(&clock, &[(10, Out::Ok), (0, Out::Err("boom"))]),
            done(),
        )
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Failed,
                0,
                E::Op("boom"),
                2,
                "step 0 failed: boom (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn error_then_timeout_reports_timed_out() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .action_retry(Retry::attempts(2))
        .add_step(
            plan(&clock, &[(0, Out::Err("boom")), (10, Out::Ok)]),
            done(),
        )
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            timed_out: true,
            compensated: 1,
            ..base(
                StopReason::TimedOut,
                0,
                E::TimedOut,
                2,
                "step 0 failed: timed out (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn timeout_that_never_fires_changes_nothing() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .add_step(after(&clock, 3, Out::Ok), done())
        .build();
    assert_eq!(drive(&clock, saga.run()), Ok(()));
    assert_eq!(clock.now(), secs(3));
}

#[test]
fn step_policy_timeout_overrides_the_saga_default() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(100))
        .add_step_with(
            after(&clock, 10, Out::Ok),
            done(),
            StepPolicy::new().timeout(secs(5)),
        )
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(error.reason(), StopReason::TimedOut);
    assert_eq!(clock.now(), secs(5));
}

#[test]
fn timed_out_step_that_does_not_compensate_failed_actions_is_left_applied() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .add_step(done(), done())
        .step(FnStep::new(after(&clock, 10, Out::Ok), done()).compensate_failed_action(false))
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            timed_out: true,
            compensated: 1,
            uncompensated: vec![1],
            fully: false,
            ..base(
                StopReason::TimedOut,
                1,
                E::TimedOut,
                1,
                "step 1 failed: timed out; 1 compensated, 1 step left applied"
            )
        }
    );
}

#[test]
fn exponential_backoff_waits_and_reports_each_delay() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_retry(Retry::attempts(4).exponential(secs(1), secs(3)))
        .add_step(fails("busy"), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            compensated: 1,
            ..base(
                StopReason::Failed,
                0,
                E::Op("busy"),
                4,
                "step 0 failed: busy (after 4 attempts); fully compensated (1 step)"
            )
        }
    );
    assert_eq!(
        rec.kinds("action_retried"),
        [
            "action_retried 0 2 1s",
            "action_retried 0 3 2s",
            "action_retried 0 4 3s",
        ]
    );
    assert_eq!(clock.now(), secs(6));
    rec.assert_finished_with(&result);
}

// ===========================================================================
// Compensation failures: StopOnError, ContinueOnError, retries, timeouts
// ===========================================================================

#[test]
fn stop_on_error_reports_the_failed_compensation_and_every_step_before_it() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(done(), done())
        .add_step(done(), fails("undo 2 failed"))
        .add_step(fails("boom"), done())
        .observer(rec.clone())
        .build();
    assert_eq!(saga.compensation_mode(), CompensationMode::StopOnError);
    let result = smol::block_on(saga.run());
    let error = result.as_ref().unwrap_err();
    assert_eq!(
        report(error),
        Report {
            compensated: 1,
            uncompensated: vec![0, 1, 2],
            fully: false,
            comp_errors: vec![(2, None, E::Op("undo 2 failed"), 1, false)],
            ..base(
                StopReason::Failed,
                3,
                E::Op("boom"),
                1,
                "step 3 failed: boom; compensation of step 2 failed: undo 2 failed; \
                 3 steps left uncompensated"
            )
        }
    );
    assert_eq!(
        error.compensation_errors()[0].to_string(),
        "compensation of step 2 failed: undo 2 failed"
    );
    assert_eq!(
        rec.kinds("compensation_"),
        [
            "compensation_started 3 1",
            "compensation_succeeded 3 1",
            "compensation_started 2 1",
            "compensation_failed 2 1 undo 2 failed",
        ]
    );
    rec.assert_finished_with(&result);
}

#[test]
fn continue_on_error_collects_every_compensation_error() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .step(FnStep::new(done(), fails("undo 0 failed")).named("first"))
        .add_step(done(), done())
        .add_step(done(), fails("undo 2 failed"))
        .add_step(fails("boom"), done())
        .compensation_mode(CompensationMode::ContinueOnError)
        .observer(rec.clone())
        .build();
    let result = smol::block_on(saga.run());
    let error = result.as_ref().unwrap_err();
    assert_eq!(
        report(error),
        Report {
            compensated: 2,
            uncompensated: vec![0, 2],
            fully: false,
            comp_errors: vec![
                (2, None, E::Op("undo 2 failed"), 1, false),
                (0, Some("first".into()), E::Op("undo 0 failed"), 1, false),
            ],
            ..base(
                StopReason::Failed,
                3,
                E::Op("boom"),
                1,
                "step 3 failed: boom; compensation of step 2 failed: undo 2 failed; \
                 compensation of step 0 (first) failed: undo 0 failed; 2 steps left uncompensated"
            )
        }
    );
    assert_eq!(
        error.compensation_errors()[1].to_string(),
        "compensation of step 0 (first) failed: undo 0 failed"
    );
    assert_eq!(
        rec.kinds("compensation_started"),
        [
            "compensation_started 3 1",
            "compensation_started 2 1",
            "compensation_started 1 1",
            "compensation_started 0(first) 1",
        ]
    );
    rec.assert_finished_with(&result);
}

#[test]
fn compensation_retried_then_failing_reports_its_attempts() {
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .compensation_retry(Retry::attempts(3))
        .add_step(done(), fails("refund down"))
        .add_step(fails("boom"), done())
        .observer(rec.clone())
        .build();
    let result = smol::block_on(saga.run());
    let error = result.as_ref().unwrap_err();
    assert_eq!(
        report(error),
        Report {
            compensated: 1,
            uncompensated: vec![0],
            fully: false,
            comp_errors: vec![(0, None, E::Op("refund down"), 3, false)],
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; compensation of step 0 failed: refund down (after 3 attempts); \
                 1 step left uncompensated"
            )
        }
    );
    assert_eq!(
        error.compensation_errors()[0].to_string(),
        "compensation of step 0 failed: refund down (after 3 attempts)"
    );
    assert_eq!(
        rec.kinds("compensation_"),
        [
            "compensation_started 1 1",
            "compensation_succeeded 1 1",
            "compensation_started 0 1",
            "compensation_failed 0 1 refund down",
            "compensation_retried 0 2 0ns",
            "compensation_started 0 2",
            "compensation_failed 0 2 refund down",
            "compensation_retried 0 3 0ns",
            "compensation_started 0 3",
            "compensation_failed 0 3 refund down",
        ]
    );
    rec.assert_finished_with(&result);
}

#[test]
fn compensation_timeout_is_a_timed_out_compensation_failure() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .compensation_timeout(secs(5))
        .add_step(done(), after(&clock, 100, Out::Ok))
        .add_step(fails("boom"), done())
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            uncompensated: vec![0],
            fully: false,
            comp_errors: vec![(0, None, E::TimedOut, 1, true)],
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; compensation of step 0 failed: timed out; \
                 1 step left uncompensated"
            )
        }
    );
    assert_eq!(clock.now(), secs(5));
}

#[test]
fn concurrent_mode_collects_every_compensation_error() {
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), fails("undo 0 failed"))
        .add_step(done(), fails("undo 1 failed"))
        .add_step(fails("boom"), done())
        .compensation_mode(CompensationMode::Concurrent)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    let got = report(&error);
    let mut steps: Vec<usize> = got.comp_errors.iter().map(|f| f.0).collect();
    steps.sort_unstable();
    assert_eq!(steps, [0, 1]);
    let listed: Vec<String> = error
        .compensation_errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        Report {
            compensated: 1,
            uncompensated: vec![0, 1],
            fully: false,
            comp_errors: got.comp_errors.clone(),
            ..base(
                StopReason::Failed,
                2,
                E::Op("boom"),
                1,
                &format!(
                    "step 2 failed: boom; {}; 2 steps left uncompensated",
                    listed.join("; ")
                )
            )
        }
    );
}

// ===========================================================================
// Row: an action panicked (under rt::CatchPanics)
// ===========================================================================

#[test]
fn row_panicked_action() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(after(&clock, 0, Out::Panic("bug in step 1")), done())
        .add_step(done(), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, CatchPanics::new(saga.run()));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            compensated: 2,
            ..base(
                StopReason::Panicked,
                1,
                E::Panicked("bug in step 1".into()),
                1,
                "step 1 failed: panicked: bug in step 1; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 3",
            "action_started 0 1",
            "action_succeeded 0 1",
            "action_started 1 1",
            "action_failed 1 1 panicked: bug in step 1",
            "compensation_started 1 1",
            "compensation_succeeded 1 1",
            "compensation_started 0 1",
            "compensation_succeeded 0 1",
            "saga_finished err",
        ])
    );
    rec.assert_finished_with(&result);
}

#[test]
fn panicking_action_is_retried_by_its_policy() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(2))
        .add_step(
            plan(&clock, &[(0, Out::Panic("flaky bug")), (0, Out::Ok)]),
            done(),
        )
        .observer(rec.clone())
        .build();
    let result = drive(&clock, CatchPanics::new(saga.run()));
    assert_eq!(result, Ok(()));
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 1",
            "action_started 0 1",
            "action_failed 0 1 panicked: flaky bug",
            "action_retried 0 2 0ns",
            "action_started 0 2",
            "action_succeeded 0 2",
            "saga_finished ok",
        ])
    );
}

#[test]
fn panicking_every_attempt_of_a_named_step() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(2))
        .step(FnStep::new(after(&clock, 0, Out::Panic("bug")), done()).named("pay"))
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("pay".into()),
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("bug".into()),
                2,
                "step 0 (pay) failed: panicked: bug (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn panicking_action_closure_itself_is_compensated() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(
            || -> Fut { panic!("closure bug") },
            logged(&Log::default(), "undo", done()),
        )
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Panicked,
                1,
                E::Panicked("closure bug".into()),
                1,
                "step 1 failed: panicked: closure bug; fully compensated (2 steps)"
            )
        }
    );
}

#[test]
fn panicking_classifier_fails_the_attempt_for_good() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(3))
        .add_step(fails("boom"), done())
        .classify(|_: &E| -> Recovery { panic!("classifier bug") })
        .observer(rec.clone())
        .build();
    let result = drive(&clock, CatchPanics::new(saga.run()));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("classifier bug".into()),
                1,
                "step 0 failed: panicked: classifier bug; fully compensated (1 step)"
            )
        }
    );
    assert!(
        !rec.kinds("action_failed 0 1").is_empty(),
        "{:#?}",
        rec.events()
    );
    assert!(
        rec.kinds("action_retried").is_empty(),
        "{:#?}",
        rec.events()
    );
    assert_eq!(rec.kinds("action_started"), ["action_started 0 1"]);
    rec.assert_finished_with(&result);
}

#[test]
fn panicking_jitter_fails_the_attempt_for_good() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_retry(
            Retry::attempts(3)
                .constant(secs(1))
                .jitter(|_: Duration| -> Duration { panic!("jitter bug") }),
        )
        .add_step(fails("boom"), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("jitter bug".into()),
                1,
                "step 0 failed: panicked: jitter bug; fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn panicking_sleeper_starting_a_first_action_timeout_stops_before_that_step() {
    let clock = Clock::default();
    let inner = clock.sleeper();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(move |duration: Duration| {
            if duration == secs(7) {
                panic!("sleeper bug");
            }
            inner(duration)
        })
        .action_timeout(secs(7))
        .add_step(after(&clock, 3, Out::Ok), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        base(
            StopReason::Panicked,
            0,
            E::Panicked("sleeper bug".into()),
            0,
            "stopped before step 0: panicked: sleeper bug; nothing needed compensation"
        )
    );
}

#[test]
fn panicking_sleeper_starting_a_retry_timeout_fails_that_attempt() {
    // The sleeper panics at the second attempt's timeout: the first attempt
    // ran (and failed), so the step is cut short for good and compensated.
    let clock = Clock::default();
    let inner = clock.sleeper();
    let timeouts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&timeouts);
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(move |duration: Duration| {
            if duration == secs(7) && counted.fetch_add(1, Ordering::SeqCst) == 1 {
                panic!("sleeper bug");
            }
            inner(duration)
        })
        .action_retry(Retry::attempts(3).constant(secs(1)))
        .action_timeout(secs(7))
        .add_step(fails("boom"), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("sleeper bug".into()),
                2,
                "step 0 failed: panicked: sleeper bug (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn panicking_compensation_is_a_compensation_failure() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), after(&clock, 0, Out::Panic("undo bug")))
        .add_step(fails("boom"), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            uncompensated: vec![0],
            fully: false,
            comp_errors: vec![(0, None, E::Panicked("undo bug".into()), 1, false)],
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; compensation of step 0 failed: panicked: undo bug; \
                 1 step left uncompensated"
            )
        }
    );
}

#[test]
fn panicking_compensation_is_retried_by_its_policy() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .compensation_retry(Retry::attempts(2))
        .add_step(
            done(),
            plan(&clock, &[(0, Out::Panic("undo bug")), (0, Out::Ok)]),
        )
        .add_step(fails("boom"), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; fully compensated (2 steps)"
            )
        }
    );
}

// ===========================================================================
// Row: a panic outside any step (the observer, the sleeper of the deadline)
// ===========================================================================

#[test]
fn observer_panicking_on_saga_started_stops_before_step_0() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::panicking_on("saga_started");
    let mut saga = SagaBuilder::<E>::new()
        .add_step(logged(&log, "do 0", done()), done())
        .add_step(logged(&log, "do 1", done()), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        base(
            StopReason::Panicked,
            0,
            E::Panicked("observer bug".into()),
            0,
            "stopped before step 0: panicked: observer bug; nothing needed compensation"
        )
    );
    assert_eq!(rec.events(), ev(&["saga_started 2"]));
    assert!(log.entries().is_empty());
}

#[test]
fn observer_panicking_on_a_success_stops_before_the_next_step() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::panicking_on("action_succeeded 0");
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), logged(&log, "undo 0", done()))
        .step(FnStep::new(logged(&log, "do 1", done()), done()).named("ship"))
        .add_step(logged(&log, "do 2", done()), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("ship".into()),
            compensated: 1,
            ..base(
                StopReason::Panicked,
                1,
                E::Panicked("observer bug".into()),
                0,
                "stopped before step 1 (ship): panicked: observer bug; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 3",
            "action_started 0 1",
            "action_succeeded 0 1"
        ])
    );
    assert_eq!(log.entries(), ["undo 0"]);
}

#[test]
fn observer_panicking_on_action_started_lets_the_step_in_flight_finish() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::panicking_on("action_started 1");
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), logged(&log, "undo 0", done()))
        .add_step(
            logged(&log, "do 1", after(&clock, 5, Out::Ok)),
            logged(&log, "undo 1", done()),
        )
        .add_step(logged(&log, "do 2", done()), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Panicked,
                1,
                E::Panicked("observer bug".into()),
                1,
                "step 1 failed: panicked: observer bug; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(log.entries(), ["do 1", "undo 1", "undo 0"]);
    assert_eq!(
        rec.events().last().map(String::as_str),
        Some("action_started 1 1")
    );
}

#[test]
fn observer_panicking_on_action_failed_fails_that_attempt_with_the_panic() {
    let clock = Clock::default();
    let rec = Rec::panicking_on("action_failed 1");
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(fails("boom"), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Panicked,
                1,
                E::Panicked("observer bug".into()),
                1,
                "step 1 failed: panicked: observer bug; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events().last().map(String::as_str),
        Some("action_failed 1 1 boom")
    );
}

#[test]
fn observer_panicking_while_compensating_changes_nothing() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::panicking_on("compensation_started 1");
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), logged(&log, "undo 0", done()))
        .add_step(fails("boom"), logged(&log, "undo 1", done()))
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(log.entries(), ["undo 1", "undo 0"]);
    assert_eq!(
        rec.events().last().map(String::as_str),
        Some("compensation_started 1 1")
    );
}

#[test]
fn observer_panicking_on_saga_finished_changes_nothing() {
    let clock = Clock::default();
    let rec = Rec::panicking_on("saga_finished");
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(fails("boom"), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, CatchPanics::new(saga.run()));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; fully compensated (2 steps)"
            )
        }
    );
    rec.assert_finished_with(&result);
}

#[test]
fn sleeper_panicking_for_the_deadline_stops_before_step_0() {
    let clock = Clock::default();
    let log = Log::default();
    let inner = clock.sleeper();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(move |duration: Duration| {
            if duration == secs(100) {
                panic!("sleeper bug");
            }
            inner(duration)
        })
        .saga_timeout(secs(100))
        .add_step(logged(&log, "do 0", done()), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        base(
            StopReason::Panicked,
            0,
            E::Panicked("sleeper bug".into()),
            0,
            "stopped before step 0: panicked: sleeper bug; nothing needed compensation"
        )
    );
    assert!(log.entries().is_empty());
}

// ===========================================================================
// Rows: aborts
// ===========================================================================

#[test]
fn abort_before_the_first_action() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::new();
    let handle = AbortHandle::new();
    handle.abort();
    assert!(handle.is_aborted());
    let mut saga = SagaBuilder::<E>::new()
        .step(FnStep::new(logged(&log, "do 0", done()), done()).named("book"))
        .add_step(logged(&log, "do 1", done()), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run().abortable(&handle));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            name: Some("book".into()),
            aborted: true,
            ..base(
                StopReason::Aborted,
                0,
                E::Aborted,
                0,
                "stopped before step 0 (book): aborted; nothing needed compensation"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&["saga_started 2", "aborted 0(book)", "saga_finished err"])
    );
    assert!(log.entries().is_empty());
    rec.assert_finished_with(&result);
}

#[test]
fn abort_is_permanent_for_later_runs() {
    let handle = AbortHandle::new();
    let trigger = handle.clone();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(
            move || -> Fut {
                trigger.abort();
                Box::pin(async { Ok(()) })
            },
            done(),
        )
        .add_step(done(), done())
        .build();
    let first = smol::block_on(saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&first),
        Report {
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                2,
                E::Aborted,
                0,
                "stopped before step 2: aborted; fully compensated (2 steps)"
            )
        }
    );
    let second = smol::block_on(saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&second),
        Report {
            aborted: true,
            ..base(
                StopReason::Aborted,
                0,
                E::Aborted,
                0,
                "stopped before step 0: aborted; nothing needed compensation"
            )
        }
    );
}

/// Polls `run` until it stalls (the action of the step under test is in
/// flight, waiting on the clock), then aborts it and drives it to the end.
fn abort_when_stalled<F: Future>(clock: &Clock, handle: &AbortHandle, run: F) -> F::Output {
    let mut poller = Poller::new(run);
    assert!(poller.until_stalled().is_none(), "the run is waiting");
    handle.abort();
    poller.finish(clock)
}

#[test]
fn abort_during_a_step_that_then_succeeds_stops_before_the_next() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::new();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(after(&clock, 10, Out::Ok), done())
        .step(FnStep::new(logged(&log, "do 2", done()), done()).named("ship"))
        .observer(rec.clone())
        .build();
    let result = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            name: Some("ship".into()),
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                2,
                E::Aborted,
                0,
                "stopped before step 2 (ship): aborted; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 3",
            "action_started 0 1",
            "action_succeeded 0 1",
            "action_started 1 1",
            "aborted 1",
            "action_succeeded 1 1",
            "compensation_started 1 1",
            "compensation_succeeded 1 1",
            "compensation_started 0 1",
            "compensation_succeeded 0 1",
            "saga_finished err",
        ])
    );
    assert_eq!(clock.now(), secs(10), "the action in flight was let finish");
    assert!(log.entries().is_empty());
    rec.assert_finished_with(&result);
}

#[test]
fn abort_inside_an_action_that_succeeds_stops_before_the_next() {
    let rec = Rec::new();
    let handle = AbortHandle::new();
    let trigger = handle.clone();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(
            move || -> Fut {
                trigger.abort();
                Box::pin(async { Ok(()) })
            },
            done(),
        )
        .add_step(done(), done())
        .observer(rec.clone())
        .build();
    let result = smol::block_on(saga.run().abortable(&handle));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                2,
                E::Aborted,
                0,
                "stopped before step 2: aborted; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(rec.kinds("aborted").len(), 1, "{:#?}", rec.events());
    assert!(!rec.has("action_started 2 1"));
    rec.assert_finished_with(&result);
}

#[test]
fn abort_during_a_step_that_then_fails_on_its_own() {
    let clock = Clock::default();
    let rec = Rec::new();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step_with(
            after(&clock, 10, Out::Err("boom")),
            done(),
            StepPolicy::new().retry(Retry::attempts(3)),
        )
        .add_step(done(), done())
        .observer(rec.clone())
        .build();
    let result = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom, saga aborted; fully compensated (2 steps)"
            )
        }
    );
    assert!(
        rec.kinds("action_retried").is_empty(),
        "{:#?}",
        rec.events()
    );
    assert_in_order(
        &rec.events(),
        &["action_started 1 1", "aborted 1", "action_failed 1 1 boom"],
    );
    rec.assert_finished_with(&result);
}

#[test]
fn abort_cutting_a_step_short() {
    let clock = Clock::default();
    let rec = Rec::new();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .on_abort(InFlight::CutShort)
        .add_step(done(), done())
        .add_step(after(&clock, 10, Out::Ok), done())
        .add_step(done(), done())
        .observer(rec.clone())
        .build();
    let result = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                1,
                E::Aborted,
                1,
                "step 1 cut short: aborted; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 3",
            "action_started 0 1",
            "action_succeeded 0 1",
            "action_started 1 1",
            "aborted 1",
            "action_failed 1 1 aborted",
            "compensation_started 1 1",
            "compensation_succeeded 1 1",
            "compensation_started 0 1",
            "compensation_succeeded 0 1",
            "saga_finished err",
        ])
    );
    assert_eq!(clock.now(), Duration::ZERO, "the action was not waited for");
    rec.assert_finished_with(&result);
}

#[test]
fn abort_cutting_short_a_step_that_does_not_compensate_failed_actions() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .on_abort(InFlight::CutShort)
        .add_step(done(), done())
        .step(
            FnStep::new(after(&clock, 10, Out::Ok), done())
                .named("ship")
                .compensate_failed_action(false),
        )
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("ship".into()),
            aborted: true,
            compensated: 1,
            uncompensated: vec![1],
            fully: false,
            ..base(
                StopReason::Aborted,
                1,
                E::Aborted,
                1,
                "step 1 (ship) cut short: aborted; 1 compensated, 1 step left applied"
            )
        }
    );
}

/// Step 1 fails and waits 5 s for its retry; the abort lands during the wait.
fn abort_in_a_retry_wait() -> (Result<(), SagaError<E>>, Arc<Rec>, Clock) {
    let clock = Clock::default();
    let rec = Rec::new();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .add_step(done(), done())
        .add_step_with(
            fails("busy"),
            done(),
            StepPolicy::new().retry(Retry::attempts(3).constant(secs(5))),
        )
        .observer(rec.clone())
        .build();
    let result = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle));
    (result, rec, clock)
}

#[test]
fn abort_during_a_retry_wait_ends_it() {
    let (result, rec, clock) = abort_in_a_retry_wait();
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                1,
                E::Aborted,
                1,
                "step 1 cut short: aborted; fully compensated (2 steps)"
            )
        }
    );
    assert_in_order(
        &rec.events(),
        &[
            "action_failed 1 1 busy",
            "action_retried 1 2 5s",
            "aborted 1",
        ],
    );
    assert_eq!(rec.kinds("action_started 1"), ["action_started 1 1"]);
    assert_eq!(clock.now(), Duration::ZERO);
    rec.assert_finished_with(&result);
}

#[test]
fn abort_during_a_retry_wait_observer_sees_aborted_then_action_failed() {
    let (_, rec, _) = abort_in_a_retry_wait();
    let after_abort: Vec<String> = rec
        .events()
        .into_iter()
        .skip_while(|event| event != "aborted 1")
        .filter(|event| event.starts_with("action_"))
        .collect();
    assert_eq!(after_abort.len(), 1, "{:#?}", rec.events());
    assert!(
        after_abort[0].starts_with("action_failed 1 ") && after_abort[0].ends_with(" aborted"),
        "{:#?}",
        rec.events()
    );
}

#[test]
fn abort_during_the_last_step_that_then_succeeds_is_too_late() {
    let clock = Clock::default();
    let rec = Rec::new();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .add_step(after(&clock, 10, Out::Ok), done())
        .observer(rec.clone())
        .build();
    let result = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle));
    assert_eq!(result, Ok(()));
    assert!(rec.kinds("compensation_").is_empty());
    rec.assert_finished_with(&result);
}

#[test]
fn abort_cutting_the_last_step_short_fails_the_run() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .on_abort(InFlight::CutShort)
        .add_step(done(), done())
        .add_step(after(&clock, 10, Out::Ok), done())
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                1,
                E::Aborted,
                1,
                "step 1 cut short: aborted; fully compensated (2 steps)"
            )
        }
    );
}

/// Step 1 fails at once; its compensation takes 10 s; the abort lands then.
fn abort_in_a_compensation() -> (Result<(), SagaError<E>>, Log, Clock) {
    let clock = Clock::default();
    let log = Log::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .on_abort(InFlight::CutShort)
        .add_step(done(), logged(&log, "undo 0", done()))
        .add_step(
            fails("boom"),
            logged(&log, "undo 1", after(&clock, 10, Out::Ok)),
        )
        .build();
    let result = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle));
    (result, log, clock)
}

#[test]
fn abort_during_compensation_never_interrupts_it() {
    let (result, log, clock) = abort_in_a_compensation();
    let error = result.unwrap_err();
    assert_eq!(log.entries(), ["undo 1", "undo 0"]);
    assert_eq!(clock.now(), secs(10));
    assert_eq!(
        (
            error.reason(),
            error.failed_step(),
            error.error(),
            error.compensated_count()
        ),
        (StopReason::Failed, 1, &E::Op("boom"), 2)
    );
    assert!(error.is_fully_compensated());
}

/// An abort that lands once the saga is compensating changes nothing and
/// is not reported (`SagaError::aborted`).
#[test]
fn abort_during_compensation_is_not_reported() {
    let (result, _, _) = abort_in_a_compensation();
    assert_eq!(
        report(&result.unwrap_err()),
        Report {
            aborted: false,
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; fully compensated (2 steps)"
            )
        }
    );
}

// ===========================================================================
// Rows: the saga's deadline
// ===========================================================================

#[test]
fn deadline_during_a_step_cuts_it_short() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .add_step(done(), done())
        .add_step(after(&clock, 100, Out::Ok), done())
        .add_step(done(), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            timed_out: true,
            compensated: 2,
            ..base(
                StopReason::Deadline,
                1,
                E::TimedOut,
                1,
                "step 1 cut short: timed out; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(
        rec.events(),
        ev(&[
            "saga_started 3",
            "action_started 0 1",
            "action_succeeded 0 1",
            "action_started 1 1",
            "deadline_passed 1",
            "action_failed 1 1 timed out",
            "compensation_started 1 1",
            "compensation_succeeded 1 1",
            "compensation_started 0 1",
            "compensation_succeeded 0 1",
            "saga_finished err",
        ])
    );
    assert_eq!(clock.now(), secs(10));
    rec.assert_finished_with(&result);
}

/// Step 0 fails and waits 50 s for its retry; the 10 s deadline passes.
fn deadline_in_a_retry_wait() -> (Result<(), SagaError<E>>, Arc<Rec>, Clock) {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .action_retry(Retry::attempts(3).constant(secs(50)))
        .add_step(fails("busy"), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    (result, rec, clock)
}

#[test]
fn deadline_during_a_retry_wait() {
    let (result, rec, clock) = deadline_in_a_retry_wait();
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            timed_out: true,
            compensated: 1,
            ..base(
                StopReason::Deadline,
                0,
                E::TimedOut,
                1,
                "step 0 cut short: timed out; fully compensated (1 step)"
            )
        }
    );
    assert_in_order(
        &rec.events(),
        &[
            "action_failed 0 1 busy",
            "action_retried 0 2 50s",
            "deadline_passed 0",
        ],
    );
    assert_eq!(rec.kinds("action_started"), ["action_started 0 1"]);
    assert_eq!(clock.now(), secs(10));
    rec.assert_finished_with(&result);
}

#[test]
fn deadline_during_a_retry_wait_observer_sees_deadline_passed_then_action_failed() {
    let (_, rec, _) = deadline_in_a_retry_wait();
    let after: Vec<String> = rec
        .events()
        .into_iter()
        .skip_while(|event| event != "deadline_passed 0")
        .filter(|event| event.starts_with("action_"))
        .collect();
    assert_eq!(after.len(), 1, "{:#?}", rec.events());
    assert!(
        after[0].starts_with("action_failed 0 ") && after[0].ends_with(" timed out"),
        "{:#?}",
        rec.events()
    );
}

#[test]
fn deadline_between_steps_stops_before_the_next() {
    let clock = Clock::default();
    let rec = Rec::new();
    let ticking = clock.clone();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .add_step(
            move || -> Fut {
                // The step takes 20 s of the clock's time, then succeeds.
                ticking.advance(secs(20));
                Box::pin(async { Ok(()) })
            },
            done(),
        )
        .step(FnStep::new(done(), done()).named("ship"))
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            name: Some("ship".into()),
            timed_out: true,
            compensated: 1,
            ..base(
                StopReason::Deadline,
                1,
                E::TimedOut,
                0,
                "stopped before step 1 (ship): timed out; fully compensated (1 step)"
            )
        }
    );
    assert!(rec.has("deadline_passed 1(ship)"), "{:#?}", rec.events());
    assert!(!rec.has("action_started 1(ship) 1"), "{:#?}", rec.events());
    rec.assert_finished_with(&result);
}

#[test]
fn deadline_during_the_last_step_that_succeeds_is_too_late() {
    let clock = Clock::default();
    let ticking = clock.clone();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .add_step(done(), done())
        .add_step(
            move || -> Fut {
                ticking.advance(secs(20));
                Box::pin(async { Ok(()) })
            },
            done(),
        )
        .build();
    assert_eq!(drive(&clock, saga.run()), Ok(()));
}

#[test]
fn deadline_counts_from_the_first_poll() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .add_step(after(&clock, 5, Out::Ok), done())
        .build();
    let run = saga.run();
    clock.advance(secs(50));
    assert_eq!(drive(&clock, run), Ok(()));
    assert_eq!(clock.now(), secs(55));
}

#[test]
fn deadline_does_not_bound_compensations() {
    let clock = Clock::default();
    let log = Log::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .add_step(done(), logged(&log, "undo 0", after(&clock, 100, Out::Ok)))
        .add_step(fails("boom"), done())
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(log.entries(), ["undo 0"]);
    assert_eq!(clock.now(), secs(100));
}

// ===========================================================================
// Parallel groups
// ===========================================================================

#[test]
fn group_with_several_failures_reports_the_first_and_the_others() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .parallel(|group| {
            group
                .add_step(done(), done())
                .add_step(fails("a"), done())
                .step(FnStep::new(after(&clock, 5, Out::Err("b")), done()).named("hotel"))
                .add_step(after(&clock, 10, Out::Ok), done())
        })
        .observer(rec.clone())
        .build();
    let groups: Vec<core::ops::Range<usize>> = saga.parallel_groups().collect();
    assert_eq!(groups, vec![core::ops::Range { start: 1, end: 5 }]);
    let result = drive(&clock, saga.run());
    let error = result.as_ref().unwrap_err();
    assert_eq!(
        report(error),
        Report {
            compensated: 5,
            concurrent: vec![(3, Some("hotel".into()), E::Op("b"), 1, false)],
            ..base(
                StopReason::Failed,
                2,
                E::Op("a"),
                1,
                "step 2 failed: a; step 3 (hotel) failed too: b; fully compensated (5 steps)"
            )
        }
    );
    assert_eq!(
        error.concurrent_failures()[0].to_string(),
        "step 3 (hotel) failed: b"
    );
    assert_eq!(
        rec.kinds("compensation_started"),
        [
            "compensation_started 4 1",
            "compensation_started 3(hotel) 1",
            "compensation_started 2 1",
            "compensation_started 1 1",
            "compensation_started 0 1",
        ]
    );
    assert!(rec.has("action_succeeded 4 1"), "the others finish");
    assert_eq!(clock.now(), secs(10));
    rec.assert_finished_with(&result);
}

#[test]
fn group_other_failure_with_retries_reports_its_attempts() {
    // Member 0 fails at once, is retried, and its second attempt fails at
    // 5 s; member 1 fails at 2 s, the first member failure observed.
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .step_with(
                    FnStep::new(
                        plan(&clock, &[(0, Out::Err("b1")), (5, Out::Err("b"))]),
                        done(),
                    )
                    .named("flight"),
                    StepPolicy::new().retry(Retry::attempts(2)),
                )
                .add_step(after(&clock, 2, Out::Err("a")), done())
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    let got = report(&error);
    assert_eq!(
        got.concurrent,
        [(0, Some("flight".into()), E::Op("b"), 2, false)]
    );
    assert_eq!(
        error.concurrent_failures()[0].to_string(),
        "step 0 (flight) failed: b (after 2 attempts)"
    );
    assert_eq!(
        (
            got.reason,
            got.failed_step,
            &got.error,
            got.attempts,
            got.compensated,
            got.fully
        ),
        (StopReason::Failed, 1, &E::Op("a"), 1, 2, true)
    );
    assert_eq!(clock.now(), secs(5));
}

#[test]
fn group_other_failure_display_is_step_name_failed_too_error() {
    // `step 4 (name) failed too: error`, with ` (after 2 attempts)` for a
    // member that was retried.
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .step_with(
                    FnStep::new(
                        plan(&clock, &[(0, Out::Err("b1")), (5, Out::Err("b"))]),
                        done(),
                    )
                    .named("flight"),
                    StepPolicy::new().retry(Retry::attempts(2)),
                )
                .add_step(after(&clock, 2, Out::Err("a")), done())
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "step 1 failed: a; step 0 (flight) failed too: b (after 2 attempts); fully compensated (2 steps)"
    );
}

#[test]
fn group_member_failing_after_the_group_failed_is_not_retried() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .add_step_with(
                    after(&clock, 5, Out::Err("b")),
                    done(),
                    StepPolicy::new().retry(Retry::attempts(2)),
                )
                .add_step(fails("a"), done())
        })
        .observer(rec.clone())
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(report(&error).concurrent, [(0, None, E::Op("b"), 1, false)]);
    assert_eq!(rec.kinds("action_started 0"), ["action_started 0 1"]);
}

#[test]
fn group_first_failure_after_retries_counts_attempts() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .add_step_with(
                    fails("a"),
                    done(),
                    StepPolicy::new().retry(Retry::attempts(2)),
                )
                .add_step(after(&clock, 5, Out::Ok), done())
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                0,
                E::Op("a"),
                2,
                "step 0 failed: a (after 2 attempts); fully compensated (2 steps)"
            )
        }
    );
}

#[test]
fn group_cut_short_members_are_compensated_without_an_error_of_their_own() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .add_step(after(&clock, 100, Out::Ok), done())
                    .add_step(fails("a"), done())
            },
        )
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("a"),
                1,
                "step 1 failed: a; fully compensated (2 steps)"
            )
        }
    );
    assert!(rec.has("action_cut_short 0 1"), "{:#?}", rec.events());
    assert!(
        rec.kinds("action_failed 0").is_empty(),
        "{:#?}",
        rec.events()
    );
    assert_eq!(clock.now(), Duration::ZERO);
    rec.assert_finished_with(&result);
}

#[test]
fn group_cut_short_member_that_does_not_compensate_failed_actions_is_left_applied() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .step(
                        FnStep::new(after(&clock, 100, Out::Ok), done())
                            .named("flight")
                            .compensate_failed_action(false),
                    )
                    .add_step(fails("a"), done())
            },
        )
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            uncompensated: vec![0],
            fully: false,
            ..base(
                StopReason::Failed,
                1,
                E::Op("a"),
                1,
                "step 1 failed: a; 1 compensated, 1 step left applied"
            )
        }
    );
}

#[test]
fn group_limit_one_starts_no_member_after_a_failure() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group
                .add_step(fails("a"), done())
                .add_step(done(), done())
                .add_step(done(), done())
        })
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            compensated: 1,
            ..base(
                StopReason::Failed,
                0,
                E::Op("a"),
                1,
                "step 0 failed: a; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(rec.kinds("action_started"), ["action_started 0 1"]);
    rec.assert_finished_with(&result);
}

#[test]
fn group_propagated_failure_leaves_every_member_that_ran_applied() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .parallel(|group| {
            group
                .add_step(done(), done())
                .add_step(after(&clock, 5, Out::Err("disk")), done())
        })
        .classify(|_: &E| Recovery::Propagate)
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            handling: Handling::Propagated,
            uncompensated: vec![0, 1, 2],
            fully: false,
            ..base(
                StopReason::Failed,
                2,
                E::Op("disk"),
                1,
                "step 2 failed: disk; propagated without compensation, 3 steps left applied"
            )
        }
    );
}

#[test]
fn group_concurrent_groups_mode_collects_every_compensation_error() {
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), fails("undo 0"))
        .parallel(|group| {
            group
                .add_step(done(), fails("undo 1"))
                .add_step(done(), fails("undo 2"))
                .add_step(fails("a"), done())
        })
        .compensation_mode(CompensationMode::ConcurrentGroups)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    let got = report(&error);
    let mut steps: Vec<usize> = got.comp_errors.iter().map(|f| f.0).collect();
    steps.sort_unstable();
    assert_eq!(steps, [0, 1, 2]);
    assert_eq!(got.comp_errors.last().map(|f| f.0), Some(0), "group first");
    let listed: Vec<String> = error
        .compensation_errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        Report {
            compensated: 1,
            uncompensated: vec![0, 1, 2],
            fully: false,
            comp_errors: got.comp_errors.clone(),
            ..base(
                StopReason::Failed,
                3,
                E::Op("a"),
                1,
                &format!(
                    "step 3 failed: a; {}; 3 steps left uncompensated",
                    listed.join("; ")
                )
            )
        }
    );
}

#[test]
fn group_deadline_while_the_others_finish_is_noted() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .parallel(|group| {
            group
                .add_step(fails("a"), done())
                .add_step(after(&clock, 100, Out::Ok), done())
        })
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    let got = report(result.as_ref().unwrap_err());
    assert_eq!(
        (got.reason, got.failed_step, &got.error, got.attempts),
        (StopReason::Failed, 0, &E::Op("a"), 1)
    );
    // Whether `StepFailure::timed_out` is true for a member cut short by the
    // saga's deadline is not documented either way: not asserted.
    assert_eq!(
        got.concurrent
            .iter()
            .map(|f| (f.0, f.1.clone(), f.2.clone(), f.3))
            .collect::<Vec<_>>(),
        [(1, None, E::TimedOut, 1)]
    );
    assert_eq!(
        got.display,
        "step 0 failed: a, saga deadline passed; step 1 failed too: timed out; \
         fully compensated (2 steps)"
    );
    assert_in_order(
        &rec.events(),
        &["deadline_passed 1", "action_failed 1 1 timed out"],
    );
    assert_eq!(clock.now(), secs(10));
    rec.assert_finished_with(&result);
}

#[test]
fn group_abort_while_the_others_finish_is_noted() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .on_abort(InFlight::CutShort)
        .parallel(|group| {
            group
                .add_step(fails("a"), done())
                .add_step(after(&clock, 100, Out::Ok), done())
        })
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    let got = report(&error);
    assert_eq!(
        (got.reason, got.failed_step, &got.error, got.aborted),
        (StopReason::Failed, 0, &E::Op("a"), true)
    );
    assert_eq!(got.concurrent, [(1, None, E::Aborted, 1, false)]);
    assert_eq!(
        got.display,
        "step 0 failed: a, saga aborted; step 1 failed too: aborted; fully compensated (2 steps)"
    );
    assert_eq!(clock.now(), Duration::ZERO);
}

// ===========================================================================
// StepFailure and SagaError accessors
// ===========================================================================

#[test]
fn into_error_returns_the_stopping_error_by_value() {
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), fails("undo failed"))
        .add_step(fails("boom"), done())
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    let failure = error.compensation_errors()[0].clone();
    assert_eq!(failure.into_error(), E::Op("undo failed"));
    assert_eq!(error.into_error(), E::Op("boom"));
}

#[test]
fn documented_defaults() {
    assert_eq!(Recovery::default(), Recovery::Retry);
    assert_eq!(InFlight::default(), InFlight::Finish);
    assert_eq!(CompensationMode::default(), CompensationMode::StopOnError);
    assert_eq!(Retry::never().max_attempts(), 1);
    assert_eq!(Retry::attempts(0).max_attempts(), 1);
}

// ===========================================================================
// More panics outside steps, and the sleeper
// ===========================================================================

#[test]
fn observer_panicking_on_a_retry_fails_the_attempt_for_good() {
    let clock = Clock::default();
    let calls = Log::default();
    let rec = Rec::panicking_on("action_retried 0");
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(3))
        .add_step(logged(&calls, "call", fails("busy")), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("observer bug".into()),
                1,
                "step 0 failed: panicked: observer bug; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(calls.entries(), ["call"], "no retry after the panic");
    assert_eq!(
        rec.events().last().map(String::as_str),
        Some("action_retried 0 2 0ns")
    );
}

#[test]
fn sleeper_panicking_for_a_retry_backoff_fails_the_attempt_for_good() {
    let clock = Clock::default();
    let calls = Log::default();
    let inner = clock.sleeper();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(move |duration: Duration| {
            if duration == secs(7) {
                panic!("sleeper bug");
            }
            inner(duration)
        })
        .action_retry(Retry::attempts(3).constant(secs(7)))
        .add_step(logged(&calls, "call", fails("busy")), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("sleeper bug".into()),
                1,
                "step 0 failed: panicked: sleeper bug; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(calls.entries(), ["call"]);
}

#[test]
fn sleeper_panicking_for_a_compensation_timeout_then_no_more_time_is_kept() {
    let clock = Clock::default();
    let log = Log::default();
    let inner = clock.sleeper();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(move |duration: Duration| {
            if duration == secs(7) {
                panic!("sleeper bug");
            }
            inner(duration)
        })
        .compensation_timeout(secs(7))
        .compensation_retry(Retry::attempts(3))
        .compensation_mode(CompensationMode::ContinueOnError)
        .add_step(done(), logged(&log, "undo 0", after(&clock, 10, Out::Ok)))
        .add_step(done(), logged(&log, "undo 1", done()))
        .add_step(fails("boom"), logged(&log, "undo 2", done()))
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            uncompensated: vec![2],
            fully: false,
            comp_errors: vec![(2, None, E::Panicked("sleeper bug".into()), 1, false)],
            ..base(
                StopReason::Failed,
                2,
                E::Op("boom"),
                1,
                "step 2 failed: boom; compensation of step 2 failed: panicked: sleeper bug; \
                 1 step left uncompensated"
            )
        }
    );
    // Compensation 0 takes 10 s, longer than the 7 s timeout: no timeout
    // applies any more once the sleeper panicked.
    assert_eq!(log.entries(), ["undo 1", "undo 0"]);
    assert_eq!(clock.now(), secs(10));
}

#[test]
fn observer_panicking_while_a_group_is_in_flight_reports_the_lowest_step_in_flight() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::panicking_on("action_started 1");
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .add_step(after(&clock, 5, Out::Ok), done())
                .add_step(after(&clock, 5, Out::Ok), done())
        })
        .add_step(logged(&log, "do 2", done()), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    let got = report(&error);
    assert_eq!(
        (
            got.reason,
            got.failed_step,
            &got.error,
            got.attempts,
            got.fully
        ),
        (
            StopReason::Panicked,
            0,
            &E::Panicked("observer bug".into()),
            1,
            true
        )
    );
    assert!(
        got.display
            .starts_with("step 0 failed: panicked: observer bug; fully compensated ("),
        "{}",
        got.display
    );
    assert!(log.entries().is_empty(), "step 2 never starts");
}

// ===========================================================================
// Deadline and timeouts together, aborts after retries, groups and aborts
// ===========================================================================

#[test]
fn deadline_before_the_action_timeout() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .saga_timeout(secs(3))
        .add_step(after(&clock, 10, Out::Ok), done())
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            timed_out: true,
            compensated: 1,
            ..base(
                StopReason::Deadline,
                0,
                E::TimedOut,
                1,
                "step 0 cut short: timed out; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(clock.now(), secs(3));
}

#[test]
fn deadline_after_a_timed_out_attempt_counts_both_attempts() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(3))
        .action_retry(Retry::attempts(3))
        .saga_timeout(secs(5))
        .add_step(after(&clock, 10, Out::Ok), done())
        .observer(rec.clone())
        .build();
    let result = drive(&clock, saga.run());
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            timed_out: true,
            compensated: 1,
            ..base(
                StopReason::Deadline,
                0,
                E::TimedOut,
                2,
                "step 0 cut short: timed out (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
    assert_eq!(
        rec.kinds("action_")
            .into_iter()
            .chain(rec.kinds("deadline"))
            .collect::<Vec<_>>(),
        [
            "action_started 0 1",
            "action_failed 0 1 timed out",
            "action_retried 0 2 0ns",
            "action_started 0 2",
            "action_failed 0 2 timed out",
            "deadline_passed 0",
        ]
    );
    assert_in_order(
        &rec.events(),
        &[
            "action_started 0 2",
            "deadline_passed 0",
            "action_failed 0 2 timed out",
        ],
    );
    assert_eq!(clock.now(), secs(5));
    rec.assert_finished_with(&result);
}

#[test]
fn abort_cutting_short_a_second_attempt_counts_both() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .on_abort(InFlight::CutShort)
        .action_retry(Retry::attempts(3))
        .step(
            FnStep::new(
                plan(&clock, &[(0, Out::Err("busy")), (10, Out::Ok)]),
                done(),
            )
            .named("pay"),
        )
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("pay".into()),
            aborted: true,
            compensated: 1,
            ..base(
                StopReason::Aborted,
                0,
                E::Aborted,
                2,
                "step 0 (pay) cut short: aborted (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn abort_while_a_group_runs_lets_its_members_finish_then_stops() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .add_step(after(&clock, 5, Out::Ok), done())
                .add_step(after(&clock, 10, Out::Ok), done())
        })
        .step(FnStep::new(done(), done()).named("ship"))
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("ship".into()),
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                2,
                E::Aborted,
                0,
                "stopped before step 2 (ship): aborted; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(clock.now(), secs(10));
}

#[test]
fn abort_cutting_a_whole_group_short() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .on_abort(InFlight::CutShort)
        .parallel(|group| {
            group
                .add_step(after(&clock, 5, Out::Ok), done())
                .add_step(after(&clock, 10, Out::Ok), done())
        })
        .add_step(done(), done())
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    let got = report(&error);
    let first = got.failed_step;
    let other = 1 - first.min(1);
    assert_eq!(
        got,
        Report {
            aborted: true,
            compensated: 2,
            concurrent: vec![(other, None, E::Aborted, 1, false)],
            ..base(
                StopReason::Aborted,
                first,
                E::Aborted,
                1,
                &format!(
                    "step {first} cut short: aborted; step {other} failed too: aborted; \
                     fully compensated (2 steps)"
                )
            )
        }
    );
    assert_eq!(clock.now(), Duration::ZERO);
}

#[test]
fn by_value_compensation_is_not_retried() {
    let mut saga = SagaBuilder::<E>::new()
        .compensation_retry(Retry::attempts(3))
        .add_typed_step(
            || async { Ok::<u32, E>(7) },
            |_: u32| async { Err(E::Op("undo failed")) },
        )
        .add_step(fails("boom"), done())
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            uncompensated: vec![0],
            fully: false,
            comp_errors: vec![(0, None, E::Op("undo failed"), 1, false)],
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; compensation of step 0 failed: undo failed; \
                 1 step left uncompensated"
            )
        }
    );
}

#[test]
fn sleeper_panicking_while_timing_the_deadline_fails_the_forward_phase() {
    // The deadline's timer panics when it is polled after its time came: a
    // panic outside any step while step 0 is in flight.
    let clock = Clock::default();
    let log = Log::default();
    let timers = clock.clone();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(
            move |duration: Duration| -> Pin<Box<dyn Future<Output = ()> + Send>> {
                let sleep = timers.sleep(duration);
                if duration == secs(2) {
                    Box::pin(async move {
                        sleep.await;
                        panic!("deadline timer bug");
                    })
                } else {
                    Box::pin(sleep)
                }
            },
        )
        .saga_timeout(secs(2))
        .add_step(logged(&log, "do 0", after(&clock, 5, Out::Ok)), done())
        .add_step(logged(&log, "do 1", done()), done())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("deadline timer bug".into()),
                1,
                "step 0 failed: panicked: deadline timer bug; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(
        log.entries(),
        ["do 0"],
        "step 0 finishes, step 1 never starts"
    );
    assert_eq!(clock.now(), secs(5));
}

#[test]
fn polling_a_completed_run_panics() {
    let mut saga = SagaBuilder::<E>::new().add_step(done(), done()).build();
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(Pin::new(&mut run).poll(&mut cx), Poll::Ready(Ok(())));
    let again = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        let _ = Pin::new(&mut run).poll(&mut cx);
    }));
    assert!(again.is_err());
}

#[test]
fn group_propagated_failure_still_lets_the_others_finish_and_reports_them() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .add_step(done(), done())
                .add_step(fails("disk"), done())
                .add_step(after(&clock, 5, Out::Err("x")), done())
        })
        .classify(|_: &E| Recovery::Propagate)
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            handling: Handling::Propagated,
            uncompensated: vec![0, 1, 2],
            fully: false,
            concurrent: vec![(2, None, E::Op("x"), 1, false)],
            ..base(
                StopReason::Failed,
                1,
                E::Op("disk"),
                1,
                "step 1 failed: disk; step 2 failed too: x; \
                 propagated without compensation, 3 steps left applied"
            )
        }
    );
    assert_eq!(clock.now(), secs(5), "nothing in flight is abandoned");
}

#[test]
fn group_cut_short_members_left_applied_plural() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .step(
                        FnStep::new(after(&clock, 100, Out::Ok), done())
                            .compensate_failed_action(false),
                    )
                    .step(
                        FnStep::new(after(&clock, 100, Out::Ok), done())
                            .compensate_failed_action(false),
                    )
                    .add_step(fails("a"), done())
            },
        )
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            uncompensated: vec![1, 2],
            fully: false,
            ..base(
                StopReason::Failed,
                3,
                E::Op("a"),
                1,
                "step 3 failed: a; 2 compensated, 2 steps left applied"
            )
        }
    );
}

#[test]
fn failed_compensation_and_cut_short_member_are_both_left_uncompensated() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), fails("undo 0"))
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .step(
                        FnStep::new(after(&clock, 100, Out::Ok), done())
                            .compensate_failed_action(false),
                    )
                    .add_step(fails("a"), done())
            },
        )
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            uncompensated: vec![0, 1],
            fully: false,
            comp_errors: vec![(0, None, E::Op("undo 0"), 1, false)],
            ..base(
                StopReason::Failed,
                2,
                E::Op("a"),
                1,
                "step 2 failed: a; compensation of step 0 failed: undo 0; 2 steps left uncompensated"
            )
        }
    );
}

#[test]
fn named_typed_step_is_named_in_the_report() {
    let mut saga = SagaBuilder::<E>::new()
        .step(
            saga_core::TypedStep::by_ref(
                || async { Err::<String, E>(E::Op("no seats")) },
                |_: &String| async { Ok(()) },
            )
            .named("book flight"),
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            name: Some("book flight".into()),
            ..base(
                StopReason::Failed,
                0,
                E::Op("no seats"),
                1,
                "step 0 (book flight) failed: no seats; nothing needed compensation"
            )
        }
    );
}

#[test]
fn abort_let_finish_then_the_action_times_out() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .add_step(done(), done())
        .add_step(after(&clock, 10, Out::Ok), done())
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            aborted: true,
            timed_out: true,
            compensated: 2,
            ..base(
                StopReason::TimedOut,
                1,
                E::TimedOut,
                1,
                "step 1 failed: timed out, saga aborted; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(clock.now(), secs(5));
}

#[test]
fn observer_panicking_when_told_of_an_abort_fails_the_forward_phase_with_the_panic() {
    // The observer doc: "told of anything else, the forward phase fails with
    // `error`" (the panic); the abort landed too, but did not stop the saga.
    let clock = Clock::default();
    let handle = AbortHandle::new();
    handle.abort();
    let rec = Rec::panicking_on("aborted");
    let mut saga = SagaBuilder::<E>::new()
        .add_step(done(), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run().abortable(&handle))).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            aborted: true,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("observer bug".into()),
                0,
                "stopped before step 0: panicked: observer bug, saga aborted; \
                 nothing needed compensation"
            )
        }
    );
}

#[test]
fn a_saga_run_again_reports_afresh() {
    let clock = Clock::default();
    let rec = Rec::new();
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(2))
        .add_step(done(), fails("undo failed"))
        .add_step(fails("boom"), done())
        .observer(rec.clone())
        .build();
    let expected = Report {
        compensated: 1,
        uncompensated: vec![0],
        fully: false,
        comp_errors: vec![(0, None, E::Op("undo failed"), 1, false)],
        ..base(
            StopReason::Failed,
            1,
            E::Op("boom"),
            2,
            "step 1 failed: boom (after 2 attempts); compensation of step 0 failed: undo failed; \
             1 step left uncompensated",
        )
    };
    let first = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(report(&first), expected);
    let events = rec.events();
    let handle = AbortHandle::new();
    handle.abort();
    let aborted = drive(&clock, saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(aborted.reason(), StopReason::Aborted);
    let again = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(report(&again), expected, "no state leaks from earlier runs");
    assert_eq!(
        rec.events()[rec.events().len() - events.len()..],
        events[..]
    );
}

#[test]
fn a_saga_run_again_counts_its_deadline_afresh() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(10))
        .add_step(plan(&clock, &[(5, Out::Ok), (8, Out::Ok)]), done())
        .build();
    assert_eq!(drive(&clock, saga.run()), Ok(()));
    assert_eq!(drive(&clock, saga.run()), Ok(()));
    assert_eq!(clock.now(), secs(13));
}

#[test]
fn group_members_with_their_own_timeouts() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .action_timeout(secs(5))
        .parallel(|group| {
            group
                .add_step(after(&clock, 10, Out::Ok), done())
                .add_step_with(
                    after(&clock, 10, Out::Ok),
                    done(),
                    StepPolicy::new().timeout(secs(3)),
                )
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            timed_out: true,
            compensated: 2,
            concurrent: vec![(0, None, E::TimedOut, 1, true)],
            ..base(
                StopReason::TimedOut,
                1,
                E::TimedOut,
                1,
                "step 1 failed: timed out; step 0 failed too: timed out; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(clock.now(), secs(5));
}

#[test]
fn abort_in_a_limited_group_stops_before_the_member_that_never_started() {
    let clock = Clock::default();
    let rec = Rec::new();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group
                .add_step(after(&clock, 5, Out::Ok), done())
                .step(FnStep::new(after(&clock, 5, Out::Ok), done()).named("second"))
        })
        .observer(rec.clone())
        .build();
    let result = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle));
    assert_eq!(
        report(result.as_ref().unwrap_err()),
        Report {
            name: Some("second".into()),
            aborted: true,
            compensated: 1,
            ..base(
                StopReason::Aborted,
                1,
                E::Aborted,
                0,
                "stopped before step 1 (second): aborted; fully compensated (1 step)"
            )
        }
    );
    assert_eq!(rec.kinds("action_started"), ["action_started 0 1"]);
    assert_eq!(clock.now(), secs(5));
    rec.assert_finished_with(&result);
}

#[test]
fn deadline_in_a_limited_group_cuts_the_member_in_flight() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(7))
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group
                .add_step(after(&clock, 5, Out::Ok), done())
                .add_step(after(&clock, 5, Out::Ok), done())
                .add_step(after(&clock, 5, Out::Ok), done())
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            timed_out: true,
            compensated: 2,
            ..base(
                StopReason::Deadline,
                1,
                E::TimedOut,
                1,
                "step 1 cut short: timed out; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(clock.now(), secs(7));
}

#[test]
fn deadline_between_members_of_a_limited_group() {
    let clock = Clock::default();
    let ticking = clock.clone();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(7))
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group
                .add_step(
                    move || -> Fut {
                        ticking.advance(secs(20));
                        Box::pin(async { Ok(()) })
                    },
                    done(),
                )
                .add_step(done(), done())
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            timed_out: true,
            compensated: 1,
            ..base(
                StopReason::Deadline,
                1,
                E::TimedOut,
                0,
                "stopped before step 1: timed out; fully compensated (1 step)"
            )
        }
    );
}

#[test]
fn observer_panicking_on_a_second_attempt_reports_the_attempts_so_far() {
    let clock = Clock::default();
    let log = Log::default();
    let rec = Rec::panicking_on("action_started 0 2");
    let mut saga = SagaBuilder::<E>::new()
        .action_retry(Retry::attempts(3))
        .add_step(
            logged(
                &log,
                "do 0",
                plan(&clock, &[(0, Out::Err("busy")), (5, Out::Ok)]),
            ),
            done(),
        )
        .add_step(logged(&log, "do 1", done()), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 1,
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("observer bug".into()),
                2,
                "step 0 failed: panicked: observer bug (after 2 attempts); fully compensated (1 step)"
            )
        }
    );
    assert_eq!(
        log.entries(),
        ["do 0", "do 0"],
        "attempt 2 finishes, step 1 never starts"
    );
}

#[test]
fn observer_panicking_on_a_compensation_failure_changes_nothing() {
    let clock = Clock::default();
    let rec = Rec::panicking_on("compensation_failed");
    let mut saga = SagaBuilder::<E>::new()
        .compensation_retry(Retry::attempts(2))
        .add_step(
            done(),
            plan(&clock, &[(0, Out::Err("undo busy")), (0, Out::Ok)]),
        )
        .add_step(fails("boom"), done())
        .observer(rec.clone())
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            ..base(
                StopReason::Failed,
                1,
                E::Op("boom"),
                1,
                "step 1 failed: boom; fully compensated (2 steps)"
            )
        }
    );
}

#[test]
fn panicking_classifier_is_not_asked_again_and_later_errors_are_compensated() {
    let clock = Clock::default();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let asked_log = asked.clone();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .add_step(fails("a"), done())
                .add_step(after(&clock, 5, Out::Err("b")), done())
        })
        .classify(move |error: &E| {
            asked_log.lock().unwrap().push(error.clone());
            match error {
                E::Op("a") => panic!("classifier bug"),
                _ => Recovery::Propagate,
            }
        })
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 2,
            concurrent: vec![(1, None, E::Op("b"), 1, false)],
            ..base(
                StopReason::Panicked,
                0,
                E::Panicked("classifier bug".into()),
                1,
                "step 0 failed: panicked: classifier bug; step 1 failed too: b; \
                 fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(*asked.lock().unwrap(), [E::Op("a")]);
}

#[test]
fn panicking_group_member_lets_its_woken_siblings_finish() {
    let clock = Clock::default();
    let log = Log::default();
    let mut saga = SagaBuilder::<E>::new()
        .parallel(|group| {
            group
                .add_step(logged(&log, "do 0", after(&clock, 5, Out::Ok)), done())
                .add_step(after(&clock, 5, Out::Panic("member bug")), done())
                .add_step(logged(&log, "do 2", after(&clock, 5, Out::Ok)), done())
        })
        .build();
    let error = drive(&clock, CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            compensated: 3,
            ..base(
                StopReason::Panicked,
                1,
                E::Panicked("member bug".into()),
                1,
                "step 1 failed: panicked: member bug; fully compensated (3 steps)"
            )
        }
    );
    let mut done_log = log.entries();
    done_log.sort();
    assert_eq!(done_log, ["do 0", "do 2"]);
    assert_eq!(clock.now(), secs(5));
}

#[test]
fn abort_during_a_group_members_retry_wait() {
    let clock = Clock::default();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .parallel(|group| {
            group
                .add_step_with(
                    fails("busy"),
                    done(),
                    StepPolicy::new().retry(Retry::attempts(3).constant(secs(5))),
                )
                .add_step(after(&clock, 10, Out::Ok), done())
        })
        .add_step(done(), done())
        .build();
    let error = abort_when_stalled(&clock, &handle, saga.run().abortable(&handle)).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            aborted: true,
            compensated: 2,
            ..base(
                StopReason::Aborted,
                0,
                E::Aborted,
                1,
                "step 0 cut short: aborted; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(clock.now(), secs(10), "the other member finished");
}

#[test]
fn deadline_during_a_group_members_retry_wait() {
    let clock = Clock::default();
    let mut saga = SagaBuilder::<E>::new()
        .sleeper(clock.sleeper())
        .saga_timeout(secs(3))
        .parallel(|group| {
            group
                .add_step_with(
                    fails("busy"),
                    done(),
                    StepPolicy::new().retry(Retry::attempts(3).constant(secs(5))),
                )
                .add_step(after(&clock, 2, Out::Ok), done())
        })
        .build();
    let error = drive(&clock, saga.run()).unwrap_err();
    assert_eq!(
        report(&error),
        Report {
            timed_out: true,
            compensated: 2,
            ..base(
                StopReason::Deadline,
                0,
                E::TimedOut,
                1,
                "step 0 cut short: timed out; fully compensated (2 steps)"
            )
        }
    );
    assert_eq!(clock.now(), secs(3));
}
