//! The OpenAPI document as served at `/openapi.json`: what utoipa derives from the handlers and
//! their parameter types, finished with what is the same for every operation (the bearer
//! scheme; the 401/403 of the token check; the 400/413/415 of the extractors; the 500 of a
//! failure of ours), the links from the operations that create something to those that use
//! its id, and the job body's schema ([`super::job_schema`]).
//!
//! The finishing is done once, on the JSON; only the sink names a job may notify come from the
//! live config, per request.

use serde_json::{Map, Value, json};

/// The operations whose every answer needs the API token.
const SECURED_PREFIX: &str = "/v1/";
/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

/// A link from an answer to an operation that takes one of its values.
struct Link {
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
}

const JOB_FROM_BODY: &[(&str, &str)] = &[("id", "$response.body#/id")];
const JOB_FROM_LIST: &[(&str, &str)] = &[("id", "$response.body#/data/0/id")];

const LINKS: &[Link] = &[
    Link {
        from: "create_job",
        status: "201",
        name: "GetJob",
        to: "get_job",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "create_job",
        status: "201",
        name: "GetEvents",
        to: "get_events",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "create_job",
        status: "201",
        name: "GetResponse",
        to: "get_response",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "create_job",
        status: "201",
        name: "CancelJob",
        to: "cancel_job",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "create_job",
        status: "201",
        name: "RetryJob",
        to: "retry_job",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "retry_job",
        status: "201",
        name: "GetJob",
        to: "get_job",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "retry_job",
        status: "201",
        name: "CancelJob",
        to: "cancel_job",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "cancel_job",
        status: "200",
        name: "RetryJob",
        to: "retry_job",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "cancel_job",
        status: "200",
        name: "GetJob",
        to: "get_job",
        parameters: JOB_FROM_BODY,
        body: None,
    },
    Link {
        from: "list_jobs",
        status: "200",
        name: "GetFirstJob",
        to: "get_job",
        parameters: JOB_FROM_LIST,
        body: None,
    },
    Link {
        from: "list_jobs",
        status: "200",
        name: "GetFirstJobEvents",
        to: "get_events",
        parameters: JOB_FROM_LIST,
        body: None,
    },
    Link {
        from: "list_notifications",
        status: "200",
        name: "RetryFirstNotification",
        to: "retry_notification",
        parameters: &[("id", "$response.body#/data/0/id")],
        body: None,
    },
    Link {
        from: "list_schedules",
        status: "200",
        name: "ListFirstScheduleRuns",
        to: "list_runs",
        parameters: &[("name", "$response.body#/data/0/name")],
        body: None,
    },
    Link {
        from: "register",
        status: "201",
        name: "RotateSecret",
        to: "rotate",
        parameters: &[],
        body: Some("$response.body#/endpoint/id"),
    },
    Link {
        from: "register",
        status: "201",
        name: "SendTestEvent",
        to: "test",
        parameters: &[],
        body: Some("$response.body#/endpoint/id"),
    },
];

/// Finishes utoipa's document (see the module doc).
pub fn finish(doc: utoipa::openapi::OpenApi) -> Value {
    let mut v = serde_json::to_value(doc).unwrap_or(Value::Null);
    v["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    v["components"]["securitySchemes"][BEARER] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "One of the config's `api.tokens`. With no tokens configured, the API \
                        answers loopback clients only, without a token."
    });
    let schemas = &mut v["components"]["schemas"];
    for (name, schema) in super::job_schema::components() {
        schemas[name] = schema;
    }
    flatten_described_refs(&mut v);
    if let Some(paths) = v["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                finish_operation(path, op);
            }
        }
    }
    for link in LINKS {
        add_link(&mut v, link);
    }
    let replayed = json!({
        "description": "`true` when this answers a repeat of an earlier request with the same key",
        "schema": {"type": "string", "enum": ["true"]}
    });
    for id in ["create_job", "retry_job"] {
        if let Some(created) = find_operation(&mut v, id)
            .and_then(|op| op.get_mut("responses"))
            .and_then(|r| r.get_mut("201"))
        {
            created["headers"]["Idempotent-Replayed"] = replayed.clone();
            if id == "retry_job" {
                created["headers"]["Location"] = json!({
                    "description": "The new job's path",
                    "required": true,
                    "schema": {"type": "string", "pattern": "^/v1/jobs/job_[0-9A-HJKMNP-TV-Z]{26}$"}
                });
            }
        }
    }
    // Their body may be left out (`OptionalJson`).
    for id in ["rotate", "test"] {
        if let Some(body) = find_operation(&mut v, id).and_then(|op| op.get_mut("requestBody")) {
            body["required"] = json!(false);
        }
    }
    if let Some(op) = find_operation(&mut v, "get_events") {
        // The header is a timeline event's id, digits only; each server-sent event is an
        // `id:` (that id), an `event:` (the kind) and a `data:` (the event as JSON).
        for p in op
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if p["name"] == "Last-Event-ID" {
                p["schema"] =
                    json!({"type": "string", "pattern": crate::live::LAST_EVENT_ID_PATTERN});
            }
        }
        if let Some(sse) = op
            .get_mut("responses")
            .and_then(|r| r.pointer_mut("/200/content/text~1event-stream"))
        {
            sse["schema"] = json!({
                "type": "object",
                "required": ["id", "event", "data"],
                "properties": {
                    "id": {"type": "string", "pattern": crate::live::LAST_EVENT_ID_PATTERN},
                    "event": {"type": "string"},
                    "data": {"type": "string", "contentMediaType": "application/json"}
                }
            });
        }
    }
    if let Some(op) = find_operation(&mut v, "respond") {
        let body = op.entry("requestBody").or_insert_with(|| json!({}));
        body["required"] = json!(true);
        body["content"] = json!({"application/json": {"schema": super::respond::body_schema()}});
    }
    if let Some(op) = find_operation(&mut v, "create_job") {
        let body = op.entry("requestBody").or_insert_with(|| json!({}));
        body["required"] = json!(true);
        body["content"] = json!({"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{}", super::job_schema::JOB_REQUEST)}
        }});
    }
    v
}

