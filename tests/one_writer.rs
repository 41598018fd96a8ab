//! The one-writer rule, checked in the source: in a server process only the
//! engine's writer opens a writable connection. Every `Connection::open` in the
//! product's code is listed here with why it is allowed; a new one fails this
//! test until it is either removed (use `Engine::write` / `Engine::query`) or
//! added to the list with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use std::path::{Path, PathBuf};

/// (file, what the line holds, why it may open a writable connection)
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "store/src/lib.rs",
        "let conn = Connection::open(path)?;",
        "open_writer: the engine's one writer",
    ),
    (
        "store/src/lib.rs",
        "let mut dst = Connection::open(to)?;",
        "backup: the new copy, another file",
    ),
    (
        "server/src/auth.rs",
        "let conn = Connection::open(path)?;",
        "Directory::open: creates the directory's tables before the engine starts, and is the CLI's own (IMMEDIATE, busy timeout); `attach` swaps it for a read-only one in a server",
    ),
    (
        "crm-plugin/src/lib.rs",
        "let mut conn = rusqlite::Connection::open(&config.db).map_err(migrate)?;",
        "install: the CRM's migrations, before the engine's writer starts",
    ),
];

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

#[test]
fn only_the_engines_writer_opens_a_writable_connection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
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
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests at the end of a file may open what they like.
        let product = text.split("#[cfg(test)]").next().unwrap_or_default();
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let lines: Vec<&str> = product.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim();
            if l.starts_with("//") {
                continue;
            }
            let writable = if l.contains("Connection::open(") {
                true
            } else if l.contains("Connection::open_with_flags(") {
                // Read-only opens name the flag within the call's next lines.
                let call = lines[i..lines.len().min(i + 4)].join(" ");
                !call.contains("SQLITE_OPEN_READ_ONLY")
            } else {
                false
            };
            if writable {
                found.push((rel.clone(), l.to_owned()));
            }
        }
    }
    let unexpected: Vec<_> = found
        .iter()
        .filter(|(f, l)| !ALLOWED.iter().any(|(af, al, _)| af == f && al == l))
        .collect();
    assert!(
        unexpected.is_empty(),
        "a writable connection besides the engine's writer: {unexpected:#?}; write through `Engine::write`"
    );
    for (f, l, why) in ALLOWED {
        assert!(
            found.iter().any(|(ff, ll)| ff == f && ll == l),
            "stale allowance in {f} ({why}): `{l}` is gone"
        );
    }
}
