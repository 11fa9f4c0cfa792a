//! DeliveryActor: takes committed changes from the outbox and delivers them to one sink (SPEC §2, §5).
//!
//! It reads from PostgreSQL, never from ingest's mailboxes, so a slow or failing sink never stalls ingestion.
//! Each round claims due deliveries under a lease, attempts them — up to the sink's concurrency at once, within its
//! rate limit, each under the attempt timeout, renewing the leases while they run — and records every outcome fenced
//! by its attempt number. Between rounds it sleeps until the writer signals a commit or the poll interval passes.
//!
//! Two guards protect the rows from a sink that is broken as a whole: the **circuit breaker** (consecutive
//! connection errors, timeouts or 5xx open it; then one probe at a time, spaced by backoff, and rows behind it gain
//! no attempts) and the **auto-pause** (a burst of 401/403/404/422 pauses the sink with its rows left `available`
//! until an operator resumes it).

mod attempt;
pub mod browse;
pub mod control;
pub mod outbox;
pub mod policy;
pub mod reaper;

use crate::clock::SharedClock;
use crate::config::{SinkKind, SinkSettings};
use crate::error::DbError;
use crate::faults::Faults;
use crate::sinks::file::FileSink;
use crate::sinks::{Answer, EventRecord};
use crate::supervisor::Beat;
use actix::prelude::*;
use attempt::{Attempted, Target};
use deadpool_postgres::Pool;
use futures_util::stream::{self, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use outbox::{Claimed, Finished};
use policy::{Circuit, PauseWindow};
use serde::Serialize;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// The error recorded when an attempt timed out (its metrics class is `timeout`).
pub const ERROR_TIMEOUT: &str = "timeout";
/// The error recorded when the sink could not be reached (its metrics class is `connect`).
pub const ERROR_CONNECT: &str = "connection failed";

/// Settings of a sink an operator may change while it runs (SPEC §5: concurrency, rate limit, pause).
#[derive(Debug)]
pub struct SinkControl {
    pub concurrency: AtomicUsize,
    /// Requests per second; 0 = no limit.
    pub rate_limit: AtomicU32,
    pub paused: AtomicBool,
    pub circuit_open: AtomicBool,
    /// Bumped by every resume, so the loop forgets the permanent errors that caused the pause.
    pub resumes: AtomicU64,
    /// Wakes the delivery loop: a commit, a resume, a changed setting.
    pub wake: Arc<Notify>,
    /// Shutting down: claim nothing more, finish the attempts in flight.
    pub draining: AtomicBool,
}

/// Live counters of a delivery actor.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub rounds: AtomicU64,
    pub completed: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub in_flight: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryDump {
    pub sink: String,
    pub kind: String,
    pub in_flight: u64,
    pub completed: u64,
    pub failed_attempts: u64,
    pub errors: u64,
    pub paused: bool,
    pub circuit_open: bool,
    pub concurrency: usize,
    pub rate_limit: u32,
}

/// Everything a DeliveryActor needs to start (and to start again after a restart).
#[derive(Clone)]
pub struct DeliveryConfig {
    pub sink: SinkSettings,
    /// A pool of this actor's own: connections live on the runtime that opened them.
    pub pool: Pool,
    /// This process's lease owner id.
    pub owner: Arc<str>,
    pub lease: Duration,
    pub poll: Duration,
    pub claim_batch: usize,
    pub clock: SharedClock,
    pub wake: Arc<Notify>,
    /// Snapshots being ingested: claims wait for them, for at most `yield_to_ingest` at a time.
    pub ingest: crate::writer::OutboxSignal,
    pub yield_to_ingest: Duration,
    pub beat: Beat,
    pub faults: Faults,
}

pub struct DeliveryActor {
    config: DeliveryConfig,
    /// The delivery loop has ended (drained, or never started).
    engine_done: bool,
    /// Started before: leases this process still holds for the sink belong to the loop a restart dropped.
    restarted: bool,
    name: String,
    kind: SinkKind,
    control: Arc<SinkControl>,
    stats: Arc<DeliveryStats>,
}

impl DeliveryActor {
    pub fn new(config: DeliveryConfig) -> Self {
        let control = Arc::new(SinkControl {
            concurrency: AtomicUsize::new(config.sink.concurrency),
            rate_limit: AtomicU32::new(config.sink.rate_limit),
            paused: AtomicBool::new(false),
            circuit_open: AtomicBool::new(false),
            resumes: AtomicU64::new(0),
            wake: config.wake.clone(),
            draining: AtomicBool::new(false),
        });
        DeliveryActor {
            name: config.sink.name.clone(),
            kind: config.sink.kind,
            config,
            engine_done: true,
            restarted: false,
            control,
            stats: Arc::default(),
        }
    }

    pub fn control(&self) -> Arc<SinkControl> {
        self.control.clone()
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }
}

impl Actor for DeliveryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let engine = Engine::new(
            self.config.clone(),
            self.control.clone(),
            self.stats.clone(),
        );
        let release = std::mem::replace(&mut self.restarted, true);
        self.engine_done = false;
        self.control.draining.store(false, Ordering::Relaxed);
        ctx.spawn(engine.run(release).into_actor(self).map(|_, act, ctx| {
            act.engine_done = true;
            ctx.stop();
        }));
    }

    /// Drains on shutdown: the loop claims nothing more and the actor stops once the attempts in flight have
    /// finished (the supervisor's shutdown timeout bounds the wait).
    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if self.engine_done {
            return Running::Stop;
        }
        if !self.control.draining.swap(true, Ordering::Relaxed) {
            tracing::info!(sink = %self.name, "draining: finishing the attempts in flight");
            self.control.wake.notify_one();
        }
        Running::Continue
    }
}

