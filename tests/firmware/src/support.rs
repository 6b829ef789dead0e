//! What the scenarios share: the error type, a log that `Send` steps can
//! write to on this single core, a recording observer, and the checks.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use critical_section::Mutex;
use saga_core::{Aborted, Crashed, Observer, SagaError, StepRef, TimedOut};

use crate::exec;

/// Returns `Err(message)` from the scenario unless `condition` holds.
macro_rules! check {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(alloc::format!($($message)+));
        }
    };
}

/// Returns an error naming `what` and both values unless they are equal.
macro_rules! check_eq {
    ($left:expr, $right:expr, $what:expr) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(alloc::format!(
                "{}: {:?}, expected {:?}",
                $what,
                left,
                right
            ));
        }
    }};
}

pub(crate) use {check, check_eq};

/// The error type of every scenario's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Step(&'static str),
    TimedOut,
    Aborted,
    /// A durable run's attempt cut short by a crash, or an error recorded
    /// before one (`Crashed`'s display).
    Crashed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Step(message) => f.write_str(message),
            Error::TimedOut => f.write_str("timed out"),
            Error::Aborted => f.write_str("aborted"),
            Error::Crashed(message) => f.write_str(message),
        }
    }
}

impl From<TimedOut> for Error {
    fn from(_: TimedOut) -> Self {
        Error::TimedOut
    }
}

impl From<Crashed> for Error {
    fn from(crashed: Crashed) -> Self {
        Error::Crashed(alloc::format!("{crashed}"))
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

/// A value that `Send` steps share on this single core: a critical-section
/// mutex (interrupts off while it is held), behind an `Arc`.
#[derive(Debug)]
pub struct Shared<T>(Arc<Mutex<RefCell<T>>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared(Arc::new(Mutex::new(RefCell::new(value))))
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        critical_section::with(|cs| f(&mut self.0.borrow_ref_mut(cs)))
    }
}

impl<T: Clone> Shared<T> {
    pub fn get(&self) -> T {
        self.with(|value| value.clone())
    }
}

/// What the steps of a scenario did, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Step `i`'s action started (was first polled).
    Start(u16),
    /// Step `i`'s action did its work (and then succeeded or failed).
    Do(u16),
    /// Step `i`'s compensation did its work.
    Undo(u16),
}

pub type Log = Shared<Vec<Event>>;

pub fn log() -> Log {
    Shared::new(Vec::new())
}

impl Log {
    pub fn push(&self, event: Event) {
        self.with(|events| events.push(event));
    }

    /// The events so far; the log is emptied.
    pub fn take(&self) -> Vec<Event> {
        self.with(core::mem::take)
    }

    /// The `Do` and `Undo` events so far (no `Start`); the log is
    /// emptied.
    pub fn take_effects(&self) -> Vec<Event> {
        let mut events = self.take();
        events.retain(|event| !matches!(event, Event::Start(_)));
        events
    }
}

/// A step's future: logs `start` (if any) when first polled, returns
/// `Pending` `yields` times (waking itself), then logs `event` and returns
/// `result`. Hand-written, so that a step made of it allocates nothing.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Logged {
    log: Log,
    start: Option<Event>,
    yields: u32,
    event: Event,
    result: Option<Result<(), Error>>,
}

impl Future for Logged {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(start) = self.start.take() {
            self.log.push(start);
        }
        if self.yields > 0 {
            self.yields -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.log.push(self.event);
        Poll::Ready(
            self.result
                .take()
                .expect("Logged polled after it completed"),
        )
    }
}

/// An action that logs `Start(index)`, returns `Pending` `yields` times,
/// logs `Do(index)`, then fails with `error` if it is given.
pub fn action(
    log: &Log,
    index: u16,
    yields: u32,
    error: Option<&'static str>,
) -> impl FnMut() -> Logged + Send + use<> {
    let log = log.clone();
    move || Logged {
        log: log.clone(),
        start: Some(Event::Start(index)),
        yields,
        event: Event::Do(index),
        result: Some(error.map_or(Ok(()), |message| Err(Error::Step(message)))),
    }
}

/// A compensation that returns `Pending` `yields` times, then logs
/// `Undo(index)` and succeeds.
pub fn undo(log: &Log, index: u16, yields: u32) -> impl FnMut() -> Logged + Send + use<> {
    let log = log.clone();
    move || Logged {
        log: log.clone(),
        start: None,
        yields,
        event: Event::Undo(index),
        result: Some(Ok(())),
    }
}

/// Runs `future` with `block_on`; a stall becomes the scenario's error.
pub fn drive<F: Future>(what: &str, future: F) -> Result<F::Output, String> {
    exec::block_on(future).map_err(|stall| alloc::format!("{what}: {stall:?}"))
}

/// `Do(i)` for each of `indices`.
pub fn dos(indices: impl IntoIterator<Item = u16>) -> Vec<Event> {
    indices.into_iter().map(Event::Do).collect()
}

/// `Undo(i)` for each of `indices`.
pub fn undos(indices: impl IntoIterator<Item = u16>) -> Vec<Event> {
    indices.into_iter().map(Event::Undo).collect()
}

/// What an observer heard, one entry per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    SagaStarted(usize),
    SagaFinished(bool),
    ActionStarted(usize, u32),
    ActionSucceeded(usize, u32),
    ActionFailed(usize, u32, Error),
    ActionCutShort(usize, u32),
    ActionRetried(usize, u32, Duration),
    CompensationStarted(usize, u32),
    CompensationSucceeded(usize, u32),
    CompensationFailed(usize, u32, Error),
    CompensationRetried(usize, u32, Duration),
    Aborted(usize),
    DeadlinePassed(usize),
}

/// An observer that records every call (`Send + Sync`, as a `Saga`'s must be).
#[derive(Debug, Clone)]
pub struct Recorder(pub Shared<Vec<Heard>>);

impl Recorder {
    pub fn new() -> Self {
        Recorder(Shared::new(Vec::new()))
    }

    pub fn take(&self) -> Vec<Heard> {
        self.0.with(core::mem::take)
    }

    fn hear(&self, heard: Heard) {
        self.0.with(|all| all.push(heard));
    }
}

impl Observer<Error> for Recorder {
    fn saga_started(&self, steps: usize) {
        self.hear(Heard::SagaStarted(steps));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<Error>>) {
        self.hear(Heard::SagaFinished(result.is_ok()));
    }
    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        self.hear(Heard::ActionStarted(step.index, attempt));
    }
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.hear(Heard::ActionSucceeded(step.index, attempt));
    }
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &Error) {
        self.hear(Heard::ActionFailed(step.index, attempt, error.clone()));
    }
    fn action_cut_short(&self, step: StepRef<'_>, attempt: u32) {
        self.hear(Heard::ActionCutShort(step.index, attempt));
    }
    fn action_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        self.hear(Heard::ActionRetried(step.index, next_attempt, delay));
    }
    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        self.hear(Heard::CompensationStarted(step.index, attempt));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.hear(Heard::CompensationSucceeded(step.index, attempt));
    }
    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &Error) {
        self.hear(Heard::CompensationFailed(
            step.index,
            attempt,
            error.clone(),
        ));
    }
    fn compensation_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        self.hear(Heard::CompensationRetried(step.index, next_attempt, delay));
    }
    fn aborted(&self, step: StepRef<'_>) {
        self.hear(Heard::Aborted(step.index));
    }
    fn deadline_passed(&self, step: StepRef<'_>) {
        self.hear(Heard::DeadlinePassed(step.index));
    }
}
