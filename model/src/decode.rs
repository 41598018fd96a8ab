//! Stage one of loading: text → [`ProcessDef`], with every structural problem as a
//! located diagnostic.
//!
//! serde_yaml parses the text into a value tree; each part (header fields, each
//! variable, each start event, each node, nested nodes too) is then decoded on its
//! own through `serde_path_to_error`, so that one bad node does not hide the problems
//! of the others, and every error knows its path — which the [`SourceMap`] turns into
//! a line and column. Nodes are dispatched on their `type` by hand rather than through
//! serde's internally tagged enums: those buffer the node and lose the path inside it.

use super::diagnostic::{Diagnostic, Severity};
use super::raw::{MessageDef, Node, ProcessDef, StartEvent, Starters, VariableDef};
use super::source::{Path, Pos, Seg, SourceMap};
use super::suggest;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

/// Largest process file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Most nodes one process may have, nested scopes included.
pub const MAX_NODES: usize = 10_000;

const TOP_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "calendar",
    "starters",
    "variables",
    "messages",
    "start",
    "nodes",
];

pub(crate) struct Decoder<'a> {
    file: &'a str,
    pub(crate) map: SourceMap,
    pub(crate) diags: Vec<Diagnostic>,
    nodes: usize,
}

/// Decodes `text`. Returns the definition when its shape is sound (the diagnostics
/// then hold no error), and the source map for the validator.
pub(crate) fn decode(file: &str, text: &str) -> (Option<ProcessDef>, SourceMap, Vec<Diagnostic>) {
    let fail = |code, message: String, hint: &str, pos| {
        let d = Diagnostic::new(
            Severity::Error,
            code,
            message,
            Some(hint.to_owned()),
            file,
            pos,
        );
        (None, SourceMap::default(), vec![d])
    };
    if text.len() > MAX_FILE_BYTES {
        return fail(
            "file-too-large",
            format!(
                "the file is {} bytes; a process file may have at most {MAX_FILE_BYTES}",
                text.len()
            ),
            "split the process: move parts into processes of their own and use `call`",
            Pos::start_of_file(),
        );
    }
    let map = match SourceMap::build(text) {
        Ok(map) => map,
        Err(problems) => {
            let diags = problems
                .into_iter()
                .map(|p| Diagnostic::new(Severity::Error, p.code, p.message, p.hint, file, p.pos))
                .collect();
            return (None, SourceMap::default(), diags);
        }
    };
    let value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e.location().map_or_else(Pos::start_of_file, |l| {
                let start = text.get(..l.index()).map_or(0, |s| s.chars().count());
                Pos {
                    line: l.line(),
                    column: l.column(),
                    start,
                    end: start,
                }
            });
            return fail(
                "yaml-invalid",
                format!("the YAML cannot be read: {e}"),
                "anchors and aliases may not expand into huge documents; tags (`!name`) are not used by the format",
                pos,
            );
        }
    };
    let mut d = Decoder {
        file,
        map,
        diags: Vec::new(),
        nodes: 0,
    };
    let def = d.top(value);
    let def = if d.diags.iter().any(Diagnostic::is_error) {
        None
    } else {
        def
    };
    (def, d.map, d.diags)
}

