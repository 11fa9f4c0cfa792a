//! EventLogWriter: writes a snapshot's results to PostgreSQL (SPEC §2, §4); `pipeline.writers` of them, each with
//! its own connection, shard i writing through writer i mod n.
//!
//! Every batch of changes is one transaction: append the events, write `record_state`, insert one outbox row per
//! sink, bump the file's progress counter. The reply — the sender's credit — is sent only after the commit, so a
//! producer that flushed knows its changes are durable. The changed rows are read again from the file by offset
//! and parsed in full by the producer ([`WriteChanges::materialize`]), so that the ~99 % unchanged rows of a
//! snapshot never cost more than a hash.
//!
//! Event ids are UUIDv5 of (source, key hash, version, row hash): the same change always gets the same id. A second
//! emission of one version cannot commit: a new key is inserted into `record_state` (its primary key refuses it
//! twice) and a known key only moves to a greater version, checked row for row (docs/ARCHITECTURE.md).

use crate::db::copy::CopyIn;
use crate::error::{DbError, FileError, PipelineError};
use crate::faults::Faults;
use crate::parse::{KeyHash, Reject};
use crate::snapshot::{Change, ChangeKind, ConflictRow, Counts, Snapshot};
use crate::supervisor::Beat;
use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use futures_util::pin_mut;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// Namespace of event ids.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_7a3b_9d2f_4e61_8a0c_b3d5_e7f9_1a2b);

/// The id of an event: deterministic, so a re-emitted change collides instead of duplicating.
pub fn event_id(source: &str, key_hash: u64, version: u32, row_hash: u128) -> Uuid {
    let mut name = Vec::with_capacity(source.len() + 28);
    name.extend_from_slice(source.as_bytes());
    name.extend_from_slice(&key_hash.to_le_bytes());
    name.extend_from_slice(&version.to_le_bytes());
    name.extend_from_slice(&row_hash.to_le_bytes());
    Uuid::new_v5(&EVENT_NAMESPACE, &name)
}

/// Wakes the delivery actors when new outbox rows are committed, so an idle system delivers within milliseconds;
/// and tells them when a snapshot is being ingested, so that they can leave the cores and the database to it.
#[derive(Debug, Default, Clone)]
pub struct OutboxSignal {
    waiters: Arc<std::sync::Mutex<Vec<Arc<Notify>>>>,
    ingest: Arc<std::sync::Mutex<Ingesting>>,
}

/// Snapshots being ingested by this process, and since when without a break.
#[derive(Debug, Default)]
struct Ingesting {
    active: usize,
    /// Start of the current run of ingests: snapshots that follow one another within [`INGEST_RUN_GAP`] (a
    /// backlog, retries) count as one run, so that delivery is held back once per run, not once per file.
    since: Option<Instant>,
    /// When the last ingest ended.
    ended: Option<Instant>,
}

/// Ingests this close together belong to one run (see [`Ingesting::since`]).
const INGEST_RUN_GAP: Duration = Duration::from_secs(2);

impl OutboxSignal {
    pub fn subscribe(&self) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        self.waiters.lock().expect("signal lock").push(n.clone());
        n
    }
    pub fn notify(&self) {
        for n in self.waiters.lock().expect("signal lock").iter() {
            n.notify_one();
        }
    }

    /// Marks a snapshot as being ingested until the guard is dropped; the last one to end wakes delivery.
    pub fn ingesting(&self) -> IngestGuard {
        let mut st = self.ingest.lock().expect("signal lock");
        let continues_run = st.active > 0 || st.ended.is_some_and(|t| t.elapsed() < INGEST_RUN_GAP);
        if !continues_run || st.since.is_none() {
            st.since = Some(Instant::now());
        }
        st.active += 1;
        IngestGuard(self.clone())
    }

    /// How much longer delivery should hold back for an ingest in progress, when it yields for at most `max` to
    /// one run of ingests: `None` when nothing is being ingested or the run began `max` ago.
    pub fn hold(&self, max: Duration) -> Option<Duration> {
        let st = self.ingest.lock().expect("signal lock");
        let since = st.since.filter(|_| st.active > 0)?;
        max.checked_sub(since.elapsed()).filter(|d| !d.is_zero())
    }
}

/// A snapshot being ingested (see [`OutboxSignal::ingesting`]).
#[derive(Debug)]
pub struct IngestGuard(OutboxSignal);

