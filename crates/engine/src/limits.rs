//! An agent's resource limits: checked when it is created, planned per run
//! from what the machine offers (detected once, [`LimitSupport`]), shown
//! by `inspect`, and read back from the shim when a run ends over its
//! memory limit.

use crate::error::EngineError;
use crate::Engine;
use serde::{Deserialize, Serialize};
use wrangle_os::limits::{Controller, ControllerSupport, LimitSupport};
use wrangle_os::RunCgroup;
use wrangle_shim::protocol::{Enforce, ExitRecord, Limit, LimitPlan, ShimState};
use wrangle_wire::parse::{self, format_size};
use wrangle_wire::{Enforcement, ErrorCode, LimitsView, RunOptions};

/// The limits an agent was created with; stored in its spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecLimits {
    /// Memory of the tree in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    /// CPU of the tree in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<f64>,
    /// Processes and threads of the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    /// Open files per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
}

impl SpecLimits {
    /// Checks the limits of the options of a run with the parsers the CLI uses.
    pub fn from_options(options: &RunOptions) -> Result<SpecLimits, EngineError> {
        let invalid = EngineError::invalid;
        Ok(SpecLimits {
            memory_max: options
                .memory_max
                .as_deref()
                .map(parse::parse_memory_max)
                .transpose()
                .map_err(invalid)?,
            cpu_max: options
                .cpu_max
                .as_deref()
                .map(parse::parse_cpu_max)
                .transpose()
                .map_err(invalid)?,
            pids_max: options
                .pids_max
                .map(|n| parse::check_count_limit("process limit", n))
                .transpose()
                .map_err(invalid)?,
            nofile: options
                .nofile
                .map(|n| parse::check_count_limit("open-file limit", n))
                .transpose()
                .map_err(invalid)?,
        })
    }

    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == SpecLimits::default()
    }
}

impl Engine {
    /// Refuses limits that nothing on this machine can enforce (CPU and
    /// processes need a controller; memory has the watchdog at least).
    pub(crate) fn check_limits(&self, limits: &SpecLimits) -> Result<(), EngineError> {
        self.limit_plan("check", 0, limits)
            .map(drop)
            .map_err(|message| EngineError::new(ErrorCode::FailedPrecondition, message))
    }

    /// How run `run` of agent `id` enforces `limits`, from what was
    /// detected at the daemon's start; the reason when a limit cannot be.
    pub(crate) fn limit_plan(
        &self,
        id: &str,
        run: u32,
        limits: &SpecLimits,
    ) -> Result<LimitPlan, String> {
        let support = &self.inner.limit_support;
        let name = format!("{id}-{run}");
        let by_controller = |controller: Controller, flag: &str| -> Result<Enforce, String> {
            match support.get(controller) {
                ControllerSupport::V2 { .. } => Ok(Enforce::CgroupV2),
                found @ ControllerSupport::V1 { .. } => Ok(Enforce::CgroupV1 {
                    group: found.group(&name).expect("a v1 group").0,
                }),
                ControllerSupport::Missing { why } => Err(format!(
                    "{flag} cannot be enforced here: no {} controller is usable ({why}); `wrangle doctor` tells more",
                    controller.name()
                )),
            }
        };
        // Memory always has the watchdog; CPU and processes need a
        // controller (`?` below: the reason why not).
        let memory_by =
            || by_controller(Controller::Memory, "--memory-max").unwrap_or(Enforce::Watchdog);
        let cpu_by = limits
            .cpu_max
            .map(|_| by_controller(Controller::Cpu, "--cpu-max"))
            .transpose()?;
        let pids_by = limits
            .pids_max
            .map(|_| by_controller(Controller::Pids, "--pids-max"))
            .transpose()?;
        Ok(LimitPlan {
            memory_max: limits.memory_max.map(|value| Limit {
                value,
                by: memory_by(),
            }),
            cpu_max: limits
                .cpu_max
                .zip(cpu_by)
                .map(|(value, by)| Limit { value, by }),
            pids_max: limits
                .pids_max
                .zip(pids_by)
                .map(|(value, by)| Limit { value, by }),
            nofile: limits.nofile.map(|value| Limit {
                value,
                by: Enforce::Rlimit,
            }),
        })
    }

    /// What can enforce limits here, as detected at the daemon's start.
    pub(crate) fn limit_support(&self) -> &LimitSupport {
        &self.inner.limit_support
    }
}

