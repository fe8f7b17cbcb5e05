//! Inputs that cannot break the daemon (issue 16), over its API: a real
//! daemon takes more than 10,000 random and mutated requests on its socket
//! (mutated JSON bodies for every route of `/openapi.json`, odd methods,
//! odd paths: long, percent-encoded, unicode, `..`; bad headers, wrong or
//! missing Content-Length, truncated and chunked bodies, bodies past the
//! 64 MiB batch limit, requests sent a byte at a time, half-closed and
//! abandoned connections, 200 connections at once) while a user keeps
//! doing real work with the CLI (run, inspect, ps, stop, rm).
//!
//! It shows that the daemon neither crashes nor panics, that the real work
//! never fails, that every refusal of a well-formed request is the JSON
//! error `{"error": {"code", "message"}}` with the status of its code and
//! never a 500 (a request hyper cannot parse may get hyper's own empty
//! 4xx, or a closed connection), and that the daemon's descriptors and
//! memory are what they were once the storm has passed.
//!
//! The requests come from a seeded RNG: `WRANGLE_FUZZ_SEED=N` tries other
//! ones; the seed is printed, and each thread's requests are the same for
//! the same seed. The fuzzer never asks for what would hurt the machine
//! or the user's work: the commands it sends are `/bin/true`, `/bin/false`
//! or a missing program, and it never names the user's agents nor stops
//! the daemon (see [`endangers`]).

mod common;

use common::{marker, procfs, wait_until, Home, SOON};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Requests of the measured round.
const REQUESTS: usize = 10_000;
/// Requests of the warm-up round, after which descriptors and memory are
/// measured the first time.
const WARM_UP: usize = 1_500;
/// Threads sending requests one after another.
const FUZZERS: usize = 3;
/// Connections opened at once in a burst.
const BURST: usize = 200;
/// Bursts in the measured round (one in the warm-up).
const BURSTS: usize = 3;
/// Requests sent a byte at a time, in each round.
const SLOW: usize = 30;
/// The seed when `WRANGLE_FUZZ_SEED` gives none: a run tries the same
/// requests on every machine.
const DEFAULT_SEED: u64 = 16;

/// How long a well-formed request may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long an answer that may never end (wait, follow, events) is read.
const LONG_POLL: Duration = Duration::from_millis(500);
/// How far the daemon's descriptors may be off after the storm.
const FD_SLACK: usize = 8;
/// How much the daemon's resident memory may grow over the storm (with
/// no leak it grew by 0-6 MiB in five runs; before the daemon had glibc
/// give large frees back, by up to 36 MiB, depending on the order of the
/// large requests).
const RSS_SLACK: u64 = 20 * 1024 * 1024;

/// The only programs the fuzzer's creates may run.
const SAFE_PROGRAMS: [&str; 3] = ["/bin/true", "/bin/false", "/nonexistent/wrangle-fuzz"];
/// Names the fuzzer gives its agents: a few, so that most creates find
/// the name taken and the fuzzer makes few agents.
const FUZZ_NAMES: [&str; 6] = ["fz-0", "fz-1", "fz-2", "fz-3", "fz.b0", "fz_b1"];
/// Prefix of the names of the user's agents.
const WORK: &str = "work";

/// The error codes of the API and the status each is sent with.
const ERROR_CODES: [(&str, u16); 11] = [
    ("invalid_argument", 400),
    ("unauthenticated", 401),
    ("permission_denied", 403),
    ("not_found", 404),
    ("method_not_allowed", 405),
    ("payload_too_large", 413),
    ("ambiguous", 409),
    ("already_exists", 409),
    ("failed_precondition", 409),
    ("internal", 500),
    ("unavailable", 503),
];

// ---------------------------------------------------------------------
// Requests as bytes, and what may be answered to them.

/// How a request's bytes go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// All at once; then the answer is read.
    AtOnce,
    /// All at once, then the writing half is shut: the daemon reads EOF.
    HalfClosed,
    /// The first this many bytes, then the connection is closed unread.
    Abandoned(usize),
    /// A byte at a time, a millisecond apart.
    ByteByByte,
}

/// One request of the fuzzer.
#[derive(Debug, Clone)]
struct Attempt {
    /// What it is, for a failure's message.
    what: String,
    /// The bytes sent.
    bytes: Vec<u8>,
    /// How they are sent.
    delivery: Delivery,
    /// How many of the answers, from the first, answer well-formed HTTP
    /// requests that reach the router: each of them that is an error must
    /// be the API's JSON error. Later ones answer what the HTTP layer may
    /// refuse on its own (an empty 4xx, or closing).
    strict: usize,
    /// Its answer may take long or never end (`wait`, `follow`, events).
    long_poll: bool,
    /// A HEAD request: its answer has no body.
    head: bool,
    /// A create (`POST /v1/agents`, `/v1/batch`).
    create: bool,
}

/// The parts of a request, before it is rendered into bytes.
#[derive(Debug, Clone)]
struct Draft {
    method: String,
    /// The request target, path and query: bytes, as some are not text.
    target: Vec<u8>,
    version: String,
    /// Header lines without their CRLF, `Host` and `Connection` included.
    headers: Vec<Vec<u8>>,
    body: Vec<u8>,
    length: Length,
    /// Whether the HTTP layer can parse it (and so the router sees it).
    well_formed: bool,
    what: String,
    /// Bytes sent as they are instead of all the above (garbage).
    raw: Option<Vec<u8>>,
}

/// How a draft states its body's length.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Length {
    /// `Content-Length` of the body (none for an empty GET-like body).
    Exact,
    /// No `Content-Length`.
    Omitted,
    /// This `Content-Length` value, whatever the body.
    Stated(String),
    /// `Transfer-Encoding: chunked`, with valid chunks or `bad` ones.
    Chunked { bad: bool },
}

impl Draft {
    fn new(method: &str, target: &str, body: Option<Vec<u8>>) -> Draft {
        let mut headers = vec![b"Host: wrangle".to_vec(), b"Connection: close".to_vec()];
        if body.is_some() {
            headers.push(b"Content-Type: application/json".to_vec());
        }
        Draft {
            method: method.to_string(),
            target: target.as_bytes().to_vec(),
            version: "HTTP/1.1".into(),
            headers,
            body: body.unwrap_or_default(),
            length: Length::Exact,
            well_formed: true,
            what: String::new(),
            raw: None,
        }
    }

    /// Replaces the header `name` (any case) with `line`, or removes it.
    fn set_header(&mut self, name: &str, line: Option<Vec<u8>>) {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .retain(|h| !h.to_ascii_lowercase().starts_with(prefix.as_bytes()));
        if let Some(line) = line {
            self.headers.push(line);
        }
    }

    fn path(&self) -> &[u8] {
        let end = self
            .target
            .iter()
            .position(|b| *b == b'?')
            .unwrap_or(self.target.len());
        &self.target[..end]
    }

    fn long_poll(&self) -> bool {
        let target = String::from_utf8_lossy(&self.target);
        target.contains("/wait") || target.contains("follow") || target.contains("events")
    }

