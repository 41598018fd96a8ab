//! Nested constructs: multi-instance, event subprocesses, compensation, and the
//! machine's side of call and spawn.

use super::*;

fn task_of<'a>(actions: &'a [Action], node: &str) -> Vec<&'a TaskSpec> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateTask(t) if t.node == node => Some(t),
            _ => None,
        })
        .collect()
}

/// The first incident the actions open: its activity and message.
fn first_incident(actions: &[Action]) -> (ActivityInstanceId, String) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Incident {
                activity, message, ..
            } => Some((*activity, message.clone())),
            _ => None,
        })
        .expect("an incident")
}

fn complete_activity(
    p: &Process,
    inst: &Instance,
    activity: ActivityInstanceId,
    v: Value,
) -> (Instance, Vec<Action>) {
    apply(
        p,
        inst,
        Command::CompleteTask {
            activity,
            variables: vars(v),
            actor: None,
        },
    )
    .expect("completes")
}

const APPROVERS: &str = "
id: approvals
start: [{id: go, next: approve}]
nodes:
  approve:
    type: user
    assignee: =approver
    multi: {items: approvers, as: approver, parallel: true, completion: completed >= 2, output: ok, into: answers}
    next: done
  done: {type: end}
";

#[test]
fn parallel_multi_instance_opens_a_task_per_item_and_finishes_at_its_completion_condition() {
    let p = process(APPROVERS);
    let (inst, actions) = start(&p, json!({"approvers": ["ann", "bob", "cy"]}));
    let open = task_of(&actions, "approve");
    let assignees: Vec<_> = open
        .iter()
        .map(|t| t.assignee.clone().unwrap_or_default())
        .collect();
    assert_eq!(assignees, ["ann", "bob", "cy"]);
    let (bob, cy, ann) = (open[1].activity, open[2].activity, open[0].activity);
    let (inst, actions) = complete_activity(&p, &inst, cy, json!({"ok": false}));
    assert_eq!(inst.status, InstanceStatus::Active, "one of two needed");
    assert!(!actions.iter().any(|a| matches!(
        a,
        Action::CloseTask {
            state: Lifecycle::Aborted,
            ..
        }
    )));
    let (inst, actions) = complete_activity(&p, &inst, bob, json!({"ok": true}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(
        actions.contains(&Action::CloseTask {
            activity: ann,
            state: Lifecycle::Aborted
        }),
        "ann's task withdrawn"
    );
    assert_eq!(
        inst.variables()["answers"],
        json!([null, true, false]),
        "outputs in item order"
    );
    assert!(
        !inst.variables().contains_key("ok"),
        "a run's variables stay in the run"
    );
}

#[test]
fn sequential_multi_instance_runs_one_item_after_the_other() {
    let p = process(
        "id: s\nstart: [{id: go, next: t}]\nnodes:\n  t: {type: user, assignee: =who, multi: {items: people, as: who, output: index, into: order}, next: e}\n  e: {type: end}\n",
    );
    let (mut inst, mut actions) = start(&p, json!({"people": ["a", "b", "c"]}));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let open = task_of(&actions, "t");
        assert_eq!(open.len(), 1, "one run at a time");
        seen.push(open[0].assignee.clone().unwrap_or_default());
        (inst, actions) = complete_activity(&p, &inst, open[0].activity, json!({}));
    }
    assert_eq!(seen, ["a", "b", "c"]);
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["order"], json!([0, 1, 2]));
}

