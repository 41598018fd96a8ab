//! The REST API under `/api`: JSON in and out, a bearer token on every request,
//! and a role (and, for tasks, ownership) check on every route.

use crate::AppState;
use crate::auth::{Identity, Role};
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ordo_engine::engine::{Correlation, Message, TaskChange};
use ordo_engine::runtime::Vars;
use ordo_engine::store::{
    Candidates, DefinitionRow, HistoryRow, IncidentRow, InstanceFilter, InstanceRow, TaskRow,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, ApiError>;

/// The API routes, each with the roles that may call it.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/definitions", post(deploy).get(definitions))
        .route("/definitions/{id}", get(definition))
        .route("/definitions/{id}/diagram", get(diagram))
        .route("/instances", post(start).get(instances))
        .route("/instances/{id}", get(instance))
        .route("/instances/{id}/cancel", post(cancel))
        .route("/instances/{id}/activities/{activity}/runs", post(add_runs))
        .route("/messages", post(message))
        .route("/signals", post(signal))
        .route("/tasks", get(tasks))
        .route("/tasks/{instance}/{activity}", get(task))
        .route("/tasks/{instance}/{activity}/claim", post(claim))
        .route("/tasks/{instance}/{activity}/unclaim", post(unclaim))
        .route("/tasks/{instance}/{activity}/delegate", post(delegate))
        .route("/tasks/{instance}/{activity}/complete", post(complete))
        .route("/incidents", get(incidents))
        .route("/incidents/{instance}/{activity}/retry", post(retry))
        .route("/incidents/{instance}/{activity}/resolve", post(resolve))
        .route("/backup", post(backup))
        .route("/openapi.json", get(openapi))
}

/// Who may start a process that declares no `starters`, by API or page.
pub(crate) const DEFAULT_STARTERS: &[Role] = &[Role::Admin, Role::Designer];
pub(crate) use crate::access::{STAFF, WATCHERS};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl Caller {
    /// Refuses the request unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<()> {
        if self.0.has_any(roles) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        Err(ApiError::Forbidden(format!(
            "this needs one of the roles {}; `{}` has {}",
            names.join(", "),
            self.0.user,
            if self.0.roles.is_empty() {
                "none".to_owned()
            } else {
                self.0
                    .roles
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthenticated)?
            .to_owned();
        let dir = std::sync::Arc::clone(&state.directory);
        let who = tokio::task::spawn_blocking(move || dir.identify(&token))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        who.map(Caller).ok_or(ApiError::Unauthenticated)
    }
}

/// JSON whose rejections (malformed, wrong type, unknown field) are API errors
/// with a clear message.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest(
                "send the body as JSON, with `Content-Type: application/json`".into(),
            )),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

// Definitions.

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeployQuery {
    /// The file name shown in diagnostics.
    name: Option<String>,
}

async fn deploy(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<DeployQuery>,
    body: String,
) -> Result<Response> {
    caller.require(&[Role::Designer, Role::Admin])?;
    let name = q.name.unwrap_or_else(|| "definition.yaml".into());
    let d = st.engine.deploy(&name, &body).await?;
    Ok(created(d))
}

