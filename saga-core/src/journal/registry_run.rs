//! [`Registry::start`] and [`Registry::resume`]: a definition's saga or
//! flow, built and run with its journal in one step, as a [`DurableRun`];
//! and [`Registry::register_flow`].

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::future::Future;
use core::pin::Pin;

use super::registry::Make;
use super::{
    Codec, DurableError, History, Journal, Quarantined, Registry, SagaContext, Start,
    check_resumable, check_saved,
};
use crate::{Crashed, Flow};

/// The future of a durable run that a [`Registry`] started or resumed
/// ([`Registry::start`], [`Registry::resume`]). It owns the saga (or the
/// flow) and its journal, so it can be spawned. A flow's result is
/// dropped: what a caller needs of it is in its journal.
pub type DurableRun<E> = Pin<Box<dyn Future<Output = Result<(), DurableError<E>>> + Send>>;

/// A journal a [`DurableRun`] owns.
pub type OwnedJournal = Box<dyn Journal + Send>;

/// How a flow definition's run begins.
pub(super) enum Begin {
    New(Start),
    Resume(History),
}

pub(super) type FlowFactory<E> = Box<
    dyn Fn(&SagaContext, OwnedJournal, Begin) -> Result<DurableRun<E>, Quarantined> + Send + Sync,
>;

pub(super) type FlowCheck =
    Box<dyn Fn(&[u8], &SagaContext) -> Result<u64, Quarantined> + Send + Sync>;

