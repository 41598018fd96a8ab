//! Who may open what: one table per component, the single source of truth.
//!
//! Every route of the server (API and pages) and of each plugin has one [`Rule`]:
//! its method and path as the router declares them, who may call it, and a note
//! for people. [`enforce_api`] and [`enforce_page`] check the rule of the matched
//! route before any handler runs, and refuse a route that has no rule (deny by
//! default, so a route added without a rule is closed, and a test names it).
//! Handlers still make the checks that depend on the data (a task's holders, a
//! record's owner, a process's `starters`); the role gate is here.
//!
//! The README's route tables are generated from these tables ([`markdown`]) and
//! a test fails when they differ; the role × route matrix tests take the allowed
//! roles from here and check that the running server agrees.

use crate::AppState;
use crate::api::Caller;
use crate::auth::{Identity, Role};
use crate::error::ApiError;
use crate::pages::{PageError, Viewer};
use Who::{Public, Roles, SignedIn};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Anyone, without signing in.
    Public,
    /// Anyone signed in (the handler decides what they see).
    SignedIn,
    /// People with one of these roles.
    Roles(&'static [Role]),
}

impl Who {
    /// Whether `who` passes this gate.
    pub fn admits(self, who: &Identity) -> bool {
        match self {
            Public | SignedIn => true,
            Roles(roles) => who.has_any(roles),
        }
    }

    /// The roles admitted, in [`Role::ALL`] order.
    pub fn roles(self) -> Vec<Role> {
        match self {
            Public | SignedIn => Role::ALL.to_vec(),
            Roles(roles) => Role::ALL
                .into_iter()
                .filter(|r| roles.contains(r))
                .collect(),
        }
    }

