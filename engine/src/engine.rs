//! The engine: the runtime made durable.
//!
//! One thread owns the SQLite write connection. Callers send it commands over a
//! channel; it takes every command waiting (up to a batch size), runs each in its own
//! savepoint inside one `BEGIN IMMEDIATE` transaction, commits once, and only then
//! answers the callers. One fsync thus covers a whole batch (group commit), a failing
//! command rolls back only itself, and no caller is told "done" before the commit is
//! durable. Reads use separate read-only connections (WAL lets them run beside the
//! writer).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ordo_engine::engine::{Config, Engine};
//! use ordo_engine::runtime::Vars;
//!
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::open(Config::new(dir.path().join("ordo.db")))?;
//! let yaml = "id: hello\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: user, assignee: ann, next: e}\n  e: {type: end}\n";
//! let deployed = engine.deploy("hello.yaml", yaml).await?;
//! let inst = engine.start("hello", None, None, Vars::new()).await?;
//! let tasks = engine.tasks_of("ann", 10).await?;
//! assert_eq!(tasks[0].instance_id, inst.id);
//! let done = engine.complete_task(&inst.id, tasks[0].activity, Vars::new(), Some("ann".into()), None).await?;
//! assert_eq!(done.status, ordo_engine::runtime::InstanceStatus::Completed);
//! # assert_eq!(deployed.version, 1);
//! # Ok(()) }
//! ```

use crate::calendar::Calendars;
use crate::model::{self, Diagnostic, Options, Process};
use crate::runtime::{
    self, Action, Clock, Command, Instance, InstanceStatus, Machine, ParentLink, SystemClock,
    Trigger, Vars, next_due,
};
use crate::store::{
    self, HistoryRow, IncidentRow, InstanceFilter, InstanceRow, JobRow, Jobs, ReadDefinitions,
    ReadEvents, ReadHistory, ReadInstances, ReadTasks, TaskRow, WriteDefinitions, WriteEvents,
    WriteInstances, WriteTasks,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use store::{Conn, Sql};
use tokio::sync::oneshot;

/// Most validated definitions the writer keeps in memory.
pub const MAX_CACHED_DEFINITIONS: usize = 256;
/// Most messages and signals one request may send on (instances sending to
/// instances): beyond it the request fails, as a message loop would never end.
pub const MAX_DELIVERIES: usize = 10_000;
/// Deepest instance tree (calls within calls): beyond it a call gets an incident,
/// as a process calling itself without end would.
pub const MAX_CALL_DEPTH: u32 = 32;
/// Timers fired per writer request (each in its own savepoint).
pub const TIMER_BATCH: u32 = 256;

/// Engine errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The definition has errors.
    #[error("the definition has {} error(s)", .0.iter().filter(|d| d.is_error()).count())]
    Invalid(Vec<Diagnostic>),
    /// No such process (or version) is deployed.
    #[error("process `{0}` is not deployed")]
    UnknownProcess(String),
    /// No such instance.
    #[error("instance `{0}` does not exist")]
    UnknownInstance(String),
    /// The person may not do this to the task (the task excludes them: the
    /// four-eyes rule of an approval).
    #[error("{0}")]
    NotAllowed(String),
    /// A message does not fit the payload its receivers declare; nothing happened.
    #[error("message `{name}` is refused: {}", .problems.join("; "))]
    InvalidMessage {
        /// The message name.
        name: String,
        /// Every problem, each naming its field path.
        problems: Vec<String>,
    },
    /// Someone else changed the instance first; read it again and retry.
    #[error("conflict on instance `{instance}`: {reason}")]
    Conflict {
        /// The instance.
        instance: String,
        /// What happened first.
        reason: String,
    },
    /// The runtime refused the command.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The batch holding this command failed to commit; nothing of it was stored.
    #[error("the commit failed, nothing was stored: {0}")]
    CommitFailed(String),
    /// The engine is shut down.
    #[error("the engine is shut down")]
    Closed,
    /// The unit of work panicked; it was rolled back and the writer goes on.
    #[error("the work panicked and was rolled back: {0}")]
    Panicked(String),
    /// A plugin's tables could not be created or upgraded; nothing of its
    /// migration was stored.
    #[error("plugin `{plugin}` cannot prepare its tables: {message}")]
    Migration {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// A plugin action that only touches the database: it runs inside the transaction
/// of the step that calls it, so its writes and the step commit together.
pub trait InlineAction: Send + Sync {
    /// Runs the action. An `Err` becomes an incident on the service task.
    fn call(&self, tx: &dyn Sql, call: &ActionCall<'_>) -> std::result::Result<Value, String>;
}

/// What an inline action is asked to do, and on whose behalf: enough for a plugin
/// to record why it changed something (the process and step) and when (the
/// engine's clock, so tests with a manual clock see manual times).
#[derive(Debug, Clone, Copy)]
pub struct ActionCall<'a> {
    /// The instance whose step calls the action.
    pub instance: &'a str,
    /// Its process id.
    pub process: &'a str,
    /// The service task's node id.
    pub node: &'a str,
    /// The service task's activity instance.
    pub activity: u64,
    /// The action's parameters (`with:`), evaluated.
    pub input: &'a Value,
    /// Now, by the engine's clock.
    pub now: DateTime<Utc>,
}

/// The message declarations read so far, and the deploy generation they follow.
#[derive(Default)]
struct MessageDecls {
    generation: u64,
    by_name: HashMap<String, Arc<Vec<Arc<Process>>>>,
}

/// The latest version of each process as callers last read it; cleared by every
/// deploy. Only a hint: the writer checks it against its own (it is the only
/// deployer) before it applies a prepared start.
#[derive(Debug, Default)]
struct LatestVersions {
    generation: u64,
    by_process: HashMap<String, u32>,
}

/// How many instance ids callers reserve at a time (one committed update of
/// the sequence per block).
const ID_BLOCK: u64 = 256;

/// Instance ids reserved (committed in the sequence) and not yet used: the
/// rest of the current block, and ids handed back by starts the machine
/// refused (so a refused start leaves no gap). Ids left when the engine closes
/// are never used: a restart leaves a gap, never a repeat.
#[derive(Debug, Default)]
struct IdBlock {
    next: std::ops::Range<u64>,
    returned: Vec<u64>,
}

impl IdBlock {
    fn take(&mut self) -> Option<u64> {
        self.returned.pop().or_else(|| self.next.next())
    }
}

/// A start run on the caller's thread (see [`Engine::start`]): the writer
/// checks the version it used is still the one to run, then settles it.
struct PreparedStart {
    process: String,
    pinned: Option<u32>,
    version: u32,
    inst: Instance,
    actions: Vec<Action>,
    /// The business key and variables as given, to run the start on the
    /// writer instead when a deploy came between.
    given: (Option<String>, Vars),
}

/// Engine settings.
pub struct Config {
    /// The SQLite file.
    pub db: PathBuf,
    /// Durability of commits.
    pub sync: store::Sync,
    /// Most commands committed together.
    pub max_batch: usize,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Inline actions by name.
    pub actions: HashMap<String, Arc<dyn InlineAction>>,
    /// Working calendars for business-day timers.
    pub calendars: Calendars,
    /// How long a message that finds no subscriber is kept, unless it says.
    pub message_ttl: chrono::Duration,
    /// The role names a process's `starters` may use (the server's roles); `None`
    /// accepts any.
    pub roles: Option<std::collections::HashSet<String>>,
    /// Plugins' table migrations, by plugin name: run by [`Engine::open`] on
    /// the writer's connection, after the engine's own, in one transaction.
    pub migrations: Vec<(String, Migration)>,
}

/// A plugin's migration: creates or upgrades its tables through the writer.
/// It must be idempotent (it runs at every open) and refuse a database newer
/// than it knows with an error saying so.
pub type Migration = Box<dyn Fn(&dyn Sql) -> std::result::Result<(), String> + Send + Sync>;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("db", &self.db)
            .field("sync", &self.sync)
            .field("max_batch", &self.max_batch)
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .field(
                "migrations",
                &self.migrations.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Config {
    /// Defaults: `synchronous=FULL`, batches of up to 512 commands, the system clock,
    /// the default calendar, messages buffered for one hour.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Config {
            db: db.into(),
            sync: store::Sync::Full,
            max_batch: 512,
            clock: Arc::new(SystemClock),
            actions: HashMap::new(),
            calendars: Calendars::default(),
            message_ttl: chrono::Duration::hours(1),
            roles: None,
            migrations: Vec::new(),
        }
    }
}

/// A deployment's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Deployed {
    /// Process id.
    pub process: String,
    /// Its version.
    pub version: u32,
    /// False when identical content was already the latest version.
    pub created: bool,
    /// Warnings from the validator.
    pub warnings: Vec<Diagnostic>,
}

/// A message for [`Engine::correlate`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    /// Its name.
    pub name: String,
    /// Its correlation key (matches subscriptions with the same key).
    pub key: Option<String>,
    /// An id the sender gives it: a repeat within the TTL changes nothing.
    pub message_id: Option<String>,
    /// Its variables.
    pub variables: Vars,
    /// How long it waits for a subscriber (and its id is remembered); the engine's
    /// default when `None`. Zero: delivered now or not at all.
    #[serde(skip)]
    pub ttl: Option<chrono::Duration>,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Correlation {
    /// A waiting instance took it.
    Correlated {
        /// The instance.
        instance: String,
    },
    /// Message start events started these instances.
    Started {
        /// The new instances.
        instances: Vec<String>,
    },
    /// Every matching start event is `unique` and an instance with this key runs.
    AlreadyRunning {
        /// The running instances.
        instances: Vec<String>,
    },
    /// Nothing waited for it: kept for the first instance that subscribes.
    Buffered {
        /// Until when.
        until: DateTime<Utc>,
    },
    /// Its id was seen within its TTL: nothing changed.
    Duplicate,
    /// Nothing waited for it and its TTL is zero.
    Discarded,
}

