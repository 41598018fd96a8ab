//! CSV import of customers as a background job with progress.
//!
//! [`submit`] checks the header row, counts the rows and stores the job with its
//! file (`crm_imports`); the request returns at once. The server's CRM worker
//! then calls [`advance`], which imports the next [`BATCH`] rows in one
//! transaction together with the job's progress, so the progress people see is
//! exactly what is committed. A server stopped mid-import resumes where it left
//! off: the job keeps the byte offset of its next row. Each row is checked like
//! any customer and deduplicated (e-mail, phone, company) against the existing
//! customers, the pool and the rows imported before it; a row that fails is
//! skipped and recorded with its line and why.

use crate::records::{self, Why};
use chrono::{DateTime, Utc};
use ordo_engine::store::{self, Sql, SqlExt, params};
use serde_json::{Map, Value, json};

/// Rows imported per transaction (and per progress step).
pub const BATCH: usize = 200;

/// Fields people do not import: the pool's bookkeeping and the lock.
const NOT_IMPORTED: &[&str] = &["in_pool", "pool_since", "previous_owner", "locked"];

/// Import errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file has no header row or it is not CSV.
    #[error("the CSV's header row: {0}")]
    Header(String),
    /// Columns that are not customer fields.
    #[error("column(s) {unknown} are not customer fields; use a header row of: {known}")]
    UnknownColumns {
        /// The columns not known.
        unknown: String,
        /// The fields a file may have.
        known: String,
    },
    /// The file has a header row but no data rows.
    #[error("the file has a header row but no rows to import")]
    Empty,
    /// Looking for duplicates failed.
    #[error("checking for duplicates: {0}")]
    Duplicates(String),
    /// The database refused.
    #[error("database: {0}")]
    Db(#[from] store::Error),
}

/// The fields an import file may have, in table order.
pub fn importable_fields() -> Vec<&'static str> {
    records::kind("customer")
        .map(|k| {
            k.fields
                .iter()
                .map(|f| f.name)
                .filter(|n| !NOT_IMPORTED.contains(n))
                .collect()
        })
        .unwrap_or_default()
}

/// An import job as people see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Job {
    /// Its number.
    pub id: i64,
    /// Who submitted it.
    pub submitted_by: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// Data rows in the file.
    pub total: i64,
    /// Rows looked at so far.
    pub processed: i64,
    /// Customers created so far.
    pub created: i64,
    /// How many rows were skipped so far.
    pub skipped_rows: i64,
    /// Rows skipped so far, with why (in line order); empty in summaries.
    pub skipped: Vec<Skipped>,
    /// Why a failed job stopped.
    pub error: Option<String>,
    /// When it was submitted and finished (RFC 3339).
    pub submitted_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
}

impl Job {
    /// Whether it will not change any more.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "done" | "failed")
    }

    /// Percent of the rows looked at.
    pub fn percent(&self) -> i64 {
        if self.total == 0 {
            100
        } else {
            self.processed * 100 / self.total
        }
    }
}

/// A row not imported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Skipped {
    /// Its line in the file (the header is line 1).
    pub line: i64,
    /// Why.
    pub reason: String,
}

/// Stores an import of `body` for `by` and returns its number. The header row
/// is checked now, so a wrong file is refused before anything is queued.
/// `may_set_owner`: whether the file's `owner` column is kept (supervisors and
/// admins); otherwise every row is the submitter's.
pub fn submit(
    conn: &dyn Sql,
    by: &str,
    may_set_owner: bool,
    body: &str,
    now: DateTime<Utc>,
) -> Result<i64, Error> {
    // Spreadsheets often save CSV with a byte-order mark.
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(body.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::Header(e.to_string()))?
        .clone();
    let known = importable_fields();
    let unknown: Vec<String> = headers
        .iter()
        .map(str::trim)
        .filter(|h| !known.contains(h))
        .map(|h| format!("`{h}`"))
        .collect();
    if headers.is_empty() || !unknown.is_empty() {
        return Err(Error::UnknownColumns {
            unknown: if unknown.is_empty() {
                "(none)".into()
            } else {
                unknown.join(", ")
            },
            known: known.join(", "),
        });
    }
    let header_end = reader.position().byte();
    let total = reader.records().count();
    if total == 0 {
        return Err(Error::Empty);
    }
    let headers: Vec<&str> = headers.iter().map(str::trim).collect();
    let id = conn.query_row(
        "INSERT INTO crm_imports (kind, submitted_by, may_set_owner, status, total, headers, body,
                                  next_byte, next_line, submitted_at)
         VALUES ('customer', ?1, ?2, 'queued', ?3, ?4, ?5, ?6, 2, ?7) RETURNING id",
        params![
            by,
            may_set_owner,
            i64::try_from(total).unwrap_or(i64::MAX),
            json!(headers).to_string(),
            body,
            i64::try_from(header_end).unwrap_or(i64::MAX),
            now.to_rfc3339(),
        ],
        |r| r.get(0),
    )?;
    Ok(id)
}

