//! An agent as the API shows it ([`AgentView`]): its spec, its status,
//! what the sampler last saw of its run and what its session says.

use crate::adapters::Prices;
use crate::model::Agent;
use crate::probe::HealthCheck;
use crate::sampler::Observation;
use chrono::{DateTime, Utc};
use wrangle_store::Ledgered;
use wrangle_wire::parse::signal_name;
use wrangle_wire::{AdapterKind, AgentView, SessionView, TelemetryView, TokenCounts};

impl Agent {
    /// The agent as the API shows it, `now` being the time of the answer,
    /// `observed` what the sampler saw of the current run and `spent` what
    /// the ledger holds of all its runs.
    pub fn view(
        &self,
        now: DateTime<Utc>,
        observed: Option<&Observation>,
        prices: &Prices,
        spent: Ledgered,
    ) -> AgentView {
        let identity = &self.identity;
        let run = &self.status.run;
        let runtime = run.runtime_seconds(now);
        let (health, health_reason) = self.current_health();
        AgentView {
            id: identity.id.clone(),
            name: identity.name.clone(),
            state: self.status.state,
            health,
            health_reason: health_reason.map(str::to_owned),
            run: run.number,
            restarts: run.number.saturating_sub(1),
            restart: identity.spec.restart.policy,
            max_restarts: identity.spec.restart.max_restarts,
            group: identity.spec.group.clone(),
            priority: identity.spec.priority,
            labels: identity.spec.labels.clone(),
            on_hang: identity.spec.restart.on_hang,
            timeout_seconds: identity
                .spec
                .restart
                .timeout()
                .map(|timeout| timeout.as_secs_f64()),
            pid: run.process.map(|p| p.pid),
            shim_pid: run.shim.map(|p| p.pid),
            command: identity.spec.command.clone(),
            cwd: identity.spec.cwd.display().to_string(),
            env: identity.spec.env.keys().cloned().collect(),
            stop_signal: signal_name(identity.spec.stop_signal),
            stop_timeout_seconds: identity.spec.stop_timeout().as_secs_f64(),
            created_at: identity.created_at,
            started_at: run.started_at,
            ended_at: run.ended_at,
            exit_code: run.exit_code,
            signal: run.signal.map(signal_name),
            reason: self.status.reason.clone(),
            cause: run.cause,
            restart_at: self.status.restart_at,
            runtime_seconds: runtime,
            containment: Some(match &run.cgroup {
                Some(cgroup) => format!("cgroup {}", cgroup.display()),
                None => "process group + subreaper".to_string(),
            })
            .filter(|_| run.shim.is_some()),
            process: observed.and_then(|seen| seen.process.clone()),
            tree: observed.and_then(|seen| seen.tree.clone()),
            progress: observed.and_then(|seen| seen.report.progress),
            message: observed.and_then(|seen| seen.report.message.clone()),
            details: observed.and_then(|seen| seen.report.details.clone()),
            last_output_at: observed.and_then(|seen| seen.last_output_at),
            last_heartbeat_at: observed.and_then(|seen| seen.last_heartbeat_at),
            idle_timeout_seconds: identity.spec.idle_timeout().map(|t| t.as_secs_f64()),
            health_check: identity
                .spec
                .health_check
                .as_ref()
                .map(HealthCheck::describe),
            limits: crate::limits::view(&identity.spec.limits, &run.limits),
            session: self.session_view(prices),
            total_cost_usd: (spent.cost_usd > 0.0).then_some(spent.cost_usd),
            total_tokens: (spent.tokens.total() > 0).then_some(spent.tokens),
            stdout_log: run.stdout_log().display().to_string(),
            stderr_log: run.stderr_log().display().to_string(),
            log_max_size_bytes: Some(identity.spec.logs.max_size),
            log_max_files: Some(identity.spec.logs.max_files),
        }
    }

