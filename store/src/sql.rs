//! The backend-neutral SQL handle.
//!
//! Plugins, inline actions and the people directory speak SQL to whichever
//! database runs: they receive a `&dyn Sql` (inside [`Engine::write`]'s unit of
//! work, or on a read connection) and never a driver's own type. The handle has
//! two required methods, [`Sql::execute`] and [`Sql::query`]; everything else
//! ([`SqlExt::query_row`], [`SqlExt::query_opt`], [`SqlExt::query_map`],
//! [`SqlExt::savepoint`]) is built on them.
//!
//! The SQL written against it is kept portable between SQLite and PostgreSQL:
//! numbered placeholders `?1`, `?2`, … (a PostgreSQL backend rewrites them to
//! `$1`, `$2`), `INSERT … RETURNING id` instead of a last-row-id call,
//! `ON CONFLICT … DO …` instead of `INSERT OR …`, and timestamps as RFC 3339
//! text written by the caller rather than the database's date functions.
//! Where a statement truly must differ (table definitions), [`Sql::backend`]
//! says which one runs.
//!
//! [`Engine::write`]: ../ordo_engine/struct.Engine.html#method.write

use crate::{Error, Result};

/// Which database a handle speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A value as a statement takes or a row gives it, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also booleans, as 0 and 1).
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A value borrowed from a parameter or a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

impl ValueRef<'_> {
    /// The owned value.
    pub fn to_owned_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(t.to_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }

    fn kind(self) -> &'static str {
        match self {
            ValueRef::Null => "NULL",
            ValueRef::Integer(_) => "an integer",
            ValueRef::Real(_) => "a real",
            ValueRef::Text(_) => "text",
            ValueRef::Blob(_) => "a blob",
        }
    }
}

/// Something a statement can take as a parameter.
pub trait ToSql {
    /// The value, or why it cannot be stored (an unsigned number too large).
    fn to_sql(&self) -> Result<ValueRef<'_>>;
}

/// Something a row's column can be read as.
pub trait FromSql: Sized {
    /// The value, or why the column does not hold one.
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String>;
}

/// The parameters of a statement: `params![a, b]` builds one.
pub type Params<'a> = &'a [&'a dyn ToSql];

/// Builds a statement's parameter list: `params![name, 3]`.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::sql::ToSql]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::sql::ToSql),+] as &[&dyn $crate::sql::ToSql]
    };
}

/// A list of owned values as parameters (for statements built at run time).
pub fn param_refs(values: &[Value]) -> Vec<&dyn ToSql> {
    values.iter().map(|v| v as &dyn ToSql).collect()
}

/// One row of a result, as a backend gives it.
pub trait RowSource {
    /// Column `index` (0-based).
    fn value(&self, index: usize) -> Result<ValueRef<'_>>;
    /// The index of the column named `name`.
    fn index_of(&self, name: &str) -> Result<usize>;
}

/// One row of a result.
pub struct Row<'r> {
    source: &'r dyn RowSource,
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row").finish_non_exhaustive()
    }
}

impl<'r> Row<'r> {
    /// A row over what a backend gives.
    pub fn new(source: &'r dyn RowSource) -> Row<'r> {
        Row { source }
    }

    /// Column `index` (a 0-based position or a column name) as a `T`.
    pub fn get<T: FromSql>(&self, index: impl RowIndex) -> Result<T> {
        let i = index.index(self.source)?;
        let v = self.source.value(i)?;
        T::from_sql(v).map_err(|message| Error::Column { index: i, message })
    }
}

/// A column position or name.
pub trait RowIndex {
    /// The position.
    fn index(&self, row: &dyn RowSource) -> Result<usize>;
}

impl RowIndex for usize {
    fn index(&self, _: &dyn RowSource) -> Result<usize> {
        Ok(*self)
    }
}

impl RowIndex for &str {
    fn index(&self, row: &dyn RowSource) -> Result<usize> {
        row.index_of(self)
    }
}

/// The transaction (or read connection) handle. Object safe: plugins receive
/// `&dyn Sql`.
pub trait Sql {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Runs one statement that returns no rows; the number of rows it changed.
    ///
    /// A statement that fails changes nothing; but on PostgreSQL it also
    /// ends the transaction it ran in (every later statement is refused until
    /// a rollback), where SQLite lets the transaction go on. Code that goes on
    /// after a failed statement runs it in [`SqlExt::savepoint`], as the
    /// engine's writer runs each unit of work.
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize>;

