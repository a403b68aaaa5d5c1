//! The API's parameter types. Each one both checks a value and describes itself in the
//! OpenAPI document from the same constants (range, pattern, enum), so what the document says
//! and what the handlers enforce cannot drift apart. A pattern is enforced as written (the
//! server matches it before it parses), so a value the document calls valid parses and one it
//! calls invalid is refused.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};

/// A page size from 1 to `MAX`; `DEFAULT` when left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit<const MAX: i64, const DEFAULT: i64>(i64);

/// The job list's page size.
pub type JobLimit = Limit<100, 20>;
/// The page size of the notification and schedule-run lists.
pub type RowLimit = Limit<500, 100>;

impl<const MAX: i64, const DEFAULT: i64> Limit<MAX, DEFAULT> {
    pub fn get(limit: Option<Self>) -> i64 {
        limit.map_or(DEFAULT, |l| l.0)
    }
}

/// A whole number in a JSON body as JSON Schema's `integer` has it: `30` or `30.0`, within
/// `i64`; a string is refused.
pub fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(Whole { text: false })
}

/// The same in a query string, where every value is text: `30` or `30.0`.
pub fn whole_number_in_query<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(Whole { text: true })
}

/// The visitor of [`whole_number`]; `text`: whether digits in a string count.
struct Whole {
    text: bool,
}

impl serde::de::Visitor<'_> for Whole {
    type Value = i64;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<i64, E> {
        Ok(n)
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<i64, E> {
        i64::try_from(n).map_err(|_| E::custom(format!("{n} is too large")))
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<i64, E> {
        if f.fract() == 0.0 && f.abs() < 9.2e18 {
            Ok(f as i64)
        } else {
            Err(E::custom(format!("{f} is not an integer")))
        }
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<i64, E> {
        if !self.text {
            return Err(E::invalid_type(serde::de::Unexpected::Str(s), &self));
        }
        if let Ok(n) = s.parse::<i64>() {
            return Ok(n);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && !s.contains(['e', 'E', 'i', 'n', 'N']) => self.visit_f64(f),
            _ => Err(E::custom(format!("`{s}` is not an integer"))),
        }
    }
}

impl<'de, const MAX: i64, const DEFAULT: i64> Deserialize<'de> for Limit<MAX, DEFAULT> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = whole_number_in_query(d)?;
        if (1..=MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(serde::de::Error::custom(format!(
                "must be between 1 and {MAX}, not {n}"
            )))
        }
    }
}

impl<const MAX: i64, const DEFAULT: i64> utoipa::PartialSchema for Limit<MAX, DEFAULT> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .maximum(Some(MAX))
            .default(Some(DEFAULT.into()))
            .description(Some(format!("Page size, 1 to {MAX} (default {DEFAULT}).")))
            .into()
    }
}

impl<const MAX: i64, const DEFAULT: i64> utoipa::ToSchema for Limit<MAX, DEFAULT> {}

/// A string parameter held to a pattern: `P` names the pattern and the description.
pub trait Pattern {
    /// An ECMA-262 regular expression, anchored with `^…$`, that also reads the same in Rust's
    /// `regex` and Python's `re` (no look-around, no back-references).
    const PATTERN: &'static str;
    const DESCRIPTION: &'static str;
    const EXAMPLE: &'static str;
    /// Whether an error may quote the value (not a URL: it can carry a password).
    const ECHO: bool = true;
    fn regex() -> &'static Regex;
}

/// A string that matches `P::PATTERN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching<P>(String, std::marker::PhantomData<P>);

impl<P: Pattern> Matching<P> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        if P::regex().is_match(s) {
            Ok(Self(s.to_string(), std::marker::PhantomData))
        } else if P::ECHO {
            // Short, so a huge value does not come back whole.
            let shown: String = s.chars().take(60).collect();
            let more = if shown.len() < s.len() { "…" } else { "" };
            Err(format!("`{shown}{more}` is not {}", P::DESCRIPTION))
        } else {
            Err(format!("the value is not {}", P::DESCRIPTION))
        }
    }
}