async fn definitions(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DefinitionRow>>> {
    caller.require(&[Role::Designer, Role::Admin, Role::Supervisor])?;
    Ok(Json(st.engine.definitions(None).await?))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    /// A version; the latest when absent.
    version: Option<u32>,
}

/// A process's source and versions.
#[derive(Debug, Serialize, JsonSchema)]
struct DefinitionSource {
    /// The process id.
    process: String,
    /// The version shown.
    version: u32,
    /// Every deployed version, oldest first.
    versions: Vec<u32>,
    /// Its YAML.
    source: String,
}

async fn definition(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<DefinitionSource>> {
    caller.require(&[Role::Designer, Role::Admin, Role::Supervisor])?;
    let (version, source) = st.engine.definition(&id, q.version).await?;
    let versions: Vec<u32> = st
        .engine
        .definitions(Some(&id))
        .await?
        .into_iter()
        .map(|d| d.version)
        .collect();
    Ok(Json(DefinitionSource {
        process: id,
        version,
        versions,
        source,
    }))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiagramQuery {
    /// A version; the latest when absent.
    version: Option<u32>,
    /// `mermaid` (default) or `dot`.
    format: Option<String>,
}

/// The process drawn from its graph: a Mermaid flowchart or Graphviz dot.
async fn diagram(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DiagramQuery>,
) -> Result<Response> {
    caller.require(&[Role::Designer, Role::Admin, Role::Supervisor])?;
    let process = st.engine.process(&id, q.version).await?;
    let (text, content_type) = match q.format.as_deref().unwrap_or("mermaid") {
        "mermaid" => (
            process.graph.to_mermaid(),
            "text/vnd.mermaid; charset=utf-8",
        ),
        "dot" => (process.graph.to_dot(), "text/vnd.graphviz; charset=utf-8"),
        other => {
            return Err(ApiError::BadRequest(format!(
                "`format={other}` is not a diagram format; use mermaid or dot"
            )));
        }
    };
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response())
}

// Instances.

/// Refuses the start unless the process admits the caller: admins always; then
/// its `starters` (roles, groups, people); a process without `starters` only
/// admins and designers. The latest version decides, and a pinned older version
/// must admit the caller too, so narrowing `starters` in a new version closes
/// the old ones. Someone who may start nothing of that name learns nothing of
/// what is deployed (403 whether or not it exists); someone the latest version
/// admits gets a 404 for a version that does not exist.
pub(crate) async fn may_start(
    st: &AppState,
    caller: &Caller,
    process: &str,
    version: Option<u32>,
) -> Result<()> {
    let me = &caller.0;
    if me.has_any(&[Role::Admin]) {
        return Ok(());
    }
    let refused = || {
        ApiError::Forbidden(format!(
            "`{}` may not start process `{process}`: its `starters` do not name them, \
             their roles or their groups",
            me.user
        ))
    };
    let admits = |p: &ordo_engine::model::Process| match &p.def.starters {
        Some(s) => {
            let roles: Vec<&str> = me.roles.iter().map(|r| r.name()).collect();
            s.admits(&me.user, &roles, &me.groups)
        }
        None => me.has_any(DEFAULT_STARTERS),
    };
    let latest = match st.engine.process(process, None).await {
        Ok(p) => p,
        Err(ordo_engine::engine::Error::UnknownProcess(_)) if !me.has_any(DEFAULT_STARTERS) => {
            return Err(refused());
        }
        Err(e) => return Err(e.into()),
    };
    if !admits(&latest) {
        return Err(refused());
    }
    if let Some(v) = version
        && !admits(&*st.engine.process(process, Some(v)).await?)
    {
        return Err(refused());
    }
    Ok(())
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    /// The process id.
    process: String,
    /// A version; the latest when absent.
    version: Option<u32>,
    /// The instance's business key.
    business_key: Option<String>,
    /// Its variables.
    #[serde(default)]
    variables: Vars,
}

/// An instance just started.
#[derive(Debug, Serialize, JsonSchema)]
struct Started {
    /// Its id.
    id: String,
    /// The process id.
    process: String,
    /// The process version.
    version: u32,
    /// Its business key.
    business_key: Option<String>,
    /// `active`, or already `completed`…
    status: ordo_engine::runtime::InstanceStatus,
    /// The nodes where it waits.
    active_nodes: Vec<String>,
}

fn active_nodes(inst: &ordo_engine::runtime::Instance) -> Vec<String> {
    inst.active_nodes().into_iter().map(str::to_owned).collect()
}

/// An activity instance that waits, as an integrator addresses it.
#[derive(Debug, Serialize, JsonSchema)]
struct WaitingActivity {
    /// The activity instance (what task, incident and run routes take).
    activity: u64,
    /// Its node.
    node: String,
    /// What it waits for: `task`, `job`, `event`, `call`, `runs` (a
    /// multi-instance activity), `leftover_runs` (runs a `rest: wait` activity
    /// left to finish), `scope` (a subprocess or loop body) or `compensation`.
    waits_for: &'static str,
    /// Runs still open, for `runs` and `leftover_runs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    open_runs: Option<usize>,
    /// Runs not started yet (sequential runs wait their turn), for `runs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_runs: Option<usize>,
}

/// A node where a token waits before its activity may start.
#[derive(Debug, Serialize, JsonSchema)]
struct Held {
    /// The node.
    node: String,
    /// Why it waits: `milestone` (for the node its `milestone` names to be
    /// reached), `critical_section` (for another activity to leave the
    /// section), or `join` (for the other branches of a gateway).
    waits_for: &'static str,
    /// The milestone's node or the section's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    on: Option<String>,
}

fn waiting_activities(inst: &ordo_engine::runtime::Instance) -> Vec<WaitingActivity> {
    use ordo_engine::runtime::{TokenState, Wait};
    let mut v: Vec<WaitingActivity> = inst
        .tokens
        .iter()
        .filter_map(|t| match &t.state {
            TokenState::Waiting { activity, wait } => {
                let (waits_for, open_runs, pending_runs) = match wait {
                    Wait::Task => ("task", None, None),
                    Wait::Job => ("job", None, None),
                    Wait::Event => ("event", None, None),
                    Wait::Call => ("call", None, None),
                    Wait::Multi {
                        runs,
                        remainder: true,
                        ..
                    } => ("leftover_runs", Some(runs.len()), None),
                    Wait::Multi {
                        runs, items, next, ..
                    } => (
                        "runs",
                        Some(runs.len()),
                        Some(items.len().saturating_sub(*next)),
                    ),
                    Wait::Scope { .. } => ("scope", None, None),
                    Wait::Compensate { .. } => ("compensation", None, None),
                };
                Some(WaitingActivity {
                    activity: activity.0,
                    node: t.node.clone(),
                    waits_for,
                    open_runs,
                    pending_runs,
                })
            }
            _ => None,
        })
        .collect();
    v.sort_by_key(|w| w.activity);
    v
}

/// Tokens that wait at a node before its activity starts, and why.
async fn held_tokens(st: &AppState, inst: &ordo_engine::runtime::Instance) -> Vec<Held> {
    use ordo_engine::runtime::TokenState;
    let joining: Vec<(&str, ordo_engine::runtime::ScopeId)> = inst
        .tokens
        .iter()
        .filter(|t| t.state == TokenState::Joining)
        .map(|t| (t.node.as_str(), t.scope))
        .collect();
    if joining.is_empty() {
        return Vec::new();
    }
    let process = st
        .engine
        .process(&inst.process, Some(inst.process_version))
        .await
        .ok();
    let mut v: Vec<Held> = joining
        .into_iter()
        .map(|(node, scope)| {
            let n = process.as_ref().and_then(|p| p.node(node));
            let (waits_for, on) = match n {
                Some(n) if n.milestone().is_some_and(|(m, _)| !inst.rests_at(scope, m)) => {
                    ("milestone", n.milestone().map(|(m, _)| m.to_owned()))
                }
                Some(n) if n.critical().is_some() => {
                    ("critical_section", n.critical().map(str::to_owned))
                }
                _ => ("join", None),
            };
            Held {
                node: node.to_owned(),
                waits_for,
                on,
            }
        })
        .collect();
    v.sort_by(|a, b| a.node.cmp(&b.node));
    v
}

async fn start(
    State(st): State<AppState>,
    caller: Caller,
    Body(r): Body<StartRequest>,
) -> Result<Response> {
    may_start(&st, &caller, &r.process, r.version).await?;
    let inst = st
        .engine
        .start(&r.process, r.version, r.business_key, r.variables)
        .await?;
    Ok(created(Started {
        active_nodes: active_nodes(&inst),
        id: inst.id,
        process: inst.process,
        version: inst.process_version,
        business_key: inst.business_key,
        status: inst.status,
    }))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InstanceQuery {
    /// Only this process.
    process: Option<String>,
    /// Only this status: `active`, `completed`, `terminated`, `cancelled`.
    status: Option<String>,
    /// Only this business key.
    business_key: Option<String>,
    /// Rows to skip.
    #[serde(default)]
    offset: u32,
    /// Most rows (default 50, at most 500).
    limit: Option<u32>,
}

async fn instances(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<InstanceQuery>,
) -> Result<Json<Vec<InstanceRow>>> {
    caller.require(WATCHERS)?;
    let among = watch_scope(&st, &caller).await?;
    let filter = InstanceFilter {
        among,
        process: q.process,
        status: q.status,
        business_key: q.business_key,
        offset: q.offset,
        limit: q.limit.unwrap_or(50).min(500),
    };
    Ok(Json(st.engine.list_instances(filter).await?))
}

/// An instance with its variables, history and tree.
#[derive(Debug, Serialize, JsonSchema)]
struct InstanceDetails {
    /// Its id.
    id: String,
    /// The process id.
    process: String,
    /// The process version.
    version: u32,
    /// Its business key.
    business_key: Option<String>,
    /// Where it is in its life.
    status: ordo_engine::runtime::InstanceStatus,
    /// When it started.
    started_at: chrono::DateTime<chrono::Utc>,
    /// When it ended.
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The nodes where it waits.
    active_nodes: Vec<String>,
    /// The activity instances that wait, oldest first.
    waiting: Vec<WaitingActivity>,
    /// Tokens waiting at a node before its activity may start (a milestone
    /// not reached, a critical section held, a join's other branches).
    held: Vec<Held>,
    /// The process variables.
    variables: Vars,
    /// What happened, oldest first.
    history: Vec<HistoryRow>,
    /// The top of its tree (itself when it has no parent).
    root: String,
    /// The instance that called or spawned it.
    parent: Option<String>,
    /// The instances it called or spawned, oldest first.
    children: Vec<InstanceRow>,
}

async fn instance(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<InstanceDetails>> {
    caller.require(crate::access::INSTANCE_READERS)?;
    // An integrator (who watches no one) reads the instances of the processes
    // it may start, and only what it needs to address their activities: not
    // their variables, history or tree.
    let integrator_only = !caller.0.has_any(WATCHERS);
    if integrator_only {
        integrator_instance(&st, &caller, &id).await?;
    } else if !caller.0.has_any(&[Role::Admin]) {
        visible_instance(&st, &caller, &id).await?;
    }
    let inst = st.engine.instance(&id).await?;
    let (history, root, parent, children) = if integrator_only {
        (Vec::new(), inst.id.clone(), None, Vec::new())
    } else {
        let tree = st.engine.tree(&id).await?;
        (
            st.engine.history(&id).await?,
            tree.root,
            tree.parent,
            tree.children,
        )
    };
    Ok(Json(InstanceDetails {
        active_nodes: active_nodes(&inst),
        waiting: waiting_activities(&inst),
        held: held_tokens(&st, &inst).await,
        variables: if integrator_only {
            Vars::new()
        } else {
            inst.variables().clone()
        },
        id: inst.id,
        process: inst.process,
        version: inst.process_version,
        business_key: inst.business_key,
        status: inst.status,
        started_at: inst.started_at,
        ended_at: inst.ended_at,
        history,
        root,
        parent,
        children,
    }))
}

/// An instance's status after a cancel.
#[derive(Debug, Serialize, JsonSchema)]
struct Cancelled {
    /// The instance.
    id: String,
    /// Its status now.
    status: ordo_engine::runtime::InstanceStatus,
}

async fn cancel(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Cancelled>> {
    caller.require(&[Role::Admin])?;
    let inst = st.engine.cancel(&id, Some(caller.0.user.clone())).await?;
    Ok(Json(Cancelled {
        id: inst.id,
        status: inst.status,
    }))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunsRequest {
    /// One item per run to add; each run sees its item under the activity's
    /// `as` name (`item` by default).
    items: Vec<serde_json::Value>,
}

/// The instance after runs were added to a multi-instance activity.
#[derive(Debug, Serialize, JsonSchema)]
struct RunsAdded {
    /// The instance.
    instance: String,
    /// How many runs were added.
    added: usize,
    /// Its status now.
    status: ordo_engine::runtime::InstanceStatus,
}

async fn add_runs(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, activity)): Path<(String, u64)>,
    Body(r): Body<RunsRequest>,
) -> Result<Json<RunsAdded>> {
    caller.require(crate::access::INTEGRATORS)?;
    if !caller.0.has_any(&[Role::Admin]) {
        integrator_instance(&st, &caller, &id).await?;
    }
    if r.items.is_empty() {
        return Err(ApiError::Unprocessable(
            "`items` is empty: give one item per run to add, such as `{\"items\": [\"bob\"]}`"
                .to_owned(),
        ));
    }
    let added = r.items.len();
    let inst = st.engine.add_runs(&id, activity, r.items).await?;
    Ok(Json(RunsAdded {
        instance: inst.id,
        added,
        status: inst.status,
    }))
}

// Messages and signals.

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    /// The message name.
    name: String,
    /// Its correlation key.
    correlation_key: Option<String>,
    /// An id: a repeat within the TTL changes nothing.
    message_id: Option<String>,
    /// Its variables.
    #[serde(default)]
    variables: Vars,
    /// Seconds to wait for a subscriber (the engine's default when absent).
    ttl: Option<u32>,
}

/// What became of a message, by `result`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
enum MessageResult {
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
    /// Every matching start is `unique` and an instance with this key runs.
    AlreadyRunning {
        /// The running instances.
        instances: Vec<String>,
    },
    /// Nothing waited for it: kept for the first instance that subscribes.
    Buffered {
        /// Until when.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// Its id was seen within its TTL: nothing changed.
    Duplicate,
    /// Nothing waited for it and its TTL is zero.
    Discarded,
}

async fn message(
    State(st): State<AppState>,
    caller: Caller,
    Body(r): Body<MessageRequest>,
) -> Result<Json<MessageResult>> {
    caller.require(&[Role::Integrator, Role::Admin])?;
    let m = Message {
        name: r.name,
        key: r.correlation_key,
        message_id: r.message_id,
        variables: r.variables,
        ttl: r.ttl.map(|s| chrono::Duration::seconds(i64::from(s))),
    };
    let out = st.engine.correlate(m).await?;
    let body = match out {
        Correlation::Correlated { instance } => MessageResult::Correlated { instance },
        Correlation::Started { instances } => MessageResult::Started { instances },
        Correlation::AlreadyRunning { instances } => MessageResult::AlreadyRunning { instances },
        Correlation::Buffered { until } => MessageResult::Buffered { until },
        Correlation::Duplicate => MessageResult::Duplicate,
        Correlation::Discarded => MessageResult::Discarded,
    };
    Ok(Json(body))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SignalRequest {
    /// The signal name.
    name: String,
    /// Variables for the instances it starts.
    #[serde(default)]
    variables: Vars,
}

async fn signal(
    State(st): State<AppState>,
    caller: Caller,
    Body(r): Body<SignalRequest>,
) -> Result<Json<ordo_engine::engine::Signalled>> {
    caller.require(&[Role::Integrator, Role::Admin])?;
    Ok(Json(st.engine.signal(&r.name, r.variables).await?))
}

// Tasks.

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskQuery {
    /// `mine` (default), `groups` or `overdue`.
    view: Option<String>,
    /// Most rows (default 50, at most 500).
    limit: Option<u32>,
}

async fn tasks(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<TaskQuery>,
) -> Result<Json<Vec<TaskRow>>> {
    let limit = q.limit.unwrap_or(50).min(500);
    let view = q.view.as_deref().unwrap_or("mine");
    Ok(Json(task_list(&st, &caller, view, limit).await?))
}

/// A task view: `mine` (assigned to the caller), `groups` (offered to their
/// groups) or `overdue` (supervisors: their team's; admins: all).
pub(crate) async fn task_list(
    st: &AppState,
    caller: &Caller,
    view: &str,
    limit: u32,
) -> Result<Vec<TaskRow>> {
    caller.require(STAFF)?;
    Ok(match view {
        "mine" => st.engine.tasks_of(&caller.0.user, limit).await?,
        "groups" => {
            st.engine
                .group_tasks(&caller.0.user, caller.0.groups.clone(), limit)
                .await?
        }
        "overdue" => {
            caller.require(WATCHERS)?;
            let all = st.engine.overdue_tasks(limit).await?;
            if caller.0.has_any(&[Role::Admin]) {
                all
            } else {
                let team = team(st, &caller.0.user).await?;
                all.into_iter()
                    .filter(|t| t.assignee.as_ref().is_some_and(|a| team.contains(a)))
                    .collect()
            }
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "`view={other}` is not a task view; use mine, groups or overdue"
            )));
        }
    })
}

/// An open task the caller may see: theirs, offered to them or their groups; for
/// a supervisor, also their team's (assigned to or offered to someone they lead);
/// for an admin, any. A task that excludes the caller (the four-eyes rule) is
/// not theirs to see unless they are an admin. Others get 404, as if it did not
/// exist; a task that exists but is closed answers 409 to those who could have
/// seen it, saying who closed it and when.
pub(crate) async fn visible_task(
    st: &AppState,
    caller: &Caller,
    instance: &str,
    activity: u64,
) -> Result<(TaskRow, Candidates)> {
    let not_found = || ApiError::NotFound(format!("no open task {instance}/{activity}"));
    let Some((task, who)) = st.engine.task(instance, activity).await? else {
        let Some(closed) = st.engine.closed_task(instance, activity).await? else {
            return Err(not_found());
        };
        if !may_see(st, caller, &closed.task, &closed.candidates).await? {
            return Err(not_found());
        }
        let by = closed
            .closed_by
            .as_deref()
            .map_or_else(String::new, |b| format!(" by {b}"));
        let at = closed
            .closed_at
            .as_deref()
            .map_or_else(String::new, |a| format!(" at {a}"));
        return Err(ApiError::Conflict(format!(
            "task {instance}/{activity} is no longer open: it was {}{by}{at}",
            closed.state
        )));
    };
    if may_see(st, caller, &task, &who).await? {
        Ok((task, who))
    } else {
        Err(not_found())
    }
}

/// Whether the caller may see a task with these holders.
async fn may_see(st: &AppState, caller: &Caller, task: &TaskRow, who: &Candidates) -> Result<bool> {
    let me = &caller.0;
    if me.has_any(&[Role::Admin]) {
        return Ok(true);
    }
    if who.excluded.contains(&me.user) {
        return Ok(false);
    }
    let mine = task.assignee.as_deref() == Some(me.user.as_str())
        || who.users.contains(&me.user)
        || who.groups.iter().any(|g| me.groups.contains(g));
    if mine {
        return Ok(true);
    }
    if me.has_any(&[Role::Supervisor]) {
        let team = team(st, &me.user).await?;
        return Ok(task
            .assignee
            .iter()
            .chain(who.users.iter())
            .any(|u| team.contains(u)));
    }
    Ok(false)
}

/// Who may hand a task to someone else: its holder, a supervisor of its holder
/// (up the reporting line), or an admin. A candidate takes an unclaimed task by
/// claiming it; nobody may take a task from its holder by delegating it.
async fn may_hand_on(st: &AppState, caller: &Caller, task: &TaskRow) -> Result<()> {
    let me = &caller.0;
    if me.has_any(&[Role::Admin]) || task.assignee.as_deref() == Some(me.user.as_str()) {
        return Ok(());
    }
    if let Some(holder) = &task.assignee
        && me.has_any(&[Role::Supervisor])
        && team(st, &me.user).await?.contains(holder)
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "only the task's holder ({}), their supervisors or an admin may hand task {}/{} on; \
         to take an unclaimed task, claim it",
        task.assignee.as_deref().unwrap_or("nobody yet"),
        task.instance_id,
        task.activity
    )))
}