/// What a signal broadcast reached.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Signalled {
    /// Subscriptions (catch events, boundary events, gateways) it fired.
    pub delivered: usize,
    /// Instances signal start events started.
    pub started: Vec<String>,
}

/// What one pass of the timer scheduler did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fired {
    /// Instance timers fired.
    pub fired: usize,
    /// Instances timer start events started.
    pub started: usize,
    /// Timers that could not fire (dropped; each says why).
    pub failed: Vec<String>,
}

/// What became of a failed job attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JobOutcome {
    /// It runs again at this time.
    Retrying {
        /// When.
        at: DateTime<Utc>,
        /// Attempts made so far.
        attempts: u32,
    },
    /// Its retries are spent: an incident holds the instance.
    Incident {
        /// Attempts made.
        attempts: u32,
    },
}

/// Longest delay between two attempts of a job.
pub const MAX_BACKOFF_MS: u64 = 24 * 3600 * 1000;

/// A change of who holds a user task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    /// `user` takes an unassigned task.
    Claim {
        /// Who.
        user: String,
    },
    /// The assignee gives the task back to its candidates.
    Unclaim {
        /// Who (must be the assignee).
        user: String,
    },
    /// The assignee (or an admin acting as `by`) hands the task to someone else.
    Delegate {
        /// Who hands it over.
        by: String,
        /// To whom.
        to: String,
    },
}

/// A request to the writer: work to run inside the batch's transaction, and where
/// its answer goes once the batch has committed.
trait Request: Send {
    /// Runs the work; returns whether it succeeded (a failure is rolled back to its
    /// savepoint) and the answer to send after the commit.
    fn run(self: Box<Self>, state: &mut State, tx: &Conn) -> (bool, Box<dyn Answer>);
    /// The batch failed before this request ran.
    fn fail(self: Box<Self>, message: &str);
}

/// An answer held back until the batch's commit.
trait Answer: Send {
    /// Sends the result, or `CommitFailed` when the commit did not happen.
    fn send(self: Box<Self>, failed: Option<&str>);
}

struct Work<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T>>,
}

/// The incident key of a timer start event that failed: it has no instance, so
/// the incident names the process and the event (`start:order:nightly`).
pub fn start_timer_incident(process: &str, event: &str) -> String {
    format!("start:{process}:{event}")
}

/// Runs a statement from the connection's statement cache.
fn run_cached(tx: &Conn, sql: &str) -> store::Result<()> {
    tx.execute(sql, &[]).map(|_| ())
}

/// What a panic carried, as text.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl<T, F> Request for Work<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut State, &Conn) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, state: &mut State, tx: &Conn) -> (bool, Box<dyn Answer>) {
        state.outbox.clear();
        let work = self.work;
        // A panic in one unit of work fails that unit only: its savepoint is
        // rolled back and the writer goes on serving the others.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            work(state, tx).and_then(|v| state.drain_outbox(tx).map(|()| v))
        }))
        .unwrap_or_else(|p| {
            state.outbox.clear();
            state.forget_cached();
            Err(Error::Panicked(panic_text(p.as_ref())))
        });
        let ok = result.is_ok();
        (
            ok,
            Box::new(Reply {
                reply: self.reply,
                result,
            }),
        )
    }

    fn fail(self: Box<Self>, message: &str) {
        let _ = self
            .reply
            .send(Err(Error::CommitFailed(message.to_owned())));
    }
}

/// A plugin's unit of work: its own error rolls its savepoint back and comes
/// back to the caller as `Ok(Err(e))` once the batch has committed.
struct Unit<T, E, F> {
    work: F,
    reply: oneshot::Sender<Result<std::result::Result<T, E>>>,
}

impl<T, E, F> Request for Unit<T, E, F>
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(&dyn Sql) -> std::result::Result<T, E> + Send + 'static,
{
    fn run(self: Box<Self>, state: &mut State, tx: &Conn) -> (bool, Box<dyn Answer>) {
        let work = self.work;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(tx))).map_err(|p| {
                state.forget_cached();
                Error::Panicked(panic_text(p.as_ref()))
            });
        let ok = matches!(result, Ok(Ok(_)));
        (
            ok,
            Box::new(Reply {
                reply: self.reply,
                result,
            }),
        )
    }

    fn fail(self: Box<Self>, message: &str) {
        let _ = self
            .reply
            .send(Err(Error::CommitFailed(message.to_owned())));
    }
}

struct Reply<T> {
    reply: oneshot::Sender<Result<T>>,
    result: Result<T>,
}

impl<T: Send> Answer for Reply<T> {
    fn send(self: Box<Self>, failed: Option<&str>) {
        let result = match failed {
            None => self.result,
            Some(message) => Err(Error::CommitFailed(message.to_owned())),
        };
        let _ = self.reply.send(result);
    }
}

/// The engine. Cheap to share behind an `Arc`; dropping it (or [`Engine::close`])
/// stops the writer after it has committed what it was given.
pub struct Engine {
    stats: Arc<Counters>,
    definitions: Arc<Definitions>,
    /// Which latest processes declare each message name, as last read; cleared
    /// by every deploy (the generation says which deploy the entries follow).
    message_decls: Mutex<MessageDecls>,
    options: Options,
    tx: Mutex<Option<mpsc::Sender<Box<dyn Request>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    db: PathBuf,
    readers: Mutex<Vec<Conn>>,
    clock: Arc<dyn Clock>,
    calendars: Arc<Calendars>,
    /// Instance ids reserved for starts prepared on callers' threads.
    ids: Mutex<IdBlock>,
    /// One caller at a time reserves the next block.
    id_refill: tokio::sync::Mutex<()>,
    latest: Mutex<LatestVersions>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("db", &self.db).finish()
    }
}

