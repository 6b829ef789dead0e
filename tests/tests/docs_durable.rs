#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]
//! Durable sagas, checked from the documentation alone: rules 13 to 15 of
//! the crate docs and their "Durable sagas" section, `Saga::run_journaled`,
//! `Saga::resume`, the `saga_core::journal` types a journaled run uses
//! (`JournaledRun`, `DurableError`, `Refused`, `Start`, `MemoryJournal`,
//! `replay`, `History`, `Progress`, `Event`, `Outcome`, `Unwind`),
//! `Crashed` and `StopReason::Crashed`, and `SagaError`'s table of where and
//! why a saga stopped. Crashes are simulated by dropping a run that was
//! polled by hand mid-step (and `MemoryJournal::lose_power`), then replaying
//! the durable records, building the saga again and resuming it.

use std::collections::VecDeque;
use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use saga_core::journal::{
    Codec, DurableError, Event, History, Journal, JournalError, JournalErrorKind, MemoryJournal,
    Outcome, Progress, Record, Refused, ReplayError, SagaState, Start, Unwind, replay,
};
use saga_core::{
    AbortHandle, Crashed, FnStep, InFlight, Recovery, Retry, Saga, SagaBuilder, SagaError,
    StopReason, TypedStep,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Log = Arc<Mutex<Vec<String>>>;

fn new_log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn clear(log: &Log) {
    log.lock().unwrap().clear();
}

/// What one attempt of an action or a compensation does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Ok,
    Fail,
    Hang,
}

use Act::{Fail, Hang};

async fn act(log: Log, entry: String, act: Act, message: String) -> Result<(), String> {
    log.lock().unwrap().push(entry);
    match act {
        Act::Ok => Ok(()),
        Act::Fail => Err(message),
        Act::Hang => {
            pending::<()>().await;
            Ok(())
        }
    }
}

/// A step named `name` whose action and compensation attempts do what
/// their scripts say, in order (then succeed), logging `do name` and
/// `undo name` as each attempt starts.
fn scripted(
    log: &Log,
    name: &'static str,
    action: &[Act],
    compensation: &[Act],
) -> impl saga_core::Step<String> + Send + 'static {
    let (action_log, compensation_log) = (log.clone(), log.clone());
    let mut action: VecDeque<Act> = action.iter().copied().collect();
    let mut compensation: VecDeque<Act> = compensation.iter().copied().collect();
    FnStep::new(
        move || {
            let next = action.pop_front().unwrap_or(Act::Ok);
            act(
                action_log.clone(),
                format!("do {name}"),
                next,
                format!("{name} failed"),
            )
        },
        move || {
            let next = compensation.pop_front().unwrap_or(Act::Ok);
            act(
                compensation_log.clone(),
                format!("undo {name}"),
                next,
                format!("undo {name} failed"),
            )
        },
    )
    .named(name)
}

type Spec<'a> = &'a [(&'static str, &'a [Act], &'a [Act])];

/// A saga of scripted steps, every action allowed `attempts` attempts.
fn build(log: &Log, steps: Spec<'_>, attempts: u32) -> Saga<String> {
    let mut builder = SagaBuilder::<String>::new().action_retry(Retry::attempts(attempts));
    for &(name, action, compensation) in steps {
        builder = builder.step(scripted(log, name, action, compensation));
    }
    builder.build()
}

fn start() -> Start {
    Start::new("trip", 1, vec![])
}

fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(future).poll(&mut cx)
}

fn events(records: &[Record]) -> Vec<Event> {
    records.iter().map(|record| record.event.clone()).collect()
}

fn assert_gap_free(records: &[Record]) {
    for (index, record) in records.iter().enumerate() {
        assert_eq!(
            record.seq, index as u64,
            "records are numbered from 0 without gaps"
        );
    }
}

fn saga_error(result: Result<(), DurableError<String>>) -> SagaError<String> {
    match result {
        Err(DurableError::Saga(error)) => error,
        Err(other) => panic!("expected the saga to fail, got {other:?}"),
        Ok(()) => panic!("expected the saga to fail, it succeeded"),
    }
}

/// Runs `steps` journaled (one of them hangs), polls the run once by hand
/// and drops it: a process that died mid-step.
fn crash(log: &Log, steps: Spec<'_>, attempts: u32) -> MemoryJournal {
    let mut journal = MemoryJournal::new();
    let mut saga = build(log, steps, attempts);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(
        poll_once(&mut run).is_pending(),
        "the first process must stop mid-step"
    );
    drop(run);
    journal
}

/// The next process: replays what is durable and resumes a saga built again.
fn resume(
    log: &Log,
    journal: &mut MemoryJournal,
    steps: Spec<'_>,
    attempts: u32,
) -> Result<(), DurableError<String>> {
    journal.lose_power();
    let history = replay(journal.durable()).unwrap();
    let mut saga = build(log, steps, attempts);
    let run = saga.resume(journal, &history).unwrap();
    smol::block_on(run)
}

fn created(saga: &Saga<String>) -> Record {
    Record {
        seq: 0,
        event: Event::Created {
            definition: "trip".into(),
            version: 1,
            fingerprint: saga.fingerprint(),
            parameters: vec![],
        },
    }
}

/// A journal whose every flush is `Pending` once (waking its waker) before
/// it makes the records durable; what is durable is shared with the steps.
#[derive(Debug)]
struct SlowJournal {
    pending: Vec<Record>,
    durable: Arc<Mutex<Vec<Record>>>,
    waited: bool,
    flushes: usize,
}

impl SlowJournal {
    fn new(durable: Arc<Mutex<Vec<Record>>>) -> Self {
        Self {
            pending: Vec::new(),
            durable,
            waited: false,
            flushes: 0,
        }
    }
}

impl Journal for SlowJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.pending.push(record.clone());
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        if !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.waited = false;
        self.durable.lock().unwrap().append(&mut self.pending);
        self.flushes += 1;
        Poll::Ready(Ok(()))
    }
}

