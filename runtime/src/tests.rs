//! What is not a scenario: form and variable checks with their exact errors,
//! the commands the machine refuses and why, the state's JSON form (and an old
//! one), a child started with its caller's link, and a property test on random
//! graphs. How constructs run (sequences, gateways and joins, loops, scopes,
//! terminate and cancel, timers, messages, boundaries, event gateways and
//! subprocesses, errors, escalations, compensation, multi-instance, calls,
//! retry and resolve, jobs) is in the scenario files,
//! `runtime/tests/scenarios/*.yaml`, each with what it must do.

use super::*;
use chrono::{DateTime, TimeZone, Utc};
use ordo_model::{self, Options, Process};
use serde_json::{Value, json};

fn process(yaml: &str) -> Process {
    let loaded = ordo_model::load("t.yaml", yaml, &Options::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.process.expect("valid")
}

fn vars(v: Value) -> Vars {
    v.as_object().cloned().unwrap_or_default()
}

/// Friday 2026-11-20 09:00 UTC.
fn friday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

fn start(p: &Process, v: Value) -> (Instance, Vec<Action>) {
    let m = Machine::new(p).expect("supported");
    m.start("i1".into(), 1, None, vars(v), &ManualClock::new(friday()))
        .expect("starts")
}

fn apply(p: &Process, inst: &Instance, cmd: Command) -> Result<(Instance, Vec<Action>), Error> {
    Machine::new(p)
        .expect("supported")
        .apply(inst, cmd, &ManualClock::new(friday()))
}

fn tasks(actions: &[Action]) -> Vec<TaskSpec> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateTask(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn jobs(actions: &[Action]) -> Vec<JobSpec> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RunJob(j) => Some(j.clone()),
            _ => None,
        })
        .collect()
}

fn incidents(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Incident { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn complete_task(
    p: &Process,
    inst: &Instance,
    node: &str,
    actions: &[Action],
    v: Value,
) -> (Instance, Vec<Action>) {
    let t = tasks(actions)
        .into_iter()
        .find(|t| t.node == node)
        .expect("task open");
    apply(
        p,
        inst,
        Command::CompleteTask {
            activity: t.activity,
            variables: vars(v),
            actor: Some("ann".into()),
        },
    )
    .expect("completes")
}

const TASK: &str = "id: t\nstart: [{id: go, next: review}]\nnodes:\n  review:\n    type: user\n    name: Review\n    assignee: =owner\n    candidate_groups: [sales, =region]\n    due: P2BD\n    priority: \"=vip ? 90 : 40\"\n    form:\n      approved: {type: boolean, required: true}\n      amount: {type: number, min: 0}\n    next: done\n  done: {type: end}\n";

#[test]
fn form_errors_refuse_the_completion_and_change_nothing() {
    let p = process(TASK);
    let (inst, actions) = start(&p, json!({"owner": "ann", "region": "east", "vip": false}));
    let t = &tasks(&actions)[0];
    let bad = apply(
        &p,
        &inst,
        Command::CompleteTask {
            activity: t.activity,
            variables: vars(json!({"amount": -5})),
            actor: None,
        },
    );
    match bad {
        Err(Error::Form(errs)) => {
            let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["approved", "amount"]);
        }
        other => panic!("expected form errors, got {other:?}"),
    }
    let (done, actions) = complete_task(
        &p,
        &inst,
        "review",
        &actions,
        json!({"approved": true, "amount": 5}),
    );
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.variables()["approved"], json!(true));
    assert_eq!(done.version, inst.version + 1);
    assert!(actions.contains(&Action::CloseTask {
        activity: t.activity,
        state: Lifecycle::Completed
    }));
    let actor = actions.iter().find_map(|a| match a {
        Action::History(h) if h.node == "review" && h.state == Lifecycle::Completed => {
            h.actor.clone()
        }
        _ => None,
    });
    assert_eq!(actor.as_deref(), Some("ann"));
    // The same task cannot be completed twice.
    let again = apply(
        &p,
        &inst,
        Command::CompleteTask {
            activity: t.activity,
            variables: vars(json!({"approved": true})),
            actor: None,
        },
    )
    .and_then(|(i, _)| {
        apply(
            &p,
            &i,
            Command::CompleteTask {
                activity: t.activity,
                variables: vars(json!({"approved": true})),
                actor: None,
            },
        )
    });
    assert!(matches!(
        again,
        Err(Error::NotActive(InstanceStatus::Completed))
    ));
}

