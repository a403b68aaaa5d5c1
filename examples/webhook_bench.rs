//! Webhook ingest: how many signed deliveries a second respool takes in, and how fast it
//! answers them, beside the ceiling of a server that only verifies them, in one run on one
//! machine.
//!
//! ```text
//! cargo build --release      # the daemon measured is target/release/respool
//! cargo run --release --example webhook_bench -- --deliveries 20000 --concurrency 32
//! # five rounds, each the ceiling then respool, and the medians:
//! cargo run --release --example webhook_bench -- --rounds 5
//! # three daemons on a fresh database of a PostgreSQL server, behind a balancer:
//! cargo run --release --example webhook_bench -- --database postgres://… --daemons 3
//! ```
//!
//! Two targets, one after the other, each a process of its own so that its CPU time and memory
//! can be read from `/proc`:
//!
//! - the **ceiling**: this program started again as a minimal axum server that verifies each
//!   delivery with `respool::signing::Keys` (the daemon's own verification: headers,
//!   timestamp window, constant-time signature, the event parsed) and answers `200`, storing
//!   nothing;
//! - **respool**: the release binary, `respool serve` with a generated config in a temp dir (a
//!   fresh SQLite file, or with `--database` a fresh database on a PostgreSQL server;
//!   `webhook.secrets` set, upstream pointed at the simulator run in this process), receiving
//!   exactly as it would from OpenAI. With `--daemons N`, N of them on the one database behind
//!   a round-robin TCP balancer in this process (the ceiling is then reached through a
//!   balancer too, so the ratio compares like with like); CPU and memory are their sums.
//!
//! The load generator keeps `--concurrency` keep-alive connections busy, each sending the next
//! delivery as soon as the previous one is answered: distinct `webhook-id`s, OpenAI's thin
//! `response.completed` bodies naming distinct `resp_…` ids, signed at the moment of sending.
//! A warm-up (`--warmup`) goes to each target first and is not measured. For each target it
//! prints deliveries per second, p50/p90/p99/max latency, the non-200 answers and transport
//! errors, and the server's CPU time and peak RSS; then respool's figures as a share of the
//! ceiling's. Afterwards it counts the rows of respool's `webhook_deliveries` table (in the
//! SQLite file or the PostgreSQL database): every delivery answered `200` must be there, and a
//! shortfall is printed as LOST; and it prints the WARN and ERROR lines of the daemons' logs.
//!
//! The deliveries name responses no job of this fresh database knows, so after recording each
//! one respool also looks it up upstream, as it does for the webhook of a create whose answer
//! was lost; the simulator answers `404`. Those look-ups go at `webhook.lookups_per_second`
//! (20 a second by default, after a burst of 8): the rest are booked later times in the
//! database, as they would be in a flood of deliveries for other applications' responses.
//!
//! Nothing is asserted: it prints figures (see `docs/benchmarks.md`).

mod bench_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use clap::Parser;
use hdrhistogram::Histogram;
use secrecy::SecretString;
use serde_json::json;
use tokio::task::JoinSet;

use bench_support::cluster::{self, Balancer, ClusterArgs, GroupUsage, Ledger, Plan};
use bench_support::{ChildProc, ProcUsage};

/// The environment variable that hands the secret to the ceiling process (not its command
/// line, which `ps` shows).
const SECRET_ENV: &str = "WEBHOOK_BENCH_SECRET";
/// The receiver's path on both targets (respool's default `webhook.path`).
const PATH: &str = "/webhooks/openai";

