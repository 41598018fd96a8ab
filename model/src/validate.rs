//! Stage two of loading: a decoded [`ProcessDef`] → a validated [`Process`], or every
//! problem found, each with its position and a hint.
//!
//! Checks, in order: ids; references (flows, scope starts, compensation handlers);
//! each node's own rules (triggers, gateways, forms, names); expressions (compiled);
//! timers (parsed); and the graph (reachability, a path to an end, gateway degrees,
//! joins that would deadlock).

use super::diagnostic::{Diagnostic, Severity};
use super::expr::{self, Expression};
use super::graph::{Element, Flow, FlowGraph};
use super::raw::*;
use super::source::{Path, Pos, SourceMap, Style};
use super::{Options, Process, shape, suggest, timer};
use petgraph::Direction;
use petgraph::visit::EdgeRef;
use std::collections::{HashMap, HashSet, VecDeque};

/// Ids of nodes, start events, processes: a letter or `_`, then letters, digits,
/// `_`, `-`, `.`.
fn valid_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
        && s.len() <= 128
}

/// Variable names must be CEL identifiers.
fn valid_var(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && s.len() <= 128
}

/// Message, signal, error and escalation names, and action names.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.' | ':' | '/'))
}

/// Where a node sits.
struct Placed<'d> {
    node: &'d Node,
    path: Path,
    scope: Option<String>,
}

pub(crate) struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    map: &'a SourceMap,
    opts: &'a Options,
    diags: Vec<Diagnostic>,
    exprs: HashMap<String, Expression>,
    /// Nodes with a flow to a missing id: their path is cut, not endless.
    broken: HashSet<String>,
    /// Ids offered as "did you mean": not also reported as unreachable.
    suggested: HashSet<String>,
    /// Ids defined twice: the graph is ambiguous, so its checks are skipped.
    duplicated: HashSet<String>,
}

pub(crate) fn validate(
    file: &str,
    text: &str,
    map: &SourceMap,
    def: ProcessDef,
    opts: &Options,
) -> (Option<Process>, Vec<Diagnostic>) {
    let mut v = Validator {
        file,
        text,
        map,
        opts,
        diags: Vec::new(),
        exprs: HashMap::new(),
        broken: HashSet::new(),
        suggested: HashSet::new(),
        duplicated: HashSet::new(),
    };
    let graph = v.run(&def);
    v.diags.sort_by_key(|d| (d.line, d.column));
    let ok = !v.diags.iter().any(Diagnostic::is_error);
    let process = ok.then(|| {
        let mut p = Process {
            def,
            graph,
            expressions: v.exprs,
            critical: false,
            milestones: false,
            milestone_nodes: Default::default(),
        };
        p.critical = p
            .graph
            .graph
            .node_weights()
            .any(|el| p.node(&el.id).and_then(Node::critical).is_some());
        p.milestone_nodes = p
            .graph
            .graph
            .node_weights()
            .filter_map(|el| p.node(&el.id).and_then(Node::milestone))
            .map(|(m, _)| m.to_owned())
            .collect();
        p.milestones = !p.milestone_nodes.is_empty();
        p
    });
    (process, v.diags)
}

impl<'a> Validator<'a> {
    fn push(
        &mut self,
        sev: Severity,
        code: &'static str,
        pos: Pos,
        msg: impl Into<String>,
        hint: Option<String>,
    ) {
        self.diags
            .push(Diagnostic::new(sev, code, msg, hint, self.file, pos));
    }
    fn err_key(
        &mut self,
        code: &'static str,
        path: &Path,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let pos = self.map.key_pos(path);
        self.push(Severity::Error, code, pos, msg, hint.into());
    }
    fn err_val(
        &mut self,
        code: &'static str,
        path: &Path,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let pos = self.map.value_pos(path);
        self.push(Severity::Error, code, pos, msg, hint.into());
    }
    fn warn_key(
        &mut self,
        code: &'static str,
        path: &Path,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let pos = self.map.key_pos(path);
        self.push(Severity::Warning, code, pos, msg, hint.into());
    }

    fn run(&mut self, def: &ProcessDef) -> FlowGraph {
        let root = Path::root();
        if !valid_id(&def.id) {
            self.err_val(
                "invalid-id",
                &root.join("id"),
                format!("`{}` is not a valid process id", def.id),
                id_hint(),
            );
        }
        if let Some(cal) = &def.calendar {
            self.calendar(cal, &root.join("calendar"));
        }
        self.variables(&def.variables, &root.join("variables"));
        if let Some(st) = &def.starters {
            self.starters(st, &root.join("starters"));
        }
        self.messages(def, &root.join("messages"));

        // Every node, wherever it is nested, by id.
        let mut placed: Vec<(String, Placed)> = Vec::new();
        collect(&def.nodes, &root.join("nodes"), None, &mut placed);
        let mut graph = FlowGraph::default();
        let mut first_seen: HashMap<String, Path> = HashMap::new();
        if def.start.is_empty() {
            self.err_val(
                "no-start",
                &root.join("start"),
                "the process has no start event",
                start_hint(),
            );
        }
        for (i, s) in def.start.iter().enumerate() {
            let path = root.join("start").join(i).join("id");
            self.id(&s.id, &path, &mut first_seen);
            graph.add(Element {
                id: s.id.clone(),
                kind: "start",
                name: None,
                scope: None,
            });
        }
        for (id, p) in &placed {
            self.id(id, &p.path, &mut first_seen);
            graph.add(Element {
                id: id.clone(),
                kind: p.node.type_name(),
                name: node_name(p.node),
                scope: p.scope.clone(),
            });
        }
        // The first definition of an id wins; a second one is reported as a duplicate.
        let mut scope_of: HashMap<&str, Option<&str>> = HashMap::new();
        for (id, p) in &placed {
            scope_of.entry(id.as_str()).or_insert(p.scope.as_deref());
        }
        let handlers: HashSet<&str> = placed
            .iter()
            .filter_map(|(_, p)| p.node.compensation())
            .collect();

        let starts = self.starts(def, &scope_of, &mut graph);
        for (id, p) in &placed {
            let before = self.flow_errors();
            self.node(id, p, &scope_of, &handlers, &placed, &mut graph);
            if self.flow_errors() > before {
                self.broken.insert(id.clone());
            }
        }
        if self.duplicated.is_empty() {
            self.degrees(&placed, &graph);
            self.reachability(&placed, &starts, &handlers, &graph);
            self.deadlocks(&placed, &graph);
            self.milestones_upstream(&placed, &graph);
        }
        graph
    }

