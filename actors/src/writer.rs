//! The ordered fsync writer of one data directory, with group commit.
//!
//! Partitions write batches into the page cache from their own handlers, then
//! hand the files they dirtied to this writer and wait for its answer before
//! acknowledging. The writer runs on its own OS thread, off every event loop:
//! it takes every request queued since its last round, fsyncs each distinct file
//! once, and answers them all — many batches, one fsync. Requests are answered
//! in the order they arrived. The distinct files of a round are fsynced
//! concurrently, by up to [`PARALLEL_SYNCS`] threads: a round touching many
//! partitions then lasts about one fsync, not one per file (concurrent
//! fdatasyncs share the filesystem's journal commit), so the next round starts
//! sooner and takes more requests.
//!
//! Grouping can be turned off (`storage.group_commit = false`, for
//! comparison): then each request is fsynced and answered on its own, in
//! arrival order.
//!
//! An fsync failure is fatal for durability (the kernel may have dropped the
//! dirty pages), so the writer fails every request from then on and keeps the
//! reason where every partition can see it ([`SyncWriter::failure`]): the
//! broker stops acknowledging writes, whatever the flush policy, rather than
//! acknowledge what may be lost.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use tokio::sync::oneshot;

use crate::error::{BrokerError, ErrorCode};
use crate::fs::FileRef;

type Reply = oneshot::Sender<io::Result<()>>;

/// Files of one round fsynced at once, at most (the writer thread and the
/// helpers it starts).
pub const PARALLEL_SYNCS: usize = 8;

/// One fsync handed to a helper thread, and where its result goes.
type SyncJob = (FileRef, mpsc::Sender<io::Result<()>>);

struct SyncRequest {
    files: Vec<FileRef>,
    reply: Reply,
}

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct SyncWriter {
    requests: mpsc::Sender<SyncRequest>,
    /// Why an fsync failed, once one has: set once by the thread, for good.
    failure: Arc<OnceLock<String>>,
}

impl SyncWriter {
    /// Starts the writer thread, with group commit. It ends when every handle
    /// is dropped.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn start(name: &str) -> io::Result<SyncWriter> {
        SyncWriter::start_with(name, true)
    }

    /// Starts the writer thread; `group_commit = false` fsyncs and answers
    /// each request on its own. The threads end when every handle is dropped.
    ///
    /// # Errors
    ///
    /// A thread could not be spawned.
    pub fn start_with(name: &str, group_commit: bool) -> io::Result<SyncWriter> {
        let (requests, queue) = mpsc::channel::<SyncRequest>();
        let (jobs, shared) = mpsc::channel::<SyncJob>();
        let shared = Arc::new(Mutex::new(shared));
        for helper in 1..PARALLEL_SYNCS {
            let shared = Arc::clone(&shared);
            thread::Builder::new().name(format!("fsync-{name}-{helper}")).spawn(move || help(&shared))?;
        }
        let failure = Arc::new(OnceLock::new());
        let failed = Arc::clone(&failure);
        thread::Builder::new().name(format!("fsync-{name}")).spawn(move || run(queue, &jobs, group_commit, &failed))?;
        Ok(SyncWriter { requests, failure })
    }

    /// Asks for `files` to be fsynced, now; the future resolves once they
    /// are, or with `KAFKA_STORAGE_ERROR` if they cannot be.
    pub fn sync(&self, files: Vec<FileRef>) -> impl Future<Output = Result<(), BrokerError>> + 'static {
        let (tx, rx) = oneshot::channel();
        // If the thread is gone, `tx` is dropped with the request and the
        // receiver reports an error: nothing is acknowledged.
        let _ = self.requests.send(SyncRequest { files, reply: tx });
        async move {
            let storage = |message: String| BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, message);
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(storage(format!("fsync failed: {err}"))),
                Err(_) => Err(storage("the fsync writer is gone".into())),
            }
        }
    }

    /// Why an fsync of this data directory failed, once one has: from then on
    /// no write may be acknowledged, whatever the flush policy (with
    /// `interval` and `never` nothing else would tell the partitions).
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }
}

