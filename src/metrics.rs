//! Every metric sluice exports, in one place: names, labels, the closed sets of label values, histogram buckets,
//! and one small function per thing the pipeline records, so that a call site cannot misspell a name or invent a
//! label. `docs/METRICS.md` is the contract (naming rules, then every series); a test holds the two together.
//!
//! Labels never carry a record key, a file name or any field value: only source and sink names from
//! configuration, and actor, edge, outcome, reason, kind, status, state and class names from the code.
//!
//! [`install`] puts the Prometheus recorder in place once per process; the admin server serves [`render`] at
//! `GET /metrics`. Figures that live elsewhere are read when needed: edge figures and readiness at each scrape
//! ([`scrape_edges`], [`scrape_ready`]), the outbox and ledger figures by a periodic query ([`poll_database`]).

mod collect;
mod exporter;

pub use collect::{poll_database, POLL_PERIOD};
pub use exporter::{install, render};

use crate::mailbox::EdgeStats;
use crate::snapshot::Counts;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

// ---- Label names ----------------------------------------------------------------------------------------------

/// A configured source's name.
pub const SOURCE: &str = "source";
/// A configured sink's name.
pub const SINK: &str = "sink";
/// An actor kind, one of [`ACTORS`].
pub const ACTOR: &str = "actor";
/// A data edge, one of [`EDGES`].
pub const EDGE: &str = "edge";
/// A row's classification, one of [`OUTCOMES`].
pub const OUTCOME: &str = "outcome";
/// A reject reason (`RejectReason::as_str`).
pub const REASON: &str = "reason";
/// An event kind: `new`, `changed`, `removed`.
pub const KIND: &str = "kind";
/// A file's final ledger status, one of [`FILE_STATUSES`].
pub const STATUS: &str = "status";
/// A delivery state, one of [`DELIVERY_STATES`].
pub const STATE: &str = "state";
/// An attempt's status class, one of [`ATTEMPT_CLASSES`].
pub const CLASS: &str = "class";

// ---- Closed sets of label values ------------------------------------------------------------------------------

/// Actor kinds (SPEC §2).
pub const ACTORS: &[&str] = &[
    "watcher", "parser", "dedupe", "writer", "delivery", "reaper", "admin",
];
/// Data edges: (name, sending actor, receiving actor). The writer's mailbox also carries the parser's
/// file-level messages (begin, rejects, finalize); those count as sent by the parser.
pub const EDGES: &[(&str, &str, &str)] = &[
    ("watcher_to_parser", "watcher", "parser"),
    ("parser_to_dedupe", "parser", "dedupe"),
    ("dedupe_to_writer", "dedupe", "writer"),
];
/// Row outcomes (SPEC §1); `removed` has a counter of its own, as removed keys are not rows of the file.
pub const OUTCOMES: &[&str] = &[
    "new",
    "changed",
    "unchanged",
    "duplicate",
    "conflict",
    "rejected",
];
/// Final ledger statuses a file is counted under.
pub const FILE_STATUSES: &[&str] = &["done", "failed", "duplicate_file", "superseded"];
/// Delivery states counted by the periodic query: the open ones, and `dead` (which waits for an operator).
/// Terminal states grow without bound and are counted as they happen instead (`sluice_deliveries_completed_total`).
pub const DELIVERY_STATES: &[&str] = &["available", "retryable", "executing", "dead"];
/// Attempt classes: the HTTP status class, `ok` (completed without an HTTP status: the file sink), or why no
/// answer came: `timeout`, `connect`, `io` (any other failure to send or write).
pub const ATTEMPT_CLASSES: &[&str] =
    &["2xx", "3xx", "4xx", "5xx", "ok", "timeout", "connect", "io"];

// ---- Names ----------------------------------------------------------------------------------------------------

