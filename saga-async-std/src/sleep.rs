//! [`AsyncStdSleeper`]: async-std's timer as a saga's [`Sleeper`].

use alloc::boxed::Box;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;

use saga_core::Sleeper;

/// async-std's timer, as the [`Sleeper`] behind a saga's retry backoff and
/// timeouts: [`SagaBuilder::sleeper`](saga_core::SagaBuilder::sleeper)`(AsyncStdSleeper::new())`,
/// or [`builder`](crate::builder), which does it for you.
///
/// Its sleeps are `async_std::task::sleep`. async-std gives that future no
/// name, so each sleep is boxed: one allocation per timeout or backoff wait
/// (a saga without timeouts or backoff never sleeps). They need no runtime
/// context: the saga may run on async-std, smol or any executor.
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
    /// `async_std::task::sleep`, boxed.
    type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        Box::pin(async_std::task::sleep(duration))
    }
}
