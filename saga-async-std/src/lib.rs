//! Runs [`saga_core`] sagas on async-std: a timer, detached runs with a
//! handle, panics turned into failed steps, and blocking steps.
//!
//! **async-std is discontinued upstream in favour of
//! [smol](https://docs.rs/smol).** This crate stays for programs already on
//! async-std. New code does not need an adapter at all: `saga-core` runs on
//! smol as it is, with smol's timer as the sleeper:
//!
//! ```
//! use std::time::Duration;
//! use saga_async_std::saga_core::{Retry, SagaBuilder, TimedOut};
//!
//! #[derive(Debug)]
//! struct Error;
//! impl From<TimedOut> for Error { fn from(_: TimedOut) -> Self { Error } }
//!
//! let mut saga = SagaBuilder::new()
//!     .sleeper(|duration| smol::Timer::after(duration))
//!     .action_retry(Retry::attempts(2).constant(Duration::from_millis(1)))
//!     .add_step(|| async { Ok::<_, Error>(()) }, || async { Ok(()) })
//!     .build();
//! assert!(smol::block_on(saga.run()).is_ok());
//! ```
//!
//! What this crate offers on async-std:
//!
//! - [`AsyncStdSleeper`] is async-std's timer as a saga's
//!   [`Sleeper`](saga_core::Sleeper), for retry backoff and timeouts;
//!   [`builder`] gives a `SagaBuilder` that already has it.
//! - [`spawn`] runs a saga as an async-std task and returns a [`SagaHandle`]:
//!   await it for the report, [abort](SagaHandle::abort) through it, or drop
//!   it and let the saga finish on its own.
//! - [`spawn_flow`] does the same for a run of a [`Flow`]
//!   with its input, and hands the flow back with the result.
//! - A step that panics is a failed step ([`CatchPanics`]): the saga
//!   compensates, and the report carries the panic message.
//! - [`blocking`] makes a synchronous function an action or a compensation
//!   that runs on async-std's blocking pool.
//!
//! The API is the same as `saga-tokio`'s, and so is the code behind it, but
//! for the timer, the task spawner and the blocking pool.
//!
//! # Examples
//!
//! A trip whose car booking fails: the hotel and the flight are cancelled,
//! in that order, while the caller does other work.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use saga_async_std::saga_core::{Aborted, Panicked, TimedOut};
//!
//! #[derive(Debug, PartialEq)]
//! enum Error { NoCars, Aborted, Panicked(String), TimedOut }
//! impl From<Aborted> for Error { fn from(_: Aborted) -> Self { Error::Aborted } }
//! impl From<TimedOut> for Error { fn from(_: TimedOut) -> Self { Error::TimedOut } }
//! impl From<Panicked> for Error {
//!     fn from(panic: Panicked) -> Self { Error::Panicked(panic.message().into()) }
//! }
//!
//! # async_std::task::block_on(async {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let record = |entry: &'static str| {
//!     let log = log.clone();
//!     move || {
//!         let log = log.clone();
//!         async move { log.lock().unwrap().push(entry); Ok(()) }
//!     }
//! };
//!
//! let saga = saga_async_std::builder()
//!     .add_step(record("book flight"), record("cancel flight"))
//!     .add_step(record("book hotel"), record("cancel hotel"))
//!     .add_step(|| async { Err::<(), _>(Error::NoCars) }, || async { Ok(()) })
//!     .build();
//!
//! let handle = saga_async_std::spawn(saga);
//! // ... the saga runs on its own task meanwhile ...
//! let finished = handle.await.expect("the task was not dropped");
//! let error = finished.result.unwrap_err();
//! assert_eq!(*error.error(), Error::NoCars);
//! assert!(error.is_fully_compensated());
//! assert_eq!(
//!     *log.lock().unwrap(),
//!     ["book flight", "book hotel", "cancel hotel", "cancel flight"],
//! );
//! # });
//! ```
//!
//! # Cancel safety
//!
//! Two ways to run a saga, two behaviours when the waiting stops:
//!
//! - **`saga.run().await`** (or [`CatchPanics`] around it) runs the saga in
//!   the caller's task. Dropping that future mid-saga (a losing branch of a
//!   race, `async_std::future::timeout`, a cancelled task) stops the saga
//!   where it stands *without compensating*: Rust has no async drop. The
//!   step in flight is dropped and the applied steps stay applied.
//! - **[`spawn`]** runs the saga in a task of its own. Dropping the
//!   [`SagaHandle`] (or the future awaiting it) never stops the saga: it runs
//!   its actions, and its compensations if needed, to the end. To stop it
//!   with compensation, call [`SagaHandle::abort`]. Should the task be
//!   dropped mid-saga anyway (async-std's executor lives as long as the
//!   process, so this takes a panic that no step can be charged with, such
//!   as one out of the error type's `From<Panicked>`), the handle says so
//!   with [`Lost`].
//!
//! To race a saga against a deadline, give it a timeout
//! ([`SagaBuilder::saga_timeout`](saga_core::SagaBuilder::saga_timeout)) or
//! spawn it and abort it, rather than dropping its run future.
//!
//! # Panics
//!
//! Steps that panic do not unwind out of [`spawn`]ed sagas nor
//! [`CatchPanics`]: the panicking attempt fails with `E::from(Panicked)` and
//! the saga goes on by its rules. This needs unwinding panics (the default),
//! not `panic = "abort"`.
#![forbid(unsafe_code)]

extern crate alloc;

mod pool;
mod sleep;

