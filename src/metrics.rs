//! Every metric name sluice exports, in one place (prefix `sluice_`). Labels never carry a record key, a file name
//! or any field value: only source, sink, actor, edge, outcome and state names from configuration and code.

/// Gauge: messages waiting or being handled on a data edge.
pub const EDGE_DEPTH: &str = "sluice_edge_depth";
/// Gauge (cumulative seconds): time senders spent waiting for room on a data edge.
pub const EDGE_BACKPRESSURE_SECONDS: &str = "sluice_edge_backpressure_seconds";
/// Counter: data rows read, by source and outcome (new, changed, unchanged, duplicate, conflict, rejected).
pub const ROWS: &str = "sluice_rows_total";
/// Counter: rows rejected, by source and reason.
pub const ROWS_REJECTED: &str = "sluice_rows_rejected_total";
/// Counter: records absent from a snapshot, by source.
pub const ROWS_REMOVED: &str = "sluice_rows_removed_total";
/// Counter: events appended to the event log, by source and kind.
pub const EVENTS_WRITTEN: &str = "sluice_events_written_total";
/// Histogram: seconds from a snapshot's admission to its last commit, by source.
pub const SNAPSHOT_DURATION: &str = "sluice_snapshot_duration_seconds";
/// Gauge: unix time of the last successfully ingested snapshot, by source.
pub const SNAPSHOT_LAST_SUCCESS: &str = "sluice_snapshot_last_success_timestamp_seconds";
/// Counter: files by source and final ledger status.
pub const FILES: &str = "sluice_files_total";
/// Counter: delivery attempts, by sink and status class (2xx, 4xx, 5xx, timeout, connect, io).
pub const ATTEMPTS: &str = "sluice_delivery_attempts_total";
/// Counter: deliveries completed, by sink.
pub const DELIVERED: &str = "sluice_deliveries_completed_total";
/// Gauge: 1 while a sink is paused.
pub const SINK_PAUSED: &str = "sluice_sink_paused";

/// Buckets of the snapshot duration histogram, in seconds.
pub const SNAPSHOT_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Counter: restarts by the supervisor, by actor kind (`watcher`, `parser`, `dedupe`, `writer`, `delivery`,
/// `reaper`, `admin`).
pub const ACTOR_RESTARTS: &str = "sluice_actor_restarts_total";
