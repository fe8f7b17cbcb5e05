//! Signals: `--stop-signal`, `wrangle kill --signal`.

use crate::near::{config, input, refused_well};
use proptest::prelude::*;
use wrangle_wire::parse::{parse_signal, signal_name};

const VALID: &[&str] = &[
    "TERM", "SIGTERM", "sigint", "9", "KILL", "31", "1", "SIGWINCH",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_taken_or_refused_by_name(text in input(VALID)) {
        let signal = parse_signal(&text);
        refused_well(&signal, &text, &["TERM"])?;
        if let Ok(number) = signal {
            prop_assert!((1..=31).contains(&number));
        }
    }

    #[test]
    fn every_signal_reads_back_by_name_and_number(
        number in 1..=31i32,
        lower in any::<bool>(),
        short in any::<bool>(),
    ) {
        let name = signal_name(number);
        let name = if short { name.trim_start_matches("SIG").to_string() } else { name };
        let name = if lower { name.to_lowercase() } else { name };
        prop_assert_eq!(parse_signal(&name), Ok(number));
        prop_assert_eq!(parse_signal(&format!(" {number} ")), Ok(number));
    }

    #[test]
    fn other_numbers_are_refused(number in any::<i64>().prop_filter("a signal", |n| !(1..=31).contains(n))) {
        let error = parse_signal(&number.to_string()).unwrap_err();
        prop_assert!(error.contains("from 1 to 31"), "{}", error);
    }
}
