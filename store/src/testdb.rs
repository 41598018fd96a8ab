//! Databases for tests of SQL written against [`Sql`]: one suite, run on each
//! backend. [`databases`] gives an empty SQLite database in memory and, when
//! `ORDO_TEST_PG` names a PostgreSQL server (`postgres://user@host:port/db`),
//! a connection inside a transaction, in a schema of its own: nothing it does
//! is seen by another test, and all of it is rolled back when it is dropped.
//! Where `CI` is set, a missing `ORDO_TEST_PG` fails the test instead of
//! leaving PostgreSQL out (`.ci/run` starts a server and sets it).

use crate::sql::{Backend, Sql};
use crate::{Conn, Error, PgConn, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// A database for one test.
pub struct TestDb {
    sql: Box<dyn Sql>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("backend", &self.sql.backend())
            .finish()
    }
}

impl std::ops::Deref for TestDb {
    type Target = dyn Sql;
    fn deref(&self) -> &(dyn Sql + 'static) {
        &*self.sql
    }
}

impl Sql for TestDb {
    fn backend(&self) -> Backend {
        self.sql.backend()
    }
    fn execute(&self, sql: &str, params: crate::sql::Params<'_>) -> Result<usize> {
        self.sql.execute(sql, params)
    }
    fn query(
        &self,
        sql: &str,
        params: crate::sql::Params<'_>,
        each: &mut dyn FnMut(&crate::sql::Row<'_>) -> Result<()>,
    ) -> Result<()> {
        self.sql.query(sql, params, each)
    }
    fn execute_batch(&self, sql: &str) -> Result<()> {
        self.sql.execute_batch(sql)
    }
}

/// The URL of the PostgreSQL server tests also run on, if any; under `CI`,
/// its absence is an error.
pub fn postgres_url() -> Result<Option<String>> {
    match std::env::var("ORDO_TEST_PG") {
        Ok(url) if !url.trim().is_empty() => Ok(Some(url)),
        _ if std::env::var_os("CI").is_some() => Err(Error::Database(
            "CI runs every database test on PostgreSQL too: set ORDO_TEST_PG (see .ci/run)"
                .to_owned(),
        )),
        _ => Ok(None),
    }
}

/// An empty database on each backend there is.
pub fn databases() -> Result<Vec<TestDb>> {
    let mut all = vec![TestDb {
        sql: Box::new(Conn::open_in_memory()?),
    }];
    if let Some(url) = postgres_url()? {
        all.push(TestDb {
            sql: Box::new(postgres_scratch(&url)?),
        });
    }
    Ok(all)
}

/// A PostgreSQL connection in a transaction, in a new empty schema.
fn postgres_scratch(url: &str) -> Result<PgConn> {
    static N: AtomicU64 = AtomicU64::new(0);
    let pg = PgConn::connect(url)?;
    let name = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    pg.execute_batch(&format!(
        "BEGIN; CREATE SCHEMA {name}; SET LOCAL search_path TO {name}"
    ))
    .map_err(|e| Error::Database(format!("a scratch schema on PostgreSQL: {e}")))?;
    Ok(pg)
}

/// A database of its own on the PostgreSQL test server, for a test that
/// runs the engine or the server there (they commit, so a rolled-back
/// schema is not enough); dropped with everything in it when dropped.
pub struct ScratchDatabase {
    admin: PgConn,
    name: String,
    url: String,
}

impl std::fmt::Debug for ScratchDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchDatabase")
            .field("name", &self.name)
            .finish()
    }
}

impl ScratchDatabase {
    /// A new empty database named after `tag` and this process on the server
    /// `server` names (`postgres://user@host:port/db`).
    pub fn new(server: &str, tag: &str) -> Result<ScratchDatabase> {
        static N: AtomicU64 = AtomicU64::new(0);
        let admin = PgConn::connect(server)?;
        let name = format!(
            "ordo_{}_{}_{}",
            tag.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // One statement each: neither may run inside a transaction.
        admin.execute_batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        admin.execute_batch(&format!("CREATE DATABASE {name}"))?;
        let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
        let url = format!("{base}/{name}");
        Ok(ScratchDatabase { admin, name, url })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = self.admin.execute_batch(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
