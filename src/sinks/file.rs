//! File sink (SPEC §5.3): JSON lines, one file per hour, fsynced before a delivery counts as completed.

use super::{Answer, EventRecord};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct FileSink {
    pub dir: PathBuf,
}

impl FileSink {
    /// The hourly file the current time writes to: `<dir>/YYYY-MM-DDTHH.jsonl` (UTC).
    fn current_path(&self) -> PathBuf {
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        self.dir.join(format!("{}.jsonl", &now[..13]))
    }

    /// Appends one line per event and fsyncs. All or nothing: any I/O error retries the whole batch (a repeated
    /// line carries the same idempotency key).
    pub fn write(&self, events: &[(Uuid, EventRecord)]) -> Answer {
        match self.try_write(events) {
            Ok(()) => Answer::Completed { status: None },
            Err(e) => Answer::Retry {
                status: None,
                error: format!("file sink: {}", e.kind()),
            },
        }
    }

    fn try_write(&self, events: &[(Uuid, EventRecord)]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut out = Vec::with_capacity(events.len() * 1024);
        for (idempotency_key, e) in events {
            let mut body = e.webhook_body();
            body.insert(
                "idempotency_key".into(),
                Value::String(idempotency_key.to_string()),
            );
            serde_json::to_writer(&mut out, &body)?;
            out.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.current_path())?;
        f.write_all(&out)?;
        f.sync_data()
    }
}
