//! The HTTP routes: thin handlers that parse, call the engine and answer.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use wrangle_wire::{
    AgentView, BatchQuery, Cause, CostQuery, CostReport, CreateAgent, CreateAgents, DaemonInfo,
    DaemonStopRequest, DoctorReport, ErrorBody, GroupView, KillRequest, ListQuery, LogsQuery,
    RemoveQuery, RunView, SetGroup, StopRequest, StopResult, Summary, EVENT_ID_HEADER,
    IDEMPOTENCY_KEY,
};

/// A JSON body, an object, whose rejection is a JSON error.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(ObjectOnly(value)) = Json::<ObjectOnly<T>>::from_request(request, state).await?;
        Ok(JsonBody(value))
    }
}

/// A value read from a JSON object and from nothing else: serde reads a
/// struct from an array too (its fields in order), which made the body
/// `[[], true]` of `POST /v1/stop` a stop of every agent.
struct ObjectOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Object(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

/// A query string whose rejection is a JSON error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryArgs<T>(pub T);

/// A path parameter whose rejection (say, percent-encoded bytes that
/// are not UTF-8) is a JSON error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathArg<T>(pub T);

/// Every route of the API, each request counted for `/metrics`.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/v1/daemon", get(daemon_info))
        .route("/v1/daemon/stop", post(daemon_stop))
        .route("/v1/doctor", get(doctor))
        .route("/v1/agents", get(list_agents).post(create_agent))
        .route(
            "/v1/agents/{agent}",
            get(inspect_agent).delete(remove_agent),
        )
        .route("/v1/agents/{agent}/kill", post(kill_agent))
        .route("/v1/agents/{agent}/wait", get(wait_agent))
        .route("/v1/agents/{agent}/logs", get(agent_logs))
        .route("/v1/agents/{agent}/runs", get(agent_runs))
        .route("/v1/agents/{agent}/restart", post(restart_agent))
        .route("/v1/stop", post(stop_agents))
        .route("/v1/validate", post(validate_agent))
        .route(
            "/v1/batch",
            post(create_batch).layer(axum::extract::DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        )
        .route("/v1/groups", get(list_groups))
        .route("/v1/groups/{group}", put(set_group))
        .route("/v1/summary", get(summary))
        .route("/v1/cost", get(cost))
        .route("/v1/events", get(crate::events::events))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .with_state(state)
        .merge(
            Router::new()
                .route("/metrics", get(crate::metrics::scrape))
                .with_state(metrics.clone()),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::count_requests,
        ))
}

/// Who answers.
#[utoipa::path(get, path = "/v1/daemon", responses((status = 200, body = DaemonInfo)))]
pub async fn daemon_info(State(state): State<AppState>) -> Json<DaemonInfo> {
    Json(state.engine.info())
}

/// What the daemon found on this machine: containment, what enforces each
/// limit, kernel features, the home, and every problem with its fix.
#[utoipa::path(get, path = "/v1/doctor", responses((status = 200, body = DoctorReport)))]
pub async fn doctor(State(state): State<AppState>) -> Json<DoctorReport> {
    Json(state.engine.doctor())
}

/// Shuts the daemon down; agents keep running unless `stop_agents`.
#[utoipa::path(
    post,
    path = "/v1/daemon/stop",
    request_body = DaemonStopRequest,
    responses((status = 202, description = "the daemon is shutting down"), (status = 400, body = ErrorBody))
)]
pub async fn daemon_stop(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<DaemonStopRequest>,
) -> Result<StatusCode, ApiError> {
    state.engine.shutting_down(request.stop_agents);
    if request.stop_agents {
        state
            .engine
            .stop(
                StopRequest {
                    all: true,
                    ..StopRequest::default()
                },
                Cause::Shutdown,
            )
            .await?;
    }
    state.shutdown.notify_one();
    Ok(StatusCode::ACCEPTED)
}

/// Lists agents (ended ones too with `all=true`), oldest first, filtered
/// in the daemon by state, group and labels, at most `limit`. The header
/// `wrangle-event-id` is the last event the list reflects: follow
/// `/v1/events?since=` it to miss no change.
#[utoipa::path(get, path = "/v1/agents", params(ListQuery), responses((status = 200, body = Vec<AgentView>, headers(("wrangle-event-id" = u64, description = "the last event the answer reflects"))), (status = 400, body = ErrorBody)))]
pub async fn list_agents(
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (event_id, agents) = state.engine.list_with_event_id(&query)?;
    let event_id = [(EVENT_ID_HEADER, event_id.to_string())];
    if !query.pretty {
        return Ok((event_id, Json(agents)).into_response());
    }
    let text = serde_json::to_vec_pretty(&agents).map_err(|error| {
        wrangle_engine::error::EngineError::internal(format!("cannot write the list: {error}"))
    })?;
    Ok((event_id, [(header::CONTENT_TYPE, "application/json")], text).into_response())
}

