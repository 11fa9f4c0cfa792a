//! FileWatcher: one per source. Finds complete snapshots in the inbox, records them in the ledger and hands them
//! to the ParserPool, one at a time (SPEC §3.1).
//!
//! Filesystem events can be lost (overflowing inotify queues, network filesystems), so `notify` only speeds things
//! up: a periodic rescan (`rescan`) is what guarantees a file is seen. A file is complete when it was renamed into
//! the inbox, or when its size and mtime have not changed for `settle`.

use crate::config::{Pending, SourceSettings};
use crate::dedupe::{DedupeShard, Reload};
use crate::error::PipelineError;
use crate::faults::Faults;
use crate::ledger;
use crate::mailbox::Mailbox;
use crate::parse::{HeaderError, Profile};
use crate::parser_pool::{Ingest, Outcome, ParserPool};
use crate::snapshot::Snapshot;
use actix::prelude::*;
use deadpool_postgres::Pool;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the watcher knows of a file it has seen in the inbox.
#[derive(Debug, Clone)]
struct Observation {
    size: u64,
    mtime: SystemTime,
    /// When size and mtime were last seen to change.
    stable_since: Instant,
    /// A filesystem event said the file was renamed into the inbox: its content is complete.
    renamed: bool,
}

#[derive(Debug, Clone)]
struct Candidate {
    path: PathBuf,
    name: String,
    size: u64,
    mtime: SystemTime,
}

impl Candidate {
    /// Newest-first order: the digits in the name (a timestamp, in every export we know), then mtime.
    fn order_key(&self) -> (usize, String, SystemTime) {
        let digits: String = self.name.chars().filter(char::is_ascii_digit).collect();
        (digits.len(), digits, self.mtime)
    }
}

/// Counters of a watcher, for the state dump.
#[derive(Debug, Default)]
pub struct WatcherStats {
    pub files_seen: AtomicU64,
    pub files_done: AtomicU64,
    pub files_failed: AtomicU64,
    pub retries: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatcherDump {
    pub source: String,
    pub busy: bool,
    pub waiting_files: usize,
    pub files_seen: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub retries: u64,
}

pub struct FileWatcher {
    source: Arc<SourceSettings>,
    name: Arc<str>,
    profile: Profile,
    pool: Pool,
    parser: Mailbox<ParserPool>,
    observed: HashMap<PathBuf, Observation>,
    /// Files closed but left in place (no archive): never taken again while unchanged.
    handled: HashSet<(PathBuf, u64, SystemTime)>,
    /// A snapshot is in flight: at most one per source.
    busy: bool,
    /// After a transient failure, the file is retried no sooner than this (exponential backoff).
    retry_at: Option<Instant>,
    failures: u32,
    fs_events: Option<notify::RecommendedWatcher>,
    stats: Arc<WatcherStats>,
    /// The session holding this source's ingest lock (SPEC §10: one instance ingests a source at a time). The
    /// lock lives as long as the connection: if it drops, the lock is gone and must be taken again.
    lock: Option<tokio_postgres::Client>,
    /// A lock attempt is under way.
    locking: bool,
    db_url: String,
    /// The source's dedupe shards: told to rebuild their state whenever the lock is (re)taken, since another
    /// instance may have committed changes meanwhile.
    shards: Vec<Mailbox<DedupeShard>>,
    faults: Faults,
    /// Order key of the newest file taken (`pending = "latest"`: an older one arriving later is superseded).
    last_taken: Option<(usize, String, SystemTime)>,
    /// The file in flight (name, size), and how many ingest restarts happened while each file was in flight. Both
    /// survive a restart: a file that keeps crashing the pipeline is failed instead of retried for ever.
    in_flight: Option<(String, u64)>,
    crashes: HashMap<(String, u64), u32>,
}

/// Ingest restarts while one file was in flight before that file is failed (`crashed_ingest`).
pub const MAX_CRASHES_PER_FILE: u32 = 3;

impl FileWatcher {
    pub fn new(
        source: SourceSettings,
        pool: Pool,
        parser: Mailbox<ParserPool>,
        db_url: String,
        shards: Vec<Mailbox<DedupeShard>>,
        faults: Faults,
    ) -> Self {
        FileWatcher {
            faults,
            last_taken: None,
            in_flight: None,
            crashes: HashMap::new(),
            lock: None,
            locking: false,
            db_url,
            shards,
            name: source.name.as_str().into(),
            profile: source.profile(),
            source: Arc::new(source),
            pool,
            parser,
            observed: HashMap::new(),
            handled: HashSet::new(),
            busy: false,
            retry_at: None,
            failures: 0,
            fs_events: None,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<WatcherStats> {
        self.stats.clone()
    }

    fn watch(&mut self, ctx: &mut Context<Self>) {
        use notify::Watcher;
        let addr = ctx.address();
        // Only names arriving matter: a file renamed in is complete at once, a created one starts its settle time.
        // Everything else — in particular access events, which listing the inbox itself causes — is ignored, or
        // each scan would trigger the next.
        let handler = move |res: notify::Result<notify::Event>| {
            use notify::event::{ModifyKind, RenameMode};
            use notify::EventKind;
            let Ok(ev) = res else { return };
            match ev.kind {
                EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                    addr.do_send(FsEvent { renamed: ev.paths })
                }
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    addr.do_send(FsEvent {
                        renamed: Vec::new(),
                    })
                }
                _ => {}
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(mut w) => match w.watch(&self.source.inbox, notify::RecursiveMode::NonRecursive) {
                Ok(()) => self.fs_events = Some(w),
                Err(e) => tracing::warn!(source = %self.name, error = %e,
                    "cannot watch the inbox for events; relying on the periodic rescan"),
            },
            Err(e) => tracing::warn!(source = %self.name, error = %e,
                "no filesystem events; relying on the periodic rescan"),
        }
    }

    /// Takes the source's ingest lock (a session advisory lock) when this instance does not hold it.
    /// Answers whether it is held now.
    fn hold_lock(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.lock.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        if self.lock.take().is_some() {
            tracing::warn!(source = %self.name, "lost the ingest lock (its connection closed); taking it again");
        }
        if self.locking {
            return false;
        }
        self.locking = true;
        let (url, key) = (self.db_url.clone(), ingest_lock_key(&self.name));
        ctx.spawn(
            async move {
                let client = crate::db::connect(&url).await?;
                let held: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                    .await
                    .map_err(|e| crate::error::DbError::query("taking the ingest lock", e))?
                    .get(0);
                Ok::<_, PipelineError>(held.then_some(client))
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                act.locking = false;
                match res {
                    Ok(Some(client)) => {
                        tracing::info!(source = %act.name, "holding the ingest lock of this source");
                        act.lock = Some(client);
                        // Another instance may have ingested meanwhile: (re)load the state now, before the next
                        // file (its BeginSnapshot queues behind the load).
                        for shard in &act.shards {
                            shard.addr().do_send(Reload);
                        }
                        ctx.notify(Rescan);
                    }
                    Ok(None) => {
                        tracing::debug!(source = %act.name, "another instance ingests this source");
                    }
                    Err(e) => {
                        tracing::warn!(source = %act.name, error = %e, "cannot take the ingest lock");
                    }
                }
            }),
        );
        false
    }

