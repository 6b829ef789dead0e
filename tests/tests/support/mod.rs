//! Shared fakes for the conformance suite: executors, a `Yield` future, a
//! recording ledger, steps built from a declarative shape, and a small
//! reference model of the rules that the engine's behaviour is checked against.
//!
//! Each test file does `mod support;` and uses what it needs.
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use saga_core::{
    CompensationMode, FnStep, Recovery, Saga, SagaBuilder, SagaError, Step, TypedStep,
};

// ---------------------------------------------------------------------------
// Executors
// ---------------------------------------------------------------------------

/// More polls than any scenario here needs: a future still pending after this
/// many polls is taken to hang.
pub const MAX_POLLS: usize = 50_000_000;

/// Polls `future` to completion with `Waker::noop()`, re-polling at once after
/// every `Pending`. Returns the output and the number of polls.
pub fn block_on_counting<F: Future>(future: F) -> (F::Output, usize) {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, polls);
        }
        assert!(
            polls < MAX_POLLS,
            "future still pending after {MAX_POLLS} polls: it hangs"
        );
    }
}

/// Polls `future` to completion with `Waker::noop()` (see [`block_on_counting`]).
pub fn block_on<F: Future>(future: F) -> F::Output {
    block_on_counting(future).0
}

/// A waker that records that it was woken and unparks the executor's thread.
struct Flag {
    woken: AtomicBool,
    wakes: AtomicUsize,
    thread: Thread,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// How long the adversarial executor waits for a wake-up before calling it
/// lost. Only a hang detector: nothing asserts how fast anything is.
const LOST_WAKE_UP: Duration = Duration::from_secs(20);

/// An executor that re-polls only when woken, and that alternates between two
/// distinct wakers from one poll to the next: a future that returns `Pending`
/// without waking the waker of *that* poll (now or later) is a lost wake-up,
/// and this panics. Returns the output and the number of polls.
pub fn block_on_adversarial_counting<F: Future>(future: F) -> (F::Output, usize) {
    let mut future = std::pin::pin!(future);
    let flags = [0, 1].map(|_| {
        Arc::new(Flag {
            woken: AtomicBool::new(false),
            wakes: AtomicUsize::new(0),
            thread: std::thread::current(),
        })
    });
    let wakers = flags.clone().map(Waker::from);
    let mut polls = 0;
    loop {
        let which = polls % 2;
        let flag = &flags[which];
        flag.woken.store(false, Ordering::SeqCst);
        let mut cx = Context::from_waker(&wakers[which]);
        polls += 1;
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, polls);
        }
        assert!(
            polls < MAX_POLLS,
            "future still pending after {MAX_POLLS} polls"
        );
        let deadline = Instant::now() + LOST_WAKE_UP;
        while !flag.woken.load(Ordering::SeqCst) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "lost wake-up: poll {polls} returned Pending and its waker was never woken"
            );
            std::thread::park_timeout(deadline - now);
        }
    }
}

/// See [`block_on_adversarial_counting`].
pub fn block_on_adversarial<F: Future>(future: F) -> F::Output {
    block_on_adversarial_counting(future).0
}

/// The executors every scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// [`block_on`]: `Waker::noop()`, re-polled at once.
    Noop,
    /// [`block_on_adversarial`]: re-polled only when woken, wakers alternate.
    Adversarial,
    /// `smol::block_on`.
    Smol,
    /// A tokio current-thread runtime.
    TokioCurrentThread,
    /// A tokio multi-thread runtime; the scenario is spawned onto a worker.
    TokioMultiThread,
    /// `async_std::task::block_on`.
    AsyncStd,
}

impl Exec {
    /// Every executor.
    pub const ALL: [Exec; 6] = [
        Exec::Noop,
        Exec::Adversarial,
        Exec::Smol,
        Exec::TokioCurrentThread,
        Exec::TokioMultiThread,
        Exec::AsyncStd,
    ];

    /// Runs `future` to completion on this executor. A panic in the future is
    /// propagated.
    pub fn block_on<F>(self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Exec::Noop => block_on(future),
            Exec::Adversarial => block_on_adversarial(future),
            Exec::Smol => smol::block_on(future),
            Exec::TokioCurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a tokio current-thread runtime")
                .block_on(future),
            Exec::TokioMultiThread => {
                let runtime = multi_thread_runtime();
                match runtime.block_on(runtime.spawn(future)) {
                    Ok(output) => output,
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    Err(error) => panic!("the spawned scenario did not finish: {error}"),
                }
            }
            Exec::AsyncStd => async_std::task::block_on(future),
        }
    }
}

