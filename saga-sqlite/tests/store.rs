//! The store: round trips, refused gaps, real runs, group commit, the
//! operator surface, reopening and closing.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test: std paths read as what they are"
)]

use std::future::{Future, pending, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Waker};
use std::thread;
use std::time::SystemTime;

use saga_core::journal::{
    Event, Journal, JournalError, JournalErrorKind, Outcome, Record, ReplayError, SagaId,
    SagaState, Start, Unwind, replay,
};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_sqlite::{SqliteJournal, Store, StoreErrorKind};

fn created(definition: &str) -> Record {
    Record {
        seq: 0,
        event: Event::Created {
            definition: definition.into(),
            version: 3,
            fingerprint: 0xfeed,
            parameters: vec![1, 2, 3],
        },
    }
}

fn started(seq: u64, step: u32) -> Record {
    Record {
        seq,
        event: Event::ActionStarted { step, attempt: 1 },
    }
}

fn succeeded(seq: u64, step: u32) -> Record {
    Record {
        seq,
        event: Event::ActionSucceeded {
            step,
            output: Some(vec![step as u8]),
        },
    }
}

fn flush(journal: &mut SqliteJournal) -> Result<(), JournalError> {
    smol::block_on(poll_fn(|cx| journal.poll_flush(cx)))
}

fn write(journal: &mut SqliteJournal, records: &[Record]) -> Result<(), JournalError> {
    for record in records {
        journal.append(record)?;
    }
    flush(journal)
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("sagas.db")).unwrap();
    (dir, store)
}

#[test]
fn append_flush_and_read_back() {
    let (_dir, store) = temp_store();
    let id = store.new_id();
    let mut journal = store.journal(id).unwrap();
    assert_eq!(journal.next_seq(), 0);
    let records = vec![created("trip"), started(1, 0), succeeded(2, 0)];
    write(&mut journal, &records[..1]).unwrap();
    write(&mut journal, &records[1..]).unwrap();
    assert_eq!(store.records(id).unwrap(), records);
    // A flush with nothing new is ready at once and commits nothing.
    let commits = store.commits();
    flush(&mut journal).unwrap();
    assert_eq!(store.commits(), commits);
    assert_eq!(commits, 2);
    // Unknown sagas have no records.
    assert!(store.records(SagaId(1)).unwrap().is_empty());
    // A journal for an existing saga goes on from its last record.
    let mut again = store.journal(id).unwrap();
    assert_eq!(again.next_seq(), 3);
    write(&mut again, &[started(3, 1)]).unwrap();
    assert_eq!(store.records(id).unwrap().len(), 4);
}

#[test]
fn gaps_and_repeats_are_refused() {
    let (_dir, store) = temp_store();
    let id = store.new_id();
    let mut journal = store.journal(id).unwrap();

    // The journal itself refuses a record that is not the next one.
    let error = journal.append(&started(1, 0)).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    write(&mut journal, &[created("trip")]).unwrap();
    let error = journal.append(&started(2, 0)).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert!(error.message().contains("record 2"), "{error}");

    // Two journals of one saga: the writer refuses the second one's
    // records, which would repeat or leave a gap.
    let mut first = store.journal(id).unwrap();
    let mut second = store.journal(id).unwrap();
    write(&mut first, &[started(1, 0)]).unwrap();
    let error = write(&mut second, &[started(1, 0), succeeded(2, 0)]).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert!(error.message().contains("refused"), "{error}");
    // The failed journal keeps failing.
    assert!(flush(&mut second).is_err());
    assert!(second.append(&started(3, 1)).is_err());
    // Nothing of the refused batch was written; the first journal goes on.
    assert_eq!(store.records(id).unwrap(), [created("trip"), started(1, 0)]);
    write(&mut first, &[succeeded(2, 0)]).unwrap();
    assert_eq!(store.records(id).unwrap().len(), 3);

    // A journal opened before another wrote, for a new saga: its record 0
    // would repeat.
    let other = store.new_id();
    let mut late = store.journal(other).unwrap();
    write(&mut store.journal(other).unwrap(), &[created("a")]).unwrap();
    let error = write(&mut late, &[created("b")]).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert_eq!(store.records(other).unwrap(), [created("a")]);
}

fn three_steps(hang: bool) -> Saga<String> {
    SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_step(
            move || async move {
                if hang {
                    pending::<()>().await;
                }
                Ok::<_, String>(())
            },
            || async { Ok(()) },
        )
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .build()
}