/// A job is completed as a job, not as a task.
#[test]
fn completing_a_job_as_a_task_is_refused() {
    let p = process(
        "id: s\nstart: [{id: go, next: call}]\nnodes:\n  call: {type: service, action: crm.assign, next: done}\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let j = &jobs(&actions)[0];
    let wrong = apply(
        &p,
        &inst,
        Command::CompleteTask {
            activity: j.activity,
            variables: Vars::new(),
            actor: None,
        },
    );
    assert!(
        matches!(wrong, Err(Error::WrongActivity { .. })),
        "{wrong:?}"
    );
}

#[test]
fn an_internal_variable_cannot_be_given_at_start() {
    let p = process(
        "id: v\nvariables:\n  policy: {type: number, default: 0.1, internal: true}\nstart: [{id: go, next: e}]\nnodes:\n  e: {type: end}\n",
    );
    let m = Machine::new(&p).expect("supported");
    let clock = ManualClock::new(friday());
    let err = m.start("i".into(), 1, None, vars(json!({"policy": 1})), &clock);
    match err {
        Err(Error::Variables(v)) => assert_eq!(
            v,
            ["policy is set by the process itself; a start may not give it"]
        ),
        other => panic!("{other:?}"),
    }
    let (inst, _) = m
        .start("i".into(), 1, None, Vars::new(), &clock)
        .expect("without it the default holds");
    assert_eq!(inst.scopes[&ScopeId::ROOT].vars["policy"], json!(0.1));
}

#[test]
fn start_variables_are_checked_against_declarations() {
    let p = process(
        "id: v\nvariables:\n  lead: {type: object, required: true}\n  n: {type: integer, default: 3}\nstart: [{id: go, next: e}]\nnodes:\n  e: {type: end}\n",
    );
    let m = Machine::new(&p).expect("supported");
    let clock = ManualClock::new(friday());
    let err = m.start("i".into(), 1, None, vars(json!({"n": "three"})), &clock);
    match err {
        Err(Error::Variables(v)) => assert_eq!(
            v,
            ["lead is required", "n must be an integer, not \"three\""]
        ),
        other => panic!("{other:?}"),
    }
    let too_big = vars(json!({"lead": {"blob": "x".repeat(MAX_VARIABLES_BYTES)}}));
    assert!(matches!(
        m.start("i".into(), 1, None, too_big, &clock),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn writes_are_checked_against_declared_types() {
    let p = process(
        "id: d\nvariables: {n: {type: integer, default: 0}}\nstart: [{id: go, next: t}]\nnodes:\n  t: {type: user, next: a}\n  a: {type: assign, set: {n: =\"ten\"}, next: e}\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let t = tasks(&actions)[0].activity;
    let refused = apply(
        &p,
        &inst,
        Command::CompleteTask {
            activity: t,
            variables: vars(json!({"n": 2.5})),
            actor: None,
        },
    );
    match refused {
        Err(Error::Variables(v)) => assert_eq!(v, ["n must be an integer, not 2.5"]),
        other => panic!("{other:?}"),
    }
    let (after, actions) = apply(
        &p,
        &inst,
        Command::CompleteTask {
            activity: t,
            variables: vars(json!({"n": 2})),
            actor: None,
        },
    )
    .expect("fits");
    assert_eq!(incidents(&actions), ["n must be an integer, not \"ten\""]);
    assert_eq!(
        after.variables()["n"],
        json!(2),
        "the refused write changed nothing"
    );
}

#[test]
fn instance_state_round_trips_through_json() {
    let p = process(TASK);
    let (inst, actions) = start(&p, json!({"owner": "ann", "region": "x", "vip": false}));
    let back: Instance =
        serde_json::from_str(&serde_json::to_string(&inst).unwrap_or_default()).expect("json");
    assert_eq!(back, inst);
    let actions_back: Vec<Action> =
        serde_json::from_value(serde_json::to_value(&actions).unwrap_or_default()).expect("json");
    assert_eq!(actions_back, actions);
}

fn subs(actions: &[Action]) -> Vec<Subscription> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Subscribe(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn fire(p: &Process, inst: &Instance, sub: SubscriptionId, v: Value) -> (Instance, Vec<Action>) {
    apply(
        p,
        inst,
        Command::Trigger {
            subscription: sub,
            variables: vars(v),
        },
    )
    .expect("fires")
}

/// A subscription of an instance that has ended cannot fire: the command is
/// refused (a script cannot name a withdrawn subscription, so this is here).
#[test]
fn a_trigger_for_an_ended_instance_is_refused() {
    let p = process(
        "id: r\nstart: [{id: go, next: w}]\nnodes:\n  w: {type: receive, message: paid, key: order, next: e}\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({"order": "o-1"}));
    let s = subs(&actions);
    let (inst, _) = fire(&p, &inst, s[0].id, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(
        apply(
            &p,
            &inst,
            Command::Trigger {
                subscription: s[0].id,
                variables: Vars::new()
            }
        ),
        Err(Error::NotActive(InstanceStatus::Completed))
    );
}

/// A called instance started with its caller's link: an error it does not
/// catch goes to the caller, and stays an incident here until the caller
/// catches it. (A script starts instances without a caller.)
#[test]
fn a_childs_uncaught_error_goes_to_its_caller_and_stays_an_incident() {
    let child =
        process("id: child\nstart: [{id: go, next: f}]\nnodes:\n  f: {type: end, error: NOPE}\n");
    let link = ParentLink {
        instance: "1".into(),
        activity: ActivityInstanceId(2),
        root: "1".into(),
        depth: 1,
        waits: true,
    };
    let (inst, actions) = Machine::new(&child)
        .expect("supported")
        .start_child(
            None,
            "2".into(),
            1,
            None,
            Vars::new(),
            Some(link),
            &ManualClock::new(friday()),
        )
        .expect("starts");
    assert_eq!(inst.parent.as_ref().map(|l| l.instance.as_str()), Some("1"));
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::RaiseInCaller { code, error: true, .. } if code == "NOPE")
        )
    );
    assert_eq!(
        incidents(&actions).len(),
        1,
        "it stays an incident here until the caller catches it"
    );
}

mod generated {
    //! Property test: random structured graphs run to completion without losing a
    //! token, and every activity instance that started also ended. The graphs
    //! nest gateways, multi-instance subprocesses (sequential and parallel, their
    //! bodies with joins of their own), subprocesses whose body may raise an
    //! error that a boundary event on the subprocess catches, and subprocesses
    //! with a non-interrupting event subprocess whose runs (started by notes sent
    //! at random moments) each split and join, parallel multi-instance
    //! subprocesses that go on after one run and leave the rest to finish
    //! (`rest: wait`), and tasks gated by a milestone in a parallel branch.
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::fmt::Write;

    #[derive(Debug, Clone)]
    enum Block {
        Empty,
        Assign,
        Task,
        Seq(Vec<Block>),
        Xor(Vec<Block>),
        And(Vec<Block>),
        Or(Vec<Block>),
        /// A multi-instance subprocess over `count` runs around the block,
        /// parallel or not; with `rest`, it goes on after the first run and
        /// leaves the others to finish (`rest: wait`).
        Multi(Box<Block>, u8, bool, bool),
        /// Two parallel branches: the first runs its block into a task `M`,
        /// the second runs its block into a task gated by `milestone: M`
        /// (started while `M` waits, withdrawn once `M` has passed).
        Gate(Box<Block>, Box<Block>),
        /// A subprocess (multi-instance when `Some(count)`) whose body runs the
        /// block and then, when `k % 3 == 0`, raises an error its boundary
        /// catches.
        Raise(Box<Block>, Option<u8>),
        /// A subprocess around the block whose scope also has a non-interrupting
        /// event subprocess on message `note`: each note starts a run that
        /// splits into two tasks and joins them.
        Notes(Box<Block>),
    }

    fn block() -> impl Strategy<Value = Block> {
        let leaf = prop_oneof![Just(Block::Empty), Just(Block::Assign), Just(Block::Task)];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Block::Seq),
                prop::collection::vec(inner.clone(), 1..4).prop_map(Block::Xor),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Block::And),
                prop::collection::vec(inner.clone(), 1..4).prop_map(Block::Or),
                (inner.clone(), 0u8..3, any::<bool>(), any::<bool>())
                    .prop_map(|(b, n, par, rest)| Block::Multi(Box::new(b), n, par, rest)),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Block::Gate(Box::new(a), Box::new(b))),
                (inner.clone(), prop::option::of(1u8..3))
                    .prop_map(|(b, n)| Block::Raise(Box::new(b), n)),
                inner.prop_map(|b| Block::Notes(Box::new(b))),
            ]
        })
    }

    struct Gen {
        yaml: String,
        n: usize,
        /// The indentation of this level's node entries.
        pad: String,
    }

    impl Gen {
        fn id(&mut self, p: &str) -> String {
            self.n += 1;
            format!("{p}{}", self.n)
        }

        /// Emits `b` as the body of a subprocess node `id` (with `extra` lines
        /// such as `multi` or `boundary`) that continues to `next`.
        fn scope(
            &mut self,
            id: &str,
            b: &Block,
            raise: bool,
            notes: bool,
            extra: &[String],
            next: &str,
        ) {
            let mut inner = Gen {
                yaml: String::new(),
                n: self.n,
                pad: format!("{}    ", self.pad),
            };
            let end = inner.id("z");
            let _ = writeln!(inner.yaml, "{}{end}: {{type: end}}", inner.pad);
            if notes {
                let n = inner.id("n");
                let _ = writeln!(
                    inner.yaml,
                    "{p}{n}:\n{p}  type: event_subprocess\n{p}  message: note\n{p}  interrupting: false\n{p}  start: {n}s\n{p}  nodes:\n{p}    {n}s: {{type: parallel, next: [{n}x, {n}y]}}\n{p}    {n}x: {{type: user, next: {n}j}}\n{p}    {n}y: {{type: user, next: {n}j}}\n{p}    {n}j: {{type: parallel, next: {n}z}}\n{p}    {n}z: {{type: end}}",
                    p = inner.pad
                );
            }
            let after = if raise {
                let (check, boom) = (inner.id("c"), inner.id("x"));
                let _ = writeln!(
                    inner.yaml,
                    "{p}{boom}: {{type: end, error: FAIL}}\n{p}{check}:\n{p}  type: exclusive\n{p}  branches: [{{when: k % 3 == 0, to: {boom}}}]\n{p}  default: {end}",
                    p = inner.pad
                );
                check
            } else {
                end
            };
            let entry = inner.emit(b, &after);
            self.n = inner.n;
            let p = &self.pad;
            let _ = writeln!(
                self.yaml,
                "{p}{id}:\n{p}  type: subprocess\n{p}  start: {entry}\n{p}  next: {next}"
            );
            for line in extra {
                let _ = writeln!(self.yaml, "{p}  {line}");
            }
            let _ = writeln!(self.yaml, "{p}  nodes:\n{}", inner.yaml.trim_end());
        }
        /// Emits `b` so that it continues to `next`; returns its entry node.
        fn emit(&mut self, b: &Block, next: &str) -> String {
            match b {
                Block::Empty => {
                    let id = self.id("e");
                    let _ = writeln!(self.yaml, "{}{id}: {{type: empty, next: {next}}}", self.pad);
                    id
                }
                Block::Assign => {
                    let id = self.id("a");
                    let _ = writeln!(
                        self.yaml,
                        "{}{id}: {{type: assign, set: {{k: =k + 1}}, next: {next}}}",
                        self.pad
                    );
                    id
                }
                Block::Task => {
                    let id = self.id("t");
                    let _ = writeln!(self.yaml, "{}{id}: {{type: user, next: {next}}}", self.pad);
                    id
                }
                Block::Seq(items) => {
                    let mut entry = next.to_owned();
                    for it in items.iter().rev() {
                        entry = self.emit(it, &entry);
                    }
                    entry
                }
                Block::Xor(items) | Block::Or(items) if items.len() == 1 => {
                    self.emit(&items[0], next)
                }
                Block::Xor(items) | Block::Or(items) => {
                    let inclusive = matches!(b, Block::Or(_));
                    let kind = if inclusive { "inclusive" } else { "exclusive" };
                    let (split, join) = (self.id("s"), self.id("j"));
                    let p = self.pad.clone();
                    let _ = writeln!(self.yaml, "{p}{join}: {{type: {kind}, next: {next}}}");
                    let entries: Vec<String> =
                        items.iter().map(|it| self.emit(it, &join)).collect();
                    let _ = writeln!(self.yaml, "{p}{split}:\n{p}  type: {kind}\n{p}  branches:");
                    for (i, e) in entries.iter().enumerate().skip(1) {
                        let _ = writeln!(
                            self.yaml,
                            "{p}    - {{when: k % {} == {}, to: {e}}}",
                            i + 1,
                            i % (i + 1)
                        );
                    }
                    let _ = writeln!(self.yaml, "{p}  default: {}", entries[0]);
                    split
                }
                Block::And(items) => {
                    let (split, join) = (self.id("p"), self.id("q"));
                    let p = self.pad.clone();
                    let _ = writeln!(self.yaml, "{p}{join}: {{type: parallel, next: {next}}}");
                    let entries: Vec<String> =
                        items.iter().map(|it| self.emit(it, &join)).collect();
                    let _ = writeln!(
                        self.yaml,
                        "{p}{split}: {{type: parallel, next: [{}]}}",
                        entries.join(", ")
                    );
                    split
                }
                Block::Multi(inner, count, parallel, rest) => {
                    let id = self.id("m");
                    let early = if *rest && *parallel {
                        ", completion: completed >= 1, rest: wait"
                    } else {
                        ""
                    };
                    let multi =
                        format!("multi: {{count: \"{count}\", parallel: {parallel}{early}}}");
                    self.scope(&id, inner, false, false, &[multi], next);
                    id
                }
                Block::Gate(a, b) => {
                    let (split, join, m, g) =
                        (self.id("p"), self.id("q"), self.id("M"), self.id("G"));
                    let p = self.pad.clone();
                    let _ = writeln!(self.yaml, "{p}{join}: {{type: parallel, next: {next}}}");
                    let _ = writeln!(self.yaml, "{p}{m}: {{type: user, next: {join}}}");
                    let _ = writeln!(
                        self.yaml,
                        "{p}{g}: {{type: user, milestone: {m}, next: {join}}}"
                    );
                    let (ea, eb) = (self.emit(a, &m), self.emit(b, &g));
                    let _ = writeln!(
                        self.yaml,
                        "{p}{split}: {{type: parallel, next: [{ea}, {eb}]}}"
                    );
                    split
                }
                Block::Raise(inner, count) => {
                    // The normal and the error path meet in a merge, as a
                    // designer would draw them (a parallel join cannot wait for
                    // both: only one of them is taken).
                    let (id, merge) = (self.id("r"), self.id("g"));
                    let _ = writeln!(
                        self.yaml,
                        "{}{merge}: {{type: exclusive, next: {next}}}",
                        self.pad
                    );
                    let mut extra = vec![format!("boundary: [{{error: FAIL, to: {merge}}}]")];
                    if let Some(n) = count {
                        extra.push(format!("multi: {{count: \"{n}\", parallel: true}}"));
                    }
                    self.scope(&id, inner, true, false, &extra, &merge);
                    id
                }
                Block::Notes(inner) => {
                    let id = self.id("w");
                    self.scope(&id, inner, false, true, &[], next);
                    id
                }
            }
        }
    }

    fn source(b: &Block) -> String {
        let mut g = Gen {
            yaml: String::new(),
            n: 0,
            pad: "  ".to_owned(),
        };
        let _ = writeln!(g.yaml, "  done: {{type: end}}");
        let entry = g.emit(b, "done");
        format!(
            "id: gen\nvariables: {{k: {{type: integer, default: 0}}}}\nstart: [{{id: go, next: {entry}}}]\nnodes:\n{}",
            g.yaml
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn random_graphs_run_to_completion(
            b in block(),
            k in 0i64..12,
            notes in prop::collection::vec(any::<bool>(), 0..8),
        ) {
            let yaml = source(&b);
            let loaded = ordo_model::load("gen.yaml", &yaml, &Options::default());
            prop_assert!(!loaded.has_errors(), "{:?}\n{}", loaded.diagnostics, yaml);
            let Some(p) = loaded.process else { return Err(TestCaseError::fail("no process")) };
            let m = Machine::new(&p).expect("supported");
            let clock = ManualClock::new(friday());
            let (mut inst, mut all) = m.start("g".into(), 1, None, vars(json!({"k": k})), &clock).expect("starts");
            let closed = |actions: &[Action]| -> Vec<ActivityInstanceId> {
                actions
                    .iter()
                    .filter_map(|x| match x {
                        Action::CloseTask { activity, .. } => Some(*activity),
                        _ => None,
                    })
                    .collect()
            };
            let mut open: Vec<ActivityInstanceId> = tasks(&all).iter().map(|t| t.activity).collect();
            open.retain(|o| !closed(&all).contains(o));
            let mut rounds = 0;
            let mut notes = notes.into_iter();
            loop {
                // Now and then a note arrives for a scope that listens for one:
                // its event subprocess starts another run beside the others.
                if notes.next() == Some(true)
                    && let Some(sub) = inst.subscriptions.iter().find(|s| matches!(&s.trigger, Trigger::Message { name, .. } if name == "note")).cloned()
                {
                    let (next, actions) = m
                        .apply(&inst, Command::Trigger { subscription: sub.id, variables: Vars::new() }, &clock)
                        .map_err(|e| TestCaseError::fail(format!("note: {e}\n{yaml}")))?;
                    open.extend(tasks(&actions).iter().map(|t| t.activity));
                    all.extend(actions);
                    inst = next;
                }
                let Some(a) = open.pop() else { break };
                rounds += 1;
                prop_assert!(rounds < 1000);
                let applied = m.apply(&inst, Command::CompleteTask { activity: a, variables: Vars::new(), actor: None }, &clock);
                let (next, actions) = match applied {
                    Ok(r) => r,
                    Err(e) => return Err(TestCaseError::fail(format!("task {a}: {e}\n{yaml}\n{all:#?}"))),
                };
                open.extend(tasks(&actions).iter().map(|t| t.activity));
                // A task closed by something else (a run cancelled by an error
                // caught on its activity) is no longer there to complete.
                let gone = closed(&actions);
                open.retain(|o| !gone.contains(o));
                all.extend(actions);
                inst = next;
            }
            prop_assert!(incidents(&all).is_empty(), "{:?}\n{yaml}", incidents(&all));
            prop_assert_eq!(inst.status, InstanceStatus::Completed, "{}", yaml);
            prop_assert!(inst.tokens.is_empty());
            let mut last: HashMap<ActivityInstanceId, Lifecycle> = HashMap::new();
            for a in &all {
                if let Action::History(h) = a {
                    last.insert(h.activity, h.state);
                }
            }
            for (activity, state) in last {
                prop_assert!(
                    matches!(state, Lifecycle::Completed | Lifecycle::Aborted | Lifecycle::Faulted),
                    "activity {} ended in {:?}\n{}", activity, state, yaml
                );
            }
        }
    }
}

