//! The scenarios of the runtime adapter tests, each generic over the
//! [`Runtime`]; the `tokio_*.rs` and `async_std_*.rs` files instantiate them.

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use saga_core::{CompensationMode, InFlight, Retry, SagaBuilder, SagaError, StepPolicy};

use super::{Call, Error, Joined, Runtime, Signal, TEST_PANIC, Wait, quiet_test_panics, within};

// ---------------------------------------------------------------------------
// Scripted actions and compensations
// ---------------------------------------------------------------------------

/// What happened, in order: each call pushes its name when it starts.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

enum Outcome {
    Succeed,
    Fail(Error),
    Panic,
    Hang,
}

/// A scripted action or compensation: logs `entry`, then (optionally)
/// waits for a gate, signalling `started` once parked there (or at once
/// without a gate), and ends by its outcome, signalling `then` when it
/// returns.
pub struct Script {
    log: Log,
    entry: &'static str,
    started: Option<Signal>,
    gate: Option<Signal>,
    then: Option<Signal>,
    outcome: Outcome,
}

/// A [`Script`] that succeeds.
pub fn script(log: &Log, entry: &'static str) -> Script {
    Script {
        log: log.clone(),
        entry,
        started: None,
        gate: None,
        then: None,
        outcome: Outcome::Succeed,
    }
}

impl Script {
    pub fn started(mut self, signal: &Signal) -> Self {
        self.started = Some(signal.clone());
        self
    }

    pub fn gate(mut self, signal: &Signal) -> Self {
        self.gate = Some(signal.clone());
        self
    }

    pub fn then(mut self, signal: &Signal) -> Self {
        self.then = Some(signal.clone());
        self
    }

    pub fn fails(mut self, error: Error) -> Self {
        self.outcome = Outcome::Fail(error);
        self
    }

    /// Panics with `"{TEST_PANIC} {entry}"`.
    pub fn panics(mut self) -> Self {
        self.outcome = Outcome::Panic;
        self
    }

    /// Never returns; logs `"{entry} dropped"` when its future is dropped.
    pub fn hangs(mut self) -> Self {
        self.outcome = Outcome::Hang;
        self
    }

    pub fn call(self) -> Call {
        let script = Arc::new(self);
        Box::new(move || {
            let script = script.clone();
            Box::pin(async move {
                script.log.push(script.entry);
                match (&script.gate, &script.started) {
                    (Some(gate), started) => {
                        let started = started.clone();
                        WaitAnnounced {
                            gate: gate.wait(),
                            started,
                        }
                        .await;
                    }
                    (None, Some(started)) => started.set(),
                    (None, None) => {}
                }
                let result = match &script.outcome {
                    Outcome::Succeed => Ok(()),
                    Outcome::Fail(error) => Err(error.clone()),
                    Outcome::Panic => panic!("{TEST_PANIC} {}", script.entry),
                    Outcome::Hang => {
                        let _dropped = OnDrop(script.log.clone(), script.entry);
                        pending::<()>().await;
                        unreachable!()
                    }
                };
                if let Some(then) = &script.then {
                    then.set();
                }
                result
            })
        })
    }
}

/// Waits for `gate`; sets `started` once it is parked there, so that what
/// the test does next (an abort, say) finds the step waiting.
struct WaitAnnounced {
    gate: Wait,
    started: Option<Signal>,
}

impl Future for WaitAnnounced {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let waiting = Pin::new(&mut self.gate).poll(cx);
        if waiting.is_pending() {
            if let Some(started) = self.started.take() {
                started.set();
            }
        }
        waiting
    }
}

/// Logs `"{entry} dropped"` when dropped.
struct OnDrop(Log, &'static str);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.push(format!("{} dropped", self.1));
    }
}

fn entries(list: &[&str]) -> Vec<String> {
    list.iter().map(|entry| (*entry).to_owned()).collect()
}

fn panicked(entry: &str) -> Error {
    Error::Panicked(format!("{TEST_PANIC} {entry}"))
}

/// Awaits a detached saga that must fail, for its report.
async fn failure<R: Runtime>(what: &str, handle: R::Handle) -> SagaError<Error> {
    within::<R, _>(what, R::join(handle))
        .await
        .result()
        .expect_err("the saga should fail")
}

