//! The outbox as an operator browses it (`/admin/deliveries`): state, attempts and answers of each delivery, never
//! its payload. Record keys appear only as short hashes ([`crate::snapshot::short_key`]).

use crate::error::DbError;
use serde::Serialize;
use std::time::SystemTime;

/// Every state a delivery can be in (the `deliveries.state` check constraint).
pub const STATES: [&str; 8] = [
    "available",
    "executing",
    "completed",
    "retryable",
    "dead",
    "superseded",
    "cancelled",
    "ignored",
];

/// One delivery, free of PHI: no payload, no key.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeliveryRow {
    pub id: i64,
    pub sink: String,
    pub source: String,
    pub event_id: uuid::Uuid,
    /// A short, non-reversible label of the record key: the same record shows the same label.
    pub key_hash: String,
    pub version: i32,
    /// `new`, `changed` or `removed`.
    pub kind: Option<String>,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: String,
    pub last_status: Option<i32>,
    /// The last answer's error class (short, free of PHI).
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

/// Which deliveries to list: keyset paging on id, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<String>,
    pub sink: Option<String>,
    /// Only ids greater than this.
    pub after: Option<i64>,
    pub limit: i64,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

const DELIVERY_COLUMNS: &str = "d.id, d.sink, d.source, d.event_id, d.key_hash, d.version, e.kind, d.state, \
     d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.updated_at, d.completed_at";

fn delivery_row(r: &tokio_postgres::Row) -> DeliveryRow {
    DeliveryRow {
        id: r.get(0),
        sink: r.get(1),
        source: r.get(2),
        event_id: r.get(3),
        key_hash: crate::snapshot::short_key(r.get::<_, i64>(4) as u64),
        version: r.get(5),
        kind: r.get(6),
        state: r.get(7),
        attempts: r.get(8),
        next_attempt_at: rfc3339(r.get(9)),
        last_status: r.get(10),
        last_error: r.get(11),
        created_at: rfc3339(r.get(12)),
        updated_at: rfc3339(r.get(13)),
        completed_at: r.get::<_, Option<SystemTime>>(14).map(rfc3339),
    }
}

/// Deliveries matching `f`, by id.
pub async fn list(c: &tokio_postgres::Client, f: &Filter) -> Result<Vec<DeliveryRow>, DbError> {
    let rows = c
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN events e ON e.seq = d.event_seq
                  WHERE ($1::text IS NULL OR d.state = $1) AND ($2::text IS NULL OR d.sink = $2)
                    AND ($3::bigint IS NULL OR d.id > $3)
                  ORDER BY d.id LIMIT $4"
            ),
            &[&f.state, &f.sink, &f.after, &f.limit],
        )
        .await
        .map_err(|e| DbError::query("listing deliveries", e))?;
    Ok(rows.iter().map(delivery_row).collect())
}

/// One audited attempt of a delivery.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttemptRow {
    pub attempt: i32,
    pub started_at: String,
    pub duration_ms: i32,
    pub status: Option<i32>,
    pub outcome: String,
    pub error: Option<String>,
    /// Status, size and content type of the answer, never its body.
    pub response: Option<String>,
}

/// One delivery and its attempts, oldest first.
pub async fn get(
    c: &tokio_postgres::Client,
    id: i64,
) -> Result<Option<(DeliveryRow, Vec<AttemptRow>)>, DbError> {
    let Some(row) = c
        .query_opt(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN events e ON e.seq = d.event_seq
                  WHERE d.id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(|e| DbError::query("reading a delivery", e))?
    else {
        return Ok(None);
    };
    let attempts = c
        .query(
            "SELECT attempt, started_at, duration_ms, status_code, outcome, error, response_excerpt
               FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .map_err(|e| DbError::query("reading a delivery's attempts", e))?
        .iter()
        .map(|r| AttemptRow {
            attempt: r.get(0),
            started_at: rfc3339(r.get(1)),
            duration_ms: r.get(2),
            status: r.get(3),
            outcome: r.get(4),
            error: r.get(5),
            response: r.get(6),
        })
        .collect();
    Ok(Some((delivery_row(&row), attempts)))
}

/// The state of a delivery, if it exists.
pub async fn state(c: &tokio_postgres::Client, id: i64) -> Result<Option<String>, DbError> {
    Ok(
        c.query_opt("SELECT state FROM deliveries WHERE id = $1", &[&id])
            .await
            .map_err(|e| DbError::query("reading a delivery", e))?
            .map(|r| r.get(0)),
    )
}

/// Deliveries of one sink by state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SinkSummary {
    pub sink: String,
    /// Count per state; every state is present, zero or not.
    pub states: std::collections::BTreeMap<String, i64>,
    /// Age in seconds of the oldest delivery still waiting (available or retryable).
    pub oldest_waiting_seconds: Option<f64>,
}

/// Counts by state for every sink that has deliveries, and for `sinks` (the configured ones) even when empty.
pub async fn summary(
    c: &tokio_postgres::Client,
    sinks: &[String],
) -> Result<Vec<SinkSummary>, DbError> {
    let rows = c
        .query(
            "SELECT sink, state, count(*),
                    extract(epoch FROM now() - min(created_at)
                                 FILTER (WHERE state IN ('available', 'retryable')))::float8
               FROM deliveries GROUP BY sink, state ORDER BY sink",
            &[],
        )
        .await
        .map_err(|e| DbError::query("counting deliveries", e))?;
    let mut out: Vec<SinkSummary> = Vec::new();
    let empty = |sink: &str| SinkSummary {
        sink: sink.to_string(),
        states: STATES.iter().map(|s| (s.to_string(), 0)).collect(),
        oldest_waiting_seconds: None,
    };
    for s in sinks {
        out.push(empty(s));
    }
    for r in &rows {
        let sink: String = r.get(0);
        let i = match out.iter().position(|s| s.sink == sink) {
            Some(i) => i,
            None => {
                out.push(empty(&sink));
                out.len() - 1
            }
        };
        let entry = &mut out[i];
        entry.states.insert(r.get(1), r.get(2));
        if let Some(age) = r.get::<_, Option<f64>>(3) {
            entry.oldest_waiting_seconds =
                Some(entry.oldest_waiting_seconds.map_or(age, |a| a.max(age)));
        }
    }
    Ok(out)
}