/// Whose instances the caller may watch: `None` for an admin (all); for a
/// supervisor, themselves and everyone below them in the reporting line (an
/// instance is theirs to watch when a task of its tree was held by one of
/// them); others may watch none.
pub(crate) async fn watch_scope(st: &AppState, caller: &Caller) -> Result<Option<Vec<String>>> {
    caller.require(WATCHERS)?;
    if caller.0.has_any(&[Role::Admin]) {
        return Ok(None);
    }
    let mut people = team(st, &caller.0.user).await?;
    people.push(caller.0.user.clone());
    Ok(Some(people))
}

/// An instance of a process the integrator may start, else 404 (as if it did
/// not exist: instance ids are sequential, and walking them must not show
/// which exist).
async fn integrator_instance(st: &AppState, caller: &Caller, id: &str) -> Result<()> {
    let inst = st.engine.instance(id).await?;
    may_start(st, caller, &inst.process, Some(inst.process_version))
        .await
        .map_err(|_| ApiError::NotFound(format!("instance `{id}` does not exist")))
}

/// An instance the caller may watch, else 404 (as if it did not exist).
pub(crate) async fn visible_instance(st: &AppState, caller: &Caller, id: &str) -> Result<()> {
    let Some(people) = watch_scope(st, caller).await? else {
        return Ok(());
    };
    if st.engine.instance_among(id, people).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "instance `{id}` does not exist"
        )))
    }
}

