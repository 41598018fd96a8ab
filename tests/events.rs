//! Messages, timers, signals and incidents through the durable engine, on a real
//! SQLite file with a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use chrono::{Duration, TimeZone, Utc};
use ordo_engine::engine::{Config, Correlation, Engine, InlineAction, Message};
use ordo_engine::runtime::{InstanceStatus, ManualClock, Vars};
use ordo_engine::store::InstanceFilter;
use serde_json::{Value, json};
use std::sync::Arc;

fn vars(v: Value) -> Vars {
    v.as_object().cloned().unwrap_or_default()
}

/// Friday 2026-11-20 09:00 UTC.
fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
    ))
}

fn open(dir: &tempfile::TempDir, clock: &Arc<ManualClock>) -> Engine {
    let mut c = Config::new(dir.path().join("ordo.db"));
    c.clock = Arc::clone(clock) as _;
    c.sync = ordo_engine::store::Sync::Normal;
    Engine::open(c).unwrap()
}

fn msg(name: &str, key: &str, id: Option<&str>) -> Message {
    Message {
        name: name.into(),
        key: Some(key.into()),
        message_id: id.map(str::to_owned),
        ..Message::default()
    }
}

async fn count(e: &Engine, process: &str, status: &str) -> usize {
    e.list_instances(InstanceFilter {
        process: Some(process.into()),
        status: Some(status.into()),
        limit: 100_000,
        ..InstanceFilter::default()
    })
    .await
    .unwrap()
    .len()
}

const WAIT_PAID: &str = "id: order\nstart: [{id: s, next: paid}]\nnodes:\n  paid: {type: receive, message: paid, out: {amount: =message.amount}, next: e}\n  e: {type: end}\n";

#[tokio::test]
async fn a_message_sent_before_the_instance_waits_is_buffered_then_consumed_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy("order.yaml", WAIT_PAID).await.unwrap();
    let mut m = msg("paid", "o-1", Some("m-1"));
    m.variables = vars(json!({"amount": 30}));
    assert!(matches!(
        e.correlate(m).await.unwrap(),
        Correlation::Buffered { .. }
    ));
    let first = e
        .start("order", None, Some("o-1".into()), Vars::new())
        .await
        .unwrap();
    assert_eq!(
        first.status,
        InstanceStatus::Completed,
        "took the buffered message"
    );
    assert_eq!(first.variables().get("amount"), Some(&json!(30)));
    let second = e
        .start("order", None, Some("o-1".into()), Vars::new())
        .await
        .unwrap();
    assert_eq!(
        second.status,
        InstanceStatus::Active,
        "the buffered message was consumed once"
    );
    // Now a subscriber waits: the next message correlates to it.
    let mut m2 = msg("paid", "o-1", Some("m-2"));
    m2.variables = vars(json!({"amount": 5}));
    assert_eq!(
        e.correlate(m2).await.unwrap(),
        Correlation::Correlated {
            instance: second.id.clone()
        }
    );
    assert_eq!(
        e.instance(&second.id).await.unwrap().status,
        InstanceStatus::Completed
    );
}

#[tokio::test]
async fn buffered_messages_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy("order.yaml", WAIT_PAID).await.unwrap();
    let mut m = msg("paid", "o-2", None);
    m.ttl = Some(Duration::minutes(10));
    assert!(matches!(
        e.correlate(m).await.unwrap(),
        Correlation::Buffered { .. }
    ));
    clock.advance(Duration::minutes(10));
    let inst = e
        .start("order", None, Some("o-2".into()), Vars::new())
        .await
        .unwrap();
    assert_eq!(
        inst.status,
        InstanceStatus::Active,
        "expired: not delivered"
    );
    let mut zero = msg("paid", "nobody", None);
    zero.ttl = Some(Duration::zero());
    assert_eq!(e.correlate(zero).await.unwrap(), Correlation::Discarded);
}

const BY_MESSAGE: &str = "id: lead\nstart: [{id: s, message: lead_in, key: phone, unique: true, next: t}]\nnodes:\n  t: {type: user, assignee: ann, next: e}\n  e: {type: end}\n";

