//! Trips booked as a saga on tokio, built once and run per request: the
//! flight, then the hotel for the flight's arrival date, then one payment
//! for both booking ids; a run returns the itinerary. The flight goes
//! through a blocking SDK (tokio's blocking pool); the hotel's API is flaky
//! (retried with backoff); the payment service first hangs (timed out,
//! retried). The second trip's card is declined: the hotel and the flight
//! are cancelled, in that order, by their booking ids. Every transition is
//! printed.
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

use saga_tokio::saga_core::{Aborted, Panicked, Recovery, Retry, StepPolicy, TimedOut};

/// What can go wrong on the way.
#[derive(Debug)]
enum Error {
    HotelBusy,
    Declined,
    TimedOut,
    Aborted,
    Panicked(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::HotelBusy => f.write_str("the hotel's booking service is busy"),
            Error::Declined => f.write_str("card declined"),
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

/// One trip request: the run's input.
#[derive(Debug, Clone)]
struct Trip {
    traveller: &'static str,
    to: &'static str,
    nights: u32,
    card: &'static str,
}

/// What the airline's SDK returns.
#[derive(Debug, Clone)]
struct Flight {
    booking: String,
    arrives_day: u32,
}

/// What a successful run returns.
#[derive(Debug)]
struct Itinerary {
    traveller: &'static str,
    flight: String,
    hotel: String,
    payment: String,
}

impl fmt::Display for Itinerary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Itinerary {
            traveller,
            flight,
            hotel,
            payment,
        } = self;
        write!(
            f,
            "{traveller}: flight {flight}, hotel {hotel}, paid by {payment}"
        )
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let log = Log(Instant::now());
    let hotel_calls = Arc::new(AtomicU32::new(0));
    let payment_calls = Arc::new(AtomicU32::new(0));

    // Built once; each run takes a `Trip`. Each step reads the trip and the
    // values of the steps before it, nested: `((trip, flight), hotel)`.
    let mut book_trip = saga_tokio::builder()
        .input::<Trip>()
        .then(
            move |trip: &Trip| {
                let to = trip.to;
                async move {
                    // The airline's SDK is synchronous: run it on tokio's blocking pool.
                    let booked = tokio::task::spawn_blocking(move || {
                        log.say(format_args!(
                            "flight: booking a seat to {to} (blocking SDK)"
                        ));
                        std::thread::sleep(Duration::from_millis(20));
                        Flight {
                            booking: format!("AF-{}", to.len() * 111),
                            arrives_day: 12,
                        }
                    });
                    let flight = booked
                        .await
                        .map_err(|error| Error::Panicked(error.to_string()))?;
                    log.say(format_args!("flight: booked {}", flight.booking));
                    Ok(flight)
                }
            },
            // The compensation reads the trip and the flight it undoes.
            move |(_, flight): (&Trip, &Flight)| {
                let booking = flight.booking.clone();
                async move {
                    log.say(format_args!("flight: cancelling {booking}"));
                    call(10).await;
                    log.say(format_args!("flight: cancelled {booking}"));
                    Ok(())
                }
            },
        )
        .named("flight")
        .then(
            // The hotel is booked for the flight's arrival day.
            move |(trip, flight)| {
                let attempt = hotel_calls.fetch_add(1, Ordering::SeqCst) + 1;
                let (from, to) = (flight.arrives_day, flight.arrives_day + trip.nights);
                let city = trip.to;
                async move {
                    log.say(format_args!(
                        "hotel: booking {city}, days {from} to {to} (call {attempt})"
                    ));
                    call(10).await;
                    if attempt == 1 {
                        log.say(format_args!("hotel: busy, will retry"));
                        return Err(Error::HotelBusy);
                    }
                    let booking = format!("HT-{from}-{to}");
                    log.say(format_args!("hotel: booked {booking}"));
                    Ok(booking)
                }
            },
            move |(_, hotel): ((&Trip, &Flight), &String)| {
                let booking = hotel.clone();
                async move {
                    log.say(format_args!("hotel: cancelling {booking}"));
                    call(10).await;
                    log.say(format_args!("hotel: cancelled {booking}"));
                    Ok(())
                }
            },
        )
        .named("hotel")
        .policy(StepPolicy::new().retry(Retry::attempts(3).constant(Duration::from_millis(25))))
        .then(
            // One payment for both booking ids.
            move |((trip, flight), hotel)| {
                let attempt = payment_calls.fetch_add(1, Ordering::SeqCst) + 1;
                let what = format!("{} + {}", flight.booking, hotel);
                let card = trip.card;
                async move {
                    log.say(format_args!(
                        "payment: charging {card} for {what} (call {attempt})"
                    ));
                    if attempt == 1 {
                        // The payment service does not answer: the step's timeout cuts this short.
                        let guard =
                            CutShort(Some((log, "payment: no answer in 50 ms, call 1 timed out")));
                        call(10_000).await;
                        guard.finished();
                    }
                    call(10).await;
                    if card == "expired card" {
                        log.say(format_args!("payment: declined"));
                        return Err(Error::Declined);
                    }
                    let payment = format!("PAY-{attempt}");
                    log.say(format_args!("payment: charged ({payment})"));
                    Ok(payment)
                }
            },
            move |(_, payment): (((&Trip, &Flight), &String), &String)| {
                let payment = payment.clone();
                async move {
                    log.say(format_args!("payment: refunding {payment}"));
                    Ok(())
                }
            },
        )
        .named("payment")
        .policy(
            StepPolicy::new()
                .timeout(Duration::from_millis(50))
                .retry(Retry::attempts(2).constant(Duration::from_millis(25))),
        )
        // A declined card is final: compensate at once rather than retry.
        .classify(|error: &Error| match error {
            Error::Declined => Recovery::Compensate,
            _ => Recovery::Retry,
        })
        .build_with(|(((trip, flight), hotel), payment)| Itinerary {
            traveller: trip.traveller,
            flight: flight.booking,
            hotel,
            payment,
        });

    let trips = [
        Trip {
            traveller: "Ada",
            to: "Lisbon",
            nights: 3,
            card: "visa 4242",
        },
        Trip {
            traveller: "Alan",
            to: "Oslo",
            nights: 2,
            card: "expired card",
        },
    ];
    for trip in trips {
        log.say(format_args!(
            "trip: {} to {} for {} nights",
            trip.traveller, trip.to, trip.nights
        ));
        // `catch_panics`: a panicking step fails, and what was applied is undone.
        match book_trip.run(trip).catch_panics().await {
            Ok(itinerary) => log.say(format_args!("trip: booked: {itinerary}")),
            Err(error) => {
                let report = error.report();
                log.say(format_args!("trip: not booked: {report}"));
                log.say(format_args!(
                    "trip: failed step {} ({}) after {} attempts; {} compensations ran; fully undone: {}",
                    report.failed_step(),
                    report.failed_step_name().unwrap_or("unnamed"),
                    report.attempts(),
                    report.compensated_count(),
                    report.is_fully_compensated(),
                ));
                // The values the run produced, undone or not: the flight and the hotel.
                let (((trip, flight), hotel), payment) = error.values();
                log.say(format_args!(
                    "trip: {} had flight {:?}, hotel {:?}, payment {:?}",
                    trip.traveller,
                    flight.as_ref().map(|flight| &flight.booking),
                    hotel,
                    payment,
                ));
            }
        }
    }
}
