//! The shape of a value: a variable's or message field's type plus what its
//! declaration adds (`properties`, `items`, `enum`, `min`/`max`, `pattern`,
//! `max_length`).
//!
//! [`VariableDef::check`] is the one function that decides whether a value fits a
//! declaration; the runtime calls it wherever a variable is written (a start, a
//! task completion, an assign, a service result) and the engine calls it on a
//! message before anything else happens. Its problems name the field path
//! (`lead.source must be one of inbound, advertising, …`), so an integrator or a
//! person filling in a form learns exactly what to change.
//!
//! [`declaration_problems`] is the validator's side: a declaration that cannot be
//! satisfied (a `pattern` that is not a regular expression, `min` above `max`, an
//! `enum` value of the wrong type, `properties` on a string) is refused at load.

use super::raw::{VarType, VariableDef};
use regex::Regex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Most compiled patterns kept; past it the cache starts again (declarations are
/// few, so this only bounds memory against a stream of distinct patterns).
const MAX_CACHED_PATTERNS: usize = 256;
/// Largest compiled pattern, in bytes (the `regex` crate's size limit).
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// A `pattern` compiled as a whole-value match, cached.
fn compiled(pattern: &str) -> Result<Regex, String> {
    static CACHE: Mutex<Option<HashMap<String, Regex>>> = Mutex::new(None);
    let mut guard = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(r) = cache.get(pattern) {
        return Ok(r.clone());
    }
    let r = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| {
            // The parser's message draws the pattern over several lines; its
            // last line says what is wrong.
            let text = e.to_string();
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            last.unwrap_or(&text)
                .trim()
                .trim_start_matches("error: ")
                .to_owned()
        })?;
    if cache.len() >= MAX_CACHED_PATTERNS {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), r.clone());
    Ok(r)
}

/// The type's name as designers write it.
pub(crate) fn type_name(ty: VarType) -> &'static str {
    match ty {
        VarType::String => "string",
        VarType::Number => "number",
        VarType::Integer => "integer",
        VarType::Boolean => "boolean",
        VarType::Date => "date",
        VarType::Object => "object",
        VarType::Array => "array",
        VarType::Any => "any",
    }
}

/// Whether `v` has the JSON type `ty` asks for (shape aside).
pub(crate) fn type_fits(ty: VarType, v: &Value) -> bool {
    match ty {
        VarType::String => v.is_string(),
        VarType::Number => v.is_number(),
        VarType::Integer => v.is_i64() || v.is_u64(),
        VarType::Boolean => v.is_boolean(),
        VarType::Date => v.as_str().is_some_and(|s| {
            chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        }),
        VarType::Object => v.is_object(),
        VarType::Array => v.is_array(),
        VarType::Any => true,
    }
}