/// A step that checks, as each attempt starts, that its "started" record is
/// already durable, logging `ok` or `not durable`.
fn checking(
    durable: &Arc<Mutex<Vec<Record>>>,
    log: &Log,
    step: u32,
    fail: bool,
) -> impl saga_core::Step<String> + Send + 'static {
    let (action_durable, compensation_durable) = (durable.clone(), durable.clone());
    let (action_log, compensation_log) = (log.clone(), log.clone());
    let action_attempts = Arc::new(AtomicUsize::new(0));
    FnStep::new(
        move || {
            let attempt = action_attempts.fetch_add(1, Ordering::SeqCst) as u32 + 1;
            let seen = action_durable
                .lock()
                .unwrap()
                .iter()
                .any(|record| record.event == Event::ActionStarted { step, attempt });
            action_log.lock().unwrap().push(format!(
                "action {step}: {}",
                if seen { "ok" } else { "not durable" }
            ));
            async move {
                if fail {
                    Err(String::from("no"))
                } else {
                    Ok(())
                }
            }
        },
        move || {
            let seen = compensation_durable
                .lock()
                .unwrap()
                .iter()
                .any(|record| record.event == Event::CompensationStarted { step, attempt: 1 });
            compensation_log.lock().unwrap().push(format!(
                "compensation {step}: {}",
                if seen { "ok" } else { "not durable" }
            ));
            async { Ok(()) }
        },
    )
}

// ---------------------------------------------------------------------------
// Journaled runs: records and flushes (rule 13)
// ---------------------------------------------------------------------------

#[test]
fn crate_docs_example_commits_and_replays_as_finished() {
    let mut saga = SagaBuilder::<String>::new()
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .build();
    let mut journal = MemoryJournal::new();
    let run = saga
        .run_journaled(&mut journal, Start::new("one", 1, vec![]))
        .unwrap();
    assert!(smol::block_on(run).is_ok());
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

#[test]
fn one_flush_per_step_and_one_more_at_the_end() {
    for steps in 1..=4_usize {
        let log = new_log();
        let names = ["a", "b", "c", "d"];
        let spec: Vec<(&'static str, &[Act], &[Act])> = names[..steps]
            .iter()
            .map(|&name| (name, &[][..], &[][..]))
            .collect();
        let mut saga = build(&log, &spec, 1);
        let mut journal = MemoryJournal::new();
        smol::block_on(saga.run_journaled(&mut journal, start()).unwrap()).unwrap();
        assert_eq!(journal.flushes(), steps as u64 + 1, "{steps} steps");
        assert_eq!(journal.durable().len(), 2 * steps + 2, "{steps} steps");
        assert!(journal.pending().is_empty());
    }
}

#[test]
fn happy_path_records_in_order() {
    let log = new_log();
    let mut saga = build(&log, &[("a", &[], &[]), ("b", &[], &[])], 1);
    let first = created(&saga);
    let mut journal = MemoryJournal::new();
    smol::block_on(saga.run_journaled(&mut journal, start()).unwrap()).unwrap();
    assert_gap_free(journal.durable());
    assert_eq!(
        events(journal.durable()),
        [
            first.event,
            Event::ActionStarted {
                step: 0,
                attempt: 1
            },
            Event::ActionSucceeded {
                step: 0,
                output: None
            },
            Event::ActionStarted {
                step: 1,
                attempt: 1
            },
            Event::ActionSucceeded {
                step: 1,
                output: None
            },
            Event::Finished {
                outcome: Outcome::Committed,
                message: String::new()
            },
        ]
    );
    assert_eq!(entries(&log), ["do a", "do b"]);
}

#[test]
fn first_record_names_definition_fingerprint_and_parameters() {
    let log = new_log();
    let mut saga = build(&log, &[("a", &[], &[])], 1);
    let fingerprint = saga.fingerprint();
    let mut journal = MemoryJournal::new();
    let run = saga
        .run_journaled(&mut journal, Start::new("transfer", 7, vec![1, 2, 3]))
        .unwrap();
    smol::block_on(run).unwrap();
    assert_eq!(
        journal.durable()[0],
        Record {
            seq: 0,
            event: Event::Created {
                definition: "transfer".into(),
                version: 7,
                fingerprint,
                parameters: vec![1, 2, 3],
            },
        }
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.definition, "transfer");
    assert_eq!(history.version, 7);
    assert_eq!(history.fingerprint, fingerprint);
    assert_eq!(history.parameters, [1, 2, 3]);
    assert_eq!(history.next_seq(), journal.durable().len() as u64);
}

#[test]
fn started_record_is_durable_before_each_attempt_is_first_polled() {
    let durable = Arc::new(Mutex::new(Vec::new()));
    let log = new_log();
    let mut saga = SagaBuilder::<String>::new()
        .step(checking(&durable, &log, 0, false))
        .step(checking(&durable, &log, 1, false))
        .step(checking(&durable, &log, 2, true))
        .build();
    let mut journal = SlowJournal::new(durable.clone());
    let result = smol::block_on(saga.run_journaled(&mut journal, start()).unwrap());
    let error = saga_error(result);
    assert_eq!(error.failed_step(), 2);
    assert_eq!(
        entries(&log),
        [
            "action 0: ok",
            "action 1: ok",
            "action 2: ok",
            "compensation 2: ok",
            "compensation 1: ok",
            "compensation 0: ok",
        ]
    );
    let records = durable.lock().unwrap().clone();
    assert_gap_free(&records);
    assert_eq!(
        replay(&records).unwrap().state(),
        SagaState::Finished(Outcome::Compensated)
    );
    assert!(journal.pending.is_empty(), "the end is flushed too");
}

#[test]
fn a_pending_flush_holds_the_first_poll_of_the_attempt() {
    let durable = Arc::new(Mutex::new(Vec::new()));
    let log = new_log();
    let mut saga = SagaBuilder::<String>::new()
        .step(checking(&durable, &log, 0, false))
        .build();
    let mut journal = SlowJournal::new(durable.clone());
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending(), "the flush is pending");
    assert!(
        entries(&log).is_empty(),
        "no attempt before its record is durable"
    );
    assert!(durable.lock().unwrap().is_empty());
    let mut result = poll_once(&mut run);
    for _ in 0..10 {
        if result.is_ready() {
            break;
        }
        result = poll_once(&mut run);
    }
    assert!(matches!(result, Poll::Ready(Ok(()))));
    assert_eq!(entries(&log), ["action 0: ok"]);
}

#[test]
fn failed_saga_records_unwinding_compensations_and_its_error() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[Fail], &[])];
    let mut saga = build(&log, steps, 1);
    let first = created(&saga);
    let mut journal = MemoryJournal::new();
    let error = saga_error(smol::block_on(
        saga.run_journaled(&mut journal, start()).unwrap(),
    ));
    assert_eq!(*error.error(), "b failed");
    assert_eq!(error.reason(), StopReason::Failed);
    assert_gap_free(journal.durable());
    assert_eq!(
        events(journal.durable()),
        [
            first.event,
            Event::ActionStarted {
                step: 0,
                attempt: 1
            },
            Event::ActionSucceeded {
                step: 0,
                output: None
            },
            Event::ActionStarted {
                step: 1,
                attempt: 1
            },
            Event::ActionFailed {
                step: 1,
                attempt: 1,
                message: "b failed".into()
            },
            Event::Unwinding {
                step: 1,
                reason: Unwind::Failed
            },
            Event::CompensationStarted {
                step: 1,
                attempt: 1
            },
            Event::CompensationSucceeded { step: 1 },
            Event::CompensationStarted {
                step: 0,
                attempt: 1
            },
            Event::CompensationSucceeded { step: 0 },
            Event::Finished {
                outcome: Outcome::Compensated,
                message: error.to_string()
            },
        ]
    );
    assert_eq!(
        journal.flushes(),
        5,
        "one flush per attempt started, one at the end"
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert_eq!(history.unwinding(), Some((1, Unwind::Failed)));
    assert_eq!(history.last_error(), Some(error.to_string().as_str()));
}

