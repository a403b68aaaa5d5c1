//! What `webhook_bench` and `scale_bench` share: the release `respool` binary run as child
//! processes (so their CPU and memory are their own, read from `/proc`) on a SQLite file or a
//! PostgreSQL database, one or several behind a balancer (`cluster`), latency summaries, the
//! machine's description and small helpers. Not an example itself (Cargo only makes
//! `examples/*.rs` and `examples/*/main.rs` into examples); each bench includes it as a module
//! (`mod bench_support;`, or with `#[path]` from a directory example) and uses only part of it,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod cluster;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use base64::Engine;
use hdrhistogram::Histogram;

/// Variables of the caller's shell that would change what the daemon does (as in the process
/// tests' harness).
const SCRUBBED_ENV: &[&str] = &[
    "RESPOOL_CONFIG",
    "RESPOOL_LOG",
    "RUST_LOG",
    "RESPOOL_SERVER",
    "RESPOOL_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_WEBHOOK_SECRET",
    "OPENAI_BASE_URL",
    "STATE_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
];

/// The `respool` binary to measure: `given`, else the one beside this example's binary
/// (`target/release/respool` for `target/release/examples/NAME`). Warns when a file of the
/// crate's `src/` or `migrations/` is newer than it: the figures would be those of older code.
pub fn respool_binary(given: Option<&Path>) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where this benchmark runs from")?;
    let path = match given {
        // Absolute: the daemon runs in a temp dir, where a relative path means nothing.
        Some(p) => std::fs::canonicalize(p)
            .with_context(|| format!("no respool binary at {}", p.display()))?,
        None => {
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .context("this benchmark is not in target/<profile>/examples")?;
            profile_dir.join("respool")
        }
    };
    if !path.is_file() {
        bail!(
            "no respool binary at {}: build it first with `cargo build --release` (or pass --respool PATH)",
            path.display()
        );
    }
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = ["src", "migrations"]
        .iter()
        .filter_map(|d| newest_file(&root.join(d)))
        .max();
    if let (Some(built), Some((changed, file))) = (built, newest)
        && built < changed
    {
        eprintln!(
            "warning: {} is older than {}: run `cargo build --release` so the figures are the current code's",
            path.display(),
            file.display()
        );
    }
    Ok(path)
}

/// The most recently modified file under `dir`, with its time.
fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if let Ok(t) = meta.modified()
                && newest.as_ref().is_none_or(|(n, _)| t > *n)
            {
                newest = Some((t, entry.path()));
            }
        }
    }
    newest
}

/// A loopback port nobody listens on right now (the daemon binds it itself).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a port")?;
    Ok(listener.local_addr()?.port())
}

/// A fresh `whsec_` secret.
pub fn new_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    )
}

/// A client for the loopback servers (no proxy from the environment).
pub fn http_client(connections: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// A child process (the daemon, or the webhook bench's ceiling server) with its output in
/// files; killed when dropped.
pub struct ChildProc {
    pub label: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl ChildProc {
    /// Starts `program args` in `dir` with a scrubbed environment plus `env`; stdout and
    /// stderr go to `dir/<label>.log`.
    pub fn spawn(
        label: &str,
        program: &Path,
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = dir.join(format!("{label}.log"));
        let out = File::create(&log)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env("NO_COLOR", "1");
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(Self {
            label: label.to_string(),
            child: Some(child),
            log,
        })
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails, with the end of its log, if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was stopped", self.label);
        };
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log ({}):\n{}",
                self.label,
                self.log.display(),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// The last `n` lines of its output.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `url` until it answers 2xx; fails if the process exits first or after `within`.
    pub async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        within: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.check_running()?;
            if http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {url} within {within:?}; its log:\n{}",
                    self.label,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CPU time and peak memory so far.
    pub fn usage(&self) -> Option<ProcUsage> {
        ProcUsage::read(self.pid())
    }

    /// SIGTERM (through `kill(1)`: this crate forbids `unsafe`, so no `libc::kill`), then
    /// SIGKILL if it has not exited after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process's CPU time (user + system) and peak resident set, from `/proc/PID/stat` and
/// `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct ProcUsage {
    pub cpu_seconds: f64,
    /// `VmHWM`: the peak resident set so far.
    pub peak_rss_kib: u64,
    /// `VmRSS`: the resident set now.
    pub rss_kib: u64,
}

impl ProcUsage {
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: split after it.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state is field 3, utime field 14, stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / clock_ticks() as f64,
            peak_rss_kib: kib("VmHWM:")?,
            rss_kib: kib("VmRSS:")?,
        })
    }

    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// Records `d` in microseconds (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// Records a duration given in milliseconds (negative: 0, as 1 µs).
pub fn record_ms(h: &mut Histogram<u64>, ms: i64) {
    h.saturating_record(
        u64::try_from(ms.max(0))
            .unwrap_or(0)
            .saturating_mul(1000)
            .max(1),
    );
}

/// `p50 / p90 / p99 / max` of a histogram in milliseconds, or `-` when it is empty.
pub fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    let ms = |v: u64| v as f64 / 1000.0;
    format!(
        "p50 {} / p90 {} / p99 {} / max {} ms",
        fmt_ms(ms(h.value_at_quantile(0.50))),
        fmt_ms(ms(h.value_at_quantile(0.90))),
        fmt_ms(ms(h.value_at_quantile(0.99))),
        fmt_ms(ms(h.max())),
    )
}

/// A millisecond figure with the precision it deserves.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// The 99th percentile in milliseconds.
pub fn p99_ms(h: &Histogram<u64>) -> f64 {
    h.value_at_quantile(0.99) as f64 / 1000.0
}

/// Cores, CPU model, memory and kernel, for the figures' record.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|v| v.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim())
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {mem_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}

/// `/proc/loadavg`'s 1, 5 and 15 minute load averages and the CPU pressure of the last minute:
/// on a shared machine, whether something else was running during the measurement.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loads: Vec<&str> = text.split_whitespace().take(3).collect();
    let loads = if loads.len() == 3 {
        loads.join(" ")
    } else {
        "unknown".into()
    };
    // The share of the last minute in which some runnable task waited for a CPU (PSI).
    let pressure = std::fs::read_to_string("/proc/pressure/cpu")
        .ok()
        .and_then(|t| {
            let some = t.lines().find(|l| l.starts_with("some"))?;
            let avg60 = some
                .split_whitespace()
                .find_map(|f| f.strip_prefix("avg60="))?;
            Some(format!(", CPU pressure {avg60} % (some, avg60)"))
        })
        .unwrap_or_default();
    format!("{loads}{pressure}")
}

/// Milliseconds since the Unix epoch, from the system clock (the daemon's and the simulator's
/// timestamps come from the same clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether a figure meets its target, for the report (nothing is asserted).
pub fn verdict(ok: bool) -> &'static str {
    if ok { "meets" } else { "MISSES" }
}
