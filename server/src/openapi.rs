//! The OpenAPI 3.1 document of the API, built from code: each route is declared
//! here (or by its plugin, through [`crate::Plugin::openapi`]) with its tag,
//! operation id, roles, parameters, and the Rust types of its request and
//! response bodies, whose JSON Schemas schemars derives from the same types the
//! handlers serialize. `GET /api/openapi.json` serves the document of the running
//! server; `server/openapi.json` is the checked-in copy (`ordo openapi`), which a
//! test compares with the generated one.

use crate::access::{Table, Who};
use crate::api;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The document being built.
#[derive(Debug)]
pub struct Doc {
    generator: SchemaGenerator,
    paths: Map<String, Value>,
    tags: Vec<(String, String)>,
    /// Who may call each route: the access table the server enforces, so the
    /// document says what the gate does.
    access: Table,
}

impl Doc {
    /// An empty document whose schemas go to `#/components/schemas`; who may
    /// call each operation comes from `access`.
    pub fn new(access: Table) -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
        });
        Doc {
            generator: settings.into_generator(),
            paths: Map::new(),
            tags: Vec::new(),
            access,
        }
    }

    /// Declares a tag (a group of operations, a module in generated clients).
    pub fn tag(&mut self, name: &str, description: &str) {
        if !self.tags.iter().any(|(n, _)| n == name) {
            self.tags.push((name.to_owned(), description.to_owned()));
        }
    }

    /// Starts the operation `method path` (path as the client sees it, with
    /// `{params}`). `id` is its `operationId`: stable, snake_case, unique.
    pub fn op(&mut self, method: &str, path: &str, id: &str, tag: &str, summary: &str) -> Op<'_> {
        let mut value = Map::new();
        value.insert("operationId".into(), json!(id));
        value.insert("tags".into(), json!([tag]));
        value.insert("summary".into(), json!(summary));
        value.insert("responses".into(), json!({}));
        Op {
            doc: self,
            method: method.to_ascii_lowercase(),
            path: path.to_owned(),
            value,
        }
    }

    /// The schema of `T` (a `$ref` to its component when it has a name).
    fn schema<T: JsonSchema>(&mut self) -> Value {
        self.generator.subschema_for::<T>().to_value()
    }

    /// The finished document.
    pub fn finish(mut self) -> Value {
        let mut schemas: Map<String, Value> = Map::new();
        for (name, mut schema) in self.generator.take_definitions(true) {
            plain_enums(&mut schema);
            any_items(&mut schema);
            schemas.insert(name, schema);
        }
        let mut paths: Vec<(String, Value)> = std::mem::take(&mut self.paths).into_iter().collect();
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        let tags: Vec<Value> = self
            .tags
            .iter()
            .map(|(name, description)| json!({ "name": name, "description": description }))
            .collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Ordo API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "The REST API of the Ordo workflow engine. Every /api route but this document takes `Authorization: Bearer TOKEN` (`ordo token create --user NAME`). Errors answer `{error, message}` (see `ErrorBody`)."
            },
            "tags": tags,
            "paths": paths.into_iter().collect::<Map<String, Value>>(),
            "components": {
                "schemas": schemas,
                "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
            }
        })
    }
}

/// Writes a list of anything (`Vec<Value>`, which schemars gives `items:
/// true`) with the empty schema `{}`: the same in JSON Schema, and the form
/// OpenAPI client generators accept.
fn any_items(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("items") == Some(&Value::Bool(true)) {
                map.insert("items".into(), json!({}));
            }
            map.values_mut().for_each(any_items);
        }
        Value::Array(list) => list.iter_mut().for_each(any_items),
        _ => {}
    }
}

