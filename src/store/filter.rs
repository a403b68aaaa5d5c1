//! The list filters' parameters as the API and the pages take them: keyset cursors, `since`
//! (a duration back from now, an RFC 3339 time or unix seconds), and `key=value` metadata
//! pairs. Typed errors name the parameter; the API and the pages word them for their readers.

/// A parameter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("`since` must be a duration (`7d`), an RFC 3339 time or unix seconds, not `{0}`")]
    Since(String),
    #[error("`after` is not a cursor from this API")]
    Cursor,
}

impl FilterError {
    /// The query parameter at fault.
    pub fn param(&self) -> &'static str {
        match self {
            Self::Since(_) => "since",
            Self::Cursor => "after",
        }
    }
}

/// Where a page of the job list ends: the last row's `(created_at, id)`, written
/// `<created_at>-<job id>` (`1764892800000-job_01KBQ…`). Clients pass it back as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

impl Cursor {
    /// The cursor after the row `(created_at, id)`.
    pub fn encode(created_at: i64, id: &str) -> String {
        format!("{created_at}-{id}")
    }

    /// Reads a cursor: 1 to 15 digits, `-`, and a job id in upper-case Crockford base32 (what
    /// `encode` writes, and the API's documented pattern for `after`).
    pub fn decode(c: &str) -> Result<Self, FilterError> {
        let (at, id) = c.split_once('-').ok_or(FilterError::Cursor)?;
        let digits = !at.is_empty() && at.len() <= 15 && at.bytes().all(|b| b.is_ascii_digit());
        let ulid = id.strip_prefix("job_").unwrap_or("");
        let crockford =
            |b: u8| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b));
        let well_formed = ulid.len() == 26
            && ulid.as_bytes()[0] <= b'7'
            && ulid.bytes().all(crockford)
            && crate::job::JobId::parse(id).is_ok();
        if !(digits && well_formed) {
            return Err(FilterError::Cursor);
        }
        Ok(Self {
            created_at: at.parse().map_err(|_| FilterError::Cursor)?,
            id: id.to_string(),
        })
    }
}

/// `key=value` (trimmed; the value may be empty or hold `=`), or `None`.
pub fn parse_metadata_pair(kv: &str) -> Option<(String, String)> {
    let (k, v) = kv.split_once('=')?;
    let k = k.trim();
    (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
}

/// One part of a duration: a number and a unit (humantime's units, every spelling).
macro_rules! duration_part {
    () => {
        "[0-9]{1,9}(nanos|nsec|ns|usec|us|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)"
    };
}
/// Four-digit years that are leap years, as a regex (for `YYYY-02-29`).
macro_rules! leap_year {
    () => {
        "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
    };
}
/// `YYYY-MM-DD` with the days each month has.
macro_rules! date {
    () => {
        concat!(
            "([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])",
            "|[0-9]{4}-(0[13-9]|1[0-2])-(29|30)",
            "|[0-9]{4}-(0[13578]|1[02])-31",
            "|",
            leap_year!(),
            "-02-29)"
        )
    };
}

/// What `since` takes, as a regex that means the same in Rust, ECMAScript and Python: a
/// duration of up to four parts (`7d`, `2h 30m`, `1day`), an RFC 3339 time with the days each
/// month has (so every match parses), or unix seconds. [`parse_since`] holds a value to it
/// before it reads it, so the API's document (which shows it) and the pages agree.
pub const SINCE_PATTERN: &str = concat!(
    "^(",
    duration_part!(),
    "( ?",
    duration_part!(),
    "){0,3}",
    "|",
    date!(),
    "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
    "|[0-9]{1,12})$"
);

/// `since` as unix ms: a duration back from `now_ms`, an RFC 3339 time, or unix seconds (a
/// bare number is seconds, `0` too: not a zero duration). Anything outside [`SINCE_PATTERN`]
/// is refused.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, FilterError> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        #[allow(clippy::expect_used)]
        regex::Regex::new(SINCE_PATTERN).expect("the since pattern")
    });
    if !RE.is_match(s) {
        return Err(FilterError::Since(s.chars().take(60).collect()));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map(|secs| secs.saturating_mul(1000))
            .map_err(|_| FilterError::Since(s.to_string()));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms - crate::clock::ms(d));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| FilterError::Since(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        let id = "job_01KBQ4Y2ZJ3M9W7T0QX5V8R6NC";
        let c = Cursor::encode(1234, id);
        assert_eq!(
            Cursor::decode(&c).unwrap(),
            Cursor {
                created_at: 1234,
                id: id.into()
            }
        );
        for bad in [
            "1234-job_01ABC",
            "-job_01KBQ4Y2ZJ3M9W7T0QX5V8R6NC",
            "1234-job_01kbq4y2zj3m9w7t0qx5v8r6nc",
            "1234-job_81KBQ4Y2ZJ3M9W7T0QX5V8R6NC",
            "1234567890123456-job_01KBQ4Y2ZJ3M9W7T0QX5V8R6NC",
        ] {
            assert_eq!(
                Cursor::decode(bad).unwrap_err(),
                FilterError::Cursor,
                "{bad}"
            );
        }
        assert_eq!(Cursor::decode("!!").unwrap_err(), FilterError::Cursor);
        assert_eq!(FilterError::Cursor.param(), "after");
    }

    #[test]
    fn metadata_pairs() {
        let pair = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
        assert_eq!(parse_metadata_pair("team=ops"), pair("team", "ops"));
        assert_eq!(parse_metadata_pair(" team = ops "), pair("team", "ops"));
        assert_eq!(parse_metadata_pair("url=a=b"), pair("url", "a=b"));
        assert_eq!(parse_metadata_pair("team="), pair("team", ""));
        assert_eq!(parse_metadata_pair("=ops"), None);
        assert_eq!(parse_metadata_pair("team"), None);
    }

    #[test]
    fn since_forms() {
        assert_eq!(
            parse_since("1h", 10_000_000).unwrap(),
            10_000_000 - 3_600_000
        );
        assert_eq!(parse_since("1700000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_since("0", 5_000).unwrap(), 0, "a bare 0 is the epoch");
        assert_eq!(parse_since("1day", 86_400_000).unwrap(), 0);
        assert_eq!(parse_since("2weeks 1d", 15 * 86_400_000).unwrap(), 0);
        assert!(parse_since("30min", 0).is_ok());
        assert!(parse_since("1y", 0).is_ok());
        assert!(parse_since("-5", 0).is_err());
        assert!(parse_since("1.5h", 0).is_err());
        assert!(parse_since("2026-11-01T00:00:00Z", 0).is_ok());
        assert!(parse_since("yesterday", 0).is_err());
    }
}
