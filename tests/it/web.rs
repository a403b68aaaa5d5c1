//! The history pages: rendering, escaping, security headers, the login and its cookie, CSRF,
//! and cancelling and retrying through the page's forms.

use std::time::Duration;

use helpers::{spawn_app, spawn_app_with};
use reqwest::header::{LOCATION, SET_COOKIE};
use respool::job::JobStatus;
use respool::sim::SimConfig;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers;

const TOKEN: &str = "web-test-token-0123456789";

/// A client that shows redirects instead of following them.
pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `application/x-www-form-urlencoded` bodies (reqwest's `form` feature is not enabled).
pub(crate) trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// The value of the Retry form's `key` field on a page.
fn retry_key_of(html: &str) -> String {
    let at = html
        .find(r#"name="key" value=""#)
        .expect("page has a Retry key field");
    let rest = &html[at + r#"name="key" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The value of the first `name="csrf"` field on a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("page has a CSRF field");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test]
async fn pages_render_escape_and_carry_security_headers() {
    let app = spawn_app().await;
    let (status, job) = app
        .post_job(&json!({"name": "<script>alert(1)</script>", "model": "gpt-5", "input": "hi"}))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    app.wait_terminal(&id, Duration::from_secs(20)).await;

    let r = app.request(reqwest::Method::GET, "/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert(1)"), "{body}");
    assert!(body.contains(&format!("/jobs/{id}")));
    assert!(body.contains("badge s-completed"), "{body}");

    let page = app
        .request(reqwest::Method::GET, &format!("/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(!page.contains("<script>alert(1)"), "{page}");
    for needle in [
        "Report",
        "Timeline",
        "Raw response JSON",
        "report.md",
        "response.json",
        "gpt-5",
    ] {
        assert!(page.contains(needle), "job page lacks {needle}");
    }
    assert!(!page.contains("Cancel job"), "no Cancel on a finished job");

    let md = app
        .request(reqwest::Method::GET, &format!("/jobs/{id}/report.md"))
        .send()
        .await
        .unwrap();
    assert_eq!(md.status(), 200);
    assert!(
        md.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let resp = app
        .request(reqwest::Method::GET, &format!("/jobs/{id}/response.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "completed");

    let stats = app
        .request(reqwest::Method::GET, "/stats")
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    let stats = stats.text().await.unwrap();
    assert!(
        stats.contains("Last 7 days") && stats.contains("gpt-5"),
        "{stats}"
    );

    // Filters: a status that matches, one that does not, one that is not a status.
    let hit = app
        .request(reqwest::Method::GET, "/?status=completed")
        .send()
        .await
        .unwrap();
    assert!(hit.text().await.unwrap().contains(&id));
    let miss = app
        .request(reqwest::Method::GET, "/?status=failed&name=")
        .send()
        .await
        .unwrap();
    assert!(miss.text().await.unwrap().contains("No jobs match"));
    let bad = app
        .request(reqwest::Method::GET, "/?status=bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let missing = app
        .request(reqwest::Method::GET, "/jobs/job_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("job_nope"));

    let css = app
        .request(reqwest::Method::GET, "/static/style.css")
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    app.stop().await;
}

#[tokio::test]
async fn cancel_through_the_form_needs_the_csrf_token_and_same_origin() {
    let app = spawn_app().await;
    let (status, job) = app
        .post_job(&json!({"name": "long one", "model": "gpt-5", "input": "hi",
            "metadata": {"sim": "run=60s"}}))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    app.wait_for(&id, Duration::from_secs(20), |j| {
        j.status == JobStatus::InProgress
    })
    .await;
    let page = app.page(&format!("/jobs/{id}")).await;
    assert!(page.contains("Cancel job"), "{page}");
    let csrf = csrf_of(&page);
    let http = no_redirects();
    let url = format!("{}/jobs/{id}/cancel", app.base);

    // Without the token, with a wrong one, and from another site: refused, nothing changes.
    let r = http
        .post(&url)
        .form_body(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(&url)
        .form_body(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(&url)
        .header("origin", "https://evil.example")
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(&url)
        .header("sec-fetch-site", "cross-site")
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!app.job(&id).await.cancel_requested);

    let r = http
        .post(&url)
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin")
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], format!("/jobs/{id}").as_str());
    let done = app.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobStatus::Cancelled);
    app.stop().await;
}

#[tokio::test]
async fn retry_through_the_form_needs_the_csrf_token_and_links_both_pages() {
    let app = spawn_app().await;
    let (status, job) = app
        .post_job(&json!({"name": "again", "model": "gpt-5", "input": "hi",
            "metadata": {"sim": "run=100ms"}}))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let done = app.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobStatus::Completed);
    let page = app.page(&format!("/jobs/{id}")).await;
    assert!(
        page.contains(&format!(r#"action="/jobs/{id}/retry""#)),
        "{page}"
    );
    assert!(!page.contains("Retried by"), "{page}");
    let csrf = csrf_of(&page);
    let http = no_redirects();
    let url = format!("{}/jobs/{id}/retry", app.base);

    // Without the token or with a forged one: refused, and no job is made.
    for pairs in [&[("x", "y")][..], &[("csrf", "forged")][..]] {
        let r = http.post(&url).form_body(pairs).send().await.unwrap();
        assert_eq!(r.status(), 403);
    }
    assert_eq!(app.count_rows("jobs").await, 1);
    assert_eq!(app.count_events(&id, "retried").await, 0);

    // Each render carries its own key: a fresh nonce, hex.
    let key = retry_key_of(&page);
    assert_eq!(key.len(), 32, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    assert_ne!(key, retry_key_of(&app.page(&format!("/jobs/{id}")).await));

    // A missing or malformed key is a 400 page, and no job is made.
    for bad in [
        "",
        "not-hex-at-all-not-hex-at-all!!",
        "abc",
        &"a".repeat(65),
    ] {
        let r = http
            .post(&url)
            .form_body(&[("csrf", csrf.as_str()), ("key", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.text().await.unwrap().contains("key"), "{bad}");
    }
    assert_eq!(app.count_rows("jobs").await, 1);

    // The same rendered form submitted twice (a double click): both land on one new job.
    let mut locations = Vec::new();
    for _ in 0..2 {
        let r = http
            .post(&url)
            .header("origin", &app.base)
            .header("sec-fetch-site", "same-origin")
            .form_body(&[("csrf", csrf.as_str()), ("key", key.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        locations.push(r.headers()[LOCATION].to_str().unwrap().to_string());
    }
    assert_eq!(locations[0], locations[1]);
    let location = locations.remove(0);
    let new_id = location.strip_prefix("/jobs/").unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(
        app.job(&new_id).await.retry_of.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(app.count_rows("jobs").await, 2);
    assert_eq!(app.count_events(&id, "retried").await, 1);

    // The new page links back; the original links forward.
    let page = app.page(&location).await;
    assert!(page.contains("Retry of"), "{page}");
    assert!(page.contains(&format!(r#"href="/jobs/{id}""#)), "{page}");
    let page = app.page(&format!("/jobs/{id}")).await;
    assert!(page.contains("Retried by"), "{page}");
    assert!(
        page.contains(&format!(r#"href="/jobs/{new_id}""#)),
        "{page}"
    );

    // A job still running has no Retry button, and a forged-up POST is refused.
    let (status, running) = app
        .post_job(&json!({"name": "busy", "model": "gpt-5", "input": "hi",
            "metadata": {"sim": "stuck"}}))
        .await;
    assert_eq!(status, 201, "{running}");
    let running = running["id"].as_str().unwrap().to_string();
    let page = app.page(&format!("/jobs/{running}")).await;
    assert!(
        !page.contains(&format!(r#"action="/jobs/{running}/retry""#)),
        "{page}"
    );
    let r = http
        .post(format!("{}/jobs/{running}/retry", app.base))
        .form_body(&[("csrf", csrf_of(&page).as_str()), ("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("only a finished job"));
    app.stop().await;
}

#[tokio::test]
async fn with_tokens_pages_need_a_login() {
    let app = spawn_app_with(
        |c| c.api.tokens = vec![SecretString::from(TOKEN)],
        SimConfig::default(),
    )
    .await;
    let http = no_redirects();
    let get = |path: &str, cookie: Option<&str>| {
        let mut r = http.get(format!("{}{path}", app.base));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };

    // No session: pages redirect to the login, keeping where the user was going.
    let r = get("/stats", None).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/login?next=%2Fstats");
    let r = get("/login", None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(r#"name="token""#));

    // A wrong token.
    let r = http
        .post(format!("{}/login", app.base))
        .form_body(&[("token", "wrong"), ("next", "/stats")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());

    // A login from another site is refused even with the right token.
    let r = http
        .post(format!("{}/login", app.base))
        .header("origin", "https://evil.example")
        .form_body(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The right token: a session cookie with the right flags, and back to `next`.
    let r = http
        .post(format!("{}/login", app.base))
        .form_body(&[("token", TOKEN), ("next", "/stats")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/stats");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "plain-http public_url: {set}");
    assert!(!set.contains(TOKEN), "the cookie is not the token: {set}");
    let cookie = set.split(';').next().unwrap().to_string();

    let r = get("/", Some(&cookie)).await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign out"));

    // A tampered cookie is no session.
    assert!(cookie.starts_with(respool::web::SESSION_COOKIE));
    let tampered = format!("{cookie}x");
    let r = get("/", Some(&tampered)).await.unwrap();
    assert_eq!(r.status(), 303);

    // Logout needs the page's CSRF token; with it, the cookie is cleared.
    let r = http
        .post(format!("{}/logout", app.base))
        .header("cookie", &cookie)
        .form_body(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{}/logout", app.base))
        .header("cookie", &cookie)
        .form_body(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );

    // The REST API still wants its bearer token, not the cookie.
    let r = http
        .get(format!("{}/v1/jobs", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn https_public_url_makes_the_cookie_secure() {
    let app = spawn_app_with(
        |c| {
            c.api.tokens = vec![SecretString::from(TOKEN)];
            c.public_url = Some("https://respool.example".into());
        },
        SimConfig::default(),
    )
    .await;
    let r = no_redirects()
        .post(format!("{}/login", app.base))
        .form_body(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
    app.stop().await;
}

#[tokio::test]
async fn the_new_job_form_creates_one_job_with_the_apis_checks() {
    let app = spawn_app().await;
    let http = no_redirects();
    let form_url = format!("{}/jobs/new", app.base);
    let page = app.page("/jobs/new").await;
    assert!(
        page.contains(r#"<form method="post" action="/jobs/new""#),
        "{page}"
    );
    assert!(
        page.contains(r#"<option value="o4-mini-deep-research">"#),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let key = retry_key_of(&page);
    let post = async |pairs: &[(&str, &str)]| {
        http.post(&form_url)
            .header("origin", &app.base)
            .header("sec-fetch-site", "same-origin")
            .form_body(pairs)
            .send()
            .await
            .unwrap()
    };

    // Without the CSRF token: refused, nothing stored.
    let r = post(&[("key", key.as_str()), ("model", "gpt-5"), ("input", "hi")]).await;
    assert_eq!(r.status(), 403);

    // Faults come back on the form as typed (escaped), each named; nothing is stored.
    let typed = "<b>Résumé</b> & 東京";
    let r = post(&[
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("name", typed),
        ("model", " "),
        ("input", typed),
        ("schema", "{\"type\": "),
    ])
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("JSON Schema: not JSON"), "{html}");
    assert!(
        html.contains("&lt;b&gt;Résumé&lt;&#x2f;b&gt; &amp; 東京"),
        "{html}"
    );
    assert!(!html.contains("<b>Résumé"), "{html}");
    let r = post(&[
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("model", " "),
        ("input", "x"),
    ])
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Model: must be a non-empty string")
    );
    let array = r#"{"type": "array"}"#;
    let r = post(&[
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("model", "gpt-5"),
        ("input", "x"),
        ("schema", array),
    ])
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("JSON Schema (at `type`)"));
    // A schema strict mode refuses, with Strict ticked: OpenAI would refuse the job at
    // submit, so the form does now.
    let open = r#"{"type": "object", "properties": {"city": {"type": "string"}}}"#;
    let r = post(&[
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("model", "gpt-5"),
        ("input", "x"),
        ("schema", open),
        ("strict", "on"),
    ])
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("JSON Schema: OpenAI refuses this in strict mode"),
        "{html}"
    );
    assert_eq!(app.count_rows("jobs").await, 0);

    // A good form, sent twice (a double click): one job, and both land on it.
    let schema = r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}"#;
    let good = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("name", "Étude 東京"),
        ("model", "gpt-5"),
        ("instructions", "Answer briefly."),
        ("input", "Which city hosts the fair?"),
        ("schema", schema),
        ("strict", "on"),
    ];
    let mut locations = Vec::new();
    for _ in 0..2 {
        let r = post(&good).await;
        assert_eq!(r.status(), 303);
        locations.push(r.headers()[LOCATION].to_str().unwrap().to_string());
    }
    assert_eq!(locations[0], locations[1]);
    assert_eq!(app.count_rows("jobs").await, 1);
    let id = locations[0].trim_start_matches("/jobs/").to_string();
    let job = app.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.name, "Étude 東京");
    assert!(
        job.output_json.as_ref().unwrap()["city"].is_string(),
        "{:?}",
        job.output_json
    );
    let (_, shown) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(shown["spec"]["request"]["instructions"], "Answer briefly.");
    assert_eq!(shown["spec"]["request"]["text"]["format"]["strict"], true);

    // The same key with other values: refused, not a second job.
    let r = post(&[
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("model", "gpt-5"),
        ("input", "other"),
    ])
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("already used"));
    assert_eq!(app.count_rows("jobs").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_new_job_form_sends_files_and_keeps_them_across_a_fault() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let http = no_redirects();
    let form_url = format!("{}/jobs/new", app.base);
    let page = app.page("/jobs/new").await;
    assert!(page.contains(r#"enctype="multipart/form-data""#), "{page}");
    assert!(
        page.contains(r#"name="attachments" type="file" multiple"#),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let key = retry_key_of(&page);
    let pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n".to_vec();
    let post = async |form: Form| {
        http.post(&form_url)
            .header("origin", &app.base)
            .header("sec-fetch-site", "same-origin")
            .multipart(form)
            .send()
            .await
            .unwrap()
    };
    let fields = |input: &str| {
        Form::new()
            .text("csrf", csrf.clone())
            .text("key", key.clone())
            .text("model", "gpt-5")
            .text("input", input.to_string())
    };
    // A good file and a bad one, and no input: every fault named, the good file kept.
    let r = post(
        fields("")
            .part(
                "attachments",
                Part::bytes(pdf.clone()).file_name("brief — été.pdf"),
            )
            .part(
                "attachments",
                Part::bytes(b"not a png".to_vec()).file_name("chart.png"),
            ),
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("`chart.png` is not a PNG file"), "{html}");
    assert!(html.contains("brief — été.pdf"), "{html}");
    assert!(html.contains("kept from your last try"), "{html}");
    assert_eq!(app.count_rows("jobs").await, 0);
    let kept = html
        .split(r#"name="attached" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(kept.starts_with("att_"), "{kept}");
    // Sent again with the kept file and an empty file input, as a browser does.
    let r = post(
        fields("Summarise the brief.")
            .text("attached", kept.clone())
            .part("attachments", Part::bytes(Vec::new()).file_name("")),
    )
    .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let location = r.headers()[LOCATION].to_str().unwrap().to_string();
    let id = location.trim_start_matches("/jobs/").to_string();
    let job = app.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(job.status, JobStatus::Completed);
    let request = app
        .sim
        .request(job.response_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(request["input"][0]["content"][0]["type"], "input_file");
    let files = app.sim.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].filename, "brief — été.pdf");
    assert_eq!(files[0].content, pdf);
    let page = app.page(&location).await;
    assert!(page.contains("brief — été.pdf"), "{page}");
    assert!(page.contains("application&#x2f;pdf, 33 B"), "{page}");
    app.stop().await;
}
