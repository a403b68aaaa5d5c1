//! Schedules: a job of the jobs file with `schedule:` is a *template*; every tick of its cron
//! makes one job from it. This module owns the syntax (a cron string, or a map with a time
//! zone and the catch-up and overlap policies), the tick arithmetic in the schedule's time
//! zone (daylight saving included, via `croner` and `chrono-tz`), and [`ScheduleSpec::plan`],
//! which decides which due ticks run after a pause. Recording the runs is the store's job,
//! driving them the orchestrator's.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// At most this many missed ticks are run by `catch_up: all`: the most recent ones, oldest
/// first (older ones are counted as skipped).
pub const MAX_CATCH_UP: usize = 100;
/// Missed ticks are counted up to this many (a one-second cron down for a month would
/// otherwise take a while to count).
const MAX_COUNT: u64 = 100_000;

/// What to do with ticks missed while respool was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Skip them: the next run is the next future tick.
    None,
    /// Run the most recent missed tick once.
    #[default]
    Latest,
    /// Run every missed tick, oldest first (at most [`MAX_CATCH_UP`]).
    All,
}

/// What to do with a tick while the previous run of the same schedule is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record the tick as skipped.
    #[default]
    Skip,
    /// Create the run; it waits (pending) until the previous one has finished.
    Queue,
    /// Create and submit the run at once.
    Allow,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Latest => "latest",
            Self::All => "all",
        }
    }
    /// From its name in a jobs file (`none`, `latest`, `all`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "latest" => Self::Latest,
            "all" => Self::All,
            _ => return None,
        })
    }
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Queue => "queue",
            Self::Allow => "allow",
        }
    }
    /// From its name in a jobs file (`skip`, `queue`, `allow`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "skip" => Self::Skip,
            "queue" => Self::Queue,
            "allow" => Self::Allow,
            _ => return None,
        })
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated schedule: built only by [`ScheduleSpec::from_value`] or [`ScheduleSpec::new`],
/// so its cron parses, fires at least once more, and its time zone exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRepr", into = "ScheduleRepr")]
pub struct ScheduleSpec {
    pattern: String,
    cron: Cron,
    timezone: Tz,
    catch_up: CatchUp,
    overlap: Overlap,
}

impl PartialEq for ScheduleSpec {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
            && self.timezone == other.timezone
            && self.catch_up == other.catch_up
            && self.overlap == other.overlap
    }
}

/// How a schedule is stored in a job spec's JSON.
#[derive(Serialize, Deserialize)]
struct ScheduleRepr {
    cron: String,
    timezone: String,
    catch_up: CatchUp,
    overlap: Overlap,
}

impl TryFrom<ScheduleRepr> for ScheduleSpec {
    type Error = String;
    fn try_from(r: ScheduleRepr) -> Result<Self, String> {
        ScheduleSpec::new(&r.cron, &r.timezone, r.catch_up, r.overlap).map_err(|(_, m)| m)
    }
}

impl From<ScheduleSpec> for ScheduleRepr {
    fn from(s: ScheduleSpec) -> Self {
        ScheduleRepr {
            cron: s.pattern,
            timezone: s.timezone.name().to_string(),
            catch_up: s.catch_up,
            overlap: s.overlap,
        }
    }
}

/// Which due ticks to run now, and where the schedule stands afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Ticks to turn into jobs (unix ms), oldest first.
    pub run: Vec<i64>,
    /// Missed ticks skipped by the catch-up policy.
    pub skipped: u64,
    /// The most recent of those.
    pub last_skipped: Option<i64>,
    /// The next tick to handle, after now (`None`: the cron never fires again).
    pub next: Option<i64>,
}

impl ScheduleSpec {
    /// A schedule from its parts; errors name the field (`cron`, `timezone`).
    pub fn new(
        cron: &str,
        timezone: &str,
        catch_up: CatchUp,
        overlap: Overlap,
    ) -> Result<Self, (&'static str, String)> {
        let pattern = cron.trim().to_string();
        let fields = pattern.split_whitespace().count();
        let parsed = if pattern.starts_with('@') || fields == 5 || fields == 6 {
            CronParser::builder()
                .seconds(Seconds::Optional)
                .year(Year::Disallowed)
                .build()
                .parse(&pattern)
                .map_err(|e| e.to_string())
        } else {
            Err(format!("has {fields} fields"))
        };
        let cron = parsed.map_err(|why| {
            (
                "cron",
                format!(
                    "`{pattern}` is not a cron expression ({why}): write 5 fields (minute hour \
                     day-of-month month day-of-week, e.g. `0 6 * * MON`) or 6 with seconds first \
                     (e.g. `*/10 * * * * *`)"
                ),
            )
        })?;
        let timezone: Tz = timezone.trim().parse().map_err(|_| {
            (
                "timezone",
                format!(
                    "`{timezone}` is not an IANA time zone (e.g. `UTC`, `Europe/Paris`, `America/New_York`)"
                ),
            )
        })?;
        let spec = Self {
            pattern,
            cron,
            timezone,
            catch_up,
            overlap,
        };
        if spec.next_after(Utc::now().timestamp_millis()).is_none() {
            return Err((
                "cron",
                format!("`{}` never fires (no such date)", spec.pattern),
            ));
        }
        Ok(spec)
    }

