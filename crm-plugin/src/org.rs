//! The sales organisation as the CRM sees it: who is in which group, who
//! supervises whom (the people directory the server keeps in the same file:
//! tables `people` and `memberships`), and the CRM's own facts about each
//! salesperson (`crm_staff`: still active, e-mail address, weight for weighted
//! assignment, daily capacity).
//!
//! A person without a `crm_staff` row is active, has weight 1, no capacity limit
//! and no e-mail address (in-app notifications only).

use ordo_engine::store::{self, Sql, SqlExt, params};

/// The active members of a group, by name.
pub fn active_members(tx: &dyn Sql, group: &str) -> store::Result<Vec<String>> {
    tx.query_map(
        "SELECT m.person FROM memberships m
         LEFT JOIN crm_staff s ON s.person = m.person
         WHERE m.grp = ?1 AND COALESCE(s.active, 1) = 1
         ORDER BY m.person",
        params![group],
        |r| r.get(0),
    )
}

/// The active people who hold a role (`admin`), by name.
pub fn with_role(tx: &dyn Sql, role: &str) -> store::Result<Vec<String>> {
    tx.query_map(
        "SELECT p.name FROM people p LEFT JOIN crm_staff s ON s.person = p.name
         WHERE (',' || p.roles || ',') LIKE '%,' || ?1 || ',%' AND COALESCE(s.active, 1) = 1
         ORDER BY p.name",
        params![role],
        |r| r.get(0),
    )
}

/// Whether a person is known to the directory and still active.
pub fn is_active(tx: &dyn Sql, person: &str) -> store::Result<bool> {
    tx.query_opt(
        "SELECT 1 FROM people p LEFT JOIN crm_staff s ON s.person = p.name
         WHERE p.name = ?1 AND COALESCE(s.active, 1) = 1",
        params![person],
        |_| Ok(()),
    )
    .map(|r| r.is_some())
}

/// A person's supervisor.
pub fn supervisor_of(tx: &dyn Sql, person: &str) -> store::Result<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT supervisor FROM people WHERE name = ?1",
            params![person],
            |r| r.get::<Option<String>>(0),
        )?
        .flatten())
}

/// Whether the CRM marked a person as gone (`active = 0`: left the company).
pub fn has_left(tx: &dyn Sql, person: &str) -> store::Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT active FROM crm_staff WHERE person = ?1",
            params![person],
            |r| r.get::<bool>(0),
        )?
        .is_some_and(|active| !active))
}

/// The nearest supervisor up the tree who has not left (a supervisor who left
/// is passed over for theirs).
pub fn nearest_supervisor(tx: &dyn Sql, person: &str) -> store::Result<Option<String>> {
    let mut at = person.to_owned();
    // The tree is at most a few levels deep; the bound stops a cycle.
    for _ in 0..32 {
        match supervisor_of(tx, &at)? {
            Some(s) if s == person => return Ok(None),
            Some(s) if has_left(tx, &s)? => at = s,
            found => return Ok(found),
        }
    }
    Ok(None)
}

/// Everyone below a supervisor in the reporting line, at any depth (the people
/// they lead, the people those lead, …), by name. A director sees her whole
/// organisation, not only her direct reports.
pub fn team_of(tx: &dyn Sql, supervisor: &str) -> store::Result<Vec<String>> {
    tx.query_map(
        "WITH RECURSIVE team(name, depth) AS (
             SELECT name, 1 FROM people WHERE supervisor = ?1
             UNION
             SELECT p.name, t.depth + 1 FROM people p JOIN team t ON p.supervisor = t.name
             WHERE t.depth < 64
         )
         SELECT DISTINCT name FROM team WHERE name != ?1 ORDER BY name",
        params![supervisor],
        |r| r.get(0),
    )
}

/// A person's e-mail address, when the CRM knows one.
pub fn email_of(tx: &dyn Sql, person: &str) -> store::Result<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT email FROM crm_staff WHERE person = ?1",
            params![person],
            |r| r.get::<Option<String>>(0),
        )?
        .flatten())
}