impl Engine {
    /// Opens (creating and migrating if needed) the database and starts the writer.
    pub fn open(config: Config) -> Result<Engine> {
        // On a thread of its own: a PostgreSQL client blocks on its own
        // runtime, which must not run inside a caller's async task.
        let conn = std::thread::scope(|s| {
            s.spawn(|| -> Result<Conn> {
                let conn = store::open_writer(&config.db, config.sync)?;
                conn.transaction(|tx| {
                    for (plugin, migrate) in &config.migrations {
                        migrate(tx).map_err(|message| Error::Migration {
                            plugin: plugin.clone(),
                            message,
                        })?;
                    }
                    Ok::<_, Error>(())
                })?;
                Ok(conn)
            })
            .join()
            .map_err(|p| Error::Panicked(panic_text(&*p)))?
        })?;
        let (tx, rx) = mpsc::channel::<Box<dyn Request>>();
        let db = config.db.clone();
        let clock = Arc::clone(&config.clock);
        let stats = Arc::new(Counters::default());
        let definitions = Arc::new(Definitions::default());
        let options = Options {
            calendars: config.calendars.names(),
            roles: config.roles.clone(),
            ..Options::default()
        };
        let calendars = Arc::new(config.calendars);
        let mut writer = Writer {
            conn,
            max_batch: config.max_batch.max(1),
            stats: Arc::clone(&stats),
            state: State {
                started: 0,
                completed: 0,
                clock: config.clock,
                actions: config.actions,
                processes: Arc::clone(&definitions),
                latest: HashMap::new(),
                calendars: Arc::clone(&calendars),
                message_ttl: config.message_ttl,
                roles: config.roles,
                outbox: VecDeque::new(),
            },
        };
        let handle = std::thread::Builder::new()
            .name("ordo-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| Error::CommitFailed(format!("cannot start the writer thread: {e}")))?;
        Ok(Engine {
            stats,
            definitions,
            message_decls: Mutex::new(MessageDecls::default()),
            options,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            db,
            readers: Mutex::new(Vec::new()),
            clock,
            calendars,
            ids: Mutex::new(IdBlock::default()),
            id_refill: tokio::sync::Mutex::new(()),
            latest: Mutex::new(LatestVersions::default()),
        })
    }

    /// Runs `work` on the writer thread, inside a batch; answers after the commit.
    async fn send<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut State, &Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        {
            let guard = self.tx.lock().map_err(|_| Error::Closed)?;
            let tx = guard.as_ref().ok_or(Error::Closed)?;
            tx.send(Box::new(Work { work, reply }))
                .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The latest processes that declare message `name`: from memory when read
    /// since the last deploy, else from `message_decls` (one read).
    async fn message_declarers(&self, name: &str) -> Result<Arc<Vec<Arc<Process>>>> {
        let generation = {
            let decls = self.message_decls.lock().map_err(|_| Error::Closed)?;
            if let Some(found) = decls.by_name.get(name) {
                return Ok(Arc::clone(found));
            }
            decls.generation
        };
        let n = name.to_owned();
        let rows = self.read(move |c| c.message_declarers(&n)).await?;
        let mut found = Vec::with_capacity(rows.len());
        for (process, version) in rows {
            found.push(self.process(&process, Some(version)).await?);
        }
        let found = Arc::new(found);
        let mut decls = self.message_decls.lock().map_err(|_| Error::Closed)?;
        // Kept only if no deploy happened meanwhile.
        if decls.generation == generation && decls.by_name.len() < MAX_CACHED_DEFINITIONS {
            decls.by_name.insert(name.to_owned(), Arc::clone(&found));
        }
        Ok(found)
    }

    /// Runs a plugin's unit of work on the one writer, in a savepoint of its own
    /// inside the next group commit, and answers once that commit is durable.
    /// `Err(e)` from `work` rolls back its savepoint (nothing of it is stored)
    /// and comes back as `Ok(Err(e))`; a panic in `work` rolls it back too and is
    /// an [`Error::Panicked`], while the writer goes on serving everyone else.
    /// This is how every write outside the engine's own commands reaches the
    /// database: nothing else in a server process opens a writable connection.
    pub async fn write<T, E, F>(&self, work: F) -> Result<std::result::Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&dyn Sql) -> std::result::Result<T, E> + Send + 'static,
    {
        let rx = self.enqueue(work)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// [`Engine::write`] for synchronous code: it waits for the commit by
    /// blocking. Inside a Tokio runtime (Tokio cannot tell an async task from a
    /// `spawn_blocking` thread here, and refuses to block the former) it waits
    /// on a short-lived helper thread; either way the calling thread is held
    /// for the length of one commit, so prefer `write` in async code.
    pub fn write_blocking<T, E, F>(&self, work: F) -> Result<std::result::Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&dyn Sql) -> std::result::Result<T, E> + Send + 'static,
    {
        let rx = self.enqueue(work)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            // Tokio refuses to block a runtime thread on a channel; a plain
            // thread may.
            return std::thread::scope(|s| {
                s.spawn(move || rx.blocking_recv())
                    .join()
                    .map_err(|_| Error::Closed)?
                    .map_err(|_| Error::Closed)
            })?;
        }
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    fn enqueue<T, E, F>(
        &self,
        work: F,
    ) -> Result<oneshot::Receiver<Result<std::result::Result<T, E>>>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&dyn Sql) -> std::result::Result<T, E> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let guard = self.tx.lock().map_err(|_| Error::Closed)?;
        let tx = guard.as_ref().ok_or(Error::Closed)?;
        tx.send(Box::new(Unit { work, reply }))
            .map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    /// Runs `work` on one of the engine's read-only connections (WAL readers
    /// beside the writer), on a blocking thread: how plugins read.
    pub async fn query<T, E, F>(&self, work: F) -> Result<std::result::Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&dyn Sql) -> std::result::Result<T, E> + Send + 'static,
    {
        self.read(move |c| Ok::<_, Error>(work(c))).await
    }

    /// Deploys a definition: a new version unless identical to the latest one.
    pub async fn deploy(&self, name: &str, source: &str) -> Result<Deployed> {
        let (name, source) = (name.to_owned(), source.to_owned());
        let deployed = self.send(move |st, tx| st.deploy(tx, &name, &source)).await;
        // A new latest version may declare other messages, or none.
        if let Ok(mut decls) = self.message_decls.lock() {
            decls.generation += 1;
            decls.by_name.clear();
        }
        if let Ok(mut latest) = self.latest.lock() {
            latest.generation += 1;
            latest.by_process.clear();
        }
        deployed
    }

    /// Starts an instance of the latest (or the given) version and runs it to its
    /// first wait state.
    pub async fn start(
        &self,
        process: &str,
        version: Option<u32>,
        business_key: Option<String>,
        variables: Vars,
    ) -> Result<Instance> {
        // The pure part (the machine's run to the first wait) happens here, on
        // the caller's thread; the writer only checks the version and stores.
        let prepared = self
            .prepare_start(process, version, business_key, variables)
            .await?;
        self.send(move |st, tx| {
            let r = st.start_prepared(tx, prepared);
            st.settled(tx, r)
        })
        .await
    }

    async fn prepare_start(
        &self,
        process: &str,
        pinned: Option<u32>,
        business_key: Option<String>,
        variables: Vars,
    ) -> Result<PreparedStart> {
        let version = match pinned {
            Some(v) => v,
            None => self.latest_version(process).await?,
        };
        let p = self.process(process, Some(version)).await?;
        let id = self.take_id().await?;
        let given = (business_key.clone(), variables.clone());
        let machine = Machine::new(&p)?.with_calendars(&self.calendars);
        let started = machine.start_child(
            None,
            id.to_string(),
            version,
            business_key,
            variables,
            None,
            self.clock.as_ref(),
        );
        let (inst, actions) = match started {
            Ok(s) => s,
            Err(e) => {
                // Refused before anything was stored: the id is still unused.
                if let Ok(mut ids) = self.ids.lock() {
                    ids.returned.push(id);
                }
                return Err(e.into());
            }
        };
        Ok(PreparedStart {
            process: process.to_owned(),
            pinned,
            version,
            inst,
            actions,
            given,
        })
    }

    /// The latest version of `process`, as last read (a hint the writer checks).
    async fn latest_version(&self, process: &str) -> Result<u32> {
        let generation = {
            let latest = self.latest.lock().map_err(|_| Error::Closed)?;
            if let Some(v) = latest.by_process.get(process) {
                return Ok(*v);
            }
            latest.generation
        };
        let name = process.to_owned();
        let found = self.read(move |c| c.latest_definition(&name)).await?;
        let v = found
            .ok_or_else(|| Error::UnknownProcess(process.to_owned()))?
            .0;
        let mut latest = self.latest.lock().map_err(|_| Error::Closed)?;
        if latest.generation == generation && latest.by_process.len() < MAX_CACHED_DEFINITIONS {
            latest.by_process.insert(process.to_owned(), v);
        }
        Ok(v)
    }

    /// An instance id of a block reserved (and committed) beforehand: never
    /// used twice, even across restarts. A start the machine refuses hands its
    /// id back (`IdBlock::returned`); the rest of a block is skipped when the
    /// engine stops, and a start the writer then runs itself (a deploy came
    /// between) takes another id: gaps, never repeats.
    async fn take_id(&self) -> Result<u64> {
        let take = |ids: &Mutex<IdBlock>| -> Result<Option<u64>> {
            Ok(ids.lock().map_err(|_| Error::Closed)?.take())
        };
        if let Some(id) = take(&self.ids)? {
            return Ok(id);
        }
        let _refill = self.id_refill.lock().await;
        if let Some(id) = take(&self.ids)? {
            return Ok(id);
        }
        let mut block = self
            .send(|_, tx| Ok(store::reserve_instance_ids(tx, ID_BLOCK)?))
            .await?;
        let id = block.next().ok_or(Error::Closed)?;
        self.ids.lock().map_err(|_| Error::Closed)?.next = block;
        Ok(id)
    }

    /// Completes a user task. With `expected_version`, a changed instance is a conflict.
    pub async fn complete_task(
        &self,
        instance: &str,
        activity: u64,
        variables: Vars,
        actor: Option<String>,
        expected_version: Option<u64>,
    ) -> Result<Instance> {
        let cmd = Command::CompleteTask {
            activity: activity.into(),
            variables,
            actor,
        };
        self.apply(instance, cmd, expected_version).await
    }

    /// Cancels an instance.
    pub async fn cancel(&self, instance: &str, actor: Option<String>) -> Result<Instance> {
        self.apply(instance, Command::Cancel { actor }, None).await
    }

    /// Adds runs to a running multi-instance activity, one per item (see
    /// [`Command::AddRuns`]).
    pub async fn add_runs(
        &self,
        instance: &str,
        activity: u64,
        items: Vec<Value>,
    ) -> Result<Instance> {
        self.apply(
            instance,
            Command::AddRuns {
                activity: activity.into(),
                items,
            },
            None,
        )
        .await
    }

    /// Applies any runtime command (completing jobs is how the job executor reports).
    pub async fn apply(
        &self,
        instance: &str,
        cmd: Command,
        expected_version: Option<u64>,
    ) -> Result<Instance> {
        let instance = instance.to_owned();
        self.send(move |st, tx| {
            let r = st.apply(tx, instance, cmd, expected_version);
            st.settled(tx, r)
        })
        .await
    }

    /// Claims, unclaims or delegates a user task. The engine checks the task's
    /// state (an assigned task cannot be claimed, only its assignee unclaims); who
    /// may do what is the server's to check.
    pub async fn change_task(
        &self,
        instance: &str,
        activity: u64,
        change: TaskChange,
    ) -> Result<TaskRow> {
        let instance = instance.to_owned();
        self.send(move |st, tx| st.change_task(tx, &instance, activity, change))
            .await
    }

    /// Delivers a message: to the instance waiting for it (name and key), else to
    /// message start events, else into the buffer for its TTL. A repeated
    /// `message_id` within the TTL is a [`Correlation::Duplicate`]. Whatever the
    /// number of concurrent callers, the one writer sees each message id once.
    ///
    /// First, the message is checked against the payload every latest process
    /// version declares for its name (`messages:`); one that does not fit is an
    /// [`Error::InvalidMessage`] and changes nothing: it is not buffered, not
    /// correlated, starts nothing, and its id is not remembered. The check runs on
    /// a reader, not the writer.
    pub async fn correlate(&self, message: Message) -> Result<Correlation> {
        self.check_message(&message.name, &message.variables)
            .await?;
        self.send(move |st, tx| st.correlate(tx, message)).await
    }

    /// Checks a message's variables against every declaration of its name among
    /// the deployed processes' latest versions. A name nobody declares passes.
    pub async fn check_message(&self, name: &str, variables: &Vars) -> Result<()> {
        let mut problems = Vec::new();
        for p in self.message_declarers(name).await?.iter() {
            let Some(decl) = p.def.messages.get(name) else {
                continue;
            };
            if !decl.additional_variables {
                let known: Vec<&str> = decl.variables.keys().map(String::as_str).collect();
                for var in variables.keys().filter(|v| !known.contains(&v.as_str())) {
                    problems.push(format!(
                        "{var} is not a variable of this message ({})",
                        known.join(", ")
                    ));
                }
            }
            for (var, d) in &decl.variables {
                match variables.get(var) {
                    None | Some(Value::Null) if d.required => {
                        problems.push(format!("{var} is required"));
                    }
                    None => {}
                    Some(v) => {
                        if let Err(p) = d.check(var, v) {
                            problems.extend(p);
                        }
                    }
                }
            }
        }
        problems.dedup();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidMessage {
                name: name.to_owned(),
                problems,
            })
        }
    }

    /// Broadcasts a signal to every instance waiting for it and to signal start events.
    pub async fn signal(&self, name: &str, variables: Vars) -> Result<Signalled> {
        let name = name.to_owned();
        self.send(move |st, tx| st.signal(tx, &name, &variables))
            .await
    }

    /// Fires every timer due by the engine's clock (instance timers and timer start
    /// events), in batches; returns what it did. A timer fires in the transaction
    /// that removes it, so it fires once, and never before it is due. Timers that
    /// came due while the engine was down fire on the first call.
    pub async fn fire_due_timers(&self) -> Result<Fired> {
        let mut total = Fired::default();
        loop {
            let f = self.send(|st, tx| st.fire_due(tx)).await?;
            let done = f.fired + f.started + f.failed.len() < TIMER_BATCH as usize;
            total.fired += f.fired;
            total.started += f.started;
            total.failed.extend(f.failed);
            if done {
                return Ok(total);
            }
        }
    }

    /// When the next timer is due, if any: how long a scheduler may sleep.
    pub async fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>> {
        let ms = self.read(|c| c.next_timer()).await?;
        Ok(ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Incidents, newest first (only open ones when `open_only`).
    pub async fn incidents(
        &self,
        open_only: bool,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<IncidentRow>> {
        self.read(move |c| c.incidents(open_only, limit, offset))
            .await
    }

    /// One instance's incidents, open and closed, newest first.
    pub async fn instance_incidents(&self, instance: &str) -> Result<Vec<IncidentRow>> {
        let instance = instance.to_owned();
        self.read(move |c| c.instance_incidents(&instance)).await
    }

    /// Checks a process file as [`Engine::deploy`] would, without deploying it:
    /// every error and warning, with its line and column.
    pub fn check(&self, name: &str, source: &str) -> Vec<Diagnostic> {
        model::load(name, source, &self.options).diagnostics
    }

    /// Runs a failed step again (see [`Command::Retry`]).
    pub async fn retry(
        &self,
        instance: &str,
        activity: u64,
        retries: Option<u32>,
        variables: Vars,
        actor: Option<String>,
    ) -> Result<Instance> {
        let cmd = Command::Retry {
            activity: activity.into(),
            retries,
            variables,
            actor: actor.clone(),
        };
        let instance = instance.to_owned();
        self.send(move |st, tx| {
            // A timer that could not fire is parked with its incident: a retry
            // arms it to fire on the next pass.
            let now = st.clock.now();
            if tx.set_timer_failed(&instance, activity, false, now.timestamp_millis())? {
                tx.close_incident_retried(
                    &instance,
                    activity,
                    &now.to_rfc3339(),
                    actor.as_deref(),
                )?;
                return tx
                    .instance(&instance)?
                    .ok_or_else(|| Error::UnknownInstance(instance.clone()));
            }
            let r = st.apply(tx, instance, cmd, None);
            st.settled(tx, r)
        })
        .await
    }

    /// Marks a failed step as done by hand; the path goes on (see [`Command::Resolve`]).
    pub async fn resolve(
        &self,
        instance: &str,
        activity: u64,
        variables: Vars,
        actor: Option<String>,
    ) -> Result<Instance> {
        let cmd = Command::Resolve {
            activity: activity.into(),
            variables,
            actor,
        };
        self.apply(instance, cmd, None).await
    }

    /// Leases up to `max` due jobs of these actions to `worker` for `lease`. Each
    /// lease counts an attempt, so a job whose worker dies (its lease expires) is
    /// taken again until its attempts are spent, then becomes an incident: an
    /// expired lease neither loops forever nor loses an attempt.
    pub async fn acquire_jobs(
        &self,
        worker: &str,
        actions: Vec<String>,
        max: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<JobRow>> {
        let worker = worker.to_owned();
        self.send(move |st, tx| st.acquire_jobs(tx, &worker, &actions, max, lease))
            .await
    }

    /// A worker reports its job done: the instance moves on.
    pub async fn complete_job(
        &self,
        instance: &str,
        activity: u64,
        worker: &str,
        result: Value,
    ) -> Result<Instance> {
        let (instance, worker) = (instance.to_owned(), worker.to_owned());
        self.send(move |st, tx| {
            st.take_job(tx, &instance, activity, &worker)?;
            let cmd = Command::CompleteJob {
                activity: activity.into(),
                result,
            };
            let r = st.apply(tx, instance, cmd, None);
            st.settled(tx, r)
        })
        .await
    }

    /// A worker reports a failed attempt: retried after an exponential backoff
    /// (`backoff`, doubled per retry) while retries last, then an incident that
    /// holds the error and the attempt count.
    pub async fn fail_job(
        &self,
        instance: &str,
        activity: u64,
        worker: &str,
        error: &str,
    ) -> Result<JobOutcome> {
        let (instance, worker, error) = (instance.to_owned(), worker.to_owned(), error.to_owned());
        self.send(move |st, tx| st.fail_job(tx, &instance, activity, &worker, &error))
            .await
    }

    /// A worker reports a business error (BPML fault): it goes to a boundary
    /// `error` event, or becomes an incident when none catches it.
    pub async fn job_error(
        &self,
        instance: &str,
        activity: u64,
        worker: &str,
        code: &str,
        message: &str,
    ) -> Result<Instance> {
        let (instance, worker) = (instance.to_owned(), worker.to_owned());
        let (code, message) = (code.to_owned(), message.to_owned());
        self.send(move |st, tx| {
            st.take_job(tx, &instance, activity, &worker)?;
            let cmd = Command::JobError {
                activity: activity.into(),
                code,
                message,
            };
            let r = st.apply(tx, instance, cmd, None);
            st.settled(tx, r)
        })
        .await
    }

    /// Copies the whole database to a new file `to` while the engine runs (see
    /// [`store::backup`]); returns its size in bytes. Restoring is replacing the
    /// database file with the copy while the engine is stopped.
    pub async fn backup(&self, to: PathBuf) -> Result<u64> {
        let from = self.db.clone();
        let copied = tokio::task::spawn_blocking(move || store::backup(&from, &to))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(copied?)
    }

    /// What the engine has committed since it opened.
    pub fn stats(&self) -> Stats {
        let c = &self.stats;
        Stats {
            commands: c.commands.load(Ordering::Relaxed),
            failed_commands: c.failed_commands.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            instances_started: c.started.load(Ordering::Relaxed),
            instances_completed: c.completed.load(Ordering::Relaxed),
        }
    }

    /// How many instances are active, tasks open and incidents open, now.
    pub async fn gauges(&self) -> Result<store::Gauges> {
        self.read(|c| c.gauges()).await
    }

    /// A deployed process, validated (the latest version when `None`); cached,
    /// so reading a task's form or drawing a diagram does not validate again.
    pub async fn process(&self, id: &str, version: Option<u32>) -> Result<Arc<Process>> {
        if let Some(p) = version.and_then(|v| self.definitions.cached(id, v)) {
            return Ok(p);
        }
        let (defs, options, id) = (
            Arc::clone(&self.definitions),
            self.options.clone(),
            id.to_owned(),
        );
        self.read(move |c| defs.load(c, &options, &id, version))
            .await
    }

    /// Every deployed version of every process, or of `process` only.
    pub async fn definitions(&self, process: Option<&str>) -> Result<Vec<store::DefinitionRow>> {
        let process = process.map(str::to_owned);
        self.read(move |c| c.list_definitions(process.as_deref()))
            .await
    }

    /// A process's source: the given version, or the latest.
    pub async fn definition(&self, process: &str, version: Option<u32>) -> Result<(u32, String)> {
        let p = process.to_owned();
        let found = self
            .read(move |c| match version {
                Some(v) => Ok(c.definition(&p, v)?.map(|s| (v, s))),
                None => c.latest_definition(&p),
            })
            .await?;
        found.ok_or_else(|| Error::UnknownProcess(process.to_owned()))
    }

    /// An open task, with who may and may not hold it.
    pub async fn task(
        &self,
        instance: &str,
        activity: u64,
    ) -> Result<Option<(TaskRow, store::Candidates)>> {
        let i = instance.to_owned();
        self.read(move |c| -> store::Result<_> {
            let Some(t) = c.open_task(&i, activity)? else {
                return Ok(None);
            };
            Ok(Some((t, c.task_candidates(&i, activity)?)))
        })
        .await
    }

    /// A task that exists but is no longer open: how, by whom and when it ended.
    pub async fn closed_task(
        &self,
        instance: &str,
        activity: u64,
    ) -> Result<Option<store::ClosedTask>> {
        let i = instance.to_owned();
        self.read(move |c| c.closed_task(&i, activity)).await
    }

    /// Open tasks past their due date.
    pub async fn overdue_tasks(&self, limit: u32) -> Result<Vec<TaskRow>> {
        let now = self.clock.now().to_rfc3339();
        self.read(move |c| c.overdue_tasks(&now, limit)).await
    }

    async fn read<T: Send + 'static, E: Into<Error> + Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> std::result::Result<T, E> + Send + 'static,
    ) -> Result<T> {
        let conn = {
            let mut pool = self.readers.lock().map_err(|_| Error::Closed)?;
            pool.pop()
        };
        let db = self.db.clone();
        // Opened on the blocking thread too (a PostgreSQL client must not
        // block inside an async task).
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => match store::open_reader(&db) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(Error::from(e))),
                },
            };
            let out = f(&conn).map_err(Into::into);
            (Some(conn), out)
        })
        .await
        .map_err(|_| Error::Closed)?;
        if let (Some(conn), Ok(mut pool)) = (conn, self.readers.lock()) {
            pool.push(conn);
        }
        out
    }

    /// Whether the tree of instance `id` holds a task one of `people` held or
    /// holds.
    pub async fn instance_among(&self, id: &str, people: Vec<String>) -> Result<bool> {
        let id = id.to_owned();
        self.read(move |c| c.instance_among(&id, &people)).await
    }

    /// An instance's current state.
    pub async fn instance(&self, id: &str) -> Result<Instance> {
        let key = id.to_owned();
        self.read(move |c| c.instance(&key))
            .await?
            .ok_or_else(|| Error::UnknownInstance(id.to_owned()))
    }

    /// An instance's history, in order.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryRow>> {
        let id = id.to_owned();
        self.read(move |c| c.history(&id)).await
    }

    /// Open tasks assigned to `user`.
    pub async fn tasks_of(&self, user: &str, limit: u32) -> Result<Vec<TaskRow>> {
        let user = user.to_owned();
        self.read(move |c| c.tasks_of(&user, limit)).await
    }

    /// Open unclaimed tasks offered to `user` by name or to these groups, that do
    /// not exclude `user`.
    pub async fn group_tasks(
        &self,
        user: &str,
        groups: Vec<String>,
        limit: u32,
    ) -> Result<Vec<TaskRow>> {
        let user = user.to_owned();
        self.read(move |c| c.group_tasks(&user, &groups, limit))
            .await
    }

    /// Instances by process and status, paged.
    pub async fn list_instances(&self, filter: InstanceFilter) -> Result<Vec<InstanceRow>> {
        self.read(move |c| c.list_instances(&filter)).await
    }

    /// Where an instance sits in its tree: its root, its parent (the instance whose
    /// call or spawn started it) and its children, oldest first.
    pub async fn tree(&self, id: &str) -> Result<InstanceTree> {
        let key = id.to_owned();
        let (row, children) = self
            .read(move |c| -> store::Result<_> { Ok((c.instance_row(&key)?, c.children(&key)?)) })
            .await?;
        let instance = row.ok_or_else(|| Error::UnknownInstance(id.to_owned()))?;
        Ok(InstanceTree {
            root: instance
                .root_id
                .clone()
                .unwrap_or_else(|| instance.id.clone()),
            parent: instance.parent_id.clone(),
            instance,
            children,
        })
    }

    /// Now, by the engine's clock (the one timers and audit trails use).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The engine's database file, for plugins that read their own tables.
    pub fn db_path(&self) -> &std::path::Path {
        &self.db
    }

    /// Stops the writer after it has committed everything sent before.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        // Closed on a thread of their own: a PostgreSQL client's close blocks
        // on its runtime, which must not run inside a caller's async task.
        if let Ok(mut pool) = self.readers.lock() {
            let readers = std::mem::take(&mut *pool);
            if !readers.is_empty() {
                let _ = std::thread::spawn(move || drop(readers)).join();
            }
        }
        if let Ok(mut w) = self.writer.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    conn: Conn,
    max_batch: usize,
    stats: Arc<Counters>,
    state: State,
}

