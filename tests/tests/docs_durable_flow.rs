#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]
//! Durable flows, checked from the documentation alone: `FlowBuilder::saved`
//! and `FlowGroupBuilder::saved`, `Flow::run_journaled`, `Flow::resume`,
//! `Flow::fingerprint`, `Flow::unsaved_outputs`, `JournaledFlowRun` (and its
//! `abortable`), `Refused::Parameters` and `Refused::Unsaved`; the
//! `Registry`'s `register_flow`, `start` and `resume`, `DurableRun`,
//! `OwnedJournal`, `Quarantined::Refused`, `Quarantined::NotASaga` and
//! `From<Refused> for Quarantined`; `saga_sqlite::Durable` starting and
//! recovering a flow from one file, and `Store::list` with a corrupt saga;
//! and `MemoryJournal` (`lose_power`, `fail_after`, `durable`, `pending`,
//! `from_records`) as the crash simulator.
//!
//! A crash is a run polled by hand until a step hangs (its action pending
//! forever), then dropped; the next "process" builds the flow again with
//! actions that tag their values with its own name, so a value recomputed
//! instead of restored from the journal is seen.

use std::future::{Future, pending};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use saga_core::journal::{
    Codec, DurableError, DurableRun, Event, Journal, JournalError, JournalErrorKind, MemoryJournal,
    Outcome, OwnedJournal, Progress, Quarantined, Record, Refused, Registry, ReplayError,
    SagaContext, SagaId, SagaState, Start, Unwind, replay,
};
use saga_core::{AbortHandle, Crashed, Flow, Retry, SagaBuilder};
use saga_sqlite::{Durable, NotRun, Recovered, Store, StoreErrorKind};

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

fn has(log: &Log, entry: &str) -> bool {
    log.lock().unwrap().iter().any(|e| e == entry)
}

fn count_prefix(log: &Log, prefix: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with(prefix))
        .count()
}

/// What one process's flow does: which process it is (its values carry
/// the name), the step whose action hangs, the step whose action fails,
/// and how many attempts each action has.
#[derive(Clone, Copy, Debug)]
struct Script {
    process: &'static str,
    hang: Option<usize>,
    fail: Option<usize>,
    attempts: u32,
}

impl Script {
    fn new(process: &'static str) -> Self {
        Script {
            process,
            hang: None,
            fail: None,
            attempts: 1,
        }
    }
    fn hang(mut self, step: usize) -> Self {
        self.hang = Some(step);
        self
    }
    fn fail(mut self, step: usize) -> Self {
        self.fail = Some(step);
        self
    }
    fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }
}

async fn act(
    log: Log,
    script: Script,
    step: usize,
    read: String,
    value: String,
) -> Result<String, String> {
    log.lock()
        .unwrap()
        .push(format!("{} do{step} read {read}", script.process));
    if script.hang == Some(step) {
        pending::<()>().await;
    }
    if script.fail == Some(step) {
        return Err(format!("step {step} refused"));
    }
    Ok(value)
}

fn undo(log: &Log, script: Script, step: usize, value: &str) {
    log.lock()
        .unwrap()
        .push(format!("{} undo{step} got {value}", script.process));
}

type TripValues = (((u32, Option<String>), Option<String>), Option<String>);
type Trip = Flow<String, u32, String, TripValues>;

/// A trip of three saved steps: a flight for the input, a hotel for the
/// flight, a payment for the hotel; the result is the payment.
fn trip(log: &Log, script: Script) -> Trip {
    trip_named(log, script, "flight")
}

fn trip_named(log: &Log, script: Script, first: &'static str) -> Trip {
    let (a0, a1, a2) = (log.clone(), log.clone(), log.clone());
    let (c0, c1, c2) = (log.clone(), log.clone(), log.clone());
    let p = script.process;
    SagaBuilder::new()
        .action_retry(Retry::attempts(script.attempts))
        .input::<u32>()
        .then(
            move |n: &u32| {
                let (log, n) = (a0.clone(), *n);
                async move { act(log, script, 0, format!("{n}"), format!("{p}:flight-{n}")).await }
            },
            move |(_, flight): (&u32, &String)| {
                undo(&c0, script, 0, flight);
                async { Ok(()) }
            },
        )
        .named(first)
        .saved()
        .then(
            move |(_, flight): (&u32, &String)| {
                let (log, flight) = (a1.clone(), flight.clone());
                async move {
                    let value = format!("{p}:hotel[{flight}]");
                    act(log, script, 1, flight, value).await
                }
            },
            move |((_, _), hotel): ((&u32, &String), &String)| {
                undo(&c1, script, 1, hotel);
                async { Ok(()) }
            },
        )
        .named("hotel")
        .saved()
        .then(
            move |((_, _), hotel): ((&u32, &String), &String)| {
                let (log, hotel) = (a2.clone(), hotel.clone());
                async move {
                    let value = format!("{p}:pay[{hotel}]");
                    act(log, script, 2, hotel, value).await
                }
            },
            move |(_, paid): (((&u32, &String), &String), &String)| {
                undo(&c2, script, 2, paid);
                async { Ok(()) }
            },
        )
        .named("pay")
        .saved()
        .build_with(|(_, paid)| paid)
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// Polls `future` once.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut cx())
}

/// A journal shared with the test (so that one a `DurableRun` owns can be
/// read, and handed to the next process), whose flushes can be held back:
/// after `allowed` more flushes, a flush stays pending.
#[derive(Clone, Debug)]
struct Shared {
    inner: Arc<Mutex<MemoryJournal>>,
    allowed: Arc<Mutex<Option<usize>>>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            inner: Arc::new(Mutex::new(MemoryJournal::new())),
            allowed: Arc::new(Mutex::new(None)),
        }
    }
    fn with(journal: MemoryJournal) -> Self {
        Shared {
            inner: Arc::new(Mutex::new(journal)),
            allowed: Arc::new(Mutex::new(None)),
        }
    }
    fn durable(&self) -> Vec<Record> {
        self.inner.lock().unwrap().durable().to_vec()
    }
    fn pending(&self) -> Vec<Record> {
        self.inner.lock().unwrap().pending().to_vec()
    }
    fn allow(&self, flushes: Option<usize>) {
        *self.allowed.lock().unwrap() = flushes;
    }
    fn owned(&self) -> OwnedJournal {
        Box::new(self.clone())
    }
}

impl Journal for Shared {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.inner.lock().unwrap().append(record)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        let mut allowed = self.allowed.lock().unwrap();
        match &mut *allowed {
            Some(0) => return Poll::Pending,
            Some(n) => *n -= 1,
            None => {}
        }
        drop(allowed);
        self.inner.lock().unwrap().poll_flush(cx)
    }
}

fn encoded<C: Codec>(value: &C) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

fn created(records: &[Record]) -> (String, u32, u64, Vec<u8>) {
    match &records[0].event {
        Event::Created {
            definition,
            version,
            fingerprint,
            parameters,
        } => (
            definition.clone(),
            *version,
            *fingerprint,
            parameters.clone(),
        ),
        other => panic!("the first record is Created: {other:?}"),
    }
}

/// Runs process 1 of `trip` (hanging at `hang`) journaled in a
/// `MemoryJournal` with input 7, and drops the run once it is pending.
fn crash_at(log: &Log, hang: usize, attempts: u32) -> MemoryJournal {
    let mut journal = MemoryJournal::new();
    let mut flow = trip(log, Script::new("p1").hang(hang).attempts(attempts));
    let mut run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    journal
}

// ---------------------------------------------------------------------------
// FlowBuilder::saved, FlowGroupBuilder::saved, Flow::unsaved_outputs
// ---------------------------------------------------------------------------

/// "Which steps keep a value that cannot be saved to a journal (flow steps
/// not marked saved ...)": a flow with every value saved has none; one
/// whose middle step is not saved names that step.
#[test]
fn unsaved_outputs_names_the_flow_steps_not_marked_saved() {
    let log = new_log();
    assert_eq!(trip(&log, Script::new("p")).unsaved_outputs().count(), 0);

    let flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(n + 1) }
            },
            |_| async { Ok(()) },
        )
        .saved()
        .then(
            |(_, a): (&u32, &u32)| {
                let a = *a;
                async move { Ok::<_, String>(a + 1) }
            },
            |_| async { Ok(()) },
        )
        .then(
            |((_, _), b): ((&u32, &u32), &u32)| {
                let b = *b;
                async move { Ok::<_, String>(b + 1) }
            },
            |_| async { Ok(()) },
        )
        .saved()
        .build();
    assert_eq!(flow.unsaved_outputs().collect::<Vec<_>>(), [1]);
}

