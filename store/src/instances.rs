//! The `instances` table: each instance's whole state as one JSON column, the
//! columns lists filter on, the instance tree (call and spawn), and the
//! sequence instance ids come from. [`WriteInstances::record`] also writes the
//! rows a step's actions ask for, through the modules that own those tables.

use crate::events::{close_incident, open_incident, subscribe, unsubscribe};
use crate::history::{HistoryWriter, NewRow, lifecycle_text};
use crate::jobs::{insert_job, remove_job};
use crate::sql::{Row, Sql, SqlExt, ToSql};
use crate::tasks::{close_task, insert_task};
use crate::{Result, params};
use chrono::{DateTime, Utc};
use ordo_runtime::{Action, Instance, InstanceStatus};
use serde::{Deserialize, Serialize};

/// Which instances to list, and which page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFilter {
    /// Only this process.
    pub process: Option<String>,
    /// Only this status (`active`, `completed`, `terminated`, `cancelled`).
    pub status: Option<String>,
    /// Only this business key.
    pub business_key: Option<String>,
    /// Only instances whose tree (the instance, its caller, the instances it
    /// called) holds a task that one of these people held or holds: a
    /// supervisor's view of their team's work. `None`: every instance.
    #[serde(default)]
    pub among: Option<Vec<String>>,
    /// Rows to skip.
    pub offset: u32,
    /// Most rows to return.
    pub limit: u32,
}

/// The `instances` table.
pub trait ReadInstances {
    /// An instance's state.
    fn instance(&self, id: &str) -> Result<Option<Instance>>;
    /// Instances by process and status, newest first, paged.
    fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceRow>>;
    /// One instance's row.
    fn instance_row(&self, id: &str) -> Result<Option<InstanceRow>>;
    /// Whether the tree of instance `id` holds a task one of `people` held or
    /// holds (see [`InstanceFilter::among`]).
    fn instance_among(&self, id: &str, people: &[String]) -> Result<bool>;
    /// The instances `parent` called or spawned, oldest first.
    fn children(&self, parent: &str) -> Result<Vec<InstanceRow>>;
    /// The active instances one call or spawn activity of `parent` started.
    fn children_of(&self, parent: &str, activity: u64) -> Result<Vec<String>>;
}

/// Reserves `n` instance ids from the persisted sequence, in the caller's
/// transaction: once it commits, the ids are the caller's alone (a start that
/// is refused leaves a gap, never a repeat).
pub fn reserve_instance_ids(tx: &(impl Sql + ?Sized), n: u64) -> Result<std::ops::Range<u64>> {
    let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
    let first: i64 = tx.query_row(
        "UPDATE sequences SET next = next + ?1 WHERE name = 'instance' RETURNING next - ?1",
        params![n],
        |r| r.get(0),
    )?;
    let first = u64::try_from(first).unwrap_or(0);
    Ok(first..first + u64::try_from(n).unwrap_or(1))
}

/// Takes the next instance id from the persisted sequence, in the caller's
/// transaction: if it rolls back, the id is taken again by the next start.
pub fn next_instance_id(tx: &(impl Sql + ?Sized)) -> Result<u64> {
    let id: i64 = tx.query_row(
        "UPDATE sequences SET next = next + 1 WHERE name = 'instance' RETURNING next - 1",
        params![],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(id).unwrap_or(0))
}

/// Writes to `instances`, and the rows a step's actions ask for (history, tasks,
/// jobs, incidents), in the caller's transaction.
pub trait WriteInstances: ReadInstances {
    /// Inserts (`expected: None`) or updates an instance; an update whose stored
    /// version is not `expected` changes nothing and returns false.
    fn save_instance(&self, inst: &Instance, expected: Option<u64>) -> Result<bool>;
    /// Writes what `actions` say must be stored. `fresh`: the instance was
    /// inserted in this transaction (it has no rows yet, so none is looked up).
    fn record(
        &self,
        inst: &Instance,
        actions: &[Action],
        now: DateTime<Utc>,
        fresh: bool,
    ) -> Result<()>;
}