impl Supervised for DeliveryActor {
    /// The loop a failure cut short is dropped with its attempts; `started` runs a new one, which first returns
    /// the leases of those attempts to `available` (each is retried under the same idempotency key).
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stats.in_flight.store(0, Ordering::Relaxed);
        // The new loop's breaker starts closed: an open flag left by the old one would skip every claim.
        self.control.circuit_open.store(false, Ordering::Relaxed);
    }
}

/// What a round asks of the loop.
enum Next {
    /// More may be due: go again at once.
    Again,
    /// Sleep until woken or this long has passed.
    Wait(Duration),
}

/// The delivery loop of one sink.
struct Engine {
    sink: SinkSettings,
    pool: Pool,
    owner: Arc<str>,
    lease: Duration,
    poll: Duration,
    claim_batch: usize,
    clock: SharedClock,
    ingest: crate::writer::OutboxSignal,
    yield_to_ingest: Duration,
    control: Arc<SinkControl>,
    stats: Arc<DeliveryStats>,
    http: reqwest::Client,
    target: Option<Target>,
    circuit: Circuit,
    pause: PauseWindow,
    limiter: Option<(u32, Arc<DefaultDirectRateLimiter>)>,
    resumes_seen: u64,
    beat: Beat,
    faults: Faults,
    /// Whether the operator's persisted pause was read: before the first claim, so a restart never un-pauses.
    controls_loaded: bool,
}

