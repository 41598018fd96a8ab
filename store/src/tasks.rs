//! The `tasks` table and `task_candidates` (who a task is offered to, and who
//! it excludes, one row each, for the inbox queries), and the gauges of what is
//! open.

use crate::history::{HistoryWriter, lifecycle_text};
use crate::sql::{Row, Sql, SqlExt};
use crate::{Result, params};
use ordo_runtime::{Lifecycle, TaskSpec};
use serde::{Deserialize, Serialize};

/// The `tasks` table.
pub trait ReadTasks {
    /// A task's state (`open`, `completed`, `aborted`), if it exists.
    fn task_state(&self, instance: &str, activity: u64) -> Result<Option<String>>;
    /// An open task.
    fn open_task(&self, instance: &str, activity: u64) -> Result<Option<TaskRow>>;
    /// Open tasks assigned to `user`.
    fn tasks_of(&self, user: &str, limit: u32) -> Result<Vec<TaskRow>>;
    /// Open unassigned tasks offered to `user` by name or to these groups, that
    /// do not exclude `user`; highest priority first.
    fn group_tasks(&self, user: &str, groups: &[String], limit: u32) -> Result<Vec<TaskRow>>;
    /// Open tasks due before `now`.
    fn overdue_tasks(&self, now: &str, limit: u32) -> Result<Vec<TaskRow>>;
    /// Active instances, open tasks and open incidents.
    fn gauges(&self) -> Result<Gauges>;
    /// Who may hold an open task, and who may not.
    fn task_candidates(&self, instance: &str, activity: u64) -> Result<Candidates>;
    /// Whether the task excludes `user` (one key lookup).
    fn task_excludes(&self, instance: &str, activity: u64, user: &str) -> Result<bool>;
    /// A task that exists but is no longer open: how it ended, by whom and when,
    /// and who it concerned (so the caller can decide who may know).
    fn closed_task(&self, instance: &str, activity: u64) -> Result<Option<ClosedTask>>;
}

/// Who may hold a task, and who may not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidates {
    /// People who may claim it.
    pub users: Vec<String>,
    /// Groups whose members may claim it.
    pub groups: Vec<String>,
    /// People who may never hold or complete it.
    pub excluded: Vec<String>,
}

/// A task that is no longer open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedTask {
    /// The task as it was when it closed (its last assignee).
    pub task: TaskRow,
    /// `completed` or `aborted`.
    pub state: String,
    /// Who it was offered to, and who it excluded.
    pub candidates: Candidates,
    /// Who closed it (for a completion: who completed it), when a person did.
    pub closed_by: Option<String>,
    /// When (RFC 3339), from the history.
    pub closed_at: Option<String>,
}

/// Writes to `tasks`.
pub trait WriteTasks: ReadTasks {
    /// Sets or clears the assignee, recording the change in history.
    fn assign_task(
        &self,
        instance: &str,
        activity: u64,
        assignee: Option<&str>,
        ev: TaskEvent,
    ) -> Result<()>;
}

/// What is open now (see [`ReadTasks::gauges`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gauges {
    /// Active instances.
    pub active_instances: u64,
    /// Open user tasks.
    pub open_tasks: u64,
    /// Open incidents.
    pub open_incidents: u64,
}

const TASK_COLUMNS: &str = "instance_id, activity, node, name, assignee, due, priority";

