//! The [`Sql`] handle on PostgreSQL.
//!
//! The SQL the project writes is kept portable (see [`crate::sql`]); this
//! module bridges what still differs, in one place:
//! - placeholders: `?1`, `?2` (and bare `?`, numbered in order) become `$1`,
//!   `$2`, outside string literals, quoted names and comments;
//! - values: a statement's parameter takes the type PostgreSQL infers for it
//!   (an integer parameter may go to an `int4`, `int8`, `float8`, `bool` or
//!   `text` column), and a row's column is read by its type (`numeric`, what
//!   `SUM` of a `bigint` gives, becomes an integer when it is whole);
//! - table definitions ([`PgConn::execute_batch`]): the project writes SQLite's
//!   dialect, and here `INTEGER PRIMARY KEY` is an identity column, `INTEGER`
//!   is `BIGINT`, `REAL` is `DOUBLE PRECISION`, `BLOB` is `BYTEA`, and
//!   `WITHOUT ROWID` is dropped.
//!
//! Statements are prepared once per connection and kept.

use crate::sql::{Backend, Params, Row, RowSource, Sql, ToSql as _, Value, ValueRef};
use crate::{Error, Result};
use bytes::BufMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use std::collections::HashMap;

/// Most prepared statements a connection keeps.
const MAX_STATEMENTS: usize = 256;

/// A connection to a PostgreSQL database.
///
/// The client lives on a thread of its own and each call is handed to it:
/// the synchronous `postgres` client blocks on a runtime of its own, which
/// must not run inside an async task, and this way a `PgConn` can be called
/// from anywhere, as a SQLite connection can (a blocking call, not a panic).
/// Rows come back owned.
pub struct PgConn {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Work for the connection's thread.
type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// What the connection's thread owns.
struct Session {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

/// Rows of a query, owned: the column names and each row's values.
type Rows = (Vec<String>, Vec<Vec<Value>>);

impl PgConn {
    /// Connects to `url` (`postgres://user:password@host:port/database`).
    pub fn connect(url: &str) -> Result<PgConn> {
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        let (ready, connected) = std::sync::mpsc::channel::<Result<()>>();
        let target = url.to_owned();
        std::thread::Builder::new()
            .name("ordo-postgres".into())
            .spawn(move || {
                let client = match postgres::Client::connect(&target, postgres::NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready.send(Err(Error::Database(format!(
                            "cannot connect to PostgreSQL at {}: {}",
                            redact(&target),
                            text(&e)
                        ))));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut session = Session {
                    client,
                    statements: HashMap::new(),
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut session);
                }
            })
            .map_err(|e| Error::Database(format!("cannot start a PostgreSQL connection: {e}")))?;
        connected.recv().map_err(|_| {
            Error::Database("the PostgreSQL connection's thread stopped".to_owned())
        })??;
        Ok(PgConn { jobs })
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = std::sync::mpsc::channel();
        self.jobs
            .send(Box::new(move |s: &mut Session| {
                let _ = answer.send(f(s));
            }))
            .map_err(|_| Error::Database("the PostgreSQL connection is closed".to_owned()))?;
        answered
            .recv()
            .map_err(|_| Error::Database("the PostgreSQL connection's thread stopped".to_owned()))?
    }

