//! The CRM actions run by a real engine on a real SQLite file: each in its
//! step's transaction, with its records audited, and refused inputs becoming
//! incidents that name what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use chrono::TimeZone;
use ordo_engine::engine::{Config, Engine};
use ordo_engine::runtime::ManualClock;
use ordo_engine::store::{Conn, SqlExt, params};
use serde_json::{Value, json};
use std::sync::Arc;

/// Creates a lead, checks for a duplicate of it, converts it, opens a plan and
/// takes two payments, all driven by the process's variables.
const FLOW: &str = "
id: crm-steps
variables:
  lead: { type: object, required: true }
start: [{id: s, next: dedupe}]
nodes:
  dedupe:
    type: service
    action: crm.find_duplicate
    with: { of: =lead }
    result: duplicate
    next: is_new
  is_new:
    type: exclusive
    branches:
      - { when: duplicate == null, to: create_lead }
    default: merge
  merge:
    type: service
    action: crm.update_record
    with: { record: customer, id: =duplicate.id, append_followup: =lead, by: intake }
    next: merged
  merged: { type: end }
  create_lead:
    type: service
    action: crm.create_record
    with: { record: lead, fields: =lead }
    result: lead_record
    next: convert
  convert:
    type: service
    action: crm.convert_lead
    with: { lead: =lead_record.id, opportunity: { amount: 12000 } }
    result: converted
    next: plan
  plan:
    type: service
    action: crm.create_record
    with: { record: receivable_plan, fields: { customer_id: =converted.customer, total: 1000.10 } }
    result: plan
    next: first
  first:
    type: service
    action: crm.record_payment
    with: { plan: =plan.id, payment: { amount: 400, method: bank_transfer, handler: fiona } }
    result: first_payment
    next: second
  second:
    type: service
    action: crm.record_payment
    with: { plan: =plan.id, payment: { amount: 600.10, method: cash, handler: fiona } }
    result: second_payment
    next: done
  done: { type: end }
";

struct Crm {
    engine: Engine,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn crm() -> Crm {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordo.db");
    let mut config = Config::new(db.clone());
    let at = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    config.clock = Arc::new(ManualClock::new(at));
    ordo_crm::install(&mut config).unwrap();
    Crm {
        engine: Engine::open(config).unwrap(),
        db,
        _dir: dir,
    }
}

fn vars(v: Value) -> ordo_engine::runtime::Vars {
    serde_json::from_value(v).unwrap()
}

const LEAD: &str = r#"{"name": "Li Lei", "company": "Acme Co., Ltd.", "email": "Li.Lei@Acme.example ",
  "phone": "+86 138-0013-8000", "region": "east", "source": "inbound", "owner": "sam"}"#;

