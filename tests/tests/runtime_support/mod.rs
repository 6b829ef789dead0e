//! Shared fakes for the runtime adapter tests (`tokio_*.rs`, `async_std_*.rs`):
//! an error type, a runtime-agnostic one-shot [`Signal`], the [`Runtime`]
//! trait that lets one scenario run on saga-tokio and saga-async-std, and
//! macros that turn a scenario into tests for each runtime and flavour.
//!
//! Each test file does `#[macro_use] mod runtime_support;`.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "test support: each test binary uses a part of it"
)]

pub mod scenarios;

use std::future::Future;
use std::mem;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::{Either, select};
use saga_core::{Aborted, Panicked, Saga, SagaBuilder, SagaError, Step, Timed, TimedOut};

/// The error of every saga in these tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Failed(&'static str),
    Busy,
    TimedOut,
    Aborted,
    Panicked(String),
}

impl From<TimedOut> for Error {
    fn from(_: TimedOut) -> Self {
        Error::TimedOut
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

impl From<Panicked> for Error {
    fn from(panic: Panicked) -> Self {
        Error::Panicked(panic.message().to_owned())
    }
}

/// The prefix of every panic message these tests provoke on purpose.
pub const TEST_PANIC: &str = "test panic:";

/// Keeps the panics provoked on purpose (messages starting with
/// [`TEST_PANIC`]) out of the test output; other panics print as usual.
pub fn quiet_test_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|message| message.starts_with(TEST_PANIC)) {
                default(info);
            }
        }));
    });
}

/// A one-shot event that any task, on any runtime, can wait for.
#[derive(Clone, Default)]
pub struct Signal(Arc<SignalState>);

#[derive(Default)]
struct SignalState {
    set: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Signal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the signal and wakes every waiter.
    pub fn set(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        let wakers = mem::take(&mut *self.0.wakers.lock().unwrap());
        wakers.into_iter().for_each(Waker::wake);
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Completes once the signal is set.
    pub fn wait(&self) -> Wait {
        Wait(self.clone())
    }
}

/// The future of [`Signal::wait`].
pub struct Wait(Signal);

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let state = &(self.0).0;
        if state.set.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        state.wakers.lock().unwrap().push(cx.waker().clone());
        // Set between the check and the registration: do not miss it.
        if state.set.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// How a detached saga ended, whatever the adapter.
#[allow(clippy::large_enum_variant, reason = "one per saga, moved once")]
pub enum Joined {
    Finished {
        saga: Saga<Error>,
        result: Result<(), SagaError<Error>>,
    },
    Lost {
        panicked: bool,
    },
}

impl Joined {
    /// The saga and its result; panics if the saga was lost.
    pub fn finished(self) -> (Saga<Error>, Result<(), SagaError<Error>>) {
        match self {
            Joined::Finished { saga, result } => (saga, result),
            Joined::Lost { panicked } => panic!("saga lost (panicked: {panicked})"),
        }
    }

    /// The saga's result; panics if the saga was lost.
    pub fn result(self) -> Result<(), SagaError<Error>> {
        self.finished().1
    }
}

/// A boxed action or compensation, as [`Runtime::blocking`] returns.
pub type Call = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send>;

/// What a scenario needs from an adapter and its runtime.
pub trait Runtime: 'static {
    type Handle: Send + 'static;

    fn spawn(saga: Saga<Error>) -> Self::Handle;
    fn abort(handle: &Self::Handle);
    fn join(handle: Self::Handle) -> impl Future<Output = Joined> + Send;
    /// The adapter's `builder()`: a saga builder with the runtime's sleeper.
    fn builder() -> SagaBuilder<Error, dyn Step<Error> + Send, Timed>;
    /// The adapter's `blocking(f)`, boxed.
    fn blocking(f: impl Fn() -> Result<(), Error> + Send + Sync + 'static) -> Call;
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;
    fn yield_now() -> impl Future<Output = ()> + Send;
}

/// Implements [`Runtime`] for `$runtime` with the adapter crate `$adapter`.
macro_rules! adapter {
    ($runtime:ident, $adapter:ident, sleep: $sleep:path, yield_now: $yield_now:path) => {
        impl Runtime for $runtime {
            type Handle = $adapter::SagaHandle<Error>;

            fn spawn(saga: Saga<Error>) -> Self::Handle {
                $adapter::spawn(saga)
            }

            fn abort(handle: &Self::Handle) {
                handle.abort();
            }

            async fn join(handle: Self::Handle) -> Joined {
                match handle.await {
                    Ok(finished) => Joined::Finished {
                        saga: finished.saga,
                        result: finished.result,
                    },
                    Err(lost) => Joined::Lost {
                        panicked: lost.is_panic(),
                    },
                }
            }

            fn builder() -> SagaBuilder<Error, dyn Step<Error> + Send, Timed> {
                $adapter::builder()
            }

            fn blocking(f: impl Fn() -> Result<(), Error> + Send + Sync + 'static) -> Call {
                let call = $adapter::blocking(f);
                Box::new(move || Box::pin(call()))
            }

            async fn sleep(duration: Duration) {
                $sleep(duration).await;
            }

            async fn yield_now() {
                $yield_now().await;
            }
        }
    };
}

/// saga-tokio, on whichever tokio runtime the test runs in.
pub struct Tokio;

adapter!(Tokio, saga_tokio, sleep: tokio::time::sleep, yield_now: tokio::task::yield_now);

/// saga-async-std, on async-std's global executor.
pub struct AsyncStd;

adapter!(AsyncStd, saga_async_std, sleep: async_std::task::sleep, yield_now: async_std::task::yield_now);

/// A generous bound on any wait in these tests: hitting it means a hang (a
/// bug), not a slow machine. Never used to assert on timing.
pub const HANG: Duration = Duration::from_secs(30);

/// `future`'s output, or a panic if it hangs for [`HANG`].
pub async fn within<R: Runtime, F: Future>(what: &str, future: F) -> F::Output {
    match select(pin!(future), pin!(R::sleep(HANG))).await {
        Either::Left((output, _)) => output,
        Either::Right(_) => panic!("hung waiting for {what}"),
    }
}

/// Tests running `scenarios::$scenario::<Tokio>()` on a current-thread and on
/// a two-worker multi-thread tokio runtime.
#[allow(unused_macros, reason = "the async-std test files use the other one")]
macro_rules! on_tokio {
    ($($scenario:ident),* $(,)?) => {
        mod current_thread {
            $(
                #[tokio::test(flavor = "current_thread")]
                async fn $scenario() {
                    crate::runtime_support::scenarios::$scenario::<crate::runtime_support::Tokio>().await;
                }
            )*
        }

        mod multi_thread {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::runtime_support::scenarios::$scenario::<crate::runtime_support::Tokio>().await;
                }
            )*
        }
    };
}

/// Tests running `scenarios::$scenario::<AsyncStd>()` on async-std.
#[allow(unused_macros, reason = "the tokio test files use the other one")]
macro_rules! on_async_std {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                async_std::task::block_on(
                    crate::runtime_support::scenarios::$scenario::<crate::runtime_support::AsyncStd>(),
                );
            }
        )*
    };
}
