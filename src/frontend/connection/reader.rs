//! A connection's reader task: reads frames from the socket and hands them to
//! the [`Connection`] one at a time, each with its [`Admission`].
//!
//! Before each frame it waits for a read-ahead permit and for the connection
//! to be below `max_connection_bytes`. Once a frame's length prefix has
//! arrived it counts the frame against the connection and, for a frame over
//! [`SMALL_FRAME_BYTES`], takes that many bytes of the broker-wide request
//! budget (waiting while they are not free), and only then reads the body:
//! into a buffer of the frame's length for a frame so admitted, into one
//! that grows as the bytes arrive for the others (never to an announced
//! length no budget holds). It reads at most `READ_CHUNK` past a frame, and a large frame
//! leaves with its buffer's allocation, so that an idle connection holds no
//! large buffer. Each frame is decoded here (a large one as bulk work, see
//! the `bulk` module) and handed over decoded. Two deadlines
//! close a connection that holds the broker up: the first frame (the
//! handshake) must be complete within `handshake_timeout_ms` of the accept,
//! and any later frame within `frame_timeout_ms` of its first byte; time spent
//! waiting for the broker's own budgets does not count. Between frames a
//! connection may be idle for as long as it likes.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::budget::{Admission, Charge, ConnectionBytes};
use super::bulk_read::Drained;
use super::socket::ClientRead;
use super::{Connection, Decoded, ReaderEvent};
use crate::protocol;
use crate::protocol::codec::{FrameCodec, FrameError, Inbound, LENGTH_BYTES};
use crate::protocol::Request;

/// Bytes the buffer grows by at least when a frame needs more room; it grows
/// by up to what it already holds, so a frame costs at most twice what has
/// arrived of it.
const READ_CHUNK: usize = 16 * 1024;

/// The most one read from the socket copies.
const READ_SLICE: usize = 256 * 1024;

/// Frames up to this many bytes are read without the broker-wide request
/// budget. Connections that hold the budget with large frames, stalled ones
/// included, would otherwise hold up every other client's small requests
/// (a heartbeat, a fetch, a small produce) until their frame deadline. What
/// small frames hold is bounded per connection instead: `max_in_flight` of
/// them at most, within `max_connection_bytes`.
pub const SMALL_FRAME_BYTES: usize = 64 * 1024;

/// What the reader waits on and how long it gives a client.
pub struct ReaderLimits {
    pub max_frame_bytes: usize,
    pub max_records_per_request: u64,
    pub handshake_timeout: Duration,
    pub frame_timeout: Duration,
    /// Read-ahead permits of this connection (`max_in_flight`).
    pub read_ahead: Arc<Semaphore>,
    /// The broker-wide budget of request bytes (`max_inflight_request_bytes`).
    pub request_bytes: Arc<Semaphore>,
    pub connection_bytes: Arc<ConnectionBytes>,
    /// When the connection was accepted: the handshake deadline counts from
    /// here (a TLS handshake's time included).
    pub accepted: Instant,
}