const ROW_COLUMNS: &str = "id, process_id, process_version, business_key, status, started_at, parent_id, parent_activity, root_id";

/// `IN (?n, ?n+1, …)` for `count` values from parameter `first` on.
fn in_list(first: usize, count: usize) -> String {
    let marks: Vec<String> = (first..first + count).map(|k| format!("?{k}")).collect();
    format!("IN ({})", marks.join(", "))
}

impl<S: Sql + ?Sized> ReadInstances for S {
    fn instance(&self, id: &str) -> Result<Option<Instance>> {
        let state: Option<String> = self.query_opt(
            "SELECT state FROM instances WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        Ok(match state {
            Some(s) => Some(serde_json::from_str(&s)?),
            None => None,
        })
    }
    fn list_instances(&self, f: &InstanceFilter) -> Result<Vec<InstanceRow>> {
        // The people of `among`, if any, are parameters 6 and on.
        let among = match &f.among {
            None => String::new(),
            Some(people) if people.is_empty() => " AND 1 = 0".to_owned(),
            Some(people) => format!(
                " AND COALESCE(root_id, id) IN (
                   SELECT COALESCE(i.root_id, i.id) FROM tasks t JOIN instances i ON i.id = t.instance_id
                   WHERE t.assignee {})",
                in_list(6, people.len())
            ),
        };
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM instances
             WHERE (process_id = ?1 OR ?1 IS NULL) AND (status = ?2 OR ?2 IS NULL)
               AND (business_key = ?3 OR ?3 IS NULL){among}
             ORDER BY started_at DESC, LENGTH(id) DESC, id DESC LIMIT ?4 OFFSET ?5"
        );
        let mut values: Vec<&dyn ToSql> =
            vec![&f.process, &f.status, &f.business_key, &f.limit, &f.offset];
        if let Some(people) = &f.among {
            values.extend(people.iter().map(|p| p as &dyn ToSql));
        }
        self.query_map(&sql, &values, instance_row)
    }
    fn instance_among(&self, id: &str, people: &[String]) -> Result<bool> {
        if people.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "SELECT 1 FROM instances me, tasks t JOIN instances i ON i.id = t.instance_id
             WHERE me.id = ?1 AND COALESCE(i.root_id, i.id) = COALESCE(me.root_id, me.id)
               AND t.assignee {} LIMIT 1",
            in_list(2, people.len())
        );
        let mut values: Vec<&dyn ToSql> = vec![&id];
        values.extend(people.iter().map(|p| p as &dyn ToSql));
        Ok(self.query_opt(&sql, &values, |_| Ok(()))?.is_some())
    }
    fn instance_row(&self, id: &str) -> Result<Option<InstanceRow>> {
        self.query_opt(
            &format!("SELECT {ROW_COLUMNS} FROM instances WHERE id = ?1"),
            params![id],
            instance_row,
        )
    }
    fn children(&self, parent: &str) -> Result<Vec<InstanceRow>> {
        // Ids are numbers written as text: by length, then text, is by number.
        self.query_map(
            &format!(
                "SELECT {ROW_COLUMNS} FROM instances
                 WHERE parent_id = ?1 ORDER BY started_at, LENGTH(id), id"
            ),
            params![parent],
            instance_row,
        )
    }
    fn children_of(&self, parent: &str, activity: u64) -> Result<Vec<String>> {
        self.query_map(
            "SELECT id FROM instances WHERE parent_id = ?1 AND parent_activity = ?2 AND status = 'active'",
            params![parent, activity],
            |r| r.get(0),
        )
    }
}

