//! The CRM's rules on a real SQLite file: assignment strategies, the public
//! pool's limits and reclaim, notifications at most once per (event, recipient)
//! with delivery retries, who sees what, and the CSV import.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use chrono::{DateTime, Duration, TimeZone, Utc};
use ordo_crm::assign::{self, Context, Subject};
use ordo_crm::records::{self, Why};
use ordo_crm::visibility::{self, Filter, Scope};
use ordo_crm::{notify, org, pool};
use ordo_engine::store::{Conn, Sql, params};
use ordo_server::auth::{Directory, Identity, Person, Role};
use serde_json::{Map, Value, json};

struct Db {
    conn: Conn,
    _dir: tempfile::TempDir,
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn why(at: DateTime<Utc>) -> Why {
    Why {
        actor: Some("test".into()),
        reason: "a test".into(),
        at,
    }
}

/// dora directs sue, who supervises sam and sally (group sales); tom is in
/// sales too, no supervisor.
fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordo.db");
    let directory = Directory::open(&path).unwrap();
    for (name, role, groups, supervisor) in [
        ("dora", Role::Supervisor, vec!["directors"], None),
        (
            "sue",
            Role::Supervisor,
            vec!["sales_supervisors"],
            Some("dora"),
        ),
        ("sam", Role::Salesperson, vec!["sales"], Some("sue")),
        ("sally", Role::Salesperson, vec!["sales"], Some("sue")),
        ("tom", Role::Salesperson, vec!["sales"], None),
        ("ada", Role::Admin, vec![], None),
        ("max", Role::Maintenance, vec![], None),
    ] {
        directory
            .add(&Person {
                name: name.into(),
                roles: vec![role],
                groups: groups.into_iter().map(str::to_owned).collect(),
                supervisor: supervisor.map(str::to_owned),
            })
            .unwrap();
    }
    let conn = Conn::open_shared(&path).unwrap();
    ordo_crm::schema::migrate(&conn).unwrap();
    Db { conn, _dir: dir }
}

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn create(c: &dyn Sql, kind: &str, v: Value) -> i64 {
    records::create(c, records::kind(kind).unwrap(), &fields(v), &why(now())).unwrap()
}

fn subject(c: &dyn Sql, kind: &str, id: i64) -> Subject {
    let k = records::kind(kind).unwrap();
    Subject {
        kind: k,
        id,
        fields: records::get(c, k, id).unwrap().unwrap(),
    }
}

fn pick(c: &dyn Sql, strategy: &str, s: &Subject, exclude: &[String], seed: u64) -> Option<String> {
    let cx = Context {
        tx: c,
        group: Some("sales"),
        exclude,
        subject: s,
        now: now(),
        seed,
    };
    assign::strategy(strategy)
        .unwrap()
        .pick(&cx)
        .unwrap()
        .map(|p| p.person)
}

fn run(
    c: &dyn Sql,
    first: &str,
    fallback: Option<&str>,
    s: &Subject,
) -> Result<assign::Assigned, String> {
    let cx = Context {
        tx: c,
        group: Some("sales"),
        exclude: &[],
        subject: s,
        now: now(),
        seed: 1,
    };
    let fallback = fallback.map(|f| assign::strategy(f).unwrap());
    assign::assign(
        &cx,
        assign::strategy(first).unwrap(),
        fallback,
        &why(now()),
        Some("i-1"),
    )
}

fn set_staff(c: &dyn Sql, person: &str, active: bool, weight: i64, capacity: Option<i64>) {
    org::set_staff(
        c,
        &org::Staff {
            person: person.into(),
            email: None,
            weight,
            daily_capacity: capacity,
            active,
        },
    )
    .unwrap();
}