#[test]
fn a_saga_runs_through_the_journal_and_replays_committed() {
    let (_dir, store) = temp_store();
    let id = store.new_id();
    let mut saga = three_steps(false);
    let mut journal = store.journal(id).unwrap();
    let run = saga
        .run_journaled(&mut journal, Start::new("three", 1, vec![9]))
        .unwrap();
    smol::block_on(run).unwrap();
    let records = store.records(id).unwrap();
    assert_eq!(records.len(), 8); // created, 3 x (started, succeeded), finished
    let history = replay(&records).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.definition, "three");
    assert_eq!(history.parameters, [9]);
    assert!(store.unfinished().unwrap().is_empty());
    // One commit per flush of a lone saga: one per step and one at the end.
    assert_eq!(store.commits(), 4);
}

#[test]
fn a_crashed_saga_is_resumed_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let id;
    {
        let store = Store::open(&path).unwrap();
        id = store.new_id();
        let mut saga = three_steps(true);
        let mut journal = store.journal(id).unwrap();
        let mut run = saga
            .run_journaled(&mut journal, Start::new("three", 1, vec![]))
            .unwrap();
        // Run until the second step hangs (its start is durable), then
        // "crash": drop the run and the store.
        let mut cx = Context::from_waker(Waker::noop());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
            let records = store.records(id).unwrap();
            if records.last() == Some(&started(3, 1)) {
                break;
            }
            thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(store.records(id).unwrap().last(), Some(&started(3, 1)));
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.unfinished().unwrap(), [id]);
    let history = replay(&store.records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Forward);
    let mut journal = store.journal(id).unwrap();
    assert_eq!(journal.next_seq(), history.next_seq());
    let mut saga = three_steps(false);
    smol::block_on(saga.resume(&mut journal, &history).unwrap()).unwrap();
    let history = replay(&store.records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(1).action_attempts, 2);
    assert!(store.unfinished().unwrap().is_empty());
}

#[test]
fn concurrent_flushes_share_commits() {
    const SAGAS: usize = 50;
    const STEPS: u64 = 20;
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(SAGAS));
    let threads: Vec<_> = (0..SAGAS)
        .map(|_| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let id = store.new_id();
                let mut journal = store.journal(id).unwrap();
                barrier.wait();
                write(&mut journal, &[created("load")]).unwrap();
                for step in 0..STEPS {
                    write(&mut journal, &[started(1 + 2 * step, step as u32)]).unwrap();
                    journal
                        .append(&succeeded(2 + 2 * step, step as u32))
                        .unwrap();
                }
                flush(&mut journal).unwrap();
                id
            })
        })
        .collect();
    let ids: Vec<SagaId> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let flushes = SAGAS as u64 * (STEPS + 2);
    let commits = store.commits();
    println!(
        "{flushes} flushes from {SAGAS} threads in {commits} commits: {:.3} commits per flush",
        commits as f64 / flushes as f64
    );
    assert!(commits < flushes, "{commits} commits for {flushes} flushes");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), SAGAS, "ids are unique");
    for id in ids {
        let records = store.records(id).unwrap();
        assert_eq!(records.len() as u64, 1 + 2 * STEPS);
        replay(&records).unwrap();
    }
}

#[test]
fn unfinished_list_and_abandon() {
    let (_dir, store) = temp_store();
    let before = SystemTime::now() - std::time::Duration::from_secs(1);
    let running = store.new_id();
    let unwinding = store.new_id();
    let done = store.new_id();
    write(
        &mut store.journal(running).unwrap(),
        &[created("running"), started(1, 0)],
    )
    .unwrap();
    write(
        &mut store.journal(unwinding).unwrap(),
        &[
            created("unwinding"),
            started(1, 0),
            Record {
                seq: 2,
                event: Event::ActionFailed {
                    step: 0,
                    attempt: 1,
                    message: "card declined".into(),
                },
            },
            Record {
                seq: 3,
                event: Event::Unwinding {
                    step: 0,
                    reason: Unwind::Failed,
                },
            },
        ],
    )
    .unwrap();
    write(
        &mut store.journal(done).unwrap(),
        &[
            created("done"),
            started(1, 0),
            succeeded(2, 0),
            Record {
                seq: 3,
                event: Event::Finished {
                    outcome: Outcome::Committed,
                    message: String::new(),
                },
            },
        ],
    )
    .unwrap();

    assert_eq!(store.unfinished().unwrap(), [running, unwinding]);
    let list = store.list().unwrap();
    assert_eq!(list.len(), 3);
    let summary = |id| list.iter().find(|s| s.id == id).unwrap();
    assert_eq!(summary(running).definition, "running");
    assert_eq!(summary(running).version, 3);
    assert_eq!(summary(running).state, Ok(SagaState::Forward));
    assert_eq!(summary(running).records, 2);
    assert_eq!(summary(running).last_error, None);
    assert_eq!(summary(unwinding).state, Ok(SagaState::Unwinding));
    assert_eq!(
        summary(unwinding).last_error.as_deref(),
        Some("card declined")
    );
    assert_eq!(
        summary(done).state,
        Ok(SagaState::Finished(Outcome::Committed))
    );
    for s in &list {
        assert!(s.created >= before && s.created <= s.updated);
        assert!(s.updated <= SystemTime::now());
    }

    // Abandon: unfinished sagas only.
    store.abandon(unwinding, "the bank is gone").unwrap();
    let history = replay(&store.records(unwinding).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Abandoned));
    assert_eq!(history.last_error(), Some("the bank is gone"));
    assert_eq!(store.unfinished().unwrap(), [running]);
    let error = store.abandon(unwinding, "again").unwrap_err();
    assert_eq!(
        error.kind(),
        StoreErrorKind::Finished(Outcome::Abandoned),
        "{error}"
    );
    let error = store.abandon(done, "no").unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Finished(Outcome::Committed));
    let error = store.abandon(SagaId(42), "who").unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
    assert!(error.to_string().contains(&SagaId(42).to_string()));
    // A running saga's journal cannot write past the abandon.
    let mut journal = store.journal(running).unwrap();
    store.abandon(running, "operator").unwrap();
    let error = write(&mut journal, &[succeeded(2, 0)]).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert!(store.unfinished().unwrap().is_empty());
}

