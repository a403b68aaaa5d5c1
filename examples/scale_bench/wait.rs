//! The wait for every notification, with progress every 10 s and the idle-CPU window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::bench_support::cluster::Cluster;
use crate::bench_support::{ProcUsage, now_ms};
use crate::sink::Notes;
use crate::{Args, PROGRESS_EVERY};

/// How the wait went.
pub struct Waited {
    /// The idle CPU figure, or why there is none.
    pub idle: String,
    pub timed_out: bool,
}

/// Where the idle-CPU measurement stands.
enum Idle {
    /// Not every job has been created upstream yet.
    WaitingForCreates,
    /// Measuring from `from` (with the usage then) until `until`.
    Planned {
        from: Instant,
        until: Instant,
        start: Option<(Instant, ProcUsage)>,
    },
    Done(String),
}

/// Waits until a notification came for every submitted job (or the timeout), printing
/// progress and measuring the daemon's CPU while every job waits upstream.
pub async fn wait_all(
    args: &Args,
    daemons: &mut Cluster,
    sim: &respool::sim::SimHandle,
    notes: &Notes,
    submitted: &HashMap<String, u64>,
    expected: usize,
    first_submit_ms: i64,
) -> Result<Waited> {
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut next_progress = started + PROGRESS_EVERY;
    let mut idle = Idle::WaitingForCreates;
    loop {
        daemons.check_running()?;
        let done = notes.distinct() >= expected;
        let now = Instant::now();
        let stats = sim.stats();
        match &mut idle {
            Idle::WaitingForCreates if stats.creates as usize >= expected => {
                // Every job is upstream: the window lasts until shortly before the first end.
                let now_wall = now_ms();
                let first_end = sim
                    .responses(None)
                    .iter()
                    .filter_map(|r| {
                        let planned = submitted.get(r.job_id.as_deref()?)?;
                        Some(r.created_ms + i64::try_from(*planned).ok()?)
                    })
                    .min()
                    .unwrap_or(now_wall);
                let from = now + Duration::from_secs(1);
                let room =
                    Duration::from_millis(u64::try_from(first_end - now_wall - 1_500).unwrap_or(0));
                let until = now + room.min(args.idle_window + Duration::from_secs(1));
                idle = if until >= from + Duration::from_secs(2) {
                    Idle::Planned {
                        from,
                        until,
                        start: None,
                    }
                } else {
                    Idle::Done(format!(
                        "not measured: the last create came {:.1} s after the first submit, too close to the first job's end for a window",
                        (now_wall - first_submit_ms) as f64 / 1000.0
                    ))
                };
            }
            Idle::Planned { from, until, start } => {
                if start.is_none() && now >= *from {
                    *start = daemons.usage().total().map(|u| (now, u));
                    if start.is_none() {
                        idle = Idle::Done("unknown (no /proc)".into());
                    }
                } else if let Some((t0, u0)) = start
                    && now >= *until
                {
                    let secs = t0.elapsed().as_secs_f64();
                    idle = Idle::Done(match daemons.usage().total() {
                        Some(u1) => {
                            let cpu = u1.cpu_seconds - u0.cpu_seconds;
                            format!(
                                "{:.0} ms CPU per second ({:.1} % of a core) over {secs:.1} s, {expected} jobs waiting upstream",
                                cpu / secs * 1000.0,
                                cpu / secs * 100.0
                            )
                        }
                        None => "unknown (no /proc)".into(),
                    });
                }
            }
            _ => {}
        }
        if done {
            let idle = match idle {
                Idle::Done(s) => s,
                _ => "not measured: the jobs ended before a window opened".into(),
            };
            return Ok(Waited {
                idle,
                timed_out: false,
            });
        }
        if now >= next_progress {
            next_progress += PROGRESS_EVERY;
            let usage = daemons.usage().total();
            println!(
                "  {:>5.0} s: {} created upstream, {} webhooks delivered, {} of {expected} notified; daemon RSS {} MiB, CPU {} s",
                started.elapsed().as_secs_f64(),
                stats.creates,
                stats.webhooks_delivered,
                notes.distinct(),
                usage.map_or("?".into(), |u| format!("{:.0}", u.rss_kib as f64 / 1024.0)),
                usage.map_or("?".into(), |u| format!("{:.1}", u.cpu_seconds)),
            );
        }
        if now >= deadline {
            println!(
                "  TIMED OUT after {}: {} of {expected} notified; printing what arrived",
                humantime::format_duration(args.timeout),
                notes.distinct()
            );
            return Ok(Waited {
                idle: match idle {
                    Idle::Done(s) => s,
                    _ => "not measured".into(),
                },
                timed_out: true,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