#[tokio::test]
async fn one_message_id_from_many_concurrent_callers_correlates_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = Arc::new(open(&dir, &clock));
    e.deploy("lead.yaml", BY_MESSAGE).await.unwrap();
    let mut calls = Vec::new();
    for n in 0..64 {
        let e = Arc::clone(&e);
        calls.push(tokio::spawn(async move {
            let m = Message {
                name: "lead_in".into(),
                key: None,
                message_id: Some("lead-42".into()),
                // Different phones: only the id makes them duplicates.
                variables: vars(json!({"phone": format!("138{n:08}")})),
                ttl: None,
            };
            e.correlate(m).await.unwrap()
        }));
    }
    let mut started = 0;
    let mut duplicates = 0;
    for c in calls {
        match c.await.unwrap() {
            Correlation::Started { instances } => started += instances.len(),
            Correlation::Duplicate => duplicates += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((started, duplicates), (1, 63));
    assert_eq!(count(&e, "lead", "active").await, 1);
}

#[tokio::test]
async fn a_unique_message_start_keeps_one_active_instance_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy("lead.yaml", BY_MESSAGE).await.unwrap();
    let lead = |phone: &str| Message {
        name: "lead_in".into(),
        variables: vars(json!({ "phone": phone })),
        ..Message::default()
    };
    let Correlation::Started { instances } = e.correlate(lead("1")).await.unwrap() else {
        panic!("starts")
    };
    let inst = e.instance(&instances[0]).await.unwrap();
    assert_eq!(
        inst.business_key.as_deref(),
        Some("1"),
        "the key expression"
    );
    assert_eq!(
        e.correlate(lead("1")).await.unwrap(),
        Correlation::AlreadyRunning {
            instances: instances.clone()
        }
    );
    assert!(matches!(
        e.correlate(lead("2")).await.unwrap(),
        Correlation::Started { .. }
    ));
    assert_eq!(count(&e, "lead", "active").await, 2);
}

#[tokio::test]
async fn ten_thousand_timers_due_at_once_each_fire_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy(
        "t.yaml",
        "id: t\nstart: [{id: s, next: w}]\nnodes:\n  w: {type: catch, timer: PT1H, next: e}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    for _ in 0..10_000 {
        e.start("t", None, None, Vars::new()).await.unwrap();
    }
    clock.advance(Duration::minutes(59));
    assert_eq!(e.fire_due_timers().await.unwrap().fired, 0, "never early");
    clock.advance(Duration::minutes(1));
    let fired = e.fire_due_timers().await.unwrap();
    assert_eq!((fired.fired, fired.failed.len()), (10_000, 0));
    assert_eq!(e.fire_due_timers().await.unwrap().fired, 0, "never twice");
    assert_eq!(count(&e, "t", "completed").await, 10_000);
    assert_eq!(e.next_timer_due().await.unwrap(), None);
}

#[tokio::test]
async fn timers_that_came_due_while_the_engine_was_down_fire_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let timer = "id: t\nstart: [{id: s, next: w}]\nnodes:\n  w: {type: catch, timer: PT10M, next: e}\n  e: {type: end}\n";
    {
        let e = open(&dir, &clock);
        e.deploy("t.yaml", timer).await.unwrap();
        for _ in 0..100 {
            e.start("t", None, None, Vars::new()).await.unwrap();
        }
        e.close();
    }
    clock.advance(Duration::hours(3));
    let e = open(&dir, &clock);
    assert_eq!(e.fire_due_timers().await.unwrap().fired, 100);
    assert_eq!(e.fire_due_timers().await.unwrap().fired, 0);
    assert_eq!(count(&e, "t", "completed").await, 100);
}

