//! Metrics as an operator meets them: a real Prometheus scrapes a running sluice and evaluates the shipped alert
//! rules; promtool checks the files in `ops/`; `/metrics` carries no value of the snapshot it counted.

use crate::app::{assert_ledger, gen_args, spawn_app, Options, TestApp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// Installs the `prometheus` package when its binaries are missing and we are root, once per process.
fn ensure_prometheus() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let present = || Path::new(PROMETHEUS).exists() && Path::new(PROMTOOL).exists();
        if present() {
            return Ok(());
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(
                "prometheus and promtool not found; install the `prometheus` package (needs root)"
                    .into(),
            );
        }
        eprintln!("prometheus not found: installing the `prometheus` package");
        crate::harness::apt_install(&["--no-install-recommends", "prometheus"]);
        present().then_some(()).ok_or_else(|| {
            "`apt-get install prometheus` did not provide /usr/bin/prometheus".into()
        })
    });
    if let Err(e) = ready {
        panic!("{e}");
    }
}

fn ops(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops").join(file)
}

fn promtool(args: &[&str]) {
    ensure_prometheus();
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(ops(""))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_shipped_prometheus_config_and_alert_rules_pass_promtool() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    // The rules' own unit tests: each alert fires on the series that mean trouble, and not before its `for`.
    promtool(&["test", "rules", "alerts_test.yml"]);
}

