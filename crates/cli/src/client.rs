//! HTTP/1.1 to the daemon over its Unix socket.
//!
//! Each request opens its own connection: connecting to a local socket is
//! cheap, and a long request (`wait`, `logs -f`, `stop`) then never holds
//! up another. No request has a timeout: a stop or a wait may rightly take
//! minutes.

use crate::{autostart, home};
use anyhow::{anyhow, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;
use wrangle_wire::ErrorBody;

/// Longest part of a non-JSON error body worth showing.
const MAX_ERROR_TEXT: usize = 300;

/// Why a connection to the socket failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing listens: no socket file, a stale one (ECONNREFUSED), or
    /// one whose daemon is closing it (ECONNRESET).
    NotRunning(io::Error),
    /// Something else, e.g. permission denied or a path too long for a
    /// socket: starting a daemon would not help.
    Failed(io::Error),
}

/// Connects to the socket once, without starting anything.
pub async fn try_connect(socket: &Path) -> Result<UnixStream, ConnectError> {
    UnixStream::connect(socket)
        .await
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset => ConnectError::NotRunning(error),
            _ => ConnectError::Failed(error),
        })
}

/// The error for a socket that cannot be connected to.
fn cannot_connect(socket: &Path, error: ConnectError) -> anyhow::Error {
    let (ConnectError::NotRunning(error) | ConnectError::Failed(error)) = error;
    anyhow!(
        "cannot connect to the daemon at {}: {error}",
        socket.display()
    )
}

/// How many times a request is sent at most when the daemon goes away
/// under it (see [`Client::send`]).
const ATTEMPTS: u32 = 3;

/// How many times a create with an idempotency key is sent at most: its
/// pauses add up to a few seconds, time for a killed daemon's successor
/// to take over.
const KEYED_ATTEMPTS: u32 = 16;

/// Pause before sending a request again, times the attempt's number.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A daemon that answered on its socket.
#[derive(Debug, Clone)]
pub struct Client {
    /// `<home>/wrangle.sock`.
    socket: PathBuf,
    /// The home to start a new daemon for when this one stops while we
    /// talk to it; `None` for commands that must not start one (`daemon
    /// stop`).
    restart_in: Option<PathBuf>,
}

/// Why one attempt at a request failed.
enum SendError {
    /// Nothing listens on the socket: the request was not sent at all.
    NoDaemon(anyhow::Error),
    /// The connection broke before an answer came.
    Lost(anyhow::Error),
    /// Anything else.
    Other(anyhow::Error),
}

impl SendError {
    fn into_error(self) -> anyhow::Error {
        match self {
            SendError::NoDaemon(error) | SendError::Lost(error) | SendError::Other(error) => error,
        }
    }
}

impl Client {
    /// Connects to the daemon of `home`, starting one when none runs (and
    /// again if it stops while the command talks to it).
    pub async fn connect(home: &Path) -> Result<Client> {
        let client = match Client::connect_running(home).await? {
            Some(client) => client,
            None => Client::start(home, &[]).await?,
        };
        Ok(Client {
            restart_in: Some(home.to_path_buf()),
            ..client
        })
    }

    /// Connects to the daemon of `home` if one runs; `None` when none does.
    pub async fn connect_running(home: &Path) -> Result<Option<Client>> {
        let socket = home::socket_path(home);
        match try_connect(&socket).await {
            Ok(_) => Ok(Some(Client {
                socket,
                restart_in: None,
            })),
            Err(ConnectError::NotRunning(_)) => Ok(None),
            Err(error) => Err(cannot_connect(&socket, error)),
        }
    }

    /// Starts a daemon for `home` in the background, with the options
    /// `flags` of `wrangle daemon`, and connects to it (or to the one
    /// another CLI started at the same moment).
    pub async fn start(home: &Path, flags: &[String]) -> Result<Client> {
        let socket = home::socket_path(home);
        autostart::start_daemon(home, &socket, flags).await?;
        Ok(Client {
            socket,
            restart_in: None,
        })
    }

    /// This client, made to report a daemon that has gone away instead of
    /// starting a new one: `top` watches a daemon and keeps asking, and
    /// must not bring back one that someone stopped.
    pub fn without_autostart(self) -> Client {
        Client {
            restart_in: None,
            ..self
        }
    }

