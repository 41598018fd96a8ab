//! Helpers shared by the server's integration tests.

use std::collections::BTreeSet;

/// The `(method, path)` of every route declared in `src/api.rs` (lower-case
/// method, path below `/api`), read from the source so that a new route is seen
/// by the tests that must cover it.
pub fn declared_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in include_str!("../../src/api.rs").lines().map(str::trim) {
        let Some((path, handlers)) = line
            .strip_prefix(".route(\"")
            .and_then(|r| r.split_once('"'))
        else {
            continue;
        };
        for method in ["get", "post"] {
            if handlers.contains(&format!("{method}(")) {
                out.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    out
}
