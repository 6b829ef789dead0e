//! One `AbortHandle` shared by many runs, like a shutdown token: a single
//! `abort()` wakes every run attached to it, so runs whose action never
//! finishes (cut short by `InFlight::CutShort`) end at once, aborted and
//! fully compensated, on every executor; runs that ended, or were dropped,
//! leave nothing in the handle, and a later abort wakes none of them.
//!
//! The runs of a scenario are joined by `Join`, which gives each run a waker
//! of its own and polls a run only when that waker was woken, the way an
//! executor polls its tasks: a run that the abort did not wake would never be
//! polled again, and the scenario would hang. A watchdog turns such a hang
//! into a failure. No assertion is about time.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::future::{Future, pending, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use saga_core::{AbortHandle, Aborted, InFlight, Saga, SagaBuilder, SagaError};
use support::{Exec, Yield, on_every_executor};

/// Runs sharing one handle in the big scenarios.
const RUNS: usize = 1_000;

/// How long a scenario may take before it is taken to hang. Generous: each
/// takes milliseconds.
const HANG: Duration = Duration::from_secs(120);

#[derive(Debug, PartialEq)]
enum Error {
    Aborted,
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

// ---------------------------------------------------------------------------
// A watchdog and a join of runs with a waker each
// ---------------------------------------------------------------------------

/// Ends the process with a message if it is not dropped within `HANG`: a
/// scenario that hangs fails instead of holding CI forever.
struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

impl Watchdog {
    fn new(what: String) -> Self {
        let (done, wait) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(HANG) {
                eprintln!("{what}: still running after {HANG:?}, it hangs");
                std::process::exit(101);
            }
        });
        Watchdog(done)
    }
}

/// The joining future's waker, woken by any of its runs.
#[derive(Default)]
struct Parent(AtomicWaker);

/// One run's waker: marks the run to be polled, counts its wake-ups.
struct Child {
    woken: AtomicBool,
    wakes: AtomicUsize,
    parent: Arc<Parent>,
}

impl Wake for Child {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.woken.store(true, Ordering::SeqCst);
        self.parent.0.wake();
    }
}

/// Polls each future once, then only those whose own waker was woken;
/// `Ready` with every output once all are.
struct Join<F: Future> {
    futures: Vec<Option<F>>,
    outputs: Vec<Option<F::Output>>,
    children: Vec<Arc<Child>>,
    wakers: Vec<Waker>,
    parent: Arc<Parent>,
    left: usize,
}

impl<F: Future + Unpin> Join<F> {
    fn new(futures: Vec<F>) -> Self {
        let parent = Arc::new(Parent::default());
        let children: Vec<_> = (0..futures.len())
            .map(|_| {
                Arc::new(Child {
                    woken: AtomicBool::new(true),
                    wakes: AtomicUsize::new(0),
                    parent: parent.clone(),
                })
            })
            .collect();
        Join {
            left: futures.len(),
            outputs: futures.iter().map(|_| None).collect(),
            futures: futures.into_iter().map(Some).collect(),
            wakers: children.iter().cloned().map(Waker::from).collect(),
            children,
            parent,
        }
    }

    /// How many times each future's waker was woken.
    fn wakes(&self) -> Vec<usize> {
        let wakes = self.children.iter();
        wakes
            .map(|child| child.wakes.load(Ordering::SeqCst))
            .collect()
    }

    /// Polls the woken futures; `true` when all are ready.
    fn poll_woken(&mut self, cx: &mut Context<'_>) -> bool {
        self.parent.0.register(cx.waker());
        for (index, child) in self.children.iter().enumerate() {
            let Some(future) = self.futures[index].as_mut() else {
                continue;
            };
            if !child.woken.swap(false, Ordering::SeqCst) {
                continue;
            }
            let mut cx = Context::from_waker(&self.wakers[index]);
            if let Poll::Ready(output) = Pin::new(future).poll(&mut cx) {
                self.outputs[index] = Some(output);
                self.futures[index] = None;
                self.left -= 1;
            }
        }
        self.left == 0
    }

    /// Polls the woken futures once (the first time: all of them).
    async fn poll_once(&mut self) -> bool {
        poll_fn(|cx| Poll::Ready(self.poll_woken(cx))).await
    }
}

impl<F: Future + Unpin> Unpin for Join<F> {}

impl<F: Future + Unpin> Future for Join<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.poll_woken(cx) {
            true => Poll::Ready(this.outputs.iter_mut().map(|o| o.take().unwrap()).collect()),
            false => Poll::Pending,
        }
    }
}