/// States stored before ids were typed (plain numbers for tokens and scopes)
/// read back the same, and are written the same.
#[test]
fn a_state_stored_with_plain_number_ids_reads_and_writes_the_same() {
    let stored = json!({
        "id": "7", "process": "p", "process_version": 1, "business_key": null,
        "status": "active", "version": 3,
        "scopes": {
            "0": {"node": null, "parent": null, "vars": {"k": 1}},
            "4": {"node": "sub", "parent": 0, "vars": {}}
        },
        "tokens": [
            {"id": 2, "node": "sub", "scope": 0, "from": "go", "state": "waiting",
             "activity": 3, "wait": {"kind": "scope", "inner": 4, "iterations": 0}},
            {"id": 5, "node": "t", "scope": 4, "from": null, "state": "waiting",
             "activity": 6, "wait": {"kind": "task"}}
        ],
        "next_id": 7,
        "subscriptions": [
            {"id": 8, "token": 0, "node": "es", "on": "event_subprocess", "scope": 4,
             "trigger": {"trigger": "signal", "name": "stop"}}
        ],
        "started_at": "2026-11-20T09:00:00Z", "ended_at": null
    });
    let inst: Instance = serde_json::from_value(stored.clone()).expect("reads");
    assert_eq!(inst.tokens[1].scope, ScopeId(4));
    assert_eq!(inst.scopes[&ScopeId(4)].parent, Some(ScopeId::ROOT));
    assert_eq!(inst.subscriptions[0].token, TokenId::NONE);
    assert_eq!(inst.variables()["k"], json!(1));
    assert_eq!(
        serde_json::to_value(&inst).expect("writes"),
        stored,
        "written back exactly as it was stored"
    );
}
