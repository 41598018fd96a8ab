//! Call, spawn and the instance tree through the durable engine, on a real SQLite
//! file with a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use chrono::{TimeZone, Utc};
use ordo_engine::engine::{Config, Engine};
use ordo_engine::runtime::{InstanceStatus, ManualClock, Vars};
use serde_json::{Value, json};
use std::sync::Arc;

fn vars(v: Value) -> Vars {
    v.as_object().cloned().unwrap_or_default()
}

async fn engine(dir: &tempfile::TempDir, files: &[(&str, &str)]) -> Engine {
    let mut c = Config::new(dir.path().join("ordo.db"));
    c.clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
    ));
    c.sync = ordo_engine::store::Sync::Normal;
    let e = Engine::open(c).unwrap();
    for (name, yaml) in files {
        e.deploy(name, yaml).await.unwrap();
    }
    e
}

const PARENT: &str = "
id: order
start: [{id: s, next: fulfil}]
nodes:
  fulfil:
    type: call
    process: fulfilment
    business_key: =order_id
    in: {items: =items}
    out: {shipped: =shipped_count}
    boundary: [{error: OUT_OF_STOCK, to: backorder}]
    next: done
  backorder: {type: end}
  done: {type: end}
";

const CHILD: &str = "
id: fulfilment
start: [{id: s, next: pack}]
nodes:
  pack: {type: user, assignee: packer, next: check}
  check:
    type: exclusive
    branches: [{when: 'size(items) > 2', to: short}]
    default: ship
  short: {type: end, error: OUT_OF_STOCK}
  ship: {type: assign, set: {shipped_count: =size(items)}, next: end}
  end: {type: end}
";

async fn start_order(e: &Engine, order: &str, items: Value) -> ordo_engine::runtime::Instance {
    let v = vars(json!({"order_id": order, "items": items}));
    e.start("order", None, None, v).await.unwrap()
}

async fn task(e: &Engine, user: &str) -> (String, u64) {
    let t = e.tasks_of(user, 10).await.unwrap();
    assert_eq!(t.len(), 1, "one task for {user}: {t:?}");
    (t[0].instance_id.clone(), t[0].activity)
}

#[tokio::test]
async fn a_call_starts_the_child_waits_for_it_and_maps_its_outputs_back() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, &[("p.yaml", PARENT), ("c.yaml", CHILD)]).await;
    let parent = start_order(&e, "o-7", json!(["a", "b"])).await;
    let tree = e.tree(&parent.id).await.unwrap();
    assert_eq!(tree.root, parent.id);
    assert_eq!(tree.parent, None);
    assert_eq!(tree.children.len(), 1);
    let child = &tree.children[0];
    assert_eq!(child.process_id, "fulfilment");
    assert_eq!(child.business_key.as_deref(), Some("o-7"));
    let child_tree = e.tree(&child.id).await.unwrap();
    assert_eq!(child_tree.parent.as_deref(), Some(parent.id.as_str()));
    assert_eq!(child_tree.root, parent.id);

    let (inst, activity) = task(&e, "packer").await;
    assert_eq!(inst, child.id);
    e.complete_task(&inst, activity, Vars::new(), None, None)
        .await
        .unwrap();
    let parent = e.instance(&parent.id).await.unwrap();
    assert_eq!(parent.status, InstanceStatus::Completed);
    assert_eq!(parent.variables()["shipped"], json!(2));
    assert!(!parent.variables().contains_key("shipped_count"));
    let history = e.history(&parent.id).await.unwrap();
    let call = history
        .iter()
        .find(|h| h.node == "fulfil" && h.state == "completed")
        .expect("the call completed");
    assert_eq!(
        child.parent_activity,
        Some(call.activity),
        "the child names the call's history entry"
    );
    assert_eq!(
        e.instance(&child.id).await.unwrap().status,
        InstanceStatus::Completed
    );
}

