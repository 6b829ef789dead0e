//! Flows (sagas that carry data), written from the README and the rustdoc
//! alone: what each action and compensation reads, the results of `build`
//! and `build_with`, the values a `FlowError` hands back after a failure at
//! every position, `then_option`, policies, classifiers, compensation modes,
//! observers, aborts, re-runs, drops (after success, failure and a dropped
//! run), `LocalFlow`, named flow types, `Pick` helpers and the flow's
//! introspection (`len`, `step_names`, `parallel_groups`).
//!
//! Tests marked `#[ignore = "MISMATCH: ..."]` show a place where the code does
//! not do what its documentation says.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    // The docs' own spelling: `.sleeper(|duration| smol::Timer::after(duration))`.
    clippy::redundant_closure,
    clippy::single_range_in_vec_init,
    // The nested tuples are what is under test: they are spelled out on purpose.
    clippy::type_complexity
)]

use std::cell::RefCell;
use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use saga_core::marker::{Appends, Pick, SagaKind};
use saga_core::{
    AbortHandle, Aborted, CompensationMode, Flow, FlowBuilder, FnStep, Handling, InFlight,
    LocalFlow, LocalSagaBuilder, Observer, ParallelGroup, Recovery, Retry, SagaBuilder, SagaError,
    StepPolicy, StepRef, StopReason, TimedOut,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A shared, ordered log of what the steps saw.
type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn block_on<F: Future>(future: F) -> F::Output {
    smol::block_on(future)
}

/// A value that counts its drops, and is neither `Clone` nor `Copy`, so the
/// only copy of it is the one the flow holds.
#[derive(Debug)]
struct Tracked {
    id: u32,
    drops: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(id: u32, drops: &Arc<AtomicUsize>) -> Self {
        Tracked {
            id,
            drops: drops.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn count(counter: &Arc<AtomicUsize>) -> usize {
    counter.load(Ordering::SeqCst)
}

/// A future that stays pending until `flag` is set (waking itself at once,
/// so that an executor polls it again).
fn gate(flag: Arc<AtomicBool>) -> impl Future<Output = ()> + Send {
    poll_fn(move |cx| {
        if flag.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(future).poll(&mut cx)
}

/// A hand-written error with a variant for each interrupt.
#[derive(Debug, Clone, PartialEq)]
enum Error {
    Failed(&'static str),
    TimedOut,
    Aborted,
}

impl From<TimedOut> for Error {
    fn from(_: TimedOut) -> Self {
        Error::TimedOut
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Failed(why) => write!(f, "failed: {why}"),
            Error::TimedOut => f.write_str("timed out"),
            Error::Aborted => f.write_str("aborted"),
        }
    }
}

impl StdError for Error {}

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>(_: &T) {}

// ---------------------------------------------------------------------------
// The crate docs' and the builder's examples, as written
// ---------------------------------------------------------------------------

#[test]
fn crate_docs_data_flow_example() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |nights: &u32| {
                let nights = *nights;
                async move { Ok::<_, String>(nights * 90) }
            },
            |(_, price): (&u32, &u32)| {
                let _refund = *price;
                async { Ok(()) }
            },
        )
        .then(
            |(nights, price)| {
                let receipt = format!("{nights} nights, {price} paid");
                async move { Ok(receipt) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, receipt)| receipt);

    assert_eq!(block_on(flow.run(2)).unwrap(), "2 nights, 180 paid");
    assert_eq!(block_on(flow.run(3)).unwrap(), "3 nights, 270 paid");
}

#[test]
fn input_example_from_saga_builder() {
    let mut flow = SagaBuilder::new()
        .input::<&'static str>()
        .then(
            |city: &&str| {
                let city = *city;
                async move { Ok::<_, String>(format!("flight to {city}")) }
            },
            |_| async { Ok(()) },
        )
        .then(
            |(city, flight)| {
                let hotel = format!("hotel in {city} after the {flight}");
                async move { Ok(hotel) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|((_, flight), hotel)| [flight, hotel]);

    let trip = block_on(flow.run("Lisbon")).unwrap();
    assert_eq!(
        trip,
        [
            "flight to Lisbon",
            "hotel in Lisbon after the flight to Lisbon"
        ]
    );
}

#[test]
fn flow_builder_trip_example() {
    #[derive(Clone)]
    struct Trip {
        nights: u32,
    }
    struct Flight {
        id: String,
        arrives: u32,
    }
    #[derive(Debug, PartialEq)]
    struct Itinerary {
        flight: String,
        hotel: String,
        paid: u32,
    }

    let mut flow = SagaBuilder::new()
        .input::<Trip>()
        .then(
            |trip: &Trip| {
                let _ = trip;
                async {
                    Ok::<_, String>(Flight {
                        id: "FL-1".into(),
                        arrives: 12,
                    })
                }
            },
            |(_, flight): (&Trip, &Flight)| {
                let _id = flight.id.clone();
                async { Ok(()) }
            },
        )
        .named("book flight")
        .then(
            |(trip, flight)| {
                let (from, to) = (flight.arrives, flight.arrives + trip.nights);
                async move { Ok(format!("HT-{from}-{to}")) }
            },
            |_| async { Ok(()) },
        )
        .named("book hotel")
        .then(
            |((trip, _), _)| {
                let amount = 100 * trip.nights;
                async move { Ok(amount) }
            },
            |_| async { Ok(()) },
        )
        .named("charge card")
        .build_with(|(((_, flight), hotel), paid)| Itinerary {
            flight: flight.id,
            hotel,
            paid,
        });

    let itinerary = block_on(flow.run(Trip { nights: 3 })).unwrap();
    assert_eq!(
        itinerary,
        Itinerary {
            flight: "FL-1".into(),
            hotel: "HT-12-15".into(),
            paid: 300
        }
    );
    assert_eq!(
        flow.step_names().collect::<Vec<_>>(),
        [Some("book flight"), Some("book hotel"), Some("charge card")]
    );
    assert_eq!(flow.len(), 3);
    assert_eq!(flow.parallel_groups().len(), 0);
}

// ---------------------------------------------------------------------------
// What each action and compensation reads
// ---------------------------------------------------------------------------

#[test]
fn first_action_reads_the_input_and_its_compensation_reads_input_and_own_value() {
    let seen = log();
    let (a, c) = (seen.clone(), seen.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |input: &u32| {
                push(&a, format!("action {input}"));
                let value = *input * 2;
                async move { Ok::<_, &'static str>(value) }
            },
            move |(input, own): (&u32, &u32)| {
                push(&c, format!("undo {input} {own}"));
                async { Ok(()) }
            },
        )
        .then(|_| async { Err::<(), _>("boom") }, |_| async { Ok(()) })
        .build();

    let error = block_on(flow.run(21)).unwrap_err();
    assert_eq!(entries(&seen), ["action 21", "undo 21 42"]);
    assert_eq!(*error.values(), ((21, Some(42)), None));
}

#[test]
fn every_action_and_compensation_reads_values_nested_left_to_right() {
    let seen = log();
    let (a1, a2, a3) = (seen.clone(), seen.clone(), seen.clone());
    let (c0, c1, c2) = (seen.clone(), seen.clone(), seen.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |input: &u32| {
                let v = format!("a{input}");
                async move { Ok::<_, &'static str>(v) }
            },
            move |(input, own): (&u32, &String)| {
                push(&c0, format!("undo0 {input} {own}"));
                async { Ok(()) }
            },
        )
        .then(
            move |(input, a): (&u32, &String)| {
                push(&a1, format!("act1 {input} {a}"));
                let v = a.len() as u64 * 10;
                async move { Ok(v) }
            },
            move |((input, a), own): ((&u32, &String), &u64)| {
                push(&c1, format!("undo1 {input} {a} {own}"));
                async { Ok(()) }
            },
        )
        .then(
            move |((input, a), b): ((&u32, &String), &u64)| {
                push(&a2, format!("act2 {input} {a} {b}"));
                async move { Ok('x') }
            },
            move |(((input, a), b), own): (((&u32, &String), &u64), &char)| {
                push(&c2, format!("undo2 {input} {a} {b} {own}"));
                async { Ok(()) }
            },
        )
        .then(
            move |(((input, a), b), c): (((&u32, &String), &u64), &char)| {
                push(&a3, format!("act3 {input} {a} {b} {c}"));
                async { Err::<u8, _>("last step failed") }
            },
            |_| async { Ok(()) },
        )
        .build();

    let error = block_on(flow.run(7)).unwrap_err();
    assert_eq!(
        entries(&seen),
        [
            "act1 7 a7",
            "act2 7 a7 20",
            "act3 7 a7 20 x",
            "undo2 7 a7 20 x",
            "undo1 7 a7 20",
            "undo0 7 a7",
        ]
    );
    assert_eq!(
        *error.values(),
        ((((7, Some("a7".to_string())), Some(20)), Some('x')), None)
    );
    assert_eq!(error.report().failed_step(), 3);
    assert!(error.report().is_fully_compensated());
    assert_eq!(error.report().compensated_count(), 3);
}

#[test]
fn plain_steps_read_nothing_and_add_nothing() {
    let order = log();
    let (p1, p2, p3, t) = (order.clone(), order.clone(), order.clone(), order.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, &'static str>(n + 1) }
            },
            |_| async { Ok(()) },
        )
        .add_step(
            move || {
                push(&p1, "plain add_step");
                async { Ok(123u64) } // its value is dropped
            },
            || async { Ok(()) },
        )
        .step(FnStep::new(
            move || {
                push(&p2, "plain step");
                async { Ok(()) }
            },
            || async { Ok(()) },
        ))
        .step_with(
            FnStep::new(
                move || {
                    push(&p3, "plain step_with");
                    async { Ok(()) }
                },
                || async { Ok(()) },
            ),
            StepPolicy::new().retry(Retry::attempts(2)),
        )
        // Still reads (&input, &first): the plain steps added no entry.
        .then(
            move |(n, first): (&u32, &u32)| {
                push(&t, format!("then {n} {first}"));
                let v = n + first;
                async move { Ok(v) }
            },
            |_| async { Ok(()) },
        )
        .build();

    assert_eq!(flow.len(), 5);
    assert_eq!(block_on(flow.run(1)).unwrap(), ((1, 2), 3));
    assert_eq!(
        entries(&order),
        [
            "plain add_step",
            "plain step",
            "plain step_with",
            "then 1 2"
        ]
    );
}

#[test]
fn steps_and_settings_before_input_are_kept_and_run_first() {
    let order = log();
    let (pre, act) = (order.clone(), order.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut flow = SagaBuilder::new()
        .action_retry(Retry::attempts(3))
        .add_step(
            move || {
                push(&pre, "before input");
                async { Ok(()) }
            },
            || async { Ok(()) },
        )
        .input::<u32>()
        .then(
            move |n: &u32| {
                push(&act, format!("then {n}"));
                let call = counter.fetch_add(1, Ordering::SeqCst);
                let n = *n;
                async move { if call < 2 { Err("busy") } else { Ok(n) } }
            },
            |_| async { Ok(()) },
        )
        .build();

    assert_eq!(flow.len(), 2);
    assert_eq!(block_on(flow.run(5)).unwrap(), (5, 5));
    assert_eq!(
        count(&calls),
        3,
        "the saga-wide retry set before input applies"
    );
    assert_eq!(
        entries(&order),
        ["before input", "then 5", "then 5", "then 5"]
    );
}

#[test]
fn failure_in_a_plain_step_before_input_returns_the_input_as_values() {
    let undone = log();
    let u = undone.clone();
    let mut flow = SagaBuilder::new()
        .add_step(
            || async { Err::<(), _>("pre failed") },
            move || {
                push(&u, "pre undone");
                async { Ok(()) }
            },
        )
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            |_| async { Ok(()) },
        )
        .build();

    let error = block_on(flow.run(9)).unwrap_err();
    assert_eq!(*error.values(), (9, None));
    assert_eq!(error.report().failed_step(), 0);
    // A pysagas-style step is compensated even when its own action failed.
    assert_eq!(entries(&undone), ["pre undone"]);
}

#[test]
fn parallel_example_from_flow_builder() {
    let mut flow = SagaBuilder::<()>::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok(n + 1) }
                    },
                    |_| async { Ok(()) },
                )
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok(n * 2) }
                    },
                    |_| async { Ok(()) },
                )
        })
        .then(
            |(n, (plus, times))| {
                let sum = n + plus + times;
                async move { Ok(sum) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, sum)| sum);

    assert_eq!(block_on(flow.run(10)).unwrap(), 10 + 11 + 20);
    assert_eq!(flow.len(), 3);
    assert_eq!(flow.parallel_groups().collect::<Vec<_>>(), [0..2]);
}

#[test]
fn build_returns_every_value_owned_and_nested_after_a_group() {
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let s = format!("a{n}");
                async move { Ok(s) }
            },
            |_| async { Ok(()) },
        )
        .parallel(|group| {
            group
                .then(
                    |(n, a): (&u32, &String)| {
                        let v = u64::from(*n) + a.len() as u64;
                        async move { Ok(v) }
                    },
                    |_| async { Ok(()) },
                )
                .then(
                    |(_, a): (&u32, &String)| {
                        let v = a.clone() + "!";
                        async move { Ok(v) }
                    },
                    |_| async { Ok(()) },
                )
                .then(|_| async { Ok('z') }, |_| async { Ok(()) })
        })
        .then(
            |((n, a), ((b, c), d)): ((&u32, &String), ((&u64, &String), &char))| {
                let v = format!("{n}|{a}|{b}|{c}|{d}");
                async move { Ok(v) }
            },
            |_| async { Ok(()) },
        )
        .build();

    let values = block_on(flow.run(4)).unwrap();
    assert_eq!(
        values,
        (
            ((4, "a4".to_string()), ((6, "a4!".to_string()), 'z')),
            "4|a4|6|a4!|z".to_string()
        )
    );
    assert_eq!(flow.len(), 5);
    assert_eq!(flow.parallel_groups().collect::<Vec<_>>(), [1..4]);
}

