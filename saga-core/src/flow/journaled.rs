//! [`Flow::run_journaled`] and [`Flow::resume`]: a flow's durable runs, and
//! [`JournaledFlowRun`], their future.

use alloc::string::String;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::flow::{Flow, FlowKind, FlowTable};
use crate::journal::{Codec, DurableError, History, Refused, Start};
use crate::journal::{check_resumable, check_saved, describe, report};
use crate::run::Link;
use crate::{AbortHandle, Aborted, Crashed, Run, Step};

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Flow<E, I, O, P, S> {
    /// Runs the flow with `input` as [`run`](Flow::run) does, writing a
    /// record of each transition to `journal`, as
    /// [`Saga::run_journaled`](crate::Saga::run_journaled) does for a saga
    /// (rule 13 of the [crate docs](crate#the-rules)): the first record
    /// names definition `definition`, version `version`, the flow's
    /// [fingerprint](Flow::fingerprint), and holds the encoded input as the
    /// saga's parameters. Each step's value is recorded with its success,
    /// so every step that returns a value must be
    /// [`saved`](crate::FlowBuilder::saved).
    ///
    /// Resolves to the flow's result, or to a [`DurableError`]: a failed
    /// flow's values are dropped (the journal holds the saved ones).
    ///
    /// Refused (nothing written) when a step keeps a value it cannot save.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::journal::{replay, Codec, MemoryJournal, Outcome, SagaState};
    /// use saga_core::SagaBuilder;
    ///
    /// let mut flow = SagaBuilder::new()
    ///     .input::<u64>()
    ///     .then(|cents: &u64| { let cents = *cents; async move { Ok::<_, String>(format!("charge-{cents}")) } }, |_| async { Ok(()) })
    ///     .saved()
    ///     .build_with(|(_cents, charge)| charge);
    ///
    /// let mut journal = MemoryJournal::new();
    /// let run = flow.run_journaled(&mut journal, "charge", 1, 250)?;
    /// assert_eq!(smol::block_on(run).map_err(|e| e.to_string())?, "charge-250");
    ///
    /// let history = replay(journal.durable())?;
    /// assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    /// // The input is the saga's parameters.
    /// assert_eq!(u64::decode(&history.parameters)?, 250);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_journaled<'a>(
        &'a mut self,
        journal: &'a mut S::Journal,
        definition: impl Into<String>,
        version: u32,
        input: I,
    ) -> Result<JournaledFlowRun<'a, E, I, O, P, S>, Refused>
    where
        E: fmt::Display + From<Crashed>,
        I: Codec,
    {
        let mut parameters = alloc::vec::Vec::new();
        input.encode(&mut parameters);
        self.prepare_new(input)?;
        let start = Start::new(definition, version, parameters);
        Ok(self.journaled(journal, Ok(start)))
    }

    /// Finishes a flow from its journal (`history` is what
    /// [`replay`](crate::journal::replay) read from `journal`), by rule 14
    /// of the [crate docs](crate#the-rules), as
    /// [`Saga::resume`](crate::Saga::resume) does for a saga. The input is
    /// decoded from the journal's parameters, and each step whose action
    /// succeeded gets back its saved value, so the steps after it, and its
    /// compensation, read the value the original action returned.
    ///
    /// Refused, with nothing run or written, as `Saga::resume` is (the flow
    /// finished, its shape changed, a step keeps a value it cannot save,
    /// or a saved value does not decode), and when the journal's parameters
    /// do not decode as an `I` ([`Refused::Parameters`]).
    ///
    /// A [`then`](crate::FlowBuilder::then) step whose action a crash cut
    /// short, with no attempt left, has no value to undo: it is reported
    /// left applied and the flow ends stuck. Give such steps a retry
    /// policy, or make them [`then_option`](crate::FlowBuilder::then_option)
    /// steps, whose compensation runs with `None` and undoes by the step's
    /// idempotency key.
    ///
    /// # Examples
    ///
    /// The process died while the second step ran; the next one resumes
    /// the flow, and the second step reads the first one's value from the
    /// journal, not from a new run of it.
    ///
    /// ```
    /// use std::future::{pending, Future};
    /// use std::pin::Pin;
    /// use std::task::{Context, Waker};
    /// use saga_core::journal::{replay, MemoryJournal};
    /// use saga_core::{Flow, Retry, SagaBuilder};
    ///
    /// fn build(first: &'static str, hang: bool) -> Flow<String, u32, String, ((u32, Option<String>), Option<String>)> {
    ///     SagaBuilder::new()
    ///         .action_retry(Retry::attempts(2))
    ///         .input::<u32>()
    ///         .then(move |n: &u32| { let n = *n; async move { Ok::<_, String>(format!("{first}-{n}")) } }, |_| async { Ok(()) })
    ///         .saved()
    ///         .then(move |(_, reservation): (&u32, &String)| {
    ///             let reservation = reservation.clone();
    ///             async move {
    ///                 if hang { pending::<()>().await; }
    ///                 Ok::<_, String>(format!("paid for {reservation}"))
    ///             }
    ///         }, |_| async { Ok(()) })
    ///         .saved()
    ///         .build_with(|(_, receipt)| receipt)
    /// }
    ///
    /// let mut journal = MemoryJournal::new();
    /// let mut flow = build("first-process", true);
    /// let mut run = flow.run_journaled(&mut journal, "pay", 1, 7)?;
    /// assert!(Pin::new(&mut run).poll(&mut Context::from_waker(Waker::noop())).is_pending());
    /// drop(run);
    ///
    /// let history = replay(journal.durable())?;
    /// let mut flow = build("second-process", false);
    /// let resumed = flow.resume(&mut journal, &history)?;
    /// let receipt = smol::block_on(resumed).map_err(|e| e.to_string())?;
    /// assert_eq!(receipt, "paid for first-process-7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resume<'a>(
        &'a mut self,
        journal: &'a mut S::Journal,
        history: &'a History,
    ) -> Result<JournaledFlowRun<'a, E, I, O, P, S>, Refused>
    where
        E: fmt::Display + From<Crashed>,
        I: Codec,
    {
        self.prepare_resume(history)?;
        Ok(self.journaled(journal, Err(history)))
    }

    /// Whether every step can save its value ([`Refused::Unsaved`] names
    /// the first that cannot).
    pub(crate) fn check_saved(&self) -> Result<(), Refused> {
        check_saved(&*self.table)
    }

    /// What [`run_journaled`](Flow::run_journaled) checks; then sets the
    /// input.
    pub(crate) fn prepare_new(&mut self, input: I) -> Result<(), Refused> {
        self.check_saved()?;
        self.table.as_mut().start(input);
        Ok(())
    }

    /// What [`resume`](Flow::resume) checks, with the input decoded from
    /// the journal's parameters set (restored steps may read it), and the
    /// saved values restored.
    pub(crate) fn prepare_resume(&mut self, history: &History) -> Result<(), Refused>
    where
        I: Codec,
    {
        let input = I::decode(&history.parameters).map_err(Refused::Parameters)?;
        self.table.as_mut().start(input);
        let checked = check_resumable(self.table.as_mut(), &self.plan.groups, history);
        if checked.is_err() {
            drop(self.table.as_mut().values());
        }
        checked
    }

    /// The journaled run of the input already set, new (`Ok`) or resumed
    /// (`Err`), once the checks of [`run_journaled`](Flow::run_journaled)
    /// or [`resume`](Flow::resume) passed.
    pub(crate) fn journaled<'a>(
        &'a mut self,
        journal: &'a mut S::Journal,
        begin: Result<Start, &'a History>,
    ) -> JournaledFlowRun<'a, E, I, O, P, S>
    where
        E: fmt::Display + From<Crashed>,
    {
        let fingerprint = self.fingerprint();
        let begin = begin.map(|start| start.into_created(fingerprint));
        let link = Link::new(journal, begin, describe, report, E::from);
        JournaledFlowRun {
            run: self.engine().journaled(link),
            done: false,
        }
    }

    /// The fingerprint of the flow's shape, as
    /// [`Saga::fingerprint`](crate::Saga::fingerprint): what a journal must
    /// still match for the flow to resume from it.
    pub fn fingerprint(&self) -> u64 {
        crate::journal::fingerprint(&*self.table, &self.plan.groups)
    }

    /// Which steps keep a value that cannot be saved to a journal (flow
    /// steps not marked [`saved`](crate::FlowBuilder::saved), typed steps
    /// without a codec): a durable flow must have none.
    pub fn unsaved_outputs(&self) -> impl Iterator<Item = usize> + '_ {
        crate::journal::unsaved(&*self.table)
    }
}

