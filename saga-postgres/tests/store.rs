//! The store against a real server (each test starts its own throwaway
//! cluster, see `support/cluster.rs`): migrations, runs, claims, leases,
//! fencing, the operator surface and corruption.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test: std paths read as what they are"
)]

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use saga_core::journal::{
    Event, Journal, JournalError, JournalErrorKind, Outcome, Record, SagaId, SagaState, Start,
    Unwind, replay,
};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_postgres::{Claim, PgJournal, PgStore, StoreErrorKind};

use cluster::Cluster;

const LONG: Duration = Duration::from_secs(600);
/// A lease a test lets expire: long enough for what the test does while
/// it holds (a few statements) even on a loaded machine.
const SHORT: Duration = Duration::from_millis(1500);

async fn setup() -> Option<(Cluster, PgStore)> {
    let cluster = Cluster::start()?;
    let store = PgStore::open(cluster.pool(20).await).await.unwrap();
    Some((cluster, store))
}

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

fn finished(seq: u64, outcome: Outcome) -> Record {
    Record {
        seq,
        event: Event::Finished {
            outcome,
            message: String::new(),
        },
    }
}

async fn flush(journal: &mut PgJournal) -> Result<(), JournalError> {
    poll_fn(|cx| journal.poll_flush(cx)).await
}

async fn write(journal: &mut PgJournal, records: &[Record]) -> Result<(), JournalError> {
    for record in records {
        journal.append(record)?;
    }
    flush(journal).await
}

/// A new saga, created for `owner`, with `records` written.
async fn saga_with(store: &PgStore, owner: &str, lease: Duration, records: &[Record]) -> Claim {
    saga_and_journal(store, owner, lease, records).await.0
}

/// A new saga, created for `owner`, with `records` written through the
/// journal returned (a journal is numbered on from its claim's
/// `next_seq`, so a second journal of the claim would start over).
async fn saga_and_journal(
    store: &PgStore,
    owner: &str,
    lease: Duration,
    records: &[Record],
) -> (Claim, PgJournal) {
    let claim = store.create(store.new_id(), owner, lease).await.unwrap();
    let mut journal = store.journal(&claim);
    write(&mut journal, records).await.unwrap();
    (claim, journal)
}

async fn expire(lease: Duration) {
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
}

