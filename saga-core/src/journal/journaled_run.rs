//! [`Saga::run_journaled`] and [`Saga::resume`]: a run that writes its
//! journal, and a run that finishes a saga from its journal.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::{DecodeError, Event, History, JournalError, Outcome, SagaState};
use crate::marker::{SagaKind, StepTable};
use crate::run::Link;
use crate::{AbortHandle, Aborted, Crashed, Restored, Run, Saga, SagaError, Step, StepOutput};

/// What a new durable saga's first record says of it: the definition it
/// was built from, and its encoded parameters (see
/// [`Registry`](super::Registry)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The definition's name.
    pub definition: String,
    /// The definition's version.
    pub version: u32,
    /// The parameters, as [`Registry::encode_parameters`](super::Registry::encode_parameters)
    /// encoded them.
    pub parameters: Vec<u8>,
}

impl Start {
    /// Saga `definition`, version `version`, built from `parameters`.
    pub fn new(definition: impl Into<String>, version: u32, parameters: Vec<u8>) -> Self {
        Start {
            definition: definition.into(),
            version,
            parameters,
        }
    }

    /// The first record's event, for a saga of this `fingerprint`.
    pub(crate) fn into_created(self, fingerprint: u64) -> Event {
        Event::Created {
            definition: self.definition,
            version: self.version,
            fingerprint,
            parameters: self.parameters,
        }
    }
}

/// How a journaled run ended badly.
#[derive(Debug)]
#[non_exhaustive]
pub enum DurableError<E> {
    /// The saga failed, as [`Saga::run`] reports it; the journal holds its
    /// end.
    Saga(SagaError<E>),
    /// The journal failed: the run stopped where it was, without
    /// compensating, and the journal holds the truth. Resume the saga from
    /// it (after fixing the store, or on the worker that now owns it).
    Journal(JournalError),
}

impl<E> DurableError<E> {
    /// The saga's error, when the saga failed.
    pub fn saga(&self) -> Option<&SagaError<E>> {
        match self {
            DurableError::Saga(error) => Some(error),
            DurableError::Journal(_) => None,
        }
    }

    /// The journal's error, when the journal failed.
    pub fn journal(&self) -> Option<&JournalError> {
        match self {
            DurableError::Journal(error) => Some(error),
            DurableError::Saga(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for DurableError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurableError::Saga(error) => error.fmt(f),
            DurableError::Journal(error) => write!(f, "the saga stopped: {error}"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for DurableError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            DurableError::Saga(error) => Some(error),
            DurableError::Journal(error) => Some(error),
        }
    }
}

/// Why a saga was not run with its journal. Nothing was run or written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The journal says the saga finished: there is nothing to resume.
    Finished(Outcome),
    /// The saga's shape is not the journal's ([`Saga::fingerprint`]).
    FingerprintChanged {
        /// The journal's fingerprint.
        journal: u64,
        /// The saga's.
        saga: u64,
    },
    /// The journal mentions more steps than the saga has.
    TooFewSteps {
        /// How many steps the journal mentions.
        mentioned: usize,
        /// How many the saga has.
        steps: usize,
    },
    /// Step `step` keeps a value that it cannot save (a typed step without
    /// a codec, see [`TypedStep::saved`](crate::TypedStep::saved), or a flow
    /// step not marked [`FlowBuilder::saved`](crate::FlowBuilder::saved)).
    Unsaved {
        /// The step.
        step: usize,
    },
    /// Step `step` could not be put back from its journaled value.
    Restore {
        /// The step.
        step: usize,
        /// Why.
        error: DecodeError,
    },
    /// The journal's parameters (a [`Flow`](crate::Flow)'s input) could
    /// not be decoded.
    Parameters(DecodeError),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Finished(outcome) => write!(f, "the saga already finished ({outcome})"),
            Refused::FingerprintChanged { journal, saga } => write!(
                f,
                "the saga's shape changed (fingerprint {saga:016x}, the journal's {journal:016x})"
            ),
            Refused::TooFewSteps { mentioned, steps } => write!(
                f,
                "the journal mentions {mentioned} steps, the saga has {steps}"
            ),
            Refused::Unsaved { step } => write!(
                f,
                "step {step} keeps a value it cannot save to a journal (a typed or flow step needs `saved()`)"
            ),
            Refused::Restore { step, error } => {
                write!(f, "step {step} could not be restored: {error}")
            }
            Refused::Parameters(error) => {
                write!(f, "the journal's parameters could not be decoded: {error}")
            }
        }
    }
}

impl core::error::Error for Refused {}

/// The future of a journaled run, returned by [`Saga::run_journaled`] and
/// [`Saga::resume`]: a [`Run`] that writes a record of each transition to
/// its journal.
///
/// # Cancel safety
///
/// As [`Run`]'s: dropping it stops the saga without compensating. The
/// journal still holds every transition, so [`Saga::resume`] finishes it.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct JournaledRun<'a, E, S: ?Sized + SagaKind<E> = dyn Step<E> + Send + 'static> {
    run: Run<'a, E, S>,
    done: bool,
}

