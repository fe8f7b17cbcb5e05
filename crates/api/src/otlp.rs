//! The agents' telemetry, received: OTLP over HTTP on a loopback port of
//! its own (`POST /v1/logs`, `/v1/metrics`; `/v1/traces` accepted and
//! dropped), as JSON or protobuf, gzip or not. A body is taken only with
//! its run's token (`authorization: Bearer TOKEN`, checked before the
//! body is even decoded); its log records go to the engine's
//! [`Intake`], which counts each model call once, the records of a turn's
//! requests together (see [`pace`]).
//!
//! The port is kept in the store and bound again by the next daemon, so
//! that agents started before a restart go on exporting to it.

use crate::error::ApiError;
use crate::forward::Forwarder;
use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use pace::Pace;
use prost::Message;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wrangle_engine::telemetry::{self, AttributeValue, Intake, Record};
use wrangle_engine::{Engine, TelemetryBinder};
use wrangle_wire::{ErrorBody, ErrorCode};

/// Largest body taken, decompressed.
const MAX_BODY: u64 = 16 << 20;

/// The listener bound when the engine opened, for the server to take.
pub type BoundListener = Arc<Mutex<Option<TcpListener>>>;

/// A binder for the engine that binds 127.0.0.1 on the port kept from
/// before (or any free one when it is taken or there is none), and leaves
/// the listener in the returned slot.
pub fn binder() -> (TelemetryBinder, BoundListener) {
    let slot: BoundListener = Arc::new(Mutex::new(None));
    let bound = slot.clone();
    let binder = TelemetryBinder(Arc::new(move |kept: Option<u16>| {
        let listener = kept
            .and_then(|port| {
                TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                    .inspect_err(|error| {
                        tracing::warn!(
                            "cannot bind the telemetry port {port} again ({error}): agents started before export to nothing until they restart"
                        )
                    })
                    .ok()
            })
            .or_else(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok())?;
        listener.set_nonblocking(true).ok()?;
        let port = listener.local_addr().ok()?.port();
        *bound.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
        Some(port)
    }));
    (binder, slot)
}

/// What the telemetry routes share.
struct Receiver {
    engine: Engine,
    forwarder: Forwarder,
    pace: Arc<Pace>,
    /// The records of the turn's requests, counted at its end (see
    /// [`pace`]). Taken and counted on this thread alone: the lock is
    /// never waited for.
    intake: Arc<Mutex<Intake>>,
}

/// Serves the agents' telemetry on `listener` from a thread of its own,
/// for as long as the daemon runs. Its own thread and runtime, so that
/// its wake-ups can be paced (see [`pace`]) without holding up the API.
pub fn serve(engine: Engine, listener: TcpListener) {
    let served = std::thread::Builder::new()
        .name("wrangle-otlp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!("cannot start the telemetry runtime: {error}");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!("cannot serve the telemetry port: {error}");
                        return;
                    }
                };
                tracing::info!(
                    port = listener.local_addr().map(|a| a.port()).unwrap_or(0),
                    "receiving telemetry"
                );
                let pace = Pace::new();
                let intake = Arc::new(Mutex::new(Intake::default()));
                let (counted, counter) = (intake.clone(), engine.clone());
                let (rested, rester) = (intake.clone(), engine.clone());
                tokio::spawn(pace.clone().pacer(
                    move || lock(&counted).count(&counter),
                    move || lock(&rested).rest(&rester),
                ));
                let receiver = Receiver {
                    engine,
                    forwarder: Forwarder::start(),
                    pace,
                    intake,
                };
                accept(listener, receiver).await;
            });
        });
    if let Err(error) = served {
        tracing::error!("cannot start the telemetry thread: {error}");
    }
}

