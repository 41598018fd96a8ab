//! An instance's state, and what a step asks the outside world to do (actions).
//! Both are plain data (serde), so the store can keep them and tests can compare them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Variables: a JSON object.
pub type Vars = Map<String, Value>;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Has tokens that run or wait.
    Active,
    /// Every path reached an end.
    Completed,
    /// A terminate end event ended it.
    Terminated,
    /// Cancelled from outside.
    Cancelled,
}

impl InstanceStatus {
    /// The status as the API and the store write it (`completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "active",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Terminated => "terminated",
            InstanceStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lifecycle of an activity instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Entered, not started.
    Ready,
    /// Working or waiting.
    Active,
    /// Finishing (outputs being written).
    Completing,
    /// Done.
    Completed,
    /// Being cancelled.
    Aborting,
    /// Cancelled (terminate, an admin, an interrupting event).
    Aborted,
    /// Failed: an incident holds it.
    Faulted,
}

/// Ids within one instance, each a type of its own so one cannot be passed
/// for another. Each is stored as the number it wraps (states saved before the
/// types existed read the same), and all come from the instance's one sequence
/// (`next_id`).
macro_rules! instance_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                $name(v)
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }
    };
}

instance_id!(
    /// A scope instance: the root, a subprocess or loop body, a multi-instance
    /// run, an event subprocess run, a compensation handler's scope.
    ScopeId
);

impl ScopeId {
    /// The instance's own scope: its process variables.
    pub const ROOT: ScopeId = ScopeId(0);
}

instance_id!(
    /// A token.
    TokenId
);

impl TokenId {
    /// No token: what an event subprocess's subscription belongs to (its
    /// scope, not a token).
    pub const NONE: TokenId = TokenId(0);
}

instance_id!(
    /// An activity instance: one entering of a node (a task, a job, a
    /// multi-instance activity, one of its runs, a gateway passing, an event).
    /// Tasks, jobs, incidents and history are keyed by it.
    ActivityInstanceId
);

impl ActivityInstanceId {
    /// The start event that began the instance: its first activity instance
    /// (the sequence then goes on from 2; the first token is 1).
    pub const START: ActivityInstanceId = ActivityInstanceId(0);
}

instance_id!(
    /// A subscription: what a waiting event, receive task, event-gateway branch,
    /// boundary event or event subprocess listens for.
    SubscriptionId
);

/// A scope's variables: the root ([`ScopeId::ROOT`]) or a subprocess / loop body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// The container node (None for the root).
    pub node: Option<String>,
    /// The enclosing scope.
    pub parent: Option<ScopeId>,
    /// Variables declared here.
    pub vars: Vars,
    /// For one run of a multi-instance activity: its position among the items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<usize>,
    /// Activities of this scope that completed and have a compensation handler,
    /// in order of completion (BPML compensate undoes them in reverse).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<Compensable>,
    /// Complex gateways of this scope that fired and wait for their other
    /// branches (`rest: wait`): by gateway, the incoming flows (the node each
    /// comes from) still to be absorbed before the next round.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, Vec<String>>,
}

impl Scope {
    /// A scope for a container node (or the root when `node` is `None`).
    pub fn new(node: Option<String>, parent: Option<ScopeId>, vars: Vars) -> Self {
        Scope {
            node,
            parent,
            vars,
            run: None,
            done: Vec::new(),
            gates: BTreeMap::new(),
        }
    }
}

/// A completed activity that a compensation throw can undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compensable {
    /// The activity's node.
    pub node: String,
    /// Its compensation handler's node.
    pub handler: String,
    /// When it completed, as a position in the instance's id sequence.
    pub seq: u64,
    /// The data of the activity's scopes as each was when it completed (its
    /// multi-instance run's, then each enclosing subprocess's; the innermost
    /// value of a name wins), given to the handler.
    #[serde(default, skip_serializing_if = "Vars::is_empty")]
    pub vars: Vars,
}

/// The instance that called (or spawned) this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The calling instance.
    pub instance: String,
    /// The call (or spawn) activity instance in it.
    pub activity: ActivityInstanceId,
    /// The top of the tree.
    pub root: String,
    /// How deep in the tree this instance is (the root's children are 1).
    pub depth: u32,
    /// The caller waits for this instance to end (call), or not (spawn).
    pub waits: bool,
}

