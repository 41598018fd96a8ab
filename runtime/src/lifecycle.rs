//! The activity lifecycle as an explicit transition table.
//!
//! Every activity instance moves through these states, and the machine emits
//! each move as a history entry from one place (`Step::history`), which checks
//! it against [`allowed`]: a move the table does not allow is a bug in the
//! machine, and the command that made it is refused
//! ([`crate::Error::InvalidTransition`]) instead of storing a history that
//! contradicts itself.
//!
//! ```text
//!            ┌──────────────► faulted ──┬─► aborted      (retry: the node is entered anew)
//!            │                  ▲       ├─► aborting ─► aborted   (cancelled)
//!  (new) ─► ready ─► active ──┬─┘       └─► completing ─► completed  (resolved)
//!    │         │        │     ├─► completing ─► completed
//!    │         │        │     ├─► completed          (an event: start, boundary, catch, throw)
//!    │         │        │     └─► aborting ─► aborted
//!    │         └─► aborted   (withdrawn before it started: its milestone passed)
//!    ├─► completed (a start event)
//!    └─► faulted   (a node that cannot even be entered)
//! ```

use crate::Lifecycle::{self, *};

/// Whether an activity instance in state `from` (`None`: not started yet) may
/// move to `to`.
pub fn allowed(from: Option<Lifecycle>, to: Lifecycle) -> bool {
    matches!(
        (from, to),
        (None, Ready | Completed | Faulted)
            | (Some(Ready), Active | Faulted | Aborted)
            | (Some(Active), Completing | Completed | Aborting | Faulted)
            | (Some(Completing), Completed)
            | (Some(Aborting), Aborted)
            | (Some(Faulted), Aborted | Aborting | Completing)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Lifecycle; 7] = [
        Ready, Active, Completing, Completed, Aborting, Aborted, Faulted,
    ];

    #[test]
    fn ended_states_are_final_and_nothing_goes_back_to_ready() {
        for to in ALL {
            assert!(!allowed(Some(Completed), to), "completed → {to:?}");
            assert!(!allowed(Some(Aborted), to), "aborted → {to:?}");
            for from in ALL {
                assert!(!allowed(Some(from), Ready), "{from:?} → ready");
            }
        }
    }

    #[test]
    fn the_usual_paths_are_allowed() {
        let paths: [&[Lifecycle]; 5] = [
            &[Ready, Active, Completing, Completed],
            &[Ready, Active, Aborting, Aborted],
            &[Ready, Active, Faulted, Aborted],
            &[Ready, Active, Faulted, Completing, Completed],
            &[Ready, Active, Completed],
        ];
        for path in paths {
            let mut from = None;
            for &to in path {
                assert!(allowed(from, to), "{from:?} → {to:?} in {path:?}");
                from = Some(to);
            }
        }
        assert!(
            !allowed(Some(Ready), Completed),
            "ready must become active first"
        );
        assert!(!allowed(None, Active));
    }
}
