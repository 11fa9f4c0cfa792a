//! DedupeActor: one shard of a source's committed state, classifying each row of a snapshot (SPEC §2, §3.4).
//!
//! Each shard owns the keys with `shard_of(key) == index`. During a snapshot it classifies every row it is sent
//! against the committed state and against the rows of the same snapshot already seen (duplicates, conflicts).
//! Nothing is emitted until the end-of-snapshot [`Barrier`]: only then is every conflict settled by the
//! order-independent winner rule (greatest order key, then greatest row hash), so re-ordering a file never creates
//! changes. At the barrier the shard reports removed keys, updates its in-memory state — the only time memory runs
//! ahead of the database — and hands its changes to the EventLogWriter, waiting for their commit before it answers.

pub mod state;

use crate::error::{DbError, PipelineError};
use crate::faults::Faults;
use crate::mailbox::EdgeSender;
use crate::snapshot::{shard_of, Change, ChangeKind, ConflictRow, Counts, Snapshot};
use crate::supervisor::Beat;
use crate::writer::{EventLogWriter, Quiesce, WriteChanges, WriteRemoved};
use actix::prelude::*;
use futures_util::{pin_mut, TryStreamExt};
use serde::Serialize;
use state::{Entry, KeyMap, StateMap};
use std::sync::Arc;
use std::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;

use crate::parse::{KeyHash, ParsedRow, RowHash};

/// Low 64 bits of a row hash: what the in-memory state compares.
fn low64(h: RowHash) -> u64 {
    h as u64
}

/// One row of the snapshot in flight, as the shard keeps it until the barrier: 48 bytes, no field values. The row
/// hash is two words (no 16-byte alignment), the line a u32.
#[derive(Clone, Copy)]
struct SeenRow {
    key: KeyHash,
    row_hash: [u64; 2],
    order_key: u64,
    offset: u64,
    line: u32,
    len: u32,
}

impl SeenRow {
    fn new(row: &ParsedRow) -> Self {
        SeenRow {
            key: row.key_hash,
            row_hash: [row.row_hash as u64, (row.row_hash >> 64) as u64],
            order_key: row.order_key,
            offset: row.offset,
            line: u32::try_from(row.line).unwrap_or(u32::MAX),
            len: row.len,
        }
    }

    fn hash(&self) -> RowHash {
        u128::from(self.row_hash[0]) | (u128::from(self.row_hash[1]) << 64)
    }

    /// The conflict winner rule: greatest order key, then greatest row hash.
    fn rank(&self) -> (u64, RowHash) {
        (self.order_key, self.hash())
    }
}

/// A key's rows in one snapshot, settled: the winner, the rows that lost to it (one per distinct content, the
/// first seen), and how many rows repeated a content already seen.
struct Settled<'a> {
    key: KeyHash,
    winner: &'a SeenRow,
    losers: Vec<&'a SeenRow>,
    duplicates: u64,
}

/// Settles one key's rows, given in line order. Order-independent: any order of the same rows gives the same
/// winner, the same losing contents and the same counts.
fn settle_key(rows: &[SeenRow]) -> Settled<'_> {
    let mut winner = &rows[0];
    let mut firsts: Vec<&SeenRow> = Vec::new();
    // A key repeated many times in one file (a broken export) stays linear.
    let mut contents: Option<std::collections::HashSet<[u64; 2]>> =
        (rows.len() > 16).then(std::collections::HashSet::new);
    let mut duplicates = 0;
    for r in rows {
        let repeated = match contents.as_mut() {
            Some(set) => !set.insert(r.row_hash),
            None => firsts.iter().any(|e| e.row_hash == r.row_hash),
        };
        if repeated {
            duplicates += 1;
            continue;
        }
        firsts.push(r);
        if r.rank() > winner.rank() {
            winner = r;
        }
    }
    let losers = firsts
        .into_iter()
        .filter(|r| r.row_hash != winner.row_hash)
        .collect();
    Settled {
        key: rows[0].key,
        winner,
        losers,
        duplicates,
    }
}

/// What a shard holds only while a snapshot is in flight.
struct InFlight {
    snapshot: Arc<Snapshot>,
    /// Every row of the snapshot routed to this shard, in arrival (file) order; grouped by key at the barrier. A
    /// vector sized from the last snapshot holds them in a third of the memory of a map from key to winner.
    seen: Vec<SeenRow>,
    /// Resumed snapshot: keys whose change this file already committed, and its kind.
    committed_by_file: KeyMap<ChangeKind>,
    committed_removed: u64,
}