/// What a waiting token waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Wait {
    /// A user task to be completed.
    Task,
    /// A job (service call) to be completed.
    Job,
    /// An event: a message, timer or signal (a catch event, a receive task or an
    /// event-based gateway). Its subscriptions are in [`Instance::subscriptions`].
    Event,
    /// A called instance to end (or, for a spawn, to start).
    Call,
    /// The runs of a multi-instance activity to finish.
    Multi {
        /// The run scopes still open.
        runs: Vec<ScopeId>,
        /// The items, one per run.
        items: Vec<Value>,
        /// The next item to start (sequential runs).
        next: usize,
        /// Runs finished so far.
        completed: u32,
        /// What each finished run contributed, in item order.
        outputs: Vec<Value>,
        /// The runs left open when the activity completed early with `rest:
        /// wait`: they finish unobserved (no outputs, no flow onwards) and the
        /// scope around waits for them.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remainder: bool,
    },
    /// Compensation handlers to run, one after the other.
    Compensate {
        /// The running handler's scope.
        inner: ScopeId,
        /// The handlers still to run, next first.
        pending: Vec<Compensable>,
    },
    /// The inner scope of a subprocess or loop to finish.
    Scope {
        /// The inner scope's id.
        inner: ScopeId,
        /// Runs of a loop body so far.
        iterations: u32,
    },
}

/// The state of a token; each carries only what is valid in that state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TokenState {
    /// About to enter its node.
    Arriving,
    /// Inside a wait-state activity.
    Waiting {
        /// The activity instance.
        activity: ActivityInstanceId,
        /// What for.
        wait: Wait,
    },
    /// Parked at a joining gateway.
    Joining,
    /// Stopped by a failure that needs an admin.
    Incident {
        /// The failed activity instance.
        activity: ActivityInstanceId,
        /// What went wrong.
        message: String,
    },
}

/// A marker of where the instance is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Unique within the instance.
    pub id: TokenId,
    /// The node it is at.
    pub node: String,
    /// The scope it runs in.
    pub scope: ScopeId,
    /// The node it came from (which flow, for joins).
    pub from: Option<String>,
    /// Its state.
    #[serde(flatten)]
    pub state: TokenState,
}

/// One instance of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Its id.
    pub id: String,
    /// The process id.
    pub process: String,
    /// The process version it runs (kept when newer versions are deployed).
    pub process_version: u32,
    /// The business key, if any.
    pub business_key: Option<String>,
    /// Active, completed…
    pub status: InstanceStatus,
    /// Optimistic concurrency: bumped by every command that changes the instance.
    pub version: u64,
    /// Scopes by id; 0 is the root.
    pub scopes: BTreeMap<ScopeId, Scope>,
    /// Live tokens.
    pub tokens: Vec<Token>,
    /// The next id for tokens, activity instances and scopes.
    pub next_id: u64,
    /// The instance that called or spawned this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// What the instance waits for: messages, timers and signals of catch events,
    /// receive tasks, event-based gateways and boundary events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscription>,
    /// Critical sections held: by section name, the token whose activity is
    /// in it (see `critical` on a node).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sections: BTreeMap<String, TokenId>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
}

impl Token {
    /// Whether the token rests at its node: it waits there, or an incident
    /// holds it there (the instance is in that state either way). The runs a
    /// multi-instance activity left to finish (`rest: wait`) do not: that
    /// activity has completed. What a `milestone` asks of its node.
    pub fn rests(&self) -> bool {
        match &self.state {
            TokenState::Waiting {
                wait: Wait::Multi {
                    remainder: true, ..
                },
                ..
            } => false,
            TokenState::Waiting { .. } | TokenState::Incident { .. } => true,
            _ => false,
        }
    }
}

impl Instance {
    /// Whether a token of `scope` rests at `node` (see [`Token::rests`]).
    pub fn rests_at(&self, scope: ScopeId, node: &str) -> bool {
        self.tokens
            .iter()
            .any(|t| t.scope == scope && t.node == node && t.rests())
    }

    /// The variables visible from `scope`: the root's, overlaid by each inner scope's.
    pub fn visible_vars(&self, scope: ScopeId) -> Vars {
        let mut chain = Vec::new();
        let mut cur = Some(scope);
        while let Some(s) = cur {
            match self.scopes.get(&s) {
                Some(sc) => {
                    chain.push(s);
                    cur = sc.parent;
                }
                None => break,
            }
        }
        let mut out = Vars::new();
        for s in chain.into_iter().rev() {
            if let Some(sc) = self.scopes.get(&s) {
                for (k, v) in &sc.vars {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }

    /// The process variables (root scope).
    pub fn variables(&self) -> &Vars {
        static EMPTY: std::sync::OnceLock<Vars> = std::sync::OnceLock::new();
        self.scopes
            .get(&ScopeId::ROOT)
            .map_or_else(|| EMPTY.get_or_init(Vars::new), |s| &s.vars)
    }

    /// Ids of the nodes where tokens are.
    pub fn active_nodes(&self) -> Vec<&str> {
        self.tokens.iter().map(|t| t.node.as_str()).collect()
    }
}

/// What fires a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    /// A message of this name and correlation key.
    Message {
        /// The message name.
        name: String,
        /// The correlation key (None matches messages sent without a key).
        key: Option<String>,
    },
    /// A timer due at this instant.
    Timer {
        /// When it fires.
        due: DateTime<Utc>,
    },
    /// A broadcast signal of this name.
    Signal {
        /// The signal name.
        name: String,
    },
}

/// Where a subscription sits in the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum SubscriptionKind {
    /// The token waits at a catch event or receive task.
    Catch,
    /// One of an event-based gateway's events (`index` in its `events`).
    Gateway {
        /// Which event.
        index: usize,
    },
    /// A boundary event (`index` in the activity's `boundary`).
    Boundary {
        /// Which boundary event.
        index: usize,
    },
    /// An event subprocess's trigger, armed while the scope it sits in is open
    /// (the subscription's token is [`TokenId::NONE`]: it belongs to the scope).
    EventSubprocess {
        /// The scope.
        scope: ScopeId,
    },
}

/// One thing an instance waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Unique within the instance.
    pub id: SubscriptionId,
    /// The token it belongs to (for a boundary event, the activity's token).
    pub token: TokenId,
    /// The catch node, gateway or activity it belongs to.
    pub node: String,
    /// Where it sits.
    #[serde(flatten)]
    pub kind: SubscriptionKind,
    /// What fires it.
    pub trigger: Trigger,
}