    fn flow_errors(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| matches!(d.code, "unknown-target" | "target-out-of-scope"))
            .count()
    }

    fn id(&mut self, id: &str, path: &Path, seen: &mut HashMap<String, Path>) {
        if !valid_id(id) {
            self.err_key(
                "invalid-id",
                path,
                format!("`{id}` is not a valid id"),
                id_hint(),
            );
        }
        if let Some(first) = seen.get(id) {
            self.duplicated.insert(id.to_owned());
            let line = self.map.key_pos(first).line;
            self.err_key(
                "duplicate-id",
                path,
                format!("the id `{id}` is already used at line {line}"),
                Some(
                    "ids are unique in the whole file, nested nodes included; rename one"
                        .to_owned(),
                ),
            );
        } else {
            seen.insert(id.to_owned(), path.clone());
        }
    }

    /// Checks that `target` (written at `path`) is a node of `scope`.
    fn target(
        &mut self,
        target: &str,
        path: &Path,
        scope: Option<&str>,
        scope_of: &HashMap<&str, Option<&str>>,
    ) -> bool {
        if self.duplicated.contains(target) {
            // Which of the two is meant is unknown; the duplicate itself is reported.
            return true;
        }
        match scope_of.get(target) {
            Some(s) if *s == scope => true,
            Some(s) => {
                let other = s.map_or("at the top level".to_owned(), |s| format!("inside `{s}`"));
                let here = scope.map_or("the top level".to_owned(), |s| format!("`{s}`"));
                self.err_val(
                    "target-out-of-scope",
                    path,
                    format!("`{target}` is {other}, but this flow is in {here}"),
                    Some("flows stay inside their scope; leave a subprocess through its end and its `next`".to_owned()),
                );
                false
            }
            None => {
                let same: Vec<&str> = scope_of
                    .iter()
                    .filter(|(_, s)| **s == scope)
                    .map(|(id, _)| *id)
                    .collect();
                let hint = match suggest(target, same.iter().copied()) {
                    Some(s) => {
                        self.suggested.insert(s.to_owned());
                        format!("did you mean `{s}`?")
                    }
                    None => "name a node of the same scope, or add a node with this id".to_owned(),
                };
                self.err_val(
                    "unknown-target",
                    path,
                    format!("there is no node `{target}`"),
                    Some(hint),
                );
                false
            }
        }
    }

    fn starts(
        &mut self,
        def: &ProcessDef,
        scope_of: &HashMap<&str, Option<&str>>,
        graph: &mut FlowGraph,
    ) -> Vec<String> {
        let mut call_starts = Vec::new();
        let mut ids = Vec::new();
        for (i, s) in def.start.iter().enumerate() {
            let path = Path::root().join("start").join(i);
            ids.push(s.id.clone());
            if self.target(&s.next, &path.join("next"), None, scope_of) {
                graph.connect(&s.id, &s.next, Flow::Next);
            }
            let triggers = [s.message.is_some(), s.timer.is_some(), s.signal.is_some()]
                .iter()
                .filter(|t| **t)
                .count();
            if triggers > 1 {
                self.err_key("bad-trigger", &path.join("id"), format!("start event `{}` has several triggers", s.id), Some("give each start event one of `message`, `timer`, `signal`; use several start events for several triggers".to_owned()));
            }
            match (triggers, s.call) {
                (0, Some(false)) => self.err_val("bad-trigger", &path.join("call"), format!("start event `{}` has no trigger", s.id), Some("add `message`, `timer` or `signal`, or remove `call: false`".to_owned())),
                (0, _) => call_starts.push(path.clone()),
                (_, Some(true)) => self.err_val("bad-trigger", &path.join("call"), "`call: true` marks the start used by the API and call activities; it cannot also have a message, timer or signal", Some("make it a start event of its own".to_owned())),
                _ => {}
            }
            if let Some(m) = &s.message {
                self.name(m, &path.join("message"), "message");
            } else if s.key.is_some() || s.unique {
                let field = if s.key.is_some() { "key" } else { "unique" };
                self.err_key(
                    "bad-trigger",
                    &path.join(field),
                    format!("`{field}` only applies to a message start event"),
                    Some("add `message:` or remove it".to_owned()),
                );
            }
            if s.unique && s.key.is_none() && s.message.is_some() {
                self.err_key(
                    "bad-trigger",
                    &path.join("unique"),
                    "`unique` needs a correlation `key` to tell instances apart",
                    Some(
                        "add `key:` with an expression over the message, such as `lead.email`"
                            .to_owned(),
                    ),
                );
            }
            if let Some(k) = &s.key {
                self.expr(&k.0, &path.join("key"));
            }
            if let Some(sig) = &s.signal {
                self.name(sig, &path.join("signal"), "signal");
            }
            if let Some(t) = &s.timer {
                self.timer(t, &path.join("timer"), true);
            }
        }
        if call_starts.len() > 1 {
            for p in &call_starts[1..] {
                self.err_key("bad-trigger", &p.join("id"), "the process has several start events without a trigger; the API and call activities could not tell which to use", Some("keep one; give the others a `message`, `timer` or `signal`".to_owned()));
            }
        }
        ids
    }

    #[allow(clippy::too_many_lines)]
    fn node(
        &mut self,
        id: &str,
        p: &Placed,
        scope_of: &HashMap<&str, Option<&str>>,
        handlers: &HashSet<&str>,
        placed: &[(String, Placed)],
        graph: &mut FlowGraph,
    ) {
        let path = &p.path;
        let scope = p.scope.as_deref();
        let is_handler = handlers.contains(id);
        // `next`.
        let next_ok_many = matches!(p.node, Node::Parallel(_) | Node::Inclusive(_));
        if let Some(next) = p.node.next() {
            let np = path.join("next");
            if next.ids().is_empty() {
                self.err_val(
                    "missing-next",
                    &np,
                    "`next` is an empty list",
                    Some("name the node that follows".to_owned()),
                );
            }
            if next.ids().len() > 1 && !next_ok_many {
                self.err_val(
                    "several-next",
                    &np,
                    format!("a `{}` node can have only one `next`", p.node.type_name()),
                    Some(
                        "to run several paths at once, go to a `parallel` gateway that names them"
                            .to_owned(),
                    ),
                );
            }
            let mut seen = HashSet::new();
            for (i, t) in next.ids().iter().enumerate() {
                let tp = if matches!(next, Next::Many(_)) {
                    np.join(i)
                } else {
                    np.clone()
                };
                if !seen.insert(t) {
                    self.err_val(
                        "duplicate-flow",
                        &tp,
                        format!("`{t}` is named twice"),
                        Some("remove one".to_owned()),
                    );
                    continue;
                }
                if self.target(t, &tp, scope, scope_of) {
                    graph.connect(id, t, Flow::Next);
                }
            }
            if is_handler {
                self.err_key(
                    "bad-compensation",
                    &np,
                    format!("`{id}` is a compensation handler, so it cannot have a `next`"),
                    Some(
                        "a handler runs on its own when its activity is compensated; remove `next`"
                            .to_owned(),
                    ),
                );
            }
        } else if needs_next(p.node) && !is_handler {
            self.err_key(
                "missing-next",
                path,
                format!("node `{id}` has no `next`, so its path stops here without an end"),
                Some("add `next:` naming the node that follows, or an `end` node".to_owned()),
            );
        }
        // Boundary events.
        for (i, b) in p.node.boundary().iter().enumerate() {
            let bp = path.join("boundary").join(i);
            let triggers = [
                b.timer.is_some(),
                b.message.is_some(),
                b.signal.is_some(),
                b.error.is_some(),
                b.escalation.is_some(),
            ];
            if triggers.iter().filter(|t| **t).count() != 1 {
                self.err_key("bad-trigger", &bp, "a boundary event needs exactly one of `timer`, `message`, `signal`, `error`, `escalation`", Some("use one boundary event per trigger".to_owned()));
            }
            if b.error.is_some() && !b.interrupting {
                self.err_val("bad-trigger", &bp.join("interrupting"), "an error boundary event always interrupts", Some("remove `interrupting: false`, or use an `escalation` for a non-critical problem".to_owned()));
            }
            self.trigger_fields(
                &bp,
                b.message.as_deref(),
                b.key.as_ref(),
                b.signal.as_deref(),
                b.error.as_deref(),
                b.escalation.as_deref(),
            );
            if let Some(t) = &b.timer {
                self.timer(t, &bp.join("timer"), true);
            }
            let bid = b.id.clone().unwrap_or_else(|| format!("{id}.boundary{i}"));
            if self.target(&b.to, &bp.join("to"), scope, scope_of) {
                graph.connect(
                    id,
                    &b.to,
                    Flow::Boundary {
                        id: bid,
                        trigger: describe(
                            b.timer.as_ref(),
                            b.message.as_deref(),
                            b.signal.as_deref(),
                            b.error.as_deref(),
                            b.escalation.as_deref(),
                        ),
                        interrupting: b.interrupting,
                    },
                );
            }
        }
        // Compensation handler.
        if let Some(h) = p.node.compensation() {
            let hp = path.join("compensation");
            if self.target(h, &hp, scope, scope_of) {
                if let Some((_, hpl)) = placed.iter().find(|(hid, _)| hid == h)
                    && !matches!(
                        hpl.node,
                        Node::Service(_)
                            | Node::User(_)
                            | Node::Assign(_)
                            | Node::Subprocess(_)
                            | Node::Call(_)
                    )
                {
                    self.err_val(
                        "bad-compensation",
                        &hp,
                        format!(
                            "`{h}` is a `{}` node; a compensation handler must be an activity",
                            hpl.node.type_name()
                        ),
                        Some("use a service, user, assign, subprocess or call node".to_owned()),
                    );
                }
                if h == id {
                    self.err_val(
                        "bad-compensation",
                        &hp,
                        "an activity cannot compensate itself",
                        None,
                    );
                }
            }
        }
        if let Some(m) = p.node.multi() {
            self.multi(m, &path.join("multi"));
        }
        if let Some(c) = p.node.critical()
            && !valid_id(c)
        {
            self.err_val(
                "invalid-name",
                &path.join("critical"),
                format!(
                    "`{}` cannot name a critical section",
                    c.chars().take(64).collect::<String>()
                ),
                Some("use letters, digits, `_`, `-` or `.`, such as `stock`".to_owned()),
            );
        }
        if let Some((m, missed)) = p.node.milestone() {
            self.milestone(id, m, missed, path, scope, scope_of, placed, graph);
        } else if p.node.missed().is_some() {
            self.err_key(
                "bad-milestone",
                &path.join("missed"),
                format!("`{id}` has `missed` but no `milestone`, so nothing can be missed"),
                Some(
                    "add `milestone: <node>` (the state the activity needs), or remove `missed`"
                        .to_owned(),
                ),
            );
        }
        match p.node {
            Node::Empty(_) | Node::Parallel(_) => {}
            Node::Complex(c) => self.expr(&c.activation.0, &path.join("activation")),
            Node::Assign(n) => self.mapping(&n.set, &path.join("set"), true),
            Node::Service(n) => {
                if !valid_name(&n.action) || !n.action.contains('.') {
                    self.err_val(
                        "invalid-name",
                        &path.join("action"),
                        format!("`{}` is not an action name", n.action),
                        Some("actions are named `plugin.action`, such as `crm.assign`".to_owned()),
                    );
                }
                self.mapping(&n.input, &path.join("with"), false);
                self.mapping(&n.out, &path.join("out"), true);
                if let Some(r) = &n.result {
                    self.var(r, &path.join("result"));
                }
                if let Some(r) = n.retries
                    && r > 100
                {
                    self.err_val(
                        "invalid-value",
                        &path.join("retries"),
                        format!("{r} retries is more than the limit of 100"),
                        None,
                    );
                }
                if let Some(b) = &n.backoff {
                    self.plain_duration(b, &path.join("backoff"));
                }
            }
            Node::User(n) => self.user(n, path),
            Node::Receive(n) => {
                self.name(&n.message, &path.join("message"), "message");
                if let Some(k) = &n.key {
                    self.expr(&k.0, &path.join("key"));
                }
                self.mapping(&n.out, &path.join("out"), true);
            }
            Node::Catch(n) => {
                if [n.message.is_some(), n.timer.is_some(), n.signal.is_some()]
                    .iter()
                    .filter(|t| **t)
                    .count()
                    != 1
                {
                    self.err_key("bad-trigger", path, format!("catch event `{id}` needs exactly one of `message`, `timer`, `signal`"), Some("use one catch event per trigger, or an `event` gateway to wait for the first of several".to_owned()));
                }
                self.trigger_fields(
                    path,
                    n.message.as_deref(),
                    n.key.as_ref(),
                    n.signal.as_deref(),
                    None,
                    None,
                );
                if n.message.is_none() && !n.out.is_empty() {
                    self.err_key(
                        "bad-trigger",
                        &path.join("out"),
                        "`out` reads a message; this event waits for none",
                        None,
                    );
                }
                self.mapping(&n.out, &path.join("out"), true);
                if let Some(t) = &n.timer {
                    self.timer(t, &path.join("timer"), false);
                }
            }
            Node::Throw(n) => {
                let kinds = [
                    n.message.is_some(),
                    n.signal.is_some(),
                    n.escalation.is_some(),
                    n.error.is_some(),
                    n.compensate.is_some(),
                ];
                if kinds.iter().filter(|t| **t).count() != 1 {
                    self.err_key("bad-trigger", path, format!("throw event `{id}` needs exactly one of `message`, `signal`, `escalation`, `error`, `compensate`"), Some("use one throw event per thing raised; for doing nothing use `empty`".to_owned()));
                }
                if n.error.is_some() && n.next.is_some() {
                    self.err_key("bad-trigger", &path.join("next"), "an error ends the path: a throw with `error` cannot have a `next`", Some("remove `next`; catch the error with a boundary `error` event on an enclosing activity".to_owned()));
                }
                self.raised(
                    path,
                    n.message.as_deref(),
                    n.key.as_ref(),
                    &n.payload,
                    n.signal.as_deref(),
                    n.error.as_deref(),
                    n.escalation.as_deref(),
                );
                if let Some(c) = &n.compensate {
                    self.compensate_target(c, &path.join("compensate"), scope, placed);
                }
            }
            Node::End(n) => {
                let kinds = [
                    n.terminate,
                    n.message.is_some(),
                    n.signal.is_some(),
                    n.escalation.is_some(),
                    n.error.is_some(),
                    n.compensate.is_some(),
                ];
                if kinds.iter().filter(|t| **t).count() > 1 {
                    self.err_key("bad-trigger", path, format!("end event `{id}` can do one of `terminate`, `message`, `signal`, `escalation`, `error`, `compensate`"), Some("chain throw events before a plain end to do several things".to_owned()));
                }
                self.raised(
                    path,
                    n.message.as_deref(),
                    n.key.as_ref(),
                    &n.payload,
                    n.signal.as_deref(),
                    n.error.as_deref(),
                    n.escalation.as_deref(),
                );
                if let Some(c) = &n.compensate {
                    self.compensate_target(c, &path.join("compensate"), scope, placed);
                }
            }
            Node::Exclusive(Exclusive {
                branches,
                default,
                next,
                ..
            })
            | Node::Inclusive(Inclusive {
                branches,
                default,
                next,
                ..
            }) => {
                self.branches(
                    id,
                    p.node.type_name(),
                    path,
                    branches,
                    default.as_deref(),
                    next.as_ref(),
                    scope,
                    scope_of,
                    graph,
                );
            }
            Node::Event(n) => {
                if n.events.len() < 2 {
                    self.err_key(
                        "gateway-flows",
                        &path.join("events"),
                        format!(
                            "event gateway `{id}` races {} event(s); it needs at least two",
                            n.events.len()
                        ),
                        Some("add another event, or use a `catch` event for one".to_owned()),
                    );
                }
                for (i, e) in n.events.iter().enumerate() {
                    let ep = path.join("events").join(i);
                    if [e.message.is_some(), e.timer.is_some(), e.signal.is_some()]
                        .iter()
                        .filter(|t| **t)
                        .count()
                        != 1
                    {
                        self.err_key("bad-trigger", &ep, "each event of an event gateway needs exactly one of `message`, `timer`, `signal`", None);
                    }
                    self.trigger_fields(
                        &ep,
                        e.message.as_deref(),
                        e.key.as_ref(),
                        e.signal.as_deref(),
                        None,
                        None,
                    );
                    if let Some(t) = &e.timer {
                        self.timer(t, &ep.join("timer"), false);
                    }
                    if self.target(&e.to, &ep.join("to"), scope, scope_of) {
                        graph.connect(
                            id,
                            &e.to,
                            Flow::Event(describe(
                                e.timer.as_ref(),
                                e.message.as_deref(),
                                e.signal.as_deref(),
                                None,
                                None,
                            )),
                        );
                    }
                }
            }
            Node::Subprocess(n) => {
                self.variables(&n.variables, &path.join("variables"));
                self.scope_start(id, &n.start, path, scope_of, graph);
            }
            Node::EventSubprocess(n) => {
                let t = [
                    n.message.is_some(),
                    n.timer.is_some(),
                    n.signal.is_some(),
                    n.error.is_some(),
                    n.escalation.is_some(),
                ];
                if t.iter().filter(|t| **t).count() != 1 {
                    self.err_key("bad-trigger", path, format!("event subprocess `{id}` needs exactly one of `message`, `timer`, `signal`, `error`, `escalation`"), None);
                }
                if n.error.is_some() && !n.interrupting {
                    self.err_val(
                        "bad-trigger",
                        &path.join("interrupting"),
                        "an error event subprocess always interrupts",
                        None,
                    );
                }
                self.trigger_fields(
                    path,
                    n.message.as_deref(),
                    n.key.as_ref(),
                    n.signal.as_deref(),
                    n.error.as_deref(),
                    n.escalation.as_deref(),
                );
                if let Some(t) = &n.timer {
                    self.timer(t, &path.join("timer"), true);
                }
                self.scope_start(id, &n.start, path, scope_of, graph);
            }
            Node::Loop(n) => {
                match (&n.while_, &n.until) {
                    (Some(w), None) => self.expr(&w.0, &path.join("while")),
                    (None, Some(u)) => self.expr(&u.0, &path.join("until")),
                    _ => self.err_key("bad-loop", path, format!("loop `{id}` needs exactly one of `while` (tested before each run) and `until` (tested after)"), None),
                }
                if n.max_iterations == Some(0) {
                    self.err_val(
                        "bad-loop",
                        &path.join("max_iterations"),
                        "`max_iterations` must be at least 1",
                        None,
                    );
                }
                self.scope_start(id, &n.start, path, scope_of, graph);
            }
            Node::Call(n) => {
                self.called(&n.process, n.version, path);
                self.mapping(&n.input, &path.join("in"), false);
                self.mapping(&n.out, &path.join("out"), true);
                if let Some(bk) = &n.business_key {
                    self.business_key(bk, &path.join("business_key"));
                }
            }
            Node::Spawn(n) => {
                self.called(&n.process, n.version, path);
                self.mapping(&n.input, &path.join("in"), false);
                if let Some(bk) = &n.business_key {
                    self.business_key(bk, &path.join("business_key"));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn branches(
        &mut self,
        id: &str,
        ty: &str,
        path: &Path,
        branches: &[Branch],
        default: Option<&str>,
        next: Option<&Next>,
        scope: Option<&str>,
        scope_of: &HashMap<&str, Option<&str>>,
        graph: &mut FlowGraph,
    ) {
        if !branches.is_empty() && next.is_some() {
            self.err_key("gateway-flows", &path.join("next"), format!("`{id}` has both `branches` and `next`"), Some("a gateway either splits (`branches`, `default`) or merges (`next`); use two gateways".to_owned()));
        }
        if branches.is_empty() && default.is_some() {
            self.err_key(
                "gateway-flows",
                &path.join("default"),
                format!("`{id}` has a `default` but no `branches`"),
                Some("add `branches`, or use `next` for a merge".to_owned()),
            );
        }
        for (i, b) in branches.iter().enumerate() {
            let bp = path.join("branches").join(i);
            self.expr(&b.when.0, &bp.join("when"));
            if self.target(&b.to, &bp.join("to"), scope, scope_of) {
                graph.connect(id, &b.to, Flow::Condition(b.when.0.clone()));
            }
        }
        if let Some(d) = default
            && self.target(d, &path.join("default"), scope, scope_of)
        {
            graph.connect(id, d, Flow::Default);
        }
        let always = branches.last().is_some_and(|b| b.when.0.trim() == "true");
        if !branches.is_empty() && default.is_none() && !always {
            self.warn_key("missing-default", path, format!("{ty} gateway `{id}` has no `default`; if every condition is false the instance stops with an incident \"no branch matched\""), Some("add `default:` naming where to go otherwise".to_owned()));
        }
    }

    /// A milestone names a node of the same scope where a token waits (an
    /// activity, a catch event or an event-based gateway), not the node itself;
    /// `missed` is a flow of the same scope.
    #[allow(clippy::too_many_arguments)] // the node walk's context, as `node` has it
    fn milestone(
        &mut self,
        id: &str,
        m: &str,
        missed: Option<&str>,
        path: &Path,
        scope: Option<&str>,
        scope_of: &HashMap<&str, Option<&str>>,
        placed: &[(String, Placed)],
        graph: &mut FlowGraph,
    ) {
        let mp = path.join("milestone");
        if m == id {
            self.err_val(
                "bad-milestone",
                &mp,
                format!("`{id}` cannot be its own milestone"),
                Some(
                    "name the node where another branch waits, such as `await_dispatch`".to_owned(),
                ),
            );
        } else if self.target(m, &mp, scope, scope_of)
            && let Some((_, target)) = placed.iter().find(|(pid, _)| pid == m)
            && !matches!(
                target.node,
                Node::User(_)
                    | Node::Service(_)
                    | Node::Receive(_)
                    | Node::Catch(_)
                    | Node::Event(_)
                    | Node::Subprocess(_)
                    | Node::Loop(_)
                    | Node::Call(_)
            )
        {
            self.err_val(
                "bad-milestone",
                &mp,
                format!(
                    "`{m}` is a node of type `{}`, where no token waits, so it cannot be a milestone",
                    target.node.type_name()
                ),
                Some("name an activity, a catch event or an event-based gateway: a state the other branch rests in".to_owned()),
            );
        }
        if missed == Some(id) {
            self.err_val(
                "bad-milestone",
                &path.join("missed"),
                format!("`missed` leads back to `{id}`, which would wait for the same passed milestone again, for ever"),
                Some("name where the flow goes instead, such as a task telling the customer it is too late".to_owned()),
            );
        } else if let Some(to) = missed
            && self.target(to, &path.join("missed"), scope, scope_of)
        {
            graph.connect(id, to, Flow::Missed(m.to_owned()));
        }
    }

    fn scope_start(
        &mut self,
        id: &str,
        start: &str,
        path: &Path,
        scope_of: &HashMap<&str, Option<&str>>,
        graph: &mut FlowGraph,
    ) {
        if self.target(start, &path.join("start"), Some(id), scope_of) {
            graph.connect(id, start, Flow::Enter);
        }
    }

    /// A business key is text or a number (or `=expression`), never a list or a map.
    fn business_key(&mut self, bk: &Value, path: &Path) {
        match bk {
            Value::String(_) | Value::Number(_) => self.value(bk, path),
            _ => self.err_val(
                "invalid-value",
                path,
                "`business_key` must be text, a number or `=expression`",
                None,
            ),
        }
    }

    fn user(&mut self, n: &User, path: &Path) {
        if let Some(v) = &n.completed_by {
            self.var(v, &path.join("completed_by"));
            if n.form.contains_key(v) {
                self.err_val(
                    "invalid-name",
                    &path.join("completed_by"),
                    format!(
                        "`{v}` is also a field of the form; the two would overwrite each other"
                    ),
                    Some("name a variable the form does not have, such as `approver`".to_owned()),
                );
            }
        }
        if let Some(a) = &n.assignee {
            match a {
                Value::String(_) => self.value(a, &path.join("assignee")),
                _ => self.err_val(
                    "invalid-value",
                    &path.join("assignee"),
                    "`assignee` must be a user name or `=expression`",
                    None,
                ),
            }
        }
        for field in ["candidate_users", "candidate_groups", "exclude"] {
            let v = match field {
                "candidate_users" => &n.candidate_users,
                "candidate_groups" => &n.candidate_groups,
                _ => &n.exclude,
            };
            let Some(v) = v else { continue };
            let fp = path.join(field);
            match v {
                Value::String(_) => self.value(v, &fp),
                Value::Array(items) => {
                    for (i, it) in items.iter().enumerate() {
                        if !it.is_string() {
                            self.err_val(
                                "invalid-value",
                                &fp.join(i),
                                format!("`{field}` items must be names"),
                                None,
                            );
                        } else {
                            self.value(it, &fp.join(i));
                        }
                    }
                }
                _ => self.err_val(
                    "invalid-value",
                    &fp,
                    format!("`{field}` must be a list of names or `=expression`"),
                    None,
                ),
            }
        }
        if let Some(pr) = &n.priority {
            match pr {
                // A plain string would be read as no priority at all (50).
                Value::String(s) if s.starts_with('=') => self.value(pr, &path.join("priority")),
                Value::Number(x) if x.as_u64().is_some_and(|x| x <= 100) => {}
                _ => self.err_val(
                    "invalid-value",
                    &path.join("priority"),
                    "`priority` must be a whole number from 0 to 100, or `=expression`",
                    None,
                ),
            }
        }
        if let Some(due) = &n.due {
            if due.cycle.is_some() {
                self.err_val(
                    "bad-timer",
                    &path.join("due").join("cycle"),
                    "a due date cannot repeat",
                    Some("use `duration` or `date`".to_owned()),
                );
            } else {
                self.timer(due, &path.join("due"), false);
            }
        }
        for (name, f) in &n.form {
            self.form_field(name, f, &path.join("form").join(name));
        }
    }

    fn form_field(&mut self, name: &str, f: &FormField, path: &Path) {
        if !valid_var(name) {
            self.err_key(
                "invalid-name",
                path,
                format!("`{name}` is not a valid field name"),
                var_hint(),
            );
        }
        let numeric = matches!(f.ty, FieldType::Number | FieldType::Integer);
        let textual = matches!(f.ty, FieldType::String | FieldType::Text);
        let ty = serde_json::to_value(f.ty)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if !numeric && (f.min.is_some() || f.max.is_some()) {
            let k = if f.min.is_some() { "min" } else { "max" };
            self.err_key(
                "bad-form-field",
                &path.join(k),
                format!("`{k}` applies to number and integer fields, not `{ty}`"),
                Some("use `min_length`/`max_length` for text".to_owned()),
            );
        }
        if let (Some(a), Some(b)) = (f.min, f.max)
            && a > b
        {
            self.err_val(
                "bad-form-field",
                &path.join("max"),
                format!("`max` ({b}) is below `min` ({a})"),
                Some("swap them".to_owned()),
            );
        }
        if !textual && (f.min_length.is_some() || f.max_length.is_some()) {
            let k = if f.min_length.is_some() {
                "min_length"
            } else {
                "max_length"
            };
            self.err_key(
                "bad-form-field",
                &path.join(k),
                format!("`{k}` applies to string and text fields, not `{ty}`"),
                None,
            );
        }
        if let (Some(a), Some(b)) = (f.min_length, f.max_length)
            && a > b
        {
            self.err_val(
                "bad-form-field",
                &path.join("max_length"),
                format!("`max_length` ({b}) is below `min_length` ({a})"),
                None,
            );
        }
        if f.ty == FieldType::Enum && f.options.is_empty() {
            self.err_key(
                "bad-form-field",
                path,
                format!("enum field `{name}` has no `options`"),
                Some("add `options: [a, b, c]`".to_owned()),
            );
        }
        if f.ty != FieldType::Enum && !f.options.is_empty() {
            self.err_key(
                "bad-form-field",
                &path.join("options"),
                format!("`options` applies to enum fields, not `{ty}`"),
                Some("use `type: enum`".to_owned()),
            );
        }
        let mut seen = HashSet::new();
        for (i, o) in f.options.iter().enumerate() {
            if !seen.insert(o) {
                self.err_val(
                    "bad-form-field",
                    &path.join("options").join(i),
                    format!("option `{o}` is listed twice"),
                    None,
                );
            }
        }
        if let Some(d) = &f.default {
            if d.as_str().is_some_and(|s| s.starts_with('=')) {
                self.value(d, &path.join("default"));
            } else if !field_accepts(f, d) {
                self.err_val(
                    "bad-form-field",
                    &path.join("default"),
                    format!("the default does not fit a `{ty}` field"),
                    None,
                );
            }
        }
    }

    fn multi(&mut self, m: &MultiInstance, path: &Path) {
        match (&m.items, &m.count) {
            (Some(e), None) => self.expr(&e.0, &path.join("items")),
            (None, Some(e)) => self.expr(&e.0, &path.join("count")),
            _ => self.err_key(
                "bad-multi",
                path,
                "multi-instance needs exactly one of `items` (a list) and `count` (a number)",
                None,
            ),
        }
        self.var(&m.item_var, &path.join("as"));
        self.var(&m.index, &path.join("index"));
        if let Some(c) = &m.completion {
            self.expr(&c.0, &path.join("completion"));
        }
        if m.rest == Some(Rest::Wait) && !m.parallel {
            self.warn_key(
                "bad-multi",
                &path.join("rest"),
                "`rest: wait` has no effect on sequential runs: when `completion` holds, no other run is open",
                Some("add `parallel: true`, or remove `rest`".to_owned()),
            );
        }
        if m.rest == Some(Rest::Wait) && m.completion.is_none() {
            self.err_val(
                "bad-multi",
                &path.join("rest"),
                "`rest` says what happens to the runs still open when `completion` holds, and there is no `completion`",
                Some("add `completion:` (such as `completed >= 2`), or remove `rest`".to_owned()),
            );
        }
        if let Some(o) = &m.output {
            self.expr(&o.0, &path.join("output"));
        }
        match (&m.output, &m.into) {
            (Some(_), Some(v)) => self.var(v, &path.join("into")),
            (Some(_), None) => self.err_key(
                "bad-multi",
                &path.join("output"),
                "`output` needs `into`: the variable that collects the outputs",
                None,
            ),
            (None, Some(_)) => self.err_key(
                "bad-multi",
                &path.join("into"),
                "`into` needs `output`: what each run contributes",
                None,
            ),
            (None, None) => {}
        }
    }

    fn called(&mut self, process: &str, version: Option<u32>, path: &Path) {
        if !valid_id(process) {
            self.err_val(
                "invalid-id",
                &path.join("process"),
                format!("`{process}` is not a valid process id"),
                id_hint(),
            );
        } else if let Some(known) = &self.opts.processes
            && !known.contains(process)
        {
            let hint = match suggest(process, known.iter().map(String::as_str)) {
                Some(s) => format!(
                    "did you mean `{s}`? Otherwise deploy `{process}` before starting this process"
                ),
                None => format!("deploy a process with `id: {process}` before starting this one"),
            };
            let pos = self.map.value_pos(&path.join("process"));
            self.push(
                Severity::Warning,
                "unknown-process",
                pos,
                format!("no process `{process}` is in this deployment"),
                Some(hint),
            );
        }
        if version == Some(0) {
            self.err_val(
                "invalid-value",
                &path.join("version"),
                "versions start at 1",
                None,
            );
        }
    }

    fn compensate_target(
        &mut self,
        target: &str,
        path: &Path,
        scope: Option<&str>,
        placed: &[(String, Placed)],
    ) {
        if target == "all" {
            return;
        }
        match placed.iter().find(|(id, _)| id == target) {
            Some((_, p)) if p.scope.as_deref() == scope && p.node.compensation().is_some() => {}
            Some((_, p)) if p.scope.as_deref() == scope => self.err_val(
                "bad-compensation",
                path,
                format!("`{target}` has no `compensation` handler to run"),
                Some(format!("add `compensation: <handler id>` to `{target}`")),
            ),
            Some(_) => self.err_val(
                "bad-compensation",
                path,
                format!("`{target}` is not in this scope"),
                Some("compensation reaches the activities of its own scope".to_owned()),
            ),
            None => self.err_val(
                "bad-compensation",
                path,
                format!("there is no activity `{target}` to compensate"),
                Some("name an activity with a `compensation` handler, or write `all`".to_owned()),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn raised(
        &mut self,
        path: &Path,
        message: Option<&str>,
        key: Option<&Expr>,
        payload: &Mapping,
        signal: Option<&str>,
        error: Option<&str>,
        escalation: Option<&str>,
    ) {
        if message.is_none() && (key.is_some() || !payload.is_empty()) {
            let f = if key.is_some() { "key" } else { "payload" };
            self.err_key(
                "bad-trigger",
                &path.join(f),
                format!("`{f}` belongs to a message; this event sends none"),
                None,
            );
        }
        if let Some(k) = key {
            self.expr(&k.0, &path.join("key"));
        }
        self.mapping(payload, &path.join("payload"), false);
        for (v, f) in [
            (message, "message"),
            (signal, "signal"),
            (error, "error"),
            (escalation, "escalation"),
        ] {
            if let Some(v) = v {
                if v == "*" {
                    self.err_val(
                        "invalid-name",
                        &path.join(f),
                        format!("a thrown {f} needs a real code; `*` only matches when catching"),
                        None,
                    );
                } else {
                    self.name(v, &path.join(f), f);
                }
            }
        }
    }

    fn trigger_fields(
        &mut self,
        path: &Path,
        message: Option<&str>,
        key: Option<&Expr>,
        signal: Option<&str>,
        error: Option<&str>,
        escalation: Option<&str>,
    ) {
        if let Some(m) = message {
            self.name(m, &path.join("message"), "message");
        } else if key.is_some() {
            self.err_key(
                "bad-trigger",
                &path.join("key"),
                "`key` correlates a message; this event waits for none",
                None,
            );
        }
        if let Some(k) = key {
            self.expr(&k.0, &path.join("key"));
        }
        if let Some(s) = signal {
            self.name(s, &path.join("signal"), "signal");
        }
        for (v, f) in [(error, "error"), (escalation, "escalation")] {
            if let Some(v) = v
                && v != "*"
            {
                self.name(v, &path.join(f), f);
            }
        }
    }

    fn name(&mut self, name: &str, path: &Path, what: &str) {
        if !valid_name(name) {
            self.err_val(
                "invalid-name",
                path,
                format!("`{name}` is not a valid {what} name"),
                Some("use letters, digits and `_ - . : /`, such as `lead.received`".to_owned()),
            );
        }
    }

    fn var(&mut self, name: &str, path: &Path) {
        if !valid_var(name) {
            self.err_val(
                "invalid-name",
                path,
                format!("`{name}` is not a valid variable name"),
                var_hint(),
            );
        }
    }

    fn starters(&mut self, st: &Starters, path: &Path) {
        if let Some(known) = &self.opts.roles {
            for (i, role) in st.roles.iter().enumerate() {
                if !known.contains(role) {
                    let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
                    names.sort_unstable();
                    let hint = match suggest(role, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("roles are {}", names.join(", ")),
                    };
                    self.err_val(
                        "unknown-role",
                        &path.join("roles").join(i),
                        format!("there is no role `{role}`"),
                        Some(hint),
                    );
                }
            }
        }
        if st.roles.is_empty() && st.groups.is_empty() && st.users.is_empty() {
            self.warn_key(
                "empty-starters",
                path,
                "`starters` names nobody, so only admins may start the process by API",
                Some("name `roles`, `groups` or `users`, or remove `starters`".to_owned()),
            );
        }
    }

    fn messages(&mut self, def: &ProcessDef, path: &Path) {
        let used = def.received_messages();
        for (name, m) in &def.messages {
            let mp = path.join(name.as_str());
            if !used.contains(&name.as_str()) {
                let hint = match suggest(name, used.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "declare the messages the process starts on or waits for".to_owned(),
                };
                self.warn_key(
                    "unused-message",
                    &mp,
                    format!("the process neither starts on nor waits for a message `{name}`"),
                    Some(hint),
                );
            }
            self.variables(&m.variables, &mp.join("variables"));
        }
    }

    fn variables(&mut self, vars: &indexmap::IndexMap<String, VariableDef>, path: &Path) {
        for (name, v) in vars {
            let vp = path.join(name);
            if !valid_var(name) {
                self.err_key(
                    "invalid-name",
                    &vp,
                    format!("`{name}` is not a valid variable name"),
                    var_hint(),
                );
            }
            for (at, message) in shape::declaration_problems(name, v) {
                let mut fp = vp.clone();
                for seg in &at {
                    fp = fp.join(seg.as_str());
                }
                let hint = match at.last().map(String::as_str) {
                    Some("default") => "give a default that fits the declaration, or change it",
                    Some("pattern") => {
                        "write a regular expression (Rust `regex` syntax); it must match the whole value"
                    }
                    _ => "see `variables` in docs/process-format.md for what each field applies to",
                };
                self.err_val("bad-variable", &fp, message, Some(hint.to_owned()));
            }
            if v.required && v.default.is_some() {
                self.warn_key(
                    "bad-variable",
                    &vp.join("required"),
                    format!("`{name}` is required but has a default, so it is never missing"),
                    Some("remove one of them".to_owned()),
                );
            }
        }
    }

    /// Checks every `=expression` in a value mapping, and the names it sets.
    fn mapping(&mut self, m: &Mapping, path: &Path, names_are_vars: bool) {
        for (k, v) in m {
            let p = path.join(k);
            if names_are_vars {
                if !valid_var(k) {
                    self.err_key(
                        "invalid-name",
                        &p,
                        format!("`{k}` is not a valid variable name"),
                        var_hint(),
                    );
                }
            } else if k.is_empty() {
                self.err_key("invalid-name", &p, "names may not be empty", None);
            }
            self.value(v, &p);
        }
    }

    /// Checks every `=expression` inside a literal value.
    fn value(&mut self, v: &Value, path: &Path) {
        match v {
            Value::String(s) => {
                if let Some((e, _)) = expr::as_expression(s) {
                    self.compile(e, path, 1);
                }
            }
            Value::Array(items) => {
                for (i, it) in items.iter().enumerate() {
                    self.value(it, &path.join(i));
                }
            }
            Value::Object(o) => {
                for (k, it) in o {
                    self.value(it, &path.join(k));
                }
            }
            _ => {}
        }
    }

    /// Checks an always-expression field (a leading `=` is tolerated).
    fn expr(&mut self, text: &str, path: &Path) {
        match expr::as_expression(text) {
            Some((e, skip)) => self.compile(e, path, skip),
            None => self.compile(text, path, 0),
        }
    }

    fn compile(&mut self, text: &str, path: &Path, skip: usize) {
        if self.exprs.contains_key(text) {
            return;
        }
        match expr::compile(text) {
            Ok(e) => {
                self.exprs.insert(text.to_owned(), e);
            }
            Err(e) => {
                let code = match e {
                    expr::Error::TooLong { .. } => "expression-too-long",
                    expr::Error::TooDeep { .. } => "expression-too-deep",
                    expr::Error::Empty | expr::Error::Syntax { .. } => "expression-syntax",
                };
                let pos = self.pos_inside(path, skip + e.offset());
                let hint = match e {
                    expr::Error::Syntax { .. } | expr::Error::Empty => {
                        "expressions are CEL: `amount > 1000 && grade == 'vip'`, `size(items) > 0`; quote text with '...'"
                    }
                    _ => {
                        "move the logic into a service action, or split it over several `assign` steps"
                    }
                };
                self.push(
                    Severity::Error,
                    code,
                    pos,
                    format!("the expression does not compile: {e}"),
                    Some(hint.to_owned()),
                );
            }
        }
    }

    /// The position of the `offset`-th character of the scalar at `path`.
    fn pos_inside(&self, path: &Path, offset: usize) -> Pos {
        let Some(entry) = self.map.get(path) else {
            return self.map.value_pos(path);
        };
        let lead = match entry.style {
            Style::Plain => 0,
            Style::Quoted => 1,
            Style::Other => return entry.value,
        };
        let target = entry.value.start + lead + offset;
        let mut line = 1;
        let mut col = 1;
        for (i, c) in self.text.chars().enumerate() {
            if i == target {
                break;
            }
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        Pos {
            line,
            column: col,
            start: target,
            end: target + 1,
        }
    }

    fn calendar(&mut self, name: &str, path: &Path) {
        if !self.opts.calendars.contains(name) {
            let mut known: Vec<&str> = self.opts.calendars.iter().map(String::as_str).collect();
            known.sort_unstable();
            let hint = match suggest(name, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("known calendars: {}", known.join(", ")),
            };
            self.err_val(
                "unknown-calendar",
                path,
                format!("there is no working calendar `{name}`"),
                Some(hint),
            );
        }
    }

    fn timer(&mut self, t: &TimerDef, path: &Path, cycle_ok: bool) {
        let set = [t.duration.is_some(), t.date.is_some(), t.cycle.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if set != 1 {
            self.err_key(
                "bad-timer",
                path,
                "a timer needs exactly one of `duration`, `date` and `cycle`",
                Some(
                    "`duration: PT15M`, `date: 2027-01-04T09:00:00Z`, or `cycle: \"0 9 * * Mon\"`"
                        .to_owned(),
                ),
            );
            return;
        }
        // A shorthand `timer: PT15M` has no `duration` key: report at the timer itself.
        let at = |k: &str| {
            let p = path.join(k);
            if self.map.get(&p).is_some() {
                p
            } else {
                path.clone()
            }
        };
        let mut business = false;
        if let Some(d) = &t.duration {
            let p = at("duration");
            if let Some((e, _)) = expr::as_expression(d) {
                self.compile(e, &p, 1);
            } else {
                match timer::parse_duration(d) {
                    Ok(timer::Duration::BusinessDays(_)) => business = true,
                    Ok(_) => {}
                    Err(e) => self.timer_err("bad-duration", &p, &e),
                }
            }
        }
        if let Some(d) = &t.date {
            let p = at("date");
            if let Some((e, _)) = expr::as_expression(d) {
                self.compile(e, &p, 1);
            } else if let Err(e) = timer::parse_date(d) {
                self.timer_err("bad-date", &p, &e);
            }
        }
        if let Some(c) = &t.cycle {
            let p = at("cycle");
            if !cycle_ok {
                self.err_val(
                    "bad-timer",
                    &p,
                    "this timer fires once, so it cannot have a `cycle`",
                    Some("use `duration` or `date`".to_owned()),
                );
            } else if let Err(e) = timer::parse_cron(c) {
                self.timer_err("bad-cron", &p, &e);
            }
        }
        if let Some(tz) = &t.timezone {
            if t.cycle.is_none() {
                self.err_key(
                    "bad-timer",
                    &path.join("timezone"),
                    "`timezone` applies to a `cycle`",
                    Some("give dates their offset instead (`+08:00`)".to_owned()),
                );
            } else if let Err(e) = timer::parse_timezone(tz) {
                self.timer_err("unknown-timezone", &path.join("timezone"), &e);
            }
        }
        if let Some(cal) = &t.calendar {
            if !business {
                self.err_key(
                    "bad-timer",
                    &path.join("calendar"),
                    "`calendar` applies to working-day durations (`P5BD`)",
                    None,
                );
            } else {
                self.calendar(cal, &path.join("calendar"));
            }
        }
    }

    fn plain_duration(&mut self, d: &str, path: &Path) {
        match timer::parse_duration(d) {
            Ok(timer::Duration::Iso(_)) => {}
            Ok(timer::Duration::BusinessDays(_)) => self.err_val(
                "bad-duration",
                path,
                "a retry backoff counts real time, not working days",
                Some("write it as `PT30S`, `PT5M`…".to_owned()),
            ),
            Err(e) => self.timer_err("bad-duration", path, &e),
        }
    }

    fn timer_err(&mut self, code: &'static str, path: &Path, e: &timer::Error) {
        let pos = self.pos_inside(path, e.offset);
        self.push(
            Severity::Error,
            code,
            pos,
            e.message.clone(),
            Some(e.hint.to_owned()),
        );
    }

    /// Gateway in/out degrees.
    fn degrees(&mut self, placed: &[(String, Placed)], graph: &FlowGraph) {
        for (id, p) in placed {
            let (inc, out) = (graph.incoming(id), graph.outgoing(id));
            let ty = p.node.type_name();
            match p.node {
                Node::Complex(_) if inc < 2 => {
                    self.err_key(
                        "gateway-flows",
                        &p.path,
                        format!(
                            "complex gateway `{id}` has {inc} incoming flow(s); it joins two or more"
                        ),
                        Some("lead two or more branches into it, or use an `exclusive` gateway".to_owned()),
                    );
                }
                Node::Parallel(_) | Node::Inclusive(_) if inc > 1 && out > 1 => {
                    self.err_key(
                        "gateway-flows",
                        &p.path,
                        format!("{ty} gateway `{id}` both joins {inc} flows and splits into {out}"),
                        Some("use one gateway to join, then another to split".to_owned()),
                    );
                }
                Node::Parallel(_) | Node::Exclusive(_) | Node::Inclusive(_)
                    if inc <= 1 && out == 1 && p.node.next().is_some() =>
                {
                    self.warn_key(
                        "gateway-flows",
                        &p.path,
                        format!(
                            "{ty} gateway `{id}` has one flow in and one out, so it does nothing"
                        ),
                        Some("remove it, or add the flows it should split or join".to_owned()),
                    );
                }
                _ => {}
            }
        }
    }

    /// Nodes no start reaches; nodes from which no end is reachable.
    fn reachability(
        &mut self,
        placed: &[(String, Placed)],
        starts: &[String],
        handlers: &HashSet<&str>,
        graph: &FlowGraph,
    ) {
        let mut seen = HashSet::new();
        let mut queue: VecDeque<_> = starts
            .iter()
            .filter_map(|s| graph.index.get(s).copied())
            .collect();
        for (id, p) in placed {
            if matches!(p.node, Node::EventSubprocess(_)) || handlers.contains(id.as_str()) {
                queue.extend(graph.index.get(id).copied());
            }
        }
        while let Some(i) = queue.pop_front() {
            if seen.insert(i) {
                queue.extend(graph.graph.neighbors_directed(i, Direction::Outgoing));
            }
        }
        let reached = |id: &str| graph.index.get(id).is_some_and(|i| seen.contains(i));
        // A flow to a misspelt id cuts off everything behind it; then only the nodes
        // that nothing names at all are reported, not the whole cut-off part.
        let broken_flows = self
            .diags
            .iter()
            .any(|d| matches!(d.code, "unknown-target" | "target-out-of-scope"));
        for (id, p) in placed {
            let container_ok = p.scope.as_deref().is_none_or(reached);
            // Without any start event everything is unreachable; `no-start` says so once.
            if reached(id) || !container_ok || starts.is_empty() {
                continue;
            }
            let named = graph.index.get(id).is_some_and(|&i| {
                graph
                    .graph
                    .edges_directed(i, Direction::Incoming)
                    .next()
                    .is_some()
            });
            if self.suggested.contains(id) {
                continue;
            }
            if !named {
                self.err_key(
                    "unreachable-node",
                    &p.path,
                    format!("no flow leads to `{id}`"),
                    Some(
                        "name it in a `next`, a branch or a boundary event, or remove it"
                            .to_owned(),
                    ),
                );
            } else if !broken_flows {
                self.err_key("unreachable-node", &p.path, format!("no start event reaches `{id}`: the flows into it come only from nodes that are themselves unreachable"), Some("connect this part of the process to a start event, or remove it".to_owned()));
            }
        }
        // Reverse search from each scope's ends, inside the scope.
        let mut ends = HashSet::new();
        let mut queue: VecDeque<_> = VecDeque::new();
        for (id, p) in placed {
            let terminal = match p.node {
                Node::End(_) => true,
                Node::Throw(t) => t.error.is_some() && t.next.is_none(),
                Node::EventSubprocess(_) => true,
                n => {
                    (needs_next(n) && n.next().is_none())
                        || handlers.contains(id.as_str())
                        || self.broken.contains(id)
                }
            };
            if terminal {
                queue.extend(graph.index.get(id).copied());
            }
        }
        while let Some(i) = queue.pop_front() {
            if ends.insert(i) {
                for e in graph.graph.edges_directed(i, Direction::Incoming) {
                    if *e.weight() != Flow::Enter {
                        queue.push_back(e.source());
                    }
                }
            }
        }
        for (id, p) in placed {
            let Some(&i) = graph.index.get(id) else {
                continue;
            };
            if reached(id) && !ends.contains(&i) {
                self.err_key(
                    "no-end",
                    &p.path,
                    format!("no end can be reached from `{id}`: the path loops forever"),
                    Some(
                        "give the loop an exit: a gateway branch that leads to an `end`".to_owned(),
                    ),
                );
            }
        }
    }

    /// A parallel join fed by branches of one exclusive or event gateway waits for a
    /// token that never comes.
    /// A milestone every path to its activity passes first: when a token
    /// reaches the activity it has left the milestone, so (without a loop or
    /// a second branch coming back to it) the activity never starts.
    fn milestones_upstream(&mut self, placed: &[(String, Placed)], graph: &FlowGraph) {
        for (id, p) in placed {
            let Some((m, _)) = p.node.milestone() else {
                continue;
            };
            let (Some(&target), Some(&gate)) = (graph.index.get(id), graph.index.get(m)) else {
                continue;
            };
            // Every element no flow leads to is where tokens come from.
            let mut queue: VecDeque<_> = graph
                .graph
                .node_indices()
                .filter(|&n| {
                    n != gate
                        && graph
                            .graph
                            .neighbors_directed(n, Direction::Incoming)
                            .next()
                            .is_none()
                })
                .collect();
            let mut seen: HashSet<_> = queue.iter().copied().collect();
            while let Some(n) = queue.pop_front() {
                for next in graph.graph.neighbors(n) {
                    if next != gate && seen.insert(next) {
                        queue.push_back(next);
                    }
                }
            }
            if !seen.contains(&target) {
                self.warn_key(
                    "milestone-upstream",
                    &p.path.join("milestone"),
                    format!("every path to `{id}` passes `{m}` first, so when a token reaches `{id}` it has left `{m}`, and `{id}` will be withdrawn, never started"),
                    Some(format!("a milestone is a state of another branch: put `{id}` on a branch beside `{m}` (after a `parallel` split), or drop `milestone`")),
                );
            }
        }
    }

    fn deadlocks(&mut self, placed: &[(String, Placed)], graph: &FlowGraph) {
        for (id, p) in placed {
            if !matches!(p.node, Node::Parallel(_)) || graph.incoming(id) < 2 {
                continue;
            }
            let Some(&j) = graph.index.get(id) else {
                continue;
            };
            let mut origins: HashMap<petgraph::graph::NodeIndex, usize> = HashMap::new();
            for pred in graph.graph.neighbors_directed(j, Direction::Incoming) {
                // Walk back along single-way nodes to the split the branch came from.
                let mut cur = pred;
                let mut steps = 0;
                loop {
                    let el = &graph.graph[cur];
                    let out = graph.outgoing(&el.id);
                    if out > 1 || graph.incoming(&el.id) != 1 || steps > 1000 {
                        break;
                    }
                    match graph
                        .graph
                        .neighbors_directed(cur, Direction::Incoming)
                        .next()
                    {
                        Some(prev) if graph.outgoing(&graph.graph[prev].id) > 1 => {
                            cur = prev;
                            break;
                        }
                        Some(prev) => cur = prev,
                        None => break,
                    }
                    steps += 1;
                }
                // An activity with boundary events (or a milestone's `missed`
                // path) splits too: its normal flow and each other path are
                // taken one or the other (or the other path not at all).
                let has_boundary = graph
                    .graph
                    .edges_directed(cur, Direction::Outgoing)
                    .any(|e| matches!(e.weight(), Flow::Boundary { .. } | Flow::Missed(_)));
                if matches!(graph.graph[cur].kind, "exclusive" | "event") || has_boundary {
                    *origins.entry(cur).or_default() += 1;
                }
            }
            if let Some((split_ix, _)) = origins.iter().find(|(_, n)| **n > 1) {
                let split = graph.graph[*split_ix].id.clone();
                if matches!(graph.graph[*split_ix].kind, "exclusive" | "event") {
                    self.warn_key("deadlock-join", &p.path, format!("parallel gateway `{id}` joins branches of `{split}`, which takes only one of them, so the join waits forever"), Some(format!("merge them with an `exclusive` gateway (or `inclusive`, which waits only for what can arrive), or make `{split}` parallel")));
                } else {
                    self.warn_key("deadlock-join", &p.path, format!("parallel gateway `{id}` joins the normal flow of `{split}` and its boundary-event or `missed` path; only one of them is taken, so the join waits forever"), Some("merge the two paths with an `exclusive` gateway first, then lead that into the join".to_owned()));
                }
            }
        }
    }
}

fn collect<'d>(
    nodes: &'d indexmap::IndexMap<String, Node>,
    path: &Path,
    scope: Option<&str>,
    out: &mut Vec<(String, Placed<'d>)>,
) {
    for (id, n) in nodes {
        let p = path.join(id);
        out.push((
            id.clone(),
            Placed {
                node: n,
                path: p.clone(),
                scope: scope.map(str::to_owned),
            },
        ));
        if let Some((_, inner)) = n.scope() {
            collect(inner, &p.join("nodes"), Some(id), out);
        }
    }
}

fn needs_next(n: &Node) -> bool {
    match n {
        Node::End(_) | Node::Event(_) | Node::EventSubprocess(_) => false,
        Node::Throw(t) => t.error.is_none(),
        Node::Exclusive(g) => g.branches.is_empty(),
        Node::Inclusive(g) => g.branches.is_empty(),
        _ => true,
    }
}

fn node_name(n: &Node) -> Option<String> {
    let name = match n {
        Node::Empty(x) => &x.name,
        Node::Assign(x) => &x.name,
        Node::Service(x) => &x.name,
        Node::User(x) => &x.name,
        Node::Receive(x) => &x.name,
        Node::Catch(x) => &x.name,
        Node::Throw(x) => &x.name,
        Node::Exclusive(x) => &x.name,
        Node::Inclusive(x) => &x.name,
        Node::Parallel(x) => &x.name,
        Node::Complex(x) => &x.name,
        Node::Event(x) => &x.name,
        Node::Subprocess(x) => &x.name,
        Node::EventSubprocess(x) => &x.name,
        Node::Loop(x) => &x.name,
        Node::Call(x) => &x.name,
        Node::Spawn(x) => &x.name,
        Node::End(x) => &x.name,
    };
    name.clone()
}

fn describe(
    timer: Option<&TimerDef>,
    message: Option<&str>,
    signal: Option<&str>,
    error: Option<&str>,
    escalation: Option<&str>,
) -> String {
    if let Some(t) = timer {
        let v = t
            .duration
            .as_deref()
            .or(t.date.as_deref())
            .or(t.cycle.as_deref())
            .unwrap_or("?");
        return format!("timer {v}");
    }
    for (v, what) in [
        (message, "message"),
        (signal, "signal"),
        (error, "error"),
        (escalation, "escalation"),
    ] {
        if let Some(v) = v {
            return format!("{what} {v}");
        }
    }
    String::new()
}

pub(crate) fn var_accepts(ty: VarType, v: &Value) -> bool {
    shape::type_fits(ty, v)
}

/// Whether `v` is a value the form field takes (type, range, options).
pub fn field_accepts(f: &FormField, v: &Value) -> bool {
    let in_range = |x: f64| f.min.is_none_or(|m| x >= m) && f.max.is_none_or(|m| x <= m);
    match f.ty {
        FieldType::String | FieldType::Text | FieldType::User => v.is_string(),
        FieldType::Number => v.as_f64().is_some_and(in_range),
        FieldType::Integer => (v.is_i64() || v.is_u64()) && v.as_f64().is_some_and(in_range),
        FieldType::Boolean => v.is_boolean(),
        FieldType::Date => var_accepts(VarType::Date, v),
        FieldType::Datetime => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        FieldType::Enum => v.as_str().is_some_and(|s| f.options.iter().any(|o| o == s)),
    }
}

fn id_hint() -> Option<String> {
    Some(
        "ids start with a letter or `_`, then letters, digits, `_`, `-` or `.` (at most 128)"
            .to_owned(),
    )
}
fn var_hint() -> Option<String> {
    Some("variable names start with a letter or `_`, then letters, digits or `_`".to_owned())
}
fn start_hint() -> Option<String> {
    Some(
        "add `start:` with at least one item, such as `- id: begin` and `next: first_node`"
            .to_owned(),
    )
}
