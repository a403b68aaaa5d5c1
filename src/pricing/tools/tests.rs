use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn read(response: Value) -> ToolUsage {
    ToolUsage::from_response(&response, &ImagePrices::default())
}

fn with_output(items: Value) -> Value {
    json!({"id": "resp_1", "object": "response", "status": "completed", "output": items})
}

#[test]
fn no_tools_no_usage() {
    assert!(read(json!({})).is_empty());
    assert!(read(with_output(json!([]))).is_empty());
    let message = json!({"type": "message", "role": "assistant",
        "content": [{"type": "output_text", "text": "web_search_call", "annotations": []}]});
    let reasoning = json!({"type": "reasoning", "summary": []});
    let function = json!({"type": "function_call", "name": "web_search_call", "arguments": "{}"});
    assert!(read(with_output(json!([message, reasoning, function]))).is_empty());
}

#[test]
fn each_tool_is_counted() {
    let ws = json!({"id": "ws_1", "type": "web_search_call", "status": "completed",
        "action": {"type": "search", "query": "q"}});
    let open = json!({"id": "ws_2", "type": "web_search_call", "status": "completed",
        "action": {"type": "open_page", "url": "https://example.com"}});
    let failed = json!({"id": "ws_3", "type": "web_search_call", "status": "failed"});
    let fs = json!({"id": "fs_1", "type": "file_search_call", "status": "completed",
        "queries": ["a", "b"], "results": null});
    let u = read(with_output(json!([ws, open, failed, fs.clone(), fs])));
    assert_eq!(
        u,
        ToolUsage {
            web_search_calls: 3,
            file_search_calls: 2,
            ..ToolUsage::default()
        }
    );
}

#[test]
fn containers_are_counted_once_each() {
    let ci = |container: Value| {
        json!({"type": "code_interpreter_call", "status": "completed",
        "code": "print(1)", "container_id": container})
    };
    let u = read(with_output(json!([
        ci(json!("cntr_a")),
        ci(json!("cntr_b")),
        ci(json!("cntr_a")),
        ci(json!("cntr_c")),
        ci(json!("cntr_b")),
        // No container, or not a string: nothing.
        ci(json!("")),
        ci(Value::Null),
        ci(json!(7)),
        ci(json!(["cntr_d"])),
        {"type": "code_interpreter_call", "status": "completed"},
    ])));
    assert_eq!(u.code_containers, 3, "{u:?}");
    assert_eq!(u.web_search_calls + u.file_search_calls + u.images, 0);
}

#[test]
fn images_are_priced_by_quality_and_size() {
    let img = |quality: Value, size: Value| {
        json!({"type": "image_generation_call",
        "status": "completed", "result": "aGVsbG8=", "quality": quality, "size": size})
    };
    let cases = [
        ("low", "1024x1024", 11_000),
        ("low", "1024x1536", 16_000),
        ("low", "1536x1024", 16_000),
        ("medium", "1024x1024", 42_000),
        ("medium", "1024x1536", 63_000),
        ("medium", "1536x1024", 63_000),
        ("high", "1024x1024", 167_000),
        ("high", "1024x1536", 250_000),
        ("high", "1536x1024", 250_000),
        // Unknown quality: medium of that size; unknown size: that quality at 1024x1024.
        ("auto", "1024x1536", 63_000),
        ("ultra", "1536x1024", 63_000),
        ("high", "auto", 167_000),
        ("low", "512x512", 11_000),
        ("auto", "auto", 42_000),
    ];
    let mut items = Vec::new();
    let mut total = 0;
    for (quality, size, micro) in cases {
        let u = read(with_output(json!([img(json!(quality), json!(size))])));
        assert_eq!(
            (u.images, u.image_fee_microusd),
            (1, micro),
            "{quality} {size}"
        );
        items.push(img(json!(quality), json!(size)));
        total += micro;
    }
    // Missing or non-string quality and size: medium, 1024x1024.
    items.push(json!({"type": "image_generation_call", "status": "completed"}));
    items.push(img(json!(3), json!({"w": 1024})));
    total += 2 * 42_000;
    // A failed generation is no image.
    items.push(json!({"type": "image_generation_call", "status": "failed", "quality": "high"}));
    let u = read(with_output(Value::Array(items)));
    assert_eq!(
        (u.images, u.image_fee_microusd),
        (cases.len() as i64 + 2, total)
    );
}

