//! The happy path through the real daemon and simulator.

use std::time::Duration;

use respool::job::JobStatus;

use crate::helpers;

#[tokio::test]
async fn job_submitted_by_rest_completes_with_output_and_usage() {
    let app = helpers::spawn_app().await;
    let (status, body) = app.post_job(&helpers::job_body("happy")).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["status"], "pending");

    let job = app.wait_terminal(&id, Duration::from_secs(15)).await;
    assert_eq!(job.status, JobStatus::Completed);
    let resp_id = job.response_id.clone().unwrap();
    let sim_resp = app.sim.response(&resp_id).unwrap();
    let expected = respool::upstream::output_text(&sim_resp).unwrap();
    assert_eq!(job.output_text.as_deref(), Some(expected.as_str()));
    assert!(
        job.usage.as_ref().unwrap()["total_tokens"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(job.attempts, 1);
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));

    let (s, stored) = app.get(&format!("/v1/jobs/{id}/response")).await;
    assert_eq!(s, 200);
    assert_eq!(stored["id"], resp_id.as_str());
    assert_eq!(stored["metadata"]["respool_job_id"], id.as_str());
    assert_eq!(stored["background"], true);

    let kinds = app.event_kinds(&id).await;
    assert_eq!(kinds.first().map(String::as_str), Some("accepted"));
    assert!(kinds.contains(&"submitted".to_string()), "{kinds:?}");
    app.stop().await;
}

/// A retrieved Response leaves out what the job's tools found unless asked: respool asks for
/// what each tool needs, so the stored Response has the web search sources.
#[tokio::test]
async fn polls_ask_for_what_the_jobs_tools_found() {
    let app = helpers::spawn_app().await;
    let with_tools = app
        .submit(&serde_json::json!({"name": "dr", "model": "o3-deep-research", "input": "Research tides.",
                        "tools": [{"type": "web_search_preview"}]}))
        .await;
    let without = app.submit(&helpers::job_body("plain")).await;
    for id in [&with_tools, &without] {
        app.wait_terminal(id, Duration::from_secs(20)).await;
    }
    let (_, stored) = app.get(&format!("/v1/jobs/{with_tools}/response")).await;
    let searches: Vec<&serde_json::Value> = stored["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "web_search_call")
        .collect();
    assert!(!searches.is_empty(), "{stored}");
    for s in searches {
        let sources = s["action"]["sources"]
            .as_array()
            .expect("sources were asked for");
        assert!(
            sources
                .iter()
                .all(|x| x["url"].as_str().unwrap().starts_with("https://")),
            "{s}"
        );
    }
    // The simulator leaves them out when not asked: the field is there because respool asked.
    let response_id = app.job(&with_tools).await.response_id.unwrap();
    let bare = reqwest::Client::new()
        .get(format!("{}/responses/{response_id}", app.sim.base_url()))
        .bearer_auth("sk-test-key")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let bare_search = bare["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "web_search_call")
        .unwrap();
    assert!(
        bare_search["action"].get("sources").is_none(),
        "{bare_search}"
    );
    app.stop().await;
}
