//! Token counts as columns: `jobs`, `job_summaries` and `duplicate_responses` keep the five
//! counts of their upstream usage object next to it (`input_tokens`, `cached_tokens`,
//! `output_tokens`, `reasoning_tokens`, `total_tokens`), so stats sum integers instead of
//! reading every row's JSON. [`TokenCounts::from_usage`] is the one reading of a usage object
//! the write paths use; migration `20261205000012_token_columns` backfilled older rows by the
//! same rules, and a test below holds the two to the same answers.

use serde_json::Value;

/// The token counts of one usage object.
///
/// A count is the value at its path if that is a JSON integer from 0 to `i64::MAX`; anything
/// else (missing, null, true/false, a string, a fraction, a negative or larger number) counts
/// 0. `total` is `total_tokens` by that rule when it is such an integer, else
/// `input + output` (capped at `i64::MAX`): what stats computed from the JSON before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// `input_tokens`.
    pub input: i64,
    /// `input_tokens_details.cached_tokens`: part of `input` served from the cache.
    pub cached: i64,
    /// `output_tokens`.
    pub output: i64,
    /// `output_tokens_details.reasoning_tokens`: part of `output` spent on reasoning.
    pub reasoning: i64,
    /// `total_tokens`, else `input + output`.
    pub total: i64,
}

impl TokenCounts {
    /// Reads the counts of an upstream usage object (see the type for the rules).
    pub fn from_usage(usage: &Value) -> Self {
        let count = |pointer: &str| {
            usage
                .pointer(pointer)
                .and_then(Value::as_i64)
                .filter(|n| *n >= 0)
        };
        let input = count("/input_tokens").unwrap_or(0);
        let output = count("/output_tokens").unwrap_or(0);
        Self {
            input,
            cached: count("/input_tokens_details/cached_tokens").unwrap_or(0),
            output,
            reasoning: count("/output_tokens_details/reasoning_tokens").unwrap_or(0),
            total: count("/total_tokens").unwrap_or(input.saturating_add(output)),
        }
    }
}

/// Binds the five token columns of a usage object, in the order `input_tokens, cached_tokens,
/// output_tokens, reasoning_tokens, total_tokens`: all NULL when there is no usage, as the
/// columns are exactly when `usage` is.
pub(super) trait BindTokens {
    fn bind_tokens(self, usage: Option<&Value>) -> Self;
}

impl BindTokens for crate::store::sql::Query {
    fn bind_tokens(self, usage: Option<&Value>) -> Self {
        let c = usage.map(TokenCounts::from_usage);
        self.bind(c.map(|c| c.input))
            .bind(c.map(|c| c.cached))
            .bind(c.map(|c| c.output))
            .bind(c.map(|c| c.reasoning))
            .bind(c.map(|c| c.total))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sql;
    use std::path::Path;

    use serde_json::{Value, json};
    use sqlx::AssertSqlSafe;
    use sqlx::migrate::Migrator;

    use super::TokenCounts;
    use crate::job::JobId;
    use crate::store::Store;

    const TOKEN_COLUMNS_MIGRATION: &str = "20261205000012_token_columns.sql";

    /// A row's five token columns.
    type TokenColumns = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );

    const FULL: TokenCounts = TokenCounts {
        input: 10,
        cached: 3,
        output: 5,
        reasoning: 2,
        total: 15,
    };

