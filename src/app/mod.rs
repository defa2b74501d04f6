//! Wiring: `App::build` turns settings into stages (everything that can
//! fail on a bad setting or an unreadable file fails here, before anything
//! runs), `App::spawn` starts them and recovers durable state, and
//! `Running::drain` shuts them down in the one order written below.
//!
//! Every long-running task gets a child of one cancellation token; the
//! drain cancels them stage by stage, so the admin listener, for one,
//! keeps answering `/ready` (503) and `/metrics` while the rest drains.

mod cluster;
pub mod settings;

pub use settings::{ServeArgs, Settings};

use crate::admin::access::Access;
use crate::admin::api::Api;
use crate::admin::settings::AdminArgs;
use crate::admin::{self, AdminState};
use crate::aws::{Aws, AwsArgs};
use crate::clock::{Clock, SystemClock};
use crate::durable::ledger::{Delivered, Ledger};
use crate::durable::pins::Pins;
use crate::durable::recovery::{self, Paths, Scan};
use crate::durable::settings::DurableArgs;
use crate::durable::snapshotter::Snapshotter;
use crate::durable::wal::{Wal, WalConfig};
use crate::export::aggregate::Aggregator;
use crate::export::datadog::settings::DatadogSettings;
use crate::export::datadog::sites::Endpoints;
use crate::export::datadog::{AgentExporter, DatadogConfig, DatadogExporter};
use crate::export::delivery::{self, Budget, LaneConfig, Transport};
use crate::export::hub::{Hub, HubDurability};
use crate::export::otlp::OtlpExporter;
use crate::export::receipt::Outbox;
use crate::export::settings::ExportArgs;
use crate::export::settings::{ExportSettings, ExportTarget};
use crate::export::store::StoreExporter;
use crate::export::{spawn_jsonl_exporter, Exporter};
use crate::firehose::settings::FirehoseArgs;
use crate::firehose::{self, auth::AccessKeys, IngestState};
use crate::lifecycle::Lifecycle;
use crate::pipeline::settings::PipelineArgs;
use crate::pipeline::{spawn_decoders, spawn_event_consumer, ConsumerTotals, DecodeQueue, Handoff};
use crate::settings::env_of;
use crate::stitch::output::{ForwardLogs, StitchOut};
use crate::stitch::StitcherHandle;
use crate::store::postgres::{PostgresStore, Target};
use crate::store::settings::Backend;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;
use crate::telemetry::{self, names};
use anyhow::Context;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Hand-off batches in flight at most (events are the real bound).
const MAX_QUEUED_BATCHES: usize = 4096;
/// Accepted requests waiting for a decode worker, at most (their bytes are
/// bounded by STEPSTITCH_DECODE_QUEUE_BYTES).
const MAX_QUEUED_REQUESTS: usize = 1024;
/// Stitcher emissions queued for the hub.
const EMISSIONS_QUEUED: usize = 64;
/// Items queued for the jsonl writer thread.
const JSONL_ITEMS_QUEUED: usize = 64;
/// Metric series (per 10 s window) the aggregator holds at most.
const MAX_METRIC_SERIES: usize = 500_000;

/// One decode worker per core the process may run on (at most 8): decoding
/// is the biggest CPU cost, and the workers are otherwise idle.
fn decode_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

fn datadog_config(
    d: &DatadogSettings,
    forward_logs: ForwardLogs,
    host: Option<String>,
) -> DatadogConfig {
    DatadogConfig {
        host,
        api_key: d.api_key.clone(),
        endpoints: Endpoints::new(
            &d.site,
            d.apm_dd_url.as_deref(),
            d.dd_url.as_deref(),
            d.logs_dd_url.as_deref(),
        ),
        env: d.env.clone(),
        version: d.version.clone(),
        trace_agent_url: d.trace_agent_url.clone(),
        dogstatsd_url: d.dogstatsd_url.clone(),
        forward_logs: forward_logs != ForwardLogs::None,
    }
}

