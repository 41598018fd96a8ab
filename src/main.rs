//! `ordo`: the command line of the Ordo workflow engine.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ordo_engine::model::{self, Options};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the writer thread allocates and
/// frees many small strings and JSON values per command.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "ordo",
    version,
    about = "Ordo: a workflow / BPM engine with CRM processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check process files (or folders of them) and report every problem.
    ///
    /// Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage error.
    Validate {
        /// Files or folders; folders are searched for `*.yaml` and `*.yml`.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// A working calendar that exists besides `default` (repeatable).
        #[arg(long = "calendar", value_name = "NAME")]
        calendars: Vec<String>,
        /// A folder of working-calendar files (`calendars/`) to check and make known.
        #[arg(long = "calendars", value_name = "DIR")]
        calendar_dir: Option<PathBuf>,
    },
    /// Print the flow of a process as a diagram.
    Graph {
        /// The process file.
        file: PathBuf,
        /// Diagram language.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of the process format (for editor completion).
    Schema,
    /// Print the OpenAPI document of the server's API, the CRM's routes included
    /// (what `GET /api/openapi.json` serves), for generating clients.
    Openapi,
    /// Run the server: the REST API on `--addr`, the engine on `--db`, timers fired
    /// in the background; deploys the process files given (default `processes/`).
    /// Each setting comes from its flag, else its environment variable, else the
    /// `--config` file, else its default.
    Serve {
        /// A YAML file with any of `db`, `addr`, `deploy` (a list), `backups`.
        #[arg(long, env = "ORDO_CONFIG")]
        config: Option<PathBuf>,
        /// The SQLite file, created when missing [default: ordo.db].
        #[arg(long, env = "ORDO_DB")]
        db: Option<PathBuf>,
        /// Where to listen [default: 127.0.0.1:8080].
        #[arg(long, env = "ORDO_ADDR")]
        addr: Option<std::net::SocketAddr>,
        /// Process files or folders to deploy at start (repeatable) [default: processes].
        #[arg(long = "deploy", value_name = "PATH")]
        deploy: Vec<PathBuf>,
        /// Where backups taken through the API go [default: backups].
        #[arg(long, env = "ORDO_BACKUPS")]
        backups: Option<PathBuf>,
        /// The SMTP relay CRM e-mails go through, as host:port (no TLS: a relay
        /// on the local network). Without it, e-mails wait in the outbox.
        #[arg(long, env = "ORDO_SMTP")]
        smtp: Option<String>,
        /// The sender of CRM e-mails.
        #[arg(
            long,
            env = "ORDO_SMTP_FROM",
            default_value = "Ordo CRM <crm@ordo.localhost>"
        )]
        smtp_from: String,
        /// Seed a demo organisation (sales team, supervisor, market manager,
        /// finance, admin, maintenance, an integrator) with CRM data and a lead
        /// on its way, and print their tokens.
        #[arg(long)]
        demo: bool,
    },
    /// Copy the database to a new file while the server may be running (an online
    /// backup). To restore: stop the server, replace the database file with the
    /// copy (removing its `-wal` and `-shm` files), start again.
    Backup {
        /// The SQLite file.
        #[arg(long, env = "ORDO_DB", default_value = "ordo.db")]
        db: PathBuf,
        /// The new file to write (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Manage the people who use the server.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Crash-test load (used by tests/crash.rs).
    #[command(hide = true)]
    CrashLoad(CrashLoad),
    /// Measure the engine on a real SQLite file, per workload: instances (or
    /// round trips) per second, p50 and p99 latency, peak RSS.
    ///
    /// P1: start → 10 automatic steps → end. P2: an exclusive split and merge,
    /// then a parallel split of 3 and its join. P3: start into a user task, then
    /// complete it (a round trip). P4: instances wait on a message, one key each;
    /// timed: correlating one message per key. P5: instances wait on a one-hour
    /// timer; the clock jumps an hour; timed: firing them all (none early, none
    /// twice). P6: `--instances` instances wait in user tasks; timed: restart to
    /// serving, then "my tasks" queries. P7 (on request): starts over HTTP on
    /// loopback, one keep-alive connection per caller.
    Bench {
        /// Workloads to run.
        #[arg(long = "workload", value_name = "p1|…|p7", default_values_t = ["p1".to_owned(), "p2".to_owned(), "p3".to_owned(), "p4".to_owned(), "p5".to_owned(), "p6".to_owned()])]
        workloads: Vec<String>,
        /// SQLite file, or a `postgres://` URL (the engine on one PostgreSQL node; a temporary SQLite file by default).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Instances per workload.
        #[arg(long, default_value_t = 20_000)]
        instances: usize,
        /// Callers at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Durability: full (default) or normal.
        #[arg(long, value_enum, default_value_t = SyncArg::Full)]
        sync: SyncArg,
        /// Also report resident memory at the end of each workload (peak RSS is
        /// always reported).
        #[arg(long)]
        memory: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a person (or replace their roles, groups and supervisor).
    Add {
        /// Their name (their user id in tasks).
        name: String,
        /// A role: salesperson, supervisor, admin, maintenance, designer, integrator
        /// (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A group they belong to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Their supervisor.
        #[arg(long)]
        supervisor: Option<String>,
        /// The SQLite file.
        #[arg(long, env = "ORDO_DB", default_value = "ordo.db")]
        db: PathBuf,
    },
    /// Set a person's password for the pages, read from the first line of
    /// standard input (`ordo user passwd ann < file`, or type it and press Enter).
    Passwd {
        /// The person.
        name: String,
        /// The SQLite file.
        #[arg(long, env = "ORDO_DB", default_value = "ordo.db")]
        db: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create an API token for a person and print it (it is shown only once).
    Create {
        /// The person.
        #[arg(long)]
        user: String,
        /// The SQLite file.
        #[arg(long, env = "ORDO_DB", default_value = "ordo.db")]
        db: PathBuf,
    },
}

/// The load the crash test kills: starts instances and completes their tasks, and
/// prints `S id` / `C id` only after each command is acknowledged (committed).
#[derive(clap::Args, Debug)]
struct CrashLoad {
    /// SQLite file.
    #[arg(long)]
    db: PathBuf,
    /// Callers at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum SyncArg {
    /// synchronous=FULL
    Full,
    /// synchronous=NORMAL
    Normal,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Format {
    /// rustc-style: the source line, a caret, a hint.
    Human,
    /// One JSON document with every diagnostic, for tools.
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum GraphFormat {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz dot.
    Dot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The server's settings file (`ordo serve --config FILE`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<PathBuf>,
    addr: Option<std::net::SocketAddr>,
    deploy: Option<Vec<PathBuf>>,
    backups: Option<PathBuf>,
    smtp: Option<String>,
}

impl FileConfig {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_yaml::from_str(&text).map_err(|e| match e.location() {
            Some(l) => anyhow::anyhow!(
                "{}:{}:{}: {e}; the settings are db, addr, deploy and backups",
                path.display(),
                l.line(),
                l.column()
            ),
            None => anyhow::anyhow!("{}: {e}", path.display()),
        })
    }
}

/// Sends the demo's first lead, as a web form would: Sam or Sally gets the
/// "Contact and qualify" task, and an inbox notification saying why them.
async fn demo_lead(state: &ordo_server::AppState) -> anyhow::Result<()> {
    let lead = serde_json::json!({"lead": {
        "name": "Li Lei", "company": "Donghai Textiles", "email": "li.lei@donghai.example",
        "phone": "13800138000", "region": "east", "industry": "textiles", "source": "inbound",
    }});
    let message = ordo_engine::engine::Message {
        name: "lead.received".into(),
        key: Some("li.lei@donghai.example".into()),
        message_id: Some("demo-lead-1".into()),
        variables: serde_json::from_value(lead)?,
        ttl: None,
    };
    if let Err(e) = state.engine.correlate(message).await {
        eprintln!("ordo: the demo lead was not started ({e}); is processes/crm deployed?");
    }
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM.
fn serve(config: ordo_server::ServeConfig, demo: bool) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = ordo_server::Server::open(&config).await?;
        let addr = server.local_addr()?;
        if demo {
            let tokens = server.seed_demo_people().await?;
            server.seed_plugin_demos().await?;
            demo_lead(server.state()).await?;
            eprintln!(
                "ordo: demo people: sign in at http://{addr}/ as any of them with the password `{}`;",
                ordo_server::DEMO_PASSWORD
            );
            eprintln!("  each also has a new API token (send `Authorization: Bearer TOKEN`):");
            for (name, token) in tokens {
                eprintln!("  {name:<6} {token}");
            }
            eprintln!("  e.g. curl -H \"Authorization: Bearer <ada's token>\" http://{addr}/api/definitions");
        } else if server.state().directory.is_empty().unwrap_or(false) {
            eprintln!(
                "ordo: nobody can sign in yet: add someone with `ordo user add NAME --role admin --db {}` \
                 (and `ordo user passwd NAME`), or start with --demo for a demo office",
                ordo_engine::store::describe(&config.db)
            );
        }
        eprintln!(
            "ordo: serving http://{addr} (database {}); Ctrl-C stops",
            ordo_engine::store::describe(&config.db)
        );
        server.run(shutdown_signal()).await?;
        eprintln!("ordo: stopped; everything acknowledged is committed");
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate {
            paths,
            format,
            calendars,
            calendar_dir,
        } => validate(&paths, format, calendars, calendar_dir.as_deref()),
        Command::Graph { file, format } => graph(&file, format),
        Command::Bench {
            workloads,
            db,
            instances,
            concurrency,
            sync,
            memory,
            json,
        } => {
            let opts = bench::Options {
                workloads,
                db,
                instances,
                concurrency,
                sync: match sync {
                    SyncArg::Full => ordo_engine::store::Sync::Full,
                    SyncArg::Normal => ordo_engine::store::Sync::Normal,
                },
                memory,
            };
            let figures = bench::run(&opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            } else {
                for f in &figures {
                    println!("{}", serde_json::to_string(f)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CrashLoad(args) => {
            bench::crash_load(&args.db, args.concurrency)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            db,
            addr,
            deploy,
            backups,
            smtp,
            smtp_from,
            demo,
        } => {
            let file = match &config {
                Some(path) => FileConfig::read(path)?,
                None => FileConfig::default(),
            };
            let config = ordo_server::ServeConfig {
                db: db.or(file.db).unwrap_or_else(|| "ordo.db".into()),
                addr: match addr.or(file.addr) {
                    Some(a) => a,
                    None => "127.0.0.1:8080".parse()?,
                },
                deploy: if deploy.is_empty() {
                    file.deploy.unwrap_or_else(|| vec!["processes".into()])
                } else {
                    deploy
                },
                backups: backups.or(file.backups).unwrap_or_else(|| "backups".into()),
                plugins: vec![Arc::new(ordo_crm::CrmPlugin::new(
                    match smtp.or(file.smtp) {
                        Some(addr) => Some(
                            ordo_crm::deliver::Smtp::parse(&addr, &smtp_from)
                                .map_err(|e| anyhow::anyhow!("--smtp: {e}"))?,
                        ),
                        None => None,
                    },
                ))],
                clock: None,
            };
            serve(config, demo)
        }
        Command::Backup { db, to } => {
            if !ordo_engine::store::is_postgres(&db) && !db.exists() {
                anyhow::bail!("{} does not exist", ordo_engine::store::describe(&db));
            }
            let bytes = ordo_engine::store::backup(&db, &to)?;
            println!("{} ({bytes} bytes)", to.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    roles,
                    groups,
                    supervisor,
                    db,
                },
        } => {
            let roles = roles
                .iter()
                .map(|r| r.parse())
                .collect::<Result<Vec<ordo_server::auth::Role>, _>>()?;
            let dir = ordo_server::auth::Directory::open(&db)?;
            dir.add(&ordo_server::auth::Person {
                name: name.clone(),
                roles,
                groups,
                supervisor,
            })?;
            println!("{name} added");
            Ok(ExitCode::SUCCESS)
        }
        Command::User {
            command: UserCommand::Passwd { name, db },
        } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            let dir = ordo_server::auth::Directory::open(&db)?;
            dir.set_password(&name, password)?;
            println!("password set for {name}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Create { user, db },
        } => {
            let dir = ordo_server::auth::Directory::open(&db)?;
            println!("{}", dir.create_token(&user)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&model::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            let plugins: Vec<Arc<dyn ordo_server::Plugin>> =
                vec![Arc::new(ordo_crm::CrmPlugin::new(None))];
            let doc = ordo_server::openapi::document(&plugins);
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(
    paths: &[PathBuf],
    format: Format,
    calendars: Vec<String>,
    calendar_dir: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(model::yaml_files(p).with_context(|| format!("cannot open {}", p.display()))?);
    }
    if files.is_empty() {
        anyhow::bail!("no `.yaml` or `.yml` files in {}", join(paths));
    }
    let mut sources = Vec::new();
    let mut unreadable = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let name = f.display().to_string();
        // Invalid UTF-8 is a diagnostic of the file, not a usage error.
        match model::text_from_bytes(&name, bytes) {
            Ok(text) => sources.push((name, text)),
            Err(d) => unreadable.push(model::Loaded {
                file: name,
                process: None,
                diagnostics: vec![*d],
            }),
        }
    }
    let mut opts = Options {
        roles: Some(ordo_server::auth::Role::names()),
        ..Options::default()
    };
    opts.calendars.extend(calendars);
    if let Some(dir) = calendar_dir {
        let mut known = ordo_engine::calendar::Calendars::default();
        known.load_dir(dir)?;
        opts.calendars.extend(known.names());
    }
    let mut loaded = model::load_deployment(&sources, &opts);
    sources.extend(unreadable.iter().map(|l| (l.file.clone(), String::new())));
    loaded.extend(unreadable);
    let errors: usize = loaded
        .iter()
        .map(|l| l.diagnostics.iter().filter(|d| d.is_error()).count())
        .sum();
    let warnings: usize = loaded.iter().map(|l| l.diagnostics.len()).sum::<usize>() - errors;
    match format {
        Format::Json => {
            let files: Vec<_> = loaded
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "file": l.file,
                        "valid": !l.has_errors(),
                        "process": l.process.as_ref().map(|p| p.def.id.clone()),
                        "diagnostics": l.diagnostics,
                    })
                })
                .collect();
            let doc = serde_json::json!({ "files": files, "errors": errors, "warnings": warnings });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Human => {
            for (l, (_, text)) in loaded.iter().zip(&sources) {
                for d in &l.diagnostics {
                    eprintln!("{}\n", d.render(text));
                }
            }
            eprintln!(
                "checked {} file(s): {} valid, {errors} error(s), {warnings} warning(s)",
                loaded.len(),
                loaded.iter().filter(|l| !l.has_errors()).count()
            );
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn graph(file: &Path, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let loaded = model::load(&file.display().to_string(), &text, &Options::default());
    let Some(process) = loaded.process else {
        for d in &loaded.diagnostics {
            eprintln!("{}\n", d.render(&text));
        }
        return Ok(ExitCode::from(1));
    };
    match format {
        GraphFormat::Mermaid => print!("{}", process.graph.to_mermaid()),
        GraphFormat::Dot => print!("{}", process.graph.to_dot()),
    }
    Ok(ExitCode::SUCCESS)
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