#[tokio::test]
async fn a_lead_becomes_a_customer_and_is_paid_in_two_instalments() {
    let c = crm();
    c.engine.deploy("steps.yaml", FLOW).await.unwrap();
    let lead: Value = serde_json::from_str(LEAD).unwrap();
    let inst = c
        .engine
        .start("crm-steps", None, None, vars(json!({ "lead": lead })))
        .await
        .unwrap();
    let v = inst.variables();
    assert_eq!(
        inst.status,
        ordo_engine::runtime::InstanceStatus::Completed,
        "{v:?}"
    );
    assert_eq!(v["duplicate"], Value::Null);
    assert_eq!(v["lead_record"]["email"], "Li.Lei@Acme.example ");
    assert_eq!(v["first_payment"]["state"], "partial");
    assert_eq!(v["first_payment"]["outstanding"], 600.1);
    assert_eq!(v["second_payment"]["state"], "paid");
    assert_eq!(v["second_payment"]["paid"], 1000.1, "cents add up exactly");

    let db = Conn::open_shared(&c.db).unwrap();
    let customer = v["converted"]["customer"].as_i64().unwrap();
    let (name, owner, kind, number): (String, String, String, String) = db
        .query_row(
            "SELECT name, owner, type, number FROM crm_customers WHERE id = ?1",
            params![customer],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (name.as_str(), owner.as_str(), kind.as_str()),
        ("Li Lei", "sam", "intention")
    );
    assert!(number.starts_with('C'), "{number}");
    let status: String = db
        .query_row(
            "SELECT status FROM crm_leads WHERE id = ?1",
            params![v["lead_record"]["id"].as_i64().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "converted");
    let amount: i64 = db
        .query_row(
            "SELECT amount_cents FROM crm_opportunities WHERE id = ?1",
            params![v["converted"]["opportunity"].as_i64().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(amount, 1_200_000);

    // Every change is audited: when (the engine's clock), why (process and step).
    let kind = ordo_crm::records::kind("lead").unwrap();
    let trail =
        ordo_crm::records::history(&db, kind, v["lead_record"]["id"].as_i64().unwrap()).unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[0].change, "create");
    assert_eq!(trail[0].at, "2026-11-23T09:00:00+00:00");
    assert!(
        trail[0].why.contains("crm-steps step create_lead"),
        "{}",
        trail[0].why
    );
    assert_eq!(
        trail[1].before,
        Some(json!({"status": "new", "customer_id": null}))
    );
    assert_eq!(
        trail[1].after,
        Some(json!({"status": "converted", "customer_id": customer}))
    );
    assert!(trail[1].why.contains("step convert"));

    // The same person again, written differently: found, and merged as a follow-up.
    let again = json!({"name": "Lei Li", "email": "li.lei@acme.example", "owner": "sally"});
    let second = c
        .engine
        .start("crm-steps", None, None, vars(json!({ "lead": again })))
        .await
        .unwrap();
    let v2 = second.variables();
    assert_eq!(v2["duplicate"]["id"], customer);
    assert_eq!(
        v2["duplicate"]["owner"], "sam",
        "another owner's customer is found"
    );
    assert_eq!(v2["duplicate"]["matched_on"], "email");
    let followups: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM crm_followups WHERE customer_id = ?1",
            params![customer],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(followups, 1);
    let actor: Option<String> = db
        .query_row(
            "SELECT actor FROM crm_audit WHERE record = 'followup' ORDER BY seq DESC LIMIT 1",
            params![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(actor.as_deref(), Some("intake"));
}

#[tokio::test]
async fn a_phone_or_company_written_differently_is_the_same_customer() {
    let c = crm();
    c.engine.deploy("steps.yaml", FLOW).await.unwrap();
    let lead: Value = serde_json::from_str(LEAD).unwrap();
    c.engine
        .start("crm-steps", None, None, vars(json!({ "lead": lead })))
        .await
        .unwrap();
    for (probe, on) in [
        (json!({"name": "x", "phone": "0086 13800138000"}), "phone"),
        (json!({"name": "x", "company": "ACME co ltd"}), "company"),
    ] {
        let i = c
            .engine
            .start("crm-steps", None, None, vars(json!({ "lead": probe })))
            .await
            .unwrap();
        assert_eq!(i.variables()["duplicate"]["matched_on"], on, "{probe}");
    }
}

#[tokio::test]
async fn a_bad_field_stops_the_step_with_an_incident_that_names_it_and_stores_nothing() {
    let c = crm();
    c.engine.deploy("steps.yaml", FLOW).await.unwrap();
    for (lead, says) in [
        (
            json!({"name": "x", "colour": "red"}),
            "`colour` is not a field of lead",
        ),
        (
            json!({"name": "x", "region": "mars"}),
            "lead.region must be one of east",
        ),
        (json!({"company": "nameless"}), "a lead needs `name`"),
    ] {
        let i = c
            .engine
            .start("crm-steps", None, None, vars(json!({ "lead": lead })))
            .await
            .unwrap();
        assert_eq!(i.active_nodes(), ["create_lead"], "{lead}");
        let open = c.engine.instance_incidents(&i.id).await.unwrap();
        assert!(open[0].message.contains(says), "{}", open[0].message);
    }
    let db = Conn::open_shared(&c.db).unwrap();
    let leads: i64 = db
        .query_row("SELECT COUNT(*) FROM crm_leads", params![], |r| r.get(0))
        .unwrap();
    assert_eq!(leads, 0);
}

#[test]
fn every_reference_names_a_record_kind() {
    use ordo_crm::records::{KINDS, Ty, kind};
    for k in KINDS {
        for f in k.fields {
            if let Ty::Ref(target) = f.ty {
                assert!(kind(target).is_ok(), "{}.{} → {target}", k.name, f.name);
            }
        }
    }
}

#[test]
fn keys_compare_what_people_write_differently() {
    use ordo_crm::records::{company_key, email_key, phone_key};
    assert_eq!(phone_key("+86 138-0013-8000"), phone_key("13800138000"));
    assert_eq!(phone_key("12"), None, "too short to mean anything");
    assert_eq!(
        email_key(" Ann@Example.COM "),
        Some("ann@example.com".into())
    );
    assert_eq!(email_key("not an address"), None);
    assert_eq!(company_key("Acme Co., Ltd."), Some("acme".into()));
    assert_eq!(company_key("Ltd."), None);
}
