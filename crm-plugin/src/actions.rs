//! The actions CRM processes call (`action: crm.…` on a service task). Each runs
//! inline, in the transaction of the step that calls it: the records it writes,
//! their audit entries and the step's progress commit together, or not at all.
//! A refused input (an unknown field, a missing record) is an `Err` with a clear
//! message, which the engine turns into an incident on the step.

use crate::records::{self, Why};
use ordo_engine::engine::{ActionCall, InlineAction};
use ordo_engine::store::{self, Sql, SqlExt, params};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Every action of the plugin, by the name processes call it.
pub fn all() -> Vec<(String, Arc<dyn InlineAction>)> {
    let list: [(&str, Arc<dyn InlineAction>); 13] = [
        ("crm.create_record", Arc::new(CreateRecord)),
        ("crm.update_record", Arc::new(UpdateRecord)),
        ("crm.find_duplicate", Arc::new(FindDuplicate)),
        ("crm.convert_lead", Arc::new(ConvertLead)),
        ("crm.record_payment", Arc::new(RecordPayment)),
        ("crm.assign", Arc::new(Assign)),
        ("crm.notify", Arc::new(Notify)),
        ("crm.approvers", Arc::new(Approvers)),
        ("crm.move_to_pool", Arc::new(MoveToPool)),
        ("crm.claim_from_pool", Arc::new(ClaimFromPool)),
        ("crm.reclaim_stale", Arc::new(ReclaimStale)),
        ("crm.release_salesperson", Arc::new(ReleaseSalesperson)),
        ("crm.plan_receivables", Arc::new(PlanReceivables)),
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
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
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
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
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
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let input = match &call.input["of"] {
            Value::Object(_) => &call.input["of"],
            _ => call.input,
        };
        Ok(find_duplicate(tx, input)?.unwrap_or(Value::Null))
    }
}

/// The customer (or open lead) with the same e-mail, phone or company as
/// `input` (whichever it has), wherever it is: see [`FindDuplicate`].
pub fn find_duplicate(tx: &dyn Sql, input: &Value) -> Result<Option<Value>, String> {
    {
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
                .query_opt(&sql, params![key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(|e| e.to_string())?;
            if let Some((id, owner, in_pool)) = found {
                return Ok(Some(json!({
                    "record": "customer", "id": id, "owner": owner,
                    "in_pool": in_pool, "matched_on": on,
                })));
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
                .query_opt(&sql, params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| e.to_string())?;
            if let Some((id, owner)) = found {
                return Ok(Some(json!({
                    "record": "lead", "id": id, "owner": owner,
                    "in_pool": false, "matched_on": on,
                })));
            }
        }
        Ok(None)
    }
}

/// `crm.convert_lead {lead, opportunity?: {name?, amount?}}` → `{customer,
/// contact, opportunity}`: the lead's person becomes a customer (owned by the
/// lead's owner) with a contact, and an opportunity is opened; the lead is
/// marked converted and linked to the customer.
#[derive(Debug)]
pub struct ConvertLead;

impl InlineAction for ConvertLead {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
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
        // 0 (or nothing) is an amount not known yet.
        if let Some(amount) = wanted
            .get("amount")
            .filter(|a| a.as_f64().is_some_and(|x| x > 0.0))
        {
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
            // Always a new customer: a lead matching an existing one is merged
            // into it before it gets here.
            "customer_is_new": true,
        }))
    }
}