fn instance_row(r: &Row<'_>) -> Result<InstanceRow> {
    Ok(InstanceRow {
        id: r.get(0)?,
        process_id: r.get(1)?,
        process_version: r.get(2)?,
        business_key: r.get(3)?,
        status: r.get(4)?,
        started_at: r.get(5)?,
        parent_id: r.get(6)?,
        parent_activity: r.get(7)?,
        root_id: r.get(8)?,
    })
}
impl<S: Sql + ?Sized> WriteInstances for S {
    fn save_instance(&self, inst: &Instance, expected: Option<u64>) -> Result<bool> {
        let state = serde_json::to_string(inst)?;
        let ended = inst.ended_at.map(|t| t.to_rfc3339());
        let n = match expected {
            None => self.execute(
                "INSERT INTO instances (id, process_id, process_version, business_key, status, version, state, started_at, ended_at, parent_id, parent_activity, root_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    inst.id,
                    inst.process,
                    inst.process_version,
                    inst.business_key,
                    status_text(inst.status),
                    inst.version,
                    state,
                    inst.started_at.to_rfc3339(),
                    ended,
                    inst.parent.as_ref().map(|p| &p.instance),
                    inst.parent.as_ref().map(|p| p.activity.0),
                    inst.parent.as_ref().map(|p| &p.root),
                ],
            )?,
            Some(v) => self.execute(
                "UPDATE instances SET status = ?2, version = ?3, state = ?4, ended_at = ?5 WHERE id = ?1 AND version = ?6",
                params![inst.id, status_text(inst.status), inst.version, state, ended, v],
            )?,
        };
        Ok(n == 1)
    }
    fn record(
        &self,
        inst: &Instance,
        actions: &[Action],
        at: DateTime<Utc>,
        fresh: bool,
    ) -> Result<()> {
        let now_text = at.to_rfc3339();
        let now = now_text.as_str();
        let mut history = HistoryWriter::starting(self, &inst.id, fresh);
        // Transitions that one activity instance makes within one command share their
        // time and actor: they are stored as one row listing the states in order
        // (`ready,active,completing,completed`), and `history` expands them again.
        let mut rows = Vec::new();
        let mut i = 0;
        while i < actions.len() {
            let Action::History(h) = &actions[i] else {
                i += 1;
                continue;
            };
            let mut states = String::from(lifecycle_text(h.state));
            let mut j = i + 1;
            while let Some(Action::History(n)) = actions.get(j) {
                if n.activity != h.activity || n.at != h.at || n.actor != h.actor {
                    break;
                }
                states.push(',');
                states.push_str(lifecycle_text(n.state));
                j += 1;
            }
            rows.push(NewRow {
                activity: h.activity.0,
                node: &h.node,
                state: states,
                at: if h.at == at {
                    now_text.clone()
                } else {
                    h.at.to_rfc3339()
                },
                actor: h.actor.as_deref(),
            });
            i = j;
        }
        history.write_all(&rows)?;
        for a in actions {
            match a {
                Action::History(_) => {}
                Action::CreateTask(t) => insert_task(self, &inst.id, t, now)?,
                Action::CloseTask { activity, state } => {
                    close_task(self, &inst.id, activity.0, *state)?;
                }
                Action::RunJob(j) => insert_job(self, &inst.id, j, at.timestamp_millis())?,
                Action::CancelJob { activity } => remove_job(self, &inst.id, activity.0)?,
                Action::Incident {
                    activity,
                    node,
                    message,
                } => open_incident(self, &inst.id, activity.0, node, message, now)?,
                Action::CloseIncident {
                    activity,
                    how,
                    actor,
                } => close_incident(self, &inst.id, activity.0, how, now, actor.as_deref())?,
                Action::Subscribe(sub) => subscribe(self, &inst.id, sub)?,
                Action::Unsubscribe(sub) => unsubscribe(self, &inst.id, sub)?,
                // Deliveries to other instances: the engine carries them out.
                Action::Ended { .. }
                | Action::SendMessage { .. }
                | Action::Broadcast { .. }
                | Action::StartChild { .. }
                | Action::CancelChildren { .. }
                | Action::RaiseInCaller { .. } => {}
            }
        }
        Ok(())
    }
}

