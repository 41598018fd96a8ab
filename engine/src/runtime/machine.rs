//! The pure state machine: `(instance, command, clock) → (instance, actions)`.
//!
//! A command runs the instance to its next wait state: every automatic step (assign,
//! gateways, ends, scope changes) happens inside the one call, and the call returns
//! the new state together with what the outside world must do (history rows, tasks
//! to open, jobs to run, incidents). Nothing here does I/O, so the store can apply
//! the result in one transaction, and tests can check every step.

use super::Clock;
use super::eval::Evaluator;
use super::form;
use super::state::*;
use crate::model::raw::{self, Node};
use crate::model::{Process, timer};
use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};

/// Largest serialized size of an instance's variables.
pub const MAX_VARIABLES_BYTES: usize = 1024 * 1024;
/// Most automatic steps one command may take before the instance is stopped with an
/// incident (an endless loop of automatic steps).
pub const MAX_STEPS: usize = 10_000;
/// Default guard of a `loop` node.
pub const DEFAULT_MAX_ITERATIONS: u32 = 1000;

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The process uses a construct this runtime does not run yet.
    #[error("node `{node}` uses {what}, which the runtime does not run yet")]
    Unsupported {
        /// The node.
        node: String,
        /// The construct.
        what: String,
    },
    /// The instance has ended.
    #[error("the instance is {0:?}, not active")]
    NotActive(InstanceStatus),
    /// No waiting activity has this id.
    #[error("activity {0} is not waiting in this instance")]
    UnknownActivity(u64),
    /// The activity waits for something else.
    #[error("activity {activity} is a {actual}, not a {expected}")]
    WrongActivity {
        /// The activity.
        activity: u64,
        /// What the command expected.
        expected: &'static str,
        /// What it is.
        actual: &'static str,
    },
    /// The submitted form has errors, one per field.
    #[error("the form has {} error(s)", .0.len())]
    Form(Vec<form::FieldError>),
    /// Start variables do not match their declarations.
    #[error("invalid variables: {}", .0.join("; "))]
    Variables(Vec<String>),
    /// The variables grew past the limit.
    #[error("the variables take {size} bytes; the limit is {MAX_VARIABLES_BYTES}")]
    TooLarge {
        /// Their size.
        size: usize,
    },
    /// The process has no start event the API can use.
    #[error("process `{0}` has no start event without a trigger to start it by call")]
    NoCallStart(String),
}

/// A command for an existing instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A person completes a user task with the form's values.
    CompleteTask {
        /// The task's activity instance.
        activity: u64,
        /// The submitted values.
        variables: Vars,
        /// Who.
        actor: Option<String>,
    },
    /// A job (service call) finished.
    CompleteJob {
        /// The job's activity instance.
        activity: u64,
        /// What the action returned.
        result: Value,
    },
    /// A job failed for good (its retries are spent): an incident.
    FailJob {
        /// The job's activity instance.
        activity: u64,
        /// Why.
        message: String,
    },
    /// Cancel the instance.
    Cancel {
        /// Who.
        actor: Option<String>,
    },
}

/// Runs instances of one process. Cheap to make: it reads the nodes and flows from
/// the process's graph, built once when the definition was loaded.
#[derive(Debug)]
pub struct Machine<'p> {
    process: &'p Process,
}

impl<'p> Machine<'p> {
    /// Prepares `process`, refusing constructs the runtime does not run yet.
    pub fn new(process: &'p Process) -> Result<Self, Error> {
        for el in process.graph.graph.node_weights() {
            let Some(n) = process.node(&el.id) else {
                continue; // a start event
            };
            let unsupported = match n {
                Node::Receive(_) | Node::Catch(_) | Node::Throw(_) | Node::Event(_) => {
                    Some("events (messages, timers, signals)")
                }
                Node::EventSubprocess(_) => Some("an event subprocess"),
                Node::Call(_) | Node::Spawn(_) => Some("calling another process"),
                Node::End(e)
                    if e.error.is_some()
                        || e.escalation.is_some()
                        || e.message.is_some()
                        || e.signal.is_some()
                        || e.compensate.is_some() =>
                {
                    Some("an end event that raises something")
                }
                _ if !n.boundary().is_empty() => Some("boundary events"),
                _ if n.multi().is_some() => Some("multi-instance"),
                _ if n.compensation().is_some() => Some("compensation"),
                _ => None,
            };
            if let Some(what) = unsupported {
                return Err(Error::Unsupported {
                    node: el.id.clone(),
                    what: what.to_owned(),
                });
            }
        }
        Ok(Machine { process })
    }

