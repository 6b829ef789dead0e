//! Flows against the reference model: typed flow layouts whose steps record
//! what they read, and the model's prediction of those reads.
//!
//! A flow is built with static types, so the shapes here are a fixed set of
//! [`LayoutInfo`]s (single `then` / `then_option` / plain steps and parallel
//! groups), each parameterised at run time by a [`GroupShape`]: which
//! actions fail (always, or their first k attempts), which compensations
//! fail, the suspensions, the retry policies and the compensation mode. The
//! probe ([`Probe`]) reads the shape when a step runs, so one built flow can
//! run many different shapes (one at a time).
//!
//! Every step records its [`Event`]s in a [`Ledger`] (so the run is compared
//! with [`model_grouped`] by [`compare_grouped`], as for plain sagas), and
//! every action and compensation attempt records a [`Seen`]: the step, the
//! attempt, the values it read and (compensations) its own value. Each
//! step's value is [`mix`] of its index and the values it read, never of
//! the attempt, so the model predicts every read ([`predict`]).
//!
//! Values and inputs are [`Val`]s, which count their constructions and
//! drops ([`Counters`]), so a test can check that none leaks.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::FutureExt;

use saga_core::{
    AbortHandle, CompensationMode, Flow, FnStep, Retry, SagaBuilder, SagaError, Step, StepPolicy,
    Timed, Untimed,
};

use super::{
    Block, Event, Flaky, GroupShape, Kind, Ledger, NEVER, Outcome, Report, StepSpec, Tallied,
    Tally, TestError, Yield, compare_grouped, model_grouped,
};

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// How many [`Val`]s were made and dropped.
#[derive(Debug, Default)]
pub struct Counters {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counters {
    /// (made, dropped).
    pub fn get(&self) -> (usize, usize) {
        (
            self.made.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
        )
    }

