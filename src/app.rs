//! Start-up: builds the actor system from settings (SPEC §2). `main.rs` only parses arguments and calls this.
//!
//! Threads: the system arbiter runs the FileWatchers and the ParserPool (whose CPU work runs on blocking threads);
//! every dedupe shard, the EventLogWriter and the delivery actors get arbiters of their own, so that no actor's
//! work delays another's, and each PostgreSQL-using arbiter opens its own connections.

use crate::admin::{AdminServer, AdminState, Health, PipelineView};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use crate::dedupe::DedupeShard;
use crate::delivery::{DeliveryActor, DeliveryConfig};
use crate::mailbox::{EdgeStats, Mailbox};
use crate::parser_pool::{ParserPool, Progress, Routes};
use crate::watcher::FileWatcher;
use crate::writer::{EventLogWriter, OutboxSignal};
use actix::prelude::*;
use anyhow::Context as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The database the pipeline uses, and the embedded cluster behind it if there is one.
pub struct Database {
    pub url: String,
    pub embedded: Option<EmbeddedPostgres>,
}

/// The name of the database sluice uses in its embedded cluster.
pub const EMBEDDED_DB: &str = "sluice";

impl Database {
    /// The configured URL, or an embedded cluster under `data_dir/pg` started from the system's binaries.
    pub async fn resolve(settings: &Settings, embedded_db: &str) -> anyhow::Result<Database> {
        let url = settings.database.url.expose().to_string();
        if !url.is_empty() {
            return Ok(Database {
                url,
                embedded: None,
            });
        }
        let dir = settings.pg_dir();
        tracing::info!(dir = %dir.display(), "starting the embedded PostgreSQL cluster");
        let pg = tokio::task::spawn_blocking(move || {
            EmbeddedPostgres::start(&dir, EmbeddedOptions::default())
        })
        .await
        .context("embedded PostgreSQL start-up task")??;
        pg.ensure_database(embedded_db).await?;
        Ok(Database {
            url: pg.url(embedded_db),
            embedded: Some(pg),
        })
    }

    /// Stops the embedded cluster, if any.
    pub fn stop(&self) {
        if let Some(pg) = &self.embedded {
            if let Err(e) = pg.stop() {
                tracing::warn!(error = %e, "embedded PostgreSQL did not stop cleanly");
            }
        }
    }
}

/// Connects and applies migrations, retrying while the database is not yet reachable.
pub async fn migrate_with_retry(url: &str, patience: Duration) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = async {
            let mut client = crate::db::connect(url).await?;
            crate::db::migrate(&mut client).await
        };
        match attempt.await {
            Ok(n) => return Ok(n),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context("cannot migrate the database"),
        }
    }
}

/// A running pipeline.
pub struct App {
    pub settings: Settings,
    pub db_url: String,
    pub health: Arc<Health>,
    pub admin: Option<AdminServer>,
    pub watchers: Vec<Addr<FileWatcher>>,
    pub parser: Addr<ParserPool>,
    pub progress: Arc<Progress>,
    pub writer: Addr<EventLogWriter>,
    pub routes: Routes,
    pub delivery: Vec<Addr<DeliveryActor>>,
    pub edges: Vec<Arc<EdgeStats>>,
    /// This process's lease owner id.
    pub owner: Arc<str>,
    /// Pool of the ingest arbiter (ledger reads and writes of the watchers).
    pub pool: deadpool_postgres::Pool,
    arbiters: Vec<Arbiter>,
}

impl App {
    /// Starts everything on `db_url` (already migrated or not). Must run inside an actix `System`.
    pub async fn start(settings: Settings, db_url: String, admin: bool) -> anyhow::Result<App> {
        App::start_with_clock(settings, db_url, admin, crate::clock::system()).await
    }