/// `FlowGroupBuilder::saved` saves "the value of the member added last":
/// a group whose second member is not saved has that member (step 2, each
/// member being one step) among the unsaved outputs.
#[test]
fn group_saved_marks_the_member_added_last() {
    let flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(n) }
            },
            |_| async { Ok(()) },
        )
        .saved()
        .parallel(|group| {
            group
                .then(
                    |(_, n): (&u32, &u32)| {
                        let n = *n;
                        async move { Ok::<_, String>(n + 1) }
                    },
                    |_| async { Ok(()) },
                )
                .saved()
                .then(
                    |(_, n): (&u32, &u32)| {
                        let n = *n;
                        async move { Ok::<_, String>(n + 2) }
                    },
                    |_| async { Ok(()) },
                )
        })
        .build();
    assert_eq!(flow.len(), 3);
    assert_eq!(flow.unsaved_outputs().collect::<Vec<_>>(), [2]);
}

/// `Flow::run_journaled`: "Refused (nothing written) when a step keeps a
/// value it cannot save", as `Refused::Unsaved { step }`.
#[test]
fn run_journaled_refuses_an_unsaved_step_and_writes_nothing() {
    let log = new_log();
    let probe = log.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |n: &u32| {
                probe.lock().unwrap().push(format!("ran {n}"));
                async { Ok::<_, String>(1_u32) }
            },
            |_| async { Ok(()) },
        )
        .saved()
        .then(
            |(_, a): (&u32, &u32)| {
                let a = *a;
                async move { Ok::<_, String>(a) }
            },
            |_| async { Ok(()) },
        )
        .build();
    let mut journal = MemoryJournal::new();
    let refused = flow
        .run_journaled(&mut journal, "unsaved", 1, 3)
        .unwrap_err();
    assert_eq!(refused, Refused::Unsaved { step: 1 });
    assert!(journal.durable().is_empty() && journal.pending().is_empty());
    assert!(entries(&log).is_empty());
}

// ---------------------------------------------------------------------------
// Flow::run_journaled
// ---------------------------------------------------------------------------

/// "the first record names definition `definition`, version `version`,
/// the flow's fingerprint, and holds the encoded input as the saga's
/// parameters."
#[test]
fn run_journaled_first_record_names_definition_version_fingerprint_and_input() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p1"));
    let fingerprint = flow.fingerprint();
    let mut journal = MemoryJournal::new();
    let run = flow.run_journaled(&mut journal, "trip", 4, 7).unwrap();
    smol::block_on(run).map_err(|e| e.to_string()).unwrap();
    let (definition, version, recorded, parameters) = created(journal.durable());
    assert_eq!(
        (definition.as_str(), version, recorded),
        ("trip", 4, fingerprint)
    );
    assert_eq!(u32::decode(&parameters).unwrap(), 7);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.fingerprint, fingerprint);
    assert_eq!(u32::decode(&history.parameters).unwrap(), 7);
}