    fn render(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut bytes = Vec::with_capacity(self.body.len() + 256);
        bytes.extend_from_slice(self.method.as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(&self.target);
        bytes.push(b' ');
        bytes.extend_from_slice(self.version.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        for header in &self.headers {
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(b"\r\n");
        }
        match &self.length {
            Length::Exact if !self.body.is_empty() || self.method != "GET" => bytes
                .extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes()),
            Length::Exact | Length::Omitted => {}
            Length::Stated(value) => {
                bytes.extend_from_slice(format!("Content-Length: {value}\r\n").as_bytes())
            }
            Length::Chunked { .. } => bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        bytes.extend_from_slice(b"\r\n");
        match &self.length {
            Length::Chunked { bad } => {
                for chunk in self.body.chunks(7) {
                    bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    bytes.extend_from_slice(chunk);
                    bytes.extend_from_slice(b"\r\n");
                }
                if *bad {
                    bytes.extend_from_slice(b"zz\r\nnot a chunk\r\n");
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            }
            _ => bytes.extend_from_slice(&self.body),
        }
        bytes
    }

    fn into_attempt(self, delivery: Delivery) -> Attempt {
        let create =
            self.method == "POST" && (self.path() == b"/v1/agents" || self.path() == b"/v1/batch");
        Attempt {
            what: self.what.clone(),
            bytes: self.render(),
            delivery,
            strict: usize::from(self.well_formed),
            long_poll: self.long_poll(),
            head: self.method == "HEAD",
            create,
        }
    }
}

// ---------------------------------------------------------------------
// What the fuzzer must never send.

/// True when a request could touch the user's agents or the daemon
/// itself, or run anything but a harmless program: it names an agent by
/// something that could be the prefix of a user's agent's id (hex) or its
/// name, stops agents by `all`, stops the daemon, or creates an agent
/// that runs another program or restarts.
fn endangers(draft: &Draft) -> bool {
    let path = percent_decode(draft.path());
    let path = String::from_utf8_lossy(&path);
    if path.split('/').any(|segment| {
        (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_hexdigit()))
            || segment.starts_with(WORK)
    }) {
        return true;
    }
    // A body the daemon could parse is one serde_json parses.
    let body = match &draft.length {
        Length::Chunked { bad: true } => return false,
        _ => &draft.body,
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    // Serde takes a struct from an array too, its fields in order: `[]`
    // is a `daemon stop`, `[[], true]` a `stop --all`.
    let target = String::from_utf8_lossy(&draft.target);
    if (target.contains("daemon/stop") && value.is_object())
        || (target.contains("stop") && value.is_array())
    {
        return true;
    }
    harmful_json(&value)
}

fn harmful_json(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(harmful_json),
        Value::Object(object) => {
            object.iter().any(|(key, value)| {
                let text = value.as_str().unwrap_or_default();
                match key.as_str() {
                    "command" => value
                        .as_array()
                        .and_then(|argv| argv.first())
                        .and_then(Value::as_str)
                        .is_some_and(|program| !SAFE_PROGRAMS.contains(&program)),
                    "health_cmd" => value.is_string() && text != "/bin/true",
                    "restart" => value.is_string() && text != "never",
                    "all" => value == &Value::Bool(true),
                    "stop_agents" => true,
                    "name" => text.starts_with(WORK),
                    "agents" => value.as_array().is_some_and(|agents| {
                        agents.iter().filter_map(Value::as_str).any(|agent| {
                            agent.is_empty()
                                || agent.starts_with(WORK)
                                || agent.bytes().all(|b| b.is_ascii_hexdigit())
                        })
                    }),
                    _ => false,
                }
            }) || object.values().any(harmful_json)
        }
        _ => false,
    }
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------
// The generator.

/// A route of the API: its method and path template.
#[derive(Debug, Clone)]
struct Route {
    method: String,
    template: String,
}

/// The routes the daemon documents in `/openapi.json`, and the document.
fn routes(home: &Home) -> Vec<Route> {
    let answer = home.http("GET", "/openapi.json", None, "");
    assert_eq!(answer.status, 200, "{answer:?}");
    let document = answer.json();
    let mut routes = vec![Route {
        method: "GET".into(),
        template: "/openapi.json".into(),
    }];
    for (template, methods) in document["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            routes.push(Route {
                method: method.to_ascii_uppercase(),
                template: template.clone(),
            });
        }
    }
    routes
}

/// Makes requests from a seeded RNG.
struct Generator {
    rng: StdRng,
    routes: Vec<Route>,
}

impl Generator {
    fn new(seed: u64, stream: u64, routes: Vec<Route>) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            routes,
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// A request nothing endangers, delivered in one of the usual ways.
    fn attempt(&mut self) -> Attempt {
        if self.chance(4) {
            return self.pipeline();
        }
        let draft = self.safe_draft();
        let delivery = match self.rng.random_range(0..100) {
            0..84 => Delivery::AtOnce,
            84..93 => Delivery::HalfClosed,
            _ => Delivery::Abandoned(0),
        };
        // A body shorter than stated, or garbage: nothing more comes, and
        // the daemon learns it (it waits for the rest of a request).
        let half_close = draft.raw.is_some()
            || matches!(&draft.length, Length::Stated(n) if n.parse::<usize>().is_ok_and(|n| n > draft.body.len()));
        let mut attempt = draft.into_attempt(delivery);
        match attempt.delivery {
            Delivery::Abandoned(_) => {
                let cut = self.rng.random_range(0..=attempt.bytes.len());
                attempt.delivery = Delivery::Abandoned(cut);
            }
            _ if half_close => attempt.delivery = Delivery::HalfClosed,
            _ => {}
        }
        attempt
    }

    /// A draft of any kind that [`endangers`] nothing.
    fn safe_draft(&mut self) -> Draft {
        loop {
            let mut draft = match self.rng.random_range(0..100) {
                0..40 => self.mutated_body(),
                40..52 => self.odd_path(),
                52..62 => self.odd_method(),
                62..76 => self.bad_headers(),
                76..88 => self.framing(),
                88..93 => self.garbage(),
                _ => self.plain(),
            };
            if endangers(&draft) {
                continue;
            }
            if draft.what.is_empty() {
                draft.what = "request".into();
            }
            return draft;
        }
    }

    /// Two to four well-formed requests in one write, on one connection
    /// kept alive until the last.
    fn pipeline(&mut self) -> Attempt {
        let n = self.rng.random_range(2..=4);
        let mut bytes = Vec::new();
        let mut whats = Vec::new();
        let mut create = false;
        for i in 0..n {
            let mut draft = loop {
                let draft = self.plain();
                if draft.well_formed
                    && !endangers(&draft)
                    && !draft.long_poll()
                    && draft.method != "HEAD"
                {
                    break draft;
                }
            };
            if i + 1 < n {
                draft.set_header("Connection", Some(b"Connection: keep-alive".to_vec()));
            }
            whats.push(draft.what.clone());
            let attempt = draft.into_attempt(Delivery::AtOnce);
            create |= attempt.create;
            bytes.extend(attempt.bytes);
        }
        Attempt {
            what: format!("pipelined: {}", whats.join(", ")),
            bytes,
            delivery: Delivery::AtOnce,
            strict: n,
            long_poll: false,
            head: false,
            create,
        }
    }

    /// A small, well-formed request, for bursts and slow sending.
    fn small_attempt(&mut self) -> Attempt {
        loop {
            let attempt = self.attempt();
            if attempt.delivery == Delivery::AtOnce
                && attempt.bytes.len() < 600
                && !attempt.long_poll
                && attempt.strict == 1
            {
                return attempt;
            }
        }
    }

    fn route(&mut self) -> Route {
        let routes = self.routes.clone();
        self.pick(&routes).clone()
    }

    /// A route's request, its body a seed (not mutated); well-formed
    /// unless an odd path parameter or query value is not.
    fn request_for(&mut self, route: &Route) -> Draft {
        let mut target = String::new();
        let mut well_formed = true;
        for (i, segment) in route.template.split('/').enumerate() {
            if i > 0 {
                target.push('/');
            }
            let (text, strict) = match segment {
                "{agent}" if self.chance(60) => (self.pick(&FUZZ_NAMES).to_string(), true),
                "{group}" if self.chance(60) => ("fzg".to_string(), true),
                "{agent}" | "{group}" => self.odd_segment(),
                other => (other.to_string(), true),
            };
            target.push_str(&text);
            well_formed &= strict;
        }
        let (query, strict) = self.query(&route.template);
        target.push_str(&query);
        let body = self
            .seed_body(route)
            .map(|value| serde_json::to_vec(&value).unwrap());
        let mut draft = Draft::new(&route.method, &target, body);
        draft.well_formed = well_formed && strict;
        draft.what = format!("{} {}", route.method, route.template);
        draft
    }

