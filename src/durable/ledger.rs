//! What each exporter has acknowledged since the last snapshot, so that
//! after a crash the spans and logs rebuilt by replaying the log are not
//! sent again. Append-only files `ledger/{generation:020}.ldg`, one per
//! snapshot interval; a generation is deleted once a snapshot taken after
//! it began is durable (the snapshot's `emitted` sets cover it).
//!
//! Record: `exporter u8 | signal u8 | count u32 | ids u64[count] | crc32`.
//! Written with `write(2)` right after the acknowledgement and without
//! fsync: a process crash keeps it (page cache); a power loss may lose the
//! last writes and re-send those items once (at-least-once).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Which signal an acknowledgement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Signal {
    Spans = 0,
    Logs = 1,
}

/// Ids acknowledged per (exporter index, signal), loaded at start.
pub type Delivered = HashMap<(u8, Signal), HashSet<u64>>;

/// Where acknowledgements are written: this ledger in single-process
/// mode, a per-partition log on JetStream in cluster mode (`shard` is the
/// emitting shard, or the partition).
pub trait AckLog: Send + Sync + std::fmt::Debug {
    fn acknowledge(&self, shard: usize, exporter: u8, signal: Signal, ids: &[u64]);
}

impl AckLog for Ledger {
    fn acknowledge(&self, _shard: usize, exporter: u8, signal: Signal, ids: &[u64]) {
        self.record(exporter, signal, ids);
    }
}

#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    file: Mutex<(u64, File)>,
}

fn path(dir: &Path, generation: u64) -> PathBuf {
    super::numbered::file(dir, generation, "ldg")
}

fn generations(dir: &Path) -> std::io::Result<Vec<u64>> {
    super::numbered::list(dir, "ldg")
}

/// Reads every record of a ledger file; stops at a torn one.
fn read(path: &Path, into: &mut Delivered) -> std::io::Result<()> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut at = 0;
    while data.len() - at >= 6 {
        let exporter = data[at];
        let signal = match data[at + 1] {
            0 => Signal::Spans,
            1 => Signal::Logs,
            _ => break,
        };
        let n = u32::from_le_bytes(data[at + 2..at + 6].try_into().unwrap()) as usize;
        let end = at + 6 + n * 8 + 4;
        if end > data.len() {
            break;
        }
        let crc = u32::from_le_bytes(data[end - 4..end].try_into().unwrap());
        if crc32fast::hash(&data[at..end - 4]) != crc {
            break;
        }
        let set = into.entry((exporter, signal)).or_default();
        for i in 0..n {
            let o = at + 6 + i * 8;
            set.insert(u64::from_le_bytes(data[o..o + 8].try_into().unwrap()));
        }
        at = end;
    }
    Ok(())
}

impl Ledger {
    /// Loads what every generation holds and starts a new one.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Delivered)> {
        std::fs::create_dir_all(dir)?;
        let mut delivered = Delivered::new();
        let gens = generations(dir)?;
        for g in &gens {
            read(&path(dir, *g), &mut delivered)?;
        }
        let next = gens.last().map_or(1, |g| g + 1);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path(dir, next))?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                file: Mutex::new((next, file)),
            },
            delivered,
        ))
    }

    /// Appends an acknowledgement.
    pub fn record(&self, exporter: u8, signal: Signal, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let mut rec = Vec::with_capacity(10 + ids.len() * 8);
        rec.push(exporter);
        rec.push(signal as u8);
        rec.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            rec.extend_from_slice(&id.to_le_bytes());
        }
        let crc = crc32fast::hash(&rec);
        rec.extend_from_slice(&crc.to_le_bytes());
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.1.write_all(&rec) {
            // Worst case: these items are sent once more after a crash.
            tracing::error!(error = %e, "cannot record an export acknowledgement");
        }
    }

    /// Starts a new generation; returns its number. Acknowledgements from
    /// here on belong to the next snapshot's interval.
    pub fn rotate(&self) -> std::io::Result<u64> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let next = f.0 + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path(&self.dir, next))?;
        let _ = f.1.sync_data();
        *f = (next, file);
        Ok(next)
    }

    /// Deletes the generations before `generation`.
    pub fn remove_before(&self, generation: u64) -> std::io::Result<()> {
        for g in generations(&self.dir)? {
            if g < generation {
                std::fs::remove_file(path(&self.dir, g))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_survive_a_reopen_and_torn_records_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (l, d) = Ledger::open(dir.path()).unwrap();
        assert!(d.is_empty());
        l.record(0, Signal::Spans, &[1, 2, 3]);
        l.record(1, Signal::Logs, &[9]);
        let g = l.rotate().unwrap();
        l.record(0, Signal::Spans, &[4]);
        drop(l);
        // A torn record at the end of the last generation.
        let mut f = OpenOptions::new()
            .append(true)
            .open(path(dir.path(), g))
            .unwrap();
        f.write_all(&[0, 0, 5, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (l, d) = Ledger::open(dir.path()).unwrap();
        assert_eq!(d[&(0, Signal::Spans)], HashSet::from([1, 2, 3, 4]));
        assert_eq!(d[&(1, Signal::Logs)], HashSet::from([9]));
        l.remove_before(g).unwrap();
        drop(l);
        let (_, d) = Ledger::open(dir.path()).unwrap();
        assert_eq!(d[&(0, Signal::Spans)], HashSet::from([4]));
    }
}
