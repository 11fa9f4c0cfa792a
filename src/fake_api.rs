//! The built-in fake contact-tracing API (SPEC §5.1, §5.2) that `sluice demo`, the tests and the benchmarks
//! deliver to: a real HTTP server on loopback.
//!
//! - `POST /records` (or any other path outside `/a/`): a webhook post, validated against §5.1 → 200.
//! - `POST /a/{domain}/receiver/`: a CommCare form, validated against §5.2 → 201 with `submit_success`.
//! - A repeated idempotency key (webhook) or `instanceID` (CommCare) is answered like the first one but counted
//!   as a duplicate, the way the real systems apply a change at most once.
//! - Invalid posts get 400 (401 without credentials) with a body naming the problem — permanent errors.
//! - Faults, changeable at runtime through [`Faults`]: an outage that really stops listening (connects are
//!   refused, open connections are closed) and comes back on the same port, latency, a forced status, throttling
//!   (429 + `Retry-After`) and server errors (503).
//! - What was received: [`FakeApi::received`], `GET /_received`; `POST /_reset` clears it.
//!
//! Like the admin server it runs on a thread of its own with its own runtime, so it can be started from any
//! context. It logs counts only: keys and record values are PHI (SPEC §7).

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use uuid::Uuid;

/// Namespace of CommCare case XML v2 blocks.
const CASE_XML_V2: &str = "http://commcarehq.org/case/transaction/v2";
/// What CommCare answers (with 201) when it took a form.
const SUBMIT_SUCCESS: &str = "<OpenRosaResponse xmlns=\"http://openrosa.org/http/response\">\
<message nature=\"submit_success\">   √   </message></OpenRosaResponse>";
/// Accepted changes kept for inspection; beyond this only the counters move, so a long benchmark cannot exhaust
/// memory. Duplicate detection is not bounded by it.
const MAX_KEPT_CHANGES: usize = 2_000_000;
/// Largest request body read (a CommCare form with a long record stays far below).
const MAX_BODY_BYTES: usize = 16 << 20;
/// How long [`Faults::set_down`] waits for the server to actually stop or resume listening.
const SET_DOWN_WAIT: Duration = Duration::from_secs(5);
/// Pause between attempts to listen again on the same port after an outage.
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// Elements a CommCare form may carry the change kind in (first found wins), else the kind is inferred.
const KIND_ELEMENTS: [&str; 4] = ["event_kind", "sluice_kind", "change_kind", "kind"];
/// Elements a CommCare form may carry the event version in (first found wins), else the version is 0.
const VERSION_ELEMENTS: [&str; 3] = ["sluice_version", "event_version", "version"];

/// Options of `sluice fake-api`, and of [`FakeApi::start`].
#[derive(clap::Args, Debug, Clone)]
pub struct FakeApiArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Share of requests answered 503 (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests answered 429 with Retry-After (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Retry-After of throttled answers, in seconds.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
    /// Added latency per request.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
}

impl Default for FakeApiArgs {
    /// No faults, on any free loopback port (what tests and the demo want; the CLI default port is 8080).
    fn default() -> Self {
        FakeApiArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            error_rate: 0.0,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            latency: Duration::ZERO,
        }
    }
}

/// Fault injection, changeable at runtime from any thread. Faults are checked before validation, in this order:
/// down, latency, forced status, throttling, server errors.
#[derive(Debug)]
pub struct Faults {
    /// `f64` bits.
    error_rate: AtomicU64,
    /// `f64` bits.
    throttle_rate: AtomicU64,
    retry_after_secs: AtomicU64,
    latency_nanos: AtomicU64,
    /// 0 = none.
    status_override: AtomicU32,
    /// The wanted state of the listener; the server thread follows it.
    down: watch::Sender<bool>,
    /// What the server thread has actually done, so that [`Faults::set_down`] returns only once connects are
    /// refused (or accepted again) and a test can rely on it at once.
    listener: Mutex<ListenerState>,
    listener_changed: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct ListenerState {
    listening: bool,
    stopped: bool,
}

impl Faults {
    fn new(args: &FakeApiArgs) -> Faults {
        let faults = Faults {
            error_rate: AtomicU64::new(0),
            throttle_rate: AtomicU64::new(0),
            retry_after_secs: AtomicU64::new(args.retry_after_secs),
            latency_nanos: AtomicU64::new(0),
            status_override: AtomicU32::new(0),
            down: watch::Sender::new(false),
            // `start` binds before the server thread runs: connects already succeed.
            listener: Mutex::new(ListenerState {
                listening: true,
                stopped: false,
            }),
            listener_changed: Condvar::new(),
        };
        faults.set_error_rate(args.error_rate);
        faults.set_throttle_rate(args.throttle_rate);
        faults.set_latency(args.latency);
        faults
    }

