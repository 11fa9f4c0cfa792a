//! The outbox in SQL: claims under leases, completions fenced by attempt number, retries, lease expiry.

use crate::error::DbError;
use crate::sinks::EventRecord;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// A delivery claimed by this instance.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    /// The attempt number this claim is; a finisher must still hold it for its answer to count (fencing).
    pub attempt: i32,
    pub event_id: Uuid,
    /// Where the event is: `events.seq`.
    pub event_seq: i64,
    pub idempotency_key: Uuid,
}

fn q(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
    move |e| DbError::query(context, e)
}

/// Claims up to `limit` due deliveries of `sink`, oldest first, skipping rows other instances hold, and any row
/// with an earlier version of the same key still pending (versions of a key are delivered in order).
pub async fn claim(
    c: &tokio_postgres::Client,
    sink: &str,
    owner: &str,
    lease: Duration,
    limit: i64,
    now: SystemTime,
) -> Result<Vec<Claimed>, DbError> {
    let rows = c
        .query(
            "WITH c AS (
                 SELECT d.id FROM deliveries d
                  WHERE d.sink = $1 AND d.state IN ('available', 'retryable') AND d.next_attempt_at <= $5
                    -- A first version has nothing before it; for the others the check is a probe of the key's
                    -- rows (hash index), evaluated per candidate whatever the table's statistics say.
                    AND (d.version = 1 OR NOT EXISTS (
                        SELECT 1 FROM deliveries p
                         WHERE p.sink = d.sink AND p.source = d.source AND p.key_hash = d.key_hash
                           AND p.version < d.version AND p.state IN ('available', 'retryable', 'executing')))
                  ORDER BY d.next_attempt_at, d.id
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED)
             UPDATE deliveries d
                SET state = 'executing', attempts = d.attempts + 1, lease_owner = $3,
                    lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
               FROM c WHERE d.id = c.id
             RETURNING d.id, d.attempts, d.event_id, d.idempotency_key, d.event_seq",
            &[&sink, &limit, &owner, &lease.as_secs_f64(), &now],
        )
        .await
        .map_err(q("claiming deliveries"))?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            attempt: r.get(1),
            event_id: r.get(2),
            idempotency_key: r.get(3),
            event_seq: r.get(4),
        })
        .collect())
}

/// Loads the events behind claimed deliveries (by `events.seq`), keyed by event id.
pub async fn events(
    c: &tokio_postgres::Client,
    seqs: &[i64],
) -> Result<HashMap<Uuid, EventRecord>, DbError> {
    let rows = c
        .query(
            "SELECT e.id, e.source, e.kind, f.key_columns, e.key, e.version, f.name, e.created_at, f.columns,
                    e.payload
               FROM events e JOIN files f ON f.id = e.file_id
              WHERE e.seq = ANY($1)",
            &[&seqs],
        )
        .await
        .map_err(q("reading events to deliver"))?;
    rows.iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            let payload = r
                .get::<_, Option<&str>>(9)
                .map(serde_json::from_str::<Vec<String>>)
                .transpose()
                .map_err(|_| DbError::Malformed("events.payload"))?;
            Ok((
                id,
                EventRecord {
                    event_id: id,
                    source: r.get(1),
                    kind: r.get(2),
                    key_columns: r.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
                    key: r.get(4),
                    version: r.get(5),
                    file: r.get(6),
                    observed_at: r.get(7),
                    columns: r.get::<_, Option<Vec<String>>>(8).unwrap_or_default(),
                    payload,
                },
            ))
        })
        .collect()
}

/// How one claimed delivery ends its round.
#[derive(Debug, Clone)]
pub struct Finished {
    pub claim: Claimed,
    /// `completed`, `retryable`, `dead`, `ignored`, or `available` (not attempted, or held back by a pause or an
    /// open circuit).
    pub state: &'static str,
    pub status: Option<i32>,
    /// Short, free of PHI.
    pub error: Option<String>,
    pub next_attempt_at: SystemTime,
    /// Whether this round counts as one of the row's attempts (a probe behind an open circuit does not).
    pub counted: bool,
    /// Whether a request was made (and so an audit row is due).
    pub attempted: bool,
    /// Audit outcome name.
    pub outcome: &'static str,
    pub started: SystemTime,
    pub duration: Duration,
    /// A PHI-free description of the answer (status, size, content type), never its body.
    pub excerpt: Option<String>,
}

