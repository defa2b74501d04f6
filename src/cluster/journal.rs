//! A replica's local journal of export acknowledgements not yet stored
//! on the acknowledgements stream (`cluster::acks`).
//!
//! An acknowledgement reaches NATS a network round trip after its items
//! were delivered; a replica killed in between would leave the next owner
//! to send those items again. The journal closes that window for the
//! common crash, a process killed and started again on the same data
//! directory (a container restart in its pod): each record is written
//! here with `write(2)` in the same call that acknowledges it (the page
//! cache survives the process, as for the single-process ledger), and
//! the next start publishes what it finds before it heartbeats or opens
//! a partition. A replica that never comes back still leaves that window
//! (docs/cluster.md, "at least once").
//!
//! Files `{generation:020}.journal` in one directory; a file is sealed
//! once it passes `ROTATE_BYTES` and deleted once every record in it is
//! stored (records are numbered in queue order, so "stored" is a count),
//! and the current one is emptied whenever everything queued is stored:
//! the journal stays small under steady traffic, where "everything
//! stored" may never happen at one instant.
//!
//! Frame: `len u32 | partition u32 | record | crc32` (little endian; `len`
//! counts partition and record). A torn last frame (killed mid-write) is
//! ignored.

use crate::durable::numbered;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Larger frames are corrupt (a record is one receipt's ids).
const MAX_FRAME: usize = 64 << 20;
/// A file is sealed past this size.
const ROTATE_BYTES: u64 = 4 << 20;

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    generation: u64,
    file: File,
    bytes: u64,
    /// Sealed files: generation, and the count of records queued when it
    /// was sealed (it can go once that many are stored).
    sealed: VecDeque<(u64, u64)>,
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Leftover {
    pub records: Vec<(u32, Vec<u8>)>,
    /// Bytes after the last whole frame of a file (a write cut short).
    pub torn_bytes: usize,
}

fn file_of(dir: &Path, generation: u64) -> PathBuf {
    numbered::file(dir, generation, "journal")
}

fn generations(dir: &Path) -> std::io::Result<Vec<u64>> {
    numbered::list(dir, "journal")
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads what an earlier
    /// process left in it; those files go once as many records as it
    /// found are stored (they are queued first).
    pub fn open(dir: &Path) -> std::io::Result<(Journal, Leftover)> {
        std::fs::create_dir_all(dir)?;
        let old = generations(dir)?;
        let mut left = Leftover::default();
        for g in &old {
            let mut data = Vec::new();
            File::open(file_of(dir, *g))?.read_to_end(&mut data)?;
            left.torn_bytes += read_frames(&data, &mut left.records);
        }
        let n = left.records.len() as u64;
        let generation = old.last().map_or(0, |g| g + 1);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file_of(dir, generation))?;
        Ok((
            Journal {
                dir: dir.to_owned(),
                generation,
                file,
                bytes: 0,
                sealed: old.into_iter().map(|g| (g, n)).collect(),
            },
            left,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record in one write; `queued` counts it.
    pub fn append(&mut self, partition: u32, rec: &[u8], queued: u64) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(12 + rec.len());
        frame.extend_from_slice(&((4 + rec.len()) as u32).to_le_bytes());
        frame.extend_from_slice(&partition.to_le_bytes());
        frame.extend_from_slice(rec);
        let crc = crc32fast::hash(&frame[4..]);
        frame.extend_from_slice(&crc.to_le_bytes());
        self.file.write_all(&frame)?;
        self.bytes += frame.len() as u64;
        if self.bytes >= ROTATE_BYTES {
            let next = self.generation + 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(file_of(&self.dir, next))?;
            self.sealed.push_back((self.generation, queued));
            self.generation = next;
            self.file = file;
            self.bytes = 0;
        }
        Ok(())
    }

    /// `stored` of the `queued` records are in NATS: what they cover goes.
    pub fn stored(&mut self, stored: u64, queued: u64) -> std::io::Result<()> {
        while let Some(&(g, upto)) = self.sealed.front() {
            if upto > stored {
                break;
            }
            match std::fs::remove_file(file_of(&self.dir, g)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.sealed.pop_front();
        }
        if stored >= queued && self.bytes > 0 {
            self.file.set_len(0)?;
            self.bytes = 0;
        }
        Ok(())
    }

    /// Bytes the journal holds on disk.
    #[cfg(test)]
    fn disk_bytes(&self) -> u64 {
        generations(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| std::fs::metadata(file_of(&self.dir, g)).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Adds a file's whole frames to `out`; returns the bytes left after them.
fn read_frames(data: &[u8], out: &mut Vec<(u32, Vec<u8>)>) -> usize {
    let mut at = 0;
    while data.len() - at >= 4 {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap_or_default()) as usize;
        let end = at + 4 + len + 4;
        if !(4..=MAX_FRAME).contains(&len) || end > data.len() {
            break;
        }
        let body = &data[at + 4..at + 4 + len];
        let crc = u32::from_le_bytes(data[end - 4..end].try_into().unwrap_or_default());
        if crc32fast::hash(body) != crc {
            break;
        }
        let partition = u32::from_le_bytes(body[..4].try_into().unwrap_or_default());
        out.push((partition, body[4..].to_vec()));
        at = end;
    }
    data.len() - at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, left) = Journal::open(dir.path()).unwrap();
        assert!(left.records.is_empty());
        j.append(3, b"abc", 1).unwrap();
        j.append(7, &[0u8; 10], 2).unwrap();
        let current = file_of(dir.path(), j.generation);
        drop(j);
        // A third frame cut short by a kill.
        let mut bytes = std::fs::read(&current).unwrap();
        bytes.extend_from_slice(&20u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&current, &bytes).unwrap();
        let (mut j, left) = Journal::open(dir.path()).unwrap();
        assert_eq!(left.records, vec![(3, b"abc".to_vec()), (7, vec![0u8; 10])]);
        assert_eq!(left.torn_bytes, 7);
        // New records go to a new file; once the two found and the new
        // one are stored, nothing is left.
        j.append(1, b"z", 3).unwrap();
        j.stored(2, 3).unwrap();
        assert!(!current.exists(), "the old file covers records 1 and 2");
        drop(j);
        let (mut j, left) = Journal::open(dir.path()).unwrap();
        assert_eq!(left.records, vec![(1, b"z".to_vec())]);
        j.stored(1, 1).unwrap();
        assert_eq!(j.disk_bytes(), 0);
        drop(j);
        let (_, left) = Journal::open(dir.path()).unwrap();
        assert!(left.records.is_empty());
    }

    #[test]
    fn steady_traffic_rotates_and_stored_files_go() {
        // Never "all stored" at one instant: records keep coming while
        // earlier ones are stored, yet the journal stays bounded.
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let rec = vec![7u8; 1000];
        let mut queued = 0;
        for _ in 0..20_000 {
            queued += 1;
            j.append(0, &rec, queued).unwrap();
            // Stored lags queued by 100 records.
            j.stored(queued.saturating_sub(100), queued).unwrap();
        }
        assert!(
            j.disk_bytes() <= 2 * ROTATE_BYTES,
            "journal grew to {} bytes",
            j.disk_bytes()
        );
        // What is not stored yet is all still there.
        drop(j);
        let (_, left) = Journal::open(dir.path()).unwrap();
        assert!(left.records.len() >= 100);
    }

    #[test]
    fn a_damaged_frame_ends_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(1, b"one", 1).unwrap();
        j.append(2, b"two", 2).unwrap();
        let current = file_of(dir.path(), j.generation);
        drop(j);
        let mut bytes = std::fs::read(&current).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 0xff; // inside the second record
        std::fs::write(&current, &bytes).unwrap();
        let (_, left) = Journal::open(dir.path()).unwrap();
        assert_eq!(left.records, vec![(1, b"one".to_vec())]);
        assert!(left.torn_bytes > 0);
    }
}