    /// A plausible body for the route, if it takes one.
    fn seed_body(&mut self, route: &Route) -> Option<Value> {
        let body = match (route.method.as_str(), route.template.as_str()) {
            ("POST", "/v1/agents") | ("POST", "/v1/validate") => self.create_body(),
            ("POST", "/v1/batch") => {
                let mut batch = json!({"agents": [self.create_body(), self.create_body()]});
                if self.chance(30) {
                    batch["inherit_env"] = json!({"PATH": "/usr/bin:/bin", "FZ": "1"});
                }
                batch
            }
            ("POST", "/v1/stop") => {
                json!({"agents": [self.pick(&FUZZ_NAMES).to_string()], "timeout": "1s"})
            }
            ("POST", "/v1/agents/{agent}/kill") => {
                let signal = *self.pick(&["TERM", "KILL", "SIGINT", "9", "0", "64", "HUP"]);
                json!({ "signal": signal })
            }
            ("PUT", "/v1/groups/{group}") => {
                json!({"max_running": self.rng.random_range(0..4), "budget_usd": 1.5})
            }
            ("POST", "/v1/daemon/stop") => json!({"stop_agents": false}),
            (_, "/v1/agents/{agent}/restart") | ("GET", _) | ("DELETE", _) => return None,
            _ => self.random_value(2),
        };
        Some(body)
    }

    fn create_body(&mut self) -> Value {
        let mut agent = Map::new();
        if self.chance(85) {
            agent.insert("name".into(), json!(self.pick(&FUZZ_NAMES)));
        }
        let program = *self.pick(&SAFE_PROGRAMS);
        agent.insert("command".into(), json!([program, "fz"]));
        let optional: [(&str, Value); 22] = [
            ("env", json!({"FZ": "1"})),
            ("labels", json!({"fz": "1"})),
            ("cwd", json!("/")),
            ("stop_signal", json!("INT")),
            ("stop_timeout", json!("1s")),
            ("memory_max", json!("64M")),
            ("cpu_max", json!("0.5")),
            ("pids_max", json!(50)),
            ("nofile", json!(256)),
            ("priority", json!(2)),
            ("group", json!("fzg")),
            ("timeout", json!("30s")),
            ("idle_timeout", json!("1m")),
            ("on_hang", json!("kill")),
            ("health_tcp", json!("127.0.0.1:9")),
            ("health_interval", json!("1s")),
            ("health_cmd", json!("/bin/true")),
            ("budget_usd", json!(1.0)),
            ("budget_tokens", json!(1000)),
            ("restart", json!("never")),
            ("max_restarts", json!(1)),
            ("inherit_env", json!({"PATH": "/usr/bin:/bin"})),
        ];
        for (key, value) in optional {
            if self.chance(12) {
                agent.insert(key.into(), value);
            }
        }
        Value::Object(agent)
    }

    /// Query strings with the route's own keys, plausible or odd values,
    /// and sometimes keys it does not know; and whether a strict URI
    /// parser takes it.
    fn query(&mut self, template: &str) -> (String, bool) {
        let keys: &[&str] = match template {
            "/v1/agents" => &["all", "state", "group", "label", "limit"],
            "/v1/agents/{agent}/logs" => &["stream", "tail", "follow", "run"],
            "/v1/agents/{agent}" => &["force"],
            "/v1/cost" => &["by", "since"],
            "/v1/events" => &["since", "agent", "group", "kind"],
            "/v1/batch" => &["dry_run"],
            _ => &[],
        };
        let mut pairs = Vec::new();
        let mut well_formed = true;
        for key in keys {
            if self.chance(40) {
                let (value, strict) = if self.chance(60) {
                    let value = self.pick(&[
                        "true",
                        "false",
                        "1",
                        "0",
                        "running",
                        "stdout",
                        "5",
                        "agent",
                        "day",
                        "7d",
                        "fz-0",
                        "fzg",
                        "fz=1",
                        "agent.started",
                    ]);
                    (value.to_string(), true)
                } else {
                    self.odd_segment()
                };
                well_formed &= strict;
                pairs.push(format!("{key}={value}"));
            }
        }
        if self.chance(10) {
            let (key, strict_key) = self.odd_segment();
            let (value, strict_value) = self.odd_segment();
            well_formed &= strict_key && strict_value;
            pairs.push(format!("{key}={value}"));
        }
        if self.chance(3) {
            pairs.push("&&=&".into());
        }
        if pairs.is_empty() {
            (String::new(), true)
        } else {
            (format!("?{}", pairs.join("&")), well_formed)
        }
    }

    /// A path segment that is odd, and whether a strict URI parser takes
    /// it: empty, dots, bad and good percent-encoding, unicode, long.
    fn odd_segment(&mut self) -> (String, bool) {
        match self.rng.random_range(0..14) {
            0 => (String::new(), true),
            1 => (
                (*self.pick(&[
                    ".",
                    "..",
                    "...",
                    "%2e%2e",
                    "..%2F..%2Fetc",
                    "fz-0%2F..%2Ffz-1",
                ]))
                .to_string(),
                true,
            ),
            2 => {
                let n = self.rng.random_range(1..24);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                (bytes.iter().map(|b| format!("%{b:02X}")).collect(), true)
            }
            3 => (
                (*self.pick(&[
                    "%",
                    "%G",
                    "%zz",
                    "%0",
                    "%FF",
                    "%C3",
                    "%ED%A0%80",
                    "%00",
                    "%C0%AF",
                    "fz-0%00",
                ]))
                .to_string(),
                true,
            ),
            4 => {
                let text = self.unicode(8);
                (percent_encode(text.as_bytes()), true)
            }
            5 => (self.unicode(6), false),
            6 => {
                let n = self.rng.random_range(100..20_000);
                ("y".repeat(n), true)
            }
            7 => ("z".repeat(70_000), false),
            8 => {
                let n = self.rng.random_range(1..40);
                let safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";
                ((0..n).map(|_| *self.pick(safe) as char).collect(), true)
            }
            9 => {
                let n = self.rng.random_range(1..20);
                (
                    (0..n)
                        .map(|_| self.rng.random_range(0x21u8..0x7f) as char)
                        .filter(|c| *c != '?' && *c != '#')
                        .collect(),
                    false,
                )
            }
            10 => ("fz 0".into(), false),
            11 => (
                (*self.pick(&["Fz-0", "FZ-0", "fz-0.", "-fz", ".fz", "fz-0;x", "fz-0,fz-1"]))
                    .to_string(),
                true,
            ),
            12 => (format!("{}x", self.pick(&FUZZ_NAMES)), true),
            _ => ("%2Fv1%2Fagents".into(), true),
        }
    }

    /// A short string of characters from all over Unicode.
    fn unicode(&mut self, most: usize) -> String {
        let n = self.rng.random_range(1..=most);
        (0..n)
            .map(|_| match self.rng.random_range(0..5) {
                0 => *self.pick(&[
                    'é', 'ß', '日', '本', '🦀', '\u{202e}', '\u{feff}', '\u{200b}', 'Ω',
                ]),
                1 => char::from_u32(self.rng.random_range(0x80..0x800)).unwrap_or('x'),
                2 => char::from_u32(self.rng.random_range(0x800..0xD800)).unwrap_or('x'),
                3 => char::from_u32(self.rng.random_range(0x10000..0x10FFFF)).unwrap_or('x'),
                _ => self.rng.random_range(b'a'..=b'z') as char,
            })
            .collect()
    }

