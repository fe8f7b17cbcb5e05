//! One health probe, run once: a shell command, an HTTP GET or a TCP
//! connect, bounded by a timeout. `Ok` when the agent is well; otherwise
//! why not, in words for people (`connection refused`, `answered 500
//! Internal Server Error`, `exited with status 1`).

use super::Probe;
use crate::model::Agent;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use wrangle_os::exits::ExitWatcher;
use wrangle_os::pidfd::ExitStatus;
use wrangle_os::{signals, PidFd};
use wrangle_wire::parse::{self, signal_name, HostPort, HttpUrl};

/// A probe ready to run: what [`Probe`] names, resolved for one run.
pub(crate) enum Target {
    /// `sh -c command` in the agent's cwd and with its environment.
    Cmd {
        command: String,
        cwd: PathBuf,
        env: Vec<(String, String)>,
    },
    /// A GET of the URL.
    Http(HttpUrl),
    /// A TCP connect to the address.
    Tcp(HostPort),
}

impl Target {
    /// The probe of `agent`'s current run.
    pub(crate) fn of(probe: &Probe, agent: &Agent) -> Result<Target, String> {
        Ok(match probe {
            Probe::Cmd { command } => {
                let spec = &agent.identity.spec;
                let run = &agent.status.run;
                Target::Cmd {
                    command: command.clone(),
                    cwd: spec.cwd.clone(),
                    env: spec.environment(
                        &agent.identity.id,
                        run.number,
                        &run.dir.join("status.json"),
                    ),
                }
            }
            Probe::Http { url } => Target::Http(parse::parse_http_url(url)?),
            Probe::Tcp { address } => Target::Tcp(parse::parse_host_port(address)?),
        })
    }

    /// Runs the probe once; it fails when it takes longer than `timeout`.
    pub(crate) async fn check(&self, timeout: Duration) -> Result<(), String> {
        let timed_out = || format!("timed out after {}", humantime::format_duration(timeout));
        match self {
            Target::Cmd { command, cwd, env } => {
                let mut process = ProbeProcess::spawn(command, cwd, env)?;
                match tokio::time::timeout(timeout, process.exited()).await {
                    Ok(()) => process.finish().await,
                    Err(_) => {
                        process.finish().await.ok();
                        Err(format!("{} and was killed", timed_out()))
                    }
                }
            }
            Target::Http(url) => tokio::time::timeout(timeout, get(url))
                .await
                .unwrap_or_else(|_| Err(timed_out())),
            Target::Tcp(address) => tokio::time::timeout(timeout, connect(address))
                .await
                .unwrap_or_else(|_| Err(timed_out()))
                .map(drop),
        }
    }
}

/// Connects to `address` (resolving a host name first). `localhost` is the
/// loopback address without asking the resolver (RFC 6761): the usual
/// probe target then needs no name service, which a static wrangle loads
/// from the system's glibc.
async fn connect(address: &HostPort) -> Result<TcpStream, String> {
    let connected = match loopback(address) {
        Some(loopback) => TcpStream::connect(&loopback[..]).await,
        None => TcpStream::connect((address.host.as_str(), address.port)).await,
    };
    connected.map_err(|error| io_reason(&error))
}

/// The loopback addresses (IPv4 first) when `address` names `localhost`.
fn loopback(address: &HostPort) -> Option<[SocketAddr; 2]> {
    address.host.eq_ignore_ascii_case("localhost").then(|| {
        [
            SocketAddr::from((Ipv4Addr::LOCALHOST, address.port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, address.port)),
        ]
    })
}

