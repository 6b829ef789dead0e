//! Torn files: copies of a store whose write-ahead log, or main file, was
//! cut short (as a crash, a full disk or a bad copy leaves them) either
//! open and hold, for every saga, a prefix of what was written, or fail to
//! open with a clear error. Never a panic, never a record that was not
//! written.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test: std paths read as what they are"
)]

use std::collections::BTreeMap;
use std::fs;
use std::future::poll_fn;
use std::path::{Path, PathBuf};

use saga_core::journal::{Event, Journal, Outcome, Record, SagaId, replay};
use saga_sqlite::{SqliteJournal, Store};

type Written = BTreeMap<SagaId, Vec<Record>>;

fn record(seq: u64) -> Record {
    let event = match seq {
        0 => Event::Created {
            definition: "torn".into(),
            version: 1,
            fingerprint: 0xabcdef,
            // Large enough that records span several pages.
            parameters: vec![0x33; 700],
        },
        seq if seq % 2 == 1 => Event::ActionStarted {
            step: (seq / 2) as u32,
            attempt: 1,
        },
        seq => Event::ActionSucceeded {
            step: (seq / 2 - 1) as u32,
            output: Some(vec![seq as u8; 300]),
        },
    };
    Record { seq, event }
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

fn write(journal: &mut SqliteJournal, records: &[Record]) {
    for record in records {
        journal.append(record).unwrap();
    }
    smol::block_on(poll_fn(|cx| journal.poll_flush(cx))).unwrap();
}

/// Appends `count` more records to saga `id`, one flush (one transaction)
/// per two records.
fn grow(store: &Store, written: &mut Written, id: SagaId, count: u64, finish: bool) {
    let records = written.entry(id).or_default();
    let mut journal = store.journal(id).unwrap();
    let from = records.len() as u64;
    let mut new: Vec<Record> = (from..from + count).map(record).collect();
    if finish {
        new.push(finished(from + count));
    }
    for chunk in new.chunks(2) {
        write(&mut journal, chunk);
    }
    records.extend(new);
}

/// The files of a store with some records checkpointed into the main file
/// and more in its write-ahead log, and what was written to them.
fn build(dir: &Path) -> (PathBuf, PathBuf, Written) {
    let path = dir.join("sagas.db");
    let mut written = Written::new();
    let ids: Vec<SagaId>;
    {
        let store = Store::open(&path).unwrap();
        ids = (0..6).map(|_| store.new_id()).collect();
        for (n, id) in ids.iter().enumerate() {
            grow(&store, &mut written, *id, 3 + n as u64, n == 0);
        }
    } // Closing checkpoints everything into the main file.
    let store = Store::open(&path).unwrap();
    for (n, id) in ids.iter().enumerate().skip(1) {
        grow(&store, &mut written, *id, 4, n == 1);
    }
    for _ in 0..3 {
        let id = store.new_id();
        grow(&store, &mut written, id, 5, false);
    }
    // Copied while the store is open and idle: the log is not yet
    // checkpointed.
    let copies = dir.join("copy");
    fs::create_dir(&copies).unwrap();
    let db = copies.join("sagas.db");
    let wal = copies.join("sagas.db-wal");
    fs::copy(&path, &db).unwrap();
    fs::copy(dir.join("sagas.db-wal"), &wal).unwrap();
    drop(store);
    assert!(
        fs::metadata(&wal).unwrap().len() > 0,
        "the log holds records"
    );
    (db, wal, written)
}

/// About 40 offsets in `0..=len`, and those around the log's frame
/// boundaries (a 32-byte header, then frames of 24 bytes and a page).
fn offsets(len: u64, frames: bool) -> Vec<u64> {
    let mut offsets: Vec<u64> = (0..40).map(|n| len * n / 40).collect();
    offsets.extend([1, 31, 32, 33, len.saturating_sub(1)]);
    if frames {
        let frame = 24 + 4096;
        for k in [1, 2, 3] {
            let boundary = 32 + k * frame;
            offsets.extend([boundary - 1, boundary, boundary + 24]);
        }
    }
    offsets.retain(|offset| *offset <= len);
    offsets.sort();
    offsets.dedup();
    offsets
}

/// Opens the store at `db` (with its log, if any, beside it) and checks
/// what it holds against `written`.
fn check(db: &Path, written: &Written, what: &str) -> bool {
    let store = match Store::open(db) {
        Ok(store) => store,
        Err(error) => {
            let shown = error.to_string();
            assert!(!shown.is_empty(), "{what}: an error that says nothing");
            println!("{what}: refused: {shown}");
            return false;
        }
    };
    let mut kept = 0;
    for (id, records) in written {
        match store.records(*id) {
            Ok(found) => {
                assert!(
                    found.len() <= records.len() && found[..] == records[..found.len()],
                    "{what}: saga {id} holds records that are not a prefix of those written: \
                     {found:?} of {records:?}",
                );
                kept += found.len();
                // Replay succeeds or refuses; it does not panic.
                let _ = replay(&found);
            }
            Err(error) => {
                let shown = error.to_string();
                assert!(!shown.is_empty(), "{what}: an error that says nothing");
                println!("{what}: saga {id}: {shown}");
            }
        }
    }
    if let Ok(unfinished) = store.unfinished() {
        for id in unfinished {
            assert!(
                written.contains_key(&id),
                "{what}: saga {id} was never written"
            );
        }
    }
    if let Ok(list) = store.list() {
        for summary in list {
            assert!(
                written.contains_key(&summary.id),
                "{what}: saga {} was never written",
                summary.id
            );
        }
    }
    println!("{what}: opened, {kept} records kept");
    true
}

fn truncated(dir: &Path, db: &Path, wal: Option<&Path>, cut: &Path, at: u64) -> PathBuf {
    let copy = dir.join(format!(
        "cut-{}-{at}",
        cut.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir(&copy).unwrap();
    let new_db = copy.join("sagas.db");
    fs::copy(db, &new_db).unwrap();
    if let Some(wal) = wal {
        fs::copy(wal, copy.join("sagas.db-wal")).unwrap();
    }
    let target = match cut == db {
        true => new_db.clone(),
        false => copy.join("sagas.db-wal"),
    };
    let file = fs::OpenOptions::new().write(true).open(&target).unwrap();
    file.set_len(at).unwrap();
    new_db
}

#[test]
fn a_torn_log_keeps_a_prefix_or_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal, written) = build(dir.path());
    // The untouched copy holds everything.
    let whole = truncated(
        dir.path(),
        &db,
        Some(&wal),
        &wal,
        fs::metadata(&wal).unwrap().len(),
    );
    assert!(check(&whole, &written, "the whole copy"));
    let total: usize = written.values().map(Vec::len).sum();
    let store = Store::open(&whole).unwrap();
    let kept: usize = written
        .keys()
        .map(|id| store.records(*id).unwrap().len())
        .sum();
    assert_eq!(kept, total);
    drop(store);

    let len = fs::metadata(&wal).unwrap().len();
    let mut opened = 0;
    let cuts = offsets(len, true);
    for at in &cuts {
        let copy = truncated(dir.path(), &db, Some(&wal), &wal, *at);
        opened += check(&copy, &written, &format!("log cut at {at} of {len}")) as usize;
    }
    // A torn log only loses its last transactions: the store opens.
    assert_eq!(opened, cuts.len());
}

#[test]
fn a_torn_main_file_keeps_a_prefix_or_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal, written) = build(dir.path());
    let len = fs::metadata(&db).unwrap().len();
    for at in offsets(len, false) {
        // With the log beside it, and without.
        let copy = truncated(dir.path(), &db, Some(&wal), &db, at);
        check(
            &copy,
            &written,
            &format!("main file cut at {at} of {len}, with its log"),
        );
        let alone = dir.path().join(format!("alone-{at}"));
        fs::create_dir(&alone).unwrap();
        let alone_db = truncated(&alone, &db, None, &db, at);
        check(
            &alone_db,
            &written,
            &format!("main file cut at {at} of {len}, alone"),
        );
    }
}
