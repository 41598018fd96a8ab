//! What triggers find: message and signal subscriptions, instance timers,
//! start events, message declarations, buffered messages and the message ids
//! seen; and incidents, which failed timers open too.

use crate::sql::{Row, Sql, SqlExt};
use crate::{Result, params};
use ordo_runtime::{Subscription, Trigger};
use serde::{Deserialize, Serialize};

/// A start event that starts instances on a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRow {
    /// The process.
    pub process_id: String,
    /// The version the event belongs to (the latest).
    pub version: u32,
    /// The start event's id.
    pub event_id: String,
}

/// An incident, as admins list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IncidentRow {
    /// The instance.
    pub instance_id: String,
    /// The activity instance it holds.
    pub activity: u64,
    /// The node.
    pub node: String,
    /// What went wrong.
    pub message: String,
    /// Attempts its job made (0 when not a job).
    pub attempts: u32,
    /// `open`, `retried`, `resolved` or `aborted`.
    pub state: String,
    /// When it was opened (RFC 3339).
    pub created_at: String,
}

/// Subscriptions, buffered messages and start events: what triggers find.
pub trait ReadEvents {
    /// The longest-waiting subscription for a message: (instance, subscription).
    fn message_subscriber(&self, name: &str, key: Option<&str>) -> Result<Option<(String, u64)>>;
    /// Every subscription for a signal.
    fn signal_subscribers(&self, name: &str) -> Result<Vec<(String, u64)>>;
    /// Start events of latest versions with this trigger (`message`, `signal`).
    fn start_events(&self, kind: &str, name: &str) -> Result<Vec<StartRow>>;
    /// Instance timers due at or before `now_ms`, earliest first.
    fn due_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<(String, u64)>>;
    /// Timer start events due at or before `now_ms`.
    fn due_start_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<StartRow>>;
    /// The earliest timer, instance or start (ms since the epoch).
    fn next_timer(&self) -> Result<Option<i64>>;
    /// Whether a message id was seen and has not expired.
    fn seen_message(&self, message_id: &str, now_ms: i64) -> Result<bool>;
    /// Incidents, newest first; only open ones when `open_only`.
    fn incidents(&self, open_only: bool, limit: u32, offset: u32) -> Result<Vec<IncidentRow>>;
    /// One instance's incidents, open and closed, newest first.
    fn instance_incidents(&self, instance: &str) -> Result<Vec<IncidentRow>>;
    /// The latest process versions that declare the payload of message `name`.
    fn message_declarers(&self, name: &str) -> Result<Vec<(String, u32)>>;
}

/// Writes to the event tables.
pub trait WriteEvents: ReadEvents {
    /// Replaces a process's start events with those of its latest version.
    fn set_start_events(
        &self,
        process: &str,
        version: u32,
        events: &[(String, &str, Option<String>, Option<i64>)],
    ) -> Result<()>;
    /// Replaces the messages a process declares with those of its latest version.
    fn set_message_decls(&self, process: &str, version: u32, names: &[&str]) -> Result<()>;
    /// Moves a timer start event's next firing (None: it does not fire again).
    fn set_start_due(&self, process: &str, event: &str, due: Option<i64>) -> Result<()>;
    /// Removes an instance timer (it is firing).
    fn delete_timer(&self, instance: &str, sub: u64) -> Result<()>;
    /// Parks a timer whose step failed (`failed`), or arms it again to fire at
    /// `due_ms` (an admin's retry); whether there was such a timer.
    fn set_timer_failed(&self, instance: &str, sub: u64, failed: bool, due_ms: i64)
    -> Result<bool>;
    /// Opens (or renews) an incident for something that failed outside a step:
    /// a timer that could not fire.
    fn open_incident(
        &self,
        instance: &str,
        activity: u64,
        node: &str,
        message: &str,
        at: &str,
    ) -> Result<()>;
    /// Closes the open incident of an instance's activity as retried by
    /// `actor` (a failed timer armed again).
    fn close_incident_retried(
        &self,
        instance: &str,
        activity: u64,
        at: &str,
        actor: Option<&str>,
    ) -> Result<()>;
    /// Keeps a message until `expires_ms` for the first instance that subscribes.
    fn buffer_message(
        &self,
        name: &str,
        key: Option<&str>,
        message_id: Option<&str>,
        variables: &str,
        expires_ms: i64,
    ) -> Result<()>;
    /// Takes (removes and returns) the oldest live buffered message of this name and key.
    fn take_buffered(&self, name: &str, key: Option<&str>, now_ms: i64) -> Result<Option<String>>;
    /// Remembers a message id until `expires_ms`.
    fn remember_message(&self, message_id: &str, expires_ms: i64) -> Result<()>;
    /// Deletes expired buffered messages and message ids.
    fn purge_expired(&self, now_ms: i64) -> Result<usize>;
}

