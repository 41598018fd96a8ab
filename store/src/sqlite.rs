//! The SQLite connection: opening the file (writer, reader, a command-line
//! tool's), write transactions, online backup, and the numbered migrations.

use crate::sql::{self, Backend, Row, Sql, SqlExt};
use crate::{Error, Result};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sync {
    /// `synchronous=FULL`: a commit survives a power cut (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: with WAL, survives a crash of Ordo but may lose the
    /// last commits on a power cut; faster.
    Normal,
}

/// A connection to the database file: the engine's writer, a reader, or a
/// command-line tool's. What sits above the store sees only this type, the
/// table traits it implements and the [`Sql`] handle, never the driver.
pub struct Conn(pub(crate) Inner);

/// The driver's connection: the store reaches it; nothing outside the crate
/// does.
pub(crate) enum Inner {
    /// An embedded SQLite file.
    Sqlite(Connection),
    /// A PostgreSQL server (a single node: see [`Conn::open_postgres_writer`]).
    Postgres(Box<crate::PgConn>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Sqlite(c) => f.debug_struct("Conn").field("path", &c.path()).finish(),
            Inner::Postgres(_) => f
                .debug_struct("Conn")
                .field("backend", &"postgres")
                .finish(),
        }
    }
}

impl Conn {
    /// The SQL handle of whichever backend runs.
    fn sql(&self) -> &dyn Sql {
        match &self.0 {
            Inner::Sqlite(c) => c,
            Inner::Postgres(p) => &**p,
        }
    }

