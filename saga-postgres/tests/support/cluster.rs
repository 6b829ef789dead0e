//! A throwaway PostgreSQL cluster for one test: `initdb` into a temporary
//! directory, a server listening on a Unix socket in it only, stopped
//! (`pg_ctl stop -m immediate`) and removed when the guard drops, panics
//! included.
//!
//! The binaries are looked up in `SAGA_POSTGRES_BIN` (a directory), then
//! on `PATH`, then in `/usr/lib/postgresql/*/bin` (the highest version).
//! Without them the test is skipped, with the reason printed, unless
//! `SAGA_POSTGRES_REQUIRED=1`, which makes it fail. As root, the cluster
//! is made and run as the `postgres` user (PostgreSQL refuses to run as
//! root), with the directory handed to it. A test may stop and start the
//! server again ([`Cluster::stop_server`], [`Cluster::start_server`]), or
//! freeze and thaw it ([`Cluster::freeze_server`], [`Cluster::thaw_server`]).

#![allow(dead_code, reason = "each test file uses part of the harness")]

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A running cluster; dropping it stops the server and removes its files.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
}

impl Cluster {
    /// Starts a cluster, or returns `None` (having printed why) when
    /// PostgreSQL is not installed and `SAGA_POSTGRES_REQUIRED` is not `1`.
    pub(crate) fn start() -> Option<Cluster> {
        let Some(bin) = find_binaries() else {
            let reason = "PostgreSQL's initdb, pg_ctl and postgres were not found \
                          (set SAGA_POSTGRES_BIN, or add them to PATH)";
            if env::var("SAGA_POSTGRES_REQUIRED").as_deref() == Ok("1") {
                panic!("SAGA_POSTGRES_REQUIRED=1: {reason}");
            }
            eprintln!("skipped: {reason}");
            return None;
        };
        let run_as = is_root().then(|| String::from("postgres"));
        let dir = tempfile::Builder::new()
            .prefix("saga-pg-")
            .tempdir()
            .expect("a temporary directory");
        if let Some(user) = &run_as {
            let owner = format!("{user}:");
            check(
                "chown",
                Command::new("chown")
                    .arg(&owner)
                    .arg(dir.path())
                    .output()
                    .expect("chown runs"),
            );
        }
        let cluster = Cluster { dir, bin, run_as };
        let data = cluster.data();
        let initdb = cluster.run(
            "initdb",
            [
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-U"),
                OsStr::new("postgres"),
                OsStr::new("-A"),
                OsStr::new("trust"),
                OsStr::new("-E"),
                OsStr::new("UTF8"),
                OsStr::new("--no-sync"),
            ],
        );
        check("initdb", initdb);
        cluster.start_server();
        Some(cluster)
    }

    /// Starts the server (`pg_ctl start -w`), listening on the socket only;
    /// panics with its log if it does not start.
    pub(crate) fn start_server(&self) {
        let data = self.data();
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c full_page_writes=off \
             -c max_connections=100",
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let started = self.run(
            "pg_ctl",
            [
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-l"),
                log.as_os_str(),
                OsStr::new("-o"),
                OsStr::new(&options),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("start"),
            ],
        );
        if !started.status.success() {
            let log = fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n{}\nserver log:\n{log}",
                String::from_utf8_lossy(&started.stdout),
                String::from_utf8_lossy(&started.stderr)
            );
        }
    }

    /// Stops the server (`pg_ctl stop -m fast -w`: open transactions are
    /// rolled back, connections are closed, and it shuts down cleanly);
    /// [`start_server`](Cluster::start_server) starts it again.
    pub(crate) fn stop_server(&self) {
        let data = self.data();
        let stopped = self.run(
            "pg_ctl",
            [
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-m"),
                OsStr::new("fast"),
                OsStr::new("-w"),
                OsStr::new("stop"),
            ],
        );
        check("pg_ctl stop", stopped);
    }

    /// Freezes the server: `SIGSTOP` to the postmaster and every backend,
    /// so that connections stay open and every call hangs, as with a server
    /// that stopped answering; [`thaw_server`](Cluster::thaw_server)
    /// resumes it (before the guard drops).
    pub(crate) fn freeze_server(&self) {
        self.signal_server("-STOP");
    }

    /// Resumes a [frozen](Cluster::freeze_server) server.
    pub(crate) fn thaw_server(&self) {
        self.signal_server("-CONT");
    }

    fn signal_server(&self, signal: &str) {
        let pid_file = fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("the server's postmaster.pid");
        let postmaster = pid_file.lines().next().expect("a pid").trim().to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .expect("pgrep");
        let children = String::from_utf8_lossy(&children.stdout).into_owned();
        let status = Command::new("kill")
            .arg(signal)
            .arg(&postmaster)
            .args(children.split_whitespace())
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {postmaster} {children}");
    }

    /// What the server logged so far.
    pub(crate) fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The directory holding the server's socket.
    pub(crate) fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// How to connect, as `postgres`, to database `postgres`, over the
    /// socket (`host=<socket dir>`).
    pub(crate) fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.socket_dir())
            .username("postgres")
            .database("postgres")
    }

    /// A pool of up to `connections` connections.
    pub(crate) async fn pool(&self, connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(self.options())
            .await
            .expect("connect to the test cluster")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run<'a>(&self, program: &str, args: impl IntoIterator<Item = &'a OsStr>) -> Output {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command.args(args);
        // Not from a directory the server's user cannot read.
        command.current_dir(self.dir.path());
        command
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let stopped = self.run(
            "pg_ctl",
            [
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-m"),
                OsStr::new("immediate"),
                OsStr::new("-w"),
                OsStr::new("stop"),
            ],
        );
        if !stopped.status.success() {
            eprintln!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&stopped.stderr)
            );
        }
    }
}

fn check(what: &str, output: Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn has_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|name| dir.join(name).is_file())
}

fn find_binaries() -> Option<PathBuf> {
    if let Some(dir) = env::var_os("SAGA_POSTGRES_BIN") {
        let dir = PathBuf::from(dir);
        return has_binaries(&dir).then_some(dir);
    }
    if let Some(path) = env::var_os("PATH") {
        if let Some(dir) = env::split_paths(&path).find(|dir| has_binaries(dir)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_binaries(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}
