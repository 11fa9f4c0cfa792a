//! The long-running commands: `sluice run` and `sluice migrate`.

use crate::app::{App, Database, StartOptions, EMBEDDED_DB};
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
    let options = StartOptions {
        faults: faults_from_env()?,
        ..StartOptions::new(true)
    };
    let app = match App::start_with(settings, db.url.clone(), options).await {
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

/// A fault plan from `SLUICE_FAULTS` (builds with the `fault-injection` feature only, i.e. tests).
#[cfg(feature = "fault-injection")]
fn faults_from_env() -> anyhow::Result<crate::faults::Faults> {
    match std::env::var("SLUICE_FAULTS") {
        Ok(text) => {
            crate::faults::Faults::parse(&text).map_err(|e| anyhow::anyhow!("SLUICE_FAULTS: {e}"))
        }
        Err(_) => Ok(Default::default()),
    }
}

#[cfg(not(feature = "fault-injection"))]
fn faults_from_env() -> anyhow::Result<crate::faults::Faults> {
    Ok(Default::default())
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
