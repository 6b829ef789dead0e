//! The pysagas README, ported: a counter `[10, 20]` that two steps add 30 to.
//!
//! Run with `cargo run -p saga-core --example quickstart`. The first saga
//! succeeds (`[40, 50]`); in the second, every action fails after changing the
//! counter, and the saga undoes all of it (`[10, 20]`), every time.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::{Arc, Mutex};

use saga_core::{Saga, SagaBuilder};

const AMOUNT: i32 = 30;

type Counter = Arc<Mutex<[i32; 2]>>;

/// The saga of the README: step `i` adds `AMOUNT` to `counter[i]` (and then
/// fails when `fail` is set); its compensation takes `AMOUNT` back.
fn counter_saga(counter: &Counter, fail: bool) -> Saga<String> {
    let step = |index: usize| {
        let (up, down) = (counter.clone(), counter.clone());
        let add = move || {
            let counter = up.clone();
            async move {
                counter.lock().unwrap()[index] += AMOUNT;
                println!("  add {AMOUNT} to counter[{index}]");
                if fail {
                    Err(format!("error occurred in step {index}"))
                } else {
                    Ok(())
                }
            }
        };
        let decrement = move || {
            let counter = down.clone();
            async move {
                counter.lock().unwrap()[index] -= AMOUNT;
                println!("  take {AMOUNT} back from counter[{index}]");
                Ok(())
            }
        };
        (add, decrement)
    };
    let (add0, decrement0) = step(0);
    let (add1, decrement1) = step(1);
    SagaBuilder::new()
        .add_step(add0, decrement0)
        .add_step(add1, decrement1)
        .build()
}

fn main() {
    for fail in [false, true] {
        let counter: Counter = Arc::new(Mutex::new([10, 20]));
        let mut saga = counter_saga(&counter, fail);
        println!("{} example:", if fail { "failure" } else { "simple" });
        match smol::block_on(saga.run()) {
            Ok(()) => println!("  saga succeeded"),
            Err(error) => println!("  saga failed: {error}"),
        }
        println!("  counter = {:?}\n", *counter.lock().unwrap());
    }
}
