//! Start-up: builds the actor system from settings (SPEC §2). `main.rs` only parses arguments and calls this.
//!
//! Threads: the system arbiter runs the FileWatchers and the ParserPool (whose CPU work runs on blocking threads);
//! every dedupe shard, the EventLogWriter and the delivery actors get arbiters of their own, so that no actor's
//! work delays another's, and each PostgreSQL-using arbiter opens its own connections.

use crate::admin::{ActorView, Actors, AdminServer, AdminState, Health, PipelineView, Probe};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use crate::dedupe::{DedupeShard, ShardSpec};
use crate::delivery::reaper::LeaseReaper;
use crate::delivery::{DeliveryActor, DeliveryConfig};
use crate::faults::Faults;
use crate::mailbox::{EdgeStats, Mailbox};
use crate::parser_pool::{ParserPool, Progress, Routes};
use crate::supervisor::{Intensity, RestartType, Shutdown, Strategy, Supervisor, TreeBuilder};
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

/// What a test or the demo may set beyond the configuration.
#[derive(Clone)]
pub struct StartOptions {
    /// Serve the admin API on `admin.listen`.
    pub admin: bool,
    /// The clock delivery uses for retry times (tests move it forward).
    pub clock: SharedClock,
    /// Faults to inject (only with the `fault-injection` feature; empty otherwise).
    pub faults: Faults,
}

impl StartOptions {
    pub fn new(admin: bool) -> StartOptions {
        StartOptions {
            admin,
            clock: crate::clock::system(),
            faults: Faults::default(),
        }
    }
}

/// The running admin server's address.
#[derive(Debug, Clone, Copy)]
pub struct AdminHandle {
    pub addr: std::net::SocketAddr,
}

