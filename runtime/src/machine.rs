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
use chrono::{DateTime, Utc};
use ordo_model::calendar::Calendars;
use ordo_model::raw::{self, Node};
use ordo_model::{Process, timer};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};

/// Largest serialized size of an instance's variables.
pub const MAX_VARIABLES_BYTES: usize = 1024 * 1024;
/// Most automatic steps one command may take before the instance is stopped with an
/// incident (an endless loop of automatic steps).
pub const MAX_STEPS: usize = 10_000;
/// Default guard of a `loop` node.
pub const DEFAULT_MAX_ITERATIONS: u32 = 1000;
/// Most runs of one multi-instance activity.
pub const MAX_RUNS: usize = 10_000;

/// Where a run's token comes from when only its `output` is left to evaluate
/// (after an incident on it): not a node id, which cannot hold `#`.
const RUN_OUTPUT: &str = "#output";

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
    /// The process has no start event of this id.
    #[error("process `{process}` has no start event `{event}`")]
    UnknownStart {
        /// The process.
        process: String,
        /// The start event asked for.
        event: String,
    },
    /// The instance no longer waits for this event (it fired, or its activity ended).
    #[error("the instance does not wait for event {0}")]
    UnknownSubscription(u64),
    /// No incident holds this activity.
    #[error("activity {0} has no open incident")]
    NoIncident(u64),
    /// An error or escalation from a called instance that the caller does not catch
    /// either (it stays with the child).
    #[error("nothing in the caller catches `{0}`")]
    Uncaught(String),
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
    /// A job raised a business error (BPML fault): it goes to a boundary `error`
    /// event on the service task or an enclosing activity, or becomes an incident.
    JobError {
        /// The job's activity instance.
        activity: u64,
        /// The error code.
        code: String,
        /// Details, kept with the incident when nothing catches it.
        message: String,
    },
    /// A message, timer or signal the instance waits for has come.
    Trigger {
        /// The subscription's id.
        subscription: u64,
        /// The message's or signal's variables (empty for a timer).
        variables: Vars,
    },
    /// An admin runs a failed step again, after setting `variables`: a service task's
    /// job with `retries` fresh retries; any other node is entered again.
    Retry {
        /// The activity the incident holds.
        activity: u64,
        /// Retries for a service task's job (default: the task's own).
        retries: Option<u32>,
        /// Variables to set first (the fix).
        variables: Vars,
        /// Who.
        actor: Option<String>,
    },
    /// An admin marks a failed step as done by hand: the path goes on after it.
    Resolve {
        /// The activity the incident holds.
        activity: u64,
        /// Variables to set (what the step would have produced).
        variables: Vars,
        /// Who.
        actor: Option<String>,
    },
    /// Cancel the instance.
    Cancel {
        /// Who.
        actor: Option<String>,
    },
    /// The instance a spawn activity asked for has started: the spawn completes.
    ChildStarted {
        /// The spawn activity instance.
        activity: u64,
    },
    /// The instance a call activity waits for has ended: on completion the call
    /// completes, writing its `out` mappings (over the child's variables); a
    /// cancelled child leaves an incident on the call.
    ChildEnded {
        /// The call activity instance.
        activity: u64,
        /// The child's id.
        child: String,
        /// How it ended.
        status: InstanceStatus,
        /// Its process variables.
        variables: Vars,
    },
    /// A called instance raised an error or escalation it did not catch: it goes to
    /// the call activity's boundary events and outward. Refused with
    /// [`Error::Uncaught`] when nothing here catches it.
    ChildRaised {
        /// The call activity instance.
        activity: u64,
        /// The code.
        code: String,
        /// An error (true) or an escalation.
        error: bool,
    },
    /// A call or spawn could not start its instance: an incident on the activity.
    CallFailed {
        /// The call or spawn activity instance.
        activity: u64,
        /// Why.
        message: String,
    },
}

/// Default retries of a service task's job after its first attempt.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default delay before a job's first retry; each further retry doubles it.
pub const DEFAULT_BACKOFF_MS: u64 = 10_000;

/// Runs instances of one process. Cheap to make: it reads the nodes and flows from
/// the process's graph, built once when the definition was loaded.
#[derive(Debug)]
pub struct Machine<'p> {
    process: &'p Process,
    calendars: &'p Calendars,
}

static DEFAULT_CALENDARS: std::sync::LazyLock<Calendars> =
    std::sync::LazyLock::new(Calendars::default);

impl<'p> Machine<'p> {
    /// Prepares `process`. Every construct of the format runs; the `Result` is kept
    /// so a future construct can be refused up front ([`Error::Unsupported`]).
    pub fn new(process: &'p Process) -> Result<Self, Error> {
        Ok(Machine {
            process,
            calendars: &DEFAULT_CALENDARS,
        })
    }

    /// Uses these working calendars for business-day timers (default: Monday to
    /// Friday only).
    #[must_use]
    pub fn with_calendars(mut self, calendars: &'p Calendars) -> Self {
        self.calendars = calendars;
        self
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
        variables: Vars,
        clock: &dyn Clock,
    ) -> Result<(Instance, Vec<Action>), Error> {
        self.start_by(None, id, version, business_key, variables, clock)
    }

    /// Starts an instance through start event `event` (a message, timer or signal
    /// start), or the call start event when `None`.
    pub fn start_by(
        &self,
        event: Option<&str>,
        id: String,
        version: u32,
        business_key: Option<String>,
        variables: Vars,
        clock: &dyn Clock,
    ) -> Result<(Instance, Vec<Action>), Error> {
        self.start_child(event, id, version, business_key, variables, None, clock)
    }

