//! The `saga-pg` binary against a real server: a store with sagas in
//! every state, listed, shown, abandoned, reopened and released from
//! quarantine through the command line; its exit codes (0 done, 1 failed,
//! 2 wrong usage) and its messages.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test: std paths read as what they are"
)]

#[path = "support/cluster.rs"]
mod cluster;

use std::process::Command;
use std::time::Duration;

use saga_core::journal::{Outcome, SagaId, SagaState, Start};
use saga_core::{Saga, SagaBuilder};
use saga_postgres::PgStore;

use cluster::Cluster;

const LONG: Duration = Duration::from_secs(600);

/// What one run of the binary did.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `saga-pg` with `args`, `DATABASE_URL` set to `database_url` (or
/// unset).
fn saga_pg(database_url: Option<&str>, args: &[&str]) -> Ran {
    let mut command = Command::new(env!("CARGO_BIN_EXE_saga-pg"));
    command.args(args);
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    let output = command.output().expect("saga-pg runs");
    let ran = Ran {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 errors"),
    };
    println!(
        "$ saga-pg {}\n{}{}[exit {}]",
        args.join(" "),
        ran.stdout,
        ran.stderr,
        ran.code
    );
    ran
}

/// A saga of two steps whose second action fails (when `fail`), and whose
/// first compensation fails too (when `stuck`).
fn saga(fail: bool, stuck: bool) -> Saga<String> {
    SagaBuilder::new()
        .add_step(
            || async { Ok::<_, String>(()) },
            move || async move {
                match stuck {
                    true => Err(String::from("the bank is closed")),
                    false => Ok(()),
                }
            },
        )
        .add_step(
            move || async move {
                match fail {
                    true => Err(String::from("card declined\nby the issuer")),
                    false => Ok(()),
                }
            },
            || async { Ok(()) },
        )
        .build()
}

/// Runs `saga` to its end in a new saga held by `owner`.
async fn run(store: &PgStore, owner: &str, definition: &str, mut saga: Saga<String>) -> SagaId {
    let claim = store.create(store.new_id(), owner, LONG).await.unwrap();
    let mut journal = store.journal(&claim);
    let run = saga
        .run_journaled(&mut journal, Start::new(definition, 2, vec![]))
        .unwrap();
    let _ = run.await;
    claim.id()
}

