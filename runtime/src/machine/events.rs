//! Events: subscriptions (catch events, receive tasks, event gateways, boundary
//! events, event subprocesses), their triggers and due times, and what fires
//! when one comes; messages and signals sent.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// What a catch event, receive task, event-gateway branch, boundary event
    /// or event subprocess waits for: its message (correlated by `key`), timer
    /// or signal, in that order; `None` when it has none of them (errors and
    /// escalations are matched when raised). The one place triggers are chosen.
    pub(super) fn trigger_of(
        &self,
        scope: ScopeId,
        message: Option<&str>,
        key: Option<&raw::Expr>,
        timer: Option<&raw::TimerDef>,
        signal: Option<&str>,
    ) -> Option<Result<Trigger, String>> {
        if let Some(m) = message {
            return Some(self.message_trigger(scope, m, key));
        }
        if let Some(t) = timer {
            return Some(self.timer_trigger(scope, t));
        }
        signal.map(|s| Ok(Trigger::Signal { name: s.to_owned() }))
    }

    /// The correlation key: `key` evaluated in the token's scope, else the business key.
    pub(super) fn message_trigger(
        &self,
        scope: ScopeId,
        name: &str,
        key: Option<&raw::Expr>,
    ) -> Result<Trigger, String> {
        let key = match key {
            None => self.inst.business_key.clone(),
            Some(k) => {
                let vars = self.inst.visible_vars(scope);
                key_text(
                    Evaluator::new(self.m.process, &vars)
                        .eval(&k.0)
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        Ok(Trigger::Message {
            name: name.to_owned(),
            key,
        })
    }

    pub(super) fn timer_trigger(
        &self,
        scope: ScopeId,
        t: &raw::TimerDef,
    ) -> Result<Trigger, String> {
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        Ok(Trigger::Timer {
            due: self.due(t, &ev)?,
        })
    }

    /// When a timer started now fires: a date, a duration (ISO 8601, or business
    /// days on a working calendar), or a cron cycle's next occurrence.
    pub(super) fn due(&self, t: &raw::TimerDef, ev: &Evaluator) -> Result<DateTime<Utc>, String> {
        next_due(
            t,
            self.now,
            &self.m.process.def,
            self.m.calendars,
            &|e: &str| ev.eval(e).map_err(|e| e.to_string()),
        )
    }

    /// The token waits at an event node for the first of `subs`.
    pub(super) fn wait_for(
        &mut self,
        i: usize,
        a: ActivityInstanceId,
        node: &str,
        subs: Vec<(SubscriptionKind, Result<Trigger, String>)>,
    ) {
        let mut ready = Vec::with_capacity(subs.len());
        for (kind, trigger) in subs {
            match trigger {
                Ok(t) => ready.push((kind, t)),
                Err(e) => return self.incident(i, a, e),
            }
        }
        self.inst.tokens[i].state = TokenState::Waiting {
            activity: a,
            wait: Wait::Event,
        };
        let token = self.inst.tokens[i].id;
        for (kind, trigger) in ready {
            self.subscribe(token, node, kind, trigger);
        }
    }

    pub(super) fn subscribe(
        &mut self,
        token: TokenId,
        node: &str,
        kind: SubscriptionKind,
        trigger: Trigger,
    ) {
        let sub = Subscription {
            id: SubscriptionId(self.id()),
            token,
            node: node.to_owned(),
            kind,
            trigger,
        };
        self.inst.subscriptions.push(sub.clone());
        self.actions.push(Action::Subscribe(sub));
    }

    /// Subscribes the timer, message and signal boundary events of the activity the
    /// token has just entered.
    pub(super) fn arm_boundaries(&mut self, i: usize, node_id: &str, node: &Node) {
        if !matches!(self.inst.tokens[i].state, TokenState::Waiting { .. }) || self.is_run(i) {
            return; // a multi-instance activity's boundary events are on its container
        }
        let scope = self.inst.tokens[i].scope;
        let token = self.inst.tokens[i].id;
        for (index, b) in node.boundary().iter().enumerate() {
            let Some(trigger) = self.trigger_of(
                scope,
                b.message.as_deref(),
                b.key.as_ref(),
                b.timer.as_ref(),
                b.signal.as_deref(),
            ) else {
                continue; // errors and escalations are matched when raised
            };
            match trigger {
                Ok(t) => self.subscribe(token, node_id, SubscriptionKind::Boundary { index }, t),
                Err(e) => {
                    let bid = boundary_id(node_id, index, b);
                    // The token waits (checked above), so parking gives its
                    // activity back.
                    let a = match self.park(token) {
                        Some(a) => a,
                        None => self.activity_id(),
                    };
                    if let Some(i) = self.token_index(token) {
                        self.incident(i, a, format!("boundary event `{bid}`: {e}"));
                    }
                    return;
                }
            }
        }
    }

    /// Drops every subscription of a token.
    pub(super) fn disarm(&mut self, token: TokenId) {
        if self.inst.subscriptions.iter().all(|s| s.token != token) {
            return;
        }
        let (gone, kept) = std::mem::take(&mut self.inst.subscriptions)
            .into_iter()
            .partition(|s| s.token == token);
        self.inst.subscriptions = kept;
        let gone: Vec<Subscription> = gone;
        self.actions
            .extend(gone.into_iter().map(Action::Unsubscribe));
    }

    pub(super) fn drop_subscription(&mut self, id: SubscriptionId) {
        if let Some(k) = self.inst.subscriptions.iter().position(|s| s.id == id) {
            let sub = self.inst.subscriptions.remove(k);
            self.actions.push(Action::Unsubscribe(sub));
        }
    }

    /// Cancels the activity a token waits in (its task, job, event or inner scope);
    /// the token stays, ready to be moved. Returns the aborted activity.
    pub(super) fn interrupt(
        &mut self,
        token: TokenId,
        actor: Option<&str>,
    ) -> Option<ActivityInstanceId> {
        self.withdraw(token, actor, true)
    }

    /// Stops the activity token `token` waits in so that an incident can hold
    /// it: what it waited for is withdrawn (its task, job, runs, inner scopes)
    /// but the activity itself is not aborted — it faults next, and an admin's
    /// retry enters its node again.
    pub(super) fn park(&mut self, token: TokenId) -> Option<ActivityInstanceId> {
        self.withdraw(token, None, false)
    }

    fn withdraw(
        &mut self,
        token: TokenId,
        actor: Option<&str>,
        abort: bool,
    ) -> Option<ActivityInstanceId> {
        self.disarm(token);
        let i = self.token_index(token)?;
        let TokenState::Waiting { activity, wait } = self.inst.tokens[i].state.clone() else {
            return None;
        };
        self.cancel_wait(activity, &wait);
        match wait {
            Wait::Scope { inner, .. } | Wait::Compensate { inner, .. } => {
                self.abort_scope_tree(inner, actor, false);
            }
            Wait::Multi { runs, .. } => {
                for run in runs {
                    self.abort_scope_tree(run, actor, false);
                }
            }
            Wait::Task | Wait::Job | Wait::Call | Wait::Event => {}
        }
        let node = self.inst.tokens[i].node.clone();
        if abort {
            self.history(activity, &node, Lifecycle::Aborting, actor);
            self.history(activity, &node, Lifecycle::Aborted, actor);
        }
        if let Some(i) = self.token_index(token) {
            self.inst.tokens[i].state = TokenState::Arriving;
        }
        Some(activity)
    }

    /// Writes a message's or signal's variables: through `out` (expressions over
    /// `message`) when given, else each variable as it is.
    pub(super) fn write_payload(
        &mut self,
        scope: ScopeId,
        out: &raw::Mapping,
        vars: Vars,
    ) -> Result<(), String> {
        if out.is_empty() {
            for (k, v) in vars {
                self.set_var(scope, k, v)?;
            }
            return Ok(());
        }
        let mut visible = self.inst.visible_vars(scope);
        visible.insert("message".into(), Value::Object(vars));
        let ev = Evaluator::new(self.m.process, &visible);
        for (k, v) in out {
            let v = ev.value(v).map_err(|e| e.to_string())?;
            self.set_var(scope, k.clone(), v)?;
        }
        Ok(())
    }

    /// A subscription fired.
    pub(super) fn fire(&mut self, sub: &Subscription, vars: Vars) {
        if let SubscriptionKind::EventSubprocess { scope } = sub.kind {
            let Some(Node::EventSubprocess(es)) = self.m.node(&sub.node) else {
                return;
            };
            if let Trigger::Timer { .. } = sub.trigger {
                self.drop_subscription(sub.id);
                if !es.interrupting
                    && let Some(t) = es.timer.as_ref().filter(|t| t.cycle.is_some())
                    && let Ok(trigger) = self.timer_trigger(scope, t)
                {
                    let kind = SubscriptionKind::EventSubprocess { scope };
                    self.subscribe(TokenId::NONE, &sub.node, kind, trigger);
                }
            }
            return self.start_event_subprocess(scope, &sub.node, es, es.interrupting, vars);
        }
        let Some(i) = self.token_index(sub.token) else {
            return;
        };
        let scope = self.inst.tokens[i].scope;
        let node = self.m.node(&sub.node);
        match sub.kind {
            SubscriptionKind::Catch => {
                let TokenState::Waiting { activity: a, .. } = self.inst.tokens[i].state else {
                    return;
                };
                self.disarm(sub.token);
                let empty = raw::Mapping::new();
                let out = match node {
                    Some(Node::Receive(r)) => &r.out,
                    Some(Node::Catch(c)) => &c.out,
                    _ => &empty,
                };
                if let Err(e) = self.write_payload(scope, out, vars) {
                    return self.incident(i, a, e);
                }
                self.complete(i, a, None);
            }
            SubscriptionKind::Gateway { index } => {
                let TokenState::Waiting { activity: a, .. } = self.inst.tokens[i].state else {
                    return;
                };
                let Some(Node::Event(g)) = node else { return };
                let Some(e) = g.events.get(index) else { return };
                self.disarm(sub.token);
                if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
                    return self.incident(i, a, e);
                }
                self.history(a, &sub.node, Lifecycle::Completing, None);
                self.history(a, &sub.node, Lifecycle::Completed, None);
                self.leave(i, std::slice::from_ref(&e.to));
            }
            SubscriptionKind::Boundary { index } => {
                let Some(b) = node.and_then(|n| n.boundary().get(index)) else {
                    return;
                };
                let bid = boundary_id(&sub.node, index, b);
                let ev = self.activity_id();
                // The boundary event completes once its payload is written;
                // if that fails, it faults instead (an incident an admin can
                // resolve), never both.
                for state in [Lifecycle::Ready, Lifecycle::Active] {
                    self.history(ev, &bid, state, None);
                }
                if b.interrupting {
                    self.interrupt(sub.token, None);
                    let Some(i) = self.token_index(sub.token) else {
                        return;
                    };
                    if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
                        return self.incident(i, ev, e);
                    }
                    self.history(ev, &bid, Lifecycle::Completed, None);
                    self.leave(i, std::slice::from_ref(&b.to));
                    return;
                }
                if let Some(t) = &b.timer {
                    self.drop_subscription(sub.id);
                    if t.cycle.is_some() {
                        match self.timer_trigger(scope, t) {
                            Ok(trigger) => self.subscribe(
                                sub.token,
                                &sub.node,
                                SubscriptionKind::Boundary { index },
                                trigger,
                            ),
                            Err(e) => return self.incident(i, ev, e),
                        }
                    }
                }
                if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
                    // The activity goes on waiting; the boundary path starts
                    // with an incident on its first node instead.
                    self.spawn_token(&sub.node, scope, &b.to);
                    if let Some(j) = self.inst.tokens.len().checked_sub(1) {
                        return self.incident(j, ev, e);
                    }
                    return;
                }
                self.history(ev, &bid, Lifecycle::Completed, None);
                self.spawn_token(&sub.node, scope, &b.to);
            }
            SubscriptionKind::EventSubprocess { .. } => {} // handled above
        }
    }

    /// A new token on a boundary path, beside the activity.
    pub(super) fn spawn_token(&mut self, from: &str, scope: ScopeId, to: &str) {
        let id = TokenId(self.id());
        self.inst.tokens.push(Token {
            id,
            node: to.to_owned(),
            scope,
            from: Some(from.to_owned()),
            state: TokenState::Arriving,
        });
    }

    /// Sends a throw's or end's message and signal.
    pub(super) fn send(
        &mut self,
        scope: ScopeId,
        message: &Option<String>,
        key: Option<&raw::Expr>,
        payload: &raw::Mapping,
        signal: &Option<String>,
    ) -> Result<(), String> {
        if message.is_none() && signal.is_none() {
            return Ok(());
        }
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let variables = match ev
            .value(&Value::Object(payload.clone().into_iter().collect()))
            .map_err(|e| e.to_string())?
        {
            Value::Object(m) => m,
            _ => Vars::new(),
        };
        if let Some(name) = message {
            let key = match key {
                None => self.inst.business_key.clone(),
                Some(k) => key_text(ev.eval(&k.0).map_err(|e| e.to_string())?),
            };
            self.actions.push(Action::SendMessage {
                name: name.clone(),
                key,
                variables: variables.clone(),
            });
        }
        if let Some(name) = signal {
            self.actions.push(Action::Broadcast {
                name: name.clone(),
                variables,
            });
        }
        Ok(())
    }

    /// Subscribes the message, timer and signal triggers of the event subprocesses
    /// declared in `scope`, which has just opened.
    pub(super) fn arm_event_subprocesses(&mut self, scope: ScopeId) -> Result<(), String> {
        let Some(nodes) = self.scope_nodes(scope) else {
            return Ok(());
        };
        for (id, n) in nodes {
            let Node::EventSubprocess(es) = n else {
                continue;
            };
            let Some(trigger) = self.trigger_of(
                scope,
                es.message.as_deref(),
                es.key.as_ref(),
                es.timer.as_ref(),
                es.signal.as_deref(),
            ) else {
                continue; // errors and escalations are matched when raised
            };
            let trigger = trigger.map_err(|e| format!("event subprocess `{id}`: {e}"))?;
            self.subscribe(
                TokenId::NONE,
                id,
                SubscriptionKind::EventSubprocess { scope },
                trigger,
            );
        }
        Ok(())
    }

    /// Starts event subprocess `id` in `scope`, first cancelling everything else in
    /// the scope when it interrupts.
    pub(super) fn start_event_subprocess(
        &mut self,
        scope: ScopeId,
        id: &str,
        es: &'p raw::EventSubprocess,
        interrupting: bool,
        vars: Vars,
    ) {
        if interrupting {
            self.abort_scope_tree(scope, None, true);
        }
        let token = TokenId(self.id());
        self.inst.tokens.push(Token {
            id: token,
            node: id.to_owned(),
            scope,
            from: None,
            state: TokenState::Arriving,
        });
        let i = self.inst.tokens.len() - 1;
        let a = self.activity_id();
        self.history(a, id, Lifecycle::Ready, None);
        self.history(a, id, Lifecycle::Active, None);
        if let Err(e) = self.write_payload(scope, &raw::Mapping::new(), vars) {
            return self.incident(i, a, e);
        }
        self.open_scope(i, a, &es.start, &indexmap::IndexMap::new(), 0);
    }
}
