//! The stats query: job counts, token and tool-usage sums since a time, over live jobs and the
//! summaries of pruned ones, grouped finely enough (status, model, name, quarter hour, service
//! tier: a tier has its own prices) that callers can
//! fold the rows into any of those groups, or into local days in any time zone, without
//! another round trip.
//!
//! How it stays fast at a month of heavy use, where almost every group holds one job (100,000
//! jobs made 95,000 rows):
//!
//! - The token counts and tool usage are columns (`tokens.rs`, `tool_usage.rs`), never the
//!   JSON.
//! - SQLite does not make the groups: its `GROUP BY` steps six aggregates a row and finishes
//!   them a group, about 3 µs a group here, longer than all the steps below together.
//! - Nor does it send a row per job: sqlx copies each value of each row on its way out of
//!   SQLite (about 0.3 µs a value: 300 ms for 100,000 rows of ten values). The jobs of each
//!   quarter hour leave as one text instead, a list of JSON records: one row per quarter hour
//!   and table, a few KB each (one text for all of them would be megabytes, allocated on
//!   each of the pool's threads in turn and kept there by the allocator).
//! - The records are made when a job is written, not when stats are read: each job table has
//!   an index on (bucket, model, name, status, `created_at`, the job's record), and SQLite
//!   reads an indexed expression from the index rather than computing it again. The query
//!   reads one range of that index, in its order, and joins the records of each bucket.
//! - `records` reads the lists without copying their text, and each quarter hour's few
//!   records are sorted and grouped here.

mod records;

use crate::store::sql;
use sqlx::Row;

use self::records::{Record, read_records};
use super::{Store, StoreError};

/// The width of a row's time bucket: a quarter of an hour, because every time zone's offset
/// from UTC is a whole number of quarter hours, so buckets never straddle a local midnight.
/// (The literal `900000` in [`STATS_RECORDS`] and in the indexes `jobs_stats` and
/// `job_summaries_stats` of migrations `20261205000012_token_columns` and
/// `20261206000020_tool_usage` is this number.)
pub const STATS_BUCKET_MS: i64 = 15 * 60 * 1000;

/// Jobs of one status, model, name and service tier created in one [`STATS_BUCKET_MS`]
/// bucket, with the sums of their recorded usage and tool usage (0 where a job has none).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatsRow {
    pub status: String,
    pub model: String,
    pub name: String,
    /// The bucket's start (unix ms, a multiple of [`STATS_BUCKET_MS`]).
    pub bucket: i64,
    pub jobs: i64,
    /// Paid duplicates of these jobs (extra responses, see `duplicate_responses`); their usage
    /// is in the token sums, but they are not jobs.
    pub duplicates: i64,
    pub input_tokens: i64,
    /// Part of `input_tokens` served from the cache.
    pub cached_tokens: i64,
    pub output_tokens: i64,
    /// Part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
    /// The `service_tier` the jobs' responses reported (`None`: none recorded).
    pub service_tier: Option<String>,
    pub web_search_calls: i64,
    /// Part of `web_search_calls` made through `web_search_preview`.
    pub web_search_preview_calls: i64,
    pub file_search_calls: i64,
    pub code_containers: i64,
    pub images: i64,
    pub image_fee_microusd: i64,
}

impl StatsRow {
    /// The tokens, as [`crate::pricing::cost`] takes them.
    pub fn tokens(&self) -> crate::pricing::Tokens {
        crate::pricing::Tokens {
            input: self.input_tokens,
            cached: self.cached_tokens,
            output: self.output_tokens,
        }
    }

    /// The tool usage, as [`crate::pricing::cost`] takes it.
    pub fn tools(&self) -> crate::pricing::ToolUsage {
        crate::pricing::ToolUsage {
            web_search_calls: self.web_search_calls,
            web_search_preview_calls: self.web_search_preview_calls,
            file_search_calls: self.file_search_calls,
            code_containers: self.code_containers,
            images: self.images,
            image_fee_microusd: self.image_fee_microusd,
        }
    }
}

