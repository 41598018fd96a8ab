//! Stepping: the run-to-wait loop, entering a node, completing an activity
//! and leaving it along its flows, incidents.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Runs every token that can move until each waits, joins or has ended.
    pub(super) fn run(&mut self) {
        let mut steps = 0;
        loop {
            if self.inst.status != InstanceStatus::Active {
                return;
            }
            self.release_sections();
            self.wake_at_milestones();
            if let Some(i) = self
                .inst
                .tokens
                .iter()
                .position(|t| t.state == TokenState::Arriving)
            {
                steps += 1;
                if steps > self.budget {
                    let a = self.activity_id();
                    self.incident(i, a, format!("more than {} automatic steps in one command: the flow loops without waiting", self.budget));
                    continue;
                }
                if self.m.process.is_milestone(&self.inst.tokens[i].node) {
                    self.milestone_reached = true;
                }
                self.enter(i);
                continue;
            }
            if self.settle_gates() {
                continue;
            }
            if self.pass_missed_milestones() {
                continue;
            }
            if !self.fire_inclusive_join() {
                return;
            }
        }
    }

    /// Frees each critical section whose holder has left its activity (moved
    /// on, ended, or was withdrawn), and lets the token that has waited longest
    /// for it enter.
    fn release_sections(&mut self) {
        // Most processes have no sections: nothing to look at, every step.
        if !self.m.process.has_critical_sections() {
            return;
        }
        let held: Vec<(String, TokenId)> = self
            .inst
            .sections
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (section, holder) in held {
            let inside = self.token_index(holder).is_some_and(|i| {
                let t = &self.inst.tokens[i];
                t.state != TokenState::Arriving
                    && self.m.node(&t.node).and_then(Node::critical) == Some(section.as_str())
            });
            if inside {
                continue;
            }
            self.inst.sections.remove(&section);
        }
        // Every free section with tokens waiting for it lets the oldest in,
        // unless one is already on its way in (a woken token can be withdrawn
        // before it enters: then the next one is woken here).
        let mut waiting: Vec<(String, TokenId)> = Vec::new();
        let mut coming: Vec<String> = Vec::new();
        for t in &self.inst.tokens {
            let Some(section) = self.m.node(&t.node).and_then(Node::critical) else {
                continue;
            };
            match t.state {
                TokenState::Joining if !self.waits_for_milestone(t) => {
                    waiting.push((section.to_owned(), t.id));
                }
                TokenState::Arriving => coming.push(section.to_owned()),
                _ => {}
            }
        }
        waiting.sort_by_key(|(_, id)| *id);
        for (section, id) in waiting {
            if self.inst.sections.contains_key(&section) || coming.contains(&section) {
                continue;
            }
            if let Some(i) = self.token_index(id) {
                self.inst.tokens[i].state = TokenState::Arriving;
                coming.push(section);
            }
        }
    }

    /// Whether the holder of a section is a container this token runs inside
    /// (a critical subprocess, loop or multi-instance activity): then the
    /// token is already in the section.
    fn inside_holder(&self, i: usize, holder: TokenId) -> bool {
        let mut scope = Some(self.inst.tokens[i].scope);
        while let Some(s) = scope {
            if self
                .container_of(s)
                .is_some_and(|c| self.inst.tokens[c].id == holder)
            {
                return true;
            }
            scope = self.inst.scopes.get(&s).and_then(|sc| sc.parent);
        }
        false
    }

    pub(super) fn enter(&mut self, i: usize) {
        // A run whose `output` failed, retried or resolved: only the output is
        // evaluated again; the run's work is not redone.
        if self.only_output_left(i) {
            let run = self.inst.tokens[i].scope;
            self.inst.tokens.remove(i);
            return self.run_done(run);
        }
        let node_id = self.inst.tokens[i].node.clone();
        let Some(node) = self.m.node(&node_id) else {
            let a = self.activity_id();
            self.incident(
                i,
                a,
                format!("node `{node_id}` does not exist in this version"),
            );
            return;
        };
        // A milestone not reached: wait at the node until it is (or has
        // passed for good). Checked before the section, which it does not take.
        if self.before_milestone(i) {
            self.inst.tokens[i].state = TokenState::Joining;
            return;
        }
        // A critical section held by another activity: wait at the node until
        // it is free (the runs of a multi-instance activity are inside it).
        if let Some(section) = node.critical()
            && !self.is_run(i)
        {
            let me = self.inst.tokens[i].id;
            match self.inst.sections.get(section) {
                // Nested inside the holder (the same section on a container and
                // an activity in it): already in.
                Some(&holder) if holder != me && self.inside_holder(i, holder) => {}
                Some(&holder) if holder != me => {
                    self.inst.tokens[i].state = TokenState::Joining;
                    return;
                }
                _ => {
                    self.inst.sections.insert(section.to_owned(), me);
                }
            }
        }
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
        let a = self.activity_id();
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
                let trigger = self
                    .trigger_of(
                        scope,
                        c.message.as_deref(),
                        c.key.as_ref(),
                        c.timer.as_ref(),
                        c.signal.as_deref(),
                    )
                    .unwrap_or_else(|| Err(format!("catch event `{node_id}` waits for nothing")));
                self.wait_for(i, a, &node_id, vec![(SubscriptionKind::Catch, trigger)]);
            }
            Node::Event(g) => {
                let subs = g
                    .events
                    .iter()
                    .enumerate()
                    .map(|(index, e)| {
                        let trigger = self
                            .trigger_of(
                                scope,
                                e.message.as_deref(),
                                e.key.as_ref(),
                                e.timer.as_ref(),
                                e.signal.as_deref(),
                            )
                            .unwrap_or_else(|| {
                                Err(format!("branch {index} of `{node_id}` waits for nothing"))
                            });
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

    pub(super) fn task(
        &mut self,
        a: ActivityInstanceId,
        node: &str,
        u: &raw::User,
        scope: ScopeId,
    ) -> Result<TaskSpec, String> {
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

    /// Completes the activity the token is in and moves it on (a multi-instance
    /// run ends instead: its container counts it). An activity with a
    /// compensation handler is remembered in its scope, to be undone on request.
    pub(super) fn complete(&mut self, i: usize, a: ActivityInstanceId, actor: Option<String>) {
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
    pub(super) fn leave(&mut self, i: usize, targets: &[String]) {
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
            let id = TokenId(self.id());
            self.inst.tokens.push(Token {
                id,
                node: target.clone(),
                scope,
                from: Some(from.clone()),
                state: TokenState::Arriving,
            });
        }
    }

    pub(super) fn incident(&mut self, i: usize, a: ActivityInstanceId, message: String) {
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
}