#[test]
fn a_single_member_group_adds_the_members_value_unwrapped() {
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<u32>()
        .parallel(|group| {
            group.then(
                |n: &u32| {
                    let n = *n;
                    async move { Ok(n * 3) }
                },
                |_| async { Ok(()) },
            )
        })
        .then(
            |(n, tripled): (&u32, &u32)| {
                let v = n + tripled;
                async move { Ok(v) }
            },
            |_| async { Ok(()) },
        )
        .build();
    assert_eq!(block_on(flow.run(2)).unwrap(), ((2, 6), 8));
    assert_eq!(flow.parallel_groups().collect::<Vec<_>>(), [0..1]);
}

#[test]
fn group_members_read_only_what_is_before_the_group_and_compensate_with_own_value() {
    let seen = log();
    let (m0, m1, after) = (seen.clone(), seen.clone(), seen.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, &'static str>(n + 100) }
            },
            |_| async { Ok(()) },
        )
        .parallel(|group| {
            group
                .then(
                    |(n, a): (&u32, &u32)| {
                        let v = n + a;
                        async move { Ok(v) }
                    },
                    move |((n, a), own): ((&u32, &u32), &u32)| {
                        push(&m0, format!("undo m0 {n} {a} {own}"));
                        async { Ok(()) }
                    },
                )
                .then(
                    |(n, a): (&u32, &u32)| {
                        let v = format!("{}", n * a);
                        async move { Ok(v) }
                    },
                    move |((n, a), own): ((&u32, &u32), &String)| {
                        push(&m1, format!("undo m1 {n} {a} {own}"));
                        async { Ok(()) }
                    },
                )
        })
        .then(
            move |((n, a), (b, c)): ((&u32, &u32), (&u32, &String))| {
                push(&after, format!("after {n} {a} {b} {c}"));
                async { Err::<(), _>("after the group") }
            },
            |_| async { Ok(()) },
        )
        .build();

    let error = block_on(flow.run(2)).unwrap_err();
    let mut log = entries(&seen);
    assert_eq!(log.remove(0), "after 2 102 104 204");
    log.sort();
    assert_eq!(log, ["undo m0 2 102 104", "undo m1 2 102 204"]);
    assert_eq!(
        *error.values(),
        (((2, Some(102)), (Some(104), Some("204".to_string()))), None)
    );
    assert_eq!(error.report().failed_step(), 3);
    assert!(error.report().is_fully_compensated());
}

#[test]
fn two_groups_in_a_row_and_plain_steps_between() {
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<u8>()
        .parallel(|group| {
            group
                .then(
                    |n: &u8| {
                        let n = *n;
                        async move { Ok(n as u16) }
                    },
                    |_| async { Ok(()) },
                )
                .then(
                    |n: &u8| {
                        let n = *n;
                        async move { Ok(n as u32) }
                    },
                    |_| async { Ok(()) },
                )
        })
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group
                .then(
                    |(n, (a, b)): (&u8, (&u16, &u32))| {
                        let v = u64::from(*n) + u64::from(*a) + u64::from(*b);
                        async move { Ok(v) }
                    },
                    |_| async { Ok(()) },
                )
                .named("sum")
                .then(|_| async { Ok("second") }, |_| async { Ok(()) })
        })
        .build();

    assert_eq!(block_on(flow.run(1)).unwrap(), ((1, (1, 1)), (3, "second")));
    assert_eq!(flow.len(), 5);
    assert_eq!(flow.parallel_groups().collect::<Vec<_>>(), [0..2, 3..5]);
    assert_eq!(
        flow.step_names().collect::<Vec<_>>(),
        [None, None, None, Some("sum"), None]
    );
}

#[test]
fn a_flow_of_no_steps_returns_its_input_mapped() {
    let mut flow = SagaBuilder::<()>::new().input::<u32>().build();
    assert!(flow.is_empty());
    assert_eq!(flow.len(), 0);
    assert_eq!(block_on(flow.run(5)).unwrap(), 5);

    let mut mapped = SagaBuilder::<()>::new()
        .input::<u32>()
        .build_with(|n| n.to_string());
    assert!(mapped.is_empty());
    assert_eq!(block_on(mapped.run(6)).unwrap(), "6");

    let with_plain = SagaBuilder::<()>::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .input::<u32>()
        .build();
    assert!(!with_plain.is_empty());
    assert_eq!(with_plain.len(), 1);
}

#[test]
fn unit_input_for_none() {
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<()>()
        .then(|_: &()| async { Ok(1u8) }, |_| async { Ok(()) })
        .build_with(|((), one)| one);
    assert_eq!(block_on(flow.run(())).unwrap(), 1);
}

#[test]
fn build_with_map_runs_once_per_successful_run_only() {
    let maps = Arc::new(AtomicUsize::new(0));
    let m = maps.clone();
    let mut flow = SagaBuilder::new()
        .input::<bool>()
        .then(
            |fail: &bool| {
                let fail = *fail;
                async move { if fail { Err("asked to fail") } else { Ok(1u8) } }
            },
            |_| async { Ok(()) },
        )
        .build_with(move |(_, one)| {
            m.fetch_add(1, Ordering::SeqCst);
            one
        });
    assert_eq!(block_on(flow.run(false)).unwrap(), 1);
    assert!(block_on(flow.run(true)).is_err());
    assert_eq!(block_on(flow.run(false)).unwrap(), 1);
    assert_eq!(count(&maps), 2);
}

// ---------------------------------------------------------------------------
// FlowError: the values after a failure at every position
// ---------------------------------------------------------------------------

#[test]
fn flow_error_example() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |order: &u32| {
                let order = *order;
                async move { Ok(order * 10) }
            },
            |_| async { Ok(()) },
        )
        .then(
            |_| async { Err::<u32, _>("out of stock") },
            |_| async { Ok(()) },
        )
        .build();

    let error = block_on(flow.run(7)).unwrap_err();
    assert_eq!(error.report().failed_step(), 1);
    assert!(error.report().is_fully_compensated());
    assert_eq!(*error.values(), ((7, Some(70)), None));
}

/// A four-step flow whose step `fail_at` fails; the values for every position.
fn four_steps(
    fail_at: usize,
) -> Flow<
    &'static str,
    u32,
    u32,
    (
        (((u32, Option<u32>), Option<u32>), Option<u32>),
        Option<u32>,
    ),
> {
    let step = move |index: usize| {
        move |_: ()| -> Result<u32, &'static str> {
            if index == fail_at {
                Err("boom")
            } else {
                Ok(index as u32 + 1)
            }
        }
    };
    let (s0, s1, s2, s3) = (step(0), step(1), step(2), step(3));
    SagaBuilder::new()
        .input::<u32>()
        .then(
            move |_: &u32| {
                let r = s0(());
                async move { r }
            },
            |_| async { Ok(()) },
        )
        .then(
            move |_| {
                let r = s1(());
                async move { r }
            },
            |_| async { Ok(()) },
        )
        .then(
            move |_| {
                let r = s2(());
                async move { r }
            },
            |_| async { Ok(()) },
        )
        .then(
            move |_| {
                let r = s3(());
                async move { r }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, last)| last)
}