    /// Any JSON value, nested at most `depth` deep.
    fn random_value(&mut self, depth: u32) -> Value {
        match self.rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => Value::Bool(self.chance(50)),
            2 => self.odd_number(),
            3 => Value::String(self.odd_string()),
            4 => {
                let n = self.rng.random_range(0..4);
                Value::Array((0..n).map(|_| self.random_value(depth - 1)).collect())
            }
            _ => {
                let n = self.rng.random_range(0..4);
                Value::Object(
                    (0..n)
                        .map(|_| (self.key(), self.random_value(depth - 1)))
                        .collect(),
                )
            }
        }
    }

    /// A key of some request, or an unknown one.
    fn key(&mut self) -> String {
        if self.chance(70) {
            self.pick(&[
                "name",
                "command",
                "env",
                "inherit_env",
                "cwd",
                "labels",
                "stop_signal",
                "stop_timeout",
                "memory_max",
                "cpu_max",
                "pids_max",
                "nofile",
                "priority",
                "group",
                "timeout",
                "idle_timeout",
                "on_hang",
                "health_tcp",
                "health_http",
                "health_interval",
                "health_timeout",
                "health_retries",
                "budget_usd",
                "budget_tokens",
                "max_restarts",
                "restart_window",
                "backoff_initial",
                "backoff_max",
                "min_uptime",
                "adapter",
                "linger",
                "telemetry",
                "agents",
                "timeout",
                "signal",
                "max_running",
                "dry_run",
            ])
            .to_string()
        } else {
            self.odd_string()
        }
    }

    fn odd_number(&mut self) -> Value {
        match self.rng.random_range(0..10) {
            0 => json!(0),
            1 => json!(-1),
            2 => json!(i64::MAX),
            3 => json!(i64::MIN),
            4 => json!(u64::MAX),
            5 => json!(1e308),
            6 => json!(-0.0),
            7 => json!(5e-324),
            8 => json!(0.5),
            _ => json!(self.rng.random_range(-100_000i64..100_000)),
        }
    }

    fn odd_string(&mut self) -> String {
        match self.rng.random_range(0..12) {
            0 => String::new(),
            1 => " ".into(),
            2 => "a".repeat(self.rng.random_range(64..70_000)),
            3 => self.unicode(12),
            4 => "\u{0}\n\t\r\u{7f}".into(),
            5 => "../../etc/passwd".into(),
            6 => (*self.pick(&[
                "1s",
                "0",
                "-1s",
                "1e9s",
                "99999999999999999999h",
                "NaN",
                "inf",
                "1h1h",
                "500ms",
                "0.001s",
            ]))
            .to_string(),
            7 => (*self.pick(&["TERM", "SIGKILL", "0", "65", "-9", "sigterm"])).to_string(),
            8 => (*self.pick(&["64M", "1T", "0", "-1M", "1048577T", "0.01", "1e400"])).to_string(),
            9 => (*self.pick(&[
                "127.0.0.1:0",
                ":80",
                "[::1]:80",
                "host:99999",
                "http://[::1",
                "http://127.0.0.1:9/x",
            ]))
            .to_string(),
            10 => self.pick(&FUZZ_NAMES).to_string(),
            _ => {
                let n = self.rng.random_range(1..30);
                (0..n)
                    .map(|_| self.rng.random_range(0x20u8..0x7f) as char)
                    .collect()
            }
        }
    }

    /// Changes a JSON value in place, somewhere in it.
    fn mutate_value(&mut self, value: &mut Value) {
        let descend = self.chance(60);
        match value {
            Value::Object(object) if descend && !object.is_empty() => {
                let keys: Vec<String> = object.keys().cloned().collect();
                let key = self.pick(&keys).clone();
                match self.rng.random_range(0..4) {
                    0 => {
                        object.remove(&key);
                    }
                    1 => {
                        let (key, new) = (self.key(), self.random_value(2));
                        object.insert(key, new);
                    }
                    _ => self.mutate_value(object.get_mut(&key).unwrap()),
                }
            }
            Value::Array(items) if descend && !items.is_empty() => {
                let i = self.rng.random_range(0..items.len());
                match self.rng.random_range(0..4) {
                    0 => {
                        items.remove(i);
                    }
                    1 => {
                        let copy = items[i].clone();
                        let n = self.rng.random_range(1..50);
                        items.extend(std::iter::repeat_n(copy, n));
                    }
                    _ => self.mutate_value(&mut items[i]),
                }
            }
            _ => {
                *value = match self.rng.random_range(0..6) {
                    0 => Value::String(self.odd_string()),
                    1 => self.odd_number(),
                    2 => Value::Array(vec![value.take()]),
                    3 => Value::Null,
                    _ => self.random_value(2),
                }
            }
        }
    }

    /// Changes serialized bytes: flips, cuts, inserts, deep nesting, long
    /// numbers, invalid UTF-8, duplicated keys.
    fn mutate_bytes(&mut self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let at = self.rng.random_range(0..=len);
        match self.rng.random_range(0..9) {
            0 if len > 0 => {
                let i = self.rng.random_range(0..len);
                bytes[i] = self.rng.random();
            }
            1 => bytes.truncate(at),
            2 => {
                let end = self.rng.random_range(at..=len);
                bytes.drain(at..end);
            }
            3 => {
                let n = self.rng.random_range(1..16);
                let noise: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                bytes.splice(at..at, noise);
            }
            4 => {
                let depth = self.rng.random_range(100..5_000);
                let mut nested = "[".repeat(depth).into_bytes();
                nested.extend("]".repeat(depth).into_bytes());
                bytes.splice(at..at, nested);
            }
            5 => {
                let digits = "9".repeat(self.rng.random_range(20..5_000));
                bytes.splice(at..at, digits.into_bytes());
            }
            6 => bytes
                .splice(at..at, [0xFF, 0xC3, 0x28, 0xED, 0xA0, 0x80])
                .for_each(drop),
            7 if bytes.first() == Some(&b'{') && len > 2 => {
                // The same key twice.
                let copy = bytes[1..len - 1].to_vec();
                bytes.splice(1..1, copy.into_iter().chain([b',']));
            }
            _ => {
                let end = self.rng.random_range(at..=len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }

    /// A route's request with its body changed.
    fn mutated_body(&mut self) -> Draft {
        let route = self.route();
        let mut draft = self.request_for(&route);
        let mut value =
            serde_json::from_slice::<Value>(&draft.body).unwrap_or_else(|_| self.random_value(3));
        if self.chance(8) {
            value = self.random_value(4);
        }
        for _ in 0..self.rng.random_range(0..4) {
            self.mutate_value(&mut value);
        }
        let mut body = serde_json::to_vec(&value).unwrap();
        if self.chance(30) {
            for _ in 0..self.rng.random_range(1..4) {
                self.mutate_bytes(&mut body);
            }
        }
        if draft.method == "GET" && self.chance(70) {
            body.clear();
        }
        if !body.is_empty() && !draft.headers.iter().any(|h| h.starts_with(b"Content-Type")) {
            draft
                .headers
                .push(b"Content-Type: application/json".to_vec());
        }
        draft.body = body;
        draft.what = format!("{} {} with a mutated body", route.method, route.template);
        draft
    }

    /// A route's request on an odd path.
    fn odd_path(&mut self) -> Draft {
        let route = self.route();
        let mut draft = self.request_for(&route);
        let path = String::from_utf8_lossy(draft.path()).into_owned();
        let query = String::from_utf8_lossy(&draft.target[path.len()..]).into_owned();
        let (segment, strict) = self.odd_segment();
        let (path, well_formed) = match self.rng.random_range(0..9) {
            0 => (format!("{path}/{segment}"), strict),
            1 => (format!("/{segment}{path}"), strict),
            2 => (format!("/v1/{segment}/..{path}"), strict),
            3 => (format!("/{path}"), true),
            4 => (format!("{path}/"), true),
            5 => (path.to_ascii_uppercase(), true),
            6 => (percent_encode(path.as_bytes()), true),
            7 => {
                let n = self.rng.random_range(1..12);
                let segments: Vec<String> = (0..n)
                    .map(|_| self.odd_segment())
                    .filter(|s| s.1)
                    .map(|s| s.0)
                    .collect();
                (format!("/{}", segments.join("/")), true)
            }
            _ => (format!("/v1/agents/{segment}/{segment}"), strict),
        };
        draft.target = format!("{path}{query}").into_bytes();
        draft.well_formed &= well_formed;
        draft.what = format!("{} {} on an odd path", route.method, route.template);
        draft
    }

    /// A route's request with another method.
    fn odd_method(&mut self) -> Draft {
        let route = self.route();
        let mut draft = self.request_for(&route);
        let (method, well_formed) = *self.pick(&[
            ("GET", true),
            ("POST", true),
            ("PUT", true),
            ("DELETE", true),
            ("PATCH", true),
            ("HEAD", true),
            ("OPTIONS", true),
            ("TRACE", true),
            ("get", true),
            ("FOO", true),
            ("PROPFIND", true),
            ("M-SEARCH", true),
            ("G(E)T", false),
            ("GE T", false),
            ("", false),
        ]);
        draft.method = if self.chance(3) {
            "X".repeat(self.rng.random_range(100..5_000))
        } else {
            method.to_string()
        };
        draft.well_formed &= well_formed;
        draft.what = format!(
            "{} {} sent as {:.20}",
            route.method, route.template, draft.method
        );
        draft
    }

    /// A route's request with a header changed, added or broken.
    fn bad_headers(&mut self) -> Draft {
        let route = self.route();
        let mut draft = self.request_for(&route);
        let what = match self.rng.random_range(0..22) {
            0 => {
                draft.set_header("Content-Type", None);
                "no Content-Type"
            }
            1 => {
                let value = *self.pick(&[
                    "text/plain",
                    "application/json; charset=utf-8",
                    "application/json;charset=latin1",
                    "APPLICATION/JSON",
                    "application/vnd.fz+json",
                    "",
                    "application/json, text/plain",
                    "multipart/form-data; boundary=x",
                    "application/x-www-form-urlencoded",
                ]);
                draft.set_header(
                    "Content-Type",
                    Some(format!("Content-Type: {value}").into_bytes()),
                );
                "an odd Content-Type"
            }
            2 => {
                let value = match self.rng.random_range(0..5) {
                    0 => String::new(),
                    1 => ",".into(),
                    2 => "k".repeat(self.rng.random_range(201..100_000)),
                    3 => "key with space".into(),
                    _ => self.odd_string().replace(['\r', '\n'], ""),
                };
                // What a header value may hold: visible ASCII, spaces, tabs.
                draft.well_formed &= value
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
                draft
                    .headers
                    .push(format!("Idempotency-Key: {value}").into_bytes());
                "an odd Idempotency-Key"
            }
            3 => {
                let mut line = b"Idempotency-Key: k\xC3\xA9\xFF".to_vec();
                if self.chance(50) {
                    line = b"Last-Event-ID: \xFF\xFE".to_vec();
                }
                draft.headers.push(line);
                draft.well_formed = false;
                "a header value that is not text"
            }
            4 => {
                let value = *self.pick(&["abc", "-1", "99999999999999999999", "", "0", "1"]);
                draft
                    .headers
                    .push(format!("Last-Event-ID: {value}").into_bytes());
                "an odd Last-Event-ID"
            }
            5 => {
                let value = *self.pick(&[
                    "application/openmetrics-text",
                    "*/*",
                    "text/event-stream",
                    "application/x-ndjson",
                    "nonsense",
                ]);
                draft.headers.push(format!("Accept: {value}").into_bytes());
                "an odd Accept"
            }
            6 => {
                draft.headers.push(b"Expect: 100-continue".to_vec());
                "Expect: 100-continue"
            }
            7 => {
                draft.headers.push(b"Expect: the-unexpected".to_vec());
                draft.well_formed = false;
                "an odd Expect"
            }
            8 => {
                for i in 0..120 {
                    draft.headers.push(format!("X-Fz-{i}: {i}").into_bytes());
                }
                draft.well_formed = false;
                "too many headers"
            }
            9 => {
                let n = self.rng.random_range(10_000..100_000);
                draft
                    .headers
                    .push(format!("X-Fz-Long: {}", "v".repeat(n)).into_bytes());
                "a long header"
            }
            10 => {
                draft
                    .headers
                    .push(format!("X-Fz-Huge: {}", "v".repeat(600_000)).into_bytes());
                draft.well_formed = false;
                "a huge header"
            }
            11 => {
                draft.headers.push(
                    (*self.pick(&[
                        &b"NoColon"[..],
                        b"Bad Name: x",
                        b" folded: x",
                        b": empty name",
                        b"X-Nul: a\0b",
                        b"X-Cr: a\rb",
                    ]))
                    .to_vec(),
                );
                draft.well_formed = false;
                "a broken header line"
            }
            12 => {
                draft.set_header("Host", None);
                "no Host"
            }
            13 => {
                draft.headers.push(b"Host: another".to_vec());
                "two Hosts"
            }
            14 => {
                let value = *self.pick(&[
                    "-1",
                    "abc",
                    " 5",
                    "+5",
                    "99999999999999999999999",
                    "1, 2",
                    "0x10",
                ]);
                draft.length = Length::Stated(value.into());
                draft.well_formed = false;
                "an invalid Content-Length"
            }
            15 => {
                let n = draft.body.len();
                draft
                    .headers
                    .push(format!("Content-Length: {}", n + 1).into_bytes());
                draft.well_formed = false;
                "two different Content-Lengths"
            }
            16 => {
                let value = *self.pick(&[
                    "gzip, chunked",
                    "identity",
                    "chunked, gzip",
                    "chunked;x",
                    "chunked",
                ]);
                draft
                    .headers
                    .push(format!("Transfer-Encoding: {value}").into_bytes());
                draft.well_formed = false;
                "an odd Transfer-Encoding"
            }
            17 => {
                draft.version = "HTTP/1.0".into();
                "HTTP/1.0"
            }
            18 => {
                draft.version = (*self.pick(&[
                    "HTTP/1.2",
                    "HTTP/2.0",
                    "HTTP/0.9",
                    "HTTP/9.9",
                    "http/1.1",
                    "",
                    "HTTP/1.1 extra",
                    "HTTP/",
                ]))
                .into();
                draft.well_formed = false;
                "an odd HTTP version"
            }
            19 => {
                draft
                    .headers
                    .push(b"Connection: keep-alive, Upgrade".to_vec());
                draft.headers.push(b"Upgrade: websocket".to_vec());
                "an Upgrade"
            }
            20 => {
                draft
                    .headers
                    .push(format!("Cookie: {}", "c=1; ".repeat(500)).into_bytes());
                draft
                    .headers
                    .push(b"Authorization: Bearer nonsense".to_vec());
                "cookies and a token"
            }
            _ => {
                draft
                    .headers
                    .push(format!("X-Fz-Unicode: {}", self.unicode(6)).into_bytes());
                draft.well_formed = false;
                "a header in UTF-8"
            }
        };
        draft.what = format!("{} {} with {what}", route.method, route.template);
        draft
    }

    /// Bodies framed wrongly: truncated, longer than stated, without a
    /// length, chunked (well or badly), and pipelined requests.
    fn framing(&mut self) -> Draft {
        let route = self.route();
        let mut draft = self.request_for(&route);
        if draft.body.is_empty() {
            draft.body = serde_json::to_vec(&self.random_value(2)).unwrap();
            draft
                .headers
                .push(b"Content-Type: application/json".to_vec());
        }
        let n = draft.body.len();
        let what = match self.rng.random_range(0..5) {
            0 => {
                // Stated longer than sent; the sender then half-closes.
                draft.length = Length::Stated((n + self.rng.random_range(1..1000)).to_string());
                "a body shorter than its Content-Length"
            }
            1 => {
                // The rest is read as a next request (garbage).
                draft.length = Length::Stated(self.rng.random_range(0..n).to_string());
                "a body longer than its Content-Length"
            }
            2 => {
                draft.length = Length::Omitted;
                "a body without Content-Length"
            }
            3 => {
                draft.length = Length::Chunked { bad: false };
                "a chunked body"
            }
            _ => {
                draft.length = Length::Chunked { bad: true };
                "a body with a bad chunk"
            }
        };
        draft.what = format!("{} {} with {what}", route.method, route.template);
        draft
    }

    /// Bytes that are not HTTP at all.
    fn garbage(&mut self) -> Draft {
        let mut draft = Draft::new("GET", "/", None);
        draft.well_formed = false;
        draft.what = "garbage".into();
        let bytes = match self.rng.random_range(0..5) {
            0 => {
                let n = self.rng.random_range(1..2_000);
                (0..n).map(|_| self.rng.random()).collect()
            }
            1 => b"\r\n\r\n".to_vec(),
            2 => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            3 => vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
            _ => b"GET\r\n\r\n".to_vec(),
        };
        draft.raw = Some(bytes);
        draft
    }

    /// A well-formed request as a client would send it.
    fn plain(&mut self) -> Draft {
        let route = self.route();
        self.request_for(&route)
    }
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------
// Sending, and judging what comes back.

/// One answer read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// What came back for one attempt.
#[derive(Debug)]
enum Heard {
    /// These answers, then the connection closed (none: closed at once),
    /// or a stream that goes on.
    Answers(Vec<Answer>),
    /// A long poll that still waits after a moment.
    StillWaiting(Vec<Answer>),
    /// The attempt was abandoned: nothing to hear.
    Abandoned,
    /// Not what an HTTP server sends, or nothing in time.
    Bad(String),
}

/// Sends an attempt on a new connection and reads what comes back.
fn exchange(socket: &Path, attempt: &Attempt) -> Heard {
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) => return Heard::Bad(format!("cannot connect: {error}")),
    };
    let _ = stream.set_write_timeout(Some(ANSWER_WITHIN));
    // A write may fail once the daemon has answered and closed: what it
    // answered is still there to read.
    match attempt.delivery {
        Delivery::AtOnce | Delivery::HalfClosed => {
            let _ = stream.write_all(&attempt.bytes);
        }
        Delivery::Abandoned(cut) => {
            let _ = stream.write_all(&attempt.bytes[..cut]);
            return Heard::Abandoned;
        }
        Delivery::ByteByByte => {
            for byte in &attempt.bytes {
                if stream.write_all(std::slice::from_ref(byte)).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    if attempt.delivery == Delivery::HalfClosed {
        let _ = stream.shutdown(Shutdown::Write);
    }
    listen(stream, attempt)
}

/// Reads answers until the daemon closes, a stream has begun, or time is
/// up.
fn listen(mut stream: UnixStream, attempt: &Attempt) -> Heard {
    let patience = if attempt.long_poll {
        LONG_POLL
    } else {
        ANSWER_WITHIN
    };
    let deadline = Instant::now() + patience;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut bytes = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // Closed with our bytes unread: what it answered came first.
            Err(error) if error.kind() == ErrorKind::ConnectionReset => break,
            Err(error) => return Heard::Bad(format!("reading the answer: {error}")),
        }
        if let Ok(parsed) = parse_answers(&bytes, attempt.head, false) {
            if parsed.streaming {
                return Heard::Answers(parsed.answers);
            }
        }
        if Instant::now() >= deadline {
            if attempt.long_poll {
                let answers = parse_answers(&bytes, attempt.head, false)
                    .map(|parsed| parsed.answers)
                    .unwrap_or_default();
                return Heard::StillWaiting(answers);
            }
            return Heard::Bad(format!(
                "no whole answer within {patience:?}, only {} bytes: {:?}",
                bytes.len(),
                preview(&bytes)
            ));
        }
    }
    match parse_answers(&bytes, attempt.head, true) {
        Ok(parsed) => Heard::Answers(parsed.answers),
        Err(error) => Heard::Bad(error),
    }
}

/// The answers at the start of some bytes.
struct Parsed {
    answers: Vec<Answer>,
    /// The last answer is a stream (events, logs): its body goes on.
    streaming: bool,
}

/// Parses answers one after another (bodies framed by Content-Length or
/// chunks); `closed` when no more bytes will come, so that an answer cut
/// short is an error rather than one still arriving.
fn parse_answers(mut bytes: &[u8], head: bool, closed: bool) -> Result<Parsed, String> {
    let mut answers = Vec::new();
    let incomplete = |answers, what: &str, bytes: &[u8]| {
        if closed {
            Err(format!(
                "the connection closed in {what}: {:?}",
                preview(bytes)
            ))
        } else {
            Ok(Parsed {
                answers,
                streaming: false,
            })
        }
    };
    while !bytes.is_empty() {
        let Some(end) = find(bytes, b"\r\n\r\n") else {
            return incomplete(answers, "an answer's head", bytes);
        };
        let head_text = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {:?}", preview(bytes)))?;
        let fields: Vec<(String, String)> = lines
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
            })
            .collect();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.clone())
        };
        let content_type = field("content-type");
        let rest = &bytes[end + 4..];
        if (100..200).contains(&status) {
            bytes = rest;
            continue;
        }
        let streaming = status == 200
            && content_type.as_deref().is_some_and(|kind| {
                kind.starts_with("text/event-stream") || kind.starts_with("application/x-ndjson")
            });
        if streaming {
            answers.push(Answer {
                status,
                content_type,
                body: Vec::new(),
            });
            return Ok(Parsed {
                answers,
                streaming: true,
            });
        }
        let chunked = field("transfer-encoding").is_some_and(|value| value.contains("chunked"));
        let (body, used) = if head || status == 204 || status == 304 {
            (Vec::new(), 0)
        } else if chunked {
            match dechunk(rest) {
                Some(dechunked) => dechunked,
                None => return incomplete(answers, "a chunked body", bytes),
            }
        } else if let Some(length) = field("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("a bad Content-Length in {head_text:?}"))?;
            if rest.len() < length {
                return incomplete(answers, "a body", bytes);
            }
            (rest[..length].to_vec(), length)
        } else if closed {
            (rest.to_vec(), rest.len())
        } else {
            return incomplete(answers, "a body", bytes);
        };
        answers.push(Answer {
            status,
            content_type,
            body,
        });
        bytes = &rest[used..];
    }
    Ok(Parsed {
        answers,
        streaming: false,
    })
}

