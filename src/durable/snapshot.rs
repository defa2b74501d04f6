//! Snapshot files: the stitcher's state and the undelivered outbox, taken
//! at a WAL frontier (every record below it was applied before the
//! snapshot began, so it is covered). gzip'd JSON, written to a temporary
//! file, fsync'd, renamed, the directory fsync'd: a snapshot is whole or
//! absent. The newest readable one wins at start.
//!
//! Written as a stream (`Writer`): executions as the shards hand them over,
//! then the outbox, so taking a snapshot never needs a second in-memory
//! copy of what the stitcher holds. The file is the `Snapshot` shape, with
//! every execution in one shard entry (recovery re-shards by ARN anyway).

use crate::stitch::checkpoint::{ExecState, ShardState, SpanState};
use crate::stitch::output::LogRecord;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
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

/// Where a snapshot stands; written first.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub frontier: u64,
    pub ledger_generation: u64,
    pub created_ms: i64,
}

/// Snapshot number `seq` being written. Dropped without `finish`, its
/// temporary file is removed: a snapshot is whole or absent.
pub struct Writer {
    dir: PathBuf,
    tmp: PathBuf,
    dest: PathBuf,
    gz: Option<flate2::write::GzEncoder<BufWriter<File>>>,
    /// A batch is serialized here and compressed in one call: serde_json
    /// writes token by token, and each small write into the encoder paid
    /// for a deflate call and a CRC (two thirds of a snapshot's time).
    buf: Vec<u8>,
    first: bool,
}

impl Writer {
    pub fn create(dir: &Path, seq: u64, h: Header) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{}.tmp", name(seq)));
        let f = File::create(&tmp)?;
        let mut w = Self {
            dir: dir.to_owned(),
            dest: dir.join(name(seq)),
            gz: Some(flate2::write::GzEncoder::new(
                BufWriter::new(f),
                flate2::Compression::fast(),
            )),
            tmp,
            buf: Vec::new(),
            first: true,
        };
        write!(
            w.out(),
            r#"{{"version":{VERSION},"frontier":{},"ledger_generation":{},"created_ms":{},"shards":[{{"execs":["#,
            h.frontier,
            h.ledger_generation,
            h.created_ms
        )?;
        Ok(w)
    }

    fn out(&mut self) -> &mut flate2::write::GzEncoder<BufWriter<File>> {
        self.gz.as_mut().expect("writer used after finish")
    }

    pub fn execs(&mut self, execs: &[ExecState]) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for e in execs {
            if !std::mem::take(&mut self.first) {
                buf.push(b',');
            }
            serde_json::to_writer(&mut buf, e)?;
        }
        let written = self.out().write_all(&buf);
        self.buf = buf;
        written
    }

    /// Writes the outbox, syncs and renames; returns the size in bytes.
    pub fn finish(mut self, outbox: &[OutboxState]) -> std::io::Result<u64> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(br#"]}],"outbox":"#);
        serde_json::to_writer(&mut buf, outbox)?;
        buf.push(b'}');
        self.out().write_all(&buf)?;
        let gz = self.gz.take().expect("finished once");
        let f = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&self.tmp, &self.dest)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(std::fs::metadata(&self.dest)?.len())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.gz.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes snapshot `seq` from executions as they arrive (until every
/// sender is gone), then the outbox; returns its size in bytes and the
/// number of executions. Blocking: runs on the writer's own thread.
pub fn write_streamed(
    dir: &Path,
    seq: u64,
    header: Header,
    mut execs: tokio::sync::mpsc::Receiver<Vec<ExecState>>,
    outbox: tokio::sync::oneshot::Receiver<Vec<OutboxState>>,
) -> std::io::Result<(u64, usize)> {
    let mut w = Writer::create(dir, seq, header)?;
    let mut n = 0;
    while let Some(batch) = execs.blocking_recv() {
        n += batch.len();
        w.execs(&batch)?;
    }
    let outbox = outbox
        .blocking_recv()
        .map_err(|_| std::io::Error::other("the stitcher stopped mid-snapshot"))?;
    Ok((w.finish(&outbox)?, n))
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

    /// The whole of `snap` through a `Writer` (its shards become one).
    fn write(dir: &Path, seq: u64, snap: &Snapshot) -> std::io::Result<u64> {
        let h = header(snap.frontier, snap.ledger_generation, snap.created_ms);
        let mut w = Writer::create(dir, seq, h)?;
        for s in &snap.shards {
            w.execs(&s.execs)?;
        }
        w.finish(&snap.outbox)
    }

    fn header(frontier: u64, ledger_generation: u64, created_ms: i64) -> Header {
        Header {
            frontier,
            ledger_generation,
            created_ms,
        }
    }

    fn exec(arn: &str) -> ExecState {
        ExecState {
            arn: arn.into(),
            attrs: vec![("k".into(), "v".into())],
            events: vec![r#"{"id":"1"}"#.into()],
            seen: vec![1],
            pruned: vec![],
            emitted: vec![],
            context: None,
            finalized: false,
            final_pending: true,
            idle_ms: 5,
            dirty: true,
        }
    }

    #[test]
    fn a_streamed_snapshot_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let h = header(7, 3, 99);
        let mut w = Writer::create(dir.path(), 1, h).unwrap();
        w.execs(&[exec("a"), exec("b")]).unwrap();
        w.execs(&[]).unwrap();
        w.execs(&[exec("c")]).unwrap();
        let outbox = vec![OutboxState {
            spans: vec![],
            logs: vec![],
        }];
        w.finish(&outbox).unwrap();
        let (seq, snap) = latest(dir.path()).unwrap().unwrap();
        assert_eq!(seq, 1);
        let execs = vec![exec("a"), exec("b"), exec("c")];
        assert_eq!(
            snap,
            Snapshot::new(7, 3, 99, vec![ShardState { execs }], outbox)
        );
    }

    #[test]
    fn an_unfinished_snapshot_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let h = header(1, 1, 1);
        let mut w = Writer::create(dir.path(), 4, h).unwrap();
        w.execs(&[exec("a")]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(latest(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_stream_cut_off_before_the_outbox_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let h = header(2, 1, 1);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (otx, orx) = tokio::sync::oneshot::channel();
        tx.try_send(vec![exec("a"), exec("b")]).unwrap();
        drop(tx);
        drop(otx);
        assert!(write_streamed(dir.path(), 1, h, rx, orx).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Whole when the outbox comes.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (otx, orx) = tokio::sync::oneshot::channel();
        tx.try_send(vec![exec("a"), exec("b")]).unwrap();
        drop(tx);
        otx.send(vec![]).unwrap();
        let (_, n) = write_streamed(dir.path(), 2, h, rx, orx).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            latest(dir.path()).unwrap().unwrap().1.shards[0].execs.len(),
            2
        );
    }

    #[test]
    fn newest_readable_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = Snapshot::new(5, 1, 10, vec![ShardState::default()], vec![]);
        let b = Snapshot::new(9, 2, 20, vec![ShardState::default()], vec![]);
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
