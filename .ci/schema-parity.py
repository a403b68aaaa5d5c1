#!/usr/bin/env python3
"""Checks that the PostgreSQL schema (migrations/postgres/*.sql) is the SQLite schema
(migrations/*.sql, applied in order).

SQLite side: every migrations/*.sql is run in order on a new database in a temporary file
(python's sqlite3 module). PostgreSQL side: migrations/postgres/*.sql are run in order on a
scratch database created for the check (and dropped after it), through psql; or, with
--existing, a database already migrated (by sqlx, say) is read as it is.

Compared, table by table: the tables; their columns in order, with type (INTEGER -> bigint,
TEXT -> text, BLOB -> bytea, REAL -> double precision), nullability and default; primary keys;
unique constraints; foreign keys (with ON DELETE / ON UPDATE); CHECK constraints; indexes by
name, with uniqueness, key columns or expressions in order (and DESC), INCLUDE columns and the
WHERE of partial indexes; triggers by name, with their timing and event (the bodies differ by
design: GLOB becomes a regular expression, SQL becomes PL/pgSQL).

Left out by design: SQLite's FTS5 search (jobs_fts, its shadow tables, jobs_fts_keys and the
jobs_fts_* triggers) and PostgreSQL's replacement (jobs_search, jobs_search_* triggers); the
sqlx bookkeeping table _sqlx_migrations. Normalised by design (see KNOWN below): SQLite rowid
aliases are identity columns; a PRIMARY KEY column is NOT NULL; job_actions.rowid exists on
PostgreSQL only; the stats indexes' trailing json_array(...) record is INCLUDE columns.

Usage: .ci/schema-parity.py [--url URL] [--existing] [--migrations DIR]
URL: a PostgreSQL connection URL (default: $RESPOOL_TEST_POSTGRES, else psql's own PG*
variables). Without --existing, the role must be allowed to create databases.
Prints every difference and exits 1 if there is any; 0 (with a summary) when the schemas agree.
Python 3 standard library and the psql client only.
"""

import argparse
import glob
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse

# ---------------------------------------------------------------------------------------------
# What is compared differently on purpose.

SQLITE_IGNORED_TABLES = re.compile(r"^(jobs_fts(_.*)?|sqlite_.*|_sqlx_migrations)$")
SQLITE_IGNORED_TRIGGERS = re.compile(r"^jobs_fts_")
PG_IGNORED_TABLES = re.compile(r"^(jobs_search|_sqlx_migrations)$")
PG_IGNORED_TRIGGERS = re.compile(r"^jobs_search_")

KNOWN = {
    # PostgreSQL-only columns: (table, column) -> why.
    "extra_pg_columns": {
        ("job_actions", "rowid"): "SQLite's implicit rowid, which turns.rs orders by",
    },
    # SQLite rowid aliases that stay plain keys on PostgreSQL (the store always writes them).
    "explicit_rowid_aliases": {
        ("health", "id"): "one row, always written with id 1",
    },
}

TYPES = {
    "INTEGER": "bigint",
    "BIGINT": "bigint",
    "INT": "bigint",
    "TEXT": "text",
    "BLOB": "bytea",
    "REAL": "double precision",
}

FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def fail(msg):
    print(f"schema-parity: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------------------------
# Normalising SQL text of expressions (index keys, WHERE, CHECK) so both dialects compare.


def split_top(text, sep=","):
    """Splits on `sep` outside parentheses and quotes."""
    parts, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def balanced(text, start):
    """The text inside the parentheses opening at text[start], and the index after them."""
    assert text[start] == "("
    depth, quote = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    raise ValueError(f"unbalanced parentheses in {text!r}")


def norm_expr(text):
    """Lower case, no casts, IN lists for = ANY (ARRAY[...]), no parentheses or spaces."""
    if text is None:
        return None
    s = text

    def any_to_in(m, negate):
        items = [re.sub(r"::[a-z ]+(\[\])?$", "", i.strip()) for i in split_top(m.group(2))]
        return f"{m.group(1)} {'NOT IN' if negate else 'IN'} ({', '.join(items)})"

    s = re.sub(r"(\w+) = ANY \(ARRAY\[(.*?)\](?:::[a-z ]+\[\])?\)", lambda m: any_to_in(m, False), s)
    s = re.sub(r"(\w+) <> ALL \(ARRAY\[(.*?)\](?:::[a-z ]+\[\])?\)", lambda m: any_to_in(m, True), s)
    s = re.sub(r"::(text|bigint|integer|character varying|numeric)(\[\])?", "", s)
    s = re.sub(r'\s+COLLATE\s+"?\w+"?', "", s, flags=re.I)
    s = re.sub(r"\s+", " ", s).strip().lower()
    s = s.replace("(", "").replace(")", "").replace(" ", "")
    return s


def norm_default(text):
    if text is None:
        return None
    s = text.strip()
    while s.startswith("(") and s.endswith(")"):
        s = s[1:-1].strip()
    s = re.sub(r"::[a-z ]+$", "", s)
    return s


# ---------------------------------------------------------------------------------------------
# SQLite.


def sqlite_statements(sql):
    """The statements of a migration file, whole (triggers with their BEGIN ... END)."""
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    if buf.strip() and re.sub(r"--[^\n]*", "", buf).strip():
        yield buf


def build_sqlite(migrations_dir, notes):
    files = sorted(glob.glob(os.path.join(migrations_dir, "*.sql")))
    if not files:
        fail(f"no migrations in {migrations_dir}")
    tmp = tempfile.NamedTemporaryFile(prefix="schema-parity-", suffix=".db", delete=False)
    tmp.close()
    db = sqlite3.connect(tmp.name, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    for path in files:
        for stmt in sqlite_statements(open(path, encoding="utf-8").read()):
            try:
                db.execute(stmt)
            except sqlite3.Error as e:
                # Python's SQLite may predate an FTS5 option (`contentless_delete` needs
                # 3.43); the search machinery is not compared, so its statements may fail.
                if re.search(r"jobs_fts|fts5", stmt, re.I):
                    notes.append(f"{os.path.basename(path)}: skipped an FTS5 statement ({e})")
                    continue
                fail(f"{os.path.basename(path)}: {e}\n{stmt}")
    return db, tmp.name


def sqlite_schema(db):
    schema = {"tables": {}, "triggers": {}}
    master = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    for typ, name, _tbl, sql in master:
        if typ != "table" or SQLITE_IGNORED_TABLES.match(name):
            continue
        t = {"columns": [], "pk": [], "unique": set(), "fks": set(), "checks": set(), "indexes": {}}
        info = db.execute(f'PRAGMA table_info("{name}")').fetchall()
        pk_cols = sorted((r[5], r[1]) for r in info if r[5])
        t["pk"] = [c for _, c in pk_cols]
        for cid, col, ctype, notnull, dflt, pk in info:
            rowid_alias = len(pk_cols) == 1 and bool(pk) and ctype.upper() == "INTEGER"
            t["columns"].append(
                {
                    "name": col,
                    "type": TYPES.get(ctype.upper(), f"?{ctype}"),
                    "notnull": bool(notnull or pk),
                    "default": norm_default(dflt),
                    "identity": rowid_alias and (name, col) not in KNOWN["explicit_rowid_aliases"],
                }
            )
        for (_id, _seq, ref, frm, to, on_update, on_delete, _match) in db.execute(
            f'PRAGMA foreign_key_list("{name}")'
        ).fetchall():
            t["fks"].add((frm, ref, to, on_delete.upper(), on_update.upper()))
        # CHECK constraints, from the table's text.
        for m in re.finditer(r"\bCHECK\s*\(", sql, re.I):
            inner, _ = balanced(sql, m.end() - 1)
            t["checks"].add(norm_expr(inner))
        for _seq, iname, unique, origin, partial in db.execute(f'PRAGMA index_list("{name}")'):
            cols = [r[2] for r in db.execute(f'PRAGMA index_info("{iname}")')]
            if origin == "pk":
                continue
            if origin == "u":
                t["unique"].add(tuple(cols))
                continue
            isql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (iname,)).fetchone()[0]
            on = re.search(rf"\bON\s+\"?{re.escape(name)}\"?\s*\(", isql, re.I)
            keys_text, after = balanced(isql, on.end() - 1)
            where = re.match(r"\s*WHERE\s+(.*)$", isql[after:], re.I | re.S)
            keys = []
            for k in split_top(keys_text):
                desc = bool(re.search(r"\s+DESC$", k, re.I))
                k = re.sub(r"\s+(ASC|DESC)$", "", k, flags=re.I)
                keys.append((norm_expr(k), desc))
            t["indexes"][iname] = {
                "unique": bool(unique),
                "keys": keys,
                "include": [],
                "where": norm_expr(where.group(1)) if where else None,
            }
        schema["tables"][name] = t
    for typ, name, tbl, sql in master:
        if typ != "trigger" or SQLITE_IGNORED_TRIGGERS.match(name):
            continue
        m = re.match(
            r"\s*CREATE\s+TRIGGER\s+\"?(\w+)\"?\s+(BEFORE|AFTER|INSTEAD\s+OF)\s+"
            r"(INSERT|DELETE|UPDATE)(?:\s+OF\s+(.*?))?\s+ON\s+\"?(\w+)\"?",
            sql,
            re.I | re.S,
        )
        if not m:
            fail(f"cannot read trigger {name}: {sql[:200]}")
        cols = tuple(sorted(c.strip().lower() for c in m.group(4).split(","))) if m.group(4) else ()
        schema["triggers"][name] = (tbl, m.group(2).upper(), m.group(3).upper(), cols)
    return schema


# ---------------------------------------------------------------------------------------------
# PostgreSQL.


class Pg:
    def __init__(self, url):
        self.url = url

    def run(self, *args, input_text=None):
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        if self.url:
            cmd.append(self.url)
        r = subprocess.run(cmd + list(args), input=input_text, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"psql failed: {r.stderr.strip()}")
        return r.stdout

    def rows(self, query):
        out = self.run("-A", "-t", "-c", f"SELECT COALESCE(json_agg(q), '[]') FROM ({query}) q")
        return json.loads(out)


def with_database(url, dbname):
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.netloc, "/" + dbname, p.query, p.fragment))