impl Drop for IngestGuard {
    fn drop(&mut self) {
        let idle = {
            let mut st = self.0.ingest.lock().expect("signal lock");
            st.active = st.active.saturating_sub(1);
            if st.active == 0 {
                st.ended = Some(Instant::now());
            }
            st.active == 0
        };
        if idle {
            self.0.notify();
        }
    }
}

/// Live counters of the writer, for the state dump and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub events: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
}

pub struct EventLogWriter {
    db_url: String,
    /// Taken out while a message is handled; dropped on any error so the next message reconnects.
    client: Option<tokio_postgres::Client>,
    /// Every event gets one outbox row per configured sink.
    sinks: Arc<[String]>,
    signal: OutboxSignal,
    stats: Arc<WriterStats>,
    beat: Beat,
    faults: Faults,
    /// When the writer last restarted: work of snapshot attempts admitted before it is refused.
    stale_before: Option<Instant>,
}

impl EventLogWriter {
    pub fn new(
        db_url: String,
        sinks: Vec<String>,
        signal: OutboxSignal,
        beat: Beat,
        faults: Faults,
    ) -> Self {
        EventLogWriter {
            db_url,
            client: None,
            sinks: sinks.into(),
            signal,
            stats: Arc::default(),
            beat,
            faults,
            stale_before: None,
        }
    }

    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }
}

impl Actor for EventLogWriter {
    type Context = Context<Self>;
}

impl Supervised for EventLogWriter {
    /// A restart drops the connection: a transaction cut short by the failure is rolled back by PostgreSQL, and
    /// the snapshot in flight is redone by the watcher (SPEC §2 invariant).
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.client = None;
        self.stale_before = Some(Instant::now());
    }
}

/// Connects when needed and prepares the per-connection staging table.
async fn connection(
    url: String,
    existing: Option<tokio_postgres::Client>,
) -> Result<tokio_postgres::Client, PipelineError> {
    if let Some(c) = existing.filter(|c| !c.is_closed()) {
        return Ok(c);
    }
    let client = crate::db::connect(&url).await?;
    client
        .batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS state_stage (
                 key_hash bigint, key text[], row_hash bytea, version integer, event_id uuid, event_seq bigint
             ) ON COMMIT DELETE ROWS",
        )
        .await
        .map_err(q("creating the staging table"))?;
    Ok(client)
}

type Work<T> = Box<
    dyn for<'a> FnOnce(
        &'a mut tokio_postgres::Client,
    ) -> LocalBoxFuture<'a, Result<T, PipelineError>>,
>;

/// Runs `work` on the writer's connection. Messages are handled one at a time (`AtomicResponse`), in order.
fn run<T: 'static>(
    act: &mut EventLogWriter,
    admitted: Instant,
    work: Work<T>,
) -> AtomicResponse<EventLogWriter, Result<T, PipelineError>> {
    if act.stale_before.is_some_and(|restart| admitted < restart) {
        // Queued by a snapshot attempt that a restart cut short: the next attempt redoes what is not committed.
        return AtomicResponse::new(Box::pin(
            async { Err(PipelineError::Stale) }.into_actor(act),
        ));
    }
    let url = act.db_url.clone();
    let existing = act.client.take();
    let busy = act.beat.busy();
    AtomicResponse::new(Box::pin(
        async move {
            let _busy = busy;
            let mut client = connection(url, existing).await?;
            let out = work(&mut client).await;
            Ok::<_, PipelineError>((client, out))
        }
        .into_actor(act)
        .map(|res, act, _| match res {
            Ok((client, Ok(v))) => {
                act.client = Some(client);
                Ok(v)
            }
            Ok((_, Err(e))) | Err(e) => {
                act.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }),
    ))
}

fn q(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PipelineError {
    move |e| PipelineError::Db(DbError::query(context, e))
}

fn io_error(snapshot: &Snapshot) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |source| {
        PipelineError::File(FileError::Io {
            path: snapshot.path.clone(),
            source,
        })
    }
}

/// Reads `len` bytes at `offset` of the snapshot's file.
fn read_row(
    snapshot: &Snapshot,
    offset: u64,
    len: u32,
    buf: &mut Vec<u8>,
) -> Result<(), PipelineError> {
    buf.resize(len as usize, 0);
    snapshot
        .file
        .read_exact_at(buf, offset)
        .map_err(io_error(snapshot))
}

/// Starts (or restarts) a file: clears what an interrupted attempt left in rejects and conflicts.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct BeginFile(pub Arc<Snapshot>);

impl Handler<BeginFile> for EventLogWriter {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: BeginFile, _: &mut Context<Self>) -> Self::Result {
        let s = msg.0;
        run(
            self,
            s.admitted,
            Box::new(move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await.map_err(q("opening a transaction"))?;
                    tx.execute("DELETE FROM rejects WHERE file_id = $1", &[&s.file_id])
                        .await
                        .map_err(q("clearing rejects of a restarted file"))?;
                    tx.execute("DELETE FROM conflicts WHERE file_id = $1", &[&s.file_id])
                        .await
                        .map_err(q("clearing conflicts of a restarted file"))?;
                    tx.execute(
                        "UPDATE files SET status = 'processing', started_at = coalesce(started_at, now()),
                                attempts = attempts + 1, header_version = $2, columns = $3, key_columns = $4,
                                reason = NULL
                          WHERE id = $1",
                        &[
                            &s.file_id,
                            &s.layout.version(),
                            &s.layout.columns(),
                            &s.layout.key_columns(),
                        ],
                    )
                    .await
                    .map_err(q("starting a file"))?;
                    tx.commit().await.map_err(q("starting a file"))
                })
            }),
        )
    }
}