    /// How many are alive.
    pub fn alive(&self) -> usize {
        let (made, dropped) = self.get();
        made.checked_sub(dropped)
            .expect("more values dropped than made")
    }
}

/// A flow's input or a step's value: a number, neither `Copy` nor `Clone`,
/// counted in its [`Counters`] when made and when dropped.
pub struct Val {
    /// The number.
    pub x: u64,
    counters: Arc<Counters>,
}

impl Val {
    /// A new value, counted in `counters`.
    pub fn new(x: u64, counters: &Arc<Counters>) -> Self {
        counters.made.fetch_add(1, Ordering::SeqCst);
        Val {
            x,
            counters: counters.clone(),
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.counters.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Val({})", self.x)
    }
}

/// A nest of values (owned, by reference, or as `Option`s), flattened left
/// to right: what a step read, a run's result, a failed run's values.
pub trait Flat {
    /// Appends the values, left to right (`None` for a missing one).
    fn flat_into(&self, out: &mut Vec<Option<u64>>);
}

impl Flat for Val {
    fn flat_into(&self, out: &mut Vec<Option<u64>>) {
        out.push(Some(self.x));
    }
}

impl Flat for Option<Val> {
    fn flat_into(&self, out: &mut Vec<Option<u64>>) {
        out.push(self.as_ref().map(|value| value.x));
    }
}

impl<T: Flat + ?Sized> Flat for &T {
    fn flat_into(&self, out: &mut Vec<Option<u64>>) {
        (**self).flat_into(out);
    }
}

impl<A: Flat, B: Flat> Flat for (A, B) {
    fn flat_into(&self, out: &mut Vec<Option<u64>>) {
        self.0.flat_into(out);
        self.1.flat_into(out);
    }
}

/// `values`, flattened.
pub fn flat<T: Flat + ?Sized>(values: &T) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    values.flat_into(&mut out);
    out
}

/// What a step read (every value is there), flattened.
pub fn reads<T: Flat + ?Sized>(values: &T) -> Vec<u64> {
    flat(values)
        .into_iter()
        .map(|value| value.expect("a step read a missing value"))
        .collect()
}

/// The value step `step` returns after reading `read`: a mix of both
/// (FNV-1a over the step and the values, then a final avalanche). Never
/// depends on the attempt.
pub fn mix(step: usize, read: &[u64]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for word in std::iter::once(step as u64 + 1).chain(read.iter().copied()) {
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

// ---------------------------------------------------------------------------
// The probe: what the steps do and record
// ---------------------------------------------------------------------------

/// One action or compensation attempt of a flow step, as the step saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seen {
    /// The step.
    pub step: usize,
    /// A compensation attempt (else an action attempt).
    pub undo: bool,
    /// The attempt, from 1 (actions and compensations counted apart).
    pub attempt: u32,
    /// The values it read (the input first), flattened; empty for a plain
    /// step.
    pub reads: Vec<u64>,
    /// A compensation's own value (`None` for a plain step, an action, or a
    /// `then_option` step whose action produced none).
    pub own: Option<u64>,
}

struct ProbeInner {
    ledger: Ledger,
    seen: Mutex<Vec<Seen>>,
    shape: Mutex<GroupShape>,
    // Per step: the action and compensation attempts made this run.
    attempts: Mutex<Vec<(u32, u32)>>,
    // The step whose action (`false`) or compensation (`true`) never
    // finishes this run, once started.
    hold: Mutex<Option<(usize, bool)>>,
    counters: Arc<Counters>,
}

/// What the steps of a flow do (read from the [`GroupShape`] set by
/// [`prepare`](Probe::prepare)) and what they record.
#[derive(Clone)]
pub struct Probe(Arc<ProbeInner>);

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("seen", &self.seen())
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// A probe whose steps do what `shape` says.
    pub fn new(shape: &GroupShape) -> Self {
        let probe = Probe(Arc::new(ProbeInner {
            ledger: Ledger::new(),
            seen: Mutex::default(),
            shape: Mutex::new(shape.clone()),
            attempts: Mutex::default(),
            hold: Mutex::default(),
            counters: Arc::default(),
        }));
        probe.prepare(shape);
        probe
    }

    /// For the next run: the steps do what `shape` says, the attempts count
    /// from 1 again, and the logs are cleared.
    pub fn prepare(&self, shape: &GroupShape) {
        *self.0.shape.lock().unwrap() = shape.clone();
        *self.0.attempts.lock().unwrap() = vec![(0, 0); shape.steps.len()];
        self.0.seen.lock().unwrap().clear();
        self.0.ledger.take();
        *self.0.hold.lock().unwrap() = None;
    }

    /// [`prepare`](Probe::prepare), and step `step`'s action (or, with
    /// `undo`, its compensation) never finishes once started: it stays
    /// pending without waking anyone.
    pub fn prepare_holding(&self, shape: &GroupShape, step: usize, undo: bool) {
        self.prepare(shape);
        *self.0.hold.lock().unwrap() = Some((step, undo));
    }

    /// Waits forever if this attempt is held.
    async fn held(&self, step: usize, undo: bool) {
        let held = *self.0.hold.lock().unwrap() == Some((step, undo));
        if held {
            std::future::pending::<()>().await;
        }
    }

    /// The ledger the steps record their events in.
    pub fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// What the steps saw this run, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.0.seen.lock().unwrap().clone()
    }

