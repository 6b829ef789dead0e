//! The executor and the clock: a `block_on` that polls one future in a loop,
//! a simulated millisecond clock that it advances when nothing else can make
//! progress, the `Sleeper` over that clock, and a few hand-written futures.
//!
//! Time only moves when the future under `block_on` is idle (its last poll
//! woke nothing): the clock then jumps to the earliest pending sleep and
//! wakes it. So timed scenarios are exact: a 5 ms backoff moves the clock by
//! exactly 5 ticks, whatever the CPU speed under QEMU.

use core::cell::RefCell;
use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use core::time::Duration;

use critical_section::Mutex;
use saga_core::Sleeper;

/// Polls beyond this many mean a run that never ends.
const MAX_POLLS: u32 = 1_000_000;

/// Why `block_on` gave up on a future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The future returned `Pending`, woke nothing and no sleep is pending:
    /// nothing would ever poll it again (a lost wake-up).
    Idle { polls: u32, now: u32 },
    /// Still pending after `MAX_POLLS` polls.
    TooManyPolls,
}

/// Set by the `block_on` waker, taken by `block_on` before each poll.
static WOKEN: AtomicBool = AtomicBool::new(false);

fn waker_clone(_: *const ()) -> RawWaker {
    RawWaker::new(core::ptr::null(), &VTABLE)
}

fn waker_wake(_: *const ()) {
    WOKEN.store(true, Ordering::Release);
}

fn waker_drop(_: *const ()) {}

static VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake, waker_drop);

/// Runs `future` to completion on this core: poll; if it woke itself (or
/// was woken by a step, a group member, an abort), poll again; if not,
/// advance the clock to the next sleep's deadline and wake it; if there is
/// none, the future can never finish, and `block_on` says so.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, Stall> {
    let mut future = pin!(future);
    // SAFETY: the vtable's functions ignore the data pointer and only touch
    // an atomic, so every contract of `RawWaker` holds.
    let waker = unsafe { Waker::from_raw(waker_clone(core::ptr::null())) };
    let mut cx = Context::from_waker(&waker);
    let mut polls = 0;
    loop {
        WOKEN.store(false, Ordering::Release);
        polls += 1;
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
        if polls >= MAX_POLLS {
            return Err(Stall::TooManyPolls);
        }
        if WOKEN.load(Ordering::Acquire) {
            continue;
        }
        if !advance_to_next_deadline() {
            return Err(Stall::Idle { polls, now: now() });
        }
    }
}

/// Polls `future` once with the `block_on` waker: for the scenarios that
/// drive a run by hand and then drop it.
pub fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    // SAFETY: as in `block_on`.
    let waker = unsafe { Waker::from_raw(waker_clone(core::ptr::null())) };
    future.poll(&mut Context::from_waker(&waker))
}

// ---------------------------------------------------------------------------
// The clock.

/// Milliseconds since boot, on the simulated clock.
static NOW: AtomicU32 = AtomicU32::new(0);

/// The current tick (1 tick = 1 ms).
pub fn now() -> u32 {
    NOW.load(Ordering::Relaxed)
}

/// Sleeps pending at once, at most: a saga has one timer per lane plus its
/// deadline; the scenarios stay well below this.
const TIMER_SLOTS: usize = 16;

struct Timer {
    deadline: u32,
    waker: Option<Waker>,
}

static TIMERS: Mutex<RefCell<[Option<Timer>; TIMER_SLOTS]>> =
    Mutex::new(RefCell::new([const { None }; TIMER_SLOTS]));

/// How many sleeps hold a timer slot now (a leak check: 0 between runs).
pub fn timers_in_use() -> usize {
    critical_section::with(|cs| TIMERS.borrow_ref(cs).iter().flatten().count())
}

/// Moves the clock to the earliest pending deadline and wakes every sleep
/// due by then. `false` when no sleep is pending.
fn advance_to_next_deadline() -> bool {
    let mut due: [Option<Waker>; TIMER_SLOTS] = [const { None }; TIMER_SLOTS];
    let found = critical_section::with(|cs| {
        let mut timers = TIMERS.borrow_ref_mut(cs);
        let Some(next) = timers
            .iter()
            .flatten()
            .filter(|timer| timer.waker.is_some())
            .map(|timer| timer.deadline)
            .min()
        else {
            return false;
        };
        if next > now() {
            NOW.store(next, Ordering::Relaxed);
        }
        for (timer, slot) in timers.iter_mut().flatten().zip(due.iter_mut()) {
            if timer.deadline <= next {
                *slot = timer.waker.take();
            }
        }
        true
    });
    // Woken outside the critical section: a waker runs foreign code.
    due.into_iter().flatten().for_each(Waker::wake);
    found
}

