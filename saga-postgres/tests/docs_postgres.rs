//! Tests written from `saga-postgres`'s documentation only: each test
//! checks one documented promise of `PgStore`, `Claim`, `Worker`,
//! `NotRun`, `StoreError` or the `saga-pg` command line.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::HashSet;
use std::future::poll_fn;
use std::process::Command;
use std::time::Duration;

use saga_core::journal::{
    Codec, Event, Journal, JournalErrorKind, Outcome, Record, Registry, SagaContext, SagaId,
    SagaState, Start,
};
use saga_core::{Saga, SagaBuilder};
use saga_postgres::{NotRun, PgJournal, PgStore, StoreErrorKind, Worker};

const LONG: Duration = Duration::from_secs(30);

/// A one-step saga that succeeds.
fn one_step() -> Saga<String> {
    SagaBuilder::new()
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .build()
}

/// The `Created` record a run of `one_step` as `definition` would write.
fn created(definition: &str) -> Record {
    Record {
        seq: 0,
        event: Event::Created {
            definition: definition.to_owned(),
            version: 1,
            fingerprint: one_step().fingerprint(),
            parameters: Vec::new(),
        },
    }
}

/// Flushes `journal`.
async fn flush(journal: &mut PgJournal) -> Result<(), saga_core::journal::JournalError> {
    poll_fn(|cx| journal.poll_flush(cx)).await
}

/// Submits a `one_step` saga of `definition` through the store: its id.
async fn submit(store: &PgStore, definition: &str) -> SagaId {
    let id = store.new_id();
    let mut parameters = Vec::new();
    ().encode(&mut parameters);
    store
        .submit(
            id,
            &Start::new(definition, 1, parameters),
            one_step().fingerprint(),
        )
        .await
        .expect("submit");
    id
}

/// Runs a one-step saga to its end under a claim from `create`.
async fn committed(store: &PgStore) -> SagaId {
    let id = store.new_id();
    let claim = store.create(id, "w", LONG).await.expect("create");
    let mut journal = store.journal(&claim);
    one_step()
        .run_journaled(&mut journal, Start::new("one-step", 1, vec![]))
        .expect("journaled")
        .await
        .map_err(|e| e.to_string())
        .expect("commits");
    id
}

/// A saga that ends stuck: step 0's compensation fails when step 1 fails.
async fn stuck(store: &PgStore) -> SagaId {
    let id = store.new_id();
    let claim = store.create(id, "w", LONG).await.expect("create");
    let mut journal = store.journal(&claim);
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(
            || async { Ok::<_, String>(()) },
            || async { Err(String::from("refund refused")) },
        )
        .add_step(
            || async { Err::<(), _>(String::from("card declined")) },
            || async { Ok(()) },
        )
        .build();
    let ended = saga
        .run_journaled(&mut journal, Start::new("stuck", 1, vec![]))
        .expect("journaled")
        .await;
    assert!(ended.is_err(), "the saga fails");
    let history = store.history(id).await.expect("history");
    assert_eq!(history.state(), SagaState::Finished(Outcome::Stuck));
    id
}

/// A registry with `one-step` v1 (parameters `()`).
fn registry() -> Registry<String> {
    let mut registry = Registry::new();
    registry.register("one-step", 1, |(): &(), _context: &SagaContext| one_step());
    registry
}

