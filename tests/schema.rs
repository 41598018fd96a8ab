//! The checked-in JSON Schema (`docs/process.schema.json`) against the files the
//! loader accepts, with an independent validator (the `jsonschema` crate, draft
//! 2020-12), as an editor's YAML language server would use it: every shipped
//! process, every example and every valid fixture passes it; the invalid fixtures
//! whose problem is one of shape fail it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use ordo_engine::model::{self, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs/process.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "the schema declares its draft"
    );
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

/// The YAML document as the JSON an editor validates.
fn as_json(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

/// The schema's complaints about `text`, one line each.
fn problems(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    let doc = as_json(text);
    v.iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// `(name, text)` of every process the project ships or shows: `processes/**`,
/// `examples/*.yaml` and the processes written inside `examples/*.rs`, the
/// whole-process examples of `docs/process-format.md`, and `tests/fixtures/valid/`.
fn accepted_files() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    for dir in ["processes", "examples", "tests/fixtures/valid"] {
        yaml_files(&root().join(dir), &mut paths);
    }
    paths.sort();
    let mut out: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            (name, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&p).unwrap();
        let flow = src
            .split_once("const FLOW: &str = r#\"")
            .and_then(|(_, rest)| rest.split_once("\"#;"))
            .or_else(|| {
                src.split_once("const FLOW: &str = \"")
                    .and_then(|(_, rest)| rest.split_once("\";"))
            });
        if let Some((text, _)) = flow {
            assert!(!text.contains('\\'), "{}: escapes in FLOW", p.display());
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            out.push((name, text.to_owned()));
        }
    }
    let doc = std::fs::read_to_string(root().join("docs/process-format.md")).unwrap();
    for (i, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let text = block.split("```").next().unwrap();
        if text.starts_with("id:") {
            out.push((
                format!("docs/process-format.md block {}", i + 1),
                text.into(),
            ));
        }
    }
    out
}