#[test]
fn journaled_failure_reports_as_saga_run_does() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[Fail]), ("b", &[Fail], &[])];
    let plain = smol::block_on(build(&log, steps, 1).run()).unwrap_err();
    let mut saga = build(&log, steps, 1);
    let mut journal = MemoryJournal::new();
    let result = smol::block_on(saga.run_journaled(&mut journal, start()).unwrap());
    let durable_error = result.unwrap_err();
    assert!(durable_error.journal().is_none());
    let journaled = durable_error.saga().unwrap();
    assert_eq!(journaled, &plain);
    assert_eq!(journaled.to_string(), plain.to_string());
}

#[test]
fn retried_action_records_failure_retrying_and_next_attempt() {
    let log = new_log();
    let mut saga = build(&log, &[("a", &[Fail], &[])], 2);
    let mut journal = MemoryJournal::new();
    smol::block_on(saga.run_journaled(&mut journal, start()).unwrap()).unwrap();
    let all = events(journal.durable());
    assert_eq!(
        all[1..5],
        [
            Event::ActionStarted {
                step: 0,
                attempt: 1
            },
            Event::ActionFailed {
                step: 0,
                attempt: 1,
                message: "a failed".into()
            },
            Event::Retrying {
                step: 0,
                compensation: false,
                attempt: 2
            },
            Event::ActionStarted {
                step: 0,
                attempt: 2
            },
        ]
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.step(0).action_attempts, 2);
    assert_eq!(history.step(0).action, Progress::Succeeded);
}

#[test]
fn failed_compensation_ends_stuck_with_its_message() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[Fail]), ("b", &[Fail], &[])];
    let mut saga = build(&log, steps, 1);
    let mut journal = MemoryJournal::new();
    let error = saga_error(smol::block_on(
        saga.run_journaled(&mut journal, start()).unwrap(),
    ));
    assert!(!error.is_fully_compensated());
    assert!(
        events(journal.durable()).contains(&Event::CompensationFailed {
            step: 0,
            attempt: 1,
            message: "undo a failed".into(),
        })
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Stuck));
    assert_eq!(history.step(0).compensation, Progress::Failed);
}

#[test]
fn propagated_failure_records_propagated_and_ends_stuck() {
    let log = new_log();
    let mut saga = SagaBuilder::<String>::new()
        .classify(|_: &String| Recovery::Propagate)
        .step(scripted(&log, "a", &[], &[]))
        .step(scripted(&log, "b", &[Fail], &[]))
        .build();
    let mut journal = MemoryJournal::new();
    let error = saga_error(smol::block_on(
        saga.run_journaled(&mut journal, start()).unwrap(),
    ));
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
    assert!(events(journal.durable()).contains(&Event::Unwinding {
        step: 1,
        reason: Unwind::Propagated
    }));
    assert_eq!(entries(&log), ["do a", "do b"], "nothing is undone");
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Stuck));
}

#[test]
fn aborted_journaled_run_records_aborted_unwinding() {
    let log = new_log();
    let handle = AbortHandle::new();
    let mut saga = SagaBuilder::<String>::new()
        .on_abort(InFlight::CutShort)
        .step(scripted(&log, "a", &[], &[]))
        .step(scripted(&log, "b", &[Hang], &[]))
        .build();
    let mut journal = MemoryJournal::new();
    let mut run = saga
        .run_journaled(&mut journal, start())
        .unwrap()
        .abortable(&handle);
    assert!(poll_once(&mut run).is_pending());
    handle.abort();
    let error = saga_error(smol::block_on(run));
    assert_eq!(error.reason(), StopReason::Aborted);
    assert!(events(journal.durable()).contains(&Event::Unwinding {
        step: 1,
        reason: Unwind::Aborted
    }));
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
}

