//! Behaviours the documentation promises and the engine must keep, each
//! pinned by a test written from the README and the rustdoc only: concurrent
//! compensation with or without an observer, exponential backoff with a
//! factor of 0 or 1, the error reported when a deadline or an abort lands in
//! a retry backoff, the observer events of an attempt cut short by an abort
//! or a deadline, and lane wakers that do not leak from one run to the next.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use std::fmt;
use std::future::{Future, pending, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use saga_core::{
    AbortHandle, Aborted, CompensationMode, InFlight, Observer, Retry, SagaBuilder, SagaError,
    StepRef, StopReason, TimedOut,
};
use support::{FakeClock, Yield, block_on_clock};

/// The error of these sagas; its `Display` says which one it is, so a
/// report's text shows whether the timeout or the business error won.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Error {
    Busy,
    Fatal,
    TimedOut,
    Aborted,
}

impl From<TimedOut> for Error {
    fn from(_: TimedOut) -> Self {
        Error::TimedOut
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Busy => "the service is busy",
            Error::Fatal => "fatal",
            Error::TimedOut => "ran out of time",
            Error::Aborted => "was aborted",
        })
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const HOUR: Duration = Duration::from_secs(3600);

fn ok() -> std::future::Ready<Result<(), Error>> {
    ready(Ok(()))
}

fn counter() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

fn calls(counter: &Arc<AtomicU32>) -> u32 {
    counter.load(Ordering::SeqCst)
}

/// A closure that counts its calls and returns `result` each time.
fn counted(
    calls: &Arc<AtomicU32>,
    result: Result<(), Error>,
) -> impl FnMut() -> std::future::Ready<Result<(), Error>> + Send + 'static {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        ready(result.clone())
    }
}

#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls a future by hand with a waker of its own, counting the wake-ups.
struct Manual<F> {
    future: Pin<Box<F>>,
    flag: Arc<Flag>,
}

impl<F: Future> Manual<F> {
    fn new(future: F) -> Self {
        Manual {
            future: Box::pin(future),
            flag: Arc::default(),
        }
    }