/// The jobs created at or after `?2` (whose bucket number, `created_at / 900000`, is at least
/// `?1`): one row per bucket number and table with the bucket number, whether the records are
/// of paid duplicates, and the list of records (see `records`). The tables: live jobs, pruned
/// ones, and the paid duplicates of live jobs (pruning deletes a job's duplicates with it),
/// each of these with its job's bucket, status, model and name. One statement, so one
/// snapshot: a job pruned meanwhile counts once.
///
/// The job arms read one range of their index (`jobs_stats`, `job_summaries_stats`) and group
/// in its order, without sorting; their expressions repeat the index's word for word, so that
/// SQLite recognizes them and reads the records from it. `CROSS JOIN` keeps the few duplicates
/// as the outer loop (the planner may otherwise walk every job to look for its duplicates).
/// The order of the rows, and of the records in a list, is SQLite's to choose.
const STATS_RECORDS: &str = "\
    SELECT created_at / 900000, 0, group_concat(json_array(created_at / 900000, status, model, \
      name, input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, \
      service_tier, web_search_calls, web_search_preview_calls, file_search_calls, \
      code_containers, images, image_fee_microusd), ',') \
    FROM jobs WHERE created_at / 900000 >= ?1 AND created_at >= ?2 \
    GROUP BY created_at / 900000 \
    UNION ALL \
    SELECT created_at / 900000, 0, group_concat(json_array(created_at / 900000, status, model, \
      name, input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, \
      service_tier, web_search_calls, web_search_preview_calls, file_search_calls, \
      code_containers, images, image_fee_microusd), ',') \
    FROM job_summaries WHERE created_at / 900000 >= ?1 AND created_at >= ?2 \
    GROUP BY created_at / 900000 \
    UNION ALL \
    SELECT j.created_at / 900000, 1, group_concat(json_array(j.created_at / 900000, j.status, \
      j.model, j.name, d.input_tokens, d.cached_tokens, d.output_tokens, d.reasoning_tokens, \
      d.total_tokens, d.service_tier, d.web_search_calls, d.web_search_preview_calls, \
      d.file_search_calls, d.code_containers, d.images, d.image_fee_microusd), ',') \
    FROM duplicate_responses d CROSS JOIN jobs j WHERE j.id = d.job_id AND j.created_at >= ?2 \
    GROUP BY j.created_at / 900000";

/// [`STATS_RECORDS`] for PostgreSQL: `string_agg` of `json_build_array` texts.
const STATS_RECORDS_POSTGRES: &str = "\
    SELECT created_at / 900000, 0, string_agg(CAST(json_build_array(created_at / 900000, status, model, \
      name, input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, \
      service_tier, web_search_calls, web_search_preview_calls, file_search_calls, \
      code_containers, images, image_fee_microusd) AS text), ',') \
    FROM jobs WHERE created_at / 900000 >= ?1 AND created_at >= ?2 \
    GROUP BY created_at / 900000 \
    UNION ALL \
    SELECT created_at / 900000, 0, string_agg(CAST(json_build_array(created_at / 900000, status, model, \
      name, input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, \
      service_tier, web_search_calls, web_search_preview_calls, file_search_calls, \
      code_containers, images, image_fee_microusd) AS text), ',') \
    FROM job_summaries WHERE created_at / 900000 >= ?1 AND created_at >= ?2 \
    GROUP BY created_at / 900000 \
    UNION ALL \
    SELECT j.created_at / 900000, 1, string_agg(CAST(json_build_array(j.created_at / 900000, j.status, \
      j.model, j.name, d.input_tokens, d.cached_tokens, d.output_tokens, d.reasoning_tokens, \
      d.total_tokens, d.service_tier, d.web_search_calls, d.web_search_preview_calls, \
      d.file_search_calls, d.code_containers, d.images, d.image_fee_microusd) AS text), ',') \
    FROM duplicate_responses d CROSS JOIN jobs j WHERE j.id = d.job_id AND j.created_at >= ?2 \
    GROUP BY j.created_at / 900000";