/// A future that completes once the clock reaches its deadline. It keeps a
/// timer slot (with its waker) while pending, and gives it back when it
/// completes or is dropped.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct TickSleep {
    deadline: u32,
    slot: Option<usize>,
}

impl TickSleep {
    /// Completes `ticks` ticks from now.
    pub fn new(ticks: u32) -> Self {
        TickSleep {
            deadline: now().saturating_add(ticks),
            slot: None,
        }
    }

    fn release(&mut self) {
        if let Some(slot) = self.slot.take() {
            let timer = critical_section::with(|cs| TIMERS.borrow_ref_mut(cs)[slot].take());
            drop(timer); // its waker, dropped outside the critical section
        }
    }
}

impl Future for TickSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if now() >= this.deadline {
            this.release();
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        let deadline = this.deadline;
        let slot = this.slot;
        let (slot, replaced) = critical_section::with(|cs| {
            let mut timers = TIMERS.borrow_ref_mut(cs);
            let index = match slot {
                Some(index) => index,
                None => timers
                    .iter()
                    .position(Option::is_none)
                    .expect("more sleeps pending at once than TIMER_SLOTS"),
            };
            let replaced = timers[index].replace(Timer {
                deadline,
                waker: Some(waker),
            });
            (index, replaced)
        });
        drop(replaced);
        this.slot = Some(slot);
        Poll::Pending
    }
}

impl Drop for TickSleep {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whole ticks in `duration`, rounded up (a sleep never ends early).
pub fn ticks(duration: Duration) -> u32 {
    let nanos = duration.as_nanos();
    let ticks = nanos.div_ceil(1_000_000);
    u32::try_from(ticks).unwrap_or(u32::MAX)
}

/// saga-core's timer on this board: sleeps on the simulated tick clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickSleeper;

impl Sleeper for TickSleeper {
    type Sleep = TickSleep;

    fn sleep(&self, duration: Duration) -> TickSleep {
        TickSleep::new(ticks(duration))
    }
}

// ---------------------------------------------------------------------------
// Hand-written futures.

/// Returns `Pending` `n` times, waking itself each time, then `Ready`.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Yield(pub u32);

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

/// Pending forever, and never wakes anyone: only a timeout or an abort ends
/// a step that awaits it.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Never;

impl Future for Never {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// A one-shot signal between two tasks (two members of a parallel group):
/// `wait` is pending until `set`, and `set` wakes the waiter with the waker
/// it registered, so the waiter is polled again only through that wake-up.
#[derive(Debug)]
pub struct Signal {
    state: Mutex<RefCell<(bool, Option<Waker>)>>,
}

impl Default for Signal {
    fn default() -> Self {
        Signal {
            state: Mutex::new(RefCell::new((false, None))),
        }
    }
}

impl Signal {
    /// Sets the signal and wakes the waiter, if any.
    pub fn set(&self) {
        let waker = critical_section::with(|cs| {
            let mut state = self.state.borrow_ref_mut(cs);
            state.0 = true;
            state.1.take()
        });
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Completes once the signal is set.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        core::future::poll_fn(move |cx| {
            critical_section::with(|cs| {
                let mut state = self.state.borrow_ref_mut(cs);
                if state.0 {
                    Poll::Ready(())
                } else {
                    state.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
    }
}

/// Polls two futures until both completed (both at every poll: this
/// executor has a single waker), and returns both outputs.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(MaybeDone::Pending(a));
    let mut b = pin!(MaybeDone::Pending(b));
    core::future::poll_fn(move |cx| {
        let a_done = a.as_mut().poll_done(cx);
        let b_done = b.as_mut().poll_done(cx);
        if a_done && b_done {
            Poll::Ready((a.as_mut().take(), b.as_mut().take()))
        } else {
            Poll::Pending
        }
    })
    .await
}

enum MaybeDone<F: Future> {
    Pending(F),
    Done(F::Output),
    Taken,
}

impl<F: Future> MaybeDone<F> {
    fn poll_done(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        // SAFETY: the future in `Pending` is never moved: it is polled in
        // place, and replaced (dropped in place) only once it completed.
        let this = unsafe { self.get_unchecked_mut() };
        match this {
            MaybeDone::Pending(future) => {
                let future = unsafe { Pin::new_unchecked(future) };
                match future.poll(cx) {
                    Poll::Ready(output) => {
                        *this = MaybeDone::Done(output);
                        true
                    }
                    Poll::Pending => false,
                }
            }
            MaybeDone::Done(_) => true,
            MaybeDone::Taken => true,
        }
    }

    fn take(self: Pin<&mut Self>) -> F::Output {
        // SAFETY: only a completed `Done` value (no future) is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        match core::mem::replace(this, MaybeDone::Taken) {
            MaybeDone::Done(output) => output,
            _ => panic!("join: output taken twice or before completion"),
        }
    }
}
