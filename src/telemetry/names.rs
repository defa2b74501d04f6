//! Self-metric names, in one place so docs and code agree. Labels are
//! low-cardinality by construction: status codes and fixed reason sets.

/// Counter `{status}`: Firehose requests answered, by HTTP status.
pub const FIREHOSE_REQUESTS: &str = "stepstitch_firehose_requests_total";
/// Counter `{reason}`: requests refused, by `FirehoseError::reason`.
pub const FIREHOSE_REJECTIONS: &str = "stepstitch_firehose_rejections_total";
/// Histogram (seconds): time from request start to response.
pub const FIREHOSE_REQUEST_DURATION: &str = "stepstitch_firehose_request_duration_seconds";
/// Counter `{encoding}`: request body bytes as received (`gzip` or `identity`).
pub const FIREHOSE_BYTES_RECEIVED: &str = "stepstitch_firehose_bytes_received_total";
/// Counter: record bytes after base64 and gunzip.
pub const FIREHOSE_BYTES_DECODED: &str = "stepstitch_firehose_bytes_decoded_total";
/// Counter `{kind}`: records by what they held.
pub const FIREHOSE_RECORDS: &str = "stepstitch_firehose_records_total";
/// Counter: CloudWatch Logs CONTROL_MESSAGE envelopes dropped.
pub const FIREHOSE_CONTROL_MESSAGES: &str = "stepstitch_firehose_control_messages_total";
/// Counter: CloudWatch log events seen inside DATA_MESSAGE envelopes.
pub const FIREHOSE_LOG_EVENTS: &str = "stepstitch_firehose_log_events_total";
/// Counter `{reason}`: records or log messages skipped.
pub const DECODE_FAILURES: &str = "stepstitch_decode_failures_total";
/// Counter: Step Functions events decoded.
pub const EVENTS_DECODED: &str = "stepstitch_events_decoded_total";
/// Counter: events taken from the hand-off by the next stage.
pub const EVENTS_CONSUMED: &str = "stepstitch_events_consumed_total";
/// Gauge: events accepted and not yet processed.
pub const HANDOFF_QUEUED_EVENTS: &str = "stepstitch_handoff_queued_events";
/// Gauge: capacity of the hand-off in events.
pub const HANDOFF_CAPACITY_EVENTS: &str = "stepstitch_handoff_capacity_events";
/// Gauge: bytes of accepted request bodies waiting for a decode worker.
pub const DECODE_QUEUE_BYTES: &str = "stepstitch_decode_queue_bytes";
/// Gauge: capacity of the decode queue in bytes.
pub const DECODE_QUEUE_CAPACITY_BYTES: &str = "stepstitch_decode_queue_capacity_bytes";
/// Counter: accepted requests fully decoded by the decode workers.
pub const REQUESTS_DECODED: &str = "stepstitch_requests_decoded_total";
/// Counter: malformed common-attributes headers ignored.
pub const COMMON_ATTRIBUTES_INVALID: &str = "stepstitch_firehose_common_attributes_invalid_total";
/// Counter: common-attribute entries dropped for breaking the protocol limits.
pub const COMMON_ATTRIBUTES_DROPPED: &str = "stepstitch_firehose_common_attributes_dropped_total";
/// Counter: body requestId differing from the header (the header wins).
pub const REQUEST_ID_MISMATCH: &str = "stepstitch_firehose_request_id_mismatch_total";
/// Counter: protocol versions other than 1.0 (accepted, warned).
pub const PROTOCOL_VERSION_UNEXPECTED: &str =
    "stepstitch_firehose_protocol_version_unexpected_total";