    /// The current run's session, with its telemetry.
    fn session_view(&self, prices: &Prices) -> Option<SessionView> {
        let findings = &self.session;
        let read = findings
            .read
            .as_ref()
            .filter(|_| findings.run == self.status.run.number)?;
        let mut view = read.reader.view(prices, findings.calls());
        view.telemetry_note = findings.telemetry_note.clone();
        if let Some(telemetry) = &findings.telemetry {
            if view.waiting.is_none() {
                view.waiting = telemetry.waiting();
            }
            // What no adapter reads (`claude -p` printing text), the
            // telemetry tells.
            if read.reader.kind() == AdapterKind::None {
                view.turns = u32::try_from(telemetry.calls.calls).unwrap_or(u32::MAX);
                view.tool_calls = u32::try_from(telemetry.tools.finished).unwrap_or(u32::MAX);
                view.tool = telemetry.tools.running().cloned();
                for model in telemetry.calls.tokens.keys() {
                    if !model.is_empty() && !view.models.contains(model) {
                        view.models.push(model.clone());
                    }
                }
            }
        }
        if view.retrying.is_none() {
            // A retry only the telemetry tells of (Codex's are silent).
            view.retrying = findings
                .telemetry
                .as_ref()
                .filter(|telemetry| telemetry.busy(chrono::Utc::now()).is_some())
                .and_then(|telemetry| telemetry.retrying.clone());
        }
        view.telemetry = findings.telemetry.as_ref().map(|telemetry| {
            let calls = &telemetry.calls;
            let mut tokens = TokenCounts::default();
            for used in calls.tokens.values() {
                tokens.add(used);
            }
            let cost_usd = calls.cost_usd();
            // Once the output's final figures are the ones shown, say how
            // the calls' differ, if they do; where the calls' are kept
            // after the final result (a thread's totals), say how the
            // output's differ.
            let session = read.reader.session();
            let difference = if !view.figures_from_telemetry {
                (calls.calls > 0)
                    .then(|| difference(&view, tokens, cost_usd))
                    .flatten()
            } else if session.result.is_some() && !session.tokens.is_empty() {
                thread_difference(tokens, session.total_tokens())
            } else {
                None
            };
            TelemetryView {
                endpoint: telemetry.plan.endpoint.clone(),
                added: telemetry.plan.shown(),
                forwarded_to: telemetry.plan.forward.as_ref().map(|forward| {
                    forward
                        .logs_endpoint
                        .clone()
                        .unwrap_or_else(|| forward.endpoint.clone())
                }),
                calls: calls.calls,
                tokens,
                cost_usd,
                last_at: telemetry.last_at,
                tools_run: telemetry.tools.finished,
                tools_failed: telemetry.tools.failed,
                tools_ms: telemetry.tools.busy_ms,
                denials: telemetry
                    .tools
                    .denials
                    .iter()
                    .map(|denial| {
                        let by = if denial.by_settings {
                            "settings"
                        } else {
                            "person"
                        };
                        format!("{} ({by})", denial.tool)
                    })
                    .collect(),
                difference,
            }
        });
        Some(view)
    }
}

/// How a thread's total in the output (`codex exec --json`'s
/// `turn.completed`) differs from the run's own calls, if it does: a
/// resumed thread's total counts its earlier runs too.
fn thread_difference(calls: TokenCounts, output: TokenCounts) -> Option<String> {
    (calls != output).then(|| {
        let earlier = if output.total() > calls.total() {
            ": the thread's earlier runs (a resumed thread's total counts them), which are not this run's"
        } else {
            ""
        };
        format!(
            "the output's thread total says in {}, out {}, cache read {}, cache write {}; this run's calls reported in {}, out {}, cache read {}, cache write {}, the figures kept{earlier}",
            output.input,
            output.output,
            output.cache_read,
            output.cache_write,
            calls.input,
            calls.output,
            calls.cache_read,
            calls.cache_write,
        )
    })
}

/// How the calls' figures differ from those `view` shows, if they do.
fn difference(view: &SessionView, tokens: TokenCounts, cost_usd: Option<f64>) -> Option<String> {
    // Less than a micro-dollar is rounding, not a difference.
    let costs_differ = match (cost_usd, view.cost_usd) {
        (Some(calls), Some(shown)) => (calls - shown).abs() >= 1e-6,
        _ => false,
    };
    (tokens != view.tokens || costs_differ).then(|| {
        let cost = |cost: Option<f64>| cost.map_or_else(|| "-".to_string(), |usd| format!("${usd:.6}"));
        format!(
            "the calls reported tokens in {}, out {}, cache read {}, cache write {} and {}; the final result says in {}, out {}, cache read {}, cache write {} and {}",
            tokens.input,
            tokens.output,
            tokens.cache_read,
            tokens.cache_write,
            cost(cost_usd),
            view.tokens.input,
            view.tokens.output,
            view.tokens.cache_read,
            view.tokens.cache_write,
            cost(view.cost_usd)
        )
    })
}