fn run(
    queue: mpsc::Receiver<SyncRequest>,
    jobs: &mpsc::Sender<SyncJob>,
    group_commit: bool,
    failure: &OnceLock<String>,
) {
    while let Ok(first) = queue.recv() {
        let mut round = vec![first];
        if group_commit {
            round.extend(queue.try_iter());
        }
        let result = match failure.get() {
            Some(reason) => Err(format!("fsync failed earlier: {reason}")),
            None => sync_round(&round, jobs).map_err(|err| {
                tracing::error!(%err, "fsync failed; refusing every further write");
                // Set before any answer goes out: whoever learns of the
                // failure from an answer also finds it here.
                let _ = failure.set(err.to_string());
                err.to_string()
            }),
        };
        for request in round {
            let _ = request.reply.send(result.clone().map_err(io::Error::other));
        }
    }
}

/// Fsyncs each distinct file of the round once, all at once, and then the
/// directories, all at once: a directory's fsync makes durable every entry it
/// holds by then, so every file's data goes first, and a round cut short never
/// leaves a segment's entry durable before an earlier segment's data.
fn sync_round(round: &[SyncRequest], jobs: &mpsc::Sender<SyncJob>) -> io::Result<()> {
    let mut seen = HashSet::new();
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for file in round.iter().flat_map(|r| r.files.iter()) {
        if seen.insert(Arc::as_ptr(file).cast::<()>()) {
            if file.is_dir() {
                dirs.push(file);
            } else {
                files.push(file);
            }
        }
    }
    sync_all_at_once(&files, jobs)?;
    sync_all_at_once(&dirs, jobs)
}

/// Fsyncs `files` concurrently: all but the first on the helper threads, the
/// first on this one; returns once every one is done, with the first error.
fn sync_all_at_once(files: &[&FileRef], jobs: &mpsc::Sender<SyncJob>) -> io::Result<()> {
    let Some((first, rest)) = files.split_first() else { return Ok(()) };
    let (done, results) = mpsc::channel();
    let mut handed = 0;
    let mut result = Ok(());
    for file in rest {
        if jobs.send((Arc::clone(file), done.clone())).is_ok() {
            handed += 1;
        } else {
            // No helper left (they only end with the writer): do it here.
            result = result.and(timed_sync(file));
        }
    }
    drop(done);
    result = timed_sync(first).and(result);
    let mut answered = 0;
    for answer in results.iter().take(handed) {
        answered += 1;
        result = result.and(answer);
    }
    if answered < handed {
        // A helper ended without answering: its file may not be synced.
        result = result.and(Err(io::Error::other("an fsync thread ended before its fsync was done")));
    }
    result
}

/// A helper thread: fsyncs what the writer hands it until the writer ends.
fn help(jobs: &Mutex<mpsc::Receiver<SyncJob>>) {
    loop {
        // The lock is held only while waiting for the next job, not during
        // its fsync, so the helpers fsync concurrently.
        let job = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok((file, done)) = job else { return };
        let _ = done.send(timed_sync(&file));
    }
}

