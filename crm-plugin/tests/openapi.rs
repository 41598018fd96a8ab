//! The CRM's part of the OpenAPI document (`http::document`, added through
//! `Plugin::openapi`) against its routes: every `.route` of `src/http.rs` has
//! exactly one operation, and the reverse.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use ordo_server::Plugin;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Every `.route("PATH", get(..).put(..))` of `source`, as (method, path).
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let flat: String = source.split_whitespace().collect();
    let mut out = BTreeSet::new();
    for chunk in flat.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').unwrap();
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let handlers = &rest[..end];
        for method in ["get", "post", "put", "delete", "patch"] {
            let call = format!("{method}(");
            if handlers.starts_with(&format!(",{call}")) || handlers.contains(&format!(".{call}")) {
                out.insert((method.to_owned(), format!("/api{path}")));
            }
        }
    }
    out
}

#[test]
fn every_crm_route_has_an_operation_and_every_operation_a_route() {
    let declared = routes_in(include_str!("../src/http.rs"));
    assert!(declared.len() >= 22, "{declared:?}");
    let plugins: Vec<Arc<dyn Plugin>> = vec![Arc::new(ordo_crm::CrmPlugin::new(None))];
    let doc = ordo_server::openapi::document(&plugins);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if path.starts_with("/api/crm/") {
                documented.insert((method.clone(), path.clone()));
                assert_eq!(op["tags"][0], "crm", "{method} {path}");
                assert!(
                    op["operationId"].as_str().unwrap().starts_with("crm_"),
                    "{method} {path}"
                );
            }
        }
    }
    assert_eq!(
        declared, documented,
        "http::document is out of step with http::routes"
    );
}