def pg_schema(pg):
    schema = {"tables": {}, "triggers": {}}
    tables = [
        r["relname"]
        for r in pg.rows(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1"
        )
        if not PG_IGNORED_TABLES.match(r["relname"])
    ]
    for name in tables:
        t = {"columns": [], "pk": [], "unique": set(), "fks": set(), "checks": set(), "indexes": {}}
        for c in pg.rows(
            "SELECT column_name, data_type, is_nullable, column_default, is_identity "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            f"AND table_name = '{name}' ORDER BY ordinal_position"
        ):
            t["columns"].append(
                {
                    "name": c["column_name"],
                    "type": c["data_type"],
                    "notnull": c["is_nullable"] == "NO",
                    "default": norm_default(c["column_default"]),
                    "identity": c["is_identity"] == "YES",
                }
            )
        for con in pg.rows(
            "SELECT con.contype, con.confdeltype, con.confupdtype, ft.relname AS ref, "
            "pg_get_constraintdef(con.oid, true) AS def, "
            "(SELECT json_agg(a.attname ORDER BY k.n) FROM unnest(con.conkey) WITH ORDINALITY k(att, n) "
            "  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.att) AS cols, "
            "(SELECT json_agg(a.attname ORDER BY k.n) FROM unnest(con.confkey) WITH ORDINALITY k(att, n) "
            "  JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.att) AS refcols "
            "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_class ft ON ft.oid = con.confrelid "
            f"WHERE n.nspname = current_schema() AND c.relname = '{name}'"
        ):
            if con["contype"] == "p":
                t["pk"] = con["cols"]
            elif con["contype"] == "u":
                t["unique"].add(tuple(con["cols"]))
            elif con["contype"] == "f":
                if len(con["cols"]) != 1:
                    fail(f"{name}: multi-column foreign keys are not compared")
                t["fks"].add(
                    (
                        con["cols"][0],
                        con["ref"],
                        con["refcols"][0],
                        FK_ACTIONS[con["confdeltype"]],
                        FK_ACTIONS[con["confupdtype"]],
                    )
                )
            elif con["contype"] == "c":
                m = re.match(r"CHECK \((.*)\)$", con["def"], re.S)
                t["checks"].add(norm_expr(m.group(1)))
        for ix in pg.rows(
            "SELECT ic.relname AS name, i.indisunique AS uniq, i.indisprimary AS pk, "
            "i.indnkeyatts AS nkey, i.indnatts AS natts, i.indoption::int2[] AS opts, "
            "pg_get_expr(i.indpred, i.indrelid, true) AS pred, "
            "EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid) AS constraint_index, "
            "(SELECT json_agg(pg_get_indexdef(i.indexrelid, k, true) ORDER BY k) "
            "  FROM generate_series(1, i.indnatts) k) AS cols "
            "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = current_schema() AND c.relname = '{name}'"
        ):
            if ix["constraint_index"]:
                continue  # primary keys and unique constraints, compared above
            keys = [
                (norm_expr(col), bool(ix["opts"][k] & 1))
                for k, col in enumerate(ix["cols"][: ix["nkey"]])
            ]
            t["indexes"][ix["name"]] = {
                "unique": ix["uniq"],
                "keys": keys,
                "include": [norm_expr(c) for c in ix["cols"][ix["nkey"] :]],
                "where": norm_expr(ix["pred"]),
            }
        schema["tables"][name] = t
    for tr in pg.rows(
        "SELECT t.tgname AS name, c.relname AS tbl, t.tgtype AS type, "
        "(SELECT json_agg(a.attname ORDER BY a.attname) FROM unnest(t.tgattr::int2[]) k(att) "
        "  JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = k.att) AS cols "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
    ):
        if PG_IGNORED_TRIGGERS.match(tr["name"]):
            continue
        tg = tr["type"]
        timing = "BEFORE" if tg & 2 else ("INSTEAD OF" if tg & 64 else "AFTER")
        events = [e for bit, e in ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE")) if tg & bit]
        if not tg & 1:
            timing += " (statement)"
        cols = tuple(sorted(tr["cols"] or []))
        schema["triggers"][tr["name"]] = (tr["tbl"], timing, "/".join(events), cols)
    return schema


# ---------------------------------------------------------------------------------------------
# Comparing.


def compare(lite, pg):
    diffs = []
    lt, pt = set(lite["tables"]), set(pg["tables"])
    for name in sorted(lt - pt):
        diffs.append(f"table {name}: in SQLite only")
    for name in sorted(pt - lt):
        diffs.append(f"table {name}: in PostgreSQL only")
    for name in sorted(lt & pt):
        a, b = lite["tables"][name], pg["tables"][name]
        bcols = [
            c for c in b["columns"] if (name, c["name"]) not in KNOWN["extra_pg_columns"]
        ]
        for (table, col), why in KNOWN["extra_pg_columns"].items():
            if table == name and not any(c["name"] == col for c in b["columns"]):
                diffs.append(f"{name}.{col}: expected on PostgreSQL ({why}), missing")
        an, bn = [c["name"] for c in a["columns"]], [c["name"] for c in bcols]
        if an != bn:
            at = next(i for i, (x, y) in enumerate(zip(an + [None], bn + [None])) if x != y)
            diffs.append(
                f"{name}: columns differ from position {at + 1}"
                f"\n    SQLite:     {an[at:at + 4]}{' ...' if len(an) > at + 4 else ''}"
                f"\n    PostgreSQL: {bn[at:at + 4]}{' ...' if len(bn) > at + 4 else ''}"
                + (f"\n    SQLite only: {sorted(set(an) - set(bn))}" if set(an) - set(bn) else "")
                + (f"\n    PostgreSQL only: {sorted(set(bn) - set(an))}" if set(bn) - set(an) else "")
            )
        bycol = {c["name"]: c for c in bcols}
        for ca in a["columns"]:
            cb = bycol.get(ca["name"])
            if cb is None:
                continue
            for key in ("type", "notnull", "default", "identity"):
                if ca[key] != cb[key]:
                    diffs.append(
                        f"{name}.{ca['name']}: {key} differs (SQLite {ca[key]!r}, PostgreSQL {cb[key]!r})"
                    )
        for key in ("pk", "unique", "fks", "checks"):
            if a[key] != b[key]:
                diffs.append(f"{name}: {key} differ\n    SQLite:     {sorted(a[key]) if isinstance(a[key], set) else a[key]}\n    PostgreSQL: {sorted(b[key]) if isinstance(b[key], set) else b[key]}")
        ai, bi = a["indexes"], b["indexes"]
        for iname in sorted(set(ai) - set(bi)):
            diffs.append(f"index {iname} on {name}: in SQLite only")
        for iname in sorted(set(bi) - set(ai)):
            diffs.append(f"index {iname} on {name}: in PostgreSQL only")
        for iname in sorted(set(ai) & set(bi)):
            x, y = dict(ai[iname]), bi[iname]
            # A trailing json_array(...) key (the stats record, read from the index by SQLite)
            # is INCLUDE columns on PostgreSQL: the same columns, less those already keys.
            if x["keys"] and x["keys"][-1][0].startswith("json_array"):
                # (norm_expr took the parentheses away: json_arrayA,B,C)
                record = split_top(x["keys"][-1][0][len("json_array") :], ",")
                x["keys"] = x["keys"][:-1]
                keyset = {k for k, _ in x["keys"]}
                x["include"] = [c for c in record if c not in keyset]
            for key in ("unique", "keys", "include", "where"):
                if x[key] != y[key]:
                    diffs.append(
                        f"index {iname} on {name}: {key} differ\n    SQLite:     {x[key]!r}\n    PostgreSQL: {y[key]!r}"
                    )
    la, pa = lite["triggers"], pg["triggers"]
    for tname in sorted(set(la) - set(pa)):
        diffs.append(f"trigger {tname} on {la[tname][0]}: in SQLite only")
    for tname in sorted(set(pa) - set(la)):
        diffs.append(f"trigger {tname} on {pa[tname][0]}: in PostgreSQL only")
    for tname in sorted(set(la) & set(pa)):
        if la[tname] != pa[tname]:
            diffs.append(f"trigger {tname}: differs\n    SQLite:     {la[tname]}\n    PostgreSQL: {pa[tname]}")
    return diffs


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("RESPOOL_TEST_POSTGRES"))
    ap.add_argument("--existing", action="store_true", help="compare the database at --url as it is")
    ap.add_argument("--migrations", default=os.path.join(here, "migrations"))
    args = ap.parse_args()

    notes = []
    db, path = build_sqlite(args.migrations, notes)
    try:
        lite = sqlite_schema(db)
    finally:
        db.close()
        os.unlink(path)

    admin = Pg(args.url)
    scratch = None
    if args.existing:
        pg = admin
    else:
        if not args.url:
            fail("--url (or RESPOOL_TEST_POSTGRES) is needed to create a scratch database")
        scratch = f"schema_parity_{os.getpid()}"
        admin.run("-c", f'CREATE DATABASE "{scratch}"')
        pg = Pg(with_database(args.url, scratch))
    try:
        if scratch:
            files = sorted(glob.glob(os.path.join(args.migrations, "postgres", "*.sql")))
            if not files:
                fail(f"no migrations in {args.migrations}/postgres")
            for f in files:
                # One transaction per file, as sqlx runs a migration.
                pg.run("-1", "-f", f)
        pgs = pg_schema(pg)
    finally:
        if scratch:
            admin.run("-c", f'DROP DATABASE IF EXISTS "{scratch}"')

    for n in notes:
        print(f"note: {n}")
    diffs = compare(lite, pgs)
    for d in diffs:
        print(d)
    if diffs:
        print(f"schema-parity: {len(diffs)} difference(s)")
        return 1
    n_idx = sum(len(t["indexes"]) for t in lite["tables"].values())
    print(
        f"schema-parity: ok ({len(lite['tables'])} tables, {n_idx} indexes, "
        f"{len(lite['triggers'])} triggers agree)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