/// Appends a batch of new/changed records: events, state and outbox in one transaction.
///
/// The batch is built by its producer ([`WriteChanges::materialize`]: the rows read again and parsed in full, ready
/// to copy), so that the producer prepares the next batch while the writer's connection works on this one.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct WriteChanges {
    pub snapshot: Arc<Snapshot>,
    rows: Vec<Materialized>,
    _alive: crate::mailbox::BatchGuard,
}

impl WriteChanges {
    /// Reads `changes` again from the snapshot's file and parses them in full.
    pub fn materialize(
        snapshot: Arc<Snapshot>,
        changes: &[Change],
        alive: crate::mailbox::BatchGuard,
    ) -> Result<Self, PipelineError> {
        Ok(WriteChanges {
            rows: materialize(&snapshot, changes)?,
            snapshot,
            _alive: alive,
        })
    }
}

struct Materialized {
    change: Change,
    id: Uuid,
    key: Vec<String>,
    /// The record's field values as a JSON array (`events.payload`).
    payload: String,
}

impl Materialized {
    /// A key seen for the first time: its state row is inserted, with nothing to upsert or supersede.
    fn fresh(&self) -> bool {
        self.change.kind == ChangeKind::New && self.change.version == 1
    }
}

/// A batch's rows are read with one read when they lie within this many bytes of the file (a first load, where
/// every row changes), else one read each.
const SPAN_READ_LIMIT: u64 = 16 << 20;

/// Reads the changed rows again from the file and parses them in full.
fn materialize(
    snapshot: &Snapshot,
    changes: &[Change],
) -> Result<Vec<Materialized>, PipelineError> {
    let mut buf = Vec::new();
    let mut scratch = crate::parse::EventScratch::default();
    let mut out = Vec::with_capacity(changes.len());
    // One read for the whole batch when its rows are dense in the file (sorted by offset, as shards send them).
    let sorted = changes.windows(2).all(|w| w[0].offset <= w[1].offset);
    let span = match (changes.first(), changes.last()) {
        (Some(first), Some(last)) if sorted => {
            let end = last.offset + u64::from(last.len);
            let len = end - first.offset;
            let dense = len <= SPAN_READ_LIMIT
                && len < 4 * changes.iter().map(|c| u64::from(c.len)).sum::<u64>();
            dense.then_some((first.offset, len))
        }
        _ => None,
    };
    let mut whole = Vec::new();
    if let Some((offset, len)) = span {
        read_row(snapshot, offset, len as u32, &mut whole)?;
    }
    for c in changes {
        let row: &[u8] = match span {
            Some((start, _)) => {
                let at = (c.offset - start) as usize;
                &whole[at..at + c.len as usize]
            }
            None => {
                read_row(snapshot, c.offset, c.len, &mut buf)?;
                &buf
            }
        };
        let mut payload = String::with_capacity(row.len() + 4 * snapshot.layout.columns().len());
        let event = snapshot
            .layout
            .parse_event(row, &mut scratch, &mut payload)
            .map_err(|reason| {
                PipelineError::Parser(format!(
                    "line {} no longer parses ({}); was the file changed while being read?",
                    c.line,
                    reason.as_str()
                ))
            })?;
        // The row must still be the one that was classified: a file rewritten in place, or renamed over, between
        // the two reads would otherwise pair one record's fields with another's key.
        if event.key_hash != c.key_hash || event.row_hash != c.row_hash {
            return Err(PipelineError::Parser(format!(
                "line {} changed while the file was being read",
                c.line
            )));
        }
        out.push(Materialized {
            change: *c,
            id: event_id(&snapshot.source, c.key_hash, c.version, c.row_hash),
            payload,
            key: event.key,
        });
    }
    Ok(out)
}

