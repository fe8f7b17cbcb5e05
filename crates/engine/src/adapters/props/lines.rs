//! Lines an agent may print: its CLI's real lines mistyped, JSON of any
//! shape with the words the adapters look for, numbers at their limits,
//! deep nesting, and bytes that are not text at all.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Real lines of each CLI (AGENT-FORMATS.md's fixtures and the adapters'
/// tests), to mistype.
const REAL: &[&str] = &[
    include_str!("../../../../../tests/fixtures/agents/claude-stream.jsonl"),
    include_str!("../../../../../tests/fixtures/agents/codex-exec.jsonl"),
    r#"{"type":"init","session_id":"s","model":"gemini-2.0-flash-exp"}
{"type":"message","role":"assistant","content":"4","delta":true}
{"type":"tool_use","tool_name":"Read","tool_id":"r","parameters":{"file_path":"/f"}}
{"type":"result","status":"error","error":{"type":"E","message":"m"},"stats":{"input_tokens":50,"output_tokens":50,"cached":0,"models":{"g":{"tokens":{"prompt":1,"candidates":2,"cached":0,"thoughts":3}}}}}
{"type":"step_finish","sessionID":"ses","part":{"reason":"stop","cost":0.0125,"tokens":{"input":5696,"output":4,"reasoning":25,"cache":{"read":0,"write":0}}}}
{"type":"done","rejected":[{}]}
{"progress": 10, "message": "cloning", "model": "claude-haiku-4-5", "tool": "git", "waiting": null}
{"tokens": {"input": 100, "output": 20, "cache_read": 0, "cache_write": 0}, "cost_usd": 0.5}
{"result": {"success": true, "message": "pushed"}, "session_id": "x"}
{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":4102444800}}
{"type":"control_request","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"}}}
{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"error_status":529,"error":"overloaded"}"#,
];

/// Keys the adapters read, so that random objects reach their branches.
const KEYS: &[&str] = &[
    "type",
    "subtype",
    "session_id",
    "sessionID",
    "thread_id",
    "model",
    "models",
    "message",
    "id",
    "content",
    "text",
    "usage",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "modelUsage",
    "inputTokens",
    "outputTokens",
    "costUSD",
    "total_cost_usd",
    "result",
    "is_error",
    "num_turns",
    "errors",
    "permission_denials",
    "tool_name",
    "rate_limit_info",
    "status",
    "resetsAt",
    "request",
    "input",
    "output",
    "command",
    "file_path",
    "description",
    "attempt",
    "max_retries",
    "error_status",
    "error",
    "name",
    "tool_use_id",
    "item",
    "query",
    "server",
    "tool",
    "role",
    "delta",
    "parameters",
    "severity",
    "stats",
    "tokens",
    "prompt",
    "candidates",
    "cached",
    "thoughts",
    "response",
    "part",
    "reason",
    "cost",
    "reasoning",
    "cache",
    "read",
    "write",
    "rejected",
    "progress",
    "cost_usd",
    "waiting",
    "success",
    "cache_read",
    "cache_write",
];

/// Values the adapters match on.
const WORDS: &[&str] = &[
    "system",
    "init",
    "api_retry",
    "task_started",
    "task_notification",
    "assistant",
    "user",
    "rate_limit_event",
    "control_request",
    "can_use_tool",
    "control_cancel_request",
    "control_response",
    "result",
    "tool_use",
    "server_tool_use",
    "tool_result",
    "rejected",
    "thread.started",
    "turn.started",
    "turn.completed",
    "turn.failed",
    "error",
    "item.started",
    "item.updated",
    "item.completed",
    "agent_message",
    "command_execution",
    "mcp_tool_call",
    "file_change",
    "web_search",
    "message",
    "step_start",
    "text",
    "step_finish",
    "stop",
    "done",
    "declined",
    "<synthetic>",
    "Reconnecting... 4/5",
    "Reconnecting...",
    "success",
    "error_max_turns",
    "tool_not_registered",
    "",
];

