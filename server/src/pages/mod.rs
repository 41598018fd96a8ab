//! The pages: server-rendered HTML for the people who use Ordo in a browser.
//!
//! - staff: the task inbox (`/tasks`), a task with its form (`/tasks/{i}/{a}`);
//! - admins (and supervisors, reading): the monitor (`/monitor`), one instance
//!   with its diagram, variables, history and incidents (`/monitor/{id}`);
//! - designers: definitions with versions and diagrams, and a YAML editor that
//!   checks and deploys (`/designer`);
//! - maintenance: the backup page (`/backup`).
//!
//! Every page is rendered on the server from a handlebars template (HTML-escaped,
//! strict mode: a template naming a value the handler did not give fails its
//! test). Forms post back to the server; the only script (`/static/ordo.js`)
//! loads a YAML file into the editor and refreshes an instance page when the
//! instance changes. People sign in with a name and a password and stay signed
//! in through a session cookie; the permission checks are the API's own
//! (`crate::api`), so a page never shows what the API would refuse.

mod designer;
mod form;
mod monitor;
mod tasks;

use crate::AppState;
use crate::api::Caller;
use crate::auth::Identity;
use crate::error::ApiError;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use handlebars::Handlebars;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ordo_session";

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/static/ordo.css", get(css))
        .route("/static/ordo.js", get(js))
        .route("/tasks", get(tasks::inbox))
        .route("/tasks/{instance}/{activity}", get(tasks::task))
        .route("/tasks/{instance}/{activity}/claim", post(tasks::claim))
        .route("/tasks/{instance}/{activity}/unclaim", post(tasks::unclaim))
        .route(
            "/tasks/{instance}/{activity}/delegate",
            post(tasks::delegate),
        )
        .route(
            "/tasks/{instance}/{activity}/complete",
            post(tasks::complete),
        )
        .route("/monitor", get(monitor::list))
        .route("/monitor/{id}", get(monitor::instance))
        .route("/monitor/{id}/version", get(monitor::version))
        .route("/monitor/{id}/cancel", post(monitor::cancel))
        .route(
            "/monitor/{id}/incidents/{activity}/retry",
            post(monitor::retry),
        )
        .route(
            "/monitor/{id}/incidents/{activity}/resolve",
            post(monitor::resolve),
        )
        .route("/designer", get(designer::list).post(designer::submit))
        .route("/designer/new", get(designer::editor))
        .route("/designer/{id}", get(designer::definition))
        .route("/backup", get(backup_page).post(backup))
        .layer(axum::middleware::from_fn(guard))
}

/// A plugin's pages, behind the same origin check and headers as the server's.
pub fn guarded(pages: Router<AppState>) -> Router<AppState> {
    pages.layer(axum::middleware::from_fn(guard))
}

/// What every page response carries, and what every form post must show: a
/// request from another site (its `Origin` is not this host) is refused, on top
/// of the `SameSite=Strict` cookie.
async fn guard(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "this form was posted from another site; open the page on this server and post it from there",
        )
            .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// Whether a request's `Origin` (when it sends one) names the host it was sent
/// to. Browsers send `Origin` with every form post.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

/// The signed-in person, from the session cookie. Without one, a page answers
/// with a redirect to the sign-in page (which comes back here after).
#[derive(Debug, Clone)]
pub struct Viewer(pub Caller);

impl Viewer {
    /// Who is signed in.
    pub fn who(&self) -> &Identity {
        &self.0.0
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(v) = parts.extensions.get::<Viewer>() {
            return Ok(v.clone());
        }
        let to_sign_in = || {
            let here = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let back = if parts.method == Method::GET {
                here
            } else {
                "/".to_owned()
            };
            let q = serde_urlencoded::to_string([("next", back)]).unwrap_or_default();
            Redirect::to(&format!("/sign-in?{q}")).into_response()
        };
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) else {
            return Err(to_sign_in());
        };
        let dir = std::sync::Arc::clone(&state.directory);
        let found = tokio::task::spawn_blocking(move || dir.session(&id))
            .await
            .map_err(|e| PageError(ApiError::Internal(e.to_string())).into_response())?
            .map_err(|e| PageError(ApiError::from(e)).into_response())?;
        match found {
            Some(who) => Ok(Viewer(Caller(who))),
            None => Err(to_sign_in()),
        }
    }
}

/// A failed page: the API's error, shown as a page with the same status.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, _) = self.0.status();
        let message = match &self.0 {
            ApiError::Internal(detail) => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("ordo: internal error: {detail}");
                }
                "Something went wrong on the server; the operator's log has the details.".to_owned()
            }
            ApiError::Unauthenticated => "Sign in first.".to_owned(),
            e => e.to_string(),
        };
        let body = render(
            "error",
            &json!({ "title": status.canonical_reason().unwrap_or("Error"), "message": message }),
        )
        .and_then(|b| layout(None, "Error", &b))
        .unwrap_or(message);
        (status, Html(body)).into_response()
    }
}

/// What a page handler returns.
pub type PageResult = Result<Response, PageError>;

/// An HTML body.
struct Html(String);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], self.0).into_response()
    }
}

