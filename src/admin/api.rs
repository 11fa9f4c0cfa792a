//! The admin JSON API (SPEC §6): the file ledger, the outbox, and an operator's levers on the sinks.
//!
//! Reads answer whoever reaches the admin address (loopback by default). Every call that changes something needs
//! `Authorization: Bearer <admin.token>`; with no token configured every such call is refused. Answers are JSON,
//! errors too (`{"error": "…"}`). No answer holds a field value of a record: keys appear only as short hashes,
//! payloads never. docs/ADMIN.md describes every route.

use super::{AdminState, PipelineView};
use crate::delivery::browse::{self, Filter};
use crate::delivery::{control, outbox};
use crate::delivery::{DeliveryActor, DeliveryDump, DumpDelivery, Pause, Resume, SetConcurrency};
use crate::error::DbError;
use crate::ledger::{self, FileRow};
use actix::Addr;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest page any list answers.
const MAX_PAGE: i64 = 1000;
/// The most attempts at once an operator may give a sink.
const MAX_CONCURRENCY: i64 = 1024;

#[derive(Clone)]
struct Api {
    admin: AdminState,
    /// Connections of the admin runtime's own, opened on first use: a connection is driven by the runtime that
    /// opened it, so the pipeline's pools (on other arbiters) are never borrowed here.
    pool: Arc<tokio::sync::OnceCell<Pool>>,
}

/// The JSON API's routes, merged into the admin router.
pub fn router(admin: AdminState) -> Router {
    Router::new()
        .route("/admin/files", get(files))
        .route("/admin/files/{id}", get(file))
        .route("/admin/deliveries", get(deliveries))
        .route("/admin/deliveries/summary", get(summary))
        .route("/admin/deliveries/retry", post(retry_all))
        .route("/admin/deliveries/{id}", get(delivery))
        .route("/admin/deliveries/{id}/retry", post(retry_one))
        .route("/admin/sinks", get(sinks))
        .route("/admin/sinks/{name}/pause", post(pause))
        .route("/admin/sinks/{name}/resume", post(resume))
        .route("/admin/sinks/{name}/concurrency", put(concurrency))
        .with_state(Api {
            admin,
            pool: Arc::default(),
        })
}

/// An error answer: a status and a message, as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let cause = std::error::Error::source(&e).map(|c| c.to_string());
        tracing::warn!(error = %e, cause, "admin API: database error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

type Answer<T = Value> = Result<Json<T>, ApiError>;

impl Api {
    fn pipeline(&self) -> Result<&PipelineView, ApiError> {
        self.admin.pipeline.get().ok_or_else(|| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is starting")
        })
    }

    async fn pool(&self) -> Result<&Pool, ApiError> {
        let url = &self.pipeline()?.db_url;
        Ok(self
            .pool
            .get_or_try_init(|| async { crate::db::pool(url, 2) })
            .await?)
    }

    async fn db(&self) -> Result<deadpool_postgres::Object, ApiError> {
        Ok(self.pool().await?.get().await.map_err(DbError::from)?)
    }

    fn sink(&self, name: &str) -> Result<&Addr<DeliveryActor>, ApiError> {
        self.pipeline()?
            .sinks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| addr)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no sink named {name:?}")))
    }
}

/// Someone whose bearer token matched `admin.token`: taking one makes a route a mutating one.
struct Operator {
    /// The caller's address, for the log.
    peer: String,
}

impl FromRequestParts<Api> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
        let token = &api.pipeline()?.token;
        let refuse = |why: &str| {
            tracing::warn!(%peer, method = %parts.method, path = %parts.uri.path(), why, "admin call refused");
            ApiError::new(StatusCode::UNAUTHORIZED, why)
        };
        if token.is_empty() {
            return Err(refuse(
                "admin.token is not set: every mutating call is refused until it is configured",
            ));
        }
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        match given {
            None => Err(refuse("an Authorization: Bearer token is required")),
            Some(t) if !same_secret(t, token.expose()) => {
                Err(refuse("the bearer token is not valid"))
            }
            Some(_) => Ok(Operator { peer }),
        }
    }
}

/// Compares two secrets in time independent of where they differ, and of their lengths: both are hashed first.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn page_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match limit.unwrap_or(default) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_PAGE}"),
        )),
    }
}