    /// Runs one query and gives each row to `each`, in order; an error from
    /// `each` stops the query and is returned.
    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
        each: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()>;

    /// Runs statements separated by `;`, without parameters (schema changes).
    fn execute_batch(&self, sql: &str) -> Result<()>;
}

impl std::fmt::Debug for dyn Sql + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// What every [`Sql`] handle can do, built on its two methods.
pub trait SqlExt: Sql {
    /// The first row of a query, mapped; [`Error::NoRows`] when there is none.
    fn query_row<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, f)?.ok_or(Error::NoRows)
    }

    /// The first row of a query, mapped, if there is one.
    fn query_opt<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut f = Some(f);
        let mut out = None;
        self.query(sql, params, &mut |row| {
            if let Some(f) = f.take() {
                out = Some(f(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every row of a query, mapped.
    fn query_map<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.query(sql, params, &mut |row| {
            out.push(f(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `f` in a savepoint named `name` (letters, digits and `_`):
    /// released when `f` succeeds, rolled back (nothing of it stays) when it
    /// fails. If the rollback itself fails, `f`'s error is still the one
    /// returned. A panic in `f` leaves the savepoint to the transaction around
    /// it (the engine's writer rolls back a panicking unit's own savepoint).
    fn savepoint<T, E: From<Error>>(
        &self,
        name: &str,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Parameter(format!(
                "`{name}` cannot name a savepoint: use letters, digits and `_`"
            ))
            .into());
        }
        self.execute(&format!("SAVEPOINT {name}"), &[])?;
        let undo = |this: &Self| {
            let _ = this.execute(&format!("ROLLBACK TO {name}"), &[]);
            let _ = this.execute(&format!("RELEASE {name}"), &[]);
        };
        match f() {
            Ok(v) => match self.execute(&format!("RELEASE {name}"), &[]) {
                Ok(_) => Ok(v),
                Err(e) => {
                    undo(self);
                    Err(e.into())
                }
            },
            Err(e) => {
                undo(self);
                Err(e)
            }
        }
    }
}

impl<S: Sql + ?Sized> SqlExt for S {}

/// A reference to a handle is a handle (so `&tx` works where `tx` is already
/// a `&dyn Sql`).
impl<S: Sql + ?Sized> Sql for &S {
    fn backend(&self) -> Backend {
        (**self).backend()
    }
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize> {
        (**self).execute(sql, params)
    }
    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
        each: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        (**self).query(sql, params, each)
    }
    fn execute_batch(&self, sql: &str) -> Result<()> {
        (**self).execute_batch(sql)
    }
}

// --- conversions -----------------------------------------------------------

impl ToSql for ValueRef<'_> {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(*self)
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        })
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Text(self))
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Text(self))
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Blob(self))
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Blob(self))
    }
}

impl ToSql for bool {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Integer(i64::from(*self)))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Real(*self))
    }
}

macro_rules! exact_integer {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> Result<ValueRef<'_>> {
                i64::try_from(*self).map(ValueRef::Integer).map_err(|_| {
                    Error::Parameter(format!("{self} is too large for a 64-bit integer column"))
                })
            }
        }
        impl FromSql for $t {
            fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
                match v {
                    ValueRef::Integer(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} does not fit in {}", stringify!($t))),
                    other => Err(format!("expected an integer, found {}", other.kind())),
                }
            }
        }
    )*};
}
exact_integer!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        match self {
            Some(v) => v.to_sql(),
            None => Ok(ValueRef::Null),
        }
    }
}

impl FromSql for String {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Text(t) => Ok(t.to_owned()),
            other => Err(format!("expected text, found {}", other.kind())),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(t) => Ok(t.as_bytes().to_vec()),
            other => Err(format!("expected a blob, found {}", other.kind())),
        }
    }
}

impl FromSql for bool {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Integer(i) => Ok(i != 0),
            other => Err(format!("expected a boolean, found {}", other.kind())),
        }
    }
}

impl FromSql for f64 {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Real(f) => Ok(f),
            // An integer column read as a number: exact up to 2^53.
            #[allow(clippy::cast_precision_loss)]
            ValueRef::Integer(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {}", other.kind())),
        }
    }
}