/// The state dump of a shard.
#[derive(Debug, Clone, Serialize)]
pub struct ShardDump {
    pub source: String,
    pub shard: usize,
    pub keys: usize,
    pub state_bytes: usize,
    pub in_flight_rows: u64,
    pub snapshots: u64,
}

/// What a shard found in one snapshot.
#[derive(Debug, Default)]
pub struct ShardReport {
    pub counts: Counts,
    pub conflicts: Vec<ConflictRow>,
    pub events: u64,
    /// Keys absent from the snapshot of a source that does not emit removals: marked removed at finalize.
    pub silently_removed: Vec<KeyHash>,
    /// Keys silently removed before and back unchanged: their mark is cleared at finalize.
    pub revived: Vec<KeyHash>,
}

pub struct DedupeShard {
    source: Arc<str>,
    index: usize,
    shards: usize,
    db_url: String,
    writer: EdgeSender<EventLogWriter>,
    writer_batch: usize,
    state: StateMap,
    in_flight: Option<InFlight>,
    /// Rows of the last snapshot: the capacity reserved for the next one.
    expected_rows: usize,
    /// The in-memory state may differ from `record_state` (after an aborted snapshot, or before the first load):
    /// the next snapshot reloads it first.
    dirty: bool,
    snapshots: u64,
    beat: Beat,
    faults: Faults,
}

/// Which keys a shard owns and where it reads and writes them.
pub struct ShardSpec {
    pub source: Arc<str>,
    pub index: usize,
    pub shards: usize,
    pub db_url: String,
    pub writer: EdgeSender<EventLogWriter>,
    /// Changes per `WriteChanges` batch.
    pub writer_batch: usize,
}

impl DedupeShard {
    pub fn new(spec: ShardSpec, beat: Beat, faults: Faults) -> Self {
        DedupeShard {
            beat,
            faults,
            source: spec.source,
            index: spec.index,
            shards: spec.shards,
            db_url: spec.db_url,
            writer: spec.writer,
            writer_batch: spec.writer_batch,
            state: StateMap::default(),
            in_flight: None,
            expected_rows: 0,
            dirty: true,
            snapshots: 0,
        }
    }

    /// Settles the snapshot: groups the rows by key, picks each key's winner by the order-independent rule,
    /// classifies the winners, finds removed keys and applies the changes to the state.
    fn settle(&mut self, mut fl: InFlight) -> (ShardReport, Vec<Change>, Vec<(KeyHash, u32)>) {
        let rows = fl.seen.len() as u64;
        self.expected_rows = fl.seen.len();
        // By key, then line: each key's rows in file order, and the state read in key order (its own order).
        fl.seen.sort_unstable_by_key(|r| (r.key, r.line));
        let mut counts = Counts {
            rows,
            ..Counts::default()
        };
        let emit_removed = fl.snapshot.emit_removed;
        let mut changes = Vec::new();
        let mut revived = Vec::new();
        let mut conflicts = Vec::new();
        for group in fl.seen.chunk_by(|a, b| a.key == b.key) {
            let settled = settle_key(group);
            let key = settled.key;
            let s = settled.winner;
            counts.duplicate += settled.duplicates;
            counts.conflict += settled.losers.len() as u64;
            conflicts.extend(settled.losers.iter().map(|l| ConflictRow {
                key_hash: key,
                line: u64::from(l.line),
                offset: l.offset,
                len: l.len,
            }));
            let prior = self.state.lookup_and_mark(key);
            let (kind, version) = match prior {
                None => (Some(ChangeKind::New), 1),
                // Downstream was told it was removed: it comes back as new.
                Some(c) if c.removed && emit_removed => (Some(ChangeKind::New), c.version + 1),
                Some(c) if c.row == low64(s.hash()) => {
                    if c.removed {
                        // Silently removed before and back unchanged: nothing to send, only the mark to clear.
                        revived.push(key);
                        self.state.set(key, c.row, c.version, false);
                    }
                    (None, c.version)
                }
                Some(c) => (Some(ChangeKind::Changed), c.version + 1),
            };
            match kind {
                None => match fl.committed_by_file.get(&key) {
                    Some(ChangeKind::New) => counts.new += 1,
                    Some(ChangeKind::Changed) => counts.changed += 1,
                    _ => counts.unchanged += 1,
                },
                Some(kind) => {
                    if kind == ChangeKind::New {
                        counts.new += 1;
                    } else {
                        counts.changed += 1;
                    }
                    changes.push(Change {
                        key_hash: key,
                        kind,
                        version,
                        row_hash: s.hash(),
                        line: u64::from(s.line),
                        offset: s.offset,
                        len: s.len,
                    });
                }
            }
        }
        drop(fl.seen);
        // Keys absent from this snapshot are counted once: they are marked removed — with a `removed` event
        // (and a new version) where the source emits them, silently otherwise — and not counted again while absent.
        let absent = self.state.unseen_live();
        counts.removed = absent.len() as u64 + fl.committed_removed;
        for c in &changes {
            self.state
                .set(c.key_hash, low64(c.row_hash), c.version, false);
        }
        let mut silently_removed = Vec::new();
        let mut removed: Vec<(KeyHash, u32)> = Vec::new();
        for (key, version) in absent {
            let row = self.state.get(key).map(|c| c.row).unwrap_or_default();
            if emit_removed {
                self.state.set(key, row, version + 1, true);
                removed.push((key, version + 1));
            } else {
                self.state.set(key, row, version, true);
                silently_removed.push(key);
            }
        }
        self.state.end_snapshot();
        changes.sort_unstable_by_key(|c| c.offset);
        let events = (changes.len() + removed.len()) as u64;
        (
            ShardReport {
                counts,
                conflicts,
                events,
                silently_removed,
                revived,
            },
            changes,
            removed,
        )
    }