    /// The counters of every [`Val`] the steps made.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.0.counters
    }

    /// A new value, counted with the steps'.
    pub fn val(&self, x: u64) -> Val {
        Val::new(x, &self.0.counters)
    }

    /// Starts an attempt of step `step`: its number, its spec and whether
    /// it fails.
    fn attempt(&self, step: usize, undo: bool) -> (u32, StepSpec, bool) {
        let (spec, flaky) = {
            let shape = self.0.shape.lock().unwrap();
            (
                shape.steps[step],
                shape.flaky.get(step).copied().unwrap_or_default(),
            )
        };
        let mut attempts = self.0.attempts.lock().unwrap();
        let slot = &mut attempts[step];
        let attempt = if undo {
            slot.1 += 1;
            slot.1
        } else {
            slot.0 += 1;
            slot.0
        };
        let fails = if undo {
            spec.undo_fails || attempt <= flaky.undo
        } else {
            spec.action_fails || attempt <= flaky.action
        };
        (attempt, spec, fails)
    }

    fn record(&self, seen: Seen) {
        let event = if seen.undo {
            Event::Undo(seen.step)
        } else {
            Event::Action(seen.step)
        };
        // One lock order for both logs, so they agree.
        let mut log = self.0.seen.lock().unwrap();
        log.push(seen);
        self.0.ledger.push(event);
    }

    /// An action attempt of flow step `step`, which read `read`: records it,
    /// suspends as the shape says, then returns `mix(step, read)` or fails.
    pub fn act(
        &self,
        step: usize,
        read: Vec<u64>,
    ) -> impl Future<Output = Result<Val, TestError>> + Send + 'static + use<> {
        let probe = self.clone();
        async move {
            let (attempt, spec, fails) = probe.attempt(step, false);
            let value = mix(step, &read);
            probe.record(Seen {
                step,
                undo: false,
                attempt,
                reads: read,
                own: None,
            });
            probe.held(step, false).await;
            Yield(spec.action_yields).await;
            probe.0.ledger.push(Event::ActionDone(step));
            if fails {
                Err(TestError::Action(step))
            } else {
                Ok(probe.val(value))
            }
        }
    }

    /// An action attempt of plain step `step` (it reads nothing).
    pub fn act_plain(
        &self,
        step: usize,
    ) -> impl Future<Output = Result<(), TestError>> + Send + 'static + use<> {
        let probe = self.clone();
        async move {
            let (attempt, spec, fails) = probe.attempt(step, false);
            probe.record(Seen {
                step,
                undo: false,
                attempt,
                reads: Vec::new(),
                own: None,
            });
            probe.held(step, false).await;
            Yield(spec.action_yields).await;
            probe.0.ledger.push(Event::ActionDone(step));
            if fails {
                Err(TestError::Action(step))
            } else {
                Ok(())
            }
        }
    }

    /// A compensation attempt of step `step`, which read `read` and its own
    /// value `own`.
    pub fn undo(
        &self,
        step: usize,
        read: Vec<u64>,
        own: Option<u64>,
    ) -> impl Future<Output = Result<(), TestError>> + Send + 'static + use<> {
        let probe = self.clone();
        async move {
            let (attempt, spec, fails) = probe.attempt(step, true);
            probe.record(Seen {
                step,
                undo: true,
                attempt,
                reads: read,
                own,
            });
            probe.held(step, true).await;
            Yield(spec.undo_yields).await;
            probe.0.ledger.push(Event::UndoDone(step));
            if fails {
                Err(TestError::Undo(step))
            } else {
                Ok(())
            }
        }
    }

    /// Plain step `step` (`FnStep`, compensating its own failed action or
    /// not).
    pub fn plain(
        &self,
        step: usize,
        compensate_failed: bool,
    ) -> impl Step<TestError> + Send + 'static + use<> {
        let (a, u) = (self.clone(), self.clone());
        FnStep::new(
            move || a.act_plain(step),
            move || u.undo(step, Vec::new(), None),
        )
        .compensate_failed_action(compensate_failed)
    }
}

/// A step's own policy: `attempts` action attempts, or an empty policy
/// (which overrides nothing).
pub fn policy(attempts: Option<u32>) -> StepPolicy {
    match attempts {
        Some(attempts) => StepPolicy::new().retry(Retry::attempts(attempts)),
        None => StepPolicy::new(),
    }
}

/// `$flow.then(..)` (a single step or a group member) for step `$i`,
/// recording through `$probe`, with the step policy of `$attempts`.
macro_rules! flow_then {
    ($flow:expr, $probe:expr, $i:expr, $attempts:expr) => {{
        let (a, u) = ($probe.clone(), $probe.clone());
        $flow
            .then(
                move |read| a.act($i, reads(&read)),
                move |(read, own)| {
                    let own: &Val = own;
                    u.undo($i, reads(&read), Some(own.x))
                },
            )
            .policy(policy($attempts))
    }};
}

/// `$flow.then_option(..)`, as [`flow_then`].
macro_rules! flow_then_option {
    ($flow:expr, $probe:expr, $i:expr, $attempts:expr) => {{
        let (a, u) = ($probe.clone(), $probe.clone());
        $flow
            .then_option(
                move |read| a.act($i, reads(&read)),
                move |(read, own)| {
                    let own: Option<&Val> = own;
                    u.undo($i, reads(&read), own.map(|own| own.x))
                },
            )
            .policy(policy($attempts))
    }};
}

// ---------------------------------------------------------------------------
// Layouts
// ---------------------------------------------------------------------------

/// How a flow step is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `then`: compensated only when its action succeeded.
    Then,
    /// `then_option`: compensated also when its action failed.
    ThenOption,
    /// A plain `FnStep` (`step_with`), compensating its own failed action or
    /// not; reads nothing, adds no value.
    Plain {
        /// `FnStep::compensate_failed_action`.
        compensate_failed: bool,
    },
}

impl Form {
    /// The kind of plain-saga step the model treats it as: `then` is
    /// compensated only after a success and its compensation is retried
    /// (`by_ref`); `then_option` also after a failure, and retried (unlike
    /// `TypedStep::by_option`, the value is kept: a pysagas-form step).
    pub fn kind(self) -> Kind {
        match self {
            Form::Then => Kind::ByRef,
            Form::ThenOption => Kind::Fn {
                compensate_failed: true,
            },
            Form::Plain { compensate_failed } => Kind::Fn { compensate_failed },
        }
    }

