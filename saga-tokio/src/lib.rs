//! Bindings of [`saga_core`] to the tokio runtime.
//!
//! Not implemented yet: this crate is a placeholder for the tokio sleeper,
//! detached runs, panic handling and blocking steps. Until then, a
//! [`saga_core::Saga`] runs on tokio as it is: its run future is `Send` and
//! can be awaited or spawned directly.
//!
//! # Cancel safety
//!
//! Dropping a saga's run future stops the saga without compensating; see
//! [`saga_core::Run`].
#![forbid(unsafe_code)]

pub use saga_core;