/// Refuses a name that is nobody in the directory (a typo would orphan a task).
pub(crate) async fn known_person(st: &AppState, name: &str) -> Result<()> {
    let dir = std::sync::Arc::clone(&st.directory);
    let who = name.to_owned();
    let found = tokio::task::spawn_blocking(move || dir.person(&who))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    match found {
        Some(_) => Ok(()),
        None => Err(ApiError::Unprocessable(format!(
            "there is no person `{name}`; give the name of someone in the directory (`ordo user add`)"
        ))),
    }
}

/// The people `supervisor` leads.
pub(crate) async fn team(st: &AppState, supervisor: &str) -> Result<Vec<String>> {
    let dir = std::sync::Arc::clone(&st.directory);
    let who = supervisor.to_owned();
    Ok(tokio::task::spawn_blocking(move || dir.team(&who))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??)
}

/// An open task with what its page and its API view show.
pub(crate) struct TaskDetails {
    pub task: TaskRow,
    pub candidate_users: Vec<String>,
    pub candidate_groups: Vec<String>,
    /// The instance it belongs to.
    pub instance: ordo_engine::runtime::Instance,
    /// Its form's fields, in order (empty: the task takes any variables).
    pub form: indexmap::IndexMap<String, ordo_engine::model::raw::FormField>,
}

