//! The adapters' `spawn_flow` (and `rt::detach_flow`): a dropped handle never
//! stops a flow's run, an abort compensates with the values read, a panic is
//! a failed step, the flow comes back to run again with another input, and a
//! runtime shut down mid-run makes the handle report `Lost`. On tokio
//! current-thread and multi-thread, async-std, and smol (`detach_flow`).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use saga_core::rt::{FinishedFlow, Lost};
use saga_core::{Flow, InFlight, SagaBuilder};

/// A failed run's values: the input, the booking, the payment.
type Values = ((u32, Option<String>), Option<u32>);
type TripFlow = Flow<String, u32, (String, u32), Values>;

/// Books `booking-{input}`, then charges `input * 10`, failing when the input
/// is 0, panicking when it is 1, and never finishing (until cut short) when
/// it is 2. Every compensation sends what it undid.
fn trip(undone: mpsc::Sender<String>) -> TripFlow {
    let undo_payment = undone.clone();
    SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let booking = format!("booking-{n}");
                async move { Ok(booking) }
            },
            move |(_, booking): (&u32, &String)| {
                let _ = undone.send(format!("cancel {booking}"));
                async { Ok(()) }
            },
        )
        .then_option(
            |(n, _)| {
                let n = *n;
                async move {
                    match n {
                        0 => Err(String::from("declined")),
                        1 => panic!("bug in the payment step"),
                        2 => std::future::pending().await,
                        _ => Ok(n * 10),
                    }
                }
            },
            move |(_, paid): ((&u32, &String), Option<&u32>)| {
                let _ = undo_payment.send(format!("refund {paid:?}"));
                async { Ok(()) }
            },
        )
        .on_abort(InFlight::CutShort)
        .build_with(|((_, booking), paid)| (booking, paid))
}

/// Awaits a handle's outcome on any runtime.
type Outcome = Result<FinishedFlow<String, u32, (String, u32), Values>, Lost>;

type Task = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The scenarios, given a way to spawn a run and a way to block on a future
/// (the executor runs its tasks meanwhile).
fn scenarios(
    spawn: impl Fn(TripFlow, u32) -> saga_core::rt::FlowHandle<String, u32, (String, u32), Values>,
    run: impl Fn(Task),
) {
    let block_on = |outcome: std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>>| {
        let slot = Arc::new(Mutex::new(None));
        let filled = slot.clone();
        run(Box::pin(async move {
            let outcome = outcome.await;
            *filled.lock().unwrap() = Some(outcome);
        }));
        let outcome = slot.lock().unwrap().take();
        outcome.expect("the future ran to its end")
    };
    // Blocks until `count` compensations were reported, letting the
    // executor run.
    let undone_by = |undos: &mpsc::Receiver<String>, count: usize| {
        let mut seen = Vec::new();
        while seen.len() < count {
            match undos.try_recv() {
                Ok(entry) => seen.push(entry),
                Err(_) => run(Box::pin(yield_once())),
            }
        }
        seen
    };
    let (undone, undos) = mpsc::channel();

    // Success, and the flow handed back runs again with another input.
    let finished = block_on(Box::pin(spawn(trip(undone.clone()), 5))).unwrap();
    assert_eq!(finished.result.as_ref().unwrap(), &("booking-5".into(), 50));
    let again = block_on(Box::pin(spawn(finished.flow, 7))).unwrap();
    assert_eq!(again.result.unwrap(), ("booking-7".into(), 70));

    // A dropped handle: the run still fails and compensates, in reverse,
    // with the values it read.
    drop(spawn(again.flow, 0));
    assert_eq!(undone_by(&undos, 2), ["refund None", "cancel booking-0"]);

    // A panicking step is a failed step; what was applied is compensated.
    let flow = trip(undone.clone());
    let panicked = block_on(Box::pin(spawn(flow, 1))).unwrap();
    let error = panicked.result.unwrap_err();
    assert_eq!(*error.report().error(), "panicked: bug in the payment step");
    assert!(error.report().is_fully_compensated());
    assert_eq!(*error.values(), ((1, Some("booking-1".into())), None));
    assert_eq!(undone_by(&undos, 2), ["refund None", "cancel booking-1"]);

    // An abort stops the run (before the booking, or cutting the hanging
    // payment short) and compensates what was applied.
    let handle = spawn(panicked.flow, 2);
    assert!(!handle.is_finished());
    let abort = handle.abort_handle();
    let waiting = Box::pin(async move {
        abort.abort();
        handle.await
    });
    let aborted = block_on(waiting).unwrap();
    let error = aborted.result.unwrap_err();
    assert!(error.report().aborted());
    assert!(error.report().is_fully_compensated());
}

#[test]
fn tokio_current_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in = runtime.enter();
    scenarios(saga_tokio::spawn_flow, |future| runtime.block_on(future));
}

#[test]
fn tokio_multi_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _in = runtime.enter();
    scenarios(saga_tokio::spawn_flow, |future| runtime.block_on(future));
}

#[test]
fn async_std() {
    scenarios(saga_async_std::spawn_flow, async_std::task::block_on);
}

#[test]
fn smol_with_detach_flow() {
    let executor = Arc::new(smol::Executor::new());
    let spawner = executor.clone();
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || smol::block_on(executor.run(stopped.recv())));
    scenarios(
        move |flow, input| {
            let (task, handle) = saga_core::rt::detach_flow(flow, input);
            spawner.spawn(task).detach();
            handle
        },
        smol::block_on,
    );
    drop(stop);
    thread.join().unwrap().ok();
}

/// Returns `Pending` once, so that the executor runs its other tasks.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// A runtime shut down while the payment hangs: the handle reports the run
/// lost (not a panic, not a success).
#[test]
fn a_runtime_shut_down_mid_run_loses_it() {
    let (undone, _undos) = mpsc::channel();
    let started = Arc::new(Mutex::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = {
        let _in = runtime.enter();
        saga_tokio::spawn_flow(trip(undone), 2)
    };
    // Let the task start and reach the hanging payment.
    runtime.block_on(async {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        *started.lock().unwrap() = true;
    });
    drop(runtime);
    assert!(*started.lock().unwrap());
    let lost = smol::block_on(handle).expect_err("the run was lost");
    assert!(!lost.is_panic());
}
