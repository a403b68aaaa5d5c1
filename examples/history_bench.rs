//! How the job-history read paths scale: fills a fresh SQLite database with N finished jobs
//! (a month of heavy use) through `respool::store::Store`, then times listing, search, stats
//! and counts, and prints the figures.
//!
//! ```text
//! cargo run --release --features bench --example history_bench -- --jobs 100000
//! ```
//!
//! The bulk of the jobs is written by `Store::bench_insert_finished` (finished rows in batched
//! transactions; see `src/store/bench.rs` for why); a sample goes through the daemon's real
//! path (`insert_job`, `claim_submission`, `attach_response`, `apply_observation`) on the
//! empty database and again on the full one, so the cost of a job's writes at size N shows.
//! Nothing here is asserted: it prints numbers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use respool::job::{JobError, JobId, JobSpec, JobStatus, Observation, ResponseId};
use respool::orchestrator::spec_hash;
use respool::pricing::ModelPrice;
use respool::stats::{GroupBy, fold};
use respool::store::bench::BenchJob;
use respool::store::{ApplyContext, AttachContext, ClaimLimits, JobFilter, Lease, NewJob, Store};

const DAY_MS: i64 = 86_400_000;
const MODELS: [&str; 5] = [
    "o3-deep-research",
    "o4-mini-deep-research",
    "gpt-5",
    "gpt-5-mini",
    "gpt-4.1",
];
const TEAMS: [&str; 8] = [
    "research", "finance", "legal", "ops", "sales", "support", "data", "infra",
];
/// In roughly every job's output (a Zipf head word).
const COMMON_WORD: &str = "analysis";
/// In about one job in a thousand.
const RARE_WORD: &str = "quetzalcoatl";