#[test]
fn reopening_keeps_everything_and_dropping_closes_journals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let store = Store::open(&path).unwrap();
    let ids: Vec<SagaId> = (0..5).map(|_| store.new_id()).collect();
    for id in &ids {
        write(
            &mut store.journal(*id).unwrap(),
            &[created("kept"), started(1, 0)],
        )
        .unwrap();
    }
    let mut outliving = store.journal(ids[0]).unwrap();
    // Appended and queued (sent by a flush that is not awaited) before the
    // store is dropped: committed by the writer as it stops.
    outliving.append(&succeeded(2, 0)).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let _ = outliving.poll_flush(&mut cx);
    let list = store.list().unwrap();
    drop(store);
    // The writer is gone: the journal is closed.
    assert!(
        flush(&mut outliving).is_ok(),
        "the queued flush was committed"
    );
    outliving.append(&started(3, 1)).unwrap();
    let error = flush(&mut outliving).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Closed);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.unfinished().unwrap(), ids);
    assert_eq!(
        store.records(ids[0]).unwrap(),
        [created("kept"), started(1, 0), succeeded(2, 0)]
    );
    for id in &ids[1..] {
        assert_eq!(
            store.records(*id).unwrap(),
            [created("kept"), started(1, 0)]
        );
    }
    let relisted = store.list().unwrap();
    assert_eq!(relisted.len(), list.len());
    assert_eq!(relisted[1..], list[1..]);
    assert_eq!(store.commits(), 0);
    // New ids stay unique after a reopen.
    assert!(!ids.contains(&store.new_id()));
}

#[test]
fn a_foreign_schema_version_or_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    drop(Store::open(&path).unwrap());
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch("PRAGMA user_version = 99;")
            .unwrap();
    }
    let error = Store::open(&path).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Schema);
    assert!(error.to_string().contains("99"), "{error}");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let error = Store::open(&junk).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Sqlite);
    assert!(error.to_string().contains("junk.db"), "{error}");
}

#[test]
fn an_undecodable_record_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let store = Store::open(&path).unwrap();
    let id = store.new_id();
    write(
        &mut store.journal(id).unwrap(),
        &[created("x"), started(1, 0)],
    )
    .unwrap();
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute("UPDATE records SET body = x'01ff' WHERE seq = 1", [])
            .unwrap();
    }
    let listed = store.list().unwrap().remove(0).corrupt;
    for error in [
        store.records(id).unwrap_err(),
        listed.expect("listed as corrupt"),
        store.abandon(id, "x").unwrap_err(),
    ] {
        assert_eq!(error.kind(), StoreErrorKind::Corrupt);
        let shown = error.to_string();
        assert!(
            shown.contains(&id.to_string()) && shown.contains("record 1"),
            "{shown}"
        );
    }
}

