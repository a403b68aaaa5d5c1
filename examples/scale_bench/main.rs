//! Orchestration at scale: N jobs submitted at once over REST to the release `respool serve`,
//! run by the simulator for 20–40 s each, their completions learned from signed webhooks and
//! their notifications delivered to a webhook sink; prints how fast each step went, what it
//! cost upstream, and the daemon's CPU and memory, beside the targets of the issue "Fast under
//! load".
//!
//! ```text
//! cargo build --release      # the daemon measured is target/release/respool
//! cargo run --release --example scale_bench -- --jobs 10000
//! cargo run --release --example scale_bench -- --jobs 10000 --rounds 3    # and the medians
//! cargo run --release --example scale_bench -- --jobs 200 --run-time 2s    # a quick check
//! # three daemons on a fresh database of a PostgreSQL server, behind a balancer:
//! cargo run --release --example scale_bench -- --jobs 2000 --database postgres://… --daemons 3
//! ```
//!
//! In one run:
//!
//! - the simulator runs in this process (`respool::sim::spawn`), each job's response queued a
//!   tenth of its upstream time and in progress the rest (`metadata.sim`, the time drawn from
//!   `--run-time`), sending a signed `response.*` webhook to the daemon's receiver when it ends;
//!   its rate-limit headers count down from `--sim-rpm` (default a million a minute, so a
//!   window never holds creates back: the bench measures respool, not a quota);
//! - `respool serve` runs as a child process with a generated config in a temp dir (a fresh
//!   SQLite file, or with `--database` a fresh database on a PostgreSQL server; the webhook
//!   secret, `limits.max_in_flight` = N so every job can run at once, everything else at its
//!   default unless a flag says) and one `webhook` sink; with `--daemons N`, N of them on the
//!   one database, each with its own port and state directory, behind a round-robin TCP
//!   balancer in this process that the intake, the simulator's webhooks and the timeline reads
//!   all go through (CPU and memory are then the daemons' sums);
//! - the sink's URL is a receiver in this process that checks each notification's signature
//!   and notes when it arrived.
//!
//! All N jobs are POSTed to `/v1/jobs` at once over `--concurrency` connections; then the
//! bench waits until every job's notification has arrived (printing progress every 10 s) and
//! reads each job's timeline (`GET /v1/jobs/{id}/events`: the terminal `status` event's time, in
//! milliseconds), the simulator's record of each response (created, finished) and, once the
//! daemon has stopped, when its receiver recorded each webhook and handed it off to its job
//! (`webhook_deliveries`). It prints: intake jobs/s and POST latency, upstream creates/s,
//! upstream end → webhook received (→ handed off) and → recorded by the daemon, recorded →
//! notification received, the total time, upstream requests per job, the daemon's peak RSS
//! (`VmHWM`) and CPU time (`utime + stime`) in total and per 1,000 jobs, and its CPU while every
//! job waits upstream (when the last create comes early enough before the first end for such a
//! window).
//!
//! Nothing is asserted: it prints figures (see `docs/benchmarks.md`).

#[path = "../bench_support/mod.rs"]
mod bench_support;
mod intake;
mod ledger;
mod sink;
mod wait;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use axum::Router;
use axum::routing::post;
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use bench_support::cluster::{self, ClusterArgs, Ledger, Plan};
use bench_support::{fmt_ms, latency_line, now_ms, p99_ms, verdict};

/// The targets of the issue "Fast under load".
const TARGET_INTAKE_PER_S: f64 = 2_000.0;
const TARGET_RECORDED_P99_MS: f64 = 2_000.0;
const TARGET_NOTIFIED_P99_MS: f64 = 1_000.0;
const TARGET_REQUESTS_PER_JOB: f64 = 2.1;
const TARGET_PEAK_RSS_MB: f64 = 96.0;
const TARGET_CPU_PER_1K_S: f64 = 3.0;