/// A chunked body and how many bytes it took, once it is all there.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&bytes[at..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&bytes[at..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // No trailers are sent: the blank line ends it.
            return (bytes.len() >= at + 2).then(|| (body, at + 2));
        }
        if bytes.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&bytes[at..at + size]);
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The start of some bytes, for a message.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{text}…")
    } else {
        text
    }
}

/// Why an answer is not acceptable; `strict` for an answer to a
/// well-formed request, which the router has seen; `head` for one to a
/// HEAD request, which has no body.
fn check(answer: &Answer, strict: bool, head: bool) -> Result<(), String> {
    if answer.status == 500 {
        return Err(format!("a 500: {:?}", preview(&answer.body)));
    }
    if answer.status < 400 {
        return Ok(());
    }
    let json = answer
        .content_type
        .as_deref()
        .is_some_and(|kind| kind.starts_with("application/json"));
    if head && json {
        return Ok(());
    }
    match json_error(answer) {
        Ok(()) => Ok(()),
        // The HTTP layer's own refusal of what it cannot parse.
        Err(_) if !strict && answer.status < 500 && answer.body.is_empty() => Ok(()),
        Err(why) => Err(why),
    }
}

/// Whether an error answer is the API's JSON error, its code sent with
/// its status.
fn json_error(answer: &Answer) -> Result<(), String> {
    let described = || {
        format!(
            "a {} ({:?}) whose body is not the JSON error: {:?}",
            answer.status,
            answer.content_type,
            preview(&answer.body)
        )
    };
    if !answer
        .content_type
        .as_deref()
        .is_some_and(|kind| kind.starts_with("application/json"))
    {
        return Err(described());
    }
    let body: Value = serde_json::from_slice(&answer.body).map_err(|_| described())?;
    let code = body["error"]["code"].as_str().ok_or_else(described)?;
    let message = body["error"]["message"].as_str().ok_or_else(described)?;
    if message.is_empty() {
        return Err(described());
    }
    match ERROR_CODES.iter().find(|(known, _)| *known == code) {
        Some((_, status)) if *status == answer.status => Ok(()),
        _ => Err(format!(
            "the code {code:?} came with status {}: {message}",
            answer.status
        )),
    }
}

