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

mod calls;
mod compensation;
mod due;
mod events;
mod gateways;
mod milestones;
mod multi;
mod raising;
mod scopes;
mod stepping;

pub use due::{add_iso, next_due};

/// Largest serialized size of an instance's variables.
pub const MAX_VARIABLES_BYTES: usize = 1024 * 1024;
/// Most automatic steps one command may take before the instance is stopped with an
/// incident (an endless loop of automatic steps).
pub const MAX_STEPS: usize = 10_000;
/// Automatic steps each multi-instance run opened in a command adds to that
/// command's allowance: fanning out to many runs is not a loop.
pub const STEPS_PER_RUN: usize = 100;
/// Default guard of a `loop` node.
pub const DEFAULT_MAX_ITERATIONS: u32 = 1000;
/// Most runs of one multi-instance activity.
pub const MAX_RUNS: usize = 10_000;
/// Most bytes one item of a run added to a running multi-instance activity may
/// take (as JSON).
pub const MAX_ITEM_BYTES: usize = 64 * 1024;

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
    #[error("the instance is {0}, not active")]
    NotActive(InstanceStatus),
    /// No waiting activity has this id.
    #[error("activity {0} is not waiting in this instance")]
    UnknownActivity(ActivityInstanceId),
    /// The activity waits for something else.
    #[error("activity {activity} is a {actual}, not a {expected}")]
    WrongActivity {
        /// The activity.
        activity: ActivityInstanceId,
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
    /// The machine tried a lifecycle move its table does not allow (a bug in
    /// the machine): the command is refused and nothing is stored.
    #[error(
        "activity {activity} (`{node}`) cannot go from {from} to {to:?}; the command was refused (this is a bug in Ordo: please report it with the process)"
    )]
    InvalidTransition {
        /// The activity instance.
        activity: ActivityInstanceId,
        /// Its node.
        node: String,
        /// The state it was in (`none` before it started).
        from: String,
        /// The state asked for.
        to: Lifecycle,
    },
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
    UnknownSubscription(SubscriptionId),
    /// No incident holds this activity.
    #[error("activity {0} has no open incident")]
    NoIncident(ActivityInstanceId),
    /// Adding runs would pass the limit of runs of one multi-instance activity.
    #[error(
        "activity {activity} would have {asked} runs; a multi-instance activity runs at most {MAX_RUNS}"
    )]
    TooManyRuns {
        /// The activity.
        activity: ActivityInstanceId,
        /// How many runs it would have.
        asked: usize,
    },
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
        activity: ActivityInstanceId,
        /// The submitted values.
        variables: Vars,
        /// Who.
        actor: Option<String>,
    },
    /// A job (service call) finished.
    CompleteJob {
        /// The job's activity instance.
        activity: ActivityInstanceId,
        /// What the action returned.
        result: Value,
    },
    /// A job failed for good (its retries are spent): an incident.
    FailJob {
        /// The job's activity instance.
        activity: ActivityInstanceId,
        /// Why.
        message: String,
    },
    /// A job raised a business error (BPML fault): it goes to a boundary `error`
    /// event on the service task or an enclosing activity, or becomes an incident.
    JobError {
        /// The job's activity instance.
        activity: ActivityInstanceId,
        /// The error code.
        code: String,
        /// Details, kept with the incident when nothing catches it.
        message: String,
    },
    /// A message, timer or signal the instance waits for has come.
    Trigger {
        /// The subscription's id.
        subscription: SubscriptionId,
        /// The message's or signal's variables (empty for a timer).
        variables: Vars,
    },
    /// An admin runs a failed step again, after setting `variables`: a service task's
    /// job with `retries` fresh retries; any other node is entered again.
    Retry {
        /// The activity the incident holds.
        activity: ActivityInstanceId,
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
        activity: ActivityInstanceId,
        /// Variables to set (what the step would have produced).
        variables: Vars,
        /// Who.
        actor: Option<String>,
    },
    /// Adds runs to a multi-instance activity while it runs, one per item
    /// (workflow patterns 15 and 36; Flowable's `addMultiInstanceExecution`).
    AddRuns {
        /// The multi-instance activity instance.
        activity: ActivityInstanceId,
        /// The new runs' items.
        items: Vec<Value>,
    },
    /// Cancel the instance.
    Cancel {
        /// Who.
        actor: Option<String>,
    },
    /// The instance a spawn activity asked for has started: the spawn completes.
    ChildStarted {
        /// The spawn activity instance.
        activity: ActivityInstanceId,
    },
    /// The instance a call activity waits for has ended: on completion the call
    /// completes, writing its `out` mappings (over the child's variables); a
    /// cancelled child leaves an incident on the call.
    ChildEnded {
        /// The call activity instance.
        activity: ActivityInstanceId,
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
        activity: ActivityInstanceId,
        /// The code.
        code: String,
        /// An error (true) or an escalation.
        error: bool,
    },
    /// A call or spawn could not start its instance: an incident on the activity.
    CallFailed {
        /// The call or spawn activity instance.
        activity: ActivityInstanceId,
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
            scopes: [(ScopeId::ROOT, Scope::new(None, None, variables))].into(),
            tokens: vec![Token {
                id: TokenId(1),
                node: start.next.clone(),
                scope: ScopeId::ROOT,
                from: Some(start.id.clone()),
                state: TokenState::Arriving,
            }],
            parent,
            subscriptions: Vec::new(),
            sections: Default::default(),
            next_id: 2,
            started_at: now,
            ended_at: None,
        };
        let mut step = Step::new(self, &mut inst, now);
        step.history(
            ActivityInstanceId::START,
            &start.id,
            Lifecycle::Completed,
            None,
        );
        // An event subprocess whose key or timer cannot be computed from the start
        // variables refuses the start, as a missing required variable does.
        step.arm_event_subprocesses(ScopeId::ROOT)
            .map_err(|e| Error::Variables(vec![e]))?;
        step.run();
        if let Some(e) = step.invalid {
            return Err(e);
        }
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
                let i = step.take_incident(activity, variables, "retried", &actor)?;
                step.retry(i, activity, retries, actor);
            }
            Command::Resolve {
                activity,
                variables,
                actor,
            } => {
                let i = step.take_incident(activity, variables, "resolved", &actor)?;
                if step.only_output_left(i) {
                    // A run's output, given by hand: the run is done once (its
                    // activity already completed; completing it again would
                    // record its compensation twice).
                    let (run, node) = (step.inst.tokens[i].scope, step.inst.tokens[i].node.clone());
                    step.history(activity, &node, Lifecycle::Completing, actor.as_deref());
                    step.history(activity, &node, Lifecycle::Completed, actor.as_deref());
                    step.inst.tokens.remove(i);
                    step.run_done(run);
                } else {
                    let i = step.take_round(i);
                    step.complete(i, activity, actor);
                }
            }
            Command::AddRuns { activity, items } => step.add_runs(activity, items)?,
            Command::Cancel { actor } => {
                step.abort_scope_tree(ScopeId::ROOT, actor.as_deref(), false);
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
        .map(|s| json_len(&s.vars))
        .chain(inst.tokens.iter().map(|t| match &t.state {
            // The items a multi-instance activity holds (those added while it
            // runs included) and what its runs gave back are the instance's
            // data too.
            TokenState::Waiting {
                wait: Wait::Multi { items, outputs, .. },
                ..
            } => json_len(items) + json_len(outputs),
            _ => 0,
        }))
        .sum();
    if size > MAX_VARIABLES_BYTES {
        return Err(Error::TooLarge { size });
    }
    Ok(())
}

