//! The one-writer rule and the store's layering, checked in the source:
//! - only `ordo-store` names the SQLite driver: the engine, the server, the CRM
//!   plugin and the `ordo` command reach the database through the store's
//!   `Conn`, its table traits and the backend-neutral `Sql` handle (their
//!   manifests do not even depend on the driver, so the compiler keeps it so);
//! - every place that opens a writable connection is listed here with why it is
//!   allowed; in a server process that is only the engine's writer. A new one
//!   fails this test until it is removed (use `Engine::write` / `Engine::query`)
//!   or added to the list with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use std::path::{Path, PathBuf};

/// (where: a file, or a folder ending in `/`; what the line holds; why it may
/// open a writable connection)
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "store/src/",
        "let conn = Connection::open(path)?;",
        "Conn::open_writer (the engine's one writer) and Conn::open_shared (a command-line tool beside a server: IMMEDIATE transactions, busy timeout)",
    ),
    (
        "store/src/",
        "let mut dst = Connection::open(to)?;",
        "backup: the new copy, another file",
    ),
    (
        "store/src/sqlite.rs",
        "Ok(Conn(Inner::Sqlite(Connection::open_in_memory()?)))",
        "Conn::open_in_memory: a database of its own, no file, for tests of SQL against `Sql`",
    ),
    (
        "store/src/sqlite.rs",
        "Conn::open_writer(path, sync)",
        "store::open_writer, the function form of Conn::open_writer",
    ),
    (
        "store/src/sqlite.rs",
        "let pg = crate::PgConn::connect(url)?;",
        "Conn::open_postgres_writer: the engine's one writer on PostgreSQL, holding the node lock",
    ),
    (
        "store/src/sqlite.rs",
        "let pg = crate::PgConn::connect(path.to_str().unwrap_or_default())?;",
        "Conn::open_reader (read-only: `default_transaction_read_only`) and Conn::open_shared on PostgreSQL",
    ),
    (
        "store/src/testdb.rs",
        "let pg = PgConn::connect(url)?;",
        "the scratch schema of a test of SQL against `Sql`, rolled back when dropped",
    ),
    (
        "store/src/testdb.rs",
        "let admin = PgConn::connect(server)?;",
        "ScratchDatabase: a test's own database on the test server, made and dropped",
    ),
    (
        "engine/src/engine.rs",
        "let conn = store::open_writer(&config.db, config.sync)?;",
        "Engine::open: the one writer, which also runs the plugins' migrations",
    ),
    (
        "server/src/auth.rs",
        "let conn = Conn::open_shared(path)?;",
        "Directory::open: the `ordo user`/`token` commands' own connection; in a server `attach` swaps it for a read-only one before the first request",
    ),
];

/// What opens a writable connection, in product code.
const OPENERS: &[&str] = &[
    "Connection::open(",
    "open_writer(",
    "open_shared(",
    "Connection::open_in_memory(",
    "PgConn::connect(",
];

/// The crates above the store: none may name the driver.
const ABOVE_THE_STORE: &[&str] = &["engine", "server", "crm-plugin", "."];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Each product source file (relative path) with its text before unit tests.
fn product_sources(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in [
        "model/src",
        "runtime/src",
        "store/src",
        "engine/src",
        "server/src",
        "crm-plugin/src",
        "src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            // Unit tests at the end of a file may open what they like.
            let product = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_owned();
            let rel = f
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, product)
        })
        .collect()
}

fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with("///"))
}

#[test]
fn only_the_engines_writer_opens_a_writable_connection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for (rel, text) in product_sources(root) {
        for l in code_lines(&text) {
            if OPENERS.iter().any(|o| l.contains(o)) && !l.starts_with("pub fn") {
                found.push((rel.clone(), l.to_owned()));
            }
        }
    }
    let allowed = |f: &str, l: &str| {
        ALLOWED
            .iter()
            .any(|(af, al, _)| (af == &f || (af.ends_with('/') && f.starts_with(af))) && al == &l)
    };
    let unexpected: Vec<_> = found.iter().filter(|(f, l)| !allowed(f, l)).collect();
    assert!(
        unexpected.is_empty(),
        "a writable connection besides the engine's writer: {unexpected:#?}; write through `Engine::write`"
    );
    for (f, l, why) in ALLOWED {
        assert!(
            found
                .iter()
                .any(|(ff, ll)| (ff == f || (f.ends_with('/') && ff.starts_with(f))) && ll == l),
            "stale allowance in {f} ({why}): `{l}` is gone"
        );
    }
}

#[test]
fn nothing_above_the_store_names_the_driver() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut named = Vec::new();
    for (rel, text) in product_sources(root) {
        let above = ABOVE_THE_STORE.iter().any(|c| {
            let prefix = if *c == "." {
                "src/".to_owned()
            } else {
                format!("{c}/")
            };
            rel.starts_with(&prefix)
        });
        if above {
            for l in code_lines(&text) {
                if l.contains("rusqlite") {
                    named.push(format!("{rel}: {l}"));
                }
            }
        }
    }
    assert!(
        named.is_empty(),
        "code above the store names the SQLite driver; use ordo_store's Conn, table traits or `Sql`: {named:#?}"
    );
    for c in ABOVE_THE_STORE {
        let manifest = std::fs::read_to_string(root.join(c).join("Cargo.toml")).unwrap();
        // The product's dependencies (tests may inspect a file with the driver).
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .unwrap_or_default()
            .split("\n[")
            .next()
            .unwrap_or_default();
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with("rusqlite")),
            "{c}/Cargo.toml depends on rusqlite; only ordo-store may"
        );
        assert!(
            deps.contains("ordo-engine") || deps.contains("ordo-store") || *c == ".",
            "{c}/Cargo.toml: the check reads the wrong section"
        );
    }
}