    /// Starts an instance as [`Machine::start_by`] does, as the child of `parent`
    /// (a call or spawn activity in another instance) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn start_child(
        &self,
        event: Option<&str>,
        id: String,
        version: u32,
        business_key: Option<String>,
        mut variables: Vars,
        parent: Option<ParentLink>,
        clock: &dyn Clock,
    ) -> Result<(Instance, Vec<Action>), Error> {
        let def = &self.process.def;
        let start = match event {
            None => def
                .start
                .iter()
                .find(|s| {
                    s.call == Some(true)
                        || (s.call.is_none()
                            && s.message.is_none()
                            && s.timer.is_none()
                            && s.signal.is_none())
                })
                .ok_or_else(|| Error::NoCallStart(def.id.clone()))?,
            Some(e) => def
                .start
                .iter()
                .find(|s| s.id == e)
                .ok_or_else(|| Error::UnknownStart {
                    process: def.id.clone(),
                    event: e.to_owned(),
                })?,
        };
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
            scopes: [(0, Scope::new(None, None, variables))].into(),
            tokens: vec![Token {
                id: 1,
                node: start.next.clone(),
                scope: 0,
                from: Some(start.id.clone()),
                state: TokenState::Arriving,
            }],
            parent,
            subscriptions: Vec::new(),
            next_id: 2,
            started_at: now,
            ended_at: None,
        };
        let mut step = Step::new(self, &mut inst, now);
        step.history(0, &start.id, Lifecycle::Completed, None);
        // An event subprocess whose key or timer cannot be computed from the start
        // variables refuses the start, as a missing required variable does.
        step.arm_event_subprocesses(0)
            .map_err(|e| Error::Variables(vec![e]))?;
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
                let mut variables = variables;
                if let Some(Node::User(u)) = self.node(&node) {
                    let errors = form::validate(&u.form, &variables);
                    if !errors.is_empty() {
                        return Err(Error::Form(errors));
                    }
                    // A field left out takes its default (an `=expression` is
                    // evaluated now), so later steps can rely on the variable.
                    let scope = step.inst.tokens[i].scope;
                    let visible = step.inst.visible_vars(scope);
                    let ev = Evaluator::new(self.process, &visible);
                    for (name, field) in &u.form {
                        if let Some(d) = &field.default
                            && !variables.contains_key(name)
                            && let Ok(v) = ev.value(d)
                        {
                            variables.insert(name.clone(), v);
                        }
                    }
                    if let Some(var) = &u.completed_by {
                        variables.insert(
                            var.clone(),
                            actor.clone().map_or(Value::Null, Value::String),
                        );
                    }
                }
                step.set_vars_or_refuse(i, variables)?;
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
            Command::JobError {
                activity,
                code,
                message,
            } => {
                let i = step.waiting(activity, "job")?;
                let id = step.inst.tokens[i].id;
                step.raise(
                    id,
                    activity,
                    &code,
                    Raised::Error { detail: message },
                    true,
                    true,
                );
            }
            Command::Trigger {
                subscription,
                variables,
            } => {
                let sub = step
                    .inst
                    .subscriptions
                    .iter()
                    .find(|s| s.id == subscription)
                    .cloned()
                    .ok_or(Error::UnknownSubscription(subscription))?;
                step.fire(&sub, variables);
            }
            Command::Retry {
                activity,
                retries,
                variables,
                actor,
            } => {
                let i = step.faulted(activity)?;
                step.set_vars_or_refuse(i, variables)?;
                step.actions.push(Action::CloseIncident {
                    activity,
                    how: "retried".into(),
                    actor: actor.clone(),
                });
                step.retry(i, activity, retries, actor);
            }
            Command::Resolve {
                activity,
                variables,
                actor,
            } => {
                let i = step.faulted(activity)?;
                step.set_vars_or_refuse(i, variables)?;
                step.actions.push(Action::CloseIncident {
                    activity,
                    how: "resolved".into(),
                    actor: actor.clone(),
                });
                let i = step.take_round(i);
                step.complete(i, activity, actor);
            }
            Command::Cancel { actor } => {
                step.abort_scope_tree(0, actor.as_deref(), false);
                step.end_instance(InstanceStatus::Cancelled);
            }
            Command::ChildStarted { activity } => {
                let i = step.waiting(activity, "call")?;
                step.complete(i, activity, None);
            }
            Command::ChildEnded {
                activity,
                child,
                status,
                variables,
            } => {
                let i = step.waiting(activity, "call")?;
                match status {
                    InstanceStatus::Completed | InstanceStatus::Terminated => {
                        match step.write_call_outputs(i, variables) {
                            Ok(()) => step.complete(i, activity, None),
                            Err(e) => step.incident(i, activity, e),
                        }
                    }
                    InstanceStatus::Cancelled => step.incident(
                        i,
                        activity,
                        format!("the called instance {child} was cancelled"),
                    ),
                    InstanceStatus::Active => {}
                }
            }
            Command::ChildRaised {
                activity,
                code,
                error,
            } => {
                let i = step.waiting(activity, "call")?;
                let token = step.inst.tokens[i].id;
                let raised = if error {
                    Raised::Error {
                        detail: String::new(),
                    }
                } else {
                    Raised::Escalation
                };
                if !step.raise(token, activity, &code, raised, true, false) {
                    return Err(Error::Uncaught(code));
                }
            }
            Command::CallFailed { activity, message } => {
                let i = step.waiting(activity, "call")?;
                step.incident(i, activity, message);
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
                    problems.push(format!("{name} is required"));
                }
            }
            Some(_) if d.internal => problems.push(format!(
                "{name} is set by the process itself; a start may not give it"
            )),
            Some(v) => {
                if let Err(p) = d.check(name, v) {
                    problems.extend(p);
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
    /// Retries an admin gave to the job of a retried service task.
    retries: Option<u32>,
}

/// What a throw or end event sends and raises.
struct Raises<'n> {
    message: &'n Option<String>,
    key: Option<&'n raw::Expr>,
    payload: &'n raw::Mapping,
    signal: &'n Option<String>,
    error: &'n Option<String>,
    escalation: &'n Option<String>,
}

/// What [`Step::raise`] raises.
enum Raised {
    /// An error (critical): the flow does not go on.
    Error {
        /// Details for the incident when nothing catches it.
        detail: String,
    },
    /// An escalation (non-critical).
    Escalation,
}

/// A boundary event's id: its own, or `<activity>.boundary<N>`.
fn boundary_id(host: &str, index: usize, b: &raw::BoundaryEvent) -> String {
    b.id.clone()
        .unwrap_or_else(|| format!("{host}.boundary{index}"))
}

/// A correlation key as text (`null` is no key).
fn key_text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

