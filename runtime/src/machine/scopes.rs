//! Scopes: opening and closing subprocess, loop and run scopes, aborting a
//! scope tree, and finding a scope's container and declarations.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Opens the inner scope of a subprocess or loop body.
    pub(super) fn open_scope(
        &mut self,
        i: usize,
        a: ActivityInstanceId,
        start: &str,
        decls: &indexmap::IndexMap<String, raw::VariableDef>,
        iterations: u32,
    ) {
        let parent = self.inst.tokens[i].scope;
        let inner = ScopeId(self.id());
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
        let id = TokenId(self.id());
        self.inst.tokens.push(Token {
            id,
            node: start.to_owned(),
            scope: inner,
            from: None,
            state: TokenState::Arriving,
        });
        if let Err(e) = self.arm_event_subprocesses(inner) {
            let token = self.inst.tokens[i].id;
            self.park(token);
            if let Some(i) = self.token_index(token) {
                self.incident(i, a, e);
            }
        }
    }

    /// When a scope has no token left, its container completes (or a loop runs again).
    pub(super) fn scope_maybe_done(&mut self, scope: ScopeId) {
        if self.inst.tokens.iter().any(|t| t.scope == scope) {
            return;
        }
        if scope == ScopeId::ROOT {
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
    pub(super) fn abort_scope_tree(&mut self, scope: ScopeId, actor: Option<&str>, keep: bool) {
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
            // The token is out of the list already: its state says where
            // its activity stands.
            let activity = match &t.state {
                TokenState::Waiting { activity, wait } => {
                    self.cancel_wait(*activity, wait);
                    self.lifecycle.entry(*activity).or_insert(Lifecycle::Active);
                    Some(*activity)
                }
                TokenState::Incident { activity, .. } => {
                    self.lifecycle
                        .entry(*activity)
                        .or_insert(Lifecycle::Faulted);
                    Some(*activity)
                }
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
            if *s != ScopeId::ROOT {
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
    pub(super) fn cancel_wait(&mut self, activity: ActivityInstanceId, wait: &Wait) {
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
    pub(super) fn close_scope(&mut self, scope: ScopeId) {
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

    /// Whether token `i` is one run of a multi-instance activity: it sits at the
    /// activity, in one of the activity's run scopes.
    pub(super) fn is_run(&self, i: usize) -> bool {
        let t = &self.inst.tokens[i];
        self.inst
            .scopes
            .get(&t.scope)
            .is_some_and(|s| s.run.is_some() && s.node.as_deref() == Some(t.node.as_str()))
    }

    /// The token that waits for `scope` to finish: a subprocess, loop or event
    /// subprocess; a multi-instance activity (a run scope); a compensating throw.
    pub(super) fn container_of(&self, scope: ScopeId) -> Option<usize> {
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
    pub(super) fn scope_nodes(
        &self,
        scope: ScopeId,
    ) -> Option<&'p indexmap::IndexMap<String, Node>> {
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
    pub(super) fn declared_above(&self, scope: Option<ScopeId>, name: &str) -> bool {
        self.declaration(scope, name).is_some()
    }

    /// The declaration of `name` that `scope` sees: the nearest subprocess
    /// that declares it, else the process's.
    pub(super) fn declaration(
        &self,
        mut scope: Option<ScopeId>,
        name: &str,
    ) -> Option<&'p raw::VariableDef> {
        while let Some(s) = scope {
            let sc = self.inst.scopes.get(&s)?;
            let declared = match &sc.node {
                None => self.m.process.def.variables.get(name),
                Some(_) if sc.run.is_some() => None,
                Some(n) => match self.m.node(n) {
                    Some(Node::Subprocess(sp)) => sp.variables.get(name),
                    _ => None,
                },
            };
            if declared.is_some() {
                return declared;
            }
            scope = sc.parent;
        }
        None
    }
}