/// Numbers at the edges of what serde and the counters hold.
fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        prop::sample::select(vec![0u64, 1, u64::from(u32::MAX), u64::MAX / 2, u64::MAX])
            .prop_map(Number::from),
        prop::sample::select(vec![-1i64, i64::from(i32::MIN), i64::MIN]).prop_map(Number::from),
        prop::sample::select(vec![
            0.5,
            -0.0,
            1e308,
            -1e308,
            5e-324,
            1.8446744073709552e19,
            100.000001,
            -1e-9
        ])
        .prop_filter_map("finite", Number::from_f64),
        any::<u64>().prop_map(Number::from),
        any::<i64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
    ]
}

/// A string: a word the adapters know, or any text.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(WORDS).prop_map(str::to_string),
        1 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
        1 => "[éß日\\x{202e}\\x00\\x{ffff}]{0,600}",
    ]
}

/// Any JSON value a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            object(inner).prop_map(Value::Object),
        ]
    })
}

/// An object whose keys are mostly the adapters' own.
fn object(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ];
    prop::collection::vec((key, values), 0..8).prop_map(|pairs| pairs.into_iter().collect())
}

/// A JSON object line, typed (`"type": ...`) more often than not.
fn json_line() -> impl Strategy<Value = Vec<u8>> {
    (
        object(value()),
        proptest::option::weighted(0.7, prop::sample::select(WORDS)),
    )
        .prop_map(|(mut object, kind)| {
            if let Some(kind) = kind {
                object.insert("type".into(), Value::String(kind.into()));
            }
            serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
        })
}

/// Bytes that break a line: invalid UTF-8, NUL, a number past every type,
/// a bracket or a quote.
const ODD: &[&[u8]] = &[
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\0",
    b"\r",
    b" ",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"99999999999999999999999999999",
    b"1e400",
    b"-1",
    b"-0",
    b"NaN",
    b"\xe2\x80\xae",
];

/// A real line mistyped: cut short, a byte changed or added, or a number
/// replaced by one past every type.
fn near_real() -> impl Strategy<Value = Vec<u8>> {
    let lines: Vec<&'static str> = REAL.iter().flat_map(|text| text.lines()).collect();
    (
        prop::sample::select(lines),
        any::<prop::sample::Index>(),
        prop::sample::select(ODD),
        0..5u8,
    )
        .prop_map(|(line, at, odd, how)| {
            let bytes = line.as_bytes();
            let at = at.index(bytes.len() + 1);
            let (head, tail) = bytes.split_at(at);
            match how {
                0 => head.to_vec(),
                1 => [head, odd, tail.get(1..).unwrap_or_default()].concat(),
                2 => [head, odd, tail].concat(),
                3 => {
                    // The first number from `at` on, replaced.
                    let text = String::from_utf8_lossy(bytes);
                    let start = text[..].char_indices().map(|(i, _)| i).find(|i| *i >= at);
                    let start = start.and_then(|from| {
                        text[from..]
                            .find(|c: char| c.is_ascii_digit())
                            .map(|i| from + i)
                    });
                    match start {
                        Some(start) => {
                            let end = text[start..]
                                .find(|c: char| !c.is_ascii_digit())
                                .map_or(text.len(), |i| start + i);
                            [&bytes[..start], odd, &bytes[end..]].concat()
                        }
                        None => bytes.to_vec(),
                    }
                }
                _ => line.as_bytes().to_vec(),
            }
        })
}

/// JSON nested deeper than serde's limit (128), as arrays or objects.
fn deep() -> impl Strategy<Value = Vec<u8>> {
    (1..2000usize, any::<bool>(), any::<bool>()).prop_map(|(depth, arrays, closed)| {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let mut line = format!("{{\"type\":\"result\",\"x\":{}1", open.repeat(depth));
        if closed {
            line.push_str(&close.repeat(depth));
            line.push('}');
        }
        line.into_bytes()
    })
}

/// Any line at all, of the kinds above or plain bytes.
pub fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "\\PC{0,40}".prop_map(String::into_bytes),
        4 => json_line(),
        4 => near_real(),
        1 => deep(),
    ]
}
