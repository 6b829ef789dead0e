//! [`blocking`]: a synchronous function as an action or a compensation, run
//! on the runtime's blocking pool.

use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use saga_core::Panicked;

use crate::pool::{self, Job};

/// The synchronous function behind a blocking step, shared by its attempts.
type Function<T, E> = Arc<dyn Fn() -> Result<T, E> + Send + Sync>;

/// Turns a synchronous function into an action or a compensation that runs it
/// on the runtime's blocking pool, so it never stalls the runtime's workers.
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
#[doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/doc/blocking.md"))]
pub fn blocking<F, T, E>(f: F) -> impl Fn() -> Blocking<T, E> + Send + Sync + 'static
where
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
/// the runtime's blocking pool when first polled.
///
/// Dropping it before it completes does not stop the function once started;
/// only its result is discarded.
#[doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/doc/blocking_future.md"))]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Blocking<T, E> {
    state: State<T, E>,
}

enum State<T, E> {
    Idle(Function<T, E>),
    Running(Job<Result<T, E>>),
    Done,
}

impl<T, E> Future for Blocking<T, E>
where
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
                    *state = State::Running(pool::spawn(move || function()));
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

impl<T, E> fmt::Debug for Blocking<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle(_) => "idle",
            State::Running(_) => "running",
            State::Done => "done",
        };
        f.debug_struct("Blocking").field("state", &state).finish()
    }
}