/// A value's size as JSON.
fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |v| v.len())
}

/// One command's worth of work on an instance.
struct Step<'m, 'p> {
    m: &'m Machine<'p>,
    inst: &'m mut Instance,
    now: DateTime<Utc>,
    actions: Vec<Action>,
    /// Retries an admin gave to the job of a retried service task.
    retries: Option<u32>,
    /// Where each activity moved in this command stands (see `lifecycle`).
    lifecycle: std::collections::HashMap<ActivityInstanceId, Lifecycle>,
    /// The first move the table refused, if any.
    invalid: Option<Error>,
    /// Ids from here on were made by this command: such an activity has no
    /// state from before it.
    first_new: u64,
    /// Automatic steps this command may take before its flow counts as a
    /// loop: `MAX_STEPS`, plus `STEPS_PER_RUN` for each run it opened.
    budget: usize,
    /// A token entered some activity's milestone since the tokens waiting
    /// for one were last looked at.
    milestone_reached: bool,
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
            first_new: inst.next_id,
            m,
            inst,
            now,
            actions: Vec::new(),
            retries: None,
            lifecycle: std::collections::HashMap::new(),
            invalid: None,
            budget: MAX_STEPS,
            milestone_reached: false,
        }
    }

    fn finish(self) -> Result<(Instance, Vec<Action>), Error> {
        if let Some(e) = self.invalid {
            return Err(e);
        }
        self.inst.version += 1;
        check_size(self.inst)?;
        Ok((self.inst.clone(), self.actions))
    }

    /// A new activity instance's id, from the instance's sequence.
    fn activity_id(&mut self) -> ActivityInstanceId {
        ActivityInstanceId(self.id())
    }

    fn id(&mut self) -> u64 {
        let id = self.inst.next_id;
        self.inst.next_id += 1;
        id
    }

    /// The one place lifecycle moves are made: checked against the table in
    /// `lifecycle`, and emitted as history.
    fn history(
        &mut self,
        activity: ActivityInstanceId,
        node: &str,
        state: Lifecycle,
        actor: Option<&str>,
    ) {
        let from = self.lifecycle.get(&activity).copied().or_else(|| {
            if activity.0 >= self.first_new {
                return None; // made by this command: not started before it
            }
            // Not moved yet in this command: what its token says.
            self.inst.tokens.iter().find_map(|t| match &t.state {
                TokenState::Waiting { activity: a, .. } if *a == activity => {
                    Some(Lifecycle::Active)
                }
                TokenState::Incident { activity: a, .. } if *a == activity => {
                    Some(Lifecycle::Faulted)
                }
                _ => None,
            })
        });
        if !crate::lifecycle::allowed(from, state) && self.invalid.is_none() {
            self.invalid = Some(Error::InvalidTransition {
                activity,
                node: node.to_owned(),
                from: from.map_or_else(|| "none".to_owned(), |f| format!("{f:?}").to_lowercase()),
                to: state,
            });
        }
        self.lifecycle.insert(activity, state);
        self.actions.push(Action::History(HistoryEntry {
            activity,
            node: node.to_owned(),
            state,
            at: self.now,
            actor: actor.map(str::to_owned),
        }));
    }

    /// The index of the token waiting in `activity`, whatever it waits for.
    fn waiting_index(&self, activity: ActivityInstanceId) -> Result<usize, Error> {
        self.inst
            .tokens
            .iter()
            .position(
                |t| matches!(t.state, TokenState::Waiting { activity: a, .. } if a == activity),
            )
            .ok_or(Error::UnknownActivity(activity))
    }

    /// The index of the token waiting in `activity`, checking what it waits for.
    fn waiting(
        &self,
        activity: ActivityInstanceId,
        expected: &'static str,
    ) -> Result<usize, Error> {
        let i = self.waiting_index(activity)?;
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
    fn set_var(&mut self, scope: ScopeId, name: String, value: Value) -> Result<(), String> {
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
        scope: ScopeId,
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

    fn token_index(&self, id: TokenId) -> Option<usize> {
        self.inst.tokens.iter().position(|t| t.id == id)
    }

    /// The index of the token an open incident holds at `activity`.
    fn faulted(&self, activity: ActivityInstanceId) -> Result<usize, Error> {
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

    /// An admin takes the incident at `activity`: the variables they give are
    /// set in its token's scope and the incident is closed as `how`. Returns
    /// the token's index.
    fn take_incident(
        &mut self,
        activity: ActivityInstanceId,
        variables: Vars,
        how: &str,
        actor: &Option<String>,
    ) -> Result<usize, Error> {
        let i = self.faulted(activity)?;
        self.set_vars_or_refuse(i, variables)?;
        self.actions.push(Action::CloseIncident {
            activity,
            how: how.to_owned(),
            actor: actor.clone(),
        });
        Ok(i)
    }

    /// Whether token `i` is a multi-instance run whose work is done and only
    /// its `output` is left to evaluate (after an incident on it).
    fn only_output_left(&self, i: usize) -> bool {
        self.inst.tokens[i].from.as_deref() == Some(RUN_OUTPUT) && self.is_run(i)
    }

    /// Runs a failed step again: the token enters its node anew.
    fn retry(
        &mut self,
        i: usize,
        a: ActivityInstanceId,
        retries: Option<u32>,
        actor: Option<String>,
    ) {
        let node = self.inst.tokens[i].node.clone();
        self.history(a, &node, Lifecycle::Aborted, actor.as_deref());
        self.retries = retries;
        self.inst.tokens[i].state = TokenState::Arriving;
    }

    fn end_instance(&mut self, status: InstanceStatus) {
        let subs = std::mem::take(&mut self.inst.subscriptions);
        self.actions
            .extend(subs.into_iter().map(Action::Unsubscribe));
        self.inst.status = status;
        self.inst.ended_at = Some(self.now);
        self.inst.sections.clear();
        self.actions.push(Action::Ended { status });
    }
}
