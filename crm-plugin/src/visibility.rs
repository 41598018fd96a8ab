//! Who sees which records, in one place: every list, count, search and export of
//! the CRM goes through [`list`] (or [`visible`] for one record), which adds the
//! caller's scope to the query. The four levels of the source documents:
//! a salesperson sees their own records, a supervisor their team's (and their
//! own), an admin everyone's, maintenance nobody's (they may only back up).

use crate::records::{self, Kind};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use ordo_engine::store::sql::param_refs;
use ordo_engine::store::{self, Sql, SqlExt, Value as SqlValue, params};
use ordo_server::auth::{Identity, Role};
use serde_json::{Map, Value};

/// The records a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    All,
    /// Records owned by these people.
    Owners(Vec<String>),
    /// Nothing.
    Nothing,
}

impl Scope {
    /// The caller's scope: the widest their roles give.
    pub fn of(tx: &dyn Sql, who: &Identity) -> store::Result<Scope> {
        if who.roles.contains(&Role::Admin) {
            return Ok(Scope::All);
        }
        if who.roles.contains(&Role::Supervisor) {
            let mut people = crate::org::team_of(tx, &who.user)?;
            people.push(who.user.clone());
            return Ok(Scope::Owners(people));
        }
        if who.roles.contains(&Role::Salesperson) {
            return Ok(Scope::Owners(vec![who.user.clone()]));
        }
        Ok(Scope::Nothing)
    }

    /// Whether the caller may see records at all (the pool, pipeline totals).
    pub fn sees_records(&self) -> bool {
        !matches!(self, Scope::Nothing)
    }

    /// Whether a record owned by `owner` is in scope.
    pub fn covers(&self, owner: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Owners(people) => owner.is_some_and(|o| people.iter().any(|p| p == o)),
            Scope::Nothing => false,
        }
    }

    fn clause(&self, alias: &str) -> (String, Vec<SqlValue>) {
        match self {
            Scope::All => ("1 = 1".into(), Vec::new()),
            Scope::Nothing => ("0 = 1".into(), Vec::new()),
            Scope::Owners(people) => (
                format!(
                    "{alias}.owner IN ({})",
                    vec!["?"; people.len().max(1)].join(", ")
                ),
                if people.is_empty() {
                    vec![SqlValue::Null]
                } else {
                    people.iter().map(|p| SqlValue::Text(p.clone())).collect()
                },
            ),
        }
    }
}

/// A time window the daily queries use, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Today.
    Today,
    /// This week (Monday to Sunday).
    Week,
    /// This month.
    Month,
}

/// The office's time zone: "today" and "this week" are the office's days. Kept
/// in `crm_settings` (`time_zone`); UTC until an admin sets it.
pub fn office_zone(tx: &dyn Sql) -> store::Result<Tz> {
    let name: Option<String> = tx.query_opt(
        "SELECT value FROM crm_settings WHERE key = 'time_zone'",
        params![],
        |r| r.get(0),
    )?;
    Ok(name.and_then(|n| n.parse().ok()).unwrap_or(Tz::UTC))
}

/// Sets the office's time zone (an IANA name such as `Asia/Shanghai`).
pub fn set_office_zone(tx: &dyn Sql, name: &str) -> Result<Tz, String> {
    let tz: Tz = name.parse().map_err(|_| {
        format!(
            "`{name}` is not a time zone; use an IANA name such as Asia/Shanghai or Europe/Paris"
        )
    })?;
    tx.execute(
        "INSERT INTO crm_settings (key, value) VALUES ('time_zone', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![tz.name()],
    )
    .map_err(|e| e.to_string())?;
    Ok(tz)
}

/// The office's local midnight of `day`, in UTC (the first valid instant of the
/// day when a clock change skips midnight).
fn midnight(tz: Tz, day: NaiveDate) -> String {
    let start = (0..24)
        .find_map(|h| {
            tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?)
                .earliest()
        })
        .map_or_else(
            || day.and_time(NaiveTime::MIN).and_utc(),
            |t| t.with_timezone(&Utc),
        );
    start.to_rfc3339()
}

