//! Hand-written parts of the JSON Schema of the process format, for the fields the
//! loader reads in more than one shape (a timer as a string or a map) or checks more
//! closely than their Rust type says (`priority` is a `Value`, but only a whole
//! number from 0 to 100 or an `=expression` loads). [`super::raw`] points its fields
//! here with `#[schemars(schema_with = ...)]` and `#[schemars(transform = ...)]`.
//!
//! The rule: the schema accepts every file the loader accepts and rejects what it
//! can see to be wrong without evaluating anything (a test validates every shipped
//! process and fixture against the checked-in schema with an independent validator).

use super::raw::Node;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

/// What an `=expression` string looks like, for `pattern`.
const EXPRESSION: &str = "^=";

/// Process and node ids: a letter or `_`, then letters, digits, `_`, `-`, `.`.
pub(crate) const ID_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_.-]{0,127}$";
/// Variable and form field names: CEL identifiers.
pub(crate) const VAR_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]{0,127}$";

/// A timer: a duration written as a plain string, or a map with exactly one of
/// `duration`, `date` and `cycle`.
pub(crate) fn timer(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A timer. Written as a plain string it is a duration (`PT15M`, `P5BD`, `=expression`); written as a map it has exactly one of `duration`, `date` and `cycle`.",
        "oneOf": [
            {
                "type": "string",
                "description": "A duration: ISO 8601 (`PT15M`, `P1DT12H`, `P2W`), business days on a working calendar (`P5BD`), or `=expression` giving one.",
                "pattern": "^(P|=)",
                "examples": ["PT15M", "P2BD", "P3D", "=reminder_after"]
            },
            {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "duration": {
                        "type": "string",
                        "description": "An ISO 8601 duration (`PT15M`, `P1DT12H`, `P2W`), a business-day duration on a working calendar (`P5BD`: five working days), or `=expression`.",
                        "pattern": "^(P|=)",
                        "examples": ["PT15M", "P5BD"]
                    },
                    "date": {
                        "type": "string",
                        "description": "An RFC 3339 date-time (`2027-01-04T09:00:00+08:00`), or `=expression`.",
                        "examples": ["2027-01-04T09:00:00+08:00", "=deadline"]
                    },
                    "cycle": {
                        "type": "string",
                        "description": "A cron expression, 5 fields (`min hour day month weekday`) or 6–7 with seconds and year (`0 0 9 * * Mon`). Repeats (start events and event subprocesses only).",
                        "examples": ["0 9 * * Mon", "0 0 9 * * *"]
                    },
                    "timezone": {
                        "type": "string",
                        "description": "The IANA time zone a `cycle` is read in (`Asia/Shanghai`). Defaults to UTC.",
                        "examples": ["Asia/Shanghai", "Europe/Paris"]
                    },
                    "calendar": {
                        "type": "string",
                        "description": "The working calendar for a business-day duration; defaults to the process's.",
                        "examples": ["default"]
                    }
                },
                "oneOf": [
                    { "required": ["duration"] },
                    { "required": ["date"] },
                    { "required": ["cycle"] }
                ]
            }
        ]
    })
}

/// `priority`: a whole number from 0 to 100, or `=expression` (or empty: 50).
pub(crate) fn priority(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            { "type": "integer", "minimum": 0, "maximum": 100 },
            { "type": "string", "pattern": EXPRESSION },
            { "type": "null" }
        ],
        "examples": [60, "=vip ? 90 : 40"]
    })
}

/// A user name or `=expression` (`assignee`); empty is the same as absent.
pub(crate) fn name_or_expression(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "null"] })
}

/// `candidate_users`, `candidate_groups`: a list of names (each may be
/// `=expression`), or one name or `=expression`.
/// Examples an editor shows for `candidate_users` (a plain function: the
/// derive takes an expression, and array literals need syn's full parser).
pub(crate) fn example_users() -> Value {
    serde_json::json!(["alice", "bob"])
}

/// Examples for `candidate_groups`.
pub(crate) fn example_groups() -> Value {
    serde_json::json!(["sales"])
}

pub(crate) fn names(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            { "type": "array", "items": { "type": "string" } },
            { "type": "string" },
            { "type": "null" }
        ]
    })
}

/// A business key: text, a number (written as its text), or `=expression`.
pub(crate) fn business_key(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "number", "null"], "examples": ["=order_id"] })
}

/// A form field's default: a literal of the field's type, or `=expression`.
pub(crate) fn form_default(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "number", "boolean", "null"] })
}

/// Adds `enum` (the `const`s of the `oneOf`) to a closed set of names, so that
/// editors complete it even where they do not read `oneOf`.
pub(crate) fn closed_set(schema: &mut Schema) {
    let names: Vec<Value> = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .filter_map(|a| a.get("const").cloned())
                .collect()
        })
        .unwrap_or_default();
    if !names.is_empty() {
        schema.insert("enum".into(), Value::Array(names));
    }
}

/// A node: a map whose `type` is one of the node types; the `oneOf` of the
/// derived schema then checks the fields of that type.
pub(crate) fn node(schema: &mut Schema) {
    schema.insert("type".into(), json!("object"));
    schema.insert("required".into(), json!(["type"]));
    schema.insert(
        "properties".into(),
        json!({
            "type": {
                "description": "What the node is. Each type takes its own fields.",
                "enum": Node::TYPES,
            }
        }),
    );
}

/// A declared variable: its `default` (when not empty) must be of its `type`.
pub(crate) fn variable(schema: &mut Schema) {
    let rule = |ty: &str| {
        json!({
            "if": { "properties": { "type": { "const": ty } }, "required": ["type"] },
            "then": { "properties": { "default": { "type": [if ty == "date" { "string" } else { ty }, "null"] } } }
        })
    };
    let rules: Vec<Value> = [
        "string", "number", "integer", "boolean", "date", "object", "array",
    ]
    .into_iter()
    .map(rule)
    .collect();
    schema.insert("allOf".into(), Value::Array(rules));
}

/// Map keys must be ids (`nodes`).
pub(crate) fn id_keys(schema: &mut Schema) {
    schema.insert("propertyNames".into(), json!({ "pattern": ID_PATTERN }));
}

/// Map keys must be variable names (`variables`, `form`).
pub(crate) fn var_keys(schema: &mut Schema) {
    schema.insert("propertyNames".into(), json!({ "pattern": VAR_PATTERN }));
}
