//! One conformance suite, two stores: the same durable sagas and flows run
//! on `saga-sqlite` and on `saga-postgres` (a throwaway cluster, skipped
//! with a printed reason when PostgreSQL's binaries are missing, unless
//! `SAGA_POSTGRES_REQUIRED=1`), through the registry's `start` and
//! `resume`:
//!
//! - a saga commits, its records replay to committed, and it is not
//!   unfinished;
//! - a saga whose process died mid-step is unfinished, and resumed from
//!   the store's records it commits, running the cut-short step again and
//!   the step before it not again;
//! - a flow resumed the same way reads the value its first step returned
//!   before the crash;
//! - a stuck saga reopened by an operator is compensated by the next run;
//! - an abandoned saga is finished (abandoned) and not unfinished;
//! - records survive the store being opened again.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

#[path = "../../saga-postgres/tests/support/cluster.rs"]
mod cluster;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_core::journal::{
    Journal, Outcome, Record, Registry, SagaContext, SagaId, SagaState, Start, replay,
};
use saga_core::{Retry, Saga, SagaBuilder};

/// What the suite needs of a store.
trait UnderTest {
    /// A journal for a new saga, and its id.
    async fn begin(&self) -> (SagaId, Box<dyn Journal + Send>);
    /// The journal that goes on with saga `id` after its process died.
    async fn take_over(&self, id: SagaId) -> Box<dyn Journal + Send>;
    async fn records(&self, id: SagaId) -> Vec<Record>;
    async fn unfinished(&self) -> Vec<SagaId>;
    async fn abandon(&self, id: SagaId);
    async fn reopen(&self, id: SagaId);
    /// The same store, opened again (a new process).
    async fn reopened(&self) -> Self;
}

struct Sqlite {
    path: PathBuf,
    store: saga_sqlite::Store,
}

impl UnderTest for Sqlite {
    async fn begin(&self) -> (SagaId, Box<dyn Journal + Send>) {
        let id = self.store.new_id();
        (id, Box::new(self.store.journal(id).unwrap()))
    }
    async fn take_over(&self, id: SagaId) -> Box<dyn Journal + Send> {
        Box::new(self.store.journal(id).unwrap())
    }
    async fn records(&self, id: SagaId) -> Vec<Record> {
        self.store.records(id).unwrap()
    }
    async fn unfinished(&self) -> Vec<SagaId> {
        self.store.unfinished().unwrap()
    }
    async fn abandon(&self, id: SagaId) {
        self.store.abandon(id, "given up by the suite").unwrap();
    }
    async fn reopen(&self, id: SagaId) {
        self.store.reopen(id).unwrap();
    }
    async fn reopened(&self) -> Self {
        Sqlite {
            path: self.path.clone(),
            store: saga_sqlite::Store::open(&self.path).unwrap(),
        }
    }
}

struct Postgres {
    store: saga_postgres::PgStore,
    claims: Mutex<HashMap<SagaId, saga_postgres::Claim>>,
}

const LEASE: Duration = Duration::from_secs(60);

