//! Durable throughput on PostgreSQL, and how long a dead worker's sagas
//! wait for another worker. Run with
//! `cargo bench -p saga-postgres --bench throughput`.
//!
//! Against a throwaway cluster (the tests' harness: a Unix socket,
//! `fsync=off`, so commits cost no disk flush and the numbers are the
//! store's own work), in one process, on one multi-thread Tokio runtime
//! (as many threads as cores):
//!
//! - **throughput**: sagas of 10 single ready steps, submitted first, then
//!   driven by 1 and by 3 [`Worker`]s (each with its own pool of 20
//!   connections), each running at most 10 or 100 sagas at once
//!   (`max_sagas`), timed from the workers' start to the last saga
//!   committed. Counted from PostgreSQL's statistics (read once the
//!   workers' connections are closed, so every backend has reported):
//!   records written (`n_tup_ins` of `saga.records`), flushes (`n_tup_upd`
//!   of `saga.sagas`: each flush updates its saga's row once, in the same
//!   statement as its records; the one claim of each saga is subtracted,
//!   and leases are long enough that no renewal runs), and every
//!   transaction the database committed (`xact_commit`: flushes, claims,
//!   the reads of each saga's history; the bench's own polls subtracted);
//! - **takeover**: a worker holding 10 sagas (lease 1 s, renewed every
//!   250 ms) dies, its future dropped without releasing anything, while
//!   another worker (claiming every 10 ms) waits: the time from the death
//!   to the last of the sagas claimed by the second worker, of which the
//!   lease the dead worker had left, and from the death to the last saga
//!   committed.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    missing_docs,
    reason = "a std benchmark"
)]

#[path = "../tests/support/cluster.rs"]
mod cluster;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use saga_core::journal::{Registry, SagaContext};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_postgres::{PgStore, Worker};
use sqlx::{PgPool, Row as _};

use cluster::Cluster;

const STEPS: usize = 10;

/// Sagas of `STEPS` ready steps ("bench"), and of `STEPS` steps whose
/// first action waits while `hang` is set ("hang").
fn registry(hang: &Arc<AtomicBool>) -> Registry<String> {
    let mut registry = Registry::new();
    registry.register("bench", 1, |_: &u64, _: &SagaContext| -> Saga<String> {
        let mut builder = SagaBuilder::new();
        for _ in 0..STEPS {
            builder = builder.add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) });
        }
        builder.build()
    });
    let hang = Arc::clone(hang);
    registry.register("hang", 1, move |_: &u64, _: &SagaContext| -> Saga<String> {
        // The first action's attempt cut short by the worker's death is
        // attempted again by the next worker (else the saga compensates).
        let mut builder = SagaBuilder::new().action_retry(Retry::attempts(2));
        for step in 0..STEPS {
            let hang = Arc::clone(&hang);
            builder = builder.add_step(
                move || {
                    let hang = Arc::clone(&hang);
                    async move {
                        while step == 0 && hang.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Ok::<_, String>(())
                    }
                },
                || async { Ok(()) },
            );
        }
        builder.build()
    });
    registry
}

/// The bench's own connection: its polls are counted, to be taken out of
/// the database's transactions.
struct Probe {
    pool: PgPool,
    queries: AtomicU64,
}

impl Probe {
    async fn count(&self, sql: &str) -> i64 {
        self.queries.fetch_add(1, Ordering::Relaxed);
        sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .expect("the probe's query")
            .get(0)
    }