impl Window {
    /// The window around `now` in the office's zone: `(from_day, to_day,
    /// from_instant, to_instant)`, each `[from, to)`. Days compare with values
    /// stored as dates, instants (UTC, RFC 3339) with values stored as times.
    pub fn range(self, now: DateTime<Utc>, tz: Tz) -> (String, String, String, String) {
        let day = now.with_timezone(&tz).date_naive();
        let (from, to) = match self {
            Window::Today => (day, day + Duration::days(1)),
            Window::Week => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (monday, monday + Duration::days(7))
            }
            Window::Month => {
                let first = day.with_day(1).unwrap_or(day);
                let next = if first.month() == 12 {
                    first
                        .with_year(first.year() + 1)
                        .and_then(|d| d.with_month(1))
                } else {
                    first.with_month(first.month() + 1)
                };
                (first, next.unwrap_or(first + Duration::days(31)))
            }
        };
        (
            from.to_string(),
            to.to_string(),
            midnight(tz, from),
            midnight(tz, to),
        )
    }
}

/// Filters of a list; each is optional. Fields a kind does not have are refused.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Free text over name, phone, e-mail and company (customers, leads, contacts).
    pub q: Option<String>,
    /// Owned by.
    pub owner: Option<String>,
    /// Customer type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Grade.
    pub grade: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Status (leads, opportunities, orders, contracts, …).
    pub status: Option<String>,
    /// Stage (opportunities).
    pub stage: Option<String>,
    /// Of this customer (records linked to one: contacts, opportunities, …).
    pub customer_id: Option<i64>,
    /// Last contact in this window.
    pub contacted: Option<Window>,
    /// Next contact planned in this window.
    pub to_visit: Option<Window>,
    /// Created in this window.
    pub added: Option<Window>,
    /// 1-based page.
    pub page: Option<u32>,
    /// Rows per page (at most 200; 50 by default).
    pub per_page: Option<u32>,
}

/// Most rows per page.
pub const MAX_PER_PAGE: u32 = 200;

/// A page of records.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Page {
    /// All rows matching, over every page.
    pub total: i64,
    /// This page.
    pub page: u32,
    /// Rows per page.
    pub per_page: u32,
    /// The rows.
    #[schemars(with = "Vec<crate::http::Record>")]
    pub items: Vec<Map<String, Value>>,
}

fn has(kind: &Kind, field: &str) -> bool {
    kind.fields.iter().any(|f| f.name == field)
}

/// Lists the records of `kind` the scope covers that match `filter`, newest
/// first; records in the pool are listed by [`pool`]. `paged: false` returns
/// every row (exports), still scoped.
pub fn list(
    tx: &dyn Sql,
    scope: &Scope,
    kind: &'static Kind,
    filter: &Filter,
    now: DateTime<Utc>,
    paged: bool,
) -> Result<Page, String> {
    if !has(kind, "owner") {
        return Err(format!(
            "{} records are listed through their parent record",
            kind.name
        ));
    }
    let (scope_sql, mut args) = scope.clause("r");
    let mut wheres = vec![scope_sql];
    conditions(tx, kind, filter, now, &mut wheres, &mut args)?;
    if has(kind, "in_pool") {
        wheres.push("r.in_pool = 0".into());
    }
    select_page(tx, kind, &wheres, &args, "r.id DESC", filter, paged)
}

