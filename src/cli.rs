//! The long-running commands: `sluice run` and `sluice migrate`.

use crate::app::{App, Database, EMBEDDED_DB};
use crate::config::Settings;
use anyhow::Context;

/// `sluice migrate`: apply migrations and exit.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = Database::resolve(&settings, EMBEDDED_DB).await?;
    let result = async {
        let mut client = crate::db::connect(&db.url).await?;
        let n = crate::db::migrate(&mut client).await?;
        println!("applied {n} migration(s); schema is current");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    db.stop();
    result
}

/// `sluice run`: the service, until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let db = Database::resolve(&settings, EMBEDDED_DB).await?;
    let app = match App::start(settings, db.url.clone(), true).await {
        Ok(app) => app,
        Err(e) => {
            db.stop();
            return Err(e);
        }
    };
    wait_for_signal()
        .await
        .context("installing signal handlers")?;
    tracing::info!("signal received: draining");
    app.stop().await;
    db.stop();
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
