//! Snapshot files: the stitcher's state and the undelivered outbox, taken
//! at a WAL frontier (every record below it was applied before the
//! snapshot began, so it is covered). gzip'd JSON, written to a temporary
//! file, fsync'd, renamed, the directory fsync'd: a snapshot is whole or
//! absent. The newest readable one wins at start.

use crate::stitch::checkpoint::{ShardState, SpanState};
use crate::stitch::output::LogRecord;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxState {
    pub spans: Vec<SpanState>,
    pub logs: Vec<LogRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub version: u32,
    /// Every WAL record below this sequence number is covered.
    pub frontier: u64,
    /// Ledger generations before this one are covered too.
    pub ledger_generation: u64,
    pub created_ms: i64,
    pub shards: Vec<ShardState>,
    pub outbox: Vec<OutboxState>,
}

impl Snapshot {
    pub fn new(
        frontier: u64,
        ledger_generation: u64,
        created_ms: i64,
        shards: Vec<ShardState>,
        outbox: Vec<OutboxState>,
    ) -> Self {
        Self {
            version: VERSION,
            frontier,
            ledger_generation,
            created_ms,
            shards,
            outbox,
        }
    }
}

fn name(seq: u64) -> String {
    format!("{seq:020}.snap")
}

/// Snapshot files, oldest first (by their sequence number).
fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if let Some(n) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".snap"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, p));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes snapshot number `seq`; returns its size in bytes.
pub fn write(dir: &Path, seq: u64, snap: &Snapshot) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{}.tmp", name(seq)));
    {
        let f = File::create(&tmp)?;
        let mut gz = flate2::write::GzEncoder::new(BufWriter::new(f), flate2::Compression::fast());
        serde_json::to_writer(&mut gz, snap)?;
        let f = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
    }
    let dest = dir.join(name(seq));
    std::fs::rename(&tmp, &dest)?;
    File::open(dir)?.sync_all()?;
    Ok(std::fs::metadata(&dest)?.len())
}

/// The newest readable snapshot and its number; unreadable ones are
/// reported and skipped.
pub fn latest(dir: &Path) -> std::io::Result<Option<(u64, Snapshot)>> {
    if !dir.exists() {
        return Ok(None);
    }
    for (seq, path) in list(dir)?.into_iter().rev() {
        let read = File::open(&path).and_then(|f| {
            let gz = flate2::read::GzDecoder::new(BufReader::new(f));
            serde_json::from_reader::<_, Snapshot>(gz).map_err(std::io::Error::other)
        });
        match read {
            Ok(s) if s.version == VERSION => return Ok(Some((seq, s))),
            Ok(s) => {
                tracing::error!(path = %path.display(), version = s.version, "snapshot of an unknown version; skipped")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "unreadable snapshot; skipped")
            }
        }
    }
    Ok(None)
}

/// Deletes snapshots older than `seq` and leftover temporary files.
pub fn remove_before(dir: &Path, seq: u64) -> std::io::Result<()> {
    for (n, p) in list(dir)? {
        if n < seq {
            std::fs::remove_file(p)?;
        }
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "tmp") {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_readable_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = Snapshot::new(5, 1, 10, vec![ShardState::default()], vec![]);
        let b = Snapshot::new(9, 2, 20, vec![], vec![]);
        write(dir.path(), 1, &a).unwrap();
        write(dir.path(), 2, &b).unwrap();
        assert_eq!(latest(dir.path()).unwrap().unwrap(), (2, b));
        // A corrupt newest file falls back to the previous one.
        std::fs::write(dir.path().join(name(3)), b"not gzip").unwrap();
        assert_eq!(
            latest(dir.path()).unwrap().unwrap(),
            (2, latest(dir.path()).unwrap().unwrap().1)
        );
        remove_before(dir.path(), 2).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 2);
        let _ = a;
    }
}