/// A task the caller may see, with its instance and form.
pub(crate) async fn task_details(
    st: &AppState,
    caller: &Caller,
    instance: &str,
    activity: u64,
) -> Result<TaskDetails> {
    caller.require(STAFF)?;
    let (task, who) = visible_task(st, caller, instance, activity).await?;
    let inst = st.engine.instance(instance).await?;
    let process = st
        .engine
        .process(&inst.process, Some(inst.process_version))
        .await?;
    let form = match process.node(&task.node) {
        Some(ordo_engine::model::raw::Node::User(u)) => u.form.clone(),
        _ => indexmap::IndexMap::new(),
    };
    Ok(TaskDetails {
        task,
        candidate_users: who.users,
        candidate_groups: who.groups,
        instance: inst,
        form,
    })
}

/// An open task with its candidates and form.
#[derive(Debug, Serialize, JsonSchema)]
struct TaskView {
    /// The task.
    task: TaskRow,
    /// People who may claim it.
    candidate_users: Vec<String>,
    /// Groups whose members may claim it.
    candidate_groups: Vec<String>,
    /// Its form's fields, in order (empty: it takes any variables).
    form: indexmap::IndexMap<String, ordo_engine::model::raw::FormField>,
}

async fn task(
    State(st): State<AppState>,
    caller: Caller,
    Path((instance, activity)): Path<(String, u64)>,
) -> Result<Json<TaskView>> {
    let d = task_details(&st, &caller, &instance, activity).await?;
    Ok(Json(TaskView {
        task: d.task,
        candidate_users: d.candidate_users,
        candidate_groups: d.candidate_groups,
        form: d.form,
    }))
}