/// Spawns a one-step saga and checks that it succeeds: the runtime works.
async fn runtime_still_works<R: Runtime>() {
    let log = Log::default();
    let saga = SagaBuilder::new()
        .add_step(script(&log, "act").call(), script(&log, "undo").call())
        .build();
    let joined = within::<R, _>("a fresh saga", R::join(R::spawn(saga))).await;
    assert_eq!(joined.result(), Ok(()));
    assert_eq!(log.entries(), ["act"]);
}

// ---------------------------------------------------------------------------
// Detached runs: dropping the handle, aborting through it, running again
// ---------------------------------------------------------------------------

/// The handle is dropped while step 2 runs; step 2 then fails, and the saga
/// still compensates all three steps (observed through the log once the last
/// compensation signalled).
pub async fn dropped_handle_still_compensates<R: Runtime>() {
    let log = Log::default();
    let (started, go, done) = (Signal::new(), Signal::new(), Signal::new());
    let saga = SagaBuilder::new()
        .add_step(
            script(&log, "act 0").call(),
            script(&log, "undo 0").then(&done).call(),
        )
        .add_step(script(&log, "act 1").call(), script(&log, "undo 1").call())
        .add_step(
            script(&log, "act 2")
                .started(&started)
                .gate(&go)
                .fails(Error::Failed("no cars"))
                .call(),
            script(&log, "undo 2").call(),
        )
        .build();

    let handle = R::spawn(saga);
    within::<R, _>("step 2 to start", started.wait()).await;
    drop(handle);
    go.set();
    within::<R, _>("the last compensation", done.wait()).await;
    assert_eq!(
        log.entries(),
        entries(&["act 0", "act 1", "act 2", "undo 2", "undo 1", "undo 0"])
    );
}

/// The handle is dropped before the saga's last action finishes: the saga
/// still completes, all actions applied, nothing compensated.
pub async fn dropped_handle_still_completes<R: Runtime>() {
    let log = Log::default();
    let (started, go, done) = (Signal::new(), Signal::new(), Signal::new());
    let saga = SagaBuilder::new()
        .add_step(script(&log, "act 0").call(), script(&log, "undo 0").call())
        .add_step(
            script(&log, "act 1")
                .started(&started)
                .gate(&go)
                .then(&done)
                .call(),
            script(&log, "undo 1").call(),
        )
        .build();

    drop(R::spawn(saga));
    within::<R, _>("step 1 to start", started.wait()).await;
    go.set();
    within::<R, _>("the last action", done.wait()).await;
    assert_eq!(log.entries(), entries(&["act 0", "act 1"]));
}

/// An abort arrives while step 1's action runs: the action finishes (the
/// default `InFlight::Finish`), then steps 1 and 0 are compensated; step 2
/// never starts; the report says aborted.
pub async fn abort_mid_action_finishes_it_then_compensates<R: Runtime>() {
    let log = Log::default();
    let (started, go) = (Signal::new(), Signal::new());
    let saga = SagaBuilder::new()
        .add_step(script(&log, "act 0").call(), script(&log, "undo 0").call())
        .add_step(
            script(&log, "act 1").started(&started).gate(&go).call(),
            script(&log, "undo 1").call(),
        )
        .add_step(script(&log, "act 2").call(), script(&log, "undo 2").call())
        .build();

    let handle = R::spawn(saga);
    within::<R, _>("step 1 to start", started.wait()).await;
    R::abort(&handle);
    go.set();
    let error = failure::<R>("the aborted saga", handle).await;
    assert!(error.aborted());
    assert_eq!(*error.error(), Error::Aborted);
    // Step 1 finished well: the saga stopped before step 2 started.
    assert_eq!(error.failed_step(), 2);
    assert_eq!(error.attempts(), 0);
    assert_eq!(error.compensated_count(), 2);
    assert!(error.is_fully_compensated());
    assert_eq!(
        log.entries(),
        entries(&["act 0", "act 1", "undo 1", "undo 0"])
    );
}