/// The jobs still to run, oldest first.
pub fn pending(conn: &dyn Sql) -> store::Result<Vec<i64>> {
    conn.query_map(
        "SELECT id FROM crm_imports WHERE status IN ('queued', 'running') ORDER BY id",
        params![],
        |r| r.get(0),
    )
}

/// Imports the next batch of job `id`'s rows, at most `batch`, on `tx`
/// together with the job's progress: run it as one unit of work (the server
/// does, on the engine's writer), so the rows and the progress commit or roll
/// back together. Returns the job's summary afterwards (`None` when there is no
/// such job). A finished job is left as it is.
pub fn advance(
    tx: &dyn Sql,
    id: i64,
    batch: usize,
    now: DateTime<Utc>,
) -> Result<Option<Job>, Error> {
    let row = tx.query_opt(
        "SELECT submitted_by, may_set_owner, status, headers, body, next_byte, next_line,
                    processed, total
             FROM crm_imports WHERE id = ?1",
        params![id],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<bool>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<Option<String>>(4)?,
                r.get::<i64>(5)?,
                r.get::<i64>(6)?,
                r.get::<i64>(7)? + usize_i64(batch) >= r.get::<i64>(8)?,
            ))
        },
    )?;
    let Some((by, may_set_owner, status, headers, body, next_byte, next_line, last)) = row else {
        return Ok(None);
    };
    if matches!(status.as_str(), "done" | "failed") {
        return summary(tx, id).map_err(Error::from);
    }
    let headers: Vec<String> = serde_json::from_str(&headers).unwrap_or_default();
    let body = body.unwrap_or_default();
    let start = usize::try_from(next_byte).unwrap_or(0).min(body.len());
    let rest = body.get(start..).unwrap_or_default();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(rest.as_bytes());
    let why = Why {
        actor: Some(by.clone()),
        reason: format!("CSV import {id}"),
        at: now,
    };
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut exhausted = false;
    let at = |p: Option<&csv::Position>| next_line + p.map_or(1, |p| usize_i64(p.line())) - 1;
    while rows.len() < batch {
        match reader.read_record(&mut record) {
            Ok(true) => rows.push((at(record.position()), Ok(record.clone()))),
            Ok(false) => {
                exhausted = true;
                break;
            }
            Err(e) => rows.push((at(e.position()), Err(format!("not readable as CSV: {e}")))),
        }
    }
    let consumed = usize_i64(reader.position().byte());
    let lines = usize_i64(reader.position().line()) - 1;
    // The batch that reads the last row finishes the job.
    exhausted |= last;
    let (mut created, mut skipped) = (0_i64, Vec::new());
    for (line, row) in &rows {
        match row.as_ref() {
            Err(reason) => skipped.push((*line, reason.clone())),
            Ok(r) => match import_row(tx, &headers, r, &by, may_set_owner, &why)? {
                Ok(_) => created += 1,
                Err(reason) => skipped.push((*line, reason)),
            },
        }
    }
    for (line, reason) in &skipped {
        tx.execute(
            "INSERT INTO crm_import_skipped (import_id, line, reason) VALUES (?1, ?2, ?3)",
            params![id, line, reason],
        )?;
    }
    let processed = usize_i64(rows.len());
    tx.execute(
        "UPDATE crm_imports SET
            status = CASE WHEN ?2 THEN 'done' ELSE 'running' END,
            processed = processed + ?3, created = created + ?4,
            next_byte = next_byte + ?5, next_line = next_line + ?6,
            body = CASE WHEN ?2 THEN NULL ELSE body END,
            finished_at = CASE WHEN ?2 THEN ?7 ELSE NULL END
         WHERE id = ?1",
        params![
            id,
            exhausted,
            processed,
            created,
            consumed,
            lines,
            now.to_rfc3339()
        ],
    )?;
    summary(tx, id).map_err(Error::from)
}

