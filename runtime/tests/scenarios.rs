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
//! - `retry: {node, where, nth, with}` / `resolve: {…}`: an admin on an incident
//! - `add_runs: {node, where, nth, items: [...]}`: runs added to the running
//!   multi-instance activity at NODE, one per item
//! - `cancel: {}`
//!
//! A step the machine refuses is recorded as refused, with its error, and the
//! instance stays as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a failure is the test failing

use chrono::{DateTime, TimeZone, Utc};
use ordo_model::{Options, Process};
use ordo_runtime::{
    Action, ActivityInstanceId, Command, Instance, Machine, ManualClock, ScopeId, Subscription,
    TokenState, Trigger, Vars, Wait,
};
use serde_json::{Map, Value};
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
    fn scope_path(&self, mut scope: ScopeId) -> String {
        let inst = self.inst();
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
            }
            Err(e) => {
                let _ = writeln!(self.out, "## {what}\nrefused: {e}\n");
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
            .and_then(|o| o.iter().next())
            .unwrap_or_else(|| panic!("step {n}: a one-key map, not {step}"));
        let what = format!("{n}. {verb} {}", compact(arg));
        let a = Some(arg);
        match verb.as_str() {
            "start" => {
                let machine = Machine::new(&self.process).expect("supported");
                match machine.start("i1".into(), 1, None, obj(a), &self.clock) {
                    Ok((inst, actions)) => {
                        self.inst = Some(inst);
                        self.record(&what, &actions);
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
                    Command::Retry {
                        activity,
                        retries: None,
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
            other => panic!("step {n}: unknown step `{other}`"),
        }
    }

    /// What the instance looks like after a step, and what the step did.
    fn record(&mut self, what: &str, actions: &[Action]) {
        let inst = self.inst().clone();
        let mut s = format!("## {what}\nstatus: {:?}\n", inst.status);
        let mut tokens: Vec<String> = inst
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
                format!("  {} at {}: {state}", self.scope_path(t.scope), t.node)
            })
            .collect();
        tokens.sort();
        s.push_str("tokens:\n");
        for t in tokens {
            s.push_str(&t);
            s.push('\n');
        }
        let mut subs: Vec<String> = inst
            .subscriptions
            .iter()
            .map(|sub| match &sub.trigger {
                Trigger::Message { name, key } => format!(
                    "  message {name}{} at {}",
                    key.as_deref()
                        .map(|k| format!(" key {k}"))
                        .unwrap_or_default(),
                    sub.node
                ),
                Trigger::Signal { name } => format!("  signal {name} at {}", sub.node),
                Trigger::Timer { due } => format!("  timer {} at {}", due.to_rfc3339(), sub.node),
            })
            .collect();
        subs.sort();
        if !subs.is_empty() {
            s.push_str("waits for:\n");
            for x in subs {
                s.push_str(&x);
                s.push('\n');
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
        };
        let script = case["script"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{name}: `script` is a list of steps"));
        for (i, step) in script.iter().enumerate() {
            c.step(i + 1, step);
        }
        insta::with_settings!({ snapshot_path => "scenarios/snapshots", prepend_module_to_snapshot => false, description => case["about"].as_str().unwrap_or_default() }, {
            insta::assert_snapshot!(name, c.out);
        });
    }
}
