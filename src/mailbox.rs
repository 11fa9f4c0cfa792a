//! Bounded mailboxes: back-pressure on every data edge (SPEC §2).
//!
//! actix's `Addr::send` enqueues without waiting for room, so a fast producer could fill memory with batches for a
//! slow consumer. A [`Mailbox`] wraps an actor's address with a semaphore of `capacity` permits: a sender takes a
//! permit *before* the message is enqueued and the permit is returned only when the actor has finished handling it.
//! When every permit is out, `send().await` waits — that wait is the back-pressure, and it is measured per edge.
//!
//! Each producer talks through its own [`EdgeSender`], which also remembers what *it* has in flight so that it can
//! [`flush`](EdgeSender::flush) — wait until the consumer has handled all of its messages — and learn whether any of
//! them failed. Handlers answer `Result<_, PipelineError>`; the reply is the credit.

use crate::error::PipelineError;
use actix::dev::ToEnvelope;
use actix::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

/// Live figures of one edge, shared with the metrics and the state dump.
#[derive(Debug)]
pub struct EdgeStats {
    pub name: &'static str,
    pub capacity: usize,
    /// The actor kind that handles this edge's messages, for the per-actor metrics.
    receiver: &'static str,
    depth: AtomicUsize,
    max_depth: AtomicUsize,
    sent: AtomicU64,
    waited_nanos: AtomicU64,
    alive: AtomicUsize,
    max_alive: AtomicUsize,
}

/// A copy of an edge's figures at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeSnapshot {
    pub name: &'static str,
    pub capacity: usize,
    pub depth: usize,
    pub max_depth: usize,
    pub sent: u64,
    pub backpressure_seconds: f64,
    /// Batches of this edge alive now, anywhere (see [`BatchGuard`]).
    pub alive: usize,
    pub max_alive: usize,
}

impl EdgeStats {
    fn new(name: &'static str, capacity: usize) -> Self {
        EdgeStats {
            name,
            capacity,
            receiver: crate::metrics::edge_ends(name).1,
            depth: AtomicUsize::new(0),
            max_depth: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            waited_nanos: AtomicU64::new(0),
            alive: AtomicUsize::new(0),
            max_alive: AtomicUsize::new(0),
        }
    }

    pub fn snapshot(&self) -> EdgeSnapshot {
        EdgeSnapshot {
            name: self.name,
            capacity: self.capacity,
            depth: self.depth.load(Ordering::Relaxed),
            max_depth: self.max_depth.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            backpressure_seconds: self.waited_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            alive: self.alive.load(Ordering::Relaxed),
            max_alive: self.max_alive.load(Ordering::Relaxed),
        }
    }

