//! Flows (`SagaBuilder::input`) against the reference model, with the
//! values the steps read checked as well as the log and the report.
//!
//! The layouts (`support::flow`) are five typed flows of 3 to 7 steps:
//! `then` and `then_option` steps, plain steps (before `input` too),
//! groups of 2 and 3, two groups in a row. Each step's value is a mix of
//! its index and what it read (never of the attempt), and every action and
//! compensation attempt records what it read, so `support::flow::predict`
//! (which runs `model_grouped` for which steps run and are compensated)
//! predicts every read.
//!
//! - `flows_match_the_model`: each layout x no failure, each single step
//!   failing, or each non-empty subset of a group's members failing x five
//!   ways to fail (always, with 1 or 2 action attempts; the first 1 or 2
//!   attempts of 2 or 3) x no failing compensation, or each step's failing
//!   always or once (then retried) x the four modes; a step other than the
//!   failing ones fails its first attempt and recovers whenever retries
//!   are on; the attempts are the saga's policy or every step's own
//!   (`policy`, `step_with`), alternately; suspensions varied. 7,960 cases,
//!   each on all six executors. Checked: the log and the report
//!   (`compare_grouped`), every attempt's reads, `FlowError::values()` or
//!   the result, and that no value is alive once those are dropped.
//! - `one_flow_runs_fifty_times`: one built flow, 50 runs with different
//!   inputs and failures, one in five dropped mid-run after polling it by
//!   hand, in the four modes on all six executors.
//! - `a_trip_threads_typed_values`, `a_generic_helper_reads_an_earlier_value`:
//!   the API as a user writes it.
//! - `attachments_do_not_change_a_flow`: every case above, plain and with a
//!   counting observer, never-firing timeouts and an abort handle.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use saga_core::marker::{Appends, Pick, SagaKind};
use saga_core::{AbortHandle, CompensationMode, FlowBuilder, SagaBuilder};
use support::flow::{
    Attached, FlowTrace, LayoutInfo, Probe, Ran, Seen, build, compare_flow, layouts, predict,
    run_once,
};
use support::{Event, Exec, Flaky, GroupShape, MODES, Report, on_every_executor};

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

/// One run of a layout.
#[derive(Debug, Clone)]
struct Case {
    layout: usize,
    shape: GroupShape,
    /// The action attempts as every step's own policy (else saga-wide).
    per_step: bool,
    input: u64,
}

/// How the failing actions fail: (always, first attempts failing, action
/// attempts).
const ACTION_FAILURES: [(bool, u32, Option<u32>); 5] = [
    (true, 0, None),
    (true, 0, Some(2)),
    (false, 1, Some(2)),
    (false, 2, Some(2)),
    (false, 2, Some(3)),
];

/// The failing-action choices of a shape, as step masks: none, each single
/// step, each non-empty subset of each group.
fn failing_actions(shape: &GroupShape) -> Vec<u32> {
    let mut masks = vec![0];
    for (range, group) in shape.blocks_ranges() {
        if group {
            for subset in 1..(1u32 << range.len()) {
                masks.push(subset << range.start);
            }
        } else {
            masks.push(1 << range.start);
        }
    }
    masks
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (l, layout) in layouts().iter().enumerate() {
        let n = layout.len();
        for mode in MODES {
            let base = layout.shape(mode);
            for mask in failing_actions(&base) {
                let failures: Vec<_> = if mask == 0 {
                    vec![None]
                } else {
                    ACTION_FAILURES.into_iter().map(Some).collect()
                };
                for failure in failures {
                    // None, or (step, always) / (step, once and retried).
                    let mut undos = vec![None];
                    if mask != 0 {
                        undos.extend((0..n).flat_map(|j| [Some((j, true)), Some((j, false))]));
                    }
                    for undo in undos {
                        let c = cases.len();
                        let mut shape = base.clone();
                        let mut flaky = vec![Flaky::default(); n];
                        for (i, step) in shape.steps.iter_mut().enumerate() {
                            step.action_yields = ((c + i) % 3) as u32;
                            step.undo_yields = ((c + 2 * i + 1) % 3) as u32;
                        }
                        if let Some((always, first, attempts)) = failure {
                            shape.action_attempts = attempts;
                            for i in (0..n).filter(|i| mask & (1 << i) != 0) {
                                shape.steps[i].action_fails = always;
                                flaky[i].action = first;
                            }
                        }
                        // Another step fails once and recovers.
                        let bystander = c % n;
                        if shape.action_attempts.is_some() && mask & (1 << bystander) == 0 {
                            flaky[bystander].action = 1;
                        }
                        match undo {
                            Some((j, true)) => {
                                shape.steps[j].undo_fails = true;
                                shape.compensation_attempts = (c % 2 == 0).then_some(2);
                            }
                            Some((j, false)) => {
                                flaky[j].undo = 1;
                                shape.compensation_attempts = Some(2);
                            }
                            None => {}
                        }
                        shape.flaky = flaky;
                        cases.push(Case {
                            layout: l,
                            per_step: shape.action_attempts.is_some() && c % 2 == 1,
                            input: (c as u64) * 1_000_003 + 17,
                            shape,
                        });
                    }
                }
            }
        }
    }
    cases
}