/// Takes `n` values of the event sequence: events and their outbox rows are written in one pass each.
async fn event_seqs(
    tx: &tokio_postgres::Transaction<'_>,
    n: usize,
) -> Result<Vec<i64>, PipelineError> {
    let rows = tx
        .query(
            "SELECT nextval('events_seq_seq') FROM generate_series(1, $1::int)",
            &[&(n as i32)],
        )
        .await
        .map_err(q("numbering events"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn write_changes(
    client: &mut tokio_postgres::Client,
    snapshot: &Snapshot,
    rows: &[Materialized],
    sinks: &[String],
) -> Result<u64, PipelineError> {
    let tx = client
        .transaction()
        .await
        .map_err(q("opening a write transaction"))?;
    let source: &str = &snapshot.source;
    let seqs = event_seqs(&tx, rows.len()).await?;
    let mut copy = CopyIn::start(
        &tx,
        "COPY events (seq, id, source, key_hash, key, version, kind, row_hash, payload, file_id, line) \
         FROM STDIN (FORMAT binary)",
        11,
    )
    .await
    .map_err(q("copying events"))?;
    for (m, &seq) in rows.iter().zip(&seqs) {
        let c = &m.change;
        copy.row().await.map_err(q("copying events"))?;
        copy.i64(seq);
        copy.uuid(&m.id);
        copy.text(source);
        copy.i64(c.key_hash as i64);
        copy.text_array(&m.key);
        copy.i32(c.version as i32);
        copy.text(c.kind.as_str());
        copy.bytes(&c.row_hash.to_le_bytes());
        copy.text(&m.payload);
        copy.i64(snapshot.file_id);
        copy.i64(c.line as i64);
    }
    copy.finish().await.map_err(q("copying events"))?;
    // Keys seen for the first time are inserted as they are; the others are staged and upserted.
    let fresh = rows.iter().filter(|m| m.fresh()).count();
    if fresh > 0 {
        let mut copy = CopyIn::start(
            &tx,
            "COPY record_state (source, key_hash, key, row_hash, version, last_event) FROM STDIN (FORMAT binary)",
            6,
        )
        .await
        .map_err(q("inserting record_state"))?;
        for m in rows.iter().filter(|m| m.fresh()) {
            let c = &m.change;
            copy.row().await.map_err(q("inserting record_state"))?;
            copy.text(source);
            copy.i64(c.key_hash as i64);
            copy.text_array(&m.key);
            copy.bytes(&c.row_hash.to_le_bytes());
            copy.i32(c.version as i32);
            copy.uuid(&m.id);
        }
        copy.finish().await.map_err(q("inserting record_state"))?;
    }
    let staged = rows.len() - fresh;
    if staged > 0 {
        let mut copy = CopyIn::start(
            &tx,
            "COPY state_stage (key_hash, key, row_hash, version, event_id, event_seq) FROM STDIN (FORMAT binary)",
            6,
        )
        .await
        .map_err(q("staging record_state"))?;
        for (m, &seq) in rows.iter().zip(&seqs).filter(|(m, _)| !m.fresh()) {
            let c = &m.change;
            copy.row().await.map_err(q("staging record_state"))?;
            copy.i64(c.key_hash as i64);
            copy.text_array(&m.key);
            copy.bytes(&c.row_hash.to_le_bytes());
            copy.i32(c.version as i32);
            copy.uuid(&m.id);
            copy.i64(seq);
        }
        copy.finish().await.map_err(q("staging record_state"))?;
        // Only to a greater version: a change emitted twice, or a state that moved under this writer, moves fewer
        // rows than were staged, and the batch fails instead of committing a second event for one version.
        let moved = tx
            .execute(
                "INSERT INTO record_state AS s (source, key_hash, key, row_hash, version, removed, last_event)
                 SELECT $1, key_hash, key, row_hash, version, false, event_id FROM state_stage
                 ON CONFLICT (source, key_hash) DO UPDATE
                    SET key = EXCLUDED.key, row_hash = EXCLUDED.row_hash, version = EXCLUDED.version,
                        removed = false, last_event = EXCLUDED.last_event, updated_at = now()
                  WHERE s.version < EXCLUDED.version",
                &[&source],
            )
            .await
            .map_err(q("upserting record_state"))?;
        if moved != staged as u64 {
            return Err(PipelineError::StateConflict(format!(
                "{} of {staged} changes found record_state at their version or past it",
                staged as u64 - moved
            )));
        }
        supersede(&tx, source, sinks).await?;
    }
    let mut copy = CopyIn::start(
        &tx,
        "COPY deliveries (event_id, event_seq, sink, source, key_hash, version, idempotency_key) \
         FROM STDIN (FORMAT binary)",
        7,
    )
    .await
    .map_err(q("inserting outbox rows"))?;
    for sink in sinks {
        for (m, &seq) in rows.iter().zip(&seqs) {
            let c = &m.change;
            copy.row().await.map_err(q("inserting outbox rows"))?;
            copy.uuid(&m.id);
            copy.i64(seq);
            copy.text(sink);
            copy.text(source);
            copy.i64(c.key_hash as i64);
            copy.i32(c.version as i32);
            copy.uuid(&m.id);
        }
    }
    copy.finish().await.map_err(q("inserting outbox rows"))?;
    let n = rows.len() as i64;
    tx.execute(
        "UPDATE files SET events_written = events_written + $2 WHERE id = $1",
        &[&snapshot.file_id, &n],
    )
    .await
    .map_err(q("counting events"))?;
    tx.commit().await.map_err(q("committing a batch"))?;
    Ok(n as u64)
}

/// A newer version supersedes an older one of the same key still waiting to be sent (each event carries the full
/// record); one already being attempted finishes first, as the claim keeps a key's versions in order. The newer
/// versions are the rows of `state_stage`.
async fn supersede(
    tx: &tokio_postgres::Transaction<'_>,
    source: &str,
    sinks: &[String],
) -> Result<(), PipelineError> {
    let sinks: Vec<&str> = sinks.iter().map(String::as_str).collect();
    tx.execute(
        "UPDATE deliveries d SET state = 'superseded', updated_at = now()
           FROM state_stage st CROSS JOIN unnest($2::text[]) AS s(sink)
          WHERE st.version > 1 AND d.sink = s.sink AND d.source = $1 AND d.key_hash = st.key_hash
            AND d.version < st.version AND d.state IN ('available', 'retryable')",
        &[&source, &sinks],
    )
    .await
    .map_err(q("superseding older versions"))?;
    Ok(())
}

/// One outbox row per staged event per sink, superseding older versions still waiting.
async fn insert_deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    source: &str,
    sinks: &[String],
) -> Result<(), PipelineError> {
    supersede(tx, source, sinks).await?;
    let sinks: Vec<&str> = sinks.iter().map(String::as_str).collect();
    tx.execute(
        "INSERT INTO deliveries (event_id, event_seq, sink, source, key_hash, version, idempotency_key)
         SELECT st.event_id, st.event_seq, s.sink, $1, st.key_hash, st.version, st.event_id
           FROM state_stage st CROSS JOIN unnest($2::text[]) AS s(sink)",
        &[&source, &sinks],
    )
    .await
    .map_err(q("inserting outbox rows"))?;
    Ok(())
}

impl Handler<WriteChanges> for EventLogWriter {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: WriteChanges, _: &mut Context<Self>) -> Self::Result {
        let sinks = self.sinks.clone();
        let signal = self.signal.clone();
        let stats = self.stats.clone();
        let faults = self.faults.clone();
        let WriteChanges {
            snapshot,
            rows,
            _alive,
        } = msg;
        run(
            self,
            snapshot.admitted,
            Box::new(move |c| {
                Box::pin(async move {
                    // The batch counts as alive until it is committed.
                    let _alive = _alive;
                    crate::faults::check(&faults, "writer").await;
                    #[cfg(feature = "fault-injection")]
                    if let Some(d) = crate::faults::writer_delay() {
                        tokio::time::sleep(d).await;
                    }
                    let n = write_changes(c, &snapshot, &rows, &sinks).await?;
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats.events.fetch_add(n, Ordering::Relaxed);
                    for kind in [ChangeKind::New, ChangeKind::Changed] {
                        let k = rows.iter().filter(|m| m.change.kind == kind).count() as u64;
                        crate::metrics::events_written(&snapshot.source, kind.as_str(), k);
                    }
                    signal.notify();
                    Ok(())
                })
            }),
        )
    }
}

/// Appends `removed` events for keys absent from the snapshot (sources with `emit_removed`).
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct WriteRemoved {
    pub snapshot: Arc<Snapshot>,
    /// (key hash, the removal's version)
    pub keys: Vec<(KeyHash, u32)>,
}

impl Handler<WriteRemoved> for EventLogWriter {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: WriteRemoved, _: &mut Context<Self>) -> Self::Result {
        let sinks = self.sinks.clone();
        let signal = self.signal.clone();
        let stats = self.stats.clone();
        let s = msg.snapshot;
        let keys: Vec<i64> = msg.keys.iter().map(|(k, _)| *k as i64).collect();
        let ids: Vec<Uuid> = msg
            .keys
            .iter()
            .map(|(k, v)| event_id(&s.source, *k, *v, 0))
            .collect();
        run(
            self,
            s.admitted,
            Box::new(move |c| {
                Box::pin(async move {
                    let source: &str = &s.source;
                    let tx = c.transaction().await.map_err(q("opening a transaction"))?;
                    let n = tx
                        .execute(
                            "WITH gone AS (
                                 UPDATE record_state st
                                    SET removed = true, version = st.version + 1, last_event = x.id,
                                        updated_at = now()
                                   FROM unnest($2::bigint[], $3::uuid[]) AS x(key_hash, id)
                                  WHERE st.source = $1 AND st.key_hash = x.key_hash AND NOT st.removed
                              RETURNING st.key_hash, st.key, st.version, st.row_hash, x.id),
                             ev AS (
                                 INSERT INTO events (id, source, key_hash, key, version, kind, row_hash, payload,
                                                     file_id)
                                 SELECT id, $1, key_hash, key, version, 'removed', row_hash, NULL, $4 FROM gone
                              RETURNING seq, id, key_hash, key, version, row_hash)
                             INSERT INTO state_stage (key_hash, key, row_hash, version, event_id, event_seq)
                             SELECT key_hash, key, row_hash, version, id, seq FROM ev",
                            &[&source, &keys, &ids, &s.file_id],
                        )
                        .await
                        .map_err(q("appending removed events"))?;
                    insert_deliveries(&tx, source, &sinks).await?;
                    tx.execute(
                        "UPDATE files SET events_written = events_written + $2 WHERE id = $1",
                        &[&s.file_id, &(n as i64)],
                    )
                    .await
                    .map_err(q("counting events"))?;
                    tx.commit().await.map_err(q("committing removed events"))?;
                    stats.events.fetch_add(n, Ordering::Relaxed);
                    crate::metrics::events_written(&s.source, "removed", n);
                    signal.notify();
                    Ok(())
                })
            }),
        )
    }
}