#[test]
fn values_after_a_failure_at_every_position() {
    let expected = [
        ((((0, None), None), None), None),
        ((((0, Some(1)), None), None), None),
        ((((0, Some(1)), Some(2)), None), None),
        ((((0, Some(1)), Some(2)), Some(3)), None),
    ];
    for (fail_at, expected) in expected.into_iter().enumerate() {
        let mut flow = four_steps(fail_at);
        let error = block_on(flow.run(0)).unwrap_err();
        assert_eq!(*error.values(), expected, "failure at step {fail_at}");
        assert_eq!(error.report().failed_step(), fail_at);
        assert_eq!(error.report().compensated_count(), fail_at);
        assert!(error.report().is_fully_compensated());
    }
    assert_eq!(block_on(four_steps(9).run(0)).unwrap(), 4);
}

#[test]
fn failure_in_a_plain_step_after_then_leaves_the_values_unchanged() {
    let undone = log();
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n + 1) }
            },
            move |(_, own): (&u32, &u32)| {
                push(&u0, format!("undo then {own}"));
                async { Ok(()) }
            },
        )
        .add_step(
            || async { Err::<(), _>("plain failed") },
            move || {
                push(&u1, "undo plain");
                async { Ok(()) }
            },
        )
        .then(|_| async { Ok(0u8) }, |_| async { Ok(()) })
        .build();

    let error = block_on(flow.run(1)).unwrap_err();
    assert_eq!(*error.values(), ((1, Some(2)), None));
    assert_eq!(error.report().failed_step(), 1);
    // The failed pysagas-style step is compensated first, then the one before.
    assert_eq!(entries(&undone), ["undo plain", "undo then 2"]);
    assert_eq!(error.report().compensated_count(), 2);
}

#[test]
fn failure_in_a_group_member_others_finish_by_default() {
    let undone = log();
    let (u0, u2) = (undone.clone(), undone.clone());
    let open = Arc::new(AtomicBool::new(false));
    let opener = open.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(
                    move |n: &u32| {
                        let n = *n;
                        let gate = gate(open.clone());
                        async move {
                            // Finishes only after its sibling failed.
                            gate.await;
                            Ok(n + 1)
                        }
                    },
                    move |(_, own): (&u32, &u32)| {
                        push(&u0, format!("undo m0 {own}"));
                        async { Ok(()) }
                    },
                )
                .then(
                    move |_: &u32| {
                        opener.store(true, Ordering::SeqCst);
                        async { Err::<u32, _>("member 1 failed") }
                    },
                    |_| async { Ok(()) },
                )
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok(n + 3) }
                    },
                    move |(_, own): (&u32, &u32)| {
                        push(&u2, format!("undo m2 {own}"));
                        async { Ok(()) }
                    },
                )
        })
        .build();

    let error = block_on(flow.run(10)).unwrap_err();
    assert_eq!(*error.values(), (10, ((Some(11), None), Some(13))));
    assert_eq!(error.report().failed_step(), 1);
    assert!(error.report().is_fully_compensated());
    let mut log = entries(&undone);
    log.sort();
    assert_eq!(log, ["undo m0 11", "undo m2 13"]);
}

#[test]
fn failure_in_a_group_cut_short_members_have_no_value() {
    let undone = log();
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            |_| async { Ok(()) },
        )
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    // Never finishes: cut short when its sibling fails.
                    .then_option(
                        |_: (&u32, &u32)| std::future::pending::<Result<u32, &'static str>>(),
                        move |(_, own): ((&u32, &u32), Option<&u32>)| {
                            push(&u0, format!("undo option {own:?}"));
                            async { Ok(()) }
                        },
                    )
                    .then(
                        |_: (&u32, &u32)| std::future::pending::<Result<u32, &'static str>>(),
                        move |(_, own): ((&u32, &u32), &u32)| {
                            push(&u1, format!("undo by ref {own}"));
                            async { Ok(()) }
                        },
                    )
                    .then(
                        |_: (&u32, &u32)| async { Err::<u32, _>("fails at once") },
                        |_| async { Ok(()) },
                    )
            },
        )
        .build();

    let error = block_on(flow.run(1)).unwrap_err();
    assert_eq!(*error.values(), ((1, Some(1)), ((None, None), None)));
    assert_eq!(error.report().failed_step(), 3);
    // The by-option member cut short is compensated with `None`; the by-ref
    // one is not compensated and is reported as left applied.
    assert_eq!(entries(&undone), ["undo option None"]);
    assert_eq!(
        error.report().uncompensated_steps().collect::<Vec<_>>(),
        [2]
    );
    assert!(!error.report().is_fully_compensated());
}

#[test]
fn failure_after_a_group_reports_every_member_value() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok(n + 1) }
                    },
                    |_| async { Ok(()) },
                )
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok(n + 2) }
                    },
                    |_| async { Ok(()) },
                )
        })
        .then(|_| async { Err::<(), _>("after") }, |_| async { Ok(()) })
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(*error.values(), ((0, (Some(1), Some(2))), None));
    assert_eq!(error.report().failed_step(), 2);
    assert_eq!(error.report().compensated_count(), 2);
}

#[test]
fn failure_in_the_last_of_three_members() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(|_: &u32| async { Ok(1u8) }, |_| async { Ok(()) })
                .then(|_: &u32| async { Ok(2u16) }, |_| async { Ok(()) })
                .then(
                    |_: &u32| async { Err::<u32, _>("third") },
                    |_| async { Ok(()) },
                )
        })
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(*error.values(), (0, ((Some(1), Some(2)), None)));
    assert_eq!(error.report().failed_step(), 2);
}

#[test]
fn compensated_steps_values_are_still_reported_and_into_parts() {
    let mut flow = SagaBuilder::new()
        .input::<String>()
        .then(
            |s: &String| {
                let v = s.len();
                async move { Ok(v) }
            },
            |_| async { Ok(()) },
        )
        .then(|_| async { Err::<u8, _>("no") }, |_| async { Ok(()) })
        .build();

    let error = block_on(flow.run("abc".to_string())).unwrap_err();
    assert!(error.report().is_fully_compensated());
    assert_eq!(error.report().compensated_count(), 1);
    assert_eq!(*error.values(), (("abc".to_string(), Some(3)), None));
    let (report, values) = error.into_parts();
    assert_eq!(*report.error(), "no");
    assert_eq!(values, (("abc".to_string(), Some(3)), None));

    let error = block_on(flow.run("xy".to_string())).unwrap_err();
    let report: SagaError<&str> = error.into_report();
    assert_eq!(report.failed_step(), 1);
}

#[test]
fn uncompensated_steps_values_are_there_to_finish_by_hand() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |_: &u32| async { Ok(1u8) },
            |_| async { Err("undo 0 failed") },
        )
        .then(|_| async { Ok(2u8) }, |_| async { Ok(()) })
        .then(|_| async { Err::<u8, _>("boom") }, |_| async { Ok(()) })
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(
        error.report().uncompensated_steps().collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(*error.values(), (((0, Some(1)), Some(2)), None));
}

#[derive(PartialEq)] // deliberately not `Debug`
struct NotDebug(u32);

#[test]
fn flow_error_display_debug_source_and_conversion_are_the_reports() {
    let mut flow = SagaBuilder::new()
        .input::<NotDebug>()
        .then(
            |_: &NotDebug| async { Ok(NotDebug(1)) },
            |_| async { Ok(()) },
        )
        .named("first")
        .then(
            |_| async { Err::<NotDebug, _>(Error::Failed("second")) },
            |_| async { Ok(()) },
        )
        .named("second")
        .build();

    let error = block_on(flow.run(NotDebug(0))).err().unwrap();
    assert_eq!(error.to_string(), error.report().to_string());
    assert!(
        error.to_string().contains("step 1 (second) failed"),
        "{error}"
    );

    // Debug needs no `Debug` on the values, and shows the report.
    let debug = format!("{error:?}");
    assert!(debug.contains(&format!("{:?}", error.report())), "{debug}");

    // `Error` is implemented, with the report's source.
    let as_error: &dyn core::error::Error = &error;
    let report_source = error.report().source().map(|s| s.to_string());
    assert_eq!(as_error.source().map(|s| s.to_string()), report_source);

    // `?` into `SagaError<E>`.
    type Values = ((NotDebug, NotDebug), NotDebug);
    type Partial = ((NotDebug, Option<NotDebug>), Option<NotDebug>);
    fn run(flow: &mut Flow<Error, NotDebug, Values, Partial>) -> Result<(), SagaError<Error>> {
        block_on(flow.run(NotDebug(5)))?;
        Ok(())
    }
    let report = run(&mut flow).err().unwrap();
    assert_eq!(*report.error(), Error::Failed("second"));
    assert_eq!(report.failed_step(), 1);
    let converted: SagaError<Error> = block_on(flow.run(NotDebug(6))).err().unwrap().into();
    assert_eq!(converted.failed_step(), 1);
}

#[test]
fn flow_error_debug_shows_the_report_and_elides_the_values() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(|_: &u32| async { Err::<u8, _>("x") }, |_| async { Ok(()) })
        .build();
    let error = block_on(flow.run(12345)).unwrap_err();
    let debug = format!("{error:?}");
    assert!(debug.contains(&format!("{:?}", error.report())), "{debug}");
    assert!(
        !debug.contains("12345"),
        "the values are not shown: {debug}"
    );
}

// ---------------------------------------------------------------------------
// then_option
// ---------------------------------------------------------------------------

#[test]
fn then_option_example() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let log = undone.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then_option(
            |_: &u32| async { Err::<u32, _>("timed out after writing") },
            move |(input, own): (&u32, Option<&u32>)| {
                log.lock().unwrap().push((*input, own.copied()));
                async { Ok(()) }
            },
        )
        .build();

    assert!(block_on(flow.run(5)).is_err());
    assert_eq!(*undone.lock().unwrap(), [(5, None)]);
}

#[test]
fn then_option_gets_some_after_a_success_and_then_compensates_first_on_its_own_failure() {
    let undone = log();
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then_option(
            |n: &u32| {
                let n = *n;
                async move { Ok(n * 2) }
            },
            move |(input, own): (&u32, Option<&u32>)| {
                push(&u0, format!("undo0 {input} {own:?}"));
                async { Ok(()) }
            },
        )
        .then_option(
            |_| async { Err::<u8, _>("second failed") },
            move |((input, first), own): ((&u32, &u32), Option<&u8>)| {
                push(&u1, format!("undo1 {input} {first} {own:?}"));
                async { Ok(()) }
            },
        )
        .build();

    let error = block_on(flow.run(4)).unwrap_err();
    assert_eq!(entries(&undone), ["undo1 4 8 None", "undo0 4 Some(8)"]);
    assert_eq!(*error.values(), ((4, Some(8)), None));
    assert_eq!(error.report().compensated_count(), 2);
    assert!(error.report().is_fully_compensated());
}

