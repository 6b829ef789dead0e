//! The store's behaviour outside power cuts: errors, a torn head, a full
//! flash, many sagas in turn on a small flash (reclaim in steady state, and
//! erases spread over the sectors), a run owned by a `Registry`, and how
//! many bytes a saga takes.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use embedded_storage::nor_flash::NorFlash;
use saga_core::journal::{
    Event, Journal, JournalErrorKind, Outcome, Record, Registry, SagaContext, SagaId, SagaState,
    Start, replay,
};
use saga_core::{Saga, SagaBuilder};
use saga_flash::sim::{SimFlash, Tear};
use saga_flash::{Error, FlashStore};

fn created(seq: u64, parameters: usize) -> Record {
    let event = Event::Created {
        definition: "test".into(),
        version: 1,
        fingerprint: 3,
        parameters: vec![7; parameters],
    };
    Record { seq, event }
}

fn started(seq: u64, step: u32) -> Record {
    let event = Event::ActionStarted { step, attempt: 1 };
    Record { seq, event }
}

fn finished(seq: u64) -> Record {
    let event = Event::Finished {
        outcome: Outcome::Committed,
        message: String::new(),
    };
    Record { seq, event }
}

fn three_steps() -> Saga<String> {
    let step = || {
        (
            || async { Ok::<_, String>(()) },
            || async { Ok::<(), String>(()) },
        )
    };
    let (a, b) = step();
    let (c, d) = step();
    let (e, f) = step();
    SagaBuilder::new()
        .add_step(a, b)
        .add_step(c, d)
        .add_step(e, f)
        .build()
}

#[test]
fn records_out_of_order_after_finishing_or_too_large_are_refused() {
    let store = FlashStore::mount(SimFlash::<4, 256>::new(2)).unwrap();
    let id = SagaId(1);
    assert_eq!(
        store.append(id, &started(1, 0)),
        Err(Error::OutOfOrder {
            saga: id,
            expected: 0,
            found: 1
        })
    );
    store.append(id, &created(0, 0)).unwrap();
    store.append(id, &finished(1)).unwrap();
    assert_eq!(store.append(id, &started(2, 0)), Err(Error::Finished(id)));
    assert_eq!(store.journal(id).unwrap_err(), Error::Finished(id));
    // A `Created` record of this test takes 34 bytes besides its
    // parameters: the largest fits, one byte more does not.
    let max = store.max_record_len();
    assert_eq!(created(0, 10).to_bytes().len(), 44);
    let too_large = store.append(SagaId(2), &created(0, max - 33));
    assert!(
        matches!(too_large, Err(Error::TooLarge { .. })),
        "{too_large:?}"
    );
    store.append(SagaId(2), &created(0, max - 34)).unwrap();
    assert!(matches!(
        FlashStore::mount(SimFlash::<4, 256>::new(1)),
        Err(Error::Geometry(_))
    ));
    // The journal refuses a gap too, as a core journal error.
    let mut journal = store.journal(SagaId(3)).unwrap();
    let error = journal.append(&started(4, 0)).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage);
}

#[test]
fn a_torn_write_keeps_the_records_before_it_and_the_next_go_elsewhere() {
    let mut flash = SimFlash::<4, 256>::new(3);
    // An erase, the header, one entry, then the power is cut.
    flash.cut_power_at(3, Tear::Partial);
    let store = FlashStore::mount(flash).unwrap();
    let id = SagaId(9);
    store.append(id, &created(0, 4)).unwrap();
    assert!(matches!(
        store.append(id, &started(1, 0)),
        Err(Error::Flash(_))
    ));
    assert_eq!(store.append(id, &started(1, 0)), Err(Error::Failed));
    let flash = store.into_flash().unwrap().reboot();

    let store = FlashStore::mount(flash).unwrap();
    assert_eq!(store.records(id).unwrap(), [created(0, 4)]);
    let before = store.usage().unwrap();
    store.append(id, &started(1, 0)).unwrap();
    // The torn sector takes no more: the record went to a new one.
    assert_eq!(store.usage().unwrap().free_sectors, before.free_sectors - 1);
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(store.records(id).unwrap(), [created(0, 4), started(1, 0)]);
}