impl<S: Sql + ?Sized> ReadTasks for S {
    fn gauges(&self) -> Result<Gauges> {
        let count = |sql: &str| -> Result<u64> { self.query_row(sql, params![], |r| r.get(0)) };
        Ok(Gauges {
            active_instances: count("SELECT COUNT(*) FROM instances WHERE status = 'active'")?,
            open_tasks: count("SELECT COUNT(*) FROM tasks WHERE state = 'open'")?,
            open_incidents: count("SELECT COUNT(*) FROM incidents WHERE state = 'open'")?,
        })
    }
    fn task_candidates(&self, instance: &str, activity: u64) -> Result<Candidates> {
        let mut c = Candidates::default();
        self.query(
            "SELECT kind, name FROM task_candidates WHERE instance_id = ?1 AND activity = ?2 ORDER BY kind, name",
            params![instance, activity],
            &mut |r| {
                let (kind, name): (String, String) = (r.get(0)?, r.get(1)?);
                match kind.as_str() {
                    "group" => c.groups.push(name),
                    "excluded" => c.excluded.push(name),
                    _ => c.users.push(name),
                }
                Ok(())
            },
        )?;
        Ok(c)
    }
    fn task_excludes(&self, instance: &str, activity: u64, user: &str) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM task_candidates
                 WHERE kind = 'excluded' AND name = ?3 AND instance_id = ?1 AND activity = ?2",
                params![instance, activity, user],
                |_| Ok(()),
            )?
            .is_some())
    }
    fn closed_task(&self, instance: &str, activity: u64) -> Result<Option<ClosedTask>> {
        let row = self.query_opt(
            "SELECT instance_id, activity, node, name, assignee, due, priority,
                    state, candidate_users, candidate_groups, excluded
             FROM tasks WHERE instance_id = ?1 AND activity = ?2 AND state != 'open'",
            params![instance, activity],
            |r| {
                Ok((
                    task_row(r)?,
                    r.get::<String>(7)?,
                    r.get::<String>(8)?,
                    r.get::<String>(9)?,
                    r.get::<String>(10)?,
                ))
            },
        )?;
        let Some((task, state, users, groups, excluded)) = row else {
            return Ok(None);
        };
        let (closed_by, closed_at) = self
            .query_opt(
                "SELECT actor, at FROM history WHERE instance_id = ?1 AND activity = ?2
                 AND (',' || state || ',') LIKE '%,' || CAST(?3 AS TEXT) || ',%' ORDER BY seq DESC LIMIT 1",
                params![instance, activity, state],
                |r| Ok((r.get::<Option<String>>(0)?, Some(r.get::<String>(1)?))),
            )?
            .unwrap_or((None, None));
        Ok(Some(ClosedTask {
            task,
            state,
            candidates: Candidates {
                users: serde_json::from_str(&users)?,
                groups: serde_json::from_str(&groups)?,
                excluded: serde_json::from_str(&excluded)?,
            },
            closed_by,
            closed_at,
        }))
    }
    fn task_state(&self, instance: &str, activity: u64) -> Result<Option<String>> {
        self.query_opt(
            "SELECT state FROM tasks WHERE instance_id = ?1 AND activity = ?2",
            params![instance, activity],
            |r| r.get(0),
        )
    }
    fn open_task(&self, instance: &str, activity: u64) -> Result<Option<TaskRow>> {
        self.query_opt(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE instance_id = ?1 AND activity = ?2 AND state = 'open'"
            ),
            params![instance, activity],
            task_row,
        )
    }
    fn tasks_of(&self, user: &str, limit: u32) -> Result<Vec<TaskRow>> {
        self.query_map(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE assignee = ?1 AND state = 'open' ORDER BY priority DESC LIMIT ?2"
            ),
            params![user, limit],
            task_row,
        )
    }
    fn group_tasks(&self, user: &str, groups: &[String], limit: u32) -> Result<Vec<TaskRow>> {
        let mut out: Vec<TaskRow> = Vec::new();
        let offers =
            std::iter::once(("user", user)).chain(groups.iter().map(|g| ("group", g.as_str())));
        for (kind, name) in offers {
            let rows = self.query_map(
                "SELECT t.instance_id, t.activity, t.node, t.name, t.assignee, t.due, t.priority
                 FROM task_candidates c JOIN tasks t ON t.instance_id = c.instance_id AND t.activity = c.activity
                 WHERE c.kind = ?1 AND c.name = ?2 AND t.state = 'open' AND t.assignee IS NULL
                   AND NOT EXISTS (SELECT 1 FROM task_candidates x WHERE x.kind = 'excluded'
                       AND x.name = ?4 AND x.instance_id = t.instance_id AND x.activity = t.activity)
                 ORDER BY t.priority DESC LIMIT ?3",
                params![kind, name, limit, user],
                task_row,
            )?;
            for row in rows {
                if !out
                    .iter()
                    .any(|t| t.instance_id == row.instance_id && t.activity == row.activity)
                {
                    out.push(row);
                }
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.priority));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }
    fn overdue_tasks(&self, now: &str, limit: u32) -> Result<Vec<TaskRow>> {
        self.query_map(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE state = 'open' AND due IS NOT NULL AND due < ?1 ORDER BY due LIMIT ?2"
            ),
            params![now, limit],
            task_row,
        )
    }
}
impl<S: Sql + ?Sized> WriteTasks for S {
    fn assign_task(
        &self,
        instance: &str,
        activity: u64,
        assignee: Option<&str>,
        ev: TaskEvent,
    ) -> Result<()> {
        self.execute(
            "UPDATE tasks SET assignee = ?3 WHERE instance_id = ?1 AND activity = ?2",
            params![instance, activity, assignee],
        )?;
        HistoryWriter::new(self, instance).write(activity, ev.node, ev.event, ev.at, Some(ev.actor))
    }
}
pub(crate) fn insert_task(
    tx: &(impl Sql + ?Sized),
    instance: &str,
    t: &TaskSpec,
    now: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO tasks (instance_id, activity, node, name, assignee, candidate_users, candidate_groups, due, priority, state, created_at, excluded)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'open', ?10, ?11)",
        params![
            instance,
            t.activity.0,
            t.node,
            t.name,
            t.assignee,
            serde_json::to_string(&t.candidate_users)?,
            serde_json::to_string(&t.candidate_groups)?,
            t.due.map(|d| d.to_rfc3339()),
            t.priority,
            now,
            serde_json::to_string(&t.excluded)?,
        ],
    )?;
    let offers = t
        .candidate_users
        .iter()
        .map(|u| ("user", u))
        .chain(t.candidate_groups.iter().map(|g| ("group", g)))
        .chain(t.excluded.iter().map(|x| ("excluded", x)));
    for (kind, name) in offers {
        tx.execute(
            "INSERT INTO task_candidates (kind, name, instance_id, activity) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![kind, name, instance, t.activity.0],
        )?;
    }
    Ok(())
}

