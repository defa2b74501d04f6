//! The write-ahead log: what a Firehose request carried is on disk, fsync'd,
//! before the 200 goes out. One writer thread owns the files; requests
//! queue for it and share one `fdatasync` per group (group commit), so
//! concurrent requests cost one sync, not one each.
//!
//! Layout: `wal/{first seq:020}.seg`, records appended:
//! `magic u32 | len u32 | crc32 u32 | seq u64 | payload[len]`, little endian,
//! the CRC over `seq | payload`. A torn tail (crash mid-write) fails its
//! length or CRC check; recovery keeps what precedes it and truncates.

use super::pins::{Pin, Pins};
use crate::telemetry::names;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

const MAGIC: u32 = 0x5353_5731; // "SSW1"
const HEADER: usize = 4 + 4 + 4 + 8;
/// Records a group commit takes at most (and bytes), so one sync's latency stays bounded.
const GROUP_MAX_RECORDS: usize = 512;
const GROUP_MAX_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("the data directory is over its bound ({used} of {max} bytes in use)")]
    Full { used: u64, max: u64 },
    #[error("writing the write-ahead log failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the write-ahead log is closed")]
    Closed,
}

impl WalError {
    /// A metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            WalError::Full { .. } => "disk_bound",
            WalError::Io(e) if e.raw_os_error() == Some(28) => "disk_full",
            WalError::Io(_) => "io",
            WalError::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    /// The bound on log bytes on disk; past it appends fail with `Full`.
    pub max_bytes: u64,
    /// Off only for benchmarks that measure the cost of syncing.
    pub fsync: bool,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
}

#[derive(Debug)]
struct Shared {
    segments: Mutex<Vec<Segment>>,
    bytes: AtomicU64,
}

/// A record's bytes in two parts, written back to back: the request body
/// is shared with the request, not copied into a fresh buffer per request.
#[derive(Debug, Default)]
pub struct WalPayload {
    pub head: Vec<u8>,
    pub body: bytes::Bytes,
}

