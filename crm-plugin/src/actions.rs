//! The actions CRM processes call (`action: crm.…` on a service task). Each runs
//! inline, in the transaction of the step that calls it: the records it writes,
//! their audit entries and the step's progress commit together, or not at all.
//! A refused input (an unknown field, a missing record) is an `Err` with a clear
//! message, which the engine turns into an incident on the step.

use crate::records::{self, Why};
use ordo_engine::engine::{ActionCall, InlineAction};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Every action of the plugin, by the name processes call it.
pub fn all() -> Vec<(String, Arc<dyn InlineAction>)> {
    let list: [(&str, Arc<dyn InlineAction>); 5] = [
        ("crm.create_record", Arc::new(CreateRecord)),
        ("crm.update_record", Arc::new(UpdateRecord)),
        ("crm.find_duplicate", Arc::new(FindDuplicate)),
        ("crm.convert_lead", Arc::new(ConvertLead)),
        ("crm.record_payment", Arc::new(RecordPayment)),
    ];
    list.into_iter().map(|(n, a)| (n.to_owned(), a)).collect()
}

fn why(call: &ActionCall<'_>) -> Why {
    Why {
        actor: call.input["by"].as_str().map(str::to_owned),
        reason: format!(
            "process {} step {} (instance {})",
            call.process, call.node, call.instance
        ),
        at: call.now,
    }
}

fn text<'a>(input: &'a Value, key: &str) -> Result<&'a str, String> {
    input[key]
        .as_str()
        .ok_or_else(|| format!("`{key}` is missing or not text"))
}

fn id(input: &Value, key: &str) -> Result<i64, String> {
    input[key]
        .as_i64()
        .ok_or_else(|| format!("`{key}` is missing or not a record id"))
}

fn object<'a>(input: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    input[key]
        .as_object()
        .ok_or_else(|| format!("`{key}` must be a map of fields"))
}

fn err(e: records::Error) -> String {
    e.to_string()
}

/// `crm.create_record {record, fields}` → the record, with its `id`.
#[derive(Debug)]
pub struct CreateRecord;

impl InlineAction for CreateRecord {
    fn call(&self, tx: &Connection, call: &ActionCall<'_>) -> Result<Value, String> {
        let kind = records::kind(text(call.input, "record")?).map_err(err)?;
        let fields = object(call.input, "fields")?;
        let new = records::create(tx, kind, fields, &why(call)).map_err(err)?;
        Ok(Value::Object(
            records::get(tx, kind, new)
                .map_err(err)?
                .unwrap_or_default(),
        ))
    }
}

/// `crm.update_record {record, id, changes?, append_followup?}` → the record as
/// it is now. `append_followup` (a customer only) files what it is given as a
/// follow-up log entry: how a duplicate lead is merged into the customer it
/// duplicates.
#[derive(Debug)]
pub struct UpdateRecord;

impl InlineAction for UpdateRecord {
    fn call(&self, tx: &Connection, call: &ActionCall<'_>) -> Result<Value, String> {
        let kind = records::kind(text(call.input, "record")?).map_err(err)?;
        let record = id(call.input, "id")?;
        let why = why(call);
        let empty = Map::new();
        let changes = match &call.input["changes"] {
            Value::Null => &empty,
            _ => object(call.input, "changes")?,
        };
        let mut now = records::update(tx, kind, record, changes, &why).map_err(err)?;
        let note = &call.input["append_followup"];
        if !note.is_null() {
            if kind.name != "customer" {
                return Err(format!(
                    "`append_followup` files a follow-up on a customer, not on a {}",
                    kind.name
                ));
            }
            let followup = json!({
                "customer_id": record,
                "subject": "Another lead for this customer",
                "content": note.to_string(),
                "at": call.now.to_rfc3339(),
                "owner": now.get("owner").cloned().unwrap_or(Value::Null),
            });
            let f = records::kind("followup").map_err(err)?;
            let fid = records::create(tx, f, followup.as_object().unwrap_or(&empty), &why)
                .map_err(err)?;
            now.insert("followup_id".into(), json!(fid));
        }
        Ok(Value::Object(now))
    }
}

