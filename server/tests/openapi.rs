//! The OpenAPI document is built from code (`src/openapi.rs`, `api::document`);
//! these tests hold it to the routes: every route of `src/api.rs` has exactly
//! one operation and the reverse, operations are tagged with unique ids, every
//! answer has a real schema, and the server serves what is built. (The
//! checked-in `server/openapi.json` is compared with `ordo openapi` by
//! `tests/cli.rs`; real answers are checked against the document by
//! `tests/api.rs` through `support/contract.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::BTreeSet;
use tower::ServiceExt;

mod common;

fn document() -> Value {
    ordo_server::openapi::document(&[])
}

#[test]
fn every_route_has_an_operation_and_every_operation_a_route() {
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let mut declared: BTreeSet<(String, String)> = common::declared_routes()
        .into_iter()
        .map(|(m, p)| (m, format!("/api{p}")))
        .collect();
    assert!(declared.len() >= 20, "{declared:?}");
    // The two routes outside `/api` (`lib.rs`).
    declared.insert(("get".into(), "/health".into()));
    declared.insert(("get".into(), "/metrics".into()));
    assert_eq!(
        declared, documented,
        "api::document is out of step with api::routes"
    );
}

#[test]
fn operations_have_tags_unique_ids_and_typed_answers() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids = BTreeSet::new();
    let mut typed = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let what = format!("{method} {path}");
            let id = op["operationId"].as_str().expect(&what);
            assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
            assert!(
                id.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{what}: {id}"
            );
            let tag = op["tags"][0].as_str().expect(&what);
            assert!(tags.contains(tag), "{what}: undeclared tag {tag}");
            for (status, r) in op["responses"].as_object().unwrap() {
                let Some(schema) = r["content"]["application/json"].get("schema") else {
                    continue;
                };
                // No answer is an untyped object: a `$ref`, an array of typed
                // items, or an object with properties.
                let ok = schema.get("$ref").is_some()
                    || schema["items"].get("$ref").is_some()
                    || schema.get("properties").is_some()
                    || schema["additionalProperties"] == Value::Bool(true);
                assert!(ok, "{what} {status}: untyped schema {schema}");
                if status.starts_with('2') {
                    typed += 1;
                }
            }
        }
    }
    assert!(ids.len() >= 23 && typed >= 20, "{ids:?}");
    // The answer the issue found wrong: a list, declared as a list.
    let list = &doc["paths"]["/api/instances"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(list["type"], "array");
    assert_eq!(list["items"]["$ref"], "#/components/schemas/InstanceRow");
    // Nullable fields say so.
    let row = &doc["components"]["schemas"]["InstanceRow"];
    assert_eq!(row["properties"]["business_key"]["type"][1], "null");
}

#[tokio::test]
async fn the_server_serves_the_document_it_builds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("o.db");
    let state = ordo_server::AppState {
        engine: std::sync::Arc::new(
            ordo_engine::engine::Engine::open(ordo_engine::engine::Config::new(db.clone()))
                .unwrap(),
        ),
        directory: std::sync::Arc::new(ordo_server::auth::Directory::open(&db).unwrap()),
        backups: dir.path().join("backups"),
    };
    let res = ordo_server::router(state)
        .oneshot(
            Request::get("/api/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, document());
}

/// Every schema is an object, never the boolean `true` JSON Schema allows
/// (client generators refuse it: `Vec<Value>` gives `items: true` unless the
/// document writes `{}`).
#[test]
fn no_schema_is_a_bare_boolean() {
    fn walk(v: &Value, path: &str, found: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for key in ["items", "not", "contains", "propertyNames"] {
                    if map.get(key).is_some_and(Value::is_boolean) {
                        found.push(format!("{path}/{key}"));
                    }
                }
                for (k, child) in map {
                    walk(child, &format!("{path}/{k}"), found);
                }
            }
            Value::Array(list) => {
                for (i, child) in list.iter().enumerate() {
                    walk(child, &format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&document(), "", &mut found);
    assert!(found.is_empty(), "boolean schemas at {found:?}");
}