/// A value as it appears in a message: strings quoted, long ones cut.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn show_allowed(allowed: &[Value]) -> String {
    allowed
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl VariableDef {
    /// Whether `v` fits this declaration: `Ok`, or every problem found, each
    /// naming its place under `path` (`lead`, `lead.source`, `items[2].qty`).
    /// `null` fits any declaration (a required variable's absence is checked where
    /// variables are declared, not here).
    pub fn check(&self, path: &str, v: &Value) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        self.check_into(path, v, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn check_into(&self, path: &str, v: &Value, out: &mut Vec<String>) {
        if v.is_null() {
            return;
        }
        if !type_fits(self.ty, v) {
            let ty = type_name(self.ty);
            let article = if matches!(self.ty, VarType::Integer | VarType::Object | VarType::Array)
            {
                "an"
            } else {
                "a"
            };
            out.push(format!("{path} must be {article} {ty}, not {}", show(v)));
            return;
        }
        if !self.allowed.is_empty() && !self.allowed.contains(v) {
            out.push(format!(
                "{path} must be one of {}, not {}",
                show_allowed(&self.allowed),
                show(v)
            ));
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = self.min
                && n < min
            {
                out.push(format!("{path} must be at least {min}, not {n}"));
            }
            if let Some(max) = self.max
                && n > max
            {
                out.push(format!("{path} must be at most {max}, not {n}"));
            }
        }
        if let Some(s) = v.as_str() {
            if let Some(limit) = self.max_length {
                let len = s.chars().count();
                if len > limit as usize {
                    out.push(format!(
                        "{path} must have at most {limit} characters, not {len}"
                    ));
                }
            }
            if let Some(p) = &self.pattern {
                match compiled(p) {
                    Ok(r) if r.is_match(s) => {}
                    Ok(_) => out.push(format!("{path} must match the pattern `{p}`")),
                    // The validator refuses such a declaration; one loaded before
                    // that check existed refuses every value rather than none.
                    Err(e) => out.push(format!("{path}: the pattern `{p}` is invalid: {e}")),
                }
            }
        }
        if let Some(items) = v.as_array() {
            if let Some(limit) = self.max_length
                && items.len() > limit as usize
            {
                out.push(format!(
                    "{path} must have at most {limit} items, not {}",
                    items.len()
                ));
            }
            if let Some(decl) = &self.items {
                for (i, item) in items.iter().enumerate() {
                    if item.is_null() && decl.required {
                        out.push(format!("{path}[{i}] is required"));
                    }
                    decl.check_into(&format!("{path}[{i}]"), item, out);
                }
            }
        }
        if let Some(obj) = v.as_object() {
            if !self.additional_properties && !self.properties.is_empty() {
                let known: Vec<&str> = self.properties.keys().map(String::as_str).collect();
                for name in obj.keys().filter(|k| !known.contains(&k.as_str())) {
                    out.push(format!(
                        "{path}.{name} is not one of its fields ({})",
                        known.join(", ")
                    ));
                }
            }
            for (name, decl) in &self.properties {
                let at = format!("{path}.{name}");
                match obj.get(name) {
                    None | Some(Value::Null) if decl.required => {
                        out.push(format!("{at} is required"));
                    }
                    None => {}
                    Some(value) => decl.check_into(&at, value, out),
                }
            }
        }
    }
}

/// What is wrong with a declaration itself, as `(field, message)` pairs: the field
/// path below the declaration (`properties.source.enum`) and what to fix.
/// `name` is the variable's, for messages.
pub(crate) fn declaration_problems(name: &str, d: &VariableDef) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    walk(name, d, &mut Vec::new(), &mut out);
    out
}

