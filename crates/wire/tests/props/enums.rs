//! Words from a fixed set: `--restart`, `--on-hang`, `--adapter`,
//! `--telemetry`, `cost --by`, and the states of `ps --filter`.

use crate::near::{config, input, refused_well};
use proptest::prelude::*;
use wrangle_wire::parse::parse_adapter;
use wrangle_wire::{AdapterKind, CostBy, OnHang, RestartPolicy, State, TelemetryMode};

const VALID: &[&str] = &[
    "never",
    "on-failure",
    "always",
    "none",
    "stop",
    "restart",
    "auto",
    "claude",
    "codex",
    "gemini",
    "opencode",
    "jsonl",
    "on",
    "off",
    "agent",
    "group",
    "model",
    "day",
    "running",
    "exited",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_word_is_taken_or_refused_by_name(text in input(VALID)) {
        refused_well(&text.parse::<RestartPolicy>(), &text, &["never, on-failure or always"])?;
        refused_well(&text.parse::<OnHang>(), &text, &["none, stop or restart"])?;
        refused_well(&parse_adapter(&text), &text, &["use auto, claude"])?;
        refused_well(&text.parse::<TelemetryMode>(), &text, &["auto, on or off"])?;
        refused_well(&text.parse::<CostBy>(), &text, &["agent, group, model or day"])?;
        // The engine adds the list of states where a person gave one.
        let _ = text.parse::<State>();
    }
}

#[test]
fn every_word_reads_back() {
    for policy in RestartPolicy::ALL {
        assert_eq!(policy.to_string().parse(), Ok(policy));
    }
    for action in OnHang::ALL {
        assert_eq!(action.to_string().parse(), Ok(action));
    }
    for kind in AdapterKind::ALL {
        assert_eq!(parse_adapter(&format!(" {kind} ")), Ok(Some(kind)));
    }
    assert_eq!(parse_adapter("auto"), Ok(None));
    for state in State::ALL {
        assert_eq!(state.to_string().parse(), Ok(state));
    }
    for by in ["agent", "group", "model", "day"] {
        assert_eq!(by.parse::<CostBy>().map(|by| by.to_string()), Ok(by.into()));
    }
    for mode in ["auto", "on", "off"] {
        assert!(mode.parse::<TelemetryMode>().is_ok());
    }
}