    fn poll(&mut self) -> Poll<F::Output> {
        self.flag.0.store(false, Ordering::SeqCst);
        let waker = Waker::from(self.flag.clone());
        self.future.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

// ---------------------------------------------------------------------------
// 1. Concurrent compensation is the same with or without an observer
// ---------------------------------------------------------------------------

/// A saga of 4 single steps (no group, no timeout) whose step 3 fails; every
/// compensation suspends three times and records how many compensations are
/// in flight. Returns the peak, after checking that all four were undone.
fn peak_compensations_in_flight(mode: CompensationMode, observed: bool) -> usize {
    struct Quiet;
    impl Observer<Error> for Quiet {}

    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut builder = SagaBuilder::new().compensation_mode(mode);
    for step in 0..4 {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        builder = builder.add_step(
            move || ready(if step == 3 { Err(Error::Fatal) } else { Ok(()) }),
            move || {
                let (in_flight, peak) = (in_flight.clone(), peak.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    Yield(3).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        );
    }
    if observed {
        builder = builder.observer(Quiet);
    }
    let mut saga = builder.build();

    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(*error.error(), Error::Fatal);
    assert_eq!(error.failed_step(), 3);
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(
        error.compensated_count(),
        4,
        "steps 3 (its own failure), 2, 1, 0"
    );
    peak.load(Ordering::SeqCst)
}

#[test]
fn concurrent_mode_runs_every_compensation_of_a_plain_saga_at_once() {
    assert_eq!(
        peak_compensations_in_flight(CompensationMode::Concurrent, false),
        4,
        "`Concurrent`: every compensation at once, also on a saga of single steps"
    );
}

#[test]
fn concurrent_mode_runs_every_compensation_at_once_with_an_observer_attached() {
    assert_eq!(
        peak_compensations_in_flight(CompensationMode::Concurrent, true),
        4,
        "an observer cannot change what a run does"
    );
}

#[test]
fn concurrent_groups_mode_compensates_single_steps_one_at_a_time() {
    assert_eq!(
        peak_compensations_in_flight(CompensationMode::ConcurrentGroups, false),
        1
    );
}

#[test]
fn stop_on_error_mode_compensates_one_at_a_time() {
    assert_eq!(
        peak_compensations_in_flight(CompensationMode::StopOnError, false),
        1
    );
}

// ---------------------------------------------------------------------------
// 3. Exponential backoff with factor 0 or 1 is constant
// ---------------------------------------------------------------------------

fn delays_before_retries(factor: u32) -> Vec<Duration> {
    let retry = Retry::attempts(4)
        .exponential(ms(30), ms(500))
        .factor(factor);
    (2..=4).map(|attempt| retry.delay_before(attempt)).collect()
}

#[test]
fn exponential_backoff_with_factor_0_is_constant() {
    assert_eq!(delays_before_retries(0), [ms(30), ms(30), ms(30)]);
}

#[test]
fn exponential_backoff_with_factor_1_is_constant() {
    assert_eq!(delays_before_retries(1), [ms(30), ms(30), ms(30)]);
}

/// The waits the engine asks the sleeper for, for a step that always fails
/// under `Retry::attempts(4).exponential(30ms, 500ms).factor(factor)`.
fn engine_waits(factor: u32) -> Vec<Duration> {
    let clock = FakeClock::new();
    let attempts = counter();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_retry(
            Retry::attempts(4)
                .exponential(ms(30), ms(500))
                .factor(factor),
        )
        .add_step(counted(&attempts, Err(Error::Busy)), ok)
        .build();
    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert_eq!(error.attempts(), 4);
    assert_eq!(calls(&attempts), 4);
    clock.requested()
}

#[test]
fn the_engine_waits_a_constant_backoff_for_exponential_factor_0() {
    assert_eq!(engine_waits(0), [ms(30), ms(30), ms(30)]);
}

#[test]
fn the_engine_waits_a_constant_backoff_for_exponential_factor_1() {
    assert_eq!(engine_waits(1), [ms(30), ms(30), ms(30)]);
}

// ---------------------------------------------------------------------------
// 4. A deadline or an abort during a retry backoff
// ---------------------------------------------------------------------------

#[test]
fn a_deadline_passing_during_a_retry_backoff_fails_the_step_with_timed_out() {
    let clock = FakeClock::new();
    let (attempts, undo) = (counter(), counter());
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .saga_timeout(ms(100))
        .action_retry(Retry::attempts(5).constant(HOUR))
        .add_step(counted(&attempts, Err(Error::Busy)), counted(&undo, Ok(())))
        .build();

    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert_eq!(
        calls(&attempts),
        1,
        "the deadline passed during the first backoff"
    );
    assert!(clock.now() < HOUR, "the backoff was cut short");
    assert_eq!(*error.error(), Error::TimedOut, "{error:?}");
    assert!(error.timed_out());
    assert!(!error.aborted());
    assert_eq!(error.failed_step(), 0);
    assert_eq!(error.reason(), StopReason::Deadline);
    let text = error.to_string();
    assert!(
        text.starts_with("step 0 cut short: ran out of time"),
        "the report names the timeout: {text}"
    );
    assert!(
        !text.contains("busy"),
        "the report names the timeout, not the last attempt's error: {text}"
    );
    assert_eq!(calls(&undo), 1, "the failed pysagas-style step is undone");
    assert!(error.is_fully_compensated());
}

#[test]
fn an_abort_during_a_retry_backoff_fails_the_step_with_aborted() {
    let clock = FakeClock::new();
    let (attempts, undo) = (counter(), counter());
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_retry(Retry::attempts(5).constant(HOUR))
        .add_step(counted(&attempts, Err(Error::Busy)), counted(&undo, Ok(())))
        .build();
    let abort = AbortHandle::new();

    let mut run = Manual::new(saga.run().abortable(&abort));
    assert!(run.poll().is_pending(), "waiting out the first backoff");
    assert_eq!(calls(&attempts), 1);
    abort.abort();
    let error = block_on_clock(&clock, run.future.as_mut()).unwrap_err();

    assert_eq!(
        calls(&attempts),
        1,
        "an aborted run starts no further attempt"
    );
    assert_eq!(*error.error(), Error::Aborted, "{error:?}");
    assert!(error.aborted());
    assert_eq!(error.failed_step(), 0);
    assert_eq!(error.reason(), StopReason::Aborted);
    let text = error.to_string();
    assert!(
        text.starts_with("step 0 cut short: was aborted"),
        "the report names the abort: {text}"
    );
    assert_eq!(calls(&undo), 1, "the failed pysagas-style step is undone");
    assert!(error.is_fully_compensated());
}

// ---------------------------------------------------------------------------
// 5. The observer is told when an attempt is cut short
// ---------------------------------------------------------------------------

/// Records every transition as a line of text.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Observer<Error> for Recorder {
    fn saga_started(&self, steps: usize) {
        self.push(format!("saga started ({steps})"));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<Error>>) {
        self.push(match result {
            Ok(()) => "saga succeeded".into(),
            Err(error) => format!("saga failed at {}", error.failed_step()),
        });
    }
    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("act {} #{attempt}", step.index));
    }
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("acted {} #{attempt}", step.index));
    }
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &Error) {
        self.push(format!("act failed {} #{attempt}: {error:?}", step.index));
    }
    fn action_retried(&self, step: StepRef<'_>, next: u32, delay: Duration) {
        self.push(format!("act retry {} #{next} in {delay:?}", step.index));
    }
    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("undo {} #{attempt}", step.index));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("undone {} #{attempt}", step.index));
    }
    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &Error) {
        self.push(format!("undo failed {} #{attempt}: {error:?}", step.index));
    }
    fn compensation_retried(&self, step: StepRef<'_>, next: u32, delay: Duration) {
        self.push(format!("undo retry {} #{next} in {delay:?}", step.index));
    }
    fn aborted(&self, step: StepRef<'_>) {
        self.push(format!("aborted at {}", step.index));
    }
    fn deadline_passed(&self, step: StepRef<'_>) {
        self.push(format!("deadline passed at {}", step.index));
    }
}