    fn dump(&self) -> ShardDump {
        ShardDump {
            source: self.source.to_string(),
            shard: self.index,
            keys: self.state.len(),
            state_bytes: self.state.heap_bytes(),
            in_flight_rows: self.in_flight.as_ref().map_or(0, |f| f.seen.len() as u64),
            snapshots: self.snapshots,
        }
    }
}

impl Actor for DedupeShard {
    type Context = Context<Self>;
}

impl Supervised for DedupeShard {
    /// A restart forgets the snapshot in flight and the state (which may have run ahead of the database); the
    /// next snapshot reloads it from `record_state` first.
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.in_flight = None;
        self.state = StateMap::default();
        self.dirty = true;
        // A fresh producer handle: failures of the batches cut short stay with the old one.
        self.writer = self.writer.clone();
    }
}

/// Loads the shard's committed state from `record_state`.
async fn load_state(
    db_url: &str,
    source: &str,
    shards: usize,
    index: usize,
) -> Result<StateMap, PipelineError> {
    let client = crate::db::connect(db_url).await?;
    // COPY takes no parameters; the source name is validated to [a-z0-9_-] by the configuration.
    let sql = format!(
        "COPY (SELECT key_hash, row_hash, version, removed FROM record_state \
         WHERE source = '{source}' AND (key_hash & 2147483647) % {shards} = {index}) TO STDOUT (FORMAT binary)"
    );
    let stream = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| DbError::query("loading record_state", e))?;
    let rows = BinaryCopyOutStream::new(stream, &[Type::INT8, Type::BYTEA, Type::INT4, Type::BOOL]);
    pin_mut!(rows);
    let mut entries = Vec::new();
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| DbError::query("loading record_state", e))?
    {
        let key: i64 = row.get(0);
        let hash: &[u8] = row.get(1);
        let version: i32 = row.get(2);
        let removed: bool = row.get(3);
        let mut low = [0u8; 8];
        low.copy_from_slice(&hash[..8]);
        entries.push(Entry::new(
            key as u64,
            u64::from_le_bytes(low),
            version as u32,
            removed,
        ));
    }
    Ok(StateMap::from_entries(entries))
}

/// Loads what a partly committed file already wrote for this shard's keys.
async fn load_committed_by_file(
    db_url: &str,
    snapshot: &Snapshot,
    shards: usize,
    index: usize,
) -> Result<(KeyMap<ChangeKind>, u64), PipelineError> {
    let client = crate::db::connect(db_url).await?;
    let rows = client
        .query(
            "SELECT key_hash, kind FROM events WHERE file_id = $1 AND source = $2 \
             AND (key_hash & 2147483647) % $3::bigint = $4::bigint",
            &[
                &snapshot.file_id,
                &&*snapshot.source,
                &(shards as i64),
                &(index as i64),
            ],
        )
        .await
        .map_err(|e| DbError::query("loading a resumed file's events", e))?;
    let mut map = KeyMap::default();
    let mut removed = 0;
    for r in rows {
        let key: i64 = r.get(0);
        match ChangeKind::parse(r.get(1)) {
            Some(ChangeKind::Removed) => removed += 1,
            Some(kind) => {
                map.insert(key as u64, kind);
            }
            None => {}
        }
    }
    Ok((map, removed))
}

