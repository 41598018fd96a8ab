//! Task auto-assignment: who gets a lead (or a customer, an opportunity).
//!
//! Each strategy implements [`Strategy`]: given the record and the candidates
//! (the active members of a group, minus anyone excluded), it picks one person
//! and says why. [`assign`] runs a strategy, then its fallback, writes the new
//! owner (audited with the strategy's reason), logs the assignment, and tells
//! the assignee, all in the step's transaction. Strategies that keep state
//! (round robin's pointer) write it in the same transaction, so a rolled-back
//! step does not move the pointer.

use crate::notify::{self, Notice};
use crate::org;
use crate::records::{self, Kind, Why};
use chrono::{DateTime, Utc};
use ordo_engine::store::{self, Sql, SqlExt, params};
use serde_json::{Map, Value, json};
use std::hash::{Hash, Hasher};

/// What an assignment is about.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The record's kind.
    pub kind: &'static Kind,
    /// Its id.
    pub id: i64,
    /// Its fields (region, industry, grade are what rules match).
    pub fields: Map<String, Value>,
}

impl Subject {
    fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// Everything a strategy may look at.
#[derive(Debug)]
pub struct Context<'a> {
    /// The step's transaction.
    pub tx: &'a dyn Sql,
    /// The group to pick from, when the strategy needs one.
    pub group: Option<&'a str>,
    /// People not to pick (the previous owner on a reassignment).
    pub exclude: &'a [String],
    /// The record.
    pub subject: &'a Subject,
    /// The engine's clock.
    pub now: DateTime<Utc>,
    /// Seeds weighted random: the same step picks the same person on a retry.
    pub seed: u64,
}

impl Context<'_> {
    /// The active members of the group who are not excluded, by name.
    pub fn candidates(&self) -> Result<Vec<String>, String> {
        let Some(group) = self.group else {
            return Err("this strategy picks from a group: give `group`".into());
        };
        Ok(org::active_members(self.tx, group)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|p| !self.exclude.contains(p))
            .collect())
    }
}

/// Who was picked, and why (the reason is audited and shown to the assignee).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// The person.
    pub person: String,
    /// Why them.
    pub reason: String,
}

/// An assignment strategy.
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Its name, as processes give it (`round_robin`).
    fn name(&self) -> &'static str;
    /// Picks a person, or `None` when it has nobody to offer (the fallback runs).
    fn pick(&self, cx: &Context<'_>) -> Result<Option<Pick>, String>;
}

/// The strategies, by name.
pub fn strategy(name: &str) -> Result<&'static dyn Strategy, String> {
    const ALL: &[&dyn Strategy] = &[
        &RuleTable,
        &RoundRobin,
        &LeastBusy,
        &WeightedRandom,
        &Capacity,
    ];
    ALL.iter()
        .copied()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            format!(
                "`{name}` is not an assignment strategy; strategies are {}",
                ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
            )
        })
}

/// First matching rule of `crm_assignment_rules` (by position): region,
/// industry and grade must equal the record's where the rule gives them; the
/// rule names a person (taken if active and not excluded) or a group (round
/// robin within it).
#[derive(Debug)]
pub struct RuleTable;

/// A rule of the rule table.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Rule {
    /// Matches this region only.
    #[serde(default)]
    pub region: Option<String>,
    /// Matches this industry only.
    #[serde(default)]
    pub industry: Option<String>,
    /// Matches this grade only.
    #[serde(default)]
    pub grade: Option<String>,
    /// Gives the record to this person…
    #[serde(default)]
    pub person: Option<String>,
    /// …or to this group, round robin.
    #[serde(default)]
    pub group: Option<String>,
}

