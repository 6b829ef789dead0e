//! Tests of `saga-flash` written from the root README and the rustdoc of
//! `saga-flash` and `saga-core` only (not from the implementation nor the
//! crate's other tests): each checks a promise the documentation makes.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::missing_panics_doc,
    reason = "a test"
)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use saga_core::journal::{
    Event, Journal, JournalErrorKind, Outcome, Progress, Record, SagaId, SagaState, Start, replay,
};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_flash::sim::{SimFlash, Tear};
use saga_flash::{Error, FlashJournal, FlashStore};

type Flash = SimFlash<4, 1024>;
type Small = SimFlash<4, 256>;

fn created(seq: u64, parameters: usize) -> Record {
    Record {
        seq,
        event: Event::Created {
            definition: "docs".into(),
            version: 1,
            fingerprint: 7,
            parameters: vec![0xA5; parameters],
        },
    }
}

fn started(seq: u64, step: u32) -> Record {
    Record {
        seq,
        event: Event::ActionStarted { step, attempt: 1 },
    }
}

fn finished(seq: u64) -> Record {
    Record {
        seq,
        event: Event::Finished {
            outcome: Outcome::Committed,
            message: String::new(),
        },
    }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

// ---------------------------------------------------------------- books

/// What the steps did to the outside world: the set of steps applied (an
/// idempotent action inserts, its compensation removes) and how often each
/// action ran.
#[derive(Default, Debug)]
struct Books {
    applied: BTreeSet<usize>,
    action_runs: Vec<u32>,
}

fn build(books: &Arc<Mutex<Books>>, steps: usize, fail_at: Option<usize>) -> Saga<String> {
    books.lock().unwrap().action_runs = vec![0; steps];
    let mut builder = SagaBuilder::new().action_retry(Retry::attempts(2));
    for step in 0..steps {
        let on = Arc::clone(books);
        let off = Arc::clone(books);
        builder = builder.add_step(
            move || {
                let on = Arc::clone(&on);
                async move {
                    let mut books = on.lock().unwrap();
                    books.action_runs[step] += 1;
                    if fail_at == Some(step) {
                        return Err(format!("step {step} fails"));
                    }
                    books.applied.insert(step);
                    Ok::<_, String>(())
                }
            },
            move || {
                let off = Arc::clone(&off);
                async move {
                    off.lock().unwrap().applied.remove(&step);
                    Ok(())
                }
            },
        );
    }
    builder.build()
}

/// Runs a new saga `id` on `store`, to its end or until the flash fails.
fn run_new<F: NorFlash + Send + 'static>(
    store: &FlashStore<F>,
    id: SagaId,
    books: &Arc<Mutex<Books>>,
    steps: usize,
    fail_at: Option<usize>,
) {
    let mut saga = build(books, steps, fail_at);
    let Ok(mut journal) = store.journal(id) else {
        return;
    };
    let run = saga
        .run_journaled(&mut journal, Start::new("docs", 1, vec![]))
        .unwrap();
    let _ = smol::block_on(run);
}

/// Resumes every unfinished saga of `store`. Returns false when the store
/// failed (the flash lost power) on the way.
fn resume_all<F: NorFlash + Send + 'static>(
    store: &FlashStore<F>,
    books: &Arc<Mutex<Books>>,
    steps: usize,
    fail_at: Option<usize>,
) -> bool {
    let Ok(ids) = store.unfinished() else {
        return false;
    };
    for id in ids.into_iter().filter(|&id| id == SagaId(1)) {
        let Ok(records) = store.records(id) else {
            return false;
        };
        let history = replay(&records).expect("the records on flash replay");
        let mut saga = build_keep(books, steps, fail_at);
        let Ok(mut journal) = store.journal(id) else {
            return false;
        };
        let run = saga.resume(&mut journal, &history).unwrap();
        if smol::block_on(run).is_err() && store.unfinished().is_err() {
            return false;
        }
    }
    true
}

/// `build`, without resetting the run counts.
fn build_keep(books: &Arc<Mutex<Books>>, steps: usize, fail_at: Option<usize>) -> Saga<String> {
    let runs = books.lock().unwrap().action_runs.clone();
    let saga = build(books, steps, fail_at);
    books.lock().unwrap().action_runs = runs;
    saga
}

/// Checks that saga `id` on `store` ended with the books right: committed
/// with every step applied, or compensated with none, or never started
/// (nothing on flash and no action run).
fn check_books<F: NorFlash>(
    store: &FlashStore<F>,
    id: SagaId,
    books: &Arc<Mutex<Books>>,
    steps: usize,
    context: &str,
) -> Option<Outcome> {
    let books = books.lock().unwrap();
    let records = store.records(id).unwrap();
    assert!(
        !store.unfinished().unwrap().contains(&id),
        "{context}: the saga was left unfinished"
    );
    if records.is_empty() {
        assert!(
            books.action_runs.iter().all(|&runs| runs == 0),
            "{context}: an action ran but the saga is not on flash: {books:?}"
        );
        return None;
    }
    let history = replay(&records).unwrap();
    match history.state() {
        SagaState::Finished(Outcome::Committed) => {
            assert_eq!(
                books.applied,
                (0..steps).collect(),
                "{context}: committed, books wrong"
            );
            for step in 0..steps {
                assert_eq!(history.step(step).action, Progress::Succeeded, "{context}");
            }
            Some(Outcome::Committed)
        }
        SagaState::Finished(Outcome::Compensated) => {
            assert!(
                books.applied.is_empty(),
                "{context}: compensated, yet {books:?} applied"
            );
            Some(Outcome::Compensated)
        }
        other => panic!("{context}: the saga ended {other:?}"),
    }
}

// ------------------------------------------------------- mount, geometry

#[test]
fn a_blank_flash_mounts_as_an_empty_store() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(store.unfinished().unwrap().is_empty());
    assert!(store.records(SagaId(1)).unwrap().is_empty());
    let usage = store.usage().unwrap();
    assert_eq!(usage.sectors, 4);
    assert_eq!(usage.free_sectors, 4, "a blank sector holds no live data");
    assert_eq!(usage.used_bytes, 0);
    assert_eq!(usage.live_records, 0);
    assert_eq!(usage.dead_records, 0);
    assert_eq!(usage.erases, 0, "mounting a blank flash erases nothing");
    // Mounting "formats nothing": the flash is still blank.
    let flash = store.into_flash().unwrap();
    assert!(flash.bytes().iter().all(|&byte| byte == 0xFF));
    assert_eq!(flash.ops(), 0, "mount wrote or erased on a blank flash");
}

#[test]
fn fewer_than_two_sectors_is_a_geometry_error() {
    assert!(matches!(
        FlashStore::mount(Flash::new(1)),
        Err(Error::Geometry(_))
    ));
    assert!(matches!(
        FlashStore::mount(Flash::new(0)),
        Err(Error::Geometry(_))
    ));
    assert!(FlashStore::mount(Flash::new(2)).is_ok());
}

