//! [`FlowHandle`]: a flow run as a detached task, and what it ends with.

use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::Lost;
use super::handle::{Completion, Shared, run_to_end};
use crate::{AbortHandle, Aborted, Flow, FlowError, Panicked};

/// The handle of a [`Flow`] run as a detached task (see [`detach_flow`], and
/// the runtime adapters' `spawn_flow`): what [`SagaHandle`](super::SagaHandle)
/// is for a saga. Awaiting it gives `Ok(`[`FinishedFlow`]`)` once the run
/// ended (with the flow handed back), or `Err(`[`Lost`]`)` when the task was
/// dropped first. Dropping it does not stop the run; [`abort`](FlowHandle::abort)
/// does, with compensation.
///
/// It is `Send` and `Sync` when `E`, `O` and `P` are `Send`, and `Unpin`. A
/// [`LocalFlow`](crate::LocalFlow) is not detached: await its run on a local
/// executor.
pub struct FlowHandle<E, I, O, P> {
    shared: Arc<Shared<FinishedFlow<E, I, O, P>>>,
    abort: AbortHandle,
}

/// How a detached flow run ended: the flow, ready to run again, and the
/// run's result (its output, or the [`FlowError`] with the report and the
/// values).
#[non_exhaustive]
pub struct FinishedFlow<E, I, O, P> {
    /// The flow, ready to run again.
    pub flow: Flow<E, I, O, P>,
    /// The run's result.
    pub result: Result<O, FlowError<E, P>>,
}

/// Prepares a run of `flow` with `input` as a detached task, as
/// [`detach`](super::detach) does for a saga: returns the future to spawn on
/// any executor (it runs the flow to its end, abortable through the handle,
/// catching panics as [`FlowRun::catch_panics`](crate::FlowRun::catch_panics)
/// does) and its [`FlowHandle`].
///
/// # Examples
///
/// On smol, with no adapter:
///
/// ```
/// use saga_core::SagaBuilder;
///
/// let flow = SagaBuilder::<String>::new()
///     .input::<u32>()
///     .then(|n: &u32| { let n = *n; async move { Ok(n * 2) } }, |_| async { Ok(()) })
///     .build_with(|(_, doubled)| doubled);
///
/// let (task, handle) = saga_core::rt::detach_flow(flow, 21);
/// smol::spawn(task).detach();
/// let finished = smol::block_on(handle).expect("the executor is still running");
/// assert_eq!(finished.result.unwrap(), 42);
/// let again = saga_core::rt::detach_flow(finished.flow, 1); // it can run again
/// # drop(again);
/// ```
pub fn detach_flow<E, I, O, P>(
    flow: Flow<E, I, O, P>,
    input: I,
) -> (
    impl Future<Output = ()> + Send + 'static,
    FlowHandle<E, I, O, P>,
)
where
    E: From<Aborted> + From<Panicked> + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
    P: Send + 'static,
{
    let shared = Shared::new();
    let abort = AbortHandle::new();
    let handle = FlowHandle {
        shared: Arc::clone(&shared),
        abort: abort.clone(),
    };
    let completion = Completion::new(shared);
    let task = async move {
        let mut flow = flow;
        let run = flow.run(input).abortable(&abort).catch_panics();
        let result = run_to_end(run).await;
        completion.settle(result.map(|result| FinishedFlow { flow, result }));
    };
    (task, handle)
}

impl<E, I, O, P> FinishedFlow<E, I, O, P> {
    /// The run's result, dropping the flow.
    pub fn into_result(self) -> Result<O, FlowError<E, P>> {
        self.result
    }
}

impl<E, I, O, P> FlowHandle<E, I, O, P> {
    /// Aborts the run: it starts no further action, lets the action in
    /// flight finish (or cuts it short, per the flow's
    /// [`InFlight`](crate::InFlight) policy), and compensates what it
    /// applied; the handle then resolves to a [`FlowError`] whose report is
    /// [`aborted`](crate::SagaError::aborted) (unless the run had already
    /// finished). Does not wait.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// A cloneable handle that aborts this run from elsewhere.
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// `true` once the run finished or was lost, so awaiting the handle
    /// would not wait.
    pub fn is_finished(&self) -> bool {
        self.shared.is_settled()
    }
}

impl<E, I, O, P> Future for FlowHandle<E, I, O, P> {
    type Output = Result<FinishedFlow<E, I, O, P>, Lost>;

    /// # Panics
    ///
    /// When polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.shared.poll_outcome(cx, "FlowHandle")
    }
}

impl<E, I, O, P> fmt::Debug for FlowHandle<E, I, O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowHandle")
            .field("finished", &self.is_finished())
            .field("aborted", &self.abort.is_aborted())
            .finish()
    }
}

impl<E: fmt::Debug, I, O: fmt::Debug, P> fmt::Debug for FinishedFlow<E, I, O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinishedFlow")
            .field("flow", &self.flow)
            .field("result", &self.result)
            .finish()
    }
}