/// The shared tokio multi-thread runtime (two workers: the CI machine has two
/// cores).
pub fn multi_thread_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("a tokio multi-thread runtime")
    })
}

/// Runs the scenario that `scenario` makes on every executor in [`Exec::ALL`],
/// a fresh future each time. The executor's name is printed first, so a
/// failure says where it happened.
pub fn on_every_executor<F, Fut>(scenario: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for exec in Exec::ALL {
        eprintln!("scenario on {exec:?}");
        exec.block_on(scenario());
    }
}

// ---------------------------------------------------------------------------
// Futures
// ---------------------------------------------------------------------------

/// A future that returns `Pending` `n` times, waking itself each time (by
/// reference and through a clone, alternately), then `Ready(())`.
#[derive(Debug)]
pub struct Yield(pub u32);

impl Future for Yield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        if self.0 % 2 == 0 {
            cx.waker().wake_by_ref();
        } else {
            // Deliberately through a clone: wakers outlive the poll that gave them.
            #[allow(clippy::waker_clone_wake)]
            cx.waker().clone().wake();
        }
        Poll::Pending
    }
}

/// Counts live objects: each [`Tracker`] made from it is one, until dropped.
#[derive(Debug, Clone, Default)]
pub struct Live(Arc<AtomicUsize>);

impl Live {
    /// A new object to count.
    pub fn track(&self) -> Tracker {
        self.0.fetch_add(1, Ordering::SeqCst);
        Tracker(self.0.clone())
    }

    /// How many trackers are alive.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One live object of a [`Live`] count.
#[derive(Debug)]
pub struct Tracker(Arc<AtomicUsize>);

impl Drop for Tracker {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// The ledger
// ---------------------------------------------------------------------------

/// What the steps of a scenario did, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Step `i`'s action started.
    Action(usize),
    /// Step `i`'s action finished (whether it then failed or not).
    ActionDone(usize),
    /// Step `i`'s compensation started.
    Undo(usize),
    /// Step `i`'s compensation finished (whether it then failed or not).
    UndoDone(usize),
}

/// A shared, recording log of [`Event`]s, plus the Step-protocol violations
/// that [`Checked`] steps saw.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Event>>>, Arc<Mutex<Vec<String>>>);

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one event.
    pub fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Everything recorded so far, and clears the log.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// Records a violation of the Step protocol by the engine.
    pub fn violation(&self, what: String) {
        self.1.lock().unwrap().push(what);
    }

    /// The protocol violations recorded so far.
    pub fn violations(&self) -> Vec<String> {
        self.1.lock().unwrap().clone()
    }

    /// The steps whose compensation started, in order.
    pub fn undone(&self) -> Vec<usize> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Undo(step) => Some(step),
                _ => None,
            })
            .collect()
    }

    /// The steps whose action started, in order.
    pub fn acted(&self) -> Vec<usize> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Action(step) => Some(step),
                _ => None,
            })
            .collect()
    }
}

/// The error type of the scenarios: which step's action or compensation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestError {
    /// Step `i`'s action failed.
    Action(usize),
    /// Step `i`'s compensation failed.
    Undo(usize),
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestError::Action(step) => write!(f, "action {step} failed"),
            TestError::Undo(step) => write!(f, "undo {step} failed"),
        }
    }
}

impl std::error::Error for TestError {}

/// The async body of a recording action: `Action(i)`, `yields` suspensions,
/// `ActionDone(i)`, then `Ok(value)` or `Err(Action(i))`.
pub async fn act<T>(
    ledger: Ledger,
    step: usize,
    yields: u32,
    fails: bool,
    value: T,
) -> Result<T, TestError> {
    ledger.push(Event::Action(step));
    Yield(yields).await;
    ledger.push(Event::ActionDone(step));
    if fails {
        Err(TestError::Action(step))
    } else {
        Ok(value)
    }
}

/// The async body of a recording compensation: `Undo(i)`, `yields`
/// suspensions, `UndoDone(i)`, then `Ok(())` or `Err(Undo(i))`.
pub async fn undo(ledger: Ledger, step: usize, yields: u32, fails: bool) -> Result<(), TestError> {
    ledger.push(Event::Undo(step));
    Yield(yields).await;
    ledger.push(Event::UndoDone(step));
    if fails {
        Err(TestError::Undo(step))
    } else {
        Ok(())
    }
}

