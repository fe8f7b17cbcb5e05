//! Who may talk to the daemon: the socket is mode 0600 in a 0700
//! directory, but a mode can be loosened by hand; each connection's peer
//! credentials (`SO_PEERCRED`, from the kernel, not from the client) are
//! checked too. The daemon's own user and root are let in; anyone else
//! gets a 403 that says why, and the connection is closed.

use axum::serve::Listener;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{unix::SocketAddr, UnixListener, UnixStream};

/// The daemon's Unix socket, taking only connections of its own user (or
/// root).
pub struct OwnUserOnly {
    listener: UnixListener,
    uid: u32,
}

impl OwnUserOnly {
    /// `listener`, let in to `uid` and root.
    pub fn new(listener: UnixListener, uid: u32) -> OwnUserOnly {
        OwnUserOnly { listener, uid }
    }

    /// Whether a peer of `uid` is let in.
    fn lets_in(&self, uid: u32) -> bool {
        uid == self.uid || uid == 0
    }
}

impl Listener for OwnUserOnly {
    type Io = UnixStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (UnixStream, SocketAddr) {
        loop {
            let (stream, address) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // As axum's own listener does: out of descriptors and
                    // the like pass; wait a moment and go on.
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(credentials) if self.lets_in(credentials.uid()) => return (stream, address),
                Ok(credentials) => {
                    let uid = credentials.uid();
                    tracing::warn!(
                        "refused a connection of uid {uid}: the daemon runs as uid {}",
                        self.uid
                    );
                    tokio::spawn(refuse(stream, uid, self.uid));
                }
                Err(error) => tracing::warn!("refused a connection whose peer is unknown: {error}"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Tells a peer of `uid` why it is refused, as an API error, and closes.
async fn refuse(mut stream: UnixStream, uid: u32, daemon_uid: u32) {
    let body = serde_json::to_string(&wrangle_wire::ErrorBody::new(
        wrangle_wire::ErrorCode::PermissionDenied,
        format!(
            "this daemon runs as uid {daemon_uid} and takes no requests of uid {uid}: each user runs a daemon of their own (WRANGLE_HOME)"
        ),
    ))
    .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        // The request is read first (its head, at most 16 KiB): closing
        // with it unread would reset the connection before the answer
        // arrives.
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 16384 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
            }
        }
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        // And what else it sends, until it closes.
        while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
    })
    .await;
}