    fn node(&self, id: &str) -> Option<&'p Node> {
        self.process.node(id)
    }

    /// Starts an instance through the process's call start event.
    pub fn start(
        &self,
        id: String,
        version: u32,
        business_key: Option<String>,
        mut variables: Vars,
        clock: &dyn Clock,
    ) -> Result<(Instance, Vec<Action>), Error> {
        let def = &self.process.def;
        let start = def
            .start
            .iter()
            .find(|s| s.message.is_none() && s.timer.is_none() && s.signal.is_none())
            .ok_or_else(|| Error::NoCallStart(def.id.clone()))?;
        let problems = declare(&def.variables, &mut variables);
        if !problems.is_empty() {
            return Err(Error::Variables(problems));
        }
        let now = clock.now();
        let mut inst = Instance {
            id,
            process: def.id.clone(),
            process_version: version,
            business_key,
            status: InstanceStatus::Active,
            version: 1,
            scopes: [(
                0,
                Scope {
                    node: None,
                    parent: None,
                    vars: variables,
                },
            )]
            .into(),
            tokens: vec![Token {
                id: 1,
                node: start.next.clone(),
                scope: 0,
                from: Some(start.id.clone()),
                state: TokenState::Arriving,
            }],
            next_id: 2,
            started_at: now,
            ended_at: None,
        };
        let mut step = Step::new(self, &mut inst, now);
        step.history(0, &start.id, Lifecycle::Completed, None);
        step.run();
        let actions = step.actions;
        check_size(&inst)?;
        Ok((inst, actions))
    }

    /// Applies `cmd` to `inst`, returning the new state and the actions. On error the
    /// instance is unchanged.
    pub fn apply(
        &self,
        inst: &Instance,
        cmd: Command,
        clock: &dyn Clock,
    ) -> Result<(Instance, Vec<Action>), Error> {
        if inst.status != InstanceStatus::Active {
            return Err(Error::NotActive(inst.status));
        }
        let mut next = inst.clone();
        let now = clock.now();
        let mut step = Step::new(self, &mut next, now);
        match cmd {
            Command::CompleteTask {
                activity,
                variables,
                actor,
            } => {
                let i = step.waiting(activity, "user task")?;
                let node = step.inst.tokens[i].node.clone();
                if let Some(Node::User(u)) = self.node(&node) {
                    let errors = form::validate(&u.form, &variables);
                    if !errors.is_empty() {
                        return Err(Error::Form(errors));
                    }
                }
                let scope = step.inst.tokens[i].scope;
                let problems: Vec<String> = variables
                    .into_iter()
                    .filter_map(|(k, v)| step.set_var(scope, k, v).err())
                    .collect();
                if !problems.is_empty() {
                    return Err(Error::Variables(problems));
                }
                step.actions.push(Action::CloseTask {
                    activity,
                    state: Lifecycle::Completed,
                });
                step.complete(i, activity, actor);
            }
            Command::CompleteJob { activity, result } => {
                let i = step.waiting(activity, "job")?;
                let node = step.inst.tokens[i].node.clone();
                let scope = step.inst.tokens[i].scope;
                let written = match self.node(&node) {
                    Some(Node::Service(s)) => step.write_job_result(s, scope, result),
                    _ => Ok(()),
                };
                match written {
                    Ok(()) => step.complete(i, activity, None),
                    Err(message) => step.incident(i, activity, message),
                }
            }
            Command::FailJob { activity, message } => {
                let i = step.waiting(activity, "job")?;
                step.incident(i, activity, message);
            }
            Command::Cancel { actor } => {
                step.abort_scope_tree(0, actor.as_deref());
                step.end_instance(InstanceStatus::Cancelled);
            }
        }
        step.run();
        step.finish()
    }
}

