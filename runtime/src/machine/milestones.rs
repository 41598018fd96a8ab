//! Milestones (workflow pattern 18): an activity with `milestone: M` starts
//! only while a token of its scope instance waits at `M`. Until then its token
//! waits at the activity (joining, as a token waiting for a critical section
//! does); once no token of the scope waits at `M` or can still reach it, the
//! milestone has passed for good and the token goes on along `missed` (or
//! `next`) without running the activity.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Whether a token of `scope` rests at `milestone` (waits there, or holds
    /// an incident there: the instance is in that state either way).
    pub(super) fn at_milestone(&self, scope: ScopeId, milestone: &str) -> bool {
        self.inst.tokens.iter().any(|t| {
            t.scope == scope
                && t.node == milestone
                && matches!(
                    t.state,
                    TokenState::Waiting { .. } | TokenState::Incident { .. }
                )
        })
    }

    /// Whether token `i` must wait at its node for the node's milestone (the
    /// runs of a multi-instance activity are past it: the activity started).
    pub(super) fn before_milestone(&self, i: usize) -> bool {
        self.waits_for_milestone(&self.inst.tokens[i]) && !self.is_run(i)
    }

    /// Whether the milestone of a token's node has not been reached.
    pub(super) fn waits_for_milestone(&self, t: &Token) -> bool {
        self.m
            .node(&t.node)
            .and_then(Node::milestone)
            .is_some_and(|(m, _)| !self.at_milestone(t.scope, m))
    }

    /// Lets in every token whose milestone has been reached. A node that is
    /// also in a critical section is woken by the section's release instead,
    /// which asks the milestone too.
    pub(super) fn wake_at_milestones(&mut self) {
        if !self.m.process.has_milestones() {
            return;
        }
        for i in 0..self.inst.tokens.len() {
            let t = &self.inst.tokens[i];
            if t.state != TokenState::Joining {
                continue;
            }
            let Some(node) = self.m.node(&t.node) else {
                continue;
            };
            if node.milestone().is_some() && node.critical().is_none() && !self.before_milestone(i)
            {
                self.inst.tokens[i].state = TokenState::Arriving;
            }
        }
    }

    /// A token waiting for a milestone that no token of its scope rests at or
    /// can still reach goes on without running its activity, which is recorded
    /// as withdrawn (ready → aborted). Returns whether one moved.
    pub(super) fn pass_missed_milestones(&mut self) -> bool {
        if !self.m.process.has_milestones() {
            return false;
        }
        let waiting: Vec<(TokenId, String, ScopeId, &'p str, Option<&'p str>)> = self
            .inst
            .tokens
            .iter()
            .filter(|t| t.state == TokenState::Joining)
            .filter_map(|t| {
                let (m, missed) = self.m.node(&t.node)?.milestone()?;
                Some((t.id, t.node.clone(), t.scope, m, missed))
            })
            .collect();
        for (id, node, scope, m, missed) in waiting {
            if self.at_milestone(scope, m) || self.milestone_can_come(scope, m) {
                continue;
            }
            let Some(i) = self.token_index(id) else {
                continue;
            };
            let a = self.activity_id();
            self.history(a, &node, Lifecycle::Ready, None);
            self.history(a, &node, Lifecycle::Aborted, None);
            let targets: Vec<String> = match missed {
                Some(to) => vec![to.to_owned()],
                None => self
                    .m
                    .node(&node)
                    .and_then(Node::next)
                    .map(|n| n.ids().to_vec())
                    .unwrap_or_default(),
            };
            self.leave(i, &targets);
            return true;
        }
        false
    }

    /// Whether a token of `scope` can still get to `milestone`: one on its way
    /// there, or one whose path leads there (a token waiting for this same
    /// milestone does not count: it moves only once the milestone is reached).
    fn milestone_can_come(&self, scope: ScopeId, milestone: &str) -> bool {
        self.inst.tokens.iter().any(|t| {
            if t.scope != scope {
                return false;
            }
            let waits_for_it = t.state == TokenState::Joining
                && self
                    .m
                    .node(&t.node)
                    .and_then(Node::milestone)
                    .is_some_and(|(m, _)| m == milestone);
            !waits_for_it && (t.node == milestone || self.reaches(&t.node, milestone))
        })
    }
}
