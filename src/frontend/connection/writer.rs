//! A connection's writer: a task that owns the socket's write half and writes
//! response frames in order, each counted against the connection's bytes
//! until the socket has taken it (see the `budget` module), so a client that
//! does not read stops being read from instead of filling the broker's
//! memory.
//!
//! A frame is a head and a body ([`Frame`]): a fetch response's body is its
//! stored batches, which go to the socket from the buffer they were read
//! into. Small frames queued together are copied into one buffer and go out
//! in one write; a larger frame's length and head join that buffer and its
//! body follows in the same vectored write, never copied. A socket that
//! takes no byte for `write_stall_timeout_ms` while a frame waits is given
//! up: the writer ends and tells the connection, which stops.
//! [`Writer::close`] ends the writer once everything queued is written; the
//! connection then stops.

use std::io::{self, IoSlice};
use std::time::Duration;

use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::budget::{Charge, ConnectionBytes};
use super::socket::ClientWrite;
use crate::protocol::codec::LENGTH_BYTES;
use std::sync::Arc;

/// Frame bodies up to this size are copied into one buffer with their
/// neighbours; larger ones are written from where they are.
const COALESCE_BYTES: usize = 64 * 1024;

/// One response frame's payload: `head` then `body`, sent as one frame (the
/// length prefix counts both). Most frames are all head.
#[derive(Debug)]
pub struct Frame {
    pub head: Bytes,
    pub body: Bytes,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

impl From<Bytes> for Frame {
    fn from(payload: Bytes) -> Frame {
        Frame { head: payload, body: Bytes::new() }
    }
}

/// The connection's side of its writer task.
pub struct Writer {
    /// `None` once closed: the task writes what is queued, then ends.
    frames: Option<mpsc::UnboundedSender<(Frame, Charge)>>,
    bytes: Arc<ConnectionBytes>,
    max_frame_bytes: usize,
}

/// The writer task ended: `Ok` once closed and flushed, `Err` when the socket
/// failed or stalled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriterDone(pub io::Result<()>);

impl Writer {
    /// Starts the writer task on the current arbiter; `done` hears when it ends.
    pub fn start(
        write: ClientWrite,
        bytes: Arc<ConnectionBytes>,
        max_frame_bytes: usize,
        stall: Duration,
        done: Recipient<WriterDone>,
    ) -> Writer {
        let (frames, queue) = mpsc::unbounded_channel();
        actix_rt::spawn(async move {
            let ended = write_frames(write, queue, stall).await;
            done.do_send(WriterDone(ended));
        });
        Writer { frames: Some(frames), bytes, max_frame_bytes }
    }

    /// Queues one response frame. A payload over `max_frame_bytes` (which no
    /// client could read) is not written and ends the connection, as a write
    /// error would.
    pub fn write(&mut self, payload: impl Into<Frame>) {
        let payload = payload.into();
        if payload.len() > self.max_frame_bytes {
            tracing::warn!(bytes = payload.len(), max = self.max_frame_bytes, "response over max_frame_bytes; closing");
            self.frames = None;
            return;
        }
        let charge = self.bytes.charge(LENGTH_BYTES + payload.len());
        if let Some(frames) = &self.frames {
            // The task is gone only after a failure, which stops the connection.
            let _ = frames.send((payload, charge));
        }
    }

    /// Ends the writer once what is queued has been written.
    pub fn close(&mut self) {
        self.frames = None;
    }

