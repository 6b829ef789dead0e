//! Fakes for saga-core's own tests: a virtual clock whose sleeper records
//! every requested duration, and an executor that advances that clock only
//! when nothing else can make progress (like tokio's paused time).
#![allow(dead_code, clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

#[derive(Debug, Default)]
struct ClockState {
    now: Duration,
    requested: Vec<Duration>,
    // Deadlines of sleeps polled while not yet due.
    waiting: Vec<(Duration, Waker)>,
}

/// A virtual clock. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeClock {
    state: Arc<Mutex<ClockState>>,
}

impl FakeClock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A sleeper on this clock, for `SagaBuilder::sleeper`.
    pub(crate) fn sleeper(&self) -> impl Fn(Duration) -> FakeSleep + Send + Sync + 'static {
        let clock = self.clone();
        move |duration| {
            let mut state = clock.state.lock().unwrap();
            state.requested.push(duration);
            FakeSleep {
                clock: clock.clone(),
                deadline: state.now + duration,
            }
        }
    }

    /// Every duration a sleep was requested for, in order.
    pub(crate) fn requested(&self) -> Vec<Duration> {
        self.state.lock().unwrap().requested.clone()
    }

    pub(crate) fn now(&self) -> Duration {
        self.state.lock().unwrap().now
    }

    /// Moves time to the earliest deadline someone waits for and wakes them.
    /// Returns `false` when nobody waits.
    fn advance(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        let Some(next) = state.waiting.iter().map(|(deadline, _)| *deadline).min() else {
            return false;
        };
        state.now = state.now.max(next);
        let now = state.now;
        let (due, rest): (Vec<_>, Vec<_>) = state
            .waiting
            .drain(..)
            .partition(|(deadline, _)| *deadline <= now);
        state.waiting = rest;
        drop(state);
        due.into_iter().for_each(|(_, waker)| waker.wake());
        true
    }
}

/// The sleep future of a [`FakeClock`].
#[derive(Debug)]
pub(crate) struct FakeSleep {
    clock: FakeClock,
    deadline: Duration,
}

impl Future for FakeSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.state.lock().unwrap();
        if state.now >= self.deadline {
            return Poll::Ready(());
        }
        state.waiting.push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Drives `future` to completion on one thread; when it is pending and
/// nothing woke it, advances `clock`. Panics on a real deadlock.
pub(crate) fn block_on_clock<F: Future>(clock: &FakeClock, future: F) -> F::Output {
    let mut polls = 0;
    drive(
        future,
        |_| {
            polls += 1;
            assert!(polls < 1_000_000, "the future does not complete");
            true
        },
        Some(clock),
    )
}

/// Drives `future`, calling `before_poll(n)` before poll number `n` (from 0);
/// the future is dropped when it returns `false`, and `None` is returned.
pub(crate) fn drive<F: Future>(
    future: F,
    mut before_poll: impl FnMut(usize) -> bool,
    clock: Option<&FakeClock>,
) -> F::Output {
    try_drive(future, &mut before_poll, clock).expect("the future was dropped")
}

pub(crate) fn try_drive<F: Future>(
    future: F,
    before_poll: &mut dyn FnMut(usize) -> bool,
    clock: Option<&FakeClock>,
) -> Option<F::Output> {
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    for poll in 0.. {
        if !before_poll(poll) {
            return None;
        }
        flag.0.store(false, Ordering::SeqCst);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        if !flag.0.load(Ordering::SeqCst) {
            let advanced = clock.is_some_and(FakeClock::advance);
            assert!(
                advanced,
                "pending with no wake-up and no timer: lost wake-up"
            );
        }
    }
    unreachable!()
}

/// A future that is pending `n` times (waking itself each time), then ready.
#[derive(Debug)]
pub(crate) struct Yield(pub usize);

impl Future for Yield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The error type of these tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TestError {
    Transient(u32),
    Fatal,
    Undo(u32),
    TimedOut,
    Aborted,
}

impl From<saga_core::TimedOut> for TestError {
    fn from(_: saga_core::TimedOut) -> Self {
        TestError::TimedOut
    }
}

impl From<saga_core::Aborted> for TestError {
    fn from(_: saga_core::Aborted) -> Self {
        TestError::Aborted
    }
}

/// A panic caught by `rt::CatchPanics`: a fatal error.
impl From<saga_core::Panicked> for TestError {
    fn from(_: saga_core::Panicked) -> Self {
        TestError::Fatal
    }
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for TestError {}

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    waker: Option<Waker>,
    polls: usize,
    wakes: usize,
}

/// A future the test opens by hand; it counts its polls and wake-ups, so a
/// test can check that nothing polls it without a reason.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    state: Arc<Mutex<GateState>>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Opens the gate and wakes whoever waits on it.
    pub(crate) fn open(&self) {
        let mut state = self.state.lock().unwrap();
        state.open = true;
        if let Some(waker) = state.waker.take() {
            state.wakes += 1;
            drop(state);
            waker.wake();
        }
    }

    pub(crate) fn polls(&self) -> usize {
        self.state.lock().unwrap().polls
    }

    pub(crate) fn wakes(&self) -> usize {
        self.state.lock().unwrap().wakes
    }

    /// A future that completes once the gate is open.
    pub(crate) fn wait(&self) -> GateWait {
        GateWait { gate: self.clone() }
    }
}

#[derive(Debug)]
pub(crate) struct GateWait {
    gate: Gate,
}

impl Future for GateWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.gate.state.lock().unwrap();
        state.polls += 1;
        if state.open {
            return Poll::Ready(());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
