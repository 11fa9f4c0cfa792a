//! One attempt: build the sink's request for an event, send it under the attempt timeout, and turn what came back
//! into an [`Answer`] (plus any `Retry-After`).

use super::policy::{classify_status, retry_after};
use crate::config::{SinkKind, SinkSettings};
use crate::sinks::commcare::{self, CommCare, Route};
use crate::sinks::{Answer, EventRecord};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Where a sink sends its requests.
pub enum Target {
    Webhook { url: String, authorization: String },
    CommCare(Box<CommCare>),
}

impl Target {
    pub fn for_sink(sink: &SinkSettings) -> Option<Target> {
        match sink.kind {
            SinkKind::Webhook => Some(Target::Webhook {
                url: sink.url.clone(),
                authorization: sink.authorization.expose().to_string(),
            }),
            SinkKind::Commcare => Some(Target::CommCare(Box::new(CommCare::new(sink)))),
            SinkKind::File => None,
        }
    }
}

/// What an attempt found.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub answer: Answer,
    pub retry_after: Option<Duration>,
    /// The event needs no request (a county that does not take part): recorded `ignored`.
    pub ignored: bool,
    /// PHI-free description of the response.
    pub excerpt: Option<String>,
}

impl Attempted {
    fn ignored() -> Self {
        Attempted {
            answer: Answer::Completed { status: None },
            retry_after: None,
            ignored: true,
            excerpt: None,
        }
    }
}

/// Sends one event to `target`.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    event: &EventRecord,
    idempotency_key: Uuid,
    timeout: Duration,
) -> Attempted {
    let request = match target {
        Target::Webhook { url, authorization } => {
            let mut r = client
                .post(url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", idempotency_key.to_string())
                .body(serde_json::Value::Object(event.webhook_body()).to_string());
            if !authorization.is_empty() {
                r = r.header("Authorization", authorization);
            }
            r
        }
        Target::CommCare(cc) => match cc.route(event) {
            Route::Ignored { .. } => return Attempted::ignored(),
            Route::Send(routed) => {
                let req = cc.request(event, &routed);
                client
                    .post(req.url)
                    .header("Content-Type", "text/xml")
                    .header("Authorization", cc.authorization())
                    .body(req.body)
            }
        },
    };
    let response = match request.timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => {
            let error = if e.is_timeout() {
                super::ERROR_TIMEOUT
            } else if e.is_connect() {
                super::ERROR_CONNECT
            } else {
                "request failed"
            };
            return Attempted {
                answer: Answer::Retry {
                    status: None,
                    error: error.into(),
                },
                retry_after: None,
                ignored: false,
                excerpt: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(60)
        .collect::<String>();
    let body = match tokio::time::timeout(timeout, response.text()).await {
        Ok(Ok(b)) => b,
        _ => String::new(),
    };
    let excerpt = Some(format!(
        "HTTP {status}, {} bytes {content_type}",
        body.len()
    ));
    let answer = match target {
        Target::Webhook { .. } => classify_status(status),
        Target::CommCare(_) => commcare::classify(status, &body),
    };
    Attempted {
        answer,
        retry_after,
        ignored: false,
        excerpt,
    }
}
