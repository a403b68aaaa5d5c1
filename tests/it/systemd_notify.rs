//! The daemon under a stand-in for systemd: a real `NOTIFY_SOCKET` (a Unix datagram socket the
//! test binds), `WATCHDOG_USEC`, and a stderr that `$JOURNAL_STREAM` names, as systemd sets them
//! for a `Type=notify` service. We check what systemd relies on: READY only once the HTTP port
//! is bound, WATCHDOG pings while healthy (and not a flood), RELOADING then READY on SIGHUP,
//! STOPPING on SIGTERM and exit 0, and log lines the journal can file by priority.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::free_ports;
use crate::helpers::process::{Proc, command};

/// Every datagram received on the notify socket, with when it arrived.
struct NotifySocket {
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = std::thread::spawn({
            let (messages, stop) = (messages.clone(), stop.clone());
            move || {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        messages.lock().unwrap().push((Instant::now(), text));
                    }
                }
            }
        });
        NotifySocket {
            messages,
            stop,
            reader: Some(reader),
        }
    }

    /// The times at which a datagram carrying the line `state` (e.g. `READY=1`) arrived.
    fn times(&self, state: &str) -> Vec<Instant> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == state))
            .map(|(t, _)| *t)
            .collect()
    }

    fn log(&self) -> String {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.replace('\n', " "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` (and the daemon's log and the
/// notify messages) at the deadline.
async fn wait_for(
    what: &str,
    timeout: Duration,
    daemon: &mut Proc,
    notify: &NotifySocket,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        daemon.assert_running();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; notify messages:\n{}",
            notify.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(pid: u32, sig: &str) {
    let kill = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -{sig} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_stopping_over_a_real_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(&dir.path().join("notify.sock"));
    let [port, unused] = free_ports();
    let config = dir.path().join("respool.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\n\
             database: {db}\n\
             upstream:\n  base_url: http://127.0.0.1:{unused}/v1\n  api_key: sk-test-notify\n\
             shutdown_timeout: 2s\n",
            db = dir.path().join("respool.db").display()
        ),
    )
    .unwrap();

    // stderr is a file whose device and inode go in $JOURNAL_STREAM, as systemd does for the
    // journal: with no --log-format, the daemon must pick the journald format by itself.
    let stdout = dir.path().join("daemon.stdout");
    let stderr = dir.path().join("daemon.stderr");
    let stderr_file = File::create(&stderr).unwrap();
    let meta = stderr_file.metadata().unwrap();
    let journal_stream = format!("{}:{}", meta.dev(), meta.ino());
    let notify_socket = dir.path().join("notify.sock").display().to_string();
    let config_arg = config.display().to_string();
    let started = Instant::now();
    let child = command(
        dir.path(),
        &["serve", "--config", &config_arg],
        &[
            ("NOTIFY_SOCKET", &notify_socket),
            ("WATCHDOG_USEC", "2000000"),
            ("JOURNAL_STREAM", &journal_stream),
        ],
    )
    .stdin(Stdio::null())
    .stdout(File::create(&stdout).unwrap())
    .stderr(stderr_file)
    .spawn()
    .unwrap();
    let mut daemon = Proc {
        label: "daemon".into(),
        child: Some(child),
        stdout,
        stderr,
    };

    // READY=1, and at that moment the port is bound: a connection made right after READY
    // succeeds, and /healthz answers. Meanwhile, record when the port first accepted.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut first_connect: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        // Read READY before trying the port, so a connect that fails after READY was already
        // there is caught below.
        let ready = notify.times("READY=1").first().copied();
        let connected =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        if connected && first_connect.is_none() {
            first_connect = Some(Instant::now());
        }
        if let Some(at) = ready {
            assert!(
                connected,
                "READY=1 arrived but the HTTP port {port} refused a connection right after"
            );
            break at;
        }
        daemon.assert_running();
        assert!(
            Instant::now() < deadline,
            "no READY=1 within 30 s; notify messages:\n{}",
            notify.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let health = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(
        health.status().is_success(),
        "/healthz: {}",
        health.status()
    );
    eprintln!(
        "notify: READY=1 at {:.3}s; the port first accepted at {}",
        (ready - started).as_secs_f64(),
        first_connect.map_or("(first seen with READY)".to_string(), |t| format!(
            "{:.3}s",
            (t - started).as_secs_f64()
        )),
    );
    assert_eq!(
        notify.times("READY=1").len(),
        1,
        "one READY=1 at start: {}",
        notify.log()
    );
    assert!(
        notify.log().contains("STATUS=serving"),
        "READY comes with a status line: {}",
        notify.log()
    );

    // WATCHDOG=1 keeps coming (WATCHDOG_USEC=2s: systemd wants a ping within every 2 s) and is
    // throttled to at most one per 0.5 s however busy the loop is.
    wait_for(
        "three WATCHDOG=1 after READY",
        Duration::from_secs(10),
        &mut daemon,
        &notify,
        || {
            notify
                .times("WATCHDOG=1")
                .iter()
                .filter(|t| **t > ready)
                .count()
                >= 3
        },
    )
    .await;
    let pings = notify.times("WATCHDOG=1");
    let gaps: Vec<f64> = pings
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    eprintln!("notify: WATCHDOG=1 gaps {gaps:.2?} s");
    assert!(
        gaps.iter().all(|g| *g < 2.0),
        "a watchdog gap reached WATCHDOG_USEC: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g > 0.3),
        "watchdog pings are not throttled: {gaps:?}"
    );

    // SIGHUP (`systemctl reload`): RELOADING=1 (with MONOTONIC_USEC, which systemd ≥ 253
    // wants), then READY=1 again once the reload is done.
    let hup = Instant::now();
    signal(daemon.pid(), "HUP");
    wait_for(
        "RELOADING=1 then READY=1 after SIGHUP",
        Duration::from_secs(10),
        &mut daemon,
        &notify,
        || {
            let reloading = notify.times("RELOADING=1").into_iter().find(|t| *t > hup);
            reloading.is_some_and(|r| notify.times("READY=1").iter().any(|t| *t >= r))
        },
    )
    .await;
    assert!(
        notify
            .messages
            .lock()
            .unwrap()
            .iter()
            .any(|(_, m)| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC: {}",
        notify.log()
    );
    eprintln!(
        "notify: RELOADING=1 then READY=1 within {:.2}s of SIGHUP",
        hup.elapsed().as_secs_f64()
    );
    daemon.assert_running();

    // SIGTERM: STOPPING=1, then exit 0.
    let signalled = Instant::now();
    signal(daemon.pid(), "TERM");
    wait_for(
        "STOPPING=1 after SIGTERM",
        Duration::from_secs(10),
        &mut daemon,
        &notify,
        || notify.times("STOPPING=1").iter().any(|t| *t > signalled),
    )
    .await;
    let exit = daemon.wait_exit(Duration::from_secs(10)).await;
    let Some(exit) = exit else {
        panic!("no exit within 10 s of SIGTERM; log:\n{}", daemon.output());
    };
    assert_eq!(
        exit.code(),
        Some(0),
        "exit {exit}; log:\n{}",
        daemon.output()
    );
    eprintln!(
        "notify: STOPPING=1 and exit 0 {:.2}s after SIGTERM",
        signalled.elapsed().as_secs_f64()
    );

    // The log went to the "journal": every line opens with a priority, no timestamp, no ANSI.
    let log = std::fs::read_to_string(&daemon.stderr).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty(), "the daemon logged nothing");
    for line in &lines {
        let ok = line.len() > 3
            && line.starts_with('<')
            && matches!(line.as_bytes()[1], b'3'..=b'7')
            && line.as_bytes()[2] == b'>';
        assert!(ok, "not a journald line: {line:?}\nwhole log:\n{log}");
        assert!(!line.contains('\u{1b}'), "ANSI escape in {line:?}");
        assert!(
            !line.as_bytes()[3].is_ascii_digit(),
            "a timestamp in {line:?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("<6>respool listening")
            && l.contains(&format!("addr=127.0.0.1:{port}"))),
        "{log}"
    );
}