    pub fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::Relaxed))
    }

    /// Share of requests answered 503, clamped to 0..=1.
    pub fn set_error_rate(&self, rate: f64) {
        self.error_rate
            .store(clamp_rate(rate).to_bits(), Ordering::Relaxed);
    }

    pub fn throttle_rate(&self) -> f64 {
        f64::from_bits(self.throttle_rate.load(Ordering::Relaxed))
    }

    /// Share of requests answered 429 with `Retry-After`, clamped to 0..=1.
    pub fn set_throttle_rate(&self, rate: f64) {
        self.throttle_rate
            .store(clamp_rate(rate).to_bits(), Ordering::Relaxed);
    }

    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_secs.load(Ordering::Relaxed)
    }

    pub fn set_retry_after_secs(&self, secs: u64) {
        self.retry_after_secs.store(secs, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    /// Added before every answer of the API endpoints (not of `/_received`).
    pub fn set_latency(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(nanos, Ordering::Relaxed);
    }

    pub fn status_override(&self) -> Option<u16> {
        match self.status_override.load(Ordering::Relaxed) {
            0 => None,
            code => u16::try_from(code).ok(),
        }
    }

    /// Answer every API request with this status (an invalid code answers 500); `None` to stop.
    pub fn set_status_override(&self, status: Option<u16>) {
        self.status_override
            .store(status.map_or(0, u32::from), Ordering::Relaxed);
    }

    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// `true`: an outage — the server stops listening, so connects are refused, and closes its open connections.
    /// `false`: it listens again on the same port. Returns once the server has done so (it waits at most 5 s,
    /// briefly blocking the calling thread; the server runs on a thread of its own).
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
        let state = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, timeout) = self
            .listener_changed
            .wait_timeout_while(state, SET_DOWN_WAIT, |s| !s.stopped && s.listening == down)
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() && !state.stopped {
            tracing::warn!(down, "fake API did not follow the outage switch in time");
        }
    }

    /// No faults at all (and up again).
    pub fn clear(&self) {
        self.set_error_rate(0.0);
        self.set_throttle_rate(0.0);
        self.set_latency(Duration::ZERO);
        self.set_status_override(None);
        if self.is_down() {
            self.set_down(false);
        }
    }

    fn set_listener(&self, update: impl FnOnce(&mut ListenerState)) {
        let mut state = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut state);
        self.listener_changed.notify_all();
    }
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// What the fake API received. `requests = accepted + duplicates + rejected + faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// Every request to the API endpoints, faults included.
    pub requests: u64,
    /// Valid posts with an idempotency key / instanceID not seen before.
    pub accepted: u64,
    /// Valid posts repeating an idempotency key / instanceID: answered as success, applied once.
    pub duplicates: u64,
    /// Invalid posts (400, 401, 404, 405).
    pub rejected: u64,
    /// Requests answered by fault injection.
    pub faults: u64,
    /// Accepted changes left out of `changes` because it was full.
    pub changes_not_kept: u64,
    /// One entry per accepted idempotency key / instanceID, in arrival order.
    pub changes: Vec<ReceivedChange>,
}

/// One accepted change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedChange {
    /// Webhook `Idempotency-Key` (lower-case hyphenated UUID) or CommCare `instanceID`.
    pub idempotency_key: String,
    /// `new`, `changed` or `removed`.
    pub kind: String,
    /// Webhook: the `key` values, `PIDPATIENTKEY` and `OBRACCESSIONNUM` first, then any others. CommCare: the
    /// `patient_key` and `accession_number` case properties.
    pub key: Vec<String>,
    /// Webhook `version`; CommCare: a `sluice_version` (or `event_version`, `version`) element, else 0.
    pub version: i64,
    /// CommCare project space; `None` for webhook posts.
    pub domain: Option<String>,
    /// Request path, telling apart several sinks pointed at one fake.
    pub path: String,
}

impl Received {
    fn clone_counts(&self) -> Received {
        Received {
            requests: self.requests,
            accepted: self.accepted,
            duplicates: self.duplicates,
            rejected: self.rejected,
            faults: self.faults,
            changes_not_kept: self.changes_not_kept,
            changes: Vec::new(),
        }
    }

    /// How many changes (same path, key and version) were accepted under more than one idempotency key, i.e.
    /// applied twice downstream. 0 when delivery kept its at-most-once promise.
    pub fn changes_applied_twice(&self) -> usize {
        let mut keys_per_change: HashMap<(&str, &[String], i64), usize> = HashMap::new();
        for c in &self.changes {
            *keys_per_change
                .entry((c.path.as_str(), c.key.as_slice(), c.version))
                .or_default() += 1;
        }
        keys_per_change.values().filter(|&&n| n > 1).count()
    }
}

/// Everything the handlers and the server thread share.
struct Shared {
    faults: Arc<Faults>,
    ledger: Mutex<Ledger>,
    /// Per server, so that fault draws of parallel fakes never interfere.
    rng: Mutex<SmallRng>,
}

#[derive(Default)]
struct Ledger {
    received: Received,
    /// (scope, id) of every accepted post; the scope is the webhook path or the CommCare domain.
    seen: HashSet<(u64, u128)>,
}

/// A valid post, before duplicate detection.
struct Change {
    scope: String,
    id: u128,
    change: ReceivedChange,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn draw(&self, rate: f64) -> bool {
        rate > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .random::<f64>()
                < rate
    }

    /// Records a valid post; `true` when it repeats one already accepted.
    fn record(&self, c: Change) -> bool {
        let scope = xxhash_rust::xxh3::xxh3_64(c.scope.as_bytes());
        let mut ledger = self.ledger();
        if !ledger.seen.insert((scope, c.id)) {
            ledger.received.duplicates += 1;
            return true;
        }
        let received = &mut ledger.received;
        received.accepted += 1;
        if received.changes.len() < MAX_KEPT_CHANGES {
            received.changes.push(c.change);
        } else {
            received.changes_not_kept += 1;
        }
        false
    }

