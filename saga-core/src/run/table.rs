//! [`StepTable`]: the steps a run drives, by index. A saga's list of boxed
//! steps is one; a flow's chain of typed steps (which read each other's
//! values) is another.

use alloc::boxed::Box;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::Step;

/// The steps a [`Run`](crate::Run) drives, addressed by index: the `B`
/// parameter of a run. Implemented by a saga's list of boxed steps and by a
/// flow's chain of steps; you never implement or call it. Sealed.
///
/// Each method is [`Step`]'s, for the step at `index` (always below
/// [`step_count`](StepTable::step_count)).
pub trait StepTable<E>: sealed::Sealed {
    /// How many steps there are.
    #[doc(hidden)]
    fn step_count(&self) -> usize;
    /// [`Step::poll_action`] of step `index`.
    #[doc(hidden)]
    fn poll_action(self: Pin<&mut Self>, index: usize, cx: &mut Context<'_>)
    -> Poll<Result<(), E>>;
    /// [`Step::poll_compensate`] of step `index`.
    #[doc(hidden)]
    fn poll_compensate(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>>;
    /// [`Step::reset`] of step `index`.
    #[doc(hidden)]
    fn reset(self: Pin<&mut Self>, index: usize);
    /// [`Step::cancel`] of step `index`.
    #[doc(hidden)]
    fn cancel(self: Pin<&mut Self>, index: usize);
    /// [`Step::compensates_failed_action`] of step `index`.
    #[doc(hidden)]
    fn compensates_failed_action(&self, index: usize) -> bool;
    /// [`Step::retries_compensation`] of step `index`.
    #[doc(hidden)]
    fn retries_compensation(&self, index: usize) -> bool;
    /// [`Step::name`] of step `index`.
    #[doc(hidden)]
    fn step_name(&self, index: usize) -> Option<&str>;
    /// [`Step::output`] of step `index`.
    #[doc(hidden)]
    fn output(&self, index: usize) -> crate::StepOutput;
    /// [`Step::save_output`] of step `index`.
    #[doc(hidden)]
    fn save_output(&self, index: usize, out: &mut alloc::vec::Vec<u8>);
    /// [`Step::restore`] of step `index`.
    #[doc(hidden)]
    fn restore(
        self: Pin<&mut Self>,
        index: usize,
        restored: crate::Restored<'_>,
    ) -> Result<(), crate::journal::DecodeError>;
}

pub(crate) mod sealed {
    /// Implemented by the step lists of sagas and by flow tables.
    pub trait Sealed {}
}

impl<S: ?Sized> sealed::Sealed for [Pin<Box<S>>] {}

impl<E, S: ?Sized + Step<E>> StepTable<E> for [Pin<Box<S>>] {
    #[inline]
    fn step_count(&self) -> usize {
        self.len()
    }

    #[inline]
    fn poll_action(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        self.get_mut()[index].as_mut().poll_action(cx)
    }

    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        self.get_mut()[index].as_mut().poll_compensate(cx)
    }

    #[inline]
    fn reset(self: Pin<&mut Self>, index: usize) {
        self.get_mut()[index].as_mut().reset();
    }

    #[inline]
    fn cancel(self: Pin<&mut Self>, index: usize) {
        self.get_mut()[index].as_mut().cancel();
    }

    #[inline]
    fn compensates_failed_action(&self, index: usize) -> bool {
        self[index].compensates_failed_action()
    }

    #[inline]
    fn retries_compensation(&self, index: usize) -> bool {
        self[index].retries_compensation()
    }

    #[inline]
    fn step_name(&self, index: usize) -> Option<&str> {
        self[index].name()
    }

    fn output(&self, index: usize) -> crate::StepOutput {
        self[index].output()
    }

    fn save_output(&self, index: usize, out: &mut alloc::vec::Vec<u8>) {
        self[index].save_output(out);
    }

    fn restore(
        self: Pin<&mut Self>,
        index: usize,
        restored: crate::Restored<'_>,
    ) -> Result<(), crate::journal::DecodeError> {
        self.get_mut()[index].as_mut().restore(restored)
    }
}
