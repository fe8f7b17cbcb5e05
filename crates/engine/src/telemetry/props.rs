//! Property tests of what is read from an agent's telemetry records
//! (issue 16): any attributes, of any kind and size, never panic the
//! reading of model calls, attempts and tools, and what is counted stays
//! within range (sums saturate, costs are finite and not below 0).

use super::calls::{call_of, failed_attempt};
use super::tools::{tool_record, ToolActivity};
use super::{AttributeValue, Record};
use crate::adapters::CallFigures;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "claude_code.api_request",
    "api_request",
    "codex.sse_event",
    "gemini_cli.api_response",
    "codex.api_request",
    "claude_code.tool_decision",
    "tool_decision",
    "codex.tool_decision",
    "claude_code.tool_result",
    "tool_result",
    "codex.tool_result",
    "gemini_cli.tool_call",
];

/// A value of any kind, at the edges of each.
fn value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(-1i64),
            Just(u32::MAX.into()),
            any::<i64>()
        ]
        .prop_map(AttributeValue::Int),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-f64::INFINITY),
            Just(1.8446744073709552e19),
            Just(-0.0),
            Just(1e308),
            any::<f64>()
        ]
        .prop_map(AttributeValue::Float),
        any::<bool>().prop_map(AttributeValue::Bool),
        prop_oneof![
            Just("18446744073709551615".to_string()),
            Just("18446744073709551616".to_string()),
            Just("response.completed".to_string()),
            Just("accept".to_string()),
            Just("reject".to_string()),
            Just("config".to_string()),
            Just("true".to_string()),
            Just(" 42 ".to_string()),
            "\\PC{0,12}",
        ]
        .prop_map(AttributeValue::Text),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        prop_oneof![3 => prop::sample::select(NAMES).prop_map(str::to_string), 1 => "\\PC{0,12}"],
        prop::collection::btree_map(
            prop_oneof![4 => prop::sample::select(super::READ_ATTRIBUTES).prop_map(str::to_string), 1 => "\\PC{0,8}"],
            value(),
            0..10,
        ),
        "[0-9a-f]{0,32}|\\PC{0,8}",
        any::<i64>(),
    )
        .prop_map(|(name, attributes, key, seconds)| Record {
            key,
            at: Utc
                .timestamp_opt(seconds % 10_000_000_000, 0)
                .single()
                .unwrap_or_default(),
            name,
            attributes: attributes.into_iter().collect(),
        })
}

proptest! {
    #![proptest_config(crate::proptest_config())]

    #[test]
    fn any_records_are_read_within_range(records in prop::collection::vec(record(), 1..16)) {
        let mut calls = CallFigures::default();
        let mut tools = ToolActivity::default();
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap();
        for record in &records {
            if let Some(call) = call_of(record) {
                if let Some(cost) = call.cost_usd {
                    prop_assert!(cost.is_finite() && cost >= 0.0, "cost {cost}");
                }
                calls.add(&call.model, &call.tokens, call.cost_usd);
            }
            if let Some(Some((attempt, why))) = failed_attempt(record) {
                prop_assert!(attempt >= 1 && !why.is_empty());
            }
            let _ = tool_record(record);
            tools.take(record, now);
            // A body sent again counts nothing twice.
            prop_assert!(!tools.take(record, now));
        }
        prop_assert!(calls.cost_usd().is_none_or(|cost| cost.is_finite() && cost >= 0.0));
        // The totals as a session's view sums them, saturating.
        let _ = crate::adapters::Session::default().figures(Some(&calls)).total_tokens();
        prop_assert!(tools.failed <= tools.finished);
        prop_assert!(tools.denials.len() as u64 <= tools.denied && tools.denials.len() <= 32);
        let _ = (tools.running(), tools.waiting());
    }
}

#[test]
fn counts_at_their_limits_saturate_and_bad_costs_are_none() {
    let record = |name: &str, attributes: &[(&str, AttributeValue)]| Record {
        key: "k".into(),
        at: Utc::now(),
        name: name.into(),
        attributes: attributes
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect(),
    };
    use AttributeValue::{Float, Int, Text};
    let gemini = record(
        "gemini_cli.api_response",
        &[
            ("output_token_count", Text("18446744073709551615".into())),
            ("thoughts_token_count", Int(1)),
        ],
    );
    assert_eq!(call_of(&gemini).unwrap().tokens.output, u64::MAX);
    let attempt = record(
        "codex.api_request",
        &[
            ("attempt", Int(i64::from(u32::MAX))),
            ("error.message", Text("x".into())),
        ],
    );
    assert_eq!(failed_attempt(&attempt), Some(Some((u32::MAX, "x".into()))));
    for cost in [f64::NAN, f64::INFINITY, -1.0] {
        let claude = record(
            "api_request",
            &[("input_tokens", Int(1)), ("cost_usd", Float(cost))],
        );
        assert_eq!(call_of(&claude).unwrap().cost_usd, None, "{cost}");
    }
    let mut tools = ToolActivity::default();
    for key in ["a", "b"] {
        let mut done = record(
            "tool_result",
            &[("duration_ms", Float(1.8446744073709552e19))],
        );
        done.key = key.into();
        tools.take(&done, Utc::now());
    }
    assert_eq!(tools.busy_ms, u64::MAX);
}