    /// `GET path`, answer decoded from JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.call(Method::GET, path, None).await?;
        decode(&Method::GET, path, &body)
    }

    /// `GET path`, answer decoded from JSON, with the id of the last event
    /// it reflects (the `wrangle-event-id` header): following the events
    /// after it misses no change.
    pub async fn get_with_event_id<T: DeserializeOwned>(&self, path: &str) -> Result<(T, u64)> {
        let response = self.send(Method::GET, path, None, None, None).await?;
        let status = response.status();
        let event_id = response
            .headers()
            .get(wrangle_wire::EVENT_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let body = collect(&Method::GET, path, response).await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        let event_id = event_id.ok_or_else(|| {
            anyhow!("the daemon's answer to GET {path} has no event id: is it an older wrangle?")
        })?;
        Ok((decode(&Method::GET, path, &body)?, event_id))
    }

    /// `GET path`, the answer's body as it came.
    pub async fn get_raw(&self, path: &str) -> Result<Bytes> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, answer decoded from JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let answer = self.call(Method::POST, path, Some(encode(body)?)).await?;
        decode(&Method::POST, path, &answer)
    }

    /// `POST path` of a create, with an idempotency key of its own: when
    /// the daemon goes away before answering (killed), the create is sent
    /// again, to the next daemon, with the same key, and the answer is
    /// the agents the first one made, or new ones if it made none: one
    /// create, never an error for a lost answer, never twice.
    pub async fn post_create<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let key = idempotency_key()?;
        let body = encode(body)?;
        let mut attempt = 1;
        loop {
            let response = self
                .send(Method::POST, path, Some(body.clone()), None, Some(&key))
                .await?;
            let status = response.status();
            match collect(&Method::POST, path, response).await {
                Ok(answer) if status.is_success() => return decode(&Method::POST, path, &answer),
                Ok(answer) => return Err(api_error(status, &answer)),
                // The answer was lost on its way: ask again.
                Err(error) if attempt >= KEYED_ATTEMPTS => return Err(error),
                Err(_) => {
                    tokio::time::sleep(RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
            }
        }
    }

    /// `POST path` with a JSON body, for routes whose success (`202
    /// Accepted`) says all there is to know.
    pub async fn post_accepted<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        self.call(Method::POST, path, Some(encode(body)?))
            .await
            .map(drop)
    }

    /// `PUT path` with a JSON body, answer decoded from JSON.
    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let answer = self.call(Method::PUT, path, Some(encode(body)?)).await?;
        decode(&Method::PUT, path, &answer)
    }

    /// `DELETE path`, answer decoded from JSON.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.call(Method::DELETE, path, None).await?;
        decode(&Method::DELETE, path, &body)
    }

    /// `GET path` whose body is read as it arrives (logs).
    pub async fn get_stream(&self, path: &str) -> Result<Incoming> {
        Ok(self.get_stream_of(path, None).await?.into_body())
    }

    /// `GET path` whose body is JSON lines read as they arrive (events),
    /// with the `wrangle-event-id` header if the answer has one.
    pub async fn get_json_lines(&self, path: &str) -> Result<(Incoming, Option<u64>)> {
        let response = self
            .get_stream_of(path, Some("application/x-ndjson"))
            .await?;
        let event_id = response
            .headers()
            .get(wrangle_wire::EVENT_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        Ok((response.into_body(), event_id))
    }

    /// A successful answer to `GET path`, its body still to be read.
    async fn get_stream_of(&self, path: &str, accept: Option<&str>) -> Result<Response<Incoming>> {
        let response = self.send(Method::GET, path, None, accept, None).await?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else {
            let body = collect(&Method::GET, path, response).await?;
            Err(api_error(status, &body))
        }
    }

    /// Sends a request and reads the whole answer; an error answer becomes
    /// the daemon's message.
    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        let response = self.send(method.clone(), path, body, None, None).await?;
        let status = response.status();
        let body = collect(&method, path, response).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(api_error(status, &body))
        }
    }

    /// Sends one request. A daemon may stop between two requests of one
    /// command, or while a request waits to be served (a `daemon stop`
    /// from elsewhere): a request that was not sent, or a GET (which
    /// changes nothing) whose connection broke, is sent again, to a daemon
    /// started for it if need be.
    /// A request with an idempotency `key` (a create) changes nothing the
    /// second time, so it is sent again like a GET, and more patiently: a
    /// daemon that was killed takes a moment to come back.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
        key: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let attempts = if key.is_some() {
            KEYED_ATTEMPTS
        } else {
            ATTEMPTS
        };
        let mut attempt = 1;
        loop {
            let error = match self
                .send_once(method.clone(), path, body.clone(), accept, key)
                .await
            {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let again = match &error {
                SendError::NoDaemon(_) => true,
                SendError::Lost(_) => method == Method::GET || key.is_some(),
                SendError::Other(_) => false,
            };
            let Some(home) = self.restart_in.as_deref().filter(|_| again) else {
                return Err(error.into_error());
            };
            if attempt >= attempts {
                return Err(error.into_error());
            }
            tokio::time::sleep(RETRY_PAUSE * attempt).await;
            attempt += 1;
            if let Err(ConnectError::NotRunning(_)) = try_connect(&self.socket).await {
                // A daemon started here may die before it answers (killed):
                // the next attempt starts another, unless none is left.
                if let Err(error) = autostart::start_daemon(home, &self.socket, &[]).await {
                    if attempt >= attempts {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Opens a connection and sends one request on it.
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
        key: Option<&str>,
    ) -> Result<Response<Incoming>, SendError> {
        let stream = try_connect(&self.socket)
            .await
            .map_err(|error| match error {
                ConnectError::NotRunning(_) => {
                    SendError::NoDaemon(cannot_connect(&self.socket, error))
                }
                ConnectError::Failed(_) => SendError::Other(cannot_connect(&self.socket, error)),
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| SendError::Lost(lost(&method, path, &error)))?;
        // The connection task drives the socket; its errors also fail the
        // request or the body read, which report them.
        tokio::spawn(async move {
            let _ = connection.await;
        });

        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            // HTTP/1.1 wants a Host; a Unix socket has no host name.
            .header(header::HOST, "localhost");
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(key) = key {
            request = request.header(wrangle_wire::IDEMPOTENCY_KEY, key);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(json))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .with_context(|| format!("cannot build the request {method} {path}"))
            .map_err(SendError::Other)?;
        sender
            .send_request(request)
            .await
            .map_err(|error| SendError::Lost(lost(&method, path, &error)))
    }
}

/// A new idempotency key: 128 random bits, in hex.
fn idempotency_key() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?,
        &mut bytes,
    )
    .context("cannot read /dev/urandom")?;
    Ok(hex::encode(bytes))
}

/// A request body as JSON.
fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>> {
    serde_json::to_vec(body).context("cannot encode the request as JSON")
}

/// Reads a whole response body.
async fn collect(method: &Method, path: &str, response: Response<Incoming>) -> Result<Bytes> {
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| lost(method, path, &error))?;
    Ok(body.to_bytes())
}

/// The error for a connection that broke during a request.
pub fn lost(method: &Method, path: &str, error: &hyper::Error) -> anyhow::Error {
    anyhow!("lost the connection to the daemon during {method} {path}: {error}")
}

/// Decodes a successful answer.
fn decode<T: DeserializeOwned>(method: &Method, path: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|error| anyhow!("cannot read the daemon's answer to {method} {path}: {error}"))
}