    /// Lists the inbox and decides what to take next.
    fn scan(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if !self.hold_lock(ctx) {
            return;
        }
        let entries = match std::fs::read_dir(&self.source.inbox) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(source = %self.name, inbox = %self.source.inbox.display(), error = %e,
                    "cannot list the inbox");
                return;
            }
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut present = HashSet::new();
        let mut complete = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if ignored(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = entry.path();
            let size = meta.len();
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            present.insert(path.clone());
            if self.handled.contains(&(path.clone(), size, mtime)) {
                continue;
            }
            let obs = self.observed.entry(path.clone()).or_insert(Observation {
                size,
                mtime,
                stable_since: now,
                renamed: false,
            });
            let unchanged = obs.size == size && obs.mtime == mtime;
            if !unchanged {
                *obs = Observation {
                    size,
                    mtime,
                    stable_since: now,
                    renamed: false,
                };
            }
            let settled = now.duration_since(obs.stable_since) >= self.source.settle
                || (unchanged
                    && wall.duration_since(mtime).unwrap_or_default() >= self.source.settle);
            if obs.renamed || settled {
                complete.push(Candidate {
                    path,
                    name,
                    size,
                    mtime,
                });
            }
        }
        self.observed.retain(|p, _| present.contains(p));
        if complete.is_empty() {
            return;
        }
        complete.sort_by_key(Candidate::order_key);
        let (take, supersede) = match self.source.pending {
            Pending::Latest => {
                let newest = complete.pop().expect("not empty");
                if self
                    .last_taken
                    .as_ref()
                    .is_some_and(|last| newest.order_key() < *last)
                {
                    // Arrived after a newer snapshot was taken: that one supersedes it too.
                    complete.push(newest);
                    (None, complete)
                } else {
                    (Some(newest), complete)
                }
            }
            Pending::All => (Some(complete.remove(0)), Vec::new()),
        };
        if let Some(t) = &take {
            self.last_taken = Some(t.order_key());
        }
        let give_up = take.as_ref().is_some_and(|t| {
            let crashes = self
                .crashes
                .get(&(t.name.clone(), t.size))
                .copied()
                .unwrap_or(0);
            crashes >= MAX_CRASHES_PER_FILE
        });
        self.in_flight = take.as_ref().map(|t| (t.name.clone(), t.size));
        crate::faults::check_panic(&self.faults, "watcher");
        self.busy = true;
        let job = TakeJob {
            source: self.source.clone(),
            name: self.name.clone(),
            profile: self.profile.clone(),
            pool: self.pool.clone(),
            parser: self.parser.clone(),
            stats: self.stats.clone(),
            give_up,
        };
        self.stats
            .files_seen
            .fetch_add(1 + supersede.len() as u64, Ordering::Relaxed);
        ctx.spawn(
            async move { job.run(take, supersede).await }
                .into_actor(self)
                .map(|taken, act, ctx| {
                    act.busy = false;
                    match taken {
                        Taken::Closed { left } => {
                            // Kept after a failed attempt: the restart that usually follows still counts it.
                            act.in_flight = None;
                            act.failures = 0;
                            act.retry_at = None;
                            for c in left {
                                act.observed.remove(&c.path);
                                act.handled.insert((c.path, c.size, c.mtime));
                            }
                            ctx.notify(Rescan);
                        }
                        Taken::Retry => {
                            act.failures += 1;
                            act.stats.retries.fetch_add(1, Ordering::Relaxed);
                            let backoff = Duration::from_millis(250)
                                .saturating_mul(1 << act.failures.min(8))
                                .min(Duration::from_secs(60));
                            act.retry_at = Some(Instant::now() + backoff);
                            ctx.run_later(backoff, |_, ctx| ctx.notify(Rescan));
                        }
                    }
                }),
        );
    }

