//! Wake-up correctness of parallel groups on every executor: a step, a group
//! of 3 whose members each wait on a gate, and a last step. A helper thread
//! opens the gates one at a time, in each of the 6 orders, from outside the
//! executor; each member must then be polled exactly once more (twice in
//! all: no poll without a wake-up), all must complete, and the compensations
//! must run in descending step order. Run with every member succeeding (the
//! last step fails) and with the member opened second failing: 6 orders x 2
//! variants x 6 executors = 72 runs.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use saga_core::SagaBuilder;
use support::{Exec, TestError};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: String) {
    log.lock().unwrap().push(entry);
}

/// A one-shot gate, opened from another thread; it counts the polls of the
/// future waiting on it (the member's only suspension point, so its polls
/// are the member's polls).
#[derive(Debug)]
struct Gate {
    member: usize,
    log: Log,
    open: AtomicBool,
    passed: AtomicBool,
    polls: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn new(member: usize, log: &Log) -> Arc<Self> {
        Arc::new(Gate {
            member,
            log: log.clone(),
            open: AtomicBool::new(false),
            passed: AtomicBool::new(false),
            polls: AtomicUsize::new(0),
            waker: Mutex::new(None),
        })
    }

    fn open(&self) {
        push(&self.log, format!("open {}", self.member));
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }
}

struct Wait(Arc<Gate>);

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let gate = &self.0;
        // Logged before it is counted: the opener waits for the count, and
        // its "open" must come after this "poll" in the log.
        push(&gate.log, format!("poll {}", gate.member));
        gate.polls.fetch_add(1, Ordering::SeqCst);
        let mut waker = gate.waker.lock().unwrap();
        if gate.open.load(Ordering::SeqCst) {
            gate.passed.store(true, Ordering::SeqCst);
            return Poll::Ready(());
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Waits (as a hang detector only) until `done` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "hangs waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Every order of the members 1, 2, 3.
const ORDERS: [[usize; 3]; 6] = [
    [1, 2, 3],
    [1, 3, 2],
    [2, 1, 3],
    [2, 3, 1],
    [3, 1, 2],
    [3, 2, 1],
];

fn scenario(exec: Exec, order: [usize; 3], member_fails: bool) {
    let log: Log = Arc::default();
    let gates: Vec<Arc<Gate>> = (1..=3).map(|member| Gate::new(member, &log)).collect();
    // In the failing variant, the member opened second fails.
    let failing = member_fails.then_some(order[1]);

    let opener = {
        let gates = gates.clone();
        std::thread::spawn(move || {
            wait_until("every member's first poll", || {
                gates
                    .iter()
                    .all(|gate| gate.polls.load(Ordering::SeqCst) >= 1)
            });
            for member in order {
                let gate = &gates[member - 1];
                gate.open();
                wait_until("the woken member", || gate.passed.load(Ordering::SeqCst));
            }
        })
    };

    let (saga_log, saga_gates) = (log.clone(), gates.clone());
    let result = exec.block_on(async move {
        let log = saga_log;
        let undo = |step: usize| {
            let log = log.clone();
            move || {
                push(&log, format!("undo {step}"));
                async { Ok(()) }
            }
        };
        let member = |m: usize| {
            let gate = saga_gates[m - 1].clone();
            move || {
                let gate = gate.clone();
                async move {
                    Wait(gate).await;
                    if failing == Some(m) {
                        Err(TestError::Action(m))
                    } else {
                        Ok(())
                    }
                }
            }
        };
        let mut saga = SagaBuilder::new()
            .add_step(|| async { Ok::<_, TestError>(()) }, undo(0))
            .parallel(|group| {
                group
                    .add_step(member(1), undo(1))
                    .add_step(member(2), undo(2))
                    .add_step(member(3), undo(3))
            })
            .add_step(|| async { Err::<(), _>(TestError::Action(4)) }, undo(4))
            .build();
        saga.run().await
    });
    opener.join().expect("the opener thread");

    let error = result.expect_err("the saga fails");
    let (failed_step, undone): (usize, &[usize]) = match failing {
        Some(member) => (member, &[3, 2, 1, 0]),
        None => (4, &[4, 3, 2, 1, 0]),
    };
    assert_eq!(error.failed_step(), failed_step, "{exec:?} {order:?}");
    assert!(error.is_fully_compensated());
    assert!(error.concurrent_failures().is_empty());

    let mut expected: Vec<String> = (1..=3).map(|m| format!("poll {m}")).collect();
    for member in order {
        expected.push(format!("open {member}"));
        expected.push(format!("poll {member}"));
    }
    expected.extend(undone.iter().map(|step| format!("undo {step}")));
    assert_eq!(
        *log.lock().unwrap(),
        expected,
        "on {exec:?}, gates opened in order {order:?}"
    );
    for gate in &gates {
        assert_eq!(
            gate.polls.load(Ordering::SeqCst),
            2,
            "member {} polled without a wake-up on {exec:?}",
            gate.member
        );
    }
}

#[test]
fn members_woken_in_any_order_are_polled_only_when_woken() {
    for exec in Exec::ALL {
        for order in ORDERS {
            scenario(exec, order, false);
        }
    }
}

#[test]
fn a_member_failing_while_others_wait_lets_them_finish() {
    for exec in Exec::ALL {
        for order in ORDERS {
            scenario(exec, order, true);
        }
    }
}