// ---------------------------------------------------------------------------
// Sagas
// ---------------------------------------------------------------------------

/// What the runs of a scenario did, per run.
struct Counts {
    // Step 1's action started (and waits forever).
    waiting: AtomicUsize,
    // Step 0's compensation, per run.
    undone: Vec<AtomicUsize>,
    // Step 1's compensation (a cut-short action counts as possibly applied,
    // rule 3 and rule 7).
    undone_hanging: AtomicUsize,
}

impl Counts {
    fn new(runs: usize) -> Arc<Self> {
        Arc::new(Counts {
            waiting: AtomicUsize::new(0),
            undone: (0..runs).map(|_| AtomicUsize::new(0)).collect(),
            undone_hanging: AtomicUsize::new(0),
        })
    }
}

/// Step 0 succeeds; step 1's action is pending forever and never wakes
/// anyone; an abort cuts it short.
fn hanging_saga(counts: &Arc<Counts>, run: usize) -> Saga<Error> {
    let (waiting, undone, undone_hanging) = (counts.clone(), counts.clone(), counts.clone());
    SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                undone.undone[run].fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .add_step(
            move || {
                waiting.waiting.fetch_add(1, Ordering::SeqCst);
                pending::<Result<(), Error>>()
            },
            move || {
                undone_hanging.undone_hanging.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .on_abort(InFlight::CutShort)
        .build()
}

/// Every run was aborted in step 1 and fully compensated, step 0 exactly
/// once per run.
fn check_aborted(results: Vec<Result<(), SagaError<Error>>>, counts: &Counts) {
    assert_eq!(results.len(), counts.undone.len());
    for (run, result) in results.into_iter().enumerate() {
        let error = result.expect_err("an aborted run succeeded");
        assert!(error.aborted(), "run {run}: {error:?}");
        assert_eq!(*error.error(), Error::Aborted);
        assert_eq!(error.failed_step(), 1);
        assert!(error.is_fully_compensated(), "run {run}: {error:?}");
        assert_eq!(error.compensated_count(), 2);
        assert_eq!(counts.undone[run].load(Ordering::SeqCst), 1, "run {run}");
    }
    let runs = counts.undone.len();
    assert_eq!(counts.undone_hanging.load(Ordering::SeqCst), runs);
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// `RUNS` runs on one handle, all waiting forever in step 1; one abort ends
/// every one of them, each woken once, by the abort.
async fn thousand_runs_one_abort() {
    let counts = Counts::new(RUNS);
    let handle = AbortHandle::new();
    let mut sagas: Vec<_> = (0..RUNS).map(|run| hanging_saga(&counts, run)).collect();
    let runs = sagas.iter_mut().map(|saga| saga.run().abortable(&handle));
    let mut join = Join::new(runs.collect());

    assert!(!join.poll_once().await, "a run whose action hangs ended");
    assert_eq!(counts.waiting.load(Ordering::SeqCst), RUNS);
    assert_eq!(handle.attached_runs(), RUNS);
    assert!(join.wakes().iter().all(|&wakes| wakes == 0));

    handle.abort();
    // Every run was woken by the abort itself, once, before anything polled.
    assert!(join.wakes().iter().all(|&wakes| wakes == 1));
    let results = join.await;
    check_aborted(results, &counts);
    assert_eq!(handle.attached_runs(), 0);
    // The table's slot and a list grown (by doubling) to the runs beyond it.
    let slots = handle.registry_slots();
    assert!(slots <= 1 + (RUNS - 1).next_power_of_two(), "{slots}");
}

#[test]
fn one_abort_ends_a_thousand_runs_waiting_forever_on_every_executor() {
    for exec in Exec::ALL {
        eprintln!("scenario on {exec:?}");
        let _watchdog = Watchdog::new(format!("{RUNS} runs, one abort, on {exec:?}"));
        exec.block_on(thousand_runs_one_abort());
    }
}

/// `RUNS` sagas spawned as tasks of their own, attached to one handle, which
/// the test thread aborts once they all wait: on tokio multi-thread,
/// async-std and smol's global executor, where the runs register from
/// several threads at once and the abort comes from another.
#[test]
fn one_abort_from_another_thread_ends_a_thousand_spawned_runs() {
    type Task = Pin<Box<dyn Future<Output = Result<(), SagaError<Error>>> + Send>>;
    type Spawn = fn(Task) -> Task;
    let spawners: [(&str, Spawn); 3] = [
        ("tokio multi-thread", |task| {
            let task = support::multi_thread_runtime().spawn(task);
            Box::pin(async move { task.await.expect("the task panicked") })
        }),
        ("async-std", |task| Box::pin(async_std::task::spawn(task))),
        ("smol", |task| Box::pin(smol::spawn(task))),
    ];
    for (name, spawn) in spawners {
        eprintln!("scenario on {name}");
        let _watchdog = Watchdog::new(format!("{RUNS} spawned runs on {name}"));
        let counts = Counts::new(RUNS);
        let handle = AbortHandle::new();
        let tasks: Vec<_> = (0..RUNS)
            .map(|run| {
                let mut saga = hanging_saga(&counts, run);
                let handle = handle.clone();
                spawn(Box::pin(async move { saga.run().abortable(&handle).await }))
            })
            .collect();
        // Bounded by the watchdog, not by a duration asserted.
        while counts.waiting.load(Ordering::SeqCst) < RUNS {
            std::thread::sleep(Duration::from_millis(1));
        }
        handle.abort();
        let results = smol::block_on(async {
            let mut results = Vec::with_capacity(RUNS);
            for task in tasks {
                results.push(task.await);
            }
            results
        });
        check_aborted(results, &counts);
        assert_eq!(handle.attached_runs(), 0);
    }
}

/// A one-step saga whose action suspends `yields` times.
fn quick_saga(yields: u32) -> Saga<Error> {
    SagaBuilder::new()
        .add_step(
            move || async move {
                Yield(yields).await;
                Ok(())
            },
            || async { Ok(()) },
        )
        .build()
}

/// 10,000 runs one after another and 100 rounds of 100 concurrent runs, all
/// on one handle and all ending well: nothing stays registered, the registry
/// never holds more than the runs attached at once, and an abort afterwards
/// wakes none of the finished runs.
async fn finished_runs_leave_nothing() {
    let handle = AbortHandle::new();
    let mut saga = quick_saga(1);
    let mut sequential = Vec::new();
    for _ in 0..10_000 {
        let mut join = Join::new(vec![saga.run().abortable(&handle)]);
        assert!((&mut join).await.into_iter().all(|result| result.is_ok()));
        assert_eq!(handle.attached_runs(), 0);
        sequential.extend(join.children);
    }
    assert_eq!(handle.registry_slots(), 1, "the table's one slot, no more");

    const AT_ONCE: usize = 100;
    let mut sagas: Vec<_> = (0..AT_ONCE).map(|_| quick_saga(3)).collect();
    let mut rounds = Vec::new();
    for _ in 0..100 {
        let runs = sagas.iter_mut().map(|saga| saga.run().abortable(&handle));
        let mut join = Join::new(runs.collect());
        assert!(!join.poll_once().await);
        assert_eq!(handle.attached_runs(), AT_ONCE);
        assert!((&mut join).await.into_iter().all(|result| result.is_ok()));
        assert_eq!(handle.attached_runs(), 0);
        let slots = handle.registry_slots();
        assert!(slots <= 1 + (AT_ONCE - 1).next_power_of_two(), "{slots}");
        rounds.push(join.wakes());
    }

    let wakes = |children: &[Arc<Child>]| -> Vec<usize> {
        let wakes = children.iter();
        wakes
            .map(|child| child.wakes.load(Ordering::SeqCst))
            .collect()
    };
    let before = wakes(&sequential);
    handle.abort();
    let after = wakes(&sequential);
    assert_eq!(before, after, "an abort woke a run that had ended");
    // The rounds' wakers as well (their joins are gone; their counts are
    // what the steps' own suspensions woke, 3 per run).
    assert!(rounds.iter().flatten().all(|&wakes| wakes == 3));
}

#[test]
fn runs_that_ended_leave_nothing_in_the_handle_on_every_executor() {
    let _watchdog = Watchdog::new("finished runs leave nothing".into());
    on_every_executor(finished_runs_leave_nothing);
}

/// Runs dropped while they wait detach; an abort then wakes none of them,
/// and the handle still stops a run attached later.
async fn dropped_runs_detach() {
    const AT_ONCE: usize = 50;
    let counts = Counts::new(AT_ONCE);
    let handle = AbortHandle::new();
    let mut sagas: Vec<_> = (0..AT_ONCE).map(|run| hanging_saga(&counts, run)).collect();
    let runs = sagas.iter_mut().map(|saga| saga.run().abortable(&handle));
    let mut join = Join::new(runs.collect());
    assert!(!join.poll_once().await);
    assert_eq!(handle.attached_runs(), AT_ONCE);
    let children = join.children.clone();
    drop(join); // every run dropped mid-saga: no compensation (rule 9)
    assert_eq!(handle.attached_runs(), 0);

    let later_counts = Counts::new(1);
    let mut later = hanging_saga(&later_counts, 0);
    let mut join = Join::new(vec![later.run().abortable(&handle)]);
    assert!(!join.poll_once().await);
    handle.abort();
    let dropped_wakes = children
        .iter()
        .map(|child| child.wakes.load(Ordering::SeqCst));
    assert!(dropped_wakes.into_iter().all(|wakes| wakes == 0));
    check_aborted(join.await, &later_counts);
    assert!(
        counts
            .undone
            .iter()
            .all(|undone| undone.load(Ordering::SeqCst) == 0)
    );
}

#[test]
fn runs_dropped_mid_saga_detach_on_every_executor() {
    let _watchdog = Watchdog::new("dropped runs detach".into());
    on_every_executor(dropped_runs_detach);
}

/// A handle aborted before any run is attached stops each run before its
/// first action.
async fn aborted_before_attach() {
    const AT_ONCE: usize = 100;
    let started = Arc::new(AtomicUsize::new(0));
    let handle = AbortHandle::new();
    handle.abort();
    let mut sagas: Vec<Saga<Error>> = (0..AT_ONCE)
        .map(|_| {
            let started = started.clone();
            SagaBuilder::new()
                .add_step(
                    move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        async { Ok(()) }
                    },
                    || async { Ok(()) },
                )
                .build()
        })
        .collect();
    let runs = sagas.iter_mut().map(|saga| saga.run().abortable(&handle));
    for result in Join::new(runs.collect()).await {
        let error = result.expect_err("a run on an aborted handle succeeded");
        assert!(error.aborted());
        assert_eq!(error.failed_step(), 0);
        assert_eq!(error.attempts(), 0);
        assert_eq!(error.compensated_count(), 0);
    }
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(handle.attached_runs(), 0);
}

#[test]
fn an_abort_before_attach_stops_runs_before_their_first_action_on_every_executor() {
    let _watchdog = Watchdog::new("aborted before attach".into());
    on_every_executor(aborted_before_attach);
}

/// Threads attach runs to one handle and detach them (runs that end well,
/// over and over, through the table and the list beyond it), while others
/// wait in a run that never ends, and the test thread aborts at a random
/// moment. Each run is driven by the adversarial executor (it parks until
/// woken, alternates wakers so every poll re-registers, and fails on a lost
/// wake-up): every waiting run must end, aborted and compensated, whether it
/// registered before the abort, during it, or after it.
#[test]
fn attaching_and_detaching_while_another_thread_aborts_loses_no_run() {
    const ROUNDS: usize = 300;
    const WAITERS: usize = 3;
    const CHURNERS: usize = 2;
    let _watchdog = Watchdog::new("attach and detach during an abort".into());
    let mut rng = fastrand::Rng::with_seed(0x5a6a);
    for round in 0..ROUNDS {
        let handle = AbortHandle::with_capacity(rng.usize(0..3));
        let counts = Counts::new(WAITERS);
        let waiters: Vec<_> = (0..WAITERS)
            .map(|run| {
                let (handle, mut saga) = (handle.clone(), hanging_saga(&counts, run));
                std::thread::spawn(move || {
                    support::block_on_adversarial(saga.run().abortable(&handle))
                })
            })
            .collect();
        let churners: Vec<_> = (0..CHURNERS)
            .map(|_| {
                let (handle, mut saga) = (handle.clone(), quick_saga(2));
                std::thread::spawn(move || {
                    while support::block_on_adversarial(saga.run().abortable(&handle)).is_ok() {}
                })
            })
            .collect();
        // Sometimes before every waiter is waiting, sometimes after.
        if rng.bool() {
            while counts.waiting.load(Ordering::SeqCst) < WAITERS {
                std::thread::yield_now();
            }
        }
        for _ in 0..rng.usize(0..20_000) {
            std::hint::spin_loop();
        }
        handle.abort();
        let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        churners.into_iter().for_each(|c| c.join().unwrap());
        for (run, result) in results.into_iter().enumerate() {
            let error = result.expect_err("a waiting run succeeded");
            assert!(
                error.aborted() && error.is_fully_compensated(),
                "round {round}"
            );
            // Stopped before step 1, or cut short in it.
            assert_eq!(
                counts.undone[run].load(Ordering::SeqCst),
                usize::from(error.failed_step() == 1 || error.compensated_count() > 0)
            );
        }
        assert_eq!(handle.attached_runs(), 0, "round {round}");
    }
}