    /// As [`App::start`], with the clock delivery uses for retry times (tests move it forward).
    pub async fn start_with_clock(
        settings: Settings,
        db_url: String,
        admin: bool,
        clock: SharedClock,
    ) -> anyhow::Result<App> {
        crate::metrics::install();
        let health = Arc::new(Health::default());
        let admin_state = AdminState::new(health.clone());
        let admin = if admin {
            Some(
                AdminServer::start(settings.admin.listen, admin_state.clone()).with_context(
                    || format!("cannot listen on admin.listen = {}", settings.admin.listen),
                )?,
            )
        } else {
            None
        };
        migrate_with_retry(&db_url, Duration::from_secs(60)).await?;
        health.ready.store(true, Ordering::Relaxed);

        let p = &settings.pipeline;
        let mut arbiters = Vec::new();
        let mut edges = Vec::new();
        let signal = OutboxSignal::default();
        let sink_names: Vec<String> = settings.sinks.iter().map(|s| s.name.clone()).collect();

        let writer_arbiter = Arbiter::new();
        let writer = {
            let (url, sinks, signal) = (db_url.clone(), sink_names.clone(), signal.clone());
            EventLogWriter::start_in_arbiter(&writer_arbiter.handle(), move |_| {
                EventLogWriter::new(url, sinks, signal)
            })
        };
        arbiters.push(writer_arbiter);
        let writer_mailbox =
            Mailbox::new("dedupe_to_writer", writer.clone(), p.edges.dedupe_to_writer);
        edges.push(writer_mailbox.stats());

        let mut routes: Routes = Default::default();
        for source in &settings.sources {
            let name: Arc<str> = source.name.as_str().into();
            let mut shards = Vec::new();
            for index in 0..p.shards {
                let arbiter = Arbiter::new();
                let (url, name2, w, batch, n) = (
                    db_url.clone(),
                    name.clone(),
                    writer_mailbox.sender(),
                    p.writer_batch,
                    p.shards,
                );
                let addr = DedupeShard::start_in_arbiter(&arbiter.handle(), move |_| {
                    DedupeShard::new(name2, index, n, url, w, batch)
                });
                arbiters.push(arbiter);
                let mailbox = Mailbox::new("parser_to_dedupe", addr, p.edges.parser_to_dedupe);
                edges.push(mailbox.stats());
                shards.push(mailbox);
            }
            // The state is loaded when the source's watcher takes the ingest lock (before its first file), not
            // here: another instance may hold the lock and commit meanwhile.
            routes.insert(name, shards);
        }

        let ingest_arbiter = Arbiter::new();
        let parser_pool = ParserPool::new(
            p.parser_workers,
            p.chunk_bytes,
            routes.clone(),
            writer_mailbox.clone(),
        );
        let progress = parser_pool.progress();
        let parser = ParserPool::start_in_arbiter(&ingest_arbiter.handle(), move |_| parser_pool);
        let parser_mailbox = Mailbox::new(
            "watcher_to_parser",
            parser.clone(),
            p.edges.watcher_to_parser,
        );
        edges.push(parser_mailbox.stats());

        let pool = crate::db::pool(&db_url, settings.database.pool_size)?;
        let watchers = settings
            .sources
            .iter()
            .map(|s| {
                let shards = routes.get(s.name.as_str()).cloned().unwrap_or_default();
                let w = FileWatcher::new(
                    s.clone(),
                    pool.clone(),
                    parser_mailbox.clone(),
                    db_url.clone(),
                    shards,
                );
                FileWatcher::start_in_arbiter(&ingest_arbiter.handle(), move |_| w)
            })
            .collect();
        arbiters.push(ingest_arbiter);

        let owner: Arc<str> = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
        .into();
        let delivery_arbiter = Arbiter::new();
        let mut delivery = Vec::new();
        for sink in &settings.sinks {
            let pool = crate::db::pool(&db_url, sink.concurrency.clamp(2, 32))?;
            let (sink, owner, d, wake) = (
                sink.clone(),
                owner.clone(),
                settings.delivery.clone(),
                signal.subscribe(),
            );
            let clock = clock.clone();
            delivery.push(DeliveryActor::start_in_arbiter(
                &delivery_arbiter.handle(),
                move |_| {
                    DeliveryActor::new(DeliveryConfig {
                        sink,
                        pool,
                        owner,
                        lease: d.lease,
                        poll: d.poll_interval,
                        claim_batch: d.claim_batch,
                        clock,
                        wake,
                    })
                },
            ));
        }
        arbiters.push(delivery_arbiter);
        if admin.is_some() {
            // The outbox and ledger figures of /metrics, on a connection and a thread of their own.
            let metrics_arbiter = Arbiter::new();
            let sources = settings.sources.iter().map(|s| s.name.clone()).collect();
            let poll = crate::metrics::poll_database(
                db_url.clone(),
                sink_names,
                sources,
                crate::metrics::POLL_PERIOD,
            );
            metrics_arbiter.spawn(poll);
            arbiters.push(metrics_arbiter);
        }

        let _ = admin_state.pipeline.set(PipelineView {
            db_url: db_url.clone(),
            edges: edges.clone(),
        });
        tracing::info!(
            sources = settings.sources.len(),
            sinks = settings.sinks.len(),
            shards = p.shards,
            "pipeline started"
        );
        Ok(App {
            settings,
            db_url,
            health,
            admin,
            watchers,
            parser,
            progress,
            writer,
            routes,
            delivery,
            edges,
            owner,
            pool,
            arbiters,
        })
    }

    /// Stops every actor and arbiter. Work not committed is redone by the next start.
    pub async fn stop(mut self) {
        self.health.draining.store(true, Ordering::Relaxed);
        // Last started, first stopped: intake before the stages behind it.
        for a in self.arbiters.drain(..).rev() {
            a.stop();
            let _ = a.join();
        }
        // Attempts cut short by the stop: their rows go back to `available` now rather than when the lease expires.
        match crate::db::connect(&self.db_url).await {
            Ok(c) => match crate::delivery::outbox::release(&c, &self.owner).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "released deliveries held by this process"),
                Err(e) => tracing::warn!(error = %e, "cannot release leases; they will expire"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot release leases; they will expire"),
        }
        if let Some(mut admin) = self.admin.take() {
            admin.stop();
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "sluice".into())
}
