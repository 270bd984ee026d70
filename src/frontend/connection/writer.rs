//! A connection's writer: a task that owns the socket's write half and writes
//! response frames in order, each counted against the connection's bytes
//! until the socket has taken it (see the `budget` module), so a client that
//! does not read stops being read from instead of filling the broker's
//! memory.
//!
//! Small frames queued together go out in one write. A socket that takes no
//! byte for `write_stall_timeout_ms` while a frame waits is given up: the
//! writer ends and tells the connection, which stops. [`Writer::close`] ends
//! the writer once everything queued is written; the connection then stops.

use std::io;
use std::time::Duration;

use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::budget::{Charge, ConnectionBytes};
use crate::protocol::codec::LENGTH_BYTES;
use std::sync::Arc;

/// Frames up to this size are copied into one buffer with their neighbours;
/// larger ones are written from where they are.
const COALESCE_BYTES: usize = 64 * 1024;

/// The connection's side of its writer task.
pub struct Writer {
    /// `None` once closed: the task writes what is queued, then ends.
    frames: Option<mpsc::UnboundedSender<(Bytes, Charge)>>,
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
        write: OwnedWriteHalf,
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
    pub fn write(&mut self, payload: Bytes) {
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
    mut write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<(Bytes, Charge)>,
    stall: Duration,
) -> io::Result<()> {
    let mut out = BytesMut::new();
    let mut charges = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some((payload, charge)) = next.take() {
            out.put_u32(payload.len() as u32);
            charges.push(charge);
            if payload.len() <= COALESCE_BYTES {
                out.put_slice(&payload);
            } else {
                write_all(&mut write, &out, stall).await?;
                out.clear();
                write_all(&mut write, &payload, stall).await?;
            }
            if out.len() < COALESCE_BYTES {
                next = queue.try_recv().ok();
            }
        }
        write_all(&mut write, &out, stall).await?;
        out.clear();
        // Written: these responses no longer count against the connection.
        charges.clear();
        if out.capacity() > 4 * COALESCE_BYTES {
            out = BytesMut::new();
        }
    }
    write.shutdown().await
}

/// Writes all of `data`, failing if the socket takes nothing for `stall`.
async fn write_all(write: &mut OwnedWriteHalf, mut data: &[u8], stall: Duration) -> io::Result<()> {
    while !data.is_empty() {
        let written = match tokio::time::timeout(stall, write.write(data)).await {
            Ok(written) => written?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client took no response byte for {} ms", stall.as_millis()),
                ))
            }
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[written..];
    }
    Ok(())
}
