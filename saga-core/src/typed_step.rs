//! [`TypedStep`]: a step whose action returns a value that its compensation
//! receives.

use alloc::borrow::Cow;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use alloc::vec::Vec;

use crate::journal::{Codec, DecodeError};
use crate::{Restored, Step, StepOutput};

pin_project! {
    /// A step whose action returns a value `T` that its compensation receives,
    /// with no runtime type lookups: the value never leaves the step.
    ///
    /// How the compensation receives it is chosen by the constructor, and is
    /// the `H` parameter:
    ///
    /// | constructor | compensation | compensates a failed action? |
    /// | --- | --- | --- |
    /// | [`by_value`](TypedStep::by_value) | `FnMut(T) -> impl Future<Output = Result<(), E>>` | no |
    /// | [`by_ref`](TypedStep::by_ref) | `FnMut(&T) -> impl Future<Output = Result<(), E>>` | no |
    /// | [`by_option`](TypedStep::by_option) | `FnMut(Option<T>) -> impl Future<Output = Result<(), E>>` | yes, with `None` |
    ///
    /// A by-reference compensation keeps `T` until the compensation succeeds,
    /// so it can be attempted again (retry policies apply); its future cannot
    /// borrow `T` (clone what it needs). By-value and by-option compensations
    /// consume `T` in their one attempt: retry policies do not apply to them.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use saga_core::{SagaBuilder, TypedStep};
    ///
    /// let cancelled = Arc::new(Mutex::new(Vec::new()));
    /// let log = cancelled.clone();
    /// // `id` is a `&String`, from the action's value; the error type is the
    /// // action's too.
    /// let book_flight = TypedStep::by_ref(
    ///     || async { Ok::<_, String>(String::from("booking-42")) },
    ///     move |id| {
    ///         let (log, id) = (log.clone(), id.clone());
    ///         async move { log.lock().unwrap().push(id); Ok(()) }
    ///     },
    /// )
    /// .named("book flight");
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .step(book_flight)
    ///     .add_step(|| async { Err::<(), _>(String::from("no hotel")) }, || async { Ok(()) })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert!(error.is_fully_compensated());
    /// assert_eq!(*cancelled.lock().unwrap(), ["booking-42"]);
    /// ```
    #[must_use = "a step does nothing until it is added to a saga"]
    pub struct TypedStep<A, C, AF, CF, T, H> {
        action: A,
        compensation: C,
        name: Option<Cow<'static, str>>,
        handoff: PhantomData<fn() -> H>,
        // Set by `saved`: how the value is written to a journal and read back.
        codec: Option<OutputCodec<T>>,
        #[pin]
        state: TypedState<AF, CF, T>,
    }
}

