//! Turns the validator's errors into [`Violation`]s a person can act on.
//!
//! OpenAI's schemas are full of `anyOf` (a value or null; one of twenty kinds of input item),
//! and a failed `anyOf` is, as raw output, a tree with an error for every branch. What a person
//! needs is the branch they meant:
//!
//! - a branch that fails at the value itself on its JSON type (a number where a string goes),
//!   or on the object's `type` tag (`"input_image"` where the branch is `input_text`), is not
//!   the one meant and is dropped;
//! - of the branches left, the one whose errors reach deepest into the value (it matched the
//!   most before failing) is explained, recursively; ties go to fewer errors, then to the first
//!   branch, which OpenAI lists as the common case;
//! - with no branch left, the value is summarised against the branches' types ("must be a
//!   number or null, not the string `hot`") or tags ("must be one of: `input_text`, …").

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use serde_json::Value;

use super::{Segment, Violation, ViolationKind};

/// The longest message, in characters.
const MAX_MESSAGE: usize = 300;
/// The longest quoted value, in characters.
const MAX_QUOTE: usize = 40;
/// How many allowed values a message lists before `…`.
const MAX_LISTED: usize = 8;

/// The violations behind `errors`, `root` being the validated body.
pub(super) fn violations(root: &Value, errors: &[ValidationError<'_>]) -> Vec<Violation> {
    let mut out = Vec::new();
    for e in errors {
        explain(root, e, &mut out);
    }
    // One violation per field: `allOf` parts can each constrain a field (`top_logprobs` is in
    // two), and one message about it is enough.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|v| seen.insert(v.path.clone()));
    out
}

fn explain(root: &Value, err: &ValidationError<'_>, out: &mut Vec<Violation>) {
    let path = path_of(root, err);
    let instance = err.instance();
    let mut push = |path: Vec<Segment>, kind: ViolationKind, message: String| {
        out.push(Violation {
            path,
            kind,
            message: bounded(message),
        });
    };
    match err.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            explain_choice(root, err, context, out);
        }
        ValidationErrorKind::Type { kind } => push(
            path,
            ViolationKind::InvalidType,
            format!("must be {}, not {}", type_names(kind), describe(instance)),
        ),
        ValidationErrorKind::Required { property } => {
            let mut path = path;
            path.push(Segment::Key(
                property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_string),
            ));
            push(path, ViolationKind::Missing, "is required here".into());
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for key in unexpected {
                let mut path = path.clone();
                path.push(Segment::Key(key.clone()));
                push(
                    path,
                    ViolationKind::InvalidValue,
                    "is not a field OpenAI's API takes here".into(),
                );
            }
        }
        ValidationErrorKind::Enum { options } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must be {}, not {}", one_of(options), describe(instance)),
        ),
        ValidationErrorKind::Constant { expected_value } => push(
            path,
            ViolationKind::InvalidValue,
            format!(
                "must be {}, not {}",
                quote(expected_value),
                describe(instance)
            ),
        ),
        ValidationErrorKind::Minimum { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must be at least {limit}, not {}", scalar(instance)),
        ),
        ValidationErrorKind::Maximum { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must be at most {limit}, not {}", scalar(instance)),
        ),
        ValidationErrorKind::ExclusiveMinimum { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must be greater than {limit}, not {}", scalar(instance)),
        ),
        ValidationErrorKind::ExclusiveMaximum { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must be less than {limit}, not {}", scalar(instance)),
        ),
        ValidationErrorKind::MultipleOf { multiple_of } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must be a multiple of {multiple_of}"),
        ),
        ValidationErrorKind::MinLength { limit } => push(
            path,
            ViolationKind::InvalidValue,
            if *limit == 1 {
                "must not be empty".into()
            } else {
                format!("must be at least {limit} characters long")
            },
        ),
        ValidationErrorKind::MaxLength { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!(
                "must be at most {limit} characters long (it has {})",
                instance.as_str().map_or(0, |s| s.chars().count())
            ),
        ),
        ValidationErrorKind::MinItems { limit } => push(
            path,
            ViolationKind::InvalidValue,
            if *limit == 1 {
                "must not be an empty list".into()
            } else {
                format!("must have at least {limit} items")
            },
        ),
        ValidationErrorKind::MaxItems { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!(
                "must have at most {limit} items (it has {})",
                instance.as_array().map_or(0, Vec::len)
            ),
        ),
        ValidationErrorKind::MinProperties { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must have at least {limit} keys"),
        ),
        ValidationErrorKind::MaxProperties { limit } => push(
            path,
            ViolationKind::InvalidValue,
            format!(
                "must have at most {limit} keys (it has {})",
                instance.as_object().map_or(0, serde_json::Map::len)
            ),
        ),
        ValidationErrorKind::Pattern { pattern } => push(
            path,
            ViolationKind::InvalidValue,
            format!(
                "must match `{pattern}`, and {} does not",
                describe(instance)
            ),
        ),
        ValidationErrorKind::Format { format } => push(
            path,
            ViolationKind::InvalidValue,
            format!("must be a valid {format}"),
        ),
        ValidationErrorKind::UniqueItems => push(
            path,
            ViolationKind::InvalidValue,
            "must not list the same item twice".into(),
        ),
        ValidationErrorKind::PropertyNames { error } => push(
            path,
            ViolationKind::InvalidValue,
            format!(
                "has a key that is not allowed ({})",
                describe(error.instance())
            ),
        ),
        ValidationErrorKind::FalseSchema | ValidationErrorKind::Not { .. } => push(
            path,
            ViolationKind::InvalidValue,
            "is not allowed here".into(),
        ),
        ValidationErrorKind::OneOfMultipleValid { .. } => push(
            path,
            ViolationKind::InvalidValue,
            "matches more than one of the forms OpenAI's API allows here".into(),
        ),
        // The rest (contentEncoding, regex engine limits, a `$ref` that did not resolve) are
        // the validator's own words.
        _ => push(path, ViolationKind::InvalidValue, err.to_string()),
    }
}