/// Rewrites each closed set of names that schemars writes as a `oneOf` of
/// documented `const`s into a plain string `enum` (the values' descriptions
/// go into the schema's), which client generators turn into enum types.
fn plain_enums(schema: &mut Value) {
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let consts: Option<Vec<(Value, String)>> = alts
            .iter()
            .map(|a| {
                let name = a.get("const").filter(|c| c.is_string())?.clone();
                let text = a["description"].as_str().unwrap_or_default().to_owned();
                Some((name, text))
            })
            .collect();
        if let Some(consts) = consts.filter(|c| !c.is_empty()) {
            let lines: Vec<String> = consts
                .iter()
                .map(|(n, t)| format!("- `{}`: {t}", n.as_str().unwrap_or_default()))
                .collect();
            let head = schema["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(m) = schema.as_object_mut() {
                m.remove("oneOf");
                m.insert("type".into(), json!("string"));
                m.insert(
                    "enum".into(),
                    Value::Array(consts.into_iter().map(|(n, _)| n).collect()),
                );
                m.insert(
                    "description".into(),
                    json!(format!("{head}\n\n{}", lines.join("\n")).trim().to_owned()),
                );
            }
        }
    }
    match schema {
        Value::Object(m) => m.values_mut().for_each(plain_enums),
        Value::Array(a) => a.iter_mut().for_each(plain_enums),
        _ => {}
    }
}

/// One operation being declared; [`Op::add`] puts it in the document.
#[derive(Debug)]
pub struct Op<'d> {
    doc: &'d mut Doc,
    method: String,
    path: String,
    value: Map<String, Value>,
}

/// Errors every authenticated route may answer besides those it declares.
const AUTH_ERRORS: &[u16] = &[400, 401, 403];