    /// The connection's byte count, for reservations of its own.
    pub fn bytes(&self) -> &Arc<ConnectionBytes> {
        &self.bytes
    }
}

async fn write_frames(
    mut write: ClientWrite,
    mut queue: mpsc::UnboundedReceiver<(Frame, Charge)>,
    stall: Duration,
) -> io::Result<()> {
    let mut out = BytesMut::new();
    let mut charges = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some((frame, charge)) = next.take() {
            charges.push(charge);
            if let Some(body) = stage(&mut out, frame) {
                write_all(&mut write, &out, &body, stall).await?;
                out.clear();
                // Written: its memory may serve the next fetch's read.
                herald_actors::buffers::give_back(body);
            }
            if out.len() < COALESCE_BYTES {
                next = queue.try_recv().ok();
            }
        }
        write_all(&mut write, &out, &[], stall).await?;
        // TLS keeps what the socket did not take yet; plain TCP has nothing
        // to flush.
        if let ClientWrite::Tls(_) = &write {
            stalling(stall, write.flush()).await?;
        }
        out.clear();
        // Written: these responses no longer count against the connection.
        charges.clear();
        if out.capacity() > 4 * COALESCE_BYTES {
            out = BytesMut::new();
        }
    }
    write.shutdown().await
}

/// Puts `frame`'s length and head into `out`, and its body too when it is
/// small; returns a large body, which must be written right after `out`.
fn stage(out: &mut BytesMut, frame: Frame) -> Option<Bytes> {
    out.put_u32(frame.len() as u32);
    out.put_slice(&frame.head);
    if frame.body.len() <= COALESCE_BYTES {
        out.put_slice(&frame.body);
        return None;
    }
    Some(frame.body)
}

/// Writes all of `first` then all of `second`, in vectored writes, failing
/// if the socket takes nothing for `stall`.
async fn write_all(write: &mut ClientWrite, mut first: &[u8], mut second: &[u8], stall: Duration) -> io::Result<()> {
    while !first.is_empty() || !second.is_empty() {
        let slices = [IoSlice::new(first), IoSlice::new(second)];
        let written = stalling(stall, write.write_vectored(&slices)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_first = written.min(first.len());
        first = &first[from_first..];
        second = &second[written - from_first..];
    }
    Ok(())
}

/// `io`, failing if it takes longer than `stall`.
async fn stalling<T>(stall: Duration, io: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(stall, io).await {
        Ok(done) => done,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client took no response byte for {} ms", stall.as_millis()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::frontend::connection::ConnectionBytes;

    #[test]
    fn a_large_body_is_not_copied_and_small_ones_are_coalesced() {
        let mut out = BytesMut::new();
        let small = Bytes::from(vec![1u8; 100]);
        assert!(stage(&mut out, Frame { head: Bytes::from_static(b"hd"), body: small }).is_none());
        assert_eq!(out.len(), 4 + 2 + 100);
        let large = Bytes::from(vec![2u8; COALESCE_BYTES + 1]);
        let stored = large.as_ptr();
        let body = stage(&mut out, Frame { head: Bytes::from_static(b"head"), body: large }).expect("written apart");
        assert_eq!(body.as_ptr(), stored, "the body was copied");
        assert_eq!(out.len(), 4 + 2 + 100 + 4 + 4, "only the length and the head join the buffer");
        assert_eq!(&out[106..110], &((4 + COALESCE_BYTES + 1) as u32).to_be_bytes());
    }

    #[tokio::test]
    async fn frames_reach_the_socket_whole_and_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_, write) = crate::frontend::connection::socket::plain(server);
        let bytes = ConnectionBytes::new(usize::MAX);
        let (frames, queue) = mpsc::unbounded_channel();
        let sizes = [0usize, 10, COALESCE_BYTES, COALESCE_BYTES + 1, 3 << 20, 7, 1 << 20];
        let mut expected = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let head = Bytes::from(vec![i as u8 + 100; 3 + i]);
            let body = Bytes::from((0..size).map(|n| (n % 251) as u8).collect::<Vec<_>>());
            expected.extend_from_slice(&((head.len() + body.len()) as u32).to_be_bytes());
            expected.extend_from_slice(&head);
            expected.extend_from_slice(&body);
            let charge = bytes.charge(LENGTH_BYTES + head.len() + body.len());
            frames.send((Frame { head, body }, charge)).unwrap();
        }
        drop(frames);
        let writer = tokio::spawn(write_frames(write, queue, Duration::from_secs(10)));
        let mut received = Vec::new();
        let mut client = client;
        client.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes on the socket differ from the frames queued");
        assert_eq!(bytes.used(), 0, "every written frame's charge is released");
    }
}