    fn dump(&self) -> WatcherDump {
        WatcherDump {
            source: self.name.to_string(),
            busy: self.busy,
            waiting_files: self.observed.len(),
            files_seen: self.stats.files_seen.load(Ordering::Relaxed),
            files_done: self.stats.files_done.load(Ordering::Relaxed),
            files_failed: self.stats.files_failed.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
        }
    }
}

/// The advisory lock key of a source's ingest lock.
fn ingest_lock_key(source: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(format!("sluice.ingest.{source}").as_bytes()) as i64
}

/// Names the watcher never takes: hidden files and files still being written under a temporary name.
fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

impl Actor for FileWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Err(e) = std::fs::create_dir_all(&self.source.inbox) {
            tracing::error!(source = %self.name, error = %e, "cannot create the inbox");
        }
        self.watch(ctx);
        ctx.run_interval(self.source.rescan, |act, ctx| act.scan(ctx));
        ctx.notify(Rescan);
    }
}

impl Supervised for FileWatcher {
    /// A restart forgets everything but the files already closed in place: the ingest lock (its connection
    /// closes, so the shards reload their state when it is taken again), the file in flight (its ledger row stays
    /// `processing` and is resumed), observations and backoff. `started` then watches and scans afresh.
    fn restarting(&mut self, _: &mut Context<Self>) {
        if let Some(file) = self.in_flight.take() {
            *self.crashes.entry(file).or_default() += 1;
        }
        self.lock = None;
        self.locking = false;
        self.busy = false;
        self.retry_at = None;
        self.failures = 0;
        self.fs_events = None;
        self.observed.clear();
    }
}

/// A filesystem event in the inbox.
#[derive(Message)]
#[rtype(result = "()")]
struct FsEvent {
    renamed: Vec<PathBuf>,
}

impl Handler<FsEvent> for FileWatcher {
    type Result = ();

    fn handle(&mut self, msg: FsEvent, ctx: &mut Context<Self>) {
        for path in msg.renamed {
            if let Ok(meta) = std::fs::metadata(&path) {
                self.observed.insert(
                    path,
                    Observation {
                        size: meta.len(),
                        mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        stable_since: Instant::now(),
                        renamed: true,
                    },
                );
            }
        }
        self.scan(ctx);
    }
}

/// Look at the inbox now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Rescan;

impl Handler<Rescan> for FileWatcher {
    type Result = ();

    fn handle(&mut self, _: Rescan, ctx: &mut Context<Self>) {
        self.scan(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "WatcherDump")]
pub struct DumpWatcher;

impl Handler<DumpWatcher> for FileWatcher {
    type Result = MessageResult<DumpWatcher>;

    fn handle(&mut self, _: DumpWatcher, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.dump())
    }
}