/// A running pipeline.
pub struct App {
    pub settings: Settings,
    pub db_url: String,
    pub health: Arc<Health>,
    pub admin: Option<AdminHandle>,
    pub supervisor: Addr<Supervisor>,
    pub watchers: Vec<Addr<FileWatcher>>,
    pub parser: Addr<ParserPool>,
    pub progress: Arc<Progress>,
    pub writers: Vec<Addr<EventLogWriter>>,
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
        App::start_with(settings, db_url, StartOptions::new(admin)).await
    }

    /// As [`App::start`], with the clock delivery uses for retry times (tests move it forward).
    pub async fn start_with_clock(
        settings: Settings,
        db_url: String,
        admin: bool,
        clock: SharedClock,
    ) -> anyhow::Result<App> {
        let options = StartOptions {
            clock,
            ..StartOptions::new(admin)
        };
        App::start_with(settings, db_url, options).await
    }

    /// Builds the supervision tree (docs/ARCHITECTURE.md, "Supervision"):
    ///
    /// ```text
    /// root (one_for_one)
    /// ├── admin                      thread: health, metrics, admin API
    /// ├── ingest (one_for_all)       writers, dedupe shards, parser, watchers
    /// └── delivery (one_for_one)     lease reaper, one DeliveryActor per sink
    /// ```
    pub async fn start_with(
        settings: Settings,
        db_url: String,
        options: StartOptions,
    ) -> anyhow::Result<App> {
        crate::supervisor::install_panic_hook(false);
        crate::metrics::install();
        let StartOptions {
            admin,
            clock,
            faults,
        } = options;
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
        let admin_handle = admin.as_ref().map(|a| AdminHandle { addr: a.addr });
        migrate_with_retry(&db_url, Duration::from_secs(60)).await?;
        health.ready.store(true, Ordering::Relaxed);

        let p = &settings.pipeline;
        let sv = &settings.supervision;
        let intensity = Intensity {
            max_restarts: sv.max_restarts,
            period: sv.restart_period,
        };
        let mut tree = TreeBuilder::new("root", Strategy::OneForOne, intensity, sv.stuck_after);
        let root = tree.root();
        if let Some(server) = admin {
            tree.thread(root, "admin", "admin", Box::new(server));
        }
        // One for all: the shards' memory may run ahead of the database for the snapshot in flight, so any
        // failure in ingest restarts all of it, the state is rebuilt from `record_state` and the watcher takes the
        // file again (SPEC §2 invariant).
        let ingest = tree.group(root, "ingest", Strategy::OneForAll, intensity);
        let mut arbiters = Vec::new();
        let mut edges = Vec::new();
        let signal = OutboxSignal::default();
        let sink_names: Vec<String> = settings.sinks.iter().map(|s| s.name.clone()).collect();

        let mut actors = Actors::new();
        let mut view = |name: &str, probe: Probe, inbox: Option<Arc<EdgeStats>>| {
            actors.insert(name.to_string(), ActorView { probe, inbox });
        };
        // Writers, each with its own connection and thread, so that one encodes a batch while PostgreSQL works on
        // another's. Shard i writes through writer i mod n; file-level work goes through writer 0.
        let mut writers = Vec::new();
        let mut writer_mailboxes = Vec::new();
        for index in 0..p.writers {
            let writer_arbiter = Arbiter::new();
            let name = format!("writer.{index}");
            let writer = {
                let (url, sinks, signal, faults) = (
                    db_url.clone(),
                    sink_names.clone(),
                    signal.clone(),
                    faults.clone(),
                );
                tree.spawn(
                    ingest,
                    &writer_arbiter.handle(),
                    &name,
                    "writer",
                    RestartType::Permanent,
                    move |beat| EventLogWriter::new(url, sinks, signal, beat, faults),
                )
            };
            arbiters.push(writer_arbiter);
            let mailbox =
                Mailbox::new("dedupe_to_writer", writer.clone(), p.edges.dedupe_to_writer);
            edges.push(mailbox.stats());
            view(&name, Probe::Writer(writer.clone()), Some(mailbox.stats()));
            writers.push(writer);
            writer_mailboxes.push(mailbox);
        }

        let mut routes: Routes = Default::default();
        for source in &settings.sources {
            let name: Arc<str> = source.name.as_str().into();
            let mut shards = Vec::new();
            for index in 0..p.shards {
                let arbiter = Arbiter::new();
                let spec = ShardSpec {
                    source: name.clone(),
                    index,
                    shards: p.shards,
                    db_url: db_url.clone(),
                    writer: writer_mailboxes[index % writer_mailboxes.len()].sender(),
                    writer_batch: p.writer_batch,
                };
                let faults = faults.clone();
                let shard_name = format!("dedupe.{name}.{index}");
                let addr = tree.spawn(
                    ingest,
                    &arbiter.handle(),
                    &shard_name,
                    "dedupe",
                    RestartType::Permanent,
                    move |beat| DedupeShard::new(spec, beat, faults),
                );
                arbiters.push(arbiter);
                let mailbox =
                    Mailbox::new("parser_to_dedupe", addr.clone(), p.edges.parser_to_dedupe);
                edges.push(mailbox.stats());
                view(&shard_name, Probe::Shard(addr), Some(mailbox.stats()));
                shards.push(mailbox);
            }
            // The state is loaded when the source's watcher takes the ingest lock (before its first file), not
            // here: another instance may hold the lock and commit meanwhile.
            routes.insert(name, shards);
        }

        let ingest_arbiter = Arbiter::new();
        let progress = Arc::new(Progress {
            outbox: signal.clone(),
            ..Progress::default()
        });
        let parser = {
            let (workers, chunk, routes, writer, progress, faults) = (
                p.parser_workers,
                p.chunk_bytes,
                routes.clone(),
                writer_mailboxes[0].clone(),
                progress.clone(),
                faults.clone(),
            );
            tree.spawn(
                ingest,
                &ingest_arbiter.handle(),
                "parser",
                "parser",
                RestartType::Permanent,
                move |beat| ParserPool::new(workers, chunk, routes, writer, progress, beat, faults),
            )
        };
        let parser_mailbox = Mailbox::new(
            "watcher_to_parser",
            parser.clone(),
            p.edges.watcher_to_parser,
        );
        edges.push(parser_mailbox.stats());
        view(
            "parser",
            Probe::Parser(progress.clone()),
            Some(parser_mailbox.stats()),
        );

        let pool = crate::db::pool(&db_url, settings.database.pool_size)?;
        let watchers: Vec<Addr<FileWatcher>> = settings
            .sources
            .iter()
            .map(|s| {
                let shards = routes.get(s.name.as_str()).cloned().unwrap_or_default();
                let (s, pool, parser, url, faults) = (
                    s.clone(),
                    pool.clone(),
                    parser_mailbox.clone(),
                    db_url.clone(),
                    faults.clone(),
                );
                tree.spawn(
                    ingest,
                    &ingest_arbiter.handle(),
                    &format!("watcher.{}", s.name),
                    "watcher",
                    RestartType::Permanent,
                    move |_| FileWatcher::new(s, pool, parser, url, shards, faults),
                )
            })
            .collect();
        for (s, w) in settings.sources.iter().zip(&watchers) {
            view(
                &format!("watcher.{}", s.name),
                Probe::Watcher(w.clone()),
                None,
            );
        }
        arbiters.push(ingest_arbiter);

        let owner: Arc<str> = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
        .into();
        // One for one: sinks are independent, and every attempt is recorded in the database as it finishes.
        let delivery_group = tree.group(root, "delivery", Strategy::OneForOne, intensity);
        let delivery_arbiter = Arbiter::new();
        {
            let url = db_url.clone();
            tree.spawn(
                delivery_group,
                &delivery_arbiter.handle(),
                "reaper",
                "reaper",
                RestartType::Permanent,
                move |beat| {
                    let pool = crate::db::pool(&url, 2).expect("the database URL was checked");
                    LeaseReaper::new(pool, Duration::from_secs(1), beat)
                },
            );
        }
        let mut delivery = Vec::new();
        for sink in &settings.sinks {
            let pool = crate::db::pool(&db_url, sink.concurrency.clamp(2, 32))?;
            let config = DeliveryConfig {
                sink: sink.clone(),
                pool,
                owner: owner.clone(),
                lease: settings.delivery.lease,
                poll: settings.delivery.poll_interval,
                claim_batch: settings.delivery.claim_batch,
                clock: clock.clone(),
                wake: signal.subscribe(),
                ingest: signal.clone(),
                yield_to_ingest: settings.delivery.yield_to_ingest,
                beat: Default::default(),
                faults: faults.clone(),
            };
            delivery.push(tree.spawn(
                delivery_group,
                &delivery_arbiter.handle(),
                &format!("delivery.{}", sink.name),
                "delivery",
                RestartType::Permanent,
                move |beat| DeliveryActor::new(DeliveryConfig { beat, ..config }),
            ));
        }
        arbiters.push(delivery_arbiter);
        for (sink, d) in settings.sinks.iter().zip(&delivery) {
            view(
                &format!("delivery.{}", sink.name),
                Probe::Delivery(d.clone()),
                None,
            );
        }
        if admin_handle.is_some() {
            // The outbox and ledger figures of /metrics, on a connection and a thread of their own.
            let metrics_arbiter = Arbiter::new();
            let sources = settings.sources.iter().map(|s| s.name.clone()).collect();
            let poll = crate::metrics::poll_database(
                db_url.clone(),
                sink_names.clone(),
                sources,
                crate::metrics::POLL_PERIOD,
            );
            metrics_arbiter.spawn(poll);
            arbiters.push(metrics_arbiter);
        }

        let supervisor = tree.start();

        let _ = admin_state.pipeline.set(PipelineView {
            db_url: db_url.clone(),
            supervisor: supervisor.clone(),
            actors,
            edges: edges.clone(),
            token: settings.admin.token.clone(),
            sinks: sink_names
                .iter()
                .cloned()
                .zip(delivery.iter().cloned())
                .collect(),
            progress: progress.clone(),
            outbox: signal.clone(),
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
            admin: admin_handle,
            supervisor,
            watchers,
            parser,
            progress,
            writers,
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
        // Last started, first stopped, each within its timeout: delivery drains the attempts in flight, then
        // intake stops before the stages behind it (the snapshot in flight is rolled back and resumed at the next
        // start), and the admin server goes last.
        let timeout = self.settings.supervision.shutdown_timeout;
        if let Err(e) = self.supervisor.send(Shutdown { timeout }).await {
            tracing::warn!(error = %e, "supervisor unavailable; stopping the arbiters directly");
        }
        for a in self.arbiters.drain(..).rev() {
            a.stop();
            let _ = a.join();
        }
        // Attempts cut short by the stop: their rows go back to `available` now rather than when the lease expires.
        match crate::db::connect(&self.db_url).await {
            Ok(c) => match crate::delivery::outbox::release(&c, &self.owner, None).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "released deliveries held by this process"),
                Err(e) => tracing::warn!(error = %e, "cannot release leases; they will expire"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot release leases; they will expire"),
        }
    }
}

impl Drop for App {
    /// An app dropped without [`App::stop`] (a test that ends, a start-up that fails later) still stops its
    /// arbiters, so that its connections close with it.
    fn drop(&mut self) {
        for a in self.arbiters.drain(..).rev() {
            a.stop();
            let _ = a.join();
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "sluice".into())
}
