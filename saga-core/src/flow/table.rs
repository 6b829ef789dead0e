//! [`FlowTable`]: a built flow's chain and its result map, behind one box;
//! [`FlowKind`]: what that box is for a `Send` flow and for a local one.

use alloc::boxed::Box;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::Step;
use crate::flow::Chain;
use crate::marker::{SagaKind, StepTable};
use crate::run::TableSealed;

/// A built flow's steps, its values, and the map to its result: the chain
/// behind one box, its type erased to the input `I`, the result `O` and the
/// failed run's values `P`. Sealed.
pub trait FlowTable<E, I, O, P>: StepTable<E> {
    /// Sets the input of a new run.
    #[doc(hidden)]
    fn start(self: Pin<&mut Self>, input: I);
    /// Takes the values of a successful run and maps them to its result.
    #[doc(hidden)]
    fn finish(self: Pin<&mut Self>) -> O;
    /// Takes the values of a failed (or dropped) run.
    #[doc(hidden)]
    fn values(self: Pin<&mut Self>) -> P;
}

pin_project! {
    /// A built flow's chain `C` and the map `M` from its values to the
    /// result: what a flow's box holds.
    pub struct Mapped<C, M> {
        #[pin]
        pub(crate) chain: C,
        pub(crate) map: M,
    }
}

impl<C, M> TableSealed for Mapped<C, M> {}

/// A step's index in the chain: counted from the end of [`Start`]'s plain
/// steps (theirs wrap), so that each node's own index is a constant and a
/// lookup compiles to a jump.
///
/// [`Start`]: crate::marker::Start
#[inline]
fn relative<E, C: Chain<E>>(chain: &C, index: usize) -> usize {
    index.wrapping_sub(chain.prefix())
}

impl<E, C: Chain<E>, M> StepTable<E> for Mapped<C, M> {
    #[inline]
    fn step_count(&self) -> usize {
        self.chain.step_count()
    }
    #[inline]
    fn poll_action(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let index = relative(&self.chain, index);
        self.project().chain.poll_action(index, cx)
    }
    #[inline]
    fn poll_compensate(
        self: Pin<&mut Self>,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        let index = relative(&self.chain, index);
        self.project().chain.poll_compensate(index, cx)
    }
    fn reset(self: Pin<&mut Self>, index: usize) {
        let index = relative(&self.chain, index);
        self.project().chain.reset(index);
    }
    fn cancel(self: Pin<&mut Self>, index: usize) {
        let index = relative(&self.chain, index);
        self.project().chain.cancel(index);
    }
    fn compensates_failed_action(&self, index: usize) -> bool {
        self.chain
            .compensates_failed_action(relative(&self.chain, index))
    }
    fn retries_compensation(&self, index: usize) -> bool {
        self.chain
            .retries_compensation(relative(&self.chain, index))
    }
    fn step_name(&self, index: usize) -> Option<&str> {
        self.chain.step_name(relative(&self.chain, index))
    }
    fn output(&self, index: usize) -> crate::StepOutput {
        self.chain.output(relative(&self.chain, index))
    }
    fn save_output(&self, index: usize, out: &mut alloc::vec::Vec<u8>) {
        self.chain.save_output(relative(&self.chain, index), out);
    }
    fn restore(
        self: Pin<&mut Self>,
        index: usize,
        restored: crate::Restored<'_>,
    ) -> Result<(), crate::journal::DecodeError> {
        let index = relative(&self.chain, index);
        self.project().chain.restore(index, restored)
    }
}

impl<E, C, M, O> FlowTable<E, C::Input, O, C::Partial> for Mapped<C, M>
where
    C: Chain<E>,
    M: FnMut(C::Values) -> O,
{
    fn start(self: Pin<&mut Self>, input: C::Input) {
        self.project().chain.start(input);
    }
    fn finish(self: Pin<&mut Self>) -> O {
        let this = self.project();
        let values = this.chain.take_values();
        (this.map)(values.expect(crate::flow::chain::MISSING))
    }
    fn values(self: Pin<&mut Self>) -> C::Partial {
        self.project().chain.take_partial()
    }
}

/// What a flow of kind `Self` (a [`SagaKind`]) stores its table as:
/// `dyn FlowTable + Send` for a [`Flow`](crate::Flow), `dyn FlowTable` for a
/// [`LocalFlow`](crate::LocalFlow). Sealed.
pub trait FlowKind<E, I, O, P>: SagaKind<E> {
    /// The boxed table.
    #[doc(hidden)]
    type Table: ?Sized + FlowTable<E, I, O, P>;
}

// For any lifetime, not only `'static`, as `SagaKind`: the compiler checks
// that a future holding a run is `Send` with its lifetimes erased.
impl<'a, E, I, O, P> FlowKind<E, I, O, P> for dyn Step<E> + Send + 'a {
    type Table = dyn FlowTable<E, I, O, P> + Send + 'a;
}

impl<'a, E, I, O, P> FlowKind<E, I, O, P> for dyn Step<E> + 'a {
    type Table = dyn FlowTable<E, I, O, P> + 'a;
}

/// "This kind of flow can store this table": its steps (and their values)
/// are `Send` and `'static` for a [`Flow`](crate::Flow), `'static` for a
/// [`LocalFlow`](crate::LocalFlow). Sealed.
#[diagnostic::on_unimplemented(
    message = "this flow's steps cannot be stored in a `{Self}`",
    label = "a step, a value or the result map is not `Send` (or not `'static`)",
    note = "a `Flow` is `Send`, so its steps and values must be `Send + 'static`; start a `LocalFlow` from `SagaBuilder::new_local()` for steps that are not"
)]
pub trait TableSlot<X>: TableSealed {
    /// Boxes and pins `table` as this slot type.
    #[doc(hidden)]
    fn pin_box(table: X) -> Pin<Box<Self>>;
}

impl<'a, E, I, O, P, X> TableSlot<X> for dyn FlowTable<E, I, O, P> + Send + 'a
where
    X: FlowTable<E, I, O, P> + Send + 'a,
{
    fn pin_box(table: X) -> Pin<Box<Self>> {
        Box::pin(table)
    }
}

impl<'a, E, I, O, P, X> TableSlot<X> for dyn FlowTable<E, I, O, P> + 'a
where
    X: FlowTable<E, I, O, P> + 'a,
{
    fn pin_box(table: X) -> Pin<Box<Self>> {
        Box::pin(table)
    }
}
