//! Property tests of the status file's parser (issue 16): whatever an
//! agent writes there, the sampler gets a report or a reason, never a
//! panic; the reason says what is accepted, and a valid report reads back.

use super::{parse, Report, MAX_STATUS_FILE};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value a few levels deep, `progress` and `message` among its
/// keys, numbers at their limits.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![any::<f64>(), -1.0..101.0].prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        let key = prop_oneof![
            Just("progress".to_string()),
            Just("message".to_string()),
            "\\PC{0,6}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Bytes as an agent may leave them: any, JSON, a valid report cut short
/// (caught half-written) or with a byte changed.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = br#"{"progress": 40, "message": "running tests", "phase": "b"}"#;
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        value().prop_map(|value| serde_json::to_vec(&value).unwrap_or_default()),
        (0..valid.len()).prop_map(|at| valid[..at].to_vec()),
        (0..valid.len(), any::<u8>()).prop_map(|(at, byte)| {
            let mut changed = valid.to_vec();
            changed[at] = byte;
            changed
        }),
        (1..5000usize)
            .prop_map(|depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
    ]
}

proptest! {
    #![proptest_config(crate::proptest_config())]

    #[test]
    fn anything_written_gives_a_report_or_a_reason_that_says_what_is_accepted(bytes in bytes()) {
        match parse(&bytes) {
            Ok(report) => {
                if let Some(progress) = report.progress {
                    prop_assert!((0.0..=100.0).contains(&progress));
                }
                let details_apart = report.details.as_ref().is_none_or(|details| {
                    !details.is_empty()
                        && !details.contains_key("progress")
                        && !details.contains_key("message")
                });
                prop_assert!(details_apart, "{:?}", report.details);
            }
            Err(reason) => {
                let says = ["like {\"progress\": 40", "from 0 to 100", "must be a string"];
                prop_assert!(says.iter().any(|said| reason.contains(said)), "{reason}");
                // It goes into health reasons: one line, of a bounded length.
                prop_assert!(!reason.contains('\n'), "{reason}");
                prop_assert!(reason.len() < 512, "{reason}");
            }
        }
    }

    #[test]
    fn a_valid_report_reads_back(
        // Hundredths: serde_json reads longer decimals back to within a
        // bit only (without its float_roundtrip feature).
        progress in proptest::option::of((0..=10_000u32).prop_map(|n| f64::from(n) / 100.0)),
        message in proptest::option::of("\\PC{0,40}"),
        details in prop::collection::btree_map("[a-z]{1,8}", value(), 0..4),
    ) {
        let mut object: Map<String, Value> = details
            .into_iter()
            .filter(|(key, _)| key != "progress" && key != "message")
            .collect();
        let has_details = !object.is_empty();
        if let Some(progress) = progress {
            object.insert("progress".into(), json!(progress));
        }
        if let Some(message) = &message {
            object.insert("message".into(), json!(message));
        }
        let text = serde_json::to_vec_pretty(&Value::Object(object)).unwrap_or_default();
        prop_assume!(text.len() as u64 <= MAX_STATUS_FILE);
        // The details as serde reads them, floats and all.
        let mut expected: Map<String, Value> = serde_json::from_slice(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        expected.remove("progress");
        expected.remove("message");
        prop_assert_eq!(
            parse(&text),
            Ok(Report { progress, message, details: has_details.then_some(expected) })
        );
    }
}
