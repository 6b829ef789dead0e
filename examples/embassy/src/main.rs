//! Sagas on a microcontroller: `saga-core` driven by `embassy-executor`,
//! with an `embassy-time` timer as the saga's [`Sleeper`](saga_core::Sleeper).
//!
//! Built for a Cortex-M3 (`thumbv7m-none-eabi`) and run on QEMU's
//! `lm3s6965evb` (`cargo run --release`). Two sagas provision a sensor:
//! calibrate it, register it with a gateway, open its valve.
//!
//! 1. The gateway is busy for the first two registrations; the step's retry
//!    policy waits 10 ms, then 20 ms (slept by embassy-time), and the third
//!    attempt succeeds, so the saga commits.
//! 2. The valve never acknowledges; the saga's action timeout (200 ms) cuts
//!    that step short, and the saga compensates in reverse: close the valve
//!    (it may have partly opened), deregister, discard the calibration.
//!
//! Every step prints a line with the embassy-time clock. The program exits
//! QEMU through semihosting, with success only if both outcomes are the
//! expected ones.
#![no_std]
#![no_main]

mod time_driver;

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::RefCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use cortex_m_semihosting::{debug, hprintln};
use embassy_executor::Spawner;
use embassy_time::{Instant, Timer};
use embedded_alloc::LlffHeap;
use saga_core::{FnStep, Retry, SagaBuilder, StepPolicy, TimedOut};

#[global_allocator]
static HEAP: PeakHeap = PeakHeap {
    heap: LlffHeap::empty(),
    peak: AtomicUsize::new(0),
};

/// Heap for saga-core: the step list, the boxed steps, timers and error
/// reports. The two sagas here need well under 1 KiB at a time.
const HEAP_SIZE: usize = 8 * 1024;

/// embedded-alloc's linked-list heap, wrapped to record the most bytes in
/// use at once, which the program prints at the end.
struct PeakHeap {
    heap: LlffHeap,
    peak: AtomicUsize,
}

// SAFETY: forwards to `LlffHeap`, a `GlobalAlloc`; the peak is bookkeeping.
unsafe impl GlobalAlloc for PeakHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract.
        let block = unsafe { self.heap.alloc(layout) };
        self.peak.fetch_max(self.heap.used(), Ordering::Relaxed);
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { self.heap.dealloc(block, layout) }
    }
}

/// The steps' error type. `From<TimedOut>` is what a saga with a sleeper
/// needs, to fail a step whose attempt ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Error {
    GatewayBusy,
    TimedOut,
}

impl From<TimedOut> for Error {
    fn from(_: TimedOut) -> Self {
        Error::TimedOut
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::GatewayBusy => "gateway busy",
            Error::TimedOut => "timed out",
        })
    }
}

/// The saga's sleeper: any `Fn(core::time::Duration) -> impl Future` is one,
/// so embassy-time's `Timer` works as it is, once the duration is converted
/// (rounded up to whole ticks; a duration too long for the tick counter
/// becomes "practically never", about 290 million years at 1 kHz).
fn embassy_sleep(duration: core::time::Duration) -> Timer {
    let ticks = embassy_time::Duration::try_from(duration)
        .unwrap_or(embassy_time::Duration::from_ticks(u64::MAX / 2));
    Timer::after(ticks)
}

/// Milliseconds on the embassy-time clock.
fn now_ms() -> u64 {
    Instant::now().as_millis()
}

/// What the steps did, in order, to check the run against.
type Log = Rc<RefCell<Vec<&'static str>>>;

/// What a step action or compensation does here: print `what`, record it
/// in `log`, take `work` milliseconds of simulated time, succeed.
async fn note(log: Log, what: &'static str, work: u64) -> Result<(), Error> {
    hprintln!("[{:>4} ms]   {}", now_ms(), what);
    log.borrow_mut().push(what);
    Timer::after_millis(work).await;
    Ok(())
}

/// A step closure (`FnMut() -> impl Future`) that runs [`note`] each time
/// it is called. A macro, because a function cannot return a closure whose
/// future is an `impl Future`.
macro_rules! record {
    ($log:expr, $what:expr, $work:expr) => {{
        let log = $log.clone();
        move || note(log.clone(), $what, $work)
    }};
}

/// Saga 1: the gateway is busy twice, the retry backoff waits it out.
/// Returns whether the outcome is the expected one.
async fn provision_with_retry() -> bool {
    hprintln!("saga 1: provision sensor A (gateway busy twice)");
    let log: Log = Rc::default();
    // When each registration attempt started, to check the backoff.
    let attempts: Rc<RefCell<Vec<u64>>> = Rc::default();

    let register = {
        let (log, attempts) = (log.clone(), attempts.clone());
        move || {
            let (log, attempts) = (log.clone(), attempts.clone());
            async move {
                let attempt = {
                    let mut attempts = attempts.borrow_mut();
                    attempts.push(now_ms());
                    attempts.len()
                };
                Timer::after_millis(2).await;
                if attempt <= 2 {
                    hprintln!(
                        "[{:>4} ms]   register with gateway: attempt {}: busy",
                        now_ms(),
                        attempt
                    );
                    Err(Error::GatewayBusy)
                } else {
                    hprintln!(
                        "[{:>4} ms]   register with gateway: attempt {}: registered",
                        now_ms(),
                        attempt
                    );
                    log.borrow_mut().push("register with gateway");
                    Ok(())
                }
            }
        }
    };

    let mut saga = SagaBuilder::new_local()
        .sleeper(embassy_sleep)
        .step(
            FnStep::new(
                record!(log, "calibrate", 5),
                record!(log, "discard calibration", 1),
            )
            .named("calibrate"),
        )
        .step_with(
            FnStep::new(register, record!(log, "deregister", 1)).named("register"),
            // Up to 4 attempts; wait 10 ms before the first retry, then
            // twice as long each time, at most 100 ms.
            StepPolicy::new().retry(Retry::attempts(4).exponential(ms(10), ms(100))),
        )
        .step(
            FnStep::new(
                record!(log, "open valve", 5),
                record!(log, "close valve", 1),
            )
            .named("open valve"),
        )
        .build();

    let outcome = saga.run().await;
    match &outcome {
        Ok(()) => hprintln!("[{:>4} ms] saga 1 committed", now_ms()),
        Err(error) => hprintln!("[{:>4} ms] saga 1 failed: {}", now_ms(), error),
    }

    let attempts = attempts.borrow();
    // The backoff is measured from one attempt's start to the next's: the
    // attempt's own 2 ms of work, then the sleep.
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    hprintln!("         registration attempts started {:?} ms apart", gaps);
    let expected = ["calibrate", "register with gateway", "open valve"];
    outcome.is_ok()
        && *log.borrow() == expected
        && attempts.len() == 3
        && gaps[0] >= 2 + 10
        && gaps[1] >= 2 + 20
}

