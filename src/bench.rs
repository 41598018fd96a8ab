//! `ordo bench`: the workloads P1–P7 (`ordo bench --help` describes each)
//! against a real SQLite file.

use anyhow::Context;
use ordo_engine::engine::{Config, Correlation, Engine, Message};
use ordo_engine::runtime::{ManualClock, TokenState, Vars};
use ordo_engine::store;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// P1: start → 10 automatic steps → end.
const P1: &str = "id: bench-p1
start: [{id: s, next: a1}]
nodes:
  a1: {type: assign, set: {n: =n + 1}, next: a2}
  a2: {type: assign, set: {n: =n + 1}, next: a3}
  a3: {type: assign, set: {n: =n + 1}, next: a4}
  a4: {type: assign, set: {n: =n + 1}, next: a5}
  a5: {type: assign, set: {n: =n + 1}, next: a6}
  a6: {type: assign, set: {n: =n + 1}, next: a7}
  a7: {type: assign, set: {n: =n + 1}, next: a8}
  a8: {type: assign, set: {n: =n + 1}, next: a9}
  a9: {type: assign, set: {n: =n + 1}, next: a10}
  a10: {type: assign, set: {n: =n + 1}, next: e}
  e: {type: end}
";

/// P2: exclusive split/merge, then a parallel split of 3 and join.
const P2: &str = "id: bench-p2
start: [{id: s, next: x}]
nodes:
  x:
    type: exclusive
    branches: [{when: n % 2 == 0, to: even}]
    default: odd
  even: {type: empty, next: merge}
  odd: {type: empty, next: merge}
  merge: {type: exclusive, next: split}
  split: {type: parallel, next: [b1, b2, b3]}
  b1: {type: empty, next: join}
  b2: {type: empty, next: join}
  b3: {type: empty, next: join}
  join: {type: parallel, next: e}
  e: {type: end}
";

/// P3: start into a user task, then complete it.
const P3: &str = "id: bench-p3
starters: {roles: [integrator]}
start: [{id: s, next: t}]
nodes:
  t: {type: user, assignee: =who, next: e}
  e: {type: end}
";

/// P4: instances waiting on a message, one key each.
const P4: &str = "id: bench-p4
start: [{id: s, next: w}]
nodes:
  w: {type: receive, message: paid, next: e}
  e: {type: end}
";

/// P5: instances waiting on a one-hour timer.
const P5: &str = "id: bench-p5
start: [{id: s, next: w}]
nodes:
  w: {type: catch, timer: PT1H, next: e}
  e: {type: end}
";

/// One workload's figures.
#[derive(Debug, Serialize)]
pub struct Figures {
    /// P6 only: "my tasks" query p99 (ms), restart-to-serving time (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    my_tasks_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_ms: Option<f64>,
    /// With `--memory`: resident memory at the end of the workload (MB).
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_end_mb: Option<f64>,
    workload: &'static str,
    instances: usize,
    concurrency: usize,
    sync: store::Sync,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mb: f64,
}

/// Options of `ordo bench`.
#[derive(Debug)]
pub struct Options {
    pub workloads: Vec<String>,
    pub db: Option<PathBuf>,
    pub instances: usize,
    pub concurrency: usize,
    pub sync: store::Sync,
    pub memory: bool,
}

