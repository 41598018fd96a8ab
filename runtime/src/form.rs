//! Checking what a person submits against a user task's form: one error per field.

use indexmap::IndexMap;
use ordo_model::raw::{FieldType, FormField};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A problem with one submitted field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FieldError {
    /// The field.
    pub field: String,
    /// What is wrong, for the person who filled it in.
    pub message: String,
}

/// Checks `values` against `form`. A task without a form accepts any variables.
pub fn validate(
    form: &IndexMap<String, FormField>,
    values: &Map<String, Value>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if form.is_empty() {
        return errors;
    }
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_owned(),
            message,
        });
    };
    for name in values.keys() {
        if !form.contains_key(name) {
            err(name, "is not a field of this form".into());
        }
    }
    for (name, f) in form {
        let label = f.label.as_deref().unwrap_or(name);
        let v = match values.get(name) {
            None | Some(Value::Null) => {
                if f.required {
                    err(name, format!("{label} is required"));
                }
                continue;
            }
            Some(v) => v,
        };
        let kind = match f.ty {
            FieldType::String | FieldType::Text | FieldType::User => "text",
            FieldType::Number => "a number",
            FieldType::Integer => "a whole number",
            FieldType::Boolean => "yes or no",
            FieldType::Date => "a date (YYYY-MM-DD)",
            FieldType::Datetime => "a date and time (RFC 3339)",
            FieldType::Enum => "one of the options",
        };
        let unbounded = FormField {
            min: None,
            max: None,
            ..f.clone()
        };
        if !ordo_model::field_accepts(&unbounded, v) {
            let msg = if f.ty == FieldType::Enum {
                format!("{label} must be one of: {}", f.options.join(", "))
            } else {
                format!("{label} must be {kind}")
            };
            err(name, msg);
            continue;
        }
        if let Some(x) = v.as_f64() {
            if let Some(min) = f.min.filter(|m| x < *m) {
                err(name, format!("{label} must be at least {min}"));
            }
            if let Some(max) = f.max.filter(|m| x > *m) {
                err(name, format!("{label} must be at most {max}"));
            }
        }
        if let Some(s) = v.as_str() {
            let n = s.chars().count();
            if let Some(min) = f.min_length.filter(|m| n < *m as usize) {
                err(name, format!("{label} must have at least {min} characters"));
            }
            if let Some(max) = f.max_length.filter(|m| n > *m as usize) {
                err(name, format!("{label} must have at most {max} characters"));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form() -> IndexMap<String, FormField> {
        // YAML, as in a process file: field order is kept.
        serde_yaml::from_str(
            "approved: { type: boolean, required: true }\n\
             amount: { type: number, min: 0, max: 100 }\n\
             code: { type: string, min_length: 2, max_length: 4 }\n\
             channel: { type: enum, options: [phone, mail] }\n\
             seats: { type: integer }\n",
        )
        .unwrap_or_default()
    }

    #[test]
    fn one_error_per_field() {
        let values =
            json!({"amount": 150, "code": "x", "channel": "fax", "seats": 1.5, "extra": 1});
        let errs = validate(&form(), values.as_object().unwrap_or(&Map::new()));
        let fields: Vec<_> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("extra", "is not a field of this form"),
                ("approved", "approved is required"),
                ("amount", "amount must be at most 100"),
                ("code", "code must have at least 2 characters"),
                ("channel", "channel must be one of: phone, mail"),
                ("seats", "seats must be a whole number"),
            ]
        );
    }

    #[test]
    fn valid_submission_passes() {
        let values =
            json!({"approved": true, "amount": 100, "code": "ab", "channel": "mail", "seats": 3});
        assert!(validate(&form(), values.as_object().unwrap_or(&Map::new())).is_empty());
    }
}
