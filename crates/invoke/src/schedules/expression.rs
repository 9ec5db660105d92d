//! Schedule expressions and their slots: `rate(N unit)`, the EventBridge
//! `cron(min hour dom month dow year)` form and the standard 5-field cron, read in an
//! IANA time zone. Pure: every call takes the time it works from.
//!
//! Parsing and the calendar search are croner's; what is ours is the EventBridge
//! dialect on top. `cron(…)` is handed to croner as a 7-field pattern (seconds 0, then
//! the six fields) in Quartz weekday mode, where 1-7 is SUN-SAT as in EventBridge
//! (Unix cron's 0-6 is SUN-SAT, and 7 is SUN again); `L`, `W`, `#` and `?` mean what
//! they mean there. As EventBridge requires, exactly one of day-of-month and
//! day-of-week is `?`, so the two never combine. `rate` takes EventBridge's rule on
//! number: `rate(1 minute)`, `rate(5 minutes)`; `rate(1 minutes)` is an error, as it
//! is there, so an expression means the same on both.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The longest expression taken, as EventBridge's `ScheduleExpression`.
pub const EXPRESSION_MAX: usize = 256;
/// Slots counted one by one at most when a cron schedule skips a long stretch.
const COUNT_MAX: u64 = 100_000;
/// Times croner may hand back a slot that is not after the asked time (a wall-clock
/// time repeated when daylight saving ends) before the search gives up.
const RETRIES_MAX: usize = 10_000;

/// Why an expression or time zone is refused; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    #[error("invalid rate expression '{expression}': {reason}")]
    Rate { expression: String, reason: String },
    #[error("invalid cron expression '{expression}': {reason}")]
    Cron { expression: String, reason: String },
    #[error("an expression is at most {EXPRESSION_MAX} characters; got {0}")]
    TooLong(usize),
    #[error("unknown timezone '{0}': use an IANA name such as UTC or Europe/Berlin")]
    Timezone(String),
}

/// A parsed expression with its zone.
#[derive(Debug, Clone)]
pub enum Expression {
    /// Every `period_ms`, counted from the schedule's anchor.
    Rate {
        period_ms: i64,
    },
    Cron {
        cron: Box<Cron>,
        tz: Tz,
    },
}

/// Slots skipped, from a schedule's next slot up to a cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// How many (at least this many when `capped`).
    pub count: u64,
    pub capped: bool,
    /// The last slot before the cutoff (or the cutoff less 1 ms when `capped`).
    pub last_ms: i64,
    /// The first slot at or after the cutoff.
    pub next_ms: Option<i64>,
}

