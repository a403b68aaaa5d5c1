//! One SQL text for both backends.
//!
//! The store's statements are written once, with `?` placeholders, and run through sqlx's
//! `Any` driver on SQLite or PostgreSQL. PostgreSQL knows only numbered placeholders (`$1`),
//! and SQLite knows them too, so every statement is rewritten to them before it runs, on
//! both backends: what a test proves on SQLite is the very text PostgreSQL is sent. A static
//! statement is rewritten once per process; a built one (a filter, a batch) each time.
//!
//! The rewrite follows SQLite's own numbering: `?NNN` is parameter NNN, and a bare `?` is one
//! past the largest number used so far. Placeholders inside quoted strings, quoted names and
//! comments are left alone.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AssertSqlSafe, Execute, FromRow, QueryBuilder};
use sqlx_core::any::AnyValueKind;

use super::Backend;

/// A statement's text: a static string (rewritten once per backend and kept), or one built
/// at run time.
pub(crate) trait Sql {
    fn into_text(self) -> Text;
}

/// A statement's text as written (with `?` placeholders).
pub(crate) enum Text {
    Static(&'static str),
    Owned(String),
}

impl Sql for &'static str {
    fn into_text(self) -> Text {
        Text::Static(self)
    }
}

impl Sql for AssertSqlSafe<String> {
    fn into_text(self) -> Text {
        Text::Owned(self.0)
    }
}

impl Sql for AssertSqlSafe<&str> {
    fn into_text(self) -> Text {
        Text::Owned(self.0.to_owned())
    }
}

/// The rewritten static statements, by address and length of the original and backend.
type Rewritten = HashMap<(usize, usize, Backend), &'static str>;
static REWRITTEN: LazyLock<RwLock<Rewritten>> = LazyLock::new(Default::default);

impl Text {
    /// The text `backend` is sent.
    fn for_backend(self, backend: Backend) -> sqlx::SqlStr {
        match self {
            Self::Static(s) => {
                let key = (s.as_ptr() as usize, s.len(), backend);
                let cached = REWRITTEN
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .copied();
                let text = cached.unwrap_or_else(|| {
                    // The store holds a few hundred statements: each is leaked once per
                    // backend, on first use.
                    let text: &'static str = match rewrite(s, backend) {
                        std::borrow::Cow::Borrowed(t) => t,
                        std::borrow::Cow::Owned(t) => Box::leak(t.into_boxed_str()),
                    };
                    REWRITTEN
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, text);
                    text
                });
                sqlx::SqlSafeStr::into_sql_str(text)
            }
            Self::Owned(s) => {
                sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(rewrite(&s, backend).into_owned()))
            }
        }
    }
}

/// What a statement runs on: a pool, or a connection (a transaction's).
pub(crate) enum Exec<'a> {
    Pool(&'a sqlx::AnyPool),
    Conn(&'a mut sqlx::AnyConnection),
    /// One of the store's pools, whose connections may be lent (`lending.rs`).
    Lending(&'a super::lending::Lending),
    /// The process's own SQLite writer, in a transaction (`direct.rs`).
    Direct(&'a mut super::direct::DirectConn),
    /// A read pool, for a hot look-up (`Lending::quick`).
    Quick(&'a super::lending::Lending),
}

impl Exec<'_> {
    fn backend(&self) -> Backend {
        match self {
            Self::Pool(p) => Backend::of_url(p.connect_options().database_url.as_str()),
            Self::Lending(l) => l.backend(),
            Self::Direct(_) => Backend::Sqlite,
            Self::Quick(l) => l.backend(),
            Self::Conn(c) => {
                if c.backend_name().eq_ignore_ascii_case("postgresql") {
                    Backend::Postgres
                } else {
                    Backend::Sqlite
                }
            }
        }
    }
}

impl<'a> From<&'a sqlx::AnyPool> for Exec<'a> {
    fn from(p: &'a sqlx::AnyPool) -> Self {
        Self::Pool(p)
    }
}

impl<'a> From<&'a super::lending::Lending> for Exec<'a> {
    fn from(l: &'a super::lending::Lending) -> Self {
        Self::Lending(l)
    }
}

impl<'a> From<&'a mut super::lending::Conn> for Exec<'a> {
    fn from(c: &'a mut super::lending::Conn) -> Self {
        match c {
            super::lending::Conn::Pooled(lent) => Self::Conn(lent.conn()),
            super::lending::Conn::Direct(d) => Self::Direct(d),
        }
    }
}