/// Fills declared defaults into `vars` and checks required variables and types.
fn declare(decls: &indexmap::IndexMap<String, raw::VariableDef>, vars: &mut Vars) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, d) in decls {
        match vars.get(name) {
            None | Some(Value::Null) => {
                if let Some(def) = &d.default {
                    vars.insert(name.clone(), def.clone());
                } else if d.required {
                    problems.push(format!("`{name}` is required"));
                }
            }
            Some(v) => {
                if !form::var_accepts(d.ty, v) {
                    problems.push(format!("`{name}` must be {:?}, not {v}", d.ty).to_lowercase());
                }
            }
        }
    }
    problems
}

fn check_size(inst: &Instance) -> Result<(), Error> {
    let size: usize = inst
        .scopes
        .values()
        .map(|s| serde_json::to_vec(&s.vars).map_or(0, |v| v.len()))
        .sum();
    if size > MAX_VARIABLES_BYTES {
        return Err(Error::TooLarge { size });
    }
    Ok(())
}

/// One command's worth of work on an instance.
struct Step<'m, 'p> {
    m: &'m Machine<'p>,
    inst: &'m mut Instance,
    now: DateTime<Utc>,
    actions: Vec<Action>,
}

impl<'m, 'p> Step<'m, 'p> {
    fn new(m: &'m Machine<'p>, inst: &'m mut Instance, now: DateTime<Utc>) -> Self {
        Step {
            m,
            inst,
            now,
            actions: Vec::new(),
        }
    }

    fn finish(self) -> Result<(Instance, Vec<Action>), Error> {
        self.inst.version += 1;
        check_size(self.inst)?;
        Ok((self.inst.clone(), self.actions))
    }

    fn id(&mut self) -> u64 {
        let id = self.inst.next_id;
        self.inst.next_id += 1;
        id
    }

    fn history(&mut self, activity: u64, node: &str, state: Lifecycle, actor: Option<&str>) {
        self.actions.push(Action::History(HistoryEntry {
            activity,
            node: node.to_owned(),
            state,
            at: self.now,
            actor: actor.map(str::to_owned),
        }));
    }

    /// The index of the token waiting in `activity`, checking what it waits for.
    fn waiting(&self, activity: u64, expected: &'static str) -> Result<usize, Error> {
        let i = self
            .inst
            .tokens
            .iter()
            .position(
                |t| matches!(t.state, TokenState::Waiting { activity: a, .. } if a == activity),
            )
            .ok_or(Error::UnknownActivity(activity))?;
        let actual = match &self.inst.tokens[i].state {
            TokenState::Waiting {
                wait: Wait::Task, ..
            } => "user task",
            TokenState::Waiting {
                wait: Wait::Job, ..
            } => "job",
            _ => "scope",
        };
        if actual != expected {
            return Err(Error::WrongActivity {
                activity,
                expected,
                actual,
            });
        }
        Ok(i)
    }

    /// Writes a variable where it is declared (the nearest scope that has it), else
    /// in the process scope.
    ///
    /// A value that does not fit the variable's declared type is refused (`Err`
    /// with the reason); `null` always fits.
    fn set_var(&mut self, scope: u64, name: String, value: Value) -> Result<(), String> {
        let mut cur = Some(scope);
        while let Some(s) = cur {
            let Some(sc) = self.inst.scopes.get(&s) else {
                break;
            };
            if sc.vars.contains_key(&name) || sc.parent.is_none() {
                let decls = match &sc.node {
                    None => Some(&self.m.process.def.variables),
                    Some(container) => match self.m.node(container) {
                        Some(Node::Subprocess(sp)) => Some(&sp.variables),
                        _ => None,
                    },
                };
                if let Some(d) = decls.and_then(|d| d.get(&name))
                    && !value.is_null()
                    && !form::var_accepts(d.ty, &value)
                {
                    let ty = format!("{:?}", d.ty).to_lowercase();
                    return Err(format!("`{name}` is declared {ty} and cannot hold {value}"));
                }
                if let Some(sc) = self.inst.scopes.get_mut(&s) {
                    sc.vars.insert(name, value);
                }
                return Ok(());
            }
            cur = sc.parent;
        }
        Ok(())
    }