/// Replaces the rule table, in order.
pub fn set_rules(tx: &dyn Sql, rules: &[Rule]) -> Result<(), String> {
    for (i, r) in rules.iter().enumerate() {
        let n = i + 1;
        if r.person.is_some() == r.group.is_some() {
            return Err(format!(
                "rule {n}: give either `person` or `group`, not both or neither"
            ));
        }
        let closed = [
            ("region", &r.region, records::REGIONS),
            ("grade", &r.grade, records::GRADES),
        ];
        for (field, value, allowed) in closed {
            if let Some(v) = value
                && !allowed.contains(&v.as_str())
            {
                return Err(format!(
                    "rule {n}: `{field}` must be one of {}, not `{v}`",
                    allowed.join(", ")
                ));
            }
        }
        let db = |e: store::Error| e.to_string();
        if let Some(p) = &r.person
            && !org::is_active(tx, p).map_err(db)?
        {
            return Err(format!(
                "rule {n}: `{p}` is nobody active in the directory; name a salesperson who works here"
            ));
        }
        if let Some(g) = &r.group
            && org::active_members(tx, g).map_err(db)?.is_empty()
        {
            return Err(format!(
                "rule {n}: the group `{g}` has no active member, so nobody would get the record"
            ));
        }
    }
    let run = || -> store::Result<()> {
        tx.execute("DELETE FROM crm_assignment_rules", params![])?;
        for (i, r) in rules.iter().enumerate() {
            tx.execute(
                "INSERT INTO crm_assignment_rules (position, region, industry, grade, person, grp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![i + 1, r.region, r.industry, r.grade, r.person, r.group],
            )?;
        }
        Ok(())
    };
    run().map_err(|e| e.to_string())
}

/// The rule table, in order.
pub fn rules(tx: &dyn Sql) -> store::Result<Vec<Rule>> {
    tx.query_map(
        "SELECT region, industry, grade, person, grp FROM crm_assignment_rules ORDER BY position",
        params![],
        |r| {
            Ok(Rule {
                region: r.get(0)?,
                industry: r.get(1)?,
                grade: r.get(2)?,
                person: r.get(3)?,
                group: r.get(4)?,
            })
        },
    )
}

impl Strategy for RuleTable {
    fn name(&self) -> &'static str {
        "rule_table"
    }

    fn pick(&self, cx: &Context<'_>) -> Result<Option<Pick>, String> {
        let s = cx.subject;
        for (i, rule) in rules(cx.tx).map_err(|e| e.to_string())?.iter().enumerate() {
            let conds = [
                ("region", &rule.region),
                ("industry", &rule.industry),
                ("grade", &rule.grade),
            ];
            if !conds
                .iter()
                .all(|(k, want)| want.as_deref().is_none_or(|w| s.text(k) == Some(w)))
            {
                continue;
            }
            let matched: Vec<String> = conds
                .iter()
                .filter_map(|(k, w)| w.as_ref().map(|w| format!("{k} = {w}")))
                .collect();
            let why = if matched.is_empty() {
                format!("rule {} (any record)", i + 1)
            } else {
                format!("rule {} ({})", i + 1, matched.join(", "))
            };
            if let Some(person) = &rule.person {
                if org::is_active(cx.tx, person).map_err(|e| e.to_string())?
                    && !cx.exclude.contains(person)
                {
                    return Ok(Some(Pick {
                        person: person.clone(),
                        reason: why,
                    }));
                }
                continue;
            }
            if let Some(group) = &rule.group {
                let inner = Context {
                    group: Some(group),
                    ..*cx
                };
                if let Some(p) = RoundRobin.pick(&inner)? {
                    return Ok(Some(Pick {
                        person: p.person,
                        reason: format!("{why}, then {}", p.reason),
                    }));
                }
            }
        }
        Ok(None)
    }
}

/// The next active member after the last one picked in this group, by name; the
/// pointer is stored per group in `crm_round_robin`.
#[derive(Debug)]
pub struct RoundRobin;

impl Strategy for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn pick(&self, cx: &Context<'_>) -> Result<Option<Pick>, String> {
        let group = cx.group.unwrap_or_default();
        let people = cx.candidates()?;
        let last: Option<String> = cx
            .tx
            .query_opt(
                "SELECT last_person FROM crm_round_robin WHERE grp = ?1",
                params![group],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())?;
        let next = match &last {
            Some(l) => people.iter().find(|p| *p > l).or(people.first()),
            None => people.first(),
        };
        let Some(next) = next.cloned() else {
            return Ok(None);
        };
        cx.tx
            .execute(
                "INSERT INTO crm_round_robin (grp, last_person) VALUES (?1, ?2)
                 ON CONFLICT (grp) DO UPDATE SET last_person = excluded.last_person",
                params![group, &next],
            )
            .map_err(|e| e.to_string())?;
        let reason = match last {
            Some(l) => format!("round robin in {group}: next after {l}"),
            None => format!("round robin in {group}: first in turn"),
        };
        Ok(Some(Pick {
            person: next,
            reason,
        }))
    }
}