/// What the fuzzer saw.
#[derive(Default)]
struct Tally {
    /// Requests sent (a pipeline's each).
    sent: usize,
    /// Answers by status.
    statuses: BTreeMap<u16, usize>,
    /// Connections closed without an answer.
    closed: usize,
    /// Long polls still waiting when let go.
    waiting: usize,
    /// Connections the fuzzer abandoned.
    abandoned: usize,
    /// Agents the fuzzer's creates made.
    created: usize,
    /// Every failure, described.
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, attempt: &Attempt, heard: &Heard) {
        self.sent += attempt.strict.max(1);
        let answers = match heard {
            Heard::Abandoned => {
                self.abandoned += 1;
                return;
            }
            Heard::Bad(why) => {
                self.fail(attempt, why);
                return;
            }
            Heard::StillWaiting(answers) => {
                if answers.is_empty() {
                    self.waiting += 1;
                }
                answers
            }
            Heard::Answers(answers) => {
                if answers.is_empty() {
                    self.closed += 1;
                }
                answers
            }
        };
        for (i, answer) in answers.iter().enumerate() {
            *self.statuses.entry(answer.status).or_default() += 1;
            if let Err(why) = check(answer, i < attempt.strict, attempt.head) {
                self.fail(attempt, &why);
            }
            if attempt.create && answer.status == 201 {
                self.created += match serde_json::from_slice::<Value>(&answer.body) {
                    Ok(Value::Array(agents)) => agents.len(),
                    _ => 1,
                };
            }
        }
    }

    fn fail(&mut self, attempt: &Attempt, why: &str) {
        self.failures.push(format!(
            "{} ({:?}): {why}\n    sent: {:?}",
            attempt.what,
            attempt.delivery,
            preview(&attempt.bytes)
        ));
    }
}