// ---------------------------------------------------------------------------
// A failing journal
// ---------------------------------------------------------------------------

#[test]
fn failing_journal_stops_without_compensating() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[])];
    let mut saga = build(&log, steps, 1);
    let mut journal = MemoryJournal::new();
    journal.fail_after(1);
    let result = smol::block_on(saga.run_journaled(&mut journal, start()).unwrap());
    let error = match result {
        Err(DurableError::Journal(error)) => error,
        other => panic!("expected a journal error, got {other:?}"),
    };
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert_eq!(
        entries(&log),
        ["do a"],
        "b never started, nothing was compensated"
    );
    assert_eq!(journal.flushes(), 1);
    assert_eq!(
        events(journal.durable())[1..],
        [Event::ActionStarted {
            step: 0,
            attempt: 1
        }]
    );
}

#[test]
fn journal_failing_at_once_runs_nothing() {
    let log = new_log();
    let mut saga = build(&log, &[("a", &[], &[])], 1);
    let mut journal = MemoryJournal::new();
    journal.fail_after(0);
    let result = smol::block_on(saga.run_journaled(&mut journal, start()).unwrap());
    let error = result.unwrap_err();
    assert!(error.saga().is_none());
    assert_eq!(
        error.journal().map(JournalError::kind),
        Some(JournalErrorKind::Storage)
    );
    assert!(entries(&log).is_empty(), "no attempt ran unrecorded");
    journal.lose_power();
    assert_eq!(replay(journal.durable()), Err(ReplayError::Empty));
}

#[test]
fn failing_journal_then_resumed_from_the_stores_copy() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[])];
    let mut saga = build(&log, steps, 2);
    let mut journal = MemoryJournal::new();
    journal.fail_after(1);
    let result = smol::block_on(saga.run_journaled(&mut journal, start()).unwrap());
    assert!(matches!(result, Err(DurableError::Journal(_))));
    journal.lose_power();
    assert!(journal.pending().is_empty());

    // Step 0's outcome never became durable: it was in flight.
    let mut store = MemoryJournal::from_records(journal.durable().to_vec());
    let history = replay(store.durable()).unwrap();
    assert_eq!(history.step(0).action, Progress::InFlight);
    clear(&log);
    let mut saga = build(&log, steps, 2);
    smol::block_on(saga.resume(&mut store, &history).unwrap()).unwrap();
    assert_eq!(
        entries(&log),
        ["do a", "do b"],
        "run again as its next attempt"
    );
    assert_gap_free(store.durable());
    let history = replay(store.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(0).action_attempts, 2);
}

// ---------------------------------------------------------------------------
// Crash and resume (rule 14)
// ---------------------------------------------------------------------------

#[test]
fn dropping_a_journaled_run_compensates_nothing() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[Hang], &[])];
    let journal = crash(&log, steps, 1);
    assert_eq!(entries(&log), ["do a", "do b"]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Forward);
    assert_eq!(history.step(0).action, Progress::Succeeded);
    assert_eq!(history.step(1).action, Progress::InFlight);
    assert_eq!(history.step(1).compensation, Progress::NotStarted);
    assert_eq!(history.steps_mentioned(), 2);
    assert_eq!(history.next_seq(), journal.durable().len() as u64);
}

#[test]
fn resumed_sequence_runs_the_step_again_and_not_the_ones_before() {
    let log = new_log();
    let journal_steps: Spec<'_> = &[("a", &[], &[]), ("b", &[Hang], &[]), ("c", &[], &[])];
    let mut journal = crash(&log, journal_steps, 2);
    let before = journal.durable().len();
    clear(&log);
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[]), ("c", &[], &[])];
    resume(&log, &mut journal, steps, 2).unwrap();
    assert_eq!(entries(&log), ["do b", "do c"]);
    assert_gap_free(journal.durable());
    assert_eq!(
        journal.durable()[before].event,
        Event::ActionStarted {
            step: 1,
            attempt: 2
        },
        "the re-run attempt is numbered after the recorded one"
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(0).action_attempts, 1);
    assert_eq!(history.step(1).action_attempts, 2);
    assert_eq!(history.step(2).action_attempts, 1);
}

#[test]
fn saga_resume_docs_example() {
    fn build_pair(hang: bool) -> Saga<String> {
        SagaBuilder::new()
            .action_retry(Retry::attempts(2))
            .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
            .add_step(
                move || async move {
                    if hang {
                        pending::<()>().await;
                    }
                    Ok::<_, String>(())
                },
                || async { Ok(()) },
            )
            .build()
    }
    let mut journal = MemoryJournal::new();
    let mut saga = build_pair(true);
    let mut run = saga
        .run_journaled(&mut journal, Start::new("pair", 1, vec![]))
        .unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    let history = replay(journal.durable()).unwrap();
    let mut saga = build_pair(false);
    let resumed = saga.resume(&mut journal, &history).unwrap();
    smol::block_on(resumed).unwrap();
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(1).action_attempts, 2);
}