/// Open work per person: leads being worked and open opportunities they own.
pub fn open_work(tx: &dyn Sql, person: &str) -> store::Result<i64> {
    tx.query_row("SELECT (SELECT COUNT(*) FROM crm_leads WHERE owner = ?1 AND status IN ('new', 'assigned', 'in_process'))
              + (SELECT COUNT(*) FROM crm_opportunities WHERE owner = ?1 AND COALESCE(status, 'open') = 'open')", params![person], |r| r.get(0))
}

fn last_assigned(tx: &dyn Sql, person: &str) -> store::Result<Option<String>> {
    tx.query_row(
        "SELECT MAX(at) FROM crm_assignments WHERE person = ?1",
        params![person],
        |r| r.get(0),
    )
}

/// The candidate with the least open work; ties go to whoever was assigned
/// longest ago (never first), then by name.
#[derive(Debug)]
pub struct LeastBusy;

impl Strategy for LeastBusy {
    fn name(&self) -> &'static str {
        "least_busy"
    }

    fn pick(&self, cx: &Context<'_>) -> Result<Option<Pick>, String> {
        let mut loads = Vec::new();
        for p in cx.candidates()? {
            let work = open_work(cx.tx, &p).map_err(|e| e.to_string())?;
            let last = last_assigned(cx.tx, &p).map_err(|e| e.to_string())?;
            loads.push((work, last, p));
        }
        loads.sort();
        let Some((work, _, person)) = loads.first().cloned() else {
            return Ok(None);
        };
        let others: Vec<String> = loads
            .iter()
            .skip(1)
            .map(|(w, _, p)| format!("{p} {w}"))
            .collect();
        let reason = format!(
            "least busy in {}: {work} open{}",
            cx.group.unwrap_or_default(),
            if others.is_empty() {
                String::new()
            } else {
                format!(" (others: {})", others.join(", "))
            }
        );
        Ok(Some(Pick { person, reason }))
    }
}

fn weight(tx: &dyn Sql, person: &str) -> store::Result<i64> {
    Ok(tx
        .query_opt(
            "SELECT weight FROM crm_staff WHERE person = ?1",
            params![person],
            |r| r.get::<i64>(0),
        )?
        .unwrap_or(1)
        .max(0))
}

/// A candidate drawn with probability proportional to their weight
/// (`crm_staff.weight`, 1 when unset). The draw is seeded by the step, so a
/// retried step draws the same person.
#[derive(Debug)]
pub struct WeightedRandom;