    /// The fault answer for this request, if any.
    async fn injected_fault(&self) -> Option<Response> {
        let faults = &self.faults;
        if faults.is_down() {
            // Accepted just before the outage began; its connection is being closed.
            return Some(plain(StatusCode::SERVICE_UNAVAILABLE, "down"));
        }
        let latency = faults.latency();
        if !latency.is_zero() {
            let mut down = faults.down.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(latency) => {}
                _ = down.wait_for(|d| *d) => {}
            }
            if faults.is_down() {
                return Some(plain(StatusCode::SERVICE_UNAVAILABLE, "down"));
            }
        }
        if let Some(code) = faults.status_override() {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut answer = plain(status, "injected status");
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                answer.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(faults.retry_after_secs()),
                );
            }
            return Some(answer);
        }
        if self.draw(faults.throttle_rate()) {
            let mut answer = plain(StatusCode::TOO_MANY_REQUESTS, "slow down");
            answer.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(faults.retry_after_secs()),
            );
            return Some(answer);
        }
        if self.draw(faults.error_rate()) {
            return Some(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "injected server error",
            ));
        }
        None
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// Why a post was turned down. The text names the problem and never echoes a value (PHI).
struct Rejection {
    status: StatusCode,
    reason: String,
}

fn bad(reason: impl Into<String>) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        reason: reason.into(),
    }
}

/// Which fake a request path addresses.
enum Endpoint {
    Webhook,
    CommCare { domain: String },
}

impl Endpoint {
    fn of(path: &str) -> Result<Endpoint, Rejection> {
        let Some(rest) = path.strip_prefix("/a/") else {
            return Ok(Endpoint::Webhook);
        };
        let mut segments = rest.split('/');
        match (segments.next(), segments.next()) {
            (Some(domain), Some("receiver")) if !domain.is_empty() => Ok(Endpoint::CommCare {
                domain: domain.to_owned(),
            }),
            _ => Err(Rejection {
                status: StatusCode::NOT_FOUND,
                reason: "CommCare paths are /a/{domain}/receiver/".into(),
            }),
        }
    }
}

/// Every API request: faults first, then validation, then duplicate detection.
async fn api(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.ledger().received.requests += 1;
    if let Some(answer) = shared.injected_fault().await {
        shared.ledger().received.faults += 1;
        return answer;
    }
    let path = uri.path();
    let endpoint = match Endpoint::of(path) {
        Ok(e) => e,
        Err(r) => return reject(&shared, r, false),
    };
    let is_commcare = matches!(endpoint, Endpoint::CommCare { .. });
    if method != Method::POST {
        let mut answer = reject(
            &shared,
            Rejection {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: "only POST is accepted".into(),
            },
            is_commcare,
        );
        answer
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return answer;
    }
    match endpoint {
        Endpoint::Webhook => match validate_webhook(path, &headers, &body) {
            Ok(change) => {
                let duplicate = shared.record(change);
                let status = if duplicate { "duplicate" } else { "ok" };
                (
                    StatusCode::OK,
                    Json(serde_json::json!({ "status": status })),
                )
                    .into_response()
            }
            Err(r) => reject(&shared, r, false),
        },
        Endpoint::CommCare { domain } => match validate_commcare(path, domain, &headers, &body) {
            Ok(change) => {
                // CommCare answers a re-sent instanceID like a new form.
                shared.record(change);
                (
                    StatusCode::CREATED,
                    [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                    SUBMIT_SUCCESS,
                )
                    .into_response()
            }
            Err(r) => reject(&shared, r, true),
        },
    }
}

fn reject(shared: &Shared, r: Rejection, commcare: bool) -> Response {
    shared.ledger().received.rejected += 1;
    tracing::debug!(status = r.status.as_u16(), reason = %r.reason, "fake API rejected a post");
    if commcare {
        let body = format!(
            "<OpenRosaResponse xmlns=\"http://openrosa.org/http/response\">\
             <message nature=\"processing_failure\">{}</message></OpenRosaResponse>",
            xml_escape(&r.reason)
        );
        (
            r.status,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            body,
        )
            .into_response()
    } else {
        (
            r.status,
            Json(serde_json::json!({ "status": "rejected", "error": r.reason })),
        )
            .into_response()
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Whether the `Content-Type` media type (parameters ignored) is one of `accepted`.
fn check_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), Rejection> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match media_type {
        Some(t) if accepted.iter().any(|a| t.eq_ignore_ascii_case(a)) => Ok(()),
        Some(_) => Err(bad(format!(
            "Content-Type must be {}",
            accepted.join(" or ")
        ))),
        None => Err(bad("missing Content-Type header")),
    }
}

/// SPEC §5.1.
fn validate_webhook(path: &str, headers: &HeaderMap, body: &[u8]) -> Result<Change, Rejection> {
    check_content_type(headers, &["application/json"])?;
    let header_key = headers
        .get("idempotency-key")
        .ok_or_else(|| bad("missing Idempotency-Key header"))?;
    let idempotency_key = header_key
        .to_str()
        .ok()
        .and_then(|k| Uuid::parse_str(k.trim()).ok())
        .ok_or_else(|| bad("Idempotency-Key header is not a UUID"))?;
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "body is not valid JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    let obj = doc
        .as_object()
        .ok_or_else(|| bad("body is not a JSON object"))?;
    let text = |field: &str| -> Result<&str, Rejection> {
        match obj.get(field) {
            None => Err(bad(format!("field `{field}` is missing"))),
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.as_str()),
            Some(_) => Err(bad(format!("field `{field}` must be a non-empty string"))),
        }
    };
    let event_id =
        Uuid::parse_str(text("event_id")?).map_err(|_| bad("field `event_id` is not a UUID"))?;
    if event_id != idempotency_key {
        return Err(bad("Idempotency-Key header differs from field `event_id`"));
    }
    text("source")?;
    let kind = text("kind")?;
    if !matches!(kind, "new" | "changed" | "removed") {
        return Err(bad("field `kind` must be new, changed or removed"));
    }
    let key = webhook_key(obj.get("key"))?;
    let version = match obj.get("version") {
        None => return Err(bad("field `version` is missing")),
        Some(v) => v
            .as_i64()
            .filter(|&v| v >= 1)
            .ok_or_else(|| bad("field `version` must be an integer >= 1"))?,
    };
    text("file")?;
    text("observed_at")?;
    match obj.get("record") {
        Some(serde_json::Value::Object(_)) => {}
        Some(serde_json::Value::Null) if kind == "removed" => {}
        None => return Err(bad("field `record` is missing")),
        Some(serde_json::Value::Null) => {
            return Err(bad("field `record` may be null only when kind is removed"))
        }
        Some(_) => return Err(bad("field `record` must be an object")),
    }
    Ok(Change {
        scope: format!("webhook:{path}"),
        id: idempotency_key.as_u128(),
        change: ReceivedChange {
            idempotency_key: idempotency_key.to_string(),
            kind: kind.to_owned(),
            key,
            version,
            domain: None,
            path: path.to_owned(),
        },
    })
}

