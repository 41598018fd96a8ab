//! The `history` table: each activity instance's lifecycle transitions and each
//! task's change of holder, numbered per instance. The transitions one command
//! makes to one activity instance are stored as one row and expanded on read.

use crate::sql::{Sql, SqlExt, ToSql};
use crate::{Result, params};
use ordo_runtime::Lifecycle;
use serde::{Deserialize, Serialize};

/// The `history` table.
pub trait ReadHistory {
    /// An instance's transitions, in order.
    fn history(&self, instance: &str) -> Result<Vec<HistoryRow>>;
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryRow {
    /// Activity instance.
    pub activity: u64,
    /// Node.
    pub node: String,
    /// Lifecycle state entered.
    pub state: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: Option<String>,
}

impl<S: Sql + ?Sized> ReadHistory for S {
    fn history(&self, instance: &str) -> Result<Vec<HistoryRow>> {
        let mut out = Vec::new();
        self.query(
            "SELECT activity, node, state, at, actor FROM history WHERE instance_id = ?1 ORDER BY seq",
            params![instance],
            &mut |r| {
                let row = HistoryRow {
                    activity: r.get(0)?,
                    node: r.get(1)?,
                    state: r.get(2)?,
                    at: r.get(3)?,
                    actor: r.get(4)?,
                };
                if row.state.contains(',') {
                    for state in row.state.split(',') {
                        out.push(HistoryRow {
                            state: state.to_owned(),
                            ..row.clone()
                        });
                    }
                } else {
                    out.push(row);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }
}

/// A row for [`HistoryWriter::write_all`].
pub(crate) struct NewRow<'a> {
    pub(crate) activity: u64,
    pub(crate) node: &'a str,
    /// A lifecycle state, or a comma list of them.
    pub(crate) state: String,
    pub(crate) at: String,
    pub(crate) actor: Option<&'a str>,
}

/// Most rows one history `INSERT` carries.
const ROWS_PER_INSERT: usize = 16;

/// `INSERT INTO history … VALUES (…), (…)` for `n` rows (1 to
/// [`ROWS_PER_INSERT`]), written once.
fn insert_sql(n: usize) -> &'static str {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| {
        (1..=ROWS_PER_INSERT)
            .map(|n| {
                let rows: Vec<String> = (0..n)
                    .map(|r| {
                        let p: Vec<String> = (1..=7).map(|c| format!("?{}", r * 7 + c)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO history (instance_id, seq, activity, node, state, at, actor) VALUES {}",
                    rows.join(", ")
                )
            })
            .collect()
    });
    all.get(n.clamp(1, ROWS_PER_INSERT) - 1)
        .map_or("", String::as_str)
}

/// Appends rows to one instance's history, numbering them after the last one.
pub(crate) struct HistoryWriter<'c, S: Sql + ?Sized> {
    conn: &'c S,
    instance: &'c str,
    /// The last row written, once known.
    seq: Option<i64>,
}

impl<'c, S: Sql + ?Sized> HistoryWriter<'c, S> {
    pub(crate) fn new(conn: &'c S, instance: &'c str) -> Self {
        Self::starting(conn, instance, false)
    }

    /// A writer for `instance`; `fresh`: the instance was inserted in this
    /// transaction, so it has no history yet and its rows start at 1 without
    /// looking. Otherwise the last row is looked up at the first write (a
    /// command that records no history does not look at all).
    pub(crate) fn starting(conn: &'c S, instance: &'c str, fresh: bool) -> Self {
        HistoryWriter {
            conn,
            instance,
            seq: if fresh { Some(0) } else { None },
        }
    }

    /// Rows in order, with as few statements as can carry them (a step's
    /// transitions are a dozen rows or so: one `INSERT` of many rows costs
    /// little more than one of a single row).
    pub(crate) fn write_all(&mut self, rows: &[NewRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut seq = match self.seq {
            Some(s) => s,
            None => self.last_stored()?,
        };
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let seqs: Vec<i64> = (1..=chunk.len())
                .map(|k| seq + i64::try_from(k).unwrap_or(i64::MAX))
                .collect();
            let mut values: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 7);
            for (row, s) in chunk.iter().zip(&seqs) {
                values.extend([
                    &self.instance as &dyn ToSql,
                    s,
                    &row.activity,
                    &row.node,
                    &row.state,
                    &row.at,
                    &row.actor,
                ]);
            }
            self.conn.execute(insert_sql(chunk.len()), &values)?;
            seq = seqs.last().copied().unwrap_or(seq);
        }
        self.seq = Some(seq);
        Ok(())
    }