/// Decodes a JSON value that was kept as received into a wire type.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|error| anyhow!("cannot read the daemon's answer: {error}"))
}

/// The error an error answer stands for: the daemon's own message when the
/// body is wrangle's error JSON, else the status and the start of the body.
fn api_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    if let Ok(error) = serde_json::from_slice::<ErrorBody>(body) {
        return anyhow::Error::new(error);
    }
    let text = String::from_utf8_lossy(body);
    let text = crate::format::truncate(text.trim(), MAX_ERROR_TEXT);
    if text.is_empty() {
        anyhow!("the daemon answered {status}")
    } else {
        anyhow!("the daemon answered {status}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;
    use wrangle_wire::ErrorCode;

    #[test]
    fn error_answers_carry_the_daemons_message() {
        let body = serde_json::to_vec(&ErrorBody::new(
            ErrorCode::NotFound,
            "no agent matches \"x\"",
        ))
        .unwrap();
        let error = api_error(StatusCode::NOT_FOUND, &body);
        assert_eq!(format!("{error:#}"), "no agent matches \"x\"");
        assert_eq!(
            error.downcast_ref::<ErrorBody>().unwrap().error.code,
            ErrorCode::NotFound
        );

        let error = api_error(StatusCode::BAD_GATEWAY, b"  upstream broke\n");
        assert_eq!(
            error.to_string(),
            "the daemon answered 502 Bad Gateway: upstream broke"
        );
        let error = api_error(StatusCode::NOT_FOUND, b"");
        assert_eq!(error.to_string(), "the daemon answered 404 Not Found");
    }

    /// A whole HTTP/1.1 response with a JSON body.
    fn http(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// A one-shot server that answers one request with `response` and
    /// hands back the request it read.
    async fn one_shot(socket: &Path, response: String) -> tokio::task::JoinHandle<String> {
        let listener = UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0; 4096];
            // Enough for these tests: read until the head (and a short
            // body) has arrived.
            loop {
                let n = stream.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_go_over_the_socket_and_errors_come_back() {
        let temp = tempfile::tempdir().unwrap();
        let socket = home::socket_path(temp.path());
        let client = Client {
            socket: socket.clone(),
            restart_in: None,
        };

        let server = one_shot(
            &socket,
            http(
                "409 Conflict",
                r#"{"error":{"code":"already_exists","message":"name is taken"}}"#,
            ),
        )
        .await;
        let error = client
            .post::<_, serde_json::Value>("/v1/agents", &serde_json::json!({"command": ["x"]}))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "name is taken");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /v1/agents HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        assert!(request.ends_with("{\"command\":[\"x\"]}"), "{request}");
        std::fs::remove_file(&socket).unwrap();

        let server = one_shot(&socket, http("200 OK", r#"{"a": true}"#)).await;
        let answer: serde_json::Value = client.get("/v1/agents/a%20b").await.unwrap();
        assert_eq!(answer, serde_json::json!({"a": true}));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /v1/agents/a%20b HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("host: localhost"), "{request}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_or_stale_socket_means_no_daemon() {
        let temp = tempfile::tempdir().unwrap();
        assert!(Client::connect_running(temp.path())
            .await
            .unwrap()
            .is_none());

        // A socket file nobody listens on any more.
        let socket = home::socket_path(temp.path());
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(Client::connect_running(temp.path())
            .await
            .unwrap()
            .is_none());
    }
}
