//! Numbers: `--cpu-max`, `--pids-max`, `--nofile`, `--budget-usd`,
//! `--budget-tokens`.

use crate::near::{config, input, refused_well};
use proptest::prelude::*;
use wrangle_wire::parse::{
    parse_budget_tokens, parse_budget_usd, parse_count_limit, parse_cpu_max, MAX_COUNT_LIMIT,
    MAX_CPU_MAX, MIN_CPU_MAX,
};

const VALID: &[&str] = &[
    "0.5",
    "1",
    "2.5",
    "100000",
    "0.01",
    "5",
    "2147483647",
    "$0.50",
    "200_000",
    "1e3",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_taken_or_refused_by_name(text in input(VALID)) {
        let cores = parse_cpu_max(&text);
        refused_well(&cores, &text, &["cores from 0.01"])?;
        if let Ok(cores) = cores {
            prop_assert!((MIN_CPU_MAX..=MAX_CPU_MAX).contains(&cores));
        }
        for what in ["process limit", "open-file limit"] {
            let count = parse_count_limit(what, &text);
            refused_well(&count, &text, &["whole number from 1"])?;
            if let Ok(count) = count {
                prop_assert!((1..=MAX_COUNT_LIMIT).contains(&count));
            }
        }
        let usd = parse_budget_usd(&text);
        refused_well(&usd, &text, &["US dollars"])?;
        if let Ok(usd) = usd {
            prop_assert!(usd.is_finite() && usd > 0.0);
        }
        let tokens = parse_budget_tokens(&text);
        refused_well(&tokens, &text, &["whole number of tokens from 1"])?;
        prop_assert_ne!(tokens, Ok(0));
    }

    #[test]
    fn cores_read_back(cores in MIN_CPU_MAX..=MAX_CPU_MAX) {
        prop_assert_eq!(parse_cpu_max(&cores.to_string()), Ok(cores));
    }

    #[test]
    fn counts_read_back(count in 1..=MAX_COUNT_LIMIT) {
        prop_assert_eq!(parse_count_limit("process limit", &count.to_string()), Ok(count));
    }

    #[test]
    fn budgets_read_back(usd in 1e-9..1e12f64, tokens in 1..=u64::MAX, dollar in any::<bool>()) {
        let text = if dollar { format!("${usd}") } else { usd.to_string() };
        prop_assert_eq!(parse_budget_usd(&text), Ok(usd));
        prop_assert_eq!(parse_budget_tokens(&tokens.to_string()), Ok(tokens));
        // Grouped by thousands, as people write them.
        let digits = tokens.to_string();
        let grouped: Vec<String> = digits
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|group| String::from_utf8_lossy(group).into_owned())
            .collect();
        prop_assert_eq!(parse_budget_tokens(&grouped.join("_")), Ok(tokens));
    }
}

#[test]
fn budgets_refused_after_parsing_still_name_the_input() {
    // Each once said only the number it read: `invalid budget inf`.
    for text in ["1e400", "$-1", "0"] {
        let error = parse_budget_usd(text).unwrap_err();
        assert!(error.contains(&format!("{text:?}")), "{error}");
    }
    let error = parse_budget_tokens("0_000").unwrap_err();
    assert!(error.contains("\"0_000\""), "{error}");
}