    /// The SQLite connection, when SQLite runs.
    pub(crate) fn sqlite(&self) -> Option<&Connection> {
        match &self.0 {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }
}

impl Sql for Conn {
    fn backend(&self) -> Backend {
        self.sql().backend()
    }
    fn execute(&self, sql: &str, params: sql::Params<'_>) -> Result<usize> {
        self.sql().execute(sql, params)
    }
    fn query(
        &self,
        sql: &str,
        params: sql::Params<'_>,
        each: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        self.sql().query(sql, params, each)
    }
    fn execute_batch(&self, sql: &str) -> Result<()> {
        self.sql().execute_batch(sql)
    }
}

/// The database `db` names, fit to print: a file's path, or a PostgreSQL
/// server's host, port, database and user (never its password).
pub fn describe(db: &std::path::Path) -> String {
    if is_postgres(db) {
        format!(
            "PostgreSQL {}",
            crate::pg::redact(db.to_str().unwrap_or_default())
        )
    } else {
        db.display().to_string()
    }
}

/// Whether `db` names a PostgreSQL database (`postgres://…` or
/// `postgresql://…`) rather than a SQLite file.
pub fn is_postgres(db: &std::path::Path) -> bool {
    db.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// The advisory lock keys: one serializes migrations, one is held by the
/// running node for its lifetime.
const MIGRATION_LOCK: i64 = 0x6f72_646f_0001;
const NODE_LOCK: i64 = 0x6f72_646f_0002;

/// How long a writer waits for another process's write lock (a command-line
/// tool beside a running server) before it gives up.
const SHARED_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Conn {
    /// Opens (creating if needed) the database at `path` for writing, and
    /// migrates the engine's tables: the engine's writer.
    pub fn open_writer(path: &std::path::Path, sync: Sync) -> Result<Conn> {
        if is_postgres(path) {
            return Self::open_postgres_writer(path.to_str().unwrap_or_default());
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if sync == Sync::Full { "FULL" } else { "NORMAL" },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The writer runs the engine's statements and every plugin's: keep
        // them all prepared.
        conn.set_prepared_statement_cache_capacity(512);
        migrate(&conn)?;
        Ok(Conn(Inner::Sqlite(conn)))
    }

    /// The engine's writer on PostgreSQL: connects, migrates the engine's
    /// tables in one transaction under an advisory lock (two starting at once
    /// take turns), and holds the node lock for as long as it lives. Several
    /// nodes on one database need the cross-node rules (claiming timers and
    /// jobs, retrying a command that lost a race) that are not built yet, so
    /// a second node is refused rather than let to fire timers twice.
    pub fn open_postgres_writer(url: &str) -> Result<Conn> {
        let pg = crate::PgConn::connect(url)?;
        let held: i64 = pg.query_row(
            "SELECT CASE WHEN pg_try_advisory_lock(?1) THEN 1 ELSE 0 END",
            crate::params![NODE_LOCK],
            |r| r.get(0),
        )?;
        if held == 0 {
            return Err(Error::Database(
                "another Ordo node is running on this PostgreSQL database; several nodes on one \
                 database are not supported yet: stop the other one first"
                    .to_owned(),
            ));
        }
        pg.execute_batch("BEGIN")?;
        let migrated = pg
            .execute(
                "SELECT pg_advisory_xact_lock(?1)",
                crate::params![MIGRATION_LOCK],
            )
            .and_then(|_| migrate_tables(&pg));
        match migrated {
            Ok(()) => pg.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = pg.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        Ok(Conn(Inner::Postgres(Box::new(pg))))
    }

    /// Opens a read-only connection.
    pub fn open_reader(path: &std::path::Path) -> Result<Conn> {
        if is_postgres(path) {
            let pg = crate::PgConn::connect(path.to_str().unwrap_or_default())?;
            pg.execute_batch("SET default_transaction_read_only = on")?;
            return Ok(Conn(Inner::Postgres(Box::new(pg))));
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Conn(Inner::Sqlite(conn)))
    }

    /// Opens the database for a command-line tool that writes while a server
    /// may be running on the same file (`ordo user add`, `ordo token create`):
    /// its writes ([`Conn::transaction`]) wait up to 30 s for the server's
    /// write lock instead of failing. Does not migrate the engine's tables.
    pub fn open_shared(path: &std::path::Path) -> Result<Conn> {
        if is_postgres(path) {
            let pg = crate::PgConn::connect(path.to_str().unwrap_or_default())?;
            return Ok(Conn(Inner::Postgres(Box::new(pg))));
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(SHARED_BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Conn(Inner::Sqlite(conn)))
    }

    /// An empty database in memory, for tests of SQL written against [`Sql`].
    pub fn open_in_memory() -> Result<Conn> {
        Ok(Conn(Inner::Sqlite(Connection::open_in_memory()?)))
    }

    /// Begins a write transaction that holds the write lock from its first
    /// statement (`BEGIN IMMEDIATE`): committed by [`WriteTx::commit`], rolled
    /// back when dropped.
    pub fn begin(&self) -> Result<WriteTx<'_>> {
        match &self.0 {
            Inner::Sqlite(c) => Sql::execute(c, "BEGIN IMMEDIATE", &[])?,
            Inner::Postgres(p) => Sql::execute(&**p, "BEGIN", &[])?,
        };
        Ok(WriteTx {
            conn: self,
            open: true,
        })
    }

    /// Runs `f` in one write transaction: committed when it succeeds, rolled
    /// back when it fails.
    pub fn transaction<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Conn) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let tx = self.begin()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// An open write transaction (see [`Conn::begin`]).
#[derive(Debug)]
pub struct WriteTx<'c> {
    conn: &'c Conn,
    open: bool,
}

impl WriteTx<'_> {
    /// Commits.
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        if let Err(e) = Sql::execute(self.conn, "COMMIT", &[]) {
            // A commit that failed leaves the transaction open in SQLite.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Opens (creating if needed) the database at `path` for writing, and migrates it.
pub fn open_writer(path: &std::path::Path, sync: Sync) -> Result<Conn> {
    Conn::open_writer(path, sync)
}

/// Opens a read-only connection.
pub fn open_reader(path: &std::path::Path) -> Result<Conn> {
    Conn::open_reader(path)
}

/// Copies the database at `from` to a new file `to`, online: one read
/// transaction sees a consistent snapshot while the writer goes on (WAL), and the
/// copy is complete or, on error, removed. `to` must not exist.
pub fn backup(from: &std::path::Path, to: &std::path::Path) -> Result<u64> {
    if is_postgres(from) {
        return Err(Error::Backup(
            "a PostgreSQL database is backed up with its own tools: run `pg_dump -Fc -f FILE DATABASE_URL` (and `pg_restore` to restore)".to_owned(),
        ));
    }
    // Claim the name first (create_new fails if anything is there, even if it
    // appeared a moment ago): an existing file is never overwritten.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Backup(format!(
                "{} exists already; choose a new file",
                to.display()
            )));
        }
        Err(e) => {
            return Err(Error::Backup(format!(
                "cannot create {}: {e}",
                to.display()
            )));
        }
    }
    let src = match open_reader(from) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(to);
            return Err(e);
        }
    };
    let copied = (|| -> Result<u64> {
        let mut dst = Connection::open(to)?;
        {
            let Some(src) = src.sqlite() else {
                return Err(Error::Backup("not a SQLite database".to_owned()));
            };
            let b = rusqlite::backup::Backup::new(src, &mut dst)?;
            // All pages in one step: one read transaction, one consistent snapshot.
            b.step(-1)?;
        }
        dst.pragma_update(None, "journal_mode", "DELETE")?;
        let ok: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(Error::Backup(format!(
                "the copy fails its integrity check: {ok}"
            )));
        }
        Ok(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0))
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}