impl Engine {
    fn new(c: DeliveryConfig, control: Arc<SinkControl>, stats: Arc<DeliveryStats>) -> Self {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(c.sink.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(c.sink.concurrency.max(1))
            .build()
            .unwrap_or_default();
        Engine {
            target: Target::for_sink(&c.sink),
            circuit: Circuit::new(c.sink.circuit_threshold),
            pause: PauseWindow::new(c.sink.pause_threshold as usize, c.sink.pause_window),
            sink: c.sink,
            pool: c.pool,
            owner: c.owner,
            lease: c.lease,
            poll: c.poll,
            claim_batch: c.claim_batch,
            clock: c.clock,
            ingest: c.ingest,
            yield_to_ingest: c.yield_to_ingest,
            control,
            stats,
            http,
            limiter: None,
            resumes_seen: 0,
            beat: c.beat,
            faults: c.faults,
            controls_loaded: false,
        }
    }

    /// The loop; with `release`, first returns the leases an earlier loop of this process left behind.
    async fn run(mut self, mut release: bool) {
        let mut failures = 0u32;
        loop {
            if self.control.draining.load(Ordering::Relaxed) {
                return;
            }
            if release {
                match self.release_own().await {
                    Ok(()) => release = false,
                    Err(e) => {
                        tracing::warn!(sink = %self.sink.name, error = %e, "cannot release leases yet")
                    }
                }
            }
            self.stats.rounds.fetch_add(1, Ordering::Relaxed);
            // A wait is cut short by the poll interval, except a backoff after a failed round (PostgreSQL away),
            // which would otherwise come round, and log, every poll interval.
            let (next, longest) = match self.round().await {
                Ok(next) => {
                    failures = 0;
                    (next, self.poll)
                }
                Err(e) => {
                    failures += 1;
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::actor_error("delivery");
                    tracing::warn!(sink = %self.sink.name, error = %e, "delivery round failed; backing off");
                    let backoff = policy::backoff(
                        failures as i32 + 1,
                        Duration::from_millis(500),
                        Duration::from_secs(30),
                    )
                    .max(Duration::from_millis(100));
                    (Next::Wait(backoff), backoff)
                }
            };
            if let Next::Wait(d) = next {
                let wake = self.control.wake.clone();
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(d.min(longest)) => {}
                }
            }
        }
    }

