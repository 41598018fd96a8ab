//! The process graph: every start event and node as a vertex, every flow as an edge
//! (petgraph). Built by the validator; used for its reachability checks, for diagrams
//! (`ordo graph`), and by the runtime to follow flows.

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;
use std::fmt::Write;

/// A vertex: a start event or a node.
#[derive(Debug, Clone)]
pub struct Element {
    /// Its id.
    pub id: String,
    /// `start`, or the node's `type`.
    pub kind: &'static str,
    /// Its label, if it has one.
    pub name: Option<String>,
    /// The id of the subprocess, event subprocess or loop it sits in (None: top level).
    pub scope: Option<String>,
}

/// What kind of flow an edge is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// A plain `next`.
    Next,
    /// A gateway branch, with its condition.
    Condition(String),
    /// A gateway's default.
    Default,
    /// An event-based gateway's event, described.
    Event(String),
    /// A boundary event's path, described.
    Boundary {
        /// The boundary event's id.
        id: String,
        /// What triggers it.
        trigger: String,
        /// Whether it cancels the activity.
        interrupting: bool,
    },
    /// From a container (subprocess, loop, event subprocess) to its first node.
    Enter,
    /// Where an activity's flow goes when its milestone (named here) has passed.
    Missed(String),
}

/// The process graph.
#[derive(Debug, Clone, Default)]
pub struct FlowGraph {
    /// Vertices and edges.
    pub graph: DiGraph<Element, Flow>,
    /// Vertex by id.
    pub index: HashMap<String, NodeIndex>,
}

impl FlowGraph {
    /// Adds a vertex (ids are unique; a repeated id keeps the first vertex).
    pub fn add(&mut self, el: Element) -> NodeIndex {
        if let Some(&i) = self.index.get(&el.id) {
            return i;
        }
        let id = el.id.clone();
        let i = self.graph.add_node(el);
        self.index.insert(id, i);
        i
    }

    /// Adds a flow between two known ids; unknown ids are ignored (the validator
    /// reports them).
    pub fn connect(&mut self, from: &str, to: &str, flow: Flow) {
        if let (Some(&a), Some(&b)) = (self.index.get(from), self.index.get(to)) {
            self.graph.add_edge(a, b, flow);
        }
    }