/// Creates an agent and starts it; answers once its exec is confirmed or
/// has failed (then the agent is `failed` with the reason).
#[utoipa::path(
    post,
    path = "/v1/agents",
    request_body = CreateAgent,
    responses(
        (status = 201, body = AgentView),
        (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the name is taken")
    )
)]
pub async fn create_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateAgent>,
) -> Result<(StatusCode, Json<AgentView>), ApiError> {
    let agent = state
        .engine
        .create(request, idempotency_key(&headers)?)
        .await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// The largest batch body: 10,000 agents of a few hundred bytes each fit
/// many times over (the default limit of 2 MB does not).
const BATCH_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Creates many agents in one request, all or none: one bad item
/// refuses the whole batch (the error's `items` name each bad one), and
/// nothing is created. The batch's `inherit_env` is the base environment
/// of every item that gives none. Answers, in the batch's order, once each
/// exec is confirmed or has failed. With `dry_run`, checks the batch as a
/// create would (all but the names being free) and creates nothing.
#[utoipa::path(
    post,
    path = "/v1/batch",
    request_body = CreateAgents,
    params(BatchQuery),
    responses(
        (status = 201, body = Vec<AgentView>),
        (status = 204, description = "dry_run: the batch would be taken"),
        (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a name is taken")
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<BatchQuery>,
    headers: HeaderMap,
    JsonBody(batch): JsonBody<CreateAgents>,
) -> Result<axum::response::Response, ApiError> {
    if query.dry_run {
        state.engine.validate_batch(batch)?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let agents = state
        .engine
        .create_batch(batch, idempotency_key(&headers)?)
        .await?;
    Ok((StatusCode::CREATED, Json(agents)).into_response())
}

/// The request's `Idempotency-Key`, if it has one: a create sent again
/// with the same key (its answer was lost) makes nothing new and answers
/// with what the first one made.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| (1..=200).contains(&key.len()) && !key.contains(','))
        .ok_or_else(|| {
            // Named as sent, but cut: a header may be kilobytes long.
            let sent = String::from_utf8_lossy(value.as_bytes());
            let shown: String = sent.chars().take(SHOWN).collect();
            let more = if sent.chars().count() > SHOWN { "…" } else { "" };
            ApiError::invalid(format!(
                "invalid Idempotency-Key {shown:?}{more}: use 1 to 200 visible ASCII characters, without a comma"
            ))
        })?;
    Ok(Some(key.to_string()))
}

/// Characters of a refused header value shown in its error.
const SHOWN: usize = 40;

/// One agent by id, name or unique id prefix.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent}",
    params(("agent" = String, Path, description = "id, name or unique id prefix")),
    responses((status = 200, body = AgentView, headers(("wrangle-event-id" = u64, description = "the last event the answer reflects"))), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn inspect_agent(
    State(state): State<AppState>,
    PathArg(agent): PathArg<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (event_id, view) = state.engine.inspect_with_event_id(&agent)?;
    Ok(([(EVENT_ID_HEADER, event_id.to_string())], Json(view)))
}

/// Checks an agent's declaration as `POST /v1/agents` would (all but the
/// name being free) and creates nothing.
#[utoipa::path(
    post,
    path = "/v1/validate",
    request_body = CreateAgent,
    responses((status = 204), (status = 400, body = ErrorBody))
)]
pub async fn validate_agent(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateAgent>,
) -> Result<StatusCode, ApiError> {
    state.engine.validate(&request)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every concurrency group that has a limit or an agent.
#[utoipa::path(get, path = "/v1/groups", responses((status = 200, body = Vec<GroupView>)))]
pub async fn list_groups(State(state): State<AppState>) -> Json<Vec<GroupView>> {
    Json(state.engine.groups())
}

/// Sets or removes (null) the most agents of a group that run at once.
#[utoipa::path(
    put,
    path = "/v1/groups/{group}",
    params(("group" = String, Path, description = "the group's name")),
    request_body = SetGroup,
    responses((status = 200, body = GroupView), (status = 400, body = ErrorBody))
)]
pub async fn set_group(
    State(state): State<AppState>,
    PathArg(group): PathArg<String>,
    JsonBody(request): JsonBody<SetGroup>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(state.engine.set_group(&group, request).await?))
}