    /// Writes a finished job's `result` and `out` variables.
    fn write_job_result(
        &mut self,
        s: &raw::Service,
        scope: u64,
        result: Value,
    ) -> Result<(), String> {
        if let Some(r) = &s.result {
            self.set_var(scope, r.clone(), result.clone())?;
        }
        if !s.out.is_empty() {
            let mut vars = self.inst.visible_vars(scope);
            vars.insert("result".into(), result);
            let ev = Evaluator::new(self.m.process, &vars);
            for (k, v) in &s.out {
                let v = ev.value(v).map_err(|e| e.to_string())?;
                self.set_var(scope, k.clone(), v)?;
            }
        }
        Ok(())
    }

    /// Runs every token that can move until each waits, joins or has ended.
    fn run(&mut self) {
        let mut steps = 0;
        loop {
            if self.inst.status != InstanceStatus::Active {
                return;
            }
            if let Some(i) = self
                .inst
                .tokens
                .iter()
                .position(|t| t.state == TokenState::Arriving)
            {
                steps += 1;
                if steps > MAX_STEPS {
                    let a = self.id();
                    self.incident(i, a, format!("more than {MAX_STEPS} automatic steps in one command: the flow loops without waiting"));
                    continue;
                }
                self.enter(i);
                continue;
            }
            if !self.fire_inclusive_join() {
                return;
            }
        }
    }