#[test]
fn crashed_twice_attempts_are_numbered_after_the_recorded_ones() {
    let log = new_log();
    let hanging: Spec<'_> = &[("a", &[], &[]), ("b", &[Hang], &[])];
    let mut journal = crash(&log, hanging, 3);

    // The second process dies in the same step.
    journal.lose_power();
    let history = replay(journal.durable()).unwrap();
    let mut saga = build(&log, hanging, 3);
    let mut run = saga.resume(&mut journal, &history).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);

    clear(&log);
    let fine: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[])];
    resume(&log, &mut journal, fine, 3).unwrap();
    assert_eq!(entries(&log), ["do b"]);
    assert_gap_free(journal.durable());
    let attempts: Vec<u32> = events(journal.durable())
        .into_iter()
        .filter_map(|event| match event {
            Event::ActionStarted { step: 1, attempt } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(
        replay(journal.durable()).unwrap().state(),
        SagaState::Finished(Outcome::Committed)
    );
}

#[test]
fn without_a_retry_the_cut_short_step_is_compensated_as_crashed() {
    let log = new_log();
    let mut journal = crash(&log, &[("a", &[], &[]), ("b", &[Hang], &[])], 1);
    clear(&log);
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[])];
    let error = saga_error(resume(&log, &mut journal, steps, 1));
    assert_eq!(error.reason(), StopReason::Crashed);
    assert_eq!(*error.error(), String::from(Crashed::new()));
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.failed_step_name(), Some("b"));
    assert_eq!(error.attempts(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 2);
    assert_eq!(
        entries(&log),
        ["undo b", "undo a"],
        "not run again; compensated by rule 3"
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert_eq!(history.step(1).action_attempts, 1);
}

#[test]
fn crashed_report_displays_as_the_table_says() {
    let log = new_log();
    let mut journal = crash(&log, &[("a", &[], &[]), ("b", &[Hang], &[])], 1);
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[])];
    let error = saga_error(resume(&log, &mut journal, steps, 1));
    assert_eq!(
        error.to_string(),
        "step 1 (b) failed: cut short by a crash; fully compensated (2 steps)"
    );
    let last = journal.durable().last().unwrap().event.clone();
    assert_eq!(
        last,
        Event::Finished {
            outcome: Outcome::Compensated,
            message: error.to_string()
        }
    );
    assert!(events(journal.durable()).contains(&Event::ActionFailed {
        step: 1,
        attempt: 1,
        message: "cut short by a crash".into(),
    }));
}

#[test]
fn crashed_step_that_does_not_compensate_failed_actions_is_left_applied() {
    let build_typed = |hang: bool| {
        SagaBuilder::<String>::new()
            .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
            .step(
                TypedStep::by_value(
                    move || async move {
                        if hang {
                            pending::<()>().await;
                        }
                        Ok::<u32, String>(7)
                    },
                    |_: u32| async { Ok(()) },
                )
                .saved(),
            )
            .build()
    };
    let mut journal = MemoryJournal::new();
    let mut saga = build_typed(true);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    let history = replay(journal.durable()).unwrap();
    let mut saga = build_typed(false);
    let error = saga_error(smol::block_on(saga.resume(&mut journal, &history).unwrap()));
    assert_eq!(error.reason(), StopReason::Crashed);
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1]);
    assert_eq!(error.compensated_count(), 1);
    assert!(
        error
            .to_string()
            .ends_with("1 compensated, 1 step left applied")
    );
}

#[test]
fn crashed_while_compensating_goes_on_without_redoing_finished_compensations() {
    let log = new_log();
    let first: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[Hang]), ("c", &[Fail], &[])];
    let mut journal = crash(&log, first, 1);
    assert_eq!(entries(&log), ["do a", "do b", "do c", "undo c", "undo b"]);
    assert_eq!(
        replay(journal.durable()).unwrap().state(),
        SagaState::Unwinding
    );
    clear(&log);
    let again: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[]), ("c", &[Fail], &[])];
    let error = saga_error(resume(&log, &mut journal, again, 1));
    assert_eq!(entries(&log), ["undo b", "undo a"]);
    assert_eq!(*error.error(), String::from(Crashed::recorded("c failed")));
    assert_eq!(*error.error(), "c failed (before a restart)");
    assert_eq!(error.failed_step(), 2);
    assert!(error.is_fully_compensated());
    assert_eq!(
        error.compensated_count(),
        3,
        "compensations that succeeded are counted"
    );
    assert_gap_free(journal.durable());
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert_eq!(history.step(2).compensation_attempts, 1);
    assert_eq!(history.step(1).compensation_attempts, 2, "run again");
    assert_eq!(history.step(0).compensation_attempts, 1);
}

#[test]
fn resumed_compensation_failed_for_good_is_reported_as_recorded() {
    let log = new_log();
    // c fails, undo c fails for good, then undo b hangs (continue on error).
    let first_saga = |log: &Log, hang: bool| {
        let undo_b: &[Act] = if hang { &[Hang] } else { &[] };
        SagaBuilder::<String>::new()
            .compensation_mode(saga_core::CompensationMode::ContinueOnError)
            .step(scripted(log, "a", &[], &[]))
            .step(scripted(log, "b", &[], undo_b))
            .step(scripted(log, "c", &[Fail], &[Fail]))
            .build()
    };
    let mut journal = MemoryJournal::new();
    let mut saga = first_saga(&log, true);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    clear(&log);
    let history = replay(journal.durable()).unwrap();
    let mut saga = first_saga(&log, false);
    let error = saga_error(smol::block_on(saga.resume(&mut journal, &history).unwrap()));
    assert_eq!(
        entries(&log),
        ["undo b", "undo a"],
        "the failed compensation is not retried"
    );
    assert_eq!(error.compensation_errors().len(), 1);
    assert_eq!(error.compensation_errors()[0].step(), 2);
    assert_eq!(
        *error.compensation_errors()[0].error(),
        String::from(Crashed::recorded("undo c failed"))
    );
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [2]);
    assert_eq!(
        replay(journal.durable()).unwrap().state(),
        SagaState::Finished(Outcome::Stuck)
    );
}

