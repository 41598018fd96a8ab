//! Multi-instance activities: opening runs, collecting their outputs, the
//! completion condition.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Enters a multi-instance activity: evaluates its items, then opens one run
    /// (sequential) or every run (parallel), each in a scope of its own that holds
    /// the item and its index. Boundary events belong to the whole activity.
    pub(super) fn enter_multi(
        &mut self,
        i: usize,
        node_id: &str,
        node: &'p Node,
        mi: &'p raw::MultiInstance,
    ) {
        let a = self.activity_id();
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
                remainder: false,
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
    pub(super) fn open_run(&mut self, token: TokenId) {
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
        let run = ScopeId(self.id());
        let id = TokenId(self.id());
        self.budget = self.budget.saturating_add(STEPS_PER_RUN);
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
    pub(super) fn run_done(&mut self, run: ScopeId) {
        let Some(c) = self.container_of(run) else {
            self.close_scope(run);
            return;
        };
        let token = self.inst.tokens[c].id;
        let node_id = self.inst.tokens[c].node.clone();
        let Some(mi) = self.m.node(&node_id).and_then(Node::multi) else {
            return;
        };
        if let TokenState::Waiting {
            activity,
            wait: Wait::Multi {
                remainder: true, ..
            },
        } = self.inst.tokens[c].state
        {
            return self.remainder_run_done(token, activity, run);
        }
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
                let a = self.activity_id();
                let id = TokenId(self.id());
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
                    ..
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
                self.park(token);
                if let Some(c) = self.token_index(token) {
                    self.incident(c, a, format!("the `completion` condition: {e}"));
                }
            }
            Ok(true) if open > 0 && mi.rest == Some(raw::Rest::Wait) => {
                self.leave_rest(token);
                self.finish_multi(token);
            }
            Ok(true) => self.finish_multi(token),
            Ok(false) if open == 0 && started >= total => self.finish_multi(token),
            Ok(false) if open == 0 => self.open_run(token),
            Ok(false) => {}
        }
    }

    /// `rest: wait`: the runs still open move to a token of their own at the
    /// node (the remainder, an activity instance of its own), so the activity
    /// can complete and the flow go on while they finish unobserved. The
    /// remainder holds the scope around open until its last run ends; sequential
    /// runs not started yet are not started.
    fn leave_rest(&mut self, token: TokenId) {
        let Some(c) = self.token_index(token) else {
            return;
        };
        let TokenState::Waiting {
            wait: Wait::Multi { runs, items, .. },
            ..
        } = &mut self.inst.tokens[c].state
        else {
            return;
        };
        let runs = std::mem::take(runs);
        let total = items.len();
        let (node, scope) = (self.inst.tokens[c].node.clone(), self.inst.tokens[c].scope);
        let r = self.activity_id();
        let id = TokenId(self.id());
        self.history(r, &node, Lifecycle::Ready, None);
        self.history(r, &node, Lifecycle::Active, None);
        self.inst.tokens.push(Token {
            id,
            node,
            scope,
            from: None,
            state: TokenState::Waiting {
                activity: r,
                wait: Wait::Multi {
                    runs,
                    items: Vec::new(),
                    next: total,
                    completed: 0,
                    outputs: Vec::new(),
                    remainder: true,
                },
            },
        });
    }

    /// Whether token `i` holds the runs `rest: wait` left over.
    pub(super) fn is_remainder(&self, i: usize) -> bool {
        matches!(
            self.inst.tokens[i].state,
            TokenState::Waiting {
                wait: Wait::Multi {
                    remainder: true,
                    ..
                },
                ..
            }
        )
    }

    /// A run left over by `rest: wait` has ended: nothing is collected; the
    /// last one completes the remainder and lets its scope end.
    fn remainder_run_done(&mut self, token: TokenId, a: ActivityInstanceId, run: ScopeId) {
        self.close_scope(run);
        let Some(c) = self.token_index(token) else {
            return;
        };
        let TokenState::Waiting {
            wait: Wait::Multi { runs, .. },
            ..
        } = &mut self.inst.tokens[c].state
        else {
            return;
        };
        runs.retain(|r| *r != run);
        if !runs.is_empty() {
            return;
        }
        let (node, scope) = (self.inst.tokens[c].node.clone(), self.inst.tokens[c].scope);
        self.history(a, &node, Lifecycle::Completed, None);
        self.inst.tokens.remove(c);
        self.scope_maybe_done(scope);
    }

    /// Adds runs to a multi-instance activity while it runs (workflow patterns
    /// 15 and 36): each item gets a run of its own, at once when the runs are
    /// parallel, after the others when sequential. The completion condition
    /// counts them in `total`, and their outputs follow the others in `into`.
    pub(super) fn add_runs(
        &mut self,
        activity: ActivityInstanceId,
        new: Vec<Value>,
    ) -> Result<(), Error> {
        let i = self.waiting_index(activity)?;
        let token = self.inst.tokens[i].id;
        let node = self.inst.tokens[i].node.clone();
        let parallel = self
            .m
            .node(&node)
            .and_then(Node::multi)
            .is_some_and(|m| m.parallel);
        let actual = match &self.inst.tokens[i].state {
            TokenState::Waiting { wait, .. } => match wait {
                Wait::Multi {
                    remainder: false, ..
                } => None,
                Wait::Multi { .. } => Some(
                    "multi-instance activity that has completed (these are the runs it left to finish)",
                ),
                Wait::Task => Some("user task"),
                Wait::Job => Some("service task"),
                Wait::Event => Some("wait for an event"),
                Wait::Call => Some("call activity"),
                Wait::Scope { .. } => Some("subprocess or loop"),
                Wait::Compensate { .. } => Some("compensation"),
            },
            _ => Some("step that does not wait"),
        };
        if let Some(actual) = actual {
            return Err(Error::WrongActivity {
                activity,
                expected: "running multi-instance activity",
                actual,
            });
        }
        let have = match &self.inst.tokens[i].state {
            TokenState::Waiting {
                wait: Wait::Multi { items, .. },
                ..
            } => items.len(),
            _ => 0,
        };
        let asked = have + new.len();
        if asked > MAX_RUNS {
            return Err(Error::TooManyRuns { activity, asked });
        }
        // Items taken from a declared list are checked as its items are: a
        // run added by hand is held to what a run started from the list is.
        let source = self
            .m
            .node(&node)
            .and_then(Node::multi)
            .and_then(|m| m.items.as_ref())
            .map(|e| e.0.trim().trim_start_matches('='));
        let scope = self.inst.tokens[i].scope;
        let shape = source
            .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .and_then(|s| self.declaration(Some(scope), s).map(|d| (s, d)))
            .and_then(|(s, d)| d.items.as_deref().map(|d| (s, d)));
        let mut problems = Vec::new();
        for (k, item) in new.iter().enumerate() {
            let size = serde_json::to_string(item).map_or(usize::MAX, |s| s.len());
            if size > MAX_ITEM_BYTES {
                problems.push(format!(
                    "items[{k}] takes {size} bytes; an item may take at most {MAX_ITEM_BYTES}"
                ));
            }
            if let Some((list, d)) = shape
                && let Err(p) = d.check(&format!("items[{k}]"), item)
            {
                problems.extend(
                    p.into_iter()
                        .map(|p| format!("{p} (as the items of `{list}` are declared)")),
                );
            }
        }
        if !problems.is_empty() {
            return Err(Error::Variables(problems));
        }
        let TokenState::Waiting {
            wait: Wait::Multi { items, outputs, .. },
            ..
        } = &mut self.inst.tokens[i].state
        else {
            return Ok(());
        };
        let added = new.len();
        outputs.extend(std::iter::repeat_n(Value::Null, added));
        items.extend(new);
        // Sequential runs: the next opens when the current one ends.
        if parallel {
            for _ in 0..added {
                self.open_run(token);
            }
        }
        Ok(())
    }

    /// Completes a multi-instance activity: cancels its open runs, writes the
    /// outputs `into` their variable.
    pub(super) fn finish_multi(&mut self, token: TokenId) {
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
}

