//! `GET /metrics`: every series in the Prometheus text format. Figures held by the pipeline (edge depths,
//! readiness) are read at the scrape, so they are as fresh as the scrape itself.

use super::AdminState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn metrics(
    State(s): State<AdminState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    crate::metrics::scrape_ready(s.health.is_ready());
    if let Some(p) = s.pipeline.get() {
        crate::metrics::scrape_edges(&p.edges);
    }
    ([(CONTENT_TYPE, TEXT_FORMAT)], crate::metrics::render())
}