/// The condition on a nullable `key` column: equal to `?N`, or NULL when
/// there is no key (one text each, so both use the index on both backends).
fn key_is(key: Option<&str>, n: u8) -> String {
    match key {
        Some(_) => format!("key = ?{n}"),
        None => format!("key IS NULL AND CAST(?{n} AS TEXT) IS NULL"),
    }
}

impl<S: Sql + ?Sized> ReadEvents for S {
    fn message_subscriber(&self, name: &str, key: Option<&str>) -> Result<Option<(String, u64)>> {
        self.query_opt(
            &format!(
                "SELECT instance_id, sub_id FROM message_subs WHERE name = ?1 AND {} ORDER BY seq LIMIT 1",
                key_is(key, 2)
            ),
            params![name, key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
    fn signal_subscribers(&self, name: &str) -> Result<Vec<(String, u64)>> {
        self.query_map(
            "SELECT instance_id, sub_id FROM signal_subs WHERE name = ?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
    fn start_events(&self, kind: &str, name: &str) -> Result<Vec<StartRow>> {
        self.query_map(
            "SELECT process_id, version, event_id FROM start_events WHERE kind = ?1 AND name = ?2 ORDER BY process_id, event_id",
            params![kind, name],
            start_row,
        )
    }
    fn due_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<(String, u64)>> {
        self.query_map(
            "SELECT instance_id, sub_id FROM timers WHERE due <= ?1 AND failed = 0 ORDER BY due LIMIT ?2",
            params![now_ms, limit],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
    fn due_start_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<StartRow>> {
        self.query_map(
            "SELECT process_id, version, event_id FROM start_events WHERE due IS NOT NULL AND due <= ?1 ORDER BY due LIMIT ?2",
            params![now_ms, limit],
            start_row,
        )
    }
    fn next_timer(&self) -> Result<Option<i64>> {
        self.query_row(
            "SELECT MIN(d) FROM (SELECT MIN(due) AS d FROM timers WHERE failed = 0
             UNION ALL SELECT MIN(due) FROM start_events) AS due_times",
            params![],
            |r| r.get(0),
        )
    }
    fn seen_message(&self, message_id: &str, now_ms: i64) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM message_ids WHERE message_id = ?1 AND expires > ?2",
                params![message_id, now_ms],
                |_| Ok(()),
            )?
            .is_some())
    }
    fn incidents(&self, open_only: bool, limit: u32, offset: u32) -> Result<Vec<IncidentRow>> {
        self.query_map(
            "SELECT instance_id, activity, node, message, state, created_at, attempts FROM incidents
             WHERE (?1 = 0 OR state = 'open') ORDER BY created_at DESC LIMIT ?2 OFFSET ?3",
            params![open_only, limit, offset],
            incident_row,
        )
    }

    fn message_declarers(&self, name: &str) -> Result<Vec<(String, u32)>> {
        self.query_map(
            "SELECT process_id, version FROM message_decls WHERE name = ?1 ORDER BY process_id",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
    fn instance_incidents(&self, instance: &str) -> Result<Vec<IncidentRow>> {
        self.query_map(
            "SELECT instance_id, activity, node, message, state, created_at, attempts FROM incidents
             WHERE instance_id = ?1 ORDER BY created_at DESC",
            params![instance],
            incident_row,
        )
    }
}

fn incident_row(r: &Row<'_>) -> Result<IncidentRow> {
    Ok(IncidentRow {
        instance_id: r.get(0)?,
        activity: r.get(1)?,
        node: r.get(2)?,
        message: r.get(3)?,
        state: r.get(4)?,
        created_at: r.get(5)?,
        attempts: r.get(6)?,
    })
}

impl<S: Sql + ?Sized> WriteEvents for S {
    fn set_timer_failed(
        &self,
        instance: &str,
        sub: u64,
        failed: bool,
        due_ms: i64,
    ) -> Result<bool> {
        let n = self.execute(
            "UPDATE timers SET failed = ?3, due = CASE WHEN ?5 = 1 THEN due ELSE ?4 END
             WHERE instance_id = ?1 AND sub_id = ?2",
            params![instance, sub, failed, due_ms, failed],
        )?;
        Ok(n > 0)
    }
    fn open_incident(
        &self,
        instance: &str,
        activity: u64,
        node: &str,
        message: &str,
        at: &str,
    ) -> Result<()> {
        open_incident(self, instance, activity, node, message, at)
    }
    fn set_message_decls(&self, process: &str, version: u32, names: &[&str]) -> Result<()> {
        self.execute(
            "DELETE FROM message_decls WHERE process_id = ?1",
            params![process],
        )?;
        for name in names {
            self.execute(
                "INSERT INTO message_decls (name, process_id, version) VALUES (?1, ?2, ?3)",
                params![name, process, version],
            )?;
        }
        Ok(())
    }
    fn set_start_events(
        &self,
        process: &str,
        version: u32,
        events: &[(String, &str, Option<String>, Option<i64>)],
    ) -> Result<()> {
        self.execute(
            "DELETE FROM start_events WHERE process_id = ?1",
            params![process],
        )?;
        for (event, kind, name, due) in events {
            self.execute(
                "INSERT INTO start_events (process_id, version, event_id, kind, name, due) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![process, version, event, kind, name, due],
            )?;
        }
        Ok(())
    }
    fn set_start_due(&self, process: &str, event: &str, due: Option<i64>) -> Result<()> {
        self.execute(
            "UPDATE start_events SET due = ?3 WHERE process_id = ?1 AND event_id = ?2",
            params![process, event, due],
        )?;
        Ok(())
    }
    fn delete_timer(&self, instance: &str, sub: u64) -> Result<()> {
        self.execute(
            "DELETE FROM timers WHERE instance_id = ?1 AND sub_id = ?2",
            params![instance, sub],
        )?;
        Ok(())
    }
    fn close_incident_retried(
        &self,
        instance: &str,
        activity: u64,
        at: &str,
        actor: Option<&str>,
    ) -> Result<()> {
        close_incident(self, instance, activity, "retried", at, actor)
    }

    fn buffer_message(
        &self,
        name: &str,
        key: Option<&str>,
        message_id: Option<&str>,
        variables: &str,
        expires_ms: i64,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO messages (name, key, message_id, variables, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, key, message_id, variables, expires_ms],
        )?;
        Ok(())
    }
    fn take_buffered(&self, name: &str, key: Option<&str>, now_ms: i64) -> Result<Option<String>> {
        let found: Option<(i64, String)> = self.query_opt(
            &format!(
                "SELECT seq, variables FROM messages WHERE name = ?1 AND {} AND expires > ?3 ORDER BY seq LIMIT 1",
                key_is(key, 2)
            ),
            params![name, key, now_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let Some((seq, vars)) = found else {
            return Ok(None);
        };
        self.execute("DELETE FROM messages WHERE seq = ?1", params![seq])?;
        Ok(Some(vars))
    }
    fn remember_message(&self, message_id: &str, expires_ms: i64) -> Result<()> {
        self.execute(
            "INSERT INTO message_ids (message_id, expires) VALUES (?1, ?2)
             ON CONFLICT (message_id) DO UPDATE SET expires = excluded.expires",
            params![message_id, expires_ms],
        )?;
        Ok(())
    }
    fn purge_expired(&self, now_ms: i64) -> Result<usize> {
        let a = self.execute("DELETE FROM messages WHERE expires <= ?1", params![now_ms])?;
        let b = self.execute(
            "DELETE FROM message_ids WHERE expires <= ?1",
            params![now_ms],
        )?;
        Ok(a + b)
    }
}

/// Stores what an instance starts waiting for.
pub(crate) fn subscribe(
    tx: &(impl Sql + ?Sized),
    instance: &str,
    sub: &Subscription,
) -> Result<()> {
    match &sub.trigger {
        Trigger::Message { name, key } => tx.execute(
            "INSERT INTO message_subs (name, key, instance_id, sub_id) VALUES (?1, ?2, ?3, ?4)",
            params![name, key, instance, sub.id.0],
        )?,
        Trigger::Signal { name } => tx.execute(
            "INSERT INTO signal_subs (name, instance_id, sub_id) VALUES (?1, ?2, ?3)",
            params![name, instance, sub.id.0],
        )?,
        Trigger::Timer { due } => tx.execute(
            "INSERT INTO timers (instance_id, sub_id, due) VALUES (?1, ?2, ?3)",
            params![instance, sub.id.0, due.timestamp_millis()],
        )?,
    };
    Ok(())
}

/// Removes what an instance no longer waits for.
pub(crate) fn unsubscribe(
    tx: &(impl Sql + ?Sized),
    instance: &str,
    sub: &Subscription,
) -> Result<()> {
    match &sub.trigger {
        Trigger::Message { .. } => tx.execute(
            "DELETE FROM message_subs WHERE instance_id = ?1 AND sub_id = ?2",
            params![instance, sub.id.0],
        )?,
        Trigger::Signal { name } => tx.execute(
            "DELETE FROM signal_subs WHERE name = ?1 AND instance_id = ?2 AND sub_id = ?3",
            params![name, instance, sub.id.0],
        )?,
        Trigger::Timer { .. } => tx.execute(
            "DELETE FROM timers WHERE instance_id = ?1 AND sub_id = ?2",
            params![instance, sub.id.0],
        )?,
    };
    Ok(())
}

/// Opens an incident on an activity instance, or renews the one it has (open
/// again, attempts back to 0).
pub(crate) fn open_incident(
    tx: &(impl Sql + ?Sized),
    instance: &str,
    activity: u64,
    node: &str,
    message: &str,
    at: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO incidents (instance_id, activity, node, message, created_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, 'open')
         ON CONFLICT (instance_id, activity) DO UPDATE SET node = excluded.node,
             message = excluded.message, created_at = excluded.created_at, state = 'open',
             attempts = 0, closed_at = NULL, closed_by = NULL",
        params![instance, activity, node, message, at],
    )?;
    Ok(())
}

/// Closes an activity instance's open incident as `how` (`retried`,
/// `resolved`); a closed one stays as it was.
pub(crate) fn close_incident(
    tx: &(impl Sql + ?Sized),
    instance: &str,
    activity: u64,
    how: &str,
    at: &str,
    actor: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE incidents SET state = ?3, closed_at = ?4, closed_by = ?5
         WHERE instance_id = ?1 AND activity = ?2 AND state = 'open'",
        params![instance, activity, how, at, actor],
    )?;
    Ok(())
}

fn start_row(r: &Row<'_>) -> Result<StartRow> {
    Ok(StartRow {
        process_id: r.get(0)?,
        version: r.get(1)?,
        event_id: r.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, dbs, instance};
    use crate::{SqlExt, WriteInstances};
    use ordo_runtime::{Action, SubscriptionKind};

    fn sub(id: u64, trigger: Trigger) -> Subscription {
        Subscription {
            id: ordo_runtime::SubscriptionId(id),
            token: ordo_runtime::TokenId(1),
            node: format!("n{id}"),
            kind: SubscriptionKind::Catch,
            trigger,
        }
    }

    fn message(name: &str, key: Option<&str>) -> Trigger {
        Trigger::Message {
            name: name.into(),
            key: key.map(str::to_owned),
        }
    }

    fn signal(name: &str) -> Trigger {
        Trigger::Signal { name: name.into() }
    }

    fn timer(ms: i64) -> Trigger {
        Trigger::Timer { due: at(ms) }
    }

    /// Records one action for instance `id`.
    fn act(conn: &dyn Sql, id: &str, action: Action) {
        conn.record(&instance(id, 1), &[action], at(0), false)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn start(process: &str, version: u32, event: &str) -> StartRow {
        StartRow {
            process_id: process.into(),
            version,
            event_id: event.into(),
        }
    }

    fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(i, s)| ((*i).to_owned(), *s)).collect()
    }

    #[test]
    fn the_longest_waiting_subscriber_with_the_same_key_gets_a_message() -> Result<()> {
        for conn in dbs() {
            act(
                &conn,
                "1",
                Action::Subscribe(sub(3, message("paid", Some("k1")))),
            );
            act(
                &conn,
                "2",
                Action::Subscribe(sub(4, message("paid", Some("k1")))),
            );
            act(&conn, "3", Action::Subscribe(sub(5, message("paid", None))));
            assert_eq!(
                conn.message_subscriber("paid", Some("k1"))?,
                Some(("1".into(), 3))
            );
            assert_eq!(
                conn.message_subscriber("paid", None)?,
                Some(("3".into(), 5)),
                "no key matches only no key"
            );
            assert_eq!(conn.message_subscriber("paid", Some("k2"))?, None);
            assert_eq!(conn.message_subscriber("shipped", Some("k1"))?, None);

            act(
                &conn,
                "1",
                Action::Unsubscribe(sub(3, message("paid", Some("k1")))),
            );
            assert_eq!(
                conn.message_subscriber("paid", Some("k1"))?,
                Some(("2".into(), 4))
            );
        }
        Ok(())
    }

    #[test]
    fn a_signal_reaches_every_subscriber_until_it_unsubscribes() -> Result<()> {
        for conn in dbs() {
            act(&conn, "1", Action::Subscribe(sub(3, signal("go"))));
            act(&conn, "2", Action::Subscribe(sub(4, signal("go"))));
            act(&conn, "2", Action::Subscribe(sub(5, signal("stop"))));
            let mut go = conn.signal_subscribers("go")?;
            go.sort();
            assert_eq!(go, pairs(&[("1", 3), ("2", 4)]));
            act(&conn, "1", Action::Unsubscribe(sub(3, signal("go"))));
            assert_eq!(conn.signal_subscribers("go")?, pairs(&[("2", 4)]));
            assert_eq!(conn.signal_subscribers("stop")?, pairs(&[("2", 5)]));
            assert_eq!(conn.signal_subscribers("none")?, []);
        }
        Ok(())
    }

    #[test]
    fn a_timer_is_due_from_its_time_and_a_failed_one_waits_for_an_admin() -> Result<()> {
        for conn in dbs() {
            act(&conn, "1", Action::Subscribe(sub(1, timer(2_000))));
            act(&conn, "2", Action::Subscribe(sub(1, timer(1_000))));
            assert_eq!(conn.due_timers(999, 10)?, []);
            assert_eq!(conn.due_timers(1_000, 10)?, pairs(&[("2", 1)]));
            assert_eq!(
                conn.due_timers(5_000, 10)?,
                pairs(&[("2", 1), ("1", 1)]),
                "earliest first"
            );
            assert_eq!(conn.due_timers(5_000, 1)?, pairs(&[("2", 1)]));
            assert_eq!(conn.next_timer()?, Some(1_000));

            assert!(conn.set_timer_failed("2", 1, true, 0)?);
            assert_eq!(conn.due_timers(5_000, 10)?, pairs(&[("1", 1)]), "parked");
            assert_eq!(conn.next_timer()?, Some(2_000));

            assert!(conn.set_timer_failed("2", 1, false, 7_000)?);
            assert_eq!(conn.due_timers(5_000, 10)?, pairs(&[("1", 1)]));
            assert_eq!(
                conn.due_timers(7_000, 10)?,
                pairs(&[("1", 1), ("2", 1)]),
                "armed again at the new time"
            );
            assert!(!conn.set_timer_failed("9", 1, true, 0)?, "no such timer");

            conn.delete_timer("1", 1)?;
            assert_eq!(conn.due_timers(10_000, 10)?, pairs(&[("2", 1)]));
            act(&conn, "2", Action::Unsubscribe(sub(1, timer(1_000))));
            assert_eq!(conn.due_timers(10_000, 10)?, []);
            assert_eq!(conn.next_timer()?, None);
        }
        Ok(())
    }

    #[test]
    fn start_events_are_replaced_per_process_and_timer_starts_come_due() -> Result<()> {
        for conn in dbs() {
            conn.set_start_events(
                "p",
                1,
                &[
                    ("s1".into(), "message", Some("order".into()), None),
                    ("s2".into(), "timer", None, Some(5_000)),
                ],
            )?;
            conn.set_start_events(
                "q",
                3,
                &[("s1".into(), "message", Some("order".into()), None)],
            )?;
            assert_eq!(
                conn.start_events("message", "order")?,
                [start("p", 1, "s1"), start("q", 3, "s1")]
            );
            assert_eq!(conn.start_events("signal", "order")?, []);
            assert_eq!(conn.due_start_timers(4_999, 10)?, []);
            assert_eq!(conn.due_start_timers(5_000, 10)?, [start("p", 1, "s2")]);
            assert_eq!(conn.next_timer()?, Some(5_000));

            conn.set_start_due("p", "s2", Some(9_000))?;
            assert_eq!(conn.due_start_timers(5_000, 10)?, []);
            assert_eq!(conn.next_timer()?, Some(9_000));
            act(&conn, "1", Action::Subscribe(sub(1, timer(8_000))));
            assert_eq!(conn.next_timer()?, Some(8_000), "the earlier of both kinds");
            conn.delete_timer("1", 1)?;
            conn.set_start_due("p", "s2", None)?;
            assert_eq!(conn.next_timer()?, None, "it does not fire again");

            conn.set_start_events("p", 2, &[("s3".into(), "signal", Some("go".into()), None)])?;
            assert_eq!(
                conn.start_events("message", "order")?,
                [start("q", 3, "s1")],
                "p's older events are gone"
            );
            assert_eq!(conn.start_events("signal", "go")?, [start("p", 2, "s3")]);
        }
        Ok(())
    }

    #[test]
    fn message_declarations_are_replaced_per_process() -> Result<()> {
        for conn in dbs() {
            conn.set_message_decls("q", 2, &["paid"])?;
            conn.set_message_decls("p", 1, &["paid", "shipped"])?;
            assert_eq!(
                conn.message_declarers("paid")?,
                [("p".to_owned(), 1), ("q".to_owned(), 2)]
            );
            conn.set_message_decls("p", 2, &["shipped"])?;
            assert_eq!(conn.message_declarers("paid")?, [("q".to_owned(), 2)]);
            assert_eq!(conn.message_declarers("shipped")?, [("p".to_owned(), 2)]);
            assert_eq!(conn.message_declarers("none")?, []);
        }
        Ok(())
    }

    #[test]
    fn a_buffered_message_is_taken_once_oldest_first_and_only_while_it_lives() -> Result<()> {
        for conn in dbs() {
            conn.buffer_message("paid", Some("k"), None, r#"{"n":1}"#, 1_000)?;
            conn.buffer_message("paid", Some("k"), Some("m2"), r#"{"n":2}"#, 5_000)?;
            conn.buffer_message("paid", None, None, r#"{"n":3}"#, 5_000)?;
            assert_eq!(
                conn.take_buffered("paid", Some("k"), 1_000)?.as_deref(),
                Some(r#"{"n":2}"#),
                "the first expired at 1000"
            );
            assert_eq!(
                conn.take_buffered("paid", Some("k"), 0)?.as_deref(),
                Some(r#"{"n":1}"#)
            );
            assert_eq!(conn.take_buffered("paid", Some("k"), 0)?, None, "each once");
            assert_eq!(conn.take_buffered("paid", Some("j"), 0)?, None);
            assert_eq!(
                conn.take_buffered("paid", None, 4_999)?.as_deref(),
                Some(r#"{"n":3}"#)
            );
        }
        Ok(())
    }

    #[test]
    fn a_remembered_message_id_is_a_duplicate_until_it_expires() -> Result<()> {
        for conn in dbs() {
            conn.remember_message("m1", 1_000)?;
            assert!(conn.seen_message("m1", 999)?);
            assert!(!conn.seen_message("m1", 1_000)?, "expired");
            assert!(!conn.seen_message("m2", 0)?);
            conn.remember_message("m1", 2_000)?;
            assert!(conn.seen_message("m1", 1_500)?, "remembered longer");
        }
        Ok(())
    }

    #[test]
    fn purging_deletes_expired_messages_and_ids_only() -> Result<()> {
        for conn in dbs() {
            conn.buffer_message("paid", None, None, "{}", 1_000)?;
            conn.buffer_message("paid", Some("k"), None, "{}", 3_000)?;
            conn.remember_message("m1", 1_000)?;
            conn.remember_message("m2", 3_000)?;
            assert_eq!(conn.purge_expired(999)?, 0);
            assert_eq!(conn.purge_expired(1_000)?, 2);
            assert_eq!(conn.purge_expired(1_000)?, 0);
            assert_eq!(
                conn.take_buffered("paid", None, 0)?,
                None,
                "gone, though it would be live at 0"
            );
            assert!(!conn.seen_message("m1", 0)?);
            assert!(conn.seen_message("m2", 2_000)?);
            assert!(conn.take_buffered("paid", Some("k"), 2_000)?.is_some());
        }
        Ok(())
    }

    #[test]
    fn an_incident_opened_then_closed_as_retried_leaves_the_open_list() -> Result<()> {
        for conn in dbs() {
            conn.open_incident(
                "1",
                4,
                "n4",
                "the timer failed",
                "2024-01-01T00:00:00+00:00",
            )?;
            let open = IncidentRow {
                instance_id: "1".into(),
                activity: 4,
                node: "n4".into(),
                message: "the timer failed".into(),
                attempts: 0,
                state: "open".into(),
                created_at: "2024-01-01T00:00:00+00:00".into(),
            };
            assert_eq!(conn.incidents(true, 10, 0)?, std::slice::from_ref(&open));

            conn.close_incident_retried("1", 4, "2024-01-02T00:00:00+00:00", Some("admin"))?;
            assert_eq!(conn.incidents(true, 10, 0)?, []);
            let retried = IncidentRow {
                state: "retried".into(),
                ..open.clone()
            };
            assert_eq!(
                conn.incidents(false, 10, 0)?,
                std::slice::from_ref(&retried)
            );
            assert_eq!(conn.instance_incidents("1")?, [retried]);
            let closed = || -> Result<(String, Option<String>)> {
                conn.query_row(
                    "SELECT closed_at, closed_by FROM incidents WHERE instance_id = '1' AND activity = 4",
                    &[],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            };
            let by_admin = (
                "2024-01-02T00:00:00+00:00".to_owned(),
                Some("admin".to_owned()),
            );
            assert_eq!(closed()?, by_admin);
            conn.close_incident_retried("1", 4, "2024-01-03T00:00:00+00:00", Some("bob"))?;
            assert_eq!(closed()?, by_admin, "a closed incident stays as it was");

            conn.open_incident(
                "1",
                4,
                "n4",
                "the timer failed",
                "2024-01-01T00:00:00+00:00",
            )?;
            assert_eq!(conn.incidents(true, 10, 0)?, [open], "renewed");
        }
        Ok(())
    }

    #[test]
    fn incidents_come_newest_first_and_page() -> Result<()> {
        for conn in dbs() {
            let incident = |activity| Action::Incident {
                activity,
                node: format!("n{activity}"),
                message: "boom".into(),
            };
            conn.record(
                &instance("1", 1),
                &[incident(ordo_runtime::ActivityInstanceId(1))],
                at(1_000),
                false,
            )?;
            conn.record(
                &instance("2", 1),
                &[incident(ordo_runtime::ActivityInstanceId(2))],
                at(2_000),
                false,
            )?;
            conn.record(
                &instance("1", 1),
                &[incident(ordo_runtime::ActivityInstanceId(3))],
                at(3_000),
                false,
            )?;
            conn.record(
                &instance("1", 1),
                &[Action::CloseIncident {
                    activity: ordo_runtime::ActivityInstanceId(3),
                    how: "resolved".into(),
                    actor: Some("admin".into()),
                }],
                at(4_000),
                false,
            )?;
            let keys = |rows: Vec<IncidentRow>| -> Vec<(String, u64, String)> {
                rows.into_iter()
                    .map(|i| (i.instance_id, i.activity, i.state))
                    .collect()
            };
            let row = |i: &str, a, s: &str| (i.to_owned(), a, s.to_owned());
            assert_eq!(
                keys(conn.incidents(false, 10, 0)?),
                [
                    row("1", 3, "resolved"),
                    row("2", 2, "open"),
                    row("1", 1, "open")
                ]
            );
            assert_eq!(
                keys(conn.incidents(true, 10, 0)?),
                [row("2", 2, "open"), row("1", 1, "open")]
            );
            assert_eq!(keys(conn.incidents(false, 1, 1)?), [row("2", 2, "open")]);
            assert_eq!(
                keys(conn.instance_incidents("1")?),
                [row("1", 3, "resolved"), row("1", 1, "open")]
            );
            assert_eq!(conn.instance_incidents("3")?, []);
        }
        Ok(())
    }
}