/// Claims, unclaims or delegates a task the caller may see.
pub(crate) async fn change(
    st: &AppState,
    caller: &Caller,
    (instance, activity): (String, u64),
    change: TaskChange,
) -> Result<Json<TaskRow>> {
    caller.require(STAFF)?;
    let (task, _) = visible_task(st, caller, &instance, activity).await?;
    if let TaskChange::Delegate { to, .. } = &change {
        may_hand_on(st, caller, &task).await?;
        known_person(st, to).await?;
    }
    Ok(Json(
        st.engine.change_task(&instance, activity, change).await?,
    ))
}

async fn claim(
    State(st): State<AppState>,
    caller: Caller,
    Path(task): Path<(String, u64)>,
) -> Result<Json<TaskRow>> {
    let user = caller.0.user.clone();
    change(&st, &caller, task, TaskChange::Claim { user }).await
}

async fn unclaim(
    State(st): State<AppState>,
    caller: Caller,
    Path(task): Path<(String, u64)>,
) -> Result<Json<TaskRow>> {
    let user = caller.0.user.clone();
    change(&st, &caller, task, TaskChange::Unclaim { user }).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DelegateRequest {
    /// The person who gets the task.
    to: String,
}

async fn delegate(
    State(st): State<AppState>,
    caller: Caller,
    Path(task): Path<(String, u64)>,
    Body(r): Body<DelegateRequest>,
) -> Result<Json<TaskRow>> {
    let by = caller.0.user.clone();
    change(&st, &caller, task, TaskChange::Delegate { by, to: r.to }).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    /// The form's values (or any variables, for a task without a form).
    #[serde(default)]
    variables: Vars,
}

/// The instance after a task was completed.
#[derive(Debug, Serialize, JsonSchema)]
struct Completed {
    /// The instance.
    instance: String,
    /// Its status now.
    status: ordo_engine::runtime::InstanceStatus,
    /// The nodes where it waits now.
    active_nodes: Vec<String>,
}

async fn complete(
    State(st): State<AppState>,
    caller: Caller,
    Path((instance, activity)): Path<(String, u64)>,
    Body(r): Body<CompleteRequest>,
) -> Result<Json<Completed>> {
    let inst = complete_task(&st, &caller, &instance, activity, r.variables).await?;
    Ok(Json(Completed {
        active_nodes: active_nodes(&inst),
        instance: inst.id,
        status: inst.status,
    }))
}

/// Completes a task the caller holds (or any, for an admin).
pub(crate) async fn complete_task(
    st: &AppState,
    caller: &Caller,
    instance: &str,
    activity: u64,
    variables: Vars,
) -> Result<ordo_engine::runtime::Instance> {
    caller.require(STAFF)?;
    let (task, ..) = visible_task(st, caller, instance, activity).await?;
    complete_visible(st, caller, &task, variables).await
}

/// Completes `task`, which the caller was shown (`visible_task`): only its
/// assignee or an admin may.
pub(crate) async fn complete_visible(
    st: &AppState,
    caller: &Caller,
    task: &TaskRow,
    variables: Vars,
) -> Result<ordo_engine::runtime::Instance> {
    let me = &caller.0;
    if task.assignee.as_deref() != Some(me.user.as_str()) && !me.has_any(&[Role::Admin]) {
        return Err(ApiError::Forbidden(format!(
            "task {}/{} is assigned to {}; claim it first",
            task.instance_id,
            task.activity,
            task.assignee.as_deref().unwrap_or("nobody")
        )));
    }
    Ok(st
        .engine
        .complete_task(
            &task.instance_id,
            task.activity,
            variables,
            Some(me.user.clone()),
            None,
        )
        .await?)
}

// Incidents.

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    /// Closed ones too (retried, resolved, aborted).
    #[serde(default)]
    all: bool,
    /// Rows to skip.
    #[serde(default)]
    offset: u32,
    /// Most rows (default 50, at most 500).
    limit: Option<u32>,
}

