//! Reading the body of a large frame on the bulk pool (see the `bulk`
//! module), at its lower CPU priority, instead of on an arbiter.
//!
//! Copying megabytes out of the socket is most of what a large frame costs
//! the broker. Done on an arbiter, a client that streams large frames (a
//! bulk producer, or one that sends frames only to have them refused) takes
//! the arbiter's thread, at the priority of every small request, for as long
//! as it keeps sending; done on the pool, the small requests of other
//! clients come first when both want the cores, and a client that sends
//! faster than the pool reads finds its socket full and waits: it slows
//! itself, not the others.
//!
//! The arbiter still waits for the socket to be readable; each time it is,
//! one job on the pool copies what has arrived (never past the frame's own
//! bytes) without waiting for more, through a descriptor of its own (a
//! duplicate, so that the job never reads a descriptor the connection has
//! closed and the system has given to another). The slow sender's frame
//! therefore holds no pool thread while it trickles in.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;

/// What one pass over the socket got.
pub enum Drained {
    /// Bytes (at least one), appended to the buffer.
    Bytes,
    /// The client closed the connection.
    Closed,
}

/// Appends to `buf` what has arrived of the next `wanted` bytes (`buf` has
/// room for them), copied on the bulk pool; waits only for the socket to be
/// readable, not for all of them. Returns the buffer with what was read.
pub async fn read_some(read: &OwnedReadHalf, buf: BytesMut, wanted: usize) -> (BytesMut, io::Result<Drained>) {
    let mut buf = buf;
    loop {
        if let Err(err) = read.readable().await {
            return (buf, Err(err));
        }
        let socket = match read.as_ref().as_fd().try_clone_to_owned() {
            Ok(socket) => socket,
            Err(err) => return (buf, Err(err)),
        };
        let job = super::bulk::run(move || {
            let got = recv_available(&socket, &mut buf, wanted);
            (buf, got)
        });
        let (back, got) = match job.await {
            Ok(done) => done,
            Err(err) => return (BytesMut::new(), Err(io::Error::other(err))),
        };
        buf = back;
        match got {
            Ok(Got::Bytes { drained }) => {
                if drained {
                    clear_readiness(read);
                }
                return (buf, Ok(Drained::Bytes));
            }
            Ok(Got::Closed) => return (buf, Ok(Drained::Closed)),
            // Nothing there after all (readiness is a hint): wait again.
            Ok(Got::Nothing) => clear_readiness(read),
            Err(err) => return (buf, Err(err)),
        }
    }
}

/// Tells the runtime the socket has nothing left to read, unless something
/// arrived since the job looked: a peek at one byte decides, so that bytes
/// arriving after it raise readiness again and are never waited for in vain.
fn clear_readiness(read: &OwnedReadHalf) {
    let fd = read.as_ref().as_raw_fd();
    let _ = read.as_ref().try_io(Interest::READABLE, || {
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a local; `fd` is the connection's open
        // socket, borrowed from `read` for the call.
        let n = unsafe { libc::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    });
}

enum Got {
    Bytes { drained: bool },
    Nothing,
    Closed,
}

/// Copies from `socket` into `buf` until `wanted` bytes came, the socket has
/// nothing more for now (`drained`), or the client closed it. Never blocks.
fn recv_available(socket: &OwnedFd, buf: &mut BytesMut, wanted: usize) -> io::Result<Got> {
    let fd = socket.as_raw_fd();
    let mut total = 0;
    while total < wanted {
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(wanted - total);
        if len == 0 {
            break;
        }
        // SAFETY: recv writes at most `len` bytes into the buffer's spare
        // capacity, which has at least `len` bytes; `fd` is our own duplicate
        // of the socket, open for the whole call.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) };
        if n > 0 {
            let n = n as usize;
            // SAFETY: recv initialised these `n` bytes just past the length.
            unsafe { buf.set_len(buf.len() + n) };
            total += n;
            continue;
        }
        if n == 0 {
            return Ok(if total > 0 { Got::Bytes { drained: false } } else { Got::Closed });
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                return Ok(if total > 0 { Got::Bytes { drained: true } } else { Got::Nothing });
            }
            _ if total > 0 => return Ok(Got::Bytes { drained: false }),
            _ => return Err(err),
        }
    }
    if total == 0 {
        return Err(io::Error::other("no room left in the frame's buffer"));
    }
    Ok(Got::Bytes { drained: false })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (TcpStream, OwnedReadHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read, _write) = server.into_split();
        // The write half is dropped: the read half alone keeps the socket.
        (client, read)
    }

    #[tokio::test]
    async fn a_frame_sent_in_pieces_arrives_whole_and_nothing_past_it_is_taken() {
        let (mut client, mut read) = pair().await;
        let frame: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = frame.clone();
        // Each piece goes once the reader has had the one before it.
        let (progress, mut arrived) = tokio::sync::watch::channel(0usize);
        let writer = tokio::spawn(async move {
            let mut total = 0;
            for piece in sent.chunks(700_001) {
                client.write_all(piece).await.unwrap();
                total += piece.len();
                arrived.wait_for(|&n| n >= total).await.unwrap();
            }
            client.write_all(b"next").await.unwrap();
            client
        });
        let mut buf = BytesMut::with_capacity(frame.len());
        let mut passes = 0;
        while buf.len() < frame.len() {
            let wanted = frame.len() - buf.len();
            let (back, got) = read_some(&read, buf, wanted).await;
            buf = back;
            assert!(matches!(got, Ok(Drained::Bytes)), "bytes were sent");
            passes += 1;
            progress.send_replace(buf.len());
        }
        assert_eq!(&buf[..], &frame[..]);
        assert!(passes >= 5, "the frame came in 5 pieces, each read as it came: {passes} passes");
        let mut client = writer.await.unwrap();
        // The bytes after the frame are still the socket's.
        let mut next = [0u8; 4];
        read.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"next");

        client.shutdown().await.unwrap();
        drop(client);
        let (_, got) = read_some(&read, BytesMut::with_capacity(16), 16).await;
        assert!(matches!(got, Ok(Drained::Closed)), "a closed connection is reported");
    }
}
