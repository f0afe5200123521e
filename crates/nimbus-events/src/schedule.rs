//! Schedules: cron expressions with seconds and time zones, and fixed rates; and the pure
//! decision of what a scheduler does at start given the last tick it fired.
//!
//! Ticks are instants in milliseconds since the Unix epoch. Rate ticks are multiples of the
//! period since the epoch, so every node and every restart agrees on them. Exactly-once firing
//! rests on the caller persisting the tick it fired in the same transaction as the event it
//! enqueued; [`resume`] then never fires a tick twice.

use chrono::{DateTime, TimeZone, Utc};
use nimbus_core::{Missed, ScheduleExpr};
use std::str::FromStr;
use std::time::Duration;

/// Shortest period a `rate` may have.
pub const MIN_RATE: Duration = Duration::from_secs(1);

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron {
        schedule: Box<cron::Schedule>,
        tz: chrono_tz::Tz,
    },
    Rate(Duration),
}

impl Schedule {
    /// Parse what the manifest declared.
    pub fn new(expr: &ScheduleExpr, timezone: &str) -> Result<Schedule, String> {
        match expr {
            ScheduleExpr::Cron(text) => parse_cron(text, timezone),
            ScheduleExpr::Rate(period) if *period < MIN_RATE => {
                Err(format!("a rate must be at least {MIN_RATE:?}"))
            }
            ScheduleExpr::Rate(period) => Ok(Schedule::Rate(*period)),
        }
    }

    /// The first tick strictly after `after_ms`, if the schedule has one.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Rate(period) => {
                let period = i64::try_from(period.as_millis()).ok()?.max(1);
                Some((after_ms.div_euclid(period) + 1).checked_mul(period)?)
            }
            Schedule::Cron { schedule, tz } => {
                let after: DateTime<Utc> = Utc.timestamp_millis_opt(after_ms).single()?;
                schedule
                    .after(&after.with_timezone(tz))
                    .next()
                    .map(|t| t.timestamp_millis())
            }
        }
    }
}

/// Parse a cron expression of six or seven fields (seconds first) in the IANA zone `timezone`.
pub fn parse_cron(text: &str, timezone: &str) -> Result<Schedule, String> {
    let fields = text.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "expected six or seven fields (seconds minutes hours day-of-month month day-of-week [year]), got {fields}: e.g. \"0 */5 * * * *\" is every five minutes"
        ));
    }
    let schedule = cron::Schedule::from_str(text).map_err(|e| format!("invalid cron: {e}"))?;
    let tz = chrono_tz::Tz::from_str(timezone).map_err(|_| {
        format!("unknown time zone {timezone:?}; use an IANA name like \"Europe/Paris\" or \"UTC\"")
    })?;
    Ok(Schedule::Cron {
        schedule: Box::new(schedule),
        tz,
    })
}

/// Parse `rate(5 minutes)` or `5 minutes` (units: second(s), minute(s), hour(s), day(s)).
pub fn parse_rate(text: &str) -> Result<Duration, String> {
    let inner = text.trim();
    let inner = inner
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(inner);
    let mut parts = inner.split_whitespace();
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "expected a rate like \"5 minutes\" or \"rate(1 hour)\", got {text:?}"
        ));
    };
    let value: u64 = value
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("expected a positive whole number in {text:?}"))?;
    let seconds = match unit.trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}; expected seconds, minutes, hours or days"
            ));
        }
    };
    Ok(Duration::from_secs(value.saturating_mul(seconds)))
}

/// What a scheduler does when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Fire this (missed) tick now, once.
    pub fire_now: Option<i64>,
    /// The next tick to wait for.
    pub next: Option<i64>,
}

