//! The pages end to end over HTTP, as a browser sends requests (form posts, the
//! session cookie): signing in, the inbox and a task's form, the monitor, the
//! designer, and every page route × every role. `browser.rs` drives the same
//! pages in a real Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

mod common;
use common::FLOW;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ordo_engine::engine::{Config, Engine};
use ordo_server::access::{SERVER, Table, Who};
use ordo_server::auth::{Directory, Role};
use ordo_server::{AppState, router};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tower::ServiceExt;

const PASSWORD: &str = "test password";

struct Site {
    app: axum::Router,
    engine: Arc<Engine>,
    sessions: HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    headers: axum::http::HeaderMap,
    html: String,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordo.db");
    let engine = Arc::new(Engine::open(Config::new(db.clone())).unwrap());
    engine.deploy("expense.yaml", FLOW).await.unwrap();
    let directory = Arc::new(Directory::open(&db).unwrap());
    let people: [(&str, &[Role], &[&str]); 7] = [
        ("ann", &[Role::Salesperson], &["finance"]),
        ("bob", &[Role::Salesperson], &["sales"]),
        ("sue", &[Role::Supervisor], &[]),
        ("root", &[Role::Admin], &[]),
        ("dee", &[Role::Designer], &[]),
        ("max", &[Role::Maintenance], &[]),
        ("erp", &[Role::Integrator], &[]),
    ];
    common::add_people(&directory, &people, "sue");
    for (name, ..) in people {
        directory.set_password(name, PASSWORD).unwrap();
    }
    let app = router(AppState {
        engine: Arc::clone(&engine),
        directory,
        backups: dir.path().join("backups"),
    });
    let mut site = Site {
        app,
        engine,
        sessions: HashMap::new(),
        _dir: dir,
    };
    for (name, ..) in people {
        let p = site
            .post(None, "/sign-in", &[("name", name), ("password", PASSWORD)])
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{name}: {}", p.html);
        let cookie = p.cookie.expect("a session cookie");
        site.sessions.insert(name, cookie);
    }
    site
}

