//! ParserPool: reads a snapshot once, parses it in parallel off the async threads, and routes rows to the dedupe
//! shards (SPEC §2).
//!
//! One reader thread streams the file in chunks of whole lines (`pipeline.chunk_bytes`) and hashes every byte with
//! SHA-256 on the way (the ledger's content identity). Chunks are parsed on blocking threads, at most
//! `pipeline.parser_workers` at a time, and their rows are routed in file order to the shard that owns each key,
//! through bounded mailboxes: when a shard falls behind, parsing waits. At the end the pool asks every shard to
//! settle (the barrier), then closes the file's ledger row.

use crate::dedupe::{Abort, Barrier, BeginSnapshot, Classify, DedupeShard};
use crate::error::{FileError, PipelineError};
use crate::faults::Faults;
use crate::mailbox::{EdgeSender, Mailbox};
use crate::parse::{ParsedChunk, ParsedRow};
use crate::snapshot::{shard_of, Counts, Snapshot};
use crate::supervisor::Beat;
use crate::writer::{BeginFile, EventLogWriter, Finalize, MarkDuplicate, RecordSha, WriteRejects};
use actix::prelude::*;
use futures_util::stream::{FuturesOrdered, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod report;

/// How a snapshot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(Counts),
    /// Same content as an earlier, finished file.
    Duplicate {
        original: i64,
    },
}

/// Progress of the snapshot in flight, for logs, `/admin/files` and the state dump.
#[derive(Debug, Default)]
pub struct Progress {
    pub file_id: AtomicU64,
    pub bytes: AtomicU64,
    pub size: AtomicU64,
    pub rows: AtomicU64,
    /// Told when a snapshot is being ingested (delivery yields to it).
    pub outbox: crate::writer::OutboxSignal,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgressView {
    pub file_id: i64,
    pub fraction: f64,
    pub rows: u64,
}

impl Progress {
    pub fn view(&self) -> Option<ProgressView> {
        let id = self.file_id.load(Ordering::Relaxed);
        (id != 0).then(|| {
            let size = self.size.load(Ordering::Relaxed).max(1);
            ProgressView {
                file_id: id as i64,
                fraction: self.bytes.load(Ordering::Relaxed) as f64 / size as f64,
                rows: self.rows.load(Ordering::Relaxed),
            }
        })
    }
}

/// The shards of each source.
pub type Routes = HashMap<Arc<str>, Vec<Mailbox<DedupeShard>>>;

pub struct ParserPool {
    /// Chunks parsed at once: the bound on parsing threads and on chunk memory.
    workers: usize,
    chunk_bytes: usize,
    routes: Arc<Routes>,
    writer: Mailbox<EventLogWriter>,
    progress: Arc<Progress>,
    snapshots: Arc<AtomicU64>,
    beat: Beat,
    faults: Faults,
}

impl ParserPool {
    pub fn new(
        workers: usize,
        chunk_bytes: usize,
        routes: Routes,
        writer: Mailbox<EventLogWriter>,
        progress: Arc<Progress>,
        beat: Beat,
        faults: Faults,
    ) -> Self {
        ParserPool {
            beat,
            faults,
            workers,
            chunk_bytes,
            routes: Arc::new(routes),
            writer,
            progress,
            snapshots: Arc::default(),
        }
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }
}

impl Actor for ParserPool {
    type Context = Context<Self>;
}

impl Supervised for ParserPool {
    /// A restart drops the snapshot in flight (the watcher takes its file again); parsing threads still running
    /// finish on their own and their results are dropped.
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.progress.file_id.store(0, Ordering::Relaxed);
    }
}

/// Hands the memory a snapshot freed back to the system. glibc keeps freed memory in the arena of the thread that
/// freed it, and a snapshot frees tens of MB (chunks, parsed rows, the shards' rows in flight, batches) across a
/// dozen threads; without this the process keeps its peak between snapshots (SPEC §9's 300 MB with 8M keys).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Ingest one admitted snapshot; answers when it is committed (or found to be a duplicate).
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct Ingest(pub Arc<Snapshot>);

impl Handler<Ingest> for ParserPool {
    type Result = AtomicResponse<Self, Result<Outcome, PipelineError>>;

    fn handle(&mut self, msg: Ingest, _: &mut Context<Self>) -> Self::Result {
        let snapshot = msg.0;
        let shards: Vec<Mailbox<DedupeShard>> = self
            .routes
            .get(&snapshot.source)
            .cloned()
            .unwrap_or_default();
        let job = IngestJob {
            snapshot,
            shards,
            writer: self.writer.sender_for("parser"),
            workers: self.workers,
            chunk_bytes: self.chunk_bytes,
            progress: self.progress.clone(),
            faults: self.faults.clone(),
            beat: self.beat.clone(),
        };
        let snapshots = self.snapshots.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let shards = job.shards.clone();
                let ingesting = job.progress.outbox.ingesting();
                let result = job.run().await;
                drop(ingesting);
                tokio::task::spawn_blocking(release_freed_memory);
                if result.is_err() {
                    for s in &shards {
                        s.addr().do_send(Abort { reload: true });
                    }
                }
                snapshots.fetch_add(1, Ordering::Relaxed);
                result
            }
            .into_actor(self),
        ))
    }
}