/// "Resolves to the flow's result", and "Each step's value is recorded
/// with its success": each `ActionSucceeded` holds the encoded value.
#[test]
fn run_journaled_resolves_to_the_result_and_records_each_value_with_its_success() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p1"));
    let mut journal = MemoryJournal::new();
    let run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    let paid = smol::block_on(run).map_err(|e| e.to_string()).unwrap();
    assert_eq!(paid, "p1:pay[p1:hotel[p1:flight-7]]");

    let outputs: Vec<(u32, String)> = journal
        .durable()
        .iter()
        .filter_map(|record| match &record.event {
            Event::ActionSucceeded { step, output } => Some((
                *step,
                String::decode(output.as_deref().expect("a saved value")).unwrap(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        outputs,
        [
            (0, "p1:flight-7".to_owned()),
            (1, "p1:hotel[p1:flight-7]".to_owned()),
            (2, "p1:pay[p1:hotel[p1:flight-7]]".to_owned()),
        ]
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(
        history
            .step(1)
            .output
            .as_deref()
            .map(|b| String::decode(b).unwrap()),
        Some("p1:hotel[p1:flight-7]".to_owned())
    );
}

/// "Resolves ... to a `DurableError`: a failed flow's values are dropped
/// (the journal holds the saved ones)": the run fails with
/// `DurableError::Saga`, the compensations read the values, and the
/// journal holds the saved values and the compensated end.
#[test]
fn run_journaled_failed_flow_is_a_saga_error_and_the_journal_holds_the_values() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p1").fail(2));
    let mut journal = MemoryJournal::new();
    let run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    let error = smol::block_on(run).unwrap_err();
    let DurableError::Saga(report) = &error else {
        panic!("the saga failed: {error}");
    };
    assert_eq!(report.failed_step(), 2);
    assert!(report.is_fully_compensated());
    assert_eq!(
        entries(&log)[3..],
        [
            "p1 undo1 got p1:hotel[p1:flight-7]",
            "p1 undo0 got p1:flight-7"
        ]
    );
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert_eq!(
        history
            .step(0)
            .output
            .as_deref()
            .map(|b| String::decode(b).unwrap()),
        Some("p1:flight-7".to_owned())
    );
}

/// `DurableError::Journal`: "The journal failed: the run stopped where it
/// was, without compensating, and the journal holds the truth. Resume the
/// saga from it". `MemoryJournal::fail_after(1)` fails the second flush;
/// the durable records, copied into `MemoryJournal::from_records`, resume
/// the flow, which commits.
#[test]
fn a_journal_failure_stops_the_flow_without_compensating_and_resume_finishes_it() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p1"));
    let mut journal = MemoryJournal::new();
    journal.fail_after(1);
    let run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    let error = smol::block_on(run).unwrap_err();
    let journal_error = error.journal().expect("the journal failed");
    assert_eq!(journal_error.kind(), JournalErrorKind::Storage);
    assert_eq!(count_prefix(&log, "p1 undo"), 0, "{:?}", entries(&log));
    assert_eq!(journal.flushes(), 1);

    let records = journal.durable().to_vec();
    let history = replay(&records).unwrap();
    assert_eq!(history.state(), SagaState::Forward);
    let mut copy = MemoryJournal::from_records(records);
    let mut flow = trip(&log, Script::new("p2").attempts(2));
    let resumed = flow.resume(&mut copy, &history).unwrap();
    let paid = smol::block_on(resumed).map_err(|e| e.to_string()).unwrap();
    // Step 0's success was not durable: it runs again, in process 2.
    assert_eq!(paid, "p2:pay[p2:hotel[p2:flight-7]]");
    let history = replay(copy.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

/// `JournaledFlowRun`, cancel safety: "dropping it stops the flow without
/// compensating, and `Flow::resume` finishes it."
#[test]
fn dropping_a_journaled_flow_run_stops_it_without_compensating() {
    let log = new_log();
    let journal = crash_at(&log, 1, 1);
    assert_eq!(entries(&log), ["p1 do0 read 7", "p1 do1 read p1:flight-7"]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Forward);
    assert_eq!(history.step(0).action, Progress::Succeeded);
    assert_eq!(history.step(1).action, Progress::InFlight);
}

/// `JournaledFlowRun::abortable`: "Attaches an `AbortHandle`, as
/// `Run::abortable` does": an abort while step 1 runs stops the flow
/// before step 2, compensates steps 1 and 0 with their values, and the
/// journal says it unwound because it was aborted.
#[test]
fn abortable_flow_run_compensates_with_the_values_and_journals_the_abort() {
    let log = new_log();
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let undone = log.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(format!("a{n}")) }
            },
            {
                let undone = undone.clone();
                move |(_, a): (&u32, &String)| {
                    undone.lock().unwrap().push(format!("undo0 {a}"));
                    async { Ok(()) }
                }
            },
        )
        .saved()
        .then(
            move |(_, a): (&u32, &String)| {
                trigger.abort();
                let b = format!("{a}b");
                async move { Ok::<_, String>(b) }
            },
            move |(_, b): ((&u32, &String), &String)| {
                undone.lock().unwrap().push(format!("undo1 {b}"));
                async { Ok(()) }
            },
        )
        .saved()
        .then(|_| async { Ok::<_, String>(0_u8) }, |_| async { Ok(()) })
        .saved()
        .build();
    let mut journal = MemoryJournal::new();
    let run = flow
        .run_journaled(&mut journal, "abort", 1, 5)
        .unwrap()
        .abortable(&abort);
    let error = smol::block_on(run).unwrap_err();
    let report = error.saga().expect("the saga failed");
    assert!(report.aborted());
    assert_eq!(report.failed_step(), 2);
    assert_eq!(entries(&log), ["undo1 a5b", "undo0 a5"]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert_eq!(history.unwinding(), Some((2, Unwind::Aborted)));
}

// ---------------------------------------------------------------------------
// Flow::resume
// ---------------------------------------------------------------------------

/// "each step whose action succeeded gets back its saved value, so the
/// steps after it ... read the value the original action returned", and
/// is not run again; the input comes from the journal's parameters.
#[test]
fn resume_hands_later_steps_the_values_the_crashed_run_returned() {
    let log = new_log();
    let mut journal = crash_at(&log, 2, 2);
    let history = replay(journal.durable()).unwrap();
    let mut flow = trip(&log, Script::new("p2").attempts(2));
    let resumed = flow.resume(&mut journal, &history).unwrap();
    let paid = smol::block_on(resumed).map_err(|e| e.to_string()).unwrap();
    assert_eq!(paid, "p2:pay[p1:hotel[p1:flight-7]]");
    assert_eq!(count_prefix(&log, "p2 do0"), 0, "{:?}", entries(&log));
    assert_eq!(count_prefix(&log, "p2 do1"), 0, "{:?}", entries(&log));
    assert!(has(&log, "p2 do2 read p1:hotel[p1:flight-7]"));
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(2).action_attempts, 2);
}

/// "The input is decoded from the journal's parameters": a step that runs
/// for the first time after the resume reads the input the first process
/// was given.
#[test]
fn resume_decodes_the_input_from_the_journal() {
    let log = new_log();
    // Process 1 hangs in step 0, whose retry allows a second attempt.
    let mut journal = crash_at(&log, 0, 2);
    let history = replay(journal.durable()).unwrap();
    let mut flow = trip(&log, Script::new("p2").attempts(2));
    let resumed = flow.resume(&mut journal, &history).unwrap();
    let paid = smol::block_on(resumed).map_err(|e| e.to_string()).unwrap();
    assert!(has(&log, "p2 do0 read 7"), "{:?}", entries(&log));
    assert_eq!(paid, "p2:pay[p2:hotel[p2:flight-7]]");
}

/// "... and its compensation, read the value the original action
/// returned": the resumed step whose action cannot run again fails
/// (crashed, no retry left; left applied, as a `then` step cut short) and
/// the compensations of the steps before it
/// receive process 1's values.
#[test]
fn resume_hands_compensations_the_saved_values() {
    let log = new_log();
    let mut journal = crash_at(&log, 2, 1);
    let history = replay(journal.durable()).unwrap();
    let mut flow = trip(&log, Script::new("p2"));
    let resumed = flow.resume(&mut journal, &history).unwrap();
    let error = smol::block_on(resumed).unwrap_err();
    let report = error.saga().expect("the saga failed");
    assert_eq!(report.failed_step(), 2);
    // Cut short by the crash with no retry left: it fails with
    // `E::from(Crashed)`, and a `then` step cut short "has no value to
    // undo: the step is then reported as left applied".
    assert_eq!(*report.error(), String::from(Crashed::new()));
    assert_eq!(report.uncompensated_steps().collect::<Vec<_>>(), [2]);
    assert_eq!(report.compensated_count(), 2);
    assert_eq!(
        entries(&log)[3..],
        [
            "p2 undo1 got p1:hotel[p1:flight-7]",
            "p2 undo0 got p1:flight-7"
        ]
    );
    let history = replay(journal.durable()).unwrap();
    // "Stuck: It failed and something is left applied".
    assert_eq!(history.state(), SagaState::Finished(Outcome::Stuck));
}

/// A flow that crashed while compensating goes on compensating when
/// resumed (as `Saga::resume`), and the compensation run again receives
/// the saved value.
#[test]
fn resume_while_unwinding_compensates_with_the_saved_values() {
    let log = new_log();
    let hang_undo = Arc::new(AtomicUsize::new(1));
    let build = |process: &'static str| {
        let (a0, c0, hang) = (log.clone(), log.clone(), hang_undo.clone());
        SagaBuilder::new()
            .input::<u32>()
            .then(
                move |n: &u32| {
                    let (log, n) = (a0.clone(), *n);
                    async move {
                        act(
                            log,
                            Script::new(process),
                            0,
                            format!("{n}"),
                            format!("{process}:v{n}"),
                        )
                        .await
                    }
                },
                move |(_, v): (&u32, &String)| {
                    undo(&c0, Script::new(process), 0, v);
                    let hang = hang.load(Ordering::SeqCst) == 1;
                    async move {
                        if hang {
                            pending::<()>().await;
                        }
                        Ok(())
                    }
                },
            )
            .saved()
            .then(
                |_| async { Err::<u32, _>("no".to_owned()) },
                |_| async { Ok(()) },
            )
            .saved()
            .build()
    };
    let mut journal = MemoryJournal::new();
    let mut flow = build("p1");
    let mut run = flow.run_journaled(&mut journal, "unwind", 1, 3).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    assert_eq!(entries(&log).last().unwrap(), "p1 undo0 got p1:v3");
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Unwinding);

    hang_undo.store(0, Ordering::SeqCst);
    let mut flow = build("p2");
    let resumed = flow.resume(&mut journal, &history).unwrap();
    let error = smol::block_on(resumed).unwrap_err();
    assert!(error.saga().expect("failed").is_fully_compensated());
    assert_eq!(entries(&log).last().unwrap(), "p2 undo0 got p1:v3");
    assert_eq!(count_prefix(&log, "p2 do"), 0);
}

/// "Refused, with nothing run or written, ... when the journal's
/// parameters do not decode as an `I` (`Refused::Parameters`)."
#[test]
fn resume_refuses_parameters_that_do_not_decode() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p2"));
    let records = vec![
        Record {
            seq: 0,
            event: Event::Created {
                definition: "trip".into(),
                version: 1,
                fingerprint: flow.fingerprint(),
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
    ];
    let mut journal = MemoryJournal::from_records(records.clone());
    let history = replay(journal.durable()).unwrap();
    let refused = flow.resume(&mut journal, &history).unwrap_err();
    assert!(matches!(refused, Refused::Parameters(_)), "{refused:?}");
    assert_eq!(journal.durable(), &records[..]);
    assert!(journal.pending().is_empty());
    assert!(entries(&log).is_empty());
}

/// "Refused, with nothing run or written, as `Saga::resume` is": a
/// finished flow is `Refused::Finished`.
#[test]
fn resume_refuses_a_finished_flow() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p1"));
    let mut journal = MemoryJournal::new();
    let run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    smol::block_on(run).map_err(|e| e.to_string()).unwrap();
    let before = journal.durable().to_vec();
    let history = replay(journal.durable()).unwrap();
    let ran = entries(&log).len();
    let refused = flow.resume(&mut journal, &history).unwrap_err();
    assert_eq!(refused, Refused::Finished(Outcome::Committed));
    assert_eq!(journal.durable(), &before[..]);
    assert_eq!(entries(&log).len(), ran);
}

/// "Refused ... when the saga's shape is not the journal's": a flow whose
/// first step is named otherwise is `Refused::FingerprintChanged` with
/// both fingerprints.
#[test]
fn resume_refuses_a_flow_of_another_shape() {
    let log = new_log();
    let mut journal = crash_at(&log, 1, 1);
    let history = replay(journal.durable()).unwrap();
    let mut flow = trip_named(&log, Script::new("p2"), "plane");
    let refused = flow.resume(&mut journal, &history).unwrap_err();
    assert_eq!(
        refused,
        Refused::FingerprintChanged {
            journal: history.fingerprint,
            saga: flow.fingerprint(),
        }
    );
    assert_eq!(count_prefix(&log, "p2"), 0);
    assert!(journal.pending().is_empty());
}

