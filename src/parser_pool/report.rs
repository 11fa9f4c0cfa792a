//! Progress lines while a snapshot is ingested: enough to see a large file move (or stall), few enough that a
//! steady-state snapshot, done in under a second, logs only its admission and its completion.

use super::Progress;
use crate::snapshot::Snapshot;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A line when this much more of the file has been read...
const STEP: f64 = 0.10;
/// ...but not more often than this...
const MIN_GAP: Duration = Duration::from_secs(2);
/// ...and at least this often, so that a stalled snapshot still says where it is.
const MAX_GAP: Duration = Duration::from_secs(30);

/// Logs the progress of `s` until dropped (the ingest it runs beside ends).
pub(super) async fn log_progress(s: &Snapshot, progress: &Progress) -> Infallible {
    let size = s.size.max(1) as f64;
    let (mut last_at, mut last_fraction, mut last_rows) = (Instant::now(), 0.0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let gap = last_at.elapsed();
        let fraction = progress.bytes.load(Ordering::Relaxed) as f64 / size;
        if !(gap >= MAX_GAP || (gap >= MIN_GAP && fraction - last_fraction >= STEP)) {
            continue;
        }
        let rows = progress.rows.load(Ordering::Relaxed);
        let rate = (rows - last_rows.min(rows)) as f64 / gap.as_secs_f64();
        // Once the whole file is read, what remains is the barrier and the commits of the changes.
        let phase = if fraction >= 1.0 {
            "committing"
        } else {
            "reading"
        };
        tracing::info!(source = %s.source, file = %s.name, file_id = s.file_id, phase,
            percent = format!("{:.0}", fraction * 100.0), rows, rows_per_s = rate as u64,
            elapsed_s = s.admitted.elapsed().as_secs(), "ingesting");
        (last_at, last_fraction, last_rows) = (Instant::now(), fraction, rows);
    }
}
