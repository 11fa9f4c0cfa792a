//! DeliveryActor: takes committed changes from the outbox and delivers them to a sink (SPEC §2, §5).
//!
//! It reads from PostgreSQL, never from ingest's mailboxes, so a slow or failing sink never stalls ingestion.
//! Each round claims due deliveries under a lease, calls the sink, and records every answer fenced by its attempt
//! number. An idle actor wakes on the writer's in-process signal (or the poll interval, for commits made by other
//! instances and for retries coming due).

pub mod outbox;

use crate::config::{SinkKind, SinkSettings};
use crate::error::DbError;
use crate::sinks::file::FileSink;
use crate::sinks::Answer;
use actix::prelude::*;
use deadpool_postgres::Pool;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// Live counters of a delivery actor.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub rounds: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryDump {
    pub sink: String,
    pub in_flight: u64,
    pub completed: u64,
    pub failed_attempts: u64,
    pub errors: u64,
    pub paused: bool,
}

pub struct DeliveryActor {
    sink: SinkSettings,
    /// A pool of this actor's own: connections live on the runtime that opened them.
    pool: Pool,
    /// This process's lease owner id.
    owner: Arc<str>,
    lease: Duration,
    poll: Duration,
    batch: usize,
    wake: Arc<Notify>,
    stats: Arc<DeliveryStats>,
}

impl DeliveryActor {
    pub fn new(
        sink: SinkSettings,
        pool: Pool,
        owner: Arc<str>,
        lease: Duration,
        poll: Duration,
        batch: usize,
        wake: Arc<Notify>,
    ) -> Self {
        DeliveryActor {
            sink,
            pool,
            owner,
            lease,
            poll,
            batch,
            wake,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Sleeps until woken by a commit or the poll interval passes, then runs a round.
    fn wait_then_round(&self, ctx: &mut Context<Self>) {
        let wake = self.wake.clone();
        let poll = self.poll;
        ctx.spawn(
            async move {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.notify(Round)),
        );
    }
}

impl Actor for DeliveryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Round);
    }
}

/// One claim–deliver–record round.
#[derive(Message)]
#[rtype(result = "()")]
struct Round;

struct RoundJob {
    sink: SinkSettings,
    pool: Pool,
    owner: Arc<str>,
    lease: Duration,
    batch: usize,
    stats: Arc<DeliveryStats>,
}

impl RoundJob {
    /// Answers how many deliveries were claimed.
    async fn run(self) -> Result<usize, DbError> {
        let mut c = self.pool.get().await?;
        outbox::reap_expired(&c).await?;
        let claimed = outbox::claim(
            &c,
            &self.sink.name,
            &self.owner,
            self.lease,
            self.batch as i64,
        )
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        self.stats
            .in_flight
            .store(claimed.len() as u64, Ordering::Relaxed);
        let ids: Vec<uuid::Uuid> = claimed.iter().map(|c| c.event_id).collect();
        let mut events = outbox::events(&c, &ids).await?;
        let started = SystemTime::now();
        let t0 = Instant::now();
        let answers: Vec<(outbox::Claimed, Answer)> = match self.sink.kind {
            SinkKind::File => {
                let sink = FileSink {
                    dir: self.sink.dir.clone(),
                };
                let batch: Vec<_> = claimed
                    .iter()
                    .filter_map(|c| events.remove(&c.event_id).map(|e| (c.idempotency_key, e)))
                    .collect();
                let answer = tokio::task::spawn_blocking(move || sink.write(&batch))
                    .await
                    .unwrap_or_else(|e| Answer::Retry {
                        status: None,
                        error: format!("file sink task failed: {e}"),
                    });
                claimed
                    .iter()
                    .map(|c| (c.clone(), answer.clone()))
                    .collect()
            }
            SinkKind::Webhook | SinkKind::Commcare => claimed
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        Answer::Retry {
                            status: None,
                            error: "sink kind not available in this build".into(),
                        },
                    )
                })
                .collect(),
        };
        let duration = t0.elapsed();
        let completed = answers
            .iter()
            .filter(|(_, a)| matches!(a, Answer::Completed { .. }))
            .count() as u64;
        for (_, a) in &answers {
            let class = match a {
                Answer::Completed { status: Some(s) }
                | Answer::Retry {
                    status: Some(s), ..
                }
                | Answer::Dead {
                    status: Some(s), ..
                } => {
                    format!("{}xx", s / 100)
                }
                Answer::Completed { status: None } => "ok".into(),
                _ => "io".into(),
            };
            metrics::counter!(crate::metrics::ATTEMPTS, "sink" => self.sink.name.clone(), "class" => class)
                .increment(1);
        }
        outbox::finish(
            &mut c,
            &self.owner,
            started,
            duration,
            &answers,
            self.sink.max_attempts as i32,
        )
        .await?;
        self.stats.in_flight.store(0, Ordering::Relaxed);
        self.stats.completed.fetch_add(completed, Ordering::Relaxed);
        self.stats
            .failed
            .fetch_add(answers.len() as u64 - completed, Ordering::Relaxed);
        metrics::counter!(crate::metrics::DELIVERED, "sink" => self.sink.name.clone())
            .increment(completed);
        Ok(claimed.len())
    }
}

impl Handler<Round> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, _: Round, ctx: &mut Context<Self>) {
        let job = RoundJob {
            sink: self.sink.clone(),
            pool: self.pool.clone(),
            owner: self.owner.clone(),
            lease: self.lease,
            batch: self.batch,
            stats: self.stats.clone(),
        };
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        ctx.wait(job.run().into_actor(self).map(|res, act, ctx| match res {
            Ok(n) if n >= act.batch => ctx.notify(Round),
            Ok(_) => act.wait_then_round(ctx),
            Err(e) => {
                act.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %act.sink.name, error = %e, "delivery round failed; backing off");
                let poll = act.poll;
                ctx.run_later(poll.max(Duration::from_secs(1)), |_, ctx| ctx.notify(Round));
            }
        }));
    }
}

#[derive(Message)]
#[rtype(result = "DeliveryDump")]
pub struct DumpDelivery;

impl Handler<DumpDelivery> for DeliveryActor {
    type Result = MessageResult<DumpDelivery>;

    fn handle(&mut self, _: DumpDelivery, _: &mut Context<Self>) -> Self::Result {
        MessageResult(DeliveryDump {
            sink: self.sink.name.clone(),
            in_flight: self.stats.in_flight.load(Ordering::Relaxed),
            completed: self.stats.completed.load(Ordering::Relaxed),
            failed_attempts: self.stats.failed.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            paused: false,
        })
    }
}
