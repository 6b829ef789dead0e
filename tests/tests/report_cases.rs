//! Where and why a saga stopped, one test per row of the table on
//! `SagaError`: each checks `failed_step()`, `error()`, `reason()`,
//! `attempts()`, `Display` and the observer's events together, so the four
//! can never tell different stories.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use saga_core::rt::CatchPanics;
use saga_core::{
    AbortHandle, Aborted, FnStep, Handling, InFlight, Observer, Panicked, ParallelGroup, Recovery,
    Retry, SagaBuilder, SagaError, StepRef, StopReason, TimedOut,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Error {
    Declined,
    Disk,
    Undo,
    TimedOut,
    Aborted,
    Panicked(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Declined => f.write_str("declined"),
            Error::Disk => f.write_str("disk"),
            Error::Undo => f.write_str("undo failed"),
            Error::TimedOut => f.write_str("timed out"),
            Error::Aborted => f.write_str("aborted"),
            Error::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
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

impl From<Panicked> for Error {
    fn from(panic: Panicked) -> Self {
        Error::Panicked(panic.message().to_owned())
    }
}

/// Every transition, as a short line; optionally panics when told of the
/// success of `panic_on_success`.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    panic_on_success: Option<usize>,
    panic_on_undone: Option<usize>,
}

impl Recorder {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl Observer<Error> for Recorder {
    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("start {} #{attempt}", step.index));
    }
    fn action_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
        if self.panic_on_success == Some(step.index) {
            panic!("observer bug");
        }
        self.push(format!("ok {}", step.index));
    }
    fn action_failed(&self, step: StepRef<'_>, _attempt: u32, error: &Error) {
        self.push(format!("failed {}: {error}", step.index));
    }
    fn action_retried(&self, step: StepRef<'_>, next_attempt: u32, _delay: Duration) {
        self.push(format!("retry {} #{next_attempt}", step.index));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
        if self.panic_on_undone == Some(step.index) {
            panic!("observer bug");
        }
        self.push(format!("undone {}", step.index));
    }
    fn compensation_failed(&self, step: StepRef<'_>, _attempt: u32, error: &Error) {
        self.push(format!("undo failed {}: {error}", step.index));
    }
    fn aborted(&self, step: StepRef<'_>) {
        self.push(format!("aborted at {}", step.index));
    }
    fn deadline_passed(&self, step: StepRef<'_>) {
        self.push(format!("deadline at {}", step.index));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<Error>>) {
        match result {
            Ok(()) => self.push("finished ok".to_owned()),
            Err(error) => self.push(format!("finished: {error}")),
        }
    }
}

fn ok() -> impl FnMut() -> std::future::Ready<Result<(), Error>> + Send + 'static {
    || std::future::ready(Ok(()))
}

fn err(error: Error) -> impl FnMut() -> std::future::Ready<Result<(), Error>> + Send + 'static {
    move || std::future::ready(Err(error.clone()))
}

/// An action that stays pending until `gate` opens, then returns `result`.
fn gated(
    gate: &Arc<AtomicBool>,
    result: Result<(), Error>,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send + 'static
{
    let gate = gate.clone();
    move || {
        let (gate, result) = (gate.clone(), result.clone());
        Box::pin(poll_fn(move |cx| match gate.load(Ordering::SeqCst) {
            true => Poll::Ready(result.clone()),
            false => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }))
    }
}

fn pending_forever() -> impl FnMut() -> std::future::Pending<Result<(), Error>> + Send + 'static {
    std::future::pending
}

/// A manual clock: `sleep(d)` ends once `now` has moved `d` past its start.
#[derive(Clone, Default)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    fn sleeper(
        &self,
    ) -> impl Fn(Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static + use<>
    {
        let now = self.0.clone();
        move |duration| {
            let now = now.clone();
            let end = now.load(Ordering::SeqCst) + duration.as_millis() as u64;
            Box::pin(poll_fn(move |_| match now.load(Ordering::SeqCst) >= end {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }))
        }
    }
}

/// Polls `future` with a no-op waker until it is ready, calling `between`
/// after each pending poll (at most 1,000 polls).
fn poll_until<F: Future>(future: F, mut between: impl FnMut(usize)) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for poll in 0..1_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        between(poll);
    }
    panic!("the run did not end within 1,000 polls")
}

/// The checks every row makes.
#[track_caller]
fn check(
    error: &SagaError<Error>,
    (failed_step, reason, attempts): (usize, StopReason, u32),
    expected_error: Error,
    display: &str,
) {
    assert_eq!(error.failed_step(), failed_step, "failed_step: {error}");
    assert_eq!(error.reason(), reason, "reason: {error}");
    assert_eq!(error.attempts(), attempts, "attempts: {error}");
    assert_eq!(*error.error(), expected_error, "error: {error}");
    assert_eq!(error.to_string(), display);
}

