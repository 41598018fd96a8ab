//! The workflow control-flow patterns (Russell, ter Hofstede, van der Aalst and
//! Mulyar, 2006) as data: one file per supported pattern,
//! `patterns/wcp-NN-short-name.yaml`, run here on the durable engine with a
//! manual clock. `docs/patterns.md` lists all 43;
//! `the_patterns_document_matches_the_files` checks that it marks a pattern
//! "yes" exactly when its file exists. A new case is a new file, not new Rust.
//!
//! A file has `about:` (the pattern's definition and what the case shows),
//! `processes:` (definitions deployed in order; the last is the one started),
//! and either `start:` (the instance's variables) and `script:` (its steps), or
//! `cases:`, a list of `{name, start, script}` when the pattern needs several
//! instances to show; each case runs on an engine of its own.
//!
//! A step is a map with one verb and, optionally, `expect`:
//! - `complete: NODE` or `complete: {node, with: {…}}`: the oldest open task at
//!   NODE (of the instance or its children) completed by `u`, with `with`
//! - `message: {name, key, with}`: correlated (or buffered when nobody waits)
//! - `signal: NAME` or `signal: {name, with}`: broadcast
//! - `advance: ISO-8601 duration` (`P3D`, `PT1H`): the clock moves, then the
//!   due timers fire
//! - `cancel: ACTOR`: the instance is cancelled by ACTOR
//! - `add_runs: {node, items: [..]}`: a run per item added to the running
//!   multi-instance activity at NODE
//! - no verb, only `expect`: a check, e.g. of the instance right after its start
//!
//! `expect` is checked after the step; a difference fails the test naming the
//! file, the case and the step, with the expectation's `why`:
//! - `open: [..]`: the open tasks by node, sorted (the instance's and its
//!   children's)
//! - `done: [..]`: the instance's activities in the order they completed
//! - `status: active | completed | terminated | cancelled`
//! - `vars: {name: value}`: the instance's variables (one not there is null)
//! - `fired: N`: how many timers the step's `advance` fired
//! - `why: …`: what the check shows
//!
//! Every file also has an insta snapshot, `patterns/snapshots/<file>.snap`, of
//! the open tasks, the completion order, the status and the variables after
//! every step: a behaviour change shows as a diff there too (review with
//! `cargo insta review`, or `INSTA_UPDATE=always`).
//!
//! Conventions: activities have upper-case ids (`A`, `B1`) and are user tasks
//! assigned to `u`, so the script can drive them; gateways and events are lower
//! case and do not appear in the completion order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a failure is the test failing

use chrono::{Duration, TimeZone, Utc};
use ordo_engine::engine::{Config, Engine, Message};
use ordo_engine::runtime::{InstanceStatus, ManualClock, TokenState, Vars, Wait};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    about: String,
    processes: Vec<String>,
    #[serde(default)]
    start: Vars,
    #[serde(default)]
    script: Vec<Step>,
    #[serde(default)]
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    #[serde(default)]
    start: Vars,
    script: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    complete: Option<Target>,
    message: Option<MessageSpec>,
    signal: Option<SignalSpec>,
    advance: Option<String>,
    cancel: Option<String>,
    add_runs: Option<AddRuns>,
    expect: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRuns {
    node: String,
    items: Vec<Value>,
}