/// A pysagas-style recording step: an action and a compensation as closures.
pub fn recording_step(
    ledger: &Ledger,
    step: usize,
    yields: u32,
    action_fails: bool,
    undo_fails: bool,
) -> impl Step<TestError> + Send + 'static {
    let (a, c) = (ledger.clone(), ledger.clone());
    FnStep::new(
        move || act(a.clone(), step, yields, action_fails, ()),
        move || undo(c.clone(), step, yields, undo_fails),
    )
}

/// A saga of `len` recording steps in which only step `fail_at` (if any) fails
/// its action; no compensation fails.
pub fn simple_saga(
    ledger: &Ledger,
    len: usize,
    fail_at: Option<usize>,
    yields: u32,
) -> Saga<TestError> {
    let mut builder = SagaBuilder::new();
    for step in 0..len {
        builder = builder.step(recording_step(
            ledger,
            step,
            yields,
            fail_at == Some(step),
            false,
        ));
    }
    builder.build()
}

// ---------------------------------------------------------------------------
// Saga shapes, built for real
// ---------------------------------------------------------------------------

/// The kind of a step in a [`Shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An [`FnStep`] (pysagas form), compensating its own failed action or not.
    Fn {
        /// `FnStep::compensate_failed_action`.
        compensate_failed: bool,
    },
    /// `TypedStep::by_value`.
    ByValue,
    /// `TypedStep::by_ref`.
    ByRef,
    /// `TypedStep::by_option`.
    ByOption,
    /// A hand-written [`Step`] ([`CustomStep`]).
    Custom {
        /// What its `compensates_failed_action` returns.
        compensate_failed: bool,
    },
}

/// One step of a [`Shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpec {
    /// How the step is built.
    pub kind: Kind,
    /// Whether its action fails (after recording `Action`/`ActionDone`).
    pub action_fails: bool,
    /// Whether its compensation fails (after recording `Undo`/`UndoDone`).
    pub undo_fails: bool,
    /// What the classifier (when the shape has one) says about its action error.
    pub recovery: Recovery,
    /// How many times its action suspends.
    pub action_yields: u32,
    /// How many times its compensation suspends.
    pub undo_yields: u32,
}

impl StepSpec {
    /// A pysagas-form step that succeeds and is undone successfully.
    pub fn ok() -> Self {
        StepSpec {
            kind: Kind::Fn {
                compensate_failed: true,
            },
            action_fails: false,
            undo_fails: false,
            recovery: Recovery::Compensate,
            action_yields: 0,
            undo_yields: 0,
        }
    }
}

/// A saga, described: its steps, its compensation mode, and whether it has a
/// classifier (which then answers each step's `recovery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
    /// The saga's compensation mode.
    pub mode: CompensationMode,
    /// Whether the saga has a classifier.
    pub classifier: bool,
}

/// The value step `i`'s typed action returns; its compensation checks it.
#[derive(Debug, PartialEq, Eq)]
pub struct Token(pub usize);

/// Builds the saga that `shape` describes, recording into `ledger`.
pub fn build_shape(shape: &Shape, ledger: &Ledger) -> Saga<TestError> {
    let mut builder = SagaBuilder::new().compensation_mode(shape.mode);
    for (i, spec) in shape.steps.iter().copied().enumerate() {
        builder = add_spec(builder, i, spec, ledger);
    }
    if shape.classifier {
        let decisions: Vec<Recovery> = shape.steps.iter().map(|spec| spec.recovery).collect();
        builder = builder.classify(move |error: &TestError| match *error {
            TestError::Action(step) => decisions[step],
            TestError::Undo(step) => panic!("the classifier saw compensation error of step {step}"),
        });
    }
    builder.build()
}