fn migrate(conn: &Connection) -> Result<()> {
    migrate_tables(conn)
}

/// Creates or upgrades the engine's tables on either backend, each migration
/// in a savepoint of its own (on SQLite outside a transaction, a savepoint is
/// one). SQLite counts them in `PRAGMA user_version`, PostgreSQL in the
/// `ordo_schema` table; a database newer than this Ordo is refused. On
/// PostgreSQL it runs inside the caller's transaction (savepoints need one);
/// serializing nodes that migrate at once (an advisory lock) is the caller's,
/// and comes with the engine on PostgreSQL.
pub fn migrate_tables(sql: &dyn Sql) -> Result<()> {
    let current: i64 = match sql.backend() {
        Backend::Sqlite => sql.query_row("PRAGMA user_version", &[], |r| r.get(0))?,
        Backend::Postgres => {
            sql.execute_batch("CREATE TABLE IF NOT EXISTS ordo_schema (version INTEGER NOT NULL)")?;
            sql.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM ordo_schema",
                &[],
                |r| r.get(0),
            )?
        }
    };
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(Error::TooNew {
            found: current,
            known,
        });
    }
    for (i, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        sql.savepoint("migration", || {
            sql.execute_batch(step)?;
            match sql.backend() {
                Backend::Sqlite => sql.execute_batch(&format!("PRAGMA user_version = {}", i + 1)),
                Backend::Postgres => sql
                    .execute(
                        "INSERT INTO ordo_schema (version) VALUES (?1)",
                        crate::params![i + 1],
                    )
                    .map(|_| ()),
            }
        })?;
    }
    Ok(())
}