#[test]
fn configured_image_prices_are_used() {
    let pricing: ToolPricing = serde_json::from_value(json!({
        "image_generation": {"high": {"1024x1536": 1.5}}, "web_search": 5.0}))
    .unwrap();
    let prices = pricing.prices();
    assert_eq!(prices.web_search, 5.0);
    assert_eq!(prices.file_search, ToolPrices::BUILTIN.file_search);
    assert_eq!(prices.image_generation.high.portrait, 1.5);
    assert_eq!(prices.image_generation.high.landscape, 0.25);
    let response = with_output(json!([
        {"type": "image_generation_call", "quality": "high", "size": "1024x1536"},
        {"type": "image_generation_call", "quality": "high", "size": "1536x1024"},
    ]));
    let u = ToolUsage::from_response(&response, &prices.image_generation);
    assert_eq!(u.image_fee_microusd, 1_750_000);
}

#[test]
fn tool_pricing_problems_name_the_key() {
    let pricing: ToolPricing = serde_json::from_value(json!({
        "file_search": -1.0, "image_generation": {"low": {"1536x1024": -0.5}}}))
    .unwrap();
    let keys: Vec<String> = pricing
        .problems()
        .into_iter()
        .map(|(k, _)| k.join("."))
        .collect();
    assert_eq!(keys, ["file_search", "image_generation.low.1536x1024"]);
    assert!(ToolPricing::default().problems().is_empty());
    assert_eq!(ToolPricing::default().prices(), ToolPrices::BUILTIN);
    let typo = serde_json::from_value::<ToolPricing>(json!({"image_generation": {"ultra": {}}}));
    assert!(typo.is_err());
}

#[test]
fn web_search_preview_is_read_from_the_tools() {
    let calls = json!([{"type": "web_search_call"}, {"type": "web_search_call"}]);
    let with_tools = |tools: Value| {
        let mut r = with_output(calls.clone());
        r["tools"] = tools;
        read(r)
    };
    let preview = with_tools(json!([{"type": "web_search_preview"}]));
    assert_eq!(
        (preview.web_search_calls, preview.web_search_preview_calls),
        (2, 2)
    );
    let dated =
        with_tools(json!([{"type": "web_search_preview_2025_03_11"}, {"type": "function"}]));
    assert_eq!(dated.web_search_preview_calls, 2);
    for tools in [
        json!([{"type": "web_search"}]),
        json!([{"type": "web_search_2025_08_26"}]),
        json!([{"type": "web_search_preview"}, {"type": "web_search"}]),
        json!([]),
        json!([{"type": "file_search"}]),
        json!({"type": "web_search_preview"}),
        json!("web_search_preview"),
        json!(["web_search_preview"]),
        Value::Null,
    ] {
        let u = with_tools(tools.clone());
        assert_eq!(
            (u.web_search_calls, u.web_search_preview_calls),
            (2, 0),
            "{tools}"
        );
    }
}

#[test]
fn service_tiers_are_read_and_priced() {
    use crate::pricing::ServiceTier;
    let tier = |v: Value| service_tier(&json!({"service_tier": v})).map(str::to_owned);
    assert_eq!(tier(json!("flex")).as_deref(), Some("flex"));
    assert_eq!(tier(json!("priority")).as_deref(), Some("priority"));
    assert_eq!(tier(json!("default")).as_deref(), Some("default"));
    assert_eq!(
        tier(json!("some_new-tier2")).as_deref(),
        Some("some_new-tier2")
    );
    for junk in [
        json!(null),
        json!(1),
        json!(["flex"]),
        json!(""),
        json!("x".repeat(33)),
        json!("fl ex"),
        json!("flëx"),
    ] {
        assert_eq!(tier(junk.clone()), None, "{junk}");
    }
    assert_eq!(service_tier(&json!([1])), None);
    assert_eq!(ServiceTier::of(Some("flex")), ServiceTier::Flex);
    assert_eq!(ServiceTier::of(Some("priority")), ServiceTier::Priority);
    for standard in [
        Some("default"),
        Some("auto"),
        Some("scale"),
        Some("turbo"),
        None,
    ] {
        assert_eq!(
            ServiceTier::of(standard),
            ServiceTier::Standard,
            "{standard:?}"
        );
    }
}

