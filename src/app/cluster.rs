//! Cluster mode's wiring (docs/cluster.md): no write-ahead log, no local
//! pipeline or stitcher shards; the Firehose handler publishes to
//! JetStream, and the replica loop runs the owned partitions' cores into
//! the same hub and exporters as single-process mode.

use super::{api, listen, App, Export, Mode, Running, Work};
use crate::admin::AdminState;
use crate::cluster::acks::AckStream;
use crate::cluster::replica::{Replica, Shared};
use crate::cluster::settings::{ClusterArgs, ClusterSettings};
use crate::cluster::Cluster;
use crate::durable::ledger::Delivered;
use crate::durable::settings::DurableArgs;
use crate::export::hub::HubDurability;
use crate::export::receipt::Outbox;
use crate::firehose::IngestState;
use crate::pipeline::{DecodeQueue, Handoff};
use crate::settings::env_of;
use crate::stitch::joins::JoinRegistry;
use crate::stitch::output::StitchOut;
use crate::telemetry::{self, names};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The acknowledgements journal's directory, in the data directory.
const JOURNAL: &str = "cluster-acks";

/// Stitcher emissions queued for the hub.
const EMISSIONS_QUEUED: usize = 64;

/// Connected to NATS, the stream and buckets in place.
pub(super) struct Connected {
    cluster: Cluster,
    settings: ClusterSettings,
    acks: Arc<AckStream>,
    outbox: Arc<Outbox>,
    delivered: Arc<RwLock<Delivered>>,
}

impl Connected {
    /// `data_dir` holds this replica's acknowledgements journal.
    pub(super) async fn connect(
        s: &ClusterSettings,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Connected> {
        let journal = data_dir.join(JOURNAL);
        let opened = AckStream::with_journal(&journal);
        let (acks, left) = opened.map_err(|e| {
            anyhow::anyhow!(
                "invalid {}: cannot open the acknowledgements journal {}: {e}",
                env_of::<DurableArgs>("data_dir"),
                journal.display()
            )
        })?;
        if left > 0 {
            tracing::info!(
                records = left,
                "acknowledgements journal: records a killed process left unstored are sent first"
            );
        }
        let cluster = Cluster::connect(s.config.clone()).await.map_err(|e| {
            anyhow::anyhow!("invalid {}: {e}", env_of::<ClusterArgs>("cluster_nats_url"))
        })?;
        tracing::info!(
            node = %s.config.node,
            stream = %s.config.name,
            partitions = s.config.partitions,
            replicas = s.config.replicas,
            "cluster mode: connected to NATS JetStream"
        );
        Ok(Connected {
            cluster,
            settings: s.clone(),
            acks: Arc::new(acks),
            outbox: Arc::new(Outbox::default()),
            delivered: Arc::new(RwLock::new(Delivered::new())),
        })
    }

    pub(super) fn hub_durability(&self) -> HubDurability {
        HubDurability {
            ledger: self.acks.clone(),
            outbox: self.outbox.clone(),
            delivered: self.delivered.clone(),
        }
    }
}

/// The replica loop, running.
pub(super) struct Replicating {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Replicating {
    /// Every owned partition checkpoints and is handed over.
    pub(super) async fn drain(self, deadline: Instant) {
        self.stop.cancel();
        match tokio::time::timeout_at(deadline, self.task).await {
            Ok(_) => tracing::info!("partitions checkpointed and handed over"),
            Err(_) => tracing::warn!(
                "partitions not handed over within the shutdown timeout; their leases expire and the next owners replay from the last checkpoints"
            ),
        }
    }
}

pub(super) async fn spawn(app: App) -> anyhow::Result<Running> {
    let App {
        settings,
        clock,
        lifecycle,
        keys,
        api_tokens,
        store,
        aws,
        events_out: _,
        mode,
        hub,
        ingest_listener,
        admin_listener,
        shutdown,
        give_up,
    } = app;
    let Mode::Cluster(c) = mode else {
        anyhow::bail!("not in cluster mode");
    };
    metrics::gauge!(names::CLUSTER_MODE).set(1.0);
    let prometheus = telemetry::prometheus();
    let (emissions_tx, emissions_rx) = mpsc::channel::<StitchOut>(EMISSIONS_QUEUED);
    let exporter = tokio::spawn(hub.run(emissions_rx));
    // The local queues stay empty in this mode; the admin's gauges read 0.
    let p = &settings.pipeline;
    let (handoff, _) = Handoff::new(p.queue_capacity_events, 1, p.handoff_wait);
    let (decode_queue, _) = DecodeQueue::new(p.decode_queue_bytes, 1, p.handoff_wait);
    let cluster = Arc::new(c.cluster.clone());
    let ingest_state = Arc::new(IngestState {
        keys: keys.clone(),
        limits: settings.body,
        concurrency: Arc::new(tokio::sync::Semaphore::new(
            settings.firehose.max_concurrent_requests,
        )),
        decode_queue: decode_queue.clone(),
        lifecycle: lifecycle.clone(),
        clock: clock.clone(),
        wal: None,
        cluster: Some(cluster),
        store: store.clone(),
    });
    let admin_state = AdminState {
        lifecycle: lifecycle.clone(),
        prometheus,
        handoff: handoff.gauge(),
        decode_queue: decode_queue.gauge(),
        keys: keys.clone(),
        stitcher: None,
        api: api(
            &settings,
            store,
            aws,
            api_tokens.clone(),
            clock.clone(),
            &admin_listener,
        )?,
    };
    let (intake, admin) = listen(
        &settings,
        (keys, api_tokens),
        (ingest_listener, ingest_state),
        (admin_listener, admin_state),
        &shutdown,
    )?;
    let stitch = Arc::new(settings.stitch.clone());
    let joins = Arc::new(JoinRegistry::shared(stitch.max_open_executions.max(1024)));
    let replica = Replica {
        shared: Shared {
            cluster: c.cluster.clone(),
            stitch,
            emissions: emissions_tx,
            outbox: c.outbox.clone(),
            delivered: c.delivered.clone(),
            acks: c.acks.clone(),
            joins,
            checkpoint_interval: c.settings.checkpoint_interval,
            stats: Default::default(),
        },
        lifecycle: lifecycle.clone(),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(replica.run(stop.clone()));
    // Ready once this replica owns its share (the replica loop says so).
    tracing::info!(ingest = %intake.addr, admin = %admin.addr, node = %c.settings.config.node, "listening");
    let waited = std::time::Instant::now();
    while !lifecycle.is_ready() && waited.elapsed() < c.settings.config.lease_ttl * 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if lifecycle.is_ready() {
        tracing::info!("ready");
    } else {
        tracing::warn!("partitions not settled yet; ready once they are");
    }
    Ok(Running {
        shutdown_timeout: settings.shutdown_timeout,
        shutdown,
        intake,
        work: Work::Cluster(Replicating { stop, task }),
        admin,
        export: Export {
            task: exporter,
            give_up,
        },
    })
}