#[test]
fn then_without_option_does_not_compensate_its_failed_action() {
    let undone = log();
    let u = undone.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |_: &u32| async { Err::<u32, _>("failed") },
            move |_| {
                push(&u, "undo");
                async { Ok(()) }
            },
        )
        .build();
    let error = block_on(flow.run(1)).unwrap_err();
    assert!(entries(&undone).is_empty());
    assert_eq!(error.report().compensated_count(), 0);
    assert!(error.report().is_fully_compensated());
}

#[test]
fn then_option_in_a_group_failed_member_gets_none() {
    let undone = log();
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then_option(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok(n) }
                    },
                    move |(_, own): (&u32, Option<&u32>)| {
                        push(&u0, format!("m0 {own:?}"));
                        async { Ok(()) }
                    },
                )
                .then_option(
                    |_: &u32| async { Err::<u32, _>("m1") },
                    move |(_, own): (&u32, Option<&u32>)| {
                        push(&u1, format!("m1 {own:?}"));
                        async { Ok(()) }
                    },
                )
        })
        .build();
    let error = block_on(flow.run(3)).unwrap_err();
    let mut log = entries(&undone);
    log.sort();
    assert_eq!(log, ["m0 Some(3)", "m1 None"]);
    assert_eq!(*error.values(), (3, (Some(3), None)));
    assert!(error.report().is_fully_compensated());
}

#[test]
fn then_option_after_a_timeout_gets_none() {
    let undone = log();
    let u = undone.clone();
    let mut flow = SagaBuilder::new()
        .sleeper(|duration| smol::Timer::after(duration))
        .input::<u32>()
        .then_option(
            |_: &u32| std::future::pending::<Result<u32, Error>>(),
            move |(_, own): (&u32, Option<&u32>)| {
                push(&u, format!("undo {own:?}"));
                async { Ok(()) }
            },
        )
        .policy(StepPolicy::new().timeout(Duration::from_millis(10)))
        .build();
    let error = block_on(flow.run(1)).unwrap_err();
    assert_eq!(error.report().reason(), StopReason::TimedOut);
    assert_eq!(*error.report().error(), Error::TimedOut);
    assert_eq!(*error.values(), (1, None));
    assert_eq!(entries(&undone), ["undo None"]);
}

// ---------------------------------------------------------------------------
// Policies and retries
// ---------------------------------------------------------------------------

#[test]
fn policy_example_a_retried_action_reads_the_same_values() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |order: &u32| {
                let attempt = {
                    let mut log = log.lock().unwrap();
                    log.push(*order);
                    log.len()
                };
                async move {
                    if attempt < 3 {
                        Err("busy")
                    } else {
                        Ok(attempt)
                    }
                }
            },
            |_| async { Ok(()) },
        )
        .policy(StepPolicy::new().retry(Retry::attempts(3)))
        .build();

    assert_eq!(block_on(flow.run(42)).unwrap(), (42, 3));
    assert_eq!(*seen.lock().unwrap(), [42, 42, 42]);
}

#[test]
fn retried_later_action_and_retried_compensation_read_the_same_values() {
    let seen = log();
    let (a, c) = (seen.clone(), seen.clone());
    let attempts = Arc::new(AtomicUsize::new(0));
    let undo_attempts = Arc::new(AtomicUsize::new(0));
    let (at, ut) = (attempts.clone(), undo_attempts.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .compensation_retry(Retry::attempts(3))
        .then(
            |n: &u32| {
                let v = format!("v{n}");
                async move { Ok(v) }
            },
            move |(n, own): (&u32, &String)| {
                push(&c, format!("undo {n} {own}"));
                let call = ut.fetch_add(1, Ordering::SeqCst);
                async move { if call < 2 { Err("undo busy") } else { Ok(()) } }
            },
        )
        .then(
            move |(n, v): (&u32, &String)| {
                push(&a, format!("act {n} {v}"));
                let call = at.fetch_add(1, Ordering::SeqCst);
                async move { if call < 1 { Err("busy") } else { Ok(()) } }
            },
            |_| async { Ok(()) },
        )
        .policy(StepPolicy::new().retry(Retry::attempts(2)))
        .then(|_| async { Err::<(), _>("final") }, |_| async { Ok(()) })
        .build();

    let error = block_on(flow.run(1)).unwrap_err();
    assert_eq!(
        entries(&seen),
        [
            "act 1 v1",
            "act 1 v1",
            "undo 1 v1",
            "undo 1 v1",
            "undo 1 v1"
        ]
    );
    assert!(error.report().is_fully_compensated());
    assert_eq!(
        *error.values(),
        (((1, Some("v1".to_string())), Some(())), None)
    );
}

#[test]
fn group_member_policy_and_name() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(|_: &u32| async { Ok(1u8) }, |_| async { Ok(()) })
                .named("steady")
                .then(
                    move |n: &u32| {
                        let call = c.fetch_add(1, Ordering::SeqCst);
                        let n = *n;
                        async move { if call < 3 { Err("flaky") } else { Ok(n) } }
                    },
                    |_| async { Ok(()) },
                )
                .policy(StepPolicy::new().retry(Retry::attempts(4)))
                .named("flaky")
        })
        .build();
    assert_eq!(block_on(flow.run(8)).unwrap(), (8, (1, 8)));
    assert_eq!(count(&calls), 4);
    assert_eq!(
        flow.step_names().collect::<Vec<_>>(),
        [Some("steady"), Some("flaky")]
    );
}

#[test]
fn saga_wide_action_retry_on_the_flow_builder() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |_: &u32| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Err::<u8, _>("always") }
            },
            |_| async { Ok(()) },
        )
        .action_retry(Retry::attempts(3))
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(error.report().attempts(), 3);
    assert_eq!(count(&calls), 3);
}

#[test]
fn names_of_plain_and_flow_steps_appear_in_step_names_and_display() {
    let mut flow = SagaBuilder::new()
        .step(FnStep::new(|| async { Ok(()) }, || async { Ok(()) }).named("pre"))
        .input::<u32>()
        .then(|_: &u32| async { Ok(1u8) }, |_| async { Ok(()) })
        .named("one")
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .step(FnStep::new(|| async { Ok(()) }, || async { Ok(()) }).named("plain"))
        .parallel(|group| {
            group
                .then(|_| async { Ok(2u8) }, |_| async { Ok(()) })
                .then(|_| async { Err::<u8, _>("full") }, |_| async { Ok(()) })
                .named("member")
        })
        .build();

    assert_eq!(flow.len(), 6);
    assert_eq!(
        flow.step_names().collect::<Vec<_>>(),
        [
            Some("pre"),
            Some("one"),
            None,
            Some("plain"),
            None,
            Some("member")
        ]
    );
    assert_eq!(flow.parallel_groups().collect::<Vec<_>>(), [4..6]);
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(error.report().failed_step(), 5);
    assert_eq!(error.report().failed_step_name(), Some("member"));
    assert_eq!(
        error.to_string(),
        "step 5 (member) failed: full; fully compensated (5 steps)"
    );
    assert_eq!(*error.values(), ((0, Some(1)), (Some(2), None)));
}

// ---------------------------------------------------------------------------
// Classifier, compensation modes, observer
// ---------------------------------------------------------------------------

#[test]
fn classifier_propagate_compensates_nothing_and_still_returns_the_values() {
    let undone = log();
    let u = undone.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n + 1) }
            },
            move |_| {
                push(&u, "undo");
                async { Ok(()) }
            },
        )
        .then(|_| async { Err::<u8, _>("fatal") }, |_| async { Ok(()) })
        .classify(|error: &&'static str| {
            if *error == "fatal" {
                Recovery::Propagate
            } else {
                Recovery::Retry
            }
        })
        .build();
    let error = block_on(flow.run(1)).unwrap_err();
    assert_eq!(error.report().handling(), Handling::Propagated);
    assert!(entries(&undone).is_empty());
    assert_eq!(
        error.report().uncompensated_steps().collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(*error.values(), ((1, Some(2)), None));
}

#[test]
fn classifier_compensate_skips_the_retries_and_sees_flow_errors() {
    let calls = Arc::new(AtomicUsize::new(0));
    let classified = log();
    let (c, k) = (calls.clone(), classified.clone());
    let mut flow = SagaBuilder::new()
        .classify(move |error: &&'static str| {
            push(&k, *error);
            Recovery::Compensate
        })
        .action_retry(Retry::attempts(5))
        .input::<u32>()
        .then(
            move |_: &u32| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Err::<u8, _>("declined") }
            },
            |_| async { Ok(()) },
        )
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(count(&calls), 1);
    assert_eq!(entries(&classified), ["declined"]);
    assert_eq!(error.report().handling(), Handling::Compensated);
    assert_eq!(error.report().attempts(), 1);
}

#[test]
fn compensation_mode_continue_on_error_collects_every_error_with_values_read() {
    let seen = log();
    let (s0, s1, s2) = (seen.clone(), seen.clone(), seen.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |_: &u32| async { Ok(10u32) },
            move |(_, own): (&u32, &u32)| {
                push(&s0, format!("undo0 {own}"));
                async { Err("undo0 failed") }
            },
        )
        .then(
            |_| async { Ok(11u32) },
            move |(_, own): ((&u32, &u32), &u32)| {
                push(&s1, format!("undo1 {own}"));
                async { Ok(()) }
            },
        )
        .then(
            |_| async { Ok(12u32) },
            move |(_, own): (((&u32, &u32), &u32), &u32)| {
                push(&s2, format!("undo2 {own}"));
                async { Err("undo2 failed") }
            },
        )
        .then(|_| async { Err::<u8, _>("boom") }, |_| async { Ok(()) })
        .compensation_mode(CompensationMode::ContinueOnError)
        .build();
    assert_eq!(flow.compensation_mode(), CompensationMode::ContinueOnError);

    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(entries(&seen), ["undo2 12", "undo1 11", "undo0 10"]);
    let report = error.report();
    let failed: Vec<usize> = report
        .compensation_errors()
        .iter()
        .map(|f| f.step())
        .collect();
    assert_eq!(failed, [2, 0]);
    assert_eq!(report.uncompensated_steps().collect::<Vec<_>>(), [0, 2]);
    assert_eq!(report.compensated_count(), 1);
}