#[test]
fn round_robin_takes_turns_among_active_people_and_a_rolled_back_step_keeps_the_pointer() {
    let d = db();
    let lead = create(&d.conn, "lead", json!({"name": "A"}));
    let s = subject(&d.conn, "lead", lead);
    let turns: Vec<_> = (0..4)
        .map(|_| pick(&d.conn, "round_robin", &s, &[], 0).unwrap())
        .collect();
    assert_eq!(turns, ["sally", "sam", "tom", "sally"]);
    set_staff(&d.conn, "sam", false, 1, None);
    assert_eq!(
        pick(&d.conn, "round_robin", &s, &[], 0).as_deref(),
        Some("tom"),
        "sam left: skipped"
    );
    {
        let tx = d.conn.begin().unwrap();
        assert_eq!(
            pick(&*tx, "round_robin", &s, &[], 0).as_deref(),
            Some("sally")
        );
        // dropped: rolled back with the step
    }
    assert_eq!(
        pick(&d.conn, "round_robin", &s, &[], 0).as_deref(),
        Some("sally"),
        "the pointer did not move"
    );
}

#[test]
fn the_rule_table_takes_the_first_match_skipping_people_who_left() {
    let d = db();
    assign::set_rules(
        &d.conn,
        &[
            assign::Rule {
                region: Some("north".into()),
                grade: Some("vip".into()),
                person: Some("sue".into()),
                ..Default::default()
            },
            assign::Rule {
                region: Some("north".into()),
                person: Some("tom".into()),
                ..Default::default()
            },
            assign::Rule {
                region: Some("north".into()),
                group: Some("sales".into()),
                ..Default::default()
            },
        ],
    )
    .unwrap();
    let vip = create(
        &d.conn,
        "lead",
        json!({"name": "V", "region": "north", "grade": "vip"}),
    );
    let plain = create(&d.conn, "lead", json!({"name": "P", "region": "north"}));
    let south = create(&d.conn, "lead", json!({"name": "S", "region": "south"}));
    assert_eq!(
        pick(
            &d.conn,
            "rule_table",
            &subject(&d.conn, "lead", vip),
            &[],
            0
        )
        .as_deref(),
        Some("sue")
    );
    assert_eq!(
        pick(
            &d.conn,
            "rule_table",
            &subject(&d.conn, "lead", plain),
            &[],
            0
        )
        .as_deref(),
        Some("tom")
    );
    set_staff(&d.conn, "tom", false, 1, None);
    assert_eq!(
        pick(
            &d.conn,
            "rule_table",
            &subject(&d.conn, "lead", plain),
            &[],
            0
        )
        .as_deref(),
        Some("sally"),
        "tom left: the group rule, round robin"
    );
    assert_eq!(
        pick(
            &d.conn,
            "rule_table",
            &subject(&d.conn, "lead", south),
            &[],
            0
        ),
        None,
        "no rule matches"
    );
    let done = run(
        &d.conn,
        "rule_table",
        Some("round_robin"),
        &subject(&d.conn, "lead", south),
    )
    .unwrap();
    assert_eq!(done.strategy, "round_robin", "the fallback ran");
    let bad = assign::set_rules(
        &d.conn,
        &[assign::Rule {
            person: Some("a".into()),
            group: Some("b".into()),
            ..Default::default()
        }],
    );
    assert!(bad.unwrap_err().contains("either `person` or `group`"));
    // A rule that could never match or never give the record away is refused.
    for (rule, says) in [
        (
            assign::Rule {
                person: Some("ghost".into()),
                ..Default::default()
            },
            "`ghost` is nobody active",
        ),
        (
            assign::Rule {
                group: Some("nogroup".into()),
                ..Default::default()
            },
            "has no active member",
        ),
        (
            assign::Rule {
                region: Some("moon".into()),
                group: Some("sales".into()),
                ..Default::default()
            },
            "`region` must be one of",
        ),
    ] {
        let err = assign::set_rules(&d.conn, &[rule]).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn least_busy_counts_open_work_only_and_breaks_ties_by_who_waited_longest() {
    let d = db();
    let customer = create(&d.conn, "customer", json!({"name": "C", "owner": "sam"}));
    create(
        &d.conn,
        "lead",
        json!({"name": "open", "owner": "sam", "status": "in_process"}),
    );
    create(
        &d.conn,
        "lead",
        json!({"name": "done", "owner": "sally", "status": "converted"}),
    );
    create(
        &d.conn,
        "opportunity",
        json!({"name": "won", "customer_id": customer, "owner": "sally", "status": "won"}),
    );
    let lead = create(&d.conn, "lead", json!({"name": "new"}));
    let s = subject(&d.conn, "lead", lead);
    // sally and tom have no open work; neither was ever assigned: by name.
    assert_eq!(
        pick(&d.conn, "least_busy", &s, &[], 0).as_deref(),
        Some("sally")
    );
    run(&d.conn, "round_robin", None, &s).unwrap(); // sally gets this one: now she has open work
    let other = create(&d.conn, "lead", json!({"name": "next"}));
    let s2 = subject(&d.conn, "lead", other);
    assert_eq!(
        pick(&d.conn, "least_busy", &s2, &[], 0).as_deref(),
        Some("tom")
    );
    assert_eq!(
        pick(&d.conn, "least_busy", &s2, &["tom".into()], 0).as_deref(),
        Some("sam"),
        "sam and sally have one open each: sam was never assigned, sally just was"
    );
}

#[test]
fn weighted_random_follows_the_weights_and_a_retried_step_draws_the_same() {
    let d = db();
    set_staff(&d.conn, "sam", true, 3, None);
    set_staff(&d.conn, "tom", true, 0, None);
    let lead = create(&d.conn, "lead", json!({"name": "W"}));
    let s = subject(&d.conn, "lead", lead);
    let mut sam = 0;
    for seed in 0..2000u64 {
        let who = pick(
            &d.conn,
            "weighted_random",
            &s,
            &[],
            assign::seed(&["i", &seed.to_string()]),
        )
        .unwrap();
        assert_ne!(who, "tom", "weight 0 is never drawn");
        sam += usize::from(who == "sam");
    }
    assert!(
        (1300..=1700).contains(&sam),
        "sam has weight 3 of 4: drawn {sam} of 2000"
    );
    let seed = assign::seed(&["instance-7", "42", "1"]);
    assert_eq!(
        pick(&d.conn, "weighted_random", &s, &[], seed),
        pick(&d.conn, "weighted_random", &s, &[], seed)
    );
}

#[test]
fn capacity_stops_at_the_daily_quota_and_nobody_left_is_a_clear_error() {
    let d = db();
    for p in ["sam", "sally", "tom"] {
        set_staff(&d.conn, p, true, 1, Some(1));
    }
    let mut got = Vec::new();
    for i in 0..3 {
        let lead = create(&d.conn, "lead", json!({"name": format!("L{i}")}));
        got.push(
            run(&d.conn, "capacity", None, &subject(&d.conn, "lead", lead))
                .unwrap()
                .owner,
        );
    }
    got.sort();
    assert_eq!(got, ["sally", "sam", "tom"], "one each");
    let lead = create(&d.conn, "lead", json!({"name": "L4"}));
    let e = run(&d.conn, "capacity", None, &subject(&d.conn, "lead", lead)).unwrap_err();
    assert!(
        e.contains("nobody to assign lead") && e.contains("capacity"),
        "{e}"
    );
}

#[test]
fn an_assignment_sets_the_owner_audits_the_reason_and_tells_the_assignee_once() {
    let d = db();
    let lead = create(&d.conn, "lead", json!({"name": "Li <b>Lei</b>"}));
    let done = run(
        &d.conn,
        "round_robin",
        None,
        &subject(&d.conn, "lead", lead),
    )
    .unwrap();
    assert_eq!(
        (done.owner.as_str(), done.supervisor.as_deref()),
        ("sally", Some("sue"))
    );
    let trail = records::history(&d.conn, records::kind("lead").unwrap(), lead).unwrap();
    let last = trail.last().unwrap();
    assert_eq!(
        last.after,
        Some(json!({"owner": "sally", "status": "assigned"}))
    );
    assert!(
        last.why
            .starts_with("round_robin: round robin in sales: first in turn"),
        "{}",
        last.why
    );
    let inbox = notify::inbox(&d.conn, "sally", true, 10).unwrap();
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0].body.contains("Li &lt;b&gt;Lei&lt;/b&gt;"),
        "escaped: {}",
        inbox[0].body
    );
}

