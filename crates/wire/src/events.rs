//! The event stream: every change the daemon records, as `GET /v1/events`
//! sends it (Server-Sent Events or JSON lines) and `wrangle events`
//! prints it.
//!
//! An event has an id that only grows and is never reused, so a client
//! that remembers the last id it saw resumes from it after a reconnect or
//! a daemon crash and misses nothing. Two messages of the stream are not
//! events and have no id: [`Notice::Gap`] (the events after the client's
//! id are no longer kept) and [`Notice::Lagged`] (the client fell behind
//! and is disconnected).

use crate::state::{Health, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Position in the daemon's log of events: strictly increasing, never
    /// reused. Resume a stream after it with `since`.
    pub id: u64,
    /// When it happened (RFC 3339, UTC).
    pub time: DateTime<Utc>,
    /// Its type (`type`) and the fields of that type.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The agent it is about; absent for daemon and group events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<EventAgent>,
    /// The agent's run it is about, where it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u32>,
}

/// The agent an event is about, named as it was then (its events outlive
/// it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventAgent {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its concurrency group, if any.
    pub group: Option<String>,
}

/// What happened, by type. The type names are dotted, subject first
/// (`agent.exited`); a filter on a prefix (`agent.`) takes a family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type")]
pub enum EventKind {
    /// An agent was created; its first state follows in the next event.
    #[serde(rename = "agent.created")]
    Created {
        /// The argv it runs.
        command: Vec<String>,
        /// Its labels.
        #[serde(default)]
        labels: BTreeMap<String, String>,
    },
    /// The agent waits for a slot of a concurrency limit.
    #[serde(rename = "agent.queued")]
    Queued {
        /// Which limit holds it.
        reason: Option<String>,
    },
    /// A run is being started: its shim is forked, the exec not yet
    /// confirmed.
    #[serde(rename = "agent.starting")]
    Starting {},
    /// The run's exec is confirmed.
    #[serde(rename = "agent.running")]
    Running {
        /// The agent's main process.
        pid: Option<i32>,
    },
    /// A stop of the run is under way.
    #[serde(rename = "agent.stopping")]
    Stopping {
        /// Who or what asked for it.
        cause: Option<Cause>,
        /// In words.
        reason: Option<String>,
    },
    /// The agent ended for good: `completed`, `failed` or `stopped`.
    #[serde(rename = "agent.exited")]
    Exited {
        /// The state it ended in.
        state: State,
        /// The main process's exit code, when it exited.
        exit_code: Option<i32>,
        /// The signal that ended it, e.g. `SIGKILL`.
        signal: Option<String>,
        /// Why it ended.
        cause: Option<Cause>,
        /// In words: `exited with code 3`, `stopped by SIGTERM in 0.02s`.
        reason: Option<String>,
        /// How long the run ran, in seconds.
        runtime_seconds: Option<f64>,
    },
    /// The run ended and the restart policy starts the agent again at
    /// `restart_at`.
    #[serde(rename = "agent.backoff")]
    Backoff {
        /// The main process's exit code, when it exited.
        exit_code: Option<i32>,
        /// The signal that ended it.
        signal: Option<String>,
        /// Why the run ended.
        cause: Option<Cause>,
        /// In words, with the restart to come.
        reason: Option<String>,
        /// When the next run starts.
        restart_at: Option<DateTime<Utc>>,
    },
    /// The agent was forgotten (`wrangle rm`); its logs are deleted.
    #[serde(rename = "agent.removed")]
    Removed {
        /// The state it was in.
        state: State,
    },
    /// The agent's health changed.
    #[serde(rename = "agent.health")]
    Health {
        /// The health before.
        from: Health,
        /// The health now.
        to: Health,
        /// Why, in words.
        reason: Option<String>,
    },
    /// The agent reported progress in its status file (at most one event
    /// a second per agent: the latest report).
    #[serde(rename = "agent.progress")]
    Progress {
        /// Progress 0-100.
        progress: Option<f64>,
        /// What it is doing.
        message: Option<String>,
    },
    /// The agent's adapter learnt who the session is: its id, its models.
    #[serde(rename = "agent.session")]
    Session {
        /// The adapter.
        adapter: crate::AdapterKind,
        /// The agent's own session (or thread) id.
        session_id: Option<String>,
        /// The models it used so far.
        models: Vec<String>,
    },
    /// What the agent used so far (at most one event every five seconds per
    /// agent, and the last one when its run ends).
    #[serde(rename = "agent.usage")]
    Usage {
        /// Tokens so far.
        tokens: crate::TokenCounts,
        /// Cost so far in USD, where it can be had.
        cost_usd: Option<f64>,
    },
    /// The agent waits for a person (`waiting` says for what), or no
    /// longer does (`waiting` is null).
    #[serde(rename = "agent.waiting")]
    Waiting {
        /// What it waits for.
        waiting: Option<String>,
    },
    /// The agent gave its final result.
    #[serde(rename = "agent.result")]
    Result {
        /// Whether it succeeded, in its own words.
        success: bool,
        /// Its final message, or what went wrong.
        message: Option<String>,
        /// Tokens of the run.
        tokens: crate::TokenCounts,
        /// Cost of the run in USD, where it can be had.
        cost_usd: Option<f64>,
    },
    /// The agent (or its group) went over its budget; it is stopped with
    /// cause `budget`.
    #[serde(rename = "agent.budget_exceeded")]
    BudgetExceeded {
        /// Which budget: `--budget-usd $0.05`, `--budget-tokens 100000`,
        /// or `group G --budget-usd $10`.
        budget: String,
        /// What was spent against it, in USD (the agent's over all its
        /// runs, or its group's).
        cost_usd: Option<f64>,
        /// Tokens the agent used over all its runs.
        tokens: crate::TokenCounts,
    },
    /// A group's concurrency limit or budget was set or removed.
    #[serde(rename = "group.changed")]
    GroupChanged {
        /// The group.
        group: String,
        /// Most of its agents that run at once; none means no limit.
        max_running: Option<u32>,
        /// Most US dollars its agents may spend together; none means no
        /// budget.
        #[serde(default)]
        budget_usd: Option<f64>,
    },
    /// A daemon started and took over the agents of its home.
    #[serde(rename = "daemon.started")]
    DaemonStarted {
        /// The daemon's pid.
        pid: i32,
        /// wrangle's version.
        version: String,
        /// Runs found alive and re-attached.
        reattached: u32,
        /// Agents known.
        agents: u32,
    },
    /// The daemon is shutting down.
    #[serde(rename = "daemon.stopping")]
    DaemonStopping {
        /// Whether it stops its agents first (else they keep running).
        stop_agents: bool,
    },
    /// A type this client does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// The type's name, e.g. `agent.exited`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created { .. } => "agent.created",
            EventKind::Queued { .. } => "agent.queued",
            EventKind::Starting {} => "agent.starting",
            EventKind::Running { .. } => "agent.running",
            EventKind::Stopping { .. } => "agent.stopping",
            EventKind::Exited { .. } => "agent.exited",
            EventKind::Backoff { .. } => "agent.backoff",
            EventKind::Removed { .. } => "agent.removed",
            EventKind::Health { .. } => "agent.health",
            EventKind::Progress { .. } => "agent.progress",
            EventKind::Session { .. } => "agent.session",
            EventKind::Usage { .. } => "agent.usage",
            EventKind::Waiting { .. } => "agent.waiting",
            EventKind::Result { .. } => "agent.result",
            EventKind::BudgetExceeded { .. } => "agent.budget_exceeded",
            EventKind::GroupChanged { .. } => "group.changed",
            EventKind::DaemonStarted { .. } => "daemon.started",
            EventKind::DaemonStopping { .. } => "daemon.stopping",
            EventKind::Unknown => "unknown",
        }
    }
}

