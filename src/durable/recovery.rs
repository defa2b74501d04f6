//! Start-up: read the newest snapshot, repair the log's tail, restore the
//! stitcher and the outbox, replay what the log holds past the snapshot's
//! frontier — all before `/ready` turns true and Firehose traffic is taken.

use super::pins::Pins;
use super::record::RequestRecord;
use super::snapshot::{self, Snapshot};
use super::wal::{list_segments, read_segment};
use crate::decode::body::decode_body;
use crate::decode::BodyLimits;
use crate::events::StreamParams;
use crate::stitch::output::{Emission, StitchOut};
use crate::stitch::{Guard, StitcherHandle};
use crate::telemetry::names;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where the durable state lives under `STEPSTITCH_DATA_DIR`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub wal: PathBuf,
    pub snapshots: PathBuf,
    pub ledger: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            wal: data_dir.join("wal"),
            snapshots: data_dir.join("snapshots"),
            ledger: data_dir.join("ledger"),
        }
    }
}

#[derive(Debug)]
pub struct Scan {
    pub snapshot: Option<(u64, Snapshot)>,
    /// The sequence number the log continues with.
    pub next_seq: u64,
    pub dropped_tail_bytes: u64,
}

/// Reads the newest snapshot and repairs the log's last segment: a torn
/// record there (a crash mid-write) is cut off, and said so.
pub fn scan(paths: &Paths) -> std::io::Result<Scan> {
    std::fs::create_dir_all(&paths.wal)?;
    let snapshot = snapshot::latest(&paths.snapshots)?;
    let mut next_seq = snapshot.as_ref().map_or(1, |(_, s)| s.frontier.max(1));
    let mut dropped = 0;
    if let Some((first, path)) = list_segments(&paths.wal)?.pop() {
        let r = read_segment(&path)?;
        if r.bad_tail_bytes > 0 {
            dropped = r.bad_tail_bytes;
            tracing::warn!(
                segment = %path.display(),
                kept_records = r.records.len(),
                dropped_bytes = r.bad_tail_bytes,
                "write-ahead log: cut a torn or corrupt tail (a crash mid-write); everything before it is kept"
            );
            metrics::counter!(names::RECOVERY_DROPPED_BYTES).increment(r.bad_tail_bytes);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(r.good_len)?;
        }
        let last = r.records.last().map_or(first, |(s, _)| s + 1);
        next_seq = next_seq.max(last).max(first);
    }
    Ok(Scan {
        snapshot,
        next_seq,
        dropped_tail_bytes: dropped,
    })
}

/// Restores the snapshot, re-queues its outbox, replays the log past its
/// frontier. Returns the records replayed.
pub async fn replay(
    paths: &Paths,
    snapshot: Option<Snapshot>,
    stitcher: &StitcherHandle,
    out: &mpsc::Sender<StitchOut>,
    pins: &Arc<Pins>,
    limits: BodyLimits,
) -> anyhow::Result<u64> {
    let mut frontier = 0;
    if let Some(s) = snapshot {
        frontier = s.frontier;
        let execs = s.shards.into_iter().flat_map(|sh| sh.execs).collect();
        stitcher
            .restore(execs)
            .await
            .map_err(|_| anyhow::anyhow!("stitcher stopped during recovery"))?;
        for o in s.outbox {
            let em = Emission {
                shard: 0,
                spans: o.spans.into_iter().map(Into::into).collect(),
                metrics: Vec::new(),
                metric_owners: Vec::new(),
                logs: o.logs,
            };
            out.send(StitchOut::Emission(em))
                .await
                .map_err(|_| anyhow::anyhow!("exporters stopped during recovery"))?;
        }
    }
    let segments = list_segments(&paths.wal)?;
    let mut replayed = 0u64;
    for (i, (_, path)) in segments.iter().enumerate() {
        // Wholly below the frontier: covered by the snapshot.
        if segments
            .get(i + 1)
            .is_some_and(|(next, _)| *next <= frontier)
        {
            continue;
        }
        let r = read_segment(path)?;
        if r.bad_tail_bytes > 0 {
            tracing::error!(segment = %path.display(), dropped_bytes = r.bad_tail_bytes, "write-ahead log: corrupt data inside a segment; records after it in this segment are lost");
            metrics::counter!(names::RECOVERY_DROPPED_BYTES).increment(r.bad_tail_bytes);
        }
        for (seq, payload) in r.records {
            if seq < frontier {
                continue;
            }
            let rec = match RequestRecord::decode(&payload) {
                Ok(rec) => rec,
                Err(e) => {
                    tracing::error!(seq, error = %e, "write-ahead log: skipping an unreadable record");
                    continue;
                }
            };
            let attrs: Vec<(String, String)> =
                serde_json::from_slice(&rec.attributes).unwrap_or_default();
            let attrs = Arc::new(StreamParams::from_pairs(attrs));
            let body = bytes::Bytes::copy_from_slice(&rec.body);
            let decoded = tokio::task::spawn_blocking(move || decode_body(body, limits)).await?;
            let events = match decoded {
                Ok(d) => d.events,
                Err(e) => {
                    tracing::error!(seq, error = %e, "write-ahead log: a logged request no longer decodes; skipped");
                    continue;
                }
            };
            let pin = pins.pin(seq);
            stitcher
                .send(events, attrs, Some(Arc::new(pin) as Guard))
                .await
                .map_err(|_| anyhow::anyhow!("stitcher stopped during recovery"))?;
            replayed += 1;
            metrics::counter!(names::RECOVERY_RECORDS).increment(1);
        }
    }
    Ok(replayed)
}