/// The CRM's facts about a salesperson.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Staff {
    /// The person (as in the directory; the API takes it from the path).
    #[serde(default)]
    pub person: String,
    /// Where e-mail notifications go.
    #[serde(default)]
    pub email: Option<String>,
    /// Relative share under weighted-random assignment (1 when unset).
    #[serde(default = "one")]
    pub weight: i64,
    /// Most assignments per day under the capacity strategy (no limit when unset).
    #[serde(default)]
    pub daily_capacity: Option<i64>,
    /// Still working here.
    #[serde(default = "yes")]
    pub active: bool,
}

const fn one() -> i64 {
    1
}

const fn yes() -> bool {
    true
}

/// A change to a salesperson's CRM facts: only the fields sent change; `null`
/// clears the e-mail address or the daily capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffChange {
    /// Where e-mail notifications go (`null`: nowhere).
    #[serde(default, deserialize_with = "present")]
    pub email: Option<Option<String>>,
    /// Relative share under weighted-random assignment.
    #[serde(default)]
    pub weight: Option<i64>,
    /// Most assignments per day (`null`: no limit).
    #[serde(default, deserialize_with = "present")]
    pub daily_capacity: Option<Option<i64>>,
    /// Still working here.
    #[serde(default)]
    pub active: Option<bool>,
}

/// A field that was sent, even as `null` (`Some(None)`), apart from one left out
/// (`None`, by `#[serde(default)]`).
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// A salesperson's CRM facts as stored (the defaults without a row).
pub fn staff(tx: &dyn Sql, person: &str) -> store::Result<Staff> {
    Ok(tx
        .query_opt(
            "SELECT email, weight, daily_capacity, active FROM crm_staff WHERE person = ?1",
            params![person],
            |r| {
                Ok(Staff {
                    person: person.to_owned(),
                    email: r.get(0)?,
                    weight: r.get::<Option<i64>>(1)?.unwrap_or(1),
                    daily_capacity: r.get(2)?,
                    active: r.get::<Option<bool>>(3)?.unwrap_or(true),
                })
            },
        )?
        .unwrap_or(Staff {
            person: person.to_owned(),
            email: None,
            weight: 1,
            daily_capacity: None,
            active: true,
        }))
}

impl Staff {
    /// These facts with `change` applied: what was not sent keeps its value.
    pub fn with(mut self, change: StaffChange) -> Staff {
        if let Some(email) = change.email {
            self.email = email;
        }
        if let Some(weight) = change.weight {
            self.weight = weight;
        }
        if let Some(cap) = change.daily_capacity {
            self.daily_capacity = cap;
        }
        if let Some(active) = change.active {
            self.active = active;
        }
        self
    }
}

/// Creates or replaces a salesperson's CRM facts.
pub fn set_staff(tx: &dyn Sql, s: &Staff) -> store::Result<()> {
    tx.execute(
        "INSERT INTO crm_staff (person, active, email, weight, daily_capacity)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (person) DO UPDATE SET active = excluded.active, email = excluded.email,
           weight = excluded.weight, daily_capacity = excluded.daily_capacity",
        params![
            s.person,
            s.active,
            s.email,
            s.weight.max(0),
            s.daily_capacity
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_change_keeps_what_it_does_not_send_and_null_clears() {
        let before = Staff {
            person: "sam".into(),
            email: Some("sam@sales.example".into()),
            weight: 3,
            daily_capacity: Some(5),
            active: true,
        };
        let leave: StaffChange = serde_json::from_str(r#"{"active": false}"#).unwrap();
        let after = before.clone().with(leave);
        assert_eq!(
            after,
            Staff {
                active: false,
                ..before.clone()
            }
        );
        let clear: StaffChange =
            serde_json::from_str(r#"{"email": null, "daily_capacity": null}"#).unwrap();
        let after = before.clone().with(clear);
        assert_eq!((after.email, after.daily_capacity), (None, None));
        assert_eq!(after.weight, 3);
        assert!(serde_json::from_str::<StaffChange>(r#"{"mail": "x"}"#).is_err());
    }
}