    /// Parses the `schedule:` value of a job: a cron string, or a map
    /// `{cron, timezone, catch_up, overlap}`. Errors name the field (`schedule.cron`, …).
    pub fn from_value(v: &Value) -> Result<Self, (String, String)> {
        let field = |f: &str| format!("schedule.{f}");
        match v {
            Value::String(cron) => Self::new(cron, "UTC", CatchUp::default(), Overlap::default())
                .map_err(|(_, m)| ("schedule".to_string(), m)),
            Value::Object(m) => {
                if let Some(k) = m
                    .keys()
                    .find(|k| !matches!(k.as_str(), "cron" | "timezone" | "catch_up" | "overlap"))
                {
                    return Err((
                        field(k),
                        "is not a schedule key (use `cron`, `timezone`, `catch_up`, `overlap`)"
                            .into(),
                    ));
                }
                let cron = match m.get("cron") {
                    Some(Value::String(c)) => c.as_str(),
                    Some(_) => return Err((field("cron"), "must be a string".into())),
                    None => {
                        return Err((
                            field("cron"),
                            "is required (e.g. `cron: \"0 6 * * MON\"`)".into(),
                        ));
                    }
                };
                let timezone = match m.get("timezone") {
                    None | Some(Value::Null) => "UTC",
                    Some(Value::String(t)) => t.as_str(),
                    Some(_) => return Err((field("timezone"), "must be a string".into())),
                };
                let catch_up = match m.get("catch_up") {
                    None | Some(Value::Null) => CatchUp::default(),
                    Some(v) => v.as_str().and_then(CatchUp::parse).ok_or_else(|| {
                        (
                            field("catch_up"),
                            "must be `none`, `latest` or `all`".into(),
                        )
                    })?,
                };
                let overlap = match m.get("overlap") {
                    None | Some(Value::Null) => Overlap::default(),
                    Some(v) => v.as_str().and_then(Overlap::parse).ok_or_else(|| {
                        (
                            field("overlap"),
                            "must be `skip`, `queue` or `allow`".into(),
                        )
                    })?,
                };
                Self::new(cron, timezone, catch_up, overlap).map_err(|(f, m)| (field(f), m))
            }
            _ => Err((
                "schedule".into(),
                "must be a cron string (e.g. `\"0 6 * * MON\"`) or a map \
                 `{cron, timezone, catch_up, overlap}`"
                    .into(),
            )),
        }
    }

    /// The cron expression as written.
    pub fn cron(&self) -> &str {
        &self.pattern
    }

    /// The IANA time zone the cron is read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    pub fn catch_up(&self) -> CatchUp {
        self.catch_up
    }

    pub fn overlap(&self) -> Overlap {
        self.overlap
    }

    /// A description of the cron in English.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The first tick strictly after `after` (unix ms), in unix ms.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = self.at(after.div_euclid(1000) * 1000)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The first tick at or after `at` (unix ms).
    fn next_from(&self, at: i64) -> Option<i64> {
        let secs = at.div_euclid(1000) + i64::from(at.rem_euclid(1000) != 0);
        let start = self.at(secs * 1000)?;
        self.cron
            .find_next_occurrence(&start, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The ticks at or before `at`, newest first.
    fn ticks_back_from(&self, at: i64) -> impl Iterator<Item = i64> {
        let start = self.at(at.div_euclid(1000) * 1000 + 1000);
        start
            .into_iter()
            .flat_map(|s| self.cron.iter_before(s))
            .map(|t| t.timestamp_millis())
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.with_timezone(&self.timezone))
    }

    /// A tick as a wall-clock time in the schedule's zone, e.g. `2026-03-29T03:00:00+02:00`.
    pub fn local_time(&self, ms: i64) -> Option<String> {
        self.at(ms).map(|t| t.to_rfc3339())
    }

    /// Decides what to do with the ticks due now. `next_due` is the first tick not handled
    /// yet; ticks after `live_from` came due while respool was watching and always run; ticks
    /// at or before it were *missed* (respool was down, or stalled) and follow `catch_up`.
    pub fn plan(&self, next_due: i64, now: i64, live_from: i64) -> Plan {
        let next = self.next_after(now.max(next_due - 1));
        if next_due > now {
            return Plan {
                next: Some(next_due),
                ..Plan::default()
            };
        }
        // Missed ticks: next_due ..= min(live_from, now).
        let missed_end = live_from.min(now);
        let mut missed_count = 0u64;
        let mut t = self.next_from(next_due);
        while let Some(at) = t.filter(|at| *at <= missed_end) {
            missed_count += 1;
            if missed_count >= MAX_COUNT {
                break;
            }
            t = self.next_after(at);
        }
        let keep = match self.catch_up {
            CatchUp::None => 0,
            CatchUp::Latest => 1,
            CatchUp::All => MAX_CATCH_UP,
        };
        let mut recent: Vec<i64> = if missed_count == 0 {
            Vec::new()
        } else {
            self.ticks_back_from(missed_end)
                .take_while(|at| *at >= next_due)
                .take(keep.max(1))
                .collect()
        };
        let newest_missed = recent.first().copied();
        recent.truncate(keep);
        recent.reverse();
        let skipped = missed_count.saturating_sub(recent.len() as u64);
        let last_skipped = if skipped == 0 {
            None
        } else if recent.is_empty() {
            newest_missed
        } else {
            self.ticks_back_from(recent[0] - 1)
                .next()
                .filter(|at| *at >= next_due)
        };
        // Live ticks: after live_from (and not before next_due), up to now.
        let mut run = recent;
        let mut t = self.next_from(next_due.max(live_from + 1));
        while let Some(at) = t.filter(|at| *at <= now) {
            if run.len() >= MAX_CATCH_UP * 2 {
                break;
            }
            run.push(at);
            t = self.next_after(at);
        }
        Plan {
            run,
            skipped,
            last_skipped,
            next,
        }
    }
}