#[test]
fn sectors_too_small_for_the_format_are_a_geometry_error() {
    // A sector of 16 bytes holds a header (16 bytes) and nothing else.
    assert!(matches!(
        FlashStore::mount(SimFlash::<4, 16>::new(8)),
        Err(Error::Geometry(_))
    ));
    assert!(matches!(
        FlashStore::mount(SimFlash::<4, 32>::new(8)),
        Err(Error::Geometry(_))
    ));
}

#[test]
fn mount_range_checks_alignment_and_size() {
    let store = FlashStore::mount_range(Flash::new(8), 4096..8192).unwrap();
    assert_eq!(store.usage().unwrap().sectors, 4);
    for range in [
        100..8192,
        0..1000,
        1024..1024,
        1024..2048,
        core::ops::Range {
            start: 2048,
            end: 1024,
        },
    ] {
        let result = FlashStore::mount_range(Flash::new(8), range.clone());
        assert!(
            matches!(result, Err(Error::Geometry(_))),
            "{range:?}: {result:?}"
        );
    }
}

#[test]
fn mount_range_beyond_the_flash_fails_without_panicking() {
    let result = FlashStore::mount_range(Flash::new(4), 2048..8192);
    assert!(
        result.is_err(),
        "a range past the end of a 4 KiB flash mounted: {result:?}"
    );
}

#[test]
fn mount_range_leaves_the_rest_of_the_flash_alone() {
    let mut flash = Small::new(8);
    // Something else's data in sectors 0, 1 and 6, 7.
    for offset in (0..512).chain(1536..2048).step_by(4) {
        flash.write(offset, &[0x12, 0x34, 0x56, 0x78]).unwrap();
    }
    let before = flash.bytes().to_vec();
    let store = FlashStore::mount_range(flash, 512..1536).unwrap();
    assert_eq!(store.usage().unwrap().sectors, 4);
    for id in 0..40 {
        store.append(SagaId(id), &created(0, 20)).unwrap();
        store.append(SagaId(id), &finished(1)).unwrap();
    }
    store.reclaim().unwrap();
    assert!(
        store.usage().unwrap().erases > 0,
        "the store never reclaimed"
    );
    let flash = store.into_flash().unwrap();
    assert_eq!(flash.bytes()[..512], before[..512]);
    assert_eq!(flash.bytes()[1536..], before[1536..]);
}

#[test]
fn a_flash_full_of_other_data_mounts_as_an_empty_store_and_works() {
    let mut flash = Small::new(4);
    for offset in (0..1024u32).step_by(4) {
        let word = offset.wrapping_mul(2_654_435_761).to_le_bytes();
        flash.write(offset, &word).unwrap();
    }
    let store = FlashStore::mount(flash).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(store.unfinished().unwrap().is_empty());
    store.append(SagaId(1), &created(0, 4)).unwrap();
    store.append(SagaId(1), &started(1, 0)).unwrap();
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(
        store.records(SagaId(1)).unwrap(),
        [created(0, 4), started(1, 0)]
    );
}

// ------------------------------------------------ append, records, list

#[test]
fn records_survive_a_remount_in_order() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let records = [created(0, 3), started(1, 0), started(2, 1)];
    for record in &records {
        store.append(SagaId(9), record).unwrap();
    }
    assert_eq!(store.records(SagaId(9)).unwrap(), records);
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(store.records(SagaId(9)).unwrap(), records);
    assert_eq!(store.unfinished().unwrap(), [SagaId(9)]);
}

#[test]
fn append_refuses_a_record_out_of_order() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    assert_eq!(
        store.append(SagaId(2), &started(1, 0)),
        Err(Error::OutOfOrder {
            saga: SagaId(2),
            expected: 0,
            found: 1
        })
    );
    store.append(SagaId(2), &created(0, 0)).unwrap();
    // Only once: the same number again is refused.
    assert_eq!(
        store.append(SagaId(2), &created(0, 0)),
        Err(Error::OutOfOrder {
            saga: SagaId(2),
            expected: 1,
            found: 0
        })
    );
    assert_eq!(
        store.append(SagaId(2), &started(5, 0)),
        Err(Error::OutOfOrder {
            saga: SagaId(2),
            expected: 1,
            found: 5
        })
    );
    assert_eq!(store.records(SagaId(2)).unwrap(), [created(0, 0)]);
}

#[test]
fn append_all_refuses_a_gap_inside_the_batch() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let result = store.append_all(SagaId(4), &[created(0, 0), started(2, 0)]);
    assert_eq!(
        result,
        Err(Error::OutOfOrder {
            saga: SagaId(4),
            expected: 1,
            found: 2
        })
    );
    // One entry, kept whole or not at all: a refused batch leaves nothing
    // that replays with a gap.
    let records = store.records(SagaId(4)).unwrap();
    assert!(
        records.is_empty() || records == [created(0, 0)],
        "{records:?}"
    );
}

#[test]
fn nothing_is_appended_to_a_finished_saga() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    store
        .append_all(SagaId(6), &[created(0, 0), finished(1)])
        .unwrap();
    assert_eq!(
        store.append(SagaId(6), &started(2, 0)),
        Err(Error::Finished(SagaId(6)))
    );
    assert!(matches!(
        store.journal(SagaId(6)),
        Err(Error::Finished(SagaId(6)))
    ));
    assert_eq!(
        store.abandon(SagaId(6), "late"),
        Err(Error::Finished(SagaId(6)))
    );
    assert_eq!(
        store.records(SagaId(6)).unwrap(),
        [created(0, 0), finished(1)]
    );
}

#[test]
fn abandon_appends_an_abandoned_finished_record() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    store.append(SagaId(3), &created(0, 0)).unwrap();
    store.append(SagaId(3), &started(1, 0)).unwrap();
    store.abandon(SagaId(3), "the device was returned").unwrap();
    let records = store.records(SagaId(3)).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[2],
        Record {
            seq: 2,
            event: Event::Finished {
                outcome: Outcome::Abandoned,
                message: "the device was returned".into()
            }
        }
    );
    assert_eq!(
        replay(&records).unwrap().state(),
        SagaState::Finished(Outcome::Abandoned)
    );
    assert!(store.unfinished().unwrap().is_empty());
    let info = store.list().unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].finished, Some(Outcome::Abandoned));
    // And it stays given up after a reboot.
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert!(store.unfinished().unwrap().is_empty());
}

#[test]
fn abandon_of_an_unknown_saga_is_refused_and_writes_nothing() {
    // "[`Error::Unknown`] for one the store holds no record of (it writes
    // nothing then)."
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let before = store.usage().unwrap().used_bytes;
    assert_eq!(
        store.abandon(SagaId(77), "never started"),
        Err(Error::Unknown(SagaId(77)))
    );
    assert_eq!(store.records(SagaId(77)), Ok(vec![]));
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.usage().unwrap().used_bytes, before);
    assert_eq!(
        Error::Unknown(SagaId(77)).to_string(),
        format!("saga {} is not in the store", SagaId(77))
    );
}

