//! The process model: YAML text → a validated [`Process`], or every problem found.
//!
//! Loading happens in two stages. [`decode`] reads the text into the raw serde types
//! of [`raw`] (the format's single source of truth, also the source of the JSON
//! Schema), reporting structural problems; [`validate`] checks the meaning (ids,
//! flows, expressions, timers, the graph) and produces the [`Process`] the runtime
//! executes. Every problem is a [`Diagnostic`] with file, line, column, message and
//! hint, and all the problems of a file are reported together.
//!
//! ```
//! use ordo_model::{self as model, Options};
//!
//! let yaml = "
//! id: hello
//! start: [{ id: begin, next: greet }]
//! nodes:
//!   greet: { type: assign, set: { greeting: =\"hello \" + name }, next: done }
//!   done:  { type: end }
//! ";
//! let loaded = model::load("hello.yaml", yaml, &Options::default());
//! assert!(loaded.diagnostics.is_empty());
//! let process = loaded.process.expect("valid");
//! assert_eq!(process.def.id, "hello");
//! assert!(process.expression("\"hello \" + name").is_some());
//! ```

pub mod calendar;
mod decode;
pub mod diagnostic;
pub mod expr;
pub mod graph;
pub mod raw;
pub(crate) mod schema;
pub mod shape;
pub mod source;
pub mod timer;
pub(crate) mod validate;

pub use decode::{MAX_FILE_BYTES, MAX_NODES};
pub use diagnostic::{Diagnostic, Severity};
pub use expr::Expression;
pub use graph::FlowGraph;
pub use validate::field_accepts;

use std::collections::{HashMap, HashSet};

/// What the validator knows beyond the file itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names of the working calendars that exist (`default` always does).
    pub calendars: HashSet<String>,
    /// Ids of the processes in the same deployment, for checking `call` and `spawn`
    /// targets; `None` skips that check.
    pub processes: Option<HashSet<String>>,
    /// The role names `starters.roles` may use; `None` skips that check.
    pub roles: Option<HashSet<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calendars: HashSet::from(["default".to_owned()]),
            processes: None,
            roles: None,
        }
    }
}

/// A validated process definition, ready to run.
#[derive(Debug, Clone)]
pub struct Process {
    /// The definition as written.
    pub def: raw::ProcessDef,
    /// Its graph.
    pub graph: FlowGraph,
    expressions: HashMap<String, Expression>,
    /// Whether any node runs in a critical section (so the runtime looks for
    /// section waiters only in processes that can have them).
    critical: bool,
    /// Whether any node waits for a milestone.
    milestones: bool,
    /// The nodes that are some activity's milestone.
    milestone_nodes: HashSet<String>,
}

impl Process {
    /// The compiled form of an expression that appears in the definition (as written,
    /// without a leading `=`).
    pub fn expression(&self, source: &str) -> Option<&Expression> {
        self.expressions.get(source)
    }

    /// Whether any node of the process declares a `critical` section.
    pub fn has_critical_sections(&self) -> bool {
        self.critical
    }

    /// Whether any node of the process waits for a `milestone`.
    pub fn has_milestones(&self) -> bool {
        self.milestones
    }

    /// Whether `node` is some activity's `milestone`.
    pub fn is_milestone(&self, node: &str) -> bool {
        self.milestone_nodes.contains(node)
    }

    /// A node by id, wherever it is nested (ids are unique in a definition).
    pub fn node(&self, id: &str) -> Option<&raw::Node> {
        let el = &self.graph.graph[*self.graph.index.get(id)?];
        match &el.scope {
            None => self.def.nodes.get(id),
            Some(container) => self.node(container)?.scope()?.1.get(id),
        }
    }
}

/// The result of loading one file.
#[derive(Debug)]
pub struct Loaded {
    /// The file name, as given.
    pub file: String,
    /// The process, when it has no errors (it may have warnings).
    pub process: Option<Process>,
    /// Every error and warning, in the order they appear in the file.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Loads and validates one process file. `file` is only used to name it in
/// diagnostics. Never panics, whatever `text` holds.
pub fn load(file: &str, text: &str, opts: &Options) -> Loaded {
    let (def, map, mut diagnostics) = decode::decode(file, text);
    let process = match def {
        Some(def) => {
            let (p, more) = validate::validate(file, text, &map, def, opts);
            diagnostics.extend(more);
            p
        }
        None => None,
    };
    Loaded {
        file: file.to_owned(),
        process,
        diagnostics,
    }
}

/// The process files at `path`: the file itself, or every `.yaml` / `.yml` file
/// under the folder, recursively, in name order.
pub fn yaml_files(path: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        let mut entries = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
        Ok(())
    }
    if std::fs::metadata(path)?.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    walk(path, &mut out)?;
    Ok(out)
}

/// Loads several files as one deployment: `call` and `spawn` targets are checked
/// against the ids of all of them (and `opts.processes`, if any), and two files
/// with the same process id are an error.
pub fn load_deployment(files: &[(String, String)], opts: &Options) -> Vec<Loaded> {
    // First pass: the ids, read cheaply from the decoded files.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut decoded = Vec::new();
    for (name, text) in files {
        let (def, map, diags) = decode::decode(name, text);
        if let Some(d) = &def {
            ids.entry(d.id.clone()).or_insert_with(|| name.clone());
        }
        decoded.push((name, text, def, map, diags));
    }
    let mut known: HashSet<String> = ids.keys().cloned().collect();
    if let Some(extra) = &opts.processes {
        known.extend(extra.iter().cloned());
    }
    let opts = Options {
        calendars: opts.calendars.clone(),
        processes: Some(known),
        roles: opts.roles.clone(),
    };
    decoded
        .into_iter()
        .map(|(name, text, def, map, mut diagnostics)| {
            let process = def.and_then(|def| {
                if let Some(first) = ids.get(&def.id).filter(|f| *f != name) {
                    let pos = map.value_pos(&source::Path::root().join("id"));
                    diagnostics.push(Diagnostic::new(
                        Severity::Error,
                        "duplicate-process",
                        format!("process id `{}` is also used by {first}", def.id),
                        Some("give each process its own id".to_owned()),
                        name,
                        pos,
                    ));
                    return None;
                }
                let (p, more) = validate::validate(name, text, &map, def, &opts);
                diagnostics.extend(more);
                p
            });
            Loaded {
                file: name.clone(),
                process,
                diagnostics,
            }
        })
        .collect()
}

/// Reads a file's bytes as UTF-8 text, or says where the first invalid byte is.
pub fn text_from_bytes(file: &str, bytes: Vec<u8>) -> Result<String, Box<Diagnostic>> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let at = before.chars().count();
        Box::new(Diagnostic::new(
            Severity::Error,
            "not-utf8",
            format!("the file is not UTF-8 text: byte {valid} is invalid"),
            Some("save the file as UTF-8".to_owned()),
            file,
            source::Pos {
                line,
                column,
                start: at,
                end: at,
            },
        ))
    })
}

/// The JSON Schema of the process format, generated from [`raw::ProcessDef`].
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(raw::ProcessDef);
    serde_json::to_value(schema).unwrap_or_default()
}

/// The closest of `candidates` to `name`, if one is close enough to be a typo.
pub fn suggest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| {
            *d <= limit || (c.len() > 3 && (c.starts_with(name) || name.starts_with(c)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let c = ["assign", "qualify", "end"];
        assert_eq!(suggest("asign", c.iter().copied()), Some("assign"));
        assert_eq!(suggest("qualfy", c.iter().copied()), Some("qualify"));
        assert_eq!(suggest("zzz", c.iter().copied()), None);
    }
}