/// An action that aborts `abort` when first polled, then never completes.
struct AbortThenHang(AbortHandle);

impl Future for AbortThenHang {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.abort();
        Poll::Pending
    }
}

#[test]
fn an_action_cut_short_by_an_abort_is_reported_to_the_observer_as_failed_with_aborted() {
    let recorder = Arc::new(Recorder::default());
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let mut saga = SagaBuilder::new()
        .on_abort(InFlight::CutShort)
        .add_step(ok, ok)
        .add_step(move || AbortThenHang(trigger.clone()), ok)
        .observer(recorder.clone())
        .build();

    // No timers: a run that ignored the abort would be a lost wake-up, which
    // fails the test instead of hanging it.
    let error = block_on_clock(&FakeClock::new(), saga.run().abortable(&abort)).unwrap_err();
    assert!(error.aborted());
    assert_eq!(*error.error(), Error::Aborted);
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(
        recorder.events(),
        [
            "saga started (2)",
            "act 0 #1",
            "acted 0 #1",
            "act 1 #1",
            "aborted at 1",
            "act failed 1 #1: Aborted",
            "undo 1 #1",
            "undone 1 #1",
            "undo 0 #1",
            "undone 0 #1",
            "saga failed at 1",
        ]
    );
}

#[test]
fn an_action_cut_short_by_the_deadline_is_reported_to_the_observer_as_failed_with_timed_out() {
    let clock = FakeClock::new();
    let recorder = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .saga_timeout(ms(100))
        .add_step(ok, ok)
        .add_step(pending::<Result<(), Error>>, ok)
        .observer(recorder.clone())
        .build();

    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert!(error.timed_out());
    assert_eq!(*error.error(), Error::TimedOut);
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(
        recorder.events(),
        [
            "saga started (2)",
            "act 0 #1",
            "acted 0 #1",
            "act 1 #1",
            "deadline passed at 1",
            "act failed 1 #1: TimedOut",
            "undo 1 #1",
            "undone 1 #1",
            "undo 0 #1",
            "undone 0 #1",
            "saga failed at 1",
        ]
    );
}

// ---------------------------------------------------------------------------
// 6. Lane wakers do not leak from one run into the next
// ---------------------------------------------------------------------------

/// One action attempt's future: counts its polls, keeps the last waker it
/// was polled with, and completes once opened.
#[derive(Default)]
struct Probe {
    polls: AtomicUsize,
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Probe {
    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    /// The waker of its last poll.
    fn waker(&self) -> Waker {
        self.waker.lock().unwrap().clone().expect("polled once")
    }

    /// Opens it and wakes its last waker: one wake-up.
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.waker().wake();
    }
}

struct ProbeWait(Arc<Probe>);

impl Future for ProbeWait {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.polls.fetch_add(1, Ordering::SeqCst);
        if self.0.open.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// An action whose attempt number `n` (from 0, across runs) waits on
/// `probes[n]`.
fn probed(probes: &[Arc<Probe>]) -> impl FnMut() -> ProbeWait + Send + 'static {
    let probes = probes.to_vec();
    let mut call = 0;
    move || {
        let probe = probes[call].clone();
        call += 1;
        ProbeWait(probe)
    }
}

#[test]
fn a_waker_kept_from_a_dropped_run_does_not_poll_a_member_of_the_next_run() {
    // Per member: the probe of run 1, then the probe of run 2.
    let first: Vec<Arc<Probe>> = (0..2).map(|_| Arc::default()).collect();
    let second: Vec<Arc<Probe>> = (0..2).map(|_| Arc::default()).collect();
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group
                .add_step(probed(&first), ok)
                .add_step(probed(&second), ok)
        })
        .build();

    // Run 1: both members start and stay pending; member 0 keeps its waker.
    let mut run = Manual::new(saga.run());
    assert!(run.poll().is_pending());
    assert_eq!((first[0].polls(), second[0].polls()), (1, 1));
    let stale = first[0].waker();
    drop(run);

    // Run 2: both members start again, on fresh futures.
    let mut run = Manual::new(saga.run());
    assert!(run.poll().is_pending());
    assert_eq!((first[1].polls(), second[1].polls()), (1, 1));

    // The waker from run 1 fires during run 2: nothing in run 2 was woken.
    stale.wake();
    assert!(run.poll().is_pending());
    assert_eq!(
        first[1].polls(),
        1,
        "member 0 of run 2 was polled without a wake-up of its own (a waker of run 1 reached it)"
    );
    assert_eq!(second[1].polls(), 1, "member 1 of run 2 was not woken");

    // Each of run 2's own wake-ups polls its member exactly once more.
    first[1].open();
    assert!(run.poll().is_pending());
    second[1].open();
    assert_eq!(run.poll(), Poll::Ready(Ok(())));
    assert_eq!((first[1].polls(), second[1].polls()), (2, 2));
}
