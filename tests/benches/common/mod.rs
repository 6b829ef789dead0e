//! What the benchmarks share: the step closures, the hand-written baselines,
//! the saga builders and a `Waker::noop` `block_on`.
//!
//! Every variant runs the *same* closures: an action adds one to a counter and
//! returns `Ok` (the last one returns `Err` on the failure path, after adding:
//! a failed action may have partly happened), a compensation takes one away.
//! The counter is a `Relaxed` atomic updated with a load and a store: `Send`
//! and `Sync`, as a `Saga` needs, but without a locked read-modify-write, so
//! it costs about as much as a plain `u64` and does not hide engine overhead.
//! The compiler does not merge atomic operations, so the static baseline
//! cannot fold N increments into one.
//!
//! With `PENDING = true` every action and compensation future returns
//! `Pending` once (after waking itself) before it completes, so each step
//! goes through the executor once per action and once per compensation.
// Each bench binary uses a different part of this module, and it is private to each.
#![allow(dead_code, unreachable_pub)]

use core::future::{Future, poll_fn};
use core::hint::black_box;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use core::time::Duration;
use std::sync::{Arc, Mutex};

use saga_core::{
    CompensationMode, FnStep, Observer, Saga, SagaBuilder, SagaError, Step, StepRef, TimedOut,
    TypedStep,
};

/// The step count of each benchmark.
pub const SIZES: [usize; 4] = [1, 10, 100, 10_000];

/// The error every action and compensation may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

/// A saga with a sleeper needs its error to be made from `TimedOut`. No bench
/// step ever times out (the timeouts are an hour long), so nothing builds it.
impl From<TimedOut> for Failed {
    fn from(_: TimedOut) -> Self {
        Failed
    }
}

/// A durable saga's error is made from `Crashed` (for what a resumed run
/// reports) and displayed in its journal.
impl From<saga_core::Crashed> for Failed {
    fn from(_: saga_core::Crashed) -> Self {
        Failed
    }
}

impl core::fmt::Display for Failed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("failed")
    }
}

/// An observer that does nothing: every method is the trait's empty default.
/// What attaching an observer costs, with nothing observed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

impl Observer<Failed> for Noop {}

/// A counter the steps add to and take from.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter that lives for the whole benchmark (steps are `'static`).
    pub fn leak() -> &'static Counter {
        Box::leak(Box::default())
    }

    #[inline]
    pub fn add(&self) -> u64 {
        let value = self.0.load(Ordering::Relaxed).wrapping_add(1);
        self.0.store(value, Ordering::Relaxed);
        value
    }

    #[inline]
    pub fn take(&self) {
        let value = self.0.load(Ordering::Relaxed).wrapping_sub(1);
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A future that returns `Pending` once, waking itself, then `Ready`.
#[derive(Debug, Default)]
pub struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Polls `future` to completion with a no-op waker, re-polling at once after
/// `Pending` (every future here wakes itself before it returns `Pending`).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// A closure returning a future of `Result<T, Failed>`, with the future type
/// nameable (`impl FnMut() -> impl Future` is not allowed in a return type).
/// Call sites wrap it back into a closure: `move || step.call()`.
pub trait StepFn<T>: Send + 'static {
    type Future: Future<Output = Result<T, Failed>> + Send + 'static;

    fn call(&mut self) -> Self::Future;
}

impl<F, Fut, T> StepFn<T> for F
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Failed>> + Send + 'static,
{
    type Future = Fut;

    #[inline]
    fn call(&mut self) -> Fut {
        self()
    }
}

/// The action closure: adds one, then fails when `fail`.
pub fn action<const PENDING: bool>(counter: &'static Counter, fail: bool) -> impl StepFn<()> {
    move || async move {
        if PENDING {
            YieldOnce::default().await;
        }
        counter.add();
        if fail { Err(Failed) } else { Ok(()) }
    }
}