#[cfg(test)]
mod tests {
    use crate::{ActivityInstanceId, Command, Error, Machine, ManualClock, TokenState, Wait};
    use chrono::{TimeZone, Utc};
    use ordo_model::Options;
    use serde_json::json;

    fn clock() -> ManualClock {
        ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap())
    }

    #[test]
    fn runs_are_added_only_to_a_running_multi_instance_activity_and_within_the_limit() {
        let yaml = "id: p\nstart: [{id: s, next: split}]\nnodes:\n  split: {type: parallel, next: [m, t]}\n  m: {type: user, multi: {count: \"1\", parallel: true}, next: j}\n  t: {type: user, next: j}\n  j: {type: parallel, next: e}\n  e: {type: end}\n";
        let p = ordo_model::load("p.yaml", yaml, &Options::default())
            .process
            .unwrap();
        let m = Machine::new(&p).unwrap();
        let (inst, _) = m
            .start("i".into(), 1, None, Default::default(), &clock())
            .unwrap();
        let activity_at = |node: &str, multi: bool| {
            inst.tokens
                .iter()
                .filter(|t| t.node == node)
                .find_map(|t| match &t.state {
                    TokenState::Waiting { activity, wait } => {
                        (matches!(wait, Wait::Multi { .. }) == multi).then_some(*activity)
                    }
                    _ => None,
                })
                .unwrap()
        };
        let task = activity_at("t", false);
        let add = |activity, n: usize| Command::AddRuns {
            activity,
            items: vec![json!(0); n],
        };
        let err = m.apply(&inst, add(task, 1), &clock()).unwrap_err();
        assert!(
            matches!(err, Error::WrongActivity { .. }),
            "a user task has no runs to add to: {err}"
        );
        assert!(matches!(
            m.apply(&inst, add(ActivityInstanceId(999), 1), &clock())
                .unwrap_err(),
            Error::UnknownActivity(ActivityInstanceId(999))
        ));
        let multi = activity_at("m", true);
        let err = m
            .apply(&inst, add(multi, super::MAX_RUNS), &clock())
            .unwrap_err();
        assert!(
            matches!(err, Error::TooManyRuns { asked, .. } if asked == super::MAX_RUNS + 1),
            "{err}"
        );
        let big = Command::AddRuns {
            activity: multi,
            items: vec![json!("x".repeat(super::MAX_ITEM_BYTES))],
        };
        let err = m.apply(&inst, big, &clock()).unwrap_err();
        assert!(
            matches!(&err, Error::Variables(p) if p[0].contains("an item may take at most")),
            "{err}"
        );
        let (after, _) = m.apply(&inst, add(multi, 2), &clock()).unwrap();
        let tasks = after
            .tokens
            .iter()
            .filter(|t| {
                t.node == "m"
                    && matches!(
                        t.state,
                        TokenState::Waiting {
                            wait: Wait::Task,
                            ..
                        }
                    )
            })
            .count();
        assert_eq!(tasks, 3, "one run at start, two added");
    }

    fn load(yaml: &str) -> ordo_model::Process {
        ordo_model::load("p.yaml", yaml, &Options::default())
            .process
            .unwrap()
    }

    #[test]
    fn fanning_out_to_many_runs_is_not_a_loop() {
        // 2,500 runs of a five-step body are 12,500 automatic steps in one
        // command: more than `MAX_STEPS`, but each run opened adds to it.
        let p = load(
            "id: p\nstart: [{id: s, next: m}]\nnodes:\n  m:\n    type: subprocess\n    multi: {count: \"2500\", parallel: true}\n    start: a\n    nodes:\n      a: {type: assign, set: {x: =1}, next: b}\n      b: {type: assign, set: {x: =2}, next: c}\n      c: {type: assign, set: {x: =3}, next: d}\n      d: {type: empty, next: z}\n      z: {type: end}\n    next: e\n  e: {type: end}\n",
        );
        let (inst, actions) = Machine::new(&p)
            .unwrap()
            .start("i".into(), 1, None, Default::default(), &clock())
            .unwrap();
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, crate::Action::Incident { .. })),
            "no run is taken for a loop"
        );
        assert_eq!(inst.status, crate::InstanceStatus::Completed);
    }

    #[test]
    fn items_count_toward_the_instance_size() {
        let p = load(
            "id: p\nstart: [{id: s, next: m}]\nnodes:\n  m: {type: user, multi: {count: \"1\"}, next: e}\n  e: {type: end}\n",
        );
        let m = Machine::new(&p).unwrap();
        let (mut inst, _) = m
            .start("i".into(), 1, None, Default::default(), &clock())
            .unwrap();
        let activity = inst
            .tokens
            .iter()
            .find_map(|t| match &t.state {
                TokenState::Waiting {
                    activity,
                    wait: Wait::Multi { .. },
                } => Some(*activity),
                _ => None,
            })
            .unwrap();
        let item = json!("x".repeat(60_000));
        let mut refused = None;
        for round in 0..40 {
            match m.apply(
                &inst,
                Command::AddRuns {
                    activity,
                    items: vec![item.clone()],
                },
                &clock(),
            ) {
                Ok((next, _)) => inst = next,
                Err(e) => {
                    refused = Some((round, e));
                    break;
                }
            }
        }
        let (round, e) = refused.expect("queued items are the instance's data too");
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        assert!(round > 10, "refused only past the limit: {round}");
    }
}
