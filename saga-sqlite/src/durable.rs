//! [`Durable`]: sagas started by definition name into a [`Store`], and every
//! unfinished one recovered from it at start-up.

use std::fmt;
use std::future::Future;

use futures_util::future::join_all;
use saga_core::Crashed;
use saga_core::journal::{
    Codec, DurableError, Quarantined, Refused, Registry, SagaContext, SagaId, replay,
};

use crate::{Store, StoreError};

/// A [`Store`] and the [`Registry`] of the sagas it runs: start a saga by
/// its definition's name and parameters ([`start`](Durable::start)), and at
/// start-up finish every saga a crashed process left
/// ([`recover`](Durable::recover)).
///
/// Actions and compensations run *at least once* (an attempt that ran and
/// whose outcome was not yet committed runs again after a crash, or is
/// compensated): make them idempotent, keyed by
/// [`SagaContext::key`], the saga id and the step.
///
/// # Examples
///
/// ```
/// use saga_core::journal::{Registry, SagaContext};
/// use saga_core::{Saga, SagaBuilder};
/// use saga_sqlite::{Durable, Store};
///
/// fn transfer(amount: &u64, context: &SagaContext) -> Saga<String> {
///     let (amount, key) = (*amount, context.key(0));
///     SagaBuilder::new()
///         .add_step(
///             move || { let key = key.clone(); async move { let _ = (amount, key); Ok::<_, String>(()) } },
///             || async { Ok(()) },
///         )
///         .build()
/// }
///
/// let dir = tempfile::tempdir()?;
/// let mut registry = Registry::new();
/// registry.register("transfer", 1, transfer);
/// let durable = Durable::new(Store::open(dir.path().join("sagas.db"))?, registry);
///
/// // At start-up: nothing to recover in a new file.
/// assert!(smol::block_on(durable.recover())?.is_empty());
///
/// let (id, run) = durable.start("transfer", &250_u64)?;
/// smol::block_on(run).map_err(|error| error.to_string())?;
/// assert!(durable.store().unfinished()?.is_empty());
/// # let _ = id;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Durable<E: 'static> {
    store: Store,
    registry: Registry<E>,
}

impl<E: 'static> fmt::Debug for Durable<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Durable")
            .field("store", &self.store)
            .field("registry", &self.registry)
            .finish()
    }
}

/// Why a saga was not started or resumed. Nothing of it ran.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotRun {
    /// The store failed.
    Store(StoreError),
    /// The definition is unknown, its parameters do not decode, its shape
    /// changed, or the journal is corrupt: the saga stays in the store,
    /// unfinished, for an operator (register the definition and recover
    /// again, or [abandon](Store::abandon) it).
    Quarantined(Quarantined),
    /// The saga cannot run with a journal (see [`Refused`]).
    Refused(Refused),
}

impl fmt::Display for NotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRun::Store(error) => write!(f, "not run: {error}"),
            NotRun::Quarantined(why) => write!(f, "quarantined: {why}"),
            NotRun::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl std::error::Error for NotRun {}

impl From<Quarantined> for NotRun {
    /// A refusal stays one; any other quarantine is
    /// [`NotRun::Quarantined`].
    fn from(why: Quarantined) -> Self {
        match why {
            Quarantined::Refused(refused) => NotRun::Refused(refused),
            other => NotRun::Quarantined(other),
        }
    }
}

impl From<StoreError> for NotRun {
    fn from(error: StoreError) -> Self {
        NotRun::Store(error)
    }
}

/// What [`Durable::recover`] did with one unfinished saga.
#[derive(Debug)]
#[non_exhaustive]
pub enum Recovered<E> {
    /// It was resumed and ran to its end (`Ok`: committed), or until its
    /// journal failed.
    Ran(Result<(), DurableError<E>>),
    /// It was not resumed.
    NotRun(NotRun),
}

impl<E> Durable<E>
where
    E: fmt::Display + From<Crashed> + Send + 'static,
{
    /// Sagas of `registry`'s definitions, journaled in `store`.
    pub fn new(store: Store, registry: Registry<E>) -> Self {
        Durable { store, registry }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The registry.
    pub fn registry(&self) -> &Registry<E> {
        &self.registry
    }

    /// Starts a saga of `definition`'s latest version with `parameters`:
    /// its id, and the future of its run (its first record is written as
    /// the future is first polled). Poll it to the end on any executor.
    ///
    /// # Errors
    ///
    /// Nothing is written and nothing runs when the definition is unknown
    /// ([`NotRun::Quarantined`] with
    /// [`Quarantined::UnknownDefinition`]), its parameters do not decode
    /// (`Quarantined::Parameters`), a step keeps a value it cannot save
    /// ([`NotRun::Refused`] with
    /// [`Refused::Unsaved`](saga_core::journal::Refused::Unsaved)), or the
    /// store fails ([`NotRun::Store`]).
    pub fn start<P: Codec>(
        &self,
        definition: &str,
        parameters: &P,
    ) -> Result<
        (
            SagaId,
            impl Future<Output = Result<(), DurableError<E>>> + Send + use<E, P>,
        ),
        NotRun,
    > {
        let start = (self.registry).start_latest(definition, parameters)?;
        let id = self.store.new_id();
        let context = SagaContext::new(id);
        let journal = Box::new(self.store.journal(id)?);
        let run = (self.registry)
            .start(journal, start, &context)
            .map_err(NotRun::from)?;
        Ok((id, run))
    }

    /// Resumes every saga the store holds unfinished, all at once, and
    /// drives each to its end (by rule 14 of `saga_core`'s crate docs: what
    /// the crashed run would have done, forward or backward). Call it at
    /// start-up, before starting new sagas. A saga that cannot be resumed
    /// is left in the store, unfinished, and its entry in the returned list
    /// is [`Recovered::NotRun`] with the reason: [`NotRun::Store`] when its
    /// records cannot be read (a damaged record: the error
    /// [`Store::records`] gives), [`NotRun::Quarantined`] for an unknown
    /// definition, parameters that do not decode or a changed shape, and
    /// [`NotRun::Refused`] for any other refusal.
    pub async fn recover(&self) -> Result<Vec<(SagaId, Recovered<E>)>, StoreError> {
        let mut runs = Vec::new();
        let mut results = Vec::new();
        for id in self.store.unfinished()? {
            match self.prepare_resume(id) {
                Ok(resume) => runs.push((id, resume)),
                Err(why) => results.push((id, Recovered::NotRun(why))),
            }
        }
        let ids: Vec<SagaId> = runs.iter().map(|(id, _)| *id).collect();
        let ran = join_all(runs.into_iter().map(|(_, run)| run)).await;
        results.extend(ids.into_iter().zip(ran));
        Ok(results)
    }

    fn prepare_resume(
        &self,
        id: SagaId,
    ) -> Result<impl Future<Output = Recovered<E>> + use<E>, NotRun> {
        let records = self.store.records(id)?;
        let history =
            replay(&records).map_err(|error| NotRun::Quarantined(Quarantined::Corrupt(error)))?;
        let context = SagaContext::new(id);
        let journal = Box::new(self.store.journal(id)?);
        let run = (self.registry)
            .resume(journal, history, &context)
            .map_err(NotRun::from)?;
        Ok(async move { Recovered::Ran(run.await) })
    }
}
