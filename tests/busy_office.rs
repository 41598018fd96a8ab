//! A sales office's busy hour against the real server on a loopback port and a
//! real SQLite file: eight callers start and complete instances and send leads
//! while, at the same time, people claim from the pool (two at a time for each
//! customer), import CSV files, edit the assignment rules and change staff
//! facts. Every write goes through the engine's one writer, so none of it may
//! fail with a storage error ("database is locked"), a pool customer goes to
//! exactly one of the two who claim it, and every import ends with every good
//! row.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use ordo_engine::store::SqlExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHORE: &str = "id: chore
starters: {roles: [salesperson]}
variables: {who: {type: string, required: true}}
start: [{id: s, next: do_it}]
nodes:
  do_it: {type: user, assignee: =who, form: {done: {type: boolean, required: true}}, next: e}
  e: {type: end}
";

/// How many customers wait in the pool for the two claimers.
const POOLED: usize = 12;
/// Rows in each imported file (a tenth of them bad).
const ROWS: usize = 240;

struct Office {
    base: String,
    tokens: HashMap<String, String>,
    /// Every answer that was a server error or a storage failure.
    failures: Mutex<Vec<String>>,
}

impl Office {
    fn call(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.tokens[who]);
        let r = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            ("PUT", Some(b)) => agent.put(&url).header("Authorization", &auth).send_json(b),
            (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
            (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
        };
        let mut r = r.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        let text = v.to_string();
        if status >= 500 || text.contains("database is locked") || text.contains("storage failed") {
            self.failures
                .lock()
                .unwrap()
                .push(format!("{method} {path} as {who}: {status} {text}"));
        }
        (status, v)
    }

    fn post_csv(&self, who: &str, csv: String) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(&format!("{}/api/crm/import/customers", self.base))
            .header("Authorization", &format!("Bearer {}", self.tokens[who]))
            .header("Content-Type", "text/csv")
            .send(csv)
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_json().unwrap_or(Value::Null))
    }
}