fn add_spec(
    builder: SagaBuilder<TestError>,
    i: usize,
    spec: StepSpec,
    ledger: &Ledger,
) -> SagaBuilder<TestError> {
    let (a, c) = (ledger.clone(), ledger.clone());
    let StepSpec {
        action_fails: fails,
        undo_fails,
        action_yields: ay,
        undo_yields: uy,
        ..
    } = spec;
    match spec.kind {
        Kind::Fn { compensate_failed } => builder.step(Checked::new(
            ledger,
            i,
            FnStep::new(
                move || act(a.clone(), i, ay, fails, i),
                move || undo(c.clone(), i, uy, undo_fails),
            )
            .compensate_failed_action(compensate_failed),
        )),
        Kind::ByValue => builder.step(Checked::new(
            ledger,
            i,
            TypedStep::by_value(
                move || act(a.clone(), i, ay, fails, Token(i)),
                move |token: Token| {
                    assert_eq!(
                        token,
                        Token(i),
                        "step {i}'s compensation got another step's value"
                    );
                    undo(c.clone(), i, uy, undo_fails)
                },
            ),
        )),
        Kind::ByRef => builder.step(Checked::new(
            ledger,
            i,
            TypedStep::by_ref(
                move || act(a.clone(), i, ay, fails, Token(i)),
                move |token: &Token| {
                    assert_eq!(
                        *token,
                        Token(i),
                        "step {i}'s compensation got another step's value"
                    );
                    undo(c.clone(), i, uy, undo_fails)
                },
            ),
        )),
        Kind::ByOption => builder.step(Checked::new(
            ledger,
            i,
            TypedStep::by_option(
                move || act(a.clone(), i, ay, fails, Token(i)),
                move |token: Option<Token>| {
                    let expected = if fails { None } else { Some(Token(i)) };
                    assert_eq!(token, expected, "step {i}'s by-option compensation input");
                    undo(c.clone(), i, uy, undo_fails)
                },
            ),
        )),
        Kind::Custom { compensate_failed } => builder.step(Checked::new(
            ledger,
            i,
            CustomStep::new(ledger, i, spec, compensate_failed),
        )),
    }
}

/// A hand-written [`Step`]: a state machine with no closures and no futures,
/// recording like the closure steps do.
#[derive(Debug)]
pub struct CustomStep {
    ledger: Ledger,
    index: usize,
    spec: StepSpec,
    compensate_failed: bool,
    state: CustomState,
}

