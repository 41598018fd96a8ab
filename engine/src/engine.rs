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

use crate::model::{self, Diagnostic, Options, Process};
use crate::runtime::{self, Action, Clock, Command, Instance, Machine, SystemClock, Vars};
use crate::store::{
    self, HistoryRow, InstanceFilter, InstanceRow, ReadDefinitions, ReadHistory, ReadInstances,
    ReadTasks, TaskRow, WriteDefinitions, WriteInstances, WriteTasks,
};
use rusqlite::{Connection, TransactionBehavior};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// Most validated definitions the writer keeps in memory.
pub const MAX_CACHED_DEFINITIONS: usize = 256;

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
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(store::Error::Sqlite(e))
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// A plugin action that only touches the database: it runs inside the transaction
/// of the step that calls it, so its writes and the step commit together.
pub trait InlineAction: Send + Sync {
    /// Runs the action. An `Err` becomes an incident on the service task.
    fn call(&self, tx: &Connection, input: &Value) -> std::result::Result<Value, String>;
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
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("db", &self.db)
            .field("sync", &self.sync)
            .field("max_batch", &self.max_batch)
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Config {
    /// Defaults: `synchronous=FULL`, batches of up to 512 commands, the system clock.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Config {
            db: db.into(),
            sync: store::Sync::Full,
            max_batch: 512,
            clock: Arc::new(SystemClock),
            actions: HashMap::new(),
        }
    }
}

/// A deployment's outcome.
#[derive(Debug, Clone, PartialEq)]
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
    fn run(self: Box<Self>, state: &mut State, tx: &Connection) -> (bool, Box<dyn Answer>);
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

impl<T, F> Request for Work<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut State, &Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, state: &mut State, tx: &Connection) -> (bool, Box<dyn Answer>) {
        let result = (self.work)(state, tx);
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
    tx: Mutex<Option<mpsc::Sender<Box<dyn Request>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    db: PathBuf,
    readers: Mutex<Vec<Connection>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("db", &self.db).finish()
    }
}

impl Engine {
    /// Opens (creating and migrating if needed) the database and starts the writer.
    pub fn open(config: Config) -> Result<Engine> {
        let conn = store::open_writer(&config.db, config.sync)?;
        let next_id: i64 = conn.query_row(
            "SELECT COALESCE(MAX(rowid), 0) + 1 FROM instances",
            [],
            |r| r.get(0),
        )?;
        let (tx, rx) = mpsc::channel::<Box<dyn Request>>();
        let db = config.db.clone();
        let clock = Arc::clone(&config.clock);
        let mut writer = Writer {
            conn,
            max_batch: config.max_batch.max(1),
            state: State {
                clock: config.clock,
                actions: config.actions,
                processes: HashMap::new(),
                latest: HashMap::new(),
                next_id: u64::try_from(next_id).unwrap_or(1),
            },
        };
        let handle = std::thread::Builder::new()
            .name("ordo-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| Error::CommitFailed(format!("cannot start the writer thread: {e}")))?;
        Ok(Engine {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            db,
            readers: Mutex::new(Vec::new()),
            clock,
        })
    }

    /// Runs `work` on the writer thread, inside a batch; answers after the commit.
    async fn send<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut State, &Connection) -> Result<T> + Send + 'static,
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

    /// Deploys a definition: a new version unless identical to the latest one.
    pub async fn deploy(&self, name: &str, source: &str) -> Result<Deployed> {
        let (name, source) = (name.to_owned(), source.to_owned());
        self.send(move |st, tx| st.deploy(tx, &name, &source)).await
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
        let process = process.to_owned();
        self.send(move |st, tx| st.start(tx, &process, version, business_key, variables))
            .await
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
            activity,
            variables,
            actor,
        };
        self.apply(instance, cmd, expected_version).await
    }

    /// Cancels an instance.
    pub async fn cancel(&self, instance: &str, actor: Option<String>) -> Result<Instance> {
        self.apply(instance, Command::Cancel { actor }, None).await
    }

    /// Applies any runtime command (completing jobs is how the job executor reports).
    pub async fn apply(
        &self,
        instance: &str,
        cmd: Command,
        expected_version: Option<u64>,
    ) -> Result<Instance> {
        let instance = instance.to_owned();
        self.send(move |st, tx| st.apply(tx, instance, cmd, expected_version))
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

    /// Open tasks past their due date.
    pub async fn overdue_tasks(&self, limit: u32) -> Result<Vec<TaskRow>> {
        let now = self.clock.now().to_rfc3339();
        self.read(move |c| c.overdue_tasks(&now, limit)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = {
            let mut pool = self.readers.lock().map_err(|_| Error::Closed)?;
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => store::open_reader(&self.db)?,
        };
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            (conn, out)
        })
        .await
        .map_err(|_| Error::Closed)?;
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(conn);
        }
        Ok(out?)
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

    /// Open unclaimed tasks of these groups.
    pub async fn group_tasks(&self, groups: Vec<String>, limit: u32) -> Result<Vec<TaskRow>> {
        self.read(move |c| c.group_tasks(&groups, limit)).await
    }

    /// Instances by process and status, paged.
    pub async fn list_instances(&self, filter: InstanceFilter) -> Result<Vec<InstanceRow>> {
        self.read(move |c| c.list_instances(&filter)).await
    }

    /// Stops the writer after it has committed everything sent before.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
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
    conn: Connection,
    max_batch: usize,
    state: State,
}

