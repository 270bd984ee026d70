//! `herald scrub`: check every batch of every log in a data directory (CRC,
//! records, offsets) without changing anything, print each damaged range, and
//! exit 1 if there is one. Safe while a broker runs on the directory: it only
//! reads (a tail being written may then show as damaged).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use herald::config::Settings;
use herald_actors::group::store::group_id_of;
use herald_actors::partition::scrub::{check_data_dir, LogCheck};

use super::CliResult;

#[derive(Args, Debug)]
pub struct ScrubArgs {
    /// A TOML settings file, for storage.data_dir.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data directory to check (storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(args: ScrubArgs) -> CliResult {
    let flags: Vec<(&str, String)> =
        args.data_dir.iter().map(|dir| ("storage.data_dir", dir.display().to_string())).collect();
    let data_dir = Settings::load(args.config.as_deref(), &flags)?.storage.data_dir;
    if !data_dir.is_dir() {
        return Err(format!("{} is not a directory", data_dir.display()).into());
    }
    let started = Instant::now();
    let checks = check_data_dir(&data_dir)?;
    let mut damaged = 0;
    for check in &checks {
        for span in &check.damage {
            damaged += 1;
            println!(
                "{}: offsets {} to {} damaged ({} bytes at {} of segment {:020}.log): {}",
                name(&data_dir, check),
                span.first_offset,
                span.next_offset - 1,
                span.bytes,
                span.position,
                span.segment_base,
                span.reason,
            );
        }
    }
    let segments: usize = checks.iter().map(|c| c.segments).sum();
    let bytes: u64 = checks.iter().map(|c| c.bytes).sum();
    println!(
        "checked {} logs, {segments} segments, {bytes} bytes in {:.1} s: {damaged} damaged ranges",
        checks.len(),
        started.elapsed().as_secs_f64()
    );
    if damaged > 0 {
        return Err(format!("{damaged} damaged ranges in {}", data_dir.display()).into());
    }
    Ok(())
}

/// The log's path inside the data directory, with the group id of a group's log.
fn name(data_dir: &Path, check: &LogCheck) -> String {
    let relative = check.dir.strip_prefix(data_dir).unwrap_or(&check.dir);
    let group = relative
        .strip_prefix("groups")
        .ok()
        .and_then(|rest| rest.to_str())
        .and_then(group_id_of)
        .map(|id| format!(" (group `{id}`)"))
        .unwrap_or_default();
    format!("{}{group}", relative.display())
}
