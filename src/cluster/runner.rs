//! The stitcher of one owned partition: a `StitcherCore` fed the
//! partition's messages in stream order, from the sequence its checkpoint
//! covers. A checkpoint is the core's state (`stitch::checkpoint::ExecState`,
//! as the single-process snapshots keep it) with the last stream sequence
//! applied, gzipped JSON in the cluster's object store, one object per
//! partition; a new owner loads it and replays from the next sequence.
//!
//! A checkpoint also keeps what the partition emitted and the exporters
//! have not delivered yet (its outbox, as single-process snapshots do), and
//! the acknowledgements stream's position: the next owner sends the outbox
//! again and skips what the acknowledgements after that position say was
//! delivered (`cluster::acks`).

use super::nats::{js_error, Cluster, ClusterError};
use super::partition::subject;
use super::publish::PARAMS_HEADER;
use crate::durable::snapshot::OutboxState;
use crate::events::{parse_log_line, StreamParams, StringCache};
use crate::stitch::checkpoint::ExecState;
use crate::stitch::core::StitcherCore;
use crate::stitch::joins::JoinRegistry;
use crate::stitch::output::Emission;
use crate::stitch::StitchConfig;
use async_nats::jetstream::consumer;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    partition: u32,
    /// The last stream sequence applied.
    sequence: u64,
    /// The acknowledgements stream's position when it was taken.
    #[serde(default)]
    acks_from: u64,
    execs: Vec<ExecState>,
    /// Emitted, not delivered everywhere yet.
    #[serde(default)]
    outbox: Vec<OutboxState>,
}

/// What a checkpoint hands the next owner besides the core's state.
#[derive(Debug, Default)]
pub struct Restored {
    /// Emissions to send again (minus what the acknowledgements say).
    pub outbox: Vec<OutboxState>,
    /// Acknowledgements after this position are the earlier owners'.
    pub acks_from: u64,
}

pub struct Runner {
    pub partition: u32,
    core: StitcherCore,
    /// The last stream sequence applied.
    pub applied: u64,
    /// The acknowledgements position of the checkpoint it came from.
    pub acks_from: u64,
    /// Lines that did not read back as events (counted, skipped).
    pub bad_lines: u64,
    strings: StringCache,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("partition", &self.partition)
            .field("applied", &self.applied)
            .finish()
    }
}

fn object_name(partition: u32) -> String {
    format!("p{partition}")
}

impl Runner {
    /// A runner for `partition`, from its checkpoint when there is one.
    /// `joins` is shared by the runners of a replica (and filled from the
    /// other replicas' hints).
    pub async fn open(
        cluster: &Cluster,
        partition: u32,
        cfg: Arc<StitchConfig>,
        max_open: usize,
        joins: Arc<JoinRegistry>,
    ) -> Result<(Runner, Restored), ClusterError> {
        let mut core = StitcherCore::new(cfg, max_open, joins);
        let mut applied = 0;
        let mut restored = Restored::default();
        if let Ok(mut object) = cluster.checkpoints.get(object_name(partition)).await {
            let mut gz = Vec::new();
            object.read_to_end(&mut gz).await.map_err(js_error)?;
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut text)
                .map_err(js_error)?;
            let c: Checkpoint = serde_json::from_slice(&text).map_err(js_error)?;
            applied = c.sequence;
            core.import(c.execs, Instant::now());
            restored = Restored {
                outbox: c.outbox,
                acks_from: c.acks_from,
            };
        }
        let runner = Runner {
            partition,
            core,
            applied,
            acks_from: restored.acks_from,
            bad_lines: 0,
            strings: StringCache::default(),
        };
        Ok((runner, restored))
    }

    /// The partition's messages after `applied`, in order, as they come.
    pub async fn messages(
        &self,
        cluster: &Cluster,
    ) -> Result<consumer::pull::Ordered, ClusterError> {
        let stream = cluster
            .js
            .get_stream(&cluster.cfg.name)
            .await
            .map_err(js_error)?;
        let c = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject(&cluster.cfg.subjects_prefix(), self.partition),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: self.applied + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(js_error)?;
        c.messages().await.map_err(js_error)
    }

    /// Applies one stored message (its stream sequence, headers, body).
    pub fn apply(
        &mut self,
        m: &async_nats::jetstream::Message,
        out: &mut Vec<Emission>,
    ) -> Result<(), ClusterError> {
        let seq = m.info().map_err(js_error)?.stream_sequence;
        if seq <= self.applied {
            return Ok(());
        }
        let params = m
            .headers
            .as_ref()
            .and_then(|h| h.get(PARAMS_HEADER))
            .and_then(|v| serde_json::from_str::<Vec<(String, String)>>(v.as_str()).ok())
            .map(StreamParams::from_pairs)
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&m.payload);
        let mut events = Vec::new();
        for line in body.lines() {
            match parse_log_line(line, &mut self.strings) {
                Ok(e) => events.push(e),
                Err(_) => self.bad_lines += 1,
            }
        }
        out.extend(self.core.apply(events, &Arc::new(params), Instant::now()));
        self.applied = seq;
        Ok(())
    }

    /// Applies every message stored after `applied` (until none comes for
    /// `idle`), collecting what the core emits; returns how many.
    pub async fn catch_up(
        &mut self,
        cluster: &Cluster,
        idle: Duration,
        out: &mut Vec<Emission>,
    ) -> Result<usize, ClusterError> {
        let mut messages = self.messages(cluster).await?;
        let mut n = 0;
        while let Ok(Some(m)) = tokio::time::timeout(idle, messages.next()).await {
            self.apply(&m.map_err(js_error)?, out)?;
            n += 1;
        }
        Ok(n)
    }

    /// The core's counters (constant time).
    pub fn stats(&self) -> crate::stitch::core::StitchSnapshot {
        self.core.stats(false)
    }

    /// Time passes for the core: executions past their grace are emitted.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Emission>) {
        out.extend(self.core.tick(now));
    }

    /// Emits everything held (a partition handed over cleanly).
    pub fn drain(&mut self, now: Instant, out: &mut Vec<Emission>) {
        out.extend(self.core.drain(now));
    }

    /// Stores the core's state and the sequence it covers, with what is
    /// not delivered yet and the acknowledgements' position; returns the
    /// object's size in bytes.
    pub async fn checkpoint(
        &self,
        cluster: &Cluster,
        acks_from: u64,
        outbox: Vec<OutboxState>,
    ) -> Result<usize, ClusterError> {
        let c = Checkpoint {
            partition: self.partition,
            sequence: self.applied,
            acks_from,
            execs: self.core.export(Instant::now()).collect(),
            outbox,
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        serde_json::to_writer(&mut gz, &c).map_err(js_error)?;
        gz.flush().map_err(js_error)?;
        let bytes = gz.finish().map_err(js_error)?;
        cluster
            .checkpoints
            .put(object_name(self.partition).as_str(), &mut &bytes[..])
            .await
            .map_err(js_error)?;
        Ok(bytes.len())
    }
}
