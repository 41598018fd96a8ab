//! The pages in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, through the `fantoccini` client) against `ordo serve`'s own
//! server on a loopback port and a real SQLite file.
//!
//! One story, as people live it: a salesperson signs in, finds the task assigned
//! to her, submits its form with an error and sees it beside the field, then
//! submits it right; an admin watching the instance sees it advance without
//! touching the page; a designer pastes a process with a mistake and sees the
//! error at its line. Each step saves a screenshot in
//! `target/browser-artifacts/` (or `$ORDO_ARTIFACTS`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them;
//! `$CHROMEDRIVER` and `$CHROMIUM` override the paths). Without them the test
//! fails and says how to install them; `ORDO_SKIP_BROWSER=1` skips it
//! explicitly, for machines that cannot have a browser.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use fantoccini::Locator;
use ordo_server::auth::Role;
use serde_json::{Value, json};

mod common;
use common::FLOW;

/// A process with a mistake on line 5: `paid` is not a node.
const BROKEN: &str = "id: trip
start: [{id: s, next: book}]
nodes:
  book:
    {type: user, next: paid}
  done: {type: end}
";

const PASSWORD: &str = "browser password";

#[path = "support/browser.rs"]
mod web;
use web::{PATIENCE, browser, click, fill, shot, start_driver, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_admins_and_designers_work_in_a_real_browser() {
    let Some((chromedriver, chromium)) = web::tools() else {
        return;
    };

    // The server, as `ordo serve` runs it, on a free loopback port.
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("expense.yaml");
    std::fs::write(&flow, FLOW).unwrap();
    let server = ordo_server::Server::open(&ordo_server::ServeConfig {
        db: dir.path().join("ordo.db"),
        addr: "127.0.0.1:0".parse().unwrap(),
        deploy: vec![flow],
        backups: dir.path().join("backups"),
        plugins: Vec::new(),
        clock: None,
    })
    .await
    .unwrap();
    let people: [(&str, &[Role], &[&str]); 3] = [
        ("ann", &[Role::Salesperson], &["finance"]),
        ("root", &[Role::Admin], &[]),
        ("dee", &[Role::Designer], &[]),
    ];
    common::add_people(server.directory(), &people, "root");
    for (name, ..) in people {
        server.directory().set_password(name, PASSWORD).unwrap();
    }
    let token = server.directory().create_token("root").unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // An integrator-style start over the API: the claim EXP-1 for Ann.
    let started: Value = api_post(
        &base,
        &token,
        "/api/instances",
        json!({
            "process": "expense", "business_key": "EXP-1"
        }),
    )
    .await;
    let id = started["id"].as_str().unwrap().to_owned();

    let driver = start_driver(&chromedriver).await;
    let ann = browser(&driver, &chromium, &dir.path().join("ann-profile")).await;
    let admin = browser(&driver, &chromium, &dir.path().join("admin-profile")).await;

    // 1. Ann signs in and sees the task assigned to her.
    web::sign_in(&ann, &base, "ann", PASSWORD, "/tasks").await;
    let inbox = text(&ann, "#tasks").await;
    assert!(inbox.contains("Review the claim"), "{inbox}");
    shot(&ann, "01-inbox").await;

    // 2. The admin opens the instance on the monitor: it waits in the review.
    web::sign_in(&admin, &base, "root", PASSWORD, &format!("/monitor/{id}")).await;
    assert_eq!(text(&admin, "#active").await, "Review the claim");
    assert!(text(&admin, "#status").await.contains("active"));
    let diagram = admin
        .find(Locator::Css("#diagram svg"))
        .await
        .unwrap()
        .html(false)
        .await
        .unwrap();
    assert!(
        diagram.contains(ordo_server::diagram::ACTIVE_FILL),
        "the active node is filled"
    );
    shot(&admin, "02-monitor-waiting").await;

    // 3. Ann opens the task and submits the form with mistakes.
    ann.find(Locator::LinkText("Review the claim"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill(&ann, "#f-amount", "0").await;
    click(&ann, "#complete").await;
    assert!(text(&ann, "#form-errors").await.contains("2 error(s)"));
    let amount_error = text(&ann, "#e-amount").await;
    assert!(amount_error.contains("Amount"), "{amount_error}");
    assert!(
        text(&ann, "#e-approved")
            .await
            .contains("Approve is required")
    );
    let kept = ann
        .find(Locator::Css("#f-amount"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("0"), "what she typed is kept");
    shot(&ann, "03-form-errors").await;

    // 4. She corrects it and completes the task.
    fill(&ann, "#f-amount", "120.50").await;
    ann.find(Locator::Css("#f-approved"))
        .await
        .unwrap()
        .select_by_value("yes")
        .await
        .unwrap();
    fill(&ann, "#f-note", "Taxi to the customer").await;
    click(&ann, "#complete").await;
    assert!(text(&ann, "#done").await.contains("Review the claim"));
    shot(&ann, "04-completed").await;

    // 5. The admin's page follows the instance by itself: no click, no reload.
    admin
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#active li[data-node='pay']"))
        .await
        .expect("the monitor shows the instance advanced to `pay`");
    assert_eq!(text(&admin, "#active").await, "Pay the claim");
    let vars = text(&admin, "#variables").await;
    assert!(
        vars.contains("120.5") && vars.contains("Taxi to the customer"),
        "{vars}"
    );
    assert!(text(&admin, "#history").await.contains("by ann"));
    shot(&admin, "05-monitor-advanced").await;

    // 6. A designer pastes a process with a mistake and sees it at its line.
    let designer = admin; // the same browser, signed in again as Dee
    click(&designer, "header .who button").await;
    // Signing out lands on the sign-in page; wait for it, or the next navigation
    // races the sign-out's own redirect.
    designer
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#sign-in"))
        .await
        .expect("signed out, on the sign-in page");
    web::sign_in(&designer, &base, "dee", PASSWORD, "/designer/new").await;
    let source = designer.find(Locator::Css("#source")).await.unwrap();
    // Pasted, as a clipboard would put it: the whole text at once.
    designer
        .execute(
            "arguments[0].value = arguments[1];",
            vec![serde_json::to_value(&source).unwrap(), json!(BROKEN)],
        )
        .await
        .unwrap();
    fill(&designer, "#name", "trip.yaml").await;
    click(&designer, "#check").await;
    let line = text(&designer, "#line-5.has-error").await;
    assert!(line.contains("5:"), "{line}");
    assert!(line.contains("unknown-target"), "{line}");
    assert!(line.contains("paid"), "{line}");
    assert!(
        text(&designer, "#summary")
            .await
            .contains("Nothing was deployed")
    );
    // The text area still holds what was pasted, to fix in place.
    let kept = designer
        .find(Locator::Css("#source"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(kept, BROKEN);
    shot(&designer, "06-designer-error-at-line").await;

    // 7. Fixed, it deploys, and its diagram is shown.
    let source = designer.find(Locator::Css("#source")).await.unwrap();
    designer
        .execute(
            "arguments[0].value = arguments[1];",
            vec![
                serde_json::to_value(&source).unwrap(),
                json!(BROKEN.replace("next: paid", "next: done")),
            ],
        )
        .await
        .unwrap();
    click(&designer, "#deploy").await;
    assert!(text(&designer, "#deployed").await.contains("version 1"));
    designer
        .find(Locator::Css("#diagram svg"))
        .await
        .expect("the deployed process is drawn");
    shot(&designer, "07-designer-deployed").await;

    ann.close().await.unwrap();
    designer.close().await.unwrap();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// A JSON POST with a bearer token, on a plain hyper client.
async fn api_post(base: &str, token: &str, path: &str, body: Value) -> Value {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<axum::body::Bytes>>();
    let req = axum::http::Request::post(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(axum::body::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}