#[test]
fn one_event_reaches_a_person_once_and_failed_deliveries_back_off_then_fail() {
    let d = db();
    org::set_staff(
        &d.conn,
        &org::Staff {
            person: "sam".into(),
            email: Some("sam@x.example".into()),
            weight: 1,
            daily_capacity: None,
            active: true,
        },
    )
    .unwrap();
    d.conn.execute("INSERT INTO crm_webhooks (url, templates) VALUES ('http://127.0.0.1:9/hook', 'order_paid')", params![]).unwrap();
    let order_kind = records::kind("customer").unwrap();
    let customer = create(&d.conn, "customer", json!({"name": "C", "owner": "sam"}));
    let notice = notify::Notice {
        template: "order_paid",
        event: "paid:1".into(),
        to: vec!["sam".into(), "sue".into(), "sam".into()],
        about: Some((order_kind, customer)),
        data: Map::new(),
    };
    let first = notify::notify(&d.conn, &notice, &why(now())).unwrap();
    assert_eq!(first.inbox, ["sam", "sue"]);
    assert_eq!((first.emails, first.webhooks), (1, 1));
    let again = notify::notify(&d.conn, &notice, &why(now())).unwrap();
    assert_eq!(
        again,
        notify::Sent::default(),
        "the same event twice: nobody told twice"
    );

    // Without a relay, e-mails wait without spending an attempt; the webhook is
    // tried (nothing listens on its port) and waits a minute.
    let r = ordo_crm::deliver::deliver_due(&d.conn, None, now(), 10).unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (0, 1, 0));
    let waiting = ordo_crm::deliver::outbox(&d.conn, Some("pending"), 10).unwrap();
    let email = waiting.iter().find(|r| r.channel == "email").unwrap();
    assert_eq!(email.attempts, 0);
    let hook = waiting.iter().find(|r| r.channel == "webhook").unwrap();
    assert!(
        hook.last_error
            .as_deref()
            .unwrap_or("")
            .contains("127.0.0.1:9"),
        "{hook:?}"
    );

    // Nothing listens on the SMTP port either: each try fails and waits longer.
    let smtp = ordo_crm::deliver::Smtp::parse("127.0.0.1:9", "crm@x.example").unwrap();
    let mut at = now();
    let r = ordo_crm::deliver::deliver_due(&d.conn, Some(&smtp), at, 10).unwrap();
    assert_eq!(
        (r.sent, r.retrying, r.failed),
        (0, 1, 0),
        "the e-mail; the webhook is not due"
    );
    assert_eq!(
        ordo_crm::deliver::deliver_due(&d.conn, Some(&smtp), at, 10)
            .unwrap()
            .retrying,
        0,
        "not due again yet"
    );
    for wait in [1, 2, 4, 8] {
        at += Duration::minutes(wait);
        ordo_crm::deliver::deliver_due(&d.conn, Some(&smtp), at, 10).unwrap();
    }
    let rows = ordo_crm::deliver::outbox(&d.conn, Some("failed"), 10).unwrap();
    assert_eq!(
        rows.len(),
        2,
        "given up after {} attempts",
        ordo_crm::deliver::MAX_ATTEMPTS
    );
    assert!(
        rows.iter()
            .all(|r| r.attempts == ordo_crm::deliver::MAX_ATTEMPTS && r.last_error.is_some())
    );
    assert!(
        ordo_crm::deliver::Smtp::parse("nohost", "a@b.c")
            .unwrap_err()
            .contains("host:port")
    );
}

