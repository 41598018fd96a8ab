//! The engine on PostgreSQL (one node): the same commands as on SQLite, on a
//! fresh database of a real server. Runs when `ORDO_TEST_PG` names a server
//! (`.ci/run` starts one and sets it; under `CI` its absence fails);
//! otherwise it checks nothing and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use chrono::{Duration, TimeZone, Utc};
use ordo_engine::engine::{Config, Engine, Message};
use ordo_engine::runtime::{InstanceStatus, ManualClock, Vars};
use ordo_engine::store::testdb;
use serde_json::json;
use std::sync::Arc;

const ORDER: &str = "
id: order
start: [{id: s, next: review}]
nodes:
  review: {type: user, assignee: ann, next: wait}
  wait:
    type: event
    events:
      - {message: paid, key: =order_no, to: ship}
      - {timer: P2D, to: remind}
  remind: {type: user, assignee: ann, next: done}
  ship: {type: user, assignee: bob, next: done}
  done: {type: end}
";

#[test]
fn the_engine_runs_on_postgresql() {
    let Some(server) = testdb::postgres_url().unwrap() else {
        eprintln!("ORDO_TEST_PG is not set: the engine was not run on PostgreSQL");
        return;
    };
    // The scratch database is made and dropped outside the async runtime (a
    // PostgreSQL client blocks on a runtime of its own).
    let db = testdb::ScratchDatabase::new(&server, "engine").unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(scenario(db.url()));
}

async fn scenario(url: &str) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
    ));
    let mut c = Config::new(url);
    c.clock = Arc::clone(&clock) as _;
    let e = Engine::open(c).unwrap();

    let second = Engine::open(Config::new(url));
    assert!(
        second
            .as_ref()
            .is_err_and(|e| e.to_string().contains("another Ordo node")),
        "a second node is refused: {second:?}"
    );

    e.deploy("order.yaml", ORDER).await.unwrap();
    let vars = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let paid = e
        .start(
            "order",
            None,
            Some("o-1".into()),
            vars(json!({"order_no": "o-1"})),
        )
        .await
        .unwrap();
    let late = e
        .start(
            "order",
            None,
            Some("o-2".into()),
            vars(json!({"order_no": "o-2"})),
        )
        .await
        .unwrap();
    assert_ne!(paid.id, late.id, "ids come from the sequence");

    // Ann reviews both; the first is paid, the second times out.
    for t in e.tasks_of("ann", 10).await.unwrap() {
        e.complete_task(
            &t.instance_id,
            t.activity,
            Vars::new(),
            Some("ann".into()),
            None,
        )
        .await
        .unwrap();
    }
    let msg = Message {
        name: "paid".into(),
        key: Some("o-1".into()),
        message_id: Some("bank-1".into()),
        ..Message::default()
    };
    // A NUL character PostgreSQL cannot store: the message is refused as a
    // bad value, and nothing else changes.
    let nul = e
        .correlate(Message {
            name: "paid".into(),
            key: Some("o\u{0}1".into()),
            ..Message::default()
        })
        .await;
    assert!(
        matches!(
            nul,
            Err(ordo_engine::engine::Error::Store(
                ordo_engine::store::Error::Parameter(_)
            ))
        ),
        "{nul:?}"
    );
    e.correlate(msg.clone()).await.unwrap();
    let again = e.correlate(msg).await.unwrap();
    assert!(format!("{again:?}").contains("Duplicate"), "{again:?}");
    clock.advance(Duration::days(2));
    let fired = e.fire_due_timers().await.unwrap();
    assert_eq!((fired.fired, fired.failed.len()), (1, 0), "{fired:?}");

    let ship = e.tasks_of("bob", 10).await.unwrap();
    assert_eq!(ship.len(), 1);
    assert_eq!(ship[0].instance_id, paid.id);
    let remind = e.tasks_of("ann", 10).await.unwrap();
    assert_eq!(remind.len(), 1);
    assert_eq!(remind[0].instance_id, late.id);
    for t in ship.into_iter().chain(remind) {
        e.complete_task(&t.instance_id, t.activity, Vars::new(), None, None)
            .await
            .unwrap();
    }
    for id in [&paid.id, &late.id] {
        assert_eq!(
            e.instance(id).await.unwrap().status,
            InstanceStatus::Completed
        );
    }
    let history: Vec<String> = e
        .history(&paid.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.state == "completed")
        .map(|h| h.node)
        .collect();
    assert_eq!(history, ["s", "review", "wait", "ship", "done"]);
    drop(e);
    // The node lock goes with the engine: another may start now.
    drop(Engine::open(Config::new(url)).unwrap());
}