#[test]
fn multi_instance_over_a_count_and_an_empty_collection() {
    let p = process(
        "id: c\nstart: [{id: go, next: t}]\nnodes:\n  t: {type: assign, set: {x: 1}, next: m}\n  m: {type: subprocess, start: s, nodes: {s: {type: assign, set: {sq: =index * index}, next: z}, z: {type: end}}, multi: {count: n, parallel: true, output: sq, into: squares}, next: e}\n  e: {type: end}\n",
    );
    let (inst, _) = start(&p, json!({"n": 4}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["squares"], json!([0, 1, 4, 9]));
    let (inst, _) = start(&p, json!({"n": 0}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["squares"], json!([]));
}

#[test]
fn a_boundary_timer_on_a_multi_instance_activity_cancels_every_run() {
    let p = process(
        "id: b\nstart: [{id: go, next: t}]\nnodes:\n  t:\n    type: user\n    multi: {count: \"3\", parallel: true}\n    boundary: [{timer: PT1H, to: late}]\n    next: e\n  late: {type: end}\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(task_of(&actions, "t").len(), 3);
    let timers: Vec<_> = inst
        .subscriptions
        .iter()
        .filter(|s| matches!(s.trigger, Trigger::Timer { .. }))
        .collect();
    assert_eq!(
        timers.len(),
        1,
        "the boundary is on the activity, not on each run"
    );
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::Trigger {
            subscription: timers[0].id,
            variables: Vars::new(),
        },
    )
    .expect("fires");
    let aborted = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::CloseTask {
                    state: Lifecycle::Aborted,
                    ..
                }
            )
        })
        .count();
    assert_eq!(aborted, 3);
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(completed(&actions).contains(&"late".to_owned()));
}

const EVENT_SUB: &str = "
id: es
start: [{id: go, next: work}]
nodes:
  work: {type: user, next: done}
  done: {type: end}
  on_cancel:
    type: event_subprocess
    message: cancel
    start: note
    nodes:
      note: {type: assign, set: {cancelled: true}, next: fin}
      fin: {type: end}
  remind:
    type: event_subprocess
    timer: {cycle: \"0 0 9 * * *\"}
    interrupting: false
    start: ping
    nodes:
      ping: {type: assign, set: {pings: =pings + 1}, next: fin2}
      fin2: {type: end}
";

#[test]
fn an_interrupting_event_subprocess_cancels_its_scope_and_a_non_interrupting_one_runs_beside_it() {
    let p = process(EVENT_SUB);
    let (inst, actions) = start(&p, json!({"pings": 0}));
    assert_eq!(task_of(&actions, "work").len(), 1);
    assert_eq!(
        inst.subscriptions.len(),
        2,
        "both triggers armed with the scope"
    );
    let timer = inst
        .subscriptions
        .iter()
        .find(|s| s.node == "remind")
        .cloned()
        .expect("timer");
    let (inst, _) = apply(
        &p,
        &inst,
        Command::Trigger {
            subscription: timer.id,
            variables: Vars::new(),
        },
    )
    .expect("fires");
    assert_eq!(inst.variables()["pings"], json!(1));
    assert_eq!(inst.status, InstanceStatus::Active, "the task still waits");
    let again = inst
        .subscriptions
        .iter()
        .find(|s| s.node == "remind")
        .expect("the cycle re-arms");
    assert_ne!(again.id, timer.id);
    let cancel = inst
        .subscriptions
        .iter()
        .find(|s| s.node == "on_cancel")
        .cloned()
        .expect("message");
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::Trigger {
            subscription: cancel.id,
            variables: Vars::new(),
        },
    )
    .expect("fires");
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::CloseTask {
            state: Lifecycle::Aborted,
            ..
        }
    )));
    assert_eq!(inst.variables()["cancelled"], json!(true));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(inst.subscriptions.is_empty());
}

#[test]
fn an_error_event_subprocess_catches_an_error_of_its_scope_before_the_boundary_outside() {
    let p = process(
        "id: ee\nstart: [{id: go, next: sub}]\nnodes:\n  sub:\n    type: subprocess\n    start: t\n    nodes:\n      t: {type: service, action: bank.pay, next: z}\n      z: {type: end}\n      handle:\n        type: event_subprocess\n        error: DECLINED\n        start: h\n        nodes:\n          h: {type: assign, set: {handled: true}, next: hz}\n          hz: {type: end}\n    boundary: [{error: \"*\", to: outer}]\n    next: e\n  outer: {type: end}\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let job = jobs(&actions)[0].activity;
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::JobError {
            activity: job,
            code: "DECLINED".into(),
            message: String::new(),
        },
    )
    .expect("raises");
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["handled"], json!(true));
    let done = completed(&actions);
    assert!(
        done.contains(&"e".to_owned()),
        "the subprocess completed normally: {done:?}"
    );
    assert!(!done.contains(&"outer".to_owned()));
}

