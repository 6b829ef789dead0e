//! [`Members`]: the steps of a flow's parallel group, each reading the
//! values before the group: [`One`], then [`Many`] for each member after.

use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project_lite::pin_project;

use alloc::borrow::Cow;
use alloc::vec::Vec;

use crate::flow::{Cell, Chain, LastCell};
use crate::journal::{Codec, DecodeError};
use crate::{Restored, StepOutput};

/// The members of a flow's parallel group, which all read the values of the
/// chain `P` before the group. Sealed.
pub trait Members<E, P: Chain<E>>: crate::run::TableSealed {
    /// The members' values, by reference, nested left to right.
    type Refs<'a>
    where
        Self: 'a;
    /// The members' values, owned.
    type Values;
    /// The members' values as `Option`s.
    type Partial;

    /// How many members there are.
    #[doc(hidden)]
    const LEN: usize;
    #[doc(hidden)]
    fn poll_action(
        self: Pin<&mut Self>,
        member: usize,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>>;
    #[doc(hidden)]
    fn poll_compensate(
        self: Pin<&mut Self>,
        member: usize,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>>;
    #[doc(hidden)]
    fn reset(self: Pin<&mut Self>, member: usize);
    #[doc(hidden)]
    fn cancel(self: Pin<&mut Self>, member: usize);
    #[doc(hidden)]
    fn compensates_failed_action(&self, member: usize) -> bool;
    #[doc(hidden)]
    fn name(&self, member: usize) -> Option<&str>;
    #[doc(hidden)]
    fn output(&self, member: usize) -> StepOutput;
    #[doc(hidden)]
    fn save_output(&self, member: usize, out: &mut Vec<u8>);
    #[doc(hidden)]
    fn restore(
        self: Pin<&mut Self>,
        member: usize,
        restored: Restored<'_>,
    ) -> Result<(), DecodeError>;
    #[doc(hidden)]
    fn refs(&self) -> Self::Refs<'_>;
    #[doc(hidden)]
    fn take_values(self: Pin<&mut Self>) -> Option<Self::Values>;
    #[doc(hidden)]
    fn take_partial(self: Pin<&mut Self>) -> Self::Partial;
}

/// A member can be added after these members: [`NoMembers`] becomes [`One`],
/// which becomes [`Many`]. Sealed.
pub trait Push<X>: crate::run::TableSealed {
    /// The members with `X` after them.
    #[doc(hidden)]
    type Output;
    #[doc(hidden)]
    fn push(self, cell: X) -> Self::Output;
}

/// A group with no member yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMembers;

impl crate::run::TableSealed for NoMembers {}

impl<X> Push<X> for NoMembers {
    type Output = One<X>;
    fn push(self, cell: X) -> One<X> {
        One { cell }
    }
}

pin_project! {
    /// A group's first member.
    #[derive(Debug)]
    pub struct One<X> {
        #[pin]
        cell: X,
    }
}

impl<X> crate::run::TableSealed for One<X> {}

impl<X, Y> Push<Y> for One<X> {
    type Output = Many<One<X>, Y>;
    fn push(self, cell: Y) -> Many<One<X>, Y> {
        Many { rest: self, cell }
    }
}

pin_project! {
    /// A group's members `M`, then one more.
    #[derive(Debug)]
    pub struct Many<M, X> {
        #[pin]
        rest: M,
        #[pin]
        cell: X,
    }
}

impl<M, X> crate::run::TableSealed for Many<M, X> {}

impl<M, X, Y> Push<Y> for Many<M, X> {
    type Output = Many<Many<M, X>, Y>;
    fn push(self, cell: Y) -> Many<Many<M, X>, Y> {
        Many { rest: self, cell }
    }
}

/// The last member of a group, which `named` names. Sealed.
pub trait LastMember {
    /// The member's value.
    #[doc(hidden)]
    type Value;
    #[doc(hidden)]
    fn name_last(&mut self, name: Cow<'static, str>);
    #[doc(hidden)]
    fn save_last(&mut self)
    where
        Self::Value: Codec;
}

impl<X: LastCell> LastMember for One<X> {
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

impl<M, X: LastCell> LastMember for Many<M, X> {
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

impl<E, P: Chain<E>, X: Cell<E, P>> Members<E, P> for One<X> {
    type Refs<'a>
        = &'a X::Value
    where
        Self: 'a;
    type Values = X::Value;
    type Partial = Option<X::Value>;

    const LEN: usize = 1;
    #[inline]
    fn poll_action(
        self: Pin<&mut Self>,
        _member: usize,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        self.project().cell.poll_action(before, cx)
    }
    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        _member: usize,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        self.project().cell.poll_compensate(before, cx)
    }
    #[inline]
    fn reset(self: Pin<&mut Self>, _member: usize) {
        self.project().cell.reset();
    }
    #[inline]
    fn cancel(self: Pin<&mut Self>, _member: usize) {
        self.project().cell.cancel();
    }
    #[inline]
    fn compensates_failed_action(&self, _member: usize) -> bool {
        self.cell.compensates_failed_action()
    }
    #[inline]
    fn name(&self, _member: usize) -> Option<&str> {
        self.cell.name()
    }
    fn output(&self, _member: usize) -> StepOutput {
        self.cell.output()
    }
    fn save_output(&self, _member: usize, out: &mut Vec<u8>) {
        self.cell.save_output(out);
    }
    fn restore(
        self: Pin<&mut Self>,
        _member: usize,
        restored: Restored<'_>,
    ) -> Result<(), DecodeError> {
        self.project().cell.restore(restored)
    }
    #[inline(always)]
    fn refs(&self) -> Self::Refs<'_> {
        self.cell.value().expect(crate::flow::chain::MISSING)
    }
    #[inline]
    fn take_values(self: Pin<&mut Self>) -> Option<Self::Values> {
        self.project().cell.take_value()
    }
    #[inline]
    fn take_partial(self: Pin<&mut Self>) -> Self::Partial {
        self.project().cell.take_value()
    }
}

impl<E, P: Chain<E>, M: Members<E, P>, X: Cell<E, P>> Members<E, P> for Many<M, X> {
    type Refs<'a>
        = (M::Refs<'a>, &'a X::Value)
    where
        Self: 'a;
    type Values = (M::Values, X::Value);
    type Partial = (M::Partial, Option<X::Value>);

    const LEN: usize = M::LEN + 1;
    #[inline]
    fn poll_action(
        self: Pin<&mut Self>,
        member: usize,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let this = self.project();
        if member == M::LEN {
            this.cell.poll_action(before, cx)
        } else {
            this.rest.poll_action(member, before, cx)
        }
    }
    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        member: usize,
        before: &P,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let this = self.project();
        if member == M::LEN {
            this.cell.poll_compensate(before, cx)
        } else {
            this.rest.poll_compensate(member, before, cx)
        }
    }
    #[inline]
    fn reset(self: Pin<&mut Self>, member: usize) {
        let this = self.project();
        if member == M::LEN {
            this.cell.reset();
        } else {
            this.rest.reset(member);
        }
    }
    #[inline]
    fn cancel(self: Pin<&mut Self>, member: usize) {
        let this = self.project();
        if member == M::LEN {
            this.cell.cancel();
        } else {
            this.rest.cancel(member);
        }
    }
    #[inline]
    fn compensates_failed_action(&self, member: usize) -> bool {
        if member == M::LEN {
            self.cell.compensates_failed_action()
        } else {
            self.rest.compensates_failed_action(member)
        }
    }
    #[inline]
    fn name(&self, member: usize) -> Option<&str> {
        if member == M::LEN {
            self.cell.name()
        } else {
            self.rest.name(member)
        }
    }
    fn output(&self, member: usize) -> StepOutput {
        if member == M::LEN {
            self.cell.output()
        } else {
            self.rest.output(member)
        }
    }
    fn save_output(&self, member: usize, out: &mut Vec<u8>) {
        if member == M::LEN {
            self.cell.save_output(out);
        } else {
            self.rest.save_output(member, out);
        }
    }
    fn restore(
        self: Pin<&mut Self>,
        member: usize,
        restored: Restored<'_>,
    ) -> Result<(), DecodeError> {
        let this = self.project();
        if member == M::LEN {
            this.cell.restore(restored)
        } else {
            this.rest.restore(member, restored)
        }
    }
    #[inline(always)]
    fn refs(&self) -> Self::Refs<'_> {
        let value = self.cell.value().expect(crate::flow::chain::MISSING);
        (self.rest.refs(), value)
    }
    #[inline]
    fn take_values(self: Pin<&mut Self>) -> Option<Self::Values> {
        let this = self.project();
        let value = this.cell.take_value();
        Some((this.rest.take_values()?, value?))
    }
    #[inline]
    fn take_partial(self: Pin<&mut Self>) -> Self::Partial {
        let this = self.project();
        let value = this.cell.take_value();
        (this.rest.take_partial(), value)
    }
}