impl UnderTest for Postgres {
    async fn begin(&self) -> (SagaId, Box<dyn Journal + Send>) {
        let id = self.store.new_id();
        let claim = self.store.create(id, "first", LEASE).await.unwrap();
        let journal = self.store.journal(&claim);
        self.claims.lock().unwrap().insert(id, claim);
        (id, Box::new(journal))
    }
    async fn take_over(&self, id: SagaId) -> Box<dyn Journal + Send> {
        // The dead process's lease is handed back (as its expiry would),
        // and the next worker claims the saga.
        let old = self.claims.lock().unwrap().remove(&id);
        if let Some(old) = old {
            self.store.release([&old]).await.unwrap();
        }
        let claims = self.store.claim("next", LEASE, 100).await.unwrap();
        let claim = claims
            .into_iter()
            .find(|claim| claim.id() == id)
            .expect("the saga is claimable");
        let journal = self.store.journal(&claim);
        self.claims.lock().unwrap().insert(id, claim);
        Box::new(journal)
    }
    async fn records(&self, id: SagaId) -> Vec<Record> {
        self.store.records(id).await.unwrap()
    }
    async fn unfinished(&self) -> Vec<SagaId> {
        self.store.unfinished().await.unwrap()
    }
    async fn abandon(&self, id: SagaId) {
        self.store
            .abandon(id, "given up by the suite")
            .await
            .unwrap();
    }
    async fn reopen(&self, id: SagaId) {
        self.store.reopen(id).await.unwrap();
    }
    async fn reopened(&self) -> Self {
        let store = saga_postgres::PgStore::open(self.store.pool().clone())
            .await
            .unwrap();
        Postgres {
            store,
            claims: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Default)]
struct World {
    hang: AtomicBool,
    // A step began to hang (its action was polled: the crash cuts it short
    // mid-step, not between its Started record and its first poll).
    hung: AtomicBool,
    refuse_undo: AtomicBool,
    runs: Mutex<Vec<String>>,
    undone: AtomicU32,
}

fn registry(world: &Arc<World>) -> Registry<String> {
    let mut registry = Registry::new();
    let saga_world = Arc::clone(world);
    registry.register(
        "pair",
        1,
        move |fails: &bool, _: &SagaContext| -> Saga<String> {
            let mut builder = SagaBuilder::new().action_retry(Retry::attempts(2));
            for step in 0..2 {
                let (world, undo_world, fails) =
                    (Arc::clone(&saga_world), Arc::clone(&saga_world), *fails);
                builder = builder.add_step(
                    move || {
                        let world = Arc::clone(&world);
                        async move {
                            world.runs.lock().unwrap().push(format!("step {step}"));
                            if step == 1 && world.hang.load(Ordering::SeqCst) {
                                world.hung.store(true, Ordering::SeqCst);
                                std::future::pending::<()>().await;
                            }
                            if step == 1 && fails {
                                return Err(String::from("refused"));
                            }
                            Ok::<_, String>(())
                        }
                    },
                    move || {
                        let world = Arc::clone(&undo_world);
                        async move {
                            if world.refuse_undo.load(Ordering::SeqCst) {
                                return Err(String::from("undo refused"));
                            }
                            world.undone.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                    },
                );
            }
            builder.build()
        },
    );
    let flow_world = Arc::clone(world);
    registry.register_flow("label", 1, move |_: &SagaContext| {
        let world = Arc::clone(&flow_world);
        let tagged = Arc::clone(&flow_world);
        SagaBuilder::new()
            .action_retry(Retry::attempts(2))
            .input::<u32>()
            .then(
                move |n: &u32| {
                    let runs = tagged.runs.lock().unwrap().len();
                    let label = format!("label {n} made after {runs} runs");
                    async move { Ok::<_, String>(label) }
                },
                |_| async { Ok(()) },
            )
            .saved()
            .then(
                move |(_, label): (&u32, &String)| {
                    let (world, label) = (Arc::clone(&world), label.clone());
                    async move {
                        if world.hang.load(Ordering::SeqCst) {
                            world.hung.store(true, Ordering::SeqCst);
                            std::future::pending::<()>().await;
                        }
                        world.runs.lock().unwrap().push(label);
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

fn state(records: &[Record]) -> SagaState {
    replay(records).expect("the records replay").state()
}

/// Starts `definition` with `parameters` and lets it run until the store
/// holds `records` of it and its hanging step was polled; then its
/// "process" dies (the task is aborted).
async fn start_and_die<S: UnderTest>(
    store: &S,
    world: &World,
    registry: &Registry<String>,
    definition: &str,
    parameters: Vec<u8>,
    records: usize,
) -> SagaId {
    let (id, journal) = store.begin().await;
    let start = Start::new(definition, 1, parameters);
    let run = registry
        .start(journal, start, &SagaContext::new(id))
        .unwrap();
    world.hung.store(false, Ordering::SeqCst);
    let task = tokio::spawn(run);
    for _ in 0..6000 {
        if store.records(id).await.len() >= records && world.hung.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        store.records(id).await.len() >= records && world.hung.load(Ordering::SeqCst),
        "the saga never got there"
    );
    task.abort();
    let _ = task.await;
    id
}

async fn resume<S: UnderTest>(
    store: &S,
    registry: &Registry<String>,
    id: SagaId,
) -> Result<(), String> {
    let history = replay(&store.records(id).await).unwrap();
    let journal = store.take_over(id).await;
    let run = registry
        .resume(journal, history, &SagaContext::new(id))
        .map_err(|why| why.to_string())?;
    run.await.map_err(|error| error.to_string())
}

async fn suite<S: UnderTest>(store: S) {
    // Committed.
    let world = Arc::new(World::default());
    let registry = registry(&world);
    let (id, journal) = store.begin().await;
    let start = Start::new("pair", 1, registry.encode_parameters(&false));
    let run = registry
        .start(journal, start, &SagaContext::new(id))
        .unwrap();
    run.await.unwrap();
    assert_eq!(
        state(&store.records(id).await),
        SagaState::Finished(Outcome::Committed)
    );
    assert!(!store.unfinished().await.contains(&id));
    let committed = id;

    // A crash mid-step, then the next process.
    world.hang.store(true, Ordering::SeqCst);
    world.runs.lock().unwrap().clear();
    let id = start_and_die(
        &store,
        &world,
        &registry,
        "pair",
        registry.encode_parameters(&false),
        4,
    )
    .await;
    assert!(store.unfinished().await.contains(&id));
    world.hang.store(false, Ordering::SeqCst);
    resume(&store, &registry, id).await.unwrap();
    let records = store.records(id).await;
    assert_eq!(state(&records), SagaState::Finished(Outcome::Committed));
    let history = replay(&records).unwrap();
    assert_eq!(history.step(0).action_attempts, 1);
    assert_eq!(history.step(1).action_attempts, 2);
    assert_eq!(*world.runs.lock().unwrap(), ["step 0", "step 1", "step 1"]);
    for (seq, record) in records.iter().enumerate() {
        assert_eq!(record.seq, seq as u64);
    }

    // A flow: the resumed step reads the value from before the crash.
    world.hang.store(true, Ordering::SeqCst);
    world.runs.lock().unwrap().clear();
    let id = start_and_die(
        &store,
        &world,
        &registry,
        "label",
        registry.encode_parameters(&9_u32),
        4,
    )
    .await;
    world.hang.store(false, Ordering::SeqCst);
    world
        .runs
        .lock()
        .unwrap()
        .push(String::from("a run in between"));
    resume(&store, &registry, id).await.unwrap();
    assert_eq!(
        world.runs.lock().unwrap().last().map(String::as_str),
        Some("label 9 made after 0 runs")
    );

    // Stuck, reopened by an operator, then compensated.
    world.refuse_undo.store(true, Ordering::SeqCst);
    let (id, journal) = store.begin().await;
    let start = Start::new("pair", 1, registry.encode_parameters(&true));
    let run = registry
        .start(journal, start, &SagaContext::new(id))
        .unwrap();
    assert!(run.await.is_err());
    assert_eq!(
        state(&store.records(id).await),
        SagaState::Finished(Outcome::Stuck)
    );
    world.refuse_undo.store(false, Ordering::SeqCst);
    store.reopen(id).await;
    assert!(store.unfinished().await.contains(&id));
    let undone = world.undone.load(Ordering::SeqCst);
    let resumed = resume(&store, &registry, id).await;
    assert!(resumed.is_err(), "the saga still failed: {resumed:?}");
    assert_eq!(
        state(&store.records(id).await),
        SagaState::Finished(Outcome::Compensated)
    );
    assert!(world.undone.load(Ordering::SeqCst) > undone);

    // Abandoned.
    world.hang.store(true, Ordering::SeqCst);
    let id = start_and_die(
        &store,
        &world,
        &registry,
        "pair",
        registry.encode_parameters(&false),
        4,
    )
    .await;
    world.hang.store(false, Ordering::SeqCst);
    store.abandon(id).await;
    assert_eq!(
        state(&store.records(id).await),
        SagaState::Finished(Outcome::Abandoned)
    );
    assert!(!store.unfinished().await.contains(&id));

    // Opened again: the records are there.
    let again = store.reopened().await;
    assert_eq!(
        state(&again.records(committed).await),
        SagaState::Finished(Outcome::Committed)
    );
    assert!(again.unfinished().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let store = saga_sqlite::Store::open(&path).unwrap();
    suite(Sqlite { path, store }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_postgres() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let store = saga_postgres::PgStore::open(cluster.pool(10).await)
        .await
        .unwrap();
    suite(Postgres {
        store,
        claims: Mutex::new(HashMap::new()),
    })
    .await;
}