struct IngestJob {
    snapshot: Arc<Snapshot>,
    shards: Vec<Mailbox<DedupeShard>>,
    writer: EdgeSender<EventLogWriter>,
    workers: usize,
    chunk_bytes: usize,
    progress: Arc<Progress>,
    faults: Faults,
    /// Busy only while waiting for its own reading and parsing: time spent waiting for room downstream is the
    /// downstream actor's (the heartbeat must blame the actor that is stuck, not the ones queued behind it).
    beat: Beat,
}

/// A chunk of whole lines and where it sits in the file. Line numbers are not known yet (counting them is left
/// to the parsing threads); the pool numbers the rows as it takes the results in file order.
struct Chunk {
    bytes: Vec<u8>,
    /// Bytes at the start that are not data (the header line).
    skip: usize,
    /// File offset of `bytes[0]`.
    offset: u64,
}

impl IngestJob {
    async fn run(self) -> Result<Outcome, PipelineError> {
        let s = &self.snapshot;
        if self.shards.is_empty() {
            return Err(PipelineError::Parser(format!(
                "no dedupe shards for source {}",
                s.source
            )));
        }
        self.progress
            .file_id
            .store(s.file_id as u64, Ordering::Relaxed);
        self.progress.size.store(s.size, Ordering::Relaxed);
        self.progress.bytes.store(0, Ordering::Relaxed);
        self.progress.rows.store(0, Ordering::Relaxed);
        let result = tokio::select! {
            r = self.stream() => r,
            never = report::log_progress(s, &self.progress) => match never {},
        };
        self.progress.file_id.store(0, Ordering::Relaxed);
        result
    }

    async fn stream(&self) -> Result<Outcome, PipelineError> {
        let s = &self.snapshot;
        self.writer.call(BeginFile(s.clone())).await?;
        let senders: Vec<EdgeSender<DedupeShard>> =
            self.shards.iter().map(Mailbox::sender).collect();
        for r in
            futures_util::future::join_all(senders.iter().map(|t| t.call(BeginSnapshot(s.clone()))))
                .await
        {
            r?;
        }

        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(self.workers + 1);
        let reader = {
            let s = s.clone();
            let chunk_bytes = self.chunk_bytes;
            let progress = self.progress.clone();
            tokio::task::spawn_blocking(move || read_chunks(&s, chunk_bytes, &progress, tx))
        };

        let mut rejected = 0u64;
        let mut valid = 0u64;
        let mut parsing = FuturesOrdered::new();
        let mut reader_done = false;
        // File line number of the next chunk's first line (the header is line 1).
        let mut next_line = 2u64;
        loop {
            // Keep up to `workers` chunks parsing; take results in file order.
            while !reader_done && parsing.len() < self.workers {
                let busy = self.beat.busy();
                let chunk = rx.recv().await;
                drop(busy);
                match chunk {
                    Some(chunk) => {
                        let layout = s.layout.clone();
                        parsing.push_back(tokio::task::spawn_blocking(move || {
                            let data = &chunk.bytes[chunk.skip..];
                            let lines = memchr::memchr_iter(b'\n', data).count() as u64;
                            // Lines numbered from 0 here; shifted to file line numbers in order below.
                            let parsed =
                                layout.parse_chunk(data, 0, chunk.offset + chunk.skip as u64);
                            (parsed, lines)
                        }));
                    }
                    None => reader_done = true,
                }
            }
            let busy = self.beat.busy();
            let parsed = parsing.next().await;
            drop(busy);
            let Some(parsed) = parsed else {
                break;
            };
            // A panic on a parsing thread is the pool's own: re-raised here, where its supervisor sees it.
            let (mut parsed, lines): (ParsedChunk, u64) = match parsed {
                Ok(p) => p,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(PipelineError::Parser(format!("parser task failed: {e}"))),
            };
            crate::faults::check(&self.faults, "parser").await;
            for r in &mut parsed.rows {
                r.line += next_line;
            }
            for r in &mut parsed.rejects {
                r.line += next_line;
            }
            next_line += lines;
            valid += parsed.rows.len() as u64;
            rejected += parsed.rejects.len() as u64;
            self.progress.rows.fetch_add(
                (parsed.rows.len() + parsed.rejects.len()) as u64,
                Ordering::Relaxed,
            );
            self.route(&senders, parsed.rows).await?;
            if !parsed.rejects.is_empty() {
                for r in &parsed.rejects {
                    crate::metrics::rows_rejected(&s.source, r.reason.as_str(), 1);
                }
                self.writer
                    .send(WriteRejects {
                        snapshot: s.clone(),
                        rejects: parsed.rejects,
                    })
                    .await?;
            }
        }
        let busy = self.beat.busy();
        let sha256 = reader.await;
        drop(busy);
        let sha256 =
            sha256.map_err(|e| PipelineError::Parser(format!("reader task failed: {e}")))??;

        for t in &senders {
            t.flush().await?;
        }
        if let Some(original) = self
            .writer
            .call(RecordSha {
                snapshot: s.clone(),
                sha256,
            })
            .await?
        {
            for shard in &self.shards {
                shard.addr().do_send(Abort { reload: false });
            }
            self.writer.flush().await?;
            self.writer
                .call(MarkDuplicate {
                    snapshot: s.clone(),
                    original,
                })
                .await?;
            return Ok(Outcome::Duplicate { original });
        }

        let reports = futures_util::future::join_all(senders.iter().map(|t| t.call(Barrier))).await;
        let mut counts = Counts {
            rejected,
            ..Counts::default()
        };
        let mut conflicts = Vec::new();
        let (mut silently_removed, mut revived) = (Vec::new(), Vec::new());
        for r in reports {
            let r = r?;
            counts.add(&r.counts);
            conflicts.extend(r.conflicts);
            silently_removed.extend(r.silently_removed);
            revived.extend(r.revived);
        }
        counts.rows = valid + rejected;
        self.writer.flush().await?;
        self.writer
            .call(Finalize {
                snapshot: s.clone(),
                counts,
                conflicts,
                silently_removed,
                revived,
            })
            .await?;
        Ok(Outcome::Done(counts))
    }