#[derive(Parser)]
#[command(
    about = "Webhook ingest: signed deliveries per second into respool, beside a verify-only ceiling",
    long_about = "Sends N correctly signed Standard Webhooks deliveries at C concurrent keep-alive \
connections, first to a ceiling server (verifies, answers 200, stores nothing), then to the \
release respool daemon (target/release/respool: build it first with `cargo build --release`), \
and prints deliveries/s, latency percentiles, errors, CPU and memory of each, and respool's \
figures as a share of the ceiling's. Checks afterwards that respool stored every delivery it \
answered 200. With --database postgres://… the daemons run on a fresh database of that server; \
with --daemons N, N daemons on it behind a round-robin balancer in this process. Asserts nothing."
)]
struct Args {
    /// Deliveries measured per target.
    #[arg(long, default_value_t = 20_000)]
    deliveries: usize,
    /// Connections kept open, each with one delivery in flight at a time.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Deliveries sent to each target before the measured ones (not measured).
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// Rounds, each the ceiling then respool, fresh processes and a fresh database: with more
    /// than one, the medians over the rounds are printed at the end (the ceiling alone moves
    /// by a quarter from run to run on a shared machine).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The respool binary to measure (default: `respool` beside this benchmark's directory,
    /// i.e. target/release/respool).
    #[arg(long)]
    respool: Option<PathBuf>,
    /// Keep the temp dir (the daemons' configs and logs, the SQLite file) and print its path;
    /// and the PostgreSQL database (not dropped).
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Internal: serve as the ceiling on this address (the benchmark starts itself so).
    #[arg(long, hide = true)]
    serve_ceiling: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.serve_ceiling {
        return serve_ceiling(addr).await;
    }
    if args.deliveries == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--deliveries, --concurrency and --rounds must be at least 1");
    }
    let respool = bench_support::respool_binary(args.respool.as_deref())?;
    let http = bench_support::http_client(args.concurrency)?;
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    println!("respool webhook ingest bench, {date}");
    println!(
        "machine: {}; load average {}",
        bench_support::machine(),
        bench_support::load_average()
    );
    println!("respool: {}", respool.display());
    println!(
        "{} deliveries per target after {} warm-up, {} keep-alive connections, one delivery in flight on each; {} round{}",
        args.deliveries,
        args.warmup,
        args.concurrency,
        args.rounds,
        if args.rounds == 1 { "" } else { "s" }
    );
    println!();
    let mut rounds = Vec::new();
    for r in 1..=args.rounds {
        if args.rounds > 1 {
            println!("=== round {r} of {} ===", args.rounds);
        }
        rounds.push(round(&args, &respool, &http).await?);
    }
    if rounds.len() > 1 {
        print_medians(&rounds);
    }
    println!();
    println!("load average at the end: {}", bench_support::load_average());
    Ok(())
}

/// What one round measured: (ceiling, respool).
struct Figures {
    rate: (f64, f64),
    p50_ms: (f64, f64),
    p99_ms: (f64, f64),
    cpu_per_1k: (Option<f64>, Option<f64>),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The medians over the rounds, and each round's share of its own ceiling.
fn print_medians(rounds: &[Figures]) {
    let shares: Vec<f64> = rounds.iter().map(|f| f.rate.1 / f.rate.0).collect();
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let of = |pick: &dyn Fn(&Figures) -> f64| rounds.iter().map(pick).collect::<Vec<f64>>();
    println!();
    println!(
        "over {} rounds (medians; each round's figures in order)",
        rounds.len()
    );
    println!(
        "  share of the ceiling's throughput: {:.2} ({})",
        median(shares.clone()),
        list(&shares, 2)
    );
    for (label, ceiling, respool) in [
        ("deliveries/s", of(&|f| f.rate.0), of(&|f| f.rate.1)),
        ("p50 latency, ms", of(&|f| f.p50_ms.0), of(&|f| f.p50_ms.1)),
        ("p99 latency, ms", of(&|f| f.p99_ms.0), of(&|f| f.p99_ms.1)),
    ] {
        let digits = if label.starts_with('d') { 0 } else { 2 };
        println!(
            "  {label}: respool {:.digits$} ({}), ceiling {:.digits$} ({})",
            median(respool.clone()),
            list(&respool, digits),
            median(ceiling.clone()),
            list(&ceiling, digits)
        );
    }
    let cpu: Vec<f64> = rounds.iter().filter_map(|f| f.cpu_per_1k.1).collect();
    let ceiling_cpu: Vec<f64> = rounds.iter().filter_map(|f| f.cpu_per_1k.0).collect();
    if !cpu.is_empty() && !ceiling_cpu.is_empty() {
        println!(
            "  CPU per 1,000 deliveries, s: respool {:.3} ({}), ceiling {:.3} ({})",
            median(cpu.clone()),
            list(&cpu, 3),
            median(ceiling_cpu.clone()),
            list(&ceiling_cpu, 3)
        );
    }
}

/// One round: the ceiling, then respool on a fresh database; prints both and their ratios.
async fn round(args: &Args, respool: &std::path::Path, http: &reqwest::Client) -> Result<Figures> {
    let me = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let secret = bench_support::new_secret();
    let signer = Arc::new(standardwebhooks::Webhook::new(&secret)?);
    let ledger = Ledger::create(args.cluster.database.as_deref(), dir.path()).await?;
    let plan = Plan::new(&args.cluster, respool, dir.path()).await?;
    println!("setup: {}", args.cluster.describe(&ledger));
    println!();
    let http = http.clone();

    // The ceiling: this program again, as a verify-and-200 server.
    let port = bench_support::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut ceiling = ChildProc::spawn(
        "ceiling",
        &me,
        &["--serve-ceiling", &listen],
        dir.path(),
        &[(SECRET_ENV, &secret)],
    )?;
    ceiling
        .wait_healthy(
            &http,
            &format!("http://{listen}/healthz"),
            Duration::from_secs(20),
        )
        .await?;
    // Behind a balancer like the daemons, when they are.
    let (base, ceiling_front) = if args.cluster.daemons > 1 || args.cluster.balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let front = Balancer::spawn(listener, vec![listen.parse()?]);
        (base, Some(front))
    } else {
        (format!("http://{listen}"), None)
    };
    let url = format!("{base}{PATH}");
    let ceiling_run = measure(&http, &url, &signer, args, std::slice::from_ref(&ceiling)).await?;
    ceiling.stop(Duration::from_secs(5)).await;
    drop(ceiling_front);
    ceiling_run.print(if args.cluster.daemons > 1 || args.cluster.balancer {
        "ceiling (verifies with respool::signing::Keys, answers 200, stores nothing; behind a balancer as respool is)"
    } else {
        "ceiling (verifies with respool::signing::Keys, answers 200, stores nothing)"
    });