impl<'a, E, S: ?Sized + SagaKind<E>> JournaledRun<'a, E, S> {
    /// Attaches an [`AbortHandle`], as [`Run::abortable`] does.
    pub fn abortable(mut self, handle: &AbortHandle) -> Self
    where
        E: From<Aborted>,
    {
        self.run.attach_abort(handle);
        self
    }
}

impl<E, S: ?Sized + SagaKind<E>> Future for JournaledRun<'_, E, S> {
    type Output = Result<(), DurableError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "saga `JournaledRun` polled after it completed");
        let polled = Pin::new(&mut this.run).poll(cx);
        let result = match polled {
            Poll::Ready(result) => result.map_err(DurableError::Saga),
            Poll::Pending => match this.run.journal_error() {
                Some(error) => Err(DurableError::Journal(error)),
                None => return Poll::Pending,
            },
        };
        this.done = true;
        Poll::Ready(result)
    }
}

impl<E, S: ?Sized + SagaKind<E>> fmt::Debug for JournaledRun<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournaledRun")
            .field("run", &self.run)
            .finish()
    }
}

pub(crate) fn describe<E: fmt::Display>(error: &E) -> String {
    error.to_string()
}

pub(crate) fn report<E: fmt::Display>(error: &SagaError<E>) -> String {
    error.to_string()
}

/// The first step that keeps a value it cannot save: a durable run refuses
/// it.
pub(crate) fn check_saved<E, B: ?Sized + StepTable<E>>(steps: &B) -> Result<(), Refused> {
    match unsaved(steps).next() {
        Some(step) => Err(Refused::Unsaved { step }),
        None => Ok(()),
    }
}

/// The steps that keep a value they cannot save, in order.
pub(crate) fn unsaved<E, B: ?Sized + StepTable<E>>(steps: &B) -> impl Iterator<Item = usize> + '_ {
    (0..steps.step_count()).filter(|&step| steps.output(step) == StepOutput::Unsaved)
}

/// Whether `steps` (with `groups`) can resume from `history`: the saga is
/// not finished, its shape is the journal's, every step can save its
/// value, and every step the journal says succeeded restores (the run
/// restores them again, infallibly, as it starts), so that a value that
/// cannot be decoded refuses the resume before anything runs.
pub(crate) fn check_resumable<E, B: ?Sized + StepTable<E>>(
    mut steps: Pin<&mut B>,
    groups: &[crate::group::GroupSpec],
    history: &History,
) -> Result<(), Refused> {
    if let SagaState::Finished(outcome) = history.state() {
        return Err(Refused::Finished(outcome));
    }
    let fingerprint = super::fingerprint(&*steps, groups);
    if fingerprint != history.fingerprint {
        return Err(Refused::FingerprintChanged {
            journal: history.fingerprint,
            saga: fingerprint,
        });
    }
    if history.steps_mentioned() > steps.step_count() {
        return Err(Refused::TooFewSteps {
            mentioned: history.steps_mentioned(),
            steps: steps.step_count(),
        });
    }
    check_saved(&*steps)?;
    for step in 0..history.steps_mentioned() {
        let before = history.step(step);
        if before.action != super::Progress::Succeeded {
            continue;
        }
        if steps.output(step) != StepOutput::Saved && before.output.is_none() {
            continue;
        }
        let restored = Restored::Succeeded(before.output.as_deref());
        if let Err(error) = steps.as_mut().restore(step, restored) {
            return Err(Refused::Restore { step, error });
        }
    }
    Ok(())
}

