//! Aborts: from inside a step, from another task while an action waits (cut
//! short, or let finish), with a handle that aborted before the run, and one
//! handle stopping two runs. Every time, what was applied is compensated in
//! reverse.

use alloc::string::String;

use saga_core::{AbortHandle, InFlight, Saga, SagaBuilder, StopReason};

use crate::exec::{Never, TickSleep, Yield, join, now};
use crate::support::{
    Error, Event, Heard, Log, Recorder, action, check, check_eq, dos, drive, log, undo, undos,
};

/// Step 0, then step 1 that never finishes, then step 2.
fn stuck_saga(log: &Log, on_abort: InFlight) -> Saga<Error> {
    let stuck = log.clone();
    SagaBuilder::new()
        .add_step(action(log, 0, 1, None), undo(log, 0, 0))
        .add_step(
            move || {
                let log = stuck.clone();
                async move {
                    log.push(Event::Start(1));
                    Never.await;
                    log.push(Event::Do(1));
                    Ok(())
                }
            },
            undo(log, 1, 0),
        )
        .add_step(action(log, 2, 0, None), undo(log, 2, 0))
        .on_abort(on_abort)
        .build()
}

pub fn run() -> Result<(), String> {
    let log = log();

    // An abort arrives while step 1 runs (step 1 triggers it): step 2 never
    // starts, steps 1 and 0 are compensated.
    let handle = AbortHandle::new();
    let trigger = handle.clone();
    let recorder = Recorder::new();
    let trigger_log = log.clone();
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, 1, None), undo(&log, 0, 0))
        .add_step(
            move || {
                trigger.abort();
                let log = trigger_log.clone();
                async move {
                    Yield(2).await;
                    log.push(Event::Do(1));
                    Ok(())
                }
            },
            undo(&log, 1, 0),
        )
        .add_step(action(&log, 2, 0, None), undo(&log, 2, 0))
        .observer(recorder.clone())
        .build();
    let error = drive("abort from a step", saga.run().abortable(&handle))?
        .err()
        .ok_or("the aborted saga succeeded")?;
    check!(error.aborted(), "not aborted: {}", error);
    check_eq!(error.reason(), StopReason::Aborted, "reason");
    check_eq!(*error.error(), Error::Aborted, "error");
    check_eq!(error.failed_step(), 2, "failed step");
    check_eq!(error.attempts(), 0, "attempts");
    check_eq!(error.compensated_count(), 2, "compensated");
    let mut expected = dos(0..2);
    expected.extend(undos([1, 0]));
    check_eq!(log.take_effects(), expected, "events");
    let heard = recorder.take();
    check_eq!(
        heard
            .iter()
            .filter(|h| matches!(h, Heard::Aborted(_)))
            .count(),
        1,
        "aborted notifications"
    );
    check_eq!(
        alloc::format!("{error}"),
        "stopped before step 2: aborted; fully compensated (2 steps)",
        "Display"
    );

    // From another task, 5 ticks in, while step 1 waits forever: cut short,
    // and compensated (it may have happened), then step 0.
    let mut saga = stuck_saga(&log, InFlight::CutShort);
    let handle = AbortHandle::new();
    let started = now();
    let (result, ()) = drive(
        "abort from another task",
        join(saga.run().abortable(&handle), async {
            TickSleep::new(5).await;
            handle.abort();
        }),
    )?;
    let error = result.err().ok_or("the aborted saga succeeded")?;
    check_eq!(now() - started, 5, "ticks until the abort");
    check_eq!(error.reason(), StopReason::Aborted, "reason");
    check_eq!(error.failed_step(), 1, "failed step");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    let mut expected = dos([0]);
    expected.extend(undos([1, 0]));
    check_eq!(log.take_effects(), expected, "events");

    // The default lets the action in flight finish, then stops.
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, 0, None), undo(&log, 0, 0))
        .add_step(action(&log, 1, 10, None), undo(&log, 1, 0))
        .add_step(action(&log, 2, 0, None), undo(&log, 2, 0))
        .build();
    let handle = AbortHandle::new();
    let (result, ()) = drive(
        "abort, in flight finishes",
        join(saga.run().abortable(&handle), async {
            Yield(3).await;
            handle.abort();
        }),
    )?;
    let error = result.err().ok_or("the aborted saga succeeded")?;
    check_eq!(error.failed_step(), 2, "failed step");
    check_eq!(error.attempts(), 0, "attempts");
    check_eq!(error.compensated_count(), 2, "compensated");
    let mut expected = dos(0..2);
    expected.extend(undos([1, 0]));
    check_eq!(log.take_effects(), expected, "events");

    // A handle that aborted before the run: nothing starts.
    let mut saga = stuck_saga(&log, InFlight::CutShort);
    let handle = AbortHandle::new();
    handle.abort();
    let error = drive("aborted before", saga.run().abortable(&handle))?
        .err()
        .ok_or("the aborted saga succeeded")?;
    check_eq!(error.failed_step(), 0, "failed step");
    check_eq!(error.compensated_count(), 0, "compensated");
    check!(log.take().is_empty(), "a step ran");
    check_eq!(
        alloc::format!("{error}"),
        "stopped before step 0: aborted; nothing needed compensation",
        "Display"
    );

    // One handle, two runs waiting forever: both stopped and compensated,
    // and neither stays attached.
    let (mut a, mut b) = (
        stuck_saga(&log, InFlight::CutShort),
        stuck_saga(&log, InFlight::CutShort),
    );
    let handle = AbortHandle::with_capacity(2);
    let ((a, b), ()) = drive(
        "one handle, two runs",
        join(
            join(a.run().abortable(&handle), b.run().abortable(&handle)),
            async {
                TickSleep::new(3).await;
                handle.abort();
            },
        ),
    )?;
    for (name, result) in [("a", a), ("b", b)] {
        let error = result.err().ok_or("an aborted saga succeeded")?;
        check!(
            error.aborted() && error.is_fully_compensated(),
            "run {name}: {}",
            error
        );
    }
    check_eq!(handle.attached_runs(), 0, "runs still attached");
    let events = log.take_effects();
    check_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Undo(_)))
            .count(),
        4,
        "compensations of the two runs"
    );
    Ok(())
}
