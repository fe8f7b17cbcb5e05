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
use wrangle_wire::{AgentView, CreateAgents, ErrorBody, SetGroup, State, StopRequest, StopResult};

/// Most agents created per request: a batch is all or none, and its
/// answer holds every agent's view.
const BATCH_SIZE: usize = 1000;

/// Reads and checks the file: every agent as the daemon would take it,
/// in one request, before anything is started.
async fn load(client: &Client, file: &Path) -> Result<Declaration> {
    let path = absolute(file)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let declaration = declaration::parse(&path, &text)?;
    let batch = CreateAgents {
        inherit_env: None,
        agents: declaration
            .agents
            .iter()
            .map(|agent| agent.request.clone())
            .collect(),
    };
    let Err(error) = client.post_accepted(&routes::batch(true), &batch).await else {
        return Ok(declaration);
    };
    let items = error
        .downcast_ref::<ErrorBody>()
        .map(|body| body.error.items.clone())
        .unwrap_or_default();
    if items.is_empty() {
        return Err(error);
    }
    let mut located = Vec::new();
    for item in &items {
        let Some(agent) = declaration.agents.get(item.index) else {
            continue;
        };
        let error = anyhow!("{}", item.message);
        located.push(
            locate(client, &declaration.path, agent, error)
                .await
                .to_string(),
        );
    }
    Err(anyhow!("{}", located.join("\n")))
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
    // What happened to each agent, in the file's order.
    let mut lines: Vec<Option<Result<String>>> = Vec::new();
    // Those to create, with why (for one recreated).
    let mut to_create: Vec<(usize, Option<String>)> = Vec::new();
    for (index, agent) in declaration.agents.iter().enumerate() {
        let line = match existing.get(&agent.name) {
            None => {
                to_create.push((index, None));
                None
            }
            Some(found) if !declared_in(found, &declaration.path) => Some(Err(anyhow!(
                "an agent of this name exists that {} did not start; rename the agent in the file, or remove the other (`wrangle rm {}`)",
                declaration.path.display(),
                agent.name
            ))),
            Some(found)
                if found.labels.get(HASH_LABEL).map(String::as_str) == Some(agent.hash())
                    && !found.state.is_ended() =>
            {
                Some(Ok(format!("{}: unchanged ({})", agent.name, found.state)))
            }
            Some(found) => {
                let why = if found.state.is_ended() {
                    format!("it had ended: {}", found.state)
                } else {
                    "its declaration changed".to_string()
                };
                // Stopped (if need be) and removed, then created anew
                // under the same name with the others.
                match client
                    .delete::<AgentView>(&routes::remove(&found.id, true))
                    .await
                {
                    Ok(_) => {
                        to_create.push((index, Some(why)));
                        None
                    }
                    Err(error) => Some(Err(error)),
                }
            }
        };
        lines.push(line);
    }
    let environment = utf8_environment(std::env::vars_os());
    for chunk in to_create.chunks(BATCH_SIZE) {
        let batch = CreateAgents {
            inherit_env: Some(environment.clone()),
            agents: chunk
                .iter()
                .map(|(index, _)| declaration.agents[*index].request.clone())
                .collect(),
        };
        match client
            .post_create::<_, Vec<AgentView>>(&routes::batch(false), &batch)
            .await
        {
            Ok(created) => {
                for ((index, why), agent) in chunk.iter().zip(created) {
                    lines[*index] = Some(created_line(&agent, why.as_deref()));
                }
            }
            Err(error) => {
                let error = format!("{error:#}");
                for (index, _) in chunk {
                    lines[*index] = Some(Err(anyhow!("not created: {error}")));
                }
            }
        }
    }
    let mut failed = false;
    for (agent, line) in declaration.agents.iter().zip(lines) {
        match line {
            Some(Ok(line)) => output::print_line(&line)?,
            Some(Err(error)) => {
                failed = true;
                output::print_error(&error.context(agent.name.clone()));
            }
            None => {}
        }
    }
    Ok(u8::from(failed))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// What `up` says of an agent it created (`why`: it was recreated); a
/// failed exec is an error.
fn created_line(created: &AgentView, why: Option<&str>) -> Result<String> {
    if created.state == State::Failed && created.started_at.is_none() {
        return Err(anyhow!(
            "cannot start: {}",
            created.reason.as_deref().unwrap_or("the exec failed")
        ));
    }
    let id = short(&created.id);
    Ok(match why {
        None => format!("{}: created ({id})", created.name),
        Some(why) => format!("{}: recreated ({id}), as {why}", created.name),
    })
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