/// How often progress is printed while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    about = "Orchestration at scale: N jobs through the release respool daemon and the simulator",
    long_about = "Submits N jobs at once over REST to the release respool daemon \
(target/release/respool: build it first with `cargo build --release`), which runs them against \
the simulator in this process (webhooks on) and notifies a webhook sink in this process; waits \
until every notification arrived and prints intake jobs/s, upstream creates/s, upstream end → \
recorded, recorded → notified, total time, upstream requests per job, and the daemon's peak RSS \
and CPU time, beside the targets. Asserts nothing. A quick check: --jobs 200 --run-time 2s. Idle \
CPU is measured only when the jobs run longer upstream than their creates take (at 10,000 jobs: \
--run-time 8m..8m20s)."
)]
struct Args {
    /// Jobs submitted at once.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Connections POSTing jobs at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Each job's time upstream, from its create to its end: one duration (`2s`) or a range
    /// (`20s..40s`) each job's time is drawn from. A tenth of it queued, the rest in progress.
    #[arg(long, default_value = "20s..40s", value_parser = parse_run_time)]
    run_time: (Duration, Duration),
    /// Give up waiting for the notifications after this long (the figures of what arrived are
    /// still printed).
    #[arg(long, default_value = "40m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The daemon's `limits.max_in_flight` (default: --jobs, so every job can run at once).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// The daemon's `limits.max_concurrent_submissions` (default: the daemon's own, 4).
    #[arg(long)]
    max_concurrent_submissions: Option<usize>,
    /// The daemon's `limits.max_concurrent_polls` (default: the daemon's own, 64).
    #[arg(long)]
    max_concurrent_polls: Option<usize>,
    /// The longest window the idle CPU is measured over (while every job waits upstream).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    /// Requests per minute the simulator's rate-limit headers count down from.
    #[arg(long, default_value_t = 1_000_000)]
    sim_rpm: u64,
    /// Webhook deliveries the simulator has in flight at once.
    #[arg(long, default_value_t = 64)]
    sim_webhook_concurrency: usize,
    /// Seed of the run times (same seed, same plan).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The respool binary to measure (default: `respool` beside this benchmark's directory,
    /// i.e. target/release/respool).
    #[arg(long)]
    respool: Option<PathBuf>,
    /// Keep the temp dir (the daemons' configs and logs, the SQLite file) and print its path;
    /// and the PostgreSQL database (not dropped).
    #[arg(long)]
    keep: bool,
    /// Runs the whole benchmark this many times, each with fresh processes and a fresh
    /// database, and prints the medians over them at the end (the CPU per job moves with the
    /// machine's load from run to run).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// One round's figures that face a target.
struct Figures {
    intake_per_s: f64,
    recorded_p99_ms: Option<f64>,
    notified_p99_ms: Option<f64>,
    requests_per_job: f64,
    peak_rss_mb: Option<f64>,
    cpu_per_1k_s: Option<f64>,
    /// Jobs notified, of those accepted.
    notified: (usize, usize),
}

/// `2s` or `20s..40s`.
fn parse_run_time(s: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = s.split_once("..").unwrap_or((s, s));
    let parse = |v: &str| humantime::parse_duration(v.trim()).map_err(|e| format!("{v}: {e}"));
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo > hi || lo < Duration::from_millis(100) {
        return Err("a time of at least 100ms, or a range LOW..HIGH with LOW <= HIGH".into());
    }
    Ok((lo, hi))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.jobs == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--jobs, --concurrency and --rounds must be at least 1");
    }
    let respool = bench_support::respool_binary(args.respool.as_deref())?;
    let mut rounds = Vec::new();
    for r in 1..=args.rounds {
        if args.rounds > 1 {
            println!("=== round {r} of {} ===", args.rounds);
        }
        rounds.push(round(&args, &respool).await?);
        if args.rounds > 1 {
            println!();
        }
    }
    if rounds.len() > 1 {
        print_medians(&rounds);
    }
    Ok(())
}

