//! [`TokioPool`]: how `saga-tokio` runs a function on tokio's blocking pool
//! (see [`blocking`](crate::blocking)).

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use saga_core::Panicked;
use saga_core::rt::BlockingPool;
use tokio::task::JoinHandle;

/// A function running on tokio's blocking pool: its result, or its panic.
#[derive(Debug)]
pub struct TokioJob<R>(JoinHandle<R>);

/// tokio's blocking pool, for [`blocking`](crate::blocking) steps.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioPool;

impl BlockingPool for TokioPool {
    type Job<R: Send + 'static> = TokioJob<R>;

    fn spawn<R, F>(f: F) -> TokioJob<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        TokioJob(tokio::task::spawn_blocking(f))
    }
}

impl<R> Future for TokioJob<R> {
    type Output = Result<R, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.0).poll(cx)) {
            Ok(output) => Ok(output),
            Err(error) => match error.try_into_panic() {
                Ok(payload) => Err(Panicked::from_payload(&*payload)),
                Err(_cancelled) => Err(Panicked::new(
                    "the blocking function never ran: the runtime shut down",
                )),
            },
        })
    }
}
