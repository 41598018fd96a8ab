//! Scenario fixtures: one file per case under `tests/scenarios/`, each a
//! process and a script of what happens to one instance (start, complete a
//! task, a job's outcome, a message, a signal, the clock moving, an admin's
//! retry or resolve), with an insta snapshot of the instance after every step:
//! its status, tokens by scope, open tasks and jobs, incidents, variables and
//! the history the step wrote. A new case is a new file, not new Rust; review
//! changes with `cargo insta review` (or `INSTA_UPDATE=always`).
//!
//! Steps (each a one-key map):
//! - `start: {vars…}`
//! - `complete: NODE` or `complete: {node, where: {var: value}, nth, with: {…}, by}`:
//!   the open task at NODE (the first, or the `nth`, or the one whose scope
//!   sees `where`), completed with `with` by `by`
//! - `job: NODE | {node, where, nth, result}`: the job at NODE completes
//! - `job_error: {node, where, nth, code}`: it raises a business error
//! - `job_fails: {node, where, nth, message}`: it fails for good (an incident)
//! - `message: {name, key, with}` / `signal: {name, with}`: to the instance's
//!   oldest matching subscription (a message) or all of them (a signal)
//! - `advance: ISO-8601 duration`: the clock moves; due timers fire, soonest first
//! - `retry: {node, where, nth, with, retries}` / `resolve: {…}`: an admin on
//!   an incident (`retries`: a service task's fresh retries)
//! - `add_runs: {node, where, nth, items: [...]}`: runs added to the running
//!   multi-instance activity at NODE, one per item
//! - `cancel: {}`
//! - `child_ended: {node, where, nth, child, status, with}`: the instance a call
//!   at NODE waits for has ended (`status` completed by default; `with` its
//!   variables; `child` its id)
//! - `child_raised: {node, where, nth, code, escalation}`: it raised an error
//!   (or, with `escalation: true`, an escalation) it did not catch
//!
//! A later `start` begins a fresh instance: one file can show a process with
//! several starting variables.
//!
//! A step the machine refuses is recorded as refused, with its error, and the
//! instance stays as it was.
//!
//! Any step may also carry `expect:` (beside its verb), checked after the step;
//! a difference fails naming the file and the step, with the expectation's
//! `why`. So the snapshot shows what happened, and `expect` pins down what
//! must. Each key is optional:
//! - `refused: TEXT`: the step was refused with this error (or found `nothing
//!   there to address`, or `no subscriber`); a refused step without it fails
//! - `status: active | completed | terminated | cancelled`
//! - `vars: {name: value}`: the process's variables; `unset: [name]`: not there
//! - `tokens: [..]`, `waits: [..]`: exactly these lines, as the snapshot shows
//!   them (any order)
//! - `scopes: N`: scopes open (the process's own counts)
//! - `completed: [..]`: the nodes the step completed, in order
//! - `lifecycle: {node: [..]}`: the states the step took the node's activities
//!   through, in order
//! - `incidents: [..]`: the messages of the incidents the step opened, in order
//! - `tasks: [{node, assignee, groups, priority, due}]` /
//!   `jobs: [{node, action, input, retries}]`: the tasks or jobs the step opened,
//!   in order (the fields given are compared)
//! - `effects: [..]`: everything the step asked of the world but history, in
//!   order, exactly: `open task at N`, `close task at N: completed|aborted`
//!   (N, for an activity that waited in a scope other than the process's own,
//!   `NODE in PATH`, PATH as in `tokens`),
//!   `run job at N: ACTION`, `cancel job at N`, `incident at N: MESSAGE`,
//!   `close incident at N: retried|resolved`, `subscribe WAIT`, `unsubscribe
//!   WAIT` (WAIT as in `waits`), `send message NAME [key K] VARS`, `broadcast
//!   NAME VARS`, `start child P [key K] VARS [and wait]`, `cancel children at N`,
//!   `raise in caller: error|escalation CODE`, `ended: STATUS`
//! - `last: LINE`: the step's last action, an effect or `history N: STATE`
//! - `why: …`: what the expectation shows

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a failure is the test failing

use chrono::{DateTime, TimeZone, Utc};
use ordo_model::{Options, Process};
use ordo_runtime::{
    Action, ActivityInstanceId, Command, Instance, Machine, ManualClock, ScopeId, Subscription,
    TokenState, Trigger, Vars, Wait,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Friday 2026-11-20 09:00 UTC: every case starts then.
fn friday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
        .single()
        .expect("a valid time")
}

