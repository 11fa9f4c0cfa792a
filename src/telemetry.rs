//! Logging and the metrics recorder.

use tracing_subscriber::EnvFilter;

/// Structured logs to stderr; level from `SLUICE_LOG` (or `RUST_LOG`), JSON when `SLUICE_LOG_FORMAT=json`.
pub fn init_logging() {
    let filter = EnvFilter::try_from_env("SLUICE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var("SLUICE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    let _ = result;
}