/// Saga 2: the valve never answers; the timeout cuts the step short and the
/// saga compensates in reverse. Returns whether the outcome is the expected
/// one.
async fn provision_with_timeout() -> bool {
    hprintln!("saga 2: provision sensor B (valve never acknowledges)");
    let log: Log = Rc::default();

    let open_valve = {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move {
                hprintln!(
                    "[{:>4} ms]   open valve: waiting for acknowledgement",
                    now_ms()
                );
                log.borrow_mut().push("open valve");
                // The acknowledgement that never comes.
                Timer::after_secs(10).await;
                Ok(())
            }
        }
    };

    let started = now_ms();
    let mut saga = SagaBuilder::new_local()
        .sleeper(embassy_sleep)
        // Every action attempt of this saga gets 200 ms.
        .action_timeout(ms(200))
        .step(
            FnStep::new(
                record!(log, "calibrate", 5),
                record!(log, "discard calibration", 1),
            )
            .named("calibrate"),
        )
        .step(
            FnStep::new(
                record!(log, "register with gateway", 5),
                record!(log, "deregister", 1),
            )
            .named("register"),
        )
        .step(FnStep::new(open_valve, record!(log, "close valve", 1)).named("open valve"))
        .build();

    let outcome = saga.run().await;
    let elapsed = now_ms() - started;
    let Err(error) = outcome else {
        hprintln!(
            "[{:>4} ms] saga 2 committed, but it should have timed out",
            now_ms()
        );
        return false;
    };
    hprintln!("[{:>4} ms] saga 2 failed: {}", now_ms(), error);
    hprintln!(
        "         timed out: {}, failed step: {}, compensated: {} of 3, after {} ms",
        error.timed_out(),
        error.failed_step(),
        error.compensated_count(),
        elapsed
    );
    let expected = [
        "calibrate",
        "register with gateway",
        "open valve",
        // Reverse order; the valve step first, as its action may have
        // partly happened.
        "close valve",
        "deregister",
        "discard calibration",
    ];
    error.timed_out()
        && *error.error() == Error::TimedOut
        && error.failed_step() == 2
        && error.is_fully_compensated()
        && error.compensated_count() == 3
        && *log.borrow() == expected
        && (200..1_000).contains(&elapsed)
}

/// A `core::time::Duration` of `millis` milliseconds, the unit saga-core's
/// policies take.
const fn ms(millis: u64) -> core::time::Duration {
    core::time::Duration::from_millis(millis)
}

/// How many bytes of the stack were ever used: cortex-m-rt (its
/// `paint-stack` feature) fills the stack with a pattern at reset; the
/// deepest word no longer holding it is the high-water mark.
fn stack_used() -> usize {
    unsafe extern "C" {
        static _stack_end: u32; // the lowest address of the stack
        static _stack_start: u32; // the initial stack pointer
    }
    let (low, high) = (&raw const _stack_end, &raw const _stack_start);
    let mut word = low;
    // SAFETY: every word in `low..high` is RAM reserved for the stack;
    // reading it (volatile, since the compiler cannot see who wrote it)
    // changes nothing.
    while word < high && unsafe { word.read_volatile() } == cortex_m_rt::STACK_PAINT_VALUE {
        word = word.wrapping_add(1);
    }
    high as usize - word as usize
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    {
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: runs once, before anything allocates; nothing else uses
        // `HEAP_MEM`.
        unsafe { HEAP.heap.init(&raw mut HEAP_MEM as usize, HEAP_SIZE) }
    }
    let peripherals = cortex_m::Peripherals::take().expect("peripherals taken once");
    time_driver::init(peripherals.SYST);

    let retried = provision_with_retry().await;
    hprintln!("saga 1 outcome as expected: {}", retried);
    let timed_out = provision_with_timeout().await;
    hprintln!("saga 2 outcome as expected: {}", timed_out);
    hprintln!(
        "heap: at most {} bytes in use at once, {} at the end",
        HEAP.peak.load(Ordering::Relaxed),
        HEAP.heap.used()
    );
    hprintln!("stack: at most {} bytes used", stack_used());

    if retried && timed_out {
        hprintln!("all outcomes as expected");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("UNEXPECTED OUTCOME");
        debug::exit(debug::EXIT_FAILURE);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