/// The filter's conditions on `r`, for [`list`] and [`pool`].
fn conditions(
    tx: &dyn Sql,
    kind: &Kind,
    filter: &Filter,
    now: DateTime<Utc>,
    wheres: &mut Vec<String>,
    args: &mut Vec<SqlValue>,
) -> Result<(), String> {
    let tz = office_zone(tx).map_err(|e| e.to_string())?;
    let mut eq = |field: &str, v: &Option<String>| -> Result<(), String> {
        if let Some(v) = v {
            if !has(kind, field) {
                return Err(format!(
                    "{} records have no `{field}` to filter by",
                    kind.name
                ));
            }
            wheres.push(format!("r.{field} = ?"));
            args.push(SqlValue::Text(v.clone()));
        }
        Ok(())
    };
    eq("owner", &filter.owner)?;
    eq("type", &filter.kind)?;
    eq("grade", &filter.grade)?;
    eq("region", &filter.region)?;
    eq("status", &filter.status)?;
    eq("stage", &filter.stage)?;
    if let Some(id) = filter.customer_id {
        if !has(kind, "customer_id") {
            return Err(format!(
                "{} records are not linked to a customer",
                kind.name
            ));
        }
        wheres.push("r.customer_id = ?".into());
        args.push(SqlValue::Integer(id));
    }
    for (column, window) in [
        ("last_contact_at", filter.contacted),
        ("next_contact_at", filter.to_visit),
        ("created_at", filter.added),
    ] {
        let Some(w) = window else { continue };
        if column != "created_at" && !has(kind, column) {
            return Err(format!("{} records have no `{column}`", kind.name));
        }
        let (from_day, to_day, from, to) = w.range(now, tz);
        wheres.push(format!(
            "(CASE WHEN length(r.{column}) = 10 THEN r.{column} >= ? AND r.{column} < ? \
              ELSE r.{column} >= ? AND r.{column} < ? END)"
        ));
        args.extend([from_day, to_day, from, to].map(SqlValue::Text));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let searchable: Vec<&str> = ["name", "company", "phone", "email"]
            .into_iter()
            .filter(|f| has(kind, f))
            .collect();
        if searchable.is_empty() {
            return Err(format!("{} records have no text to search", kind.name));
        }
        let like = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let mut ors: Vec<String> = searchable
            .iter()
            // LOWER on both sides: SQLite's LIKE ignores ASCII case and
            // PostgreSQL's does not; this reads the same on both.
            .map(|f| format!("LOWER(r.{f}) LIKE LOWER(?) ESCAPE '\\'"))
            .collect();
        args.extend(searchable.iter().map(|_| SqlValue::Text(like.clone())));
        if has(kind, "phone")
            && let Some(digits) = records::phone_key(q)
        {
            ors.push("r.phone_key LIKE ?".into());
            args.push(SqlValue::Text(format!("%{digits}%")));
        }
        wheres.push(format!("({})", ors.join(" OR ")));
    }
    Ok(())
}

