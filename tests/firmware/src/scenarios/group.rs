//! Parallel groups, with members that return `Pending` several times before
//! they are ready (hand-written futures that wake themselves), and one that
//! waits for a signal another member sets (so it is polled again only
//! through its own waker). Every member runs, concurrently; on a failure the
//! others finish (or are cut short) and every member that ran is
//! compensated, then the steps before the group.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use saga_core::{CompensationMode, InFlight, ParallelGroup, Saga, SagaBuilder};

use crate::exec::{Never, Signal, Yield};
use crate::support::{
    Error, Event, Heard, Log, Recorder, action, check, check_eq, drive, log, undo,
};

fn position(events: &[Event], event: Event) -> Result<usize, String> {
    events
        .iter()
        .position(|e| *e == event)
        .ok_or_else(|| alloc::format!("{event:?} missing from {events:?}"))
}

/// Whether `events` holds `Undo(i)` exactly once for each of `indices`.
fn undone_once(events: &[Event], indices: &[u16]) -> bool {
    indices
        .iter()
        .all(|&i| events.iter().filter(|&&e| e == Event::Undo(i)).count() == 1)
}

/// A member that fails or succeeds after `yields` `Pending`s; members 1..=3.
fn failing_group(log: &Log, fails: [bool; 3], on_failure: InFlight) -> Saga<Error> {
    let fail = |member: usize| fails[member - 1].then_some("member failed");
    SagaBuilder::new()
        .add_step(action(log, 0, 1, None), undo(log, 0, 0))
        .parallel_with(ParallelGroup::new().on_failure(on_failure), |group| {
            group
                .add_step(action(log, 1, 2, fail(1)), undo(log, 1, 1))
                .add_step(action(log, 2, 4, fail(2)), undo(log, 2, 1))
                .add_step(action(log, 3, 6, fail(3)), undo(log, 3, 1))
        })
        .add_step(action(log, 4, 0, None), undo(log, 4, 0))
        .build()
}

