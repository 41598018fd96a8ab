//! R1: kill -9 under load, several times, then check that every acknowledged
//! command is in the database, nothing is stuck, and the file is sound.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn every_acknowledged_command_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut started = HashSet::new();
    let mut completed = HashSet::new();
    // Kill after a different number of acknowledgements each round: early, during
    // warm-up, and under steady load.
    for (round, kill_after) in [7usize, 180, 45, 400, 90].into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args([
                "crash-load",
                "--db",
                db.to_str().unwrap(),
                "--concurrency",
                "8",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acks = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            match line.split_once(' ') {
                Some(("S", id)) => assert!(
                    started.insert(id.to_owned()),
                    "round {round}: instance id {id} given twice"
                ),
                Some(("C", id)) => {
                    completed.insert(id.to_owned());
                }
                _ => panic!("unexpected output: {line}"),
            }
            acks += 1;
            if acks >= kill_after {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(
        started.len() > 100,
        "the load made progress: {}",
        started.len()
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut st = conn.prepare("SELECT id, status FROM instances").unwrap();
    let rows: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let stored: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(stored.len(), rows.len(), "no duplicate instance");
    for id in &started {
        assert!(
            stored.contains(id.as_str()),
            "acknowledged start of {id} was lost"
        );
    }
    for (id, status) in &rows {
        if completed.contains(id) {
            assert_eq!(
                status, "completed",
                "acknowledged completion of {id} was lost"
            );
        }
    }
    // Nothing stuck: every active instance waits in exactly one open task.
    let active = rows.iter().filter(|(_, s)| s == "active").count();
    let open: usize = conn
        .query_row("SELECT COUNT(*) FROM tasks WHERE state = 'open'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| usize::try_from(n).unwrap())
        .unwrap();
    assert_eq!(open, active);
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM definitions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        versions, 1,
        "redeploying identical content made no new version"
    );
}