    /// Whether the step adds a value.
    pub fn has_value(self) -> bool {
        !matches!(self, Form::Plain { .. })
    }
}

/// One block of a layout.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// A single step.
    Single(Form),
    /// A parallel group (`then` and `then_option` members only).
    Group(&'static [Form]),
}

/// A builder of `Send` steps.
pub type Builder<T> = SagaBuilder<TestError, dyn Step<TestError> + Send + 'static, T>;

/// Builds a layout's flow from a builder with the saga's settings, its
/// steps recording through the probe, each with the step policy of the
/// attempts.
pub type BuildFn<T> = fn(Builder<T>, &Probe, Option<u32>) -> Box<dyn Runner>;

/// A typed flow layout: its blocks, and how to build it untimed or timed.
#[derive(Clone, Copy)]
pub struct LayoutInfo {
    /// For messages.
    pub name: &'static str,
    /// The blocks, in order.
    pub parts: &'static [Part],
    untimed: BuildFn<Untimed>,
    timed: BuildFn<Timed>,
}

impl fmt::Debug for LayoutInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayoutInfo")
            .field("name", &self.name)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

/// A typed flow layout.
pub trait Layout {
    /// For messages.
    const NAME: &'static str;
    /// Its blocks, which [`build`](Layout::build) must follow.
    const PARTS: &'static [Part];
    /// Builds it.
    fn build<T: 'static>(
        builder: Builder<T>,
        probe: &Probe,
        attempts: Option<u32>,
    ) -> Box<dyn Runner>;
}

/// A layout's description.
pub fn info<L: Layout>() -> LayoutInfo {
    LayoutInfo {
        name: L::NAME,
        parts: L::PARTS,
        untimed: L::build::<Untimed>,
        timed: L::build::<Timed>,
    }
}

impl LayoutInfo {
    /// Every step's form, in order.
    pub fn forms(&self) -> Vec<Form> {
        self.parts
            .iter()
            .flat_map(|part| match part {
                Part::Single(form) => vec![*form],
                Part::Group(forms) => forms.to_vec(),
            })
            .collect()
    }

    /// The blocks, as a [`GroupShape`]'s.
    pub fn blocks(&self) -> Vec<Block> {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Single(_) => Block::Single,
                Part::Group(forms) => Block::Group(forms.len()),
            })
            .collect()
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.forms().len()
    }

    /// Per step: its slot among the run's values (0 is the input), if it
    /// adds one; and the slots it reads (the input and every value of the
    /// blocks before it; empty for a plain step).
    pub fn dataflow(&self) -> (Vec<Option<usize>>, Vec<Vec<usize>>) {
        let mut slots = Vec::new();
        let mut reads = Vec::new();
        let mut before = vec![0];
        let mut next = 1;
        for part in self.parts {
            let forms = match part {
                Part::Single(form) => std::slice::from_ref(form),
                Part::Group(forms) => forms,
            };
            let mut added = Vec::new();
            for form in forms {
                if form.has_value() {
                    slots.push(Some(next));
                    reads.push(before.clone());
                    added.push(next);
                    next += 1;
                } else {
                    slots.push(None);
                    reads.push(Vec::new());
                }
            }
            before.extend(added);
        }
        (slots, reads)
    }

    /// The steps as a shape's, with no failure (the forms give the kinds).
    pub fn steps(&self) -> Vec<StepSpec> {
        self.forms()
            .into_iter()
            .map(|form| StepSpec {
                kind: form.kind(),
                ..StepSpec::ok()
            })
            .collect()
    }

    /// A shape of this layout in `mode`, with no failure.
    pub fn shape(&self, mode: CompensationMode) -> GroupShape {
        GroupShape {
            steps: self.steps(),
            blocks: self.blocks(),
            flaky: Vec::new(),
            limits: Vec::new(),
            action_attempts: None,
            compensation_attempts: None,
            mode,
            classifier: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Running a flow
// ---------------------------------------------------------------------------

/// What a run handed out (its result, or a failed run's values), kept
/// alive until [`Ran::release`].
pub struct Held(Option<Box<dyn Send>>);

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Held" } else { "Released" })
    }
}

