//! The pysagas README's two examples (see the root README and
//! `tests/tests/pysagas_readme.rs`): a counter `[10, 20]` that two steps add
//! 30 to. On success it ends `[40, 50]`; when the actions fail after changing
//! it, the compensations take it back, last step first, and it ends
//! `[10, 20]`, every time.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use saga_core::{LocalSaga, Saga, SagaBuilder};

use crate::exec::Yield;
use crate::support::{Error, Shared, check, check_eq, drive};

const AMOUNT: i32 = 30;

type Counter = Shared<[i32; 2]>;

/// Which compensation ran, in order, next to the counter.
type Undone = Shared<Vec<usize>>;

/// `add(index)` adds 30 to `counter[index]` then fails when `fail[index]`;
/// `decrement(index)` takes it back. Both suspend `yields` times around the
/// change, so that an engine that interleaved steps would show it.
fn readme_saga(counter: &Counter, undone: &Undone, fail: [bool; 2], yields: u32) -> Saga<Error> {
    let add = |index: usize| {
        let counter = counter.clone();
        move || {
            let counter = counter.clone();
            async move {
                Yield(yields).await;
                counter.with(|counter| counter[index] += AMOUNT);
                Yield(yields).await;
                if fail[index] {
                    Err(Error::Step("error occurred"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let decrement = |index: usize| {
        let (counter, undone) = (counter.clone(), undone.clone());
        move || {
            let (counter, undone) = (counter.clone(), undone.clone());
            async move {
                Yield(yields).await;
                counter.with(|counter| counter[index] -= AMOUNT);
                undone.with(|undone| undone.push(index));
                Ok(())
            }
        }
    };
    SagaBuilder::new()
        .add_step(add(0), decrement(0))
        .add_step(add(1), decrement(1))
        .build()
}

pub fn run() -> Result<(), String> {
    // The simple example: both steps succeed.
    let (counter, undone) = (Shared::new([10, 20]), Shared::new(Vec::new()));
    let mut saga = readme_saga(&counter, &undone, [false, false], 1);
    let result = drive("simple example", saga.run())?;
    check!(result.is_ok(), "simple example failed: {:?}", result);
    check_eq!(counter.get(), [40, 50], "simple example's counter");
    check!(undone.get().is_empty(), "simple example compensated");

    // The failure example: every `add` fails after changing the counter, so
    // step 0 fails, step 1 never starts, and step 0 is compensated (its
    // action may have partly happened, and here it did).
    for round in 0..30u32 {
        let (counter, undone) = (Shared::new([10, 20]), Shared::new(Vec::new()));
        let mut saga = readme_saga(&counter, &undone, [true, true], round % 3);
        let error = match drive("failure example", saga.run())? {
            Ok(()) => return Err("the failure example succeeded".into()),
            Err(error) => error,
        };
        check_eq!(
            counter.get(),
            [10, 20],
            alloc::format!("round {round}: counter")
        );
        check_eq!(error.failed_step(), 0, "failed step");
        check_eq!(*error.error(), Error::Step("error occurred"), "error");
        check!(
            error.is_fully_compensated(),
            "not fully compensated: {}",
            error
        );
        check_eq!(error.compensated_count(), 1, "compensated steps");
        check_eq!(undone.get(), [0], "compensations");
    }

    // The root README's variant: step 1 fails after adding; both are undone,
    // step 1 first.
    let (counter, undone) = (Shared::new([10, 20]), Shared::new(Vec::new()));
    let mut saga = readme_saga(&counter, &undone, [false, true], 2);
    let error = drive("README variant", saga.run())?
        .err()
        .ok_or("README variant succeeded")?;
    check_eq!(error.failed_step(), 1, "failed step");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(counter.get(), [10, 20], "counter");
    check_eq!(undone.get(), [1, 0], "compensation order");
    check_eq!(
        alloc::format!("{error}"),
        "step 1 failed: error occurred; fully compensated (2 steps)",
        "Display"
    );

    // A built saga keeps no state between runs.
    let (counter, undone) = (Shared::new([10, 20]), Shared::new(Vec::new()));
    let mut failing = readme_saga(&counter, &undone, [true, true], 1);
    let mut succeeding = readme_saga(&counter, &undone, [false, false], 1);
    for _ in 0..5 {
        check!(
            drive("rerun", failing.run())?.is_err(),
            "a failing rerun succeeded"
        );
        check_eq!(counter.get(), [10, 20], "counter after a failing rerun");
    }
    for round in 1..=3 {
        check!(
            drive("rerun", succeeding.run())?.is_ok(),
            "a succeeding rerun failed"
        );
        check_eq!(
            counter.get(),
            [10 + AMOUNT * round, 20 + AMOUNT * round],
            "counter after a succeeding rerun"
        );
    }

    // The same failure example as a `LocalSaga`: `Rc<RefCell<..>>` steps,
    // which are not `Send`.
    let counter = Rc::new(RefCell::new([10, 20]));
    let add = |index: usize| {
        let counter = counter.clone();
        move || {
            let counter = counter.clone();
            async move {
                counter.borrow_mut()[index] += AMOUNT;
                Yield(1).await;
                Err::<(), _>(Error::Step("error occurred"))
            }
        }
    };
    let decrement = |index: usize| {
        let counter = counter.clone();
        move || {
            let counter = counter.clone();
            async move {
                counter.borrow_mut()[index] -= AMOUNT;
                Ok(())
            }
        }
    };
    let mut local: LocalSaga<Error> = SagaBuilder::new_local()
        .add_step(add(0), decrement(0))
        .add_step(add(1), decrement(1))
        .build();
    let error = drive("local saga", local.run())?
        .err()
        .ok_or("the local saga succeeded")?;
    check!(error.is_fully_compensated(), "local saga: {}", error);
    check_eq!(*counter.borrow(), [10, 20], "local saga's counter");
    Ok(())
}