#[tokio::test]
async fn an_error_ending_the_child_reaches_the_boundary_on_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, &[("p.yaml", PARENT), ("c.yaml", CHILD)]).await;
    let parent = start_order(&e, "o-8", json!([1, 2, 3])).await;
    let (child, activity) = task(&e, "packer").await;
    e.complete_task(&child, activity, Vars::new(), None, None)
        .await
        .unwrap();
    let parent = e.instance(&parent.id).await.unwrap();
    assert_eq!(parent.status, InstanceStatus::Completed);
    let history = e.history(&parent.id).await.unwrap();
    assert!(history.iter().any(|h| h.node == "backorder"));
    // The child's uncaught error was caught by the caller: no incident is left open.
    assert!(e.incidents(true, 10, 0).await.unwrap().is_empty());
    assert_eq!(
        e.instance(&child).await.unwrap().status,
        InstanceStatus::Cancelled
    );
}

#[tokio::test]
async fn an_error_the_caller_does_not_catch_stays_an_incident_in_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let parent_yaml = PARENT.replace(
        "boundary: [{error: OUT_OF_STOCK, to: backorder}]",
        "boundary: [{error: OTHER, to: backorder}]",
    );
    let e = engine(&dir, &[("p.yaml", &parent_yaml), ("c.yaml", CHILD)]).await;
    let parent = start_order(&e, "o-9", json!([1, 2, 3])).await;
    let (child, activity) = task(&e, "packer").await;
    e.complete_task(&child, activity, Vars::new(), None, None)
        .await
        .unwrap();
    let open = e.incidents(true, 10, 0).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].instance_id, child);
    assert!(
        open[0].message.contains("OUT_OF_STOCK"),
        "{}",
        open[0].message
    );
    assert_eq!(
        e.instance(&parent.id).await.unwrap().status,
        InstanceStatus::Active
    );
}

#[tokio::test]
async fn cancelling_the_caller_cancels_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, &[("p.yaml", PARENT), ("c.yaml", CHILD)]).await;
    let parent = start_order(&e, "o-1", json!([])).await;
    let (child, _) = task(&e, "packer").await;
    e.cancel(&parent.id, Some("admin".into())).await.unwrap();
    assert_eq!(
        e.instance(&child).await.unwrap().status,
        InstanceStatus::Cancelled
    );
    assert!(
        e.tasks_of("packer", 10).await.unwrap().is_empty(),
        "its task is withdrawn"
    );
}

#[tokio::test]
async fn cancelling_the_child_leaves_an_incident_on_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, &[("p.yaml", PARENT), ("c.yaml", CHILD)]).await;
    let parent = start_order(&e, "o-1", json!([])).await;
    let (child, _) = task(&e, "packer").await;
    e.cancel(&child, None).await.unwrap();
    let open = e.incidents(true, 10, 0).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].instance_id.as_str(), open[0].node.as_str()),
        (parent.id.as_str(), "fulfil")
    );
}

#[tokio::test]
async fn a_spawn_starts_the_child_and_goes_on_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let spawner = "id: sale\nstart: [{id: s, next: survey}]\nnodes:\n  survey: {type: spawn, process: fulfilment, in: {items: [1]}, next: done}\n  done: {type: end}\n";
    let e = engine(&dir, &[("s.yaml", spawner), ("c.yaml", CHILD)]).await;
    let sale = e.start("sale", None, None, Vars::new()).await.unwrap();
    assert_eq!(
        sale.status,
        InstanceStatus::Completed,
        "the spawner did not wait"
    );
    let tree = e.tree(&sale.id).await.unwrap();
    assert_eq!(tree.children.len(), 1, "the link is recorded");
    let child = e.instance(&tree.children[0].id).await.unwrap();
    assert_eq!(child.status, InstanceStatus::Active, "the child lives on");
}

