//! The monitor: instances by process, state and business key; one instance with
//! its diagram (where it stands, filled), variables, history and incidents; and
//! the admin's levers, cancel and retry or resolve an incident.

use super::{PageResult, Viewer, page, see_other, when};
use crate::AppState;
use crate::api;
use crate::auth::Role;
use axum::Json;
use axum::extract::{Path, Query, State};
use ordo_engine::store::InstanceFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Instances per page.
const PAGE: u32 = 50;
/// The states an instance can be in, for the filter.
const STATES: [&str; 4] = ["active", "completed", "terminated", "cancelled"];

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    process: Option<String>,
    status: Option<String>,
    business_key: Option<String>,
    #[serde(default)]
    offset: u32,
}

fn some(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub(super) async fn list(
    State(st): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let among = api::watch_scope(&st, &viewer.0).await?;
    let (process, status, key) = (some(q.process), some(q.status), some(q.business_key));
    let rows = st
        .engine
        .list_instances(InstanceFilter {
            among,
            process: process.clone(),
            status: status.clone(),
            business_key: key.clone(),
            offset: q.offset,
            limit: PAGE,
        })
        .await?;
    let mut processes: Vec<String> = st
        .engine
        .definitions(None)
        .await?
        .into_iter()
        .map(|d| d.process_id)
        .collect();
    processes.dedup();
    let query = |offset: u32| {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(p) = &process {
            pairs.push(("process", p.clone()));
        }
        if let Some(s) = &status {
            pairs.push(("status", s.clone()));
        }
        if let Some(k) = &key {
            pairs.push(("business_key", k.clone()));
        }
        pairs.push(("offset", offset.to_string()));
        format!(
            "/monitor?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let full = rows.len() == PAGE as usize;
    page(
        &viewer,
        "Monitor",
        "monitor",
        &json!({
            "instances": rows.iter().map(|r| json!({
                "id": r.id, "process_id": r.process_id, "process_version": r.process_version,
                "business_key": r.business_key, "status": r.status,
                "started_at": when(&r.started_at), "parent_id": r.parent_id,
            })).collect::<Vec<_>>(),
            "processes": processes.iter().map(|p| json!({
                "id": p, "selected": process.as_deref() == Some(p.as_str())
            })).collect::<Vec<_>>(),
            "states": STATES.iter().map(|s| json!({
                "id": s, "selected": status.as_deref() == Some(*s)
            })).collect::<Vec<_>>(),
            "business_key": key,
            "previous": (q.offset > 0).then(|| query(q.offset.saturating_sub(PAGE))),
            "next": full.then(|| query(q.offset + PAGE)),
            "first": q.offset + 1,
        }),
    )
}

pub(super) async fn instance(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    api::visible_instance(&st, &viewer.0, &id).await?;
    let inst = st.engine.instance(&id).await?;
    let history = st.engine.history(&id).await?;
    let tree = st.engine.tree(&id).await?;
    let incidents = st.engine.instance_incidents(&id).await?;
    let process = st
        .engine
        .process(&inst.process, Some(inst.process_version))
        .await?;
    let names: HashMap<&str, &str> = process
        .graph
        .graph
        .node_weights()
        .filter_map(|e| e.name.as_deref().map(|n| (e.id.as_str(), n)))
        .collect();
    let label = |node: &str| names.get(node).copied().unwrap_or(node).to_owned();
    let active: Vec<String> = inst
        .active_nodes()
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let failed: Vec<String> = incidents
        .iter()
        .filter(|i| i.state == "open")
        .map(|i| i.node.clone())
        .collect();
    let svg = crate::diagram::svg(&process.graph, &active, &failed);
    let admin = viewer.who().has_any(&[Role::Admin]);
    let status = json!(inst.status);
    let variables: Vec<Value> = inst
        .variables()
        .iter()
        .map(|(k, v)| {
            json!({ "name": k, "value": serde_json::to_string_pretty(v).unwrap_or_default() })
        })
        .collect();
    page(
        &viewer,
        &format!("Instance {id}"),
        "instance",
        &json!({
            "id": id,
            "process": inst.process,
            "version": inst.process_version,
            "business_key": inst.business_key,
            "status": status,
            "is_active": status == "active",
            "revision": inst.version,
            "started_at": when(&inst.started_at.to_rfc3339()),
            "ended_at": inst.ended_at.map(|t| when(&t.to_rfc3339())),
            "active": active.iter().map(|n| json!({ "id": n, "name": label(n) })).collect::<Vec<_>>(),
            "svg": svg,
            "variables": variables,
            "history": history.iter().map(|h| json!({
                "at": when(&h.at), "node": h.node, "name": label(&h.node),
                "state": h.state, "actor": h.actor,
            })).collect::<Vec<_>>(),
            "incidents": incidents.iter().map(|i| json!({
                "activity": i.activity, "node": i.node, "name": label(&i.node),
                "message": i.message, "attempts": i.attempts, "state": i.state,
                "at": when(&i.created_at), "open": i.state == "open",
            })).collect::<Vec<_>>(),
            "root": (tree.root != id).then_some(tree.root),
            "parent": tree.parent,
            "children": tree.children,
            "admin": admin,
        }),
    )
}

/// What the instance page polls to know when to refresh itself: the instance's
/// revision (bumped by every change) and status.
pub(super) async fn version(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Json<Value>, super::PageError> {
    api::visible_instance(&st, &viewer.0, &id).await?;
    let inst = st.engine.instance(&id).await?;
    Ok(Json(
        json!({ "revision": inst.version, "status": inst.status }),
    ))
}

pub(super) async fn cancel(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    viewer.0.require(&[Role::Admin])?;
    st.engine
        .cancel(&id, Some(viewer.who().user.clone()))
        .await?;
    see_other(&format!("/monitor/{id}"))
}

pub(super) async fn retry(
    State(st): State<AppState>,
    viewer: Viewer,
    Path((id, activity)): Path<(String, u64)>,
) -> PageResult {
    fix_incident(&st, &viewer, &id, activity, true).await
}

pub(super) async fn resolve(
    State(st): State<AppState>,
    viewer: Viewer,
    Path((id, activity)): Path<(String, u64)>,
) -> PageResult {
    fix_incident(&st, &viewer, &id, activity, false).await
}

/// Runs an incident's step again (`retry`), or marks it done by hand.
async fn fix_incident(
    st: &AppState,
    viewer: &Viewer,
    id: &str,
    activity: u64,
    retry: bool,
) -> PageResult {
    viewer.0.require(&[Role::Admin])?;
    let actor = Some(viewer.who().user.clone());
    if retry {
        st.engine
            .retry(id, activity, None, Default::default(), actor)
            .await?;
    } else {
        st.engine
            .resolve(id, activity, Default::default(), actor)
            .await?;
    }
    see_other(&format!("/monitor/{id}"))
}
