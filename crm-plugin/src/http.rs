//! The CRM in the server: [`CrmPlugin`] installs the tables and actions, serves
//! the CRM API under `/api/crm`, delivers the outbox in the background, and seeds
//! the demo. Every read goes through [`crate::visibility`].

use crate::deliver::{self, Smtp};
use crate::records::{self, Why};
use crate::visibility::{self, Filter, Scope};
use crate::{assign, notify, org, pool};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json};
use ordo_engine::store::{Sql, SqlExt, params};
use ordo_server::api::{Body, Caller};
use ordo_server::auth::Role;
use ordo_server::{ApiError, AppState, Background, Plugin};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

type Result<T> = std::result::Result<T, ApiError>;

/// The CRM plugin for `ordo serve`.
#[derive(Debug, Clone, Default)]
pub struct CrmPlugin {
    /// Where e-mail goes (none: e-mails wait in the outbox, in-app still works).
    smtp: Option<Smtp>,
    /// Wakes the import worker and tells waiting requests of its progress.
    imports: Imports,
}

impl CrmPlugin {
    /// The plugin, sending e-mail through `smtp` when given.
    pub fn new(smtp: Option<Smtp>) -> Self {
        Self {
            smtp,
            imports: Imports::default(),
        }
    }
}

/// The import worker's signals: a submission wakes it; each batch it commits
/// bumps `progress`, which requests waiting on a job watch.
#[derive(Debug, Clone)]
pub(crate) struct Imports {
    wake: Arc<Notify>,
    progress: Arc<watch::Sender<u64>>,
}

impl Default for Imports {
    fn default() -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            progress: Arc::new(watch::channel(0).0),
        }
    }
}

/// How long a request waits on an import (`?wait=true`) before answering
/// with the progress so far.
const IMPORT_WAIT: Duration = Duration::from_secs(25);
/// How often the import worker looks for work it was not woken for.
const IMPORT_RETRY: Duration = Duration::from_secs(30);

/// How often the outbox is looked at.
pub const DELIVERY_INTERVAL: Duration = Duration::from_secs(1);

impl Plugin for CrmPlugin {
    fn name(&self) -> &'static str {
        "crm"
    }

    fn install(&self, config: &mut ordo_engine::engine::Config) -> std::result::Result<(), String> {
        crate::install(config).map_err(|e| e.to_string())
    }

    fn api(&self) -> Router<AppState> {
        routes(self.smtp.clone()).layer(Extension(self.imports.clone()))
    }

    fn openapi(&self, doc: &mut ordo_server::openapi::Doc) {
        document(doc);
    }

    fn pages(&self) -> Router<AppState> {
        crate::pages::routes().layer(Extension(self.imports.clone()))
    }

    fn nav(&self) -> Vec<ordo_server::pages::NavEntry> {
        crate::pages::NAV.to_vec()
    }

    fn access(&self) -> Vec<ordo_server::access::Rule> {
        crate::access::RULES.to_vec()
    }

    fn background(&self, state: AppState, stop: watch::Receiver<bool>) -> Option<Background> {
        let imports = import_worker(state.clone(), self.imports.clone(), stop.clone());
        let delivery = delivery_worker(state, self.smtp.clone(), stop);
        Some(Box::pin(async move {
            tokio::join!(imports, delivery);
        }))
    }

    fn seed_demo(&self, state: &AppState) -> std::result::Result<(), String> {
        let now = state.engine.now();
        state
            .engine
            .write_blocking(move |tx| crate::demo::seed(tx, now).map_err(|e| e.to_string()))
            .map_err(|e| e.to_string())?
    }
}

#[allow(clippy::print_stderr)]
fn log(what: &str, e: &str) {
    eprintln!("ordo: {what} failed, will retry: {e}");
}