    // respool: the release daemon, against the simulator in this process.
    let sim = respool::sim::spawn(respool::sim::SimConfig::default()).await?;
    let config = format!(
        "webhook:\n  path: {PATH}\n  secrets: [\"{secret}\"]\n\
         notify:\n  default: []\n"
    );
    let mut cluster = plan.start(&http, &ledger, &sim.base_url(), &config).await?;
    let url = format!("{}{PATH}", cluster.base);
    let respool_run = measure(&http, &url, &signer, args, &cluster.daemons).await?;
    // What the daemons answered 200 must be in their ledger now (a 200 promises it is stored).
    let stored = count_deliveries(&ledger).await;
    let accepted = respool_run.warmup_ok + respool_run.ok;
    let front = cluster.front();
    cluster.check_running()?;
    cluster.stop(Duration::from_secs(10)).await;
    sim.shutdown().await;
    respool_run.print(&format!(
        "respool (respool serve, release build: {})",
        args.cluster.describe(&ledger)
    ));
    println!("  {front}");

    match stored {
        Ok(stored) if stored as usize == accepted => println!(
            "  stored: all {accepted} deliveries answered 200 (warm-up included) are in webhook_deliveries"
        ),
        Ok(stored) if (stored as usize) < accepted => {
            let lost = accepted - stored as usize;
            println!();
            println!(
                "  !!!!! LOST DELIVERIES: {lost} of {accepted} answered 200 are NOT in webhook_deliveries ({stored} rows) !!!!!"
            );
            println!();
        }
        Ok(stored) => println!(
            "  stored: {stored} rows in webhook_deliveries for {accepted} deliveries answered 200 (more rows than 200s: some answers were errors after the row was written)"
        ),
        Err(e) => println!("  stored: UNKNOWN, cannot read the ledger: {e:#}"),
    }
    cluster.print_log_problems(5);

    println!();
    println!("respool / ceiling");
    println!(
        "  throughput: {:.2} ({:.0} / {:.0} deliveries/s)",
        respool_run.rate() / ceiling_run.rate(),
        respool_run.rate(),
        ceiling_run.rate()
    );
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let r = respool_run.hist.value_at_quantile(q) as f64;
        let c = ceiling_run.hist.value_at_quantile(q).max(1) as f64;
        println!(
            "  {label} latency: {:.1}x ({} / {} ms)",
            r / c,
            bench_support::fmt_ms(r / 1000.0),
            bench_support::fmt_ms(c / 1000.0)
        );
    }
    if let (Some(r), Some(c)) = (respool_run.cpu_per_1k(), ceiling_run.cpu_per_1k()) {
        println!(
            "  CPU per 1,000 deliveries: {:.1}x ({r:.3} / {c:.3} s)",
            r / c.max(1e-9)
        );
    }

    cluster::finish(dir, &ledger, args.keep).await;
    let ms = |run: &Run, q: f64| run.hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Figures {
        rate: (ceiling_run.rate(), respool_run.rate()),
        p50_ms: (ms(&ceiling_run, 0.5), ms(&respool_run, 0.5)),
        p99_ms: (ms(&ceiling_run, 0.99), ms(&respool_run, 0.99)),
        cpu_per_1k: (ceiling_run.cpu_per_1k(), respool_run.cpu_per_1k()),
    })
}