/// "Refused ... when a step cannot be restored": a journaled value that
/// does not decode is `Refused::Restore` for that step.
#[test]
fn resume_refuses_a_saved_value_that_does_not_decode() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p2"));
    let records = vec![
        Record {
            seq: 0,
            event: Event::Created {
                definition: "trip".into(),
                version: 1,
                fingerprint: flow.fingerprint(),
                parameters: encoded(&7_u32),
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
    let mut journal = MemoryJournal::from_records(records);
    let history = replay(journal.durable()).unwrap();
    let refused = flow.resume(&mut journal, &history).unwrap_err();
    assert!(
        matches!(refused, Refused::Restore { step: 0, .. }),
        "{refused:?}"
    );
    assert!(entries(&log).is_empty());
}

/// A parallel group's members saved with `FlowGroupBuilder::saved`: the
/// step after the group, resumed, reads both members' values as the
/// crashed run's actions returned them.
#[test]
fn resume_restores_the_values_of_a_groups_saved_members() {
    let log = new_log();
    let build = |process: &'static str, hang: bool| {
        let (a, b, c) = (log.clone(), log.clone(), log.clone());
        SagaBuilder::new()
            .action_retry(Retry::attempts(2))
            .input::<u32>()
            .parallel(|group| {
                group
                    .then(
                        move |n: &u32| {
                            a.lock().unwrap().push(format!("{process} left"));
                            let v = format!("{process}:L{n}");
                            async move { Ok::<_, String>(v) }
                        },
                        |_| async { Ok(()) },
                    )
                    .saved()
                    .then(
                        move |n: &u32| {
                            b.lock().unwrap().push(format!("{process} right"));
                            let v = format!("{process}:R{n}");
                            async move { Ok::<_, String>(v) }
                        },
                        |_| async { Ok(()) },
                    )
                    .saved()
            })
            .then(
                move |(_, (l, r)): (&u32, (&String, &String))| {
                    c.lock()
                        .unwrap()
                        .push(format!("{process} last read {l} {r}"));
                    let v = format!("{l}+{r}");
                    async move {
                        if hang {
                            pending::<()>().await;
                        }
                        Ok::<_, String>(v)
                    }
                },
                |_| async { Ok(()) },
            )
            .saved()
            .build_with(|(_, last)| last)
    };
    let mut journal = MemoryJournal::new();
    let mut flow = build("p1", true);
    assert_eq!(flow.unsaved_outputs().count(), 0);
    let mut run = flow.run_journaled(&mut journal, "group", 1, 4).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    let history = replay(journal.durable()).unwrap();
    let mut flow = build("p2", false);
    let resumed = flow.resume(&mut journal, &history).unwrap();
    let last = smol::block_on(resumed).map_err(|e| e.to_string()).unwrap();
    assert_eq!(last, "p1:L4+p1:R4");
    assert!(has(&log, "p2 last read p1:L4 p1:R4"), "{:?}", entries(&log));
    assert_eq!(
        count_prefix(&log, "p2 left") + count_prefix(&log, "p2 right"),
        0
    );
}

/// An aborted handle attached to a resumed flow: "a run given an aborted
/// handle stops before its first action", so the resumed flow compensates
/// what the journal says was applied, with the saved values.
#[test]
fn an_aborted_handle_on_a_resumed_flow_compensates_with_the_saved_values() {
    let log = new_log();
    let mut journal = crash_at(&log, 2, 2);
    let history = replay(journal.durable()).unwrap();
    let abort = AbortHandle::new();
    abort.abort();
    let mut flow = trip(&log, Script::new("p2").attempts(2));
    let resumed = flow
        .resume(&mut journal, &history)
        .unwrap()
        .abortable(&abort);
    let error = smol::block_on(resumed).unwrap_err();
    assert!(error.saga().expect("failed").aborted());
    assert_eq!(count_prefix(&log, "p2 do"), 0, "{:?}", entries(&log));
    assert!(
        has(&log, "p2 undo1 got p1:hotel[p1:flight-7]"),
        "{:?}",
        entries(&log)
    );
    assert!(has(&log, "p2 undo0 got p1:flight-7"), "{:?}", entries(&log));
}

// ---------------------------------------------------------------------------
// Flow::fingerprint
// ---------------------------------------------------------------------------

/// "The fingerprint of the flow's shape, as `Saga::fingerprint`": stable
/// across builds, changed by a step's name and by what a step saves, not
/// by retry policies.
#[test]
fn fingerprint_is_the_shape_names_and_saves_not_the_policies() {
    let log = new_log();
    let one = trip(&log, Script::new("a")).fingerprint();
    assert_eq!(one, trip(&log, Script::new("b")).fingerprint());
    assert_eq!(one, trip(&log, Script::new("a").attempts(5)).fingerprint());
    assert_ne!(
        one,
        trip_named(&log, Script::new("a"), "plane").fingerprint()
    );

    let saved = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(n) }
            },
            |_| async { Ok(()) },
        )
        .saved()
        .build();
    let unsaved = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(n) }
            },
            |_| async { Ok(()) },
        )
        .build();
    assert_ne!(saved.fingerprint(), unsaved.fingerprint());
}

// ---------------------------------------------------------------------------
// MemoryJournal
// ---------------------------------------------------------------------------

/// `MemoryJournal`: "Appended records are pending until a flush makes
/// them durable; `lose_power` drops what is pending"; `from_records` is
/// "A journal holding records, durable"; `fail_after(n)` "Makes every
/// flush after the next `n` ones fail with a storage error (and keep
/// nothing)"; `flushes` counts "flushes [that] made records durable".
#[test]
fn memory_journal_pending_durable_lose_power_fail_after_and_from_records() {
    let started = |seq| Record {
        seq,
        event: Event::ActionStarted {
            step: 0,
            attempt: 1,
        },
    };
    let created = Record {
        seq: 0,
        event: Event::Created {
            definition: "x".into(),
            version: 1,
            fingerprint: 1,
            parameters: vec![],
        },
    };
    let mut journal = MemoryJournal::from_records(vec![created.clone()]);
    assert_eq!(journal.durable(), std::slice::from_ref(&created));
    assert!(journal.pending().is_empty());

    journal.fail_after(1);
    journal.append(&started(1)).unwrap();
    assert_eq!(journal.pending(), [started(1)]);
    assert!(matches!(journal.poll_flush(&mut cx()), Poll::Ready(Ok(()))));
    assert_eq!(journal.durable().len(), 2);
    assert_eq!(journal.flushes(), 1);

    journal.append(&started(2)).unwrap();
    let Poll::Ready(Err(error)) = journal.poll_flush(&mut cx()) else {
        panic!("the flush after the next one fails");
    };
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert_eq!(journal.durable().len(), 2, "a failed flush keeps nothing");
    assert_eq!(journal.flushes(), 1);

    let mut other = MemoryJournal::new();
    other.append(&created).unwrap();
    other.lose_power();
    assert!(other.pending().is_empty() && other.durable().is_empty());
}