    fn enter(&mut self, i: usize) {
        let node_id = self.inst.tokens[i].node.clone();
        let Some(node) = self.m.node(&node_id) else {
            let a = self.id();
            self.incident(
                i,
                a,
                format!("node `{node_id}` does not exist in this version"),
            );
            return;
        };
        let joins = self.m.process.graph.incoming(&node_id) > 1;
        match node {
            Node::Parallel(_) | Node::Inclusive(_) if joins => {
                self.inst.tokens[i].state = TokenState::Joining;
                if matches!(node, Node::Parallel(_)) {
                    self.fire_parallel_join(&node_id);
                }
                return;
            }
            _ => {}
        }
        let a = self.id();
        self.history(a, &node_id, Lifecycle::Ready, None);
        self.history(a, &node_id, Lifecycle::Active, None);
        let scope = self.inst.tokens[i].scope;
        match node {
            Node::Empty(_) | Node::Parallel(_) => self.complete(i, a, None),
            Node::Exclusive(g) if g.branches.is_empty() => self.complete(i, a, None),
            Node::Inclusive(g) if g.branches.is_empty() => self.complete(i, a, None),
            Node::Assign(n) => {
                // One evaluator for the node; later entries see earlier ones.
                let mut ev = Evaluator::new(self.m.process, &self.inst.visible_vars(scope));
                for (k, v) in &n.set {
                    match ev.value(v) {
                        Ok(v) => {
                            ev.set(k, &v);
                            if let Err(message) = self.set_var(scope, k.clone(), v) {
                                return self.incident(i, a, message);
                            }
                        }
                        Err(e) => return self.incident(i, a, e.to_string()),
                    }
                }
                self.complete(i, a, None);
            }
            Node::Exclusive(g) => self.split(i, a, &g.branches, g.default.as_deref(), true),
            Node::Inclusive(g) => self.split(i, a, &g.branches, g.default.as_deref(), false),
            Node::Service(s) => {
                let vars = self.inst.visible_vars(scope);
                let input = match Evaluator::new(self.m.process, &vars)
                    .value(&Value::Object(s.input.clone().into_iter().collect()))
                {
                    Ok(v) => v,
                    Err(e) => return self.incident(i, a, e.to_string()),
                };
                self.inst.tokens[i].state = TokenState::Waiting {
                    activity: a,
                    wait: Wait::Job,
                };
                self.actions.push(Action::RunJob(JobSpec {
                    activity: a,
                    node: node_id,
                    action: s.action.clone(),
                    input,
                    retries: s.retries.unwrap_or(3),
                }));
            }
            Node::User(u) => match self.task(a, &node_id, u, scope) {
                Ok(spec) => {
                    self.inst.tokens[i].state = TokenState::Waiting {
                        activity: a,
                        wait: Wait::Task,
                    };
                    self.actions.push(Action::CreateTask(spec));
                }
                Err(e) => self.incident(i, a, e),
            },
            Node::End(e) => {
                self.history(a, &node_id, Lifecycle::Completing, None);
                self.history(a, &node_id, Lifecycle::Completed, None);
                self.inst.tokens.remove(i);
                if e.terminate {
                    if scope == 0 {
                        self.abort_scope_tree(0, None);
                        self.end_instance(InstanceStatus::Terminated);
                        return;
                    }
                    self.abort_scope_tree(scope, None);
                }
                self.scope_maybe_done(scope);
            }
            Node::Subprocess(s) => self.open_scope(i, a, &s.start, &s.variables, 0),
            Node::Loop(l) => {
                if let Some(w) = &l.while_ {
                    let vars = self.inst.visible_vars(scope);
                    match Evaluator::new(self.m.process, &vars).condition(&w.0) {
                        Ok(true) => {}
                        Ok(false) => return self.complete(i, a, None),
                        Err(e) => return self.incident(i, a, e.to_string()),
                    }
                }
                self.open_scope(i, a, &l.start, &indexmap::IndexMap::new(), 0);
            }
            other => {
                // Machine::new refuses these; reaching one is a bug, reported, not a panic.
                let what = other.type_name();
                self.incident(i, a, format!("`{what}` nodes are not run by this runtime"));
            }
        }
    }