/// Starts every configured exporter (their lanes idle until fed).
async fn exporters(
    export: &ExportSettings,
    dd: &DatadogConfig,
    give_up: CancellationToken,
) -> anyhow::Result<Vec<Exporter>> {
    let mut jsonl_outputs: Vec<Box<dyn Write + Send>> = Vec::new();
    let mut out = Vec::new();
    let lane = |exporter: &'static str| LaneConfig {
        exporter,
        flush_interval: export.flush_interval,
        max_backoff: export.max_backoff,
    };
    let transport: Arc<dyn Transport> =
        Arc::new(delivery::Client::new(export.timeout).context("starting the export HTTP client")?);
    for target in &export.targets {
        match target {
            ExportTarget::Jsonl(None) => jsonl_outputs.push(Box::new(std::io::stdout())),
            ExportTarget::Jsonl(Some(path)) => {
                jsonl_outputs.push(Box::new(std::io::BufWriter::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| {
                            format!(
                                "invalid {}: cannot open {}",
                                env_of::<ExportArgs>("export"),
                                path.display()
                            )
                        })?,
                )))
            }
            ExportTarget::Datadog => out.push(Exporter::Datadog(
                DatadogExporter::spawn(
                    dd,
                    transport.clone(),
                    Budget::new("datadog", export.buffer_bytes),
                    lane("datadog"),
                    give_up.clone(),
                )
                .map_err(|e| anyhow::anyhow!("invalid {}: {e}", env_of::<ExportArgs>("export")))?,
            )),
            ExportTarget::DatadogAgent => out.push(Exporter::DatadogAgent(
                AgentExporter::spawn(
                    dd,
                    transport.clone(),
                    Budget::new("datadog-agent", export.buffer_bytes),
                    lane("datadog-agent"),
                    give_up.clone(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("invalid {}: {e}", env_of::<ExportArgs>("export")))?,
            )),
            ExportTarget::Otlp => out.push(Exporter::Otlp(
                OtlpExporter::spawn(
                    &export.otlp,
                    Budget::new("otlp", export.buffer_bytes),
                    lane("otlp"),
                    give_up.clone(),
                )
                .context("starting the otlp exporter")?,
            )),
        }
    }
    if !jsonl_outputs.is_empty() {
        let (tx, rx) = tokio::sync::mpsc::channel(JSONL_ITEMS_QUEUED);
        let thread =
            spawn_jsonl_exporter(rx, jsonl_outputs).context("starting the jsonl exporter")?;
        out.push(Exporter::Jsonl { tx, thread });
    }
    Ok(out)
}

/// The execution store, when on. A SQLite file that cannot be opened is
/// logged and left off: the UI says so, ingestion and export go on. A
/// PostgreSQL store connects on first use and again after failures, so a
/// database that is not up yet only delays what the store holds.
fn open_store(s: &Settings) -> Option<Arc<dyn Store>> {
    let path = match &s.store.backend {
        Backend::Off => return None,
        Backend::Postgres(url) => {
            // Checked when the settings were; this cannot fail here.
            let target = match Target::parse(&url.0) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "execution store URL; running without it");
                    return None;
                }
            };
            tracing::info!(store = %target.shown, "execution store: PostgreSQL, connecting on first use");
            return Some(Arc::new(PostgresStore::new(target)));
        }
        Backend::Sqlite(p) => p
            .clone()
            .unwrap_or_else(|| s.durable.data_dir.join("store.sqlite")),
    };
    match SqliteStore::open(&path) {
        Ok(st) => {
            metrics::gauge!(names::STORE_UP).set(1.0);
            tracing::info!(path = %path.display(), "execution store open");
            Some(Arc::new(st))
        }
        Err(e) => {
            metrics::gauge!(names::STORE_UP).set(0.0);
            tracing::error!(path = %path.display(), error = %e, "cannot open the execution store; running without it (the UI will say so)");
            None
        }
    }
}