#[test]
fn an_action_error_after_its_retries() {
    let observer = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .step(FnStep::new(ok(), ok()).named("reserve"))
        .step(FnStep::new(err(Error::Declined), ok()).named("charge"))
        .observer(observer.clone())
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    let display =
        "step 1 (charge) failed: declined (after 2 attempts); fully compensated (2 steps)";
    check(&error, (1, StopReason::Failed, 2), Error::Declined, display);
    assert_eq!(error.failed_step_name(), Some("charge"));
    assert_eq!(error.handling(), Handling::Compensated);
    assert!(!error.aborted() && !error.timed_out());
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "failed 1: declined",
            "retry 1 #2",
            "start 1 #2",
            "failed 1: declined",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn an_error_the_classifier_propagates() {
    let observer = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .add_step(err(Error::Disk), ok())
        .classify(|_: &Error| Recovery::Propagate)
        .observer(observer.clone())
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    let display = "step 1 failed: disk; propagated without compensation, 2 steps left applied";
    check(&error, (1, StopReason::Failed, 1), Error::Disk, display);
    assert_eq!(error.handling(), Handling::Propagated);
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "failed 1: disk",
            &format!("finished: {display}")
        ]
    );
}

#[test]
fn an_action_that_times_out() {
    let (clock, observer) = (Clock::default(), Arc::new(Recorder::default()));
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_timeout(Duration::from_millis(10))
        .add_step(ok(), ok())
        .add_step(pending_forever(), ok())
        .observer(observer.clone())
        .build();
    let error = poll_until(saga.run(), |_| clock.advance(Duration::from_millis(5))).unwrap_err();
    let display = "step 1 failed: timed out; fully compensated (2 steps)";
    check(
        &error,
        (1, StopReason::TimedOut, 1),
        Error::TimedOut,
        display,
    );
    assert!(error.timed_out());
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "failed 1: timed out",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn an_action_that_panics() {
    let observer = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .add_step(
            || -> std::future::Ready<Result<(), Error>> { panic!("bug in step 1") },
            ok(),
        )
        .observer(observer.clone())
        .build();
    let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
    let panic = Error::Panicked("bug in step 1".to_owned());
    let display = "step 1 failed: panicked: bug in step 1; fully compensated (2 steps)";
    check(&error, (1, StopReason::Panicked, 1), panic, display);
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "failed 1: panicked: bug in step 1",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn a_panic_outside_any_step_stops_before_the_next() {
    let observer = Arc::new(Recorder {
        panic_on_success: Some(0),
        ..Recorder::default()
    });
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .step(FnStep::new(ok(), ok()).named("ship"))
        .observer(observer.clone())
        .build();
    let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
    let panic = Error::Panicked("observer bug".to_owned());
    let display =
        "stopped before step 1 (ship): panicked: observer bug; fully compensated (1 step)";
    check(&error, (1, StopReason::Panicked, 0), panic, display);
    // The observer is not called again once it panicked.
    assert_eq!(observer.events(), ["start 0 #1"]);
}

#[test]
fn an_abort_that_cuts_the_action_in_flight_short() {
    let (abort, observer) = (AbortHandle::new(), Arc::new(Recorder::default()));
    let mut saga = SagaBuilder::new()
        .on_abort(InFlight::CutShort)
        .add_step(ok(), ok())
        .add_step(pending_forever(), ok())
        .observer(observer.clone())
        .build();
    let error = poll_until(saga.run().abortable(&abort), |_| abort.abort()).unwrap_err();
    let display = "step 1 cut short: aborted; fully compensated (2 steps)";
    check(&error, (1, StopReason::Aborted, 1), Error::Aborted, display);
    assert!(error.aborted());
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "aborted at 1",
            "failed 1: aborted",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn an_abort_whose_action_in_flight_then_succeeds_stops_before_the_next_step() {
    let (abort, gate) = (AbortHandle::new(), Arc::new(AtomicBool::new(false)));
    let observer = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .add_step(gated(&gate, Ok(())), ok())
        .step(FnStep::new(ok(), ok()).named("ship"))
        .observer(observer.clone())
        .build();
    let run = saga.run().abortable(&abort);
    let error = poll_until(run, |poll| match poll {
        0 => abort.abort(),
        _ => gate.store(true, Ordering::SeqCst),
    })
    .unwrap_err();
    let display = "stopped before step 2 (ship): aborted; fully compensated (2 steps)";
    check(&error, (2, StopReason::Aborted, 0), Error::Aborted, display);
    assert_eq!(error.failed_step_name(), Some("ship"));
    assert!(error.aborted());
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "aborted at 1",
            "ok 1",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn an_abort_whose_action_in_flight_then_fails_reports_that_failure() {
    let (abort, gate) = (AbortHandle::new(), Arc::new(AtomicBool::new(false)));
    let observer = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .add_step(gated(&gate, Err(Error::Declined)), ok())
        .add_step(ok(), ok())
        .observer(observer.clone())
        .build();
    let run = saga.run().abortable(&abort);
    let error = poll_until(run, |poll| match poll {
        0 => abort.abort(),
        _ => gate.store(true, Ordering::SeqCst),
    })
    .unwrap_err();
    let display = "step 1 failed: declined, saga aborted; fully compensated (2 steps)";
    check(&error, (1, StopReason::Failed, 1), Error::Declined, display);
    assert!(error.aborted());
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "aborted at 1",
            "failed 1: declined",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn an_abort_during_the_last_step_that_then_succeeds_is_too_late() {
    let (abort, gate) = (AbortHandle::new(), Arc::new(AtomicBool::new(false)));
    let observer = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .add_step(gated(&gate, Ok(())), ok())
        .observer(observer.clone())
        .build();
    let run = saga.run().abortable(&abort);
    let result = poll_until(run, |poll| match poll {
        0 => abort.abort(),
        _ => gate.store(true, Ordering::SeqCst),
    });
    assert_eq!(result, Ok(()));
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "aborted at 1",
            "ok 1",
            "finished ok"
        ]
    );
}

#[test]
fn an_abort_while_a_group_finishes_stops_before_the_step_after_it() {
    let (abort, gate) = (AbortHandle::new(), Arc::new(AtomicBool::new(false)));
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .parallel(|group| {
            group
                .add_step(gated(&gate, Ok(())), ok())
                .add_step(ok(), ok())
        })
        .add_step(ok(), ok())
        .build();
    let run = saga.run().abortable(&abort);
    let error = poll_until(run, |poll| match poll {
        0 => abort.abort(),
        _ => gate.store(true, Ordering::SeqCst),
    })
    .unwrap_err();
    let display = "stopped before step 3: aborted; fully compensated (3 steps)";
    check(&error, (3, StopReason::Aborted, 0), Error::Aborted, display);
}

#[test]
fn a_deadline_with_an_action_in_flight() {
    let (clock, observer) = (Clock::default(), Arc::new(Recorder::default()));
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .saga_timeout(Duration::from_millis(10))
        .add_step(ok(), ok())
        .add_step(pending_forever(), ok())
        .observer(observer.clone())
        .build();
    let error = poll_until(saga.run(), |_| clock.advance(Duration::from_millis(5))).unwrap_err();
    let display = "step 1 cut short: timed out; fully compensated (2 steps)";
    check(
        &error,
        (1, StopReason::Deadline, 1),
        Error::TimedOut,
        display,
    );
    assert!(error.timed_out() && !error.aborted());
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "deadline at 1",
            "failed 1: timed out",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn a_deadline_between_two_steps() {
    let (clock, observer) = (Clock::default(), Arc::new(Recorder::default()));
    let late = clock.clone();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .saga_timeout(Duration::from_millis(10))
        .add_step(
            move || {
                // Step 0 takes longer than the whole saga may.
                late.advance(Duration::from_millis(20));
                std::future::ready(Ok(()))
            },
            ok(),
        )
        .add_step(ok(), ok())
        .observer(observer.clone())
        .build();
    let error = poll_until(saga.run(), |_| {}).unwrap_err();
    let display = "stopped before step 1: timed out; fully compensated (1 step)";
    check(
        &error,
        (1, StopReason::Deadline, 0),
        Error::TimedOut,
        display,
    );
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "deadline at 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}

#[test]
fn display_names_every_step_it_mentions() {
    let mut saga = SagaBuilder::new()
        .step(FnStep::new(ok(), err(Error::Undo)).named("reserve"))
        .parallel_with(ParallelGroup::new(), |group| {
            group
                .step(FnStep::new(err(Error::Declined), ok()).named("charge"))
                .step(FnStep::new(err(Error::Disk), ok()).named("ship"))
        })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    let display = "step 1 (charge) failed: declined; step 2 (ship) failed too: disk; \
                   compensation of step 0 (reserve) failed: undo failed; 1 step left uncompensated";
    check(&error, (1, StopReason::Failed, 1), Error::Declined, display);
    assert_eq!(error.concurrent_failures()[0].name(), Some("ship"));
    assert_eq!(error.compensation_errors()[0].name(), Some("reserve"));
    assert_eq!(
        error.compensation_errors()[0].to_string(),
        "compensation of step 0 (reserve) failed: undo failed"
    );
}

/// A success the observer panics on still counts: the step is compensated
/// (an action) or counted as compensated (a compensation), never lost.
#[test]
fn a_success_the_observer_panics_on_still_counts() {
    for width in [1, 2] {
        let observer = Arc::new(Recorder {
            panic_on_success: Some(1),
            ..Recorder::default()
        });
        let undone = Arc::new(Mutex::new(Vec::new()));
        let undo = |step: usize| {
            let undone = undone.clone();
            move || {
                undone.lock().unwrap().push(step);
                std::future::ready(Ok::<(), Error>(()))
            }
        };
        let builder = SagaBuilder::new().add_step(ok(), undo(0));
        let builder = match width {
            1 => builder.add_step(ok(), undo(1)),
            _ => builder.parallel(|group| group.add_step(ok(), undo(1)).add_step(ok(), undo(2))),
        };
        let mut saga = builder
            .add_step(ok(), ok())
            .observer(observer.clone())
            .build();
        let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "width {width}");
        assert!(error.is_fully_compensated(), "width {width}: {error}");
        let mut undone = undone.lock().unwrap().clone();
        undone.sort_unstable();
        assert_eq!(undone, (0..=width).collect::<Vec<_>>(), "width {width}");
        assert_eq!(error.compensated_count(), width + 1, "width {width}");
    }

    let observer = Arc::new(Recorder {
        panic_on_undone: Some(1),
        ..Recorder::default()
    });
    let mut saga = SagaBuilder::new()
        .add_step(ok(), ok())
        .add_step(err(Error::Declined), ok())
        .observer(observer.clone())
        .build();
    let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(*error.error(), Error::Declined);
    assert_eq!(error.compensated_count(), 2);
    assert_eq!(
        error.to_string(),
        "step 1 failed: declined; fully compensated (2 steps)"
    );
}

/// A member of a group that panics while its siblings are woken too does
/// not strand them: every member ends and is compensated.
#[test]
fn a_group_member_that_panics_does_not_strand_its_siblings() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let undo = |step: usize| {
        let undone = undone.clone();
        move || {
            undone.lock().unwrap().push(step);
            std::future::ready(Ok::<(), Error>(()))
        }
    };
    let mut saga = SagaBuilder::new()
        .add_step(ok(), undo(0))
        .parallel(|group| {
            group
                .add_step(
                    || -> std::future::Ready<Result<(), Error>> { panic!("bug in member 1") },
                    undo(1),
                )
                .add_step(ok(), undo(2))
                .add_step(ok(), undo(3))
        })
        .build();
    let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(error.reason(), StopReason::Panicked);
    assert_eq!(error.failed_step(), 1);
    let mut undone = undone.lock().unwrap().clone();
    undone.sort_unstable();
    assert_eq!(undone, [0, 1, 2, 3]);
    assert!(error.is_fully_compensated());
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn catch_panics_polled_after_completion_panics_instead_of_looping() {
    let mut saga = SagaBuilder::new().add_step(ok(), ok()).build();
    let mut run = pin!(CatchPanics::new(saga.run()));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(run.as_mut().poll(&mut cx).is_ready());
    let _ = run.as_mut().poll(&mut cx);
}

/// An abort that lands in the very poll in which the action fails: no retry
/// starts, the failure is the saga's, the abort is noted, and the observer
/// hears of it after the failure.
#[test]
fn an_abort_landing_in_the_poll_the_action_fails_in() {
    let (abort, observer) = (AbortHandle::new(), Arc::new(Recorder::default()));
    let trigger = abort.clone();
    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(3))
        .add_step(ok(), ok())
        .add_step(
            move || {
                trigger.abort();
                std::future::ready(Err::<(), _>(Error::Declined))
            },
            ok(),
        )
        .add_step(ok(), ok())
        .observer(observer.clone())
        .build();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    let display = "step 1 failed: declined, saga aborted; fully compensated (2 steps)";
    check(&error, (1, StopReason::Failed, 1), Error::Declined, display);
    assert!(error.aborted());
    assert_eq!(
        observer.events(),
        [
            "start 0 #1",
            "ok 0",
            "start 1 #1",
            "failed 1: declined",
            "aborted at 1",
            "undone 1",
            "undone 0",
            &format!("finished: {display}"),
        ]
    );
}