impl<'a> From<super::lending::Quick<'a>> for Exec<'a> {
    fn from(q: super::lending::Quick<'a>) -> Self {
        Self::Quick(q.0)
    }
}

impl<'a> From<&'a mut sqlx::AnyConnection> for Exec<'a> {
    fn from(c: &'a mut sqlx::AnyConnection) -> Self {
        Self::Conn(c)
    }
}

/// What a statement's caller wants of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// How many rows it changed.
    Execute,
    All,
    /// The first row (an error if none).
    One,
    /// The first row, if any.
    Optional,
}

/// What a statement gave.
enum Out {
    Done(sqlx::any::AnyQueryResult),
    Rows(Vec<AnyRow>),
}

impl Out {
    fn done(self) -> sqlx::any::AnyQueryResult {
        match self {
            Self::Done(d) => d,
            Self::Rows(r) => sqlx::any::AnyQueryResult {
                rows_affected: r.len() as u64,
                last_insert_id: None,
            },
        }
    }

    fn rows(self) -> Vec<AnyRow> {
        match self {
            Self::Done(_) => Vec::new(),
            Self::Rows(r) => r,
        }
    }

    fn first(self) -> Option<AnyRow> {
        self.rows().into_iter().next()
    }
}

impl Want {
    /// Only the first row is wanted.
    fn one(self) -> bool {
        matches!(self, Self::One | Self::Optional)
    }
}

/// What the process's own SQLite writer gave, as `want` wants it.
fn direct_out(
    (rows, done): (Vec<AnyRow>, sqlx::any::AnyQueryResult),
    want: Want,
) -> Result<Out, sqlx::Error> {
    match want {
        Want::Execute => Ok(Out::Done(done)),
        Want::All | Want::Optional => Ok(Out::Rows(rows)),
        Want::One if rows.is_empty() => Err(sqlx::Error::RowNotFound),
        Want::One => Ok(Out::Rows(rows)),
    }
}

/// Runs `$q` (a sqlx query) on the pool or connection `$ex` (not `Exec::Direct`) for `$want`.
macro_rules! run {
    ($q:expr, $ex:expr, $want:expr) => {
        match $want {
            Want::Execute => run!(@ $q, $ex, execute).map(Out::Done),
            Want::All => run!(@ $q, $ex, fetch_all).map(Out::Rows),
            Want::One => run!(@ $q, $ex, fetch_one).map(|r| Out::Rows(vec![r])),
            Want::Optional => {
                run!(@ $q, $ex, fetch_optional).map(|r| Out::Rows(r.into_iter().collect()))
            }
        }
    };
    (@ $q:expr, $ex:expr, $method:ident) => {
        match $ex {
            Exec::Pool(p) => $q.$method(p).await,
            Exec::Conn(c) => $q.$method(c).await,
            Exec::Lending(l) => {
                let mut lent = l.lend_for_statements().await?;
                let out = $q.$method(lent.conn()).await;
                if out.is_ok() {
                    lent.done();
                }
                out
            }
            Exec::Direct(_) | Exec::Quick(_) => {
                unreachable!("direct statements and look-ups do not run through sqlx")
            }
        }
    };
}

/// A statement and its arguments, sent when it runs: the text is rewritten for the backend
/// of the pool or connection it runs on.
pub(crate) struct Stmt {
    text: Text,
    args: AnyArguments,
    /// The first argument that did not encode, reported when the statement runs.
    error: Option<sqlx::error::BoxDynError>,
}

