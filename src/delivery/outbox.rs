//! The outbox in SQL: claims under leases, completions fenced by attempt number, retries, lease expiry.

use crate::error::DbError;
use crate::sinks::{Answer, EventRecord};
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
) -> Result<Vec<Claimed>, DbError> {
    let rows = c
        .query(
            "WITH c AS (
                 SELECT d.id FROM deliveries d
                  WHERE d.sink = $1 AND d.state IN ('available', 'retryable') AND d.next_attempt_at <= now()
                    AND NOT EXISTS (
                        SELECT 1 FROM deliveries p
                         WHERE p.sink = d.sink AND p.source = d.source AND p.key_hash = d.key_hash
                           AND p.version < d.version AND p.state IN ('available', 'retryable', 'executing'))
                  ORDER BY d.next_attempt_at, d.id
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED)
             UPDATE deliveries d
                SET state = 'executing', attempts = d.attempts + 1, lease_owner = $3,
                    lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
               FROM c WHERE d.id = c.id
             RETURNING d.id, d.attempts, d.event_id, d.idempotency_key",
            &[&sink, &limit, &owner, &lease.as_secs_f64()],
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
        })
        .collect())
}

/// Loads the events behind claimed deliveries.
pub async fn events(
    c: &tokio_postgres::Client,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, EventRecord>, DbError> {
    let rows = c
        .query(
            "SELECT e.id, e.source, e.kind, f.key_columns, e.key, e.version, f.name, e.created_at, f.columns,
                    e.payload
               FROM events e JOIN files f ON f.id = e.file_id
              WHERE e.id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(q("reading events to deliver"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            (
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
                    payload: r.get(9),
                },
            )
        })
        .collect())
}

/// Exponential backoff with full jitter: a random delay in [0, min(cap, base · 2^(attempt-1))].
pub fn backoff(attempt: i32, base: Duration, cap: Duration) -> Duration {
    let exp = base
        .saturating_mul(1u32 << (attempt.clamp(1, 31) - 1) as u32)
        .min(cap);
    exp.mul_f64(rand::random::<f64>())
}

/// Records the answers of one round of attempts, each fenced by its attempt number and owner.
pub async fn finish(
    c: &mut tokio_postgres::Client,
    owner: &str,
    started: SystemTime,
    duration: Duration,
    answers: &[(Claimed, Answer)],
    max_attempts: i32,
) -> Result<u64, DbError> {
    let mut ids = Vec::new();
    let mut attempts = Vec::new();
    let mut states = Vec::new();
    let mut statuses: Vec<Option<i32>> = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut delays = Vec::new();
    for (claim, answer) in answers {
        let (state, status, error, delay) = match answer {
            Answer::Completed { status } => ("completed", *status, None, 0.0),
            Answer::Retry { status, error } if claim.attempt < max_attempts => (
                "retryable",
                *status,
                Some(error.clone()),
                backoff(
                    claim.attempt,
                    Duration::from_secs(1),
                    Duration::from_secs(600),
                )
                .as_secs_f64(),
            ),
            Answer::Retry { status, error } | Answer::Dead { status, error } => {
                ("dead", *status, Some(error.clone()), 0.0)
            }
        };
        ids.push(claim.id);
        attempts.push(claim.attempt);
        states.push(state);
        statuses.push(status);
        errors.push(error);
        delays.push(delay);
    }
    let tx = c.transaction().await.map_err(q("opening a transaction"))?;
    let n = tx
        .execute(
            "WITH x AS (
                 SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], $6::float8[])
                     AS x(id, attempt, state, status, error, delay)),
             upd AS (
                 UPDATE deliveries d
                    SET state = x.state, last_status = x.status, last_error = x.error, updated_at = now(),
                        lease_owner = NULL, lease_expires_at = NULL,
                        next_attempt_at = now() + make_interval(secs => x.delay),
                        completed_at = CASE WHEN x.state = 'completed' THEN now() END
                   FROM x
                  WHERE d.id = x.id AND d.attempts = x.attempt AND d.state = 'executing' AND d.lease_owner = $7
                 RETURNING d.id, d.attempts, x.state, x.status, x.error)
             INSERT INTO delivery_attempts (delivery_id, attempt, lease_owner, started_at, duration_ms,
                                            status_code, outcome, error)
             SELECT id, attempts, $7, $8, $9, status, state, error FROM upd",
            &[
                &ids,
                &attempts,
                &states,
                &statuses,
                &errors,
                &delays,
                &owner,
                &started,
                &(duration.as_millis() as i32),
            ],
        )
        .await
        .map_err(q("recording delivery answers"))?;
    tx.commit().await.map_err(q("recording delivery answers"))?;
    Ok(n)
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