/// With `InFlight::CutShort`, an abort drops the hanging action at once; it
/// counts as possibly applied, so it is compensated, then step 0.
pub async fn abort_cuts_hanging_action_short<R: Runtime>() {
    let log = Log::default();
    let started = Signal::new();
    let saga = SagaBuilder::new()
        .on_abort(InFlight::CutShort)
        .add_step(script(&log, "act 0").call(), script(&log, "undo 0").call())
        .add_step(
            script(&log, "act 1").started(&started).hangs().call(),
            script(&log, "undo 1").call(),
        )
        .build();

    let handle = R::spawn(saga);
    within::<R, _>("step 1 to start", started.wait()).await;
    R::abort(&handle);
    let error = failure::<R>("the aborted saga", handle).await;
    assert!(error.aborted());
    assert_eq!(*error.error(), Error::Aborted);
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(
        log.entries(),
        entries(&["act 0", "act 1", "act 1 dropped", "undo 1", "undo 0"])
    );
}

/// The saga comes back in the handle's output and can be spawned again.
pub async fn finished_saga_runs_again<R: Runtime>() {
    let log = Log::default();
    let saga = SagaBuilder::new()
        .add_step(script(&log, "act 0").call(), script(&log, "undo 0").call())
        .add_step(
            script(&log, "act 1").fails(Error::Busy).call(),
            script(&log, "undo 1").call(),
        )
        .build();

    let (saga, first) = within::<R, _>("run 1", R::join(R::spawn(saga)))
        .await
        .finished();
    let (saga, second) = within::<R, _>("run 2", R::join(R::spawn(saga)))
        .await
        .finished();
    assert_eq!(saga.len(), 2);
    for result in [first, second] {
        let error = result.unwrap_err();
        assert_eq!(*error.error(), Error::Busy);
        assert!(error.is_fully_compensated());
    }
    let round = ["act 0", "act 1", "undo 1", "undo 0"];
    assert_eq!(log.entries(), entries(&[round, round].concat()));
}

// ---------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------

/// Step 1's action panics: it counts as a failed (possibly applied) step, so
/// steps 1 and 0 are compensated, and the report carries the message. The
/// runtime keeps working.
pub async fn panicking_action_is_compensated<R: Runtime>() {
    quiet_test_panics();
    let log = Log::default();
    let saga = SagaBuilder::new()
        .add_step(script(&log, "act 0").call(), script(&log, "undo 0").call())
        .add_step(
            script(&log, "act 1").panics().call(),
            script(&log, "undo 1").call(),
        )
        .add_step(script(&log, "act 2").call(), script(&log, "undo 2").call())
        .build();

    let error = failure::<R>("the saga", R::spawn(saga)).await;
    assert_eq!(*error.error(), panicked("act 1"));
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(
        log.entries(),
        entries(&["act 0", "act 1", "undo 1", "undo 0"])
    );
    runtime_still_works::<R>().await;
}

/// Step 0's compensation panics: the failure is reported with the message,
/// as a compensation error of step 0, and step 0 is left applied. With
/// `ContinueOnError` nothing else is skipped. The runtime keeps working.
pub async fn panicking_compensation_is_reported<R: Runtime>() {
    quiet_test_panics();
    let log = Log::default();
    let saga = SagaBuilder::new()
        .compensation_mode(CompensationMode::ContinueOnError)
        .add_step(script(&log, "act 0").call(), script(&log, "undo 0").call())
        .add_step(
            script(&log, "act 1").call(),
            script(&log, "undo 1").panics().call(),
        )
        .add_step(
            script(&log, "act 2")
                .fails(Error::Failed("declined"))
                .call(),
            script(&log, "undo 2").call(),
        )
        .build();

    let error = failure::<R>("the saga", R::spawn(saga)).await;
    assert_eq!(*error.error(), Error::Failed("declined"));
    assert_eq!(error.failed_step(), 2);
    assert!(!error.is_fully_compensated());
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1]);
    let [failure] = error.compensation_errors() else {
        panic!("one compensation error expected: {error:?}")
    };
    assert_eq!(failure.step(), 1);
    assert_eq!(*failure.error(), panicked("undo 1"));
    assert_eq!(
        log.entries(),
        entries(&["act 0", "act 1", "act 2", "undo 2", "undo 1", "undo 0"])
    );
    runtime_still_works::<R>().await;
}

