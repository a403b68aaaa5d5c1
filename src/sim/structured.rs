//! Structured outputs in the simulator: an answer that follows the JSON Schema a create asks
//! for (`text.format` of type `json_schema`), built deterministically from the input, as a
//! model in strict mode gives one.

use serde_json::{Map, Value, json};

/// How many schema steps (an object, an array, an `anyOf`, a `$ref`) deep an answer is filled
/// before the rest is left empty: OpenAI allows 10 levels of objects in strict mode, each a
/// few steps; a recursive `$ref` stops here too.
const MAX_DEPTH: usize = 40;
/// How many values one answer holds at most (a recursive schema with wide arrays grows fast).
const MAX_NODES: usize = 5_000;

/// A value that `schema` accepts, made from `topic` (the first line of the input). Covers
/// what strict mode allows: objects, arrays, strings (with `enum`, `const`, `minLength`,
/// `maxLength` and the `date`, `date-time`, `email` and `uri` formats), numbers and integers
/// with bounds, booleans, null, `anyOf`, and `$ref` into `$defs`/`definitions`.
pub(crate) fn example(schema: &Value, topic: &str) -> Value {
    Maker {
        root: schema,
        topic,
        nodes: std::cell::Cell::new(0),
    }
    .make(schema, "answer", 0, 0)
}

struct Maker<'a> {
    root: &'a Value,
    topic: &'a str,
    nodes: std::cell::Cell<usize>,
}

