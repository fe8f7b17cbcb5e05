//! Forwarding an agent's telemetry to the user's own collector: every
//! body received from a run whose environment named a collector goes
//! there unchanged (its content type and encoding kept), with the user's
//! own headers. Bodies wait in a bounded queue that one task empties, so
//! a slow or absent collector never slows the agent nor the daemon: when
//! the queue is full a body is dropped (and counted), as an exporter
//! would drop it.

use axum::body::Bytes;
use http_body_util::Full;
use hyper::header;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wrangle_engine::telemetry::Forward;
use wrangle_wire::parse::{parse_http_url, HttpUrl};

/// Bodies waiting to be forwarded, at most.
const QUEUE: usize = 256;

/// Longest a collector may take to take one body.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One body to forward.
#[derive(Debug)]
struct Delivery {
    url: String,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    body: Bytes,
}

/// The queue of bodies to forward, and what became of them.
#[derive(Debug, Clone)]
pub struct Forwarder {
    queue: mpsc::Sender<Delivery>,
    counts: Arc<Counts>,
}

/// Bodies forwarded, failed and dropped since the daemon started.
#[derive(Debug, Default)]
pub struct Counts {
    /// Taken by the collector (2xx).
    pub forwarded: AtomicU64,
    /// Refused by it, or not reached.
    pub failed: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl Forwarder {
    /// A forwarder and the task that empties its queue (on the current
    /// runtime).
    pub fn start() -> Forwarder {
        let (queue, mut receiver) = mpsc::channel::<Delivery>(QUEUE);
        let counts = Arc::new(Counts::default());
        let tally = counts.clone();
        tokio::spawn(async move {
            while let Some(delivery) = receiver.recv().await {
                let url = delivery.url.clone();
                match tokio::time::timeout(TIMEOUT, send(delivery)).await {
                    Ok(Ok(())) => {
                        tally.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(why)) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("cannot forward telemetry to {url}: {why}");
                    }
                    Err(_) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "cannot forward telemetry to {url}: no answer in {TIMEOUT:?}"
                        );
                    }
                }
            }
        });
        Forwarder { queue, counts }
    }

    /// Queues `body`, received at `path` with `content_type` and
    /// `content_encoding`, for `to`; a full queue drops it.
    pub fn forward(
        &self,
        to: &Forward,
        path: &str,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: Bytes,
    ) {
        let delivery = Delivery {
            url: to.url(path),
            headers: to.headers.clone(),
            content_type: content_type.map(str::to_owned),
            content_encoding: content_encoding.map(str::to_owned),
            body,
        };
        if self.queue.try_send(delivery).is_err() {
            let dropped = self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "the user's collector does not keep up: {} telemetry bodies dropped so far",
                    dropped + 1
                );
            }
        }
    }
}

/// POSTs one body; `Err` says why it was not taken.
async fn send(delivery: Delivery) -> Result<(), String> {
    let url: HttpUrl =
        parse_http_url(&delivery.url).map_err(|error| error.replace("--health-http ", ""))?;
    let stream = TcpStream::connect((url.address.host.as_str(), url.address.port))
        .await
        .map_err(|error| error.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake failed: {error}"))?;
    let mut request = Request::post(url.path.as_str())
        .header(header::HOST, url.address.to_string())
        .header(header::USER_AGENT, "wrangle-telemetry-forwarder")
        .header(header::CONTENT_LENGTH, delivery.body.len());
    if let Some(content_type) = &delivery.content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(encoding) = &delivery.content_encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    for (name, value) in &delivery.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(delivery.body))
        .map_err(|error| format!("cannot build the request: {error}"))?;
    let response = sender.send_request(request);
    tokio::pin!(response, connection);
    let answer = tokio::select! {
        biased;
        answer = &mut response => answer,
        _ = &mut connection => response.await,
    };
    let status = answer
        .map_err(|error| format!("no answer: {error}"))?
        .status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}