#[test]
fn a_busy_hour_stores_everything_through_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let config = ordo_server::ServeConfig {
        db: dir.path().join("ordo.db"),
        addr: "127.0.0.1:0".parse().unwrap(),
        deploy: vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("processes/crm")],
        backups: dir.path().join("backups"),
        plugins: vec![Arc::new(ordo_crm::CrmPlugin::new(None))],
        clock: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(ordo_server::Server::open(&config)).unwrap();
    let tokens: HashMap<String, String> = rt
        .block_on(server.seed_demo_people())
        .unwrap()
        .into_iter()
        .collect();
    rt.block_on(server.state().engine.deploy("chore.yaml", CHORE))
        .unwrap();
    // Customers in the pool, put there the way the product does: through the
    // engine's writer.
    let pooled: Vec<i64> = rt
        .block_on(server.state().engine.write(|tx| {
            let mut ids = Vec::new();
            for i in 0..POOLED {
                ids.push(tx.query_row(
                    "INSERT INTO crm_customers (number, name, in_pool, pool_since, created_at, updated_at)
                     VALUES (?1, ?2, 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')
                     RETURNING id",
                    ordo_engine::store::params![format!("P-{i}"), format!("Pooled {i}")],
                    |r| r.get(0),
                )?);
            }
            Ok::<_, ordo_engine::store::Error>(ids)
        }))
        .unwrap()
        .unwrap();
    let office = Arc::new(Office {
        base: format!("http://{}", server.local_addr().unwrap()),
        tokens,
        failures: Mutex::new(Vec::new()),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(server.run(async {
        let _ = stopped.await;
    }));
    // Enough claims a day for the test; the limits themselves are tested elsewhere.
    let (s, v) = office.call(
        "ada",
        "PUT",
        "/api/crm/pool-rules",
        Some(
            json!({"claims_per_day": 1000, "max_customers": 10000, "cooldown_days": 7,
                    "reclaim_days_ordinary": 30, "reclaim_days_vip": 60, "reminder_days": 3}),
        ),
    );
    assert_eq!(s, 200, "{v}");

    let mut work: Vec<std::thread::JoinHandle<()>> = Vec::new();
    // Eight callers: start a chore and complete it, and send a lead.
    for caller in 0..8 {
        let o = Arc::clone(&office);
        work.push(std::thread::spawn(move || {
            let who = if caller % 2 == 0 { "sam" } else { "sally" };
            for round in 0..6 {
                let (s, v) = o.call(
                    who,
                    "POST",
                    "/api/instances",
                    Some(json!({"process": "chore", "variables": {"who": who}})),
                );
                assert_eq!(s, 201, "{v}");
                let id = v["id"].as_str().unwrap().to_owned();
                let (_, tasks) = o.call(who, "GET", "/api/tasks?view=mine&limit=500", None);
                let activity = tasks
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["instance_id"] == id.as_str())
                    .unwrap()["activity"]
                    .as_u64()
                    .unwrap();
                let (s, v) = o.call(
                    who,
                    "POST",
                    &format!("/api/tasks/{id}/{activity}/complete"),
                    Some(json!({"variables": {"done": true}})),
                );
                assert_eq!(s, 200, "{v}");
                let email = format!("lead-{caller}-{round}@busy.example");
                let (s, v) = o.call(
                    "erp",
                    "POST",
                    "/api/messages",
                    Some(json!({"name": "lead.received", "correlation_key": email,
                                "variables": {"lead": {"name": format!("Lead {caller}.{round}"),
                                                       "email": email, "source": "inbound"}}})),
                );
                assert_eq!((s, v["result"].as_str()), (200, Some("started")), "{v}");
            }
        }));
    }
    // Two people claim every pooled customer at the same time.
    let claims: Arc<Mutex<Vec<(i64, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    for who in ["sam", "sally"] {
        let (o, claims, pooled) = (Arc::clone(&office), Arc::clone(&claims), pooled.clone());
        work.push(std::thread::spawn(move || {
            for id in pooled {
                let (s, _) = o.call(
                    who,
                    "POST",
                    &format!("/api/crm/pool/customer/{id}/claim"),
                    None,
                );
                claims.lock().unwrap().push((id, s));
            }
        }));
    }
    // Two imports, each with a tenth of its rows bad.
    let imports: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    for who in ["sam", "sally"] {
        let (o, imports) = (Arc::clone(&office), Arc::clone(&imports));
        work.push(std::thread::spawn(move || {
            let mut csv = String::from("name,email,grade\n");
            for i in 0..ROWS {
                let grade = if i % 10 == 0 { "gold" } else { "ordinary" };
                csv.push_str(&format!(
                    "Imported {who} {i},{who}.{i}@import.example,{grade}\n"
                ));
            }
            let (s, v) = o.post_csv(who, csv);
            assert_eq!(s, 202, "{v}");
            let id = v["id"].as_i64().unwrap();
            let (s, v) = o.call(
                who,
                "GET",
                &format!("/api/crm/imports/{id}?wait=true"),
                None,
            );
            assert_eq!(s, 200, "{v}");
            imports.lock().unwrap().push(v);
        }));
    }
    // The supervisor edits the assignment rules; the admin changes staff facts.
    let o = Arc::clone(&office);
    work.push(std::thread::spawn(move || {
        for i in 0..15 {
            let region = if i % 2 == 0 { "east" } else { "north" };
            let (s, v) = o.call(
                "sue",
                "PUT",
                "/api/crm/assignment-rules",
                Some(json!([{"region": region, "group": "sales"}])),
            );
            assert_eq!(s, 200, "{v}");
        }
    }));
    let o = Arc::clone(&office);
    work.push(std::thread::spawn(move || {
        for i in 0..15 {
            let (s, v) = o.call(
                "ada",
                "PUT",
                "/api/crm/staff/sam",
                Some(json!({"weight": 1 + i % 3, "email": "sam@sales.example"})),
            );
            assert_eq!(s, 200, "{v}");
        }
    }));
    for w in work {
        w.join().unwrap();
    }

    let failures = office.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "storage errors: {failures:#?}");
    // Each pooled customer went to exactly one of the two.
    let claims = claims.lock().unwrap().clone();
    for id in &pooled {
        let mut got: Vec<u16> = claims
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, s)| *s)
            .collect();
        got.sort_unstable();
        assert_eq!(got, [200, 409], "customer {id}");
    }
    // Every import finished with every good row.
    let imports = imports.lock().unwrap().clone();
    assert_eq!(imports.len(), 2);
    for job in &imports {
        assert_eq!(job["status"], "done", "{job}");
        assert_eq!(job["created"], ROWS - ROWS / 10, "{job}");
        assert_eq!(job["skipped_rows"], ROWS / 10, "{job}");
    }
    let (_, instances) = office.call(
        "ada",
        "GET",
        "/api/instances?process=chore&status=completed&limit=500",
        None,
    );
    assert_eq!(instances.as_array().unwrap().len(), 48);
    let _ = stop.send(());
    rt.block_on(serving).unwrap().unwrap();
}