#[tokio::test]
async fn a_cron_timer_start_runs_every_monday_at_nine_in_its_zone() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy(
        "weekly.yaml",
        "id: weekly\nstart: [{id: s, timer: {cycle: '0 9 * * Mon', timezone: Asia/Shanghai}, next: t}]\nnodes:\n  t: {type: user, assignee: ann, next: e}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    // Monday 09:00 in Shanghai is Monday 01:00 UTC.
    let monday = Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap();
    assert_eq!(e.next_timer_due().await.unwrap(), Some(monday));
    clock.set(monday - Duration::seconds(1));
    assert_eq!(e.fire_due_timers().await.unwrap().started, 0);
    clock.set(monday + Duration::days(2)); // down over the whole of Monday
    assert_eq!(e.fire_due_timers().await.unwrap().started, 1);
    assert_eq!(e.fire_due_timers().await.unwrap().started, 0, "once");
    assert_eq!(
        e.next_timer_due().await.unwrap(),
        Some(monday + Duration::weeks(1))
    );
}

#[tokio::test]
async fn a_signal_reaches_every_waiting_catch_and_signal_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy(
        "w.yaml",
        "id: w\nstart: [{id: s, next: c}]\nnodes:\n  c: {type: catch, signal: year_end, next: e}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    e.deploy(
        "r.yaml",
        "id: r\nstart: [{id: s, signal: year_end, next: t}]\nnodes:\n  t: {type: user, assignee: ann, next: e}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    for _ in 0..3 {
        e.start("w", None, None, Vars::new()).await.unwrap();
    }
    let out = e.signal("year_end", Vars::new()).await.unwrap();
    assert_eq!((out.delivered, out.started.len()), (3, 1));
    assert_eq!(count(&e, "w", "completed").await, 3);
    let again = e.signal("year_end", Vars::new()).await.unwrap();
    assert_eq!((again.delivered, again.started.len()), (0, 1));
}

#[tokio::test]
async fn a_thrown_message_correlates_to_another_instance_in_the_same_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy("order.yaml", WAIT_PAID).await.unwrap();
    e.deploy(
        "pay.yaml",
        "id: pay\nstart: [{id: s, next: send}]\nnodes:\n  send: {type: end, message: paid, key: order, payload: {amount: =amount}}\n",
    )
    .await
    .unwrap();
    let waiting = e
        .start("order", None, Some("o-9".into()), Vars::new())
        .await
        .unwrap();
    e.start(
        "pay",
        None,
        None,
        vars(json!({"order": "o-9", "amount": 12})),
    )
    .await
    .unwrap();
    let done = e.instance(&waiting.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.variables().get("amount"), Some(&json!(12)));
}

struct Flaky(std::sync::atomic::AtomicUsize);

impl InlineAction for Flaky {
    fn call(
        &self,
        _tx: &dyn ordo_engine::store::Sql,
        _call: &ordo_engine::engine::ActionCall<'_>,
    ) -> Result<Value, String> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == 0 {
            Err("the ledger is locked".into())
        } else {
            Ok(json!({"ok": true}))
        }
    }
}

#[tokio::test]
async fn an_incident_is_listed_and_an_admin_retry_resumes_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let mut c = Config::new(dir.path().join("ordo.db"));
    c.clock = Arc::clone(&clock) as _;
    c.actions.insert(
        "ledger.post".into(),
        Arc::new(Flaky(std::sync::atomic::AtomicUsize::new(0))),
    );
    let e = Engine::open(c).unwrap();
    e.deploy(
        "p.yaml",
        "id: p\nstart: [{id: s, next: post}]\nnodes:\n  post: {type: service, action: ledger.post, next: e}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    let inst = e.start("p", None, None, Vars::new()).await.unwrap();
    assert_eq!(inst.status, InstanceStatus::Active);
    let open = e.incidents(true, 10, 0).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].message, "the ledger is locked");
    let done = e
        .retry(
            &inst.id,
            open[0].activity,
            None,
            Vars::new(),
            Some("admin".into()),
        )
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert!(e.incidents(true, 10, 0).await.unwrap().is_empty());
    assert_eq!(e.incidents(false, 10, 0).await.unwrap()[0].state, "retried");
}

