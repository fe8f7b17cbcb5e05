//! wrangle's daemon: the engine behind an HTTP API on a Unix socket
//! (mode 0600 in a 0700 home). One daemon per home, guaranteed by a lock.

mod daemon;
mod error;
mod events;
mod forward;
mod metrics;
mod otlp;
mod peer;
mod routes;

use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use wrangle_engine::events::EventsConfig;
use wrangle_engine::Retention;
use wrangle_engine::{Engine, EngineConfig};
use wrangle_os::Containment;

/// How a daemon is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// `$WRANGLE_HOME`.
    pub home: PathBuf,
    /// Most agents that may run at once (`wrangle daemon --max-running`).
    pub max_running: Option<u32>,
    /// The sampler's tick (`wrangle daemon --sample-interval`); the
    /// default when absent.
    pub sample_interval: Option<Duration>,
    /// How long events are kept (`--events-keep`); 7 days when absent.
    pub events_keep: Option<Duration>,
    /// Most events kept (`--events-max`); 500,000 when absent.
    pub events_max: Option<u64>,
    /// Most agents with series of their own on `/metrics`
    /// (`--metrics-agents-max`); 1000 when absent.
    pub metrics_agents_max: Option<usize>,
    /// Most bytes all runs' logs may take (`--logs-max-total`); a tenth
    /// of the home's file system, at most 10G, when absent.
    pub logs_max_total: Option<u64>,
}

/// How long events are kept when no `--events-keep` is given.
pub const DEFAULT_EVENTS_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most events kept when no `--events-max` is given.
pub const DEFAULT_EVENTS_MAX: u64 = 500_000;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    shutdown: Arc<Notify>,
    metrics: Arc<metrics::Metrics>,
}

/// The OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wrangle",
        description = "A process supervisor for fleets of long-running agents"
    ),
    paths(
        routes::daemon_info,
        routes::daemon_stop,
        routes::doctor,
        routes::list_agents,
        routes::create_agent,
        routes::create_batch,
        routes::inspect_agent,
        routes::remove_agent,
        routes::kill_agent,
        routes::wait_agent,
        routes::agent_logs,
        routes::agent_runs,
        routes::restart_agent,
        routes::validate_agent,
        routes::list_groups,
        routes::set_group,
        routes::stop_agents,
        routes::summary,
        routes::cost,
        events::events,
        metrics::scrape,
    )
)]
pub struct ApiDoc;

/// How long requests still in flight (a `wait`, a `logs -f`) may hold the
/// daemon after it was asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs a daemon for `options.home` in this process until it is asked to
/// stop (API call, SIGTERM or SIGINT). Returns at once, successfully, when
/// another daemon already serves that home. Agents keep running after the
/// daemon exits; the next daemon re-attaches them.
pub fn serve(options: Options) -> anyhow::Result<()> {
    let home = daemon::prepare_home(&options.home)?;
    let Some(lock) = daemon::lock_home(&home)? else {
        eprintln!(
            "wrangle: a daemon already runs for {} (pid {})",
            home.display(),
            daemon::running_pid(&home).map_or("unknown".into(), |pid| pid.to_string())
        );
        return Ok(());
    };
    init_tracing();
    daemon::raise_fd_limit();
    wrangle_os::memory::give_back_large_frees();
    // The daemon waits for its own children too (the zygote, command
    // probes): their exit statuses must not be reaped away.
    if let Err(error) = wrangle_os::signals::wait_for_children_again() {
        tracing::warn!("cannot restore SIGCHLD: {error}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wrangle-daemon")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(home.clone(), &options));
    daemon::remove_runtime_files(&home);
    drop(lock);
    result
}

async fn run(home: PathBuf, options: &Options) -> anyhow::Result<()> {
    let containment = Containment::detect();
    tracing::info!(home = %home.display(), containment = %containment.describe(), "starting");
    let shim_program = std::env::current_exe().context("cannot find the wrangle binary")?;
    let (bind_telemetry, telemetry_listener) = otlp::binder();
    let engine = Engine::open(EngineConfig {
        home: home.clone(),
        shim_program,
        containment,
        max_running: options.max_running,
        sample_interval: options
            .sample_interval
            .unwrap_or(wrangle_engine::sampler::DEFAULT_INTERVAL),
        events: EventsConfig::default(),
        retention: Retention {
            max_age: Some(options.events_keep.unwrap_or(DEFAULT_EVENTS_KEEP)),
            max_events: Some(options.events_max.unwrap_or(DEFAULT_EVENTS_MAX)),
        },
        logs_max_total: options.logs_max_total.unwrap_or_else(|| {
            wrangle_engine::logcap::default_max_total(
                wrangle_os::features::filesystem_space(&home).map(|(size, _)| size),
            )
        }),
        bind_telemetry,
    })
    .await
    .map_err(|error| anyhow::anyhow!("cannot open the store in {}: {error}", home.display()))?;
    let listener = daemon::bind_socket(&home)?;
    serve_telemetry(&engine, &telemetry_listener);
    let engine_at_exit = engine.clone();
    daemon::write_pid_file(&home)?;
    let shutdown = Arc::new(Notify::new());
    let metrics = Arc::new(metrics::Metrics::new(
        engine.clone(),
        options
            .metrics_agents_max
            .unwrap_or(metrics::DEFAULT_AGENTS_MAX),
    ));
    let state = AppState {
        engine: engine.clone(),
        shutdown: shutdown.clone(),
        metrics,
    };
    let asked_to_stop = {
        let shutdown = shutdown.clone();
        async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                // `daemon stop` has said so already.
                _ = shutdown.notified() => {}
                _ = terminate.recv() => engine.shutting_down(false),
                _ = interrupt.recv() => engine.shutting_down(false),
            }
            // Streams end now, after what they have queued, so that their
            // clients go on to the next daemon.
            engine.close_streams();
        }
    };
    tracing::info!(pid = std::process::id(), "ready");
    let (stopping_sender, stopping) = tokio::sync::oneshot::channel::<()>();
    let socket_home = home.clone();
    let listener = peer::OwnUserOnly::new(listener, rustix::process::geteuid().as_raw());
    let server = axum::serve(listener, routes::router(state)).with_graceful_shutdown(async move {
        asked_to_stop.await;
        // From now on new clients find no daemon and start the next one
        // (which waits for this one's lock), instead of connecting to a
        // listener that accepts no more.
        daemon::remove_socket(&socket_home);
        let _ = stopping_sender.send(());
    });
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        result = &mut server => return result.context("the server task failed")?.context("the server failed"),
        _ = stopping => {}
    }
    // In-flight requests get a moment to answer; long ones (`wait`,
    // `logs -f`) are cut after it, and their clients see the daemon go.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
    let cleanup = engine_at_exit.clone();
    let _ = tokio::task::spawn_blocking(move || cleanup.finish_cleanup(SHUTDOWN_GRACE)).await;
    tracing::info!("stopped; agents keep running");
    Ok(())
}

/// Serves the agents' telemetry on the port the engine bound, for as long
/// as the daemon runs.
fn serve_telemetry(engine: &Engine, bound: &otlp::BoundListener) {
    let Some(listener) = bound.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        tracing::warn!("no telemetry port could be bound: agents' own telemetry is not received");
        return;
    };
    otlp::serve(engine.clone(), listener);
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WRANGLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// How this crate's property tests run (see
/// [`wrangle_wire::testing::proptest_config`]).
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    wrangle_wire::testing::proptest_config()
}
