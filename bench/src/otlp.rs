//! A client of the daemon's telemetry port, as light as a thousand of
//! them on two cores need it to be: the OTLP/HTTP JSON body of one Claude
//! Code `claude_code.api_request` record (AGENT-FORMATS.md §10), and a
//! blocking HTTP/1.1 POST on a kept-alive `TcpStream`, written by hand (no
//! runtime, no client library: one write and one read per call).

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wrangle_wire::TokenCounts;

/// The model every record names (one the price table knows).
pub const MODEL: &str = "claude-sonnet-4-5";

/// One model call's figures, as a record reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// Its tokens.
    pub tokens: TokenCounts,
    /// Its cost in micro-USD (`cost_usd_micros`).
    pub micro_usd: u64,
}

/// What `tokens` cost at Sonnet's prices ($3, $15, $0.30, $3.75 a
/// million input, output, cache-read, cache-write), in micro-USD, as
/// Claude Code computes it.
const fn sonnet_micro_usd(tokens: TokenCounts) -> u64 {
    (tokens.input * 300 + tokens.output * 1500 + tokens.cache_read * 30 + tokens.cache_write * 375)
        / 100
}

/// The call each agent reports once a second: a little input, most of
/// it read from the cache, as real calls go.
pub const AGENT_CALL: Call = {
    let tokens = TokenCounts {
        input: 3,
        output: 120,
        cache_read: 20_000,
        cache_write: 500,
    };
    Call {
        tokens,
        micro_usd: sonnet_micro_usd(tokens),
    }
};

/// The call of the latency probe's records: its input alone (100,000
/// tokens) tells it from the agent's own calls (3 each) in the agent's
/// totals, however many of those land meanwhile.
pub const PROBE_CALL: Call = {
    let tokens = TokenCounts {
        input: 100_000,
        ..AGENT_CALL.tokens
    };
    Call {
        tokens,
        micro_usd: sonnet_micro_usd(tokens),
    }
};

