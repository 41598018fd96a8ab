//! CRM records: what each kind holds, checked on the way in, and every change
//! written to the audit trail (who, when, before, after, and why) in the same
//! transaction as the change.
//!
//! Fields are named as the processes name them (`amount`, `owner`); money is
//! given in currency units and stored in cents, so sums are exact. A field that
//! is not one of the record's, or a value of the wrong type or outside the
//! allowed values, is refused with a message that names the field and what it
//! accepts.

use chrono::{DateTime, Utc};
use ordo_engine::store::sql::param_refs;
use ordo_engine::store::{self, Sql, SqlExt, Value as SqlValue, params};
use serde_json::{Map, Value, json};

/// Record errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such kind of record.
    #[error("`{0}` is not a CRM record; records are {known}", known = KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "))]
    UnknownRecord(String),
    /// A field the record does not have.
    #[error("`{field}` is not a field of {record}; its fields are {known}")]
    UnknownField {
        /// The record kind.
        record: &'static str,
        /// The field.
        field: String,
        /// Its fields.
        known: String,
    },
    /// A value of the wrong type, or not one of the allowed values.
    #[error("{record}.{field} must be {expected}, not {got}")]
    BadValue {
        /// The record kind.
        record: &'static str,
        /// The field.
        field: &'static str,
        /// What it accepts.
        expected: String,
        /// What it got.
        got: String,
    },
    /// A required field is missing.
    #[error("a {record} needs `{field}`")]
    Missing {
        /// The record kind.
        record: &'static str,
        /// The field.
        field: &'static str,
    },
    /// No record with this id.
    #[error("there is no {record} {id}")]
    NotFound {
        /// The record kind.
        record: &'static str,
        /// The id.
        id: i64,
    },
    /// The record is locked (an approval is pending).
    #[error("{record} {id} is locked while an approval is pending")]
    Locked {
        /// The record kind.
        record: &'static str,
        /// The id.
        id: i64,
    },
    /// Storage failed.
    #[error("CRM storage failed: {0}")]
    Sqlite(#[from] store::Error),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// The type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Text.
    Text,
    /// A whole number.
    Int,
    /// Money in currency units, stored in cents.
    Cents,
    /// A fraction (a discount of 0.15).
    Fraction,
    /// Yes or no.
    Bool,
    /// A date (`2026-11-23`) or a time (RFC 3339).
    Time,
    /// One of these values.
    Enum(&'static [&'static str]),
    /// The id of another record.
    Ref(&'static str),
}

/// A field of a record.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// As processes name it.
    pub name: &'static str,
    /// The column (differs for money: `amount` → `amount_cents`).
    pub column: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Needed when the record is created.
    pub required: bool,
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        column: name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        column: name,
        ty,
        required: true,
    }
}

const fn money(name: &'static str, column: &'static str, required: bool) -> Field {
    Field {
        name,
        column,
        ty: Ty::Cents,
        required,
    }
}

/// A kind of record.
#[derive(Debug)]
pub struct Kind {
    /// Its name (`customer`).
    pub name: &'static str,
    /// Its table.
    pub table: &'static str,
    /// Its fields (besides `id`, `created_at`, `updated_at`).
    pub fields: &'static [Field],
}

const CUSTOMER_TYPES: &[&str] = &["prospect", "intention", "paused"];
const APPROVAL: &[&str] = &["none", "pending", "approved", "rejected"];
pub(crate) const GRADES: &[&str] = &["ordinary", "vip"];
pub(crate) const REGIONS: &[&str] = &["east", "north", "north_east", "north_west", "south"];
const SOURCES: &[&str] = &[
    "inbound",
    "advertising",
    "referral",
    "campaign",
    "import",
    "other",
];

