//! Compensation failures and the compensation modes: stop at the first
//! failed compensation (the default), or continue and collect every error;
//! a compensation retried until it succeeds; an error propagated without
//! compensating.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use saga_core::{CompensationMode, Handling, Recovery, Retry, Saga, SagaBuilder};

use crate::support::{Error, Event, Log, action, check, check_eq, drive, log, undo};

/// Steps 0, 1, 2; step 2's action fails; step 1's compensation fails.
fn failing_undo(log: &Log, mode: CompensationMode) -> Saga<Error> {
    SagaBuilder::new()
        .add_step(action(log, 0, 0, None), undo(log, 0, 1))
        .add_step(action(log, 1, 0, None), || async {
            Err(Error::Step("refund service down"))
        })
        .add_step(action(log, 2, 1, Some("out of stock")), undo(log, 2, 1))
        .compensation_mode(mode)
        .build()
}

pub fn run() -> Result<(), String> {
    let log = log();

    let mut saga = failing_undo(&log, CompensationMode::StopOnError);
    let error = drive("stop on error", saga.run())?
        .err()
        .ok_or("the saga succeeded")?;
    check_eq!(error.compensated_count(), 1, "compensated");
    check_eq!(
        error.uncompensated_steps().collect::<Vec<_>>(),
        [0, 1],
        "uncompensated"
    );
    check_eq!(error.compensation_errors().len(), 1, "compensation errors");
    check_eq!(
        error.compensation_errors()[0].step(),
        1,
        "failed compensation"
    );
    check_eq!(
        alloc::format!("{error}"),
        "step 2 failed: out of stock; compensation of step 1 failed: refund service down; \
         2 steps left uncompensated",
        "Display"
    );
    check!(
        !log.take_effects().contains(&Event::Undo(0)),
        "step 0 was undone"
    );

    let mut saga = failing_undo(&log, CompensationMode::ContinueOnError);
    let error = drive("continue on error", saga.run())?
        .err()
        .ok_or("the saga succeeded")?;
    check_eq!(error.compensated_count(), 2, "compensated");
    check_eq!(
        error.uncompensated_steps().collect::<Vec<_>>(),
        [1],
        "uncompensated"
    );
    check_eq!(
        alloc::format!("{error}"),
        "step 2 failed: out of stock; compensation of step 1 failed: refund service down; \
         1 step left uncompensated",
        "Display"
    );
    let events = log.take_effects();
    check_eq!(
        events[events.len() - 2..],
        [Event::Undo(2), Event::Undo(0)],
        "compensations"
    );

    // A compensation that fails twice, retried three times.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let mut saga = SagaBuilder::new()
        .compensation_retry(Retry::attempts(3))
        .add_step(action(&log, 0, 0, None), move || {
            let call = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                if call < 2 {
                    Err(Error::Step("refund service down"))
                } else {
                    Ok(())
                }
            }
        })
        .add_step(action(&log, 1, 0, Some("out of stock")), undo(&log, 1, 0))
        .build();
    let error = drive("compensation retry", saga.run())?
        .err()
        .ok_or("the saga succeeded")?;
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(calls.load(Ordering::Relaxed), 3, "compensation attempts");
    log.take();

    // Propagated without compensating: the report says what is left applied.
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, 0, None), undo(&log, 0, 0))
        .add_step(action(&log, 1, 0, Some("disk")), undo(&log, 1, 0))
        .classify(|_: &Error| Recovery::Propagate)
        .build();
    let error = drive("propagate", saga.run())?
        .err()
        .ok_or("the saga succeeded")?;
    check_eq!(error.handling(), Handling::Propagated, "handling");
    check_eq!(
        error.uncompensated_steps().collect::<Vec<_>>(),
        [0, 1],
        "left applied"
    );
    check_eq!(log.take_effects(), [Event::Do(0), Event::Do(1)], "events");
    Ok(())
}
