//! [`AbortHandle`]: stop a running saga from elsewhere and have it undo what
//! it did.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Context;

use futures_util::task::AtomicWaker;

/// A cloneable, `Send + Sync` handle that aborts a saga run.
///
/// Attach it to a run with [`Run::abortable`](crate::Run::abortable). After
/// [`abort`](AbortHandle::abort), the run starts no further action, deals
/// with the action in flight per the saga's [`InFlight`](crate::InFlight)
/// policy (let it finish by default, or cut it short), and compensates
/// everything applied, in reverse. The run then fails with
/// `E::from(Aborted)` and [`SagaError::aborted`](crate::SagaError::aborted)
/// is `true`. Compensations already under way are never interrupted by an
/// abort.
///
/// An abort is permanent: a run given an aborted handle stops before its
/// first action. A handle wakes one run (the one that polled it last), so
/// give each concurrent run a handle of its own. No `std` needed; it uses atomics, so it needs a target
/// with pointer-sized atomics.
///
/// # Examples
///
/// ```
/// use saga_core::{AbortHandle, Aborted, SagaBuilder};
///
/// #[derive(Debug, PartialEq)]
/// enum Error { Aborted }
/// impl From<Aborted> for Error {
///     fn from(_: Aborted) -> Self { Error::Aborted }
/// }
///
/// let abort = AbortHandle::new();
/// let trigger = abort.clone();
/// let mut saga = SagaBuilder::<Error>::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .add_step(
///         move || {
///             trigger.abort(); // an abort arrives while step 1 runs
///             async { Ok(()) }
///         },
///         || async { Ok(()) },
///     )
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .build();
///
/// let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
/// assert!(error.aborted());
/// assert_eq!(*error.error(), Error::Aborted);
/// assert_eq!(error.failed_step(), 2); // stopped before step 2 started
/// assert_eq!(error.attempts(), 0);
/// assert_eq!(error.compensated_count(), 2); // steps 1 and 0
/// ```
#[derive(Debug, Clone, Default)]
pub struct AbortHandle {
    inner: Arc<AbortState>,
}

#[derive(Debug, Default)]
struct AbortState {
    aborted: AtomicBool,
    waker: AtomicWaker,
}

impl AbortHandle {
    /// A handle that has not aborted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Aborts the run this handle is attached to (and any later run given
    /// it), and wakes it.
    pub fn abort(&self) {
        self.inner.aborted.store(true, Ordering::Release);
        self.inner.waker.wake();
    }

    /// `true` once [`abort`](AbortHandle::abort) was called.
    pub fn is_aborted(&self) -> bool {
        self.inner.aborted.load(Ordering::Acquire)
    }

    /// Registers the run's waker, then reports whether it must abort.
    pub(crate) fn poll_aborted(&self, cx: &mut Context<'_>) -> bool {
        if self.is_aborted() {
            return true;
        }
        self.inner.waker.register(cx.waker());
        // An abort between the load and the registration would be missed.
        self.is_aborted()
    }
}
