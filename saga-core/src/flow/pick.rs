//! [`Pick`]: read an earlier value by its type, for helpers generic over
//! the flow before them.

use crate::Step;
use crate::flow::{Cell, Chain, Group, Members, Plain, Start, Then};

/// "The values of this chain include one `V`", at position `Index` (which
/// the compiler infers: [`Here`] or [`There`]): what a helper generic over
/// the flow before it bounds, to read a value wherever it is. Reads the
/// input and the values of single steps; a group's members are read by
/// destructuring. When the chain holds two values of type `V`, the compiler
/// asks for the index: give the value a type of its own (a newtype).
///
/// # Examples
///
/// A helper that charges the amount some earlier step returned:
///
/// ```
/// use saga_core::marker::{Appends, Pick, SagaKind};
/// use saga_core::{FlowBuilder, SagaBuilder};
///
/// struct Amount(u32);
///
/// fn charge<E: 'static, S: ?Sized + SagaKind<E>, T, C, Index>(
///     flow: FlowBuilder<E, S, T, C>,
/// ) -> FlowBuilder<E, S, T, impl Appends<E, C, String>>
/// where
///     C: Pick<E, Amount, Index> + 'static,
/// {
///     flow.then(
///         |values| { let receipt = format!("paid {}", C::pick(values).0); async move { Ok(receipt) } },
///         |_| async { Ok(()) },
///     )
/// }
///
/// let flow = SagaBuilder::<()>::new()
///     .input::<u32>()
///     .then(|nights: &u32| { let amount = Amount(nights * 100); async move { Ok(amount) } }, |_| async { Ok(()) })
///     .then(|_| async { Ok("room 12") }, |_| async { Ok(()) });
/// let mut flow = charge(flow).build_with(|(_, receipt)| receipt);
/// assert_eq!(smol::block_on(flow.run(2)).unwrap(), "paid 200");
/// ```
pub trait Pick<E, V, Index>: Chain<E> {
    /// The `V` among `values`.
    fn pick<'a>(values: Self::Refs<'a>) -> &'a V
    where
        Self: 'a;
}

/// [`Pick`]'s index: the value is the chain's last.
#[derive(Debug, Clone, Copy)]
pub enum Here {}

/// [`Pick`]'s index: the value is before the chain's last, at `Index`.
#[derive(Debug)]
pub struct There<Index>(core::marker::PhantomData<Index>);

impl<E, I: 'static, S: ?Sized + Step<E>> Pick<E, I, Here> for Start<I, S> {
    fn pick<'a>(values: &'a I) -> &'a I
    where
        Self: 'a,
    {
        values
    }
}

impl<E, P: Chain<E>, X: Cell<E, P>> Pick<E, X::Value, Here> for Then<P, X> {
    fn pick<'a>(values: Self::Refs<'a>) -> &'a X::Value
    where
        Self: 'a,
    {
        values.1
    }
}

impl<E, V, Index, P: Pick<E, V, Index>, X: Cell<E, P>> Pick<E, V, There<Index>> for Then<P, X> {
    fn pick<'a>(values: Self::Refs<'a>) -> &'a V
    where
        Self: 'a,
    {
        P::pick(values.0)
    }
}

impl<E, V, Index, P: Pick<E, V, Index>, X: Step<E>> Pick<E, V, Index> for Plain<P, X> {
    fn pick<'a>(values: Self::Refs<'a>) -> &'a V
    where
        Self: 'a,
    {
        P::pick(values)
    }
}

impl<E, V, Index, P: Pick<E, V, Index>, M: Members<E, P>> Pick<E, V, There<Index>> for Group<P, M> {
    fn pick<'a>(values: Self::Refs<'a>) -> &'a V
    where
        Self: 'a,
    {
        P::pick(values.0)
    }
}