/// GETs `url` over HTTP/1.1; well on a 2xx or 3xx status. The body is not
/// read: the status says it all.
async fn get(url: &HttpUrl) -> Result<(), String> {
    let stream = connect(&url.address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake failed: {error}"))?;
    let request = Request::get(url.path.as_str())
        .header(header::HOST, url.address.to_string())
        .header(header::USER_AGENT, "wrangle-probe")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|error| format!("cannot build the request: {error}"))?;
    // The connection is driven here, not in a task of its own, so that a
    // timeout drops it with everything else.
    let response = sender.send_request(request);
    tokio::pin!(response, connection);
    let answer = tokio::select! {
        biased;
        answer = &mut response => answer,
        // The connection may finish right after handing over the answer:
        // the answer (or why there is none) is still in `response`.
        _ = &mut connection => response.await,
    };
    let status = answer
        .map_err(|error| format!("no HTTP answer: {error}"))?
        .status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The `sh -c` of a command probe, in a process group of its own so that
/// whatever it starts is killed with it. The shell is reaped only after
/// its group is killed: until then its pid, which names the group, cannot
/// be reused, so the kill never reaches a stranger.
struct ProbeProcess {
    group: i32,
    /// The shell's pidfd, sent by the exit watcher once the shell exited.
    exit: oneshot::Receiver<PidFd>,
    /// The pidfd, once received; the shell is a zombie then.
    exited: Option<PidFd>,
    reaped: bool,
}

impl ProbeProcess {
    fn spawn(command: &str, cwd: &Path, env: &[(String, String)]) -> Result<Self, String> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|error| {
                format!(
                    "cannot run `sh -c` in {}: {}",
                    cwd.display(),
                    io_reason(&error)
                )
            })?;
        let group = child.id() as i32;
        // Dropping the std handle neither kills nor reaps: the pidfd does.
        drop(child);
        let watched = PidFd::open_child(group).and_then(|pidfd| {
            let (sender, exit) = oneshot::channel();
            exit_watcher()?.watch(pidfd, move |pidfd| {
                // Nobody waits any more (the probe was dropped): reap here.
                if let Err(pidfd) = sender.send(pidfd) {
                    let _ = pidfd.try_reap();
                }
            })?;
            Ok(exit)
        });
        match watched {
            Ok(exit) => Ok(ProbeProcess {
                group,
                exit,
                exited: None,
                reaped: false,
            }),
            Err(error) => {
                let _ = signals::send_to_group(group, libc::SIGKILL);
                Err(format!(
                    "cannot watch the probe command: {}",
                    io_reason(&error)
                ))
            }
        }
    }

    /// Returns once the shell has exited (it is not reaped yet).
    async fn exited(&mut self) {
        if self.exited.is_none() {
            self.exited = (&mut self.exit).await.ok();
        }
    }

    /// Kills what is left of the group, waits for the shell and reaps it.
    async fn finish(mut self) -> Result<(), String> {
        let _ = signals::send_to_group(self.group, libc::SIGKILL);
        self.exited().await;
        self.reaped = true;
        let Some(pidfd) = self.exited.take() else {
            return Err("the probe command was lost by the exit watcher".into());
        };
        match pidfd.try_reap() {
            Ok(Some(ExitStatus::Exited(0))) => Ok(()),
            Ok(Some(ExitStatus::Exited(code))) => Err(format!(
                "exited with status {code}{}",
                match code {
                    126 => " (the command cannot be executed)",
                    127 => " (command not found)",
                    _ => "",
                }
            )),
            Ok(Some(ExitStatus::Signaled(signal))) => {
                Err(format!("killed by {}", signal_name(signal)))
            }
            Ok(None) => Err("the probe command vanished before it was reaped".into()),
            Err(error) => Err(format!("cannot reap the probe command: {error}")),
        }
    }
}

impl Drop for ProbeProcess {
    /// A probe dropped half-way (its run ended, the daemon shuts down) is
    /// killed at once, and reaped here if it has exited already, or else by
    /// the exit watcher when it does.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = signals::send_to_group(self.group, libc::SIGKILL);
        // After `close` the watcher can no longer hand the pidfd over: it
        // is either here already or reaped by the watcher.
        self.exit.close();
        if let Some(pidfd) = self.exited.take().or_else(|| self.exit.try_recv().ok()) {
            let _ = pidfd.try_reap();
        }
    }
}

/// The thread that learns of probe commands' exits, started with the
/// first one.
fn exit_watcher() -> io::Result<ExitWatcher> {
    static WATCHER: Mutex<Option<ExitWatcher>> = Mutex::new(None);
    let mut watcher = WATCHER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if watcher.is_none() {
        *watcher = Some(ExitWatcher::start()?);
    }
    Ok(watcher.clone().expect("just started"))
}