#[test]
fn action_failed_for_good_without_unwinding_record_unwinds_as_a_failure() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[])];
    let mut saga = build(&log, steps, 1);
    let records = vec![
        created(&saga),
        Record {
            seq: 1,
            event: Event::ActionStarted {
                step: 0,
                attempt: 1,
            },
        },
        Record {
            seq: 2,
            event: Event::ActionSucceeded {
                step: 0,
                output: None,
            },
        },
        Record {
            seq: 3,
            event: Event::ActionStarted {
                step: 1,
                attempt: 1,
            },
        },
        Record {
            seq: 4,
            event: Event::ActionFailed {
                step: 1,
                attempt: 1,
                message: "declined".into(),
            },
        },
    ];
    let mut journal = MemoryJournal::from_records(records);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.step(1).action, Progress::Failed);
    assert_eq!(history.state(), SagaState::Forward);
    let error = saga_error(smol::block_on(saga.resume(&mut journal, &history).unwrap()));
    assert_eq!(entries(&log), ["undo b", "undo a"], "no action runs again");
    assert_eq!(error.reason(), StopReason::Failed);
    assert_eq!(error.failed_step(), 1);
    assert_eq!(*error.error(), "declined (before a restart)");
    assert!(events(journal.durable()).contains(&Event::Unwinding {
        step: 1,
        reason: Unwind::Failed
    }));
    assert_eq!(
        replay(journal.durable()).unwrap().state(),
        SagaState::Finished(Outcome::Compensated)
    );
}

#[test]
fn a_retry_waiting_for_its_backoff_runs_at_once_when_resumed() {
    fn slow_retry(log: &Log) -> Saga<String> {
        SagaBuilder::<String>::new()
            .sleeper(|_: Duration| pending::<()>())
            .action_retry(Retry::attempts(3).constant(Duration::from_secs(3600)))
            .step(scripted(log, "a", &[Fail], &[]))
            .build()
    }
    let log = new_log();
    let mut journal = MemoryJournal::new();
    let mut saga = slow_retry(&log);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(
        poll_once(&mut run).is_pending(),
        "waiting an hour for the retry"
    );
    drop(run);
    journal.lose_power();
    let history = replay(journal.durable()).unwrap();
    clear(&log);

    // The resumed saga's sleeper never fires either: the retry must not wait.
    let log2 = new_log();
    let mut saga = SagaBuilder::<String>::new()
        .sleeper(|_: Duration| pending::<()>())
        .action_retry(Retry::attempts(3).constant(Duration::from_secs(3600)))
        .step(scripted(&log2, "a", &[], &[]))
        .build();
    let mut run = saga.resume(&mut journal, &history).unwrap();
    let mut result = poll_once(&mut run);
    for _ in 0..10 {
        if result.is_ready() {
            break;
        }
        result = poll_once(&mut run);
    }
    assert!(matches!(result, Poll::Ready(Ok(()))), "{result:?}");
    drop(run);
    assert_eq!(entries(&log2), ["do a"]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.step(0).action_attempts, 2);
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

#[test]
fn resume_from_only_the_created_record_runs_every_step() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[], &[])];
    let mut saga = build(&log, steps, 1);
    let mut journal = MemoryJournal::from_records(vec![created(&saga)]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.step(0).action, Progress::NotStarted);
    smol::block_on(saga.resume(&mut journal, &history).unwrap()).unwrap();
    assert_eq!(entries(&log), ["do a", "do b"]);
    assert_gap_free(journal.durable());
    assert_eq!(
        replay(journal.durable()).unwrap().state(),
        SagaState::Finished(Outcome::Committed)
    );
}

// ---------------------------------------------------------------------------
// Typed steps with saved values
// ---------------------------------------------------------------------------

fn hotel_saga(log: &Log, booking: &'static str, fail_next: bool, hang_next: bool) -> Saga<String> {
    let undo = log.clone();
    SagaBuilder::<String>::new()
        .step(
            TypedStep::by_value(
                move || async move { Ok::<String, String>(booking.into()) },
                move |id: String| {
                    undo.lock().unwrap().push(format!("cancel {id}"));
                    async { Ok(()) }
                },
            )
            .saved()
            .named("hotel"),
        )
        .step(scripted(
            log,
            "pay",
            if hang_next {
                &[Hang]
            } else if fail_next {
                &[Fail]
            } else {
                &[]
            },
            &[],
        ))
        .build()
}

#[test]
fn saved_value_is_journaled_with_the_action_success() {
    let log = new_log();
    let mut saga = hotel_saga(&log, "H-7", false, false);
    assert_eq!(saga.unsaved_outputs().count(), 0);
    let mut journal = MemoryJournal::new();
    smol::block_on(saga.run_journaled(&mut journal, start()).unwrap()).unwrap();
    let mut bytes = Vec::new();
    String::from("H-7").encode(&mut bytes);
    assert!(events(journal.durable()).contains(&Event::ActionSucceeded {
        step: 0,
        output: Some(bytes.clone())
    }));
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.step(0).output, Some(bytes));
    assert_eq!(history.step(1).output, None);
}

#[test]
fn resumed_compensation_receives_the_original_value() {
    let log = new_log();
    let mut journal = MemoryJournal::new();
    let mut saga = hotel_saga(&log, "H-7", false, true);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    clear(&log);
    let history = replay(journal.durable()).unwrap();
    // Built again, the hotel's action would book another room: it must not run.
    let mut saga = hotel_saga(&log, "H-8", true, false);
    let error = saga_error(smol::block_on(saga.resume(&mut journal, &history).unwrap()));
    assert_eq!(error.reason(), StopReason::Crashed);
    assert_eq!(entries(&log), ["undo pay", "cancel H-7"]);
    assert!(error.is_fully_compensated());
}

// ---------------------------------------------------------------------------
// Refusals (rule 15)
// ---------------------------------------------------------------------------