const MIGRATIONS: &[&str] = &[
    // 1: definitions, instances, tasks, history, jobs, incidents.
    "CREATE TABLE definitions (
        process_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        deployed_at TEXT NOT NULL,
        PRIMARY KEY (process_id, version)
    );
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        process_id TEXT NOT NULL,
        process_version INTEGER NOT NULL,
        business_key TEXT,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE INDEX instances_by_process ON instances (process_id, status);
    CREATE INDEX instances_by_key ON instances (business_key) WHERE business_key IS NOT NULL;
    CREATE TABLE tasks (
        instance_id TEXT NOT NULL,
        activity INTEGER NOT NULL,
        node TEXT NOT NULL,
        name TEXT,
        assignee TEXT,
        candidate_users TEXT NOT NULL,
        candidate_groups TEXT NOT NULL,
        due TEXT,
        priority INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (instance_id, activity)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_open_by_assignee ON tasks (assignee, priority DESC) WHERE state = 'open';
    CREATE TABLE task_candidates (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        activity INTEGER NOT NULL,
        PRIMARY KEY (kind, name, instance_id, activity)
    ) WITHOUT ROWID;
    -- One row per activity instance per command: `state` lists the transitions made
    -- in that command, in order (they share `at` and `actor`).
    CREATE TABLE history (
        instance_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        activity INTEGER NOT NULL,
        node TEXT NOT NULL,
        state TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT,
        PRIMARY KEY (instance_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE jobs (
        instance_id TEXT NOT NULL,
        activity INTEGER NOT NULL,
        node TEXT NOT NULL,
        action TEXT NOT NULL,
        input TEXT NOT NULL,
        retries INTEGER NOT NULL,
        PRIMARY KEY (instance_id, activity)
    ) WITHOUT ROWID;
    CREATE TABLE incidents (
        instance_id TEXT NOT NULL,
        activity INTEGER NOT NULL,
        node TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (instance_id, activity)
    ) WITHOUT ROWID;",
    // 2: what instances wait for (messages, signals, timers), start events by
    // trigger, buffered messages, message ids seen, and incidents that get closed.
    "CREATE TABLE message_subs (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        key TEXT,
        instance_id TEXT NOT NULL,
        sub_id INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX message_subs_by_sub ON message_subs (instance_id, sub_id);
    CREATE INDEX message_subs_by_key ON message_subs (name, key, seq);
    CREATE TABLE signal_subs (
        name TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        sub_id INTEGER NOT NULL,
        PRIMARY KEY (name, instance_id, sub_id)
    ) WITHOUT ROWID;
    CREATE TABLE timers (
        instance_id TEXT NOT NULL,
        sub_id INTEGER NOT NULL,
        due INTEGER NOT NULL,
        PRIMARY KEY (instance_id, sub_id)
    ) WITHOUT ROWID;
    CREATE INDEX timers_by_due ON timers (due);
    CREATE TABLE start_events (
        process_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT,
        due INTEGER,
        PRIMARY KEY (process_id, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX start_events_by_name ON start_events (kind, name);
    CREATE INDEX start_events_by_due ON start_events (due) WHERE due IS NOT NULL;
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        key TEXT,
        message_id TEXT,
        variables TEXT NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX messages_by_key ON messages (name, key, seq);
    CREATE TABLE message_ids (
        message_id TEXT PRIMARY KEY,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE jobs ADD COLUMN backoff_ms INTEGER NOT NULL DEFAULT 10000;
    ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN due INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN locked_by TEXT;
    ALTER TABLE jobs ADD COLUMN locked_until INTEGER;
    ALTER TABLE jobs ADD COLUMN last_error TEXT;
    CREATE INDEX jobs_by_action ON jobs (action, due);
    ALTER TABLE incidents ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
    ALTER TABLE incidents ADD COLUMN closed_at TEXT;
    ALTER TABLE incidents ADD COLUMN closed_by TEXT;",
    // 3: the instance tree (call and spawn).
    "ALTER TABLE instances ADD COLUMN parent_id TEXT;
    ALTER TABLE instances ADD COLUMN parent_activity INTEGER;
    ALTER TABLE instances ADD COLUMN root_id TEXT;
    CREATE INDEX instances_by_parent ON instances (parent_id, parent_activity) WHERE parent_id IS NOT NULL;
    CREATE INDEX task_candidates_by_task ON task_candidates (instance_id, activity);",
    // 4: people a task excludes (kept on the task, so a closed task still knows),
    // and which latest process versions declare the payload of which message.
    "ALTER TABLE tasks ADD COLUMN excluded TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE message_decls (
        name TEXT NOT NULL,
        process_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (name, process_id)
    ) WITHOUT ROWID;
    CREATE INDEX message_decls_by_process ON message_decls (process_id);",
    // 5: instance ids from a persisted sequence, taken in the transaction of the
    // start that uses one (a refused start takes none; a restart goes on after
    // the last one stored, whatever happened to rowids).
    "CREATE TABLE sequences (name TEXT PRIMARY KEY, next INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO sequences (name, next)
        SELECT 'instance', COALESCE(MAX(CAST(id AS INTEGER)), 0) + 1 FROM instances;
    -- A timer whose step failed waits for an admin (its incident), not for the
    -- next pass.
    ALTER TABLE timers ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::db;
    use crate::{ReadDefinitions, SqlExt, WriteDefinitions};

    #[test]
    fn migrations_run_once_and_refuse_newer_databases() -> Result<()> {
        let (dir, conn) = db();
        let v: i64 = conn.query_row("PRAGMA user_version", &[], |r| r.get(0))?;
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(conn);
        let again = open_writer(&dir.path().join("t.db"), Sync::Full)?;
        again.execute_batch("PRAGMA user_version = 99")?;
        drop(again);
        assert!(matches!(
            open_writer(&dir.path().join("t.db"), Sync::Full),
            Err(Error::TooNew { found: 99, .. })
        ));
        Ok(())
    }

    #[test]
    fn a_transaction_commits_what_succeeds_and_rolls_back_what_fails() -> Result<()> {
        let (_d, conn) = db();
        let failed = conn.transaction(|tx| -> Result<()> {
            tx.insert_definition("p", 1, "v1", "t")?;
            Err(Error::NoRows)
        });
        assert!(matches!(failed, Err(Error::NoRows)));
        assert_eq!(conn.definition("p", 1)?, None, "rolled back");
        let n = conn.transaction(|tx| -> Result<u32> {
            tx.insert_definition("p", 1, "v1", "t")?;
            Ok(7)
        })?;
        assert_eq!(n, 7, "the closure's value comes back");
        assert_eq!(conn.definition("p", 1)?, Some("v1".into()));
        Ok(())
    }

    #[test]
    fn a_begun_transaction_keeps_nothing_unless_committed() -> Result<()> {
        let (dir, conn) = db();
        let tx = conn.begin()?;
        tx.insert_definition("p", 1, "dropped", "t")?;
        drop(tx);
        assert_eq!(conn.definition("p", 1)?, None, "dropped: rolled back");
        let tx = conn.begin()?;
        tx.insert_definition("p", 1, "kept", "t")?;
        tx.commit()?;
        let reader = open_reader(&dir.path().join("t.db"))?;
        assert_eq!(
            reader.definition("p", 1)?,
            Some("kept".into()),
            "another connection sees the commit"
        );
        Ok(())
    }

    #[test]
    fn a_reader_cannot_write() -> Result<()> {
        let (dir, _conn) = db();
        let reader = open_reader(&dir.path().join("t.db"))?;
        assert!(reader.insert_definition("p", 1, "v1", "t").is_err());
        assert_eq!(reader.list_definitions(None)?, []);
        Ok(())
    }

    #[test]
    fn a_backup_is_a_complete_copy_and_never_overwrites_a_file() -> Result<()> {
        let (dir, conn) = db();
        conn.insert_definition("p", 1, "v1", "t")?;
        let to = dir.path().join("copy.db");
        let size = backup(&dir.path().join("t.db"), &to)?;
        assert!(size > 0);
        assert_eq!(std::fs::metadata(&to).map(|m| m.len()).ok(), Some(size));
        assert_eq!(open_reader(&to)?.definition("p", 1)?, Some("v1".into()));

        conn.insert_definition("p", 2, "v2", "t")?;
        assert!(matches!(
            backup(&dir.path().join("t.db"), &to),
            Err(Error::Backup(_))
        ));
        assert_eq!(
            open_reader(&to)?.latest_definition("p")?,
            Some((1, "v1".into())),
            "the existing copy is left as it was"
        );
        Ok(())
    }

    #[test]
    fn a_shared_connection_does_not_migrate() -> Result<()> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conn = Conn::open_shared(&dir.path().join("tool.db"))?;
        let v: i64 = conn.query_row("PRAGMA user_version", &[], |r| r.get(0))?;
        assert_eq!(v, 0);
        assert!(conn.definition("p", 1).is_err(), "no engine tables");
        conn.transaction(|tx| tx.execute_batch("CREATE TABLE users (name TEXT)"))?;
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM users", &[], |r| r.get(0))?;
        assert_eq!(n, 0);
        Ok(())
    }

    #[test]
    fn an_in_memory_database_speaks_sql() -> Result<()> {
        let conn = Conn::open_in_memory()?;
        let sql: &dyn Sql = &conn;
        assert_eq!(sql.backend(), Backend::Sqlite);
        sql.execute_batch("CREATE TABLE t (n INTEGER)")?;
        assert_eq!(
            sql.execute("INSERT INTO t (n) VALUES (?1)", crate::params![5])?,
            1
        );
        let n: i64 = sql.query_row("SELECT n FROM t", &[], |r| r.get(0))?;
        assert_eq!(n, 5);
        Ok(())
    }

    #[test]
    fn sync_reads_as_lowercase_and_defaults_to_full() -> Result<()> {
        assert_eq!(Sync::default(), Sync::Full);
        assert_eq!(serde_json::from_str::<Sync>("\"normal\"")?, Sync::Normal);
        assert_eq!(serde_json::to_string(&Sync::Full)?, "\"full\"");
        Ok(())
    }

    #[test]
    fn the_id_sequence_starts_after_the_instances_stored_before_it() -> Result<()> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("old.db");
        {
            let old = Connection::open(&path)?;
            for sql in &MIGRATIONS[..4] {
                old.execute_batch(sql)?;
            }
            old.pragma_update(None, "user_version", 4)?;
            old.execute_batch(
                "INSERT INTO instances (id, process_id, process_version, status, version, state, started_at)
                 VALUES ('41', 'p', 1, 'active', 1, '{}', 't'), ('9', 'p', 1, 'active', 1, '{}', 't')",
            )?;
        }
        let conn = open_writer(&path, Sync::Full)?;
        assert_eq!(
            conn.transaction(crate::next_instance_id)?,
            42,
            "after the largest, not the last"
        );
        Ok(())
    }
}