// ---------------------------------------------------------------------
// The storm.

/// Sends `total` requests of round `round`: from [`FUZZERS`] threads,
/// plus `bursts` bursts of [`BURST`] connections at once, requests sent a
/// byte at a time, and bodies past the limits.
fn storm(
    socket: &Path,
    seed: u64,
    round: u64,
    routes: &[Route],
    total: usize,
    bursts: usize,
    tally: &Mutex<Tally>,
) {
    let special = bursts * BURST + SLOW + OVERSIZED;
    let each = (total - special).div_ceil(FUZZERS);
    thread::scope(|scope| {
        for fuzzer in 0..FUZZERS {
            let routes = routes.to_vec();
            scope.spawn(move || {
                let mut generator = Generator::new(seed, round * 100 + fuzzer as u64, routes);
                for _ in 0..each {
                    let attempt = generator.attempt();
                    let heard = exchange(socket, &attempt);
                    tally.lock().unwrap().record(&attempt, &heard);
                }
            });
        }
        let slow_routes = routes.to_vec();
        scope.spawn(move || {
            let mut generator = Generator::new(seed, round * 100 + 50, slow_routes);
            for _ in 0..SLOW {
                let attempt = Attempt {
                    delivery: Delivery::ByteByByte,
                    ..generator.small_attempt()
                };
                let heard = exchange(socket, &attempt);
                tally.lock().unwrap().record(&attempt, &heard);
            }
        });
        let burst_routes = routes.to_vec();
        scope.spawn(move || {
            let mut generator = Generator::new(seed, round * 100 + 60, burst_routes);
            for _ in 0..bursts {
                burst(socket, &mut generator, tally);
                thread::sleep(Duration::from_millis(300));
            }
            oversized(socket, tally);
        });
    });
}

/// [`BURST`] connections at once: each gets the first half of a request,
/// then each the rest, then each answer is read.
fn burst(socket: &Path, generator: &mut Generator, tally: &Mutex<Tally>) {
    let attempts: Vec<Attempt> = (0..BURST).map(|_| generator.small_attempt()).collect();
    let mut streams: Vec<UnixStream> = attempts
        .iter()
        .map(|attempt| {
            let mut stream = UnixStream::connect(socket).expect("connect in a burst");
            let _ = stream.write_all(&attempt.bytes[..attempt.bytes.len() / 2]);
            stream
        })
        .collect();
    thread::sleep(Duration::from_millis(20));
    for (stream, attempt) in streams.iter_mut().zip(&attempts) {
        let _ = stream.write_all(&attempt.bytes[attempt.bytes.len() / 2..]);
    }
    for (stream, attempt) in streams.into_iter().zip(&attempts) {
        let heard = listen(stream, attempt);
        tally.lock().unwrap().record(attempt, &heard);
    }
}

/// Requests of [`oversized`].
const OVERSIZED: usize = 3;

/// Bodies past the limits: a batch of 65 MiB (the limit is 64 MiB), a
/// create of 3 MiB (the limit is 2 MiB), and a batch that says it is
/// 1 TiB long and is not.
fn oversized(socket: &Path, tally: &Mutex<Tally>) {
    let request = |target: &str, length: usize, body: Vec<u8>| {
        let mut bytes = format!(
            "POST {target} HTTP/1.1\r\nHost: wrangle\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        .into_bytes();
        bytes.extend(body);
        bytes
    };
    let mut batch = b"{\"agents\": [".to_vec();
    batch.resize(65 << 20, b' ');
    let mut create = b"{\"command\": [\"/bin/true\"], \"name\": \"".to_vec();
    create.resize(3 << 20, b'a');
    create.extend(b"\"}");
    let attempts = [
        (
            "a batch of 65 MiB",
            request("/v1/batch", batch.len(), batch),
            Delivery::AtOnce,
        ),
        (
            "a create of 3 MiB",
            request("/v1/agents", create.len(), create),
            Delivery::AtOnce,
        ),
        (
            "a batch that says it has 1 TiB",
            request("/v1/batch", 1 << 40, b"{\"agents\": []}".to_vec()),
            Delivery::HalfClosed,
        ),
    ];
    for (what, bytes, delivery) in attempts {
        let attempt = Attempt {
            what: what.into(),
            bytes,
            delivery,
            strict: 1,
            long_poll: false,
            head: false,
            create: true,
        };
        let heard = exchange(socket, &attempt);
        tally.lock().unwrap().record(&attempt, &heard);
    }
}

// ---------------------------------------------------------------------
// The user's real work, and the daemon's resources.

/// Holds the user's work between two rounds while the daemon is measured.
#[derive(Default)]
struct Pause {
    /// Asked to hold.
    hold: AtomicBool,
    /// Holding: no agent of the user's runs.
    held: AtomicBool,
}

/// Sets a flag when dropped, even by a panic: the user's work ends then.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// `wrangle ARGS`: its stdout, or why it failed.
fn cli(home: &Home, args: &[&str]) -> Result<String, String> {
    let output = home.wrangle(args);
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(format!(
            "wrangle {args:?} failed ({}): {}{}",
            output.status, output.stdout, output.stderr
        ))
    }
}

