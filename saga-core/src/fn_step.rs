//! [`FnStep`]: the pysagas-style step, an action closure and a compensation
//! closure that takes no input.

use alloc::borrow::Cow;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::Step;

pin_project! {
    /// A step made of two closures: `action: FnMut() -> impl Future<Output =
    /// Result<T, E>>` and `compensation: FnMut() -> impl Future<Output =
    /// Result<(), E>>`. The action's value `T` is dropped; use
    /// [`TypedStep`](crate::TypedStep) to hand it to the compensation.
    ///
    /// By default the compensation also runs when the step's own action
    /// failed, because a failed action may have partly happened (this is what
    /// the pysagas README relies on). Turn that off with
    /// [`compensate_failed_action(false)`](FnStep::compensate_failed_action).
    ///
    /// [`SagaBuilder::add_step`](crate::SagaBuilder::add_step) builds one with
    /// the defaults; build it yourself to name it or change the default.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::{FnStep, SagaBuilder};
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .step(
    ///         FnStep::new(|| async { Err::<(), _>("card declined") }, || async { Ok(()) })
    ///             .named("charge card")
    ///             .compensate_failed_action(false),
    ///     )
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.failed_step_name(), Some("charge card"));
    /// assert_eq!(error.to_string(), "step 0 (charge card) failed: card declined; nothing needed compensation");
    /// ```
    #[must_use = "a step does nothing until it is added to a saga"]
    pub struct FnStep<A, C, AF, CF> {
        action: A,
        compensation: C,
        name: Option<Cow<'static, str>>,
        compensate_failed_action: bool,
        #[pin]
        state: FnState<AF, CF>,
    }
}

pin_project! {
    #[project = FnStateProj]
    enum FnState<AF, CF> {
        Idle,
        Acting { #[pin] future: AF },
        // The last action attempt finished (either way): there is something to compensate.
        Settled,
        Compensating { #[pin] future: CF },
    }
}

impl<A, C, AF, CF> FnStep<A, C, AF, CF> {
    /// A step from an action closure and a compensation closure.
    ///
    /// The bounds tie the two together: the compensation's error type is the
    /// action's, so `|| async { Ok(()) }` needs no annotation once the action
    /// names its error, and the step's type is known without a builder (it
    /// can be made with `let`, named, and added later).
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::{FnStep, SagaBuilder};
    ///
    /// let step = FnStep::new(|| async { Ok::<(), String>(()) }, || async { Ok(()) });
    /// let step = step.named("reserve");
    /// let mut saga = SagaBuilder::new().step(step).build();
    /// assert!(smol::block_on(saga.run()).is_ok());
    /// ```
    pub fn new<T, E>(action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<T, E>>,
        C: FnMut() -> CF,
        CF: Future<Output = Result<(), E>>,
    {
        FnStep {
            action,
            compensation,
            name: None,
            compensate_failed_action: true,
            state: FnState::Idle,
        }
    }

    /// Names the step, for errors and events.
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the compensation runs when this step's own action failed
    /// (`true` by default).
    pub fn compensate_failed_action(mut self, compensate: bool) -> Self {
        self.compensate_failed_action = compensate;
        self
    }
}

impl<A, C, AF, CF, T, E> Step<E> for FnStep<A, C, AF, CF>
where
    A: FnMut() -> AF,
    AF: Future<Output = Result<T, E>>,
    C: FnMut() -> CF,
    CF: Future<Output = Result<(), E>>,
{
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                FnStateProj::Acting { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(FnState::Settled);
                    return Poll::Ready(result.map(drop));
                }
                _ => {
                    // Should the closure panic, the action counts as having
                    // (possibly) happened: there is something to compensate.
                    this.state.set(FnState::Settled);
                    let future = (this.action)();
                    this.state.set(FnState::Acting { future });
                }
            }
        }
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                FnStateProj::Compensating { future } => {
                    let result = ready!(future.poll(cx));
                    // Settled again: a next call runs the compensation again
                    // (a retry, or a repeat injected to test idempotency).
                    this.state.set(FnState::Settled);
                    return Poll::Ready(result);
                }
                // An action cut short counts as possibly applied: drop it and undo.
                FnStateProj::Settled | FnStateProj::Acting { .. } => {
                    this.state.set(FnState::Compensating {
                        future: (this.compensation)(),
                    })
                }
                FnStateProj::Idle => return Poll::Ready(Ok(())),
            }
        }
    }

    fn reset(self: Pin<&mut Self>) {
        self.project().state.set(FnState::Idle);
    }

    fn cancel(self: Pin<&mut Self>) {
        let mut state = self.project().state;
        if let FnStateProj::Acting { .. } | FnStateProj::Compensating { .. } =
            state.as_mut().project()
        {
            // Either way there is (still) something to compensate.
            state.set(FnState::Settled);
        }
    }

    fn compensates_failed_action(&self) -> bool {
        self.compensate_failed_action
    }

    fn restore(
        self: Pin<&mut Self>,
        _restored: crate::Restored<'_>,
    ) -> Result<(), crate::journal::DecodeError> {
        // Either way the action (possibly) happened: there is something to
        // compensate.
        self.project().state.set(FnState::Settled);
        Ok(())
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl<A, C, AF, CF> fmt::Debug for FnStep<A, C, AF, CF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnStep")
            .field("name", &self.name)
            .field("compensate_failed_action", &self.compensate_failed_action)
            .field("state", &self.state.label())
            .finish_non_exhaustive()
    }
}

impl<AF, CF> FnState<AF, CF> {
    fn label(&self) -> &'static str {
        match self {
            FnState::Idle => "Idle",
            FnState::Acting { .. } => "Acting",
            FnState::Settled => "Settled",
            FnState::Compensating { .. } => "Compensating",
        }
    }
}
