//! [`FlowCell`]: one step of a flow, whose action reads the values before
//! it and whose compensation reads those and the step's own value.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::flow::{Chain, LastCell};
use crate::journal::{Codec, DecodeError};
use crate::marker::{ByOption, ByRef};
use crate::typed_step::OutputCodec;
use crate::{Restored, Step, StepOutput};

pin_project! {
    /// One step of a flow: an action that reads the values before it and
    /// returns a value of its own, and a compensation that reads both.
    /// Made by [`FlowBuilder::then`](crate::FlowBuilder::then) and
    /// [`FlowBuilder::then_option`](crate::FlowBuilder::then_option) (the
    /// `H` parameter, [`ByRef`] or [`ByOption`], says which); you never name
    /// it except in a full type.
    ///
    /// Its value is kept until the run ends, so that every later step (and
    /// its compensation, retried or not) can read it, and a failed run's
    /// [`FlowError`](crate::FlowError) can hand it back.
    #[must_use = "a step does nothing until it is added to a saga"]
    pub struct FlowCell<A, C, AF, CF, V, H> {
        action: A,
        compensation: C,
        name: Option<Cow<'static, str>>,
        value: Option<V>,
        // Set by `saved`: how the value goes to a journal and back.
        codec: Option<OutputCodec<V>>,
        handoff: PhantomData<fn() -> H>,
        #[pin]
        state: CellState<AF, CF>,
    }
}

