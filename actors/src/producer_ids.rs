//! Idempotent producer ids, unique for the life of a data directory.
//!
//! Ids are handed out from blocks of [`BLOCK`]: before the first id of a
//! block is given, the block's end (the next block's first id) is written to
//! `<data_dir>/producer_ids` as a temporary file, fsynced, renamed over the
//! old one, and the directory fsynced. A restart starts at the stored end,
//! so an id is never given twice, whatever crashed when; the unused rest of
//! a block is skipped. The file is one line, `next_producer_id <n> crc <crc
//! 32c of the digits, hex>`; one that does not read back stops the broker
//! from giving ids (`KAFKA_STORAGE_ERROR`) rather than risk giving one twice.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use actix::prelude::*;

use crate::broker::Broker;
use crate::error::{BrokerError, ErrorCode};

/// The file's name in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer_ids";
/// Ids reserved by one write of the file.
pub const BLOCK: i64 = 1000;

/// The broker's id allocator.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    /// The next id to give and the end of the reserved block; `None` until
    /// the file was read.
    range: Option<(i64, i64)>,
}

impl ProducerIds {
    /// The allocator of `data_dir`; the file is read at the first id.
    pub fn new(data_dir: &Path) -> Self {
        ProducerIds { path: data_dir.join(PRODUCER_IDS_FILE), range: None }
    }

    /// A new id. Blocking (a file write and two fsyncs) once per [`BLOCK`].
    ///
    /// # Errors
    ///
    /// The file cannot be read back or written: no id is given.
    pub fn allocate(&mut self) -> Result<i64, BrokerError> {
        let (next, end) = match self.range {
            Some(range) => range,
            None => {
                let stored = read(&self.path).map_err(|err| storage(&self.path, &err))?;
                (stored, stored)
            }
        };
        let end = if next < end {
            end
        } else {
            let end = next
                .checked_add(BLOCK)
                .ok_or_else(|| BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, "the producer ids are exhausted"))?;
            write(&self.path, end).map_err(|err| storage(&self.path, &err))?;
            end
        };
        self.range = Some((next + 1, end));
        Ok(next)
    }
}

fn storage(path: &Path, err: &io::Error) -> BrokerError {
    BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("producer ids ({}): {err}", path.display()))
}

fn line(next: i64) -> String {
    let digits = next.to_string();
    format!("next_producer_id {digits} crc {:08x}\n", crc32c::crc32c(digits.as_bytes()))
}

fn read(path: &Path) -> io::Result<i64> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let parsed = text.strip_suffix('\n').and_then(|body| {
        let mut words = body.split(' ');
        let (Some("next_producer_id"), Some(digits), Some("crc"), Some(crc), None) =
            (words.next(), words.next(), words.next(), words.next(), words.next())
        else {
            return None;
        };
        let next: i64 = digits.parse().ok()?;
        (u32::from_str_radix(crc, 16).ok()? == crc32c::crc32c(digits.as_bytes()) && next >= 0).then_some(next)
    });
    parsed.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the file does not read back; fix or restore it"))
}

fn write(path: &Path, next: i64) -> io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = fs::File::create(&temp)?;
    file.write_all(line(next).as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Gives a new idempotent producer id (`init_producer_id`).
#[derive(Message)]
#[rtype(result = "Result<i64, BrokerError>")]
pub struct InitProducerId;

impl Handler<InitProducerId> for Broker {
    type Result = Result<i64, BrokerError>;

    fn handle(&mut self, _: InitProducerId, _: &mut Context<Self>) -> Self::Result {
        self.producer_ids().allocate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_reopens_and_a_damaged_file_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = ProducerIds::new(dir.path());
        assert_eq!((ids.allocate().unwrap(), ids.allocate().unwrap()), (0, 1));
        let mut again = ProducerIds::new(dir.path());
        assert_eq!(again.allocate().unwrap(), BLOCK);
        for _ in 0..BLOCK {
            again.allocate().unwrap();
        }
        assert_eq!(ProducerIds::new(dir.path()).allocate().unwrap(), 3 * BLOCK);
        fs::write(dir.path().join(PRODUCER_IDS_FILE), "next_producer_id 5 crc 00000000\n").unwrap();
        let err = ProducerIds::new(dir.path()).allocate().unwrap_err();
        assert_eq!(err.code, ErrorCode::KAFKA_STORAGE_ERROR);
    }
}
