//! SQLite storage: schema, migrations, and the rows the engine reads and writes.
//!
//! Instances live here, not in memory: an instance's whole state is one JSON column
//! (read and written whole by the one writer), and what people query — tasks,
//! history, incidents — has tables of its own with indexes. Migrations are numbered
//! and tracked with `PRAGMA user_version`.
//!
//! The engine reaches the tables only through the read/write trait pairs below
//! (`ReadInstances`/`WriteInstances`, …), implemented here for a SQLite
//! connection (or transaction, which derefs to one). A PostgreSQL backend for
//! several nodes implements the same traits.

use chrono::{DateTime, Utc};
use ordo_runtime::{Action, Instance, InstanceStatus, Lifecycle, Subscription, TaskSpec, Trigger};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite said no.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

/// The `definitions` table: deployed process versions.
pub trait ReadDefinitions {
    /// A version's source.
    fn definition(&self, process: &str, version: u32) -> Result<Option<String>>;
    /// The latest version and its source.
    fn latest_definition(&self, process: &str) -> Result<Option<(u32, String)>>;
    /// Every deployed version of every process (of `process` only when given), by
    /// process then version.
    fn list_definitions(&self, process: Option<&str>) -> Result<Vec<DefinitionRow>>;
}

/// A deployed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DefinitionRow {
    /// The process id.
    pub process_id: String,
    /// The version.
    pub version: u32,
    /// When it was deployed (RFC 3339).
    pub deployed_at: String,
}

/// Writes to `definitions`.
pub trait WriteDefinitions: ReadDefinitions {
    /// Stores a new version.
    fn insert_definition(&self, process: &str, version: u32, source: &str, at: &str) -> Result<()>;
}

/// Which instances to list, and which page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFilter {
    /// Only this process.
    pub process: Option<String>,
    /// Only this status (`active`, `completed`, `terminated`, `cancelled`).
    pub status: Option<String>,
    /// Only this business key.
    pub business_key: Option<String>,
    /// Only instances whose tree (the instance, its caller, the instances it
    /// called) holds a task that one of these people held or holds: a
    /// supervisor's view of their team's work. `None`: every instance.
    #[serde(default)]
    pub among: Option<Vec<String>>,
    /// Rows to skip.
    pub offset: u32,
    /// Most rows to return.
    pub limit: u32,
}

/// The `instances` table.
pub trait ReadInstances {
    /// An instance's state.
    fn instance(&self, id: &str) -> Result<Option<Instance>>;
    /// Instances by process and status, newest first, paged.
    fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceRow>>;
    /// One instance's row.
    fn instance_row(&self, id: &str) -> Result<Option<InstanceRow>>;
    /// Whether the tree of instance `id` holds a task one of `people` held or
    /// holds (see [`InstanceFilter::among`]).
    fn instance_among(&self, id: &str, people: &[String]) -> Result<bool>;
    /// The instances `parent` called or spawned, oldest first.
    fn children(&self, parent: &str) -> Result<Vec<InstanceRow>>;
    /// The active instances one call or spawn activity of `parent` started.
    fn children_of(&self, parent: &str, activity: u64) -> Result<Vec<String>>;
}

/// Takes the next instance id from the persisted sequence, in the caller's
/// transaction: if it rolls back, the id is taken again by the next start.
pub fn next_instance_id(tx: &Connection) -> Result<u64> {
    let id: i64 = tx
        .prepare_cached(
            "UPDATE sequences SET next = next + 1 WHERE name = 'instance' RETURNING next - 1",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(id).unwrap_or(0))
}

/// Writes to `instances`, and the rows a step's actions ask for (history, tasks,
/// jobs, incidents), in the caller's transaction.
pub trait WriteInstances: ReadInstances {
    /// Inserts (`expected: None`) or updates an instance; an update whose stored
    /// version is not `expected` changes nothing and returns false.
    fn save_instance(&self, inst: &Instance, expected: Option<u64>) -> Result<bool>;
    /// Writes what `actions` say must be stored.
    fn record(&self, inst: &Instance, actions: &[Action], now: DateTime<Utc>) -> Result<()>;
}

/// The `tasks` table.
pub trait ReadTasks {
    /// A task's state (`open`, `completed`, `aborted`), if it exists.
    fn task_state(&self, instance: &str, activity: u64) -> Result<Option<String>>;
    /// An open task.
    fn open_task(&self, instance: &str, activity: u64) -> Result<Option<TaskRow>>;
    /// Open tasks assigned to `user`.
    fn tasks_of(&self, user: &str, limit: u32) -> Result<Vec<TaskRow>>;
    /// Open unassigned tasks offered to `user` by name or to these groups, that
    /// do not exclude `user`; highest priority first.
    fn group_tasks(&self, user: &str, groups: &[String], limit: u32) -> Result<Vec<TaskRow>>;
    /// Open tasks due before `now`.
    fn overdue_tasks(&self, now: &str, limit: u32) -> Result<Vec<TaskRow>>;
    /// Active instances, open tasks and open incidents.
    fn gauges(&self) -> Result<Gauges>;
    /// Who may hold an open task, and who may not.
    fn task_candidates(&self, instance: &str, activity: u64) -> Result<Candidates>;
    /// Whether the task excludes `user` (one key lookup).
    fn task_excludes(&self, instance: &str, activity: u64, user: &str) -> Result<bool>;
    /// A task that exists but is no longer open: how it ended, by whom and when,
    /// and who it concerned (so the caller can decide who may know).
    fn closed_task(&self, instance: &str, activity: u64) -> Result<Option<ClosedTask>>;
}

/// Who may hold a task, and who may not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidates {
    /// People who may claim it.
    pub users: Vec<String>,
    /// Groups whose members may claim it.
    pub groups: Vec<String>,
    /// People who may never hold or complete it.
    pub excluded: Vec<String>,
}

/// A task that is no longer open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedTask {
    /// The task as it was when it closed (its last assignee).
    pub task: TaskRow,
    /// `completed` or `aborted`.
    pub state: String,
    /// Who it was offered to, and who it excluded.
    pub candidates: Candidates,
    /// Who closed it (for a completion: who completed it), when a person did.
    pub closed_by: Option<String>,
    /// When (RFC 3339), from the history.
    pub closed_at: Option<String>,
}