fn parse_id(what: &str, id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("a {what} id is a number")))
}

/// Fills in how far the file in flight has got, from the parser's live counters.
fn with_progress(mut f: FileRow, view: &PipelineView) -> FileRow {
    if f.status != "processing" {
        return f;
    }
    if let Some(p) = view.progress.view().filter(|p| p.file_id == f.id) {
        f.progress = Some(p.fraction.clamp(0.0, 1.0));
        let elapsed = f
            .started
            .and_then(|t| t.elapsed().ok())
            .map_or(0.0, |d| d.as_secs_f64());
        f.rows_per_second = (elapsed > 0.0).then(|| p.rows as f64 / elapsed);
    }
    f
}

#[derive(Deserialize)]
struct FilesQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

/// `GET /admin/files?limit=&before=`: the ledger, newest first.
async fn files(State(api): State<Api>, q: Result<Query<FilesQuery>, QueryRejection>) -> Answer {
    let Query(q) = q?;
    let limit = page_limit(q.limit, 50)?;
    let view = api.pipeline()?;
    let files: Vec<FileRow> = ledger::list(api.pool().await?, limit, q.before)
        .await?
        .into_iter()
        .map(|f| with_progress(f, view))
        .collect();
    let next_before = (files.len() as i64 == limit).then(|| files.last().map(|f| f.id));
    Ok(Json(
        json!({ "files": files, "next_before": next_before.flatten() }),
    ))
}

/// `GET /admin/files/{id}`.
async fn file(State(api): State<Api>, Path(id): Path<String>) -> Answer<FileRow> {
    let id = parse_id("file", &id)?;
    let view = api.pipeline()?;
    match ledger::get(api.pool().await?, id).await? {
        Some(f) => Ok(Json(with_progress(f, view))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no file with id {id}"),
        )),
    }
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    state: Option<String>,
    sink: Option<String>,
    limit: Option<i64>,
    after: Option<i64>,
}

fn known_state(state: Option<String>) -> Result<Option<String>, ApiError> {
    match state {
        Some(s) if !browse::STATES.contains(&s.as_str()) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("state is one of {}", browse::STATES.join(", ")),
        )),
        s => Ok(s),
    }
}

/// `GET /admin/deliveries?state=&sink=&limit=&after=`: the outbox by id, oldest first.
async fn deliveries(
    State(api): State<Api>,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Answer {
    let Query(q) = q?;
    let filter = Filter {
        state: known_state(q.state)?,
        sink: q.sink,
        after: q.after,
        limit: page_limit(q.limit, 100)?,
    };
    let c = api.db().await?;
    let rows = browse::list(&c, &filter).await?;
    let next_after = (rows.len() as i64 == filter.limit).then(|| rows.last().map(|d| d.id));
    Ok(Json(
        json!({ "deliveries": rows, "next_after": next_after.flatten() }),
    ))
}

/// `GET /admin/deliveries/{id}`: one delivery and its audited attempts.
async fn delivery(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    let id = parse_id("delivery", &id)?;
    let c = api.db().await?;
    match browse::get(&c, id).await? {
        Some((d, attempts)) => Ok(Json(json!({ "delivery": d, "attempts": attempts }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no delivery with id {id}"),
        )),
    }
}

/// `GET /admin/deliveries/summary`: counts by state for each sink.
async fn summary(State(api): State<Api>) -> Answer {
    let names: Vec<String> = api
        .pipeline()?
        .sinks
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let c = api.db().await?;
    let sinks = browse::summary(&c, &names).await?;
    Ok(Json(json!({ "sinks": sinks })))
}

/// `POST /admin/deliveries/{id}/retry`: a dead or cancelled delivery goes back to `available` with a fresh attempt
/// budget — or to `superseded` when a newer version of its record exists.
async fn retry_one(State(api): State<Api>, op: Operator, Path(id): Path<String>) -> Answer {
    let id = parse_id("delivery", &id)?;
    let c = api.db().await?;
    let done = outbox::redrive(&c, id).await?;
    if done.total() == 0 {
        return Err(match browse::state(&c, id).await? {
            None => ApiError::new(StatusCode::NOT_FOUND, format!("no delivery with id {id}")),
            Some(state) => ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "delivery {id} is {state}: only dead or cancelled deliveries can be retried"
                ),
            ),
        });
    }
    api.pipeline()?.outbox.notify();
    let state = if done.available > 0 {
        "available"
    } else {
        "superseded"
    };
    tracing::info!(peer = %op.peer, delivery = id, state, "admin: delivery retried");
    Ok(Json(json!({ "id": id, "state": state })))
}

