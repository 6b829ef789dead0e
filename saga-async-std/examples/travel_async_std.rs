//! A trip booked as a saga on async-std: a flight and a hotel are booked, the
//! car rental has no cars left, so the hotel and the flight are cancelled, in
//! that order. The car rental first hangs: its timeout cuts the call short,
//! and the retry gets the answer.
//!
//! Run with `cargo run -p saga-async-std --example travel_async_std`.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "an example reads best with std paths"
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use saga_async_std::saga_core::{Aborted, Panicked, Retry, StepPolicy, TimedOut};

#[derive(Debug)]
enum Error {
    NoCars,
    TimedOut,
    Aborted,
    Panicked,
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
    fn from(_: Panicked) -> Self {
        Error::Panicked
    }
}

/// A call that prints `what`, takes `millis`, and succeeds.
async fn says(what: &'static str, millis: u64) -> Result<(), Error> {
    println!("{what}");
    async_std::task::sleep(Duration::from_millis(millis)).await;
    Ok(())
}

fn main() {
    let car_calls = AtomicU32::new(0);
    let saga = saga_async_std::builder()
        .add_step(
            || says("flight: booked", 10),
            || says("flight: cancelled", 5),
        )
        .add_step(|| says("hotel: booked", 10), || says("hotel: cancelled", 5))
        .add_step_with(
            move || {
                let attempt = car_calls.fetch_add(1, Ordering::SeqCst) + 1;
                // The first call hangs past the timeout; the retry gets an answer.
                let millis = if attempt == 1 { 1_000 } else { 5 };
                async move {
                    println!("car: asking the rental service (attempt {attempt})");
                    async_std::task::sleep(Duration::from_millis(millis)).await;
                    println!("car: no cars left");
                    Err::<(), _>(Error::NoCars)
                }
            },
            || says("car: nothing to release", 0),
            StepPolicy::new()
                .timeout(Duration::from_millis(30))
                .retry(Retry::attempts(2).constant(Duration::from_millis(10))),
        )
        .build();

    let finished = async_std::task::block_on(saga_async_std::spawn(saga))
        .expect("async-std's executor outlives the trip");
    match finished.result {
        Ok(()) => println!("trip: booked"),
        Err(error) => println!(
            "trip: not booked: step {} failed with {:?} after {} attempts (timed out: {}); fully undone: {}",
            error.failed_step(),
            error.error(),
            error.attempts(),
            error.timed_out(),
            error.is_fully_compensated(),
        ),
    }
}