/// Records a round's outcomes, each fenced by its attempt number and lease owner: a late finisher whose lease was
/// taken over changes nothing (its request is still audited, as `fenced`). Answers how many rows were updated.
pub async fn finish(
    c: &mut tokio_postgres::Client,
    owner: &str,
    rows: &[Finished],
) -> Result<u64, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|f| f.claim.id).collect();
    let attempts: Vec<i32> = rows.iter().map(|f| f.claim.attempt).collect();
    let states: Vec<&str> = rows.iter().map(|f| f.state).collect();
    let statuses: Vec<Option<i32>> = rows.iter().map(|f| f.status).collect();
    let errors: Vec<Option<&str>> = rows.iter().map(|f| f.error.as_deref()).collect();
    let next: Vec<SystemTime> = rows.iter().map(|f| f.next_attempt_at).collect();
    let counted: Vec<bool> = rows.iter().map(|f| f.counted).collect();
    let attempted: Vec<bool> = rows.iter().map(|f| f.attempted).collect();
    let outcomes: Vec<&str> = rows.iter().map(|f| f.outcome).collect();
    let started: Vec<SystemTime> = rows.iter().map(|f| f.started).collect();
    let durations: Vec<i32> = rows
        .iter()
        .map(|f| f.duration.as_millis().min(i32::MAX as u128) as i32)
        .collect();
    let excerpts: Vec<Option<&str>> = rows.iter().map(|f| f.excerpt.as_deref()).collect();
    let tx = c.transaction().await.map_err(q("opening a transaction"))?;
    let n: i64 = tx
        .query_one(
            &format!("WITH x AS (
                 SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[],
                                      $6::timestamptz[], $7::bool[], $8::bool[], $9::text[], $10::timestamptz[],
                                      $11::int[], $12::text[])
                     AS x(id, attempt, state, status, error, next_at, counted, attempted, outcome, started,
                          duration, excerpt)),
             upd AS (
                 UPDATE deliveries d
                    -- An older version going back to wait while a newer one exists is superseded instead: the
                    -- newest record must not queue behind a stale one for a whole retry schedule.
                    SET state = CASE
                            WHEN x.state IN ('retryable', 'available') AND {NEWER_VERSION_EXISTS}
                            THEN 'superseded' ELSE x.state END,
                        attempts = CASE WHEN x.counted THEN d.attempts ELSE d.attempts - 1 END,
                        last_status = CASE WHEN x.attempted THEN x.status ELSE d.last_status END,
                        last_error = CASE WHEN x.attempted THEN x.error ELSE d.last_error END,
                        next_attempt_at = x.next_at, updated_at = now(),
                        lease_owner = NULL, lease_expires_at = NULL,
                        completed_at = CASE WHEN x.state = 'completed' THEN now() END
                   FROM x
                  WHERE d.id = x.id AND d.attempts = x.attempt AND d.state = 'executing' AND d.lease_owner = $13
                 RETURNING d.id),
             -- Every request made is audited; one whose lease was taken over meanwhile is marked `fenced`.
             audit AS (
                 INSERT INTO delivery_attempts (delivery_id, attempt, lease_owner, started_at, duration_ms,
                                                status_code, outcome, error, response_excerpt)
                 SELECT x.id, x.attempt, $13, x.started, x.duration, x.status,
                        CASE WHEN upd.id IS NULL THEN 'fenced' ELSE x.outcome END, x.error, x.excerpt
                   FROM x LEFT JOIN upd ON upd.id = x.id
                  WHERE x.attempted
                 RETURNING 1)
             SELECT count(*) FROM upd"),
            &[
                &ids, &attempts, &states, &statuses, &errors, &next, &counted, &attempted, &outcomes, &started,
                &durations, &excerpts, &owner,
            ],
        )
        .await
        .map_err(q("recording delivery answers"))?
        .get(0);
    tx.commit().await.map_err(q("recording delivery answers"))?;
    Ok(n as u64)
}