/// A crash between a step's success and the next flush: its success was
/// pending, `lose_power` drops it, and the resumed flow runs that action
/// again (its retry policy allows it), so later steps read the new value.
#[test]
fn lose_power_loses_an_unflushed_success_and_the_resumed_flow_runs_it_again() {
    let log = new_log();
    let mut journal = Shared::new();
    journal.allow(Some(1)); // Created and step 0's start only.
    let mut flow = trip(&log, Script::new("p1").attempts(2));
    let mut run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    assert_eq!(entries(&log), ["p1 do0 read 7"]);
    assert!(!journal.pending().is_empty(), "step 0's success is pending");
    journal.inner.lock().unwrap().lose_power();
    assert!(journal.pending().is_empty());

    let durable = journal.durable();
    let history = replay(&durable).unwrap();
    assert_eq!(history.step(0).action, Progress::InFlight);
    journal.allow(None);
    let mut flow = trip(&log, Script::new("p2").attempts(2));
    let resumed = flow.resume(&mut journal, &history).unwrap();
    let paid = smol::block_on(resumed).map_err(|e| e.to_string()).unwrap();
    assert_eq!(paid, "p2:pay[p2:hotel[p2:flight-7]]");
    let history = replay(&journal.durable()).unwrap();
    assert_eq!(history.step(0).action_attempts, 2);
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

// ---------------------------------------------------------------------------
// Registry: register_flow, start, resume, DurableRun, Quarantined
// ---------------------------------------------------------------------------

fn flow_registry(log: &Log, script: Script) -> Registry<String> {
    let log = log.clone();
    let mut registry = Registry::<String>::new();
    registry.register_flow("trip", 1, move |_: &SagaContext| trip(&log, script));
    registry
}

/// `Registry::register_flow` and `Registry::start`: "Builds the ... flow
/// of start's definition from its parameters and starts it with
/// `journal`, as `Flow::run_journaled` would": the flow's input is the
/// parameters, and its journal is the flow's.
#[test]
fn registry_start_runs_a_flow_with_its_parameters_as_input() {
    let log = new_log();
    let registry = flow_registry(&log, Script::new("p1"));
    let journal = Shared::new();
    let start = Start::new("trip", 1, registry.encode_parameters(&9_u32));
    let run: DurableRun<String> = registry
        .start(journal.owned(), start, &SagaContext::new(SagaId(1)))
        .unwrap();
    smol::block_on(run).map_err(|e| e.to_string()).unwrap();
    assert!(has(&log, "p1 do2 read p1:hotel[p1:flight-9]"));
    let records = journal.durable();
    let (definition, version, fingerprint, parameters) = created(&records);
    assert_eq!((definition.as_str(), version), ("trip", 1));
    assert_eq!(fingerprint, trip(&log, Script::new("x")).fingerprint());
    assert_eq!(u32::decode(&parameters).unwrap(), 9);
    let history = replay(&records).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

/// A `DurableRun` "owns the saga (or the flow) and its journal, so it can
/// be spawned": it runs on another thread after the registry is dropped.
#[test]
fn a_durable_run_owns_its_flow_and_journal_and_can_be_spawned() {
    let log = new_log();
    let registry = flow_registry(&log, Script::new("p1"));
    let journal = Shared::new();
    let start = Start::new("trip", 1, registry.encode_parameters(&2_u32));
    let run = registry
        .start(journal.owned(), start, &SagaContext::new(SagaId(2)))
        .unwrap();
    drop(registry);
    let outcome = std::thread::spawn(move || smol::block_on(run).map_err(|e| e.to_string()))
        .join()
        .unwrap();
    assert_eq!(outcome, Ok(()));
    let history = replay(&journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

/// A failed flow's `DurableRun` resolves to `DurableError::Saga` (its
/// result, on success, is dropped; the failure is not).
#[test]
fn a_durable_run_of_a_failing_flow_is_a_saga_error() {
    let log = new_log();
    let registry = flow_registry(&log, Script::new("p1").fail(1));
    let journal = Shared::new();
    let start = Start::new("trip", 1, registry.encode_parameters(&2_u32));
    let run = registry
        .start(journal.owned(), start, &SagaContext::new(SagaId(3)))
        .unwrap();
    let error = smol::block_on(run).unwrap_err();
    assert_eq!(error.saga().expect("the saga failed").failed_step(), 1);
    assert!(has(&log, "p1 undo0 got p1:flight-2"));
    let history = replay(&journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
}

/// `Registry::start`: "Nothing is written and nothing runs when the
/// definition is unknown, its parameters do not decode, or a step keeps a
/// value it cannot save."
#[test]
fn registry_start_writes_and_runs_nothing_when_it_refuses() {
    let log = new_log();
    let mut registry = flow_registry(&log, Script::new("p1"));
    let probe = log.clone();
    registry.register_flow("unsaved", 1, move |_: &SagaContext| {
        let probe = probe.clone();
        SagaBuilder::new()
            .input::<u32>()
            .then(
                move |_: &u32| {
                    probe.lock().unwrap().push("unsaved ran".into());
                    async { Ok::<_, String>(1_u32) }
                },
                |_| async { Ok(()) },
            )
            .build()
    });
    let context = SagaContext::new(SagaId(4));
    let params = registry.encode_parameters(&1_u32);

    let journal = Shared::new();
    let unknown = registry.start(
        journal.owned(),
        Start::new("tour", 1, params.clone()),
        &context,
    );
    assert_eq!(
        unknown.err(),
        Some(Quarantined::UnknownDefinition {
            name: "tour".into(),
            version: 1
        })
    );
    let bad = registry.start(journal.owned(), Start::new("trip", 1, vec![]), &context);
    assert!(
        matches!(bad, Err(Quarantined::Parameters(_))),
        "{:?}",
        bad.err()
    );
    let unsaved = registry.start(journal.owned(), Start::new("unsaved", 1, params), &context);
    assert_eq!(
        unsaved.err(),
        Some(Quarantined::Refused(Refused::Unsaved { step: 0 }))
    );
    assert!(journal.durable().is_empty() && journal.pending().is_empty());
    assert!(entries(&log).is_empty());
}

/// `Registry::build` and `Registry::rebuild` build sagas only: a flow's
/// definition is `Quarantined::NotASaga { name, version }`.
#[test]
fn registry_build_and_rebuild_say_a_flow_is_not_a_saga() {
    let log = new_log();
    let registry = flow_registry(&log, Script::new("p1"));
    let context = SagaContext::new(SagaId(5));
    let built = registry.build("trip", 1, &registry.encode_parameters(&1_u32), &context);
    assert_eq!(
        built.err(),
        Some(Quarantined::NotASaga {
            name: "trip".into(),
            version: 1
        })
    );
    let journal = crash_at(&log, 1, 1);
    let history = replay(journal.durable()).unwrap();
    let rebuilt = registry.rebuild(&history, &context);
    assert_eq!(
        rebuilt.err(),
        Some(Quarantined::NotASaga {
            name: "trip".into(),
            version: 1
        })
    );
}

/// `Registry::resume`: "Builds again the ... flow that `history` tells of
/// and resumes it with `journal` ..., as `Flow::resume` would": the later
/// steps read the values the first process's actions returned.
#[test]
fn registry_resume_finishes_a_flow_with_the_journaled_values() {
    let log = new_log();
    let registry = flow_registry(&log, Script::new("p1").hang(2).attempts(2));
    let journal = Shared::new();
    let context = SagaContext::new(SagaId(6));
    let start = Start::new("trip", 1, registry.encode_parameters(&7_u32));
    let mut run = registry.start(journal.owned(), start, &context).unwrap();
    assert!(run.as_mut().poll(&mut cx()).is_pending());
    drop(run);

    let history = replay(&journal.durable()).unwrap();
    let registry = flow_registry(&log, Script::new("p2").attempts(2));
    let resumed = registry.resume(journal.owned(), history, &context).unwrap();
    smol::block_on(resumed).map_err(|e| e.to_string()).unwrap();
    assert!(
        has(&log, "p2 do2 read p1:hotel[p1:flight-7]"),
        "{:?}",
        entries(&log)
    );
    assert_eq!(
        count_prefix(&log, "p2 do0") + count_prefix(&log, "p2 do1"),
        0
    );
    let history = replay(&journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

/// `Registry::resume`: "Nothing is written and nothing runs when ... the
/// saga finished ... (`Quarantined::Refused`)", or "its shape changed"
/// (`Quarantined::FingerprintChanged`, by `From<Refused>`), or the
/// definition is unknown.
#[test]
fn registry_resume_refuses_finished_changed_and_unknown_flows() {
    let log = new_log();
    let registry = flow_registry(&log, Script::new("p1"));
    let journal = Shared::new();
    let context = SagaContext::new(SagaId(7));
    let start = Start::new("trip", 1, registry.encode_parameters(&7_u32));
    smol::block_on(registry.start(journal.owned(), start, &context).unwrap())
        .map_err(|e| e.to_string())
        .unwrap();
    let finished = replay(&journal.durable()).unwrap();
    let written = journal.durable().len();
    let ran = entries(&log).len();
    let refused = registry.resume(journal.owned(), finished, &context);
    assert_eq!(
        refused.err(),
        Some(Quarantined::Refused(Refused::Finished(Outcome::Committed)))
    );

    let crashed = crash_at(&log, 1, 1);
    let history = replay(crashed.durable()).unwrap();
    let ran_crashed = entries(&log).len();
    let mut changed = Registry::<String>::new();
    let renamed_log = log.clone();
    changed.register_flow("trip", 1, move |_: &SagaContext| {
        trip_named(&renamed_log, Script::new("p2"), "plane")
    });
    let shared = Shared::with(crashed);
    let refused = changed.resume(shared.owned(), history.clone(), &context);
    assert_eq!(
        refused.err(),
        Some(Quarantined::FingerprintChanged {
            recorded: history.fingerprint,
            current: trip_named(&log, Script::new("x"), "plane").fingerprint(),
        })
    );
    let refused = Registry::<String>::new().resume(shared.owned(), history, &context);
    assert_eq!(
        refused.err(),
        Some(Quarantined::UnknownDefinition {
            name: "trip".into(),
            version: 1
        })
    );
    assert_eq!(journal.durable().len(), written);
    assert!(shared.pending().is_empty());
    assert_eq!(entries(&log).len(), ran_crashed);
    assert!(ran < ran_crashed);
}

/// `Registry::resume`: nothing runs when "its parameters do not decode":
/// a flow's journal whose parameters are not an input is
/// `Quarantined::Parameters` (`Refused::Parameters`, by `From<Refused>`).
#[test]
fn registry_resume_quarantines_parameters_that_do_not_decode() {
    let log = new_log();
    let registry = flow_registry(&log, Script::new("p2"));
    let records = vec![
        Record {
            seq: 0,
            event: Event::Created {
                definition: "trip".into(),
                version: 1,
                fingerprint: trip(&log, Script::new("x")).fingerprint(),
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
    ];
    let history = replay(&records).unwrap();
    let shared = Shared::with(MemoryJournal::from_records(records.clone()));
    let refused = registry.resume(shared.owned(), history, &SagaContext::new(SagaId(8)));
    assert!(
        matches!(refused, Err(Quarantined::Parameters(_))),
        "{:?}",
        refused.err()
    );
    assert_eq!(shared.durable(), records);
    assert!(entries(&log).is_empty());
}

/// `From<Refused> for Quarantined`: "A refusal that says the shape
/// changed or the parameters do not decode is that quarantine; any other
/// is `Quarantined::Refused`." And `From<Quarantined> for NotRun`: "A
/// refusal stays one; any other quarantine is `NotRun::Quarantined`."
#[test]
fn refusals_convert_to_quarantines_and_to_not_run() {
    let error = u32::decode(&[]).unwrap_err();
    assert_eq!(
        Quarantined::from(Refused::FingerprintChanged {
            journal: 1,
            saga: 2
        }),
        Quarantined::FingerprintChanged {
            recorded: 1,
            current: 2
        }
    );
    assert_eq!(
        Quarantined::from(Refused::Parameters(error.clone())),
        Quarantined::Parameters(error.clone())
    );
    for other in [
        Refused::Finished(Outcome::Compensated),
        Refused::TooFewSteps {
            mentioned: 4,
            steps: 3,
        },
        Refused::Unsaved { step: 1 },
        Refused::Restore { step: 0, error },
    ] {
        assert_eq!(
            Quarantined::from(other.clone()),
            Quarantined::Refused(other)
        );
    }
    let unsaved = NotRun::from(Quarantined::Refused(Refused::Unsaved { step: 1 }));
    assert!(
        matches!(unsaved, NotRun::Refused(Refused::Unsaved { step: 1 })),
        "{unsaved:?}"
    );
    let not_a_saga = NotRun::from(Quarantined::NotASaga {
        name: "t".into(),
        version: 1,
    });
    assert!(matches!(
        not_a_saga,
        NotRun::Quarantined(Quarantined::NotASaga { .. })
    ));
}

// ---------------------------------------------------------------------------
// saga_sqlite::Durable with a flow
// ---------------------------------------------------------------------------

fn durable(path: &Path, log: &Log, script: Script) -> Durable<String> {
    Durable::new(Store::open(path).unwrap(), flow_registry(log, script))
}

/// Polls `run` (with a waker that does nothing: the writer thread commits
/// on its own) until `log` has `entry`.
fn drive_until<F: Future + Unpin>(run: &mut F, log: &Log, entry: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has(log, entry) {
        assert!(
            poll_once(run).is_pending(),
            "the run ended before {entry:?}"
        );
        assert!(
            Instant::now() < deadline,
            "{entry:?} never came: {:?}",
            entries(log)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `Durable::start` "Starts a saga of `definition`'s latest version with
/// `parameters`" — here a flow registered with `register_flow` — and the
/// store holds its records: its definition, version and input.
#[test]
fn durable_starts_a_flow_of_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let mut registry = flow_registry(&log, Script::new("v1"));
    let second = log.clone();
    registry.register_flow("trip", 2, move |_: &SagaContext| {
        trip(&second, Script::new("v2"))
    });
    let durable = Durable::new(Store::open(&path).unwrap(), registry);
    let (id, run) = durable.start("trip", &5_u32).unwrap();
    smol::block_on(run).map_err(|e| e.to_string()).unwrap();
    assert!(
        has(&log, "v2 do2 read v2:hotel[v2:flight-5]"),
        "{:?}",
        entries(&log)
    );
    assert_eq!(count_prefix(&log, "v1"), 0);
    let records = durable.store().records(id).unwrap();
    let (definition, version, _, parameters) = created(&records);
    assert_eq!((definition.as_str(), version), ("trip", 2));
    assert_eq!(u32::decode(&parameters).unwrap(), 5);
    assert!(durable.store().unfinished().unwrap().is_empty());
}

/// The brief's scenario: a flow started by `Durable::start`, its run
/// dropped while step 2 is pending forever in the first process, is
/// recovered by a new `Durable` on the same file: step 2 runs again and
/// reads step 1's value as the first process's action returned it; steps
/// 0 and 1 do not run again.
#[test]
fn durable_recover_finishes_a_flow_with_the_values_of_the_first_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let id = {
        let first = durable(&path, &log, Script::new("p1").hang(2).attempts(2));
        let (id, run) = first.start("trip", &7_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do2 read p1:hotel[p1:flight-7]");
        drop(run);
        id
    };
    let second = durable(&path, &log, Script::new("p2").attempts(2));
    let recovered = smol::block_on(second.recover()).unwrap();
    assert_eq!(recovered.len(), 1);
    let (recovered_id, Recovered::Ran(Ok(()))) = &recovered[0] else {
        panic!("resumed and committed: {recovered:?}");
    };
    assert_eq!(*recovered_id, id);
    assert!(
        has(&log, "p2 do2 read p1:hotel[p1:flight-7]"),
        "{:?}",
        entries(&log)
    );
    assert_eq!(
        count_prefix(&log, "p2 do0") + count_prefix(&log, "p2 do1"),
        0
    );
    let history = replay(&second.store().records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(
        history
            .step(2)
            .output
            .as_deref()
            .map(|b| String::decode(b).unwrap()),
        Some("p2:pay[p1:hotel[p1:flight-7]]".to_owned())
    );
    assert!(second.store().unfinished().unwrap().is_empty());
}

/// Recovered after the crash, step 2 cannot run again (no retry left) and
/// fails (left applied: a `then` step cut short has no value to undo); the
/// compensations of steps 1 and 0, in the new process, receive
/// the values saved by the first: "compensations after a failure must
/// receive the saved values".
#[test]
fn durable_recover_compensates_a_flow_with_the_saved_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let id = {
        let first = durable(&path, &log, Script::new("p1").hang(2));
        let (id, run) = first.start("trip", &7_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do2 read p1:hotel[p1:flight-7]");
        id
    };
    let second = durable(&path, &log, Script::new("p2"));
    let recovered = smol::block_on(second.recover()).unwrap();
    let [(recovered_id, Recovered::Ran(Err(DurableError::Saga(report))))] = &recovered[..] else {
        panic!("resumed and compensated: {recovered:?}");
    };
    assert_eq!(*recovered_id, id);
    assert_eq!(report.failed_step(), 2);
    assert_eq!(report.uncompensated_steps().collect::<Vec<_>>(), [2]);
    let undone: Vec<String> = entries(&log)
        .into_iter()
        .filter(|e| e.starts_with("p2"))
        .collect();
    assert_eq!(
        undone,
        [
            "p2 undo1 got p1:hotel[p1:flight-7]",
            "p2 undo0 got p1:flight-7"
        ]
    );
    let list = second.store().list().unwrap();
    assert_eq!(list[0].state, Ok(SagaState::Finished(Outcome::Stuck)));
}

/// A flow whose definition now builds another shape is not run by
/// `Durable::recover`: `NotRun::Quarantined(FingerprintChanged)`, "the
/// saga stays in the store, unfinished, for an operator".
#[test]
fn durable_recover_leaves_a_flow_of_another_shape_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let id = {
        let first = durable(&path, &log, Script::new("p1").hang(1));
        let (id, run) = first.start("trip", &7_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do1 read p1:flight-7");
        id
    };
    let renamed = log.clone();
    let mut registry = Registry::<String>::new();
    registry.register_flow("trip", 1, move |_: &SagaContext| {
        trip_named(&renamed, Script::new("p2"), "plane")
    });
    let second = Durable::new(Store::open(&path).unwrap(), registry);
    let recovered = smol::block_on(second.recover()).unwrap();
    let [(recovered_id, Recovered::NotRun(NotRun::Quarantined(why)))] = &recovered[..] else {
        panic!("quarantined: {recovered:?}");
    };
    assert_eq!(*recovered_id, id);
    assert!(
        matches!(why, Quarantined::FingerprintChanged { .. }),
        "{why:?}"
    );
    assert_eq!(count_prefix(&log, "p2"), 0);
    assert_eq!(second.store().unfinished().unwrap(), [id]);
}

// ---------------------------------------------------------------------------
// saga_sqlite: Store::list and SagaSummary::corrupt
// ---------------------------------------------------------------------------

fn damage(path: &Path, id: SagaId, seq: i64) {
    let changed = rusqlite::Connection::open(path)
        .unwrap()
        .execute(
            "UPDATE records SET body = x'00' WHERE saga_id = ?1 AND seq = ?2",
            rusqlite::params![&id.0.to_be_bytes()[..], seq],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// Three flows in a store (two unfinished, one committed); damaging one
/// record of one: `Store::list` "does not hide the others: it is listed
/// with the error in its summary's `corrupt`, and what its readable
/// records tell"; the error is `StoreErrorKind::Corrupt` "naming the saga
/// and the first record that is" damaged; `records` counts every row,
/// "corrupt ones included".
#[test]
fn store_list_shows_a_corrupt_saga_beside_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let hung = {
        let first = durable(&path, &log, Script::new("p1").hang(2));
        let (id, run) = first.start("trip", &1_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do2 read p1:hotel[p1:flight-1]");
        id
    };
    let committed = {
        let second = durable(&path, &log, Script::new("p1"));
        let (id, run) = second.start("trip", &2_u32).unwrap();
        smol::block_on(run).map_err(|e| e.to_string()).unwrap();
        id
    };
    let damaged = {
        let third = durable(&path, &log, Script::new("p1").hang(1));
        let (id, run) = third.start("trip", &3_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do1 read p1:flight-3");
        id
    };
    let store = Store::open(&path).unwrap();
    let before = store.list().unwrap();
    assert_eq!(before.len(), 3);
    let damaged_records = before[2].records;
    damage(&path, damaged, 3);

    let list = store.list().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        list.iter().map(|s| s.id).collect::<Vec<_>>(),
        [hung, committed, damaged]
    );
    assert_eq!(list[0], before[0]);
    assert_eq!(list[1], before[1]);
    assert_eq!(list[0].state, Ok(SagaState::Forward));
    assert_eq!(list[1].state, Ok(SagaState::Finished(Outcome::Committed)));
    let summary = &list[2];
    let error = summary.corrupt.as_ref().expect("the damaged saga says so");
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert!(error.to_string().contains("record 3"), "{error}");
    assert!(error.to_string().contains(&damaged.to_string()), "{error}");
    assert_eq!((summary.definition.as_str(), summary.version), ("trip", 1));
    assert_eq!(summary.records, damaged_records);
    assert_eq!(summary.state, Ok(SagaState::Forward));
    // As `Store::records` fails for it.
    let records = store.records(damaged).unwrap_err();
    assert_eq!(&records, error);
}

/// `SagaSummary::corrupt`: when the damaged record is the first, the
/// summary's `state` "is `Err(ReplayError::Empty)`", and its `definition`
/// is "empty when its first record is not `Created`".
#[test]
fn store_list_of_a_saga_whose_first_record_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let id = {
        let first = durable(&path, &log, Script::new("p1"));
        let (id, run) = first.start("trip", &1_u32).unwrap();
        smol::block_on(run).map_err(|e| e.to_string()).unwrap();
        id
    };
    let store = Store::open(&path).unwrap();
    let rows = store.list().unwrap()[0].records;
    damage(&path, id, 0);
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    let summary = &list[0];
    let error = summary.corrupt.as_ref().expect("corrupt");
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert!(error.to_string().contains("record 0"), "{error}");
    assert_eq!(summary.state, Err(ReplayError::Empty));
    assert_eq!(summary.definition, "");
    assert_eq!(summary.records, rows);
}

/// "Such a saga cannot be resumed (`Durable::recover` leaves it in the
/// store, with the error); an operator can abandon it only once its
/// records are repaired": recovery resumes the sound flow and does not
/// run the corrupt one, which stays unfinished; abandoning it fails.
#[test]
fn durable_recover_leaves_a_corrupt_flow_and_finishes_the_sound_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let (sound, damaged) = {
        let first = durable(&path, &log, Script::new("p1").hang(2).attempts(2));
        let (sound, run) = first.start("trip", &1_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do2 read p1:hotel[p1:flight-1]");
        drop(run);
        let (damaged, run) = first.start("trip", &2_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do2 read p1:hotel[p1:flight-2]");
        (sound, damaged)
    };
    damage(&path, damaged, 2);
    let second = durable(&path, &log, Script::new("p2").attempts(2));
    let recovered = smol::block_on(second.recover()).unwrap();
    let ran: Vec<_> = recovered
        .iter()
        .filter(|(_, r)| matches!(r, Recovered::Ran(Ok(()))))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ran, [sound], "{recovered:?}");
    // "leaves it in the store, with the error": the entry holds the
    // `Corrupt` error that `Store::records` fails with.
    let entry = recovered.iter().find(|(id, _)| *id == damaged);
    let Some((_, Recovered::NotRun(NotRun::Store(error)))) = entry else {
        panic!("the corrupt saga has an entry, not run: {recovered:?}");
    };
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert_eq!(Some(error), second.store().records(damaged).err().as_ref());
    assert!(has(&log, "p2 do2 read p1:hotel[p1:flight-1]"));
    assert_eq!(count_prefix(&log, "p2 do2 read p1:hotel[p1:flight-2]"), 0);
    assert_eq!(second.store().unfinished().unwrap(), [damaged]);
    assert!(second.store().abandon(damaged, "gave up").is_err());
    assert!(second.store().list().unwrap()[1].corrupt.is_some());
}

// ---------------------------------------------------------------------------
// More promises: write-ahead, flush count, refusals through `Durable`
// ---------------------------------------------------------------------------

/// Rule 13, for a flow ("A `Flow` is journaled the same way"): "An action
/// ... attempt's 'started' record is durable before the attempt is first
/// polled": while the first flush is held back, no action runs.
#[test]
fn no_flow_action_runs_before_its_started_record_is_durable() {
    let log = new_log();
    let mut journal = Shared::new();
    let view = journal.clone();
    view.allow(Some(0));
    let mut flow = trip(&log, Script::new("p1"));
    let mut run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    for _ in 0..3 {
        assert!(poll_once(&mut run).is_pending());
    }
    assert!(entries(&log).is_empty(), "{:?}", entries(&log));
    assert!(view.durable().is_empty());
    assert!(
        view.pending().iter().any(|r| r.event
            == Event::ActionStarted {
                step: 0,
                attempt: 1
            }),
        "{:?}",
        view.pending()
    );
    view.allow(None);
    assert!(poll_once(&mut run).is_ready());
    assert!(has(&log, "p1 do0 read 7"));
}

/// `Flow::run_journaled` writes "as `Saga::run_journaled` does for a
/// saga", which says: "a saga of single steps flushes once per step on the
/// happy path, and once more at its end" — Created, started and succeeded
/// for each step, then finished.
#[test]
fn a_committed_flow_of_three_steps_flushes_four_times() {
    let log = new_log();
    let mut flow = trip(&log, Script::new("p1"));
    let mut journal = MemoryJournal::new();
    let run = flow.run_journaled(&mut journal, "trip", 1, 7).unwrap();
    smol::block_on(run).map_err(|e| e.to_string()).unwrap();
    assert_eq!(journal.durable().len(), 1 + 3 * 2 + 1);
    assert_eq!(journal.flushes(), 4);
    assert!(
        journal
            .durable()
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64)
    );
}

/// `Flow::resume` of a flow with a step that keeps a value it cannot save
/// (its fingerprint matching the journal's): refused, with nothing run or
/// written. The docs do not say which `Refused` (see the report).
#[test]
fn resume_refuses_a_flow_with_an_unsaved_step() {
    let log = new_log();
    let probe = log.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |_: &u32| {
                probe.lock().unwrap().push("ran".into());
                async { Ok::<_, String>(1_u32) }
            },
            |_| async { Ok(()) },
        )
        .build();
    let records = vec![
        Record {
            seq: 0,
            event: Event::Created {
                definition: "unsaved".into(),
                version: 1,
                fingerprint: flow.fingerprint(),
                parameters: encoded(&3_u32),
            },
        },
        Record {
            seq: 1,
            event: Event::ActionStarted {
                step: 0,
                attempt: 1,
            },
        },
    ];
    let mut journal = MemoryJournal::from_records(records.clone());
    let history = replay(journal.durable()).unwrap();
    let refused = flow.resume(&mut journal, &history).unwrap_err();
    assert_eq!(refused, Refused::Unsaved { step: 0 });
    assert_eq!(journal.durable(), &records[..]);
    assert!(journal.pending().is_empty());
    assert!(entries(&log).is_empty());
}

/// A group whose last member is not saved is refused by
/// `Flow::run_journaled` with `Refused::Unsaved` naming that member.
#[test]
fn run_journaled_refuses_an_unsaved_group_member() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok::<_, String>(n) }
                    },
                    |_| async { Ok(()) },
                )
                .saved()
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok::<_, String>(n) }
                    },
                    |_| async { Ok(()) },
                )
        })
        .build();
    let mut journal = MemoryJournal::new();
    let refused = flow.run_journaled(&mut journal, "group", 1, 1).unwrap_err();
    assert_eq!(refused, Refused::Unsaved { step: 1 });
    assert!(journal.durable().is_empty() && journal.pending().is_empty());
}

/// `Durable::start` of a flow definition whose step cannot save its value,
/// of an unknown definition, and with parameters that do not decode as
/// the flow's input: not started (`NotRun`: "Nothing of it ran"), and the
/// store holds nothing of it.
#[test]
fn durable_start_refuses_what_registry_start_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let log = new_log();
    let mut registry = flow_registry(&log, Script::new("p1"));
    let probe = log.clone();
    registry.register_flow("unsaved", 1, move |_: &SagaContext| {
        let probe = probe.clone();
        SagaBuilder::new()
            .input::<u32>()
            .then(
                move |_: &u32| {
                    probe.lock().unwrap().push("unsaved ran".into());
                    async { Ok::<_, String>(1_u32) }
                },
                |_| async { Ok(()) },
            )
            .build()
    });
    let durable = Durable::new(Store::open(dir.path().join("sagas.db")).unwrap(), registry);
    let unsaved = durable.start("unsaved", &1_u32).map(|(id, _)| id);
    assert!(
        matches!(unsaved, Err(NotRun::Refused(Refused::Unsaved { step: 0 }))),
        "{unsaved:?}"
    );
    let unknown = durable.start("tour", &1_u32).map(|(id, _)| id);
    assert!(
        matches!(
            unknown,
            Err(NotRun::Quarantined(Quarantined::UnknownDefinition { .. }))
        ),
        "{unknown:?}"
    );
    let bad = durable
        .start("trip", &String::from("not a number"))
        .map(|(id, _)| id);
    assert!(
        matches!(bad, Err(NotRun::Quarantined(Quarantined::Parameters(_)))),
        "{bad:?}"
    );
    assert!(entries(&log).is_empty());
    assert!(durable.store().list().unwrap().is_empty());
}

/// `Store::list` "Fails ... with `StoreErrorKind::Corrupt` for a row whose
/// saga id is not 16 bytes (no saga can be named for it: the table itself
/// is damaged)".
#[test]
fn store_list_fails_for_a_row_without_a_saga_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let id = {
        let first = durable(&path, &log, Script::new("p1"));
        let (id, run) = first.start("trip", &1_u32).unwrap();
        smol::block_on(run).map_err(|e| e.to_string()).unwrap();
        id
    };
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE records SET saga_id = x'00' WHERE saga_id = ?1 AND seq = 0",
            [&id.0.to_be_bytes()[..]],
        )
        .unwrap();
    let store = Store::open(&path).unwrap();
    let error = store.list().unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
}

