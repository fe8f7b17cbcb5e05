//! Times: `events --since`, `events --type`, `cost --since`, `logs
//! --since` and `--until`.

use crate::near::{config, input, refused_well};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use wrangle_wire::cost::parse_cost_since;
use wrangle_wire::events::{parse_since, parse_type_filter, Since, EVENT_TYPES};
use wrangle_wire::parse::parse_time_or_ago;

const VALID: &[&str] = &[
    "1234",
    "0",
    "2026-12-06T10:00:00Z",
    "2026-12-06T10:00:00.5+02:00",
    "2026-12-06",
    "today",
    "10m",
    "2h",
    "7d",
    "agent.exited",
    "agent.,daemon",
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 15, 30, 0).unwrap()
}

/// Any time chrono can hold, to the nanosecond.
fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (
        -8_000_000_000_000i64..8_000_000_000_000,
        0..1_000_000_000u32,
    )
        .prop_filter_map("a time", |(seconds, nanos)| {
            DateTime::from_timestamp(seconds, nanos)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_taken_or_refused_by_name(text in input(VALID)) {
        let since = parse_since(&text, now());
        if text.trim().is_empty() {
            prop_assert!(since.unwrap_err().contains("a duration like 10m"));
        } else {
            refused_well(&since, &text, &["duration ago (10m, 2h)", "at most", "shorter duration"])?;
        }
        refused_well(&parse_cost_since(&text, now()), &text, &["today"])?;
        let bound = parse_time_or_ago("--since", &text, now());
        refused_well(&bound, &text, &["duration ago (10m, 2h)", "shorter duration"])?;
        if let Err(error) = &bound {
            prop_assert!(error.starts_with("invalid --since"), "{error}");
        }
        if let Err(error) = parse_type_filter(&text) {
            prop_assert!(
                error.contains("the types are") || error.contains("give a type such as"),
                "{error}"
            );
        }
    }

    #[test]
    fn ids_and_times_read_back(id in any::<u64>(), time in time()) {
        prop_assert_eq!(parse_since(&id.to_string(), now()), Ok(Since::Id(id)));
        // RFC 3339 holds years 0 to 9999 only.
        if (0..=9999).contains(&time.format("%Y").to_string().parse::<i64>().unwrap_or(-1)) {
            let text = time.to_rfc3339_opts(SecondsFormat::Nanos, true);
            prop_assert_eq!(parse_since(&text, now()), Ok(Since::Time(time)));
            prop_assert_eq!(parse_cost_since(&text, now()), Ok(time));
        }
    }

    #[test]
    fn days_read_back(day in (1i32..=9999, 1u32..=366).prop_filter_map("a day", |(y, d)| NaiveDate::from_yo_opt(y, d))) {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
        prop_assert_eq!(parse_cost_since(&day.format("%Y-%m-%d").to_string(), now()), Ok(midnight));
    }

    #[test]
    fn every_type_and_prefix_of_one_is_a_filter(index in 0..EVENT_TYPES.len(), cut in any::<prop::sample::Index>()) {
        let kind = EVENT_TYPES[index];
        let prefix = &kind[..cut.index(kind.len()) + 1];
        prop_assert_eq!(parse_type_filter(&format!(" {prefix} ,")), Ok(vec![prefix.to_string()]));
    }
}
