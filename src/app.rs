//! Wiring: builds the stages from settings, runs the listeners, and shuts
//! down in order (stop intake → drain the hand-off → exit).

use crate::admin::{self, AdminState};
use crate::clock::{Clock, SystemClock};
use crate::config::{ExportTarget, Settings};
use crate::decode;
use crate::decode::BodyLimits;
use crate::durable::ledger::Ledger;
use crate::durable::recovery::{self, Paths};
use crate::durable::snapshotter::Snapshotter;
use crate::durable::wal::{Wal, WalConfig};
use crate::export::aggregate::Aggregator;
use crate::export::datadog::sites::Endpoints;
use crate::export::datadog::{AgentExporter, DatadogConfig, DatadogExporter};
use crate::export::delivery::{self, Budget, LaneConfig, Transport};
use crate::export::hub::{Hub, HubDurability};
use crate::export::receipt::Outbox;
use crate::export::{spawn_jsonl_exporter, Exporter};
use crate::firehose::{self, auth::AccessKeys, IngestState};
use crate::lifecycle::Lifecycle;
use crate::pipeline::{spawn_decoders, spawn_event_consumer, ConsumerTotals, DecodeQueue, Handoff};
use crate::stitch::builder::SpanConfig;
use crate::stitch::output::ForwardLogs;
use crate::stitch::{StitchConfig, StitcherHandle};
use crate::telemetry::{self, names};
use anyhow::Context;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Hand-off batches in flight at most (events are the real bound).
const MAX_QUEUED_BATCHES: usize = 4096;
/// Accepted requests waiting for a decode worker, at most (their bytes are
/// bounded by STEPSTITCH_DECODE_QUEUE_BYTES).
const MAX_QUEUED_REQUESTS: usize = 1024;

/// One decode worker per core the process may run on (at most 8): decoding
/// is the biggest CPU cost, and the workers are otherwise idle.
fn decode_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}
/// Stitcher emissions queued for the hub.
const EMISSIONS_QUEUED: usize = 64;
/// Items queued for the jsonl writer thread.
const JSONL_ITEMS_QUEUED: usize = 64;
/// Metric series (per 10 s window) the aggregator holds at most.
const MAX_METRIC_SERIES: usize = 500_000;

fn stitch_config(s: &Settings) -> StitchConfig {
    let tags = s
        .datadog
        .tags
        .iter()
        .map(|t| match t.split_once(':') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (t.clone(), String::new()),
        })
        .collect();
    StitchConfig {
        shards: s.stitch_shards,
        mailbox: 64,
        finalize_grace: s.finalize_grace,
        idle_timeout: s.idle_timeout,
        retention: s.late_event_retention,
        max_open_executions: s.max_open_executions,
        incremental_interval: s.incremental_interval,
        // Due executions are found within a fraction of the grace.
        tick: (s.finalize_grace / 4).clamp(Duration::from_millis(10), Duration::from_millis(500)),
        spans: SpanConfig {
            service: s.datadog.service.clone(),
            env: s.datadog.env.clone(),
            version: s.datadog.version.clone(),
            tags,
            max_payload_bytes: s.max_payload_bytes,
            redact_keys: s.redact_keys.clone(),
            enhanced_metrics: s.enhanced_metrics,
            enhanced_metrics_exclude: s.enhanced_metrics_exclude.clone(),
            event_owners: s.forward_logs != ForwardLogs::None,
        },
        forward_logs: s.forward_logs,
    }
}

fn datadog_config(s: &Settings) -> DatadogConfig {
    let d = &s.datadog;
    DatadogConfig {
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
        forward_logs: s.forward_logs != ForwardLogs::None,
    }
}

