//! [`Registry`]: saga definitions by name and version, each a factory from
//! (parameters, context) to a saga, so that a saga found in a journal can
//! be built again.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use core::fmt;

use super::codec::{Codec, DecodeError};
use super::replay::{History, ReplayError};
use super::{Refused, Start};
use crate::marker::SagaKind;
use crate::{Saga, Step};

/// A saga's identity, unique in its store: 128 bits, shown as 32 hex
/// digits.
///
/// ```
/// use saga_core::journal::SagaId;
///
/// assert_eq!(SagaId(0xabc).to_string(), "00000000000000000000000000000abc");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SagaId(pub u128);

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What a definition's factory knows of the saga it builds: its id, and
/// (across workers) the epoch of the lease it is driven under, a fencing
/// token for the systems its steps call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SagaContext {
    id: SagaId,
    epoch: u64,
}

impl SagaContext {
    /// The context of saga `id`, at epoch 0.
    pub fn new(id: SagaId) -> Self {
        SagaContext { id, epoch: 0 }
    }

    /// The same context at `epoch`.
    pub fn with_epoch(self, epoch: u64) -> Self {
        SagaContext { epoch, ..self }
    }

    /// The saga's id.
    pub fn id(&self) -> SagaId {
        self.id
    }

    /// The epoch the saga is driven under (0 without leases).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// An idempotency key for `step`: the same in every run of this saga,
    /// including runs after a crash, and different for every other saga and
    /// step. Pass it to the systems a step calls, so that a repeated call is
    /// recognised.
    ///
    /// ```
    /// use saga_core::journal::{SagaContext, SagaId};
    ///
    /// let context = SagaContext::new(SagaId(7));
    /// assert_eq!(context.key(2), "00000000000000000000000000000007-2");
    /// ```
    pub fn key(&self, step: usize) -> String {
        format!("{}-{step}", self.id)
    }
}

type Factory<E, S> =
    Box<dyn Fn(&[u8], &SagaContext) -> Result<Saga<E, S>, DecodeError> + Send + Sync>;

/// What a definition builds.
pub(super) enum Make<E, S: ?Sized + SagaKind<E>> {
    /// A saga, from its parameters.
    Saga(Factory<E, S>),
    /// A flow, run at once with its journal ([`Registry::register_flow`]).
    Flow {
        /// Builds the flow and runs it with its journal.
        run: super::registry_run::FlowFactory<E>,
        /// Builds the flow to check it: its fingerprint.
        check: super::registry_run::FlowCheck,
    },
}

/// One registered definition: a name, a version and its factory.
pub struct Definition<E, S: ?Sized + SagaKind<E>> {
    pub(super) make: Make<E, S>,
}

impl<E, S: ?Sized + SagaKind<E>> fmt::Debug for Definition<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Definition").finish_non_exhaustive()
    }
}

/// Saga definitions by name and version.
///
/// A definition is a factory from its parameters (a [`Codec`] type) and a
/// [`SagaContext`] to a saga. A store builds each saga it starts or resumes
/// through the registry, so the saga a journal names is built again after a
/// restart, from the parameters in its journal. Changing what a definition
/// builds means registering a new version: a journal whose saga's shape
/// changed is [quarantined](Quarantined), never run.
///
/// # Examples
///
/// ```
/// use saga_core::journal::{Registry, SagaContext, SagaId};
/// use saga_core::{Saga, SagaBuilder};
///
/// fn transfer(amount: &u64, _context: &SagaContext) -> Saga<String> {
///     let amount = *amount;
///     SagaBuilder::new()
///         .add_step(move || async move { Ok::<_, String>(amount) }, || async { Ok(()) })
///         .build()
/// }
///
/// let mut registry = Registry::new();
/// registry.register("transfer", 1, transfer);
///
/// let context = SagaContext::new(SagaId(1));
/// let parameters = registry.encode_parameters(&250_u64);
/// let saga = registry.build("transfer", 1, &parameters, &context).unwrap();
/// assert_eq!(saga.len(), 1);
/// assert!(registry.build("refund", 1, &parameters, &context).is_err());
/// ```
pub struct Registry<E, S: ?Sized + SagaKind<E> = dyn Step<E> + Send + 'static> {
    definitions: BTreeMap<(String, u32), Definition<E, S>>,
}

