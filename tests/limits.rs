//! R5/R6: hostile input gets a located error, never a panic, and stays fast.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use ordo_engine::model::{self, MAX_FILE_BYTES, MAX_NODES, Options};
use proptest::prelude::*;

fn codes(text: &str) -> Vec<&'static str> {
    model::load("x.yaml", text, &Options::default())
        .diagnostics
        .into_iter()
        .map(|d| d.code)
        .collect()
}

#[test]
fn oversized_file() {
    let text = format!("id: big\n#{}\n", "x".repeat(MAX_FILE_BYTES));
    assert_eq!(codes(&text), ["file-too-large"]);
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for n in names {
        text.push_str(&format!(
            "{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = n;
    }
    let started = std::time::Instant::now();
    let c = codes(&text);
    assert_eq!(c, ["yaml-invalid"]);
    // Not a timing test of the loader's speed: a bound that only an expansion breaks.
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn too_many_nodes() {
    let mut text = String::from("id: many\nstart: [{id: s, next: n0}]\nnodes:\n");
    for i in 0..=MAX_NODES {
        text.push_str(&format!("  n{i}: {{type: end}}\n"));
    }
    assert!(codes(&text).contains(&"too-many-nodes"));
}

#[test]
fn deep_nesting() {
    let text = format!(
        "id: deep\nnodes: {}{}\n",
        "{a: ".repeat(200),
        "}".repeat(200)
    );
    assert_eq!(codes(&text), ["too-deep"]);
}

#[test]
fn all_problems_of_a_file_come_together() {
    let text = "id: x\nstart: [{id: s, next: a}]\nnodes:\n  a: {type: user, asignee: x, next: b}\n  b: {type: servce}\n  c: {type: end, foo: 1}\n";
    assert_eq!(
        codes(text),
        ["unknown-field", "unknown-type", "unknown-field"]
    );
}

fn yaml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-z_]{1,8}",
        "=[a-z .<>=!&|()+*'0-9]{0,20}",
        "P[0-9]{0,3}[YMWDTHSB]{0,4}",
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i32>().prop_map(|n| n.to_string()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("type".to_owned()),
                        Just("next".to_owned()),
                        Just("when".to_owned()),
                        Just("to".to_owned()),
                        Just("timer".to_owned()),
                        Just("branches".to_owned()),
                        Just("nodes".to_owned()),
                        Just("start".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|v| format!(
                "{{{}}}",
                v.into_iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let loaded = model::load("r.yaml", &text, &Options::default());
        prop_assert!(loaded.process.is_some() || loaded.has_errors());
    }

    #[test]
    fn random_yaml_never_panics(
        id in "[a-z]{1,5}",
        nodes in prop::collection::vec(("[a-e]", yaml_value()), 0..6),
        start in yaml_value(),
    ) {
        let mut text = format!("id: {id}\nstart: {start}\nnodes:\n");
        for (k, v) in &nodes {
            text.push_str(&format!("  {k}: {v}\n"));
        }
        let loaded = model::load("r.yaml", &text, &Options::default());
        for d in &loaded.diagnostics {
            prop_assert!(d.line >= 1 && d.column >= 1);
            let _ = d.render(&text);
        }
        prop_assert!(loaded.process.is_some() || loaded.has_errors());
    }

    #[test]
    fn random_expressions_never_panic(src in "[a-z0-9 .()\\[\\]{}<>=!&|+*/%?:'\",-]{0,80}") {
        let _ = model::expr::compile(&src);
    }
}
