//! [`blocking`]: a synchronous function as an action or a compensation, run
//! on a runtime's blocking pool ([`BlockingPool`]).

use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use crate::Panicked;

/// The synchronous function behind a blocking step, shared by its attempts.
type Function<T, E> = Arc<dyn Fn() -> Result<T, E> + Send + Sync>;

/// A runtime's pool for blocking work: what a runtime adapter supplies so that
/// [`blocking`] steps run there (`saga_tokio::TokioPool`,
/// `saga_async_std::AsyncStdPool`).
pub trait BlockingPool {
    /// A function running on the pool: its result, or its panic.
    type Job<R: Send + 'static>: Future<Output = Result<R, Panicked>> + Send + Unpin;

    /// Starts `f` on the pool.
    fn spawn<R, F>(f: F) -> Self::Job<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static;
}

/// Turns a synchronous function into an action or a compensation that runs it
/// on the blocking pool `P`, so it never stalls the runtime's workers. The
/// runtime adapters' `blocking` is this with their pool.
///
/// The result is a closure to pass to `add_step` (or `add_step_with`, or
/// `FnStep::new`), as the action, the compensation, or both. Each call starts
/// one attempt: a retry, or another run of the saga, calls `f` again. A panic
/// inside `f` becomes `E::from(Panicked)` with the panic message, a failed
/// attempt like any other.
///
/// A blocking function cannot be stopped once it started: when a timeout or
/// an abort cuts its attempt short, the saga goes on (the attempt counts as
/// failed and possibly applied, and is compensated per the step's rule) while
/// `f` runs to its end on the pool.
pub fn blocking<P, F, T, E>(f: F) -> impl Fn() -> Blocking<P, T, E> + Send + Sync + 'static
where
    P: BlockingPool,
    F: Fn() -> Result<T, E> + Send + Sync + 'static,
    T: Send + 'static,
    E: From<Panicked> + Send + 'static,
{
    let function: Function<T, E> = Arc::new(f);
    move || Blocking {
        state: State::Idle(Arc::clone(&function)),
    }
}

/// One attempt of a [`blocking`] step: the synchronous function, started on
/// the blocking pool `P` when first polled.
///
/// Dropping it before it completes does not stop the function once started;
/// only its result is discarded.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Blocking<P: BlockingPool, T: Send + 'static, E: Send + 'static> {
    state: State<P, T, E>,
}

enum State<P: BlockingPool, T: Send + 'static, E: Send + 'static> {
    Idle(Function<T, E>),
    Running(P::Job<Result<T, E>>),
    Done,
}

impl<P, T, E> Future for Blocking<P, T, E>
where
    P: BlockingPool,
    T: Send + 'static,
    E: From<Panicked> + Send + 'static,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = &mut self.get_mut().state;
        loop {
            match state {
                State::Idle(function) => {
                    let function = Arc::clone(function);
                    *state = State::Running(P::spawn(move || function()));
                }
                State::Running(job) => {
                    let outcome = ready!(Pin::new(job).poll(cx));
                    *state = State::Done;
                    return Poll::Ready(outcome.unwrap_or_else(|panic| Err(E::from(panic))));
                }
                State::Done => panic!("`Blocking` polled after it completed"),
            }
        }
    }
}

impl<P: BlockingPool, T: Send + 'static, E: Send + 'static> fmt::Debug for Blocking<P, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle(_) => "idle",
            State::Running(_) => "running",
            State::Done => "done",
        };
        f.debug_struct("Blocking").field("state", &state).finish()
    }
}