/// Validated definitions by process and version, shared by the writer (which
/// runs them) and readers (task forms, diagrams): each version is validated once.
#[derive(Debug, Default)]
struct Definitions {
    map: Mutex<HashMap<(String, u32), Arc<Process>>>,
}

impl Definitions {
    /// A version already validated, if cached.
    fn cached(&self, id: &str, version: u32) -> Option<Arc<Process>> {
        self.map
            .lock()
            .ok()
            .and_then(|m| m.get(&(id.to_owned(), version)).cloned())
    }

    fn insert(&self, id: &str, version: u32, p: Arc<Process>) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= MAX_CACHED_DEFINITIONS {
                // A bound, not an LRU: definitions are few, and reloading one is cheap.
                m.clear();
            }
            m.insert((id.to_owned(), version), p);
        }
    }

    fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }

    /// A version (the latest stored when `None`), from the cache or loaded from
    /// the database through `conn`.
    fn load(
        &self,
        conn: &Conn,
        options: &Options,
        id: &str,
        version: Option<u32>,
    ) -> Result<Arc<Process>> {
        let version = match version {
            Some(v) => v,
            None => {
                conn.latest_definition(id)?
                    .ok_or_else(|| Error::UnknownProcess(id.to_owned()))?
                    .0
            }
        };
        let cached = self
            .map
            .lock()
            .ok()
            .and_then(|m| m.get(&(id.to_owned(), version)).cloned());
        if let Some(p) = cached {
            return Ok(p);
        }
        let source = conn
            .definition(id, version)?
            .ok_or_else(|| Error::UnknownProcess(format!("{id} v{version}")))?;
        let loaded = model::load(id, &source, options);
        let p = Arc::new(loaded.process.ok_or(Error::Invalid(loaded.diagnostics))?);
        self.insert(id, version, Arc::clone(&p));
        Ok(p)
    }
}