/// Closes a task (`completed`, `aborted`): it leaves the inboxes, and its
/// candidate rows go (the task's own columns keep who it was offered to).
pub(crate) fn close_task(
    tx: &(impl Sql + ?Sized),
    instance: &str,
    activity: u64,
    state: Lifecycle,
) -> Result<()> {
    tx.execute(
        "UPDATE tasks SET state = ?3 WHERE instance_id = ?1 AND activity = ?2",
        params![instance, activity, lifecycle_text(state)],
    )?;
    tx.execute(
        "DELETE FROM task_candidates WHERE instance_id = ?1 AND activity = ?2",
        params![instance, activity],
    )?;
    Ok(())
}

/// An open task, as inboxes show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskRow {
    /// The instance.
    pub instance_id: String,
    /// The task's activity instance.
    pub activity: u64,
    /// The node.
    pub node: String,
    /// Title.
    pub name: Option<String>,
    /// Assigned person.
    pub assignee: Option<String>,
    /// Due date (RFC 3339).
    pub due: Option<String>,
    /// 0–100.
    pub priority: i64,
}

/// A change of a task's holder, as history records it.
#[derive(Debug, Clone, Copy)]
pub struct TaskEvent<'a> {
    /// The task's node.
    pub node: &'a str,
    /// `claimed`, `unclaimed`, `delegated`.
    pub event: &'a str,
    /// Who.
    pub actor: &'a str,
    /// When (RFC 3339).
    pub at: &'a str,
}