    /// Usage objects of every shape the columns must survive, with the counts they hold.
    fn shapes() -> Vec<(Value, TokenCounts)> {
        let c = |input, cached, output, reasoning, total| TokenCounts {
            input,
            cached,
            output,
            reasoning,
            total,
        };
        let max = i64::MAX;
        vec![
            (
                json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 3},
                       "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
                       "total_tokens": 15}),
                FULL,
            ),
            // What stats summed before: a total that disagrees with the parts wins.
            (
                json!({"input_tokens": 1, "output_tokens": 2, "total_tokens": 99}),
                c(1, 0, 2, 0, 99),
            ),
            // No total: the parts.
            (
                json!({"input_tokens": 4, "output_tokens": 6}),
                c(4, 0, 6, 0, 10),
            ),
            (
                json!({"input_tokens": 4, "output_tokens": 6, "total_tokens": null}),
                c(4, 0, 6, 0, 10),
            ),
            (json!({}), c(0, 0, 0, 0, 0)),
            (json!({"total_tokens": 100}), c(0, 0, 0, 0, 100)),
            // Details missing, null, or not objects.
            (
                json!({"input_tokens": 7, "input_tokens_details": null,
                       "output_tokens": 8, "output_tokens_details": {}}),
                c(7, 0, 8, 0, 15),
            ),
            (
                json!({"input_tokens": 7, "input_tokens_details": [3],
                       "output_tokens_details": {"reasoning_tokens": null}}),
                c(7, 0, 0, 0, 7),
            ),
            (
                json!({"input_tokens_details": {"cached_tokens": 5},
                       "output_tokens_details": {"reasoning_tokens": 6}}),
                c(0, 5, 0, 6, 0),
            ),
            // Huge numbers: the largest i64 counts; beyond it, or a sum past it, does not wrap.
            (
                json!({"input_tokens": max, "output_tokens": 1}),
                c(max, 0, 1, 0, max),
            ),
            (
                json!({"input_tokens": max, "output_tokens": max, "total_tokens": max}),
                c(max, 0, max, 0, max),
            ),
            (
                json!({"input_tokens": u64::MAX, "output_tokens": (max as u64) + 1,
                       "total_tokens": 1e20}),
                c(0, 0, 0, 0, 0),
            ),
            (
                json!({"input_tokens": i64::MIN, "output_tokens": 5}),
                c(0, 0, 5, 0, 5),
            ),
            // Junk: strings, fractions, booleans, negatives, objects, arrays.
            (
                json!({"input_tokens": "12", "output_tokens": 1.5, "total_tokens": true}),
                c(0, 0, 0, 0, 0),
            ),
            (
                json!({"input_tokens": 3.0, "output_tokens": false, "total_tokens": "15"}),
                c(0, 0, 0, 0, 0),
            ),
            (
                json!({"input_tokens": -3, "output_tokens": 4, "total_tokens": -1}),
                c(0, 0, 4, 0, 4),
            ),
            (
                json!({"input_tokens": {"n": 1}, "output_tokens": [2], "total_tokens": {}}),
                c(0, 0, 0, 0, 0),
            ),
            (
                json!({"input_tokens": 2, "output_tokens": 3, "total_tokens": 0}),
                c(2, 0, 3, 0, 0),
            ),
            // Not an object at all.
            (json!([1, 2, 3]), c(0, 0, 0, 0, 0)),
            (json!("usage"), c(0, 0, 0, 0, 0)),
            (json!(42), c(0, 0, 0, 0, 0)),
            (Value::Null, c(0, 0, 0, 0, 0)),
        ]
    }

    #[test]
    fn counts_follow_the_rules_on_every_shape() {
        for (usage, want) in shapes() {
            assert_eq!(TokenCounts::from_usage(&usage), want, "{usage}");
        }
    }

    /// The migration's backfill reads every shape as `from_usage` does: a database from before
    /// it (every earlier migration applied, `20261205000010_id_checks` included) holds each
    /// usage object as stored (its JSON text) in all three tables, is migrated by
    /// `Store::connect`, and each row's columns must be `from_usage` of its object. A row
    /// without usage keeps NULL columns; usage that is not JSON counts 0.
    #[tokio::test]
    async fn the_backfill_reads_usage_as_from_usage_does() {
        let mut usages: Vec<Option<String>> =
            shapes().iter().map(|(u, _)| Some(u.to_string())).collect();
        usages.extend([None, Some("{not json".into()), Some(String::new())]);
        let want = |usage: &Option<String>| {
            usage.as_deref().map(|text| {
                serde_json::from_str::<Value>(text)
                    .map(|v| TokenCounts::from_usage(&v))
                    .unwrap_or_default()
            })
        };

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        crate::store::install_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        before_token_columns(dir.path())
            .await
            .run(&pool)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (i, usage) in usages.iter().enumerate() {
            let id = JobId::generate();
            sql::query(
                "INSERT INTO jobs (id, name, model, status, spec, spec_hash, created_at, \
                 updated_at, usage) VALUES (?, 'n', 'gpt-5', 'completed', '{}', 'h', 1, 1, ?)",
            )
            .bind(&id)
            .bind(usage)
            .execute(&pool)
            .await
            .unwrap();
            sql::query(
                "INSERT INTO job_summaries (id, name, model, status, created_at, finished_at, \
                 usage, pruned_at) VALUES (?, 'n', 'gpt-5', 'completed', 1, 2, ?, 3)",
            )
            .bind(&id)
            .bind(usage)
            .execute(&pool)
            .await
            .unwrap();
            sql::query(
                "INSERT INTO duplicate_responses (response_id, job_id, status, usage, found_by, \
                 found_at, updated_at) VALUES (?, ?, 'completed', ?, 'create', 1, 1)",
            )
            .bind(format!("resp_dup{i}"))
            .bind(&id)
            .bind(usage)
            .execute(&pool)
            .await
            .unwrap();
            ids.push(id);
        }
        pool.close().await;

        let store = Store::connect(&url).await.unwrap();
        for (table, key) in [
            ("jobs", "id"),
            ("job_summaries", "id"),
            ("duplicate_responses", "job_id"),
        ] {
            for (id, usage) in ids.iter().zip(&usages) {
                let got: TokenColumns = sql::query_as(AssertSqlSafe(format!(
                    "SELECT input_tokens, cached_tokens, output_tokens, reasoning_tokens, \
                         total_tokens FROM {table} WHERE {key} = ?"
                )))
                .bind(id)
                .fetch_one(&store.pool)
                .await
                .unwrap();
                let got = match got {
                    (None, None, None, None, None) => None,
                    (Some(input), Some(cached), Some(output), Some(reasoning), Some(total)) => {
                        Some(TokenCounts {
                            input,
                            cached,
                            output,
                            reasoning,
                            total,
                        })
                    }
                    partly => panic!("{table}: {usage:?}: some columns NULL: {partly:?}"),
                };
                assert_eq!(got, want(usage), "{table}: {usage:?}");
            }
        }
        store.close().await;
    }

    /// The migrations before the token columns, as a database made before them ran them
    /// (later ones may build on the columns: `20261206000020_tool_usage` indexes them).
    async fn before_token_columns(dir: &Path) -> Migrator {
        let old = dir.join("migrations");
        std::fs::create_dir(&old).unwrap();
        let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut found = false;
        for entry in std::fs::read_dir(all).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            found |= name == TOKEN_COLUMNS_MIGRATION;
            if name.as_str() < TOKEN_COLUMNS_MIGRATION {
                std::fs::copy(&path, old.join(&name)).unwrap();
            }
        }
        assert!(found, "no migration {TOKEN_COLUMNS_MIGRATION}");
        Migrator::new(old.as_path()).await.unwrap()
    }
}