#[test]
fn the_pool_enforces_its_limits_and_the_cooldown() {
    let d = db();
    pool::set_rules(
        &d.conn,
        &pool::Rules {
            claims_per_day: 2,
            max_customers: 3,
            cooldown_days: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let ids: Vec<i64> = (0..4)
        .map(|i| {
            create(
                &d.conn,
                "customer",
                json!({"name": format!("C{i}"), "owner": "sam"}),
            )
        })
        .collect();
    for id in &ids {
        pool::move_to_pool(&d.conn, "customer", *id, "given up", &why(now())).unwrap();
    }
    let c0 = records::get(&d.conn, records::kind("customer").unwrap(), ids[0])
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            c0["owner"].clone(),
            c0["previous_owner"].clone(),
            c0["in_pool"].clone()
        ),
        (Value::Null, json!("sam"), json!(true))
    );
    let e = pool::claim(
        &d.conn,
        "customer",
        ids[0],
        "sam",
        &why(now() + Duration::days(1)),
    )
    .unwrap_err();
    assert!(matches!(e, pool::Refused::Cooldown { .. }), "{e}");
    assert!(
        pool::claim(
            &d.conn,
            "customer",
            ids[0],
            "sam",
            &why(now() + Duration::days(8))
        )
        .is_ok(),
        "after the cooldown"
    );
    pool::claim(&d.conn, "customer", ids[1], "sally", &why(now())).unwrap();
    pool::claim(&d.conn, "customer", ids[2], "sally", &why(now())).unwrap();
    let e = pool::claim(&d.conn, "customer", ids[3], "sally", &why(now())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sally has claimed 2 records today; the limit is 2 a day"
    );
    let e = pool::claim(&d.conn, "customer", ids[1], "tom", &why(now())).unwrap_err();
    assert!(
        matches!(e, pool::Refused::NotInPool(..)),
        "claimed already: {e}"
    );
    let mut rules = pool::rules(&d.conn).unwrap();
    rules.claims_per_day = 10;
    rules.max_customers = 2;
    pool::set_rules(&d.conn, &rules).unwrap();
    let e = pool::claim(
        &d.conn,
        "customer",
        ids[3],
        "sally",
        &why(now() + Duration::days(1)),
    )
    .unwrap_err();
    assert!(matches!(e, pool::Refused::TooMany { count: 2, .. }), "{e}");
}