/// Runs `case` once (in the current task), plain or attached.
async fn run_case(
    layout: &LayoutInfo,
    case: &Case,
    attach: Option<&Attached>,
    abort: Option<&AbortHandle>,
) -> FlowTrace {
    let probe = Probe::new(&case.shape);
    let mut runner = build(layout, &case.shape, case.per_step, &probe, attach);
    run_once(&mut *runner, &probe, &case.shape, case.input, attach, abort).await
}

/// Runs every case on every executor with `check`; panics with the first
/// failure, after every executor ran.
fn on_every_executor_check<F, Fut>(cases: &[Case], check: F)
where
    F: Fn(LayoutInfo, Case) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let mut summary = Vec::new();
    let mut first = None;
    for exec in Exec::ALL {
        let run = cases.to_vec();
        let check = check.clone();
        let failures: Vec<String> = exec.block_on(async move {
            let layouts = layouts();
            let mut failures = Vec::new();
            for case in run {
                let layout = layouts[case.layout];
                if let Err(failure) = check(layout, case).await {
                    failures.push(failure);
                }
            }
            failures
        });
        if !failures.is_empty() {
            summary.push(format!("{} on {exec:?}", failures.len()));
            first.get_or_insert(failures[0].clone());
        }
    }
    assert!(
        summary.is_empty(),
        "of {} cases, these fail: {}; the first:\n{}",
        cases.len(),
        summary.join(", "),
        first.unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------
// 1. Against the model
// ---------------------------------------------------------------------------

#[test]
fn flows_match_the_model() {
    let cases = all_cases();
    let per_layout: Vec<usize> = (0..layouts().len())
        .map(|l| cases.iter().filter(|c| c.layout == l).count())
        .collect();
    assert_eq!(per_layout, [424, 904, 2_604, 2_704, 1_324]);
    assert_eq!(cases.len(), 7_960);
    // Every kind of case is there.
    assert!(cases.iter().any(|c| c.per_step));
    assert!(
        cases
            .iter()
            .any(|c| !c.per_step && c.shape.action_attempts.is_some())
    );
    assert!(
        cases
            .iter()
            .any(|c| c.shape.compensation_attempts.is_some())
    );
    println!(
        "flow model: {} cases x {} executors",
        cases.len(),
        Exec::ALL.len()
    );
    on_every_executor_check(&cases, |layout, case| async move {
        let trace = run_case(&layout, &case, None, None).await;
        compare_flow(&layout, &case.shape, case.input, &trace).map_err(|e| {
            format!(
                "{e}\nper-step policy: {}, observed report {:?}",
                case.per_step,
                trace.ran.report()
            )
        })
    });
}

#[test]
fn the_model_check_notices_wrong_reads() {
    // Not vacuous: a run of one shape compared with the prediction for
    // another input, or another shape, is told apart.
    let layout = layouts()[2];
    let mut shape = layout.shape(CompensationMode::StopOnError);
    shape.steps[5].action_fails = true;
    let case = Case {
        layout: 2,
        shape: shape.clone(),
        per_step: false,
        input: 5,
    };
    let trace = support::block_on(run_case(&layout, &case, None, None));
    assert!(compare_flow(&layout, &shape, 5, &trace).is_ok());
    let error = compare_flow(&layout, &shape, 6, &trace).unwrap_err();
    assert!(error.contains("read other values"), "{error}");
    // Steps 0 to 4 compensated, with the values of their run.
    let undone: Vec<&Seen> = trace.seen.iter().filter(|s| s.undo).collect();
    assert_eq!(
        undone.iter().map(|s| s.step).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1, 0]
    );
    // `then_option` step 5 failed: compensated with `None`; the rest with
    // their values; the plain step 0 reads nothing.
    assert_eq!(undone[0].own, None);
    assert!(undone[1..5].iter().all(|s| s.own.is_some()));
    assert!(undone[5].reads.is_empty() && undone[5].own.is_none());
    // Group members (2, 3, 4) read the input and step 1's value only.
    for member in &undone[1..4] {
        assert_eq!(member.reads.len(), 2, "{member:?}");
        assert_eq!(
            member.reads,
            undone[4]
                .reads
                .iter()
                .copied()
                .chain([undone[4].own.unwrap()])
                .collect::<Vec<_>>()
        );
    }
    let mut other = shape.clone();
    other.steps[5].action_fails = false;
    other.steps[4].action_fails = true;
    assert!(compare_flow(&layout, &other, 5, &trace).is_err());
}

