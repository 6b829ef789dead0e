//! [`FlowGroupBuilder`]: adds the members of a flow's parallel group.

use alloc::borrow::Cow;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;

use crate::flow::{Chain, FlowCell, LastMember, NoMembers, Push};
use crate::marker::{ByOption, ByRef, SagaKind};
use crate::{AllowedIn, SagaBuilder, StepPolicy};

/// Adds the members of a flow's parallel group: what the closure given to
/// [`FlowBuilder::parallel`](crate::FlowBuilder::parallel) receives and
/// returns. Every member reads the values before the group (`C`'s), never
/// a sibling's; `M` is the members so far.
#[must_use = "a group builder does nothing until the closure returns it"]
pub struct FlowGroupBuilder<E, S: ?Sized + SagaKind<E>, T, C, M = NoMembers> {
    saga: SagaBuilder<E, S, T>,
    members: M,
    // The index of the next member.
    next: usize,
    before: PhantomData<fn() -> C>,
}

impl<E, S: ?Sized + SagaKind<E>, T, C> FlowGroupBuilder<E, S, T, C, NoMembers> {
    pub(crate) fn new(saga: SagaBuilder<E, S, T>, start: usize) -> Self {
        FlowGroupBuilder {
            saga,
            members: NoMembers,
            next: start,
            before: PhantomData,
        }
    }
}

impl<E, S: ?Sized + SagaKind<E>, T, C: Chain<E>, M> FlowGroupBuilder<E, S, T, C, M> {
    /// Adds a member, as [`FlowBuilder::then`](crate::FlowBuilder::then):
    /// its action reads the values before the group and returns one of its
    /// own; its compensation reads those and its own value, and runs only
    /// when the action succeeded.
    pub fn then<A, U, AF, UF, V>(
        self,
        action: A,
        compensation: U,
    ) -> FlowGroupBuilder<E, S, T, C, M::Output>
    where
        A: for<'a> FnMut(C::Refs<'a>) -> AF,
        AF: Future<Output = Result<V, E>>,
        U: for<'a> FnMut((C::Refs<'a>, &'a V)) -> UF,
        UF: Future<Output = Result<(), E>>,
        V: 'static,
        M: Push<FlowCell<A, U, AF, UF, V, ByRef>>,
    {
        self.push(FlowCell::new(action, compensation))
    }

    /// Adds a member, as
    /// [`FlowBuilder::then_option`](crate::FlowBuilder::then_option): its
    /// compensation also runs when its action failed, with `None`.
    pub fn then_option<A, U, AF, UF, V>(
        self,
        action: A,
        compensation: U,
    ) -> FlowGroupBuilder<E, S, T, C, M::Output>
    where
        A: for<'a> FnMut(C::Refs<'a>) -> AF,
        AF: Future<Output = Result<V, E>>,
        U: for<'a> FnMut((C::Refs<'a>, Option<&'a V>)) -> UF,
        UF: Future<Output = Result<(), E>>,
        V: 'static,
        M: Push<FlowCell<A, U, AF, UF, V, ByOption>>,
    {
        self.push(FlowCell::new(action, compensation))
    }

    fn push<X>(self, cell: X) -> FlowGroupBuilder<E, S, T, C, M::Output>
    where
        M: Push<X>,
    {
        FlowGroupBuilder {
            saga: self.saga,
            members: self.members.push(cell),
            next: self.next + 1,
            before: PhantomData,
        }
    }

    /// Names the member added last, for errors and events.
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self
    where
        M: LastMember,
    {
        self.members.name_last(name.into());
        self
    }

    /// Saves the value of the member added last in a durable run's journal,
    /// as [`FlowBuilder::saved`](crate::FlowBuilder::saved).
    pub fn saved(mut self) -> Self
    where
        M: LastMember,
        M::Value: crate::journal::Codec,
    {
        self.members.save_last();
        self
    }

    /// Gives the member added last a [`StepPolicy`] of its own, as
    /// [`FlowBuilder::policy`](crate::FlowBuilder::policy).
    pub fn policy<P>(mut self, policy: StepPolicy<P>) -> Self
    where
        M: LastMember,
        P: AllowedIn<T>,
    {
        self.saga
            .plan
            .set_override(self.next - 1, policy.into_data());
        self
    }

    /// The builder, the members and the index after the last member.
    pub(crate) fn into_parts(self) -> (SagaBuilder<E, S, T>, M, usize) {
        (self.saga, self.members, self.next)
    }
}

impl<E, S: ?Sized + SagaKind<E>, T, C, M> fmt::Debug for FlowGroupBuilder<E, S, T, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowGroupBuilder")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}