/// Rebuilds the shard's state from the database (at start, and after any failed snapshot).
#[derive(Message)]
#[rtype(result = "Result<usize, PipelineError>")]
pub struct Reload;

impl Handler<Reload> for DedupeShard {
    type Result = AtomicResponse<Self, Result<usize, PipelineError>>;

    fn handle(&mut self, _: Reload, _: &mut Context<Self>) -> Self::Result {
        let (beat, writer) = (self.beat.clone(), self.writer.clone());
        self.in_flight = None;
        // Until the load succeeds, the next snapshot must load again.
        self.dirty = true;
        let (url, source, shards, index) = (
            self.db_url.clone(),
            self.source.clone(),
            self.shards,
            self.index,
        );
        AtomicResponse::new(Box::pin(
            async move {
                writer.call(Quiesce).await?;
                let _busy = beat.busy();
                let started = Instant::now();
                let state = load_state(&url, &source, shards, index).await?;
                tracing::debug!(source = %source, shard = index, keys = state.len(),
                    ms = started.elapsed().as_millis() as u64, "dedupe state loaded");
                Ok(state)
            }
            .into_actor(self)
            .map(|res: Result<StateMap, PipelineError>, act, _| {
                res.map(|state| {
                    act.state = state;
                    act.dirty = false;
                    act.state.len()
                })
            }),
        ))
    }
}

/// Opens a snapshot: from now on `Classify` rows belong to it.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct BeginSnapshot(pub Arc<Snapshot>);

impl Handler<BeginSnapshot> for DedupeShard {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: BeginSnapshot, _: &mut Context<Self>) -> Self::Result {
        let snapshot = msg.0;
        if self.in_flight.take().is_some() {
            self.state.end_snapshot();
        }
        let (url, shards, index) = (self.db_url.clone(), self.shards, self.index);
        let reload = self.dirty.then(|| self.source.clone());
        let (beat, writer) = (self.beat.clone(), self.writer.clone());
        AtomicResponse::new(Box::pin(
            async move {
                if reload.is_some() || snapshot.resumed {
                    writer.call(Quiesce).await?;
                }
                let _busy = beat.busy();
                let state = match reload {
                    Some(source) => Some(load_state(&url, &source, shards, index).await?),
                    None => None,
                };
                let committed = if snapshot.resumed {
                    load_committed_by_file(&url, &snapshot, shards, index).await?
                } else {
                    (KeyMap::default(), 0)
                };
                Ok::<_, PipelineError>((snapshot, state, committed))
            }
            .into_actor(self)
            .map(|res, act, _| {
                let (snapshot, state, (committed_by_file, committed_removed)) = res?;
                if let Some(state) = state {
                    act.state = state;
                    act.dirty = false;
                }
                // Sized once: a snapshot has about as many rows as the last one (or as the keys in the state
                // window), and a vector that doubles while full holds both copies at the moment it grows.
                let expected = if act.expected_rows > 0 {
                    act.expected_rows
                } else {
                    act.state.live_len()
                };
                act.in_flight = Some(InFlight {
                    snapshot,
                    seen: Vec::with_capacity(expected + expected / 32 + 1024),
                    committed_by_file,
                    committed_removed,
                });
                Ok(())
            }),
        ))
    }
}

/// A batch of parsed rows whose keys belong to this shard.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Classify(pub Vec<ParsedRow>, pub crate::mailbox::BatchGuard);

impl Handler<Classify> for DedupeShard {
    type Result = Result<(), PipelineError>;

    fn handle(&mut self, msg: Classify, _: &mut Context<Self>) -> Self::Result {
        crate::faults::check_panic(&self.faults, "dedupe");
        if let Some(fl) = self.in_flight.as_mut() {
            debug_assert!(msg
                .0
                .iter()
                .all(|r| shard_of(r.key_hash, self.shards) == self.index));
            fl.seen.extend(msg.0.iter().map(SeenRow::new));
        }
        Ok(())
    }
}

/// End of snapshot: settle, emit, wait for the commits, report.
#[derive(Message)]
#[rtype(result = "Result<ShardReport, PipelineError>")]
pub struct Barrier;