// ---------------------------------------------------------------------------
// 2. One flow, many runs
// ---------------------------------------------------------------------------

/// Run `r` of the fifty: a failure (or none) and an input of its own; one in
/// five is dropped mid-run: `Some((step, undo))` is the action (or, with
/// `undo`, the compensation) that stays pending when the run is dropped.
fn fifty(
    layout: &LayoutInfo,
    mode: CompensationMode,
    r: usize,
) -> (GroupShape, u64, Option<(usize, bool)>) {
    let n = layout.len();
    let mut shape = layout.shape(mode);
    shape.action_attempts = Some(2);
    shape.compensation_attempts = Some(2);
    shape.flaky = vec![Flaky::default(); n];
    let input = 1_000 + (r as u64) * 7_919;
    for (i, step) in shape.steps.iter_mut().enumerate() {
        step.action_yields = ((r + i) % 3) as u32;
        step.undo_yields = ((r + i + 1) % 2) as u32;
    }
    if r % 5 == 4 {
        // Dropped with an action pending (the forward phase), or with a
        // compensation pending after the last step failed.
        let k = r / 5;
        if k % 2 == 0 {
            return (shape, input, Some((k % n, false)));
        }
        shape.steps[n - 1].action_fails = true;
        return (shape, input, Some((k % (n - 1), true)));
    }
    let target = r % (n + 1);
    if target < n {
        match r % 3 {
            0 => shape.steps[target].action_fails = true,
            1 => shape.flaky[target].action = 1,
            _ => shape.flaky[target].action = 2,
        }
    }
    if r % 4 == 1 {
        shape.flaky[r % n].undo = 1;
    }
    (shape, input, None)
}

