//! Gateways: splits, and the joins (parallel, inclusive, complex) that count
//! the tokens of their own scope instance.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Exclusive (first match) or inclusive (every match) split.
    pub(super) fn split(
        &mut self,
        i: usize,
        a: ActivityInstanceId,
        branches: &[raw::Branch],
        default: Option<&str>,
        first_only: bool,
    ) {
        let scope = self.inst.tokens[i].scope;
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let mut targets = Vec::new();
        for b in branches {
            match ev.condition(&b.when.0) {
                Ok(true) => {
                    targets.push(b.to.clone());
                    if first_only {
                        break;
                    }
                }
                Ok(false) => {}
                Err(e) => return self.incident(i, a, e.to_string()),
            }
        }
        if targets.is_empty() {
            match default {
                Some(d) => targets.push(d.to_owned()),
                None => {
                    let node = self.inst.tokens[i].node.clone();
                    return self.incident(
                        i,
                        a,
                        format!("no branch matched at gateway `{node}`, and it has no default"),
                    );
                }
            }
        }
        self.history(
            a,
            &self.inst.tokens[i].node.clone(),
            Lifecycle::Completing,
            None,
        );
        self.history(
            a,
            &self.inst.tokens[i].node.clone(),
            Lifecycle::Completed,
            None,
        );
        self.leave(i, &targets);
    }

    /// A parallel join fires when a token of its scope instance has arrived
    /// from every incoming flow: runs of a multi-instance body, or of an event
    /// subprocess, each join their own tokens only.
    pub(super) fn fire_parallel_join(&mut self, node: &str, scope: ScopeId) {
        let mut picked = Vec::new();
        for p in self.m.process.graph.predecessors(node) {
            match self.inst.tokens.iter().position(|t| {
                t.node == node
                    && t.scope == scope
                    && t.state == TokenState::Joining
                    && t.from.as_deref() == Some(p)
                    && !picked.contains(&t.id)
            }) {
                Some(idx) => picked.push(self.inst.tokens[idx].id),
                None => return,
            }
        }
        self.merge(node, &picked);
    }

    /// A complex gateway: token `arrived` has just come to `node` in `scope`.
    ///
    /// After a round fired with `rest: wait`, a token from a flow still owed is
    /// absorbed; once every owed flow has delivered, the next round begins with
    /// the tokens that came early for it. In a round, one token per incoming
    /// flow counts (`arrived`), and when `activation` holds one token goes on;
    /// with `rest: cancel` every other token of the scope that can still reach
    /// the gateway is withdrawn.
    pub(super) fn fire_complex(
        &mut self,
        node: &str,
        c: &raw::Complex,
        scope: ScopeId,
        arrived: TokenId,
    ) {
        let incoming: Vec<String> = self
            .m
            .process
            .graph
            .predecessors(node)
            .map(str::to_owned)
            .collect();
        if let Some(owed) = self.inst.scopes.get(&scope).and_then(|s| s.gates.get(node)) {
            let from = self
                .token_index(arrived)
                .and_then(|i| self.inst.tokens[i].from.clone());
            let Some(pos) = from.and_then(|f| owed.iter().position(|o| *o == f)) else {
                return; // from a flow already heard this round: it waits for the next
            };
            let mut owed = owed.clone();
            owed.remove(pos);
            let round_over = owed.is_empty();
            self.inst.tokens.retain(|t| t.id != arrived);
            if let Some(sc) = self.inst.scopes.get_mut(&scope) {
                if round_over {
                    sc.gates.remove(node);
                } else {
                    sc.gates.insert(node.to_owned(), owed);
                }
            }
            // Still owed, or over with no token early for the next round: the
            // absorbed token may have been the scope's last.
            let early = self
                .inst
                .tokens
                .iter()
                .any(|t| t.node == node && t.scope == scope && t.state == TokenState::Joining);
            if !round_over || !early {
                return self.scope_maybe_done(scope);
            }
        }
        // This round: the oldest waiting token of each incoming flow.
        let picked = self.round_at(node, scope, &[]);
        if picked.is_empty() {
            return;
        }
        let mut vars = self.inst.visible_vars(scope);
        vars.insert("arrived".into(), Value::from(picked.len()));
        vars.insert("total".into(), Value::from(incoming.len()));
        let fire = Evaluator::new(self.m.process, &vars).condition(&c.activation.0);
        let at = picked.last().map_or(arrived, |(_, id)| *id);
        match fire {
            Err(e) => {
                if let Some(i) = self.token_index(at) {
                    let a = self.activity_id();
                    self.history(a, node, Lifecycle::Ready, None);
                    self.incident(i, a, format!("the `activation` condition: {e}"));
                }
            }
            Ok(false) if picked.len() >= incoming.len() => {
                if let Some(i) = self.token_index(at) {
                    let a = self.activity_id();
                    self.history(a, node, Lifecycle::Ready, None);
                    self.incident(
                        i,
                        a,
                        format!(
                            "every incoming flow has arrived and `activation` ({}) still does not hold: this round can never fire",
                            c.activation.0.trim()
                        ),
                    );
                }
            }
            Ok(false) => {}
            Ok(true) => {
                // Owed: the flows not heard this round that a live token of
                // the scope can still come through (a branch never taken, or
                // already withdrawn, owes nothing).
                let owed: Vec<String> = incoming
                    .iter()
                    .filter(|f| !picked.iter().any(|(p, _)| p == *f))
                    .filter(|f| self.can_still_come(node, scope, f))
                    .cloned()
                    .collect();
                match c.rest {
                    raw::Rest::Cancel => self.withdraw_reaching(node, scope),
                    raw::Rest::Wait => {
                        if !owed.is_empty()
                            && let Some(sc) = self.inst.scopes.get_mut(&scope)
                        {
                            sc.gates.insert(node.to_owned(), owed);
                        }
                    }
                }
                let ids: Vec<TokenId> = picked.iter().map(|(_, id)| *id).collect();
                self.merge(node, &ids);
            }
        }
    }

    /// Whether a live token of `scope` (other than those at the gateway) can
    /// still arrive at `node` through the flow from `from`.
    fn can_still_come(&self, node: &str, scope: ScopeId, from: &str) -> bool {
        self.inst.tokens.iter().enumerate().any(|(k, t)| {
            t.scope == scope
                && t.node != node
                && !self.is_remainder(k)
                && (t.node == from || self.reaches(&t.node, from))
        })
    }

    /// Complex gateways whose owed branches can no longer come (withdrawn,
    /// ended elsewhere) stop waiting for them; a round that came early starts.
    /// Returns whether one fired.
    pub(super) fn settle_gates(&mut self) -> bool {
        let gates: Vec<(ScopeId, String, Vec<String>)> = self
            .inst
            .scopes
            .iter()
            .flat_map(|(s, sc)| {
                sc.gates
                    .iter()
                    .map(|(g, owed)| (*s, g.clone(), owed.clone()))
            })
            .collect();
        for (scope, gate, owed) in gates {
            let still: Vec<String> = owed
                .iter()
                .filter(|f| self.can_still_come(&gate, scope, f))
                .cloned()
                .collect();
            if still.len() == owed.len() {
                continue;
            }
            if let Some(sc) = self.inst.scopes.get_mut(&scope) {
                if still.is_empty() {
                    sc.gates.remove(&gate);
                } else {
                    sc.gates.insert(gate.clone(), still);
                    continue;
                }
            }
            let early = self
                .inst
                .tokens
                .iter()
                .filter(|t| t.node == gate && t.scope == scope && t.state == TokenState::Joining)
                .map(|t| t.id)
                .min();
            if let (Some(token), Some(Node::Complex(c))) = (early, self.m.node(&gate)) {
                self.fire_complex(&gate, c, scope, token);
                return true;
            }
        }
        false
    }

    /// Before a failed complex gateway is resolved by hand: the other tokens of
    /// its round (one per incoming flow, waiting there) go through with it.
    /// Returns the failed token's index again.
    pub(super) fn take_round(&mut self, i: usize) -> usize {
        let (id, node, scope) = {
            let t = &self.inst.tokens[i];
            (t.id, t.node.clone(), t.scope)
        };
        if !matches!(self.m.node(&node), Some(Node::Complex(_))) {
            return i;
        }
        let heard: Vec<String> = self.inst.tokens[i].from.iter().cloned().collect();
        let round: Vec<TokenId> = self
            .round_at(&node, scope, &heard)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        self.inst.tokens.retain(|t| !round.contains(&t.id));
        self.token_index(id).unwrap_or(i)
    }

    /// A complex gateway's round: the oldest token waiting at `node` in
    /// `scope` from each incoming flow not in `heard`, with its flow.
    fn round_at(&self, node: &str, scope: ScopeId, heard: &[String]) -> Vec<(String, TokenId)> {
        let mut waiting: Vec<&Token> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.node == node && t.scope == scope && t.state == TokenState::Joining)
            .collect();
        waiting.sort_by_key(|t| t.id);
        let mut picked: Vec<(String, TokenId)> = Vec::new();
        for t in waiting {
            if let Some(f) = &t.from
                && !heard.contains(f)
                && !picked.iter().any(|(p, _)| p == f)
            {
                picked.push((f.clone(), t.id));
            }
        }
        picked
    }

    /// Withdraws every token of `scope` (but those at `node`) that can still
    /// reach `node`: the branches a cancelling complex gateway no longer needs.
    pub(super) fn withdraw_reaching(&mut self, node: &str, scope: ScopeId) {
        let doomed: Vec<TokenId> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.scope == scope && t.node != node && self.reaches(&t.node, node))
            .map(|t| t.id)
            .collect();
        for id in doomed {
            self.interrupt(id, None);
            if let Some(i) = self.token_index(id)
                && let TokenState::Incident { activity, .. } = self.inst.tokens[i].state
            {
                self.actions.push(Action::CloseIncident {
                    activity,
                    how: "withdrawn".into(),
                    actor: None,
                });
            }
            self.inst.tokens.retain(|t| t.id != id);
        }
    }

    /// An inclusive join fires when no other live token of its scope can still reach it.
    ///
    /// A token waiting at another join upstream still counts: that join will fire
    /// later and send its token here. The one exception is a join this one also
    /// reaches (the two lie on a cycle); counting it would make each wait for the
    /// other forever, so it is ignored, as BPMN's OR-join semantics prescribe.
    pub(super) fn fire_inclusive_join(&mut self) -> bool {
        let joining: Vec<(String, ScopeId)> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.state == TokenState::Joining)
            .filter(|t| matches!(self.m.node(&t.node), Some(Node::Inclusive(_))))
            .map(|t| (t.node.clone(), t.scope))
            .collect();
        for (node, scope) in joining {
            // Runs a completed multi-instance activity left to finish
            // (`rest: wait`) never flow on: they do not hold the join.
            let blocked = self.inst.tokens.iter().enumerate().any(|(k, t)| {
                t.scope == scope
                    && t.node != node
                    && !self.is_remainder(k)
                    && self.reaches(&t.node, &node)
                    && !(t.state == TokenState::Joining && self.reaches(&node, &t.node))
            });
            if !blocked {
                let ids: Vec<TokenId> = self
                    .inst
                    .tokens
                    .iter()
                    .filter(|t| {
                        t.node == node && t.scope == scope && t.state == TokenState::Joining
                    })
                    .map(|t| t.id)
                    .collect();
                self.merge(&node, &ids);
                return true;
            }
        }
        false
    }

    /// Whether a flow path leads from `from` to `to`.
    pub(super) fn reaches(&self, from: &str, to: &str) -> bool {
        let g = &self.m.process.graph;
        let (Some(&a), Some(&b)) = (g.index.get(from), g.index.get(to)) else {
            return false;
        };
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([a]);
        while let Some(n) = queue.pop_front() {
            if n == b {
                return true;
            }
            if seen.insert(n) {
                queue.extend(g.graph.neighbors(n));
            }
        }
        false
    }

    /// Consumes the joined tokens and lets one through the gateway.
    pub(super) fn merge(&mut self, node: &str, ids: &[TokenId]) {
        let Some(&keep) = ids.first() else { return };
        self.inst
            .tokens
            .retain(|t| t.id == keep || !ids.contains(&t.id));
        let Some(i) = self.inst.tokens.iter().position(|t| t.id == keep) else {
            return;
        };
        let a = self.activity_id();
        self.history(a, node, Lifecycle::Ready, None);
        self.history(a, node, Lifecycle::Active, None);
        self.complete(i, a, None);
    }
}
