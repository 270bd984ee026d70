//! The write half of a client's connection, shared by every caller.
//!
//! A caller whose request is the only one waiting for an answer writes its
//! frame to the socket itself when nobody else is writing and nothing waits
//! in the queue: the frame leaves without a hand-off to another task (one
//! scheduler wake-up less per request). What the socket does not take at once
//! (its send buffer is full, or the frame is larger than what it has room
//! for) is queued, and the connection's writer task writes the queue as the
//! socket drains. Pipelined requests (others already wait for answers) go to
//! the writer task too: it gathers the frames handed over meanwhile into one
//! system call, and the broker reads them in one (written one by one, each
//! would cost both sides a system call and a wake-up). Frames handed over
//! while one is written queue behind it, so frames leave in the order they
//! were handed over: one right to write exists, held by a caller for the
//! length of one non-blocking write, or by the writer task while the queue
//! is not empty.
//!
//! Under TLS a frame is encrypted into records before it reaches the socket,
//! and what the socket does not take stays in the TLS stream: every frame
//! goes through the writer task, which writes and flushes the stream.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::client::TlsStream;

/// Frames written by the writer task with one system call, at most.
const FRAMES_PER_WRITE: usize = 64;

/// Who holds the right to write to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Nobody,
    /// A caller, for one non-blocking write of its frame.
    Caller,
    /// The writer task, until the queue is empty.
    Task,
}

struct State {
    /// Frames (the first possibly the unwritten rest of one) to write, in
    /// order. Not empty only while someone holds the right to write.
    queue: VecDeque<Bytes>,
    holder: Holder,
    /// A write failed: the connection is broken, nothing more is taken.
    failed: bool,
    /// Every handle is gone: the writer task writes what is queued and ends,
    /// which closes the write half.
    ended: bool,
}

/// The socket's write half.
pub(crate) enum Socket {
    Plain(OwnedWriteHalf),
    /// Written by the writer task only; the lock is never contended.
    Tls(tokio::sync::Mutex<WriteHalf<TlsStream<TcpStream>>>),
}

/// The shared write half; see the module documentation.
pub(crate) struct Writer {
    socket: Socket,
    state: Mutex<State>,
    /// Wakes the writer task: the right to write was handed to it, or the
    /// last handle is gone.
    wake: Notify,
    /// Called once when a write fails, to end the requests waiting for
    /// answers that cannot come.
    on_broken: Box<dyn Fn() + Send + Sync>,
}

/// A caller's handle on the writer; when the last clone is dropped, the
/// writer task finishes the queue and closes the write half.
pub(crate) struct WriterHandle(Arc<Writer>);

impl Drop for WriterHandle {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
            state.ended = true;
        }
        self.0.wake.notify_one();
    }
}

impl std::ops::Deref for WriterHandle {
    type Target = Writer;

    fn deref(&self) -> &Writer {
        &self.0
    }
}