#[test]
fn one_flow_runs_fifty_times() {
    // The two-group layout: plain, `then`, `then_option` steps, a group
    // reading another group's values.
    on_every_executor(|| async {
        let layout = layouts()[3];
        for mode in MODES {
            let first = fifty(&layout, mode, 0).0;
            let probe = Probe::new(&first);
            let mut runner = build(&layout, &first, false, &probe, None);
            let (mut failed, mut succeeded, mut dropped) = (0, 0, 0);
            for r in 0..50 {
                let (shape, input, drop_after) = fifty(&layout, mode, r);
                if let Some((step, undo)) = drop_after {
                    probe.prepare_holding(&shape, step, undo);
                    // Polled by hand until the held attempt started (the
                    // other steps suspend a few times each), then dropped.
                    let mut polls = 1;
                    let reached =
                        |seen: &[Seen]| seen.iter().any(|s| (s.step, s.undo) == (step, undo));
                    loop {
                        probe.prepare_holding(&shape, step, undo);
                        assert!(
                            runner.poll_and_drop(probe.val(input), polls),
                            "run {r} finished with step {step} held"
                        );
                        if reached(&probe.seen()) || polls > 100 {
                            break;
                        }
                        assert_eq!(probe.counters().alive(), 0);
                        polls += 1;
                    }
                    assert!(reached(&probe.seen()), "run {r} never reached step {step}");
                    dropped += 1;
                    // What ran read this run's values; a run dropped in its
                    // forward phase compensated nothing.
                    if !undo {
                        assert!(probe.seen().iter().all(|s| !s.undo), "run {r} compensated");
                    }
                    let expected = predict(&layout, &shape, input);
                    let mut left = expected.seen.clone();
                    for seen in probe.seen() {
                        let at = left.iter().position(|s| *s == seen).unwrap_or_else(|| {
                            panic!("run {r} (dropped) saw {seen:?}, not in {:?}", expected.seen)
                        });
                        left.remove(at);
                    }
                    assert_eq!(
                        probe.counters().alive(),
                        0,
                        "run {r} dropped after {polls} polls left values alive"
                    );
                    continue;
                }
                let trace = run_once(&mut *runner, &probe, &shape, input, None, None).await;
                compare_flow(&layout, &shape, input, &trace)
                    .unwrap_or_else(|e| panic!("run {r} of the same flow in {mode:?}: {e}"));
                match trace.ran {
                    Ran::Ok(..) => succeeded += 1,
                    Ran::Err(..) => failed += 1,
                }
            }
            assert_eq!(dropped, 10);
            assert!(
                succeeded >= 10 && failed >= 10,
                "{succeeded} ok, {failed} failed"
            );
            drop(runner);
            let (made, gone) = probe.counters().get();
            assert!(made > 200, "{made} values made");
            assert_eq!(made, gone, "values made and dropped in {mode:?}");
        }
    });
}

// ---------------------------------------------------------------------------
// 3. As a user writes it
// ---------------------------------------------------------------------------

/// `future`, boxed as `Send`, as the executors take it.
fn sendable<'a, T>(
    future: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}

#[derive(Debug, Clone)]
struct Trip {
    traveller: &'static str,
    to: &'static str,
    departs: u32,
    nights: u32,
}

#[derive(Debug)]
struct Flight {
    booking: String,
    arrives: u32,
    returns: u32,
}

#[derive(Debug)]
struct Hotel {
    booking: String,
    check_in: u32,
    check_out: u32,
}

#[derive(Debug)]
struct Payment {
    reference: String,
    amount: u32,
}