/// Whether a receivable plan is paid: derived from its payments, never stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
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
pub fn payment_state(tx: &dyn Sql, plan: i64) -> Result<PaymentState, String> {
    let (total, paid): (Option<i64>, i64) = tx
        .query_opt(
            "SELECT p.total_cents, (SELECT COALESCE(SUM(amount_cents), 0) FROM crm_payments WHERE plan_id = p.id)
             FROM crm_receivable_plans p WHERE p.id = ?1", params![plan],
            |r| Ok((r.get(0)?, r.get(1)?)))
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

/// `crm.record_payment {plan, payment: {amount, method, paid_at?, handler,
/// reference?}}` (a reference already recorded for the plan records nothing
/// again: `duplicate: true`) (or
/// the payment's fields at the top level) → the payment's id and the plan's
/// payment state after it.
#[derive(Debug)]
pub struct RecordPayment;

impl InlineAction for RecordPayment {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let plan = id(call.input, "plan")?;
        let source = match &call.input["payment"] {
            Value::Object(m) => m.clone(),
            _ => call.input.as_object().cloned().unwrap_or_default(),
        };
        let mut payment: Map<String, Value> = source
            .into_iter()
            .filter(|(k, _)| {
                [
                    "amount",
                    "method",
                    "paid_at",
                    "handler",
                    "owner",
                    "reference",
                ]
                .contains(&k.as_str())
            })
            .collect();
        payment.insert("plan_id".into(), json!(plan));
        payment
            .entry("paid_at")
            .or_insert_with(|| json!(call.now.to_rfc3339()));
        let kind = records::kind("payment").map_err(err)?;
        let before = payment_state(tx, plan)?;
        // The same payment reported twice (a retry under a new message id) is
        // recorded once: its reference is its identity within the plan.
        if let Some(reference) = payment.get("reference").and_then(Value::as_str) {
            let seen: Option<i64> = tx
                .query_opt(
                    "SELECT id FROM crm_payments WHERE plan_id = ?1 AND reference = ?2",
                    params![plan, reference],
                    |r| r.get(0),
                )
                .map_err(|e| e.to_string())?;
            if let Some(existing) = seen {
                return Ok(json!({
                    "payment": existing, "duplicate": true, "paid": before.paid,
                    "total": before.total, "outstanding": before.outstanding,
                    "state": before.state,
                }));
            }
        }
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

/// The record a `{record: kind, id}` input names.
fn subject(
    tx: &dyn Sql,
    input: &Value,
) -> Result<(&'static records::Kind, i64, Map<String, Value>), String> {
    let kind = records::kind(text(input, "record")?).map_err(err)?;
    let record = id(input, "id")?;
    let fields = records::get(tx, kind, record)
        .map_err(err)?
        .ok_or_else(|| format!("there is no {} {record}", kind.name))?;
    Ok((kind, record, fields))
}

fn names(v: &Value, key: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => Ok(items
            .iter()
            .filter_map(|i| i.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect()),
        other => Err(format!(
            "`{key}` must be a name or a list of names, not {other}"
        )),
    }
}

/// `crm.assign {record, id, strategy, fallback?, group?, exclude?}` → `{owner,
/// supervisor, strategy, reason}`. See [`crate::assign`] for the strategies.
#[derive(Debug)]
pub struct Assign;

impl InlineAction for Assign {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let (kind, record, fields) = subject(tx, call.input)?;
        let first = crate::assign::strategy(text(call.input, "strategy")?)?;
        let fallback = match call.input["fallback"].as_str() {
            Some(name) => Some(crate::assign::strategy(name)?),
            None => None,
        };
        let exclude = names(&call.input["exclude"], "exclude")?;
        let subject = crate::assign::Subject {
            kind,
            id: record,
            fields,
        };
        let seed = crate::assign::seed(&[
            call.instance,
            &call.activity.to_string(),
            &record.to_string(),
        ]);
        let cx = crate::assign::Context {
            tx,
            group: call.input["group"].as_str(),
            exclude: &exclude,
            subject: &subject,
            now: call.now,
            seed,
        };
        let done = crate::assign::assign(&cx, first, fallback, &why(call), Some(call.instance))?;
        serde_json::to_value(done).map_err(|e| e.to_string())
    }
}

/// The people `input` names, in order and once each: `to` (names), `to_group`
/// (its active members), `supervisor_of` (each one's nearest supervisor who
/// has not left), then `otherwise_group` when none of those resolved anyone.
/// People who left, and those in `exclude`, are dropped. Notifications and
/// approvals resolve their people by this same function ([`resolve`]).
fn people(tx: &dyn Sql, input: &Value) -> Result<Vec<String>, String> {
    Ok(resolve(tx, input, false)?.people)
}

/// `crm.approvers {to?, to_group?, supervisor_of?, otherwise_group?, exclude?}`
/// → `{first, people, excluded, skipped, reason}`: who approves a step — named
/// people, a group (a role), someone's supervisor (the owner's, or the previous
/// approver's from a task's `completed_by`) — resolved like notification
/// recipients, under the four-eyes rule: nobody in `exclude` (the owner or
/// requester of what is approved, and whoever already approved it in the same
/// chain) is ever chosen. An excluded supervisor is passed over for the next
/// one up, an excluded member for the other members; when nobody is left, the
/// people with the admin role decide. `skipped` says who was passed over and
/// why, `reason` how the approvers were found; `excluded` is what the approval
/// task's `exclude` takes, so its candidate groups obey the same rule. `people`
/// is the list for a countersign (`multi` over it); `first` the one approver of
/// a single step. Nobody at all (every admin excluded) is an incident.
#[derive(Debug)]
pub struct Approvers;

impl InlineAction for Approvers {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let found = resolve(tx, call.input, true)?;
        if found.people.is_empty() {
            return Err(format!(
                "nobody may approve this: {}; give the step an approver who is not {}",
                found.reason,
                found.excluded.join(", ")
            ));
        }
        Ok(json!({
            "first": found.people.first(),
            "people": found.people,
            "excluded": found.excluded,
            "skipped": found.skipped,
            "reason": found.reason,
        }))
    }
}