fn usize_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Marks job `id` failed with `why` (its imported rows stay; importing the
/// same file again skips them as duplicates).
pub fn fail(conn: &dyn Sql, id: i64, why: &str, now: DateTime<Utc>) -> store::Result<()> {
    conn.execute(
        "UPDATE crm_imports SET status = 'failed', error = ?2, body = NULL, finished_at = ?3
         WHERE id = ?1 AND status IN ('queued', 'running')",
        params![id, why, now.to_rfc3339()],
    )?;
    Ok(())
}

/// Imports one row: `Ok(Ok(id))` created, `Ok(Err(why))` skipped.
fn import_row(
    tx: &dyn Sql,
    headers: &[String],
    row: &csv::StringRecord,
    by: &str,
    may_set_owner: bool,
    why: &Why,
) -> Result<Result<i64, String>, Error> {
    let customer = match records::kind("customer") {
        Ok(k) => k,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if row.len() != headers.len() {
        return Ok(Err(format!(
            "{} field(s) where the header row has {}",
            row.len(),
            headers.len()
        )));
    }
    let mut fields = Map::new();
    for (h, v) in headers.iter().zip(row.iter()) {
        if v.is_empty() {
            continue;
        }
        // Exactly what the export added to keep a formula from running.
        let v = crate::csv_safe::uncell(v);
        let value = match customer.fields.iter().find(|f| f.name == h).map(|f| f.ty) {
            Some(records::Ty::Bool) => json!(matches!(v, "true" | "yes" | "1")),
            Some(records::Ty::Int) => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
            _ => json!(v),
        };
        fields.insert(h.clone(), value);
    }
    if !may_set_owner || !fields.contains_key("owner") {
        fields.insert("owner".into(), json!(by));
    }
    let dup = crate::actions::find_duplicate(tx, &Value::Object(fields.clone()))
        .map_err(Error::Duplicates)?;
    if let Some(d) = dup {
        return Ok(Err(format!(
            "same {} as {} {} (owner {})",
            d["matched_on"].as_str().unwrap_or("key"),
            d["record"].as_str().unwrap_or("record"),
            d["id"],
            d["owner"].as_str().unwrap_or("none: in the pool")
        )));
    }
    tx.execute_batch("SAVEPOINT row")?;
    match records::create(tx, customer, &fields, why) {
        Ok(id) => {
            tx.execute_batch("RELEASE row")?;
            Ok(Ok(id))
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO row; RELEASE row")?;
            Ok(Err(e.to_string()))
        }
    }
}

/// The columns of [`summaries`], in the order it reads them.
const SUMMARY: &str = "SELECT i.id, i.submitted_by, i.status, i.total, i.processed, i.created,
            (SELECT COUNT(*) FROM crm_import_skipped s WHERE s.import_id = i.id),
            i.error, i.submitted_at, i.finished_at
     FROM crm_imports i";

/// Jobs without their skipped rows (`skipped_rows` counts them): what progress
/// and lists need, in one query.
fn summaries(conn: &dyn Sql, tail: &str, args: store::sql::Params<'_>) -> store::Result<Vec<Job>> {
    conn.query_map(&format!("{SUMMARY} {tail}"), args, |r| {
        Ok(Job {
            id: r.get(0)?,
            submitted_by: r.get(1)?,
            status: r.get(2)?,
            total: r.get(3)?,
            processed: r.get(4)?,
            created: r.get(5)?,
            skipped_rows: r.get(6)?,
            skipped: Vec::new(),
            error: r.get(7)?,
            submitted_at: r.get(8)?,
            finished_at: r.get(9)?,
        })
    })
}

/// Job `id` without its skipped rows (they are counted in `skipped_rows`).
pub fn summary(conn: &dyn Sql, id: i64) -> store::Result<Option<Job>> {
    Ok(summaries(conn, "WHERE i.id = ?1", params![id])?
        .into_iter()
        .next())
}

/// Job `id` with its skipped rows.
pub fn job(conn: &dyn Sql, id: i64) -> store::Result<Option<Job>> {
    let Some(mut job) = summary(conn, id)? else {
        return Ok(None);
    };
    job.skipped = conn.query_map(
        "SELECT line, reason FROM crm_import_skipped WHERE import_id = ?1 ORDER BY line, id",
        params![id],
        |r| {
            Ok(Skipped {
                line: r.get(0)?,
                reason: r.get(1)?,
            })
        },
    )?;
    Ok(Some(job))
}

/// The jobs `by` submitted (everyone's when `None`), newest first, without
/// their skipped rows.
pub fn jobs(conn: &dyn Sql, by: Option<&str>, limit: u32) -> store::Result<Vec<Job>> {
    summaries(
        conn,
        "WHERE i.submitted_by = ?1 OR ?1 IS NULL ORDER BY i.id DESC LIMIT ?2",
        params![by, limit],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A migrated database on each backend (`store::testdb`).
    fn dbs() -> Vec<store::testdb::TestDb> {
        let all = store::testdb::databases().unwrap_or_else(|e| unreachable!("{e}"));
        for c in &all {
            crate::schema::migrate(&**c).unwrap_or_else(|e| unreachable!("{e}"));
        }
        all
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
            .single()
            .unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn a_wrong_header_is_refused_before_anything_is_queued() {
        for db in dbs() {
            let c: &dyn Sql = &*db;
            let e = submit(&c, "sally", false, "name,colour\nA,red\n", now());
            let msg = e.map(|_| ()).map_err(|e| e.to_string());
            assert!(
                matches!(&msg, Err(m) if m.contains("`colour`") && m.contains("name, company")),
                "{msg:?}"
            );
            assert!(matches!(
                submit(&c, "sally", false, "name\n", now()),
                Err(Error::Empty)
            ));
            assert_eq!(pending(&c).ok(), Some(vec![]));
        }
    }

    #[test]
    fn batches_resume_where_the_last_one_stopped_with_true_line_numbers() {
        for db in dbs() {
            let c: &dyn Sql = &*db;
            // A byte-order mark, a quoted field over two lines, a short row, a bad
            // grade, and a field broken over two lines without quotes.
            let csv = "\u{feff}name,company,grade\nA,\"Two\nLines Co\",ordinary\nB,Bee Co\nC,Cee Co,gold\nD,Dee Co,vip\nE,Two\nLines Co,vip\n";
            let id = submit(&c, "sally", false, csv, now()).unwrap_or_else(|e| unreachable!("{e}"));
            let first = advance(&c, id, 2, now())
                .ok()
                .flatten()
                .unwrap_or_else(|| unreachable!());
            assert_eq!(
                (
                    first.status.as_str(),
                    first.total,
                    first.processed,
                    first.created
                ),
                ("running", 6, 2, 1)
            );
            let rest = advance(&c, id, 10, now())
                .ok()
                .flatten()
                .unwrap_or_else(|| unreachable!());
            assert_eq!(
                (rest.status.as_str(), rest.processed, rest.created),
                ("done", 6, 2)
            );
            assert_eq!(rest.skipped_rows, 4, "the summary counts the skipped rows");
            let rest = job(&c, id).ok().flatten().unwrap_or_else(|| unreachable!());
            let lines: Vec<i64> = rest.skipped.iter().map(|s| s.line).collect();
            assert_eq!(lines, [4, 5, 7, 8], "{:?}", rest.skipped);
            assert!(
                rest.skipped[0].reason.contains("2 field(s)"),
                "{:?}",
                rest.skipped
            );
            assert!(
                rest.skipped[1].reason.contains("grade"),
                "{:?}",
                rest.skipped
            );
            assert!(
                rest.skipped[2].reason.contains("field(s)"),
                "{:?}",
                rest.skipped
            );
            let owners: Vec<String> = c
                .query_map(
                    "SELECT owner FROM crm_customers ORDER BY id",
                    params![],
                    |r| r.get(0),
                )
                .unwrap_or_default();
            assert_eq!(owners, ["sally", "sally"]);
            // Finished: nothing more happens, and the file is no longer kept.
            let again = advance(&c, id, 10, now()).ok().flatten();
            assert_eq!(again.map(|j| j.processed), Some(6));
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM crm_imports WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(body, None);
        }
    }

    #[test]
    fn a_batch_ending_on_the_last_row_finishes_the_job_and_duplicates_are_skipped() {
        for db in dbs() {
            let c: &dyn Sql = &*db;
            let csv = "name,email\nA,a@x.example\nB,A@X.example\n";
            let id = submit(&c, "sally", false, csv, now()).unwrap_or_else(|e| unreachable!("{e}"));
            let mut batches = 0;
            while let Some(j) =
                advance(&c, id, BATCH, now()).unwrap_or_else(|e| unreachable!("{e}"))
            {
                batches += 1;
                if j.finished() {
                    break;
                }
            }
            assert_eq!(batches, 1, "one batch holds the whole file");
            let j = job(&c, id).ok().flatten().unwrap_or_else(|| unreachable!());
            assert_eq!((j.status.as_str(), j.created), ("done", 1));
            assert_eq!(j.skipped.len(), 1);
            assert!(
                j.skipped[0].reason.starts_with("same email as customer"),
                "{:?}",
                j.skipped
            );
            assert_eq!(
                jobs(&c, Some("max"), 10)
                    .map(|v| v.len())
                    .map_err(|e| e.to_string()),
                Ok(0)
            );
            assert_eq!(jobs(&c, None, 10).map(|v| v.len()).ok(), Some(1));
        }
    }
}
