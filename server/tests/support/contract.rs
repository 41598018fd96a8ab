//! Real responses against the OpenAPI document: each answer a test receives is
//! validated (with the `jsonschema` crate, draft 2020-12, which OpenAPI 3.1 uses)
//! against the schema the document gives for its route and status, so a handler
//! that changes its answer fails the tests until the document changes too.
//! Shared by `server/tests/api.rs` and the CRM's HTTP test (`tests/crm_flow.rs`).

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: a failure is the test failing

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// The document and the validators compiled from it so far.
pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
    checked: Mutex<usize>,
}

impl Contract {
    /// Checks responses against `doc`.
    pub fn new(doc: Value) -> Self {
        Contract {
            doc,
            validators: Mutex::new(HashMap::new()),
            checked: Mutex::new(0),
        }
    }

    /// The document's path template for `path` (query removed): the one whose
    /// literal segments match, preferring more literal segments.
    fn template(&self, method: &str, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let segs: Vec<&str> = path.split('/').collect();
        let method = method.to_ascii_lowercase();
        self.doc["paths"]
            .as_object()?
            .iter()
            .filter(|(t, ops)| {
                let ts: Vec<&str> = t.split('/').collect();
                ts.len() == segs.len()
                    && ts
                        .iter()
                        .zip(&segs)
                        .all(|(t, s)| t.starts_with('{') || t == s)
                    && ops.get(&method).is_some()
            })
            .max_by_key(|(t, _)| t.split('/').filter(|s| !s.starts_with('{')).count())
            .map(|(t, _)| t.clone())
    }

    /// Panics unless `body`, answered with `status` to `method path`, is what
    /// the document says that route answers with that status.
    pub fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        let Some(template) = self.template(method, path) else {
            panic!("{method} {path} is not in the OpenAPI document");
        };
        let method = method.to_ascii_lowercase();
        let responses = &self.doc["paths"][&template][&method]["responses"];
        let Some(response) = responses.get(status.to_string()) else {
            panic!(
                "{method} {template} answered {status}, which the OpenAPI document does not declare: {body}"
            );
        };
        let Some(schema) = response["content"]["application/json"].get("schema") else {
            // A text answer (YAML, CSV, a diagram, metrics): nothing to parse.
            assert!(
                response["content"]
                    .as_object()
                    .is_some_and(|c| !c.is_empty()),
                "{method} {template} {status}: no content declared"
            );
            return;
        };
        let key = format!("{method} {template} {status}");
        let validator = {
            let mut cache = self.validators.lock().unwrap();
            cache
                .entry(key.clone())
                .or_insert_with(|| {
                    // The response schema, with the components its `$ref`s point to.
                    let mut root = match schema {
                        Value::Object(m) => m.clone(),
                        other => panic!("{key}: schema {other}"),
                    };
                    root.insert("components".into(), self.doc["components"].clone());
                    let v = jsonschema::draft202012::new(&Value::Object(root))
                        .unwrap_or_else(|e| panic!("{key}: the schema does not compile: {e}"));
                    std::sync::Arc::new(v)
                })
                .clone()
        };
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{key}: the answer does not match the OpenAPI document:\n  {}\nanswer: {body}",
            errors.join("\n  ")
        );
        *self.checked.lock().unwrap() += 1;
    }

    /// How many JSON answers passed so far.
    #[allow(dead_code)] // each test file uses some of the helpers
    pub fn checked(&self) -> usize {
        *self.checked.lock().unwrap()
    }
}