#[test]
fn compensation_mode_stop_on_error_is_the_default_on_flows() {
    let seen = log();
    let (s0, s1) = (seen.clone(), seen.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |_: &u32| async { Ok(1u8) },
            move |_| {
                push(&s0, "undo0");
                async { Ok(()) }
            },
        )
        .then(
            |_| async { Ok(2u8) },
            move |_| {
                push(&s1, "undo1");
                async { Err("undo1 failed") }
            },
        )
        .then(|_| async { Err::<u8, _>("boom") }, |_| async { Ok(()) })
        .build();
    assert_eq!(flow.compensation_mode(), CompensationMode::StopOnError);
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(entries(&seen), ["undo1"]);
    assert_eq!(
        error.report().uncompensated_steps().collect::<Vec<_>>(),
        [0, 1]
    );
}

fn group_flow(
    mode: CompensationMode,
    seen: &Log,
) -> Flow<&'static str, u32, (), (((u32, Option<u32>), (Option<u32>, Option<u32>)), Option<()>)> {
    let (s0, s1, s2) = (seen.clone(), seen.clone(), seen.clone());
    SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            move |(_, own): (&u32, &u32)| {
                push(&s0, format!("undo first {own}"));
                async { Ok(()) }
            },
        )
        .parallel(|group| {
            group
                .then(
                    |(n, _): (&u32, &u32)| {
                        let n = *n;
                        async move { Ok(n + 1) }
                    },
                    move |(_, own): ((&u32, &u32), &u32)| {
                        push(&s1, format!("undo m0 {own}"));
                        async { Ok(()) }
                    },
                )
                .then(
                    |(n, _): (&u32, &u32)| {
                        let n = *n;
                        async move { Ok(n + 2) }
                    },
                    move |(_, own): ((&u32, &u32), &u32)| {
                        push(&s2, format!("undo m1 {own}"));
                        async { Ok(()) }
                    },
                )
        })
        .then(|_| async { Err::<(), _>("after") }, |_| async { Ok(()) })
        .compensation_mode(mode)
        .build_with(|_| ())
}

#[test]
fn concurrent_compensation_modes_on_flows_read_the_values() {
    for mode in [
        CompensationMode::ConcurrentGroups,
        CompensationMode::Concurrent,
    ] {
        let seen = log();
        let mut flow = group_flow(mode, &seen);
        assert_eq!(flow.compensation_mode(), mode);
        let error = block_on(flow.run(5)).unwrap_err();
        let mut log = entries(&seen);
        if mode == CompensationMode::ConcurrentGroups {
            // The group's members first (in any order), then the step before.
            assert_eq!(log[2], "undo first 5", "{mode:?}");
        }
        log.sort();
        assert_eq!(log, ["undo first 5", "undo m0 6", "undo m1 7"], "{mode:?}");
        assert!(error.report().is_fully_compensated());
        assert_eq!(*error.values(), (((5, Some(5)), (Some(6), Some(7))), None));
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer<&'static str> for Recorder {
    fn saga_started(&self, steps: usize) {
        self.0.lock().unwrap().push(format!("started {steps}"));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<&'static str>>) {
        let line = match result {
            Ok(()) => "finished ok".to_string(),
            Err(error) => format!("finished: {error}"),
        };
        self.0.lock().unwrap().push(line);
    }
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.0
            .lock()
            .unwrap()
            .push(format!("ok {} {:?} #{attempt}", step.index, step.name));
    }
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &&'static str) {
        self.0.lock().unwrap().push(format!(
            "failed {} {:?} #{attempt}: {error}",
            step.index, step.name
        ));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
        self.0
            .lock()
            .unwrap()
            .push(format!("undone {}", step.index));
    }
}

#[test]
fn observer_on_a_flow_sees_every_transition_with_names() {
    let recorder = Arc::new(Recorder::default());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(|_: &u32| async { Ok(1u8) }, |_| async { Ok(()) })
        .named("one")
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .then(
            |_| async { Err::<u8, _>("two failed") },
            |_| async { Ok(()) },
        )
        .named("two")
        .observer(recorder.clone())
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            "started 3".to_string(),
            "ok 0 Some(\"one\") #1".to_string(),
            "ok 1 None #1".to_string(),
            "failed 2 Some(\"two\") #1: two failed".to_string(),
            "undone 1".to_string(),
            "undone 0".to_string(),
            format!("finished: {error}"),
        ]
    );
    recorder.0.lock().unwrap().clear();
    // The next run is observed too.
    let _ = block_on(flow.run(1));
    assert_eq!(recorder.0.lock().unwrap()[0], "started 3");
}

// ---------------------------------------------------------------------------
// Aborts
// ---------------------------------------------------------------------------

#[test]
fn abort_during_a_step_stops_before_the_next_and_reports_the_values() {
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let undone = log();
    let (u0, u1, started) = (undone.clone(), undone.clone(), undone.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, Error>(n + 1) }
            },
            move |(_, own): (&u32, &u32)| {
                push(&u0, format!("undo0 {own}"));
                async { Ok(()) }
            },
        )
        .then(
            move |(n, a): (&u32, &u32)| {
                trigger.abort(); // an abort arrives while step 1 runs
                let v = n + a;
                async move { Ok(v) }
            },
            move |(_, own): ((&u32, &u32), &u32)| {
                push(&u1, format!("undo1 {own}"));
                async { Ok(()) }
            },
        )
        .then(
            move |_| {
                push(&started, "step 2 started");
                async { Ok(()) }
            },
            |_| async { Ok(()) },
        )
        .build();

    let error = block_on(flow.run(1).abortable(&abort)).unwrap_err();
    assert!(error.report().aborted());
    assert_eq!(*error.report().error(), Error::Aborted);
    assert_eq!(error.report().reason(), StopReason::Aborted);
    assert_eq!(error.report().failed_step(), 2);
    assert_eq!(error.report().attempts(), 0);
    assert_eq!(entries(&undone), ["undo1 3", "undo0 2"]);
    assert_eq!(*error.values(), (((1, Some(2)), Some(3)), None));
}

#[test]
fn a_run_given_an_aborted_handle_stops_before_its_first_action() {
    let abort = AbortHandle::new();
    abort.abort();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |_: &u32| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, String>(1u8) }
            },
            |_| async { Ok(()) },
        )
        .build();
    let error = block_on(flow.run(4).abortable(&abort)).unwrap_err();
    assert_eq!(count(&calls), 0);
    assert_eq!(*error.values(), (4, None));
    assert_eq!(error.report().failed_step(), 0);
    assert_eq!(error.report().error(), "aborted");
}

#[test]
fn abort_cutting_short_a_pending_action_with_then_option() {
    let abort = AbortHandle::new();
    let undone = log();
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |_: &u32| async { Ok::<_, Error>(7u32) },
            move |(_, own): (&u32, &u32)| {
                push(&u0, format!("undo0 {own}"));
                async { Ok(()) }
            },
        )
        .then_option(
            |_| std::future::pending::<Result<u32, Error>>(),
            move |(_, own): ((&u32, &u32), Option<&u32>)| {
                push(&u1, format!("undo1 {own:?}"));
                async { Ok(()) }
            },
        )
        .on_abort(InFlight::CutShort)
        .build();

    let mut run = flow.run(0).abortable(&abort);
    assert!(poll_once(&mut run).is_pending());
    abort.abort();
    let Poll::Ready(result) = poll_once(&mut run) else {
        panic!("the abort woke and ended the run")
    };
    let error = result.unwrap_err();
    assert_eq!(error.report().reason(), StopReason::Aborted);
    assert_eq!(error.report().failed_step(), 1);
    assert_eq!(entries(&undone), ["undo1 None", "undo0 7"]);
    assert_eq!(*error.values(), ((0, Some(7)), None));
}

#[test]
fn an_abort_during_the_last_step_that_succeeds_is_too_late() {
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |n: &u32| {
                trigger.abort();
                let n = *n;
                async move { Ok::<_, Error>(n) }
            },
            |_| async { Ok(()) },
        )
        .build();
    assert_eq!(block_on(flow.run(3).abortable(&abort)).unwrap(), (3, 3));
}

// ---------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------

#[test]
fn flow_builder_sleeper_and_saga_wide_timeouts() {
    let undone = log();
    let u = undone.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .sleeper(|duration| smol::Timer::after(duration))
        .action_timeout(Duration::from_millis(10))
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            move |(_, own): (&u32, &u32)| {
                push(&u, format!("undo {own}"));
                async { Ok(()) }
            },
        )
        .then(
            |_| std::future::pending::<Result<u8, Error>>(),
            |_| async { Ok(()) },
        )
        .build();
    let error = block_on(flow.run(2)).unwrap_err();
    assert_eq!(error.report().reason(), StopReason::TimedOut);
    assert!(error.report().timed_out());
    assert_eq!(*error.values(), ((2, Some(2)), None));
    assert_eq!(entries(&undone), ["undo 2"]);
}

#[test]
fn saga_timeout_on_a_flow() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .sleeper(|duration| smol::Timer::after(duration))
        .saga_timeout(Duration::from_millis(10))
        .then(
            |_: &u32| async { Ok::<_, Error>(1u8) },
            |_| async { Ok(()) },
        )
        .then(
            |_| std::future::pending::<Result<u8, Error>>(),
            |_| async { Ok(()) },
        )
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(error.report().reason(), StopReason::Deadline);
    assert_eq!(*error.report().error(), Error::TimedOut);
    assert_eq!(*error.values(), ((0, Some(1)), None));
}

// ---------------------------------------------------------------------------
// Re-runs: no value from one run is visible in the next
// ---------------------------------------------------------------------------