/// The document with the sinks the live config has (a job's `notify` may name only those).
pub fn with_sinks(doc: &Value, sinks: &[String]) -> Value {
    let mut v = doc.clone();
    super::job_schema::set_sinks(&mut v["components"]["schemas"], sinks);
    v
}

/// utoipa gives an inlined field with a doc comment as `allOf: [schema, {type: object,
/// description}]`, which no string satisfies; this folds the description into the schema.
fn flatten_described_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(parts)) = m.get("allOf")
                && let [first, second] = parts.as_slice()
                && second.get("type") == Some(&json!("object"))
                && second
                    .as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "type" || k == "description"))
            {
                let mut merged = first.clone();
                if let Some(d) = second.get("description") {
                    merged["description"] = d.clone();
                }
                m.remove("allOf");
                if let Value::Object(fields) = merged {
                    for (k, val) in fields {
                        m.entry(k).or_insert(val);
                    }
                }
            }
            for child in m.values_mut() {
                flatten_described_refs(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(flatten_described_refs),
        _ => {}
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "400" => "A parameter or the body is not what the document says; `param` names it",
        "404" => "Nothing has that id",
        "409" => "The request conflicts with what is stored",
        "500" => "A failure of the daemon's (its log has the details)",
        "502" => "OpenAI did not do what was asked (the message says why)",
        _ => "See the error's message",
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn finish_operation(path: &str, op: &mut Value) {
    // (`get`, not indexing: indexing a `&mut Value` inserts the key as null.)
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let has_path_params = path.contains('{');
    let has_body = op.get("requestBody").is_some();
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params {
            if p["in"] == "header" && p["name"] == "Idempotency-Key" {
                p["schema"] = json!({
                    "type": "string",
                    "pattern": super::job_schema::IDEMPOTENCY_KEY_PATTERN,
                    "description": "1 to 255 visible ASCII characters"
                });
            }
        }
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    // OpenAPI requires a description of every answer; utoipa leaves out an empty one.
    for (status, r) in responses.iter_mut() {
        if r.get("description").is_none() {
            r["description"] = json!(default_description(status));
        }
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    if has_params || has_body {
        add(
            "400",
            "A parameter or the body is not what the document says; `param` names it",
        );
    }
    if has_path_params {
        add("404", "Nothing has that id");
    }
    if has_body {
        add("413", "The body is larger than 4 MiB");
        add("415", "The body is not `application/json`");
    }
    add("500", "A failure of the daemon's (its log has the details)");
    if path.starts_with(SECURED_PREFIX) {
        add(
            "401",
            "No `Authorization: Bearer` token, or not one of the config's",
        );
        add(
            "403",
            "No tokens are configured and the client is not on loopback",
        );
        op["security"] = json!([{ BEARER: [] }]);
    }
}

/// The operation (by its `operationId`) and its path.
fn find_operation<'a>(v: &'a mut Value, id: &str) -> Option<&'a mut Map<String, Value>> {
    v["paths"]
        .as_object_mut()?
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(Value::as_object_mut)
        .find(|op| op.get("operationId").and_then(Value::as_str) == Some(id))
}

fn add_link(v: &mut Value, link: &Link) {
    let mut body = json!({
        "operationId": link.to,
        "description": format!("`{}` with a value from this answer", link.to),
    });
    if !link.parameters.is_empty() {
        body["parameters"] = link
            .parameters
            .iter()
            .map(|(k, e)| ((*k).to_string(), json!(e)))
            .collect::<Map<_, _>>()
            .into();
    }
    if let Some(id) = link.body {
        body["requestBody"] = json!({ "endpoint_id": id });
    }
    let Some(op) = find_operation(v, link.from) else {
        tracing::warn!(
            operation = link.from,
            "an OpenAPI link starts at an unknown operation"
        );
        return;
    };
    if let Some(resp) = op
        .get_mut("responses")
        .and_then(|r| r.get_mut(link.status))
        .and_then(Value::as_object_mut)
    {
        let links = resp.entry("links").or_insert_with(|| json!({}));
        links[link.name] = body;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every link goes from and to an operation the document has.
    #[test]
    fn links_name_operations_that_exist() {
        let doc = super::super::document();
        let ids: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str().map(str::to_string))
            .collect();
        for link in LINKS {
            assert!(ids.iter().any(|i| i == link.from), "{}", link.from);
            assert!(ids.iter().any(|i| i == link.to), "{}", link.to);
        }
        let created = &doc["paths"]["/v1/jobs"]["post"]["responses"]["201"]["links"];
        assert_eq!(created["GetJob"]["parameters"]["id"], "$response.body#/id");
    }

    /// Every `/v1` operation needs the token and says what it answers without one; every
    /// error answer is the envelope.
    #[test]
    fn every_operation_documents_its_errors() {
        let doc = super::super::document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("500"), "{method} {path}");
                if path.starts_with("/v1/") {
                    assert!(responses.contains_key("401"), "{method} {path}");
                    assert_eq!(op["security"][0]["bearer"], json!([]), "{method} {path}");
                }
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
