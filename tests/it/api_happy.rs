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