impl Store {
    /// Counts and usage sums of the jobs created at or after `since` (unix ms), pruned ones
    /// (`job_summaries`) included, by status, model, name, quarter hour and service tier,
    /// ordered by bucket, model, name, status and tier. The paid duplicates of those jobs are counted apart and their
    /// usage is added in (money spent is money spent). One query over the token columns,
    /// never the usage JSON; the grouping happens here (see the module's doc). Sums saturate
    /// at `i64::MAX` rather than fail.
    pub async fn stats_since(&self, since: i64) -> Result<Vec<StatsRow>, StoreError> {
        let rows = sql::query(match self.backend() {
            super::Backend::Sqlite => STATS_RECORDS,
            super::Backend::Postgres => STATS_RECORDS_POSTGRES,
        })
        .bind(since / STATS_BUCKET_MS)
        .bind(since)
        .fetch_all(&self.reads)
        .await?;
        // (bucket number, duplicates?, records), the text borrowed from the rows.
        let mut lists = rows
            .iter()
            .map(|row| {
                let duplicates: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, duplicates != 0, row.try_get(2)?))
            })
            .collect::<Result<Vec<(i64, bool, &str)>, sqlx::Error>>()?;
        lists.sort_by_key(|(bucket, _, _)| *bucket);
        let mut out = Vec::new();
        let mut records: Vec<Record<'_>> = Vec::new();
        for bucket in lists.chunk_by(|a, b| a.0 == b.0) {
            records.clear();
            for (_, duplicate, list) in bucket {
                read_records(list, *duplicate, &mut records)
                    .map_err(|e| StoreError::Corrupt(format!("stats records: {e}")))?;
            }
            records.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
            out.extend(records.chunk_by(|a, b| a.key() == b.key()).map(group_row));
        }
        Ok(out)
    }
}