impl<E, S: ?Sized + SagaKind<E>> Default for Registry<E, S> {
    fn default() -> Self {
        Registry {
            definitions: BTreeMap::new(),
        }
    }
}

impl<E, S: ?Sized + SagaKind<E>> fmt::Debug for Registry<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.definitions.keys()).finish()
    }
}

impl<E, S: ?Sized + SagaKind<E>> Registry<E, S> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers version `version` of definition `name`, replacing one
    /// registered before under both.
    pub fn register<P, F>(&mut self, name: impl Into<String>, version: u32, factory: F) -> &mut Self
    where
        P: Codec,
        F: Fn(&P, &SagaContext) -> Saga<E, S> + Send + Sync + 'static,
    {
        let factory: Factory<E, S> = Box::new(move |bytes, context| {
            let parameters = P::decode(bytes)?;
            Ok(factory(&parameters, context))
        });
        self.insert(name.into(), version, Make::Saga(factory))
    }

    pub(super) fn insert(&mut self, name: String, version: u32, make: Make<E, S>) -> &mut Self {
        self.definitions
            .insert((name, version), Definition { make });
        self
    }

    /// The definition registered under `name` and `version`.
    pub(super) fn definition(
        &self,
        name: &str,
        version: u32,
    ) -> Result<&Definition<E, S>, Quarantined> {
        self.definitions
            .get(&(String::from(name), version))
            .ok_or_else(|| Quarantined::UnknownDefinition {
                name: String::from(name),
                version,
            })
    }

    /// The highest version registered under `name`.
    pub fn latest(&self, name: &str) -> Option<u32> {
        self.definitions
            .keys()
            .filter(|(registered, _)| registered == name)
            .map(|&(_, version)| version)
            .max()
    }

    /// The [`Start`] of a saga of `name`'s latest version with
    /// `parameters`, encoded: what [`start`](Registry::start) and
    /// [`check`](Registry::check) take. An unknown name is
    /// [`Quarantined::UnknownDefinition`] with version 0.
    ///
    /// ```
    /// use saga_core::journal::{Quarantined, Registry};
    /// use saga_core::SagaBuilder;
    ///
    /// let mut registry = Registry::<String>::new();
    /// registry.register("order", 1, |_: &u32, _| SagaBuilder::new().build());
    /// registry.register("order", 2, |_: &u32, _| SagaBuilder::new().build());
    /// let start = registry.start_latest("order", &7u32).unwrap();
    /// assert_eq!((start.definition.as_str(), start.version), ("order", 2));
    /// assert!(matches!(
    ///     registry.start_latest("refund", &7u32),
    ///     Err(Quarantined::UnknownDefinition { version: 0, .. }),
    /// ));
    /// ```
    pub fn start_latest<P: Codec>(&self, name: &str, parameters: &P) -> Result<Start, Quarantined> {
        let version = self
            .latest(name)
            .ok_or_else(|| Quarantined::UnknownDefinition {
                name: String::from(name),
                version: 0,
            })?;
        Ok(Start::new(
            name,
            version,
            self.encode_parameters(parameters),
        ))
    }

    /// Encodes a definition's parameters, as [`build`](Registry::build)
    /// reads them.
    pub fn encode_parameters<P: Codec>(&self, parameters: &P) -> alloc::vec::Vec<u8> {
        let mut bytes = alloc::vec::Vec::new();
        parameters.encode(&mut bytes);
        bytes
    }

    /// Builds the saga of definition `name`, `version`, from its encoded
    /// parameters. A flow's definition ([`register_flow`](Registry::register_flow))
    /// builds no [`Saga`]: it is [`Quarantined::NotASaga`] here, and runs
    /// through [`start`](Registry::start) and [`resume`](Registry::resume).
    pub fn build(
        &self,
        name: &str,
        version: u32,
        parameters: &[u8],
        context: &SagaContext,
    ) -> Result<Saga<E, S>, Quarantined> {
        match &self.definition(name, version)?.make {
            Make::Saga(factory) => factory(parameters, context).map_err(Quarantined::Parameters),
            Make::Flow { .. } => Err(Quarantined::NotASaga {
                name: String::from(name),
                version,
            }),
        }
    }

    /// Builds again the saga that `history` tells of, and checks that its
    /// shape is the one that was journaled.
    pub fn rebuild(
        &self,
        history: &History,
        context: &SagaContext,
    ) -> Result<Saga<E, S>, Quarantined> {
        let saga = self.build(
            &history.definition,
            history.version,
            &history.parameters,
            context,
        )?;
        let current = saga.fingerprint();
        if current != history.fingerprint {
            return Err(Quarantined::FingerprintChanged {
                recorded: history.fingerprint,
                current,
            });
        }
        Ok(saga)
    }
}

