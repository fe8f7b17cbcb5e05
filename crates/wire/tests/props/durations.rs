//! Durations: `--timeout`, `--stop-timeout`, `--idle-timeout`, `--linger`,
//! the probes' and the sampler's periods.

use crate::near::{config, input, refused_well};
use proptest::prelude::*;
use std::time::Duration;
use wrangle_wire::parse::{
    format_seconds, parse_duration, parse_idle_timeout, parse_linger, parse_positive_duration,
    parse_sample_interval, MAX_DURATION,
};

const VALID: &[&str] = &[
    "10s",
    "500ms",
    "2m",
    "1h30m",
    "10",
    "0.5",
    "0",
    "1d",
    "2h 5m",
    "7days",
    "999999999",
    "1000000000s",
    "30s",
    "never",
];

/// What a refusal of a duration says is accepted.
const SAYS: &[&str] = &["500ms", "the longest is"];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_taken_or_refused_by_name(text in input(VALID)) {
        let duration = parse_duration(&text);
        refused_well(&duration, &text, SAYS)?;
        if let Ok(duration) = duration {
            prop_assert!(duration <= MAX_DURATION, "{text:?} gave {duration:?}");
        }
        refused_well(&parse_idle_timeout(&text), &text, &[SAYS, &["longer than 0"]].concat())?;
        refused_well(&parse_positive_duration(&text), &text, &[SAYS, &["longer than zero"]].concat())?;
        refused_well(&parse_sample_interval(&text), &text, &[SAYS, &["at least 10ms"]].concat())?;
        refused_well(&parse_linger(&text), &text, &["never"])?;
    }

    #[test]
    fn whole_seconds_and_milliseconds_read_back(
        seconds in 0..=MAX_DURATION.as_secs(),
        millis in 0..=MAX_DURATION.as_millis() as u64,
    ) {
        prop_assert_eq!(parse_duration(&seconds.to_string()), Ok(Duration::from_secs(seconds)));
        prop_assert_eq!(parse_duration(&format!("{seconds}s")), Ok(Duration::from_secs(seconds)));
        prop_assert_eq!(parse_duration(&format!(" {millis}ms ")), Ok(Duration::from_millis(millis)));
    }

    #[test]
    fn longer_than_the_longest_is_refused_and_says_so(extra in 1..u64::MAX / 4) {
        let text = format!("{}s", MAX_DURATION.as_secs().saturating_add(extra));
        let error = parse_duration(&text).unwrap_err();
        prop_assert!(error.contains("the longest is"), "{error}");
    }

    #[test]
    fn humantimes_format_reads_back(seconds in 0..MAX_DURATION.as_secs(), nanos in 0..1_000_000_000u32) {
        let duration = Duration::new(seconds, nanos);
        let text = humantime::format_duration(duration).to_string();
        prop_assert_eq!(parse_duration(&text), Ok(duration), "{}", text);
    }

    #[test]
    fn printed_seconds_read_back_within_their_rounding(micros in 0..MAX_DURATION.as_micros() as u64) {
        let duration = Duration::from_micros(micros);
        let text = format_seconds(duration);
        let back = parse_duration(&text).map_err(TestCaseError::fail)?;
        let seconds = duration.as_secs_f64();
        // 15s, 1.5s, 0.02s: half the last digit shown, and a float's due.
        let rounding = if seconds >= 10.0 { 0.5 } else if seconds >= 1.0 { 0.05 } else { 0.005 };
        let off = (back.as_secs_f64() - seconds).abs();
        prop_assert!(off <= rounding * (1.0 + 1e-9) + 1e-9, "{duration:?} printed {text} read {back:?}");
    }
}

#[test]
fn a_duration_past_the_clocks_range_is_refused_not_overflowed() {
    // humantime alone takes it, and `Instant::now() + it` panics.
    for text in [
        "300000000000years",
        "18446744073709551615s",
        "1e300",
        "584942417355y",
    ] {
        let error = parse_duration(text).unwrap_err();
        assert!(error.contains(&format!("{text:?}")), "{error}");
    }
    assert_eq!(parse_duration("1000000000"), Ok(MAX_DURATION));
    assert_eq!(parse_duration("-0"), Ok(Duration::ZERO));
}