/// Blocking steps run on the blocking pool; a panic inside one (action or
/// compensation) becomes `Error::Panicked` like any failure.
pub async fn blocking_steps_and_their_panics<R: Runtime>() {
    quiet_test_panics();
    let balance = Arc::new(AtomicI64::new(0));
    let (debit, credit) = (balance.clone(), balance.clone());
    let saga = SagaBuilder::new()
        .add_step(
            R::blocking(move || {
                std::thread::sleep(Duration::from_millis(1)); // blocking I/O
                debit.fetch_sub(10, Ordering::SeqCst);
                Ok(())
            }),
            R::blocking(move || {
                credit.fetch_add(10, Ordering::SeqCst);
                Ok(())
            }),
        )
        .add_step(
            R::blocking(|| panic!("{TEST_PANIC} blocking action")),
            R::blocking(|| Ok(())),
        )
        .build();
    let error = failure::<R>("the saga", R::spawn(saga)).await;
    assert_eq!(*error.error(), panicked("blocking action"));
    assert!(error.is_fully_compensated());
    assert_eq!(balance.load(Ordering::SeqCst), 0);

    let saga = SagaBuilder::new()
        .add_step(
            R::blocking(|| Ok(())),
            R::blocking(|| panic!("{TEST_PANIC} blocking undo")),
        )
        .add_step(
            R::blocking(|| Err(Error::Failed("declined"))),
            R::blocking(|| Ok(())),
        )
        .build();
    let error = failure::<R>("the saga", R::spawn(saga)).await;
    assert_eq!(*error.error(), Error::Failed("declined"));
    assert_eq!(
        *error.compensation_errors()[0].error(),
        panicked("blocking undo")
    );
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
    runtime_still_works::<R>().await;
}

/// A future that panics when polled, and again when dropped.
struct Explosive;

impl Future for Explosive {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        panic!("{TEST_PANIC} explosive polled")
    }
}

impl Drop for Explosive {
    fn drop(&mut self) {
        panic!("{TEST_PANIC} explosive dropped")
    }
}

/// A step whose future panics, then panics again when the engine drops it.
/// Neither panic escapes: the engine reports the step failed with a panic and
/// compensates it, or, should the second panic come out of the engine itself,
/// the handle reports the saga lost by a panic. Either way the handle does
/// not panic and the runtime keeps working.
pub async fn double_panic_in_a_step_is_contained<R: Runtime>() {
    quiet_test_panics();
    let undone = Arc::new(AtomicU32::new(0));
    let saga = SagaBuilder::new()
        .add_step(
            || Explosive,
            counted(&undone, |_| Box::pin(async { Ok(()) })),
        )
        .build();
    match within::<R, _>("the saga", R::join(R::spawn(saga))).await {
        Joined::Finished { result, .. } => {
            let error = result.unwrap_err();
            assert!(
                matches!(error.error(), Error::Panicked(message) if message.starts_with(TEST_PANIC))
            );
            assert_eq!(error.failed_step(), 0);
            assert!(error.is_fully_compensated());
            assert_eq!(undone.load(Ordering::SeqCst), 1);
        }
        Joined::Lost { panicked } => assert!(panicked, "lost, but not by a panic"),
    }
    runtime_still_works::<R>().await;
}

// ---------------------------------------------------------------------------
// Time: retries and timeouts on the runtime's own timer
// ---------------------------------------------------------------------------

/// Counts the calls to an action or compensation.
fn counted(
    calls: &Arc<AtomicU32>,
    attempt: impl Fn(u32) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send + 'static,
) -> Call {
    let calls = calls.clone();
    Box::new(move || attempt(calls.fetch_add(1, Ordering::SeqCst) + 1))
}