    fn limiter(&mut self) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rate = self.control.rate_limit.load(Ordering::Relaxed);
        let n = NonZeroU32::new(rate)?;
        if self.limiter.as_ref().is_none_or(|(r, _)| *r != rate) {
            self.limiter = Some((rate, Arc::new(RateLimiter::direct(Quota::per_second(n)))));
        }
        self.limiter.as_ref().map(|(_, l)| l.clone())
    }

    async fn release_own(&self) -> Result<(), DbError> {
        let c = self.pool.get().await?;
        let n = outbox::release(&c, &self.owner, Some(&self.sink.name)).await?;
        if n > 0 {
            tracing::info!(sink = %self.sink.name, rows = n, "restarted: attempts cut short are available again");
        }
        Ok(())
    }

    async fn round(&mut self) -> Result<Next, DbError> {
        let _busy = self.beat.busy();
        let mut c = self.pool.get().await?;
        if !self.controls_loaded {
            if control::load_paused(&c, &self.sink.name).await? {
                self.control.paused.store(true, Ordering::Relaxed);
                metrics::gauge!(crate::metrics::SINK_PAUSED, "sink" => self.sink.name.clone())
                    .set(1.0);
                tracing::warn!(sink = %self.sink.name, "sink left paused by an operator; resume it to deliver");
            }
            self.controls_loaded = true;
        }
        if self.control.paused.load(Ordering::Relaxed) {
            return Ok(Next::Wait(self.poll));
        }
        // Ingest first: a snapshot's changes are committed sooner when delivery does not compete with it for the
        // cores and the database, and the end of the snapshot wakes this loop.
        if let Some(wait) = self.ingest.hold(self.yield_to_ingest) {
            return Ok(Next::Wait(wait));
        }
        let resumes = self.control.resumes.load(Ordering::Relaxed);
        if resumes != self.resumes_seen {
            self.resumes_seen = resumes;
            self.pause.clear();
        }
        let now = Instant::now();
        let concurrency = self.control.concurrency.load(Ordering::Relaxed).max(1);
        let probing = self.circuit.is_open();
        let limit = if probing {
            if !self.circuit.probe_due(now) {
                let wait = self
                    .circuit
                    .next_probe()
                    .map_or(self.poll, |t| t.duration_since(now));
                return Ok(Next::Wait(wait.max(Duration::from_millis(10))));
            }
            1
        } else if self.sink.kind == SinkKind::File {
            self.claim_batch
        } else {
            (concurrency * 4).min(self.claim_batch)
        };
        let claimed = outbox::claim(
            &c,
            &self.sink.name,
            &self.owner,
            self.lease,
            limit as i64,
            self.clock.now(),
        )
        .await?;
        if claimed.is_empty() {
            return Ok(Next::Wait(self.poll));
        }
        crate::faults::check(&self.faults, "delivery").await;
        self.stats
            .in_flight
            .store(claimed.len() as u64, Ordering::Relaxed);
        crate::metrics::actor_received("delivery", claimed.len() as u64);
        let seqs: Vec<i64> = claimed.iter().map(|c| c.event_seq).collect();
        let events = outbox::events(&c, &seqs).await?;
        // When each event was committed, for the commit-to-completion latency.
        let committed: HashMap<uuid::Uuid, SystemTime> =
            events.iter().map(|(id, e)| (*id, e.observed_at)).collect();
        let results = match self.sink.kind {
            SinkKind::File => self.write_file(&claimed, events).await,
            _ => {
                self.attempt_all(&c, &claimed, events, concurrency, probing)
                    .await
            }
        };
        let finished = self.settle(results, probing);
        outbox::finish(&mut c, &self.owner, &finished).await?;
        self.stats.in_flight.store(0, Ordering::Relaxed);
        self.account(&finished, &committed);
        Ok(
            if self.circuit.is_open() || self.control.paused.load(Ordering::Relaxed) {
                Next::Wait(self.poll)
            } else if claimed.len() >= limit {
                Next::Again
            } else {
                Next::Wait(self.poll)
            },
        )
    }

    /// File sink: the whole batch in one write and one fsync.
    async fn write_file(
        &self,
        claimed: &[Claimed],
        mut events: HashMap<uuid::Uuid, EventRecord>,
    ) -> Vec<RoundResult> {
        let sink = FileSink {
            dir: self.sink.dir.clone(),
        };
        let batch: Vec<_> = claimed
            .iter()
            .filter_map(|c| events.remove(&c.event_id).map(|e| (c.idempotency_key, e)))
            .collect();
        let started = SystemTime::now();
        let t0 = Instant::now();
        let answer = tokio::task::spawn_blocking(move || sink.write(&batch))
            .await
            .unwrap_or_else(|_| Answer::Retry {
                status: None,
                error: "file sink task failed".into(),
            });
        let duration = t0.elapsed();
        claimed
            .iter()
            .map(|c| RoundResult {
                claim: c.clone(),
                started,
                duration,
                attempted: Some(Attempted {
                    answer: answer.clone(),
                    retry_after: None,
                    ignored: false,
                    excerpt: None,
                }),
            })
            .collect()
    }

    /// HTTP sinks: up to `concurrency` attempts at once; leases renewed while they run; the circuit watched as
    /// answers come in, so that attempts not yet started when it opens are not made.
    async fn attempt_all(
        &mut self,
        c: &tokio_postgres::Client,
        claimed: &[Claimed],
        events: HashMap<uuid::Uuid, EventRecord>,
        concurrency: usize,
        probing: bool,
    ) -> Vec<RoundResult> {
        let limiter = self.limiter();
        let Some(target) = self.target.as_ref() else {
            return Vec::new();
        };
        let http = &self.http;
        let timeout = self.sink.timeout;
        let control = &self.control;
        let events = &events;
        let mut attempts = stream::iter(claimed.iter().cloned())
            .map(|claim| {
                let limiter = limiter.clone();
                async move {
                    let started = SystemTime::now();
                    let t0 = Instant::now();
                    // Behind an open circuit nothing more is sent in this round (a probe is sent alone).
                    if !probing && control.circuit_open.load(Ordering::Relaxed) {
                        return RoundResult {
                            claim,
                            started,
                            duration: Duration::ZERO,
                            attempted: None,
                        };
                    }
                    let attempted = match events.get(&claim.event_id) {
                        Some(event) => {
                            if let Some(l) = &limiter {
                                l.until_ready().await;
                            }
                            attempt::send(http, target, event, claim.idempotency_key, timeout).await
                        }
                        None => Attempted {
                            answer: Answer::Dead {
                                status: None,
                                error: "event not found".into(),
                            },
                            retry_after: None,
                            ignored: false,
                            excerpt: None,
                        },
                    };
                    RoundResult {
                        claim,
                        started,
                        duration: t0.elapsed(),
                        attempted: Some(attempted),
                    }
                }
            })
            .buffer_unordered(concurrency);
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.tick().await;
        let mut results = Vec::with_capacity(claimed.len());
        loop {
            tokio::select! {
                r = attempts.next() => match r {
                    Some(r) => {
                        if let Some(a) = &r.attempted {
                            if !a.ignored {
                                let outage = policy::is_outage(&a.answer);
                                if self.circuit.record(outage, Instant::now(), self.sink.backoff_base, self.sink.backoff_cap) {
                                    self.control.circuit_open.store(true, Ordering::Relaxed);
                                    tracing::warn!(sink = %self.sink.name,
                                        "circuit opened: the sink is failing across the board; probing one request at a time");
                                } else if !self.circuit.is_open() && self.control.circuit_open.swap(false, Ordering::Relaxed) {
                                    tracing::info!(sink = %self.sink.name, "circuit closed: the sink answers again");
                                }
                            }
                        }
                        results.push(r);
                    }
                    None => break,
                },
                _ = renew.tick() => {
                    if let Err(e) = outbox::renew(c, &self.owner, &ids, self.lease).await {
                        tracing::warn!(sink = %self.sink.name, error = %e, "cannot renew leases");
                    }
                }
            }
        }
        results
    }

    /// Turns a round's answers into outcomes: retries with backoff, dead letters, pauses, probes.
    fn settle(&mut self, results: Vec<RoundResult>, probing: bool) -> Vec<Finished> {
        let now = self.clock.now();
        let paused_now = {
            let hits = results
                .iter()
                .filter(|r| {
                    r.attempted
                        .as_ref()
                        .is_some_and(|a| matches!(a.answer, Answer::Dead { status, .. } if policy::is_pause_status(status)))
                })
                .count();
            if hits > 0 && self.pause.record(hits, Instant::now()) {
                if !self.control.paused.swap(true, Ordering::Relaxed) {
                    crate::metrics::sink_paused(&self.sink.name, true);
                    tracing::warn!(sink = %self.sink.name, hits,
                        "sink paused: permanent errors (401/403/404/422) across the board; rows stay available");
                }
                true
            } else {
                false
            }
        };
        results
            .into_iter()
            .map(|r| {
                let base = |state, counted, attempted, outcome| Finished {
                    claim: r.claim.clone(),
                    state,
                    status: None,
                    error: None,
                    next_attempt_at: now,
                    counted,
                    attempted,
                    outcome,
                    started: r.started,
                    duration: r.duration,
                    excerpt: None,
                };
                let Some(a) = r.attempted.clone() else {
                    return base("available", false, false, "skipped");
                };
                if a.ignored {
                    return base("ignored", true, false, "ignored");
                }
                let with = |mut f: Finished, status: Option<i32>, error: Option<String>| {
                    f.status = status;
                    f.error = error;
                    f.excerpt = a.excerpt.clone();
                    f
                };
                match a.answer {
                    Answer::Completed { status } => {
                        with(base("completed", true, true, "completed"), status, None)
                    }
                    Answer::Retry { status, error } if probing => with(
                        base("available", false, true, "probe_failed"),
                        status,
                        Some(error),
                    ),
                    Answer::Retry { status, error }
                        if r.claim.attempt >= self.sink.max_attempts as i32 =>
                    {
                        with(base("dead", true, true, "dead"), status, Some(error))
                    }
                    Answer::Retry { status, error } => {
                        let delay = policy::backoff(
                            r.claim.attempt,
                            self.sink.backoff_base,
                            self.sink.backoff_cap,
                        )
                        .max(a.retry_after.unwrap_or_default());
                        let mut f = with(
                            base("retryable", true, true, "retryable"),
                            status,
                            Some(error),
                        );
                        f.next_attempt_at = now + delay;
                        f
                    }
                    Answer::Dead { status, error }
                        if paused_now && policy::is_pause_status(status) =>
                    {
                        with(
                            base("available", false, true, "paused"),
                            status,
                            Some(error),
                        )
                    }
                    Answer::Dead { status, error } => {
                        with(base("dead", true, true, "dead"), status, Some(error))
                    }
                }
            })
            .collect()
    }

    fn account(&self, finished: &[Finished], committed: &HashMap<uuid::Uuid, SystemTime>) {
        let now = SystemTime::now();
        let mut latencies = Vec::new();
        for f in finished.iter().filter(|f| f.attempted) {
            let completed = f.state == "completed";
            let class = crate::metrics::attempt_class(f.status, completed, f.error.as_deref());
            crate::metrics::attempt(&self.sink.name, class, f.duration.as_secs_f64());
            if completed {
                let at = committed.get(&f.claim.event_id).copied().unwrap_or(now);
                latencies.push(now.duration_since(at).unwrap_or_default().as_secs_f64());
            } else {
                self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
        }
        let attempted = finished.iter().filter(|f| f.attempted).count() as u64;
        crate::metrics::actor_sent("delivery", attempted);
        self.stats
            .completed
            .fetch_add(latencies.len() as u64, Ordering::Relaxed);
        crate::metrics::delivered(&self.sink.name, &latencies);
    }
}

