//! Compensation: taking the completed activities of a scope and running their
//! handlers, newest first.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Starts compensating, for the throw or end at token `i`, the completed
    /// activities of its scope (`all`, or those of one node), newest first. Returns
    /// false when there is nothing to compensate.
    pub(super) fn start_compensation(
        &mut self,
        i: usize,
        a: ActivityInstanceId,
        target: &str,
    ) -> bool {
        let mut scope = self.inst.tokens[i].scope;
        // From inside an event subprocess, compensation reaches the scope around it.
        if let Some(sc) = self.inst.scopes.get(&scope)
            && let Some(n) = &sc.node
            && matches!(self.m.node(n), Some(Node::EventSubprocess(_)))
            && let Some(p) = sc.parent
        {
            scope = p;
        }
        let Some(sc) = self.inst.scopes.get_mut(&scope) else {
            return false;
        };
        let (mut pending, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut sc.done)
            .into_iter()
            .partition(|c| target == "all" || c.node == target);
        sc.done = kept;
        if pending.is_empty() {
            return false;
        }
        pending.sort_by_key(|c| std::cmp::Reverse(c.seq));
        self.inst.tokens[i].state = TokenState::Waiting {
            activity: a,
            wait: Wait::Compensate {
                inner: ScopeId::ROOT,
                pending,
            },
        };
        self.next_handler(i);
        true
    }

    /// Runs the next compensation handler for the throw at token `i`, or, when none
    /// is left, lets the throw or end go on.
    pub(super) fn next_handler(&mut self, i: usize) {
        let TokenState::Waiting {
            activity: a,
            wait: Wait::Compensate { pending, .. },
        } = &mut self.inst.tokens[i].state
        else {
            return;
        };
        let a = *a;
        if pending.is_empty() {
            return self.throw_or_end(i, a, true);
        }
        let c = pending.remove(0);
        let inner = ScopeId(self.id());
        if let TokenState::Waiting {
            wait: Wait::Compensate { inner: slot, .. },
            ..
        } = &mut self.inst.tokens[i].state
        {
            *slot = inner;
        }
        let t = &self.inst.tokens[i];
        let sc = Scope::new(Some(t.node.clone()), Some(t.scope), c.vars);
        self.inst.scopes.insert(inner, sc);
        let id = TokenId(self.id());
        self.inst.tokens.push(Token {
            id,
            node: c.handler,
            scope: inner,
            from: Some(c.node),
            state: TokenState::Arriving,
        });
    }
}