/// A run's result, flattened: the result's values, or the report and the
/// failed run's values; and what the run handed out, still owned.
#[derive(Debug)]
pub enum Ran {
    /// `Ok`: the result (every value: the layouts `build()`).
    Ok(Vec<Option<u64>>, Held),
    /// `Err`: the report, `FlowError::values()` and the error's `Display`.
    Err(SagaError<TestError>, Vec<Option<u64>>, String, Held),
}

impl Ran {
    /// Drops what the run handed out.
    pub fn release(&mut self) {
        let (Ran::Ok(_, held) | Ran::Err(_, _, _, held)) = self;
        held.0 = None;
    }

    /// The values, flattened.
    pub fn values(&self) -> &[Option<u64>] {
        let (Ran::Ok(values, _) | Ran::Err(_, values, _, _)) = self;
        values
    }

    /// The report, if the run failed.
    pub fn report(&self) -> Option<&SagaError<TestError>> {
        match self {
            Ran::Ok(..) => None,
            Ran::Err(report, ..) => Some(report),
        }
    }

    /// The report's `Display`, if the run failed.
    pub fn display(&self) -> Option<&str> {
        match self {
            Ran::Ok(..) => None,
            Ran::Err(_, _, display, _) => Some(display),
        }
    }
}

/// A built flow of some layout, type-erased.
pub trait Runner: Send {
    /// Runs it with `input` (abortable with `abort`), and flattens the
    /// result (the values are dropped here).
    fn run<'a>(
        &'a mut self,
        input: Val,
        abort: Option<&'a AbortHandle>,
    ) -> Pin<Box<dyn Future<Output = Ran> + Send + 'a>>;

    /// Starts a run with `input`, polls it by hand (a no-op waker) up to
    /// `polls` times, then drops it: `true` if it was still pending.
    fn poll_and_drop(&mut self, input: Val, polls: usize) -> bool;

    /// The number of steps.
    fn len(&self) -> usize;
}

/// A [`Flow`] as a [`Runner`].
pub struct Runs<O, P>(pub Flow<TestError, Val, O, P>);

impl<O, P> fmt::Debug for Runs<O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Runs").field(&self.0).finish()
    }
}

impl<O: Flat + Send + 'static, P: Flat + Send + 'static> Runner for Runs<O, P> {
    fn run<'a>(
        &'a mut self,
        input: Val,
        abort: Option<&'a AbortHandle>,
    ) -> Pin<Box<dyn Future<Output = Ran> + Send + 'a>> {
        let run = self.0.run(input);
        let run = match abort {
            Some(handle) => run.abortable(handle),
            None => run,
        };
        // A combinator, not an `async` block: see `flow_model.rs` on why.
        Box::pin(run.map(|result| match result {
            Ok(values) => Ran::Ok(flat(&values), Held(Some(Box::new(values)))),
            Err(error) => {
                let display = error.to_string();
                assert_eq!(display, error.report().to_string(), "FlowError's Display");
                let (report, values) = error.into_parts();
                Ran::Err(report, flat(&values), display, Held(Some(Box::new(values))))
            }
        }))
    }

    fn poll_and_drop(&mut self, input: Val, polls: usize) -> bool {
        let mut run = self.0.run(input);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..polls {
            if let Poll::Ready(result) = Pin::new(&mut run).poll(&mut cx) {
                drop(result);
                return false;
            }
        }
        drop(run);
        true
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// What a run may have attached: an observer, and timeouts that never fire.
#[derive(Debug, Clone, Default)]
pub struct Attached {
    /// The counting observer.
    pub tally: Arc<Tally>,
    /// How many sleeps the never-waking sleeper was asked for.
    pub sleeps: Arc<AtomicUsize>,
}

/// Builds `layout` for `shape` (its mode and retry policies; the action
/// attempts as every step's own policy when `per_step`, else saga-wide),
/// recording through `probe`, with `attach`ed.
pub fn build(
    layout: &LayoutInfo,
    shape: &GroupShape,
    per_step: bool,
    probe: &Probe,
    attach: Option<&Attached>,
) -> Box<dyn Runner> {
    let mut builder = SagaBuilder::new().compensation_mode(shape.mode);
    let own = if per_step {
        shape.action_attempts
    } else {
        if let Some(attempts) = shape.action_attempts {
            builder = builder.action_retry(Retry::attempts(attempts));
        }
        None
    };
    if let Some(attempts) = shape.compensation_attempts {
        builder = builder.compensation_retry(Retry::attempts(attempts));
    }
    match attach {
        None => (layout.untimed)(builder, probe, own),
        Some(attached) => {
            let sleeps = attached.sleeps.clone();
            let builder = builder
                .observer(attached.tally.clone())
                .sleeper(move |_duration: Duration| {
                    sleeps.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>()
                })
                .action_timeout(NEVER)
                .compensation_timeout(NEVER)
                .saga_timeout(NEVER);
            (layout.timed)(builder, probe, own)
        }
    }
}

// ---------------------------------------------------------------------------
// The model's prediction
// ---------------------------------------------------------------------------

/// What the model predicts a run of a layout does with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// The log and the report ([`model_grouped`]).
    pub outcome: Outcome,
    /// Every attempt's reads, in the model's order.
    pub seen: Vec<Seen>,
    /// The input and every value step's value (`None` where its action
    /// produced none): `FlowError::values()`, or, all `Some`, the result.
    pub values: Vec<Option<u64>>,
}