    /// Completes once `count` of the sagas finished (polled every 2 ms).
    async fn finished(&self, count: i64) {
        while self
            .count("SELECT count(*) FROM saga.sagas WHERE state NOT IN ('forward', 'unwinding')")
            .await
            < count
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// (records inserted, saga rows updated, transactions committed), as the
/// statistics say now, read on a connection of its own, closed at once
/// (so that its own transactions are reported when it exits).
async fn stats(cluster: &Cluster) -> (i64, i64, i64) {
    let pool = cluster.pool(1).await;
    let mut read = Vec::new();
    for sql in [
        "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'saga.records'::regclass",
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'saga.sagas'::regclass",
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    ] {
        let row = sqlx::query(sql)
            .fetch_one(&pool)
            .await
            .expect("the statistics");
        read.push(row.get::<i64, _>(0));
    }
    pool.close().await;
    // A backend reports its statistics as it exits: give it the time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (read[0], read[1], read[2])
}

/// A pool of its own, for one worker.
async fn worker_pool(cluster: &Cluster) -> PgPool {
    cluster.pool(20).await
}

/// Runs `total` sagas through `workers` workers of `in_flight` sagas at
/// once, and prints a row of the table. `overhead`: the transactions one
/// reading of the statistics adds.
async fn throughput(
    cluster: &Cluster,
    overhead: i64,
    workers: usize,
    in_flight: usize,
    total: usize,
) {
    let hang = Arc::new(AtomicBool::new(false));
    {
        // Submitted on connections closed before the count starts.
        let pool = cluster.pool(4).await;
        sqlx::query("TRUNCATE saga.sagas, saga.records")
            .execute(&pool)
            .await
            .expect("emptied");
        let submitter = Worker::new(PgStore::new(pool).expect("a store"), registry(&hang), "s");
        for amount in 0..total as u64 {
            submitter.submit("bench", &amount).await.expect("submitted");
        }
        submitter.store().pool().close().await;
    }
    let mut all = Vec::new();
    for index in 0..workers {
        let store = PgStore::new(worker_pool(cluster).await).expect("a store");
        all.push(
            Worker::new(store, registry(&hang), format!("w{index}"))
                // No renewal during a run: the flushes are counted from
                // the row updates.
                .lease(Duration::from_secs(600), Duration::from_secs(300))
                .claim_every(Duration::from_millis(5))
                .max_sagas(in_flight),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = stats(cluster).await;
    let probe = Probe {
        pool: cluster.pool(1).await,
        queries: AtomicU64::new(0),
    };

    let (done, _) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let runs = all.iter().map(|worker| {
        let mut stop = done.subscribe();
        worker.run(async move {
            let _ = stop.wait_for(|done| *done).await;
        })
    });
    let (reports, elapsed) = tokio::join!(join_all(runs), async {
        probe.finished(total as i64).await;
        let elapsed = started.elapsed().as_secs_f64();
        let _ = done.send(true);
        elapsed
    });
    let committed = probe
        .count("SELECT count(*) FROM saga.sagas WHERE state = 'committed'")
        .await;
    assert_eq!(committed, total as i64, "every saga commits");
    let claimed: u64 = reports.iter().map(|report| report.claimed).sum();
    let errors: u64 = reports.iter().map(|report| report.store_errors).sum();
    assert_eq!(claimed, total as u64, "{reports:?}");
    assert_eq!(errors, 0, "{reports:?}");
    // Close every connection but the reader's: each backend reports its
    // statistics as it exits.
    probe.pool.close().await;
    for worker in &all {
        worker.store().pool().close().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polls = probe.queries.load(Ordering::Relaxed) as i64;
    let after = stats(cluster).await;
    let records = after.0 - before.0;
    let flushes = after.1 - before.1 - claimed as i64;
    // Neither the probe's polls nor the reading of the statistics are the
    // workers' transactions.
    let commits = after.2 - before.2 - polls - overhead;

    let steps = (total * STEPS) as f64;
    println!(
        "| {workers} | {in_flight} | {total} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |",
        total as f64 / elapsed,
        steps / elapsed,
        records as f64 / steps,
        flushes as f64 / steps,
        commits as f64 / steps,
    );
}

/// Awaits every future of `futures` at once (the workers), in order.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        match pending {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(()),
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("ready"))
        .collect()
}

async fn takeover(cluster: &Cluster, trial: usize) {
    let probe = Probe {
        pool: cluster.pool(1).await,
        queries: AtomicU64::new(0),
    };
    const SAGAS: i64 = 10;
    let hang = Arc::new(AtomicBool::new(true));
    sqlx::query("TRUNCATE saga.sagas, saga.records")
        .execute(&probe.pool)
        .await
        .expect("emptied");
    let lease = Duration::from_secs(1);
    let dying = Worker::new(
        PgStore::new(worker_pool(cluster).await).expect("a store"),
        registry(&hang),
        "dying",
    )
    .lease(lease, Duration::from_millis(250))
    .claim_every(Duration::from_millis(5));
    let heir = Worker::new(
        PgStore::new(worker_pool(cluster).await).expect("a store"),
        registry(&hang),
        "heir",
    )
    .lease(lease, Duration::from_millis(250))
    .claim_every(Duration::from_millis(10));
    for amount in 0..SAGAS as u64 {
        dying.submit("hang", &amount).await.expect("submitted");
    }
    // The dying worker takes them all and runs them (they hang on their
    // first step) for a while, renewing, then dies: its future is dropped
    // (its tasks aborted) and nothing is released.
    let _ = tokio::time::timeout(Duration::from_millis(1200), async {
        tokio::join!(dying.run(std::future::pending()), async {
            while probe
                .count("SELECT count(*) FROM saga.sagas WHERE owner = 'dying'")
                .await
                < SAGAS
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    })
    .await;
    let died = Instant::now();
    let lease_left = probe
        .count(
            "SELECT (extract(epoch FROM max(lease_expires_at) - clock_timestamp()) * 1e6)::int8 \
             FROM saga.sagas",
        )
        .await;
    hang.store(false, Ordering::SeqCst);
    let (done, _) = tokio::sync::watch::channel(false);
    let mut stop = done.subscribe();
    let (report, (taken, finished)) = tokio::join!(
        heir.run(async move {
            let _ = stop.wait_for(|done| *done).await;
        }),
        async {
            while probe
                .count("SELECT count(*) FROM saga.sagas WHERE owner = 'heir' OR state NOT IN ('forward', 'unwinding')")
                .await
                < SAGAS
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let taken = died.elapsed();
            probe.finished(SAGAS).await;
            let finished = died.elapsed();
            let _ = done.send(true);
            (taken, finished)
        }
    );
    assert_eq!(report.claimed, SAGAS as u64, "{report:?}");
    let committed = probe
        .count("SELECT count(*) FROM saga.sagas WHERE state = 'committed'")
        .await;
    assert_eq!(committed, SAGAS, "every saga taken over commits");
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    let lease_left = lease_left as f64 / 1e3;
    println!(
        "| {trial} | {SAGAS} | {:.0} | {:.0} | {:.0} | {:.0} |",
        lease_left,
        ms(taken),
        ms(taken) - lease_left,
        ms(finished),
    );
    dying.store().pool().close().await;
    heir.store().pool().close().await;
    probe.pool.close().await;
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        PgStore::open(cluster.pool(1).await)
            .await
            .expect("migrated");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // What reading the statistics adds to them (its queries, and
        // their preparation), read with nothing else running.
        stats(&cluster).await;
        let first = stats(&cluster).await;
        let overhead = stats(&cluster).await.2 - first.2;
        println!(
            "| workers | sagas in flight (each) | sagas | sagas/s | steps/s | records per step | flushes per step | transactions per step |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (workers, in_flight, total) in [(1, 10, 300), (1, 100, 1000), (3, 10, 600), (3, 100, 1000)] {
            throughput(&cluster, overhead, workers, in_flight, total).await;
        }
        println!();
        println!(
            "| trial | sagas | lease left at death, ms | death to all claimed, ms | lease expiry to all claimed, ms | death to all committed, ms |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        for trial in 1..=3 {
            takeover(&cluster, trial).await;
        }
    });
}