/// The action closure of the typed steps: the same, returning the new count.
pub fn typed_action<const PENDING: bool>(
    counter: &'static Counter,
    fail: bool,
) -> impl StepFn<u64> {
    move || async move {
        if PENDING {
            YieldOnce::default().await;
        }
        let value = counter.add();
        if fail { Err(Failed) } else { Ok(value) }
    }
}

/// The compensation closure: takes one away.
pub fn compensation<const PENDING: bool>(counter: &'static Counter) -> impl StepFn<()> {
    move || async move {
        if PENDING {
            YieldOnce::default().await;
        }
        counter.take();
        Ok(())
    }
}

/// Whether step `index` of `steps` fails.
fn fails(index: usize, steps: usize, fail_last: bool) -> bool {
    fail_last && index + 1 == steps
}

// ---------------------------------------------------------------------------
// 1. Static hand-written code: one concrete closure type, no boxing.

/// The static steps: `(action, compensation)` pairs of one concrete type.
pub fn static_steps<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Vec<(impl StepFn<()>, impl StepFn<()>)> {
    (0..steps)
        .map(|index| {
            (
                action::<PENDING>(counter, fails(index, steps, fail_last)),
                compensation::<PENDING>(counter),
            )
        })
        .collect()
}

/// Runs the static steps: actions in sequence; on failure, the failed step's
/// compensation and then the earlier ones in reverse, stopping at the first
/// compensation error. Returns the failed step and the action error.
pub async fn run_static<A, C>(steps: &mut [(A, C)]) -> Result<(), (usize, Failed)>
where
    A: StepFn<()>,
    C: StepFn<()>,
{
    for index in 0..steps.len() {
        if let Err(error) = steps[index].0.call().await {
            for (_, compensation) in steps[..=index].iter_mut().rev() {
                compensation.call().await.map_err(|error| (index, error))?;
            }
            return Err((index, error));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Dynamic hand-written code: boxed closures returning boxed futures.

/// A boxed future, as a user without a library writes it.
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<(), Failed>> + Send>>;
/// A boxed closure returning a boxed future.
pub type BoxFn = Box<dyn FnMut() -> BoxFuture + Send>;

/// The dynamic steps: the same closures, boxed, returning boxed futures.
pub fn dynamic_steps<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Vec<(BoxFn, BoxFn)> {
    (0..steps)
        .map(|index| {
            let mut action = action::<PENDING>(counter, fails(index, steps, fail_last));
            let mut compensation = compensation::<PENDING>(counter);
            (
                Box::new(move || Box::pin(action.call()) as BoxFuture) as BoxFn,
                Box::new(move || Box::pin(compensation.call()) as BoxFuture) as BoxFn,
            )
        })
        .collect()
}

/// Runs the dynamic steps with a manual rollback list: each step's
/// compensation is pushed before its action runs (so a failed action is
/// compensated too), and popped in reverse on failure.
pub async fn run_dynamic(steps: &mut [(BoxFn, BoxFn)]) -> Result<(), (usize, Failed)> {
    let mut rollback: Vec<&mut BoxFn> = Vec::with_capacity(steps.len());
    for (index, (action, compensation)) in steps.iter_mut().enumerate() {
        rollback.push(compensation);
        if let Err(error) = action().await {
            while let Some(compensation) = rollback.pop() {
                compensation().await.map_err(|error| (index, error))?;
            }
            return Err((index, error));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. and 4. The engine.

/// A saga of pysagas-style closure steps (`SagaBuilder::add_step`).
pub fn fn_saga<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Saga<Failed> {
    fn_saga_with::<PENDING, _>(counter, steps, fail_last, |builder| builder)
}

/// A saga builder of `Send` steps with any timing (after `sleeper` or not).
pub type Builder<T> = SagaBuilder<Failed, dyn Step<Failed> + Send + 'static, T>;

/// The [`fn_saga`] steps on a builder that `configure` set up first
/// (an observer, a sleeper and timeouts, a compensation mode).
pub fn fn_saga_with<const PENDING: bool, T>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
    configure: impl FnOnce(SagaBuilder<Failed>) -> Builder<T>,
) -> Saga<Failed> {
    let mut builder = configure(SagaBuilder::new());
    for index in 0..steps {
        let mut act = action::<PENDING>(counter, fails(index, steps, fail_last));
        let mut undo = compensation::<PENDING>(counter);
        builder = builder.add_step(move || act.call(), move || undo.call());
    }
    builder.build()
}

/// [`fn_saga`] with a no-op observer ([`Noop`]) attached.
pub fn observer_saga<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Saga<Failed> {
    fn_saga_with::<PENDING, _>(counter, steps, fail_last, |builder| builder.observer(Noop))
}

/// A timeout that never fires within a benchmark.
pub const NEVER: Duration = Duration::from_secs(3600);

/// [`fn_saga`] with a sleeper whose sleep never completes, and an action and
/// a compensation timeout of an hour ([`NEVER`]): timeouts armed on every
/// attempt that never fire.
pub fn timeout_saga<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Saga<Failed> {
    fn_saga_with::<PENDING, _>(counter, steps, fail_last, |builder| {
        builder
            .sleeper(|_duration: Duration| core::future::pending::<()>())
            .action_timeout(NEVER)
            .compensation_timeout(NEVER)
    })
}

/// [`fn_saga`] with every compensation run at once
/// (`CompensationMode::Concurrent`).
pub fn concurrent_undo_saga<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Saga<Failed> {
    fn_saga_with::<PENDING, _>(counter, steps, fail_last, |builder| {
        builder.compensation_mode(CompensationMode::Concurrent)
    })
}

/// One pysagas-style step, as `fn_saga` builds it (for its size).
pub fn fn_step<const PENDING: bool>(
    counter: &'static Counter,
    fail: bool,
) -> impl Step<Failed> + Send + 'static {
    let mut act = action::<PENDING>(counter, fail);
    let mut undo = compensation::<PENDING>(counter);
    FnStep::new(move || act.call(), move || undo.call())
}

/// One by-value typed step, as `typed_saga` builds it (for its size).
pub fn typed_step<const PENDING: bool>(
    counter: &'static Counter,
    fail: bool,
) -> impl Step<Failed> + Send + 'static {
    let mut act = typed_action::<PENDING>(counter, fail);
    let mut undo = compensation::<PENDING>(counter);
    TypedStep::by_value(move || act.call(), move |_count: u64| undo.call())
}

/// One by-reference typed step, as `typed_ref_saga` builds it (for its size).
pub fn typed_ref_step<const PENDING: bool>(
    counter: &'static Counter,
    fail: bool,
) -> impl Step<Failed> + Send + 'static {
    let mut act = typed_action::<PENDING>(counter, fail);
    let mut undo = compensation::<PENDING>(counter);
    TypedStep::by_ref(move || act.call(), move |_count: &u64| undo.call())
}

/// A saga of typed steps whose compensation takes the action's value
/// (`SagaBuilder::add_typed_step`). A failed typed action is not compensated.
pub fn typed_saga<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Saga<Failed> {
    let mut builder = SagaBuilder::new();
    for index in 0..steps {
        let mut undo = compensation::<PENDING>(counter);
        let mut act = typed_action::<PENDING>(counter, fails(index, steps, fail_last));
        builder = builder.add_typed_step(move || act.call(), move |_count: u64| undo.call());
    }
    builder.build()
}

/// A saga of typed steps whose compensation borrows the action's value
/// (`SagaBuilder::add_typed_step_ref`).
pub fn typed_ref_saga<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Saga<Failed> {
    let mut builder = SagaBuilder::new();
    for index in 0..steps {
        let mut undo = compensation::<PENDING>(counter);
        let mut act = typed_action::<PENDING>(counter, fails(index, steps, fail_last));
        builder = builder.add_typed_step_ref(move || act.call(), move |_count: &u64| undo.call());
    }
    builder.build()
}

/// A hand-written `Step`: the same work as the closures, as a state machine
/// with no futures at all.
#[derive(Debug)]
pub struct CounterStep<const PENDING: bool> {
    counter: &'static Counter,
    fail: bool,
    // Whether the current action (compensation) attempt already returned `Pending`.
    action_yielded: bool,
    compensation_yielded: bool,
}

impl<const PENDING: bool> CounterStep<PENDING> {
    pub fn new(counter: &'static Counter, fail: bool) -> Self {
        CounterStep {
            counter,
            fail,
            action_yielded: false,
            compensation_yielded: false,
        }
    }
}

impl<const PENDING: bool> Step<Failed> for CounterStep<PENDING> {
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        let this = self.get_mut();
        if PENDING && !this.action_yielded {
            this.action_yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.action_yielded = false;
        this.counter.add();
        Poll::Ready(if this.fail { Err(Failed) } else { Ok(()) })
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        let this = self.get_mut();
        if PENDING && !this.compensation_yielded {
            this.compensation_yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.compensation_yielded = false;
        this.counter.take();
        Poll::Ready(Ok(()))
    }

    fn reset(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.action_yielded = false;
        this.compensation_yielded = false;
    }

    fn cancel(self: Pin<&mut Self>) {
        // Nothing is in flight but the `Pending` already returned: forget it.
        self.reset();
    }
}

/// A saga of hand-written [`CounterStep`]s (`SagaBuilder::step`).
pub fn user_step_saga<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Saga<Failed> {
    let mut builder = SagaBuilder::new();
    for index in 0..steps {
        builder = builder.step(CounterStep::<PENDING>::new(
            counter,
            fails(index, steps, fail_last),
        ));
    }
    builder.build()
}

// ---------------------------------------------------------------------------
// 5. The floor under any engine over `dyn Step`: the steps stored as the
//    engine stores them, driven by the simplest loop (no engine, no
//    bookkeeping), with or without the observer calls the engine makes.

/// A step as the engine stores it.
pub type DynStep = Pin<Box<dyn Step<Failed> + Send>>;
/// The observer as the engine stores it.
pub type BoxObserver = Box<dyn Observer<Failed> + Send + Sync>;

/// The [`fn_saga`] steps (the same `FnStep`s over the same closures), boxed
/// and type-erased as a `Saga` stores them. `black_box` hides the concrete
/// types, so every call goes through the vtable.
pub fn floor_fn_steps<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Vec<DynStep> {
    let list = (0..steps)
        .map(|index| {
            Box::pin(fn_step::<PENDING>(counter, fails(index, steps, fail_last))) as DynStep
        })
        .collect();
    black_box(list)
}

/// The [`user_step_saga`] steps ([`CounterStep`]), boxed and type-erased.
pub fn floor_user_steps<const PENDING: bool>(
    counter: &'static Counter,
    steps: usize,
    fail_last: bool,
) -> Vec<DynStep> {
    let list = (0..steps)
        .map(|index| {
            Box::pin(CounterStep::<PENDING>::new(
                counter,
                fails(index, steps, fail_last),
            )) as DynStep
        })
        .collect();
    black_box(list)
}

/// The no-op observer ([`Noop`]), boxed and type-erased as a `Saga` stores it.
pub fn floor_observer() -> BoxObserver {
    black_box(Box::new(Noop))
}

/// Runs type-erased steps with the simplest loop: each action polled until
/// `Ready` (`Pending` goes back to the executor); on `Err`, the steps that
/// ran (the failed one too: an `FnStep` compensates a failed action) polled
/// to compensation in reverse, stopping at the first compensation error.
/// Returns the failed step and the action error, like [`run_static`].
pub async fn run_floor(steps: &mut [DynStep]) -> Result<(), (usize, Failed)> {
    for index in 0..steps.len() {
        let step = &mut steps[index];
        if let Err(error) = poll_fn(|cx| step.as_mut().poll_action(cx)).await {
            for step in steps[..=index].iter_mut().rev() {
                poll_fn(|cx| step.as_mut().poll_compensate(cx))
                    .await
                    .map_err(|error| (index, error))?;
            }
            return Err((index, error));
        }
    }
    Ok(())
}

/// `at` naming step `index`: both fields overwritten (`StepRef` has no
/// others), the name through the vtable as the engine gets it.
#[inline(always)]
fn step_ref<'a>(at: StepRef<'a>, index: usize, step: &'a DynStep) -> StepRef<'a> {
    let mut at = at;
    at.index = index;
    at.name = step.name();
    at
}

/// [`run_floor`] plus the observer calls the engine makes (each with a
/// [`StepRef`] made from `Step::name()`): `saga_started`; per step
/// `action_started` and `action_succeeded` (or `action_failed`); per
/// compensation `compensation_started` and `compensation_succeeded`;
/// `saga_finished`, with `report` (a `SagaError` the engine built once) on
/// failure. `at` is any `StepRef` (see [`with_step_ref`]).
pub async fn run_floor_observed(
    steps: &mut [DynStep],
    observer: &(dyn Observer<Failed> + Send + Sync),
    at: StepRef<'_>,
    report: &SagaError<Failed>,
) -> Result<(), (usize, Failed)> {
    observer.saga_started(steps.len());
    for index in 0..steps.len() {
        observer.action_started(step_ref(at, index, &steps[index]), 1);
        let step = &mut steps[index];
        match poll_fn(|cx| step.as_mut().poll_action(cx)).await {
            Ok(()) => observer.action_succeeded(step_ref(at, index, &steps[index]), 1),
            Err(error) => {
                observer.action_failed(step_ref(at, index, &steps[index]), 1, &error);
                for undo in (0..=index).rev() {
                    observer.compensation_started(step_ref(at, undo, &steps[undo]), 1);
                    let step = &mut steps[undo];
                    poll_fn(|cx| step.as_mut().poll_compensate(cx))
                        .await
                        .map_err(|error| (index, error))?;
                    observer.compensation_succeeded(step_ref(at, undo, &steps[undo]), 1);
                }
                observer.saga_finished(Err(report));
                return Err((index, error));
            }
        }
    }
    observer.saga_finished(Ok(()));
    Ok(())
}

/// What [`run_floor_observed`] runs on: the steps, the observer, and a
/// report for `saga_finished` on failure.
pub struct Observed {
    pub steps: Vec<DynStep>,
    pub observer: BoxObserver,
    pub report: SagaError<Failed>,
}

impl Observed {
    /// `steps` with `observer`, and a report from a failed one-step saga run.
    pub fn new(steps: Vec<DynStep>, observer: BoxObserver) -> Self {
        let mut saga = SagaBuilder::new()
            .add_step(|| async { Err::<(), _>(Failed) }, || async { Ok(()) })
            .build();
        let report = block_on(saga.run()).expect_err("the one-step saga fails");
        Observed {
            steps,
            observer,
            report,
        }
    }

    /// One [`run_floor_observed`] run.
    pub fn run(&mut self, at: StepRef<'_>) -> Result<(), (usize, Failed)> {
        block_on(run_floor_observed(
            &mut self.steps,
            &*self.observer,
            at,
            &self.report,
        ))
    }
}

/// An observer that hands the `StepRef` of its first `action_started` to a
/// job, once.
type StepRefJob = Box<dyn for<'a> FnOnce(StepRef<'a>) + Send>;

struct Lender(Mutex<Option<StepRefJob>>);

impl Observer<Failed> for Lender {
    fn action_started(&self, at: StepRef<'_>, _attempt: u32) {
        let job = self.0.lock().expect("no job panicked").take();
        if let Some(job) = job {
            job(at);
        }
    }
}

/// Calls `f` with a `StepRef` and returns what it returns. `StepRef` is
/// `#[non_exhaustive]` (only saga-core builds one, and `unsafe` is forbidden
/// here), so `f` runs inside the `action_started` call of a one-step saga
/// with an observer, on the `StepRef` the engine passed; [`step_ref`]
/// overwrites both of its fields for every call, which is all building one
/// costs. The one-step run around `f` is outside anything `f` times.
pub fn with_step_ref<R: Send + 'static>(
    f: impl for<'a> FnOnce(StepRef<'a>) -> R + Send + 'static,
) -> R {
    let output = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&output);
    let job: StepRefJob = Box::new(move |at| {
        let value = f(at);
        *slot.lock().expect("not poisoned") = Some(value);
    });
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok::<(), Failed>(()) }, || async { Ok(()) })
        .observer(Lender(Mutex::new(Some(job))))
        .build();
    block_on(saga.run()).expect("the one-step saga succeeds");
    let value = output.lock().expect("not poisoned").take();
    value.expect("the engine called action_started")
}