impl Maker<'_> {
    fn make(&self, s: &Value, name: &str, depth: usize, n: usize) -> Value {
        let Some(obj) = s.as_object() else {
            // `true` or `{}`-like: anything goes; a string says the most.
            return json!(self.text(name, n));
        };
        self.nodes.set(self.nodes.get() + 1);
        if depth > MAX_DEPTH || self.nodes.get() > MAX_NODES {
            return Value::Null;
        }
        if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
            return match self.resolve(target) {
                Some(t) => self.make(t, name, depth + 1, n),
                None => Value::Null,
            };
        }
        if let Some(c) = obj.get("const") {
            return c.clone();
        }
        if let Some(values) = obj.get("enum").and_then(Value::as_array)
            && !values.is_empty()
        {
            return values[n % values.len()].clone();
        }
        for group in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(group).and_then(Value::as_array) {
                // The first branch that is not just `null`: an answer says something.
                let branch = list
                    .iter()
                    .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                    .or_else(|| list.first());
                if let Some(b) = branch {
                    return self.make(b, name, depth + 1, n);
                }
            }
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for part in all {
                if let Value::Object(m) = self.make(part, name, depth + 1, n) {
                    merged.extend(m);
                }
            }
            return Value::Object(merged);
        }
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if obj.contains_key("properties") => "object",
            _ if obj.contains_key("items") => "array",
            _ => "string",
        };
        match ty {
            "object" => {
                let mut out = Map::new();
                if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                    for (i, (k, sub)) in props.iter().enumerate() {
                        out.insert(k.clone(), self.make(sub, k, depth + 1, n + i));
                    }
                }
                Value::Object(out)
            }
            "array" => {
                let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = obj
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                let count = 3u64.clamp(min.min(max), max).min(50);
                let items = obj.get("items").cloned().unwrap_or(json!({}));
                let item_name = name.trim_end_matches('s');
                Value::Array(
                    (0..count as usize)
                        .map(|i| self.make(&items, item_name, depth + 1, n + i))
                        .collect(),
                )
            }
            "integer" | "number" => self.number(obj, ty == "integer", n),
            "boolean" => json!(n.is_multiple_of(2)),
            "null" => Value::Null,
            _ => json!(self.string(obj, name, n)),
        }
    }

    fn resolve(&self, target: &str) -> Option<&Value> {
        let pointer = target.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    fn number(&self, obj: &Map<String, Value>, integer: bool, n: usize) -> Value {
        let f = |k: &str| obj.get(k).and_then(Value::as_f64);
        let (min, ex_min) = (f("minimum"), f("exclusiveMinimum"));
        let (max, ex_max) = (f("maximum"), f("exclusiveMaximum"));
        // Between 0.01 and 0.99 of the way: strictly inside the bounds when they are exclusive.
        let frac = ((n * 37 + 11) % 99 + 1) as f64 / 100.0;
        if integer {
            let low = min
                .map(f64::ceil)
                .into_iter()
                .chain(ex_min.map(|m| m.floor() + 1.0))
                .fold(f64::MIN, f64::max);
            let high = max
                .map(f64::floor)
                .into_iter()
                .chain(ex_max.map(|m| m.ceil() - 1.0))
                .fold(f64::MAX, f64::min);
            let low = if low == f64::MIN {
                1.0_f64.min(high)
            } else {
                low
            };
            let high = if high == f64::MAX { low + 100.0 } else { high };
            let v = (low + (high - low).max(0.0) * frac)
                .round()
                .clamp(low, high.max(low));
            return json!(v as i64);
        }
        let low = min.or(ex_min).unwrap_or(1.0);
        let high = max.or(ex_max).unwrap_or(low.max(0.0) + 100.0);
        let span = (high - low).max(0.0);
        let v = low + span * frac;
        // Two decimals read well, unless rounding could reach a bound.
        let rounded = (v * 100.0).round() / 100.0;
        if span >= 1.0 && rounded > low && rounded < high {
            json!(rounded)
        } else {
            json!(v)
        }
    }

    fn string(&self, obj: &Map<String, Value>, name: &str, n: usize) -> String {
        let text = match obj.get("format").and_then(Value::as_str) {
            Some("date") => format!("2026-{:02}-{:02}", n % 12 + 1, n % 28 + 1),
            Some("date-time") => format!("2026-{:02}-{:02}T12:00:00Z", n % 12 + 1, n % 28 + 1),
            Some("email") => format!("{}@example.com", slug(name)),
            Some("uri") => format!("https://example.com/{}/{}", slug(self.topic), n + 1),
            _ => self.text(name, n),
        };
        let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = obj
            .get("maxLength")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |m| m as usize);
        let mut text: String = text.chars().take(max).collect();
        while text.chars().count() < min {
            text.push('.');
        }
        text
    }

    fn text(&self, name: &str, n: usize) -> String {
        let field = name.replace(['_', '-'], " ");
        format!("{} {} for \"{}\"", capitalised(&field), n + 1, self.topic)
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "x".into() } else { out }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn valid(schema: &Value, value: &Value) -> bool {
        jsonschema::validator_for(schema)
            .expect("the schema compiles")
            .is_valid(value)
    }

    #[test]
    fn a_nested_strict_schema_gets_a_matching_answer() {
        let schema = json!({
            "type": "object",
            "properties": {
                "title": {"type": "string", "maxLength": 20},
                "published": {"type": "string", "format": "date"},
                "rating": {"type": "number", "minimum": 0, "maximum": 5},
                "pages": {"type": "integer", "exclusiveMinimum": 10},
                "kind": {"type": "string", "enum": ["novel", "essay"]},
                "open": {"type": "boolean"},
                "author": {"$ref": "#/$defs/person"},
                "reviews": {"type": "array", "minItems": 1, "maxItems": 2,
                            "items": {"type": "object", "properties": {"by": {"$ref": "#/$defs/person"},
                                      "stars": {"type": ["integer", "null"], "minimum": 1, "maximum": 5}},
                                      "required": ["by", "stars"], "additionalProperties": false}},
                "note": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 40}]},
            },
            "required": ["title", "published", "rating", "pages", "kind", "open", "author", "reviews", "note"],
            "additionalProperties": false,
            "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}},
                                 "required": ["name"], "additionalProperties": false}},
        });
        let v = example(&schema, "Dune, the novel");
        assert!(valid(&schema, &v), "{v:#}");
        assert!(v["title"].as_str().unwrap().chars().count() <= 20);
        assert_eq!(v["reviews"].as_array().unwrap().len(), 2);
        assert!(v["note"].as_str().unwrap().contains("Dune"), "{v:#}");
    }

    #[test]
    fn a_recursive_schema_with_wide_arrays_stays_small() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "array", "minItems": 50, "items": {"$ref": "#"}},
            "b": {"type": "array", "minItems": 50, "items": {"$ref": "#"}}},
            "required": ["a", "b"], "additionalProperties": false});
        let v = example(&schema, "wide");
        assert!(v.to_string().len() < 1_000_000, "{}", v.to_string().len());
    }

    #[test]
    fn a_recursive_schema_ends() {
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}}},
            "required": ["name", "children"], "additionalProperties": false});
        let v = example(&schema, "a tree");
        assert!(v["children"][0]["children"].is_array(), "{v:#}");
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({"type": "string"})),
            (0u64..5, 5u64..30)
                .prop_map(|(a, b)| json!({"type": "string", "minLength": a, "maxLength": b})),
            (-50i64..50, 0i64..100).prop_map(
                |(lo, span)| json!({"type": "integer", "minimum": lo, "maximum": lo + span})
            ),
            (-5.0f64..5.0).prop_map(|lo| json!({"type": "number", "minimum": lo})),
            (-5.0f64..5.0, 0.001f64..3.0).prop_map(|(lo, span)| json!({"type": "number", "exclusiveMinimum": lo, "exclusiveMaximum": lo + span})),
            (-50i64..50, 2i64..20).prop_map(|(lo, span)| json!({"type": "integer", "exclusiveMinimum": lo, "exclusiveMaximum": lo + span})),
            Just(json!({"type": "boolean"})),
            Just(json!({"type": ["string", "null"]})),
            Just(json!({"type": "string", "enum": ["a", "b", "c"]})),
            Just(json!({"type": "string", "format": "date-time"})),
        ]
    }

    fn schema() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::btree_map("[a-z_]{1,8}", inner.clone(), 0..6).prop_map(|props| {
                    let required: Vec<&String> = props.keys().collect();
                    json!({"type": "object", "properties": props, "required": required,
                           "additionalProperties": false})
                }),
                (inner.clone(), 0u64..4).prop_map(
                    |(items, min)| json!({"type": "array", "items": items, "minItems": min})
                ),
                prop::collection::vec(inner, 1..3).prop_map(|branches| json!({"anyOf": branches})),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_generated_answer_matches_its_schema(s in schema(), topic in "\\PC{0,40}") {
            let v = example(&s, &topic);
            prop_assert!(valid(&s, &v), "schema {:#}\nvalue {:#}", s, v);
        }
    }
}