impl Stmt {
    fn new(text: Text) -> Self {
        Self {
            text,
            args: AnyArguments::default(),
            error: None,
        }
    }

    fn bind<'t, T>(mut self, value: T) -> Self
    where
        T: sqlx::Encode<'t, Any> + sqlx::Type<Any>,
    {
        if self.error.is_none()
            && let Err(e) = sqlx::Arguments::add(&mut self.args, value)
        {
            self.error = Some(e);
        }
        self
    }

    /// Runs the statement on `ex` for `want`.
    async fn run(self, mut ex: Exec<'_>, want: Want) -> Result<Out, sqlx::Error> {
        match &mut ex {
            Exec::Direct(d) => {
                let (text, args) = self.for_direct()?;
                return direct_out(d.run(&text, &args, want.one())?, want);
            }
            Exec::Lending(l) => {
                if let Some(direct) = l.direct() {
                    // A statement of its own, in a writer's turn (given up after the
                    // connection, declared first): its own transaction if it writes.
                    let _turn = l.statement_turn().await?;
                    let mut conn = super::direct::DirectConn::acquire(direct).await?;
                    let (text, args) = self.for_direct()?;
                    let writes = !conn.is_read_only(&text)?;
                    if writes {
                        conn.begin_here().await?;
                    }
                    let out = conn.run(&text, &args, want.one())?;
                    if writes {
                        conn.commit().await?;
                    }
                    return direct_out(out, want);
                }
            }
            Exec::Quick(l) => {
                let l: &super::lending::Lending = l;
                if let Some(readers) = l.readers() {
                    let (text, args) = self.for_direct()?;
                    if let Some(out) = readers.run(&text, &args, want.one()) {
                        return direct_out(out?, want);
                    }
                    // No connection free, or a lock to wait for: through sqlx's pool.
                    let args = AnyArguments {
                        values: sqlx_core::any::AnyArgumentBuffer(args),
                    };
                    let q =
                        sqlx::query_with(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(text)), args);
                    return run!(q, Exec::Lending(l), want);
                }
                // Only read pools have readers, and they have no writer of their own.
                debug_assert!(l.direct().is_none(), "a look-up on a write pool");
                ex = Exec::Lending(l);
            }
            Exec::Pool(_) | Exec::Conn(_) => {}
        }
        let q = self.prepare(ex.backend())?;
        run!(q, ex, want)
    }

    /// The text and arguments the process's own SQLite writer runs (`direct.rs`).
    fn for_direct(self) -> Result<(String, Vec<AnyValueKind>), sqlx::Error> {
        if let Some(e) = self.error {
            return Err(sqlx::Error::Encode(e));
        }
        let text = self.text.for_backend(Backend::Sqlite);
        Ok((text.as_str().to_owned(), self.args.values.0))
    }

    /// The sqlx query for `backend`, or the encoding error.
    fn prepare(
        self,
        backend: Backend,
    ) -> Result<sqlx::query::Query<'static, Any, AnyArguments>, sqlx::Error> {
        if let Some(e) = self.error {
            return Err(sqlx::Error::Encode(e));
        }
        let mut args = self.args;
        if backend == Backend::Postgres {
            // PostgreSQL's text cannot hold U+0000 (SQLite's can): it is kept as U+FFFD, so an
            // answer upstream sent with one is stored rather than refused, and a look-up by
            // a name holding one finds nothing instead of failing.
            for v in &mut args.values.0 {
                if let sqlx_core::any::AnyValueKind::Text(t) = v
                    && t.contains('\0')
                {
                    *v = sqlx_core::any::AnyValueKind::Text(std::sync::Arc::new(
                        t.replace('\0', "\u{FFFD}"),
                    ));
                }
            }
        }
        Ok(sqlx::query_with(self.text.for_backend(backend), args))
    }
}

/// `sqlx::query`, rewritten for the backend it runs on.
pub(crate) struct Query(Stmt);

impl Query {
    /// The text and arguments the process's own SQLite writer runs (`direct.rs`).
    pub(crate) fn into_direct(self) -> Result<(String, Vec<AnyValueKind>), sqlx::Error> {
        self.0.for_direct()
    }

