//! Delivery targets. Each sink turns an event into what its system expects and classifies the answer.

pub mod commcare;
pub mod file;

use serde_json::{Map, Value};
use std::time::SystemTime;
use uuid::Uuid;

/// One event, ready to send: everything the request bodies of SPEC §5 need.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event_id: Uuid,
    pub source: String,
    pub kind: String,
    pub key_columns: Vec<String>,
    pub key: Vec<String>,
    pub version: i32,
    pub file: String,
    pub observed_at: SystemTime,
    pub columns: Vec<String>,
    /// `None` for `removed` events.
    pub payload: Option<Vec<String>>,
}

impl EventRecord {
    /// The generic JSON body (SPEC §5.1).
    pub fn webhook_body(&self) -> Map<String, Value> {
        let key: Map<String, Value> = self
            .key_columns
            .iter()
            .zip(&self.key)
            .map(|(c, v)| (c.clone(), Value::String(v.clone())))
            .collect();
        let record = match &self.payload {
            Some(values) => Value::Object(
                self.columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| (c.clone(), Value::String(v.clone())))
                    .collect(),
            ),
            None => Value::Null,
        };
        let mut body = Map::new();
        body.insert("event_id".into(), Value::String(self.event_id.to_string()));
        body.insert("source".into(), Value::String(self.source.clone()));
        body.insert("kind".into(), Value::String(self.kind.clone()));
        body.insert("key".into(), Value::Object(key));
        body.insert("version".into(), Value::from(self.version));
        body.insert("file".into(), Value::String(self.file.clone()));
        body.insert(
            "observed_at".into(),
            Value::String(humantime::format_rfc3339_millis(self.observed_at).to_string()),
        );
        body.insert("record".into(), record);
        body
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Completed {
        status: Option<i32>,
    },
    /// Try again later; `error` is short and free of PHI.
    Retry {
        status: Option<i32>,
        error: String,
    },
    Dead {
        status: Option<i32>,
        error: String,
    },
}