/// Who approves, and how they were found.
#[derive(Debug, Default)]
struct Found {
    people: Vec<String>,
    excluded: Vec<String>,
    skipped: Vec<Value>,
    reason: String,
}

/// Resolves the people `input` names (see [`people`]); with `admins_decide`,
/// the admins when nobody else is left.
fn resolve(tx: &dyn Sql, input: &Value, admins_decide: bool) -> Result<Found, String> {
    let db = |e: store::Error| e.to_string();
    let mut f = Found::default();
    for person in names(&input["exclude"], "exclude")? {
        if !f.excluded.contains(&person) {
            f.excluded.push(person);
        }
    }
    let mut out: Vec<String> = Vec::new();
    /// Takes `person` unless excluded or gone (then says why they were skipped).
    fn take(
        tx: &dyn Sql,
        f: &mut Found,
        out: &mut Vec<String>,
        person: String,
    ) -> Result<bool, String> {
        let why = if f.excluded.contains(&person) {
            Some("requested or already approved this (four-eyes rule)")
        } else if crate::org::has_left(tx, &person).map_err(|e| e.to_string())? {
            Some("has left")
        } else {
            None
        };
        if let Some(why) = why {
            if !f.skipped.iter().any(|s| s["person"] == person.as_str()) {
                f.skipped.push(json!({"person": person, "why": why}));
            }
            return Ok(false);
        }
        if !out.contains(&person) {
            out.push(person);
        }
        Ok(true)
    }
    let mut how = Vec::new();
    for person in names(&input["to"], "to")? {
        take(tx, &mut f, &mut out, person)?;
        how.push("named");
    }
    if let Some(group) = input["to_group"].as_str() {
        for person in crate::org::active_members(tx, group).map_err(db)? {
            take(tx, &mut f, &mut out, person)?;
        }
        how.push("the group");
    }
    for person in names(&input["supervisor_of"], "supervisor_of")? {
        // Up the reporting line until someone may approve.
        let mut at = person.clone();
        for _ in 0..32 {
            match crate::org::nearest_supervisor(tx, &at).map_err(db)? {
                Some(s) if s != person => {
                    if take(tx, &mut f, &mut out, s.clone())? {
                        break;
                    }
                    at = s;
                }
                _ => break,
            }
        }
        how.push("the reporting line");
    }
    if out.is_empty()
        && let Some(group) = input["otherwise_group"].as_str()
    {
        for person in crate::org::active_members(tx, group).map_err(db)? {
            take(tx, &mut f, &mut out, person)?;
        }
        how.push("the fallback group");
    }
    if out.is_empty() && admins_decide {
        for person in crate::org::with_role(tx, "admin").map_err(db)? {
            take(tx, &mut f, &mut out, person)?;
        }
        f.reason = "nobody else in line may approve it, so the admins decide".into();
    } else if !how.is_empty() {
        how.dedup();
        f.reason = format!("from {}", how.join(", then "));
    }
    f.people = out;
    Ok(f)
}

/// `crm.notify {template, to?, to_group?, supervisor_of?, otherwise_group?,
/// record?, id?, event?, …}`: tells each recipient (names; `null`s skipped;
/// `otherwise_group` when nobody else resolves) in the app, by e-mail when
/// the CRM knows their address, and the webhooks subscribed to the template.
/// Every other key is available to the template. → `{inbox, emails, webhooks}`.
#[derive(Debug)]
pub struct Notify;

impl InlineAction for Notify {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let template = text(call.input, "template")?;
        let to = people(tx, call.input)?;
        let about = match (&call.input["record"], &call.input["id"]) {
            (Value::String(k), Value::Number(n)) => {
                let id = n.as_i64().ok_or("`id` must be a record id")?;
                Some((records::kind(k).map_err(err)?, id))
            }
            (Value::Null, _) => None,
            _ => return Err("`record` names a kind of record (quote) and `id` its id".into()),
        };
        let reserved = [
            "template",
            "to",
            "to_group",
            "supervisor_of",
            "otherwise_group",
            "record",
            "id",
            "event",
            "by",
        ];
        let data: Map<String, Value> = call
            .input
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !reserved.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut data = data;
        data.insert("process".into(), json!(call.process));
        data.insert("instance".into(), json!(call.instance));
        data.insert("step".into(), json!(call.node));
        let event = call.input["event"].as_str().map_or_else(
            || format!("{}:{}", call.instance, call.activity),
            str::to_owned,
        );
        let sent = crate::notify::notify(
            tx,
            &crate::notify::Notice {
                template,
                event,
                to,
                about,
                data,
            },
            &why(call),
        )
        .map_err(|e| e.to_string())?;
        serde_json::to_value(sent).map_err(|e| e.to_string())
    }
}