/// Starts the writer task of `socket`; returns the callers' handle.
/// `on_broken` is called once if a write fails.
pub(crate) fn start(socket: Socket, on_broken: impl Fn() + Send + Sync + 'static) -> WriterHandle {
    let writer = Arc::new(Writer {
        socket,
        on_broken: Box::new(on_broken),
        state: Mutex::new(State { queue: VecDeque::new(), holder: Holder::Nobody, failed: false, ended: false }),
        wake: Notify::new(),
    });
    tokio::spawn(writer.clone().run());
    WriterHandle(writer)
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves the state as it was between
        // two of its updates, each of which keeps it consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a write failed: the connection cannot send any more.
    pub(crate) fn is_broken(&self) -> bool {
        self.lock().failed
    }

    /// Writes `frame` now if `now` is asked, the socket takes it and nobody
    /// else is writing; otherwise queues (the rest of) it behind the frames
    /// handed over before it, for the writer task, which gathers what is
    /// queued meanwhile into one write. Returns before the frame is written
    /// in full.
    ///
    /// # Errors
    ///
    /// The connection is broken: a write failed, now or before.
    pub(crate) fn send(&self, frame: Bytes, now: bool) -> io::Result<()> {
        if frame.is_empty() {
            return Ok(());
        }
        let plain = match &self.socket {
            Socket::Plain(plain) => plain,
            Socket::Tls(_) => return self.hand_over(frame),
        };
        {
            let mut state = self.lock();
            if state.failed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            match state.holder {
                Holder::Nobody if now => state.holder = Holder::Caller,
                Holder::Nobody => {
                    state.holder = Holder::Task;
                    state.queue.push_back(frame);
                    drop(state);
                    self.wake.notify_one();
                    return Ok(());
                }
                Holder::Caller | Holder::Task => {
                    state.queue.push_back(frame);
                    return Ok(());
                }
            }
        }
        let mut written = 0;
        let outcome = loop {
            match plain.try_write(&frame[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    if written == frame.len() {
                        break Ok(());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        let mut state = self.lock();
        if let Err(err) = outcome {
            state.fail();
            drop(state);
            (self.on_broken)();
            return Err(err);
        }
        if written < frame.len() {
            state.queue.push_front(frame.slice(written..));
        }
        if state.queue.is_empty() {
            state.holder = Holder::Nobody;
        } else {
            // Frames queued while this one was written, or its rest: the
            // writer task takes over, and writes them when the socket drains.
            state.holder = Holder::Task;
            drop(state);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Queues `frame` for the writer task.
    fn hand_over(&self, frame: Bytes) -> io::Result<()> {
        let mut state = self.lock();
        if state.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        state.queue.push_back(frame);
        if state.holder == Holder::Nobody {
            state.holder = Holder::Task;
            drop(state);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The writer task: writes the queue whenever the right to write is
    /// handed to it, until every handle is gone or a write fails.
    async fn run(self: Arc<Self>) {
        let mut frames = VecDeque::new();
        'running: loop {
            self.wake.notified().await;
            loop {
                {
                    let mut state = self.lock();
                    if state.failed {
                        return;
                    }
                    if state.holder != Holder::Task || state.queue.is_empty() {
                        if state.holder == Holder::Task {
                            state.holder = Holder::Nobody;
                        }
                        if state.ended && state.holder == Holder::Nobody {
                            break 'running;
                        }
                        break;
                    }
                    std::mem::swap(&mut frames, &mut state.queue);
                }
                let written = match &self.socket {
                    Socket::Plain(plain) => write_all(plain, &mut frames).await,
                    Socket::Tls(tls) => write_tls(&mut *tls.lock().await, &mut frames).await,
                };
                if written.is_err() {
                    self.lock().fail();
                    (self.on_broken)();
                    return;
                }
            }
        }
        // Dropping a plain half closes it; a TLS half says so (its read half
        // still holds the stream).
        if let Socket::Tls(tls) = &self.socket {
            let _ = tls.lock().await.shutdown().await;
        }
    }
}

impl State {
    /// The connection is broken: what is queued is dropped (the answers to
    /// its requests cannot come: `on_broken` ends them).
    fn fail(&mut self) {
        self.failed = true;
        self.queue.clear();
        self.holder = Holder::Nobody;
    }
}

/// Writes every frame of `frames`, many with one system call, waiting for the
/// socket to drain when it is full.
async fn write_all(socket: &OwnedWriteHalf, frames: &mut VecDeque<Bytes>) -> io::Result<()> {
    while !frames.is_empty() {
        let slices: Vec<IoSlice<'_>> = frames.iter().take(FRAMES_PER_WRITE).map(|f| IoSlice::new(f)).collect();
        let result = socket.try_write_vectored(&slices);
        drop(slices);
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => consume(frames, n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Writes every frame of `frames` through TLS, many in one vectored write,
/// then flushes what the socket did not take yet.
async fn write_tls(socket: &mut WriteHalf<TlsStream<TcpStream>>, frames: &mut VecDeque<Bytes>) -> io::Result<()> {
    while !frames.is_empty() {
        let slices: Vec<IoSlice<'_>> = frames.iter().take(FRAMES_PER_WRITE).map(|f| IoSlice::new(f)).collect();
        let written = socket.write_vectored(&slices).await;
        drop(slices);
        let n = written?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        consume(frames, n);
    }
    socket.flush().await
}

/// Drops the first `n` bytes written from the front of `frames`.
fn consume(frames: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = frames.front_mut() else { break };
        if front.len() <= n {
            n -= front.len();
            frames.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}