#[derive(Parser)]
#[command(about = "Times respool's job-history read paths on a database of N jobs")]
struct Args {
    /// Jobs to create (spread over 30 days).
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Repetitions of each timed query.
    #[arg(long, default_value_t = 30)]
    reps: usize,
    /// Jobs sent through the daemon's real write path, on the empty and on the full database.
    #[arg(long, default_value_t = 100)]
    api_jobs: usize,
    /// Jobs per bulk-insert transaction.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Finished jobs to prune into `job_summaries` (the oldest), so stats read the UNION.
    #[arg(long, default_value_t = 200)]
    prune: usize,
    /// Keep the database (its path is printed) instead of deleting it at the end.
    #[arg(long)]
    keep: bool,
    /// Seed of the generator (same seed, same database).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Makes realistic jobs: names, models, metadata, output text and usage.
struct Gen {
    rng: StdRng,
    vocab: Vec<String>,
    names: Vec<String>,
    now: i64,
}

impl Gen {
    fn new(seed: u64, now: i64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let syll = [
            "ka", "lo", "mi", "ra", "ten", "vos", "dul", "pre", "sin", "tor", "ax", "bel", "cor",
            "fen", "gri", "hal", "jun", "mar", "nel", "por", "qua", "sel", "tri", "ul", "ver",
        ];
        let mut vocab: Vec<String> = [
            COMMON_WORD,
            "report",
            "market",
            "revenue",
            "risk",
            "customer",
            "growth",
            "summary",
            "source",
            "evidence",
            "trend",
            "forecast",
            "compliance",
            "latency",
            "pricing",
            "competitor",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        while vocab.len() < 5_000 {
            let n = rng.random_range(2..5);
            let w: String = (0..n)
                .map(|_| syll[rng.random_range(0..syll.len())])
                .collect();
            if !vocab.contains(&w) {
                vocab.push(w);
            }
        }
        let topics = [
            "market-scan",
            "competitor-brief",
            "risk-review",
            "weekly-digest",
            "lit-review",
            "pricing-study",
            "churn-analysis",
            "policy-check",
            "vendor-eval",
            "incident-postmortem",
        ];
        let names = (0..50)
            .map(|i| format!("{}-{}", topics[i % topics.len()], i / topics.len() + 1))
            .collect();
        Self {
            rng,
            vocab,
            names,
            now,
        }
    }

    /// A Zipf-ish word: low indexes far more often.
    fn word(&mut self) -> &str {
        let u: f64 = self.rng.random();
        let i = ((self.vocab.len() as f64).powf(u) as usize).saturating_sub(1);
        &self.vocab[i.min(self.vocab.len() - 1)]
    }

    fn text(&mut self, words: usize) -> String {
        let mut s = String::with_capacity(words * 7);
        for i in 0..words {
            if i > 0 {
                s.push(if i % 14 == 0 { '\n' } else { ' ' });
            }
            let w = self.word().to_string();
            s.push_str(&w);
        }
        s
    }

    /// Creation times spread at random over the last 30 days, oldest first: the daemon
    /// writes jobs as they come, so row order follows `created_at` as it would in production.
    fn times(&mut self, n: usize) -> Vec<i64> {
        let mut t: Vec<i64> = (0..n)
            .map(|_| self.now - self.rng.random_range(0..30 * DAY_MS))
            .collect();
        t.sort_unstable();
        t
    }

    /// One finished job created at `created`.
    fn job(&mut self, created: i64) -> BenchJob {
        let name = self.names[self.rng.random_range(0..self.names.len())].clone();
        let model = MODELS[self.rng.random_range(0..MODELS.len())];
        let team = TEAMS[self.rng.random_range(0..TEAMS.len())];
        let env = if self.rng.random_bool(0.8) {
            "prod"
        } else {
            "staging"
        };
        let prompt = self.text(40);
        let spec = JobSpec::from_value(
            json!({
                "name": name,
                "model": model,
                "input": format!("Research and report: {prompt}"),
                "metadata": {"team": team, "env": env},
                "max_output_tokens": 20000,
            }),
            "#bench",
        )
        .unwrap_or_else(|e| panic!("the generated spec is invalid: {e:?}"));
        let roll: f64 = self.rng.random();
        let status = if roll < 0.85 {
            JobStatus::Completed
        } else if roll < 0.95 {
            JobStatus::Failed
        } else {
            JobStatus::Cancelled
        };
        let submitted_at = created + self.rng.random_range(50..5_000);
        let finished_at = submitted_at + self.rng.random_range(60_000..1_800_000);
        let (output_text, error) = match status {
            JobStatus::Completed => {
                let words = self.rng.random_range(300..1_000);
                let mut t = self.text(words);
                if self.rng.random_ratio(1, 1_000) {
                    t.push(' ');
                    t.push_str(RARE_WORD);
                }
                (Some(t), None)
            }
            JobStatus::Failed => (
                None,
                Some(JobError {
                    code: "server_error".into(),
                    message: "The model failed to generate a response.".into(),
                }),
            ),
            _ => (None, None),
        };
        let input_tokens = self.rng.random_range(500..40_000_i64);
        let output_tokens = output_text.as_ref().map_or(0, |t| t.len() as i64 / 4)
            + self.rng.random_range(0..2_000_i64);
        let reasoning = output_tokens / 2;
        let usage = json!({
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": input_tokens / 4},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + output_tokens,
        });
        let resp_id = format!("resp_{}", ulid::Ulid::new());
        let raw = json!({
            "id": resp_id,
            "object": "response",
            "status": status.as_str(),
            "model": model,
            "output": [{"type": "message", "content": [{"type": "output_text", "text": output_text}]}],
            "usage": usage,
        });
        let job = NewJob {
            id: JobId::generate(),
            spec_hash: spec_hash(&spec),
            spec,
            now: created,
            deadline_at: Some(created + DAY_MS),
            origin: "api".into(),
        };
        BenchJob {
            job,
            obs: Observation {
                response_id: ResponseId::parse(&resp_id)
                    .unwrap_or_else(|e| panic!("generated response id: {e}")),
                status,
                output_text,
                usage: Some(usage),
                error,
                raw,
            },
            submitted_at,
            finished_at,
        }
    }
}

/// Sends a job through the daemon's write path: accept, claim, submitted, finished.
async fn write_through_api(store: &Store, b: BenchJob) -> Result<(), Box<dyn std::error::Error>> {
    let id = b.job.id.clone();
    store.insert_job(b.job).await?;
    let per_model = BTreeMap::new();
    let limits = ClaimLimits {
        max_in_flight: i64::MAX,
        per_model: &per_model,
        over_budget: None,
    };
    let claim = store
        .claim_submission(b.submitted_at, Lease::unowned(60_000), &limits)
        .await?
        .claim
        .ok_or("nothing to claim")?;
    if claim.id != id {
        return Err(format!("claimed {} instead of {id}", claim.id).into());
    }
    store
        .attach_response(
            &id,
            &b.obs.response_id,
            &AttachContext {
                now: b.submitted_at,
                first_poll_at: b.submitted_at + 5_000,
                poll_interval_ms: 5_000,
                kind: respool::store::EventKind::Submitted,
                how: "create",
                request_id: None,
                turn: None,
            },
        )
        .await?;
    store
        .apply_observation(
            &id,
            &b.obs,
            &ApplyContext {
                now: b.finished_at,
                next_poll_at: b.finished_at + 5_000,
                poll_interval_ms: 5_000,
                cancel_reason: None,
                outbox: &[],
                source: "poll",
                request_id: None,
                artifacts: &[],
                image_prices: Default::default(),
            },
        )
        .await?;
    Ok(())
}

/// Median and 95th percentile (ms) of the durations.
fn summary(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let p95 = ((d.len() as f64 * 0.95).ceil() as usize).clamp(1, d.len()) - 1;
    (ms(d[d.len() / 2]), ms(d[p95]))
}

/// Runs `f` `reps` times (after one warm-up) and returns (median, p95, rows of the last run).
async fn time<F, Fut, T>(reps: usize, mut f: F) -> (f64, f64, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<T>>,
{
    let _ = f().await;
    let mut durations = Vec::with_capacity(reps);
    let mut rows = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let out = f().await;
        durations.push(t.elapsed());
        rows = out.len();
    }
    let (med, p95) = summary(durations);
    (med, p95, rows)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Peak resident set of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let reps = args.reps.max(1);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("respool.db");
    let store = Store::connect(&format!("sqlite://{}", db.display())).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut generator = Gen::new(args.seed, now);
    let api_jobs = args.api_jobs.min(args.jobs / 2);
    let bulk_jobs = args.jobs - 2 * api_jobs;

    println!(
        "respool history bench: {} jobs over 30 days ({} through the real write path), {} reps per query",
        args.jobs,
        2 * api_jobs,
        reps
    );

    // Fill: a sample through the real path on the empty database, the bulk in batches, then
    // a second sample through the real path on the full database.
    let mut times = generator.times(args.jobs).into_iter();
    let fill_start = Instant::now();
    let t = Instant::now();
    for created in times.by_ref().take(api_jobs) {
        write_through_api(&store, generator.job(created)).await?;
    }
    let api_empty = t.elapsed();
    let t = Instant::now();
    let mut left = bulk_jobs;
    while left > 0 {
        let n = left.min(args.batch.max(1));
        let batch: Vec<BenchJob> = times
            .by_ref()
            .take(n)
            .map(|created| generator.job(created))
            .collect();
        store.bench_insert_finished(&batch).await?;
        left -= n;
    }
    let bulk = t.elapsed();
    let t = Instant::now();
    for created in times {
        write_through_api(&store, generator.job(created)).await?;
    }
    let api_full = t.elapsed();
    let fill = fill_start.elapsed();

    // Retention: the oldest finished jobs become summaries.
    let t = Instant::now();
    let prunable = store
        .prunable_jobs(now - 20 * DAY_MS, args.prune as i64)
        .await?;
    let prunable: Vec<_> = prunable.into_iter().map(|j| (j, None)).collect();
    let pruned = store
        .prune_jobs(&prunable, true, now - 20 * DAY_MS, now)
        .await?;
    let prune = t.elapsed();

    println!();
    println!(
        "fill: {} jobs in {:.1} s ({:.0} jobs/s overall)",
        args.jobs,
        fill.as_secs_f64(),
        args.jobs as f64 / fill.as_secs_f64()
    );
    println!(
        "  bulk insert:       {bulk_jobs} jobs in {:.1} s ({:.0} jobs/s, {} per transaction)",
        bulk.as_secs_f64(),
        bulk_jobs as f64 / bulk.as_secs_f64().max(1e-9),
        args.batch
    );
    let per_job = |d: Duration| d.as_secs_f64() * 1e3 / api_jobs.max(1) as f64;
    println!(
        "  real write path:   {:.2} ms/job on the empty database, {:.2} ms/job at {} jobs",
        per_job(api_empty),
        per_job(api_full),
        args.jobs - api_jobs
    );
    println!(
        "  prune:             {pruned} jobs into job_summaries in {:.2} s ({:.2} ms/job)",
        prune.as_secs_f64(),
        prune.as_secs_f64() * 1e3 / (pruned.max(1) as f64)
    );
    let wal = db.with_extension("db-wal");
    let (main_size, wal_size) = (file_size(&db), file_size(&wal));
    println!(
        "database: {:.1} MiB ({:.1} MiB file + {:.1} MiB WAL)",
        mib(main_size + wal_size),
        mib(main_size),
        mib(wal_size)
    );

    // Reads.
    let page = |f: JobFilter| JobFilter { limit: 25, ..f };
    let first = store.list_jobs(&page(JobFilter::default())).await?;
    let mut cursor = None;
    for _ in 0..19 {
        let rows = store
            .list_jobs(&page(JobFilter {
                before: cursor.clone(),
                ..Default::default()
            }))
            .await?;
        cursor = rows.last().map(|r| (r.created_at, r.id.to_string()));
    }
    let model = first
        .first()
        .map_or(MODELS[0].to_string(), |r| r.model.clone());
    let queries: Vec<(&str, JobFilter)> = vec![
        ("list: first page", page(JobFilter::default())),
        (
            "list: status=failed",
            page(JobFilter {
                status: Some(JobStatus::Failed),
                ..Default::default()
            }),
        ),
        (
            "list: status=cancelled",
            page(JobFilter {
                status: Some(JobStatus::Cancelled),
                ..Default::default()
            }),
        ),
        (
            "list: model",
            page(JobFilter {
                model: Some(model),
                ..Default::default()
            }),
        ),
        (
            "list: name",
            page(JobFilter {
                name: Some(generator.names[0].clone()),
                ..Default::default()
            }),
        ),
        (
            "list: since 7d",
            page(JobFilter {
                since: Some(now - 7 * DAY_MS),
                ..Default::default()
            }),
        ),
        (
            "search: common word",
            page(JobFilter {
                search: Some(COMMON_WORD.into()),
                ..Default::default()
            }),
        ),
        (
            "search: rare word",
            page(JobFilter {
                search: Some(RARE_WORD.into()),
                ..Default::default()
            }),
        ),
        (
            "search: no match",
            page(JobFilter {
                search: Some("xylophonequartz".into()),
                ..Default::default()
            }),
        ),
        (
            "metadata: team=legal",
            page(JobFilter {
                metadata: vec![("team".into(), "legal".into())],
                ..Default::default()
            }),
        ),
        (
            "metadata: no match",
            page(JobFilter {
                metadata: vec![("team".into(), "nobody".into())],
                ..Default::default()
            }),
        ),
        (
            "list: page 20 (before cursor)",
            page(JobFilter {
                before: cursor,
                ..Default::default()
            }),
        ),
    ];

    let mut table: Vec<(String, f64, f64, String)> = Vec::new();
    for (label, filter) in &queries {
        let (med, p95, rows) = time(reps, || async {
            store.list_jobs(filter).await.unwrap_or_else(|e| {
                eprintln!("{label}: {e}");
                Vec::new()
            })
        })
        .await;
        table.push((label.to_string(), med, p95, format!("{rows} rows")));
    }

    let since = now - 30 * DAY_MS;
    let (med, p95, rows) = time(reps, || async {
        store.stats_since(since).await.unwrap_or_default()
    })
    .await;
    table.push(("stats_since(30d)".into(), med, p95, format!("{rows} rows")));
    let rows = store.stats_since(since).await?;
    let models: BTreeMap<String, ModelPrice> = MODELS
        .iter()
        .take(3)
        .map(|m| (m.to_string(), ModelPrice::standard(2.0, 8.0, Some(0.5))))
        .collect();
    let prices = respool::pricing::Prices::new(&models, respool::pricing::ToolPrices::BUILTIN);
    for by in [GroupBy::Model, GroupBy::Day, GroupBy::Name] {
        let (med, p95, groups) = time(reps, || async {
            fold(&rows, by, chrono_tz::Europe::Paris, &prices).1
        })
        .await;
        table.push((
            format!("stats fold by {}", by.as_str()),
            med,
            p95,
            format!("{groups} groups"),
        ));
    }
    let (med, p95, rows) = time(reps, || async {
        store.count_by_status().await.unwrap_or_default()
    })
    .await;
    table.push(("count_by_status".into(), med, p95, format!("{rows} rows")));

    println!();
    println!(
        "{:<32} {:>10} {:>10}  result",
        "query", "median ms", "p95 ms"
    );
    for (label, med, p95, result) in &table {
        let flag = if *med > 100.0 { "  <-- slow" } else { "" };
        println!("{label:<32} {med:>10.2} {p95:>10.2}  {result}{flag}");
    }
    println!();
    let (main_size, wal_size) = (file_size(&db), file_size(&wal));
    println!(
        "database after reads: {:.1} MiB (incl. {:.1} MiB WAL)",
        mib(main_size + wal_size),
        mib(wal_size)
    );
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: unknown (no /proc/self/status)"),
    }
    store.close().await;
    if args.keep {
        println!(
            "database kept at {}",
            dir.keep().join("respool.db").display()
        );
    }
    Ok(())
}