/// One claimed row after its attempt (or after being held back: `attempted: None`).
struct RoundResult {
    claim: Claimed,
    started: SystemTime,
    duration: Duration,
    attempted: Option<Attempted>,
}

/// Pauses a sink: it stops claiming; its rows stay `available`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pause;

/// Resumes a paused sink.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume;

/// Changes a sink's concurrency at runtime.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetConcurrency(pub usize);

/// Changes a sink's rate limit (requests/s, 0 = none) at runtime.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRateLimit(pub u32);

impl Handler<Pause> for DeliveryActor {
    type Result = ();
    fn handle(&mut self, _: Pause, _: &mut Context<Self>) {
        self.control.paused.store(true, Ordering::Relaxed);
        crate::metrics::sink_paused(&self.name, true);
        tracing::info!(sink = %self.name, "sink paused by request");
    }
}

impl Handler<Resume> for DeliveryActor {
    type Result = ();
    fn handle(&mut self, _: Resume, _: &mut Context<Self>) {
        self.control.paused.store(false, Ordering::Relaxed);
        self.control.resumes.fetch_add(1, Ordering::Relaxed);
        crate::metrics::sink_paused(&self.name, false);
        tracing::info!(sink = %self.name, "sink resumed");
        self.control.wake.notify_one();
    }
}