/// Delivers the outbox every [`DELIVERY_INTERVAL`] until `stop`.
async fn delivery_worker(state: AppState, smtp: Option<Smtp>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = deliver_pass(&state, smtp.clone(), 100).await {
            log("CRM delivery pass", &e.to_string());
        }
        tokio::select! {
            () = tokio::time::sleep(DELIVERY_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One delivery pass through the engine's writer: claim what is due (a unit
/// of work), send it with no transaction held, record the outcomes (another).
/// A crash between the two leaves the claimed rows `sending`; after the lease
/// they are sent again (at least once), never lost.
async fn deliver_pass(state: &AppState, smtp: Option<Smtp>, limit: u32) -> Result<deliver::Report> {
    let now = state.engine.now();
    let email_ok = smtp.is_some();
    let claimed = write_db(state, move |tx| {
        deliver::claim_due(tx, email_ok, now, limit).map_err(internal)
    })
    .await?;
    if claimed.is_empty() {
        return Ok(deliver::Report::default());
    }
    let sent = tokio::task::spawn_blocking(move || deliver::send(smtp.as_ref(), claimed))
        .await
        .map_err(internal)?;
    write_db(state, move |tx| {
        deliver::record(tx, &sent, now).map_err(internal)
    })
    .await
}

/// Runs the queued imports when woken (a submission) and at start (imports a
/// stopped server left half done), until `stop`. The only import worker of
/// the server, so a job is never run twice at once.
async fn import_worker(state: AppState, imports: Imports, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = import_pass(&state, &imports, &stop).await {
            log("CRM import pass", &e.to_string());
        }
        tokio::select! {
            () = imports.wake.notified() => {}
            // A pass that failed is tried again a little later.
            () = tokio::time::sleep(IMPORT_RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs every pending import to its end, one batch per unit of work on the
/// engine's writer (the rows, the job's progress and its resume offset commit
/// together); people waiting on a job are woken after each batch. A job whose
/// batch fails is marked failed with the error, so one bad job never blocks
/// the others.
async fn import_pass(
    state: &AppState,
    imports: &Imports,
    stop: &watch::Receiver<bool>,
) -> Result<()> {
    let pending = read_db(state, |c| crate::import::pending(c).map_err(internal)).await?;
    for id in pending {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let now = state.engine.now();
            let batch = state
                .engine
                .write(move |tx| crate::import::advance(tx, id, crate::import::BATCH, now))
                .await?;
            let done = match batch {
                Ok(Some(job)) => job.finished(),
                Ok(None) => true,
                Err(e) => {
                    let why = e.to_string();
                    write_db(state, move |tx| {
                        crate::import::fail(tx, id, &why, now).map_err(internal)
                    })
                    .await?;
                    true
                }
            };
            imports.progress.send_modify(|n| *n += 1);
            if done {
                break;
            }
        }
    }
    Ok(())
}

/// Reads on one of the engine's read-only connections, off the async threads.
pub(crate) async fn read_db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Sql) -> Result<T> + Send + 'static,
) -> Result<T> {
    state.engine.query(f).await?
}

/// Writes through the engine's one writer, as a unit of work in the next group
/// commit: all of `f` is stored, or (on its error) none of it. The CRM opens no
/// writable connection of its own.
pub(crate) async fn write_db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Sql) -> Result<T> + Send + 'static,
) -> Result<T> {
    state.engine.write(f).await?
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn query<T: serde::de::DeserializeOwned + Default>(raw: Option<String>) -> Result<T> {
    match raw {
        None => Ok(T::default()),
        Some(q) => {
            serde_urlencoded::from_str(&q).map_err(|e| ApiError::BadRequest(format!("query: {e}")))
        }
    }
}

fn kind(name: &str) -> Result<&'static records::Kind> {
    records::kind(name).map_err(|e| ApiError::NotFound(e.to_string()))
}

use crate::access::{MANAGERS, SALES};

fn routes(smtp: Option<Smtp>) -> Router<AppState> {
    Router::new()
        .route("/crm/records/{kind}", get(list_records))
        .route("/crm/records/{kind}/{id}", get(one_record))
        .route("/crm/export/{kind}", get(export))
        .route("/crm/import/customers", post(import_customers))
        .route("/crm/imports", get(import_list))
        .route("/crm/imports/{id}", get(import_status))
        .route("/crm/pool/{kind}", get(pool_list))
        .route("/crm/pool/{kind}/{id}/claim", post(claim))
        .route("/crm/pipeline", get(pipeline))
        .route("/crm/payments", get(payments))
        .route("/crm/inbox", get(inbox))
        .route("/crm/inbox/{id}/read", post(read))
        .route("/crm/outbox", get(outbox))
        .route(
            "/crm/outbox/deliver",
            post(move |st: State<AppState>, c: Caller| deliver_now(st, c, smtp.clone())),
        )
        .route("/crm/staff/{person}", put(set_staff))
        .route("/crm/assignment-rules", get(get_rules).put(put_rules))
        .route("/crm/pool-rules", get(get_pool_rules).put(put_pool_rules))
        .route("/crm/office", get(get_office).put(put_office))
        .route("/crm/webhooks", post(add_webhook))
}

async fn list_records(
    State(st): State<AppState>,
    caller: Caller,
    Path(k): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<visibility::Page>> {
    let kind = kind(&k)?;
    let filter: Filter = query(q)?;
    let now = st.engine.now();
    read_db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        visibility::list(c, &scope, kind, &filter, now, true).map_err(ApiError::BadRequest)
    })
    .await
    .map(Json)
}

