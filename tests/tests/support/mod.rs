//! Shared fakes for the conformance suite: executors, a `Yield` future, a
//! recording ledger, steps built from a declarative shape, and a small
//! reference model of the rules that the engine's behaviour is checked against.
//!
//! Each test file does `mod support;` and uses what it needs.
#![allow(dead_code, unreachable_pub)]

pub mod flow;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use saga_core::{
    AbortHandle, Aborted, CompensationMode, FnStep, GroupBuilder, Handling, Observer,
    ParallelGroup, Recovery, Retry, Saga, SagaBuilder, SagaError, Step, StepRef, TimedOut,
    TypedStep,
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
/// that [`Checked`] steps saw, plus the [`Gauge`] of what was in flight.
#[derive(Debug, Clone, Default)]
pub struct Ledger(
    Arc<Mutex<Vec<Event>>>,
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<Gauge>>,
);

/// The peak numbers of attempts in flight during a run, as [`Measured`]
/// steps count them: an action or compensation attempt is in flight from its
/// first poll until it returns `Ready` (or is cancelled, reset or dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peaks {
    /// The most action attempts in flight at once.
    pub actions: usize,
    /// The most compensation attempts in flight at once.
    pub compensations: usize,
    /// The most attempts of either kind in flight at once: more than the
    /// larger of the two above only if an action and a compensation overlap.
    pub overall: usize,
}

/// What is in flight now, and the peaks so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauge {
    actions: usize,
    compensations: usize,
    peaks: Peaks,
}

impl Gauge {
    fn note_peaks(&mut self) {
        let peaks = &mut self.peaks;
        peaks.actions = peaks.actions.max(self.actions);
        peaks.compensations = peaks.compensations.max(self.compensations);
        peaks.overall = peaks.overall.max(self.actions + self.compensations);
    }
}

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

    /// An action attempt started (its first poll).
    pub fn action_started(&self) {
        let mut gauge = self.2.lock().unwrap();
        gauge.actions += 1;
        gauge.note_peaks();
    }

    /// An action attempt finished, or was cancelled or dropped.
    pub fn action_ended(&self) {
        let mut gauge = self.2.lock().unwrap();
        gauge.actions = gauge.actions.checked_sub(1).expect("an action in flight");
    }

    /// A compensation attempt started (its first poll).
    pub fn compensation_started(&self) {
        let mut gauge = self.2.lock().unwrap();
        gauge.compensations += 1;
        gauge.note_peaks();
    }

    /// A compensation attempt finished, or was cancelled or dropped.
    pub fn compensation_ended(&self) {
        let mut gauge = self.2.lock().unwrap();
        gauge.compensations = gauge
            .compensations
            .checked_sub(1)
            .expect("a compensation in flight");
    }

    /// The peaks so far.
    pub fn peaks(&self) -> Peaks {
        self.2.lock().unwrap().peaks
    }

    /// How many action and compensation attempts are in flight now.
    pub fn in_flight(&self) -> (usize, usize) {
        let gauge = self.2.lock().unwrap();
        (gauge.actions, gauge.compensations)
    }

    /// The peaks so far, and starts counting them afresh (for a new run).
    pub fn take_peaks(&self) -> Peaks {
        std::mem::take(&mut self.2.lock().unwrap().peaks)
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
    /// An attempt or the saga timed out (`From<TimedOut>`).
    TimedOut,
    /// The run was aborted (`From<Aborted>`).
    Aborted,
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestError::Action(step) => write!(f, "action {step} failed"),
            TestError::Undo(step) => write!(f, "undo {step} failed"),
            TestError::TimedOut => f.write_str("timed out"),
            TestError::Aborted => f.write_str("aborted"),
        }
    }
}

impl From<TimedOut> for TestError {
    fn from(_: TimedOut) -> Self {
        TestError::TimedOut
    }
}

impl From<Aborted> for TestError {
    fn from(_: Aborted) -> Self {
        TestError::Aborted
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
    build_grouped(&GroupShape::sequential(shape), ledger)
}

/// How many of a step's first attempts fail before one succeeds (when its
/// [`StepSpec`] does not make every attempt fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flaky {
    /// The first `action` action attempts fail.
    pub action: u32,
    /// The first `undo` compensation attempts fail.
    pub undo: u32,
}

/// One block of a [`GroupShape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// A single step (`SagaBuilder::step`).
    Single,
    /// A parallel group of this many members (`SagaBuilder::parallel`).
    Group(usize),
}

impl Block {
    /// How many steps the block holds.
    pub fn width(self) -> usize {
        match self {
            Block::Single => 1,
            Block::Group(width) => width,
        }
    }
}

/// Every way to split `n` steps into single steps and groups of 2 or 3.
pub fn splits(n: usize) -> Vec<Vec<Block>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for block in [Block::Single, Block::Group(2), Block::Group(3)] {
        if block.width() <= n {
            for rest in splits(n - block.width()) {
                let mut blocks = vec![block];
                blocks.extend(rest);
                all.push(blocks);
            }
        }
    }
    all
}

