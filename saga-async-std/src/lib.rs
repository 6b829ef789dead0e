//! Bindings of [`saga_core`] to the async-std runtime.
//!
//! Not implemented yet: this crate is a placeholder for the async-std sleeper,
//! detached runs, panic handling and blocking steps. async-std is
//! discontinued upstream in favour of smol; `saga-core` runs on smol directly,
//! with no adapter (`smol::block_on(saga.run())`).
//!
//! # Cancel safety
//!
//! Dropping a saga's run future stops the saga without compensating; see
//! [`saga_core::Run`].
#![forbid(unsafe_code)]

pub use saga_core;