/// Datadog's web app for a site (trace links).
fn datadog_app(site: &str) -> String {
    match site {
        "datadoghq.com" | "datadoghq.eu" => format!("https://app.{site}"),
        other => format!("https://{other}"),
    }
}

/// Durable state as found at start: the newest snapshot, the repaired
/// log, the export ledger.
struct Durable {
    paths: Paths,
    scan: Scan,
    wal: Wal,
    pins: Arc<Pins>,
    ledger: Arc<Ledger>,
    delivered: Delivered,
    outbox: Arc<Outbox>,
}

impl Durable {
    fn open(s: &Settings) -> anyhow::Result<Self> {
        let d = &s.durable;
        let paths = Paths::new(&d.data_dir);
        let scan = recovery::scan(&paths).with_context(|| {
            format!(
                "invalid {}: cannot read durable state in {}",
                env_of::<DurableArgs>("data_dir"),
                d.data_dir.display()
            )
        })?;
        let (ledger, delivered) = Ledger::open(&paths.ledger).with_context(|| {
            format!(
                "invalid {}: cannot open the export ledger in {}",
                env_of::<DurableArgs>("data_dir"),
                paths.ledger.display()
            )
        })?;
        let (wal, pins) = Wal::open(
            WalConfig {
                dir: paths.wal.clone(),
                segment_bytes: d.wal_segment_bytes,
                max_bytes: d.data_max_bytes,
                fsync: true,
            },
            scan.next_seq,
        )
        .with_context(|| {
            format!(
                "invalid {}: cannot open the write-ahead log in {}",
                env_of::<DurableArgs>("data_dir"),
                paths.wal.display()
            )
        })?;
        Ok(Durable {
            paths,
            scan,
            wal,
            pins,
            ledger: Arc::new(ledger),
            delivered,
            outbox: Arc::new(Outbox::default()),
        })
    }
}

/// Where accepted requests go: the local write-ahead log, or JetStream.
// One value per process, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Mode {
    Local(Durable),
    Cluster(cluster::Connected),
}

/// Every stage, built from the settings and not running yet.
pub struct App {
    settings: Settings,
    clock: Arc<dyn Clock>,
    lifecycle: Arc<Lifecycle>,
    keys: Arc<AccessKeys>,
    api_tokens: Arc<AccessKeys>,
    store: Option<Arc<dyn Store>>,
    aws: Option<Arc<Aws>>,
    events_out: Option<Box<dyn Write + Send>>,
    mode: Mode,
    hub: Hub,
    ingest_listener: TcpListener,
    admin_listener: TcpListener,
    /// The parent of every task's stop signal.
    shutdown: CancellationToken,
    give_up: CancellationToken,
}

