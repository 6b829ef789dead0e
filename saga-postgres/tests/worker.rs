//! The worker against a real server: submitted sagas driven by two
//! workers, each step once; a graceful shutdown hands sagas back and the
//! next worker finishes them; an unknown definition is quarantined, an
//! empty saga abandoned, and a saga whose lease is lost is stopped, also
//! when the server hangs instead of refusing connections.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test: std paths read as what they are"
)]

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saga_core::journal::{Outcome, Registry, SagaContext, SagaId, SagaState};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_postgres::{PgStore, SagaSummary, Worker};

use cluster::Cluster;

#[derive(Default)]
struct World {
    /// (saga, step) -> the epochs each action ran at.
    ran: Mutex<BTreeMap<(SagaId, usize), Vec<u64>>>,
    hang: AtomicBool,
    /// Step 0 takes 300 ms.
    slow: AtomicBool,
    /// Hanging steps dropped (their task stopped).
    dropped: AtomicU32,
}

struct OnDrop(Arc<World>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn registry(world: &Arc<World>) -> Registry<String> {
    let mut registry = Registry::new();
    let world = Arc::clone(world);
    registry.register(
        "pay",
        1,
        move |amount: &u64, context: &SagaContext| -> Saga<String> {
            let mut builder = SagaBuilder::new().action_retry(Retry::attempts(2));
            for step in 0..2 {
                let (world, context, amount) = (Arc::clone(&world), *context, *amount);
                builder = builder.add_step(
                    move || {
                        let world = Arc::clone(&world);
                        async move {
                            let _ = amount;
                            if step == 0 && world.slow.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            if step == 0 && world.hang.load(Ordering::SeqCst) {
                                let _guard = OnDrop(Arc::clone(&world));
                                std::future::pending::<()>().await;
                            }
                            let key = (context.id(), step);
                            world
                                .ran
                                .lock()
                                .unwrap()
                                .entry(key)
                                .or_default()
                                .push(context.epoch());
                            Ok::<_, String>(())
                        }
                    },
                    || async { Ok(()) },
                );
            }
            builder.build()
        },
    );
    registry
}

async fn setup() -> Option<(Cluster, PgStore)> {
    let cluster = Cluster::start()?;
    let store = PgStore::open(cluster.pool(20).await).await.unwrap();
    Some((cluster, store))
}

fn worker(store: &PgStore, world: &Arc<World>, owner: &str) -> Worker<String> {
    Worker::new(store.clone(), registry(world), owner)
        .lease(Duration::from_secs(30), Duration::from_millis(200))
        .claim_every(Duration::from_millis(20))
}

/// Completes once `done` holds of the store's sagas (checked every 20 ms,
/// for 60 s at most).
fn until(
    store: &PgStore,
    done: impl Fn(&[SagaSummary]) -> bool + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let store = store.clone();
    async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if done(&store.list(None).await.unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the store never got there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_drive_submitted_sagas_each_step_once() {
    const SAGAS: usize = 30;
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let world = Arc::new(World::default());
    // With a grace period, a worker asked to stop once the store shows
    // every saga committed still joins the runs that wrote their last
    // record and had not returned yet, and counts them.
    let grace = Duration::from_secs(20);
    let a = worker(&store, &world, "a").max_sagas(8).grace(grace);
    let b = worker(&store, &world, "b").max_sagas(8).grace(grace);
    let mut ids = Vec::new();
    for amount in 0..SAGAS as u64 {
        ids.push(a.submit("pay", &amount).await.unwrap());
    }
    // Submitted: unowned, one record each.
    let listed = store.list(Some(SagaState::Forward)).await.unwrap();
    assert_eq!(listed.len(), SAGAS);
    assert!(
        listed
            .iter()
            .all(|s| s.owner.is_none() && s.records == 1 && s.epoch == 0)
    );
    // An unknown definition is not submitted.
    assert!(a.submit("refund", &1_u64).await.is_err());

    let all_done = |list: &[SagaSummary]| {
        list.iter()
            .all(|s| s.state == SagaState::Finished(Outcome::Committed))
    };
    let (ra, rb) = tokio::join!(
        a.run(until(&store, all_done)),
        b.run(until(&store, all_done))
    );
    println!("a: {ra:?}\nb: {rb:?}");
    assert_eq!(ra.claimed + rb.claimed, SAGAS as u64);
    assert_eq!(ra.finished + rb.finished, SAGAS as u64);
    assert_eq!(ra.store_errors + rb.store_errors, 0, "{ra:?} {rb:?}");
    assert_eq!(ra.released + rb.released, 0);
    // Each step of each saga ran once, at epoch 1 (the first claim).
    let ran = world.ran.lock().unwrap().clone();
    assert_eq!(ran.len(), SAGAS * 2);
    for id in &ids {
        for step in 0..2 {
            assert_eq!(
                ran.get(&(*id, step)),
                Some(&vec![1]),
                "saga {id} step {step}"
            );
        }
    }
    for summary in store.list(None).await.unwrap() {
        assert_eq!((summary.epoch, summary.recoveries), (1, 0));
        assert_eq!(summary.owner, None);
        assert_eq!(summary.records, 6); // created, 2 x (started, succeeded), finished
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_hands_sagas_back_and_the_next_worker_finishes_them() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let world = Arc::new(World::default());
    world.hang.store(true, Ordering::SeqCst);
    let a = worker(&store, &world, "a");
    for amount in 0..3_u64 {
        a.submit("pay", &amount).await.unwrap();
    }
    // Stops once every saga's first step is started (records: created,
    // started) and hangs.
    let report = a
        .run(until(&store, |list| {
            list.iter()
                .all(|s| s.owner.as_deref() == Some("a") && s.records == 2)
        }))
        .await;
    assert_eq!((report.claimed, report.released), (3, 3), "{report:?}");
    assert_eq!(report.finished, 0);
    // The hanging steps were stopped, and the sagas handed back.
    assert_eq!(world.dropped.load(Ordering::SeqCst), 3);
    for summary in store.list(None).await.unwrap() {
        assert_eq!(summary.owner, None);
        assert_eq!(summary.lease_left, None);
        assert_eq!(summary.state, SagaState::Forward);
    }

    // The next worker claims them at once and finishes them: the cut-short
    // step runs again (its retry policy allows a second attempt).
    world.hang.store(false, Ordering::SeqCst);
    let b = worker(&store, &world, "b");
    let started = Instant::now();
    let report = b
        .run(until(&store, |list| {
            list.iter()
                .all(|s| s.state == SagaState::Finished(Outcome::Committed))
        }))
        .await;
    assert!(started.elapsed() < Duration::from_secs(20), "not at once");
    assert_eq!((report.claimed, report.finished), (3, 3), "{report:?}");
    for summary in store.list(None).await.unwrap() {
        assert_eq!((summary.epoch, summary.recoveries), (2, 1));
        let history = store.history(summary.id).await.unwrap();
        assert_eq!(history.step(0).action_attempts, 2);
        assert_eq!(history.step(1).action_attempts, 1);
    }
    // Each step's action completed once, at epoch 2.
    let ran = world.ran.lock().unwrap().clone();
    assert_eq!(ran.len(), 6);
    assert!(ran.values().all(|epochs| epochs == &[2]), "{ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_grace_period_a_stopping_worker_finishes_what_it_runs() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let world = Arc::new(World::default());
    world.slow.store(true, Ordering::SeqCst);
    let a = worker(&store, &world, "a").grace(Duration::from_secs(20));
    for amount in 0..2_u64 {
        a.submit("pay", &amount).await.unwrap();
    }
    // Asked to stop while both sagas are in their slow first step.
    let report = a
        .run(until(&store, |list| {
            list.iter()
                .all(|s| s.owner.as_deref() == Some("a") && s.records == 2)
        }))
        .await;
    assert_eq!((report.claimed, report.finished), (2, 2), "{report:?}");
    assert_eq!(report.released, 0, "{report:?}");
    for summary in store.list(None).await.unwrap() {
        assert_eq!(summary.state, SagaState::Finished(Outcome::Committed));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sagas_are_quarantined_empty_ones_abandoned_and_lost_ones_stopped() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let world = Arc::new(World::default());
    // A definition this worker does not know, submitted by one that did.
    let mut other = Registry::<String>::new();
    other.register("legacy", 1, |_: &(), _: &SagaContext| -> Saga<String> {
        SagaBuilder::new()
            .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
            .build()
    });
    let legacy = Worker::new(store.clone(), other, "old-deploy")
        .submit("legacy", &())
        .await
        .unwrap();
    // A saga created, never written: its process died at once.
    let empty = store.new_id();
    store.create(empty, "dead", Duration::ZERO).await.unwrap();
    // A saga that hangs, and that an operator abandons while it runs.
    world.hang.store(true, Ordering::SeqCst);
    // The grace period lets the counts settle after the operator is done.
    let a = worker(&store, &world, "a")
        .lease(Duration::from_secs(30), Duration::from_millis(50))
        .grace(Duration::from_secs(20));
    let hanging = a.submit("pay", &5_u64).await.unwrap();

    // The operator works beside the worker, in a task of its own (not in
    // the shutdown future, which the worker polls only between its own
    // store calls: an abandon waiting there for the row lock would wait
    // on a renewal that waits on that lock). The worker stops once it is
    // done.
    let operator = tokio::spawn({
        let store = store.clone();
        async move {
            until(&store, move |list| {
                list.iter()
                    .any(|s| s.id == hanging && s.owner.as_deref() == Some("a") && s.records == 2)
            })
            .await;
            store.abandon(hanging, "the customer left").await.unwrap();
            // The worker notices at its next renewal, and stops the run.
            until(&store, |list| list.iter().all(|s| s.owner.is_none())).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let report = a.run(async { operator.await.unwrap() }).await;
    println!("{report:?}");
    assert_eq!(report.claimed, 3);
    assert_eq!(report.quarantined, 1, "{report:?}");
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert_eq!(report.lost, 1, "{report:?}");
    assert_eq!(report.released, 0, "{report:?}");
    assert_eq!(world.dropped.load(Ordering::SeqCst), 1);

    let list = store.list(None).await.unwrap();
    let summary = |id| list.iter().find(|s| s.id == id).unwrap();
    let quarantined = summary(legacy);
    assert_eq!(quarantined.state, SagaState::Forward);
    assert!(
        quarantined
            .quarantine
            .as_deref()
            .unwrap()
            .contains("legacy"),
        "{quarantined:?}"
    );
    assert_eq!(
        summary(empty).state,
        SagaState::Finished(Outcome::Abandoned)
    );
    assert_eq!(
        summary(hanging).state,
        SagaState::Finished(Outcome::Abandoned)
    );
    // The abandoned saga's records end with the operator's record: nothing
    // of the stopped run came after it.
    let history = store.history(hanging).await.unwrap();
    assert_eq!(history.last_error(), Some("the customer left"));
    assert!(world.ran.lock().unwrap().is_empty());
}

/// A flow whose second step reads the first one's value, the first step
/// tagging it with the worker that ran it; the second hangs while `hang`.
fn flow_registry(
    worker: &'static str,
    hang: bool,
    seen: &Arc<Mutex<Vec<String>>>,
) -> Registry<String> {
    let seen = Arc::clone(seen);
    let mut registry = Registry::new();
    registry.register_flow("ship", 1, move |_: &SagaContext| {
        let seen = Arc::clone(&seen);
        SagaBuilder::new()
            .action_retry(Retry::attempts(2))
            .input::<u32>()
            .then(
                move |parcel: &u32| {
                    let label = format!("parcel {parcel} labelled by {worker}");
                    async move { Ok::<_, String>(label) }
                },
                |_| async { Ok(()) },
            )
            .saved()
            .then(
                move |(_, label): (&u32, &String)| {
                    let (seen, label) = (Arc::clone(&seen), label.clone());
                    async move {
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        seen.lock().unwrap().push(label);
                        Ok::<_, String>(())
                    }
                },
                |_| async { Ok(()) },
            )
            .saved()
            .build()
    });
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_handed_back_is_finished_by_the_next_worker_with_the_first_workers_value() {
    let Some((_cluster, store)) = setup().await else {
        return;
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let first = Worker::new(store.clone(), flow_registry("a", true, &seen), "a")
        .lease(Duration::from_secs(30), Duration::from_millis(200))
        .claim_every(Duration::from_millis(20));
    let id = first.submit("ship", &7_u32).await.unwrap();
    // Until the second step started (created, step 0 started and
    // succeeded, step 1 started), then a graceful shutdown hands it back.
    let started = |list: &[SagaSummary]| list.iter().any(|s| s.records >= 4);
    let report = first.run(until(&store, started)).await;
    assert_eq!(report.released, 1, "{report:?}");
    let second = Worker::new(store.clone(), flow_registry("b", false, &seen), "b")
        .lease(Duration::from_secs(30), Duration::from_millis(200))
        .claim_every(Duration::from_millis(20))
        .grace(Duration::from_secs(20));
    let committed = |list: &[SagaSummary]| {
        list.iter()
            .all(|s| s.state == SagaState::Finished(Outcome::Committed))
    };
    let report = second.run(until(&store, committed)).await;
    assert_eq!(report.finished, 1, "{report:?}");
    // The second worker's step read the label the first worker made.
    assert_eq!(*seen.lock().unwrap(), ["parcel 7 labelled by a"]);
    let history = store.history(id).await.unwrap();
    assert_eq!(history.step(0).action_attempts, 1);
    assert_eq!(history.step(1).action_attempts, 2);
}

/// Runs one saga whose step 0 hangs on a worker with a 2 s lease, renewed
/// every 200 ms; once the step runs, `cut` puts the store out of reach,
/// and `restore` brings it back once the step was dropped (or 2 s past the
/// lease). Returns the worker's report, how many hanging steps were
/// dropped, and how long after the cut.
async fn through_an_outage(
    owner: &str,
    cut: fn(&Cluster),
    restore: fn(&Cluster),
) -> Option<(saga_postgres::WorkerReport, u32, Duration)> {
    let (cluster, store) = setup().await?;
    let world = Arc::new(World::default());
    world.hang.store(true, Ordering::SeqCst);
    let lease = Duration::from_secs(2);
    let worker = Worker::new(store.clone(), registry(&world), owner)
        .lease(lease, Duration::from_millis(200))
        .claim_every(Duration::from_millis(20));
    worker.submit("pay", &1_u64).await.unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&stopped);
    let shutdown = async move {
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let outage = async move {
        // Wait until the saga's step runs (its Started record is durable).
        loop {
            let list = store.list(None).await.unwrap();
            if list.iter().any(|s| s.records >= 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let at = Instant::now();
        cut(&cluster);
        let deadline = at + lease + Duration::from_secs(2);
        while world.dropped.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dropped_after = at.elapsed();
        let dropped = world.dropped.load(Ordering::SeqCst);
        restore(&cluster);
        // Let the worker reach the server again before it stops.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopped.store(true, Ordering::SeqCst);
        (dropped, dropped_after, cluster)
    };
    let (report, (dropped, dropped_after, _cluster)) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), worker.run(shutdown)),
        outage
    );
    let report = report.expect("the worker ends once asked to, the store back");
    println!("{report:?}; the step was dropped {dropped_after:?} after the outage began");
    Some((report, dropped, dropped_after))
}

/// The server is stopped (connections refused): the worker stops the saga
/// before its lease could run out by the database's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_stops_its_saga_before_the_lease_runs_out() {
    let Some((report, dropped, dropped_after)) =
        through_an_outage("cut-off", Cluster::stop_server, Cluster::start_server).await
    else {
        return;
    };
    assert_eq!(
        dropped, 1,
        "the hanging step was not stopped while the store was out of reach"
    );
    assert!(dropped_after <= Duration::from_secs(3), "{dropped_after:?}");
    assert_eq!(report.lost, 1, "{report:?}");
    assert!(report.store_errors > 0, "{report:?}");
}

/// The server stops answering (frozen, its connections open): every call
/// to it hangs rather than failing. The worker still stops the saga before
/// its lease could run out, and goes on once the server answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_store_hangs_stops_its_saga_before_the_lease_runs_out() {
    let Some((report, dropped, dropped_after)) =
        through_an_outage("frozen-out", Cluster::freeze_server, Cluster::thaw_server).await
    else {
        return;
    };
    assert_eq!(
        dropped, 1,
        "the hanging step was not stopped while the server hung"
    );
    assert!(dropped_after < Duration::from_secs(2), "{dropped_after:?}");
    assert_eq!(report.lost, 1, "{report:?}");
    assert!(report.store_errors > 0, "{report:?}");
}