/// The model's prediction for a run of `layout` with `input` as `shape`
/// says: which steps run and are compensated ([`model_grouped`]), and what
/// each attempt reads.
pub fn predict(layout: &LayoutInfo, shape: &GroupShape, input: u64) -> Prediction {
    let outcome = model_grouped(shape);
    let forms = layout.forms();
    let (slots, reads) = layout.dataflow();
    let mut values = vec![0u64; 1 + slots.iter().flatten().count()];
    values[0] = input;
    for (step, slot) in slots.iter().enumerate() {
        if let Some(slot) = *slot {
            let read: Vec<u64> = reads[step].iter().map(|&r| values[r]).collect();
            values[slot] = mix(step, &read);
        }
    }
    // The steps whose action failed for good; the others that started
    // succeeded.
    let failed: Vec<usize> = match &outcome.result {
        Ok(()) => Vec::new(),
        Err(report) => std::iter::once(report.failed_step)
            .chain(report.concurrent_failures.iter().map(|&(step, _)| step))
            .collect(),
    };
    let started = |step: usize| outcome.events.contains(&Event::Action(step));
    let succeeded = |step: usize| started(step) && !failed.contains(&step);
    let mut attempts = vec![(0u32, 0u32); forms.len()];
    let mut seen = Vec::new();
    for event in &outcome.events {
        let (step, undo) = match *event {
            Event::Action(step) => (step, false),
            Event::Undo(step) => (step, true),
            Event::ActionDone(_) | Event::UndoDone(_) => continue,
        };
        let attempt = if undo {
            attempts[step].1 += 1;
            attempts[step].1
        } else {
            attempts[step].0 += 1;
            attempts[step].0
        };
        let own = match (undo, slots[step]) {
            (true, Some(slot)) if succeeded(step) => Some(values[slot]),
            _ => None,
        };
        seen.push(Seen {
            step,
            undo,
            attempt,
            reads: reads[step].iter().map(|&r| values[r]).collect(),
            own,
        });
    }
    let mut partial = vec![Some(input)];
    for (step, slot) in slots.iter().enumerate() {
        if let Some(slot) = *slot {
            partial.push(succeeded(step).then_some(values[slot]));
        }
    }
    Prediction {
        outcome,
        seen,
        values: partial,
    }
}

/// Everything one flow run did, as plain data.
#[derive(Debug)]
pub struct FlowTrace {
    /// The ledger's log.
    pub events: Vec<Event>,
    /// What the steps saw.
    pub seen: Vec<Seen>,
    /// The result.
    pub ran: Ran,
    /// Values alive after the run, while its result (or failed run's
    /// values) is held.
    pub held: usize,
    /// Values alive once those are dropped too (the flow keeps none between
    /// runs).
    pub alive: usize,
    /// What the observer counted, when there was one.
    pub tallied: Option<Tallied>,
    /// How many sleeps the sleeper was asked for, when there was one.
    pub sleeps: Option<usize>,
}

impl FlowTrace {
    /// The log and the report, as the model's.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            events: self.events.clone(),
            result: match &self.ran {
                Ran::Ok(..) => Ok(()),
                Ran::Err(report, ..) => Err(Report::of(report)),
            },
        }
    }
}

