use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn body(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn check(v: Value) -> Vec<Violation> {
    check_create(&body(v))
}

/// Every `$ref` in a value.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

#[test]
fn the_vendored_document_is_the_closure_of_create_response() {
    let schemas = openai_schemas();
    assert!(schemas.contains_key("CreateResponse"));
    // Every `$ref` resolves inside the document, and every schema in it is reached from
    // `CreateResponse` (what the refresh script keeps, nothing more).
    let mut reached = BTreeSet::new();
    let mut todo = vec!["CreateResponse".to_string()];
    while let Some(name) = todo.pop() {
        if !reached.insert(name.clone()) {
            continue;
        }
        let schema = schemas
            .get(&name)
            .unwrap_or_else(|| panic!("a $ref names `{name}`, which the document lacks"));
        let mut found = Vec::new();
        refs(schema, &mut found);
        for r in found {
            let target = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("`{name}` has a $ref outside the schemas: {r}"));
            assert!(!target.contains('/'), "{r}");
            todo.push(target.to_string());
        }
    }
    let all: BTreeSet<String> = schemas.keys().cloned().collect();
    assert_eq!(
        reached, all,
        "the vendored file must hold exactly the closure"
    );
    assert!(all.len() > 100, "{}", all.len());
}

#[test]
fn the_source_is_recorded() {
    let s = source();
    assert_eq!(s.repository, "https://github.com/openai/openai-openapi");
    assert_eq!(s.commit.len(), 40, "{s:?}");
    assert!(s.commit.chars().all(|c| c.is_ascii_hexdigit()), "{s:?}");
    assert_eq!(s.date.len(), 10, "{s:?}");
    assert_eq!(s.openapi_version, "3.1.0");
    assert!(!s.info_version.is_empty());
}

#[test]
fn the_docs_name_the_vendored_version() {
    let docs = include_str!("../../docs/jobs.md");
    let s = source();
    for said in [&s.commit, &s.date, &format!("version {}", s.info_version)] {
        assert!(
            docs.contains(said.as_str()),
            "docs/jobs.md must name the vendored document's {said} (after a refresh, update it)"
        );
    }
}

#[test]
fn the_vendored_file_is_as_the_refresh_script_writes_it() {
    // The script writes sorted keys, a two-space indent and a final newline; a hand edit that
    // breaks this shows here (and `scripts/refresh-openai-schema.py --check` finds any other).
    assert!(DOCUMENT.ends_with("}\n"));
    assert!(DOCUMENT.starts_with("{\n  \"components\": {\n    \"schemas\": {\n"));
    fn sorted(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b) && m.values().all(sorted)
            }
            Value::Array(items) => items.iter().all(sorted),
            _ => true,
        }
    }
    assert!(sorted(openai_document()));
}

#[test]
fn the_contract_builds() {
    let contract = CONTRACT.as_ref().expect("the vendored schema compiles");
    for field in [
        "model",
        "input",
        "temperature",
        "top_p",
        "tools",
        "reasoning",
        "text",
        "metadata",
        "max_output_tokens",
        "background",
        "store",
        "stream",
    ] {
        assert!(contract.known.contains(field), "{field}");
    }
}

#[test]
fn a_string_temperature_is_refused_naming_temperature() {
    let v = check(json!({"model": "o3", "input": "hi", "temperature": "hot"}));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "temperature");
    assert_eq!(v[0].param(), "temperature");
    assert_eq!(v[0].kind(), ViolationKind::InvalidType);
    assert_eq!(v[0].kind().code(), "invalid_type");
    assert_eq!(
        v[0].message(),
        "must be a number or null, not the string `hot`"
    );
    assert_eq!(
        v[0].to_string(),
        "field `temperature`: must be a number or null, not the string `hot`"
    );
}

#[test]
fn a_temperature_out_of_range_is_refused() {
    let v = check(json!({"model": "o3", "input": "hi", "temperature": 3}));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "temperature");
    assert_eq!(v[0].kind(), ViolationKind::InvalidValue);
    assert_eq!(v[0].message(), "must be at most 2, not 3");
    let v = check(json!({"model": "o3", "input": "hi", "top_p": -0.5}));
    assert_eq!(v[0].message(), "must be at least 0, not -0.5");
    assert!(check(json!({"model": "o3", "input": "hi", "temperature": 2, "top_p": 0})).is_empty());
    assert!(check(json!({"model": "o3", "input": "hi", "temperature": null})).is_empty());
}