/// What the writer has committed since the engine opened.
#[derive(Debug, Default)]
struct Counters {
    commands: AtomicU64,
    failed_commands: AtomicU64,
    commits: AtomicU64,
    failed_commits: AtomicU64,
    started: AtomicU64,
    completed: AtomicU64,
}

/// Counts since the engine opened (committed work only), for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Commands committed (each request the writer ran).
    pub commands: u64,
    /// Commands refused or rolled back (their savepoint undone).
    pub failed_commands: u64,
    /// Transactions committed (group commits); `commands / commits` is the mean
    /// batch size.
    pub commits: u64,
    /// Batches whose commit failed (every command in them was told so).
    pub failed_commits: u64,
    /// Instances started.
    pub instances_started: u64,
    /// Instances that completed.
    pub instances_completed: u64,
}

/// What the writer's commands change besides the database.
struct State {
    clock: Arc<dyn Clock>,
    actions: HashMap<String, Arc<dyn InlineAction>>,
    processes: Arc<Definitions>,
    /// Latest deployed version per process (the writer is the only deployer).
    latest: HashMap<String, u32>,
    calendars: Arc<Calendars>,
    message_ttl: chrono::Duration,
    roles: Option<std::collections::HashSet<String>>,
    /// Instances started and completed by the request running now (counted once
    /// its batch commits).
    started: u64,
    completed: u64,
    /// What the request's steps send to other instances (messages, signals,
    /// children to start or cancel, ends and errors for callers), delivered after
    /// them in the same transaction.
    outbox: VecDeque<Delivery>,
}

/// An instance's place in its tree (see [`Engine::tree`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceTree {
    /// The instance.
    pub instance: InstanceRow,
    /// The top of the tree (the instance itself when it has no parent).
    pub root: String,
    /// The instance that called or spawned it.
    pub parent: Option<String>,
    /// The instances it called or spawned, oldest first.
    pub children: Vec<InstanceRow>,
}

/// Something a step sends to other instances.
enum Delivery {
    /// A message or signal.
    Send(Action),
    /// Start a child for a call or spawn activity.
    Start {
        link: ParentLink,
        process: String,
        version: Option<u32>,
        business_key: Option<String>,
        variables: Vars,
    },
    /// Cancel the children a call activity started.
    CancelChildren { parent: String, activity: u64 },
    /// A called child ended: its caller goes on.
    ChildEnded {
        link: ParentLink,
        child: String,
        status: InstanceStatus,
        variables: Vars,
    },
    /// A called child raised what it did not catch.
    ChildRaised {
        link: ParentLink,
        code: String,
        error: bool,
    },
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<Box<dyn Request>>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<Box<dyn Request>>) {
        let state = &mut self.state;
        let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(batch.len());
        let mut pending = batch.into_iter();
        let mut failed = 0u64;
        let outcome = (|| -> Result<()> {
            let tx = self.conn.begin()?;
            for req in pending.by_ref() {
                // Prepared once per connection: the savepoint statements are
                // run for every command, and parsing them each time showed in
                // the writer's profile.
                if let Err(e) = run_cached(&tx, "SAVEPOINT cmd") {
                    req.fail(&e.to_string());
                    return Err(e.into());
                }
                let before = (state.started, state.completed);
                let (ok, answer) = req.run(state, &tx);
                answers.push(answer);
                if !ok {
                    (state.started, state.completed) = before;
                    failed += 1;
                    run_cached(&tx, "ROLLBACK TO cmd")?;
                }
                run_cached(&tx, "RELEASE cmd")?;
            }
            tx.commit()?;
            Ok(())
        })();
        let (started, completed) = (state.started, state.completed);
        (state.started, state.completed) = (0, 0);
        let n = answers.len() as u64;
        let c = &self.stats;
        match outcome {
            Ok(()) => {
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.commands.fetch_add(n - failed, Ordering::Relaxed);
                c.failed_commands.fetch_add(failed, Ordering::Relaxed);
                c.started.fetch_add(started, Ordering::Relaxed);
                c.completed.fetch_add(completed, Ordering::Relaxed);
                answers.into_iter().for_each(|a| a.send(None));
            }
            Err(e) => {
                c.failed_commits.fetch_add(1, Ordering::Relaxed);
                c.failed_commands.fetch_add(n, Ordering::Relaxed);
                // Nothing of this batch is durable: every caller hears so, and
                // definitions cached from it are forgotten.
                self.state.processes.clear();
                self.state.latest.clear();
                let msg = e.to_string();
                answers.into_iter().for_each(|a| a.send(Some(&msg)));
                pending.for_each(|req| req.fail(&msg));
            }
        }
    }
}