    /// The parameters, owned (to cross to the connection's thread). Text
    /// with a NUL character is refused here, as a bad parameter: PostgreSQL
    /// cannot store it in a `text` value (SQLite can).
    fn owned(params: Params<'_>) -> Result<Vec<Value>> {
        params
            .iter()
            .map(|p| match p.to_sql()? {
                ValueRef::Text(t) if t.contains('\0') => Err(Error::Parameter(
                    "text with a NUL character (U+0000) cannot be stored or looked up: remove it"
                        .to_owned(),
                )),
                v => Ok(v.to_owned_value()),
            })
            .collect()
    }
}

impl Session {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .prepare(&placeholders(sql))
            .map_err(|e| pg_error(&e))?;
        // Statements built at run time (a page's OFFSET, a changed field
        // list) must not pile up here or on the server: past the bound, the
        // kept ones are dropped (and closed) and preparing starts over.
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64> {
        let st = self.statement(sql)?;
        let params = bind(values)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        self.client.execute(&st, &refs).map_err(|e| pg_error(&e))
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Rows> {
        let st = self.statement(sql)?;
        let params = bind(values)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let rows = self.client.query(&st, &refs).map_err(|e| pg_error(&e))?;
        let names: Vec<String> = st.columns().iter().map(|c| c.name().to_owned()).collect();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let row = PgRow(r);
            let values = (0..names.len())
                .map(|i| row.value(i).map(ValueRef::to_owned_value))
                .collect::<Result<Vec<Value>>>()?;
            out.push(values);
        }
        Ok((names, out))
    }
}

/// The parameters as the client takes them.
fn bind(values: &[Value]) -> Result<Vec<Param<'_>>> {
    values.iter().map(|v| v.to_sql().map(Param)).collect()
}

impl Sql for PgConn {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize> {
        let values = Self::owned(params)?;
        let sql = sql.to_owned();
        let n = self.run(move |s| s.execute(&sql, &values))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
        each: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let values = Self::owned(params)?;
        let sql = sql.to_owned();
        let (names, rows) = self.run(move |s| s.query(&sql, &values))?;
        for values in &rows {
            each(&Row::new(&OwnedRow {
                names: &names,
                values,
            }))?;
        }
        Ok(())
    }

    fn execute_batch(&self, sql: &str) -> Result<()> {
        let sql = sql.to_owned();
        self.run(move |s| {
            // A table definition may change what a kept statement means (a
            // savepoint, run per row by the CSV import, does not).
            let upper = sql.to_ascii_uppercase();
            if ["CREATE", "ALTER", "DROP"]
                .iter()
                .any(|w| upper.contains(w))
            {
                s.statements.clear();
            }
            s.client.batch_execute(&ddl(&sql)).map_err(|e| pg_error(&e))
        })
    }
}

/// A row brought back from the connection's thread.
struct OwnedRow<'r> {
    names: &'r [String],
    values: &'r [Value],
}

impl RowSource for OwnedRow<'_> {
    fn value(&self, index: usize) -> Result<ValueRef<'_>> {
        let v = self.values.get(index).ok_or_else(|| Error::Column {
            index,
            message: format!("there is no column {index}"),
        })?;
        v.to_sql()
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::Database(format!("no column named `{name}`")))
    }
}

/// Where a connection string points, without its password (whatever form
/// it takes: `user:pass@`, `?password=`, or `password=` in key=value form).
pub(crate) fn redact(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
            format!(
                "host {} port {} database {} user {}",
                hosts.join(","),
                if ports.is_empty() {
                    "5432".to_owned()
                } else {
                    ports.join(",")
                },
                c.get_dbname().unwrap_or("(default)"),
                c.get_user().unwrap_or("(default)")
            )
        }
        Err(_) => "(a connection string that does not parse)".to_owned(),
    }
}

/// The server's message, not the client's wrapper text (nor the server's
/// detail, which can quote the values of a row: a key that is taken).
fn text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn pg_error(e: &postgres::Error) -> Error {
    use postgres::error::SqlState;
    let constraint = e.code().is_some_and(|c| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::EXCLUSION_VIOLATION,
        ]
        .contains(c)
    });
    if constraint {
        Error::Constraint(text(e))
    } else {
        Error::Database(text(e))
    }
}

/// Walks `sql`, calling `f` on each stretch of code outside string literals
/// (`'…'`, `E'…'` with backslash escapes, `$tag$…$tag$`), quoted names and
/// comments (`--` to the end of the line, nested `/* */`), and copying those
/// as they are.
fn outside_quotes(sql: &str, mut f: impl FnMut(&str, &mut String)) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let bytes = sql.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        let end = match bytes[i] {
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i < 2 || !(bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'));
                Some(literal_end(bytes, i + 1, escapes))
            }
            b'"' => Some(sql[i + 1..].find('"').map_or(sql.len(), |k| i + 1 + k + 1)),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                Some(sql[i..].find('\n').map_or(sql.len(), |k| i + k + 1))
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => Some(comment_end(bytes, i + 2)),
            b'$' => dollar_tag(sql, i).map(|tag| {
                let body = i + tag.len();
                sql[body..]
                    .find(tag)
                    .map_or(sql.len(), |k| body + k + tag.len())
            }),
            _ => None,
        };
        let Some(end) = end else {
            i += 1;
            continue;
        };
        f(&sql[start..i], &mut out);
        out.push_str(&sql[i..end]);
        i = end;
        start = end;
    }
    f(&sql[start..], &mut out);
    out
}