/// Stores rejected rows with their line and reason.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct WriteRejects {
    pub snapshot: Arc<Snapshot>,
    pub rejects: Vec<Reject>,
}

impl Handler<WriteRejects> for EventLogWriter {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: WriteRejects, _: &mut Context<Self>) -> Self::Result {
        let s = msg.snapshot;
        let rejects = msg.rejects;
        run(
            self,
            s.admitted,
            Box::new(move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await.map_err(q("opening a transaction"))?;
                    let sink = tx
                        .copy_in(
                            "COPY rejects (file_id, line, reason, raw) FROM STDIN (FORMAT binary)",
                        )
                        .await
                        .map_err(q("storing rejects"))?;
                    let writer = BinaryCopyInWriter::new(
                        sink,
                        &[Type::INT8, Type::INT8, Type::TEXT, Type::BYTEA],
                    );
                    pin_mut!(writer);
                    for r in &rejects {
                        let values: [&(dyn ToSql + Sync); 4] =
                            [&s.file_id, &(r.line as i64), &r.reason.as_str(), &r.raw];
                        writer
                            .as_mut()
                            .write(&values)
                            .await
                            .map_err(q("storing rejects"))?;
                    }
                    writer.finish().await.map_err(q("storing rejects"))?;
                    tx.commit().await.map_err(q("storing rejects"))
                })
            }),
        )
    }
}

