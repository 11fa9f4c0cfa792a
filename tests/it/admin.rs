//! The admin JSON API and `sluice status` (SPEC §6), against the running pipeline on a real database.

use crate::app::{assert_ledger, gen_args, spawn_app, Options, TestApp};
use crate::delivery::answer_first;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "correct-horse-battery-staple";

fn with_admin(o: Options) -> Options {
    Options {
        admin: true,
        admin_token: TOKEN,
        ..o
    }
}

/// A webhook sink `hook` pointed at `server`, quick to retry, one attempt before dead.
fn hook(server: &MockServer) -> String {
    format!(
        "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/records\"\nconcurrency = 4\ntimeout = \"2s\"\n\
         backoff_base = \"20ms\"\nbackoff_cap = \"100ms\"\n",
        server.uri()
    )
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn of(t: &TestApp) -> Client {
        sluice::tls::install_crypto_provider();
        let addr = t.app.as_ref().unwrap().admin.as_ref().expect("admin").addr;
        Client {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// A mutating call with the given Authorization header (if any) and JSON body (if any).
    async fn call(
        &self,
        verb: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(verb.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn authed(&self, verb: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(verb, path, Some(&format!("Bearer {TOKEN}")), body)
            .await
    }
}

/// Every mutating route, with a body where it needs one.
fn mutating_calls() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("POST", "/admin/sinks/file/pause", None),
        ("POST", "/admin/sinks/file/resume", None),
        (
            "PUT",
            "/admin/sinks/file/concurrency",
            Some(json!({"concurrency": 3})),
        ),
        ("POST", "/admin/deliveries/1/retry", None),
        ("POST", "/admin/deliveries/retry?state=dead", None),
    ]
}

async fn live_sink(c: &Client, name: &str) -> Value {
    let (status, sinks) = c.get("/admin/sinks").await;
    assert_eq!(status, 200);
    sinks["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == name)
        .cloned()
        .expect("sink listed")
}

#[actix_rt::test]
async fn mutating_calls_without_the_right_token_are_refused_and_change_nothing() {
    let t = spawn_app(with_admin(Options::default())).await;
    let c = Client::of(&t);
    let before = live_sink(&c, "file").await;
    for (verb, path, body) in mutating_calls() {
        for auth in [
            None,
            Some("Bearer wrong-token"),
            Some("Bearer correct-horse-battery-stapl"),
            Some(&*format!("Basic {TOKEN}")),
            Some(TOKEN),
        ] {
            let (status, answer) = c.call(verb, path, auth, body.clone()).await;
            assert_eq!(status, 401, "{verb} {path} with {auth:?}: {answer}");
            assert!(answer["error"].is_string(), "{answer}");
        }
    }
    let after = live_sink(&c, "file").await;
    assert_eq!(
        (&after["paused"], &after["concurrency"]),
        (&json!(false), &before["concurrency"]),
        "nothing changed: {after}"
    );
    // The same calls with the token go through.
    let (status, answer) = c.authed("POST", "/admin/sinks/file/pause", None).await;
    assert_eq!((status, answer["paused"].as_bool()), (200, Some(true)));
}

#[actix_rt::test]
async fn with_no_token_configured_every_mutating_call_is_refused() {
    let t = spawn_app(Options {
        admin: true,
        ..Options::default()
    })
    .await;
    let c = Client::of(&t);
    for (verb, path, body) in mutating_calls() {
        for auth in [None, Some("Bearer "), Some("Bearer anything")] {
            let (status, answer) = c.call(verb, path, auth, body.clone()).await;
            assert_eq!(status, 401, "{verb} {path} with {auth:?}");
            assert!(
                answer["error"].as_str().unwrap().contains("admin.token"),
                "{answer}"
            );
        }
    }
    // Reads need no token.
    assert_eq!(c.get("/admin/files").await.0, 200);
    assert!(!live_sink(&c, "file").await["paused"].as_bool().unwrap());
}

#[actix_rt::test]
async fn a_dead_delivery_is_retried_through_the_api_and_completes() {
    let server = MockServer::start().await;
    answer_first(&server, ResponseTemplate::new(400), 3).await;
    let t = spawn_app(with_admin(Options {
        sinks: Some(hook(&server)),
        ..Options::default()
    }))
    .await;
    let c = Client::of(&t);
    t.ingest_rows("R_0000.TXT", 10_000_000_000_000, 3, "Detected")
        .await;
    t.wait_count("SELECT count(*) FROM deliveries WHERE state = 'dead'", 3)
        .await;
    let (status, dead) = c.get("/admin/deliveries?state=dead").await;
    assert_eq!(status, 200);
    let dead = dead["deliveries"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 3);
    assert!(dead
        .iter()
        .all(|d| d["last_status"] == 400 && d["attempts"] == 1 && d["sink"] == "hook"));

    // One goes back to available and completes now that the API answers 200.
    let first = dead[0]["id"].as_i64().unwrap();
    let (status, answer) = c
        .authed("POST", &format!("/admin/deliveries/{first}/retry"), None)
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"id": first, "state": "available"}))
    );
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        1,
    )
    .await;
    let (_, one) = c.get(&format!("/admin/deliveries/{first}")).await;
    assert_eq!(one["delivery"]["state"], "completed");
    let statuses: Vec<i64> = one["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![400, 200]);

    // A completed delivery cannot be retried; a missing one is not found.
    let (status, answer) = c
        .authed("POST", &format!("/admin/deliveries/{first}/retry"), None)
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("completed"));
    assert_eq!(
        c.authed("POST", "/admin/deliveries/999999/retry", None)
            .await
            .0,
        404
    );
    assert_eq!(
        c.authed("POST", "/admin/deliveries/retry?state=completed", None)
            .await
            .0,
        400
    );

    // The other two, all at once.
    let (status, answer) = c
        .authed("POST", "/admin/deliveries/retry?state=dead", None)
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"retried": 2, "superseded": 0}))
    );
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        3,
    )
    .await;
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
    let (_, summary) = c.get("/admin/deliveries/summary").await;
    let hook = &summary["sinks"][0];
    assert_eq!(
        (
            &hook["sink"],
            &hook["states"]["completed"],
            &hook["states"]["dead"]
        ),
        (&json!("hook"), &json!(3), &json!(0))
    );
}

