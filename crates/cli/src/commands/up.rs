//! `wrangle up` and `wrangle down`: make the running set match a
//! declarative file (see [`crate::declaration`]), or stop what it
//! declares.
//!
//! `up` starts what is missing, recreates what changed (or had ended) and
//! leaves the rest alone, so running it twice starts nothing twice. It
//! never touches an agent the file does not declare, nor one of the same
//! name that another file or `wrangle run` started.

use crate::args::UpArgs;
use crate::client::Client;
use crate::commands::control::stop_line;
use crate::commands::run::utf8_environment;
use crate::declaration::{self, Declaration, DeclaredAgent, FileError, FILE_LABEL, HASH_LABEL};
use crate::{output, routes};
use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wrangle_wire::{AgentView, SetGroup, State, StopRequest, StopResult};

/// Reads and checks the file: every agent as the daemon would take it,
/// before anything is started.
async fn load(client: &Client, file: &Path) -> Result<Declaration> {
    let path = absolute(file)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let declaration = declaration::parse(&path, &text)?;
    for agent in &declaration.agents {
        if let Err(error) = client
            .post_accepted(&routes::validate(), &agent.request)
            .await
        {
            return Err(locate(client, &declaration.path, agent, error).await.into());
        }
    }
    Ok(declaration)
}

/// Pins the daemon's objection to an agent on the key that causes it (the
/// first key the daemon refuses on its own), or on the agent's header.
async fn locate(
    client: &Client,
    path: &Path,
    agent: &DeclaredAgent,
    error: anyhow::Error,
) -> FileError {
    for (key, line) in &agent.keys {
        let Some(alone) = agent.with_only(key) else {
            continue;
        };
        if let Err(error) = client.post_accepted(&routes::validate(), &alone).await {
            return FileError {
                path: path.to_path_buf(),
                line: *line,
                message: format!("agents.{}.{key}: {error:#}", agent.name),
            };
        }
    }
    FileError {
        path: path.to_path_buf(),
        line: agent.line,
        message: format!("agents.{}: {error:#}", agent.name),
    }
}

fn absolute(file: &Path) -> Result<PathBuf> {
    if file.is_absolute() {
        Ok(file.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(file))
    }
}

/// Every agent the daemon knows, by name.
async fn agents_by_name(client: &Client) -> Result<HashMap<String, AgentView>> {
    let agents: Vec<AgentView> = client.get(&routes::list(true)).await?;
    Ok(agents
        .into_iter()
        .map(|agent| (agent.name.clone(), agent))
        .collect())
}

/// True when `agent` was started from the file at `path`.
fn declared_in(agent: &AgentView, path: &Path) -> bool {
    agent.labels.get(FILE_LABEL).map(String::as_str) == path.to_str()
}

/// `wrangle up`.
pub async fn up(client: &Client, args: &UpArgs) -> Result<u8> {
    let declaration = load(client, &args.file).await?;
    for group in &declaration.groups {
        // What the file leaves out, it does not set: a budget set by
        // `wrangle group set` stays.
        let request = SetGroup {
            max_running: group.max_running.map(Some),
            budget_usd: group.budget_usd.map(Some),
        };
        let _: serde_json::Value = client.put(&routes::group(&group.name), &request).await?;
    }
    let existing = agents_by_name(client).await?;
    let environment = utf8_environment(std::env::vars_os());
    let mut failed = false;
    for agent in &declaration.agents {
        let line = match existing.get(&agent.name) {
            None => create(client, agent, &environment).await.map(|id| {
                format!("{}: created ({})", agent.name, short(&id))
            }),
            Some(found) if !declared_in(found, &declaration.path) => Err(anyhow!(
                "an agent of this name exists that {} did not start; rename the agent in the file, or remove the other (`wrangle rm {}`)",
                declaration.path.display(),
                agent.name
            )),
            Some(found)
                if found.labels.get(HASH_LABEL).map(String::as_str) == Some(agent.hash())
                    && !found.state.is_ended() =>
            {
                Ok(format!("{}: unchanged ({})", agent.name, found.state))
            }
            Some(found) => {
                let why = if found.state.is_ended() {
                    format!("it had ended: {}", found.state)
                } else {
                    "its declaration changed".to_string()
                };
                replace(client, found, agent, &environment)
                    .await
                    .map(|id| format!("{}: recreated ({}), as {why}", agent.name, short(&id)))
            }
        };
        match line {
            Ok(line) => output::print_line(&line)?,
            Err(error) => {
                failed = true;
                output::print_error(&error.context(agent.name.clone()));
            }
        }
    }
    Ok(u8::from(failed))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Creates the agent; a failed exec is an error.
async fn create(
    client: &Client,
    agent: &DeclaredAgent,
    environment: &std::collections::BTreeMap<String, String>,
) -> Result<String> {
    let mut request = agent.request.clone();
    request.inherit_env = Some(environment.clone());
    let created: AgentView = client.post(&routes::agents(), &request).await?;
    if created.state == State::Failed && created.started_at.is_none() {
        return Err(anyhow!(
            "cannot start: {}",
            created.reason.unwrap_or_else(|| "the exec failed".into())
        ));
    }
    Ok(created.id)
}

/// Stops (if need be) and removes `found`, then creates the declared agent
/// under the same name.
async fn replace(
    client: &Client,
    found: &AgentView,
    agent: &DeclaredAgent,
    environment: &std::collections::BTreeMap<String, String>,
) -> Result<String> {
    let _: AgentView = client.delete(&routes::remove(&found.id, true)).await?;
    create(client, agent, environment).await
}

/// `wrangle down`: stops every agent the file declares that runs.
pub async fn down(client: &Client, args: &UpArgs) -> Result<u8> {
    let path = absolute(&args.file)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let declaration = declaration::parse(&path, &text)?;
    let existing = agents_by_name(client).await?;
    let mut running = Vec::new();
    for agent in &declaration.agents {
        match existing.get(&agent.name) {
            Some(found) if declared_in(found, &path) && !found.state.is_ended() => {
                running.push(found.id.clone())
            }
            Some(found) if declared_in(found, &path) => {
                output::print_line(&format!("{}: not running ({})", agent.name, found.state))?
            }
            _ => output::print_line(&format!("{}: not started from this file", agent.name))?,
        }
    }
    if !running.is_empty() {
        let request = StopRequest {
            agents: running,
            ..StopRequest::default()
        };
        let results: Vec<StopResult> = client.post(&routes::stop(), &request).await?;
        for result in &results {
            output::print_line(&stop_line(result))?;
        }
    }
    Ok(0)
}
