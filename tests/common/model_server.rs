//! A scripted model server on loopback for the real agent CLIs: it speaks
//! the Anthropic Messages API (`POST /v1/messages`, what Claude Code
//! calls) and the OpenAI Responses API (`POST /v1/responses`, what Codex
//! calls), streaming Server-Sent Events as the real services do, and
//! answers each call as the test's script says: a text, a Bash command for
//! the agent to run, an overload (HTTP 529), or a stream that stalls.
//!
//! Why a server of our own: the real CLIs are the thing under test, and
//! the only way to drive them to a chosen outcome (a refused tool, retries
//! longer than an idle timeout, exact token counts) without a network is
//! to be their model. Plain `std::net` and a thread per connection: the
//! CLIs make a handful of calls each, and the test must see every byte.
//!
//! Every answer closes its connection (`Connection: close`); both CLIs
//! then open a new one for the next call. Dropping the server stops it and
//! joins all of its threads, a stalled stream included.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Tokens of one model call, as the four disjoint kinds wrangle counts.
/// Each API is told them in its own terms: Anthropic's `input_tokens`
/// excludes the cache, OpenAI's includes the cached part (and has no
/// cache writes: `cache_write` must be 0 for Codex).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens neither read from nor written to the cache.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the cache.
    pub cache_read: u64,
    /// Input tokens written to the cache.
    pub cache_write: u64,
}

impl Usage {
    /// Adds `other` to these, kind by kind.
    pub fn add(&mut self, other: Usage) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
    }
}

/// How the server answers one streaming call.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A text answer that ends the agent's turn.
    Text { text: String, usage: Usage },
    /// A call of the agent's shell tool: Claude's `Bash`, Codex's
    /// `exec_command`.
    Bash { command: String, usage: Usage },
    /// HTTP 529 `overloaded_error` (Anthropic) or 503 (OpenAI): a
    /// failure the CLI retries.
    Overloaded,
    /// HTTP 400 "prompt is too long" (`invalid_request_error`, OpenAI's
    /// `context_length_exceeded`): a failure no retry mends.
    PromptTooLong,
    /// The stream starts (`message_start` / `response.created`) and then
    /// nothing more comes until the server is dropped.
    Stall,
}

impl Reply {
    /// The tokens this reply bills (none for a failure or a stall).
    pub fn usage(&self) -> Usage {
        match self {
            Reply::Text { usage, .. } | Reply::Bash { usage, .. } => *usage,
            Reply::Overloaded | Reply::PromptTooLong | Reply::Stall => Usage::default(),
        }
    }
}

/// Which API a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/messages` (Claude Code).
    Anthropic,
    /// `POST /v1/responses` (Codex).
    OpenAi,
}

/// A call the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The API it used.
    pub api: Api,
    /// Its path, query included.
    pub path: String,
    /// Its JSON body.
    pub body: Value,
}

impl Request {
    /// Whether it asks for a streamed answer (the agent's own turns; side
    /// calls such as a title do not).
    pub fn streaming(&self) -> bool {
        self.body["stream"] == true
    }

    /// All the text the user's side of the conversation holds (the prompt,
    /// and whatever the CLI adds to it): scripts look for their cues here.
    pub fn user_text(&self) -> String {
        let mut text = String::new();
        let items = match self.api {
            Api::Anthropic => &self.body["messages"],
            Api::OpenAi => &self.body["input"],
        };
        for item in items.as_array().into_iter().flatten() {
            if item["role"] != "user" {
                continue;
            }
            match &item["content"] {
                Value::String(s) => text.push_str(s),
                Value::Array(blocks) => {
                    for block in blocks {
                        if let Some(s) = block["text"].as_str() {
                            text.push_str(s);
                            text.push('\n');
                        }
                    }
                }
                _ => {}
            }
        }
        text
    }

    /// How many tool results the conversation carries: the number of tool
    /// calls the agent has answered so far.
    pub fn tool_results(&self) -> usize {
        match self.api {
            Api::Anthropic => self.body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|message| message["content"].as_array())
                .flatten()
                .filter(|block| block["type"] == "tool_result")
                .count(),
            Api::OpenAi => self.body["input"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|item| item["type"] == "function_call_output")
                .count(),
        }
    }
}