    fn describe(self) -> String {
        match self {
            Public => "anyone (no sign-in)".into(),
            SignedIn => "anyone signed in".into(),
            Roles(_) => self
                .roles()
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// One route's access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: &'static str,
    /// The path as the router declares it (`/api/tasks/{instance}/{activity}`).
    pub path: &'static str,
    /// Who may call it.
    pub who: Who,
    /// What it does and any finer rule, for the README.
    pub note: &'static str,
}

/// A rule, for the tables (`rule("GET", "/api/tasks", Roles(STAFF), "…")`).
pub const fn rule(method: &'static str, path: &'static str, who: Who, note: &'static str) -> Rule {
    Rule {
        method,
        path,
        who,
        note,
    }
}

/// Who works tasks.
pub const STAFF: &[Role] = &[
    Role::Salesperson,
    Role::Supervisor,
    Role::Admin,
    Role::Designer,
];
/// Who watches instances.
pub const WATCHERS: &[Role] = &[Role::Supervisor, Role::Admin];
/// Who reads one instance through the API: its watchers, and integrators (to
/// address its activities, such as a multi-instance activity to add runs to).
pub const INSTANCE_READERS: &[Role] = &[Role::Supervisor, Role::Admin, Role::Integrator];
/// Who writes and deploys definitions.
pub const DESIGNERS: &[Role] = &[Role::Designer, Role::Admin];
/// Who reads definitions.
pub const READERS: &[Role] = &[Role::Designer, Role::Admin, Role::Supervisor];
/// Other systems, and admins.
pub const INTEGRATORS: &[Role] = &[Role::Integrator, Role::Admin];
/// Who takes backups.
pub const BACKUP: &[Role] = &[Role::Maintenance, Role::Admin];
/// Admins only.
pub const ADMIN: &[Role] = &[Role::Admin];

/// The server's own routes: the API, the pages, health and metrics.
pub const SERVER: &[Rule] = &[
    rule("GET", "/health", Public, "liveness"),
    rule(
        "GET",
        "/metrics",
        Public,
        "Prometheus text: commands, commits, instances started and completed, active instances, open tasks and incidents; counts only",
    ),
    rule(
        "POST",
        "/api/definitions",
        Roles(DESIGNERS),
        "deploy (YAML body, `?name=F` for diagnostics)",
    ),
    rule(
        "GET",
        "/api/definitions",
        Roles(READERS),
        "every deployed version",
    ),
    rule(
        "GET",
        "/api/definitions/{id}",
        Roles(READERS),
        "`?version=N`: source and versions",
    ),
    rule(
        "GET",
        "/api/definitions/{id}/diagram",
        Roles(READERS),
        "`?format=mermaid|dot`",
    ),
    rule(
        "POST",
        "/api/instances",
        SignedIn,
        "`{process, version?, business_key?, variables?}`; only those the process's `starters` name (roles, groups, people); without `starters`: admins and designers; admins always",
    ),
    rule(
        "GET",
        "/api/instances",
        Roles(WATCHERS),
        "`?process=&status=&business_key=&offset=&limit=`; supervisors: the instances (with their whole tree) where they or someone below them in the reporting line held a task",
    ),
    rule(
        "GET",
        "/api/instances/{id}",
        Roles(INSTANCE_READERS),
        "state, variables, history, tree, the activity instances that wait (`waiting`) and the tokens held before a milestone, section or join (`held`); for a supervisor, one of their team's (404 otherwise); for an integrator, one of a process it may start, without variables, history or tree (to address its activities)",
    ),
    rule("POST", "/api/instances/{id}/cancel", Roles(ADMIN), ""),
    rule(
        "POST",
        "/api/instances/{id}/activities/{activity}/runs",
        Roles(INTEGRATORS),
        "`{items}`: a run per item added to a running multi-instance activity of a process the caller may start (422 when it is not one, or past 10,000 runs)",
    ),
    rule(
        "POST",
        "/api/messages",
        Roles(INTEGRATORS),
        "`{name, correlation_key?, message_id?, variables?, ttl?}`; checked against the payload the processes declare (`messages:`), 422 before anything happens",
    ),
    rule(
        "POST",
        "/api/signals",
        Roles(INTEGRATORS),
        "`{name, variables?}`",
    ),
    rule(
        "GET",
        "/api/tasks",
        Roles(STAFF),
        "`?view=mine|groups|overdue` (overdue: supervisors, their team's; admins, all)",
    ),
    rule(
        "GET",
        "/api/tasks/{instance}/{activity}",
        Roles(STAFF),
        "with its form; visible to its assignee and candidates (not to those it excludes), their supervisors up the reporting line, and admins; 409 once closed, saying who closed it and when",
    ),
    rule(
        "POST",
        "/api/tasks/{instance}/{activity}/claim",
        Roles(STAFF),
        "a task the caller may see and the task does not exclude",
    ),
    rule(
        "POST",
        "/api/tasks/{instance}/{activity}/unclaim",
        Roles(STAFF),
        "its holder",
    ),
    rule(
        "POST",
        "/api/tasks/{instance}/{activity}/delegate",
        Roles(STAFF),
        "`{to}`: by the task's holder, their supervisors or an admin; to a person in the directory whom the task does not exclude",
    ),
    rule(
        "POST",
        "/api/tasks/{instance}/{activity}/complete",
        Roles(STAFF),
        "`{variables}`: its assignee, or an admin, never someone it excludes",
    ),
    rule(
        "GET",
        "/api/incidents",
        Roles(ADMIN),
        "`?all=&offset=&limit=`",
    ),
    rule(
        "POST",
        "/api/incidents/{instance}/{activity}/retry",
        Roles(ADMIN),
        "`{variables?, retries?}`",
    ),
    rule(
        "POST",
        "/api/incidents/{instance}/{activity}/resolve",
        Roles(ADMIN),
        "`{variables?}`",
    ),
    rule(
        "POST",
        "/api/backup",
        Roles(BACKUP),
        "an online copy into `--backups` (default `backups/`)",
    ),
    rule(
        "GET",
        "/api/openapi.json",
        Public,
        "this API as OpenAPI 3.1",
    ),
    // Pages.
    rule(
        "GET",
        "/",
        SignedIn,
        "the first section the viewer's roles open",
    ),
    rule("GET", "/sign-in", Public, ""),
    rule("POST", "/sign-in", Public, ""),
    rule("POST", "/sign-out", Public, ""),
    rule("GET", "/static/ordo.css", Public, ""),
    rule("GET", "/static/ordo.js", Public, ""),
    rule(
        "GET",
        "/tasks",
        Roles(STAFF),
        "my tasks, my groups' tasks, overdue (supervisors: their team's)",
    ),
    rule(
        "GET",
        "/tasks/{instance}/{activity}",
        Roles(STAFF),
        "a task with its form (who may see it: as the API)",
    ),
    rule(
        "POST",
        "/tasks/{instance}/{activity}/claim",
        Roles(STAFF),
        "",
    ),
    rule(
        "POST",
        "/tasks/{instance}/{activity}/unclaim",
        Roles(STAFF),
        "",
    ),
    rule(
        "POST",
        "/tasks/{instance}/{activity}/delegate",
        Roles(STAFF),
        "",
    ),
    rule(
        "POST",
        "/tasks/{instance}/{activity}/complete",
        Roles(STAFF),
        "",
    ),
    rule(
        "GET",
        "/monitor",
        Roles(WATCHERS),
        "instances by process, state and business key (supervisors: their team's)",
    ),
    rule(
        "GET",
        "/monitor/{id}",
        Roles(WATCHERS),
        "an instance with its diagram, variables, history, children",
    ),
    rule("GET", "/monitor/{id}/version", Roles(WATCHERS), ""),
    rule("POST", "/monitor/{id}/cancel", Roles(ADMIN), ""),
    rule(
        "POST",
        "/monitor/{id}/incidents/{activity}/retry",
        Roles(ADMIN),
        "",
    ),
    rule(
        "POST",
        "/monitor/{id}/incidents/{activity}/resolve",
        Roles(ADMIN),
        "",
    ),
    rule(
        "GET",
        "/designer",
        Roles(DESIGNERS),
        "definitions with versions, diagrams and source",
    ),
    rule(
        "POST",
        "/designer",
        Roles(DESIGNERS),
        "check or deploy a YAML file",
    ),
    rule("GET", "/designer/new", Roles(DESIGNERS), "the editor"),
    rule("GET", "/designer/{id}", Roles(DESIGNERS), ""),
    rule("GET", "/backup", Roles(BACKUP), ""),
    rule("POST", "/backup", Roles(BACKUP), "take an online backup"),
];

/// Every rule in force, by method and path.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rules: HashMap<(String, String), Rule>,
    order: Vec<Rule>,
}

impl Table {
    /// The table of these rules (a later rule for the same route is ignored).
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Table {
        let mut t = Table::default();
        for r in rules {
            let key = (r.method.to_owned(), r.path.to_owned());
            if let std::collections::hash_map::Entry::Vacant(e) = t.rules.entry(key) {
                e.insert(r);
                t.order.push(r);
            }
        }
        t
    }