#[derive(Debug, PartialEq, Eq)]
struct Itinerary {
    traveller: String,
    flight: String,
    hotel: String,
    nights: u32,
    paid: u32,
    payment: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TripError {
    NoRooms,
    CardDeclined(u32),
}

type Log = Arc<Mutex<Vec<String>>>;

/// The trip flow's type: it names no closure, so it can be a field.
type TripFlow = saga_core::Flow<
    TripError,
    Trip,
    Itinerary,
    (((Trip, Option<Flight>), Option<Hotel>), Option<Payment>),
>;

fn trip_flow(log: &Log, card_limit: u32) -> TripFlow {
    let (cancel_flight, cancel_hotel, refund) = (log.clone(), log.clone(), log.clone());
    SagaBuilder::new()
        .input::<Trip>()
        .then(
            |trip: &Trip| {
                let flight = Flight {
                    booking: format!("FL-{}-{}", trip.to, trip.departs),
                    arrives: trip.departs,
                    returns: trip.departs + trip.nights,
                };
                async move { Ok(flight) }
            },
            move |(trip, flight): (&Trip, &Flight)| {
                let line = format!("cancel {} for {}", flight.booking, trip.traveller);
                let log = cancel_flight.clone();
                async move {
                    log.lock().unwrap().push(line);
                    Ok(())
                }
            },
        )
        .named("book flight")
        .then(
            // The hotel for the flight's dates.
            |(trip, flight)| {
                let hotel = (trip.to != "Nowhere").then(|| Hotel {
                    booking: format!("HT-{}-{}", flight.arrives, flight.returns),
                    check_in: flight.arrives,
                    check_out: flight.returns,
                });
                async move { hotel.ok_or(TripError::NoRooms) }
            },
            move |((_, flight), hotel)| {
                let line = format!(
                    "cancel {} ({}..{}, after {})",
                    hotel.booking, hotel.check_in, hotel.check_out, flight.booking
                );
                let log = cancel_hotel.clone();
                async move {
                    log.lock().unwrap().push(line);
                    Ok(())
                }
            },
        )
        .named("book hotel")
        .then(
            // One payment for both bookings.
            move |((trip, flight), hotel)| {
                let amount = 200 + 90 * trip.nights;
                let reference = format!("PAY[{}+{}]", flight.booking, hotel.booking);
                async move {
                    if amount > card_limit {
                        Err(TripError::CardDeclined(amount))
                    } else {
                        Ok(Payment { reference, amount })
                    }
                }
            },
            move |(_, payment): (_, &Payment)| {
                let line = format!("refund {} of {}", payment.reference, payment.amount);
                let log = refund.clone();
                async move {
                    log.lock().unwrap().push(line);
                    Ok(())
                }
            },
        )
        .named("charge card")
        .build_with(|(((trip, flight), hotel), payment)| Itinerary {
            traveller: trip.traveller.to_owned(),
            flight: flight.booking,
            hotel: hotel.booking,
            nights: hotel.check_out - hotel.check_in,
            paid: payment.amount,
            payment: payment.reference,
        })
}

#[test]
fn a_trip_threads_typed_values() {
    // As the docs run flows: `smol::block_on`, and the adversarial executor
    // (neither needs the future to be `Send`).
    smol::block_on(trip_scenario());
    support::block_on_adversarial(trip_scenario());
}

async fn trip_scenario() {
    {
        let log = Log::default();
        let mut flow = trip_flow(&log, 1_000);
        let lisbon = Trip {
            traveller: "Ada",
            to: "Lisbon",
            departs: 12,
            nights: 3,
        };
        let itinerary = flow.run(lisbon.clone()).await.unwrap();
        assert_eq!(
            itinerary,
            Itinerary {
                traveller: "Ada".into(),
                flight: "FL-Lisbon-12".into(),
                hotel: "HT-12-15".into(),
                nights: 3,
                paid: 470,
                payment: "PAY[FL-Lisbon-12+HT-12-15]".into(),
            }
        );
        assert!(log.lock().unwrap().is_empty());
        // Too dear: the payment fails, the hotel then the flight are
        // cancelled, each with its own booking.
        let long = Trip {
            nights: 10,
            ..lisbon.clone()
        };
        let error = flow.run(long).await.unwrap_err();
        assert_eq!(error.report().failed_step(), 2);
        assert_eq!(error.report().failed_step_name(), Some("charge card"));
        assert_eq!(*error.report().error(), TripError::CardDeclined(1_100));
        assert!(error.report().is_fully_compensated());
        let (((trip, flight), hotel), payment) = error.values();
        assert_eq!(trip.nights, 10);
        assert_eq!(flight.as_ref().unwrap().returns, 22);
        assert_eq!(hotel.as_ref().unwrap().booking, "HT-12-22");
        assert!(payment.is_none());
        assert_eq!(
            *log.lock().unwrap(),
            [
                "cancel HT-12-22 (12..22, after FL-Lisbon-12)",
                "cancel FL-Lisbon-12 for Ada"
            ]
        );
        log.lock().unwrap().clear();
        // No rooms: only the flight is cancelled; the same flow again.
        let nowhere = Trip {
            to: "Nowhere",
            ..lisbon.clone()
        };
        let error = flow.run(nowhere).await.unwrap_err();
        assert_eq!(error.report().failed_step(), 1);
        assert!(error.values().0.1.is_none());
        assert_eq!(*log.lock().unwrap(), ["cancel FL-Nowhere-12 for Ada"]);
        let again = flow.run(lisbon).await.unwrap();
        assert_eq!(again.hotel, "HT-12-15");
        assert_eq!(
            flow.step_names().collect::<Vec<_>>(),
            [Some("book flight"), Some("book hotel"), Some("charge card")]
        );
    }
}

/// The total an order comes to.
#[derive(Debug)]
struct Total(u32);

/// What charging a [`Total`] returns.
#[derive(Debug, PartialEq, Eq)]
struct Receipt(String);

/// Adds a step that charges the `Total` some earlier step returned (or the
/// input), wherever it is; its compensation refunds it. Generic over the
/// flow before it, `Send` or local.
fn charge<E: 'static, S: ?Sized + SagaKind<E>, T, C, Index>(
    flow: FlowBuilder<E, S, T, C>,
    log: &Log,
) -> FlowBuilder<E, S, T, impl Appends<E, C, Receipt>>
where
    C: Pick<E, Total, Index> + 'static,
{
    let log = log.clone();
    flow.then(
        |values| {
            let receipt = Receipt(format!("charged {}", C::pick(values).0));
            async move { Ok(receipt) }
        },
        move |(values, receipt)| {
            let receipt: &Receipt = receipt;
            let line = format!("refund {} ({})", C::pick(values).0, receipt.0);
            let log = log.clone();
            async move {
                log.lock().unwrap().push(line);
                Ok(())
            }
        },
    )
}

