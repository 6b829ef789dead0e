//! [`SagaBuilder`]: collects steps and settings, then builds a [`Saga`].

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;

use crate::saga::Policy;
use crate::typed_step::{ByRef, ByValue};
use crate::{CompensationMode, FnStep, Recovery, Saga, Step, TypedStep};

/// Builds a [`Saga`]: steps in the order they run, plus saga-wide settings.
///
/// `SagaBuilder::new()` builds a `Saga<E>` of `Send` steps;
/// [`SagaBuilder::new_local()`](SagaBuilder::new_local) builds a
/// [`LocalSaga<E>`](crate::LocalSaga) whose steps need not be `Send`.
/// Building allocates one box per step plus the list; running allocates
/// nothing more on success.
///
/// # Examples
///
/// The pysagas README, ported: two steps that add to a counter and take it
/// back; the second fails, and the counter ends where it started.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use saga_core::SagaBuilder;
///
/// let counter = Arc::new(Mutex::new([10, 20]));
/// let add = |index: usize, fail: bool| {
///     let counter = counter.clone();
///     move || {
///         let counter = counter.clone();
///         async move {
///             counter.lock().unwrap()[index] += 30;
///             if fail { Err("error occurred") } else { Ok(()) }
///         }
///     }
/// };
/// let decrement = |index: usize| {
///     let counter = counter.clone();
///     move || {
///         let counter = counter.clone();
///         async move { counter.lock().unwrap()[index] -= 30; Ok(()) }
///     }
/// };
///
/// let mut saga = SagaBuilder::new()
///     .add_step(add(0, true), decrement(0))
///     .add_step(add(1, true), decrement(1))
///     .build();
///
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(error.failed_step(), 0);
/// assert!(error.is_fully_compensated());
/// assert_eq!(*counter.lock().unwrap(), [10, 20]);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct SagaBuilder<E, S: ?Sized = dyn Step<E> + Send + 'static> {
    steps: Vec<Pin<Box<S>>>,
    policy: Policy<E>,
}

/// A [`SagaBuilder`] for steps that need not be `Send`.
pub type LocalSagaBuilder<E> = SagaBuilder<E, dyn Step<E> + 'static>;

/// The boxed step type a saga stores: `dyn Step<E> + Send` in a
/// [`Saga`], `dyn Step<E>` in a [`LocalSaga`](crate::LocalSaga). Sealed.
#[diagnostic::on_unimplemented(
    message = "`{T}` cannot be stored as a `{Self}`",
    label = "this step is not `Send` (or not `'static`), or its error type differs",
    note = "a `Saga` is `Send`, so its steps must be `Send + 'static`; build a `LocalSaga` with `SagaBuilder::new_local()` for steps that are not"
)]
pub trait StepSlot<T>: sealed::Sealed {
    /// Boxes and pins `step` as this slot type.
    #[doc(hidden)]
    fn pin_box(step: T) -> Pin<Box<Self>>;
}

mod sealed {
    use crate::Step;

    pub trait Sealed {}
    impl<E> Sealed for dyn Step<E> + Send + 'static {}
    impl<E> Sealed for dyn Step<E> + 'static {}
}

impl<E, T: Step<E> + Send + 'static> StepSlot<T> for dyn Step<E> + Send + 'static {
    fn pin_box(step: T) -> Pin<Box<Self>> {
        Box::pin(step)
    }
}

impl<E, T: Step<E> + 'static> StepSlot<T> for dyn Step<E> + 'static {
    fn pin_box(step: T) -> Pin<Box<Self>> {
        Box::pin(step)
    }
}

impl<E> SagaBuilder<E> {
    /// An empty builder for a `Send` [`Saga`].
    pub fn new() -> Self {
        Self::empty()
    }
}

impl<E> LocalSagaBuilder<E> {
    /// An empty builder for a [`LocalSaga`](crate::LocalSaga), whose steps
    /// need not be `Send`.
    pub fn new_local() -> Self {
        Self::empty()
    }
}

impl<E> Default for SagaBuilder<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E, S: ?Sized + Step<E>> SagaBuilder<E, S> {
    fn empty() -> Self {
        SagaBuilder {
            steps: Vec::new(),
            policy: Policy::default(),
        }
    }

    /// Adds a step of any type implementing [`Step`]: your own, or a
    /// configured [`FnStep`] or [`TypedStep`].
    pub fn step<T>(mut self, step: T) -> Self
    where
        S: StepSlot<T>,
    {
        self.steps.push(S::pin_box(step));
        self
    }

