//! [`AsyncStdPool`]: how `saga-async-std` runs a function on async-std's
//! blocking pool (see [`blocking`](crate::blocking)).

use core::future::Future;
use core::panic::AssertUnwindSafe;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use std::panic::catch_unwind;

use async_std::task::JoinHandle;
use saga_core::Panicked;
use saga_core::rt::BlockingPool;

/// A function running on async-std's blocking pool: its result, or its panic.
#[derive(Debug)]
pub struct AsyncStdJob<R>(JoinHandle<std::thread::Result<R>>);

/// async-std's blocking pool, for [`blocking`](crate::blocking) steps.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdPool;

impl BlockingPool for AsyncStdPool {
    type Job<R: Send + 'static> = AsyncStdJob<R>;

    fn spawn<R, F>(f: F) -> AsyncStdJob<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        AsyncStdJob(async_std::task::spawn_blocking(move || {
            catch_unwind(AssertUnwindSafe(f))
        }))
    }
}

impl<R> Future for AsyncStdJob<R> {
    type Output = Result<R, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = ready!(Pin::new(&mut self.0).poll(cx));
        Poll::Ready(outcome.map_err(|payload| Panicked::from_payload(&*payload)))
    }
}