#[tokio::test]
async fn a_call_to_a_process_that_is_not_deployed_is_an_incident_on_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, &[("p.yaml", PARENT)]).await;
    let parent = start_order(&e, "o", json!([])).await;
    assert_eq!(parent.status, InstanceStatus::Active);
    let open = e.incidents(true, 10, 0).await.unwrap();
    assert_eq!(open.len(), 1);
    assert!(
        open[0].message.contains("fulfilment"),
        "{}",
        open[0].message
    );
    assert!(
        e.tree(&parent.id).await.unwrap().children.is_empty(),
        "nothing half-started is kept"
    );
}

#[tokio::test]
async fn a_process_calling_itself_without_end_stops_at_the_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    let rec = "id: rec\nstart: [{id: s, next: again}]\nnodes:\n  again: {type: call, process: rec, next: e}\n  e: {type: end}\n";
    let e = engine(&dir, &[("r.yaml", rec)]).await;
    let top = e.start("rec", None, None, Vars::new()).await.unwrap();
    let open = e.incidents(true, 10, 0).await.unwrap();
    assert_eq!(open.len(), 1);
    assert!(
        open[0].message.contains("levels deep"),
        "{}",
        open[0].message
    );
    let deepest = e.tree(&open[0].instance_id).await.unwrap();
    assert_eq!(deepest.root, top.id);
}

#[tokio::test]
async fn a_parallel_multi_instance_call_collects_each_childs_output_in_item_order() {
    let dir = tempfile::tempdir().unwrap();
    let parent = "id: batch\nstart: [{id: s, next: each}]\nnodes:\n  each:\n    type: call\n    process: square\n    in: {n: =item}\n    out: {sq: =sq}\n    multi: {items: numbers, parallel: true, output: sq, into: squares}\n    next: done\n  done: {type: end}\n";
    let square = "id: square\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: user, assignee: =string(n), next: a}\n  a: {type: assign, set: {sq: =n * n}, next: e}\n  e: {type: end}\n";
    let e = engine(&dir, &[("b.yaml", parent), ("s.yaml", square)]).await;
    let batch = e
        .start("batch", None, None, vars(json!({"numbers": [3, 1, 2]})))
        .await
        .unwrap();
    assert_eq!(e.tree(&batch.id).await.unwrap().children.len(), 3);
    for who in ["2", "3", "1"] {
        let (inst, activity) = task(&e, who).await;
        e.complete_task(&inst, activity, Vars::new(), None, None)
            .await
            .unwrap();
    }
    let batch = e.instance(&batch.id).await.unwrap();
    assert_eq!(batch.status, InstanceStatus::Completed);
    assert_eq!(batch.variables()["squares"], json!([9, 1, 4]));
}

/// A remote system for the saga: records calls; the bank declines over 1,000.
struct Remote {
    action: &'static str,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ordo_engine::worker::JobHandler for Remote {
    fn call(&self, input: Value) -> ordo_engine::worker::JobFuture {
        let (action, log) = (self.action, Arc::clone(&self.log));
        Box::pin(async move {
            log.lock().unwrap().push(action.to_owned());
            if action == "bank.charge" && input["amount"].as_f64().unwrap() > 1000.0 {
                return Err(ordo_engine::worker::JobFailure::Error {
                    code: "DECLINED".into(),
                    message: String::new(),
                });
            }
            Ok(json!({}))
        })
    }
}

async fn saga(amount: f64) -> (InstanceStatus, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(
        engine(
            &dir,
            &[("saga.yaml", include_str!("../examples/saga.yaml"))],
        )
        .await,
    );
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut worker = ordo_engine::worker::Worker::new(Arc::clone(&e), "w");
    for action in [
        "travel.book_hotel",
        "travel.book_flight",
        "bank.charge",
        "travel.cancel_hotel",
        "travel.cancel_flight",
    ] {
        let log = Arc::clone(&log);
        worker = worker.handle(action, Arc::new(Remote { action, log }));
    }
    let inst = e
        .start(
            "trip",
            None,
            None,
            vars(json!({"traveller": "Ann", "amount": amount})),
        )
        .await
        .unwrap();
    while worker.run_once().await.unwrap().ran > 0 {}
    let status = e.instance(&inst.id).await.unwrap().status;
    let calls = log.lock().unwrap().clone();
    (status, calls)
}

