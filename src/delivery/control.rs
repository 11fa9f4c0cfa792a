//! Operator settings of a sink that outlive a restart (`sink_controls`): a sink paused through the admin API stays
//! paused until it is resumed, even across restarts and on every instance that starts on the same database.

use crate::error::DbError;

/// Records whether `sink` is paused by an operator.
pub async fn save_paused(
    c: &tokio_postgres::Client,
    sink: &str,
    paused: bool,
) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO sink_controls (sink, paused) VALUES ($1, $2)
         ON CONFLICT (sink) DO UPDATE SET paused = excluded.paused, updated_at = now()",
        &[&sink, &paused],
    )
    .await
    .map_err(|e| DbError::query("recording a sink's pause", e))?;
    Ok(())
}

/// Whether an operator left `sink` paused.
pub async fn load_paused(c: &tokio_postgres::Client, sink: &str) -> Result<bool, DbError> {
    let row = c
        .query_opt("SELECT paused FROM sink_controls WHERE sink = $1", &[&sink])
        .await
        .map_err(|e| DbError::query("reading a sink's pause", e))?;
    Ok(row.is_some_and(|r| r.get(0)))
}