/// A saga of blocks, described: its steps (in order), how they are split
/// into single steps and parallel groups, flaky attempts, the saga-wide
/// immediate retry policies, its compensation mode and classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupShape {
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
    /// The blocks, in order; their sizes add up to `steps.len()`.
    pub blocks: Vec<Block>,
    /// Per step (missing entries: [`Flaky::default`]).
    pub flaky: Vec<Flaky>,
    /// Per block: the `ParallelGroup::limit` of a group (missing entries or
    /// `None`: no limit; ignored for single steps). The model covers a group
    /// whose limit is below its width only when its members' actions never
    /// suspend and never fail for good (then they run one after another
    /// whenever the engine admits them, and the log does not depend on when).
    pub limits: Vec<Option<usize>>,
    /// `SagaBuilder::action_retry(Retry::attempts(n))`, when set.
    pub action_attempts: Option<u32>,
    /// `SagaBuilder::compensation_retry(Retry::attempts(n))`, when set.
    pub compensation_attempts: Option<u32>,
    /// The saga's compensation mode.
    pub mode: CompensationMode,
    /// Whether the saga has a classifier.
    pub classifier: bool,
}

impl GroupShape {
    /// `shape` as a saga of single steps, no retry policy, nothing flaky.
    pub fn sequential(shape: &Shape) -> Self {
        GroupShape {
            steps: shape.steps.clone(),
            blocks: vec![Block::Single; shape.steps.len()],
            flaky: Vec::new(),
            limits: Vec::new(),
            action_attempts: None,
            compensation_attempts: None,
            mode: shape.mode,
            classifier: shape.classifier,
        }
    }

    /// Each block's steps, and whether it is a parallel group.
    pub fn blocks_ranges(&self) -> Vec<(std::ops::Range<usize>, bool)> {
        let mut start = 0;
        let ranges: Vec<_> = self
            .blocks
            .iter()
            .map(|block| {
                let (width, group) = match *block {
                    Block::Single => (1, false),
                    Block::Group(width) => (width, true),
                };
                assert!(width > 0, "an empty block");
                start += width;
                (start - width..start, group)
            })
            .collect();
        assert_eq!(start, self.steps.len(), "the blocks cover the steps");
        ranges
    }

    /// How many members of block `block` may be in flight at once: its
    /// limit, capped by its width (1 for a single step).
    pub fn block_limit(&self, block: usize) -> usize {
        match self.blocks[block] {
            Block::Single => 1,
            Block::Group(width) => self
                .limits
                .get(block)
                .copied()
                .flatten()
                .map_or(width, |limit| limit.clamp(1, width)),
        }
    }
}

/// The four compensation modes.
pub const MODES: [CompensationMode; 4] = [
    CompensationMode::StopOnError,
    CompensationMode::ContinueOnError,
    CompensationMode::ConcurrentGroups,
    CompensationMode::Concurrent,
];

/// Every kind of step a shape can have.
pub const KINDS: [Kind; 7] = [
    Kind::Fn {
        compensate_failed: true,
    },
    Kind::Fn {
        compensate_failed: false,
    },
    Kind::ByValue,
    Kind::ByRef,
    Kind::ByOption,
    Kind::Custom {
        compensate_failed: true,
    },
    Kind::Custom {
        compensate_failed: false,
    },
];

/// Builds the saga that `shape` describes, recording into `ledger`.
pub fn build_grouped(shape: &GroupShape, ledger: &Ledger) -> Saga<TestError> {
    build_grouped_with(shape, ledger, &Extras::default())
}

/// What a run of a shape may have attached that the rules say changes
/// nothing (unless the abort point is reached).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// An [`Observer`] (`SagaBuilder::observer`).
    pub observer: Option<Arc<Tally>>,
    /// A sleeper that never wakes, with saga-wide action and compensation
    /// timeouts and a saga deadline: timeouts that never fire.
    pub timeouts: bool,
    /// Counts the sleeps the sleeper of `timeouts` was asked for.
    pub sleeps: Arc<AtomicUsize>,
    /// The step whose first action attempt aborts the run through this
    /// handle (as it starts), if any.
    pub abort_at: Option<(usize, AbortHandle)>,
}

/// The timeout of [`Extras::timeouts`]: any duration does, the sleeper never
/// wakes.
pub const NEVER: Duration = Duration::from_millis(1);

/// Builds the saga that `shape` describes, recording into `ledger`, with
/// `extras` attached.
pub fn build_grouped_with(shape: &GroupShape, ledger: &Ledger, extras: &Extras) -> Saga<TestError> {
    if extras.timeouts {
        let sleeps = extras.sleeps.clone();
        let builder = SagaBuilder::new()
            .sleeper(move |_duration: Duration| {
                sleeps.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>()
            })
            .action_timeout(NEVER)
            .compensation_timeout(NEVER)
            .saga_timeout(NEVER);
        populate(builder, shape, ledger, extras).build()
    } else {
        populate(SagaBuilder::new(), shape, ledger, extras).build()
    }
}

