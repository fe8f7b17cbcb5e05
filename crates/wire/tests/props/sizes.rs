//! Sizes: `--memory-max`, `--log-max-size`, `--log-max-files` and
//! `--logs-max-total`.

use crate::near::{config, input, refused_well};
use proptest::prelude::*;
use wrangle_wire::parse::{
    format_size, parse_log_max_files, parse_log_max_size, parse_memory_max, parse_size,
    MAX_LOG_FILES, MAX_SIZE, MIN_LOG_MAX_SIZE, MIN_MEMORY_MAX,
};

const VALID: &[&str] = &[
    "64M", "1.5G", "512K", "2T", "1048576", "64 MiB", "100b", "1048576T", "0.5k", "20M",
];

/// Each way a unit may be written, and its shift.
const UNITS: &[(&str, u32)] = &[
    ("", 0),
    ("b", 0),
    ("B", 0),
    ("k", 10),
    ("K", 10),
    ("KB", 10),
    ("KiB", 10),
    (" m", 20),
    ("M", 20),
    ("mib", 20),
    ("G", 30),
    ("gB", 30),
    (" GiB", 30),
    ("T", 40),
    ("TiB", 40),
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_taken_or_refused_by_name(text in input(VALID)) {
        let size = parse_size(&text);
        refused_well(&size, &text, &["64M", "the largest is 1048576T"])?;
        if let Ok(bytes) = size {
            prop_assert!(bytes <= MAX_SIZE);
        }
        let memory = parse_memory_max(&text);
        refused_well(&memory, &text, &["64M", "1048576T", "at least 1M"])?;
        if let Ok(bytes) = memory {
            prop_assert!((MIN_MEMORY_MAX..=MAX_SIZE).contains(&bytes));
        }
        let log = parse_log_max_size(&text);
        refused_well(&log, &text, &["64M", "1048576T", "1K or more"])?;
        if let Ok(bytes) = log {
            prop_assert!((MIN_LOG_MAX_SIZE..=MAX_SIZE).contains(&bytes));
        }
        let files = parse_log_max_files(&text);
        refused_well(&files, &text, &["from 1"])?;
        if let Ok(files) = files {
            prop_assert!((1..=MAX_LOG_FILES).contains(&files));
        }
    }

    #[test]
    fn whole_numbers_of_bytes_read_back_exactly(bytes in 0..=MAX_SIZE) {
        prop_assert_eq!(parse_size(&bytes.to_string()), Ok(bytes));
    }

    #[test]
    fn numbers_with_units_read_back(
        count in prop_oneof![0..4096u64, any::<u64>()],
        unit in prop::sample::select(UNITS),
    ) {
        let (name, shift) = unit;
        let text = format!("{count}{name}");
        match count.checked_mul(1 << shift).filter(|bytes| *bytes <= MAX_SIZE) {
            Some(bytes) => prop_assert_eq!(parse_size(&text), Ok(bytes)),
            None => prop_assert!(parse_size(&text).unwrap_err().contains("the largest is 1048576T")),
        }
    }

    #[test]
    fn printed_sizes_read_back_within_their_rounding(bytes in 0..=MAX_SIZE) {
        let text = format_size(bytes);
        let back = parse_size(&text).map_err(TestCaseError::fail)?;
        // One decimal of a unit the size has at least one of: 5% at most.
        let off = back.abs_diff(bytes) as f64;
        prop_assert!(off <= bytes as f64 * 0.05 + 0.5, "{bytes} printed {text} read {back}");
    }
}

#[test]
fn bytes_past_2_to_the_53_are_not_rounded() {
    // Through f64 this came back as 9007199254740992.
    assert_eq!(parse_size("9007199254740993"), Ok(9_007_199_254_740_993));
    assert_eq!(parse_size("1048576T"), Ok(MAX_SIZE));
    assert!(parse_size("1048577T")
        .unwrap_err()
        .contains("the largest is 1048576T"));
    assert!(parse_size("99999999999999999999999")
        .unwrap_err()
        .contains("the largest is 1048576T"));
}