/// The values of the webhook `key` object: the ECLRS key columns first, then any others.
fn webhook_key(key: Option<&serde_json::Value>) -> Result<Vec<String>, Rejection> {
    let key = match key {
        None => return Err(bad("field `key` is missing")),
        Some(serde_json::Value::Object(k)) if !k.is_empty() => k,
        Some(_) => return Err(bad("field `key` must be a non-empty object")),
    };
    const FIRST: [&str; 2] = ["PIDPATIENTKEY", "OBRACCESSIONNUM"];
    let ordered = FIRST.iter().filter_map(|&name| key.get(name)).chain(
        key.iter()
            .filter(|(k, _)| !FIRST.contains(&k.as_str()))
            .map(|(_, v)| v),
    );
    ordered
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            _ => Err(bad("values of field `key` must be strings")),
        })
        .collect()
}

/// Whether `Authorization` is `ApiKey <user>:<key>`; CommCare answers 401 otherwise.
fn check_api_key(headers: &HeaderMap) -> Result<(), Rejection> {
    let unauthorized = |reason: &str| Rejection {
        status: StatusCode::UNAUTHORIZED,
        reason: reason.into(),
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization header"))?;
    let credentials = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("ApiKey "))
        .and_then(|c| c.trim().split_once(':'));
    match credentials {
        Some((user, key)) if !user.is_empty() && !key.is_empty() => Ok(()),
        _ => Err(unauthorized(
            "Authorization header must be `ApiKey <user>:<key>`",
        )),
    }
}

/// SPEC §5.2: one OpenRosa form with a meta `instanceID` and case XML v2 blocks for the patient and the lab
/// result (only one for a removal).
fn validate_commcare(
    path: &str,
    domain: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Change, Rejection> {
    check_api_key(headers)?;
    check_content_type(headers, &["text/xml", "application/xml"])?;
    let text = std::str::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?;
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| bad(format!("body is not well-formed XML (at {})", e.pos())))?;
    let named = |name: &'static str| {
        doc.descendants()
            .filter(move |n| n.is_element() && n.tag_name().name() == name)
    };
    let instance_id = named("meta")
        .flat_map(|meta| meta.children())
        .find(|n| n.is_element() && n.tag_name().name() == "instanceID")
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad("form has no meta instanceID"))?
        .to_owned();

    let cases: Vec<roxmltree::Node> = named("case")
        .filter(|c| !c.ancestors().skip(1).any(|a| a.tag_name().name() == "case"))
        .collect();
    if cases
        .iter()
        .any(|c| c.tag_name().namespace() != Some(CASE_XML_V2))
    {
        return Err(bad(format!(
            "case blocks must be in the {CASE_XML_V2} namespace"
        )));
    }
    let mut case_ids = Vec::with_capacity(cases.len());
    for case in &cases {
        match case.attribute("case_id").map(str::trim) {
            Some(id) if !id.is_empty() => case_ids.push(id),
            _ => return Err(bad("a case block has no case_id")),
        }
    }
    if case_ids.len() == 2 && case_ids[0] == case_ids[1] {
        return Err(bad("the two case blocks have the same case_id"));
    }
    let has_child = |case: &roxmltree::Node, name: &str| {
        case.children()
            .any(|n| n.is_element() && n.tag_name().name() == name)
    };

    let kind = match first_text(&doc, &KIND_ELEMENTS) {
        Some(k @ ("new" | "changed" | "removed")) => k.to_owned(),
        Some(_) => return Err(bad("the kind element must be new, changed or removed")),
        None if cases.iter().any(|c| has_child(c, "close")) => "removed".into(),
        None if !cases.is_empty() && cases.iter().all(|c| has_child(c, "create")) => "new".into(),
        None => "changed".into(),
    };
    let version = match first_text(&doc, &VERSION_ELEMENTS) {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|&v| v >= 1)
            .ok_or_else(|| bad("the version element must be an integer >= 1"))?,
    };
    match (kind.as_str(), cases.len()) {
        (_, 2) | ("removed", 1) => {}
        ("removed", n) => {
            return Err(bad(format!(
                "a removal needs one or two case blocks, found {n}"
            )))
        }
        (_, n) => {
            return Err(bad(format!(
                "expected two case blocks (patient and lab_result), found {n}"
            )))
        }
    }

    let mut patient_key: Option<&str> = None;
    let mut accession_number: Option<&str> = None;
    for case in &cases {
        let pk = case_property(case, "patient_key");
        if let (Some(a), Some(b)) = (patient_key, pk) {
            if a != b {
                return Err(bad("the case blocks disagree on patient_key"));
            }
        }
        patient_key = patient_key.or(pk);
        if let Some(acc) = case_property(case, "accession_number") {
            accession_number = Some(acc);
            if let (Some(ext), Some(pk)) = (case_property(case, "external_id"), pk) {
                let expected = format!("{pk}#{acc}");
                if ext != expected {
                    return Err(bad("external_id is not patient_key#accession_number"));
                }
            }
        }
    }
    let patient_key = patient_key.ok_or_else(|| bad("no case block carries patient_key"))?;
    let key = std::iter::once(patient_key)
        .chain(accession_number)
        .map(str::to_owned)
        .collect();

    let id = Uuid::parse_str(&instance_id)
        .map(|u| u.as_u128())
        .unwrap_or_else(|_| xxhash_rust::xxh3::xxh3_128(instance_id.as_bytes()));
    Ok(Change {
        scope: format!("commcare:{domain}"),
        id,
        change: ReceivedChange {
            idempotency_key: instance_id,
            kind,
            key,
            version,
            domain: Some(domain),
            path: path.to_owned(),
        },
    })
}

