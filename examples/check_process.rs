//! Embedding the loader: check a process from a string and print its diagram.
//!
//! Run with `cargo run --example check_process`.
#![allow(clippy::print_stdout)]

use ordo_engine::model::{self, Options};

const FLOW: &str = r#"
id: quick-approval
name: Quick approval
start:
  - id: requested
    call: true
    next: decide
nodes:
  decide:
    type: user
    name: Approve the request
    candidate_groups: [managers]
    form:
      approved: { type: boolean, required: true }
    next: route
  route:
    type: exclusive
    branches:
      - when: approved
        to: accepted
    default: refused
  accepted: { type: end }
  refused: { type: end }
"#;

fn main() -> anyhow::Result<()> {
    let loaded = model::load("quick-approval.yaml", FLOW, &Options::default());
    for d in &loaded.diagnostics {
        println!("{}", d.render(FLOW));
    }
    let process = loaded
        .process
        .ok_or_else(|| anyhow::anyhow!("the process has errors"))?;
    println!("{} is valid; its flow:\n", process.def.id);
    print!("{}", process.graph.to_mermaid());

    // A broken copy: every problem comes back at once, each with line and column.
    let broken = FLOW
        .replace("to: accepted", "to: acepted")
        .replace("approved: {", "approved: { min: 1,");
    let loaded = model::load("broken.yaml", &broken, &Options::default());
    println!("\nbroken copy:");
    for d in &loaded.diagnostics {
        println!("  {d}");
    }
    Ok(())
}
