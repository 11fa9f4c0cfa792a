//! Logging (the metrics recorder is installed by [`crate::metrics::install`]).

use tracing_subscriber::EnvFilter;

/// Structured logs to stderr; level from `SLUICE_LOG` (or `RUST_LOG`, else `default`), JSON when
/// `SLUICE_LOG_FORMAT=json`, colours only on a terminal.
pub fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = if std::env::var("SLUICE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    let _ = result;
}
