//! The scenarios, one module each; each `run` returns `Ok` when every check
//! held.

pub mod abort;
pub mod custom;
pub mod deep;
pub mod durable;
pub mod flash;
pub mod flow;
pub mod group;
pub mod heap;
pub mod long;
pub mod modes;
pub mod observer;
pub mod readme;
pub mod timer;
pub mod typed;
