//! # ordo-engine
//!
//! The engine of Ordo, a workflow / BPM engine. It knows nothing of CRM or HTTP:
//! plugins and the server build on it.
//!
//! It holds the **process model** (the YAML format, its loader and validator:
//! [`model`]), the pure **runtime** ([`runtime`]), working **calendars**
//! ([`calendar`]), the SQLite **store** ([`store`]) and the **engine** that makes
//! the runtime durable and runs timers, messages, signals and jobs ([`engine`]).
//! ARCHITECTURE.md at the repository root has the map and the invariants.
//!
//! ```
//! use ordo_engine::model::{self, Options};
//!
//! let loaded = model::load("bad.yaml", "id: x\nstart: []\nnodes: {}\n", &Options::default());
//! assert!(loaded.has_errors());
//! assert_eq!(loaded.diagnostics[0].code, "no-start");
//! assert_eq!((loaded.diagnostics[0].line, loaded.diagnostics[0].column), (2, 8));
//! ```

pub mod engine;
pub mod worker;

/// The process model (`ordo-model`): YAML → validated `Process`.
pub use ordo_model as model;
/// Working calendars (in `ordo-model`).
pub use ordo_model::calendar;
/// The pure runtime (`ordo-runtime`).
pub use ordo_runtime as runtime;
/// The storage traits and their SQLite implementation (`ordo-store`).
pub use ordo_store as store;
