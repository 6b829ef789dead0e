//! `saga-flash` on the device: a saga of three steps (the last one fails,
//! so it compensates) journaled to a simulated NOR flash in RAM, the power
//! cut at every write and every erase of its run in turn (the operation
//! torn half way), then a reboot: the flash is mounted again and every
//! unfinished saga resumed. Each case must end compensated, with every
//! applied step undone once and nothing undone that never started.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use saga_core::journal::{DurableError, Outcome, SagaId, SagaState, Start, replay};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_flash::FlashStore;
use saga_flash::sim::{SimFlash, Tear};

use crate::support::{Shared, check, check_eq, drive};

type Flash = SimFlash<4, 512>;

/// Which steps are applied now, and how often each compensation ran.
#[derive(Clone, Default, Debug)]
struct Books {
    applied: [bool; 3],
    started: [bool; 3],
    undone: [u32; 3],
}

fn build(books: &Shared<Books>) -> Saga<String> {
    let mut builder = SagaBuilder::new().compensation_retry(Retry::attempts(3));
    for step in 0..3 {
        let (act, undo) = (books.clone(), books.clone());
        builder = builder.add_step(
            move || {
                let books = act.clone();
                async move {
                    books.with(|b| b.started[step] = true);
                    if step == 2 {
                        return Err(String::from("no room left"));
                    }
                    books.with(|b| b.applied[step] = true);
                    Ok(())
                }
            },
            move || {
                let books = undo.clone();
                async move {
                    books.with(|b| {
                        b.undone[step] += 1;
                        b.applied[step] = false;
                    });
                    Ok(())
                }
            },
        );
    }
    builder.build()
}

pub fn run() -> Result<(), String> {
    let id = SagaId(7);
    // The uncrashed run: how many writes and erases it makes.
    // A formatted flash, as the device has it after its first boot; its
    // mount writes nothing, so every operation counted is the saga's.
    let formatted = FlashStore::mount(Flash::new(4))
        .map_err(|e| format!("format: {e}"))?
        .into_flash()
        .map_err(|_| String::from("store still shared"))?
        .reboot();
    let books = Shared::new(Books::default());
    let store = FlashStore::mount(formatted.reboot()).map_err(|e| format!("mount: {e}"))?;
    let mut saga = build(&books);
    let mut journal = store.journal(id).map_err(|e| format!("journal: {e}"))?;
    let run = saga
        .run_journaled(&mut journal, Start::new("valves", 1, Vec::new()))
        .map_err(|e| format!("refused: {e}"))?;
    check!(
        drive("clean run", run)?.is_err(),
        "the clean run was to fail"
    );
    drop(journal);
    let flash = store
        .into_flash()
        .map_err(|_| String::from("store still shared"))?;
    let ops = flash.ops();
    check!(ops >= 4, "only {ops} flash operations");
    let mounted = FlashStore::mount(formatted.reboot()).map_err(|e| format!("mount: {e}"))?;
    let flash = mounted
        .into_flash()
        .map_err(|_| String::from("store still shared"))?;
    check_eq!(flash.ops(), 0, "operations of a mount");

    let mut cases = 0;
    for cut in 0..ops {
        let books = Shared::new(Books::default());
        let mut flash = formatted.reboot();
        flash.cut_power_at(cut, Tear::Partial);
        let store = FlashStore::mount(flash).map_err(|e| format!("cut {cut}: mount: {e}"))?;
        {
            let mut saga = build(&books);
            let mut journal = store.journal(id).map_err(|e| format!("journal: {e}"))?;
            let run = saga
                .run_journaled(&mut journal, Start::new("valves", 1, Vec::new()))
                .map_err(|e| format!("refused: {e}"))?;
            match drive("cut run", run)? {
                Err(DurableError::Journal(_)) => {}
                other => return Err(format!("cut {cut}: the run went on: {:?}", other.err())),
            }
        }
        // The reboot: the same bytes, powered again.
        let flash = store
            .into_flash()
            .map_err(|_| String::from("store still shared"))?;
        let store =
            FlashStore::mount(flash.reboot()).map_err(|e| format!("cut {cut}: remount: {e}"))?;
        for unfinished in store.unfinished().map_err(|e| format!("unfinished: {e}"))? {
            let records = store
                .records(unfinished)
                .map_err(|e| format!("records: {e}"))?;
            let history = replay(&records).map_err(|e| format!("cut {cut}: replay: {e}"))?;
            let mut saga = build(&books);
            let mut journal = store
                .journal(unfinished)
                .map_err(|e| format!("journal: {e}"))?;
            let resumed = saga
                .resume(&mut journal, &history)
                .map_err(|e| format!("cut {cut}: resume refused: {e}"))?;
            let _ = drive("resumed run", resumed)?;
        }
        let records = store.records(id).map_err(|e| format!("records: {e}"))?;
        let b = books.get();
        if records.is_empty() {
            // The power went before the first record: nothing ran.
            check!(!b.started.iter().any(|&s| s), "cut {cut}: ran unrecorded");
        } else {
            let state = replay(&records)
                .map_err(|e| format!("replay: {e}"))?
                .state();
            check_eq!(
                state,
                SagaState::Finished(Outcome::Compensated),
                format!("cut {cut}: the end")
            );
            check!(
                !b.applied.iter().any(|&a| a),
                "cut {cut}: left applied {b:?}"
            );
        }
        for step in 0..3 {
            check!(
                b.undone[step] == 0 || b.started[step],
                "cut {cut}: step {step} undone, never started"
            );
        }
        cases += 1;
    }
    cortex_m_semihosting::hprintln!(
        "  flash: {} power cuts, each finished after the reboot",
        cases
    );
    Ok(())
}
