//! Health probes against real things: a shell command on a file the test
//! creates and removes, an HTTP server and a TCP listener the test runs on
//! 127.0.0.1 and opens, breaks and closes. Health follows each change both
//! ways, probes end with their run, and a hung probe is killed with
//! everything it started.

mod common;

use common::{crash, marker, procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The agent's health and health reason, as `inspect --json` says.
fn health(home: &Home, agent: &str) -> (String, Value) {
    let view = home.inspect(agent);
    let health = view["health"].as_str().expect("a health").to_string();
    (health, view["health_reason"].clone())
}

/// Waits until the agent is healthy with no reason given.
fn wait_healthy(home: &Home, agent: &str) {
    wait_until(SOON, &format!("agent {agent} is healthy"), || {
        health(home, agent) == ("healthy".into(), Value::Null)
    });
}

/// Waits until the agent is unhealthy with a reason containing `reason`,
/// and returns the reason.
fn wait_unhealthy(home: &Home, agent: &str, reason: &str) -> String {
    let mut last = (String::new(), Value::Null);
    wait_until(
        SOON,
        &format!("agent {agent} is unhealthy: {reason}"),
        || {
            last = health(home, agent);
            last.0 == "unhealthy" && last.1.as_str().is_some_and(|r| r.contains(reason))
        },
    );
    last.1.as_str().unwrap().to_string()
}

/// A listener on 127.0.0.1 that the test opens and closes at will. As an
/// HTTP server it answers every request with 200, or 500 while `failing`
/// is set; as a plain TCP listener it accepts and hangs up.
struct Server {
    port: u16,
    http: bool,
    failing: Arc<AtomicBool>,
    /// Connections accepted (and, over HTTP, answered).
    served: Arc<AtomicU32>,
    /// The request line of the last HTTP request.
    last_request: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn http() -> Server {
        Server::start(true)
    }

    fn tcp() -> Server {
        Server::start(false)
    }

    fn start(http: bool) -> Server {
        let mut server = Server {
            port: 0,
            http,
            failing: Arc::default(),
            served: Arc::default(),
            last_request: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        server.open();
        server
    }

    /// Listens (again, on the same port after the first time).
    fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind 127.0.0.1");
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (http, failing, served, last_request, stop) = (
            self.http,
            self.failing.clone(),
            self.served.clone(),
            self.last_request.clone(),
            self.stop.clone(),
        );
        self.thread = Some(thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(error) => panic!("accept: {error}"),
                };
                if http {
                    answer(stream, failing.load(Ordering::SeqCst), &last_request);
                }
                served.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    /// Stops listening: connections are refused from now on.
    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the server thread");
        }
    }

    fn served(&self) -> u32 {
        self.served.load(Ordering::SeqCst)
    }

    /// Waits until the server has been probed `more` more times.
    fn wait_for_probes(&self, more: u32) {
        let target = self.served() + more;
        wait_until(SOON, "the server is probed", || self.served() >= target);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads a request's head and answers 200 or 500.
fn answer(mut stream: TcpStream, failing: bool, last_request: &Mutex<String>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    *last_request.lock().unwrap() = text.lines().next().unwrap_or_default().to_string();
    let reply = if failing {
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops"
    } else {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    };
    let _ = stream.write_all(reply.as_bytes());
}

#[test]
fn a_command_probe_follows_a_file_in_the_agents_directory() {
    let home = Home::new();
    let seconds = marker();
    // The probe runs in the agent's cwd (the home) with its environment.
    let agent = home.run(&[
        "--name",
        "web",
        "--env",
        "FLAG=ready",
        "--health-cmd",
        "test -e \"$FLAG\"",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "--",
        "sleep",
        &seconds,
    ]);
    let view = home.inspect(&agent);
    assert_eq!(
        view["health_check"],
        "cmd test -e \"$FLAG\" every 200ms (timeout 5s, retries 1)"
    );
    let reason = wait_unhealthy(&home, &agent, "health check failed");
    assert_eq!(
        reason,
        "health check failed: exited with status 1 (cmd test -e \"$FLAG\")"
    );
    let flag = home.path().join("ready");
    std::fs::write(&flag, "").unwrap();
    wait_healthy(&home, &agent);
    std::fs::remove_file(&flag).unwrap();
    wait_unhealthy(&home, &agent, "exited with status 1");
    // `ps` agrees with `inspect`.
    let listed = home.ps_all();
    assert_eq!(listed[0]["health"], "unhealthy");
    assert_eq!(listed[0]["health_check"], view["health_check"]);
    // Health is about running agents: once stopped, it is unknown.
    home.ok(&["stop", &agent]);
    assert_eq!(health(&home, &agent), ("unknown".into(), Value::Null));
    assert_eq!(home.inspect(&agent)["health_check"], view["health_check"]);
}

#[test]
fn an_http_probe_wants_a_2xx_answer() {
    let home = Home::new();
    let mut server = Server::http();
    let url = format!("http://127.0.0.1:{}/health", server.port);
    let agent = home.run(&[
        "--health-http",
        &url,
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--",
        "sleep",
        &marker(),
    ]);
    assert_eq!(
        home.inspect(&agent)["health_check"],
        format!("http {url} every 200ms (timeout 5s, retries 2)")
    );
    server.wait_for_probes(2);
    assert_eq!(*server.last_request.lock().unwrap(), "GET /health HTTP/1.1");
    wait_healthy(&home, &agent);

    server.failing.store(true, Ordering::SeqCst);
    let reason = wait_unhealthy(&home, &agent, "answered 500");
    assert!(
        reason.starts_with("health check failed ")
            && reason.contains(" times in a row: answered 500 Internal Server Error (http ")
            && reason.ends_with(&format!("(http {url})")),
        "{reason}"
    );
    server.failing.store(false, Ordering::SeqCst);
    wait_healthy(&home, &agent);

    server.close();
    wait_unhealthy(
        &home,
        &agent,
        &format!("times in a row: connection refused (http {url})"),
    );
    server.open();
    wait_healthy(&home, &agent);
}

#[test]
fn a_tcp_probe_wants_a_listener() {
    let home = Home::new();
    let mut server = Server::tcp();
    let address = format!("127.0.0.1:{}", server.port);
    let agent = home.run(&[
        "--health-tcp",
        &address,
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "--",
        "sleep",
        &marker(),
    ]);
    server.wait_for_probes(1);
    wait_healthy(&home, &agent);
    server.close();
    let reason = wait_unhealthy(&home, &agent, "connection refused");
    assert_eq!(
        reason,
        format!("health check failed: connection refused (tcp {address})")
    );
    server.open();
    wait_healthy(&home, &agent);
    server.close();
    wait_unhealthy(&home, &agent, "connection refused");
}

#[test]
fn a_hung_command_probe_times_out_and_is_killed_with_its_children() {
    let home = Home::new();
    let hung = marker();
    // The shell starts a child in the background and waits on another.
    let probe = format!("sleep {hung} & sleep {hung}");
    let agent = home.run(&[
        "--health-cmd",
        &probe,
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "--",
        "sleep",
        &marker(),
    ]);
    let reason = wait_unhealthy(&home, &agent, "timed out");
    assert_eq!(
        reason,
        format!("health check failed: timed out after 300ms and was killed (cmd {probe})")
    );
    // Probes keep coming and each is killed with its background child: at
    // most the one under way (and the one just killed) is ever alive.
    wait_until(SOON, "several probes have timed out", || {
        home.inspect(&agent)["health_reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed 4 times in a row"))
    });
    for _ in 0..20 {
        let alive = procfs::with_marker(&hung);
        assert!(alive.len() <= 4, "probe processes pile up: {alive:?}");
        thread::sleep(Duration::from_millis(50));
    }
    home.ok(&["stop", &agent]);
    wait_until(SOON, "no probe process is left", || {
        procfs::with_marker(&hung).is_empty()
    });
}

#[test]
fn probing_ends_with_the_run_and_kills_a_probe_under_way() {
    let home = Home::new();
    let probing = marker();
    let agent = home.run(&[
        "--health-cmd",
        &format!("sleep {probing}"),
        "--health-interval",
        "200ms",
        "--health-timeout",
        "1h",
        "--",
        "sleep",
        &marker(),
    ]);
    wait_until(SOON, "a probe is under way", || {
        !procfs::with_marker(&probing).is_empty()
    });
    // The probe runs in the agent's directory, in a process group of its
    // own (led by its shell, or by `sleep` if the shell exec'd it).
    let probe = &procfs::with_marker(&probing)[0];
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", probe.pid)).unwrap(),
        home.path()
    );
    assert!(
        probe.pgrp == probe.pid || probe.pgrp == probe.ppid,
        "{probe:?}"
    );
    assert_eq!(home.state(&agent), "running");
    assert_eq!(health(&home, &agent).0, "healthy");
    home.ok(&["kill", &agent]);
    home.wait_for_state(&agent, "stopped");
    wait_until(SOON, "the probe under way is killed", || {
        procfs::with_marker(&probing).is_empty()
    });
    // And no new probe starts for the ended run.
    thread::sleep(Duration::from_millis(800));
    assert!(procfs::with_marker(&probing).is_empty());
}

#[test]
fn probing_resumes_after_the_daemon_is_killed_and_restarted() {
    let home = Home::new();
    let mut server = Server::tcp();
    let agent = home.run(&[
        "--health-tcp",
        &format!("127.0.0.1:{}", server.port),
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "--",
        "sleep",
        &marker(),
    ]);
    server.wait_for_probes(1);
    let pid = home.pid(&agent);
    crash::kill_daemon(&home);
    server.close();
    // The next call starts a daemon, which re-attaches and probes again.
    wait_unhealthy(&home, &agent, "connection refused");
    assert_eq!(home.pid(&agent), pid, "the agent kept running");
    server.open();
    wait_healthy(&home, &agent);
    let probes = server.served();
    server.wait_for_probes(2);
    assert!(server.served() > probes);
}

#[test]
fn an_agent_without_a_probe_is_healthy_while_it_runs() {
    let home = Home::new();
    let agent = home.run(&["--", "sleep", &marker()]);
    let view = home.inspect(&agent);
    assert_eq!(view["health"], "healthy");
    assert_eq!(view["health_check"], Value::Null);
    assert_eq!(view["health_reason"], Value::Null);
}
