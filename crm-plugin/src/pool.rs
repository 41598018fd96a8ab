//! The public pool (the "isolation area"): customers and leads nobody owns,
//! which any salesperson may claim within limits.
//!
//! Records go there when a salesperson gives them up, when nobody followed a
//! customer up for N days (N by grade), when a lead's contact deadline was
//! missed twice, or when their salesperson leaves. Customers that are won,
//! locked (an approval is pending) or have an open opportunity are exempt from
//! the automatic reclaim. Claims are limited per person per day, by the number
//! of customers a person may hold, and the previous owner waits a cooldown
//! before claiming a customer back.

use crate::notify::{self, Notice};
use crate::records::{self, Why};
use chrono::{DateTime, Duration, Utc};
use ordo_engine::store::{self, Sql, SqlExt, params};
use serde_json::{Map, Value, json};

/// The pool's rules; kept in `crm_settings`, these are the defaults.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Rules {
    /// Claims per person per day.
    pub claims_per_day: i64,
    /// Customers one person may own at most.
    pub max_customers: i64,
    /// Days before a previous owner may claim a customer back.
    pub cooldown_days: i64,
    /// Days without a follow-up before an ordinary customer is reclaimed.
    pub reclaim_days_ordinary: i64,
    /// Days without a follow-up before a VIP customer is reclaimed.
    pub reclaim_days_vip: i64,
    /// Days before the reclaim that the owner is reminded.
    pub reminder_days: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            claims_per_day: 5,
            max_customers: 200,
            cooldown_days: 7,
            reclaim_days_ordinary: 30,
            reclaim_days_vip: 60,
            reminder_days: 3,
        }
    }
}

