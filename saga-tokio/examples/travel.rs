//! A trip booked as a saga on tokio: a flight, a hotel, a car. The hotel's
//! API is flaky (retried with backoff), the car rental first hangs (timed
//! out, retried) and then has no cars left, so the hotel and the flight are
//! cancelled, in that order. The flight goes through a blocking SDK, run on
//! tokio's blocking pool. Every transition is printed.
//!
//! Run with `cargo run -p saga-tokio --example travel`.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "an example reads best with std paths"
)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use saga_tokio::saga_core::{Aborted, FnStep, Panicked, Retry, StepPolicy, TimedOut};

/// What can go wrong on the way.
#[derive(Debug)]
enum Error {
    HotelBusy,
    NoCars,
    TimedOut,
    Aborted,
    Panicked(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::HotelBusy => f.write_str("the hotel's booking service is busy"),
            Error::NoCars => f.write_str("no cars left"),
            Error::TimedOut => f.write_str("timed out"),
            Error::Aborted => f.write_str("aborted"),
            Error::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
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

impl From<Panicked> for Error {
    fn from(panic: Panicked) -> Self {
        Error::Panicked(panic.message().to_owned())
    }
}

/// Prints one transition, with the time since the trip started.
#[derive(Clone, Copy)]
struct Log(Instant);

impl Log {
    fn say(self, what: fmt::Arguments<'_>) {
        println!("[{:>4} ms] {what}", self.0.elapsed().as_millis());
    }
}

/// Prints `what` if dropped before [`finished`](CutShort::finished): an
/// attempt cut short by its timeout is dropped, not polled to its end.
struct CutShort(Option<(Log, &'static str)>);

impl CutShort {
    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for CutShort {
    fn drop(&mut self) {
        if let Some((log, what)) = self.0 {
            log.say(format_args!("{what}"));
        }
    }
}

/// A remote call that takes `millis`.
async fn call(millis: u64) {
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let log = Log(Instant::now());
    let hotel_calls = Arc::new(AtomicU32::new(0));
    let car_calls = Arc::new(AtomicU32::new(0));

    // The airline's SDK is synchronous: `blocking` runs it on tokio's blocking pool.
    let book_flight = saga_tokio::blocking(move || {
        log.say(format_args!("flight: booking AF123 (blocking SDK)"));
        std::thread::sleep(Duration::from_millis(20));
        log.say(format_args!("flight: booked AF123"));
        Ok(())
    });
    let cancel_flight = saga_tokio::blocking(move || {
        log.say(format_args!("flight: cancelling AF123 (blocking SDK)"));
        std::thread::sleep(Duration::from_millis(10));
        log.say(format_args!("flight: cancelled AF123"));
        Ok(())
    });

    let book_hotel = move || {
        let attempt = hotel_calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            log.say(format_args!("hotel: booking 2 nights (attempt {attempt})"));
            call(10).await;
            if attempt == 1 {
                log.say(format_args!("hotel: busy, will retry"));
                return Err(Error::HotelBusy);
            }
            log.say(format_args!("hotel: booked"));
            Ok(())
        }
    };
    let cancel_hotel = move || async move {
        log.say(format_args!("hotel: cancelling"));
        call(10).await;
        log.say(format_args!("hotel: cancelled"));
        Ok(())
    };

    let book_car = move || {
        let attempt = car_calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            log.say(format_args!("car: booking a compact (attempt {attempt})"));
            if attempt == 1 {
                // The rental service does not answer: the step's timeout cuts this short.
                let guard = CutShort(Some((log, "car: no answer in 50 ms, attempt 1 timed out")));
                call(10_000).await;
                guard.finished();
            }
            call(10).await;
            log.say(format_args!("car: no cars left"));
            Err::<(), _>(Error::NoCars)
        }
    };
    let release_car = move || async move {
        // Also run for the failed booking, which may have half happened.
        log.say(format_args!("car: releasing any hold (nothing held)"));
        Ok(())
    };

    let saga = saga_tokio::builder()
        .step(FnStep::new(book_flight, cancel_flight).named("flight"))
        .step_with(
            FnStep::new(book_hotel, cancel_hotel).named("hotel"),
            StepPolicy::new().retry(Retry::attempts(3).constant(Duration::from_millis(25))),
        )
        .step_with(
            FnStep::new(book_car, release_car).named("car"),
            StepPolicy::new()
                .timeout(Duration::from_millis(50))
                .retry(Retry::attempts(2).constant(Duration::from_millis(25))),
        )
        .build();

    log.say(format_args!("trip: booking flight, hotel and car"));
    let handle = saga_tokio::spawn(saga);
    let finished = handle.await.expect("the runtime outlives the trip");
    match finished.result {
        Ok(()) => log.say(format_args!("trip: booked")),
        Err(error) => {
            log.say(format_args!("trip: not booked: {error}"));
            log.say(format_args!(
                "trip: failed step {} ({}) after {} attempts; {} compensations ran; fully undone: {}",
                error.failed_step(),
                error.failed_step_name().unwrap_or("unnamed"),
                error.attempts(),
                error.compensated_count(),
                error.is_fully_compensated(),
            ));
        }
    }
}