async fn incidents(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<Vec<IncidentRow>>> {
    caller.require(&[Role::Admin])?;
    let rows = st
        .engine
        .incidents(!q.all, q.limit.unwrap_or(50).min(500), q.offset)
        .await?;
    Ok(Json(rows))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FixRequest {
    /// Variables to set first.
    #[serde(default)]
    variables: Vars,
    /// Attempts the job gets (retry only).
    retries: Option<u32>,
}

/// The instance after an incident was retried or resolved.
#[derive(Debug, Serialize, JsonSchema)]
struct Fixed {
    /// The instance.
    instance: String,
    /// Its status now.
    status: ordo_engine::runtime::InstanceStatus,
}

async fn retry(
    State(st): State<AppState>,
    caller: Caller,
    Path((instance, activity)): Path<(String, u64)>,
    Body(r): Body<FixRequest>,
) -> Result<Json<Fixed>> {
    caller.require(&[Role::Admin])?;
    let inst = st
        .engine
        .retry(
            &instance,
            activity,
            r.retries,
            r.variables,
            Some(caller.0.user.clone()),
        )
        .await?;
    Ok(Json(Fixed {
        instance: inst.id,
        status: inst.status,
    }))
}

async fn resolve(
    State(st): State<AppState>,
    caller: Caller,
    Path((instance, activity)): Path<(String, u64)>,
    Body(r): Body<FixRequest>,
) -> Result<Json<Fixed>> {
    caller.require(&[Role::Admin])?;
    if r.retries.is_some() {
        return Err(ApiError::BadRequest(
            "`retries` belongs to retry; resolve marks the step done by hand".into(),
        ));
    }
    let inst = st
        .engine
        .resolve(
            &instance,
            activity,
            r.variables,
            Some(caller.0.user.clone()),
        )
        .await?;
    Ok(Json(Fixed {
        instance: inst.id,
        status: inst.status,
    }))
}

// Backup.

/// Takes an online backup into the server's backup folder.
async fn backup(State(st): State<AppState>, caller: Caller) -> Result<Response> {
    caller.require(&[Role::Maintenance, Role::Admin])?;
    let (path, bytes) = take_backup(&st).await?;
    Ok(created(Backup { path, bytes }))
}

/// A backup just taken.
#[derive(Debug, Serialize, JsonSchema)]
struct Backup {
    /// Where the copy is, on the server.
    path: std::path::PathBuf,
    /// Its size.
    bytes: u64,
}

/// An online backup into the server's backup folder: its path and size.
pub(crate) async fn take_backup(st: &AppState) -> Result<(std::path::PathBuf, u64)> {
    std::fs::create_dir_all(&st.backups)
        .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", st.backups.display())))?;
    let name = format!("ordo-{}.db", chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f"));
    let path = st.backups.join(name);
    let bytes = st.engine.backup(path.clone()).await?;
    Ok((path, bytes))
}

/// The OpenAPI document of this server, its plugins' routes included (built at
/// start by [`crate::openapi::document`]; `server/openapi.json` is the copy with
/// the CRM). Public: it describes, it reveals no data.
async fn openapi(
    axum::Extension(doc): axum::Extension<std::sync::Arc<crate::openapi::Served>>,
) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.0.clone(),
    )
        .into_response()
}

/// A task route: its path parameters and roles.
fn task_op<'d>(
    doc: &'d mut crate::openapi::Doc,
    method: &str,
    path: &str,
    id: &str,
    summary: &str,
) -> crate::openapi::Op<'d> {
    doc.op(method, path, id, "tasks", summary)
        .path_param::<String>("instance", "The instance")
        .path_param::<u64>("activity", "The task's activity instance")
}

/// An incident route: its path parameters, roles, body and answers.
fn incident_op<'d>(
    doc: &'d mut crate::openapi::Doc,
    path: &str,
    id: &str,
    summary: &str,
) -> crate::openapi::Op<'d> {
    doc.op("post", path, id, "incidents", summary)
        .path_param::<String>("instance", "The instance")
        .path_param::<u64>("activity", "The failed activity instance")
        .json_body::<FixRequest>()
        .answers::<Fixed>(200, "The instance goes on")
        .errors(&[404, 409, 422])
}

