//! # ordo-engine
//!
//! The engine of Ordo, a workflow / BPM engine. It knows nothing of CRM or HTTP:
//! plugins and the server build on it.
//!
//! Today it holds the **process model**: the YAML process format, its loader and its
//! validator ([`model`]). The runtime, the store and the scheduler follow (see
//! ARCHITECTURE.md at the repository root for the plan and the invariants).
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
pub mod model;
pub mod runtime;
pub mod store;