/// Runs `worker` until `store` has no unfinished saga (or 20 s passed).
async fn run_until_done(worker: &Worker<String>) -> saga_postgres::WorkerReport {
    let store = worker.store().clone();
    worker
        .run(async move {
            for _ in 0..200 {
                if store.unfinished().await.expect("unfinished").is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
}

// ---------------------------------------------------------------- open

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_the_saga_schema_and_migrate_again_changes_nothing() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let pool = cluster.pool(10).await;
    let store = PgStore::open(pool.clone()).await.expect("open");
    let id = committed(&store).await;
    let before = store.records(id).await.expect("records");
    store.migrate().await.expect("migrate again");
    let again = PgStore::open(pool.clone()).await.expect("open again");
    // The documented tables exist, and migrating again kept the saga.
    for table in ["saga.sagas", "saga.records", "saga.schema_version"] {
        let _: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
    }
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM saga.sagas")
        .fetch_all(&pool)
        .await
        .expect("states");
    assert_eq!(states, ["committed"]);
    assert_eq!(again.records(id).await.expect("records"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_newer_schema_version_and_leaves_it() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let pool = cluster.pool(10).await;
    let store = PgStore::open(pool.clone()).await.expect("open");
    // The column's name is not documented: change every integer column.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = 'saga' AND table_name = 'schema_version' \
         AND data_type IN ('smallint', 'integer', 'bigint')",
    )
    .fetch_all(&pool)
    .await
    .expect("columns");
    assert!(!columns.is_empty());
    for column in &columns {
        sqlx::query(&format!(
            "UPDATE saga.schema_version SET {column} = {column} + 1000"
        ))
        .execute(&pool)
        .await
        .expect("bump the version");
    }
    let error = store.migrate().await.expect_err("a newer schema");
    assert_eq!(error.kind(), StoreErrorKind::Schema);
    let opened = PgStore::open(pool.clone()).await;
    assert_eq!(
        opened.err().map(|e| e.kind()),
        Some(StoreErrorKind::Schema),
        "open refused"
    );
    // Left as it is: still refused, the version not rewritten.
    let error = store.migrate().await.expect_err("still newer");
    assert_eq!(error.kind(), StoreErrorKind::Schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_outside_a_tokio_runtime_fails_as_runtime() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let pool = cluster.pool(2).await;
    let inside = PgStore::new(pool.clone());
    assert!(inside.is_ok(), "inside a runtime");
    let outside = std::thread::spawn(move || PgStore::new(pool).err().map(|e| e.kind()))
        .join()
        .expect("thread");
    assert_eq!(outside, Some(StoreErrorKind::Runtime));
}

// ---------------------------------------------------------------- create, submit, claim

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_holds_the_saga_at_epoch_1_and_refuses_an_existing_id() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = store.new_id();
    let claim = store.create(id, "worker-1", LONG).await.expect("create");
    assert_eq!(claim.id(), id);
    assert_eq!(claim.owner(), "worker-1");
    assert_eq!(claim.epoch(), 1);
    assert_eq!(claim.next_seq(), 0);
    assert_eq!(claim.recoveries(), 0);
    let context = claim.context();
    assert_eq!(context.id(), id);
    assert_eq!(context.epoch(), 1);
    // Held: no other worker can claim it.
    assert!(
        store
            .claim("worker-2", LONG, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.owner.as_deref(), Some("worker-1"));
    assert_eq!(summary.epoch, 1);
    assert!(
        summary
            .lease_left
            .is_some_and(|left| left > Duration::from_secs(20))
    );
    assert_eq!(summary.records, 0);
    assert_eq!(summary.definition, "");

    let error = store
        .create(id, "worker-3", LONG)
        .await
        .expect_err("exists");
    assert_eq!(error.kind(), StoreErrorKind::Exists);
    // Ids are unique.
    let ids: HashSet<SagaId> = (0..1000).map(|_| store.new_id()).collect();
    assert_eq!(ids.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_journaled_commits_and_the_row_and_records_follow() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = committed(&store).await;
    let records = store.records(id).await.expect("records");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (0..records.len() as u64).collect::<Vec<_>>(),
        "no gaps"
    );
    assert!(matches!(records[0].event, Event::Created { .. }));
    assert!(matches!(
        records.last().expect("a record").event,
        Event::Finished {
            outcome: Outcome::Committed,
            ..
        }
    ));
    let history = store.history(id).await.expect("history");
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    // The Finished record clears the owner and the lease.
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.state, SagaState::Finished(Outcome::Committed));
    assert_eq!(summary.definition, "one-step");
    assert_eq!(summary.version, 1);
    assert_eq!(summary.owner, None);
    assert_eq!(summary.lease_left, None);
    assert_eq!(summary.records, records.len() as u64);
    assert!(store.unfinished().await.expect("unfinished").is_empty());
    let listed = store
        .list(Some(SagaState::Finished(Outcome::Committed)))
        .await
        .expect("list");
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    assert!(
        store
            .list(Some(SagaState::Forward))
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_is_claimable_at_once_at_epoch_0_and_its_first_claim_is_no_recovery() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = submit(&store, "one-step").await;
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.epoch, 0);
    assert_eq!(summary.owner, None);
    assert_eq!(summary.records, 1);
    assert_eq!(summary.state, SagaState::Forward);
    assert_eq!(store.unfinished().await.expect("unfinished"), [id]);

    let claims = store.claim("w", LONG, 10).await.expect("claim");
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.id(), id);
    assert_eq!(claim.epoch(), 1);
    assert_eq!(claim.recoveries(), 0);
    assert_eq!(claim.next_seq(), 1);
    assert_eq!(claim.state(), SagaState::Forward);
    // Resume from the history runs the saga from its first step.
    let history = store.history(id).await.expect("history");
    let mut journal = store.journal(claim);
    one_step()
        .resume(&mut journal, &history)
        .expect("resumable")
        .await
        .map_err(|e| e.to_string())
        .expect("commits");
    assert_eq!(
        store.history(id).await.expect("history").state(),
        SagaState::Finished(Outcome::Committed)
    );

    let mut parameters = Vec::new();
    ().encode(&mut parameters);
    let again = store
        .submit(id, &Start::new("one-step", 1, parameters), 0)
        .await
        .expect_err("exists");
    assert_eq!(again.kind(), StoreErrorKind::Exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_takes_an_expired_lease_raising_epoch_and_recoveries() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = store.new_id();
    let first = store
        .create(id, "a", Duration::from_millis(300))
        .await
        .expect("create");
    assert!(store.claim("b", LONG, 10).await.expect("claim").is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let claims = store.claim("b", LONG, 10).await.expect("claim");
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.id(), id);
    assert_eq!(claim.owner(), "b");
    assert_eq!(claim.epoch(), first.epoch() + 1);
    assert_eq!(claim.recoveries(), 1);
    // Created and never written: nothing to resume.
    assert_eq!(claim.next_seq(), 0);
    assert_eq!(claim.context().epoch(), 2);
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.owner.as_deref(), Some("b"));
    assert_eq!(summary.recoveries, 1);
    assert_eq!(summary.epoch, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_respects_its_limit_and_two_claimers_never_share_a_saga() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let mut all = HashSet::new();
    for _ in 0..30 {
        all.insert(submit(&store, "one-step").await);
    }
    let three = store.claim("x", LONG, 3).await.expect("claim");
    assert_eq!(three.len(), 3);
    let (a, b) = tokio::join!(store.claim("a", LONG, 20), store.claim("b", LONG, 20));
    let (a, b) = (a.expect("a"), b.expect("b"));
    let mut seen = HashSet::new();
    for claim in three.iter().chain(&a).chain(&b) {
        assert!(seen.insert(claim.id()), "claimed twice: {:?}", claim.id());
    }
    assert_eq!(seen, all, "every saga claimed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_takes_expired_leases_before_never_claimed_sagas() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let _submitted = submit(&store, "one-step").await;
    let left = store.new_id();
    store
        .create(left, "dead", Duration::from_millis(200))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let claims = store.claim("b", LONG, 1).await.expect("claim");
    assert_eq!(claims.iter().map(|c| c.id()).collect::<Vec<_>>(), [left]);
}

// ---------------------------------------------------------------- renew, release, fencing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_extends_held_leases_and_omits_lost_ones() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let kept = store.new_id();
    let lost = store.new_id();
    let short = Duration::from_millis(400);
    let kept_claim = store.create(kept, "a", short).await.expect("create");
    let lost_claim = store.create(lost, "a", short).await.expect("create");
    let renewed = store.renew([&kept_claim], LONG).await.expect("renew");
    assert_eq!(renewed, [kept]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let taken = store.claim("b", LONG, 10).await.expect("claim");
    assert_eq!(taken.iter().map(|c| c.id()).collect::<Vec<_>>(), [lost]);
    let renewed = store
        .renew([&kept_claim, &lost_claim], LONG)
        .await
        .expect("renew");
    assert_eq!(renewed, [kept], "the lost claim is not renewed");
    // The lost claim's journal is fenced.
    let mut journal = store.journal(&lost_claim);
    journal.append(&created("one-step")).expect("append");
    let error = flush(&mut journal).await.expect_err("fenced");
    assert_eq!(error.kind(), JournalErrorKind::Fenced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_back_at_once_and_fences_the_journal() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = store.new_id();
    let claim = store.create(id, "a", LONG).await.expect("create");
    let mut journal = store.journal(&claim);
    journal.append(&created("one-step")).expect("append");
    flush(&mut journal).await.expect("flush under the lease");
    assert_eq!(store.release([&claim]).await.expect("release"), [id]);
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.owner, None);
    assert_eq!(summary.lease_left, None);
    // Released twice: nothing held any more.
    assert!(store.release([&claim]).await.expect("release").is_empty());

    journal
        .append(&Record {
            seq: 1,
            event: Event::ActionStarted {
                step: 0,
                attempt: 1,
            },
        })
        .expect("append");
    let error = flush(&mut journal).await.expect_err("fenced after release");
    assert_eq!(error.kind(), JournalErrorKind::Fenced);
    assert_eq!(
        store.records(id).await.expect("records").len(),
        1,
        "nothing written"
    );
    // Once failed, the journal keeps failing with the same error.
    let again = flush(&mut journal).await.expect_err("still failed");
    assert_eq!(again, error);

    let claims = store.claim("b", LONG, 10).await.expect("claim at once");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].epoch(), 2);
    assert_eq!(claims[0].next_seq(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_fences_the_flush_even_if_no_one_claimed() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = store.new_id();
    let claim = store
        .create(id, "a", Duration::from_millis(200))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut journal = store.journal(&claim);
    assert_eq!(journal.epoch(), 1);
    assert_eq!(journal.next_seq(), 0);
    // A whole run through the expired claim stops on the journal.
    let ended = one_step()
        .run_journaled(&mut journal, Start::new("one-step", 1, vec![]))
        .expect("journaled")
        .await;
    let error = ended.expect_err("fenced");
    assert_eq!(
        error.journal().map(|e| e.kind()),
        Some(JournalErrorKind::Fenced),
        "{error}"
    );
    assert!(store.records(id).await.expect("records").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_journal_of_a_claim_that_wrote_is_refused_as_storage() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = store.new_id();
    let claim = store.create(id, "a", LONG).await.expect("create");
    let mut first = store.journal(&claim);
    first.append(&created("one-step")).expect("append");
    flush(&mut first).await.expect("flush");
    let mut second = store.journal(&claim);
    assert_eq!(second.next_seq(), 0);
    second.append(&created("one-step")).expect("append");
    let error = flush(&mut second).await.expect_err("numbers do not follow");
    assert_eq!(error.kind(), JournalErrorKind::Storage);
    assert_eq!(store.records(id).await.expect("records").len(), 1);
}

// ---------------------------------------------------------------- quarantine

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_sets_a_saga_aside_until_released() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = submit(&store, "one-step").await;
    let claim = store.claim("a", LONG, 10).await.expect("claim").remove(0);
    store
        .quarantine(&claim, "definition unknown")
        .await
        .expect("quarantine");
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.quarantine.as_deref(), Some("definition unknown"));
    assert_eq!(summary.owner, None, "the lease is released");
    assert!(store.claim("b", LONG, 10).await.expect("claim").is_empty());
    assert_eq!(store.unfinished().await.expect("unfinished"), [id]);
    // The claim no longer holds it.
    let error = store.quarantine(&claim, "again").await.expect_err("fenced");
    assert_eq!(error.kind(), StoreErrorKind::Fenced);

    store.release_quarantine(id).await.expect("release");
    assert_eq!(
        store.summary(id).await.expect("s").expect("k").quarantine,
        None
    );
    let error = store
        .release_quarantine(id)
        .await
        .expect_err("not quarantined");
    assert_eq!(error.kind(), StoreErrorKind::Replay);
    let error = store
        .release_quarantine(store.new_id())
        .await
        .expect_err("unknown");
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
    let claims = store.claim("b", LONG, 10).await.expect("claim");
    assert_eq!(claims.iter().map(|c| c.id()).collect::<Vec<_>>(), [id]);
}

// ---------------------------------------------------------------- reading

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_an_unknown_saga() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let unknown = store.new_id();
    assert!(store.records(unknown).await.expect("records").is_empty());
    assert!(store.summary(unknown).await.expect("summary").is_none());
    let error = store.history(unknown).await.expect_err("no record");
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
    // Created, never written: no record either.
    let id = store.new_id();
    store.create(id, "a", LONG).await.expect("create");
    assert!(store.records(id).await.expect("records").is_empty());
    let error = store.history(id).await.expect_err("no record");
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
    // list is in the order of the ids.
    let ids: Vec<SagaId> = store
        .list(None)
        .await
        .expect("list")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_refused_as_corrupt_naming_the_saga() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let pool = cluster.pool(10).await;
    let store = PgStore::open(pool.clone()).await.expect("open");
    let id = committed(&store).await;
    sqlx::query("UPDATE saga.records SET body = body || '\\x00'::bytea WHERE seq = 1")
        .execute(&pool)
        .await
        .expect("damage");
    let error = store.records(id).await.expect_err("corrupt");
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    let hex = format!("{:032x}", id.0);
    let message = error.to_string().replace('-', "");
    assert!(message.contains(&hex), "names the saga: {error}");
    assert_eq!(
        store.history(id).await.expect_err("corrupt").kind(),
        StoreErrorKind::Corrupt
    );
    // A missing record.
    let other = committed(&store).await;
    sqlx::query("DELETE FROM saga.records WHERE saga_id = $1::uuid AND seq = 1")
        .bind(format!("{:032x}", other.0))
        .execute(&pool)
        .await
        .expect("delete");
    assert_eq!(
        store.records(other).await.expect_err("missing").kind(),
        StoreErrorKind::Corrupt
    );
}

// ---------------------------------------------------------------- abandon, reopen

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_finishes_a_saga_and_fences_its_worker() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = submit(&store, "one-step").await;
    let claim = store.claim("a", LONG, 10).await.expect("claim").remove(0);
    store.abandon(id, "given up").await.expect("abandon");
    let history = store.history(id).await.expect("history");
    assert_eq!(history.state(), SagaState::Finished(Outcome::Abandoned));
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.owner, None);
    assert_eq!(summary.epoch, 2, "the epoch is raised");
    assert_eq!(summary.last_error.as_deref(), Some("given up"));
    let mut journal = store.journal(&claim);
    journal
        .append(&Record {
            seq: 1,
            event: Event::ActionStarted {
                step: 0,
                attempt: 1,
            },
        })
        .expect("append");
    assert_eq!(
        flush(&mut journal).await.expect_err("fenced").kind(),
        JournalErrorKind::Fenced
    );
    assert_eq!(
        store
            .abandon(id, "again")
            .await
            .expect_err("finished")
            .kind(),
        StoreErrorKind::Finished(Outcome::Abandoned)
    );
    assert_eq!(
        store
            .abandon(store.new_id(), "x")
            .await
            .expect_err("unknown")
            .kind(),
        StoreErrorKind::UnknownSaga
    );
    // Created, never written: abandoned without a record.
    let empty = store.new_id();
    store.create(empty, "a", LONG).await.expect("create");
    store.abandon(empty, "nothing ran").await.expect("abandon");
    assert!(store.records(empty).await.expect("records").is_empty());
    let summary = store.summary(empty).await.expect("summary").expect("known");
    assert_eq!(summary.state, SagaState::Finished(Outcome::Abandoned));
    assert!(store.unfinished().await.expect("unfinished").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_makes_a_stuck_saga_claimable_and_refuses_others() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = stuck(&store).await;
    assert!(store.claim("b", LONG, 10).await.expect("claim").is_empty());
    store.reopen(id).await.expect("reopen");
    let records = store.records(id).await.expect("records");
    assert!(matches!(
        records.last().expect("a record").event,
        Event::Reopened
    ));
    let claims = store.claim("b", LONG, 10).await.expect("claim at once");
    assert_eq!(claims.iter().map(|c| c.id()).collect::<Vec<_>>(), [id]);

    let done = committed(&store).await;
    let error = store.reopen(done).await.expect_err("committed");
    assert_eq!(error.kind(), StoreErrorKind::Finished(Outcome::Committed));
    let running = submit(&store, "one-step").await;
    let error = store.reopen(running).await.expect_err("running");
    assert_eq!(error.kind(), StoreErrorKind::Replay);
    let error = store.reopen(store.new_id()).await.expect_err("unknown");
    assert_eq!(error.kind(), StoreErrorKind::UnknownSaga);
}

// ---------------------------------------------------------------- Worker

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_submitted_sagas_with_the_epoch_in_their_context() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let epochs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = epochs.clone();
    let mut registry = Registry::new();
    registry.register("count", 1, move |n: &u64, context: &SagaContext| {
        seen.lock().expect("lock").push((*n, context.epoch()));
        one_step()
    });
    let worker = Worker::new(store.clone(), registry, "host-a-1")
        .lease(Duration::from_secs(4), Duration::from_secs(1))
        .claim_every(Duration::from_millis(50))
        .max_sagas(2)
        .grace(Duration::from_secs(1));
    assert_eq!(worker.owner(), "host-a-1");
    let mut ids = Vec::new();
    for n in 0..5_u64 {
        ids.push(worker.submit("count", &n).await.expect("submit"));
    }
    let report = run_until_done(&worker).await;
    assert_eq!(report.claimed, 5, "{report:?}");
    assert_eq!(report.finished, 5, "{report:?}");
    assert_eq!(report.lost, 0);
    assert_eq!(report.quarantined, 0);
    assert_eq!(report.abandoned, 0);
    assert_eq!(report.store_errors, 0);
    assert!(report.last_store_error.is_none());
    for id in ids {
        assert_eq!(
            store.history(id).await.expect("history").state(),
            SagaState::Finished(Outcome::Committed)
        );
    }
    // Built once at submit (epoch 0 is not promised: only the claim's).
    let epochs = epochs.lock().expect("lock");
    for n in 0..5_u64 {
        assert!(
            epochs.contains(&(n, 1)),
            "saga {n} built at epoch 1: {epochs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_submit_refuses_an_unknown_definition_writing_nothing() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let worker = Worker::new(store.clone(), registry(), "w");
    let error = worker.submit("nope", &()).await.expect_err("unknown");
    assert!(matches!(error, NotRun::Quarantined(_)), "{error:?}");
    // Parameters that do not decode as the definition's.
    let error = worker
        .submit("one-step", &7_u64)
        .await
        .expect_err("bad parameters");
    assert!(matches!(error, NotRun::Quarantined(_)), "{error:?}");
    assert!(
        store.list(None).await.expect("list").is_empty(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_quarantines_unknown_definitions_and_abandons_never_written_sagas() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let unknown = submit(&store, "not-registered").await;
    let empty = store.new_id();
    store
        .create(empty, "dead", Duration::from_millis(100))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worker = Worker::new(store.clone(), registry(), "w").claim_every(Duration::from_millis(50));
    let report = worker.run(tokio::time::sleep(Duration::from_secs(2))).await;
    assert_eq!(report.quarantined, 1, "{report:?}");
    assert_eq!(report.abandoned, 1, "{report:?}");
    let summary = store
        .summary(unknown)
        .await
        .expect("summary")
        .expect("known");
    assert!(summary.quarantine.is_some());
    let summary = store.summary(empty).await.expect("summary").expect("known");
    assert_eq!(summary.state, SagaState::Finished(Outcome::Abandoned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_recoveries_quarantines_a_saga_taken_over_too_often() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = submit(&store, "one-step").await;
    // First hold, then two takeovers of expired leases.
    for owner in ["a", "b", "c"] {
        let claims = store
            .claim(owner, Duration::from_millis(100), 10)
            .await
            .expect("claim");
        assert_eq!(claims.len(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        store.summary(id).await.expect("s").expect("k").recoveries,
        2
    );
    // The worker's claim is the third takeover: more than 2.
    let worker = Worker::new(store.clone(), registry(), "w")
        .claim_every(Duration::from_millis(50))
        .max_recoveries(2);
    let report = worker.run(tokio::time::sleep(Duration::from_secs(1))).await;
    assert_eq!(report.claimed, 1, "{report:?}");
    assert_eq!(report.quarantined, 1, "{report:?}");
    assert_eq!(report.finished, 0, "{report:?}");
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert!(summary.quarantine.is_some());
    assert_eq!(summary.state, SagaState::Forward, "not resumed");

    // Its next claim is its fourth takeover: with a limit of 4, it is resumed.
    store.release_quarantine(id).await.expect("release");
    let worker = Worker::new(store.clone(), registry(), "w2")
        .claim_every(Duration::from_millis(50))
        .max_recoveries(4);
    let report = run_until_done(&worker).await;
    assert_eq!(report.finished, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_a_worker_hands_back_what_it_still_runs() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let mut registry = Registry::new();
    registry.register("hang", 1, |(): &(), _context: &SagaContext| {
        SagaBuilder::new()
            .add_step(
                || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, String>(())
                },
                || async { Ok(()) },
            )
            .build()
    });
    let worker = Worker::new(store.clone(), registry, "w").claim_every(Duration::from_millis(50));
    let id = worker.submit("hang", &()).await.expect("submit");
    let started = std::time::Instant::now();
    let report = worker
        .run(tokio::time::sleep(Duration::from_millis(800)))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no grace: at once"
    );
    assert_eq!(report.claimed, 1, "{report:?}");
    assert_eq!(report.released, 1, "{report:?}");
    assert_eq!(report.finished, 0, "{report:?}");
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert_eq!(summary.owner, None);
    let claims = store.claim("other", LONG, 10).await.expect("claim at once");
    assert_eq!(claims.iter().map(|c| c.id()).collect::<Vec<_>>(), [id]);
}

/// A registry with `sleep` v1: one step that sleeps its parameter, in ms.
fn sleeping() -> Registry<String> {
    let mut registry = Registry::new();
    registry.register("sleep", 1, |ms: &u64, _context: &SagaContext| {
        let ms = *ms;
        SagaBuilder::new()
            .add_step(
                move || async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, String>(())
                },
                || async { Ok(()) },
            )
            .build()
    });
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grace_a_worker_lets_its_sagas_finish_after_shutdown() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let worker = Worker::new(store.clone(), sleeping(), "w")
        .claim_every(Duration::from_millis(50))
        .grace(Duration::from_secs(10));
    let id = worker.submit("sleep", &1500_u64).await.expect("submit");
    let started = std::time::Instant::now();
    let report = worker
        .run(tokio::time::sleep(Duration::from_millis(500)))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stops once none runs"
    );
    assert_eq!(report.finished, 1, "{report:?}");
    assert_eq!(report.released, 0, "{report:?}");
    assert_eq!(
        store.history(id).await.expect("history").state(),
        SagaState::Finished(Outcome::Committed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_a_saga_an_operator_took_and_counts_it_lost() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let worker = Worker::new(store.clone(), sleeping(), "w")
        .lease(Duration::from_secs(4), Duration::from_millis(200))
        .claim_every(Duration::from_millis(50));
    let id = worker
        .submit("sleep", &3_600_000_u64)
        .await
        .expect("submit");
    let operator = tokio::spawn({
        let store = store.clone();
        async move {
            loop {
                let held = store.summary(id).await.expect("summary").expect("known");
                // Once its run began (its step started), not just claimed.
                if held.records >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            store.abandon(id, "operator").await.expect("abandon");
        }
    });
    let report = worker.run(tokio::time::sleep(Duration::from_secs(3))).await;
    operator.await.expect("operator");
    assert_eq!(report.claimed, 1, "{report:?}");
    assert_eq!(report.lost, 1, "{report:?}");
    assert_eq!(report.released, 0, "{report:?}");
    assert_eq!(
        store.history(id).await.expect("history").state(),
        SagaState::Finished(Outcome::Abandoned)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_do_not_stop_a_worker_and_are_counted() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(4).await).await.expect("open");
    let worker = Worker::new(store.clone(), registry(), "w").claim_every(Duration::from_millis(50));
    let (restart, restarted) = tokio::sync::oneshot::channel::<SagaId>();
    let watcher = store.clone();
    let run = worker.run(async move {
        // Until the saga submitted after the outage has finished.
        let Ok(id) = restarted.await else { return };
        for _ in 0..200 {
            let done = watcher
                .summary(id)
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s.state == SagaState::Finished(Outcome::Committed));
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let outage = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| cluster.stop_server());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| cluster.start_server());
        let mut submitted = None;
        for _ in 0..100 {
            if let Ok(id) = worker.submit("one-step", &()).await {
                submitted = Some(id);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = restart.send(submitted.expect("submitted after the outage"));
    };
    let (report, ()) = tokio::join!(run, outage);
    assert!(report.store_errors > 0, "{report:?}");
    assert!(report.last_store_error.is_some(), "{report:?}");
    // The same run went on after the outage.
    assert_eq!(report.finished, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_renews_leases_so_a_saga_longer_than_its_lease_is_not_taken() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let worker = Worker::new(store.clone(), sleeping(), "w")
        .lease(Duration::from_secs(1), Duration::from_millis(200))
        .claim_every(Duration::from_millis(50));
    let id = worker.submit("sleep", &2500_u64).await.expect("submit");
    let thief = store.clone();
    let stolen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stolen.clone();
    let watcher = store.clone();
    let report = worker
        .run(async move {
            // Once the worker claimed it (the thief could take it first).
            while watcher
                .summary(id)
                .await
                .expect("summary")
                .is_some_and(|s| s.epoch == 0)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for _ in 0..100 {
                if !thief
                    .claim("thief", LONG, 10)
                    .await
                    .expect("claim")
                    .is_empty()
                {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                let done = watcher
                    .summary(id)
                    .await
                    .expect("summary")
                    .is_some_and(|s| s.state == SagaState::Finished(Outcome::Committed));
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    assert!(
        !stolen.load(std::sync::atomic::Ordering::SeqCst),
        "taken while renewed"
    );
    assert_eq!(report.finished, 1, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_quarantines_a_saga_whose_shape_changed() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let id = store.new_id();
    let mut parameters = Vec::new();
    ().encode(&mut parameters);
    let wrong = one_step().fingerprint().wrapping_add(1);
    store
        .submit(id, &Start::new("one-step", 1, parameters), wrong)
        .await
        .expect("submit");
    let worker = Worker::new(store.clone(), registry(), "w").claim_every(Duration::from_millis(50));
    let report = worker.run(tokio::time::sleep(Duration::from_secs(1))).await;
    assert_eq!(report.quarantined, 1, "{report:?}");
    assert_eq!(report.finished, 0, "{report:?}");
    let summary = store.summary(id).await.expect("summary").expect("known");
    assert!(summary.quarantine.is_some());
    assert_eq!(
        store.records(id).await.expect("records").len(),
        1,
        "not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_saga_is_compensated_again_by_the_next_worker() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compensated = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut registry: Registry<String> = Registry::new();
    {
        let (fixed, compensated) = (fixed.clone(), compensated.clone());
        registry.register("refund", 1, move |(): &(), _context: &SagaContext| {
            let (fixed, compensated) = (fixed.clone(), compensated.clone());
            SagaBuilder::new()
                .add_step(
                    || async { Ok::<_, String>(()) },
                    move || {
                        let (fixed, compensated) = (fixed.clone(), compensated.clone());
                        async move {
                            if fixed.load(std::sync::atomic::Ordering::SeqCst) {
                                compensated.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                Ok(())
                            } else {
                                Err(String::from("refund refused"))
                            }
                        }
                    },
                )
                .add_step(
                    || async { Err::<(), _>(String::from("card declined")) },
                    || async { Ok(()) },
                )
                .build()
        });
    }
    let worker = Worker::new(store.clone(), registry, "w").claim_every(Duration::from_millis(50));
    let id = worker.submit("refund", &()).await.expect("submit");
    let report = run_until_done(&worker).await;
    assert_eq!(report.finished, 1, "{report:?}");
    assert_eq!(
        store.history(id).await.expect("history").state(),
        SagaState::Finished(Outcome::Stuck)
    );
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    store.reopen(id).await.expect("reopen");
    let report = run_until_done(&worker).await;
    assert_eq!(report.claimed, 1, "{report:?}");
    assert_eq!(compensated.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        store.history(id).await.expect("history").state(),
        SagaState::Finished(Outcome::Compensated)
    );
}

// ---------------------------------------------------------------- StoreError

#[test]
fn store_errors_are_matched_by_kind() {
    fn retry_later(kind: StoreErrorKind) -> bool {
        matches!(kind, StoreErrorKind::Postgres)
    }
    assert!(!retry_later(StoreErrorKind::Fenced));
    assert!(retry_later(StoreErrorKind::Postgres));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_a_postgres_error_with_a_source() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let pool = cluster.pool(2).await;
    let store = PgStore::open(pool).await.expect("open");
    cluster.stop_server();
    let error = tokio::time::timeout(Duration::from_secs(60), store.list(None))
        .await
        .expect("fails in time")
        .expect_err("no server");
    assert_eq!(error.kind(), StoreErrorKind::Postgres);
    assert!(!error.message().is_empty());
    assert!(std::error::Error::source(&error).is_some(), "{error}");
}

// ---------------------------------------------------------------- saga-pg

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn saga_pg(args: &[&str]) -> Ran {
    let output = Command::new(env!("CARGO_BIN_EXE_saga-pg"))
        .env_remove("DATABASE_URL")
        .args(args)
        .output()
        .expect("saga-pg runs");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn url(cluster: &cluster::Cluster) -> String {
    format!(
        "postgres://postgres@/postgres?host={}",
        cluster.socket_dir().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_pg_never_creates_the_tables_and_rejects_a_bad_command_line() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let url = url(&cluster);
    let pool = cluster.pool(2).await;
    let ran = tokio::task::spawn_blocking({
        let url = url.clone();
        move || saga_pg(&["--url", &url, "list"])
    })
    .await
    .expect("join");
    assert_eq!(ran.code, Some(1), "no tables: {}{}", ran.stdout, ran.stderr);
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'saga'",
    )
    .fetch_one(&pool)
    .await
    .expect("schemata");
    assert_eq!(schemas, 0, "saga-pg created the schema");
    // No database there: 1.
    let nowhere = format!(
        "postgres://postgres@/postgres?host={}/nowhere",
        cluster.socket_dir().display()
    );
    let ran = saga_pg(&["--url", &nowhere, "list"]);
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    for args in [
        vec!["--url", url.as_str(), "frobnicate"],
        vec!["--url", url.as_str(), "show"],
        vec![
            "--url",
            url.as_str(),
            "abandon",
            "00000000000000000000000000000001",
        ],
        vec!["--url", url.as_str(), "list", "--state", "sideways"],
        vec!["--url", url.as_str(), "show", "not-an-id"],
    ] {
        let ran = saga_pg(&args);
        assert_eq!(ran.code, Some(2), "{args:?}: {}{}", ran.stdout, ran.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_pg_lists_shows_abandons_reopens_and_releases() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let url = url(&cluster);
    let store = PgStore::open(cluster.pool(10).await).await.expect("open");
    let stuck = stuck(&store).await;
    let running = submit(&store, "one-step").await;
    let hex = |id: SagaId| format!("{:032x}", id.0);

    let list = saga_pg(&["--url", &url, "list"]);
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let header = list.stdout.lines().next().expect("a header");
    for column in [
        "ID",
        "DEFINITION",
        "STATE",
        "OWNER",
        "EPOCH",
        "LEASE",
        "RECOVERIES",
        "AGE",
        "LAST ERROR",
        "QUARANTINE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);
    assert!(list.stdout.contains(&hex(stuck)));
    assert!(list.stdout.contains("stuck@1"));

    // DATABASE_URL without --url; --state filters.
    let only = Command::new(env!("CARGO_BIN_EXE_saga-pg"))
        .env("DATABASE_URL", &url)
        .args(["list", "--state", "stuck"])
        .output()
        .expect("runs");
    assert_eq!(only.status.code(), Some(0));
    let only = String::from_utf8_lossy(&only.stdout).into_owned();
    assert!(
        only.contains(&hex(stuck)) && !only.contains(&hex(running)),
        "{only}"
    );

    let show = saga_pg(&["--url", &url, "show", &hex(stuck)]);
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    let records = store.records(stuck).await.expect("records").len();
    assert!(
        show.stdout.lines().count() > records,
        "summary then records: {}",
        show.stdout
    );
    let unknown = saga_pg(&["--url", &url, "show", &hex(store.new_id())]);
    assert_eq!(unknown.code, Some(1));

    let reopened = saga_pg(&["--url", &url, "reopen", &hex(stuck)]);
    assert_eq!(reopened.code, Some(0), "{}", reopened.stderr);
    assert!(reopened.stdout.contains("reopened"), "{}", reopened.stdout);
    assert!(matches!(
        store
            .records(stuck)
            .await
            .expect("records")
            .last()
            .expect("r")
            .event,
        Event::Reopened
    ));
    let again = saga_pg(&["--url", &url, "reopen", &hex(running)]);
    assert_eq!(again.code, Some(1), "refused: {}", again.stdout);

    let abandoned = saga_pg(&["--url", &url, "abandon", &hex(running), "--reason", "ops"]);
    assert_eq!(abandoned.code, Some(0), "{}", abandoned.stderr);
    assert_eq!(
        store.history(running).await.expect("history").state(),
        SagaState::Finished(Outcome::Abandoned)
    );
    let again = saga_pg(&["--url", &url, "abandon", &hex(running), "--reason", "ops"]);
    assert_eq!(again.code, Some(1));

    let quarantined = submit(&store, "one-step").await;
    let claim = store.claim("a", LONG, 10).await.expect("claim");
    let claim = claim
        .iter()
        .find(|c| c.id() == quarantined)
        .expect("claimed");
    store
        .quarantine(claim, "bad\nshape")
        .await
        .expect("quarantine");
    let list = saga_pg(&["--url", &url, "list"]);
    assert!(
        list.stdout.contains("bad\\nshape"),
        "escaped: {}",
        list.stdout
    );
    let released = saga_pg(&["--url", &url, "release-quarantine", &hex(quarantined)]);
    assert_eq!(released.code, Some(0), "{}", released.stderr);
    assert_eq!(
        store
            .summary(quarantined)
            .await
            .expect("s")
            .expect("k")
            .quarantine,
        None
    );
    let again = saga_pg(&["--url", &url, "release-quarantine", &hex(quarantined)]);
    assert_eq!(again.code, Some(1));
    // The last error is cut to 40 characters in `list`, whole in `show`.
    let long = "a reason well over forty characters long, to be cut: END";
    let given_up = submit(&store, "one-step").await;
    assert_eq!(
        saga_pg(&["--url", &url, "abandon", &hex(given_up), "--reason", long]).code,
        Some(0)
    );
    let list = saga_pg(&["--url", &url, "list"]);
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains(&hex(given_up)))
        .expect("listed");
    assert!(!line.contains(long) && line.contains(&long[..30]), "{line}");
    let show = saga_pg(&["--url", &url, "show", &hex(given_up)]);
    assert!(show.stdout.contains(long), "{}", show.stdout);
    // Hyphens allowed, as PostgreSQL shows a uuid.
    let h = hex(stuck);
    let hyphens = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    assert_eq!(saga_pg(&["--url", &url, "show", &hyphens]).code, Some(0));
}