/// Polls `/admin/sinks` until the sink's dump satisfies `ok`.
async fn wait_sink(c: &Client, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = live_sink(c, name).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "sink {name} is {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[actix_rt::test]
async fn a_paused_sink_attempts_nothing_even_after_a_restart_until_resumed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mut t = spawn_app(with_admin(Options {
        sinks: Some(hook(&server)),
        ..Options::default()
    }))
    .await;
    let c = Client::of(&t);
    let (status, answer) = c.authed("POST", "/admin/sinks/hook/pause", None).await;
    assert_eq!((status, answer["paused"].as_bool()), (200, Some(true)));
    assert_eq!(
        c.authed("POST", "/admin/sinks/nope/pause", None).await.0,
        404
    );
    t.ingest_rows("P_0000.TXT", 10_000_000_000_000, 5, "Detected")
        .await;
    // Several poll intervals pass: nothing is attempted, and the outbox shows why.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    let (_, waiting) = c.get("/admin/deliveries?state=available&sink=hook").await;
    assert_eq!(waiting["deliveries"].as_array().unwrap().len(), 5);

    // A restart keeps the operator's pause.
    t.restart().await;
    let c = Client::of(&t);
    wait_sink(&c, "hook", |s| s["paused"] == true).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.received_requests().await.unwrap().len(), 0);

    let (status, answer) = c.authed("POST", "/admin/sinks/hook/resume", None).await;
    assert_eq!((status, answer["paused"].as_bool()), (200, Some(false)));
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        5,
    )
    .await;
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