impl App {
    /// Opens and checks everything the settings name: access keys, the
    /// events file, durable state, exporters, both listeners.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let shutdown = CancellationToken::new();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let f = &settings.firehose;
        let keys = Arc::new(
            AccessKeys::new(&f.access_keys, f.access_keys_file.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "invalid {} / {}: {e}",
                    env_of::<FirehoseArgs>("access_keys"),
                    env_of::<FirehoseArgs>("access_keys_file")
                )
            })?,
        );
        if keys.enabled() {
            tracing::info!(
                active_keys = keys.active_count(),
                "Firehose access keys configured"
            );
        } else {
            tracing::warn!(
                "NO ACCESS KEYS CONFIGURED: POST /firehose accepts unauthenticated requests; set {} or {}",
                env_of::<FirehoseArgs>("access_keys"),
                env_of::<FirehoseArgs>("access_keys_file")
            );
        }
        let events_out: Option<Box<dyn Write + Send>> = match &settings.pipeline.events_out {
            None => None,
            Some(None) => Some(Box::new(std::io::stdout())),
            Some(Some(path)) => Some(Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| {
                    format!(
                        "invalid {}: cannot create {}",
                        env_of::<PipelineArgs>("events_out"),
                        path.display()
                    )
                })?,
            ))),
        };
        let mode = match &settings.cluster {
            None => Mode::Local(Durable::open(&settings)?),
            Some(c) => {
                Mode::Cluster(cluster::Connected::connect(c, &settings.durable.data_dir).await?)
            }
        };
        let api_tokens = Arc::new(
            AccessKeys::new(
                &settings.admin.api_tokens,
                settings.admin.api_tokens_file.clone(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "invalid {} / {}: {}",
                    env_of::<AdminArgs>("api_tokens"),
                    env_of::<AdminArgs>("api_tokens_file"),
                    e.to_string().replace("access key", "API token")
                )
            })?,
        );
        let store = open_store(&settings);
        let aws = Aws::from_settings(&settings.aws)
            .await
            .map_err(|e| anyhow::anyhow!("invalid {}: {e}", env_of::<AwsArgs>("aws")))?;
        if let Some(a) = &aws {
            tracing::info!(mode = ?a.mode, region = %a.sfn.region, "AWS calls on");
        }
        let give_up = shutdown.child_token();
        let node = settings.cluster.as_ref().map(|c| c.config.node.clone());
        let dd = datadog_config(&settings.datadog, settings.stitch.forward_logs, node);
        let mut exporters = exporters(&settings.export, &dd, give_up.clone()).await?;
        if let Some(st) = &store {
            // Last, so the ledger's exporter numbers of the others stay as they were.
            exporters.push(Exporter::Store(
                StoreExporter::spawn(st.clone(), clock.clone(), settings.store.clone())
                    .context("starting the store writer")?,
            ));
        }
        let hub = Hub {
            exporters,
            aggregator: Aggregator::new(MAX_METRIC_SERIES),
            clock: clock.clone(),
            metrics_interval: settings.export.metrics_flush_interval,
            durability: Some(match &mode {
                Mode::Local(durable) => HubDurability {
                    ledger: durable.ledger.clone(),
                    outbox: durable.outbox.clone(),
                    delivered: Arc::new(std::sync::RwLock::new(durable.delivered.clone())),
                },
                Mode::Cluster(c) => c.hub_durability(),
            }),
        };
        let listen = f.listen;
        let ingest_listener = TcpListener::bind(listen).await.with_context(|| {
            format!(
                "invalid {}: cannot listen on {listen}",
                env_of::<FirehoseArgs>("listen")
            )
        })?;
        let admin_listen = settings.admin.listen;
        let admin_listener = TcpListener::bind(admin_listen).await.with_context(|| {
            format!(
                "invalid {}: cannot listen on {admin_listen}",
                env_of::<AdminArgs>("admin_listen")
            )
        })?;
        Ok(App {
            settings,
            clock,
            lifecycle: Arc::new(Lifecycle::default()),
            keys,
            api_tokens,
            store,
            aws,
            events_out,
            mode,
            hub,
            ingest_listener,
            admin_listener,
            shutdown,
            give_up,
        })
    }

    /// Where the Firehose endpoint listens (an ephemeral port's number).
    pub fn ingest_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.ingest_listener.local_addr()
    }

    /// Starts the stages downstream first (exporters, stitcher, pipeline,
    /// listeners), recovers durable state, and turns ready.
    pub async fn spawn(self) -> anyhow::Result<Running> {
        if matches!(self.mode, Mode::Cluster(_)) {
            return cluster::spawn(self).await;
        }
        let App {
            settings,
            clock,
            lifecycle,
            keys,
            api_tokens,
            store,
            aws,
            events_out,
            mode,
            hub,
            ingest_listener,
            admin_listener,
            shutdown,
            give_up,
        } = self;
        let Mode::Local(durable) = mode else {
            unreachable!("cluster mode returned above")
        };
        let prometheus = telemetry::prometheus();

        // Export: the hub, fed by the stitcher.
        let (emissions_tx, emissions_rx) = mpsc::channel::<StitchOut>(EMISSIONS_QUEUED);
        let exporter = tokio::spawn(hub.run(emissions_rx));
        let stitch_cfg = settings.stitch.clone();
        let shards = stitch_cfg.shards;
        let (stitcher, shard_tasks) = StitcherHandle::spawn(stitch_cfg, emissions_tx.clone());
        let exporters: Vec<String> = settings
            .export
            .targets
            .iter()
            .map(ExportTarget::to_string)
            .collect();
        tracing::info!(export = %exporters.join(","), shards, "stitcher started");

        // Pipeline: decode workers → hand-off → consumer → stitcher.
        let p = &settings.pipeline;
        let (handoff, rx) =
            Handoff::new(p.queue_capacity_events, MAX_QUEUED_BATCHES, p.handoff_wait);
        let totals = Arc::new(ConsumerTotals::default());
        let consumer = spawn_event_consumer(
            rx,
            events_out,
            totals.clone(),
            Some(stitcher.clone()),
            store.clone(),
        )
        .context("starting the event consumer")?;
        let (decode_queue, decode_rx) =
            DecodeQueue::new(p.decode_queue_bytes, MAX_QUEUED_REQUESTS, p.handoff_wait);
        let decoders = spawn_decoders(
            decode_workers(),
            decode_rx,
            handoff.clone(),
            tokio::runtime::Handle::current(),
        )
        .context("starting the decode workers")?;

        // Listeners: the ingest router holds the last decode-queue sender.
        let ingest_state = Arc::new(IngestState {
            keys: keys.clone(),
            limits: settings.body,
            concurrency: Arc::new(tokio::sync::Semaphore::new(
                settings.firehose.max_concurrent_requests,
            )),
            decode_queue: decode_queue.clone(),
            lifecycle: lifecycle.clone(),
            clock: clock.clone(),
            wal: Some(durable.wal.clone()),
            cluster: None,
            store: None,
        });
        let admin_state = AdminState {
            lifecycle: lifecycle.clone(),
            prometheus,
            handoff: handoff.gauge(),
            decode_queue: decode_queue.gauge(),
            keys: keys.clone(),
            stitcher: Some(stitcher.clone()),
            api: api(
                &settings,
                store.clone(),
                aws,
                api_tokens.clone(),
                clock.clone(),
                &admin_listener,
            )?,
        };
        drop((handoff, decode_queue));
        let (intake, admin) = listen(
            &settings,
            (keys, api_tokens),
            (ingest_listener, ingest_state),
            (admin_listener, admin_state),
            &shutdown,
        )?;

        // Recovery before readiness: until it is done, Firehose gets 503s.
        let started = std::time::Instant::now();
        let snapshot_seq = durable.scan.snapshot.as_ref().map_or(1, |(n, _)| n + 1);
        let replayed = recovery::replay(
            &durable.paths,
            durable.scan.snapshot.map(|(_, s)| s),
            &stitcher,
            &emissions_tx,
            &durable.pins,
            settings.body,
        )
        .await?;
        drop(emissions_tx);
        tracing::info!(
            replayed_records = replayed,
            dropped_tail_bytes = durable.scan.dropped_tail_bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "recovered durable state"
        );
        let snapshot_stop = shutdown.child_token();
        let snapshotter = tokio::spawn(
            Snapshotter {
                paths: durable.paths.clone(),
                wal: durable.wal.clone(),
                ledger: durable.ledger.clone(),
                stitcher: stitcher.clone(),
                clock: clock.clone(),
                next: snapshot_seq,
                max_bytes: settings.durable.data_max_bytes,
            }
            .run(settings.durable.snapshot_interval, snapshot_stop.clone()),
        );

        lifecycle.set_ready(true);
        metrics::gauge!(names::READY).set(1.0);
        // Logged once serving and ready: scripts and tests wait for this line.
        tracing::info!(ingest = %intake.addr, admin = %admin.addr, "listening");
        tracing::info!("ready");
        Ok(Running {
            shutdown_timeout: settings.shutdown_timeout,
            shutdown,
            intake,
            work: Work::Local {
                pipeline: Pipeline {
                    decoders,
                    consumer,
                    totals,
                },
                stitcher: Stitching {
                    handle: stitcher,
                    shards: shard_tasks,
                },
                snapshots: Snapshots {
                    stop: snapshot_stop,
                    task: snapshotter,
                    outbox: durable.outbox,
                },
            },
            admin,
            export: Export {
                task: exporter,
                give_up,
            },
        })
    }
}

