//! Milestones (workflow pattern 18): an activity with `milestone: M` starts
//! only while a token of its scope instance waits at `M`. Until then its token
//! waits at the activity (joining, as a token waiting for a critical section
//! does); once no token of the scope waits at `M` or can still reach it, the
//! milestone has passed for good and the token goes on along `missed` (or
//! `next`) without running the activity.

use super::*;
use std::collections::HashMap;

impl<'m, 'p> Step<'m, 'p> {
    /// Whether a token of `scope` rests at `milestone`.
    pub(super) fn at_milestone(&self, scope: ScopeId, milestone: &str) -> bool {
        self.inst.rests_at(scope, milestone)
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

    /// Where tokens rest, by scope and node (for milestones).
    fn resting(&self) -> HashSet<(ScopeId, &str)> {
        self.inst
            .tokens
            .iter()
            .filter(|t| t.rests())
            .map(|t| (t.scope, t.node.as_str()))
            .collect()
    }

    /// Lets in every token whose milestone has been reached. A node that is
    /// also in a critical section is woken by the section's release instead,
    /// which asks the milestone too.
    pub(super) fn wake_at_milestones(&mut self) {
        if !self.m.process.has_milestones() {
            return;
        }
        // Only a token entering a milestone can let one in.
        if !std::mem::take(&mut self.milestone_reached) {
            return;
        }
        let resting = self.resting();
        let woken: Vec<usize> = (0..self.inst.tokens.len())
            .filter(|&i| {
                let t = &self.inst.tokens[i];
                t.state == TokenState::Joining
                    && self.m.node(&t.node).is_some_and(|n| {
                        n.critical().is_none()
                            && n.milestone()
                                .is_some_and(|(m, _)| resting.contains(&(t.scope, m)))
                    })
                    && !self.is_run(i)
            })
            .collect();
        for i in woken {
            self.inst.tokens[i].state = TokenState::Arriving;
        }
    }

    /// Tokens waiting for a milestone that has passed for good go on without
    /// running their activity, which is recorded as withdrawn (ready →
    /// aborted), along `missed` or `next`. Returns whether one moved.
    ///
    /// A milestone can still come when a token of the scope that will move can
    /// get to it. Tokens that will move are those not waiting for a milestone
    /// (but not the runs a completed multi-instance activity left to finish),
    /// and, once its own milestone can come, a token waiting for one (a
    /// fixpoint). The tokens left over pass: first every one whose milestone
    /// no token at all can get to (their passing cannot help the others: each
    /// goes on from where it is); when there is none, the milestones wait on
    /// each other, and the oldest token passes, which may let the others start.
    pub(super) fn pass_missed_milestones(&mut self) -> bool {
        if !self.m.process.has_milestones() {
            return false;
        }
        let ids: Vec<TokenId> = {
            let resting = self.resting();
            let milestone_of = |i: usize| {
                self.m
                    .node(&self.inst.tokens[i].node)
                    .and_then(Node::milestone)
            };
            let gated: Vec<(usize, &str)> = (0..self.inst.tokens.len())
                .filter(|&i| self.inst.tokens[i].state == TokenState::Joining && !self.is_run(i))
                .filter_map(|i| {
                    let (m, _) = milestone_of(i)?;
                    (!resting.contains(&(self.inst.tokens[i].scope, m))).then_some((i, m))
                })
                .collect();
            if gated.is_empty() {
                return false;
            }
            // Each scope's tokens, and whether one node reaches another (asked
            // often, for the same few node pairs, when many runs wait alike).
            let mut by_scope: HashMap<ScopeId, Vec<usize>> = HashMap::new();
            for (k, t) in self.inst.tokens.iter().enumerate() {
                if !self.is_remainder(k) {
                    by_scope.entry(t.scope).or_default().push(k);
                }
            }
            let mut known: HashMap<(&str, &str), bool> = HashMap::new();
            let waiting: HashSet<usize> = gated.iter().map(|(i, _)| *i).collect();
            let mut live: HashSet<usize> = HashSet::new();
            loop {
                let before = live.len();
                for &(g, m) in &gated {
                    if !live.contains(&g)
                        && self.milestone_comes(g, m, &by_scope, &mut known, |k| {
                            !waiting.contains(&k) || live.contains(&k)
                        })
                    {
                        live.insert(g);
                    }
                }
                if live.len() == before {
                    break;
                }
            }
            let stuck: Vec<usize> = gated
                .iter()
                .filter(|(g, _)| !live.contains(g))
                .map(|(g, _)| *g)
                .collect();
            let mut passing: Vec<usize> = gated
                .iter()
                .filter(|(g, m)| {
                    !live.contains(g)
                        && !self.milestone_comes(*g, m, &by_scope, &mut known, |_| true)
                })
                .map(|(g, _)| *g)
                .collect();
            if passing.is_empty() {
                passing.extend(stuck.iter().min_by_key(|&&g| self.inst.tokens[g].id));
            }
            passing
                .iter()
                .map(|&g| self.inst.tokens[g].id)
                .collect::<Vec<TokenId>>()
        };
        if ids.is_empty() {
            return false;
        }
        for id in ids {
            let Some(i) = self.token_index(id) else {
                continue;
            };
            let node = self.inst.tokens[i].node.clone();
            let machine = self.m;
            let Some((_, missed)) = machine.node(&node).and_then(Node::milestone) else {
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
        }
        true
    }

    /// Whether a token of `g`'s scope that `counts` can get to `milestone`.
    fn milestone_comes<'a>(
        &'a self,
        g: usize,
        milestone: &'a str,
        by_scope: &HashMap<ScopeId, Vec<usize>>,
        known: &mut HashMap<(&'a str, &'a str), bool>,
        counts: impl Fn(usize) -> bool,
    ) -> bool {
        let scope = self.inst.tokens[g].scope;
        by_scope.get(&scope).is_some_and(|ks| {
            ks.iter().any(|&k| {
                if k == g || !counts(k) {
                    return false;
                }
                let from = self.inst.tokens[k].node.as_str();
                from == milestone
                    || *known
                        .entry((from, milestone))
                        .or_insert_with(|| self.reaches(from, milestone))
            })
        })
    }
}
