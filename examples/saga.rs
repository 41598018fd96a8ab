//! A saga with compensation: a trip is booked in three steps run by a job worker;
//! when the bank declines the payment, the booked flight and hotel are cancelled,
//! newest first. The process is `examples/saga.yaml`.
//!
//! Run with `cargo run --example saga` (add `-- 500` for an amount the bank accepts).
#![allow(clippy::print_stdout)]

use ordo_engine::engine::{Config, Engine};
use ordo_engine::worker::{JobFailure, JobFuture, JobHandler, Worker};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// A stand-in for another system: it logs what it was asked, and the bank
/// declines amounts over 1,000.
struct Remote {
    action: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl JobHandler for Remote {
    fn call(&self, input: Value) -> JobFuture {
        let (action, log) = (self.action, Arc::clone(&self.log));
        Box::pin(async move {
            if let Ok(mut l) = log.lock() {
                l.push(action.to_owned());
            }
            if action == "bank.charge" && input["amount"].as_f64().unwrap_or(0.0) > 1000.0 {
                return Err(JobFailure::Error {
                    code: "DECLINED".into(),
                    message: "over the card's limit".into(),
                });
            }
            Ok(json!({ "ok": true }))
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let amount: f64 = std::env::args().nth(1).map_or(Ok(2400.0), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let engine = Arc::new(Engine::open(Config::new(dir.path().join("ordo.db")))?);
    engine
        .deploy("saga.yaml", include_str!("saga.yaml"))
        .await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut worker = Worker::new(Arc::clone(&engine), "example");
    for action in [
        "travel.book_hotel",
        "travel.book_flight",
        "bank.charge",
        "travel.cancel_hotel",
        "travel.cancel_flight",
    ] {
        let log = Arc::clone(&log);
        worker = worker.handle(action, Arc::new(Remote { action, log }));
    }
    let vars = json!({ "traveller": "Ann", "amount": amount });
    let inst = engine
        .start(
            "trip",
            None,
            None,
            vars.as_object().cloned().unwrap_or_default(),
        )
        .await?;
    while worker.run_once().await?.ran > 0 {}
    let inst = engine.instance(&inst.id).await?;
    let calls = log.lock().map(|l| l.clone()).unwrap_or_default();
    println!(
        "amount {amount}: {:?}, calls in order: {calls:?}",
        inst.status
    );
    let history = engine.history(&inst.id).await?;
    let ended: Vec<&str> = history
        .iter()
        .filter(|h| h.state == "completed" && (h.node == "confirmed" || h.node == "undo"))
        .map(|h| h.node.as_str())
        .collect();
    println!("ended at {ended:?}");
    Ok(())
}