    pub(crate) fn bind<'t, T>(self, value: T) -> Self
    where
        T: sqlx::Encode<'t, Any> + sqlx::Type<Any>,
    {
        Self(self.0.bind(value))
    }

    pub(crate) async fn execute<'a>(
        self,
        ex: impl Into<Exec<'a>>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        Ok(self.0.run(ex.into(), Want::Execute).await?.done())
    }

    pub(crate) async fn fetch_all<'a>(
        self,
        ex: impl Into<Exec<'a>>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        Ok(self.0.run(ex.into(), Want::All).await?.rows())
    }
}

/// `sqlx::query_as`, rewritten for the backend it runs on.
pub(crate) struct QueryAs<O>(Stmt, std::marker::PhantomData<fn() -> O>);

impl<O> QueryAs<O>
where
    O: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
{
    pub(crate) fn bind<'t, T>(self, value: T) -> Self
    where
        T: sqlx::Encode<'t, Any> + sqlx::Type<Any>,
    {
        Self(self.0.bind(value), self.1)
    }

    pub(crate) async fn fetch_all<'a>(
        self,
        ex: impl Into<Exec<'a>>,
    ) -> Result<Vec<O>, sqlx::Error> {
        let rows = self.0.run(ex.into(), Want::All).await?.rows();
        rows.iter().map(O::from_row).collect()
    }

    pub(crate) async fn fetch_one<'a>(self, ex: impl Into<Exec<'a>>) -> Result<O, sqlx::Error> {
        let row = self.0.run(ex.into(), Want::One).await?.first();
        O::from_row(&row.ok_or(sqlx::Error::RowNotFound)?)
    }

    pub(crate) async fn fetch_optional<'a>(
        self,
        ex: impl Into<Exec<'a>>,
    ) -> Result<Option<O>, sqlx::Error> {
        self.0
            .run(ex.into(), Want::Optional)
            .await?
            .first()
            .as_ref()
            .map(O::from_row)
            .transpose()
    }
}

/// `sqlx::query_scalar`, rewritten for the backend it runs on.
pub(crate) struct QueryScalar<O>(QueryAs<(O,)>);

impl<O> QueryScalar<O>
where
    (O,): for<'r> FromRow<'r, AnyRow> + Send + Unpin,
{
    pub(crate) fn bind<'t, T>(self, value: T) -> Self
    where
        T: sqlx::Encode<'t, Any> + sqlx::Type<Any>,
    {
        Self(self.0.bind(value))
    }

    pub(crate) async fn fetch_all<'a>(
        self,
        ex: impl Into<Exec<'a>>,
    ) -> Result<Vec<O>, sqlx::Error> {
        Ok(self
            .0
            .fetch_all(ex)
            .await?
            .into_iter()
            .map(|(o,)| o)
            .collect())
    }

    pub(crate) async fn fetch_one<'a>(self, ex: impl Into<Exec<'a>>) -> Result<O, sqlx::Error> {
        Ok(self.0.fetch_one(ex).await?.0)
    }

    pub(crate) async fn fetch_optional<'a>(
        self,
        ex: impl Into<Exec<'a>>,
    ) -> Result<Option<O>, sqlx::Error> {
        Ok(self.0.fetch_optional(ex).await?.map(|(o,)| o))
    }
}

/// A statement whose rows are read as they are (`sqlx::query`).
pub(crate) fn query(sql: impl Sql) -> Query {
    Query(Stmt::new(sql.into_text()))
}

/// A statement whose rows are `O`s (`sqlx::query_as`).
pub(crate) fn query_as<O>(sql: impl Sql) -> QueryAs<O> {
    QueryAs(Stmt::new(sql.into_text()), std::marker::PhantomData)
}

/// A statement whose rows are one `O` each (`sqlx::query_scalar`).
pub(crate) fn query_scalar<O>(sql: impl Sql) -> QueryScalar<O> {
    QueryScalar(query_as(sql))
}