impl Site {
    async fn send(&self, req: Request<Body>) -> Page {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let location = headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let cookie = headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            location,
            cookie,
            headers,
            html: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn session(&self, who: Option<&str>) -> Option<String> {
        who.map(|w| {
            let c = &self.sessions[w];
            c.split(';').next().unwrap().to_owned()
        })
    }

    async fn get(&self, who: Option<&str>, path: &str) -> Page {
        let mut req = Request::get(path).header(header::HOST, "ordo.test");
        if let Some(c) = self.session(who) {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, who: Option<&str>, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_from(who, path, form, "http://ordo.test").await
    }

    async fn post_from(
        &self,
        who: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
        origin: &str,
    ) -> Page {
        let mut req = Request::post(path)
            .header(header::HOST, "ordo.test")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = self.session(who) {
            req = req.header(header::COOKIE, c);
        }
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(req.body(Body::from(body)).unwrap()).await
    }
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_signing_out_ends_it() {
    let s = site().await;
    let bad = s
        .post(
            None,
            "/sign-in",
            &[("name", "ann"), ("password", "wrong password")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.html.contains("do not match"), "{}", bad.html);
    assert!(bad.html.contains("value=\"ann\""), "the name is kept");
    assert!(bad.cookie.is_none());

    let ok = s
        .post(
            None,
            "/sign-in",
            &[
                ("name", "ann"),
                ("password", PASSWORD),
                ("next", "/tasks?view=groups"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location.as_deref(), Some("/tasks?view=groups"));
    let cookie = ok.cookie.unwrap();
    for part in ["ordo_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    // Somewhere off this site is not a place to go back to, however it is
    // disguised (the form's `%09` arrives as a tab, which browsers drop), and a
    // line break cannot go into the header.
    for next in [
        "//evil.example/",
        "/\t/evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/tasks\r\nSet-Cookie: stolen=1",
        "/\n/evil.example",
    ] {
        let away = s
            .post(
                None,
                "/sign-in",
                &[("name", "ann"), ("password", PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(away.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(away.location.as_deref(), Some("/"), "{next:?}");
        let page = s
            .get(
                None,
                &format!(
                    "/sign-in?{}",
                    serde_urlencoded::to_string([("next", next)]).unwrap()
                ),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{next:?}");
        assert!(
            page.html.contains("name=\"next\" value=\"/\""),
            "{next:?}: {}",
            page.html
        );
    }

    let anonymous = s.get(None, "/tasks?view=groups").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous.location.as_deref(),
        Some("/sign-in?next=%2Ftasks%3Fview%3Dgroups")
    );

    let home = s.get(Some("ann"), "/").await;
    assert_eq!(home.location.as_deref(), Some("/tasks"));
    let out = s.post(Some("ann"), "/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    let after = s.get(Some("ann"), "/tasks").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "the session is over");
}

#[tokio::test]
async fn a_task_is_completed_through_its_form_with_errors_beside_the_fields() {
    let s = site().await;
    let inst = s
        .engine
        .start("expense", None, Some("EXP-7".into()), Default::default())
        .await
        .unwrap();
    let inbox = s.get(Some("ann"), "/tasks").await;
    assert_eq!(inbox.status, StatusCode::OK);
    let href = format!("/tasks/{}/", inst.id);
    assert!(inbox.html.contains("Review the claim"), "{}", inbox.html);
    let start = inbox.html.find(&href).expect("a link to the task");
    let link: String = inbox.html[start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();

    let task = s.get(Some("ann"), &link).await;
    assert_eq!(task.status, StatusCode::OK);
    assert!(task.html.contains("EXP-7"));
    assert!(task.html.contains("name=\"amount\" type=\"number\""));
    // Bob may not know the task exists.
    assert_eq!(
        s.get(Some("bob"), &link).await.status,
        StatusCode::NOT_FOUND
    );

    let refused = s
        .post(
            Some("ann"),
            &format!("{link}/complete"),
            &[("amount", "0"), ("approved", "")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("The form has 2 error(s)"),
        "{}",
        refused.html
    );
    assert!(refused.html.contains("id=\"e-amount\""));
    assert!(refused.html.contains("id=\"e-approved\""));
    assert!(
        refused.html.contains("Approve is required"),
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains("value=\"0\""),
        "what was typed is kept"
    );
    assert_eq!(
        s.engine.instance(&inst.id).await.unwrap().active_nodes(),
        ["review"]
    );

    let done = s
        .post(
            Some("ann"),
            &format!("{link}/complete"),
            &[("amount", "120.50"), ("approved", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert!(done.location.unwrap().starts_with("/tasks?done="));
    let now = s.engine.instance(&inst.id).await.unwrap();
    assert_eq!(now.active_nodes(), ["pay"]);
    assert_eq!(now.variables()["amount"], 120.5);
    assert_eq!(now.variables()["approved"], true);

    // The next task is offered to Ann's group: she claims it from the page.
    let groups = s.get(Some("ann"), "/tasks?view=groups").await;
    assert!(groups.html.contains("Pay the claim"), "{}", groups.html);
    let (t, ..) = s.engine.tasks_of_instance(&inst.id).await;
    let pay = format!("/tasks/{}/{}", inst.id, t);
    let page = s.get(Some("ann"), &pay).await;
    assert!(page.html.contains("id=\"claim\""));
    let claimed = s.post(Some("ann"), &format!("{pay}/claim"), &[]).await;
    assert_eq!(claimed.location.as_deref(), Some(pay.as_str()));
    let page = s.get(Some("ann"), &pay).await;
    assert!(
        page.html.contains("<dd id=\"assignee\">ann</dd>"),
        "{}",
        page.html
    );
}

trait Tasks {
    async fn tasks_of_instance(&self, id: &str) -> (u64, String);
}

impl Tasks for Engine {
    async fn tasks_of_instance(&self, id: &str) -> (u64, String) {
        let rows = self
            .group_tasks("nobody", vec!["finance".into()], 10)
            .await
            .unwrap();
        let t = rows.into_iter().find(|t| t.instance_id == id).unwrap();
        (t.activity, t.node)
    }
}

#[tokio::test]
async fn the_monitor_shows_where_an_instance_stands_and_admins_can_cancel_it() {
    let s = site().await;
    let inst = s
        .engine
        .start("expense", None, Some("EXP-9".into()), Default::default())
        .await
        .unwrap();
    let link = format!("href=\"/monitor/{}\"", inst.id);
    let list = s.get(Some("root"), "/monitor?business_key=EXP-9").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.html.contains(&link), "{}", list.html);
    let none = s.get(Some("root"), "/monitor?business_key=nope").await;
    assert!(!none.html.contains(&link));
    assert!(none.html.contains("No instance matches"));

    let path = format!("/monitor/{}", inst.id);
    let page = s.get(Some("sue"), &path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("<svg"), "a diagram");
    assert!(page.html.contains(ordo_server::diagram::ACTIVE_FILL));
    assert!(page.html.contains("data-node=\"review\""));
    assert!(page.html.contains("Review the claim"));
    assert!(
        !page.html.contains("id=\"cancel\""),
        "a supervisor watches, an admin acts"
    );
    let v = s.get(Some("sue"), &format!("{path}/version")).await;
    assert!(v.html.contains("\"revision\""), "{}", v.html);

    let admin = s.get(Some("root"), &path).await;
    assert!(admin.html.contains("id=\"cancel\""));
    assert_eq!(
        s.post(Some("sue"), &format!("{path}/cancel"), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let cancelled = s.post(Some("root"), &format!("{path}/cancel"), &[]).await;
    assert_eq!(cancelled.location.as_deref(), Some(path.as_str()));
    let page = s.get(Some("root"), &path).await;
    assert!(
        page.html.contains("id=\"status\">cancelled<"),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("by root"),
        "the history names who cancelled"
    );
    assert_eq!(
        s.get(Some("root"), "/monitor/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_designer_shows_each_diagnostic_at_its_line_and_deploys() {
    let s = site().await;
    let broken = "id: trip\nstart: [{id: s, next: book}]\nnodes:\n  book: {type: user, next: paid}\n  done: {type: end}\n";
    for action in ["check", "deploy"] {
        let p = s
            .post(
                Some("dee"),
                "/designer",
                &[
                    ("name", "trip.yaml"),
                    ("source", broken),
                    ("action", action),
                ],
            )
            .await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{action}");
        let line = p
            .html
            .find("id=\"line-4\" class=\"has-error")
            .expect(&p.html);
        let next_line = p.html.find("id=\"line-5\"").unwrap();
        let at_line_4 = &p.html[line..next_line];
        assert!(at_line_4.contains("unknown-target"), "{at_line_4}");
        assert!(at_line_4.contains("paid"), "{at_line_4}");
        assert!(p.html.contains("Nothing was deployed"));
    }
    assert!(s.engine.definitions(Some("trip")).await.unwrap().is_empty());

    let fixed = broken.replace("next: paid", "next: done");
    let p = s
        .post(
            Some("dee"),
            "/designer",
            &[("source", fixed.as_str()), ("action", "deploy")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    let to = p.location.unwrap();
    assert!(to.starts_with("/designer/trip?version=1"), "{to}");
    let page = s.get(Some("dee"), &to).await;
    assert!(
        page.html.contains("Deployed as version 1."),
        "{}",
        page.html
    );
    assert!(page.html.contains("<svg"));
    let list = s.get(Some("dee"), "/designer").await;
    assert!(list.html.contains("href=\"/designer/trip\""));
    let edit = s.get(Some("dee"), "/designer/new?from=trip").await;
    assert!(
        edit.html.contains("next: done"),
        "the editor holds the source"
    );
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused_and_pages_carry_security_headers() {
    let s = site().await;
    let p = s
        .post_from(Some("max"), "/backup", &[], "https://evil.example")
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = s.post(Some("max"), "/backup", &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    let page = s.get(Some("max"), p.location.as_deref().unwrap()).await;
    assert!(page.html.contains("Backup written"), "{}", page.html);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
}

/// (method, route as written in pages/mod.rs, a concrete path, a form body).
/// Who may open each comes from the access table (`ordo_server::access`).
type Row = (&'static str, &'static str, &'static str, &'static str);

const MATRIX: &[Row] = {
    &[
        ("GET", "/", "/", ""),
        ("GET", "/sign-in", "/sign-in", ""),
        ("POST", "/sign-in", "/sign-in", "name=x&password=y"),
        ("POST", "/sign-out", "/sign-out", ""),
        ("GET", "/static/ordo.css", "/static/ordo.css", ""),
        ("GET", "/static/ordo.js", "/static/ordo.js", ""),
        ("GET", "/tasks", "/tasks", ""),
        ("GET", "/tasks/{instance}/{activity}", "/tasks/1/2", ""),
        (
            "POST",
            "/tasks/{instance}/{activity}/claim",
            "/tasks/1/2/claim",
            "",
        ),
        (
            "POST",
            "/tasks/{instance}/{activity}/unclaim",
            "/tasks/1/2/unclaim",
            "",
        ),
        (
            "POST",
            "/tasks/{instance}/{activity}/delegate",
            "/tasks/1/2/delegate",
            "to=x",
        ),
        (
            "POST",
            "/tasks/{instance}/{activity}/complete",
            "/tasks/1/2/complete",
            "",
        ),
        ("GET", "/monitor", "/monitor", ""),
        ("GET", "/monitor/{id}", "/monitor/1", ""),
        ("GET", "/monitor/{id}/version", "/monitor/1/version", ""),
        ("POST", "/monitor/{id}/cancel", "/monitor/1/cancel", ""),
        (
            "POST",
            "/monitor/{id}/incidents/{activity}/retry",
            "/monitor/1/incidents/2/retry",
            "",
        ),
        (
            "POST",
            "/monitor/{id}/incidents/{activity}/resolve",
            "/monitor/1/incidents/2/resolve",
            "",
        ),
        ("GET", "/designer", "/designer", ""),
        (
            "POST",
            "/designer",
            "/designer",
            "source=id%3A+x&action=check",
        ),
        ("GET", "/designer/new", "/designer/new", ""),
        ("GET", "/designer/{id}", "/designer/x", ""),
        ("GET", "/backup", "/backup", ""),
        ("POST", "/backup", "/backup", ""),
    ]
};

#[test]
fn every_page_route_has_a_row_in_the_matrix() {
    let declared = common::declared_pages();
    let covered: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, r, ..)| (m.to_lowercase(), (*r).to_owned()))
        .collect();
    assert!(declared.len() >= 20, "the route parser found {declared:?}");
    assert_eq!(declared, covered, "page routes and matrix rows differ");
    let table = Table::new(SERVER.iter().copied());
    for (method, route) in &declared {
        assert!(
            table.rule(&method.to_uppercase(), route).is_some(),
            "{method} {route} has no rule in ordo_server::access::SERVER"
        );
    }
}

#[tokio::test]
async fn each_role_gets_exactly_the_pages_it_is_allowed() {
    let s = site().await;
    let people = [
        ("ann", Role::Salesperson),
        ("sue", Role::Supervisor),
        ("root", Role::Admin),
        ("dee", Role::Designer),
        ("max", Role::Maintenance),
        ("erp", Role::Integrator),
    ];
    let table = Table::new(SERVER.iter().copied());
    for (method, route, path, body) in MATRIX {
        let rule = table.rule(method, route).unwrap();
        let mut allowed = rule.who.roles();
        if *route == "/" {
            // Signed in, but a person with no page to go to (an integrator) is
            // told so.
            allowed.retain(|r| *r != Role::Integrator);
        }
        if *route == "/sign-out" {
            continue; // it would end the session the rows after it use
        }
        for (who, role) in people {
            let mut req = Request::builder()
                .method(*method)
                .uri(*path)
                .header(header::HOST, "ordo.test")
                .header(header::COOKIE, s.session(Some(who)).unwrap());
            if *method == "POST" {
                req = req
                    .header(header::ORIGIN, "http://ordo.test")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            let p = s.send(req.body(Body::from(*body)).unwrap()).await;
            let refused = p.status == StatusCode::FORBIDDEN;
            let signed_out = p
                .location
                .as_deref()
                .is_some_and(|l| l.starts_with("/sign-in"));
            assert!(!signed_out, "{method} {route} as {role:?} lost the session");
            if allowed.contains(&role) {
                assert!(!refused, "{method} {route} should allow {role:?}");
            } else {
                assert!(
                    refused,
                    "{method} {route} should refuse {role:?}: {}",
                    p.status
                );
            }
        }
        // Without a session a protected page sends the browser to sign in.
        let mut req = Request::builder()
            .method(*method)
            .uri(*path)
            .header(header::HOST, "ordo.test");
        if *method == "POST" {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let p = s.send(req.body(Body::from(*body)).unwrap()).await;
        let to_sign_in = p
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/sign-in"));
        assert_eq!(
            to_sign_in,
            rule.who != Who::Public,
            "{method} {route} without a session: {} {:?}",
            p.status,
            p.location
        );
    }
}

/// A payment service that is down.
struct Down;

impl ordo_engine::worker::JobHandler for Down {
    fn call(&self, _input: serde_json::Value) -> ordo_engine::worker::JobFuture {
        Box::pin(async {
            Err(ordo_engine::worker::JobFailure::Retry(
                "bank unreachable".into(),
            ))
        })
    }
}

#[tokio::test]
async fn an_admin_retries_and_resolves_an_incident_from_the_monitor() {
    let s = site().await;
    // Ann (whom sue leads) approves the payment; then the bank is down.
    let flow = "id: pay\nstart: [{id: s, next: approve}]\nnodes:\n  approve: {type: user, assignee: ann, next: charge}\n  charge: {type: service, name: Charge the card, action: bank.charge, retries: 0, next: e}\n  e: {type: end}\n";
    s.engine.deploy("pay.yaml", flow).await.unwrap();
    let inst = s
        .engine
        .start("pay", None, None, Default::default())
        .await
        .unwrap();
    let approve = s.engine.tasks_of("ann", 10).await.unwrap()[0].activity;
    s.engine
        .complete_task(
            &inst.id,
            approve,
            Default::default(),
            Some("ann".into()),
            None,
        )
        .await
        .unwrap();
    let worker = ordo_engine::worker::Worker::new(Arc::clone(&s.engine), "w")
        .handle("bank.charge", Arc::new(Down));
    assert_eq!(worker.run_once().await.unwrap().failed, 1);

    let path = format!("/monitor/{}", inst.id);
    let page = s.get(Some("root"), &path).await;
    assert!(page.html.contains("bank unreachable"), "{}", page.html);
    assert!(page.html.contains(ordo_server::diagram::INCIDENT_FILL));
    let activity = s.engine.incidents(true, 10, 0).await.unwrap()[0].activity;
    let retry = format!("{path}/incidents/{activity}/retry");
    assert!(page.html.contains(&format!("action=\"{retry}\"")));
    // Ann's supervisor reads the page but has no levers.
    let watching = s.get(Some("sue"), &path).await;
    assert!(watching.html.contains("bank unreachable"));
    assert!(!watching.html.contains(&retry));
    // An instance nobody of sue's team worked on is not hers to watch.
    s.engine
        .deploy(
            "lone.yaml",
            "id: lone\nstart: [{id: s, next: w}]\nnodes:\n  w: {type: catch, timer: PT1H, next: e}\n  e: {type: end}\n",
        )
        .await
        .unwrap();
    let other = s
        .engine
        .start("lone", None, None, Default::default())
        .await
        .unwrap();
    let away = s.get(Some("sue"), &format!("/monitor/{}", other.id)).await;
    assert_eq!(away.status, StatusCode::NOT_FOUND);

    let p = s.post(Some("root"), &retry, &[]).await;
    assert_eq!(p.location.as_deref(), Some(path.as_str()), "{}", p.html);
    assert!(s.engine.incidents(true, 10, 0).await.unwrap().is_empty());
    let page = s.get(Some("root"), &path).await;
    assert!(
        page.html.contains("retried"),
        "the incident is kept, closed"
    );
    assert!(!page.html.contains(ordo_server::diagram::INCIDENT_FILL));

    // It fails again; this time the admin marks the step done by hand.
    assert_eq!(worker.run_once().await.unwrap().failed, 1);
    let activity = s.engine.incidents(true, 10, 0).await.unwrap()[0].activity;
    let p = s
        .post(
            Some("root"),
            &format!("{path}/incidents/{activity}/resolve"),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    let page = s.get(Some("root"), &path).await;
    assert!(
        page.html.contains("id=\"status\">completed<"),
        "{}",
        page.html
    );
}