/// Records the file's SHA-256 and answers the id of the source's last ingested file if it has the same content.
#[derive(Message)]
#[rtype(result = "Result<Option<i64>, PipelineError>")]
pub struct RecordSha {
    pub snapshot: Arc<Snapshot>,
    pub sha256: String,
}

impl Handler<RecordSha> for EventLogWriter {
    type Result = AtomicResponse<Self, Result<Option<i64>, PipelineError>>;

    fn handle(&mut self, msg: RecordSha, _: &mut Context<Self>) -> Self::Result {
        let s = msg.snapshot;
        let sha = msg.sha256;
        run(
            self,
            s.admitted,
            Box::new(move |c| {
                Box::pin(async move {
                    c.execute(
                        "UPDATE files SET sha256 = $2 WHERE id = $1",
                        &[&s.file_id, &sha],
                    )
                    .await
                    .map_err(q("recording a file's sha256"))?;
                    let row = c
                        .query_opt(
                            "SELECT id, sha256 = $2 FROM files WHERE source = $1 AND id <> $3 AND status = 'done'
                              ORDER BY finished_at DESC, id DESC LIMIT 1",
                            &[&&*s.source, &sha, &s.file_id],
                        )
                        .await
                        .map_err(q("looking for a file with the same content"))?;
                    // Only the last ingested snapshot counts: content equal to an older one is a revert of the
                    // source's state, and its changes must flow.
                    Ok(row.filter(|r| r.get::<_, bool>(1)).map(|r| r.get(0)))
                })
            }),
        )
    }
}