#[tokio::test]
async fn a_boundary_timer_on_a_working_calendar_escalates_an_untouched_task() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let mut c = Config::new(dir.path().join("ordo.db"));
    c.clock = Arc::clone(&clock) as _;
    c.calendars
        .add(
            ordo_engine::calendar::Calendar::parse(
                "cn.yaml",
                "name: cn\nholidays: [2026-11-23]\nworkdays: [2026-11-22]\n",
            )
            .unwrap(),
        )
        .unwrap();
    let e = Engine::open(c).unwrap();
    e.deploy(
        "q.yaml",
        "id: q\ncalendar: cn\nstart: [{id: s, next: call}]\nnodes:\n  call:\n    type: user\n    assignee: ann\n    boundary: [{id: breach, timer: P2BD, to: pool}]\n    next: e\n  pool: {type: end}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    let inst = e.start("q", None, None, Vars::new()).await.unwrap();
    // Friday 20th + 2 working days: Sunday 22nd is a make-up day (1), Monday 23rd a
    // holiday, Tuesday 24th (2).
    let due = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    assert_eq!(e.next_timer_due().await.unwrap(), Some(due));
    clock.set(due);
    assert_eq!(e.fire_due_timers().await.unwrap().fired, 1);
    let after = e.instance(&inst.id).await.unwrap();
    assert_eq!(after.status, InstanceStatus::Completed);
    assert!(
        e.tasks_of("ann", 10).await.unwrap().is_empty(),
        "task withdrawn"
    );
    let history = e.history(&inst.id).await.unwrap();
    assert!(history.iter().any(|h| h.node == "breach"));
}

/// Fails its first `fail` calls, then succeeds; counts calls.
struct Charge {
    calls: std::sync::atomic::AtomicUsize,
    fail: usize,
}

impl ordo_engine::worker::JobHandler for Charge {
    fn call(&self, _input: Value) -> ordo_engine::worker::JobFuture {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let fail = n < self.fail;
        Box::pin(async move {
            if fail {
                Err(ordo_engine::worker::JobFailure::Retry(format!(
                    "gateway timeout ({})",
                    n + 1
                )))
            } else {
                Ok(json!({"charged": true}))
            }
        })
    }
}

const CHARGE: &str = "id: c\nstart: [{id: s, next: charge}]\nnodes:\n  charge: {type: service, action: pay.charge, retries: 2, backoff: PT10S, result: receipt, next: e}\n  e: {type: end}\n";