/// The median of `values` (None when empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The medians over the rounds beside the targets, and each round's figure in order.
fn print_medians(rounds: &[Figures]) {
    println!(
        "over {} rounds (medians; each round's figures in order)",
        rounds.len()
    );
    type Pick = fn(&Figures) -> Option<f64>;
    type Meets = fn(f64) -> bool;
    let lines: [(&str, Pick, &str, &str, Meets); 6] = [
        (
            "intake over REST",
            |f| Some(f.intake_per_s),
            " jobs/s",
            ">= 2,000",
            |m| m >= TARGET_INTAKE_PER_S,
        ),
        (
            "upstream end -> recorded, p99",
            |f| f.recorded_p99_ms,
            " ms",
            "<= 2 s",
            |m| m <= TARGET_RECORDED_P99_MS,
        ),
        (
            "job end -> notification, p99",
            |f| f.notified_p99_ms,
            " ms",
            "<= 1 s",
            |m| m <= TARGET_NOTIFIED_P99_MS,
        ),
        (
            "upstream requests per job",
            |f| Some(f.requests_per_job),
            "",
            "<= 2.1",
            |m| m <= TARGET_REQUESTS_PER_JOB,
        ),
        (
            "daemon peak RSS",
            |f| f.peak_rss_mb,
            " MB",
            "<= 96 MB",
            |m| m <= TARGET_PEAK_RSS_MB,
        ),
        (
            "daemon CPU per 1,000 jobs",
            |f| f.cpu_per_1k_s,
            " s",
            "<= 3 s",
            |m| m <= TARGET_CPU_PER_1K_S,
        ),
    ];
    // Whole numbers from 100 up, two decimals below (CPU seconds, requests per job).
    let fmt = |v: f64| match v >= 100.0 {
        true => format!("{v:.0}"),
        false => format!("{v:.2}"),
    };
    for (name, pick, unit, target, meets) in lines {
        let each: Vec<f64> = rounds.iter().filter_map(pick).collect();
        let listed: Vec<String> = each.iter().map(|v| fmt(*v)).collect();
        match median(each) {
            Some(m) => println!(
                "  {name:<34} {}{unit} ({}); target {target}: {}",
                fmt(m),
                listed.join(", "),
                verdict(meets(m))
            ),
            None => println!("  {name:<34} not measured"),
        }
    }
    let notified: Vec<String> = rounds
        .iter()
        .map(|f| format!("{} of {}", f.notified.0, f.notified.1))
        .collect();
    println!("  jobs notified: {}", notified.join(", "));
}

