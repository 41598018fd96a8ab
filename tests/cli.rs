//! The `ordo` binary: exit codes and output formats.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test failing

use std::process::Command;

fn ordo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_processes_folder_is_clean() {
    let (code, _, err) = ordo(&["validate", "processes/"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 error(s)"), "{err}");
}

#[test]
fn invalid_file_exits_1_with_rustc_style_output() {
    let (code, _, err) = ordo(&["validate", "tests/fixtures/invalid/unknown-target.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error[unknown-target]: there is no node `revew`"),
        "{err}"
    );
    assert!(
        err.contains("--> tests/fixtures/invalid/unknown-target.yaml:9:11"),
        "{err}"
    );
    assert!(err.contains("help: did you mean `review`?"), "{err}");
}

#[test]
fn warnings_alone_exit_0() {
    let (code, _, err) = ordo(&["validate", "tests/fixtures/invalid/missing-default.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning[missing-default]"));
}

#[test]
fn json_format_lists_every_diagnostic() {
    let (code, out, _) = ordo(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/invalid/bad-form-field.yaml",
    ]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let diags = doc["files"][0]["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 3);
    assert_eq!(diags[0]["code"], "bad-form-field");
    assert!(diags[0]["line"].as_u64().unwrap() > 0);
    assert!(diags[0]["hint"].is_string());
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(ordo(&["validate", "no/such/file.yaml"]).0, 2);
    assert_eq!(ordo(&["validate"]).0, 2);
    assert_eq!(ordo(&["frobnicate"]).0, 2);
}

#[test]
fn calendar_option_makes_a_calendar_known() {
    let f = "tests/fixtures/invalid/unknown-calendar.yaml";
    assert_eq!(ordo(&["validate", f]).0, 1);
    assert_eq!(ordo(&["validate", "--calendar", "cn-mainland", f]).0, 0);
}

#[test]
fn graph_prints_mermaid_and_dot() {
    let (code, out, _) = ordo(&["graph", "processes/crm/lead-to-cash.yaml"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("flowchart LR"));
    assert!(out.contains("Contact and qualify the lead"));
    let (code, out, _) = ordo(&[
        "graph",
        "--format",
        "dot",
        "processes/crm/lead-to-cash.yaml",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("\"dedupe\" -> \"is_new\""));
}

#[test]
fn checked_in_schema_matches_the_types() {
    let (code, out, _) = ordo(&["schema"]);
    assert_eq!(code, 0);
    let fresh: serde_json::Value = serde_json::from_str(&out).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/process.schema.json");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        fresh == stored,
        "docs/process.schema.json is stale: run `cargo run -- schema > docs/process.schema.json`"
    );
}

#[test]
fn checked_in_openapi_document_matches_the_code() {
    let (code, out, _) = ordo(&["openapi"]);
    assert_eq!(code, 0);
    let fresh: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(fresh["paths"]["/api/crm/pipeline"]["get"].is_object());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/server/openapi.json");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        fresh == stored,
        "server/openapi.json is stale: run `cargo run -- openapi > server/openapi.json`"
    );
}

#[test]
fn bench_runs_every_workload_on_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let (code, out, err) = ordo(&[
        "bench",
        "--instances",
        "40",
        "--concurrency",
        "4",
        "--workload",
        "p3",
        "--db",
        db.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let figures: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(figures[0]["workload"], "P3");
    assert_eq!(figures[0]["instances"], 40);
    assert!(figures[0]["per_second"].as_f64().unwrap() > 0.0);
    // Every instance is in the file, completed.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let done: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM instances WHERE status = 'completed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, 40);
}

#[test]
fn bench_p4_and_p5_deliver_every_message_and_fire_every_timer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let (code, out, err) = ordo(&[
        "bench",
        "--instances",
        "300",
        "--concurrency",
        "4",
        "--workload",
        "p4",
        "--workload",
        "p5",
        "--db",
        db.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let figures: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(figures[0]["workload"], "P4");
    assert_eq!(figures[1]["workload"], "P5");
    assert_eq!(figures[1]["instances"], 300, "every timer fired");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let by_process = |p: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM instances WHERE process_id = ?1 AND status = 'completed'",
            [p],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!((by_process("bench-p4"), by_process("bench-p5")), (300, 300));
    let left: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM timers) + (SELECT COUNT(*) FROM message_subs)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "no subscription or timer is left behind");
}

#[test]
fn shipped_calendars_load_and_make_their_names_known() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        "id: p\ncalendar: cn\nstart: [{id: s, next: t}]\nnodes:\n  t: {type: user, assignee: ann, due: P5BD, next: e}\n  e: {type: end}\n",
    )
    .unwrap();
    let (code, _, err) = ordo(&["validate", p.to_str().unwrap()]);
    assert_eq!(code, 1, "`cn` is unknown without the calendars: {err}");
    let (code, out, err) = ordo(&["validate", "--calendars", "calendars", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let bad = dir.path().join("cals");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("x.yaml"), "name: x\nholidays: [tomorrow]\n").unwrap();
    let (code, _, err) = ordo(&[
        "validate",
        "--calendars",
        bad.to_str().unwrap(),
        p.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("x.yaml:2:12: `tomorrow` is not a date"),
        "{err}"
    );
}

#[test]
fn people_and_tokens_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordo.db");
    let db = db.to_str().unwrap();
    let (code, out, err) = ordo(&[
        "user", "add", "ann", "--role", "admin", "--group", "sales", "--db", db,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ann added"));
    let (code, token, err) = ordo(&["token", "create", "--user", "ann", "--db", db]);
    assert_eq!(code, 0, "{err}");
    assert!(
        token.trim().starts_with("ordo_") && token.trim().len() > 40,
        "{token}"
    );
    let (code, _, err) = ordo(&["user", "add", "bob", "--role", "boss", "--db", db]);
    assert_eq!(code, 2);
    assert!(err.contains("`boss` is not a role"), "{err}");
    let (code, _, err) = ordo(&["token", "create", "--user", "nobody", "--db", db]);
    assert_eq!(code, 2);
    assert!(err.contains("no person named `nobody`"), "{err}");
    // A supervisor must exist, and the reporting line may not loop.
    let (code, _, err) = ordo(&[
        "user",
        "add",
        "bob",
        "--role",
        "salesperson",
        "--supervisor",
        "nobody",
        "--db",
        db,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no person named `nobody`"), "{err}");
    let (code, _, err) = ordo(&[
        "user",
        "add",
        "bob",
        "--role",
        "salesperson",
        "--supervisor",
        "ann",
        "--db",
        db,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ordo(&[
        "user",
        "add",
        "ann",
        "--role",
        "admin",
        "--supervisor",
        "bob",
        "--db",
        db,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("loop"), "{err}");
    // A password for the pages, from standard input.
    let passwd = |pw: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["user", "passwd", "ann", "--db", db])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{pw}").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = passwd("short");
    assert_eq!(code, Some(2));
    assert!(err.contains("at least 8 characters"), "{err}");
    let (code, err) = passwd("a long passphrase");
    assert_eq!(code, Some(0), "{err}");
    let d = ordo_server::auth::Directory::open(std::path::Path::new(db)).unwrap();
    assert!(d.sign_in("ann", "a long passphrase").unwrap().is_some());
    assert!(d.sign_in("ann", "short").unwrap().is_none());
}

#[test]
fn bench_p7_starts_every_instance_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let (code, out, err) = ordo(&[
        "bench",
        "--instances",
        "200",
        "--concurrency",
        "4",
        "--workload",
        "p7",
        "--db",
        db.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let figures: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            figures[0]["workload"].as_str(),
            figures[0]["instances"].as_u64()
        ),
        (Some("P7"), Some(200))
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let started: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM instances WHERE process_id = 'bench-p3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(started, 200, "every 201 is a stored instance");
}

#[test]
fn serve_reads_its_settings_file_and_reports_mistakes_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "db: x.db\nport: 80\n").unwrap();
    let (code, _, err) = ordo(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:2:1"), "{err}");
    assert!(err.contains("unknown field `port`"), "{err}");
    // The file's `deploy` is used: an invalid process there stops the start.
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("broken.yaml"), "id: b\nnodes: {}\n").unwrap();
    let good = dir.path().join("ordo.yaml");
    let db = dir.path().join("o.db");
    std::fs::write(
        &good,
        format!(
            "db: {}\naddr: 127.0.0.1:0\ndeploy: [{}]\n",
            db.display(),
            flows.display()
        ),
    )
    .unwrap();
    let (code, _, err) = ordo(&["serve", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.yaml has errors"), "{err}");
    assert!(db.exists(), "the file's `db` was opened");
}

#[test]
fn people_commands_wait_for_a_busy_server_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("ordo.db");
    let db = db_path.to_str().unwrap().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(ordo_server::Server::open(&ordo_server::ServeConfig {
            db: db_path.clone(),
            addr: "127.0.0.1:0".parse().unwrap(),
            deploy: Vec::new(),
            backups: dir.path().join("backups"),
            plugins: Vec::new(),
            clock: None,
        }))
        .unwrap();
    let engine = std::sync::Arc::clone(&server.state().engine);
    rt.block_on(engine.deploy(
        "busy.yaml",
        "id: busy\nstart: [{id: s, next: e}]\nnodes: {e: {type: end}}\n",
    ))
    .unwrap();
    // The server's writer commits all the time while the commands run.
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (engine, busy) = (std::sync::Arc::clone(&engine), std::sync::Arc::clone(&busy));
        rt.spawn(async move {
            let mut n = 0u64;
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                engine
                    .start("busy", None, None, ordo_engine::runtime::Vars::new())
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    for i in 0..8 {
        let name = format!("p{i}");
        let (code, _, err) = ordo(&["user", "add", &name, "--role", "salesperson", "--db", &db]);
        assert_eq!(code, 0, "user add {name}: {err}");
        let (code, token, err) = ordo(&["token", "create", "--user", &name, "--db", &db]);
        assert_eq!(code, 0, "token create {name}: {err}");
        assert!(token.trim().starts_with("ordo_"), "{token}");
    }
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    let started = rt.block_on(load).unwrap();
    assert!(started > 0, "the server was busy");
    // The server sees the people the commands added.
    let who = server.directory().person("p7").unwrap();
    assert_eq!(who.map(|w| w.user), Some("p7".to_owned()));
}

#[test]
fn serve_without_its_process_folder_says_so_once_and_makes_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read processes"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause once: {err}"
    );
    assert!(
        !dir.path().join("ordo.db").exists(),
        "no database is made before the processes are found"
    );
}

#[test]
fn an_unreachable_postgres_database_is_a_clear_error_that_shows_no_password() {
    let url = "postgres://ordo:s3cret@127.0.0.1:1/nowhere";
    for args in [
        vec!["serve", "--db", url, "--addr", "127.0.0.1:0"],
        vec!["user", "add", "ann", "--role", "admin", "--db", url],
        vec!["backup", "--db", url, "--to", "x.db"],
        vec!["bench", "--db", url, "--workload", "p1", "--instances", "1"],
    ] {
        let (code, out, err) = ordo(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            !err.contains("s3cret") && !out.contains("s3cret"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains("PostgreSQL") || err.contains("pg_dump"),
            "{args:?} says what it could not reach: {err}"
        );
    }
}