enum Taken {
    /// These files are closed in the ledger; those left in the inbox (no archive) must not be taken again.
    Closed { left: Vec<Candidate> },
    /// A transient failure (database away, an actor restarting): try the same file again later.
    Retry,
}

/// The async part of taking a file: everything that needs the database or the parser.
struct TakeJob {
    source: Arc<SourceSettings>,
    name: Arc<str>,
    profile: Profile,
    pool: Pool,
    parser: Mailbox<ParserPool>,
    stats: Arc<WatcherStats>,
    /// The file crashed the pipeline too often: fail it rather than ingest it again.
    give_up: bool,
}

impl TakeJob {
    async fn run(self, take: Option<Candidate>, supersede: Vec<Candidate>) -> Taken {
        let mut left = Vec::new();
        for old in supersede {
            match self.supersede(&old).await {
                Ok(true) => left.push(old),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "cannot record a superseded file");
                    return Taken::Retry;
                }
            }
        }
        let Some(take) = take else {
            return Taken::Closed { left };
        };
        let ingested = if self.give_up {
            tracing::error!(source = %self.name, file = %take.name, crashes = MAX_CRASHES_PER_FILE,
                "the pipeline restarted each time this file was in flight; failing it");
            self.fail(&take, "crashed_ingest").await
        } else {
            self.ingest(&take).await
        };
        match ingested {
            Ok(true) => left.push(take),
            Ok(false) => {}
            Err(e) if e.is_transient() => {
                crate::metrics::actor_error("watcher");
                tracing::warn!(source = %self.name, file = %take.name, error = %e,
                    "snapshot failed; it will be retried with state rebuilt from the database");
                return Taken::Retry;
            }
            Err(e) => {
                crate::metrics::actor_error("watcher");
                tracing::error!(source = %self.name, file = %take.name, error = %e, "file cannot be read");
                match self.fail(&take, "unreadable").await {
                    Ok(true) => left.push(take),
                    Ok(false) => {}
                    Err(_) => return Taken::Retry,
                }
            }
        }
        Taken::Closed { left }
    }

    /// Records an older waiting file as superseded. Answers whether it was left in the inbox.
    async fn supersede(&self, c: &Candidate) -> Result<bool, PipelineError> {
        self.close_unprocessed(
            c,
            "superseded",
            "a newer snapshot was waiting or already taken",
        )
        .await?;
        crate::metrics::file_closed(&self.name, "superseded");
        tracing::info!(source = %self.name, file = %c.name, "superseded by a newer snapshot");
        move_out(&c.path, &self.source.archive)
    }

    /// Ingests one file. Answers whether it was left in the inbox.
    async fn ingest(&self, c: &Candidate) -> Result<bool, PipelineError> {
        // Without an archive, closed files stay in the inbox: after a restart, do not take them again.
        if self.source.archive.as_os_str().is_empty() {
            let sha = sha256_file(&c.path).await?;
            if ledger::already_closed(&self.pool, &self.name, &c.name, &sha).await? {
                return Ok(true);
            }
        }
        let header = read_header(&c.path).await?;
        let (layout, data_offset) =
            match header.and_then(|(h, off)| self.profile.layout(&h).map(|l| (l, off))) {
                Ok(v) => v,
                Err(e) => return self.fail(c, e.reason()).await,
            };
        let resumed = ledger::find_resumable(&self.pool, &self.name, &c.name, c.size).await?;
        let file_id = match resumed {
            Some(id) => id,
            None => {
                ledger::insert(
                    &self.pool,
                    &self.name,
                    &c.name,
                    c.size,
                    "",
                    "processing",
                    None,
                )
                .await?
            }
        };
        let file = std::fs::File::open(&c.path).map_err(|source| crate::error::FileError::Io {
            path: c.path.clone(),
            source,
        })?;
        let snapshot = Arc::new(Snapshot {
            file_id,
            source: self.name.clone(),
            name: c.name.clone(),
            path: c.path.clone(),
            size: c.size,
            file,
            layout: layout.clone(),
            data_offset,
            resumed: resumed.is_some(),
            emit_removed: self.source.emit_removed,
            admitted: Instant::now(),
        });
        tracing::info!(source = %self.name, file = %c.name, file_id, header = layout.version(),
            resumed = resumed.is_some(), bytes = c.size, "snapshot admitted");
        crate::metrics::actor_received("watcher", 1);
        let outcome = self.parser.sender().call(Ingest(snapshot.clone())).await?;
        let seconds = snapshot.admitted.elapsed().as_secs_f64();
        match outcome {
            Outcome::Done(counts) => {
                self.stats.files_done.fetch_add(1, Ordering::Relaxed);
                crate::metrics::rows(&self.name, &counts);
                crate::metrics::snapshot_succeeded(&self.name, seconds);
                crate::metrics::file_closed(&self.name, "done");
                tracing::info!(source = %self.name, file = %c.name, file_id, rows = counts.rows, new = counts.new,
                    changed = counts.changed, unchanged = counts.unchanged, duplicate = counts.duplicate,
                    conflict = counts.conflict, rejected = counts.rejected, removed = counts.removed,
                    seconds = format!("{seconds:.3}"), rows_per_s = (counts.rows as f64 / seconds.max(1e-3)) as u64,
                    "snapshot done");
            }
            Outcome::Duplicate { original } => {
                crate::metrics::file_closed(&self.name, "duplicate_file");
                tracing::info!(source = %self.name, file = %c.name, file_id, original,
                    "same content as an earlier file: recorded duplicate_file");
            }
        }
        // The file is closed in the ledger: failing to move it is worth a warning, never a second ledger row.
        move_out(&c.path, &self.source.archive).or_else(|e| {
            tracing::warn!(source = %self.name, file = %c.name, error = %e,
                "cannot move a finished file to the archive; leaving it in place");
            Ok(true)
        })
    }

    /// Closes a file's ledger row without processing it — the row an earlier run left `processing`, or a new one.
    async fn close_unprocessed(
        &self,
        c: &Candidate,
        status: &str,
        reason: &str,
    ) -> Result<i64, PipelineError> {
        let sha = sha256_file(&c.path).await?;
        let id = match ledger::find_resumable(&self.pool, &self.name, &c.name, c.size).await? {
            Some(id) => {
                ledger::close(&self.pool, id, status, Some(reason), Some(&sha)).await?;
                id
            }
            None => {
                ledger::insert(
                    &self.pool,
                    &self.name,
                    &c.name,
                    c.size,
                    &sha,
                    status,
                    Some(reason),
                )
                .await?
            }
        };
        Ok(id)
    }

    /// Records a file that cannot be read and moves it to `failed/`.
    async fn fail(&self, c: &Candidate, reason: &str) -> Result<bool, PipelineError> {
        let id = self.close_unprocessed(c, "failed", reason).await?;
        self.stats.files_failed.fetch_add(1, Ordering::Relaxed);
        crate::metrics::file_closed(&self.name, "failed");
        tracing::warn!(source = %self.name, file = %c.name, file_id = id, reason, "file failed");
        move_out(&c.path, &self.source.failed_dir())
    }
}

