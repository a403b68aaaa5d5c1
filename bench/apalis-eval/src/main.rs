//! apalis-postgres 1.0.0 vs respool's own claim pattern, on one local PostgreSQL.
//!
//! One binary, three roles:
//!   apalis-eval all                      the orchestrator: runs every measurement (the ONE run)
//!   apalis-eval apalis-worker k=v ...    one apalis worker process
//!   apalis-eval own-worker k=v ...       one claimer process of our pattern
//!
//! Worker modes: bench (no-op), latency (prints `H <idx> <unix_us>` when handled),
//! record (inserts an `upstream_creates` row = the paid POST, then finishes),
//! crash (records the create, then holds the job `hold_ms` before finishing).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use sqlx::{
    PgPool, Row,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::{Mutex, Notify, mpsc},
};

const URL: &str = "postgres://postgres@127.0.0.1:55433/bench";
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:55433/postgres";

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}
fn now_ms() -> i64 {
    now_us() / 1000
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------- worker args

#[derive(Clone, Debug)]
struct WArgs {
    name: String,
    mode: String,
    conc: usize,
    batch: usize,
    finish: String, // single | unnest (own)
    lock: bool,     // global advisory xact lock on every write tx (own)
    lease_ms: i64,  // own
    hold_ms: u64,   // crash mode
    hb_ms: u64,     // apalis heartbeat
    missed: usize,  // apalis missed heartbeats
    queue: String,  // apalis queue
}

fn parse_args(args: &[String]) -> WArgs {
    let mut m: HashMap<String, String> = HashMap::new();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            m.insert(k.into(), v.into());
        }
    }
    let g = |k: &str, d: &str| m.get(k).cloned().unwrap_or_else(|| d.to_string());
    WArgs {
        name: g("name", "w"),
        mode: g("mode", "bench"),
        conc: g("conc", "8").parse().unwrap(),
        batch: g("batch", "8").parse().unwrap(),
        finish: g("finish", "single"),
        lock: g("lock", "0") == "1",
        lease_ms: g("lease_ms", "60000").parse().unwrap(),
        hold_ms: g("hold_ms", "600000").parse().unwrap(),
        hb_ms: g("hb_ms", "30000").parse().unwrap(),
        missed: g("missed", "10").parse().unwrap(),
        queue: g("queue", "bench"),
    }
}

fn to_args(w: &WArgs) -> Vec<String> {
    vec![
        format!("name={}", w.name),
        format!("mode={}", w.mode),
        format!("conc={}", w.conc),
        format!("batch={}", w.batch),
        format!("finish={}", w.finish),
        format!("lock={}", if w.lock { 1 } else { 0 }),
        format!("lease_ms={}", w.lease_ms),
        format!("hold_ms={}", w.hold_ms),
        format!("hb_ms={}", w.hb_ms),
        format!("missed={}", w.missed),
        format!("queue={}", w.queue),
    ]
}

async fn ready_then_wait_go() {
    println!("READY");
    tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    })
    .await
    .unwrap();
}

