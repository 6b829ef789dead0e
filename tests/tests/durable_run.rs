//! Journaled runs: the write-ahead rule with a journal whose flushes take
//! time (sequences, a parallel group side by side, concurrent
//! compensations), one flush per step, a failing journal that stops the
//! run without compensating, and the resumes that are refused.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use saga_core::journal::{
    DurableError, Event, Journal, JournalError, MemoryJournal, Outcome, Record, Refused, SagaState,
    Start, replay,
};
use saga_core::{CompensationMode, FnStep, Saga, SagaBuilder, TypedStep};

/// A journal whose every flush is pending until a thread wakes it a
/// millisecond later; what is durable is shared with the steps, so that
/// they check the write-ahead rule as they run.
#[derive(Default)]
struct SlowJournal {
    durable: Arc<Mutex<Vec<Record>>>,
    pending: Vec<Record>,
    flushing: Option<Arc<Mutex<bool>>>,
    flushes: u32,
}

impl Journal for SlowJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.pending.push(record.clone());
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        if let Some(done) = &self.flushing {
            if !*done.lock().unwrap() {
                return Poll::Pending;
            }
            self.flushing = None;
            self.flushes += 1;
            let pending = std::mem::take(&mut self.pending);
            self.durable.lock().unwrap().extend(pending);
            return Poll::Ready(Ok(()));
        }
        let done = Arc::new(Mutex::new(false));
        self.flushing = Some(done.clone());
        let waker: Waker = cx.waker().clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            *done.lock().unwrap() = true;
            waker.wake();
        });
        Poll::Pending
    }
}

type Durable = Arc<Mutex<Vec<Record>>>;

/// Whether `durable` holds the start of `step`'s latest action (or
/// compensation) attempt.
fn started_is_durable(durable: &Durable, step: u32, compensation: bool) -> bool {
    durable
        .lock()
        .unwrap()
        .iter()
        .any(|record| match record.event {
            Event::ActionStarted { step: s, .. } => !compensation && s == step,
            Event::CompensationStarted { step: s, .. } => compensation && s == step,
            _ => false,
        })
}

fn checked_step(
    durable: &Durable,
    step: u32,
    fails: bool,
    violations: &Arc<Mutex<Vec<String>>>,
) -> impl saga_core::Step<String> + Send + use<> {
    let (act_durable, undo_durable) = (durable.clone(), durable.clone());
    let (act_violations, undo_violations) = (violations.clone(), violations.clone());
    FnStep::new(
        move || {
            let (durable, violations) = (act_durable.clone(), act_violations.clone());
            async move {
                if !started_is_durable(&durable, step, false) {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("action {step} ran first"));
                }
                smol::future::yield_now().await;
                match fails {
                    true => Err(format!("step {step} refused")),
                    false => Ok::<_, String>(()),
                }
            }
        },
        move || {
            let (durable, violations) = (undo_durable.clone(), undo_violations.clone());
            async move {
                if !started_is_durable(&durable, step, true) {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("compensation {step} ran first"));
                }
                smol::future::yield_now().await;
                Ok(())
            }
        },
    )
}

fn shaped(
    durable: &Durable,
    violations: &Arc<Mutex<Vec<String>>>,
    fail: Option<u32>,
    mode: CompensationMode,
) -> Saga<String> {
    let step = |index: u32| checked_step(durable, index, fail == Some(index), violations);
    SagaBuilder::new()
        .compensation_mode(mode)
        .step(step(0))
        .parallel(|group| {
            group
                .step(step(1))
                .step(step(2))
                .step(step(3))
                .step(step(4))
        })
        .step(step(5))
        .build()
}

#[test]
fn every_attempt_starts_only_once_its_record_is_durable_with_a_slow_journal() {
    for (fail, mode) in [
        (None, CompensationMode::StopOnError),
        (Some(5), CompensationMode::StopOnError),
        (Some(3), CompensationMode::ConcurrentGroups),
        (Some(5), CompensationMode::Concurrent),
    ] {
        let mut journal = SlowJournal::default();
        let durable = journal.durable.clone();
        let violations = Arc::new(Mutex::new(Vec::new()));
        let mut saga = shaped(&durable, &violations, fail, mode);
        let run = saga
            .run_journaled(&mut journal, Start::new("slow", 1, vec![]))
            .unwrap();
        let result = smol::block_on(run);
        assert_eq!(result.is_ok(), fail.is_none(), "{fail:?} {mode:?}");
        assert!(
            violations.lock().unwrap().is_empty(),
            "{:?}",
            violations.lock().unwrap()
        );
        assert!(journal.pending.is_empty(), "the end is flushed");
        let history = replay(durable.lock().unwrap().iter()).unwrap();
        let expected = match fail {
            None => Outcome::Committed,
            Some(_) => Outcome::Compensated,
        };
        assert_eq!(
            history.state(),
            SagaState::Finished(expected),
            "{fail:?} {mode:?}"
        );
        // Six steps side by side or not: at most a flush per attempt, plus
        // the first and the last.
        assert!(journal.flushes <= 2 * 6 + 2, "{} flushes", journal.flushes);
    }
}

