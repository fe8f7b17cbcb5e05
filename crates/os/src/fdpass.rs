//! Messages with file descriptors attached, over a local `SOCK_SEQPACKET`
//! socket pair: how the daemon hands pipes to the shim zygote and gets a
//! pidfd back. Each send is one message; a receive gets exactly one.

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 4;

/// A connected pair of close-on-exec `SOCK_SEQPACKET` sockets.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Makes receives on `socket` fail with `WouldBlock` after `timeout`, so a
/// peer that hangs cannot hang the caller.
pub fn set_receive_timeout(socket: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(
        socket,
        rustix::net::sockopt::Timeout::Recv,
        Some(timeout),
    )?;
    Ok(())
}

/// Sends `data` with `fds` attached as one message. The descriptors stay
/// open here; the receiver gets its own copies.
pub fn send(socket: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_FDS} descriptors fit in one message"),
        ));
    }
    loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Receives one message into `buffer`: its length (0 when the peer has
/// closed its end) and the descriptors that came with it.
pub fn receive(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(buffer)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) => break received,
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if received.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the message was longer than the buffer",
        ));
    }
    Ok((received.bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_pipe_travels_with_its_message() {
        let (left, right) = socket_pair().unwrap();
        let (read, write) = rustix::pipe::pipe().unwrap();
        send(left.as_fd(), b"hello", &[write.as_fd()]).unwrap();
        drop(write);
        let mut buffer = [0u8; 64];
        let (length, mut fds) = receive(right.as_fd(), &mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"hello");
        assert_eq!(fds.len(), 1);
        let mut received = std::fs::File::from(fds.remove(0));
        received.write_all(b"through the pipe").unwrap();
        drop(received);
        let mut text = String::new();
        std::fs::File::from(read).read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the pipe");
    }

    #[test]
    fn a_closed_peer_reads_as_an_empty_message() {
        let (left, right) = socket_pair().unwrap();
        drop(left);
        let mut buffer = [0u8; 8];
        let (length, fds) = receive(right.as_fd(), &mut buffer).unwrap();
        assert_eq!((length, fds.len()), (0, 0));
    }

    #[test]
    fn a_silent_peer_times_out() {
        let (_left, right) = socket_pair().unwrap();
        set_receive_timeout(right.as_fd(), Duration::from_millis(20)).unwrap();
        let mut buffer = [0u8; 8];
        let error = receive(right.as_fd(), &mut buffer).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
    }
}
