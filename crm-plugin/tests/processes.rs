//! The shipped CRM processes besides lead-to-cash (which `tests/crm_flow.rs`
//! runs over HTTP), on a real engine and SQLite file with a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use chrono::{Duration, TimeZone, Utc};
use ordo_engine::engine::{Config, Engine, Message};
use ordo_engine::runtime::{Clock, InstanceStatus, ManualClock};
use ordo_engine::store::{Conn, Sql, SqlExt, params};
use ordo_server::auth::{Directory, Person, Role};
use serde_json::{Value, json};
use std::sync::Arc;

struct Crm {
    engine: Engine,
    clock: Arc<ManualClock>,
    db: Conn,
    _dir: tempfile::TempDir,
}

async fn crm() -> Crm {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordo.db");
    let people = Directory::open(&path).unwrap();
    for (name, roles, groups, supervisor) in [
        ("dora", vec![Role::Supervisor], vec!["directors"], None),
        (
            "sue",
            vec![Role::Supervisor],
            vec!["sales_supervisors"],
            Some("dora"),
        ),
        (
            "fiona",
            vec![Role::Salesperson],
            vec!["finance", "contract_board"],
            None,
        ),
        (
            "carl",
            vec![Role::Salesperson],
            vec!["contract_board"],
            None,
        ),
        ("sam", vec![Role::Salesperson], vec!["sales"], Some("sue")),
        ("sally", vec![Role::Salesperson], vec!["sales"], Some("sue")),
        ("ada", vec![Role::Admin], vec![], None),
    ] {
        people
            .add(&Person {
                name: name.into(),
                roles,
                groups: groups.into_iter().map(str::to_owned).collect(),
                supervisor: supervisor.map(str::to_owned),
            })
            .unwrap();
    }
    let mut config = Config::new(path.clone());
    // Monday 2026-11-23, 09:00 UTC.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
    ));
    config.clock = clock.clone();
    ordo_crm::install(&mut config).unwrap();
    let engine = Engine::open(config).unwrap();
    let dir_of = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../processes/crm");
    for f in ordo_engine::model::yaml_files(&dir_of).unwrap() {
        let text = std::fs::read_to_string(&f).unwrap();
        engine
            .deploy(&f.display().to_string(), &text)
            .await
            .unwrap();
    }
    Crm {
        engine,
        clock,
        db: Conn::open_shared(&path).unwrap(),
        _dir: dir,
    }
}

fn vars(v: Value) -> ordo_engine::runtime::Vars {
    serde_json::from_value(v).unwrap()
}

fn customer(c: &Crm, name: &str, owner: &str, last_contact_days_ago: i64) -> i64 {
    let at = (c.clock.now() - Duration::days(last_contact_days_ago)).to_rfc3339();
    c.db.query_row(
        "INSERT INTO crm_customers (number, name, owner, last_contact_at, created_at, updated_at)
         VALUES ('N-' || ?1, ?1, ?2, ?3, ?3, ?3) RETURNING id",
        params![name, owner, at],
        |r| r.get(0),
    )
    .unwrap()
}

fn inbox_templates(c: &Crm, person: &str) -> Vec<String> {
    ordo_crm::notify::inbox(&c.db, person, false, 100)
        .unwrap()
        .into_iter()
        .map(|n| n.template)
        .collect()
}