const SAGA: &str = "
id: saga
start: [{id: go, next: hotel}]
nodes:
  hotel: {type: service, action: travel.book_hotel, compensation: cancel_hotel, next: flight}
  flight: {type: service, action: travel.book_flight, compensation: cancel_flight, next: charge}
  charge:
    type: service
    action: travel.charge
    boundary: [{error: DECLINED, to: undo}]
    next: done
  undo: {type: end, compensate: all}
  done: {type: end}
  cancel_hotel: {type: service, action: travel.unbook_hotel}
  cancel_flight: {type: service, action: travel.unbook_flight}
";

fn finish_job(p: &Process, inst: &Instance, actions: &[Action]) -> (Instance, Vec<Action>, String) {
    let j = jobs(actions).into_iter().last().expect("a job");
    let (i, a) = apply(
        p,
        inst,
        Command::CompleteJob {
            activity: j.activity,
            result: Value::Null,
        },
    )
    .expect("completes");
    (i, a, j.action)
}

#[test]
fn a_compensation_throw_runs_the_handlers_of_completed_activities_in_reverse_order() {
    let p = process(SAGA);
    let (inst, actions) = start(&p, json!({}));
    let (inst, actions, _) = finish_job(&p, &inst, &actions);
    let (inst, actions, _) = finish_job(&p, &inst, &actions);
    let charge = jobs(&actions)[0].activity;
    let (mut inst, mut actions) = apply(
        &p,
        &inst,
        Command::JobError {
            activity: charge,
            code: "DECLINED".into(),
            message: String::new(),
        },
    )
    .expect("raises");
    let mut undone = Vec::new();
    while inst.status == InstanceStatus::Active {
        let (i, a, action) = finish_job(&p, &inst, &actions);
        undone.push(action);
        (inst, actions) = (i, a);
    }
    assert_eq!(undone, ["travel.unbook_flight", "travel.unbook_hotel"]);
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(completed(&actions).contains(&"undo".to_owned()));
}

#[test]
fn a_call_waits_for_its_child_and_maps_its_outputs_back() {
    let p = process(
        "id: parent\nstart: [{id: go, next: c}]\nnodes:\n  c: {type: call, process: child, business_key: =order, in: {amount: =total * 2}, out: {paid: =paid_at}, boundary: [{error: NOPE, to: failed}], next: e}\n  failed: {type: end}\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({"order": "o-1", "total": 21}));
    let Some(Action::StartChild {
        activity,
        process,
        business_key,
        variables,
        waits,
        ..
    }) = actions
        .iter()
        .find(|a| matches!(a, Action::StartChild { .. }))
        .cloned()
    else {
        panic!("no child started: {actions:?}");
    };
    assert_eq!(
        (process.as_str(), business_key.as_deref(), waits),
        ("child", Some("o-1"), true)
    );
    assert_eq!(variables["amount"], json!(42));
    let ended = Command::ChildEnded {
        activity,
        child: "2".into(),
        status: InstanceStatus::Completed,
        variables: vars(json!({"paid_at": "today", "secret": 1})),
    };
    let (done, _) = apply(&p, &inst, ended).expect("ends");
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.variables()["paid"], json!("today"));
    assert!(
        !done.variables().contains_key("secret"),
        "only `out` comes back"
    );
    // An error the child did not catch reaches the call's boundary…
    let (caught, actions) = apply(
        &p,
        &inst,
        Command::ChildRaised {
            activity,
            code: "NOPE".into(),
            error: true,
        },
    )
    .expect("caught");
    assert!(completed(&actions).contains(&"failed".to_owned()));
    assert!(
        actions.contains(&Action::CancelChildren { activity }),
        "the child is cancelled"
    );
    assert_eq!(caught.status, InstanceStatus::Completed);
    // …and one nothing catches is refused: it stays an incident in the child.
    let uncaught = apply(
        &p,
        &inst,
        Command::ChildRaised {
            activity,
            code: "OTHER".into(),
            error: true,
        },
    );
    assert_eq!(uncaught, Err(Error::Uncaught("OTHER".into())));
    // A cancelled child leaves an incident on the call.
    let (held, actions) = apply(
        &p,
        &inst,
        Command::ChildEnded {
            activity,
            child: "2".into(),
            status: InstanceStatus::Cancelled,
            variables: Vars::new(),
        },
    )
    .expect("applies");
    assert_eq!(incidents(&actions), ["the called instance 2 was cancelled"]);
    assert_eq!(held.status, InstanceStatus::Active);
}

