//! The CRM in the server: [`CrmPlugin`] installs the tables and actions, serves
//! the CRM API under `/api/crm`, delivers the outbox in the background, and seeds
//! the demo. Every read goes through [`crate::visibility`].

use crate::deliver::{self, Smtp};
use crate::records::{self, Why};
use crate::visibility::{self, Filter, Scope};
use crate::{assign, notify, org, pool};
use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ordo_server::api::{Body, Caller};
use ordo_server::auth::Role;
use ordo_server::{ApiError, AppState, Background, Plugin};
use rusqlite::Connection;
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::sync::watch;

type Result<T> = std::result::Result<T, ApiError>;

/// The CRM plugin for `ordo serve`.
#[derive(Debug, Clone, Default)]
pub struct CrmPlugin {
    /// Where e-mail goes (none: e-mails wait in the outbox, in-app still works).
    pub smtp: Option<Smtp>,
}

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
        routes(self.smtp.clone())
    }

    fn pages(&self) -> Router<AppState> {
        crate::pages::routes()
    }

    fn nav(&self) -> Vec<ordo_server::pages::NavEntry> {
        crate::pages::NAV.to_vec()
    }

    fn background(&self, state: AppState, mut stop: watch::Receiver<bool>) -> Option<Background> {
        let smtp = self.smtp.clone();
        Some(Box::pin(async move {
            loop {
                let st = state.clone();
                let smtp = smtp.clone();
                let pass = tokio::task::spawn_blocking(
                    move || -> std::result::Result<deliver::Report, String> {
                        let conn = open(&st).map_err(|e| e.to_string())?;
                        deliver::deliver_due(&conn, smtp.as_ref(), st.engine.now(), 100)
                            .map_err(|e| e.to_string())
                    },
                )
                .await;
                if let Ok(Err(e)) | Err(e) = pass.map_err(|e| e.to_string()) {
                    #[allow(clippy::print_stderr)]
                    {
                        eprintln!("ordo: CRM delivery pass failed, will retry: {e}");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(DELIVERY_INTERVAL) => {}
                    _ = stop.changed() => return,
                }
            }
        }))
    }

    fn seed_demo(&self, state: &AppState) -> std::result::Result<(), String> {
        let conn = open(state).map_err(|e| e.to_string())?;
        crate::demo::seed(&conn, state.engine.now()).map_err(|e| e.to_string())
    }
}

fn open(state: &AppState) -> rusqlite::Result<Connection> {
    let conn = Connection::open(state.engine.db_path())?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Runs `f` on a connection of its own, off the async threads.
pub(crate) async fn db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = open(&st).map_err(internal)?;
        f(&mut conn)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
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

/// Those who work with records (the pool, claims).
const SALES: &[Role] = &[Role::Salesperson, Role::Supervisor, Role::Admin];
/// Those who set the CRM's rules.
const MANAGERS: &[Role] = &[Role::Supervisor, Role::Admin];

fn routes(smtp: Option<Smtp>) -> Router<AppState> {
    Router::new()
        .route("/crm/records/{kind}", get(list_records))
        .route("/crm/records/{kind}/{id}", get(one_record))
        .route("/crm/export/{kind}", get(export))
        .route("/crm/import/customers", post(import_customers))
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
    db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        visibility::list(c, &scope, kind, &filter, now, true).map_err(ApiError::BadRequest)
    })
    .await
    .map(Json)
}

