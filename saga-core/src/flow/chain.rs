//! [`Chain`]: a flow's steps so far and the values they produce, as nested
//! nodes: [`Start`] (the input and any plain steps before it), then one
//! node per step or group ([`Then`], [`Plain`], [`Group`]).

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::flow::{Bare, Cell, Members};
use crate::journal::{Codec, DecodeError};
use crate::marker::StepTable;
use crate::run::TableSealed as Sealed;
use crate::{Restored, Step, StepOutput};

/// A flow's steps so far and the values they produce: the `C` parameter of
/// a [`FlowBuilder`](crate::FlowBuilder). Sealed.
///
/// Values nest left to right, starting with the input: after an input
/// `Trip` and steps returning `Flight` and `Hotel`, the next step reads
/// [`Refs`](Chain::Refs) `((&Trip, &Flight), &Hotel)`, destructured as
/// `|((trip, flight), hotel)|`. A parallel group adds one entry, its
/// members' values nested the same way (`(&Car, &Insurance)`).
///
/// See [`Pick`](crate::marker::Pick) for a helper generic over it.
// A chain's `StepTable` methods take indices counted from the end of
// `Start`'s plain steps (`Mapped` converts), so that each node's own index is
// a constant; `step_count` is the whole count.
pub trait Chain<E>: StepTable<E> {
    /// The flow's input.
    type Input: 'static;
    /// What the next step reads: the input and every value so far, by
    /// reference, nested left to right.
    type Refs<'a>
    where
        Self: 'a;
    /// Every value, owned, nested the same way: what a successful run
    /// hands to [`build_with`](crate::FlowBuilder::build_with)'s map.
    type Values;
    /// The input, then every step's value as an `Option` (`None` where no
    /// value was produced), nested the same way: what a failed run's
    /// [`FlowError::values`](crate::FlowError::values) holds.
    type Partial;

    /// How many steps the chain adds after [`Start`]'s plain steps.
    #[doc(hidden)]
    const LEN: usize;
    /// How many plain steps [`Start`] holds (they come first).
    #[doc(hidden)]
    fn prefix(&self) -> usize;
    #[doc(hidden)]
    fn refs(&self) -> Self::Refs<'_>;
    /// Sets the input of a new run.
    #[doc(hidden)]
    fn start(self: Pin<&mut Self>, input: Self::Input);
    /// Takes every value (`None` when one is missing).
    #[doc(hidden)]
    fn take_values(self: Pin<&mut Self>) -> Option<Self::Values>;
    /// Takes what values there are.
    #[doc(hidden)]
    fn take_partial(self: Pin<&mut Self>) -> Self::Partial;
}

/// A chain that is `C` and one more step whose value is a `V`: what a
/// helper generic over a flow returns after adding a step, as
/// `impl Appends<E, C, V>`, so that later steps can read the value. See
/// [`Pick`](crate::marker::Pick) for an example. Implemented for every
/// such chain.
pub trait Appends<E, C: Chain<E>, V>:
    'static
    + for<'a> Chain<
        E,
        Input = C::Input,
        Refs<'a> = (C::Refs<'a>, &'a V),
        Values = (C::Values, V),
        Partial = (C::Partial, Option<V>),
    >
{
}

impl<E, C, V, X> Appends<E, C, V> for X
where
    C: Chain<E>,
    X: 'static
        + for<'a> Chain<
            E,
            Input = C::Input,
            Refs<'a> = (C::Refs<'a>, &'a V),
            Values = (C::Values, V),
            Partial = (C::Partial, Option<V>),
        >,
{
}

/// The last step of a chain, which [`named`](crate::FlowBuilder::named)
/// names. Sealed.
pub trait LastStep {
    /// The step's value.
    #[doc(hidden)]
    type Value;
    #[doc(hidden)]
    fn name_last(&mut self, name: Cow<'static, str>);
    #[doc(hidden)]
    fn save_last(&mut self)
    where
        Self::Value: Codec;
}

/// The message of a broken invariant: the engine starts a step only once
/// every step before it succeeded.
pub(crate) const MISSING: &str =
    "saga-core: a flow step read a value its step has not produced (a bug in saga-core)";

pin_project! {
    /// The start of a flow: its input, and the plain steps added before
    /// [`SagaBuilder::input`](crate::SagaBuilder::input).
    #[derive(Debug)]
    pub struct Start<I, S: ?Sized> {
        input: Option<I>,
        steps: Vec<Pin<Box<S>>>,
    }
}

impl<I, S: ?Sized> Start<I, S> {
    pub(crate) fn new(steps: Vec<Pin<Box<S>>>) -> Self {
        Start { input: None, steps }
    }

