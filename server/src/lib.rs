//! Ordo's HTTP server: the REST API over the engine, with people, roles and
//! tokens, and the background loop that fires due timers.
//!
//! `ordo serve` builds a [`Server`] from a [`ServeConfig`] and runs it until
//! Ctrl-C (or SIGTERM); shutting down stops taking requests, lets those in flight
//! finish, and closes the engine, which commits what it has been sent.

pub mod access;
pub mod api;
pub mod auth;
pub mod diagram;
mod error;
pub mod openapi;
pub mod pages;

pub use error::{ApiError, ErrorBody};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use ordo_engine::engine::{Config, Engine};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Largest request body: a process definition is at most 1 MiB, JSON bodies less.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest the scheduler sleeps between looks at the timers table (a timer added
/// by another command is seen at the latest after this).
pub const MAX_SCHEDULER_SLEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Server errors (start-up).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not open or deploy.
    #[error(transparent)]
    Engine(#[from] ordo_engine::engine::Error),
    /// The people directory could not open.
    #[error(transparent)]
    Directory(#[from] auth::Error),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {why}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (told in the message, not as a cause again).
        why: std::io::Error,
    },
    /// A process file could not be read.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (told in the message, not as a cause again).
        why: std::io::Error,
    },
    /// A plugin could not be installed or seeded.
    #[error("the {plugin} plugin cannot start: {reason}")]
    Plugin {
        /// The plugin.
        plugin: &'static str,
        /// Why.
        reason: String,
    },
    /// A process file to deploy has errors.
    #[error("{path} has errors: run `ordo validate {path}` to see them")]
    InvalidProcess {
        /// The file.
        path: PathBuf,
    },
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// People, roles and tokens.
    pub directory: Arc<auth::Directory>,
    /// Where `POST /api/backup` writes its copies.
    pub backups: PathBuf,
}

/// The whole HTTP application: `/health`, `/metrics`, `/api` and the pages.
pub fn router(state: AppState) -> Router {
    router_with(state, &[])
}

/// The server's routes plus each plugin's API routes (under `/api`) and pages.
pub fn router_with(state: AppState, plugins: &[Arc<dyn Plugin>]) -> Router {
    let document = Arc::new(openapi::Served(openapi::document(plugins).to_string()));
    let mut api = api::routes();
    let mut pages = pages::routes();
    let mut rules = access::SERVER.to_vec();
    for p in plugins {
        for entry in p.nav() {
            pages::add_nav(entry);
        }
        rules.extend(p.access());
        api = api.merge(p.api());
        pages = pages.merge(pages::guarded(p.pages()));
    }
    let table = Arc::new(access::Table::new(rules));
    pages::set_access(Arc::clone(&table));
    let gate = (table, state.clone());
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        gate.clone(),
        access::enforce_api,
    ));
    let pages = pages.route_layer(axum::middleware::from_fn_with_state(
        gate,
        access::enforce_page,
    ));
    harden(
        Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .nest("/api", api)
            .merge(pages)
            .layer(axum::Extension(document))
            .with_state(state),
    )
}

/// A future a plugin runs in the background while the server runs.
pub type Background = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a plugin (the CRM) adds to the server, which stays generic: actions and
/// tables installed before the engine opens, API routes and pages, background
/// work after commits (delivering notifications), and demo data.
pub trait Plugin: Send + Sync + std::fmt::Debug {
    /// Its name, for messages.
    fn name(&self) -> &'static str;
    /// Prepares its tables and registers its actions, before the engine opens.
    fn install(&self, config: &mut Config) -> Result<(), String>;
    /// Routes nested under `/api`.
    fn api(&self) -> Router<AppState> {
        Router::new()
    }
    /// Adds its API routes to the OpenAPI document (one operation per route of
    /// [`Plugin::api`], paths as clients see them: `/api/...`).
    fn openapi(&self, _doc: &mut openapi::Doc) {}
    /// Pages, behind the same sign-in, origin check and headers as the server's.
    fn pages(&self) -> Router<AppState> {
        Router::new()
    }
    /// Sections its pages add to the navigation bar (shown to those who may
    /// open them).
    fn nav(&self) -> Vec<pages::NavEntry> {
        Vec::new()
    }
    /// Who may call each of its API routes (paths with `/api`) and pages: every
    /// route it adds needs a rule, or nobody may call it.
    fn access(&self) -> Vec<access::Rule> {
        Vec::new()
    }
    /// Work to run until `stop` turns true.
    fn background(&self, _state: AppState, _stop: watch::Receiver<bool>) -> Option<Background> {
        None
    }
    /// Adds demo data (`ordo serve --demo`), after the demo people exist. Runs
    /// on a blocking thread, so it may wait on `Engine::write_blocking`.
    fn seed_demo(&self, _state: &AppState) -> Result<(), String> {
        Ok(())
    }
}