#[test]
fn rerunning_with_different_inputs_sees_no_value_of_an_earlier_run() {
    let seen = log();
    let (s0, s1) = (seen.clone(), seen.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then_option(
            |n: &u32| {
                let n = *n;
                async move { if n == 0 { Err("zero") } else { Ok(n * 10) } }
            },
            move |(input, own): (&u32, Option<&u32>)| {
                push(&s0, format!("undo0 {input} {own:?}"));
                async { Ok(()) }
            },
        )
        .then_option(
            |(n, _): (&u32, &u32)| {
                let n = *n;
                async move { if n == 1 { Err("one") } else { Ok(n + 1) } }
            },
            move |((input, first), own): ((&u32, &u32), Option<&u32>)| {
                push(&s1, format!("undo1 {input} {first} {own:?}"));
                async { Ok(()) }
            },
        )
        .build();

    assert_eq!(block_on(flow.run(5)).unwrap(), ((5, 50), 6));

    let error = block_on(flow.run(1)).unwrap_err();
    assert_eq!(*error.values(), ((1, Some(10)), None));
    assert_eq!(entries(&seen), ["undo1 1 10 None", "undo0 1 Some(10)"]);

    seen.lock().unwrap().clear();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(*error.values(), ((0, None), None));
    assert_eq!(entries(&seen), ["undo0 0 None"]);

    assert_eq!(block_on(flow.run(2)).unwrap(), ((2, 20), 3));
}

#[test]
fn a_rerun_after_a_dropped_run_starts_afresh() {
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let seen = log();
    let s = seen.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then_option(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, &'static str>(n) }
            },
            move |(input, own): (&u32, Option<&u32>)| {
                push(&s, format!("undo0 {input} {own:?}"));
                async { Ok(()) }
            },
        )
        .then(
            move |(n, _): (&u32, &u32)| {
                let gate = gate(o.clone());
                let n = *n;
                async move {
                    gate.await;
                    if n == 2 { Err("two") } else { Ok(n) }
                }
            },
            |_| async { Ok(()) },
        )
        .build();

    let mut run = flow.run(1);
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    assert!(
        entries(&seen).is_empty(),
        "a dropped run compensates nothing"
    );

    open.store(true, Ordering::SeqCst);
    let error = block_on(flow.run(2)).unwrap_err();
    assert_eq!(*error.values(), ((2, Some(2)), None));
    assert_eq!(entries(&seen), ["undo0 2 Some(2)"]);
    assert_eq!(block_on(flow.run(3)).unwrap(), ((3, 3), 3));
}

#[test]
#[should_panic]
fn polling_a_flow_run_after_ready_panics() {
    let mut flow = SagaBuilder::<()>::new()
        .input::<u32>()
        .then(|_: &u32| async { Ok(1u8) }, |_| async { Ok(()) })
        .build();
    let mut run = flow.run(0);
    assert!(poll_once(&mut run).is_ready());
    let _ = poll_once(&mut run);
}

// ---------------------------------------------------------------------------
// Values are dropped, not leaked
// ---------------------------------------------------------------------------

type TrackedFlow = Flow<
    &'static str,
    Tracked,
    ((Tracked, Tracked), Tracked),
    ((Tracked, Option<Tracked>), Option<Tracked>),
>;

/// A flow of two steps whose values are `Tracked`; `fail` says which step
/// fails (0, 1 or none).
fn tracked_flow(drops: &Arc<AtomicUsize>, fail: Option<usize>) -> TrackedFlow {
    let (d0, d1) = (drops.clone(), drops.clone());
    SagaBuilder::new()
        .input::<Tracked>()
        .then(
            move |input: &Tracked| {
                let value = Tracked::new(input.id + 1, &d0);
                async move {
                    if fail == Some(0) {
                        Err("step 0")
                    } else {
                        Ok(value)
                    }
                }
            },
            |_| async { Ok(()) },
        )
        .then(
            move |(_, a): (&Tracked, &Tracked)| {
                let value = Tracked::new(a.id + 1, &d1);
                async move {
                    if fail == Some(1) {
                        Err("step 1")
                    } else {
                        Ok(value)
                    }
                }
            },
            |_| async { Ok(()) },
        )
        .build()
}

#[test]
fn values_after_success_are_handed_out_then_dropped_by_the_owner() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut flow = tracked_flow(&drops, None);
    let ((input, a), b) = block_on(flow.run(Tracked::new(0, &drops))).unwrap();
    assert_eq!((input.id, a.id, b.id), (0, 1, 2));
    assert_eq!(count(&drops), 0, "the flow keeps no copy");
    drop((input, a, b));
    assert_eq!(count(&drops), 3);
    drop(flow);
    assert_eq!(count(&drops), 3);
}

#[test]
fn values_after_success_dropped_by_a_map_that_discards_them() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<Tracked>()
        .then(
            move |_: &Tracked| {
                let value = Tracked::new(1, &d);
                async move { Ok(value) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(input, value)| input.id + value.id);
    for round in 1..=3 {
        assert_eq!(block_on(flow.run(Tracked::new(0, &drops))).unwrap(), 1);
        assert_eq!(count(&drops), 2 * round);
    }
}

#[test]
fn values_after_failure_are_in_the_error_then_dropped_with_it() {
    // Made: the input, each successful step's value, and the failing action's
    // value, which it drops itself (it returns `Err`).
    for (fail, made) in [(0, 2), (1, 3)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut flow = tracked_flow(&drops, Some(fail));
        let error = block_on(flow.run(Tracked::new(0, &drops))).unwrap_err();
        assert_eq!(
            count(&drops),
            1,
            "only the failing action's value, at {fail}"
        );
        let ((input, a), b) = error.values();
        assert_eq!(input.id, 0);
        assert_eq!(
            a.as_ref().map(|a| a.id),
            if fail == 1 { Some(1) } else { None }
        );
        assert!(b.is_none());
        drop(error);
        assert_eq!(count(&drops), made, "failure at {fail}");
    }
}

#[test]
fn values_are_dropped_with_a_run_dropped_mid_way_and_nothing_is_compensated() {
    let drops = Arc::new(AtomicUsize::new(0));
    let in_flight_dropped = Arc::new(AtomicUsize::new(0));
    let undone = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicBool::new(false));
    let (d0, d1, fl, o, u) = (
        drops.clone(),
        drops.clone(),
        in_flight_dropped.clone(),
        open.clone(),
        undone.clone(),
    );
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<Tracked>()
        .then(
            move |_: &Tracked| {
                let value = Tracked::new(1, &d0);
                async move { Ok(value) }
            },
            move |_| {
                u.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .then(
            move |_| {
                let gate = gate(o.clone());
                let value = Tracked::new(2, &d1);
                let held = Tracked::new(99, &fl); // dropped with the future
                async move {
                    gate.await;
                    drop(held);
                    Ok(value)
                }
            },
            |_| async { Ok(()) },
        )
        .build();

    let mut run = flow.run(Tracked::new(0, &drops));
    assert!(poll_once(&mut run).is_pending());
    assert!(poll_once(&mut run).is_pending());
    assert_eq!(count(&drops), 0);
    drop(run);
    // The input and step 0's value are dropped with the run; the future in
    // flight (holding step 1's would-be value) is dropped too.
    assert_eq!(count(&drops), 3);
    assert_eq!(count(&in_flight_dropped), 1);
    assert_eq!(count(&undone), 0);

    open.store(true, Ordering::SeqCst);
    let ((input, a), b) = block_on(flow.run(Tracked::new(10, &drops))).unwrap();
    assert_eq!((input.id, a.id, b.id), (10, 1, 2));
}

#[test]
fn the_input_is_dropped_with_a_run_never_polled() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut flow = tracked_flow(&drops, None);
    let run = flow.run(Tracked::new(0, &drops));
    drop(run);
    assert_eq!(count(&drops), 1);
}

#[test]
fn values_in_a_group_are_dropped_with_a_run_dropped_mid_group() {
    let drops = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicBool::new(false));
    let (d0, d1, o) = (drops.clone(), drops.clone(), open.clone());
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(
                    move |_: &u32| {
                        let value = Tracked::new(1, &d0);
                        async move { Ok(value) }
                    },
                    |_| async { Ok(()) },
                )
                .then(
                    move |_: &u32| {
                        let gate = gate(o.clone());
                        let value = Tracked::new(2, &d1);
                        async move {
                            gate.await;
                            Ok(value)
                        }
                    },
                    |_| async { Ok(()) },
                )
        })
        .build();
    let mut run = flow.run(0);
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    assert_eq!(count(&drops), 2, "member 0's value and member 1's future");

    open.store(true, Ordering::SeqCst);
    let (_, (a, b)) = block_on(flow.run(0)).unwrap();
    assert_eq!((a.id, b.id), (1, 2));
}

#[test]
fn every_value_is_kept_until_the_run_ends() {
    // A value read by the compensation of the last step is still alive then.
    let drops = Arc::new(AtomicUsize::new(0));
    let (d0, d_check) = (drops.clone(), drops.clone());
    let at_undo = Arc::new(AtomicUsize::new(usize::MAX));
    let a = at_undo.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            move |_: &u32| {
                let value = Tracked::new(1, &d0);
                async move { Ok(value) }
            },
            move |(_, own): (&u32, &Tracked)| {
                assert_eq!(own.id, 1);
                a.store(count(&d_check), Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .then(|_| async { Err::<(), _>("late") }, |_| async { Ok(()) })
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(count(&at_undo), 0);
    assert_eq!(count(&drops), 0);
    drop(error);
    assert_eq!(count(&drops), 1);
}

// ---------------------------------------------------------------------------
// LocalFlow, named flow types, Send
// ---------------------------------------------------------------------------

struct Service {
    order: Flow<&'static str, u32, String, (u32, Option<u64>)>,
}

#[test]
fn a_flow_is_a_field_with_a_named_type() {
    let service = Service {
        order: SagaBuilder::new()
            .input::<u32>()
            .then(
                |quantity: &u32| {
                    let quantity = *quantity;
                    async move { Ok(u64::from(quantity) * 250) }
                },
                |_| async { Ok(()) },
            )
            .build_with(|(quantity, cents)| format!("{quantity} for {cents} cents")),
    };
    let mut order = service.order;
    assert_eq!(block_on(order.run(4)).unwrap(), "4 for 1000 cents");
    assert_eq!(block_on(order.run(1)).unwrap(), "1 for 250 cents");
    assert!(format!("{order:?}").contains("Flow"));
}

type GroupedValues = (((u32, u8), (u16, String)), char);
type GroupedPartial = (
    ((u32, Option<u8>), (Option<u16>, Option<String>)),
    Option<char>,
);

struct Grouped {
    flow: Flow<&'static str, u32, GroupedValues, GroupedPartial>,
}

#[test]
fn a_flow_with_plain_steps_and_a_group_has_a_nameable_type() {
    let mut holder = Grouped {
        flow: SagaBuilder::new()
            .add_step(|| async { Ok(()) }, || async { Ok(()) })
            .input::<u32>()
            .then(|_: &u32| async { Ok(1u8) }, |_| async { Ok(()) })
            .parallel(|group| {
                group
                    .then(|_| async { Ok(2u16) }, |_| async { Ok(()) })
                    .then(|_| async { Ok("three".to_string()) }, |_| async { Ok(()) })
            })
            .add_step(|| async { Ok(()) }, || async { Ok(()) })
            .then(|_| async { Ok('4') }, |_| async { Ok(()) })
            .build(),
    };
    assert_eq!(
        block_on(holder.flow.run(0)).unwrap(),
        (((0, 1), (2, "three".to_string())), '4')
    );
    assert_eq!(holder.flow.len(), 6);
    assert_eq!(holder.flow.parallel_groups().collect::<Vec<_>>(), [2..4]);
}

#[test]
fn flow_run_and_error_are_send() {
    let mut flow: Flow<String, u32, (u32, String), (u32, Option<String>)> = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let s = n.to_string();
                async move { Ok(s) }
            },
            |_| async { Ok(()) },
        )
        .build();
    assert_send(&flow);
    let run = flow.run(1);
    assert_send(&run);
    assert!(format!("{run:?}").contains("FlowRun"));
    let result = block_on(run);
    assert_send_sync(&result);
    assert_eq!(result.unwrap(), (1, "1".to_string()));
}