/// One lifecycle transition of an activity instance, for history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The activity instance.
    pub activity: ActivityInstanceId,
    /// Its node.
    pub node: String,
    /// The state it entered.
    pub state: Lifecycle,
    /// When.
    pub at: DateTime<Utc>,
    /// Who caused it, when a person did.
    pub actor: Option<String>,
}

/// A user task to show in inboxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The activity instance (the task's id within the instance).
    pub activity: ActivityInstanceId,
    /// The node.
    pub node: String,
    /// Title.
    pub name: Option<String>,
    /// Assigned person.
    pub assignee: Option<String>,
    /// People who may claim it.
    pub candidate_users: Vec<String>,
    /// Groups whose members may claim it.
    pub candidate_groups: Vec<String>,
    /// People who may not hold or complete it (never the assignee nor a candidate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    /// Due date.
    pub due: Option<DateTime<Utc>>,
    /// 0–100.
    pub priority: i64,
}

/// A service call to make (by the job executor, or inline for database-only actions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The activity instance.
    pub activity: ActivityInstanceId,
    /// The node.
    pub node: String,
    /// The plugin action.
    pub action: String,
    /// Its parameters, evaluated.
    pub input: Value,
    /// Retries after the first attempt before an incident.
    pub retries: u32,
    /// The first retry's delay in milliseconds; each further retry doubles it.
    pub backoff_ms: u64,
}

/// What a step asks the outside world to do, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Record a lifecycle transition.
    History(HistoryEntry),
    /// Open a user task.
    CreateTask(TaskSpec),
    /// Close a user task (completed or aborted).
    CloseTask {
        /// The task's activity instance.
        activity: ActivityInstanceId,
        /// How it ended.
        state: Lifecycle,
    },
    /// Run a service call.
    RunJob(JobSpec),
    /// Withdraw a job that has not run.
    CancelJob {
        /// The job's activity instance.
        activity: ActivityInstanceId,
    },
    /// Open an incident.
    Incident {
        /// The failed activity instance.
        activity: ActivityInstanceId,
        /// The node.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// An incident is over (retried or resolved).
    CloseIncident {
        /// The activity instance it held.
        activity: ActivityInstanceId,
        /// `retried` or `resolved`.
        how: String,
        /// Who.
        actor: Option<String>,
    },
    /// Start waiting for a message, timer or signal.
    Subscribe(Subscription),
    /// Stop waiting for it.
    Unsubscribe(Subscription),
    /// Send a message (to other instances, or to start one).
    SendMessage {
        /// The message name.
        name: String,
        /// Its correlation key.
        key: Option<String>,
        /// Its variables.
        variables: Vars,
    },
    /// Broadcast a signal to every instance waiting for it.
    Broadcast {
        /// The signal name.
        name: String,
        /// Its variables.
        variables: Vars,
    },
    /// Start another process's instance as a child of this one (call, spawn).
    StartChild {
        /// The call or spawn activity instance.
        activity: ActivityInstanceId,
        /// The process to start.
        process: String,
        /// A pinned version (latest when `None`).
        version: Option<u32>,
        /// The child's business key.
        business_key: Option<String>,
        /// The child's variables.
        variables: Vars,
        /// Wait for it to end (call) or only for it to start (spawn).
        waits: bool,
    },
    /// Cancel the instances a call activity started (the activity was aborted).
    CancelChildren {
        /// The call activity instance.
        activity: ActivityInstanceId,
    },
    /// An error or escalation nothing in this instance caught goes on to the call
    /// activity that called it.
    RaiseInCaller {
        /// The code.
        code: String,
        /// An error (true) or an escalation.
        error: bool,
        /// Details.
        message: String,
    },
    /// The instance ended.
    Ended {
        /// How.
        status: InstanceStatus,
    },
}