/// A test's script: the reply to a streaming call, given the call and its
/// number among the server's streaming calls (0 for the first).
pub type Script = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// What the server has done so far.
#[derive(Debug, Default)]
struct Journal {
    /// Each call and how it was answered (`None` for a side call, which
    /// gets a fixed short answer).
    calls: Vec<(Request, Option<Reply>)>,
}

/// The state the connection threads share.
struct Shared {
    script: Box<Script>,
    journal: Mutex<Journal>,
    streaming_calls: AtomicUsize,
    stopping: AtomicBool,
    ids: AtomicUsize,
}

/// The running server; dropping it stops it.
pub struct ModelServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl ModelServer {
    /// Starts a server on a free port of 127.0.0.1 that answers streaming
    /// calls with `script`.
    pub fn start(script: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().expect("the server's address");
        let shared = Arc::new(Shared {
            script: Box::new(script),
            journal: Mutex::new(Journal::default()),
            streaming_calls: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            ids: AtomicUsize::new(0),
        });
        let for_acceptor = shared.clone();
        let acceptor = thread::spawn(move || accept(listener, for_acceptor));
        ModelServer {
            address,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`: Claude Code's `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every call received so far, with the reply it got (`None`: a side
    /// call, answered with a fixed short message).
    pub fn calls(&self) -> Vec<(Request, Option<Reply>)> {
        self.shared.journal.lock().unwrap().calls.clone()
    }

    /// The tokens billed by all replies so far: what the agents were told
    /// they used.
    pub fn usage_served(&self) -> Usage {
        let mut total = Usage::default();
        for (_, reply) in self.calls() {
            if let Some(reply) = reply {
                total.add(reply.usage());
            }
        }
        total
    }

    /// How many calls were answered with `wanted` (by kind).
    pub fn count(&self, wanted: fn(&Reply) -> bool) -> usize {
        self.calls()
            .iter()
            .filter(|(_, reply)| reply.as_ref().is_some_and(wanted))
            .count()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor from `accept`.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts connections until the server stops, one thread each; then
/// waits for those threads.
fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = Vec::new();
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        connections.push(thread::spawn(move || {
            // A peer that says nothing must not hold a thread forever.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = serve(stream, &shared);
        }));
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Reads one request from `stream` and answers it.
fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some((method, path, body)) = read_request(&mut reader)? else {
        return Ok(());
    };
    let mut out = stream;
    let api = if path.starts_with("/v1/messages") {
        Api::Anthropic
    } else if path.starts_with("/v1/responses") {
        Api::OpenAi
    } else {
        let body = json!({"error": format!("no such endpoint: {method} {path}")}).to_string();
        return respond(&mut out, "404 Not Found", "application/json", &body);
    };
    let request = Request {
        api,
        path,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    if !request.streaming() {
        shared
            .journal
            .lock()
            .unwrap()
            .calls
            .push((request.clone(), None));
        return respond(
            &mut out,
            "200 OK",
            "application/json",
            &side_answer(&request),
        );
    }
    let number = shared.streaming_calls.fetch_add(1, Ordering::SeqCst);
    let reply = (shared.script)(&request, number);
    shared
        .journal
        .lock()
        .unwrap()
        .calls
        .push((request.clone(), Some(reply.clone())));
    let id = shared.ids.fetch_add(1, Ordering::SeqCst);
    match (&reply, api) {
        (Reply::Overloaded, Api::Anthropic) => {
            let body = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
            respond(
                &mut out,
                "529 Overloaded",
                "application/json",
                &body.to_string(),
            )
        }
        (Reply::Overloaded, Api::OpenAi) => {
            let body = json!({"error": {"type": "server_error", "message": "overloaded"}});
            respond(
                &mut out,
                "503 Service Unavailable",
                "application/json",
                &body.to_string(),
            )
        }
        (Reply::PromptTooLong, Api::Anthropic) => {
            let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"}});
            respond(
                &mut out,
                "400 Bad Request",
                "application/json",
                &body.to_string(),
            )
        }
        (Reply::PromptTooLong, Api::OpenAi) => {
            let body = json!({"error": {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "Your input exceeds the context window of this model."}});
            respond(
                &mut out,
                "400 Bad Request",
                "application/json",
                &body.to_string(),
            )
        }
        (Reply::Stall, _) => {
            let first = match api {
                Api::Anthropic => anthropic_events(&request, &reply, id).remove(0),
                Api::OpenAi => openai_events(&reply, id).remove(0),
            };
            stream_events(&mut out, &[first])?;
            while !shared.stopping.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        (_, Api::Anthropic) => stream_events(&mut out, &anthropic_events(&request, &reply, id)),
        (_, Api::OpenAi) => stream_events(&mut out, &openai_events(&reply, id)),
    }
}

/// Reads a request's line, headers and body (by `Content-Length`, or
/// chunked); `None` when the peer closed without sending one.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<(String, String, Vec<u8>)>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some((method, path, body)))
}

/// Writes a whole response with a body and closes the connection.
fn respond(
    out: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

/// Writes a stream of Server-Sent Events, `(event, data)`, ended by the
/// connection's close.
fn stream_events(out: &mut TcpStream, events: &[(&str, Value)]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
    )?;
    for (event, data) in events {
        write!(out, "event: {event}\ndata: {data}\n\n")?;
        out.flush()?;
    }
    Ok(())
}

/// The answer to a call without `stream` (a side call of the CLI's): one
/// short message, billing a few tokens.
fn side_answer(request: &Request) -> String {
    match request.api {
        Api::Anthropic => json!({
            "id": "msg_side",
            "type": "message",
            "role": "assistant",
            "model": request.body["model"],
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        }),
        Api::OpenAi => json!({"id": "resp_side", "output": [], "usage": null}),
    }
    .to_string()
}

/// A Messages API stream: `message_start` with the call's input-side
/// usage (and an output count of 1, as the real API sends), one content
/// block, `message_delta` with the real output count and the stop reason,
/// `message_stop`.
fn anthropic_events(request: &Request, reply: &Reply, id: usize) -> Vec<(&'static str, Value)> {
    let usage = reply.usage();
    let start = json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_{id:04}"),
            "type": "message",
            "role": "assistant",
            "model": request.body["model"],
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {
                "input_tokens": usage.input,
                "cache_creation_input_tokens": usage.cache_write,
                "cache_read_input_tokens": usage.cache_read,
                "output_tokens": 1,
            },
        },
    });
    let (block, delta, stop_reason) = match reply {
        Reply::Bash { command, .. } => (
            json!({"type": "tool_use", "id": format!("toolu_{id:04}"), "name": "Bash", "input": {}}),
            json!({"type": "input_json_delta", "partial_json": json!({"command": command, "description": format!("run {command}")}).to_string()}),
            "tool_use",
        ),
        Reply::Text { text, .. } => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
            "end_turn",
        ),
        _ => (json!({}), json!({}), "end_turn"),
    };
    vec![
        ("message_start", start),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": usage.output}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

/// A Responses API stream: `response.created`, the one output item, and
/// `response.completed` with the usage (input counting the cached part).
fn openai_events(reply: &Reply, id: usize) -> Vec<(&'static str, Value)> {
    let usage = reply.usage();
    let response_id = format!("resp_{id:04}");
    let item = match reply {
        Reply::Bash { command, .. } => json!({
            "type": "function_call",
            "id": format!("fc_{id:04}"),
            "call_id": format!("call_{id:04}"),
            "name": "exec_command",
            "arguments": json!({"cmd": command}).to_string(),
        }),
        Reply::Text { text, .. } => json!({
            "type": "message",
            "id": format!("msg_{id:04}"),
            "role": "assistant",
            "content": [{"type": "output_text", "text": text}],
        }),
        _ => json!({}),
    };
    vec![
        (
            "response.created",
            json!({"type": "response.created", "response": {"id": response_id}}),
        ),
        (
            "response.output_item.done",
            json!({"type": "response.output_item.done", "item": item}),
        ),
        (
            "response.completed",
            json!({
                "type": "response.completed",
                "response": {
                    "id": response_id,
                    "usage": {
                        "input_tokens": usage.input + usage.cache_read,
                        "input_tokens_details": {"cached_tokens": usage.cache_read},
                        "output_tokens": usage.output,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": usage.input + usage.cache_read + usage.output,
                    },
                },
            }),
        ),
    ]
}