/// The UI's API.
fn api(
    settings: &Settings,
    store: Option<Arc<dyn Store>>,
    aws: Option<Arc<Aws>>,
    tokens: Arc<AccessKeys>,
    clock: Arc<dyn Clock>,
    admin_listener: &TcpListener,
) -> anyhow::Result<Arc<Api>> {
    Ok(Arc::new(Api {
        store,
        aws,
        access: Access {
            tokens,
            open_reads: admin_listener.local_addr()?.ip().is_loopback(),
        },
        clock,
        datadog_app: settings
            .export
            .targets
            .iter()
            .any(|t| matches!(t, ExportTarget::Datadog | ExportTarget::DatadogAgent))
            .then(|| datadog_app(&settings.datadog.site)),
    }))
}

/// Serves both listeners (and reloads the key files while they run).
fn listen(
    settings: &Settings,
    (keys, api_tokens): (Arc<AccessKeys>, Arc<AccessKeys>),
    (ingest_listener, ingest_state): (TcpListener, Arc<IngestState>),
    (admin_listener, admin_state): (TcpListener, AdminState),
    shutdown: &CancellationToken,
) -> anyhow::Result<(Intake, Admin)> {
    let lifecycle = ingest_state.lifecycle.clone();
    let ingest_addr = ingest_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let intake_stop = shutdown.child_token();
    let reload = keys.file().is_some().then(|| {
        tokio::spawn(reload_keys(
            keys.clone(),
            settings.firehose.access_keys_reload_interval,
            intake_stop.clone(),
        ))
    });
    let ingest = serve(
        ingest_listener,
        firehose::router(ingest_state, settings.firehose.request_timeout),
        intake_stop.clone(),
    );
    let admin_stop = shutdown.child_token();
    if api_tokens.file().is_some() {
        // Ends with the admin listener.
        tokio::spawn(reload_keys(
            api_tokens,
            settings.firehose.access_keys_reload_interval,
            admin_stop.clone(),
        ));
    }
    let admin = serve(
        admin_listener,
        admin::router(admin_state),
        admin_stop.clone(),
    );
    Ok((
        Intake {
            lifecycle,
            stop: intake_stop,
            task: ingest,
            reload,
            addr: ingest_addr,
        },
        Admin {
            stop: admin_stop,
            task: admin,
            addr: admin_addr,
        },
    ))
}