/// Where a `'…'` literal whose body starts at `from` ends (after its quote);
/// `''` is a quote inside it, and with `escapes` so is `\'`.
fn literal_end(bytes: &[u8], from: usize, escapes: bool) -> usize {
    let mut k = from;
    while k < bytes.len() {
        match bytes[k] {
            b'\\' if escapes => k += 2,
            b'\'' if bytes.get(k + 1) == Some(&b'\'') => k += 2,
            b'\'' => return k + 1,
            _ => k += 1,
        }
    }
    bytes.len()
}

/// Where a block comment whose body starts at `from` ends; they nest.
fn comment_end(bytes: &[u8], from: usize) -> usize {
    let (mut depth, mut k) = (1, from);
    while k < bytes.len() {
        if bytes[k] == b'/' && bytes.get(k + 1) == Some(&b'*') {
            depth += 1;
            k += 2;
        } else if bytes[k] == b'*' && bytes.get(k + 1) == Some(&b'/') {
            depth -= 1;
            k += 2;
            if depth == 0 {
                return k;
            }
        } else {
            k += 1;
        }
    }
    bytes.len()
}

/// The `$tag$` opening a dollar-quoted literal at `i`, if one does (`$1` is a
/// parameter, not a tag).
fn dollar_tag(sql: &str, i: usize) -> Option<&str> {
    let rest = &sql[i + 1..];
    let len = rest.find('$')?;
    let tag = &rest[..len];
    let starts_ok = tag
        .chars()
        .next()
        .is_none_or(|c| c.is_alphabetic() || c == '_');
    (starts_ok && tag.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then(|| &sql[i..i + len + 2])
}

/// `?1` → `$1`; a bare `?` takes the number after the highest so far (as in
/// SQLite).
fn placeholders(sql: &str) -> String {
    let mut highest = 0usize;
    outside_quotes(sql, |code, out| {
        let mut chars = code.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c != '?' {
                out.push(c);
                continue;
            }
            let mut digits = String::new();
            while let Some(&(_, d)) = chars.peek() {
                if !d.is_ascii_digit() {
                    break;
                }
                digits.push(d);
                chars.next();
            }
            if digits.is_empty() {
                highest += 1;
                digits = highest.to_string();
            } else if let Ok(n) = digits.parse::<usize>() {
                highest = highest.max(n);
            }
            out.push('$');
            out.push_str(&digits);
        }
    })
}

/// SQLite's table-definition dialect, as the project writes it, in
/// PostgreSQL's.
fn ddl(sql: &str) -> String {
    outside_quotes(sql, |code, out| {
        let mut words: Vec<String> = Vec::new();
        let mut word = String::new();
        let flush = |word: &mut String, words: &mut Vec<String>| {
            if !word.is_empty() {
                words.push(std::mem::take(word));
            }
        };
        for c in code.chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                flush(&mut word, &mut words);
                words.push(c.to_string());
            }
        }
        flush(&mut word, &mut words);
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let word_at = |k: usize| -> Option<&str> {
            // The next word after position k, skipping spaces.
            upper[k..]
                .iter()
                .find(|w| !w.trim().is_empty())
                .map(String::as_str)
        };
        let mut k = 0;
        while k < words.len() {
            match upper[k].as_str() {
                "INTEGER" => {
                    let rest = &upper[k + 1..];
                    let next_words: Vec<&str> = rest
                        .iter()
                        .filter(|w| !w.trim().is_empty())
                        .take(2)
                        .map(String::as_str)
                        .collect();
                    if next_words == ["PRIMARY", "KEY"] {
                        out.push_str("BIGINT GENERATED BY DEFAULT AS IDENTITY");
                    } else {
                        out.push_str("BIGINT");
                    }
                }
                "REAL" => out.push_str("DOUBLE PRECISION"),
                "BLOB" => out.push_str("BYTEA"),
                "WITHOUT" if word_at(k + 1) == Some("ROWID") => {
                    // Skip `WITHOUT`, the spaces and `ROWID`.
                    k += 1;
                    while k < words.len() && upper[k] != "ROWID" {
                        k += 1;
                    }
                }
                _ => out.push_str(&words[k]),
            }
            k += 1;
        }
    })
}