/// A tick as `2026-11-25T06:00:00Z` (for idempotency keys and messages).
pub fn utc_string(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn spec(v: Value) -> ScheduleSpec {
        ScheduleSpec::from_value(&v).unwrap()
    }

    #[test]
    fn cron_string_or_map_with_defaults() {
        let s = spec(json!("0 6 * * MON"));
        assert_eq!(s.timezone(), chrono_tz::UTC);
        assert_eq!(s.catch_up(), CatchUp::Latest);
        assert_eq!(s.overlap(), Overlap::Skip);
        let s = spec(
            json!({"cron": "*/10 * * * * *", "timezone": "Europe/Paris", "catch_up": "all", "overlap": "queue"}),
        );
        assert_eq!(s.timezone(), chrono_tz::Europe::Paris);
        assert_eq!(s.catch_up(), CatchUp::All);
        assert_eq!(s.overlap(), Overlap::Queue);
        assert_eq!(
            s.next_after(ms("2026-01-01T00:00:01Z")),
            Some(ms("2026-01-01T00:00:10Z"))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v: Value| ScheduleSpec::from_value(&v).unwrap_err();
        assert_eq!(err(json!("* * *")).0, "schedule");
        assert!(
            err(json!("* * *")).1.contains("5 fields"),
            "{:?}",
            err(json!("* * *"))
        );
        assert_eq!(err(json!("0 0 0 1 1 * 2030")).0, "schedule");
        assert_eq!(err(json!({"cron": "nope"})).0, "schedule.cron");
        assert_eq!(
            err(json!({"cron": "0 6 * * *", "timezone": "Europe/Pariss"})).0,
            "schedule.timezone"
        );
        assert_eq!(
            err(json!({"cron": "0 6 * * *", "catch_up": "some"})).0,
            "schedule.catch_up"
        );
        assert_eq!(
            err(json!({"cron": "0 6 * * *", "overlap": "maybe"})).0,
            "schedule.overlap"
        );
        assert_eq!(
            err(json!({"cron": "0 6 * * *", "zone": "UTC"})).0,
            "schedule.zone"
        );
        assert_eq!(err(json!({"timezone": "UTC"})).0, "schedule.cron");
        assert_eq!(err(json!(5)).0, "schedule");
        assert!(err(json!("0 0 30 2 *")).1.contains("never fires"));
    }

    #[test]
    fn next_run_across_dst_in_paris() {
        let s = spec(json!({"cron": "30 2 * * *", "timezone": "Europe/Paris"}));
        // Winter: 02:30 CET is 01:30 UTC.
        assert_eq!(
            s.next_after(ms("2026-03-27T12:00:00Z")),
            Some(ms("2026-03-28T01:30:00Z"))
        );
        // 29 March 2026: clocks jump from 02:00 to 03:00, so 02:30 does not exist; the run is
        // the first instant after the gap, 03:00 CEST (01:00 UTC), and only one run that day.
        let spring = s.next_after(ms("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(spring, ms("2026-03-29T01:00:00Z"));
        assert_eq!(
            s.local_time(spring).unwrap(),
            "2026-03-29T03:00:00+02:00".to_string()
        );
        // Summer: 02:30 CEST is 00:30 UTC.
        assert_eq!(s.next_after(spring), Some(ms("2026-03-30T00:30:00Z")));
        // 25 October 2026: 02:30 happens twice (CEST, then CET); the job runs once.
        let s = spec(json!({"cron": "30 2 * * *", "timezone": "Europe/Paris"}));
        let first = s.next_after(ms("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, ms("2026-10-25T00:30:00Z"));
        assert_eq!(s.next_after(first), Some(ms("2026-10-26T01:30:00Z")));
        // A weekly cron at 06:00 local stays at 06:00 local across the change.
        let s = spec(json!({"cron": "0 6 * * MON", "timezone": "Europe/Paris"}));
        assert_eq!(
            s.next_after(ms("2026-03-24T00:00:00Z")),
            Some(ms("2026-03-30T04:00:00Z"))
        );
        assert_eq!(
            s.next_after(ms("2026-03-17T00:00:00Z")),
            Some(ms("2026-03-23T05:00:00Z"))
        );
    }

    #[test]
    fn plan_nothing_due() {
        let s = spec(json!("0 * * * *"));
        let p = s.plan(ms("2026-01-01T01:00:00Z"), ms("2026-01-01T00:30:00Z"), 0);
        assert_eq!(p.run, Vec::<i64>::new());
        assert_eq!(p.next, Some(ms("2026-01-01T01:00:00Z")));
    }

    #[test]
    fn plan_on_time_tick_runs_whatever_the_policy() {
        for c in ["none", "latest", "all"] {
            let s = spec(json!({"cron": "0 * * * *", "catch_up": c}));
            let now = ms("2026-01-01T01:00:00.400Z");
            let p = s.plan(ms("2026-01-01T01:00:00Z"), now, now - 1500);
            assert_eq!(p.run, vec![ms("2026-01-01T01:00:00Z")], "{c}");
            assert_eq!(p.skipped, 0);
            assert_eq!(p.next, Some(ms("2026-01-01T02:00:00Z")));
        }
    }

    #[test]
    fn plan_after_downtime_follows_catch_up() {
        // Hourly; down from before 01:00 until 04:30: 01:00, 02:00, 03:00, 04:00 were missed.
        let now = ms("2026-01-01T04:30:00Z");
        let due = ms("2026-01-01T01:00:00Z");
        let p = spec(json!({"cron": "0 * * * *", "catch_up": "none"})).plan(due, now, now);
        assert_eq!(p.run, Vec::<i64>::new());
        assert_eq!(p.skipped, 4);
        assert_eq!(p.last_skipped, Some(ms("2026-01-01T04:00:00Z")));
        assert_eq!(p.next, Some(ms("2026-01-01T05:00:00Z")));

        let p = spec(json!({"cron": "0 * * * *", "catch_up": "latest"})).plan(due, now, now);
        assert_eq!(p.run, vec![ms("2026-01-01T04:00:00Z")]);
        assert_eq!(p.skipped, 3);
        assert_eq!(p.last_skipped, Some(ms("2026-01-01T03:00:00Z")));

        let p = spec(json!({"cron": "0 * * * *", "catch_up": "all"})).plan(due, now, now);
        assert_eq!(
            p.run,
            vec![
                ms("2026-01-01T01:00:00Z"),
                ms("2026-01-01T02:00:00Z"),
                ms("2026-01-01T03:00:00Z"),
                ms("2026-01-01T04:00:00Z")
            ]
        );
        assert_eq!(p.skipped, 0);
        assert_eq!(p.next, Some(ms("2026-01-01T05:00:00Z")));
    }

    #[test]
    fn plan_all_is_bounded_to_the_most_recent() {
        let s = spec(json!({"cron": "* * * * * *", "catch_up": "all"}));
        let due = ms("2026-01-01T00:00:00Z");
        let now = ms("2026-01-01T01:00:00Z");
        let p = s.plan(due, now, now);
        assert_eq!(p.run.len(), MAX_CATCH_UP);
        assert_eq!(p.run[0], now - 99_000);
        assert_eq!(*p.run.last().unwrap(), now);
        assert!(p.run.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(p.skipped, 3601 - 100);
        assert_eq!(p.last_skipped, Some(now - 100_000));
    }

    #[test]
    fn serde_round_trip() {
        let s =
            spec(json!({"cron": "0 6 * * MON", "timezone": "Europe/Paris", "overlap": "allow"}));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            json!({"cron": "0 6 * * MON", "timezone": "Europe/Paris", "catch_up": "latest", "overlap": "allow"})
        );
        let back: ScheduleSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn utc_strings() {
        assert_eq!(
            utc_string(ms("2026-11-25T06:00:00Z")),
            "2026-11-25T06:00:00Z"
        );
    }
}