/// Serves each connection accepted on `listener` on a task of its own,
/// answering with `receiver`. hyper alone, without a router: three routes
/// need no table, and axum's per-request machinery (a boxed service
/// cloned, extensions, a limited body) was a tenth of the port's time.
async fn accept(listener: tokio::net::TcpListener, receiver: Receiver) {
    let receiver = Arc::new(receiver);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of descriptors, most likely: accepting again at once
                // would spin.
                tracing::warn!("the telemetry port cannot accept: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // An answer is one write after its request: nothing to coalesce.
        let _ = stream.set_nodelay(true);
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let answer = hyper::service::service_fn(move |request| {
                let receiver = receiver.clone();
                async move { Ok::<_, Infallible>(receiver.answer(request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), answer)
                .await;
            if let Err(error) = served {
                tracing::debug!("a telemetry connection ended: {error}");
            }
        });
    }
}

/// Whether an accept failed for its connection alone (the peer left
/// before it was taken), not for the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

impl Receiver {
    /// The answer to one request: its route, its body read whole (at
    /// most [`MAX_BODY`] bytes), then taken.
    async fn answer(self: Arc<Self>, request: hyper::Request<Incoming>) -> Response {
        let route = match request.uri().path() {
            "/v1/logs" => Route::Logs,
            "/v1/metrics" => Route::Dropped("/v1/metrics"),
            "/v1/traces" => Route::Dropped("/v1/traces"),
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
        if request.method() != Method::POST {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, HeaderValue::from_static("POST"))],
            )
                .into_response();
        }
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY as usize).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => {
                return ApiError(ErrorBody::new(
                    ErrorCode::PayloadTooLarge,
                    "the body is over 16 MiB",
                ))
                .into_response()
            }
            Err(error) => {
                return ApiError::invalid(format!("cannot read the body: {error}")).into_response()
            }
        };
        self.pace.request_came();
        match route {
            Route::Logs => match self.take_logs(&parts.headers, body).await {
                Ok(encoding) => encoding.ok(),
                Err(error) => refused(error),
            },
            Route::Dropped(path) => self.dropped(&parts.headers, body, path),
        }
    }
}

/// What a request is for.
enum Route {
    /// `POST /v1/logs`: the records are counted.
    Logs,
    /// `POST /v1/metrics` or `/v1/traces` (the path): forwarded only.
    Dropped(&'static str),
}

/// How a body is encoded, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/x-protobuf");
        if content_type.starts_with("application/json") {
            Ok(Encoding::Json)
        } else if content_type.starts_with("application/x-protobuf")
            || content_type.starts_with("application/protobuf")
        {
            Ok(Encoding::Protobuf)
        } else {
            Err(ApiError::invalid(format!(
                "unsupported content type {content_type:?}: OTLP/HTTP is application/json or application/x-protobuf"
            )))
        }
    }

    /// The empty answer OTLP expects, in the request's encoding.
    fn ok(self) -> Response {
        match self {
            Encoding::Json => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{}",
            )
                .into_response(),
            Encoding::Protobuf => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportLogsServiceResponse::default().encode_to_vec(),
            )
                .into_response(),
        }
    }
}