/// Extends the leases of rows still being attempted by `owner`.
pub async fn renew(
    c: &tokio_postgres::Client,
    owner: &str,
    ids: &[i64],
    lease: Duration,
) -> Result<u64, DbError> {
    c.execute(
        "UPDATE deliveries SET lease_expires_at = now() + make_interval(secs => $3)
          WHERE id = ANY($1) AND lease_owner = $2 AND state = 'executing'",
        &[&ids, &owner, &lease.as_secs_f64()],
    )
    .await
    .map_err(q("renewing leases"))
}

/// Returns deliveries whose lease expired (their owner died or hung) to `available`.
pub async fn reap_expired(c: &tokio_postgres::Client) -> Result<u64, DbError> {
    c.execute(
        "UPDATE deliveries SET state = 'available', lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
          WHERE state = 'executing' AND lease_expires_at < now()",
        &[],
    )
    .await
    .map_err(q("reaping expired leases"))
}

/// SQL condition: a newer version of the key of delivery `d` exists for the same sink.
const NEWER_VERSION_EXISTS: &str = "EXISTS (
    SELECT 1 FROM deliveries n
     WHERE n.sink = d.sink AND n.source = d.source AND n.key_hash = d.key_hash AND n.version > d.version)";

/// What a re-drive did: rows made deliverable again, and rows superseded because a newer version of their key
/// exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Redriven {
    pub available: u64,
    pub superseded: u64,
}

impl Redriven {
    pub fn total(&self) -> u64 {
        self.available + self.superseded
    }
}

/// Makes the rows matching `filter` deliverable again with a fresh attempt budget — or `superseded` when a newer
/// version of their key exists, so that an old record never overwrites a newer one downstream.
async fn redrive_where(
    c: &tokio_postgres::Client,
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Redriven, DbError> {
    let row = c
        .query_one(
            &format!(
                "WITH u AS (
                     UPDATE deliveries d
                        SET state = CASE WHEN {NEWER_VERSION_EXISTS} THEN 'superseded' ELSE 'available' END,
                            attempts = 0, next_attempt_at = now(), updated_at = now()
                      WHERE {filter}
                     RETURNING d.state)
                 SELECT count(*) FILTER (WHERE state = 'available'), count(*) FILTER (WHERE state = 'superseded')
                   FROM u"
            ),
            params,
        )
        .await
        .map_err(q("re-driving deliveries"))?;
    Ok(Redriven {
        available: row.get::<_, i64>(0) as u64,
        superseded: row.get::<_, i64>(1) as u64,
    })
}

/// Re-drives one dead (or cancelled) delivery. Answers what became of it (all zero: it was not dead or cancelled).
pub async fn redrive(c: &tokio_postgres::Client, id: i64) -> Result<Redriven, DbError> {
    redrive_where(c, "id = $1 AND state IN ('dead', 'cancelled')", &[&id]).await
}

/// Re-drives every dead delivery (of one sink, or of all).
pub async fn redrive_dead(
    c: &tokio_postgres::Client,
    sink: Option<&str>,
) -> Result<Redriven, DbError> {
    redrive_where(
        c,
        "state = 'dead' AND ($1::text IS NULL OR sink = $1)",
        &[&sink],
    )
    .await
}

/// Returns every delivery `owner` still holds to `available`, not counting the interrupted attempt (used when the
/// process stops: the rows need not wait for their leases to expire). A request that did reach the sink is
/// recognised there by its idempotency key when it is sent again.
pub async fn release(
    c: &tokio_postgres::Client,
    owner: &str,
    sink: Option<&str>,
) -> Result<u64, DbError> {
    c.execute(
        "UPDATE deliveries SET state = 'available', attempts = greatest(attempts - 1, 0), lease_owner = NULL,
                lease_expires_at = NULL, updated_at = now()
          WHERE lease_owner = $1 AND state = 'executing' AND ($2::text IS NULL OR sink = $2)",
        &[&owner, &sink],
    )
    .await
    .map_err(q("releasing leases"))
}