#[test]
fn a_generic_helper_reads_an_earlier_value() {
    let log = Log::default();
    // The total is the input; a later step reads the receipt.
    let flow = SagaBuilder::<String>::new().input::<Total>();
    let mut direct = charge(flow, &log)
        .then(
            |(_, receipt)| {
                let shipped = format!("shipped after {}", receipt.0);
                async move { Ok(shipped) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|((_, receipt), shipped)| (receipt, shipped));
    assert_eq!(
        smol::block_on(direct.run(Total(30))).unwrap(),
        (
            Receipt("charged 30".into()),
            "shipped after charged 30".into()
        )
    );
    // The total is the second step's value in a local flow (with a plain
    // step between), and a step after the charge fails: it is refunded.
    let counted = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = counted.clone();
    let flow = SagaBuilder::<String, _>::new_local()
        .input::<u32>()
        .then(
            |quantity: &u32| {
                let label = format!("{quantity} items");
                async move { Ok(label) }
            },
            |_| async { Ok(()) },
        )
        .then(
            |(quantity, _)| {
                let total = Total(quantity * 25);
                async move { Ok(total) }
            },
            |_| async { Ok(()) },
        )
        .add_step(
            move || {
                seen.set(seen.get() + 1);
                async { Ok::<(), String>(()) }
            },
            || async { Ok(()) },
        );
    let mut indirect = charge(flow, &log)
        .then(
            |(((quantity, label), total), receipt)| {
                let out = format!("{label}: {} for {quantity}, {}", total.0, receipt.0);
                async move { if out.is_empty() { Ok(out) } else { Err(out) } }
            },
            |_| async { Ok(()) },
        )
        .build();
    let error = smol::block_on(indirect.run(4)).unwrap_err();
    assert_eq!(*error.report().error(), "4 items: 100 for 4, charged 100");
    assert_eq!(error.report().failed_step(), 4);
    assert_eq!(counted.get(), 1);
    assert_eq!(*log.lock().unwrap(), ["refund 100 (charged 100)"]);
    let ((((quantity, label), total), receipt), last) = error.into_parts().1;
    assert_eq!((quantity, label.as_deref()), (4, Some("4 items")));
    assert_eq!(total.map(|t| t.0), Some(100));
    assert_eq!(receipt, Some(Receipt("charged 100".into())));
    assert!(last.is_none());
}

// An `async` block that awaits a `FlowRun` is `Send`, so
// `tokio::spawn(async move { flow.run(input).await })` compiles. (It did not
// while `FlowKind` was implemented only for the `'static` trait objects: the
// compiler checks the block with its lifetimes erased.)
#[test]
fn a_flow_run_awaited_in_an_async_block_is_send() {
    fn needs_send<F: Future + Send>(future: F) -> F {
        future
    }
    let mut flow = SagaBuilder::<()>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            |_| async { Ok(()) },
        )
        .build();
    let run = needs_send(async move { flow.run(1).await.is_ok() });
    assert!(support::block_on(run));
}

#[test]
fn a_flow_run_itself_is_send() {
    fn needs_send<F: Future + Send>(future: F) -> F {
        future
    }
    let mut flow = SagaBuilder::<()>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n + 1) }
            },
            |_| async { Ok(()) },
        )
        .build();
    assert_eq!(support::block_on(needs_send(flow.run(1))).unwrap(), (1, 2));
    let boxed = needs_send(async move { sendable(flow.run(2)).await });
    assert_eq!(support::block_on(boxed).unwrap(), (2, 3));
}

// ---------------------------------------------------------------------------
// 4. Attachments change nothing
// ---------------------------------------------------------------------------