/// Attempt 1 hangs and is cut short by the step timeout; the retry, after a
/// backoff, succeeds.
pub async fn timed_out_action_is_retried<R: Runtime>() {
    let calls = Arc::new(AtomicU32::new(0));
    let saga = R::builder()
        .add_step_with(
            counted(&calls, |attempt| {
                Box::pin(async move {
                    if attempt == 1 {
                        pending::<()>().await;
                    }
                    Ok(())
                })
            }),
            || async { Ok(()) },
            StepPolicy::new()
                .timeout(Duration::from_millis(20))
                .retry(Retry::attempts(3).constant(Duration::from_millis(1))),
        )
        .build();
    let joined = within::<R, _>("the saga", R::join(R::spawn(saga))).await;
    assert_eq!(joined.result(), Ok(()));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// An action that always fails is tried 3 times with exponential backoff,
/// then compensated.
pub async fn retries_run_out_with_backoff<R: Runtime>() {
    let calls = Arc::new(AtomicU32::new(0));
    let undone = Arc::new(AtomicU32::new(0));
    let saga = R::builder()
        .add_step_with(
            counted(&calls, |_| Box::pin(async { Err(Error::Busy) })),
            counted(&undone, |_| Box::pin(async { Ok(()) })),
            StepPolicy::new().retry(
                Retry::attempts(3).exponential(Duration::from_millis(1), Duration::from_millis(4)),
            ),
        )
        .build();
    let error = failure::<R>("the saga", R::spawn(saga)).await;
    assert_eq!(*error.error(), Error::Busy);
    assert_eq!(error.attempts(), 3);
    assert!(!error.timed_out());
    assert!(error.is_fully_compensated());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(undone.load(Ordering::SeqCst), 1);
}

/// A compensation whose first attempt hangs is cut short by its timeout and
/// retried; the saga ends fully compensated.
pub async fn timed_out_compensation_is_retried<R: Runtime>() {
    let undo_calls = Arc::new(AtomicU32::new(0));
    let saga = R::builder()
        .compensation_timeout(Duration::from_millis(20))
        .compensation_retry(Retry::attempts(2).constant(Duration::from_millis(1)))
        .add_step(
            || async { Ok(()) },
            counted(&undo_calls, |attempt| {
                Box::pin(async move {
                    if attempt == 1 {
                        pending::<()>().await;
                    }
                    Ok(())
                })
            }),
        )
        .add_step(
            || async { Err::<(), _>(Error::Failed("declined")) },
            || async { Ok(()) },
        )
        .build();
    let error = failure::<R>("the saga", R::spawn(saga)).await;
    assert_eq!(*error.error(), Error::Failed("declined"));
    assert!(error.is_fully_compensated());
    assert!(error.compensation_errors().is_empty());
    assert_eq!(undo_calls.load(Ordering::SeqCst), 2);
}

/// The saga's deadline passes while step 1 hangs: step 1 is cut short and,
/// like step 0, compensated; the report says timed out.
pub async fn saga_deadline_compensates<R: Runtime>() {
    let log = Log::default();
    let saga = R::builder()
        .saga_timeout(Duration::from_millis(30))
        .add_step(script(&log, "act 0").call(), script(&log, "undo 0").call())
        .add_step(
            script(&log, "act 1").hangs().call(),
            script(&log, "undo 1").call(),
        )
        .add_step(script(&log, "act 2").call(), script(&log, "undo 2").call())
        .build();
    let error = failure::<R>("the saga", R::spawn(saga)).await;
    assert_eq!(*error.error(), Error::TimedOut);
    assert!(error.timed_out());
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(
        log.entries(),
        entries(&["act 0", "act 1", "act 1 dropped", "undo 1", "undo 0"])
    );
}

// ---------------------------------------------------------------------------
// Load: many sagas at once, random faults, books that must balance
// ---------------------------------------------------------------------------

const SAGAS: u64 = 10_000;
const ACCOUNTS: usize = 16;
/// Fees go to this account.
const BANK: usize = ACCOUNTS;
const SEED: u64 = 0x5A6A_7E57;

/// How a leg's action misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    FailBefore,
    FailAfter,
    PanicAfter,
}

/// One money movement of a transfer saga, and whether it is applied now.
struct Leg {
    account: usize,
    delta: i64,
    fault: Fault,
    yields: u32,
    flaky_undo: bool,
    applied: Arc<AtomicBool>,
}

/// The action and the compensation of `leg` on `books`: the action applies
/// the movement (unless it fails before), the compensation takes back
/// exactly what is applied, so it is also right after a failed action.
fn leg_step<R: Runtime>(books: &Arc<Vec<AtomicI64>>, leg: &Leg) -> (Call, Call) {
    let Leg {
        account,
        delta,
        fault,
        yields,
        flaky_undo,
        ..
    } = *leg;
    let (books_act, applied_act) = (books.clone(), leg.applied.clone());
    let action: Call = Box::new(move || {
        let (books, applied) = (books_act.clone(), applied_act.clone());
        Box::pin(async move {
            for _ in 0..yields {
                R::yield_now().await;
            }
            if fault == Fault::FailBefore {
                return Err(Error::Failed("declined"));
            }
            books[account].fetch_add(delta, Ordering::SeqCst);
            applied.store(true, Ordering::SeqCst);
            match fault {
                Fault::FailAfter => Err(Error::Failed("failed after applying")),
                Fault::PanicAfter => panic!("{TEST_PANIC} panicked after applying"),
                Fault::None | Fault::FailBefore => Ok(()),
            }
        })
    });
    let (books_undo, applied_undo) = (books.clone(), leg.applied.clone());
    let undo_calls = Arc::new(AtomicU32::new(0));
    let compensation: Call = Box::new(move || {
        let (books, applied) = (books_undo.clone(), applied_undo.clone());
        let call = undo_calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if flaky_undo && call == 0 {
                return Err(Error::Busy); // retried
            }
            if applied.swap(false, Ordering::SeqCst) {
                books[account].fetch_sub(delta, Ordering::SeqCst);
            }
            Ok(())
        })
    });
    (action, compensation)
}