impl WalPayload {
    fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

impl From<Vec<u8>> for WalPayload {
    fn from(head: Vec<u8>) -> Self {
        Self {
            head,
            body: bytes::Bytes::new(),
        }
    }
}

type Job = (WalPayload, oneshot::Sender<Result<Pin, WalError>>);

/// Cheap to clone; appends go to the writer thread.
#[derive(Debug, Clone)]
pub struct Wal {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    pins: Arc<Pins>,
    max_bytes: u64,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

fn encode(seq: u64, payload: &WalPayload, out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(&payload.head);
    crc.update(&payload.body);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&payload.head);
    out.extend_from_slice(&payload.body);
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct SegmentRead {
    pub records: Vec<(u64, Vec<u8>)>,
    /// Bytes after the last good record (a torn or corrupt tail).
    pub bad_tail_bytes: u64,
    pub good_len: u64,
}

pub fn read_segment(path: &Path) -> std::io::Result<SegmentRead> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = SegmentRead::default();
    let mut at = 0usize;
    while data.len() - at >= HEADER {
        let word = |o: usize| u32::from_le_bytes(data[at + o..at + o + 4].try_into().unwrap());
        let (magic, len, crc) = (word(0), word(4) as usize, word(8));
        let seq = u64::from_le_bytes(data[at + 12..at + 20].try_into().unwrap());
        if magic != MAGIC || data.len() - at - HEADER < len {
            break;
        }
        let payload = &data[at + HEADER..at + HEADER + len];
        let mut h = crc32fast::Hasher::new();
        h.update(&seq.to_le_bytes());
        h.update(payload);
        if h.finalize() != crc {
            break;
        }
        out.records.push((seq, payload.to_vec()));
        at += HEADER + len;
    }
    out.good_len = at as u64;
    out.bad_tail_bytes = (data.len() - at) as u64;
    Ok(out)
}

/// The segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(num) = name.strip_suffix(".seg") {
            if let Ok(first) = num.parse::<u64>() {
                out.push((first, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the log for appending after recovery read it: `next_seq` is
    /// one past the last record kept.
    pub fn open(cfg: WalConfig, next_seq: u64) -> Result<(Self, Arc<Pins>), WalError> {
        std::fs::create_dir_all(&cfg.dir)?;
        let mut segments = Vec::new();
        let mut bytes = 0;
        for (first_seq, path) in list_segments(&cfg.dir)? {
            let len = std::fs::metadata(&path)?.len();
            bytes += len;
            segments.push(Segment {
                first_seq,
                path,
                bytes: len,
            });
        }
        let shared = Arc::new(Shared {
            segments: Mutex::new(segments),
            bytes: AtomicU64::new(bytes),
        });
        let pins = Pins::new(next_seq);
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let writer = Writer {
            cfg: cfg.clone(),
            shared: shared.clone(),
            pins: pins.clone(),
            file: None,
        };
        std::thread::Builder::new()
            .name("stepstitch-wal".into())
            .spawn(move || writer.run(rx))?;
        metrics::gauge!(names::WAL_BYTES).set(bytes as f64);
        Ok((
            Self {
                tx,
                shared,
                pins: pins.clone(),
                max_bytes: cfg.max_bytes,
            },
            pins,
        ))
    }

    /// Appends a record; returns once it is durable, with its pin.
    pub async fn append(&self, payload: impl Into<WalPayload>) -> Result<Pin, WalError> {
        let payload = payload.into();
        let used = self.bytes();
        if used + payload.len() as u64 + HEADER as u64 > self.max_bytes {
            return Err(WalError::Full {
                used,
                max: self.max_bytes,
            });
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((payload, tx))
            .await
            .map_err(|_| WalError::Closed)?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    pub fn pins(&self) -> &Arc<Pins> {
        &self.pins
    }

    /// Deletes every closed segment whose records are all below `frontier`.
    /// Returns the bytes freed.
    pub fn reclaim(&self, frontier: u64) -> std::io::Result<u64> {
        let mut segs = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut freed = 0;
        // A segment ends where the next begins; the last one is open.
        while segs.len() > 1 && segs[1].first_seq <= frontier {
            let s = segs.remove(0);
            std::fs::remove_file(&s.path)?;
            freed += s.bytes;
            self.shared.bytes.fetch_sub(s.bytes, Ordering::Relaxed);
        }
        metrics::gauge!(names::WAL_BYTES).set(self.bytes() as f64);
        Ok(freed)
    }

    pub fn segment_count(&self) -> usize {
        self.shared.segments.lock().map(|s| s.len()).unwrap_or(0)
    }
}

struct Writer {
    cfg: WalConfig,
    shared: Arc<Shared>,
    pins: Arc<Pins>,
    file: Option<File>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut buf = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            let mut bytes = group[0].0.len();
            while group.len() < GROUP_MAX_RECORDS && bytes < GROUP_MAX_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job.0.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            match self.commit(&mut group, &mut buf) {
                Ok(pins) => {
                    metrics::histogram!(names::WAL_COMMIT_DURATION)
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!(names::WAL_GROUP_RECORDS).record(group.len() as f64);
                    for ((_, reply), pin) in group.into_iter().zip(pins) {
                        let _ = reply.send(Ok(pin));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, records = group.len(), "write-ahead log append failed");
                    let kind = e.kind();
                    let raw = e.raw_os_error();
                    for (_, reply) in group {
                        let err = match raw {
                            Some(code) => std::io::Error::from_raw_os_error(code),
                            None => std::io::Error::new(kind, e.to_string()),
                        };
                        let _ = reply.send(Err(WalError::Io(err)));
                    }
                }
            }
        }
    }

    /// Writes the group and syncs once; on failure the segment is cut back
    /// to where the group began, so no half record stays behind.
    fn commit(&mut self, group: &mut [Job], buf: &mut Vec<u8>) -> std::io::Result<Vec<Pin>> {
        let mut pins = Vec::with_capacity(group.len());
        let mut rotated = false;
        // Rotate before the group if the open segment is full.
        let need: u64 = group.iter().map(|j| (j.0.len() + HEADER) as u64).sum();
        let open_bytes = {
            let segs = self
                .shared
                .segments
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            segs.last().map(|s| s.bytes)
        };
        if self.file.is_none()
            || open_bytes.is_none_or(|b| b > 0 && b + need > self.cfg.segment_bytes)
        {
            let first = self.pins.next();
            let path = segment_path(&self.cfg.dir, first);
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let existing = file.metadata()?.len();
            self.file = Some(file);
            let mut segs = self
                .shared
                .segments
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if segs.last().map(|s| &s.path) != Some(&path) {
                segs.push(Segment {
                    first_seq: first,
                    path,
                    bytes: existing,
                });
                rotated = true;
            }
        }
        buf.clear();
        for (payload, _) in group.iter() {
            let pin = self.pins.assign();
            encode(pin.seq(), payload, buf);
            pins.push(pin);
        }
        let file = self.file.as_mut().expect("open segment");
        let before = file.metadata()?.len();
        let res = file.write_all(buf).and_then(|_| {
            if self.cfg.fsync {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            let _ = file.set_len(before);
            return Err(e);
        }
        if rotated && self.cfg.fsync {
            sync_dir(&self.cfg.dir)?;
        }
        let mut segs = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(s) = segs.last_mut() {
            s.bytes += buf.len() as u64;
        }
        let total = self
            .shared
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed)
            + buf.len() as u64;
        metrics::gauge!(names::WAL_BYTES).set(total as f64);
        metrics::counter!(names::WAL_APPENDED_BYTES).increment(buf.len() as u64);
        Ok(pins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, segment_bytes: u64) -> WalConfig {
        WalConfig {
            dir: dir.to_path_buf(),
            segment_bytes,
            max_bytes: 1 << 30,
            fsync: true,
        }
    }

    fn read_all(dir: &Path) -> Vec<(u64, Vec<u8>)> {
        list_segments(dir)
            .unwrap()
            .into_iter()
            .flat_map(|(_, p)| read_segment(&p).unwrap().records)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_durable_in_order_and_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _pins) = Wal::open(cfg(dir.path(), 4096), 1).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let pin = wal.append(i.to_le_bytes().repeat(20)).await.unwrap();
                pin.seq()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        let recs = read_all(dir.path());
        assert_eq!(recs.len(), 200);
        assert!(recs.windows(2).all(|w| w[0].0 < w[1].0));
        // A group goes into one segment; groups rotate at 4 KiB.
        for _ in 0..10 {
            drop(wal.append(vec![1; 1000]).await.unwrap());
        }
        assert!(wal.segment_count() > 1, "rotated at 4 KiB");
        assert_eq!(
            wal.bytes(),
            list_segments(dir.path())
                .unwrap()
                .iter()
                .map(|(_, p)| std::fs::metadata(p).unwrap().len())
                .sum::<u64>()
        );
    }

    #[tokio::test]
    async fn a_torn_tail_keeps_what_precedes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _p) = Wal::open(cfg(dir.path(), 1 << 20), 1).unwrap();
        for i in 0..5u8 {
            drop(wal.append(vec![i; 100]).await.unwrap());
        }
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        // Half of the last record gone, then garbage.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 50).unwrap();
        drop(f);
        let r = read_segment(&path).unwrap();
        assert_eq!(r.records.len(), 4);
        assert_eq!(r.bad_tail_bytes, 120 - 50);
        // A flipped byte inside a record stops reading there.
        let mut data = std::fs::read(&path).unwrap();
        data[HEADER + 100 + HEADER + 10] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let r = read_segment(&path).unwrap();
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records[0], (1, vec![0u8; 100]));
    }

    #[tokio::test]
    async fn over_the_bound_is_refused_and_reclaim_frees_closed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), 1000);
        c.max_bytes = 5000;
        let (wal, pins) = Wal::open(c, 1).unwrap();
        let mut last = 0;
        loop {
            match wal.append(vec![7; 400]).await {
                Ok(p) => last = p.seq(),
                Err(WalError::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(wal.bytes() <= 5000);
        assert!(last >= 10);
        let before = wal.segment_count();
        let freed = wal.reclaim(pins.frontier()).unwrap();
        assert!(freed > 0);
        assert_eq!(
            wal.segment_count(),
            1,
            "all but the open segment (of {before})"
        );
        wal.append(vec![7; 400]).await.unwrap();
    }
}
