//! The database probe behind `/readyz`: once a second, `SELECT 1` on a connection of its own (opened again
//! whenever it is lost), so that readiness follows PostgreSQL going away and coming back (SPEC §6). It runs on the
//! admin server's runtime, from the moment the pipeline has started until the admin server stops, and logs once
//! when the database goes away and once when it returns.

use super::AdminState;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Time between two probes.
const INTERVAL: Duration = Duration::from_secs(1);
/// A connect or a `SELECT 1` slower than this counts as the database being away.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Probes until the runtime it runs on ends.
pub(super) async fn run(state: AdminState) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        ticks.tick().await;
        // Before the pipeline has started, readiness is the start-up's business (migrated or not).
        let Some(url) = state.pipeline.get().map(|p| p.db_url.clone()) else {
            continue;
        };
        let result = probe(&url, &mut client).await;
        let down = result.is_err();
        let was_down = state.health.database_down.swap(down, Ordering::Relaxed);
        match result {
            Err(e) => {
                client = None;
                if !was_down {
                    tracing::warn!(error = %e, "database unreachable: not ready until it returns");
                }
            }
            Ok(()) if was_down => tracing::info!("database reachable again: ready"),
            Ok(()) => {}
        }
    }
}

/// One probe: connects if there is no open connection, then `SELECT 1`, each within [`TIMEOUT`].
async fn probe(url: &str, client: &mut Option<tokio_postgres::Client>) -> Result<(), String> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        let connected = tokio::time::timeout(TIMEOUT, crate::db::connect(url))
            .await
            .map_err(|_| format!("no connection within {TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        *client = Some(connected);
    }
    let c = client.as_ref().expect("connected above");
    tokio::time::timeout(TIMEOUT, c.simple_query("SELECT 1"))
        .await
        .map_err(|_| format!("no answer to SELECT 1 within {TIMEOUT:?}"))?
        .map(|_| ())
        .map_err(|e| e.to_string())
}
