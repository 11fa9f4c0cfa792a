//! Figures that live in PostgreSQL — deliveries by state, the oldest waiting delivery, the last successful
//! snapshot — refreshed by a periodic query on a connection of this task's own, never on the pipeline's.
//!
//! The queries are chosen to stay cheap on a large outbox: they count only the open states and `dead` (through the
//! `(state, sink)` index; terminal states grow without bound and are counted by counters as they happen), and read
//! `created_at` only of rows waiting to be sent. A statement timeout bounds them anyway. The figures are
//! database-wide: every instance sharing the database reports the same values (aggregate them with `max`).

use super::{
    DELIVERED, DELIVERIES, DELIVERY_STATES, FILES, FILE_STATUSES, OLDEST_AVAILABLE_AGE, OUTCOMES,
    ROWS, ROWS_REMOVED, SINK, SINK_PAUSED, SNAPSHOT_LAST_SUCCESS, SOURCE, STATE, STATUS,
};
use std::collections::HashMap;
use std::time::Duration;

/// How often the database figures are refreshed.
pub const POLL_PERIOD: Duration = Duration::from_secs(5);

/// Refreshes the database figures of `sinks` and `sources` every `period`, for ever (the task ends with its
/// arbiter). Connection failures are logged and retried at the next tick.
pub async fn poll_database(
    url: String,
    sinks: Vec<String>,
    sources: Vec<String>,
    period: Duration,
) {
    preregister(&sinks, &sources);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        tick.tick().await;
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            client = match connect(&url, period).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot connect to the database");
                    None
                }
            };
        }
        let Some(c) = &client else { continue };
        if let Err(e) = refresh(c, &sinks, &sources).await {
            tracing::warn!(error = %e, "metrics: cannot read delivery and ledger figures");
        }
    }
}

async fn connect(
    url: &str,
    period: Duration,
) -> Result<tokio_postgres::Client, crate::error::DbError> {
    let c = crate::db::connect(url).await?;
    // A refresh never outlives its period: a slow count is abandoned, not piled up.
    let sql = format!(
        "SET application_name = 'sluice metrics'; SET statement_timeout = {}",
        period.as_millis().max(1)
    );
    c.batch_execute(&sql)
        .await
        .map_err(|e| crate::error::DbError::query("configuring the metrics connection", e))?;
    Ok(c)
}

/// The per-sink and per-source series, at zero where nothing has happened yet (an increment by zero registers a
/// series without changing one that exists).
fn preregister(sinks: &[String], sources: &[String]) {
    for sink in sinks {
        metrics::gauge!(SINK_PAUSED, SINK => sink.clone()).increment(0.0);
        metrics::counter!(DELIVERED, SINK => sink.clone()).increment(0);
    }
    for source in sources {
        for outcome in OUTCOMES {
            metrics::counter!(ROWS, SOURCE => source.clone(), super::OUTCOME => *outcome)
                .increment(0);
        }
        metrics::counter!(ROWS_REMOVED, SOURCE => source.clone()).increment(0);
        for status in FILE_STATUSES {
            metrics::counter!(FILES, SOURCE => source.clone(), STATUS => *status).increment(0);
        }
    }
}

async fn refresh(
    c: &tokio_postgres::Client,
    sinks: &[String],
    sources: &[String],
) -> Result<(), tokio_postgres::Error> {
    let states: Vec<&str> = DELIVERY_STATES.to_vec();
    // One part per partial index (waiting, executing, dead): the outbox keeps every completed row, and a count
    // over the whole table every few seconds would grow with its history.
    let counts: HashMap<(String, String), i64> = c
        .query(
            "SELECT sink, state, count(*) FROM deliveries WHERE state IN ('available', 'retryable')
                AND state = ANY($1) GROUP BY sink, state
             UNION ALL
             SELECT sink, state, count(*) FROM deliveries WHERE state = 'executing'
                AND state = ANY($1) GROUP BY sink, state
             UNION ALL
             SELECT sink, state, count(*) FROM deliveries WHERE state IN ('dead', 'cancelled')
                AND state = ANY($1) GROUP BY sink, state",
            &[&states],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let ages: HashMap<String, f64> = c
        .query(
            "SELECT sink, EXTRACT(EPOCH FROM now() - min(created_at))::float8
               FROM deliveries WHERE state IN ('available', 'retryable') GROUP BY sink",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let last: HashMap<String, f64> = c
        .query(
            "SELECT source, EXTRACT(EPOCH FROM max(finished_at))::float8
               FROM files WHERE status = 'done' AND finished_at IS NOT NULL GROUP BY source",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Only configured names become label values.
    for sink in sinks {
        for state in DELIVERY_STATES {
            let n = counts
                .get(&(sink.clone(), (*state).to_string()))
                .copied()
                .unwrap_or(0);
            metrics::gauge!(DELIVERIES, SINK => sink.clone(), STATE => *state).set(n as f64);
        }
        let age = ages.get(sink).copied().unwrap_or(0.0).max(0.0);
        metrics::gauge!(OLDEST_AVAILABLE_AGE, SINK => sink.clone()).set(age);
    }
    for source in sources {
        // A source that never succeeded has no series: `absent()` tells that apart from an old success.
        if let Some(t) = last.get(source) {
            metrics::gauge!(SNAPSHOT_LAST_SUCCESS, SOURCE => source.clone()).set(*t);
        }
    }
    Ok(())
}