    fn task(&mut self, a: u64, node: &str, u: &raw::User, scope: u64) -> Result<TaskSpec, String> {
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let text = |v: &Option<Value>| -> Result<Option<String>, String> {
            match v {
                None => Ok(None),
                Some(v) => match ev.value(v).map_err(|e| e.to_string())? {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s)),
                    other => Ok(Some(other.to_string())),
                },
            }
        };
        let list = |v: &Option<Value>| -> Result<Vec<String>, String> {
            match v {
                None => Ok(Vec::new()),
                Some(v) => match ev.value(v).map_err(|e| e.to_string())? {
                    Value::Array(a) => Ok(a
                        .into_iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()),
                    Value::String(s) => Ok(vec![s]),
                    Value::Null => Ok(Vec::new()),
                    other => Err(format!("expected a list of names, got {other}")),
                },
            }
        };
        let priority = match &u.priority {
            None => 50,
            Some(v) => ev
                .value(v)
                .map_err(|e| e.to_string())?
                .as_i64()
                .unwrap_or(50)
                .clamp(0, 100),
        };
        let due = match &u.due {
            None => None,
            Some(t) => Some(due_date(t, self.now, &ev)?),
        };
        Ok(TaskSpec {
            activity: a,
            node: node.to_owned(),
            name: u.name.clone(),
            assignee: text(&u.assignee)?,
            candidate_users: list(&u.candidate_users)?,
            candidate_groups: list(&u.candidate_groups)?,
            due,
            priority,
        })
    }

    /// Exclusive (first match) or inclusive (every match) split.
    fn split(
        &mut self,
        i: usize,
        a: u64,
        branches: &[raw::Branch],
        default: Option<&str>,
        first_only: bool,
    ) {
        let scope = self.inst.tokens[i].scope;
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let mut targets = Vec::new();
        for b in branches {
            match ev.condition(&b.when.0) {
                Ok(true) => {
                    targets.push(b.to.clone());
                    if first_only {
                        break;
                    }
                }
                Ok(false) => {}
                Err(e) => return self.incident(i, a, e.to_string()),
            }
        }
        if targets.is_empty() {
            match default {
                Some(d) => targets.push(d.to_owned()),
                None => {
                    let node = self.inst.tokens[i].node.clone();
                    return self.incident(
                        i,
                        a,
                        format!("no branch matched at gateway `{node}`, and it has no default"),
                    );
                }
            }
        }
        self.history(
            a,
            &self.inst.tokens[i].node.clone(),
            Lifecycle::Completing,
            None,
        );
        self.history(
            a,
            &self.inst.tokens[i].node.clone(),
            Lifecycle::Completed,
            None,
        );
        self.leave(i, &targets);
    }

    /// Completes the activity the token is in and moves it on.
    fn complete(&mut self, i: usize, a: u64, actor: Option<String>) {
        let node_id = self.inst.tokens[i].node.clone();
        self.history(a, &node_id, Lifecycle::Completing, actor.as_deref());
        self.history(a, &node_id, Lifecycle::Completed, actor.as_deref());
        let next: Vec<String> = self
            .m
            .node(&node_id)
            .and_then(|n| n.next())
            .map(|n| n.ids().to_vec())
            .unwrap_or_default();
        self.leave(i, &next);
    }

    /// Sends the token to each target (the first reuses it).
    fn leave(&mut self, i: usize, targets: &[String]) {
        let from = self.inst.tokens[i].node.clone();
        let scope = self.inst.tokens[i].scope;
        let Some((first, rest)) = targets.split_first() else {
            self.inst.tokens.remove(i);
            self.scope_maybe_done(scope);
            return;
        };
        let t = &mut self.inst.tokens[i];
        t.node = first.clone();
        t.from = Some(from.clone());
        t.state = TokenState::Arriving;
        for target in rest {
            let id = self.id();
            self.inst.tokens.push(Token {
                id,
                node: target.clone(),
                scope,
                from: Some(from.clone()),
                state: TokenState::Arriving,
            });
        }
    }

    fn incident(&mut self, i: usize, a: u64, message: String) {
        let node = self.inst.tokens[i].node.clone();
        self.history(a, &node, Lifecycle::Faulted, None);
        self.inst.tokens[i].state = TokenState::Incident {
            activity: a,
            message: message.clone(),
        };
        self.actions.push(Action::Incident {
            activity: a,
            node,
            message,
        });
    }

    /// A parallel join fires when a token has arrived from every incoming flow.
    fn fire_parallel_join(&mut self, node: &str) {
        let mut picked = Vec::new();
        for p in self.m.process.graph.predecessors(node) {
            match self.inst.tokens.iter().position(|t| {
                t.node == node
                    && t.state == TokenState::Joining
                    && t.from.as_deref() == Some(p)
                    && !picked.contains(&t.id)
            }) {
                Some(idx) => picked.push(self.inst.tokens[idx].id),
                None => return,
            }
        }
        self.merge(node, &picked);
    }

    /// An inclusive join fires when no other live token of its scope can still reach it.
    fn fire_inclusive_join(&mut self) -> bool {
        let joining: Vec<(String, u64)> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.state == TokenState::Joining)
            .filter(|t| matches!(self.m.node(&t.node), Some(Node::Inclusive(_))))
            .map(|t| (t.node.clone(), t.scope))
            .collect();
        for (node, scope) in joining {
            let blocked = self.inst.tokens.iter().any(|t| {
                t.scope == scope
                    && t.state != TokenState::Joining
                    && t.node != node
                    && self.reaches(&t.node, &node)
            });
            if !blocked {
                let ids: Vec<u64> = self
                    .inst
                    .tokens
                    .iter()
                    .filter(|t| {
                        t.node == node && t.scope == scope && t.state == TokenState::Joining
                    })
                    .map(|t| t.id)
                    .collect();
                self.merge(&node, &ids);
                return true;
            }
        }
        false
    }

    /// Whether a flow path leads from `from` to `to`.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let g = &self.m.process.graph;
        let (Some(&a), Some(&b)) = (g.index.get(from), g.index.get(to)) else {
            return false;
        };
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([a]);
        while let Some(n) = queue.pop_front() {
            if n == b {
                return true;
            }
            if seen.insert(n) {
                queue.extend(g.graph.neighbors(n));
            }
        }
        false
    }

    /// Consumes the joined tokens and lets one through the gateway.
    fn merge(&mut self, node: &str, ids: &[u64]) {
        let Some(&keep) = ids.first() else { return };
        self.inst
            .tokens
            .retain(|t| t.id == keep || !ids.contains(&t.id));
        let Some(i) = self.inst.tokens.iter().position(|t| t.id == keep) else {
            return;
        };
        let a = self.id();
        self.history(a, node, Lifecycle::Ready, None);
        self.history(a, node, Lifecycle::Active, None);
        self.complete(i, a, None);
    }

    /// Opens the inner scope of a subprocess or loop body.
    fn open_scope(
        &mut self,
        i: usize,
        a: u64,
        start: &str,
        decls: &indexmap::IndexMap<String, raw::VariableDef>,
        iterations: u32,
    ) {
        let parent = self.inst.tokens[i].scope;
        let inner = self.id();
        let mut vars = Vars::new();
        for (k, d) in decls {
            vars.insert(k.clone(), d.default.clone().unwrap_or(Value::Null));
        }
        self.inst.scopes.insert(
            inner,
            Scope {
                node: Some(self.inst.tokens[i].node.clone()),
                parent: Some(parent),
                vars,
            },
        );
        self.inst.tokens[i].state = TokenState::Waiting {
            activity: a,
            wait: Wait::Scope { inner, iterations },
        };
        let id = self.id();
        self.inst.tokens.push(Token {
            id,
            node: start.to_owned(),
            scope: inner,
            from: None,
            state: TokenState::Arriving,
        });
    }

    /// When a scope has no token left, its container completes (or a loop runs again).
    fn scope_maybe_done(&mut self, scope: u64) {
        if self.inst.tokens.iter().any(|t| t.scope == scope) {
            return;
        }
        if scope == 0 {
            self.end_instance(InstanceStatus::Completed);
            return;
        }
        self.inst.scopes.remove(&scope);
        let Some(i) = self
            .inst
            .tokens
            .iter()
            .position(|t| matches!(t.state, TokenState::Waiting { wait: Wait::Scope { inner, .. }, .. } if inner == scope))
        else {
            return;
        };
        let TokenState::Waiting {
            activity: a,
            wait: Wait::Scope { iterations, .. },
        } = self.inst.tokens[i].state.clone()
        else {
            return;
        };
        let node = self.inst.tokens[i].node.clone();
        if let Some(Node::Loop(l)) = self.m.node(&node) {
            let runs = iterations + 1;
            let outer = self.inst.tokens[i].scope;
            let vars = self.inst.visible_vars(outer);
            let ev = Evaluator::new(self.m.process, &vars);
            let again = match (&l.while_, &l.until) {
                (Some(w), _) => ev.condition(&w.0),
                (None, Some(u)) => ev.condition(&u.0).map(|done| !done),
                (None, None) => Ok(false),
            };
            match again {
                Ok(true) => {
                    let max = l.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
                    if runs >= max {
                        return self.incident(
                            i,
                            a,
                            format!("loop `{node}` ran {runs} times, its `max_iterations`"),
                        );
                    }
                    return self.open_scope(i, a, &l.start, &indexmap::IndexMap::new(), runs);
                }
                Ok(false) => {}
                Err(e) => return self.incident(i, a, e.to_string()),
            }
        }
        self.complete(i, a, None);
    }

    /// Aborts every token in `scope` and the scopes inside it.
    fn abort_scope_tree(&mut self, scope: u64, actor: Option<&str>) {
        let mut doomed = HashSet::from([scope]);
        loop {
            let before = doomed.len();
            for (id, s) in &self.inst.scopes {
                if s.parent.is_some_and(|p| doomed.contains(&p)) {
                    doomed.insert(*id);
                }
            }
            if doomed.len() == before {
                break;
            }
        }
        let tokens = std::mem::take(&mut self.inst.tokens);
        for t in tokens {
            if !doomed.contains(&t.scope) {
                self.inst.tokens.push(t);
                continue;
            }
            let activity = match &t.state {
                TokenState::Waiting { activity, wait } => {
                    match wait {
                        Wait::Task => self.actions.push(Action::CloseTask {
                            activity: *activity,
                            state: Lifecycle::Aborted,
                        }),
                        Wait::Job => self.actions.push(Action::CancelJob {
                            activity: *activity,
                        }),
                        Wait::Scope { .. } => {}
                    }
                    Some(*activity)
                }
                TokenState::Incident { activity, .. } => Some(*activity),
                TokenState::Arriving | TokenState::Joining => None,
            };
            if let Some(a) = activity {
                self.history(a, &t.node, Lifecycle::Aborting, actor);
                self.history(a, &t.node, Lifecycle::Aborted, actor);
            }
        }
        for s in doomed {
            if s != 0 {
                self.inst.scopes.remove(&s);
            }
        }
    }

    fn end_instance(&mut self, status: InstanceStatus) {
        self.inst.status = status;
        self.inst.ended_at = Some(self.now);
        self.actions.push(Action::Ended { status });
    }
}

