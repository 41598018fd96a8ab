//! The CRM's pages, in the server's layout and behind its sign-in: customers
//! with the daily queries and CSV export, the public pool with claims, the
//! pipeline with receivables, notifications, and the CSV import. They call the
//! same visibility layer and rules as the API.

use crate::http::{self, Imports};
use crate::visibility::{self, Filter, Scope};
use crate::{import, notify, pool, records};
use axum::Router;
use axum::extract::{Extension, Form, Path, RawQuery, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use handlebars::Handlebars;
use ordo_server::auth::Role;
use ordo_server::pages::{NavEntry, PageError, PageResult, Viewer, plugin_page, redirect};
use ordo_server::{ApiError, AppState};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// The CRM's sections in the navigation bar (shown to those who may open them:
/// `crate::access`).
pub const NAV: &[NavEntry] = &[
    ("/crm", "Customers"),
    ("/crm/pool", "Pool"),
    ("/crm/pipeline", "Pipeline"),
    ("/crm/inbox", "Notifications"),
];

use crate::access::{CLAIMS, SALES as SEES};

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/crm", get(customers))
        .route("/crm/customers.csv", get(export))
        .route("/crm/customers/{id}", get(customer))
        .route("/crm/pool", get(pool_page))
        .route("/crm/pool/{kind}/{id}/claim", post(claim))
        .route("/crm/pipeline", get(pipeline))
        .route("/crm/inbox", get(inbox))
        .route("/crm/inbox/{id}/read", post(read))
        .route("/crm/import", get(import_page).post(import))
        .route("/crm/import/{id}", get(import_progress))
        .route("/crm/import/{id}/version", get(import_version))
}

fn templates() -> Result<&'static Handlebars<'static>, ApiError> {
    static T: OnceLock<Result<Handlebars<'static>, String>> = OnceLock::new();
    T.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        for (name, text) in [
            (
                "customers",
                include_str!("../templates/pages/customers.hbs"),
            ),
            ("pool", include_str!("../templates/pages/pool.hbs")),
            ("customer", include_str!("../templates/pages/customer.hbs")),
            ("pipeline", include_str!("../templates/pages/pipeline.hbs")),
            ("inbox", include_str!("../templates/pages/inbox.hbs")),
            ("import", include_str!("../templates/pages/import.hbs")),
            (
                "import_job",
                include_str!("../templates/pages/import_job.hbs"),
            ),
        ] {
            hb.register_template_string(name, text)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(hb)
    })
    .as_ref()
    .map_err(|e| ApiError::Internal(e.clone()))
}

fn page(viewer: &Viewer, title: &str, template: &str, data: &Value) -> PageResult {
    let body = templates()?
        .render(template, data)
        .map_err(|e| ApiError::Internal(format!("rendering {template}: {e}")))?;
    plugin_page(viewer, title, &body)
}

fn require(viewer: &Viewer, roles: &[Role]) -> Result<(), PageError> {
    viewer.0.require(roles).map_err(PageError)
}

/// The query without empty fields (an unselected filter is sent as `x=`).
fn clean(raw: Option<String>) -> Result<(Filter, String), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let text = serde_urlencoded::to_string(&kept).unwrap_or_default();
    let filter = serde_urlencoded::from_str(&text)
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    Ok((filter, text))
}

/// Records as table rows: these fields, a missing value shown empty (the
/// templates are strict, so every field they name must be there).
fn rows(items: &[Map<String, Value>], fields: &[&str]) -> Vec<Value> {
    items
        .iter()
        .map(|r| {
            fields
                .iter()
                .map(|k| {
                    let v = r.get(*k).cloned().filter(|v| !v.is_null());
                    ((*k).to_owned(), v.unwrap_or(json!("")))
                })
                .collect::<Map<String, Value>>()
                .into()
        })
        .collect()
}