    /// The rule of a route.
    pub fn rule(&self, method: &str, path: &str) -> Option<&Rule> {
        self.rules.get(&(method.to_owned(), path.to_owned()))
    }

    /// Whether `who` may `GET` the page at `path` (navigation shows only those).
    pub fn may_open(&self, who: &Identity, path: &str) -> bool {
        self.rule("GET", path).is_some_and(|r| r.who.admits(who))
    }

    /// Every rule, in declaration order.
    pub fn rules(&self) -> &[Rule] {
        &self.order
    }
}

/// What the gate does with a request.
enum Gate<'t> {
    /// The route's rule.
    Rule(&'t Rule),
    /// The path has rules, but not for this method: 405 with the methods it
    /// has (answered here, so no handler runs without its rule).
    OtherMethod(Vec<&'static str>),
}

/// The rule of the matched route, or the refusal for a route without one.
fn matched<'t>(table: &'t Table, req: &Request) -> Result<Gate<'t>, ApiError> {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or_default();
    let method = req.method().as_str();
    // HEAD is answered by the GET route.
    let method = if method == "HEAD" { "GET" } else { method };
    if let Some(rule) = table.rule(method, path) {
        return Ok(Gate::Rule(rule));
    }
    let allowed: Vec<&'static str> = table
        .rules()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.method)
        .collect();
    if !allowed.is_empty() {
        return Ok(Gate::OtherMethod(allowed));
    }
    Err(ApiError::Forbidden(format!(
        "{method} {path} has no access rule, so nobody may call it"
    )))
}

