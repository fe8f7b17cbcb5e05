//! `GET /metrics`: the Prometheus text exposition format (or OpenMetrics
//! when the scraper asks for it), made with `prometheus-client`.
//!
//! Everything but the count of API requests is read at scrape time from
//! the engine ([`wrangle_engine::metrics::FleetMetrics`]: the sampler's
//! last tick and the daemon's counters), so a scrape never samples, and
//! the series of a removed agent are gone with it.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Error;
use std::sync::Arc;
use wrangle_engine::metrics::{AgentMetrics, FleetMetrics};
use wrangle_engine::Engine;
use wrangle_wire::{Cause, Health, State as AgentState};

/// Agents with series of their own when none is given
/// (`--metrics-agents-max`).
pub const DEFAULT_AGENTS_MAX: usize = 1000;

/// The daemon's metrics: a registry with the request counter and the
/// collector that reads the engine at each scrape.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
}

/// Labels of `wrangle_api_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// The route's template, e.g. `/v1/agents/{agent}`.
    route: String,
    /// The HTTP status code.
    code: u16,
}

impl Metrics {
    /// Metrics of `engine`, with series for at most `agents_max` agents.
    pub fn new(engine: Engine, agents_max: usize) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "wrangle_api_requests",
            "API requests answered, by route and status code",
            requests.clone(),
        );
        registry.register_collector(Box::new(Fleet { engine, agents_max }));
        Metrics { registry, requests }
    }

    /// Counts one answered request.
    fn count(&self, route: &str, code: StatusCode) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                code: code.as_u16(),
            })
            .inc();
    }

    /// The whole exposition, in OpenMetrics text when `openmetrics`, else
    /// in Prometheus text (0.0.4).
    fn encode(&self, openmetrics: bool) -> Result<String, Error> {
        let mut text = String::with_capacity(64 * 1024);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        }
        Ok(text)
    }
}

/// The fleet, the daemon and each agent in Prometheus' text format
/// (OpenMetrics with `Accept: application/openmetrics-text`), from the
/// sampler's last tick.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn scrape(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    match metrics.encode(openmetrics) {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response(),
    }
}

/// Middleware counting every answered request by route and status.
pub async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.count(&route, response.status());
    response
}

/// Reads the engine at each scrape.
struct Fleet {
    engine: Engine,
    agents_max: usize,
}

/// `Collector` asks for it; the engine has nothing short to show.
impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("agents_max", &self.agents_max)
            .finish_non_exhaustive()
    }
}

impl Collector for Fleet {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let fleet = self.engine.fleet_metrics(self.agents_max);
        encode_daemon(&mut encoder, &fleet)?;
        encode_fleet(&mut encoder, &fleet)?;
        encode_agents(&mut encoder, &fleet)?;
        encode_process(&mut encoder, &fleet)
    }
}