    /// The nodes with a flow into `id`, the scope entry excluded.
    pub fn predecessors<'g>(&'g self, id: &str) -> impl Iterator<Item = &'g str> + 'g {
        self.index.get(id).into_iter().flat_map(move |&i| {
            self.graph
                .edges_directed(i, Direction::Incoming)
                .filter(|e| *e.weight() != Flow::Enter)
                .map(|e| self.graph[e.source()].id.as_str())
        })
    }

    /// Number of flows into `id`, the scope entry excluded.
    pub fn incoming(&self, id: &str) -> usize {
        self.count(id, Direction::Incoming)
    }

    /// Number of flows out of `id`, the scope entry excluded.
    pub fn outgoing(&self, id: &str) -> usize {
        self.count(id, Direction::Outgoing)
    }

    fn count(&self, id: &str, dir: Direction) -> usize {
        self.index.get(id).map_or(0, |&i| {
            self.graph
                .edges_directed(i, dir)
                .filter(|e| *e.weight() != Flow::Enter)
                .count()
        })
    }

    /// The diagram as Mermaid flowchart text.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let ids: HashMap<NodeIndex, String> = self
            .graph
            .node_indices()
            .map(|i| (i, format!("n{}", i.index())))
            .collect();
        self.write_scope(&mut out, None, &ids, 1);
        for e in self.graph.edge_indices() {
            let Some((a, b)) = self.graph.edge_endpoints(e) else {
                continue;
            };
            let (a, b) = (&ids[&a], &ids[&b]);
            let _ = match &self.graph[e] {
                Flow::Next => writeln!(out, "  {a} --> {b}"),
                Flow::Enter => writeln!(out, "  {a} -.-> {b}"),
                Flow::Default => writeln!(out, "  {a} -->|default| {b}"),
                Flow::Condition(c) | Flow::Event(c) => {
                    writeln!(out, "  {a} -->|\"{}\"| {b}", mermaid_text(c))
                }
                Flow::Missed(m) => writeln!(
                    out,
                    "  {a} -.->|\"{}\"| {b}",
                    mermaid_text(&format!("{m} passed"))
                ),
                Flow::Boundary {
                    trigger,
                    interrupting,
                    ..
                } => {
                    let arrow = if *interrupting { "==>" } else { "-.->" };
                    writeln!(out, "  {a} {arrow}|\"{}\"| {b}", mermaid_text(trigger))
                }
            };
        }
        out
    }

    fn write_scope(
        &self,
        out: &mut String,
        scope: Option<&str>,
        ids: &HashMap<NodeIndex, String>,
        depth: usize,
    ) {
        let pad = "  ".repeat(depth);
        for i in self.graph.node_indices() {
            let el = &self.graph[i];
            if el.scope.as_deref() != scope {
                continue;
            }
            let label = mermaid_text(el.name.as_deref().unwrap_or(&el.id));
            let id = &ids[&i];
            let _ = match el.kind {
                "start" => writeln!(out, "{pad}{id}((\"{label}\"))"),
                "end" => writeln!(out, "{pad}{id}(((\"{label}\")))"),
                "exclusive" | "inclusive" | "parallel" | "complex" | "event" => {
                    let mark = match el.kind {
                        "exclusive" => "X",
                        "inclusive" => "O",
                        "parallel" => "+",
                        "complex" => "*",
                        _ => "E",
                    };
                    writeln!(out, "{pad}{id}{{\"{mark} {label}\"}}")
                }
                "catch" | "throw" => writeln!(out, "{pad}{id}([\"{label}\"])"),
                "subprocess" | "event_subprocess" | "loop" => {
                    let _ = writeln!(out, "{pad}subgraph {id}_scope [\"{label}\"]");
                    let _ = writeln!(out, "{pad}  {id}[\"{} {label}\"]", el.kind);
                    self.write_scope(out, Some(&el.id), ids, depth + 1);
                    writeln!(out, "{pad}end")
                }
                kind => writeln!(out, "{pad}{id}[\"{label}<br/><small>{kind}</small>\"]"),
            };
        }
    }

    /// The diagram in Graphviz dot.
    pub fn to_dot(&self) -> String {
        self.to_dot_with(|_| None)
    }

    /// Graphviz dot with extra attributes (`style=filled, fillcolor="…"`) on the
    /// nodes `extra` returns them for, by node id: how a monitor highlights
    /// where an instance stands.
    pub fn to_dot_with(&self, extra: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::from("digraph process {\n  rankdir=LR;\n");
        for i in self.graph.node_indices() {
            let el = &self.graph[i];
            let shape = match el.kind {
                "start" | "end" | "catch" | "throw" => "circle",
                "exclusive" | "inclusive" | "parallel" | "complex" | "event" => "diamond",
                _ => "box",
            };
            let label = el.name.as_deref().unwrap_or(&el.id);
            let more = extra(&el.id).map(|m| format!(", {m}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\", shape={shape}{more}];",
                dot_text(&el.id),
                dot_text(label)
            );
        }
        for e in self.graph.edge_indices() {
            let Some((a, b)) = self.graph.edge_endpoints(e) else {
                continue;
            };
            let (a, b) = (dot_text(&self.graph[a].id), dot_text(&self.graph[b].id));
            let label = match &self.graph[e] {
                Flow::Next => String::new(),
                Flow::Enter => " [style=dotted]".to_owned(),
                Flow::Default => " [label=\"default\"]".to_owned(),
                Flow::Condition(c) | Flow::Event(c) => format!(" [label=\"{}\"]", dot_text(c)),
                Flow::Missed(m) => format!(
                    " [label=\"{}\", style=dashed]",
                    dot_text(&format!("{m} passed"))
                ),
                Flow::Boundary {
                    trigger,
                    interrupting,
                    ..
                } => format!(
                    " [label=\"{}\", style={}]",
                    dot_text(trigger),
                    if *interrupting { "bold" } else { "dashed" }
                ),
            };
            let _ = writeln!(out, "  \"{a}\" -> \"{b}\"{label};");
        }
        out.push_str("}\n");
        out
    }
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', " ")
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}
