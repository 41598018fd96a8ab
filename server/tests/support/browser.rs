//! What the browser tests share: ChromeDriver and headless Chromium started for
//! a test, signing in, and small waits on the page. Included by
//! `server/tests/browser.rs` and the CRM's `tests/crm_browser.rs`.

#![allow(dead_code)] // each browser test uses its share of these

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// ChromeDriver and Chromium, or `None` when `ORDO_SKIP_BROWSER=1`. Without
/// them the test fails and says how to install them.
pub fn tools() -> Option<(PathBuf, PathBuf)> {
    if std::env::var_os("ORDO_SKIP_BROWSER").is_some_and(|v| v == "1") {
        return None;
    }
    let (Some(chromedriver), Some(chromium)) = (
        tool("CHROMEDRIVER", "/usr/bin/chromedriver"),
        tool("CHROMIUM", "/usr/bin/chromium"),
    ) else {
        unreachable!(
            "the browser test needs Chromium and ChromeDriver: `apt-get install chromium chromium-driver` \
             (or set CHROMIUM and CHROMEDRIVER to their paths; ORDO_SKIP_BROWSER=1 skips this test)"
        );
    };
    Some((chromedriver, chromium))
}

/// How long a page may take to show what the step waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// chromedriver, killed when the test ends (even by a failed assertion).
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

pub async fn start_driver(chromedriver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Wait until it accepts connections (an external process starting up).
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("chromedriver did not listen on port {port} within 10 s");
}

pub async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

pub fn artifacts() -> PathBuf {
    let dir = std::env::var_os("ORDO_ARTIFACTS").map_or_else(
        // `target/tmp/../browser-artifacts`, whichever crate's test this is.
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("../browser-artifacts"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

pub async fn sign_in(c: &Client, base: &str, name: &str, password: &str, then: &str) {
    c.goto(&format!("{base}{then}")).await.unwrap();
    // Not signed in: the page sends the browser to sign in, and back after.
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#sign-in"))
        .await
        .unwrap();
    c.find(Locator::Css("#name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click(c, "#sign-in").await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#who"))
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        then.split('?').next().unwrap(),
        "back where it started"
    );
}

pub async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| unreachable!("no `{css}` on the page: {e}"))
        .text()
        .await
        .unwrap()
}

pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| unreachable!("no `{css}` to click: {e}"))
        .click()
        .await
        .unwrap();
}

pub async fn fill(c: &Client, css: &str, value: &str) {
    let field = c.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}