#[test]
fn every_shipped_process_example_and_valid_fixture_passes_the_schema() {
    let v = validator();
    let files = accepted_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    // The ones the issue found rejected must be among them.
    for expected in [
        "processes/crm/lead-to-cash.yaml",
        "processes/crm/complaint.yaml",
        "tests/fixtures/valid/user-tasks.yaml",
        "tests/fixtures/valid/events.yaml",
        "examples/saga.yaml",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not checked: {names:?}"
        );
    }
    assert!(files.len() >= 21, "{names:?}");
    let mut failures = Vec::new();
    for (name, text) in &files {
        // They are processes the loader accepts (the schema must then accept them).
        let loaded = model::load(name, text, &Options::default());
        let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{name} does not load: {errors:?}");
        let p = problems(&v, text);
        if !p.is_empty() {
            failures.push(format!("{name}:\n  {}", p.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "the schema rejects files the loader accepts:\n{}",
        failures.join("\n")
    );
}

/// Invalid fixtures whose problem the schema can see: an unknown field, a wrong
/// type, a missing field, an unknown node type or value, a bad name or id.
const SHAPE_PROBLEMS: &[&str] = &[
    "unknown-field-top",
    "unknown-field",
    "unknown-type",
    "unknown-value",
    "missing-field",
    "missing-field-node",
    "missing-type",
    "invalid-value",
    "invalid-id",
    "not-a-mapping",
    "empty-file",
    "boundary-not-allowed",
    "bad-timer",
    "bad-variable",
];

#[test]
fn invalid_fixtures_of_shape_fail_the_schema() {
    let v = validator();
    for name in SHAPE_PROBLEMS {
        let path = root().join(format!("tests/fixtures/invalid/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = model::load(name, &text, &Options::default());
        assert!(
            loaded.diagnostics.iter().any(|d| d.is_error()),
            "{name} is an invalid fixture the loader rejects"
        );
        assert!(
            !v.is_valid(&as_json(&text)),
            "the schema accepts {name}.yaml, which the loader rejects"
        );
    }
}

/// A minimal process around one user task with `fields`.
fn user_task(fields: &str) -> String {
    format!(
        "id: p\nstart: [{{id: s, next: t}}]\nnodes:\n  t:\n    type: user\n{fields}    next: e\n  e: {{type: end}}\n"
    )
}

/// The schema and the loader agree on the fields read in two shapes, and on
/// those the loader checks more closely than their type.
#[test]
fn the_schema_and_the_loader_agree_field_by_field() {
    let v = validator();
    let cases: &[(&str, bool)] = &[
        ("    due: P2BD\n", true),
        ("    due: { duration: P2BD, calendar: default }\n", true),
        ("    due: { date: \"2027-01-04T09:00:00+08:00\" }\n", true),
        (
            "    due: { duration: P2BD, date: \"2027-01-04T09:00:00Z\" }\n",
            false,
        ),
        ("    due: { durtion: P2BD }\n", false),
        ("    due: 5\n", false),
        ("    boundary: [{ timer: P1BD, to: e }]\n", true),
        (
            "    boundary: [{ timer: { duration: PT1H }, interrupting: false, to: e }]\n",
            true,
        ),
        ("    priority: 60\n", true),
        ("    priority: \"=vip ? 90 : 40\"\n", true),
        ("    priority: high\n", false),
        ("    priority: 101\n", false),
        ("    priority: 1.5\n", false),
        ("    candidate_users: [alice, =owner]\n", true),
        ("    candidate_users: alice\n", true),
        ("    candidate_groups: =teams\n", true),
        ("    candidate_groups: [sales, 5]\n", false),
        ("    candidate_groups: { a: b }\n", false),
        ("    assignee: =lead.owner\n", true),
        ("    assignee: 5\n", false),
        ("    form: { ok: { type: boolean, default: true } }\n", true),
        ("    form: { ok: { type: checkbox } }\n", false),
        ("    form: { ok: { type: text, default: [a] } }\n", false),
        ("    name: 123\n", false),
    ];
    for (fields, ok) in cases {
        let text = user_task(fields);
        let loads = model::load("p.yaml", &text, &Options::default())
            .diagnostics
            .iter()
            .all(|d| !d.is_error());
        assert_eq!(loads, *ok, "the loader on:\n{text}");
        assert_eq!(
            problems(&v, &text).is_empty(),
            *ok,
            "the schema on:\n{text}{:?}",
            problems(&v, &text)
        );
    }
}

#[test]
fn the_schema_lists_closed_sets_and_describes_fields() {
    let text = std::fs::read_to_string(root().join("docs/process.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let defs = &schema["$defs"];
    let node_types: Vec<&str> = defs["Node"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(node_types, model::raw::Node::TYPES);
    assert_eq!(defs["FieldType"]["enum"].as_array().unwrap().len(), 9);
    assert!(
        defs["VarType"]["enum"]
            .as_array()
            .unwrap()
            .contains(&"date".into())
    );
    // Every property of every definition says what it is (editors show it on hover).
    let mut undescribed = Vec::new();
    let mut walk = vec![("".to_owned(), &schema)];
    while let Some((at, s)) = walk.pop() {
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                // A node variant's `type` is its tag, described on `Node`.
                if p.get("description").is_none() && p.get("const").is_none() {
                    undescribed.push(format!("{at}/{k}"));
                }
            }
        }
        for key in ["$defs", "oneOf"] {
            match s.get(key) {
                Some(Value::Object(m)) => {
                    walk.extend(m.iter().map(|(k, v)| (format!("{at}/{k}"), v)));
                }
                Some(Value::Array(a)) => {
                    walk.extend(a.iter().map(|v| (format!("{at}/{key}"), v)));
                }
                _ => {}
            }
        }
    }
    assert!(undescribed.is_empty(), "no description: {undescribed:?}");
}