/// Reads frames until the client closes, the framing breaks, a deadline
/// passes, or `stop` fires (the connection is gone).
pub async fn read_frames(
    mut read: ClientRead,
    limits: ReaderLimits,
    connection: Addr<Connection>,
    mut stop: oneshot::Receiver<()>,
) {
    let handshake_deadline = limits.accepted + limits.handshake_timeout;
    let mut codec = FrameCodec::new(limits.max_frame_bytes);
    let mut buf = BytesMut::new();
    let mut first = true;
    loop {
        let read_ahead = tokio::select! {
            permit = limits.read_ahead.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = &mut stop => return,
        };
        tokio::select! {
            () = limits.connection_bytes.below_bound() => {}
            _ = &mut stop => return,
        }
        // This frame's bytes in both budgets, once its length is known.
        let mut admitted: Option<(Option<OwnedSemaphorePermit>, Charge)> = None;
        let mut deadline = if first {
            Some(handshake_deadline)
        } else {
            (!buf.is_empty()).then(|| Instant::now() + limits.frame_timeout)
        };
        let event = loop {
            let length = (buf.len() >= LENGTH_BYTES).then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            let decoded = codec.decode(&mut buf);
            if let Ok(Some(Inbound::Frame(_))) | Ok(None) = &decoded {
                if let (None, Some(length)) = (&admitted, length) {
                    let permit = if length as usize <= SMALL_FRAME_BYTES {
                        None
                    } else {
                        let admit = limits.request_bytes.clone().acquire_many_owned(length);
                        tokio::select! {
                            permit = admit => match permit {
                                Ok(permit) => Some(permit),
                                Err(_) => return,
                            },
                            _ = &mut stop => return,
                        }
                    };
                    admitted = Some((permit, limits.connection_bytes.charge(length as usize)));
                    if !first {
                        deadline = Some(Instant::now() + limits.frame_timeout);
                    }
                }
            }
            match decoded {
                Ok(Some(Inbound::Frame(frame))) => {
                    let Some((request_bytes, connection_bytes)) = admitted.take() else { return };
                    if frame.len() > SMALL_FRAME_BYTES {
                        // The frame's memory goes with the frame: what was
                        // read past it (at most READ_CHUNK) moves to a buffer
                        // of its own rather than keeping the frame's
                        // allocation alive once the frame is done with.
                        buf = BytesMut::from(&buf[..]);
                    }
                    let decoded = decode(frame, limits.max_records_per_request).await;
                    break ReaderEvent::Request(decoded, Admission { read_ahead, request_bytes, connection_bytes });
                }
                Ok(Some(Inbound::KafkaRequest)) => break ReaderEvent::KafkaRequest,
                Err(err) => break ReaderEvent::Broken(err),
                Ok(None) => {}
            }
            let wanted = match length {
                Some(length) => LENGTH_BYTES + length as usize - buf.len(),
                None => LENGTH_BYTES - buf.len(),
            };
            let budgeted = matches!(&admitted, Some((Some(_), _)));
            if buf.capacity() - buf.len() < wanted {
                // A large frame holds its bytes of the broker-wide budget by
                // now: its buffer is made whole at once, sparing the copies
                // of growing it (mapped from the OS, see `server`, its pages
                // are only touched as the bytes arrive). Others grow with
                // what arrives.
                buf.reserve(if budgeted { wanted } else { wanted.min(READ_CHUNK.max(buf.len())) });
            }
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            if let (ClientRead::Plain(plain), true, Some(_)) = (&read, budgeted, length) {
                // A large frame's body: copied on the bulk pool (see the
                // `bulk_read` module), up to the frame's end. Under TLS the
                // socket's bytes are encrypted: read below, through TLS.
                tokio::select! {
                    ready = plain.readable() => if let Err(err) = ready {
                        break ReaderEvent::Broken(FrameError::Io(err));
                    },
                    () = expired => break ReaderEvent::TimedOut(timed_out(first, &limits, buf.len())),
                    _ = &mut stop => return,
                }
                let (back, got) = super::bulk_read::read_some(plain, std::mem::take(&mut buf), wanted).await;
                buf = back;
                match got {
                    Ok(Drained::Bytes) => continue,
                    Ok(Drained::Closed) => break ReaderEvent::Closed,
                    Err(err) => break ReaderEvent::Broken(FrameError::Io(err)),
                }
            }
            // Past the frame, at most READ_CHUNK is read ahead: bytes no
            // budget counts yet. One read copies at most READ_SLICE, and the
            // task yields between the slices of a large frame, so that its
            // megabytes do not hold up the arbiter's other connections.
            let mut limited = (&mut read).take((wanted + READ_CHUNK).min(READ_SLICE) as u64);
            if buf.len() > SMALL_FRAME_BYTES {
                tokio::task::yield_now().await;
            }
            tokio::select! {
                read = limited.read_buf(&mut buf) => match read {
                    Ok(0) => break ReaderEvent::Closed,
                    Ok(_) => {
                        if deadline.is_none() {
                            deadline = Some(Instant::now() + limits.frame_timeout);
                        }
                    }
                    Err(err) => break ReaderEvent::Broken(FrameError::Io(err)),
                },
                () = expired => break ReaderEvent::TimedOut(timed_out(first, &limits, buf.len())),
                _ = &mut stop => return,
            }
        };
        first = false;
        let last = !matches!(event, ReaderEvent::Request(..));
        if connection.send(event).await.is_err() || last {
            return;
        }
    }
}

/// Why a connection is closed for a frame or handshake that took too long.
fn timed_out(first: bool, limits: &ReaderLimits, arrived: usize) -> String {
    if first {
        format!("no complete handshake within handshake_timeout_ms {}", limits.handshake_timeout.as_millis())
    } else {
        format!(
            "frame not complete within frame_timeout_ms {} ({arrived} bytes of it arrived)",
            limits.frame_timeout.as_millis()
        )
    }
}

/// Decodes a frame: a small one here, a larger one as bulk work (see the
/// `bulk` module), so that decoding megabytes of records does not hold up the
/// other connections of this arbiter. The frame is frozen so that a produce's
/// records share its memory.
async fn decode(frame: BytesMut, max_records: u64) -> Decoded {
    let frame = frame.freeze();
    if frame.len() <= SMALL_FRAME_BYTES {
        return Request::decode_bounded(&frame, max_records);
    }
    let decoding = super::bulk::run(move || Request::decode_bounded(&frame, max_records));
    // Decoding never panics, and the pool's threads outlive every job:
    // `NotRun` only if none of them could be started.
    match decoding.await {
        Ok(decoded) => decoded,
        Err(err) => Err(protocol::DecodeError {
            correlation_id: None,
            error: herald_wire::error::WireError::new(
                herald_wire::error::ErrorCode::UNKNOWN_SERVER_ERROR,
                err.to_string(),
            ),
            unanswered: false,
        }),
    }
}
