//! What the upstream answers: Response objects (raw JSON bytes, or structure-aware values),
//! judged (refusals, structured outputs) and made into reports,
//! `x-ratelimit-*` headers with Go durations, and `Retry-After` / `retry-after-ms`. Never
//! panics; Go durations the simulator formats parse back to themselves.
#![no_main]

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use respool::job::JobStatus;
use respool::notify::markdown::Report;
use respool::structured;
use respool::upstream::http_retry::parse_retry_after;
use respool::upstream::ratelimit::parse_go_duration;
use respool::upstream::{RateLimits, observe};

fuzz_target!(|data: &[u8]| {
    if let Some(raw) = respool_fuzz::json_or_value(data) {
        if let Ok(obs) = observe(raw.clone()) {
            assert_eq!(obs.raw, raw);
            let upstream = raw["status"].as_str().unwrap_or("");
            assert_eq!(obs.upstream_status(), upstream);
            // Only a `completed` response that is not the answer asked for is judged `failed`,
            // with a code of its own.
            if obs.status.as_str() != upstream {
                assert_eq!((upstream, obs.status), ("completed", JobStatus::Failed));
                let code = obs.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
                assert!(
                    [
                        structured::REFUSAL,
                        structured::NOT_JSON,
                        structured::SCHEMA_MISMATCH
                    ]
                    .contains(&code),
                    "{code}"
                );
            }
            assert!(!obs.status.is_unsubmitted());
            let failed = matches!(obs.status, JobStatus::Failed | JobStatus::Incomplete);
            assert_eq!(obs.error.is_some(), failed);
            let _ = respool::upstream::tagged_job_id(&obs.raw);
            // The report of any response: markers only where annotations say, so taking
            // them out gives the text back when the parts are the recorded text.
            let text = obs.output_text.clone().unwrap_or_default();
            let report = Report::of(&text, Some(&raw));
            let _ = report.markdown();
            assert!(
                report
                    .citations
                    .iter()
                    .enumerate()
                    .all(|(i, c)| c.index == i + 1)
            );
        }
        let _ = structured::answer_text(&raw);
        let _ = structured::judge(&raw, raw["x"].as_str());
        if let Some(schema) = raw.get("schema") {
            let _ = structured::schema_problems(schema, true);
        }
    }

    // Header values: the whole input, and each line of it.
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    for value in std::iter::once(text.as_ref()).chain(lines.iter().copied()) {
        if let Some(d) = parse_go_duration(value) {
            // The simulator's formatting (whole milliseconds, as OpenAI sends) reads back.
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let d = Duration::from_millis(ms);
            let formatted = respool::sim::fuzzing::go_duration(d);
            assert_eq!(parse_go_duration(&formatted), Some(d), "{formatted}");
        }
        let _ = parse_retry_after(Some(value), Some(value));
        let _ = parse_retry_after(None, Some(value));
    }

    let mut headers = HeaderMap::new();
    for (name, value) in [
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    ]
    .into_iter()
    .zip(lines)
    {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    let _ = RateLimits::from_headers(&headers);
});