/// One run of the benchmark: fresh processes, database and simulator.
async fn round(args: &Args, respool: &std::path::Path) -> Result<Figures> {
    let respool = respool.to_path_buf();
    let dir = tempfile::tempdir()?;
    let http = bench_support::http_client(args.concurrency.max(16))?;
    let n = args.jobs;
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");

    // The notification receiver.
    let sink_secret = bench_support::new_secret();
    let notes = Arc::new(sink::Notes::new(&sink_secret)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_url = format!("http://{}/notify", listener.local_addr()?);
    let app = Router::new()
        .route("/notify", post(sink::receive))
        .with_state(notes.clone());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    // Where the daemons (or their balancer) will listen, and their ledger.
    let plan = Plan::new(&args.cluster, &respool, dir.path()).await?;
    let ledger = Ledger::create(args.cluster.database.as_deref(), dir.path()).await?;

    // The simulator, sending webhooks to the daemons' receiver (through the balancer).
    let secret = bench_support::new_secret();
    let sim = respool::sim::spawn(respool::sim::SimConfig {
        webhook_url: Some(format!("{}/webhooks/openai", plan.base_url())),
        webhook_secrets: vec![secret.clone()],
        seed: Some(args.seed),
        webhook_concurrency: args.sim_webhook_concurrency.max(1),
        webhook_max_pending: n + 1024,
        faults: respool::sim::Faults {
            ratelimit_requests: args.sim_rpm.max(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;

    // The daemons.
    let max_in_flight = args.max_in_flight.unwrap_or(n);
    let mut limits = format!("limits:\n  max_in_flight: {max_in_flight}\n");
    if let Some(s) = args.max_concurrent_submissions {
        limits.push_str(&format!("  max_concurrent_submissions: {s}\n"));
    }
    if let Some(p) = args.max_concurrent_polls {
        limits.push_str(&format!("  max_concurrent_polls: {p}\n"));
    }
    let config = format!(
        "webhook:\n  secrets: [\"{secret}\"]\n\
         {limits}\
         sinks:\n  bench:\n    type: webhook\n    url: \"{sink_url}\"\n    secret: \"{sink_secret}\"\n\
         notify:\n  default: [bench]\n"
    );
    let mut daemons = plan.start(&http, &ledger, &sim.base_url(), &config).await?;
    let base = daemons.base.clone();

    let (lo, hi) = args.run_time;
    println!("respool scale bench, {date}");
    println!(
        "machine: {}; load average {}",
        bench_support::machine(),
        bench_support::load_average()
    );
    let pids: Vec<String> = daemons
        .daemons
        .iter()
        .map(|d| d.pid().to_string())
        .collect();
    println!("respool: {} (pid {})", respool.display(), pids.join(", "));
    println!("setup: {}", args.cluster.describe(&ledger));
    println!(
        "{n} jobs, {} to {} upstream each, POSTed over {} connections",
        humantime::format_duration(lo),
        humantime::format_duration(hi),
        args.concurrency
    );
    println!(
        "daemon config: limits.max_in_flight {max_in_flight}, max_concurrent_submissions {}, max_concurrent_polls {}, polling and the rest at their defaults; webhooks on; one webhook sink",
        args.max_concurrent_submissions
            .map_or("4 (default)".into(), |s| s.to_string()),
        args.max_concurrent_polls
            .map_or("16 (default)".into(), |p| p.to_string()),
    );
    println!(
        "simulator: in this process; {} webhook deliveries at once; rate-limit headers from {} requests/min",
        args.sim_webhook_concurrency, args.sim_rpm
    );
    println!();

    // Intake: every job POSTed at once.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let plans: Vec<u64> = (0..n)
        .map(|_| {
            let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
            rng.random_range(lo..=hi)
        })
        .collect();
    let usage_start = daemons.usage();
    let first_submit_ms = now_ms();
    let intake_started = Instant::now();
    let intake = intake::submit_all(&http, &base, &plans, args.concurrency).await?;
    let intake_elapsed = intake_started.elapsed();
    let submitted: HashMap<String, u64> = intake.ids.iter().cloned().collect();
    let expected = submitted.len();
    println!(
        "intake: {expected} of {n} jobs accepted in {:.2} s ({:.0} jobs/s); POST latency {}",
        intake_elapsed.as_secs_f64(),
        expected as f64 / intake_elapsed.as_secs_f64().max(1e-9),
        latency_line(&intake.hist)
    );
    if intake.errors > 0 {
        println!(
            "  INTAKE ERRORS: {} (first: {})",
            intake.errors,
            intake.first_error.as_deref().unwrap_or("-")
        );
    }

    // Wait for every notification, measuring idle CPU on the way if a window opens.
    let waited = wait::wait_all(
        args,
        &mut daemons,
        &sim,
        &notes,
        &submitted,
        expected,
        first_submit_ms,
    )
    .await?;
    let usage_end = daemons.usage();
    let last_note_ms = notes.last_ms();
    let stats = sim.stats();

    // What the daemon recorded, per job.
    println!();
    println!("reading {expected} timelines from the daemon…");
    let timelines = ledger::read_timelines(&http, &base, submitted.keys().cloned().collect()).await;
    let responses = sim.responses(None);
    let seen = notes
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let front = daemons.front();
    daemons.check_running()?;
    daemons.stop(Duration::from_secs(15)).await;
    receiver.abort();
    let received = match ledger::webhooks_received(&ledger).await {
        Ok(r) => r,
        Err(e) => {
            println!("cannot read webhook_deliveries: {e:#}");
            HashMap::new()
        }
    };

    // Figures.
    let mut upstream: HashMap<&str, (i64, Option<i64>)> = HashMap::new();
    let mut extra_creates = 0;
    for r in &responses {
        let Some(job) = r.job_id.as_deref() else {
            continue;
        };
        if upstream
            .insert(job, (r.created_ms, r.finished_ms))
            .is_some()
        {
            extra_creates += 1;
        }
    }
    let created: Vec<i64> = upstream.values().map(|(c, _)| *c).collect();
    let (first_create, last_create) = (
        created.iter().min().copied().unwrap_or(0),
        created.iter().max().copied().unwrap_or(0),
    );
    // Upstream end → the daemon's receiver recorded the webhook (its `received_at`), and from
    // there → the hand-off made the job due for a poll (`handled_at`).
    let mut webhook_in = bench_support::histogram()?;
    let mut handed_off = bench_support::histogram()?;
    for r in &responses {
        let Some(&(at, handled)) = received.get(&r.id) else {
            continue;
        };
        if let Some(finished) = r.finished_ms {
            bench_support::record_ms(&mut webhook_in, at - finished);
        }
        if let Some(handled) = handled {
            bench_support::record_ms(&mut handed_off, handled - at);
        }
    }
    let mut recorded = bench_support::histogram()?;
    let mut notified = bench_support::histogram()?;
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let (mut with_webhook, mut unreadable) = (0, 0);
    for (id, timeline) in &timelines {
        let Some(t) = timeline else {
            unreadable += 1;
            continue;
        };
        *statuses
            .entry(
                t.terminal
                    .as_ref()
                    .map_or("unfinished".into(), |(_, s)| s.clone()),
            )
            .or_default() += 1;
        with_webhook += usize::from(t.webhook);
        let Some((end_ms, _)) = &t.terminal else {
            continue;
        };
        if let Some((_, Some(finished))) = upstream.get(id.as_str()) {
            bench_support::record_ms(&mut recorded, end_ms - finished);
        }
        if let Some(arrived) = seen.get(id) {
            bench_support::record_ms(&mut notified, arrived - end_ms);
        }
    }

    let intake_rate = expected as f64 / intake_elapsed.as_secs_f64().max(1e-9);
    let create_span_s = (last_create - first_create) as f64 / 1000.0;
    let creates_rate = created.len() as f64 / create_span_s.max(1e-3);
    let requests = u64::from(stats.creates)
        + u64::from(stats.retrieves)
        + u64::from(stats.cancels)
        + u64::from(stats.deletes);
    let per_job = requests as f64 / expected.max(1) as f64;
    let total_s = (last_note_ms.unwrap_or_else(now_ms) - first_submit_ms) as f64 / 1000.0;

    println!();
    println!("{:<34} {:<62} target", "figure", "measured");
    let row = |name: &str, measured: String, target: String| {
        println!("{name:<34} {measured:<62} {target}");
    };
    row(
        "intake over REST",
        format!(
            "{intake_rate:.0} jobs/s (POST p99 {} ms)",
            fmt_ms(p99_ms(&intake.hist))
        ),
        format!(
            ">= 2,000 jobs/s: {}",
            verdict(intake_rate >= TARGET_INTAKE_PER_S)
        ),
    );
    row(
        "upstream creates",
        format!(
            "{creates_rate:.0} creates/s ({} in {create_span_s:.1} s; last {:.1} s after the first submit)",
            created.len(),
            (last_create - first_submit_ms) as f64 / 1000.0
        ),
        "-".into(),
    );
    row(
        "upstream end -> webhook received",
        latency_line(&webhook_in),
        "(part of the next)".into(),
    );
    row(
        "  webhook received -> handed off",
        latency_line(&handed_off),
        "(part of the next)".into(),
    );
    row(
        "upstream end -> recorded",
        latency_line(&recorded),
        format!(
            "p99 <= 2 s: {}",
            verdict(!recorded.is_empty() && p99_ms(&recorded) <= TARGET_RECORDED_P99_MS)
        ),
    );
    row(
        "job end -> notification received",
        latency_line(&notified),
        format!(
            "p99 <= 1 s: {}",
            verdict(!notified.is_empty() && p99_ms(&notified) <= TARGET_NOTIFIED_P99_MS)
        ),
    );
    row(
        "first submit -> last notification",
        format!("{total_s:.1} s"),
        "-".into(),
    );
    row(
        "upstream requests per job",
        format!(
            "{per_job:.2} ({} creates, {} retrieves, {} cancels, {} deletes)",
            stats.creates, stats.retrieves, stats.cancels, stats.deletes
        ),
        format!("<= 2.1: {}", verdict(per_job <= TARGET_REQUESTS_PER_JOB)),
    );
    let several = daemons.daemons.len() > 1;
    let summed = if several { ", summed" } else { "" };
    let mut figures = Figures {
        intake_per_s: intake_rate,
        recorded_p99_ms: (!recorded.is_empty()).then(|| p99_ms(&recorded)),
        notified_p99_ms: (!notified.is_empty()).then(|| p99_ms(&notified)),
        requests_per_job: per_job,
        peak_rss_mb: None,
        cpu_per_1k_s: None,
        notified: (seen.len(), expected),
    };
    match (usage_start.total(), usage_end.total()) {
        (Some(start), Some(end)) => {
            let cpu = end.cpu_seconds - start.cpu_seconds;
            let per_1k = cpu * 1000.0 / expected.max(1) as f64;
            let peak_mb = end.peak_rss_kib as f64 * 1024.0 / 1e6;
            figures.peak_rss_mb = Some(peak_mb);
            figures.cpu_per_1k_s = Some(per_1k);
            row(
                &format!("daemon peak RSS (VmHWM{summed})"),
                format!("{peak_mb:.0} MB ({:.0} MiB)", end.peak_rss_mib()),
                format!("<= 96 MB: {}", verdict(peak_mb <= TARGET_PEAK_RSS_MB)),
            );
            row(
                &format!("daemon CPU (submit -> end{summed})"),
                format!("{cpu:.1} s, {per_1k:.2} s per 1,000 jobs"),
                format!(
                    "<= 3 s per 1,000 jobs: {}",
                    verdict(per_1k <= TARGET_CPU_PER_1K_S)
                ),
            );
        }
        _ => row(
            "daemon RSS and CPU",
            "unknown (no /proc)".into(),
            "-".into(),
        ),
    }
    row("daemon idle CPU", waited.idle.clone(), "~ 0".into());
    if several {
        for line in usage_end.per_process(&usage_start) {
            println!("  {line}");
        }
    }

    println!();
    let statuses: Vec<String> = statuses.iter().map(|(s, c)| format!("{c} {s}")).collect();
    println!(
        "jobs: {} ({} of them with a webhook in their timeline); {} notified{}{}",
        statuses.join(", "),
        with_webhook,
        seen.len(),
        if unreadable > 0 {
            format!("; {unreadable} timelines unreadable")
        } else {
            String::new()
        },
        if waited.timed_out {
            format!(
                "; TIMED OUT after {}",
                humantime::format_duration(args.timeout)
            )
        } else {
            String::new()
        }
    );
    println!(
        "notifications: {} received, {} repeats, {} with a bad signature or body",
        notes.total.load(Ordering::Relaxed),
        notes.repeats.load(Ordering::Relaxed),
        notes.bad.load(Ordering::Relaxed)
    );
    println!(
        "simulator: {} creates ({extra_creates} beyond one per job), webhooks {} attempted / {} delivered / {} dropped / {} failed, {} 429s, {} 5xx",
        stats.creates,
        stats.webhooks_attempted,
        stats.webhooks_delivered,
        stats.webhooks_dropped,
        stats.webhooks_failed,
        stats.served_429,
        stats.served_5xx
    );
    println!("{front}");
    if let Some(end) = usage_end.total() {
        println!(
            "daemon{} at the end: RSS {:.0} MiB; database {}",
            if several { "s" } else { "" },
            end.rss_kib as f64 / 1024.0,
            ledger.size_bytes().await.map_or_else(
                |e| format!("size unknown ({e:#})"),
                |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
            )
        );
    }
    daemons.print_log_problems(5);
    println!("load average at the end: {}", bench_support::load_average());
    sim.shutdown().await;
    cluster::finish(dir, &ledger, args.keep).await;
    Ok(figures)
}