#[test]
fn unsaved_typed_step_is_refused_before_anything_is_written() {
    let mut saga = SagaBuilder::<String>::new()
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_typed_step(|| async { Ok::<u32, String>(1) }, |_: u32| async { Ok(()) })
        .build();
    assert_eq!(saga.unsaved_outputs().collect::<Vec<_>>(), [1]);
    let mut journal = MemoryJournal::new();
    let refused = saga.run_journaled(&mut journal, start()).unwrap_err();
    assert_eq!(refused, Refused::Unsaved { step: 1 });
    assert!(journal.durable().is_empty());
    assert!(journal.pending().is_empty());
    assert_eq!(journal.flushes(), 0);

    // Resuming it is refused too: its value could not have been saved.
    let created = Record {
        seq: 0,
        event: Event::Created {
            definition: "trip".into(),
            version: 1,
            fingerprint: saga.fingerprint(),
            parameters: vec![],
        },
    };
    let mut journal = MemoryJournal::from_records(vec![created.clone()]);
    let history = replay(journal.durable()).unwrap();
    let refused = saga.resume(&mut journal, &history).unwrap_err();
    assert_eq!(refused, Refused::Unsaved { step: 1 });
    assert_eq!(journal.durable(), [created]);
}

#[test]
fn finished_saga_is_refused_with_its_outcome() {
    for (steps, outcome) in [
        (&[("a", &[][..], &[][..])][..], Outcome::Committed),
        (&[("a", &[Fail][..], &[][..])][..], Outcome::Compensated),
    ] {
        let log = new_log();
        let mut saga = build(&log, steps, 1);
        let mut journal = MemoryJournal::new();
        let _ = smol::block_on(saga.run_journaled(&mut journal, start()).unwrap());
        let (records, flushes) = (journal.durable().to_vec(), journal.flushes());
        let history = replay(journal.durable()).unwrap();
        clear(&log);
        let refused = saga.resume(&mut journal, &history).unwrap_err();
        assert_eq!(refused, Refused::Finished(outcome));
        assert_eq!(journal.durable(), records, "nothing written");
        assert_eq!(journal.flushes(), flushes);
        assert!(entries(&log).is_empty(), "nothing run");
    }
}

#[test]
fn changed_shape_is_refused_with_both_fingerprints() {
    let log = new_log();
    let journal_steps: Spec<'_> = &[("a", &[], &[]), ("b", &[Hang], &[])];
    let old = build(&log, journal_steps, 1).fingerprint();
    let mut journal = crash(&log, journal_steps, 1);
    let records = journal.durable().to_vec();
    let history = replay(journal.durable()).unwrap();
    clear(&log);
    let mut renamed = build(&log, &[("a", &[], &[]), ("pay", &[], &[])], 1);
    let new = renamed.fingerprint();
    assert_ne!(old, new);
    let refused = renamed.resume(&mut journal, &history).unwrap_err();
    assert_eq!(
        refused,
        Refused::FingerprintChanged {
            journal: old,
            saga: new
        }
    );
    assert_eq!(journal.durable(), records);
    assert!(entries(&log).is_empty());
}

#[test]
fn retry_policy_is_not_part_of_the_shape() {
    let log = new_log();
    let steps: Spec<'_> = &[("a", &[], &[]), ("b", &[Hang], &[])];
    assert_eq!(
        build(&log, steps, 1).fingerprint(),
        build(&log, steps, 5).fingerprint()
    );
    let mut journal = crash(&log, steps, 1);
    // Resumed with a retry policy the crashed process did not have.
    clear(&log);
    resume(&log, &mut journal, &[("a", &[], &[]), ("b", &[], &[])], 2).unwrap();
    assert_eq!(entries(&log), ["do b"]);
}

#[test]
fn journal_mentioning_more_steps_is_refused() {
    let log = new_log();
    let mut small = build(&log, &[("a", &[], &[])], 1);
    let records = vec![
        created(&small),
        Record {
            seq: 1,
            event: Event::ActionStarted {
                step: 0,
                attempt: 1,
            },
        },
        Record {
            seq: 2,
            event: Event::ActionSucceeded {
                step: 0,
                output: None,
            },
        },
        Record {
            seq: 3,
            event: Event::ActionStarted {
                step: 1,
                attempt: 1,
            },
        },
    ];
    let mut journal = MemoryJournal::from_records(records.clone());
    let history: History = replay(journal.durable()).unwrap();
    assert_eq!(history.steps_mentioned(), 2);
    let refused = small.resume(&mut journal, &history).unwrap_err();
    assert_eq!(
        refused,
        Refused::TooFewSteps {
            mentioned: 2,
            steps: 1
        }
    );
    assert_eq!(journal.durable(), records);
    assert!(entries(&log).is_empty());
}

#[test]
fn undecodable_saved_value_is_refused() {
    let log = new_log();
    let mut saga = hotel_saga(&log, "H-7", false, false);
    let records = vec![
        Record {
            seq: 0,
            event: Event::Created {
                definition: "trip".into(),
                version: 1,
                fingerprint: saga.fingerprint(),
                parameters: vec![],
            },
        },
        Record {
            seq: 1,
            event: Event::ActionStarted {
                step: 0,
                attempt: 1,
            },
        },
        Record {
            seq: 2,
            event: Event::ActionSucceeded {
                step: 0,
                output: Some(vec![]),
            },
        },
    ];
    let mut journal = MemoryJournal::from_records(records.clone());
    let history = replay(journal.durable()).unwrap();
    let refused = saga.resume(&mut journal, &history).unwrap_err();
    assert!(
        matches!(refused, Refused::Restore { step: 0, .. }),
        "{refused:?}"
    );
    assert_eq!(journal.durable(), records);
    assert!(entries(&log).is_empty());
}

// ---------------------------------------------------------------------------
// More of rules 13 and 14
// ---------------------------------------------------------------------------

fn group_saga(log: &Log, a: &[Act], b: &[Act], attempts: u32) -> Saga<String> {
    SagaBuilder::<String>::new()
        .action_retry(Retry::attempts(attempts))
        .parallel(|group| {
            group
                .step(scripted(log, "a", a, &[]))
                .step(scripted(log, "b", b, &[]))
        })
        .step(scripted(log, "c", &[], &[]))
        .build()
}