/// Counts the rows matching `wheres` and reads one page of them (all when not
/// `paged`), in `order`.
fn select_page(
    tx: &dyn Sql,
    kind: &'static Kind,
    wheres: &[String],
    args: &[SqlValue],
    order: &str,
    filter: &Filter,
    paged: bool,
) -> Result<Page, String> {
    let where_sql = wheres.join(" AND ");
    let total: i64 = tx
        .query_row(
            &format!("SELECT COUNT(*) FROM {} r WHERE {where_sql}", kind.table),
            &param_refs(args),
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    let per_page = filter.per_page.unwrap_or(50).clamp(1, MAX_PER_PAGE);
    let page = filter.page.unwrap_or(1).max(1);
    let limit = if paged {
        // In 64 bits: a page number near u32::MAX must not overflow (it is
        // simply past the end, and the page comes back empty).
        format!(
            " LIMIT {per_page} OFFSET {}",
            (u64::from(page) - 1) * u64::from(per_page)
        )
    } else {
        String::new()
    };
    let items = records::select(
        tx,
        kind,
        &format!("WHERE {where_sql} ORDER BY {order}{limit}"),
        args,
    )
    .map_err(|e| e.to_string())?;
    Ok(Page {
        total,
        page,
        per_page,
        items,
    })
}

/// One record, if the scope covers it (records in the pool: any scope that sees
/// records).
pub fn visible(
    tx: &dyn Sql,
    scope: &Scope,
    kind: &'static Kind,
    id: i64,
) -> Result<Option<Map<String, Value>>, String> {
    let Some(r) = records::get(tx, kind, id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let in_pool = r.get("in_pool").and_then(Value::as_bool) == Some(true);
    let owner = r.get("owner").and_then(Value::as_str);
    Ok((scope.covers(owner) || (in_pool && scope.sees_records())).then_some(r))
}

/// The pool: customers and leads nobody owns, longest waiting first, with the
/// same filters as [`list`]. Visible to everyone who sees records (that is what
/// it is for), never to maintenance.
pub fn pool(
    tx: &dyn Sql,
    scope: &Scope,
    kind: &'static Kind,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Page, String> {
    if !scope.sees_records() {
        return Ok(Page {
            total: 0,
            page: 1,
            per_page: 0,
            items: Vec::new(),
        });
    }
    let mut wheres = vec!["r.in_pool = 1".to_owned()];
    let mut args = Vec::new();
    conditions(tx, kind, filter, now, &mut wheres, &mut args)?;
    select_page(tx, kind, &wheres, &args, "r.pool_since, r.id", filter, true)
}

/// Receivable plans in scope, each with its payment state (derived from the
/// payments, never stored) under `payment`.
pub fn receivables(
    tx: &dyn Sql,
    scope: &Scope,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Page, String> {
    let mut page = list(
        tx,
        scope,
        records::kind("receivable_plan").map_err(|e| e.to_string())?,
        filter,
        now,
        true,
    )?;
    for plan in &mut page.items {
        let id = plan.get("id").and_then(Value::as_i64).unwrap_or_default();
        let state = crate::actions::payment_state(tx, id)?;
        plan.insert(
            "payment".into(),
            serde_json::to_value(state).map_err(|e| e.to_string())?,
        );
    }
    Ok(page)
}

/// One stage of the pipeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Stage {
    /// The stage.
    pub stage: String,
    /// Open opportunities in it.
    pub count: i64,
    /// Their amounts.
    pub amount: f64,
    /// Amount × probability.
    pub weighted: f64,
}

/// Open opportunities by stage, with amounts, in scope.
pub fn pipeline(tx: &dyn Sql, scope: &Scope) -> Result<Vec<Stage>, String> {
    let (scope_sql, args) = scope.clause("r");
    let rows: Vec<(String, i64, i64, i64)> = tx
        .query_map(
            &format!(
            "SELECT COALESCE(r.stage, 'qualification'), COUNT(*), COALESCE(SUM(r.amount_cents), 0),
                    COALESCE(SUM(r.amount_cents * COALESCE(r.probability, 10)), 0)
             FROM crm_opportunities r WHERE {scope_sql} AND COALESCE(r.status, 'open') = 'open'
             GROUP BY 1"
            ),
            &param_refs(&args),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map_err(|e| e.to_string())?;
    let order = [
        "qualification",
        "needs_analysis",
        "proposal",
        "negotiation",
        "closed",
    ];
    let mut stages: Vec<Stage> = order
        .iter()
        .map(|s| {
            let (count, cents, weighted) = rows
                .iter()
                .find(|r| r.0 == *s)
                .map_or((0, 0, 0), |r| (r.1, r.2, r.3));
            #[allow(clippy::cast_precision_loss)]
            Stage {
                stage: (*s).to_owned(),
                count,
                amount: cents as f64 / 100.0,
                weighted: weighted as f64 / 10_000.0,
            }
        })
        .collect();
    stages.retain(|s| s.stage != "closed" || s.count > 0);
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn today_is_the_offices_day() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap_or(Tz::UTC);
        // 04:00 on the 24th in Shanghai is still the 23rd in UTC.
        let now = at("2026-11-23T20:00:00Z");
        let (from_day, to_day, from, to) = Window::Today.range(now, shanghai);
        assert_eq!(
            (from_day.as_str(), to_day.as_str()),
            ("2026-11-24", "2026-11-25")
        );
        assert_eq!(from, "2026-11-23T16:00:00+00:00");
        assert_eq!(to, "2026-11-24T16:00:00+00:00");
        // The week starts on the office's Monday.
        let (from_day, _, from, _) = Window::Week.range(now, shanghai);
        assert_eq!(from_day, "2026-11-23");
        assert_eq!(from, "2026-11-22T16:00:00+00:00");
        let (.., utc_from, _) = Window::Today.range(now, Tz::UTC);
        assert_eq!(utc_from, "2026-11-23T00:00:00+00:00");
    }

    #[test]
    fn a_page_far_past_the_end_is_empty_not_an_overflow() {
        for db in store::testdb::databases().unwrap_or_else(|e| unreachable!("{e}")) {
            let c: &dyn Sql = &*db;
            crate::schema::migrate(c).unwrap_or_else(|e| unreachable!("{e}"));
            let customer = records::kind("customer").unwrap_or_else(|e| unreachable!("{e}"));
            let filter = Filter {
                page: Some(u32::MAX),
                per_page: Some(u32::MAX),
                ..Filter::default()
            };
            let page = list(&c, &Scope::All, customer, &filter, Utc::now(), true)
                .unwrap_or_else(|e| unreachable!("{e}"));
            assert!(page.items.is_empty());
        }
    }

    #[test]
    fn the_daily_queries_count_by_the_offices_clock() {
        for db in store::testdb::databases().unwrap_or_else(|e| unreachable!("{e}")) {
            let c: &dyn Sql = &*db;
            crate::schema::migrate(c).unwrap_or_else(|e| unreachable!("{e}"));
            let customer = records::kind("customer").unwrap_or_else(|e| unreachable!("{e}"));
            let why = records::Why {
                actor: None,
                reason: "test".into(),
                at: at("2026-11-23T20:00:00Z"),
            };
            // Contacted at 01:00 and 23:00 Shanghai time, and on a date.
            for (name, contacted) in [
                ("early", "2026-11-24T01:00:00+08:00"),
                ("late", "2026-11-23T23:00:00+08:00"),
                ("dated", "2026-11-24"),
            ] {
                let fields =
                    serde_json::json!({"name": name, "owner": "sam", "last_contact_at": contacted});
                let fields = fields.as_object().cloned().unwrap_or_default();
                records::create(&c, customer, &fields, &why)
                    .unwrap_or_else(|e| unreachable!("{e}"));
            }
            let stored: String = c
                .query_row(
                    "SELECT last_contact_at FROM crm_customers WHERE name = 'early'",
                    params![],
                    |r| r.get(0),
                )
                .unwrap_or_default();
            assert_eq!(stored, "2026-11-23T17:00:00+00:00", "times are kept in UTC");
            let today = |c: &dyn Sql| {
                let filter = Filter {
                    contacted: Some(Window::Today),
                    ..Filter::default()
                };
                let page = list(
                    c,
                    &Scope::All,
                    customer,
                    &filter,
                    at("2026-11-23T20:00:00Z"),
                    true,
                )
                .unwrap_or_else(|e| unreachable!("{e}"));
                let mut names: Vec<String> = page
                    .items
                    .iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect();
                names.sort();
                names
            };
            assert_eq!(
                today(&c),
                ["early", "late"],
                "UTC: both times fall on the 23rd"
            );
            set_office_zone(&c, "Asia/Shanghai").unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(today(&c), ["dated", "early"], "Shanghai: it is the 24th");
            assert!(set_office_zone(&c, "Mars/Olympus").is_err_and(|e| e.contains("IANA")));
        }
    }
}
