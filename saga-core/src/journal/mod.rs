//! Durable sagas: the journal of a saga's transitions, so that a saga can
//! survive its process and be finished by the next one.
//!
//! This module is the journal's data model, with no store and no
//! dependency:
//!
//! - [`Record`] and [`Event`]: one numbered record per transition (saga
//!   created, action or compensation attempt started, succeeded, failed,
//!   retrying, unwinding, finished), with a byte format
//!   ([`Record::to_bytes`]) for stores that keep bytes;
//! - [`Journal`]: where a saga's records go, poll-based and object safe
//!   like [`Step`](crate::Step);
//! - [`replay`]: from records back to a [`History`] (where each step's
//!   action and compensation got to), refusing gaps and illegal
//!   transitions;
//! - [`Codec`]: how parameters and step values are encoded, with the
//!   [`Step`](crate::Step) methods [`save_output`](crate::Step::save_output)
//!   and [`restore`](crate::Step::restore) and
//!   [`TypedStep::saved`](crate::TypedStep::saved);
//! - [`Registry`]: saga definitions by name and version, built again from a
//!   journal's parameters, and quarantined when their shape
//!   ([`Saga::fingerprint`](crate::Saga::fingerprint)) changed.
//!
//! - [`Saga::run_journaled`](crate::Saga::run_journaled) and
//!   [`Saga::resume`](crate::Saga::resume): a run that writes a record of
//!   each transition (rule 13 of the [crate docs](crate#the-rules)), and a
//!   run that finishes a saga from its [`History`] (rule 14), as a
//!   [`JournaledRun`] whose error is a [`DurableError`];
//! - [`Flow::run_journaled`](crate::Flow::run_journaled) and
//!   [`Flow::resume`](crate::Flow::resume): the same for a flow, whose
//!   input is the saga's parameters and whose
//!   [saved](crate::FlowBuilder::saved) values are restored on resume, as
//!   a [`JournaledFlowRun`].
//!
//! [`MemoryJournal`] keeps records in memory and can lose power, for tests.

mod codec;
mod fingerprint;
mod journaled_run;
mod memory;
mod record;
mod registry;
mod registry_run;
mod replay;

use alloc::string::String;
use core::fmt;
use core::task::{Context, Poll};

pub use crate::flow::JournaledFlowRun;
pub use codec::{Codec, DecodeError, Reader};
pub use journaled_run::{DurableError, JournaledRun, Refused, Start};
pub(crate) use journaled_run::{check_resumable, check_saved, describe, report, unsaved};
pub use memory::MemoryJournal;
pub use record::{Event, Outcome, Record, Unwind};
pub use registry::{Definition, Quarantined, Registry, SagaContext, SagaId};
pub use registry_run::{DurableRun, OwnedJournal};
pub use replay::{History, Progress, ReplayError, SagaState, StepHistory, replay};

pub(crate) use fingerprint::fingerprint;

/// Where one saga's records are kept: the run [appends](Journal::append)
/// them in order and [flushes](Journal::poll_flush) them when they must be
/// durable.
///
/// Poll-based and object safe, like [`Step`](crate::Step): a store
/// implements it over its own I/O (a writer thread, an async client, a
/// flash driver) and the run polls it on whatever executor polls the run.
/// One journal holds one saga; a store hands out one per saga.
///
/// # The contract
///
/// - `append` takes records in order, numbered from 0 without gaps. It may
///   buffer them.
/// - `poll_flush` returns `Ready(Ok(()))` once every record appended
///   before the call is durable; `Pending` when it is not yet, having
///   arranged for `cx`'s waker to be woken (the run polls the flush with one
///   waker at a time).
/// - An `Err` from either ends the run without compensating anything: the
///   journal holds the truth, and the saga is resumed from it later.
///
/// # Examples
///
/// A journal in memory, durable at once:
///
/// ```
/// use core::task::{Context, Poll};
/// use saga_core::journal::{Journal, JournalError, Record};
///
/// #[derive(Default)]
/// struct InMemory(Vec<Record>);
///
/// impl Journal for InMemory {
///     fn append(&mut self, record: &Record) -> Result<(), JournalError> {
///         self.0.push(record.clone());
///         Ok(())
///     }
///
///     fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
///         Poll::Ready(Ok(()))
///     }
/// }
/// ```
pub trait Journal {
    /// Adds the next record. It need not be durable before
    /// [`poll_flush`](Journal::poll_flush) says so.
    fn append(&mut self, record: &Record) -> Result<(), JournalError>;

    /// Makes every record appended so far durable.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>>;
}

impl<J: ?Sized + Journal> Journal for &mut J {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        (**self).append(record)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        (**self).poll_flush(cx)
    }
}

impl<J: ?Sized + Journal> Journal for alloc::boxed::Box<J> {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        (**self).append(record)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        (**self).poll_flush(cx)
    }
}

/// A journal could not take or keep a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalError {
    kind: JournalErrorKind,
    message: String,
}

/// What kind of [`JournalError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JournalErrorKind {
    /// The store failed (I/O, a full disk, a lost connection).
    Storage,
    /// Another worker took the saga over: this one must stop driving it.
    Fenced,
    /// The store was closed.
    Closed,
}

impl JournalError {
    /// An error of `kind`, with a message for `Display`.
    pub fn new(kind: JournalErrorKind, message: impl Into<String>) -> Self {
        JournalError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of error.
    pub fn kind(&self) -> JournalErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            JournalErrorKind::Storage => "journal storage failed",
            JournalErrorKind::Fenced => "fenced: another worker drives this saga",
            JournalErrorKind::Closed => "journal closed",
        };
        match self.message.is_empty() {
            true => f.write_str(kind),
            false => write!(f, "{kind}: {}", self.message),
        }
    }
}

impl core::error::Error for JournalError {}