/// A CRM record, as the API shows it: `id`, the kind's fields, `created_at`
/// and `updated_at` (for the OpenAPI document; the handlers hold records as
/// JSON maps).
#[derive(Debug)]
pub struct Record;

impl schemars::JsonSchema for Record {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Record".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut payment = generator.subschema_for::<crate::actions::PaymentState>();
        payment.insert(
            "description".into(),
            "Receivable plans in `GET /api/crm/payments`: the payment state, derived from the payments.".into(),
        );
        schemars::json_schema!({
            "description": "A CRM record: `id`, `created_at`, `updated_at` and the fields of its kind (customer, lead, contact, opportunity, quote, order, contract, receivable, payment, …), each text, a number, true/false or null. Money is in currency units; times are RFC 3339.",
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": { "type": "integer", "description": "Its number, unique within its kind." },
                "created_at": { "type": "string", "description": "When it was created (RFC 3339)." },
                "updated_at": { "type": ["string", "null"], "description": "When it last changed." },
                "payment": payment
            },
            "additionalProperties": { "type": ["string", "number", "boolean", "null"] }
        })
    }
}

/// A record with its audit trail.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct RecordWithHistory {
    /// The record.
    #[schemars(with = "Record")]
    record: Map<String, Value>,
    /// Its changes, oldest first.
    history: Vec<records::AuditEntry>,
}

async fn one_record(
    State(st): State<AppState>,
    caller: Caller,
    Path((k, id)): Path<(String, i64)>,
) -> Result<Json<RecordWithHistory>> {
    let kind = kind(&k)?;
    read_db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        let (record, history) = with_history(c, &scope, kind, id)?;
        Ok(Json(RecordWithHistory { record, history }))
    })
    .await
}

/// Record `id` if `scope` may see it (404 otherwise), with its audit trail:
/// the API's record and the customer page.
pub(crate) fn with_history(
    c: &dyn Sql,
    scope: &Scope,
    kind: &'static records::Kind,
    id: i64,
) -> Result<(Map<String, Value>, Vec<records::AuditEntry>)> {
    let record = visibility::visible(c, scope, kind, id)
        .map_err(internal)?
        .ok_or_else(|| ApiError::NotFound(format!("there is no {} {id} you may see", kind.name)))?;
    let history = records::history(c, kind, id).map_err(internal)?;
    Ok((record, history))
}

/// CSV of the records the caller may see, with the list's filters.
async fn export(
    State(st): State<AppState>,
    caller: Caller,
    Path(k): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let name = k.strip_suffix(".csv").unwrap_or(&k).to_owned();
    let filter: Filter = query(q)?;
    export_csv(&st, caller.0, &name, filter).await
}

