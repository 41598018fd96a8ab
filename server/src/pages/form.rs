//! A user task's form in HTML: the inputs its fields call for, and what a browser
//! posts back read as typed values for the engine to check.
//!
//! A browser posts every value as text. Each field's type says how to read it:
//! numbers are parsed, `yes`/`no` become booleans, an empty input is no value.
//! Text that does not parse is passed on as text, so the engine's form check
//! reports it beside the field ("must be a number") rather than the page
//! guessing. A `datetime-local` input has no offset; it is read as UTC, and the
//! page says so.

use ordo_engine::model::raw::{FieldType, FormField};
use ordo_engine::runtime::form::FieldError;
use serde_json::{Map, Number, Value, json};

/// Reads the posted `pairs` for the fields of `form`; other names are ignored.
pub fn read(
    form: &indexmap::IndexMap<String, FormField>,
    pairs: &[(String, String)],
) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, field) in form {
        let Some((_, raw)) = pairs.iter().find(|(k, _)| k == name) else {
            continue;
        };
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        out.insert(name.clone(), typed(field.ty, raw));
    }
    out
}

fn typed(ty: FieldType, raw: &str) -> Value {
    let text = || Value::String(raw.to_owned());
    match ty {
        FieldType::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(text, Value::Number),
        FieldType::Integer => raw.parse::<i64>().map_or_else(|_| text(), Value::from),
        FieldType::Boolean => match raw {
            "yes" | "true" | "on" => Value::Bool(true),
            "no" | "false" => Value::Bool(false),
            _ => text(),
        },
        FieldType::Datetime => {
            for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
                if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, f) {
                    return Value::String(t.and_utc().to_rfc3339());
                }
            }
            text()
        }
        _ => text(),
    }
}

/// The fields as the task template draws them: input kind, label, limits,
/// options, the value to show and the error beside it.
///
/// The value shown is, first, what the person just posted (the form came back
/// with errors); else the instance's variable of that name; else the field's
/// default when it is a literal (an `=expression` default is the engine's to
/// evaluate when the task completes without the field).
pub fn fields(
    form: &indexmap::IndexMap<String, FormField>,
    posted: Option<&[(String, String)]>,
    variables: &Map<String, Value>,
    errors: &[FieldError],
) -> Vec<Value> {
    form.iter()
        .map(|(name, f)| {
            let value = match posted {
                Some(pairs) => pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                None => variables
                    .get(name)
                    .or(f.default.as_ref().filter(|d| !is_expression(d)))
                    .map(|v| shown(f.ty, v))
                    .unwrap_or_default(),
            };
            let error: Vec<&str> = errors
                .iter()
                .filter(|e| &e.field == name)
                .map(|e| e.message.as_str())
                .collect();
            let (input, step) = match f.ty {
                FieldType::String | FieldType::User => ("text", None),
                FieldType::Text => ("textarea", None),
                FieldType::Number => ("number", Some("any")),
                FieldType::Integer => ("number", Some("1")),
                FieldType::Boolean => ("yesno", None),
                FieldType::Date => ("date", None),
                FieldType::Datetime => ("datetime-local", None),
                FieldType::Enum => ("select", None),
            };
            let options: Vec<Value> = f
                .options
                .iter()
                .map(|o| json!({ "value": o, "selected": *o == value }))
                .collect();
            json!({
                "name": name,
                "label": f.label.clone().unwrap_or_else(|| name.clone()),
                "input": input,
                "step": step,
                "required": f.required,
                // As text, so that a limit of 0 still shows.
                "min": f.min.map(|m| m.to_string()),
                "max": f.max.map(|m| m.to_string()),
                "min_length": f.min_length,
                "max_length": f.max_length,
                "options": options,
                "value": value,
                "yes": value == "yes",
                "no": value == "no",
                "utc": f.ty == FieldType::Datetime,
                "error": if error.is_empty() { Value::Null } else { json!(error.join("; ")) },
            })
        })
        .collect()
}

fn is_expression(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with('='))
}

/// A stored value as an input shows it.
fn shown(ty: FieldType, v: &Value) -> String {
    match (ty, v) {
        (FieldType::Boolean, Value::Bool(true)) => "yes".into(),
        (FieldType::Boolean, Value::Bool(false)) => "no".into(),
        (FieldType::Datetime, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_else(|_| s.clone()),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Null) => String::new(),
        (_, other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn form() -> indexmap::IndexMap<String, FormField> {
        serde_yaml::from_str(
            "
amount: { type: number, required: true, label: Amount }
count: { type: integer }
approved: { type: boolean }
meet: { type: datetime }
level: { type: enum, options: [low, high], default: low }
note: { type: text, default: '=customer.name' }
",
        )
        .unwrap()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn posted_text_is_read_by_field_type() {
        let got = read(
            &form(),
            &pairs(&[
                ("amount", "12.5"),
                ("count", "3"),
                ("approved", "no"),
                ("meet", "2026-11-23T09:30"),
                ("level", "high"),
                ("note", "  "),
                ("other", "ignored"),
            ]),
        );
        assert_eq!(
            Value::Object(got),
            json!({
                "amount": 12.5, "count": 3, "approved": false,
                "meet": "2026-11-23T09:30:00+00:00", "level": "high"
            })
        );
    }

    #[test]
    fn text_that_does_not_parse_is_left_for_the_engine_to_report() {
        let got = read(&form(), &pairs(&[("amount", "lots"), ("count", "2.5")]));
        assert_eq!(
            Value::Object(got),
            json!({ "amount": "lots", "count": "2.5" })
        );
    }

    #[test]
    fn shown_values_come_from_the_post_then_variables_then_literal_defaults() {
        let vars = json!({ "approved": true, "amount": 40 });
        let vars = vars.as_object().unwrap();
        let errors = [FieldError {
            field: "amount".into(),
            message: "Amount is required".into(),
        }];
        let f = fields(&form(), None, vars, &[]);
        assert_eq!(f[0]["value"], "40");
        assert_eq!(f[2]["yes"], true);
        assert_eq!(f[4]["value"], "low");
        assert_eq!(f[4]["options"][0]["selected"], true);
        assert_eq!(f[5]["value"], "", "an expression default is not shown");
        let posted = pairs(&[("amount", ""), ("level", "high")]);
        let f = fields(&form(), Some(&posted), vars, &errors);
        assert_eq!(f[0]["value"], "");
        assert_eq!(f[0]["error"], "Amount is required");
        assert_eq!(f[1]["error"], Value::Null);
        assert_eq!(f[4]["options"][1]["selected"], true);
        assert_eq!(f[3]["utc"], true);
    }
}