#[test]
fn one_corrupt_saga_does_not_hide_the_others() {
    // Each damage done to the middle saga of three, behind the store's
    // back: the record it makes unreadable, and the rows left.
    let damages = [
        (
            "UPDATE records SET body = x'01ff' WHERE saga_id = ?1 AND seq = 1",
            1,
            3,
        ),
        ("DELETE FROM records WHERE saga_id = ?1 AND seq = 1", 1, 2),
        (
            "UPDATE records SET checksum = checksum + 1 WHERE saga_id = ?1 AND seq = 2",
            2,
            3,
        ),
        (
            "UPDATE records SET body = x'00' WHERE saga_id = ?1 AND seq = 0",
            0,
            3,
        ),
    ];
    for (damage, record, rows) in damages {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sagas.db");
        let store = Store::open(&path).unwrap();
        let ids = [store.new_id(), store.new_id(), store.new_id()];
        for (n, id) in ids.into_iter().enumerate() {
            let mut records = vec![created(&format!("saga-{n}")), started(1, 0)];
            if n != 2 {
                records.push(succeeded(2, 0));
            }
            write(&mut store.journal(id).unwrap(), &records).unwrap();
        }
        let before = store.list().unwrap();
        assert!(before.iter().all(|summary| summary.corrupt.is_none()));
        let victim = ids[1];
        {
            let connection = rusqlite::Connection::open(&path).unwrap();
            let changed = connection
                .execute(damage, [&victim.0.to_be_bytes()[..]])
                .unwrap();
            assert_eq!(changed, 1, "{damage}");
        }

        let list = store.list().unwrap();
        let listed: Vec<SagaId> = list.iter().map(|summary| summary.id).collect();
        assert_eq!(listed, ids, "{damage}");
        // The others are listed as they were, in full.
        assert_eq!(list[0], before[0], "{damage}");
        assert_eq!(list[2], before[2], "{damage}");
        assert_eq!(list[2].state, Ok(SagaState::Forward), "{damage}");

        let summary = &list[1];
        let error = summary.corrupt.as_ref().expect(damage);
        assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{damage}");
        let shown = error.to_string();
        assert!(
            shown.contains(&victim.to_string()) && shown.contains(&format!("record {record}")),
            "{damage}: {shown}"
        );
        // The error `records` gives for it.
        assert_eq!(Some(store.records(victim).unwrap_err()), summary.corrupt);
        assert_eq!(summary.records, rows, "{damage}");
        assert_eq!(
            (summary.created, summary.updated),
            (before[1].created, before[1].updated)
        );
        // What the readable records before the damage tell.
        if record == 0 {
            assert_eq!(summary.definition, "", "{damage}");
            assert_eq!(summary.state, Err(ReplayError::Empty), "{damage}");
        } else {
            assert_eq!(summary.definition, "saga-1", "{damage}");
            assert_eq!(summary.version, 3, "{damage}");
            assert_eq!(summary.state, Ok(SagaState::Forward), "{damage}");
        }
    }
}

#[test]
fn the_store_and_journals_are_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Store>();
    send::<SqliteJournal>();
    // A journal is what a run of a `Send` saga takes.
    let (_dir, store) = temp_store();
    let mut journal = store.journal(store.new_id()).unwrap();
    let _: &mut (dyn Journal + Send) = &mut journal;
}

#[test]
fn a_saga_whose_records_do_not_replay_is_listed_and_not_abandoned() {
    let (_dir, store) = temp_store();
    let id = store.new_id();
    // Numbered without a gap, but record 1 does not follow from record 0.
    write(
        &mut store.journal(id).unwrap(),
        &[created("odd"), succeeded(1, 0)],
    )
    .unwrap();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].definition, "odd");
    assert!(list[0].state.is_err(), "{:?}", list[0].state);
    let error = store.abandon(id, "x").unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Replay);
    assert!(error.to_string().contains("record 1"), "{error}");
}

#[test]
fn fifty_sagas_on_one_executor_share_commits() {
    const SAGAS: usize = 50;
    let (_dir, store) = temp_store();
    let executor = smol::LocalExecutor::new();
    let tasks: Vec<_> = (0..SAGAS)
        .map(|_| {
            let id = store.new_id();
            let mut journal = store.journal(id).unwrap();
            executor.spawn(async move {
                let mut saga = three_steps(false);
                let run = saga
                    .run_journaled(&mut journal, Start::new("three", 1, vec![]))
                    .unwrap();
                run.await.unwrap();
                id
            })
        })
        .collect();
    let ids = smol::block_on(executor.run(async {
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await);
        }
        ids
    }));
    // Each saga flushes once per step and once at its end.
    let flushes = SAGAS as u64 * 4;
    let commits = store.commits();
    println!(
        "{flushes} flushes from {SAGAS} sagas on one thread in {commits} commits: \
         {:.3} commits per flush",
        commits as f64 / flushes as f64
    );
    assert!(commits < flushes, "{commits} commits for {flushes} flushes");
    for id in ids {
        let history = replay(&store.records(id).unwrap()).unwrap();
        assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    }
}