/// Every event type, for filters and for counting.
pub const EVENT_TYPES: [&str; 18] = [
    "agent.created",
    "agent.queued",
    "agent.starting",
    "agent.running",
    "agent.stopping",
    "agent.exited",
    "agent.backoff",
    "agent.removed",
    "agent.health",
    "agent.progress",
    "agent.session",
    "agent.usage",
    "agent.waiting",
    "agent.result",
    "agent.budget_exceeded",
    "group.changed",
    "daemon.started",
    "daemon.stopping",
];

/// Why a run ended (or why it is being stopped), as a value a program can
/// decide on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The agent ended by itself: it exited, or a signal wrangle did not
    /// send ended it.
    Exit,
    /// It never ran: the exec failed, or its limits could not be set up.
    SpawnError,
    /// A user stopped it (`wrangle stop`, `POST /v1/stop`).
    User,
    /// A user killed it (`wrangle kill`).
    Kill,
    /// It ran longer than its `--timeout`.
    Timeout,
    /// It was hung and `--on-hang` stopped it.
    Hang,
    /// Its tree went over `--memory-max`.
    Memory,
    /// It (or its group) went over its budget.
    Budget,
    /// It went on after its final result for longer than `--linger`.
    Lingered,
    /// The daemon was stopped with `--stop-agents`.
    Shutdown,
    /// `wrangle restart` stopped it to start it again.
    Restart,
    /// `wrangle rm --force` stopped it to remove it.
    Remove,
    /// Its shim was lost while no daemon watched it.
    Lost,
}