#[test]
fn malformed_responses_count_nothing() {
    for junk in [
        Value::Null,
        json!(42),
        json!("output"),
        json!([{"type": "web_search_call"}]),
        json!({"output": {"type": "web_search_call"}}),
        json!({"output": "web_search_call"}),
        json!({"output": null}),
        json!({"output": [null, 1, "web_search_call", [{"type": "web_search_call"}],
                          {"type": ["web_search_call"]}, {"type": null}, {"kind": "web_search_call"},
                          {"type": "WEB_SEARCH_CALL"}]}),
    ] {
        assert!(read(junk.clone()).is_empty(), "{junk}");
    }
}

#[test]
fn sums_saturate() {
    let mut a = ToolUsage {
        web_search_calls: i64::MAX,
        image_fee_microusd: i64::MAX - 1,
        ..ToolUsage::default()
    };
    a.add(&ToolUsage {
        web_search_calls: 1,
        image_fee_microusd: 5,
        images: 2,
        ..ToolUsage::default()
    });
    assert_eq!(
        (a.web_search_calls, a.image_fee_microusd, a.images),
        (i64::MAX, i64::MAX, 2)
    );
    assert_eq!(microusd(f64::NAN), 0);
    assert_eq!(microusd(-1.0), 0);
    assert_eq!(microusd(1e300), i64::MAX);
}

/// Any JSON value: scalars, and arrays and objects of them, nested a few levels, with the
/// keys and words a response uses so the reader's branches are reached.
fn any_json() -> impl Strategy<Value = Value> {
    let word = prop_oneof![
        Just("web_search_call".to_string()),
        Just("file_search_call".to_string()),
        Just("code_interpreter_call".to_string()),
        Just("image_generation_call".to_string()),
        Just("web_search_preview".to_string()),
        Just("failed".to_string()),
        Just("high".to_string()),
        Just("1024x1536".to_string()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        word.clone().prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("output".to_string()),
        Just("tools".to_string()),
        Just("type".to_string()),
        Just("status".to_string()),
        Just("container_id".to_string()),
        Just("quality".to_string()),
        Just("size".to_string()),
        Just("service_tier".to_string()),
        ".{0,6}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// No JSON makes the reader panic, and what it reads is bounded by the items it saw.
    #[test]
    fn arbitrary_json_never_panics(response in any_json()) {
        let u = read(response.clone());
        let items = response.get("output").and_then(Value::as_array).map_or(0, Vec::len) as i64;
        prop_assert!(u.web_search_calls + u.file_search_calls + u.code_containers + u.images <= items);
        prop_assert!((0..=u.web_search_calls).contains(&u.web_search_preview_calls));
        prop_assert!(u.image_fee_microusd >= 0 && u.image_fee_microusd <= u.images * 250_000);
        let _ = service_tier(&response);
    }

    /// Arbitrary items inside a response-shaped object: same guarantees.
    #[test]
    fn arbitrary_items_never_panic(items in prop::collection::vec(any_json(), 0..16), tools in any_json()) {
        let response = json!({"output": items.clone(), "tools": tools});
        let u = read(response);
        prop_assert!(u.web_search_calls + u.file_search_calls + u.code_containers + u.images <= items.len() as i64);
        prop_assert!((0..=u.web_search_calls).contains(&u.web_search_preview_calls));
    }
}
