//! The runtime: a pure state machine that moves an instance's tokens through a
//! validated [`ordo_model::Process`].
//!
//! [`Machine::start`] and [`Machine::apply`] take an instance and a command and
//! return the new instance and a list of [`Action`]s (history rows, tasks to open,
//! jobs to run, incidents). They never do I/O and never read the system clock (a
//! [`Clock`] is passed in), so the store can commit a step atomically and tests can
//! drive time by hand.
//!
//! ```
//! use ordo_model::{self as model, Options};
//! use ordo_runtime::{Action, Command, InstanceStatus, Machine, SystemClock, Vars};
//!
//! let yaml = "
//! id: approve
//! start: [{ id: s, next: review }]
//! nodes:
//!   review: { type: user, form: { ok: { type: boolean, required: true } }, next: done }
//!   done: { type: end }
//! ";
//! let process = model::load("approve.yaml", yaml, &Options::default()).process.unwrap();
//! let machine = Machine::new(&process).unwrap();
//! let (inst, actions) = machine.start("i1".into(), 1, None, Vars::new(), &SystemClock).unwrap();
//! let task = actions.iter().find_map(|a| match a { Action::CreateTask(t) => Some(t.activity), _ => None }).unwrap();
//! let vars = serde_json::json!({"ok": true}).as_object().unwrap().clone();
//! let (inst, _) = machine.apply(&inst, Command::CompleteTask { activity: task, variables: vars, actor: Some("ann".into()) }, &SystemClock).unwrap();
//! assert_eq!(inst.status, InstanceStatus::Completed);
//! ```

mod clock;
pub mod eval;
pub mod form;
pub mod lifecycle;
mod machine;
mod state;

pub use clock::{Clock, ManualClock, SystemClock};
pub use machine::{
    Command, DEFAULT_BACKOFF_MS, DEFAULT_MAX_ITERATIONS, DEFAULT_RETRIES, Error, MAX_STEPS,
    MAX_VARIABLES_BYTES, Machine, add_iso, next_due,
};
pub use state::*;

#[cfg(test)]
mod tests;