/// The row of one group's records (all with the same key).
fn group_row(group: &[Record<'_>]) -> StatsRow {
    let first = &group[0];
    let mut row = StatsRow {
        status: first.status.to_string(),
        model: first.model.to_string(),
        name: first.name.to_string(),
        bucket: first.bucket * STATS_BUCKET_MS,
        jobs: 0,
        duplicates: 0,
        input_tokens: 0,
        cached_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
        total_tokens: 0,
        service_tier: first.tier.as_deref().map(str::to_owned),
        web_search_calls: 0,
        web_search_preview_calls: 0,
        file_search_calls: 0,
        code_containers: 0,
        images: 0,
        image_fee_microusd: 0,
    };
    for r in group {
        if r.duplicate {
            row.duplicates += 1;
        } else {
            row.jobs += 1;
        }
        row.input_tokens = row.input_tokens.saturating_add(r.input);
        row.cached_tokens = row.cached_tokens.saturating_add(r.cached);
        row.output_tokens = row.output_tokens.saturating_add(r.output);
        row.reasoning_tokens = row.reasoning_tokens.saturating_add(r.reasoning);
        row.total_tokens = row.total_tokens.saturating_add(r.total);
        row.web_search_calls = row.web_search_calls.saturating_add(r.web_search);
        row.web_search_preview_calls = row
            .web_search_preview_calls
            .saturating_add(r.web_search_preview);
        row.file_search_calls = row.file_search_calls.saturating_add(r.file_search);
        row.code_containers = row.code_containers.saturating_add(r.containers);
        row.images = row.images.saturating_add(r.images);
        row.image_fee_microusd = row.image_fee_microusd.saturating_add(r.image_fee);
    }
    row
}

#[cfg(test)]
mod tests {
    use crate::store::sql;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::{Value, json};
    use sqlx::Row;

    use super::{STATS_BUCKET_MS, StatsRow};
    use crate::job::{JobId, JobSpec, JobStatus, Observation, ResponseId};
    use crate::store::{ApplyContext, NewDuplicate, NewJob, Store};

    /// `stats_since` as it was before the token columns, reading every row's usage JSON, with
    /// the tool columns summed and the service tier grouped by SQL: the oracle the records
    /// must match.
    const STATS_FROM_JSON: &str = "SELECT status, model, name, (created_at / ?) * ? AS bucket, \
           CAST(SUM(1 - dup) AS INTEGER) AS jobs, CAST(SUM(dup) AS INTEGER) AS duplicates, \
           CAST(COALESCE(SUM(json_extract(usage, '$.input_tokens')), 0) AS INTEGER) AS input_tokens, \
           CAST(COALESCE(SUM(json_extract(usage, '$.input_tokens_details.cached_tokens')), 0) AS INTEGER) AS cached_tokens, \
           CAST(COALESCE(SUM(json_extract(usage, '$.output_tokens')), 0) AS INTEGER) AS output_tokens, \
           CAST(COALESCE(SUM(json_extract(usage, '$.output_tokens_details.reasoning_tokens')), 0) AS INTEGER) AS reasoning_tokens, \
           CAST(COALESCE(SUM(COALESCE(json_extract(usage, '$.total_tokens'), \
             COALESCE(json_extract(usage, '$.input_tokens'), 0) \
             + COALESCE(json_extract(usage, '$.output_tokens'), 0))), 0) AS INTEGER) AS total_tokens, \
           service_tier, \
           CAST(TOTAL(web_search_calls) AS INTEGER) AS web_search_calls, \
           CAST(TOTAL(web_search_preview_calls) AS INTEGER) AS web_search_preview_calls, \
           CAST(TOTAL(file_search_calls) AS INTEGER) AS file_search_calls, \
           CAST(TOTAL(code_containers) AS INTEGER) AS code_containers, \
           CAST(TOTAL(images) AS INTEGER) AS images, \
           CAST(TOTAL(image_fee_microusd) AS INTEGER) AS image_fee_microusd \
         FROM (SELECT status, model, name, created_at, usage, 0 AS dup, service_tier, \
                 web_search_calls, web_search_preview_calls, file_search_calls, code_containers, \
                 images, image_fee_microusd FROM jobs WHERE created_at >= ? \
               UNION ALL \
               SELECT status, model, name, created_at, usage, 0 AS dup, service_tier, \
                 web_search_calls, web_search_preview_calls, file_search_calls, code_containers, \
                 images, image_fee_microusd FROM job_summaries WHERE created_at >= ? \
               UNION ALL \
               SELECT j.status, j.model, j.name, j.created_at, d.usage, 1 AS dup, d.service_tier, \
                 d.web_search_calls, d.web_search_preview_calls, d.file_search_calls, \
                 d.code_containers, d.images, d.image_fee_microusd \
                 FROM duplicate_responses d JOIN jobs j ON j.id = d.job_id WHERE j.created_at >= ?) \
         GROUP BY status, model, name, bucket, service_tier \
         ORDER BY bucket, model, name, status, service_tier";

    async fn stats_from_json(store: &Store, since: i64) -> Vec<StatsRow> {
        sql::query_as::<StatsRow>(STATS_FROM_JSON)
            .bind(STATS_BUCKET_MS)
            .bind(STATS_BUCKET_MS)
            .bind(since)
            .bind(since)
            .bind(since)
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    /// The jobs come from the covering indexes: no read of the job tables' rows, no sort, no
    /// record computed.
    #[tokio::test]
    async fn stats_read_covering_indexes_without_sorting() {
        assert_eq!(
            STATS_BUCKET_MS, 900_000,
            "the SQL and the indexes say 900000"
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let store = Store::connect(&url).await.unwrap();
        let query = sql::query_as::<(i64, i64, i64, String)>(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            super::STATS_RECORDS
        )));
        let plan = query.bind(0).bind(0).fetch_all(&store.pool).await.unwrap();
        let plan: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
        let has = |step: &str| plan.iter().any(|s| s.starts_with(step));
        assert!(
            has("SEARCH jobs USING COVERING INDEX jobs_stats"),
            "{plan:#?}"
        );
        assert!(
            has("SEARCH job_summaries USING COVERING INDEX job_summaries_stats"),
            "{plan:#?}"
        );
        assert!(has("SCAN d"), "the duplicates drive their join: {plan:#?}");
        // The job arms group in their index's order; only the duplicates are sorted.
        let sorts: Vec<usize> = (0..plan.len())
            .filter(|i| plan[*i].contains("TEMP B-TREE"))
            .collect();
        let duplicates = plan.iter().position(|s| *s == "SCAN d");
        assert!(
            sorts.len() == 1 && duplicates.is_some_and(|d| sorts[0] > d),
            "{plan:#?}"
        );
        // The job records are read from the indexes: only the duplicates' is computed.
        let program = sql::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN {}",
            super::STATS_RECORDS
        )))
        .bind(0)
        .bind(0)
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let p4: Vec<String> = program
            .iter()
            .filter_map(|op| op.try_get::<Option<String>, _>("p4").ok().flatten())
            .collect();
        let computed = p4.iter().filter(|p4| p4.starts_with("json_array")).count();
        assert_eq!(computed, 1, "{p4:#?}");
        store.close().await;
    }

    /// A usage object of one of the shapes upstream sends or could send (integers only: junk
    /// values are counted 0 by the columns, while SQLite's `SUM` coerced them).
    fn usage(rng: &mut StdRng) -> Option<Value> {
        let (i, o) = (rng.random_range(0..50_000), rng.random_range(0..20_000));
        let (c, r) = (rng.random_range(0..=i), rng.random_range(0..=o));
        Some(match rng.random_range(0..8) {
            0 => return None,
            1 => json!({"input_tokens": i, "input_tokens_details": {"cached_tokens": c},
                        "output_tokens": o, "output_tokens_details": {"reasoning_tokens": r},
                        "total_tokens": i + o}),
            2 => json!({"input_tokens": i, "output_tokens": o}),
            3 => json!({"input_tokens": i, "output_tokens": o, "total_tokens": null,
                        "input_tokens_details": null, "output_tokens_details": {}}),
            4 => json!({"input_tokens": i, "output_tokens": o, "total_tokens": i + o + 7}),
            5 => json!({"output_tokens": o, "output_tokens_details": {"reasoning_tokens": r}}),
            6 => json!({}),
            _ => Value::Null,
        })
    }

    /// A final response with tool calls and a service tier of the shapes upstream sends, or
    /// none (`Value::Null`: a 404 confirmed).
    fn response(rng: &mut StdRng) -> Value {
        if rng.random_bool(0.1) {
            return Value::Null;
        }
        let mut output = Vec::new();
        for _ in 0..rng.random_range(0..6) {
            output.push(match rng.random_range(0..5) {
                0 => json!({"type": "web_search_call", "status": "completed"}),
                1 => json!({"type": "file_search_call", "queries": ["q"]}),
                2 => json!({"type": "code_interpreter_call",
                            "container_id": format!("cntr_{}", rng.random_range(0..3))}),
                3 => {
                    let quality = ["low", "high", "auto"][rng.random_range(0..3)];
                    let size = ["1024x1024", "1536x1024"][rng.random_range(0..2)];
                    json!({"type": "image_generation_call", "quality": quality, "size": size})
                }
                _ => json!({"type": "message", "content": []}),
            });
        }
        let tools = if rng.random_bool(0.5) {
            json!([{"type": "web_search_preview"}])
        } else {
            json!([{"type": "web_search"}])
        };
        let tier = [
            json!("default"),
            json!("flex"),
            json!("priority"),
            Value::Null,
        ][rng.random_range(0..4)]
        .clone();
        json!({"output": output, "tools": tools, "service_tier": tier})
    }

    /// The column sums equal the old JSON query's rows exactly, over live jobs (finished,
    /// running with usage, never submitted), pruned ones (summaries) and paid duplicates, for
    /// windows that cut through the data.
    #[tokio::test]
    async fn stats_from_columns_match_stats_from_the_usage_json() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("stats.db").display());
        let store = Store::connect(&url).await.unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let t0 = 1_780_000_000_000_i64 / STATS_BUCKET_MS * STATS_BUCKET_MS;
        let statuses = [
            JobStatus::Completed,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::Incomplete,
            JobStatus::InProgress,
            JobStatus::Pending,
        ];
        for n in 0..400 {
            // Text SQLite's JSON escapes, or not, and that sorts differently by bytes.
            let model = ["gpt-5", "o4-mini", "gpt-5-mini", "Z \"model\""][rng.random_range(0..4)];
            let name = ["alpha", "beta", "Beta", "back\\slash", "ünï ✓"][rng.random_range(0..5)];
            // Eight quarter hours, so most groups hold several jobs.
            let created = t0 + rng.random_range(0..8 * STATS_BUCKET_MS);
            let spec = JobSpec::from_value(
                json!({"name": name, "model": model, "input": format!("job {n}")}),
                "test",
            )
            .unwrap();
            let id = JobId::generate();
            store
                .insert_job(NewJob {
                    id: id.clone(),
                    spec,
                    spec_hash: "h".into(),
                    now: created,
                    deadline_at: None,
                    origin: "test".into(),
                })
                .await
                .unwrap();
            // Observations move only a job that holds their response.
            store
                .attach_response(
                    &id,
                    &ResponseId::parse(&format!("resp_{n}")).unwrap(),
                    &crate::store::AttachContext::create_answered_at(created),
                )
                .await
                .unwrap();
            let status = statuses[rng.random_range(0..statuses.len())];
            let observe = async |status: JobStatus, usage: Option<Value>, raw: Value, now: i64| {
                let obs = Observation {
                    response_id: ResponseId::parse(&format!("resp_{n}")).unwrap(),
                    status,
                    output_text: None,
                    usage,
                    error: None,
                    raw,
                };
                let ctx = ApplyContext {
                    now,
                    next_poll_at: now + 1_000,
                    poll_interval_ms: 1_000,
                    cancel_reason: None,
                    outbox: &[],
                    source: "poll",
                    request_id: None,
                    artifacts: &[],
                    image_prices: Default::default(),
                };
                store.apply_observation(&id, &obs, &ctx).await.unwrap();
            };
            if status != JobStatus::Pending {
                // Running usage first; a final look without usage keeps it.
                let running = usage(&mut rng);
                let partial = response(&mut rng);
                observe(
                    JobStatus::InProgress,
                    running.clone(),
                    partial,
                    created + 10,
                )
                .await;
                if status.is_terminal() {
                    let last = if rng.random_bool(0.3) {
                        None
                    } else {
                        usage(&mut rng)
                    };
                    let raw = response(&mut rng);
                    observe(status, last, raw, created + 20).await;
                }
            }
            if rng.random_bool(0.1) {
                // A paid duplicate, looked at twice: its usage learned (or not) on either look.
                for look in 0..2 {
                    let raw = response(&mut rng);
                    let status = ["in_progress", "cancelled"][look as usize];
                    store
                        .record_duplicate(&NewDuplicate {
                            job_id: id.as_str(),
                            response_id: &format!("resp_dup_{n}"),
                            status,
                            usage: usage(&mut rng).as_ref(),
                            raw: Some(&raw).filter(|r| !r.is_null()),
                            found_by: "create",
                            now: created + 30 + look,
                            next_check_at: None,
                            image_prices: Default::default(),
                        })
                        .await
                        .unwrap();
                }
            }
        }
        // The oldest finished jobs become summaries (their duplicates go with them).
        let cutoff = t0 + 3 * STATS_BUCKET_MS;
        let prunable = store.prunable_jobs(cutoff, 1_000).await.unwrap();
        assert!(prunable.len() > 20, "{}", prunable.len());
        let prunable: Vec<_> = prunable.into_iter().map(|j| (j, None)).collect();
        store
            .prune_jobs(&prunable, true, cutoff, t0 + 9 * STATS_BUCKET_MS)
            .await
            .unwrap();
        bench_jobs(&store, &mut rng, t0).await;

        let all = store.stats_since(0).await.unwrap();
        assert!(all.iter().any(|r| r.jobs > 1) && all.iter().any(|r| r.duplicates > 0));
        // Tool usage and tiers reached the rows, in every table.
        assert!(
            all.iter()
                .any(|r| r.web_search_preview_calls > 0 && r.image_fee_microusd > 0)
        );
        assert!(
            all.iter()
                .any(|r| r.service_tier.as_deref() == Some("flex"))
        );
        assert!(all.iter().any(|r| r.service_tier.is_none() && r.jobs > 0));
        for since in [
            0,
            t0 + 2 * STATS_BUCKET_MS + 17,
            t0 + 5 * STATS_BUCKET_MS,
            i64::MAX,
        ] {
            assert_eq!(
                store.stats_since(since).await.unwrap(),
                stats_from_json(&store, since).await,
                "since {since}"
            );
        }
        store.close().await;
    }

    /// Jobs written by the benchmark's bulk insert, which sets the columns itself.
    #[cfg(feature = "bench")]
    async fn bench_jobs(store: &Store, rng: &mut StdRng, t0: i64) {
        use crate::store::bench::BenchJob;
        let mut jobs = Vec::new();
        for n in 0..20 {
            let created = t0 + rng.random_range(0..8 * STATS_BUCKET_MS);
            let spec = JobSpec::from_value(
                json!({"name": "bench", "model": "gpt-5", "input": format!("bench {n}")}),
                "test",
            )
            .unwrap();
            jobs.push(BenchJob {
                job: NewJob {
                    id: JobId::generate(),
                    spec,
                    spec_hash: "h".into(),
                    now: created,
                    deadline_at: None,
                    origin: "test".into(),
                },
                obs: Observation {
                    response_id: ResponseId::parse(&format!("resp_bench_{n}")).unwrap(),
                    status: JobStatus::Completed,
                    output_text: None,
                    usage: usage(rng),
                    error: None,
                    raw: Value::Null,
                },
                submitted_at: created + 1,
                finished_at: created + 2,
            });
        }
        store.bench_insert_finished(&jobs).await.unwrap();
    }

    #[cfg(not(feature = "bench"))]
    async fn bench_jobs(_: &Store, _: &mut StdRng, _: i64) {}
}
