//! Rule 10 and the edges of the API: empty sagas, polling a finished run,
//! running again, local sagas, hand-written steps, and the error's
//! `Display`/`source`.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::cell::RefCell;
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use saga_core::{FnStep, LocalSaga, Saga, SagaBuilder, Step, TypedStep};
use support::{Event, Ledger, TestError, Yield, on_every_executor, simple_saga};

#[test]
fn zero_steps_succeed() {
    on_every_executor(|| async {
        let mut saga: Saga<TestError> = SagaBuilder::new().build();
        assert!(saga.is_empty());
        assert_eq!(saga.len(), 0);
        assert_eq!(saga.run().await, Ok(()));
        assert_eq!(saga.run().await, Ok(()));
    });
    let mut local: LocalSaga<TestError> = SagaBuilder::new_local().build();
    assert_eq!(support::block_on(local.run()), Ok(()));
}

#[test]
fn zero_steps_succeed_on_the_first_poll() {
    let mut saga: Saga<TestError> = SagaBuilder::default().build();
    let (result, polls) = support::block_on_counting(saga.run());
    assert_eq!(result, Ok(()));
    assert_eq!(polls, 1);
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn polling_a_completed_run_panics() {
    let ledger = Ledger::new();
    let mut saga = simple_saga(&ledger, 2, None, 0);
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut run).poll(&mut cx).is_ready());
    let _ = Pin::new(&mut run).poll(&mut cx);
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn polling_a_completed_failed_run_panics() {
    let ledger = Ledger::new();
    let mut saga = simple_saga(&ledger, 2, Some(1), 0);
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        Pin::new(&mut run).poll(&mut cx),
        Poll::Ready(Err(_))
    ));
    let _ = Pin::new(&mut run).poll(&mut cx);
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn polling_a_completed_empty_run_panics() {
    let mut saga: Saga<TestError> = SagaBuilder::new().build();
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut run).poll(&mut cx).is_ready());
    let _ = Pin::new(&mut run).poll(&mut cx);
}

#[test]
fn a_saga_runs_again_and_reruns_every_action() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = simple_saga(&ledger, 3, None, 1);
        for _ in 0..3 {
            saga.run().await.unwrap();
            assert_eq!(ledger.take().len(), 6);
        }
        let mut failing = simple_saga(&ledger, 3, Some(2), 1);
        for _ in 0..3 {
            let error = failing.run().await.unwrap_err();
            assert!(error.is_fully_compensated());
            assert_eq!(ledger.acted(), [0, 1, 2]);
            assert_eq!(ledger.undone(), [2, 1, 0]);
            ledger.take();
        }
    });
}

#[test]
fn a_run_after_a_failed_compensation_starts_afresh() {
    let ledger = Ledger::new();
    let mut saga = SagaBuilder::new()
        .step(support::recording_step(&ledger, 0, 1, false, true))
        .step(support::recording_step(&ledger, 1, 1, true, false))
        .build();
    for _ in 0..2 {
        let error = support::block_on(saga.run()).unwrap_err();
        assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
        assert_eq!(ledger.acted(), [0, 1]);
        assert_eq!(ledger.undone(), [1, 0]);
        ledger.take();
    }
}

#[test]
fn a_local_saga_takes_rc_and_refcell_steps() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut builder = SagaBuilder::new_local();
    for i in 0..3 {
        let (a, c) = (log.clone(), log.clone());
        builder = builder.add_step(
            move || {
                let a = a.clone();
                async move {
                    a.borrow_mut().push(format!("action {i}"));
                    Yield(1).await;
                    if i == 2 {
                        Err(TestError::Action(i))
                    } else {
                        Ok(())
                    }
                }
            },
            move || {
                let c = c.clone();
                async move {
                    Yield(1).await;
                    c.borrow_mut().push(format!("undo {i}"));
                    Ok(())
                }
            },
        );
    }
    let mut saga: LocalSaga<TestError> = builder.build();
    assert_eq!(saga.len(), 3);
    for run in 0..2 {
        let error = if run == 0 {
            support::block_on_adversarial(saga.run()).unwrap_err()
        } else {
            // A local executor: smol's block_on does not need `Send`.
            smol::block_on(saga.run()).unwrap_err()
        };
        assert_eq!(error.failed_step(), 2);
        assert!(error.is_fully_compensated());
        assert_eq!(
            log.take(),
            [
                "action 0", "action 1", "action 2", "undo 2", "undo 1", "undo 0"
            ]
        );
    }
    // And on a tokio current-thread `LocalSet`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let error = local.block_on(&runtime, saga.run()).unwrap_err();
    assert_eq!(error.compensated_count(), 3);
}

/// A hand-written step: a counter bumped by the action and taken back by the
/// compensation, in a few polls each.
struct Bump {
    counter: Rc<RefCell<i32>>,
    by: i32,
    polls_left: u8,
    applied: bool,
}