/// The export both the API and the customers page serve.
pub(crate) async fn export_csv(
    st: &AppState,
    who: ordo_server::auth::Identity,
    name: &str,
    filter: Filter,
) -> Result<Response> {
    let kind = kind(name)?;
    let now = st.engine.now();
    let body = read_db(st, move |c| {
        let scope = Scope::of(c, &who).map_err(internal)?;
        let page =
            visibility::list(c, &scope, kind, &filter, now, false).map_err(ApiError::BadRequest)?;
        // Every cell quoted: a spreadsheet that splits on `;` keeps
        // `Acme;=1+1` one cell instead of running `=1+1`.
        let mut w = csv::WriterBuilder::new()
            .quote_style(csv::QuoteStyle::Always)
            .from_writer(Vec::new());
        let mut columns = vec!["id"];
        columns.extend(kind.fields.iter().map(|f| f.name));
        columns.push("created_at");
        w.write_record(&columns).map_err(internal)?;
        for row in &page.items {
            let cells: Vec<String> = columns
                .iter()
                .map(|col| match row.get(*col) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => crate::csv_safe::cell(s).into_owned(),
                    Some(v) => crate::csv_safe::cell(&v.to_string()).into_owned(),
                })
                .collect();
            w.write_record(&cells).map_err(internal)?;
        }
        w.into_inner().map_err(internal)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Starts a CSV import of customers: a header row of customer fields, then one
/// customer per row. Answers `202 Accepted` with the job at once (a wrong
/// header row is refused with 400 before anything is queued); the rows are
/// imported in the background and `GET /api/crm/imports/{id}` shows the
/// progress. A salesperson's rows are theirs; supervisors and admins may give
/// `owner`.
async fn import_customers(
    State(st): State<AppState>,
    Extension(imports): Extension<Imports>,
    caller: Caller,
    body: String,
) -> Result<Response> {
    let job = submit_import(&st, &imports, caller, body).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/crm/imports/{}", job.id))],
        Json(job),
    )
        .into_response())
}

/// Queues an import and wakes the worker, for the API and the import page.
pub(crate) async fn submit_import(
    st: &AppState,
    imports: &Imports,
    caller: Caller,
    body: String,
) -> Result<crate::import::Job> {
    caller.require(SALES)?;
    let now = st.engine.now();
    let job = write_db(st, move |c| {
        let id = crate::import::submit(c, &caller.0.user, caller.0.has_any(MANAGERS), &body, now)
            .map_err(|e| match e {
            e @ (crate::import::Error::Db(_) | crate::import::Error::Duplicates(_)) => internal(e),
            other => ApiError::BadRequest(other.to_string()),
        })?;
        crate::import::job(c, id)
            .map_err(internal)?
            .ok_or_else(|| ApiError::Internal("the import just stored is gone".into()))
    })
    .await?;
    imports.wake.notify_one();
    Ok(job)
}

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    /// Wait (up to 25 s) until the import has finished.
    #[serde(default)]
    wait: bool,
}

