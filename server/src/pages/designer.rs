//! The designer: deployed definitions with their versions and diagrams, and an
//! editor to paste (or load) a process file, check it, see every diagnostic at
//! its line, and deploy it.

use super::{DESIGNERS, PageResult, Viewer, page, page_with_status, see_other, when};
use crate::AppState;
use crate::error::ApiError;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ordo_engine::model::Diagnostic;
use serde::Deserialize;
use serde_json::{Value, json};

pub(super) async fn list(State(st): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.0.require(DESIGNERS)?;
    let rows = st.engine.definitions(None).await?;
    // Rows come by process, then version: keep each process's newest.
    let mut processes: Vec<Value> = Vec::new();
    for r in rows {
        let same = processes
            .last()
            .is_some_and(|p: &Value| p["id"] == r.process_id.as_str());
        let entry = json!({
            "id": r.process_id, "latest": r.version, "deployed_at": when(&r.deployed_at),
            "href": format!("/designer/{}", r.process_id),
        });
        if same {
            if let Some(last) = processes.last_mut() {
                *last = entry;
            }
        } else {
            processes.push(entry);
        }
    }
    page(
        &viewer,
        "Designer",
        "designer",
        &json!({ "processes": processes }),
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DefinitionQuery {
    version: Option<u32>,
    deployed: Option<String>,
}

pub(super) async fn definition(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<DefinitionQuery>,
) -> PageResult {
    viewer.0.require(DESIGNERS)?;
    let (version, source) = st.engine.definition(&id, q.version).await?;
    let versions: Vec<Value> = st
        .engine
        .definitions(Some(&id))
        .await?
        .into_iter()
        .rev()
        .map(|d| {
            json!({
                "version": d.version, "deployed_at": when(&d.deployed_at),
                "href": format!("/designer/{id}?version={}", d.version),
                "current": d.version == version,
            })
        })
        .collect();
    let process = st.engine.process(&id, Some(version)).await?;
    let svg = crate::diagram::svg(&process.graph, &[], &[]);
    page(
        &viewer,
        &format!("{id} v{version}"),
        "definition",
        &json!({
            "id": id,
            "name": process.def.name,
            "version": version,
            "versions": versions,
            "source": source,
            "svg": svg,
            "deployed": q.deployed,
            "edit": format!("/designer/new?from={id}&version={version}"),
        }),
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct EditorQuery {
    from: Option<String>,
    version: Option<u32>,
}

/// The editor, empty or holding a deployed version to change.
pub(super) async fn editor(
    State(st): State<AppState>,
    viewer: Viewer,
    Query(q): Query<EditorQuery>,
) -> PageResult {
    viewer.0.require(DESIGNERS)?;
    let (name, source) = match &q.from {
        Some(id) => (
            format!("{id}.yaml"),
            st.engine.definition(id, q.version).await?.1,
        ),
        None => ("process.yaml".to_owned(), String::new()),
    };
    editor_page(&viewer, StatusCode::OK, &name, &source, None, &[])
}

#[derive(Debug, Deserialize)]
pub(super) struct SubmitForm {
    source: String,
    name: Option<String>,
    /// `check` or `deploy`.
    action: String,
}

pub(super) async fn submit(
    State(st): State<AppState>,
    viewer: Viewer,
    Form(f): Form<SubmitForm>,
) -> PageResult {
    viewer.0.require(DESIGNERS)?;
    let name = f
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "process.yaml".to_owned());
    // Browsers post text areas with CRLF line ends.
    let source = f.source.replace("\r\n", "\n");
    match f.action.as_str() {
        "check" => {
            let diagnostics = st.engine.check(&name, &source);
            let errors = diagnostics.iter().any(Diagnostic::is_error);
            let status = if errors {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            let verdict = if errors {
                None
            } else {
                Some("No errors: ready to deploy.")
            };
            editor_page(&viewer, status, &name, &source, verdict, &diagnostics)
        }
        "deploy" => match st.engine.deploy(&name, &source).await {
            Ok(d) => {
                let note = if d.created {
                    format!("Deployed as version {}.", d.version)
                } else {
                    format!(
                        "Version {} already has this content; nothing changed.",
                        d.version
                    )
                };
                let q = serde_urlencoded::to_string([
                    ("version", d.version.to_string()),
                    ("deployed", note),
                ])
                .unwrap_or_default();
                see_other(&format!("/designer/{}?{q}", d.process))
            }
            Err(ordo_engine::engine::Error::Invalid(diagnostics)) => editor_page(
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                &name,
                &source,
                None,
                &diagnostics,
            ),
            Err(e) => Err(e.into()),
        },
        other => Err(ApiError::BadRequest(format!(
            "`{other}` is not an editor action; use check or deploy"
        ))
        .into()),
    }
}

/// The editor with the source listed line by line, each diagnostic under the
/// line it points at.
fn editor_page(
    viewer: &Viewer,
    status: StatusCode,
    name: &str,
    source: &str,
    verdict: Option<&str>,
    diagnostics: &[Diagnostic],
) -> PageResult {
    let shown = |d: &Diagnostic| {
        json!({
            "severity": if d.is_error() { "error" } else { "warning" },
            "code": d.code, "message": d.message, "hint": d.hint,
            "line": d.line, "column": d.column,
        })
    };
    let mut lines: Vec<Value> = source
        .lines()
        .enumerate()
        .map(|(i, text)| {
            let here: Vec<Value> = diagnostics
                .iter()
                .filter(|d| d.line == i + 1)
                .map(shown)
                .collect();
            json!({
                "number": i + 1, "text": text,
                "error": here.iter().any(|d| d["severity"] == "error"),
                "diagnostics": here,
            })
        })
        .collect();
    // A diagnostic past the last line (e.g. "missing `start`" on an empty file)
    // still gets a line to sit under.
    let past: Vec<Value> = diagnostics
        .iter()
        .filter(|d| d.line > lines.len())
        .map(shown)
        .collect();
    if !past.is_empty() {
        lines.push(json!({
            "number": lines.len() + 1, "text": "", "error": true, "diagnostics": past,
        }));
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    page_with_status(
        viewer,
        status,
        "Edit a process",
        "editor",
        &json!({
            "name": name,
            "source": source,
            "verdict": verdict,
            "checked": verdict.is_some() || !diagnostics.is_empty(),
            "errors": errors,
            "warnings": diagnostics.len() - errors,
            "diagnostics": diagnostics.iter().map(shown).collect::<Vec<_>>(),
            "lines": lines,
        }),
    )
}
