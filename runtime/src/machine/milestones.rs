//! Milestones (workflow pattern 18): an activity with `milestone: M` starts
//! only while a token of its scope instance waits at `M`. Until then its token
//! waits at the activity (joining, as a token waiting for a critical section
//! does); once no token of the scope waits at `M` or can still reach it, the
//! milestone has passed for good and the token goes on along `missed` (or
//! `next`) without running the activity.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// Whether a token of `scope` rests at `milestone` (waits there, or holds
    /// an incident there: the instance is in that state either way). Runs a
    /// multi-instance activity left to finish (`rest: wait`) do not count: the
    /// activity itself has completed.
    pub(super) fn at_milestone(&self, scope: ScopeId, milestone: &str) -> bool {
        self.inst.tokens.iter().any(|t| {
            t.scope == scope
                && t.node == milestone
                && match &t.state {
                    TokenState::Waiting {
                        wait:
                            Wait::Multi {
                                remainder: true, ..
                            },
                        ..
                    } => false,
                    TokenState::Waiting { .. } | TokenState::Incident { .. } => true,
                    _ => false,
                }
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
    ///
    /// "Can still reach" counts only tokens that will move: not the runs a
    /// completed multi-instance activity left to finish, and a token that
    /// itself waits for a milestone only once its own milestone can come (so
    /// two activities waiting for each other's milestones both pass, rather
    /// than wait for ever).
    pub(super) fn pass_missed_milestones(&mut self) -> bool {
        if !self.m.process.has_milestones() {
            return false;
        }
        let gated: Vec<usize> = (0..self.inst.tokens.len())
            .filter(|&i| {
                self.inst.tokens[i].state == TokenState::Joining && self.before_milestone(i)
            })
            .collect();
        if gated.is_empty() {
            return false;
        }
        let mut live: Vec<bool> = (0..self.inst.tokens.len())
            .map(|i| !gated.contains(&i) && !self.is_remainder(i))
            .collect();
        let milestone_of = |i: usize| {
            self.m
                .node(&self.inst.tokens[i].node)
                .and_then(Node::milestone)
        };
        loop {
            let mut changed = false;
            for &g in &gated {
                if live[g] {
                    continue;
                }
                let Some((m, _)) = milestone_of(g) else {
                    continue;
                };
                let scope = self.inst.tokens[g].scope;
                let comes = self.inst.tokens.iter().enumerate().any(|(k, t)| {
                    live[k] && t.scope == scope && (t.node == m || self.reaches(&t.node, m))
                });
                if comes {
                    live[g] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let Some(&i) = gated.iter().find(|&&g| !live[g]) else {
            return false;
        };
        let Some((_, missed)) = milestone_of(i) else {
            return false;
        };
        let node = self.inst.tokens[i].node.clone();
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
        true
    }
}