/// Closes a file whose content was already ingested: `duplicate_file`, with no rows counted.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct MarkDuplicate {
    pub snapshot: Arc<Snapshot>,
    pub original: i64,
}

impl Handler<MarkDuplicate> for EventLogWriter {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: MarkDuplicate, _: &mut Context<Self>) -> Self::Result {
        let s = msg.snapshot;
        let reason = format!("same content as file {}", msg.original);
        run(
            self,
            s.admitted,
            Box::new(move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await.map_err(q("opening a transaction"))?;
                    tx.execute("DELETE FROM rejects WHERE file_id = $1", &[&s.file_id])
                        .await
                        .map_err(q("clearing a duplicate file's rejects"))?;
                    tx.execute(
                        "UPDATE files SET status = 'duplicate_file', reason = $2, finished_at = now(),
                                duration_ms = $3
                          WHERE id = $1",
                        &[&s.file_id, &reason, &(s.admitted.elapsed().as_millis() as i64)],
                    )
                    .await
                    .map_err(q("recording a duplicate file"))?;
                    tx.commit().await.map_err(q("recording a duplicate file"))
                })
            }),
        )
    }
}

/// Closes a snapshot: stores the conflict losers and the ledger counters, and marks the file `done`.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Finalize {
    pub snapshot: Arc<Snapshot>,
    pub counts: Counts,
    pub conflicts: Vec<ConflictRow>,
    /// Keys to mark removed without an event (sources that do not emit removals).
    pub silently_removed: Vec<KeyHash>,
    /// Keys whose silent removal mark is cleared.
    pub revived: Vec<KeyHash>,
}