impl<E, S: ?Sized + SagaKind<E>> Saga<E, S> {
    /// Runs the saga as [`run`](Saga::run) does, writing a record of each
    /// transition to `journal`, so that after a crash [`resume`](Saga::resume)
    /// finishes it (rules 13 and 14 of the [crate docs](crate#the-rules)).
    ///
    /// The first record names `start`'s definition, the saga's
    /// [fingerprint](Saga::fingerprint) and the parameters. Each action or
    /// compensation attempt's "started" record is durable (the journal's
    /// flush returned `Ready(Ok)`) before the attempt is first polled; its
    /// outcome rides with the next flush, so a saga of single steps flushes
    /// once per step on the happy path, and once more at its end. Error
    /// messages are recorded as `E` displays them.
    ///
    /// Refused (nothing written) when a step keeps a value it cannot save.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::journal::{replay, MemoryJournal, SagaState, Outcome, Start};
    /// use saga_core::{Saga, SagaBuilder};
    ///
    /// let mut saga: Saga<String> = SagaBuilder::new()
    ///     .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
    ///     .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
    ///     .build();
    /// let mut journal = MemoryJournal::new();
    /// let run = saga.run_journaled(&mut journal, Start::new("pair", 1, vec![]))?;
    /// smol::block_on(run).map_err(|error| error.to_string())?;
    ///
    /// // Created, then started and succeeded for each step, then finished.
    /// assert_eq!(journal.durable().len(), 6);
    /// assert_eq!(journal.flushes(), 3);
    /// let history = replay(journal.durable())?;
    /// assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_journaled<'a>(
        &'a mut self,
        journal: &'a mut S::Journal,
        start: Start,
    ) -> Result<JournaledRun<'a, E, S>, Refused>
    where
        E: fmt::Display + From<Crashed>,
    {
        check_saved(&self.steps[..])?;
        Ok(self.journaled(journal, Ok(start)))
    }

    /// Finishes a saga from its journal (`history` is what
    /// [`replay`](super::replay) read from `journal`), by rule 14 of the
    /// [crate docs](crate#the-rules): the saga goes on from where the
    /// crashed run left it, writing the next records to `journal`.
    ///
    /// - Steps whose action succeeded are [restored](Step::restore) with
    ///   their saved values and not run again.
    /// - An attempt with a "started" record and no outcome counts as cut
    ///   short: an action is run again (as its next attempt) if its retry
    ///   policy allows, otherwise it fails with `E::from(Crashed)`
    ///   ([`StopReason::Crashed`](crate::StopReason::Crashed)) and the saga
    ///   compensates it by rule 3; a compensation is always run again. A
    ///   retry that was waiting for its backoff runs at once.
    /// - A saga that was compensating goes on compensating; compensations
    ///   that succeeded are counted and not run again. The report's error
    ///   is `E::from(Crashed)` with the journal's message of the original
    ///   error ([`Crashed::message`]), and likewise for compensations that
    ///   had failed for good.
    /// - An action that had failed for good with no `Unwinding` record
    ///   after it (the crash came in between) unwinds as a failure.
    ///
    /// The deadline ([`saga_timeout`](crate::SagaBuilder::saga_timeout)),
    /// if any, starts again with the resumed run.
    ///
    /// Refused, with nothing run or written, when the journal says the saga
    /// finished, when the saga's shape is not the journal's, or when a step
    /// cannot be restored.
    ///
    /// # Examples
    ///
    /// A saga whose process died while its second step ran: resumed, the
    /// second step runs again (its retry policy allows a second attempt;
    /// without one, the saga would compensate it) and the saga commits.
    ///
    /// ```
    /// use std::future::{pending, Future};
    /// use std::pin::Pin;
    /// use std::task::{Context, Waker};
    /// use saga_core::journal::{replay, MemoryJournal, Outcome, SagaState, Start};
    /// use saga_core::{Retry, Saga, SagaBuilder};
    ///
    /// fn build(hang: bool) -> Saga<String> {
    ///     SagaBuilder::new()
    ///         .action_retry(Retry::attempts(2))
    ///         .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
    ///         .add_step(
    ///             move || async move {
    ///                 if hang {
    ///                     pending::<()>().await;
    ///                 }
    ///                 Ok::<_, String>(())
    ///             },
    ///             || async { Ok(()) },
    ///         )
    ///         .build()
    /// }
    ///
    /// // The first process: the second step starts, and the process dies.
    /// let mut journal = MemoryJournal::new();
    /// let mut saga = build(true);
    /// let mut run = saga.run_journaled(&mut journal, Start::new("pair", 1, vec![]))?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    /// drop(run);
    ///
    /// // The next process: read the journal, build the saga again, resume.
    /// let history = replay(journal.durable())?;
    /// let mut saga = build(false);
    /// let resumed = saga.resume(&mut journal, &history)?;
    /// smol::block_on(resumed).map_err(|error| error.to_string())?;
    /// let history = replay(journal.durable())?;
    /// assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    /// assert_eq!(history.step(1).action_attempts, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resume<'a>(
        &'a mut self,
        journal: &'a mut S::Journal,
        history: &'a History,
    ) -> Result<JournaledRun<'a, E, S>, Refused>
    where
        E: fmt::Display + From<Crashed>,
    {
        check_resumable(Pin::new(&mut self.steps[..]), &self.plan.groups, history)?;
        Ok(self.journaled(journal, Err(history)))
    }

    /// The journaled run, new (`Ok`) or resumed (`Err`), once the checks
    /// of [`run_journaled`](Saga::run_journaled) or
    /// [`resume`](Saga::resume) passed.
    pub(crate) fn journaled<'a>(
        &'a mut self,
        journal: &'a mut S::Journal,
        begin: Result<Start, &'a History>,
    ) -> JournaledRun<'a, E, S>
    where
        E: fmt::Display + From<Crashed>,
    {
        let fingerprint = self.fingerprint();
        let begin = begin.map(|start| start.into_created(fingerprint));
        let link = Link::new(journal, begin, describe, report, E::from);
        JournaledRun {
            run: self.run().journaled(link),
            done: false,
        }
    }
}
