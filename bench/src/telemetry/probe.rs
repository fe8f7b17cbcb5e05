//! The latency probe: while the fleet exports, the benchmark acts as one
//! agent after another. It reads the agent's endpoint, token and resource
//! from its environment in `/proc` (the benchmark runs as root, or as the
//! agents' user), posts a record of its own with them, and polls `GET
//! /v1/agents/{id}` until the agent's telemetry shows it.
//!
//! The probe's record is a call of [`otlp::PROBE_CALL`], whose 100,000
//! input tokens tell it from the agent's own records (3 each) landing
//! meanwhile: it shows when the agent's input tokens have grown by that
//! much, not merely when its calls have grown.

use super::Seen;
use crate::cleanup;
use crate::client::Api;
use crate::otlp::{self, Poster};
use anyhow::{bail, Context, Result};
use hyper::{Method, StatusCode};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a posted record may take to show before the sample fails.
const SHOW_LIMIT: Duration = Duration::from_secs(5);

/// One agent the probe posts as.
#[derive(Debug, Clone)]
pub struct Target {
    /// The agent's name.
    name: String,
    /// Its `OTEL_EXPORTER_OTLP_ENDPOINT`.
    endpoint: String,
    /// Its run's token.
    token: String,
    /// Its `OTEL_RESOURCE_ATTRIBUTES`.
    resource: Vec<(String, String)>,
}

/// One record, timed.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// From just before the POST's first byte was written until its 200
    /// was read: the daemon takes, decodes and counts the record (storing
    /// it) before it answers.
    pub post: Duration,
    /// From the 200 until a `GET /v1/agents/{id}` answer showed the
    /// record (read and decoded by the benchmark).
    pub shown: Duration,
    /// Both: from the POST's first byte to the answer that showed it.
    pub total: Duration,
    /// `GET`s it took (1: the first one after the 200 showed it).
    pub gets: u32,
}

/// The probe's records during one window.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Those that showed, in the order they were posted.
    pub samples: Vec<Sample>,
    /// Those that failed: why.
    pub failures: Vec<String>,
    /// Records answered 200, per agent name: the agents' telemetry counts
    /// them too.
    pub posted: BTreeMap<String, u64>,
}

/// The agents to post as, `samples` of them spread over the fleet (the
/// same one again only when there are more samples than agents), each
/// read from its process's environment.
pub(super) fn targets(agents: &[Seen], samples: usize) -> Result<Vec<Target>> {
    if agents.is_empty() {
        bail!("no agent to post as");
    }
    (0..samples)
        .map(|k| {
            let agent = &agents[k * agents.len() / samples.max(1) % agents.len()];
            let pid = agent
                .pid
                .with_context(|| format!("agent {} has no pid", agent.name))?;
            target_of(&agent.name, pid)
        })
        .collect()
}

/// What process `pid` of agent `name` was told to export to.
fn target_of(name: &str, pid: i32) -> Result<Target> {
    let environ = std::fs::read(format!("/proc/{pid}/environ"))
        .with_context(|| format!("cannot read the environment of agent {name} (pid {pid})"))?;
    let mut found = BTreeMap::new();
    for entry in environ.split(|byte| *byte == 0) {
        let entry = String::from_utf8_lossy(entry);
        if let Some((key, value)) = entry.split_once('=') {
            if key.starts_with("OTEL_") {
                found.insert(key.to_string(), value.to_string());
            }
        }
    }
    let get = |key: &str| {
        found
            .get(key)
            .cloned()
            .with_context(|| format!("agent {name} (pid {pid}) has no {key}"))
    };
    let headers = get("OTEL_EXPORTER_OTLP_HEADERS")?;
    Ok(Target {
        name: name.to_string(),
        endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT")?,
        token: otlp::bearer_token(&headers)
            .with_context(|| format!("agent {name}: no bearer token in {headers:?}"))?,
        resource: otlp::resource_attributes(&get("OTEL_RESOURCE_ATTRIBUTES")?),
    })
}

/// Posts one record as each of `targets`, spread evenly over `window`
/// from now, and times each.
pub(super) async fn run(api: &Api, targets: &[Target], window: Duration) -> Result<Latency> {
    let mut latency = Latency::default();
    let started = tokio::time::Instant::now();
    for (k, target) in targets.iter().enumerate() {
        let at = started + window.mul_f64((k as f64 + 0.5) / targets.len() as f64);
        tokio::time::sleep_until(at).await;
        if cleanup::interrupted() {
            bail!("interrupted");
        }
        match sample(api, target, k as u64, &mut latency.posted).await {
            Ok(sample) => latency.samples.push(sample),
            Err(error) => latency
                .failures
                .push(format!("as agent {}: {error:#}", target.name)),
        }
    }
    Ok(latency)
}

/// The agent's input tokens as its telemetry counts them now.
async fn input_tokens(connection: &mut crate::client::Connection, name: &str) -> Result<u64> {
    let path = format!("/v1/agents/{name}");
    let agent: Seen = connection
        .send(Method::GET, &path, None)
        .await?
        .parse(StatusCode::OK, "GET /v1/agents/{id}")?;
    Ok(agent.telemetry().map_or(0, |t| t.tokens.input))
}

/// Posts record `k` as `target` and times it until it shows; counts it
/// in `posted` once it is answered 200.
async fn sample(
    api: &Api,
    target: &Target,
    k: u64,
    posted: &mut BTreeMap<String, u64>,
) -> Result<Sample> {
    // Both connections are open before the clock starts.
    let mut connection = api.connect().await?;
    let before = input_tokens(&mut connection, &target.name).await?;
    let mut poster = Poster::new(&target.endpoint, &target.token)?;
    poster.connect()?;
    let session = format!("wrangle-bench-probe-{k}");
    let body = otlp::api_request_body(
        &otlp::PROBE_CALL,
        &target.resource,
        &session,
        k,
        otlp::now_unix_nanos(),
    );
    // A blocking post on the runtime's one thread: nothing else is due on
    // it meanwhile (the window is watched from a thread of its own).
    let sent = Instant::now();
    let status = poster.post(&body)?;
    let answered = Instant::now();
    if status != 200 {
        bail!("the post was answered {status}");
    }
    *posted.entry(target.name.clone()).or_default() += 1;
    let mut gets = 0;
    loop {
        let input = input_tokens(&mut connection, &target.name).await?;
        gets += 1;
        if input >= before + otlp::PROBE_CALL.tokens.input {
            let seen = Instant::now();
            return Ok(Sample {
                post: answered - sent,
                shown: seen - answered,
                total: seen - sent,
                gets,
            });
        }
        if answered.elapsed() > SHOW_LIMIT {
            bail!("the record answered 200 had not shown after {SHOW_LIMIT:?} ({gets} GETs)");
        }
    }
}