impl Step<String> for Bump {
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let this = self.get_mut();
        if this.polls_left > 0 {
            this.polls_left -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        *this.counter.borrow_mut() += this.by;
        this.applied = true;
        this.polls_left = 2;
        if this.by < 0 {
            Poll::Ready(Err(format!("cannot add {}", this.by)))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn poll_compensate(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.applied) {
            *this.counter.borrow_mut() -= this.by;
        }
        Poll::Ready(Ok(()))
    }

    fn reset(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.applied = false;
        this.polls_left = 2;
    }

    fn cancel(self: Pin<&mut Self>) {
        // Nothing is in flight between polls but the countdown: start over.
        self.get_mut().polls_left = 2;
    }

    fn name(&self) -> Option<&str> {
        Some(if self.by < 0 { "subtract" } else { "add" })
    }
}

#[test]
fn user_implemented_steps_run_and_compensate() {
    let counter = Rc::new(RefCell::new(100));
    let bump = |by| Bump {
        counter: counter.clone(),
        by,
        polls_left: 0,
        applied: false,
    };
    let mut saga = SagaBuilder::new_local()
        .step(bump(5))
        .step(bump(7))
        .step(bump(-1))
        .build();
    assert_eq!(
        saga.step_names().collect::<Vec<_>>(),
        [Some("add"), Some("add"), Some("subtract")]
    );
    let error = support::block_on_adversarial(saga.run()).unwrap_err();
    assert_eq!(*counter.borrow(), 100);
    assert_eq!(error.failed_step_name(), Some("subtract"));
    assert_eq!(error.compensated_count(), 3);
    assert_eq!(
        error.to_string(),
        "step 2 (subtract) failed: cannot add -1; fully compensated (3 steps)"
    );

    let mut ok = SagaBuilder::new_local().step(bump(5)).step(bump(7)).build();
    support::block_on(ok.run()).unwrap();
    assert_eq!(*counter.borrow(), 112);
}

#[test]
fn send_user_steps_go_in_a_send_saga() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let shape = support::Shape {
            steps: vec![
                support::StepSpec {
                    kind: support::Kind::Custom {
                        compensate_failed: true,
                    },
                    action_yields: 2,
                    undo_yields: 2,
                    ..support::StepSpec::ok()
                },
                support::StepSpec {
                    kind: support::Kind::Custom {
                        compensate_failed: true,
                    },
                    action_fails: true,
                    action_yields: 1,
                    undo_yields: 1,
                    ..support::StepSpec::ok()
                },
            ],
            mode: Default::default(),
            classifier: false,
        };
        let mut saga = support::build_shape(&shape, &ledger);
        let error = saga.run().await.unwrap_err();
        assert_eq!(error.failed_step_name(), Some("custom"));
        assert_eq!(ledger.undone(), [1, 0]);
        assert_eq!(ledger.events().first(), Some(&Event::Action(0)));
    });
}

#[test]
fn names_appear_in_display_and_step_names() {
    let mut saga = SagaBuilder::new()
        .step(
            FnStep::new(|| async { Ok::<_, TestError>(()) }, || async { Ok(()) }).named("reserve"),
        )
        .add_step(|| async { Ok::<_, TestError>(()) }, || async { Ok(()) })
        .step(
            TypedStep::by_value(
                || async { Ok::<_, TestError>(1u8) },
                |_: u8| async { Ok(()) },
            )
            .named(String::from("charge")),
        )
        .step(
            FnStep::new(
                || async { Err::<(), _>(TestError::Action(3)) },
                || async { Ok(()) },
            )
            .named("ship"),
        )
        .build();
    assert_eq!(
        saga.step_names().collect::<Vec<_>>(),
        [Some("reserve"), None, Some("charge"), Some("ship")]
    );
    let error = support::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step_name(), Some("ship"));
    assert_eq!(
        error.to_string(),
        "step 3 (ship) failed: action 3 failed; fully compensated (4 steps)"
    );
}

#[test]
fn display_of_each_outcome() {
    // One step, compensated.
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Err::<(), _>(TestError::Action(0)) },
            || async { Ok(()) },
        )
        .build();
    let error = support::block_on(saga.run()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "step 0 failed: action 0 failed; fully compensated (1 step)"
    );

    // A typed first step: nothing needed compensation.
    let mut saga = SagaBuilder::new()
        .add_typed_step(
            || async { Err::<u8, _>(TestError::Action(0)) },
            |_: u8| async { Ok(()) },
        )
        .build();
    let error = support::block_on(saga.run()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "step 0 failed: action 0 failed; nothing needed compensation"
    );

    // One compensation error, one step left.
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Err::<(), _>(TestError::Action(0)) },
            || async { Err(TestError::Undo(0)) },
        )
        .build();
    let error = support::block_on(saga.run()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "step 0 failed: action 0 failed; compensation of step 0 failed: undo 0 failed; \
         1 step left uncompensated"
    );
}

#[test]
fn saga_error_source_is_the_action_error() {
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Err(TestError::Undo(0)) })
        .add_step(
            || async { Err::<(), _>(TestError::Action(1)) },
            || async { Ok(()) },
        )
        .build();
    let error = support::block_on(saga.run()).unwrap_err();
    let source = error.source().expect("a source");
    assert_eq!(source.to_string(), "action 1 failed");
    assert_eq!(
        source.downcast_ref::<TestError>(),
        Some(&TestError::Action(1))
    );
    let compensation = &error.compensation_errors()[0];
    assert_eq!(
        compensation
            .source()
            .and_then(|s| s.downcast_ref::<TestError>()),
        Some(&TestError::Undo(0))
    );
    // As a boxed error, through `?`.
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error.clone());
    assert!(boxed.to_string().starts_with("step 1 failed"));
    assert_eq!(error.into_error(), TestError::Action(1));
}

#[test]
fn debug_output_does_not_need_debug_steps() {
    let ledger = Ledger::new();
    let mut saga = simple_saga(&ledger, 2, None, 0);
    assert!(format!("{saga:?}").contains("Saga"));
    let run = saga.run();
    assert!(format!("{run:?}").contains("Run"));
    drop(run);
    let builder = SagaBuilder::<TestError>::new();
    assert!(format!("{builder:?}").contains("SagaBuilder"));
}
