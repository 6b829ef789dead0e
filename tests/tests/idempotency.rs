//! Repeat injection (`saga_core::testing::Repeat` and `repeat_fn`): it
//! finds steps that are not idempotent, passes steps that are, and leaves the
//! saga's failure handling unchanged.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use saga_core::testing::{Repeat, repeat_fn};
use saga_core::{CompensationMode, FnStep, Saga, SagaBuilder, Step, TypedStep};
use support::{CustomStep, Event, Kind, Ledger, Shape, StepSpec, TestError, model};

/// Runs `saga` once on the adversarial executor.
fn run<E: Send + 'static>(saga: &mut Saga<E>) -> Result<(), saga_core::SagaError<E>> {
    support::block_on_adversarial(saga.run())
}

/// A saga whose first step adds 10 to `balance` (idempotently when keyed) and
/// takes it back; the second step fails when `fail`.
fn payment_saga(
    balance: &Arc<Mutex<i64>>,
    keyed: bool,
    repeat: bool,
    fail: bool,
) -> Saga<TestError> {
    let applied = Arc::new(Mutex::new(HashSet::new()));
    let (b1, b2, k1, k2) = (balance.clone(), balance.clone(), applied.clone(), applied);
    let pay = FnStep::new(
        move || {
            let (b, k) = (b1.clone(), k1.clone());
            async move {
                support::Yield(1).await;
                if !keyed || k.lock().unwrap().insert("payment-1") {
                    *b.lock().unwrap() += 10;
                }
                Ok::<_, TestError>(())
            }
        },
        move || {
            let (b, k) = (b2.clone(), k2.clone());
            async move {
                if !keyed || k.lock().unwrap().remove("payment-1") {
                    *b.lock().unwrap() -= 10;
                }
                Ok(())
            }
        },
    );
    let builder = if repeat {
        SagaBuilder::new().step(Repeat::new(pay))
    } else {
        SagaBuilder::new().step(pay)
    };
    builder
        .add_step(
            move || async move {
                if fail {
                    Err(TestError::Action(1))
                } else {
                    Ok(())
                }
            },
            || async { Ok(()) },
        )
        .build()
}

#[test]
fn repeat_finds_a_non_idempotent_action() {
    let plain = Arc::new(Mutex::new(0));
    let repeated = Arc::new(Mutex::new(0));
    run(&mut payment_saga(&plain, false, false, false)).unwrap();
    run(&mut payment_saga(&repeated, false, true, false)).unwrap();
    assert_eq!(*plain.lock().unwrap(), 10);
    assert_eq!(
        *repeated.lock().unwrap(),
        20,
        "the repeat exposes the double payment"
    );
}

#[test]
fn repeat_passes_an_idempotent_action() {
    for fail in [false, true] {
        let plain = Arc::new(Mutex::new(0));
        let repeated = Arc::new(Mutex::new(0));
        let a = run(&mut payment_saga(&plain, true, false, fail));
        let b = run(&mut payment_saga(&repeated, true, true, fail));
        assert_eq!(a.is_ok(), !fail);
        assert_eq!(a, b);
        assert_eq!(*plain.lock().unwrap(), *repeated.lock().unwrap());
        assert_eq!(*repeated.lock().unwrap(), if fail { 0 } else { 10 });
    }
}

#[test]
fn repeat_runs_a_counted_action_exactly_twice() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let step = FnStep::new(
        move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok::<_, TestError>(())
            }
        },
        || async { Ok(()) },
    );
    let mut saga = SagaBuilder::new().step(Repeat::times(step, 3)).build();
    run(&mut saga).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    run(&mut saga).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 6);
}

#[test]
#[should_panic(expected = "at least once")]
fn repeat_zero_times_is_refused() {
    let _ = Repeat::times(
        support::recording_step(&Ledger::new(), 0, 0, false, false),
        0,
    );
}

#[test]
fn repeat_fn_finds_a_non_idempotent_compensation() {
    let refund = |keyed: bool, repeat: bool| {
        let balance = Arc::new(Mutex::new(100));
        let refunded = Arc::new(Mutex::new(false));
        let (pay, back) = (balance.clone(), balance.clone());
        let compensation = move || {
            let (back, refunded) = (back.clone(), refunded.clone());
            async move {
                if !keyed || !std::mem::replace(&mut *refunded.lock().unwrap(), true) {
                    *back.lock().unwrap() += 30;
                }
                Ok(())
            }
        };
        let action = move || {
            let pay = pay.clone();
            async move {
                *pay.lock().unwrap() -= 30;
                Ok::<_, TestError>(())
            }
        };
        let builder = if repeat {
            SagaBuilder::new().add_step(action, repeat_fn(compensation))
        } else {
            SagaBuilder::new().add_step(action, compensation)
        };
        let mut saga = builder
            .add_step(
                || async { Err::<(), _>(TestError::Action(1)) },
                || async { Ok(()) },
            )
            .build();
        run(&mut saga).unwrap_err();
        *balance.lock().unwrap()
    };
    assert_eq!(refund(false, false), 100);
    assert_eq!(
        refund(false, true),
        130,
        "the repeat exposes the double refund"
    );
    assert_eq!(refund(true, false), 100);
    assert_eq!(refund(true, true), 100, "a refund keyed by payment passes");
}

#[test]
fn repeat_fn_passes_an_idempotent_step() {
    let state = Arc::new(Mutex::new(HashSet::new()));
    let (a, c) = (state.clone(), state.clone());
    let mut saga = SagaBuilder::new()
        .add_step(
            repeat_fn(move || {
                let a = a.clone();
                async move {
                    a.lock().unwrap().insert("seat 12A");
                    Ok::<_, TestError>(())
                }
            }),
            repeat_fn(move || {
                let c = c.clone();
                async move {
                    c.lock().unwrap().remove("seat 12A");
                    Ok(())
                }
            }),
        )
        .add_step(
            || async { Err::<(), _>(TestError::Action(1)) },
            || async { Ok(()) },
        )
        .build();
    let error = run(&mut saga).unwrap_err();
    assert!(error.is_fully_compensated());
    assert!(state.lock().unwrap().is_empty());
}