#[test]
fn list_and_unfinished_are_in_the_order_of_the_ids() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    for id in [50, 7, 300, 1] {
        store.append(SagaId(id), &created(0, 0)).unwrap();
    }
    store.append(SagaId(7), &finished(1)).unwrap();
    assert_eq!(
        store.unfinished().unwrap(),
        [SagaId(1), SagaId(50), SagaId(300)]
    );
    let list = store.list().unwrap();
    let ids: Vec<_> = list.iter().map(|info| info.id).collect();
    assert_eq!(ids, [SagaId(1), SagaId(7), SagaId(50), SagaId(300)]);
    assert_eq!(list[1].records, 2);
    assert_eq!(list[1].finished, Some(Outcome::Committed));
    assert_eq!(list[0].records, 1);
    assert_eq!(list[0].finished, None);
}

#[test]
fn usage_counts_live_and_dead_records() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    store
        .append_all(SagaId(1), &[created(0, 0), started(1, 0), finished(2)])
        .unwrap();
    store
        .append_all(SagaId(2), &[created(0, 0), started(1, 0)])
        .unwrap();
    let usage = store.usage().unwrap();
    assert_eq!(usage.live_records, 2);
    assert_eq!(usage.dead_records, 3);
    assert!(usage.free_sectors < usage.sectors);
    assert!(usage.used_bytes > 0);
}

#[test]
fn a_clone_is_another_handle_to_the_same_log() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let other = store.clone();
    other.append(SagaId(1), &created(0, 0)).unwrap();
    assert_eq!(store.records(SagaId(1)).unwrap(), [created(0, 0)]);
    // into_flash gives the store back while another handle is alive.
    let store = store.into_flash().unwrap_err();
    drop(other);
    let journal = store.journal(SagaId(2)).unwrap();
    let store = store.into_flash().unwrap_err();
    drop(journal);
    assert!(store.into_flash().is_ok());
}

#[test]
fn the_store_and_its_journals_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<FlashStore<Flash>>();
    send::<FlashJournal<Flash>>();
    send_sync::<Error>();
}

// --------------------------------------------------------- on-flash format

#[test]
fn an_actions_started_record_alone_takes_48_bytes() {
    for write in [4usize, 8] {
        let record = started(1, 0);
        assert_eq!(
            record.to_bytes().len(),
            18,
            "the docs' \"started\" record is 18 bytes"
        );
        let delta = if write == 4 {
            let store = FlashStore::mount(SimFlash::<4, 1024>::new(4)).unwrap();
            store.append(SagaId(1), &created(0, 0)).unwrap();
            let before = store.usage().unwrap().used_bytes;
            store.append(SagaId(1), &record).unwrap();
            store.usage().unwrap().used_bytes - before
        } else {
            let store = FlashStore::mount(SimFlash::<8, 1024>::new(4)).unwrap();
            store.append(SagaId(1), &created(0, 0)).unwrap();
            let before = store.usage().unwrap().used_bytes;
            store.append(SagaId(1), &record).unwrap();
            store.usage().unwrap().used_bytes - before
        };
        assert_eq!(delta, 48, "{write}-byte writes");
    }
}

#[test]
fn an_entry_takes_25_bytes_plus_2_and_its_bytes_per_record() {
    // "An entry takes 25 bytes, plus 2 and its bytes per record, rounded up
    // to the write size."
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let mut mismatches = Vec::new();
    for parameters in 0..8 {
        let record = created(0, parameters);
        let before = store.usage().unwrap().used_bytes;
        store
            .append(SagaId(100 + parameters as u128), &record)
            .unwrap();
        let after = store.usage().unwrap().used_bytes;
        let header = if before == 0 { 16 } else { 0 };
        let expected = round_up(25 + 2 + record.to_bytes().len(), 4);
        if after - before - header != expected {
            mismatches.push((record.to_bytes().len(), after - before - header, expected));
        }
    }
    assert!(
        mismatches.is_empty(),
        "(record bytes, entry bytes, documented): {mismatches:?}"
    );
}

#[test]
fn a_committed_three_step_saga_takes_272_bytes() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let books = Arc::new(Mutex::new(Books::default()));
    run_new(&store, SagaId(1), &books, 3, None);
    let records = store.records(SagaId(1)).unwrap();
    assert_eq!(records.len(), 8, "eight records");
    assert_eq!(
        replay(&records).unwrap().state(),
        SagaState::Finished(Outcome::Committed)
    );
    let used = store.usage().unwrap().used_bytes;
    assert_eq!(
        used - 16,
        272,
        "bytes on flash (the sector header of 16 bytes aside)"
    );
}

#[test]
fn the_bytes_on_flash_follow_the_documented_layout() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let id = SagaId(0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10);
    let record = created(0, 5);
    store.append(id, &record).unwrap();
    let flash = store.into_flash().unwrap();
    let bytes = flash.bytes();
    let used: Vec<usize> = (0..4)
        .filter(|s| bytes[s * 1024..(s + 1) * 1024].iter().any(|&b| b != 0xFF))
        .collect();
    assert_eq!(used.len(), 1, "one sector in use");
    let sector = &bytes[used[0] * 1024..(used[0] + 1) * 1024];
    // header: magic | sequence | reclaims (u32::MAX for none) | crc
    assert_eq!(sector[8..12], [0xFF; 4], "reclaims is u32::MAX");
    // entry: length u16 | kind u8 | 0 u8 | crc u32 | payload
    assert_eq!(sector[19], 0, "the byte after the entry's kind is 0");
    // records payload: saga id (16 bytes) | count u8 | (length u16 | bytes)
    let id_bytes = &sector[24..40];
    assert!(
        id_bytes == id.0.to_le_bytes() || id_bytes == id.0.to_be_bytes(),
        "saga id: {id_bytes:02x?}"
    );
    assert_eq!(sector[40], 1, "count");
    let encoded = record.to_bytes();
    let len = encoded.len() as u16;
    assert!(sector[41..43] == len.to_le_bytes() || sector[41..43] == len.to_be_bytes());
    assert_eq!(sector[43..43 + encoded.len()], encoded[..]);
    let end = round_up(43 + encoded.len(), 4);
    assert!(
        sector[43 + encoded.len()..end].iter().all(|&b| b == 0xFF),
        "0xFF padding"
    );
    assert!(
        sector[end..].iter().all(|&b| b == 0xFF),
        "nothing after the entry"
    );
}

#[test]
fn max_record_len_is_the_boundary_of_too_large() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let max = store.max_record_len();
    assert!(max > 0 && max < 1024);
    let fits = (0..1024)
        .map(|n| created(0, n))
        .find(|r| r.to_bytes().len() == max);
    let over = (0..1024)
        .map(|n| created(0, n))
        .find(|r| r.to_bytes().len() == max + 1);
    let fits = fits.expect("a record of max_record_len bytes");
    let over = over.expect("a record of max_record_len + 1 bytes");
    assert_eq!(store.append(SagaId(1), &fits), Ok(()));
    match store.append(SagaId(2), &over) {
        Err(Error::TooLarge { size, max }) => assert!(size > max, "{size} <= {max}"),
        other => panic!("{other:?}"),
    }
    assert!(store.records(SagaId(2)).unwrap().is_empty());
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(store.records(SagaId(1)).unwrap(), [fits]);
}