/// Runs `runner` (prepared for `shape`) once with `input`, in the current
/// task.
pub async fn run_once(
    runner: &mut dyn Runner,
    probe: &Probe,
    shape: &GroupShape,
    input: u64,
    attach: Option<&Attached>,
    abort: Option<&AbortHandle>,
) -> FlowTrace {
    probe.prepare(shape);
    let mut ran = runner.run(probe.val(input), abort).await;
    let held = probe.counters().alive();
    ran.release();
    FlowTrace {
        events: probe.ledger().events(),
        seen: probe.seen(),
        ran,
        held,
        alive: probe.counters().alive(),
        tallied: attach.map(|attached| attached.tally.counts()),
        sleeps: attach.map(|attached| attached.sleeps.load(Ordering::SeqCst)),
    }
}

/// Compares a run of `layout` as `shape` with `input` with the model:
/// the log and the report ([`compare_grouped`]), every attempt's reads
/// (in order in the sequential modes; the forward phase in order and the
/// compensations as a multiset in the concurrent ones), the values
/// (`FlowError::values()` or the result), and that no value is alive.
pub fn compare_flow(
    layout: &LayoutInfo,
    shape: &GroupShape,
    input: u64,
    trace: &FlowTrace,
) -> Result<(), String> {
    let expected = predict(layout, shape, input);
    let context = |what: String| {
        format!(
            "layout {} with input {input}: {what}\nshape {shape:#?}\nexpected seen {:#?}\n\
             observed seen {:#?}",
            layout.name, expected.seen, trace.seen
        )
    };
    compare_grouped(shape, &expected.outcome, &trace.outcome()).map_err(&context)?;
    let concurrent = matches!(
        shape.mode,
        CompensationMode::ConcurrentGroups | CompensationMode::Concurrent
    );
    let split = |seen: &[Seen]| {
        let at = seen.iter().position(|s| s.undo).unwrap_or(seen.len());
        let (forward, backward) = seen.split_at(at);
        let mut backward = backward.to_vec();
        if concurrent {
            backward.sort();
        }
        (forward.to_vec(), backward)
    };
    if split(&expected.seen) != split(&trace.seen) {
        return Err(context("the steps read other values".to_owned()));
    }
    let values = trace.ran.values();
    let wrong = match &trace.ran {
        Ran::Ok(..) => expected.outcome.result.is_err() || expected.values.contains(&None),
        Ran::Err(..) => false,
    };
    if wrong || *values != expected.values {
        return Err(context(format!(
            "the run handed out {values:?} ({}), expected {:?}",
            if matches!(trace.ran, Ran::Ok(..)) {
                "Ok"
            } else {
                "FlowError::values()"
            },
            expected.values
        )));
    }
    // The input and each value handed out, and nothing else.
    let handed_out = expected.values.iter().flatten().count();
    if trace.held != handed_out {
        return Err(context(format!(
            "{} values alive while the run's {handed_out} are held",
            trace.held
        )));
    }
    if trace.alive != 0 {
        return Err(context(format!(
            "{} values still alive after the run",
            trace.alive
        )));
    }
    Ok(())
}

/// A shape's per-step failures: `flaky` as a [`GroupShape`] holds them.
pub fn flaky_at(len: usize, at: &[(usize, Flaky)]) -> Vec<Flaky> {
    let mut flaky = vec![Flaky::default(); len];
    for &(step, f) in at {
        flaky[step] = f;
    }
    flaky
}

// ---------------------------------------------------------------------------
// The layouts
// ---------------------------------------------------------------------------

/// Three single steps: `then`, `then_option`, `then`.
#[derive(Debug)]
pub struct Three;

impl Layout for Three {
    const NAME: &'static str = "then, then_option, then";
    const PARTS: &'static [Part] = &[
        Part::Single(Form::Then),
        Part::Single(Form::ThenOption),
        Part::Single(Form::Then),
    ];

    fn build<T: 'static>(
        builder: Builder<T>,
        probe: &Probe,
        attempts: Option<u32>,
    ) -> Box<dyn Runner> {
        let flow = flow_then!(builder.input::<Val>(), probe, 0, attempts);
        let flow = flow_then_option!(flow, probe, 1, attempts);
        let flow = flow_then!(flow, probe, 2, attempts);
        Box::new(Runs(flow.build()))
    }
}

/// A step, a group of two (`then`, `then_option`), a step.
#[derive(Debug)]
pub struct Pair;

