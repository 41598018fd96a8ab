//! One test per construct the runtime runs, with a manual clock.

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

/// Nodes in the order they completed.
fn completed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::History(h) if h.state == Lifecycle::Completed => Some(h.node.clone()),
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

#[test]
fn sequence_assign_and_end_with_full_lifecycle() {
    let p = process(
        "id: s\nvariables: { price: { type: number, default: 10.5 } }\nstart: [{id: go, next: a}]\nnodes:\n  a: {type: assign, set: {total: =price * 2.0, label: fixed, twice: =total * 2.0}, next: b}\n  b: {type: empty, next: c}\n  c: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["total"], json!(21.0));
    assert_eq!(
        inst.variables()["twice"],
        json!(42.0),
        "later assignments see earlier ones"
    );
    assert_eq!(inst.variables()["label"], json!("fixed"));
    assert_eq!(completed(&actions), ["go", "a", "b", "c"]);
    let a_states: Vec<Lifecycle> = actions
        .iter()
        .filter_map(|x| match x {
            Action::History(h) if h.node == "a" => Some(h.state),
            _ => None,
        })
        .collect();
    assert_eq!(
        a_states,
        [
            Lifecycle::Ready,
            Lifecycle::Active,
            Lifecycle::Completing,
            Lifecycle::Completed
        ]
    );
    assert_eq!(
        actions.last(),
        Some(&Action::Ended {
            status: InstanceStatus::Completed
        })
    );
}

const EXCLUSIVE: &str = "id: x\nstart: [{id: go, next: g}]\nnodes:\n  g:\n    type: exclusive\n    branches:\n      - {when: amount > 100, to: big}\n      - {when: amount > 10, to: medium}\n  big: {type: end}\n  medium: {type: end}\n";

#[test]
fn exclusive_takes_the_first_true_branch_in_document_order() {
    let p = process(EXCLUSIVE);
    let (_, actions) = start(&p, json!({"amount": 500}));
    assert_eq!(completed(&actions), ["go", "g", "big"]);
    let (_, actions) = start(&p, json!({"amount": 50}));
    assert_eq!(completed(&actions), ["go", "g", "medium"]);
}

#[test]
fn exclusive_without_match_or_default_is_an_incident_naming_the_gateway() {
    let p = process(EXCLUSIVE);
    let (inst, actions) = start(&p, json!({"amount": 1}));
    assert_eq!(inst.status, InstanceStatus::Active);
    assert_eq!(
        incidents(&actions),
        ["no branch matched at gateway `g`, and it has no default"]
    );
    assert!(matches!(inst.tokens[0].state, TokenState::Incident { .. }));
}

#[test]
fn exclusive_default_and_evaluation_errors() {
    let p = process(&EXCLUSIVE.replace(
        "      - {when: amount > 10, to: medium}\n",
        "      - {when: amount > 10, to: medium}\n    default: medium\n",
    ));
    let (_, actions) = start(&p, json!({"amount": 1}));
    assert_eq!(completed(&actions), ["go", "g", "medium"]);
    let (_, actions) = start(&p, json!({}));
    assert_eq!(
        incidents(&actions).len(),
        1,
        "an unknown variable is an incident, not a panic"
    );
}

#[test]
fn parallel_split_and_join_fire_once() {
    let p = process(
        "id: p\nstart: [{id: go, next: split}]\nnodes:\n  split: {type: parallel, next: [a, b, c]}\n  a: {type: empty, next: join}\n  b: {type: user, next: join}\n  c: {type: empty, next: join}\n  join: {type: parallel, next: done}\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(inst.status, InstanceStatus::Active);
    assert_eq!(
        inst.tokens
            .iter()
            .filter(|t| t.state == TokenState::Joining)
            .count(),
        2
    );
    let (inst, actions) = complete_task(&p, &inst, "b", &actions, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(
        completed(&actions).iter().filter(|n| *n == "join").count(),
        1
    );
    assert_eq!(
        completed(&actions).iter().filter(|n| *n == "done").count(),
        1
    );
}

const INCLUSIVE: &str = "id: o\nstart: [{id: go, next: split}]\nnodes:\n  split:\n    type: inclusive\n    branches:\n      - {when: mail, to: a}\n      - {when: sms, to: b}\n      - {when: call, to: c}\n    default: a\n  a: {type: empty, next: join}\n  b: {type: user, next: join}\n  c: {type: empty, next: join}\n  join: {type: inclusive, next: done}\n  done: {type: end}\n";

#[test]
fn inclusive_join_waits_only_for_tokens_that_can_still_arrive() {
    let p = process(INCLUSIVE);
    // Two branches taken; the join waits for the user task on one of them.
    let (inst, actions) = start(&p, json!({"mail": true, "sms": true, "call": false}));
    assert_eq!(inst.status, InstanceStatus::Active);
    assert!(!completed(&actions).contains(&"join".to_owned()));
    let (inst, actions) = complete_task(&p, &inst, "b", &actions, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(completed(&actions), ["b", "join", "done"]);
    // One branch taken: nothing else can arrive, the join fires at once.
    let (inst, actions) = start(&p, json!({"mail": false, "sms": false, "call": true}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(completed(&actions), ["go", "split", "c", "join", "done"]);
}

/// An inclusive join nested inside another: the outer one must wait for the
/// token still waiting at the inner one (found by the generated-graph test).
const NESTED_INCLUSIVE: &str = "id: n\nstart: [{id: go, next: split}]\nnodes:\n  split:\n    type: inclusive\n    branches:\n      - {when: a, to: a}\n      - {when: b, to: inner}\n    default: a\n  inner:\n    type: inclusive\n    branches:\n      - {when: c, to: c}\n    default: d\n  c: {type: empty, next: ijoin}\n  d: {type: user, next: ijoin}\n  ijoin: {type: inclusive, next: join}\n  a: {type: empty, next: join}\n  join: {type: inclusive, next: done}\n  done: {type: end}\n";

#[test]
fn outer_inclusive_join_waits_for_a_token_held_at_an_inner_join() {
    let p = process(NESTED_INCLUSIVE);
    // Both outer branches taken; the inner one goes straight to its join.
    let (inst, actions) = start(&p, json!({"a": true, "b": true, "c": true}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    let done = completed(&actions);
    assert_eq!(done.iter().filter(|n| *n == "join").count(), 1, "{done:?}");
    assert_eq!(done.last().map(String::as_str), Some("done"));
    assert!(inst.tokens.is_empty());
    // The inner branch waits on a task: the outer join holds the other token.
    let (inst, actions) = start(&p, json!({"a": true, "b": true, "c": false}));
    assert_eq!(inst.status, InstanceStatus::Active);
    assert!(!completed(&actions).contains(&"join".to_owned()));
    let (inst, actions) = complete_task(&p, &inst, "d", &actions, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(completed(&actions), ["d", "ijoin", "join", "done"]);
}

const TASK: &str = "id: t\nstart: [{id: go, next: review}]\nnodes:\n  review:\n    type: user\n    name: Review\n    assignee: =owner\n    candidate_groups: [sales, =region]\n    due: P2BD\n    priority: \"=vip ? 90 : 40\"\n    form:\n      approved: {type: boolean, required: true}\n      amount: {type: number, min: 0}\n    next: done\n  done: {type: end}\n";

#[test]
fn user_task_is_a_wait_state_with_evaluated_assignment_and_due_date() {
    let p = process(TASK);
    let (inst, actions) = start(&p, json!({"owner": "ann", "region": "east", "vip": true}));
    let t = &tasks(&actions)[0];
    assert_eq!(t.assignee.as_deref(), Some("ann"));
    assert_eq!(t.candidate_groups, ["sales", "east"]);
    assert_eq!(t.priority, 90);
    // Two working days from a Friday: Tuesday, same time.
    assert_eq!(t.due, Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).single());
    assert_eq!(inst.active_nodes(), ["review"]);
}

#[test]
fn completed_by_records_who_completed_the_task_and_left_out_fields_take_their_default() {
    let p = process(
        "id: c\nstart: [{id: go, next: approve}]\nnodes:\n  approve:\n    type: user\n    completed_by: approver\n    form: {ok: {type: boolean, required: true}, note: {type: text, default: none}, tag: {type: text, default: \"='x' + 'y'\"}}\n    next: done\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let t = &tasks(&actions)[0];
    let (done, _) = apply(
        &p,
        &inst,
        Command::CompleteTask {
            activity: t.activity,
            variables: vars(json!({"ok": true})),
            actor: Some("ann".into()),
        },
    )
    .expect("completes");
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(
        done.scopes[&ScopeId::ROOT].vars.get("approver"),
        Some(&json!("ann"))
    );
    assert_eq!(
        done.scopes[&ScopeId::ROOT].vars.get("ok"),
        Some(&json!(true))
    );
    assert_eq!(
        done.scopes[&ScopeId::ROOT].vars.get("note"),
        Some(&json!("none")),
        "a field left out takes its default"
    );
    assert_eq!(
        done.scopes[&ScopeId::ROOT].vars.get("tag"),
        Some(&json!("xy"))
    );
}

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

#[test]
fn service_task_becomes_a_job_and_its_result_is_mapped() {
    let p = process(
        "id: s\nstart: [{id: go, next: call}]\nnodes:\n  call:\n    type: service\n    action: crm.assign\n    with: {group: sales, lead: =lead.id}\n    result: assignment\n    out: {owner: =result.owner}\n    retries: 2\n    next: done\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({"lead": {"id": 7}}));
    let j = &jobs(&actions)[0];
    assert_eq!(
        (j.action.as_str(), &j.input, j.retries),
        ("crm.assign", &json!({"group": "sales", "lead": 7}), 2)
    );
    let wrong = apply(
        &p,
        &inst,
        Command::CompleteTask {
            activity: j.activity,
            variables: Vars::new(),
            actor: None,
        },
    );
    assert!(matches!(wrong, Err(Error::WrongActivity { .. })));
    let (done, _) = apply(
        &p,
        &inst,
        Command::CompleteJob {
            activity: j.activity,
            result: json!({"owner": "bob"}),
        },
    )
    .expect("ok");
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.variables()["owner"], json!("bob"));
    assert_eq!(done.variables()["assignment"], json!({"owner": "bob"}));
    let (failed, actions) = apply(
        &p,
        &inst,
        Command::FailJob {
            activity: j.activity,
            message: "SMTP down".into(),
        },
    )
    .expect("ok");
    assert_eq!(failed.status, InstanceStatus::Active);
    assert_eq!(incidents(&actions), ["SMTP down"]);
}

#[test]
fn while_and_until_loops_with_guard() {
    let body = "    start: inc\n    nodes:\n      inc: {type: assign, set: {n: =n + 1}, next: fin}\n      fin: {type: end}\n    next: done\n  done: {type: end}\n";
    let w = process(&format!(
        "id: w\nvariables: {{n: {{type: integer, default: 0}}}}\nstart: [{{id: go, next: l}}]\nnodes:\n  l:\n    type: loop\n    while: n < 3\n{body}"
    ));
    let (inst, _) = start(&w, json!({}));
    assert_eq!(
        (inst.status, inst.variables()["n"].clone()),
        (InstanceStatus::Completed, json!(3))
    );
    let (inst, _) = start(&w, json!({"n": 5}));
    assert_eq!(
        inst.variables()["n"],
        json!(5),
        "while tests before the first run"
    );
    let u = process(&format!(
        "id: u\nvariables: {{n: {{type: integer, default: 0}}}}\nstart: [{{id: go, next: l}}]\nnodes:\n  l:\n    type: loop\n    until: n >= 0\n{body}"
    ));
    let (inst, _) = start(&u, json!({}));
    assert_eq!(
        inst.variables()["n"],
        json!(1),
        "until runs the body once before testing"
    );
    let g = process(&format!(
        "id: g\nvariables: {{n: {{type: integer, default: 0}}}}\nstart: [{{id: go, next: l}}]\nnodes:\n  l:\n    type: loop\n    while: \"true\"\n    max_iterations: 4\n{body}"
    ));
    let (inst, actions) = start(&g, json!({}));
    assert_eq!(inst.variables()["n"], json!(4));
    assert_eq!(
        incidents(&actions),
        ["loop `l` ran 4 times, its `max_iterations`"]
    );
}

#[test]
fn subprocess_scope_keeps_local_variables_local() {
    let p = process(
        "id: sp\nstart: [{id: go, next: sub}]\nnodes:\n  sub:\n    type: subprocess\n    variables: {tmp: {type: integer, default: 1}}\n    start: work\n    nodes:\n      work: {type: assign, set: {tmp: =tmp + 1, result: =tmp * 10}, next: fin}\n      fin: {type: end}\n    next: done\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(
        inst.variables().get("tmp"),
        None,
        "declared in the subprocess"
    );
    assert_eq!(
        inst.variables()["result"],
        json!(20),
        "undeclared: written to the process"
    );
    assert_eq!(completed(&actions), ["go", "work", "fin", "sub", "done"]);
    assert_eq!(inst.scopes.len(), 1, "the inner scope is gone");
}

#[test]
fn terminate_aborts_every_other_path() {
    let p = process(
        "id: te\nstart: [{id: go, next: split}]\nnodes:\n  split: {type: parallel, next: [wait, stop]}\n  wait: {type: user, next: done}\n  stop: {type: end, terminate: true}\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(inst.status, InstanceStatus::Terminated);
    assert!(inst.tokens.is_empty());
    let t = tasks(&actions)[0].activity;
    assert!(actions.contains(&Action::CloseTask {
        activity: t,
        state: Lifecycle::Aborted
    }));
}

#[test]
fn cancel_aborts_tasks_and_ends_the_instance() {
    let p = process(TASK);
    let (inst, actions) = start(&p, json!({"owner": "ann", "region": "x", "vip": false}));
    let (inst2, cancel) = apply(
        &p,
        &inst,
        Command::Cancel {
            actor: Some("admin".into()),
        },
    )
    .expect("cancels");
    assert_eq!(inst2.status, InstanceStatus::Cancelled);
    let t = tasks(&actions)[0].activity;
    assert!(cancel.contains(&Action::CloseTask {
        activity: t,
        state: Lifecycle::Aborted
    }));
    assert!(matches!(
        apply(&p, &inst2, Command::Cancel { actor: None }),
        Err(Error::NotActive(_))
    ));
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
fn an_endless_automatic_loop_becomes_an_incident() {
    let p = process(
        "id: e\nstart: [{id: go, next: a}]\nnodes:\n  a: {type: assign, set: {n: 1}, next: g}\n  g:\n    type: exclusive\n    branches: [{when: n > 5, to: done}]\n    default: a\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(inst.status, InstanceStatus::Active);
    assert_eq!(incidents(&actions).len(), 1);
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

#[test]
fn task_due_dates_count_working_days() {
    let p = process(
        "id: d\nstart: [{id: go, next: t}]\nnodes:\n  t: {type: user, due: P1BD, next: e}\n  e: {type: end}\n",
    );
    let (_, actions) = start(&p, json!({}));
    assert_eq!(
        tasks(&actions)[0].due,
        Some(friday() + chrono::Duration::days(3)),
        "Friday + 1 working day is Monday"
    );
}

#[test]
fn receive_task_waits_for_its_message_and_maps_it() {
    let p = process(
        "id: r\nstart: [{id: go, next: w}]\nnodes:\n  w:\n    type: receive\n    message: paid\n    key: order\n    out: {amount: =message.total}\n    next: e\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({"order": "o-1"}));
    let s = subs(&actions);
    assert_eq!(
        s[0].trigger,
        Trigger::Message {
            name: "paid".into(),
            key: Some("o-1".into())
        }
    );
    let (inst, actions) = fire(&p, &inst, s[0].id, json!({"total": 30}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables().get("amount"), Some(&json!(30)));
    assert!(inst.subscriptions.is_empty());
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Unsubscribe(u) if u.id == s[0].id))
    );
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

#[test]
fn timer_catch_waits_until_its_duration() {
    let p = process(
        "id: t\nstart: [{id: go, next: w}]\nnodes:\n  w: {type: catch, timer: PT15M, next: e}\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let s = subs(&actions);
    assert_eq!(
        s[0].trigger,
        Trigger::Timer {
            due: friday() + chrono::Duration::minutes(15)
        }
    );
    let (inst, _) = fire(&p, &inst, s[0].id, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
}

const BOUNDARY: &str = "id: b\nstart: [{id: go, next: work}]\nnodes:\n  work:\n    type: user\n    assignee: ann\n    boundary:\n      - {id: remind, timer: PT1H, interrupting: false, to: nudge}\n      - {id: stop, signal: halt, to: stopped}\n    next: done\n  nudge: {type: end}\n  stopped: {type: end}\n  done: {type: end}\n";

#[test]
fn non_interrupting_boundary_runs_beside_the_task() {
    let p = process(BOUNDARY);
    let (inst, actions) = start(&p, json!({}));
    let s = subs(&actions);
    assert_eq!(s.len(), 2, "the timer and the signal boundary are armed");
    let (inst, actions) = fire(&p, &inst, s[0].id, json!({}));
    assert_eq!(completed(&actions), ["remind", "nudge"]);
    assert_eq!(inst.tokens.len(), 1, "the task still waits");
    assert_eq!(inst.subscriptions.len(), 1, "a one-shot timer is gone");
    let (inst, actions) = complete_task(&p, &inst, "work", &actions_of_start(&p), json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Unsubscribe(u) if u.id == s[1].id)),
        "completing the task withdraws its signal boundary"
    );
}

fn actions_of_start(p: &Process) -> Vec<Action> {
    start(p, json!({})).1
}

#[test]
fn interrupting_boundary_cancels_the_task() {
    let p = process(BOUNDARY);
    let (inst, actions) = start(&p, json!({}));
    let s = subs(&actions);
    let (inst, actions) = fire(&p, &inst, s[1].id, json!({"why": "closed"}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(completed(&actions), ["stop", "stopped"]);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::CloseTask {
            state: Lifecycle::Aborted,
            ..
        }
    )));
    assert_eq!(inst.variables().get("why"), Some(&json!("closed")));
}

#[test]
fn event_gateway_takes_the_first_event_and_withdraws_the_rest() {
    let p = process(
        "id: g\nstart: [{id: go, next: gw}]\nnodes:\n  gw:\n    type: event\n    events:\n      - {message: reply, to: yes}\n      - {timer: P2D, to: late}\n  yes: {type: end}\n  late: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let s = subs(&actions);
    assert_eq!(s.len(), 2);
    let (inst, actions) = fire(&p, &inst, s[1].id, json!({}));
    assert_eq!(completed(&actions), ["gw", "late"]);
    assert_eq!(inst.status, InstanceStatus::Completed);
    let withdrawn: Vec<SubscriptionId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Unsubscribe(u) => Some(u.id),
            _ => None,
        })
        .collect();
    assert_eq!(withdrawn, [s[0].id, s[1].id]);
}

#[test]
fn errors_propagate_out_to_the_nearest_catching_boundary() {
    let p = process(
        "id: e\nstart: [{id: go, next: outer}]\nnodes:\n  outer:\n    type: subprocess\n    start: inner\n    boundary: [{error: credit, to: refused}]\n    nodes:\n      inner:\n        type: subprocess\n        start: check\n        boundary: [{error: other, to: never}]\n        nodes:\n          check: {type: end, error: credit}\n        next: fine\n      never: {type: end}\n      fine: {type: end}\n    next: done\n  refused: {type: end}\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    let done = completed(&actions);
    assert!(done.contains(&"outer.boundary0".to_owned()), "{done:?}");
    assert_eq!(done.last().map(String::as_str), Some("refused"));
    assert!(inst.scopes.len() == 1, "inner scopes are gone");
}

#[test]
fn uncaught_error_is_an_incident_and_resolve_moves_on() {
    let p = process("id: e\nstart: [{id: go, next: t}]\nnodes:\n  t: {type: throw, error: boom}\n");
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(
        incidents(&actions),
        ["error `boom` was not caught by any boundary event"]
    );
    let TokenState::Incident { activity, .. } = inst.tokens[0].state else {
        panic!("an incident holds the token")
    };
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::Resolve {
            activity,
            variables: Vars::new(),
            actor: Some("admin".into()),
        },
    )
    .expect("resolves");
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CloseIncident { how, .. } if how == "resolved"))
    );
}

#[test]
fn job_business_error_goes_to_the_tasks_own_boundary() {
    let p = process(
        "id: j\nstart: [{id: go, next: pay}]\nnodes:\n  pay:\n    type: service\n    action: pay.charge\n    boundary: [{error: declined, to: declined}]\n    next: done\n  declined: {type: end}\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let job = jobs(&actions)[0].clone();
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::JobError {
            activity: job.activity,
            code: "declined".into(),
            message: "card".into(),
        },
    )
    .expect("raises");
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(completed(&actions), ["pay.boundary0", "declined"]);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CancelJob { activity } if *activity == job.activity))
    );
}

#[test]
fn escalation_without_interrupting_lets_the_thrower_go_on() {
    let p = process(
        "id: x\nstart: [{id: go, next: sp}]\nnodes:\n  sp:\n    type: subprocess\n    start: warn\n    boundary: [{escalation: late, interrupting: false, to: tell}]\n    nodes:\n      warn: {type: throw, escalation: late, next: wait}\n      wait: {type: user, assignee: ann, next: fin}\n      fin: {type: end}\n    next: done\n  tell: {type: end}\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let done = completed(&actions);
    assert!(done.contains(&"tell".to_owned()), "{done:?}");
    assert_eq!(
        tasks(&actions).len(),
        1,
        "the subprocess went on to its task"
    );
    assert_eq!(inst.status, InstanceStatus::Active);
}

#[test]
fn throw_sends_messages_and_signals_with_evaluated_payloads() {
    let p = process(
        "id: s\nstart: [{id: go, next: m}]\nnodes:\n  m: {type: throw, message: order_placed, key: id, payload: {total: =n * 2}, next: sig}\n  sig: {type: end, signal: closed}\n",
    );
    let (_, actions) = start(&p, json!({"id": "o-7", "n": 21}));
    assert!(actions.contains(&Action::SendMessage {
        name: "order_placed".into(),
        key: Some("o-7".into()),
        variables: vars(json!({"total": 42}))
    }));
    assert!(actions.contains(&Action::Broadcast {
        name: "closed".into(),
        variables: Vars::new()
    }));
}

#[test]
fn retry_reruns_a_failed_job_with_new_retries() {
    let p = process(
        "id: j\nstart: [{id: go, next: pay}]\nnodes:\n  pay: {type: service, action: pay.charge, next: done}\n  done: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let job = jobs(&actions)[0].clone();
    let (inst, _) = apply(
        &p,
        &inst,
        Command::FailJob {
            activity: job.activity,
            message: "down".into(),
        },
    )
    .expect("fails");
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::Retry {
            activity: job.activity,
            retries: Some(7),
            variables: Vars::new(),
            actor: None,
        },
    )
    .expect("retries");
    assert_eq!(jobs(&actions)[0].retries, 7);
    assert!(matches!(inst.tokens[0].state, TokenState::Waiting { .. }));
}

mod generated {
    //! Property test: random structured graphs run to completion without losing a
    //! token, and every activity instance that started also ended. The graphs
    //! nest gateways, multi-instance subprocesses (sequential and parallel, their
    //! bodies with joins of their own), subprocesses whose body may raise an
    //! error that a boundary event on the subprocess catches, and subprocesses
    //! with a non-interrupting event subprocess whose runs (started by notes sent
    //! at random moments) each split and join.
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
        /// A multi-instance subprocess over `count` runs around the block.
        Multi(Box<Block>, u8, bool),
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
                (inner.clone(), 0u8..3, any::<bool>()).prop_map(|(b, n, par)| Block::Multi(
                    Box::new(b),
                    n,
                    par
                )),
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
                Block::Multi(inner, count, parallel) => {
                    let id = self.id("m");
                    let multi = format!("multi: {{count: \"{count}\", parallel: {parallel}}}");
                    self.scope(&id, inner, false, false, &[multi], next);
                    id
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

mod nested;

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
