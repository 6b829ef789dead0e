//! [`TokioSleeper`]: tokio's timer as a saga's [`Sleeper`].

use core::time::Duration;

use saga_core::Sleeper;

/// tokio's timer, as the [`Sleeper`] behind a saga's retry backoff and
/// timeouts: [`SagaBuilder::sleeper`](saga_core::SagaBuilder::sleeper)`(TokioSleeper::new())`,
/// or [`builder`](crate::builder), which does it for you.
///
/// Its sleeps are [`tokio::time::sleep`]: the saga must run inside a tokio
/// runtime with the time driver enabled (`#[tokio::main]`, or a runtime built
/// with `enable_time` or `enable_all`), and honours tokio's paused test clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use saga_tokio::TokioSleeper;
/// use saga_tokio::saga_core::{Retry, SagaBuilder, TimedOut};
///
/// #[derive(Debug)]
/// enum Error { Busy, TimedOut }
/// impl From<TimedOut> for Error {
///     fn from(_: TimedOut) -> Self { Error::TimedOut }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut saga = SagaBuilder::new()
///     .sleeper(TokioSleeper::new())
///     .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
///     .add_step(|| async { Err::<(), _>(Error::Busy) }, || async { Ok(()) })
///     .build();
///
/// let error = saga.run().await.unwrap_err();
/// assert!(matches!(error.error(), Error::Busy));
/// assert_eq!(error.attempts(), 3);
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct TokioSleeper;

impl TokioSleeper {
    /// A sleeper on tokio's timer.
    pub fn new() -> Self {
        TokioSleeper
    }
}

impl Sleeper for TokioSleeper {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }
}
