//! Books a trip durably, and survives its own crash.
//!
//! ```sh
//! # Book a trip; the car rental fails, and the process dies
//! # (`std::process::abort`) while it cancels the hotel:
//! cargo run -p saga-sqlite --example trip -- book --crash-at "cancel hotel"
//! # The next process finds the unfinished saga and finishes compensating:
//! cargo run -p saga-sqlite --example trip
//! ```
//!
//! Every run first recovers what the store holds unfinished, then (with
//! `book`) starts a new trip. `--crash-at STEP` aborts the process when the
//! action or compensation named `STEP` runs (`book flight`, `book hotel`,
//! `rent car`, `cancel hotel`, `cancel flight`); `--db PATH` picks the file
//! (by default `saga-trip.db` in the temporary directory). Each step prints
//! its idempotency key (the saga id and the step): a real booking system
//! would be called with it, so that a step run again after a crash books or
//! cancels nothing twice.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std example"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use saga_core::journal::{DurableError, Registry, SagaContext};
use saga_core::{Saga, SagaBuilder};
use saga_sqlite::{Durable, Recovered, Store};

/// The step at which this process aborts, if any.
static CRASH_AT: OnceLock<Option<String>> = OnceLock::new();

/// A step's work: prints what it does, and aborts the process at the
/// chosen step.
async fn perform(what: &'static str, key: String) -> Result<(), String> {
    println!("  {what} (key {key})");
    if CRASH_AT.get().and_then(Option::as_deref) == Some(what) {
        println!("  -- the process dies here --");
        std::process::abort();
    }
    Ok(())
}

/// The trip saga of `traveller`: flight, hotel, car; no car is left. (A
/// registered factory takes its parameters by reference.)
#[allow(clippy::ptr_arg, reason = "the registry hands a `&P` of `P = String`")]
fn trip(traveller: &String, context: &SagaContext) -> Saga<String> {
    let step = |index: usize, what: &'static str| {
        let key = context.key(index);
        move || perform(what, key.clone())
    };
    let traveller = traveller.clone();
    SagaBuilder::new()
        .add_step(step(0, "book flight"), step(0, "cancel flight"))
        .add_step(step(1, "book hotel"), step(1, "cancel hotel"))
        .add_step(
            move || {
                let traveller = traveller.clone();
                async move {
                    println!("  rent car");
                    Err::<(), _>(format!("no cars left for {traveller}"))
                }
            },
            step(2, "return car"),
        )
        .build()
}

fn report(result: &Result<(), DurableError<String>>) -> String {
    match result {
        Ok(()) => String::from("committed"),
        Err(error) => error.to_string(),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut book, mut crash_at, mut db) = (false, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "book" => book = true,
            "--crash-at" => crash_at = args.next(),
            "--db" => db = args.next().map(PathBuf::from),
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: trip [book] [--crash-at STEP] [--db PATH]"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    CRASH_AT.get_or_init(|| crash_at);
    let db = db.unwrap_or_else(|| std::env::temp_dir().join("saga-trip.db"));

    let mut registry = Registry::new();
    registry.register("trip", 1, trip);
    let store = match Store::open(&db) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let durable = Durable::new(store, registry);

    println!("recovering {}", db.display());
    let recovered = match smol::block_on(durable.recover()) {
        Ok(recovered) => recovered,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    for (id, recovered) in &recovered {
        match recovered {
            Recovered::Ran(result) => println!("saga {id} resumed: {}", report(result)),
            Recovered::NotRun(why) => println!("saga {id} not resumed: {why}"),
            _ => println!("saga {id}: {recovered:?}"),
        }
    }
    if recovered.is_empty() {
        println!("nothing to recover");
    }

    if book {
        let (id, run) = match durable.start("trip", &String::from("alice")) {
            Ok(started) => started,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        };
        println!("saga {id} started");
        let result = smol::block_on(run);
        println!("saga {id}: {}", report(&result));
    }
    ExitCode::SUCCESS
}
