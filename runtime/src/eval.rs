//! Evaluating compiled expressions against an instance's JSON variables.

use ordo_model::{Expression, Process};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The expression failed at run time (unknown variable, wrong type…).
    #[error("`{expr}` failed: {message}")]
    Failed {
        /// The expression.
        expr: String,
        /// What CEL said.
        message: String,
    },
    /// A condition gave something other than a boolean.
    #[error("`{expr}` gave {got}, not true or false")]
    NotBoolean {
        /// The expression.
        expr: String,
        /// What it gave.
        got: String,
    },
    /// The expression is not in the definition (a bug: every expression is compiled
    /// at load time).
    #[error("`{0}` was not compiled with the definition")]
    NotCompiled(String),
}

/// JSON → CEL.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let m: HashMap<cel::objects::Key, cel::Value> = o
                .iter()
                .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::from(m)
        }
    }
}

/// CEL → JSON. Values JSON cannot hold become strings (durations, timestamps) or null.
pub fn to_json(v: &cel::Value) -> Value {
    match v {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::from(*i),
        cel::Value::UInt(u) => Value::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        cel::Value::String(s) => Value::String(s.as_ref().clone()),
        cel::Value::List(l) => Value::Array(l.iter().map(to_json).collect()),
        cel::Value::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    cel::objects::Key::String(s) => s.as_ref().clone(),
                    cel::objects::Key::Int(i) => i.to_string(),
                    cel::objects::Key::Uint(u) => u.to_string(),
                    cel::objects::Key::Bool(b) => b.to_string(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        cel::Value::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        other => Value::String(format!("{other:?}")),
    }
}

/// CEL's standard library, built once: building it costs more than most
/// evaluations (measured with callgrind on `ordo bench`).
fn root_context() -> &'static cel::Context<'static, 'static> {
    static ROOT: std::sync::OnceLock<cel::Context<'static, 'static>> = std::sync::OnceLock::new();
    ROOT.get_or_init(cel::Context::default)
}

/// Evaluates expressions of one process against a set of variables.
pub struct Evaluator<'p> {
    process: &'p Process,
    ctx: cel::Context<'static, 'static>,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("process", &self.process.def.id)
            .finish()
    }
}

impl<'p> Evaluator<'p> {
    /// An evaluator seeing `vars`.
    pub fn new(process: &'p Process, vars: &Map<String, Value>) -> Self {
        let mut ctx = root_context().new_inner_scope();
        for (k, v) in vars {
            ctx.add_variable_from_value(k.clone(), to_cel(v));
        }
        Evaluator { process, ctx }
    }

    /// Makes `name` visible to later evaluations (as an `assign` step sets it).
    pub fn set(&mut self, name: &str, value: &Value) {
        self.ctx
            .add_variable_from_value(name.to_owned(), to_cel(value));
    }

    fn expression(&self, src: &str) -> Result<&'p Expression, Error> {
        self.process
            .expression(src)
            // A field that is always an expression tolerates a leading `=`
            // (`key: =email`); the loader compiled it without.
            .or_else(|| {
                ordo_model::expr::as_expression(src).and_then(|(e, _)| self.process.expression(e))
            })
            .ok_or_else(|| Error::NotCompiled(src.to_owned()))
    }

    /// Evaluates an expression (written without `=`).
    pub fn eval(&self, src: &str) -> Result<Value, Error> {
        let e = self.expression(src)?;
        cel::Value::resolve(e.ast(), &self.ctx)
            .map(|v| to_json(&v))
            .map_err(|err| Error::Failed {
                expr: src.to_owned(),
                message: err.to_string(),
            })
    }

    /// Evaluates a condition.
    pub fn condition(&self, src: &str) -> Result<bool, Error> {
        match self.eval(src)? {
            Value::Bool(b) => Ok(b),
            other => Err(Error::NotBoolean {
                expr: src.to_owned(),
                got: other.to_string(),
            }),
        }
    }

    /// Resolves a value: literals as they are, `=expression` strings evaluated, at any
    /// depth.
    pub fn value(&self, v: &Value) -> Result<Value, Error> {
        match v {
            Value::String(s) => match ordo_model::expr::as_expression(s) {
                Some((e, _)) => self.eval(e),
                None => Ok(v.clone()),
            },
            Value::Array(a) => a
                .iter()
                .map(|x| self.value(x))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(o) => {
                let mut out = Map::new();
                for (k, x) in o {
                    out.insert(k.clone(), self.value(x)?);
                }
                Ok(Value::Object(out))
            }
            _ => Ok(v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_model::{self, Options};
    use serde_json::json;

    fn process() -> Process {
        let yaml = r#"
id: e
start: [{ id: s, next: a }]
nodes:
  a:
    type: assign
    set:
      total: = price * double(qty)
      big: "= price > 10 && size(tags) == 2"
      obj: { name: =customer.name, fixed: 1, list: ["=qty", 2] }
      n: =missing + 1
    next: b
  b: { type: end }
"#;
        ordo_model::load("e.yaml", yaml, &Options::default())
            .process
            .expect("valid")
    }

    #[test]
    fn evaluates_against_json_variables() {
        let p = process();
        let vars =
            json!({"price": 12.5, "qty": 2, "tags": ["a", "b"], "customer": {"name": "Acme"}});
        let ev = Evaluator::new(&p, vars.as_object().unwrap_or(&Map::new()));
        assert_eq!(ev.eval(" price * double(qty)"), Ok(json!(25.0)));
        assert_eq!(ev.condition(" price > 10 && size(tags) == 2"), Ok(true));
        assert_eq!(
            ev.value(&json!({ "name": "=customer.name", "fixed": 1, "list": ["=qty", 2] })),
            Ok(json!({"name": "Acme", "fixed": 1, "list": [2, 2]}))
        );
        assert!(matches!(ev.eval("missing + 1"), Err(Error::Failed { .. })));
        assert_eq!(
            ev.eval("= price * double(qty)"),
            Ok(json!(25.0)),
            "a tolerated leading `=` finds the expression compiled without it"
        );
        assert!(matches!(
            ev.eval("never compiled"),
            Err(Error::NotCompiled(_))
        ));
    }

    #[test]
    fn json_round_trips_through_cel() {
        let v = json!({"a": [1, -2, 3.5, "x", null, true], "b": {"c": 18446744073709551615u64}});
        assert_eq!(to_json(&to_cel(&v)), v);
    }
}
