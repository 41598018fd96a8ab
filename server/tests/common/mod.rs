//! Helpers shared by the server's integration tests.

#![allow(dead_code)] // each test file uses some of them

use ordo_server::auth::{Directory, Person, Role};
use std::collections::BTreeSet;

/// Adds each `(name, roles, groups)` to the directory; `ann`, when listed, is
/// led by `ann_leader` (so supervisor visibility has someone to see).
pub fn add_people(directory: &Directory, people: &[(&str, &[Role], &[&str])], ann_leader: &str) {
    // Ann last: her supervisor must exist before she can be led.
    let (ann, others): (Vec<_>, Vec<_>) = people.iter().partition(|(n, ..)| *n == "ann");
    for (name, roles, groups) in others.into_iter().chain(ann) {
        directory
            .add(&Person {
                name: (*name).into(),
                roles: roles.to_vec(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                supervisor: (*name == *"ann").then(|| ann_leader.to_owned()),
            })
            .expect("a person is added");
    }
}

/// An expense claim: a review assigned to `ann` with a form, then a payment
/// offered to the `finance` group.
pub const FLOW: &str = "
id: expense
name: Expense claim
starters: {roles: [salesperson]}
start: [{id: s, next: review}]
nodes:
  review:
    type: user
    name: Review the claim
    assignee: ann
    form:
      amount: {type: number, required: true, min: 1, label: Amount}
      approved: {type: boolean, required: true, label: Approve}
      note: {type: text, label: Note}
    next: pay
  pay:
    type: user
    name: Pay the claim
    candidate_groups: [finance]
    next: done
  done: {type: end}
";

/// The `(method, path)` of every route declared in `src/api.rs` (lower-case
/// method, path below `/api`), read from the source so that a new route is seen
/// by the tests that must cover it.
pub fn declared_routes() -> BTreeSet<(String, String)> {
    routes_in(include_str!("../../src/api.rs"))
}

/// The same for the pages (`src/pages/mod.rs`).
pub fn declared_pages() -> BTreeSet<(String, String)> {
    routes_in(include_str!("../../src/pages/mod.rs"))
}

/// Every `.route("PATH", get(..).post(..))` in `source`, however it is wrapped.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let flat: String = source.split_whitespace().collect();
    let mut out = BTreeSet::new();
    for chunk in flat.split(".route(\"").skip(1) {
        let Some((path, rest)) = chunk.split_once('"') else {
            continue;
        };
        // The handlers: the rest of the `.route(` call, up to its closing paren.
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
        for method in ["get", "post"] {
            let call = format!("{method}(");
            let found =
                handlers.starts_with(&format!(",{call}")) || handlers.contains(&format!(".{call}"));
            if found {
                out.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    out
}