/// Every kind of record.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "customer",
        table: "crm_customers",
        fields: &[
            f("number", Ty::Text),
            req("name", Ty::Text),
            f("company", Ty::Text),
            f("title", Ty::Text),
            f("phone", Ty::Text),
            f("email", Ty::Text),
            f("address", Ty::Text),
            f("type", Ty::Enum(CUSTOMER_TYPES)),
            f("industry", Ty::Text),
            f("source", Ty::Enum(SOURCES)),
            f("grade", Ty::Enum(GRADES)),
            f("owner", Ty::Text),
            f("region", Ty::Enum(REGIONS)),
            f("last_contact_at", Ty::Time),
            f("next_contact_at", Ty::Time),
            f("locked", Ty::Bool),
            f("in_pool", Ty::Bool),
            f("pool_since", Ty::Time),
            f("previous_owner", Ty::Text),
            f("approval_status", Ty::Enum(APPROVAL)),
        ],
    },
    Kind {
        name: "contact",
        table: "crm_contacts",
        fields: &[
            req("customer_id", Ty::Ref("customer")),
            req("name", Ty::Text),
            f("title", Ty::Text),
            f("phone", Ty::Text),
            f("email", Ty::Text),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "lead",
        table: "crm_leads",
        fields: &[
            req("name", Ty::Text),
            f("company", Ty::Text),
            f("title", Ty::Text),
            f("phone", Ty::Text),
            f("email", Ty::Text),
            f("region", Ty::Enum(REGIONS)),
            f("industry", Ty::Text),
            f("source", Ty::Enum(SOURCES)),
            f("grade", Ty::Enum(GRADES)),
            f(
                "status",
                Ty::Enum(&[
                    "new",
                    "assigned",
                    "in_process",
                    "converted",
                    "recycled",
                    "dead",
                ]),
            ),
            f("lost_reason", Ty::Text),
            f("owner", Ty::Text),
            f("customer_id", Ty::Ref("customer")),
            f("in_pool", Ty::Bool),
            f("pool_since", Ty::Time),
            f("previous_owner", Ty::Text),
        ],
    },
    Kind {
        name: "opportunity",
        table: "crm_opportunities",
        fields: &[
            req("customer_id", Ty::Ref("customer")),
            f("lead_id", Ty::Ref("lead")),
            req("name", Ty::Text),
            f(
                "stage",
                Ty::Enum(&[
                    "qualification",
                    "needs_analysis",
                    "proposal",
                    "negotiation",
                    "closed",
                ]),
            ),
            f("probability", Ty::Int),
            money("amount", "amount_cents", false),
            f("status", Ty::Enum(&["open", "won", "lost"])),
            f("lost_reason", Ty::Text),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "quote",
        table: "crm_quotes",
        fields: &[
            req("opportunity_id", Ty::Ref("opportunity")),
            req("customer_id", Ty::Ref("customer")),
            money("amount", "amount_cents", true),
            f("discount", Ty::Fraction),
            f("valid_until", Ty::Time),
            f("approval_status", Ty::Enum(APPROVAL)),
            f("locked", Ty::Bool),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "order",
        table: "crm_orders",
        fields: &[
            f("quote_id", Ty::Ref("quote")),
            req("customer_id", Ty::Ref("customer")),
            f("kind", Ty::Enum(&["stock", "custom"])),
            money("amount", "amount_cents", true),
            f("review_status", Ty::Enum(APPROVAL)),
            f("review_comment", Ty::Text),
            f("status", Ty::Enum(&["open", "fulfilled", "cancelled"])),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "contract",
        table: "crm_contracts",
        fields: &[
            f("order_id", Ty::Ref("order")),
            req("customer_id", Ty::Ref("customer")),
            f(
                "status",
                Ty::Enum(&["draft", "in_approval", "active", "ended"]),
            ),
            money("amount", "amount_cents", true),
            f("signed_at", Ty::Time),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "receivable_plan",
        table: "crm_receivable_plans",
        fields: &[
            f("contract_id", Ty::Ref("contract")),
            req("customer_id", Ty::Ref("customer")),
            money("total", "total_cents", true),
            f("instalments", Ty::Int),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "instalment",
        table: "crm_instalments",
        fields: &[
            req("plan_id", Ty::Ref("receivable_plan")),
            req("due_date", Ty::Time),
            money("amount", "amount_cents", true),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "payment",
        table: "crm_payments",
        fields: &[
            req("plan_id", Ty::Ref("receivable_plan")),
            money("amount", "amount_cents", true),
            req(
                "method",
                Ty::Enum(&["bank_transfer", "cash", "card", "cheque", "other"]),
            ),
            req("paid_at", Ty::Time),
            req("handler", Ty::Text),
            f("owner", Ty::Text),
            f("reference", Ty::Text),
        ],
    },
    Kind {
        name: "followup",
        table: "crm_followups",
        fields: &[
            req("customer_id", Ty::Ref("customer")),
            req("subject", Ty::Text),
            f("content", Ty::Text),
            req("at", Ty::Time),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "work_plan",
        table: "crm_work_plans",
        fields: &[
            f("customer_id", Ty::Ref("customer")),
            req("subject", Ty::Text),
            f("content", Ty::Text),
            req("starts_at", Ty::Time),
            req("ends_at", Ty::Time),
            f("status", Ty::Enum(&["done", "not_done", "overdue"])),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "complaint",
        table: "crm_complaints",
        fields: &[
            req("customer_id", Ty::Ref("customer")),
            req("subject", Ty::Text),
            f("content", Ty::Text),
            f("status", Ty::Enum(&["open", "handling", "resolved"])),
            f("resolution", Ty::Text),
            f("owner", Ty::Text),
        ],
    },
    Kind {
        name: "return_visit",
        table: "crm_return_visits",
        fields: &[
            req("customer_id", Ty::Ref("customer")),
            f("complaint_id", Ty::Ref("complaint")),
            f("satisfaction", Ty::Int),
            f("content", Ty::Text),
            req("at", Ty::Time),
            f("owner", Ty::Text),
        ],
    },
];

/// A kind by name.
pub fn kind(name: &str) -> Result<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| Error::UnknownRecord(name.to_owned()))
}

impl Kind {
    fn field(&self, name: &str) -> Result<&'static Field> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| Error::UnknownField {
                record: self.name,
                field: name.to_owned(),
                known: self
                    .fields
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Whether this kind keeps normalised keys for duplicate search.
    fn has_keys(&self) -> bool {
        matches!(self.name, "customer" | "lead")
    }
}

/// Why a change is made, for the audit trail.
#[derive(Debug, Clone)]
pub struct Why {
    /// The person it is done by or for, when there is one.
    pub actor: Option<String>,
    /// The process step, rule or strategy that made it
    /// (`lead-to-cash/create_lead in instance 12`).
    pub reason: String,
    /// When, by the engine's clock.
    pub at: DateTime<Utc>,
}

/// The value as stored, after checking it against its field.
fn to_sql(tx: &dyn Sql, kind: &Kind, field: &'static Field, v: &Value) -> Result<SqlValue> {
    let bad = |expected: String| Error::BadValue {
        record: kind.name,
        field: field.name,
        expected,
        got: v.to_string(),
    };
    if v.is_null() {
        return if field.required {
            Err(Error::Missing {
                record: kind.name,
                field: field.name,
            })
        } else {
            Ok(SqlValue::Null)
        };
    }
    Ok(match field.ty {
        Ty::Text => match v {
            Value::String(s) => SqlValue::Text(s.clone()),
            Value::Number(n) => SqlValue::Text(n.to_string()),
            _ => return Err(bad("text".into())),
        },
        Ty::Int => SqlValue::Integer(v.as_i64().ok_or_else(|| bad("a whole number".into()))?),
        Ty::Cents => {
            let units = v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e13)
                .ok_or_else(|| bad("an amount of money (a number, 0 or more)".into()))?;
            #[allow(clippy::cast_possible_truncation)]
            SqlValue::Integer((units * 100.0).round() as i64)
        }
        Ty::Fraction => SqlValue::Real(
            v.as_f64()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| bad("a fraction from 0 to 1".into()))?,
        ),
        Ty::Bool => SqlValue::Integer(i64::from(
            v.as_bool().ok_or_else(|| bad("true or false".into()))?,
        )),
        Ty::Time => {
            // Times are kept in UTC, in one format, so they compare as text
            // (the daily queries' windows); dates stay dates.
            let s = v.as_str().unwrap_or_default();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                SqlValue::Text(t.with_timezone(&Utc).to_rfc3339())
            } else if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
                SqlValue::Text(s.to_owned())
            } else {
                return Err(bad("a date (2026-11-23) or a time (RFC 3339)".into()));
            }
        }
        Ty::Enum(options) => match v.as_str() {
            Some(s) if options.contains(&s) => SqlValue::Text(s.to_owned()),
            _ => return Err(bad(format!("one of {}", options.join(", ")))),
        },
        Ty::Ref(target) => {
            let id = v
                .as_i64()
                .ok_or_else(|| bad(format!("the id of a {target}")))?;
            let target = kind_of(target);
            if !exists(tx, target, id)? {
                return Err(Error::NotFound {
                    record: target.name,
                    id,
                });
            }
            SqlValue::Integer(id)
        }
    })
}

fn kind_of(name: &str) -> &'static Kind {
    // Every `Ref` names a kind in `KINDS`; a test checks it.
    KINDS.iter().find(|k| k.name == name).unwrap_or(&KINDS[0])
}

fn exists(tx: &dyn Sql, kind: &Kind, id: i64) -> Result<bool> {
    Ok(tx
        .query_opt(
            &format!("SELECT 1 FROM {} WHERE id = ?1", kind.table),
            params![id],
            |_| Ok(()),
        )?
        .is_some())
}

/// Digits only, for comparing phone numbers written differently.
pub fn phone_key(s: &str) -> Option<String> {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    // The last 11 digits: a country prefix (+86, 0086) does not hide a match.
    let tail = d.get(d.len().saturating_sub(11)..).unwrap_or(&d).to_owned();
    (tail.len() >= 6).then_some(tail)
}

/// Trimmed and lower-case, for e-mail addresses.
pub fn email_key(s: &str) -> Option<String> {
    let k = s.trim().to_lowercase();
    k.contains('@').then_some(k)
}

/// Lower-case words without punctuation or a legal-form suffix, for companies.
pub fn company_key(s: &str) -> Option<String> {
    let lower = s.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .filter(|w| !["ltd", "inc", "co", "llc", "gmbh", "corp", "limited"].contains(w))
        .collect();
    let k = words.join(" ");
    (!k.is_empty()).then_some(k)
}

/// The normalised keys a customer or lead is found by.
fn keys(fields: &Map<String, Value>) -> [(&'static str, Option<String>); 3] {
    let text = |k: &str| fields.get(k).and_then(Value::as_str);
    [
        ("phone_key", text("phone").and_then(phone_key)),
        ("email_key", text("email").and_then(email_key)),
        ("company_key", text("company").and_then(company_key)),
    ]
}

/// Creates a record and audits it; returns its id.
pub fn create(tx: &dyn Sql, kind: &Kind, fields: &Map<String, Value>, why: &Why) -> Result<i64> {
    let mut columns: Vec<&str> = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    for name in fields.keys() {
        kind.field(name)?;
    }
    for field in kind.fields {
        match fields.get(field.name) {
            Some(v) => {
                columns.push(field.column);
                values.push(to_sql(tx, kind, field, v)?);
            }
            None if field.required => {
                return Err(Error::Missing {
                    record: kind.name,
                    field: field.name,
                });
            }
            None => {}
        }
    }
    if kind.has_keys() {
        for (column, key) in keys(fields) {
            columns.push(column);
            values.push(key.map_or(SqlValue::Null, SqlValue::Text));
        }
    }
    let at = why.at.to_rfc3339();
    columns.extend(["created_at", "updated_at"]);
    values.extend([SqlValue::Text(at.clone()), SqlValue::Text(at)]);
    if kind.name == "customer" && !fields.contains_key("number") {
        // A readable number, unique: C + the next id, zero-padded.
        let next: i64 = tx.query_row(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM crm_customers",
            params![],
            |r| r.get(0),
        )?;
        columns.push("number");
        values.push(SqlValue::Text(format!("C{next:06}")));
    }
    let marks = vec!["?"; values.len()].join(", ");
    let id: i64 = tx.query_row(
        &format!(
            "INSERT INTO {} ({}) VALUES ({marks}) RETURNING id",
            kind.table,
            columns.join(", ")
        ),
        &param_refs(&values),
        |r| r.get(0),
    )?;
    let after = get(tx, kind, id)?.unwrap_or_default();
    audit(
        tx,
        kind,
        id,
        "create",
        None,
        Some(&Value::Object(after)),
        why,
    )?;
    Ok(id)
}

/// Changes fields of a record and audits what changed (before and after of the
/// changed fields only); returns the record as it is now. A locked record only
/// takes changes that unlock it or that its approval makes.
pub fn update(
    tx: &dyn Sql,
    kind: &Kind,
    id: i64,
    changes: &Map<String, Value>,
    why: &Why,
) -> Result<Map<String, Value>> {
    let before = get(tx, kind, id)?.ok_or(Error::NotFound {
        record: kind.name,
        id,
    })?;
    let locked = before.get("locked").and_then(Value::as_bool) == Some(true);
    let unlocking_or_deciding = changes.keys().all(|k| {
        [
            "locked",
            "approval_status",
            "review_status",
            "review_comment",
        ]
        .contains(&k.as_str())
    });
    if locked && !unlocking_or_deciding {
        return Err(Error::Locked {
            record: kind.name,
            id,
        });
    }
    let mut sets: Vec<String> = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    let (mut old, mut new) = (Map::new(), Map::new());
    for (name, v) in changes {
        let field = kind.field(name)?;
        let value = to_sql(tx, kind, field, v)?;
        sets.push(format!("{} = ?", field.column));
        values.push(value);
        old.insert(
            name.clone(),
            before.get(name).cloned().unwrap_or(Value::Null),
        );
        new.insert(name.clone(), v.clone());
    }
    if sets.is_empty() {
        return Ok(before);
    }
    if kind.has_keys() {
        let mut merged = before.clone();
        merged.extend(changes.clone());
        for (column, key) in keys(&merged) {
            sets.push(format!("{column} = ?"));
            values.push(key.map_or(SqlValue::Null, SqlValue::Text));
        }
    }
    sets.push("updated_at = ?".into());
    values.push(SqlValue::Text(why.at.to_rfc3339()));
    values.push(SqlValue::Integer(id));
    tx.execute(
        &format!("UPDATE {} SET {} WHERE id = ?", kind.table, sets.join(", ")),
        &param_refs(&values),
    )?;
    audit(
        tx,
        kind,
        id,
        "update",
        Some(&Value::Object(old)),
        Some(&Value::Object(new)),
        why,
    )?;
    Ok(get(tx, kind, id)?.unwrap_or_default())
}

/// A record as processes see it: named fields, money in currency units, flags as
/// booleans, plus `id`, `created_at` and `updated_at`.
pub fn get(tx: &dyn Sql, kind: &Kind, id: i64) -> Result<Option<Map<String, Value>>> {
    Ok(
        select(tx, kind, "WHERE r.id = ?", &[SqlValue::Integer(id)])?
            .into_iter()
            .next(),
    )
}

/// The records of `kind` that `tail` selects: SQL after `FROM <table> r`
/// (`WHERE …`, `ORDER BY …`, `LIMIT …`) with `?` for each of `args`. One query
/// for the whole list.
pub fn select(
    tx: &dyn Sql,
    kind: &Kind,
    tail: &str,
    args: &[SqlValue],
) -> Result<Vec<Map<String, Value>>> {
    let columns: Vec<String> = kind
        .fields
        .iter()
        .map(|f| format!("r.{}", f.column))
        .collect();
    let sql = format!(
        "SELECT r.id, r.created_at, r.updated_at, {} FROM {} r {tail}",
        columns.join(", "),
        kind.table
    );
    let rows = tx.query_map(&sql, &param_refs(args), |r| {
        let mut m = Map::new();
        m.insert("id".into(), json!(r.get::<i64>(0)?));
        m.insert("created_at".into(), json!(r.get::<String>(1)?));
        m.insert("updated_at".into(), json!(r.get::<String>(2)?));
        for (i, field) in kind.fields.iter().enumerate() {
            let raw: SqlValue = r.get(i + 3)?;
            m.insert(field.name.into(), from_sql(field.ty, raw));
        }
        Ok(m)
    })?;
    Ok(rows)
}

fn from_sql(ty: Ty, raw: SqlValue) -> Value {
    match (ty, raw) {
        (_, SqlValue::Null) => Value::Null,
        (Ty::Bool, SqlValue::Integer(i)) => Value::Bool(i != 0),
        #[allow(clippy::cast_precision_loss)]
        (Ty::Cents, SqlValue::Integer(c)) => json!(c as f64 / 100.0),
        (_, SqlValue::Integer(i)) => json!(i),
        (_, SqlValue::Real(x)) => json!(x),
        (_, SqlValue::Text(s)) => json!(s),
        (_, SqlValue::Blob(_)) => Value::Null,
    }
}

fn audit(
    tx: &dyn Sql,
    kind: &Kind,
    id: i64,
    change: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    why: &Why,
) -> Result<()> {
    tx.execute(
        "INSERT INTO crm_audit (at, actor, record, record_id, change, before, after, why)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            why.at.to_rfc3339(),
            why.actor,
            kind.name,
            id,
            change,
            before.map(Value::to_string),
            after.map(Value::to_string),
            why.reason,
        ],
    )?;
    Ok(())
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// When.
    pub at: String,
    /// By or for whom.
    pub actor: Option<String>,
    /// `create`, `update`.
    pub change: String,
    /// The changed fields before (None for a creation).
    pub before: Option<Value>,
    /// The changed fields after.
    pub after: Option<Value>,
    /// Why: the process step, rule or strategy.
    pub why: String,
}

/// A record's audit trail, oldest first.
pub fn history(tx: &dyn Sql, kind: &Kind, id: i64) -> Result<Vec<AuditEntry>> {
    let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let rows = tx.query_map(
        "SELECT at, actor, change, before, after, why FROM crm_audit
         WHERE record = ?1 AND record_id = ?2 ORDER BY seq",
        params![kind.name, id],
        |r| {
            Ok(AuditEntry {
                at: r.get(0)?,
                actor: r.get(1)?,
                change: r.get(2)?,
                before: parse(r.get(3)?),
                after: parse(r.get(4)?),
                why: r.get(5)?,
            })
        },
    )?;
    Ok(rows)
}