impl Handler<Finalize> for EventLogWriter {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: Finalize, _: &mut Context<Self>) -> Self::Result {
        let Finalize {
            snapshot: s,
            counts,
            conflicts,
            silently_removed,
            revived,
        } = msg;
        let silently_removed: Vec<i64> = silently_removed.iter().map(|k| *k as i64).collect();
        let revived: Vec<i64> = revived.iter().map(|k| *k as i64).collect();
        run(
            self,
            s.admitted,
            Box::new(move |c| {
                Box::pin(async move {
                    let mut raws = Vec::with_capacity(conflicts.len());
                    let mut buf = Vec::new();
                    for r in &conflicts {
                        read_row(&s, r.offset, r.len, &mut buf)?;
                        raws.push(buf.clone());
                    }
                    let tx = c.transaction().await.map_err(q("opening a transaction"))?;
                    let sink = tx
                        .copy_in("COPY conflicts (file_id, line, key_hash, raw) FROM STDIN (FORMAT binary)")
                        .await
                        .map_err(q("storing conflicts"))?;
                    let writer = BinaryCopyInWriter::new(
                        sink,
                        &[Type::INT8, Type::INT8, Type::INT8, Type::BYTEA],
                    );
                    pin_mut!(writer);
                    for (r, raw) in conflicts.iter().zip(&raws) {
                        let values: [&(dyn ToSql + Sync); 4] =
                            [&s.file_id, &(r.line as i64), &(r.key_hash as i64), raw];
                        writer
                            .as_mut()
                            .write(&values)
                            .await
                            .map_err(q("storing conflicts"))?;
                    }
                    writer.finish().await.map_err(q("storing conflicts"))?;
                    for (keys, removed) in [(&silently_removed, true), (&revived, false)] {
                        if !keys.is_empty() {
                            tx.execute(
                                "UPDATE record_state SET removed = $3, updated_at = now()
                                  WHERE source = $1 AND key_hash = ANY($2)",
                                &[&&*s.source, keys, &removed],
                            )
                            .await
                            .map_err(q("marking removed records"))?;
                        }
                    }
                    let n = |v: u64| v as i64;
                    tx.execute(
                        "UPDATE files SET status = 'done', rows = $2, new = $3, changed = $4, unchanged = $5,
                                duplicate = $6, conflict = $7, rejected = $8, removed = $9,
                                finished_at = now(), duration_ms = $10, reason = NULL
                          WHERE id = $1",
                        &[
                            &s.file_id,
                            &n(counts.rows),
                            &n(counts.new),
                            &n(counts.changed),
                            &n(counts.unchanged),
                            &n(counts.duplicate),
                            &n(counts.conflict),
                            &n(counts.rejected),
                            &n(counts.removed),
                            &(s.admitted.elapsed().as_millis() as i64),
                        ],
                    )
                    .await
                    .map_err(q("closing a file"))?;
                    tx.commit().await.map_err(q("closing a file"))
                })
            }),
        )
    }
}

/// The writer's state dump.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriterDump {
    pub connected: bool,
    pub batches_committed: u64,
    pub events_written: u64,
    pub failures: u64,
}

/// Answers once every message queued before it has been handled (the writer handles them one at a time, in
/// order). A shard sends it before reading `record_state`, so that batches queued by a snapshot attempt cut short
/// by a restart are committed (or failed) before the state is rebuilt from the database.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Quiesce;

impl Handler<Quiesce> for EventLogWriter {
    type Result = Result<(), PipelineError>;

    fn handle(&mut self, _: Quiesce, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "WriterDump")]
pub struct DumpWriter;

impl Handler<DumpWriter> for EventLogWriter {
    type Result = MessageResult<DumpWriter>;

    fn handle(&mut self, _: DumpWriter, _: &mut Context<Self>) -> Self::Result {
        MessageResult(WriterDump {
            connected: self.client.is_some(),
            batches_committed: self.stats.batches.load(Ordering::Relaxed),
            events_written: self.stats.events.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_holds_back_while_a_snapshot_is_ingested_for_at_most_the_limit() {
        let signal = OutboxSignal::default();
        let max = Duration::from_secs(10);
        assert_eq!(signal.hold(max), None, "nothing ingested");
        let first = signal.ingesting();
        let second = signal.ingesting();
        assert!(signal.hold(max).is_some_and(|d| d <= max));
        assert_eq!(signal.hold(Duration::ZERO), None, "yielding turned off");
        drop(first);
        assert!(signal.hold(max).is_some(), "one snapshot still in flight");
        let woken = signal.subscribe();
        drop(second);
        assert_eq!(signal.hold(max), None);
        // The end of the last snapshot wakes delivery at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), woken.notified())
                .await
                .expect("woken when ingest ended");
        });
    }

    #[test]
    fn the_hold_ends_after_the_limit_even_while_ingest_goes_on() {
        let signal = OutboxSignal::default();
        let _long = signal.ingesting();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(signal.hold(Duration::from_millis(20)), None);
        assert!(signal.hold(Duration::from_secs(5)).is_some());
    }

    #[test]
    fn snapshots_in_quick_succession_hold_delivery_back_once_for_the_whole_run() {
        let signal = OutboxSignal::default();
        let max = Duration::from_millis(40);
        drop(signal.ingesting());
        std::thread::sleep(Duration::from_millis(50));
        // The next file of a backlog starts at once: the run began 50 ms ago, past the limit.
        let _next = signal.ingesting();
        assert_eq!(signal.hold(max), None);
    }
}
