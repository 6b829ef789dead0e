//! [`SagaHandle`]: a saga running as a detached task, and what it ends with.

use alloc::sync::Arc;
use core::fmt;
use core::future::{Future, poll_fn};
use core::panic::AssertUnwindSafe;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::panic::catch_unwind;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{AbortHandle, Aborted, Panicked, Saga, SagaError};

use super::CatchPanics;

/// The handle of a saga run as a detached task (see [`detach`], and the
/// runtime adapters' `spawn`): a future of how the run ended, and a way to
/// abort it.
///
/// Awaiting it gives `Ok(`[`Finished`]`)` once the saga ran to its end
/// (succeeded, or failed and compensated as far as it could), with the saga
/// handed back so it can run again, or `Err(`[`Lost`]`)` when the task was
/// dropped before the saga finished (the runtime shut down).
///
/// Dropping the handle does not stop the saga: the task keeps running its
/// actions and compensations to the end, and only the report is discarded.
/// To stop a saga with compensation, [`abort`](SagaHandle::abort) it.
///
/// It is `Send` and `Sync` when `E` is `Send`, and `Unpin`.
pub struct SagaHandle<E> {
    shared: Arc<Shared<Finished<E>>>,
    abort: AbortHandle,
}

/// How a detached saga ended: the saga itself, handed back so that it can run
/// again, and the run's result.
#[derive(Debug)]
#[non_exhaustive]
pub struct Finished<E> {
    /// The saga, ready to run again.
    pub saga: Saga<E>,
    /// `Ok(())` when every action succeeded; otherwise the full report
    /// ([`SagaError`]): what failed, what was compensated, what was left
    /// applied, whether it was aborted or panicked.
    pub result: Result<(), SagaError<E>>,
}

impl<E> Finished<E> {
    /// The run's result, dropping the saga.
    pub fn into_result(self) -> Result<(), SagaError<E>> {
        self.result
    }
}

/// A detached saga's task was dropped before the saga finished: the runtime
/// shut down (or the task panicked outside any step). The saga stopped where
/// it stood, without compensating, and is gone; the steps it applied may
/// still be applied.
///
/// This is an error of the task, not of the saga, so it is kept apart from
/// the saga's own [`SagaError`]: a `SagaHandle` never reports a lost saga as
/// a success, and never panics for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Lost {
    panicked: bool,
}

impl Lost {
    /// `true` when the task was dropped by a panic that no step could be
    /// charged with, such as one out of the error type's `From<Panicked>`
    /// (the panics of steps and of the saga's callbacks are caught and
    /// reported in the [`SagaError`]); `false` when the runtime dropped it,
    /// as it does when it shuts down.
    pub fn is_panic(&self) -> bool {
        self.panicked
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = if self.panicked {
            "the task panicked outside any step"
        } else {
            "the runtime dropped the task"
        };
        write!(
            f,
            "saga lost before it finished ({cause}); applied steps may be left uncompensated"
        )
    }
}

impl core::error::Error for Lost {}

/// What the task and the handle share: the outcome (a `T`: a [`Finished`]
/// saga or a [`FinishedFlow`](super::FinishedFlow)), once there is one.
pub(super) struct Shared<T> {
    state: Mutex<State<T>>,
}

#[allow(
    clippy::large_enum_variant,
    reason = "it lives once, in the shared `Arc`; boxing would only add an allocation"
)]
pub(super) enum State<T> {
    Running(Option<Waker>),
    Finished(T),
    Lost(Lost),
    Taken,
}