impl Cause {
    /// Every cause.
    pub const ALL: [Cause; 13] = [
        Cause::Exit,
        Cause::SpawnError,
        Cause::User,
        Cause::Kill,
        Cause::Timeout,
        Cause::Hang,
        Cause::Memory,
        Cause::Budget,
        Cause::Lingered,
        Cause::Shutdown,
        Cause::Restart,
        Cause::Remove,
        Cause::Lost,
    ];

    /// The name used in the API, the store and metrics' labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Exit => "exit",
            Cause::SpawnError => "spawn_error",
            Cause::User => "user",
            Cause::Kill => "kill",
            Cause::Timeout => "timeout",
            Cause::Hang => "hang",
            Cause::Memory => "memory",
            Cause::Budget => "budget",
            Cause::Lingered => "lingered",
            Cause::Shutdown => "shutdown",
            Cause::Restart => "restart",
            Cause::Remove => "remove",
            Cause::Lost => "lost",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cause {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cause::ALL
            .into_iter()
            .find(|cause| cause.as_str() == s)
            .ok_or_else(|| format!("unknown cause {s:?}"))
    }
}

/// A message of the stream that is not an event: it has no id, so a
/// client's `Last-Event-ID` stays on the last event it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Notice {
    /// Events after `since` up to `oldest` (excluded) are no longer kept:
    /// the stream goes on from `oldest`.
    Gap {
        /// The id the client asked to resume after (absent when it asked
        /// for a time: events from before the oldest kept one are gone).
        since: Option<u64>,
        /// The oldest id still kept (the next event sent is this one or
        /// later).
        oldest: u64,
    },
    /// The client did not keep up and is disconnected; every event up to
    /// `last_id` was sent. Resume with `since=last_id`.
    Lagged {
        /// The last event sent.
        last_id: u64,
    },
}

impl Notice {
    /// The notice's type name: `gap` or `lagged`.
    pub fn name(&self) -> &'static str {
        match self {
            Notice::Gap { .. } => "gap",
            Notice::Lagged { .. } => "lagged",
        }
    }
}

/// One message of the stream as a client reads it: an event or a notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StreamMessage {
    /// A notice (tried first: it has no `id`).
    Notice(Notice),
    /// An event.
    Event(Box<Event>),
}

/// `GET /v1/events`: which events to send, and from where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// Resume after this point: an event id (`1234`), a time (RFC 3339,
    /// `2026-12-06T10:00:00Z`) or a duration ago (`10m`, `2h`). The
    /// `Last-Event-ID` header does the same with an id. Without either,
    /// the stream starts with the next event.
    #[serde(default)]
    pub since: Option<String>,
    /// Only events of this agent: id, name or unique id prefix (an agent
    /// not known now is matched by its exact id or name).
    #[serde(default)]
    pub agent: Option<String>,
    /// Only events of agents in this group (and of the group itself).
    #[serde(default)]
    pub group: Option<String>,
    /// Only events whose type starts with one of these prefixes,
    /// comma-separated: `agent.exited`, `agent.health,daemon.`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `false`: end after the events already recorded (default `true`:
    /// go on with new ones as they happen).
    #[serde(default)]
    pub follow: Option<bool>,
    /// Seconds between keep-alive comments on an idle stream (default 15).
    #[serde(default)]
    pub heartbeat: Option<f64>,
}

/// Where a stream starts, as `since` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// After this event id.
    Id(u64),
    /// With the first event at or after this time.
    Time(DateTime<Utc>),
}

/// Parses a `since`: an event id (digits only), an RFC 3339 time, or a
/// duration before `now` (`90s`, `10m`, `1h30m`; a unit is needed, since
/// a bare number is an id).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<Since, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("`since` is empty: give an event id, a time or a duration like 10m".into());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.parse().map(Since::Id).map_err(|_| {
            format!(
                "invalid `since` {text:?}: an event id is at most {}",
                u64::MAX
            )
        });
    }
    crate::parse::parse_time_or_ago("`since`", trimmed, now)
        .map(Since::Time)
        .map_err(|error| {
            if error.contains("too far back") {
                error
            } else {
                format!(
                    "invalid `since` {text:?}: give an event id (1234), a time (2026-12-06T10:00:00Z) or a duration ago (10m, 2h)"
                )
            }
        })
}