/// Why a journaled saga is set aside, not run: its records, its
/// definition or its parameters do not let it be resumed. A store keeps
/// the reason for an operator; nothing of the saga runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quarantined {
    /// No definition is registered under this name and version.
    UnknownDefinition {
        /// The name in the journal.
        name: String,
        /// The version in the journal.
        version: u32,
    },
    /// The parameters in the journal do not decode.
    Parameters(DecodeError),
    /// The definition now builds a saga of another shape (steps, names,
    /// groups) than the one journaled: register the old shape under the old
    /// version to finish it.
    FingerprintChanged {
        /// The fingerprint in the journal.
        recorded: u64,
        /// The fingerprint of the saga the definition builds now.
        current: u64,
    },
    /// The records are corrupt: a gap, or an illegal transition.
    Corrupt(ReplayError),
    /// The saga cannot run with its journal (see [`Refused`]).
    Refused(Refused),
    /// The definition builds a [`Flow`](crate::Flow), not a [`Saga`]
    /// ([`Registry::build`] and [`Registry::rebuild`] build sagas only).
    NotASaga {
        /// The definition's name.
        name: String,
        /// Its version.
        version: u32,
    },
}

impl fmt::Display for Quarantined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quarantined::UnknownDefinition { name, version } => {
                write!(
                    f,
                    "no saga definition `{name}` version {version} is registered"
                )
            }
            Quarantined::Parameters(error) => write!(f, "the parameters do not decode: {error}"),
            Quarantined::FingerprintChanged { recorded, current } => write!(
                f,
                "the definition's shape changed (fingerprint {current:016x}, journaled {recorded:016x})"
            ),
            Quarantined::Corrupt(error) => write!(f, "the journal is corrupt: {error}"),
            Quarantined::Refused(refused) => write!(f, "refused: {refused}"),
            Quarantined::NotASaga { name, version } => write!(
                f,
                "the definition `{name}` version {version} is a flow: start and resume it through the registry"
            ),
        }
    }
}

impl core::error::Error for Quarantined {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Quarantined::Parameters(error) => Some(error),
            Quarantined::Corrupt(error) => Some(error),
            Quarantined::Refused(refused) => Some(refused),
            _ => None,
        }
    }
}

impl From<Refused> for Quarantined {
    /// A refusal that says the shape changed or the parameters do not
    /// decode is that quarantine; any other is [`Quarantined::Refused`].
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::FingerprintChanged { journal, saga } => Quarantined::FingerprintChanged {
                recorded: journal,
                current: saga,
            },
            Refused::Parameters(error) => Quarantined::Parameters(error),
            other => Quarantined::Refused(other),
        }
    }
}

impl From<ReplayError> for Quarantined {
    fn from(error: ReplayError) -> Self {
        Quarantined::Corrupt(error)
    }
}