/// Stops the agent if it runs, then starts a new run of it; answers once
/// the exec is confirmed (or failed, or the agent is queued).
#[utoipa::path(
    post,
    path = "/v1/agents/{agent}/restart",
    params(("agent" = String, Path, description = "id, name or unique id prefix")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn restart_agent(
    State(state): State<AppState>,
    PathArg(agent): PathArg<String>,
) -> Result<Json<AgentView>, ApiError> {
    Ok(Json(state.engine.restart(&agent).await?))
}

/// Every run of one agent, oldest first: restarts are new runs.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent}/runs",
    params(("agent" = String, Path, description = "id, name or unique id prefix")),
    responses((status = 200, body = Vec<RunView>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn agent_runs(
    State(state): State<AppState>,
    PathArg(agent): PathArg<String>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    Ok(Json(state.engine.runs(&agent)?))
}

/// Forgets an ended agent and deletes its logs; `force` stops it first.
#[utoipa::path(
    delete,
    path = "/v1/agents/{agent}",
    params(("agent" = String, Path, description = "id, name or unique id prefix"), RemoveQuery),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn remove_agent(
    State(state): State<AppState>,
    PathArg(agent): PathArg<String>,
    QueryArgs(query): QueryArgs<RemoveQuery>,
) -> Result<Json<AgentView>, ApiError> {
    Ok(Json(state.engine.remove(&agent, query.force).await?))
}

/// Sends a signal: SIGKILL (default) to the whole tree, others to the main process.
#[utoipa::path(
    post,
    path = "/v1/agents/{agent}/kill",
    params(("agent" = String, Path, description = "id, name or unique id prefix")),
    request_body = KillRequest,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn kill_agent(
    State(state): State<AppState>,
    PathArg(agent): PathArg<String>,
    JsonBody(request): JsonBody<KillRequest>,
) -> Result<Json<AgentView>, ApiError> {
    Ok(Json(state.engine.kill(&agent, request).await?))
}

/// Waits until the agent has ended.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent}/wait",
    params(("agent" = String, Path, description = "id, name or unique id prefix")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody))
)]
pub async fn wait_agent(
    State(state): State<AppState>,
    PathArg(agent): PathArg<String>,
) -> Result<Json<AgentView>, ApiError> {
    Ok(Json(state.engine.wait(&agent).await?))
}

/// The agent's output as NDJSON `LogLine`s; with `follow`, until the run ends.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent}/logs",
    params(("agent" = String, Path, description = "id, name or unique id prefix"), LogsQuery),
    responses(
        (status = 200, description = "one JSON LogLine per line", content_type = "application/x-ndjson", body = wrangle_wire::LogLine),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn agent_logs(
    State(state): State<AppState>,
    PathArg(agent): PathArg<String>,
    QueryArgs(query): QueryArgs<LogsQuery>,
) -> Result<Response, ApiError> {
    let lines = state.engine.logs(&agent, query)?;
    let stream = ReceiverStream::new(lines).map(|line| {
        let mut json = serde_json::to_vec(&line).unwrap_or_default();
        json.push(b'\n');
        Ok::<_, std::convert::Infallible>(json)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Stops agents with the staged stop and waits until they have ended.
#[utoipa::path(
    post,
    path = "/v1/stop",
    request_body = StopRequest,
    responses((status = 200, body = Vec<StopResult>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn stop_agents(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<StopRequest>,
) -> Result<Json<Vec<StopResult>>, ApiError> {
    Ok(Json(state.engine.stop(request, Cause::User).await?))
}

/// The fleet at a glance: counts by state and health, what the running
/// trees use together (at the sampler's last tick) and the top users.
#[utoipa::path(get, path = "/v1/summary", responses((status = 200, body = Summary)))]
pub async fn summary(State(state): State<AppState>) -> Json<Summary> {
    Json(state.engine.summary())
}

/// The cost ledger summed by agent, group, model or day, from `since` on:
/// what agents' sessions spent, removed agents included.
#[utoipa::path(get, path = "/v1/cost", params(CostQuery), responses((status = 200, body = CostReport), (status = 400, body = ErrorBody)))]
pub async fn cost(
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<CostQuery>,
) -> Result<Json<CostReport>, ApiError> {
    Ok(Json(state.engine.cost(&query)?))
}

/// The OpenAPI document of this API.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi;
    Json(crate::ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError(ErrorBody::new(
        wrangle_wire::ErrorCode::NotFound,
        "no such route; see /openapi.json",
    ))
}

/// A route asked with a method it does not take; axum adds the `Allow`
/// header with the ones it does.
async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError(ErrorBody::new(
        wrangle_wire::ErrorCode::MethodNotAllowed,
        format!("this route does not take {method}; see the Allow header or /openapi.json"),
    ))
}

#[cfg(test)]
mod props;