/// The three legs of transfer `index`: debit, credit, fee, with faults drawn
/// from a seeded generator.
fn transfer(index: u64) -> (Vec<Leg>, bool) {
    let mut rng = fastrand::Rng::with_seed(SEED ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let from = rng.usize(..ACCOUNTS);
    let to = (from + rng.usize(1..ACCOUNTS)) % ACCOUNTS;
    let amount = rng.i64(10..=1_000);
    let fee = amount / 10;
    let mut leg = |account, delta| {
        let fault = match rng.u32(..100) {
            0..=3 => Fault::FailBefore,
            4..=7 => Fault::FailAfter,
            8..=9 => Fault::PanicAfter,
            _ => Fault::None,
        };
        Leg {
            account,
            delta,
            fault,
            yields: rng.u32(..3),
            flaky_undo: rng.u32(..10) == 0,
            applied: Arc::new(AtomicBool::new(false)),
        }
    };
    let legs = vec![leg(from, -amount), leg(to, amount - fee), leg(BANK, fee)];
    let abort = rng.u32(..20) == 0;
    (legs, abort)
}

/// 10,000 transfer sagas spawned at once, with seeded random failures
/// (before or after applying), panics, flaky compensations and aborts: each
/// ends fully applied or fully compensated, and every account holds exactly
/// what the applied transfers put there.
pub async fn ten_thousand_sagas_balance_the_books<R: Runtime>() {
    quiet_test_panics();
    let books: Arc<Vec<AtomicI64>> = Arc::new((0..=ACCOUNTS).map(|_| AtomicI64::new(0)).collect());
    let mut running = Vec::new();
    for index in 0..SAGAS {
        let (legs, abort) = transfer(index);
        let mut builder = SagaBuilder::new().compensation_retry(Retry::attempts(3));
        for leg in &legs {
            let (action, compensation) = leg_step::<R>(&books, leg);
            builder = builder.add_step(action, compensation);
        }
        let handle = R::spawn(builder.build());
        if abort {
            R::abort(&handle);
        }
        running.push((handle, legs));
    }

    let mut expected = vec![0_i64; ACCOUNTS + 1];
    let (mut applied, mut compensated, mut aborted, mut panicked) = (0, 0, 0, 0);
    for (handle, legs) in running {
        let result = within::<R, _>("a transfer", R::join(handle)).await.result();
        let flags: Vec<bool> = legs
            .iter()
            .map(|leg| leg.applied.load(Ordering::SeqCst))
            .collect();
        match result {
            Ok(()) => {
                assert_eq!(flags, [true; 3], "a successful saga left a leg unapplied");
                for leg in &legs {
                    expected[leg.account] += leg.delta;
                }
                applied += 1;
            }
            Err(error) => {
                assert!(error.is_fully_compensated(), "{error:?}");
                assert_eq!(
                    flags, [false; 3],
                    "a compensated saga left a leg applied: {error:?}"
                );
                compensated += 1;
                aborted += usize::from(error.aborted());
                panicked += usize::from(matches!(error.error(), Error::Panicked(_)));
            }
        }
    }
    let balances: Vec<i64> = books
        .iter()
        .map(|account| account.load(Ordering::SeqCst))
        .collect();
    assert_eq!(balances, expected);
    assert_eq!(balances.iter().sum::<i64>(), 0);
    assert_eq!(applied + compensated, SAGAS);
    // The seed exercises every path.
    assert!(applied > 0 && compensated > 0 && aborted > 0 && panicked > 0);
}