#[test]
fn stale_customers_go_back_by_grade_after_a_reminder_with_exemptions() {
    let d = db();
    let old = |days: i64| (now() - Duration::days(days)).to_rfc3339();
    let stale = create(
        &d.conn,
        "customer",
        json!({"name": "stale", "owner": "sam", "last_contact_at": old(31)}),
    );
    let vip = create(
        &d.conn,
        "customer",
        json!({"name": "vip", "grade": "vip", "owner": "sam", "last_contact_at": old(31)}),
    );
    let soon = create(
        &d.conn,
        "customer",
        json!({"name": "soon", "owner": "sam", "last_contact_at": old(28)}),
    );
    let busy = create(
        &d.conn,
        "customer",
        json!({"name": "busy", "owner": "sam", "last_contact_at": old(90)}),
    );
    create(
        &d.conn,
        "opportunity",
        json!({"name": "o", "customer_id": busy, "owner": "sam"}),
    );
    let locked = create(
        &d.conn,
        "customer",
        json!({"name": "locked", "owner": "sam", "last_contact_at": old(90), "locked": true}),
    );
    let done = pool::reclaim_stale(&d.conn, &why(now())).unwrap();
    assert_eq!(
        done.moved,
        [stale],
        "vip has 60 days; busy has an open opportunity; locked waits"
    );
    assert_eq!(done.reminded, [soon], "2 days before its 30");
    let again = pool::reclaim_stale(&d.conn, &why(now() + Duration::hours(1))).unwrap();
    assert_eq!(again.reminded, [soon]);
    let reminders = notify::inbox(&d.conn, "sam", false, 50)
        .unwrap()
        .into_iter()
        .filter(|n| n.template == "pool_reminder")
        .count();
    assert_eq!(reminders, 1, "one reminder per deadline");
    let _ = (vip, locked);
    // sam leaves: his customers and open leads go to the pool, and he gets no more work.
    create(
        &d.conn,
        "lead",
        json!({"name": "l", "owner": "sam", "status": "assigned"}),
    );
    let moved = pool::release(&d.conn, "sam", &why(now())).unwrap();
    assert_eq!(moved.iter().filter(|(k, _)| k == "lead").count(), 1);
    assert!(moved.iter().any(|(k, id)| k == "customer" && *id == vip));
    assert!(
        !moved.iter().any(|(_, id)| *id == locked),
        "a locked customer stays until its approval ends"
    );
    assert!(
        !org::active_members(&d.conn, "sales")
            .unwrap()
            .contains(&"sam".to_owned())
    );
}

