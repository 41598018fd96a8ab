//! The CRM end to end, through HTTP only, against the real server on a loopback
//! port with the CRM plugin, a real SQLite file, and a real SMTP server that
//! `.ci/run` starts (aiosmtpd writing a maildir):
//!
//! a lead message arrives → assigned round robin → the assignee's e-mail is read
//! back from the SMTP server → qualified → opportunity → quote with a discount
//! above policy → market manager and finance approve → new customer approved →
//! custom order → order review → contract approved → two partial payments →
//! paid → owner and supervisor notified; then a second lead misses its contact
//! deadline twice on the manual clock → reminder, escalation, reassignment,
//! pool → claimed from the pool; and each role sees only what it may.
//!
//! Needs `ORDO_TEST_SMTP` (host:port) and `ORDO_TEST_MAILDIR` (the maildir the
//! server writes). Start one with
//! `python3 -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox /tmp/ordo-mail`
//! (Debian: `apt-get install python3-aiosmtpd`). `ORDO_SKIP_SMTP=1` skips the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use chrono::TimeZone;
use ordo_engine::runtime::{Clock, ManualClock};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../server/tests/support/contract.rs"]
mod contract;

/// Every answer of the server is checked against its OpenAPI document (the one
/// `ordo openapi` prints and `server/openapi.json` holds), CRM routes included.
static CONTRACT: std::sync::LazyLock<contract::Contract> = std::sync::LazyLock::new(|| {
    let plugins: Vec<Arc<dyn ordo_server::Plugin>> = vec![Arc::new(ordo_crm::CrmPlugin::new(None))];
    contract::Contract::new(ordo_server::openapi::document(&plugins))
});

struct Env {
    base: String,
    tokens: std::collections::HashMap<String, String>,
    clock: Arc<ManualClock>,
    maildir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.rt.block_on(async { tokio::task::yield_now().await });
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

impl Env {
    fn token(&self, who: &str) -> String {
        format!("Bearer {}", self.tokens[who])
    }

