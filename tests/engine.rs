//! The durable engine on a real SQLite file: versions, tasks, conflicts, group
//! commit isolation, restart, inline actions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use ordo_engine::engine::{Config, Engine, Error, InlineAction};
use ordo_engine::runtime::{InstanceStatus, Vars};
use ordo_engine::store::{InstanceFilter, SqlExt, params};
use serde_json::{Value, json};
use std::sync::Arc;

const APPROVAL: &str = "id: approval\nstart: [{id: s, next: review}]\nnodes:\n  review:\n    type: user\n    assignee: =owner\n    candidate_groups: [managers]\n    form: {ok: {type: boolean, required: true}}\n    next: e\n  e: {type: end}\n";

fn vars(v: Value) -> Vars {
    v.as_object().cloned().unwrap_or_default()
}

fn engine(dir: &tempfile::TempDir) -> Engine {
    Engine::open(Config::new(dir.path().join("ordo.db"))).unwrap()
}

#[tokio::test]
async fn deploy_makes_versions_and_refuses_invalid_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let d1 = e.deploy("a.yaml", APPROVAL).await.unwrap();
    assert_eq!((d1.version, d1.created), (1, true));
    let again = e.deploy("a.yaml", APPROVAL).await.unwrap();
    assert_eq!(
        (again.version, again.created),
        (1, false),
        "identical content is not a new version"
    );
    let running = e
        .start("approval", None, None, vars(json!({"owner": "ann"})))
        .await
        .unwrap();
    let v2 = APPROVAL.replace("managers", "directors");
    assert_eq!(e.deploy("a.yaml", &v2).await.unwrap().version, 2);
    let newer = e
        .start("approval", None, None, vars(json!({"owner": "ann"})))
        .await
        .unwrap();
    let pinned = e
        .start("approval", Some(1), None, vars(json!({"owner": "ann"})))
        .await
        .unwrap();
    assert_eq!(
        (
            running.process_version,
            newer.process_version,
            pinned.process_version
        ),
        (1, 2, 1)
    );
    match e.deploy("bad.yaml", "id: x\nstart: []\nnodes: {}\n").await {
        Err(Error::Invalid(d)) => assert_eq!(d[0].code, "no-start"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        e.start("nope", None, None, Vars::new()).await,
        Err(Error::UnknownProcess(_))
    ));
}

