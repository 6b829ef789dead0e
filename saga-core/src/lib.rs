//! Sagas for async Rust, with no runtime and no `std`.
//!
//! A saga is an ordered list of steps, each an **action** and a
//! **compensation**. The actions run one after another; when one fails, the
//! compensations undo what was done, in reverse order. This crate is the
//! runtime-free core: it runs on any executor (tokio, async-std, smol,
//! embassy, a hand-written `block_on`), needs only `alloc`, and is written
//! in safe Rust only (`#![forbid(unsafe_code)]`).
//!
//! # Examples
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use saga_core::SagaBuilder;
//!
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let record = |entry: &'static str| {
//!     let log = log.clone();
//!     move || {
//!         let log = log.clone();
//!         async move { log.lock().unwrap().push(entry); Ok(()) }
//!     }
//! };
//!
//! let mut saga = SagaBuilder::new()
//!     .add_step(record("book flight"), record("cancel flight"))
//!     .add_step(record("book hotel"), record("cancel hotel"))
//!     .add_step(|| async { Err::<(), _>("no cars left") }, || async { Ok(()) })
//!     .build();
//!
//! let error = smol::block_on(saga.run()).unwrap_err();
//! assert_eq!(error.failed_step(), 2);
//! assert!(error.is_fully_compensated());
//! assert_eq!(
//!     *log.lock().unwrap(),
//!     ["book flight", "book hotel", "cancel hotel", "cancel flight"],
//! );
//! ```
//!
//! # The rules
//!
//! 1. Step `i + 1`'s action starts only after step `i`'s action returned `Ok`.
//! 2. When an action returns `Err`, later actions never start, and
//!    compensations run one at a time in reverse order of the steps that ran.
//! 3. A pysagas-style step ([`SagaBuilder::add_step`], compensation without
//!    input) is compensated even when its own action failed, first, because a
//!    failed action may have partly happened. A step whose compensation
//!    receives the action's value ([`SagaBuilder::add_typed_step`]) is
//!    compensated only when its action succeeded. [`FnStep`] and
//!    [`TypedStep::by_option`] change either default.
//! 4. Actions may return values that their compensation receives, by value or
//!    by reference, checked at compile time. In a [`Flow`], every action and
//!    compensation also reads the run's input and the values of the steps
//!    before it, and a run returns a result (see [Data flow](#data-flow)).
//! 5. A classifier ([`SagaBuilder::classify`]) routes each action error:
//!    retry by the step's [`Retry`] policy, then compensate (the default),
//!    compensate at once, or propagate without compensating; the result says
//!    which happened ([`SagaError::handling`]).
//! 6. A compensation failure is never silent: it is retried by policy, and
//!    when it still fails the backward phase stops there (the default) or,
//!    with [`CompensationMode::ContinueOnError`], goes on and collects every
//!    error. [`SagaError`] reports the original error and the failed step,
//!    each compensation error with its step, and which steps are left
//!    applied ([`SagaError::is_fully_compensated`]).
//! 7. Nothing in flight is abandoned, except by a timeout or an abort that
//!    cuts it short; a step cut short counts as failed and possibly applied,
//!    and is compensated by rule 3.
//! 8. Parallel groups ([`SagaBuilder::parallel`]) run their members
//!    concurrently; when one fails, the others finish (or are cut short, by
//!    [`ParallelGroup::on_failure`]), then every member that ran is
//!    compensated, then the steps before the group. Opt-in modes
//!    ([`CompensationMode::ConcurrentGroups`], [`CompensationMode::Concurrent`])
//!    run compensations concurrently and collect every error.
//! 9. Dropping a [`Run`] mid-saga stops it without compensating (see
//!    [Cancel safety](#cancel-safety)); an [`AbortHandle`] stops it and has
//!    it compensate. The runtime adapters' `spawn` keeps a saga running to
//!    its end when its handle is dropped.
//! 10. A saga of zero steps succeeds; a run polled after it completed
//!     panics, with a message that says so; a saga can run again once a run
//!     completed.
//! 11. Retry backoff and timeouts need a timer ([`SagaBuilder::sleeper`]);
//!     asking for them without one does not compile.
//! 12. Every transition (saga start and end, action and compensation start
//!     and end, retry, abort) reaches the saga's [`Observer`], if it has one,
//!     and `tracing` spans and events with the `tracing` feature. An
//!     observer, the `tracing` feature, or a timeout that never fires never
//!     changes what a run does; a panicking callback ends the run with
//!     what was applied compensated (under a runtime adapter, or
//!     `rt::CatchPanics`).
//!
//! With a journal ([`Saga::run_journaled`], see [Durable sagas](#durable-sagas)):
//!
//! 13. **Write-ahead.** An action or compensation attempt's "started" record
//!     is durable before the attempt is first polled; its outcome is recorded
//!     after. A gap-free sequence number orders a saga's records; a gap or
//!     an illegal transition refuses to resume ([`journal::replay`]).
//! 14. **Recovery finishes the saga** ([`Saga::resume`]). An attempt with a
//!     "started" record and no outcome counts as cut short (rule 7): an
//!     action is run again if its retry policy allows another attempt,
//!     otherwise the saga unwinds and compensates it by rule 3; a
//!     compensation with no outcome is run again. So actions and
//!     compensations run *at least once*: make them idempotent, with the
//!     saga id and the step index as the key
//!     ([`SagaContext::key`](journal::SagaContext::key)). Saved values
//!     ([`TypedStep::saved`], [`FlowBuilder::saved`]) are in the journal,
//!     so a resumed compensation, and a later flow step, receive the value
//!     the original action returned. No step is lost: every saga ends
//!     committed, compensated, or stuck with its reason reported.
//! 15. **Definitions are versioned.** A journal names its saga definition
//!     (name, version) and the fingerprint of its shape
//!     ([`Saga::fingerprint`]); an unknown definition or a changed shape is
//!     quarantined with a reason ([`journal::Quarantined`],
//!     [`journal::Refused`]): never run, never a panic, and never blocking
//!     the other sagas of a store.
//! 16. **One driver at a time.** Across workers (a shared store with
//!     leases), a saga is driven only by the holder of its lease. Every
//!     takeover bumps an epoch, and every journal append is conditional on
//!     it, so a worker that lost its lease writes nothing more (its journal
//!     fails with [`JournalErrorKind::Fenced`](journal::JournalErrorKind::Fenced))
//!     and stops. The epoch is a fencing token steps can pass downstream
//!     ([`SagaContext::epoch`](journal::SagaContext::epoch)).
//!
//! [`SagaError`] says where and why a run stopped, in one table.
//!
//! # Data flow
//!
//! A [`Flow`] is a saga built once and run many times, each run with an
//! input of its own; its steps read the input and the values returned by the
//! steps before them, and a run returns a result. Start one with
//! [`SagaBuilder::input`], add steps with [`FlowBuilder::then`]:
//!
//! ```
//! use saga_core::SagaBuilder;
//!
//! let mut flow = SagaBuilder::new()
//!     .input::<u32>() // nights
//!     .then(
//!         |nights: &u32| { let nights = *nights; async move { Ok::<_, String>(nights * 90) } },
//!         |(_, price): (&u32, &u32)| { let _refund = *price; async { Ok(()) } },
//!     )
//!     .then(
//!         |(nights, price)| { let receipt = format!("{nights} nights, {price} paid"); async move { Ok(receipt) } },
//!         |_| async { Ok(()) },
//!     )
//!     .build_with(|(_, receipt)| receipt);
//!
//! assert_eq!(smol::block_on(flow.run(2)).unwrap(), "2 nights, 180 paid");
//! assert_eq!(smol::block_on(flow.run(3)).unwrap(), "3 nights, 270 paid");
//! ```
//!
//! What each step reads is a type: references to the input and to every
//! earlier value, nested left to right (`((&input, &a), &b)`), so reading a
//! value that cannot exist yet (a later step's, a sibling's in a parallel
//! group) does not compile. A run's values live in the flow for that run
//! only: handed to the result map on success, returned in the
//! [`FlowError`] of a failed run (with the report), dropped if the run is
//! dropped. A flow is the same engine as a [`Saga`]: every rule, policy and
//! setting applies the same way.
//!
//! # Durable sagas
//!
//! A saga run with a [`Journal`](journal::Journal) survives its process: each
//! transition is a record, and after a crash (a deploy, `kill -9`, a power
//! cut) [`Saga::resume`] finishes what the crashed run would have done,
//! forward or backward, by rules 13 to 15. The core holds the journal's
//! data model, the engine's journal stage, [`journal::replay`] and a
//! [`journal::Registry`] of definitions; a store (a file, a database, flash)
//! implements [`Journal`](journal::Journal) in its own crate.
//!
//! What a crash can and cannot lose: a record is kept once the journal's
//! flush returned; an attempt whose "started" record was not yet durable
//! was never polled, so nothing ran unrecorded. An attempt that ran and
//! whose outcome was not yet durable is run again (or compensated), which
//! is why actions and compensations must be idempotent.
//!
//! A [`Flow`] is journaled the same way ([`Flow::run_journaled`],
//! [`Flow::resume`]): its input is the saga's parameters, and each step's
//! value is recorded with its success ([`FlowBuilder::saved`]), so that a
//! resumed flow's later steps read the values the crashed run's actions
//! returned, without running those actions again.
//!
//! ```
//! use saga_core::journal::{replay, MemoryJournal, Outcome, SagaState, Start};
//! use saga_core::SagaBuilder;
//!
//! let mut saga = SagaBuilder::<String>::new()
//!     .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
//!     .build();
//! let mut journal = MemoryJournal::new();
//! let run = saga.run_journaled(&mut journal, Start::new("one", 1, vec![]))?;
//! assert!(smol::block_on(run).is_ok());
//! let history = replay(journal.durable())?;
//! assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Observability
//!
//! An [`Observer`] ([`SagaBuilder::observer`]) receives every transition of
//! every run. With the `tracing` feature, each run gets a span, each step's
//! action and compensation a span inside it, and each transition an event.
//!
//! # Time and aborts
//!
//! The core has no timer. Give a saga a [`Sleeper`] with
//! [`SagaBuilder::sleeper`] to unlock retry backoff and timeouts (without
//! one they do not compile; immediate retries need none, see
//! [timing](SagaBuilder#timing-what-needs-a-sleeper)). An [`AbortHandle`] attached with
//! [`Run::abortable`] stops a run from anywhere and has it compensate; one
//! handle may be shared by any number of runs, like a shutdown token, and
//! wakes each of them when it aborts (without `std`, as many as its
//! capacity; see [`AbortHandle`]).
//!
//! # Cancel safety
//!
//! Dropping a [`Run`] future mid-saga stops the saga without compensating:
//! Rust has no async drop. The step in flight is reset and the applied steps
//! stay applied. Drive runs to completion, or spawn them with a runtime
//! adapter, whose handle keeps the saga running when dropped.
//!
//! # `no_std`
//!
//! The crate is `#![no_std]` and uses `alloc` for the step list and the
//! error report. It builds for targets such as `thumbv7em-none-eabihf` (the
//! abort handle and parallel groups use atomics, so targets need
//! pointer-sized atomics).
//!
//! # Features
//!
//! - `tracing` (off): a span per run and per step, an event per transition.
//! - `std` (off): the `rt` module, the runtime-independent glue the runtime adapters
//!   share: panics as failed steps, detached runs, blocking steps; and an
//!   [`AbortHandle`] that wakes any number of runs (without `std`, as many as
//!   its capacity). The runtime adapters turn it on.
//!
//! Two modules hold what most code never names: [`marker`] (types that
//! appear in generic signatures) and [`testing`] (checking that steps are
//! idempotent, for tests).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod abort;
mod builder;
mod error;
mod flow;
mod fn_step;
mod group;
mod interrupt;
pub mod journal;
mod kind;
pub mod marker;
mod observer;
mod plan;
mod policy;
mod retry;
#[cfg(feature = "std")]
pub mod rt;
mod run;
mod saga;
mod sleep;
mod step;
pub mod testing;
#[cfg(feature = "tracing")]
mod trace;
mod typed_step;

pub use abort::AbortHandle;
pub use builder::{LocalSagaBuilder, SagaBuilder};
pub use error::{Handling, SagaError, StepFailure, StopReason};
pub use flow::{Flow, FlowBuilder, FlowError, FlowGroupBuilder, FlowRun, LocalFlow};
pub use fn_step::FnStep;
pub use group::{GroupBuilder, ParallelGroup};
pub use interrupt::{Aborted, Crashed, Panicked, TimedOut};
pub use observer::{Observer, StepRef};
pub use policy::{AllowedIn, CompensationMode, InFlight, Recovery, StepPolicy, Timed, Untimed};
pub use retry::Retry;
pub use run::Run;
pub use saga::{LocalSaga, Saga};
pub use sleep::Sleeper;
pub use step::{Restored, Step, StepOutput};
pub use typed_step::TypedStep;

// The README's examples are compiled and run as doctests (one of them shows
// the `std` feature's `rt::detach`).
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
