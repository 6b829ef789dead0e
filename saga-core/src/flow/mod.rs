//! Sagas that carry data: a [`Flow`] takes an input per run, its steps read
//! the input and the values of the steps before them (checked at compile
//! time), and a run returns a result. Built with [`SagaBuilder::input`](crate::SagaBuilder::input).

mod builder;
mod cell;
pub(crate) mod chain;
mod error;
mod group;
mod journaled;
mod members;
mod pick;
mod saga;
mod table;

pub use builder::FlowBuilder;
pub use cell::{Bare, Cell, FlowCell, FlowHandoff};
pub use chain::{
    Appends, Chain, Group, LastCell, LastStep, Node, Plain, Start, Then, Valued, Valueless,
};
pub use error::FlowError;
pub use group::FlowGroupBuilder;
pub use journaled::JournaledFlowRun;
pub use members::{LastMember, Many, Members, NoMembers, One, Push};
pub use pick::{Here, Pick, There};
pub use saga::{Flow, FlowRun, LocalFlow};
pub use table::{FlowKind, FlowTable, Mapped, TableSlot};