/// Splits a `type` filter into its prefixes, checking each: a prefix must
/// start an event type (`agent.`, `agent.exited`, `daemon`).
pub fn parse_type_filter(text: &str) -> Result<Vec<String>, String> {
    let prefixes: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|prefix| !prefix.is_empty())
        .map(str::to_string)
        .collect();
    if prefixes.is_empty() {
        return Err("the type filter is empty: give a type such as agent.exited, or a prefix such as agent.".into());
    }
    for prefix in &prefixes {
        if !EVENT_TYPES
            .iter()
            .any(|kind| kind.starts_with(prefix.as_str()))
        {
            return Err(format!(
                "no event type starts with {prefix:?}; the types are {}",
                EVENT_TYPES.join(", ")
            ));
        }
    }
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_event_is_flat_json_with_its_type() {
        let event = Event {
            id: 7,
            time: at("2026-12-06T10:00:00.5Z"),
            kind: EventKind::Exited {
                state: State::Failed,
                exit_code: Some(3),
                signal: None,
                cause: Some(Cause::Exit),
                reason: Some("exited with code 3".into()),
                runtime_seconds: Some(1.5),
            },
            agent: Some(EventAgent {
                id: "abc".into(),
                name: "build".into(),
                group: None,
            }),
            run: Some(2),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["id"], 7);
        assert_eq!(json["type"], "agent.exited");
        assert_eq!(json["state"], "failed");
        assert_eq!(json["cause"], "exit");
        assert_eq!(json["agent"]["name"], "build");
        assert_eq!(json["run"], 2);
        assert_eq!(json["time"], "2026-12-06T10:00:00.500Z");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.kind.name(), "agent.exited");
    }

    #[test]
    fn every_type_round_trips_and_unknown_ones_are_kept_apart() {
        let starting = r#"{"id":1,"time":"2026-12-06T10:00:00Z","type":"agent.starting","run":1}"#;
        let event: Event = serde_json::from_str(starting).unwrap();
        assert_eq!(event.kind, EventKind::Starting {});
        let newer = r#"{"id":2,"time":"2026-12-06T10:00:00Z","type":"agent.telemetry","spans":5}"#;
        let event: Event = serde_json::from_str(newer).unwrap();
        assert_eq!(event.kind, EventKind::Unknown);
        for kind in EVENT_TYPES {
            assert!(parse_type_filter(kind).is_ok(), "{kind}");
        }
    }

    #[test]
    fn notices_and_events_are_told_apart() {
        let lagged: StreamMessage =
            serde_json::from_str(r#"{"type":"lagged","last_id":9}"#).unwrap();
        assert_eq!(lagged, StreamMessage::Notice(Notice::Lagged { last_id: 9 }));
        let event: StreamMessage = serde_json::from_str(
            r#"{"id":3,"time":"2026-12-06T10:00:00Z","type":"daemon.stopping","stop_agents":false}"#,
        )
        .unwrap();
        assert!(matches!(event, StreamMessage::Event(_)));
    }

    #[test]
    fn since_is_an_id_a_time_or_a_duration_ago() {
        let now = at("2026-12-06T10:00:00Z");
        assert_eq!(parse_since("42", now), Ok(Since::Id(42)));
        assert_eq!(
            parse_since("2026-12-06T09:00:00+00:00", now),
            Ok(Since::Time(at("2026-12-06T09:00:00Z")))
        );
        assert_eq!(
            parse_since("10m", now),
            Ok(Since::Time(at("2026-12-06T09:50:00Z")))
        );
        assert!(parse_since("", now).is_err());
        assert!(parse_since("yesterday", now)
            .unwrap_err()
            .contains("invalid `since`"));
        assert!(parse_since("99999999999999999999999", now)
            .unwrap_err()
            .contains("at most 18446744073709551615"));
    }

    #[test]
    fn type_filters_are_prefixes_of_known_types() {
        assert_eq!(
            parse_type_filter("agent.exited, daemon.").unwrap(),
            vec!["agent.exited".to_string(), "daemon.".to_string()]
        );
        assert!(parse_type_filter("agent.exit").is_ok());
        assert!(parse_type_filter("container.die")
            .unwrap_err()
            .contains("no event type starts with"));
        assert!(parse_type_filter(" , ").is_err());
    }
}