/// Reads the header line. Answers the header bytes (without terminator) and the offset of the first data line.
async fn read_header(path: &Path) -> Result<Result<(Vec<u8>, u64), HeaderError>, PipelineError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(|source| crate::error::FileError::Io {
            path: path.clone(),
            source,
        })?;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = f
                .read(&mut chunk)
                .map_err(|source| crate::error::FileError::Io {
                    path: path.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if memchr::memchr(b'\n', &buf).is_some() || buf.len() > 1 << 20 {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(Err(HeaderError::Empty));
        }
        let (end, next) = match memchr::memchr(b'\n', &buf) {
            Some(i) => (i, i + 1),
            None => (buf.len(), buf.len()),
        };
        let mut header = buf[..end].to_vec();
        if header.last() == Some(&b'\r') {
            header.pop();
        }
        Ok(Ok((header, next as u64)))
    })
    .await
    .map_err(|e| PipelineError::Parser(format!("header task failed: {e}")))?
}

/// SHA-256 of a whole file, off the async threads.
async fn sha256_file(path: &Path) -> Result<String, PipelineError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let io = |source| crate::error::FileError::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::File::open(&path).map_err(io)?;
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
        }
        Ok(hex::encode(sha.finalize()))
    })
    .await
    .map_err(|e| PipelineError::Parser(format!("hash task failed: {e}")))?
}

/// Moves a closed file into `dir`, keeping its name (suffixed when taken). An empty `dir` leaves it in place;
/// answers whether it was left.
fn move_out(path: &Path, dir: &Path) -> Result<bool, PipelineError> {
    if dir.as_os_str().is_empty() {
        return Ok(true);
    }
    let io = |source| crate::error::FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().unwrap_or_default();
    let mut target = dir.join(name);
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{}.{n}", name.to_string_lossy()));
        n += 1;
    }
    if std::fs::rename(path, &target).is_err() {
        std::fs::copy(path, &target).map_err(io)?;
        std::fs::remove_file(path).map_err(io)?;
    }
    Ok(false)
}
