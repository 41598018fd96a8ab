//! Data-driven loader and validator tests: one file per case under `fixtures/`,
//! each invalid one with a snapshot of its exact diagnostics (review changes with
//! `cargo insta review`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use ordo_engine::model::{self, Options};
use std::path::Path;

/// What `ordo validate` knows: the product's roles, for `starters`.
fn options() -> Options {
    Options {
        roles: Some(ordo_server::auth::Role::names()),
        ..Options::default()
    }
}

/// Loads every `.yaml` of `dir` as one deployment, so call targets resolve.
fn load_dir(dir: &str) -> Vec<(String, String, model::Loaded)> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut names: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let name = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            let loaded = model::load(&name, &text, &options());
            (name, text, loaded)
        })
        .collect()
}

/// `(path, text)` of every file in `dir`, relative to the repository.
fn read_files(dir: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

fn render(text: &str, loaded: &model::Loaded) -> String {
    loaded
        .diagnostics
        .iter()
        .map(|d| d.render(text))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn invalid_fixtures_give_their_diagnostics() {
    insta::glob!("fixtures/invalid/*.yaml", |path| {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let name = format!("invalid/{stem}.yaml");
        let bytes = std::fs::read(path).unwrap();
        let (text, loaded) = match model::text_from_bytes(&name, bytes) {
            Ok(text) => {
                // Loaded as a deployment of its own, as `ordo validate FILE` does.
                let mut all = model::load_deployment(&[(name.clone(), text.clone())], &options());
                (text, all.pop().unwrap())
            }
            Err(d) => (
                String::new(),
                model::Loaded {
                    file: name.clone(),
                    process: None,
                    diagnostics: vec![*d],
                },
            ),
        };
        assert!(!loaded.diagnostics.is_empty(), "{name}: no diagnostic");
        // The fixture is named after the code it exercises (`code` or `code-variant`).
        assert!(
            loaded
                .diagnostics
                .iter()
                .any(|d| stem == d.code || stem.starts_with(&format!("{}-", d.code))),
            "{name}: expected a `{stem}` diagnostic, got {:?}",
            loaded
                .diagnostics
                .iter()
                .map(|d| d.code)
                .collect::<Vec<_>>()
        );
        let warning_only = loaded.diagnostics.iter().all(|d| !d.is_error());
        assert_eq!(
            loaded.process.is_some(),
            warning_only,
            "{name}: a process is built exactly when there is no error"
        );
        insta::assert_snapshot!(render(&text, &loaded));
    });
}

#[test]
fn every_valid_fixture_loads_without_a_diagnostic() {
    let mut files = read_files("tests/fixtures/valid");
    files.sort();
    assert!(files.len() >= 8);
    for loaded in model::load_deployment(&files, &options()) {
        let text = &files.iter().find(|(n, _)| *n == loaded.file).unwrap().1;
        assert!(
            loaded.diagnostics.is_empty(),
            "{}:\n{}",
            loaded.file,
            render(text, &loaded)
        );
        assert!(loaded.process.is_some());
    }
}

#[test]
fn valid_fixtures_use_every_node_type() {
    let mut seen = std::collections::BTreeSet::new();
    for (_, _, loaded) in load_dir("valid") {
        let p = loaded.process.expect("valid");
        for el in p.graph.graph.node_weights() {
            seen.insert(el.kind);
        }
    }
    for ty in model::raw::Node::TYPES {
        assert!(seen.contains(ty), "no valid fixture has a `{ty}` node");
    }
}

#[test]
fn there_is_an_invalid_fixture_per_error_kind() {
    assert!(load_dir("invalid").len() >= 30);
}

#[test]
fn crm_processes_are_valid() {
    let files = read_files("processes/crm");
    let ids: Vec<_> = model::load_deployment(&files, &options())
        .into_iter()
        .map(|l| {
            assert!(l.diagnostics.is_empty(), "{}: {:?}", l.file, l.diagnostics);
            l.process.unwrap().def.id
        })
        .collect();
    for id in [
        "lead-to-cash",
        "discount-approval",
        "custom-order-review",
        "new-customer-approval",
    ] {
        assert!(ids.iter().any(|i| i == id), "missing {id}");
    }
}

#[test]
fn mermaid_diagram_of_a_process() {
    let (_, _, loaded) = load_dir("valid")
        .into_iter()
        .find(|(n, _, _)| n.ends_with("gateways.yaml"))
        .unwrap();
    insta::assert_snapshot!(loaded.process.unwrap().graph.to_mermaid());
}