#[tokio::test]
async fn a_failing_job_makes_its_attempts_with_backoff_then_one_incident_and_a_retry_resumes_it() {
    use ordo_engine::worker::Worker;
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = Arc::new(open(&dir, &clock));
    e.deploy("c.yaml", CHARGE).await.unwrap();
    let handler = Arc::new(Charge {
        calls: std::sync::atomic::AtomicUsize::new(0),
        fail: 3,
    });
    let worker = Worker::new(Arc::clone(&e), "w1").handle("pay.charge", handler.clone());
    let inst = e.start("c", None, None, Vars::new()).await.unwrap();
    assert_eq!(worker.run_once().await.unwrap().failed, 1, "attempt 1");
    clock.advance(Duration::seconds(9));
    assert_eq!(worker.run_once().await.unwrap().ran, 0, "backoff: 10 s");
    clock.advance(Duration::seconds(1));
    assert_eq!(worker.run_once().await.unwrap().failed, 1, "attempt 2");
    clock.advance(Duration::seconds(19));
    assert_eq!(
        worker.run_once().await.unwrap().ran,
        0,
        "backoff doubles: 20 s"
    );
    clock.advance(Duration::seconds(1));
    assert_eq!(worker.run_once().await.unwrap().failed, 1, "attempt 3");
    clock.advance(Duration::hours(1));
    assert_eq!(worker.run_once().await.unwrap().ran, 0, "no fourth attempt");
    assert_eq!(handler.calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    let incidents = e.incidents(true, 10, 0).await.unwrap();
    assert_eq!(incidents.len(), 1, "one incident");
    assert_eq!(
        (incidents[0].attempts, incidents[0].message.as_str()),
        (3, "gateway timeout (3)")
    );
    e.retry(
        &inst.id,
        incidents[0].activity,
        Some(1),
        Vars::new(),
        Some("admin".into()),
    )
    .await
    .unwrap();
    assert_eq!(worker.run_once().await.unwrap().done, 1);
    let done = e.instance(&inst.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(
        done.variables().get("receipt"),
        Some(&json!({"charged": true}))
    );
}

#[tokio::test]
async fn an_expired_lease_counts_its_attempt_and_ends_in_an_incident_not_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy("c.yaml", CHARGE).await.unwrap();
    let inst = e.start("c", None, None, Vars::new()).await.unwrap();
    let lease = Duration::seconds(30);
    let actions = || vec!["pay.charge".to_owned()];
    for attempt in 1..=3 {
        let jobs = e
            .acquire_jobs("crashy", actions(), 10, lease)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].attempts, attempt);
        assert!(
            e.acquire_jobs("other", actions(), 10, lease)
                .await
                .unwrap()
                .is_empty(),
            "leased: nobody else takes it"
        );
        clock.advance(lease); // the worker died; its lease runs out
    }
    assert!(
        e.acquire_jobs("w", actions(), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let incidents = e.incidents(true, 10, 0).await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].attempts, 3);
    assert!(
        incidents[0].message.contains("lease"),
        "{}",
        incidents[0].message
    );
    // A late report from the dead worker changes nothing.
    assert!(matches!(
        e.complete_job(&inst.id, incidents[0].activity, "crashy", Value::Null)
            .await,
        Err(ordo_engine::engine::Error::Conflict { .. })
    ));
}

#[test]
fn the_shipped_china_calendar_moves_deadlines_over_national_day() {
    let mut cals = ordo_engine::calendar::Calendars::default();
    cals.load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calendars"))
        .unwrap();
    let cn = cals.get("cn").unwrap();
    // Wednesday 30 September 2026, 10:00 Shanghai: the National Day week is off,
    // Thursday 8 and Friday 9 October work, and Saturday 10 October is a make-up day.
    let at = Utc.with_ymd_and_hms(2026, 9, 30, 2, 0, 0).unwrap();
    assert_eq!(
        cn.add_business_days(at, 3),
        Some(Utc.with_ymd_and_hms(2026, 10, 10, 2, 0, 0).unwrap())
    );
    assert!(cals.get("default").is_some());
}

const DECLARED_PAID: &str = "id: order
messages:
  paid:
    variables:
      amount: {type: number, required: true, min: 0.01}
      lines: {type: array, items: {type: object, properties: {sku: {type: string, required: true}}}}
start: [{id: s, next: paid}]
nodes:
  paid: {type: receive, message: paid, out: {amount: =message.amount}, next: e}
  e: {type: end}
";

#[tokio::test]
async fn a_message_that_does_not_fit_its_declaration_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    e.deploy("order.yaml", DECLARED_PAID).await.unwrap();
    // Nobody waits yet: a bad message is not buffered, and its id is not kept.
    let mut bad = msg("paid", "o-1", Some("m-1"));
    bad.variables = vars(json!({"amount": -3, "lines": [{"qty": 1}]}));
    let refused = e.correlate(bad.clone()).await;
    let Err(ordo_engine::engine::Error::InvalidMessage { name, problems }) = refused else {
        unreachable!("refused: {refused:?}")
    };
    assert_eq!(name, "paid");
    assert_eq!(
        problems,
        [
            "amount must be at least 0.01, not -3",
            "lines[0].sku is required"
        ]
    );
    let inst = e
        .start("order", None, Some("o-1".into()), Vars::new())
        .await
        .unwrap();
    assert_eq!(inst.active_nodes(), ["paid"], "nothing was buffered for it");
    // Waited for, it is still refused; the instance goes on waiting.
    assert!(e.correlate(bad).await.is_err());
    assert_eq!(e.instance(&inst.id).await.unwrap().active_nodes(), ["paid"]);
    // The same id with a good payload is new, and correlates.
    let mut good = msg("paid", "o-1", Some("m-1"));
    good.variables = vars(json!({"amount": 3, "lines": [{"sku": "A-1"}]}));
    let r = e.correlate(good).await.unwrap();
    assert!(matches!(r, Correlation::Correlated { .. }), "{r:?}");
    assert_eq!(
        e.instance(&inst.id).await.unwrap().status,
        InstanceStatus::Completed
    );
    // A name nobody declares passes as before.
    let r = e.correlate(msg("other", "x", None)).await.unwrap();
    assert!(matches!(r, Correlation::Buffered { .. }), "{r:?}");
    // A new version without the declaration stops checking it.
    e.deploy("order.yaml", WAIT_PAID).await.unwrap();
    let mut loose = msg("paid", "o-2", None);
    loose.variables = vars(json!({"amount": -3}));
    assert!(e.correlate(loose).await.is_ok());
}

