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

pub mod calendar;
pub mod engine;
pub mod model;
pub mod runtime;
pub mod store;
pub mod worker;