    /// The last row stored for the instance (0 when there is none).
    fn last_stored(&self) -> Result<i64> {
        self.conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM history WHERE instance_id = ?1",
            params![self.instance],
            |r| r.get(0),
        )
    }

    /// One row; `state` is a lifecycle state, a comma list of them, or a task event.
    pub(crate) fn write(
        &mut self,
        activity: u64,
        node: &str,
        state: &str,
        at: &str,
        actor: Option<&str>,
    ) -> Result<()> {
        let seq = match self.seq {
            Some(s) => s + 1,
            None => self.last_stored()? + 1,
        };
        self.seq = Some(seq);
        self.conn.execute(
            "INSERT INTO history (instance_id, seq, activity, node, state, at, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![self.instance, seq, activity, node, state, at, actor],
        )?;
        Ok(())
    }
}

/// A lifecycle state as history and the tasks table store it.
pub(crate) fn lifecycle_text(s: Lifecycle) -> &'static str {
    match s {
        Lifecycle::Ready => "ready",
        Lifecycle::Active => "active",
        Lifecycle::Completing => "completing",
        Lifecycle::Completed => "completed",
        Lifecycle::Aborting => "aborting",
        Lifecycle::Aborted => "aborted",
        Lifecycle::Faulted => "faulted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, dbs, instance};
    use crate::{Error, SqlExt, WriteInstances};
    use chrono::{DateTime, Utc};
    use ordo_runtime::{Action, HistoryEntry};

    fn entry(activity: u64, state: Lifecycle, at: DateTime<Utc>, actor: Option<&str>) -> Action {
        Action::History(HistoryEntry {
            activity: ordo_runtime::ActivityInstanceId(activity),
            node: format!("n{activity}"),
            state,
            at,
            actor: actor.map(str::to_owned),
        })
    }

    fn stored_rows(conn: &dyn Sql) -> Result<i64> {
        conn.query_row("SELECT COUNT(*) FROM history", &[], |r| r.get(0))
    }

    #[test]
    fn history_rows_group_one_commands_transitions_and_expand_on_read() -> Result<()> {
        for conn in dbs() {
            let inst = instance("1", 1);
            let at = DateTime::<Utc>::UNIX_EPOCH;
            let h = |activity, state| entry(activity, state, at, None);
            let actions = [
                h(1, Lifecycle::Ready),
                h(1, Lifecycle::Active),
                h(2, Lifecycle::Ready),
                h(1, Lifecycle::Completed),
            ];
            conn.record(&inst, &actions, at, false)?;
            assert_eq!(
                stored_rows(&conn)?,
                3,
                "only consecutive transitions of one activity are grouped"
            );
            let read: Vec<(u64, String)> = conn
                .history("1")?
                .into_iter()
                .map(|r| (r.activity, r.state))
                .collect();
            assert_eq!(
                read,
                [
                    (1, "ready".into()),
                    (1, "active".into()),
                    (2, "ready".into()),
                    (1, "completed".into())
                ]
            );
        }
        Ok(())
    }

    #[test]
    fn transitions_at_another_time_or_by_another_actor_keep_rows_of_their_own() -> Result<()> {
        for conn in dbs() {
            let actions = [
                entry(1, Lifecycle::Ready, at(0), None),
                entry(1, Lifecycle::Active, at(0), None),
                entry(1, Lifecycle::Completing, at(1_000), None),
                entry(1, Lifecycle::Completed, at(1_000), Some("ann")),
            ];
            conn.record(&instance("1", 1), &actions, at(1_000), false)?;
            assert_eq!(stored_rows(&conn)?, 3);
            let row = |state: &str, ms, actor: Option<&str>| HistoryRow {
                activity: 1,
                node: "n1".into(),
                state: state.into(),
                at: at(ms).to_rfc3339(),
                actor: actor.map(str::to_owned),
            };
            assert_eq!(
                conn.history("1")?,
                [
                    row("ready", 0, None),
                    row("active", 0, None),
                    row("completing", 1_000, None),
                    row("completed", 1_000, Some("ann")),
                ],
                "each expanded state keeps its row's time and actor"
            );
        }
        Ok(())
    }

    #[test]
    fn history_goes_on_in_order_across_commands_and_instances_do_not_mix() -> Result<()> {
        for conn in dbs() {
            let one = instance("1", 1);
            let two = instance("2", 1);
            conn.record(
                &one,
                &[entry(1, Lifecycle::Ready, at(0), None)],
                at(0),
                false,
            )?;
            conn.record(
                &two,
                &[entry(5, Lifecycle::Ready, at(1), None)],
                at(1),
                false,
            )?;
            conn.record(
                &one,
                &[
                    entry(2, Lifecycle::Ready, at(2), None),
                    entry(1, Lifecycle::Aborted, at(2), Some("admin")),
                ],
                at(2),
                false,
            )?;
            conn.record(
                &one,
                &[entry(2, Lifecycle::Faulted, at(3), None)],
                at(3),
                false,
            )?;
            let states: Vec<(u64, String)> = conn
                .history("1")?
                .into_iter()
                .map(|r| (r.activity, r.state))
                .collect();
            assert_eq!(
                states,
                [
                    (1, "ready".into()),
                    (2, "ready".into()),
                    (1, "aborted".into()),
                    (2, "faulted".into()),
                ]
            );
            assert_eq!(conn.history("2")?.len(), 1);
            assert_eq!(conn.history("3")?, []);
        }
        Ok(())
    }

    #[test]
    fn a_writer_numbers_its_rows_after_the_last_one_stored() -> Result<()> {
        for conn in dbs() {
            conn.record(
                &instance("1", 1),
                &[entry(1, Lifecycle::Ready, at(0), None)],
                at(0),
                false,
            )?;
            let mut w = HistoryWriter::new(&conn, "1");
            w.write(1, "n1", "claimed", "t1", Some("ann"))?;
            w.write(1, "n1", "unclaimed", "t2", Some("ann"))?;
            let seqs: Vec<i64> = conn.query_map(
                "SELECT seq FROM history WHERE instance_id = '1' ORDER BY seq",
                &[],
                |r| r.get(0),
            )?;
            assert_eq!(seqs, [1, 2, 3]);
        }
        Ok(())
    }

    #[test]
    fn a_fresh_instance_numbers_from_one_without_looking_and_others_look_once() -> Result<()> {
        for conn in dbs() {
            conn.record(
                &instance("1", 1),
                &[
                    entry(1, Lifecycle::Ready, at(0), None),
                    entry(2, Lifecycle::Ready, at(0), None),
                ],
                at(0),
                true,
            )?;
            // A later command on the same instance goes on after the stored rows.
            conn.record(
                &instance("1", 2),
                &[entry(3, Lifecycle::Ready, at(1), None)],
                at(1),
                false,
            )?;
            let seqs: Vec<(i64, i64)> = conn.query_map(
                "SELECT seq, activity FROM history WHERE instance_id = '1' ORDER BY seq",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            assert_eq!(seqs, [(1, 1), (2, 2), (3, 3)]);
            // Claiming "fresh" for an instance with history would collide: the
            // primary key refuses it rather than mixing rows.
            let wrong = conn.record(
                &instance("1", 3),
                &[entry(4, Lifecycle::Ready, at(2), None)],
                at(2),
                true,
            );
            assert!(matches!(wrong, Err(Error::Constraint(_))), "{wrong:?}");
        }
        Ok(())
    }

    #[test]
    fn lifecycle_text_is_the_state_as_json_names_it() -> Result<()> {
        for s in [
            Lifecycle::Ready,
            Lifecycle::Active,
            Lifecycle::Completing,
            Lifecycle::Completed,
            Lifecycle::Aborting,
            Lifecycle::Aborted,
            Lifecycle::Faulted,
        ] {
            assert_eq!(serde_json::to_value(s)?, lifecycle_text(s));
        }
        Ok(())
    }

    #[test]
    fn many_rows_of_one_step_are_numbered_in_order_across_inserts() -> Result<()> {
        for conn in dbs() {
            // 40 activities, each one row: more than one `INSERT` carries.
            let entries: Vec<Action> = (1..=40)
                .map(|a| entry(a, Lifecycle::Ready, at(0), None))
                .collect();
            conn.record(&instance("1", 1), &entries, at(0), true)?;
            conn.record(&instance("1", 1), &entries[..3], at(1), false)?;
            let rows = conn.history("1")?;
            let activities: Vec<u64> = rows.iter().map(|r| r.activity).collect();
            let mut expected: Vec<u64> = (1..=40).collect();
            expected.extend([1, 2, 3]);
            assert_eq!(activities, expected, "{:?}", conn.backend());
            let seqs: Vec<i64> = conn.query_map(
                "SELECT seq FROM history WHERE instance_id = '1' ORDER BY seq",
                &[],
                |r| r.get(0),
            )?;
            assert_eq!(seqs, (1..=43).collect::<Vec<i64>>());
        }
        Ok(())
    }
}
