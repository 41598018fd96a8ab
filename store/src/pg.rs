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

use crate::sql::{Backend, Params, Row, RowSource, Sql, ValueRef};
use crate::{Error, Result};
use bytes::BufMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use std::cell::RefCell;
use std::collections::HashMap;

/// A connection to a PostgreSQL database.
pub struct PgConn {
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

impl PgConn {
    /// Connects to `url` (`postgres://user:password@host:port/database`).
    pub fn connect(url: &str) -> Result<PgConn> {
        let client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| {
            Error::Database(format!(
                "cannot connect to PostgreSQL at {}: {}",
                redact(url),
                text(&e)
            ))
        })?;
        Ok(PgConn {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
        })
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement> {
        if let Some(st) = self.statements.borrow().get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .borrow_mut()
            .prepare(&placeholders(sql))
            .map_err(|e| pg_error(&e))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    fn bound<'p>(params: Params<'p>) -> Result<Vec<Param<'p>>> {
        params.iter().map(|p| p.to_sql().map(Param)).collect()
    }
}

impl Sql for PgConn {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize> {
        let st = self.statement(sql)?;
        let values = Self::bound(params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let n = self
            .client
            .borrow_mut()
            .execute(&st, &refs)
            .map_err(|e| pg_error(&e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
        each: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let st = self.statement(sql)?;
        let values = Self::bound(params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let rows = self
            .client
            .borrow_mut()
            .query(&st, &refs)
            .map_err(|e| pg_error(&e))?;
        for r in &rows {
            each(&Row::new(&PgRow(r)))?;
        }
        Ok(())
    }

    fn execute_batch(&self, sql: &str) -> Result<()> {
        // A table definition may change what a kept statement means.
        self.statements.borrow_mut().clear();
        self.client
            .borrow_mut()
            .batch_execute(&ddl(sql))
            .map_err(|e| pg_error(&e))
    }
}

/// The password of a connection URL, hidden for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The server's message (and detail), not the client's wrapper text.
fn text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_owned(),
        },
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

/// Walks `sql`, calling `f` on each stretch of code outside string literals,
/// quoted names and comments, and copying those as they are.
fn outside_quotes(sql: &str, mut f: impl FnMut(&str, &mut String)) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let bytes = sql.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        let close = match bytes[i] {
            b'\'' => Some("'"),
            b'"' => Some("\""),
            b'-' if bytes.get(i + 1) == Some(&b'-') => Some("\n"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => Some("*/"),
            _ => None,
        };
        let Some(close) = close else {
            i += 1;
            continue;
        };
        f(&sql[start..i], &mut out);
        let from = if close.len() == 2 { i + 2 } else { i + 1 };
        // `''` inside a literal is a quote, not its end: the search goes on.
        let end = sql[from..]
            .find(close)
            .map_or(sql.len(), |k| from + k + close.len());
        out.push_str(&sql[i..end]);
        i = end;
        start = end;
    }
    f(&sql[start..], &mut out);
    out
}

/// `?1` → `$1`; a bare `?` takes the next number.
fn placeholders(sql: &str) -> String {
    let mut next = 0usize;
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
                next += 1;
                digits = next.to_string();
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
            format!("{:?} cannot go into a `{ty}` column", self.0).into()
        };
        match (self.0, ty) {
            (ValueRef::Null, _) => return Ok(IsNull::Yes),
            (ValueRef::Integer(i), t) if *t == Type::INT8 => out.put_i64(i),
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
/// fits, else the nearest double.
fn numeric(b: &[u8]) -> std::result::Result<ValueRef<'static>, String> {
    let word = |k: usize| -> std::result::Result<i16, String> {
        b.get(k..k + 2)
            .and_then(|s| s.try_into().ok())
            .map(i16::from_be_bytes)
            .ok_or_else(|| "a truncated numeric".to_owned())
    };
    let ndigits = usize::try_from(word(0)?).map_err(|_| "a numeric with negative digits")?;
    let weight = i32::from(word(2)?);
    let sign = u16::from_be_bytes(
        b.get(4..6)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 2]),
    );
    if sign == 0xC000 {
        return Ok(ValueRef::Real(f64::NAN));
    }
    let negative = sign == 0x4000;
    let mut whole: Option<i64> = Some(0);
    let mut value = 0f64;
    let mut fraction = false;
    for k in 0..ndigits {
        let d = i64::from(word(8 + 2 * k)?);
        let power = weight - i32::try_from(k).unwrap_or(i32::MAX);
        value += (d as f64) * 10_000f64.powi(power);
        if power < 0 {
            fraction |= d != 0;
        } else {
            whole = whole.and_then(|w| {
                10_000i64
                    .checked_pow(u32::try_from(power).unwrap_or(u32::MAX))
                    .and_then(|p| d.checked_mul(p))
                    .and_then(|x| w.checked_add(x))
            });
        }
    }
    Ok(match whole {
        Some(w) if !fraction => ValueRef::Integer(if negative { -w } else { w }),
        _ => ValueRef::Real(if negative { -value } else { value }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            placeholders("SELECT ?1, '?2 it''s', \"a?\" FROM t WHERE x = ?2 -- ?3\n AND y = ?"),
            "SELECT $1, '?2 it''s', \"a?\" FROM t WHERE x = $2 -- ?3\n AND y = $1"
        );
        assert_eq!(placeholders("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
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
    fn numerics_read_as_integers_when_whole() {
        // 12345678 = 1234·10⁴ + 5678: weight 1, two digits.
        let n = [0, 2, 0, 1, 0, 0, 0, 0, 0x04, 0xD2, 0x16, 0x2E];
        assert_eq!(numeric(&n), Ok(ValueRef::Integer(12_345_678)));
        // -2.5 = -(2·10⁰ + 5000·10⁻⁴).
        let n = [0, 2, 0, 0, 0x40, 0, 0, 1, 0, 2, 0x13, 0x88];
        assert_eq!(numeric(&n), Ok(ValueRef::Real(-2.5)));
        // Zero has no digits.
        assert_eq!(numeric(&[0, 0, 0, 0, 0, 0, 0, 0]), Ok(ValueRef::Integer(0)));
    }

    #[test]
    fn a_password_is_not_shown() {
        assert_eq!(
            redact("postgres://ordo:s3cret@db:5432/ordo"),
            "postgres://ordo:***@db:5432/ordo"
        );
    }
}