#[tokio::test]
async fn the_saga_example_undoes_its_bookings_newest_first_when_the_payment_is_declined() {
    let (status, calls) = saga(2400.0).await;
    assert_eq!(status, InstanceStatus::Completed);
    assert_eq!(
        calls,
        [
            "travel.book_hotel",
            "travel.book_flight",
            "bank.charge",
            "travel.cancel_flight",
            "travel.cancel_hotel"
        ]
    );
    let (status, calls) = saga(500.0).await;
    assert_eq!(status, InstanceStatus::Completed);
    assert_eq!(
        calls,
        ["travel.book_hotel", "travel.book_flight", "bank.charge"],
        "nothing to undo"
    );
}

#[tokio::test]
async fn event_subprocesses_are_triggered_through_the_engine_by_message_and_timer() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "
id: claim
start: [{id: s, next: assess}]
nodes:
  assess: {type: user, assignee: assessor, next: done}
  done: {type: end}
  withdrawn:
    type: event_subprocess
    message: claim.withdrawn
    start: note
    nodes:
      note: {type: assign, set: {withdrawn: true}, next: z}
      z: {type: end}
  nudge:
    type: event_subprocess
    timer: {duration: P1D}
    interrupting: false
    start: remind
    nodes:
      remind: {type: assign, set: {reminded: true}, next: z2}
      z2: {type: end}
";
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
    ));
    let mut c = Config::new(dir.path().join("ordo.db"));
    c.clock = Arc::clone(&clock) as _;
    let e = Engine::open(c).unwrap();
    e.deploy("claim.yaml", yaml).await.unwrap();
    let inst = e
        .start("claim", None, Some("c-1".into()), Vars::new())
        .await
        .unwrap();
    clock.advance(chrono::Duration::days(1));
    assert_eq!(e.fire_due_timers().await.unwrap().fired, 1);
    let now = e.instance(&inst.id).await.unwrap();
    assert_eq!(now.variables()["reminded"], json!(true));
    assert_eq!(
        e.tasks_of("assessor", 10).await.unwrap().len(),
        1,
        "non-interrupting: the task stays"
    );
    let m = ordo_engine::engine::Message {
        name: "claim.withdrawn".into(),
        key: Some("c-1".into()),
        ..Default::default()
    };
    let r = e.correlate(m).await.unwrap();
    assert!(
        matches!(r, ordo_engine::engine::Correlation::Correlated { .. }),
        "{r:?}"
    );
    let now = e.instance(&inst.id).await.unwrap();
    assert_eq!(now.status, InstanceStatus::Completed);
    assert_eq!(now.variables()["withdrawn"], json!(true));
    assert!(
        e.tasks_of("assessor", 10).await.unwrap().is_empty(),
        "interrupting: the task is withdrawn"
    );
}

#[tokio::test]
async fn a_call_runs_the_latest_child_version_or_the_pinned_one() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = "id: step\nstart: [{id: s, next: a}]\nnodes:\n  a: {type: assign, set: {v: 1}, next: e}\n  e: {type: end}\n";
    let v2 = v1.replace("{v: 1}", "{v: 2}");
    let caller = "id: caller\nstart: [{id: s, next: latest}]\nnodes:\n  latest: {type: call, process: step, out: {latest: =v}, next: pinned}\n  pinned: {type: call, process: step, version: 1, out: {pinned: =v}, next: e}\n  e: {type: end}\n";
    let e = engine(
        &dir,
        &[("v1.yaml", v1), ("v2.yaml", &v2), ("c.yaml", caller)],
    )
    .await;
    let inst = e.start("caller", None, None, Vars::new()).await.unwrap();
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["latest"], json!(2));
    assert_eq!(inst.variables()["pinned"], json!(1));
    let versions: Vec<u32> = e
        .tree(&inst.id)
        .await
        .unwrap()
        .children
        .iter()
        .map(|c| c.process_version)
        .collect();
    assert_eq!(versions, [2, 1]);
}
