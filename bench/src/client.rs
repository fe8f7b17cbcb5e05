//! A small HTTP/1.1 client of wrangle's API on its Unix socket (hyper 1
//! over a tokio `UnixStream`), with keep-alive connections that send one
//! request after another.

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;

/// The API of one daemon, by its socket.
#[derive(Debug, Clone)]
pub struct Api {
    socket: PathBuf,
}

/// One open keep-alive connection to the daemon.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

/// A status and a body, as the daemon answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
    /// The id of the last event the answer reflects (its
    /// `wrangle-event-id` header), if it has one.
    pub event_id: Option<u64>,
}

impl Answer {
    /// The body as JSON, if the status is `expected`; an error naming the
    /// request otherwise.
    pub fn json(&self, expected: StatusCode, what: &str) -> Result<Value> {
        self.parse(expected, what)
    }

    /// The body read straight into `T` (fields it does not name are
    /// skipped, not built), if the status is `expected`; an error naming
    /// the request otherwise.
    pub fn parse<T: serde::de::DeserializeOwned>(
        &self,
        expected: StatusCode,
        what: &str,
    ) -> Result<T> {
        if self.status != expected {
            bail!(
                "{what}: the daemon answered {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        serde_json::from_slice(&self.body)
            .with_context(|| format!("{what}: the answer is not the JSON expected"))
    }
}

/// A JSON request body, serialized ahead of the request (so that timing a
/// request does not time the client's serializer).
pub fn json_body(value: &Value) -> Result<Bytes> {
    Ok(Bytes::from(serde_json::to_vec(value)?))
}

impl Api {
    /// The API served on `socket`.
    pub fn new(socket: &Path) -> Api {
        Api {
            socket: socket.to_path_buf(),
        }
    }

    /// Opens a connection (HTTP/1.1 handshake over the socket).
    pub async fn connect(&self) -> Result<Connection> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("cannot connect to {}", self.socket.display()))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake failed")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// One request on a connection of its own, as a CLI process sends it.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer> {
        let body = body.map(json_body).transpose()?;
        self.connect().await?.send(method, path, body).await
    }
}

impl Connection {
    /// Sends one request (with a JSON body made by [`json_body`], if any)
    /// and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer> {
        let has_body = body.is_some();
        let bytes = body.unwrap_or_default();
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, "localhost");
        if has_body {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(bytes))?;
        self.sender
            .ready()
            .await
            .context("the connection to the daemon closed")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("{method} {path} failed"))?;
        let status = response.status();
        let event_id = response
            .headers()
            .get("wrangle-event-id")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("cannot read the answer to {method} {path}"))?
            .to_bytes();
        Ok(Answer {
            status,
            body,
            event_id,
        })
    }
}