/// The future of a flow's journaled run, returned by
/// [`Flow::run_journaled`] and [`Flow::resume`]: a [`Run`] that writes a
/// record of each transition to its journal, and resolves to the flow's
/// result.
///
/// # Cancel safety
///
/// As [`JournaledRun`](crate::journal::JournaledRun)'s: dropping it stops
/// the flow without compensating, and [`Flow::resume`] finishes it.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct JournaledFlowRun<
    'a,
    E,
    I,
    O,
    P,
    S: ?Sized + FlowKind<E, I, O, P> = dyn Step<E> + Send + 'static,
> {
    run: Run<'a, E, S, S::Table>,
    done: bool,
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> JournaledFlowRun<'_, E, I, O, P, S> {
    /// Attaches an [`AbortHandle`], as [`Run::abortable`] does.
    pub fn abortable(mut self, handle: &AbortHandle) -> Self
    where
        E: From<Aborted>,
    {
        self.run.attach_abort(handle);
        self
    }
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Unpin for JournaledFlowRun<'_, E, I, O, P, S> {}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Future for JournaledFlowRun<'_, E, I, O, P, S> {
    type Output = Result<O, DurableError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.done,
            "saga `JournaledFlowRun` polled after it completed"
        );
        let result = match Pin::new(&mut this.run).poll(cx) {
            Poll::Ready(result) => result.map_err(DurableError::Saga),
            Poll::Pending => match this.run.journal_error() {
                Some(error) => Err(DurableError::Journal(error)),
                None => return Poll::Pending,
            },
        };
        this.done = true;
        let table = this.run.steps_mut();
        Poll::Ready(match result {
            Ok(()) => Ok(table.finish()),
            Err(error) => {
                drop(table.values());
                Err(error)
            }
        })
    }
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Drop for JournaledFlowRun<'_, E, I, O, P, S> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped mid-run: its input and values go with it.
            drop(self.run.steps_mut().values());
        }
    }
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> fmt::Debug
    for JournaledFlowRun<'_, E, I, O, P, S>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournaledFlowRun")
            .field("run", &self.run)
            .finish()
    }
}
