//! A process drawn as SVG, from its graph, for the pages: the designer shows a
//! definition, the monitor shows an instance with its active nodes filled.
//!
//! The graph is written as Graphviz dot (the same text `GET
//! /api/definitions/{id}/diagram?format=dot` serves) and laid out by `layout-rs`,
//! a pure-Rust Sugiyama-style layout that renders SVG, so no Graphviz install and
//! no JavaScript are needed. The page shows the SVG inline: no request leaves the
//! machine.

use ordo_engine::model::graph::FlowGraph as Graph;

/// Fill of a node an instance is waiting in.
pub const ACTIVE_FILL: &str = "#ffd54f";
/// Fill of a node holding an incident.
pub const INCIDENT_FILL: &str = "#ef9a9a";

/// The process as SVG, with `active` nodes (and `failed` ones, holding incidents)
/// filled. `None` when the layout gives up: the layout library asserts on shapes
/// it cannot place, and a page without its picture is better than no page.
pub fn svg(graph: &Graph, active: &[String], failed: &[String]) -> Option<String> {
    let dot = graph.to_dot_with(|id| {
        let fill = if failed.iter().any(|f| f == id) {
            INCIDENT_FILL
        } else if active.iter().any(|a| a == id) {
            ACTIVE_FILL
        } else {
            return None;
        };
        Some(format!("style=filled, fillcolor=\"{fill}\""))
    });
    render(&dot)
}

fn render(dot: &str) -> Option<String> {
    let dot = dot.to_owned();
    std::panic::catch_unwind(move || {
        let mut parser = layout::gv::DotParser::new(&dot);
        let ast = parser.process().ok()?;
        let mut builder = layout::gv::GraphBuilder::new();
        builder.visit_graph(&ast);
        let mut graph = builder.get();
        let mut svg = layout::backends::svg::SVGWriter::new();
        graph.do_it(false, false, false, &mut svg);
        let text = svg.finalize();
        // Inline in a page, the XML prolog is noise.
        let start = text.find("<svg")?;
        Some(text[start..].to_owned())
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const YAML: &str = "
id: approve
start: [{ id: submitted, next: review }]
nodes:
  review: { type: user, name: Review the request, assignee: ann, next: ok }
  ok:
    type: exclusive
    branches:
      - { when: approved, to: done }
    default: rejected
  done: { type: end }
  rejected: { type: end }
";

    fn graph() -> Graph {
        let loaded = ordo_engine::model::load("a.yaml", YAML, &Default::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.process.unwrap().graph
    }

    #[test]
    fn draws_every_node_and_fills_the_active_ones() {
        let plain = svg(&graph(), &[], &[]).unwrap();
        assert!(plain.starts_with("<svg"), "{plain}");
        assert!(plain.contains("Review the request"));
        assert!(plain.contains("rejected"));
        assert!(!plain.contains(ACTIVE_FILL));
        let live = svg(&graph(), &["review".into()], &[]).unwrap();
        assert!(live.contains(ACTIVE_FILL));
        let failed = svg(&graph(), &["review".into()], &["review".into()]).unwrap();
        assert!(failed.contains(INCIDENT_FILL) && !failed.contains(ACTIVE_FILL));
    }

    #[test]
    fn text_that_is_not_dot_gives_no_picture() {
        assert_eq!(render("digraph { a -> ; }"), None);
    }
}