pub fn run(opts: &Options) -> anyhow::Result<Vec<Figures>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    for w in &opts.workloads {
        let (name, yaml): (&'static str, &str) = match w.as_str() {
            "p1" => ("P1", P1),
            "p2" => ("P2", P2),
            "p3" => ("P3", P3),
            "p6" => ("P6", P3),
            "p4" => ("P4", P4),
            "p5" => ("P5", P5),
            "p7" => ("P7", P3),
            other => {
                anyhow::bail!("unknown workload `{other}`; use p1, p2, p3, p4, p5, p6 or p7")
            }
        };
        let dir = tempfile::tempdir()?;
        let db = match &opts.db {
            Some(p) => p.clone(),
            None => dir.path().join(format!("bench-{w}.db")),
        };
        let mut cfg = Config::new(&db);
        cfg.sync = opts.sync;
        // P5 moves time by hand: timers come due at one instant, without waiting an hour.
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        if name == "P5" {
            cfg.clock = Arc::clone(&clock) as _;
        }
        if name == "P7" {
            out.push(rt.block_on(p7(&db, yaml, opts))?);
            continue;
        }
        let engine = Arc::new(
            Engine::open(cfg).with_context(|| format!("cannot open {}", store::describe(&db)))?,
        );
        let mut figures = match name {
            "P4" => rt.block_on(p4(engine, yaml, opts))?,
            "P5" => rt.block_on(p5(engine, &clock, yaml, opts))?,
            _ => rt.block_on(workload(engine, name, yaml, opts))?,
        };
        if name == "P6" {
            rt.block_on(p6_after(&db, opts, &mut figures))?;
        }
        out.push(figures);
    }
    Ok(out)
}