#[test]
fn repeat_fn_does_not_repeat_a_failure() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let mut action = repeat_fn(move || {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(TestError::Action(0))
        }
    });
    assert_eq!(support::block_on(action()), Err(TestError::Action(0)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The model's log with every successful action and compensation run doubled.
fn doubled(shape: &Shape, events: &[Event]) -> Vec<Event> {
    let mut out = Vec::new();
    for pair in events.chunks(2) {
        let twice = match pair[0] {
            Event::Action(i) => !shape.steps[i].action_fails,
            Event::Undo(i) => !shape.steps[i].undo_fails,
            other => panic!("unpaired event {other:?}"),
        };
        out.extend_from_slice(pair);
        if twice {
            out.extend_from_slice(pair);
        }
    }
    out
}

#[test]
fn repeat_keeps_the_failure_handling_of_hand_written_steps() {
    // Every shape of up to four hand-written steps (which start a new
    // compensation attempt after any `Ready`, as the Step protocol says):
    // wrapped in `Repeat`, the report is the model's and the log is the
    // model's with each successful run doubled.
    let mut cases = 0;
    for n in 1..=4 {
        for fail_at in std::iter::once(None).chain((0..n).map(Some)) {
            for undo_mask in 0..(1u32 << n) {
                for mode in [
                    CompensationMode::StopOnError,
                    CompensationMode::ContinueOnError,
                ] {
                    for compensate_failed in [true, false] {
                        let steps: Vec<StepSpec> = (0..n)
                            .map(|i| StepSpec {
                                kind: Kind::Custom { compensate_failed },
                                action_fails: fail_at == Some(i),
                                undo_fails: undo_mask & (1 << i) != 0,
                                action_yields: (i % 2) as u32,
                                undo_yields: ((i + 1) % 2) as u32,
                                ..StepSpec::ok()
                            })
                            .collect();
                        let shape = Shape {
                            steps,
                            mode,
                            classifier: false,
                        };
                        let ledger = Ledger::new();
                        let mut builder = SagaBuilder::new().compensation_mode(mode);
                        for (i, spec) in shape.steps.iter().enumerate() {
                            builder = builder.step(Repeat::new(CustomStep::new(
                                &ledger,
                                i,
                                *spec,
                                compensate_failed,
                            )));
                        }
                        let result = run(&mut builder.build()).map_err(|e| support::Report::of(&e));
                        let expected = model(&shape);
                        assert_eq!(result, expected.result, "{shape:?}");
                        assert_eq!(
                            ledger.events(),
                            doubled(&shape, &expected.events),
                            "{shape:?}"
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        cases,
        (1..=4).map(|n| (n + 1) * (1 << n) * 4).sum::<usize>()
    );
}

#[test]
fn repeat_compensates_a_by_value_step_once_with_the_last_value() {
    // A by-value compensation consumes its value: it cannot run twice, and it
    // receives the value of the action's last run.
    let runs = Arc::new(AtomicU32::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (r, g) = (runs.clone(), got.clone());
    let mut saga = SagaBuilder::new()
        .step(Repeat::new(TypedStep::by_value(
            move || {
                let r = r.clone();
                async move { Ok::<_, TestError>(r.fetch_add(1, Ordering::SeqCst)) }
            },
            move |run: u32| {
                g.lock().unwrap().push(run);
                async { Ok(()) }
            },
        )))
        .add_step(
            || async { Err::<(), _>(TestError::Action(1)) },
            || async { Ok(()) },
        )
        .build();
    let error = run(&mut saga).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(*got.lock().unwrap(), [1]);
}

#[test]
fn repeat_runs_a_by_reference_compensation_once() {
    // A typed step lets go of its value once its compensation succeeded:
    // `Repeat` repeats the action, not the compensation.
    let runs = Arc::new(AtomicU32::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (r, g) = (runs.clone(), got.clone());
    let mut saga = SagaBuilder::new()
        .step(Repeat::new(TypedStep::by_ref(
            move || {
                let r = r.clone();
                async move { Ok::<_, TestError>(r.fetch_add(1, Ordering::SeqCst)) }
            },
            move |run: &u32| {
                g.lock().unwrap().push(*run);
                async { Ok(()) }
            },
        )))
        .add_step(
            || async { Err::<(), _>(TestError::Action(1)) },
            || async { Ok(()) },
        )
        .build();
    let error = run(&mut saga).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(*got.lock().unwrap(), [1]);
}

/// Counts the compensation runs of an `FnStep` driven by hand through the
/// Step protocol: action once, then `poll_compensate` to `Ready` twice.
fn fn_step_compensation_runs() -> u32 {
    let undos = Arc::new(AtomicU32::new(0));
    let u = undos.clone();
    let mut step = std::pin::pin!(FnStep::new(
        || async { Ok::<_, TestError>(()) },
        move || {
            let u = u.clone();
            async move {
                u.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
    ));
    let mut cx = Context::from_waker(Waker::noop());
    step.as_mut().reset();
    assert_eq!(step.as_mut().poll_action(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(step.as_mut().poll_compensate(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(step.as_mut().poll_compensate(&mut cx), Poll::Ready(Ok(())));
    undos.load(Ordering::SeqCst)
}

#[test]
fn a_fn_step_starts_a_new_compensation_after_ready() {
    assert_eq!(fn_step_compensation_runs(), 2);
}