fn with_page(query: &str, page: u32) -> String {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs.retain(|(k, _)| k != "page");
    pairs.push(("page".into(), page.to_string()));
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

async fn customers(
    State(st): State<AppState>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> PageResult {
    require(&viewer, SEES)?;
    let (filter, query) = clean(q)?;
    let now = st.engine.now();
    let who = viewer.who().clone();
    let f = filter.clone();
    let page_data = http::read_db(&st, move |c| {
        let scope = Scope::of(c, &who).map_err(http::internal)?;
        visibility::list(
            c,
            &scope,
            records::kind("customer").map_err(http::internal)?,
            &f,
            now,
            true,
        )
        .map_err(ApiError::BadRequest)
    })
    .await?;
    let pages = u32::try_from(
        (page_data.total + i64::from(page_data.per_page) - 1)
            / i64::from(page_data.per_page.max(1)),
    )
    .unwrap_or(1);
    let items = rows(
        &page_data.items,
        &[
            "id",
            "number",
            "name",
            "company",
            "phone",
            "type",
            "grade",
            "region",
            "owner",
            "last_contact_at",
            "next_contact_at",
        ],
    );
    let window = |w: Option<visibility::Window>| {
        w.map(|w| format!("{w:?}").to_lowercase())
            .unwrap_or_default()
    };
    let data = json!({
        "filter": {
            "q": filter.q.clone().unwrap_or_default(), "owner": filter.owner.clone().unwrap_or_default(),
            "type": filter.kind.clone().unwrap_or_default(), "grade": filter.grade.clone().unwrap_or_default(),
            "region": filter.region.clone().unwrap_or_default(),
            "contacted": window(filter.contacted), "to_visit": window(filter.to_visit), "added": window(filter.added),
        },
        "windows": [{"value": "today", "label": "today"}, {"value": "week", "label": "this week"}, {"value": "month", "label": "this month"}],
        "types": ["prospect", "intention", "paused"],
        "grades": ["ordinary", "vip"],
        "regions": ["east", "north", "north_east", "north_west", "south"],
        "total": page_data.total,
        "items": items,
        "page": page_data.page,
        "query": query,
        "prev": if page_data.page > 1 { Value::String(with_page(&query, page_data.page - 1)) } else { Value::Null },
        "next": if page_data.page < pages { Value::String(with_page(&query, page_data.page + 1)) } else { Value::Null },
    });
    page(&viewer, "Customers", "customers", &data)
}

async fn export(State(st): State<AppState>, viewer: Viewer, RawQuery(q): RawQuery) -> PageResult {
    require(&viewer, SEES)?;
    let (filter, _) = clean(q)?;
    Ok(
        http::export_csv(&st, viewer.who().clone(), "customer", filter)
            .await?
            .into_response(),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
struct Notice {
    claimed: Option<String>,
    error: Option<String>,
}

async fn pool_page(
    State(st): State<AppState>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> PageResult {
    require(&viewer, SEES)?;
    let notice: Notice = serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    let who = viewer.who().clone();
    let now = st.engine.now();
    let (customers, leads, rules) = http::read_db(&st, move |c| {
        let scope = Scope::of(c, &who).map_err(http::internal)?;
        let f = Filter::default();
        let k = |n| records::kind(n).map_err(http::internal);
        Ok((
            visibility::pool(c, &scope, k("customer")?, &f, now).map_err(http::internal)?,
            visibility::pool(c, &scope, k("lead")?, &f, now).map_err(http::internal)?,
            pool::rules(c).map_err(http::internal)?,
        ))
    })
    .await?;
    let blank = |p: visibility::Page| {
        let fields = [
            "id",
            "name",
            "company",
            "region",
            "pool_since",
            "previous_owner",
        ];
        json!({"total": p.total, "items": rows(&p.items, &fields)})
    };
    let data = json!({
        "notice": notice.claimed.map(|c| format!("Claimed {c}: it is yours now.")),
        "error": notice.error,
        "rules": rules,
        "can_claim": viewer.who().has_any(&[Role::Salesperson, Role::Supervisor]),
        "sections": [
            {"title": "Customers", "kind": "customer", "page": blank(customers)},
            {"title": "Leads", "kind": "lead", "page": blank(leads)},
        ],
    });
    page(&viewer, "Pool", "pool", &data)
}

async fn claim(
    State(st): State<AppState>,
    viewer: Viewer,
    Path((kind, id)): Path<(String, i64)>,
) -> PageResult {
    require(&viewer, CLAIMS)?;
    match http::claim_for(&st, &viewer.0, kind.clone(), id).await {
        Ok(record) => {
            let name = record
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("it")
                .to_owned();
            redirect(&format!(
                "/crm/pool?{}",
                serde_urlencoded::to_string([("claimed", name)]).unwrap_or_default()
            ))
        }
        Err(
            ApiError::Forbidden(m)
            | ApiError::Conflict(m)
            | ApiError::Unprocessable(m)
            | ApiError::NotFound(m),
        ) => redirect(&format!(
            "/crm/pool?{}",
            serde_urlencoded::to_string([("error", m)]).unwrap_or_default()
        )),
        Err(e) => Err(PageError(e)),
    }
}

async fn pipeline(State(st): State<AppState>, viewer: Viewer) -> PageResult {
    require(&viewer, SEES)?;
    let who = viewer.who().clone();
    let now = st.engine.now();
    let (stages, plans) = http::read_db(&st, move |c| {
        let scope = Scope::of(c, &who).map_err(http::internal)?;
        let stages = visibility::pipeline(c, &scope).map_err(http::internal)?;
        let plans = visibility::receivables(c, &scope, &Filter::default(), now)
            .map_err(ApiError::BadRequest)?;
        Ok((
            stages,
            rows(&plans.items, &["id", "owner", "total", "payment"]),
        ))
    })
    .await?;
    page(
        &viewer,
        "Pipeline",
        "pipeline",
        &json!({"stages": stages, "plans": plans}),
    )
}

async fn inbox(State(st): State<AppState>, viewer: Viewer) -> PageResult {
    let who = viewer.who().user.clone();
    let items = http::read_db(&st, move |c| {
        notify::inbox(c, &who, false, 100).map_err(http::internal)
    })
    .await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|n| json!({"id": n.id, "subject": n.subject, "body": n.body, "created_at": n.created_at, "read_at": n.read_at.unwrap_or_default()}))
        .collect();
    page(&viewer, "Notifications", "inbox", &json!({"items": items}))
}

async fn read(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> PageResult {
    let who = viewer.who().user.clone();
    let now = st.engine.now();
    http::write_db(&st, move |c| {
        notify::mark_read(c, &who, id, now).map_err(http::internal)
    })
    .await?;
    redirect("/crm/inbox")
}

/// What a customer page lists of the records linked to the customer: the
/// kind, its heading, and the columns shown.
const LINKED: &[(&str, &str, &[&str])] = &[
    ("contact", "Contacts", &["name", "title", "phone", "email"]),
    (
        "opportunity",
        "Opportunities",
        &["name", "stage", "probability", "amount", "status", "owner"],
    ),
    (
        "quote",
        "Quotes",
        &["amount", "discount", "valid_until", "approval_status"],
    ),
    (
        "order",
        "Orders",
        &["kind", "amount", "status", "review_status"],
    ),
    ("contract", "Contracts", &["amount", "status", "signed_at"]),
    (
        "followup",
        "Follow-ups",
        &["at", "subject", "content", "owner"],
    ),
    (
        "complaint",
        "Complaints",
        &["subject", "status", "created_at"],
    ),
    (
        "return_visit",
        "Return visits",
        &["at", "satisfaction", "content"],
    ),
];

/// One customer the viewer may see: its fields, the records linked to it
/// (each through the same visibility layer) and its audit trail.
async fn customer(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> PageResult {
    require(&viewer, SEES)?;
    let who = viewer.who().clone();
    let now = st.engine.now();
    let (record, linked, history) = http::read_db(&st, move |c| {
        let scope = Scope::of(c, &who).map_err(http::internal)?;
        let kind = records::kind("customer").map_err(http::internal)?;
        let (record, history) = http::with_history(c, &scope, kind, id)?;
        let mut linked = Vec::new();
        for (name, heading, columns) in LINKED {
            let k = records::kind(name).map_err(http::internal)?;
            let filter = Filter {
                customer_id: Some(id),
                per_page: Some(visibility::MAX_PER_PAGE),
                ..Filter::default()
            };
            let found = visibility::list(c, &scope, k, &filter, now, true)
                .map_err(http::internal)?;
            let shown: Vec<&str> = columns.iter().copied().filter(|f| k.fields.iter().any(|x| x.name == *f) || *f == "created_at").collect();
            linked.push(json!({
                "kind": name,
                "heading": heading,
                "total": found.total,
                "columns": shown,
                "rows": found.items.iter().map(|r| shown.iter().map(|f| r.get(*f).cloned().filter(|v| !v.is_null()).unwrap_or(json!(""))).collect::<Vec<_>>()).collect::<Vec<_>>(),
            }));
        }
        Ok((record, linked, history))
    })
    .await?;
    let fields: Vec<Value> = records::kind("customer")
        .map(|k| k.fields)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let v = record.get(f.name).cloned().filter(|v| !v.is_null());
            json!({"label": f.name.replace('_', " "), "value": v.map(|v| match v { Value::String(s) => s, other => other.to_string() }).unwrap_or_default()})
        })
        .collect();
    let history: Vec<Value> = history
        .into_iter()
        .map(|h| {
            let changed = |v: Option<Value>| v.map(|v| v.to_string()).unwrap_or_default();
            json!({"at": h.at, "actor": h.actor.unwrap_or_default(), "change": h.change, "before": changed(h.before), "after": changed(h.after), "why": h.why})
        })
        .collect();
    let name = record
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("Customer")
        .to_owned();
    page(
        &viewer,
        &name,
        "customer",
        &json!({"id": id, "name": name, "fields": fields, "linked": linked, "history": history}),
    )
}

async fn import_page(State(st): State<AppState>, viewer: Viewer) -> PageResult {
    import_form(&st, &viewer, "name,company,phone,email,region\n", None).await
}

/// The import form with the viewer's recent imports, and `error` when a file
/// was refused (the text is kept so it can be corrected).
async fn import_form(
    st: &AppState,
    viewer: &Viewer,
    csv: &str,
    error: Option<String>,
) -> PageResult {
    require(viewer, SEES)?;
    let jobs = http::imports_of(st, viewer.0.clone(), 20).await?;
    let jobs: Vec<Value> = jobs.iter().map(job_row).collect();
    page(
        viewer,
        "Import customers",
        "import",
        &json!({
            "fields": import::importable_fields().join(", "),
            "csv": csv,
            "error": error.unwrap_or_default(),
            "jobs": jobs,
        }),
    )
}

fn job_row(j: &import::Job) -> Value {
    json!({
        "id": j.id,
        "status": j.status,
        "total": j.total,
        "processed": j.processed,
        "percent": j.percent(),
        "created": j.created,
        "skipped": j.skipped_rows,
        "submitted_by": j.submitted_by,
        "submitted_at": j.submitted_at,
        "error": j.error.clone().unwrap_or_default(),
        "finished": j.finished(),
    })
}

#[derive(Debug, serde::Deserialize)]
struct ImportForm {
    csv: String,
}

/// Queues the import and shows its progress page.
async fn import(
    State(st): State<AppState>,
    Extension(imports): Extension<Imports>,
    viewer: Viewer,
    Form(f): Form<ImportForm>,
) -> PageResult {
    require(&viewer, SEES)?;
    match http::submit_import(&st, &imports, viewer.0.clone(), f.csv.clone()).await {
        Ok(job) => redirect(&format!("/crm/import/{}", job.id)),
        Err(ApiError::BadRequest(why)) => import_form(&st, &viewer, &f.csv, Some(why)).await,
        Err(e) => Err(e.into()),
    }
}

/// One import: a progress bar while it runs (the page follows it), then what
/// was created and every skipped row with why.
async fn import_progress(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> PageResult {
    let job = http::import_job(&st, &viewer.0, id, true).await?;
    let skipped: Vec<Value> = job
        .skipped
        .iter()
        .map(|s| json!({"line": s.line, "reason": s.reason}))
        .collect();
    page(
        &viewer,
        &format!("Import {id}"),
        "import_job",
        &json!({"job": job_row(&job), "rows": skipped, "revision": revision(&job)}),
    )
}

fn revision(job: &import::Job) -> String {
    format!("{}-{}", job.status, job.processed)
}

/// What the progress page polls: it reloads when this changes.
async fn import_version(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<axum::Json<Value>, PageError> {
    let job = http::import_job(&st, &viewer.0, id, false).await?;
    Ok(axum::Json(json!({"revision": revision(&job)})))
}