/// `SagaSummary::last_error` of a corrupt saga tells "of the records
/// before that one": a flow that failed and was compensated, its last
/// record then damaged, still shows the error its readable records
/// mention.
#[test]
fn a_corrupt_summary_tells_the_last_error_of_its_readable_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let id = {
        let first = durable(&path, &log, Script::new("p1").fail(1));
        let (id, run) = first.start("trip", &1_u32).unwrap();
        assert!(smol::block_on(run).is_err());
        id
    };
    let store = Store::open(&path).unwrap();
    let before = store.list().unwrap().remove(0);
    assert_eq!(before.state, Ok(SagaState::Finished(Outcome::Compensated)));
    let last = i64::try_from(before.records).unwrap() - 1;
    damage(&path, id, last);
    let after = store.list().unwrap().remove(0);
    assert!(after.corrupt.is_some());
    assert_eq!(after.records, before.records);
    assert_eq!(after.last_error.as_deref(), Some("step 1 refused"));
    assert_ne!(after.state, Ok(SagaState::Finished(Outcome::Compensated)));
}

/// `Durable::start`: "its first record is written as the future is first
/// polled": before that, the store holds nothing of the saga.
#[test]
fn durable_start_writes_the_first_record_when_the_run_is_first_polled() {
    let dir = tempfile::tempdir().unwrap();
    let log = new_log();
    let durable = durable(&dir.path().join("sagas.db"), &log, Script::new("p1"));
    let (id, run) = durable.start("trip", &1_u32).unwrap();
    assert!(durable.store().records(id).unwrap().is_empty());
    assert!(durable.store().list().unwrap().is_empty());
    smol::block_on(run).map_err(|e| e.to_string()).unwrap();
    assert!(!durable.store().records(id).unwrap().is_empty());
}