/// Explains a failed `anyOf` (or `oneOf`) through the branch the value was meant for.
fn explain_choice(
    root: &Value,
    err: &ValidationError<'_>,
    branches: &[Vec<ValidationError<'static>>],
    out: &mut Vec<Violation>,
) {
    let at = err.instance_path().as_str();
    let candidates: Vec<&Vec<ValidationError<'static>>> = branches
        .iter()
        .filter(|errors| !errors.iter().any(|e| mismatch(e, at)))
        .collect();
    let best = candidates.into_iter().enumerate().max_by(|(i, a), (j, b)| {
        reach_of(a)
            .cmp(&reach_of(b))
            .then(weight_of(b).cmp(&weight_of(a)))
            // `max_by` keeps the last of equals: prefer the earlier branch.
            .then(j.cmp(i))
    });
    if let Some((_, errors)) = best {
        let before = out.len();
        for e in errors {
            explain(root, e, out);
        }
        if out.len() > before {
            return;
        }
    }
    // Every branch is for another type or another kind of object: summarise.
    let path = path_of(root, err);
    let instance = err.instance();
    let mut tags = Vec::new();
    collect_tags(branches, at, &mut tags);
    if instance.get("type").is_some() && !tags.is_empty() {
        let mut path = path;
        path.push(Segment::Key("type".into()));
        out.push(Violation {
            path,
            kind: ViolationKind::InvalidValue,
            message: bounded(format!(
                "must be {}, not {}",
                one_of(&Value::Array(tags)),
                describe(&instance["type"])
            )),
        });
        return;
    }
    let mut types = Vec::new();
    collect_types(branches, at, &mut types);
    let expected = if types.is_empty() {
        "one of the forms OpenAI's API allows here".to_string()
    } else {
        or_list(&types)
    };
    out.push(Violation {
        path,
        kind: ViolationKind::InvalidType,
        message: bounded(format!("must be {expected}, not {}", describe(instance))),
    });
}

/// Whether `e` says its branch is not the one meant for the value at `at`: a wrong JSON type
/// at the value itself, a wrong `type` tag on it, or a nested choice all of whose branches
/// are such.
fn mismatch(e: &ValidationError<'_>, at: &str) -> bool {
    let path = e.instance_path().as_str();
    match e.kind() {
        ValidationErrorKind::Type { .. } => path == at,
        ValidationErrorKind::Constant { .. } | ValidationErrorKind::Enum { .. } => is_tag(path, at),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            path == at
                && context
                    .iter()
                    .all(|errors| errors.iter().any(|e| mismatch(e, at)))
        }
        _ => false,
    }
}

/// Whether `path` is the `type` tag of the object at `at`.
fn is_tag(path: &str, at: &str) -> bool {
    path.strip_prefix(at) == Some("/type")
}

/// How deep into the value a branch's errors reach: the further it matched, the likelier it is
/// the branch meant.
fn reach_of(errors: &[ValidationError<'_>]) -> usize {
    errors.iter().map(reach).max().unwrap_or(0)
}

fn reach(e: &ValidationError<'_>) -> usize {
    let own = e.instance_path().iter().count();
    match e.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            context
                .iter()
                .map(|errors| reach_of(errors))
                .max()
                .unwrap_or(0)
                .max(own)
        }
        _ => own,
    }
}

