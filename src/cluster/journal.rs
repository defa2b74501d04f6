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
//! Frame: `len u32 | partition u32 | record | crc32` (little endian; `len`
//! counts partition and record). A torn last frame (killed mid-write) is
//! ignored. The file is emptied whenever every record queued is stored.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Larger frames are corrupt (a record is one receipt's ids).
const MAX_FRAME: usize = 64 << 20;

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Leftover {
    pub records: Vec<(u32, Vec<u8>)>,
    /// Bytes after the last whole frame (a write cut short).
    pub torn_bytes: usize,
}

impl Journal {
    /// Opens (or creates) the journal and reads what an earlier process
    /// left in it.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Leftover)> {
        let mut data = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut data)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let left = read_frames(&data);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok((
            Journal {
                path: path.to_owned(),
                file,
            },
            left,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record in one write.
    pub fn append(&mut self, partition: u32, rec: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(12 + rec.len());
        frame.extend_from_slice(&((4 + rec.len()) as u32).to_le_bytes());
        frame.extend_from_slice(&partition.to_le_bytes());
        frame.extend_from_slice(rec);
        let crc = crc32fast::hash(&frame[4..]);
        frame.extend_from_slice(&crc.to_le_bytes());
        self.file.write_all(&frame)
    }

    /// Forgets everything (all of it is stored in NATS).
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)
    }
}

fn read_frames(data: &[u8]) -> Leftover {
    let mut out = Leftover::default();
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
        out.records.push((partition, body[4..].to_vec()));
        at = end;
    }
    out.torn_bytes = data.len() - at;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, left) = Journal::open(&path).unwrap();
        assert!(left.records.is_empty());
        j.append(3, b"abc").unwrap();
        j.append(7, &[0u8; 10]).unwrap();
        drop(j);
        // A third frame cut short by a kill.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&20u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let (mut j, left) = Journal::open(&path).unwrap();
        assert_eq!(left.records, vec![(3, b"abc".to_vec()), (7, vec![0u8; 10])]);
        assert_eq!(left.torn_bytes, 7);
        // Cleared once stored: the next start finds nothing.
        j.clear().unwrap();
        j.append(1, b"z").unwrap();
        drop(j);
        let (_, left) = Journal::open(&path).unwrap();
        assert_eq!(left.records, vec![(1, b"z".to_vec())]);
        assert_eq!(left.torn_bytes, 0);
    }

    #[test]
    fn a_damaged_frame_ends_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(1, b"one").unwrap();
        j.append(2, b"two").unwrap();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 0xff; // inside the second record
        std::fs::write(&path, &bytes).unwrap();
        let (_, left) = Journal::open(&path).unwrap();
        assert_eq!(left.records, vec![(1, b"one".to_vec())]);
        assert!(left.torn_bytes > 0);
    }
}
