//! Rule 1: step `i + 1`'s action starts only after step `i`'s action returned
//! `Ok`, even when actions suspend.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use saga_core::SagaBuilder;
use support::{
    Event, Ledger, TestError, Yield, act, block_on_adversarial_counting, block_on_counting,
    on_every_executor, simple_saga, undo,
};

/// `Action(0), ActionDone(0), Action(1), ...` for steps `0..len`.
fn forward(len: usize) -> Vec<Event> {
    (0..len)
        .flat_map(|i| [Event::Action(i), Event::ActionDone(i)])
        .collect()
}

#[test]
fn actions_run_in_order_on_every_executor() {
    for yields in 0..3 {
        on_every_executor(move || async move {
            let ledger = Ledger::new();
            let mut saga = simple_saga(&ledger, 5, None, yields);
            saga.run().await.unwrap();
            assert_eq!(ledger.events(), forward(5), "yields = {yields}");
        });
    }
}

#[test]
fn no_two_actions_are_ever_in_flight() {
    on_every_executor(|| async {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut builder = SagaBuilder::<TestError>::new();
        for i in 0..8u32 {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            builder = builder.add_step(
                move || {
                    let (in_flight, most) = (in_flight.clone(), most.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        Yield(i % 3).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    }
                },
                || async { Ok(()) },
            );
        }
        builder.build().run().await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_failed_action_starts_no_later_action() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = simple_saga(&ledger, 5, Some(2), 1);
        let error = saga.run().await.unwrap_err();
        assert_eq!(error.failed_step(), 2);
        assert_eq!(ledger.acted(), [0, 1, 2]);
    });
}

/// A future that stays `Pending` until its gate is opened.
struct Gate(Arc<AtomicBool>);

impl Future for Gate {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn a_pending_action_holds_back_the_next_one() {
    let ledger = Ledger::new();
    let open = Arc::new(AtomicBool::new(false));
    let (a, gate) = (ledger.clone(), open.clone());
    let mut saga = SagaBuilder::new()
        .add_step(
            move || {
                let (a, gate) = (a.clone(), gate.clone());
                async move {
                    a.push(Event::Action(0));
                    Gate(gate).await;
                    a.push(Event::ActionDone(0));
                    Ok::<_, TestError>(())
                }
            },
            || async { Ok(()) },
        )
        .step(support::recording_step(&ledger, 1, 0, false, false))
        .build();

    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100 {
        assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
        assert_eq!(ledger.events(), [Event::Action(0)]);
    }
    open.store(true, Ordering::SeqCst);
    assert!(matches!(
        Pin::new(&mut run).poll(&mut cx),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(ledger.events(), forward(2));
}

#[test]
fn each_suspension_is_one_pending_poll() {
    // A run is pending exactly once per suspension of a step, no more (no
    // spurious `Pending`) and no less (no step skipped ahead).
    let yields = [0, 1, 2, 3, 0, 5];
    let build = |ledger: &Ledger| {
        let mut builder = SagaBuilder::new();
        for (i, &y) in yields.iter().enumerate() {
            builder = builder.step(support::recording_step(ledger, i, y, false, false));
        }
        builder.build()
    };
    let total: u32 = yields.iter().sum();

    let ledger = Ledger::new();
    let mut saga = build(&ledger);
    let (result, polls) = block_on_counting(saga.run());
    result.unwrap();
    assert_eq!(polls, total as usize + 1);
    assert_eq!(ledger.events(), forward(yields.len()));

    let ledger = Ledger::new();
    let mut saga = build(&ledger);
    let (result, polls) = block_on_adversarial_counting(saga.run());
    result.unwrap();
    assert_eq!(polls, total as usize + 1);
    assert_eq!(ledger.events(), forward(yields.len()));
}

#[test]
fn state_after_each_poll() {
    // Poll by hand and check the log after every poll: step 0 suspends twice,
    // step 1 once, then step 1 fails and its compensation suspends once.
    let ledger = Ledger::new();
    let (a0, a1, c1) = (ledger.clone(), ledger.clone(), ledger.clone());
    let mut saga = SagaBuilder::new()
        .add_step(
            move || act(a0.clone(), 0, 2, false, ()),
            || async { Ok(()) },
        )
        .add_step(
            move || act(a1.clone(), 1, 1, true, ()),
            move || undo(c1.clone(), 1, 1, false),
        )
        .build();
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    let mut poll = || {
        Pin::new(&mut run)
            .poll(&mut cx)
            .map(|r| r.map_err(|e| e.failed_step()))
    };

    assert!(poll().is_pending());
    assert_eq!(ledger.events(), [Event::Action(0)]);
    assert!(poll().is_pending());
    assert_eq!(ledger.events(), [Event::Action(0)]);
    assert!(poll().is_pending());
    assert_eq!(
        ledger.events(),
        [Event::Action(0), Event::ActionDone(0), Event::Action(1)]
    );
    assert!(poll().is_pending());
    assert_eq!(ledger.take().len(), 5); // ... ActionDone(1), Undo(1)
    assert_eq!(poll(), Poll::Ready(Err(1)));
    assert_eq!(ledger.events(), [Event::UndoDone(1)]);
}

/// A step that waits for another task on the same thread by yielding (a
/// future that wakes itself at once, like `futures::pending!` after a wake or
/// async-std's `yield_now`). The run must hand each `Pending` back to the
/// executor, or the other task never runs.
async fn wait_for(flag: Arc<AtomicBool>) -> Result<(), TestError> {
    for _ in 0..100_000 {
        if flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        Yield(1).await;
    }
    Err(TestError::Action(0)) // starved: the other task never ran
}

fn waiting_saga(flag: &Arc<AtomicBool>) -> saga_core::Saga<TestError> {
    let flag = flag.clone();
    SagaBuilder::new()
        .add_step(move || wait_for(flag.clone()), || async { Ok(()) })
        .build()
}

#[test]
fn a_yielding_step_lets_other_tasks_on_the_thread_run() {
    // tokio current-thread: the spawned task runs only when the saga yields.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = flag.clone();
        let other = tokio::spawn(async move { setter.store(true, Ordering::SeqCst) });
        waiting_saga(&flag).run().await.unwrap();
        other.await.unwrap();
    });

    // smol's single-threaded executor.
    let executor = smol::LocalExecutor::new();
    smol::block_on(executor.run(async {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = flag.clone();
        let other = executor.spawn(async move { setter.store(true, Ordering::SeqCst) });
        waiting_saga(&flag).run().await.unwrap();
        other.await;
    }));
}