impl<'de, P: Pattern> Deserialize<'de> for Matching<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl<P: Pattern> utoipa::PartialSchema for Matching<P> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(P::PATTERN))
            .description(Some(P::DESCRIPTION))
            .examples([serde_json::Value::from(P::EXAMPLE)])
            .into()
    }
}

impl<P: Pattern> utoipa::ToSchema for Matching<P> {}

macro_rules! pattern {
    ($name:ident, $pattern:expr, $description:expr, $example:expr) => {
        pattern!($name, $pattern, $description, $example, true);
    };
    ($name:ident, $pattern:expr, $description:expr, $example:expr, $echo:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name;
        impl Pattern for $name {
            const PATTERN: &'static str = $pattern;
            const DESCRIPTION: &'static str = $description;
            const EXAMPLE: &'static str = $example;
            const ECHO: bool = $echo;
            fn regex() -> &'static Regex {
                static RE: LazyLock<Regex> = LazyLock::new(|| {
                    #[allow(clippy::expect_used)]
                    Regex::new($pattern).expect("a pattern of the API's own")
                });
                &RE
            }
        }
    };
}

/// Blank characters ([`crate::job::spec::BLANK_CLASS`], written out for `concat!`).
macro_rules! blank {
    () => {
        "\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
    };
}

pattern!(
    SincePattern,
    crate::store::filter::SINCE_PATTERN,
    "a duration back from now (`7d`, `2h 30m`, `1day`; up to four parts, each a number and a \
     unit: ns, us, ms, s, m, h, d, w, M, y or their long names), an RFC 3339 time \
     (`2026-11-01T00:00:00Z`) or unix seconds",
    "7d"
);

pattern!(
    CursorPattern,
    "^[0-9]{1,15}-job_[0-7][0-9A-HJKMNP-TV-Z]{25}$",
    "the `next_cursor` of the previous page",
    "1764892800000-job_01KBQ4Y2ZJ3M9W7T0QX5V8R6NC"
);

pattern!(
    MetadataPattern,
    concat!("^[^=]*[^=", blank!(), "][^=]*=[\\s\\S]*$"),
    "a metadata pair `key=value` (the key not blank; the value may be empty or hold `=`)",
    "team=research"
);

/// `since`: when a list or a fold starts.
pub type Since = Matching<SincePattern>;
/// `after`: the job list's keyset cursor.
pub type After = Matching<CursorPattern>;
/// `metadata`: a `key=value` filter.
pub type MetadataPair = Matching<MetadataPattern>;

/// A host-name label that does not start with `xn--` (a punycode label, which must decode),
/// its first character from `$first` when it does not start with `x`.
macro_rules! label {
    ($first:literal) => {
        concat!(
            "(",
            $first,
            "[A-Za-z0-9-]*",
            "|[Xx]([A-Ma-mO-Zo-z0-9-][A-Za-z0-9-]*)?",
            "|[Xx][Nn]([A-Za-z0-9][A-Za-z0-9-]*)?",
            "|[Xx][Nn]-([A-Za-z0-9][A-Za-z0-9-]*)?)"
        )
    };
}