/// A flow's factory receives the `SagaContext` of the saga it builds: the
/// id `Durable::start` returns, the same in the process that recovers it,
/// so `SagaContext::key` is "the same in every run of this saga, including
/// runs after a crash".
#[test]
fn a_flow_factory_gets_the_same_context_when_started_and_when_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = new_log();
    let keyed = |script: Script| {
        let log = log.clone();
        let mut registry = Registry::<String>::new();
        registry.register_flow("trip", 1, move |context: &SagaContext| {
            log.lock()
                .unwrap()
                .push(format!("{} key {}", script.process, context.key(2)));
            trip(&log, script)
        });
        registry
    };
    let id = {
        let first = Durable::new(
            Store::open(&path).unwrap(),
            keyed(Script::new("p1").hang(2).attempts(2)),
        );
        let (id, run) = first.start("trip", &7_u32).unwrap();
        let mut run = Box::pin(run);
        drive_until(&mut run, &log, "p1 do2 read p1:hotel[p1:flight-7]");
        id
    };
    let second = Durable::new(
        Store::open(&path).unwrap(),
        keyed(Script::new("p2").attempts(2)),
    );
    let recovered = smol::block_on(second.recover()).unwrap();
    assert!(
        matches!(recovered[..], [(_, Recovered::Ran(Ok(())))]),
        "{recovered:?}"
    );
    let key = SagaContext::new(id).key(2);
    assert!(has(&log, &format!("p1 key {key}")), "{:?}", entries(&log));
    assert!(has(&log, &format!("p2 key {key}")), "{:?}", entries(&log));
}
