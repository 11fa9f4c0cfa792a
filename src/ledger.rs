//! The `files` ledger as the FileWatcher and the admin API see it.

use crate::error::DbError;
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One ledger row, as `/admin/files` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRow {
    pub id: i64,
    pub source: String,
    pub name: String,
    pub sha256: String,
    pub status: String,
    pub rows: i64,
    pub new: i64,
    pub changed: i64,
    pub unchanged: i64,
    pub duplicate: i64,
    pub conflict: i64,
    pub rejected: i64,
    pub removed: i64,
    pub events_written: i64,
    /// 0..1 of the file read: 1 once done, 0 while pending; for a file being processed, what the reading process
    /// reports (the ledger alone cannot say: `None`); `None` for files closed without being processed.
    pub progress: Option<f64>,
    /// Rows per second: over the whole run for a done file, so far for the file in flight.
    pub rows_per_second: Option<f64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub reason: Option<String>,
    /// When processing started, for rates of the file in flight.
    #[serde(skip)]
    pub started: Option<SystemTime>,
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_millis(t).to_string())
}

const FILE_COLUMNS: &str =
    "id, source, name, sha256, status, rows, new, changed, unchanged, duplicate, conflict, \
     rejected, removed, events_written, started_at, finished_at, duration_ms, reason";

fn file_row(r: &tokio_postgres::Row) -> FileRow {
    let status: String = r.get(4);
    let rows: i64 = r.get(5);
    let started: Option<SystemTime> = r.get(14);
    let duration_ms: Option<i64> = r.get(16);
    FileRow {
        id: r.get(0),
        source: r.get(1),
        name: r.get(2),
        sha256: r.get(3),
        rows,
        new: r.get(6),
        changed: r.get(7),
        unchanged: r.get(8),
        duplicate: r.get(9),
        conflict: r.get(10),
        rejected: r.get(11),
        removed: r.get(12),
        events_written: r.get(13),
        progress: match status.as_str() {
            "done" => Some(1.0),
            "pending" => Some(0.0),
            _ => None,
        },
        rows_per_second: match duration_ms {
            Some(ms) if ms > 0 && status == "done" => Some(rows as f64 * 1000.0 / ms as f64),
            _ => None,
        },
        status,
        started_at: rfc3339(started),
        finished_at: rfc3339(r.get(15)),
        duration_ms,
        reason: r.get(17),
        started,
    }
}

/// Newest first: up to `limit` files older than `before` (an id), or the newest when `before` is `None`.
pub async fn list(pool: &Pool, limit: i64, before: Option<i64>) -> Result<Vec<FileRow>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .query(
            &format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE ($2::bigint IS NULL OR id < $2)
                  ORDER BY id DESC LIMIT $1"
            ),
            &[&limit, &before],
        )
        .await
        .map_err(|e| DbError::query("listing files", e))?;
    Ok(rows.iter().map(file_row).collect())
}

pub async fn get(pool: &Pool, id: i64) -> Result<Option<FileRow>, DbError> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            &format!("SELECT {FILE_COLUMNS} FROM files WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(|e| DbError::query("reading a file", e))?;
    Ok(row.as_ref().map(file_row))
}

/// A file left `processing` by an earlier run, with the same name and size: resume it.
pub async fn find_resumable(
    pool: &Pool,
    source: &str,
    name: &str,
    size: u64,
) -> Result<Option<i64>, DbError> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT id FROM files WHERE source = $1 AND name = $2 AND size = $3 AND status = 'processing'
              ORDER BY id DESC LIMIT 1",
            &[&source, &name, &(size as i64)],
        )
        .await
        .map_err(|e| DbError::query("looking for a file to resume", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Whether a file of this name and content was already closed (done, duplicate, superseded, failed): left in place
/// because the source has no archive, it must not be taken again.
pub async fn already_closed(
    pool: &Pool,
    source: &str,
    name: &str,
    sha256: &str,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT 1 FROM files WHERE source = $1 AND name = $2 AND sha256 = $3
                AND status IN ('done', 'duplicate_file', 'superseded', 'failed') LIMIT 1",
            &[&source, &name, &sha256],
        )
        .await
        .map_err(|e| DbError::query("checking the ledger", e))?;
    Ok(row.is_some())
}

/// A new ledger row in `status`.
pub async fn insert(
    pool: &Pool,
    source: &str,
    name: &str,
    size: u64,
    sha256: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<i64, DbError> {
    let c = pool.get().await?;
    let row = c
        .query_one(
            "INSERT INTO files (source, name, sha256, size, status, reason, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 IN ('processing', 'pending') THEN NULL ELSE now() END)
             RETURNING id",
            &[&source, &name, &sha256, &(size as i64), &status, &reason],
        )
        .await
        .map_err(|e| DbError::query("recording a file", e))?;
    Ok(row.get(0))
}

/// Closes a ledger row without processing it (failed, superseded).
pub async fn close(
    pool: &Pool,
    id: i64,
    status: &str,
    reason: Option<&str>,
    sha256: Option<&str>,
) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.execute(
        "UPDATE files SET status = $2, reason = $3, sha256 = coalesce($4, sha256), finished_at = now()
          WHERE id = $1",
        &[&id, &status, &reason, &sha256],
    )
    .await
    .map_err(|e| DbError::query("closing a file", e))?;
    Ok(())
}