/// What one target did with the measured deliveries.
struct Run {
    sent: usize,
    ok: usize,
    /// Deliveries of the warm-up answered 200 (stored too, for respool).
    warmup_ok: usize,
    /// Answers other than 200, by status.
    non_200: std::collections::BTreeMap<u16, usize>,
    transport_errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    hist: Histogram<u64>,
    /// The server processes' usage before and after the measured deliveries.
    before: Option<GroupUsage>,
    after: Option<GroupUsage>,
    /// This process (the load generator, and for respool the simulator it looks
    /// deliveries up in) over the same time.
    generator_cpu: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn cpu_seconds(&self) -> Option<f64> {
        self.after.as_ref()?.cpu_since(self.before.as_ref()?)
    }

    fn cpu_per_1k(&self) -> Option<f64> {
        Some(self.cpu_seconds()? * 1000.0 / self.sent.max(1) as f64)
    }

    fn print(&self, title: &str) {
        println!("{title}");
        println!(
            "  {} deliveries in {:.2} s: {:.0} deliveries/s",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        println!("  latency: {}", bench_support::latency_line(&self.hist));
        let non_200: usize = self.non_200.values().sum();
        let errors = non_200 + self.transport_errors;
        if errors == 0 {
            println!("  errors: 0 (every delivery answered 200)");
        } else {
            let by_status: Vec<String> = self
                .non_200
                .iter()
                .map(|(s, n)| format!("{n} x {s}"))
                .collect();
            println!(
                "  ERRORS: {errors} of {} ({} non-200: {}; {} transport errors); first: {}",
                self.sent,
                non_200,
                if by_status.is_empty() {
                    "none".into()
                } else {
                    by_status.join(", ")
                },
                self.transport_errors,
                self.first_error.as_deref().unwrap_or("-")
            );
        }
        let after = self.after.as_ref();
        let several = after.is_some_and(|a| a.each.len() > 1);
        match (
            self.cpu_seconds(),
            self.cpu_per_1k(),
            after.and_then(GroupUsage::total),
        ) {
            (Some(cpu), Some(per_1k), Some(total)) => println!(
                "  server{}: {cpu:.2} s CPU ({per_1k:.3} s per 1,000 deliveries, {:.0} % of a core), peak RSS {:.1} MiB",
                if several { "s, summed" } else { "" },
                cpu / self.elapsed.as_secs_f64().max(1e-9) * 100.0,
                total.peak_rss_mib()
            ),
            _ => println!("  server: CPU and memory unknown (no /proc)"),
        }
        if let (true, Some(after), Some(before)) = (several, after, self.before.as_ref()) {
            for line in after.per_process(before) {
                println!("    {line}");
            }
        }
        if let Some(cpu) = self.generator_cpu {
            println!(
                "  load generator (this process, with the balancer if any): {cpu:.2} s CPU ({:.0} % of a core)",
                cpu / self.elapsed.as_secs_f64().max(1e-9) * 100.0
            );
        }
        println!();
    }
}

/// Sends the warm-up, then the measured deliveries, to `url`.
async fn measure(
    http: &reqwest::Client,
    url: &str,
    signer: &Arc<standardwebhooks::Webhook>,
    args: &Args,
    servers: &[ChildProc],
) -> Result<Run> {
    let warm = drive(http, url, signer, args.warmup, args.concurrency).await?;
    let me = std::process::id();
    let (before, gen_before) = (GroupUsage::read(servers), ProcUsage::read(me));
    let started = Instant::now();
    let mut run = drive(http, url, signer, args.deliveries, args.concurrency).await?;
    run.elapsed = started.elapsed();
    run.after = Some(GroupUsage::read(servers));
    if let (Some(a), Some(b)) = (ProcUsage::read(me), gen_before) {
        run.generator_cpu = Some(a.cpu_seconds - b.cpu_seconds);
    }
    run.before = Some(before);
    run.warmup_ok = warm.ok;
    Ok(run)
}

/// `count` distinct deliveries, `concurrency` at a time.
async fn drive(
    http: &reqwest::Client,
    url: &str,
    signer: &Arc<standardwebhooks::Webhook>,
    count: usize,
    concurrency: usize,
) -> Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.min(count.max(1)) {
        let (http, url, signer, next) =
            (http.clone(), url.to_string(), signer.clone(), next.clone());
        tasks.spawn(async move {
            let mut part = Part::new()?;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                part.send_one(&http, &url, &signer).await;
            }
            anyhow::Ok(part)
        });
    }
    let mut run = Run {
        sent: 0,
        ok: 0,
        warmup_ok: 0,
        non_200: Default::default(),
        transport_errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        hist: bench_support::histogram()?,
        before: None,
        after: None,
        generator_cpu: None,
    };
    while let Some(part) = tasks.join_next().await {
        let part = part.context("a sender task panicked")??;
        run.sent += part.sent;
        run.ok += part.ok;
        for (s, n) in part.non_200 {
            *run.non_200.entry(s).or_default() += n;
        }
        run.transport_errors += part.transport_errors;
        run.first_error = run.first_error.or(part.first_error);
        run.hist.add(&part.hist)?;
    }
    Ok(run)
}