/// An error as an OTLP exporter takes it. One that passes (a full disk,
/// a daemon too busy) is 503 with `Retry-After`, which exporters retry
/// (OTLP/HTTP retries 429, 502, 503 and 504); a 507 they would drop, and
/// with it the calls of the body.
fn refused(error: ApiError) -> Response {
    let passes = matches!(
        error.0.error.code,
        ErrorCode::InsufficientStorage | ErrorCode::Unavailable
    );
    let mut response = error.into_response();
    if passes {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl Receiver {
    /// `POST /v1/logs`: the body's records, from the right sender, counted
    /// (and forwarded to the user's collector if there is one); answered
    /// once they are stored.
    async fn take_logs(&self, headers: &HeaderMap, body: Bytes) -> Result<Encoding, ApiError> {
        let engine = &self.engine;
        let (id, run) = sender(engine, headers)?;
        let encoding = Encoding::of(headers)?;
        forward(
            &self.forwarder,
            engine,
            (&id, run),
            headers,
            "/v1/logs",
            &body,
        );
        let body = decompressed(headers, body)?;
        let records = records(encoding, &body)?;
        let answer = lock(&self.intake).take(id, run, records)?;
        answer.received().await?;
        Ok(encoding)
    }

    /// `POST /v1/metrics`, `/v1/traces`: taken from the right sender and
    /// forwarded to the user's collector if there is one, not kept (the
    /// log records say all wrangle needs).
    fn dropped(&self, headers: &HeaderMap, body: Bytes, path: &str) -> Response {
        let taken = sender(&self.engine, headers).and_then(|(id, run)| {
            let encoding = Encoding::of(headers)?;
            forward(
                &self.forwarder,
                &self.engine,
                (&id, run),
                headers,
                path,
                &body,
            );
            Ok(encoding)
        });
        // The empty answer of the logs: an empty message of any of the
        // three services is the same, no bytes in protobuf and `{}`.
        match taken {
            Ok(encoding) => encoding.ok(),
            Err(error) => error.into_response(),
        }
    }
}

/// Queues `body` for the user's own collector, when the run exports to
/// one: unchanged, with its content type and encoding.
fn forward(
    forwarder: &Forwarder,
    engine: &Engine,
    (id, run): (&str, u32),
    headers: &HeaderMap,
    path: &str,
    body: &Bytes,
) {
    let Some(to) = engine.telemetry_forward(id, run) else {
        return;
    };
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    forwarder.forward(
        &to,
        path,
        header(header::CONTENT_TYPE),
        header(header::CONTENT_ENCODING),
        body.clone(),
    );
}

fn lock(intake: &Mutex<Intake>) -> std::sync::MutexGuard<'_, Intake> {
    intake
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The run the request's token names.
fn sender(engine: &Engine, headers: &HeaderMap) -> Result<(String, u32), ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    Ok(engine.telemetry_sender(authorization)?)
}

/// The body, un-gzipped when it says so, at most [`MAX_BODY`] bytes.
fn decompressed(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_BODY + 1)
                .read_to_end(&mut out)
                .map_err(|error| {
                    ApiError::invalid(format!("the body is not valid gzip: {error}"))
                })?;
            if out.len() as u64 > MAX_BODY {
                return Err(ApiError::invalid(
                    "the body is over 16 MiB once decompressed",
                ));
            }
            Ok(out.into())
        }
        other => Err(ApiError::invalid(format!(
            "unsupported content encoding {other:?}: send it plain or gzip"
        ))),
    }
}

/// The engine's records of the request in `body` (see [`json`] for what
/// its JSON may be).
fn records(encoding: Encoding, body: &[u8]) -> Result<Vec<Record>, ApiError> {
    match encoding {
        Encoding::Protobuf => {
            let request = ExportLogsServiceRequest::decode(body)
                .map_err(|error| ApiError::invalid(format!("malformed OTLP protobuf: {error}")))?;
            Ok(records_of(
                request
                    .resource_logs
                    .iter()
                    .flat_map(|resource| &resource.scope_logs)
                    .flat_map(|scope| &scope.log_records)
                    .map(view::Record::from),
            ))
        }
        Encoding::Json => json::log_records(body)
            .map(records_of)
            .map_err(|error| ApiError::invalid(format!("malformed OTLP JSON: {error}"))),
    }
}

/// Every log record of a request, as the engine takes them.
fn records_of<'a>(records: impl IntoIterator<Item = view::Record<'a>>) -> Vec<Record> {
    // One buffer for every record's encoding (see `record_of`), grown
    // once: a record is rarely over a few hundred bytes.
    let mut encoded = Vec::with_capacity(4096);
    records
        .into_iter()
        .map(|record| record_of(record, &mut encoded))
        .collect()
}

/// The engine's record of `record`: the attributes wrangle reads, their
/// strings copied, the rest left in the body. Its key is a digest of its
/// protobuf encoding (written into `encoded`), so that the same record
/// delivered twice, in either encoding, is counted once.
fn record_of(record: view::Record, encoded: &mut Vec<u8>) -> Record {
    encoded.clear();
    record.encode(encoded);
    let digest = Sha256::digest(&encoded);
    let key = hex::encode(&digest[..16]);
    let nanos = if record.time_unix_nano > 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let at = chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX));
    // Claude Code names a record in its body (`claude_code.api_request`)
    // and `event.name` (`api_request`); Codex and Gemini CLI in
    // `event.name` alone (`codex.sse_event`). The last `event.name`
    // counts, as the last of any key does.
    let text = |value: &Option<view::Any<'_>>| match value {
        Some(view::Any(Some(view::Value::Text(text)))) => Some(text.to_string()),
        _ => None,
    };
    let body = text(&record.body);
    let event = record
        .attributes
        .iter()
        .rev()
        .find(|pair| pair.key == "event.name")
        .map(|pair| text(&pair.value))
        .unwrap_or_else(|| (!record.event_name.is_empty()).then(|| record.event_name.to_string()));
    let name = match (event, body) {
        (Some(event), _) if event.contains('.') => event,
        (_, Some(body)) if body.contains('.') => body,
        (Some(event), _) => event,
        (None, body) => body.unwrap_or_default(),
    };
    let attributes = record
        .attributes
        .into_iter()
        .filter_map(|pair| {
            let key = telemetry::read_attribute(&pair.key)?;
            Some((key, value_of(pair.value?)?))
        })
        .collect();
    Record {
        key,
        at,
        name,
        attributes,
    }
}