/// When a task created `now` is due.
fn due_date(
    t: &raw::TimerDef,
    now: DateTime<Utc>,
    ev: &Evaluator,
) -> Result<DateTime<Utc>, String> {
    let resolve = |s: &str| -> Result<String, String> {
        match crate::model::expr::as_expression(s) {
            Some((e, _)) => match ev.eval(e).map_err(|e| e.to_string())? {
                Value::String(s) => Ok(s),
                other => Err(format!("a due date expression gave {other}, not text")),
            },
            None => Ok(s.to_owned()),
        }
    };
    if let Some(d) = &t.date {
        let text = resolve(d)?;
        return timer::parse_date(&text)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| e.message);
    }
    let text = resolve(t.duration.as_deref().unwrap_or("PT0S"))?;
    match timer::parse_duration(&text).map_err(|e| e.message)? {
        timer::Duration::Iso(d) => Ok(add_iso(now, &d)),
        timer::Duration::BusinessDays(n) => Ok(add_weekdays(now, n)),
    }
}

/// Adds an ISO duration: calendar units on the calendar, the rest exactly.
pub fn add_iso(at: DateTime<Utc>, d: &timer::IsoDuration) -> DateTime<Utc> {
    let months = d.years.saturating_mul(12).saturating_add(d.months);
    let at = at
        .checked_add_months(chrono::Months::new(months))
        .unwrap_or(at);
    let days = u64::from(d.weeks) * 7 + u64::from(d.days);
    let at = at.checked_add_days(chrono::Days::new(days)).unwrap_or(at);
    let exact = chrono::Duration::hours(i64::from(d.hours))
        + chrono::Duration::minutes(i64::from(d.minutes))
        + chrono::Duration::milliseconds(i64::try_from(d.millis).unwrap_or(i64::MAX / 2));
    at.checked_add_signed(exact).unwrap_or(at)
}

/// Adds `n` working days, Monday to Friday. (Holidays and make-up days come with
/// working calendars.)
pub fn add_weekdays(at: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    let mut at = at;
    let mut left = n;
    while left > 0 {
        at += chrono::Duration::days(1);
        if at.weekday().number_from_monday() <= 5 {
            left -= 1;
        }
    }
    at
}