impl Handler<Barrier> for DedupeShard {
    type Result = AtomicResponse<Self, Result<ShardReport, PipelineError>>;

    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) -> Self::Result {
        let Some(fl) = self.in_flight.take() else {
            return AtomicResponse::new(Box::pin(
                async { Err(PipelineError::Parser("barrier without a snapshot".into())) }
                    .into_actor(self),
            ));
        };
        let snapshot = fl.snapshot.clone();
        // Memory runs ahead of the database from here until the writer has committed every change.
        self.dirty = true;
        let (report, changes, removed) = self.settle(fl);
        self.snapshots += 1;
        let writer = self.writer.clone();
        let batch = self.writer_batch;
        // No heartbeat here: from now on the shard only waits for the writer (whose own heartbeat covers it).
        AtomicResponse::new(Box::pin(
            async move {
                for chunk in changes.chunks(batch) {
                    // Built here, on the shard's thread, while the writer commits the batches before it.
                    let batch = WriteChanges::materialize(snapshot.clone(), chunk, writer.track())?;
                    writer.send(batch).await?;
                }
                for chunk in removed.chunks(batch) {
                    writer
                        .send(WriteRemoved {
                            snapshot: snapshot.clone(),
                            keys: chunk.to_vec(),
                        })
                        .await?;
                }
                writer.flush().await?;
                Ok(report)
            }
            .into_actor(self)
            .map(|res: Result<ShardReport, PipelineError>, act, _| {
                if res.is_ok() {
                    act.dirty = false;
                }
                res
            }),
        ))
    }
}

/// Drops the snapshot in flight without emitting anything. With `reload`, the state is rebuilt from the database
/// before the next snapshot (it may have run ahead of what was committed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Abort {
    pub reload: bool,
}

impl Handler<Abort> for DedupeShard {
    type Result = ();

    fn handle(&mut self, msg: Abort, _: &mut Context<Self>) {
        if self.in_flight.take().is_some() {
            self.state.end_snapshot();
        }
        self.dirty |= msg.reload;
    }
}

/// Asks for the shard's state dump.
#[derive(Message)]
#[rtype(result = "ShardDump")]
pub struct DumpShard;

impl Handler<DumpShard> for DedupeShard {
    type Result = MessageResult<DumpShard>;

    fn handle(&mut self, _: DumpShard, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.dump())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u32, hash: u128, order_key: u64) -> SeenRow {
        SeenRow {
            key: 7,
            row_hash: [hash as u64, (hash >> 64) as u64],
            order_key,
            offset: u64::from(line) * 100,
            line,
            len: 10,
        }
    }

    /// (winner line, losing lines sorted, duplicates) of rows given in some order, settled in line order.
    fn outcome(mut rows: Vec<SeenRow>) -> (u32, Vec<u32>, u64) {
        rows.sort_unstable_by_key(|r| r.line);
        let s = settle_key(&rows);
        let mut losers: Vec<u32> = s.losers.iter().map(|l| l.line).collect();
        losers.sort_unstable();
        (s.winner.line, losers, s.duplicates)
    }

    #[test]
    fn a_keys_rows_settle_to_the_greatest_order_key_then_row_hash_and_count_repeats_once() {
        // Lines 1 and 4 are the same content (a duplicate); 2 has a greater order key; 3 ties with 2 on order key
        // with a smaller hash; 5 repeats the loser 3.
        let rows = vec![
            row(1, 10, 5),
            row(2, 30, 9),
            row(3, 20, 9),
            row(4, 10, 5),
            row(5, 20, 9),
        ];
        assert_eq!(outcome(rows.clone()), (2, vec![1, 3], 2));
        // The same contents at other lines: the winner's content and the counts do not depend on the order.
        let mut shuffled = rows;
        for (r, line) in shuffled.iter_mut().zip([9, 3, 7, 1, 4]) {
            r.line = line;
        }
        let (winner, losers, duplicates) = outcome(shuffled);
        assert_eq!((winner, losers.len(), duplicates), (3, 2, 2));
    }

    #[test]
    fn a_key_repeated_many_times_settles_in_linear_time_with_the_same_counts() {
        let rows: Vec<SeenRow> = (1..=20_000u32)
            .map(|i| row(i, u128::from(i % 50), u64::from(i % 50)))
            .collect();
        let (winner, losers, duplicates) = outcome(rows);
        assert_eq!(winner, 49);
        assert_eq!(losers.len(), 49);
        assert_eq!(duplicates, 20_000 - 50);
    }
}