#[tokio::test]
async fn a_task_round_trip_is_stored_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    e.deploy("a.yaml", APPROVAL).await.unwrap();
    let inst = e
        .start(
            "approval",
            None,
            Some("order-7".into()),
            vars(json!({"owner": "ann"})),
        )
        .await
        .unwrap();
    assert_eq!(inst.status, InstanceStatus::Active);
    let mine = e.tasks_of("ann", 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    let form_err = e
        .complete_task(
            &inst.id,
            mine[0].activity,
            Vars::new(),
            Some("ann".into()),
            None,
        )
        .await;
    assert!(matches!(
        form_err,
        Err(Error::Runtime(ordo_engine::runtime::Error::Form(_)))
    ));
    let done = e
        .complete_task(
            &inst.id,
            mine[0].activity,
            vars(json!({"ok": true})),
            Some("ann".into()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert!(e.tasks_of("ann", 10).await.unwrap().is_empty());
    let by_key = e
        .list_instances(InstanceFilter {
            business_key: Some("order-7".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_key.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [inst.id.as_str()]
    );
    let stored = e.instance(&inst.id).await.unwrap();
    assert_eq!(stored, done);
    let hist = e.history(&inst.id).await.unwrap();
    let review: Vec<_> = hist
        .iter()
        .filter(|h| h.node == "review")
        .map(|h| (h.state.as_str(), h.actor.as_deref()))
        .collect();
    assert_eq!(
        review,
        [
            ("ready", None),
            ("active", None),
            ("completing", Some("ann")),
            ("completed", Some("ann"))
        ]
    );
}

#[tokio::test]
async fn two_completions_of_one_task_one_wins_the_other_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(&dir));
    e.deploy("a.yaml", APPROVAL).await.unwrap();
    let inst = e
        .start("approval", None, None, vars(json!({"owner": "ann"})))
        .await
        .unwrap();
    let task = e.tasks_of("ann", 1).await.unwrap()[0].activity;
    let (a, b) = tokio::join!(
        e.complete_task(
            &inst.id,
            task,
            vars(json!({"ok": true})),
            Some("ann".into()),
            None
        ),
        e.complete_task(
            &inst.id,
            task,
            vars(json!({"ok": false})),
            Some("bob".into()),
            None
        )
    );
    let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1, "{a:?} {b:?}");
    let err = if a.is_err() { a } else { b };
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    // A stale expected version is a conflict too.
    let inst2 = e
        .start("approval", None, None, vars(json!({"owner": "cy"})))
        .await
        .unwrap();
    let t2 = e.tasks_of("cy", 1).await.unwrap()[0].activity;
    let stale = e
        .complete_task(
            &inst2.id,
            t2,
            vars(json!({"ok": true})),
            None,
            Some(inst2.version + 5),
        )
        .await;
    assert!(matches!(stale, Err(Error::Conflict { .. })));
}

#[tokio::test]
async fn a_failing_command_rolls_back_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(&dir));
    e.deploy("a.yaml", APPROVAL).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..200 {
        let e = Arc::clone(&e);
        handles.push(tokio::spawn(async move {
            // Every fifth start names a process that does not exist: it fails alone.
            let process = if i % 5 == 0 { "missing" } else { "approval" };
            e.start(process, None, None, vars(json!({"owner": format!("u{i}")})))
                .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::UnknownProcess(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 160);
    let listed = e
        .list_instances(InstanceFilter {
            process: Some("approval".into()),
            status: Some("active".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 160);
    assert_eq!(
        e.group_tasks("nobody", vec!["managers".into()], 1000)
            .await
            .unwrap()
            .len(),
        0,
        "assigned tasks are not in the group queue"
    );
}

#[tokio::test]
async fn the_engine_restarts_from_the_database_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (id, task) = {
        let e = engine(&dir);
        e.deploy("a.yaml", APPROVAL).await.unwrap();
        let inst = e
            .start("approval", None, None, vars(json!({"owner": "ann"})))
            .await
            .unwrap();
        let t = e.tasks_of("ann", 1).await.unwrap()[0].activity;
        e.close();
        (inst.id, t)
    };
    let e = engine(&dir);
    let done = e
        .complete_task(&id, task, vars(json!({"ok": true})), None, None)
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    let next = e
        .start("approval", None, None, vars(json!({"owner": "ann"})))
        .await
        .unwrap();
    assert_ne!(next.id, id, "ids continue after a restart");
}

struct Note;
impl InlineAction for Note {
    fn call(
        &self,
        tx: &dyn ordo_engine::store::Sql,
        call: &ordo_engine::engine::ActionCall<'_>,
    ) -> Result<Value, String> {
        let text = call.input["text"].as_str().ok_or("no text")?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS notes (text TEXT)")
            .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO notes (text) VALUES (?1)",
            ordo_engine::store::params![text],
        )
        .map_err(|e| e.to_string())?;
        Ok(json!({"saved": text}))
    }
}

#[tokio::test]
async fn inline_actions_commit_with_their_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("ordo.db"));
    cfg.actions.insert("test.note".into(), Arc::new(Note));
    let e = Engine::open(cfg).unwrap();
    e.deploy("n.yaml", "id: n\nstart: [{id: s, next: note}]\nnodes:\n  note: {type: service, action: test.note, with: {text: =msg}, result: r, next: e}\n  e: {type: end}\n").await.unwrap();
    let done = e
        .start("n", None, None, vars(json!({"msg": "hello"})))
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.variables()["r"], json!({"saved": "hello"}));
    let failed = e
        .start("n", None, None, vars(json!({"msg": 5})))
        .await
        .unwrap();
    assert_eq!(
        failed.status,
        InstanceStatus::Active,
        "the failure is an incident on the task"
    );
    e.close();
    let conn = rusqlite::Connection::open(dir.path().join("ordo.db")).unwrap();
    let notes: i64 = conn
        .query_row("SELECT COUNT(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 1);
    let incidents: i64 = conn
        .query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(incidents, 1);
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[tokio::test]
async fn claim_unclaim_delegate_and_overdue() {
    use ordo_engine::engine::TaskChange;
    use ordo_engine::runtime::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .unwrap()
        .to_utc();
    let clock = Arc::new(ManualClock::new(t0));
    let mut cfg = Config::new(dir.path().join("ordo.db"));
    cfg.clock = clock.clone();
    let e = Engine::open(cfg).unwrap();
    e.deploy("q.yaml", "id: q\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: user, candidate_groups: [sales], due: P1D, next: e}\n  e: {type: end}\n")
        .await
        .unwrap();
    let inst = e.start("q", None, None, Vars::new()).await.unwrap();
    let queue = e
        .group_tasks("nobody", vec!["sales".into()], 10)
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    let a = queue[0].activity;
    let claimed = e
        .change_task(&inst.id, a, TaskChange::Claim { user: "ann".into() })
        .await
        .unwrap();
    assert_eq!(claimed.assignee.as_deref(), Some("ann"));
    assert!(
        e.group_tasks("nobody", vec!["sales".into()], 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed tasks leave the group queue"
    );
    let twice = e
        .change_task(&inst.id, a, TaskChange::Claim { user: "bob".into() })
        .await;
    assert!(matches!(twice, Err(Error::Conflict { .. })));
    let not_holder = e
        .change_task(&inst.id, a, TaskChange::Unclaim { user: "bob".into() })
        .await;
    assert!(matches!(not_holder, Err(Error::Conflict { .. })));
    e.change_task(
        &inst.id,
        a,
        TaskChange::Delegate {
            by: "ann".into(),
            to: "cy".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(e.tasks_of("cy", 10).await.unwrap().len(), 1);
    e.change_task(&inst.id, a, TaskChange::Unclaim { user: "cy".into() })
        .await
        .unwrap();
    assert_eq!(
        e.group_tasks("nobody", vec!["sales".into()], 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(e.overdue_tasks(10).await.unwrap().is_empty());
    clock.advance(chrono::Duration::hours(25));
    assert_eq!(e.overdue_tasks(10).await.unwrap().len(), 1);
    let hist = e.history(&inst.id).await.unwrap();
    let events: Vec<_> = hist
        .iter()
        .filter(|h| h.node == "t")
        .map(|h| (h.state.as_str(), h.actor.clone()))
        .collect();
    assert_eq!(
        events[2..],
        [
            ("claimed", Some("ann".into())),
            ("delegated", Some("ann".into())),
            ("unclaimed", Some("cy".into()))
        ]
    );
}

async fn open_count(e: &Engine) -> (usize, usize) {
    let active = e
        .list_instances(InstanceFilter {
            status: Some("active".into()),
            limit: 100_000,
            ..InstanceFilter::default()
        })
        .await
        .unwrap();
    let tasks = e.tasks_of("ann", 100_000).await.unwrap();
    (active.len(), tasks.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_under_load_is_consistent_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordo.db");
    let e = Arc::new(engine(&dir));
    e.deploy("a.yaml", APPROVAL).await.unwrap();
    // 400 starts from 16 callers; the backup is taken while they run.
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let e = Arc::clone(&e);
        load.spawn(async move {
            for _ in 0..25 {
                e.start("approval", None, None, vars(json!({"owner": "ann"})))
                    .await
                    .unwrap();
            }
        });
    }
    let copy = dir.path().join("backup.db");
    let bytes = e.backup(copy.clone()).await.unwrap();
    assert!(bytes > 0);
    while load.join_next().await.is_some() {}
    assert!(
        e.backup(copy.clone()).await.is_err(),
        "an existing file is never overwritten"
    );
    assert_eq!(open_count(&e).await, (400, 400));
    e.close();

    // The copy is a consistent snapshot: every instance in it has its task.
    let snapshot = Engine::open(Config::new(copy.clone())).unwrap();
    let (instances, tasks) = open_count(&snapshot).await;
    assert_eq!(instances, tasks, "a snapshot never holds half a command");
    assert!(instances <= 400);
    snapshot.close();

    // Restore: with the engine stopped, the copy replaces the database file.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&copy, &db).unwrap();
    let restored = Engine::open(Config::new(db)).unwrap();
    assert_eq!(open_count(&restored).await, (instances, tasks));
}

const NEEDS_OWNER: &str = "id: owned\nvariables: {owner: {type: string, required: true}}\nstart: [{id: s, next: review}]\nnodes:\n  review: {type: user, assignee: =owner, next: e}\n  e: {type: end}\n";

#[tokio::test]
async fn instance_ids_never_repeat_across_refused_starts_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut last_round_max = 0;
    for round in 0..3 {
        let e = engine(&dir);
        e.deploy("o.yaml", NEEDS_OWNER).await.unwrap();
        for _ in 0..3 {
            // Refused: no owner. Its id is handed back, unused.
            assert!(e.start("owned", None, None, Vars::new()).await.is_err());
        }
        let mut ids = Vec::new();
        for _ in 0..4 {
            let i = e
                .start("owned", None, None, vars(json!({"owner": "ann"})))
                .await
                .unwrap();
            assert!(
                seen.insert(i.id.clone()),
                "round {round}: id {} again",
                i.id
            );
            ids.push(i.id.parse::<u64>().unwrap());
        }
        // Within a run, refused starts leave no gap; a restart may skip the
        // rest of a reserved block, but never goes back.
        let first = ids[0];
        assert_eq!(ids, (first..first + 4).collect::<Vec<_>>(), "round {round}");
        assert!(
            first > last_round_max,
            "round {round} starts after the last"
        );
        last_round_max = first + 3;
        e.close();
    }
    assert_eq!(seen.len(), 12, "no repeats");
}

#[tokio::test]
async fn a_panic_in_one_unit_of_work_fails_that_caller_only() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(&dir));
    e.deploy("o.yaml", NEEDS_OWNER).await.unwrap();
    let write = |panics: bool| {
        let e = Arc::clone(&e);
        tokio::spawn(async move {
            e.write(move |tx| -> Result<i64, String> {
                tx.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)", params![])
                    .map_err(|x| x.to_string())?;
                tx.execute("INSERT INTO t (n) VALUES (1)", params![])
                    .map_err(|x| x.to_string())?;
                assert!(!panics, "a bug in a plugin");
                Ok(1)
            })
            .await
        })
    };
    let (bad, good) = (write(true), write(false));
    let bad = bad.await.unwrap();
    assert!(
        matches!(&bad, Err(Error::Panicked(m)) if m.contains("a bug in a plugin")),
        "{bad:?}"
    );
    assert_eq!(good.await.unwrap().unwrap(), Ok(1));
    // The panicking unit left nothing; the writer still serves everyone.
    let rows = e
        .query(|c| c.query_row("SELECT COUNT(*) FROM t", params![], |r| r.get::<i64>(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, 1);
    let refused = e
        .write(|_| -> Result<(), &str> { Err("no") })
        .await
        .unwrap();
    assert_eq!(refused, Err("no"));
    let i = e
        .start("owned", None, None, vars(json!({"owner": "ann"})))
        .await
        .unwrap();
    assert_eq!(i.status, InstanceStatus::Active);
}
