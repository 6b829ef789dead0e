//! How `saga-tokio` runs a function on tokio's blocking pool (see
//! [`blocking`](crate::blocking)).

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use saga_core::Panicked;
use tokio::task::JoinHandle;

/// A function running on the blocking pool: its result, or its panic.
pub(crate) struct Job<R>(JoinHandle<R>);

/// Starts `f` on tokio's blocking pool.
pub(crate) fn spawn<R, F>(f: F) -> Job<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Job(tokio::task::spawn_blocking(f))
}

impl<R> Future for Job<R> {
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
