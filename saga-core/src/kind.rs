//! [`SagaKind`]: a `Send` saga or a local one, and what each stores its
//! steps and callbacks as.

use crate::journal::Journal;
use crate::sleep::Timers;
use crate::{Observer, Recovery, Step};

/// The two kinds of saga: the `S` parameter of [`SagaBuilder`],
/// [`Saga`] and [`Run`], implemented by exactly two types.
///
/// | `S` | built by | what its steps, observer, classifier and sleeper must be |
/// | --- | --- | --- |
/// | `dyn Step<E> + Send + 'static` (the default) | [`SagaBuilder::new`] | `Send` (the observer and the classifier also `Sync`), and `'static` |
/// | `dyn Step<E> + 'static` | [`SagaBuilder::new_local`] | `'static` only |
///
/// So a [`Saga`] and its run future are `Send` (when `E` is) and can be
/// spawned on a multi-threaded runtime, while a [`LocalSaga`] takes `Rc`s and
/// `RefCell`s and runs on a single-threaded executor. You name this trait
/// only in code generic over both kinds. Sealed.
///
/// [`SagaBuilder`]: crate::SagaBuilder
/// [`SagaBuilder::new`]: crate::SagaBuilder::new
/// [`SagaBuilder::new_local`]: crate::SagaBuilder::new_local
/// [`Saga`]: crate::Saga
/// [`LocalSaga`]: crate::LocalSaga
/// [`Run`]: crate::Run
///
/// # Examples
///
/// A helper that works on both kinds of saga:
///
/// ```
/// use saga_core::marker::SagaKind;
/// use saga_core::{LocalSaga, Saga, SagaBuilder};
///
/// fn run_twice<E, S: ?Sized + SagaKind<E>>(saga: &mut Saga<E, S>) -> bool {
///     smol::block_on(saga.run()).is_ok() && smol::block_on(saga.run()).is_ok()
/// }
///
/// let mut shared: Saga<()> = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .build();
/// let mut local: LocalSaga<()> = SagaBuilder::new_local()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .build();
/// assert!(run_twice(&mut shared));
/// assert!(run_twice(&mut local));
/// ```
///
/// A `Saga` refuses callbacks that are not `Send`, here a classifier and a
/// sleeper holding an `Rc`:
///
/// ```compile_fail,E0277
/// use std::rc::Rc;
/// use saga_core::{Recovery, SagaBuilder};
///
/// let shared = Rc::new(());
/// let builder = SagaBuilder::<()>::new()
///     .classify(move |_: &()| { let _ = &shared; Recovery::Compensate });
/// ```
///
/// ```compile_fail,E0277
/// use std::rc::Rc;
/// use std::time::Duration;
/// use saga_core::{SagaBuilder, TimedOut};
///
/// struct Error;
/// impl From<TimedOut> for Error { fn from(_: TimedOut) -> Self { Error } }
///
/// let shared = Rc::new(());
/// let builder = SagaBuilder::<Error>::new()
///     .sleeper(move |duration: Duration| { let _ = &shared; smol::Timer::after(duration) });
/// ```
///
/// The same callbacks are fine on a local builder:
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use saga_core::{Recovery, SagaBuilder, TimedOut};
///
/// struct Error;
/// impl From<TimedOut> for Error { fn from(_: TimedOut) -> Self { Error } }
///
/// let (classifier, sleeper) = (Rc::new(()), Rc::new(()));
/// let saga = SagaBuilder::<Error, _>::new_local()
///     .classify(move |_: &Error| { let _ = &classifier; Recovery::Compensate })
///     .sleeper(move |duration: Duration| { let _ = &sleeper; smol::Timer::after(duration) })
///     .build();
/// # drop(saga);
/// ```
pub trait SagaKind<E>: Step<E> + sealed::Sealed {
    /// The observer, as the saga stores it.
    #[doc(hidden)]
    type Observer: ?Sized + Observer<E>;

    /// The classifier, as the saga stores it.
    #[doc(hidden)]
    type Classifier: ?Sized + Fn(&E) -> Recovery;

    /// The sleeper and its sleeps in flight, as the saga stores them.
    #[doc(hidden)]
    type Timers: ?Sized + Timers;

    /// The journal a durable run writes to, as the run borrows it.
    #[doc(hidden)]
    type Journal: ?Sized + Journal;
}

// For any lifetime, not only `'static`: the compiler checks that a future
// holding a run is `Send` with its lifetimes erased.
impl<E> SagaKind<E> for dyn Step<E> + Send + '_ {
    type Observer = dyn Observer<E> + Send + Sync;
    type Classifier = dyn Fn(&E) -> Recovery + Send + Sync;
    type Timers = dyn Timers + Send;
    type Journal = dyn Journal + Send;
}

impl<E> SagaKind<E> for dyn Step<E> + '_ {
    type Observer = dyn Observer<E>;
    type Classifier = dyn Fn(&E) -> Recovery;
    type Timers = dyn Timers;
    type Journal = dyn Journal;
}

mod sealed {
    use crate::Step;

    pub trait Sealed {}
    impl<E> Sealed for dyn Step<E> + Send + '_ {}
    impl<E> Sealed for dyn Step<E> + '_ {}
}
