//! An observer hears every transition of a run, in order, and a saga runs
//! the same with or without it.

use alloc::string::String;

use saga_core::{Retry, SagaBuilder};

use crate::support::{Error, Heard, Recorder, action, check, check_eq, drive, log, undo};

pub fn run() -> Result<(), String> {
    let log = log();
    let recorder = Recorder::new();
    let build = |observed: bool| {
        let builder = SagaBuilder::new()
            .add_step(action(&log, 0, 1, None), undo(&log, 0, 1))
            .add_step(action(&log, 1, 2, Some("boom")), undo(&log, 1, 0))
            .add_step(action(&log, 2, 0, None), undo(&log, 2, 0))
            .action_retry(Retry::attempts(2));
        if observed {
            builder.observer(recorder.clone()).build()
        } else {
            builder.build()
        }
    };

    let mut observed = build(true);
    let error = drive("observed", observed.run())?
        .err()
        .ok_or("the saga succeeded")?;
    let observed_events = log.take();
    use Heard::*;
    let boom = Error::Step("boom");
    check_eq!(
        recorder.take(),
        [
            SagaStarted(3),
            ActionStarted(0, 1),
            ActionSucceeded(0, 1),
            ActionStarted(1, 1),
            ActionFailed(1, 1, boom.clone()),
            ActionRetried(1, 2, core::time::Duration::ZERO),
            ActionStarted(1, 2),
            ActionFailed(1, 2, boom.clone()),
            CompensationStarted(1, 1),
            CompensationSucceeded(1, 1),
            CompensationStarted(0, 1),
            CompensationSucceeded(0, 1),
            SagaFinished(false),
        ],
        "what the observer heard"
    );
    check_eq!(error.attempts(), 2, "attempts");

    let mut plain = build(false);
    let plain_error = drive("unobserved", plain.run())?
        .err()
        .ok_or("the saga succeeded")?;
    check_eq!(log.take(), observed_events, "events without an observer");
    check!(
        plain_error == error,
        "reports differ: {} / {}",
        plain_error,
        error
    );
    Ok(())
}
