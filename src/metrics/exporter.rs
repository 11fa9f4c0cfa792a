//! The Prometheus recorder: installed once per process, with explicit buckets for every histogram.

use super::{
    Type, ACTORS, ACTOR_ERRORS, ACTOR_RECEIVED, ACTOR_RESTARTS, ACTOR_SENT, HISTOGRAMS, METRICS,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// How often histograms are drained into their buckets and idle data is cleaned up.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as the process's global recorder, once; later calls answer the same handle.
/// Tests start many pipelines in one process, and all of them share this recorder. `None` when another recorder
/// was installed first (then `/metrics` is empty and a warning says why).
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in HISTOGRAMS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)
                    .expect("every histogram has buckets");
            }
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics stays empty");
                    return None;
                }
            };
            describe();
            // The series exist from the start, at zero, so that rates and alerts see them before the first event.
            for actor in ACTORS {
                for name in [ACTOR_RECEIVED, ACTOR_SENT, ACTOR_ERRORS, ACTOR_RESTARTS] {
                    metrics::counter!(name, super::ACTOR => *actor).increment(0);
                }
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("sluice-metrics".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_PERIOD);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    for m in METRICS {
        match m.kind {
            Type::Counter => metrics::describe_counter!(m.name, m.help),
            Type::Gauge => metrics::describe_gauge!(m.name, m.help),
            Type::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Every series in the Prometheus text format.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}