/// The pool's rules as set (defaults for what is not).
pub fn rules(tx: &dyn Sql) -> store::Result<Rules> {
    let stored: Option<String> = tx.query_opt(
        "SELECT value FROM crm_settings WHERE key = 'pool'",
        params![],
        |r| r.get(0),
    )?;
    Ok(stored
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

/// Sets the pool's rules.
pub fn set_rules(tx: &dyn Sql, rules: &Rules) -> store::Result<()> {
    let text = serde_json::to_string(rules).unwrap_or_default();
    tx.execute(
        "INSERT INTO crm_settings (key, value) VALUES ('pool', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![text],
    )?;
    Ok(())
}

fn kind(name: &str) -> Result<&'static records::Kind, String> {
    match name {
        "customer" | "lead" => records::kind(name).map_err(|e| e.to_string()),
        other => Err(format!(
            "only customers and leads go to the pool, not a {other}"
        )),
    }
}

/// Moves a customer or lead to the pool: no owner, the previous one kept.
pub fn move_to_pool(
    tx: &dyn Sql,
    record: &str,
    id: i64,
    reason: &str,
    why: &Why,
) -> Result<Map<String, Value>, String> {
    let k = kind(record)?;
    let now = records::get(tx, k, id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("there is no {record} {id}"))?;
    if now.get("in_pool").and_then(Value::as_bool) == Some(true) {
        return Ok(now);
    }
    let mut changes = Map::new();
    changes.insert("in_pool".into(), json!(true));
    changes.insert("pool_since".into(), json!(why.at.to_rfc3339()));
    changes.insert(
        "previous_owner".into(),
        now.get("owner").cloned().unwrap_or(Value::Null),
    );
    changes.insert("owner".into(), Value::Null);
    if record == "lead" {
        changes.insert("status".into(), json!("recycled"));
    }
    let why = Why {
        reason: format!("to the pool ({reason}); {}", why.reason),
        ..why.clone()
    };
    records::update(tx, k, id, &changes, &why).map_err(|e| e.to_string())
}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not in the pool (someone else claimed it first, or it never was).
    #[error("{0} {1} is not in the pool (someone may have claimed it first)")]
    NotInPool(&'static str, i64),
    /// The daily claim limit.
    #[error("{person} has claimed {count} records today; the limit is {limit} a day")]
    DailyLimit {
        /// Who.
        person: String,
        /// Claimed today.
        count: i64,
        /// The limit.
        limit: i64,
    },
    /// The most customers one may own.
    #[error("{person} already owns {count} customers; the most one may own is {limit}")]
    TooMany {
        /// Who.
        person: String,
        /// Owned.
        count: i64,
        /// The limit.
        limit: i64,
    },
    /// The previous owner's cooldown.
    #[error("{person} gave this {record} up on {since}; they may claim it back after {until}")]
    Cooldown {
        /// Who.
        person: String,
        /// The kind.
        record: &'static str,
        /// When it went to the pool.
        since: String,
        /// When the cooldown ends.
        until: String,
    },
    /// Something else (storage, unknown record).
    #[error("{0}")]
    Other(String),
}

/// Claims a pool record for `person`, within the pool's limits.
pub fn claim(
    tx: &dyn Sql,
    record: &str,
    id: i64,
    person: &str,
    why: &Why,
) -> Result<Map<String, Value>, Refused> {
    let other = |e: String| Refused::Other(e);
    let k = kind(record).map_err(other)?;
    let rules = rules(tx).map_err(|e| other(e.to_string()))?;
    let now = records::get(tx, k, id)
        .map_err(|e| other(e.to_string()))?
        .ok_or_else(|| Refused::Other(format!("there is no {record} {id}")))?;
    if now.get("in_pool").and_then(Value::as_bool) != Some(true) {
        return Err(Refused::NotInPool(k.name, id));
    }
    let day = why.at.format("%Y-%m-%d").to_string();
    let count = |sql: &str, p: store::sql::Params<'_>| -> Result<i64, Refused> {
        tx.query_row(sql, p, |r| r.get(0))
            .map_err(|e| other(e.to_string()))
    };
    let today = count(
        "SELECT COUNT(*) FROM crm_pool_claims WHERE person = ?1 AND substr(at, 1, 10) = ?2",
        &[&person, &day],
    )?;
    if today >= rules.claims_per_day {
        return Err(Refused::DailyLimit {
            person: person.into(),
            count: today,
            limit: rules.claims_per_day,
        });
    }
    if record == "customer" {
        let owned = count(
            "SELECT COUNT(*) FROM crm_customers WHERE owner = ?1",
            &[&person],
        )?;
        if owned >= rules.max_customers {
            return Err(Refused::TooMany {
                person: person.into(),
                count: owned,
                limit: rules.max_customers,
            });
        }
    }
    if now.get("previous_owner").and_then(Value::as_str) == Some(person)
        && let Some(since) = now.get("pool_since").and_then(Value::as_str)
        && let Ok(t) = DateTime::parse_from_rfc3339(since)
    {
        let until = t.with_timezone(&Utc) + Duration::days(rules.cooldown_days);
        if why.at < until {
            return Err(Refused::Cooldown {
                person: person.into(),
                record: k.name,
                since: since.into(),
                until: until.to_rfc3339(),
            });
        }
    }
    let mut changes = Map::new();
    changes.insert("in_pool".into(), json!(false));
    changes.insert("owner".into(), json!(person));
    if record == "lead" {
        changes.insert("status".into(), json!("assigned"));
    }
    let audited = Why {
        actor: Some(person.to_owned()),
        reason: format!("claimed from the pool; {}", why.reason),
        ..why.clone()
    };
    let after = records::update(tx, k, id, &changes, &audited).map_err(|e| other(e.to_string()))?;
    tx.execute(
        "INSERT INTO crm_pool_claims (person, record, record_id, at) VALUES (?1, ?2, ?3, ?4)",
        params![person, k.name, id, why.at.to_rfc3339()],
    )
    .map_err(|e| other(e.to_string()))?;
    Ok(after)
}