/// How many leaf errors a branch has.
fn weight_of(errors: &[ValidationError<'_>]) -> usize {
    errors
        .iter()
        .map(|e| match e.kind() {
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => context
                .iter()
                .map(|errors| weight_of(errors))
                .min()
                .unwrap_or(1),
            _ => 1,
        })
        .sum()
}

/// The `type` tags the branches accept for the object at `at`.
fn collect_tags(branches: &[Vec<ValidationError<'static>>], at: &str, out: &mut Vec<Value>) {
    for e in branches.iter().flatten() {
        let path = e.instance_path().as_str();
        match e.kind() {
            ValidationErrorKind::Constant { expected_value } if is_tag(path, at) => {
                push_unique(out, (**expected_value).clone());
            }
            ValidationErrorKind::Enum { options } if is_tag(path, at) => {
                for o in options.as_array().into_iter().flatten() {
                    push_unique(out, o.clone());
                }
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context }
                if path == at =>
            {
                collect_tags(context, at, out);
            }
            _ => {}
        }
    }
}

/// The JSON types the branches accept for the value at `at`.
fn collect_types(branches: &[Vec<ValidationError<'static>>], at: &str, out: &mut Vec<String>) {
    for e in branches.iter().flatten() {
        if e.instance_path().as_str() != at {
            continue;
        }
        match e.kind() {
            ValidationErrorKind::Type { kind } => {
                let names = match kind {
                    TypeKind::Single(t) => vec![type_name(&t.to_string())],
                    TypeKind::Multiple(set) => {
                        set.iter().map(|t| type_name(&t.to_string())).collect()
                    }
                };
                for n in names {
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                collect_types(context, at, out);
            }
            // A branch of the right type that failed on its tag: an object of another kind.
            ValidationErrorKind::Constant { .. } | ValidationErrorKind::Enum { .. } => {}
            _ => {}
        }
    }
}

fn push_unique(out: &mut Vec<Value>, v: Value) {
    if !out.contains(&v) {
        out.push(v);
    }
}

/// The error's instance path, with list indexes told from keys by the value itself (a
/// metadata key `"7"` stays a key).
fn path_of(root: &Value, err: &ValidationError<'_>) -> Vec<Segment> {
    let mut node = Some(root);
    let mut path = Vec::new();
    for seg in err.instance_path().iter() {
        let text = match seg {
            LocationSegment::Property(p) => p.into_owned(),
            LocationSegment::Index(i) => i.to_string(),
        };
        match node {
            Some(Value::Array(items)) => {
                let index = text.parse::<usize>().ok();
                node = index.and_then(|i| items.get(i));
                path.push(index.map_or(Segment::Key(text), Segment::Index));
            }
            Some(Value::Object(map)) => {
                node = map.get(&text);
                path.push(Segment::Key(text));
            }
            _ => {
                node = None;
                path.push(Segment::Key(text));
            }
        }
    }
    path
}

fn type_name(t: &str) -> String {
    match t {
        "string" => "a string",
        "number" => "a number",
        "integer" => "an integer",
        "boolean" => "true or false",
        "null" => "null",
        "array" => "a list",
        "object" => "an object",
        other => other,
    }
    .to_string()
}

fn type_names(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => type_name(&t.to_string()),
        TypeKind::Multiple(set) => or_list(
            &set.iter()
                .map(|t| type_name(&t.to_string()))
                .collect::<Vec<_>>(),
        ),
    }
}

/// `a`, `a or b`, `a, b or c`; null goes last.
fn or_list(items: &[String]) -> String {
    let mut items: Vec<&String> = items.iter().collect();
    items.sort_by_key(|i| i.as_str() == "null");
    match items.as_slice() {
        [] => String::new(),
        [one] => (*one).clone(),
        [init @ .., last] => format!(
            "{} or {last}",
            init.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `` `a` ``, or ``one of: `a`, `b`, `c` `` (at most [`MAX_LISTED`] shown).
fn one_of(options: &Value) -> String {
    let Some(list) = options.as_array() else {
        return quote(options);
    };
    match list.as_slice() {
        [one] => quote(one),
        _ => {
            let mut shown: Vec<String> = list.iter().take(MAX_LISTED).map(quote).collect();
            if list.len() > MAX_LISTED {
                shown.push(format!("… ({} in all)", list.len()));
            }
            format!("one of: {}", shown.join(", "))
        }
    }
}

/// A value in backquotes, cut to [`MAX_QUOTE`] characters.
fn quote(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("`{}`", cut(&text, MAX_QUOTE))
}

/// A number as written, or the value described.
fn scalar(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => describe(other),
    }
}

/// What a value is, for "must be X, not Y".
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {}", cut(&n.to_string(), MAX_QUOTE)),
        Value::String(s) => format!("the string `{}`", cut(s, MAX_QUOTE)),
        Value::Array(items) => match items.len() {
            0 => "an empty list".into(),
            1 => "a list of 1 item".into(),
            n => format!("a list of {n} items"),
        },
        Value::Object(_) => "an object".into(),
    }
}

/// `s` cut to `max` characters (on a character boundary), with `…` when cut; line breaks and
/// other control characters shown as spaces so a message stays on one line.
fn cut(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

fn bounded(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        message
    } else {
        cut(&message, MAX_MESSAGE)
    }
}