fn walk(name: &str, d: &VariableDef, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let ty = type_name(d.ty);
    let mut problem = |field: &str, message: String| {
        let mut path = at.clone();
        path.push(field.to_owned());
        out.push((path, message));
    };
    let numeric = matches!(d.ty, VarType::Number | VarType::Integer | VarType::Any);
    let stringy = matches!(d.ty, VarType::String | VarType::Date | VarType::Any);
    if !d.properties.is_empty() && !matches!(d.ty, VarType::Object | VarType::Any) {
        problem(
            "properties",
            format!("`properties` describes an object, but the type is {ty}"),
        );
    }
    if !d.additional_properties && d.properties.is_empty() {
        problem(
            "additional_properties",
            "`additional_properties: false` needs `properties` to say which are allowed".into(),
        );
    }
    if d.items.is_some() && !matches!(d.ty, VarType::Array | VarType::Any) {
        problem(
            "items",
            format!("`items` describes an array, but the type is {ty}"),
        );
    }
    if (d.min.is_some() || d.max.is_some()) && !numeric {
        let f = if d.min.is_some() { "min" } else { "max" };
        problem(
            f,
            format!("`min` and `max` bound a number, but the type is {ty}"),
        );
    }
    if let (Some(min), Some(max)) = (d.min, d.max)
        && min > max
    {
        problem(
            "max",
            format!("`max` ({max}) is below `min` ({min}), so no value fits"),
        );
    }
    if let Some(p) = &d.pattern {
        if !stringy {
            problem(
                "pattern",
                format!("`pattern` applies to a string, but the type is {ty}"),
            );
        } else if let Err(e) = compiled(p) {
            problem("pattern", format!("`{p}` is not a regular expression: {e}"));
        }
    }
    if d.max_length.is_some()
        && !matches!(
            d.ty,
            VarType::String | VarType::Array | VarType::Date | VarType::Any
        )
    {
        problem(
            "max_length",
            format!("`max_length` applies to a string or an array, but the type is {ty}"),
        );
    }
    for (i, v) in d.allowed.iter().enumerate() {
        if !type_fits(d.ty, v) {
            problem(
                "enum",
                format!("value {} (item {i} of `enum`) is not a {ty}", show(v)),
            );
        }
    }
    if let Some(def) = &d.default
        && let Err(problems) = d.check(&format!("the default of `{name}`"), def)
    {
        problem("default", problems.join("; "));
    }
    for (prop, p) in &d.properties {
        at.push("properties".into());
        at.push(prop.clone());
        walk(&format!("{name}.{prop}"), p, at, out);
        at.pop();
        at.pop();
    }
    if let Some(items) = &d.items {
        at.push("items".into());
        walk(&format!("{name}[]"), items, at, out);
        at.pop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn decl(yaml: &str) -> VariableDef {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn lead() -> VariableDef {
        decl(
            "
type: object
properties:
  name: { type: string, required: true, max_length: 5 }
  source: { type: string, enum: [inbound, referral] }
  amount: { type: number, min: 0.01, max: 100 }
  phone: { type: string, pattern: '\\+?[0-9 ]+' }
  tags: { type: array, max_length: 2, items: { type: string } }
",
        )
    }

    #[test]
    fn a_fitting_value_passes_and_unlisted_properties_are_allowed() {
        let v = json!({"name": "Ann", "source": "inbound", "amount": 5, "phone": "+86 138",
                       "tags": ["a"], "extra": true});
        assert_eq!(lead().check("lead", &v), Ok(()));
    }

    #[test]
    fn every_problem_names_its_field_path() {
        let v = json!({"source": "web", "amount": 0, "phone": "call me",
                       "tags": ["a", 2, "c"]});
        let problems = lead().check("lead", &v).unwrap_err();
        assert_eq!(
            problems,
            vec![
                "lead.name is required",
                "lead.source must be one of inbound, referral, not \"web\"",
                "lead.amount must be at least 0.01, not 0",
                "lead.phone must match the pattern `\\+?[0-9 ]+`",
                "lead.tags must have at most 2 items, not 3",
                "lead.tags[1] must be a string, not 2",
            ]
        );
    }

    #[test]
    fn a_closed_object_refuses_fields_it_does_not_list() {
        let d = decl(
            "{ type: object, additional_properties: false, properties: { name: { type: string } } }",
        );
        assert!(d.check("lead", &json!({"name": "Ann"})).is_ok());
        assert_eq!(
            d.check("lead", &json!({"name": "Ann", "status": "won"}))
                .unwrap_err(),
            vec!["lead.status is not one of its fields (name)"]
        );
        let open = decl("{ type: object, additional_properties: false }");
        assert_eq!(
            declaration_problems("x", &open)[0].0,
            vec!["additional_properties"]
        );
    }

    #[test]
    fn the_pattern_matches_the_whole_value() {
        let d = decl("{ type: string, pattern: '[0-9]+' }");
        assert!(d.check("x", &json!("123")).is_ok());
        assert!(d.check("x", &json!("12a")).is_err());
        assert!(d.check("x", &json!("a12")).is_err());
    }

    #[test]
    fn null_fits_and_a_wrong_type_stops_further_checks() {
        assert!(lead().check("lead", &Value::Null).is_ok());
        assert_eq!(
            lead().check("lead", &json!("text")).unwrap_err(),
            vec!["lead must be an object, not \"text\""]
        );
    }

    #[test]
    fn impossible_declarations_are_reported_with_their_field() {
        let d = decl(
            "
type: string
min: 1
enum: [a, 2]
pattern: '('
properties: { x: { type: integer, max_length: 3 } }
",
        );
        let got: Vec<String> = declaration_problems("x", &d)
            .into_iter()
            .map(|(path, m)| format!("{}: {m}", path.join(".")))
            .collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].starts_with("properties: "), "{got:#?}");
        assert!(got[1].starts_with("min: "), "{got:#?}");
        assert!(got[2].starts_with("pattern: `(` is not a regular expression"));
        assert!(got[3].starts_with("enum: value 2 (item 1"), "{got:#?}");
        assert!(got[4].starts_with("properties.x.max_length: "), "{got:#?}");
    }

    #[test]
    fn a_default_must_fit_its_own_shape() {
        let d = decl("{ type: string, enum: [a, b], default: c }");
        let got = declaration_problems("x", &d);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, vec!["default"]);
        assert!(got[0].1.contains("must be one of a, b"), "{}", got[0].1);
    }
}
