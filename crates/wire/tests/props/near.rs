//! What parsers are given in these tests: any text, and valid forms
//! mistyped the ways people (and scripts) mistype them.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// How the properties run (see [`wrangle_wire::testing::proptest_config`]).
pub fn config() -> ProptestConfig {
    wrangle_wire::testing::proptest_config()
}

/// Pieces that break parsers: huge numbers, signs, NUL, non-ASCII,
/// whitespace, separators and units.
const ODD: &[&str] = &[
    "",
    "0",
    "-1",
    "+",
    ".",
    "..",
    "e",
    "E5",
    "_",
    ",",
    ":",
    "=",
    "[",
    "]",
    "/",
    "?",
    "#",
    "@",
    "$",
    "%",
    "\0",
    "\u{7f}",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\u{a0}",
    "\u{2003}",
    "é",
    "ß",
    "İ",
    "日本",
    "\u{202e}",
    "🦀",
    "\u{fffd}",
    "99999999999999999999999999",
    "18446744073709551616",
    "9223372036854775808",
    "4294967296",
    "1e309",
    "-0",
    "NaN",
    "inf",
    "ms",
    "s",
    "h",
    "d",
    "years",
    "K",
    "M",
    "iB",
    "SIG",
];

/// An odd piece, or any character at all.
pub fn odd() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(ODD).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// One of `valid` mistyped: a character changed, added or dropped, cut
/// short, an odd piece before or after it, or written twice.
pub fn near(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(valid),
        any::<prop::sample::Index>(),
        odd(),
        0..7u8,
    )
        .prop_map(|(base, at, odd, how)| {
            let chars: Vec<char> = base.chars().collect();
            let (head, tail) = chars.split_at(at.index(chars.len() + 1));
            let head: String = head.iter().collect();
            let rest: String = tail.iter().skip(1).collect();
            let tail: String = tail.iter().collect();
            match how {
                0 => format!("{head}{odd}{rest}"),
                1 => format!("{head}{odd}{tail}"),
                2 => format!("{head}{rest}"),
                3 => head,
                4 => format!("{odd}{base}"),
                5 => format!("{base}{odd}"),
                _ => format!("{base}{base}"),
            }
        })
}

/// Any text, short odd text, or one of `valid` mistyped.
pub fn input(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        1 => proptest::collection::vec(odd(), 0..4).prop_map(|pieces| pieces.concat()),
        3 => near(valid),
    ]
}

/// Whether `error` names `input`, as given or trimmed, in its `{:?}` form.
pub fn names(error: &str, input: &str) -> bool {
    error.contains(&format!("{input:?}")) || error.contains(&format!("{:?}", input.trim()))
}

/// A refusal in `result` names `input` and says one of `says` (what is
/// accepted).
pub fn refused_well<T: std::fmt::Debug>(
    result: &Result<T, String>,
    input: &str,
    says: &[&str],
) -> Result<(), TestCaseError> {
    if let Err(error) = result {
        prop_assert!(names(error, input), "{error:?} does not name {input:?}");
        prop_assert!(
            says.iter().any(|said| error.contains(said)),
            "{error:?} says none of {says:?}"
        );
    }
    Ok(())
}