type SpawnedFlow = Flow<String, u32, u32, (u32, Option<u32>)>;

/// The run future, boxed as `dyn Future + Send`.
///
#[test]
fn a_task_owning_a_flow_runs_on_a_multi_threaded_runtime() {
    let mut flow: SpawnedFlow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move {
                    tokio::task::yield_now().await;
                    Ok(n + 1)
                }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, n)| n);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let result = runtime
        .block_on(async move {
            // `Flow`'s docs: a task that owns the flow and awaits a run is `Send`.
            tokio::spawn(async move { flow.run(41).await }).await
        })
        .unwrap();
    assert_eq!(result.unwrap(), 42);
}

type LocalValues = (Rc<u32>, Rc<RefCell<Vec<u32>>>);
type LocalPartial = (Rc<u32>, Option<Rc<RefCell<Vec<u32>>>>);

#[test]
fn local_flow_takes_rc_values_and_rc_callbacks() {
    let undone: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let (u, k) = (undone.clone(), undone.clone());
    struct Holder {
        flow: LocalFlow<&'static str, Rc<u32>, LocalValues, LocalPartial>,
    }
    let mut holder = Holder {
        flow: SagaBuilder::new_local()
            .input::<Rc<u32>>()
            .then(
                |n: &Rc<u32>| {
                    let list = Rc::new(RefCell::new(vec![**n]));
                    let fail = **n == 0;
                    async move { if fail { Err("zero") } else { Ok(list) } }
                },
                move |(n, own): (&Rc<u32>, &Rc<RefCell<Vec<u32>>>)| {
                    u.borrow_mut().push(format!("undo {n} {:?}", own.borrow()));
                    async { Ok(()) }
                },
            )
            .classify(move |error: &&'static str| {
                k.borrow_mut().push(format!("classified {error}"));
                Recovery::Compensate
            })
            .build(),
    };
    let (n, list) = block_on(holder.flow.run(Rc::new(3))).unwrap();
    assert_eq!((*n, list.borrow().clone()), (3, vec![3]));
    let error = block_on(holder.flow.run(Rc::new(0))).unwrap_err();
    assert_eq!(*error.values().0, 0);
    assert!(error.values().1.is_none());
    assert_eq!(*undone.borrow(), ["classified zero"]);
}

#[test]
fn local_flow_with_a_local_sleeper() {
    let slept = Rc::new(RefCell::new(Duration::ZERO));
    let total = slept.clone();
    let mut flow = SagaBuilder::new_local()
        .input::<Rc<u32>>()
        .sleeper(move |duration| {
            *total.borrow_mut() += duration;
            smol::Timer::after(duration)
        })
        .then(
            |_: &Rc<u32>| async { Err::<u8, _>(Error::Failed("busy")) },
            |_| async { Ok(()) },
        )
        .policy(StepPolicy::new().retry(Retry::attempts(3).constant(Duration::from_millis(1))))
        .build();
    let error = block_on(flow.run(Rc::new(1))).unwrap_err();
    assert_eq!(error.report().attempts(), 3);
    assert_eq!(*slept.borrow(), Duration::from_millis(2));
}

// ---------------------------------------------------------------------------
// Pick and Appends: helpers generic over the flow before them
// ---------------------------------------------------------------------------

struct Amount(u32);

fn charge<E: 'static, S: ?Sized + SagaKind<E>, T, C, Index>(
    flow: FlowBuilder<E, S, T, C>,
) -> FlowBuilder<E, S, T, impl Appends<E, C, String>>
where
    C: Pick<E, Amount, Index> + 'static,
{
    flow.then(
        |values| {
            let receipt = format!("paid {}", C::pick(values).0);
            async move { Ok(receipt) }
        },
        |_| async { Ok(()) },
    )
}

#[test]
fn pick_example() {
    let flow = SagaBuilder::<()>::new()
        .input::<u32>()
        .then(
            |nights: &u32| {
                let amount = Amount(nights * 100);
                async move { Ok(amount) }
            },
            |_| async { Ok(()) },
        )
        .then(|_| async { Ok("room 12") }, |_| async { Ok(()) });
    let mut flow = charge(flow).build_with(|(_, receipt)| receipt);
    assert_eq!(block_on(flow.run(2)).unwrap(), "paid 200");
}

#[test]
fn pick_reads_the_input_through_plain_steps_and_groups() {
    // The amount is the input itself (Here on the start), read after a
    // plain step and a group.
    let flow = SagaBuilder::<()>::new()
        .input::<Amount>()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .parallel(|group| {
            group
                .then(|_: &Amount| async { Ok(1u8) }, |_| async { Ok(()) })
                .then(|_: &Amount| async { Ok(2u8) }, |_| async { Ok(()) })
        });
    let mut flow = charge(flow)
        .build_with(|((amount, (a, b)), receipt)| format!("{} {a} {b} {receipt}", amount.0));
    assert_eq!(block_on(flow.run(Amount(7))).unwrap(), "7 1 2 paid 7");

    // The amount is the last value (Here on a step).
    let flow = SagaBuilder::<()>::new().input::<u32>().then(
        |n: &u32| {
            let a = Amount(*n);
            async move { Ok(a) }
        },
        |_| async { Ok(()) },
    );
    let mut flow = charge(flow).build_with(|(_, receipt)| receipt);
    assert_eq!(block_on(flow.run(9)).unwrap(), "paid 9");
}

#[test]
fn a_step_after_an_appends_helper_reads_its_value() {
    let undone = log();
    let u = undone.clone();
    let flow = SagaBuilder::new().input::<u32>().then(
        |n: &u32| {
            let a = Amount(*n);
            async move { Ok::<_, &'static str>(a) }
        },
        |_| async { Ok(()) },
    );
    let mut flow = charge(flow)
        .then(
            |((n, amount), receipt): ((&u32, &Amount), &String)| {
                let line = format!("{n} {} {receipt}", amount.0);
                async move { Ok(line) }
            },
            move |(_, own): (((&u32, &Amount), &String), &String)| {
                push(&u, format!("undo {own}"));
                async { Ok(()) }
            },
        )
        .then(
            |_| async { Err::<(), _>("then fail") },
            |_| async { Ok(()) },
        )
        .build();
    let error = block_on(flow.run(3)).err().unwrap();
    assert_eq!(entries(&undone), ["undo 3 3 paid 3"]);
    let (((n, amount), receipt), line) = &error.values().0;
    assert_eq!(*n, 3);
    assert_eq!(amount.as_ref().map(|a| a.0), Some(3));
    assert_eq!(receipt.as_deref(), Some("paid 3"));
    assert_eq!(line.as_deref(), Some("3 3 paid 3"));
}

/// A helper generic over local and `Send` flows and over the timing.
fn with_named_step<E: 'static, S: ?Sized + SagaKind<E>, T, C, Index>(
    flow: FlowBuilder<E, S, T, C>,
) -> FlowBuilder<E, S, T, impl Appends<E, C, u64>>
where
    C: Pick<E, u32, Index> + 'static,
{
    flow.then(
        |values| {
            let doubled = u64::from(*C::pick(values)) * 2;
            async move { Ok(doubled) }
        },
        |_| async { Ok(()) },
    )
    .named("double")
}

#[test]
fn appends_helper_works_for_local_and_send_flows() {
    let mut send = with_named_step(SagaBuilder::<()>::new().input::<u32>()).build();
    assert_eq!(block_on(send.run(4)).unwrap(), (4, 8));
    assert_eq!(send.step_names().collect::<Vec<_>>(), [Some("double")]);
    let mut local = with_named_step(LocalSagaBuilder::<()>::new_local().input::<u32>()).build();
    assert_eq!(block_on(local.run(5)).unwrap(), (5, 10));
}

// ---------------------------------------------------------------------------
// More edges: aborts in groups and retries, the backward phase dropped,
// panics, retried then_option, limited groups, shared handles
// ---------------------------------------------------------------------------

#[test]
fn abort_while_waiting_for_a_retry_ends_the_run_with_aborted() {
    let abort = AbortHandle::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut flow = SagaBuilder::new()
        .sleeper(|duration| smol::Timer::after(duration))
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, Error>(n) }
            },
            |_| async { Ok(()) },
        )
        .then(
            move |_| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Err::<u8, _>(Error::Failed("busy")) }
            },
            |_| async { Ok(()) },
        )
        .policy(StepPolicy::new().retry(Retry::attempts(3).constant(Duration::from_secs(30))))
        .build();
    let trigger = abort.clone();
    let (result, ()) = block_on(smol::future::zip(
        flow.run(1).abortable(&abort),
        async move {
            smol::Timer::after(Duration::from_millis(20)).await;
            trigger.abort();
        },
    ));
    let error = result.unwrap_err();
    assert_eq!(count(&calls), 1);
    assert_eq!(*error.report().error(), Error::Aborted);
    assert_eq!(error.report().reason(), StopReason::Aborted);
    assert!(error.report().aborted());
    assert_eq!(error.report().failed_step(), 1);
    assert_eq!(*error.values(), ((1, Some(1)), None));
}