/// An instance row for lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceRow {
    /// Id.
    pub id: String,
    /// Process id.
    pub process_id: String,
    /// Process version.
    pub process_version: u32,
    /// Business key.
    pub business_key: Option<String>,
    /// Status.
    pub status: String,
    /// Started (RFC 3339).
    pub started_at: String,
    /// The instance that called or spawned it.
    pub parent_id: Option<String>,
    /// The call or spawn activity in the parent.
    pub parent_activity: Option<u64>,
    /// The top of its tree (None for a top-level instance: itself).
    pub root_id: Option<String>,
}

fn status_text(s: InstanceStatus) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, db, dbs, instance, task};
    use crate::{Error, ReadTasks};
    use ordo_runtime::ParentLink;

    fn filter() -> InstanceFilter {
        InstanceFilter {
            limit: 100,
            ..Default::default()
        }
    }

    fn ids(rows: &[InstanceRow]) -> Vec<&str> {
        rows.iter().map(|r| r.id.as_str()).collect()
    }

    /// Instance `id` of `process`, started at `ms`.
    fn started(id: &str, process: &str, ms: i64) -> Instance {
        Instance {
            process: process.into(),
            started_at: at(ms),
            ..instance(id, 1)
        }
    }

    fn child_of(id: &str, parent: &str, activity: u64, ms: i64) -> Instance {
        Instance {
            parent: Some(ParentLink {
                instance: parent.into(),
                activity: ordo_runtime::ActivityInstanceId(activity),
                root: parent.into(),
                depth: 1,
                waits: true,
            }),
            ..started(id, "child", ms)
        }
    }

    #[test]
    fn instance_updates_check_the_version() -> Result<()> {
        for conn in dbs() {
            assert!(conn.save_instance(&instance("1", 1), None)?);
            assert!(conn.save_instance(&instance("1", 2), Some(1))?);
            assert!(
                !conn.save_instance(&instance("1", 3), Some(1))?,
                "stale: changes nothing"
            );
            assert_eq!(conn.instance("1")?.map(|i| i.version), Some(2));
            assert_eq!(
                conn.list_instances(&InstanceFilter {
                    process: Some("p".into()),
                    status: Some("active".into()),
                    limit: 10,
                    ..Default::default()
                })?
                .len(),
                1
            );
        }
        Ok(())
    }

    #[test]
    fn an_instance_is_inserted_once_and_read_back_whole() -> Result<()> {
        for conn in dbs() {
            let mut inst = instance("1", 1);
            inst.business_key = Some("order-7".into());
            inst.next_id = 42;
            assert!(conn.save_instance(&inst, None)?);
            assert_eq!(conn.instance("1")?, Some(inst.clone()));
            assert_eq!(conn.instance("2")?, None);
            // A failing statement ends its transaction on PostgreSQL: the
            // engine runs each command in a savepoint, and so does this test.
            let twice = conn.savepoint("twice", || conn.save_instance(&inst, None));
            assert!(
                matches!(twice, Err(Error::Constraint(_))),
                "an id is inserted once: {twice:?}"
            );

            inst.version = 2;
            inst.status = InstanceStatus::Completed;
            inst.ended_at = Some(at(5_000));
            assert!(conn.save_instance(&inst, Some(1))?);
            assert_eq!(conn.instance("1")?, Some(inst));
            let row = conn.instance_row("1")?;
            assert_eq!(
                row,
                Some(InstanceRow {
                    id: "1".into(),
                    process_id: "p".into(),
                    process_version: 1,
                    business_key: Some("order-7".into()),
                    status: "completed".into(),
                    started_at: at(0).to_rfc3339(),
                    parent_id: None,
                    parent_activity: None,
                    root_id: None,
                })
            );
            assert_eq!(conn.instance_row("2")?, None);
        }
        Ok(())
    }

    #[test]
    fn lists_filter_by_process_status_and_key_newest_first_and_page() -> Result<()> {
        for conn in dbs() {
            conn.save_instance(&started("1", "p", 1_000), None)?;
            conn.save_instance(&started("2", "q", 2_000), None)?;
            conn.save_instance(&started("3", "p", 3_000), None)?;
            let mut done = started("4", "p", 4_000);
            done.status = InstanceStatus::Terminated;
            done.business_key = Some("k".into());
            conn.save_instance(&done, None)?;

            assert_eq!(ids(&conn.list_instances(&filter())?), ["4", "3", "2", "1"]);
            let by_process = InstanceFilter {
                process: Some("p".into()),
                ..filter()
            };
            assert_eq!(ids(&conn.list_instances(&by_process)?), ["4", "3", "1"]);
            let active_p = InstanceFilter {
                status: Some("active".into()),
                ..by_process.clone()
            };
            assert_eq!(ids(&conn.list_instances(&active_p)?), ["3", "1"]);
            let terminated = InstanceFilter {
                status: Some("terminated".into()),
                ..filter()
            };
            assert_eq!(ids(&conn.list_instances(&terminated)?), ["4"]);
            let by_key = InstanceFilter {
                business_key: Some("k".into()),
                ..filter()
            };
            assert_eq!(ids(&conn.list_instances(&by_key)?), ["4"]);

            let page = |offset, limit| InstanceFilter {
                offset,
                limit,
                ..filter()
            };
            assert_eq!(ids(&conn.list_instances(&page(0, 2))?), ["4", "3"]);
            assert_eq!(ids(&conn.list_instances(&page(2, 2))?), ["2", "1"]);
            assert_eq!(ids(&conn.list_instances(&page(4, 2))?), Vec::<&str>::new());
        }
        Ok(())
    }

    #[test]
    fn among_finds_the_trees_where_these_people_hold_a_task() -> Result<()> {
        for conn in dbs() {
            conn.save_instance(&started("1", "p", 1_000), None)?;
            let child = child_of("2", "1", 7, 2_000);
            conn.save_instance(&child, None)?;
            conn.save_instance(&started("3", "p", 3_000), None)?;
            let mut t = task(1);
            t.assignee = Some("ann".into());
            conn.record(&child, &[Action::CreateTask(t)], at(2_000), false)?;
            let mut t = task(1);
            t.assignee = Some("bob".into());
            conn.record(
                &instance("3", 1),
                &[Action::CreateTask(t)],
                at(3_000),
                false,
            )?;

            let among = |people: &[&str]| InstanceFilter {
                among: Some(people.iter().map(|p| (*p).to_owned()).collect()),
                ..filter()
            };
            assert_eq!(
                ids(&conn.list_instances(&among(&["ann"]))?),
                ["2", "1"],
                "the caller too: the task is in its tree"
            );
            assert_eq!(ids(&conn.list_instances(&among(&["bob"]))?), ["3"]);
            assert_eq!(
                ids(&conn.list_instances(&among(&["ann", "bob"]))?),
                ["3", "2", "1"]
            );
            assert_eq!(
                ids(&conn.list_instances(&among(&["cy"]))?),
                Vec::<&str>::new()
            );

            let ann = ["ann".to_owned()];
            assert!(conn.instance_among("1", &ann)?);
            assert!(conn.instance_among("2", &ann)?);
            assert!(!conn.instance_among("3", &ann)?);
            assert!(!conn.instance_among("1", &["bob".to_owned()])?);
            assert!(!conn.instance_among("1", &[])?);
        }
        Ok(())
    }

    #[test]
    fn children_come_oldest_first_and_children_of_only_active_ones_of_one_activity() -> Result<()> {
        for conn in dbs() {
            conn.save_instance(&started("1", "p", 0), None)?;
            conn.save_instance(&child_of("3", "1", 7, 3_000), None)?;
            conn.save_instance(&child_of("2", "1", 7, 2_000), None)?;
            conn.save_instance(&child_of("4", "1", 8, 4_000), None)?;
            let mut ended = child_of("5", "1", 7, 5_000);
            ended.status = InstanceStatus::Completed;
            conn.save_instance(&ended, None)?;

            let kids = conn.children("1")?;
            assert_eq!(ids(&kids), ["2", "3", "4", "5"]);
            assert_eq!(kids[0].parent_id.as_deref(), Some("1"));
            assert_eq!(kids[0].parent_activity, Some(7));
            assert_eq!(kids[0].root_id.as_deref(), Some("1"));
            assert_eq!(conn.children("2")?, []);

            let mut of7 = conn.children_of("1", 7)?;
            of7.sort();
            assert_eq!(of7, ["2", "3"], "not the completed one");
            assert_eq!(conn.children_of("1", 8)?, ["4"]);
            assert_eq!(conn.children_of("1", 9)?, Vec::<String>::new());
        }
        Ok(())
    }

    #[test]
    fn instance_ids_never_repeat_across_a_reopen_and_a_rolled_back_one_is_taken_again() -> Result<()>
    {
        let (dir, conn) = db();
        let first = conn.transaction(next_instance_id)?;
        let second = conn.transaction(next_instance_id)?;
        assert_eq!((first, second), (1, 2));
        let rolled_back = conn.transaction(|tx| -> Result<u64> {
            let id = next_instance_id(tx)?;
            assert_eq!(id, 3);
            Err(Error::NoRows)
        });
        assert!(rolled_back.is_err());
        drop(conn);

        let conn = crate::open_writer(&dir.path().join("t.db"), crate::Sync::Full)?;
        let third = conn.transaction(next_instance_id)?;
        let fourth = conn.transaction(next_instance_id)?;
        assert_eq!(
            (third, fourth),
            (3, 4),
            "the rolled back id is taken again, then it goes on"
        );
        Ok(())
    }

    #[test]
    fn reserved_blocks_and_single_ids_never_overlap_and_a_rolled_back_block_is_not_kept()
    -> Result<()> {
        let (dir, conn) = db();
        let block = conn.transaction(|tx| reserve_instance_ids(tx, 3))?;
        assert_eq!(block, 1..4);
        let single = conn.transaction(next_instance_id)?;
        assert_eq!(single, 4, "a single id comes after the block");
        let lost = conn.transaction(|tx| -> Result<std::ops::Range<u64>> {
            reserve_instance_ids(tx, 10)?;
            Err(Error::NoRows)
        });
        assert!(lost.is_err());
        drop(conn);
        let conn = crate::open_writer(&dir.path().join("t.db"), crate::Sync::Full)?;
        assert_eq!(
            conn.transaction(|tx| reserve_instance_ids(tx, 2))?,
            5..7,
            "the rolled back block was never handed out, so it is handed out now"
        );
        Ok(())
    }

    #[test]
    fn record_writes_the_rows_the_actions_ask_for_and_skips_deliveries() -> Result<()> {
        for conn in dbs() {
            let inst = instance("1", 1);
            conn.save_instance(&inst, None)?;
            conn.record(
                &inst,
                &[
                    Action::CreateTask(task(1)),
                    Action::Incident {
                        activity: ordo_runtime::ActivityInstanceId(2),
                        node: "n2".into(),
                        message: "boom".into(),
                    },
                    Action::Ended {
                        status: InstanceStatus::Completed,
                    },
                ],
                at(0),
                false,
            )?;
            assert_eq!(
                conn.gauges()?,
                crate::Gauges {
                    active_instances: 1,
                    open_tasks: 1,
                    open_incidents: 1,
                }
            );
            assert_eq!(
                conn.instance("1")?.map(|i| i.status),
                Some(InstanceStatus::Active),
                "record leaves the instance row to save_instance"
            );
        }
        Ok(())
    }

    #[test]
    fn status_text_is_the_status_as_json_names_it() -> Result<()> {
        for s in [
            InstanceStatus::Active,
            InstanceStatus::Completed,
            InstanceStatus::Terminated,
            InstanceStatus::Cancelled,
        ] {
            assert_eq!(serde_json::to_value(s)?, status_text(s));
        }
        Ok(())
    }
}