fn task_row(r: &Row<'_>) -> Result<TaskRow> {
    Ok(TaskRow {
        instance_id: r.get(0)?,
        activity: r.get(1)?,
        node: r.get(2)?,
        name: r.get(3)?,
        assignee: r.get(4)?,
        due: r.get(5)?,
        priority: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, dbs, instance, task};
    use crate::{ReadHistory, WriteInstances};
    use ordo_runtime::{Action, HistoryEntry, InstanceStatus};

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn activities(rows: &[TaskRow]) -> Vec<u64> {
        rows.iter().map(|t| t.activity).collect()
    }

    /// Instance "1" with these tasks open.
    fn with_tasks(tasks: Vec<TaskSpec>) -> Vec<crate::testdb::TestDb> {
        let all = dbs();
        let inst = instance("1", 1);
        let actions: Vec<Action> = tasks.into_iter().map(Action::CreateTask).collect();
        for conn in &all {
            conn.save_instance(&inst, None)
                .and_then(|_| conn.record(&inst, &actions, at(0), false))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        all
    }

    fn close(conn: &dyn Sql, activity: u64, state: Lifecycle, actor: Option<&str>, ms: i64) {
        let entry = HistoryEntry {
            activity: ordo_runtime::ActivityInstanceId(activity),
            node: format!("n{activity}"),
            state,
            at: at(ms),
            actor: actor.map(str::to_owned),
        };
        conn.record(
            &instance("1", 1),
            &[
                Action::History(entry),
                Action::CloseTask {
                    activity: ordo_runtime::ActivityInstanceId(activity),
                    state,
                },
            ],
            at(ms),
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_task_written_is_read_back_with_its_candidates() -> Result<()> {
        for conn in with_tasks(vec![TaskSpec {
            name: Some("Approve".into()),
            candidate_users: strings(&["bob", "amy"]),
            candidate_groups: strings(&["sales"]),
            excluded: strings(&["eve"]),
            due: Some(at(10_000)),
            priority: 70,
            ..task(1)
        }]) {
            assert_eq!(
                conn.open_task("1", 1)?,
                Some(TaskRow {
                    instance_id: "1".into(),
                    activity: 1,
                    node: "n1".into(),
                    name: Some("Approve".into()),
                    assignee: None,
                    due: Some(at(10_000).to_rfc3339()),
                    priority: 70,
                })
            );
            assert_eq!(conn.open_task("1", 2)?, None);
            assert_eq!(conn.task_state("1", 1)?.as_deref(), Some("open"));
            assert_eq!(conn.task_state("1", 2)?, None);
            assert_eq!(
                conn.task_candidates("1", 1)?,
                Candidates {
                    users: strings(&["amy", "bob"]),
                    groups: strings(&["sales"]),
                    excluded: strings(&["eve"]),
                }
            );
            assert!(conn.task_excludes("1", 1, "eve")?);
            assert!(!conn.task_excludes("1", 1, "bob")?);
            assert_eq!(conn.closed_task("1", 1)?, None, "it is open");
        }
        Ok(())
    }

    #[test]
    fn a_closed_task_is_not_open_and_remembers_how_and_by_whom_it_closed() -> Result<()> {
        for conn in with_tasks(vec![
            TaskSpec {
                assignee: Some("ann".into()),
                candidate_users: strings(&["bob"]),
                excluded: strings(&["eve"]),
                ..task(1)
            },
            task(2),
        ]) {
            close(&conn, 1, Lifecycle::Completed, Some("ann"), 5_000);
            close(&conn, 2, Lifecycle::Aborted, None, 6_000);

            assert_eq!(conn.open_task("1", 1)?, None);
            assert_eq!(conn.tasks_of("ann", 10)?, []);
            assert_eq!(conn.task_state("1", 1)?.as_deref(), Some("completed"));
            assert_eq!(
                conn.task_candidates("1", 1)?,
                Candidates::default(),
                "only open tasks have candidates to claim them"
            );
            let closed = conn.closed_task("1", 1)?;
            assert_eq!(
                closed,
                Some(ClosedTask {
                    task: TaskRow {
                        instance_id: "1".into(),
                        activity: 1,
                        node: "n1".into(),
                        name: None,
                        assignee: Some("ann".into()),
                        due: None,
                        priority: 50,
                    },
                    state: "completed".into(),
                    candidates: Candidates {
                        users: strings(&["bob"]),
                        groups: Vec::new(),
                        excluded: strings(&["eve"]),
                    },
                    closed_by: Some("ann".into()),
                    closed_at: Some(at(5_000).to_rfc3339()),
                })
            );
            let aborted = conn.closed_task("1", 2)?;
            assert_eq!(
                aborted
                    .as_ref()
                    .map(|c| (c.state.as_str(), c.closed_by.as_deref())),
                Some(("aborted", None))
            );
            assert_eq!(
                aborted.and_then(|c| c.closed_at),
                Some(at(6_000).to_rfc3339())
            );
            assert_eq!(conn.closed_task("1", 3)?, None, "no such task");
        }
        Ok(())
    }

    #[test]
    fn tasks_of_lists_a_persons_open_tasks_highest_priority_first() -> Result<()> {
        let assigned = |activity, who: &str, priority| TaskSpec {
            assignee: Some(who.into()),
            priority,
            ..task(activity)
        };
        for conn in with_tasks(vec![
            assigned(1, "ann", 10),
            assigned(2, "ann", 90),
            assigned(3, "bob", 50),
            assigned(4, "ann", 99),
        ]) {
            close(&conn, 4, Lifecycle::Completed, Some("ann"), 1);
            assert_eq!(activities(&conn.tasks_of("ann", 10)?), [2, 1]);
            assert_eq!(activities(&conn.tasks_of("ann", 1)?), [2]);
            assert_eq!(activities(&conn.tasks_of("bob", 10)?), [3]);
            assert_eq!(conn.tasks_of("cy", 10)?, []);
        }
        Ok(())
    }

    #[test]
    fn group_tasks_offer_unassigned_tasks_by_name_or_group_but_not_to_the_excluded() -> Result<()> {
        let offered = |activity, users: &[&str], groups: &[&str], priority| TaskSpec {
            candidate_users: strings(users),
            candidate_groups: strings(groups),
            priority,
            ..task(activity)
        };
        for conn in with_tasks(vec![
            offered(1, &["ann"], &[], 10),
            offered(2, &[], &["sales"], 90),
            offered(3, &["ann"], &["sales"], 50),
            TaskSpec {
                excluded: strings(&["ann"]),
                ..offered(4, &[], &["sales"], 20)
            },
            TaskSpec {
                assignee: Some("cy".into()),
                ..offered(5, &[], &["sales"], 80)
            },
            offered(6, &[], &["hr"], 70),
            offered(7, &[], &["sales"], 60),
        ]) {
            close(&conn, 7, Lifecycle::Aborted, None, 1);
            let sales = strings(&["sales"]);
            assert_eq!(
                activities(&conn.group_tasks("ann", &sales, 10)?),
                [2, 3, 1],
                "once each, highest priority first; not 4 (excludes ann), 5 (assigned), 6 (hr), 7 (closed)"
            );
            assert_eq!(activities(&conn.group_tasks("ann", &sales, 2)?), [2, 3]);
            assert_eq!(activities(&conn.group_tasks("ann", &[], 10)?), [3, 1]);
            assert_eq!(activities(&conn.group_tasks("bob", &sales, 10)?), [2, 3, 4]);
            assert_eq!(
                activities(&conn.group_tasks("bob", &strings(&["hr", "sales"]), 10)?),
                [2, 6, 3, 4]
            );
        }
        Ok(())
    }

    #[test]
    fn overdue_tasks_are_open_tasks_due_before_now_earliest_first() -> Result<()> {
        let due = |activity, ms| TaskSpec {
            due: Some(at(ms)),
            ..task(activity)
        };
        for conn in with_tasks(vec![due(1, 5_000), due(2, 1_000), task(3), due(4, 500)]) {
            close(&conn, 4, Lifecycle::Completed, None, 1);
            let overdue = |ms, limit| -> Result<Vec<u64>> {
                Ok(activities(
                    &conn.overdue_tasks(&at(ms).to_rfc3339(), limit)?,
                ))
            };
            assert_eq!(
                overdue(1_000, 10)?,
                Vec::<u64>::new(),
                "due at now: not yet"
            );
            assert_eq!(overdue(2_000, 10)?, [2]);
            assert_eq!(overdue(6_000, 10)?, [2, 1]);
            assert_eq!(overdue(6_000, 1)?, [2]);
        }
        Ok(())
    }

    #[test]
    fn assigning_a_task_moves_it_between_inboxes_and_records_who_did_it() -> Result<()> {
        for conn in with_tasks(vec![TaskSpec {
            candidate_groups: strings(&["sales"]),
            ..task(1)
        }]) {
            let sales = strings(&["sales"]);
            let claimed = TaskEvent {
                node: "n1",
                event: "claimed",
                actor: "ann",
                at: "2024-01-01T00:00:00+00:00",
            };
            conn.assign_task("1", 1, Some("ann"), claimed)?;
            assert_eq!(
                conn.open_task("1", 1)?.and_then(|t| t.assignee).as_deref(),
                Some("ann")
            );
            assert_eq!(activities(&conn.tasks_of("ann", 10)?), [1]);
            assert_eq!(
                conn.group_tasks("bob", &sales, 10)?,
                [],
                "held: not offered"
            );

            let unclaimed = TaskEvent {
                event: "unclaimed",
                at: "2024-01-02T00:00:00+00:00",
                ..claimed
            };
            conn.assign_task("1", 1, None, unclaimed)?;
            assert_eq!(conn.tasks_of("ann", 10)?, []);
            assert_eq!(activities(&conn.group_tasks("bob", &sales, 10)?), [1]);

            let events: Vec<(String, Option<String>, String)> = conn
                .history("1")?
                .into_iter()
                .map(|h| (h.state, h.actor, h.at))
                .collect();
            assert_eq!(
                events,
                [
                    (
                        "claimed".into(),
                        Some("ann".into()),
                        "2024-01-01T00:00:00+00:00".into()
                    ),
                    (
                        "unclaimed".into(),
                        Some("ann".into()),
                        "2024-01-02T00:00:00+00:00".into()
                    ),
                ]
            );
        }
        Ok(())
    }

    #[test]
    fn gauges_count_only_what_is_open() -> Result<()> {
        for conn in with_tasks(vec![task(1), task(2), task(3)]) {
            close(&conn, 3, Lifecycle::Completed, None, 1);
            let mut done = instance("2", 1);
            done.status = InstanceStatus::Completed;
            conn.save_instance(&done, None)?;
            conn.save_instance(&instance("3", 1), None)?;
            conn.record(
                &instance("1", 1),
                &[
                    Action::Incident {
                        activity: ordo_runtime::ActivityInstanceId(8),
                        node: "n8".into(),
                        message: "boom".into(),
                    },
                    Action::Incident {
                        activity: ordo_runtime::ActivityInstanceId(9),
                        node: "n9".into(),
                        message: "boom".into(),
                    },
                    Action::CloseIncident {
                        activity: ordo_runtime::ActivityInstanceId(9),
                        how: "resolved".into(),
                        actor: None,
                    },
                ],
                at(2),
                false,
            )?;
            assert_eq!(
                conn.gauges()?,
                Gauges {
                    active_instances: 2,
                    open_tasks: 2,
                    open_incidents: 1,
                }
            );
        }
        Ok(())
    }
}