/// Serves `app` on `listener` until `stop` is cancelled, then finishes the
/// requests in flight.
fn serve(
    listener: TcpListener,
    app: axum::Router,
    stop: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    })
}

/// The stages, running.
pub struct Running {
    shutdown_timeout: Duration,
    shutdown: CancellationToken,
    intake: Intake,
    work: Work,
    admin: Admin,
    export: Export,
}

/// What turns accepted requests into emissions.
enum Work {
    Local {
        pipeline: Pipeline,
        stitcher: Stitching,
        snapshots: Snapshots,
    },
    Cluster(cluster::Replicating),
}

struct Intake {
    lifecycle: Arc<Lifecycle>,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    reload: Option<JoinHandle<()>>,
    addr: std::net::SocketAddr,
}

struct Pipeline {
    decoders: Vec<std::thread::JoinHandle<()>>,
    consumer: std::thread::JoinHandle<()>,
    totals: Arc<ConsumerTotals>,
}

struct Stitching {
    handle: StitcherHandle,
    shards: Vec<JoinHandle<()>>,
}

struct Snapshots {
    stop: CancellationToken,
    task: JoinHandle<Snapshotter>,
    outbox: Arc<Outbox>,
}

struct Admin {
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    addr: std::net::SocketAddr,
}

struct Export {
    task: JoinHandle<()>,
    give_up: CancellationToken,
}