impl Layout for Pair {
    const NAME: &'static str = "then, (then | then_option), then";
    const PARTS: &'static [Part] = &[
        Part::Single(Form::Then),
        Part::Group(&[Form::Then, Form::ThenOption]),
        Part::Single(Form::Then),
    ];

    fn build<T: 'static>(
        builder: Builder<T>,
        probe: &Probe,
        attempts: Option<u32>,
    ) -> Box<dyn Runner> {
        let flow = flow_then!(builder.input::<Val>(), probe, 0, attempts);
        let flow = flow.parallel(|group| {
            let group = flow_then!(group, probe, 1, attempts);
            flow_then_option!(group, probe, 2, attempts)
        });
        let flow = flow_then!(flow, probe, 3, attempts);
        Box::new(Runs(flow.build()))
    }
}

/// A plain step, a step, a group of three, a `then_option` step.
#[derive(Debug)]
pub struct Trio;

impl Layout for Trio {
    const NAME: &'static str = "plain, then, (then_option | then | then), then_option";
    const PARTS: &'static [Part] = &[
        Part::Single(Form::Plain {
            compensate_failed: true,
        }),
        Part::Single(Form::Then),
        Part::Group(&[Form::ThenOption, Form::Then, Form::Then]),
        Part::Single(Form::ThenOption),
    ];

    fn build<T: 'static>(
        builder: Builder<T>,
        probe: &Probe,
        attempts: Option<u32>,
    ) -> Box<dyn Runner> {
        let flow = builder
            .input::<Val>()
            .step_with(probe.plain(0, true), policy(attempts));
        let flow = flow_then!(flow, probe, 1, attempts);
        let flow = flow.parallel(|group| {
            let group = flow_then_option!(group, probe, 2, attempts);
            let group = flow_then!(group, probe, 3, attempts);
            flow_then!(group, probe, 4, attempts)
        });
        let flow = flow_then_option!(flow, probe, 5, attempts);
        Box::new(Runs(flow.build()))
    }
}

/// A `then_option` step, a plain step, two groups of two one after the
/// other (the second reads the first's values), a step.
#[derive(Debug)]
pub struct TwoGroups;

impl Layout for TwoGroups {
    const NAME: &'static str = "then_option, plain, (then | then), (then_option | then), then";
    const PARTS: &'static [Part] = &[
        Part::Single(Form::ThenOption),
        Part::Single(Form::Plain {
            compensate_failed: false,
        }),
        Part::Group(&[Form::Then, Form::Then]),
        Part::Group(&[Form::ThenOption, Form::Then]),
        Part::Single(Form::Then),
    ];

    fn build<T: 'static>(
        builder: Builder<T>,
        probe: &Probe,
        attempts: Option<u32>,
    ) -> Box<dyn Runner> {
        let flow = flow_then_option!(builder.input::<Val>(), probe, 0, attempts);
        let flow = flow.step_with(probe.plain(1, false), policy(attempts));
        let flow = flow.parallel(|group| {
            let group = flow_then!(group, probe, 2, attempts);
            flow_then!(group, probe, 3, attempts)
        });
        let flow = flow.parallel(|group| {
            let group = flow_then_option!(group, probe, 4, attempts);
            flow_then!(group, probe, 5, attempts)
        });
        let flow = flow_then!(flow, probe, 6, attempts);
        Box::new(Runs(flow.build()))
    }
}

/// A plain step added before `input` (in the flow's `Start`), a group of
/// two reading only the input, a plain step, a step.
#[derive(Debug)]
pub struct PlainFirst;

impl Layout for PlainFirst {
    const NAME: &'static str = "plain (before input), (then | then_option), plain, then";
    const PARTS: &'static [Part] = &[
        Part::Single(Form::Plain {
            compensate_failed: false,
        }),
        Part::Group(&[Form::Then, Form::ThenOption]),
        Part::Single(Form::Plain {
            compensate_failed: true,
        }),
        Part::Single(Form::Then),
    ];

    fn build<T: 'static>(
        builder: Builder<T>,
        probe: &Probe,
        attempts: Option<u32>,
    ) -> Box<dyn Runner> {
        let flow = builder
            .step_with(probe.plain(0, false), policy(attempts))
            .input::<Val>();
        let flow = flow.parallel(|group| {
            let group = flow_then!(group, probe, 1, attempts);
            flow_then_option!(group, probe, 2, attempts)
        });
        let flow = flow.step_with(probe.plain(3, true), policy(attempts));
        let flow = flow_then!(flow, probe, 4, attempts);
        Box::new(Runs(flow.build()))
    }
}

/// Every layout.
pub fn layouts() -> Vec<LayoutInfo> {
    vec![
        info::<Three>(),
        info::<Pair>(),
        info::<Trio>(),
        info::<TwoGroups>(),
        info::<PlainFirst>(),
    ]
}
