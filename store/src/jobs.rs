//! The `jobs` table: service calls waiting for a worker, with their leases,
//! attempts and the time of their next try.

use crate::sql::{Row, Sql, SqlExt};
use crate::{Error, Result, params};
use ordo_runtime::JobSpec;
use serde::{Deserialize, Serialize};

/// A job (an asynchronous service call) as workers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// The instance.
    pub instance_id: String,
    /// The service task's activity instance.
    pub activity: u64,
    /// The node.
    pub node: String,
    /// The action to run.
    pub action: String,
    /// Its input.
    pub input: serde_json::Value,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Attempts made so far (counted when a worker takes the job).
    pub attempts: u32,
    /// The first retry's delay; doubled for each further one.
    pub backoff_ms: u64,
    /// The worker holding the lease, if any.
    pub locked_by: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// The `jobs` table: leases, attempts and backoff.
pub trait Jobs {
    /// Jobs of `action` due and not leased at `now_ms`, oldest first.
    fn due_jobs(&self, action: &str, now_ms: i64, limit: u32) -> Result<Vec<JobRow>>;
    /// One job.
    fn job(&self, instance: &str, activity: u64) -> Result<Option<JobRow>>;
    /// Leases a job to `worker` until `until_ms`, counting an attempt.
    fn lease_job(&self, instance: &str, activity: u64, worker: &str, until_ms: i64) -> Result<()>;
    /// Releases a failed attempt's lease and schedules the next at `due_ms`.
    fn retry_job_at(&self, instance: &str, activity: u64, due_ms: i64, error: &str) -> Result<()>;
    /// Removes a job (done, failed for good, or raised an error).
    fn delete_job(&self, instance: &str, activity: u64) -> Result<()>;
    /// Stores how many attempts an incident's job made.
    fn set_incident_attempts(&self, instance: &str, activity: u64, attempts: u32) -> Result<()>;
}

const JOB_COLUMNS: &str = "instance_id, activity, node, action, input, retries, attempts, backoff_ms, locked_by, last_error";

fn job_row(r: &Row<'_>) -> Result<JobRow> {
    let input: String = r.get(4)?;
    Ok(JobRow {
        instance_id: r.get(0)?,
        activity: r.get(1)?,
        node: r.get(2)?,
        action: r.get(3)?,
        // A stored input that does not decode is an error (a damaged or newer
        // database), not a job with no input.
        input: serde_json::from_str(&input).map_err(|e| Error::Column {
            index: 4,
            message: format!("the job's input does not decode: {e}"),
        })?,
        retries: r.get(5)?,
        attempts: r.get(6)?,
        backoff_ms: r.get(7)?,
        locked_by: r.get(8)?,
        last_error: r.get(9)?,
    })
}

impl<S: Sql + ?Sized> Jobs for S {
    fn due_jobs(&self, action: &str, now_ms: i64, limit: u32) -> Result<Vec<JobRow>> {
        self.query_map(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE action = ?1 AND due <= ?2
                 AND (locked_until IS NULL OR locked_until <= ?2) ORDER BY due LIMIT ?3"
            ),
            params![action, now_ms, limit],
            job_row,
        )
    }
    fn job(&self, instance: &str, activity: u64) -> Result<Option<JobRow>> {
        self.query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE instance_id = ?1 AND activity = ?2"),
            params![instance, activity],
            job_row,
        )
    }
    fn lease_job(&self, instance: &str, activity: u64, worker: &str, until_ms: i64) -> Result<()> {
        self.execute(
            "UPDATE jobs SET attempts = attempts + 1, locked_by = ?3, locked_until = ?4
             WHERE instance_id = ?1 AND activity = ?2",
            params![instance, activity, worker, until_ms],
        )?;
        Ok(())
    }
    fn retry_job_at(&self, instance: &str, activity: u64, due_ms: i64, error: &str) -> Result<()> {
        self.execute(
            "UPDATE jobs SET due = ?3, last_error = ?4, locked_by = NULL, locked_until = NULL
             WHERE instance_id = ?1 AND activity = ?2",
            params![instance, activity, due_ms, error],
        )?;
        Ok(())
    }
    fn delete_job(&self, instance: &str, activity: u64) -> Result<()> {
        remove_job(self, instance, activity)
    }
    fn set_incident_attempts(&self, instance: &str, activity: u64, attempts: u32) -> Result<()> {
        self.execute(
            "UPDATE incidents SET attempts = ?3 WHERE instance_id = ?1 AND activity = ?2",
            params![instance, activity, attempts],
        )?;
        Ok(())
    }
}

/// Stores a job a step asks for, due at `due_ms`.
pub(crate) fn insert_job(
    tx: &(impl Sql + ?Sized),
    instance: &str,
    j: &JobSpec,
    due_ms: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO jobs (instance_id, activity, node, action, input, retries, backoff_ms, due) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![instance, j.activity.0, j.node, j.action, j.input.to_string(), j.retries, j.backoff_ms, due_ms],
    )?;
    Ok(())
}

