//! [`Sleeper`]: the one thing the core needs from a runtime to tell time.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use pin_project_lite::pin_project;

/// Something that can sleep: the timer behind retry backoff and timeouts.
///
/// The core has no timer of its own. Give a saga a sleeper with
/// [`SagaBuilder::sleeper`](crate::SagaBuilder::sleeper); the runtime
/// adapters supply theirs (`saga_tokio::TokioSleeper`). Any
/// `Fn(Duration) -> impl Future<Output = ()>` is a sleeper, so a runtime's
/// sleep function works as it is. Without a sleeper, asking for backoff or a
/// timeout does not compile.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use saga_core::Sleeper;
///
/// fn assert_sleeper<S: Sleeper>(_: &S) {}
/// assert_sleeper(&|duration: Duration| smol::Timer::after(duration));
/// ```
pub trait Sleeper {
    /// The future returned by [`sleep`](Sleeper::sleep).
    type Sleep: Future<Output = ()>;

    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> Self::Sleep;
}

impl<F, Fut, Out> Sleeper for F
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = Out>,
{
    type Sleep = Discard<Fut>;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        Discard {
            future: self(duration),
        }
    }
}

pin_project! {
    /// The [`Sleep`](Sleeper::Sleep) future of a closure sleeper: the
    /// closure's future with its output discarded (so a runtime timer that
    /// yields an `Instant` works as it is).
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Discard<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Discard<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().future.poll(cx).map(drop)
    }
}

impl<F> fmt::Debug for Discard<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discard").finish_non_exhaustive()
    }
}

/// Which of a saga's timers: the saga's deadline, or the one of a lane (the
/// timeout or the backoff of the step running in that lane, never both at
/// once).
// Public (in this private module) because `SagaKind` names `Timers`, whose
// methods name it; users never see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Saga,
    Lane(usize),
}

impl Slot {
    /// The lane whose timer this is; `None` for the deadline.
    pub(crate) fn lane(self) -> Option<usize> {
        match self {
            Slot::Saga => None,
            Slot::Lane(lane) => Some(lane),
        }
    }
}

/// A saga's timers: a sleeper and the sleeps in flight, one slot per lane
/// plus one for the deadline, boxed once when the saga is built so that runs
/// allocate nothing to keep time. Public (in this private module) because
/// `SagaKind` names it: a `Saga` stores `dyn Timers + Send`, a `LocalSaga`
/// `dyn Timers`; users never see it.
pub trait Timers {
    /// Makes room for `lanes` lane timers (and the deadline's), all stopped;
    /// called once, by `build`.
    fn set_lanes(&mut self, lanes: usize);
    /// Starts (or restarts) a timer.
    fn start(&mut self, slot: Slot, duration: Duration);
    /// Stops a timer; it then never elapses.
    fn stop(&mut self, slot: Slot);
    /// `Ready` once a started timer elapsed (it is then stopped); `Pending`
    /// while it runs or when it is stopped.
    fn poll_elapsed(&mut self, slot: Slot, cx: &mut Context<'_>) -> Poll<()>;
}

pub(crate) struct SleeperTimers<S: Sleeper> {
    sleeper: S,
    // Slot 0 is the deadline, slot `1 + lane` a lane's.
    slots: Vec<Pin<Box<Option<S::Sleep>>>>,
}

impl<S: Sleeper> SleeperTimers<S> {
    /// No slots until `set_lanes`.
    pub(crate) fn new(sleeper: S) -> Self {
        SleeperTimers {
            sleeper,
            slots: Vec::new(),
        }
    }

    fn slot(&mut self, slot: Slot) -> Pin<&mut Option<S::Sleep>> {
        let index = match slot {
            Slot::Saga => 0,
            Slot::Lane(lane) => 1 + lane,
        };
        self.slots[index].as_mut()
    }
}

impl<S: Sleeper> Timers for SleeperTimers<S> {
    fn set_lanes(&mut self, lanes: usize) {
        self.slots = (0..=lanes).map(|_| Box::pin(None)).collect();
    }

    fn start(&mut self, slot: Slot, duration: Duration) {
        let sleep = self.sleeper.sleep(duration);
        self.slot(slot).set(Some(sleep));
    }

    fn stop(&mut self, slot: Slot) {
        self.slot(slot).set(None);
    }

    fn poll_elapsed(&mut self, slot: Slot, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleep = self.slot(slot);
        let Some(running) = sleep.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let elapsed = running.poll(cx);
        if elapsed.is_ready() {
            sleep.set(None);
        }
        elapsed
    }
}