struct Case {
    process: Process,
    clock: ManualClock,
    inst: Option<Instance>,
    out: String,
    /// What the current step did: its actions, and why it was refused.
    did: Vec<Action>,
    refused: Option<String>,
}

fn obj(v: Option<&Value>) -> Vars {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

impl Case {
    fn inst(&self) -> &Instance {
        self.inst.as_ref().expect("`start` comes first")
    }

    /// A scope as a path of containers: `body[1]/inner@12` (a multi-instance
    /// run by its index, any other scope by its id; the root is `/`).
    fn scope_path(&self, scope: ScopeId) -> String {
        path_in(self.inst(), scope)
    }

    /// The activity of the token at `node` the step addresses: waiting in
    /// `wait` (or in an incident when `wait` is None).
    fn pick(
        &self,
        spec: &Value,
        incident: bool,
        want: fn(&Wait) -> bool,
    ) -> Option<ActivityInstanceId> {
        let (node, filter, nth) = match spec {
            Value::String(n) => (n.clone(), Map::new(), 0),
            Value::Object(o) => (
                text(o.get("node")).expect("`node`"),
                obj(o.get("where")),
                o.get("nth").and_then(Value::as_u64).unwrap_or(0),
            ),
            other => panic!("a node or {{node, …}}, not {other}"),
        };
        let inst = self.inst();
        let mut found: Vec<(ActivityInstanceId, ScopeId)> = inst
            .tokens
            .iter()
            .filter(|t| t.node == node)
            .filter_map(|t| match &t.state {
                TokenState::Waiting { activity, wait } if !incident && want(wait) => {
                    Some((*activity, t.scope))
                }
                TokenState::Incident { activity, .. } if incident => Some((*activity, t.scope)),
                _ => None,
            })
            .filter(|(_, scope)| {
                let seen = inst.visible_vars(*scope);
                filter.iter().all(|(k, v)| seen.get(k) == Some(v))
            })
            .collect();
        found.sort_unstable();
        let nth = usize::try_from(nth).expect("a small nth");
        found.get(nth).map(|f| f.0)
    }

    /// The addressed activity, or a note in the snapshot that there is none.
    fn address(
        &mut self,
        what: &str,
        spec: &Value,
        incident: bool,
        want: fn(&Wait) -> bool,
    ) -> Option<ActivityInstanceId> {
        let found = self.pick(spec, incident, want);
        if found.is_none() {
            self.refused = Some("nothing there to address".into());
            let _ = writeln!(
                self.out,
                "## {what}
nothing there to address
"
            );
        }
        found
    }

    fn apply(&mut self, what: &str, cmd: Command) {
        let machine = Machine::new(&self.process).expect("supported");
        match machine.apply(self.inst(), cmd, &self.clock) {
            Ok((inst, actions)) => {
                self.inst = Some(inst);
                self.record(what, &actions);
                self.did.extend(actions);
            }
            Err(e) => {
                let _ = writeln!(self.out, "## {what}\nrefused: {e}\n");
                self.refused = Some(e.to_string());
            }
        }
    }

    fn trigger(&mut self, what: &str, sub: &Subscription, variables: Vars) {
        self.apply(
            what,
            Command::Trigger {
                subscription: sub.id,
                variables,
            },
        );
    }

    fn step(&mut self, n: usize, step: &Value) {
        let (verb, arg) = step
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| *k != "expect"))
            .unwrap_or_else(|| panic!("step {n}: a map of a verb (and `expect`), not {step}"));
        let what = format!("{n}. {verb} {}", compact(arg));
        let a = Some(arg);
        match verb.as_str() {
            "start" => {
                let machine = Machine::new(&self.process).expect("supported");
                match machine.start("i1".into(), 1, None, obj(a), &self.clock) {
                    Ok((inst, actions)) => {
                        self.inst = Some(inst);
                        self.record(&what, &actions);
                        self.did.extend(actions);
                    }
                    Err(e) => panic!("the case cannot start: {e}"),
                }
            }
            "complete" => {
                let Some(activity) = self.address(&what, arg, false, |w| matches!(w, Wait::Task))
                else {
                    return;
                };
                let cmd = Command::CompleteTask {
                    activity,
                    variables: obj(arg.get("with")),
                    actor: text(arg.get("by")),
                };
                self.apply(&what, cmd);
            }
            "job" => {
                let Some(activity) = self.address(&what, arg, false, |w| matches!(w, Wait::Job))
                else {
                    return;
                };
                let result = arg.get("result").cloned().unwrap_or(Value::Null);
                self.apply(&what, Command::CompleteJob { activity, result });
            }
            "job_error" => {
                let Some(activity) = self.address(&what, arg, false, |w| matches!(w, Wait::Job))
                else {
                    return;
                };
                let cmd = Command::JobError {
                    activity,
                    code: text(arg.get("code")).expect("`code`"),
                    message: String::new(),
                };
                self.apply(&what, cmd);
            }
            "job_fails" => {
                let Some(activity) = self.address(&what, arg, false, |w| matches!(w, Wait::Job))
                else {
                    return;
                };
                let message = text(arg.get("message")).unwrap_or_else(|| "failed".into());
                self.apply(&what, Command::FailJob { activity, message });
            }
            "retry" | "resolve" => {
                let Some(activity) = self.address(&what, arg, true, |_| false) else {
                    return;
                };
                let variables = obj(arg.get("with"));
                let cmd = if verb == "retry" {
                    let retries = arg.get("retries").and_then(Value::as_u64);
                    Command::Retry {
                        activity,
                        retries: retries.map(|r| u32::try_from(r).expect("a small number")),
                        variables,
                        actor: None,
                    }
                } else {
                    Command::Resolve {
                        activity,
                        variables,
                        actor: None,
                    }
                };
                self.apply(&what, cmd);
            }
            "message" => {
                let name = text(arg.get("name")).expect("`name`");
                let key = text(arg.get("key"));
                let sub = self
                    .inst()
                    .subscriptions
                    .iter()
                    .filter(|s| {
                        matches!(&s.trigger, Trigger::Message { name: n, key: k } if *n == name && *k == key)
                    })
                    .min_by_key(|s| s.id)
                    .cloned();
                match sub {
                    Some(s) => self.trigger(&what, &s, obj(arg.get("with"))),
                    None => {
                        let _ = writeln!(self.out, "## {what}\nno subscriber\n");
                        self.refused = Some("no subscriber".into());
                    }
                }
            }
            "signal" => {
                let name = text(arg.get("name")).expect("`name`");
                let subs: Vec<Subscription> = self
                    .inst()
                    .subscriptions
                    .iter()
                    .filter(|s| matches!(&s.trigger, Trigger::Signal { name: n } if *n == name))
                    .cloned()
                    .collect();
                if subs.is_empty() {
                    let _ = writeln!(self.out, "## {what}\nno subscriber\n");
                    self.refused = Some("no subscriber".into());
                }
                for s in subs {
                    // A signal fires every subscription that still waits.
                    if self.inst().subscriptions.iter().any(|x| x.id == s.id) {
                        self.trigger(&what, &s, obj(arg.get("with")));
                    }
                }
            }
            "advance" => {
                let by = arg.as_str().expect("an ISO 8601 duration");
                let d = parse_duration(by);
                self.clock.advance(d);
                let _ = writeln!(
                    self.out,
                    "## {what}\nnow {}\n",
                    ordo_runtime::Clock::now(&self.clock).to_rfc3339()
                );
                loop {
                    let now = ordo_runtime::Clock::now(&self.clock);
                    let due = self
                        .inst()
                        .subscriptions
                        .iter()
                        .filter_map(|s| match &s.trigger {
                            Trigger::Timer { due } if *due <= now => Some((*due, s.clone())),
                            _ => None,
                        })
                        .min_by_key(|(due, s)| (*due, s.id));
                    let Some((_, s)) = due else { break };
                    let label = format!("{n}. timer `{}` fires", s.node);
                    self.trigger(&label, &s, Vars::new());
                }
            }
            "add_runs" => {
                let running = |w: &Wait| {
                    matches!(
                        w,
                        Wait::Multi {
                            remainder: false,
                            ..
                        }
                    )
                };
                let Some(activity) = self.address(&what, arg, false, running) else {
                    return;
                };
                let items = match arg.get("items") {
                    Some(Value::Array(v)) => v.clone(),
                    _ => panic!("step {n}: `add_runs` needs `items: [...]`"),
                };
                self.apply(&what, Command::AddRuns { activity, items });
            }
            "cancel" => self.apply(&what, Command::Cancel { actor: None }),
            "child_ended" => {
                let Some(activity) = self.address(&what, arg, false, |w| matches!(w, Wait::Call))
                else {
                    return;
                };
                let status = arg.get("status").cloned().unwrap_or("completed".into());
                let cmd = Command::ChildEnded {
                    activity,
                    child: text(arg.get("child")).unwrap_or_else(|| "child".into()),
                    status: serde_json::from_value(status).expect("an instance status"),
                    variables: obj(arg.get("with")),
                };
                self.apply(&what, cmd);
            }
            "child_raised" => {
                let Some(activity) = self.address(&what, arg, false, |w| matches!(w, Wait::Call))
                else {
                    return;
                };
                let cmd = Command::ChildRaised {
                    activity,
                    code: text(arg.get("code")).expect("`code`"),
                    error: !arg
                        .get("escalation")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                };
                self.apply(&what, cmd);
            }
            other => panic!("step {n}: unknown step `{other}`"),
        }
    }

    /// The tokens as the snapshot shows them, sorted.
    fn token_lines(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .inst()
            .tokens
            .iter()
            .map(|t| {
                let state = match &t.state {
                    TokenState::Arriving => "arriving".to_owned(),
                    TokenState::Joining => {
                        format!("joining from {}", t.from.as_deref().unwrap_or("?"))
                    }
                    TokenState::Waiting { activity, wait } => {
                        format!("waits #{activity} ({})", wait_name(wait))
                    }
                    TokenState::Incident { activity, message } => {
                        format!("incident #{activity}: {message}")
                    }
                };
                format!("{} at {}: {state}", self.scope_path(t.scope), t.node)
            })
            .collect();
        tokens.sort();
        tokens
    }

    /// What the instance looks like after a step, and what the step did.
    fn record(&mut self, what: &str, actions: &[Action]) {
        let inst = self.inst().clone();
        let mut s = format!("## {what}\nstatus: {:?}\n", inst.status);
        s.push_str("tokens:\n");
        for t in self.token_lines() {
            let _ = writeln!(s, "  {t}");
        }
        let mut subs: Vec<String> = inst.subscriptions.iter().map(wait_line).collect();
        subs.sort();
        if !subs.is_empty() {
            s.push_str("waits for:\n");
            for x in subs {
                let _ = writeln!(s, "  {x}");
            }
        }
        let vars = inst.variables();
        if !vars.is_empty() {
            let _ = writeln!(s, "variables: {}", compact(&Value::Object(vars.clone())));
        }
        let mut history = Vec::new();
        let mut last: Option<(ActivityInstanceId, String, Vec<String>)> = None;
        for a in actions {
            if let Action::History(h) = a {
                let state = format!("{:?}", h.state).to_lowercase();
                match &mut last {
                    Some((act, _, states)) if *act == h.activity => states.push(state),
                    _ => {
                        if let Some((_, node, states)) = last.take() {
                            history.push(format!("{node}:{}", states.join(",")));
                        }
                        last = Some((h.activity, h.node.clone(), vec![state]));
                    }
                }
            }
        }
        if let Some((_, node, states)) = last {
            history.push(format!("{node}:{}", states.join(",")));
        }
        if !history.is_empty() {
            let _ = writeln!(s, "history: {}", history.join(" "));
        }
        let others: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Incident { node, message, .. } => {
                    Some(format!("incident at {node}: {message}"))
                }
                Action::RunJob(j) => Some(format!(
                    "job at {}: {} {}",
                    j.node,
                    j.action,
                    compact(&j.input)
                )),
                Action::CreateTask(t) => t
                    .assignee
                    .as_ref()
                    .map(|who| format!("task at {} for {who}", t.node)),
                Action::SendMessage { .. } | Action::Broadcast { .. } => Some(format!("{a:?}")),
                Action::StartChild { process, .. } => Some(format!("start child {process}")),
                Action::Ended { .. } => Some("ended".to_owned()),
                _ => None,
            })
            .collect();
        for o in others {
            let _ = writeln!(s, "- {o}");
        }
        s.push('\n');
        self.out.push_str(&s);
    }
}