    /// A chain's indices count from the end of the plain steps, so that
    /// every later node's index is a constant; theirs wrap below zero.
    #[inline]
    fn absolute(&self, index: usize) -> usize {
        index.wrapping_add(self.steps.len())
    }
}

impl<I, S: ?Sized> Sealed for Start<I, S> {}

impl<E, I, S: ?Sized + Step<E>> StepTable<E> for Start<I, S> {
    #[inline]
    fn step_count(&self) -> usize {
        self.steps.len()
    }
    #[inline]
    fn poll_action(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let index = self.absolute(index);
        Pin::new(&mut self.project().steps[..]).poll_action(index, cx)
    }
    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let index = self.absolute(index);
        Pin::new(&mut self.project().steps[..]).poll_compensate(index, cx)
    }
    #[inline]
    fn reset(self: Pin<&mut Self>, index: usize) {
        let index = self.absolute(index);
        Pin::new(&mut self.project().steps[..]).reset(index);
    }
    #[inline]
    fn cancel(self: Pin<&mut Self>, index: usize) {
        let index = self.absolute(index);
        Pin::new(&mut self.project().steps[..]).cancel(index);
    }
    #[inline]
    fn compensates_failed_action(&self, index: usize) -> bool {
        self.steps[..].compensates_failed_action(self.absolute(index))
    }
    #[inline]
    fn retries_compensation(&self, index: usize) -> bool {
        self.steps[..].retries_compensation(self.absolute(index))
    }
    #[inline]
    fn step_name(&self, index: usize) -> Option<&str> {
        self.steps[..].step_name(self.absolute(index))
    }
    fn output(&self, index: usize) -> StepOutput {
        self.steps[..].output(self.absolute(index))
    }
    fn save_output(&self, index: usize, out: &mut Vec<u8>) {
        self.steps[..].save_output(self.absolute(index), out);
    }
    fn restore(
        self: Pin<&mut Self>,
        index: usize,
        restored: Restored<'_>,
    ) -> Result<(), DecodeError> {
        let index = self.absolute(index);
        Pin::new(&mut self.project().steps[..]).restore(index, restored)
    }
}

impl<E, I: 'static, S: ?Sized + Step<E>> Chain<E> for Start<I, S> {
    type Input = I;
    type Refs<'a>
        = &'a I
    where
        Self: 'a;
    type Values = I;
    type Partial = I;

    const LEN: usize = 0;

    #[inline]
    fn prefix(&self) -> usize {
        self.steps.len()
    }

    #[inline(always)]
    fn refs(&self) -> &I {
        self.input.as_ref().expect(MISSING)
    }
    #[inline]
    fn start(self: Pin<&mut Self>, input: I) {
        *self.project().input = Some(input);
    }
    #[inline]
    fn take_values(self: Pin<&mut Self>) -> Option<I> {
        let this = self.project();
        // What a plain step kept (a typed step's value) goes too.
        this.steps.iter_mut().for_each(|step| step.as_mut().reset());
        this.input.take()
    }
    #[inline]
    fn take_partial(self: Pin<&mut Self>) -> I {
        let this = self.project();
        this.steps.iter_mut().for_each(|step| step.as_mut().reset());
        this.input.take().expect(MISSING)
    }
}

pin_project! {
    /// One step after the chain `P`: a [`Then`] (a flow step, one value
    /// more) or a [`Plain`] (a plain step, no value), as `K` says.
    #[derive(Debug)]
    pub struct Node<P, X, K> {
        #[pin]
        prev: P,
        #[pin]
        cell: X,
        kind: PhantomData<fn() -> K>,
    }
}

/// A flow step after the chain `P`: one value more, `X`'s.
pub type Then<P, X> = Node<P, X, Valued>;

/// A plain [`Step`] `X` after the chain `P`: it reads nothing and adds no
/// value.
pub type Plain<P, X> = Node<P, Bare<X>, Valueless>;

/// [`Node`]'s kind: its step adds a value (a [`Then`]).
#[derive(Debug, Clone, Copy)]
pub enum Valued {}

/// [`Node`]'s kind: its step adds no value (a [`Plain`]).
#[derive(Debug, Clone, Copy)]
pub enum Valueless {}

impl<P, X, K> Node<P, X, K> {
    pub(crate) fn new(prev: P, cell: X) -> Self {
        Node {
            prev,
            cell,
            kind: PhantomData,
        }
    }
}

impl<P, X, K> Sealed for Node<P, X, K> {}

impl<P, X: LastCell> LastStep for Then<P, X> {
    type Value = X::Value;

    fn name_last(&mut self, name: Cow<'static, str>) {
        self.cell.name_cell(name);
    }

    fn save_last(&mut self)
    where
        X::Value: Codec,
    {
        self.cell.save_cell();
    }
}