#[test]
fn a_saga_of_single_steps_flushes_once_per_step_and_once_at_its_end() {
    for steps in [1_usize, 2, 10] {
        let mut builder = SagaBuilder::<String>::new();
        for _ in 0..steps {
            builder = builder.add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) });
        }
        let mut saga = builder.build();
        let mut journal = MemoryJournal::new();
        smol::block_on(
            saga.run_journaled(&mut journal, Start::new("n", 1, vec![]))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(journal.flushes(), steps as u64 + 1);
        // Created, two records per step, Finished.
        assert_eq!(journal.durable().len(), 2 * steps + 2);
    }
}

#[test]
fn a_failing_journal_stops_the_run_without_compensating() {
    let compensated = Arc::new(Mutex::new(0));
    let ran = Arc::new(Mutex::new(0));
    let step = || {
        let (ran, compensated) = (ran.clone(), compensated.clone());
        FnStep::new(
            move || {
                let ran = ran.clone();
                async move {
                    *ran.lock().unwrap() += 1;
                    Ok::<_, String>(())
                }
            },
            move || {
                let compensated = compensated.clone();
                async move {
                    *compensated.lock().unwrap() += 1;
                    Ok(())
                }
            },
        )
    };
    let mut saga: Saga<String> = SagaBuilder::new()
        .step(step())
        .step(step())
        .step(step())
        .build();
    let mut journal = MemoryJournal::new();
    journal.fail_after(2);
    let result = smol::block_on(
        saga.run_journaled(&mut journal, Start::new("n", 1, vec![]))
            .unwrap(),
    );
    let Err(DurableError::Journal(error)) = result else {
        panic!("the journal failed: {result:?}");
    };
    assert!(!error.to_string().is_empty());
    // Two flushes let two steps start; the third never ran, nothing was undone.
    assert_eq!(*ran.lock().unwrap(), 2);
    assert_eq!(*compensated.lock().unwrap(), 0);
    journal.lose_power();
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Forward);
}

fn two_steps() -> Saga<String> {
    SagaBuilder::new()
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .build()
}

#[test]
fn resumes_are_refused_with_nothing_run_or_written() {
    // A finished saga.
    let mut journal = MemoryJournal::new();
    smol::block_on(
        two_steps()
            .run_journaled(&mut journal, Start::new("two", 1, vec![]))
            .unwrap(),
    )
    .unwrap();
    let history = replay(journal.durable()).unwrap();
    let before = journal.durable().len();
    let refused = two_steps().resume(&mut journal, &history).unwrap_err();
    assert_eq!(refused, Refused::Finished(Outcome::Committed));
    assert_eq!(journal.durable().len(), before);

    // A changed shape.
    let records = journal.durable()[..2].to_vec();
    let history = replay(&records).unwrap();
    let mut three: Saga<String> = SagaBuilder::new()
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .build();
    let mut journal = MemoryJournal::from_records(records);
    let refused = three.resume(&mut journal, &history).unwrap_err();
    assert!(
        matches!(refused, Refused::FingerprintChanged { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("shape changed"));
    assert!(journal.pending().is_empty());

    // A typed step that cannot save its value: refused at the start too.
    let mut unsaved: Saga<String> = SagaBuilder::new()
        .step(TypedStep::by_ref(
            || async { Ok::<_, String>(7_u32) },
            |_: &u32| async { Ok(()) },
        ))
        .build();
    let mut journal = MemoryJournal::new();
    let refused = unsaved
        .run_journaled(&mut journal, Start::new("u", 1, vec![]))
        .unwrap_err();
    assert_eq!(refused, Refused::Unsaved { step: 0 });
    assert!(journal.pending().is_empty() && journal.durable().is_empty());
}

#[test]
fn a_resumed_compensation_receives_the_value_the_original_action_returned() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let build = |fail: bool| {
        let seen = seen.clone();
        SagaBuilder::<String>::new()
            .step(
                TypedStep::by_ref(
                    || async { Ok::<_, String>(String::from("H-7")) },
                    move |booking: &String| {
                        let (seen, booking) = (seen.clone(), booking.clone());
                        async move {
                            seen.lock().unwrap().push(booking);
                            Ok(())
                        }
                    },
                )
                .saved(),
            )
            .add_step(
                move || async move {
                    if fail {
                        std::future::pending::<()>().await;
                    }
                    Err::<(), _>(String::from("no seats"))
                },
                || async { Ok(()) },
            )
            .build()
    };
    // The first process dies while the second step runs.
    let mut journal = MemoryJournal::new();
    let mut saga = build(true);
    let mut run = saga
        .run_journaled(&mut journal, Start::new("trip", 1, vec![]))
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(std::pin::Pin::new(&mut run).poll(&mut cx).is_pending());
    drop(run);
    journal.lose_power();
    // The next one: the second step (no retries) counts as cut short, the
    // saga unwinds, and the first step's compensation gets "H-7" back.
    let history = replay(journal.durable()).unwrap();
    let mut saga = build(false);
    let result = smol::block_on(saga.resume(&mut journal, &history).unwrap());
    let Err(DurableError::Saga(error)) = result else {
        panic!("the saga compensates: {result:?}");
    };
    assert_eq!(error.reason(), saga_core::StopReason::Crashed);
    assert_eq!(error.failed_step(), 1);
    assert_eq!(*seen.lock().unwrap(), ["H-7"]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
}
