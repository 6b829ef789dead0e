//! A 500-step saga of the smallest steps (closures capturing only their
//! index) on the 32 KiB heap: it runs, fails at the last step, and
//! compensates in exact reverse order, without recursing (the stack peak
//! stays what the shorter sagas need).

use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering};

use saga_core::{Saga, SagaBuilder};

use crate::heap::HEAP;
use crate::support::{Error, check, check_eq, drive};

const STEPS: u32 = 500;

/// The next action expected to run, and the next compensation.
static NEXT_ACTION: AtomicU32 = AtomicU32::new(0);
static NEXT_UNDO: AtomicU32 = AtomicU32::new(0);
/// Steps that ran out of order: the first one, plus one.
static OUT_OF_ORDER: AtomicU32 = AtomicU32::new(0);

fn note(expected: &AtomicU32, index: u32, next: u32) {
    if expected.load(Ordering::Relaxed) != index && OUT_OF_ORDER.load(Ordering::Relaxed) == 0 {
        OUT_OF_ORDER.store(index + 1, Ordering::Relaxed);
    }
    expected.store(next, Ordering::Relaxed);
}

pub fn run() -> Result<(), String> {
    let before = HEAP.stats();
    let mut saga: Saga<Error> = (0..STEPS)
        .fold(SagaBuilder::new(), |builder, index| {
            builder.add_step(
                move || {
                    note(&NEXT_ACTION, index, index + 1);
                    core::future::ready(if index == STEPS - 1 {
                        Err(Error::Step("the last step failed"))
                    } else {
                        Ok(())
                    })
                },
                move || {
                    note(&NEXT_UNDO, index, index.wrapping_sub(1));
                    core::future::ready(Ok(()))
                },
            )
        })
        .build();
    let built = HEAP.stats();
    NEXT_ACTION.store(0, Ordering::Relaxed);
    NEXT_UNDO.store(STEPS - 1, Ordering::Relaxed);
    OUT_OF_ORDER.store(0, Ordering::Relaxed);
    let error = drive("deep saga", saga.run())?
        .err()
        .ok_or("the deep saga succeeded")?;
    check_eq!(
        OUT_OF_ORDER.load(Ordering::Relaxed),
        0,
        "first step out of order (+1)"
    );
    check_eq!(NEXT_ACTION.load(Ordering::Relaxed), STEPS, "actions run");
    check_eq!(
        NEXT_UNDO.load(Ordering::Relaxed),
        u32::MAX,
        "compensations run"
    );
    check_eq!(error.failed_step(), STEPS as usize - 1, "failed step");
    check_eq!(error.compensated_count(), STEPS as usize, "compensated");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    drop((saga, error));
    let after = HEAP.stats();
    check_eq!(after.used, before.used, "heap used after dropping the saga");
    cortex_m_semihosting::hprintln!(
        "  deep: {} steps built in {} bytes of heap ({} blocks)",
        STEPS,
        built.used - before.used,
        built.live_blocks() - before.live_blocks()
    );
    Ok(())
}
