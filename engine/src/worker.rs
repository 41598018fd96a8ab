//! The job worker: runs asynchronous service calls (e-mail, webhooks, other
//! systems) outside the writer, under a lease, and reports back.
//!
//! A worker leases due jobs of the actions it has handlers for, runs them
//! concurrently, and reports each outcome: done, a failed attempt (retried with
//! backoff, then an incident), or a business error (to a boundary `error` event).
//! Several workers, in this process or others on the same database, may run at
//! once: a lease is held by one worker, and a report from a worker whose lease ran
//! out and whose job was taken again is refused as a conflict.

use crate::engine::{Engine, Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why a job's attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// A technical failure: try again later (after backoff), then an incident.
    Retry(String),
    /// A business error with a code, for a boundary `error` event.
    Error {
        /// The error code.
        code: String,
        /// Details.
        message: String,
    },
}

/// The future a handler returns.
pub type JobFuture = Pin<Box<dyn Future<Output = std::result::Result<Value, JobFailure>> + Send>>;

/// Runs one action.
pub trait JobHandler: Send + Sync {
    /// Runs the action with its evaluated input.
    fn call(&self, input: Value) -> JobFuture;
}

/// What one pass of a worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Jobs leased and run.
    pub ran: usize,
    /// Of those, finished.
    pub done: usize,
    /// Of those, failed (retrying or now an incident) or raised an error.
    pub failed: usize,
}

/// A job worker.
pub struct Worker {
    engine: Arc<Engine>,
    id: String,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    /// How long a worker holds a job before another may take it.
    pub lease: chrono::Duration,
    /// Most jobs leased per pass.
    pub max_jobs: u32,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("actions", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Worker {
    /// A worker named `id` (unique among running workers), with a 5-minute lease.
    pub fn new(engine: Arc<Engine>, id: impl Into<String>) -> Self {
        Worker {
            engine,
            id: id.into(),
            handlers: HashMap::new(),
            lease: chrono::Duration::minutes(5),
            max_jobs: 32,
        }
    }

    /// Handles `action` with `handler`.
    #[must_use]
    pub fn handle(mut self, action: impl Into<String>, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(action.into(), handler);
        self
    }

    /// Leases the due jobs it can handle, runs them concurrently and reports each.
    pub async fn run_once(&self) -> Result<Pass> {
        let actions: Vec<String> = self.handlers.keys().cloned().collect();
        let jobs = self
            .engine
            .acquire_jobs(&self.id, actions, self.max_jobs, self.lease)
            .await?;
        let mut set = tokio::task::JoinSet::new();
        for job in jobs {
            let Some(handler) = self.handlers.get(&job.action).map(Arc::clone) else {
                continue;
            };
            set.spawn(async move {
                let out = handler.call(job.input.clone()).await;
                (job, out)
            });
        }
        let mut pass = Pass::default();
        while let Some(joined) = set.join_next().await {
            let Ok((job, out)) = joined else {
                // A handler panicked: its lease runs out and the attempt counts.
                pass.failed += 1;
                continue;
            };
            pass.ran += 1;
            let (inst, a) = (job.instance_id.as_str(), job.activity);
            let reported = match out {
                Ok(result) => {
                    pass.done += 1;
                    self.engine
                        .complete_job(inst, a, &self.id, result)
                        .await
                        .map(drop)
                }
                Err(JobFailure::Retry(message)) => {
                    pass.failed += 1;
                    self.engine
                        .fail_job(inst, a, &self.id, &message)
                        .await
                        .map(drop)
                }
                Err(JobFailure::Error { code, message }) => {
                    pass.failed += 1;
                    self.engine
                        .job_error(inst, a, &self.id, &code, &message)
                        .await
                        .map(drop)
                }
            };
            match reported {
                // Another worker took the job after this lease ran out: its report wins.
                Ok(()) | Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pass)
    }
}