/// One gauge without labels.
fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// One counter without labels; `name` without `_total`.
fn counter<N: prometheus_client::encoding::EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn encode_daemon(encoder: &mut DescriptorEncoder, fleet: &FleetMetrics) -> Result<(), Error> {
    let mut info = encoder.encode_descriptor(
        "wrangle_build_info",
        "The version of wrangle that answers (value 1)",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(1).encode(info.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
    let counters = &fleet.counters;
    let mut events = encoder.encode_descriptor(
        "wrangle_events",
        "Events recorded since the daemon started, by type",
        None,
        MetricType::Counter,
    )?;
    for kind in wrangle_wire::events::EVENT_TYPES {
        let count = counters.events.get(kind).copied().unwrap_or(0);
        ConstCounter::new(count).encode(events.encode_family(&[("type", kind)])?)?;
    }
    gauge(
        encoder,
        "wrangle_event_streams",
        "Event streams open (GET /v1/events)",
        fleet.subscribers as u64,
    )?;
    counter(
        encoder,
        "wrangle_event_streams_lagged",
        "Event streams cut off for not keeping up, since the daemon started",
        counters.lagged,
    )?;
    gauge(
        encoder,
        "wrangle_agent_series_omitted",
        "Agents left without series of their own (past --metrics-agents-max)",
        fleet.omitted as u64,
    )
}

fn encode_fleet(encoder: &mut DescriptorEncoder, fleet: &FleetMetrics) -> Result<(), Error> {
    let summary = &fleet.summary;
    let mut states =
        encoder.encode_descriptor("wrangle_agents", "Agents by state", None, MetricType::Gauge)?;
    for state in AgentState::ALL {
        let count = summary.by_state.get(&state).copied().unwrap_or(0);
        ConstGauge::new(count).encode(states.encode_family(&[("state", state.as_str())])?)?;
    }
    let mut healths = encoder.encode_descriptor(
        "wrangle_agents_health",
        "Agents that have not ended, by health",
        None,
        MetricType::Gauge,
    )?;
    for health in Health::ALL {
        let count = summary.by_health.get(&health).copied().unwrap_or(0);
        ConstGauge::new(count).encode(healths.encode_family(&[("health", health.as_str())])?)?;
    }
    let counters = &fleet.counters;
    counter(
        encoder,
        "wrangle_agent_starts",
        "Runs whose exec was confirmed, since the daemon started",
        counters.starts,
    )?;
    // Not `wrangle_agent_restarts_total`: that family is per agent, and
    // a series without the label in it would be counted twice by sum().
    counter(
        encoder,
        "wrangle_restarts",
        "Runs after an agent's first whose exec was confirmed, since the daemon started",
        counters.restarts,
    )?;
    let mut exits = encoder.encode_descriptor(
        "wrangle_agent_exits",
        "Runs that ended since the daemon started, by cause",
        None,
        MetricType::Counter,
    )?;
    for cause in Cause::ALL {
        let count = counters.exits.get(&cause).copied().unwrap_or(0);
        ConstCounter::new(count).encode(exits.encode_family(&[("cause", cause.as_str())])?)?;
    }
    gauge(
        encoder,
        "wrangle_agents_waiting",
        "Agents waiting for a person (a permission, a question)",
        summary
            .by_health
            .get(&Health::Waiting)
            .copied()
            .unwrap_or(0),
    )?;
    counter(
        encoder,
        "wrangle_cost_usd",
        "What agents' sessions have spent, in US dollars, removed agents included",
        summary.spent_usd,
    )
}

/// Per-agent series: the label `agent` is the name (unique), as people
/// query it.
fn encode_agents(encoder: &mut DescriptorEncoder, fleet: &FleetMetrics) -> Result<(), Error> {
    let agents = &fleet.agents;
    let mut info = encoder.encode_descriptor(
        "wrangle_agent_info",
        "Each agent with its id and group (value 1)",
        None,
        MetricType::Gauge,
    )?;
    for agent in agents {
        let labels = [
            ("agent", agent.name.as_str()),
            ("id", agent.id.as_str()),
            ("group", agent.group.as_deref().unwrap_or("")),
        ];
        ConstGauge::new(1).encode(info.encode_family(&labels)?)?;
    }
    let mut restarts = encoder.encode_descriptor(
        "wrangle_agent_restarts",
        "Runs of the agent after its first",
        None,
        MetricType::Counter,
    )?;
    for agent in agents {
        ConstCounter::new(u64::from(agent.restarts))
            .encode(restarts.encode_family(&[("agent", agent.name.as_str())])?)?;
    }
    let mut started = encoder.encode_descriptor(
        "wrangle_agent_start_time_seconds",
        "When the agent's current run started, in seconds since the epoch",
        None,
        MetricType::Gauge,
    )?;
    for agent in agents {
        if let Some(at) = agent.started_at {
            ConstGauge::new(seconds(at))
                .encode(started.encode_family(&[("agent", agent.name.as_str())])?)?;
        }
    }
    let mut output = encoder.encode_descriptor(
        "wrangle_agent_last_output_timestamp_seconds",
        "When the agent last wrote to stdout or stderr, in seconds since the epoch",
        None,
        MetricType::Gauge,
    )?;
    for agent in agents {
        if let Some(at) = agent.last_output_at {
            ConstGauge::new(seconds(at))
                .encode(output.encode_family(&[("agent", agent.name.as_str())])?)?;
        }
    }
    let trees = || {
        agents
            .iter()
            .filter_map(|agent| agent.tree.as_ref().map(|tree| (agent.name.as_str(), tree)))
    };
    let mut cpu = encoder.encode_descriptor(
        "wrangle_agent_cpu_seconds",
        "CPU time of the agent's whole process tree in its current run",
        None,
        MetricType::Counter,
    )?;
    for (name, tree) in trees() {
        ConstCounter::new(tree.cpu_seconds).encode(cpu.encode_family(&[("agent", name)])?)?;
    }
    let mut memory = encoder.encode_descriptor(
        "wrangle_agent_memory_bytes",
        "Resident memory of the agent's whole process tree",
        None,
        MetricType::Gauge,
    )?;
    for (name, tree) in trees() {
        ConstGauge::new(tree.rss_bytes).encode(memory.encode_family(&[("agent", name)])?)?;
    }
    let mut processes = encoder.encode_descriptor(
        "wrangle_agent_processes",
        "Processes in the agent's tree, zombies included",
        None,
        MetricType::Gauge,
    )?;
    for (name, tree) in trees() {
        ConstGauge::new(tree.processes).encode(processes.encode_family(&[("agent", name)])?)?;
    }
    let mut fds = encoder.encode_descriptor(
        "wrangle_agent_open_fds",
        "Open file descriptors of the agent's whole process tree",
        None,
        MetricType::Gauge,
    )?;
    for (name, tree) in trees() {
        ConstGauge::new(tree.fds).encode(fds.encode_family(&[("agent", name)])?)?;
    }
    encode_spend(encoder, agents)
}

/// What each agent's sessions spent over all its runs: tokens by kind and
/// US dollars. A CLI's final figures may correct its running estimate
/// down a little, which Prometheus reads as a counter reset.
fn encode_spend(encoder: &mut DescriptorEncoder, agents: &[AgentMetrics]) -> Result<(), Error> {
    let spenders = || agents.iter().filter(|agent| agent.spent.tokens.total() > 0);
    let mut tokens = encoder.encode_descriptor(
        "wrangle_agent_tokens",
        "Tokens the agent's sessions used over all its runs, by kind",
        None,
        MetricType::Counter,
    )?;
    for agent in spenders() {
        let used = &agent.spent.tokens;
        for (kind, count) in [
            ("input", used.input),
            ("output", used.output),
            ("cache_read", used.cache_read),
            ("cache_write", used.cache_write),
        ] {
            let labels = [("agent", agent.name.as_str()), ("kind", kind)];
            ConstCounter::new(count).encode(tokens.encode_family(&labels)?)?;
        }
    }
    let mut cost = encoder.encode_descriptor(
        "wrangle_agent_cost_usd",
        "What the agent's sessions cost over all its runs, in US dollars",
        None,
        MetricType::Counter,
    )?;
    for agent in spenders() {
        ConstCounter::new(agent.spent.cost_usd.max(0.0))
            .encode(cost.encode_family(&[("agent", agent.name.as_str())])?)?;
    }
    Ok(())
}

/// The daemon's own `process_*` series, as every Prometheus client
/// library exports them.
fn encode_process(encoder: &mut DescriptorEncoder, fleet: &FleetMetrics) -> Result<(), Error> {
    gauge(
        encoder,
        "process_start_time_seconds",
        "Start time of the process since the epoch in seconds",
        seconds(fleet.started_at),
    )?;
    let Ok(usage) = wrangle_os::sample::own_usage() else {
        return Ok(());
    };
    counter(
        encoder,
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        usage.cpu_seconds,
    )?;
    gauge(
        encoder,
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        usage.resident_bytes,
    )?;
    gauge(
        encoder,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes",
        usage.virtual_bytes,
    )?;
    gauge(
        encoder,
        "process_open_fds",
        "Number of open file descriptors",
        usage.open_fds,
    )?;
    if let Some(max) = usage.max_fds {
        gauge(
            encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            max,
        )?;
    }
    gauge(
        encoder,
        "process_threads",
        "Number of OS threads in the process",
        usage.threads,
    )
}

/// Seconds since the epoch, with the fraction.
fn seconds(at: chrono::DateTime<chrono::Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}