impl Decoder<'_> {
    pub(crate) fn error(
        &mut self,
        code: &'static str,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.diags.push(Diagnostic::new(
            Severity::Error,
            code,
            message,
            hint.into(),
            self.file,
            pos,
        ));
    }

    fn top(&mut self, value: Value) -> Option<ProcessDef> {
        let root = Path::root();
        let mut top = match value {
            Value::Mapping(m) => m,
            Value::Null => {
                self.error(
                    "empty-file",
                    Pos::start_of_file(),
                    "the file is empty",
                    Some("a process needs at least `id`, `start` and `nodes`; see docs/process-format.md".to_owned()),
                );
                return None;
            }
            _ => {
                self.error(
                    "not-a-mapping",
                    self.map.value_pos(&root),
                    "a process file must be a mapping of fields (`id: ...`, `start: ...`, `nodes: ...`)",
                    None,
                );
                return None;
            }
        };
        self.unknown_keys(&top, &root, TOP_FIELDS, "process");
        let id = self.take::<String>(&mut top, &root, "id", true);
        let name = self
            .take::<Option<String>>(&mut top, &root, "name", false)
            .flatten();
        let description = self
            .take::<Option<String>>(&mut top, &root, "description", false)
            .flatten();
        let calendar = self
            .take::<Option<String>>(&mut top, &root, "calendar", false)
            .flatten();
        let starters = self
            .take::<Option<Starters>>(&mut top, &root, "starters", false)
            .flatten();
        let variables = self.variables(top.remove("variables"), &root.join("variables"));
        let messages = self.messages(top.remove("messages"), &root.join("messages"));
        let start = self.starts(&mut top, &root);
        let nodes = match top.remove("nodes") {
            Some(v) => self.nodes(v, &root.join("nodes")),
            None => {
                self.missing(&root, "nodes", "process");
                None
            }
        };
        Some(ProcessDef {
            id: id?,
            name,
            description,
            calendar,
            starters,
            variables: variables?,
            messages: messages?,
            start: start?,
            nodes: nodes?,
        })
    }

    fn starts(&mut self, top: &mut Mapping, root: &Path) -> Option<Vec<StartEvent>> {
        let path = root.join("start");
        let Some(value) = top.remove("start") else {
            self.missing(root, "start", "process");
            return None;
        };
        let Value::Sequence(items) = value else {
            self.error(
                "invalid-value",
                self.map.value_pos(&path),
                "`start` must be a list of start events",
                Some(
                    "write `start:` followed by items such as `- id: begin` and `next: first_node`"
                        .to_owned(),
                ),
            );
            return None;
        };
        let mut out = Some(Vec::new());
        for (i, item) in items.into_iter().enumerate() {
            let ev = self.decode_at::<StartEvent>(item, &path.join(i), "start event");
            match (&mut out, ev) {
                (Some(v), Some(ev)) => v.push(ev),
                _ => out = None,
            }
        }
        out
    }

    pub(crate) fn variables(
        &mut self,
        value: Option<Value>,
        path: &Path,
    ) -> Option<IndexMap<String, VariableDef>> {
        self.named(
            value,
            path,
            "`variables` must map names to declarations such as `{ type: number, default: 0 }`",
            "variable",
        )
    }

    fn messages(
        &mut self,
        value: Option<Value>,
        path: &Path,
    ) -> Option<IndexMap<String, MessageDef>> {
        self.named(
            value,
            path,
            "`messages` must map message names to their payload, such as `{ variables: { amount: { type: number } } }`",
            "message",
        )
    }

    /// A mapping of names to `T`s, each decoded on its own (one bad entry does
    /// not hide the others); absent, an empty one.
    fn named<T: DeserializeOwned>(
        &mut self,
        value: Option<Value>,
        path: &Path,
        not_a_mapping: &str,
        what: &str,
    ) -> Option<IndexMap<String, T>> {
        let mut out = IndexMap::new();
        let Some(value) = value else { return Some(out) };
        let entries = self.mapping(value, path, not_a_mapping)?;
        let mut ok = true;
        for (k, v) in entries {
            let Some(name) = self.key_string(&k, path) else {
                ok = false;
                continue;
            };
            match self.decode_at::<T>(v, &path.join(&name), what) {
                Some(item) => {
                    out.insert(name, item);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn nodes(&mut self, value: Value, path: &Path) -> Option<IndexMap<String, Node>> {
        let entries = self.mapping(
            value,
            path,
            "`nodes` must map node ids to nodes, such as `review: { type: user, next: done }`",
        )?;
        let mut out = IndexMap::new();
        let mut ok = true;
        for (k, v) in entries {
            let Some(id) = self.key_string(&k, path) else {
                ok = false;
                continue;
            };
            self.nodes += 1;
            if self.nodes == MAX_NODES + 1 {
                self.error(
                    "too-many-nodes",
                    self.map.key_pos(&path.join(&id)),
                    format!("the process has more than {MAX_NODES} nodes"),
                    Some("split it into processes of their own and use `call`".to_owned()),
                );
            }
            if self.nodes > MAX_NODES {
                return None;
            }
            match self.node(v, &path.join(&id)) {
                Some(n) => {
                    out.insert(id, n);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn node(&mut self, value: Value, path: &Path) -> Option<Node> {
        let mut m = self.mapping(
            value,
            path,
            "a node must be a mapping with a `type`, such as `{ type: user, next: done }`",
        )?;
        let ty = match m.remove("type") {
            None => {
                self.error(
                    "missing-type",
                    self.map.key_pos(path),
                    format!("node `{}` has no `type`", last_key(path)),
                    Some(format!(
                        "add `type:` with one of: {}",
                        Node::TYPES.join(", ")
                    )),
                );
                return None;
            }
            Some(Value::String(s)) => s,
            Some(_) => {
                self.error(
                    "invalid-value",
                    self.map.value_pos(&path.join("type")),
                    "`type` must be a node type name",
                    Some(format!("one of: {}", Node::TYPES.join(", "))),
                );
                return None;
            }
        };
        if !Node::TYPES.contains(&ty.as_str()) {
            let hint = match suggest(&ty, Node::TYPES.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("node types are: {}", Node::TYPES.join(", ")),
            };
            self.error(
                "unknown-type",
                self.map.value_pos(&path.join("type")),
                format!("`{ty}` is not a node type"),
                Some(hint),
            );
            return None;
        }
        let mut ok = true;
        if !Node::WITH_BOUNDARY.contains(&ty.as_str()) && m.remove("boundary").is_some() {
            self.error(
                "boundary-not-allowed",
                self.map.key_pos(&path.join("boundary")),
                format!("a node of type `{ty}` cannot carry boundary events"),
                Some(format!(
                    "only activities that last can: {}; put the node inside a `subprocess` to guard it",
                    Node::WITH_BOUNDARY.join(", ")
                )),
            );
            ok = false;
        }
        let children = match m.remove("nodes") {
            Some(v) if matches!(ty.as_str(), "subprocess" | "event_subprocess" | "loop") => {
                m.insert("nodes".into(), Value::Mapping(Mapping::new()));
                match self.nodes(v, &path.join("nodes")) {
                    Some(c) => Some(c),
                    None => return None,
                }
            }
            Some(v) => {
                // Not a scope: put it back so serde reports it as an unknown field.
                m.insert("nodes".into(), v);
                None
            }
            None => None,
        };
        let value = Value::Mapping(m);
        let what = format!("`{ty}` node");
        let mut node = match ty.as_str() {
            "empty" => self.decode_at(value, path, &what).map(Node::Empty),
            "assign" => self.decode_at(value, path, &what).map(Node::Assign),
            "service" => self.decode_at(value, path, &what).map(Node::Service),
            "user" => self.decode_at(value, path, &what).map(Node::User),
            "receive" => self.decode_at(value, path, &what).map(Node::Receive),
            "catch" => self.decode_at(value, path, &what).map(Node::Catch),
            "throw" => self.decode_at(value, path, &what).map(Node::Throw),
            "exclusive" => self.decode_at(value, path, &what).map(Node::Exclusive),
            "inclusive" => self.decode_at(value, path, &what).map(Node::Inclusive),
            "parallel" => self.decode_at(value, path, &what).map(Node::Parallel),
            "complex" => self.decode_at(value, path, &what).map(Node::Complex),
            "event" => self.decode_at(value, path, &what).map(Node::Event),
            "subprocess" => self.decode_at(value, path, &what).map(Node::Subprocess),
            "event_subprocess" => self
                .decode_at(value, path, &what)
                .map(Node::EventSubprocess),
            "loop" => self.decode_at(value, path, &what).map(Node::Loop),
            "call" => self.decode_at(value, path, &what).map(Node::Call),
            "spawn" => self.decode_at(value, path, &what).map(Node::Spawn),
            _ => self.decode_at(value, path, &what).map(Node::End),
        }?;
        if let (Some(children), Some(slot)) = (children, node.scope_nodes_mut()) {
            *slot = children;
        }
        ok.then_some(node)
    }

    fn mapping(&mut self, value: Value, path: &Path, message: &str) -> Option<Mapping> {
        match value {
            Value::Mapping(m) => Some(m),
            _ => {
                self.error("invalid-value", self.map.value_pos(path), message, None);
                None
            }
        }
    }

    fn key_string(&mut self, key: &Value, path: &Path) -> Option<String> {
        match key {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.error(
                    "invalid-value",
                    self.map.value_pos(path),
                    "keys here must be plain names",
                    None,
                );
                None
            }
        }
    }

    fn take<T: DeserializeOwned>(
        &mut self,
        m: &mut Mapping,
        parent: &Path,
        key: &str,
        required: bool,
    ) -> Option<T> {
        match m.remove(key) {
            Some(v) => self.decode_at(v, &parent.join(key), &format!("`{key}`")),
            None if required => {
                self.missing(parent, key, "process");
                None
            }
            None => serde_yaml::from_value(Value::Null).ok(),
        }
    }

    fn missing(&mut self, parent: &Path, key: &str, what: &str) {
        self.error(
            "missing-field",
            self.map.key_pos(parent),
            format!("the {what} has no `{key}`"),
            Some(format!("add `{key}:`; see docs/process-format.md")),
        );
    }

    fn unknown_keys(&mut self, m: &Mapping, path: &Path, known: &[&str], what: &str) {
        for k in m.keys() {
            if let Value::String(k) = k
                && !known.contains(&k.as_str())
            {
                let hint = unknown_hint(k, known);
                self.error(
                    "unknown-field",
                    self.map.key_pos(&path.join(k)),
                    format!("the {what} has no field `{k}`"),
                    Some(hint),
                );
            }
        }
    }

    /// Decodes `value` (found at `path`) as `T`, reporting a failure as a diagnostic.
    fn decode_at<T: DeserializeOwned>(
        &mut self,
        value: Value,
        path: &Path,
        what: &str,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut at = path.clone();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Map { key } => {
                            at.0.push(Seg::Key(key.clone()))
                        }
                        serde_path_to_error::Segment::Seq { index } => {
                            at.0.push(Seg::Index(*index))
                        }
                        _ => {}
                    }
                }
                let d = self.serde_diagnostic(&e.into_inner().to_string(), &at, what);
                self.diags.push(d);
                None
            }
        }
    }

    fn serde_diagnostic(&self, msg: &str, at: &Path, what: &str) -> Diagnostic {
        let diag = |code, pos, message: String, hint: Option<String>| {
            Diagnostic::new(Severity::Error, code, message, hint, self.file, pos)
        };
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let (field, expected) = split_expected(rest);
            let known: Vec<&str> = expected.iter().map(String::as_str).collect();
            return diag(
                "unknown-field",
                self.map.key_pos(at),
                format!("a {what} has no field `{field}`"),
                Some(unknown_hint(field, &known)),
            );
        }
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            return diag(
                "missing-field",
                self.map.key_pos(at),
                format!("this {what} has no `{field}`"),
                Some(format!("add `{field}:`; see docs/process-format.md")),
            );
        }
        if let Some(rest) = msg.strip_prefix("unknown variant `") {
            let (value, expected) = split_expected(rest);
            let known: Vec<&str> = expected.iter().map(String::as_str).collect();
            return diag(
                "unknown-value",
                self.map.value_pos(at),
                format!("`{value}` is not allowed here"),
                Some(unknown_hint(value, &known)),
            );
        }
        let field = match at.0.last() {
            Some(Seg::Key(k)) => format!("`{k}`"),
            _ => format!("this {what}"),
        };
        diag(
            "invalid-value",
            self.map.value_pos(at),
            format!(
                "{field} has the wrong kind of value: {}",
                msg.replace("invalid type: ", "")
            ),
            Some("see docs/process-format.md for what this field takes".to_owned()),
        )
    }
}

fn last_key(path: &Path) -> String {
    match path.0.last() {
        Some(Seg::Key(k)) => k.clone(),
        Some(Seg::Index(i)) => i.to_string(),
        None => String::new(),
    }
}

/// Splits serde's "name`, expected one of `a`, `b`" into the name and the list.
fn split_expected(rest: &str) -> (&str, Vec<String>) {
    let mut parts = rest.splitn(2, '`');
    let name = parts.next().unwrap_or_default();
    let tail = parts.next().unwrap_or_default();
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect();
    (name, expected)
}

fn unknown_hint(name: &str, known: &[&str]) -> String {
    match suggest(name, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => "remove it".to_owned(),
        None => format!("expected one of: {}", known.join(", ")),
    }
}
