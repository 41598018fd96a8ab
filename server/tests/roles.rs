//! Every API route × every role: a role the access table does not allow gets
//! 403, one it allows never does. The routes are read from `src/api.rs`, so a
//! route added there without a row here (or without a rule in the table) fails
//! the test. Starting a process adds a dimension: the process's own `starters`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ordo_engine::engine::{Config, Engine};
use ordo_server::access::{SERVER, Table, Who};
use ordo_server::auth::{Directory, Person, Role};
use ordo_server::{AppState, router};
use std::collections::BTreeSet;

mod common;
use std::sync::Arc;
use tower::ServiceExt;

use Role::*;

/// (method, route as written in api.rs, a concrete path, a body). Who may call
/// each route comes from the access table (`ordo_server::access::SERVER`), the
/// one source of truth; this test checks that the running server agrees.
const MATRIX: &[(&str, &str, &str, &str)] = &[
    ("POST", "/definitions", "/api/definitions", "id: x"),
    ("GET", "/definitions", "/api/definitions", ""),
    ("GET", "/definitions/{id}", "/api/definitions/x", ""),
    ("POST", "/instances", "/api/instances", r#"{"process":"x"}"#),
    ("GET", "/instances", "/api/instances", ""),
    ("GET", "/instances/{id}", "/api/instances/1", ""),
    (
        "POST",
        "/instances/{id}/cancel",
        "/api/instances/1/cancel",
        "",
    ),
    (
        "POST",
        "/instances/{id}/activities/{activity}/runs",
        "/api/instances/1/activities/2/runs",
        r#"{"items":[1]}"#,
    ),
    ("POST", "/messages", "/api/messages", r#"{"name":"m"}"#),
    ("POST", "/signals", "/api/signals", r#"{"name":"s"}"#),
    ("GET", "/tasks", "/api/tasks", ""),
    ("GET", "/tasks/{instance}/{activity}", "/api/tasks/1/2", ""),
    (
        "POST",
        "/tasks/{instance}/{activity}/claim",
        "/api/tasks/1/2/claim",
        "",
    ),
    (
        "POST",
        "/tasks/{instance}/{activity}/unclaim",
        "/api/tasks/1/2/unclaim",
        "",
    ),
    (
        "POST",
        "/tasks/{instance}/{activity}/delegate",
        "/api/tasks/1/2/delegate",
        r#"{"to":"x"}"#,
    ),
    (
        "POST",
        "/tasks/{instance}/{activity}/complete",
        "/api/tasks/1/2/complete",
        "{}",
    ),
    ("GET", "/incidents", "/api/incidents", ""),
    (
        "POST",
        "/incidents/{instance}/{activity}/retry",
        "/api/incidents/1/2/retry",
        "{}",
    ),
    (
        "POST",
        "/incidents/{instance}/{activity}/resolve",
        "/api/incidents/1/2/resolve",
        "{}",
    ),
    ("POST", "/backup", "/api/backup", ""),
    ("GET", "/openapi.json", "/api/openapi.json", ""),
    (
        "GET",
        "/definitions/{id}/diagram",
        "/api/definitions/x/diagram",
        "",
    ),
];

#[test]
fn every_route_has_a_row_in_the_matrix_and_a_rule_in_the_table() {
    let declared = common::declared_routes();
    let covered: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, r, ..)| (m.to_lowercase(), (*r).to_owned()))
        .collect();
    assert!(declared.len() >= 20, "the route parser found {declared:?}");
    assert_eq!(declared, covered, "routes and matrix rows differ");
    let table = Table::new(SERVER.iter().copied());
    for (method, route) in &declared {
        let path = format!("/api{route}");
        assert!(
            table.rule(&method.to_uppercase(), &path).is_some(),
            "{method} {path} has no rule in ordo_server::access::SERVER"
        );
    }
}

/// Who may start the processes of the per-process dimension.
const OPEN: &str = "id: x
starters: {roles: [salesperson, supervisor, admin, maintenance, designer, integrator]}
start: [{id: s, next: e}]
nodes: {e: {type: end}}
";
const SALES_ONLY: &str = "id: sales-only
starters: {roles: [salesperson], groups: [east], users: [designer]}
start: [{id: s, next: e}]
nodes: {e: {type: end}}
";
const UNDECLARED: &str = "id: undeclared
start: [{id: s, next: e}]
nodes: {e: {type: end}}
";

#[tokio::test]
async fn each_role_gets_exactly_the_routes_it_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordo.db");
    let engine = Arc::new(Engine::open(Config::new(db.clone())).unwrap());
    for (name, yaml) in [("x", OPEN), ("s", SALES_ONLY), ("u", UNDECLARED)] {
        engine.deploy(name, yaml).await.unwrap();
    }
    let directory = Arc::new(Directory::open(&db).unwrap());
    let mut tokens = Vec::new();
    for role in Role::ALL {
        let name = role.name().to_owned();
        directory
            .add(&Person {
                name: name.clone(),
                roles: vec![role],
                // The supervisor is in the group `east` that may start sales-only.
                groups: if role == Supervisor {
                    vec!["east".into()]
                } else {
                    vec![]
                },
                ..Person::default()
            })
            .unwrap();
        tokens.push((role, directory.create_token(&name).unwrap()));
    }
    let backups = dir.path().join("backups");
    let app = router(AppState {
        engine,
        directory,
        backups,
    });
    let table = Table::new(SERVER.iter().copied());
    let send = |method: &str, path: &str, body: &str, token: Option<&str>| {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.starts_with('{') {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Body::from(body.to_owned())).unwrap();
        let app = app.clone();
        async move { app.oneshot(req).await.unwrap().status() }
    };
    for (method, route, path, body) in MATRIX {
        let rule = table.rule(method, &format!("/api{route}")).unwrap();
        let allowed = rule.who.roles();
        for (role, token) in &tokens {
            let status = send(method, path, body, Some(token)).await;
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {route} as {role:?}"
            );
            if allowed.contains(role) {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {route} should allow {role:?}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {route} should refuse {role:?}"
                );
            }
        }
        let anonymous = send(method, path, body, None).await;
        assert_eq!(
            anonymous == StatusCode::UNAUTHORIZED,
            rule.who != Who::Public,
            "{method} {route} without a token"
        );
    }
    // The per-process dimension: a start is the process's `starters`' to allow.
    let expect: &[(&str, &[Role])] = &[
        // roles [salesperson], groups [east] (the supervisor), users [designer]
        ("sales-only", &[Salesperson, Supervisor, Designer, Admin]),
        // no `starters`: admins and designers
        ("undeclared", &[Admin, Designer]),
        // not deployed: who may start undeclared processes learns it is missing
        ("missing", &[Admin, Designer]),
    ];
    for (process, may) in expect {
        let body = format!(r#"{{"process":"{process}"}}"#);
        for (role, token) in &tokens {
            let status = send("POST", "/api/instances", &body, Some(token)).await;
            if may.contains(role) {
                let ok = if *process == "missing" {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::CREATED
                };
                assert_eq!(status, ok, "{role:?} starting {process}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} starting {process}");
            }
        }
    }
}