/// What the writer's commands change besides the database.
struct State {
    clock: Arc<dyn Clock>,
    actions: HashMap<String, Arc<dyn InlineAction>>,
    processes: HashMap<(String, u32), Arc<Process>>,
    /// Latest deployed version per process (the writer is the only deployer).
    latest: HashMap<String, u32>,
    next_id: u64,
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
        let outcome = (|| -> Result<()> {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            for req in pending.by_ref() {
                if let Err(e) = tx.execute_batch("SAVEPOINT cmd") {
                    req.fail(&e.to_string());
                    return Err(e.into());
                }
                let (ok, answer) = req.run(state, &tx);
                answers.push(answer);
                if !ok {
                    tx.execute_batch("ROLLBACK TO cmd")?;
                }
                tx.execute_batch("RELEASE cmd")?;
            }
            tx.commit()?;
            Ok(())
        })();
        match outcome {
            Ok(()) => answers.into_iter().for_each(|a| a.send(None)),
            Err(e) => {
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

impl State {
    fn start(
        &mut self,
        tx: &Connection,
        process: &str,
        version: Option<u32>,
        business_key: Option<String>,
        variables: Vars,
    ) -> Result<Instance> {
        let version = match version {
            Some(v) => v,
            None => self.latest_version(tx, process)?,
        };
        let p = self.process(tx, process, Some(version))?;
        let machine = Machine::new(&p)?;
        let id = self.next_id.to_string();
        self.next_id += 1;
        let clock = Arc::clone(&self.clock);
        let (inst, actions) =
            machine.start(id, version, business_key, variables, clock.as_ref())?;
        let (inst, actions) = self.run_inline(tx, &machine, inst, actions)?;
        tx.save_instance(&inst, None)?;
        tx.record(&inst, &actions, &self.clock.now().to_rfc3339())?;
        Ok(inst)
    }

    fn apply(
        &mut self,
        tx: &Connection,
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
        let machine = Machine::new(&p)?;
        let task = match &cmd {
            Command::CompleteTask { activity, .. } => Some(*activity),
            _ => None,
        };
        let (next, actions) = match machine.apply(&inst, cmd, self.clock.as_ref()) {
            Ok(r) => r,
            Err(runtime::Error::UnknownActivity(a)) if task.is_some() => {
                let state = tx.task_state(&instance, a)?;
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
        let (next, actions) = self.run_inline(tx, &machine, next, actions)?;
        if !tx.save_instance(&next, Some(inst.version))? {
            return Err(Error::Conflict {
                instance,
                reason: "it was changed by another command".into(),
            });
        }
        tx.record(&next, &actions, &self.clock.now().to_rfc3339())?;
        Ok(next)
    }

    /// Runs inline actions inside this transaction and feeds their results back,
    /// until the instance waits on something outside.
    fn run_inline(
        &self,
        tx: &Connection,
        machine: &Machine,
        mut inst: Instance,
        mut actions: Vec<Action>,
    ) -> Result<(Instance, Vec<Action>)> {
        let mut i = 0;
        while i < actions.len() {
            let Action::RunJob(job) = &actions[i] else {
                i += 1;
                continue;
            };
            let Some(handler) = self.actions.get(&job.action) else {
                i += 1;
                continue;
            };
            let cmd = match handler.call(tx, &job.input) {
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
            let (next, more) = machine.apply(&inst, cmd, self.clock.as_ref())?;
            inst = next;
            actions.extend(more);
        }
        Ok((inst, actions))
    }

    fn deploy(&mut self, tx: &Connection, name: &str, source: &str) -> Result<Deployed> {
        let loaded = model::load(name, source, &Options::default());
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
        self.processes
            .insert((id.clone(), version), Arc::new(process));
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
        tx: &Connection,
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
                None => Error::Runtime(runtime::Error::UnknownActivity(activity)),
            });
        };
        let (assignee, event, actor) = match &change {
            TaskChange::Claim { user } => {
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
            TaskChange::Delegate { by, to } => (Some(to.as_str()), "delegated", by.as_str()),
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

    fn latest_version(&mut self, tx: &Connection, id: &str) -> Result<u32> {
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

    fn process(&mut self, tx: &Connection, id: &str, version: Option<u32>) -> Result<Arc<Process>> {
        let version = match version {
            Some(v) => v,
            None => {
                tx.latest_definition(id)?
                    .ok_or_else(|| Error::UnknownProcess(id.to_owned()))?
                    .0
            }
        };
        if let Some(p) = self.processes.get(&(id.to_owned(), version)) {
            return Ok(Arc::clone(p));
        }
        if self.processes.len() >= MAX_CACHED_DEFINITIONS {
            // A bound, not an LRU: definitions are few, and reloading one is cheap.
            self.processes.clear();
        }
        let source = tx
            .definition(id, version)?
            .ok_or_else(|| Error::UnknownProcess(format!("{id} v{version}")))?;
        let loaded = model::load(id, &source, &Options::default());
        let p = Arc::new(loaded.process.ok_or(Error::Invalid(loaded.diagnostics))?);
        self.processes
            .insert((id.to_owned(), version), Arc::clone(&p));
        Ok(p)
    }
}