#[test]
fn a_huge_record_is_too_large_not_a_panic() {
    let store = FlashStore::mount(Small::new(4)).unwrap();
    let result = store.append(SagaId(1), &created(0, 100_000));
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
}

#[test]
fn append_all_splits_a_batch_larger_than_a_sector() {
    let store = FlashStore::mount(Small::new(4)).unwrap();
    let mut records = vec![created(0, 0)];
    records.extend((1..20).map(|seq| started(seq, seq as u32)));
    store.append_all(SagaId(1), &records).unwrap();
    assert_eq!(store.records(SagaId(1)).unwrap(), records);
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(store.records(SagaId(1)).unwrap(), records);
}

// --------------------------------------------------------------- journal

#[test]
fn a_journal_writes_on_flush_only() {
    let store = FlashStore::mount(Flash::new(2)).unwrap();
    let mut journal = store.journal(SagaId(5)).unwrap();
    assert_eq!(journal.id(), SagaId(5));
    assert_eq!(journal.next_seq(), 0);
    journal.append(&created(0, 0)).unwrap();
    journal.append(&started(1, 0)).unwrap();
    assert_eq!(journal.next_seq(), 2);
    assert!(store.records(SagaId(5)).unwrap().is_empty());
    assert_eq!(journal.poll_flush(&mut noop_cx()), Poll::Ready(Ok(())));
    assert_eq!(
        store.records(SagaId(5)).unwrap(),
        [created(0, 0), started(1, 0)]
    );
    // A new journal of the same saga numbers on from the flash.
    drop(journal);
    let journal = store.journal(SagaId(5)).unwrap();
    let history = replay(&store.records(SagaId(5)).unwrap()).unwrap();
    assert_eq!(journal.next_seq(), history.next_seq());
    assert_eq!(journal.next_seq(), 2);
}

#[test]
fn a_journal_refuses_a_record_out_of_order() {
    let store = FlashStore::mount(Flash::new(2)).unwrap();
    let mut journal = store.journal(SagaId(5)).unwrap();
    let error = journal.append(&started(1, 0)).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert!(!error.message().is_empty());
    journal.append(&created(0, 0)).unwrap();
    assert!(journal.append(&created(0, 0)).is_err(), "seq 0 twice");
}

#[test]
fn a_second_journal_of_the_same_saga_cannot_leave_a_gap() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let mut first = store.journal(SagaId(8)).unwrap();
    let mut second = store.journal(SagaId(8)).unwrap();
    first.append(&created(0, 0)).unwrap();
    assert_eq!(first.poll_flush(&mut noop_cx()), Poll::Ready(Ok(())));
    // The second journal still thinks 0 is next: the store checks again.
    if second.append(&created(0, 1)).is_ok() {
        assert!(matches!(
            second.poll_flush(&mut noop_cx()),
            Poll::Ready(Err(_))
        ));
    }
    assert_eq!(store.records(SagaId(8)).unwrap(), [created(0, 0)]);
}

#[test]
fn a_run_journaled_saga_commits_and_is_not_unfinished() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let books = Arc::new(Mutex::new(Books::default()));
    run_new(&store, SagaId(1), &books, 3, None);
    assert_eq!(books.lock().unwrap().action_runs, [1, 1, 1]);
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert!(store.unfinished().unwrap().is_empty());
    assert_eq!(
        check_books(&store, SagaId(1), &books, 3, "clean"),
        Some(Outcome::Committed)
    );
}

#[test]
fn a_failing_saga_compensates_and_is_recorded_so() {
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    let books = Arc::new(Mutex::new(Books::default()));
    run_new(&store, SagaId(1), &books, 3, Some(2));
    assert_eq!(
        check_books(&store, SagaId(1), &books, 3, "fail"),
        Some(Outcome::Compensated)
    );
}

// ----------------------------------------------------- errors and failures

#[test]
fn errors_display_and_are_std_errors() {
    fn std_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    let errors = [
        Error::Flash(NorFlashErrorKind::OutOfBounds),
        Error::Failed,
        Error::Geometry("too few sectors"),
        Error::Full { needed: 64 },
        Error::TooLarge {
            size: 2000,
            max: 1000,
        },
        Error::OutOfOrder {
            saga: SagaId(1),
            expected: 2,
            found: 3,
        },
        Error::Finished(SagaId(1)),
        Error::Unknown(SagaId(1)),
        Error::Corrupt {
            saga: SagaId(1),
            seq: 4,
        },
        Error::Reclaimed(SagaId(1)),
        Error::Busy,
    ];
    let mut shown = BTreeSet::new();
    for error in &errors {
        std_error(error);
        let text = error.to_string();
        assert!(!text.is_empty(), "{error:?}");
        assert!(shown.insert(text.clone()), "two errors display as {text:?}");
        let dynamic: &dyn std::error::Error = error;
        assert_eq!(dynamic.to_string(), text);
    }
    assert_eq!(
        Error::Full { needed: 64 }.to_string(),
        "the flash is full: no room for an entry of 64 bytes, even after reclaiming"
    );
    assert!(
        Error::TooLarge {
            size: 2000,
            max: 1000
        }
        .to_string()
        .contains("2000")
    );
    let out_of_order = Error::OutOfOrder {
        saga: SagaId(1),
        expected: 2,
        found: 3,
    }
    .to_string();
    assert!(
        out_of_order.contains('2') && out_of_order.contains('3'),
        "{out_of_order}"
    );
    assert!(
        Error::Geometry("too few sectors")
            .to_string()
            .contains("too few sectors")
    );
    assert!(Error::Finished(SagaId(0xabc)).to_string().contains("abc"));
}

#[test]
fn errors_convert_into_journal_errors() {
    let cases = [
        (Error::Full { needed: 64 }, JournalErrorKind::Storage),
        (
            Error::Flash(NorFlashErrorKind::Other),
            JournalErrorKind::Storage,
        ),
        (Error::Busy, JournalErrorKind::Storage),
        (
            Error::OutOfOrder {
                saga: SagaId(1),
                expected: 0,
                found: 1,
            },
            JournalErrorKind::Storage,
        ),
        (Error::Failed, JournalErrorKind::Closed),
    ];
    for (error, kind) in cases {
        let text = error.to_string();
        let journal: saga_core::journal::JournalError = error.clone().into();
        assert_eq!(journal.kind(), kind, "{error:?}");
        assert!(
            journal.message().contains(&text),
            "{error:?}: {:?}",
            journal.message()
        );
    }
}

#[test]
fn a_flash_failure_fails_the_store_until_it_is_mounted_again() {
    let mut flash = Flash::new(4);
    flash.cut_power_at(0, Tear::Before);
    let store = FlashStore::mount(flash).unwrap();
    assert!(matches!(
        store.append(SagaId(1), &created(0, 0)),
        Err(Error::Flash(_))
    ));
    // "The store refuses every later operation: mount it again."
    assert_eq!(store.append(SagaId(2), &created(0, 0)), Err(Error::Failed));
    assert_eq!(store.records(SagaId(1)), Err(Error::Failed));
    assert_eq!(store.unfinished(), Err(Error::Failed));
    assert_eq!(store.list(), Err(Error::Failed));
    assert_eq!(store.reclaim(), Err(Error::Failed));
    assert!(matches!(store.journal(SagaId(3)), Err(Error::Failed)));
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    store.append(SagaId(1), &created(0, 0)).unwrap();
    assert_eq!(store.records(SagaId(1)).unwrap(), [created(0, 0)]);
}

