//! Property tests of a create request checked by the daemon (issue 16):
//! `POST /v1/agents` with any values in its options, environment and
//! labels is made a spec or refused, never a panic, and a refusal names
//! the value or the options at fault.

use crate::model::AgentSpec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use wrangle_wire::{CreateAgent, RunOptions};

/// Values near the valid ones of every kind of option, and any text.
fn text() -> impl Strategy<Value = String> {
    let valid = prop::sample::select(vec![
        "TERM",
        "10s",
        "0",
        "0s",
        "64M",
        "0.5",
        "5m",
        "stop",
        "restart",
        "none",
        "claude",
        "auto",
        "never",
        "on",
        "on-failure",
        "http://127.0.0.1:8080/",
        "127.0.0.1:9",
        "builds",
        "1000000000",
        "300000000000years",
    ]);
    let odd = prop::sample::select(vec![
        "",
        "-1",
        "\0",
        "é",
        "x",
        "99999999999999999999",
        "1e400",
        "NaN",
        " ",
        ":",
        "s",
    ]);
    prop_oneof![
        1 => "\\PC{0,10}",
        4 => (valid, odd, any::<bool>()).prop_map(|(valid, odd, after)| {
            if after { format!("{valid}{odd}") } else { valid.to_string() }
        }),
    ]
}

/// Options, each given or not, with any values.
fn options() -> impl Strategy<Value = RunOptions> {
    let text = || proptest::option::weighted(0.2, text());
    (
        (
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
        ),
        (text(), text(), text(), text(), text(), text(), text()),
        (text(), text(), text(), text(), text(), text(), text()),
        (
            proptest::option::weighted(0.2, prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()]),
            proptest::option::weighted(0.2, prop_oneof![Just(0u32), any::<u32>()]),
            proptest::option::weighted(
                0.2,
                prop_oneof![
                    Just(0.0f64),
                    Just(-1.0),
                    Just(f64::NAN),
                    Just(f64::INFINITY),
                    any::<f64>()
                ],
            ),
            proptest::option::weighted(0.2, any::<i32>()),
        ),
    )
        .prop_map(|(a, b, c, (count, retries, usd, priority))| RunOptions {
            stop_signal: a.0,
            stop_timeout: a.1,
            memory_max: a.2,
            cpu_max: a.3,
            idle_timeout: a.4,
            on_hang: a.5,
            adapter: a.6,
            linger: a.7,
            telemetry: b.0,
            restart: b.1,
            restart_window: b.2,
            backoff_initial: b.3,
            backoff_max: b.4,
            min_uptime: b.5,
            timeout: b.6,
            health_cmd: c.0,
            health_http: c.1,
            health_tcp: c.2,
            health_interval: c.3,
            health_timeout: c.4,
            group: c.5,
            log_max_size: c.6,
            log_max_files: retries,
            pids_max: count,
            nofile: count.map(|count| count / 2),
            budget_usd: usd,
            budget_tokens: count,
            health_retries: retries,
            priority,
            max_restarts: retries,
        })
}

fn request() -> impl Strategy<Value = CreateAgent> {
    (
        prop::collection::vec(text(), 0..3),
        prop::collection::btree_map(text(), text(), 0..3),
        prop::collection::btree_map(text(), text(), 0..3),
        proptest::option::weighted(0.3, text()),
        options(),
    )
        .prop_map(|(command, env, labels, cwd, options)| CreateAgent {
            name: None,
            command,
            env,
            inherit_env: Some(BTreeMap::new()),
            cwd,
            labels,
            options,
        })
}

/// Every value the request gives, as text: strings, then numbers.
fn given(request: &CreateAgent) -> (Vec<String>, Vec<String>) {
    let options = serde_json::to_value(&request.options).unwrap_or_default();
    let fields = options.as_object().into_iter().flatten();
    let texts = fields
        .clone()
        .filter_map(|(_, value)| value.as_str().map(str::to_string));
    let numbers = fields
        .filter(|(_, value)| value.is_number())
        .map(|(_, value)| value.to_string());
    let maps = request
        .env
        .iter()
        .chain(&request.labels)
        .flat_map(|(key, value)| [key.clone(), value.clone()]);
    // A float as Rust prints it: NaN and infinities are no JSON number.
    let usd = request.options.budget_usd.map(|usd| usd.to_string());
    let texts = texts
        .chain(maps)
        .chain(request.command.clone())
        .chain(request.cwd.clone())
        .collect();
    (texts, numbers.chain(usd).collect())
}

/// What a refusal that names options, not one value, says.
const ACROSS: &[&str] = &[
    "the command is empty",
    "--health-cmd is empty",
    "--on-hang needs --idle-timeout",
    "is shorter than --backoff-initial",
    "needs a probe",
    "at most one health probe",
    "must be longer than 0",
    "a label key cannot be empty",
    "is not an absolute path",
    "must be an absolute path",
];

proptest! {
    #![proptest_config(crate::proptest_config())]

    #[test]
    fn any_request_is_a_spec_or_refused_by_name(request in request()) {
        if let Err(error) = AgentSpec::from_request(&request, Path::new("/srv")) {
            let message = &error.message;
            let (texts, numbers) = given(&request);
            // A text named in its {:?} form, as given or trimmed (or
            // plainly where it is long enough not to be there by chance),
            // a number as it is.
            let named = texts.iter().any(|value| {
                message.contains(&format!("{value:?}"))
                    || message.contains(&format!("{:?}", value.trim()))
                    || (value.len() >= 4 && message.contains(value.as_str()))
            }) || numbers.iter().any(|number| message.contains(number.as_str()));
            prop_assert!(named || ACROSS.iter().any(|said| message.contains(said)), "{message}");
        }
    }
}
