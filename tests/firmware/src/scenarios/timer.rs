//! saga-core's `Sleeper` over the board's tick clock (1 tick = 1 ms,
//! advanced by `block_on` when the run is idle): retry backoffs (constant
//! and exponential), an action timeout, a timed-out attempt retried, the
//! saga's deadline, and a timeout that never fires. The clock moves by
//! exactly the time the saga waited.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use alloc::sync::Arc;
use saga_core::{Retry, SagaBuilder, StepPolicy, StopReason};

use crate::exec::{Never, TickSleep, TickSleeper, now, timers_in_use};
use crate::support::{Error, Event, Heard, Recorder, action, check, check_eq, drive, log, undo};

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// An action that fails its first `failures` calls, then succeeds.
fn flaky(
    calls: &Arc<AtomicU32>,
    failures: u32,
) -> impl FnMut() -> core::future::Ready<Result<(), Error>> + Send + use<> {
    let calls = calls.clone();
    move || {
        let call = calls.fetch_add(1, Ordering::Relaxed);
        core::future::ready(if call < failures {
            Err(Error::Step("busy"))
        } else {
            Ok(())
        })
    }
}

fn retried_delays(heard: &[Heard]) -> Vec<Duration> {
    heard
        .iter()
        .filter_map(|h| match h {
            Heard::ActionRetried(_, _, delay) => Some(*delay),
            _ => None,
        })
        .collect()
}

pub fn run() -> Result<(), String> {
    let log = log();

    // A constant backoff: two failures, 5 ms before each retry.
    let calls = Arc::new(AtomicU32::new(0));
    let recorder = Recorder::new();
    let mut saga = SagaBuilder::new()
        .sleeper(TickSleeper)
        .add_step_with(
            flaky(&calls, 2),
            undo(&log, 0, 0),
            StepPolicy::new().retry(Retry::attempts(3).constant(ms(5))),
        )
        .observer(recorder.clone())
        .build();
    let started = now();
    let result = drive("constant backoff", saga.run())?;
    check!(result.is_ok(), "constant backoff: {:?}", result);
    check_eq!(calls.load(Ordering::Relaxed), 3, "attempts");
    check_eq!(now() - started, 10, "ticks waited");
    check_eq!(retried_delays(&recorder.take()), [ms(5), ms(5)], "delays");
    check_eq!(timers_in_use(), 0, "timers left registered");

    // An exponential backoff, every attempt failing: 2, 4, 8 ms.
    let calls = Arc::new(AtomicU32::new(0));
    let mut saga = SagaBuilder::new()
        .sleeper(TickSleeper)
        .action_retry(Retry::attempts(4).exponential(ms(2), ms(100)))
        .add_step(flaky(&calls, u32::MAX), undo(&log, 0, 0))
        .observer(recorder.clone())
        .build();
    let started = now();
    let error = drive("exponential backoff", saga.run())?
        .err()
        .ok_or("the failing saga succeeded")?;
    check_eq!(error.attempts(), 4, "attempts");
    check_eq!(*error.error(), Error::Step("busy"), "error");
    check_eq!(now() - started, 14, "ticks waited");
    check_eq!(
        retried_delays(&recorder.take()),
        [ms(2), ms(4), ms(8)],
        "delays"
    );
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    log.take();

    // An action timeout: step 1 never finishes, and is cut short at 10 ms.
    let stuck = log.clone();
    let mut saga = SagaBuilder::new()
        .sleeper(TickSleeper)
        .add_step(action(&log, 0, 1, None), undo(&log, 0, 0))
        .add_step_with(
            move || {
                let log = stuck.clone();
                async move {
                    log.push(Event::Start(1));
                    Never.await;
                    Ok(())
                }
            },
            undo(&log, 1, 0),
            StepPolicy::new().timeout(ms(10)),
        )
        .build();
    let started = now();
    let error = drive("action timeout", saga.run())?
        .err()
        .ok_or("the stuck saga succeeded")?;
    check_eq!(now() - started, 10, "ticks until the timeout");
    check_eq!(error.reason(), StopReason::TimedOut, "reason");
    check!(error.timed_out(), "timed_out() is false");
    check_eq!(*error.error(), Error::TimedOut, "error");
    check_eq!(error.failed_step(), 1, "failed step");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(
        log.take_effects(),
        [Event::Do(0), Event::Undo(1), Event::Undo(0)],
        "events"
    );
    check_eq!(timers_in_use(), 0, "timers left registered");

    // A timed-out attempt, retried: the second attempt succeeds.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let mut saga = SagaBuilder::new()
        .sleeper(TickSleeper)
        .add_step_with(
            move || {
                let call = counter.fetch_add(1, Ordering::Relaxed);
                async move {
                    if call == 0 {
                        Never.await;
                    }
                    Ok::<(), Error>(())
                }
            },
            undo(&log, 0, 0),
            StepPolicy::new().timeout(ms(10)).retry(Retry::attempts(2)),
        )
        .build();
    let started = now();
    let result = drive("timeout then retry", saga.run())?;
    check!(result.is_ok(), "timeout then retry: {:?}", result);
    check_eq!(calls.load(Ordering::Relaxed), 2, "attempts");
    check_eq!(now() - started, 10, "ticks waited");

    // The saga's deadline, 25 ms: steps of 10 ms each; step 2 is cut short.
    let sleeping = |index: u16| {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move {
                TickSleep::new(10).await;
                log.push(Event::Do(index));
                Ok::<(), Error>(())
            }
        }
    };
    let mut saga = SagaBuilder::new()
        .sleeper(TickSleeper)
        .saga_timeout(ms(25))
        .add_step(sleeping(0), undo(&log, 0, 0))
        .add_step(sleeping(1), undo(&log, 1, 0))
        .add_step(sleeping(2), undo(&log, 2, 0))
        .add_step(sleeping(3), undo(&log, 3, 0))
        .build();
    let started = now();
    let error = drive("deadline", saga.run())?
        .err()
        .ok_or("the saga met its deadline")?;
    check_eq!(now() - started, 25, "ticks until the deadline");
    check_eq!(error.reason(), StopReason::Deadline, "reason");
    check_eq!(error.failed_step(), 2, "failed step");
    check_eq!(*error.error(), Error::TimedOut, "error");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(
        log.take_effects(),
        [
            Event::Do(0),
            Event::Do(1),
            Event::Undo(2),
            Event::Undo(1),
            Event::Undo(0)
        ],
        "events"
    );
    check_eq!(timers_in_use(), 0, "timers left registered");

    // Timeouts that never fire change nothing, and take no time.
    let mut saga = SagaBuilder::new()
        .sleeper(TickSleeper)
        .action_timeout(ms(1000))
        .compensation_timeout(ms(1000))
        .saga_timeout(ms(5000))
        .add_step(action(&log, 0, 3, None), undo(&log, 0, 0))
        .add_step(action(&log, 1, 3, None), undo(&log, 1, 0))
        .build();
    let started = now();
    let result = drive("unfired timeouts", saga.run())?;
    check!(result.is_ok(), "unfired timeouts: {:?}", result);
    check_eq!(now(), started, "ticks");
    check_eq!(log.take_effects(), [Event::Do(0), Event::Do(1)], "events");
    check_eq!(timers_in_use(), 0, "timers left registered");
    Ok(())
}
