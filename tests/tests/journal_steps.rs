//! The journal hooks of the steps the core provides: a saved typed step
//! writes its value and, restored in a fresh step, hands it to its
//! compensation; a closure step restored compensates; an unsaved typed step
//! refuses to be restored from a success. And the replay of whole runs.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::pin::pin;
use std::sync::{Arc, Mutex};

use futures_util::future::poll_fn;
use saga_core::journal::{Event, Outcome, Progress, Record, SagaState, Unwind, replay};
use saga_core::{FnStep, Restored, Step, StepOutput, TypedStep};

type Log = Arc<Mutex<Vec<String>>>;

fn booking(log: &Log) -> impl Step<String> + use<> {
    let log = log.clone();
    TypedStep::by_ref(
        || async { Ok::<_, String>(String::from("H-7")) },
        move |id: &String| {
            let (log, id) = (log.clone(), id.clone());
            async move {
                log.lock().unwrap().push(id);
                Ok(())
            }
        },
    )
    .saved()
}

#[test]
fn a_saved_typed_step_hands_its_journaled_value_to_a_restored_compensation() {
    let log = Log::default();
    let mut original = pin!(booking(&log));
    assert_eq!(original.output(), StepOutput::Saved);
    smol::block_on(poll_fn(|cx| original.as_mut().poll_action(cx))).unwrap();
    let mut saved = Vec::new();
    original.save_output(&mut saved);
    assert!(!saved.is_empty());

    // A fresh process: the same step, restored instead of run.
    let mut resumed = pin!(booking(&log));
    resumed
        .as_mut()
        .restore(Restored::Succeeded(Some(&saved)))
        .unwrap();
    smol::block_on(poll_fn(|cx| resumed.as_mut().poll_compensate(cx))).unwrap();
    assert_eq!(*log.lock().unwrap(), ["H-7"]);
}

#[test]
fn a_restored_typed_step_rejects_torn_or_missing_values() {
    let log = Log::default();
    let mut step = pin!(booking(&log));
    assert!(
        step.as_mut()
            .restore(Restored::Succeeded(Some(&[3, 0])))
            .is_err()
    );
    assert!(step.as_mut().restore(Restored::Succeeded(None)).is_err());

    let unsaved = TypedStep::by_ref(
        || async { Ok::<_, String>(1_u32) },
        |_: &u32| async { Ok(()) },
    );
    let mut unsaved = pin!(unsaved);
    assert_eq!(unsaved.output(), StepOutput::Unsaved);
    assert!(unsaved.as_mut().restore(Restored::Succeeded(None)).is_err());
    // Attempted: no value, nothing to hand over, and no error.
    assert!(unsaved.as_mut().restore(Restored::Attempted).is_ok());
}

#[test]
fn a_restored_closure_step_compensates() {
    let undone = Arc::new(Mutex::new(0));
    let counter = undone.clone();
    let step = FnStep::new(
        || async { Ok::<_, String>(()) },
        move || {
            let counter = counter.clone();
            async move {
                *counter.lock().unwrap() += 1;
                Ok(())
            }
        },
    );
    let mut step = pin!(step);
    // Never run in this process: a compensation without a restore has
    // nothing to undo.
    smol::block_on(poll_fn(|cx| step.as_mut().poll_compensate(cx))).unwrap();
    assert_eq!(*undone.lock().unwrap(), 0);
    step.as_mut().restore(Restored::Attempted).unwrap();
    smol::block_on(poll_fn(|cx| step.as_mut().poll_compensate(cx))).unwrap();
    assert_eq!(*undone.lock().unwrap(), 1);
}

fn numbered(events: Vec<Event>) -> Vec<Record> {
    let created = Event::Created {
        definition: "trip".into(),
        version: 1,
        fingerprint: 42,
        parameters: vec![7],
    };
    std::iter::once(created)
        .chain(events)
        .enumerate()
        .map(|(seq, event)| Record {
            seq: seq as u64,
            event,
        })
        .collect()
}

#[test]
fn a_failed_saga_replays_to_its_compensations_in_flight() {
    let records = numbered(vec![
        Event::ActionStarted {
            step: 0,
            attempt: 1,
        },
        Event::ActionSucceeded {
            step: 0,
            output: Some(vec![1]),
        },
        Event::ActionStarted {
            step: 1,
            attempt: 1,
        },
        Event::ActionFailed {
            step: 1,
            attempt: 1,
            message: "busy".into(),
        },
        Event::Retrying {
            step: 1,
            compensation: false,
            attempt: 2,
        },
        Event::ActionStarted {
            step: 1,
            attempt: 2,
        },
        Event::ActionFailed {
            step: 1,
            attempt: 2,
            message: "declined".into(),
        },
        Event::Unwinding {
            step: 1,
            reason: Unwind::Failed,
        },
        Event::CompensationStarted {
            step: 0,
            attempt: 1,
        },
    ]);
    let history = replay(&records).unwrap();
    assert_eq!(history.state(), SagaState::Unwinding);
    assert_eq!(history.unwinding(), Some((1, Unwind::Failed)));
    assert_eq!(history.step(0).action, Progress::Succeeded);
    assert_eq!(history.step(0).output.as_deref(), Some(&[1][..]));
    assert_eq!(history.step(0).compensation, Progress::InFlight);
    assert_eq!(history.step(1).action, Progress::Failed);
    assert_eq!(history.step(1).action_attempts, 2);
    assert_eq!(history.last_error(), Some("declined"));
    assert_eq!(history.next_seq(), records.len() as u64);
    assert_eq!(history.parameters, [7]);

    // Every prefix (a crash after any record) replays too.
    for end in 1..=records.len() {
        replay(&records[..end]).unwrap();
    }
}

#[test]
fn a_stuck_saga_can_be_reopened_and_then_compensates_again() {
    let mut records = numbered(vec![
        Event::ActionStarted {
            step: 0,
            attempt: 1,
        },
        Event::ActionSucceeded {
            step: 0,
            output: None,
        },
        Event::ActionStarted {
            step: 1,
            attempt: 1,
        },
        Event::ActionFailed {
            step: 1,
            attempt: 1,
            message: "x".into(),
        },
        Event::Unwinding {
            step: 1,
            reason: Unwind::Failed,
        },
        Event::CompensationStarted {
            step: 0,
            attempt: 1,
        },
        Event::CompensationFailed {
            step: 0,
            attempt: 1,
            message: "down".into(),
        },
        Event::Finished {
            outcome: Outcome::Stuck,
            message: "down".into(),
        },
    ]);
    let stuck = replay(&records).unwrap();
    assert_eq!(stuck.state(), SagaState::Finished(Outcome::Stuck));
    for event in [
        Event::Reopened,
        Event::CompensationStarted {
            step: 0,
            attempt: 2,
        },
        Event::CompensationSucceeded { step: 0 },
    ] {
        let seq = records.len() as u64;
        records.push(Record { seq, event });
    }
    let history = replay(&records).unwrap();
    assert_eq!(history.state(), SagaState::Unwinding);
    assert_eq!(history.step(0).compensation, Progress::Succeeded);
}