impl<E: 'static> Registry<E> {
    /// Registers version `version` of definition `name` as a [`Flow`]:
    /// its input is the saga's parameters (so `I` is a [`Codec`]), and
    /// every step that returns a value must be
    /// [`saved`](crate::FlowBuilder::saved). Start and resume it with
    /// [`start`](Registry::start) and [`resume`](Registry::resume) (a
    /// flow is no [`Saga`](crate::Saga), so [`build`](Registry::build)
    /// says [`Quarantined::NotASaga`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::journal::{MemoryJournal, Quarantined, Registry, SagaContext, SagaId, Start};
    /// use saga_core::SagaBuilder;
    ///
    /// let mut registry = Registry::<String>::new();
    /// registry.register_flow("quote", 1, |_context: &SagaContext| {
    ///     SagaBuilder::new()
    ///         .input::<u32>()
    ///         .then(|nights: &u32| { let nights = *nights; async move { Ok::<_, String>(nights * 90) } }, |_| async { Ok(()) })
    ///         .saved()
    ///         .build()
    /// });
    ///
    /// let start = Start::new("quote", 1, registry.encode_parameters(&3_u32));
    /// let context = SagaContext::new(SagaId(1));
    /// let run = registry.start(Box::new(MemoryJournal::new()), start, &context)?;
    /// smol::block_on(run).map_err(|error| error.to_string())?;
    ///
    /// // A flow is no `Saga`.
    /// let built = registry.build("quote", 1, &registry.encode_parameters(&3_u32), &context);
    /// assert!(matches!(built, Err(Quarantined::NotASaga { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_flow<I, O, P, F>(
        &mut self,
        name: impl Into<String>,
        version: u32,
        factory: F,
    ) -> &mut Self
    where
        F: Fn(&SagaContext) -> Flow<E, I, O, P> + Send + Sync + 'static,
        I: Codec + Send + 'static,
        O: 'static,
        P: 'static,
        E: fmt::Display + From<Crashed> + Send,
    {
        let factory = alloc::sync::Arc::new(factory);
        let build = alloc::sync::Arc::clone(&factory);
        let check: FlowCheck = Box::new(move |parameters, context| {
            I::decode(parameters).map_err(Quarantined::Parameters)?;
            let flow = build(context);
            flow.check_saved().map_err(Quarantined::Refused)?;
            Ok(flow.fingerprint())
        });
        let run: FlowFactory<E> = Box::new(move |context, journal, begin| {
            let mut flow = factory(context);
            match begin {
                Begin::New(start) => {
                    let input = I::decode(&start.parameters).map_err(Quarantined::Parameters)?;
                    flow.prepare_new(input)?;
                    Ok(Box::pin(async move {
                        let (mut flow, mut journal) = (flow, journal);
                        flow.journaled(&mut *journal, Ok(start)).await.map(drop)
                    }))
                }
                Begin::Resume(history) => {
                    flow.prepare_resume(&history)?;
                    Ok(Box::pin(async move {
                        let (mut flow, mut journal, history) = (flow, journal, history);
                        flow.journaled(&mut *journal, Err(&history)).await.map(drop)
                    }))
                }
            }
        });
        self.insert(name.into(), version, Make::Flow { run, check })
    }

    /// Builds the saga (or flow) of definition `name`, `version` from its
    /// encoded parameters, to check that it can run with a journal, and
    /// returns its [fingerprint](crate::Saga::fingerprint), without running
    /// anything: what a store that records a saga for another process to
    /// run needs to know first.
    ///
    /// ```
    /// use saga_core::journal::{Quarantined, Refused, Registry, SagaContext, SagaId};
    /// use saga_core::SagaBuilder;
    ///
    /// let mut registry = Registry::<String>::new();
    /// registry.register_flow("double", 1, |_: &SagaContext| {
    ///     SagaBuilder::new()
    ///         .input::<u32>()
    ///         .then(|n: &u32| { let n = *n; async move { Ok::<_, String>(n * 2) } }, |_| async { Ok(()) })
    ///         .build()
    /// });
    /// let context = SagaContext::new(SagaId(1));
    /// let parameters = registry.encode_parameters(&4_u32);
    /// // The step's value is not saved: the flow cannot run with a journal.
    /// assert_eq!(
    ///     registry.check("double", 1, &parameters, &context),
    ///     Err(Quarantined::Refused(Refused::Unsaved { step: 0 }))
    /// );
    /// ```
    pub fn check(
        &self,
        name: &str,
        version: u32,
        parameters: &[u8],
        context: &SagaContext,
    ) -> Result<u64, Quarantined> {
        match &self.definition(name, version)?.make {
            Make::Saga(factory) => {
                let saga = factory(parameters, context).map_err(Quarantined::Parameters)?;
                check_saved(&saga.steps[..]).map_err(Quarantined::Refused)?;
                Ok(saga.fingerprint())
            }
            Make::Flow { check, .. } => check(parameters, context),
        }
    }

    /// Builds the saga (or flow) of `start`'s definition from its
    /// parameters and starts it with `journal`, as
    /// [`Saga::run_journaled`](crate::Saga::run_journaled) (or
    /// [`Flow::run_journaled`]) would. Nothing is written and nothing runs
    /// when the definition is unknown, its parameters do not decode, or a
    /// step keeps a value it cannot save.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::journal::{MemoryJournal, Quarantined, Registry, SagaContext, SagaId, Start};
    /// use saga_core::{Saga, SagaBuilder};
    ///
    /// let mut registry = Registry::<String>::new();
    /// registry.register("ping", 1, |_: &(), _: &SagaContext| -> Saga<String> {
    ///     SagaBuilder::new().add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) }).build()
    /// });
    /// let context = SagaContext::new(SagaId(1));
    /// let run = registry.start(Box::new(MemoryJournal::new()), Start::new("ping", 1, vec![]), &context)?;
    /// assert!(smol::block_on(run).is_ok());
    ///
    /// let unknown = registry.start(Box::new(MemoryJournal::new()), Start::new("pong", 1, vec![]), &context);
    /// assert!(matches!(unknown, Err(Quarantined::UnknownDefinition { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(
        &self,
        journal: OwnedJournal,
        start: Start,
        context: &SagaContext,
    ) -> Result<DurableRun<E>, Quarantined>
    where
        E: fmt::Display + From<Crashed> + Send,
    {
        let definition = self.definition(&start.definition, start.version)?;
        let factory = match &definition.make {
            Make::Saga(factory) => factory,
            Make::Flow { run, .. } => return run(context, journal, Begin::New(start)),
        };
        let saga = factory(&start.parameters, context).map_err(Quarantined::Parameters)?;
        check_saved(&saga.steps[..]).map_err(Quarantined::Refused)?;
        Ok(Box::pin(async move {
            let (mut saga, mut journal) = (saga, journal);
            saga.journaled(&mut *journal, Ok(start)).await
        }))
    }

    /// Builds again the saga (or flow) that `history` tells of and resumes
    /// it with `journal` (the journal `history` was read from), as
    /// [`Saga::resume`](crate::Saga::resume) (or [`Flow::resume`]) would.
    /// Nothing is written and nothing runs when the definition is unknown,
    /// its parameters do not decode, its shape changed, or the saga
    /// finished or cannot be restored ([`Quarantined::Refused`]).
    pub fn resume(
        &self,
        journal: OwnedJournal,
        history: History,
        context: &SagaContext,
    ) -> Result<DurableRun<E>, Quarantined>
    where
        E: fmt::Display + From<Crashed> + Send,
    {
        let definition = self.definition(&history.definition, history.version)?;
        let factory = match &definition.make {
            Make::Saga(factory) => factory,
            Make::Flow { run, .. } => return run(context, journal, Begin::Resume(history)),
        };
        let mut saga = factory(&history.parameters, context).map_err(Quarantined::Parameters)?;
        check_resumable(Pin::new(&mut saga.steps[..]), &saga.plan.groups, &history)?;
        Ok(Box::pin(async move {
            let (mut saga, mut journal, history) = (saga, journal, history);
            saga.journaled(&mut *journal, Err(&history)).await
        }))
    }
}
