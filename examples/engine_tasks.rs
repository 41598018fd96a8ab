//! Embedding the engine: deploy a process, start an instance, work its task from
//! an inbox, and read the history back — all on a SQLite file.
//!
//! Run with `cargo run --example engine_tasks`.
#![allow(clippy::print_stdout)]

use ordo_engine::engine::{Config, Engine, TaskChange};
use ordo_engine::runtime::Vars;
use serde_json::json;

const FLOW: &str = "
id: expense
name: Expense approval
variables:
  amount: { type: number, required: true }
start:
  - { id: submitted, next: review }
nodes:
  review:
    type: user
    name: Approve the expense
    candidate_groups: [finance]
    due: P2BD
    form:
      approved: { type: boolean, required: true }
      comment: { type: text, max_length: 200 }
    next: decide
  decide:
    type: exclusive
    branches:
      - { when: approved, to: pay }
    default: refused
  pay: { type: assign, set: { paid: true }, next: paid }
  paid: { type: end }
  refused: { type: end }
";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(Config::new(dir.path().join("ordo.db")))?;

    let deployed = engine.deploy("expense.yaml", FLOW).await?;
    println!("deployed {} v{}", deployed.process, deployed.version);

    let vars: Vars = json!({ "amount": 120.5 })
        .as_object()
        .cloned()
        .unwrap_or_default();
    let inst = engine
        .start("expense", None, Some("EXP-1".into()), vars)
        .await?;
    println!("instance {} waits at {:?}", inst.id, inst.active_nodes());

    // The finance group's inbox; Ann claims the task, then completes its form.
    let inbox = engine
        .group_tasks("fiona", vec!["finance".into()], 20)
        .await?;
    let task = inbox.first().ok_or_else(|| anyhow::anyhow!("no task"))?;
    engine
        .change_task(
            &task.instance_id,
            task.activity,
            TaskChange::Claim { user: "ann".into() },
        )
        .await?;
    let form = json!({ "approved": true, "comment": "ok" })
        .as_object()
        .cloned()
        .unwrap_or_default();
    let done = engine
        .complete_task(&inst.id, task.activity, form, Some("ann".into()), None)
        .await?;
    println!(
        "instance {} is {:?}, paid = {}",
        done.id,
        done.status,
        done.variables()["paid"]
    );

    for h in engine.history(&inst.id).await? {
        println!(
            "  {:<9} {:<10} {}",
            h.node,
            h.state,
            h.actor.unwrap_or_default()
        );
    }
    Ok(())
}