pub fn run() -> Result<(), String> {
    // Success: members 1, 2 and 3 in flight together; 2 waits for 3's signal.
    let log = log();
    let signal = Arc::new(Signal::default());
    let (waiter, setter) = (signal.clone(), signal.clone());
    let (log2, log3) = (log.clone(), log.clone());
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, 1, None), undo(&log, 0, 0))
        .parallel(|group| {
            group
                .add_step(action(&log, 1, 3, None), undo(&log, 1, 0))
                .add_step(
                    move || {
                        let (log, signal) = (log2.clone(), waiter.clone());
                        async move {
                            log.push(Event::Start(2));
                            signal.wait().await;
                            Yield(1).await;
                            log.push(Event::Do(2));
                            Ok(())
                        }
                    },
                    undo(&log, 2, 0),
                )
                .add_step(
                    move || {
                        let (log, signal) = (log3.clone(), setter.clone());
                        async move {
                            log.push(Event::Start(3));
                            Yield(5).await;
                            signal.set();
                            log.push(Event::Do(3));
                            Ok(())
                        }
                    },
                    undo(&log, 3, 0),
                )
        })
        .add_step(action(&log, 4, 0, None), undo(&log, 4, 0))
        .build();
    check_eq!(
        saga.parallel_groups()
            .map(|range| (range.start, range.end))
            .collect::<Vec<_>>(),
        [(1, 4)],
        "parallel groups"
    );
    let result = drive("group success", saga.run())?;
    check!(result.is_ok(), "the group saga failed: {:?}", result);
    let events = log.take();
    let first_done = [1, 2, 3]
        .iter()
        .map(|&i| position(&events, Event::Do(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let first_done = first_done.iter().min().copied().unwrap_or(0);
    for member in 1..=3 {
        check!(
            position(&events, Event::Start(member))? < first_done,
            "member {member} started after another finished: {events:?}"
        );
    }
    check!(
        position(&events, Event::Do(0))? < position(&events, Event::Start(1))?,
        "a member started before step 0 finished: {events:?}"
    );
    check!(
        position(&events, Event::Do(3))? < position(&events, Event::Do(2))?,
        "member 2 finished before member 3 set its signal: {events:?}"
    );
    check_eq!(
        events[events.len() - 2..],
        [Event::Start(4), Event::Do(4)],
        "the step after the group"
    );

    // Member 2 fails; 1 and 3 finish; all three are compensated, then 0.
    let mut saga = failing_group(&log, [false, true, false], InFlight::Finish);
    let error = drive("group failure", saga.run())?
        .err()
        .ok_or("the failing group succeeded")?;
    let events = log.take_effects();
    check_eq!(error.failed_step(), 2, "failed step");
    check_eq!(error.compensated_count(), 4, "compensated");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check!(
        error.concurrent_failures().is_empty(),
        "concurrent failures"
    );
    check!(
        events.contains(&Event::Do(3)),
        "member 3 did not finish: {events:?}"
    );
    check!(!events.contains(&Event::Do(4)), "step 4 ran: {events:?}");
    check!(
        undone_once(&events, &[0, 1, 2, 3]),
        "compensations: {events:?}"
    );
    check_eq!(events.last(), Some(&Event::Undo(0)), "last compensation");
    let first_undo = position(&events, Event::Undo(1))?
        .min(position(&events, Event::Undo(2))?)
        .min(position(&events, Event::Undo(3))?);
    check!(
        events[..first_undo]
            .iter()
            .all(|e| matches!(e, Event::Do(_))),
        "a compensation ran before the group settled: {events:?}"
    );

    // Members 1 and 3 fail: the first is the error, the other a concurrent
    // failure.
    let mut saga = failing_group(&log, [true, false, true], InFlight::Finish);
    let error = drive("two failures", saga.run())?
        .err()
        .ok_or("the failing group succeeded")?;
    log.take();
    check_eq!(error.failed_step(), 1, "failed step");
    check_eq!(
        error
            .concurrent_failures()
            .iter()
            .map(|failure| failure.step())
            .collect::<Vec<_>>(),
        [3],
        "concurrent failures"
    );
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );

    // Cut short: member 1 never finishes; member 2's failure cuts it short,
    // and it is compensated (a pysagas-style step that may have happened).
    let recorder = Recorder::new();
    let log1 = log.clone();
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, 0, None), undo(&log, 0, 0))
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .add_step(
                        move || {
                            let log = log1.clone();
                            async move {
                                log.push(Event::Start(1));
                                Never.await;
                                log.push(Event::Do(1));
                                Ok(())
                            }
                        },
                        undo(&log, 1, 0),
                    )
                    .add_step(action(&log, 2, 2, Some("hotel full")), undo(&log, 2, 0))
            },
        )
        .observer(recorder.clone())
        .build();
    let error = drive("cut short", saga.run())?
        .err()
        .ok_or("the cut-short group succeeded")?;
    let events = log.take_effects();
    check_eq!(error.failed_step(), 2, "failed step");
    check_eq!(error.compensated_count(), 3, "compensated");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check!(
        !events.contains(&Event::Do(1)),
        "member 1 finished: {events:?}"
    );
    check!(
        undone_once(&events, &[0, 1, 2]),
        "compensations: {events:?}"
    );
    check!(
        recorder.take().contains(&Heard::ActionCutShort(1, 1)),
        "the observer did not hear member 1 cut short"
    );

    // A limit of one: members run one after another, in order.
    let mut saga = SagaBuilder::new()
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group
                .add_step(action(&log, 1, 2, None), undo(&log, 1, 0))
                .add_step(action(&log, 2, 2, None), undo(&log, 2, 0))
                .add_step(action(&log, 3, 2, None), undo(&log, 3, 0))
        })
        .build();
    check!(
        drive("limit", saga.run())?.is_ok(),
        "the limited group failed"
    );
    check_eq!(
        log.take(),
        [
            Event::Start(1),
            Event::Do(1),
            Event::Start(2),
            Event::Do(2),
            Event::Start(3),
            Event::Do(3)
        ],
        "a group of limit 1"
    );

    // Concurrent compensation of the group's members, then step 0.
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, 0, None), undo(&log, 0, 2))
        .parallel(|group| {
            group
                .add_step(action(&log, 1, 1, None), undo(&log, 1, 3))
                .add_step(action(&log, 2, 2, Some("full")), undo(&log, 2, 1))
                .add_step(action(&log, 3, 3, None), undo(&log, 3, 2))
        })
        .compensation_mode(CompensationMode::ConcurrentGroups)
        .build();
    let error = drive("concurrent groups", saga.run())?
        .err()
        .ok_or("the failing group succeeded")?;
    let events = log.take_effects();
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check!(
        undone_once(&events, &[0, 1, 2, 3]),
        "compensations: {events:?}"
    );
    check_eq!(events.last(), Some(&Event::Undo(0)), "last compensation");
    Ok(())
}