/// One octet of a dotted IPv4 address, without leading zeros (which would read as octal).
macro_rules! octet {
    () => {
        "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    };
}

pattern!(
    UrlPattern,
    concat!(
        "^https?://((",
        label!("[A-WYZa-wyz0-9]"),
        "\\.)*",
        label!("[A-WYZa-wyz]"),
        "|",
        octet!(),
        "(\\.",
        octet!(),
        "){3})",
        "(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?",
        "([/?#][!-~]*)?$"
    ),
    "an http(s) URL with a host name (its last label not a number) or a dotted IPv4 address",
    "https://respool.example.com/webhooks/openai",
    false
);

pattern!(
    NamePattern,
    concat!("^[\\s\\S]*[^", blank!(), "][\\s\\S]*$"),
    "a name that is not blank",
    "respool"
);

pattern!(
    EndpointIdPattern,
    "^[A-Za-z0-9_-]{1,128}$",
    "a webhook endpoint id (letters, digits, `_` and `-`)",
    "we_123"
);

/// A webhook endpoint's URL.
pub type EndpointUrl = Matching<UrlPattern>;
/// A name that is not blank.
pub type Name = Matching<NamePattern>;
/// A webhook endpoint's id.
pub type EndpointId = Matching<EndpointIdPattern>;

/// An event type OpenAI can send to a webhook endpoint
/// ([`crate::contract::EVENT_TYPES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventType(String);

impl EventType {
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if crate::contract::EVENT_TYPES.contains(&s.as_str()) {
            Ok(Self(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{s}` is not an event type OpenAI sends (e.g. `response.completed`)"
            )))
        }
    }
}

impl utoipa::PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(crate::contract::EVENT_TYPES.iter().copied()))
            .examples([serde_json::Value::from("response.completed")])
            .into()
    }
}

impl utoipa::ToSchema for EventType {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::filter::{Cursor, parse_metadata_pair, parse_since};
    use proptest::prelude::*;

    #[test]
    fn whole_numbers_in_json_and_in_query_strings() {
        #[derive(Deserialize)]
        struct J {
            #[serde(deserialize_with = "whole_number")]
            n: i64,
        }
        #[derive(Deserialize)]
        struct Q {
            #[serde(deserialize_with = "whole_number_in_query")]
            n: i64,
        }
        let json = |s: &str| serde_json::from_str::<J>(s).map(|q| q.n);
        assert_eq!(json(r#"{"n": 30}"#).unwrap(), 30);
        assert_eq!(json(r#"{"n": 30.0}"#).unwrap(), 30);
        assert!(json(r#"{"n": 30.5}"#).is_err());
        assert!(
            json(r#"{"n": "30"}"#).is_err(),
            "a string is not an integer in JSON"
        );
        assert!(json(r#"{"n": 1e300}"#).is_err());
        let query = |s: &str| serde_urlencoded::from_str::<Q>(s).map(|q| q.n);
        assert_eq!(query("n=30").unwrap(), 30);
        assert_eq!(query("n=30.0").unwrap(), 30);
        assert!(query("n=true").is_err());
        assert!(query("n=9223372036854775808").is_err());
        assert!(query("n=1e3").is_err());
        assert!(query("n=NaN").is_err());
    }

    /// The blank class the patterns use is the one the job spec checks with, and it is exactly
    /// the characters `is_blank` calls blank.
    #[test]
    fn the_blank_class_is_the_specs() {
        assert_eq!(blank!(), crate::job::spec::BLANK_CLASS);
        let re = Regex::new(&format!("^[{}]$", blank!())).unwrap();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(
                re.is_match(&s),
                crate::job::spec::is_blank(&s),
                "{:#x}",
                c as u32
            );
        }
    }

    #[test]
    fn errors_quote_short_values_only_and_never_a_url() {
        let e = Since::parse(&"x".repeat(5000)).unwrap_err();
        assert!(e.len() < 400, "{e}");
        let e = EndpointUrl::parse("https://user:hunter2@").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn limits_check_their_range() {
        let ok: JobLimit = serde_json::from_str("100").unwrap();
        assert_eq!(JobLimit::get(Some(ok)), 100);
        assert_eq!(JobLimit::get(None), 20);
        assert!(serde_json::from_str::<JobLimit>("0").is_err());
        assert!(serde_json::from_str::<JobLimit>("101").is_err());
        assert!(serde_json::from_str::<RowLimit>("500").is_ok());
        assert!(serde_json::from_str::<RowLimit>("-516").is_err());
    }

    #[test]
    fn since_forms_match_the_pattern() {
        for ok in [
            "7d",
            "2h 30m",
            "1h30m",
            "250ms",
            "1700000000",
            "2026-11-01T00:00:00Z",
            "2024-02-29T23:59:59.123+05:30",
            "2000-02-29T00:00:00Z",
        ] {
            assert!(Since::parse(ok).is_ok(), "{ok}");
            assert!(parse_since(ok, 0).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "yesterday",
            "7 d",
            "2026-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-11-01",
            "2026-11-01t00:00:00z",
            "7d\n",
            "-5",
        ] {
            assert!(Since::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursors_match_the_pattern() {
        let c = Cursor::encode(1_764_892_800_000, "job_01KBQ4Y2ZJ3M9W7T0QX5V8R6NC");
        assert!(After::parse(&c).is_ok(), "{c}");
        assert!(After::parse(CursorPattern::EXAMPLE).is_ok());
        assert!(Cursor::decode(CursorPattern::EXAMPLE).is_ok());
        assert!(After::parse("!!").is_err());
    }

    #[test]
    fn urls_the_pattern_lets_through_parse() {
        for ok in [
            "https://respool.example.com/webhooks/openai",
            "http://127.0.0.1:8080/hook?x=1",
            "http://localhost",
            "https://a-b.c:65535#f",
        ] {
            assert!(EndpointUrl::parse(ok).is_ok(), "{ok}");
            assert!(url::Url::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://x",
            "http://",
            "http://1.2.3.999/",
            "http://a.1",
            "http://a:65536",
            "https://x/ y",
            "http://234.113.203.201:9#\u{85}\u{1b}",
            "https://xn--/",
            "https://a.xn--zz/",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(Name::parse(" x ").is_ok());
        assert!(Name::parse(" \t").is_err());
        assert!(Name::parse("").is_err());
    }

    proptest! {
        /// Whatever the `since` pattern lets through parses: the document never calls a value
        /// valid that the server then refuses.
        #[test]
        fn since_pattern_values_parse(
            parts in proptest::collection::vec((0u64..=999_999_999, prop::sample::select(vec![
                "nanos", "nsec", "ns", "usec", "us", "millis", "msec", "ms", "seconds", "second",
                "secs", "sec", "s", "minutes", "minute", "mins", "min", "m", "hours", "hour", "hrs",
                "hr", "h", "days", "day", "d", "weeks", "week", "wks", "wk", "w", "months", "month",
                "M", "years", "year", "yrs", "yr", "y",
            ])), 1..=4),
            y in 0u32..10_000, m in 1u32..=12, d in 1u32..=31,
            secs in 0u64..999_999_999_999,
        ) {
            let dur = parts.iter().map(|(n, u)| format!("{n}{u}")).collect::<Vec<_>>().join(" ");
            prop_assert!(Since::parse(&dur).is_ok(), "{}", dur);
            prop_assert!(parse_since(&dur, 1_764_892_800_000).is_ok(), "{}", dur);
            let date = format!("{y:04}-{m:02}-{d:02}T12:00:00Z");
            if Since::parse(&date).is_ok() {
                prop_assert!(parse_since(&date, 0).is_ok(), "{}", date);
            } else {
                prop_assert!(chrono::DateTime::parse_from_rfc3339(&date).is_err(), "{}", date);
            }
            prop_assert!(parse_since(&secs.to_string(), 0).is_ok());
        }

        /// Every URL the pattern lets through parses as an http(s) URL with a host.
        #[test]
        fn url_pattern_values_parse(
            host in "([a-zA-Z0-9-]{1,5}\\.){0,2}[a-zA-Z][a-zA-Z0-9-]{0,5}",
            port in proptest::option::of(0u32..=65535),
            path in "(/[a-zA-Z0-9%._~-]{0,8}){0,3}",
        ) {
            let url = format!("https://{host}{}{path}", port.map(|p| format!(":{p}")).unwrap_or_default());
            // Whatever the pattern lets through parses (the pattern may refuse more: a label
            // that starts with `-`, a punycode one).
            if EndpointUrl::parse(&url).is_ok() {
                let parsed = url::Url::parse(&url);
                prop_assert!(parsed.is_ok(), "{} {:?}", url, parsed);
            }
        }

        /// A metadata filter the pattern lets through parses, and one it refuses does not.
        #[test]
        fn metadata_pattern_agrees_with_the_parser(s in "[a= \\t]{0,6}") {
            prop_assert_eq!(MetadataPair::parse(&s).is_ok(), parse_metadata_pair(&s).is_some(), "{:?}", s);
        }
    }
}