#[test]
fn parallel_members_in_flight_are_both_recorded_and_run_again() {
    let log = new_log();
    let mut journal = MemoryJournal::new();
    let mut saga = group_saga(&log, &[Hang], &[Hang], 2);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    let started = events(journal.durable());
    assert!(started.contains(&Event::ActionStarted {
        step: 0,
        attempt: 1
    }));
    assert!(started.contains(&Event::ActionStarted {
        step: 1,
        attempt: 1
    }));
    journal.lose_power();
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.step(0).action, Progress::InFlight);
    assert_eq!(history.step(1).action, Progress::InFlight);
    clear(&log);
    let mut saga = group_saga(&log, &[], &[], 2);
    smol::block_on(saga.resume(&mut journal, &history).unwrap()).unwrap();
    let mut ran = entries(&log);
    ran.sort();
    assert_eq!(ran, ["do a", "do b", "do c"]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(0).action_attempts, 2);
    assert_eq!(history.step(1).action_attempts, 2);
}

#[test]
fn parallel_members_cut_short_without_retry_are_crashed_and_compensated() {
    let log = new_log();
    let mut journal = MemoryJournal::new();
    let mut saga = group_saga(&log, &[Hang], &[Hang], 1);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    let history = replay(journal.durable()).unwrap();
    clear(&log);
    let mut saga = group_saga(&log, &[], &[], 1);
    let error = saga_error(smol::block_on(saga.resume(&mut journal, &history).unwrap()));
    assert_eq!(error.reason(), StopReason::Crashed);
    assert_eq!(*error.error(), "cut short by a crash");
    assert_eq!(
        error.concurrent_failures().len(),
        1,
        "the other member failed too"
    );
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 2);
    let mut undone = entries(&log);
    undone.sort();
    assert_eq!(undone, ["undo a", "undo b"]);
}

#[derive(Debug, PartialEq)]
enum BookingError {
    Declined,
    Crashed(Option<String>),
}

impl core::fmt::Display for BookingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Declined => f.write_str("declined"),
            Self::Crashed(None) => f.write_str("crashed"),
            Self::Crashed(Some(message)) => write!(f, "crashed after {message}"),
        }
    }
}

impl From<Crashed> for BookingError {
    fn from(crashed: Crashed) -> Self {
        Self::Crashed(crashed.message().map(String::from))
    }
}

fn booking_saga(hang: bool, fail: bool, undo_hang: bool) -> Saga<BookingError> {
    SagaBuilder::<BookingError>::new()
        .step(FnStep::new(
            || async { Ok::<(), BookingError>(()) },
            move || async move {
                if undo_hang {
                    pending::<()>().await;
                }
                Ok(())
            },
        ))
        .step(FnStep::new(
            move || async move {
                if hang {
                    pending::<()>().await;
                }
                if fail {
                    Err(BookingError::Declined)
                } else {
                    Ok(())
                }
            },
            || async { Ok(()) },
        ))
        .build()
}

#[test]
fn a_users_error_type_is_made_from_crashed() {
    // Cut short with no retry left: `E::from(Crashed::new())`.
    let mut journal = MemoryJournal::new();
    let mut saga = booking_saga(true, false, false);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    let history = replay(journal.durable()).unwrap();
    let mut saga = booking_saga(false, false, false);
    let error = match smol::block_on(saga.resume(&mut journal, &history).unwrap()) {
        Err(DurableError::Saga(error)) => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(error.reason(), StopReason::Crashed);
    assert_eq!(*error.error(), BookingError::Crashed(None));

    // Unwinding from a recorded failure: `E::from(Crashed::recorded(..))`,
    // with the message as `E` displayed it.
    let mut journal = MemoryJournal::new();
    let mut saga = booking_saga(false, true, true);
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.last_error(), Some("declined"));
    let mut saga = booking_saga(false, true, false);
    let error = match smol::block_on(saga.resume(&mut journal, &history).unwrap()) {
        Err(DurableError::Saga(error)) => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        *error.error(),
        BookingError::Crashed(Some("declined".into()))
    );
    assert!(error.is_fully_compensated());
}

#[test]
fn during_a_backoff_the_failure_rides_the_next_flush_and_a_crash_can_lose_it() {
    let log = new_log();
    let mut saga = SagaBuilder::<String>::new()
        .sleeper(|_: Duration| pending::<()>())
        .action_retry(Retry::attempts(2).constant(Duration::from_secs(3600)))
        .step(scripted(&log, "a", &[Fail], &[]))
        .build();
    let mut journal = MemoryJournal::new();
    let mut run = saga.run_journaled(&mut journal, start()).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    assert_eq!(
        events(journal.pending()),
        [
            Event::ActionFailed {
                step: 0,
                attempt: 1,
                message: "a failed".into()
            },
            Event::Retrying {
                step: 0,
                compensation: false,
                attempt: 2
            },
        ]
    );
    journal.lose_power();
    assert!(journal.pending().is_empty());
    let history = replay(journal.durable()).unwrap();
    assert_eq!(
        history.step(0).action,
        Progress::InFlight,
        "as if cut short"
    );
    assert_eq!(history.step(0).action_attempts, 1);
}

// ---------------------------------------------------------------------------
// Crashed
// ---------------------------------------------------------------------------

#[test]
fn crashed_displays_and_converts_as_documented() {
    assert_eq!(Crashed::new().to_string(), "cut short by a crash");
    assert_eq!(Crashed::new().message(), None);
    assert_eq!(Crashed::default(), Crashed::new());
    let failed = Crashed::recorded("card declined");
    assert_eq!(failed.message(), Some("card declined"));
    assert_eq!(failed.to_string(), "card declined (before a restart)");
    assert_eq!(String::from(Crashed::new()), "cut short by a crash");
    assert_eq!(String::from(failed.clone()), failed.to_string());
    assert_eq!(String::from(failed), "card declined (before a restart)");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::from(Crashed::new());
    assert_eq!(boxed.to_string(), "cut short by a crash");
}
