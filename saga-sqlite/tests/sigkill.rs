//! Real crashes: a child process (this test binary, re-run in child mode)
//! starts durable sagas in a SQLite store and is killed with SIGKILL at
//! random moments, again and again; then one last child recovers
//! everything. A ledger file outside the store, keyed by (saga id, step) as a
//! downstream system would key it, checks the books: every saga finished
//! committed (all its steps applied) or compensated (none left applied).
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::future::join_all;
use saga_core::journal::{Outcome, Registry, SagaContext, SagaState};
use saga_core::{Retry, Saga, SagaBuilder};
use saga_sqlite::{Durable, Recovered, Store};

const SAGAS: usize = 24;
const STEPS: usize = 4;
const ROUNDS: u64 = 12;
const CHILD: &str = "SAGA_SQLITE_SIGKILL_CHILD";

/// Appends one line to the ledger, durably.
fn ledger(path: &Path, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // One `write` of the whole line (O_APPEND), so that a kill never leaves
    // half a line for the next one to run into.
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
    file.sync_data().unwrap();
}

/// Saga `n` fails at its last step when `n` is odd.
fn definition(ledger_path: PathBuf) -> Registry<String> {
    let mut registry = Registry::new();
    registry.register(
        "books",
        1,
        move |n: &u64, context: &SagaContext| -> Saga<String> {
            // A step cut short by a kill runs again: more attempts than there
            // are rounds of kills, so only the failing step ends a saga.
            let mut builder = SagaBuilder::new().action_retry(Retry::attempts(ROUNDS as u32 + 2));
            for step in 0..STEPS {
                let key = context.key(step);
                let (act, undo) = (ledger_path.clone(), ledger_path.clone());
                let (act_key, undo_key) = (key.clone(), key);
                let fails = step == STEPS - 1 && n % 2 == 1;
                builder = builder.add_step(
                    move || {
                        let (path, key) = (act.clone(), act_key.clone());
                        async move {
                            smol::Timer::after(Duration::from_millis(2)).await;
                            if fails {
                                return Err(format!("step {step} refused"));
                            }
                            ledger(&path, &format!("apply {key}"));
                            Ok(())
                        }
                    },
                    move || {
                        let (path, key) = (undo.clone(), undo_key.clone());
                        async move {
                            smol::Timer::after(Duration::from_millis(1)).await;
                            ledger(&path, &format!("undo {key}"));
                            Ok(())
                        }
                    },
                );
            }
            builder.build()
        },
    );
    registry
}

/// The child: recovers what the store holds, then starts the sagas still
/// missing, all at once.
fn child(dir: &Path) {
    let durable = Durable::new(
        Store::open(dir.join("sagas.db")).unwrap(),
        definition(dir.join("ledger")),
    );
    smol::block_on(async {
        for (id, recovered) in durable.recover().await.unwrap() {
            assert!(
                matches!(recovered, Recovered::Ran(_)),
                "{id}: {recovered:?}"
            );
        }
        let started = durable.store().list().unwrap().len();
        let runs = (started..SAGAS).map(|n| durable.start("books", &(n as u64)).unwrap().1);
        join_all(runs).await;
    });
}

#[test]
fn sagas_killed_at_random_moments_finish_with_the_books_right() {
    if let Ok(dir) = std::env::var(CHILD) {
        return child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sagas_killed_at_random_moments_finish_with_the_books_right",
            ])
            .env(CHILD, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    for round in 0..ROUNDS {
        let mut child = spawn();
        // A pseudo-random moment, different each round.
        std::thread::sleep(Duration::from_millis(5 + (round * 37 + 11) % 40));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    let status = spawn().wait().unwrap();
    assert!(status.success(), "the last child finishes everything");
    assert!(kills >= 3, "only {kills} children were killed mid-run");

    let store = Store::open(dir.path().join("sagas.db")).unwrap();
    assert!(store.unfinished().unwrap().is_empty());
    let sagas = store.list().unwrap();
    assert_eq!(sagas.len(), SAGAS);
    let lines = std::fs::read_to_string(dir.path().join("ledger")).unwrap_or_default();
    let mut applied = BTreeSet::new();
    for line in lines.lines() {
        match line.split_once(' ') {
            Some(("apply", key)) => applied.insert(key.to_owned()),
            Some(("undo", key)) => applied.remove(key),
            _ => panic!("a torn ledger line {line:?}"),
        };
    }
    let (mut committed, mut compensated) = (0, 0);
    for saga in &sagas {
        let keys: Vec<String> = (0..STEPS)
            .map(|step| format!("{}-{step}", saga.id))
            .collect();
        match saga.state {
            Ok(SagaState::Finished(Outcome::Committed)) => {
                committed += 1;
                assert!(keys.iter().all(|key| applied.contains(key)), "{}", saga.id);
            }
            Ok(SagaState::Finished(Outcome::Compensated)) => {
                compensated += 1;
                assert!(keys.iter().all(|key| !applied.contains(key)), "{}", saga.id);
            }
            ref other => panic!("saga {} ended {other:?}", saga.id),
        }
    }
    // Odd-numbered sagas fail at their last step and compensate; even ones
    // commit, however often a kill cut one of their steps short.
    assert_eq!((committed, compensated), (SAGAS / 2, SAGAS / 2));
    println!("{kills} kills; {committed} committed, {compensated} compensated");
}
