//! A user's own OpenTelemetry collector, as a test plays it: an HTTP
//! server on loopback that keeps every body posted to it with its path
//! and headers, and answers `200 {}`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// One body the collector got.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Its path (`/v1/logs`).
    pub path: String,
    /// Its headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// Its body as sent.
    pub body: Vec<u8>,
}

/// The collector; it stops taking bodies when dropped.
pub struct Collector {
    address: String,
    posted: Arc<Mutex<Vec<Posted>>>,
    listener: TcpListener,
}

impl Collector {
    /// A collector on a free loopback port.
    pub fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().unwrap().to_string();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let accepting = listener.try_clone().unwrap();
        let kept = posted.clone();
        thread::spawn(move || {
            for stream in accepting.incoming() {
                let Ok(stream) = stream else { return };
                let kept = kept.clone();
                thread::spawn(move || serve(stream, &kept));
            }
        });
        Collector {
            address,
            posted,
            listener,
        }
    }

    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// What it got so far.
    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Wakes the accepting thread, which then ends on the refused
        // connection's error or goes on serving nobody.
        let _ = self.listener.set_nonblocking(true);
        let _ = TcpStream::connect(&self.address);
    }
}

/// Serves one connection: requests with a `Content-Length`, one after
/// another.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Posted>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|length| length.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        kept.lock().unwrap().push(Posted {
            path,
            headers,
            body,
        });
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
