//! Every API route × every role: a role the route does not allow gets 403, one it
//! allows never does. The routes are read from `src/api.rs`, so a route added
//! there without a row here fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ordo_engine::engine::{Config, Engine};
use ordo_server::auth::{Directory, Person, Role};
use ordo_server::{AppState, router};
use std::collections::BTreeSet;

mod common;
use std::sync::Arc;
use tower::ServiceExt;

use Role::*;

const STARTERS: &[Role] = &[Salesperson, Supervisor, Admin, Designer, Integrator];
const STAFF: &[Role] = &[Salesperson, Supervisor, Admin, Designer];

/// (method, route as written in api.rs, a concrete path, a body, allowed roles)
const MATRIX: &[(&str, &str, &str, &str, &[Role])] = &[
    (
        "POST",
        "/definitions",
        "/api/definitions",
        "id: x",
        &[Designer, Admin],
    ),
    (
        "GET",
        "/definitions",
        "/api/definitions",
        "",
        &[Designer, Admin, Supervisor],
    ),
    (
        "GET",
        "/definitions/{id}",
        "/api/definitions/x",
        "",
        &[Designer, Admin, Supervisor],
    ),
    (
        "POST",
        "/instances",
        "/api/instances",
        r#"{"process":"x"}"#,
        STARTERS,
    ),
    (
        "GET",
        "/instances",
        "/api/instances",
        "",
        &[Supervisor, Admin],
    ),
    (
        "GET",
        "/instances/{id}",
        "/api/instances/1",
        "",
        &[Supervisor, Admin],
    ),
    (
        "POST",
        "/instances/{id}/cancel",
        "/api/instances/1/cancel",
        "",
        &[Admin],
    ),
    (
        "POST",
        "/messages",
        "/api/messages",
        r#"{"name":"m"}"#,
        &[Integrator, Admin],
    ),
    (
        "POST",
        "/signals",
        "/api/signals",
        r#"{"name":"s"}"#,
        &[Integrator, Admin],
    ),
    ("GET", "/tasks", "/api/tasks", "", STAFF),
    (
        "GET",
        "/tasks/{instance}/{activity}",
        "/api/tasks/1/2",
        "",
        STAFF,
    ),
    (
        "POST",
        "/tasks/{instance}/{activity}/claim",
        "/api/tasks/1/2/claim",
        "",
        STAFF,
    ),
    (
        "POST",
        "/tasks/{instance}/{activity}/unclaim",
        "/api/tasks/1/2/unclaim",
        "",
        STAFF,
    ),
    (
        "POST",
        "/tasks/{instance}/{activity}/delegate",
        "/api/tasks/1/2/delegate",
        r#"{"to":"x"}"#,
        STAFF,
    ),
    (
        "POST",
        "/tasks/{instance}/{activity}/complete",
        "/api/tasks/1/2/complete",
        "{}",
        STAFF,
    ),
    ("GET", "/incidents", "/api/incidents", "", &[Admin]),
    (
        "POST",
        "/incidents/{instance}/{activity}/retry",
        "/api/incidents/1/2/retry",
        "{}",
        &[Admin],
    ),
    (
        "POST",
        "/incidents/{instance}/{activity}/resolve",
        "/api/incidents/1/2/resolve",
        "{}",
        &[Admin],
    ),
    ("POST", "/backup", "/api/backup", "", &[Maintenance, Admin]),
    ("GET", "/openapi.json", "/api/openapi.json", "", &Role::ALL),
    (
        "GET",
        "/definitions/{id}/diagram",
        "/api/definitions/x/diagram",
        "",
        &[Designer, Admin, Supervisor],
    ),
];

#[test]
fn every_route_has_a_row_in_the_matrix() {
    let declared = common::declared_routes();
    let covered: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, r, ..)| (m.to_lowercase(), (*r).to_owned()))
        .collect();
    assert!(declared.len() >= 20, "the route parser found {declared:?}");
    assert_eq!(declared, covered, "routes and matrix rows differ");
}

#[tokio::test]
async fn each_role_gets_exactly_the_routes_it_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordo.db");
    let engine = Arc::new(Engine::open(Config::new(db.clone())).unwrap());
    let directory = Arc::new(Directory::open(&db).unwrap());
    let mut tokens = Vec::new();
    for role in Role::ALL {
        let name = role.name().to_owned();
        directory
            .add(&Person {
                name: name.clone(),
                roles: vec![role],
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
    for (method, route, path, body, allowed) in MATRIX {
        for (role, token) in &tokens {
            let mut req = Request::builder()
                .method(*method)
                .uri(*path)
                .header("authorization", format!("Bearer {token}"));
            if body.starts_with('{') {
                req = req.header("content-type", "application/json");
            }
            let res = app
                .clone()
                .oneshot(req.body(Body::from(*body)).unwrap())
                .await
                .unwrap();
            let status = res.status();
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
        let anonymous = Request::builder()
            .method(*method)
            .uri(*path)
            .body(Body::from(*body))
            .unwrap();
        let res = app.clone().oneshot(anonymous).await.unwrap();
        let public = *route == "/openapi.json";
        assert_eq!(
            res.status() == StatusCode::UNAUTHORIZED,
            !public,
            "{method} {route} without a token"
        );
    }
}