impl Running {
    /// Shuts down in the one order that loses nothing, within the shutdown
    /// timeout:
    ///
    /// 1. intake: refuse new Firehose requests, finish those in flight;
    /// 2. pipeline: the decode workers and the consumer hand everything
    ///    accepted to the stitcher;
    /// 3. stitcher: emit every open execution (incomplete without a
    ///    terminal event);
    /// 4. snapshots: stop taking them, let the exporters deliver the outbox
    ///    until the deadline, then write the final snapshot (what was not
    ///    delivered stays in it for the next start);
    /// 5. stitcher shards stop; the admin listener stops;
    /// 6. export: the hub flushes its metric windows and the exporters end.
    pub async fn drain(self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        tracing::info!(timeout = ?self.shutdown_timeout, "shutting down: refusing new Firehose requests, finishing in-flight ones");
        self.intake.drain(deadline).await;
        match self.work {
            Work::Local {
                pipeline,
                stitcher,
                snapshots,
            } => {
                pipeline.drain(deadline).await;
                stitcher.flush(deadline).await;
                snapshots.drain(deadline, &self.export.give_up).await;
                stitcher.stop().await;
            }
            // Partitions are checkpointed and handed over, not drained:
            // their open executions carry on at their next owners.
            Work::Cluster(c) => c.drain(deadline).await,
        }
        self.admin.drain().await;
        self.export.drain(deadline).await;
        self.shutdown.cancel();
        tracing::info!("stopped");
    }
}

impl Intake {
    async fn drain(self, deadline: Instant) {
        self.lifecycle.begin_shutdown();
        metrics::gauge!(names::READY).set(0.0);
        self.stop.cancel();
        match tokio::time::timeout_at(deadline, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "ingest listener failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "ingest listener task failed"),
            Err(_) => tracing::warn!("in-flight Firehose requests did not finish in time"),
        }
        if let Some(r) = self.reload {
            let _ = r.await;
        }
    }
}

impl Pipeline {
    /// The ingest router owned the last decode queue sender: the decode
    /// workers finish what was accepted, drop their hand-off senders, and
    /// the consumer drains the rest and stops.
    async fn drain(self, deadline: Instant) {
        let (decoders, consumer) = (self.decoders, self.consumer);
        let join = tokio::task::spawn_blocking(move || {
            for d in decoders {
                let _ = d.join();
            }
            consumer.join()
        });
        match tokio::time::timeout_at(deadline, join).await {
            Ok(_) => tracing::info!(
                events = self
                    .totals
                    .events
                    .load(std::sync::atomic::Ordering::Relaxed),
                "hand-off drained"
            ),
            Err(_) => tracing::warn!("hand-off not drained within the shutdown timeout"),
        }
    }
}

impl Stitching {
    async fn flush(&self, deadline: Instant) {
        match tokio::time::timeout_at(deadline, self.handle.flush_all()).await {
            Ok(_) => tracing::info!("stitcher flushed"),
            Err(_) => tracing::warn!("stitcher not flushed within the shutdown timeout"),
        }
    }

    /// The shards end; their span senders close, so the hub can finish.
    async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.handle.stop()).await;
        for t in self.shards {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

impl Snapshots {
    async fn drain(self, deadline: Instant, give_up: &CancellationToken) {
        self.stop.cancel();
        let mut snapshotter = match self.task.await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "snapshot task failed");
                None
            }
        };
        while !self.outbox.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !self.outbox.is_empty() {
            tracing::warn!(
                emissions = self.outbox.len(),
                "exporters not done within the shutdown timeout; undelivered data is kept for the next start"
            );
            give_up.cancel();
        }
        if let Some(s) = snapshotter.as_mut() {
            match tokio::time::timeout(Duration::from_secs(5), s.take()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "final snapshot failed; the log replays at the next start")
                }
                Err(_) => {
                    tracing::error!("final snapshot timed out; the log replays at the next start")
                }
            }
        }
    }
}