async fn workload(
    engine: Arc<Engine>,
    name: &'static str,
    yaml: &str,
    opts: &Options,
) -> anyhow::Result<Figures> {
    let deployed = engine.deploy("bench.yaml", yaml).await?;
    let process = deployed.process;
    let started = Instant::now();
    let per_worker = opts.instances.div_ceil(opts.concurrency.max(1));
    let mut workers = Vec::new();
    for w in 0..opts.concurrency.max(1) {
        let engine = Arc::clone(&engine);
        let process = process.clone();
        let count = per_worker.min(opts.instances.saturating_sub(w * per_worker));
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(count);
            for i in 0..count {
                let t0 = Instant::now();
                let mut vars = Vars::new();
                vars.insert("n".into(), serde_json::json!(i));
                // Spread over the 100 users by the instance's place in the
                // whole run, so every user has tasks however few each
                // caller starts (P6 looks for each user's).
                let who = (w * per_worker + i) % 100;
                vars.insert("who".into(), serde_json::json!(format!("user{who}")));
                let inst = engine.start(&process, None, None, vars).await?;
                // P6 leaves every instance waiting in its task.
                if name == "P3" {
                    let activity = inst
                        .tokens
                        .iter()
                        .find_map(|t| match t.state {
                            TokenState::Waiting { activity, .. } => Some(activity),
                            _ => None,
                        })
                        .context("P3 instance does not wait in its task")?;
                    engine
                        .complete_task(&inst.id, activity.0, Vars::new(), None, None)
                        .await?;
                }
                lat.push(t0.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(opts.instances);
    for w in workers {
        lat.extend(w.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    engine.close();
    Ok(figures(name, opts, lat.len(), seconds, &lat))
}

/// P7: instances started over HTTP on loopback. The server runs in this process
/// on an ephemeral port; each caller holds one keep-alive connection and sends
/// `POST /api/instances` requests one after the other.
async fn p7(db: &std::path::Path, yaml: &str, opts: &Options) -> anyhow::Result<Figures> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let config = ordo_server::ServeConfig {
        db: db.to_owned(),
        addr: "127.0.0.1:0".parse()?,
        deploy: Vec::new(),
        backups: db.with_extension("backups"),
        plugins: Vec::new(),
        clock: None,
    };
    let server = ordo_server::Server::open(&config).await?;
    let people = server.directory();
    for (name, role) in [
        ("bench", ordo_server::auth::Role::Integrator),
        ("bench-designer", ordo_server::auth::Role::Designer),
    ] {
        people.add(&ordo_server::auth::Person {
            name: name.into(),
            roles: vec![role],
            ..Default::default()
        })?;
    }
    let token = Arc::new(people.create_token("bench")?);
    let deploy_token = people.create_token("bench-designer")?;
    let addr = server.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    /// One request on a keep-alive connection; returns the status.
    async fn request(
        conn: &mut BufReader<tokio::net::TcpStream>,
        path: &str,
        token: &str,
        content_type: &str,
        body: &str,
    ) -> anyhow::Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        // One write: a second small segment would wait for a delayed ACK (Nagle).
        conn.get_mut()
            .write_all(format!("{head}{body}").as_bytes())
            .await?;
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let status: u16 = line.get(9..12).context("no status line")?.parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await?;
        Ok(status)
    }

    let mut conn = BufReader::new(tokio::net::TcpStream::connect(addr).await?);
    let status = request(
        &mut conn,
        "/api/definitions",
        &deploy_token,
        "text/yaml",
        yaml,
    )
    .await?;
    anyhow::ensure!(status == 201, "deploying the P7 process answered {status}");

    let started = Instant::now();
    let callers = opts.concurrency.max(1);
    let mut workers = Vec::new();
    for w in 0..callers {
        let token = Arc::clone(&token);
        let n = (w..opts.instances).step_by(callers).count();
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut conn = BufReader::new(stream);
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let body = format!(
                    r#"{{"process":"bench-p3","variables":{{"who":"user{}"}}}}"#,
                    i % 100
                );
                let t0 = Instant::now();
                let status = request(
                    &mut conn,
                    "/api/instances",
                    &token,
                    "application/json",
                    &body,
                )
                .await?;
                anyhow::ensure!(status == 201, "a start answered {status}");
                lat.push(t0.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(opts.instances);
    for w in workers {
        lat.extend(w.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let _ = stop.send(());
    running.await??;
    Ok(figures("P7", opts, lat.len(), seconds, &lat))
}

/// Starts `n` instances of `process` from `concurrency` callers, with business
/// keys `k0`, `k1`, … (setup, not timed).
async fn start_many(
    engine: &Arc<Engine>,
    process: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let callers = concurrency.max(1);
    let mut tasks = Vec::new();
    for w in 0..callers {
        let engine = Arc::clone(engine);
        let process = process.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(callers) {
                engine
                    .start(&process, None, Some(format!("k{i}")), Vars::new())
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Latency percentiles (ms) of sorted samples.
fn percentile(lat: &[Duration], p: f64) -> f64 {
    let idx = ((lat.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(lat.len().saturating_sub(1));
    lat.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// P4: every instance waits on `paid` with its own key; one message per key is
/// correlated, from `concurrency` callers. Timed: the messages only.
async fn p4(engine: Arc<Engine>, yaml: &str, opts: &Options) -> anyhow::Result<Figures> {
    let process = engine.deploy("bench.yaml", yaml).await?.process;
    start_many(&engine, &process, opts.instances, opts.concurrency).await?;
    let started = Instant::now();
    let callers = opts.concurrency.max(1);
    let run = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let mut tasks = Vec::new();
    for w in 0..callers {
        let engine = Arc::clone(&engine);
        let run = run.clone();
        let n = opts.instances;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..n).step_by(callers) {
                let t0 = Instant::now();
                let m = Message {
                    name: "paid".into(),
                    key: Some(format!("k{i}")),
                    // Unique to this run: a second run on the same `--db`
                    // must not find its messages already seen.
                    message_id: Some(format!("m{run}-{i}")),
                    ..Message::default()
                };
                let out = engine.correlate(m).await?;
                anyhow::ensure!(
                    matches!(out, Correlation::Correlated { .. }),
                    "message for k{i}: {out:?}"
                );
                lat.push(t0.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(opts.instances);
    for t in tasks {
        lat.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    engine.close();
    Ok(figures("P4", opts, lat.len(), seconds, &lat))
}

/// P5: every instance waits on a one-hour timer; the clock jumps one hour and the
/// scheduler fires them all. Checks none fires early and none twice. Timed: firing.
async fn p5(
    engine: Arc<Engine>,
    clock: &ManualClock,
    yaml: &str,
    opts: &Options,
) -> anyhow::Result<Figures> {
    let process = engine.deploy("bench.yaml", yaml).await?.process;
    start_many(&engine, &process, opts.instances, opts.concurrency).await?;
    clock.advance(chrono::Duration::minutes(59));
    let early = engine.fire_due_timers().await?;
    anyhow::ensure!(early.fired == 0, "{} timers fired early", early.fired);
    clock.advance(chrono::Duration::minutes(1));
    let started = Instant::now();
    let fired = engine.fire_due_timers().await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        fired.fired == opts.instances && fired.failed.is_empty(),
        "fired {} of {}; failed: {:?}",
        fired.fired,
        opts.instances,
        fired.failed.first()
    );
    let again = engine.fire_due_timers().await?;
    anyhow::ensure!(again.fired == 0, "{} timers fired twice", again.fired);
    engine.close();
    Ok(figures("P5", opts, fired.fired, seconds, &[]))
}

fn figures(
    name: &'static str,
    opts: &Options,
    n: usize,
    seconds: f64,
    lat: &[Duration],
) -> Figures {
    Figures {
        my_tasks_p99_ms: None,
        restart_ms: None,
        rss_end_mb: opts.memory.then(|| proc_status_mb("VmRSS:")),
        workload: name,
        instances: n,
        concurrency: opts.concurrency,
        sync: opts.sync,
        seconds,
        per_second: n as f64 / seconds,
        p50_ms: percentile(lat, 0.50),
        p99_ms: percentile(lat, 0.99),
        peak_rss_mb: peak_rss_mb(),
    }
}

/// P6, after the instances wait: reopen the engine (restart to serving), then time
/// "my tasks" queries.
async fn p6_after(db: &std::path::Path, opts: &Options, f: &mut Figures) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut cfg = Config::new(db);
    cfg.sync = opts.sync;
    let engine = Engine::open(cfg)?;
    let first = engine.tasks_of("user0", 50).await?;
    f.restart_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
    anyhow::ensure!(!first.is_empty(), "user0 has no task after the restart");
    let mut lat = Vec::with_capacity(2000);
    for i in 0..2000 {
        let t = Instant::now();
        let tasks = engine.tasks_of(&format!("user{}", i % 100), 50).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(!tasks.is_empty(), "no tasks for user{}", i % 100);
    }
    lat.sort_unstable();
    f.my_tasks_p99_ms = lat
        .get(lat.len() * 99 / 100)
        .map(|d| d.as_secs_f64() * 1000.0);
    f.peak_rss_mb = peak_rss_mb();
    if opts.memory {
        f.rss_end_mb = Some(proc_status_mb("VmRSS:"));
    }
    engine.close();
    Ok(())
}

/// Peak resident memory of this process (Linux), in MB.
fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM:")
}

/// A memory figure of `/proc/self/status` (Linux), in MB; 0 elsewhere.
fn proc_status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs start + complete forever (until killed), printing each acknowledged command.
pub fn crash_load(db: &std::path::Path, concurrency: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = Arc::new(Engine::open(Config::new(db))?);
        engine.deploy("crash.yaml", P3).await?;
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut workers = Vec::new();
        for w in 0..concurrency.max(1) {
            let engine = Arc::clone(&engine);
            let out = Arc::clone(&out);
            workers.push(tokio::spawn(async move {
                let say = |line: String| {
                    use std::io::Write;
                    let mut o = out
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let _ = writeln!(o, "{line}");
                    let _ = o.flush();
                };
                loop {
                    let mut vars = Vars::new();
                    vars.insert("who".into(), serde_json::json!(format!("w{w}")));
                    let inst = engine.start("bench-p3", None, None, vars).await?;
                    say(format!("S {}", inst.id));
                    let activity = inst.tokens.iter().find_map(|t| match t.state {
                        TokenState::Waiting { activity, .. } => Some(activity),
                        _ => None,
                    });
                    if let Some(a) = activity {
                        engine
                            .complete_task(&inst.id, a.0, Vars::new(), None, None)
                            .await?;
                        say(format!("C {}", inst.id));
                    }
                }
                #[allow(unreachable_code)]
                anyhow::Ok(())
            }));
        }
        for w in workers {
            w.await??;
        }
        anyhow::Ok(())
    })
}
