//! [`Claim`]: a worker's hold on one saga, under a lease and an epoch.

use std::sync::Arc;

use saga_core::journal::{SagaContext, SagaId, SagaState};

/// A worker's hold on one saga: the saga's id, the worker that holds it
/// (its *owner* name), and the *epoch* of the hold, which every claim of
/// the saga raises by one.
///
/// A claim comes from [`PgStore::create`](crate::PgStore::create) (a new
/// saga, epoch 1) or [`PgStore::claim`](crate::PgStore::claim) (an
/// unfinished saga whose lease had expired or was released, or one
/// [submitted](crate::PgStore::submit) for any worker). It holds the saga while its
/// lease lasts, as the database's clock judges it:
/// [`renew`](crate::PgStore::renew) it before it expires, and
/// [`release`](crate::PgStore::release) it to hand the saga back. Once the
/// lease is lost, every flush of the claim's
/// [journal](crate::PgStore::journal) fails as
/// [`Fenced`](saga_core::journal::JournalErrorKind::Fenced).
///
/// The epoch is a fencing token: pass it (with
/// [`context`](Claim::context), as [`SagaContext::epoch`]) to the systems
/// the saga's steps call, so that they can refuse a call from a worker
/// whose hold is older than the last one they saw.
///
/// # Examples
///
/// ```
/// use saga_core::journal::SagaContext;
/// use saga_postgres::Claim;
///
/// // What a definition's factory receives for a claimed saga.
/// fn context(claim: &Claim) -> SagaContext {
///     claim.context()
/// }
/// # let _ = context;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub(crate) id: SagaId,
    pub(crate) owner: Arc<str>,
    pub(crate) epoch: u64,
    pub(crate) next_seq: u64,
    pub(crate) state: SagaState,
    pub(crate) recoveries: u64,
}

impl Claim {
    /// The saga.
    pub fn id(&self) -> SagaId {
        self.id
    }

    /// The worker that holds the saga.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The epoch of this hold: one more than the hold before it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The number of the saga's next record when it was claimed (0 for a
    /// saga with no record yet).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where the saga was when it was claimed.
    pub fn state(&self) -> SagaState {
        self.state
    }

    /// How many times the saga was taken over: claims after its first
    /// hold, including the claim that returned this one (the first claim
    /// of a [submitted](crate::PgStore::submit) saga is its first hold).
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// The context to build the saga with: its id, and this claim's epoch
    /// as the fencing token ([`SagaContext::epoch`]).
    pub fn context(&self) -> SagaContext {
        SagaContext::new(self.id).with_epoch(self.epoch)
    }
}