fn templates() -> Result<&'static Handlebars<'static>, ApiError> {
    static TEMPLATES: OnceLock<Result<Handlebars<'static>, String>> = OnceLock::new();
    TEMPLATES
        .get_or_init(|| {
            let mut hb = Handlebars::new();
            hb.set_strict_mode(true);
            let all = [
                ("layout", include_str!("../../templates/layout.hbs")),
                ("error", include_str!("../../templates/error.hbs")),
                ("sign_in", include_str!("../../templates/sign_in.hbs")),
                ("backup", include_str!("../../templates/backup.hbs")),
                ("inbox", include_str!("../../templates/inbox.hbs")),
                ("task", include_str!("../../templates/task.hbs")),
                ("monitor", include_str!("../../templates/monitor.hbs")),
                ("instance", include_str!("../../templates/instance.hbs")),
                ("designer", include_str!("../../templates/designer.hbs")),
                ("definition", include_str!("../../templates/definition.hbs")),
                ("editor", include_str!("../../templates/editor.hbs")),
            ];
            for (name, text) in all {
                hb.register_template_string(name, text)
                    .map_err(|e| format!("template {name}: {e}"))?;
            }
            Ok(hb)
        })
        .as_ref()
        .map_err(|e| ApiError::Internal(e.clone()))
}

fn render(name: &str, data: &Value) -> Result<String, ApiError> {
    templates()?
        .render(name, data)
        .map_err(|e| ApiError::Internal(format!("rendering {name}: {e}")))
}

/// The page around a body: title, navigation for the viewer's roles, sign-out.
fn layout(viewer: Option<&Viewer>, title: &str, body: &str) -> Result<String, ApiError> {
    let nav = viewer.map(|v| {
        let who = v.who();
        let links: Vec<Value> = sections(who)
            .into_iter()
            .map(|(href, label)| json!({ "href": href, "label": label }))
            .collect();
        json!({ "user": who.user, "links": links })
    });
    render(
        "layout",
        &json!({ "title": title, "body": body, "nav": nav }),
    )
}

/// The sections of the navigation bar the viewer may open, by the access table.
fn sections(who: &Identity) -> Vec<NavEntry> {
    let extra = PLUGIN_NAV.read().map(|n| n.clone()).unwrap_or_default();
    let table = ACCESS.read().ok().and_then(|t| t.clone());
    NAV.iter()
        .copied()
        .chain(extra)
        .filter(|(href, _)| table.as_ref().is_some_and(|t| t.may_open(who, href)))
        .collect()
}

/// The server's sections of the navigation bar; who sees each is who may open
/// it (`crate::access`).
const NAV: &[NavEntry] = &[
    ("/tasks", "Tasks"),
    ("/monitor", "Monitor"),
    ("/designer", "Designer"),
    ("/backup", "Backup"),
];

/// Navigation entries plugins add (after the server's own), by `add_nav`.
static PLUGIN_NAV: std::sync::RwLock<Vec<NavEntry>> = std::sync::RwLock::new(Vec::new());

/// The access table the navigation reads (set when the router is built).
static ACCESS: std::sync::RwLock<Option<std::sync::Arc<crate::access::Table>>> =
    std::sync::RwLock::new(None);

/// Makes `table` the one the navigation bar follows.
pub(crate) fn set_access(table: std::sync::Arc<crate::access::Table>) {
    if let Ok(mut t) = ACCESS.write() {
        *t = Some(table);
    }
}

/// A navigation link: where and its label. Who sees it is who may open it.
pub type NavEntry = (&'static str, &'static str);

/// Adds a plugin's section to the navigation bar (once per `href`).
pub fn add_nav(entry: NavEntry) {
    if let Ok(mut nav) = PLUGIN_NAV.write()
        && !nav.iter().any(|e| e.0 == entry.0)
    {
        nav.push(entry);
    }
}

/// A plugin's page: its body (HTML the plugin rendered, values escaped) inside
/// the server's layout, navigation and headers.
pub fn plugin_page(viewer: &Viewer, title: &str, body: &str) -> PageResult {
    Ok(Html(layout(Some(viewer), title, body)?).into_response())
}

/// A redirect after a form post.
pub fn redirect(to: &str) -> PageResult {
    see_other(to)
}

use crate::access::{BACKUP, DESIGNERS};

/// A whole page for a signed-in viewer.
fn page(viewer: &Viewer, title: &str, template: &str, data: &Value) -> PageResult {
    page_with_status(viewer, StatusCode::OK, title, template, data)
}

fn page_with_status(
    viewer: &Viewer,
    status: StatusCode,
    title: &str,
    template: &str,
    data: &Value,
) -> PageResult {
    let body = render(template, data)?;
    Ok((status, Html(layout(Some(viewer), title, &body)?)).into_response())
}

