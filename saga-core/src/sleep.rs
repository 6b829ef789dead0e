//! [`Sleeper`]: the one thing the core needs from a runtime to tell time.

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

/// Which of a saga's two timers: the one for the step at hand (its timeout or
/// its backoff, never both at once), or the one for the whole saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Step,
    Saga,
}

/// A saga's timers: a sleeper and the sleeps in flight, boxed once when the
/// saga is built so that runs allocate nothing to time their steps.
pub(crate) trait Timers: Send {
    /// Starts (or restarts) a timer.
    fn start(self: Pin<&mut Self>, slot: Slot, duration: Duration);
    /// Stops a timer; it then never elapses.
    fn stop(self: Pin<&mut Self>, slot: Slot);
    /// `Ready` once a started timer elapsed (it is then stopped); `Pending`
    /// while it runs or when it is stopped.
    fn poll_elapsed(self: Pin<&mut Self>, slot: Slot, cx: &mut Context<'_>) -> Poll<()>;
}

pin_project! {
    pub(crate) struct SleeperTimers<S: Sleeper> {
        sleeper: S,
        #[pin]
        step: Option<S::Sleep>,
        #[pin]
        saga: Option<S::Sleep>,
    }
}

impl<S: Sleeper> SleeperTimers<S> {
    pub(crate) fn new(sleeper: S) -> Self {
        SleeperTimers {
            sleeper,
            step: None,
            saga: None,
        }
    }
}

impl<S> Timers for SleeperTimers<S>
where
    S: Sleeper + Send,
    S::Sleep: Send,
{
    fn start(self: Pin<&mut Self>, slot: Slot, duration: Duration) {
        let mut this = self.project();
        let sleep = Some(this.sleeper.sleep(duration));
        match slot {
            Slot::Step => this.step.set(sleep),
            Slot::Saga => this.saga.set(sleep),
        }
    }

    fn stop(self: Pin<&mut Self>, slot: Slot) {
        let mut this = self.project();
        match slot {
            Slot::Step => this.step.set(None),
            Slot::Saga => this.saga.set(None),
        }
    }

    fn poll_elapsed(self: Pin<&mut Self>, slot: Slot, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let mut sleep = match slot {
            Slot::Step => this.step,
            Slot::Saga => this.saga,
        };
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
