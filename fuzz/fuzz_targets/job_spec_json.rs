//! A job spec from a REST body (JSON) or any JSON value: parsing and validation never panic;
//! an accepted spec survives the ledger's round trip (serialized, decoded back) and its create
//! body carries what respool always sends and none of respool's own keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use respool::job::JobSpec;
use respool_fuzz::json_or_value;

fuzz_target!(|data: &[u8]| {
    let Some(value) = json_or_value(data) else {
        return;
    };
    let Ok(spec) = JobSpec::from_value(value, "(request)") else {
        return;
    };
    check(&spec);
});

fn check(spec: &JobSpec) {
    // What the store writes and reads back.
    let stored = serde_json::to_string(spec).expect("a spec serializes");
    let back: JobSpec = serde_json::from_str(&stored).expect("a stored spec decodes");
    assert_eq!(&back, spec, "the stored spec decodes to another: {stored}");

    let id = respool::job::JobId::generate();
    let body = spec.create_body(&id);
    assert_eq!(body["background"], true);
    assert_eq!(body["store"], true);
    assert!(body["metadata"].is_object());
    for key in [
        "name",
        "notify",
        "idempotency_key",
        "timeout",
        "schedule",
        "priority",
        "budget_exempt",
    ] {
        assert!(!body.contains_key(key), "`{key}` reaches OpenAI");
    }
    assert!(!spec.model().trim().is_empty());
}