impl CustomStep {
    /// Step `index` of a shape, as a hand-written step (`spec.kind` is ignored).
    pub fn new(ledger: &Ledger, index: usize, spec: StepSpec, compensate_failed: bool) -> Self {
        CustomStep {
            ledger: ledger.clone(),
            index,
            spec,
            compensate_failed,
            state: CustomState::Idle,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CustomState {
    Idle,
    Acting { left: u32 },
    Settled,
    Undoing { left: u32 },
    Undone,
}

impl Step<TestError> for CustomStep {
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TestError>> {
        let this = self.get_mut();
        let left = match this.state {
            CustomState::Acting { left } => left,
            _ => {
                this.ledger.push(Event::Action(this.index));
                this.spec.action_yields
            }
        };
        if left > 0 {
            this.state = CustomState::Acting { left: left - 1 };
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.ledger.push(Event::ActionDone(this.index));
        this.state = CustomState::Settled;
        Poll::Ready(if this.spec.action_fails {
            Err(TestError::Action(this.index))
        } else {
            Ok(())
        })
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TestError>> {
        let this = self.get_mut();
        let left = match this.state {
            CustomState::Undoing { left } => left,
            // After `Ready` (either way), the next call starts a new attempt.
            CustomState::Settled | CustomState::Undone => {
                this.ledger.push(Event::Undo(this.index));
                this.spec.undo_yields
            }
            state => panic!("step {} compensated in state {state:?}", this.index),
        };
        if left > 0 {
            this.state = CustomState::Undoing { left: left - 1 };
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.ledger.push(Event::UndoDone(this.index));
        if this.spec.undo_fails {
            this.state = CustomState::Settled;
            Poll::Ready(Err(TestError::Undo(this.index)))
        } else {
            this.state = CustomState::Undone;
            Poll::Ready(Ok(()))
        }
    }

    fn reset(self: Pin<&mut Self>) {
        self.get_mut().state = CustomState::Idle;
    }

    fn cancel(self: Pin<&mut Self>) {
        let this = self.get_mut();
        if let CustomState::Acting { .. } | CustomState::Undoing { .. } = this.state {
            // A cut-short action may have happened; a cut-short undo may not have.
            this.state = CustomState::Settled;
        }
    }

    fn compensates_failed_action(&self) -> bool {
        self.compensate_failed
    }

    fn name(&self) -> Option<&str> {
        Some("custom")
    }
}

// ---------------------------------------------------------------------------
// The Step protocol, checked from the step's side
// ---------------------------------------------------------------------------

/// Where a [`Checked`] step stands in the Step protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Built, never reset.
    Fresh,
    /// Reset for a run.
    Reset,
    /// `poll_action` returned `Pending`.
    Acting,
    /// `poll_action` returned `Ready`.
    Acted { ok: bool },
    /// An action attempt was cancelled.
    ActionCut,
    /// `poll_compensate` returned `Pending`.
    Compensating,
    /// `poll_compensate` returned `Ready`.
    Compensated { ok: bool },
}

/// A transparent [`Step`] wrapper that checks that the engine drives the
/// inner step by the protocol documented on [`Step`], and records every
/// violation in the ledger: no action while a compensation is in flight; a
/// compensation only after a
/// successful action, or a failed or cut-short one when the step compensates
/// failed actions, and again only after a failed compensation of a step that
/// retries them; a `Pending` method is polled again (or the attempt cancelled
/// or reset) before the other method is called.
#[derive(Debug)]
pub struct Checked<S> {
    inner: Pin<Box<S>>,
    ledger: Ledger,
    index: usize,
    state: Protocol,
}

impl<S> Checked<S> {
    /// Wraps step `index`, reporting to `ledger`.
    pub fn new(ledger: &Ledger, index: usize, step: S) -> Self {
        Checked {
            inner: Box::pin(step),
            ledger: ledger.clone(),
            index,
            state: Protocol::Fresh,
        }
    }

    fn violation(&self, what: &str) {
        self.ledger.violation(format!(
            "step {}: {what} in state {:?}",
            self.index, self.state
        ));
    }
}

impl<E, S: Step<E>> Step<E> for Checked<S> {
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.get_mut();
        // A new attempt may start in any state (a retry, or a new run, which
        // calls nothing first) except while a compensation is in flight.
        if this.state == Protocol::Compensating {
            this.violation("poll_action");
        }
        let poll = this.inner.as_mut().poll_action(cx);
        this.state = match &poll {
            Poll::Pending => Protocol::Acting,
            Poll::Ready(result) => Protocol::Acted { ok: result.is_ok() },
        };
        poll
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.get_mut();
        let allowed = match this.state {
            Protocol::Acted { ok: true } | Protocol::Compensating => true,
            Protocol::Acted { ok: false } | Protocol::ActionCut => {
                this.inner.compensates_failed_action()
            }
            Protocol::Compensated { ok: false } => this.inner.retries_compensation(),
            Protocol::Fresh
            | Protocol::Reset
            | Protocol::Acting
            | Protocol::Compensated { ok: true } => false,
        };
        if !allowed {
            this.violation("poll_compensate");
        }
        let poll = this.inner.as_mut().poll_compensate(cx);
        this.state = match &poll {
            Poll::Pending => Protocol::Compensating,
            Poll::Ready(result) => Protocol::Compensated { ok: result.is_ok() },
        };
        poll
    }

    fn reset(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.state = Protocol::Reset;
        this.inner.as_mut().reset();
    }

    fn cancel(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.state = match this.state {
            Protocol::Acting => Protocol::ActionCut,
            Protocol::Compensating => Protocol::Compensated { ok: false },
            other => other,
        };
        this.inner.as_mut().cancel();
    }

    fn compensates_failed_action(&self) -> bool {
        self.inner.compensates_failed_action()
    }

    fn retries_compensation(&self) -> bool {
        self.inner.retries_compensation()
    }

    fn name(&self) -> Option<&str> {
        self.inner.name()
    }
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

/// What a failed run reports, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The action error.
    pub error: TestError,
    /// `failed_step()`.
    pub failed_step: usize,
    /// `recovery()`.
    pub recovery: Recovery,
    /// The steps of `compensation_errors()`, in the order reported.
    pub compensation_errors: Vec<usize>,
    /// `uncompensated_steps()`.
    pub uncompensated: Vec<usize>,
    /// `is_fully_compensated()`.
    pub fully_compensated: bool,
    /// `compensated_count()`.
    pub compensated_count: usize,
}

impl Report {
    /// Reads a [`SagaError`] into a [`Report`], checking on the way that its
    /// parts agree with each other.
    pub fn of(error: &SagaError<TestError>) -> Self {
        let compensation_errors: Vec<usize> = error
            .compensation_errors()
            .iter()
            .map(|e| e.step())
            .collect();
        for e in error.compensation_errors() {
            assert_eq!(
                *e.error(),
                TestError::Undo(e.step()),
                "a compensation error's step"
            );
        }
        let uncompensated: Vec<usize> = error.uncompensated_steps().collect();
        assert_eq!(error.uncompensated_count(), uncompensated.len());
        Report {
            error: *error.error(),
            failed_step: error.failed_step(),
            recovery: error.recovery(),
            compensation_errors,
            uncompensated,
            fully_compensated: error.is_fully_compensated(),
            compensated_count: error.compensated_count(),
        }
    }
}

/// What a run of a shape should do: the event log and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The expected event log.
    pub events: Vec<Event>,
    /// `Ok(())`, or the expected report.
    pub result: Result<(), Report>,
}

/// Whether a step of this kind is compensated when its own action failed
/// (DESIGN rule 3 and the defaults of each constructor).
pub fn compensates_own_failure(kind: Kind) -> bool {
    match kind {
        Kind::Fn { compensate_failed } | Kind::Custom { compensate_failed } => compensate_failed,
        Kind::ByValue | Kind::ByRef => false,
        Kind::ByOption => true,
    }
}

/// The reference model: what the rules say a run of `shape` does. Written from
/// DESIGN.md, not from the engine.
pub fn model(shape: &Shape) -> Outcome {
    let mut events = Vec::new();
    for (i, spec) in shape.steps.iter().enumerate() {
        // Rule 1: one action at a time, in order.
        events.push(Event::Action(i));
        events.push(Event::ActionDone(i));
        if !spec.action_fails {
            continue;
        }
        // Rule 5: the classifier decides; without one, compensate.
        // `Retry` with no retry policy (one attempt) then compensates, and the
        // report says `Compensate`.
        let recovery = match (shape.classifier, spec.recovery) {
            (true, Recovery::Propagate) => Recovery::Propagate,
            _ => Recovery::Compensate,
        };
        // Rules 2 and 3: the failing step first (if its kind says so), then
        // the earlier steps, last first.
        let mut to_undo: Vec<usize> = Vec::new();
        if compensates_own_failure(spec.kind) {
            to_undo.push(i);
        }
        to_undo.extend((0..i).rev());

        let mut report = Report {
            error: TestError::Action(i),
            failed_step: i,
            recovery,
            compensation_errors: Vec::new(),
            uncompensated: Vec::new(),
            fully_compensated: true,
            compensated_count: 0,
        };
        if recovery == Recovery::Propagate {
            report.uncompensated = to_undo;
        } else {
            // Rule 6.
            for (k, &step) in to_undo.iter().enumerate() {
                events.push(Event::Undo(step));
                events.push(Event::UndoDone(step));
                if shape.steps[step].undo_fails {
                    report.compensation_errors.push(step);
                    report.uncompensated.push(step);
                    if shape.mode == CompensationMode::StopOnError {
                        report.uncompensated.extend_from_slice(&to_undo[k + 1..]);
                        break;
                    }
                } else {
                    report.compensated_count += 1;
                }
            }
        }
        report.uncompensated.sort_unstable();
        report.fully_compensated = report.uncompensated.is_empty();
        return Outcome {
            events,
            result: Err(report),
        };
    }
    Outcome {
        events,
        result: Ok(()),
    }
}

/// Runs `shape` once (in the current task) and returns what happened, and
/// the Step-protocol violations its [`Checked`] steps saw.
pub async fn run_shape_checked(shape: &Shape) -> (Outcome, Vec<String>) {
    let ledger = Ledger::new();
    let mut saga = build_shape(shape, &ledger);
    let result = saga.run().await.map_err(|error| Report::of(&error));
    let outcome = Outcome {
        events: ledger.events(),
        result,
    };
    (outcome, ledger.violations())
}

/// Runs `shape` once (in the current task) and returns what happened.
pub async fn run_shape(shape: &Shape) -> Outcome {
    run_shape_checked(shape).await.0
}

/// Runs `shape` and compares the run with the model; `Err` describes the
/// difference.
pub async fn check_shape(shape: &Shape) -> Result<(), String> {
    let expected = model(shape);
    let (observed, violations) = run_shape_checked(shape).await;
    if !violations.is_empty() {
        return Err(format!(
            "shape {shape:#?}\nthe engine broke the Step protocol: {violations:#?}"
        ));
    }
    if observed == expected {
        Ok(())
    } else {
        Err(format!(
            "shape {shape:#?}\nexpected {expected:#?}\nobserved {observed:#?}"
        ))
    }
}
