//! Hand-written HTTP/1.1 over the daemon's Unix socket: to send the API
//! what no well-behaved client would.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// An answer of the API.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, decoded from chunks if it was sent in chunks.
    pub body: String,
}

impl Response {
    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {}", self.body))
    }

    /// `(code, message)` of an error body `{"error": {"code", "message"}}`.
    pub fn error(&self) -> (String, String) {
        let json = self.json();
        let code = json["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {json}"));
        let message = json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {json}"));
        (code.to_string(), message.to_string())
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Response {
    let content_type = content_type.map(|value| format!("Content-Type: {value}"));
    let headers: Vec<&str> = content_type.iter().map(String::as_str).collect();
    send(socket, method, path, &headers, body)
}

/// Sends one request without a body but with `headers` (`Name: value`).
pub fn request_with_headers(socket: &Path, method: &str, path: &str, headers: &[&str]) -> Response {
    send(socket, method, path, headers, "")
}

/// Sends a request with extra `headers` (`Name: value`) and a body.
pub fn request_with_body(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Response {
    send(socket, method, path, headers, body)
}

fn send(socket: &Path, method: &str, path: &str, headers: &[&str], body: &str) -> Response {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: wrangle\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(&format!("{header}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    // A daemon may answer (a body over its limit: 413) and close before
    // the whole request is in: its answer is still there to read.
    let cut_short = |error: &std::io::Error| {
        matches!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    };
    if let Err(error) = stream.write_all(request.as_bytes()) {
        assert!(cut_short(&error), "send the request: {error}");
    }
    let mut answer = Vec::new();
    if let Err(error) = stream.read_to_end(&mut answer) {
        assert!(
            cut_short(&error) && !answer.is_empty(),
            "read the answer: {error}"
        );
    }
    parse(&answer)
}

fn parse(answer: &[u8]) -> Response {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]);
    let body = &answer[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Joins the chunks of a chunked body.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..end]);
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let data = &rest[end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        body.extend_from_slice(&data[..size]);
        rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
    body
}