/// An observer that records every call, to compare the floor's calls with
/// the engine's.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, call: &str, at: StepRef<'_>, attempt: u32) {
        let entry = format!("{call} {} {:?} {attempt}", at.index, at.name);
        self.0.lock().expect("not poisoned").push(entry);
    }

    pub fn take(&self) -> Vec<String> {
        core::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

impl Observer<Failed> for Recorder {
    fn saga_started(&self, steps: usize) {
        let entry = format!("saga_started {steps}");
        self.0.lock().expect("not poisoned").push(entry);
    }
    fn saga_finished(&self, result: Result<(), &SagaError<Failed>>) {
        let entry = format!("saga_finished {}", result.is_ok());
        self.0.lock().expect("not poisoned").push(entry);
    }
    fn action_started(&self, at: StepRef<'_>, attempt: u32) {
        self.push("action_started", at, attempt);
    }
    fn action_succeeded(&self, at: StepRef<'_>, attempt: u32) {
        self.push("action_succeeded", at, attempt);
    }
    fn action_failed(&self, at: StepRef<'_>, attempt: u32, _error: &Failed) {
        self.push("action_failed", at, attempt);
    }
    fn action_cut_short(&self, at: StepRef<'_>, attempt: u32) {
        self.push("action_cut_short", at, attempt);
    }
    fn action_retried(&self, at: StepRef<'_>, next_attempt: u32, _delay: Duration) {
        self.push("action_retried", at, next_attempt);
    }
    fn compensation_started(&self, at: StepRef<'_>, attempt: u32) {
        self.push("compensation_started", at, attempt);
    }
    fn compensation_succeeded(&self, at: StepRef<'_>, attempt: u32) {
        self.push("compensation_succeeded", at, attempt);
    }
    fn compensation_failed(&self, at: StepRef<'_>, attempt: u32, _error: &Failed) {
        self.push("compensation_failed", at, attempt);
    }
    fn compensation_retried(&self, at: StepRef<'_>, next_attempt: u32, _delay: Duration) {
        self.push("compensation_retried", at, next_attempt);
    }
    fn aborted(&self, at: StepRef<'_>) {
        self.push("aborted", at, 0);
    }
    fn deadline_passed(&self, at: StepRef<'_>) {
        self.push("deadline_passed", at, 0);
    }
}

/// Checks that [`run_floor_observed`] makes the engine's observer calls, in
/// the engine's order, on `steps` steps of [`fn_saga`].
pub fn check_floor_calls<const PENDING: bool>(steps: usize, fail_last: bool) {
    let counter = Counter::leak();
    let recorder = Arc::new(Recorder::default());
    let observer = Arc::clone(&recorder);
    let mut saga = fn_saga_with::<PENDING, _>(counter, steps, fail_last, |builder| {
        builder.observer(observer)
    });
    let _ = block_on(saga.run());
    let engine = recorder.take();
    // saga_started, two calls per action, two per compensation, saga_finished.
    let calls = 2 + 2 * steps + if fail_last { 2 * steps } else { 0 };
    assert_eq!(
        engine.len(),
        calls,
        "the engine's observer calls: {engine:?}"
    );

    let floor = Observed::new(
        floor_fn_steps::<PENDING>(counter, steps, fail_last),
        Box::new(Arc::clone(&recorder)),
    );
    let _ = with_step_ref(move |at| {
        let mut floor = floor;
        floor.run(at)
    });
    assert_eq!(recorder.take(), engine, "the floor's observer calls");
}