    /// Adds a pysagas-style step: an action, and a compensation that takes no
    /// input. The action's value is dropped. The compensation also runs when
    /// this step's own action failed (it may have partly happened); see
    /// [`FnStep`] to change that or to name the step.
    pub fn add_step<A, C, AF, CF, T>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<T, E>>,
        C: FnMut() -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<FnStep<A, C, AF, CF>>,
    {
        self.step(FnStep::new(action, compensation))
    }

    /// Adds a step whose action returns a value that its compensation
    /// consumes: `compensation: FnMut(T) -> impl Future<Output = Result<(), E>>`.
    /// A failed action is not compensated (it has no value); see
    /// [`TypedStep::by_option`] for a compensation that also covers it.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::SagaBuilder;
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_typed_step(
    ///         || async { Ok::<u32, &str>(7) },
    ///         |order_id: u32| async move { assert_eq!(order_id, 7); Ok(()) },
    ///     )
    ///     .add_step(|| async { Err::<(), _>("shipping failed") }, || async { Ok(()) })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert!(error.is_fully_compensated());
    /// assert_eq!(error.compensated_count(), 2);
    /// ```
    pub fn add_typed_step<A, C, AF, CF, T>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<T, E>>,
        C: FnMut(T) -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<TypedStep<A, C, AF, CF, T, ByValue>>,
    {
        self.step(TypedStep::by_value(action, compensation))
    }

    /// Adds a step whose action returns a value that its compensation
    /// borrows: `compensation: FnMut(&T) -> impl Future<Output = Result<(), E>>`.
    /// The returned future cannot borrow the value; clone what it needs.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::SagaBuilder;
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_typed_step_ref(
    ///         || async { Ok::<String, &str>("reservation-1".into()) },
    ///         |id: &String| {
    ///             let id = id.clone();
    ///             async move { assert_eq!(id, "reservation-1"); Ok(()) }
    ///         },
    ///     )
    ///     .add_step(|| async { Err::<(), _>("payment failed") }, || async { Ok(()) })
    ///     .build();
    ///
    /// assert!(smol::block_on(saga.run()).unwrap_err().is_fully_compensated());
    /// ```
    pub fn add_typed_step_ref<A, C, AF, CF, T>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<T, E>>,
        C: FnMut(&T) -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<TypedStep<A, C, AF, CF, T, ByRef>>,
    {
        self.step(TypedStep::by_ref(action, compensation))
    }

    /// Decides, per action error, whether to compensate or to propagate the
    /// error without compensating (pysagas's `exceptions=`). Without a
    /// classifier every error is compensated.
    ///
    /// # Examples
    ///
    /// Only business errors are compensated; an infrastructure error is
    /// returned at once and the report says what was left applied.
    ///
    /// ```
    /// use saga_core::{Recovery, SagaBuilder};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Error { Declined, Disk }
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
    ///     .add_step(|| async { Err::<(), _>(Error::Disk) }, || async { Ok(()) })
    ///     .classify(|error: &Error| match error {
    ///         Error::Declined => Recovery::Compensate,
    ///         Error::Disk => Recovery::Propagate,
    ///     })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.recovery(), Recovery::Propagate);
    /// assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
    /// ```
    pub fn classify<F>(mut self, classify: F) -> Self
    where
        F: Fn(&E) -> Recovery + Send + Sync + 'static,
    {
        self.policy.classify = Some(Box::new(classify));
        self
    }

    /// What the backward phase does when a compensation fails: stop there
    /// (the default) or continue and collect every error.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::{CompensationMode, SagaBuilder};
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
    ///     .add_step(|| async { Ok(()) }, || async { Err::<(), _>("undo 1 failed") })
    ///     .add_step(|| async { Err::<(), _>("boom") }, || async { Ok(()) })
    ///     .compensation_mode(CompensationMode::ContinueOnError)
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.compensated_count(), 2); // steps 2 and 0
    /// assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1]);
    /// ```
    pub fn compensation_mode(mut self, mode: CompensationMode) -> Self {
        self.policy.compensation_mode = mode;
        self
    }

    /// Builds the saga.
    pub fn build(self) -> Saga<E, S> {
        Saga::from_parts(self.steps, self.policy)
    }
}

impl<E, S: ?Sized> fmt::Debug for SagaBuilder<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaBuilder")
            .field("steps", &self.steps.len())
            .field("classify", &self.policy.classify.is_some())
            .field("compensation_mode", &self.policy.compensation_mode)
            .finish()
    }
}