impl Strategy for WeightedRandom {
    fn name(&self) -> &'static str {
        "weighted_random"
    }

    fn pick(&self, cx: &Context<'_>) -> Result<Option<Pick>, String> {
        let mut weighted = Vec::new();
        for p in cx.candidates()? {
            let w = weight(cx.tx, &p).map_err(|e| e.to_string())?;
            if w > 0 {
                weighted.push((p, w));
            }
        }
        let total: i64 = weighted.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Ok(None);
        }
        let mut ticket =
            i64::try_from(splitmix(cx.seed) % u64::try_from(total).unwrap_or(1)).unwrap_or(0);
        for (person, w) in weighted {
            if ticket < w {
                return Ok(Some(Pick {
                    reason: format!(
                        "weighted random in {}: weight {w} of {total}",
                        cx.group.unwrap_or_default()
                    ),
                    person,
                }));
            }
            ticket -= w;
        }
        Ok(None)
    }
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Candidates under their daily quota (`crm_staff.daily_capacity`, assignments
/// since midnight UTC; no quota when unset); the one with the most room left
/// relative to their quota, ties by name.
#[derive(Debug)]
pub struct Capacity;

impl Strategy for Capacity {
    fn name(&self) -> &'static str {
        "capacity"
    }

    fn pick(&self, cx: &Context<'_>) -> Result<Option<Pick>, String> {
        let day = cx.now.format("%Y-%m-%d").to_string();
        let mut open = Vec::new();
        for p in cx.candidates()? {
            let (cap, used): (Option<i64>, i64) = cx
                .tx
                .query_row(
                    "SELECT (SELECT daily_capacity FROM crm_staff WHERE person = ?1),
                            (SELECT COUNT(*) FROM crm_assignments WHERE person = ?1 AND substr(at, 1, 10) = ?2)", params![&p, &day],
                    |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| e.to_string())?;
            match cap {
                Some(c) if used >= c => {}
                // Ranked by share used (×1000, integer), unlimited counts as 0.
                Some(c) => open.push((used * 1000 / c.max(1), used, Some(c), p)),
                None => open.push((0, used, None, p)),
            }
        }
        open.sort();
        let Some((_, used, cap, person)) = open.into_iter().next() else {
            return Ok(None);
        };
        let quota = cap.map_or_else(|| "no quota".to_owned(), |c| format!("{used} of {c} today"));
        Ok(Some(Pick {
            person,
            reason: format!("capacity in {}: {quota}", cx.group.unwrap_or_default()),
        }))
    }
}

/// What `assign` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Assigned {
    /// The new owner.
    pub owner: String,
    /// Their supervisor.
    pub supervisor: Option<String>,
    /// The strategy that picked them.
    pub strategy: &'static str,
    /// Why.
    pub reason: String,
}

/// Assigns `subject` with `first`, then `fallback`: sets the owner (audited
/// with the reason), logs the assignment and notifies the assignee.
pub fn assign(
    cx: &Context<'_>,
    first: &dyn Strategy,
    fallback: Option<&dyn Strategy>,
    why: &Why,
    instance: Option<&str>,
) -> Result<Assigned, String> {
    let mut picked = None;
    for s in std::iter::once(first).chain(fallback) {
        if let Some(p) = s.pick(cx)? {
            picked = Some((s.name(), p));
            break;
        }
    }
    let Some((strategy, pick)) = picked else {
        return Err(format!(
            "nobody to assign {} {} to: {} found no active person{}",
            cx.subject.kind.name,
            cx.subject.id,
            std::iter::once(first)
                .chain(fallback)
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(" and "),
            cx.group
                .map(|g| format!(" in group {g}"))
                .unwrap_or_default()
        ));
    };
    let mut changes = Map::new();
    changes.insert("owner".into(), json!(pick.person));
    if cx.subject.kind.name == "lead" {
        changes.insert("status".into(), json!("assigned"));
    }
    if cx.subject.fields.get("in_pool").and_then(Value::as_bool) == Some(true) {
        changes.insert("in_pool".into(), json!(false));
    }
    let audited = Why {
        reason: format!("{strategy}: {}; {}", pick.reason, why.reason),
        ..why.clone()
    };
    records::update(cx.tx, cx.subject.kind, cx.subject.id, &changes, &audited)
        .map_err(|e| e.to_string())?;
    let assignment: i64 = cx
        .tx
        .query_row(
            "INSERT INTO crm_assignments (record, record_id, person, strategy, reason, at, instance)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            params![cx.subject.kind.name, cx.subject.id, pick.person, strategy, pick.reason, cx.now.to_rfc3339(), instance],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    let mut data = Map::new();
    data.insert("reason".into(), json!(pick.reason));
    data.insert("strategy".into(), json!(strategy));
    notify::notify(
        cx.tx,
        &Notice {
            template: "assigned",
            event: format!("assignment:{assignment}"),
            to: vec![pick.person.clone()],
            about: Some((cx.subject.kind, cx.subject.id)),
            data,
        },
        why,
    )
    .map_err(|e| e.to_string())?;
    Ok(Assigned {
        supervisor: org::supervisor_of(cx.tx, &pick.person).map_err(|e| e.to_string())?,
        owner: pick.person,
        strategy,
        reason: pick.reason,
    })
}

/// A seed from the step: the same step (instance, node, record) draws the same.
pub fn seed(parts: &[&str]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}