/// A builder of `Send` steps, with or without a sleeper.
type Builder<T> = SagaBuilder<TestError, dyn Step<TestError> + Send + 'static, T>;

/// The members of one of its groups.
type Group<T> = GroupBuilder<TestError, dyn Step<TestError> + Send + 'static, T>;

/// Adds a step to a [`Builder`] or to a [`Group`], for [`add_spec`].
trait AddStep: Sized {
    fn add<X: Step<TestError> + Send + 'static>(self, step: X) -> Self;
}

impl<T> AddStep for Builder<T> {
    fn add<X: Step<TestError> + Send + 'static>(self, step: X) -> Self {
        self.step(step)
    }
}

impl<T> AddStep for Group<T> {
    fn add<X: Step<TestError> + Send + 'static>(self, step: X) -> Self {
        self.step(step)
    }
}

fn populate<T>(
    builder: Builder<T>,
    shape: &GroupShape,
    ledger: &Ledger,
    extras: &Extras,
) -> Builder<T> {
    let mut builder = builder.compensation_mode(shape.mode);
    if let Some(attempts) = shape.action_attempts {
        builder = builder.action_retry(Retry::attempts(attempts));
    }
    if let Some(attempts) = shape.compensation_attempts {
        builder = builder.compensation_retry(Retry::attempts(attempts));
    }
    let flaky = |i: usize| shape.flaky.get(i).copied().unwrap_or_default();
    let trigger = |i: usize| {
        extras
            .abort_at
            .as_ref()
            .filter(|(at, _)| *at == i)
            .map(|(_, handle)| handle.clone())
    };
    for (b, (range, group)) in shape.blocks_ranges().into_iter().enumerate() {
        if group {
            let settings = match shape.limits.get(b).copied().flatten() {
                Some(limit) => ParallelGroup::new().limit(limit),
                None => ParallelGroup::new(),
            };
            builder = builder.parallel_with(settings, |mut members| {
                for i in range {
                    members = add_spec(members, i, shape.steps[i], flaky(i), ledger, trigger(i));
                }
                members
            });
        } else {
            let i = range.start;
            builder = add_spec(builder, i, shape.steps[i], flaky(i), ledger, trigger(i));
        }
    }
    if shape.classifier {
        let decisions: Vec<Recovery> = shape.steps.iter().map(|spec| spec.recovery).collect();
        builder = builder.classify(move |error: &TestError| match *error {
            TestError::Action(step) => decisions[step],
            TestError::Undo(step) => panic!("the classifier saw compensation error of step {step}"),
            TestError::TimedOut | TestError::Aborted => Recovery::Compensate,
        });
    }
    if let Some(observer) = &extras.observer {
        builder = builder.observer(observer.clone());
    }
    builder
}

/// An [`Observer`] that only counts what it is told (it cannot change the
/// run: it gets shared references, between transitions).
#[derive(Debug, Default)]
pub struct Tally {
    /// `saga_started`, `saga_finished`, `action_started`,
    /// `compensation_started`, `action_failed`, `compensation_failed`.
    counts: [AtomicUsize; 6],
}

/// What a [`Tally`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tallied {
    /// `saga_started` calls.
    pub runs_started: usize,
    /// `saga_finished` calls.
    pub runs_finished: usize,
    /// `action_started` calls.
    pub actions_started: usize,
    /// `compensation_started` calls.
    pub compensations_started: usize,
    /// `action_failed` calls.
    pub actions_failed: usize,
    /// `compensation_failed` calls.
    pub compensations_failed: usize,
}

impl Tally {
    fn bump(&self, which: usize) {
        self.counts[which].fetch_add(1, Ordering::SeqCst);
    }

    /// What it counted so far.
    pub fn counts(&self) -> Tallied {
        let count = |which: usize| self.counts[which].load(Ordering::SeqCst);
        Tallied {
            runs_started: count(0),
            runs_finished: count(1),
            actions_started: count(2),
            compensations_started: count(3),
            actions_failed: count(4),
            compensations_failed: count(5),
        }
    }
}

impl Observer<TestError> for Tally {
    fn saga_started(&self, _steps: usize) {
        self.bump(0);
    }

    fn saga_finished(&self, _result: Result<(), &SagaError<TestError>>) {
        self.bump(1);
    }

    fn action_started(&self, _step: StepRef<'_>, _attempt: u32) {
        self.bump(2);
    }

    fn compensation_started(&self, _step: StepRef<'_>, _attempt: u32) {
        self.bump(3);
    }

    fn action_failed(&self, _step: StepRef<'_>, _attempt: u32, _error: &TestError) {
        self.bump(4);
    }

    fn compensation_failed(&self, _step: StepRef<'_>, _attempt: u32, _error: &TestError) {
        self.bump(5);
    }
}