impl FromSql for Value {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        Ok(v.to_owned_value())
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

// --- SQLite ----------------------------------------------------------------

struct P<'a>(&'a dyn ToSql);

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as R};
        let v = self
            .0
            .to_sql()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(ToSqlOutput::Borrowed(match v {
            ValueRef::Null => R::Null,
            ValueRef::Integer(i) => R::Integer(i),
            ValueRef::Real(f) => R::Real(f),
            ValueRef::Text(t) => R::Text(t.as_bytes()),
            ValueRef::Blob(b) => R::Blob(b),
        }))
    }
}

impl RowSource for rusqlite::Row<'_> {
    fn value(&self, index: usize) -> Result<ValueRef<'_>> {
        use rusqlite::types::ValueRef as R;
        Ok(match self.get_ref(index)? {
            R::Null => ValueRef::Null,
            R::Integer(i) => ValueRef::Integer(i),
            R::Real(f) => ValueRef::Real(f),
            R::Text(t) => ValueRef::Text(std::str::from_utf8(t).map_err(|e| Error::Column {
                index,
                message: format!("text is not UTF-8: {e}"),
            })?),
            R::Blob(b) => ValueRef::Blob(b),
        })
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        Ok(self.as_ref().column_index(name)?)
    }
}

fn bind(params: Params<'_>) -> rusqlite::ParamsFromIter<impl Iterator<Item = P<'_>>> {
    rusqlite::params_from_iter(params.iter().map(|p| P(*p)))
}

impl Sql for rusqlite::Connection {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize> {
        Ok(self.prepare_cached(sql)?.execute(bind(params))?)
    }

    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
        each: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.prepare_cached(sql)?;
        let mut rows = st.query(bind(params))?;
        while let Some(r) = rows.next()? {
            each(&Row::new(r))?;
        }
        Ok(())
    }

    fn execute_batch(&self, sql: &str) -> Result<()> {
        Ok(rusqlite::Connection::execute_batch(self, sql)?)
    }
}

#[cfg(test)]
mod tests {
    //! Each test runs on every backend there is (`crate::testdb`).
    use super::*;
    use crate::testdb::{TestDb, databases};