/// Removes a job (whether or not it is leased).
pub(crate) fn remove_job(tx: &(impl Sql + ?Sized), instance: &str, activity: u64) -> Result<()> {
    tx.execute(
        "DELETE FROM jobs WHERE instance_id = ?1 AND activity = ?2",
        params![instance, activity],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, dbs, instance};
    use crate::{ReadEvents, WriteInstances};
    use ordo_runtime::Action;

    fn spec(activity: u64, action: &str) -> JobSpec {
        JobSpec {
            activity: ordo_runtime::ActivityInstanceId(activity),
            node: format!("n{activity}"),
            action: action.into(),
            input: serde_json::json!({ "to": "ann" }),
            retries: 3,
            backoff_ms: 500,
        }
    }

    /// Asks for job `activity` of instance `id`, at `ms`.
    fn run(conn: &dyn Sql, id: &str, activity: u64, action: &str, ms: i64) {
        conn.record(
            &instance(id, 1),
            &[Action::RunJob(spec(activity, action))],
            at(ms),
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn keys(rows: &[JobRow]) -> Vec<(&str, u64)> {
        rows.iter()
            .map(|j| (j.instance_id.as_str(), j.activity))
            .collect()
    }

    #[test]
    fn a_job_a_step_asks_for_is_due_from_then_for_its_action() -> Result<()> {
        for conn in dbs() {
            run(&conn, "1", 2, "mail.send", 1_000);
            let expected = JobRow {
                instance_id: "1".into(),
                activity: 2,
                node: "n2".into(),
                action: "mail.send".into(),
                input: serde_json::json!({ "to": "ann" }),
                retries: 3,
                attempts: 0,
                backoff_ms: 500,
                locked_by: None,
                last_error: None,
            };
            assert_eq!(conn.job("1", 2)?, Some(expected.clone()));
            assert_eq!(conn.job("1", 3)?, None);
            assert_eq!(conn.due_jobs("mail.send", 999, 10)?, []);
            assert_eq!(conn.due_jobs("mail.send", 1_000, 10)?, [expected]);
            assert_eq!(conn.due_jobs("crm.update", 1_000, 10)?, []);
        }
        Ok(())
    }

    #[test]
    fn a_job_whose_stored_input_does_not_decode_is_an_error() -> Result<()> {
        for conn in dbs() {
            run(&conn, "1", 2, "mail.send", 1_000);
            conn.execute(
                "UPDATE jobs SET input = '{not json' WHERE instance_id = '1'",
                params![],
            )?;
            let read = conn.job("1", 2);
            assert!(read.is_err(), "{read:?}");
        }
        Ok(())
    }

    #[test]
    fn a_leased_job_is_not_taken_again_until_its_lease_runs_out() -> Result<()> {
        for conn in dbs() {
            run(&conn, "1", 2, "mail.send", 0);
            conn.lease_job("1", 2, "w1", 5_000)?;
            let job = conn.job("1", 2)?;
            assert_eq!(
                job.as_ref().map(|j| (j.attempts, j.locked_by.as_deref())),
                Some((1, Some("w1"))),
                "a lease counts an attempt"
            );
            assert_eq!(conn.due_jobs("mail.send", 4_999, 10)?, [], "leased");
            let expired = conn.due_jobs("mail.send", 5_000, 10)?;
            assert_eq!(keys(&expired), [("1", 2)], "the lease ran out");
            assert_eq!(expired[0].locked_by.as_deref(), Some("w1"));
            conn.lease_job("1", 2, "w2", 9_000)?;
            assert_eq!(
                conn.job("1", 2)?.map(|j| (j.attempts, j.locked_by)),
                Some((2, Some("w2".into())))
            );
        }
        Ok(())
    }

    #[test]
    fn a_retry_releases_the_lease_and_waits_for_its_time() -> Result<()> {
        for conn in dbs() {
            run(&conn, "1", 2, "mail.send", 0);
            conn.lease_job("1", 2, "w1", 60_000)?;
            conn.retry_job_at("1", 2, 8_000, "timeout")?;
            let job = conn.job("1", 2)?;
            assert_eq!(
                job.map(|j| (j.attempts, j.locked_by, j.last_error)),
                Some((1, None, Some("timeout".into())))
            );
            assert_eq!(conn.due_jobs("mail.send", 7_999, 10)?, []);
            assert_eq!(
                keys(&conn.due_jobs("mail.send", 8_000, 10)?),
                [("1", 2)],
                "due at its retry time, though the old lease had not run out"
            );
        }
        Ok(())
    }

    #[test]
    fn due_jobs_come_oldest_first_and_deleted_or_cancelled_ones_go() -> Result<()> {
        for conn in dbs() {
            run(&conn, "1", 2, "mail.send", 2_000);
            run(&conn, "2", 3, "mail.send", 1_000);
            run(&conn, "3", 4, "mail.send", 3_000);
            assert_eq!(
                keys(&conn.due_jobs("mail.send", 5_000, 10)?),
                [("2", 3), ("1", 2), ("3", 4)]
            );
            assert_eq!(keys(&conn.due_jobs("mail.send", 5_000, 1)?), [("2", 3)]);

            conn.delete_job("1", 2)?;
            conn.record(
                &instance("2", 1),
                &[Action::CancelJob {
                    activity: ordo_runtime::ActivityInstanceId(3),
                }],
                at(5_000),
                false,
            )?;
            assert_eq!(conn.job("1", 2)?, None);
            assert_eq!(conn.job("2", 3)?, None);
            assert_eq!(keys(&conn.due_jobs("mail.send", 5_000, 10)?), [("3", 4)]);
        }
        Ok(())
    }

    #[test]
    fn an_incident_shows_the_attempts_its_job_made() -> Result<()> {
        for conn in dbs() {
            conn.record(
                &instance("1", 1),
                &[Action::Incident {
                    activity: ordo_runtime::ActivityInstanceId(2),
                    node: "n2".into(),
                    message: "no answer".into(),
                }],
                at(0),
                false,
            )?;
            conn.set_incident_attempts("1", 2, 4)?;
            let attempts: Vec<u32> = conn
                .instance_incidents("1")?
                .into_iter()
                .map(|i| i.attempts)
                .collect();
            assert_eq!(attempts, [4]);
        }
        Ok(())
    }
}
