//! The ordered fsync writer of one data directory, with group commit.
//!
//! Partitions write batches into the page cache from their own handlers, then
//! hand the files they dirtied to this writer and wait for its answer before
//! acknowledging. The writer runs on its own OS thread, off every event loop:
//! it takes every request queued since its last round, fsyncs each distinct file
//! once, and answers them all — many batches, one fsync. Requests are answered
//! in the order they arrived.
//!
//! An fsync failure is fatal for durability (the kernel may have dropped the
//! dirty pages), so the writer fails every request from then on: the broker
//! stops acknowledging writes rather than acknowledge what may be lost.

use std::collections::HashSet;
use std::fs::File;
use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use tokio::sync::oneshot;

use crate::error::{BrokerError, ErrorCode};

type Reply = oneshot::Sender<io::Result<()>>;

struct SyncRequest {
    files: Vec<Arc<File>>,
    reply: Option<Reply>,
}

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct SyncWriter {
    requests: mpsc::Sender<SyncRequest>,
}

impl SyncWriter {
    /// Starts the writer thread. It ends when every handle is dropped.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn start(name: &str) -> io::Result<SyncWriter> {
        let (requests, queue) = mpsc::channel::<SyncRequest>();
        thread::Builder::new().name(format!("fsync-{name}")).spawn(move || run(queue))?;
        Ok(SyncWriter { requests })
    }

    /// Asks for `files` to be fsynced, now; the future resolves once they
    /// are, or with `KAFKA_STORAGE_ERROR` if they cannot be.
    pub fn sync(&self, files: Vec<Arc<File>>) -> impl Future<Output = Result<(), BrokerError>> + 'static {
        let (tx, rx) = oneshot::channel();
        // If the thread is gone, `tx` is dropped with the request and the
        // receiver reports an error: nothing is acknowledged.
        let _ = self.requests.send(SyncRequest { files, reply: Some(tx) });
        async move {
            let storage = |message: String| BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, message);
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(storage(format!("fsync failed: {err}"))),
                Err(_) => Err(storage("the fsync writer is gone".into())),
            }
        }
    }

    /// Asks for `files` to be fsynced without waiting (the `interval` setting).
    pub fn sync_in_background(&self, files: Vec<Arc<File>>) {
        let _ = self.requests.send(SyncRequest { files, reply: None });
    }
}

fn run(queue: mpsc::Receiver<SyncRequest>) {
    let mut failed: Option<String> = None;
    while let Ok(first) = queue.recv() {
        let mut round = vec![first];
        round.extend(queue.try_iter());
        let result = match &failed {
            Some(reason) => Err(reason.clone()),
            None => sync_round(&round).map_err(|err| {
                tracing::error!(%err, "fsync failed; refusing every further write");
                let reason = format!("fsync failed earlier: {err}");
                failed = Some(reason);
                err.to_string()
            }),
        };
        for request in round {
            if let Some(reply) = request.reply {
                let _ = reply.send(result.clone().map_err(io::Error::other));
            }
        }
    }
}

fn sync_round(round: &[SyncRequest]) -> io::Result<()> {
    let mut seen = HashSet::new();
    for file in round.iter().flat_map(|r| r.files.iter()) {
        if seen.insert(Arc::as_ptr(file)) {
            file.sync_data()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_request_is_answered_after_its_files_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SyncWriter::start("test").unwrap();
        let mut file = File::create(dir.path().join("a")).unwrap();
        file.write_all(b"hello").unwrap();
        let file = Arc::new(file);
        let receivers: Vec<_> = (0..50).map(|_| writer.sync(vec![file.clone()])).collect();
        for rx in receivers {
            futures::executor::block_on(rx).unwrap();
        }
    }

    #[test]
    fn a_failed_fsync_fails_its_request_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SyncWriter::start("test").unwrap();
        let good = Arc::new(File::create(dir.path().join("good")).unwrap());
        futures::executor::block_on(writer.sync(vec![good.clone()])).unwrap();
        // A pipe cannot be fsynced (EINVAL): the writer must really call fsync
        // to notice.
        let (_reader, pipe) = std::io::pipe().unwrap();
        let pipe = Arc::new(File::from(std::os::fd::OwnedFd::from(pipe)));
        let failed = futures::executor::block_on(writer.sync(vec![pipe])).unwrap_err();
        assert_eq!(failed.code, ErrorCode::KAFKA_STORAGE_ERROR);
        let later = futures::executor::block_on(writer.sync(vec![good])).unwrap_err();
        assert_eq!(later.code, ErrorCode::KAFKA_STORAGE_ERROR, "nothing is acknowledged after a failed fsync");
    }
}
