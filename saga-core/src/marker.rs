//! Types and traits that appear in signatures: bounds and type parameters
//! that the compiler fills in for you.
//!
//! You never name them to build and run a saga. You name them only to write
//! code generic over the builder or the saga, or to spell out a step's full
//! type:
//!
//! - [`SagaKind`]: the `S` parameter of a builder, a saga and its run,
//!   `Send` or local; for code generic over both kinds.
//! - [`StepSlot`]: "this kind of saga can store this step"; for a helper
//!   that adds a step to any [`SagaBuilder`](crate::SagaBuilder) or
//!   [`GroupBuilder`](crate::GroupBuilder).
//! - [`Handoff`], [`ByValue`], [`ByRef`], [`ByOption`]: the last parameter of
//!   a [`TypedStep`](crate::TypedStep), chosen by its constructor.
//! - [`Discard`]: the sleep future of a closure [`Sleeper`](crate::Sleeper).
//! - For [flows](crate::FlowBuilder): [`Chain`] (a flow's steps so far and
//!   the values they read), [`Pick`] and [`Appends`] (for helpers generic over
//!   the flow before them), and the chain's parts ([`Start`], [`Then`],
//!   [`Plain`], [`Group`], [`FlowCell`], the group members [`NoMembers`],
//!   [`One`], [`Many`], and the traits and types that join them), which only
//!   appear in full type names.
//!
//! # Examples
//!
//! A helper that adds steps to any builder, `Send` or local:
//!
//! ```
//! use saga_core::marker::{SagaKind, StepSlot};
//! use saga_core::{FnStep, SagaBuilder};
//!
//! /// Adds `count` steps made by `make`.
//! fn repeated<E, S, T, X>(
//!     mut builder: SagaBuilder<E, S, T>,
//!     count: usize,
//!     make: impl Fn(usize) -> X,
//! ) -> SagaBuilder<E, S, T>
//! where
//!     S: ?Sized + SagaKind<E> + StepSlot<X>,
//! {
//!     for i in 0..count {
//!         builder = builder.step(make(i));
//!     }
//!     builder
//! }
//!
//! let step = |_| FnStep::new(|| async { Ok::<(), ()>(()) }, || async { Ok(()) });
//! let saga = repeated(SagaBuilder::new(), 3, step).build();
//! let local = repeated(SagaBuilder::new_local(), 2, step).build();
//! assert_eq!((saga.len(), local.len()), (3, 2));
//! ```

pub use crate::builder::StepSlot;
pub use crate::flow::{
    Appends, Bare, Cell, Chain, FlowCell, FlowHandoff, FlowKind, FlowTable, Group, Here, LastCell,
    LastMember, LastStep, Many, Mapped, Members, NoMembers, Node, One, Pick, Plain, Push, Start,
    TableSlot, Then, There, Valued, Valueless,
};
pub use crate::kind::SagaKind;
pub use crate::run::StepTable;
pub use crate::sleep::Discard;
pub use crate::typed_step::{ByOption, ByRef, ByValue, Handoff};