/// What every route gets: the body size limit (413 beyond it), and a panic in a
/// handler answered as a plain 500 that shows nothing of the server's internals.
pub fn harden(router: Router) -> Router {
    router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).layer(
        tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::Internal("a request handler panicked".into()).into_response()
        }),
    )
}

/// `GET /health`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Health {
    /// Always `ok` when it answers.
    pub status: String,
}

async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
    })
}

/// Prometheus text: counters since start and what is open now. It holds no
/// business data, so it needs no token (scrapers seldom carry one); put the
/// server behind a proxy that hides it if even counts are sensitive.
async fn metrics(
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Result<axum::response::Response, ApiError> {
    let s = st.engine.stats();
    let g = st.engine.gauges().await?;
    let rows: [(&str, &str, &str, u64); 9] = [
        (
            "ordo_commands_total",
            "counter",
            "Commands committed.",
            s.commands,
        ),
        (
            "ordo_commands_failed_total",
            "counter",
            "Commands refused or rolled back.",
            s.failed_commands,
        ),
        (
            "ordo_commits_total",
            "counter",
            "Group commits (batches); commands_total / commits_total is the mean batch size.",
            s.commits,
        ),
        (
            "ordo_commits_failed_total",
            "counter",
            "Batches whose commit failed.",
            s.failed_commits,
        ),
        (
            "ordo_instances_started_total",
            "counter",
            "Instances started.",
            s.instances_started,
        ),
        (
            "ordo_instances_completed_total",
            "counter",
            "Instances completed.",
            s.instances_completed,
        ),
        (
            "ordo_instances_active",
            "gauge",
            "Active instances.",
            g.active_instances,
        ),
        ("ordo_tasks_open", "gauge", "Open user tasks.", g.open_tasks),
        (
            "ordo_incidents_open",
            "gauge",
            "Open incidents.",
            g.open_incidents,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, value) in rows {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response())
}

/// A demo person: name, roles, groups, supervisor.
pub type DemoPerson = (
    &'static str,
    &'static [auth::Role],
    &'static [&'static str],
    Option<&'static str>,
);

/// The demo organisation `ordo serve --demo` seeds: a sales director over a
/// sales team's supervisor, a market manager, finance, an order reviewer, the
/// contract board (the director and finance), an admin who also designs,
/// maintenance, and an integrating system. Names: (person, roles, groups,
/// supervisor).
pub const DEMO_PEOPLE: &[DemoPerson] = &[
    (
        "dora",
        &[auth::Role::Supervisor],
        &["directors", "contract_board"],
        None,
    ),
    (
        "sue",
        &[auth::Role::Supervisor],
        &["sales", "sales_supervisors"],
        Some("dora"),
    ),
    ("sam", &[auth::Role::Salesperson], &["sales"], Some("sue")),
    ("sally", &[auth::Role::Salesperson], &["sales"], Some("sue")),
    (
        "mark",
        &[auth::Role::Supervisor],
        &["market_managers"],
        None,
    ),
    (
        "fiona",
        &[auth::Role::Salesperson],
        &["finance", "contract_board"],
        None,
    ),
    (
        "oscar",
        &[auth::Role::Salesperson],
        &["order_reviewers"],
        None,
    ),
    ("ada", &[auth::Role::Admin, auth::Role::Designer], &[], None),
    ("max", &[auth::Role::Maintenance], &[], None),
    ("erp", &[auth::Role::Integrator], &[], None),
];

/// The password of every demo person (a demo is for trying Ordo, not for real
/// data).
pub const DEMO_PASSWORD: &str = "ordo-demo";

/// Adds the demo organisation to the directory, each person with the password
/// [`DEMO_PASSWORD`], and returns a fresh API token per person.
pub fn seed_demo(directory: &auth::Directory) -> Result<Vec<(String, String)>, auth::Error> {
    let mut tokens = Vec::new();
    for (name, roles, groups, supervisor) in DEMO_PEOPLE {
        directory.add(&auth::Person {
            name: (*name).to_owned(),
            roles: roles.to_vec(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            supervisor: supervisor.map(str::to_owned),
        })?;
        directory.set_password(name, DEMO_PASSWORD)?;
        tokens.push(((*name).to_owned(), directory.create_token(name)?));
    }
    Ok(tokens)
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The SQLite file.
    pub db: PathBuf,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Process files (or folders of them) to deploy at start.
    pub deploy: Vec<PathBuf>,
    /// Where backups taken through the API go.
    pub backups: PathBuf,
    /// Plugins, installed in order.
    pub plugins: Vec<Arc<dyn Plugin>>,
    /// The engine's clock (the system's when `None`; tests inject a manual one).
    pub clock: Option<Arc<dyn ordo_engine::runtime::Clock>>,
}

/// A server ready to run.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: tokio::net::TcpListener,
    plugins: Vec<Arc<dyn Plugin>>,
}

impl Server {
    /// Opens the engine and the directory, deploys the process files, and binds
    /// the address.
    pub async fn open(config: &ServeConfig) -> Result<Self, Error> {
        // A missing process folder is said before a database file is made.
        for path in &config.deploy {
            std::fs::metadata(path).map_err(|why| Error::Read {
                path: path.clone(),
                why,
            })?;
        }
        // The directory first: plugin actions read its people and groups.
        let directory = Arc::new(auth::Directory::open(&config.db)?);
        let mut engine_config = Config::new(config.db.clone());
        engine_config.roles = Some(auth::Role::names());
        if let Some(clock) = &config.clock {
            engine_config.clock = Arc::clone(clock);
        }
        for p in &config.plugins {
            p.install(&mut engine_config)
                .map_err(|reason| Error::Plugin {
                    plugin: p.name(),
                    reason,
                })?;
        }
        let engine = Arc::new(Engine::open(engine_config)?);
        // From here on the engine's writer is the only one: the directory's
        // writes (sessions, tokens, people) go through it.
        directory.attach(Arc::clone(&engine))?;
        for path in &config.deploy {
            deploy_path(&engine, path).await?;
        }
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|why| Error::Bind {
                addr: config.addr,
                why,
            })?;
        Ok(Server {
            state: AppState {
                engine,
                directory,
                backups: config.backups.clone(),
            },
            listener,
            plugins: config.plugins.clone(),
        })
    }

    /// The shared state handlers see.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Adds the demo organisation ([`seed_demo`]) on a blocking thread, as the
    /// directory writes through the engine's writer and waits for its commits.
    pub async fn seed_demo_people(&self) -> Result<Vec<(String, String)>, Error> {
        let directory = Arc::clone(&self.state.directory);
        tokio::task::spawn_blocking(move || seed_demo(&directory))
            .await
            .map_err(|e| Error::Plugin {
                plugin: "demo",
                reason: e.to_string(),
            })?
            .map_err(Error::from)
    }

    /// Lets each plugin add its demo data (on a blocking thread: a plugin
    /// writes through the engine's writer and waits for its commit).
    pub async fn seed_plugin_demos(&self) -> Result<(), Error> {
        for p in &self.plugins {
            let (plugin, state) = (Arc::clone(p), self.state.clone());
            tokio::task::spawn_blocking(move || plugin.seed_demo(&state))
                .await
                .map_err(|e| Error::Plugin {
                    plugin: p.name(),
                    reason: e.to_string(),
                })?
                .map_err(|reason| Error::Plugin {
                    plugin: p.name(),
                    reason,
                })?;
        }
        Ok(())
    }

    /// The people directory (to seed it, or add people before serving).
    pub fn directory(&self) -> &auth::Directory {
        &self.state.directory
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, firing due timers in the background;
    /// then lets requests in flight finish and closes the engine.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let scheduler = tokio::spawn(scheduler(Arc::clone(&self.state.engine), stop_rx.clone()));
        let background: Vec<_> = self
            .plugins
            .iter()
            .filter_map(|p| p.background(self.state.clone(), stop_rx.clone()))
            .map(tokio::spawn)
            .collect();
        let engine = Arc::clone(&self.state.engine);
        let app = router_with(self.state, &self.plugins);
        // Responses go out as soon as written, not after a delayed ACK (Nagle).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        let _ = scheduler.await;
        for b in background {
            let _ = b.await;
        }
        engine.close();
        served
    }
}

/// Fires due timers, then sleeps until the next is due (at most
/// [`MAX_SCHEDULER_SLEEP`]), until told to stop. A failure is reported and
/// retried after the sleep: the timers stay in the database meanwhile.
async fn scheduler(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = engine.fire_due_timers().await {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("ordo: firing timers failed, will retry: {e}");
            }
        }
        let wait = match engine.next_timer_due().await {
            Ok(Some(due)) => (due - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(MAX_SCHEDULER_SLEEP),
            _ => MAX_SCHEDULER_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Deploys a process file, or every `.yaml` file under a folder.
async fn deploy_path(engine: &Engine, path: &Path) -> Result<(), Error> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|why| Error::Read {
            path: p.to_owned(),
            why,
        })
    };
    let files = ordo_engine::model::yaml_files(path).map_err(|why| Error::Read {
        path: path.to_owned(),
        why,
    })?;
    for f in files {
        let text = read(&f)?;
        match engine.deploy(&f.display().to_string(), &text).await {
            Ok(_) => {}
            Err(ordo_engine::engine::Error::Invalid(_)) => {
                return Err(Error::InvalidProcess { path: f });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