async fn record_create(pool: &PgPool, job: &str, worker: &str, attempt: i64) -> Result<(), BoxErr> {
    sqlx::query("INSERT INTO upstream_creates(job, worker, attempt, at_us) VALUES ($1, $2, $3, $4)")
        .bind(job)
        .bind(worker)
        .bind(attempt)
        .bind(now_us())
        .execute(pool)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- apalis worker

#[derive(Clone)]
struct ACtx {
    mode: String,
    pool: PgPool,
    name: String,
    hold_ms: u64,
}

async fn apalis_handle(i: u64, attempt: Attempt, ctx: Data<ACtx>) -> Result<(), BoxDynError> {
    match ctx.mode.as_str() {
        "latency" => println!("H {i} {}", now_us()),
        "record" => {
            record_create(&ctx.pool, &format!("a{i}"), &ctx.name, attempt.current() as i64)
                .await
                .map_err(|e| -> BoxDynError { e })?;
        }
        "crash" => {
            record_create(&ctx.pool, &format!("a{i}"), &ctx.name, attempt.current() as i64)
                .await
                .map_err(|e| -> BoxDynError { e })?;
            println!("C {i}");
            tokio::time::sleep(Duration::from_millis(ctx.hold_ms)).await;
            println!("D {i}");
        }
        _ => {}
    }
    Ok(())
}

async fn apalis_worker(a: WArgs) -> Result<(), BoxErr> {
    let pool = PgPoolOptions::new().max_connections(10).connect(URL).await?;
    let cfg = apalis_postgres::Config::default()
        .queue(&a.queue)
        .batch_size(a.batch)
        .heartbeat_interval(Duration::from_millis(a.hb_ms))
        .missed_heartbeats(a.missed);
    let backend = PostgresStorage::<u64>::new(&pool).with_config(cfg).with_pubsub();
    let ctx = ACtx { mode: a.mode.clone(), pool: pool.clone(), name: a.name.clone(), hold_ms: a.hold_ms };
    ready_then_wait_go().await;
    let worker = WorkerBuilder::new(a.name.as_str())
        .backend(backend)
        .data(ctx)
        .concurrency(a.conc)
        .build(apalis_handle);
    if let Err(e) = worker.run().await {
        println!("WORKER_EXIT {e:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------- our pattern

const CLAIM_SQL: &str = "UPDATE jobs SET status='submitting', attempt=attempt+1, lease_owner=$1, lease_until=$2 \
     WHERE id IN (SELECT id FROM jobs WHERE status='pending' ORDER BY priority DESC, created_at, id \
     LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, attempt";
const FINISH_SQL: &str = "UPDATE jobs SET status='done' WHERE id=$1 AND attempt=$2";
const FINISH_MANY_SQL: &str = "UPDATE jobs SET status='done' FROM unnest($1::text[], $2::bigint[]) AS f(id, attempt) \
     WHERE jobs.id = f.id AND jobs.attempt = f.attempt";
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(1)";

async fn claim(pool: &PgPool, owner: &str, lease_ms: i64, n: usize, lock: bool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let q = || sqlx::query_as::<_, (String, i64)>(CLAIM_SQL).bind(owner).bind(now_ms() + lease_ms).bind(n as i64);
    if lock {
        let mut tx = pool.begin().await?;
        sqlx::query(LOCK_SQL).execute(&mut *tx).await?;
        let rows = q().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    } else {
        q().fetch_all(pool).await
    }
}

async fn finish_one(pool: &PgPool, id: &str, attempt: i64, lock: bool) -> Result<u64, sqlx::Error> {
    if lock {
        let mut tx = pool.begin().await?;
        sqlx::query(LOCK_SQL).execute(&mut *tx).await?;
        let r = sqlx::query(FINISH_SQL).bind(id).bind(attempt).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    } else {
        Ok(sqlx::query(FINISH_SQL).bind(id).bind(attempt).execute(pool).await?.rows_affected())
    }
}

async fn finish_many(pool: &PgPool, ids: &[String], attempts: &[i64], lock: bool) -> Result<u64, sqlx::Error> {
    if lock {
        let mut tx = pool.begin().await?;
        sqlx::query(LOCK_SQL).execute(&mut *tx).await?;
        let r = sqlx::query(FINISH_MANY_SQL).bind(ids).bind(attempts).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    } else {
        Ok(sqlx::query(FINISH_MANY_SQL).bind(ids).bind(attempts).execute(pool).await?.rows_affected())
    }
}

async fn own_worker(a: WArgs) -> Result<(), BoxErr> {
    let pool = PgPoolOptions::new().max_connections(a.conc as u32 + 2).connect(URL).await?;
    let wake = Arc::new(Notify::new());
    {
        let wake = wake.clone();
        let mut listener = PgListener::connect(URL).await?;
        listener.listen("jobs_new").await?;
        tokio::spawn(async move {
            while listener.recv().await.is_ok() {
                wake.notify_one();
            }
        });
    }
    ready_then_wait_go().await;

    if a.mode == "crash" {
        // Claim one batch, "send" each create, then hold the claims (kill -9 or SIGSTOP here).
        let claimed = claim(&pool, &a.name, a.lease_ms, a.batch, a.lock).await?;
        for (id, att) in &claimed {
            record_create(&pool, id, &a.name, *att).await?;
        }
        println!("CLAIMED {}", claimed.len());
        tokio::time::sleep(Duration::from_millis(a.hold_ms)).await;
        let mut affected = 0;
        for (id, att) in &claimed {
            affected += finish_one(&pool, id, *att, a.lock).await?;
        }
        println!("FINISHED affected={affected} of {}", claimed.len());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    }

    // Batch-synchronous claimer: claim up to `batch` jobs in one statement, run their handlers
    // concurrently (the "concurrency"), then close every claim with a write fenced by its attempt.
    loop {
        let claimed = claim(&pool, &a.name, a.lease_ms, a.batch, a.lock).await?;
        if claimed.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        futures::future::join_all(claimed.iter().map(|(id, att)| {
            let (pool, mode, name) = (&pool, &a.mode, &a.name);
            async move {
                match mode.as_str() {
                    "latency" => println!("H {} {}", &id[1..].parse::<u64>().unwrap(), now_us()),
                    "record" => record_create(pool, id, name, *att).await.expect("record"),
                    _ => {}
                }
            }
        }))
        .await;
        if a.finish == "unnest" {
            let ids: Vec<String> = claimed.iter().map(|c| c.0.clone()).collect();
            let atts: Vec<i64> = claimed.iter().map(|c| c.1).collect();
            finish_many(&pool, &ids, &atts, a.lock).await?;
        } else {
            futures::future::try_join_all(claimed.iter().map(|(id, att)| finish_one(&pool, id, *att, a.lock))).await?;
        }
    }
}

// ---------------------------------------------------------------- orchestrator helpers

struct Proc {
    child: Child,
    pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    stdin: Option<tokio::process::ChildStdin>,
}

async fn spawn_worker(kind: &str, w: &WArgs) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .arg(kind)
        .args(to_args(w))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Proc { child, pid, lines: rx, stdin }
}

async fn wait_line(p: &mut Proc, prefix: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, p.lines.recv()).await {
            Ok(Some(l)) if l.starts_with(prefix) => return Some(l),
            Ok(Some(l)) => {
                if l.starts_with("WORKER_EXIT") {
                    println!("    [pid {}] {l}", p.pid);
                }
            }
            _ => return None,
        }
    }
}

async fn start_all(procs: &mut [Proc]) {
    for p in procs.iter_mut() {
        wait_line(p, "READY", Duration::from_secs(30)).await.expect("worker not ready");
    }
    for p in procs.iter_mut() {
        let mut s = p.stdin.take().unwrap();
        s.write_all(b"GO\n").await.unwrap();
        s.flush().await.unwrap();
        p.stdin = Some(s);
    }
}

async fn kill9(p: &mut Proc) {
    let _ = p.child.start_kill();
    let _ = p.child.wait().await;
}

fn signal(pid: u32, sig: &str) {
    std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
}

async fn exec(pool: &PgPool, sql: &'static str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn reset(pool: &PgPool) {
    exec(pool, "TRUNCATE apalis.jobs, apalis.workers; TRUNCATE jobs; TRUNCATE upstream_creates;").await;
}

async fn enqueue_apalis(pool: &PgPool, queue: &str, n: usize, chunk: usize) {
    let mut i = 0;
    while i < n {
        let end = (i + chunk).min(n);
        let tasks: Vec<apalis_postgres::PgTask> = (i..end)
            .map(|j| TaskBuilder::new(serde_json::to_vec(&(j as u64)).unwrap()).build())
            .collect();
        let mut tx = pool.begin().await.unwrap();
        apalis_postgres::queries::push_tasks(&mut *tx, queue, tasks).await.unwrap();
        tx.commit().await.unwrap();
        i = end;
    }
}

async fn enqueue_own(pool: &PgPool, from: usize, n: usize, chunk: usize) {
    let mut i = from;
    while i < from + n {
        let end = (i + chunk).min(from + n);
        let ids: Vec<String> = (i..end).map(|j| format!("j{j:06}")).collect();
        let prio: Vec<i64> = (i..end).map(|j| (j % 3) as i64).collect();
        let created: Vec<i64> = (i..end).map(|j| j as i64).collect();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO jobs(id, status, priority, created_at, attempt, model) \
             SELECT id, 'pending', p, c, 0, 'gpt-x' FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(id, p, c)",
        )
        .bind(&ids)
        .bind(&prio)
        .bind(&created)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("SELECT pg_notify('jobs_new', '')").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        i = end;
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sys {
    Apalis,
    Own { unnest: bool, lock: bool },
}

impl Sys {
    fn label(&self) -> String {
        match self {
            Sys::Apalis => "apalis-postgres 1.0.0 (batch 8, concurrency 8, pubsub)".into(),
            Sys::Own { unnest, lock } => format!(
                "own: claim LIMIT 8 SKIP LOCKED, finish {}{}",
                if *unnest { "batched (unnest)" } else { "one UPDATE per job" },
                if *lock { ", + global advisory xact lock" } else { "" }
            ),
        }
    }
}

fn n() -> usize {
    std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

async fn throughput(pool: &PgPool, sys: Sys, k: usize, run: usize) -> (f64, f64, String) {
    let big_n = n();
    reset(pool).await;
    let t = Instant::now();
    match sys {
        Sys::Apalis => enqueue_apalis(pool, "bench", big_n, 1000).await,
        Sys::Own { .. } => enqueue_own(pool, 0, big_n, 1000).await,
    }
    let enq = t.elapsed().as_secs_f64();
    exec(pool, "ANALYZE apalis.jobs; ANALYZE jobs; CHECKPOINT;").await;
    let mut procs = Vec::new();
    for w in 0..k {
        let mut a = parse_args(&[]);
        a.name = format!("r{run}-k{k}-w{w}-{}", std::process::id());
        match sys {
            Sys::Apalis => procs.push(spawn_worker("apalis-worker", &a).await),
            Sys::Own { unnest, lock } => {
                a.finish = if unnest { "unnest".into() } else { "single".into() };
                a.lock = lock;
                procs.push(spawn_worker("own-worker", &a).await)
            }
        }
    }
    start_all(&mut procs).await;
    let t0 = Instant::now();
    let q = match sys {
        Sys::Apalis => "SELECT count(*) FROM apalis.jobs WHERE status = 'Done'",
        Sys::Own { .. } => "SELECT count(*) FROM jobs WHERE status = 'done'",
    };
    loop {
        if count(pool, q).await >= big_n as i64 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            println!("    TIMEOUT");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    for p in procs.iter_mut() {
        kill9(p).await;
    }
    let check = match sys {
        Sys::Apalis => {
            let rerun = count(pool, "SELECT count(*) FROM apalis.jobs WHERE attempts <> 1").await;
            format!("jobs with attempts<>1: {rerun}")
        }
        Sys::Own { .. } => {
            let rerun = count(pool, "SELECT count(*) FROM jobs WHERE attempt <> 1").await;
            format!("jobs with attempt<>1: {rerun}")
        }
    };
    (big_n as f64 / secs, big_n as f64 / enq, check)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx]
}

thread_local! {
    static LAT: std::cell::Cell<(usize, u64)> = const { std::cell::Cell::new((2000, 5000)) };
}
fn lat_m() -> usize {
    LAT.with(|c| c.get().0)
}
fn lat_gap_us() -> u64 {
    LAT.with(|c| c.get().1)
}

/// Workers idle and woken by LISTEN/NOTIFY; jobs enqueued one per transaction at ~200/s;
/// latency = worker's handler start - the enqueuer's commit return (same clock).
async fn latency(pool: &PgPool, sys: Sys, k: usize, run: usize) -> (f64, f64, f64, usize) {
    let lat_m_ = lat_m();
    reset(pool).await;
    let mut procs = Vec::new();
    for w in 0..k {
        let mut a = parse_args(&[]);
        a.mode = "latency".into();
        if let Ok(hb) = std::env::var("LAT_APALIS_HB_MS") { a.hb_ms = hb.parse().unwrap(); }
        a.name = format!("lat-r{run}-k{k}-w{w}-{}", std::process::id());
        if let Sys::Own { unnest, lock } = sys {
            a.finish = if unnest { "unnest".into() } else { "single".into() };
            a.lock = lock;
            procs.push(spawn_worker("own-worker", &a).await);
        } else {
            procs.push(spawn_worker("apalis-worker", &a).await);
        }
    }
    start_all(&mut procs).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let handled: Arc<Mutex<HashMap<u64, i64>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut readers = Vec::new();
    for p in procs.iter_mut() {
        let mut rx = std::mem::replace(&mut p.lines, mpsc::unbounded_channel().1);
        let handled = handled.clone();
        readers.push(tokio::spawn(async move {
            while let Some(l) = rx.recv().await {
                let mut it = l.split_whitespace();
                if it.next() == Some("H") {
                    let i: u64 = it.next().unwrap().parse().unwrap();
                    let t: i64 = it.next().unwrap().parse().unwrap();
                    handled.lock().await.entry(i).or_insert(t);
                }
            }
        }));
    }
    let mut visible = HashMap::new();
    let start = Instant::now();
    for i in 0..lat_m_ {
        let due = start + Duration::from_micros(lat_gap_us() * i as u64);
        tokio::time::sleep_until(due.into()).await;
        match sys {
            Sys::Apalis => {
                let task = TaskBuilder::new(serde_json::to_vec(&(i as u64)).unwrap()).build();
                let mut tx = pool.begin().await.unwrap();
                apalis_postgres::queries::push_tasks(&mut *tx, "bench", vec![task]).await.unwrap();
                tx.commit().await.unwrap();
            }
            Sys::Own { .. } => enqueue_own(pool, i, 1, 1).await,
        }
        visible.insert(i as u64, now_us());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled.lock().await.len() < lat_m_ && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in procs.iter_mut() {
        kill9(p).await;
    }
    let h = handled.lock().await;
    let mut lat: Vec<f64> = h.iter().map(|(i, t)| (*t - visible[i]) as f64 / 1000.0).collect();
    let got = lat.len();
    if lat.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN, 0);
    }
    let p50 = pct(&mut lat, 50.0);
    let p99 = pct(&mut lat, 99.0);
    let max = pct(&mut lat, 100.0);
    (p50, p99, max, got)
}

// ---------------------------------------------------------------- crash tests

async fn creates_per_job(pool: &PgPool, jobs: &[String]) -> Vec<i64> {
    let mut v = Vec::new();
    for j in jobs {
        v.push(
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM upstream_creates WHERE job = $1")
                .bind(j)
                .fetch_one(pool)
                .await
                .unwrap(),
        );
    }
    v
}

async fn jobs_created_by(pool: &PgPool, worker: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT job FROM upstream_creates WHERE worker = $1 ORDER BY job")
        .bind(worker)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn apalis_state(pool: &PgPool, jobs: &[String]) -> String {
    let ids: Vec<String> = jobs.to_vec();
    let rows = sqlx::query(
        "SELECT status, coalesce(lock_by,'NULL') AS lock_by, attempts, count(*) AS n FROM apalis.jobs \
         WHERE convert_from(job, 'UTF8') = ANY(SELECT substr(x, 2) FROM unnest($1::text[]) x) \
         GROUP BY 1,2,3 ORDER BY 1,2,3",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            format!(
                "{}x(status={}, lock_by={}, attempts={})",
                r.get::<i64, _>("n"),
                r.get::<String, _>("status"),
                r.get::<String, _>("lock_by"),
                r.get::<i32, _>("attempts")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn own_state(pool: &PgPool, jobs: &[String]) -> String {
    let rows = sqlx::query(
        "SELECT status, coalesce(lease_owner,'NULL') AS o, attempt, count(*) AS n FROM jobs WHERE id = ANY($1) \
         GROUP BY 1,2,3 ORDER BY 1,2,3",
    )
    .bind(jobs)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            format!(
                "{}x(status={}, lease_owner={}, attempt={})",
                r.get::<i64, _>("n"),
                r.get::<String, _>("status"),
                r.get::<String, _>("o"),
                r.get::<i64, _>("attempt")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn apalis_crash_args(name: &str, mode: &str, hold_ms: u64) -> WArgs {
    let mut a = parse_args(&[]);
    a.name = name.into();
    a.mode = mode.into();
    a.hold_ms = hold_ms;
    a.hb_ms = 1000;
    a.missed = 3; // orphaned after 3 s (defaults: 30 s x 10 = 300 s)
    a.queue = "crash".into();
    a
}

async fn wait_creates(pool: &PgPool, worker: &str, n: i64) {
    let t = Instant::now();
    while count_w(pool, worker).await < n {
        assert!(t.elapsed() < Duration::from_secs(30), "worker {worker} never created {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
async fn count_w(pool: &PgPool, worker: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM upstream_creates WHERE worker = $1")
        .bind(worker)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn apalis_crash_kill9(pool: &PgPool, run: usize) {
    println!("\n  [apalis c1, run {run}] kill -9 a worker holding 8 jobs; a second worker (other name) runs");
    reset(pool).await;
    enqueue_apalis(pool, "crash", 16, 16).await;
    let wa = format!("crash-a-{run}");
    let wb = format!("crash-b-{run}");
    let mut a = spawn_worker("apalis-worker", &apalis_crash_args(&wa, "crash", 600_000)).await;
    start_all(std::slice::from_mut(&mut a)).await;
    wait_creates(pool, &wa, 8).await;
    let held = jobs_created_by(pool, &wa).await;
    println!("    worker A sent 8 creates and holds them: {}", apalis_state(pool, &held).await);
    kill9(&mut a).await;
    let t_kill = Instant::now();
    println!("    kill -9 A; state: {}", apalis_state(pool, &held).await);
    let mut b = spawn_worker("apalis-worker", &apalis_crash_args(&wb, "record", 0)).await;
    start_all(std::slice::from_mut(&mut b)).await;
    let mut first_rerun = None;
    loop {
        let c = creates_per_job(pool, &held).await;
        if first_rerun.is_none() && c.iter().any(|x| *x >= 2) {
            first_rerun = Some(t_kill.elapsed());
        }
        if c.iter().all(|x| *x >= 2) || t_kill.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = t_kill.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = creates_per_job(pool, &held).await;
    println!(
        "    A's 8 jobs run again by B: first {:.2} s, all {:.2} s after the kill; upstream creates per job: {:?}",
        first_rerun.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
        all.as_secs_f64(),
        c
    );
    println!("    final state of A's jobs: {}", apalis_state(pool, &held).await);
    kill9(&mut b).await;
}

async fn apalis_same_name_restart(pool: &PgPool, run: usize) {
    println!("\n  [apalis c3, run {run}] kill -9 a worker holding 8 jobs, restart it under the SAME name (systemd restart)");
    reset(pool).await;
    enqueue_apalis(pool, "crash", 16, 16).await;
    let wa = format!("crash-fixed-{run}");
    let mut a = spawn_worker("apalis-worker", &apalis_crash_args(&wa, "crash", 600_000)).await;
    start_all(std::slice::from_mut(&mut a)).await;
    wait_creates(pool, &wa, 8).await;
    let held = jobs_created_by(pool, &wa).await;
    kill9(&mut a).await;
    let mut a2 = spawn_worker("apalis-worker", &apalis_crash_args(&wa, "record", 0)).await;
    start_all(std::slice::from_mut(&mut a2)).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let c = creates_per_job(pool, &held).await;
    let others = count(pool, "SELECT count(*) FROM apalis.jobs WHERE status='Done'").await;
    println!(
        "    15 s after the restart (orphan timeout 3 s): creates per held job {:?}; jobs Done: {others}/16; held jobs: {}",
        c,
        apalis_state(pool, &held).await
    );
    kill9(&mut a2).await;
}

async fn apalis_stale_sigstop(pool: &PgPool, run: usize) {
    println!("\n  [apalis c2, run {run}] SIGSTOP a worker mid-job (GC pause / partition), let B take over, then SIGCONT");
    reset(pool).await;
    enqueue_apalis(pool, "crash", 8, 8).await;
    let wa = format!("stale-a-{run}");
    let wb = format!("stale-b-{run}");
    let mut a = spawn_worker("apalis-worker", &apalis_crash_args(&wa, "crash", 2000)).await;
    start_all(std::slice::from_mut(&mut a)).await;
    wait_creates(pool, &wa, 8).await;
    let held = jobs_created_by(pool, &wa).await;
    signal(a.pid, "STOP");
    let t = Instant::now();
    let mut b = spawn_worker("apalis-worker", &apalis_crash_args(&wb, "record", 0)).await;
    start_all(std::slice::from_mut(&mut b)).await;
    while creates_per_job(pool, &held).await.iter().any(|x| *x < 2) && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!(
        "    {:.2} s after SIGSTOP: B ran them again, state: {}",
        t.elapsed().as_secs_f64(),
        apalis_state(pool, &held).await
    );
    signal(a.pid, "CONT");
    // A's handlers finish (hold 2 s) and A acks them (handle_result.sql, WHERE lock_by = A).
    let _ = wait_line(&mut a, "ZZZ", Duration::from_secs(5)).await;
    println!(
        "    after SIGCONT + 5 s (A's handlers returned, A acked): creates per job {:?}; state: {}",
        creates_per_job(pool, &held).await,
        apalis_state(pool, &held).await
    );
    kill9(&mut a).await;
    kill9(&mut b).await;
}

async fn sweep_expired(pool: &PgPool) -> u64 {
    sqlx::query(
        "UPDATE jobs SET status='uncertain', attempt=attempt+1, lease_owner=NULL, lease_until=NULL \
         WHERE status='submitting' AND lease_until < $1",
    )
    .bind(now_ms())
    .execute(pool)
    .await
    .unwrap()
    .rows_affected()
}

fn own_crash_args(name: &str, mode: &str, hold_ms: u64, lease_ms: i64) -> WArgs {
    let mut a = parse_args(&[]);
    a.name = name.into();
    a.mode = mode.into();
    a.hold_ms = hold_ms;
    a.lease_ms = lease_ms;
    a.finish = "single".into();
    a
}

async fn own_crash_kill9(pool: &PgPool, run: usize) {
    println!("\n  [own c1, run {run}] kill -9 a claimer holding 8 claims (lease 3 s); a second claimer runs; any daemon sweeps expired leases every 100 ms");
    reset(pool).await;
    enqueue_own(pool, 0, 16, 16).await;
    let wa = format!("own-a-{run}");
    let wb = format!("own-b-{run}");
    let mut a = spawn_worker("own-worker", &own_crash_args(&wa, "crash", 600_000, 3000)).await;
    start_all(std::slice::from_mut(&mut a)).await;
    wait_line(&mut a, "CLAIMED", Duration::from_secs(10)).await.unwrap();
    let held = jobs_created_by(pool, &wa).await;
    println!("    claimer A sent 8 creates and holds them: {}", own_state(pool, &held).await);
    kill9(&mut a).await;
    let t_kill = Instant::now();
    let mut b = spawn_worker("own-worker", &own_crash_args(&wb, "record", 0, 3000)).await;
    start_all(std::slice::from_mut(&mut b)).await;
    let mut swept_at = None;
    while t_kill.elapsed() < Duration::from_secs(8) {
        if sweep_expired(pool).await > 0 && swept_at.is_none() {
            swept_at = Some(t_kill.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "    A's claims became 'uncertain' (never re-sent; the reveal path decides) {:.2} s after the kill; \
         creates per held job after 8 s: {:?}; B did the other {} jobs; state: {}",
        swept_at.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
        creates_per_job(pool, &held).await,
        count(pool, "SELECT count(*) FROM jobs WHERE status='done'").await,
        own_state(pool, &held).await
    );
    kill9(&mut b).await;
}

async fn own_stale_sigstop(pool: &PgPool, run: usize) {
    println!("\n  [own c2, run {run}] SIGSTOP a claimer after its creates (lease 2 s), leases expire and are swept, then SIGCONT: its fenced finishes run");
    reset(pool).await;
    enqueue_own(pool, 0, 8, 8).await;
    let wa = format!("own-stale-{run}");
    let mut a = spawn_worker("own-worker", &own_crash_args(&wa, "crash", 1000, 2000)).await;
    start_all(std::slice::from_mut(&mut a)).await;
    wait_line(&mut a, "CLAIMED", Duration::from_secs(10)).await.unwrap();
    signal(a.pid, "STOP");
    let held = jobs_created_by(pool, &wa).await;
    let t = Instant::now();
    let mut swept = 0;
    while t.elapsed() < Duration::from_secs(4) {
        swept += sweep_expired(pool).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("    swept {swept} expired claims: {}", own_state(pool, &held).await);
    signal(a.pid, "CONT");
    let fin = wait_line(&mut a, "FINISHED", Duration::from_secs(10)).await;
    let would = count(pool, "SELECT count(*) FROM jobs WHERE status='uncertain'").await;
    println!(
        "    stale claimer after SIGCONT: {:?} (an unfenced `WHERE id=$1` would have matched {would}); creates per job {:?}; state: {}",
        fin,
        creates_per_job(pool, &held).await,
        own_state(pool, &held).await
    );
    kill9(&mut a).await;
}

// ---------------------------------------------------------------- main

async fn setup() -> PgPool {
    let admin = PgPool::connect(ADMIN_URL).await.unwrap();
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname='bench'")
        .fetch_optional(&admin)
        .await
        .unwrap();
    if exists.is_none() {
        exec(&admin, "CREATE DATABASE bench").await;
    }
    admin.close().await;
    let pool = PgPoolOptions::new().max_connections(4).connect(URL).await.unwrap();
    PostgresStorage::setup(&pool).await.unwrap();
    exec(
        &pool,
        "CREATE TABLE IF NOT EXISTS jobs(id TEXT PRIMARY KEY, status TEXT, priority BIGINT, created_at BIGINT, \
           attempt BIGINT, lease_owner TEXT, lease_until BIGINT, model TEXT);
         CREATE INDEX IF NOT EXISTS jobs_claim_order ON jobs(priority DESC, created_at, id) WHERE status='pending';
         CREATE TABLE IF NOT EXISTS upstream_creates(job TEXT, worker TEXT, attempt BIGINT, at_us BIGINT);",
    )
    .await;
    pool
}

async fn orchestrate() {
    let pool = setup().await;
    let ver: String = sqlx::query_scalar("SELECT version()").fetch_one(&pool).await.unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await.unwrap();
    let sc: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&pool).await.unwrap();
    println!("machine: {} cores; {ver}; fsync={fsync}, synchronous_commit={sc}", std::thread::available_parallelism().unwrap());
    println!("N = {} no-op jobs per measurement; per worker process: batch 8, concurrency 8\n", n());

    let systems = [
        Sys::Apalis,
        Sys::Own { unnest: false, lock: false },
        Sys::Own { unnest: true, lock: false },
        Sys::Own { unnest: false, lock: true },
        Sys::Own { unnest: true, lock: true },
    ];
    let only = std::env::var("ONLY").unwrap_or_default();
    let on = |x: &str| only.is_empty() || only.contains(x);
    let mut results: Vec<(Sys, usize, Vec<f64>)> = Vec::new();
    println!("== a/b. throughput: enqueue {}, then consume with K worker processes", n());
    for sys in systems {
        if !on("tput") { break; }
        for k in [1usize, 3] {
            let mut v = Vec::new();
            for run in 1..=2 {
                let (jps, enq, check) = throughput(&pool, sys, k, run).await;
                println!("  {:<80} K={k} run {run}: {jps:>8.0} jobs/s  (enqueue {enq:.0} rows/s; {check})", sys.label());
                v.push(jps);
            }
            results.push((sys, k, v));
        }
    }

    let mut lat_rows = Vec::new();
    // (jobs, gap between enqueues): 50/s and 200/s, one job per transaction.
    for (m, gap) in [(500usize, 20_000u64), (2000, 5_000)] {
        if !on("lat") { break; }
        LAT.with(|c| c.set((m, gap)));
        println!("\n== latency: workers idle (LISTEN/NOTIFY), {} jobs enqueued one per tx every {} us ({}/s); commit-return -> handler start", lat_m(), lat_gap_us(), 1_000_000 / lat_gap_us());
        for sys in [Sys::Apalis, Sys::Own { unnest: true, lock: false }] {
            for k in [1usize, 3] {
                for run in 1..=2 {
                    let (p50, p99, max, got) = latency(&pool, sys, k, run).await;
                    println!("  {:<80} K={k} run {run}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({got}/{} handled)", sys.label(), lat_m());
                    lat_rows.push((sys, k, run, p50, p99, 1_000_000 / gap));
                }
            }
        }
    }

    println!("\n== c. crash / fencing checks (apalis: heartbeat 1 s x 3 missed = orphaned after 3 s)");
    for run in 1..=2 {
        if !on("crash") { break; }
        apalis_crash_kill9(&pool, run).await;
        apalis_stale_sigstop(&pool, run).await;
        apalis_same_name_restart(&pool, run).await;
        own_crash_kill9(&pool, run).await;
        own_stale_sigstop(&pool, run).await;
    }

    println!("\n== summary (jobs/s, run 1 / run 2)");
    println!("| system | K=1 | K=3 |");
    println!("|---|---|---|");
    for sys in systems {
        if !on("tput") { break; }
        let f = |k: usize| {
            let v = &results.iter().find(|r| r.0 == sys && r.1 == k).unwrap().2;
            format!("{:.0} / {:.0}", v[0], v[1])
        };
        println!("| {} | {} | {} |", sys.label(), f(1), f(3));
    }
    for (sys, k, run, p50, p99, rate) in lat_rows {
        println!("latency {rate}/s {} K={k} run {run}: p50 {p50:.2} ms p99 {p99:.2} ms", sys.label());
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("apalis-worker") => apalis_worker(parse_args(&args[2..])).await.unwrap(),
        Some("own-worker") => own_worker(parse_args(&args[2..])).await.unwrap(),
        Some("all") => orchestrate().await,
        _ => eprintln!("usage: apalis-eval all | apalis-worker k=v.. | own-worker k=v.."),
    }
}
