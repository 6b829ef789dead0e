//! How `saga-async-std` runs a function on async-std's blocking pool (see
//! [`blocking`](crate::blocking)).

use core::future::Future;
use core::panic::AssertUnwindSafe;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use std::panic::catch_unwind;

use async_std::task::JoinHandle;
use saga_core::Panicked;

/// A function running on the blocking pool: its result, or its panic.
pub(crate) struct Job<R>(JoinHandle<std::thread::Result<R>>);

/// Starts `f` on async-std's blocking pool. Its panic is caught on the pool
/// thread and handed back as a value.
pub(crate) fn spawn<R, F>(f: F) -> Job<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Job(async_std::task::spawn_blocking(move || {
        catch_unwind(AssertUnwindSafe(f))
    }))
}

impl<R> Future for Job<R> {
    type Output = Result<R, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = ready!(Pin::new(&mut self.0).poll(cx));
        Poll::Ready(outcome.map_err(|payload| Panicked::from_payload(&*payload)))
    }
}
