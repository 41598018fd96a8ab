//! Throw and end events, and raising errors and escalations outward to the
//! boundary events and event subprocesses that catch them.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Runs a throw or end event at token `i`: first the compensation it asks for
    /// (unless `compensated`: already done), then the message and signal it sends,
    /// the error or escalation it raises; an end event then ends its path (or, with
    /// `terminate`, its scope or the instance), a throw goes on.
    pub(super) fn throw_or_end(&mut self, i: usize, a: ActivityInstanceId, compensated: bool) {
        let node_id = self.inst.tokens[i].node.clone();
        let scope = self.inst.tokens[i].scope;
        let (r, end) = match self.m.node(&node_id) {
            Some(Node::Throw(t)) => (
                Raises {
                    message: &t.message,
                    key: t.key.as_ref(),
                    payload: &t.payload,
                    signal: &t.signal,
                    error: &t.error,
                    escalation: &t.escalation,
                },
                None,
            ),
            Some(Node::End(e)) => (
                Raises {
                    message: &e.message,
                    key: e.key.as_ref(),
                    payload: &e.payload,
                    signal: &e.signal,
                    error: &e.error,
                    escalation: &e.escalation,
                },
                Some(e),
            ),
            _ => return,
        };
        let compensate = match self.m.node(&node_id) {
            Some(Node::Throw(t)) => t.compensate.as_deref(),
            Some(Node::End(e)) => e.compensate.as_deref(),
            _ => None,
        };
        if !compensated
            && let Some(target) = compensate
            && self.start_compensation(i, a, target)
        {
            return; // the token waits for the handlers, then comes back here
        }
        let Some(i) = self.throw(i, a, &node_id, r) else {
            return; // an error, or an interrupting escalation boundary, took the path
        };
        let Some(e) = end else {
            return self.complete(i, a, None);
        };
        self.history(a, &node_id, Lifecycle::Completing, None);
        self.history(a, &node_id, Lifecycle::Completed, None);
        self.inst.tokens.remove(i);
        if e.terminate {
            if scope == ScopeId::ROOT {
                self.abort_scope_tree(ScopeId::ROOT, None, false);
                self.end_instance(InstanceStatus::Terminated);
                return;
            }
            self.abort_scope_tree(scope, None, false);
        }
        self.scope_maybe_done(scope);
    }

    /// Sends and raises what a throw or end event carries. Returns the token's index
    /// when its path goes on (nothing critical was raised, no boundary took it).
    pub(super) fn throw(
        &mut self,
        i: usize,
        a: ActivityInstanceId,
        node_id: &str,
        r: Raises,
    ) -> Option<usize> {
        let scope = self.inst.tokens[i].scope;
        if let Err(e) = self.send(scope, r.message, r.key, r.payload, r.signal) {
            self.incident(i, a, e);
            return None;
        }
        let id = self.inst.tokens[i].id;
        if let Some(code) = r.error {
            // The event completes once something has taken its error;
            // uncaught, it is an incident instead (it faults, and an admin may
            // retry or resolve it), never both.
            let detail = String::new();
            // (A throw that compensated first waited in its handlers; catching
            // the error may have aborted it, which then stands.)
            if self.raise(id, a, code, Raised::Error { detail }, false, true)
                && self.lifecycle.get(&a) != Some(&Lifecycle::Aborted)
            {
                self.history(a, node_id, Lifecycle::Completed, None);
            }
            return None;
        }
        if let Some(code) = r.escalation {
            self.raise(id, a, code, Raised::Escalation, false, true);
        }
        self.token_index(id)
    }

    /// Raises an error or escalation from a token. The nearest catcher takes it:
    /// a boundary event on the token's own activity when `on_self` (a job's business
    /// error, a called instance's error), then, scope by scope outward, an event
    /// subprocess of the scope and a boundary event on the scope's container.
    /// Returns whether something caught it. Uncaught, when `report` is set, an
    /// error is an incident and both go on to the caller of a called instance.
    pub(super) fn raise(
        &mut self,
        token: TokenId,
        a: ActivityInstanceId,
        code: &str,
        raised: Raised,
        on_self: bool,
        report: bool,
    ) -> bool {
        let critical = matches!(raised, Raised::Error { .. });
        let Some(i) = self.token_index(token) else {
            return false;
        };
        if on_self && !self.is_run(i) && self.catch_on_boundary(i, code, critical) {
            return true;
        }
        let mut scope = self.inst.tokens[i].scope;
        // An event subprocess does not catch what its own body raises.
        let mut skip_event_subprocesses = false;
        loop {
            if !skip_event_subprocesses && self.catch_in_event_subprocess(scope, code, critical) {
                return true;
            }
            if scope == ScopeId::ROOT {
                break;
            }
            let Some(host) = self.container_of(scope) else {
                break;
            };
            skip_event_subprocesses = matches!(
                self.m.node(&self.inst.tokens[host].node),
                Some(Node::EventSubprocess(_))
            );
            // One run of a multi-instance activity: its boundary events are the
            // activity's, and the activity waits one level up (catching there
            // cancels every run and leaves in the scope around the activity).
            // Runs left over by `rest: wait` belong to an activity that has
            // completed: its boundary events no longer listen.
            if !self.is_run(host)
                && !self.is_remainder(host)
                && self.catch_on_boundary(host, code, critical)
            {
                return true;
            }
            scope = self.inst.tokens[host].scope;
        }
        if !report {
            return false;
        }
        let detail = match &raised {
            Raised::Error { detail } if !detail.is_empty() => format!(": {detail}"),
            _ => String::new(),
        };
        if self.inst.parent.as_ref().is_some_and(|p| p.waits) {
            self.actions.push(Action::RaiseInCaller {
                code: code.to_owned(),
                error: critical,
                message: detail.trim_start_matches(": ").to_owned(),
            });
        }
        if critical && let Some(i) = self.token_index(token) {
            self.incident(
                i,
                a,
                format!("error `{code}` was not caught by any boundary event{detail}"),
            );
        }
        false
    }

    /// A boundary event on the activity token `h` is in that catches `code` takes
    /// the error (interrupting) or escalation.
    pub(super) fn catch_on_boundary(&mut self, h: usize, code: &str, critical: bool) -> bool {
        let node_id = self.inst.tokens[h].node.clone();
        let found = self.m.node(&node_id).and_then(|n| {
            n.boundary().iter().enumerate().find(|(_, b)| {
                let catches = if critical { &b.error } else { &b.escalation };
                catches.as_deref().is_some_and(|c| c == code || c == "*")
            })
        });
        let Some((index, b)) = found else {
            return false;
        };
        let host_id = self.inst.tokens[h].id;
        let host_scope = self.inst.tokens[h].scope;
        let bid = boundary_id(&node_id, index, b);
        let ev = self.activity_id();
        for state in [Lifecycle::Ready, Lifecycle::Active, Lifecycle::Completed] {
            self.history(ev, &bid, state, None);
        }
        if critical || b.interrupting {
            self.interrupt(host_id, None);
            if let Some(h) = self.token_index(host_id) {
                self.leave(h, std::slice::from_ref(&b.to));
            }
        } else {
            self.spawn_token(&node_id, host_scope, &b.to);
        }
        true
    }

    /// An error or escalation event subprocess of `scope` that catches `code` starts.
    pub(super) fn catch_in_event_subprocess(
        &mut self,
        scope: ScopeId,
        code: &str,
        critical: bool,
    ) -> bool {
        let Some(nodes) = self.scope_nodes(scope) else {
            return false;
        };
        let found = nodes.iter().find_map(|(id, n)| match n {
            Node::EventSubprocess(es) => {
                let catches = if critical { &es.error } else { &es.escalation };
                catches
                    .as_deref()
                    .is_some_and(|c| c == code || c == "*")
                    .then_some((id, es))
            }
            _ => None,
        });
        let Some((id, es)) = found else {
            return false;
        };
        self.start_event_subprocess(scope, id, es, critical || es.interrupting, Vars::new());
        true
    }
}