impl Op<'_> {
    /// Who may call it, from the access table: no token for a public route,
    /// else a bearer token and the roles, with the rule's note. A route the
    /// table does not know is documented as closed, as the gate treats it.
    fn security(mut self) -> Self {
        let method = self.method.to_ascii_uppercase();
        let rule = self.doc.access.rule(&method, &self.path).copied();
        let Some(rule) = rule else {
            self.append_description("No access rule: nobody may call it.");
            return self;
        };
        let who = match rule.who {
            Who::Public => {
                self.value.insert("security".into(), json!([]));
                None
            }
            Who::SignedIn => Some("Anyone signed in.".to_owned()),
            Who::Roles(_) => {
                let names: Vec<&str> = rule.who.roles().iter().map(|r| r.name()).collect();
                Some(format!("Roles: {}.", names.join(", ")))
            }
        };
        if let Some(who) = who {
            self.append_description(&who);
            self.value
                .insert("security".into(), json!([{ "bearer": [] }]));
            self = self.errors(AUTH_ERRORS);
        }
        if !rule.note.is_empty() {
            self.append_description(rule.note);
        }
        self
    }

    /// More text under the summary.
    pub fn describe(mut self, text: &str) -> Self {
        self.append_description(text);
        self
    }

    fn append_description(&mut self, text: &str) {
        let d = match self.value.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d} {text}"),
            None => text.to_owned(),
        };
        self.value.insert("description".into(), json!(d));
    }

    fn parameters(&mut self) -> &mut Vec<Value> {
        let p = self
            .value
            .entry("parameters")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !p.is_array() {
            *p = Value::Array(Vec::new());
        }
        match p {
            Value::Array(a) => a,
            _ => unreachable!("just made an array"),
        }
    }

    /// A `{name}` of the path, of type `T`.
    pub fn path_param<T: JsonSchema>(mut self, name: &str, description: &str) -> Self {
        let schema = self.doc.schema::<T>();
        self.parameters().push(json!({
            "name": name, "in": "path", "required": true,
            "description": description, "schema": schema,
        }));
        self
    }

    /// The query parameters: the fields of `T` (the type the handler reads the
    /// query into), with their doc comments as descriptions.
    pub fn query<T: JsonSchema>(mut self) -> Self {
        let root = self.doc.generator.root_schema_for::<T>().to_value();
        let required: Vec<&str> = root["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut params = Vec::new();
        if let Some(props) = root["properties"].as_object() {
            for (name, schema) in props {
                let mut schema = schema.clone();
                let description = schema
                    .as_object_mut()
                    .and_then(|s| s.remove("description"))
                    .unwrap_or(Value::Null);
                // A query parameter is absent rather than null.
                if let Some(Value::Array(alts)) = schema.get("anyOf") {
                    let not_null: Vec<&Value> =
                        alts.iter().filter(|a| a["type"] != "null").collect();
                    if let [only] = not_null.as_slice() {
                        let only = (*only).clone();
                        if let Some(s) = schema.as_object_mut() {
                            s.remove("anyOf");
                            if let Some(o) = only.as_object() {
                                s.extend(o.clone());
                            }
                        }
                    }
                }
                if let Some(Value::Array(types)) = schema.get_mut("type") {
                    types.retain(|t| t != "null");
                    if types.len() == 1 {
                        let t = types.remove(0);
                        schema["type"] = t;
                    }
                }
                if let Some(s) = schema.as_object_mut()
                    && s.get("default").is_some_and(Value::is_null)
                {
                    s.remove("default");
                }
                let mut p = json!({
                    "name": name, "in": "query",
                    "required": required.contains(&name.as_str()),
                    "schema": schema,
                });
                if !description.is_null() {
                    p["description"] = description;
                }
                params.push(p);
            }
        }
        self.parameters().extend(params);
        self
    }

    /// A JSON request body of type `T`.
    pub fn json_body<T: JsonSchema>(mut self) -> Self {
        let schema = self.doc.schema::<T>();
        self.value.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": schema } } }),
        );
        self
    }

    /// A text request body (`content_type`: YAML, CSV).
    pub fn text_body(mut self, content_type: &str, description: &str) -> Self {
        self.value.insert(
            "requestBody".into(),
            json!({
                "required": true, "description": description,
                // Raw bytes: generated clients send the file as it is.
                "content": { content_type: { "schema": { "type": "string", "format": "binary" } } }
            }),
        );
        self
    }

    /// A JSON answer of type `T` with `status`.
    pub fn answers<T: JsonSchema>(mut self, status: u16, description: &str) -> Self {
        let schema = self.doc.schema::<T>();
        self.value["responses"][status.to_string()] = json!({
            "description": description,
            "content": { "application/json": { "schema": schema } }
        });
        self
    }

    /// A text answer (`content_type`) with `status`.
    pub fn answers_text(mut self, status: u16, content_type: &str, description: &str) -> Self {
        self.value["responses"][status.to_string()] = json!({
            "description": description,
            "content": { content_type: { "schema": { "type": "string" } } }
        });
        self
    }

    /// Error answers it may give, each an [`crate::error::ErrorBody`].
    pub fn errors(mut self, statuses: &[u16]) -> Self {
        let schema = self.doc.schema::<crate::error::ErrorBody>();
        for s in statuses {
            if *s == 413 {
                // Refused before any handler runs: axum's plain-text answer.
                self = self.answers_text(413, "text/plain", "The body is larger than 2 MiB");
                continue;
            }
            let description = match s {
                400 => "Malformed request (body, query or parameters)",
                401 => "No valid token",
                403 => "The caller's roles do not allow this",
                404 => "Not found, or not visible to the caller",
                409 => "Conflicts with the current state",
                422 => "Well formed but refused (invalid definition, form or rule)",
                _ => "Error",
            };
            self.value["responses"][s.to_string()] = json!({
                "description": description,
                "content": { "application/json": { "schema": schema } }
            });
        }
        self
    }

    /// Puts the operation in the document.
    pub fn add(self) {
        let Op {
            doc,
            method,
            path,
            mut value,
        } = self.security();
        if value.contains_key("security") && value["responses"].get("500").is_none() {
            let schema = doc.schema::<crate::error::ErrorBody>();
            value["responses"]["500"] = json!({
                "description": "Internal error (details are in the server's log)",
                "content": { "application/json": { "schema": schema } }
            });
        }
        let entry = doc
            .paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[method] = Value::Object(value);
    }
}

/// The document as served (JSON text), shared by the route's handler.
#[derive(Debug)]
pub struct Served(pub String);

/// The document of the server with `plugins`: what `GET /api/openapi.json`
/// serves and `ordo openapi` prints.
pub fn document(plugins: &[Arc<dyn crate::Plugin>]) -> Value {
    let rules = crate::access::SERVER
        .iter()
        .copied()
        .chain(plugins.iter().flat_map(|p| p.access()));
    let mut doc = Doc::new(Table::new(rules));
    api::document(&mut doc);
    for p in plugins {
        p.openapi(&mut doc);
    }
    doc.finish()
}