pin_project! {
    #[project = TypedStateProj]
    #[project_replace = TypedStateReplace]
    enum TypedState<AF, CF, T> {
        Idle,
        Acting { #[pin] future: AF },
        // The last action attempt finished; `output` is its value when it succeeded.
        Settled { output: Option<T> },
        Compensating { kept: Option<T>, #[pin] future: CF },
    }
}

/// How a [`TypedStep`] hands its action's value to its compensation: one of
/// [`ByValue`], [`ByRef`] and [`ByOption`]. Sealed.
pub trait Handoff<T, C, CF>: sealed::Sealed {
    /// Whether a failed action is compensated.
    #[doc(hidden)]
    const COMPENSATES_FAILED_ACTION: bool;

    /// Whether the step still has the value after a failed compensation.
    #[doc(hidden)]
    const RETRIES_COMPENSATION: bool;

    /// Starts the compensation for `output` (`None` when the action failed).
    /// Returns what the step keeps while it runs, and the future, or `None`
    /// when there is nothing to undo.
    #[doc(hidden)]
    fn start(compensation: &mut C, output: Option<T>) -> Option<(Option<T>, CF)>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ByValue {}
    impl Sealed for super::ByRef {}
    impl Sealed for super::ByOption {}
}

/// The compensation takes the action's value by value: `FnMut(T)`.
#[derive(Debug, Clone, Copy)]
pub enum ByValue {}

/// The compensation takes the action's value by reference: `FnMut(&T)`.
#[derive(Debug, Clone, Copy)]
pub enum ByRef {}

/// The compensation takes `Option<T>`: `Some` after a successful action,
/// `None` after a failed one (which is compensated too).
#[derive(Debug, Clone, Copy)]
pub enum ByOption {}

impl<T, C: FnMut(T) -> CF, CF> Handoff<T, C, CF> for ByValue {
    const COMPENSATES_FAILED_ACTION: bool = false;
    const RETRIES_COMPENSATION: bool = false;

    fn start(compensation: &mut C, output: Option<T>) -> Option<(Option<T>, CF)> {
        output.map(|output| (None, compensation(output)))
    }
}

impl<T, C: FnMut(&T) -> CF, CF> Handoff<T, C, CF> for ByRef {
    const COMPENSATES_FAILED_ACTION: bool = false;
    const RETRIES_COMPENSATION: bool = true;

    fn start(compensation: &mut C, output: Option<T>) -> Option<(Option<T>, CF)> {
        output.map(|output| {
            let future = compensation(&output);
            (Some(output), future)
        })
    }
}

impl<T, C: FnMut(Option<T>) -> CF, CF> Handoff<T, C, CF> for ByOption {
    const COMPENSATES_FAILED_ACTION: bool = true;
    const RETRIES_COMPENSATION: bool = false;

    fn start(compensation: &mut C, output: Option<T>) -> Option<(Option<T>, CF)> {
        Some((None, compensation(output)))
    }
}

impl<A, C, AF, CF, T, H> TypedStep<A, C, AF, CF, T, H> {
    fn with_handoff(action: A, compensation: C) -> Self {
        TypedStep {
            action,
            compensation,
            name: None,
            handoff: PhantomData,
            codec: None,
            state: TypedState::Idle,
        }
    }

    /// Saves the action's value in the [journal](crate::journal) of a
    /// durable run, so that a compensation resumed after a restart receives
    /// the value the original action returned. Without it, the step's
    /// [`output`](Step::output) is [`StepOutput::Unsaved`] and a durable saga
    /// cannot resume it.
    ///
    /// ```
    /// use saga_core::{Step, StepOutput, TypedStep};
    ///
    /// let book = TypedStep::by_ref(
    ///     || async { Ok::<_, String>(String::from("H-7")) },
    ///     |_booking: &String| async { Ok(()) },
    /// );
    /// assert_eq!(book.output(), StepOutput::Unsaved);
    /// assert_eq!(book.saved().output(), StepOutput::Saved);
    /// ```
    pub fn saved(mut self) -> Self
    where
        T: Codec,
    {
        self.codec = Some(OutputCodec::of());
        self
    }

    /// Names the step, for errors and events.
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<A, C, AF, CF, T> TypedStep<A, C, AF, CF, T, ByValue> {
    /// A step whose compensation consumes the action's value. A failed action
    /// is not compensated (there is no value to hand over).
    pub fn by_value<E>(action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<T, E>>,
        C: FnMut(T) -> CF,
        CF: Future<Output = Result<(), E>>,
    {
        Self::with_handoff(action, compensation)
    }
}

impl<A, C, AF, CF, T> TypedStep<A, C, AF, CF, T, ByRef> {
    /// A step whose compensation borrows the action's value (kept until the
    /// compensation succeeds). A failed action is not compensated.
    pub fn by_ref<E>(action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<T, E>>,
        C: FnMut(&T) -> CF,
        CF: Future<Output = Result<(), E>>,
    {
        Self::with_handoff(action, compensation)
    }
}

impl<A, C, AF, CF, T> TypedStep<A, C, AF, CF, T, ByOption> {
    /// A step whose compensation receives `Some(value)` after a successful
    /// action and `None` after a failed (possibly partly applied) one.
    pub fn by_option<E>(action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<T, E>>,
        C: FnMut(Option<T>) -> CF,
        CF: Future<Output = Result<(), E>>,
    {
        Self::with_handoff(action, compensation)
    }
}

impl<A, C, AF, CF, T, E, H> Step<E> for TypedStep<A, C, AF, CF, T, H>
where
    A: FnMut() -> AF,
    AF: Future<Output = Result<T, E>>,
    CF: Future<Output = Result<(), E>>,
    H: Handoff<T, C, CF>,
{
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                TypedStateProj::Acting { future } => {
                    return Poll::Ready(match ready!(future.poll(cx)) {
                        Ok(output) => {
                            let output = Some(output);
                            this.state.set(TypedState::Settled { output });
                            Ok(())
                        }
                        Err(error) => {
                            this.state.set(TypedState::Settled { output: None });
                            Err(error)
                        }
                    });
                }
                _ => {
                    // Should the closure panic, the action counts as having
                    // (possibly) happened, with no value.
                    this.state.set(TypedState::Settled { output: None });
                    let future = (this.action)();
                    this.state.set(TypedState::Acting { future });
                }
            }
        }
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                TypedStateProj::Compensating { future, .. } => {
                    let result = ready!(future.poll(cx));
                    // A failure keeps what is left (a by-reference value) for
                    // another attempt; a success drops the value, undone.
                    let kept = match this.state.as_mut().project_replace(TypedState::Idle) {
                        TypedStateReplace::Compensating { kept, .. } if result.is_err() => kept,
                        _ => None,
                    };
                    this.state.set(TypedState::Settled { output: kept });
                    return Poll::Ready(result);
                }
                TypedStateProj::Idle => return Poll::Ready(Ok(())),
                // `Settled`, or an action cut short (possibly applied, no value).
                TypedStateProj::Settled { .. } | TypedStateProj::Acting { .. } => {
                    let output = match this.state.as_mut().project_replace(TypedState::Idle) {
                        TypedStateReplace::Settled { output } => output,
                        _ => None,
                    };
                    match H::start(this.compensation, output) {
                        Some((kept, future)) => {
                            this.state.set(TypedState::Compensating { kept, future })
                        }
                        None => return Poll::Ready(Ok(())),
                    }
                }
            }
        }
    }

    fn reset(self: Pin<&mut Self>) {
        self.project().state.set(TypedState::Idle);
    }

    fn cancel(self: Pin<&mut Self>) {
        let mut state = self.project().state;
        let in_flight = matches!(
            state.as_mut().project(),
            TypedStateProj::Acting { .. } | TypedStateProj::Compensating { .. }
        );
        if in_flight {
            // An action cut short left no value; a compensation cut short
            // hands back what it kept.
            let output = match state.as_mut().project_replace(TypedState::Idle) {
                TypedStateReplace::Compensating { kept, .. } => kept,
                _ => None,
            };
            state.set(TypedState::Settled { output });
        }
    }

    fn compensates_failed_action(&self) -> bool {
        H::COMPENSATES_FAILED_ACTION
    }

    fn retries_compensation(&self) -> bool {
        H::RETRIES_COMPENSATION
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn output(&self) -> StepOutput {
        match self.codec {
            Some(_) => StepOutput::Saved,
            None => StepOutput::Unsaved,
        }
    }

    fn save_output(&self, out: &mut Vec<u8>) {
        if let (
            Some(codec),
            TypedState::Settled {
                output: Some(output),
            },
        ) = (&self.codec, &self.state)
        {
            (codec.encode)(output, out);
        }
    }

    fn restore(self: Pin<&mut Self>, restored: Restored<'_>) -> Result<(), DecodeError> {
        let mut this = self.project();
        let output = OutputCodec::restore(this.codec.as_ref(), restored)?;
        this.state.set(TypedState::Settled { output });
        Ok(())
    }
}

/// How a step that keeps a value ([`TypedStep::saved`], a saved flow step)
/// writes it and reads it back.
pub(crate) struct OutputCodec<T> {
    pub(crate) encode: fn(&T, &mut Vec<u8>),
    decode: fn(&[u8]) -> Result<T, DecodeError>,
}

impl<T: Codec> OutputCodec<T> {
    /// `T`'s codec.
    pub(crate) fn of() -> Self {
        OutputCodec {
            encode: T::encode,
            decode: T::decode,
        }
    }
}

impl<T> OutputCodec<T> {
    /// The value a step keeps after a restart, by how its action ended
    /// ([`Step::restore`]): the saved value of an action that succeeded,
    /// none for one that may have partly happened.
    pub(crate) fn restore(
        codec: Option<&Self>,
        restored: Restored<'_>,
    ) -> Result<Option<T>, DecodeError> {
        match (restored, codec) {
            (Restored::Attempted, _) => Ok(None),
            (Restored::Succeeded(Some(bytes)), Some(codec)) => (codec.decode)(bytes).map(Some),
            (Restored::Succeeded(_), _) => Err(DecodeError::new(
                "the journal holds no value for this step",
                0,
            )),
        }
    }
}

impl<A, C, AF, CF, T, H> fmt::Debug for TypedStep<A, C, AF, CF, T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            TypedState::Idle => "Idle",
            TypedState::Acting { .. } => "Acting",
            TypedState::Settled { .. } => "Settled",
            TypedState::Compensating { .. } => "Compensating",
        };
        f.debug_struct("TypedStep")
            .field("name", &self.name)
            .field("handoff", &core::any::type_name::<H>())
            .field("saved", &self.codec.is_some())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
