//! The async runtime the binary runs on.
//!
//! Half the CPUs (at least one) run the daemon's tasks: SQLite's statements run on threads
//! of their own (sqlx gives each connection one), so the other half is theirs. On the project's
//! 2-core machine, one worker instead of two took the CPU of 10,000 jobs from 6.5 s to 5.1 s
//! per 1,000 and webhook ingest from 0.107 s to 0.073 s of CPU per 1,000 deliveries, at a
//! higher rate: with a second worker, most of the extra CPU was threads waking each other
//! (`docs/benchmarks.md`). `TOKIO_WORKER_THREADS`, tokio's own variable, sets the number.

/// The worker threads for `cpus` CPUs and the value of `TOKIO_WORKER_THREADS`, if set: the
/// number it gives when it is a whole number from 1, else half the CPUs, at least one. A
/// value that is not such a number is named in the second part of the answer.
pub fn worker_threads(env: Option<&str>, cpus: usize) -> (usize, Option<String>) {
    let default = (cpus / 2).max(1);
    match env.map(str::trim) {
        None | Some("") => (default, None),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => (n, None),
            _ => (
                default,
                Some(format!(
                    "TOKIO_WORKER_THREADS={v:?} is not a whole number from 1; using {default}"
                )),
            ),
        },
    }
}

/// The runtime for this machine (see the module documentation).
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let env = std::env::var("TOKIO_WORKER_THREADS").ok();
    let (workers, warning) = worker_threads(env.as_deref(), cpus);
    if let Some(w) = warning {
        eprintln!("respool: warning: {w}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn half_the_cpus_at_least_one_unless_the_variable_says() {
        assert_eq!(worker_threads(None, 1), (1, None));
        assert_eq!(worker_threads(None, 2), (1, None));
        assert_eq!(worker_threads(None, 3), (1, None));
        assert_eq!(worker_threads(None, 16), (8, None));
        assert_eq!(worker_threads(Some(""), 8), (4, None));
        assert_eq!(worker_threads(Some("3"), 2), (3, None));
        assert_eq!(worker_threads(Some(" 2 "), 8), (2, None));
        for bad in ["0", "-1", "two", "1.5"] {
            let (n, warning) = worker_threads(Some(bad), 8);
            assert_eq!(n, 4);
            let w = warning.expect("a bad value is named");
            assert!(w.contains(bad) && w.contains("using 4"), "{w}");
        }
    }
}