/// One import with its progress and skipped rows, for the one who submitted
/// it and admins. With `?wait=true` the answer waits until it has finished
/// (or 25 s have passed), so a client need not poll.
async fn import_status(
    State(st): State<AppState>,
    Extension(imports): Extension<Imports>,
    caller: Caller,
    Path(id): Path<i64>,
    RawQuery(q): RawQuery,
) -> Result<Json<crate::import::Job>> {
    let q: ImportQuery = query(q)?;
    let deadline = tokio::time::Instant::now() + IMPORT_WAIT;
    let mut progress = imports.progress.subscribe();
    // While waiting, only the summary is read after each batch; the skipped
    // rows once, for the answer.
    if q.wait {
        loop {
            progress.mark_unchanged();
            if import_job(&st, &caller, id, false).await?.finished() {
                break;
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
    import_job(&st, &caller, id, true).await.map(Json)
}

/// Import `id` if `caller` may see it (its submitter, or an admin), with its
/// skipped rows or only their count.
pub(crate) async fn import_job(
    st: &AppState,
    caller: &Caller,
    id: i64,
    with_skipped: bool,
) -> Result<crate::import::Job> {
    caller.require(SALES)?;
    let caller = caller.clone();
    read_db(st, move |c| {
        let job = if with_skipped {
            crate::import::job(c, id)
        } else {
            crate::import::summary(c, id)
        };
        job.map_err(internal)?
            .filter(|j| j.submitted_by == caller.0.user || caller.0.has_any(&[Role::Admin]))
            .ok_or_else(|| ApiError::NotFound(format!("no import {id} of yours")))
    })
    .await
}

/// The caller's imports, newest first (an admin's: everyone's).
async fn import_list(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<crate::import::Job>>> {
    imports_of(&st, caller, 50).await.map(Json)
}

/// The last `limit` imports `caller` may see, for the API and the import page.
pub(crate) async fn imports_of(
    st: &AppState,
    caller: Caller,
    limit: u32,
) -> Result<Vec<crate::import::Job>> {
    caller.require(SALES)?;
    read_db(st, move |c| {
        let by = (!caller.0.has_any(&[Role::Admin])).then_some(caller.0.user.as_str());
        crate::import::jobs(c, by, limit).map_err(internal)
    })
    .await
}

async fn pool_list(
    State(st): State<AppState>,
    caller: Caller,
    Path(k): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<visibility::Page>> {
    let kind = kind(&k)?;
    if !matches!(kind.name, "customer" | "lead") {
        return Err(ApiError::NotFound(
            "the pool holds customers and leads".into(),
        ));
    }
    let filter: Filter = query(q)?;
    let now = st.engine.now();
    read_db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        visibility::pool(c, &scope, kind, &filter, now).map_err(ApiError::BadRequest)
    })
    .await
    .map(Json)
}

async fn claim(
    State(st): State<AppState>,
    caller: Caller,
    Path((k, id)): Path<(String, i64)>,
) -> Result<Json<Map<String, Value>>> {
    claim_for(&st, &caller, k, id).await.map(Json)
}

/// A claim from the pool, for the API and the pool page.
pub(crate) async fn claim_for(
    st: &AppState,
    caller: &Caller,
    k: String,
    id: i64,
) -> Result<Map<String, Value>> {
    caller.require(&[Role::Salesperson, Role::Supervisor])?;
    let now = st.engine.now();
    let caller = caller.clone();
    write_db(st, move |tx| {
        let why = Why {
            actor: Some(caller.0.user.clone()),
            reason: "claimed through the API".into(),
            at: now,
        };
        let record = pool::claim(tx, &k, id, &caller.0.user, &why).map_err(|e| match e {
            pool::Refused::NotInPool(..) => ApiError::Conflict(e.to_string()),
            pool::Refused::Other(m) => ApiError::NotFound(m),
            other => ApiError::Unprocessable(other.to_string()),
        })?;
        Ok(record)
    })
    .await
}

async fn pipeline(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<visibility::Stage>>> {
    read_db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        visibility::pipeline(c, &scope).map_err(internal)
    })
    .await
    .map(Json)
}

/// Receivable plans in scope with their payment state (derived from payments).
async fn payments(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<visibility::Page>> {
    let filter: Filter = query(q)?;
    let now = st.engine.now();
    read_db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        visibility::receivables(c, &scope, &filter, now).map_err(ApiError::BadRequest)
    })
    .await
    .map(Json)
}

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    /// Only unread notifications.
    unread: Option<bool>,
    /// Most rows (default 50, at most 500).
    limit: Option<u32>,
}

async fn inbox(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<notify::InboxEntry>>> {
    let q: InboxQuery = query(q)?;
    read_db(&st, move |c| {
        notify::inbox(
            c,
            &caller.0.user,
            q.unread.unwrap_or(false),
            q.limit.unwrap_or(50).min(500),
        )
        .map_err(internal)
    })
    .await
    .map(Json)
}

/// A notification marked read.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct MarkedRead {
    /// The notification.
    id: i64,
    /// Always true.
    read: bool,
}

async fn read(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<MarkedRead>> {
    let now = st.engine.now();
    write_db(&st, move |c| {
        if notify::mark_read(c, &caller.0.user, id, now).map_err(internal)? {
            Ok(Json(MarkedRead { id, read: true }))
        } else {
            Err(ApiError::NotFound(format!(
                "there is no notification {id} in your inbox"
            )))
        }
    })
    .await
}

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    /// Only this status: `pending`, `sending`, `sent`, `failed`.
    status: Option<String>,
    /// Most rows (default 100, at most 1000).
    limit: Option<u32>,
}