    fn dbs() -> Vec<TestDb> {
        let all = databases().expect("test databases");
        for db in &all {
            db.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, x REAL)",
            )
            .expect("table");
        }
        all
    }

    #[test]
    fn values_go_in_and_come_back_typed() {
        for db in dbs() {
            let sql: &dyn Sql = &*db;
            let id: i64 = sql
                .query_row(
                    "INSERT INTO t (name, n, x) VALUES (?1, ?2, ?3) RETURNING id",
                    params!["ann", 7u32, 2.5],
                    |r| r.get(0),
                )
                .expect("insert");
            let (name, n, x): (String, u32, f64) = sql
                .query_row("SELECT name, n, x FROM t WHERE id = ?1", params![id], |r| {
                    Ok((r.get("name")?, r.get(1)?, r.get(2)?))
                })
                .expect("row");
            assert_eq!((name.as_str(), n, x), ("ann", 7, 2.5));
            let none: Option<String> = sql
                .query_opt("SELECT name FROM t WHERE id = ?1", params![id + 1], |r| {
                    r.get(0)
                })
                .expect("query");
            assert_eq!(none, None);
            assert!(matches!(
                sql.query_row("SELECT name FROM t WHERE id = 99", params![], |r| r
                    .get::<String>(0)),
                Err(Error::NoRows)
            ));
        }
    }

    #[test]
    fn a_wrong_type_or_a_too_large_number_is_an_error_not_a_panic() {
        for db in dbs() {
            let sql: &dyn Sql = &*db;
            sql.execute("INSERT INTO t (name, n) VALUES ('x', -1)", params![])
                .expect("insert");
            let e = sql
                .query_row("SELECT n FROM t", params![], |r| r.get::<u32>(0))
                .expect_err("negative into u32");
            assert!(e.to_string().contains("does not fit in u32"), "{e}");
            let e = sql
                .query_row("SELECT name FROM t", params![], |r| r.get::<i64>(0))
                .expect_err("text into i64");
            assert!(
                e.to_string().contains("expected an integer, found text"),
                "{e}"
            );
            let e = sql
                .execute("INSERT INTO t (n) VALUES (?1)", params![u64::MAX])
                .expect_err("u64::MAX");
            assert!(e.to_string().contains("too large"), "{e}");
        }
    }

    #[test]
    fn a_failed_savepoint_leaves_nothing_and_an_ok_one_stays() {
        for db in dbs() {
            let sql: &dyn Sql = &*db;
            let r: std::result::Result<(), Error> = sql.savepoint("s", || {
                sql.execute("INSERT INTO t (name) VALUES ('gone')", params![])?;
                Err(Error::NoRows)
            });
            assert!(r.is_err());
            sql.savepoint("s", || {
                sql.execute("INSERT INTO t (name) VALUES ('kept')", params![])
            })
            .expect("savepoint");
            let names = sql
                .query_map("SELECT name FROM t ORDER BY id", params![], |r| {
                    r.get::<String>(0)
                })
                .expect("names");
            assert_eq!(names, ["kept"]);
            let bad: std::result::Result<(), Error> = sql.savepoint("x; DROP TABLE t", || Ok(()));
            assert!(matches!(bad, Err(Error::Parameter(_))), "{bad:?}");
        }
    }

    #[test]
    fn rows_stream_in_order_and_an_error_stops_them() {
        for db in dbs() {
            let sql: &dyn Sql = &*db;
            for i in 0..5 {
                sql.execute("INSERT INTO t (n) VALUES (?1)", params![i])
                    .expect("insert");
            }
            let values = param_refs(&[Value::Integer(1), Value::Integer(3)]).len();
            assert_eq!(values, 2);
            let mut seen = Vec::new();
            let r = sql.query("SELECT n FROM t ORDER BY n", params![], &mut |row| {
                let n: i64 = row.get(0)?;
                if n == 3 {
                    return Err(Error::Parameter("stop".into()));
                }
                seen.push(n);
                Ok(())
            });
            assert!(r.is_err());
            assert_eq!(seen, [0, 1, 2]);
        }
    }

    #[test]
    fn postgres_types_read_as_their_values() {
        for db in dbs() {
            if db.backend() != Backend::Postgres {
                continue;
            }
            let sql: &dyn Sql = &*db;
            let row = sql
                .query_row(
                    "SELECT true, 1.5::real, 7::smallint, '\\x0102'::bytea, '{\"a\": 1}'::json,
                            '{\"b\": 2}'::jsonb, 'Infinity'::numeric, 12.50::numeric, 'x'::varchar",
                    params![],
                    |r| {
                        Ok((
                            r.get::<bool>(0)?,
                            r.get::<f64>(1)?,
                            r.get::<i64>(2)?,
                            r.get::<Vec<u8>>(3)?,
                            r.get::<String>(4)?,
                            r.get::<String>(5)?,
                            r.get::<f64>(6)?,
                            r.get::<f64>(7)?,
                            r.get::<String>(8)?,
                        ))
                    },
                )
                .expect("row");
            assert_eq!(
                row,
                (
                    true,
                    1.5,
                    7,
                    vec![1, 2],
                    "{\"a\": 1}".to_owned(),
                    "{\"b\": 2}".to_owned(),
                    f64::INFINITY,
                    12.5,
                    "x".to_owned()
                )
            );
            // Text that is a number goes into a number column, as SQLite's
            // affinity takes it.
            sql.execute("INSERT INTO t (n) VALUES (?1)", params!["12"])
                .expect("a number as text");
            let n: i64 = sql
                .query_row("SELECT n FROM t WHERE n = 12", params![], |r| r.get(0))
                .expect("stored as a number");
            assert_eq!(n, 12);
            // PostgreSQL cannot hold a NUL character in text: a bad parameter,
            // refused before the server sees it (the transaction goes on).
            let e = sql
                .execute("INSERT INTO t (name) VALUES (?1)", params!["a\0b"])
                .expect_err("a NUL character");
            assert!(matches!(e, Error::Parameter(_)), "{e}");
            // A value the column cannot take is refused, naming no value.
            let e = sql
                .execute("INSERT INTO t (n) VALUES (?1)", params!["twelve"])
                .expect_err("text into a bigint");
            assert!(
                e.to_string()
                    .contains("text cannot go into a `int8` column"),
                "{e}"
            );
        }
    }
}