/// A cell that can be named and saved (every flow step); keeps
/// [`LastStep`] free of the error type. Sealed.
pub trait LastCell {
    /// The step's value.
    #[doc(hidden)]
    type Value;
    #[doc(hidden)]
    fn name_cell(&mut self, name: Cow<'static, str>);
    #[doc(hidden)]
    fn save_cell(&mut self)
    where
        Self::Value: Codec;
}

impl<E, P: Chain<E>, X: Cell<E, P>, K> StepTable<E> for Node<P, X, K> {
    #[inline]
    fn step_count(&self) -> usize {
        self.prev.prefix() + P::LEN + 1
    }
    #[inline]
    fn poll_action(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let this = self.project();
        if index == P::LEN {
            this.cell.poll_action(this.prev.into_ref().get_ref(), cx)
        } else {
            this.prev.poll_action(index, cx)
        }
    }
    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let this = self.project();
        if index == P::LEN {
            this.cell
                .poll_compensate(this.prev.into_ref().get_ref(), cx)
        } else {
            this.prev.poll_compensate(index, cx)
        }
    }
    #[inline]
    fn reset(self: Pin<&mut Self>, index: usize) {
        let this = self.project();
        if index == P::LEN {
            this.cell.reset();
        } else {
            this.prev.reset(index);
        }
    }
    #[inline]
    fn cancel(self: Pin<&mut Self>, index: usize) {
        let this = self.project();
        if index == P::LEN {
            this.cell.cancel();
        } else {
            this.prev.cancel(index);
        }
    }
    #[inline]
    fn compensates_failed_action(&self, index: usize) -> bool {
        if index == P::LEN {
            self.cell.compensates_failed_action()
        } else {
            self.prev.compensates_failed_action(index)
        }
    }
    #[inline]
    fn retries_compensation(&self, index: usize) -> bool {
        if index == P::LEN {
            self.cell.retries_compensation()
        } else {
            self.prev.retries_compensation(index)
        }
    }
    #[inline]
    fn step_name(&self, index: usize) -> Option<&str> {
        if index == P::LEN {
            self.cell.name()
        } else {
            self.prev.step_name(index)
        }
    }
    fn output(&self, index: usize) -> StepOutput {
        if index == P::LEN {
            self.cell.output()
        } else {
            self.prev.output(index)
        }
    }
    fn save_output(&self, index: usize, out: &mut Vec<u8>) {
        if index == P::LEN {
            self.cell.save_output(out);
        } else {
            self.prev.save_output(index, out);
        }
    }
    fn restore(
        self: Pin<&mut Self>,
        index: usize,
        restored: Restored<'_>,
    ) -> Result<(), DecodeError> {
        let this = self.project();
        if index == P::LEN {
            this.cell.restore(restored)
        } else {
            this.prev.restore(index, restored)
        }
    }
}

impl<E, P: Chain<E>, X: Cell<E, P>> Chain<E> for Then<P, X> {
    type Input = P::Input;
    type Refs<'a>
        = (P::Refs<'a>, &'a X::Value)
    where
        Self: 'a;
    type Values = (P::Values, X::Value);
    type Partial = (P::Partial, Option<X::Value>);

    const LEN: usize = P::LEN + 1;

    #[inline]
    fn prefix(&self) -> usize {
        self.prev.prefix()
    }

    #[inline(always)]
    fn refs(&self) -> Self::Refs<'_> {
        (self.prev.refs(), self.cell.value().expect(MISSING))
    }
    #[inline]
    fn start(self: Pin<&mut Self>, input: Self::Input) {
        self.project().prev.start(input);
    }
    #[inline]
    fn take_values(self: Pin<&mut Self>) -> Option<Self::Values> {
        let this = self.project();
        let value = this.cell.take_value();
        Some((this.prev.take_values()?, value?))
    }
    #[inline]
    fn take_partial(self: Pin<&mut Self>) -> Self::Partial {
        let this = self.project();
        let value = this.cell.take_value();
        (this.prev.take_partial(), value)
    }
}

impl<E, P: Chain<E>, X: Step<E>> Chain<E> for Plain<P, X> {
    type Input = P::Input;
    type Refs<'a>
        = P::Refs<'a>
    where
        Self: 'a;
    type Values = P::Values;
    type Partial = P::Partial;

    const LEN: usize = P::LEN + 1;

    #[inline]
    fn prefix(&self) -> usize {
        self.prev.prefix()
    }

    #[inline(always)]
    fn refs(&self) -> Self::Refs<'_> {
        self.prev.refs()
    }
    #[inline]
    fn start(self: Pin<&mut Self>, input: Self::Input) {
        self.project().prev.start(input);
    }
    #[inline]
    fn take_values(self: Pin<&mut Self>) -> Option<Self::Values> {
        let this = self.project();
        // What the step kept (a typed step's value) goes too.
        Cell::<E, P>::take_value(this.cell);
        this.prev.take_values()
    }
    #[inline]
    fn take_partial(self: Pin<&mut Self>) -> Self::Partial {
        let this = self.project();
        Cell::<E, P>::take_value(this.cell);
        this.prev.take_partial()
    }
}

