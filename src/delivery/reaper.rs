//! The lease reaper: returns deliveries whose lease expired (their owner died or hangs) to `available`, so that
//! another DeliveryActor, in this process or another, retries them under the same idempotency key.

use super::outbox;
use crate::supervisor::Beat;
use actix::prelude::*;
use deadpool_postgres::Pool;
use std::time::Duration;

pub struct LeaseReaper {
    pool: Pool,
    every: Duration,
    beat: Beat,
    /// A reap is under way (they never overlap).
    reaping: bool,
}

impl LeaseReaper {
    /// `pool` must be created on the reaper's own arbiter (connections live on the runtime that opened them).
    pub fn new(pool: Pool, every: Duration, beat: Beat) -> Self {
        LeaseReaper {
            pool,
            every,
            beat,
            reaping: false,
        }
    }

    fn reap(&mut self, ctx: &mut Context<Self>) {
        if self.reaping {
            return;
        }
        self.reaping = true;
        let (pool, busy) = (self.pool.clone(), self.beat.busy());
        ctx.spawn(
            async move {
                let _busy = busy;
                let c = pool.get().await.map_err(crate::error::DbError::from)?;
                outbox::reap_expired(&c).await
            }
            .into_actor(self)
            .map(|res, act, _| {
                act.reaping = false;
                match res {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "expired leases returned to available"),
                    Err(e) => tracing::warn!(error = %e, "cannot reap expired leases; will retry"),
                }
            }),
        );
    }
}

impl Actor for LeaseReaper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.every, |act, ctx| act.reap(ctx));
    }
}

impl Supervised for LeaseReaper {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.reaping = false;
    }
}