/// Counter: data rows read, by source and outcome.
pub const ROWS: &str = "sluice_rows_total";
/// Counter: rows rejected, by source and reason.
pub const ROWS_REJECTED: &str = "sluice_rows_rejected_total";
/// Counter: records absent from a snapshot, by source.
pub const ROWS_REMOVED: &str = "sluice_rows_removed_total";
/// Counter: events appended to the event log, by source and kind.
pub const EVENTS_WRITTEN: &str = "sluice_events_written_total";
/// Counter: files by source and final ledger status.
pub const FILES: &str = "sluice_files_total";
/// Histogram: seconds from a snapshot's admission to its last commit, by source.
pub const SNAPSHOT_DURATION: &str = "sluice_snapshot_duration_seconds";
/// Gauge: unix time of the last successfully ingested snapshot, by source.
pub const SNAPSHOT_LAST_SUCCESS: &str = "sluice_snapshot_last_success_timestamp_seconds";

/// Counter: data messages (or units of work) an actor kind took in.
pub const ACTOR_RECEIVED: &str = "sluice_actor_messages_received_total";
/// Counter: data messages (or requests) an actor kind sent on.
pub const ACTOR_SENT: &str = "sluice_actor_messages_sent_total";
/// Counter: failures of an actor kind's work.
pub const ACTOR_ERRORS: &str = "sluice_actor_errors_total";
/// Counter: actor restarts by the supervisor, by actor kind.
pub const ACTOR_RESTARTS: &str = "sluice_actor_restarts_total";

/// Gauge: messages waiting or being handled on a data edge (summed over its mailboxes).
pub const EDGE_DEPTH: &str = "sluice_edge_depth";
/// Gauge: messages a data edge holds at most (summed over its mailboxes).
pub const EDGE_CAPACITY: &str = "sluice_edge_capacity";
/// Cumulative seconds senders spent waiting for room on a data edge.
pub const EDGE_BACKPRESSURE_SECONDS: &str = "sluice_edge_backpressure_seconds_total";

/// Gauge: deliveries by sink and state (periodic query).
pub const DELIVERIES: &str = "sluice_deliveries";
/// Gauge: age of the oldest delivery waiting to be sent (available or retryable), by sink (periodic query).
pub const OLDEST_AVAILABLE_AGE: &str = "sluice_delivery_oldest_available_age_seconds";
/// Counter: delivery attempts, by sink and class.
pub const ATTEMPTS: &str = "sluice_delivery_attempts_total";
/// Histogram: seconds an attempt took, by sink.
pub const ATTEMPT_DURATION: &str = "sluice_delivery_attempt_duration_seconds";
/// Counter: deliveries completed, by sink.
pub const DELIVERED: &str = "sluice_deliveries_completed_total";
/// Histogram: seconds from an event's commit to its delivery's completion, by sink.
pub const DELIVERY_LATENCY: &str = "sluice_delivery_latency_seconds";
/// Gauge: 1 while a sink is paused.
pub const SINK_PAUSED: &str = "sluice_sink_paused";

/// Gauge: 1 when migrated, connected and not draining (as `/readyz`).
pub const READY: &str = "sluice_ready";

// ---- Histogram buckets ----------------------------------------------------------------------------------------

/// Snapshot duration: a steady-state snapshot commits in under a second, a first load in seconds, a stalled one
/// in minutes.
pub const SNAPSHOT_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];
/// Commit to completion: tens of milliseconds when idle (SPEC §9), up to hours behind retries and outages.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    14400.0,
];
/// One attempt: a local API answers in a millisecond; the attempt timeout defaults to 30 s.
pub const ATTEMPT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every histogram and its buckets. A histogram missing here would be exported as a summary; a test forbids it.
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (SNAPSHOT_DURATION, SNAPSHOT_BUCKETS),
    (DELIVERY_LATENCY, LATENCY_BUCKETS),
    (ATTEMPT_DURATION, ATTEMPT_BUCKETS),
];

// ---- The catalogue --------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: what `# HELP` says and what docs/METRICS.md documents.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Type,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: Type,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