#[tokio::test]
async fn a_timer_that_cannot_fire_fails_alone_as_an_incident() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let e = open(&dir, &clock);
    // A timer start whose process needs a variable no timer can give.
    e.deploy(
        "needy.yaml",
        "id: needy\nvariables: {owner: {type: string, required: true}}\nstart: [{id: hourly, timer: {cycle: '0 * * * *'}, next: e}]\nnodes:\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    // 100 instances whose timers are fine.
    e.deploy(
        "wait.yaml",
        "id: wait\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: catch, timer: PT30M, next: e}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    for _ in 0..100 {
        e.start("wait", None, None, Vars::new()).await.unwrap();
    }
    // One whose timer step cannot be stored: it doubles a variable past the limit.
    e.deploy(
        "grow.yaml",
        "id: grow\nvariables: {blob: {type: string}}\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: catch, timer: PT30M, next: a}\n  a: {type: assign, set: {blob: =blob + blob}, next: e}\n  e: {type: end}\n",
    )
    .await
    .unwrap();
    let blob = "x".repeat(ordo_engine::runtime::MAX_VARIABLES_BYTES * 2 / 3);
    let grow = e
        .start("grow", None, None, vars(json!({ "blob": blob })))
        .await
        .unwrap();
    clock.advance(Duration::hours(1));
    let f = e.fire_due_timers().await.unwrap();
    assert_eq!((f.fired, f.started), (100, 0), "{:?}", f.failed);
    assert_eq!(f.failed.len(), 2, "{:?}", f.failed);
    assert_eq!(count(&e, "wait", "completed").await, 100);
    let open_incidents = e.incidents(true, 10, 0).await.unwrap();
    let keys: Vec<(&str, u64)> = open_incidents
        .iter()
        .map(|i| (i.instance_id.as_str(), i.activity))
        .collect();
    assert_eq!(open_incidents.len(), 2, "{open_incidents:?}");
    assert!(keys.contains(&("start:needy:hourly", 0)), "{keys:?}");
    let timer = open_incidents
        .iter()
        .find(|i| i.instance_id == grow.id)
        .expect("the failing instance timer is an incident");
    assert_eq!(timer.node, "t");
    assert!(
        timer.message.contains("retry fires it again"),
        "{}",
        timer.message
    );
    // Parked: the next pass does not retry it on its own.
    let again = e.fire_due_timers().await.unwrap();
    assert!(again.failed.is_empty(), "{:?}", again.failed);
    assert_eq!(
        e.instance(&grow.id).await.unwrap().active_nodes(),
        ["t"],
        "the token still waits, with its timer kept"
    );
    // An admin's retry arms it again; it fires (and here fails again, visibly).
    e.retry(
        &grow.id,
        timer.activity,
        None,
        Vars::new(),
        Some("ada".into()),
    )
    .await
    .unwrap();
    let third = e.fire_due_timers().await.unwrap();
    assert_eq!(third.failed.len(), 1, "{:?}", third.failed);
}
