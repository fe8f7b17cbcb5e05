//! Property tests of the adapters (issue 16): any line at all, in any
//! order, never panics a [`Reader`], and its session stays consistent:
//! every line counted, a line that is not the adapter's counted as other,
//! progress and costs within their ranges, and the reader stored and read
//! back (as a daemon that restarts does) goes on the same.

mod lines;

use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use std::io::Write;

/// One fixed time: two readers given the same lines match exactly.
fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap()
}

fn kind() -> impl Strategy<Value = AdapterKind> {
    prop::sample::select(AdapterKind::ALL.to_vec())
}

/// What must hold of a session whatever it read.
fn consistent(session: &Session) -> Result<(), TestCaseError> {
    prop_assert!(session.other_lines <= session.lines);
    if let Some(progress) = session.progress {
        prop_assert!((0.0..=100.0).contains(&progress), "progress {progress}");
    }
    let costs = session
        .reported_cost_usd
        .iter()
        .chain(session.reported_cost_by_model.values());
    for cost in costs {
        prop_assert!(cost.is_finite() && *cost >= 0.0, "cost {cost}");
    }
    if let Some(text) = &session.last_text {
        // 500 characters and the ellipsis at most.
        prop_assert!(text.chars().count() <= 501);
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::proptest_config())]

    #[test]
    fn any_lines_are_counted_and_keep_the_session_consistent(
        kind in kind(),
        model in proptest::option::of("\\PC{0,16}"),
        lines in prop::collection::vec(lines::line(), 1..12),
    ) {
        let mut reader = Reader::new(kind, "test".into(), model);
        let prices = Prices::shipped();
        for line in &lines {
            let before = reader.session().clone();
            reader.line(line, at());
            let session = reader.session();
            prop_assert_eq!(session.lines, before.lines + 1);
            let other = session.other_lines - before.other_lines;
            prop_assert!(other <= 1);
            // Not an object, or not JSON at all: never the adapter's.
            let trimmed = line.trim_ascii();
            // IgnoredAny, not Value: nesting past Value's depth limit in
            // a field an adapter skips is still JSON, and still its line.
            let json = serde_json::from_slice::<serde::de::IgnoredAny>(trimmed);
            if kind == AdapterKind::None || !trimmed.starts_with(b"{") || json.is_err() {
                prop_assert_eq!(other, 1, "{:?}", String::from_utf8_lossy(line));
            }
            consistent(session)?;
            let counted = (session.lines, session.other_lines);
            reader.stderr_line(line, at());
            let view = reader.view(&prices, None);
            prop_assert_eq!((view.lines, view.other_lines), counted);
            if let Some(cost) = view.cost_usd {
                prop_assert!(cost.is_finite() && cost >= 0.0, "cost {cost}");
            }
            let _ = reader.session().figures(None).costs(&prices);
        }
        // Stored and read back, it goes on the same.
        let stored = serde_json::to_string(&reader).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut back: Reader = serde_json::from_str(&stored).map_err(|e| TestCaseError::fail(format!("{e}: {stored}")))?;
        prop_assert_eq!(back.session().lines, reader.session().lines);
        prop_assert_eq!(&back.session().tokens, &reader.session().tokens);
        back.line(lines[0].as_slice(), at());
        reader.line(lines[0].as_slice(), at());
        prop_assert_eq!(back.session().other_lines, reader.session().other_lines);
    }

    #[test]
    fn any_command_gets_an_adapter_without_panicking(
        argv in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "claude", "codex", "gemini", "opencode", "npx", "node", "bunx", "pnpx",
                    "@openai/codex", "cli.js", "exec", "run", "--json", "--output-format",
                    "stream-json", "json", "-o", "--format", "--model", "-m", "-c", "--config",
                    "model=\"o3\"", "--model=", "--input-format", "-", "",
                ]).prop_map(str::to_string),
                "\\PC{0,10}",
            ],
            0..6,
        ),
        requested in proptest::option::of(kind()),
    ) {
        let (kind, why, _model) = choose(requested, &argv);
        prop_assert!(!why.is_empty());
        if let Some(requested) = requested {
            prop_assert_eq!(kind, requested);
        }
        let _ = ends_after_result(kind, &argv);
    }

    #[test]
    fn any_model_name_is_looked_up_without_panicking(model in "\\PC{0,24}|[é日a-z0-9.:@/-]{0,30}") {
        let prices = Prices::shipped();
        let _ = prices.find(&model);
        let tokens = std::collections::BTreeMap::from([(model, most_tokens())]);
        let _ = prices.cost(&tokens);
    }

    /// A log read as it grows, in pieces cut anywhere, gives the reader
    /// the same lines as the whole log at once.
    #[test]
    fn a_log_read_in_any_pieces_gives_the_same_session(
        kind in kind(),
        lines in prop::collection::vec(lines::line(), 0..10),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        last_line_ends in any::<bool>(),
    ) {
        let mut log: Vec<u8> = lines.iter().flat_map(|line| {
            // A line's own newlines split it, as they do in a log.
            line.iter().copied().chain([b'\n'])
        }).collect();
        if !last_line_ends {
            log.pop();
        }
        let mut whole = Reader::new(kind, "test".into(), None);
        let mut pieces: Vec<&[u8]> = log.split(|byte| *byte == b'\n').collect();
        if pieces.last().is_some_and(|last| last.is_empty()) {
            pieces.pop();
        }
        for piece in pieces {
            whole.line(piece, at());
        }

        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let files = wrangle_shim::logfiles::LogFiles::new(dir.path(), "stdout.log", 1 << 30);
        let mut file = std::fs::File::create(files.current_path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut offsets: Vec<usize> = cuts.iter().map(|cut| cut.index(log.len() + 1)).collect();
        offsets.push(log.len());
        offsets.sort_unstable();
        let mut read = Reader::new(kind, "test".into(), None);
        let mut tail = Tail::default();
        let mut written = 0;
        for offset in offsets {
            file.write_all(&log[written..offset]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            written = offset;
            tail.read(&files, &mut read, at()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        tail.finish(&mut read, at());
        prop_assert_eq!(read.session(), whole.session());
        prop_assert_eq!(tail.read_to(), log.len() as u64);
    }
}

/// Tokens at the top of every kind, for the price sums.
fn most_tokens() -> wrangle_wire::TokenCounts {
    wrangle_wire::TokenCounts {
        input: u64::MAX,
        output: u64::MAX,
        cache_read: u64::MAX,
        cache_write: u64::MAX,
    }
}

#[test]
fn a_non_ascii_model_name_is_looked_up_without_panicking() {
    // normalize() cut it at a byte 11 from the end, inside an 'é'.
    assert!(Prices::shipped().find("éééééééé").is_none());
}

#[test]
fn token_counts_past_u64_saturate_instead_of_overflowing() {
    for (kind, line) in [
        (
            AdapterKind::Jsonl,
            r#"{"tokens": {"input": 18446744073709551615, "output": 1, "cache_read": 0, "cache_write": 0}}"#,
        ),
        (
            AdapterKind::Gemini,
            r#"{"type":"result","stats":{"models":{"g":{"tokens":{"prompt":1,"candidates":18446744073709551615,"cached":0,"thoughts":1}}}}}"#,
        ),
        (
            AdapterKind::Opencode,
            r#"{"type":"step_finish","part":{"tokens":{"input":1,"output":18446744073709551615,"reasoning":1}}}"#,
        ),
    ] {
        let mut reader = Reader::new(kind, "test".into(), Some("m".into()));
        reader.line(line.as_bytes(), at());
        reader.line(line.as_bytes(), at());
        assert_eq!(reader.session().total_tokens().total(), u64::MAX, "{kind}");
    }
}

#[test]
fn a_cost_below_zero_or_past_every_number_is_no_cost() {
    let mut opencode = Reader::new(AdapterKind::Opencode, "test".into(), None);
    for cost in ["-1", "1e308", "1e308"] {
        let line = format!(r#"{{"type":"step_finish","part":{{"cost":{cost}}}}}"#);
        opencode.line(line.as_bytes(), at());
    }
    assert_eq!(opencode.session().reported_cost_usd, Some(1e308));
    let mut claude = Reader::new(AdapterKind::Claude, "test".into(), None);
    claude.line(
        br#"{"type":"result","total_cost_usd":-2,"modelUsage":{"m":{"costUSD":-1}}}"#,
        at(),
    );
    assert_eq!(claude.session().reported_cost_usd, None);
    assert!(claude.session().reported_cost_by_model.is_empty());
}