/// Every metric sluice exports.
#[rustfmt::skip]
pub const METRICS: &[Metric] = &[
    m(ROWS, Type::Counter, &[SOURCE, OUTCOME], "Data rows read, by outcome."),
    m(ROWS_REJECTED, Type::Counter, &[SOURCE, REASON], "Rows rejected, by reason."),
    m(ROWS_REMOVED, Type::Counter, &[SOURCE], "Committed records absent from a snapshot."),
    m(EVENTS_WRITTEN, Type::Counter, &[SOURCE, KIND], "Events appended to the event log."),
    m(FILES, Type::Counter, &[SOURCE, STATUS], "Files closed in the ledger, by final status."),
    m(SNAPSHOT_DURATION, Type::Histogram, &[SOURCE], "Seconds from a snapshot's admission to its last commit."),
    m(SNAPSHOT_LAST_SUCCESS, Type::Gauge, &[SOURCE], "Unix time of the last snapshot ingested successfully."),
    m(ACTOR_RECEIVED, Type::Counter, &[ACTOR], "Data messages or units of work an actor kind took in."),
    m(ACTOR_SENT, Type::Counter, &[ACTOR], "Data messages or requests an actor kind sent on."),
    m(ACTOR_ERRORS, Type::Counter, &[ACTOR], "Failures of an actor kind's work."),
    m(ACTOR_RESTARTS, Type::Counter, &[ACTOR], "Actor restarts by the supervisor."),
    m(EDGE_DEPTH, Type::Gauge, &[EDGE], "Messages waiting or being handled on a data edge."),
    m(EDGE_CAPACITY, Type::Gauge, &[EDGE], "Messages a data edge holds at most."),
    m(EDGE_BACKPRESSURE_SECONDS, Type::Gauge, &[EDGE], "Cumulative seconds senders waited for room on a data edge."),
    m(DELIVERIES, Type::Gauge, &[SINK, STATE], "Deliveries by state (open states and dead), database-wide."),
    m(OLDEST_AVAILABLE_AGE, Type::Gauge, &[SINK], "Age of the oldest delivery waiting to be sent, database-wide."),
    m(ATTEMPTS, Type::Counter, &[SINK, CLASS], "Delivery attempts, by status class."),
    m(ATTEMPT_DURATION, Type::Histogram, &[SINK], "Seconds a delivery attempt took."),
    m(DELIVERED, Type::Counter, &[SINK], "Deliveries completed."),
    m(DELIVERY_LATENCY, Type::Histogram, &[SINK], "Seconds from an event's commit to its delivery's completion."),
    m(SINK_PAUSED, Type::Gauge, &[SINK], "1 while the sink is paused."),
    m(READY, Type::Gauge, &[], "1 when migrated, connected and not draining."),
];

// ---- Recording ------------------------------------------------------------------------------------------------

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A snapshot's rows, once it is committed.
pub fn rows(source: &str, c: &Counts) {
    for (outcome, n) in [
        ("new", c.new),
        ("changed", c.changed),
        ("unchanged", c.unchanged),
        ("duplicate", c.duplicate),
        ("conflict", c.conflict),
        ("rejected", c.rejected),
    ] {
        metrics::counter!(ROWS, SOURCE => source.to_string(), OUTCOME => outcome).increment(n);
    }
    metrics::counter!(ROWS_REMOVED, SOURCE => source.to_string()).increment(c.removed);
}

/// Rejected rows of one reason, as the parser finds them.
pub fn rows_rejected(source: &str, reason: &'static str, n: u64) {
    metrics::counter!(ROWS_REJECTED, SOURCE => source.to_string(), REASON => reason).increment(n);
}

/// Events committed to the event log.
pub fn events_written(source: &str, kind: &'static str, n: u64) {
    metrics::counter!(EVENTS_WRITTEN, SOURCE => source.to_string(), KIND => kind).increment(n);
}

/// A file closed in the ledger with `status` (one of [`FILE_STATUSES`]).
pub fn file_closed(source: &str, status: &'static str) {
    debug_assert!(FILE_STATUSES.contains(&status), "{status}");
    metrics::counter!(FILES, SOURCE => source.to_string(), STATUS => status).increment(1);
}

/// A snapshot ingested successfully in `seconds`.
pub fn snapshot_succeeded(source: &str, seconds: f64) {
    metrics::histogram!(SNAPSHOT_DURATION, SOURCE => source.to_string()).record(seconds);
    metrics::gauge!(SNAPSHOT_LAST_SUCCESS, SOURCE => source.to_string()).set(unix_now());
}

