//! How a failed create is classified, through the real daemon, against the simulator and a
//! proxy on loopback that redirects or mangles answers as a misconfigured gateway would: a
//! redirect is never followed, a 2xx that names the response is kept by its id, an answer lost
//! after creating is uncertain and adopted when its webhook comes (never POSTed again), a job
//! waiting to be resubmitted adopts its first response, and a long `Retry-After` on a poll
//! waits at most `polling.max_interval`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use respool::config::UncertainCreatePolicy;
use respool::job::JobStatus;
use respool::sim::{Faults, SimConfig};
use serde_json::json;

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(30);

/// What the proxy does with a create (`POST /v1/responses`); everything else is forwarded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Forward,
    /// Answer with this redirect status pointing at the simulator (what a gateway moved to
    /// another address sends).
    Redirect(u16),
    /// Forward it, then cut the simulator's 2xx answer short just after the response's id.
    TruncateAfterId,
}

#[derive(Clone)]
struct Proxy {
    /// The simulator's origin (`http://127.0.0.1:PORT`), set once the app (and its simulator)
    /// runs.
    target: Arc<Mutex<String>>,
    mode: Arc<Mutex<Mode>>,
    creates_seen: Arc<AtomicU32>,
    http: reqwest::Client,
}

impl Proxy {
    async fn spawn() -> (Self, String) {
        let proxy = Proxy {
            target: Arc::new(Mutex::new(String::new())),
            mode: Arc::new(Mutex::new(Mode::Forward)),
            creates_seen: Arc::new(AtomicU32::new(0)),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (proxy, format!("http://{addr}/v1"))
    }

    /// Starts the app behind a new proxy: its `upstream.base_url` is the proxy, which fronts
    /// the app's simulator.
    async fn with_app(
        tweak: impl FnOnce(&mut respool::config::Config),
        sim: SimConfig,
    ) -> (Self, helpers::TestApp) {
        let (proxy, base) = Self::spawn().await;
        let app = helpers::spawn_app_with(
            |cfg| {
                tweak(cfg);
                cfg.upstream.base_url = base;
            },
            sim,
        )
        .await;
        *proxy.target.lock().unwrap() = app
            .sim
            .base_url()
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_string();
        (proxy, app)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let method = req.method().clone();
    let req_path = req.uri().path().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let is_create = method == http::Method::POST && req_path == "/v1/responses";
    let mode = *p.mode.lock().unwrap();
    let target = p.target.lock().unwrap().clone();
    if is_create {
        p.creates_seen.fetch_add(1, Ordering::SeqCst);
        if let Mode::Redirect(status) = mode {
            return Response::builder()
                .status(status)
                .header("location", format!("{target}{path}"))
                .header("content-type", "text/html")
                .body(Body::from("<html><body>Moved</body></html>"))
                .unwrap();
        }
    }
    let mut out = p.http.request(method, format!("{target}{path}"));
    for (k, v) in &headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let answer = out.body(body).send().await.unwrap();
    let status = answer.status();
    let answer_headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.unwrap().to_vec();
    if is_create && mode == Mode::TruncateAfterId && status.is_success() {
        let text = String::from_utf8(bytes.clone()).unwrap();
        let at = text.find("\"resp_").unwrap();
        let end = at + 1 + text[at + 1..].find('"').unwrap() + 1;
        // `{"id":"resp_…",` and a few more bytes of the next key: not JSON any more.
        bytes = text.as_bytes()[..(end + 4).min(text.len())].to_vec();
    }
    let mut r = Response::builder().status(status);
    for (k, v) in &answer_headers {
        if k != http::header::CONTENT_LENGTH && k != http::header::TRANSFER_ENCODING {
            r = r.header(k, v);
        }
    }
    r.body(Body::from(bytes)).unwrap()
}

fn job_with_sim(name: &str, sim: &str) -> serde_json::Value {
    let mut body = helpers::job_body(name);
    body["metadata"] = json!({ "sim": sim });
    body
}

async fn messages(app: &helpers::TestApp, id: &str) -> Vec<String> {
    app.events(id)
        .await
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["kind"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_redirect_on_create_is_never_followed() {
    for status in [307, 308] {
        let (proxy, app) = Proxy::with_app(|_| {}, SimConfig::default()).await;
        proxy.set(Mode::Redirect(status));
        let id = app.submit(&helpers::job_body("redirected")).await;
        app.wait_until("the redirect is noted", DEADLINE, async || {
            messages(&app, &id)
                .await
                .iter()
                .any(|m| m.contains("redirect"))
        })
        .await;
        assert!(proxy.creates_seen.load(Ordering::SeqCst) >= 1);
        assert_eq!(app.sim.stats().creates, 0, "a {status} was followed");
        let job = app.job(&id).await;
        assert_eq!(job.status, JobStatus::Pending, "{job:?}");
        // Fixed: the job goes on after the hold, and is created once.
        proxy.set(Mode::Forward);
        app.clock.advance(Duration::from_secs(61));
        let job = app.wait_terminal(&id, DEADLINE).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_create_answer_cut_short_after_its_id_is_kept_by_that_id() {
    // Regression: a 2xx whose body did not parse was "uncertain" although it named the response.
    let (proxy, app) = Proxy::with_app(|_| {}, SimConfig::default()).await;
    proxy.set(Mode::TruncateAfterId);
    let id = app.submit(&helpers::job_body("cut-short")).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));
    let rid = job.response_id.clone().unwrap();
    assert_eq!(
        app.sim.response(&rid).unwrap()["metadata"]["respool_job_id"],
        id.as_str()
    );
    let timeline = messages(&app, &id).await;
    assert!(
        !timeline.iter().any(|m| m.starts_with("submit_uncertain")),
        "{timeline:#?}"
    );
    assert!(
        timeline
            .iter()
            .any(|m| m.starts_with("submitted:") && m.contains(&rid) && m.contains("unreadable")),
        "{timeline:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_answer_lost_after_creating_is_uncertain_and_its_webhook_is_adopted() {
    for fault in [
        Faults {
            create_then_gateway_error: 1.0,
            ..Faults::default()
        },
        Faults {
            create_then_drop: 1.0,
            ..Faults::default()
        },
    ] {
        let app = helpers::spawn_app_with(
            |cfg| {
                cfg.upstream.max_retries = 2;
                cfg.upstream.uncertain_create = UncertainCreatePolicy::Resubmit;
                cfg.upstream.uncertain_create_wait = Some(Duration::from_secs(60));
            },
            SimConfig {
                run_time: Duration::from_secs(2),
                faults: fault.clone(),
                ..SimConfig::default()
            },
        )
        .await;
        let id = app.submit(&helpers::job_body("lost-answer")).await;
        let job = app.wait_terminal(&id, DEADLINE).await;
        assert_eq!(job.status, JobStatus::Completed, "{fault:?}: {job:?}");
        // Never sent again, neither inline nor by the policy: the webhook revealed it.
        assert_eq!(
            app.sim.stats().creates_by_job_id.get(&id),
            Some(&1),
            "{fault:?}"
        );
        let timeline = messages(&app, &id).await;
        assert!(
            timeline.iter().any(|m| m.starts_with("submit_uncertain")),
            "{timeline:#?}"
        );
        assert!(
            timeline.iter().any(|m| m.starts_with("adopted")),
            "{timeline:#?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_job_waiting_to_be_resubmitted_adopts_its_first_response() {
    // Regression: adoption refused a job in `ready` (resubmitted, waiting behind a limit), so
    // the response revealed then was dropped and the job POSTed again.
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.upstream.max_retries = 0;
            cfg.upstream.uncertain_create = UncertainCreatePolicy::Resubmit;
            cfg.upstream.uncertain_create_wait = Some(Duration::from_secs(2));
            cfg.limits.max_in_flight = 2;
        },
        SimConfig {
            faults: Faults {
                create_then_gateway_error: 1.0,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    // Its answer is lost; its run ends (and its webhook comes) after the uncertain wait.
    let waiting = app.submit(&job_with_sim("waiting", "run=6s")).await;
    app.wait_until("the create is uncertain", DEADLINE, async || {
        app.count_events(&waiting, "submit_uncertain").await == 1
    })
    .await;
    app.sim.set_faults(Faults::default());
    // `long` takes the second slot of `max_in_flight` now; `urgent` (a higher priority) takes
    // the one the uncertain job frees when the policy sends it back to the queue, so the job
    // waits there, `ready`, when its first response turns up.
    let long = app
        .submit(&job_with_sim("long", "run=40s;webhook=drop"))
        .await;
    app.wait_for(&long, DEADLINE, |j| j.response_id.is_some())
        .await;
    let mut urgent = job_with_sim("urgent", "run=40s;webhook=drop");
    urgent["priority"] = json!(10);
    let urgent = app.submit(&urgent).await;
    let job = app.wait_terminal(&waiting, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let stats = app.sim.stats();
    assert_eq!(
        stats.creates_by_job_id.get(&waiting),
        Some(&1),
        "{stats:?}\n{:#?}\n{:#?}\n{:#?}",
        messages(&app, &waiting).await,
        messages(&app, &long).await,
        messages(&app, &urgent).await
    );
    let timeline = messages(&app, &waiting).await;
    // It really waited in the queue (sent back by the policy) when its response turned up.
    assert!(
        timeline.iter().any(|m| m.starts_with("resubmit:")),
        "{timeline:#?}"
    );
    assert!(
        timeline.iter().any(|m| m.starts_with("adopted")),
        "{timeline:#?}"
    );
    for other in [&long, &urgent] {
        assert_eq!(stats.creates_by_job_id.get(other.as_str()), Some(&1));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_long_retry_after_on_a_poll_waits_at_most_max_interval() {
    // Regression: a poll's `Retry-After` was not capped, so an hour's wait broke the promise
    // that a lost webhook costs at most `polling.max_interval`.
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.upstream.max_retries = 0;
            cfg.polling.max_interval = Duration::from_secs(2);
        },
        SimConfig::default(),
    )
    .await;
    let id = app
        .submit(&job_with_sim("poll-429", "run=3s;webhook=drop"))
        .await;
    app.wait_for(&id, DEADLINE, |j| j.response_id.is_some())
        .await;
    app.sim.set_faults(Faults {
        webhook_drop: 1.0,
        rate_limit_next: 1,
        retry_after: Duration::from_secs(3600),
        ..Faults::default()
    });
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(app.sim.stats().served_429, 1);
    app.stop().await;
}