    /// `METHOD path` as `who`, with a JSON body; returns (status, JSON).
    fn call(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let a = agent();
        let response = match (method, body) {
            ("GET", _) => a.get(&url).header("Authorization", &self.token(who)).call(),
            (_, Some(b)) => a
                .post(&url)
                .header("Authorization", &self.token(who))
                .send_json(b),
            (_, None) => a
                .post(&url)
                .header("Authorization", &self.token(who))
                .send_empty(),
        };
        let mut r = response.unwrap_or_else(|e| unreachable!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        CONTRACT.check(method, path, status, &v);
        (status, v)
    }

    fn post_text(&self, who: &str, path: &str, body: &str) -> (u16, Value, Option<String>) {
        let url = format!("{}{path}", self.base);
        let mut r = agent()
            .post(&url)
            .header("Authorization", &self.token(who))
            .header("Content-Type", "text/csv")
            .send(body)
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let status = r.status().as_u16();
        let v = r.body_mut().read_json().unwrap_or(Value::Null);
        CONTRACT.check("POST", path, status, &v);
        (status, v, location)
    }

    fn put(&self, who: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut r = agent()
            .put(&url)
            .header("Authorization", &self.token(who))
            .send_json(body)
            .unwrap();
        let status = r.status().as_u16();
        let v = r.body_mut().read_json().unwrap_or(Value::Null);
        CONTRACT.check("PUT", path, status, &v);
        (status, v)
    }

    fn get(&self, who: &str, path: &str) -> Value {
        let (status, v) = self.call(who, "GET", path, None);
        assert_eq!(status, 200, "GET {path} as {who}: {v}");
        v
    }

    fn ok(&self, who: &str, path: &str, body: Value) -> Value {
        let (status, v) = self.call(who, "POST", path, Some(body));
        assert_eq!(status, 200, "POST {path} as {who}: {v}");
        v
    }

    /// The open task at `node` that `who` sees (their own or their groups').
    fn task(&self, who: &str, node: &str) -> (String, u64, bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for view in ["mine", "groups"] {
                let tasks = self.get(who, &format!("/api/tasks?view={view}"));
                if let Some(t) = tasks.as_array().unwrap().iter().find(|t| t["node"] == node) {
                    return (
                        t["instance_id"].as_str().unwrap().to_owned(),
                        t["activity"].as_u64().unwrap(),
                        t["assignee"].is_null(),
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{who} never saw a task at {node}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Claims (when it is a group task) and completes `who`'s task at `node`.
    fn complete(&self, who: &str, node: &str, variables: Value) -> Value {
        let (instance, activity, unassigned) = self.task(who, node);
        let path = format!("/api/tasks/{instance}/{activity}");
        if unassigned {
            let (status, v) = self.call(who, "POST", &format!("{path}/claim"), None);
            assert_eq!(status, 200, "claim {node} as {who}: {v}");
        }
        self.ok(
            who,
            &format!("{path}/complete"),
            json!({ "variables": variables }),
        )
    }

    /// Waits until `check` holds: the server's scheduler fires timers and
    /// delivers in the background, within a second of the clock moving.
    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn inbox(&self, who: &str) -> Vec<Value> {
        self.get(who, "/api/crm/inbox").as_array().unwrap().clone()
    }

    fn inbox_has(&self, who: &str, template: &str) -> bool {
        self.inbox(who).iter().any(|n| n["template"] == template)
    }

    fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// The mails the SMTP server received, as text.
    fn mails(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(dir) = std::fs::read_dir(self.maildir.join(sub)) {
                for f in dir.flatten() {
                    out.push(std::fs::read_to_string(f.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

/// A browser's session: the pages, as a browser posts and follows them.
struct Session<'a> {
    env: &'a Env,
    cookie: String,
}

impl Session<'_> {
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into()
    }

    fn sign_in<'a>(env: &'a Env, name: &str) -> Session<'a> {
        let r = Self::agent()
            .post(&format!("{}/sign-in", env.base))
            .send_form([("name", name), ("password", ordo_server::DEMO_PASSWORD)])
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "sign-in as {name}");
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Session { env, cookie }
    }

    /// (status, body, Location).
    fn get(&self, path: &str) -> (u16, String) {
        let mut r = Self::agent()
            .get(&format!("{}{path}", self.env.base))
            .header("Cookie", &self.cookie)
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut r = Self::agent()
            .post(&format!("{}{path}", self.env.base))
            .header("Cookie", &self.cookie)
            .header("Origin", &self.env.base)
            .send_form(form.iter().copied())
            .unwrap();
        let status = r.status().as_u16();
        let body = match r.headers().get("location") {
            Some(l) => l.to_str().unwrap().to_owned(),
            None => r.body_mut().read_to_string().unwrap(),
        };
        (status, body)
    }
}

/// The server on a fresh SQLite file, or on the PostgreSQL database `db`
/// names.
fn start(db: Option<&str>) -> Option<Env> {
    if std::env::var_os("ORDO_SKIP_SMTP").is_some() {
        return None;
    }
    let (Some(smtp), Some(maildir)) = (
        std::env::var("ORDO_TEST_SMTP").ok(),
        std::env::var("ORDO_TEST_MAILDIR").ok(),
    ) else {
        unreachable!(
            "this test needs a real SMTP server: run `python3 -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox /tmp/ordo-mail` \
             (Debian: apt-get install python3-aiosmtpd) and set ORDO_TEST_SMTP=127.0.0.1:2525 ORDO_TEST_MAILDIR=/tmp/ordo-mail; \
             or ORDO_SKIP_SMTP=1 to skip it"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let db = db.map_or_else(|| dir.path().join("ordo.db"), std::path::PathBuf::from);
    // Monday 09:00 UTC: working days are Monday to Friday on the default calendar.
    let clock = Arc::new(ManualClock::new(
        chrono::Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
    ));
    let plugin = ordo_crm::CrmPlugin::new(Some(
        ordo_crm::deliver::Smtp::parse(&smtp, "Ordo CRM <crm@ordo.test>").unwrap(),
    ));
    let config = ordo_server::ServeConfig {
        db,
        addr: "127.0.0.1:0".parse().unwrap(),
        deploy: vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("processes/crm")],
        backups: dir.path().join("backups"),
        plugins: vec![Arc::new(plugin)],
        clock: Some(clock.clone() as Arc<dyn Clock>),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(ordo_server::Server::open(&config)).unwrap();
    let tokens = ordo_server::seed_demo(server.directory())
        .unwrap()
        .into_iter()
        .collect();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(server.run(async {
        let _ = stopped.await;
    }));
    Some(Env {
        base: format!("http://{addr}"),
        tokens,
        clock,
        maildir: maildir.into(),
        stop: Some(stop),
        rt,
        _dir: dir,
    })
}

fn lead_message(email: &str, name: &str, company: &str, phone: &str) -> Value {
    json!({
        "name": "lead.received",
        "correlation_key": email,
        "message_id": format!("web-form-{email}"),
        "variables": { "lead": {
            "name": name, "company": company, "email": email, "region": "east",
            "phone": phone, "industry": "textiles", "source": "inbound",
        }},
    })
}

#[test]
fn a_lead_goes_to_cash_over_http_with_approvals_payments_and_notifications() {
    let Some(env) = start(None) else { return };
    lead_to_cash(&env, "sqlite");
}

/// The same, with the engine, the people directory and the CRM on one
/// PostgreSQL node (when `ORDO_TEST_PG` names a server).
#[test]
fn a_lead_goes_to_cash_on_postgresql() {
    let Some(server) = ordo_engine::store::testdb::postgres_url().unwrap() else {
        eprintln!("ORDO_TEST_PG is not set: the flow was not run on PostgreSQL");
        return;
    };
    let db = ordo_engine::store::testdb::ScratchDatabase::new(&server, "flow").unwrap();
    let Some(env) = start(Some(db.url())) else {
        return;
    };
    lead_to_cash(&env, "pg");
    drop(env);
}

/// The lead-to-cash flow over HTTP; `tag` keeps the e-mail addresses of two
/// runs at once apart.
fn lead_to_cash(env: &Env, tag: &str) {
    let run = format!("{}-{tag}", std::process::id());
    let sally_mail = format!("sally.{run}@sales.example");

    // The admin sets up the sales staff's e-mail; the rule table stays empty, so
    // assignment falls back to round robin in `sales` (sally, sam, sue).
    for (person, email) in [("sally", sally_mail.as_str()), ("sam", "sam@sales.example")] {
        let (status, v) = env.put(
            "ada",
            &format!("/api/crm/staff/{person}"),
            json!({"email": email}),
        );
        assert_eq!(status, 200, "{v}");
    }
    let (status, _) = env.put("sam", "/api/crm/staff/sam", json!({"email": "x@y.z"}));
    assert_eq!(status, 403, "only an admin sets staff facts");
    // A change of one fact keeps the others: sam stays reachable by e-mail.
    let (status, v) = env.put("ada", "/api/crm/staff/sam", json!({"weight": 2}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["email"], "sam@sales.example", "{v}");
    assert_eq!(v["weight"], 2, "{v}");
    let (status, v) = env.put("ada", "/api/crm/staff/nobody", json!({"active": false}));
    assert_eq!(status, 404, "{v}");
    for bad in [
        json!({"email": "sam@sales.example\r\nBcc: all@evil.example"}),
        json!({"email": "not-an-address"}),
        json!({"weight": -7}),
        json!({"daily_capacity": -1}),
    ] {
        let (status, v) = env.put("ada", "/api/crm/staff/sam", bad.clone());
        assert_eq!(status, 422, "{bad}: {v}");
    }

    // 0. A lead whose source is not one the CRM knows is refused at the door:
    // no instance, nothing buffered, and the integrator learns why at once.
    let email = format!("li.lei.{run}@donghai.example");
    let mut bad = lead_message(&email, "Li Lei", "Donghai Textiles", "+86 138 0000 0001");
    bad["variables"]["lead"]["source"] = json!("web");
    bad["variables"]["lead"]["email"] = json!("not-an-email");
    let (status, r) = env.call("erp", "POST", "/api/messages", Some(bad));
    assert_eq!(status, 422, "{r}");
    assert_eq!(
        r["problems"],
        json!([
            "lead.email must match the pattern `[^@\\s]+@[^@\\s]+\\.[^@\\s]+`",
            "lead.source must be one of inbound, advertising, referral, campaign, import, other, not \"web\"",
        ]),
        "{r}"
    );
    let listed = env.get("ada", "/api/instances?process=lead-to-cash");
    assert_eq!(listed, json!([]), "a refused lead starts nothing");
    // The message takes exactly its declared variables.
    let mut extra = lead_message(&email, "Li Lei", "Donghai Textiles", "+86 138 0000 0001");
    extra["variables"]["discount"] = json!(0.9);
    let (status, r) = env.call("erp", "POST", "/api/messages", Some(extra));
    assert_eq!(status, 422, "{r}");
    assert_eq!(
        r["problems"],
        json!(["discount is not a variable of this message (lead)"]),
        "{r}"
    );

    // 1. A lead arrives by message, from the integrator.
    let r = env.ok(
        "erp",
        "/api/messages",
        lead_message(&email, "Li Lei", "Donghai Textiles", "+86 138 0000 0001"),
    );
    assert_eq!(r["result"], "started", "{r}");
    let instance = r["instances"][0].as_str().unwrap().to_owned();

    // 2. Assigned round robin: sally is first in turn, and told why.
    let (_, activity, _) = env.task("sally", "qualify");
    assert!(activity > 0);
    let note = env
        .inbox("sally")
        .into_iter()
        .find(|n| n["template"] == "assigned")
        .expect("sally is notified of the assignment");
    assert_eq!(note["subject"], "New lead for you: Li Lei");
    assert!(
        note["body"]
            .as_str()
            .unwrap()
            .contains("round robin in sales"),
        "{note}"
    );
    let lead_id = note["record_id"].as_i64().unwrap();
    let lead = env.get("sally", &format!("/api/crm/records/lead/{lead_id}"));
    assert_eq!(lead["record"]["owner"], "sally");
    assert_eq!(lead["record"]["status"], "assigned");
    let why = lead["history"][1]["why"].as_str().unwrap();
    assert!(
        why.starts_with("round_robin: round robin in sales"),
        "the reason is audited: {why}"
    );

    // 3. The assignee's e-mail, read back from the SMTP server.
    // Delivered after commit: by the background pass, or now when asked.
    let delivered = env.ok("ada", "/api/crm/outbox/deliver", json!({}));
    assert_eq!(delivered["failed"], 0, "{delivered}");
    env.eventually("sally's e-mail sent", || {
        env.get("ada", "/api/crm/outbox?status=sent")
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["address"] == sally_mail.as_str())
    });
    let mail = env
        .mails()
        .into_iter()
        .find(|m| m.contains(&sally_mail))
        .expect("the SMTP server received sally's e-mail");
    assert!(mail.contains("Subject: New lead for you: Li Lei"), "{mail}");
    assert!(mail.contains("Message-ID: <outbox-"), "{mail}");

    // 4. Qualified: customer, contact and opportunity are created.
    env.complete(
        "sally",
        "qualify",
        json!({"qualified": true, "budget": 120000, "need": "dyeing line"}),
    );

    // 5. A quote with a discount above policy (0.2 > 0.1), for a custom order.
    env.complete(
        "sally",
        "prepare_quote",
        json!({"amount": 100000, "discount": 0.2, "valid_until": "2026-12-31", "custom": true, "instalments": 2}),
    );
    // The quote is locked while the approval is pending.
    let quotes = env.get("sally", "/api/crm/records/quote");
    assert_eq!(quotes["items"][0]["locked"], true, "{quotes}");
    assert_eq!(quotes["items"][0]["approval_status"], "pending");

    // 6. Market manager, then finance.
    env.complete(
        "mark",
        "market_manager",
        json!({"approved": true, "comment": "strategic account"}),
    );
    env.complete("fiona", "finance", json!({"approved": true}));
    let quotes = env.get("sally", "/api/crm/records/quote");
    assert_eq!(quotes["items"][0]["approval_status"], "approved");
    assert_eq!(quotes["items"][0]["locked"], false);
    assert!(env.inbox_has("sally", "discount_decided"));

    // 7. The new customer is approved by sally's supervisor.
    env.complete("sue", "supervisor_review", json!({"approved": true}));
    // 8. The custom order is reviewed.
    env.complete(
        "oscar",
        "review",
        json!({"approved": true, "lead_time_days": 30, "comment": "feasible"}),
    );
    let orders = env.get("sally", "/api/crm/records/order");
    let order = &orders["items"][0];
    assert_eq!(order["kind"], "custom");
    assert_eq!(order["review_status"], "approved");
    assert_eq!(order["review_comment"], "feasible");
    assert_eq!(order["amount"], 80000.0);
    let order_id = order["id"].as_i64().unwrap();

    // 9. The contract is approved by the supervisor; a plan of two instalments.
    env.complete("sue", "approve_contract", json!({"approved": true}));
    let plans = env.get("sally", "/api/crm/payments");
    let plan = &plans["items"][0];
    assert_eq!(plan["total"], 80000.0);
    assert_eq!(plan["instalments"], 2);
    assert_eq!(plan["payment"]["state"], "unpaid");

    // 10. A payment that does not fit its declaration is refused at the door,
    // with every problem by field, and changes nothing; then two partial
    // payments, by message from the ERP.
    let (status, r) = env.call(
        "erp",
        "POST",
        "/api/messages",
        Some(
            json!({"name": "payment.recorded", "correlation_key": order_id.to_string(),
                    "message_id": "pay-bad", "variables": {"amount": -5, "method": "barter"}}),
        ),
    );
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["error"], "invalid_message", "{r}");
    assert_eq!(
        r["problems"],
        json!([
            "amount must be at least 0.01, not -5",
            "method must be one of bank_transfer, cash, card, cheque, other, not \"barter\"",
            "reference is required",
            "paid_at is required",
            "handler is required",
        ]),
        "{r}"
    );
    let plans = env.get("sally", "/api/crm/payments");
    assert_eq!(plans["items"][0]["payment"]["state"], "unpaid", "{plans}");
    for (i, amount) in [30000.5, 49999.5].iter().enumerate() {
        let r = env.ok(
            "erp",
            "/api/messages",
            json!({"name": "payment.recorded", "correlation_key": order_id.to_string(),
                   "message_id": format!("pay-{order_id}-{i}"),
                   "variables": {"amount": amount, "method": "bank_transfer", "handler": "fiona",
                                 "reference": format!("BANK-{i}"), "paid_at": "2026-11-30"}}),
        );
        assert_eq!(r["result"], "correlated", "payment {i}: {r}");
        let plans = env.get("sally", "/api/crm/payments");
        let expected = if i == 0 { "partial" } else { "paid" };
        assert_eq!(plans["items"][0]["payment"]["state"], expected, "{plans}");
        if i == 0 {
            // The ERP sends the first payment again under a new message id:
            // its reference says it is the same payment, recorded once.
            let r = env.ok(
                "erp",
                "/api/messages",
                json!({"name": "payment.recorded", "correlation_key": order_id.to_string(),
                       "message_id": format!("pay-{order_id}-{i}-retry"),
                       "variables": {"amount": amount, "method": "bank_transfer", "handler": "fiona",
                                     "reference": "BANK-0", "paid_at": "2026-11-30"}}),
            );
            assert_eq!(r["result"], "correlated", "{r}");
            let plans = env.get("sally", "/api/crm/payments");
            assert_eq!(plans["items"][0]["payment"]["paid"], 30000.5, "{plans}");
        }
    }
    let done = env.get("ada", &format!("/api/instances/{instance}"));
    assert_eq!(done["status"], "completed", "{done}");

    // 11. Owner and supervisor are told; the order is fulfilled, the opportunity won.
    assert!(env.inbox_has("sally", "order_paid"));
    assert!(env.inbox_has("sue", "order_paid"));
    let order = env.get("sally", &format!("/api/crm/records/order/{order_id}"));
    assert_eq!(order["record"]["status"], "fulfilled");
    let opportunities = env.get("sally", "/api/crm/records/opportunity?status=won");
    assert_eq!(opportunities["total"], 1);

    // 12. A second lead goes to sam (round robin) and is never contacted.
    let email2 = format!("zhou.{run}@nanhai.example");
    let r = env.ok(
        "erp",
        "/api/messages",
        lead_message(&email2, "Zhou Xun", "Nanhai Paper", "139-0000-0002"),
    );
    assert_eq!(r["result"], "started", "{r}");
    env.task("sam", "qualify");
    // A reminder one working day before the deadline (Tuesday).
    env.advance(chrono::Duration::hours(25));
    env.eventually("sam's contact reminder", || {
        env.inbox_has("sam", "lead_contact_reminder")
    });
    // Wednesday: the deadline passes; the supervisor is told and the lead goes
    // to the least busy salesperson other than sam.
    env.advance(chrono::Duration::days(1));
    env.eventually("the supervisor hears of the breach", || {
        env.inbox_has("sue", "lead_sla_breached")
    });
    let leads = env.get("ada", "/api/crm/records/lead?q=Zhou");
    let second = leads["items"][0].clone();
    let second_id = second["id"].as_i64().unwrap();
    let new_owner = second["owner"].as_str().unwrap().to_owned();
    assert_ne!(new_owner, "sam", "reassigned away from sam");
    let history = env.get("ada", &format!("/api/crm/records/lead/{second_id}"))["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["why"].as_str().unwrap_or("").starts_with("least_busy")),
        "{history}"
    );
    // Two more working days (Friday): breached again, so back to the pool.
    env.advance(chrono::Duration::days(2));
    env.eventually("the lead in the pool", || {
        env.get("sally", "/api/crm/pool/lead")["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == second_id)
    });
    let pooled = env.get("ada", &format!("/api/crm/records/lead/{second_id}"))["record"].clone();
    assert_eq!(pooled["status"], "recycled");
    assert_eq!(pooled["owner"], Value::Null);
    assert_eq!(pooled["previous_owner"], new_owner.as_str());

    // 13. Each role sees only what it may.
    let customers = |who: &str| {
        env.get(who, "/api/crm/records/customer")["total"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(customers("sally"), 1, "her own customer");
    assert_eq!(customers("sam"), 0, "not sally's");
    assert_eq!(customers("sue"), 1, "her team's");
    assert_eq!(customers("ada"), 1, "everyone's");
    let (status, _) = env.call("max", "GET", "/api/crm/records/customer", None);
    assert_eq!(status, 403, "maintenance may not list records");
    let customer_id = env.get("sally", "/api/crm/records/customer")["items"][0]["id"]
        .as_i64()
        .unwrap();
    let (status, _) = env.call(
        "sam",
        "GET",
        &format!("/api/crm/records/customer/{customer_id}"),
        None,
    );
    assert_eq!(status, 404, "another owner's customer is not there for sam");
    let (status, _) = env.call(
        "max",
        "GET",
        &format!("/api/crm/records/customer/{customer_id}"),
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = env.call("max", "GET", "/api/crm/pool/lead", None);
    assert_eq!(status, 403, "maintenance sees no pool");
    assert_eq!(
        env.get("sam", "/api/crm/pipeline")
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_i64().unwrap())
            .sum::<i64>(),
        0
    );
    let export = agent()
        .get(&format!("{}/api/crm/export/customer.csv", env.base))
        .header("Authorization", &env.token("sam"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(
        export.lines().count(),
        1,
        "sam's export has the header only: {export}"
    );

    // 14. The pages show the same, through a signed-in browser session.
    let sally = Session::sign_in(env, "sally");
    let (status, html) = sally.get("/crm?q=Li+Lei");
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<span id=\"total\">1</span>") && html.contains("Donghai Textiles"),
        "{html}"
    );
    assert!(
        html.contains("href=\"/crm/pipeline\""),
        "the CRM is in the navigation"
    );
    let (_, html) = sally.get("/crm?added=week&contacted=");
    assert!(
        html.contains("<span id=\"total\">1</span>"),
        "added this week (the clock is on Friday now), an empty filter ignored: {html}"
    );
    let (_, csv) = sally.get("/crm/customers.csv?q=Donghai");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let (_, html) = sally.get("/crm/pipeline");
    assert!(html.contains("paid"), "the receivable is paid: {html}");
    let (_, html) = sally.get("/crm/inbox");
    assert!(
        html.contains("Order #") && html.contains("is paid in full"),
        "{html}"
    );
    let (_, html) = sally.get("/crm/pool");
    assert!(
        html.contains("Zhou Xun") && html.contains(&format!("/crm/pool/lead/{second_id}/claim")),
        "{html}"
    );
    let csv = "name,company,phone,email,region\nNew One,Fresh Co,13700000001,new@fresh.example,east\nDup,Donghai Textiles,,,east\nBad,Mars Co,,,mars\n";
    let (status, location) = sally.post("/crm/import", &[("csv", csv)]);
    assert_eq!(status, 303, "the import is queued: {location}");
    let id: i64 = location
        .strip_prefix("/crm/import/")
        .and_then(|id| id.parse().ok())
        .expect("the import redirects to /crm/import/{id}");
    let job = env.get("sally", &format!("/api/crm/imports/{id}?wait=true"));
    assert_eq!(
        (&job["status"], &job["processed"], &job["created"]),
        (&json!("done"), &json!(3), &json!(1)),
        "{job}"
    );
    let (status, html) = sally.get(&location);
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Imported <span id=\"created\">1</span> of 3 row(s)"),
        "{html}"
    );
    assert!(
        !html.contains("data-poll"),
        "a finished import is not followed: {html}"
    );
    // Through the API: a wrong header row is refused before anything is queued;
    // a good file is accepted at once and the job is where Location says.
    let (status, v, _) =
        env.post_text("sally", "/api/crm/import/customers", "name,colour\nA,red\n");
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("`colour`"), "{v}");
    let (status, v, location) = env.post_text(
        "sally",
        "/api/crm/import/customers",
        "name,company\nLater One,Later Co\n",
    );
    assert_eq!(status, 202, "{v}");
    let location = location.unwrap();
    let job = env.get("sally", &format!("{location}?wait=true"));
    assert_eq!(
        (&job["status"], &job["created"]),
        (&json!("done"), &json!(1)),
        "{job}"
    );
    let (status, _) = env.call("sam", "GET", &location, None);
    assert_eq!(
        status, 404,
        "another salesperson does not see sally's import"
    );
    let all = env.get("ada", "/api/crm/imports");
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(2),
        "an admin sees every import: {all}"
    );
    assert!(
        html.contains("<td>3</td><td>same company as customer"),
        "{html}"
    );
    assert!(
        html.contains("<td>4</td><td>customer.region must be one of"),
        "{html}"
    );
    let max = Session::sign_in(env, "max");
    assert_eq!(max.get("/crm").0, 403, "maintenance: no records");
    assert_eq!(max.get("/crm/pool").0, 403);

    // 15. Sam claims the pooled lead from the pool page; a second claim is refused.
    let sam = Session::sign_in(env, "sam");
    let (status, location) = sam.post(&format!("/crm/pool/lead/{second_id}/claim"), &[]);
    assert_eq!(
        (status, location.as_str()),
        (303, "/crm/pool?claimed=Zhou+Xun")
    );
    let claimed = env.get("sam", &format!("/api/crm/records/lead/{second_id}"))["record"].clone();
    assert_eq!(claimed["owner"], "sam");
    let (status, v) = env.call(
        "sally",
        "POST",
        &format!("/api/crm/pool/lead/{second_id}/claim"),
        Some(json!({})),
    );
    assert_eq!(status, 409, "{v}");
    // Every JSON answer above was checked against the OpenAPI document.
    assert!(CONTRACT.checked() >= 40, "{}", CONTRACT.checked());
}