async fn one_record(
    State(st): State<AppState>,
    caller: Caller,
    Path((k, id)): Path<(String, i64)>,
) -> Result<Json<Value>> {
    let kind = kind(&k)?;
    db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        let record = visibility::visible(c, &scope, kind, id)
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound(format!("there is no {k} {id} you may see")))?;
        let history = records::history(c, kind, id).map_err(internal)?;
        Ok(Json(json!({ "record": record, "history": history })))
    })
    .await
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
    let body = db(st, move |c| {
        let scope = Scope::of(c, &who).map_err(internal)?;
        let page =
            visibility::list(c, &scope, kind, &filter, now, false).map_err(ApiError::BadRequest)?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut columns = vec!["id"];
        columns.extend(kind.fields.iter().map(|f| f.name));
        columns.push("created_at");
        w.write_record(&columns).map_err(internal)?;
        for row in &page.items {
            let cells: Vec<String> = columns
                .iter()
                .map(|col| match row.get(*col) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
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

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Data rows read.
    pub rows: usize,
    /// Customers created.
    pub created: Vec<i64>,
    /// Rows skipped, with why.
    pub skipped: Vec<Skipped>,
}

/// A row not imported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// Its line in the file (the header is line 1).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// CSV import of customers: a header row of customer fields; each row is checked
/// like any record, deduplicated against existing customers (and earlier rows)
/// by e-mail, phone and company, and skipped with the reason when it fails.
/// A salesperson's rows are theirs; supervisors and admins may give `owner`.
async fn import_customers(
    State(st): State<AppState>,
    caller: Caller,
    body: String,
) -> Result<Json<ImportReport>> {
    import_for(&st, caller, body).await.map(Json)
}

/// The import both the API and the import page run.
pub(crate) async fn import_for(
    st: &AppState,
    caller: Caller,
    body: String,
) -> Result<ImportReport> {
    caller.require(SALES)?;
    let now = st.engine.now();
    db(st, move |c| {
        let tx = c.transaction().map_err(internal)?;
        let report = import(&tx, &caller, &body, now)?;
        tx.commit().map_err(internal)?;
        Ok(report)
    })
    .await
}

fn import(
    tx: &Connection,
    caller: &Caller,
    body: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ImportReport> {
    let customer = records::kind("customer").map_err(internal)?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(body.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("the CSV's header row: {e}")))?
        .clone();
    let may_set_owner = caller.0.has_any(MANAGERS);
    let why = Why {
        actor: Some(caller.0.user.clone()),
        reason: "CSV import".into(),
        at: now,
    };
    let mut report = ImportReport::default();
    for row in reader.records() {
        report.rows += 1;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                report.skipped.push(Skipped {
                    line,
                    reason: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        };
        let line = row.position().map_or(0, csv::Position::line);
        let mut fields = Map::new();
        for (h, v) in headers.iter().zip(row.iter()) {
            if v.is_empty() {
                continue;
            }
            let value = match customer.fields.iter().find(|f| f.name == h).map(|f| f.ty) {
                Some(records::Ty::Bool) => json!(matches!(v, "true" | "yes" | "1")),
                Some(records::Ty::Int) => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
                _ => json!(v),
            };
            fields.insert(h.to_owned(), value);
        }
        if !may_set_owner || !fields.contains_key("owner") {
            fields.insert("owner".into(), json!(caller.0.user));
        }
        fields.remove("in_pool");
        let dup =
            crate::actions::find_duplicate(tx, &Value::Object(fields.clone())).map_err(internal)?;
        if let Some(d) = dup {
            report.skipped.push(Skipped {
                line,
                reason: format!(
                    "same {} as {} {} (owner {})",
                    d["matched_on"].as_str().unwrap_or("key"),
                    d["record"].as_str().unwrap_or("record"),
                    d["id"],
                    d["owner"].as_str().unwrap_or("none: in the pool")
                ),
            });
            continue;
        }
        tx.execute_batch("SAVEPOINT row").map_err(internal)?;
        match records::create(tx, customer, &fields, &why) {
            Ok(id) => {
                tx.execute_batch("RELEASE row").map_err(internal)?;
                report.created.push(id);
            }
            Err(e) => {
                tx.execute_batch("ROLLBACK TO row; RELEASE row")
                    .map_err(internal)?;
                report.skipped.push(Skipped {
                    line,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(report)
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
    db(&st, move |c| {
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
    db(st, move |c| {
        let tx = c.transaction().map_err(internal)?;
        let why = Why {
            actor: Some(caller.0.user.clone()),
            reason: "claimed through the API".into(),
            at: now,
        };
        let record = pool::claim(&tx, &k, id, &caller.0.user, &why).map_err(|e| match e {
            pool::Refused::NotInPool(..) => ApiError::Conflict(e.to_string()),
            pool::Refused::Other(m) => ApiError::NotFound(m),
            other => ApiError::Unprocessable(other.to_string()),
        })?;
        tx.commit().map_err(internal)?;
        Ok(record)
    })
    .await
}

async fn pipeline(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<visibility::Stage>>> {
    db(&st, move |c| {
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
    db(&st, move |c| {
        let scope = Scope::of(c, &caller.0).map_err(internal)?;
        visibility::receivables(c, &scope, &filter, now).map_err(ApiError::BadRequest)
    })
    .await
    .map(Json)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    unread: Option<bool>,
    limit: Option<u32>,
}

async fn inbox(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<notify::InboxEntry>>> {
    let q: InboxQuery = query(q)?;
    db(&st, move |c| {
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

async fn read(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    let now = st.engine.now();
    db(&st, move |c| {
        if notify::mark_read(c, &caller.0.user, id, now).map_err(internal)? {
            Ok(Json(json!({ "id": id, "read": true })))
        } else {
            Err(ApiError::NotFound(format!(
                "there is no notification {id} in your inbox"
            )))
        }
    })
    .await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    status: Option<String>,
    limit: Option<u32>,
}

async fn outbox(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<deliver::OutboxRow>>> {
    caller.require(&[Role::Admin])?;
    let q: OutboxQuery = query(q)?;
    db(&st, move |c| {
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
    let now = st.engine.now();
    db(&st, move |c| {
        deliver::deliver_due(c, smtp.as_ref(), now, 1000).map_err(internal)
    })
    .await
    .map(Json)
}

async fn set_staff(
    State(st): State<AppState>,
    caller: Caller,
    Path(person): Path<String>,
    Body(mut staff): Body<org::Staff>,
) -> Result<Json<org::Staff>> {
    caller.require(&[Role::Admin])?;
    staff.person = person;
    db(&st, move |c| {
        org::set_staff(c, &staff).map_err(internal)?;
        Ok(Json(staff))
    })
    .await
}

async fn get_rules(State(st): State<AppState>, caller: Caller) -> Result<Json<Vec<assign::Rule>>> {
    caller.require(MANAGERS)?;
    db(&st, move |c| assign::rules(c).map_err(internal))
        .await
        .map(Json)
}

async fn put_rules(
    State(st): State<AppState>,
    caller: Caller,
    Body(rules): Body<Vec<assign::Rule>>,
) -> Result<Json<Vec<assign::Rule>>> {
    caller.require(MANAGERS)?;
    db(&st, move |c| {
        let tx = c.transaction().map_err(internal)?;
        assign::set_rules(&tx, &rules).map_err(ApiError::Unprocessable)?;
        tx.commit().map_err(internal)?;
        Ok(Json(rules))
    })
    .await
}

async fn get_pool_rules(State(st): State<AppState>, caller: Caller) -> Result<Json<pool::Rules>> {
    caller.require(SALES)?;
    db(&st, move |c| pool::rules(c).map_err(internal))
        .await
        .map(Json)
}

async fn put_pool_rules(
    State(st): State<AppState>,
    caller: Caller,
    Body(rules): Body<pool::Rules>,
) -> Result<Json<pool::Rules>> {
    caller.require(&[Role::Admin])?;
    db(&st, move |c| {
        pool::set_rules(c, &rules).map_err(internal)?;
        Ok(Json(rules))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Webhook {
    url: String,
    #[serde(default)]
    templates: Vec<String>,
}

async fn add_webhook(
    State(st): State<AppState>,
    caller: Caller,
    Body(hook): Body<Webhook>,
) -> Result<Json<Value>> {
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
    db(&st, move |c| {
        let templates = if hook.templates.is_empty() {
            "*".to_owned()
        } else {
            hook.templates.join(",")
        };
        c.execute(
            "INSERT INTO crm_webhooks (url, templates) VALUES (?1, ?2)",
            [&hook.url, &templates],
        )
        .map_err(internal)?;
        Ok(Json(
            json!({ "id": c.last_insert_rowid(), "url": hook.url, "templates": templates }),
        ))
    })
    .await
}