/// `CAST(TOTAL(x) AS INTEGER)` that saturates alike on both backends: SQLite's cast of a float
/// past `i64`'s range gives `i64::MAX` (or `i64::MIN`), PostgreSQL's fails with "bigint out of
/// range". The bounds compare as floats (2^63) on both, and a sum below them fits.
macro_rules! total_saturated {
    ($x:literal) => {
        concat!(
            "CASE WHEN TOTAL(",
            $x,
            ") >= 9223372036854775807 THEN 9223372036854775807 ",
            "WHEN TOTAL(",
            $x,
            ") <= -9223372036854775807 - 1 THEN -9223372036854775807 - 1 ",
            "ELSE CAST(TOTAL(",
            $x,
            ") AS INTEGER) END"
        )
    };
}
pub(crate) use total_saturated;

/// The text and arguments a builder holds (it writes bare `?`s).
fn take(qb: &mut QueryBuilder<Any>) -> Stmt {
    let mut q = qb.build();
    // A builder's query always holds its arguments (an empty set when nothing was bound).
    let args = q.take_arguments().ok().flatten().unwrap_or_default();
    let text = Text::Owned(q.sql().as_str().to_owned());
    Stmt {
        text,
        args,
        error: None,
    }
}

/// A built statement.
pub(crate) fn built(qb: &mut QueryBuilder<Any>) -> Query {
    Query(take(qb))
}

/// A built statement whose rows are `O`s.
pub(crate) fn built_as<O>(qb: &mut QueryBuilder<Any>) -> QueryAs<O> {
    QueryAs(take(qb), std::marker::PhantomData)
}

/// A built statement whose rows are one `O` each.
pub(crate) fn built_scalar<O>(qb: &mut QueryBuilder<Any>) -> QueryScalar<O> {
    QueryScalar(built_as(qb))
}

/// The text `backend` is sent for a statement written for SQLite: numbered placeholders on
/// both; on PostgreSQL, `CAST(… AS INTEGER)` casts to 64 bits (`BIGINT`) as SQLite's does, and
/// SQLite's index hints (`INDEXED BY name`), which only SQLite's planner takes, are dropped.
/// The SQLite functions the statements use (`max(a, b)`, `min(a, b)`, `instr`, `total`) are
/// defined on PostgreSQL by its schema (`migrations/postgres`).
pub(crate) fn rewrite(sql: &str, backend: Backend) -> std::borrow::Cow<'_, str> {
    let numbered = number_placeholders(sql);
    match backend {
        Backend::Sqlite => numbered,
        Backend::Postgres => {
            // SQLite's INTEGER is 64 bits, PostgreSQL's 32.
            let numbered = if numbered.contains(" AS INTEGER)") {
                std::borrow::Cow::Owned(numbered.replace(" AS INTEGER)", " AS BIGINT)"))
            } else {
                numbered
            };
            if !numbered.contains("INDEXED BY") {
                return numbered;
            }
            let mut out = String::with_capacity(numbered.len());
            let mut rest: &str = &numbered;
            while let Some(at) = rest.find("INDEXED BY ") {
                out.push_str(&rest[..at]);
                let after = &rest[at + "INDEXED BY ".len()..];
                let name_end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                rest = &after[name_end..];
            }
            out.push_str(rest);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// A JSON document kept as text, decoded when read (the `Any` driver has no JSON type).
/// A field reads it with `#[sqlx(try_from = "JsonText<T>")]`; a column that may be NULL
/// reads with [`NullableJson`].
pub(crate) struct JsonText<T>(pub T);

impl<T> sqlx::Type<Any> for JsonText<T> {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r, T: serde::de::DeserializeOwned> sqlx::Decode<'r, Any> for JsonText<T> {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if sqlx::ValueRef::is_null(&value) {
            return Ok(Self(serde_json::from_value(serde_json::Value::Null)?));
        }
        let text = <&str as sqlx::Decode<'r, Any>>::decode(value)?;
        Ok(Self(serde_json::from_str(text)?))
    }
}