#[test]
fn cancelling_a_caller_cancels_its_children_and_an_uncaught_child_error_goes_to_the_caller() {
    let p = process(
        "id: parent\nstart: [{id: go, next: c}]\nnodes:\n  c: {type: call, process: child, next: e}\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({}));
    let Some(Action::StartChild { activity, .. }) = actions
        .iter()
        .find(|a| matches!(a, Action::StartChild { .. }))
        .cloned()
    else {
        panic!("no child");
    };
    let (_, actions) = apply(&p, &inst, Command::Cancel { actor: None }).expect("cancels");
    assert!(actions.contains(&Action::CancelChildren { activity }));

    let child =
        process("id: child\nstart: [{id: go, next: f}]\nnodes:\n  f: {type: end, error: NOPE}\n");
    let link = ParentLink {
        instance: "1".into(),
        activity,
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

#[test]
fn a_signal_event_subprocess_lives_with_its_subprocess_scope() {
    let p = process(
        "id: sig\nstart: [{id: go, next: sub}]\nnodes:\n  sub:\n    type: subprocess\n    start: t\n    nodes:\n      t: {type: user, next: z}\n      z: {type: end}\n      note:\n        type: event_subprocess\n        signal: prices.changed\n        interrupting: false\n        start: n\n        nodes:\n          n: {type: assign, set: {noticed: =noticed + 1}, next: nz}\n          nz: {type: end}\n    next: e\n  e: {type: end}\n",
    );
    let (inst, actions) = start(&p, json!({"noticed": 0}));
    let sub = inst
        .subscriptions
        .iter()
        .find(|s| s.node == "note")
        .cloned()
        .expect("armed with the subprocess");
    assert_eq!(
        sub.trigger,
        Trigger::Signal {
            name: "prices.changed".into()
        }
    );
    let fire = || Command::Trigger {
        subscription: sub.id,
        variables: Vars::new(),
    };
    let (inst, _) = apply(&p, &inst, fire()).expect("fires");
    let (inst, _) = apply(&p, &inst, fire()).expect("fires again: non-interrupting signals repeat");
    assert_eq!(inst.variables()["noticed"], json!(2));
    let task = task_of(&actions, "t")[0].activity;
    let (inst, actions) = complete_activity(&p, &inst, task, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(
        actions.contains(&Action::Unsubscribe(sub)),
        "withdrawn when its scope closes"
    );
    assert!(inst.subscriptions.is_empty());
}

/// Issue 16, defect 1: a parallel join inside a body that runs several times at
/// once joins the tokens of its own run only.
const RUNS_WITH_A_JOIN: &str = "
id: runs
start: [{id: go, next: body}]
nodes:
  body:
    type: subprocess
    multi: {count: \"2\", parallel: true}
    start: s
    nodes:
      s: {type: parallel, next: [a, b]}
      a: {type: user, next: j}
      b: {type: user, next: j}
      j: {type: parallel, next: z}
      z: {type: end}
    next: done
  done: {type: end}
";

#[test]
fn a_parallel_join_in_a_multi_instance_body_joins_only_its_own_runs_tokens() {
    let p = process(RUNS_WITH_A_JOIN);
    let (inst, actions) = start(&p, json!({}));
    let (a, b) = (task_of(&actions, "a"), task_of(&actions, "b"));
    assert_eq!((a.len(), b.len()), (2, 2), "each run opens a and b");
    // The runs' scopes, to tell the runs' tasks apart.
    let run_of = |inst: &Instance, activity: ActivityInstanceId| {
        inst.tokens
            .iter()
            .find(|t| matches!(t.state, TokenState::Waiting { activity: x, .. } if x == activity))
            .map(|t| t.scope)
            .expect("a waiting task")
    };
    let (a0, a1) = (a[0].activity, a[1].activity);
    let run0 = run_of(&inst, a0);
    let b_of_run1 = b
        .iter()
        .map(|t| t.activity)
        .find(|x| run_of(&inst, *x) != run0)
        .expect("run 1's b");
    let b_of_run0 = b
        .iter()
        .map(|t| t.activity)
        .find(|x| run_of(&inst, *x) == run0)
        .expect("run 0's b");
    let a_of_run1 = if run_of(&inst, a1) == run0 { a0 } else { a1 };
    let a_of_run0 = if a_of_run1 == a0 { a1 } else { a0 };

    // a of run 0 and b of run 1: two tokens at j, but of different runs.
    let (inst, _) = complete_activity(&p, &inst, a_of_run0, json!({}));
    let (inst, actions) = complete_activity(&p, &inst, b_of_run1, json!({}));
    assert!(
        !actions
            .iter()
            .any(|x| matches!(x, Action::History(h) if h.node == "z")),
        "no run reached its end: the join must not mix runs"
    );
    let at_join: Vec<ScopeId> = inst
        .tokens
        .iter()
        .filter(|t| t.node == "j")
        .map(|t| t.scope)
        .collect();
    assert_eq!(at_join.len(), 2, "both tokens still wait at the join");
    assert_ne!(at_join[0], at_join[1], "one in each run");

    // Completing each run's other branch finishes that run; then the activity.
    let (inst, _) = complete_activity(&p, &inst, b_of_run0, json!({}));
    assert_eq!(
        inst.status,
        InstanceStatus::Active,
        "run 1 still waits for a"
    );
    let (inst, _) = complete_activity(&p, &inst, a_of_run1, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
}

/// Issue 16, defect 3: a multi-instance subprocess's `output` reads what its
/// body declared.
#[test]
fn a_multi_instance_output_reads_a_variable_its_subprocess_declares() {
    let p = process(
        "
id: outs
start: [{id: go, next: body}]
nodes:
  body:
    type: subprocess
    variables: {mine: {type: integer}}
    multi: {count: \"3\", parallel: true, output: mine, into: outs}
    start: s
    nodes:
      s: {type: assign, set: {mine: =index * 10}, next: z}
      z: {type: end}
    next: done
  done: {type: end}
",
    );
    let (inst, actions) = start(&p, json!({}));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Incident { .. })),
        "{actions:?}"
    );
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["outs"], json!([0, 10, 20]));
    assert!(
        !inst.variables().contains_key("mine"),
        "the body's variable stays in the body"
    );
}

/// Issue 16, defect 4: a compensation handler sees its activity's scope as it
/// was when the scope completed.
#[test]
fn a_compensation_handler_reads_the_variables_of_its_completed_subprocess() {
    let p = process(
        "
id: trip
start: [{id: go, next: stay}]
nodes:
  stay:
    type: subprocess
    variables: {room: {type: string}}
    start: s
    nodes:
      s: {type: assign, set: {room: '=\"R-\" + string(nights)'}, next: book}
      book: {type: service, action: hotel.book, compensation: unbook, next: z}
      unbook: {type: service, action: hotel.unbook, with: {room: =room}}
      z: {type: end}
    next: charge
  charge:
    type: service
    action: pay.charge
    boundary: [{error: DECLINED, to: undo}]
    next: done
  undo: {type: end, compensate: all}
  done: {type: end}
",
    );
    let (inst, actions) = start(&p, json!({"nights": 3}));
    let (inst, actions, booked) = finish_job(&p, &inst, &actions);
    assert_eq!(booked, "hotel.book");
    assert!(
        !inst.variables().contains_key("room"),
        "room was the subprocess's own"
    );
    let charge = jobs(&actions)[0].activity;
    let (_, actions) = apply(
        &p,
        &inst,
        Command::JobError {
            activity: charge,
            code: "DECLINED".into(),
            message: String::new(),
        },
    )
    .expect("raises");
    let unbook = jobs(&actions);
    assert_eq!(unbook.len(), 1, "{actions:?}");
    assert_eq!(unbook[0].action, "hotel.unbook");
    assert_eq!(unbook[0].input, json!({"room": "R-3"}));
}

/// Issue 16, defect 2: an error raised in one run of a multi-instance
/// subprocess is caught on the activity: every run ends, the boundary path runs
/// in the scope around the activity, and the normal path never does.
#[test]
fn an_error_in_one_run_ends_the_multi_instance_activity_and_runs_the_boundary_path_outside() {
    let p = process(
        "
id: runs_fail
start: [{id: go, next: body}]
nodes:
  body:
    type: subprocess
    multi: {count: \"2\", parallel: true}
    boundary: [{error: RUN_FAILED, to: on_fail}]
    start: s
    nodes:
      s: {type: user, next: check}
      check:
        type: exclusive
        branches: [{when: index == 0, to: boom}]
        default: z
      boom: {type: end, error: RUN_FAILED}
      z: {type: end}
    next: normal
  on_fail: {type: assign, set: {failed_at: =\"run 0\"}, next: wait}
  wait: {type: user, next: e1}
  normal: {type: end}
  e1: {type: end}
",
    );
    let (inst, actions) = start(&p, json!({}));
    let runs = task_of(&actions, "s");
    assert_eq!(runs.len(), 2);
    // Which task is whose: a run's scope holds its index.
    let index_of = |activity: ActivityInstanceId| -> Value {
        let t = inst
            .tokens
            .iter()
            .find(|t| matches!(t.state, TokenState::Waiting { activity: x, .. } if x == activity))
            .expect("waiting");
        inst.visible_vars(t.scope)["index"].clone()
    };
    let (run0, run1) = if index_of(runs[0].activity) == json!(0) {
        (runs[0].activity, runs[1].activity)
    } else {
        (runs[1].activity, runs[0].activity)
    };
    let (inst, actions) = complete_activity(&p, &inst, run0, json!({}));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::History(h) if h.node == "on_fail")),
        "the boundary path runs: {actions:?}"
    );
    assert_eq!(
        inst.variables()["failed_at"],
        json!("run 0"),
        "on_fail ran in the scope around the activity: its write is kept"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::History(h) if h.activity == run1 && h.state == Lifecycle::Aborted)),
        "the other run's task is aborted: {actions:?}"
    );
    assert!(
        !inst
            .tokens
            .iter()
            .any(|t| t.node == "body" || t.node == "s"),
        "nothing of the activity is left: {:?}",
        inst.tokens
    );
    // The other run's task is gone: completing it is refused, and the normal
    // path never runs.
    assert!(
        apply(
            &p,
            &inst,
            Command::CompleteTask {
                activity: run1,
                variables: Vars::new(),
                actor: None
            }
        )
        .is_err()
    );
    assert!(!completed(&actions).contains(&"normal".to_owned()));
}

/// Issue 16, defect 2 (escalation): a non-interrupting escalation from one run
/// is caught on the activity; its path runs around the activity (its write is
/// kept) while every run goes on.
#[test]
fn a_non_interrupting_escalation_from_a_run_keeps_the_runs_and_its_paths_writes() {
    let p = process(
        "
id: runs_warn
start: [{id: go, next: body}]
nodes:
  body:
    type: subprocess
    multi: {count: \"2\", parallel: true}
    boundary: [{escalation: late, interrupting: false, to: tell}]
    start: warn
    nodes:
      warn: {type: throw, escalation: late, next: wait}
      wait: {type: user, next: z}
      z: {type: end}
    next: done
  tell: {type: assign, set: {told: true}, next: told_end}
  told_end: {type: end}
  done: {type: end}
",
    );
    let (inst, actions) = start(&p, json!({}));
    assert_eq!(inst.variables()["told"], json!(true), "{actions:?}");
    let waiting = task_of(&actions, "wait");
    assert_eq!(waiting.len(), 2, "both runs go on");
    let (inst, _) = complete_activity(&p, &inst, waiting[0].activity, json!({}));
    assert_eq!(inst.status, InstanceStatus::Active);
    let (inst, actions) = complete_activity(&p, &inst, waiting[1].activity, json!({}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert!(completed(&actions).contains(&"done".to_owned()));
}

/// Issue 16, defect 3 (incident): an `output` that fails is an incident on
/// that run alone; the other runs keep their open tasks, and a retry evaluates
/// the failed run's output again without redoing its work.
#[test]
fn a_failing_output_is_an_incident_of_its_run_only_and_a_retry_resumes_it() {
    let p = process(
        "
id: outs_fail
start: [{id: go, next: t}]
nodes:
  t:
    type: user
    multi: {count: \"2\", parallel: false, output: answer, into: answers}
    next: done
  done: {type: end}
",
    );
    let (inst, actions) = start(&p, json!({}));
    let first = task_of(&actions, "t")[0].activity;
    // Run 0 completes without `answer`: its output fails.
    let (inst, actions) = complete_activity(&p, &inst, first, json!({}));
    let incident = first_incident(&actions);
    assert!(
        incident.1.contains("the `output` of run 0"),
        "{}",
        incident.1
    );
    assert!(
        task_of(&actions, "t").is_empty(),
        "a sequential activity waits for the failed run before opening the next"
    );
    // Resolving with the missing variable evaluates the output again; the run's
    // task is not opened again, and the next run starts.
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::Resolve {
            activity: incident.0,
            variables: vars(json!({"answer": "yes"})),
            actor: None,
        },
    )
    .expect("resolves");
    let next = task_of(&actions, "t");
    assert_eq!(next.len(), 1, "run 1 opens: {actions:?}");
    let (inst, _) = complete_activity(&p, &inst, next[0].activity, json!({"answer": "no"}));
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["answers"], json!(["yes", "no"]));
}

#[test]
fn in_a_parallel_activity_a_failing_output_leaves_the_other_runs_open() {
    let p = process(
        "
id: outs_fail_par
start: [{id: go, next: t}]
nodes:
  t:
    type: user
    multi: {count: \"2\", parallel: true, output: answer, into: answers}
    next: done
  done: {type: end}
",
    );
    let (inst, actions) = start(&p, json!({}));
    let tasks = task_of(&actions, "t");
    let (a0, a1) = (tasks[0].activity, tasks[1].activity);
    let (inst, actions) = complete_activity(&p, &inst, a0, json!({}));
    let (incident, _) = first_incident(&actions);
    assert!(
        !actions.iter().any(
            |a| matches!(a, Action::History(h) if h.activity == a1 && h.state == Lifecycle::Aborted)
        ),
        "the other run's task stays open: {actions:?}"
    );
    let (inst, _) = complete_activity(&p, &inst, a1, json!({"answer": "b"}));
    assert_eq!(
        inst.status,
        InstanceStatus::Active,
        "run 0 is still in its incident"
    );
    // A retry with the missing variable evaluates run 0's output again; its
    // task is not opened again.
    let (inst, actions) = apply(
        &p,
        &inst,
        Command::Retry {
            activity: incident,
            retries: None,
            variables: vars(json!({"answer": "a"})),
            actor: None,
        },
    )
    .expect("retries");
    assert!(
        task_of(&actions, "t").is_empty(),
        "the run's task is not opened again"
    );
    assert_eq!(inst.status, InstanceStatus::Completed);
    assert_eq!(inst.variables()["answers"], json!(["a", "b"]));
}
