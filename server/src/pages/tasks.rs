//! The task inbox and a task's page: claim, unclaim, delegate, and complete
//! through the task's form, with errors shown beside the fields.

use super::{PageError, PageResult, Viewer, form, page, page_with_status, see_other, when};
use crate::AppState;
use crate::api::{self, TaskDetails};
use crate::auth::Role;
use crate::error::ApiError;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ordo_engine::engine::TaskChange;
use ordo_engine::runtime::form::FieldError;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
pub(super) struct InboxQuery {
    view: Option<String>,
    done: Option<String>,
}

/// The views a viewer may pick, by role.
fn views(viewer: &Viewer) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("mine", "My tasks"), ("groups", "My groups' tasks")];
    if viewer.who().has_any(api::WATCHERS) {
        v.push(("overdue", "Overdue"));
    }
    v
}

pub(super) async fn inbox(
    State(st): State<AppState>,
    viewer: Viewer,
    Query(q): Query<InboxQuery>,
) -> PageResult {
    let view = q.view.as_deref().unwrap_or("mine");
    let rows = api::task_list(&st, &viewer.0, view, 200).await?;
    let now = chrono::Utc::now();
    let tasks: Vec<Value> = rows
        .iter()
        .map(|t| {
            let overdue = t
                .due
                .as_deref()
                .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                .is_some_and(|d| d < now);
            json!({
                "href": format!("/tasks/{}/{}", t.instance_id, t.activity),
                "name": t.name.clone().unwrap_or_else(|| t.node.clone()),
                "instance": t.instance_id,
                "assignee": t.assignee,
                "due": t.due.as_deref().map(when),
                "overdue": overdue,
                "priority": t.priority,
            })
        })
        .collect();
    let tabs: Vec<Value> = views(&viewer)
        .into_iter()
        .map(|(id, label)| json!({ "href": format!("/tasks?view={id}"), "label": label, "current": id == view }))
        .collect();
    page(
        &viewer,
        "Tasks",
        "inbox",
        &json!({ "tabs": tabs, "tasks": tasks, "done": q.done, "view": view }),
    )
}

/// The task page; `posted` and `errors` when a completion came back refused.
async fn task_page(
    st: &AppState,
    viewer: &Viewer,
    (instance, activity): (&str, u64),
    posted: Option<&[(String, String)]>,
    errors: &[FieldError],
    problem: Option<String>,
) -> PageResult {
    let TaskDetails {
        task,
        candidate_users,
        candidate_groups,
        instance: inst,
        form: spec,
    } = api::task_details(st, &viewer.0, instance, activity).await?;
    let me = viewer.who();
    let mine = task.assignee.as_deref() == Some(me.user.as_str());
    let may_complete = mine || me.has_any(&[Role::Admin]);
    let fields = form::fields(&spec, posted, inst.variables(), errors);
    let status = if errors.is_empty() && problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let title = task.name.clone().unwrap_or_else(|| task.node.clone());
    page_with_status(
        viewer,
        status,
        &title,
        "task",
        &json!({
            "title": title,
            "base": format!("/tasks/{instance}/{activity}"),
            "process": inst.process,
            "version": inst.process_version,
            "business_key": inst.business_key,
            "instance": instance,
            "assignee": task.assignee,
            "due": task.due.as_deref().map(when),
            "priority": task.priority,
            "candidate_users": candidate_users.join(", "),
            "candidate_groups": candidate_groups.join(", "),
            "mine": mine,
            "may_complete": may_complete,
            "claimable": task.assignee.is_none(),
            "fields": fields,
            "error_count": errors.len(),
            "problem": problem,
        }),
    )
}

pub(super) async fn task(
    State(st): State<AppState>,
    viewer: Viewer,
    Path((instance, activity)): Path<(String, u64)>,
) -> PageResult {
    task_page(&st, &viewer, (&instance, activity), None, &[], None).await
}

async fn change_and_return(
    st: &AppState,
    viewer: &Viewer,
    (instance, activity): (String, u64),
    change: TaskChange,
) -> PageResult {
    let back = format!("/tasks/{instance}/{activity}");
    match api::change(st, &viewer.0, (instance.clone(), activity), change).await {
        Ok(_) => see_other(&back),
        // Someone else was quicker: show the task as it is now, and why.
        // Refused for this task (a name nobody has, someone the task excludes):
        // the task page says why.
        Err(e @ (ApiError::Conflict(_) | ApiError::Unprocessable(_) | ApiError::Forbidden(_))) => {
            task_page(
                st,
                viewer,
                (&instance, activity),
                None,
                &[],
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => Err(PageError(e)),
    }
}

pub(super) async fn claim(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(task): Path<(String, u64)>,
) -> PageResult {
    let user = viewer.who().user.clone();
    change_and_return(&st, &viewer, task, TaskChange::Claim { user }).await
}

pub(super) async fn unclaim(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(task): Path<(String, u64)>,
) -> PageResult {
    let user = viewer.who().user.clone();
    change_and_return(&st, &viewer, task, TaskChange::Unclaim { user }).await
}

#[derive(Debug, Deserialize)]
pub(super) struct DelegateForm {
    to: String,
}

pub(super) async fn delegate(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(task): Path<(String, u64)>,
    Form(f): Form<DelegateForm>,
) -> PageResult {
    let to = f.to.trim().to_owned();
    if to.is_empty() {
        return task_page(
            &st,
            &viewer,
            (&task.0, task.1),
            None,
            &[],
            Some("Name the person to delegate to.".into()),
        )
        .await;
    }
    let by = viewer.who().user.clone();
    change_and_return(&st, &viewer, task, TaskChange::Delegate { by, to }).await
}

pub(super) async fn complete(
    State(st): State<AppState>,
    viewer: Viewer,
    Path((instance, activity)): Path<(String, u64)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let details = api::task_details(&st, &viewer.0, &instance, activity).await?;
    let title = details
        .task
        .name
        .clone()
        .unwrap_or_else(|| details.task.node.clone());
    let values = form::read(&details.form, &pairs);
    // The task was just checked as visible (task_details); completing it only
    // needs the holder's check.
    match api::complete_visible(&st, &viewer.0, &details.task, values).await {
        Ok(_) => {
            let q = serde_urlencoded::to_string([("done", title)]).unwrap_or_default();
            see_other(&format!("/tasks?{q}"))
        }
        Err(ApiError::Form(errors)) => {
            task_page(
                &st,
                &viewer,
                (&instance, activity),
                Some(&pairs),
                &errors,
                None,
            )
            .await
        }
        Err(e @ (ApiError::Forbidden(_) | ApiError::Conflict(_) | ApiError::Unprocessable(_))) => {
            task_page(
                &st,
                &viewer,
                (&instance, activity),
                Some(&pairs),
                &[],
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => Err(PageError(e)),
    }
}