/// A parameter, converted to the type PostgreSQL asks for.
#[derive(Debug)]
struct Param<'a>(ValueRef<'a>);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let wrong = || -> Box<dyn std::error::Error + Sync + Send> {
            let kind = match self.0 {
                ValueRef::Null => "NULL",
                ValueRef::Integer(_) => "an integer",
                ValueRef::Real(_) => "a real",
                ValueRef::Text(_) => "text",
                ValueRef::Blob(_) => "a blob",
            };
            format!("{kind} cannot go into a `{ty}` column").into()
        };
        match (self.0, ty) {
            (ValueRef::Null, _) => return Ok(IsNull::Yes),
            (ValueRef::Integer(i), t) if *t == Type::INT8 => out.put_i64(i),
            // Text that is a number into a number column, as SQLite's column
            // affinity takes it (an instance id, which is text, into an
            // integer column).
            (ValueRef::Text(s), t)
                if [Type::INT8, Type::INT4, Type::INT2, Type::FLOAT8].contains(t)
                    && s.trim().parse::<f64>().is_ok() =>
            {
                let n = s.trim();
                if *t == Type::FLOAT8 {
                    out.put_f64(n.parse::<f64>().map_err(|_| wrong())?);
                } else {
                    let i = n.parse::<i64>().map_err(|_| wrong())?;
                    match t {
                        t if *t == Type::INT8 => out.put_i64(i),
                        t if *t == Type::INT4 => {
                            out.put_i32(i32::try_from(i).map_err(|_| wrong())?)
                        }
                        _ => out.put_i16(i16::try_from(i).map_err(|_| wrong())?),
                    }
                }
            }
            (ValueRef::Integer(i), t) if *t == Type::INT4 => {
                out.put_i32(i32::try_from(i).map_err(|_| wrong())?);
            }
            (ValueRef::Integer(i), t) if *t == Type::INT2 => {
                out.put_i16(i16::try_from(i).map_err(|_| wrong())?);
            }
            (ValueRef::Integer(i), t) if *t == Type::BOOL => out.put_u8(u8::from(i != 0)),
            #[allow(clippy::cast_precision_loss)] // as SQLite stores it in a REAL column
            (ValueRef::Integer(i), t) if *t == Type::FLOAT8 => out.put_f64(i as f64),
            (ValueRef::Real(f), t) if *t == Type::FLOAT8 => out.put_f64(f),
            #[allow(clippy::cast_possible_truncation)]
            (ValueRef::Real(f), t) if *t == Type::FLOAT4 => out.put_f32(f as f32),
            (ValueRef::Integer(i), t) if is_text(t) => out.put_slice(i.to_string().as_bytes()),
            (ValueRef::Real(f), t) if is_text(t) => out.put_slice(f.to_string().as_bytes()),
            (ValueRef::Text(s), t) if is_text(t) => out.put_slice(s.as_bytes()),
            (ValueRef::Text(s), t) if *t == Type::JSON => out.put_slice(s.as_bytes()),
            (ValueRef::Text(s), t) if *t == Type::JSONB => {
                out.put_u8(1);
                out.put_slice(s.as_bytes());
            }
            (ValueRef::Blob(b), t) if *t == Type::BYTEA => out.put_slice(b),
            _ => return Err(wrong()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn is_text(t: &Type) -> bool {
    [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
    ]
    .contains(t)
}

/// A column's bytes as the server sent them (binary format), with its type.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

struct PgRow<'r>(&'r postgres::Row);

impl RowSource for PgRow<'_> {
    fn value(&self, index: usize) -> Result<ValueRef<'_>> {
        let column = |message: String| Error::Column { index, message };
        let ty = self
            .0
            .columns()
            .get(index)
            .ok_or_else(|| column(format!("there is no column {index}")))?
            .type_();
        let raw: Option<Raw<'_>> = self.0.try_get(index).map_err(|e| column(e.to_string()))?;
        let Some(Raw(b)) = raw else {
            return Ok(ValueRef::Null);
        };
        let fixed = |n: usize| -> Result<&[u8]> {
            if b.len() == n {
                Ok(b)
            } else {
                Err(column(format!("a `{ty}` of {} bytes", b.len())))
            }
        };
        Ok(match ty {
            t if *t == Type::INT8 => {
                ValueRef::Integer(i64::from_be_bytes(fixed(8)?.try_into().unwrap_or([0; 8])))
            }
            t if *t == Type::INT4 => ValueRef::Integer(i64::from(i32::from_be_bytes(
                fixed(4)?.try_into().unwrap_or([0; 4]),
            ))),
            t if *t == Type::INT2 => ValueRef::Integer(i64::from(i16::from_be_bytes(
                fixed(2)?.try_into().unwrap_or([0; 2]),
            ))),
            t if *t == Type::BOOL => ValueRef::Integer(i64::from(fixed(1)?[0] != 0)),
            t if *t == Type::FLOAT8 => {
                ValueRef::Real(f64::from_be_bytes(fixed(8)?.try_into().unwrap_or([0; 8])))
            }
            t if *t == Type::FLOAT4 => ValueRef::Real(f64::from(f32::from_be_bytes(
                fixed(4)?.try_into().unwrap_or([0; 4]),
            ))),
            t if *t == Type::NUMERIC => numeric(b).map_err(column)?,
            t if is_text(t) || *t == Type::JSON => ValueRef::Text(
                std::str::from_utf8(b).map_err(|e| column(format!("text is not UTF-8: {e}")))?,
            ),
            t if *t == Type::JSONB => ValueRef::Text(
                std::str::from_utf8(b.get(1..).unwrap_or_default())
                    .map_err(|e| column(format!("text is not UTF-8: {e}")))?,
            ),
            t if *t == Type::BYTEA => ValueRef::Blob(b),
            t => return Err(column(format!("a `{t}` column cannot be read"))),
        })
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.0
            .columns()
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| Error::Database(format!("no column named `{name}`")))
    }
}