fn three_steps() -> Saga<String> {
    SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_twice_or_at_once_is_fine_and_a_newer_schema_is_refused() {
    let Some((cluster, store)) = setup().await else {
        return;
    };
    store.migrate().await.unwrap();
    // Workers starting together: the advisory lock serialises them.
    let migrations: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for migration in migrations {
        migration.await.unwrap().unwrap();
    }
    let claim = saga_with(&store, "w", LONG, &[created("kept")]).await;
    store.migrate().await.unwrap();
    assert_eq!(store.records(claim.id()).await.unwrap(), [created("kept")]);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'saga'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(tables, 3);

    sqlx::query("UPDATE saga.schema_version SET version = 99")
        .execute(store.pool())
        .await
        .unwrap();
    let error = store.migrate().await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Schema, "{error}");
    assert!(error.to_string().contains("99"), "{error}");
    let error = PgStore::open(cluster.pool(1).await).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Schema, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_run_commits_and_replays_finished() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let id = store.new_id();
    let claim = store.create(id, "worker-a", LONG).await.unwrap();
    assert_eq!((claim.epoch(), claim.next_seq()), (1, 0));
    assert_eq!(claim.context().epoch(), 1);
    let mut journal = store.journal(&claim);
    let mut saga = three_steps();
    saga.run_journaled(&mut journal, Start::new("three", 7, vec![9]))
        .unwrap()
        .await
        .unwrap();
    let records = store.records(id).await.unwrap();
    assert_eq!(records.len(), 8); // created, 3 x (started, succeeded), finished
    let history = replay(&records).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(store.history(id).await.unwrap(), history);
    assert_eq!(history.parameters, [9]);

    // The row follows the records: definition, state, no owner once done.
    let list = store.list(None).await.unwrap();
    assert_eq!(list.len(), 1);
    let summary = &list[0];
    assert_eq!(summary.id, id);
    assert_eq!((summary.definition.as_str(), summary.version), ("three", 7));
    assert_eq!(summary.state, SagaState::Finished(Outcome::Committed));
    assert_eq!(summary.owner, None);
    assert_eq!(summary.lease_left, None);
    assert_eq!(summary.records, 8);
    assert_eq!(summary.epoch, 1);
    assert!(store.unfinished().await.unwrap().is_empty());
    // A finished saga is not claimed.
    expire(Duration::ZERO).await;
    assert!(store.claim("b", LONG, 10).await.unwrap().is_empty());
    // Its journal cannot write past the end (the claim no longer holds it).
    let error = write(&mut journal, &[started(8, 0)]).await.unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    // A second saga of the same id is refused.
    let error = store.create(id, "worker-a", LONG).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Exists, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_only_unfinished_sagas_whose_lease_expired_and_raise_the_epoch() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let short = SHORT;
    let held = saga_with(&store, "a", LONG, &[created("held")]).await;
    let lapsed = saga_with(&store, "a", short, &[created("lapsed"), started(1, 0)]).await;
    let unwinding = saga_with(
        &store,
        "a",
        short,
        &[
            created("unwinding"),
            started(1, 0),
            Record {
                seq: 2,
                event: Event::ActionFailed {
                    step: 0,
                    attempt: 1,
                    message: "declined".into(),
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
    .await;
    let done = saga_with(
        &store,
        "a",
        short,
        &[
            created("done"),
            started(1, 0),
            succeeded(2, 0),
            finished(3, Outcome::Committed),
        ],
    )
    .await;
    // Before the short leases expire, nothing is claimable.
    assert!(store.claim("b", LONG, 10).await.unwrap().is_empty());
    expire(short).await;

    let claims = store.claim("b", LONG, 10).await.unwrap();
    let mut expected = vec![lapsed.id(), unwinding.id()];
    expected.sort();
    let ids: Vec<SagaId> = claims.iter().map(Claim::id).collect();
    assert_eq!(ids, expected, "not {:?} nor {:?}", held.id(), done.id());
    for claim in &claims {
        assert_eq!(claim.owner(), "b");
        assert_eq!(claim.epoch(), 2);
        assert_eq!(claim.recoveries(), 1);
        assert_eq!(claim.context().epoch(), 2);
    }
    let claim_of = |id| claims.iter().find(|claim| claim.id() == id).unwrap();
    assert_eq!(claim_of(lapsed.id()).next_seq(), 2);
    assert_eq!(claim_of(lapsed.id()).state(), SagaState::Forward);
    assert_eq!(claim_of(unwinding.id()).next_seq(), 4);
    assert_eq!(claim_of(unwinding.id()).state(), SagaState::Unwinding);
    // Claimed: no longer claimable, until that lease expires in turn.
    assert!(store.claim("c", LONG, 10).await.unwrap().is_empty());

    // `limit` bounds a claim; each claim raises the epoch again.
    let again = store.create(store.new_id(), "a", short).await.unwrap();
    let other = store.create(store.new_id(), "a", short).await.unwrap();
    expire(short).await;
    let first = store.claim("c", short, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = store.claim("c", short, 5).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].id(), second[0].id());
    expire(short).await;
    let third = store.claim("d", LONG, 5).await.unwrap();
    assert_eq!(third.len(), 2);
    assert!(
        third
            .iter()
            .all(|claim| claim.epoch() == 3 && claim.recoveries() == 2)
    );
    let mut both = vec![again.id(), other.id()];
    both.sort();
    assert_eq!(third.iter().map(Claim::id).collect::<Vec<_>>(), both);
    // A saga created and never written: claimed with nothing to resume.
    assert!(third.iter().all(|claim| claim.next_seq() == 0));
    let error = store.history(again.id()).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_get_the_same_saga() {
    const SAGAS: usize = 60;
    const CLAIMERS: usize = 6;
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    for _ in 0..SAGAS {
        // Expired at once: every one is claimable.
        store
            .create(store.new_id(), "gone", Duration::ZERO)
            .await
            .unwrap();
    }
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                let owner = format!("worker-{worker}");
                let mut mine = Vec::new();
                loop {
                    let claims = store.claim(&owner, LONG, 3).await.unwrap();
                    if claims.is_empty() {
                        return mine;
                    }
                    mine.extend(claims);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut claimed = 0;
    let mut busy = 0;
    for claimer in claimers {
        let mine = claimer.await.unwrap();
        busy += usize::from(!mine.is_empty());
        for claim in mine {
            assert_eq!(claim.epoch(), 2);
            assert!(seen.insert(claim.id()), "{} claimed twice", claim.id());
            claimed += 1;
        }
    }
    assert_eq!(claimed, SAGAS);
    println!("{SAGAS} sagas claimed by {busy} of {CLAIMERS} claimers, none twice");
    // Each saga's row names the one worker that got it, at epoch 2.
    for summary in store.list(None).await.unwrap() {
        assert_eq!(summary.epoch, 2);
        assert_eq!(summary.recoveries, 1);
        assert!(summary.owner.unwrap().starts_with("worker-"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_whose_lease_was_taken_over_is_fenced_and_writes_nothing() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let short = SHORT;
    let claim = store.create(store.new_id(), "old", short).await.unwrap();
    let id = claim.id();
    let mut journal = store.journal(&claim);
    assert_eq!((journal.epoch(), journal.owner()), (1, "old"));
    write(&mut journal, &[created("fenced"), started(1, 0)])
        .await
        .unwrap();

    // The lease expires; with no one claiming, the journal is fenced too.
    expire(short).await;
    journal.append(&succeeded(2, 0)).unwrap();
    journal.append(&started(3, 1)).unwrap();
    let error = flush(&mut journal).await.unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    assert!(error.to_string().contains("expired"), "{error}");
    assert_eq!(
        store.records(id).await.unwrap(),
        [created("fenced"), started(1, 0)]
    );

    // Another saga, taken over by another worker once its lease expired:
    // the old journal writes nothing more.
    let (claim, mut journal) =
        saga_and_journal(&store, "old", short, &[created("fenced"), started(1, 0)]).await;
    let id = claim.id();
    expire(short).await;
    let new: Vec<Claim> = store
        .claim("new", LONG, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|claim| claim.id() == id)
        .collect();
    assert_eq!(new.len(), 1);
    assert_eq!((new[0].epoch(), new[0].next_seq()), (2, 2));
    let error = write(&mut journal, &[succeeded(2, 0)]).await.unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    assert!(error.to_string().contains("epoch 2"), "{error}");
    assert!(error.to_string().contains("new"), "{error}");
    // Failed once, the journal keeps failing.
    assert!(flush(&mut journal).await.is_err());
    assert!(journal.append(&started(3, 1)).is_err());
    assert_eq!(
        store.records(id).await.unwrap(),
        [created("fenced"), started(1, 0)]
    );
    // The old claim can no longer renew, release nor quarantine it.
    assert!(store.renew([&claim], LONG).await.unwrap().is_empty());
    assert!(store.release([&claim]).await.unwrap().is_empty());
    let error = store.quarantine(&claim, "x").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Fenced, "{error}");

    // The new owner goes on from where the records stop.
    let mut current = store.journal(&new[0]);
    write(
        &mut current,
        &[succeeded(2, 0), finished(3, Outcome::Committed)],
    )
    .await
    .unwrap();
    let history = store.history(id).await.unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    // A finished saga's journal is fenced: finishing released it.
    let error = write(&mut current, &[started(4, 1)]).await.unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    assert!(
        error.to_string().contains("finished (committed)"),
        "{error}"
    );
    // A journal of a live claim whose numbers do not follow: refused, not
    // fenced.
    let live = saga_with(&store, "n", LONG, &[created("live")]).await;
    let mut stale = store.journal(&live);
    let error = write(&mut stale, &[created("live")]).await.unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Storage, "{error}");
    assert!(error.to_string().contains("record 0 refused"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_racing_a_takeover_is_either_committed_before_it_or_fenced() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let lease = Duration::from_millis(150);
    let claim = store.create(store.new_id(), "racer", lease).await.unwrap();
    let id = claim.id();
    let mut journal = store.journal(&claim);
    journal.append(&created("race")).unwrap();
    // The old owner writes a record per flush until it is fenced; a
    // claimer takes the saga as soon as the lease expires.
    let writer = tokio::spawn(async move {
        let mut seq = 1;
        loop {
            let step = ((seq - 1) / 2) as u32;
            let record = match seq % 2 {
                1 => started(seq, step),
                _ => succeeded(seq, step),
            };
            journal.append(&record).unwrap();
            match flush(&mut journal).await {
                Ok(()) => seq += 1,
                Err(error) => return (seq, error),
            }
        }
    });
    let claimer = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let claims = store.claim("taker", LONG, 1).await.unwrap();
                if let Some(claim) = claims.into_iter().next() {
                    return claim;
                }
            }
        })
    };
    let taken = claimer.await.unwrap();
    let (refused, error) = writer.await.unwrap();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    // Every record the old owner committed is there, and nothing after.
    let records = store.records(id).await.unwrap();
    assert_eq!(records.len() as u64, refused);
    assert_eq!(taken.next_seq(), refused);
    println!("{refused} records written before the takeover fenced the old owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_extends_a_lease_and_releasing_hands_the_saga_back_at_once() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let short = SHORT;
    let (first, mut first_journal) = saga_and_journal(&store, "w", short, &[created("a")]).await;
    let (second, mut second_journal) = saga_and_journal(&store, "w", short, &[created("b")]).await;
    let lost = saga_with(&store, "w", short, &[created("c")]).await;
    let claims = vec![first.clone(), second.clone()];
    let started_at = Instant::now();
    let mut renewed = store.renew(&claims, LONG).await.unwrap();
    renewed.sort();
    let mut ids = vec![first.id(), second.id()];
    ids.sort();
    assert_eq!(renewed, ids);
    // Past the first lease: still held, as the renewal says.
    expire(short).await;
    assert!(started_at.elapsed() > short);
    let claimed = store.claim("x", LONG, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(Claim::id).collect::<Vec<_>>(),
        [lost.id()]
    );
    let list = store.list(None).await.unwrap();
    let left = |id| list.iter().find(|s| s.id == id).unwrap().lease_left;
    assert!(left(first.id()).unwrap() > Duration::from_secs(500));
    // A renewed claim's journal still writes.
    write(&mut first_journal, &[started(1, 0)]).await.unwrap();
    // A lost claim is not renewed.
    assert!(store.renew([&lost], LONG).await.unwrap().is_empty());

    // Release: claimable at once by another worker, at the next epoch.
    let released = store.release(&claims).await.unwrap();
    assert_eq!(released, ids);
    let summary = store.list(Some(SagaState::Forward)).await.unwrap();
    assert!(
        summary
            .iter()
            .filter(|s| ids.contains(&s.id))
            .all(|s| s.owner.is_none())
    );
    // Released, not yet claimed again: its journal is fenced already.
    let error = write(&mut second_journal, &[started(1, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    assert!(error.to_string().contains("released"), "{error}");
    let taken = store.claim("y", LONG, 10).await.unwrap();
    assert_eq!(taken.iter().map(Claim::id).collect::<Vec<_>>(), ids);
    assert!(taken.iter().all(|claim| claim.epoch() == 2));
    // The released claim's journal is fenced, with what happened.
    let error = write(&mut first_journal, &[succeeded(2, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    assert!(error.to_string().contains("epoch 2"), "{error}");
    // Releasing again (the claims are stale) releases nothing.
    assert!(store.release(&claims).await.unwrap().is_empty());
    assert_eq!(store.records(first.id()).await.unwrap().len(), 2);
}

/// A saga whose one compensation fails while `refuse` is set.
fn refusing(refuse: &Arc<AtomicBool>) -> Saga<String> {
    let refuse = Arc::clone(refuse);
    SagaBuilder::new()
        .add_step(
            || async { Ok::<_, String>(()) },
            move || {
                let refuse = Arc::clone(&refuse);
                async move {
                    match refuse.load(Ordering::SeqCst) {
                        true => Err(String::from("the bank is closed")),
                        false => Ok(()),
                    }
                }
            },
        )
        .add_step(
            || async { Err::<(), _>(String::from("card declined")) },
            || async { Ok(()) },
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_abandon_and_reopen() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let running = saga_with(&store, "w1", LONG, &[created("running"), started(1, 0)]).await;
    let (unwinding, mut journal) = saga_and_journal(
        &store,
        "w2",
        LONG,
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
    .await;
    // A real run that ends stuck: its compensation fails.
    let refuse = Arc::new(AtomicBool::new(true));
    let stuck = store.create(store.new_id(), "w3", LONG).await.unwrap();
    let error = refusing(&refuse)
        .run_journaled(&mut store.journal(&stuck), Start::new("pay", 1, vec![]))
        .unwrap()
        .await
        .unwrap_err();
    assert!(error.saga().is_some(), "{error}");
    tokio::time::sleep(Duration::from_millis(20)).await;

    let list = store.list(None).await.unwrap();
    assert_eq!(list.len(), 3);
    let summary = |id| list.iter().find(|s| s.id == id).unwrap().clone();
    let run = summary(running.id());
    assert_eq!((run.definition.as_str(), run.version), ("running", 3));
    assert_eq!(run.state, SagaState::Forward);
    assert_eq!(run.owner.as_deref(), Some("w1"));
    assert_eq!(run.records, 2);
    assert_eq!(run.last_error, None);
    assert!(run.lease_left.unwrap() > Duration::from_secs(500));
    assert!(run.age >= Duration::from_millis(20) && run.age < Duration::from_secs(60));
    assert!(run.created <= run.updated);
    let unwound = summary(unwinding.id());
    assert_eq!(unwound.state, SagaState::Unwinding);
    assert_eq!(unwound.last_error.as_deref(), Some("card declined"));
    let stuck_summary = summary(stuck.id());
    assert_eq!(stuck_summary.state, SagaState::Finished(Outcome::Stuck));
    assert_eq!(stuck_summary.owner, None);
    assert!(
        stuck_summary
            .last_error
            .as_deref()
            .unwrap()
            .contains("bank"),
        "{:?}",
        stuck_summary.last_error
    );
    // One saga's row, as the list shows it; none for an unknown saga.
    let one = store.summary(unwinding.id()).await.unwrap().unwrap();
    assert_eq!((one.id, one.state), (unwinding.id(), SagaState::Unwinding));
    assert_eq!(one.last_error.as_deref(), Some("card declined"));
    assert_eq!((one.epoch, one.records), (unwound.epoch, unwound.records));
    assert_eq!(store.summary(SagaId(42)).await.unwrap(), None);
    // By state.
    let only = store.list(Some(SagaState::Unwinding)).await.unwrap();
    assert_eq!(
        only.iter().map(|s| s.id).collect::<Vec<_>>(),
        [unwinding.id()]
    );
    assert!(
        store
            .list(Some(SagaState::Finished(Outcome::Committed)))
            .await
            .unwrap()
            .is_empty()
    );
    let mut unfinished = vec![running.id(), unwinding.id()];
    unfinished.sort();
    assert_eq!(store.unfinished().await.unwrap(), unfinished);

    // Abandon: the record is written, the worker still holding it fenced.
    store
        .abandon(unwinding.id(), "the bank is gone")
        .await
        .unwrap();
    let history = store.history(unwinding.id()).await.unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Abandoned));
    assert_eq!(history.last_error(), Some("the bank is gone"));
    let after = store
        .list(Some(SagaState::Finished(Outcome::Abandoned)))
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].owner.clone(), after[0].epoch), (None, 2));
    assert_eq!(after[0].last_error.as_deref(), Some("the bank is gone"));
    let compensation = Record {
        seq: 4,
        event: Event::CompensationStarted {
            step: 0,
            attempt: 1,
        },
    };
    let error = write(&mut journal, &[compensation]).await.unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced, "{error}");
    assert!(
        error.to_string().contains("finished (abandoned)"),
        "{error}"
    );
    assert_eq!(store.records(unwinding.id()).await.unwrap().len(), 5);
    let error = store.abandon(unwinding.id(), "again").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Finished(Outcome::Abandoned));
    let error = store.abandon(SagaId(42), "who").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
    assert!(
        error.to_string().contains(&SagaId(42).to_string()),
        "{error}"
    );
    // A saga created and never written is abandoned without a record.
    let empty = store.create(store.new_id(), "w4", LONG).await.unwrap();
    store.abandon(empty.id(), "never started").await.unwrap();
    assert!(store.records(empty.id()).await.unwrap().is_empty());

    // Reopen: only a stuck saga. Running, committed: refused.
    let error = store.reopen(running.id()).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Replay, "{error}");
    let error = store.reopen(unwinding.id()).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Finished(Outcome::Abandoned));
    let error = store.reopen(SagaId(42)).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
    store.reopen(stuck.id()).await.unwrap();
    let history = store.history(stuck.id()).await.unwrap();
    assert_eq!(history.state(), SagaState::Unwinding);
    // Claimable at once; the next owner compensates it, now that the bank
    // is open again.
    let claims = store.claim("w5", LONG, 10).await.unwrap();
    assert_eq!(
        claims.iter().map(Claim::id).collect::<Vec<_>>(),
        [stuck.id()]
    );
    assert_eq!(claims[0].state(), SagaState::Unwinding);
    refuse.store(false, Ordering::SeqCst);
    let mut saga = refusing(&refuse);
    let mut journal = store.journal(&claims[0]);
    let error = saga
        .resume(&mut journal, &history)
        .unwrap()
        .await
        .unwrap_err();
    assert!(error.saga().is_some(), "{error}");
    let history = store.history(stuck.id()).await.unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    let error = store.reopen(stuck.id()).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Finished(Outcome::Compensated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_saga_is_not_claimed_until_released() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let claim = saga_with(&store, "w", LONG, &[created("unknown")]).await;
    store
        .quarantine(&claim, "no definition `unknown` v3")
        .await
        .unwrap();
    let list = store.list(None).await.unwrap();
    assert_eq!(
        list[0].quarantine.as_deref(),
        Some("no definition `unknown` v3")
    );
    assert_eq!(list[0].owner, None);
    assert!(store.claim("x", LONG, 10).await.unwrap().is_empty());
    assert_eq!(store.unfinished().await.unwrap(), [claim.id()]);
    store.release_quarantine(claim.id()).await.unwrap();
    let error = store.release_quarantine(claim.id()).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Replay, "{error}");
    let claims = store.claim("x", LONG, 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].epoch(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_missing_record_is_reported_clearly() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let claim = saga_with(
        &store,
        "w",
        LONG,
        &[created("x"), started(1, 0), succeeded(2, 0)],
    )
    .await;
    let id = claim.id();
    // One byte of record 1 changed, its checksum left as it was.
    sqlx::query(
        "UPDATE saga.records SET body = overlay(body placing '\\x07'::bytea from 3 for 1) \
         WHERE seq = 1",
    )
    .execute(store.pool())
    .await
    .unwrap();
    for error in [
        store.records(id).await.unwrap_err(),
        store.history(id).await.unwrap_err(),
        store.abandon(id, "x").await.unwrap_err(),
    ] {
        assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{error}");
        let shown = error.to_string();
        assert!(
            shown.contains(&id.to_string())
                && shown.contains("record 1")
                && shown.contains("checksum"),
            "{shown}"
        );
    }
    // A record missing: named too.
    sqlx::query("DELETE FROM saga.records WHERE seq = 1")
        .execute(store.pool())
        .await
        .unwrap();
    let error = store.records(id).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert!(error.to_string().contains("record 1 is missing"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_polled_by_another_executor_flushes_on_the_stores_runtime() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let claim = store.create(store.new_id(), "w", LONG).await.unwrap();
    let id = claim.id();
    let mut journal = store.journal(&claim);
    // A plain thread polls the run; the flushes run on the Tokio runtime.
    let outcome = std::thread::spawn(move || {
        let mut saga = three_steps();
        let run = saga
            .run_journaled(&mut journal, Start::new("elsewhere", 1, vec![]))
            .unwrap();
        smol::block_on(run).map_err(|error| error.to_string())
    });
    let outcome = tokio::task::spawn_blocking(move || outcome.join().unwrap())
        .await
        .unwrap();
    outcome.unwrap();
    let history = store.history(id).await.unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

#[test]
fn a_store_is_made_inside_a_tokio_runtime() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<PgStore>();
    send::<PgJournal>();
    send_sync::<Claim>();
    // Outside a runtime: a clear error, no panic.
    let options = sqlx::postgres::PgConnectOptions::new().socket("/nonexistent");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pool = {
        let _entered = runtime.enter();
        sqlx::postgres::PgPoolOptions::new().connect_lazy_with(options)
    };
    let error = PgStore::new(pool).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Runtime, "{error}");
    assert!(error.to_string().contains("Tokio"), "{error}");
}
