//! SQLite storage: schema, migrations, and the rows the engine reads and writes.
//!
//! Instances live here, not in memory: an instance's whole state is one JSON column
//! (read and written whole by the one writer), and what people query — tasks,
//! history, incidents — has tables of its own with indexes. Migrations are numbered
//! and tracked with `PRAGMA user_version`.
//!
//! The engine reaches the tables only through the read/write trait pairs
//! (`ReadInstances`/`WriteInstances`, …), implemented here for a SQLite
//! connection (or transaction, which derefs to one). A PostgreSQL backend for
//! several nodes implements the same traits.
//!
//! One module per table group, each with its tests; everything public is
//! re-exported here:
//!
//! - `sql`: the backend-neutral SQL handle ([`Sql`], [`SqlExt`], [`params!`]) for plugins.
//! - `sqlite`: the connection ([`Conn`]), opening, transactions, backup and migrations.
//! - `definitions`: deployed process versions ([`ReadDefinitions`]/[`WriteDefinitions`]).
//! - `instances`: instance state, lists and trees, and the instance id sequence ([`ReadInstances`]/[`WriteInstances`]).
//! - `tasks`: user tasks, their candidates and the gauges ([`ReadTasks`]/[`WriteTasks`]).
//! - `history`: activity transitions and task events ([`ReadHistory`]).
//! - `events`: subscriptions, timers, start events, message declarations, buffered messages and incidents ([`ReadEvents`]/[`WriteEvents`]).
//! - `jobs`: service calls, their leases, attempts and retries ([`Jobs`]).

pub mod sql;
pub mod testdb;
pub use sql::{Backend, FromSql, Row, Sql, SqlExt, ToSql, Value, param_refs};

mod definitions;
mod events;
mod history;
mod instances;
mod jobs;
mod pg;
mod sqlite;
mod tasks;

pub use definitions::{DefinitionRow, ReadDefinitions, WriteDefinitions};
pub use events::{IncidentRow, ReadEvents, StartRow, WriteEvents};
pub use history::{HistoryRow, ReadHistory};
pub use instances::{
    InstanceFilter, InstanceRow, ReadInstances, WriteInstances, next_instance_id,
    reserve_instance_ids,
};
pub use jobs::{JobRow, Jobs};
pub use pg::PgConn;
pub use sqlite::{
    Conn, Sync, WriteTx, backup, describe, is_postgres, migrate_tables, open_reader, open_writer,
};
pub use tasks::{Candidates, ClosedTask, Gauges, ReadTasks, TaskEvent, TaskRow, WriteTasks};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused a statement: a constraint (unique key, foreign
    /// key, NOT NULL) it would break.
    #[error("database constraint: {0}")]
    Constraint(String),
    /// The database said no for another reason (I/O, a full disk, a statement
    /// that does not parse, a lock not obtained within the busy timeout).
    #[error("database: {0}")]
    Database(String),
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRows,
    /// A column does not hold what it was read as.
    #[error("column {index}: {message}")]
    Column {
        /// The column's position.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A parameter cannot be stored.
    #[error("parameter: {0}")]
    Parameter(String),
    /// A stored JSON column does not decode (a newer or damaged database).
    #[error("stored data does not decode: {0}")]
    Json(#[from] serde_json::Error),
    /// The database was written by a newer Ordo.
    #[error("the database has schema version {found}; this Ordo knows up to {known}")]
    TooNew {
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
    /// A backup could not be made.
    #[error("backup: {0}")]
    Backup(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::Constraint(e.to_string())
            }
            rusqlite::Error::ToSqlConversionFailure(inner) => Error::Parameter(inner.to_string()),
            other => Error::Database(other.to_string()),
        }
    }
}

impl Error {
    /// Whether the database refused the write because it breaks a constraint
    /// (for example a unique key someone else took first).
    pub fn is_constraint(&self) -> bool {
        matches!(self, Error::Constraint(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_become_store_errors() -> Result<()> {
        assert!(matches!(
            Error::from(rusqlite::Error::QueryReturnedNoRows),
            Error::NoRows
        ));
        let (_d, conn) = testing::db();
        let taken = conn.execute(
            "INSERT INTO sequences (name, next) VALUES ('instance', 1)",
            &[],
        );
        assert!(
            taken.as_ref().is_err_and(Error::is_constraint),
            "a unique key taken: {taken:?}"
        );
        let garbled = conn.execute("INSERT INTO nowhere VALUES (1)", &[]);
        assert!(
            matches!(garbled, Err(Error::Database(_))),
            "not a constraint: {garbled:?}"
        );
        let none = conn.query_row("SELECT 1 FROM sequences WHERE name = 'none'", &[], |r| {
            r.get::<i64>(0)
        });
        assert!(matches!(none, Err(Error::NoRows)), "{none:?}");
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! What the modules' tests share: a migrated database in a temporary
    //! directory, and instances to store.

    use crate::{Conn, Sync, open_writer};
    use chrono::{DateTime, Utc};
    use ordo_runtime::{Instance, InstanceStatus, TaskSpec};

    /// A migrated database on each backend (`crate::testdb`).
    pub(crate) fn dbs() -> Vec<crate::testdb::TestDb> {
        let all = crate::testdb::databases().unwrap_or_else(|e| panic!("{e}"));
        for db in &all {
            crate::sqlite::migrate_tables(&**db).unwrap_or_else(|e| panic!("{e}"));
        }
        all
    }

    /// A migrated database file in a new temporary directory (kept while the
    /// directory lives).
    pub(crate) fn db() -> (tempfile::TempDir, Conn) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conn =
            open_writer(&dir.path().join("t.db"), Sync::Normal).unwrap_or_else(|e| panic!("{e}"));
        (dir, conn)
    }

    /// An active instance of process `p` version 1, started at the epoch.
    pub(crate) fn instance(id: &str, version: u64) -> Instance {
        Instance {
            id: id.into(),
            process: "p".into(),
            process_version: 1,
            business_key: None,
            status: InstanceStatus::Active,
            version,
            scopes: Default::default(),
            tokens: Vec::new(),
            parent: None,
            subscriptions: Vec::new(),
            sections: Default::default(),
            next_id: 1,
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            ended_at: None,
        }
    }

    /// The instant `ms` milliseconds after the epoch.
    pub(crate) fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_else(|| panic!("{ms} ms"))
    }

    /// An unassigned task at node `n{activity}` offered to no one, priority 50.
    pub(crate) fn task(activity: u64) -> TaskSpec {
        TaskSpec {
            activity: ordo_runtime::ActivityInstanceId(activity),
            node: format!("n{activity}"),
            name: None,
            assignee: None,
            candidate_users: Vec::new(),
            candidate_groups: Vec::new(),
            excluded: Vec::new(),
            due: None,
            priority: 50,
        }
    }
}