    /// Splits a parsed chunk by shard and sends each part through that shard's bounded mailbox.
    async fn route(
        &self,
        senders: &[EdgeSender<DedupeShard>],
        rows: Vec<ParsedRow>,
    ) -> Result<(), PipelineError> {
        let n = senders.len();
        let mut parts: Vec<Vec<ParsedRow>> = (0..n)
            .map(|_| Vec::with_capacity(rows.len() / n + 16))
            .collect();
        for row in rows {
            parts[shard_of(row.key_hash, n)].push(row);
        }
        for (sender, part) in senders.iter().zip(parts) {
            if !part.is_empty() {
                sender.send(Classify(part, sender.track())).await?;
            }
        }
        Ok(())
    }
}

/// Streams the file from the start: every byte into SHA-256, data lines out in chunks of whole lines.
/// Returns the file's SHA-256 in hex.
fn read_chunks(
    s: &Snapshot,
    chunk_bytes: usize,
    progress: &Progress,
    tx: tokio::sync::mpsc::Sender<Chunk>,
) -> Result<String, PipelineError> {
    let io = |source| {
        PipelineError::File(FileError::Io {
            path: s.path.clone(),
            source,
        })
    };
    // The handle the snapshot was admitted with (and that the writer reads rows from): a file renamed over this
    // path meanwhile is not read by mistake.
    let mut file = s.file.try_clone().map_err(io)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(io)?;
    let mut sha = Sha256::new();
    let mut pos = 0u64; // file offset of buf[0]
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes);
    let mut eof = false;
    while !eof {
        // Fill up to chunk_bytes (more if a single line is longer).
        let start = buf.len();
        let target = if start >= chunk_bytes {
            start + chunk_bytes
        } else {
            chunk_bytes
        };
        buf.resize(target, 0);
        let mut filled = start;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..]).map_err(io)?;
            if n == 0 {
                eof = true;
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        sha.update(&buf[start..]);
        progress
            .bytes
            .fetch_add((filled - start) as u64, Ordering::Relaxed);
        // Skip the header line.
        let skip = if pos < s.data_offset {
            (s.data_offset - pos).min(buf.len() as u64) as usize
        } else {
            0
        };
        let cut = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf[skip..]) {
                Some(i) => skip + i + 1,
                // A line longer than the chunk (or the header still being read): read more before cutting.
                None => continue,
            }
        };
        // The chunk keeps this buffer (no copy); only the partial last line moves to the next one.
        let mut next = Vec::with_capacity(chunk_bytes.max(buf.len() - cut));
        next.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        let bytes = std::mem::replace(&mut buf, next);
        if cut > skip {
            let chunk = Chunk {
                bytes,
                skip,
                offset: pos,
            };
            if tx.blocking_send(chunk).is_err() {
                return Err(PipelineError::Shutdown);
            }
        }
        pos += cut as u64;
    }
    Ok(hex::encode(sha.finalize()))
}