impl From<JsonText<crate::job::JobSpec>> for crate::job::JobSpec {
    fn from(j: JsonText<crate::job::JobSpec>) -> Self {
        j.0
    }
}

/// A JSON document that may be SQL NULL: NULL reads as `None`, the text `null` as
/// `Some(Value::Null)` (as sqlx's `json(nullable)` read them).
pub(crate) struct NullableJson(pub Option<serde_json::Value>);

impl sqlx::Type<Any> for NullableJson {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for NullableJson {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if sqlx::ValueRef::is_null(&value) {
            return Ok(Self(None));
        }
        let text = <&str as sqlx::Decode<'r, Any>>::decode(value)?;
        Ok(Self(Some(serde_json::from_str(text)?)))
    }
}

impl From<NullableJson> for Option<serde_json::Value> {
    fn from(j: NullableJson) -> Self {
        j.0
    }
}

/// Rewrites `?` and `?NNN` placeholders as `$N`, the way SQLite numbers them, outside
/// quoted strings, quoted names and comments.
pub(crate) fn number_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut largest = 0u32;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                // To the closing quote; a doubled quote inside is an escaped one.
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == q {
                        if bytes.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'?' => {
                out.push_str(&sql[copied..i]);
                let digits_end = bytes[i + 1..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(bytes.len(), |p| i + 1 + p);
                let n = if digits_end > i + 1 {
                    sql[i + 1..digits_end].parse::<u32>().unwrap_or(u32::MAX)
                } else {
                    largest.saturating_add(1)
                };
                largest = largest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
                i = digits_end;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::number_placeholders;
    use proptest::prelude::*;

    #[test]
    fn placeholders_are_numbered_as_sqlite_numbers_them() {
        let cases = [
            ("SELECT 1", "SELECT 1"),
            ("SELECT ?", "SELECT $1"),
            ("a = ? AND b = ? OR c = ?", "a = $1 AND b = $2 OR c = $3"),
            (
                "x IN (?1) AND y = ?2 OR z = ?1",
                "x IN ($1) AND y = $2 OR z = $1",
            ),
            ("a = ?3 AND b = ?", "a = $3 AND b = $4"),
            ("a = '?' AND b = ?", "a = '?' AND b = $1"),
            ("a = 'it''s ?' AND b = ?", "a = 'it''s ?' AND b = $1"),
            ("\"we?rd\" = ?", "\"we?rd\" = $1"),
            ("a = ? -- why?\n AND b = ?", "a = $1 -- why?\n AND b = $2"),
            ("a = ? /* ? */ AND b = ?", "a = $1 /* ? */ AND b = $2"),
            ("VALUES (?,?),(?,?)", "VALUES ($1,$2),($3,$4)"),
        ];
        for (from, to) in cases {
            assert_eq!(number_placeholders(from), to, "{from}");
        }
    }

    #[test]
    fn postgres_is_sent_no_sqlite_index_hints() {
        use super::{Backend, rewrite};
        let sql = "SELECT id FROM jobs INDEXED BY jobs_submit_order WHERE a = ? \
                   AND b IN (SELECT c FROM t INDEXED BY t_c)";
        assert_eq!(rewrite(sql, Backend::Sqlite), sql.replace('?', "$1"));
        assert_eq!(
            rewrite(sql, Backend::Postgres),
            "SELECT id FROM jobs  WHERE a = $1 AND b IN (SELECT c FROM t )"
        );
    }

    proptest! {
        /// Whatever the text (an unclosed quote or comment included), the rewrite ends, never
        /// panics, and keeps every character that is not a placeholder.
        #[test]
        fn any_text_is_rewritten_without_loss(s in "[a-z ?'\"\\-/*0-9\n]{0,80}") {
            let out = number_placeholders(&s);
            let strip = |t: &str| t.chars().filter(|c| !c.is_ascii_digit() && *c != '?' && *c != '$').collect::<String>();
            prop_assert_eq!(strip(&s), strip(&out));
        }
    }
}