/// A stored time (RFC 3339) as people read it: to the second, in UTC.
fn when(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t).map_or_else(
        |_| t.to_owned(),
        |d| d.naive_utc().format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// After a form post: go to `to` (303, so a reload does not post again).
fn see_other(to: &str) -> PageResult {
    Ok(Redirect::to(to).into_response())
}

/// Where someone goes first: their inbox if they work tasks, else the first
/// section their roles open.
async fn home(viewer: Viewer) -> PageResult {
    let who = viewer.who();
    match sections(who).first() {
        Some((href, _)) => see_other(href),
        None => Err(PageError(ApiError::Forbidden(format!(
            "`{}` has no pages to use; integrators work through the API (/api/openapi.json)",
            who.user
        )))),
    }
}

#[derive(Debug, Default, Deserialize)]
struct SignInQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    name: String,
    password: String,
    next: Option<String>,
}

/// Only a path on this site is a place to go back to: after parsing, no scheme
/// and no authority; no backslash (browsers read it as `/`) and no control
/// character (browsers drop tabs and newlines, so `/\t/evil.example` would be
/// `//evil.example`, and a newline cannot go in a header). Anything else is `/`.
fn safe_next(next: Option<&str>) -> &str {
    let Some(n) = next else { return "/" };
    // Printable ASCII only (a real path arrives percent-encoded), no empty or
    // dot segment (`//`, `/../`), which browsers may turn into another host.
    let path = n.split(['?', '#']).next().unwrap_or_default();
    let plain = n.starts_with('/')
        && n.chars().all(|c| c.is_ascii_graphic())
        && !n.contains('\\')
        && !path.contains("//")
        && !path.split('/').any(|seg| seg == "." || seg == "..");
    let local = plain
        && n.parse::<axum::http::Uri>()
            .is_ok_and(|u| u.scheme().is_none() && u.authority().is_none());
    if local { n } else { "/" }
}

async fn sign_in_page(Query(q): Query<SignInQuery>) -> PageResult {
    sign_in_form(StatusCode::OK, "", safe_next(q.next.as_deref()), None)
}

fn sign_in_form(status: StatusCode, name: &str, next: &str, error: Option<&str>) -> PageResult {
    let body = render(
        "sign_in",
        &json!({ "name": name, "next": next, "error": error }),
    )?;
    Ok((status, Html(layout(None, "Sign in", &body)?)).into_response())
}

async fn sign_in(State(st): State<AppState>, Form(f): Form<SignInForm>) -> PageResult {
    let next = safe_next(f.next.as_deref()).to_owned();
    let dir = std::sync::Arc::clone(&st.directory);
    let (name, password) = (f.name.trim().to_owned(), f.password);
    let who = name.clone();
    let session = tokio::task::spawn_blocking(move || dir.sign_in(&who, &password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let Some((id, _)) = session else {
        return sign_in_form(
            StatusCode::UNAUTHORIZED,
            &name,
            &next,
            Some(
                "That name and password do not match. Ask an admin to set your password with `ordo user passwd NAME`.",
            ),
        );
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        crate::auth::SESSION_HOURS * 3600
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

async fn sign_out(State(st): State<AppState>, headers: HeaderMap) -> PageResult {
    if let Some(id) = cookie(&headers, SESSION_COOKIE).map(str::to_owned) {
        let dir = std::sync::Arc::clone(&st.directory);
        tokio::task::spawn_blocking(move || dir.sign_out(&id))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    }
    Ok((
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/sign-in"),
    )
        .into_response())
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/ordo.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/ordo.js"),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn backup_page(viewer: Viewer, Query(q): Query<DoneQuery>) -> PageResult {
    viewer.0.require(BACKUP)?;
    page(&viewer, "Backup", "backup", &json!({ "done": q.done }))
}

async fn backup(State(st): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.0.require(BACKUP)?;
    let (path, bytes) = crate::api::take_backup(&st).await?;
    let q = serde_urlencoded::to_string([("done", format!("{} ({bytes} bytes)", path.display()))])
        .unwrap_or_default();
    see_other(&format!("/backup?{q}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        assert!(templates().is_ok(), "{:?}", templates().err());
    }

    #[test]
    fn only_paths_on_this_site_are_places_to_return_to() {
        assert_eq!(safe_next(Some("/tasks?view=groups")), "/tasks?view=groups");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/tasks\r\nSet-Cookie: x=1")), "/");
        assert_eq!(safe_next(Some("/\u{7f}/evil.example")), "/");
        assert_eq!(safe_next(Some("/%09/evil.example")), "/%09/evil.example");
        assert_eq!(safe_next(Some("/..//evil.example")), "/");
        assert_eq!(safe_next(Some("/a/../b")), "/");
        assert_eq!(safe_next(Some("/tasks//x")), "/");
        assert_eq!(safe_next(Some("/\u{ff}\u{fe}")), "/");
        assert_eq!(safe_next(Some("/crm?q=a//b")), "/crm?q=a//b");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn a_post_from_another_site_is_not_same_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h), "no Origin: a non-browser client");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn times_are_shown_to_the_second_in_utc() {
        assert_eq!(
            when("2026-11-23T19:12:12.577217143+08:00"),
            "2026-11-23 11:12:12 UTC"
        );
        assert_eq!(when("not a time"), "not a time");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; ordo_session=abc123; x=y"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc123"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