fn who(name: &str, role: Role) -> Identity {
    Identity {
        user: name.into(),
        roles: vec![role],
        groups: vec![],
        supervisor: None,
    }
}

#[test]
fn each_role_sees_only_what_it_may_in_lists_counts_search_and_single_records() {
    let d = db();
    let sams = create(
        &d.conn,
        "customer",
        json!({"name": "Sam's", "phone": "138 0000 1111", "owner": "sam"}),
    );
    let sallys = create(
        &d.conn,
        "customer",
        json!({"name": "Sally's", "owner": "sally"}),
    );
    let toms = create(
        &d.conn,
        "customer",
        json!({"name": "Tom's", "owner": "tom"}),
    );
    let pooled = create(
        &d.conn,
        "customer",
        json!({"name": "Pooled", "owner": "tom"}),
    );
    pool::move_to_pool(&d.conn, "customer", pooled, "x", &why(now())).unwrap();
    let k = records::kind("customer").unwrap();
    let matrix: [(Identity, &[i64]); 6] = [
        (who("sam", Role::Salesperson), &[sams]),
        (who("sue", Role::Supervisor), &[sallys, sams]),
        // The director sees her whole organisation, not only her direct reports.
        (who("dora", Role::Supervisor), &[sallys, sams]),
        (who("ada", Role::Admin), &[toms, sallys, sams]),
        (who("max", Role::Maintenance), &[]),
        (who("erp", Role::Integrator), &[]),
    ];
    for (id, expected) in matrix {
        let scope = Scope::of(&d.conn, &id).unwrap();
        let page = visibility::list(&d.conn, &scope, k, &Filter::default(), now(), true).unwrap();
        let ids: Vec<i64> = page
            .items
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, expected, "{}", id.user);
        assert_eq!(
            page.total,
            i64::try_from(expected.len()).unwrap(),
            "count, {}",
            id.user
        );
        let all = visibility::list(&d.conn, &scope, k, &Filter::default(), now(), false).unwrap();
        assert_eq!(all.items.len(), expected.len(), "export, {}", id.user);
        for c in [sams, sallys, toms] {
            let seen = visibility::visible(&d.conn, &scope, k, c)
                .unwrap()
                .is_some();
            assert_eq!(seen, expected.contains(&c), "{} → customer {c}", id.user);
        }
        let in_pool = visibility::pool(&d.conn, &scope, k, &Filter::default(), now())
            .unwrap()
            .total;
        assert_eq!(
            in_pool,
            i64::from(scope.sees_records()),
            "pool, {}",
            id.user
        );
    }
    // The pipeline follows the same reporting line.
    create(
        &d.conn,
        "opportunity",
        json!({"customer_id": sams, "name": "Looms", "stage": "proposal", "amount": 1000, "owner": "sam"}),
    );
    for (person, role, open) in [
        ("dora", Role::Supervisor, 1),
        ("sue", Role::Supervisor, 1),
        ("sally", Role::Salesperson, 0),
        ("tom", Role::Salesperson, 0),
    ] {
        let scope = Scope::of(&d.conn, &who(person, role)).unwrap();
        let stages = visibility::pipeline(&d.conn, &scope).unwrap();
        let count: i64 = stages.iter().map(|s| s.count).sum();
        assert_eq!(count, open, "{person}'s pipeline");
    }
    let admin = Scope::All;
    let search = |q: &str| {
        let f = Filter {
            q: Some(q.into()),
            ..Filter::default()
        };
        visibility::list(&d.conn, &admin, k, &f, now(), true)
            .unwrap()
            .total
    };
    assert_eq!(search("13800001111"), 1, "phone written without spaces");
    assert_eq!(search("sally"), 1);
    assert_eq!(search("%"), 0, "wildcards are literal");
    let today = Filter {
        added: Some(visibility::Window::Today),
        ..Filter::default()
    };
    assert_eq!(
        visibility::list(&d.conn, &admin, k, &today, now(), true)
            .unwrap()
            .total,
        3
    );
    let bad = Filter {
        stage: Some("x".into()),
        ..Filter::default()
    };
    assert!(
        visibility::list(&d.conn, &admin, k, &bad, now(), true)
            .unwrap_err()
            .contains("no `stage`")
    );
}