impl<T> Shared<T> {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State::Running(None)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code runs under the lock that could panic and poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the outcome (unless one is recorded) and wakes the handle.
    fn settle(&self, outcome: State<T>) {
        let mut state = self.lock();
        if let State::Running(waker) = &mut *state {
            let waker = waker.take();
            *state = outcome;
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// `true` once the task finished or was lost.
    pub(super) fn is_settled(&self) -> bool {
        !matches!(*self.lock(), State::Running(_))
    }

    /// The handle's `poll`: the outcome once there is one.
    pub(super) fn poll_outcome(
        &self,
        cx: &mut Context<'_>,
        handle: &'static str,
    ) -> Poll<Result<T, Lost>> {
        let mut state = self.lock();
        match core::mem::replace(&mut *state, State::Taken) {
            State::Running(mut waker) => {
                if !waker
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
                {
                    waker = Some(cx.waker().clone());
                }
                *state = State::Running(waker);
                Poll::Pending
            }
            State::Finished(finished) => Poll::Ready(Ok(finished)),
            State::Lost(lost) => Poll::Ready(Err(lost)),
            State::Taken => panic!("`{handle}` polled after it completed"),
        }
    }
}

/// The task's end of the handle: it reports the outcome, or, dropped before
/// it did, reports the run lost.
pub(super) struct Completion<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Completion<T> {
    pub(super) fn new(shared: Arc<Shared<T>>) -> Self {
        Completion { shared }
    }

    /// Records how the task ended: `Some` finished, `None` lost to a panic
    /// (see [`run_to_end`]).
    pub(super) fn settle(self, finished: Option<T>) {
        let outcome = match finished {
            Some(finished) => State::Finished(finished),
            None => State::Lost(Lost { panicked: true }),
        };
        self.shared.settle(outcome);
    }
}

/// Runs `run` to its end, catching a panic that `CatchPanics` cannot charge
/// to a step (one out of the error type's `From<Panicked>`, say): the task
/// ends then, not the runtime, and `None` says the run is lost.
pub(super) async fn run_to_end<F: Future + Unpin>(mut run: F) -> Option<F::Output> {
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut run).poll(cx))) {
            Ok(poll) => poll.map(Some),
            Err(_payload) => Poll::Ready(None),
        },
    )
    .await
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        self.shared.settle(State::Lost(Lost { panicked }));
    }
}

/// Prepares `saga` to run as a detached task: returns the future to spawn on
/// any executor, and its [`SagaHandle`]. The future runs the saga to its end,
/// abortable through the handle and catching panics ([`CatchPanics`]), then
/// hands the saga and its result back through the handle. If the future is
/// dropped before that (the executor shut down), the handle reports
/// [`Lost`].
///
/// The runtime adapters' `spawn` is this plus their executor's `spawn`. The
/// error type must take an abort and a panic: `String`,
/// `Box<dyn Error + Send + Sync>` and `anyhow::Error` do, and so does an
/// enum with a variant for each (see [`Aborted`] and [`Panicked`]).
///
/// # Examples
///
/// On smol, with no adapter:
///
/// ```
/// use saga_core::SagaBuilder;
///
/// let saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .add_step(|| async { Err::<(), _>(String::from("declined")) }, || async { Ok(()) })
///     .build();
///
/// let (task, handle) = saga_core::rt::detach(saga);
/// smol::spawn(task).detach(); // dropping the handle would not stop it either
/// let finished = smol::block_on(handle).expect("the executor is still running");
/// let error = finished.result.unwrap_err();
/// assert!(error.is_fully_compensated());
/// let again = saga_core::rt::detach(finished.saga); // it can run again
/// # drop(again);
/// ```
pub fn detach<E>(saga: Saga<E>) -> (impl Future<Output = ()> + Send + 'static, SagaHandle<E>)
where
    E: From<Aborted> + From<Panicked> + Send + 'static,
{
    let shared = Shared::new();
    let abort = AbortHandle::new();
    let handle = SagaHandle {
        shared: Arc::clone(&shared),
        abort: abort.clone(),
    };
    let completion = Completion::new(shared);
    let task = async move {
        let mut saga = saga;
        // A step's panic is a failed step (`CatchPanics`).
        let result = run_to_end(CatchPanics::new(saga.run().abortable(&abort))).await;
        completion.settle(result.map(|result| Finished { saga, result }));
    };
    (task, handle)
}

impl<E> SagaHandle<E> {
    /// Aborts the saga: it starts no further action, lets the action in
    /// flight finish (or cuts it short, per the saga's
    /// [`InFlight`](crate::InFlight) policy), and compensates what it
    /// applied. The handle then resolves to a [`SagaError`] whose
    /// [`aborted`](SagaError::aborted) is `true` (unless the saga had
    /// already finished). Does not wait; await the handle for the report.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// A cloneable handle that aborts this saga from elsewhere, as
    /// [`abort`](SagaHandle::abort) does.
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// `true` once the saga finished or was lost, so awaiting the handle
    /// would not wait.
    pub fn is_finished(&self) -> bool {
        self.shared.is_settled()
    }
}

impl<E> Future for SagaHandle<E> {
    type Output = Result<Finished<E>, Lost>;

    /// # Panics
    ///
    /// When polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.shared.poll_outcome(cx, "SagaHandle")
    }
}

impl<E> fmt::Debug for SagaHandle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaHandle")
            .field("finished", &self.is_finished())
            .field("aborted", &self.abort.is_aborted())
            .finish()
    }
}