/// Counter `{result}`: access-key file reloads (`changed`, `error`).
pub const ACCESS_KEYS_RELOADS: &str = "stepstitch_access_keys_reloads_total";
/// Gauge: access keys active now.
pub const ACCESS_KEYS_ACTIVE: &str = "stepstitch_access_keys_active";
/// Gauge: 1 once ready, 0 otherwise.
pub const READY: &str = "stepstitch_ready";
/// Counter: spans emitted by the stitcher.
pub const SPANS_EMITTED: &str = "stepstitch_spans_emitted_total";
/// Counter `{exporter}`: spans written by an exporter.
pub const SPANS_EXPORTED: &str = "stepstitch_spans_exported_total";
/// Counter `{exporter}`: export write failures.
pub const EXPORT_ERRORS: &str = "stepstitch_export_errors_total";
/// Counter: open executions flushed early to keep memory under its bound.
pub const STITCH_EVICTIONS: &str = "stepstitch_stitch_evictions_total";
/// Counter: executions emitted without a terminal event.
pub const STITCH_INCOMPLETE: &str = "stepstitch_stitch_incomplete_executions_total";
/// Gauge: executions open in the stitcher.
pub const STITCH_OPEN_EXECUTIONS: &str = "stepstitch_stitch_open_executions";
/// Gauge: emitted executions remembered for late events.
pub const STITCH_RETAINED_EXECUTIONS: &str = "stepstitch_stitch_retained_executions";
/// Gauge (monotonic, read from the shards at scrape): events seen again, deduplicated.
pub const STITCH_DUPLICATE_EVENTS: &str = "stepstitch_stitch_duplicate_events";
/// Gauge (monotonic): events that arrived after their execution was emitted.
pub const STITCH_LATE_EVENTS: &str = "stepstitch_stitch_late_events";
/// Gauge (monotonic): events whose causal parent never arrived.
pub const STITCH_ORPHANED_EVENTS: &str = "stepstitch_stitch_orphaned_events";
/// Counter: enhanced metric samples stamped at processing time because their
/// event time was outside what the series intake accepts.
pub const METRICS_RESTAMPED: &str = "stepstitch_metrics_restamped_total";
/// Counter: metric series dropped unflushed to keep the aggregator bounded.
pub const METRICS_DROPPED: &str = "stepstitch_metrics_dropped_total";
/// Counter `{exporter, signal}`: items (spans, metric points, logs) delivered.
pub const EXPORT_ITEMS_SENT: &str = "stepstitch_export_items_sent_total";
/// Counter `{exporter, signal, reason}`: items dropped by an allowed policy
/// (`rejected` 4xx, `too_large`, `shutdown`, `encode`).
pub const EXPORT_ITEMS_DROPPED: &str = "stepstitch_export_items_dropped_total";
/// Counter `{exporter, signal, outcome}`: export HTTP requests by outcome
/// (`ok`, `retry`, `rejected`, `split`, `network`).
pub const EXPORT_REQUESTS: &str = "stepstitch_export_requests_total";
/// Gauge `{exporter}`: bytes buffered for an exporter (bounded by
/// STEPSTITCH_EXPORT_BUFFER_BYTES).
pub const EXPORT_BUFFERED_BYTES: &str = "stepstitch_export_buffered_bytes";
/// Histogram `{exporter, signal}` (seconds): time to deliver one request, retries included.
pub const EXPORT_DELIVERY_DURATION: &str = "stepstitch_export_delivery_duration_seconds";
/// Gauge: bytes of write-ahead log on disk (bounded by STEPSTITCH_DATA_MAX_BYTES).
pub const WAL_BYTES: &str = "stepstitch_wal_bytes";
/// Counter: bytes appended to the write-ahead log.
pub const WAL_APPENDED_BYTES: &str = "stepstitch_wal_appended_bytes_total";
/// Histogram (seconds): one group commit (write + fdatasync).
pub const WAL_COMMIT_DURATION: &str = "stepstitch_wal_commit_duration_seconds";
/// Histogram: requests sharing one group commit.
pub const WAL_GROUP_RECORDS: &str = "stepstitch_wal_group_records";
/// Counter `{reason}`: requests answered 503 because they could not be made
/// durable (`disk_bound`, `disk_full`, `io`).
pub const WAL_REFUSED: &str = "stepstitch_wal_refused_total";
/// Counter `{outcome}`: snapshots written (`ok`, `error`).
pub const SNAPSHOTS: &str = "stepstitch_snapshots_total";
/// Gauge: age in seconds of the last snapshot written.
pub const SNAPSHOT_AGE: &str = "stepstitch_snapshot_age_seconds";
/// Gauge: bytes of the last snapshot.
pub const SNAPSHOT_BYTES: &str = "stepstitch_snapshot_bytes";
/// Counter: WAL records replayed at start.
pub const RECOVERY_RECORDS: &str = "stepstitch_recovery_records_total";
/// Counter: bytes dropped at start from a torn or corrupt log tail.
pub const RECOVERY_DROPPED_BYTES: &str = "stepstitch_recovery_dropped_bytes_total";
/// Counter `{exporter, signal}`: items not sent again after a restart because
/// the exporter had acknowledged them before it.
pub const EXPORT_DEDUPLICATED: &str = "stepstitch_export_deduplicated_total";
/// Gauge: emissions waiting for every exporter's acknowledgement.
pub const EXPORT_UNACKED_EMISSIONS: &str = "stepstitch_export_unacked_emissions";
/// Counter `{outcome}`: store write transactions (`ok`, `error`).
pub const STORE_WRITES: &str = "stepstitch_store_writes_total";
/// Counter `{signal}`: spans or logs not stored because the store's queue
/// was full (they are exported all the same).
pub const STORE_DROPPED: &str = "stepstitch_store_dropped_total";
/// Histogram (seconds): one store write transaction.
pub const STORE_WRITE_DURATION: &str = "stepstitch_store_write_duration_seconds";
/// Gauge: executions held in the store.
pub const STORE_EXECUTIONS: &str = "stepstitch_store_executions";
/// Counter: executions deleted by retention or the size bound.
pub const STORE_PRUNED: &str = "stepstitch_store_pruned_total";
/// Gauge: 1 when the store opened and its last write succeeded, 0 otherwise.
pub const STORE_UP: &str = "stepstitch_store_up";
/// Counter `{route, outcome}`: UI API requests refused (`unauthorised`,
/// `cross_site`) or answered.
pub const API_REQUESTS: &str = "stepstitch_api_requests_total";
/// Counter `{call, outcome}`: Step Functions API calls (`ok`, `denied`,
/// `throttled`, `not_found`, `budget`, ...).
pub const AWS_CALLS: &str = "stepstitch_aws_calls_total";
/// Counter `{action, result}`: retry, redrive and stop asked through the
/// API (every one is also an audit log line).
pub const AWS_ACTIONS: &str = "stepstitch_aws_actions_total";
/// Counter: events of backfill requests dropped because their execution
/// is already in the store (a re-run, or live delivery came first).
pub const BACKFILL_SKIPPED_EVENTS: &str = "stepstitch_backfill_skipped_events_total";
/// Gauge: 1 in cluster mode.
pub const CLUSTER_MODE: &str = "stepstitch_cluster_mode";
/// Gauge: partitions this replica owns.
pub const CLUSTER_OWNED_PARTITIONS: &str = "stepstitch_cluster_owned_partitions";
/// Counter `{change}`: lease changes (`acquired`, `released`, `lost`).
pub const CLUSTER_LEASE_CHANGES: &str = "stepstitch_cluster_lease_changes_total";
/// Histogram (seconds): a Firehose request's events published to
/// JetStream, first send to last acknowledgement.
pub const CLUSTER_PUBLISH_DURATION: &str = "stepstitch_cluster_publish_duration_seconds";
/// Counter `{outcome}`: messages published (`stored`, `duplicate`, `error`).
pub const CLUSTER_PUBLISHED: &str = "stepstitch_cluster_published_messages_total";
/// Gauge `{partition}`: messages stored for an owned partition and not
/// applied yet (the owner's lag; while it replays, its replay left).
pub const CLUSTER_PARTITION_LAG: &str = "stepstitch_cluster_partition_lag_messages";
/// Counter: messages applied by this replica's partition owners.
pub const CLUSTER_APPLIED: &str = "stepstitch_cluster_applied_messages_total";
/// Counter `{outcome}`: partition checkpoints (`ok`, `error`).
pub const CLUSTER_CHECKPOINTS: &str = "stepstitch_cluster_checkpoints_total";
/// Counter: acknowledgements loaded from earlier owners when taking a
/// partition (their items are not sent again).
pub const CLUSTER_ACKS_LOADED: &str = "stepstitch_cluster_acks_loaded_total";
/// Counter `{outcome}`: acknowledgement records written to JetStream
/// (`ok`, `retried`).
pub const CLUSTER_ACKS_WRITTEN: &str = "stepstitch_cluster_acks_written_total";
/// Counter: join hints shared with or received from other replicas
/// (`direction`: `sent`, `received`).
pub const CLUSTER_JOIN_HINTS: &str = "stepstitch_cluster_join_hints_total";