/// Refuses a completion by someone the task excludes (the four-eyes rule).
fn excluded_check(tx: &Conn, instance: &str, activity: u64, who: &str) -> Result<()> {
    if tx.task_excludes(instance, activity, who)? {
        return Err(Error::NotAllowed(format!(
            "task {activity} of instance {instance} excludes {who} (the four-eyes \
             rule: whoever requested or already approved it may not complete it)"
        )));
    }
    Ok(())
}

/// A delivery to an instance that has moved on (ended, or no longer waits there)
/// changes nothing; anything else is an error.
fn ignore_gone(r: Result<Instance>) -> Result<()> {
    match r {
        Ok(_)
        | Err(Error::Conflict { .. })
        | Err(Error::UnknownInstance(_))
        | Err(Error::Runtime(
            runtime::Error::UnknownActivity(_) | runtime::Error::WrongActivity { .. },
        )) => Ok(()),
        Err(e) => Err(e),
    }
}

impl State {
    /// Forgets cached definitions and latest versions: after a panic the cache
    /// may hold what a rolled-back deploy put there.
    fn forget_cached(&mut self) {
        self.processes.clear();
        self.latest.clear();
    }

    fn machine<'p>(&self, p: &'p Process, calendars: &'p Calendars) -> Result<Machine<'p>> {
        Ok(Machine::new(p)?.with_calendars(calendars))
    }

