//! Agent and group names, and `--env KEY=VALUE`.

use crate::near::{config, input, refused_well};
use proptest::prelude::*;
use wrangle_wire::parse::{parse_env_pair, validate_name, MAX_NAME_LEN};

const NAMES: &[&str] = &["a", "build-1", "x.y_z", "0abc", "web", "agent-007.retry_2"];

/// The rule, written out plainly: `[a-z0-9][a-z0-9._-]{0,62}`.
fn is_name(text: &str) -> bool {
    let lower_or_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    text.chars().next().is_some_and(lower_or_digit)
        && text.chars().all(|c| lower_or_digit(c) || "._-".contains(c))
        && text.len() <= MAX_NAME_LEN
}

const PAIRS: &[&str] = &["A=b", "A=b=c", "EMPTY=", "PATH=/usr/bin:/bin", "x=1"];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn names_follow_the_rule_and_refusals_state_it(text in input(NAMES)) {
        let checked = validate_name(&text);
        prop_assert_eq!(checked.is_ok(), is_name(&text), "{:?}", text);
        refused_well(&checked, &text, &["a-z, 0-9"])?;
    }

    #[test]
    fn every_name_of_the_rule_is_taken(name in "[a-z0-9][a-z0-9._-]{0,62}") {
        prop_assert_eq!(validate_name(&name), Ok(()));
    }

    #[test]
    fn env_pairs_are_taken_or_refused_by_name(text in input(PAIRS)) {
        let pair = parse_env_pair(&text);
        refused_well(&pair, &text, &["KEY=VALUE"])?;
        if let Ok((key, value)) = pair {
            prop_assert_eq!(&format!("{key}={value}"), &text);
            prop_assert!(!key.is_empty() && !key.contains('=') && !text.contains('\0'));
        }
    }

    #[test]
    fn env_pairs_read_back(key in "[^=\\x00]{1,16}", value in "[^\\x00]{0,32}") {
        prop_assert_eq!(parse_env_pair(&format!("{key}={value}")), Ok((key, value)));
    }
}

#[test]
fn a_nul_in_an_env_value_is_refused_as_the_daemon_refuses_it() {
    let error = parse_env_pair("A=b\0c").unwrap_err();
    assert_eq!(
        error,
        "invalid --env \"A=b\\0c\": a KEY=VALUE cannot contain NUL"
    );
}