/// Rounds of a user's work until `done`: run an agent, look at it (also
/// straight over the API), list, stop, check it stopped, remove it.
/// Returns how many rounds, or the first thing that failed.
fn real_work(home: &Home, done: &AtomicBool, pause: &Pause) -> Result<usize, String> {
    let mut rounds = 0;
    while !done.load(Ordering::SeqCst) {
        if pause.hold.load(Ordering::SeqCst) {
            pause.held.store(true, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        pause.held.store(false, Ordering::SeqCst);
        let name = format!("{WORK}-{rounds}");
        let seconds = marker();
        let id = cli(home, &["run", "--name", &name, "--", "sleep", &seconds])?
            .trim()
            .to_string();
        let answer =
            common::http::request(&home.socket(), "GET", &format!("/v1/agents/{id}"), None, "");
        if answer.status != 200 || answer.json()["state"] != "running" {
            return Err(format!("GET /v1/agents/{id} answered {answer:?}"));
        }
        let listed: Value = serde_json::from_str(&cli(home, &["ps", "--json"])?)
            .map_err(|error| format!("ps --json: {error}"))?;
        if !listed
            .as_array()
            .is_some_and(|agents| agents.iter().any(|agent| agent["id"] == id.as_str()))
        {
            return Err(format!("ps does not list {id}: {listed}"));
        }
        cli(home, &["stop", &id])?;
        let inspected: Value = serde_json::from_str(&cli(home, &["inspect", "--json", &id])?)
            .map_err(|error| format!("inspect --json: {error}"))?;
        if inspected["state"] != "stopped" || inspected["name"] != name.as_str() {
            return Err(format!("{name} is not stopped after its stop: {inspected}"));
        }
        if !procfs::with_marker(&seconds).is_empty() {
            return Err(format!("{name} still runs after its stop"));
        }
        cli(home, &["rm", &id])?;
        rounds += 1;
    }
    Ok(rounds)
}

/// The daemon's open descriptors and resident memory.
#[derive(Debug, Clone, Copy)]
struct Resources {
    fds: usize,
    rss: u64,
}

/// The resources of the home's daemon `pid`; panics with its log when
/// it is gone.
fn resources(home: &Home, pid: i32) -> Resources {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).map(|fds| fds.count());
    match (fds, procfs::rss_bytes(pid)) {
        (Ok(fds), Some(rss)) if procfs::is_alive(pid) => Resources { fds, rss },
        _ => panic!(
            "the daemon (pid {pid}) is gone; its log:\n{}",
            fs::read_to_string(home.path().join("daemon.log")).unwrap_or_default()
        ),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
fn the_daemon_takes_ten_thousand_bad_requests_while_real_work_goes_on() {
    let seed = std::env::var("WRANGLE_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("api_fuzz: seed {seed} (WRANGLE_FUZZ_SEED={seed} to replay it)");
    let started = Instant::now();
    let home = Home::new();
    home.ok(&["ps"]);
    let pid = home.daemon_pid().expect("a daemon runs");
    let routes = routes(&home);
    assert!(
        routes.len() >= 20,
        "the API documents its routes: {routes:?}"
    );
    let socket = home.socket();
    let tally = Mutex::new(Tally::default());
    let warm_up = Mutex::new(Tally::default());
    let done = AtomicBool::new(false);
    let pause = Pause::default();

    let (before, work) = thread::scope(|scope| {
        let worker = scope.spawn(|| real_work(&home, &done, &pause));
        let _stop_the_work = SetOnDrop(&done);
        storm(&socket, seed, 0, &routes, WARM_UP, 1, &warm_up);
        // Measured while the user's work holds between two rounds, once
        // the warm-up's connections have closed.
        pause.hold.store(true, Ordering::SeqCst);
        wait_until(SOON, "the user's work holds", || {
            pause.held.load(Ordering::SeqCst)
        });
        thread::sleep(Duration::from_millis(300));
        let before = resources(&home, pid);
        pause.hold.store(false, Ordering::SeqCst);
        storm(&socket, seed, 1, &routes, REQUESTS, BURSTS, &tally);
        done.store(true, Ordering::SeqCst);
        (before, worker.join().expect("the user's work"))
    });
    let storm_took = started.elapsed();

    // The same daemon answers, and never panicked.
    assert_eq!(
        home.daemon_pid(),
        Some(pid),
        "the daemon (pid {pid}) is gone"
    );
    let info = home.http("GET", "/v1/daemon", None, "");
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.json()["pid"], pid, "another daemon answers: {info:?}");
    home.ok(&["ps", "-a"]);
    let log = fs::read_to_string(home.path().join("daemon.log")).unwrap_or_default();
    assert!(
        !log.contains("panicked"),
        "the daemon panicked (seed {seed}):\n{log}"
    );

    let warm_up = warm_up.into_inner().unwrap();
    let tally = tally.into_inner().unwrap();
    eprintln!(
        "api_fuzz: {} requests after {} of warm-up in {storm_took:.1?}: answers by status {:?}, \
         {} closed unanswered, {} long polls let go, {} abandoned, {} agents created",
        tally.sent,
        warm_up.sent,
        tally.statuses,
        tally.closed,
        tally.waiting,
        tally.abandoned,
        tally.created + warm_up.created
    );
    let failures: Vec<&String> = warm_up.failures.iter().chain(&tally.failures).collect();
    assert!(
        failures.is_empty(),
        "{} answers were wrong (seed {seed}); the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        tally.sent >= REQUESTS,
        "only {} requests were sent",
        tally.sent
    );
    let rounds = work.unwrap_or_else(|why| panic!("the user's work failed (seed {seed}): {why}"));
    assert!(
        rounds >= 3,
        "the user's work did only {rounds} rounds during the storm"
    );

    // Its descriptors come back to what they were once the last
    // connections have closed; its memory has not grown. An event stream
    // whose client left with bytes unread (say, a GET with a body) is
    // noticed at its next keep-alive (every 15 s): the daemon reads no
    // more of a connection while it answers on it.
    let mut after = resources(&home, pid);
    let settled = Instant::now();
    while after.fds.abs_diff(before.fds) > 2 && settled.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(100));
        after = resources(&home, pid);
    }
    eprintln!(
        "api_fuzz: the daemon had {} descriptors and {:.1} MiB resident after the warm-up, \
         {} and {:.1} MiB after the storm; the user did {rounds} rounds of work",
        before.fds,
        mib(before.rss),
        after.fds,
        mib(after.rss)
    );
    assert!(
        after.fds.abs_diff(before.fds) <= FD_SLACK,
        "the daemon holds {} descriptors after the storm, {} before it (seed {seed})",
        after.fds,
        before.fds
    );
    assert!(
        after.rss <= before.rss + RSS_SLACK,
        "the daemon's resident memory grew from {:.1} MiB to {:.1} MiB over the storm (seed {seed})",
        mib(before.rss),
        mib(after.rss)
    );

    // Whatever the fuzzer made is held: one stop ends it all, and only
    // the daemon is left of the home.
    home.ok(&["stop", "--all"]);
    wait_until(SOON, "only the daemon is left", || {
        home.processes() == vec![pid]
    });
    assert!(
        home.zombie_children().is_empty(),
        "{:?}",
        home.zombie_children()
    );
    eprintln!("api_fuzz: took {:.1?} in all", started.elapsed());
}

/// Sends `request` on a new connection and hangs up `after` it, without
/// reading the answer.
fn send_and_hang_up(home: &Home, request: &str, after: Duration) {
    let mut stream = UnixStream::connect(home.socket()).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    thread::sleep(after);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Found by this fuzzer: a restart whose client hung up before the answer
/// left its agent `starting` for good (the start was cancelled half-way
/// with the request), and every stop of it then waited forever, `daemon
/// stop --stop-agents` too. A client that goes away cancels nothing the
/// daemon has begun: each restart ends with its run started or failed.
#[test]
fn a_restart_whose_client_hangs_up_still_finishes_its_start() {
    let home = Home::new();
    let seconds = marker();
    let sleeper = home.run(&["--name", "sleeper", "--", "sleep", &seconds]);
    home.ok(&["stop", &sleeper]);
    let created = home.http(
        "POST",
        "/v1/agents",
        Some("application/json"),
        r#"{"name": "missing", "command": ["/nonexistent/wrangle-test"]}"#,
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["state"], "failed", "{created:?}");
    let run = |name: &str| home.inspect(name)["run"].as_u64().expect("a run");
    let mut restarted = 0;
    // Hung up at once, or a moment later: while the start is under way.
    for after in [0, 1, 2, 3, 5, 8, 12, 20] {
        let before = (run("sleeper"), run("missing"));
        for name in ["sleeper", "missing"] {
            send_and_hang_up(
                &home,
                &format!(
                    "POST /v1/agents/{name}/restart HTTP/1.1\r\nHost: wrangle\r\n\
                     Content-Length: 0\r\n\r\n"
                ),
                Duration::from_millis(after),
            );
        }
        // A restart the daemon did not take (the hang-up came first) is
        // fine; one it took ends its start.
        wait_until(SOON, "no restart is left half-way", || {
            ["sleeper", "missing"]
                .iter()
                .all(|name| home.state(name) != "starting")
        });
        restarted +=
            usize::from(run("sleeper") > before.0) + usize::from(run("missing") > before.1);
        assert_eq!(home.state("missing"), "failed");
        if home.state("sleeper") == "running" {
            assert_eq!(procfs::with_marker(&seconds).len(), 1, "one sleeper runs");
            home.ok(&["stop", "sleeper"]);
        }
        assert!(
            procfs::with_marker(&seconds).is_empty(),
            "the sleeper is stopped"
        );
    }
    assert!(restarted >= 8, "only {restarted} of 16 restarts were taken");
    home.ok(&["stop", "--all"]);
    home.ok(&["daemon", "stop", "--stop-agents"]);
}