#[test]
fn a_null_text_in_an_input_text_part_is_refused_at_its_path() {
    let v = check(json!({
        "model": "o3",
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "fine"},
            {"type": "input_text", "text": null},
        ]}],
    }));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "input.0.content.1.text");
    assert_eq!(v[0].param(), "input[0].content[1].text");
    assert_eq!(v[0].kind(), ViolationKind::InvalidType);
    assert_eq!(v[0].message(), "must be a string, not null");
    assert_eq!(
        v[0].path(),
        &[
            Segment::Key("input".into()),
            Segment::Index(0),
            Segment::Key("content".into()),
            Segment::Index(1),
            Segment::Key("text".into()),
        ]
    );
}

#[test]
fn a_missing_field_in_an_input_part_is_named() {
    let v = check(json!({
        "model": "o3",
        "input": [{"role": "user", "content": [{"type": "input_text"}]}],
    }));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "input.0.content.0.text");
    assert_eq!(v[0].kind(), ViolationKind::Missing);
    assert_eq!(v[0].kind().code(), "missing_required_parameter");
}

#[test]
fn a_required_field_that_may_be_null_may_be_left_out() {
    // OpenAI's document marks `strict` and `parameters` required (they are always in a
    // response) but nullable; the API takes a function tool without them.
    let tool = json!({"type": "function", "name": "lookup"});
    assert_eq!(
        check(json!({"model": "o3", "input": "hi", "tools": [tool]})),
        vec![]
    );
    let v = check(json!({"model": "o3", "input": "hi",
                         "tools": [{"type": "function", "name": "lookup", "strict": "yes"}]}));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "tools.0.strict");
    // `name` cannot be null: still required.
    let v = check(json!({"model": "o3", "input": "hi", "tools": [{"type": "function"}]}));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "tools.0.name");
    assert_eq!(v[0].kind(), ViolationKind::Missing);
}

#[test]
fn an_unknown_part_type_lists_the_known_ones() {
    let v = check(json!({
        "model": "o3",
        "input": [{"role": "user", "content": [{"type": "input_txt", "text": "hi"}]}],
    }));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "input.0.content.0.type");
    assert_eq!(v[0].kind(), ViolationKind::InvalidValue);
    let m = v[0].message();
    assert!(
        m.contains("`input_text`") && m.contains("`input_image`"),
        "{m}"
    );
    assert!(m.ends_with("not the string `input_txt`"), "{m}");
}

#[test]
fn a_wrong_enum_value_is_refused_with_the_allowed_ones() {
    let v = check(json!({"model": "o3", "input": "hi", "reasoning": {"effort": "extreme"}}));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "reasoning.effort");
    assert_eq!(v[0].kind(), ViolationKind::InvalidValue);
    assert!(v[0].message().contains("`high`"), "{}", v[0].message());
    let v = check(json!({"model": "o3", "input": 5}));
    assert_eq!(v[0].field(), "input");
    assert_eq!(
        v[0].message(),
        "must be a string or a list, not the number 5"
    );
}

#[test]
fn a_rich_valid_body_passes() {
    let body = json!({
        "model": "o4-mini-deep-research",
        "input": [
            {"role": "developer", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "input_text", "text": "Summarise this."},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
            ]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go."}]},
        ],
        "instructions": "Be brief.",
        "tools": [
            {"type": "web_search_preview"},
            {"type": "code_interpreter", "container": {"type": "auto"}},
            {"type": "function", "name": "lookup", "description": "Look a thing up",
             "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                            "required": ["q"], "additionalProperties": false},
             "strict": true},
            {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com",
             "require_approval": "never"},
        ],
        "tool_choice": "auto",
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "report", "strict": true,
                 "schema": {"type": "object", "properties": {"title": {"type": "string"}},
                            "required": ["title"], "additionalProperties": false}},
                 "verbosity": "low"},
        "max_output_tokens": 100000,
        "max_tool_calls": 20,
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"team": "research", "ticket": "R-17"},
        "parallel_tool_calls": true,
        "service_tier": "flex",
        "include": ["web_search_call.action.sources", "reasoning.encrypted_content"],
        "truncation": "auto",
        "prompt_cache_key": "weekly",
        "safety_identifier": "user-42",
        "background": true,
        "store": true,
    });
    assert_eq!(check(body), vec![]);
}