pin_project! {
    /// A parallel group after the chain `P`: its members read `P`'s values,
    /// and the group adds one entry, its members' values.
    #[derive(Debug)]
    pub struct Group<P, M> {
        #[pin]
        prev: P,
        #[pin]
        members: M,
    }
}

impl<P, M> Group<P, M> {
    pub(crate) fn new(prev: P, members: M) -> Self {
        Group { prev, members }
    }
}

impl<P, M> Sealed for Group<P, M> {}

/// Which member of the group after `P` step `index` is, if any.
#[inline]
fn member_index<E, P: Chain<E>, M: Members<E, P>>(index: usize) -> Option<usize> {
    let member = index.wrapping_sub(P::LEN);
    (member < M::LEN).then_some(member)
}

impl<E, P: Chain<E>, M: Members<E, P>> StepTable<E> for Group<P, M> {
    #[inline]
    fn step_count(&self) -> usize {
        self.prefix() + Self::LEN
    }
    #[inline]
    fn poll_action(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let this = self.project();
        match member_index::<E, P, M>(index) {
            Some(member) => this
                .members
                .poll_action(member, this.prev.into_ref().get_ref(), cx),
            None => this.prev.poll_action(index, cx),
        }
    }
    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let this = self.project();
        match member_index::<E, P, M>(index) {
            Some(member) => {
                this.members
                    .poll_compensate(member, this.prev.into_ref().get_ref(), cx)
            }
            None => this.prev.poll_compensate(index, cx),
        }
    }
    #[inline]
    fn reset(self: Pin<&mut Self>, index: usize) {
        let this = self.project();
        match member_index::<E, P, M>(index) {
            Some(member) => this.members.reset(member),
            None => this.prev.reset(index),
        }
    }
    #[inline]
    fn cancel(self: Pin<&mut Self>, index: usize) {
        let this = self.project();
        match member_index::<E, P, M>(index) {
            Some(member) => this.members.cancel(member),
            None => this.prev.cancel(index),
        }
    }
    #[inline]
    fn compensates_failed_action(&self, index: usize) -> bool {
        match member_index::<E, P, M>(index) {
            Some(member) => self.members.compensates_failed_action(member),
            None => self.prev.compensates_failed_action(index),
        }
    }
    #[inline]
    fn retries_compensation(&self, index: usize) -> bool {
        match member_index::<E, P, M>(index) {
            Some(_) => true,
            None => self.prev.retries_compensation(index),
        }
    }
    #[inline]
    fn step_name(&self, index: usize) -> Option<&str> {
        match member_index::<E, P, M>(index) {
            Some(member) => self.members.name(member),
            None => self.prev.step_name(index),
        }
    }
    fn output(&self, index: usize) -> StepOutput {
        match member_index::<E, P, M>(index) {
            Some(member) => self.members.output(member),
            None => self.prev.output(index),
        }
    }
    fn save_output(&self, index: usize, out: &mut Vec<u8>) {
        match member_index::<E, P, M>(index) {
            Some(member) => self.members.save_output(member, out),
            None => self.prev.save_output(index, out),
        }
    }
    fn restore(
        self: Pin<&mut Self>,
        index: usize,
        restored: Restored<'_>,
    ) -> Result<(), DecodeError> {
        let this = self.project();
        match member_index::<E, P, M>(index) {
            Some(member) => this.members.restore(member, restored),
            None => this.prev.restore(index, restored),
        }
    }
}

impl<E, P: Chain<E>, M: Members<E, P>> Chain<E> for Group<P, M> {
    type Input = P::Input;
    type Refs<'a>
        = (P::Refs<'a>, M::Refs<'a>)
    where
        Self: 'a;
    type Values = (P::Values, M::Values);
    type Partial = (P::Partial, M::Partial);

    const LEN: usize = P::LEN + M::LEN;

    #[inline]
    fn prefix(&self) -> usize {
        self.prev.prefix()
    }

    #[inline(always)]
    fn refs(&self) -> Self::Refs<'_> {
        (self.prev.refs(), self.members.refs())
    }
    #[inline]
    fn start(self: Pin<&mut Self>, input: Self::Input) {
        self.project().prev.start(input);
    }
    #[inline]
    fn take_values(self: Pin<&mut Self>) -> Option<Self::Values> {
        let this = self.project();
        let values = this.members.take_values();
        Some((this.prev.take_values()?, values?))
    }
    #[inline]
    fn take_partial(self: Pin<&mut Self>) -> Self::Partial {
        let this = self.project();
        let values = this.members.take_partial();
        (this.prev.take_partial(), values)
    }
}
