//! A `Flow` built once and run per request: each step reads the input and
//! the values before it; a run returns a result; a failed run returns the
//! report and the values it produced, compensations reading them; a
//! successful run allocates nothing.

use alloc::string::String;
use alloc::vec::Vec;

use saga_core::SagaBuilder;

use crate::exec::Yield;
use crate::heap::HEAP;
use crate::support::{Error, Shared, check, check_eq, drive};

/// A trip: nights, and whether the payment is declined.
#[derive(Debug, Clone, Copy)]
struct Trip {
    nights: u32,
    declined: bool,
}

/// A flight booking: its number and arrival day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flight {
    number: u32,
    arrives: u32,
}

pub fn run() -> Result<(), String> {
    // What the compensations cancelled, with the values they read.
    let cancelled: Shared<Vec<(&'static str, u32)>> = Shared::new(Vec::new());
    let (cancel_flight, cancel_hotel) = (cancelled.clone(), cancelled.clone());
    let mut book = SagaBuilder::new()
        .input::<Trip>()
        .then(
            |_: &Trip| async {
                Yield(1).await;
                Ok::<_, Error>(Flight {
                    number: 101,
                    arrives: 12,
                })
            },
            move |(_, flight): (&Trip, &Flight)| {
                let (cancelled, number) = (cancel_flight.clone(), flight.number);
                async move {
                    cancelled.with(|all| all.push(("flight", number)));
                    Ok(())
                }
            },
        )
        .then(
            // The hotel reads the trip and the flight: a room from the
            // arrival day, for the trip's nights.
            |(trip, flight): (&Trip, &Flight)| {
                let (from, to) = (flight.arrives, flight.arrives + trip.nights);
                async move {
                    Yield(2).await;
                    Ok::<_, Error>(from * 100 + to)
                }
            },
            move |(_, room): ((&Trip, &Flight), &u32)| {
                let (cancelled, room) = (cancel_hotel.clone(), *room);
                async move {
                    cancelled.with(|all| all.push(("hotel", room)));
                    Ok(())
                }
            },
        )
        .then(
            |((trip, _), _): ((&Trip, &Flight), &u32)| {
                let declined = trip.declined;
                async move {
                    if declined {
                        Err(Error::Step("card declined"))
                    } else {
                        Ok(())
                    }
                }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(((_, flight), room), ())| (flight.number, room));

    // Runs with their own inputs; a successful one allocates nothing.
    for nights in [3, 5] {
        let before = HEAP.stats();
        let itinerary = drive(
            "flow",
            book.run(Trip {
                nights,
                declined: false,
            }),
        )?;
        let after = HEAP.stats();
        let itinerary = itinerary.map_err(|error| alloc::format!("the flow failed: {error}"))?;
        check_eq!(itinerary, (101, 1200 + 12 + nights), "itinerary");
        check_eq!(
            after.allocations,
            before.allocations,
            "allocations in a flow run"
        );
    }

    // A declined card: the hotel and the flight are cancelled, in reverse,
    // with their values, which the error also holds.
    let error = match drive(
        "declined flow",
        book.run(Trip {
            nights: 2,
            declined: true,
        }),
    )? {
        Ok(itinerary) => return Err(alloc::format!("the declined flow succeeded: {itinerary:?}")),
        Err(error) => error,
    };
    check_eq!(error.report().failed_step(), 2, "failed step");
    check!(
        error.report().is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(
        cancelled.with(core::mem::take),
        [("hotel", 1214), ("flight", 101)],
        "cancellations"
    );
    let (((_, flight), room), payment) = error.values();
    check_eq!(
        (*flight, *room, *payment),
        (
            Some(Flight {
                number: 101,
                arrives: 12
            }),
            Some(1214),
            None
        ),
        "the failed run's values"
    );
    Ok(())
}