#[test]
fn an_unknown_top_level_field_is_a_warning_not_an_error() {
    let b = body(
        json!({"model": "o3", "input": "hi", "future_param": {"x": [1, 2]},
                        "temprature": 0.5}),
    );
    assert_eq!(check_create(&b), vec![]);
    assert_eq!(unknown_fields(&b), vec!["future_param", "temprature"]);
    assert!(unknown_fields(&body(json!({"model": "o3", "input": "hi"}))).is_empty());
}

#[test]
fn an_unknown_field_inside_a_closed_object_is_an_error() {
    // `Reasoning` lists its fields; a nested typo is OpenAI's 400 too.
    let v = check(json!({"model": "o3", "input": "hi",
                         "text": {"format": {"type": "json_schema", "name": "r",
                                             "schema": {}, "stict": true}}}));
    assert!(
        v.iter().all(|v| v.field().starts_with("text.format")),
        "{v:?}"
    );
}

#[test]
fn a_huge_input_passes_and_huge_values_make_short_messages() {
    let big = "word ".repeat(400_000);
    assert_eq!(check(json!({"model": "o3", "input": big.clone()})), vec![]);
    let v = check(json!({"model": "o3", "input": "hi", "temperature": big}));
    assert_eq!(v.len(), 1);
    assert!(v[0].message().chars().count() < 120, "{}", v[0].message());
    let many: Vec<Value> = (0..5000).map(|i| json!({"type": "nope", "n": i})).collect();
    let v = check(json!({"model": "o3", "input": "hi", "tools": many}));
    assert!(!v.is_empty());
    assert!(v.iter().all(|v| v.message().chars().count() <= 300));
}

#[test]
fn non_ascii_values_are_checked_and_quoted_whole_characters() {
    assert_eq!(
        check(json!({"model": "o3", "input": "Résumé 日本語 🎉", "metadata": {"équipe": "ü"}})),
        vec![]
    );
    let v = check(json!({"model": "o3", "input": "hi",
                         "service_tier": "très-rapide-🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀"}));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].field(), "service_tier");
    assert!(
        v[0].message().contains("très-rapide-🚀"),
        "{}",
        v[0].message()
    );
    assert!(v[0].message().contains('…'), "{}", v[0].message());
}

#[test]
fn a_numeric_metadata_key_stays_a_key() {
    let v = check(json!({"model": "o3", "input": "hi", "metadata": {"7": 7}}));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].path()[1], Segment::Key("7".into()));
    assert_eq!(v[0].param(), "metadata.7");
}

#[test]
fn every_violation_of_a_body_is_reported() {
    let v = check(
        json!({"model": "o3", "input": "hi", "temperature": "hot", "top_p": 7,
                         "parallel_tool_calls": "yes"}),
    );
    let fields: Vec<String> = v.iter().map(Violation::field).collect();
    assert_eq!(fields.len(), 3, "{v:?}");
    for f in ["temperature", "top_p", "parallel_tool_calls"] {
        assert!(fields.contains(&f.to_string()), "{fields:?}");
    }
}

#[test]
fn one_of_becomes_any_of_at_load_only() {
    let mut v = json!({"oneOf": [{"type": "string"}], "enum": [{"oneOf": 1}],
                       "properties": {"a": {"oneOf": [{"type": "null"}], "anyOf": [{}]}}});
    prepare(&mut v);
    assert_eq!(v["anyOf"], json!([{"type": "string"}]));
    assert_eq!(v["enum"], json!([{"oneOf": 1}]));
    assert_eq!(
        v["properties"]["a"]["allOf"],
        json!([{"anyOf": [{"type": "null"}]}, {"anyOf": [{}]}])
    );
    // The vendored document itself keeps OpenAI's words.
    assert!(openai_schemas()["InputItem"].get("oneOf").is_some());
}

