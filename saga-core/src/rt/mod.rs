//! Runtime glue, with `std`: what every runtime adapter needs and no runtime
//! provides. Behind the `std` feature (off by default; the rest of the crate
//! stays `no_std`).
//!
//! - [`CatchPanics`]: a run in which a panicking step is a failed step
//!   (for a flow's run: [`FlowRun::catch_panics`](crate::FlowRun::catch_panics)).
//! - [`detach`]: a saga as a future to spawn on any executor, with a
//!   [`SagaHandle`] to await its [`Finished`] report (or learn it was
//!   [`Lost`]) and to abort it; [`detach_flow`] and [`FlowHandle`], the same
//!   for a run of a [`Flow`](crate::Flow).
//! - [`blocking`]: a synchronous function as a step, on a runtime's
//!   [`BlockingPool`].
//!
//! `saga-tokio` and `saga-async-std` are these plus their runtime's timer,
//! spawner and blocking pool. On smol, or any other executor, use them
//! directly.

mod blocking;
mod catch;
mod flow_handle;
mod handle;

pub use blocking::{Blocking, BlockingPool, blocking};
pub use catch::CatchPanics;
pub(crate) use catch::poll_catching;
pub use flow_handle::{FinishedFlow, FlowHandle, detach_flow};
pub use handle::{Finished, Lost, SagaHandle, detach};