/// 405 with an `Allow` header: the route exists, not for this method.
fn not_allowed(method: &axum::http::Method, allowed: &[&str]) -> Response {
    let mut allow: Vec<&str> = allowed.to_vec();
    if allow.contains(&"GET") {
        allow.push("HEAD");
    }
    let list = allow.join(", ");
    let body = axum::Json(serde_json::json!({
        "error": "method_not_allowed",
        "message": format!("{method} is not a method of this route; it takes {list}"),
    }));
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, list)],
        body,
    )
        .into_response()
}

/// The API's gate: the bearer token's person must pass the route's rule. The
/// caller is kept in the request for the handler, so it is looked up once.
pub async fn enforce_api(
    State((table, state)): State<(Arc<Table>, AppState)>,
    req: Request,
    next: Next,
) -> Response {
    let rule = match matched(&table, &req) {
        Ok(Gate::Rule(r)) => *r,
        Ok(Gate::OtherMethod(allowed)) => return not_allowed(req.method(), &allowed),
        Err(e) => return e.into_response(),
    };
    if rule.who == Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Roles(roles) = rule.who
        && let Err(e) = caller.require(roles)
    {
        return e.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// The pages' gate: a signed-in viewer (else the sign-in page) who passes the
/// route's rule (else a 403 page). The viewer is kept for the handler.
pub async fn enforce_page(
    State((table, state)): State<(Arc<Table>, AppState)>,
    req: Request,
    next: Next,
) -> Response {
    let rule = match matched(&table, &req) {
        Ok(Gate::Rule(r)) => *r,
        Ok(Gate::OtherMethod(allowed)) => return not_allowed(req.method(), &allowed),
        Err(e) => return PageError(e).into_response(),
    };
    if rule.who == Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let viewer = match Viewer::from_request_parts(&mut parts, &state).await {
        Ok(v) => v,
        Err(redirect) => return redirect,
    };
    if let Roles(roles) = rule.who
        && let Err(e) = viewer.0.require(roles)
    {
        return PageError(e).into_response();
    }
    parts.extensions.insert(viewer);
    next.run(Request::from_parts(parts, body)).await
}

/// The rules as a Markdown table (the README's route tables are this text).
pub fn markdown(rules: &[Rule]) -> String {
    let mut out = String::from("| route | who | what |\n|---|---|---|\n");
    for r in rules {
        let note = r.note.replace('|', "\\|");
        let path = r.path.replace('|', "\\|");
        out.push_str(&format!(
            "| `{} {path}` | {} | {note} |\n",
            r.method,
            r.who.describe()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_route_has_exactly_one_rule() {
        let t = Table::new(SERVER.iter().copied());
        assert_eq!(t.rules().len(), SERVER.len(), "a route has two rules");
    }

    #[test]
    fn a_rule_admits_only_its_roles() {
        let who = |roles: Vec<Role>| Identity {
            user: "x".into(),
            roles,
            groups: vec![],
            supervisor: None,
        };
        let t = Table::new(SERVER.iter().copied());
        let backup = t.rule("POST", "/api/backup").map(|r| r.who);
        assert_eq!(backup, Some(Roles(BACKUP)));
        assert!(t.may_open(&who(vec![Role::Maintenance]), "/backup"));
        assert!(!t.may_open(&who(vec![Role::Salesperson]), "/backup"));
        assert!(!t.may_open(&who(vec![Role::Admin]), "/no-such-page"));
    }
}