#[test]
fn unfinished_sagas_that_fill_the_flash_are_refused_room_not_overwritten() {
    let store = FlashStore::mount(SimFlash::<4, 256>::new(3)).unwrap();
    let mut kept = Vec::new();
    let error = (0..).find_map(|id| {
        let record = created(0, 60);
        match store.append(SagaId(id), &record) {
            Ok(()) => {
                kept.push(SagaId(id));
                None
            }
            Err(error) => Some(error),
        }
    });
    assert!(matches!(error, Some(Error::Full { .. })), "{error:?}");
    assert!(kept.len() >= 2, "{kept:?}");
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(store.unfinished().unwrap(), kept);
    for id in kept {
        assert_eq!(store.records(id).unwrap(), [created(0, 60)]);
    }
}

#[test]
fn many_sagas_in_turn_reclaim_as_they_go_and_spread_the_erases() {
    const SECTORS: usize = 4;
    let store = FlashStore::mount(SimFlash::<4, 512>::new(SECTORS)).unwrap();
    let mut erases = [0_u64; SECTORS];
    for id in 0..300 {
        let mut saga = three_steps();
        let mut journal = store.journal(SagaId(id)).unwrap();
        let run = saga
            .run_journaled(&mut journal, Start::new("three", 1, vec![1, 2, 3]))
            .unwrap();
        smol::block_on(run).unwrap();
    }
    let usage = store.usage().unwrap();
    assert!(usage.erases > 50, "{usage:?}");
    assert!(store.unfinished().unwrap().is_empty());
    let flash = store.into_flash().unwrap();
    let store = FlashStore::mount(flash.reboot()).unwrap();
    let history = replay(&store.records(SagaId(299)).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    // Every sector was erased about as often as the others.
    for (sector, count) in erases.iter_mut().enumerate() {
        *count = flash.erases_of(sector * SimFlash::<4, 512>::ERASE_SIZE);
    }
    println!("300 three-step sagas on 4 sectors of 512 bytes: erases per sector {erases:?}");
    let (low, high) = (erases.iter().min().unwrap(), erases.iter().max().unwrap());
    assert!(*low > 0 && high - low <= high / 2 + 1, "{erases:?}");
}

#[test]
fn a_registry_run_owns_its_flash_journal() {
    let store = FlashStore::mount(SimFlash::<4, 1024>::new(3)).unwrap();
    let mut registry = Registry::<String>::new();
    registry.register("three", 1, |_: &(), _: &SagaContext| three_steps());
    let id = SagaId(5);
    let journal = Box::new(store.journal(id).unwrap());
    let run = registry
        .start(
            journal,
            Start::new("three", 1, vec![]),
            &SagaContext::new(id),
        )
        .unwrap();
    smol::block_on(run).unwrap();
    let history = replay(&store.records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

#[test]
fn bytes_a_saga_takes() {
    for unit in [4, 8] {
        let used = match unit {
            4 => used_by_three_steps::<4>(),
            _ => used_by_three_steps::<8>(),
        };
        println!("a committed three-step saga takes {used} bytes of flash with {unit}-byte writes");
        assert!(used < 600, "{used}");
    }
    let store = FlashStore::mount(SimFlash::<4, 1024>::new(2)).unwrap();
    let before = store.usage().unwrap().used_bytes;
    store.append(SagaId(1), &created(0, 0)).unwrap();
    let after_created = store.usage().unwrap().used_bytes;
    store.append(SagaId(1), &started(1, 0)).unwrap();
    let one = store.usage().unwrap().used_bytes - after_created;
    println!(
        "an ActionStarted record alone takes {one} bytes ({} bytes of record); Created took {}",
        started(1, 0).to_bytes().len(),
        after_created - before - 16
    );
    assert_eq!(one, 48);
}

fn used_by_three_steps<const W: usize>() -> usize {
    let store = FlashStore::mount(SimFlash::<W, 1024>::new(2)).unwrap();
    let before = store.usage().unwrap().used_bytes;
    let mut saga = three_steps();
    let mut journal = store.journal(SagaId(1)).unwrap();
    let run = saga
        .run_journaled(&mut journal, Start::new("three", 1, vec![]))
        .unwrap();
    smol::block_on(run).unwrap();
    store.usage().unwrap().used_bytes - before
}