/// `crm.find_duplicate {phone?, email?, company?}`, or `{of: <a lead or
/// customer>}` to take them from a record whose fields may be absent → the
/// customer (or open lead) the same person or company already is, or `null`.
///
/// Matches by e-mail first, then phone, then company, on normalised keys
/// (`records::email_key` …): `Ann@Example.com ` is `ann@example.com`,
/// `+86 138-0013-8000` is `13800138000`, `Acme Co., Ltd.` is `acme`. Customers in
/// the public pool and customers of other owners are found too: finding them is
/// the point. The result says where it matched, whose it is and whether it sits
/// in the pool.
#[derive(Debug)]
pub struct FindDuplicate;

impl InlineAction for FindDuplicate {
    fn call(&self, tx: &Connection, call: &ActionCall<'_>) -> Result<Value, String> {
        let input = match &call.input["of"] {
            Value::Object(_) => &call.input["of"],
            _ => call.input,
        };
        let probes = [
            (
                "email",
                input["email"].as_str().and_then(records::email_key),
            ),
            (
                "phone",
                input["phone"].as_str().and_then(records::phone_key),
            ),
            (
                "company",
                input["company"].as_str().and_then(records::company_key),
            ),
        ];
        for (on, key) in &probes {
            let Some(key) = key else { continue };
            let sql = format!(
                "SELECT id, owner, in_pool FROM crm_customers WHERE {on}_key = ?1 ORDER BY id LIMIT 1"
            );
            let found: Option<(i64, Option<String>, bool)> = tx
                .query_row(&sql, [key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(|e| e.to_string())?;
            if let Some((id, owner, in_pool)) = found {
                return Ok(json!({
                    "record": "customer", "id": id, "owner": owner,
                    "in_pool": in_pool, "matched_on": on,
                }));
            }
        }
        // A lead not converted yet, still being worked.
        for (on, key) in &probes {
            let Some(key) = key else { continue };
            let sql = format!(
                "SELECT id, owner FROM crm_leads WHERE {on}_key = ?1
                 AND status IN ('new', 'assigned', 'in_process') ORDER BY id LIMIT 1"
            );
            let found: Option<(i64, Option<String>)> = tx
                .query_row(&sql, [key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(|e| e.to_string())?;
            if let Some((id, owner)) = found {
                return Ok(json!({
                    "record": "lead", "id": id, "owner": owner,
                    "in_pool": false, "matched_on": on,
                }));
            }
        }
        Ok(Value::Null)
    }
}

/// `crm.convert_lead {lead, opportunity?: {name?, amount?}}` → `{customer,
/// contact, opportunity}`: the lead's person becomes a customer (owned by the
/// lead's owner) with a contact, and an opportunity is opened; the lead is
/// marked converted and linked to the customer.
#[derive(Debug)]
pub struct ConvertLead;

impl InlineAction for ConvertLead {
    fn call(&self, tx: &Connection, call: &ActionCall<'_>) -> Result<Value, String> {
        let lead_kind = records::kind("lead").map_err(err)?;
        let lead_id = id(call.input, "lead")?;
        let lead = records::get(tx, lead_kind, lead_id)
            .map_err(err)?
            .ok_or_else(|| format!("there is no lead {lead_id}"))?;
        if lead["status"] == "converted" {
            return Err(format!(
                "lead {lead_id} is already converted (customer {})",
                lead["customer_id"]
            ));
        }
        let why = why(call);
        let copy = |keys: &[&str]| -> Map<String, Value> {
            keys.iter()
                .filter_map(|k| {
                    let v = lead.get(*k)?;
                    (!v.is_null()).then(|| ((*k).to_owned(), v.clone()))
                })
                .collect()
        };
        let mut customer = copy(&[
            "name", "company", "title", "phone", "email", "region", "industry", "source", "grade",
            "owner",
        ]);
        customer.insert("type".into(), json!("intention"));
        let customer_id =
            records::create(tx, records::kind("customer").map_err(err)?, &customer, &why)
                .map_err(err)?;
        let mut contact = copy(&["name", "title", "phone", "email", "owner"]);
        contact.insert("customer_id".into(), json!(customer_id));
        let contact_id =
            records::create(tx, records::kind("contact").map_err(err)?, &contact, &why)
                .map_err(err)?;
        let wanted = &call.input["opportunity"];
        let name = wanted["name"].as_str().map_or_else(
            || {
                let who = lead["company"].as_str().or(lead["name"].as_str());
                format!("{} — first deal", who.unwrap_or("New customer"))
            },
            str::to_owned,
        );
        let mut opportunity = copy(&["owner"]);
        opportunity.insert("customer_id".into(), json!(customer_id));
        opportunity.insert("lead_id".into(), json!(lead_id));
        opportunity.insert("name".into(), json!(name));
        if let Some(amount) = wanted.get("amount").filter(|a| !a.is_null()) {
            opportunity.insert("amount".into(), amount.clone());
        }
        let opportunity_id = records::create(
            tx,
            records::kind("opportunity").map_err(err)?,
            &opportunity,
            &why,
        )
        .map_err(err)?;
        let mut done = Map::new();
        done.insert("status".into(), json!("converted"));
        done.insert("customer_id".into(), json!(customer_id));
        records::update(tx, lead_kind, lead_id, &done, &why).map_err(err)?;
        Ok(json!({
            "customer": customer_id, "contact": contact_id, "opportunity": opportunity_id,
        }))
    }
}

/// Whether a receivable plan is paid: derived from its payments, never stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PaymentState {
    /// Paid so far (currency units).
    pub paid: f64,
    /// The plan's total.
    pub total: f64,
    /// What is still owed (0 when paid, or overpaid).
    pub outstanding: f64,
    /// `unpaid`, `partial` or `paid`.
    pub state: &'static str,
}

/// The payment state of a plan.
pub fn payment_state(tx: &Connection, plan: i64) -> Result<PaymentState, String> {
    let (total, paid): (Option<i64>, i64) = tx
        .query_row(
            "SELECT p.total_cents, (SELECT COALESCE(SUM(amount_cents), 0) FROM crm_payments WHERE plan_id = p.id)
             FROM crm_receivable_plans p WHERE p.id = ?1",
            [plan],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| e.to_string())?
        .unwrap_or((None, 0));
    let total = total.ok_or_else(|| format!("there is no receivable plan {plan}"))?;
    let state = match paid {
        0 => "unpaid",
        p if p < total => "partial",
        _ => "paid",
    };
    #[allow(clippy::cast_precision_loss)]
    let units = |c: i64| c as f64 / 100.0;
    Ok(PaymentState {
        paid: units(paid),
        total: units(total),
        outstanding: units((total - paid).max(0)),
        state,
    })
}

/// `crm.record_payment {plan, payment: {amount, method, paid_at?, handler}}` (or
/// the payment's fields at the top level) → the payment's id and the plan's
/// payment state after it.
#[derive(Debug)]
pub struct RecordPayment;

impl InlineAction for RecordPayment {
    fn call(&self, tx: &Connection, call: &ActionCall<'_>) -> Result<Value, String> {
        let plan = id(call.input, "plan")?;
        let source = match &call.input["payment"] {
            Value::Object(m) => m.clone(),
            _ => call.input.as_object().cloned().unwrap_or_default(),
        };
        let mut payment: Map<String, Value> = source
            .into_iter()
            .filter(|(k, _)| {
                ["amount", "method", "paid_at", "handler", "owner"].contains(&k.as_str())
            })
            .collect();
        payment.insert("plan_id".into(), json!(plan));
        payment
            .entry("paid_at")
            .or_insert_with(|| json!(call.now.to_rfc3339()));
        let kind = records::kind("payment").map_err(err)?;
        let before = payment_state(tx, plan)?;
        if before.state == "paid" {
            return Err(format!(
                "receivable plan {plan} is already paid ({} of {})",
                before.paid, before.total
            ));
        }
        let new = records::create(tx, kind, &payment, &why(call)).map_err(err)?;
        let after = payment_state(tx, plan)?;
        Ok(json!({
            "payment": new, "paid": after.paid, "total": after.total,
            "outstanding": after.outstanding, "state": after.state,
        }))
    }
}
