//! Typed steps: an action's value reaches its compensation by value, by
//! reference, or as an `Option`; a typed step whose own action failed is
//! not compensated (it has no value), unless it takes an `Option`.

use alloc::string::String;
use alloc::vec::Vec;

use saga_core::{Saga, SagaBuilder, TypedStep};

use crate::exec::Yield;
use crate::support::{Error, Shared, check, check_eq, drive};

/// A booking: not `Copy`, so handing it over by value moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Booking {
    id: u32,
    code: String,
}

/// What the compensations received, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Booking(Booking),
    Reference(String),
    Some(u32),
    None,
    Undo(u32),
}

type Received = Shared<Vec<Got>>;

fn typed_saga(received: &Received, option_action_fails: bool) -> Saga<Error> {
    let (r0, r1, r2, r3, r4) = (
        received.clone(),
        received.clone(),
        received.clone(),
        received.clone(),
        received.clone(),
    );
    SagaBuilder::new()
        // 0: by value.
        .add_typed_step(
            || async {
                Yield(2).await;
                Ok(Booking {
                    id: 7,
                    code: String::from("AF-1"),
                })
            },
            move |booking: Booking| {
                let received = r0.clone();
                async move {
                    received.with(|all| all.push(Got::Booking(booking)));
                    Ok(())
                }
            },
        )
        // 1: by reference (the future clones what it needs).
        .add_typed_step_ref(
            || async {
                Yield(1).await;
                Ok(String::from("reservation-1"))
            },
            move |reservation: &String| {
                let (received, reservation) = (r1.clone(), reservation.clone());
                async move {
                    received.with(|all| all.push(Got::Reference(reservation)));
                    Ok(())
                }
            },
        )
        // 2: by option: compensated even when its own action failed.
        .step(TypedStep::by_option(
            move || async move {
                Yield(1).await;
                if option_action_fails {
                    Err(Error::Step("option step failed"))
                } else {
                    Ok(42u32)
                }
            },
            move |value: Option<u32>| {
                let received = r2.clone();
                async move {
                    received.with(|all| all.push(value.map_or(Got::None, Got::Some)));
                    Ok(())
                }
            },
        ))
        // 3: a typed step whose action fails: never compensated.
        .add_typed_step(
            || async {
                Yield(3).await;
                Err::<u32, _>(Error::Step("payment declined"))
            },
            move |value: u32| {
                let received = r3.clone();
                async move {
                    received.with(|all| all.push(Got::Undo(value)));
                    Ok(())
                }
            },
        )
        // 4: never runs.
        .add_typed_step(
            || async { Ok(5u32) },
            move |value: u32| {
                let received = r4.clone();
                async move {
                    received.with(|all| all.push(Got::Undo(value)));
                    Ok(())
                }
            },
        )
        .build()
}

pub fn run() -> Result<(), String> {
    let received: Received = Shared::new(Vec::new());
    let mut saga = typed_saga(&received, false);
    for round in 0..2 {
        let error = drive("typed saga", saga.run())?
            .err()
            .ok_or("the typed saga succeeded")?;
        check_eq!(error.failed_step(), 3, "failed step");
        check_eq!(*error.error(), Error::Step("payment declined"), "error");
        // Steps 2, 1, 0; the failed typed step 3 has nothing to undo.
        check_eq!(error.compensated_count(), 3, "compensated");
        check!(
            error.is_fully_compensated(),
            "not fully compensated: {}",
            error
        );
        check_eq!(
            received.with(core::mem::take),
            [
                Got::Some(42),
                Got::Reference(String::from("reservation-1")),
                Got::Booking(Booking {
                    id: 7,
                    code: String::from("AF-1")
                }),
            ],
            alloc::format!("round {round}: what the compensations received")
        );
    }

    // The by-option step fails: its compensation receives `None`, first.
    let mut saga = typed_saga(&received, true);
    let error = drive("typed saga, option fails", saga.run())?
        .err()
        .ok_or("the typed saga succeeded")?;
    check_eq!(error.failed_step(), 2, "failed step");
    check_eq!(error.compensated_count(), 3, "compensated");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(
        received.with(core::mem::take),
        [
            Got::None,
            Got::Reference(String::from("reservation-1")),
            Got::Booking(Booking {
                id: 7,
                code: String::from("AF-1")
            }),
        ],
        "what the compensations received"
    );
    Ok(())
}