/// A `numeric` in PostgreSQL's binary form: an integer when it is whole and
/// fits, else the nearest double (±infinity and NaN as such). A buffer that is
/// not a numeric is an error, never a wrong number.
fn numeric(b: &[u8]) -> std::result::Result<ValueRef<'static>, String> {
    let word = |k: usize| -> std::result::Result<u16, String> {
        b.get(k..k + 2)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_be_bytes)
            .ok_or_else(|| "a truncated numeric".to_owned())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    if b.len() != 8 + 2 * ndigits {
        return Err(format!(
            "a numeric of {} bytes for {ndigits} digits",
            b.len()
        ));
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok(ValueRef::Real(f64::NAN)),
        0xD000 => return Ok(ValueRef::Real(f64::INFINITY)),
        0xF000 => return Ok(ValueRef::Real(f64::NEG_INFINITY)),
        other => return Err(format!("a numeric with sign {other:#06x}")),
    };
    // The decimal text, then parsed: exact for whole numbers, nearest for
    // the rest, and no overflow on the way.
    let mut text = String::with_capacity(ndigits * 4 + 8);
    if negative {
        text.push('-');
    }
    let mut whole = String::new();
    let mut fraction = String::new();
    for k in 0..ndigits {
        let d = word(8 + 2 * k)?;
        if d > 9999 {
            return Err(format!("a numeric digit of {d}"));
        }
        let power = weight - i32::try_from(k).unwrap_or(i32::MAX);
        if power >= 0 {
            whole.push_str(&format!("{d:04}"));
        } else {
            fraction.push_str(&format!("{d:04}"));
        }
    }
    // Digits left out between the last one given and the decimal point.
    let last = weight - i32::try_from(ndigits).unwrap_or(i32::MAX) + 1;
    if last > 0 && !whole.is_empty() {
        whole.push_str(&"0000".repeat(usize::try_from(last).unwrap_or(0)));
    }
    // Leading zero groups between the point and the first digit given.
    if weight < -1 {
        let gap = usize::try_from(-weight - 1).unwrap_or(0);
        fraction.insert_str(0, &"0000".repeat(gap));
    }
    let whole = whole.trim_start_matches('0');
    let has_fraction = fraction.bytes().any(|c| c != b'0');
    if !has_fraction {
        let digits = if whole.is_empty() { "0" } else { whole };
        text.push_str(digits);
        if let Ok(i) = text.parse::<i64>() {
            return Ok(ValueRef::Integer(i));
        }
    } else {
        text.push_str(if whole.is_empty() { "0" } else { whole });
        text.push('.');
        text.push_str(&fraction);
    }
    text.parse::<f64>()
        .map(ValueRef::Real)
        .map_err(|e| format!("a numeric that is not a number: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            placeholders("SELECT ?1, '?2 it''s', \"a?\" FROM t WHERE x = ?2 -- ?3\n AND y = ?"),
            "SELECT $1, '?2 it''s', \"a?\" FROM t WHERE x = $2 -- ?3\n AND y = $3",
            "a bare ? takes the number after the highest, as in SQLite"
        );
        assert_eq!(placeholders("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
        assert_eq!(
            placeholders(r"SELECT E'\'?', ?1"),
            r"SELECT E'\'?', $1",
            "an escaped quote does not end an E'' literal"
        );
        assert_eq!(
            placeholders("SELECT $$ it's ? $$, $tag$ ? $tag$, ?"),
            "SELECT $$ it's ? $$, $tag$ ? $tag$, $1",
            "dollar-quoted bodies are left alone"
        );
        assert_eq!(
            placeholders("SELECT /* a /* b */ ? */ ?"),
            "SELECT /* a /* b */ ? */ $1",
            "block comments nest"
        );
    }

    #[test]
    fn table_definitions_are_translated() {
        assert_eq!(
            ddl(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, n integer NOT NULL, x REAL, b BLOB, s TEXT DEFAULT 'INTEGER') WITHOUT ROWID;"
            ),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, x DOUBLE PRECISION, b BYTEA, s TEXT DEFAULT 'INTEGER') ;"
        );
    }

    #[test]
    fn numerics_read_exactly_or_are_refused() {
        let n = |ndigits: u16, weight: i16, sign: u16, digits: &[u16]| -> Vec<u8> {
            let mut b = Vec::new();
            for w in [ndigits, weight as u16, sign, 0] {
                b.extend_from_slice(&w.to_be_bytes());
            }
            for d in digits {
                b.extend_from_slice(&d.to_be_bytes());
            }
            b
        };
        // 12345678 = 1234·10⁴ + 5678.
        assert_eq!(
            numeric(&n(2, 1, 0, &[1234, 5678])),
            Ok(ValueRef::Integer(12_345_678))
        );
        // 50000 = 5·10⁴, the trailing group left out.
        assert_eq!(numeric(&n(1, 1, 0, &[5])), Ok(ValueRef::Integer(50_000)));
        // -2.5 = -(2 + 5000·10⁻⁴).
        assert_eq!(
            numeric(&n(2, 0, 0x4000, &[2, 5000])),
            Ok(ValueRef::Real(-2.5))
        );
        // 0.00005 = 5000·10⁻⁸.
        assert_eq!(numeric(&n(1, -2, 0, &[5000])), Ok(ValueRef::Real(0.00005)));
        assert_eq!(numeric(&n(0, 0, 0, &[])), Ok(ValueRef::Integer(0)));
        assert_eq!(
            numeric(&n(0, 0, 0xD000, &[])),
            Ok(ValueRef::Real(f64::INFINITY))
        );
        assert_eq!(
            numeric(&n(0, 0, 0xF000, &[])),
            Ok(ValueRef::Real(f64::NEG_INFINITY))
        );
        assert!(matches!(numeric(&n(0, 0, 0xC000, &[])), Ok(ValueRef::Real(f)) if f.is_nan()));
        // Too large for an integer: the nearest double, not a wrap or a NaN.
        assert_eq!(numeric(&n(2, 10, 0, &[1, 0])), Ok(ValueRef::Real(1e40)));
        assert_eq!(
            numeric(&n(2, 100, 0, &[1, 0])),
            Ok(ValueRef::Real(f64::INFINITY))
        );
        assert!(numeric(&[0, 1, 0]).is_err(), "truncated");
        assert!(
            numeric(&n(2, 0, 0, &[1])).is_err(),
            "fewer digits than it says"
        );
        assert!(numeric(&n(1, 0, 0x1234, &[1])).is_err(), "no such sign");
        assert!(
            numeric(&n(1, 0, 0, &[10_000])).is_err(),
            "a digit past 9999"
        );
    }

    #[test]
    fn a_password_is_never_shown() {
        for url in [
            "postgres://ordo:s3cret@db:5432/ordo",
            "postgres://ordo@db/ordo?password=s3cret",
            "host=db user=ordo password=s3cret dbname=ordo",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("s3cret"), "{url} → {shown}");
            assert!(shown.contains("db") && shown.contains("ordo"), "{shown}");
        }
    }
}