/// A Prometheus server of the test's own, killed when dropped.
struct PrometheusServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl PrometheusServer {
    /// Scrapes `target` every second and evaluates `ops/alerts.yml` every second.
    async fn start(target: SocketAddr, dir: &Path) -> PrometheusServer {
        ensure_prometheus();
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules:?}\n\
                 scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{target}']\n",
                rules = ops("alerts.yml").display().to_string(),
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus starts");
        let server = PrometheusServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = reqwest::get(format!("{}/-/ready", server.url)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            server.check(Instant::now() < deadline, "prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts `ok`, showing Prometheus's log when it fails.
    fn check(&self, ok: bool, what: &str) {
        if !ok {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{what}; prometheus log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query).unwrap();
        let body: Value = reqwest::get(url)
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus answers JSON");
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// Runs an instant query until its result satisfies `done`; answers the result vector.
    async fn wait_for(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let data = self.api("/api/v1/query", &[("query", query)]).await;
            let result = data["result"].as_array().cloned().unwrap_or_default();
            if done(&result) {
                return result;
            }
            self.check(
                Instant::now() < deadline,
                &format!("`{query}` never gave the expected series; last: {result:?}"),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of one label across a query's result.
fn label_values(result: &[Value], label: &str) -> BTreeSet<String> {
    result
        .iter()
        .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
        .collect()
}

fn value_of(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a sample value")
}

fn strings(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// A running pipeline with its admin server, one snapshot ingested and delivered.
async fn ingested_app(seed: u64) -> (TestApp, PathBuf, sluice::gen::GroundTruth) {
    let t = spawn_app(Options {
        admin: true,
        ..Options::default()
    })
    .await;
    let (snapshot, truth) = t.generate(gen_args(&t.path("s0.TXT"), 2_000, seed, None));
    let file = t.ingest(&snapshot, "P_20260101_0000.TXT").await;
    assert_ledger(&file, &truth);
    t.wait_delivered().await;
    (t, snapshot, truth)
}

fn admin_addr(t: &TestApp) -> SocketAddr {
    t.app.as_ref().unwrap().admin.as_ref().unwrap().addr
}

#[actix_rt::test]
async fn prometheus_scrapes_sluices_series_and_evaluates_its_alert_rules() {
    let (mut t, _, truth) = ingested_app(91).await;
    let prometheus = PrometheusServer::start(admin_addr(&t), &t.path("prometheus")).await;
    use sluice::metrics as m;

    // Tests share one recorder per process, so counters hold other tests' rows too: at least this file's.
    let rows = prometheus
        .wait_for(r#"sluice_rows_total{job="sluice",source="eclrs"}"#, |r| {
            r.len() == m::OUTCOMES.len()
        })
        .await;
    assert_eq!(label_values(&rows, "outcome"), strings(m::OUTCOMES));
    let new = rows
        .iter()
        .find(|s| s["metric"]["outcome"] == "new")
        .unwrap();
    assert!(value_of(new) >= truth.counts.new as f64, "{new}");

    let edges = prometheus
        .wait_for("sluice_edge_depth", |r| r.len() == m::EDGES.len())
        .await;
    let edge_names: Vec<&str> = m::EDGES.iter().map(|(e, ..)| *e).collect();
    assert_eq!(label_values(&edges, "edge"), strings(&edge_names));
    let capacity = prometheus
        .wait_for(r#"sluice_edge_capacity{edge="parser_to_dedupe"}"#, |r| {
            r.len() == 1
        })
        .await;
    // Four messages per shard, three shards (the test's settings).
    assert_eq!(value_of(&capacity[0]), 12.0);

    // The outbox figures come from the periodic query: the sink's four states, nothing waiting once delivered.
    let states = prometheus
        .wait_for(r#"sluice_deliveries{sink="file"}"#, |r| {
            r.len() == m::DELIVERY_STATES.len()
        })
        .await;
    assert_eq!(label_values(&states, "state"), strings(m::DELIVERY_STATES));
    assert!(states.iter().all(|s| value_of(s) == 0.0), "{states:?}");
    prometheus
        .wait_for(
            r#"sluice_delivery_oldest_available_age_seconds{sink="file"} == 0"#,
            |r| r.len() == 1,
        )
        .await;

    let restarts = prometheus
        .wait_for("sluice_actor_restarts_total", |r| {
            r.len() == m::ACTORS.len()
        })
        .await;
    assert_eq!(label_values(&restarts, "actor"), strings(m::ACTORS));
    // One series each, once the file is ingested and delivered.
    for query in [
        r#"sluice_actor_messages_received_total{actor="writer"} > 0"#,
        r#"sluice_snapshot_duration_seconds_count{source="eclrs"} >= 1"#,
        r#"sluice_delivery_latency_seconds_bucket{sink="file",le="+Inf"} >= 1"#,
        r#"time() - sluice_snapshot_last_success_timestamp_seconds{source="eclrs"} < 600"#,
        "sluice_ready == 1",
    ] {
        prometheus.wait_for(query, |r| r.len() == 1).await;
    }

    // Every shipped rule evaluates against the real series without error, and none fires on a healthy pipeline.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let data = prometheus.api("/api/v1/rules", &[]).await;
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert!(
            rules.len() >= 7,
            "the shipped alert rules are loaded: {rules:?}"
        );
        let broken: Vec<&Value> = rules.iter().filter(|r| r["health"] == "err").collect();
        assert!(broken.is_empty(), "rules that fail to evaluate: {broken:?}");
        if rules.iter().all(|r| r["health"] == "ok") {
            let firing: Vec<&Value> = rules.iter().filter(|r| r["state"] == "firing").collect();
            assert!(
                firing.is_empty(),
                "alerts firing on a healthy pipeline: {firing:?}"
            );
            break;
        }
        prometheus.check(Instant::now() < deadline, "the rules were never evaluated");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every dashboard query is valid PromQL and finds sluice's series.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(ops("grafana/sluice.json")).unwrap())
            .unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(queries.len() > 20, "{} dashboard queries", queries.len());
    for q in queries {
        let q = q
            .replace("$__rate_interval", "1m")
            .replace("$source", ".*")
            .replace("$sink", ".*");
        prometheus.wait_for(&q, |r| !r.is_empty()).await;
    }
    drop(prometheus);
    t.stop().await;
}

#[actix_rt::test]
async fn metrics_carry_no_snapshot_value_and_every_histogram_has_its_buckets() {
    let (mut t, snapshot, truth) = ingested_app(92).await;
    let text = reqwest::get(format!("http://{}/metrics", admin_addr(&t)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let mut values = crate::app::phi_values(&snapshot, 50);
    values.extend(truth.new.iter().take(50).flatten().cloned());
    assert!(
        values.len() > 200,
        "enough values to look for: {}",
        values.len()
    );
    for v in &values {
        assert!(
            !text.contains(v.as_str()),
            "/metrics carries a snapshot value"
        );
    }

    assert!(
        !text.contains("quantile="),
        "a histogram without buckets is exported as a summary"
    );
    for (name, buckets) in sluice::metrics::HISTOGRAMS {
        let prefix = format!("{name}_bucket{{");
        let les: BTreeSet<String> = text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| {
                l.split("le=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_string)
            })
            .collect();
        let mut want: Vec<f64> = buckets.to_vec();
        let mut got: Vec<f64> = les
            .iter()
            .filter(|le| *le != "+Inf")
            .map(|le| le.parse().expect("a bucket bound"))
            .collect();
        want.sort_by(f64::total_cmp);
        got.sort_by(f64::total_cmp);
        assert_eq!(got, want, "{name}: buckets");
        assert!(les.contains("+Inf"), "{name}: +Inf bucket");
    }
    t.stop().await;
}