/// Starts every configured exporter.
async fn exporters(
    settings: &Settings,
    give_up: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Exporter>> {
    let mut jsonl_outputs: Vec<Box<dyn Write + Send>> = Vec::new();
    let mut out = Vec::new();
    let dd = datadog_config(settings);
    let lane = |exporter: &'static str| LaneConfig {
        exporter,
        flush_interval: settings.export_flush_interval,
        max_backoff: settings.export_max_backoff,
    };
    let transport: Arc<dyn Transport> = Arc::new(
        delivery::Client::new(settings.export_timeout)
            .context("starting the export HTTP client")?,
    );
    for target in &settings.export {
        match target {
            ExportTarget::Jsonl(None) => jsonl_outputs.push(Box::new(std::io::stdout())),
            ExportTarget::Jsonl(Some(path)) => jsonl_outputs.push(Box::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("invalid STEPSTITCH_EXPORT: cannot open {}", path.display()))?,
            ))),
            ExportTarget::Datadog => out.push(Exporter::Datadog(
                DatadogExporter::spawn(
                    &dd,
                    transport.clone(),
                    Budget::new("datadog", settings.export_buffer_bytes),
                    lane("datadog"),
                    give_up.clone(),
                )
                .map_err(|e| anyhow::anyhow!("invalid STEPSTITCH_EXPORT: {e}"))?,
            )),
            ExportTarget::DatadogAgent => out.push(Exporter::DatadogAgent(
                AgentExporter::spawn(
                    &dd,
                    transport.clone(),
                    Budget::new("datadog-agent", settings.export_buffer_bytes),
                    lane("datadog-agent"),
                    give_up.clone(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("invalid STEPSTITCH_EXPORT: {e}"))?,
            )),
            other => anyhow::bail!(
                "invalid STEPSTITCH_EXPORT: the {other} exporter is not in this build yet; use datadog, datadog-agent or jsonl:PATH"
            ),
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

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let prometheus = telemetry::prometheus();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let lifecycle = Arc::new(Lifecycle::default());

    let keys = Arc::new(
        AccessKeys::new(&settings.access_keys, settings.access_keys_file.clone()).map_err(|e| {
            anyhow::anyhow!("invalid STEPSTITCH_ACCESS_KEYS / STEPSTITCH_ACCESS_KEYS_FILE: {e}")
        })?,
    );
    if keys.enabled() {
        tracing::info!(
            active_keys = keys.active_count(),
            "Firehose access keys configured"
        );
    } else {
        tracing::warn!("NO ACCESS KEYS CONFIGURED: POST /firehose accepts unauthenticated requests; set STEPSTITCH_ACCESS_KEYS or STEPSTITCH_ACCESS_KEYS_FILE");
    }

    let events_out: Option<Box<dyn Write + Send>> = match &settings.events_out {
        None => None,
        Some(None) => Some(Box::new(std::io::stdout())),
        Some(Some(path)) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| {
                format!(
                    "invalid STEPSTITCH_EVENTS_OUT: cannot create {}",
                    path.display()
                )
            })?,
        ))),
    };
    // Durable state: the newest snapshot and a repaired log tail.
    let paths = Paths::new(&settings.data_dir);
    let scan = recovery::scan(&paths).with_context(|| {
        format!(
            "invalid STEPSTITCH_DATA_DIR: cannot read durable state in {}",
            settings.data_dir.display()
        )
    })?;
    let (ledger, delivered) = Ledger::open(&paths.ledger).with_context(|| {
        format!(
            "invalid STEPSTITCH_DATA_DIR: cannot open the export ledger in {}",
            paths.ledger.display()
        )
    })?;
    let ledger = Arc::new(ledger);
    let outbox = Arc::new(Outbox::default());
    let (wal, pins) = Wal::open(
        WalConfig {
            dir: paths.wal.clone(),
            segment_bytes: settings.wal_segment_bytes,
            max_bytes: settings.data_max_bytes,
            fsync: true,
        },
        scan.next_seq,
    )
    .with_context(|| {
        format!(
            "invalid STEPSTITCH_DATA_DIR: cannot open the write-ahead log in {}",
            paths.wal.display()
        )
    })?;

    // Exporters, then the stitcher feeding them, then the hand-off feeding it.
    let (give_up_tx, give_up_rx) = watch::channel(false);
    let hub = Hub {
        exporters: exporters(&settings, give_up_rx).await?,
        aggregator: Aggregator::new(MAX_METRIC_SERIES),
        clock: clock.clone(),
        metrics_interval: settings.metrics_flush_interval,
        durability: Some(HubDurability {
            ledger: ledger.clone(),
            outbox: outbox.clone(),
            delivered,
        }),
    };
    let (emissions_tx, emissions_rx) = tokio::sync::mpsc::channel(EMISSIONS_QUEUED);
    let exporter = tokio::spawn(hub.run(emissions_rx));
    let (stitcher, shard_tasks) =
        StitcherHandle::spawn(stitch_config(&settings), emissions_tx.clone());
    let exporters: Vec<String> = settings
        .export
        .iter()
        .map(ExportTarget::to_string)
        .collect();
    tracing::info!(export = %exporters.join(","), shards = settings.stitch_shards, "stitcher started");

    let (handoff, rx) = Handoff::new(
        settings.queue_capacity_events,
        MAX_QUEUED_BATCHES,
        settings.handoff_wait,
    );
    let totals = Arc::new(ConsumerTotals::default());
    let consumer = spawn_event_consumer(rx, events_out, totals.clone(), Some(stitcher.clone()))
        .context("starting the event consumer")?;
    let (decode_queue, decode_rx) = DecodeQueue::new(
        settings.decode_queue_bytes,
        MAX_QUEUED_REQUESTS,
        settings.handoff_wait,
    );
    let decoders = spawn_decoders(
        decode_workers(),
        decode_rx,
        handoff.clone(),
        tokio::runtime::Handle::current(),
    )
    .context("starting the decode workers")?;

    let ingest_limits = BodyLimits {
        max_body_bytes: settings.max_body_bytes,
        decode: decode::Limits {
            max_record_decoded_bytes: settings.max_record_decoded_bytes,
            max_request_decoded_bytes: settings.max_request_decoded_bytes,
        },
    };
    let ingest_state = Arc::new(IngestState {
        keys: keys.clone(),
        limits: ingest_limits,
        concurrency: Arc::new(tokio::sync::Semaphore::new(
            settings.max_concurrent_requests,
        )),
        decode_queue: decode_queue.clone(),
        lifecycle: lifecycle.clone(),
        clock: clock.clone(),
        wal: Some(wal.clone()),
    });
    let admin_state = AdminState {
        lifecycle: lifecycle.clone(),
        prometheus,
        handoff: handoff.gauge(),
        decode_queue: decode_queue.gauge(),
        keys: keys.clone(),
        stitcher: Some(stitcher.clone()),
    };
    drop(handoff);
    drop(decode_queue);

    let ingest_listener = TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "invalid STEPSTITCH_LISTEN: cannot listen on {}",
            settings.listen
        )
    })?;
    let admin_listener = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| {
            format!(
                "invalid STEPSTITCH_ADMIN_LISTEN: cannot listen on {}",
                settings.admin_listen
            )
        })?;
    let ingest_addr = ingest_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let reload = keys.file().is_some().then(|| {
        tokio::spawn(reload_keys(
            keys.clone(),
            settings.access_keys_reload_interval,
            stop_rx.clone(),
        ))
    });

    let ingest = tokio::spawn({
        let mut stop = stop_rx.clone();
        let app = firehose::router(ingest_state, settings.request_timeout);
        async move {
            axum::serve(ingest_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }
    });
    // The admin listener stays up until the end: /ready answers 503 and
    // /metrics stays scrapable while the ingest side drains.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin = tokio::spawn({
        let mut stop = admin_stop_rx;
        let app = admin::router(admin_state);
        async move {
            axum::serve(admin_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }
    });

    // Recovery before readiness: until it is done, Firehose gets 503s.
    let started = std::time::Instant::now();
    let snapshot_seq = scan.snapshot.as_ref().map_or(1, |(n, _)| n + 1);
    let replayed = recovery::replay(
        &paths,
        scan.snapshot.map(|(_, s)| s),
        &stitcher,
        &emissions_tx,
        &pins,
        ingest_limits,
    )
    .await?;
    drop(emissions_tx);
    tracing::info!(
        replayed_records = replayed,
        dropped_tail_bytes = scan.dropped_tail_bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "recovered durable state"
    );
    let (snap_stop_tx, snap_stop_rx) = watch::channel(false);
    let snapshotter = tokio::spawn(
        Snapshotter {
            paths: paths.clone(),
            wal: wal.clone(),
            ledger: ledger.clone(),
            stitcher: stitcher.clone(),
            clock: clock.clone(),
            next: snapshot_seq,
            max_bytes: settings.data_max_bytes,
        }
        .run(settings.snapshot_interval, snap_stop_rx),
    );

    let signalled = shutdown_signal()?;
    lifecycle.set_ready(true);
    metrics::gauge!(names::READY).set(1.0);
    // Logged once serving and ready: scripts and tests wait for this line.
    tracing::info!(ingest = %ingest_addr, admin = %admin_addr, "listening");
    tracing::info!("ready");

    signalled.await;
    let deadline = tokio::time::Instant::now() + settings.shutdown_timeout;
    tracing::info!(timeout = ?settings.shutdown_timeout, "shutting down: refusing new Firehose requests, finishing in-flight ones");
    lifecycle.begin_shutdown();
    metrics::gauge!(names::READY).set(0.0);
    let _ = stop_tx.send(true);

    match tokio::time::timeout_at(deadline, ingest).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "ingest listener failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "ingest listener task failed"),
        Err(_) => tracing::warn!("in-flight Firehose requests did not finish in time"),
    }
    // The ingest router owned the last decode queue sender: the decode
    // workers finish what was accepted, drop their hand-off senders, and the
    // consumer drains the rest and stops.
    let join = tokio::task::spawn_blocking(move || {
        for d in decoders {
            let _ = d.join();
        }
        consumer.join()
    });
    match tokio::time::timeout_at(deadline, join).await {
        Ok(_) => tracing::info!(
            events = totals.events.load(std::sync::atomic::Ordering::Relaxed),
            "hand-off drained"
        ),
        Err(_) => tracing::warn!("hand-off not drained within the shutdown timeout"),
    }
    // What is open is emitted now (incomplete if it has no terminal event);
    // the exporters then deliver until the deadline; what they could not
    // deliver stays in the outbox, which the final snapshot keeps for the
    // next start.
    match tokio::time::timeout_at(deadline, stitcher.flush_all()).await {
        Ok(_) => tracing::info!("stitcher flushed"),
        Err(_) => tracing::warn!("stitcher not flushed within the shutdown timeout"),
    }
    let _ = snap_stop_tx.send(true);
    let mut snapshotter = match snapshotter.await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "snapshot task failed");
            None
        }
    };
    while !outbox.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !outbox.is_empty() {
        tracing::warn!(
            emissions = outbox.len(),
            "exporters not done within the shutdown timeout; undelivered data is kept for the next start"
        );
        let _ = give_up_tx.send(true);
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
    let _ = tokio::time::timeout(Duration::from_secs(2), stitcher.stop()).await;
    for t in shard_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
    drop(stitcher);
    let _ = admin_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
    // The shards' senders are gone: the hub flushes the metric windows and
    // the exporters deliver them, until the deadline.
    let mut exporter = exporter;
    match tokio::time::timeout_at(deadline, &mut exporter).await {
        Ok(_) => tracing::info!("exporters flushed"),
        Err(_) => {
            tracing::warn!(
                "exporters not flushed within the shutdown timeout; dropping undelivered metrics"
            );
            let _ = give_up_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(2), exporter).await;
        }
    }
    if let Some(r) = reload {
        r.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads the access keys file; logs each distinct error once.
async fn reload_keys(keys: Arc<AccessKeys>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
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