/// The body `POST /v1/logs` carries: one `claude_code.api_request`
/// record of `call`, number `sequence` of session `session`, at `unix_nanos`, with
/// the resource attributes `resource` (`OTEL_RESOURCE_ATTRIBUTES`, already
/// split). The sequence number and the time make each record distinct, so
/// that the daemon counts each once (it dedups by a hash of the record).
pub fn api_request_body(
    call: &Call,
    resource: &[(String, String)],
    session: &str,
    sequence: u64,
    unix_nanos: u128,
) -> String {
    let mut body = String::with_capacity(2048);
    let text = |value: &str| format!(r#"{{"stringValue":"{value}"}}"#);
    let int = |value: u64| format!(r#"{{"intValue":{value}}}"#);
    body.push_str(r#"{"resourceLogs":[{"resource":{"attributes":["#);
    attribute(&mut body, "service.name", &text("claude-code"));
    attribute(&mut body, "service.version", &text("2.1.197"));
    for (key, value) in resource {
        attribute(&mut body, key, &text(value));
    }
    body.pop();
    let _ = write!(
        body,
        r#"]}},"scopeLogs":[{{"scope":{{"name":"com.anthropic.claude_code.events","version":"2.1.197"}},"logRecords":[{{"timeUnixNano":"{unix_nanos}","observedTimeUnixNano":"{unix_nanos}","body":{{"stringValue":"claude_code.api_request"}},"attributes":["#
    );
    let cost = call.micro_usd as f64 / 1e6;
    let tokens = call.tokens;
    attribute(&mut body, "event.name", &text("api_request"));
    attribute(&mut body, "event.timestamp", &text(&iso_time(unix_nanos)));
    attribute(&mut body, "event.sequence", &int(sequence));
    attribute(&mut body, "session.id", &text(session));
    attribute(&mut body, "prompt.id", &text(&format!("{session}-p")));
    attribute(&mut body, "terminal.type", &text("non-interactive"));
    attribute(&mut body, "model", &text(MODEL));
    attribute(&mut body, "input_tokens", &int(tokens.input));
    attribute(&mut body, "output_tokens", &int(tokens.output));
    attribute(&mut body, "cache_read_tokens", &int(tokens.cache_read));
    attribute(&mut body, "cache_creation_tokens", &int(tokens.cache_write));
    attribute(
        &mut body,
        "cost_usd",
        &format!(r#"{{"doubleValue":{cost}}}"#),
    );
    attribute(&mut body, "cost_usd_micros", &int(call.micro_usd));
    attribute(&mut body, "duration_ms", &int(800 + sequence % 400));
    attribute(&mut body, "speed", &text("normal"));
    attribute(&mut body, "query_source", &text("sdk"));
    body.pop();
    body.push_str("]}]}]}]}");
    body
}

/// Appends `{"key":KEY,"value":VALUE},` (VALUE is JSON already).
fn attribute(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, r#"{{"key":"{key}","value":{value}}},"#);
}

/// `unix_nanos` as the ISO time Claude Code writes in `event.timestamp`.
fn iso_time(unix_nanos: u128) -> String {
    let nanos = i64::try_from(unix_nanos).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_nanos(nanos)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Nanoseconds since the epoch, now.
pub fn now_unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

/// `OTEL_RESOURCE_ATTRIBUTES` (`k1=v1,k2=v2`) as pairs.
pub fn resource_attributes(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// The bearer token in `OTEL_EXPORTER_OTLP_HEADERS`
/// (`authorization=Bearer TOKEN`, perhaps among others).
pub fn bearer_token(headers: &str) -> Option<String> {
    headers.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim().strip_prefix("Bearer ").map(str::to_string))?
    })
}

/// How long one call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A kept-alive connection to the telemetry port that posts log bodies.
pub struct Poster {
    /// `HOST:PORT`.
    address: String,
    /// The request's head up to the body's length, the same every time.
    head: String,
    connection: Option<BufReader<TcpStream>>,
    /// Connections opened again after the daemon closed one.
    pub reconnects: u64,
}

impl Poster {
    /// A poster to `endpoint` (`http://HOST:PORT`) with `token`; it
    /// connects on the first post (or [`Poster::connect`]).
    pub fn new(endpoint: &str, token: &str) -> Result<Poster> {
        let Some(address) = endpoint.strip_prefix("http://") else {
            bail!("the endpoint {endpoint:?} is not http://HOST:PORT");
        };
        let address = address.trim_end_matches('/').to_string();
        let head = format!(
            "POST /v1/logs HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nUser-Agent: wrangle-bench\r\nContent-Length: "
        );
        Ok(Poster {
            address,
            head,
            connection: None,
            reconnects: 0,
        })
    }

    /// Opens the connection now, if it is not open (so that a timed post
    /// does not time the connect).
    pub fn connect(&mut self) -> Result<()> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(&self.address)
                .with_context(|| format!("cannot connect to {}", self.address))?;
            stream.set_read_timeout(Some(CALL_TIMEOUT))?;
            stream.set_write_timeout(Some(CALL_TIMEOUT))?;
            stream.set_nodelay(true)?;
            self.connection = Some(BufReader::new(stream));
        }
        Ok(())
    }

    /// Posts `body` and returns the answer's status. A kept-alive
    /// connection the daemon closed meanwhile is opened again and the post
    /// sent once more (as OTel exporters do; the daemon counts a record
    /// once however often it comes).
    pub fn post(&mut self, body: &str) -> Result<u16> {
        let reused = self.connection.is_some();
        match self.post_once(body) {
            Err(_) if reused => {
                self.connection = None;
                self.reconnects += 1;
                self.post_once(body)
            }
            other => other,
        }
    }

    fn post_once(&mut self, body: &str) -> Result<u16> {
        self.connect()?;
        let request = format!("{}{}\r\n\r\n{body}", self.head, body.len());
        let connection = self.connection.as_mut().expect("connected above");
        let answer = send(connection, request.as_bytes());
        match &answer {
            Ok((_, keep)) if *keep => {}
            _ => self.connection = None,
        }
        answer.map(|(status, _)| status)
    }
}

/// Writes `request` and reads the answer to its end: the status, and
/// whether the connection may be used again.
fn send(connection: &mut BufReader<TcpStream>, request: &[u8]) -> Result<(u16, bool)> {
    connection.get_mut().write_all(request)?;
    let mut line = String::new();
    if connection.read_line(&mut line)? == 0 {
        bail!("the daemon closed the connection");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        if connection.read_line(&mut line)? == 0 {
            bail!("the answer ended in its headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<u64>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    // The body is read and dropped: only the status matters.
    let sink = &mut std::io::sink();
    if let Some(length) = length {
        std::io::copy(&mut connection.by_ref().take(length), sink)?;
    } else if chunked {
        loop {
            line.clear();
            connection.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim(), 16).context("a bad chunk size")?;
            std::io::copy(&mut connection.by_ref().take(size + 2), sink)?;
            if size == 0 {
                break;
            }
        }
    } else {
        // Delimited by the close.
        std::io::copy(connection, sink)?;
        keep = false;
    }
    Ok((status, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_one_api_request_record_of_the_known_figures() {
        let resource = resource_attributes("wrangle.agent=ag1,wrangle.run=2");
        let body = api_request_body(&AGENT_CALL, &resource, "s-1", 7, 1_765_000_000_123_456_789);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let logs = &value["resourceLogs"][0];
        let sent = logs["resource"]["attributes"].as_array().unwrap();
        assert!(sent
            .iter()
            .any(|a| a["key"] == "wrangle.agent" && a["value"]["stringValue"] == "ag1"));
        let record = &logs["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["body"]["stringValue"], "claude_code.api_request");
        assert_eq!(record["timeUnixNano"], "1765000000123456789");
        let attribute = |key: &str| {
            record["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == key)
                .map(|a| a["value"].clone())
                .unwrap()
        };
        assert_eq!(attribute("event.sequence")["intValue"], 7);
        assert_eq!(attribute("cache_read_tokens")["intValue"], 20_000);
        assert_eq!(attribute("cost_usd_micros")["intValue"], 9684);
        assert_eq!(attribute("cost_usd")["doubleValue"], 0.009684);
        let next = api_request_body(&AGENT_CALL, &resource, "s-1", 8, 1_765_000_000_123_456_789);
        assert_ne!(body, next);
        assert_eq!(PROBE_CALL.micro_usd, 9684 + 99_997 * 3);
    }

    #[test]
    fn the_token_is_found_among_the_headers() {
        assert_eq!(
            bearer_token("x-team=core,authorization=Bearer ag1.2.ff").as_deref(),
            Some("ag1.2.ff")
        );
        assert_eq!(bearer_token("x-team=core"), None);
    }
}