/// `crm.move_to_pool {record: customer|lead, id, reason}` → the record.
#[derive(Debug)]
pub struct MoveToPool;

impl InlineAction for MoveToPool {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let reason = call.input["reason"].as_str().unwrap_or("given up");
        let record = crate::pool::move_to_pool(
            tx,
            text(call.input, "record")?,
            id(call.input, "id")?,
            reason,
            &why(call),
        )?;
        Ok(Value::Object(record))
    }
}

/// `crm.claim_from_pool {record, id, by}` → the record, now `by`'s; refused
/// (an incident) past the pool's limits.
#[derive(Debug)]
pub struct ClaimFromPool;

impl InlineAction for ClaimFromPool {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let person = text(call.input, "by")?;
        let record = crate::pool::claim(
            tx,
            text(call.input, "record")?,
            id(call.input, "id")?,
            person,
            &why(call),
        )
        .map_err(|e| e.to_string())?;
        Ok(Value::Object(record))
    }
}

/// `crm.reclaim_stale {}` → `{moved, reminded}`: the periodic pass that returns
/// customers nobody followed up to the pool (a cron process calls it).
#[derive(Debug)]
pub struct ReclaimStale;

impl InlineAction for ReclaimStale {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let done = crate::pool::reclaim_stale(tx, &why(call))?;
        serde_json::to_value(done).map_err(|e| e.to_string())
    }
}

/// `crm.release_salesperson {person}` → `{moved: [[kind, id]…]}`: a salesperson
/// leaves; they get no more assignments and their records go to the pool.
#[derive(Debug)]
pub struct ReleaseSalesperson;

impl InlineAction for ReleaseSalesperson {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let moved = crate::pool::release(tx, text(call.input, "person")?, &why(call))?;
        Ok(json!({ "moved": moved }))
    }
}

/// `crm.plan_receivables {contract, instalments, first_due?, every_days?}` → the
/// plan with its instalments: the contract's amount split in exact cents (the
/// first instalment takes the odd cents), due every 30 days from `first_due`
/// (default: 30 days from now).
#[derive(Debug)]
pub struct PlanReceivables;

impl InlineAction for PlanReceivables {
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> Result<Value, String> {
        let contract_kind = records::kind("contract").map_err(err)?;
        let contract_id = id(call.input, "contract")?;
        let contract = records::get(tx, contract_kind, contract_id)
            .map_err(err)?
            .ok_or_else(|| format!("there is no contract {contract_id}"))?;
        let count = call.input["instalments"].as_i64().unwrap_or(1);
        if !(1..=120).contains(&count) {
            return Err(format!("`instalments` must be 1 to 120, not {count}"));
        }
        let every = call.input["every_days"]
            .as_i64()
            .unwrap_or(30)
            .clamp(1, 366);
        let first_due = match call.input["first_due"].as_str() {
            Some(s) => chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                .map_err(|_| format!("`first_due` must be a date (2026-12-31), not {s}"))?,
            None => (call.now + chrono::Duration::days(every)).date_naive(),
        };
        let total_cents: i64 = tx
            .query_row(
                "SELECT amount_cents FROM crm_contracts WHERE id = ?1",
                params![contract_id],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())?;
        let why = why(call);
        let mut plan = Map::new();
        plan.insert("contract_id".into(), json!(contract_id));
        plan.insert("customer_id".into(), contract["customer_id"].clone());
        plan.insert("total".into(), contract["amount"].clone());
        plan.insert("instalments".into(), json!(count));
        plan.insert("owner".into(), contract["owner"].clone());
        let plan_id = records::create(
            tx,
            records::kind("receivable_plan").map_err(err)?,
            &plan,
            &why,
        )
        .map_err(err)?;
        let part = total_cents / count;
        let odd = total_cents - part * count;
        let instalment = records::kind("instalment").map_err(err)?;
        let mut due_dates = Vec::new();
        for i in 0..count {
            let cents = part + if i == 0 { odd } else { 0 };
            let due = first_due + chrono::Duration::days(every * i);
            let mut f = Map::new();
            f.insert("plan_id".into(), json!(plan_id));
            f.insert("due_date".into(), json!(due.to_string()));
            #[allow(clippy::cast_precision_loss)]
            f.insert("amount".into(), json!(cents as f64 / 100.0));
            f.insert("owner".into(), contract["owner"].clone());
            records::create(tx, instalment, &f, &why).map_err(err)?;
            due_dates.push(due.to_string());
        }
        let mut out = records::get(tx, records::kind("receivable_plan").map_err(err)?, plan_id)
            .map_err(err)?
            .unwrap_or_default();
        out.insert("due_dates".into(), json!(due_dates));
        Ok(Value::Object(out))
    }
}