/// What differs between two runs of the same case.
fn differences(plain: &FlowTrace, other: &FlowTrace) -> Vec<String> {
    let mut differ = Vec::new();
    if plain.events != other.events {
        differ.push("the step logs".to_owned());
    }
    if plain.seen != other.seen {
        differ.push("what the steps read".to_owned());
    }
    if plain.ran.report() != other.ran.report() {
        differ.push(format!(
            "the reports ({:?} / {:?})",
            plain.ran.report(),
            other.ran.report()
        ));
    }
    let accessors = |trace: &FlowTrace| {
        trace.ran.report().map(|report| {
            (
                Report::of(report),
                report.failed_step_name().map(str::to_owned),
                report.reason(),
                report.timed_out(),
                report.aborted(),
            )
        })
    };
    if accessors(plain) != accessors(other) {
        differ.push("the report's accessors".to_owned());
    }
    if plain.ran.display() != other.ran.display() {
        differ.push(format!(
            "the reports' Display ({:?} / {:?})",
            plain.ran.display(),
            other.ran.display()
        ));
    }
    if plain.ran.values() != other.ran.values() {
        differ.push("the values handed out".to_owned());
    }
    if (plain.held, plain.alive) != (other.held, other.alive) {
        differ.push("the values alive".to_owned());
    }
    differ
}

/// The attached run was attached.
fn check_attached(trace: &FlowTrace) -> Result<(), String> {
    let count = |wanted: fn(&Event) -> bool| trace.events.iter().filter(|e| wanted(e)).count();
    let tallied = trace.tallied.expect("an observer");
    let actions = count(|e| matches!(e, Event::Action(_)));
    let undos = count(|e| matches!(e, Event::Undo(_)));
    if (
        tallied.runs_started,
        tallied.runs_finished,
        tallied.actions_started,
        tallied.compensations_started,
    ) != (1, 1, actions, undos)
    {
        return Err(format!(
            "the observer saw {tallied:?} of a run with {actions} action attempts and {undos} \
             compensation attempts"
        ));
    }
    if trace.sleeps == Some(0) {
        return Err("the sleeper was never asked for a sleep".to_owned());
    }
    Ok(())
}

#[test]
fn attachments_do_not_change_a_flow() {
    let cases = all_cases();
    on_every_executor_check(&cases, |layout, case| async move {
        let plain = run_case(&layout, &case, None, None).await;
        let attached = Attached::default();
        let handle = AbortHandle::new();
        let other = run_case(&layout, &case, Some(&attached), Some(&handle)).await;
        check_attached(&other)?;
        let differ = differences(&plain, &other);
        if differ.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "layout {}: {} differ with an observer, timeouts and an abort handle\n{case:#?}",
                layout.name,
                differ.join(", ")
            ))
        }
    });
}

#[test]
fn the_differential_notices_a_difference() {
    let layout = layouts()[1];
    let mut shape = layout.shape(CompensationMode::ContinueOnError);
    shape.steps[3].action_fails = true;
    let case = Case {
        layout: 1,
        shape: shape.clone(),
        per_step: false,
        input: 9,
    };
    let plain = support::block_on(run_case(&layout, &case, None, None));
    let attached = Attached::default();
    let with = support::block_on(run_case(&layout, &case, Some(&attached), None));
    assert!(differences(&plain, &with).is_empty());
    assert!(check_attached(&with).is_ok());
    assert!(
        check_attached(&FlowTrace {
            sleeps: Some(0),
            ..with
        })
        .is_err()
    );
    let mut failing = case.clone();
    failing.shape.steps[0].undo_fails = true;
    let other = support::block_on(run_case(&layout, &failing, None, None));
    let differ = differences(&plain, &other);
    assert!(
        differ.iter().any(|d| d.starts_with("the reports (")),
        "{differ:?}"
    );
    assert!(differ.iter().any(|d| d.starts_with("the reports' Display")));
    assert!(differ.contains(&"the report's accessors".to_owned()));
    let input = Case { input: 10, ..case };
    let other = support::block_on(run_case(&layout, &input, None, None));
    let differ = differences(&plain, &other);
    assert_eq!(differ, ["what the steps read", "the values handed out"]);
}