/// Counts a closure step's attempts, and says whether the next one fails.
#[derive(Debug, Clone)]
struct Attempts {
    always: bool,
    first: u32,
    made: Arc<AtomicU32>,
    last_failed: Arc<AtomicBool>,
}

impl Attempts {
    fn new(always: bool, first: u32) -> Self {
        Attempts {
            always,
            first,
            made: Arc::default(),
            last_failed: Arc::default(),
        }
    }

    /// Starts an attempt: whether it fails.
    fn next_fails(&self) -> bool {
        let attempt = self.made.fetch_add(1, Ordering::SeqCst) + 1;
        let fails = self.always || attempt <= self.first;
        self.last_failed.store(fails, Ordering::SeqCst);
        fails
    }

    fn last_failed(&self) -> bool {
        self.last_failed.load(Ordering::SeqCst)
    }
}

/// Step `i`, [`Measured`] and [`Checked`].
fn measure<S>(
    ledger: &Ledger,
    i: usize,
    trigger: Option<AbortHandle>,
    step: S,
) -> Checked<Measured<S>> {
    Checked::new(ledger, i, Measured::new(ledger, step, trigger))
}

fn add_spec<B: AddStep>(
    builder: B,
    i: usize,
    spec: StepSpec,
    flaky: Flaky,
    ledger: &Ledger,
    trigger: Option<AbortHandle>,
) -> B {
    let (a, c) = (ledger.clone(), ledger.clone());
    let StepSpec {
        action_yields: ay,
        undo_yields: uy,
        ..
    } = spec;
    let acts = Attempts::new(spec.action_fails, flaky.action);
    let undos = Attempts::new(spec.undo_fails, flaky.undo);
    match spec.kind {
        Kind::Fn { compensate_failed } => builder.add(measure(
            ledger,
            i,
            trigger,
            FnStep::new(
                move || act(a.clone(), i, ay, acts.next_fails(), i),
                move || undo(c.clone(), i, uy, undos.next_fails()),
            )
            .compensate_failed_action(compensate_failed),
        )),
        Kind::ByValue => builder.add(measure(
            ledger,
            i,
            trigger,
            TypedStep::by_value(
                move || act(a.clone(), i, ay, acts.next_fails(), Token(i)),
                move |token: Token| {
                    assert_eq!(
                        token,
                        Token(i),
                        "step {i}'s compensation got another step's value"
                    );
                    undo(c.clone(), i, uy, undos.next_fails())
                },
            ),
        )),
        Kind::ByRef => builder.add(measure(
            ledger,
            i,
            trigger,
            TypedStep::by_ref(
                move || act(a.clone(), i, ay, acts.next_fails(), Token(i)),
                move |token: &Token| {
                    assert_eq!(
                        *token,
                        Token(i),
                        "step {i}'s compensation got another step's value"
                    );
                    undo(c.clone(), i, uy, undos.next_fails())
                },
            ),
        )),
        Kind::ByOption => {
            let last = acts.clone();
            builder.add(measure(
                ledger,
                i,
                trigger,
                TypedStep::by_option(
                    move || act(a.clone(), i, ay, acts.next_fails(), Token(i)),
                    move |token: Option<Token>| {
                        let expected = if last.last_failed() {
                            None
                        } else {
                            Some(Token(i))
                        };
                        assert_eq!(token, expected, "step {i}'s by-option compensation input");
                        undo(c.clone(), i, uy, undos.next_fails())
                    },
                ),
            ))
        }
        Kind::Custom { compensate_failed } => builder.add(measure(
            ledger,
            i,
            trigger,
            CustomStep::new(ledger, i, spec, compensate_failed).flaky(flaky),
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
    flaky: Flaky,
    acted: u32,
    undone: u32,
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
            flaky: Flaky::default(),
            acted: 0,
            undone: 0,
        }
    }

    /// Makes its first attempts fail (see [`Flaky`]).
    pub fn flaky(mut self, flaky: Flaky) -> Self {
        self.flaky = flaky;
        self
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
                this.acted += 1;
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
        Poll::Ready(
            if this.spec.action_fails || this.acted <= this.flaky.action {
                Err(TestError::Action(this.index))
            } else {
                Ok(())
            },
        )
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TestError>> {
        let this = self.get_mut();
        let left = match this.state {
            CustomState::Undoing { left } => left,
            // After `Ready` (either way), the next call starts a new attempt.
            CustomState::Settled | CustomState::Undone => {
                this.undone += 1;
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
        if this.spec.undo_fails || this.undone <= this.flaky.undo {
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
// Concurrency, measured from the step's side
// ---------------------------------------------------------------------------

/// A transparent [`Step`] wrapper that counts, in its [`Ledger`]'s gauge, the
/// action and compensation attempts in flight (see [`Peaks`]).
///
/// So that compensations the engine runs together are in flight together,
/// every compensation attempt suspends once before the wrapped step's
/// compensation is first polled (returning `Pending` after waking its own
/// waker): an attempt is in flight from its first poll to its `Ready`, so
/// every compensation the engine starts in the same pass overlaps with the
/// others. Actions are not delayed: they suspend exactly as their
/// [`StepSpec`] says, so the model's forward log is unchanged and predicts
/// which of them overlap.
///
/// With an abort trigger, the first action attempt aborts the run through the
/// handle as it starts.
#[derive(Debug)]
pub struct Measured<S> {
    inner: Pin<Box<S>>,
    ledger: Ledger,
    acting: bool,
    compensating: bool,
    trigger: Option<AbortHandle>,
}

impl<S> Measured<S> {
    /// Wraps `step`, counting into `ledger`.
    pub fn new(ledger: &Ledger, step: S, trigger: Option<AbortHandle>) -> Self {
        Measured {
            inner: Box::pin(step),
            ledger: ledger.clone(),
            acting: false,
            compensating: false,
            trigger,
        }
    }

    /// Ends whatever attempt is in flight.
    fn settle(&mut self) {
        if std::mem::take(&mut self.acting) {
            self.ledger.action_ended();
        }
        if std::mem::take(&mut self.compensating) {
            self.ledger.compensation_ended();
        }
    }
}

impl<S> Drop for Measured<S> {
    fn drop(&mut self) {
        self.settle();
    }
}

impl<E, S: Step<E>> Step<E> for Measured<S> {
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.get_mut();
        if !this.acting {
            this.acting = true;
            this.ledger.action_started();
            if let Some(handle) = this.trigger.take() {
                handle.abort();
            }
        }
        let poll = this.inner.as_mut().poll_action(cx);
        if poll.is_ready() {
            this.acting = false;
            this.ledger.action_ended();
        }
        poll
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.get_mut();
        if !this.compensating {
            this.compensating = true;
            this.ledger.compensation_started();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let poll = this.inner.as_mut().poll_compensate(cx);
        if poll.is_ready() {
            this.compensating = false;
            this.ledger.compensation_ended();
        }
        poll
    }

    fn reset(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.settle();
        this.inner.as_mut().reset();
    }

    fn cancel(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.settle();
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
    /// `attempts()`: how many attempts the failed step's action made.
    pub attempts: u32,
    /// `handling()`.
    pub handling: Handling,
    /// `concurrent_failures()`: the other failed members of the failed
    /// parallel group, with their attempts, by step.
    pub concurrent_failures: Vec<(usize, u32)>,
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
        for e in error.concurrent_failures() {
            assert_eq!(
                *e.error(),
                TestError::Action(e.step()),
                "a concurrent failure's step"
            );
        }
        let uncompensated: Vec<usize> = error.uncompensated_steps().collect();
        assert_eq!(error.uncompensated_count(), uncompensated.len());
        Report {
            error: *error.error(),
            failed_step: error.failed_step(),
            attempts: error.attempts(),
            handling: error.handling(),
            concurrent_failures: error
                .concurrent_failures()
                .iter()
                .map(|e| (e.step(), e.attempts()))
                .collect(),
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
/// (rule 3 of `saga-core`'s crate docs and the defaults of each constructor).
pub fn compensates_own_failure(kind: Kind) -> bool {
    match kind {
        Kind::Fn { compensate_failed } | Kind::Custom { compensate_failed } => compensate_failed,
        Kind::ByValue | Kind::ByRef => false,
        Kind::ByOption => true,
    }
}

/// Whether a failed compensation of a step of this kind is attempted again
/// under a compensation retry policy: not when the compensation consumes the
/// action's value (by value, by option), which it then no longer has.
pub fn retries_compensation(kind: Kind) -> bool {
    !matches!(kind, Kind::ByValue | Kind::ByOption)
}

/// The reference model: what the rules say a run of `shape` does. Written from
/// the documented rules, not from the engine. A shape of single steps is a
/// [`GroupShape`] whose blocks are all single steps: see [`model_grouped`].
pub fn model(shape: &Shape) -> Outcome {
    model_grouped(&GroupShape::sequential(shape))
}

/// The reference model of a saga of blocks (single steps and parallel
/// groups) with immediate retries. Written from the numbered rules of
/// `saga-core`'s crate docs (1-3, 5, 6, 8) and the documentation of `ParallelGroup`, `CompensationMode`, `Retry`
/// and `SagaError`:
///
/// - Blocks run one after the other; a single step is a block of one.
/// - All members of a group start; with the default `InFlight::Finish` each
///   runs to completion (through its retries) even when another failed, but
///   once one failed for good no member starts a new attempt (its failed
///   attempt is final).
/// - Members are polled together, each only when woken: a member whose
///   attempt suspends `y` times finishes that attempt `y` wake-ups after it
///   started, and an immediate retry starts at once. Failures are *observed*
///   in that order, members woken together in member order (the order they
///   started). The first observed failure is `failed_step`; the other failed
///   members are `concurrent_failures`, by step.
/// - Then every member that ran is compensated per rule 3 (pysagas-form and
///   by-option steps also when their own action failed, by-ref and by-value
///   not), then the earlier blocks, in reverse. In the sequential modes
///   the order is descending step order; in the concurrent modes only the
///   multiset of compensations (and, for `ConcurrentGroups`, block by block
///   in reverse) is fixed: see [`compare_grouped`].
/// - A compensation is retried while its policy allows, except by-value and
///   by-option ones (attempted once). `StopOnError` stops at the first
///   compensation that still fails: it and everything not compensated are
///   reported uncompensated. The other modes collect every error.
pub fn model_grouped(shape: &GroupShape) -> Outcome {
    let flaky = |i: usize| shape.flaky.get(i).copied().unwrap_or_default();
    let action_attempts = shape.action_attempts.unwrap_or(1).max(1);
    let compensation_attempts = shape.compensation_attempts.unwrap_or(1).max(1);
    let mut events = Vec::new();
    for (b, (block, _)) in shape.blocks_ranges().into_iter().enumerate() {
        let width = block.len();
        if shape.block_limit(b) < width {
            // Members then run one after another, each settling in the poll
            // that starts it, whenever the engine admits the next.
            for i in block.clone() {
                let spec = shape.steps[i];
                assert!(
                    spec.action_yields == 0
                        && !spec.action_fails
                        && flaky(i).action < action_attempts
                        && (flaky(i).action == 0
                            || !shape.classifier
                            || spec.recovery == Recovery::Retry),
                    "the model does not cover step {i} of a group limited below its width: \
                     its action suspends or fails for good"
                );
            }
        }
        let mut attempt = vec![1u32; width];
        let mut polls = vec![0u32; width];
        // `Some(true)`: applied; `Some(false)`: failed for good.
        let mut outcome: Vec<Option<bool>> = vec![None; width];
        // (step, attempts, recovery), in the order observed.
        let mut failures: Vec<(usize, u32, Recovery)> = Vec::new();
        // One pass per wake-up of the members in flight.
        while outcome.iter().any(Option::is_none) {
            for m in 0..width {
                if outcome[m].is_some() {
                    continue;
                }
                let i = block.start + m;
                let spec = shape.steps[i];
                // One poll of member `m` (an immediate retry polls again).
                loop {
                    if polls[m] == 0 {
                        events.push(Event::Action(i));
                    }
                    if polls[m] < spec.action_yields {
                        polls[m] += 1;
                        break;
                    }
                    events.push(Event::ActionDone(i));
                    let fails = spec.action_fails || attempt[m] <= flaky(i).action;
                    if !fails {
                        outcome[m] = Some(true);
                        break;
                    }
                    // Rule 5: the classifier decides; without one, retry
                    // (by the policy: one attempt unless set), then compensate.
                    let decision = if shape.classifier {
                        spec.recovery
                    } else {
                        Recovery::Retry
                    };
                    if decision == Recovery::Retry
                        && attempt[m] < action_attempts
                        && failures.is_empty()
                    {
                        attempt[m] += 1;
                        polls[m] = 0;
                        continue;
                    }
                    let recovery = match decision {
                        Recovery::Propagate => Recovery::Propagate,
                        _ => Recovery::Compensate,
                    };
                    failures.push((i, attempt[m], recovery));
                    outcome[m] = Some(false);
                    break;
                }
            }
        }
        let Some(&(failed_step, attempts, recovery)) = failures.first() else {
            continue;
        };
        let mut concurrent_failures: Vec<(usize, u32)> = failures[1..]
            .iter()
            .map(|&(step, attempts, _)| (step, attempts))
            .collect();
        concurrent_failures.sort_unstable();
        // Rules 2, 3 and 8: the members that ran (by their failed-action
        // rule), then the earlier steps, last first.
        let needs = |step: usize| {
            step < block.start
                || outcome[step - block.start] == Some(true)
                || compensates_own_failure(shape.steps[step].kind)
        };
        let to_undo: Vec<usize> = (0..block.end).rev().filter(|&s| needs(s)).collect();
        let mut report = Report {
            error: TestError::Action(failed_step),
            failed_step,
            attempts,
            handling: match recovery {
                Recovery::Propagate => Handling::Propagated,
                _ => Handling::Compensated,
            },
            concurrent_failures,
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
                let spec = shape.steps[step];
                let mut attempt = 1;
                let undone = loop {
                    events.push(Event::Undo(step));
                    events.push(Event::UndoDone(step));
                    if !(spec.undo_fails || attempt <= flaky(step).undo) {
                        break true;
                    }
                    if retries_compensation(spec.kind) && attempt < compensation_attempts {
                        attempt += 1;
                        continue;
                    }
                    break false;
                };
                if undone {
                    report.compensated_count += 1;
                    continue;
                }
                report.compensation_errors.push(step);
                report.uncompensated.push(step);
                if shape.mode == CompensationMode::StopOnError {
                    report.uncompensated.extend_from_slice(&to_undo[k + 1..]);
                    break;
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

/// The concurrency the rules imply for a run of `shape` whose log is the
/// model's `expected` one (see [`Measured`] for what counts as in flight):
///
/// - Actions: the attempts between their `Action` and `ActionDone` events in
///   the forward log (several overlap only inside a parallel group).
/// - Compensations, by the documentation of `CompensationMode`:
///   `StopOnError` and `ContinueOnError` run one at a time (1 when any runs);
///   `ConcurrentGroups` runs the members of each group together, within the
///   group's limit, and blocks one after another (the most, over the blocks,
///   of the limit or the block's members to compensate, whichever is
///   fewer; 1 for a saga of single steps); `Concurrent` runs every
///   compensation at once (all the steps to compensate, groups or not).
/// - Never an action and a compensation at once: `overall` is the larger.
pub fn model_peaks(shape: &GroupShape, expected: &Outcome) -> Peaks {
    let mut in_flight = 0usize;
    let mut actions = 0;
    for event in &expected.events {
        match event {
            Event::Action(_) => {
                in_flight += 1;
                actions = actions.max(in_flight);
            }
            Event::ActionDone(_) => in_flight -= 1,
            Event::Undo(_) | Event::UndoDone(_) => {}
        }
    }
    // Every step to compensate has at least one `Undo` event, except those
    // that `StopOnError` leaves alone (it runs one at a time anyway).
    let mut undone: Vec<usize> = expected
        .events
        .iter()
        .filter_map(|event| match *event {
            Event::Undo(step) => Some(step),
            _ => None,
        })
        .collect();
    undone.sort_unstable();
    undone.dedup();
    let compensations = if undone.is_empty() {
        0
    } else {
        match shape.mode {
            CompensationMode::StopOnError | CompensationMode::ContinueOnError => 1,
            CompensationMode::ConcurrentGroups => shape
                .blocks_ranges()
                .into_iter()
                .enumerate()
                .map(|(b, (range, _))| {
                    let members = undone.iter().filter(|step| range.contains(step)).count();
                    members.min(shape.block_limit(b))
                })
                .max()
                .unwrap_or(0),
            CompensationMode::Concurrent => undone.len(),
            other => panic!("the model does not know {other:?}"),
        }
    };
    Peaks {
        actions,
        compensations,
        overall: actions.max(compensations),
    }
}

/// Compares an observed run of `shape` with the model's `expected` outcome.
/// In the sequential compensation modes the whole log must match. In the
/// concurrent ones the forward phase must match exactly; the backward phase
/// must hold the same compensations (each step's own events in order), for
/// `ConcurrentGroups` block by block in reverse, and the report the same
/// compensation errors in any order.
pub fn compare_grouped(
    shape: &GroupShape,
    expected: &Outcome,
    observed: &Outcome,
) -> Result<(), String> {
    let concurrent = matches!(
        shape.mode,
        CompensationMode::ConcurrentGroups | CompensationMode::Concurrent
    );
    if !concurrent {
        return if observed == expected {
            Ok(())
        } else {
            Err(format!(
                "shape {shape:#?}\nexpected {expected:#?}\nobserved {observed:#?}"
            ))
        };
    }
    let differ = |what: &str| {
        Err(format!(
            "shape {shape:#?}\n{what}\nexpected {expected:#?}\nobserved {observed:#?}"
        ))
    };
    let split = |events: &[Event]| {
        let at = events
            .iter()
            .position(|event| matches!(event, Event::Undo(_)))
            .unwrap_or(events.len());
        let (forward, backward) = events.split_at(at);
        (forward.to_vec(), backward.to_vec())
    };
    let (forward, backward) = split(&expected.events);
    let (seen_forward, seen_backward) = split(&observed.events);
    if forward != seen_forward {
        return differ("the forward phase differs");
    }
    if shape.mode == CompensationMode::ConcurrentGroups {
        let blocks = shape.blocks_ranges();
        let block_of = |event: &Event| {
            let (Event::Action(step)
            | Event::ActionDone(step)
            | Event::Undo(step)
            | Event::UndoDone(step)) = *event;
            blocks
                .iter()
                .position(|(range, _)| range.contains(&step))
                .expect("a step of the shape")
        };
        let order: Vec<usize> = seen_backward.iter().map(block_of).collect();
        if order.windows(2).any(|pair| pair[0] < pair[1]) {
            return differ("blocks compensated out of reverse order, or interleaved");
        }
    }
    let by_step = |mut events: Vec<Event>| {
        // Stable: each step's own events keep their order.
        events.sort_by_key(|event| match *event {
            Event::Action(step)
            | Event::ActionDone(step)
            | Event::Undo(step)
            | Event::UndoDone(step) => step,
        });
        events
    };
    if by_step(backward) != by_step(seen_backward) {
        return differ("the compensations differ");
    }
    let unordered = |result: &Result<(), Report>| {
        result.clone().map_err(|mut report| {
            report.compensation_errors.sort_unstable();
            report
        })
    };
    if unordered(&expected.result) != unordered(&observed.result) {
        return differ("the reports differ");
    }
    Ok(())
}

/// Everything one run of a shape did.
#[derive(Debug)]
pub struct Trace {
    /// The log.
    pub events: Vec<Event>,
    /// The result, as the engine returned it.
    pub result: Result<(), SagaError<TestError>>,
    /// The peak concurrency.
    pub peaks: Peaks,
    /// The Step-protocol violations its [`Checked`] steps saw.
    pub violations: Vec<String>,
    /// What the observer counted, when there was one.
    pub tallied: Option<Tallied>,
    /// How many sleeps the never-waking sleeper was asked for, when there
    /// was one.
    pub sleeps: Option<usize>,
}

impl Trace {
    /// The log and the result as plain data.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            events: self.events.clone(),
            result: self.result.as_ref().map_err(Report::of).copied(),
        }
    }
}

/// What to attach to a run of a shape: see [`Extras`] and [`run_traced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attach {
    /// A counting [`Observer`] ([`Tally`]).
    pub observer: bool,
    /// Timeouts that never fire ([`Extras::timeouts`]).
    pub timeouts: bool,
    /// `Run::abortable` with a handle (aborted only at an abort point).
    pub abortable: bool,
}

impl Attach {
    /// Nothing attached.
    pub const NONE: Attach = Attach {
        observer: false,
        timeouts: false,
        abortable: false,
    };

    /// Everything attached.
    pub const ALL: Attach = Attach {
        observer: true,
        timeouts: true,
        abortable: true,
    };
}

/// Runs `shape` once (in the current task) with `attach`ed, and, when
/// `abort_at` is `Some(i)`, an abort as step `i`'s first action attempt
/// starts (the run is then abortable whatever `attach` says). Returns what
/// happened.
pub async fn run_traced(shape: &GroupShape, attach: Attach, abort_at: Option<usize>) -> Trace {
    let ledger = Ledger::new();
    let handle = (attach.abortable || abort_at.is_some()).then(AbortHandle::new);
    let tally = attach.observer.then(|| Arc::new(Tally::default()));
    let extras = Extras {
        observer: tally.clone(),
        timeouts: attach.timeouts,
        sleeps: Arc::default(),
        abort_at: abort_at.zip(handle.clone()),
    };
    let mut saga = build_grouped_with(shape, &ledger, &extras);
    let result = match &handle {
        Some(handle) => saga.run().abortable(handle).await,
        None => saga.run().await,
    };
    assert_eq!(
        ledger.in_flight(),
        (0, 0),
        "attempts (actions, compensations) still in flight after the run"
    );
    Trace {
        events: ledger.events(),
        result,
        peaks: ledger.peaks(),
        violations: ledger.violations(),
        tallied: tally.map(|tally| tally.counts()),
        sleeps: attach
            .timeouts
            .then(|| extras.sleeps.load(Ordering::SeqCst)),
    }
}

/// Runs `shape` once (in the current task) and returns what happened, and
/// the Step-protocol violations its [`Checked`] steps saw.
pub async fn run_grouped_checked(shape: &GroupShape) -> (Outcome, Vec<String>) {
    let trace = run_traced(shape, Attach::NONE, None).await;
    (trace.outcome(), trace.violations)
}

/// Runs `shape` and compares the run with the model ([`compare_grouped`]
/// for the log and the report, [`model_peaks`] for the concurrency); `Err`
/// describes the difference or the Step-protocol violations.
pub async fn check_grouped(shape: &GroupShape) -> Result<(), String> {
    let expected = model_grouped(shape);
    let trace = run_traced(shape, Attach::NONE, None).await;
    if !trace.violations.is_empty() {
        return Err(format!(
            "shape {shape:#?}\nthe engine broke the Step protocol: {:#?}",
            trace.violations
        ));
    }
    let observed = trace.outcome();
    compare_grouped(shape, &expected, &observed)?;
    let peaks = model_peaks(shape, &expected);
    if trace.peaks != peaks {
        return Err(format!(
            "the peak concurrency differs in {:?}: expected {peaks:?}, observed {:?}\n\
             shape {shape:#?}\nobserved {observed:#?}",
            shape.mode, trace.peaks
        ));
    }
    Ok(())
}

/// Runs `shape` once (in the current task) and returns what happened, and
/// the Step-protocol violations its [`Checked`] steps saw.
pub async fn run_shape_checked(shape: &Shape) -> (Outcome, Vec<String>) {
    run_grouped_checked(&GroupShape::sequential(shape)).await
}

/// Runs `shape` once (in the current task) and returns what happened.
pub async fn run_shape(shape: &Shape) -> Outcome {
    run_shape_checked(shape).await.0
}

/// Runs `shape` and compares the run with the model; `Err` describes the
/// difference.
pub async fn check_shape(shape: &Shape) -> Result<(), String> {
    check_grouped(&GroupShape::sequential(shape)).await
}
