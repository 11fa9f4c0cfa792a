//! Fault injection for tests, compiled only with the `fault-injection` feature (never in a release build): the
//! integration tests enable it through a dev-dependency on the crate itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static WRITER_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Makes the EventLogWriter sleep this long before each batch of changes (a slow database).
pub fn set_writer_delay(d: Duration) {
    WRITER_DELAY_MS.store(d.as_millis() as u64, Ordering::Relaxed);
}

pub(crate) fn writer_delay() -> Option<Duration> {
    match WRITER_DELAY_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}