pub use pool::{AsyncStdJob, AsyncStdPool};
pub use saga_core;
pub use saga_core::rt::{CatchPanics, Finished, FinishedFlow, FlowHandle, Lost, SagaHandle};
pub use sleep::AsyncStdSleeper;

use saga_core::{Aborted, Flow, Panicked, Saga, SagaBuilder, Step, Timed, TimedOut};

/// One attempt of a [`blocking`] step, on async-std's blocking pool.
pub type Blocking<T, E> = saga_core::rt::Blocking<AsyncStdPool, T, E>;

/// Turns a synchronous function into an action or a compensation that runs it
/// on async-std's blocking pool, so it never stalls the runtime's workers: a panic
/// in `f` is a failed attempt, and `f` runs to its end even when its attempt
/// is cut short. See [`saga_core::rt::blocking`], which this is with
/// [`AsyncStdPool`].
#[doc = include_str!("doc/blocking.md")]
pub fn blocking<F, T, E>(f: F) -> impl Fn() -> Blocking<T, E> + Send + Sync + 'static
where
    F: Fn() -> Result<T, E> + Send + Sync + 'static,
    T: Send + 'static,
    E: From<Panicked> + Send + 'static,
{
    saga_core::rt::blocking::<AsyncStdPool, _, _, _>(f)
}

/// Runs `saga` to its end as a detached async-std task, and returns its
/// handle.
///
/// The run is [abortable](SagaHandle::abort) and catches panics (a panicking
/// step is a failed step, see [`CatchPanics`]), hence the bounds on `E`:
/// `String`, `Box<dyn Error + Send + Sync>` and `anyhow::Error` meet them as
/// they are, and an error enum with a variant for each (see [error
/// types](#error-types)). The
/// handle resolves to the saga and its result ([`Finished`]), or to [`Lost`]
/// if the task is dropped first. Dropping the handle does not stop the saga.
///
/// The saga is moved into the task and handed back in [`Finished::saga`], so
/// it can be spawned (or run) again.
///
/// # Examples
///
/// Drop the handle: the saga still runs to its end, compensation included.
///
/// ```
/// use std::sync::mpsc;
/// use saga_async_std::saga_core::SagaBuilder;
///
/// let (undone, done) = mpsc::channel();
/// let saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, move || {
///         let undone = undone.clone();
///         async move { undone.send("refunded").unwrap(); Ok(()) }
///     })
///     .add_step(|| async { Err::<(), _>(String::from("card declined")) }, || async { Ok(()) })
///     .build();
///
/// drop(saga_async_std::spawn(saga));
/// assert_eq!(done.recv(), Ok("refunded")); // blocks this thread until then
/// ```
#[doc = include_str!("doc/spawn.md")]
pub fn spawn<E>(saga: Saga<E>) -> SagaHandle<E>
where
    E: From<Aborted> + From<Panicked> + Send + 'static,
{
    let (task, handle) = saga_core::rt::detach(saga);
    // Dropping the join handle detaches the task; the saga handle replaces it.
    drop(async_std::task::spawn(task));
    handle
}

/// Runs `flow` with `input` as an async-std task, as [`spawn`] runs a saga: the
/// run goes on to its end when the handle is dropped, panics are failed
/// steps, [`FlowHandle::abort`] stops it with compensation, and awaiting the
/// handle gives the flow back with the run's result ([`FinishedFlow`]).
///
/// # Examples
///
/// ```
/// let flow = saga_async_std::saga_core::SagaBuilder::<String>::new()
///     .input::<u32>()
///     .then(|nights: &u32| { let nights = *nights; async move { Ok(nights * 90) } }, |_| async { Ok(()) })
///     .build_with(|(_, price)| price);
///
/// let finished = async_std::task::block_on(saga_async_std::spawn_flow(flow, 2))
///     .expect("the runtime is still running");
/// assert_eq!(finished.result.unwrap(), 180);
/// ```
pub fn spawn_flow<E, I, O, P>(flow: Flow<E, I, O, P>, input: I) -> FlowHandle<E, I, O, P>
where
    E: From<Aborted> + From<Panicked> + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
    P: Send + 'static,
{
    let (task, handle) = saga_core::rt::detach_flow(flow, input);
    drop(async_std::task::spawn(task));
    handle
}

/// A [`SagaBuilder`] with an [`AsyncStdSleeper`] already set, so retry
/// backoff and timeouts need no more wiring:
/// `SagaBuilder::new().sleeper(AsyncStdSleeper::new())`.
///
/// Timeouts fail a step with `E::from(TimedOut)`, hence the bound.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use saga_async_std::saga_core::{Retry, StepPolicy, TimedOut};
///
/// #[derive(Debug, PartialEq)]
/// enum Error { TimedOut }
/// impl From<TimedOut> for Error { fn from(_: TimedOut) -> Self { Error::TimedOut } }
///
/// let mut saga = saga_async_std::builder()
///     .add_step_with(
///         || std::future::pending::<Result<(), Error>>(), // never answers
///         || async { Ok(()) },
///         StepPolicy::new()
///             .timeout(Duration::from_millis(5))
///             .retry(Retry::attempts(2).constant(Duration::from_millis(1))),
///     )
///     .build();
///
/// let error = async_std::task::block_on(saga.run()).unwrap_err();
/// assert_eq!(*error.error(), Error::TimedOut);
/// assert!(error.timed_out());
/// assert_eq!(error.attempts(), 2);
/// ```
pub fn builder<E>() -> SagaBuilder<E, dyn Step<E> + Send + 'static, Timed>
where
    E: From<TimedOut>,
{
    SagaBuilder::new().sleeper(AsyncStdSleeper::new())
}