    fn enter(&self) {
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_depth.fetch_max(depth, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A message handled (`ok`) or failed by the receiving actor.
    fn leave(&self, ok: bool) {
        self.depth.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::actor_received(self.receiver, 1);
        if !ok {
            crate::metrics::actor_error(self.receiver);
        }
    }

    fn waited(&self, since: Instant) {
        let nanos = since.elapsed().as_nanos() as u64;
        self.waited_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// An actor's address behind a bound: at most `capacity` messages waiting or being handled.
pub struct Mailbox<A: Actor> {
    addr: Addr<A>,
    room: Arc<Semaphore>,
    stats: Arc<EdgeStats>,
}

impl<A: Actor> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Mailbox {
            addr: self.addr.clone(),
            room: self.room.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<A: Actor> Mailbox<A> {
    pub fn new(name: &'static str, addr: Addr<A>, capacity: usize) -> Self {
        assert!(capacity > 0, "a mailbox needs room for one message");
        Mailbox {
            addr,
            room: Arc::new(Semaphore::new(capacity)),
            stats: Arc::new(EdgeStats::new(name, capacity)),
        }
    }

    /// A handle for one producer, of the edge's sending actor kind.
    pub fn sender(&self) -> EdgeSender<A> {
        self.sender_for(crate::metrics::edge_ends(self.stats.name).0)
    }

    /// A handle for one producer of another actor kind than the edge's own sender (the parser's file-level
    /// messages to the writer), so that the per-actor metrics count its messages as its own.
    pub fn sender_for(&self, actor: &'static str) -> EdgeSender<A> {
        EdgeSender {
            mailbox: self.clone(),
            actor,
            mine: Arc::new(Semaphore::new(self.stats.capacity)),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    pub fn stats(&self) -> Arc<EdgeStats> {
        self.stats.clone()
    }

    /// A guard to build into a batch message sent on this edge.
    pub fn track(&self) -> BatchGuard {
        let n = self.stats.alive.fetch_add(1, Ordering::Relaxed) + 1;
        self.stats.max_alive.fetch_max(n, Ordering::Relaxed);
        BatchGuard(self.stats.clone())
    }

    /// The raw address, for control messages only (`do_send`).
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }
}

impl<A: Actor> EdgeSender<A> {
    /// A guard to build into a batch message sent on this edge.
    pub fn track(&self) -> BatchGuard {
        self.mailbox.track()
    }
}

/// One producer's end of a [`Mailbox`].
pub struct EdgeSender<A: Actor> {
    mailbox: Mailbox<A>,
    /// The producer's actor kind, for the per-actor metrics.
    actor: &'static str,
    /// Permits for this producer's own messages in flight, so that `flush` waits for exactly them.
    mine: Arc<Semaphore>,
    /// The first failure any of this producer's messages met; reported by the next `send` or `flush`.
    failure: Arc<Mutex<Option<PipelineError>>>,
}

impl<A: Actor> Clone for EdgeSender<A> {
    fn clone(&self) -> Self {
        // A clone is a new producer: it flushes only its own messages.
        self.mailbox.sender_for(self.actor)
    }
}

impl<A: Actor> EdgeSender<A> {
    async fn take_room(
        &self,
    ) -> Result<
        (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
        PipelineError,
    > {
        let closed = || PipelineError::Closed(self.mailbox.stats.name);
        // Waiting for either permit is waiting for the consumer: the producer's own (its messages not yet
        // handled) or the edge's (everyone's).
        let since = Instant::now();
        let mut waited = false;
        let mut take = async |sem: &Arc<Semaphore>| match sem.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) => {
                waited = true;
                sem.clone().acquire_owned().await.map_err(|_| closed())
            }
        };
        let mine = take(&self.mine).await?;
        let room = take(&self.mailbox.room).await?;
        if waited {
            self.mailbox.stats.waited(since);
        }
        Ok((mine, room))
    }

    fn check(&self) -> Result<(), PipelineError> {
        match self.failure.lock().expect("edge failure lock").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Enqueues `msg` once there is room, and returns without waiting for it to be handled. A failure of the
    /// handler is reported by a later `send` or by `flush`.
    pub async fn send<M>(&self, msg: M) -> Result<(), PipelineError>
    where
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message<Result = Result<(), PipelineError>> + Send + 'static,
    {
        self.check()?;
        let (mine, room) = self.take_room().await?;
        let stats = self.mailbox.stats.clone();
        stats.enter();
        crate::metrics::actor_sent(self.actor, 1);
        let request = self.mailbox.addr.send(msg);
        let failure = self.failure.clone();
        let name = stats.name;
        actix_rt::spawn(async move {
            let outcome = request.await;
            stats.leave(matches!(outcome, Ok(Ok(()))));
            drop(room);
            let err = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(PipelineError::Closed(name)),
            };
            if let Some(e) = err {
                let mut slot = failure.lock().expect("edge failure lock");
                slot.get_or_insert(e);
            }
            // Released last, so that `flush` sees the failure recorded above.
            drop(mine);
        });
        Ok(())
    }

    /// Sends `msg` once there is room and waits for the handler's answer.
    pub async fn call<M, R>(&self, msg: M) -> Result<R, PipelineError>
    where
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message<Result = Result<R, PipelineError>> + Send + 'static,
        R: Send + 'static,
    {
        self.check()?;
        let (mine, room) = self.take_room().await?;
        let stats = self.mailbox.stats.clone();
        stats.enter();
        crate::metrics::actor_sent(self.actor, 1);
        let outcome = self.mailbox.addr.send(msg).await;
        stats.leave(matches!(outcome, Ok(Ok(_))));
        drop(room);
        drop(mine);
        outcome.map_err(|_| PipelineError::Closed(stats.name))?
    }

    /// Waits until every message this producer sent has been handled; returns the first failure among them.
    pub async fn flush(&self) -> Result<(), PipelineError> {
        let all = self.mailbox.stats.capacity as u32;
        let permits = self
            .mine
            .acquire_many(all)
            .await
            .map_err(|_| PipelineError::Closed(self.mailbox.stats.name))?;
        drop(permits);
        self.check()
    }
}

/// Held by a batch message from the moment it is built until it is dropped after handling: counts the batches of
/// an edge alive anywhere (built, waiting for room, queued or being handled), independently of the semaphore — the
/// check that the bound really holds.
#[derive(Debug)]
pub struct BatchGuard(Arc<EdgeStats>);

impl Drop for BatchGuard {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::Relaxed);
    }
}