pin_project! {
    #[project = CellStateProj]
    enum CellState<AF, CF> {
        Idle,
        Acting { #[pin] future: AF },
        // The last action attempt finished (its value, if any, is `value`),
        // or a compensation attempt failed.
        Settled,
        Compensating { #[pin] future: CF },
        // Compensated: nothing is left to undo.
        Compensated,
    }
}

impl<A, C, AF, CF, V, H> FlowCell<A, C, AF, CF, V, H> {
    pub(crate) fn new(action: A, compensation: C) -> Self {
        FlowCell {
            action,
            compensation,
            name: None,
            value: None,
            codec: None,
            handoff: PhantomData,
            state: CellState::Idle,
        }
    }
}

/// How a flow step's compensation receives its own value: [`ByRef`] (only
/// after a successful action) or [`ByOption`] (also after a failed one).
/// Sealed.
pub trait FlowHandoff<E, P: Chain<E>, V, C, CF>: crate::typed_step::sealed::Sealed {
    /// Whether a failed action is compensated.
    #[doc(hidden)]
    const COMPENSATES_FAILED_ACTION: bool;

    /// Starts the compensation, or returns `None` when there is nothing to
    /// undo.
    #[doc(hidden)]
    fn start(compensation: &mut C, before: &P, value: Option<&V>) -> Option<CF>;
}

impl<E, P, V, C, CF> FlowHandoff<E, P, V, C, CF> for ByRef
where
    P: Chain<E>,
    V: 'static,
    C: for<'a> FnMut((P::Refs<'a>, &'a V)) -> CF,
{
    const COMPENSATES_FAILED_ACTION: bool = false;

    #[inline]
    fn start(compensation: &mut C, before: &P, value: Option<&V>) -> Option<CF> {
        value.map(|value| compensation((before.refs(), value)))
    }
}

impl<E, P, V, C, CF> FlowHandoff<E, P, V, C, CF> for ByOption
where
    P: Chain<E>,
    V: 'static,
    C: for<'a> FnMut((P::Refs<'a>, Option<&'a V>)) -> CF,
{
    const COMPENSATES_FAILED_ACTION: bool = true;

    #[inline]
    fn start(compensation: &mut C, before: &P, value: Option<&V>) -> Option<CF> {
        Some(compensation((before.refs(), value)))
    }
}

/// One flow step, driven with the values before it (`before`): what a
/// [`Node`](crate::marker::Node) and a group's members hold. Sealed.
pub trait Cell<E, P: Chain<E>>: crate::typed_step::sealed::Sealed {
    /// The action's value.
    #[doc(hidden)]
    type Value: 'static;
    #[doc(hidden)]
    fn poll_action(self: Pin<&mut Self>, before: &P, cx: &mut Context<'_>) -> Poll<Result<(), E>>;
    #[doc(hidden)]
    fn poll_compensate(
        self: Pin<&mut Self>,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>>;
    #[doc(hidden)]
    fn reset(self: Pin<&mut Self>);
    #[doc(hidden)]
    fn cancel(self: Pin<&mut Self>);
    #[doc(hidden)]
    fn compensates_failed_action(&self) -> bool;
    #[doc(hidden)]
    fn retries_compensation(&self) -> bool;
    #[doc(hidden)]
    fn name(&self) -> Option<&str>;
    #[doc(hidden)]
    fn output(&self) -> StepOutput;
    #[doc(hidden)]
    fn save_output(&self, out: &mut Vec<u8>);
    #[doc(hidden)]
    fn restore(self: Pin<&mut Self>, restored: Restored<'_>) -> Result<(), DecodeError>;
    #[doc(hidden)]
    fn value(&self) -> Option<&Self::Value>;
    /// Drops what is in flight and hands over the value: the run ended.
    #[doc(hidden)]
    fn take_value(self: Pin<&mut Self>) -> Option<Self::Value>;
}

impl<A, C, AF, CF, V, H> crate::typed_step::sealed::Sealed for FlowCell<A, C, AF, CF, V, H> {}

impl<E, P, A, C, AF, CF, V, H> Cell<E, P> for FlowCell<A, C, AF, CF, V, H>
where
    P: Chain<E>,
    A: for<'a> FnMut(P::Refs<'a>) -> AF,
    AF: Future<Output = Result<V, E>>,
    CF: Future<Output = Result<(), E>>,
    V: 'static,
    H: FlowHandoff<E, P, V, C, CF>,
{
    type Value = V;

    #[inline]
    fn poll_action(self: Pin<&mut Self>, before: &P, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        loop {
            if let CellStateProj::Acting { future } = this.state.as_mut().project() {
                let result = ready!(future.poll(cx));
                this.state.set(CellState::Settled);
                return Poll::Ready(result.map(|value| *this.value = Some(value)));
            }
            // A new attempt replaces the last one's value. Should the
            // closure panic, the action counts as (possibly) applied.
            *this.value = None;
            this.state.set(CellState::Settled);
            let future = (this.action)(before.refs());
            this.state.set(CellState::Acting { future });
        }
    }

    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                CellStateProj::Compensating { future } => {
                    let result = ready!(future.poll(cx));
                    // A failure keeps the value for another attempt.
                    let next = match result {
                        Ok(()) => CellState::Compensated,
                        Err(_) => CellState::Settled,
                    };
                    this.state.set(next);
                    return Poll::Ready(result);
                }
                CellStateProj::Idle | CellStateProj::Compensated => return Poll::Ready(Ok(())),
                // `Settled`, or an action cut short (possibly applied).
                CellStateProj::Settled | CellStateProj::Acting { .. } => {
                    this.state.set(CellState::Settled);
                    match H::start(this.compensation, before, this.value.as_ref()) {
                        Some(future) => this.state.set(CellState::Compensating { future }),
                        None => {
                            this.state.set(CellState::Compensated);
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
            }
        }
    }

    #[inline]
    fn reset(self: Pin<&mut Self>) {
        self.project().state.set(CellState::Idle);
    }

    #[inline]
    fn cancel(self: Pin<&mut Self>) {
        let mut state = self.project().state;
        if let CellStateProj::Acting { .. } | CellStateProj::Compensating { .. } =
            state.as_mut().project()
        {
            state.set(CellState::Settled);
        }
    }

    #[inline]
    fn compensates_failed_action(&self) -> bool {
        H::COMPENSATES_FAILED_ACTION
    }

    #[inline]
    fn retries_compensation(&self) -> bool {
        // The value is kept for every attempt.
        true
    }

    #[inline]
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
        if let (Some(codec), Some(value)) = (&self.codec, &self.value) {
            (codec.encode)(value, out);
        }
    }

    fn restore(self: Pin<&mut Self>, restored: Restored<'_>) -> Result<(), DecodeError> {
        let mut this = self.project();
        *this.value = OutputCodec::restore(this.codec.as_ref(), restored)?;
        this.state.set(CellState::Settled);
        Ok(())
    }

    #[inline]
    fn value(&self) -> Option<&V> {
        self.value.as_ref()
    }

    #[inline]
    fn take_value(self: Pin<&mut Self>) -> Option<V> {
        let mut this = self.project();
        this.state.set(CellState::Idle);
        this.value.take()
    }
}

impl<A, C, AF, CF, V, H> LastCell for FlowCell<A, C, AF, CF, V, H> {
    type Value = V;

    fn name_cell(&mut self, name: Cow<'static, str>) {
        self.name = Some(name);
    }

    fn save_cell(&mut self)
    where
        V: Codec,
    {
        self.codec = Some(OutputCodec::of());
    }
}

impl<A, C, AF, CF, V, H> fmt::Debug for FlowCell<A, C, AF, CF, V, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            CellState::Idle => "Idle",
            CellState::Acting { .. } => "Acting",
            CellState::Settled => "Settled",
            CellState::Compensating { .. } => "Compensating",
            CellState::Compensated => "Compensated",
        };
        f.debug_struct("FlowCell")
            .field("name", &self.name)
            .field("has_value", &self.value.is_some())
            .field("saved", &self.codec.is_some())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A plain [`Step`] held by a [`Plain`](crate::marker::Plain) node: it
    /// reads none of the values before it, and its value is `()`.
    #[derive(Debug)]
    pub struct Bare<X> {
        #[pin]
        step: X,
    }
}

impl<X> Bare<X> {
    pub(crate) fn new(step: X) -> Self {
        Bare { step }
    }
}

impl<X> crate::typed_step::sealed::Sealed for Bare<X> {}

impl<E, P: Chain<E>, X: Step<E>> Cell<E, P> for Bare<X> {
    type Value = ();

    #[inline]
    fn poll_action(self: Pin<&mut Self>, _: &P, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.project().step.poll_action(cx)
    }
    #[inline]
    fn poll_compensate(self: Pin<&mut Self>, _: &P, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.project().step.poll_compensate(cx)
    }
    #[inline]
    fn reset(self: Pin<&mut Self>) {
        self.project().step.reset();
    }
    #[inline]
    fn cancel(self: Pin<&mut Self>) {
        self.project().step.cancel();
    }
    #[inline]
    fn compensates_failed_action(&self) -> bool {
        self.step.compensates_failed_action()
    }
    #[inline]
    fn retries_compensation(&self) -> bool {
        self.step.retries_compensation()
    }
    #[inline]
    fn name(&self) -> Option<&str> {
        self.step.name()
    }
    fn output(&self) -> StepOutput {
        self.step.output()
    }
    fn save_output(&self, out: &mut Vec<u8>) {
        self.step.save_output(out);
    }
    fn restore(self: Pin<&mut Self>, restored: Restored<'_>) -> Result<(), DecodeError> {
        self.project().step.restore(restored)
    }
    #[inline]
    fn value(&self) -> Option<&()> {
        Some(&())
    }
    /// Drops what the step kept (a typed step's value): the run ended.
    #[inline]
    fn take_value(self: Pin<&mut Self>) -> Option<()> {
        self.project().step.reset();
        Some(())
    }
}