/// Given the last tick fired (persisted) and the time now, decide what to fire.
pub fn resume(schedule: &Schedule, last_fired: Option<i64>, now_ms: i64, missed: Missed) -> Resume {
    let next = schedule.next_after(now_ms);
    let Some(last) = last_fired else {
        // A new schedule starts from now: nothing before it was missed.
        return Resume {
            fire_now: None,
            next,
        };
    };
    // The latest tick in (last, now], if any was missed.
    let latest_missed = match schedule {
        Schedule::Rate(period) => {
            let period = (period.as_millis() as i64).max(1);
            let tick = now_ms - now_ms.rem_euclid(period);
            (tick > last).then_some(tick)
        }
        Schedule::Cron { .. } => {
            // Bounded: a cron fires at most once a second, so a long outage is a long walk;
            // past the bound the latest tick found stands for all of them.
            let mut latest = None;
            let mut cursor = last;
            for _ in 0..100_000 {
                match schedule.next_after(cursor) {
                    Some(tick) if tick <= now_ms => {
                        latest = Some(tick);
                        cursor = tick;
                    }
                    _ => break,
                }
            }
            latest
        }
    };
    Resume {
        fire_now: match missed {
            Missed::Skip => None,
            Missed::RunOnce => latest_missed,
        },
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("rate(5 minutes)"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_rate("1 hour"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_rate("2 days"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_rate("30 seconds"), Ok(Duration::from_secs(30)));
        for bad in [
            "5",
            "five minutes",
            "0 minutes",
            "5 fortnights",
            "rate(5 minutes",
            "",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        let five = Schedule::Rate(Duration::from_secs(300));
        assert_eq!(five.next_after(0), Some(5 * MIN));
        assert_eq!(five.next_after(5 * MIN - 1), Some(5 * MIN));
        assert_eq!(five.next_after(5 * MIN), Some(10 * MIN));
    }

    #[test]
    fn cron_with_seconds_and_zones() {
        let every_ten = parse_cron("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(every_ten.next_after(1_000), Some(10_000));
        assert_eq!(every_ten.next_after(10_000), Some(20_000));
        // 09:00 in Paris on 2026-01-15 (UTC+1) is 08:00 UTC.
        let nine_paris = parse_cron("0 0 9 * * *", "Europe/Paris").unwrap();
        let start = Utc
            .with_ymd_and_hms(2026, 1, 15, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let expected = Utc
            .with_ymd_and_hms(2026, 1, 15, 8, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(nine_paris.next_after(start), Some(expected));
        // In July (UTC+2) it is 07:00 UTC.
        let july = Utc
            .with_ymd_and_hms(2026, 7, 15, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let expected = Utc
            .with_ymd_and_hms(2026, 7, 15, 7, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(nine_paris.next_after(july), Some(expected));

        assert!(parse_cron("* * * * *", "UTC").unwrap_err().contains("six"));
        assert!(parse_cron("99 * * * * *", "UTC").is_err());
        assert!(
            parse_cron("0 * * * * *", "Mars/Olympus")
                .unwrap_err()
                .contains("time zone")
        );
    }

    #[test]
    fn resume_fires_each_tick_once() {
        let every_min = Schedule::Rate(Duration::from_secs(60));
        // First start: nothing missed.
        let r = resume(&every_min, None, 10 * MIN + 5, Missed::RunOnce);
        assert_eq!(
            r,
            Resume {
                fire_now: None,
                next: Some(11 * MIN)
            }
        );
        // Restart right after firing tick 10: nothing to fire again.
        let r = resume(&every_min, Some(10 * MIN), 10 * MIN + 500, Missed::RunOnce);
        assert_eq!(
            r,
            Resume {
                fire_now: None,
                next: Some(11 * MIN)
            }
        );
        // Down across ticks 11..=13: run once fires the latest, skip fires none.
        let r = resume(&every_min, Some(10 * MIN), 13 * MIN + 1, Missed::RunOnce);
        assert_eq!(
            r,
            Resume {
                fire_now: Some(13 * MIN),
                next: Some(14 * MIN)
            }
        );
        let r = resume(&every_min, Some(10 * MIN), 13 * MIN + 1, Missed::Skip);
        assert_eq!(
            r,
            Resume {
                fire_now: None,
                next: Some(14 * MIN)
            }
        );
        // A year-long outage is decided without walking every tick.
        let r = resume(&every_min, Some(0), 525_600 * MIN + 7, Missed::RunOnce);
        assert_eq!(r.fire_now, Some(525_600 * MIN));
    }
}
