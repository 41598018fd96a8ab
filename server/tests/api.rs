//! The REST API end to end: a real SQLite file, real tokens, every request through
//! the router as a client would send it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ordo_engine::engine::{Config, Engine};
use ordo_server::auth::{Directory, Person, Role};
use ordo_server::{AppState, router};
use serde_json::{Value, json};
use std::sync::Arc;

mod common;
#[path = "support/contract.rs"]
mod contract;
use tower::ServiceExt;

/// Every answer below is checked against the server's OpenAPI document.
static CONTRACT: std::sync::LazyLock<contract::Contract> =
    std::sync::LazyLock::new(|| contract::Contract::new(ordo_server::openapi::document(&[])));

struct Api {
    app: axum::Router,
    tokens: std::collections::HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

const FLOW: &str = "
id: expense
starters: {roles: [salesperson]}
start: [{id: s, next: review}]
nodes:
  review:
    type: user
    candidate_groups: [finance]
    form:
      approved: {type: boolean, required: true}
    next: done
  done: {type: end}
";

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordo.db");
    let engine = Arc::new(Engine::open(Config::new(db.clone())).unwrap());
    let directory = Arc::new(Directory::open(&db).unwrap());
    let people: [(&str, &[Role], &[&str]); 6] = [
        ("ann", &[Role::Salesperson], &["finance"]),
        ("bob", &[Role::Salesperson], &["sales"]),
        ("sam", &[Role::Supervisor], &[]),
        ("root", &[Role::Admin], &[]),
        ("dee", &[Role::Designer], &[]),
        ("erp", &[Role::Integrator], &[]),
    ];
    // Sam leads Ann; nobody leads Bob.
    common::add_people(&directory, &people, "sam");
    let mut tokens = std::collections::HashMap::new();
    for (name, ..) in people {
        tokens.insert(name, directory.create_token(name).unwrap());
    }
    let backups = dir.path().join("backups");
    let app = router(AppState {
        engine,
        directory,
        backups,
    });
    Api {
        app,
        tokens,
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        who: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(w) = who {
            req = req.header("authorization", format!("Bearer {}", self.tokens[w]));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let (method, uri) = (req.method().to_string(), req.uri().to_string());
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        CONTRACT.check(&method, &uri, status.as_u16(), &v);
        (status, v)
    }

    /// Bob starts an expense claim (FLOW, deployed); its instance id and the
    /// path of its review task, offered to ann's group.
    async fn expense(&self, key: &str) -> (String, String) {
        let (s, v) = self
            .call(
                Some("bob"),
                "POST",
                "/api/instances",
                Some(json!({"process": "expense", "business_key": key})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (_, tasks) = self
            .call(Some("ann"), "GET", "/api/tasks?view=groups", None)
            .await;
        let activity = tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["instance_id"] == id.as_str())
            .unwrap()["activity"]
            .as_u64()
            .unwrap();
        let task = format!("/api/tasks/{id}/{activity}");
        (id, task)
    }

    async fn deploy(&self, who: &str, yaml: &str) -> (StatusCode, Value) {
        let req = Request::post("/api/definitions?name=flow.yaml")
            .header("authorization", format!("Bearer {}", self.tokens[who]))
            .body(Body::from(yaml.to_owned()))
            .unwrap();
        self.send(req).await
    }
}

#[tokio::test]
async fn a_task_goes_from_start_to_completion_through_the_api() {
    let a = api().await;
    let (s, v) = a.deploy("dee", FLOW).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["version"], 1);
    let (s, v) = a
        .call(
            Some("bob"),
            "POST",
            "/api/instances",
            Some(json!({"process": "expense", "business_key": "E-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["active_nodes"], json!(["review"]));

    let (s, v) = a
        .call(Some("ann"), "GET", "/api/tasks?view=groups", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let activity = v[0]["activity"].as_u64().unwrap();
    let task = format!("/api/tasks/{id}/{activity}");
    let (s, v) = a.call(Some("ann"), "GET", &task, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["form"]["approved"]["type"], "boolean");
    let (s, _) = a.call(Some("bob"), "GET", &task, None).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "bob is not a candidate: the task does not exist for him"
    );

    let (s, v) = a
        .call(
            Some("ann"),
            "POST",
            &format!("{task}/complete"),
            Some(json!({"variables": {"approved": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "unclaimed: {v}");
    let (s, v) = a
        .call(Some("ann"), "POST", &format!("{task}/claim"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["assignee"], "ann");
    // A mistyped name would orphan the task: it is refused, naming it.
    let (s, v) = a
        .call(
            Some("ann"),
            "POST",
            &format!("{task}/delegate"),
            Some(json!({"to": "bbo"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("`bbo`"), "{v}");
    let (s, v) = a.call(Some("ann"), "GET", &task, None).await;
    assert_eq!(v["task"]["assignee"], "ann", "still hers: {s} {v}");
    let (s, v) = a
        .call(
            Some("ann"),
            "POST",
            &format!("{task}/complete"),
            Some(json!({"variables": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["fields"][0]["field"], "approved", "{v}");
    let (s, v) = a
        .call(
            Some("ann"),
            "POST",
            &format!("{task}/complete"),
            Some(json!({"variables": {"approved": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    // Completing it again is a conflict that says who completed it and when,
    // for those who could see it; a stranger still gets 404.
    let (s, v) = a
        .call(
            Some("ann"),
            "POST",
            &format!("{task}/complete"),
            Some(json!({"variables": {"approved": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("completed by ann at 20"), "{message}");
    let (s, v) = a.call(Some("bob"), "GET", &task, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    let (s, v) = a.call(None, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().unwrap();
    assert!(text.contains("ordo_instances_started_total 1\n"), "{text}");
    assert!(
        text.contains("ordo_instances_completed_total 1\n"),
        "{text}"
    );
    assert!(text.contains("ordo_tasks_open 0\n"), "{text}");
    assert!(text.contains("# TYPE ordo_commits_total counter"), "{text}");
    let (s, v) = a
        .call(Some("sam"), "GET", &format!("/api/instances/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["variables"]["approved"], true);
    assert!(
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["node"] == "review" && h["actor"] == "ann")
    );
}

#[tokio::test]
async fn a_definition_is_read_back_with_its_versions_and_diagram() {
    let a = api().await;
    a.deploy("dee", FLOW).await;
    a.deploy("dee", &FLOW.replace("finance", "controllers"))
        .await;
    let (s, v) = a
        .call(
            Some("dee"),
            "GET",
            "/api/definitions/expense?version=1",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["versions"], json!([1, 2]));
    assert!(v["source"].as_str().unwrap().contains("finance"));
    let (s, v) = a
        .call(Some("sam"), "GET", "/api/definitions/expense/diagram", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().unwrap();
    assert!(text.starts_with("flowchart"), "{text}");
    assert!(text.contains("review"), "{text}");
    let (s, v) = a
        .call(
            Some("dee"),
            "GET",
            "/api/definitions/expense/diagram?format=dot",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().unwrap().starts_with("digraph"), "{v}");
    let (s, _) = a
        .call(
            Some("dee"),
            "GET",
            "/api/definitions/expense/diagram?format=png",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = a
        .call(Some("dee"), "GET", "/api/definitions/nothing/diagram", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_invalid_definition_is_refused_with_every_diagnostic_at_its_line() {
    let a = api().await;
    let (s, v) = a.deploy("dee", "id: x\nstart: [{id: s, next: a}]\nnodes:\n  a: {type: user, nxt: e}\n  e: {type: end}\n").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"], "invalid_definition");
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["line"].as_u64(), d["code"].as_str()),
        (Some(4), Some("unknown-field")),
        "{v}"
    );
    assert_eq!(d["hint"], "did you mean `next`?");
}

#[tokio::test]
async fn integrators_send_messages_that_are_buffered_and_deduplicated() {
    let a = api().await;
    a.deploy("dee", "id: order\nstart: [{id: s, message: order.placed, key: order_id, next: w}]\nnodes:\n  w: {type: receive, message: order.paid, next: e}\n  e: {type: end}\n").await;
    let placed =
        json!({"name": "order.placed", "message_id": "m1", "variables": {"order_id": "o-1"}});
    let (s, v) = a
        .call(Some("erp"), "POST", "/api/messages", Some(placed.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"], "started");
    let (_, v) = a
        .call(Some("erp"), "POST", "/api/messages", Some(placed))
        .await;
    assert_eq!(v["result"], "duplicate");
    let (_, v) = a
        .call(
            Some("erp"),
            "POST",
            "/api/messages",
            Some(json!({"name": "order.paid", "correlation_key": "o-1"})),
        )
        .await;
    assert_eq!(v["result"], "correlated");
    let (_, v) = a
        .call(
            Some("erp"),
            "POST",
            "/api/messages",
            Some(json!({"name": "order.paid", "correlation_key": "o-2", "ttl": 60})),
        )
        .await;
    assert_eq!(v["result"], "buffered");
    let (s, _) = a
        .call(
            Some("ann"),
            "POST",
            "/api/messages",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = a
        .call(
            Some("erp"),
            "POST",
            "/api/signals",
            Some(json!({"name": "nobody.listens"})),
        )
        .await;
    assert_eq!((s, v["delivered"].as_u64()), (StatusCode::OK, Some(0)));
}

#[tokio::test]
async fn integrators_add_runs_to_a_running_multi_instance_activity() {
    let a = api().await;
    let (s, v) = a
        .deploy(
            "dee",
            "id: calls\nstarters: {roles: [integrator]}\nstart: [{id: s, next: split}]\nnodes:\n  split: {type: parallel, next: [call, wrap]}\n  call:\n    type: user\n    assignee: ann\n    multi: {items: \"['acme']\", as: customer, parallel: true, output: customer, into: called}\n    next: join\n  wrap: {type: user, assignee: ann, next: join}\n  join: {type: parallel, next: e}\n  e: {type: end}\n",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = a
        .call(
            Some("root"),
            "POST",
            "/api/instances",
            Some(json!({"process": "calls"})),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, inst) = a
        .call(Some("erp"), "GET", &format!("/api/instances/{id}"), None)
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "an integrator reads the instance: {inst}"
    );
    assert_eq!(
        (&inst["variables"], &inst["history"]),
        (&json!({}), &json!([])),
        "but not its data: {inst}"
    );
    let waiting = |node: &str, kind: &str| {
        inst["waiting"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["node"] == node && w["waits_for"] == kind)
            .unwrap_or_else(|| panic!("{node} waits for {kind}: {inst}"))["activity"]
            .as_u64()
            .unwrap()
    };
    let (multi, task) = (waiting("call", "runs"), waiting("wrap", "task"));
    let runs = |activity: u64| format!("/api/instances/{id}/activities/{activity}/runs");
    let add = json!({"items": ["globex", "initech"]});

    let (s, _) = a
        .call(Some("ann"), "POST", &runs(multi), Some(add.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "staff do not add runs");
    let (s, v) = a
        .call(
            Some("erp"),
            "POST",
            &runs(multi),
            Some(json!({"items": []})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("`items` is empty"),
        "{v}"
    );
    let (s, v) = a
        .call(Some("erp"), "POST", &runs(task), Some(add.clone()))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("multi-instance"),
        "{v}"
    );
    let (s, _) = a
        .call(Some("erp"), "POST", &runs(9999), Some(add.clone()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = a
        .call(
            Some("erp"),
            "POST",
            &runs(multi),
            Some(json!({"item": ["x"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a misspelt field: {v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `item`"),
        "{v}"
    );

    let (s, v) = a.call(Some("erp"), "POST", &runs(multi), Some(add)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["added"], 2);

    // A process the integrator may not start: its instances are not there
    // for it, to read or to add runs to.
    let (s, v) = a.deploy("dee", "id: private\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: user, assignee: bob, multi: {count: \"1\", parallel: true}, next: e}\n  e: {type: end}\n").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = a
        .call(
            Some("root"),
            "POST",
            "/api/instances",
            Some(json!({"process": "private"})),
        )
        .await;
    let other = v["id"].as_str().unwrap().to_owned();
    let (s, _) = a
        .call(Some("erp"), "GET", &format!("/api/instances/{other}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = a
        .call(
            Some("erp"),
            "POST",
            &format!("/api/instances/{other}/activities/2/runs"),
            Some(json!({"items": ["x"]})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, tasks) = a.call(Some("ann"), "GET", "/api/tasks", None).await;
    let mut open: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["node"].as_str())
        .collect();
    open.sort_unstable();
    assert_eq!(open, ["call", "call", "call", "wrap"], "{tasks}");
    for t in tasks.as_array().unwrap() {
        let path = format!("/api/tasks/{id}/{}", t["activity"]);
        let (s, v) = a
            .call(
                Some("ann"),
                "POST",
                &format!("{path}/complete"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, inst) = a
        .call(Some("root"), "GET", &format!("/api/instances/{id}"), None)
        .await;
    assert_eq!(inst["status"], "completed", "{inst}");
    assert_eq!(
        inst["variables"]["called"],
        json!(["acme", "globex", "initech"]),
        "the added runs' outputs follow the first one's"
    );
}

#[tokio::test]
async fn an_instance_says_which_tokens_wait_for_a_milestone() {
    let a = api().await;
    let (s, v) = a
        .deploy(
            "dee",
            "id: order\nstart: [{id: s, next: split}]\nnodes:\n  split: {type: parallel, next: [prepare, request]}\n  prepare: {type: user, assignee: ann, next: pack}\n  pack: {type: user, assignee: ann, next: join}\n  request: {type: receive, message: change, next: change}\n  change: {type: user, assignee: ann, milestone: pack, next: join}\n  join: {type: parallel, next: e}\n  e: {type: end}\n",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = a
        .call(
            Some("root"),
            "POST",
            "/api/instances",
            Some(json!({"process": "order", "business_key": "o-1"})),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, v) = a
        .call(
            Some("erp"),
            "POST",
            "/api/messages",
            Some(json!({"name": "change", "correlation_key": "o-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, inst) = a
        .call(Some("root"), "GET", &format!("/api/instances/{id}"), None)
        .await;
    assert_eq!(
        inst["held"],
        json!([{"node": "change", "waits_for": "milestone", "on": "pack"}]),
        "{inst}"
    );
    let nodes: Vec<&str> = inst["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["node"].as_str())
        .collect();
    assert_eq!(nodes, ["prepare"], "change has no task yet: {inst}");
}

#[tokio::test]
async fn admins_see_incidents_and_retry_them() {
    let a = api().await;
    a.deploy("dee", "id: calc\nstart: [{id: s, next: c}]\nnodes:\n  c: {type: assign, set: {r: =10 / d}, next: e}\n  e: {type: end}\n").await;
    let (_, v) = a
        .call(
            Some("root"),
            "POST",
            "/api/instances",
            Some(json!({"process": "calc", "variables": {"d": 0}})),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, v) = a.call(Some("root"), "GET", "/api/incidents", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let activity = v[0]["activity"].as_u64().unwrap();
    let (s, _) = a.call(Some("sam"), "GET", "/api/incidents", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = a
        .call(
            Some("root"),
            "POST",
            &format!("/api/incidents/{id}/{activity}/retry"),
            Some(json!({"variables": {"d": 2}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let a = api().await;
    let (s, v) = a.call(None, "GET", "/api/tasks", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["message"].as_str().unwrap().contains("Bearer"));
    let bad = Request::get("/api/tasks")
        .header("authorization", "Bearer ordo_forged")
        .body(Body::empty())
        .unwrap();
    assert_eq!(a.send(bad).await.0, StatusCode::UNAUTHORIZED);
    let (s, v) = a
        .call(
            Some("bob"),
            "POST",
            "/api/instances",
            Some(json!({"process": "expense", "colour": "red"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{v}"
    );
    let malformed = Request::post("/api/instances")
        .header("authorization", format!("Bearer {}", a.tokens["bob"]))
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (s, v) = a.send(malformed).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // A process that is not deployed: 404 for who may start undeclared ones,
    // 403 for the others, who learn nothing of what is deployed.
    for (who, status) in [
        ("root", StatusCode::NOT_FOUND),
        ("bob", StatusCode::FORBIDDEN),
    ] {
        let (s, v) = a
            .call(
                Some(who),
                "POST",
                "/api/instances",
                Some(json!({"process": "nowhere"})),
            )
            .await;
        assert_eq!(s, status, "{who}: {v}");
    }
    let (s, _) = a
        .call(Some("bob"), "GET", "/api/tasks?view=everything", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let big = Request::post("/api/definitions")
        .header("authorization", format!("Bearer {}", a.tokens["dee"]))
        .body(Body::from(vec![b'#'; ordo_server::MAX_BODY_BYTES + 1]))
        .unwrap();
    assert_eq!(a.send(big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = a.call(Some("bob"), "POST", "/api/definitions", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a salesperson may not deploy");
    // Not YAML at all: 400, with the diagnostic at its line.
    let broken = Request::post("/api/definitions")
        .header("authorization", format!("Bearer {}", a.tokens["dee"]))
        .body(Body::from("id: x\nstart: [unclosed\n"))
        .unwrap();
    let (s, v) = a.send(broken).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "malformed_definition");
    assert!(v["diagnostics"][0]["line"].as_u64().is_some(), "{v}");
}

/// One HTTP/1.1 request over a real socket; returns the status and the body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_over_tcp_fires_timers_in_the_background_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("tick.yaml"), "id: tick\nstart: [{id: s, next: w}]\nnodes:\n  w: {type: catch, timer: PT0S, next: e}\n  e: {type: end}\n").unwrap();
    let config = ordo_server::ServeConfig {
        db: dir.path().join("ordo.db"),
        addr: "127.0.0.1:0".parse().unwrap(),
        deploy: vec![flows],
        backups: dir.path().join("backups"),
        plugins: Vec::new(),
        clock: None,
    };
    let people = Directory::open(&config.db).unwrap();
    people
        .add(&Person {
            name: "root".into(),
            roles: vec![Role::Admin],
            ..Person::default()
        })
        .unwrap();
    let token = people.create_token("root").unwrap();
    let server = ordo_server::Server::open(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let (status, body) = http(addr, "GET", "/health", "", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = http(
        addr,
        "POST",
        "/api/instances",
        &token,
        r#"{"process":"tick"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Nobody calls the scheduler: the server's background loop fires the due timer.
    let completed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let (_, body) = http(addr, "GET", &format!("/api/instances/{id}"), &token, "").await;
            if serde_json::from_str::<Value>(&body).unwrap()["status"] == "completed" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(completed.is_ok(), "the timer did not fire within 10 s");

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let engine = Engine::open(Config::new(config.db.clone())).unwrap();
    assert_eq!(
        engine.instance(&id).await.unwrap().status,
        ordo_engine::runtime::InstanceStatus::Completed,
        "stored before shutdown"
    );
}

#[tokio::test]
async fn a_panic_in_a_handler_is_a_500_that_shows_no_internals() {
    #[allow(clippy::panic)]
    async fn boom() -> &'static str {
        panic!("secret detail: /etc/shadow")
    }
    let app = ordo_server::harden(axum::Router::new().route("/boom", axum::routing::get(boom)));
    let res = app
        .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains(r#""error":"internal""#), "{text}");
}

#[tokio::test]
async fn maintenance_takes_a_backup_and_may_do_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let directory = Directory::open(&db).unwrap();
    directory
        .add(&Person {
            name: "max".into(),
            roles: vec![Role::Maintenance],
            ..Person::default()
        })
        .unwrap();
    let token = directory.create_token("max").unwrap();
    let engine = Arc::new(Engine::open(Config::new(db.clone())).unwrap());
    engine.deploy("f.yaml", FLOW).await.unwrap();
    let app = router(AppState {
        engine,
        directory: Arc::new(directory),
        backups: dir.path().join("backups"),
    });
    let req = |uri: &str, method: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let res = app
        .clone()
        .oneshot(req("/api/backup", "POST"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    CONTRACT.check("POST", "/api/backup", 201, &body);
    let copy = std::path::PathBuf::from(body["path"].as_str().unwrap());
    let restored = Engine::open(Config::new(copy)).unwrap();
    assert_eq!(
        restored.definitions(None).await.unwrap()[0].process_id,
        "expense"
    );
    let res = app.oneshot(req("/api/definitions", "GET")).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[test]
fn the_demo_organisation_signs_in_with_the_printed_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let directory = Directory::open(&dir.path().join("d.db")).unwrap();
    let tokens = ordo_server::seed_demo(&directory).unwrap();
    assert_eq!(tokens.len(), ordo_server::DEMO_PEOPLE.len());
    for (name, token) in &tokens {
        assert_eq!(&directory.identify(token).unwrap().unwrap().user, name);
    }
    let sam = directory.person("sam").unwrap().unwrap();
    assert_eq!(sam.supervisor.as_deref(), Some("sue"));
    assert_eq!(sam.groups, ["sales"]);
    let roles: std::collections::HashSet<Role> = tokens
        .iter()
        .flat_map(|(n, _)| directory.person(n).unwrap().unwrap().roles)
        .collect();
    assert_eq!(roles.len(), Role::ALL.len(), "every role is represented");
}

#[tokio::test]
async fn a_supervisor_sees_the_tasks_of_the_people_they_lead_and_no_others() {
    let a = api().await;
    a.deploy("dee", "id: work\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: user, assignee: =owner, next: e}\n  e: {type: end}\n").await;
    let mut tasks = Vec::new();
    for owner in ["ann", "bob"] {
        let (_, v) = a
            .call(
                Some("root"),
                "POST",
                "/api/instances",
                Some(json!({"process": "work", "variables": {"owner": owner}})),
            )
            .await;
        let id = v["id"].as_str().unwrap().to_owned();
        let (_, mine) = a.call(Some(owner), "GET", "/api/tasks", None).await;
        tasks.push(format!("/api/tasks/{id}/{}", mine[0]["activity"]));
    }
    assert_eq!(
        a.call(Some("sam"), "GET", &tasks[0], None).await.0,
        StatusCode::OK,
        "Ann's task: Sam leads her"
    );
    assert_eq!(
        a.call(Some("sam"), "GET", &tasks[1], None).await.0,
        StatusCode::NOT_FOUND,
        "Bob's task: not Sam's team"
    );
    assert_eq!(
        a.call(Some("root"), "GET", &tasks[1], None).await.0,
        StatusCode::OK,
        "an admin sees every task"
    );
    assert_eq!(
        a.call(Some("bob"), "GET", &tasks[0], None).await.0,
        StatusCode::NOT_FOUND,
        "a colleague does not"
    );
}

#[tokio::test]
async fn of_racing_completions_one_wins_and_every_other_gets_409() {
    let a = Arc::new(api().await);
    a.deploy("dee", FLOW).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (_, task) = a.expense(&format!("R-{i}")).await;
        a.call(Some("ann"), "POST", &format!("{task}/claim"), None)
            .await;
        tasks.push(task);
    }
    for task in tasks {
        let racers: Vec<_> = (0..5)
            .map(|_| {
                let a = Arc::clone(&a);
                let task = task.clone();
                tokio::spawn(async move {
                    a.call(
                        Some("ann"),
                        "POST",
                        &format!("{task}/complete"),
                        Some(json!({"variables": {"approved": true}})),
                    )
                    .await
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for r in racers {
            statuses.push(r.await.unwrap().0);
        }
        statuses.sort();
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::CONFLICT,
                StatusCode::CONFLICT,
                StatusCode::CONFLICT,
                StatusCode::CONFLICT
            ],
            "{task}"
        );
    }
}

#[tokio::test]
async fn only_a_holder_their_supervisors_or_an_admin_hand_a_task_on() {
    let a = api().await;
    a.deploy("dee", FLOW).await;
    let (_, task) = a.expense("H-1").await;
    let delegate = |who: &'static str, to: &'static str| {
        let task = task.clone();
        let a = &a;
        async move {
            a.call(
                Some(who),
                "POST",
                &format!("{task}/delegate"),
                Some(json!({"to": to})),
            )
            .await
        }
    };
    // Unclaimed: a candidate claims it; she cannot delegate it to herself.
    let (s, v) = delegate("ann", "ann").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    a.call(Some("ann"), "POST", &format!("{task}/claim"), None)
        .await;
    // Her supervisor may hand it on; so may she; an admin may.
    let (s, v) = delegate("sam", "sam").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = delegate("sam", "ann").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = delegate("ann", "root").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = delegate("root", "ann").await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn narrowing_starters_closes_the_older_versions_too() {
    let a = api().await;
    a.deploy("dee", FLOW).await;
    a.deploy(
        "dee",
        &FLOW.replace("roles: [salesperson]", "roles: [admin]"),
    )
    .await;
    for body in [
        json!({"process": "expense"}),
        json!({"process": "expense", "version": 1}),
    ] {
        let (s, v) = a
            .call(Some("bob"), "POST", "/api/instances", Some(body))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    // Admitted by the latest version, a version that does not exist is a 404.
    a.deploy("dee", FLOW).await;
    let (s, v) = a
        .call(
            Some("bob"),
            "POST",
            "/api/instances",
            Some(json!({"process": "expense", "version": 99})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_with_allow() {
    let a = api().await;
    let req = Request::builder()
        .method("DELETE")
        .uri("/api/instances")
        .header("authorization", format!("Bearer {}", a.tokens["root"]))
        .body(Body::empty())
        .unwrap();
    let res = a.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = res.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("POST") && allow.contains("GET"), "{allow}");
}

#[tokio::test]
async fn a_supervisor_watches_only_the_instances_of_the_people_they_lead() {
    let a = api().await;
    a.deploy("dee", FLOW).await;
    let (id, task) = a.expense("W-1").await;
    let path = format!("/api/instances/{id}");
    // Nobody sam leads has held a task of it yet: it is not his to watch.
    let (s, list) = a.call(Some("sam"), "GET", "/api/instances", None).await;
    assert_eq!((s, list.as_array().unwrap().len()), (StatusCode::OK, 0));
    let (s, v) = a.call(Some("sam"), "GET", &path, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // Ann, whom sam leads, takes its task: now he watches it; the admin always.
    a.call(Some("ann"), "POST", &format!("{task}/claim"), None)
        .await;
    let (_, list) = a.call(Some("sam"), "GET", "/api/instances", None).await;
    assert_eq!(list[0]["id"], id.as_str());
    let (s, v) = a.call(Some("sam"), "GET", &path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = a.call(Some("root"), "GET", &path, None).await;
    assert_eq!(s, StatusCode::OK);
}