impl Step {
    /// How many things the step does (one, or none for a check).
    fn verbs(&self) -> usize {
        [
            self.complete.is_some(),
            self.message.is_some(),
            self.signal.is_some(),
            self.advance.is_some(),
            self.cancel.is_some(),
            self.add_runs.is_some(),
        ]
        .iter()
        .filter(|v| **v)
        .count()
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Target {
    Node(String),
    With(TargetWith),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetWith {
    node: String,
    #[serde(default)]
    with: Vars,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageSpec {
    name: String,
    key: Option<String>,
    #[serde(default)]
    with: Vars,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SignalSpec {
    Name(String),
    With(SignalWith),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalWith {
    name: String,
    #[serde(default)]
    with: Vars,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    open: Option<Vec<String>>,
    done: Option<Vec<String>>,
    status: Option<InstanceStatus>,
    vars: Option<Vars>,
    fired: Option<usize>,
    why: Option<String>,
}

/// One instance on an engine of its own.
struct Run {
    e: Engine,
    id: String,
    clock: Arc<ManualClock>,
    /// `file` or `file, case name`: where a failure is.
    place: String,
    out: String,
    _dir: tempfile::TempDir,
}

fn is_activity(node: &str) -> bool {
    node.starts_with(|c: char| c.is_ascii_uppercase())
        && node
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn compact(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `PT1H`, `P3D`, `PT30M`, `PT10S`: enough for scripts.
fn parse_duration(s: &str) -> Duration {
    let rest = s
        .strip_prefix('P')
        .unwrap_or_else(|| panic!("`{s}`: an ISO 8601 duration"));
    let (days, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total = Duration::zero();
    let mut num = String::new();
    for (part, in_time) in [(days, false), (time, true)] {
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num
                .parse()
                .unwrap_or_else(|_| panic!("`{s}`: a number before {c}"));
            num.clear();
            total += match (c, in_time) {
                ('D', false) => Duration::days(n),
                ('H', true) => Duration::hours(n),
                ('M', true) => Duration::minutes(n),
                ('S', true) => Duration::seconds(n),
                _ => panic!("`{s}`: unit {c} is not supported here"),
            };
        }
    }
    total
}

impl Run {
    /// Deploys the processes (the last one is the main) and starts the main one.
    async fn start(place: String, processes: &[String], vars: &Vars) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
        ));
        let mut c = Config::new(dir.path().join("ordo.db"));
        c.clock = Arc::clone(&clock) as _;
        c.sync = ordo_engine::store::Sync::Normal;
        let e = Engine::open(c).unwrap();
        let mut main = None;
        for (n, yaml) in processes.iter().enumerate() {
            let d = e
                .deploy(&format!("process{n}.yaml"), yaml)
                .await
                .unwrap_or_else(|err| panic!("{place}: process {n} does not deploy: {err}"));
            main = Some(d.process);
        }
        let main = main.unwrap_or_else(|| panic!("{place}: `processes` is empty"));
        let inst = e
            .start(&main, None, None, vars.clone())
            .await
            .unwrap_or_else(|err| panic!("{place}: `{main}` does not start: {err}"));
        let mut run = Run {
            e,
            id: inst.id,
            clock,
            place,
            out: String::new(),
            _dir: dir,
        };
        run.record(&format!("start {}", compact(vars)), None).await;
        run
    }

    /// Open tasks of this instance (and its children), by node, sorted.
    async fn open(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .e
            .tasks_of("u", 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.node)
            .collect();
        v.sort();
        v
    }

    /// Activities of the instance in the order they completed.
    async fn done(&self) -> Vec<String> {
        self.e
            .history(&self.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| h.state == "completed" && is_activity(&h.node))
            .map(|h| h.node)
            .collect()
    }

    async fn status_and_vars(&self) -> (InstanceStatus, Vars) {
        let inst = self.e.instance(&self.id).await.unwrap();
        (inst.status, inst.variables().clone())
    }

    /// Completes the oldest open task at `node`.
    async fn complete(&self, at: &str, node: &str, with: &Vars) {
        let t = self
            .e
            .tasks_of("u", 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.node == node)
            .min_by_key(|t| (t.instance_id.clone(), t.activity))
            .unwrap_or_else(|| panic!("{at}: no open task at `{node}`"));
        self.e
            .complete_task(&t.instance_id, t.activity, with.clone(), None, None)
            .await
            .unwrap_or_else(|err| panic!("{at}: `{node}` does not complete: {err}"));
    }

    /// Does the step; returns what it reports (a message's fate, timers fired).
    async fn act(&self, at: &str, step: &Step) -> (Option<String>, Option<usize>) {
        match step.verbs() {
            0 if step.expect.is_some() => return (None, None),
            1 => {}
            _ => panic!("{at}: a step has one verb (and perhaps `expect`)"),
        }
        if let Some(t) = &step.complete {
            let (node, with) = match t {
                Target::Node(n) => (n.as_str(), &Vars::new()),
                Target::With(t) => (t.node.as_str(), &t.with),
            };
            self.complete(at, node, with).await;
            return (None, None);
        }
        if let Some(r) = &step.add_runs {
            let inst = self.e.instance(&self.id).await.unwrap();
            let activity = inst
                .tokens
                .iter()
                .filter(|t| t.node == r.node)
                .find_map(|t| match &t.state {
                    TokenState::Waiting {
                        activity,
                        wait:
                            Wait::Multi {
                                remainder: false, ..
                            },
                    } => Some(activity.0),
                    _ => None,
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{at}: `{}` is not a running multi-instance activity",
                        r.node
                    )
                });
            self.e
                .add_runs(&self.id, activity, r.items.clone())
                .await
                .unwrap_or_else(|err| panic!("{at}: {err}"));
            return (None, None);
        }
        if let Some(m) = &step.message {
            let msg = Message {
                name: m.name.clone(),
                key: m.key.clone(),
                variables: m.with.clone(),
                ..Message::default()
            };
            let got = self
                .e
                .correlate(msg)
                .await
                .unwrap_or_else(|err| panic!("{at}: {err}"));
            return (Some(compact(&got)), None);
        }
        if let Some(s) = &step.signal {
            let (name, with) = match s {
                SignalSpec::Name(n) => (n.as_str(), Vars::new()),
                SignalSpec::With(s) => (s.name.as_str(), s.with.clone()),
            };
            let got = self
                .e
                .signal(name, with)
                .await
                .unwrap_or_else(|err| panic!("{at}: {err}"));
            return (Some(format!("delivered to {}", got.delivered)), None);
        }
        if let Some(d) = &step.advance {
            self.clock.advance(parse_duration(d));
            let got = self
                .e
                .fire_due_timers()
                .await
                .unwrap_or_else(|err| panic!("{at}: {err}"));
            let now = self.e.now().to_rfc3339();
            return (
                Some(format!("now {now}; timers fired: {}", got.fired)),
                Some(got.fired),
            );
        }
        if let Some(actor) = &step.cancel {
            self.e
                .cancel(&self.id, Some(actor.clone()))
                .await
                .unwrap_or_else(|err| panic!("{at}: {err}"));
        }
        (None, None)
    }

    /// The instance after a step, in the snapshot.
    async fn record(&mut self, what: &str, report: Option<&str>) {
        let (status, vars) = self.status_and_vars().await;
        let mut s = format!("## {what}\n");
        if let Some(r) = report {
            let _ = writeln!(s, "{r}");
        }
        let _ = writeln!(s, "open: {}", self.open().await.join(" "));
        let _ = writeln!(s, "done: {}", self.done().await.join(" "));
        let _ = writeln!(s, "status: {}", compact(&status).trim_matches('"'));
        if !vars.is_empty() {
            let _ = writeln!(s, "variables: {}", compact(&vars));
        }
        s.push('\n');
        self.out.push_str(&s);
    }

    /// Checks the step's `expect`.
    async fn check(&self, at: &str, want: &Expect, fired: Option<usize>) {
        let why = want
            .why
            .as_deref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        if let Some(open) = &want.open {
            let mut open = open.clone();
            open.sort();
            assert_eq!(self.open().await, open, "{at}: the open tasks{why}");
        }
        if let Some(done) = &want.done {
            assert_eq!(&self.done().await, done, "{at}: the completion order{why}");
        }
        let (status, vars) = self.status_and_vars().await;
        if let Some(s) = want.status {
            assert_eq!(status, s, "{at}: the status{why}");
        }
        for (name, value) in want.vars.iter().flatten() {
            assert_eq!(
                vars.get(name).unwrap_or(&Value::Null),
                value,
                "{at}: variable `{name}`{why}"
            );
        }
        if let Some(n) = want.fired {
            let got = fired.unwrap_or_else(|| panic!("{at}: `fired` needs an `advance` step"));
            assert_eq!(got, n, "{at}: the timers fired{why}");
        }
    }
}

/// ` {"a":1}`, or nothing for no variables.
fn with(vars: &Vars) -> String {
    if vars.is_empty() {
        String::new()
    } else {
        format!(" {}", compact(vars))
    }
}

fn step_label(step: &Step) -> String {
    if let Some(t) = &step.complete {
        return match t {
            Target::Node(n) => format!("complete {n}"),
            Target::With(t) => format!("complete {}{}", t.node, with(&t.with)),
        };
    }
    if let Some(m) = &step.message {
        let key = m
            .key
            .as_deref()
            .map(|k| format!(" key {k}"))
            .unwrap_or_default();
        return format!("message {}{key}{}", m.name, with(&m.with));
    }
    if let Some(s) = &step.signal {
        return match s {
            SignalSpec::Name(n) => format!("signal {n}"),
            SignalSpec::With(s) => format!("signal {}{}", s.name, with(&s.with)),
        };
    }
    if let Some(d) = &step.advance {
        return format!("advance {d}");
    }
    if let Some(a) = &step.cancel {
        return format!("cancel by {a}");
    }
    if let Some(r) = &step.add_runs {
        return format!("add runs to {} {}", r.node, compact(&r.items));
    }
    "check".to_owned()
}

/// Runs one case; returns its part of the snapshot.
async fn run_case(place: String, processes: &[String], start: &Vars, script: &[Step]) -> String {
    assert!(
        script.iter().any(|s| s.expect.is_some()),
        "{place}: no step has an `expect`: the case checks nothing"
    );
    let mut run = Run::start(place, processes, start).await;
    for (i, step) in script.iter().enumerate() {
        let label = format!("{}. {}", i + 1, step_label(step));
        let at = format!("{}, step {label}", run.place);
        let (report, fired) = run.act(&at, step).await;
        if let Some(want) = &step.expect {
            run.check(&at, want, fired).await;
        }
        if step.verbs() == 0 {
            let _ = writeln!(run.out, "## {label}\n(nothing done)\n");
        } else {
            run.record(&label, report.as_deref()).await;
        }
    }
    run.out
}

fn pattern_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/patterns");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The pattern number of `wcp-NN-short-name.yaml`.
fn number(path: &Path) -> u32 {
    let stem = path.file_stem().unwrap().to_string_lossy();
    stem.strip_prefix("wcp-")
        .and_then(|r| r.split_once('-'))
        .filter(|(n, name)| n.len() == 2 && !name.is_empty())
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("{stem}.yaml: name it wcp-NN-short-name.yaml"))
}

#[tokio::test]
async fn the_patterns_run_as_their_files_expect() {
    let files = pattern_files();
    assert!(!files.is_empty(), "the pattern files are there");
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let file: File = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}.yaml: {e}"));
        let out = if file.cases.is_empty() {
            run_case(
                format!("{name}.yaml"),
                &file.processes,
                &file.start,
                &file.script,
            )
            .await
        } else {
            assert!(
                file.script.is_empty() && file.start.is_empty(),
                "{name}.yaml: `start` and `script` go in each of `cases`"
            );
            let mut out = String::new();
            for case in &file.cases {
                let place = format!("{name}.yaml, case {}", case.name);
                let part = run_case(place, &file.processes, &case.start, &case.script).await;
                let _ = write!(out, "# case {}\n\n{part}", case.name);
            }
            out
        };
        insta::with_settings!({
            snapshot_path => "patterns/snapshots",
            prepend_module_to_snapshot => false,
            description => file.about.trim(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, out);
        });
    }
}

/// `docs/patterns.md` marks a pattern supported exactly when a
/// `patterns/wcp-NN-*.yaml` file runs it, and no pattern has two files.
#[test]
fn the_patterns_document_matches_the_files() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/patterns.md")).unwrap();
    let mut numbers: Vec<u32> = pattern_files().iter().map(|p| number(p)).collect();
    let count = numbers.len();
    numbers.dedup();
    assert_eq!(numbers.len(), count, "one file per pattern: {numbers:?}");
    let mut rows = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(n) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        rows.push(n);
        let supported = cells.get(3).is_some_and(|c| c.starts_with("yes"));
        assert_eq!(
            numbers.contains(&n),
            supported,
            "pattern {n}: the document says supported = {supported}, the files disagree"
        );
    }
    assert_eq!(
        rows,
        (1..=43).collect::<Vec<_>>(),
        "every pattern has a row"
    );
    assert!(
        numbers.iter().all(|n| rows.contains(n)),
        "a file for a pattern the document does not list: {numbers:?}"
    );
}