#[test]
fn a_failed_flush_keeps_failing_with_the_same_error() {
    let mut flash = Flash::new(4);
    flash.cut_power_at(0, Tear::Partial);
    let store = FlashStore::mount(flash).unwrap();
    let mut journal = store.journal(SagaId(1)).unwrap();
    journal.append(&created(0, 0)).unwrap();
    let Poll::Ready(Err(first)) = journal.poll_flush(&mut noop_cx()) else {
        panic!("the flush did not fail");
    };
    assert_eq!(first.kind(), JournalErrorKind::Storage);
    let Poll::Ready(Err(again)) = journal.poll_flush(&mut noop_cx()) else {
        panic!("the second flush did not fail");
    };
    assert_eq!(again, first);
    let later = journal.append(&started(1, 0));
    assert!(later.is_err() || matches!(journal.poll_flush(&mut noop_cx()), Poll::Ready(Err(_))));
}

#[test]
fn records_of_a_corrupted_saga_give_an_error_not_a_panic() {
    // Flip bits (NOR can clear them) inside a stored record's bytes: its
    // checksum no longer matches, so it must be ignored or reported.
    let store = FlashStore::mount(Flash::new(4)).unwrap();
    store.append(SagaId(1), &created(0, 0)).unwrap();
    store.append(SagaId(1), &started(1, 0)).unwrap();
    store.append(SagaId(1), &started(2, 1)).unwrap();
    let flash = store.into_flash().unwrap();
    let bytes = flash.bytes().to_vec();
    let needle = started(1, 0).to_bytes();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("record on flash");
    // A whole word inside the record with some bits set: clear them all.
    let word = (at.div_ceil(4) * 4..at + needle.len() - 4)
        .step_by(4)
        .find(|&word| bytes[word..word + 4] != [0; 4])
        .expect("a word of the record with bits set");
    // Rewriting a written word twice panics on the sim; write a fresh
    // image instead, equal but for the cleared bits.
    let mut image = Flash::new(4);
    for offset in (0..bytes.len()).step_by(4) {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[offset..offset + 4]);
        if offset == word {
            w = [0; 4];
        }
        if w != [0xFF; 4] {
            image.write(offset as u32, &w).unwrap();
        }
    }
    let store = FlashStore::mount(image).unwrap();
    match store.records(SagaId(1)) {
        // The damaged entry is dropped: a prefix, never a gap.
        Ok(records) => assert_eq!(records, [created(0, 0)]),
        Err(Error::Corrupt { saga, seq }) => {
            assert_eq!(saga, SagaId(1));
            assert_eq!(seq, 1);
        }
        Err(other) => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------- busy lock

/// A flash whose every write calls back into the store it is under, as an
/// interrupt handler might.
struct Reentrant {
    inner: Flash,
    store: Arc<OnceLock<FlashStore<Self>>>,
    seen: Arc<Mutex<Vec<Result<usize, Error>>>>,
    journal: Arc<Mutex<Option<FlashJournal<Self>>>>,
    flushes: Arc<Mutex<Vec<bool>>>,
    woken: Arc<Woken>,
}

#[derive(Default)]
struct Woken(std::sync::atomic::AtomicBool);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl ErrorType for Reentrant {
    type Error = <Flash as ErrorType>::Error;
}

impl ReadNorFlash for Reentrant {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for Reentrant {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if let Some(store) = self.store.get() {
            self.seen
                .lock()
                .unwrap()
                .push(store.list().map(|list| list.len()));
        }
        let journal = self.journal.lock().unwrap().take();
        if let Some(mut journal) = journal {
            let waker = Waker::from(Arc::clone(&self.woken));
            let pending = journal
                .poll_flush(&mut Context::from_waker(&waker))
                .is_pending();
            self.flushes.lock().unwrap().push(pending);
        }
        self.inner.write(offset, bytes)
    }
}

#[test]
fn an_operation_during_another_fails_with_busy_instead_of_deadlocking() {
    let cell = Arc::new(OnceLock::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let flash = Reentrant {
        inner: Flash::new(4),
        store: Arc::clone(&cell),
        seen: Arc::clone(&seen),
        journal: Arc::default(),
        flushes: Arc::default(),
        woken: Arc::default(),
    };
    let store = FlashStore::mount(flash).unwrap();
    cell.set(store.clone()).unwrap();
    store.append(SagaId(1), &created(0, 0)).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the flash was never written");
    assert!(seen.iter().all(|r| *r == Err(Error::Busy)), "{seen:?}");
    assert_eq!(store.records(SagaId(1)).unwrap(), [created(0, 0)]);
}

// ----------------------------------------------------------- reclaim

fn fill_finished<F: NorFlash>(store: &FlashStore<F>, ids: core::ops::Range<u128>) {
    for id in ids {
        store.append(SagaId(id), &created(0, 40)).unwrap();
        store.append(SagaId(id), &finished(1)).unwrap();
    }
}

#[test]
fn reclaim_erases_finished_sagas_and_keeps_unfinished_ones() {
    let store = FlashStore::mount(Small::new(4)).unwrap();
    fill_finished(&store, 0..4);
    store.append(SagaId(9), &created(0, 0)).unwrap();
    let before = store.usage().unwrap();
    let erased = store.reclaim().unwrap();
    assert!(erased >= 1);
    let after = store.usage().unwrap();
    assert_eq!(
        after.erases,
        before.erases + erased as u64,
        "erases counts the reclaim"
    );
    assert!(after.dead_records < before.dead_records);
    assert!(after.free_sectors > before.free_sectors);
    assert_eq!(store.unfinished().unwrap(), [SagaId(9)]);
    assert_eq!(store.records(SagaId(9)).unwrap(), [created(0, 0)]);
    // A second reclaim right away has nothing before the head to erase.
    assert_eq!(store.reclaim().unwrap(), 0);
    // And all of it holds after a reboot.
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(store.unfinished().unwrap(), [SagaId(9)]);
    assert_eq!(store.records(SagaId(9)).unwrap(), [created(0, 0)]);
}

#[test]
fn reclaim_on_an_empty_store_erases_nothing() {
    let store = FlashStore::mount(Small::new(4)).unwrap();
    assert_eq!(store.reclaim().unwrap(), 0);
    store.append(SagaId(1), &created(0, 0)).unwrap();
    assert_eq!(store.reclaim().unwrap(), 0, "the head is never erased");
    assert_eq!(store.records(SagaId(1)).unwrap(), [created(0, 0)]);
}

#[test]
fn the_log_reclaims_by_itself_and_never_fills_with_finished_sagas() {
    let flash = Small::new(3);
    let store = FlashStore::mount(flash).unwrap();
    store.append(SagaId(u128::MAX), &created(0, 10)).unwrap(); // unfinished, kept
    fill_finished(&store, 0..300);
    let usage = store.usage().unwrap();
    assert!(usage.erases > 10, "{usage:?}");
    assert!(
        usage.free_sectors >= 1,
        "one sector is always kept free: {usage:?}"
    );
    assert_eq!(store.unfinished().unwrap(), [SagaId(u128::MAX)]);
    assert_eq!(store.records(SagaId(u128::MAX)).unwrap(), [created(0, 10)]);
    // The oldest finished sagas are gone from the list, and a finished one
    // partly reclaimed reads as Reclaimed, never as something unfinished.
    let list = store.list().unwrap();
    assert!(list.len() < 301);
    assert!(
        list.iter()
            .all(|info| info.id == SagaId(u128::MAX) || info.finished.is_some())
    );
    for id in 0..300 {
        match store.records(SagaId(id)) {
            Ok(records) if records.is_empty() => {}
            Ok(records) => assert_eq!(records, [created(0, 40), finished(1)]),
            Err(Error::Reclaimed(saga)) => assert_eq!(saga, SagaId(id)),
            Err(other) => panic!("{id}: {other:?}"),
        }
    }
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    assert_eq!(store.unfinished().unwrap(), [SagaId(u128::MAX)]);
}

#[test]
fn reclaim_spreads_erases_over_the_sectors() {
    let store = FlashStore::mount(Small::new(4)).unwrap();
    fill_finished(&store, 0..400);
    let flash = store.into_flash().unwrap();
    let erases: Vec<u64> = (0..4).map(|s| flash.erases_of(s * 256)).collect();
    let (min, max) = (erases.iter().min().unwrap(), erases.iter().max().unwrap());
    assert!(*min > 0 && max - min <= 2, "uneven erases: {erases:?}");
}

#[test]
fn unfinished_sagas_that_fill_the_flash_give_full() {
    let store = FlashStore::mount(Small::new(3)).unwrap();
    let mut kept = Vec::new();
    let mut full = None;
    for id in 0..100 {
        match store.append(SagaId(id), &created(0, 40)) {
            Ok(()) => kept.push(id),
            Err(error) => {
                full = Some(error);
                break;
            }
        }
    }
    let Some(Error::Full { needed }) = full else {
        panic!("no Full error: {full:?}");
    };
    let entry = round_up(27 + 2 + created(0, 40).to_bytes().len(), 4);
    assert!(
        needed >= entry - 2,
        "needed {needed}, an entry takes about {entry}"
    );
    assert!(!kept.is_empty());
    for &id in &kept {
        assert_eq!(
            store.records(SagaId(id)).unwrap(),
            [created(0, 40)],
            "saga {id}"
        );
    }
    // The store is still usable: after a reboot the same sagas are there.
    let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
    let ids: Vec<_> = kept.iter().map(|&id| SagaId(id)).collect();
    assert_eq!(store.unfinished().unwrap(), ids);
}

// ------------------------------------------------------------ the sim

#[test]
fn sim_writes_only_clear_bits_and_erase_sets_ff() {
    let mut flash = Small::new(2);
    assert_eq!(flash.capacity(), 512);
    assert!(flash.bytes().iter().all(|&b| b == 0xFF));
    flash.write(4, &[0x0F, 0xF0, 0x00, 0xFF]).unwrap();
    let mut bytes = [0; 4];
    flash.read(4, &mut bytes).unwrap();
    assert_eq!(bytes, [0x0F, 0xF0, 0x00, 0xFF]);
    assert_eq!(flash.ops(), 1);
    flash.erase(0, 256).unwrap();
    assert_eq!(flash.ops(), 2);
    assert!(flash.bytes()[..256].iter().all(|&b| b == 0xFF));
    assert_eq!(flash.erases_of(10), 1);
    assert_eq!(flash.erases_of(300), 0);
}

#[test]
#[should_panic]
fn sim_panics_on_a_word_written_twice() {
    let mut flash = Small::new(2);
    flash.write(0, &[0xFF, 0xFF, 0xFF, 0x00]).unwrap();
    let _ = flash.write(0, &[0x00, 0xFF, 0xFF, 0xFF]);
}

#[test]
fn sim_refuses_unaligned_and_out_of_bounds_operations() {
    let mut flash = Small::new(2);
    assert_eq!(
        flash.write(1, &[0; 4]).unwrap_err().kind(),
        NorFlashErrorKind::NotAligned
    );
    assert_eq!(
        flash.write(0, &[0; 3]).unwrap_err().kind(),
        NorFlashErrorKind::NotAligned
    );
    assert_eq!(
        flash.erase(1, 256).unwrap_err().kind(),
        NorFlashErrorKind::NotAligned
    );
    assert_eq!(
        flash.write(512, &[0; 4]).unwrap_err().kind(),
        NorFlashErrorKind::OutOfBounds
    );
    assert_eq!(
        flash.erase(256, 768).unwrap_err().kind(),
        NorFlashErrorKind::OutOfBounds
    );
    let mut bytes = [0; 4];
    assert_eq!(
        flash.read(510, &mut bytes).unwrap_err().kind(),
        NorFlashErrorKind::OutOfBounds
    );
    assert!(flash.bytes().iter().all(|&b| b == 0xFF));
}

#[test]
fn sim_errors_display_their_kind_and_are_errors() {
    let mut flash = Small::new(2);
    let error = flash.write(1, &[0; 4]).unwrap_err();
    let kind = error.kind().to_string();
    assert_eq!(error.to_string(), format!("simulated flash: {kind}"));
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert!(boxed.source().is_none());
}

#[test]
fn sim_power_cut_before_leaves_nothing_and_kills_the_flash() {
    let mut flash = Small::new(2);
    flash.write(0, &[0; 4]).unwrap();
    flash.cut_power_at(1, Tear::Before);
    assert!(!flash.is_dead());
    assert!(flash.write(4, &[0; 8]).is_err());
    assert!(flash.is_dead());
    assert!(!flash.cut_hit_erase());
    assert_eq!(flash.bytes()[4..12], [0xFF; 8]);
    let mut bytes = [0; 4];
    assert!(
        flash.read(0, &mut bytes).is_err(),
        "reads fail after the cut"
    );
    assert!(
        flash.write(12, &[0; 4]).is_err(),
        "writes fail after the cut"
    );
    let mut flash = flash.reboot();
    assert!(!flash.is_dead());
    assert_eq!(flash.ops(), 0);
    flash.read(0, &mut bytes).unwrap();
    assert_eq!(bytes, [0; 4]);
    flash.write(4, &[0; 8]).unwrap();
}

#[test]
fn sim_partial_write_writes_its_first_half() {
    let mut flash = Small::new(2);
    flash.cut_power_at(0, Tear::Partial);
    assert!(flash.write(0, &[0u8; 16]).is_err());
    let bytes = flash.bytes();
    assert_eq!(bytes[..8], [0; 8], "the first half of the words is written");
    assert!(
        bytes[12..16].iter().all(|&b| b == 0xFF),
        "the last word is not"
    );
    assert!(
        bytes[8..12] != [0u8; 4],
        "the next word is only partly written"
    );
}

#[test]
fn sim_partial_erase_erases_the_second_half_only() {
    let mut flash = Small::new(2);
    for offset in (0..256).step_by(4) {
        flash.write(offset, &[0; 4]).unwrap();
    }
    flash.cut_power_at(flash.ops(), Tear::Partial);
    assert!(flash.erase(0, 256).is_err());
    assert!(flash.cut_hit_erase());
    let bytes = flash.bytes();
    assert!(
        bytes[..16].iter().all(|&b| b == 0),
        "the header is left as it was"
    );
    assert!(
        bytes[128..256].iter().all(|&b| b == 0xFF),
        "the second half is erased"
    );
    assert!(flash.erases_of(0) >= 1, "an erase that began counts");
}

#[test]
fn sim_noise_tears_depend_on_the_seed() {
    let torn = |seed: u64| {
        let mut flash = Small::new(2);
        flash.seed(seed);
        flash.cut_power_at(0, Tear::Noise);
        assert!(flash.write(0, &[0u8; 64]).is_err());
        flash.bytes()[..64].to_vec()
    };
    let images: BTreeSet<Vec<u8>> = (0..8).map(torn).collect();
    assert!(images.len() > 1, "every seed left the same garbage");
    assert!(
        images.iter().all(|image| image != &vec![0u8; 64]),
        "a noisy write completed"
    );
}

// ------------------------------------------------------ torn writes

#[test]
fn a_torn_entry_is_ignored_and_the_next_write_goes_to_a_fresh_sector() {
    for tear in [Tear::Partial, Tear::Noise] {
        let mut flash = Flash::new(4);
        // Write 0 is the sector header (or the first entry), the first
        // entry lands at or before write 1; cut the second entry's write.
        let store = FlashStore::mount(flash.clone()).unwrap();
        store.append(SagaId(1), &created(0, 0)).unwrap();
        let ops = store.into_flash().unwrap().ops();
        flash.cut_power_at(ops, tear);
        let store = FlashStore::mount(flash).unwrap();
        store.append(SagaId(1), &created(0, 0)).unwrap();
        assert!(store.append(SagaId(1), &started(1, 0)).is_err());
        let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
        assert_eq!(
            store.records(SagaId(1)).unwrap(),
            [created(0, 0)],
            "{tear:?}"
        );
        store.append(SagaId(1), &started(1, 0)).unwrap();
        assert_eq!(
            store.records(SagaId(1)).unwrap(),
            [created(0, 0), started(1, 0)]
        );
        let flash = store.into_flash().unwrap();
        let bytes = flash.bytes();
        let first = created(0, 0).to_bytes();
        let second = started(1, 0).to_bytes();
        let find = |needle: &[u8]| -> Vec<usize> {
            bytes
                .windows(needle.len())
                .enumerate()
                .filter(|(_, w)| *w == needle)
                .map(|(at, _)| at / 1024)
                .collect()
        };
        let first_at = find(&first);
        let second_at = find(&second);
        assert_eq!(first_at.len(), 1, "{tear:?}");
        assert!(!second_at.is_empty());
        assert!(
            second_at.iter().all(|&sector| sector != first_at[0]),
            "{tear:?}: the rewrite went to the torn sector {first_at:?} {second_at:?}"
        );
        let store = FlashStore::mount(flash.reboot()).unwrap();
        assert_eq!(
            store.records(SagaId(1)).unwrap(),
            [created(0, 0), started(1, 0)]
        );
    }
}

// ----------------------------------------------- power cuts, everywhere

/// Ops of a clean run of a saga on `flash` (which is left as it was).
fn clean_ops<const W: usize, const E: usize>(
    flash: &SimFlash<W, E>,
    steps: usize,
    fail_at: Option<usize>,
) -> u64 {
    let store = FlashStore::mount(flash.reboot()).unwrap();
    let books = Arc::new(Mutex::new(Books::default()));
    run_new(&store, SagaId(1), &books, steps, fail_at);
    store.into_flash().unwrap().ops()
}

fn sweep<const W: usize, const E: usize>(
    base: &SimFlash<W, E>,
    steps: usize,
    fail_at: Option<usize>,
    tears: &[Tear],
) -> usize {
    let total = clean_ops(base, steps, fail_at);
    assert!(total > 2);
    let mut cases = 0;
    for &tear in tears {
        for cut in 0..=total {
            let mut flash = base.reboot();
            flash.seed(cut);
            flash.cut_power_at(cut, tear);
            let books = Arc::new(Mutex::new(Books::default()));
            let store = FlashStore::mount(flash).unwrap();
            run_new(&store, SagaId(1), &books, steps, fail_at);
            let flash = store.into_flash().unwrap();
            assert_eq!(flash.is_dead(), cut < total, "cut {cut} of {total}");
            let store = FlashStore::mount(flash.reboot()).unwrap();
            assert!(resume_all(&store, &books, steps, fail_at));
            let context =
                format!("{tear:?} cut at {cut} of {total}, {steps} steps, fail {fail_at:?}");
            let outcome = check_books(&store, SagaId(1), &books, steps, &context);
            if fail_at.is_some() {
                assert_ne!(outcome, Some(Outcome::Committed), "{context}");
            }
            cases += 1;
        }
    }
    cases
}

#[test]
fn a_power_cut_at_any_write_is_resumed_to_the_end() {
    let tears = [Tear::Before, Tear::Partial, Tear::Noise];
    let mut cases = 0;
    for steps in 1..=3 {
        cases += sweep(&Flash::new(4), steps, None, &tears);
        cases += sweep(&Flash::new(4), steps, Some(steps - 1), &tears);
    }
    assert!(cases > 50);
}

#[test]
fn a_power_cut_during_a_reclaim_in_a_run_is_resumed_to_the_end() {
    // Small sectors, nearly full of finished sagas and one unfinished one:
    // the run makes the log reclaim, and the power goes at every write and
    // erase of it.
    let store = FlashStore::mount(SimFlash::<4, 512>::new(4)).unwrap();
    store.append(SagaId(500), &created(0, 8)).unwrap();
    fill_finished(&store, 10..22);
    let base = store.into_flash().unwrap().reboot();
    let tears = [Tear::Before, Tear::Partial, Tear::Noise];
    let mut cases = 0;
    for (steps, fail_at) in [(3, None), (3, Some(2)), (5, None)] {
        cases += sweep(&base, steps, fail_at, &tears);
    }
    assert!(cases > 50);
    // The erases really happened in the clean run.
    let store = FlashStore::mount(base.reboot()).unwrap();
    let books = Arc::new(Mutex::new(Books::default()));
    run_new(&store, SagaId(1), &books, 5, None);
    assert!(
        store.usage().unwrap().erases > 0,
        "the sweep never reclaimed"
    );
    assert_eq!(store.records(SagaId(500)).unwrap(), [created(0, 8)]);
}

#[test]
fn a_second_power_cut_during_the_resumed_run_is_resumed_too() {
    let steps = 2;
    let total = clean_ops(&Small::new(4), steps, None);
    for cut in 0..total {
        let mut flash = Small::new(4);
        flash.cut_power_at(cut, Tear::Partial);
        let books = Arc::new(Mutex::new(Books::default()));
        let store = FlashStore::mount(flash).unwrap();
        run_new(&store, SagaId(1), &books, steps, None);
        let rebooted = store.into_flash().unwrap().reboot();
        // Ops of a clean resume from here.
        let resume_ops = {
            let store = FlashStore::mount(rebooted.reboot()).unwrap();
            let books = Arc::new(Mutex::new(Books {
                action_runs: vec![0; steps],
                ..Books::default()
            }));
            assert!(resume_all(&store, &books, steps, None));
            store.into_flash().unwrap().ops()
        };
        for second in 0..resume_ops {
            let books = {
                let so_far = books.lock().unwrap();
                Arc::new(Mutex::new(Books {
                    applied: so_far.applied.clone(),
                    action_runs: so_far.action_runs.clone(),
                }))
            };
            let mut flash = rebooted.reboot();
            flash.seed(second);
            flash.cut_power_at(second, Tear::Noise);
            let store = FlashStore::mount(flash).unwrap();
            resume_all(&store, &books, steps, None);
            let store = FlashStore::mount(store.into_flash().unwrap().reboot()).unwrap();
            assert!(resume_all(&store, &books, steps, None));
            let context = format!("cut at {cut}, then at {second} of the resume");
            check_books(&store, SagaId(1), &books, steps, &context);
        }
    }
}

#[test]
fn a_power_cut_during_reclaim_loses_nothing_and_brings_nothing_back() {
    let store = FlashStore::mount(Small::new(4)).unwrap();
    fill_finished(&store, 0..3);
    store.append(SagaId(900), &created(0, 30)).unwrap();
    fill_finished(&store, 3..6);
    store.append(SagaId(900), &started(1, 0)).unwrap();
    store.append(SagaId(901), &created(0, 0)).unwrap();
    let base = store.into_flash().unwrap().reboot();
    let ops = {
        let store = FlashStore::mount(base.reboot()).unwrap();
        assert!(store.reclaim().unwrap() >= 1);
        store.into_flash().unwrap().ops()
    };
    assert!(ops >= 2);
    for tear in [Tear::Before, Tear::Partial, Tear::Noise] {
        for cut in 0..ops {
            let mut flash = base.reboot();
            flash.seed(cut);
            flash.cut_power_at(cut, tear);
            let store = FlashStore::mount(flash).unwrap();
            assert!(store.reclaim().is_err(), "{tear:?} {cut}");
            let flash = store.into_flash().unwrap();
            for mount in 0..2 {
                let context = format!("{tear:?} cut at {cut} of {ops}, mount {mount}");
                let store = FlashStore::mount(flash.reboot()).unwrap();
                assert_eq!(
                    store.unfinished().unwrap(),
                    [SagaId(900), SagaId(901)],
                    "{context}"
                );
                assert_eq!(
                    store.records(SagaId(900)).unwrap(),
                    [created(0, 30), started(1, 0)]
                );
                assert_eq!(
                    store.records(SagaId(901)).unwrap(),
                    [created(0, 0)],
                    "{context}"
                );
                for id in 0..6 {
                    match store.records(SagaId(id)) {
                        Ok(records) if records.is_empty() => {}
                        Ok(records) => {
                            assert_eq!(records, [created(0, 40), finished(1)], "{context}")
                        }
                        Err(Error::Reclaimed(_)) => {}
                        Err(other) => panic!("{context}: {other:?}"),
                    }
                }
                // The free sector is not lost: the store goes on working.
                store.reclaim().unwrap();
                fill_finished(&store, 1000..1030);
                assert_eq!(
                    store.unfinished().unwrap(),
                    [SagaId(900), SagaId(901)],
                    "{context}"
                );
                assert!(store.usage().unwrap().free_sectors >= 1, "{context}");
            }
        }
    }
}

#[test]
fn repeated_power_cuts_never_wear_the_store_out() {
    // One flash, power cut again and again at varied points of a workload of
    // finished and unfinished sagas; the store always mounts, keeps the
    // unfinished sagas and goes on.
    let mut flash = Small::new(3);
    let mut next_id = 0u128;
    let keep = SagaId(u128::MAX);
    {
        let store = FlashStore::mount(flash.clone()).unwrap();
        store.append(keep, &created(0, 12)).unwrap();
        flash = store.into_flash().unwrap().reboot();
    }
    for round in 0u64..120 {
        let tear = [Tear::Before, Tear::Partial, Tear::Noise][(round % 3) as usize];
        flash.seed(round);
        flash.cut_power_at(round * 7 % 23, tear);
        let store = FlashStore::mount(flash).unwrap();
        for _ in 0..20 {
            let id = SagaId(next_id);
            next_id += 1;
            if store.append(id, &created(0, 30)).is_err() || store.append(id, &finished(1)).is_err()
            {
                break;
            }
        }
        let _ = store.reclaim();
        flash = store.into_flash().unwrap().reboot();
        let store = FlashStore::mount(flash).unwrap();
        let unfinished = store.unfinished().unwrap();
        assert!(unfinished.contains(&keep), "round {round}: {unfinished:?}");
        assert_eq!(
            store.records(keep).unwrap(),
            [created(0, 12)],
            "round {round}"
        );
        // A saga whose Finished record was lost to the cut is unfinished:
        // give it up, as an operator would.
        for id in unfinished.into_iter().filter(|&id| id != keep) {
            assert_eq!(
                store.records(id).unwrap(),
                [created(0, 30)],
                "round {round}"
            );
            store.abandon(id, "cut").unwrap();
        }
        flash = store.into_flash().unwrap().reboot();
    }
}

#[test]
fn a_flush_that_finds_the_store_busy_is_pending_and_wakes_its_task() {
    let cell = Arc::new(OnceLock::new());
    let journal_slot = Arc::new(Mutex::new(None));
    let flushes = Arc::new(Mutex::new(Vec::new()));
    let woken = Arc::new(Woken::default());
    let flash = Reentrant {
        inner: Flash::new(4),
        store: Arc::new(OnceLock::new()),
        seen: Arc::default(),
        journal: Arc::clone(&journal_slot),
        flushes: Arc::clone(&flushes),
        woken: Arc::clone(&woken),
    };
    let store = FlashStore::mount(flash).unwrap();
    cell.set(store.clone()).unwrap();
    let mut journal = store.journal(SagaId(2)).unwrap();
    journal.append(&created(0, 0)).unwrap();
    *journal_slot.lock().unwrap() = Some(journal);
    // This append holds the store while it writes; the journal's flush,
    // polled from inside the write, finds the store busy.
    store.append(SagaId(1), &created(0, 0)).unwrap();
    assert_eq!(
        *flushes.lock().unwrap(),
        [true],
        "the flush inside the write was not Pending"
    );
    assert!(
        woken.0.load(std::sync::atomic::Ordering::SeqCst),
        "the flush did not wake its task"
    );
    assert!(store.records(SagaId(2)).unwrap().is_empty());
    assert_eq!(store.records(SagaId(1)).unwrap(), [created(0, 0)]);
}