/// Writes to `tasks`.
pub trait WriteTasks: ReadTasks {
    /// Sets or clears the assignee, recording the change in history.
    fn assign_task(
        &self,
        instance: &str,
        activity: u64,
        assignee: Option<&str>,
        ev: TaskEvent,
    ) -> Result<()>;
}

/// The `history` table.
pub trait ReadHistory {
    /// An instance's transitions, in order.
    fn history(&self, instance: &str) -> Result<Vec<HistoryRow>>;
}

impl ReadDefinitions for Connection {
    fn definition(&self, process: &str, version: u32) -> Result<Option<String>> {
        Ok(self
            .prepare_cached(
                "SELECT source FROM definitions WHERE process_id = ?1 AND version = ?2",
            )?
            .query_row(params![process, version], |r| r.get(0))
            .optional()?)
    }
    fn latest_definition(&self, process: &str) -> Result<Option<(u32, String)>> {
        Ok(self
            .prepare_cached("SELECT version, source FROM definitions WHERE process_id = ?1 ORDER BY version DESC LIMIT 1")?
            .query_row(params![process], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }
    fn list_definitions(&self, process: Option<&str>) -> Result<Vec<DefinitionRow>> {
        let mut st = self.prepare_cached(
            "SELECT process_id, version, deployed_at FROM definitions
             WHERE ?1 IS NULL OR process_id = ?1 ORDER BY process_id, version",
        )?;
        let rows = st.query_map(params![process], |r| {
            Ok(DefinitionRow {
                process_id: r.get(0)?,
                version: r.get(1)?,
                deployed_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
impl WriteDefinitions for Connection {
    fn insert_definition(&self, process: &str, version: u32, source: &str, at: &str) -> Result<()> {
        self.execute(
            "INSERT INTO definitions (process_id, version, source, deployed_at) VALUES (?1, ?2, ?3, ?4)",
            params![process, version, source, at],
        )?;
        Ok(())
    }
}
impl ReadInstances for Connection {
    fn instance(&self, id: &str) -> Result<Option<Instance>> {
        let state: Option<String> = self
            .query_row(
                "SELECT state FROM instances WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match state {
            Some(s) => Some(serde_json::from_str(&s)?),
            None => None,
        })
    }
    fn list_instances(&self, f: &InstanceFilter) -> Result<Vec<InstanceRow>> {
        let mut st = self.prepare_cached(
            "SELECT id, process_id, process_version, business_key, status, started_at, parent_id, parent_activity, root_id FROM instances
             WHERE (?1 IS NULL OR process_id = ?1) AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR business_key = ?3)
               AND (?6 IS NULL OR COALESCE(root_id, id) IN (
                   SELECT COALESCE(i.root_id, i.id) FROM tasks t JOIN instances i ON i.id = t.instance_id
                   WHERE t.assignee IN (SELECT value FROM json_each(?6))))
             ORDER BY started_at DESC, id DESC LIMIT ?4 OFFSET ?5",
        )?;
        let among = f.among.as_ref().map(serde_json::to_string).transpose()?;
        let params = params![
            f.process,
            f.status,
            f.business_key,
            f.limit,
            f.offset,
            among
        ];
        let rows = st.query_map(params, instance_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn instance_among(&self, id: &str, people: &[String]) -> Result<bool> {
        let people = serde_json::to_string(people)?;
        Ok(self
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM instances me, tasks t JOIN instances i ON i.id = t.instance_id
                 WHERE me.id = ?1 AND COALESCE(i.root_id, i.id) = COALESCE(me.root_id, me.id)
                   AND t.assignee IN (SELECT value FROM json_each(?2)))",
            )?
            .query_row(params![id, people], |r| r.get(0))?)
    }
    fn instance_row(&self, id: &str) -> Result<Option<InstanceRow>> {
        Ok(self
            .prepare_cached(
                "SELECT id, process_id, process_version, business_key, status, started_at, parent_id, parent_activity, root_id FROM instances WHERE id = ?1",
            )?
            .query_row(params![id], instance_row)
            .optional()?)
    }
    fn children(&self, parent: &str) -> Result<Vec<InstanceRow>> {
        let mut st = self.prepare_cached(
            "SELECT id, process_id, process_version, business_key, status, started_at, parent_id, parent_activity, root_id FROM instances
             WHERE parent_id = ?1 ORDER BY started_at, rowid",
        )?;
        let rows = st.query_map(params![parent], instance_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn children_of(&self, parent: &str, activity: u64) -> Result<Vec<String>> {
        let mut st = self.prepare_cached(
            "SELECT id FROM instances WHERE parent_id = ?1 AND parent_activity = ?2 AND status = 'active'",
        )?;
        let rows = st.query_map(params![parent, activity], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

fn instance_row(r: &rusqlite::Row) -> rusqlite::Result<InstanceRow> {
    Ok(InstanceRow {
        id: r.get(0)?,
        process_id: r.get(1)?,
        process_version: r.get(2)?,
        business_key: r.get(3)?,
        status: r.get(4)?,
        started_at: r.get(5)?,
        parent_id: r.get(6)?,
        parent_activity: r.get(7)?,
        root_id: r.get(8)?,
    })
}
impl WriteInstances for Connection {
    fn save_instance(&self, inst: &Instance, expected: Option<u64>) -> Result<bool> {
        let state = serde_json::to_string(inst)?;
        let ended = inst.ended_at.map(|t| t.to_rfc3339());
        let n = match expected {
            None => self.prepare_cached(
                "INSERT INTO instances (id, process_id, process_version, business_key, status, version, state, started_at, ended_at, parent_id, parent_activity, root_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                    inst.id,
                    inst.process,
                    inst.process_version,
                    inst.business_key,
                    status_text(inst.status),
                    inst.version,
                    state,
                    inst.started_at.to_rfc3339(),
                    ended,
                    inst.parent.as_ref().map(|p| &p.instance),
                    inst.parent.as_ref().map(|p| p.activity),
                    inst.parent.as_ref().map(|p| &p.root),
                ])?,
            Some(v) => self
                .prepare_cached("UPDATE instances SET status = ?2, version = ?3, state = ?4, ended_at = ?5 WHERE id = ?1 AND version = ?6")?
                .execute(params![inst.id, status_text(inst.status), inst.version, state, ended, v])?,
        };
        Ok(n == 1)
    }
    fn record(&self, inst: &Instance, actions: &[Action], at: DateTime<Utc>) -> Result<()> {
        let now_text = at.to_rfc3339();
        let now = now_text.as_str();
        let mut history = HistoryWriter::new(self, &inst.id)?;
        // Transitions that one activity instance makes within one command share their
        // time and actor: they are stored as one row listing the states in order
        // (`ready,active,completing,completed`), and `history` expands them again.
        let mut i = 0;
        while i < actions.len() {
            let Action::History(h) = &actions[i] else {
                i += 1;
                continue;
            };
            let mut states = String::from(lifecycle_text(h.state));
            let mut j = i + 1;
            while let Some(Action::History(n)) = actions.get(j) {
                if n.activity != h.activity || n.at != h.at || n.actor != h.actor {
                    break;
                }
                states.push(',');
                states.push_str(lifecycle_text(n.state));
                j += 1;
            }
            history.write(
                h.activity,
                &h.node,
                &states,
                &h.at.to_rfc3339(),
                h.actor.as_deref(),
            )?;
            i = j;
        }
        for a in actions {
            match a {
                Action::History(_) => {}
                Action::CreateTask(t) => insert_task(self, &inst.id, t, now)?,
                Action::CloseTask { activity, state } => {
                    self.prepare_cached(
                        "UPDATE tasks SET state = ?3 WHERE instance_id = ?1 AND activity = ?2",
                    )?
                    .execute(params![
                        inst.id,
                        activity,
                        lifecycle_text(*state)
                    ])?;
                    self.prepare_cached(
                        "DELETE FROM task_candidates WHERE instance_id = ?1 AND activity = ?2",
                    )?
                    .execute(params![inst.id, activity])?;
                }
                Action::RunJob(j) => {
                    self.prepare_cached("INSERT INTO jobs (instance_id, activity, node, action, input, retries, backoff_ms, due) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
                        .execute(params![inst.id, j.activity, j.node, j.action, j.input.to_string(), j.retries, j.backoff_ms, at.timestamp_millis()])?;
                }
                Action::CancelJob { activity } => {
                    self.execute(
                        "DELETE FROM jobs WHERE instance_id = ?1 AND activity = ?2",
                        params![inst.id, activity],
                    )?;
                }
                Action::Incident {
                    activity,
                    node,
                    message,
                } => {
                    self.execute(
                        "INSERT OR REPLACE INTO incidents (instance_id, activity, node, message, created_at, state) VALUES (?1, ?2, ?3, ?4, ?5, 'open')",
                        params![inst.id, activity, node, message, now],
                    )?;
                }
                Action::CloseIncident {
                    activity,
                    how,
                    actor,
                } => {
                    self.prepare_cached(
                        "UPDATE incidents SET state = ?3, closed_at = ?4, closed_by = ?5
                         WHERE instance_id = ?1 AND activity = ?2 AND state = 'open'",
                    )?
                    .execute(params![inst.id, activity, how, now, actor])?;
                }
                Action::Subscribe(sub) => subscribe(self, &inst.id, sub)?,
                Action::Unsubscribe(sub) => unsubscribe(self, &inst.id, sub)?,
                // Deliveries to other instances: the engine carries them out.
                Action::Ended { .. }
                | Action::SendMessage { .. }
                | Action::Broadcast { .. }
                | Action::StartChild { .. }
                | Action::CancelChildren { .. }
                | Action::RaiseInCaller { .. } => {}
            }
        }
        Ok(())
    }
}
/// What is open now (see [`ReadTasks::gauges`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gauges {
    /// Active instances.
    pub active_instances: u64,
    /// Open user tasks.
    pub open_tasks: u64,
    /// Open incidents.
    pub open_incidents: u64,
}

impl ReadTasks for Connection {
    fn gauges(&self) -> Result<Gauges> {
        let count = |sql: &str| -> Result<u64> {
            Ok(self.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
        };
        Ok(Gauges {
            active_instances: count("SELECT COUNT(*) FROM instances WHERE status = 'active'")?,
            open_tasks: count("SELECT COUNT(*) FROM tasks WHERE state = 'open'")?,
            open_incidents: count("SELECT COUNT(*) FROM incidents WHERE state = 'open'")?,
        })
    }
    fn task_candidates(&self, instance: &str, activity: u64) -> Result<Candidates> {
        let mut st = self.prepare_cached(
            "SELECT kind, name FROM task_candidates WHERE instance_id = ?1 AND activity = ?2 ORDER BY kind, name",
        )?;
        let mut c = Candidates::default();
        let rows = st.query_map(params![instance, activity], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (kind, name) = row?;
            match kind.as_str() {
                "group" => c.groups.push(name),
                "excluded" => c.excluded.push(name),
                _ => c.users.push(name),
            }
        }
        Ok(c)
    }
    fn task_excludes(&self, instance: &str, activity: u64, user: &str) -> Result<bool> {
        Ok(self
            .prepare_cached(
                "SELECT 1 FROM task_candidates
                 WHERE kind = 'excluded' AND name = ?3 AND instance_id = ?1 AND activity = ?2",
            )?
            .query_row(params![instance, activity, user], |_| Ok(()))
            .optional()?
            .is_some())
    }
    fn closed_task(&self, instance: &str, activity: u64) -> Result<Option<ClosedTask>> {
        let row = self
            .prepare_cached(
                "SELECT instance_id, activity, node, name, assignee, due, priority,
                        state, candidate_users, candidate_groups, excluded
                 FROM tasks WHERE instance_id = ?1 AND activity = ?2 AND state != 'open'",
            )?
            .query_row(params![instance, activity], |r| {
                Ok((
                    task_row(r)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, String>(10)?,
                ))
            })
            .optional()?;
        let Some((task, state, users, groups, excluded)) = row else {
            return Ok(None);
        };
        let (closed_by, closed_at) = self
            .prepare_cached(
                "SELECT actor, at FROM history WHERE instance_id = ?1 AND activity = ?2
                 AND (',' || state || ',') LIKE '%,' || ?3 || ',%' ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![instance, activity, state], |r| {
                Ok((r.get::<_, Option<String>>(0)?, Some(r.get::<_, String>(1)?)))
            })
            .optional()?
            .unwrap_or((None, None));
        Ok(Some(ClosedTask {
            task,
            state,
            candidates: Candidates {
                users: serde_json::from_str(&users)?,
                groups: serde_json::from_str(&groups)?,
                excluded: serde_json::from_str(&excluded)?,
            },
            closed_by,
            closed_at,
        }))
    }
    fn task_state(&self, instance: &str, activity: u64) -> Result<Option<String>> {
        Ok(self
            .prepare_cached("SELECT state FROM tasks WHERE instance_id = ?1 AND activity = ?2")?
            .query_row(params![instance, activity], |r| r.get(0))
            .optional()?)
    }
    fn open_task(&self, instance: &str, activity: u64) -> Result<Option<TaskRow>> {
        Ok(self
            .prepare_cached(
                "SELECT instance_id, activity, node, name, assignee, due, priority FROM tasks
                 WHERE instance_id = ?1 AND activity = ?2 AND state = 'open'",
            )?
            .query_row(params![instance, activity], task_row)
            .optional()?)
    }
    fn tasks_of(&self, user: &str, limit: u32) -> Result<Vec<TaskRow>> {
        let mut st = self.prepare_cached(
            "SELECT instance_id, activity, node, name, assignee, due, priority FROM tasks
             WHERE assignee = ?1 AND state = 'open' ORDER BY priority DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![user, limit], task_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn group_tasks(&self, user: &str, groups: &[String], limit: u32) -> Result<Vec<TaskRow>> {
        let mut out: Vec<TaskRow> = Vec::new();
        let mut st = self.prepare_cached(
            "SELECT t.instance_id, t.activity, t.node, t.name, t.assignee, t.due, t.priority
             FROM task_candidates c JOIN tasks t ON t.instance_id = c.instance_id AND t.activity = c.activity
             WHERE c.kind = ?1 AND c.name = ?2 AND t.state = 'open' AND t.assignee IS NULL
               AND NOT EXISTS (SELECT 1 FROM task_candidates x WHERE x.kind = 'excluded'
                   AND x.name = ?4 AND x.instance_id = t.instance_id AND x.activity = t.activity)
             ORDER BY t.priority DESC LIMIT ?3",
        )?;
        let offers =
            std::iter::once(("user", user)).chain(groups.iter().map(|g| ("group", g.as_str())));
        for (kind, name) in offers {
            for row in st.query_map(params![kind, name, limit, user], task_row)? {
                let row = row?;
                if !out
                    .iter()
                    .any(|t| t.instance_id == row.instance_id && t.activity == row.activity)
                {
                    out.push(row);
                }
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.priority));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }
    fn overdue_tasks(&self, now: &str, limit: u32) -> Result<Vec<TaskRow>> {
        let mut st = self.prepare_cached(
            "SELECT instance_id, activity, node, name, assignee, due, priority FROM tasks
             WHERE state = 'open' AND due IS NOT NULL AND due < ?1 ORDER BY due LIMIT ?2",
        )?;
        let rows = st.query_map(params![now, limit], task_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
impl WriteTasks for Connection {
    fn assign_task(
        &self,
        instance: &str,
        activity: u64,
        assignee: Option<&str>,
        ev: TaskEvent,
    ) -> Result<()> {
        self.prepare_cached(
            "UPDATE tasks SET assignee = ?3 WHERE instance_id = ?1 AND activity = ?2",
        )?
        .execute(params![instance, activity, assignee])?;
        HistoryWriter::new(self, instance)?.write(
            activity,
            ev.node,
            ev.event,
            ev.at,
            Some(ev.actor),
        )
    }
}
impl ReadHistory for Connection {
    fn history(&self, instance: &str) -> Result<Vec<HistoryRow>> {
        let mut st = self.prepare_cached(
            "SELECT activity, node, state, at, actor FROM history WHERE instance_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map(params![instance], |r| {
            Ok(HistoryRow {
                activity: r.get(0)?,
                node: r.get(1)?,
                state: r.get(2)?,
                at: r.get(3)?,
                actor: r.get(4)?,
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            if row.state.contains(',') {
                for state in row.state.split(',') {
                    out.push(HistoryRow {
                        state: state.to_owned(),
                        ..row.clone()
                    });
                }
            } else {
                out.push(row);
            }
        }
        Ok(out)
    }
}

fn subscribe(tx: &Connection, instance: &str, sub: &Subscription) -> Result<()> {
    match &sub.trigger {
        Trigger::Message { name, key } => tx
            .prepare_cached(
                "INSERT INTO message_subs (name, key, instance_id, sub_id) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![name, key, instance, sub.id])?,
        Trigger::Signal { name } => tx
            .prepare_cached(
                "INSERT INTO signal_subs (name, instance_id, sub_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, instance, sub.id])?,
        Trigger::Timer { due } => tx
            .prepare_cached("INSERT INTO timers (instance_id, sub_id, due) VALUES (?1, ?2, ?3)")?
            .execute(params![instance, sub.id, due.timestamp_millis()])?,
    };
    Ok(())
}

fn unsubscribe(tx: &Connection, instance: &str, sub: &Subscription) -> Result<()> {
    match &sub.trigger {
        Trigger::Message { .. } => tx
            .prepare_cached("DELETE FROM message_subs WHERE instance_id = ?1 AND sub_id = ?2")?
            .execute(params![instance, sub.id])?,
        Trigger::Signal { name } => tx
            .prepare_cached(
                "DELETE FROM signal_subs WHERE name = ?1 AND instance_id = ?2 AND sub_id = ?3",
            )?
            .execute(params![name, instance, sub.id])?,
        Trigger::Timer { .. } => tx
            .prepare_cached("DELETE FROM timers WHERE instance_id = ?1 AND sub_id = ?2")?
            .execute(params![instance, sub.id])?,
    };
    Ok(())
}

/// A start event that starts instances on a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRow {
    /// The process.
    pub process_id: String,
    /// The version the event belongs to (the latest).
    pub version: u32,
    /// The start event's id.
    pub event_id: String,
}

/// An incident, as admins list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IncidentRow {
    /// The instance.
    pub instance_id: String,
    /// The activity instance it holds.
    pub activity: u64,
    /// The node.
    pub node: String,
    /// What went wrong.
    pub message: String,
    /// Attempts its job made (0 when not a job).
    pub attempts: u32,
    /// `open`, `retried`, `resolved` or `aborted`.
    pub state: String,
    /// When it was opened (RFC 3339).
    pub created_at: String,
}

/// Subscriptions, buffered messages and start events: what triggers find.
pub trait ReadEvents {
    /// The longest-waiting subscription for a message: (instance, subscription).
    fn message_subscriber(&self, name: &str, key: Option<&str>) -> Result<Option<(String, u64)>>;
    /// Every subscription for a signal.
    fn signal_subscribers(&self, name: &str) -> Result<Vec<(String, u64)>>;
    /// Start events of latest versions with this trigger (`message`, `signal`).
    fn start_events(&self, kind: &str, name: &str) -> Result<Vec<StartRow>>;
    /// Instance timers due at or before `now_ms`, earliest first.
    fn due_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<(String, u64)>>;
    /// Timer start events due at or before `now_ms`.
    fn due_start_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<StartRow>>;
    /// The earliest timer, instance or start (ms since the epoch).
    fn next_timer(&self) -> Result<Option<i64>>;
    /// Whether a message id was seen and has not expired.
    fn seen_message(&self, message_id: &str, now_ms: i64) -> Result<bool>;
    /// Incidents, newest first; only open ones when `open_only`.
    fn incidents(&self, open_only: bool, limit: u32, offset: u32) -> Result<Vec<IncidentRow>>;
    /// One instance's incidents, open and closed, newest first.
    fn instance_incidents(&self, instance: &str) -> Result<Vec<IncidentRow>>;
    /// The latest process versions that declare the payload of message `name`.
    fn message_declarers(&self, name: &str) -> Result<Vec<(String, u32)>>;
}

/// Writes to the event tables.
pub trait WriteEvents: ReadEvents {
    /// Replaces a process's start events with those of its latest version.
    fn set_start_events(
        &self,
        process: &str,
        version: u32,
        events: &[(String, &str, Option<String>, Option<i64>)],
    ) -> Result<()>;
    /// Replaces the messages a process declares with those of its latest version.
    fn set_message_decls(&self, process: &str, version: u32, names: &[&str]) -> Result<()>;
    /// Moves a timer start event's next firing (None: it does not fire again).
    fn set_start_due(&self, process: &str, event: &str, due: Option<i64>) -> Result<()>;
    /// Removes an instance timer (it is firing).
    fn delete_timer(&self, instance: &str, sub: u64) -> Result<()>;
    /// Parks a timer whose step failed (`failed`), or arms it again to fire at
    /// `due_ms` (an admin's retry); whether there was such a timer.
    fn set_timer_failed(&self, instance: &str, sub: u64, failed: bool, due_ms: i64)
    -> Result<bool>;
    /// Opens (or renews) an incident for something that failed outside a step:
    /// a timer that could not fire.
    fn open_incident(
        &self,
        instance: &str,
        activity: u64,
        node: &str,
        message: &str,
        at: &str,
    ) -> Result<()>;
    /// Keeps a message until `expires_ms` for the first instance that subscribes.
    fn buffer_message(
        &self,
        name: &str,
        key: Option<&str>,
        message_id: Option<&str>,
        variables: &str,
        expires_ms: i64,
    ) -> Result<()>;
    /// Takes (removes and returns) the oldest live buffered message of this name and key.
    fn take_buffered(&self, name: &str, key: Option<&str>, now_ms: i64) -> Result<Option<String>>;
    /// Remembers a message id until `expires_ms`.
    fn remember_message(&self, message_id: &str, expires_ms: i64) -> Result<()>;
    /// Deletes expired buffered messages and message ids.
    fn purge_expired(&self, now_ms: i64) -> Result<usize>;
}

impl ReadEvents for Connection {
    fn message_subscriber(&self, name: &str, key: Option<&str>) -> Result<Option<(String, u64)>> {
        Ok(self
            .prepare_cached(
                "SELECT instance_id, sub_id FROM message_subs WHERE name = ?1 AND key IS ?2 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![name, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }
    fn signal_subscribers(&self, name: &str) -> Result<Vec<(String, u64)>> {
        let mut st =
            self.prepare_cached("SELECT instance_id, sub_id FROM signal_subs WHERE name = ?1")?;
        let rows = st.query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn start_events(&self, kind: &str, name: &str) -> Result<Vec<StartRow>> {
        let mut st = self.prepare_cached(
            "SELECT process_id, version, event_id FROM start_events WHERE kind = ?1 AND name = ?2 ORDER BY process_id, event_id",
        )?;
        let rows = st.query_map(params![kind, name], start_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn due_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<(String, u64)>> {
        let mut st = self.prepare_cached(
            "SELECT instance_id, sub_id FROM timers WHERE due <= ?1 AND failed = 0 ORDER BY due LIMIT ?2",
        )?;
        let rows = st.query_map(params![now_ms, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn due_start_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<StartRow>> {
        let mut st = self.prepare_cached(
            "SELECT process_id, version, event_id FROM start_events WHERE due IS NOT NULL AND due <= ?1 ORDER BY due LIMIT ?2",
        )?;
        let rows = st.query_map(params![now_ms, limit], start_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn next_timer(&self) -> Result<Option<i64>> {
        Ok(self.query_row(
            "SELECT MIN(d) FROM (SELECT MIN(due) AS d FROM timers WHERE failed = 0 UNION ALL SELECT MIN(due) FROM start_events)",
            [],
            |r| r.get(0),
        )?)
    }
    fn seen_message(&self, message_id: &str, now_ms: i64) -> Result<bool> {
        Ok(self
            .prepare_cached("SELECT 1 FROM message_ids WHERE message_id = ?1 AND expires > ?2")?
            .query_row(params![message_id, now_ms], |_| Ok(()))
            .optional()?
            .is_some())
    }
    fn incidents(&self, open_only: bool, limit: u32, offset: u32) -> Result<Vec<IncidentRow>> {
        let mut st = self.prepare_cached(
            "SELECT instance_id, activity, node, message, state, created_at, attempts FROM incidents
             WHERE (?1 = 0 OR state = 'open') ORDER BY created_at DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = st.query_map(params![open_only, limit, offset], incident_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn message_declarers(&self, name: &str) -> Result<Vec<(String, u32)>> {
        let mut st = self.prepare_cached(
            "SELECT process_id, version FROM message_decls WHERE name = ?1 ORDER BY process_id",
        )?;
        let rows = st.query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn instance_incidents(&self, instance: &str) -> Result<Vec<IncidentRow>> {
        let mut st = self.prepare_cached(
            "SELECT instance_id, activity, node, message, state, created_at, attempts FROM incidents
             WHERE instance_id = ?1 ORDER BY created_at DESC",
        )?;
        let rows = st.query_map(params![instance], incident_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    Ok(IncidentRow {
        instance_id: r.get(0)?,
        activity: r.get(1)?,
        node: r.get(2)?,
        message: r.get(3)?,
        state: r.get(4)?,
        created_at: r.get(5)?,
        attempts: r.get(6)?,
    })
}

impl WriteEvents for Connection {
    fn set_timer_failed(
        &self,
        instance: &str,
        sub: u64,
        failed: bool,
        due_ms: i64,
    ) -> Result<bool> {
        let n = self
            .prepare_cached(
                "UPDATE timers SET failed = ?3, due = CASE WHEN ?3 THEN due ELSE ?4 END
                 WHERE instance_id = ?1 AND sub_id = ?2",
            )?
            .execute(params![instance, sub, failed, due_ms])?;
        Ok(n > 0)
    }
    fn open_incident(
        &self,
        instance: &str,
        activity: u64,
        node: &str,
        message: &str,
        at: &str,
    ) -> Result<()> {
        self.prepare_cached(
            "INSERT OR REPLACE INTO incidents (instance_id, activity, node, message, created_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, 'open')",
        )?
        .execute(params![instance, activity, node, message, at])?;
        Ok(())
    }
    fn set_message_decls(&self, process: &str, version: u32, names: &[&str]) -> Result<()> {
        self.prepare_cached("DELETE FROM message_decls WHERE process_id = ?1")?
            .execute(params![process])?;
        let mut ins = self.prepare_cached(
            "INSERT INTO message_decls (name, process_id, version) VALUES (?1, ?2, ?3)",
        )?;
        for name in names {
            ins.execute(params![name, process, version])?;
        }
        Ok(())
    }
    fn set_start_events(
        &self,
        process: &str,
        version: u32,
        events: &[(String, &str, Option<String>, Option<i64>)],
    ) -> Result<()> {
        self.prepare_cached("DELETE FROM start_events WHERE process_id = ?1")?
            .execute(params![process])?;
        let mut ins = self.prepare_cached(
            "INSERT INTO start_events (process_id, version, event_id, kind, name, due) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (event, kind, name, due) in events {
            ins.execute(params![process, version, event, kind, name, due])?;
        }
        Ok(())
    }
    fn set_start_due(&self, process: &str, event: &str, due: Option<i64>) -> Result<()> {
        self.prepare_cached(
            "UPDATE start_events SET due = ?3 WHERE process_id = ?1 AND event_id = ?2",
        )?
        .execute(params![process, event, due])?;
        Ok(())
    }
    fn delete_timer(&self, instance: &str, sub: u64) -> Result<()> {
        self.prepare_cached("DELETE FROM timers WHERE instance_id = ?1 AND sub_id = ?2")?
            .execute(params![instance, sub])?;
        Ok(())
    }
    fn buffer_message(
        &self,
        name: &str,
        key: Option<&str>,
        message_id: Option<&str>,
        variables: &str,
        expires_ms: i64,
    ) -> Result<()> {
        self.prepare_cached(
            "INSERT INTO messages (name, key, message_id, variables, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![name, key, message_id, variables, expires_ms])?;
        Ok(())
    }
    fn take_buffered(&self, name: &str, key: Option<&str>, now_ms: i64) -> Result<Option<String>> {
        let found: Option<(i64, String)> = self
            .prepare_cached(
                "SELECT seq, variables FROM messages WHERE name = ?1 AND key IS ?2 AND expires > ?3 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![name, key, now_ms], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((seq, vars)) = found else {
            return Ok(None);
        };
        self.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
            .execute(params![seq])?;
        Ok(Some(vars))
    }
    fn remember_message(&self, message_id: &str, expires_ms: i64) -> Result<()> {
        self.prepare_cached(
            "INSERT OR REPLACE INTO message_ids (message_id, expires) VALUES (?1, ?2)",
        )?
        .execute(params![message_id, expires_ms])?;
        Ok(())
    }
    fn purge_expired(&self, now_ms: i64) -> Result<usize> {
        let a = self.execute("DELETE FROM messages WHERE expires <= ?1", params![now_ms])?;
        let b = self.execute(
            "DELETE FROM message_ids WHERE expires <= ?1",
            params![now_ms],
        )?;
        Ok(a + b)
    }
}

/// A job (an asynchronous service call) as workers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// The instance.
    pub instance_id: String,
    /// The service task's activity instance.
    pub activity: u64,
    /// The node.
    pub node: String,
    /// The action to run.
    pub action: String,
    /// Its input.
    pub input: serde_json::Value,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Attempts made so far (counted when a worker takes the job).
    pub attempts: u32,
    /// The first retry's delay; doubled for each further one.
    pub backoff_ms: u64,
    /// The worker holding the lease, if any.
    pub locked_by: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// The `jobs` table: leases, attempts and backoff.
pub trait Jobs {
    /// Jobs of `action` due and not leased at `now_ms`, oldest first.
    fn due_jobs(&self, action: &str, now_ms: i64, limit: u32) -> Result<Vec<JobRow>>;
    /// One job.
    fn job(&self, instance: &str, activity: u64) -> Result<Option<JobRow>>;
    /// Leases a job to `worker` until `until_ms`, counting an attempt.
    fn lease_job(&self, instance: &str, activity: u64, worker: &str, until_ms: i64) -> Result<()>;
    /// Releases a failed attempt's lease and schedules the next at `due_ms`.
    fn retry_job_at(&self, instance: &str, activity: u64, due_ms: i64, error: &str) -> Result<()>;
    /// Removes a job (done, failed for good, or raised an error).
    fn delete_job(&self, instance: &str, activity: u64) -> Result<()>;
    /// Stores how many attempts an incident's job made.
    fn set_incident_attempts(&self, instance: &str, activity: u64, attempts: u32) -> Result<()>;
}

const JOB_COLUMNS: &str = "instance_id, activity, node, action, input, retries, attempts, backoff_ms, locked_by, last_error";

fn job_row(r: &rusqlite::Row) -> rusqlite::Result<JobRow> {
    let input: String = r.get(4)?;
    Ok(JobRow {
        instance_id: r.get(0)?,
        activity: r.get(1)?,
        node: r.get(2)?,
        action: r.get(3)?,
        input: serde_json::from_str(&input).unwrap_or(serde_json::Value::Null),
        retries: r.get(5)?,
        attempts: r.get(6)?,
        backoff_ms: r.get(7)?,
        locked_by: r.get(8)?,
        last_error: r.get(9)?,
    })
}

impl Jobs for Connection {
    fn due_jobs(&self, action: &str, now_ms: i64, limit: u32) -> Result<Vec<JobRow>> {
        let mut st = self.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE action = ?1 AND due <= ?2
             AND (locked_until IS NULL OR locked_until <= ?2) ORDER BY due LIMIT ?3"
        ))?;
        let rows = st.query_map(params![action, now_ms, limit], job_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
    fn job(&self, instance: &str, activity: u64) -> Result<Option<JobRow>> {
        Ok(self
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE instance_id = ?1 AND activity = ?2"
            ))?
            .query_row(params![instance, activity], job_row)
            .optional()?)
    }
    fn lease_job(&self, instance: &str, activity: u64, worker: &str, until_ms: i64) -> Result<()> {
        self.prepare_cached(
            "UPDATE jobs SET attempts = attempts + 1, locked_by = ?3, locked_until = ?4
             WHERE instance_id = ?1 AND activity = ?2",
        )?
        .execute(params![instance, activity, worker, until_ms])?;
        Ok(())
    }
    fn retry_job_at(&self, instance: &str, activity: u64, due_ms: i64, error: &str) -> Result<()> {
        self.prepare_cached(
            "UPDATE jobs SET due = ?3, last_error = ?4, locked_by = NULL, locked_until = NULL
             WHERE instance_id = ?1 AND activity = ?2",
        )?
        .execute(params![instance, activity, due_ms, error])?;
        Ok(())
    }
    fn delete_job(&self, instance: &str, activity: u64) -> Result<()> {
        self.prepare_cached("DELETE FROM jobs WHERE instance_id = ?1 AND activity = ?2")?
            .execute(params![instance, activity])?;
        Ok(())
    }
    fn set_incident_attempts(&self, instance: &str, activity: u64, attempts: u32) -> Result<()> {
        self.prepare_cached(
            "UPDATE incidents SET attempts = ?3 WHERE instance_id = ?1 AND activity = ?2",
        )?
        .execute(params![instance, activity, attempts])?;
        Ok(())
    }
}

fn start_row(r: &rusqlite::Row) -> rusqlite::Result<StartRow> {
    Ok(StartRow {
        process_id: r.get(0)?,
        version: r.get(1)?,
        event_id: r.get(2)?,
    })
}

/// Appends rows to one instance's history, numbering them after the last one.
struct HistoryWriter<'c> {
    insert: rusqlite::CachedStatement<'c>,
    instance: &'c str,
    seq: i64,
}

impl<'c> HistoryWriter<'c> {
    fn new(conn: &'c Connection, instance: &'c str) -> Result<Self> {
        let seq = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM history WHERE instance_id = ?1")?
            .query_row(params![instance], |r| r.get(0))?;
        let insert = conn.prepare_cached(
            "INSERT INTO history (instance_id, seq, activity, node, state, at, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        Ok(HistoryWriter {
            insert,
            instance,
            seq,
        })
    }

    /// One row; `state` is a lifecycle state, a comma list of them, or a task event.
    fn write(
        &mut self,
        activity: u64,
        node: &str,
        state: &str,
        at: &str,
        actor: Option<&str>,
    ) -> Result<()> {
        self.seq += 1;
        self.insert.execute(params![
            self.instance,
            self.seq,
            activity,
            node,
            state,
            at,
            actor
        ])?;
        Ok(())
    }
}

/// Opens (creating if needed) the database at `path` for writing, and migrates it.
pub fn open_writer(path: &std::path::Path, sync: Sync) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync == Sync::Full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens a read-only connection.
pub fn open_reader(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Copies the database at `from` to a new file `to`, online: one read
/// transaction sees a consistent snapshot while the writer goes on (WAL), and the
/// copy is complete or, on error, removed. `to` must not exist.
pub fn backup(from: &std::path::Path, to: &std::path::Path) -> Result<u64> {
    if to.exists() {
        return Err(Error::Backup(format!(
            "{} exists already; choose a new file",
            to.display()
        )));
    }
    let src = open_reader(from)?;
    let copied = (|| -> Result<u64> {
        let mut dst = Connection::open(to)?;
        {
            let b = rusqlite::backup::Backup::new(&src, &mut dst)?;
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
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(Error::TooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn status_text(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Active => "active",
        InstanceStatus::Completed => "completed",
        InstanceStatus::Terminated => "terminated",
        InstanceStatus::Cancelled => "cancelled",
    }
}

fn lifecycle_text(s: Lifecycle) -> &'static str {
    match s {
        Lifecycle::Ready => "ready",
        Lifecycle::Active => "active",
        Lifecycle::Completing => "completing",
        Lifecycle::Completed => "completed",
        Lifecycle::Aborting => "aborting",
        Lifecycle::Aborted => "aborted",
        Lifecycle::Faulted => "faulted",
    }
}

fn insert_task(tx: &Connection, instance: &str, t: &TaskSpec, now: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO tasks (instance_id, activity, node, name, assignee, candidate_users, candidate_groups, due, priority, state, created_at, excluded)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'open', ?10, ?11)",
    )?
    .execute(params![
            instance,
            t.activity,
            t.node,
            t.name,
            t.assignee,
            serde_json::to_string(&t.candidate_users)?,
            serde_json::to_string(&t.candidate_groups)?,
            t.due.map(|d| d.to_rfc3339()),
            t.priority,
            now,
            serde_json::to_string(&t.excluded)?,
        ])?;
    let mut cand = tx.prepare_cached(
        "INSERT OR IGNORE INTO task_candidates (kind, name, instance_id, activity) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for u in &t.candidate_users {
        cand.execute(params!["user", u, instance, t.activity])?;
    }
    for g in &t.candidate_groups {
        cand.execute(params!["group", g, instance, t.activity])?;
    }
    for x in &t.excluded {
        cand.execute(params!["excluded", x, instance, t.activity])?;
    }
    Ok(())
}

/// An open task, as inboxes show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskRow {
    /// The instance.
    pub instance_id: String,
    /// The task's activity instance.
    pub activity: u64,
    /// The node.
    pub node: String,
    /// Title.
    pub name: Option<String>,
    /// Assigned person.
    pub assignee: Option<String>,
    /// Due date (RFC 3339).
    pub due: Option<String>,
    /// 0–100.
    pub priority: i64,
}

/// A change of a task's holder, as history records it.
#[derive(Debug, Clone, Copy)]
pub struct TaskEvent<'a> {
    /// The task's node.
    pub node: &'a str,
    /// `claimed`, `unclaimed`, `delegated`.
    pub event: &'a str,
    /// Who.
    pub actor: &'a str,
    /// When (RFC 3339).
    pub at: &'a str,
}

fn task_row(r: &rusqlite::Row) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        instance_id: r.get(0)?,
        activity: r.get(1)?,
        node: r.get(2)?,
        name: r.get(3)?,
        assignee: r.get(4)?,
        due: r.get(5)?,
        priority: r.get(6)?,
    })
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryRow {
    /// Activity instance.
    pub activity: u64,
    /// Node.
    pub node: String,
    /// Lifecycle state entered.
    pub state: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: Option<String>,
}

/// An instance row for lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceRow {
    /// Id.
    pub id: String,
    /// Process id.
    pub process_id: String,
    /// Process version.
    pub process_version: u32,
    /// Business key.
    pub business_key: Option<String>,
    /// Status.
    pub status: String,
    /// Started (RFC 3339).
    pub started_at: String,
    /// The instance that called or spawned it.
    pub parent_id: Option<String>,
    /// The call or spawn activity in the parent.
    pub parent_activity: Option<u64>,
    /// The top of its tree (None for a top-level instance: itself).
    pub root_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_runtime::{HistoryEntry, InstanceStatus, Lifecycle};

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conn =
            open_writer(&dir.path().join("t.db"), Sync::Normal).unwrap_or_else(|e| panic!("{e}"));
        (dir, conn)
    }

    fn instance(id: &str, version: u64) -> Instance {
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
            next_id: 1,
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            ended_at: None,
        }
    }

    #[test]
    fn migrations_run_once_and_refuse_newer_databases() -> Result<()> {
        let (dir, conn) = db();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(conn);
        let again = open_writer(&dir.path().join("t.db"), Sync::Full)?;
        again.pragma_update(None, "user_version", 99)?;
        drop(again);
        assert!(matches!(
            open_writer(&dir.path().join("t.db"), Sync::Full),
            Err(Error::TooNew { found: 99, .. })
        ));
        Ok(())
    }

    #[test]
    fn definitions_keep_every_version() -> Result<()> {
        let (_d, conn) = db();
        conn.insert_definition("p", 1, "v1", "t")?;
        conn.insert_definition("p", 2, "v2", "t")?;
        assert_eq!(conn.latest_definition("p")?, Some((2, "v2".into())));
        assert_eq!(conn.definition("p", 1)?, Some("v1".into()));
        assert_eq!(conn.latest_definition("q")?, None);
        assert!(
            conn.insert_definition("p", 2, "again", "t").is_err(),
            "a version is written once"
        );
        Ok(())
    }

    #[test]
    fn instance_updates_check_the_version() -> Result<()> {
        let (_d, conn) = db();
        assert!(conn.save_instance(&instance("1", 1), None)?);
        assert!(conn.save_instance(&instance("1", 2), Some(1))?);
        assert!(
            !conn.save_instance(&instance("1", 3), Some(1))?,
            "stale: changes nothing"
        );
        assert_eq!(conn.instance("1")?.map(|i| i.version), Some(2));
        assert_eq!(
            conn.list_instances(&InstanceFilter {
                process: Some("p".into()),
                status: Some("active".into()),
                limit: 10,
                ..Default::default()
            })?
            .len(),
            1
        );
        Ok(())
    }

    #[test]
    fn history_rows_group_one_commands_transitions_and_expand_on_read() -> Result<()> {
        let (_d, conn) = db();
        let inst = instance("1", 1);
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let h = |activity, state| {
            Action::History(HistoryEntry {
                activity,
                node: format!("n{activity}"),
                state,
                at,
                actor: None,
            })
        };
        let actions = [
            h(1, Lifecycle::Ready),
            h(1, Lifecycle::Active),
            h(2, Lifecycle::Ready),
            h(1, Lifecycle::Completed),
        ];
        conn.record(&inst, &actions, at)?;
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))?;
        assert_eq!(
            rows, 3,
            "only consecutive transitions of one activity are grouped"
        );
        let read: Vec<(u64, String)> = conn
            .history("1")?
            .into_iter()
            .map(|r| (r.activity, r.state))
            .collect();
        assert_eq!(
            read,
            [
                (1, "ready".into()),
                (1, "active".into()),
                (2, "ready".into()),
                (1, "completed".into())
            ]
        );
        Ok(())
    }
}
