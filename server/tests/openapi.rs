//! `server/openapi.json` is checked in; this test fails when it no longer
//! describes the API: a route without an operation (or the reverse), or a request
//! type whose fields differ from its schema.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use serde_json::Value;
use std::collections::BTreeSet;

mod common;

const API: &str = include_str!("../src/api.rs");

fn document() -> Value {
    serde_json::from_str(include_str!("../openapi.json")).unwrap()
}

/// The field names of `struct name` in `src/api.rs`.
fn fields(name: &str) -> BTreeSet<String> {
    let start = API
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| unreachable!("no struct {name} in api.rs"));
    let body = &API[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with('#') && l.contains(':'))
        .map(|l| l.split(':').next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn every_route_has_an_operation_and_every_operation_a_route() {
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let declared: BTreeSet<(String, String)> = common::declared_routes()
        .into_iter()
        .map(|(m, p)| (m, format!("/api{p}")))
        .collect();
    assert!(declared.len() >= 20, "{declared:?}");
    assert_eq!(declared, documented, "server/openapi.json is stale");
}

#[test]
fn request_schemas_match_the_request_types() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut checked = 0;
    for (name, schema) in schemas {
        if !name.ends_with("Request") {
            continue;
        }
        let documented: BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(fields(name), documented, "schema {name} is stale");
        checked += 1;
    }
    assert!(checked >= 6);
}

#[test]
fn the_document_is_served_as_checked_in() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(API.contains("include_str!(\"../openapi.json\")"));
}