/// An I/O error in the words of the OS, without the errno:
/// `connection refused`, `no route to host`.
fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match error.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn io_errors_read_like_the_os_says_them() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&refused), "connection refused");
        assert_eq!(io_reason(&io::Error::other("Odd")), "Odd");
    }

    /// Checks until the probe is refused. A closed listener can linger for
    /// a moment: a command probe of another test, forked between its fork
    /// and exec, holds a copy of every descriptor of this process.
    async fn refused_soon(target: &Target) -> Result<(), String> {
        let mut last = Ok(());
        for _ in 0..50 {
            last = target.check(Duration::from_secs(5)).await;
            if last == Err("connection refused".into()) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    }

    #[tokio::test]
    async fn a_tcp_probe_needs_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = parse::parse_host_port(&listener.local_addr().unwrap().to_string()).unwrap();
        let target = Target::Tcp(address);
        assert_eq!(target.check(Duration::from_secs(5)).await, Ok(()));
        drop(listener);
        assert_eq!(
            refused_soon(&target).await,
            Err("connection refused".into())
        );
    }

    #[test]
    fn localhost_is_the_loopback_without_the_resolver() {
        let named = |text: &str| loopback(&parse::parse_host_port(text).unwrap());
        assert_eq!(
            named("LocalHost:80")
                .unwrap()
                .map(|address| address.to_string()),
            ["127.0.0.1:80", "[::1]:80"]
        );
        assert_eq!(named("example.com:80"), None);
        assert_eq!(named("127.0.0.1:80"), None);
    }

    #[tokio::test]
    async fn localhost_is_the_loopback_on_either_family() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = TcpListener::bind(bind) else {
                continue; // no IPv6 loopback on this machine
            };
            let port = listener.local_addr().unwrap().port();
            let address = parse::parse_host_port(&format!("LocalHost:{port}")).unwrap();
            let target = Target::Tcp(address);
            assert_eq!(target.check(Duration::from_secs(5)).await, Ok(()), "{bind}");
        }
    }

    /// Serves one connection per answer on 127.0.0.1, each answered with
    /// the next of `answers` after the request's head has been read.
    fn serve(answers: &'static [&'static str]) -> (HttpUrl, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            for answer in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap() == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                assert!(head.starts_with(b"GET /health HTTP/1.1\r\n"));
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        (parse::parse_http_url(&url).unwrap(), server)
    }

    #[tokio::test]
    async fn an_http_probe_wants_2xx_or_3xx() {
        let (url, server) = serve(&[
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
            "not http at all\r\n\r\n",
            "",
        ]);
        let target = Target::Http(url);
        let second = Duration::from_secs(5);
        assert_eq!(target.check(second).await, Ok(()));
        assert_eq!(target.check(second).await, Ok(()));
        assert_eq!(
            target.check(second).await,
            Err("answered 500 Internal Server Error".into())
        );
        for _ in 0..2 {
            let error = target.check(second).await.unwrap_err();
            assert!(error.starts_with("no HTTP answer: "), "{error}");
        }
        // The server has hung up for good.
        server.join().unwrap();
        assert_eq!(
            refused_soon(&target).await,
            Err("connection refused".into())
        );
    }

    fn cmd(command: &str) -> Target {
        Target::Cmd {
            command: command.into(),
            cwd: "/".into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        }
    }

    #[tokio::test]
    async fn a_command_probe_reports_its_exit() {
        let second = Duration::from_secs(5);
        assert_eq!(cmd("test -d /").check(second).await, Ok(()));
        assert_eq!(
            cmd("exit 3").check(second).await,
            Err("exited with status 3".into())
        );
        assert_eq!(
            cmd("no-such-command-here").check(second).await,
            Err("exited with status 127 (command not found)".into())
        );
        assert_eq!(
            cmd("kill -TERM $$").check(second).await,
            Err("killed by SIGTERM".into())
        );
        assert_eq!(
            cmd("sleep 30").check(Duration::from_millis(50)).await,
            Err("timed out after 50ms and was killed".into())
        );
        let nowhere = Target::Cmd {
            command: "true".into(),
            cwd: "/no/such/dir".into(),
            env: Vec::new(),
        };
        let error = nowhere.check(second).await.unwrap_err();
        assert!(
            error.starts_with("cannot run `sh -c` in /no/such/dir: no such file"),
            "{error}"
        );
    }
}