/// The ids of the sagas in `list`'s output, with their state column.
fn listed(stdout: &str) -> Vec<(String, String)> {
    let mut lines = stdout.lines();
    let header = lines.next().expect("a header");
    assert!(header.starts_with("ID "), "{header}");
    for column in [
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
    lines
        .filter(|line| !line.starts_with('('))
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0].to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn operators_use_the_store_through_saga_pg() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = format!(
        "postgres://postgres@/postgres?host={}",
        cluster.socket_dir().display()
    );
    let url = url.as_str();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (store, committed, compensated, stuck, running, submitted) = runtime.block_on(async {
        let pool = cluster.pool(4).await;
        let store = PgStore::open(pool).await.unwrap();
        let committed = run(&store, "w1", "pay", saga(false, false)).await;
        let compensated = run(&store, "w1", "pay", saga(true, false)).await;
        let stuck = run(&store, "w1", "refund", saga(true, true)).await;
        // Held by w2, written up to its first step.
        let running = store.create(store.new_id(), "w2", LONG).await.unwrap();
        let mut journal = store.journal(&running);
        let mut never = SagaBuilder::new()
            .add_step(std::future::pending::<Result<(), String>>, || async {
                Ok(())
            })
            .build();
        let run = never
            .run_journaled(&mut journal, Start::new("ship", 1, vec![]))
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(300), run).await;
        // Submitted, claimed, and set aside.
        let submitted = store.new_id();
        store
            .submit(submitted, &Start::new("unknown", 7, vec![1, 2, 3]), 0)
            .await
            .unwrap();
        let claims = store.claim("w3", LONG, 10).await.unwrap();
        assert_eq!(claims.len(), 1);
        store
            .quarantine(&claims[0], "no definition `unknown` v7")
            .await
            .unwrap();
        (
            store,
            committed,
            compensated,
            stuck,
            running.id(),
            submitted,
        )
    });
    let text = |id: SagaId| id.to_string();

    // list: every saga, one a line, with its state.
    let all = saga_pg(None, &["--url", url, "list"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let mut want = vec![
        (text(committed), "committed"),
        (text(compensated), "compensated"),
        (text(stuck), "stuck"),
        (text(running), "forward"),
        (text(submitted), "forward"),
    ];
    want.sort();
    let got = listed(&all.stdout);
    assert_eq!(
        got.iter()
            .map(|(id, state)| (id.clone(), state.as_str()))
            .collect::<Vec<_>>(),
        want
    );
    let line = |stdout: &str, id: SagaId| {
        stdout
            .lines()
            .find(|line| line.starts_with(&text(id)))
            .unwrap_or_else(|| panic!("no line for {id} in\n{stdout}"))
            .to_owned()
    };
    let held = line(&all.stdout, running);
    assert!(held.contains("ship@1") && held.contains(" w2 "), "{held}");
    let stuck_line = line(&all.stdout, stuck);
    assert!(
        stuck_line.contains("refund@2") && stuck_line.contains("card declined\\nby the"),
        "{stuck_line}"
    );
    let set_aside = line(&all.stdout, submitted);
    assert!(
        set_aside.contains("no definition `unknown` v7"),
        "{set_aside}"
    );
    // The URL from DATABASE_URL; --state filters.
    let only = saga_pg(Some(url), &["list", "--state", "stuck"]);
    assert_eq!(only.code, 0, "{}", only.stderr);
    assert_eq!(listed(&only.stdout), [(text(stuck), "stuck".into())]);
    let none = saga_pg(Some(url), &["list", "--state=abandoned"]);
    assert_eq!((none.code, listed(&none.stdout).len()), (0, 0));
    assert!(none.stdout.contains("(no saga)"), "{}", none.stdout);

    // show: the summary, then the records one a line (a message's newline
    // escaped).
    let shown = saga_pg(Some(url), &["show", &text(compensated)]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for field in [
        format!("id:         {}", text(compensated)),
        "definition: pay@2".into(),
        "state:      compensated".into(),
        "owner:      -".into(),
        "records:    11".into(),
        "last error: step 1 failed: card declined\\nby the issuer".into(),
        "journal:\n".into(),
        "     0  created pay@2, fingerprint ".into(),
        "     1  step 0: action started, attempt 1\n".into(),
        "     4  step 1: action failed, attempt 1: card declined\\nby the issuer\n".into(),
        "     5  unwinding from step 1 (failed)\n".into(),
        "     9  step 0: compensation succeeded\n".into(),
        "    10  finished compensated: step 1 failed: card declined\\nby the issuer".into(),
    ] {
        assert!(
            shown.stdout.contains(&field),
            "{field:?} in\n{}",
            shown.stdout
        );
    }
    let created = saga_pg(Some(url), &["show", &text(submitted)]);
    assert!(
        created
            .stdout
            .contains("quarantine: no definition `unknown` v7")
            && created.stdout.contains("created unknown@7")
            && created.stdout.contains("parameters 3 bytes"),
        "{}",
        created.stdout
    );
    // As PostgreSQL shows a uuid, with hyphens.
    let hyphens = {
        let t = text(stuck);
        format!(
            "{}-{}-{}-{}-{}",
            &t[..8],
            &t[8..12],
            &t[12..16],
            &t[16..20],
            &t[20..]
        )
    };
    let shown = saga_pg(Some(url), &["show", &hyphens]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown
            .stdout
            .contains("step 0: compensation failed, attempt 1: the bank is closed")
            && shown.stdout.contains("finished stuck"),
        "{}",
        shown.stdout
    );

    // abandon: the running saga is given up, w2 fenced.
    let abandoned = saga_pg(
        Some(url),
        &["abandon", &text(running), "--reason", "no longer shipped"],
    );
    assert_eq!(abandoned.code, 0, "{}", abandoned.stderr);
    assert!(
        abandoned.stdout.contains("abandoned"),
        "{}",
        abandoned.stdout
    );
    let again = saga_pg(Some(url), &["abandon", &text(running), "--reason", "again"]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("already finished (abandoned)"),
        "{}",
        again.stderr
    );
    let summary = |id| runtime.block_on(store.summary(id)).unwrap().unwrap();
    let gone = summary(running);
    assert_eq!(gone.state, SagaState::Finished(Outcome::Abandoned));
    assert_eq!(gone.last_error.as_deref(), Some("no longer shipped"));
    assert_eq!(gone.owner, None);

    // reopen: only a stuck saga.
    let reopened = saga_pg(Some(url), &["reopen", &text(stuck)]);
    assert_eq!(reopened.code, 0, "{}", reopened.stderr);
    assert_eq!(summary(stuck).state, SagaState::Unwinding);
    let refused = saga_pg(Some(url), &["reopen", &text(committed)]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("finished committed: only a stuck saga is reopened"),
        "{}",
        refused.stderr
    );
    let shown = saga_pg(Some(url), &["show", &text(stuck)]);
    assert!(
        shown.stdout.contains("state:      unwinding")
            && shown.stdout.contains("reopened by an operator"),
        "{}",
        shown.stdout
    );

    // release-quarantine: once.
    let released = saga_pg(Some(url), &["release-quarantine", &text(submitted)]);
    assert_eq!(released.code, 0, "{}", released.stderr);
    assert_eq!(summary(submitted).quarantine, None);
    let again = saga_pg(Some(url), &["release-quarantine", &text(submitted)]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("is not quarantined"),
        "{}",
        again.stderr
    );

    // A saga the store does not know.
    let unknown = SagaId(42).to_string();
    for args in [
        vec!["show", unknown.as_str()],
        vec!["abandon", unknown.as_str(), "--reason", "x"],
        vec!["reopen", unknown.as_str()],
        vec!["release-quarantine", unknown.as_str()],
    ] {
        let ran = saga_pg(Some(url), &args);
        assert_eq!(ran.code, 1, "{args:?}");
        assert!(
            ran.stderr
                .contains(&format!("saga {unknown} is not in the store")),
            "{args:?}: {}",
            ran.stderr
        );
    }

    // A database without the store's tables, and one that is not there.
    runtime.block_on(async {
        sqlx::query("CREATE DATABASE empty")
            .execute(store.pool())
            .await
            .unwrap();
    });
    let empty = url.replace("/postgres?", "/empty?");
    let ran = saga_pg(Some(&empty), &["list"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("has no saga store"), "{}", ran.stderr);
    let nowhere = format!(
        "postgres://postgres@/postgres?host={}",
        cluster.socket_dir().join("nowhere").display()
    );
    let ran = saga_pg(Some(&nowhere), &["list"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("cannot connect to"), "{}", ran.stderr);
    let ran = saga_pg(
        Some(url),
        &["--url", "postgres://me:secret@/x?host=/nowhere", "list"],
    );
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr.contains("me:***@") && !ran.stderr.contains("secret"),
        "{}",
        ran.stderr
    );
}

#[test]
fn wrong_usage_exits_with_2_and_says_why() {
    // No database is reached: these need no server.
    let id = SagaId(7).to_string();
    for (args, says) in [
        (vec![], "no command"),
        (
            vec!["list", "--state", "running"],
            "unknown state \"running\"",
        ),
        (vec!["show"], "show needs a saga id"),
        (vec!["show", "not-an-id"], "is not a saga id"),
        (vec!["abandon", id.as_str()], "abandon needs --reason TEXT"),
        (
            vec!["reopen", id.as_str(), "--reason", "x"],
            "--reason is not an option of reopen",
        ),
        (vec!["drop-everything"], "unknown command"),
        (vec!["list", "--all"], "unknown option --all"),
    ] {
        let ran = saga_pg(Some("postgres://nobody@/none?host=/nowhere"), &args);
        assert_eq!(ran.code, 2, "{args:?}");
        assert!(ran.stderr.contains(says), "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains("usage: saga-pg"), "{}", ran.stderr);
        assert!(ran.stdout.is_empty());
    }
    // No URL at all.
    let ran = saga_pg(None, &["list"]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("DATABASE_URL"), "{}", ran.stderr);
    // Help is no error.
    let ran = saga_pg(None, &["--help"]);
    assert_eq!(ran.code, 0);
    assert!(
        ran.stdout.contains("release-quarantine ID"),
        "{}",
        ran.stdout
    );
}