/// `n` messages (or units of work) taken in by an actor of kind `actor`.
pub fn actor_received(actor: &'static str, n: u64) {
    metrics::counter!(ACTOR_RECEIVED, ACTOR => actor).increment(n);
}

/// `n` messages (or requests) sent on by an actor of kind `actor`.
pub fn actor_sent(actor: &'static str, n: u64) {
    metrics::counter!(ACTOR_SENT, ACTOR => actor).increment(n);
}

/// A failure of an actor of kind `actor`.
pub fn actor_error(actor: &'static str) {
    metrics::counter!(ACTOR_ERRORS, ACTOR => actor).increment(1);
}

/// A restart of an actor of kind `actor` by its supervisor.
pub fn actor_restarted(actor: &'static str) {
    metrics::counter!(ACTOR_RESTARTS, ACTOR => actor).increment(1);
}

/// The sending and receiving actor kinds of a data edge.
pub fn edge_ends(edge: &str) -> (&'static str, &'static str) {
    EDGES
        .iter()
        .find(|(name, ..)| *name == edge)
        .map_or(("unknown", "unknown"), |(_, from, to)| (*from, *to))
}

/// The class of an attempt's answer, one of [`ATTEMPT_CLASSES`].
pub fn attempt_class(status: Option<i32>, completed: bool, error: Option<&str>) -> &'static str {
    match (status, error) {
        (Some(s), _) => match s / 100 {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            5 => "5xx",
            _ => "io",
        },
        (None, _) if completed => "ok",
        (None, Some(crate::delivery::ERROR_TIMEOUT)) => "timeout",
        (None, Some(crate::delivery::ERROR_CONNECT)) => "connect",
        (None, _) => "io",
    }
}

/// One delivery attempt of `sink`.
pub fn attempt(sink: &str, class: &'static str, seconds: f64) {
    metrics::counter!(ATTEMPTS, SINK => sink.to_string(), CLASS => class).increment(1);
    metrics::histogram!(ATTEMPT_DURATION, SINK => sink.to_string()).record(seconds);
}

/// Deliveries of `sink` completed, each with the seconds since its event was committed.
pub fn delivered(sink: &str, latencies: &[f64]) {
    metrics::counter!(DELIVERED, SINK => sink.to_string()).increment(latencies.len() as u64);
    let histogram = metrics::histogram!(DELIVERY_LATENCY, SINK => sink.to_string());
    for s in latencies {
        histogram.record(*s);
    }
}

/// A sink paused (by the auto-pause or an operator) or resumed.
pub fn sink_paused(sink: &str, paused: bool) {
    metrics::gauge!(SINK_PAUSED, SINK => sink.to_string()).set(if paused { 1.0 } else { 0.0 });
}

// ---- Read at scrape time --------------------------------------------------------------------------------------

/// Readiness, as `/readyz` answers it.
pub fn scrape_ready(ready: bool) {
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// Depth, capacity and back-pressure of every data edge, each summed over the edge's mailboxes (one per shard
/// for `parser_to_dedupe`).
pub fn scrape_edges(edges: &[Arc<EdgeStats>]) {
    let mut sums: BTreeMap<&'static str, (usize, usize, f64)> = EDGES
        .iter()
        .map(|(name, ..)| (*name, (0, 0, 0.0)))
        .collect();
    for e in edges {
        let s = e.snapshot();
        let sum = sums.entry(s.name).or_default();
        sum.0 += s.depth;
        sum.1 += s.capacity;
        sum.2 += s.backpressure_seconds;
    }
    for (edge, (depth, capacity, waited)) in sums {
        metrics::gauge!(EDGE_DEPTH, EDGE => edge).set(depth as f64);
        metrics::gauge!(EDGE_CAPACITY, EDGE => edge).set(capacity as f64);
        metrics::gauge!(EDGE_BACKPRESSURE_SECONDS, EDGE => edge).set(waited);
    }
}

#[cfg(test)]
mod tests;