impl Expression {
    /// Parses `expression`, its cron fields read in `timezone` (UTC when `None`; a rate
    /// does not depend on the zone, but it must still be a known one).
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Expression, ExpressionError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => {
                Tz::from_str(name).map_err(|_| ExpressionError::Timezone(name.to_string()))?
            }
        };
        if expression.len() > EXPRESSION_MAX {
            return Err(ExpressionError::TooLong(expression.len()));
        }
        let text = expression.trim();
        if let Some(inner) = wrapped(text, "rate") {
            return parse_rate(expression, inner);
        }
        let cron_err = |reason: String| ExpressionError::Cron {
            expression: expression.to_string(),
            reason,
        };
        let eventbridge = wrapped(text, "cron");
        let pattern = if let Some(inner) = eventbridge {
            eventbridge_pattern(inner).map_err(cron_err)?
        } else {
            let fields = text.split_whitespace().count();
            if fields != 5 && !text.starts_with('@') {
                return Err(cron_err(format!(
                    "a cron expression has 5 fields (minute hour day-of-month month \
                     day-of-week), or write cron(…) with EventBridge's 6 or rate(…); got {fields}"
                )));
            }
            text.to_string()
        };
        let parser = if eventbridge.is_some() {
            CronParser::builder()
                .seconds(Seconds::Required)
                .year(Year::Required)
                .alternative_weekdays(true)
                .build()
        } else {
            CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build()
        };
        let cron = parser
            .parse(&pattern)
            .map_err(|e| cron_err(e.to_string()))?;
        Ok(Expression::Cron {
            cron: Box::new(cron),
            tz,
        })
    }

    /// The first slot strictly after `after_ms`. A rate's slots are `anchor_ms + k ×
    /// period` for k ≥ 1. `None`: there is no later slot (a year field in the past).
    pub fn next_after(&self, anchor_ms: i64, after_ms: i64) -> Option<i64> {
        match self {
            Expression::Rate { period_ms } => {
                let k = if after_ms < anchor_ms {
                    1
                } else {
                    (after_ms - anchor_ms).div_euclid(*period_ms) + 1
                };
                let slot = anchor_ms.checked_add(k.checked_mul(*period_ms)?)?;
                // A slot no date can name (past year 262143) is no slot.
                Utc.timestamp_millis_opt(slot).single().map(|_| slot)
            }
            Expression::Cron { cron, tz } => {
                let mut from: DateTime<Tz> = Utc
                    .timestamp_opt(after_ms.div_euclid(1000), 0)
                    .single()?
                    .with_timezone(tz);
                // A slot in the hour that repeats when daylight saving ends can come
                // back earlier than asked (croner returns the first of the two
                // instants); step on from it until the slot is later.
                for _ in 0..RETRIES_MAX {
                    let slot = cron.find_next_occurrence(&from, false).ok()?;
                    if slot.timestamp_millis() > after_ms {
                        return Some(slot.timestamp_millis());
                    }
                    from = slot;
                }
                None
            }
        }
    }

    /// The slots from `from_ms` (a slot) up to, not including, `cutoff_ms`.
    pub fn skip_before(&self, anchor_ms: i64, from_ms: i64, cutoff_ms: i64) -> Skipped {
        match self {
            Expression::Rate { period_ms } => {
                let next = self.next_after(anchor_ms, cutoff_ms - 1);
                let end = next.unwrap_or(cutoff_ms);
                let count = u64::try_from((end - from_ms).div_euclid(*period_ms)).unwrap_or(0);
                Skipped {
                    count,
                    capped: false,
                    last_ms: end - period_ms,
                    next_ms: next,
                }
            }
            Expression::Cron { .. } => {
                let (mut count, mut last, mut slot) = (0, from_ms, Some(from_ms));
                while let Some(s) = slot.filter(|s| *s < cutoff_ms) {
                    if count == COUNT_MAX {
                        return Skipped {
                            count,
                            capped: true,
                            last_ms: cutoff_ms - 1,
                            next_ms: self.next_after(anchor_ms, cutoff_ms - 1),
                        };
                    }
                    count += 1;
                    last = s;
                    slot = self.next_after(anchor_ms, s);
                }
                Skipped {
                    count,
                    capped: false,
                    last_ms: last,
                    next_ms: slot,
                }
            }
        }
    }
}

/// The text inside `name(…)`, if `text` is that form.
fn wrapped<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(name)?.trim_start().strip_prefix('(')?;
    Some(rest.strip_suffix(')')?.trim())
}

fn parse_rate(expression: &str, inner: &str) -> Result<Expression, ExpressionError> {
    let err = |reason: &str| ExpressionError::Rate {
        expression: expression.to_string(),
        reason: reason.to_string(),
    };
    let (value, unit) = match inner.split_whitespace().collect::<Vec<_>>()[..] {
        [value, unit] => (value, unit),
        _ => return Err(err("write rate(VALUE UNIT), e.g. rate(5 minutes)")),
    };
    let n: i64 = value
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| err("the value must be a whole number of at least 1"))?;
    let (singular, unit_ms) = match unit.to_ascii_lowercase().as_str() {
        "second" => (true, 1_000),
        "seconds" => (false, 1_000),
        "minute" => (true, 60_000),
        "minutes" => (false, 60_000),
        "hour" => (true, 3_600_000),
        "hours" => (false, 3_600_000),
        "day" => (true, 86_400_000),
        "days" => (false, 86_400_000),
        _ => {
            return Err(err(
                "the unit must be second(s), minute(s), hour(s) or day(s)",
            ))
        }
    };
    if singular != (n == 1) {
        return Err(err(
            "the unit is singular for a value of 1 and plural above it (rate(1 minute), rate(5 minutes)), as in EventBridge",
        ));
    }
    let period_ms = n
        .checked_mul(unit_ms)
        .ok_or_else(|| err("the period is too long"))?;
    Ok(Expression::Rate { period_ms })
}

