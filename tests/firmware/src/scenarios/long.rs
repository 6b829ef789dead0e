//! A 100-step saga whose last action fails: every action ran in order, then
//! every step is compensated in exact reverse order, the failed one first.
//! Run twice (a built saga can run again), with self-waking futures.

use alloc::string::String;
use alloc::vec::Vec;

use saga_core::{Saga, SagaBuilder, StopReason};

use crate::support::{Error, Event, action, check, check_eq, dos, drive, log, undo, undos};

const STEPS: u16 = 100;

pub fn run() -> Result<(), String> {
    let log = log();
    let mut saga: Saga<Error> = (0..STEPS)
        .fold(SagaBuilder::new(), |builder, index| {
            let fails = (index == STEPS - 1).then_some("the last step failed");
            builder.add_step(
                action(&log, index, u32::from(index % 3), fails),
                undo(&log, index, u32::from(index % 2)),
            )
        })
        .build();
    check_eq!(saga.len(), usize::from(STEPS), "saga length");

    let mut expected: Vec<Event> = dos(0..STEPS);
    expected.extend(undos((0..STEPS).rev()));
    for round in 0..2 {
        let error = drive("long saga", saga.run())?
            .err()
            .ok_or("the long saga succeeded")?;
        let events = log.take_effects();
        if events != expected {
            let first = events.iter().zip(&expected).position(|(a, b)| a != b);
            return Err(alloc::format!(
                "round {round}: {} events, expected {}; first difference at {:?}",
                events.len(),
                expected.len(),
                first.map(|at| (at, events[at], expected[at]))
            ));
        }
        check_eq!(error.failed_step(), usize::from(STEPS - 1), "failed step");
        check_eq!(error.reason(), StopReason::Failed, "reason");
        check_eq!(error.attempts(), 1, "attempts");
        check_eq!(error.compensated_count(), usize::from(STEPS), "compensated");
        check!(
            error.is_fully_compensated(),
            "not fully compensated: {}",
            error
        );
        check_eq!(error.uncompensated_count(), 0, "uncompensated");
        check_eq!(
            alloc::format!("{error}"),
            "step 99 failed: the last step failed; fully compensated (100 steps)",
            "Display"
        );
    }
    Ok(())
}
