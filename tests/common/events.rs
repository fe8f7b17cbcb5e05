//! Clients of the event stream for the tests: `wrangle events --json` run
//! in the background with its lines collected as they come, a raw
//! Server-Sent Events reader over the socket, and the store's own log of
//! events to compare what clients got with.

use super::{wait_until, Home, WRANGLE};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// `wrangle events --json ARGS` in the background.
pub struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Follower {
    /// Starts `wrangle events --json ARGS` for `home`.
    pub fn start(home: &Home, args: &[&str]) -> Follower {
        let mut full = vec!["events", "--json"];
        full.extend_from_slice(args);
        let mut command = home.command(&full);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {WRANGLE} events: {error}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let collected = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("events printed no JSON ({error}): {line}"));
                collected.lock().unwrap().push(value);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let errors = stderr.clone();
        thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    return;
                }
                errors
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Follower {
            child,
            lines,
            stderr,
        }
    }

    /// What it printed so far, one JSON value a line.
    pub fn messages(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The ids of the events it printed so far (notices have none).
    pub fn ids(&self) -> Vec<u64> {
        ids(&self.messages())
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until what it printed satisfies `done`, and returns it.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        wait_until(super::SOON, what, || done(&self.messages()));
        self.messages()
    }

    /// Waits until it has printed the event with id `id` (or a later one).
    pub fn wait_for_id(&self, id: u64) -> Vec<Value> {
        self.wait_for(&format!("the follower has event {id}"), |messages| {
            ids(messages).last().is_some_and(|last| *last >= id)
        })
    }

    /// Whether the process has ended.
    pub fn has_ended(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ids of the events among `messages`.
pub fn ids(messages: &[Value]) -> Vec<u64> {
    messages.iter().filter_map(|m| m["id"].as_u64()).collect()
}

/// The types of `messages`.
pub fn types(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every event the store holds after id `after`, oldest first, as the JSON
/// clients get.
pub fn stored(home: &Home, after: u64) -> Vec<Value> {
    let database = home.open_database();
    let mut statement = database
        .prepare("SELECT body FROM events WHERE seq > ?1 ORDER BY seq")
        .expect("select events");
    statement
        .query_map([after as i64], |row| row.get::<_, String>(0))
        .expect("query events")
        .map(|body| serde_json::from_str(&body.expect("a row")).expect("an event's JSON"))
        .collect()
}

/// The id of the newest event the store holds (0 when none).
pub fn last_id(home: &Home) -> u64 {
    let database = home.open_database();
    let newest: Option<i64> = database
        .query_row("SELECT MAX(seq) FROM events", [], |row| row.get(0))
        .expect("query events");
    newest.unwrap_or(0) as u64
}

/// One message of a Server-Sent Events stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// `id:`.
    pub id: Option<u64>,
    /// `event:`.
    pub event: Option<String>,
    /// `data:`.
    pub data: String,
    /// A comment (`: keep-alive`) and nothing else.
    pub comment: bool,
}

impl Frame {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|error| panic!("data is not JSON ({error}): {}", self.data))
    }
}

/// A raw `GET /v1/events` over the socket, read frame by frame.
pub struct Sse {
    reader: BufReader<UnixStream>,
    /// The status code of the answer.
    pub status: u16,
    /// The answer's head, lowercased.
    pub head: String,
    /// Bytes of the body read and not yet cut into frames.
    body: Vec<u8>,
    /// True once the body has ended.
    ended: bool,
}

impl Sse {
    /// Sends `GET path` with `headers` (`Name: value` lines).
    pub fn open(home: &Home, path: &str, headers: &[&str]) -> Sse {
        let stream = UnixStream::connect(home.socket()).expect("connect to the daemon");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: wrangle\r\n");
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        (&stream).write_all(request.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read the head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        Sse {
            reader,
            status,
            head,
            body: Vec::new(),
            ended: false,
        }
    }

    /// The connection, e.g. to leave it unread.
    pub fn stream(&self) -> &UnixStream {
        self.reader.get_ref()
    }

    /// Reads one chunk of the (chunked) body; false once it ended.
    fn read_chunk(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut size = String::new();
        if self.reader.read_line(&mut size).unwrap_or(0) == 0 {
            self.ended = true;
            return false;
        }
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).expect("a chunk");
        data.truncate(size);
        if size == 0 {
            self.ended = true;
            return false;
        }
        self.body.extend_from_slice(&data);
        true
    }

    /// The next frame; `None` once the stream has ended.
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                let text: Vec<u8> = self.body.drain(..end + 2).collect();
                return Some(parse_frame(&String::from_utf8_lossy(&text)));
            }
            if !self.read_chunk() {
                return None;
            }
        }
    }

    /// Every frame up to the end of the stream.
    pub fn rest(&mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn parse_frame(text: &str) -> Frame {
    let mut frame = Frame::default();
    let mut only_comments = true;
    for line in text.lines().filter(|line| !line.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        only_comments = false;
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "id" => frame.id = Some(value.parse().expect("a numeric id")),
            "event" => frame.event = Some(value.to_string()),
            "data" => frame.data.push_str(value),
            other => panic!("unexpected SSE field {other:?} in {text:?}"),
        }
    }
    frame.comment = only_comments;
    frame
}