async fn outbox(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<deliver::OutboxRow>>> {
    caller.require(&[Role::Admin])?;
    let q: OutboxQuery = query(q)?;
    read_db(&st, move |c| {
        deliver::outbox(c, q.status.as_deref(), q.limit.unwrap_or(100).min(1000)).map_err(internal)
    })
    .await
    .map(Json)
}

/// Delivers what is due now, without waiting for the background pass.
async fn deliver_now(
    State(st): State<AppState>,
    caller: Caller,
    smtp: Option<Smtp>,
) -> Result<Json<deliver::Report>> {
    caller.require(&[Role::Admin])?;
    deliver_pass(&st, smtp, 1000).await.map(Json)
}

/// Refuses a staff change that could never work: an e-mail address that is not
/// one (or hides a header), a negative weight or capacity.
fn check_staff_change(c: &org::StaffChange) -> Result<()> {
    if let Some(Some(email)) = &c.email {
        let ok = email.len() <= 254
            && !email
                .chars()
                .any(|ch| ch.is_control() || ch.is_whitespace())
            && email
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !ok {
            return Err(ApiError::Unprocessable(format!(
                "email: {email:?} is not an e-mail address (name@example.com)"
            )));
        }
    }
    if c.weight.is_some_and(|w| w < 0) {
        return Err(ApiError::Unprocessable(
            "weight: give 0 or more (0 takes the person out of weighted assignment)".into(),
        ));
    }
    if c.daily_capacity.flatten().is_some_and(|n| n < 0) {
        return Err(ApiError::Unprocessable(
            "daily_capacity: give 0 or more, or null for no limit".into(),
        ));
    }
    Ok(())
}

/// Changes a salesperson's CRM facts: the fields sent change, the others keep
/// their values (so `{"active": false}` does not clear the e-mail address).
async fn set_staff(
    State(st): State<AppState>,
    caller: Caller,
    Path(person): Path<String>,
    Body(change): Body<org::StaffChange>,
) -> Result<Json<org::Staff>> {
    caller.require(&[Role::Admin])?;
    check_staff_change(&change)?;
    write_db(&st, move |tx| {
        let known: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM people WHERE name = ?1)", params![&person],
                |r| r.get(0))
            .map_err(internal)?;
        if !known {
            return Err(ApiError::NotFound(format!(
                "there is no person `{person}`; add them with `ordo user add {person} --role salesperson`"
            )));
        }
        let staff = org::staff(tx, &person).map_err(internal)?.with(change);
        org::set_staff(tx, &staff).map_err(internal)?;
        Ok(Json(staff))
    })
    .await
}

async fn get_rules(State(st): State<AppState>, caller: Caller) -> Result<Json<Vec<assign::Rule>>> {
    caller.require(MANAGERS)?;
    read_db(&st, move |c| assign::rules(c).map_err(internal))
        .await
        .map(Json)
}

async fn put_rules(
    State(st): State<AppState>,
    caller: Caller,
    Body(rules): Body<Vec<assign::Rule>>,
) -> Result<Json<Vec<assign::Rule>>> {
    caller.require(MANAGERS)?;
    write_db(&st, move |tx| {
        assign::set_rules(tx, &rules).map_err(ApiError::Unprocessable)?;
        Ok(Json(rules))
    })
    .await
}

async fn get_pool_rules(State(st): State<AppState>, caller: Caller) -> Result<Json<pool::Rules>> {
    caller.require(SALES)?;
    read_db(&st, move |c| pool::rules(c).map_err(internal))
        .await
        .map(Json)
}

async fn put_pool_rules(
    State(st): State<AppState>,
    caller: Caller,
    Body(rules): Body<pool::Rules>,
) -> Result<Json<pool::Rules>> {
    caller.require(&[Role::Admin])?;
    write_db(&st, move |c| {
        pool::set_rules(c, &rules).map_err(internal)?;
        Ok(Json(rules))
    })
    .await
}

/// The office's settings.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Office {
    /// Its time zone (IANA name): the days of "today", "this week", "this month".
    time_zone: String,
}

async fn get_office(State(st): State<AppState>, caller: Caller) -> Result<Json<Office>> {
    caller.require(SALES)?;
    read_db(&st, move |c| {
        let tz = visibility::office_zone(c).map_err(internal)?;
        Ok(Json(Office {
            time_zone: tz.name().to_owned(),
        }))
    })
    .await
}

async fn put_office(
    State(st): State<AppState>,
    caller: Caller,
    Body(office): Body<Office>,
) -> Result<Json<Office>> {
    caller.require(&[Role::Admin])?;
    write_db(&st, move |c| {
        let tz =
            visibility::set_office_zone(c, &office.time_zone).map_err(ApiError::Unprocessable)?;
        Ok(Json(Office {
            time_zone: tz.name().to_owned(),
        }))
    })
    .await
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Webhook {
    /// Where notifications are posted (http:// or https://).
    url: String,
    /// The notification templates it receives (all when empty).
    #[serde(default)]
    templates: Vec<String>,
}

/// A webhook just added.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct WebhookAdded {
    /// Its number.
    id: i64,
    /// Where notifications are posted.
    url: String,
    /// The templates it receives, comma-separated, or `*` for all.
    templates: String,
}