#[derive(Deserialize)]
struct RetryAllQuery {
    state: Option<String>,
    sink: Option<String>,
}

/// `POST /admin/deliveries/retry?state=dead[&sink=]`: every dead delivery (of one sink, or of all).
async fn retry_all(
    State(api): State<Api>,
    op: Operator,
    q: Result<Query<RetryAllQuery>, QueryRejection>,
) -> Answer {
    let Query(q) = q?;
    if q.state.as_deref() != Some("dead") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "retry in bulk takes state=dead",
        ));
    }
    if let Some(sink) = &q.sink {
        api.sink(sink)?;
    }
    let c = api.db().await?;
    let done = outbox::redrive_dead(&c, q.sink.as_deref()).await?;
    api.pipeline()?.outbox.notify();
    tracing::info!(peer = %op.peer, sink = q.sink.as_deref().unwrap_or("*"),
        retried = done.available, superseded = done.superseded, "admin: dead deliveries retried");
    Ok(Json(
        json!({ "retried": done.available, "superseded": done.superseded }),
    ))
}

fn not_running(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the delivery actor of sink {name:?} is not running"),
    )
}

async fn dump(name: &str, addr: &Addr<DeliveryActor>) -> Result<DeliveryDump, ApiError> {
    addr.send(DumpDelivery).await.map_err(|_| not_running(name))
}

/// `GET /admin/sinks`: each sink's live settings and counters (paused, circuit, concurrency, rate limit).
async fn sinks(State(api): State<Api>) -> Answer {
    let mut out = Vec::new();
    for (name, addr) in &api.pipeline()?.sinks {
        out.push(dump(name, addr).await?);
    }
    Ok(Json(json!({ "sinks": out })))
}

/// `POST /admin/sinks/{name}/pause`: the sink stops claiming; its rows stay `available`. Recorded in
/// `sink_controls`, so a restart keeps it paused.
async fn pause(
    State(api): State<Api>,
    op: Operator,
    Path(name): Path<String>,
) -> Answer<DeliveryDump> {
    set_paused(&api, &op, &name, true).await
}

/// `POST /admin/sinks/{name}/resume`: also clears an automatic pause.
async fn resume(
    State(api): State<Api>,
    op: Operator,
    Path(name): Path<String>,
) -> Answer<DeliveryDump> {
    set_paused(&api, &op, &name, false).await
}

async fn set_paused(api: &Api, op: &Operator, name: &str, paused: bool) -> Answer<DeliveryDump> {
    let addr = api.sink(name)?;
    // Recorded first: if the database refuses, nothing changed.
    let c = api.db().await?;
    control::save_paused(&c, name, paused).await?;
    let sent = if paused {
        addr.send(Pause).await
    } else {
        addr.send(Resume).await
    };
    sent.map_err(|_| not_running(name))?;
    tracing::info!(peer = %op.peer, sink = name, paused, "admin: sink {}", if paused { "paused" } else { "resumed" });
    Ok(Json(dump(name, addr).await?))
}

#[derive(Deserialize)]
struct ConcurrencyBody {
    concurrency: i64,
}

/// `PUT /admin/sinks/{name}/concurrency` with `{"concurrency": N}`: attempts in flight at once, from the next round.
async fn concurrency(
    State(api): State<Api>,
    op: Operator,
    Path(name): Path<String>,
    body: Result<Json<ConcurrencyBody>, JsonRejection>,
) -> Answer<DeliveryDump> {
    let addr = api.sink(&name)?;
    let Json(body) = body?;
    if !(1..=MAX_CONCURRENCY).contains(&body.concurrency) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("concurrency must be between 1 and {MAX_CONCURRENCY}"),
        ));
    }
    addr.send(SetConcurrency(body.concurrency as usize))
        .await
        .map_err(|_| not_running(&name))?;
    tracing::info!(peer = %op.peer, sink = %name, concurrency = body.concurrency, "admin: sink concurrency set");
    Ok(Json(dump(&name, addr).await?))
}