/// A valid create body from a few of the fields a job sets.
fn valid_body() -> impl Strategy<Value = Map<String, Value>> {
    let model = prop::sample::select(vec!["o3", "o4-mini-deep-research", "gpt-5", "my-finetune"]);
    let text = "[a-zA-Z0-9 éü日本🎉.,!?]{1,40}";
    let input = prop_oneof![
        text.prop_map(Value::String),
        prop::collection::vec(
            (
                prop::sample::select(vec!["user", "developer", "system"]),
                prop::collection::vec(text, 1..3),
            )
                .prop_map(|(role, parts)| {
                    let content: Vec<Value> = parts
                        .into_iter()
                        .map(|t| json!({"type": "input_text", "text": t}))
                        .collect();
                    json!({"role": role, "content": content})
                }),
            1..3
        )
        .prop_map(Value::Array),
    ];
    (
        model,
        input,
        prop::option::of(0.0f64..=2.0),
        prop::option::of(0.0f64..=1.0),
        prop::option::of(16u64..200_000),
        prop::option::of(0u64..=20),
        prop::option::of(prop::sample::select(vec!["low", "medium", "high"])),
        prop::collection::btree_map("[a-z_]{1,10}", "[a-zA-Z0-9 ]{0,20}", 0..4),
    )
        .prop_map(
            |(model, input, temperature, top_p, max_tokens, top_logprobs, effort, metadata)| {
                let mut b = Map::new();
                b.insert("model".into(), json!(model));
                b.insert("input".into(), input);
                if let Some(t) = temperature {
                    b.insert("temperature".into(), json!(t));
                }
                if let Some(p) = top_p {
                    b.insert("top_p".into(), json!(p));
                }
                if let Some(m) = max_tokens {
                    b.insert("max_output_tokens".into(), json!(m));
                }
                if let Some(l) = top_logprobs {
                    b.insert("top_logprobs".into(), json!(l));
                }
                if let Some(e) = effort {
                    b.insert("reasoning".into(), json!({"effort": e}));
                }
                if !metadata.is_empty() {
                    b.insert("metadata".into(), json!(metadata));
                }
                b
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_valid_bodies_pass(b in valid_body()) {
        prop_assert_eq!(check_create(&b), vec![]);
        prop_assert!(unknown_fields(&b).is_empty());
    }

    #[test]
    fn a_numeric_field_set_to_a_string_is_refused_naming_it(
        b in valid_body(),
        field in prop::sample::select(vec![
            "temperature", "top_p", "max_output_tokens", "top_logprobs", "max_tool_calls",
        ]),
        text in "[a-z]{0,12}",
    ) {
        let mut b = b;
        b.insert(field.to_string(), Value::String(text));
        let v = check_create(&b);
        prop_assert_eq!(v.len(), 1, "{:?}", v);
        prop_assert_eq!(v[0].field(), field);
        prop_assert_eq!(v[0].kind(), ViolationKind::InvalidType);
    }
}

/// An item reference is its id and type alone: another item whose `type` is wrong (null) is
/// refused, not taken for a reference; a real reference passes.
#[test]
fn an_item_reference_has_no_other_fields() {
    let body = |item: serde_json::Value| serde_json::json!({"model": "o3-deep-research", "input": [item], "tools": [{"type": "web_search_preview"}]});
    let refused = body(
        serde_json::json!({"id": "", "queries": [], "results": [], "status": "in_progress", "type": null}),
    );
    assert!(!super::check_create(refused.as_object().unwrap()).is_empty());
    for ok in [
        serde_json::json!({"id": "msg_1"}),
        serde_json::json!({"id": "msg_1", "type": "item_reference"}),
        serde_json::json!({"id": "msg_1", "type": null}),
    ] {
        let b = body(ok.clone());
        assert!(
            super::check_create(b.as_object().unwrap()).is_empty(),
            "{ok}"
        );
    }
}