#[tokio::test]
async fn a_salesperson_who_leaves_hands_their_customers_to_the_pool() {
    let c = crm().await;
    let kept = customer(&c, "kept", "sally", 1);
    let gone = customer(&c, "gone", "sam", 1);
    let r = c
        .engine
        .correlate(Message {
            name: "staff.left".into(),
            key: Some("sam".into()),
            message_id: None,
            variables: vars(json!({"person": "sam"})),
            ttl: None,
        })
        .await
        .unwrap();
    assert!(
        matches!(r, ordo_engine::engine::Correlation::Started { .. }),
        "{r:?}"
    );
    let (owner, in_pool, previous): (Option<String>, bool, Option<String>) =
        c.db.query_row(
            "SELECT owner, in_pool, previous_owner FROM crm_customers WHERE id = ?1",
            params![gone],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (owner, in_pool, previous.as_deref()),
        (None, true, Some("sam"))
    );
    let still: String =
        c.db.query_row(
            "SELECT owner FROM crm_customers WHERE id = ?1",
            params![kept],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(still, "sally");
    assert!(inbox_templates(&c, "sue").contains(&"staff_left".to_owned()));
    assert!(
        !ordo_crm::org::active_members(&c.db, "sales")
            .unwrap()
            .contains(&"sam".to_owned())
    );
}

#[tokio::test]
async fn the_daily_pass_returns_stale_customers_and_reminds_first() {
    let c = crm().await;
    let stale = customer(&c, "stale", "sam", 40);
    let soon = customer(&c, "soon", "sam", 28);
    let i = c
        .engine
        .start("stale-customers", None, None, vars(json!({})))
        .await
        .unwrap();
    assert_eq!(i.status, InstanceStatus::Completed);
    assert_eq!(
        i.variables()["reclaimed"],
        json!({"moved": [stale], "reminded": [soon]})
    );
    let templates = inbox_templates(&c, "sam");
    assert!(
        templates.contains(&"pool_reclaimed".to_owned())
            && templates.contains(&"pool_reminder".to_owned()),
        "{templates:?}"
    );
}

#[tokio::test]
async fn a_complaint_is_handled_escalated_when_late_and_followed_by_a_return_visit() {
    let c = crm().await;
    let cust = customer(&c, "Wang", "sam", 1);
    let i = c
        .engine
        .start(
            "complaint",
            None,
            None,
            vars(json!({"customer_id": cust, "subject": "late delivery"})),
        )
        .await
        .unwrap();
    assert_eq!(i.active_nodes(), ["handle"]);
    assert!(inbox_templates(&c, "sam").contains(&"complaint_received".to_owned()));
    assert!(
        inbox_templates(&c, "sue").contains(&"complaint_received".to_owned()),
        "the supervisor too"
    );
    // Two working days pass: the supervisor is told, the task stays with sam.
    c.clock.advance(Duration::days(2) + Duration::hours(1));
    c.engine.fire_due_timers().await.unwrap();
    assert!(inbox_templates(&c, "sue").contains(&"complaint_overdue".to_owned()));
    let task = c
        .engine
        .tasks_of("sam", 10)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.node == "handle")
        .unwrap();
    c.engine
        .complete_task(
            &i.id,
            task.activity,
            vars(json!({"resolution": "re-shipped"})),
            Some("sam".into()),
            None,
        )
        .await
        .unwrap();
    let status: String =
        c.db.query_row("SELECT status FROM crm_complaints", params![], |r| r.get(0))
            .unwrap();
    assert_eq!(status, "resolved");
    // Three working days later (a weekend in between), the return visit.
    c.clock.advance(Duration::days(5));
    c.engine.fire_due_timers().await.unwrap();
    let visit = c
        .engine
        .tasks_of("sam", 10)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.node == "return_visit")
        .unwrap();
    let done = c
        .engine
        .complete_task(
            &i.id,
            visit.activity,
            vars(json!({"visited_on": "2026-12-02", "satisfaction": 4})),
            Some("sam".into()),
            None,
        )
        .await
        .unwrap();
    let incidents = c.engine.instance_incidents(&i.id).await.unwrap();
    assert_eq!(
        done.status,
        InstanceStatus::Completed,
        "{:?} {incidents:?}",
        done.active_nodes()
    );
    let (sat, complaint): (i64, Option<i64>) =
        c.db.query_row(
            "SELECT satisfaction, complaint_id FROM crm_return_visits",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((sat, complaint.is_some()), (4, true));
}

