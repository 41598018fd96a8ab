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
    /// A notification template does not parse.
    #[error("the notification templates have an error: {0}")]
    Templates(String),
}

/// Registers the CRM's tables (created or upgraded by the engine's writer when
/// it opens, with the engine's own) and its actions with the engine's
/// configuration. Call before opening the engine.
pub fn install(config: &mut Config) -> Result<(), Error> {
    config
        .migrations
        .push(("crm".to_owned(), Box::new(schema::migrate)));
    notify::check_templates().map_err(Error::Templates)?;
    config.actions.extend(actions::all());
    Ok(())
}
