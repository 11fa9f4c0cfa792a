//! The admin HTTP server (SPEC §6), on its own thread so that a busy pipeline never delays a health check.
//! Health here; the JSON API (ledger, outbox, sink levers) in [`api`].

pub mod api;

mod actors;
pub use actors::{ActorView, Actors, Probe};

mod probe;

mod metrics;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// What the health endpoints report.
#[derive(Debug, Default)]
pub struct Health {
    /// Migrated and connected.
    pub ready: AtomicBool,
    /// SIGTERM received: finishing work, taking no more.
    pub draining: AtomicBool,
    /// The admin server's database probe found PostgreSQL unreachable (see `probe`).
    pub database_down: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && !self.database_down.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
    }
}

/// What the admin routes can see. Built before the pipeline starts (health must answer during start-up); the
/// parts that exist only once the pipeline runs are set later through [`AdminState::pipeline`].
#[derive(Clone)]
pub struct AdminState {
    pub health: Arc<Health>,
    /// Set once the pipeline has started; routes that need it answer 503 before that.
    pub pipeline: Arc<OnceLock<PipelineView>>,
}

impl AdminState {
    pub fn new(health: Arc<Health>) -> AdminState {
        AdminState {
            health,
            pipeline: Arc::default(),
        }
    }
}

/// Handles on the running pipeline, for the admin routes.
#[derive(Clone)]
pub struct PipelineView {
    pub db_url: String,
    pub supervisor: actix::Addr<crate::supervisor::Supervisor>,
    /// Every actor by its name in the supervision tree.
    pub actors: actors::Actors,
    pub edges: Vec<Arc<crate::mailbox::EdgeStats>>,
    /// The bearer token mutating calls need (`admin.token`); empty: every mutating call is refused.
    pub token: crate::config::Secret,
    /// The delivery actor of each configured sink, in configuration order.
    pub sinks: Vec<(String, actix::Addr<crate::delivery::DeliveryActor>)>,
    /// How far the parser is through the file in flight.
    pub progress: Arc<crate::parser_pool::Progress>,
    /// Wakes the delivery actors, so that re-driven rows go at once rather than at the next poll.
    pub outbox: crate::writer::OutboxSignal,
}

/// Every admin route.
fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/admin/actors", get(actors::actors))
        .route("/metrics", get(metrics::metrics))
        .with_state(state.clone())
        .merge(api::router(state))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    if s.health.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if s.health.database_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
    } else if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// A running admin server.
pub struct AdminServer {
    pub addr: SocketAddr,
    state: AdminState,
    thread: Option<std::thread::JoinHandle<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AdminServer {
    /// Binds `listen` now (so a port conflict fails start-up) and serves on a thread of its own, where the database
    /// probe behind `/readyz` also runs.
    pub fn start(listen: SocketAddr, state: AdminState) -> std::io::Result<AdminServer> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let probed = state.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-admin".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("admin runtime");
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "admin server cannot listen");
                            return;
                        }
                    };
                    tokio::spawn(probe::run(probed));
                    // The peer's address names who made a mutating call in the log.
                    let app = app.into_make_service_with_connect_info::<SocketAddr>();
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "admin server stopped");
                    }
                });
            })?;
        tracing::info!(%addr, "admin server listening");
        Ok(AdminServer {
            addr,
            state,
            thread: Some(thread),
            shutdown: Some(tx),
        })
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl crate::supervisor::ThreadChild for AdminServer {
    fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Serves again on the address it had (an ephemeral port stays the same).
    fn restart(&mut self) -> Result<(), String> {
        self.stop();
        *self = AdminServer::start(self.addr, self.state.clone())
            .map_err(|e| format!("cannot listen on {}: {e}", self.addr))?;
        Ok(())
    }

    fn stop(&mut self) {
        AdminServer::stop(self);
    }
}
