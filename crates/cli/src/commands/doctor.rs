//! `wrangle doctor`: what the daemon found on this machine, and what to do
//! about each problem.

use crate::args::DoctorArgs;
use crate::client::{self, Client};
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use serde_json::Value;
use wrangle_wire::doctor::{LimitSupport, LogsReport};
use wrangle_wire::parse::format_size;
use wrangle_wire::DoctorReport;

/// Exit code when something essential is missing.
const NOT_OK_EXIT: u8 = 1;

/// Prints the findings (as JSON with `--json`); exits non-zero only when
/// something wrangle cannot work without is missing.
pub async fn doctor(client: &Client, args: &DoctorArgs) -> Result<u8> {
    let value: Value = client.get(&routes::doctor()).await?;
    let report: DoctorReport = client::from_value(value.clone())?;
    if args.json {
        output::print_json(&value)?;
    } else {
        output::print(&describe(&report))?;
    }
    Ok(if report.ok { 0 } else { NOT_OK_EXIT })
}

/// The findings as `key: value` lines, then the problems with their fixes.
fn describe(report: &DoctorReport) -> String {
    let yes_no = |value: bool| if value { "yes" } else { "no" }.to_string();
    let limit = |support: &LimitSupport| match support.enforced_by {
        Some(how) => format!("{how}: {}", support.detail),
        None => support.detail.clone(),
    };
    let containment = &report.containment;
    let controllers = if containment.kind == "cgroup_v2" {
        format!(
            " (cgroup v2 controllers: {})",
            if containment.controllers.is_empty() {
                "none".to_string()
            } else {
                containment.controllers.join(", ")
            }
        )
    } else {
        String::new()
    };
    let mut table = Table::headless();
    for (key, value) in [
        ("wrangle", report.version.clone()),
        (
            "kernel",
            match report.wsl {
                Some(version) => format!("{} (Windows, WSL{version})", report.kernel),
                None => report.kernel.clone(),
            },
        ),
        (
            "user",
            format!(
                "uid {}{}",
                report.uid,
                if report.root { " (root)" } else { "" }
            ),
        ),
        (
            "home",
            format!("{} ({})", report.home, report.home_filesystem),
        ),
        (
            "containment",
            format!("{}{controllers}", containment.description),
        ),
        ("memory limits", limit(&report.memory)),
        ("cpu limits", limit(&report.cpu)),
        ("pids limits", limit(&report.pids)),
        ("nofile limits", limit(&report.nofile)),
        ("pidfd", yes_no(report.pidfd)),
        ("clone3 into cgroup", yes_no(report.clone_into_cgroup)),
        (
            "capacity",
            report.capacity.as_ref().map_or_else(
                || "unknown".to_string(),
                |capacity| {
                    format!(
                        "room for {} more running agents (limited by {})",
                        capacity.agents, capacity.limited_by
                    )
                },
            ),
        ),
        (
            "telemetry",
            report.telemetry.as_ref().map_or_else(
                || "not received".to_string(),
                |endpoint| format!("received at {endpoint} (OTLP/HTTP)"),
            ),
        ),
        (
            "logs",
            report
                .logs
                .as_ref()
                .map_or_else(|| "unknown".to_string(), describe_logs),
        ),
    ] {
        table.push(vec![format!("{key}:"), value]);
    }
    let mut text = table.render();
    if report.problems.is_empty() {
        text.push_str("no problems found\n");
    }
    for problem in &report.problems {
        let kind = if problem.essential {
            "problem (essential)"
        } else {
            "problem"
        };
        text.push_str(&format!(
            "{kind}: {}\n  fix: {}\n",
            problem.problem, problem.fix
        ));
    }
    text
}

/// The cap on the home's logs and what it deleted.
fn describe_logs(logs: &LogsReport) -> String {
    let mut text = format!(
        "{} of {} cap",
        format_size(logs.used_bytes),
        format_size(logs.max_total_bytes)
    );
    if logs.deleted_files > 0 {
        text.push_str(&format!(
            "; {} old files deleted ({})",
            logs.deleted_files,
            format_size(logs.deleted_bytes)
        ));
    }
    if let Some(free) = logs.free_bytes {
        text.push_str(&format!("; {} free on the disk", format_size(free)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrangle_wire::doctor::{ContainmentReport, Problem};
    use wrangle_wire::Enforcement;

    #[test]
    fn findings_and_problems_are_spelled_out() {
        let support = |enforced_by, detail: &str| LimitSupport {
            enforced_by,
            detail: detail.into(),
        };
        let report = DoctorReport {
            ok: true,
            version: "0.1.0".into(),
            kernel: "6.1.0".into(),
            root: true,
            uid: 0,
            home: "/h".into(),
            home_filesystem: "ext4".into(),
            containment: ContainmentReport {
                kind: "cgroup_v2".into(),
                path: Some("/sys/fs/cgroup/wrangle".into()),
                why: None,
                controllers: Vec::new(),
                description: "cgroup v2 per run under /sys/fs/cgroup/wrangle".into(),
            },
            memory: support(Some(Enforcement::CgroupV1), "a group per run"),
            cpu: support(Some(Enforcement::CgroupV1), "a group per run"),
            pids: support(None, "not enforced"),
            nofile: support(Some(Enforcement::Rlimit), "RLIMIT_NOFILE"),
            pidfd: true,
            clone_into_cgroup: false,
            telemetry: None,
            logs: Some(LogsReport {
                max_total_bytes: 10 << 30,
                used_bytes: 3 << 20,
                deleted_files: 4,
                deleted_bytes: 80 << 20,
                free_bytes: Some(5 << 30),
            }),
            capacity: None,
            wsl: None,
            problems: vec![Problem {
                essential: false,
                problem: "--pids-max cannot be enforced".into(),
                fix: "enable pids".into(),
            }],
        };
        let text = describe(&report);
        // Column widths aside, line by line.
        let lines: Vec<String> = text
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        for expected in [
            "user: uid 0 (root)",
            "containment: cgroup v2 per run under /sys/fs/cgroup/wrangle (cgroup v2 controllers: none)",
            "memory limits: cgroup v1: a group per run",
            "pids limits: not enforced",
            "clone3 into cgroup: no",
            "logs: 3 MiB of 10 GiB cap; 4 old files deleted (80 MiB); 5 GiB free on the disk",
            "problem: --pids-max cannot be enforced",
            "fix: enable pids",
        ] {
            assert!(lines.iter().any(|line| line == expected), "{expected:?} in {text}");
        }
        assert!(text.ends_with("  fix: enable pids\n"), "{text}");
    }
}