impl Handler<SetConcurrency> for DeliveryActor {
    type Result = ();
    fn handle(&mut self, msg: SetConcurrency, _: &mut Context<Self>) {
        self.control
            .concurrency
            .store(msg.0.max(1), Ordering::Relaxed);
        self.control.wake.notify_one();
    }
}

impl Handler<SetRateLimit> for DeliveryActor {
    type Result = ();
    fn handle(&mut self, msg: SetRateLimit, _: &mut Context<Self>) {
        self.control.rate_limit.store(msg.0, Ordering::Relaxed);
        self.control.wake.notify_one();
    }
}

#[derive(Message)]
#[rtype(result = "DeliveryDump")]
pub struct DumpDelivery;

impl Handler<DumpDelivery> for DeliveryActor {
    type Result = MessageResult<DumpDelivery>;

    fn handle(&mut self, _: DumpDelivery, _: &mut Context<Self>) -> Self::Result {
        MessageResult(DeliveryDump {
            sink: self.name.clone(),
            kind: format!("{:?}", self.kind).to_lowercase(),
            in_flight: self.stats.in_flight.load(Ordering::Relaxed),
            completed: self.stats.completed.load(Ordering::Relaxed),
            failed_attempts: self.stats.failed_attempts.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            paused: self.control.paused.load(Ordering::Relaxed),
            circuit_open: self.control.circuit_open.load(Ordering::Relaxed),
            concurrency: self.control.concurrency.load(Ordering::Relaxed),
            rate_limit: self.control.rate_limit.load(Ordering::Relaxed),
        })
    }
}