/// The limits as `inspect` shows them: the agent's values, and how the
/// run enforces each (`applied`, from the shim; empty before a run).
pub fn view(limits: &SpecLimits, applied: &LimitPlan) -> Option<LimitsView> {
    if limits.is_empty() {
        return None;
    }
    fn how<T>(limit: &Option<Limit<T>>) -> Option<Enforcement> {
        limit.as_ref().map(|limit| enforcement(&limit.by))
    }
    Some(LimitsView {
        memory_max_bytes: limits.memory_max,
        cpu_max_cores: limits.cpu_max,
        pids_max: limits.pids_max,
        nofile: limits.nofile,
        enforced_by: wrangle_wire::limits::LimitEnforcement {
            memory: how(&applied.memory_max),
            cpu: how(&applied.cpu_max),
            pids: how(&applied.pids_max),
            nofile: how(&applied.nofile),
        },
    })
}

/// The API's name of a way to enforce.
pub fn enforcement(by: &Enforce) -> Enforcement {
    match by {
        Enforce::CgroupV2 => Enforcement::CgroupV2,
        Enforce::CgroupV1 { .. } => Enforcement::CgroupV1,
        Enforce::Rlimit => Enforcement::Rlimit,
        Enforce::Watchdog => Enforcement::Watchdog,
    }
}

/// How the reason of a run ended for its memory begins.
pub const MEMORY_EXCEEDED: &str = "memory limit exceeded";

/// `memory limit exceeded (64 MiB): killed by SIGKILL`, when the run was
/// ended for its memory: the watchdog killed the tree, or the main process
/// died by SIGKILL while the OOM killer was at work in its cgroup.
pub fn memory_exceeded(shim: &ShimState, exit: ExitRecord) -> Option<String> {
    let limit = format_size(shim.limits.memory_max.as_ref()?.value);
    if let Some(kill) = &shim.memory_watchdog {
        return Some(format!(
            "{MEMORY_EXCEEDED} ({limit}): the tree held {}, killed by SIGKILL",
            format_size(kill.rss_bytes)
        ));
    }
    (shim.oom_kills > 0 && exit.signal == Some(libc::SIGKILL))
        .then(|| format!("{MEMORY_EXCEEDED} ({limit}): killed by SIGKILL"))
}

/// `; 2 processes of its tree killed by the OOM killer (memory limit 64
/// MiB)`, when the OOM killer was at work but the main process ended by
/// itself.
pub fn oom_note(shim: &ShimState) -> Option<String> {
    let limit = shim.limits.memory_max.as_ref()?.value;
    let plural = if shim.oom_kills == 1 {
        "process"
    } else {
        "processes"
    };
    (shim.oom_kills > 0).then(|| {
        format!(
            "; {} {plural} of its tree killed by the OOM killer (memory limit {})",
            shim.oom_kills,
            format_size(limit)
        )
    })
}

/// Kills what is left in the run's cgroup v1 groups and removes them, for
/// a run whose shim is gone without cleaning up.
pub fn remove_v1_groups(plan: &LimitPlan) {
    for group in plan.v1_groups() {
        let group = RunCgroup::existing(group);
        let _ = group.kill_all();
        for _ in 0..50 {
            if group.remove().is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_limits_are_parsed_and_checked() {
        let request = RunOptions {
            memory_max: Some("1.5G".into()),
            cpu_max: Some("0.5".into()),
            pids_max: Some(5),
            nofile: Some(32),
            ..RunOptions::default()
        };
        let limits = SpecLimits::from_options(&request).unwrap();
        assert_eq!(limits.memory_max, Some(3 << 29));
        assert_eq!(limits.cpu_max, Some(0.5));
        assert!(SpecLimits::from_options(&RunOptions::default())
            .unwrap()
            .is_empty());
        for bad in [
            RunOptions {
                memory_max: Some("lots".into()),
                ..RunOptions::default()
            },
            RunOptions {
                cpu_max: Some("0".into()),
                ..RunOptions::default()
            },
            RunOptions {
                pids_max: Some(0),
                ..RunOptions::default()
            },
        ] {
            let error = SpecLimits::from_options(&bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidArgument);
            assert!(error.message.starts_with("invalid"), "{}", error.message);
        }
    }

    #[test]
    fn an_empty_spec_stores_nothing_and_old_specs_load() {
        assert_eq!(serde_json::to_string(&SpecLimits::default()).unwrap(), "{}");
        let limits: SpecLimits = serde_json::from_str("{}").unwrap();
        assert!(limits.is_empty());
    }
}