#[test]
fn abort_during_a_group_lets_the_members_finish_by_default() {
    let abort = AbortHandle::new();
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let undone = log();
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(
                    move |n: &u32| {
                        let gate = gate(o.clone());
                        let n = *n;
                        async move {
                            gate.await;
                            Ok::<_, Error>(n + 1)
                        }
                    },
                    move |(_, own): (&u32, &u32)| {
                        push(&u0, format!("undo m0 {own}"));
                        async { Ok(()) }
                    },
                )
                .then(
                    |n: &u32| {
                        let n = *n;
                        async move { Ok(n + 2) }
                    },
                    move |(_, own): (&u32, &u32)| {
                        push(&u1, format!("undo m1 {own}"));
                        async { Ok(()) }
                    },
                )
        })
        .then(|_| async { Ok(()) }, |_| async { Ok(()) })
        .build();

    let mut run = flow.run(10).abortable(&abort);
    assert!(poll_once(&mut run).is_pending());
    abort.abort();
    open.store(true, Ordering::SeqCst);
    let result = block_on(run);
    let error = result.unwrap_err();
    assert!(error.report().aborted());
    assert_eq!(
        error.report().failed_step(),
        2,
        "stopped before the step after the group"
    );
    assert_eq!(*error.values(), ((10, (Some(11), Some(12))), None));
    let mut log = entries(&undone);
    log.sort();
    assert_eq!(log, ["undo m0 11", "undo m1 12"]);
}

#[test]
fn one_handle_aborts_several_flow_runs() {
    let build = || -> Flow<Error, u32, ((u32, u32), ()), ((u32, Option<u32>), Option<()>)> {
        SagaBuilder::new()
            .input::<u32>()
            .then(
                |n: &u32| {
                    let n = *n;
                    async move { Ok(n) }
                },
                |_| async { Ok(()) },
            )
            .then(
                |_| std::future::pending::<Result<(), Error>>(),
                |_| async { Ok(()) },
            )
            .on_abort(InFlight::CutShort)
            .build()
    };
    let (mut a, mut b) = (build(), build());
    let shutdown = AbortHandle::with_capacity(2);
    let ((a, b), ()) = block_on(smol::future::zip(
        smol::future::zip(a.run(1).abortable(&shutdown), b.run(2).abortable(&shutdown)),
        async {
            smol::future::yield_now().await;
            shutdown.abort();
        },
    ));
    let (a, b) = (a.unwrap_err(), b.unwrap_err());
    assert_eq!(*a.values(), ((1, Some(1)), None));
    assert_eq!(*b.values(), ((2, Some(2)), None));
    for error in [&a, &b] {
        let report = error.report();
        assert!(report.aborted(), "{report}");
        assert_eq!(report.reason(), StopReason::Aborted);
        // The `then` step cut short does not compensate a failed action, so it
        // is reported as possibly applied; step 0 was compensated.
        assert_eq!(
            report.uncompensated_steps().collect::<Vec<_>>(),
            [1],
            "{report}"
        );
        assert_eq!(report.compensated_count(), 1);
    }
}

#[test]
fn values_are_dropped_with_a_run_dropped_while_compensating() {
    let drops = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicBool::new(false));
    let undone0 = Arc::new(AtomicUsize::new(0));
    let (d0, d1, o, u0) = (drops.clone(), drops.clone(), open.clone(), undone0.clone());
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<Tracked>()
        .then(
            move |_: &Tracked| {
                let v = Tracked::new(1, &d0);
                async move { Ok(v) }
            },
            move |_| {
                u0.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .then(
            move |_| {
                let v = Tracked::new(2, &d1);
                async move { Ok(v) }
            },
            move |_| {
                let gate = gate(o.clone());
                async move {
                    gate.await;
                    Ok(())
                }
            },
        )
        .then(|_| async { Err::<(), _>("fail") }, |_| async { Ok(()) })
        .build();
    let mut run = flow.run(Tracked::new(0, &drops));
    assert!(
        poll_once(&mut run).is_pending(),
        "compensation of step 1 waits"
    );
    assert_eq!(count(&drops), 0);
    drop(run);
    assert_eq!(count(&drops), 3);
    assert_eq!(
        count(&undone0),
        0,
        "the rest of the backward phase never runs"
    );
}

#[test]
fn a_panicking_step_unwinds_out_of_the_flow_run_and_the_flow_runs_again() {
    // Without `FlowRun::catch_panics`, a panic unwinds out of `poll`, as for
    // a `Run` not wrapped in `rt::CatchPanics`.
    let drops = Arc::new(AtomicUsize::new(0));
    let undone = Arc::new(AtomicUsize::new(0));
    let (d0, u) = (drops.clone(), undone.clone());
    let mut flow = SagaBuilder::<&'static str>::new()
        .input::<bool>()
        .then(
            move |_: &bool| {
                let v = Tracked::new(1, &d0);
                async move { Ok(v) }
            },
            move |_| {
                u.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .then(
            |(panic, _): (&bool, &Tracked)| {
                let panic = *panic;
                async move {
                    if panic {
                        panic!("bug in step 1");
                    }
                    Ok(2u8)
                }
            },
            |_| async { Ok(()) },
        )
        .build_with(|((_, a), b)| (a.id, b));
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| block_on(flow.run(true))));
    assert!(outcome.is_err());
    assert_eq!(count(&drops), 1, "step 0's value was dropped with the run");
    assert_eq!(count(&undone), 0);
    assert_eq!(block_on(flow.run(false)).unwrap(), (1, 2));
}

#[test]
fn a_retried_then_option_compensates_once_with_none() {
    let undone = log();
    let u = undone.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then_option(
            move |_: &u32| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Err::<u8, _>("always") }
            },
            move |(n, own): (&u32, Option<&u8>)| {
                push(&u, format!("undo {n} {own:?}"));
                async { Ok(()) }
            },
        )
        .policy(StepPolicy::new().retry(Retry::attempts(3)))
        .build();
    let error = block_on(flow.run(1)).unwrap_err();
    assert_eq!(count(&calls), 3);
    assert_eq!(entries(&undone), ["undo 1 None"]);
    assert_eq!(error.report().attempts(), 3);
}

#[test]
fn a_limited_group_member_that_never_started_is_not_compensated() {
    let undone = log();
    let (u0, u1) = (undone.clone(), undone.clone());
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group
                .then_option(
                    |_: &u32| async { Err::<u8, _>("first") },
                    move |(_, own): (&u32, Option<&u8>)| {
                        push(&u0, format!("undo m0 {own:?}"));
                        async { Ok(()) }
                    },
                )
                .then_option(
                    move |_: &u32| {
                        s.fetch_add(1, Ordering::SeqCst);
                        async { Ok(2u8) }
                    },
                    move |(_, own): (&u32, Option<&u8>)| {
                        push(&u1, format!("undo m1 {own:?}"));
                        async { Ok(()) }
                    },
                )
        })
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    assert_eq!(count(&started), 0);
    assert_eq!(entries(&undone), ["undo m0 None"]);
    assert_eq!(*error.values(), (0, (None, None)));
    assert!(error.report().is_fully_compensated());
}

#[test]
fn compensation_timeout_on_a_flow() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .sleeper(|duration| smol::Timer::after(duration))
        .compensation_timeout(Duration::from_millis(10))
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, Error>(n) }
            },
            |_| std::future::pending::<Result<(), Error>>(),
        )
        .named("stuck undo")
        .then(
            |_| async { Err::<u8, _>(Error::Failed("boom")) },
            |_| async { Ok(()) },
        )
        .build();
    let error = block_on(flow.run(3)).unwrap_err();
    let report = error.report();
    assert_eq!(report.compensation_errors().len(), 1);
    assert_eq!(report.compensation_errors()[0].step(), 0);
    assert_eq!(*report.compensation_errors()[0].error(), Error::TimedOut);
    assert!(report.compensation_errors()[0].timed_out());
    assert_eq!(report.uncompensated_steps().collect::<Vec<_>>(), [0]);
    assert_eq!(*error.values(), ((3, Some(3)), None));
}

#[test]
fn observer_hears_a_successful_flow_run() {
    let recorder = Arc::new(Recorder::default());
    let mut flow = SagaBuilder::new()
        .observer(recorder.clone())
        .input::<u32>()
        .then(
            |_: &u32| async { Ok::<_, &'static str>(1u8) },
            |_| async { Ok(()) },
        )
        .build();
    assert_eq!(block_on(flow.run(0)).unwrap(), (0, 1));
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["started 1", "ok 0 None #1", "finished ok"]
    );
}

#[test]
fn every_failed_group_member_is_reported_and_has_no_value() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .parallel(|group| {
            group
                .then(
                    |_: &u32| async { Err::<u8, _>("first") },
                    |_| async { Ok(()) },
                )
                .named("a")
                .then(|_: &u32| async { Ok(2u8) }, |_| async { Ok(()) })
                .then(
                    |_: &u32| async { Err::<u8, _>("third") },
                    |_| async { Ok(()) },
                )
                .named("c")
        })
        .build();
    let error = block_on(flow.run(0)).unwrap_err();
    let report = error.report();
    assert_eq!(report.failed_step(), 0);
    let others: Vec<usize> = report
        .concurrent_failures()
        .iter()
        .map(|f| f.step())
        .collect();
    assert_eq!(others, [2]);
    assert_eq!(*error.values(), (0, ((None, Some(2)), None)));
    assert_eq!(
        error.to_string(),
        "step 0 (a) failed: first; step 2 (c) failed too: third; fully compensated (1 step)"
    );
}

struct LocalRecorder(Rc<RefCell<Vec<String>>>);

impl Observer<&'static str> for LocalRecorder {
    fn action_failed(&self, step: StepRef<'_>, _attempt: u32, error: &&'static str) {
        self.0
            .borrow_mut()
            .push(format!("{} failed: {error}", step.index));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
        self.0.borrow_mut().push(format!("undone {}", step.index));
    }
}

#[test]
fn local_flow_takes_an_rc_observer_and_runs_on_a_local_executor() {
    let events = Rc::new(RefCell::new(Vec::new()));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let mut flow = SagaBuilder::new_local()
        .observer(LocalRecorder(events.clone()))
        .input::<Rc<String>>()
        .then(
            |name: &Rc<String>| {
                let copy = Rc::clone(name);
                async move { Ok(copy) }
            },
            move |(_, own): (&Rc<String>, &Rc<String>)| {
                s.borrow_mut().push(own.to_string());
                async { Ok(()) }
            },
        )
        .then(|_| async { Err::<(), _>("no") }, |_| async { Ok(()) })
        .build();
    let executor = smol::LocalExecutor::new();
    let error = block_on(executor.run(flow.run(Rc::new("x".into())))).unwrap_err();
    assert_eq!(*events.borrow(), ["1 failed: no", "undone 0"]);
    assert_eq!(*seen.borrow(), ["x"]);
    let ((input, first), second) = error.into_parts().1;
    assert_eq!(
        Rc::strong_count(&input),
        2,
        "the input and the step's clone"
    );
    drop(first);
    assert_eq!(Rc::strong_count(&input), 1);
    assert!(second.is_none());
}