/// Completes `who`'s open task at `node` of instance `id` with `v`.
async fn complete(
    c: &Crm,
    id: &str,
    who: &str,
    node: &str,
    v: Value,
) -> ordo_engine::runtime::Instance {
    let task = c
        .engine
        .tasks_of(who, 20)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.node == node && t.instance_id == id)
        .expect("the person has a task at that node");
    c.engine
        .complete_task(id, task.activity, vars(v), Some(who.into()), None)
        .await
        .unwrap()
}

async fn contract_approval(c: &Crm, amount: i64) -> String {
    contract_of(c, amount, "sam", "sue").await
}

/// A contract owned and submitted by `owner`, whose supervisor is `supervisor`.
async fn contract_of(c: &Crm, amount: i64, owner: &str, supervisor: &str) -> String {
    let cust = customer(c, "Zhang", owner, 1);
    let now = c.clock.now().to_rfc3339();
    let contract: i64 = c
        .db
        .query_row(
            "INSERT INTO crm_contracts (customer_id, status, amount_cents, owner, created_at, updated_at)
             VALUES (?1, 'in_approval', ?2, ?3, ?4, ?4) RETURNING id",
            params![cust, amount * 100, owner, now],
            |r| r.get(0),
        )
        .unwrap();
    c.engine
        .start(
            "contract-approval",
            None,
            None,
            vars(
                json!({"contract": {"id": contract, "amount": amount, "owner": owner},
                        "requester": owner, "supervisor": supervisor}),
            ),
        )
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn nobody_approves_what_they_own_or_already_approved() {
    let c = crm().await;
    // The director sits on the contract board too.
    c.db.execute(
        "INSERT INTO memberships (person, grp) VALUES ('dora', 'contract_board')",
        params![],
    )
    .unwrap();
    // Sue, a supervisor who also takes leads, owns a large contract.
    let id = contract_of(&c, 250_000, "sue", "dora").await;
    let i = complete(
        &c,
        &id,
        "dora",
        "approve_contract",
        json!({"approved": true}),
    )
    .await;
    // Above dora nobody; the fallback group is sue herself: the admins decide.
    assert_eq!(i.active_nodes(), ["approve_large_contract"]);
    let next = &i.variables()["next_approver"];
    assert_eq!(next["people"], json!(["ada"]), "{next}");
    assert_eq!(
        next["skipped"],
        json!([{"person": "sue", "why": "requested or already approved this (four-eyes rule)"}]),
        "{next}"
    );
    assert!(
        next["reason"].as_str().unwrap().contains("admins decide"),
        "{next}"
    );
    let task = c.engine.tasks_of("ada", 10).await.unwrap();
    assert_eq!(task.len(), 1, "{task:?}");
    // Sue sees it nowhere, cannot take it, be given it, or complete it.
    let groups = vec!["sales_supervisors".to_owned()];
    assert!(c.engine.tasks_of("sue", 10).await.unwrap().is_empty());
    assert!(
        c.engine
            .group_tasks("sue", groups, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let activity = task[0].activity;
    let (_, who) = c.engine.task(&id, activity).await.unwrap().unwrap();
    assert_eq!(who.excluded, ["dora", "sue"], "{who:?}");
    let refused = c
        .engine
        .complete_task(
            &id,
            activity,
            vars(json!({"approved": true})),
            Some("sue".into()),
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(ordo_engine::engine::Error::NotAllowed(_))),
        "{refused:?}"
    );
    let delegated = c
        .engine
        .change_task(
            &id,
            activity,
            ordo_engine::engine::TaskChange::Delegate {
                by: "ada".into(),
                to: "sue".into(),
            },
        )
        .await;
    assert!(
        matches!(delegated, Err(ordo_engine::engine::Error::NotAllowed(_))),
        "{delegated:?}"
    );
    let i = complete(
        &c,
        &id,
        "ada",
        "approve_large_contract",
        json!({"approved": true}),
    )
    .await;
    // The board countersigns without dora, who already approved.
    let mut signing: Vec<String> = Vec::new();
    for member in ["fiona", "carl", "dora"] {
        if !c.engine.tasks_of(member, 10).await.unwrap().is_empty() {
            signing.push(member.to_owned());
        }
    }
    assert_eq!(signing, ["fiona", "carl"]);
    assert_eq!(
        i.variables()["board"]["excluded"],
        json!(["sue", "dora", "ada"])
    );
}

#[tokio::test]
async fn a_large_contract_goes_up_the_chain_then_the_whole_board_countersigns() {
    let c = crm().await;
    let id = contract_approval(&c, 250_000).await;
    // The supervisor approves; the next step goes to *her* supervisor.
    let i = complete(
        &c,
        &id,
        "sue",
        "approve_contract",
        json!({"approved": true}),
    )
    .await;
    assert_eq!(i.active_nodes(), ["approve_large_contract"]);
    let task = c.engine.tasks_of("dora", 10).await.unwrap();
    assert_eq!(
        task[0].assignee.as_deref(),
        Some("dora"),
        "the previous approver's supervisor"
    );
    let i = complete(
        &c,
        &id,
        "dora",
        "approve_large_contract",
        json!({"approved": true}),
    )
    .await;
    // Every board member has a countersign task of their own.
    assert!(i.active_nodes().iter().all(|n| *n == "countersign"));
    for member in ["fiona", "carl"] {
        let mine = c.engine.tasks_of(member, 10).await.unwrap();
        assert_eq!(mine.len(), 1, "{member}: {mine:?}");
        assert_eq!(mine[0].assignee.as_deref(), Some(member));
    }
    let i = complete(
        &c,
        &id,
        "fiona",
        "countersign",
        json!({"countersigned": true}),
    )
    .await;
    assert_eq!(
        i.status,
        InstanceStatus::Active,
        "one signature is not enough"
    );
    let i = complete(
        &c,
        &id,
        "carl",
        "countersign",
        json!({"countersigned": true, "note": "fine"}),
    )
    .await;
    assert_eq!(i.status, InstanceStatus::Completed);
    assert_eq!(i.variables()["approved"], json!(true));
    assert_eq!(
        i.variables()["votes"],
        json!([{"by": "carl", "approved": true, "comment": "fine"}, {"by": "fiona", "approved": true, "comment": ""}])
    );
    assert!(inbox_templates(&c, "sam").contains(&"contract_decided".to_owned()));
}

#[tokio::test]
async fn one_board_rejection_ends_the_countersign_and_withdraws_the_other_tasks() {
    let c = crm().await;
    let id = contract_approval(&c, 250_000).await;
    complete(
        &c,
        &id,
        "sue",
        "approve_contract",
        json!({"approved": true}),
    )
    .await;
    complete(
        &c,
        &id,
        "dora",
        "approve_large_contract",
        json!({"approved": true}),
    )
    .await;
    let i = complete(
        &c,
        &id,
        "carl",
        "countersign",
        json!({"countersigned": false, "note": "margin too thin"}),
    )
    .await;
    let incidents = c.engine.instance_incidents(&id).await.unwrap();
    assert_eq!(
        i.status,
        InstanceStatus::Completed,
        "{:?} {incidents:?}",
        i.active_nodes()
    );
    assert_eq!(i.variables()["approved"], json!(false));
    assert_eq!(i.variables()["comment"], json!("carl: margin too thin"));
    let open = c.engine.tasks_of("fiona", 10).await.unwrap();
    assert!(
        open.is_empty(),
        "fiona's countersign was withdrawn: {open:?}"
    );
}

#[tokio::test]
async fn a_contract_within_the_limit_needs_only_the_supervisor() {
    let c = crm().await;
    let id = contract_approval(&c, 20_000).await;
    let i = complete(
        &c,
        &id,
        "sue",
        "approve_contract",
        json!({"approved": false, "comment": "wrong terms"}),
    )
    .await;
    assert_eq!(i.status, InstanceStatus::Completed);
    assert_eq!(i.variables()["first_approver"], json!("sue"));
    assert_eq!(i.variables()["comment"], json!("wrong terms"));
    assert!(c.engine.tasks_of("dora", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn whoever_wrote_the_terms_never_approves_them_and_a_vote_counts_for_its_signer_only() {
    let c = crm().await;
    // Sue wrote sam's contract terms (his task was handed to her): she is an
    // author, so the first approval passes her for the next one up, dora.
    let cust = customer(&c, "Wang", "sam", 1);
    let now = c.clock.now().to_rfc3339();
    let contract: i64 = c
        .db
        .query_row(
            "INSERT INTO crm_contracts (customer_id, status, amount_cents, owner, created_at, updated_at)
             VALUES (?1, 'in_approval', 25000000, 'sam', ?2, ?2) RETURNING id",
            params![cust, now],
            |r| r.get(0),
        )
        .unwrap();
    let id = c
        .engine
        .start(
            "contract-approval",
            None,
            None,
            vars(
                json!({"contract": {"id": contract, "amount": 250_000, "owner": "sam"},
                        "requester": "sam", "supervisor": "sue", "authors": ["sue", ""]}),
            ),
        )
        .await
        .unwrap()
        .id;
    assert!(c.engine.tasks_of("sue", 10).await.unwrap().is_empty());
    let i = complete(
        &c,
        &id,
        "dora",
        "approve_contract",
        json!({"approved": true}),
    )
    .await;
    assert_eq!(i.variables()["first_approvers"]["people"], json!(["dora"]));
    assert_eq!(
        i.variables()["first_approvers"]["skipped"][0]["person"],
        "sue"
    );
    // Above dora nobody; the fallback group is sue alone: the admins decide.
    assert_eq!(i.variables()["next_approver"]["people"], json!(["ada"]));
    let i = complete(
        &c,
        &id,
        "ada",
        "approve_large_contract",
        json!({"approved": true}),
    )
    .await;
    assert!(i.active_nodes().iter().all(|n| *n == "countersign"));
    // With every admin excluded too, the step stops with an incident that
    // says why.
    let id = c
        .engine
        .start(
            "contract-approval",
            None,
            None,
            vars(
                json!({"contract": {"id": contract, "amount": 250_000, "owner": "sam"},
                        "requester": "sam", "supervisor": "sue",
                        "authors": ["sue", "dora", "ada"]}),
            ),
        )
        .await
        .unwrap()
        .id;
    let incidents = c.engine.instance_incidents(&id).await.unwrap();
    assert!(
        incidents
            .iter()
            .any(|x| x.message.contains("nobody may approve this")),
        "{incidents:?}"
    );

    // A countersign handed to another member counts for that member only.
    let id = contract_approval(&c, 250_000).await;
    complete(
        &c,
        &id,
        "sue",
        "approve_contract",
        json!({"approved": true}),
    )
    .await;
    complete(
        &c,
        &id,
        "dora",
        "approve_large_contract",
        json!({"approved": true}),
    )
    .await;
    let mine = |who: &'static str| {
        let (engine, id) = (&c.engine, id.clone());
        async move {
            let all = engine.tasks_of(who, 20).await.unwrap();
            all.into_iter()
                .filter(|t| t.instance_id == id)
                .collect::<Vec<_>>()
        }
    };
    let fionas = mine("fiona").await;
    c.engine
        .change_task(
            &id,
            fionas[0].activity,
            ordo_engine::engine::TaskChange::Delegate {
                by: "fiona".into(),
                to: "carl".into(),
            },
        )
        .await
        .unwrap();
    let mut last = None;
    for t in mine("carl").await {
        last = Some(
            c.engine
                .complete_task(
                    &id,
                    t.activity,
                    vars(json!({"countersigned": true})),
                    Some("carl".into()),
                    None,
                )
                .await
                .unwrap(),
        );
    }
    let i = last.unwrap();
    assert_eq!(i.status, InstanceStatus::Completed);
    assert_eq!(
        i.variables()["approved"],
        json!(false),
        "fiona never signed"
    );
    assert_eq!(
        i.variables()["comment"],
        "not every board member countersigned in person"
    );
}