impl<'m, 'p> Step<'m, 'p> {
    fn new(m: &'m Machine<'p>, inst: &'m mut Instance, now: DateTime<Utc>) -> Self {
        Step {
            m,
            inst,
            now,
            actions: Vec::new(),
            retries: None,
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
            TokenState::Waiting {
                wait: Wait::Event, ..
            } => "event",
            TokenState::Waiting {
                wait: Wait::Call, ..
            } => "call",
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
            let run_local = sc.run.is_some() && !self.declared_above(sc.parent, &name);
            if sc.vars.contains_key(&name) || sc.parent.is_none() || run_local {
                let decls = match &sc.node {
                    _ if sc.run.is_some() => None,
                    None => Some(&self.m.process.def.variables),
                    Some(container) => match self.m.node(container) {
                        Some(Node::Subprocess(sp)) => Some(&sp.variables),
                        _ => None,
                    },
                };
                if let Some(d) = decls.and_then(|d| d.get(&name))
                    && let Err(problems) = d.check(&name, &value)
                {
                    return Err(problems.join("; "));
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
        // A run whose `output` failed, retried or resolved: only the output is
        // evaluated again; the run's work is not redone.
        if self.inst.tokens[i].from.as_deref() == Some(RUN_OUTPUT) && self.is_run(i) {
            let run = self.inst.tokens[i].scope;
            self.inst.tokens.remove(i);
            return self.run_done(run);
        }
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
        if let Some(mi) = node.multi()
            && !self.is_run(i)
        {
            return self.enter_multi(i, &node_id, node, mi);
        }
        let joins = self.m.process.graph.incoming(&node_id) > 1;
        match node {
            Node::Complex(c) => {
                self.inst.tokens[i].state = TokenState::Joining;
                let (token, scope) = (self.inst.tokens[i].id, self.inst.tokens[i].scope);
                return self.fire_complex(&node_id, c, scope, token);
            }
            Node::Parallel(_) | Node::Inclusive(_) if joins => {
                self.inst.tokens[i].state = TokenState::Joining;
                if matches!(node, Node::Parallel(_)) {
                    let scope = self.inst.tokens[i].scope;
                    self.fire_parallel_join(&node_id, scope);
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
            Node::Empty(_) | Node::Parallel(_) | Node::Complex(_) => self.complete(i, a, None),
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
                let backoff_ms = match s.backoff.as_deref().map(timer::parse_duration) {
                    None => DEFAULT_BACKOFF_MS,
                    Some(Ok(timer::Duration::Iso(d))) => {
                        let from = self.now;
                        u64::try_from((add_iso(from, &d) - from).num_milliseconds()).unwrap_or(0)
                    }
                    Some(Ok(timer::Duration::BusinessDays(_))) | Some(Err(_)) => {
                        return self.incident(
                            i,
                            a,
                            "`backoff` must be an ISO 8601 duration such as `PT30S`".into(),
                        );
                    }
                };
                self.inst.tokens[i].state = TokenState::Waiting {
                    activity: a,
                    wait: Wait::Job,
                };
                self.actions.push(Action::RunJob(JobSpec {
                    activity: a,
                    node: node_id.clone(),
                    action: s.action.clone(),
                    input,
                    retries: self.retries.take().or(s.retries).unwrap_or(DEFAULT_RETRIES),
                    backoff_ms,
                }));
                self.arm_boundaries(i, &node_id, node);
            }
            Node::User(u) => match self.task(a, &node_id, u, scope) {
                Ok(spec) => {
                    self.inst.tokens[i].state = TokenState::Waiting {
                        activity: a,
                        wait: Wait::Task,
                    };
                    self.actions.push(Action::CreateTask(spec));
                    self.arm_boundaries(i, &node_id, node);
                }
                Err(e) => self.incident(i, a, e),
            },
            Node::Receive(r) => {
                let trigger = self.message_trigger(scope, &r.message, r.key.as_ref());
                self.wait_for(i, a, &node_id, vec![(SubscriptionKind::Catch, trigger)]);
                self.arm_boundaries(i, &node_id, node);
            }
            Node::Catch(c) => {
                let trigger = if let Some(m) = &c.message {
                    self.message_trigger(scope, m, c.key.as_ref())
                } else if let Some(t) = &c.timer {
                    self.timer_trigger(scope, t)
                } else {
                    Ok(Trigger::Signal {
                        name: c.signal.clone().unwrap_or_default(),
                    })
                };
                self.wait_for(i, a, &node_id, vec![(SubscriptionKind::Catch, trigger)]);
            }
            Node::Event(g) => {
                let subs = g
                    .events
                    .iter()
                    .enumerate()
                    .map(|(index, e)| {
                        let trigger = if let Some(m) = &e.message {
                            self.message_trigger(scope, m, e.key.as_ref())
                        } else if let Some(t) = &e.timer {
                            self.timer_trigger(scope, t)
                        } else {
                            Ok(Trigger::Signal {
                                name: e.signal.clone().unwrap_or_default(),
                            })
                        };
                        (SubscriptionKind::Gateway { index }, trigger)
                    })
                    .collect();
                self.wait_for(i, a, &node_id, subs);
            }
            Node::Throw(_) | Node::End(_) => self.throw_or_end(i, a, false),
            Node::Subprocess(s) => {
                self.open_scope(i, a, &s.start, &s.variables, 0);
                self.arm_boundaries(i, &node_id, node);
            }
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
                self.arm_boundaries(i, &node_id, node);
            }
            Node::Call(raw::Call {
                process,
                version,
                business_key,
                input,
                ..
            })
            | Node::Spawn(raw::Spawn {
                process,
                version,
                business_key,
                input,
                ..
            }) => match self.child_start(scope, business_key, input) {
                Ok((business_key, variables)) => {
                    self.inst.tokens[i].state = TokenState::Waiting {
                        activity: a,
                        wait: Wait::Call,
                    };
                    self.actions.push(Action::StartChild {
                        activity: a,
                        process: process.clone(),
                        version: *version,
                        business_key,
                        variables,
                        waits: matches!(node, Node::Call(_)),
                    });
                    self.arm_boundaries(i, &node_id, node);
                }
                Err(e) => self.incident(i, a, e),
            },
            Node::EventSubprocess(_) => {
                // Only its trigger starts one; a flow into it is refused by the validator.
                self.incident(
                    i,
                    a,
                    format!(
                        "event subprocess `{node_id}` is started by its trigger, not by a flow"
                    ),
                );
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
            Some(t) => Some(self.due(t, &ev)?),
        };
        let excluded = list(&u.exclude)?;
        let assignee = text(&u.assignee)?.filter(|a| !excluded.contains(a));
        let mut candidate_users = list(&u.candidate_users)?;
        candidate_users.retain(|c| !excluded.contains(c));
        Ok(TaskSpec {
            activity: a,
            node: node.to_owned(),
            name: u.name.clone(),
            assignee,
            candidate_users,
            candidate_groups: list(&u.candidate_groups)?,
            excluded,
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

    /// Completes the activity the token is in and moves it on (a multi-instance
    /// run ends instead: its container counts it). An activity with a
    /// compensation handler is remembered in its scope, to be undone on request.
    fn complete(&mut self, i: usize, a: u64, actor: Option<String>) {
        self.disarm(self.inst.tokens[i].id);
        let node_id = self.inst.tokens[i].node.clone();
        self.history(a, &node_id, Lifecycle::Completing, actor.as_deref());
        self.history(a, &node_id, Lifecycle::Completed, actor.as_deref());
        let run = self.is_run(i);
        let node = self.m.node(&node_id);
        if let Some(n) = node
            && let Some(handler) = n.compensation()
            && (run || n.multi().is_none())
        {
            let scope = self.inst.tokens[i].scope;
            let seq = self.id();
            if let Some(sc) = self.inst.scopes.get_mut(&scope) {
                let vars = if run { sc.vars.clone() } else { Vars::new() };
                sc.done.push(Compensable {
                    node: node_id.clone(),
                    handler: handler.to_owned(),
                    seq,
                    vars,
                });
            }
        }
        let next: Vec<String> = if run {
            Vec::new()
        } else {
            node.and_then(|n| n.next())
                .map(|n| n.ids().to_vec())
                .unwrap_or_default()
        };
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

    /// A parallel join fires when a token of its scope instance has arrived
    /// from every incoming flow: runs of a multi-instance body, or of an event
    /// subprocess, each join their own tokens only.
    fn fire_parallel_join(&mut self, node: &str, scope: u64) {
        let mut picked = Vec::new();
        for p in self.m.process.graph.predecessors(node) {
            match self.inst.tokens.iter().position(|t| {
                t.node == node
                    && t.scope == scope
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

    /// A complex gateway: token `arrived` has just come to `node` in `scope`.
    ///
    /// After a round fired with `rest: wait`, a token from a flow still owed is
    /// absorbed; once every owed flow has delivered, the next round begins with
    /// the tokens that came early for it. In a round, one token per incoming
    /// flow counts (`arrived`), and when `activation` holds one token goes on;
    /// with `rest: cancel` every other token of the scope that can still reach
    /// the gateway is withdrawn.
    fn fire_complex(&mut self, node: &str, c: &raw::Complex, scope: u64, arrived: u64) {
        let incoming: Vec<String> = self
            .m
            .process
            .graph
            .predecessors(node)
            .map(str::to_owned)
            .collect();
        if let Some(owed) = self.inst.scopes.get(&scope).and_then(|s| s.gates.get(node)) {
            let from = self
                .token_index(arrived)
                .and_then(|i| self.inst.tokens[i].from.clone());
            let Some(pos) = from.and_then(|f| owed.iter().position(|o| *o == f)) else {
                return; // from a flow already heard this round: it waits for the next
            };
            let mut owed = owed.clone();
            owed.remove(pos);
            self.inst.tokens.retain(|t| t.id != arrived);
            if let Some(sc) = self.inst.scopes.get_mut(&scope) {
                if owed.is_empty() {
                    sc.gates.remove(node);
                } else {
                    sc.gates.insert(node.to_owned(), owed);
                }
            }
            if self
                .inst
                .scopes
                .get(&scope)
                .is_some_and(|s| s.gates.contains_key(node))
            {
                return self.scope_maybe_done(scope);
            }
            // The round is over: tokens that came early start the next one.
            if !self
                .inst
                .tokens
                .iter()
                .any(|t| t.node == node && t.scope == scope && t.state == TokenState::Joining)
            {
                return self.scope_maybe_done(scope);
            }
        }
        // This round: the oldest waiting token of each incoming flow.
        let mut picked: Vec<(String, u64)> = Vec::new();
        let mut waiting: Vec<&Token> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.node == node && t.scope == scope && t.state == TokenState::Joining)
            .collect();
        waiting.sort_by_key(|t| t.id);
        for t in waiting {
            if let Some(f) = &t.from
                && !picked.iter().any(|(p, _)| p == f)
            {
                picked.push((f.clone(), t.id));
            }
        }
        if picked.is_empty() {
            return;
        }
        let mut vars = self.inst.visible_vars(scope);
        vars.insert("arrived".into(), Value::from(picked.len()));
        vars.insert("total".into(), Value::from(incoming.len()));
        let fire = Evaluator::new(self.m.process, &vars).condition(&c.activation.0);
        let at = picked.last().map_or(arrived, |(_, id)| *id);
        match fire {
            Err(e) => {
                if let Some(i) = self.token_index(at) {
                    let a = self.id();
                    self.history(a, node, Lifecycle::Ready, None);
                    self.incident(i, a, format!("the `activation` condition: {e}"));
                }
            }
            Ok(false) if picked.len() >= incoming.len() => {
                if let Some(i) = self.token_index(at) {
                    let a = self.id();
                    self.history(a, node, Lifecycle::Ready, None);
                    self.incident(
                        i,
                        a,
                        format!(
                            "every incoming flow has arrived and `activation` ({}) still does not hold: this round can never fire",
                            c.activation.0.trim()
                        ),
                    );
                }
            }
            Ok(false) => {}
            Ok(true) => {
                let owed: Vec<String> = incoming
                    .iter()
                    .filter(|f| !picked.iter().any(|(p, _)| p == *f))
                    .cloned()
                    .collect();
                match c.rest {
                    raw::Rest::Cancel => self.withdraw_reaching(node, scope),
                    raw::Rest::Wait => {
                        if !owed.is_empty()
                            && let Some(sc) = self.inst.scopes.get_mut(&scope)
                        {
                            sc.gates.insert(node.to_owned(), owed);
                        }
                    }
                }
                let ids: Vec<u64> = picked.iter().map(|(_, id)| *id).collect();
                self.merge(node, &ids);
            }
        }
    }

    /// Before a failed complex gateway is resolved by hand: the other tokens of
    /// its round (one per incoming flow, waiting there) go through with it.
    /// Returns the failed token's index again.
    fn take_round(&mut self, i: usize) -> usize {
        let (id, node, scope) = {
            let t = &self.inst.tokens[i];
            (t.id, t.node.clone(), t.scope)
        };
        if !matches!(self.m.node(&node), Some(Node::Complex(_))) {
            return i;
        }
        let mut seen: Vec<String> = self.inst.tokens[i].from.iter().cloned().collect();
        let mut round = Vec::new();
        let mut waiting: Vec<&Token> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.node == node && t.scope == scope && t.state == TokenState::Joining)
            .collect();
        waiting.sort_by_key(|t| t.id);
        for t in waiting {
            if let Some(f) = &t.from
                && !seen.contains(f)
            {
                seen.push(f.clone());
                round.push(t.id);
            }
        }
        self.inst.tokens.retain(|t| !round.contains(&t.id));
        self.token_index(id).unwrap_or(i)
    }

    /// Withdraws every token of `scope` (but those at `node`) that can still
    /// reach `node`: the branches a cancelling complex gateway no longer needs.
    fn withdraw_reaching(&mut self, node: &str, scope: u64) {
        let doomed: Vec<u64> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.scope == scope && t.node != node && self.reaches(&t.node, node))
            .map(|t| t.id)
            .collect();
        for id in doomed {
            self.interrupt(id, None);
            if let Some(i) = self.token_index(id)
                && let TokenState::Incident { activity, .. } = self.inst.tokens[i].state
            {
                self.actions.push(Action::CloseIncident {
                    activity,
                    how: "withdrawn".into(),
                    actor: None,
                });
            }
            self.inst.tokens.retain(|t| t.id != id);
        }
    }

    /// An inclusive join fires when no other live token of its scope can still reach it.
    ///
    /// A token waiting at another join upstream still counts: that join will fire
    /// later and send its token here. The one exception is a join this one also
    /// reaches (the two lie on a cycle); counting it would make each wait for the
    /// other forever, so it is ignored, as BPMN's OR-join semantics prescribe.
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
                    && t.node != node
                    && self.reaches(&t.node, &node)
                    && !(t.state == TokenState::Joining && self.reaches(&node, &t.node))
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
            Scope::new(Some(self.inst.tokens[i].node.clone()), Some(parent), vars),
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
        if let Err(e) = self.arm_event_subprocesses(inner) {
            let token = self.inst.tokens[i].id;
            self.interrupt(token, None);
            if let Some(i) = self.token_index(token) {
                self.incident(i, a, e);
            }
        }
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
        if self
            .inst
            .scopes
            .get(&scope)
            .is_some_and(|s| s.run.is_some())
        {
            return self.run_done(scope);
        }
        let container = self.container_of(scope);
        // The body of one run of a multi-instance subprocess: what it declared
        // stays readable by the run's `output` (evaluated when the run ends).
        if let Some(i) = container {
            let outer = self.inst.tokens[i].scope;
            let body = self.inst.scopes.get(&scope).map(|s| s.vars.clone());
            if let (Some(body), Some(run)) = (
                body,
                self.inst.scopes.get_mut(&outer).filter(|s| s.run.is_some()),
            ) {
                run.vars.extend(body);
            }
        }
        self.close_scope(scope);
        let Some(i) = container else {
            return;
        };
        let (a, iterations) = match &self.inst.tokens[i].state {
            TokenState::Waiting {
                activity,
                wait: Wait::Scope { iterations, .. },
            } => (*activity, *iterations),
            TokenState::Waiting {
                wait: Wait::Compensate { .. },
                ..
            } => return self.next_handler(i),
            _ => return,
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

    /// Aborts every token in `scope` and the scopes inside it, and withdraws their
    /// event subprocesses; the scopes go too, except `scope` itself when `keep`
    /// (an interrupting event subprocess runs in it next). Completed activities
    /// awaiting compensation in the removed scopes pass to the nearest scope that
    /// remains: their work was done and may still need undoing.
    fn abort_scope_tree(&mut self, scope: u64, actor: Option<&str>, keep: bool) {
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
            self.disarm(t.id);
            if let TokenState::Incident { activity, .. } = &t.state {
                self.actions.push(Action::CloseIncident {
                    activity: *activity,
                    how: "aborted".into(),
                    actor: actor.map(str::to_owned),
                });
            }
            let activity = match &t.state {
                TokenState::Waiting { activity, wait } => {
                    self.cancel_wait(*activity, wait);
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
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.inst.subscriptions)
            .into_iter()
            .partition(|s| matches!(s.kind, SubscriptionKind::EventSubprocess { scope } if doomed.contains(&scope)));
        self.inst.subscriptions = kept;
        self.actions
            .extend(gone.into_iter().map(Action::Unsubscribe));
        let heir = if keep {
            Some(scope)
        } else {
            self.inst.scopes.get(&scope).and_then(|s| s.parent)
        };
        let mut passed = Vec::new();
        for s in &doomed {
            if keep && *s == scope {
                continue;
            }
            if let Some(sc) = self.inst.scopes.get_mut(s) {
                passed.append(&mut sc.done);
            }
            if *s != 0 {
                self.inst.scopes.remove(s);
            }
        }
        if let Some(h) = heir.and_then(|h| self.inst.scopes.get_mut(&h)) {
            h.done.append(&mut passed);
            h.done.sort_by_key(|c| c.seq);
        }
    }

    /// Withdraws what an aborted activity waited for: its task, job, called
    /// instances (a spawned one lives on). Inner scopes are aborted by the caller.
    fn cancel_wait(&mut self, activity: u64, wait: &Wait) {
        match wait {
            Wait::Task => self.actions.push(Action::CloseTask {
                activity,
                state: Lifecycle::Aborted,
            }),
            Wait::Job => self.actions.push(Action::CancelJob { activity }),
            Wait::Call => self.actions.push(Action::CancelChildren { activity }),
            Wait::Scope { .. } | Wait::Multi { .. } | Wait::Compensate { .. } | Wait::Event => {}
        }
    }

    /// Removes a finished scope: its event subprocesses are withdrawn, and its
    /// activities awaiting compensation pass to the enclosing scope (unless the
    /// container has a compensation handler of its own, which then undoes it all).
    fn close_scope(&mut self, scope: u64) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.inst.subscriptions)
            .into_iter()
            .partition(
                |s| matches!(s.kind, SubscriptionKind::EventSubprocess { scope: x } if x == scope),
            );
        self.inst.subscriptions = kept;
        self.actions
            .extend(gone.into_iter().map(Action::Unsubscribe));
        let Some(mut sc) = self.inst.scopes.remove(&scope) else {
            return;
        };
        let own_handler = sc.run.is_none()
            && sc
                .node
                .as_deref()
                .and_then(|n| self.m.node(n))
                .and_then(Node::compensation)
                .is_some();
        if !own_handler && let Some(p) = sc.parent.and_then(|p| self.inst.scopes.get_mut(&p)) {
            // A compensation handler sees the data of its activity's scope as
            // it was when that scope completed (BPMN; Camunda 7 does the same):
            // the scope's variables go with each entry, under the entry's own
            // (an inner scope's value of the same name wins).
            for c in &mut sc.done {
                for (k, v) in &sc.vars {
                    c.vars.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            p.done.append(&mut sc.done);
            p.done.sort_by_key(|c| c.seq);
        }
    }

    fn token_index(&self, id: u64) -> Option<usize> {
        self.inst.tokens.iter().position(|t| t.id == id)
    }

    /// The index of the token an open incident holds at `activity`.
    fn faulted(&self, activity: u64) -> Result<usize, Error> {
        self.inst
            .tokens
            .iter()
            .position(
                |t| matches!(t.state, TokenState::Incident { activity: a, .. } if a == activity),
            )
            .ok_or(Error::NoIncident(activity))
    }

    /// Sets submitted variables in the token's scope, refusing the command when one
    /// does not fit its declared type.
    fn set_vars_or_refuse(&mut self, i: usize, variables: Vars) -> Result<(), Error> {
        let scope = self.inst.tokens[i].scope;
        let problems: Vec<String> = variables
            .into_iter()
            .filter_map(|(k, v)| self.set_var(scope, k, v).err())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Variables(problems))
        }
    }

    /// Runs a failed step again: the token enters its node anew.
    fn retry(&mut self, i: usize, a: u64, retries: Option<u32>, actor: Option<String>) {
        let node = self.inst.tokens[i].node.clone();
        self.history(a, &node, Lifecycle::Aborted, actor.as_deref());
        self.retries = retries;
        self.inst.tokens[i].state = TokenState::Arriving;
    }

    /// The correlation key: `key` evaluated in the token's scope, else the business key.
    fn message_trigger(
        &self,
        scope: u64,
        name: &str,
        key: Option<&raw::Expr>,
    ) -> Result<Trigger, String> {
        let key = match key {
            None => self.inst.business_key.clone(),
            Some(k) => {
                let vars = self.inst.visible_vars(scope);
                key_text(
                    Evaluator::new(self.m.process, &vars)
                        .eval(&k.0)
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        Ok(Trigger::Message {
            name: name.to_owned(),
            key,
        })
    }

    fn timer_trigger(&self, scope: u64, t: &raw::TimerDef) -> Result<Trigger, String> {
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        Ok(Trigger::Timer {
            due: self.due(t, &ev)?,
        })
    }

    /// When a timer started now fires: a date, a duration (ISO 8601, or business
    /// days on a working calendar), or a cron cycle's next occurrence.
    fn due(&self, t: &raw::TimerDef, ev: &Evaluator) -> Result<DateTime<Utc>, String> {
        next_due(
            t,
            self.now,
            &self.m.process.def,
            self.m.calendars,
            &|e: &str| ev.eval(e).map_err(|e| e.to_string()),
        )
    }

    /// The token waits at an event node for the first of `subs`.
    fn wait_for(
        &mut self,
        i: usize,
        a: u64,
        node: &str,
        subs: Vec<(SubscriptionKind, Result<Trigger, String>)>,
    ) {
        let mut ready = Vec::with_capacity(subs.len());
        for (kind, trigger) in subs {
            match trigger {
                Ok(t) => ready.push((kind, t)),
                Err(e) => return self.incident(i, a, e),
            }
        }
        self.inst.tokens[i].state = TokenState::Waiting {
            activity: a,
            wait: Wait::Event,
        };
        let token = self.inst.tokens[i].id;
        for (kind, trigger) in ready {
            self.subscribe(token, node, kind, trigger);
        }
    }

    fn subscribe(&mut self, token: u64, node: &str, kind: SubscriptionKind, trigger: Trigger) {
        let sub = Subscription {
            id: self.id(),
            token,
            node: node.to_owned(),
            kind,
            trigger,
        };
        self.inst.subscriptions.push(sub.clone());
        self.actions.push(Action::Subscribe(sub));
    }

    /// Subscribes the timer, message and signal boundary events of the activity the
    /// token has just entered.
    fn arm_boundaries(&mut self, i: usize, node_id: &str, node: &Node) {
        if !matches!(self.inst.tokens[i].state, TokenState::Waiting { .. }) || self.is_run(i) {
            return; // a multi-instance activity's boundary events are on its container
        }
        let scope = self.inst.tokens[i].scope;
        let token = self.inst.tokens[i].id;
        for (index, b) in node.boundary().iter().enumerate() {
            let trigger = if let Some(t) = &b.timer {
                self.timer_trigger(scope, t)
            } else if let Some(m) = &b.message {
                self.message_trigger(scope, m, b.key.as_ref())
            } else if let Some(sig) = &b.signal {
                Ok(Trigger::Signal { name: sig.clone() })
            } else {
                continue; // errors and escalations are matched when raised
            };
            match trigger {
                Ok(t) => self.subscribe(token, node_id, SubscriptionKind::Boundary { index }, t),
                Err(e) => {
                    let bid = boundary_id(node_id, index, b);
                    let a = self.interrupt(token, None);
                    if let Some(i) = self.token_index(token) {
                        let a = a.unwrap_or(0);
                        self.incident(i, a, format!("boundary event `{bid}`: {e}"));
                    }
                    return;
                }
            }
        }
    }

    /// Drops every subscription of a token.
    fn disarm(&mut self, token: u64) {
        if self.inst.subscriptions.iter().all(|s| s.token != token) {
            return;
        }
        let (gone, kept) = std::mem::take(&mut self.inst.subscriptions)
            .into_iter()
            .partition(|s| s.token == token);
        self.inst.subscriptions = kept;
        let gone: Vec<Subscription> = gone;
        self.actions
            .extend(gone.into_iter().map(Action::Unsubscribe));
    }

    fn drop_subscription(&mut self, id: u64) {
        if let Some(k) = self.inst.subscriptions.iter().position(|s| s.id == id) {
            let sub = self.inst.subscriptions.remove(k);
            self.actions.push(Action::Unsubscribe(sub));
        }
    }

    /// Cancels the activity a token waits in (its task, job, event or inner scope);
    /// the token stays, ready to be moved. Returns the aborted activity.
    fn interrupt(&mut self, token: u64, actor: Option<&str>) -> Option<u64> {
        self.disarm(token);
        let i = self.token_index(token)?;
        let TokenState::Waiting { activity, wait } = self.inst.tokens[i].state.clone() else {
            return None;
        };
        self.cancel_wait(activity, &wait);
        match wait {
            Wait::Scope { inner, .. } | Wait::Compensate { inner, .. } => {
                self.abort_scope_tree(inner, actor, false);
            }
            Wait::Multi { runs, .. } => {
                for run in runs {
                    self.abort_scope_tree(run, actor, false);
                }
            }
            Wait::Task | Wait::Job | Wait::Call | Wait::Event => {}
        }
        let node = self.inst.tokens[i].node.clone();
        self.history(activity, &node, Lifecycle::Aborting, actor);
        self.history(activity, &node, Lifecycle::Aborted, actor);
        if let Some(i) = self.token_index(token) {
            self.inst.tokens[i].state = TokenState::Arriving;
        }
        Some(activity)
    }

    /// Writes a message's or signal's variables: through `out` (expressions over
    /// `message`) when given, else each variable as it is.
    fn write_payload(&mut self, scope: u64, out: &raw::Mapping, vars: Vars) -> Result<(), String> {
        if out.is_empty() {
            for (k, v) in vars {
                self.set_var(scope, k, v)?;
            }
            return Ok(());
        }
        let mut visible = self.inst.visible_vars(scope);
        visible.insert("message".into(), Value::Object(vars));
        let ev = Evaluator::new(self.m.process, &visible);
        for (k, v) in out {
            let v = ev.value(v).map_err(|e| e.to_string())?;
            self.set_var(scope, k.clone(), v)?;
        }
        Ok(())
    }

    /// A subscription fired.
    fn fire(&mut self, sub: &Subscription, vars: Vars) {
        if let SubscriptionKind::EventSubprocess { scope } = sub.kind {
            let Some(Node::EventSubprocess(es)) = self.m.node(&sub.node) else {
                return;
            };
            if let Trigger::Timer { .. } = sub.trigger {
                self.drop_subscription(sub.id);
                if !es.interrupting
                    && let Some(t) = es.timer.as_ref().filter(|t| t.cycle.is_some())
                    && let Ok(trigger) = self.timer_trigger(scope, t)
                {
                    let kind = SubscriptionKind::EventSubprocess { scope };
                    self.subscribe(0, &sub.node, kind, trigger);
                }
            }
            return self.start_event_subprocess(scope, &sub.node, es, es.interrupting, vars);
        }
        let Some(i) = self.token_index(sub.token) else {
            return;
        };
        let scope = self.inst.tokens[i].scope;
        let node = self.m.node(&sub.node);
        match sub.kind {
            SubscriptionKind::Catch => {
                let TokenState::Waiting { activity: a, .. } = self.inst.tokens[i].state else {
                    return;
                };
                self.disarm(sub.token);
                let empty = raw::Mapping::new();
                let out = match node {
                    Some(Node::Receive(r)) => &r.out,
                    Some(Node::Catch(c)) => &c.out,
                    _ => &empty,
                };
                if let Err(e) = self.write_payload(scope, out, vars) {
                    return self.incident(i, a, e);
                }
                self.complete(i, a, None);
            }
            SubscriptionKind::Gateway { index } => {
                let TokenState::Waiting { activity: a, .. } = self.inst.tokens[i].state else {
                    return;
                };
                let Some(Node::Event(g)) = node else { return };
                let Some(e) = g.events.get(index) else { return };
                self.disarm(sub.token);
                if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
                    return self.incident(i, a, e);
                }
                self.history(a, &sub.node, Lifecycle::Completing, None);
                self.history(a, &sub.node, Lifecycle::Completed, None);
                self.leave(i, std::slice::from_ref(&e.to));
            }
            SubscriptionKind::Boundary { index } => {
                let Some(b) = node.and_then(|n| n.boundary().get(index)) else {
                    return;
                };
                let bid = boundary_id(&sub.node, index, b);
                let ev = self.id();
                for state in [Lifecycle::Ready, Lifecycle::Active, Lifecycle::Completed] {
                    self.history(ev, &bid, state, None);
                }
                if b.interrupting {
                    self.interrupt(sub.token, None);
                    let Some(i) = self.token_index(sub.token) else {
                        return;
                    };
                    if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
                        return self.incident(i, ev, e);
                    }
                    self.leave(i, std::slice::from_ref(&b.to));
                    return;
                }
                if let Some(t) = &b.timer {
                    self.drop_subscription(sub.id);
                    if t.cycle.is_some() {
                        match self.timer_trigger(scope, t) {
                            Ok(trigger) => self.subscribe(
                                sub.token,
                                &sub.node,
                                SubscriptionKind::Boundary { index },
                                trigger,
                            ),
                            Err(e) => return self.incident(i, ev, e),
                        }
                    }
                }
                if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
                    return self.incident(i, ev, e);
                }
                self.spawn_token(&sub.node, scope, &b.to);
            }
            SubscriptionKind::EventSubprocess { .. } => {} // handled above
        }
    }

    /// A new token on a boundary path, beside the activity.
    fn spawn_token(&mut self, from: &str, scope: u64, to: &str) {
        let id = self.id();
        self.inst.tokens.push(Token {
            id,
            node: to.to_owned(),
            scope,
            from: Some(from.to_owned()),
            state: TokenState::Arriving,
        });
    }

    /// Sends a throw's or end's message and signal.
    fn send(
        &mut self,
        scope: u64,
        message: &Option<String>,
        key: Option<&raw::Expr>,
        payload: &raw::Mapping,
        signal: &Option<String>,
    ) -> Result<(), String> {
        if message.is_none() && signal.is_none() {
            return Ok(());
        }
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let variables = match ev
            .value(&Value::Object(payload.clone().into_iter().collect()))
            .map_err(|e| e.to_string())?
        {
            Value::Object(m) => m,
            _ => Vars::new(),
        };
        if let Some(name) = message {
            let key = match key {
                None => self.inst.business_key.clone(),
                Some(k) => key_text(ev.eval(&k.0).map_err(|e| e.to_string())?),
            };
            self.actions.push(Action::SendMessage {
                name: name.clone(),
                key,
                variables: variables.clone(),
            });
        }
        if let Some(name) = signal {
            self.actions.push(Action::Broadcast {
                name: name.clone(),
                variables,
            });
        }
        Ok(())
    }

    /// Runs a throw or end event at token `i`: first the compensation it asks for
    /// (unless `compensated`: already done), then the message and signal it sends,
    /// the error or escalation it raises; an end event then ends its path (or, with
    /// `terminate`, its scope or the instance), a throw goes on.
    fn throw_or_end(&mut self, i: usize, a: u64, compensated: bool) {
        let node_id = self.inst.tokens[i].node.clone();
        let scope = self.inst.tokens[i].scope;
        let (r, end) = match self.m.node(&node_id) {
            Some(Node::Throw(t)) => (
                Raises {
                    message: &t.message,
                    key: t.key.as_ref(),
                    payload: &t.payload,
                    signal: &t.signal,
                    error: &t.error,
                    escalation: &t.escalation,
                },
                None,
            ),
            Some(Node::End(e)) => (
                Raises {
                    message: &e.message,
                    key: e.key.as_ref(),
                    payload: &e.payload,
                    signal: &e.signal,
                    error: &e.error,
                    escalation: &e.escalation,
                },
                Some(e),
            ),
            _ => return,
        };
        let compensate = match self.m.node(&node_id) {
            Some(Node::Throw(t)) => t.compensate.as_deref(),
            Some(Node::End(e)) => e.compensate.as_deref(),
            _ => None,
        };
        if !compensated
            && let Some(target) = compensate
            && self.start_compensation(i, a, target)
        {
            return; // the token waits for the handlers, then comes back here
        }
        let Some(i) = self.throw(i, a, &node_id, r) else {
            return; // an error, or an interrupting escalation boundary, took the path
        };
        let Some(e) = end else {
            return self.complete(i, a, None);
        };
        self.history(a, &node_id, Lifecycle::Completing, None);
        self.history(a, &node_id, Lifecycle::Completed, None);
        self.inst.tokens.remove(i);
        if e.terminate {
            if scope == 0 {
                self.abort_scope_tree(0, None, false);
                self.end_instance(InstanceStatus::Terminated);
                return;
            }
            self.abort_scope_tree(scope, None, false);
        }
        self.scope_maybe_done(scope);
    }

    /// Sends and raises what a throw or end event carries. Returns the token's index
    /// when its path goes on (nothing critical was raised, no boundary took it).
    fn throw(&mut self, i: usize, a: u64, node_id: &str, r: Raises) -> Option<usize> {
        let scope = self.inst.tokens[i].scope;
        if let Err(e) = self.send(scope, r.message, r.key, r.payload, r.signal) {
            self.incident(i, a, e);
            return None;
        }
        let id = self.inst.tokens[i].id;
        if let Some(code) = r.error {
            self.history(a, node_id, Lifecycle::Completed, None);
            let detail = String::new();
            self.raise(id, a, code, Raised::Error { detail }, false, true);
            return None;
        }
        if let Some(code) = r.escalation {
            self.raise(id, a, code, Raised::Escalation, false, true);
        }
        self.token_index(id)
    }

    /// Raises an error or escalation from a token. The nearest catcher takes it:
    /// a boundary event on the token's own activity when `on_self` (a job's business
    /// error, a called instance's error), then, scope by scope outward, an event
    /// subprocess of the scope and a boundary event on the scope's container.
    /// Returns whether something caught it. Uncaught, when `report` is set, an
    /// error is an incident and both go on to the caller of a called instance.
    fn raise(
        &mut self,
        token: u64,
        a: u64,
        code: &str,
        raised: Raised,
        on_self: bool,
        report: bool,
    ) -> bool {
        let critical = matches!(raised, Raised::Error { .. });
        let Some(i) = self.token_index(token) else {
            return false;
        };
        if on_self && !self.is_run(i) && self.catch_on_boundary(i, code, critical) {
            return true;
        }
        let mut scope = self.inst.tokens[i].scope;
        // An event subprocess does not catch what its own body raises.
        let mut skip_event_subprocesses = false;
        loop {
            if !skip_event_subprocesses && self.catch_in_event_subprocess(scope, code, critical) {
                return true;
            }
            if scope == 0 {
                break;
            }
            let Some(host) = self.container_of(scope) else {
                break;
            };
            skip_event_subprocesses = matches!(
                self.m.node(&self.inst.tokens[host].node),
                Some(Node::EventSubprocess(_))
            );
            // One run of a multi-instance activity: its boundary events are the
            // activity's, and the activity waits one level up (catching there
            // cancels every run and leaves in the scope around the activity).
            if !self.is_run(host) && self.catch_on_boundary(host, code, critical) {
                return true;
            }
            scope = self.inst.tokens[host].scope;
        }
        if !report {
            return false;
        }
        let detail = match &raised {
            Raised::Error { detail } if !detail.is_empty() => format!(": {detail}"),
            _ => String::new(),
        };
        if self.inst.parent.as_ref().is_some_and(|p| p.waits) {
            self.actions.push(Action::RaiseInCaller {
                code: code.to_owned(),
                error: critical,
                message: detail.trim_start_matches(": ").to_owned(),
            });
        }
        if critical && let Some(i) = self.token_index(token) {
            self.incident(
                i,
                a,
                format!("error `{code}` was not caught by any boundary event{detail}"),
            );
        }
        false
    }

    /// A boundary event on the activity token `h` is in that catches `code` takes
    /// the error (interrupting) or escalation.
    fn catch_on_boundary(&mut self, h: usize, code: &str, critical: bool) -> bool {
        let node_id = self.inst.tokens[h].node.clone();
        let found = self.m.node(&node_id).and_then(|n| {
            n.boundary().iter().enumerate().find(|(_, b)| {
                let catches = if critical { &b.error } else { &b.escalation };
                catches.as_deref().is_some_and(|c| c == code || c == "*")
            })
        });
        let Some((index, b)) = found else {
            return false;
        };
        let host_id = self.inst.tokens[h].id;
        let host_scope = self.inst.tokens[h].scope;
        let bid = boundary_id(&node_id, index, b);
        let ev = self.id();
        for state in [Lifecycle::Ready, Lifecycle::Active, Lifecycle::Completed] {
            self.history(ev, &bid, state, None);
        }
        if critical || b.interrupting {
            self.interrupt(host_id, None);
            if let Some(h) = self.token_index(host_id) {
                self.leave(h, std::slice::from_ref(&b.to));
            }
        } else {
            self.spawn_token(&node_id, host_scope, &b.to);
        }
        true
    }

    /// An error or escalation event subprocess of `scope` that catches `code` starts.
    fn catch_in_event_subprocess(&mut self, scope: u64, code: &str, critical: bool) -> bool {
        let Some(nodes) = self.scope_nodes(scope) else {
            return false;
        };
        let found = nodes.iter().find_map(|(id, n)| match n {
            Node::EventSubprocess(es) => {
                let catches = if critical { &es.error } else { &es.escalation };
                catches
                    .as_deref()
                    .is_some_and(|c| c == code || c == "*")
                    .then_some((id, es))
            }
            _ => None,
        });
        let Some((id, es)) = found else {
            return false;
        };
        self.start_event_subprocess(scope, id, es, critical || es.interrupting, Vars::new());
        true
    }

    /// Whether token `i` is one run of a multi-instance activity: it sits at the
    /// activity, in one of the activity's run scopes.
    fn is_run(&self, i: usize) -> bool {
        let t = &self.inst.tokens[i];
        self.inst
            .scopes
            .get(&t.scope)
            .is_some_and(|s| s.run.is_some() && s.node.as_deref() == Some(t.node.as_str()))
    }

    /// The token that waits for `scope` to finish: a subprocess, loop or event
    /// subprocess; a multi-instance activity (a run scope); a compensating throw.
    fn container_of(&self, scope: u64) -> Option<usize> {
        self.inst.tokens.iter().position(|t| match &t.state {
            TokenState::Waiting {
                wait: Wait::Scope { inner, .. } | Wait::Compensate { inner, .. },
                ..
            } => *inner == scope,
            TokenState::Waiting {
                wait: Wait::Multi { runs, .. },
                ..
            } => runs.contains(&scope),
            _ => false,
        })
    }

    /// The nodes declared in `scope` (none for a run or compensation scope).
    fn scope_nodes(&self, scope: u64) -> Option<&'p indexmap::IndexMap<String, Node>> {
        let sc = self.inst.scopes.get(&scope)?;
        if sc.run.is_some() {
            return None;
        }
        match &sc.node {
            None => Some(&self.m.process.def.nodes),
            Some(n) => self.m.node(n)?.scope().map(|(_, nodes)| nodes),
        }
    }

    /// Whether a process or subprocess around `scope` (it included) declares `name`.
    fn declared_above(&self, mut scope: Option<u64>, name: &str) -> bool {
        while let Some(s) = scope {
            let Some(sc) = self.inst.scopes.get(&s) else {
                return false;
            };
            let declared = match &sc.node {
                None => self.m.process.def.variables.contains_key(name),
                Some(_) if sc.run.is_some() => false,
                Some(n) => {
                    matches!(self.m.node(n), Some(Node::Subprocess(sp)) if sp.variables.contains_key(name))
                }
            };
            if declared {
                return true;
            }
            scope = sc.parent;
        }
        false
    }

    /// Subscribes the message, timer and signal triggers of the event subprocesses
    /// declared in `scope`, which has just opened.
    fn arm_event_subprocesses(&mut self, scope: u64) -> Result<(), String> {
        let Some(nodes) = self.scope_nodes(scope) else {
            return Ok(());
        };
        for (id, n) in nodes {
            let Node::EventSubprocess(es) = n else {
                continue;
            };
            let trigger = if let Some(m) = &es.message {
                self.message_trigger(scope, m, es.key.as_ref())
            } else if let Some(t) = &es.timer {
                self.timer_trigger(scope, t)
            } else if let Some(sig) = &es.signal {
                Ok(Trigger::Signal { name: sig.clone() })
            } else {
                continue; // errors and escalations are matched when raised
            };
            let trigger = trigger.map_err(|e| format!("event subprocess `{id}`: {e}"))?;
            self.subscribe(0, id, SubscriptionKind::EventSubprocess { scope }, trigger);
        }
        Ok(())
    }

    /// Starts event subprocess `id` in `scope`, first cancelling everything else in
    /// the scope when it interrupts.
    fn start_event_subprocess(
        &mut self,
        scope: u64,
        id: &str,
        es: &'p raw::EventSubprocess,
        interrupting: bool,
        vars: Vars,
    ) {
        if interrupting {
            self.abort_scope_tree(scope, None, true);
        }
        let token = self.id();
        self.inst.tokens.push(Token {
            id: token,
            node: id.to_owned(),
            scope,
            from: None,
            state: TokenState::Arriving,
        });
        let i = self.inst.tokens.len() - 1;
        let a = self.id();
        self.history(a, id, Lifecycle::Ready, None);
        self.history(a, id, Lifecycle::Active, None);
        if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
            return self.incident(i, a, e);
        }
        self.open_scope(i, a, &es.start, &indexmap::IndexMap::new(), 0);
    }

    /// Enters a multi-instance activity: evaluates its items, then opens one run
    /// (sequential) or every run (parallel), each in a scope of its own that holds
    /// the item and its index. Boundary events belong to the whole activity.
    fn enter_multi(&mut self, i: usize, node_id: &str, node: &'p Node, mi: &'p raw::MultiInstance) {
        let a = self.id();
        self.history(a, node_id, Lifecycle::Ready, None);
        self.history(a, node_id, Lifecycle::Active, None);
        let scope = self.inst.tokens[i].scope;
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let items = match (&mi.items, &mi.count) {
            (Some(e), _) => match ev.eval(&e.0) {
                Ok(Value::Array(v)) => Ok(v),
                Ok(Value::Null) => Ok(Vec::new()),
                Ok(other) => Err(format!("`items` gave {other}, not a list")),
                Err(e) => Err(e.to_string()),
            },
            (None, Some(e)) => match ev.eval(&e.0) {
                Ok(Value::Number(n)) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
                    Some(n) if n <= MAX_RUNS => Ok((0..n).map(Value::from).collect()),
                    _ => Err(format!(
                        "`count` gave {n}, not a count from 0 to {MAX_RUNS}"
                    )),
                },
                Ok(other) => Err(format!("`count` gave {other}, not a number")),
                Err(e) => Err(e.to_string()),
            },
            (None, None) => Err("`multi` needs `items` or `count`".to_owned()),
        };
        let items = match items {
            Ok(v) if v.len() <= MAX_RUNS => v,
            Ok(v) => {
                let n = v.len();
                return self.incident(
                    i,
                    a,
                    format!("{n} items; a multi-instance activity runs at most {MAX_RUNS}"),
                );
            }
            Err(e) => return self.incident(i, a, e),
        };
        let total = items.len();
        self.inst.tokens[i].state = TokenState::Waiting {
            activity: a,
            wait: Wait::Multi {
                runs: Vec::new(),
                items,
                next: 0,
                completed: 0,
                outputs: vec![Value::Null; total],
            },
        };
        self.arm_boundaries(i, node_id, node);
        let token = self.inst.tokens[i].id;
        if total == 0 {
            return self.finish_multi(token);
        }
        for _ in 0..if mi.parallel { total } else { 1 } {
            self.open_run(token);
        }
    }

    /// Opens the next run of the multi-instance activity that `token` waits in.
    fn open_run(&mut self, token: u64) {
        let Some(i) = self.token_index(token) else {
            return;
        };
        let node_id = self.inst.tokens[i].node.clone();
        let Some(mi) = self.m.node(&node_id).and_then(Node::multi) else {
            return;
        };
        let outer = self.inst.tokens[i].scope;
        let TokenState::Waiting {
            wait: Wait::Multi { items, next, .. },
            ..
        } = &self.inst.tokens[i].state
        else {
            return;
        };
        let k = *next;
        let Some(item) = items.get(k).cloned() else {
            return;
        };
        let run = self.id();
        let id = self.id();
        if let TokenState::Waiting {
            wait: Wait::Multi { runs, next, .. },
            ..
        } = &mut self.inst.tokens[i].state
        {
            runs.push(run);
            *next = k + 1;
        }
        let mut vars = Vars::new();
        vars.insert(mi.item_var.clone(), item);
        vars.insert(mi.index.clone(), Value::from(k));
        let mut sc = Scope::new(Some(node_id.clone()), Some(outer), vars);
        sc.run = Some(k);
        self.inst.scopes.insert(run, sc);
        self.inst.tokens.push(Token {
            id,
            node: node_id,
            scope: run,
            from: None,
            state: TokenState::Arriving,
        });
    }

    /// A run has finished: its output is kept in item order, and the activity
    /// completes when every run is done or its completion condition holds (the
    /// runs still open are then cancelled); a sequential activity opens the next.
    fn run_done(&mut self, run: u64) {
        let Some(c) = self.container_of(run) else {
            self.close_scope(run);
            return;
        };
        let token = self.inst.tokens[c].id;
        let node_id = self.inst.tokens[c].node.clone();
        let Some(mi) = self.m.node(&node_id).and_then(Node::multi) else {
            return;
        };
        let k = self.inst.scopes.get(&run).and_then(|s| s.run).unwrap_or(0);
        let output = match &mi.output {
            None => Ok(Value::Null),
            Some(e) => {
                let vars = self.inst.visible_vars(run);
                Evaluator::new(self.m.process, &vars)
                    .eval(&e.0)
                    .map_err(|e| format!("the `output` of run {k}: {e}"))
            }
        };
        let output = match output {
            Ok(v) => v,
            Err(e) => {
                // An incident on this run alone: the other runs go on, and a
                // retry (or a resolve with the missing variables) evaluates
                // this run's output again without redoing its work.
                let a = self.id();
                let id = self.id();
                self.inst.tokens.push(Token {
                    id,
                    node: node_id.clone(),
                    scope: run,
                    from: Some(RUN_OUTPUT.to_owned()),
                    state: TokenState::Arriving,
                });
                let i = self.inst.tokens.len() - 1;
                self.history(a, &node_id, Lifecycle::Ready, None);
                return self.incident(i, a, e);
            }
        };
        self.close_scope(run);
        let outer = self.inst.tokens[c].scope;
        let TokenState::Waiting {
            activity: a,
            wait:
                Wait::Multi {
                    runs,
                    items,
                    next,
                    completed,
                    outputs,
                },
        } = &mut self.inst.tokens[c].state
        else {
            return;
        };
        let a = *a;
        runs.retain(|r| *r != run);
        *completed += 1;
        if let Some(slot) = outputs.get_mut(k) {
            *slot = output;
        }
        let (open, total, started, done) = (runs.len(), items.len(), *next, *completed);
        let outputs = outputs.clone();
        let early = match &mi.completion {
            None => Ok(false),
            Some(e) => {
                let mut vars = self.inst.visible_vars(outer);
                vars.insert("completed".into(), Value::from(done));
                vars.insert("total".into(), Value::from(total));
                vars.insert("outputs".into(), Value::Array(outputs));
                Evaluator::new(self.m.process, &vars).condition(&e.0)
            }
        };
        match early {
            Err(e) => {
                self.interrupt(token, None);
                if let Some(c) = self.token_index(token) {
                    self.incident(c, a, format!("the `completion` condition: {e}"));
                }
            }
            Ok(true) => self.finish_multi(token),
            Ok(false) if open == 0 && started >= total => self.finish_multi(token),
            Ok(false) if open == 0 => self.open_run(token),
            Ok(false) => {}
        }
    }

    /// Completes a multi-instance activity: cancels its open runs, writes the
    /// outputs `into` their variable.
    fn finish_multi(&mut self, token: u64) {
        let Some(c) = self.token_index(token) else {
            return;
        };
        let TokenState::Waiting {
            activity: a,
            wait: Wait::Multi { runs, outputs, .. },
        } = self.inst.tokens[c].state.clone()
        else {
            return;
        };
        for run in runs {
            self.abort_scope_tree(run, None, false);
        }
        let Some(c) = self.token_index(token) else {
            return;
        };
        let node_id = self.inst.tokens[c].node.clone();
        let scope = self.inst.tokens[c].scope;
        if let Some(into) = self
            .m
            .node(&node_id)
            .and_then(Node::multi)
            .and_then(|m| m.into.clone())
            && let Err(e) = self.set_var(scope, into, Value::Array(outputs))
        {
            return self.incident(c, a, e);
        }
        self.complete(c, a, None);
    }

    /// Starts compensating, for the throw or end at token `i`, the completed
    /// activities of its scope (`all`, or those of one node), newest first. Returns
    /// false when there is nothing to compensate.
    fn start_compensation(&mut self, i: usize, a: u64, target: &str) -> bool {
        let mut scope = self.inst.tokens[i].scope;
        // From inside an event subprocess, compensation reaches the scope around it.
        if let Some(sc) = self.inst.scopes.get(&scope)
            && let Some(n) = &sc.node
            && matches!(self.m.node(n), Some(Node::EventSubprocess(_)))
            && let Some(p) = sc.parent
        {
            scope = p;
        }
        let Some(sc) = self.inst.scopes.get_mut(&scope) else {
            return false;
        };
        let (mut pending, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut sc.done)
            .into_iter()
            .partition(|c| target == "all" || c.node == target);
        sc.done = kept;
        if pending.is_empty() {
            return false;
        }
        pending.sort_by_key(|c| std::cmp::Reverse(c.seq));
        self.inst.tokens[i].state = TokenState::Waiting {
            activity: a,
            wait: Wait::Compensate { inner: 0, pending },
        };
        self.next_handler(i);
        true
    }

    /// Runs the next compensation handler for the throw at token `i`, or, when none
    /// is left, lets the throw or end go on.
    fn next_handler(&mut self, i: usize) {
        let TokenState::Waiting {
            activity: a,
            wait: Wait::Compensate { pending, .. },
        } = &mut self.inst.tokens[i].state
        else {
            return;
        };
        let a = *a;
        if pending.is_empty() {
            return self.throw_or_end(i, a, true);
        }
        let c = pending.remove(0);
        let inner = self.id();
        if let TokenState::Waiting {
            wait: Wait::Compensate { inner: slot, .. },
            ..
        } = &mut self.inst.tokens[i].state
        {
            *slot = inner;
        }
        let t = &self.inst.tokens[i];
        let sc = Scope::new(Some(t.node.clone()), Some(t.scope), c.vars);
        self.inst.scopes.insert(inner, sc);
        let id = self.id();
        self.inst.tokens.push(Token {
            id,
            node: c.handler,
            scope: inner,
            from: Some(c.node),
            state: TokenState::Arriving,
        });
    }

    /// The business key and variables of the instance a call or spawn starts.
    fn child_start(
        &self,
        scope: u64,
        business_key: &Option<Value>,
        input: &raw::Mapping,
    ) -> Result<(Option<String>, Vars), String> {
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let key = match business_key {
            None => None,
            Some(v) => key_text(ev.value(v).map_err(|e| format!("`business_key`: {e}"))?),
        };
        let variables = match ev
            .value(&Value::Object(input.clone().into_iter().collect()))
            .map_err(|e| format!("`in`: {e}"))?
        {
            Value::Object(m) => m,
            _ => Vars::new(),
        };
        Ok((key, variables))
    }

    /// Writes a call activity's `out` mappings, evaluated over the child's variables.
    fn write_call_outputs(&mut self, i: usize, child: Vars) -> Result<(), String> {
        let node = self.inst.tokens[i].node.clone();
        let Some(Node::Call(c)) = self.m.node(&node) else {
            return Ok(());
        };
        let scope = self.inst.tokens[i].scope;
        let ev = Evaluator::new(self.m.process, &child);
        for (k, v) in &c.out {
            let v = ev.value(v).map_err(|e| format!("`out` `{k}`: {e}"))?;
            self.set_var(scope, k.clone(), v)?;
        }
        Ok(())
    }

    fn end_instance(&mut self, status: InstanceStatus) {
        let subs = std::mem::take(&mut self.inst.subscriptions);
        self.actions
            .extend(subs.into_iter().map(Action::Unsubscribe));
        self.inst.status = status;
        self.inst.ended_at = Some(self.now);
        self.actions.push(Action::Ended { status });
    }
}

/// When a timer set at `now` fires: its `date`, `now` plus its `duration` (ISO 8601,
/// or business days on its working calendar), or the next occurrence of its `cycle`
/// after `now` in its time zone. `eval` evaluates `=expression` values.
pub fn next_due(
    t: &raw::TimerDef,
    now: DateTime<Utc>,
    def: &raw::ProcessDef,
    calendars: &Calendars,
    eval: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<DateTime<Utc>, String> {
    let resolve = |s: &str| -> Result<String, String> {
        match ordo_model::expr::as_expression(s) {
            Some((e, _)) => match eval(e)? {
                Value::String(s) => Ok(s),
                other => Err(format!("a timer expression gave {other}, not text")),
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
    if let Some(c) = &t.cycle {
        let schedule = timer::parse_cron(c).map_err(|e| e.message)?;
        let tz = match &t.timezone {
            Some(z) => timer::parse_timezone(z).map_err(|e| e.message)?,
            None => chrono_tz::UTC,
        };
        return schedule
            .after(&now.with_timezone(&tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("the cycle `{c}` has no occurrence after {now}"));
    }
    let text = resolve(t.duration.as_deref().unwrap_or("PT0S"))?;
    match timer::parse_duration(&text).map_err(|e| e.message)? {
        timer::Duration::Iso(d) => Ok(add_iso(now, &d)),
        timer::Duration::BusinessDays(n) => {
            let name = t
                .calendar
                .as_deref()
                .or(def.calendar.as_deref())
                .unwrap_or("default");
            let cal = calendars
                .get(name)
                .ok_or_else(|| format!("there is no working calendar `{name}` in this engine"))?;
            cal.add_business_days(now, n).ok_or_else(|| {
                format!("calendar `{name}` has no {n} working days within ten years")
            })
        }
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