/// [`Case::scope_path`] in a given instance.
fn path_in(inst: &Instance, mut scope: ScopeId) -> String {
    let mut parts = Vec::new();
    while let Some(sc) = inst.scopes.get(&scope) {
        match (&sc.node, sc.run) {
            (Some(n), Some(k)) => parts.push(format!("{n}[{k}]")),
            // Two runs of an event subprocess share a node: the scope's id
            // tells them apart.
            (Some(n), None) => parts.push(format!("{n}@{scope}")),
            (None, _) => {}
        }
        match sc.parent {
            Some(p) => scope = p,
            None => break,
        }
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

/// A subscription as the snapshot's `waits for` shows it.
fn wait_line(sub: &Subscription) -> String {
    match &sub.trigger {
        Trigger::Message { name, key } => format!(
            "message {name}{} at {}",
            key.as_deref()
                .map(|k| format!(" key {k}"))
                .unwrap_or_default(),
            sub.node
        ),
        Trigger::Signal { name } => format!("signal {name} at {}", sub.node),
        Trigger::Timer { due } => format!("timer {} at {}", due.to_rfc3339(), sub.node),
    }
}

fn wait_name(w: &Wait) -> String {
    match w {
        Wait::Task => "task".into(),
        Wait::Job => "job".into(),
        Wait::Event => "event".into(),
        Wait::Call => "call".into(),
        Wait::Multi {
            runs,
            remainder: true,
            ..
        } => format!("{} runs left to finish unobserved", runs.len()),
        Wait::Multi {
            runs, completed, ..
        } => format!("{} runs open, {completed} done", runs.len()),
        Wait::Compensate { pending, .. } => format!("compensating, {} to go", pending.len()),
        Wait::Scope { .. } => "its scope".into(),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// `PT1H`, `P2D`, `PT30M`, `PT10S`: enough for scripts.
fn parse_duration(s: &str) -> chrono::Duration {
    let (days, time) = s
        .strip_prefix('P')
        .expect("an ISO 8601 duration")
        .split_once('T')
        .unwrap_or((s.trim_start_matches('P'), ""));
    let mut total = chrono::Duration::zero();
    let mut num = String::new();
    for c in days.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else if c == 'D' {
            total += chrono::Duration::days(num.parse().expect("days"));
            num.clear();
        }
    }
    for c in time.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: i64 = num.parse().expect("a number");
            num.clear();
            total += match c {
                'H' => chrono::Duration::hours(n),
                'M' => chrono::Duration::minutes(n),
                'S' => chrono::Duration::seconds(n),
                other => panic!("unit {other}"),
            };
        }
    }
    total
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the scenarios are there");
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let case: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let source = case["process"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: `process`"));
        let loaded = ordo_model::load(&format!("{name}.yaml"), source, &Options::default());
        let process = loaded.process.unwrap_or_else(|| {
            panic!(
                "{name}: the process does not load: {:?}",
                loaded.diagnostics
            )
        });
        let mut c = Case {
            process,
            clock: ManualClock::new(friday()),
            inst: None,
            out: String::new(),
            did: Vec::new(),
            refused: None,
        };
        let script = case["script"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{name}: `script` is a list of steps"));
        for (i, step) in script.iter().enumerate() {
            let before = c.inst.clone();
            c.did.clear();
            c.refused = None;
            c.step(i + 1, step);
            if let Some(want) = step.get("expect") {
                let want: Expect = serde_json::from_value(want.clone())
                    .unwrap_or_else(|e| panic!("{name}, step {}: `expect`: {e}", i + 1));
                let verb = step
                    .as_object()
                    .and_then(|o| o.keys().find(|k| *k != "expect"))
                    .cloned()
                    .unwrap_or_default();
                c.check(
                    &format!("{name}.yaml, step {} ({verb})", i + 1),
                    &want,
                    before.as_ref(),
                );
            }
        }
        insta::with_settings!({ snapshot_path => "scenarios/snapshots", prepend_module_to_snapshot => false, description => case["about"].as_str().unwrap_or_default() }, {
            insta::assert_snapshot!(name, c.out);
        });
    }
}

// `expect`: what a step must have done (see the header).

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    refused: Option<String>,
    status: Option<String>,
    vars: Option<Map<String, Value>>,
    unset: Option<Vec<String>>,
    tokens: Option<Vec<String>>,
    waits: Option<Vec<String>>,
    scopes: Option<usize>,
    completed: Option<Vec<String>>,
    lifecycle: Option<BTreeMap<String, Vec<String>>>,
    incidents: Option<Vec<String>>,
    tasks: Option<Vec<TaskExpect>>,
    jobs: Option<Vec<JobExpect>>,
    effects: Option<Vec<String>>,
    last: Option<String>,
    why: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskExpect {
    node: String,
    assignee: Option<String>,
    groups: Option<Vec<String>>,
    priority: Option<i64>,
    /// RFC 3339, as `2026-11-24T09:00:00+00:00`.
    due: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobExpect {
    node: String,
    action: Option<String>,
    input: Option<Value>,
    retries: Option<u32>,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn lower(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}").to_lowercase()
}

/// An action as `effects` and `last` name it; `nodes` knows the node of each
/// activity instance the step touched.
fn effect_line(a: &Action, nodes: &BTreeMap<ActivityInstanceId, String>) -> String {
    let at = |activity: &ActivityInstanceId| {
        nodes
            .get(activity)
            .cloned()
            .unwrap_or_else(|| format!("#{activity}"))
    };
    let vars = |v: &Vars| compact(&Value::Object(v.clone()));
    match a {
        Action::History(h) => format!("history {}: {}", h.node, lower(&h.state)),
        Action::CreateTask(t) => format!("open task at {}", t.node),
        Action::CloseTask { activity, state } => {
            format!("close task at {}: {}", at(activity), lower(state))
        }
        Action::RunJob(j) => format!("run job at {}: {}", j.node, j.action),
        Action::CancelJob { activity } => format!("cancel job at {}", at(activity)),
        Action::Incident { node, message, .. } => format!("incident at {node}: {message}"),
        Action::CloseIncident { activity, how, .. } => {
            format!("close incident at {}: {how}", at(activity))
        }
        Action::Subscribe(sub) => format!("subscribe {}", wait_line(sub)),
        Action::Unsubscribe(sub) => format!("unsubscribe {}", wait_line(sub)),
        Action::SendMessage {
            name,
            key,
            variables,
        } => format!(
            "send message {name}{} {}",
            key.as_deref()
                .map(|k| format!(" key {k}"))
                .unwrap_or_default(),
            vars(variables)
        ),
        Action::Broadcast { name, variables } => format!("broadcast {name} {}", vars(variables)),
        Action::StartChild {
            process,
            business_key,
            variables,
            waits,
            ..
        } => format!(
            "start child {process}{} {}{}",
            business_key
                .as_deref()
                .map(|k| format!(" key {k}"))
                .unwrap_or_default(),
            vars(variables),
            if *waits { " and wait" } else { "" }
        ),
        Action::CancelChildren { activity } => format!("cancel children at {}", at(activity)),
        Action::RaiseInCaller { code, error, .. } => format!(
            "raise in caller: {} {code}",
            if *error { "error" } else { "escalation" }
        ),
        Action::Ended { status } => format!("ended: {}", lower(status)),
    }
}

impl Case {
    /// Checks a step's `expect`; `before` is the instance before the step.
    fn check(&self, at: &str, want: &Expect, before: Option<&Instance>) {
        let why = want
            .why
            .as_deref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        match (&self.refused, &want.refused) {
            (None, None) => {}
            (Some(got), Some(w)) => assert_eq!(got, w, "{at}: the refusal{why}"),
            (Some(got), None) => panic!("{at}: the step was refused: {got}{why}"),
            (None, Some(w)) => panic!("{at}: the step was not refused (expected: {w}){why}"),
        }
        let inst = self.inst();
        if let Some(status) = &want.status {
            assert_eq!(&lower(&inst.status), status, "{at}: the status{why}");
        }
        let vars = inst.variables();
        for (name, value) in want.vars.iter().flatten() {
            assert_eq!(vars.get(name), Some(value), "{at}: variable `{name}`{why}");
        }
        for name in want.unset.iter().flatten() {
            assert_eq!(
                vars.get(name),
                None,
                "{at}: variable `{name}` is not set{why}"
            );
        }
        if let Some(tokens) = &want.tokens {
            assert_eq!(
                self.token_lines(),
                sorted(tokens.clone()),
                "{at}: the tokens{why}"
            );
        }
        if let Some(waits) = &want.waits {
            let got = sorted(inst.subscriptions.iter().map(wait_line).collect());
            assert_eq!(
                got,
                sorted(waits.clone()),
                "{at}: what the instance waits for{why}"
            );
        }
        if let Some(n) = want.scopes {
            assert_eq!(inst.scopes.len(), n, "{at}: the scopes open{why}");
        }
        let history = || {
            self.did.iter().filter_map(|a| match a {
                Action::History(h) => Some(h),
                _ => None,
            })
        };
        if let Some(done) = &want.completed {
            let got: Vec<&str> = history()
                .filter(|h| h.state == ordo_runtime::Lifecycle::Completed)
                .map(|h| h.node.as_str())
                .collect();
            assert_eq!(&got, done, "{at}: the nodes completed{why}");
        }
        for (node, states) in want.lifecycle.iter().flatten() {
            let got: Vec<String> = history()
                .filter(|h| h.node == *node)
                .map(|h| lower(&h.state))
                .collect();
            assert_eq!(&got, states, "{at}: the lifecycle of `{node}`{why}");
        }
        if let Some(incidents) = &want.incidents {
            let got: Vec<&str> = self
                .did
                .iter()
                .filter_map(|a| match a {
                    Action::Incident { message, .. } => Some(message.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(&got, incidents, "{at}: the incidents opened{why}");
        }
        if let Some(tasks) = &want.tasks {
            let got: Vec<_> = self
                .did
                .iter()
                .filter_map(|a| match a {
                    Action::CreateTask(t) => Some(t),
                    _ => None,
                })
                .collect();
            let nodes: Vec<&str> = got.iter().map(|t| t.node.as_str()).collect();
            let wanted: Vec<&str> = tasks.iter().map(|t| t.node.as_str()).collect();
            assert_eq!(nodes, wanted, "{at}: the tasks opened{why}");
            for (t, w) in got.iter().zip(tasks) {
                let node = &w.node;
                if let Some(a) = &w.assignee {
                    assert_eq!(
                        t.assignee.as_ref(),
                        Some(a),
                        "{at}: task `{node}`'s assignee{why}"
                    );
                }
                if let Some(g) = &w.groups {
                    assert_eq!(&t.candidate_groups, g, "{at}: task `{node}`'s groups{why}");
                }
                if let Some(p) = w.priority {
                    assert_eq!(t.priority, p, "{at}: task `{node}`'s priority{why}");
                }
                if let Some(d) = &w.due {
                    let due = t.due.map(|d| d.to_rfc3339());
                    assert_eq!(due.as_ref(), Some(d), "{at}: task `{node}`'s due date{why}");
                }
            }
        }
        if let Some(jobs) = &want.jobs {
            let got: Vec<_> = self
                .did
                .iter()
                .filter_map(|a| match a {
                    Action::RunJob(j) => Some(j),
                    _ => None,
                })
                .collect();
            let nodes: Vec<&str> = got.iter().map(|j| j.node.as_str()).collect();
            let wanted: Vec<&str> = jobs.iter().map(|j| j.node.as_str()).collect();
            assert_eq!(nodes, wanted, "{at}: the jobs to run{why}");
            for (j, w) in got.iter().zip(jobs) {
                let node = &w.node;
                if let Some(a) = &w.action {
                    assert_eq!(&j.action, a, "{at}: job `{node}`'s action{why}");
                }
                if let Some(i) = &w.input {
                    assert_eq!(&j.input, i, "{at}: job `{node}`'s input{why}");
                }
                if let Some(r) = w.retries {
                    assert_eq!(j.retries, r, "{at}: job `{node}`'s retries{why}");
                }
            }
        }
        if want.effects.is_some() || want.last.is_some() {
            // Each activity instance the step touched, by its node: from the
            // step's history, or, for one that waited before the step, with the
            // scope it waited in when that is not the process's own.
            let mut nodes = BTreeMap::new();
            for h in history() {
                nodes.insert(h.activity, h.node.clone());
            }
            if let Some(b) = before {
                for t in &b.tokens {
                    if let TokenState::Waiting { activity, .. }
                    | TokenState::Incident { activity, .. } = &t.state
                    {
                        let path = path_in(b, t.scope);
                        let label = if path == "/" {
                            t.node.clone()
                        } else {
                            format!("{} in {path}", t.node)
                        };
                        nodes.insert(*activity, label);
                    }
                }
            }
            if let Some(effects) = &want.effects {
                let got: Vec<String> = self
                    .did
                    .iter()
                    .filter(|a| !matches!(a, Action::History(_)))
                    .map(|a| effect_line(a, &nodes))
                    .collect();
                assert_eq!(&got, effects, "{at}: the effects{why}");
            }
            if let Some(last) = &want.last {
                let got = self.did.last().map(|a| effect_line(a, &nodes));
                assert_eq!(got.as_ref(), Some(last), "{at}: the last action{why}");
            }
        }
    }
}