impl Admin {
    async fn drain(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

impl Export {
    /// The shards' senders are gone: the hub flushes the metric windows and
    /// the exporters deliver them, until the deadline.
    async fn drain(self, deadline: Instant) {
        let mut task = self.task;
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(_) => tracing::info!("exporters flushed"),
            Err(_) => {
                tracing::warn!(
                    "exporters not flushed within the shutdown timeout; dropping undelivered metrics"
                );
                self.give_up.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
        }
    }
}

/// Runs the service until SIGTERM or SIGINT, then drains it.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Before anything runs: a signal sent right after "ready" must never
    // meet the default action, which kills without draining.
    let signalled = shutdown_signal()?;
    let running = App::build(settings).await?.spawn().await?;
    signalled.await;
    running.drain().await;
    Ok(())
}

/// Re-reads the access keys file; logs each distinct error once.
async fn reload_keys(keys: Arc<AccessKeys>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let k = keys.clone();
        let result = tokio::task::spawn_blocking(move || k.reload()).await;
        match result {
            Ok(Ok(true)) => {
                last_error = None;
                metrics::counter!(names::ACCESS_KEYS_RELOADS, "result" => "changed").increment(1);
                tracing::info!(active_keys = keys.active_count(), "access keys reloaded");
            }
            Ok(Ok(false)) => last_error = None,
            Ok(Err(e)) => {
                metrics::counter!(names::ACCESS_KEYS_RELOADS, "result" => "error").increment(1);
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(error = %msg, "cannot reload access keys; keeping the previous ones");
                    last_error = Some(msg);
                }
            }
            Err(e) => tracing::error!(error = %e, "access key reload task failed"),
        }
    }
}

/// Registers the SIGINT/SIGTERM handlers now (before the service says it is
/// ready, so a signal sent right after "ready" is never the default
/// action, which would kill the process without draining) and returns the
/// future that waits for one.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(signal = "SIGINT", "signal received");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::datadog::settings::DatadogArgs;
    use crate::export::otlp::settings::OtlpArgs;

    /// The settings that messages outside their own validation name, by
    /// field: each exists, under the name the contract gives it.
    #[test]
    fn messages_name_settings_that_exist() {
        let named = [
            (env_of::<ExportArgs>("export"), "STEPSTITCH_EXPORT"),
            (env_of::<DurableArgs>("data_dir"), "STEPSTITCH_DATA_DIR"),
            (
                env_of::<DurableArgs>("data_max_bytes"),
                "STEPSTITCH_DATA_MAX_BYTES",
            ),
            (
                env_of::<FirehoseArgs>("access_keys"),
                "STEPSTITCH_ACCESS_KEYS",
            ),
            (
                env_of::<FirehoseArgs>("access_keys_file"),
                "STEPSTITCH_ACCESS_KEYS_FILE",
            ),
            (env_of::<FirehoseArgs>("listen"), "STEPSTITCH_LISTEN"),
            (
                env_of::<PipelineArgs>("events_out"),
                "STEPSTITCH_EVENTS_OUT",
            ),
            (
                env_of::<AdminArgs>("admin_listen"),
                "STEPSTITCH_ADMIN_LISTEN",
            ),
            (env_of::<DatadogArgs>("dd_api_key"), "DD_API_KEY"),
            (
                env_of::<DatadogArgs>("dd_trace_agent_url"),
                "DD_TRACE_AGENT_URL",
            ),
            (
                env_of::<DatadogArgs>("dd_dogstatsd_url"),
                "DD_DOGSTATSD_URL",
            ),
            (
                env_of::<OtlpArgs>("otel_exporter_otlp_endpoint"),
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
        ];
        for (got, want) in named {
            assert_eq!(got, want);
        }
    }
}