#[actix_rt::test]
async fn a_sinks_concurrency_is_changed_at_runtime_and_validated() {
    let t = spawn_app(with_admin(Options::default())).await;
    let c = Client::of(&t);
    let path = "/admin/sinks/file/concurrency";
    let (status, answer) = c.authed("PUT", path, Some(json!({"concurrency": 7}))).await;
    assert_eq!((status, answer["concurrency"].as_i64()), (200, Some(7)));
    let dump = t
        .delivery("file")
        .send(sluice::delivery::DumpDelivery)
        .await
        .unwrap();
    assert_eq!(dump.concurrency, 7);
    for bad in [
        json!({"concurrency": 0}),
        json!({"concurrency": -3}),
        json!({"threads": 2}),
    ] {
        let (status, answer) = c.authed("PUT", path, Some(bad.clone())).await;
        assert!((400..500).contains(&status), "{bad}: {status}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    assert_eq!(live_sink(&c, "file").await["concurrency"], 7);
    assert_eq!(
        c.authed(
            "PUT",
            "/admin/sinks/nope/concurrency",
            Some(json!({"concurrency": 2}))
        )
        .await
        .0,
        404
    );
}

#[actix_rt::test]
async fn the_files_route_shows_the_ledger_newest_first_with_balanced_counts() {
    let t = spawn_app(with_admin(Options::default())).await;
    let c = Client::of(&t);
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 2_000, 31, None));
    let (s1, truth1) = t.generate(gen_args(&t.path("s1.TXT"), 2_000, 32, Some(&s0)));
    let f0 = t.ingest(&s0, "A_0000.TXT").await;
    let f1 = t.ingest(&s1, "A_0030.TXT").await;

    let (status, all) = c.get("/admin/files").await;
    assert_eq!(status, 200);
    let files = all["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for (json, row, truth) in [(&files[0], &f1, &truth1), (&files[1], &f0, &truth0)] {
        let shown: sluice::ledger::FileRow =
            serde_json::from_value(json.clone()).expect("the SPEC §6 shape");
        assert_eq!(shown.id, row.id, "newest first");
        assert_ledger(&shown, truth);
        assert_eq!(shown.progress, Some(1.0));
        for key in [
            "id",
            "source",
            "name",
            "sha256",
            "status",
            "rows",
            "new",
            "changed",
            "unchanged",
            "duplicate",
            "conflict",
            "rejected",
            "removed",
            "progress",
            "started_at",
            "finished_at",
            "reason",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }
    let (status, one) = c.get(&format!("/admin/files/{}", f0.id)).await;
    assert_eq!((status, &one), (200, &files[1]));
    assert_eq!(c.get("/admin/files/424242").await.0, 404);
    assert_eq!(c.get("/admin/files/x").await.0, 400);

    // Paging: one at a time, then the one before it, then nothing.
    let (_, page) = c.get("/admin/files?limit=1").await;
    assert_eq!(page["files"][0]["id"], f1.id);
    assert_eq!(page["next_before"], f1.id);
    let (_, page) = c
        .get(&format!("/admin/files?limit=1&before={}", f1.id))
        .await;
    assert_eq!(page["files"][0]["id"], f0.id);
    let (_, page) = c.get(&format!("/admin/files?before={}", f0.id)).await;
    assert_eq!(page["files"], json!([]));
    assert_eq!(c.get("/admin/files?limit=0").await.0, 400);
}

#[actix_rt::test]
async fn deliveries_are_paged_by_id_filtered_by_state_and_hold_no_record_value() {
    let t = spawn_app(with_admin(Options::default())).await;
    let c = Client::of(&t);
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 250, 41, None));
    t.ingest(&s0, "D_0000.TXT").await;
    let delivered = t.wait_delivered().await;
    assert_eq!(delivered, truth0.counts.new as i64);

    // Every page in turn, by `next_after`, until it is null.
    let mut ids = Vec::new();
    let mut text = String::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/admin/deliveries?limit=60&after={a}"),
            None => "/admin/deliveries?limit=60".into(),
        };
        let (status, page) = c.get(&path).await;
        assert_eq!(status, 200);
        text.push_str(&page.to_string());
        let rows = page["deliveries"].as_array().unwrap();
        assert!(rows.len() <= 60);
        ids.extend(rows.iter().map(|d| d["id"].as_i64().unwrap()));
        match page["next_after"].as_i64() {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(ids.len() as i64, delivered);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");

    let (_, completed) = c.get("/admin/deliveries?state=completed&limit=1000").await;
    let completed = completed["deliveries"].as_array().unwrap();
    assert_eq!(completed.len() as i64, delivered);
    let d = &completed[0];
    assert_eq!(
        (&d["state"], &d["kind"], &d["sink"]),
        (&json!("completed"), &json!("new"), &json!("file"))
    );
    assert_eq!(d["key_hash"].as_str().unwrap().len(), 8);
    assert_eq!(
        c.get("/admin/deliveries?state=dead").await.1["deliveries"],
        json!([])
    );
    assert_eq!(
        c.get("/admin/deliveries?sink=other").await.1["deliveries"],
        json!([])
    );
    assert_eq!(c.get("/admin/deliveries?state=lost").await.0, 400);
    let (_, one) = c.get(&format!("/admin/deliveries/{}", ids[0])).await;
    text.push_str(&one.to_string());
    let (_, summary) = c.get("/admin/deliveries/summary").await;
    text.push_str(&summary.to_string());

    let values = crate::app::phi_values(&s0, 10);
    assert!(values.len() >= 40, "{} values", values.len());
    for v in values {
        assert!(!text.contains(&v), "a record value reached the admin API");
    }
}

async fn sluice_status(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("status")
        .args(args)
        .output()
        .await
        .expect("sluice runs")
}

#[actix_rt::test]
async fn sluice_status_prints_each_sources_last_snapshot_and_deliveries_by_state() {
    let t = spawn_app(with_admin(Options::default())).await;
    let c = Client::of(&t);
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 500, 51, None));
    let f0 = t.ingest(&s0, "S_0000.TXT").await;
    let delivered = t.wait_delivered().await;
    c.authed("POST", "/admin/sinks/file/pause", None).await;

    let out = sluice_status(&["--admin", &c.base]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k = &truth0.counts;
    for expected in [
        "Supervision tree".to_string(),
        "  root (supervisor): running, 0 restart(s)".to_string(),
        "    ingest (supervisor): running, 0 restart(s)".to_string(),
        "      writer.0 (writer): running, 0 restart(s)".to_string(),
        "      writer.1 (writer): running, 0 restart(s)".to_string(),
        "      watcher.eclrs (watcher): running, 0 restart(s)".to_string(),
        "      delivery.file (delivery): running, 0 restart(s)".to_string(),
        format!("S_0000.TXT #{}: done", f0.id),
        format!(
            "rows {}: new {} changed {} unchanged {} duplicate {} conflict {} rejected {} removed {}",
            truth0.rows, k.new, k.changed, k.unchanged, k.duplicate, k.conflict, k.rejected, k.removed
        ),
        format!("file: completed {delivered}"),
        "paused sinks: file".to_string(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} not in:\n{stdout}");
    }
}

#[actix_rt::test]
async fn sluice_status_fails_clearly_when_the_admin_server_cannot_be_reached() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = sluice_status(&["--admin", &url]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the admin server at {url}")),
        "{stderr}"
    );
}
