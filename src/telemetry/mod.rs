//! Self-observability: Prometheus metrics and structured logs.

pub mod names;
pub mod settings;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::FIREHOSE_REQUEST_DURATION.into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0, 60.0,
                    ],
                )
                .expect("static bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(names::CLUSTER_PUBLISH_DURATION.into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed (embedding); then
            // our handle renders what this recorder saw: nothing.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_counter!(
        FIREHOSE_REQUESTS,
        "Firehose requests answered, by HTTP status"
    );
    describe_counter!(FIREHOSE_REJECTIONS, "Firehose requests refused, by reason");
    describe_histogram!(
        FIREHOSE_REQUEST_DURATION,
        Unit::Seconds,
        "Firehose request latency"
    );
    describe_counter!(
        FIREHOSE_BYTES_RECEIVED,
        Unit::Bytes,
        "Request body bytes as received"
    );
    describe_counter!(
        FIREHOSE_BYTES_DECODED,
        Unit::Bytes,
        "Record bytes after base64 and gunzip"
    );
    describe_counter!(FIREHOSE_RECORDS, "Firehose records by kind");
    describe_counter!(
        FIREHOSE_CONTROL_MESSAGES,
        "CloudWatch Logs control messages dropped"
    );
    describe_counter!(
        FIREHOSE_LOG_EVENTS,
        "CloudWatch log events seen in data messages"
    );
    describe_counter!(
        DECODE_FAILURES,
        "Records or log messages skipped, by reason"
    );
    describe_counter!(EVENTS_DECODED, "Step Functions events decoded");
    describe_counter!(
        EVENTS_CONSUMED,
        "Events taken from the hand-off by the next stage"
    );
    describe_gauge!(
        HANDOFF_QUEUED_EVENTS,
        "Events accepted and not yet processed"
    );
    describe_gauge!(HANDOFF_CAPACITY_EVENTS, "Hand-off capacity in events");
    describe_gauge!(
        DECODE_QUEUE_BYTES,
        "Bytes of accepted request bodies waiting for a decode worker"
    );
    describe_gauge!(
        DECODE_QUEUE_CAPACITY_BYTES,
        "Decode queue capacity in bytes"
    );
    describe_counter!(REQUESTS_DECODED, "Accepted Firehose requests fully decoded");
    describe_counter!(
        COMMON_ATTRIBUTES_INVALID,
        "Malformed common-attributes headers ignored"
    );
    describe_counter!(
        COMMON_ATTRIBUTES_DROPPED,
        "Common-attribute entries over protocol limits"
    );
    describe_counter!(
        REQUEST_ID_MISMATCH,
        "Body requestId differing from the header"
    );
    describe_counter!(
        PROTOCOL_VERSION_UNEXPECTED,
        "Requests with a protocol version other than 1.0"
    );
    describe_counter!(ACCESS_KEYS_RELOADS, "Access-key file reloads, by result");
    describe_gauge!(ACCESS_KEYS_ACTIVE, "Access keys active now");
    describe_gauge!(READY, "1 when ready to accept Firehose traffic");
    describe_counter!(
        STORE_WRITES,
        "Execution store write transactions, by outcome"
    );
    describe_counter!(
        STORE_DROPPED,
        "Spans or logs not stored: the store queue was full"
    );
    describe_histogram!(
        STORE_WRITE_DURATION,
        Unit::Seconds,
        "One store write transaction"
    );
    describe_gauge!(STORE_EXECUTIONS, "Executions held in the store");
    describe_counter!(
        STORE_PRUNED,
        "Executions deleted by retention or the size bound"
    );
    describe_gauge!(
        STORE_UP,
        "1 when the store is open and its last write succeeded"
    );
    describe_counter!(API_REQUESTS, "UI API requests, by route and outcome");
    describe_counter!(AWS_CALLS, "Step Functions API calls, by call and outcome");
    describe_counter!(
        AWS_ACTIONS,
        "Retry, redrive and stop actions, by action and result"
    );
    describe_counter!(
        BACKFILL_SKIPPED_EVENTS,
        "Backfill events dropped: their execution was stored already"
    );
    describe_gauge!(CLUSTER_MODE, "1 in cluster mode (NATS JetStream)");
    describe_gauge!(CLUSTER_OWNED_PARTITIONS, "Partitions this replica owns");
    describe_counter!(CLUSTER_LEASE_CHANGES, "Partition lease changes, by kind");
    describe_histogram!(
        CLUSTER_PUBLISH_DURATION,
        Unit::Seconds,
        "A Firehose request's events published to JetStream, until every PubAck"
    );
    describe_counter!(
        CLUSTER_PUBLISHED,
        "Messages published to JetStream, by outcome"
    );
    describe_gauge!(
        CLUSTER_PARTITION_LAG,
        "Messages stored for an owned partition and not applied yet"
    );
    describe_counter!(
        CLUSTER_APPLIED,
        "Messages applied by this replica's partition owners"
    );
    describe_counter!(CLUSTER_CHECKPOINTS, "Partition checkpoints, by outcome");
    describe_counter!(
        CLUSTER_ACKS_LOADED,
        "Acknowledgements of earlier owners loaded when taking a partition"
    );
    describe_counter!(
        CLUSTER_ACKS_WRITTEN,
        "Acknowledgement records written to JetStream"
    );
    describe_counter!(
        CLUSTER_JOIN_HINTS,
        "Join hints shared across replicas, by direction"
    );
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Structured logs to stderr. `filter` is an `EnvFilter` directive string.
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    result.map_err(|e| e.to_string())
}