fn value_of(value: view::Any) -> Option<AttributeValue> {
    Some(match value.0? {
        view::Value::Text(text) => AttributeValue::Text(text.into_owned()),
        view::Value::Int(number) => AttributeValue::Int(number),
        view::Value::Double(number) => AttributeValue::Float(number),
        view::Value::Bool(flag) => AttributeValue::Bool(flag),
        _ => return None,
    })
}

mod json;
mod pace;
#[cfg(test)]
mod props;
mod view;

#[cfg(test)]
mod tests {
    use super::*;

    /// AGENT-FORMATS.md §10's real Claude record, in a request as its
    /// exporter sends it (times as strings) and with times as numbers.
    const CLAUDE: &str = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"claude-code"}}]},"scopeLogs":[{"scope":{"name":"com.anthropic.claude_code.events"},"logRecords":[{"timeUnixNano":"1765000000000000000","observedTimeUnixNano":"1765000000000000000","body":{"stringValue":"claude_code.api_request"},"attributes":[{"key":"event.name","value":{"stringValue":"api_request"}},{"key":"model","value":{"stringValue":"claude-sonnet-4-5"}},{"key":"input_tokens","value":{"intValue":1200}},{"key":"output_tokens","value":{"intValue":9}},{"key":"cache_read_tokens","value":{"intValue":5000}},{"key":"cache_creation_tokens","value":{"intValue":3000}},{"key":"cost_usd","value":{"doubleValue":0.016485}},{"key":"cost_usd_micros","value":{"intValue":16485}}]}]}]}]}"#;

    #[test]
    fn json_and_protobuf_of_one_request_give_the_same_records() {
        let request: ExportLogsServiceRequest = serde_json::from_str(CLAUDE).unwrap();
        let records = records(Encoding::Json, CLAUDE.as_bytes()).unwrap();
        assert_eq!(
            records,
            super::records(Encoding::Protobuf, &request.encode_to_vec()).unwrap()
        );
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record.name, "claude_code.api_request");
        assert_eq!(
            record.attributes.get("input_tokens"),
            Some(&AttributeValue::Int(1200))
        );
        // Only what wrangle reads is kept: `event.name` named the record.
        let keys: Vec<&str> = record.attributes.iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            [
                "model",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_creation_tokens",
                "cost_usd",
                "cost_usd_micros"
            ]
        );
        assert_eq!(record.at.timestamp(), 1_765_000_000);
        // The key is a digest of the record's protobuf encoding, as prost
        // writes it: the keys of the releases that encoded with prost.
        let prost = request.resource_logs[0].scope_logs[0].log_records[0].encode_to_vec();
        assert_eq!(record.key, hex::encode(&Sha256::digest(&prost)[..16]));
        let numbers = CLAUDE.replace("\"1765000000000000000\"", "1765000000000000000");
        assert_eq!(
            super::records(Encoding::Json, numbers.as_bytes()).unwrap(),
            records
        );
        assert!(super::records(Encoding::Json, b"{\"resourceLogs\": 3}").is_err());
        assert!(super::records(Encoding::Protobuf, b"\xff\xff\xff").is_err());
    }

    #[test]
    fn gzip_is_taken_and_anything_else_refused() {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(CLAUDE.as_bytes()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let body = decompressed(&headers, gzip.finish().unwrap().into()).unwrap();
        assert_eq!(&body[..], CLAUDE.as_bytes());
        headers.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(decompressed(&headers, Bytes::new()).is_err());
    }
}
