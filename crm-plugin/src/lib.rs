//! Ordo's CRM plugin: the sales office's records (customers, leads,
//! opportunities, quotes, orders, contracts, receivable plans, payments, …) with
//! an audit trail, and the actions the CRM processes in `processes/crm/` call.
//!
//! The plugin lives in the engine's SQLite file (tables `crm_*`) and its actions
//! run inline, in the transaction of the step that calls them. To use it, call
//! [`install`] on the engine's configuration before opening the engine.

pub mod access;
pub mod actions;
pub mod assign;
pub mod csv_safe;
pub mod deliver;
mod demo;
pub mod http;
pub mod import;
pub mod notify;
pub mod org;
pub mod pages;
pub mod pool;
pub mod records;
pub mod schema;
pub mod visibility;

pub use http::CrmPlugin;
use ordo_engine::engine::Config;

/// Plugin errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRM tables could not be created or upgraded.
    #[error("cannot prepare the CRM tables in {path}: {source}")]
    Migrate {
        /// The database file.
        path: std::path::PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A notification template does not parse.
    #[error("the notification templates have an error: {0}")]
    Templates(String),
}

/// Creates or upgrades the CRM tables in the engine's database and registers
/// the CRM actions with the engine's configuration.
pub fn install(config: &mut Config) -> Result<(), Error> {
    let migrate = |source| Error::Migrate {
        path: config.db.clone(),
        source,
    };
    let mut conn = rusqlite::Connection::open(&config.db).map_err(migrate)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(migrate)?;
    schema::migrate(&mut conn).map_err(migrate)?;
    notify::check_templates().map_err(Error::Templates)?;
    config.actions.extend(actions::all());
    Ok(())
}