    /// Starts an instance (through start event `event`, else the call start), as
    /// the child of `parent` when a call or spawn asked for it.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        tx: &Conn,
        process: &str,
        version: Option<u32>,
        event: Option<&str>,
        business_key: Option<String>,
        variables: Vars,
        parent: Option<ParentLink>,
    ) -> Result<Instance> {
        let version = match version {
            Some(v) => v,
            None => self.latest_version(tx, process)?,
        };
        let p = self.process(tx, process, Some(version))?;
        let calendars = Arc::clone(&self.calendars);
        let machine = self.machine(&p, &calendars)?;
        let id = store::next_instance_id(tx)?.to_string();
        let clock = Arc::clone(&self.clock);
        let (inst, actions) = machine.start_child(
            event,
            id,
            version,
            business_key,
            variables,
            parent,
            clock.as_ref(),
        )?;
        self.settle(tx, &machine, inst, actions, None)
    }

    /// Stores a start run on the caller's thread, if the version it ran is still
    /// the one to run (a deploy may have come between: then it runs here).
    fn start_prepared(&mut self, tx: &Conn, p: PreparedStart) -> Result<Instance> {
        let current = match p.pinned {
            Some(v) => v,
            None => self.latest_version(tx, &p.process)?,
        };
        if current != p.version {
            let (business_key, variables) = p.given;
            return self.start(
                tx,
                &p.process,
                p.pinned,
                None,
                business_key,
                variables,
                None,
            );
        }
        let process = self.process(tx, &p.process, Some(p.version))?;
        let calendars = Arc::clone(&self.calendars);
        let machine = self.machine(&process, &calendars)?;
        self.settle(tx, &machine, p.inst, p.actions, None)
    }

    fn apply(
        &mut self,
        tx: &Conn,
        instance: String,
        cmd: Command,
        expected_version: Option<u64>,
    ) -> Result<Instance> {
        let inst = tx
            .instance(&instance)?
            .ok_or_else(|| Error::UnknownInstance(instance.clone()))?;
        if let Some(v) = expected_version
            && v != inst.version
        {
            return Err(Error::Conflict {
                instance,
                reason: format!("it is at version {}, not {v}", inst.version),
            });
        }
        let p = self.process(tx, &inst.process, Some(inst.process_version))?;
        let calendars = Arc::clone(&self.calendars);
        let machine = self.machine(&p, &calendars)?;
        let task = match &cmd {
            Command::CompleteTask {
                activity, actor, ..
            } => {
                if let Some(who) = actor {
                    excluded_check(tx, &instance, activity.0, who)?;
                }
                Some(*activity)
            }
            _ => None,
        };
        let (next, actions) = match machine.apply(&inst, cmd, self.clock.as_ref()) {
            Ok(r) => r,
            Err(runtime::Error::UnknownActivity(a)) if task.is_some() => {
                let state = tx.task_state(&instance, a.0)?;
                return Err(match state {
                    Some(s) => Error::Conflict {
                        instance,
                        reason: format!("task {a} is already {s}"),
                    },
                    None => Error::Runtime(runtime::Error::UnknownActivity(a)),
                });
            }
            Err(runtime::Error::NotActive(s)) => {
                return Err(Error::Conflict {
                    instance,
                    reason: format!("the instance is already {s:?}").to_lowercase(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        self.settle(tx, &machine, next, actions, Some(inst.version))
    }

    /// Finishes a step: runs inline actions and hands buffered messages to new
    /// message subscriptions (both feed the machine again), saves the instance,
    /// records its actions, and queues the messages and signals it sends.
    fn settle(
        &mut self,
        tx: &Conn,
        machine: &Machine,
        mut inst: Instance,
        mut actions: Vec<Action>,
        expected: Option<u64>,
    ) -> Result<Instance> {
        let now_ms = self.clock.now().timestamp_millis();
        let mut i = 0;
        while i < actions.len() {
            let cmd = match &actions[i] {
                Action::RunJob(job) => match self.actions.get(&job.action) {
                    Some(handler) => {
                        let call = ActionCall {
                            instance: &inst.id,
                            process: &inst.process,
                            node: &job.node,
                            activity: job.activity.into(),
                            input: &job.input,
                            now: self.clock.now(),
                        };
                        let cmd = match handler.call(tx, &call) {
                            Ok(result) => Command::CompleteJob {
                                activity: job.activity,
                                result,
                            },
                            Err(message) => Command::FailJob {
                                activity: job.activity,
                                message,
                            },
                        };
                        actions.remove(i);
                        cmd
                    }
                    None => {
                        i += 1;
                        continue;
                    }
                },
                Action::Subscribe(sub) => {
                    i += 1;
                    let Trigger::Message { name, key } = &sub.trigger else {
                        continue;
                    };
                    if !inst.subscriptions.iter().any(|s| s.id == sub.id) {
                        continue; // already fired or withdrawn in this step
                    }
                    match tx.take_buffered(name, key.as_deref(), now_ms)? {
                        Some(vars) => Command::Trigger {
                            subscription: sub.id,
                            variables: serde_json::from_str(&vars).map_err(store::Error::from)?,
                        },
                        None => continue,
                    }
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            let (next, more) = machine.apply(&inst, cmd, self.clock.as_ref())?;
            inst = next;
            actions.extend(more);
        }
        if expected.is_none() {
            self.started += 1;
        }
        if inst.status == InstanceStatus::Completed
            && actions.iter().any(|a| matches!(a, Action::Ended { .. }))
        {
            self.completed += 1;
        }
        if !tx.save_instance(&inst, expected)? {
            return Err(Error::Conflict {
                instance: inst.id.clone(),
                reason: "it was changed by another command".into(),
            });
        }
        tx.record(&inst, &actions, self.clock.now(), expected.is_none())?;
        for a in actions {
            let d = match a {
                Action::SendMessage { .. } | Action::Broadcast { .. } => Delivery::Send(a),
                Action::StartChild {
                    activity,
                    process,
                    version,
                    business_key,
                    variables,
                    waits,
                } => Delivery::Start {
                    link: ParentLink {
                        instance: inst.id.clone(),
                        activity,
                        root: inst
                            .parent
                            .as_ref()
                            .map_or_else(|| inst.id.clone(), |p| p.root.clone()),
                        depth: inst.parent.as_ref().map_or(1, |p| p.depth + 1),
                        waits,
                    },
                    process,
                    version,
                    business_key,
                    variables,
                },
                Action::CancelChildren { activity } => Delivery::CancelChildren {
                    parent: inst.id.clone(),
                    activity: activity.into(),
                },
                Action::RaiseInCaller { code, error, .. } => match &inst.parent {
                    Some(link) if link.waits => Delivery::ChildRaised {
                        link: link.clone(),
                        code,
                        error,
                    },
                    _ => continue,
                },
                Action::Ended { status } => match &inst.parent {
                    Some(link) if link.waits => Delivery::ChildEnded {
                        link: link.clone(),
                        child: inst.id.clone(),
                        status,
                        variables: inst.variables().clone(),
                    },
                    _ => continue,
                },
                _ => continue,
            };
            self.outbox.push_back(d);
        }
        Ok(inst)
    }

    /// The instance a command left, after what it sent was delivered (a spawn's
    /// child started, a called child ended at once, a message to itself): the
    /// caller sees its state as committed.
    fn settled(&mut self, tx: &Conn, r: Result<Instance>) -> Result<Instance> {
        let inst = r?;
        if self.outbox.is_empty() {
            return Ok(inst);
        }
        self.drain_outbox(tx)?;
        Ok(tx.instance(&inst.id)?.unwrap_or(inst))
    }

    /// Delivers what the request's steps sent, and what those deliveries send in
    /// turn, up to [`MAX_DELIVERIES`].
    fn drain_outbox(&mut self, tx: &Conn) -> Result<()> {
        let mut delivered = 0;
        while let Some(a) = self.outbox.pop_front() {
            delivered += 1;
            if delivered > MAX_DELIVERIES {
                self.outbox.clear();
                return Err(Error::Runtime(runtime::Error::Unsupported {
                    node: "-".into(),
                    what: format!(
                        "more than {MAX_DELIVERIES} messages and signals in one request (do instances send to each other in a loop?)"
                    ),
                }));
            }
            match a {
                Delivery::Send(Action::SendMessage {
                    name,
                    key,
                    variables,
                }) => {
                    self.correlate(
                        tx,
                        Message {
                            name,
                            key,
                            message_id: None,
                            variables,
                            ttl: None,
                        },
                    )?;
                }
                Delivery::Send(Action::Broadcast { name, variables }) => {
                    self.signal(tx, &name, &variables)?;
                }
                Delivery::Send(_) => {}
                Delivery::Start {
                    link,
                    process,
                    version,
                    business_key,
                    variables,
                } => self.start_child(tx, link, &process, version, business_key, variables)?,
                Delivery::CancelChildren { parent, activity } => {
                    for child in tx.children_of(&parent, activity)? {
                        let cancel = Command::Cancel { actor: None };
                        ignore_gone(self.apply(tx, child, cancel, None))?;
                    }
                }
                Delivery::ChildEnded {
                    link,
                    child,
                    status,
                    variables,
                } => {
                    let cmd = Command::ChildEnded {
                        activity: link.activity,
                        child,
                        status,
                        variables,
                    };
                    ignore_gone(self.apply(tx, link.instance, cmd, None))?;
                }
                Delivery::ChildRaised { link, code, error } => {
                    let cmd = Command::ChildRaised {
                        activity: link.activity,
                        code,
                        error,
                    };
                    match self.apply(tx, link.instance, cmd, None) {
                        Err(Error::Runtime(runtime::Error::Uncaught(_))) => {}
                        other => ignore_gone(other)?,
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts the child a call or spawn asked for, in a savepoint: when it cannot
    /// start (no such process, bad variables, the tree too deep), nothing of it is
    /// kept and the caller's activity gets an incident saying why. A spawn
    /// completes once its child has started.
    fn start_child(
        &mut self,
        tx: &Conn,
        link: ParentLink,
        process: &str,
        version: Option<u32>,
        business_key: Option<String>,
        variables: Vars,
    ) -> Result<()> {
        let (parent, activity, waits) = (link.instance.clone(), link.activity, link.waits);
        let failed = if link.depth > MAX_CALL_DEPTH {
            Some(format!(
                "the instance tree is {MAX_CALL_DEPTH} levels deep: does `{process}` call itself without end?"
            ))
        } else {
            tx.execute_batch("SAVEPOINT child")?;
            let started = self.start(
                tx,
                process,
                version,
                None,
                business_key,
                variables,
                Some(link),
            );
            match started {
                Ok(_) => {
                    tx.execute_batch("RELEASE child")?;
                    None
                }
                Err(e @ (Error::Store(_) | Error::CommitFailed(_) | Error::Closed)) => {
                    return Err(e);
                }
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO child; RELEASE child")?;
                    Some(format!("could not start `{process}`: {e}"))
                }
            }
        };
        let cmd = match failed {
            Some(message) => Command::CallFailed { activity, message },
            None if waits => return Ok(()),
            None => Command::ChildStarted { activity },
        };
        ignore_gone(self.apply(tx, parent, cmd, None)).map(|_| ())
    }

    fn correlate(&mut self, tx: &Conn, msg: Message) -> Result<Correlation> {
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let ttl = msg.ttl.unwrap_or(self.message_ttl);
        let expires = now + ttl;
        if let Some(id) = &msg.message_id {
            if tx.seen_message(id, now_ms)? {
                return Ok(Correlation::Duplicate);
            }
            tx.remember_message(id, expires.timestamp_millis())?;
        }
        if let Some((instance, sub)) = tx.message_subscriber(&msg.name, msg.key.as_deref())? {
            let cmd = Command::Trigger {
                subscription: sub.into(),
                variables: msg.variables,
            };
            self.apply(tx, instance.clone(), cmd, None)?;
            return Ok(Correlation::Correlated { instance });
        }
        let starts = tx.start_events("message", &msg.name)?;
        if !starts.is_empty() {
            let mut started = Vec::new();
            let mut running = Vec::new();
            for s in starts {
                let p = self.process(tx, &s.process_id, Some(s.version))?;
                let Some(ev) = p.def.start.iter().find(|e| e.id == s.event_id) else {
                    continue;
                };
                let key = match &ev.key {
                    None => msg.key.clone(),
                    Some(k) => {
                        let v = runtime::eval::Evaluator::new(&p, &msg.variables)
                            .eval(&k.0)
                            .map_err(|e| {
                                Error::Runtime(runtime::Error::Variables(vec![format!(
                                    "the key of start event `{}` in `{}`: {e}",
                                    ev.id, s.process_id
                                )]))
                            })?;
                        match v {
                            Value::Null => None,
                            Value::String(s) => Some(s),
                            other => Some(other.to_string()),
                        }
                    }
                };
                if ev.unique
                    && let Some(k) = &key
                    && let Some(existing) = tx
                        .list_instances(&InstanceFilter {
                            process: Some(s.process_id.clone()),
                            status: Some("active".into()),
                            business_key: Some(k.clone()),
                            limit: 1,
                            ..InstanceFilter::default()
                        })?
                        .into_iter()
                        .next()
                {
                    running.push(existing.id);
                    continue;
                }
                let inst = self.start(
                    tx,
                    &s.process_id,
                    Some(s.version),
                    Some(&s.event_id),
                    key,
                    msg.variables.clone(),
                    None,
                )?;
                started.push(inst.id);
            }
            return Ok(if started.is_empty() {
                Correlation::AlreadyRunning { instances: running }
            } else {
                Correlation::Started { instances: started }
            });
        }
        if ttl <= chrono::Duration::zero() {
            return Ok(Correlation::Discarded);
        }
        let vars = serde_json::to_string(&msg.variables).map_err(store::Error::from)?;
        tx.buffer_message(
            &msg.name,
            msg.key.as_deref(),
            msg.message_id.as_deref(),
            &vars,
            expires.timestamp_millis(),
        )?;
        Ok(Correlation::Buffered { until: expires })
    }

    fn signal(&mut self, tx: &Conn, name: &str, variables: &Vars) -> Result<Signalled> {
        let mut out = Signalled::default();
        for (instance, sub) in tx.signal_subscribers(name)? {
            let cmd = Command::Trigger {
                subscription: sub.into(),
                variables: variables.clone(),
            };
            match self.apply(tx, instance, cmd, None) {
                Ok(_) => out.delivered += 1,
                // An earlier delivery of this broadcast withdrew it (an interrupting
                // boundary event on the same activity, say).
                Err(Error::Runtime(runtime::Error::UnknownSubscription(_))) => {}
                Err(e) => return Err(e),
            }
        }
        for s in tx.start_events("signal", name)? {
            let inst = self.start(
                tx,
                &s.process_id,
                Some(s.version),
                Some(&s.event_id),
                None,
                variables.clone(),
                None,
            )?;
            out.started.push(inst.id);
        }
        Ok(out)
    }

    /// Fires up to [`TIMER_BATCH`] due timers, each in its own savepoint: the timer's
    /// row goes in the same transaction as the step it triggers, so a timer fires
    /// once, and a failing one is dropped with an error logged in `failed`.
    fn fire_due(&mut self, tx: &Conn) -> Result<Fired> {
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let mut fired = Fired::default();
        let at = now.to_rfc3339();
        for (instance, sub) in tx.due_timers(now_ms, TIMER_BATCH)? {
            // The row goes in the same savepoint as the step it triggers: a step
            // that fails leaves the timer, parked with an incident an admin can
            // retry (which fires it again) instead of a token waiting forever.
            tx.execute_batch("SAVEPOINT timer")?;
            tx.delete_timer(&instance, sub)?;
            let cmd = Command::Trigger {
                subscription: sub.into(),
                variables: Vars::new(),
            };
            match self.apply(tx, instance.clone(), cmd, None) {
                Ok(_) => {
                    tx.execute_batch("RELEASE timer")?;
                    fired.fired += 1;
                }
                Err(e @ (Error::Store(_) | Error::CommitFailed(_))) => return Err(e),
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO timer; RELEASE timer")?;
                    let node = tx
                        .instance(&instance)?
                        .and_then(|i| i.subscriptions.into_iter().find(|s| s.id.0 == sub))
                        .map_or_else(|| "timer".to_owned(), |s| s.node);
                    let message = format!("the timer could not fire: {e}; retry fires it again");
                    tx.set_timer_failed(&instance, sub, true, now_ms)?;
                    tx.open_incident(&instance, sub, &node, &message, &at)?;
                    fired
                        .failed
                        .push(format!("timer {sub} of instance {instance}: {e}"));
                }
            }
        }
        let left = TIMER_BATCH.saturating_sub(u32::try_from(fired.fired).unwrap_or(0));
        for s in tx.due_start_timers(now_ms, left)? {
            let p = self.process(tx, &s.process_id, Some(s.version))?;
            let next = p
                .def
                .start
                .iter()
                .find(|e| e.id == s.event_id)
                .and_then(|e| e.timer.as_ref())
                .filter(|t| t.cycle.is_some())
                .and_then(|t| next_due(t, now, &p.def, &self.calendars, &|_| Ok(Value::Null)).ok());
            tx.set_start_due(
                &s.process_id,
                &s.event_id,
                next.map(|d| d.timestamp_millis()),
            )?;
            // Each start in a savepoint of its own: one that fails (the process
            // needs a variable a timer cannot give) is an incident for that
            // timer; the others fire, and the pass is not retried for ever.
            tx.execute_batch("SAVEPOINT start_timer")?;
            match self.start(
                tx,
                &s.process_id,
                Some(s.version),
                Some(&s.event_id),
                None,
                Vars::new(),
                None,
            ) {
                Ok(_) => {
                    tx.execute_batch("RELEASE start_timer")?;
                    fired.started += 1;
                }
                Err(e @ (Error::Store(_) | Error::CommitFailed(_))) => return Err(e),
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO start_timer; RELEASE start_timer")?;
                    let message = format!(
                        "timer start `{}` of process `{}` could not start an instance: {e}",
                        s.event_id, s.process_id
                    );
                    tx.open_incident(
                        &start_timer_incident(&s.process_id, &s.event_id),
                        0,
                        &s.event_id,
                        &message,
                        &at,
                    )?;
                    fired.failed.push(message);
                }
            }
        }
        tx.purge_expired(now_ms)?;
        Ok(fired)
    }

    fn acquire_jobs(
        &mut self,
        tx: &Conn,
        worker: &str,
        actions: &[String],
        max: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<JobRow>> {
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let until = (now + lease).timestamp_millis();
        let mut out = Vec::new();
        for action in actions {
            let left = max.saturating_sub(u32::try_from(out.len()).unwrap_or(u32::MAX));
            for mut job in tx.due_jobs(action, now_ms, left)? {
                if job.attempts > job.retries {
                    // Every attempt was made and the last lease ran out unanswered.
                    let message = format!(
                        "no worker answered within its lease, {} attempts made{}",
                        job.attempts,
                        job.last_error
                            .as_deref()
                            .map(|e| format!("; the last error: {e}"))
                            .unwrap_or_default()
                    );
                    self.give_up(tx, &job, message)?;
                    continue;
                }
                tx.lease_job(&job.instance_id, job.activity, worker, until)?;
                job.attempts += 1;
                job.locked_by = Some(worker.to_owned());
                out.push(job);
            }
        }
        Ok(out)
    }

    /// The job a worker reports on, checked to be held by that worker; removed.
    fn take_job(&self, tx: &Conn, instance: &str, activity: u64, worker: &str) -> Result<JobRow> {
        let job = self.leased_job(tx, instance, activity, worker)?;
        tx.delete_job(instance, activity)?;
        Ok(job)
    }

    fn leased_job(&self, tx: &Conn, instance: &str, activity: u64, worker: &str) -> Result<JobRow> {
        let conflict = |reason: String| Error::Conflict {
            instance: instance.to_owned(),
            reason,
        };
        let job = tx
            .job(instance, activity)?
            .ok_or_else(|| conflict(format!("job {activity} is no longer open")))?;
        if job.locked_by.as_deref() != Some(worker) {
            return Err(conflict(format!(
                "job {activity} is not leased to `{worker}` (its lease ran out and it was taken again?)"
            )));
        }
        Ok(job)
    }

    fn fail_job(
        &mut self,
        tx: &Conn,
        instance: &str,
        activity: u64,
        worker: &str,
        error: &str,
    ) -> Result<JobOutcome> {
        let job = self.leased_job(tx, instance, activity, worker)?;
        if job.attempts <= job.retries {
            let factor = 1u64 << job.attempts.saturating_sub(1).min(30);
            let delay = job.backoff_ms.saturating_mul(factor).min(MAX_BACKOFF_MS);
            let at = self.clock.now()
                + chrono::Duration::milliseconds(i64::try_from(delay).unwrap_or(0));
            tx.retry_job_at(instance, activity, at.timestamp_millis(), error)?;
            return Ok(JobOutcome::Retrying {
                at,
                attempts: job.attempts,
            });
        }
        let attempts = job.attempts;
        self.give_up(tx, &job, error.to_owned())?;
        Ok(JobOutcome::Incident { attempts })
    }

    /// A job's attempts are spent: an incident holds the error and the count.
    fn give_up(&mut self, tx: &Conn, job: &JobRow, message: String) -> Result<()> {
        tx.delete_job(&job.instance_id, job.activity)?;
        let cmd = Command::FailJob {
            activity: job.activity.into(),
            message,
        };
        self.apply(tx, job.instance_id.clone(), cmd, None)?;
        tx.set_incident_attempts(&job.instance_id, job.activity, job.attempts)?;
        Ok(())
    }

    /// Records the start events of a process's newly deployed latest version.
    fn index_start_events(&self, tx: &Conn, p: &Process, version: u32) -> Result<()> {
        let now = self.clock.now();
        let mut rows = Vec::new();
        for e in &p.def.start {
            if let Some(m) = &e.message {
                rows.push((e.id.clone(), "message", Some(m.clone()), None));
            } else if let Some(sig) = &e.signal {
                rows.push((e.id.clone(), "signal", Some(sig.clone()), None));
            } else if let Some(t) = &e.timer {
                let due = next_due(t, now, &p.def, &self.calendars, &|_| Ok(Value::Null)).map_err(
                    |m| {
                        Error::Runtime(runtime::Error::Variables(vec![format!(
                            "timer start `{}`: {m}",
                            e.id
                        )]))
                    },
                )?;
                rows.push((e.id.clone(), "timer", None, Some(due.timestamp_millis())));
            }
        }
        tx.set_start_events(&p.def.id, version, &rows)?;
        let declared: Vec<&str> = p.def.messages.keys().map(String::as_str).collect();
        tx.set_message_decls(&p.def.id, version, &declared)?;
        Ok(())
    }

    fn deploy(&mut self, tx: &Conn, name: &str, source: &str) -> Result<Deployed> {
        let loaded = model::load(name, source, &self.options());
        let process = match loaded.process {
            Some(p) if !loaded.diagnostics.iter().any(Diagnostic::is_error) => p,
            _ => return Err(Error::Invalid(loaded.diagnostics)),
        };
        let id = process.def.id.clone();
        let latest = tx.latest_definition(&id)?;
        if let Some((v, s)) = &latest
            && s == source
        {
            return Ok(Deployed {
                process: id,
                version: *v,
                created: false,
                warnings: loaded.diagnostics,
            });
        }
        let version = latest.map_or(1, |(v, _)| v + 1);
        tx.insert_definition(&id, version, source, &self.clock.now().to_rfc3339())?;
        self.index_start_events(tx, &process, version)?;
        self.processes.insert(&id, version, Arc::new(process));
        self.latest.insert(id.clone(), version);
        Ok(Deployed {
            process: id,
            version,
            created: true,
            warnings: loaded.diagnostics,
        })
    }

    fn change_task(
        &mut self,
        tx: &Conn,
        instance: &str,
        activity: u64,
        change: TaskChange,
    ) -> Result<TaskRow> {
        let conflict = |reason: String| Error::Conflict {
            instance: instance.to_owned(),
            reason,
        };
        let Some(task) = tx.open_task(instance, activity)? else {
            return Err(match tx.task_state(instance, activity)? {
                Some(s) => conflict(format!("task {activity} is already {s}")),
                None => Error::Runtime(runtime::Error::UnknownActivity(activity.into())),
            });
        };
        let excluded = tx.task_candidates(instance, activity)?.excluded;
        let refuse = |who: &str| {
            Error::NotAllowed(format!(
                "task {activity} of instance {instance} excludes {who} (the four-eyes rule: \
                 whoever requested or already approved it may not hold it)"
            ))
        };
        let (assignee, event, actor) = match &change {
            TaskChange::Claim { user } => {
                if excluded.contains(user) {
                    return Err(refuse(user));
                }
                if let Some(a) = &task.assignee {
                    return Err(conflict(format!(
                        "task {activity} is already claimed by {a}"
                    )));
                }
                (Some(user.as_str()), "claimed", user.as_str())
            }
            TaskChange::Unclaim { user } => {
                if task.assignee.as_deref() != Some(user.as_str()) {
                    return Err(conflict(format!("task {activity} is not held by {user}")));
                }
                (None, "unclaimed", user.as_str())
            }
            TaskChange::Delegate { by, to } => {
                if excluded.contains(to) {
                    return Err(refuse(to));
                }
                (Some(to.as_str()), "delegated", by.as_str())
            }
        };
        let now = self.clock.now().to_rfc3339();
        tx.assign_task(
            instance,
            activity,
            assignee,
            store::TaskEvent {
                node: &task.node,
                event,
                actor,
                at: &now,
            },
        )?;
        Ok(TaskRow {
            assignee: assignee.map(str::to_owned),
            ..task
        })
    }

    /// Validation knows the engine's calendars and roles.
    fn options(&self) -> Options {
        Options {
            calendars: self.calendars.names(),
            roles: self.roles.clone(),
            ..Options::default()
        }
    }

    fn latest_version(&mut self, tx: &Conn, id: &str) -> Result<u32> {
        if let Some(v) = self.latest.get(id) {
            return Ok(*v);
        }
        let v = tx
            .latest_definition(id)?
            .ok_or_else(|| Error::UnknownProcess(id.to_owned()))?
            .0;
        self.latest.insert(id.to_owned(), v);
        Ok(v)
    }

    fn process(&mut self, tx: &Conn, id: &str, version: Option<u32>) -> Result<Arc<Process>> {
        let version = match version {
            Some(v) => v,
            None => self.latest_version(tx, id)?,
        };
        self.processes.load(tx, &self.options(), id, Some(version))
    }
}
