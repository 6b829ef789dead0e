//! A hand-written `Step` (a valve driven as a small state machine: the
//! command takes a poll to be acknowledged), with a name; cut short by a
//! timeout (`cancel`, then compensated); and a run dropped mid-step (cancel
//! safety: `reset`, nothing compensated, the saga runs again).

use alloc::string::String;
use alloc::vec::Vec;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use saga_core::{Saga, SagaBuilder, Step, StepPolicy, StopReason};

use crate::exec::{TickSleeper, poll_once};
use crate::support::{Error, Event, Shared, action, check, check_eq, drive, log, undo};

/// What the valve's step was asked to do, and the valve itself.
#[derive(Debug, Default)]
struct Valve {
    open: bool,
    calls: Vec<&'static str>,
}

/// Opens the valve (a command, acknowledged one poll later); closing it
/// is the compensation. When `stuck`, the acknowledgement never comes.
struct OpenValve {
    valve: Shared<Valve>,
    stuck: bool,
    commanded: bool,
}

impl OpenValve {
    fn new(valve: &Shared<Valve>, stuck: bool) -> Self {
        OpenValve {
            valve: valve.clone(),
            stuck,
            commanded: false,
        }
    }

    fn note(&self, call: &'static str) {
        self.valve.with(|valve| valve.calls.push(call));
    }
}

impl Step<Error> for OpenValve {
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if !this.commanded {
            this.commanded = true;
            this.note("command open");
            if !this.stuck {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        if this.stuck {
            return Poll::Pending;
        }
        this.commanded = false;
        this.valve.with(|valve| valve.open = true);
        this.note("opened");
        Poll::Ready(Ok(()))
    }

    fn poll_compensate(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.valve.with(|valve| valve.open = false);
        this.note("closed");
        Poll::Ready(Ok(()))
    }

    fn reset(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.commanded = false;
        this.note("reset");
    }

    fn cancel(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.commanded = false;
        this.note("cancel");
    }

    fn name(&self) -> Option<&str> {
        Some("open valve")
    }
}

pub fn run() -> Result<(), String> {
    // The valve opens, the next step fails, the valve is closed again.
    let valve = Shared::new(Valve::default());
    let log = log();
    let mut saga: Saga<Error> = SagaBuilder::new()
        .step(OpenValve::new(&valve, false))
        .add_step(
            action(&log, 1, 1, Some("pressure too low")),
            undo(&log, 1, 0),
        )
        .build();
    check_eq!(
        saga.step_names().collect::<Vec<_>>(),
        [Some("open valve"), None],
        "step names"
    );
    let error = drive("valve", saga.run())?
        .err()
        .ok_or("the valve saga succeeded")?;
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check!(!valve.with(|valve| valve.open), "the valve was left open");
    check_eq!(
        valve.with(|valve| core::mem::take(&mut valve.calls)),
        ["command open", "opened", "closed"],
        "valve calls"
    );
    log.take();

    // Stuck: a timeout cuts the step short (`cancel`); it may have opened,
    // so it is compensated; the report names it.
    let mut saga: Saga<Error> = SagaBuilder::new()
        .sleeper(TickSleeper)
        .step_with(
            OpenValve::new(&valve, true),
            StepPolicy::new().timeout(Duration::from_millis(20)),
        )
        .build();
    let error = drive("stuck valve", saga.run())?
        .err()
        .ok_or("the stuck valve saga succeeded")?;
    check_eq!(error.reason(), StopReason::TimedOut, "reason");
    check_eq!(
        error.failed_step_name(),
        Some("open valve"),
        "failed step's name"
    );
    check_eq!(
        alloc::format!("{error}"),
        "step 0 (open valve) failed: timed out; fully compensated (1 step)",
        "Display"
    );
    check_eq!(
        valve.with(|valve| core::mem::take(&mut valve.calls)),
        ["command open", "cancel", "closed"],
        "valve calls"
    );

    // Cancel safety: a run dropped while the valve step is in flight stops
    // without compensating step 0; the step is reset; the saga runs again.
    let mut saga: Saga<Error> = SagaBuilder::new()
        .add_step(action(&log, 0, 0, None), undo(&log, 0, 0))
        .step(OpenValve::new(&valve, false))
        .add_step(action(&log, 2, 0, None), undo(&log, 2, 0))
        .build();
    {
        // One poll: step 0 done, the valve commanded and not yet
        // acknowledged. Then the run is dropped.
        let mut run = saga.run();
        check!(
            poll_once(Pin::new(&mut run)).is_pending(),
            "the run finished at its first poll"
        );
    }
    check_eq!(
        log.take_effects(),
        [Event::Do(0)],
        "events of the dropped run"
    );
    check_eq!(
        valve.with(|valve| core::mem::take(&mut valve.calls)),
        ["command open", "reset"],
        "valve calls of the dropped run"
    );
    let result = drive("rerun", saga.run())?;
    check!(result.is_ok(), "the rerun failed: {:?}", result);
    check_eq!(
        log.take_effects(),
        [Event::Do(0), Event::Do(2)],
        "events of the rerun"
    );
    check!(valve.with(|valve| valve.open), "the valve is not open");
    Ok(())
}
