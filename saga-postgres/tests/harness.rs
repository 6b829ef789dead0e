//! The test harness itself: a cluster is stopped and removed when the test
//! that started it panics.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test: std paths read as what they are"
)]

#[path = "support/cluster.rs"]
mod cluster;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster::Cluster;

#[test]
fn a_panicking_test_stops_and_removes_its_cluster() {
    let mut seen: Option<(PathBuf, u32)> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let dir = cluster.socket_dir().to_path_buf();
        let pid = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .expect("the server's pid file")
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .expect("a pid");
        assert!(alive(pid));
        seen = Some((dir, pid));
        panic!("a failing test");
    }));
    let Some((dir, pid)) = seen else {
        return; // skipped: no PostgreSQL here
    };
    assert!(result.is_err());
    assert!(!dir.exists(), "{} is left", dir.display());
    // `pg_ctl stop -w` returned once the server removed its pid file; the
    // process may take a moment more to go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the server (pid {pid}) still runs");
}

/// Whether process `pid` runs (exists, and is not a zombie waiting to be
/// reaped).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    !matches!(state, Some(Some('Z' | 'X')))
}
