//! The CRM's pages in a real browser (headless Chromium over WebDriver), on
//! `ordo serve`'s own server with the CRM plugin, its demo data and a real
//! SQLite file: a salesperson imports a CSV file and watches its progress page
//! finish by itself, opens an imported customer with its history, and claims a
//! customer from the public pool. Screenshots go to `target/browser-artifacts/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`, like
//! `server/tests/browser.rs`; `ORDO_SKIP_BROWSER=1` skips it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use fantoccini::Locator;
use std::sync::Arc;

#[path = "../server/tests/support/browser.rs"]
mod web;
use web::{PATIENCE, browser, click, shot, start_driver, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesperson_imports_opens_a_customer_and_claims_from_the_pool_in_a_browser() {
    let Some((chromedriver, chromium)) = web::tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ordo_server::Server::open(&ordo_server::ServeConfig {
        db: dir.path().join("ordo.db"),
        addr: "127.0.0.1:0".parse().unwrap(),
        deploy: vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("processes/crm")],
        backups: dir.path().join("backups"),
        plugins: vec![Arc::new(ordo_crm::CrmPlugin::new(None))],
        clock: None,
    })
    .await
    .unwrap();
    server.seed_demo_people().await.unwrap();
    server.seed_plugin_demos().await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let driver = start_driver(&chromedriver).await;
    let sam = browser(&driver, &chromium, &dir.path().join("sam-profile")).await;
    let password = ordo_server::DEMO_PASSWORD;

    // 1. Sam imports three rows: one new, one a duplicate of a demo customer,
    //    one with a region that does not exist.
    web::sign_in(&sam, &base, "sam", password, "/crm/import").await;
    let csv = "name,company,phone,region\nQian Hong,Donghu Paper,13811112222,east\nCopy,Huadong Machinery,,east\nBad,Mars Co,,mars\n";
    let source = sam.find(Locator::Css("#source")).await.unwrap();
    sam.execute(
        "arguments[0].value = arguments[1];",
        vec![
            serde_json::to_value(&source).unwrap(),
            serde_json::json!(csv),
        ],
    )
    .await
    .unwrap();
    click(&sam, "#import button[type=submit]").await;
    // 2. The progress page follows the job until it is done.
    sam.wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath("//span[@id='status' and text()='done']"))
        .await
        .expect("the progress page shows the import done");
    assert_eq!(text(&sam, "#created").await, "1");
    let skipped = text(&sam, "#skipped").await;
    assert!(
        skipped.contains("same company as customer"),
        "the duplicate, with why: {skipped}"
    );
    assert!(
        skipped.contains("region"),
        "the bad region, with why: {skipped}"
    );
    shot(&sam, "crm-01-import-done").await;

    // 3. The imported customer is on the list; its page shows its history.
    sam.goto(&format!("{base}/crm?q=Qian")).await.unwrap();
    sam.find(Locator::LinkText("Qian Hong"))
        .await
        .expect("the imported customer is listed with a link")
        .click()
        .await
        .unwrap();
    assert_eq!(text(&sam, "#customer-name").await, "Qian Hong");
    let history = text(&sam, "#history").await;
    assert!(history.contains("CSV import"), "{history}");
    shot(&sam, "crm-02-customer").await;

    // 4. Sam claims the demo customer waiting in the pool.
    sam.goto(&format!("{base}/crm/pool")).await.unwrap();
    let row = sam
        .find(Locator::XPath(
            "//table[@id='pool-customer']//tr[td[text()='Liu Yang']]",
        ))
        .await
        .expect("Liu Yang is in the pool");
    row.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = text(&sam, "#notice").await;
    assert!(notice.contains("Liu Yang"), "{notice}");
    shot(&sam, "crm-03-claimed").await;
    sam.goto(&format!("{base}/crm?q=Liu")).await.unwrap();
    assert_eq!(text(&sam, "#total").await, "1", "now among Sam's customers");

    sam.close().await.unwrap();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
