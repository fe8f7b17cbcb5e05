//! `wrangle run`: create an agent and start it.

use crate::args::RunArgs;
use crate::client::{self, Client};
use crate::{output, routes};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use wrangle_wire::{AgentView, CreateAgent, State};

/// Creates the agent; the daemon answers once the exec is confirmed or has
/// failed. Prints the id (or the agent as JSON); a failed exec is an error.
pub async fn run(client: &Client, args: &RunArgs) -> Result<u8> {
    let request = create_request(args, std::env::current_dir, std::env::vars_os())?;
    let value: Value = client.post_create(&routes::agents(), &request).await?;
    let agent: AgentView = client::from_value(value.clone())?;
    if args.json {
        output::print_json(&value)?;
    }
    // An agent that started and then exited non-zero is failed too, but
    // its exec succeeded: only a run that never started is an error here.
    if agent.state == State::Failed && agent.started_at.is_none() {
        bail!("{}", start_failure(&agent, &request.command));
    }
    if !args.json {
        output::print_line(&agent.id)?;
    }
    Ok(0)
}

/// The request for `args`: the caller's environment as the base, `--env`
/// on top, and the working directory made absolute here, where relative
/// paths mean something.
fn create_request(
    args: &RunArgs,
    current_dir: impl FnOnce() -> io::Result<PathBuf>,
    environment: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<CreateAgent> {
    Ok(CreateAgent {
        name: args.name.clone(),
        command: args.command.clone(),
        env: args.env.iter().cloned().collect(),
        inherit_env: Some(utf8_environment(environment)),
        cwd: Some(working_directory(args.cwd.as_deref(), current_dir)?),
        options: args.options.clone(),
        labels: Default::default(),
    })
}

/// The environment as strings; a variable whose name or value is not
/// UTF-8 cannot travel in JSON and is left out.
pub(crate) fn utf8_environment(
    environment: impl IntoIterator<Item = (OsString, OsString)>,
) -> BTreeMap<String, String> {
    environment
        .into_iter()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// `--cwd` against the current directory, or the current directory.
fn working_directory(
    flag: Option<&Path>,
    current_dir: impl FnOnce() -> io::Result<PathBuf>,
) -> Result<String> {
    let directory = match flag {
        Some(path) if path.is_absolute() => path.to_path_buf(),
        flag => {
            let current = current_dir().context("cannot read the current directory")?;
            match flag {
                Some(relative) => current.join(relative),
                None => current,
            }
        }
    };
    match directory.into_os_string().into_string() {
        Ok(text) => Ok(text),
        Err(raw) => bail!(
            "the working directory {} is not valid UTF-8; give another with --cwd",
            Path::new(&raw).display()
        ),
    }
}

/// `cannot start "claud": No such file or directory: claud`.
fn start_failure(agent: &AgentView, sent: &[String]) -> String {
    let argv0 = agent
        .command
        .first()
        .or(sent.first())
        .map(String::as_str)
        .unwrap_or_default();
    let reason = agent.reason.as_deref().unwrap_or("the exec failed");
    format!("cannot start {argv0:?}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;
    use std::os::unix::ffi::OsStringExt;

    fn run_args(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["wrangle", "run"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Run(run) => *run,
            _ => unreachable!("parsed as run"),
        }
    }

    #[test]
    fn the_request_carries_the_raw_values_and_the_environment() {
        let args = run_args(&[
            "--name",
            "w1",
            "--env",
            "A=1",
            "--env",
            "A=2",
            "--stop-signal",
            "int",
            "--stop-timeout",
            "2m",
            "--health-cmd",
            "test -e ready",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--idle-timeout",
            "90s",
            "--",
            "claude",
            "-p",
            "hi",
        ]);
        let environment = [
            (OsString::from("PATH"), OsString::from("/bin")),
            (OsString::from_vec(b"BAD\xff".to_vec()), OsString::from("x")),
            (OsString::from("VAL"), OsString::from_vec(b"\xfe".to_vec())),
        ];
        let request = create_request(&args, || Ok(PathBuf::from("/work")), environment).unwrap();
        assert_eq!(request.name.as_deref(), Some("w1"));
        assert_eq!(request.command, ["claude", "-p", "hi"]);
        // The last --env of a name wins, as in a shell.
        assert_eq!(request.env, BTreeMap::from([("A".into(), "2".into())]));
        assert_eq!(
            request.inherit_env,
            Some(BTreeMap::from([("PATH".into(), "/bin".into())]))
        );
        assert_eq!(request.cwd.as_deref(), Some("/work"));
        assert_eq!(request.options.stop_signal.as_deref(), Some("int"));
        assert_eq!(request.options.stop_timeout.as_deref(), Some("2m"));
        assert_eq!(request.options.health_cmd.as_deref(), Some("test -e ready"));
        assert_eq!(request.options.health_interval.as_deref(), Some("1s"));
        assert_eq!(request.options.health_timeout, None);
        assert_eq!(request.options.health_retries, Some(1));
        assert_eq!(request.options.idle_timeout.as_deref(), Some("90s"));
    }

    #[test]
    fn the_working_directory_is_absolute() {
        let here = || Ok(PathBuf::from("/home/u/project"));
        assert_eq!(working_directory(None, here).unwrap(), "/home/u/project");
        assert_eq!(
            working_directory(Some(Path::new("sub/dir")), here).unwrap(),
            "/home/u/project/sub/dir"
        );
        assert_eq!(
            working_directory(Some(Path::new("/abs")), || Err(
                io::ErrorKind::NotFound.into()
            ))
            .unwrap(),
            "/abs"
        );
        let error = working_directory(None, || Err(io::ErrorKind::NotFound.into())).unwrap_err();
        assert!(format!("{error:#}").starts_with("cannot read the current directory: "));
    }

    #[test]
    fn a_failed_exec_names_the_program_and_the_reason() {
        let agent = AgentView {
            state: State::Failed,
            command: vec!["claud".into(), "-p".into()],
            reason: Some("No such file or directory: claud".into()),
            ..crate::commands::sample_agent()
        };
        assert_eq!(
            start_failure(&agent, &[]),
            r#"cannot start "claud": No such file or directory: claud"#
        );
        let agent = AgentView {
            command: Vec::new(),
            reason: None,
            ..agent
        };
        assert_eq!(
            start_failure(&agent, &["x y".into()]),
            r#"cannot start "x y": the exec failed"#
        );
    }
}
