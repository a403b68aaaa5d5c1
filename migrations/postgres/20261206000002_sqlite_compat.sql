-- The few SQLite functions the store's statements use, for PostgreSQL, with SQLite's meaning,
-- so that one statement text serves both backends (docs/design.md, "One store, two backends").

-- Scalar max(a, b) and min(a, b): NULL when either is NULL (PostgreSQL's GREATEST and LEAST
-- skip NULLs). The one-argument aggregates keep their built-in meaning.
CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL WHEN a >= b THEN a ELSE b END $$;
CREATE FUNCTION min(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL WHEN a <= b THEN a ELSE b END $$;

-- instr(haystack, needle): the 1-based position of needle, 0 when absent.
CREATE FUNCTION instr(haystack text, needle text) RETURNS bigint LANGUAGE sql IMMUTABLE
    PARALLEL SAFE AS $$ SELECT strpos(haystack, needle)::bigint $$;

-- total(x): the sum as a float, 0.0 over no rows or only NULLs (never NULL, never an
-- integer overflow).
CREATE FUNCTION respool_total_step(acc double precision, v double precision)
    RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT acc + COALESCE(v, 0) $$;
CREATE AGGREGATE total(double precision) (
    SFUNC = respool_total_step,
    STYPE = double precision,
    INITCOND = '0'
);