/// A case property from the case block's `update`, when non-empty.
fn case_property<'a>(case: &roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    case.children()
        .filter(|n| n.is_element() && n.tag_name().name() == "update")
        .flat_map(|u| u.children())
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The trimmed text of the first element named like one of `names` (in that order of preference).
fn first_text<'a>(doc: &'a roxmltree::Document, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|&name| {
        doc.descendants()
            .find(|n| n.is_element() && n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

async fn received(State(shared): State<Arc<Shared>>) -> Json<Received> {
    Json(shared.ledger().received.clone())
}

async fn reset(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    *shared.ledger() = Ledger::default();
    Json(serde_json::json!({ "status": "reset" }))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_received", get(received))
        .route("/_reset", post(reset))
        .fallback(api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// A running fake API; stops on [`FakeApi::stop`] or drop.
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    /// Binds now (port 0 allowed) and serves on a thread of its own with its own tokio runtime, so it can be
    /// called from any context (an actix System, a `#[tokio::test]`, plain code).
    pub fn start(args: FakeApiArgs) -> io::Result<FakeApi> {
        for (name, rate) in [
            ("error_rate", args.error_rate),
            ("throttle_rate", args.throttle_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} must be between 0 and 1"),
                ));
            }
        }
        let first = bind(args.listen)?;
        let addr = first.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            faults: Arc::new(Faults::new(&args)),
            ledger: Mutex::new(Ledger::default()),
            rng: Mutex::new(SmallRng::seed_from_u64(Uuid::new_v4().as_u64_pair().0)),
        });
        let (stop, stop_rx) = watch::channel(false);
        let server = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-fake-api".into())
            .spawn(move || {
                runtime.block_on(supervise(first, addr, server.clone(), stop_rx));
                // Dropping the runtime ends every connection still open.
                drop(runtime);
                server.faults.set_listener(|s| {
                    s.listening = false;
                    s.stopped = true;
                });
            })?;
        tracing::debug!(%addr, "fake API listening");
        Ok(FakeApi {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the CommCare `base_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/records`: a webhook `url`.
    pub fn webhook_url(&self) -> String {
        format!("{}/records", self.url())
    }

    pub fn faults(&self) -> Arc<Faults> {
        self.shared.faults.clone()
    }

    /// A snapshot of what was received so far.
    pub fn received(&self) -> Received {
        self.shared.ledger().received.clone()
    }

    /// The counters only (`changes` left empty): cheap enough to poll.
    pub fn counts(&self) -> Received {
        self.shared.ledger().received.clone_counts()
    }

    /// Forgets everything received (as `POST /_reset`).
    pub fn reset(&self) {
        *self.shared.ledger() = Ledger::default();
    }

    pub fn stop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    // std sets SO_REUSEADDR on Unix, so the port can be taken again right after an outage.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves while up, stops listening while down, until stopped. Each listening period is a generation: when it
/// ends, its listener is dropped (connects are refused) and its connections are closed.
async fn supervise(
    first: std::net::TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(shared.clone());
    let faults = &shared.faults;
    let mut down = faults.down.subscribe();
    let mut bound = Some(first);
    loop {
        if *stop.borrow() {
            break;
        }
        if *down.borrow_and_update() {
            bound = None;
            faults.set_listener(|s| s.listening = false);
            tokio::select! {
                _ = down.wait_for(|d| !*d) => continue,
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let std_listener = match bound.take() {
            Some(l) => l,
            None => match rebind(addr, &mut stop, &mut down).await {
                Some(l) => l,
                None => continue,
            },
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "fake API cannot listen");
                tokio::time::sleep(REBIND_PAUSE).await;
                continue;
            }
        };
        faults.set_listener(|s| s.listening = true);
        let (generation, generation_rx) = watch::channel(());
        let serve = axum::serve(
            Connections {
                listener,
                generation: generation_rx,
            },
            app.clone(),
        )
        .into_future();
        tokio::select! {
            _ = serve => {}
            _ = down.wait_for(|d| *d) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        // The listener went with `serve`; this closes the connections it accepted.
        drop(generation);
        faults.set_listener(|s| s.listening = false);
    }
}

/// Takes the same port again after an outage; `None` when stopped or down again meanwhile.
async fn rebind(
    addr: SocketAddr,
    stop: &mut watch::Receiver<bool>,
    down: &mut watch::Receiver<bool>,
) -> Option<std::net::TcpListener> {
    let mut warned = false;
    loop {
        match bind(addr) {
            Ok(l) => return Some(l),
            Err(e) if !warned => {
                tracing::warn!(%addr, error = %e, "fake API cannot listen again yet; retrying");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(REBIND_PAUSE) => {}
            _ = stop.wait_for(|s| *s) => return None,
            _ = down.wait_for(|d| *d) => return None,
        }
    }
}

/// The listener of one generation: hands out connections that close when the generation ends.
struct Connections {
    listener: tokio::net::TcpListener,
    generation: watch::Receiver<()>,
}

impl axum::serve::Listener for Connections {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (Connection::new(stream, self.generation.clone()), peer);
                }
                // Per-connection failures (reset before accept) need no pause; running out of descriptors does.
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionAborted
                        || e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => {
                    tracing::warn!(error = %e, "fake API accept failed");
                    tokio::time::sleep(REBIND_PAUSE).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An accepted connection that fails every read and write once its generation has ended, so that an outage
/// closes keep-alive connections at once instead of serving on them.
struct Connection {
    stream: TcpStream,
    /// Completes when the generation's sender is dropped.
    ended: Pin<Box<dyn Future<Output = ()> + Send>>,
    is_ended: bool,
}

impl Connection {
    fn new(stream: TcpStream, mut generation: watch::Receiver<()>) -> Connection {
        Connection {
            stream,
            ended: Box::pin(async move { while generation.changed().await.is_ok() {} }),
            is_ended: false,
        }
    }

    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_ended && self.ended.as_mut().poll(cx).is_ready() {
            self.is_ended = true;
        }
        self.is_ended
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "fake API is down")
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_ended(cx) {
            return Poll::Ready(Err(gone()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_ended(cx) {
            return Poll::Ready(Err(gone()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_ended(cx) {
            return Poll::Ready(Err(gone()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_ended(cx) {
            return Poll::Ready(Err(gone()));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// `sluice fake-api`: serves until SIGINT or SIGTERM, with a summary line every 10 s (counts only).
pub async fn serve_forever(args: FakeApiArgs) -> anyhow::Result<()> {
    let listen = args.listen;
    let api = FakeApi::start(args.clone())
        .with_context(|| format!("cannot start the fake API on {listen}"))?;
    tracing::info!(
        addr = %api.addr(),
        error_rate = args.error_rate,
        throttle_rate = args.throttle_rate,
        latency = %humantime::format_duration(args.latency),
        "fake contact-tracing API listening: webhook {}/records, CommCare {}/a/<domain>/receiver/",
        api.url(),
        api.url(),
    );
    let mut summary = tokio::time::interval(Duration::from_secs(10));
    summary.tick().await;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = summary.tick() => log_summary(&api.counts()),
            signal = &mut shutdown => {
                signal.context("cannot listen for shutdown signals")?;
                break;
            }
        }
    }
    let counts = api.counts();
    // Stopping joins the server thread: keep that off the async worker.
    tokio::task::spawn_blocking(move || drop(api))
        .await
        .context("fake API did not stop")?;
    log_summary(&counts);
    Ok(())
}

fn log_summary(r: &Received) {
    tracing::info!(
        requests = r.requests,
        accepted = r.accepted,
        duplicates = r.duplicates,
        rejected = r.rejected,
        faults = r.faults,
        "fake API summary"
    );
}

async fn shutdown_signal() -> io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An answer read with a bare HTTP/1.1 client (`Connection: close`, body until EOF).
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    async fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<Answer> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let raw = String::from_utf8(raw).expect("utf-8 answer");
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no complete answer"))?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(Answer {
            status,
            headers,
            body: body.to_owned(),
        })
    }

    fn webhook_body(event_id: Uuid, kind: &str, version: i64) -> String {
        let record = if kind == "removed" {
            serde_json::Value::Null
        } else {
            serde_json::json!({ "PIDPATIENTKEY": "10000000000001", "RESULT": "POSITIVE" })
        };
        serde_json::json!({
            "event_id": event_id.to_string(),
            "source": "eclrs",
            "kind": kind,
            "key": { "OBRACCESSIONNUM": "ACC-1", "PIDPATIENTKEY": "10000000000001" },
            "version": version,
            "file": "eclrs_20240101.txt",
            "observed_at": "2024-01-01T00:00:00Z",
            "record": record,
        })
        .to_string()
    }

    async fn post_webhook(api: &FakeApi, key: &str, body: &str) -> Answer {
        send(
            api.addr(),
            "POST",
            "/records",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            body,
        )
        .await
        .expect("webhook post")
    }

    fn form(instance_id: &str) -> String {
        format!(
            r#"<?xml version="1.0" ?>
<data xmlns="http://sluice.example/lab_result" xmlns:jrm="http://dev.commcarehq.org/jr/xforms">
  <case xmlns="http://commcarehq.org/case/transaction/v2" case_id="patient-case" date_modified="2024-01-01T00:00:00Z" user_id="u">
    <create><case_type>patient</case_type><case_name>A B</case_name><owner_id>o</owner_id></create>
    <update><patient_key>10000000000001</patient_key></update>
  </case>
  <case xmlns="http://commcarehq.org/case/transaction/v2" case_id="lab-case" date_modified="2024-01-01T00:00:00Z" user_id="u">
    <create><case_type>lab_result</case_type><case_name>ACC-1</case_name><owner_id>o</owner_id></create>
    <update>
      <patient_key>10000000000001</patient_key><accession_number>ACC-1</accession_number>
      <external_id>10000000000001#ACC-1</external_id><sluice_kind>changed</sluice_kind><sluice_version>3</sluice_version>
    </update>
    <index><parent case_type="patient" relationship="extension">patient-case</parent></index>
  </case>
  <n0:meta xmlns:n0="http://openrosa.org/jr/xforms"><n0:instanceID>{instance_id}</n0:instanceID></n0:meta>
</data>"#
        )
    }

    async fn post_form(api: &FakeApi, body: &str, auth: Option<&str>) -> Answer {
        let mut headers = vec![("Content-Type", "text/xml")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        send(api.addr(), "POST", "/a/county-1/receiver/", &headers, body)
            .await
            .expect("form post")
    }

    const AUTH: &str = "ApiKey user@example.org:secret";

    #[tokio::test]
    async fn a_valid_webhook_post_is_accepted_and_listed() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let id = Uuid::new_v4();
        let answer = post_webhook(&api, &id.to_string(), &webhook_body(id, "changed", 2)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains(r#""status":"ok""#));
        let removed = Uuid::new_v4();
        let answer = post_webhook(
            &api,
            &removed.to_string(),
            &webhook_body(removed, "removed", 3),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);

        let received = api.received();
        assert_eq!((received.requests, received.accepted), (2, 2));
        assert_eq!(
            received.changes[0],
            ReceivedChange {
                idempotency_key: id.to_string(),
                kind: "changed".into(),
                key: vec!["10000000000001".into(), "ACC-1".into()],
                version: 2,
                domain: None,
                path: "/records".into(),
            }
        );
        assert_eq!(received.changes[1].kind, "removed");
        assert_eq!(received.changes_applied_twice(), 0);

        let listed = send(api.addr(), "GET", "/_received", &[], "")
            .await
            .unwrap();
        let listed: Received = serde_json::from_str(&listed.body).unwrap();
        assert_eq!(listed, received);
        send(api.addr(), "POST", "/_reset", &[], "").await.unwrap();
        assert_eq!(api.received(), Received::default());
    }

    #[tokio::test]
    async fn a_bad_idempotency_key_is_a_permanent_error_that_echoes_nothing() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let id = Uuid::new_v4();
        let body = webhook_body(id, "new", 1);
        let answer = post_webhook(&api, "not-a-uuid-10000000000001", &body).await;
        assert_eq!(answer.status, 400);
        assert!(answer.body.contains("Idempotency-Key"));
        assert!(!answer.body.contains("10000000000001"));
        let other = Uuid::new_v4().to_string();
        let answer = post_webhook(&api, &other, &body).await;
        assert_eq!(answer.status, 400);
        assert!(answer.body.contains("event_id"));
        assert!(!answer.body.contains(&other));
        let answer = post_webhook(&api, &id.to_string(), &webhook_body(id, "new", 0)).await;
        assert_eq!(answer.status, 400);
        assert!(answer.body.contains("version"));

        let received = api.received();
        assert_eq!((received.rejected, received.accepted), (3, 0));
        assert!(received.changes.is_empty());
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_succeeds_but_counts_as_a_duplicate() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let id = Uuid::new_v4();
        let body = webhook_body(id, "new", 1);
        for _ in 0..2 {
            let answer = post_webhook(&api, &id.to_string(), &body).await;
            assert_eq!(answer.status, 200);
        }
        let received = api.received();
        assert_eq!((received.accepted, received.duplicates), (1, 1));
        assert_eq!(received.changes.len(), 1);

        // The same change under a second key is what `changes_applied_twice` reveals.
        let again = Uuid::new_v4();
        post_webhook(&api, &again.to_string(), &webhook_body(again, "new", 1)).await;
        assert_eq!(api.received().changes_applied_twice(), 1);
    }

    #[tokio::test]
    async fn a_valid_commcare_form_gets_201_submit_success() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let instance = Uuid::new_v4().to_string();
        let answer = post_form(&api, &form(&instance), Some(AUTH)).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        assert!(answer.body.contains("submit_success"));
        let answer = post_form(&api, &form(&instance), Some(AUTH)).await;
        assert_eq!(answer.status, 201);

        let received = api.received();
        assert_eq!((received.accepted, received.duplicates), (1, 1));
        assert_eq!(
            received.changes,
            vec![ReceivedChange {
                idempotency_key: instance,
                kind: "changed".into(),
                key: vec!["10000000000001".into(), "ACC-1".into()],
                version: 3,
                domain: Some("county-1".into()),
                path: "/a/county-1/receiver/".into(),
            }]
        );
    }

    #[tokio::test]
    async fn a_removal_form_may_carry_one_case_block() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let body = r#"<data xmlns="http://sluice.example/lab_result">
  <case xmlns="http://commcarehq.org/case/transaction/v2" case_id="lab-case">
    <update><patient_key>10000000000001</patient_key><accession_number>ACC-1</accession_number></update>
    <close/>
  </case>
  <meta><instanceID>removal-1</instanceID></meta>
</data>"#;
        let answer = post_form(&api, body, Some(AUTH)).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let change = &api.received().changes[0];
        assert_eq!((change.kind.as_str(), change.version), ("removed", 0));
    }

    #[tokio::test]
    async fn malformed_or_unauthenticated_forms_are_rejected() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let instance = Uuid::new_v4().to_string();
        let answer = post_form(&api, "<data><case></data>", Some(AUTH)).await;
        assert_eq!(answer.status, 400);
        assert!(answer.body.contains("well-formed"));
        let answer = post_form(&api, &form(&instance), None).await;
        assert_eq!(answer.status, 401);
        let one_case =
            form(&instance).replacen("case_id=\"lab-case\"", "case_id=\"patient-case\"", 1);
        let answer = post_form(&api, &one_case, Some(AUTH)).await;
        assert_eq!(answer.status, 400);
        let no_meta = form("");
        let answer = post_form(&api, &no_meta, Some(AUTH)).await;
        assert_eq!(answer.status, 400);
        assert!(answer.body.contains("instanceID"));

        let received = api.received();
        assert_eq!((received.rejected, received.accepted), (4, 0));
    }

    #[tokio::test]
    async fn throttling_answers_429_with_retry_after() {
        let api = FakeApi::start(FakeApiArgs {
            throttle_rate: 1.0,
            retry_after_secs: 7,
            ..FakeApiArgs::default()
        })
        .unwrap();
        let id = Uuid::new_v4();
        let answer = post_webhook(&api, &id.to_string(), &webhook_body(id, "new", 1)).await;
        assert_eq!(answer.status, 429);
        assert_eq!(answer.header("retry-after"), Some("7"));
        let received = api.received();
        assert_eq!(
            (received.requests, received.faults, received.accepted),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn error_rate_answers_503_and_forced_status_wins() {
        let api = FakeApi::start(FakeApiArgs {
            error_rate: 1.0,
            ..FakeApiArgs::default()
        })
        .unwrap();
        let id = Uuid::new_v4();
        let body = webhook_body(id, "new", 1);
        assert_eq!(post_webhook(&api, &id.to_string(), &body).await.status, 503);
        api.faults().set_status_override(Some(422));
        assert_eq!(post_webhook(&api, &id.to_string(), &body).await.status, 422);
        api.faults().clear();
        assert_eq!(post_webhook(&api, &id.to_string(), &body).await.status, 200);
        let received = api.received();
        assert_eq!((received.faults, received.accepted), (2, 1));
    }

    #[tokio::test]
    async fn down_refuses_connections_then_accepts_again_on_the_same_port() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let addr = api.addr();
        let mut idle = TcpStream::connect(addr).await.unwrap();

        api.faults().set_down(true);
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        // An open connection is closed too.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("open connection closed");
        assert!(matches!(read, Ok(0) | Err(_)));

        api.faults().set_down(false);
        assert_eq!(api.addr(), addr);
        let id = Uuid::new_v4();
        let answer = post_webhook(&api, &id.to_string(), &webhook_body(id, "new", 1)).await;
        assert_eq!(answer.status, 200);
        assert_eq!(api.received().accepted, 1);
    }

    #[tokio::test]
    async fn an_outage_ends_requests_in_flight_and_keep_alive_connections() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let addr = api.addr();
        // A keep-alive connection that has served a request.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /_received HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        kept.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // A request waiting out a long latency.
        api.faults().set_latency(Duration::from_secs(30));
        let id = Uuid::new_v4();
        let body = webhook_body(id, "new", 1);
        let in_flight = tokio::spawn(async move {
            send(
                addr,
                "POST",
                "/records",
                &[
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", &id.to_string()),
                ],
                &body,
            )
            .await
            .map(|a| a.status)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;

        api.faults().set_down(true);
        let read = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
            .await
            .expect("keep-alive connection closed");
        assert!(matches!(read, Ok(0) | Err(_)));
        let answered = tokio::time::timeout(Duration::from_secs(5), in_flight)
            .await
            .expect("request in flight ended")
            .unwrap();
        // Either the connection broke or the outage answered 503 on its way down; never a success.
        assert!(matches!(answered, Err(_) | Ok(503)), "{answered:?}");
        assert_eq!(api.received().accepted, 0);
    }

    #[tokio::test]
    async fn latency_delays_every_answer() {
        let api = FakeApi::start(FakeApiArgs::default()).unwrap();
        api.faults().set_latency(Duration::from_millis(200));
        let id = Uuid::new_v4();
        let started = std::time::Instant::now();
        let answer = post_webhook(&api, &id.to_string(), &webhook_body(id, "new", 1)).await;
        assert_eq!(answer.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn starts_and_stops_outside_any_runtime() {
        let mut api = FakeApi::start(FakeApiArgs::default()).unwrap();
        let addr = api.addr();
        api.stop();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