/// This module's routes in the OpenAPI document, one entry per `.route` of
/// [`routes`] (a test holds the two together), with the types the handlers
/// read and answer.
pub(crate) fn document(doc: &mut crate::openapi::Doc) {
    use ordo_engine::engine::{Deployed, Signalled};
    doc.tag("definitions", "Process definitions: deploy, read, draw.");
    doc.tag("instances", "Process instances: start, list, read, cancel.");
    doc.tag("tasks", "User tasks: inboxes, claim, delegate, complete.");
    doc.tag("messages", "Messages and signals from other systems.");
    doc.tag("incidents", "Steps that failed for good, and their repair.");
    doc.tag("operations", "Backups, health, metrics, this document.");
    doc.op(
        "post",
        "/api/definitions",
        "deploy_definition",
        "definitions",
        "Deploy a process definition (YAML body); a new version unless identical to the latest",
    )
    .query::<DeployQuery>()
    .text_body(
        "application/yaml",
        "The process file (any content type is read as YAML text)",
    )
    .answers::<Deployed>(201, "Deployed, with the validator's warnings")
    .errors(&[413, 422])
    .add();
    doc.op(
        "get",
        "/api/definitions",
        "list_definitions",
        "definitions",
        "Every deployed version of every process",
    )
    .answers::<Vec<DefinitionRow>>(200, "Versions")
    .add();
    doc.op(
        "get",
        "/api/definitions/{id}",
        "get_definition",
        "definitions",
        "A process's source (latest or `version`) and its versions",
    )
    .path_param::<String>("id", "The process id")
    .query::<VersionQuery>()
    .answers::<DefinitionSource>(200, "The source")
    .errors(&[404])
    .add();
    doc.op(
        "get",
        "/api/definitions/{id}/diagram",
        "get_diagram",
        "definitions",
        "The process drawn from its graph",
    )
    .path_param::<String>("id", "The process id")
    .query::<DiagramQuery>()
    .answers_text(
        200,
        "text/vnd.mermaid",
        "A Mermaid flowchart (`text/vnd.graphviz` for `format=dot`)",
    )
    .errors(&[404])
    .add();

    doc.op(
        "post",
        "/api/instances",
        "start_instance",
        "instances",
        "Start an instance",
    )
    .json_body::<StartRequest>()
    .answers::<Started>(201, "Started")
    .errors(&[404, 422])
    .add();
    doc.op(
        "get",
        "/api/instances",
        "list_instances",
        "instances",
        "Instances, newest first, by process, status and business key",
    )
    .query::<InstanceQuery>()
    .answers::<Vec<InstanceRow>>(200, "Instances")
    .add();
    doc.op(
        "get",
        "/api/instances/{id}",
        "get_instance",
        "instances",
        "An instance: state, active nodes, variables, history, tree",
    )
    .path_param::<String>("id", "The instance id")
    .answers::<InstanceDetails>(200, "The instance")
    .errors(&[404])
    .add();
    doc.op(
        "post",
        "/api/instances/{id}/cancel",
        "cancel_instance",
        "instances",
        "Cancel an instance (and the instances it called)",
    )
    .path_param::<String>("id", "The instance id")
    .answers::<Cancelled>(200, "Cancelled")
    .errors(&[404, 409])
    .add();
    doc.op(
        "post",
        "/api/instances/{id}/activities/{activity}/runs",
        "add_runs",
        "instances",
        "Add runs to a running multi-instance activity, one per item",
    )
    .path_param::<String>("id", "The instance id")
    .path_param::<u64>("activity", "The multi-instance activity instance")
    .json_body::<RunsRequest>()
    .answers::<RunsAdded>(
        200,
        "Added: parallel runs start at once, sequential ones after the others",
    )
    .errors(&[404, 409, 422])
    .add();

    doc.op(
        "post",
        "/api/messages",
        "send_message",
        "messages",
        "Correlate a message: to a waiting instance, a message start, or the buffer",
    )
    .json_body::<MessageRequest>()
    .answers::<MessageResult>(200, "What became of it")
    .errors(&[409, 422])
    .add();
    doc.op(
        "post",
        "/api/signals",
        "broadcast_signal",
        "messages",
        "Broadcast a signal",
    )
    .json_body::<SignalRequest>()
    .answers::<Signalled>(200, "What it reached")
    .errors(&[422])
    .add();

    doc.op(
        "get",
        "/api/tasks",
        "list_tasks",
        "tasks",
        "Open tasks: mine, my groups' unclaimed ones, or overdue (supervisor, admin)",
    )
    .query::<TaskQuery>()
    .answers::<Vec<TaskRow>>(200, "Tasks, highest priority first")
    .add();
    task_op(
        doc,
        "get",
        "/api/tasks/{instance}/{activity}",
        "get_task",
        "An open task with its candidates and form",
    )
    .answers::<TaskView>(200, "The task")
    .errors(&[404])
    .add();
    task_op(
        doc,
        "post",
        "/api/tasks/{instance}/{activity}/claim",
        "claim_task",
        "Take an unassigned task",
    )
    .answers::<TaskRow>(200, "The task, now the caller's")
    .errors(&[404, 409])
    .add();
    task_op(
        doc,
        "post",
        "/api/tasks/{instance}/{activity}/unclaim",
        "unclaim_task",
        "Give a task back to its candidates",
    )
    .answers::<TaskRow>(200, "The task, unassigned")
    .errors(&[404, 409])
    .add();
    task_op(
        doc,
        "post",
        "/api/tasks/{instance}/{activity}/delegate",
        "delegate_task",
        "Hand a task to someone else",
    )
    .json_body::<DelegateRequest>()
    .answers::<TaskRow>(200, "The task, now theirs")
    .errors(&[404, 409, 422])
    .add();
    task_op(
        doc,
        "post",
        "/api/tasks/{instance}/{activity}/complete",
        "complete_task",
        "Complete a task with its form's values (its assignee, or an admin)",
    )
    .json_body::<CompleteRequest>()
    .answers::<Completed>(200, "The instance after the task")
    .errors(&[404, 409, 422])
    .add();

    doc.op(
        "get",
        "/api/incidents",
        "list_incidents",
        "incidents",
        "Incidents, newest first (open ones unless `all`)",
    )
    .query::<IncidentQuery>()
    .answers::<Vec<IncidentRow>>(200, "Incidents")
    .add();
    incident_op(
        doc,
        "/api/incidents/{instance}/{activity}/retry",
        "retry_incident",
        "Run the failed step again, after setting variables",
    )
    .add();
    incident_op(
        doc,
        "/api/incidents/{instance}/{activity}/resolve",
        "resolve_incident",
        "Mark the failed step done by hand",
    )
    .add();

    doc.op(
        "post",
        "/api/backup",
        "take_backup",
        "operations",
        "Take an online backup into the server's backup folder",
    )
    .answers::<Backup>(201, "Taken")
    .add();
    doc.op(
        "get",
        "/api/openapi.json",
        "get_openapi",
        "operations",
        "This document",
    )
    .answers::<serde_json::Map<String, serde_json::Value>>(200, "The OpenAPI document")
    .add();
    doc.op("get", "/health", "health", "operations", "Liveness")
        .answers::<crate::Health>(200, "Up")
        .add();
    doc.op(
        "get",
        "/metrics",
        "metrics",
        "operations",
        "Prometheus text: counters and gauges",
    )
    .answers_text(200, "text/plain", "Prometheus exposition format 0.0.4")
    .add();
}