/// croner's 7-field pattern for the six fields of EventBridge's `cron(…)`.
fn eventbridge_pattern(inner: &str) -> Result<String, String> {
    let fields: Vec<&str> = inner.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "cron(…) has 6 fields (minutes hours day-of-month month day-of-week year); got {}",
            fields.len()
        ));
    }
    let (dom, dow) = (fields[2], fields[4]);
    if (dom == "?") == (dow == "?") {
        return Err(
            "exactly one of day-of-month and day-of-week must be '?' (EventBridge cron)".into(),
        );
    }
    Ok(format!("0 {}", fields.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ms of a UTC time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("a valid UTC time")
            .timestamp_millis()
    }

    fn next(expr: &str, tz: Option<&str>, after: i64) -> Option<i64> {
        Expression::parse(expr, tz)
            .expect(expr)
            .next_after(0, after)
    }

    fn refused(expr: &str) -> String {
        Expression::parse(expr, None).expect_err(expr).to_string()
    }

    #[test]
    fn rate_slots_are_counted_from_the_anchor() {
        let e = Expression::parse("rate(1 second)", None).expect("parses");
        let anchor = 10_000;
        assert_eq!(
            e.next_after(anchor, 0),
            Some(11_000),
            "one period after the anchor"
        );
        assert_eq!(e.next_after(anchor, 11_000), Some(12_000), "strictly after");
        assert_eq!(e.next_after(anchor, 11_500), Some(12_000));
        let e = Expression::parse("rate(5 minutes)", None).expect("parses");
        assert_eq!(e.next_after(0, 1), Some(300_000));
        assert!(Expression::parse("rate(2 days)", Some("Asia/Tokyo")).is_ok());
        assert!(Expression::parse("rate( 1 hour )", None).is_ok());
    }

    #[test]
    fn expressions_are_bounded_in_length_and_slots_in_time() {
        let long = format!("cron({} * * ? *)", vec!["0"; 200].join(","));
        assert!(refused(&long).contains("at most 256 characters"));
        // The period parses, but its first slot is past any date: no slot.
        let far = Expression::parse("rate(99999999999 days)", None).expect("parses");
        assert_eq!(far.next_after(0, 0), None);
        assert!(refused("rate(999999999999 days)").contains("too long"));
    }

    #[test]
    fn rate_follows_eventbridge_number_rules() {
        assert!(refused("rate(1 minutes)").contains("singular for a value of 1"));
        assert!(refused("rate(5 minute)").contains("plural"));
        assert!(refused("rate(0 minutes)").contains("at least 1"));
        assert!(refused("rate(-1 minutes)").contains("at least 1"));
        assert!(refused("rate(1.5 minutes)").contains("whole number"));
        assert!(refused("rate(5 weeks)").contains("second(s), minute(s), hour(s) or day(s)"));
        assert!(refused("rate(5)").contains("rate(VALUE UNIT)"));
    }

    #[test]
    fn standard_cron_has_five_fields_and_unix_weekdays() {
        // Every Monday (Unix 1) at 09:30 UTC; 2026-12-07 is a Monday.
        let after = utc(2026, 12, 7, 9, 30, 0);
        assert_eq!(
            next("30 9 * * 1", None, after),
            Some(utc(2026, 12, 14, 9, 30, 0))
        );
        assert_eq!(next("30 9 * * MON", None, after - 1), Some(after));
        // 0 and 7 are both Sunday.
        let sunday = utc(2026, 12, 13, 0, 0, 0);
        assert_eq!(next("0 0 * * 0", None, after), Some(sunday));
        assert_eq!(next("0 0 * * 7", None, after), Some(sunday));
        // Day-of-month and day-of-week both set: either matches, as in Vixie cron.
        // 2026-12-11 is a Friday, before the 13th.
        assert_eq!(
            next("0 0 13 * 5", None, after),
            Some(utc(2026, 12, 11, 0, 0, 0))
        );
        assert_eq!(
            next("0 0 13 * 5", None, utc(2026, 12, 11, 0, 0, 0)),
            Some(utc(2026, 12, 13, 0, 0, 0))
        );
        assert!(refused("* * * *").contains("5 fields"));
        assert!(
            refused("0 0 * * * *").contains("got 6"),
            "seconds are not taken"
        );
        assert!(refused("61 * * * *").contains("invalid cron expression '61 * * * *'"));
    }

    #[test]
    fn eventbridge_cron_numbers_weekdays_from_sunday_as_1() {
        let monday = utc(2026, 12, 7, 0, 0, 0);
        // EventBridge 2 is MON (Unix would read it as TUE).
        assert_eq!(
            next("cron(0 12 ? * 2 *)", None, monday),
            Some(utc(2026, 12, 7, 12, 0, 0))
        );
        assert_eq!(
            next("cron(0 12 ? * MON *)", None, monday),
            Some(utc(2026, 12, 7, 12, 0, 0))
        );
        // 1 is SUN, 7 is SAT.
        assert_eq!(
            next("cron(0 0 ? * 1 *)", None, monday),
            Some(utc(2026, 12, 13, 0, 0, 0))
        );
        assert_eq!(
            next("cron(0 0 ? * 7 *)", None, monday),
            Some(utc(2026, 12, 12, 0, 0, 0))
        );
        assert_eq!(
            next("cron(15 10 ? * 6L 2027)", None, monday),
            Some(utc(2027, 1, 29, 10, 15, 0)),
            "6L: the last Friday of the month"
        );
        assert_eq!(
            next("cron(0 8 ? * 2#1 *)", None, monday),
            Some(utc(2026, 12, 7, 8, 0, 0)),
            "2#1: the first Monday of the month (December 1st is a Tuesday)"
        );
        assert_eq!(
            next("cron(0 0 L * ? *)", None, monday),
            Some(utc(2026, 12, 31, 0, 0, 0)),
            "L: the last day of the month"
        );
        // 15W: the weekday nearest the 15th; 2027-05-15 is a Saturday, so Friday 14th.
        assert_eq!(
            next(
                "cron(0 9 15W * ? 2027)",
                Some("UTC"),
                utc(2027, 5, 1, 0, 0, 0)
            ),
            Some(utc(2027, 5, 14, 9, 0, 0))
        );
    }

    #[test]
    fn eventbridge_cron_needs_six_fields_and_one_question_mark() {
        assert!(refused("cron(0 12 * * ?)").contains("6 fields"));
        assert!(refused("cron(0 12 * * * *)").contains("exactly one of day-of-month"));
        assert!(refused("cron(0 12 ? * ? *)").contains("exactly one of day-of-month"));
        assert!(refused("cron(0 25 * * ? *)").contains("invalid cron expression"));
    }

    #[test]
    fn the_year_field_limits_slots() {
        let now = utc(2026, 12, 7, 0, 0, 0);
        assert_eq!(
            next("cron(0 0 1 1 ? 2028)", None, now),
            Some(utc(2028, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            next("cron(0 0 1 1 ? 2001)", None, now),
            None,
            "no slot left"
        );
        assert_eq!(
            next("cron(0 0 1 1 ? 2027-2029)", None, utc(2029, 1, 1, 0, 0, 0)),
            None
        );
    }

    #[test]
    fn february_29_comes_every_leap_year() {
        let e = Expression::parse("0 12 29 2 *", None).expect("parses");
        let first = e.next_after(0, utc(2026, 12, 7, 0, 0, 0));
        assert_eq!(first, Some(utc(2028, 2, 29, 12, 0, 0)));
        assert_eq!(
            e.next_after(0, utc(2028, 2, 29, 12, 0, 0)),
            Some(utc(2032, 2, 29, 12, 0, 0))
        );
    }

    #[test]
    fn cron_fields_are_read_in_the_time_zone() {
        // 09:00 in Berlin is 08:00 UTC in winter.
        assert_eq!(
            next(
                "0 9 * * *",
                Some("Europe/Berlin"),
                utc(2026, 12, 7, 0, 0, 0)
            ),
            Some(utc(2026, 12, 7, 8, 0, 0))
        );
        assert!(matches!(
            Expression::parse("0 9 * * *", Some("Mars/Olympus")),
            Err(ExpressionError::Timezone(_))
        ));
        assert!(matches!(
            Expression::parse("rate(1 minute)", Some("CET+1")),
            Err(ExpressionError::Timezone(_))
        ));
    }

    #[test]
    fn a_time_skipped_when_daylight_saving_starts_fires_after_the_gap() {
        // New York, 2027-03-14: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let e = Expression::parse("30 2 * * *", Some("America/New_York")).expect("parses");
        let before = utc(2027, 3, 14, 5, 0, 0); // 00:00 EST
        let slot = e.next_after(0, before).expect("a slot");
        assert_eq!(
            slot,
            utc(2027, 3, 14, 7, 0, 0),
            "03:00 EDT, the first time after the gap"
        );
        // The day after, 02:30 EDT again, once.
        assert_eq!(e.next_after(0, slot), Some(utc(2027, 3, 15, 6, 30, 0)));
    }

    #[test]
    fn a_time_repeated_when_daylight_saving_ends_fires_once() {
        // New York, 2027-11-07: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let e = Expression::parse("30 1 * * *", Some("America/New_York")).expect("parses");
        let before = utc(2027, 11, 7, 4, 0, 0); // 00:00 EDT
        let slot = e.next_after(0, before).expect("a slot");
        assert_eq!(
            slot,
            utc(2027, 11, 7, 5, 30, 0),
            "01:30 EDT, the first of the two"
        );
        assert_eq!(
            e.next_after(0, slot),
            Some(utc(2027, 11, 8, 6, 30, 0)),
            "not 01:30 EST"
        );
        // An interval schedule inside the repeated hour keeps moving forward.
        let e = Expression::parse("*/15 * * * *", Some("America/New_York")).expect("parses");
        let mut t = utc(2027, 11, 7, 5, 0, 0); // 01:00 EDT
        for _ in 0..12 {
            let n = e.next_after(0, t).expect("a slot");
            assert!(n > t, "slots only move forward");
            t = n;
        }
    }

    #[test]
    fn skipping_counts_the_slots_before_the_cutoff() {
        let e = Expression::parse("rate(1 second)", None).expect("parses");
        let s = e.skip_before(0, 1_000, 301_000);
        assert_eq!(
            s,
            Skipped {
                count: 300,
                capped: false,
                last_ms: 300_000,
                next_ms: Some(301_000)
            }
        );
        let e = Expression::parse("*/10 * * * *", None).expect("parses");
        let t0 = utc(2026, 12, 7, 0, 0, 0);
        let s = e.skip_before(0, t0, t0 + 3_600_000 + 1);
        assert_eq!(s.count, 7, "00:00 to 01:00 inclusive");
        assert_eq!(
            (s.last_ms, s.next_ms),
            (t0 + 3_600_000, Some(t0 + 4_200_000))
        );
    }
}
