//! The README's route tables are the access tables of the code
//! (`ordo_server::access::SERVER`, `ordo_crm::access::RULES`), rendered: this
//! test fails when they differ. Regenerate them with
//! `ORDO_UPDATE_DOCS=1 cargo test --test access_docs -- --test-threads=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a failure is the test failing

use ordo_server::access::{Rule, markdown};

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The text between `<!-- access:NAME -->` and `<!-- /access:NAME -->`.
fn block<'a>(text: &'a str, name: &str) -> Option<(usize, usize, &'a str)> {
    let open = format!("<!-- access:{name} -->\n");
    let close = format!("<!-- /access:{name} -->");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some((start, end, &text[start..end]))
}

fn check(name: &str, rules: &[Rule]) {
    let text = std::fs::read_to_string(README).unwrap();
    let (start, end, found) = block(&text, name)
        .unwrap_or_else(|| panic!("README.md has no `<!-- access:{name} -->` block"));
    let want = markdown(rules);
    if found == want {
        return;
    }
    if std::env::var_os("ORDO_UPDATE_DOCS").is_some() {
        let updated = format!("{}{want}{}", &text[..start], &text[end..]);
        std::fs::write(README, updated).unwrap();
        return;
    }
    panic!(
        "README.md's `{name}` route table differs from the code's access table; \
         run `ORDO_UPDATE_DOCS=1 cargo test --test access_docs -- --test-threads=1`.\nExpected:\n{want}"
    );
}

#[test]
fn the_readme_lists_who_may_call_each_server_route_as_the_code_enforces_it() {
    check("server", ordo_server::access::SERVER);
}

#[test]
fn the_readme_lists_who_may_call_each_crm_route_as_the_code_enforces_it() {
    check("crm", ordo_crm::access::RULES);
}
