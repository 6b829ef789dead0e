//! [`AsyncStdSleeper`]: async-std's timer as a saga's [`Sleeper`].

use core::time::Duration;

use async_io::Timer;
use saga_core::{Discard, Sleeper};

/// async-std's timer, as the [`Sleeper`] behind a saga's retry backoff and
/// timeouts: [`SagaBuilder::sleeper`](saga_core::SagaBuilder::sleeper)`(AsyncStdSleeper::new())`,
/// or [`builder`](crate::builder), which does it for you.
///
/// Its sleeps are `async_io::Timer`s, the timer under `async_std::task::sleep`
/// (named here so that a sleep is not boxed). They need no runtime context:
/// the saga may run on async-std, smol or any executor.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use saga_async_std::AsyncStdSleeper;
/// use saga_async_std::saga_core::{Retry, SagaBuilder, TimedOut};
///
/// #[derive(Debug)]
/// enum Error { Busy, TimedOut }
/// impl From<TimedOut> for Error {
///     fn from(_: TimedOut) -> Self { Error::TimedOut }
/// }
///
/// let mut saga = SagaBuilder::new()
///     .sleeper(AsyncStdSleeper::new())
///     .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
///     .add_step(|| async { Err::<(), _>(Error::Busy) }, || async { Ok(()) })
///     .build();
///
/// let error = async_std::task::block_on(saga.run()).unwrap_err();
/// assert!(matches!(error.error(), Error::Busy));
/// assert_eq!(error.attempts(), 3);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct AsyncStdSleeper;

impl AsyncStdSleeper {
    /// A sleeper on async-std's timer.
    pub fn new() -> Self {
        AsyncStdSleeper
    }
}

impl Sleeper for AsyncStdSleeper {
    /// The timer with its `Instant` output discarded.
    type Sleep = Discard<Timer>;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        // Any `Fn(Duration) -> impl Future` is a sleeper whose sleeps are `Discard`ed.
        let after: fn(Duration) -> Timer = Timer::after;
        after.sleep(duration)
    }
}