/// What a reclaim pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reclaimed {
    /// Customers moved to the pool.
    pub moved: Vec<i64>,
    /// Customers whose owner was reminded.
    pub reminded: Vec<i64>,
}

/// Moves customers nobody followed up for their grade's number of days to the
/// pool, and reminds the owners of those `reminder_days` from it. Exempt: won
/// (a won opportunity), locked, or with an open opportunity.
pub fn reclaim_stale(tx: &dyn Sql, why: &Why) -> Result<Reclaimed, String> {
    let rules = rules(tx).map_err(|e| e.to_string())?;
    let mut out = Reclaimed::default();
    let candidates: Vec<(i64, String, String, String)> = {
        tx.query_map(
                "SELECT c.id, c.grade, COALESCE(c.last_contact_at, c.created_at), c.owner FROM crm_customers c
                 WHERE c.in_pool = 0 AND c.owner IS NOT NULL AND c.locked = 0
                 AND NOT EXISTS (SELECT 1 FROM crm_opportunities o WHERE o.customer_id = c.id
                                 AND COALESCE(o.status, 'open') IN ('open', 'won'))
                 ORDER BY c.id",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(|e| e.to_string())?
    };
    let customer = records::kind("customer").map_err(|e| e.to_string())?;
    for (id, grade, last, owner) in candidates {
        let days = if grade == "vip" {
            rules.reclaim_days_vip
        } else {
            rules.reclaim_days_ordinary
        };
        let Some(last) = parse_time(&last) else {
            continue;
        };
        let due = last + Duration::days(days);
        if why.at >= due {
            let reason = format!("no follow-up for {days} days ({grade})");
            move_to_pool(tx, "customer", id, &reason, why)?;
            let mut data = Map::new();
            data.insert("reason".into(), json!(reason));
            notify::notify(
                tx,
                &Notice {
                    template: "pool_reclaimed",
                    event: format!("reclaimed:{id}:{}", due.date_naive()),
                    to: vec![owner],
                    about: Some((customer, id)),
                    data,
                },
                why,
            )
            .map_err(|e| e.to_string())?;
            out.moved.push(id);
        } else if why.at >= due - Duration::days(rules.reminder_days) {
            let mut data = Map::new();
            data.insert("days".into(), json!((due - why.at).num_days().max(1)));
            notify::notify(
                tx,
                // One reminder per customer per deadline.
                &Notice {
                    template: "pool_reminder",
                    event: format!("pool-reminder:{id}:{}", due.date_naive()),
                    to: vec![owner],
                    about: Some((customer, id)),
                    data,
                },
                why,
            )
            .map_err(|e| e.to_string())?;
            out.reminded.push(id);
        }
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}

/// A salesperson leaves: marked inactive (no more assignments), their
/// customers and open leads go to the pool. Records are never deleted.
pub fn release(tx: &dyn Sql, person: &str, why: &Why) -> Result<Vec<(String, i64)>, String> {
    tx.execute(
        "INSERT INTO crm_staff (person, active, left_at) VALUES (?1, 0, ?2)
         ON CONFLICT (person) DO UPDATE SET active = 0, left_at = excluded.left_at",
        params![person, &why.at.to_rfc3339()],
    )
    .map_err(|e| e.to_string())?;
    let mut moved = Vec::new();
    for (record, sql) in [
        (
            "customer",
            "SELECT id FROM crm_customers WHERE owner = ?1 AND in_pool = 0 AND locked = 0 ORDER BY id",
        ),
        (
            "lead",
            "SELECT id FROM crm_leads WHERE owner = ?1 AND status IN ('new', 'assigned', 'in_process') ORDER BY id",
        ),
    ] {
        let ids: Vec<i64> = {
            tx.query_map(sql, params![person], |r| r.get(0))
                .map_err(|e| e.to_string())?
        };
        for id in ids {
            move_to_pool(tx, record, id, &format!("{person} left"), why)?;
            moved.push((record.to_owned(), id));
        }
    }
    Ok(moved)
}
