//! Runtime-independent `std` code shared by `saga-tokio` and `saga-async-std`.
//!
//! Catching panics around a run, the detached run's handle and the blocking
//! step future do not depend on the runtime, and `saga-core` cannot hold them
//! (it is `no_std`). They are written once, here; `saga-async-std` compiles
//! this same directory with `#[path = "../../saga-tokio/src/common/mod.rs"]`.
//! What each crate supplies itself: `crate::pool` (how it runs a function on
//! its blocking pool) and the doc examples under `src/doc/`, included with
//! `env!("CARGO_MANIFEST_DIR")` so that each crate's docs name its own
//! runtime.

mod blocking;
mod catch;
mod handle;

pub use blocking::{Blocking, blocking};
pub use catch::CatchPanics;
pub(crate) use handle::detach;
pub use handle::{Finished, Lost, SagaHandle};