fn timed_sync(file: &FileRef) -> io::Result<()> {
    let started = std::time::Instant::now();
    let result = file.sync_data();
    crate::stats::fsync_seconds().observe(started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn every_request_is_answered_after_its_files_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SyncWriter::start("test").unwrap();
        let mut file = File::create(dir.path().join("a")).unwrap();
        file.write_all(b"hello").unwrap();
        let file: FileRef = Arc::new(file);
        let receivers: Vec<_> = (0..50).map(|_| writer.sync(vec![file.clone()])).collect();
        for rx in receivers {
            futures::executor::block_on(rx).unwrap();
        }
    }

    #[test]
    fn a_failed_fsync_fails_its_request_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SyncWriter::start("test").unwrap();
        let good: FileRef = Arc::new(File::create(dir.path().join("good")).unwrap());
        futures::executor::block_on(writer.sync(vec![good.clone()])).unwrap();
        assert_eq!(writer.failure(), None);
        // A pipe cannot be fsynced (EINVAL): the writer must really call fsync
        // to notice.
        let (_reader, pipe) = std::io::pipe().unwrap();
        let pipe: FileRef = Arc::new(File::from(std::os::fd::OwnedFd::from(pipe)));
        let failed = futures::executor::block_on(writer.sync(vec![pipe])).unwrap_err();
        assert_eq!(failed.code, ErrorCode::KAFKA_STORAGE_ERROR);
        let later = futures::executor::block_on(writer.sync(vec![good])).unwrap_err();
        assert_eq!(later.code, ErrorCode::KAFKA_STORAGE_ERROR, "nothing is acknowledged after a failed fsync");
        assert!(
            writer.clone().failure().is_some_and(|reason| reason.contains("Invalid argument")),
            "and every handle knows why"
        );
    }

    #[test]
    fn every_file_of_a_round_is_durable_once_it_is_answered() {
        use crate::fs::fault::FaultFs;
        use crate::fs::{FileSystem, OpenMode};
        use std::path::{Path, PathBuf};

        let fs = FaultFs::new();
        let dir = Path::new("/data");
        fs.create_dir_all(dir).unwrap();
        // More files than fsync threads: some of them wait for a free one.
        let paths: Vec<PathBuf> = (0..PARALLEL_SYNCS * 3).map(|n| dir.join(format!("{n}.log"))).collect();
        let mut files: Vec<FileRef> = paths.iter().map(|p| fs.open(p, OpenMode::CreateNew).unwrap()).collect();
        for (n, file) in files.iter().enumerate() {
            file.append(format!("data of file {n}").as_bytes()).unwrap();
        }
        files.push(fs.open_dir(dir).unwrap());
        let writer = SyncWriter::start("test").unwrap();
        futures::executor::block_on(writer.sync(files)).unwrap();
        fs.lose_power(None);
        for (n, path) in paths.iter().enumerate() {
            let file = fs.open(path, OpenMode::Read).unwrap();
            let expected = format!("data of file {n}");
            let mut kept = vec![0; expected.len()];
            file.read_exact_at(&mut kept, 0).unwrap();
            assert_eq!(kept, expected.as_bytes(), "{}", path.display());
        }
    }

    #[test]
    fn a_failed_fsync_on_any_thread_fails_the_round_and_every_later_one() {
        use crate::fs::fault::FaultFs;
        use crate::fs::{FileSystem, OpenMode};
        use std::path::Path;

        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("/data")).unwrap();
        let files: Vec<FileRef> = (0..PARALLEL_SYNCS * 2)
            .map(|n| fs.open(&Path::new("/data").join(format!("{n}.log")), OpenMode::CreateNew).unwrap())
            .collect();
        files.iter().for_each(|file| file.append(b"unsynced").unwrap());
        let writer = SyncWriter::start_with("test", false).unwrap();
        // Whichever thread does the fifth fsync fails it.
        fs.fail_sync(5);
        let failed = futures::executor::block_on(writer.sync(files.clone())).unwrap_err();
        assert_eq!(failed.code, ErrorCode::KAFKA_STORAGE_ERROR);
        assert!(writer.failure().is_some());
        let later = futures::executor::block_on(writer.sync(files[..1].to_vec())).unwrap_err();
        assert_eq!(later.code, ErrorCode::KAFKA_STORAGE_ERROR, "nothing is acknowledged after a failed fsync");
    }

    #[test]
    fn directories_are_synced_after_every_file_of_the_round() {
        use crate::fs::fault::FaultFs;
        use crate::fs::{FileSystem, OpenMode};
        use std::path::Path;

        let fs = FaultFs::new();
        let (dir, path) = (Path::new("/data"), Path::new("/data/new.log"));
        fs.create_dir_all(dir).unwrap();
        let file = fs.open(path, OpenMode::CreateNew).unwrap();
        file.append(b"unsynced data").unwrap();
        let dir = fs.open_dir(dir).unwrap();
        let writer = SyncWriter::start("test").unwrap();
        // The round is cut short at its second fsync: whichever of the two
        // went first is durable, the other is not.
        fs.fail_sync(2);
        futures::executor::block_on(writer.sync(vec![dir, file])).unwrap_err();
        fs.lose_power(None);
        assert!(!fs.exists(path).unwrap(), "the entry is durable before the data it names");
    }
}