async fn add_webhook(
    State(st): State<AppState>,
    caller: Caller,
    Body(hook): Body<Webhook>,
) -> Result<Json<WebhookAdded>> {
    caller.require(&[Role::Admin])?;
    if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
        return Err(ApiError::Unprocessable(format!(
            "a webhook's url starts with http:// or https://, not `{}`",
            hook.url
        )));
    }
    let known = notify::names();
    if let Some(bad) = hook.templates.iter().find(|t| !known.contains(t)) {
        return Err(ApiError::Unprocessable(format!(
            "`{bad}` is not a notification template; templates are {}",
            known.join(", ")
        )));
    }
    write_db(&st, move |c| {
        let templates = if hook.templates.is_empty() {
            "*".to_owned()
        } else {
            hook.templates.join(",")
        };
        let id = c
            .query_row(
                "INSERT INTO crm_webhooks (url, templates) VALUES (?1, ?2) RETURNING id",
                params![&hook.url, &templates],
                |r| r.get(0),
            )
            .map_err(internal)?;
        Ok(Json(WebhookAdded {
            id,
            url: hook.url,
            templates,
        }))
    })
    .await
}

/// The CRM's routes in the OpenAPI document, one entry per `.route` of
/// [`routes`] (a test holds the two together).
pub fn document(doc: &mut ordo_server::openapi::Doc) {
    use crate::import::Job;
    use ordo_server::openapi::Op;
    doc.tag(
        "crm",
        "The CRM plugin: records, imports, the pool, notifications, rules.",
    );
    fn kind_param(op: Op<'_>) -> Op<'_> {
        op.path_param::<String>(
            "kind",
            "The record kind: customer, lead, contact, opportunity, quote, order, contract, receivable, payment, …",
        )
    }
    kind_param(doc.op(
        "get",
        "/api/crm/records/{kind}",
        "crm_list_records",
        "crm",
        "A page of the records of a kind, newest first, filtered",
    ))
    .query::<Filter>()
    .answers::<visibility::Page>(200, "A page of records")
    .errors(&[404])
    .add();
    kind_param(doc.op(
        "get",
        "/api/crm/records/{kind}/{id}",
        "crm_get_record",
        "crm",
        "A record with its audit trail",
    ))
    .path_param::<i64>("id", "The record's number")
    .answers::<RecordWithHistory>(200, "The record")
    .errors(&[404])
    .add();
    kind_param(doc.op(
        "get",
        "/api/crm/export/{kind}",
        "crm_export_records",
        "crm",
        "The records the caller may see as CSV, with the list's filters (`{kind}` may end in `.csv`)",
    ))
    .query::<Filter>()
    .answers_text(200, "text/csv", "A header row, then one row per record")
    .errors(&[404])
    .add();
    doc.op(
        "post",
        "/api/crm/import/customers",
        "crm_import_customers",
        "crm",
        "Start a CSV import of customers; rows are imported in the background",
    )
    .text_body(
        "text/csv",
        "A header row of customer fields, then one customer per row",
    )
    .answers::<Job>(202, "Queued; `Location` names the job")
    .add();
    doc.op(
        "get",
        "/api/crm/imports",
        "crm_list_imports",
        "crm",
        "The caller's imports, newest first (an admin's: everyone's)",
    )
    .answers::<Vec<Job>>(200, "Imports (summaries: `skipped` is empty)")
    .add();
    doc.op(
        "get",
        "/api/crm/imports/{id}",
        "crm_get_import",
        "crm",
        "An import with its progress and skipped rows",
    )
    .path_param::<i64>("id", "The import's number")
    .query::<ImportQuery>()
    .answers::<Job>(200, "The import")
    .errors(&[404])
    .add();
    kind_param(doc.op(
        "get",
        "/api/crm/pool/{kind}",
        "crm_list_pool",
        "crm",
        "Customers or leads in the public pool",
    ))
    .query::<Filter>()
    .answers::<visibility::Page>(200, "A page of records")
    .errors(&[404])
    .add();
    kind_param(doc.op(
        "post",
        "/api/crm/pool/{kind}/{id}/claim",
        "crm_claim_from_pool",
        "crm",
        "Claim a customer or lead from the pool",
    ))
    .path_param::<i64>("id", "The record's number")
    .answers::<Record>(200, "The record, now the caller's")
    .errors(&[404, 409, 422])
    .add();
    doc.op(
        "get",
        "/api/crm/pipeline",
        "crm_pipeline",
        "crm",
        "Open opportunities by stage, with amounts",
    )
    .answers::<Vec<visibility::Stage>>(200, "Stages")
    .add();
    doc.op(
        "get",
        "/api/crm/payments",
        "crm_payments",
        "crm",
        "Receivable plans with their payment state",
    )
    .query::<Filter>()
    .answers::<visibility::Page>(200, "A page of receivables")
    .add();
    doc.op(
        "get",
        "/api/crm/inbox",
        "crm_inbox",
        "crm",
        "The caller's in-app notifications, newest first",
    )
    .query::<InboxQuery>()
    .answers::<Vec<notify::InboxEntry>>(200, "Notifications")
    .add();
    doc.op(
        "post",
        "/api/crm/inbox/{id}/read",
        "crm_mark_read",
        "crm",
        "Mark a notification read",
    )
    .path_param::<i64>("id", "The notification")
    .answers::<MarkedRead>(200, "Marked")
    .errors(&[404])
    .add();
    doc.op(
        "get",
        "/api/crm/outbox",
        "crm_outbox",
        "crm",
        "E-mails and webhook calls, pending and done",
    )
    .query::<OutboxQuery>()
    .answers::<Vec<deliver::OutboxRow>>(200, "Outbox rows")
    .add();
    doc.op(
        "post",
        "/api/crm/outbox/deliver",
        "crm_deliver_outbox",
        "crm",
        "Deliver what is due now, without waiting for the background pass",
    )
    .answers::<deliver::Report>(200, "What the pass did")
    .add();
    doc.op(
        "put",
        "/api/crm/staff/{person}",
        "crm_set_staff",
        "crm",
        "Change the CRM's facts about a salesperson (the fields sent)",
    )
    .path_param::<String>("person", "The person")
    .json_body::<org::StaffChange>()
    .answers::<org::Staff>(200, "Stored: every fact, changed or kept")
    .errors(&[404, 422])
    .add();
    doc.op(
        "get",
        "/api/crm/assignment-rules",
        "crm_get_assignment_rules",
        "crm",
        "The assignment rule table, in order",
    )
    .answers::<Vec<assign::Rule>>(200, "Rules")
    .add();
    doc.op(
        "put",
        "/api/crm/assignment-rules",
        "crm_put_assignment_rules",
        "crm",
        "Replace the assignment rule table",
    )
    .json_body::<Vec<assign::Rule>>()
    .answers::<Vec<assign::Rule>>(200, "Stored")
    .errors(&[422])
    .add();
    doc.op(
        "get",
        "/api/crm/pool-rules",
        "crm_get_pool_rules",
        "crm",
        "The pool's rules",
    )
    .answers::<pool::Rules>(200, "Rules")
    .add();
    doc.op(
        "put",
        "/api/crm/pool-rules",
        "crm_put_pool_rules",
        "crm",
        "Replace the pool's rules",
    )
    .json_body::<pool::Rules>()
    .answers::<pool::Rules>(200, "Stored")
    .add();
    doc.op(
        "get",
        "/api/crm/office",
        "crm_get_office",
        "crm",
        "The office's settings (its time zone)",
    )
    .answers::<Office>(200, "Settings")
    .add();
    doc.op(
        "put",
        "/api/crm/office",
        "crm_put_office",
        "crm",
        "Set the office's time zone",
    )
    .json_body::<Office>()
    .answers::<Office>(200, "Stored")
    .errors(&[422])
    .add();
    doc.op(
        "post",
        "/api/crm/webhooks",
        "crm_add_webhook",
        "crm",
        "Add a webhook for notifications",
    )
    .json_body::<Webhook>()
    .answers::<WebhookAdded>(200, "Added")
    .errors(&[422])
    .add();
}
