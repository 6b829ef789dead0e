//! saga-core's conformance scenarios, on a Cortex-M3 (QEMU's lm3s6965evb).
//!
//! Each scenario prints `ok <name>` or `FAIL <name>: <reason>` over
//! semihosting; the firmware then prints `N passed, M failed` and exits QEMU
//! with success only if every scenario passed. A panic exits with failure
//! (`panic-semihosting`, `exit` feature).
#![no_std]
#![no_main]

extern crate alloc;

mod exec;
mod heap;
mod scenarios;
mod support;

use alloc::string::String;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;

use heap::HEAP;

/// A scenario: `Ok` when every check held, else what failed.
type Scenario = fn() -> Result<(), String>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("pysagas_readme", scenarios::readme::run),
    ("long_saga_100_steps", scenarios::long::run),
    ("deep_saga_500_steps", scenarios::deep::run),
    ("typed_steps", scenarios::typed::run),
    ("flow", scenarios::flow::run),
    ("parallel_group", scenarios::group::run),
    ("abort", scenarios::abort::run),
    ("tick_timer", scenarios::timer::run),
    ("observer", scenarios::observer::run),
    ("custom_step_and_cancel", scenarios::custom::run),
    ("compensation_modes", scenarios::modes::run),
    ("durable_page_journal", scenarios::durable::run),
    ("flash_journal_power_cuts", scenarios::flash::run),
    ("heap", scenarios::heap::run),
];

#[entry]
fn main() -> ! {
    heap::init();
    heap::paint_stack();
    let start = HEAP.stats();
    hprintln!(
        "saga-core firmware: {} scenarios, heap {} bytes",
        SCENARIOS.len(),
        heap::HEAP_SIZE
    );

    let mut failed = 0;
    for (name, scenario) in SCENARIOS {
        match scenario() {
            Ok(()) => hprintln!("ok {}", name),
            Err(reason) => {
                failed += 1;
                hprintln!("FAIL {}: {}", name, reason);
            }
        }
    }

    // Everything the scenarios built is dropped: the heap is back where it
    // started, and no sleep still holds a timer.
    let end = HEAP.stats();
    let leak_check = if end.used != start.used || end.live_blocks() != start.live_blocks() {
        Err(alloc::format!(
            "heap used {} -> {} bytes, live blocks {} -> {}",
            start.used,
            end.used,
            start.live_blocks(),
            end.live_blocks()
        ))
    } else if exec::timers_in_use() != 0 {
        Err(alloc::format!(
            "{} timers still registered",
            exec::timers_in_use()
        ))
    } else {
        Ok(())
    };
    match leak_check {
        Ok(()) => hprintln!("ok heap_returns_to_start"),
        Err(reason) => {
            failed += 1;
            hprintln!("FAIL heap_returns_to_start: {}", reason);
        }
    }

    let total = SCENARIOS.len() + 1;
    hprintln!(
        "heap: peak {} of {} bytes, {} allocations in all; stack: peak {} bytes",
        HEAP.peak(),
        heap::HEAP_SIZE,
        end.allocations,
        heap::stack_peak()
    );
    hprintln!("{} passed, {} failed", total - failed, failed);
    debug::exit(if failed == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Not reached under QEMU; on a board without a debugger, stop here.
    loop {
        cortex_m::asm::wfi();
    }
}