/// One connection's share of a run.
struct Part {
    sent: usize,
    ok: usize,
    non_200: std::collections::BTreeMap<u16, usize>,
    transport_errors: usize,
    first_error: Option<String>,
    hist: Histogram<u64>,
}

impl Part {
    fn new() -> Result<Self> {
        Ok(Self {
            sent: 0,
            ok: 0,
            non_200: Default::default(),
            transport_errors: 0,
            first_error: None,
            hist: bench_support::histogram()?,
        })
    }

    /// Builds, signs and sends one delivery, and records how it went.
    async fn send_one(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        signer: &standardwebhooks::Webhook,
    ) {
        let webhook_id = format!("wh_{}", ulid::Ulid::new().to_string().to_lowercase());
        let now = chrono::Utc::now().timestamp();
        let body = json!({
            "object": "event",
            "id": format!("evt_{}", ulid::Ulid::new().to_string().to_lowercase()),
            "type": "response.completed",
            "created_at": now,
            "data": {"id": format!("resp_{}", ulid::Ulid::new().to_string().to_lowercase())},
        })
        .to_string();
        let signature = match signer.sign(&webhook_id, now, body.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                self.fail(format!("cannot sign: {e}"));
                return;
            }
        };
        let started = Instant::now();
        let sent = http
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", respool::sim::WEBHOOK_USER_AGENT)
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        self.sent += 1;
        match sent {
            Ok(response) => {
                let status = response.status();
                // Read the answer to the end so the connection goes back to the pool.
                let text = response.text().await.unwrap_or_default();
                bench_support::record(&mut self.hist, started.elapsed());
                if status == reqwest::StatusCode::OK {
                    self.ok += 1;
                } else {
                    *self.non_200.entry(status.as_u16()).or_default() += 1;
                    if self.first_error.is_none() {
                        self.first_error = Some(format!("{status}: {text}"));
                    }
                }
            }
            Err(e) => {
                bench_support::record(&mut self.hist, started.elapsed());
                self.transport_errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{e}"));
                }
            }
        }
    }

    fn fail(&mut self, e: String) {
        self.sent += 1;
        self.transport_errors += 1;
        self.first_error.get_or_insert(e);
    }
}

/// Rows of respool's `webhook_deliveries`, read from its SQLite file (read-only, beside the
/// running daemons) or its PostgreSQL database.
async fn count_deliveries(ledger: &Ledger) -> Result<i64> {
    let mut conn = ledger.connect().await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
        .fetch_one(&mut conn)
        .await?;
    Ok(n)
}

/// The ceiling: verify as respool does, answer 200, store nothing.
async fn serve_ceiling(addr: SocketAddr) -> Result<()> {
    let secret = std::env::var(SECRET_ENV).with_context(|| format!("{SECRET_ENV} is not set"))?;
    let keys = Arc::new(respool::signing::Keys::new(&[SecretString::from(secret)]));
    let app = Router::new()
        .route(PATH, post(ceiling_receive))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(keys);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn ceiling_receive(
    State(keys): State<Arc<respool::signing::Keys>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    match keys.verify(&body, &headers) {
        Ok(_) => (StatusCode::OK, axum::Json(json!({"received": true}))),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": e.to_string()}})),
        ),
    }
}
