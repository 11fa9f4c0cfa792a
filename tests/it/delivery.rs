//! Delivery that never loses or doubles a result (SPEC §5, §7): retries, leases, supersession, pauses.

use crate::app::{spawn_app, Options, TestApp};
use sluice::clock::ManualClock;
use std::collections::BTreeSet;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A webhook sink pointed at `url`, with quick backoff unless the test sets its own.
fn webhook(url: &str, extra: &str) -> String {
    let mut toml = format!(
        "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}/records\"\n{extra}\n"
    );
    for (key, value) in [
        ("concurrency", "4"),
        ("timeout", "\"2s\""),
        ("backoff_base", "\"20ms\""),
        ("backoff_cap", "\"100ms\""),
    ] {
        if !extra.contains(&format!("{key} =")) {
            toml.push_str(&format!("{key} = {value}\n"));
        }
    }
    toml
}

async fn app_with(server: &MockServer, extra: &str) -> TestApp {
    spawn_app(Options {
        sinks: Some(webhook(&server.uri(), extra)),
        ..Options::default()
    })
    .await
}

/// The first `times` requests get `first`; every later one a 200.
pub async fn answer_first(server: &MockServer, first: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(server)
        .await;
}

fn idempotency_keys(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[actix_rt::test]
async fn a_failing_then_recovering_api_completes_on_the_third_attempt_with_one_key() {
    let server = MockServer::start().await;
    answer_first(&server, ResponseTemplate::new(503), 2).await;
    let t = app_with(&server, "").await;
    t.ingest_rows("R_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed' AND attempts = 3",
        1,
    )
    .await;
    let keys = idempotency_keys(&server.received_requests().await.unwrap());
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    let event_id: uuid::Uuid =
        t.db.client()
            .await
            .query_one("SELECT id FROM events", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(keys[0], event_id.to_string());
    assert_eq!(t.count("SELECT count(*) FROM delivery_attempts").await, 3);
    let statuses: Vec<Option<i32>> =
        t.db.client()
            .await
            .query(
                "SELECT status_code FROM delivery_attempts ORDER BY attempt",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(statuses, vec![Some(503), Some(503), Some(200)]);
}

#[actix_rt::test]
async fn retry_after_is_honoured_on_the_injected_clock() {
    let server = MockServer::start().await;
    answer_first(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "2"),
        1,
    )
    .await;
    let clock = ManualClock::new();
    let t = spawn_app(Options {
        sinks: Some(webhook(&server.uri(), "")),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    t.ingest_rows("R_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'retryable'",
        1,
    )
    .await;
    let gap: f64 =
        t.db.client()
            .await
            .query_one(
                "SELECT extract(epoch FROM d.next_attempt_at - a.started_at)::float8
               FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert!(gap >= 2.0, "next attempt only {gap}s after the 429");
    // One second on: still waiting.
    clock.advance(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // Past the two seconds: delivered.
    clock.advance(Duration::from_millis(1500));
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        1,
    )
    .await;
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[actix_rt::test]
async fn a_400_is_dead_at_once_and_can_be_redriven() {
    let server = MockServer::start().await;
    answer_first(&server, ResponseTemplate::new(400), 1).await;
    let t = app_with(&server, "").await;
    t.ingest_rows("R_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'dead' AND attempts = 1",
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "dead rows are not retried"
    );
    let id: i64 =
        t.db.client()
            .await
            .query_one("SELECT id FROM deliveries", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        sluice::delivery::outbox::redrive(&t.db.client().await, id)
            .await
            .unwrap()
            .available,
        1
    );
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        1,
    )
    .await;
}

#[actix_rt::test]
async fn twenty_failures_in_a_row_make_a_delivery_dead() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let t = app_with(
        &server,
        "backoff_base = \"1ms\"\nbackoff_cap = \"5ms\"\ncircuit_threshold = 1000",
    )
    .await;
    t.ingest_rows("R_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'dead' AND attempts = 20",
        1,
    )
    .await;
    assert_eq!(server.received_requests().await.unwrap().len(), 20);
    assert_eq!(t.count("SELECT count(*) FROM delivery_attempts").await, 20);
}

#[actix_rt::test]
async fn a_hanging_api_times_out_and_is_retried() {
    let server = MockServer::start().await;
    answer_first(
        &server,
        ResponseTemplate::new(200).set_delay(Duration::from_secs(10)),
        1,
    )
    .await;
    let t = app_with(&server, "timeout = \"500ms\"").await;
    t.ingest_rows("R_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed' AND attempts = 2",
        1,
    )
    .await;
    let first: Option<String> =
        t.db.client()
            .await
            .query_one("SELECT error FROM delivery_attempts WHERE attempt = 1", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(first.as_deref(), Some("timeout"));
}

#[actix_rt::test]
async fn a_dead_owners_lease_expires_and_the_row_is_delivered_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let t = app_with(&server, "").await;
    let c = t.db.client().await;
    // Pause delivery, ingest, and let a "dead" owner claim the row with a 1 s lease it never renews.
    t.delivery("hook")
        .send(sluice::delivery::Pause)
        .await
        .unwrap();
    t.ingest_rows("R_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    let claimed = sluice::delivery::outbox::claim(
        &c,
        "hook",
        "dead-owner",
        Duration::from_secs(1),
        10,
        std::time::SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 1);
    t.delivery("hook")
        .send(sluice::delivery::Resume)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        0,
        "the lease still holds"
    );
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        1,
    )
    .await;
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let owner: String = c
        .query_one("SELECT lease_owner FROM delivery_attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(owner, "dead-owner");
}

#[actix_rt::test]
async fn a_late_finisher_with_an_old_attempt_number_changes_nothing() {
    let db = crate::harness::test_db().await;
    let mut c = db.client().await;
    c.batch_execute(
        "INSERT INTO files (id, source, name, sha256, size, status) VALUES (1, 'eclrs', 'f', '', 0, 'done');
         INSERT INTO events (seq, id, source, key_hash, key, version, kind, row_hash, file_id)
              OVERRIDING SYSTEM VALUE
              VALUES (1, '00000000-0000-0000-0000-000000000001', 'eclrs', 1, '{a,b}', 1, 'new', '\\x00', 1);
         INSERT INTO deliveries (event_id, event_seq, sink, source, key_hash, version, idempotency_key)
              VALUES ('00000000-0000-0000-0000-000000000001', 1, 'hook', 'eclrs', 1, 1,
                      '00000000-0000-0000-0000-000000000001');",
    )
    .await
    .unwrap();
    use sluice::delivery::outbox::{claim, finish, reap_expired, Finished};
    let now = std::time::SystemTime::now();
    let a = claim(&c, "hook", "owner-a", Duration::from_secs(60), 1, now)
        .await
        .unwrap();
    assert_eq!(a[0].attempt, 1);
    c.execute(
        "UPDATE deliveries SET lease_expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(reap_expired(&c).await.unwrap(), 1);
    let b = claim(&c, "hook", "owner-b", Duration::from_secs(60), 1, now)
        .await
        .unwrap();
    assert_eq!(b[0].attempt, 2);
    let done = |claim: &sluice::delivery::outbox::Claimed, state| Finished {
        claim: claim.clone(),
        state,
        status: Some(200),
        error: None,
        next_attempt_at: now,
        counted: true,
        attempted: true,
        outcome: state,
        started: now,
        duration: Duration::from_millis(1),
        excerpt: None,
    };
    assert_eq!(
        finish(&mut c, "owner-a", &[done(&a[0], "completed")])
            .await
            .unwrap(),
        0
    );
    let state: String = c
        .query_one("SELECT state FROM deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "executing", "the late finisher changed nothing");
    assert_eq!(
        finish(&mut c, "owner-b", &[done(&b[0], "retryable")])
            .await
            .unwrap(),
        1
    );
    let state: String = c
        .query_one("SELECT state FROM deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "retryable");
}

fn versions_sent(requests: &[Request]) -> Vec<i64> {
    requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["version"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

#[actix_rt::test]
async fn a_pending_older_version_is_superseded_by_a_newer_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let t = app_with(&server, "").await;
    t.delivery("hook")
        .send(sluice::delivery::Pause)
        .await
        .unwrap();
    t.ingest_rows("V_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    t.ingest_rows("V_0030.TXT", 10_000_000_000_000, 1, "Not detected")
        .await;
    t.delivery("hook")
        .send(sluice::delivery::Resume)
        .await
        .unwrap();
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        versions_sent(&server.received_requests().await.unwrap()),
        vec![2]
    );
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state = 'superseded' AND version = 1")
            .await,
        1
    );
}

#[actix_rt::test]
async fn an_older_version_in_flight_finishes_before_the_newer_one_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let t = app_with(&server, "timeout = \"5s\"").await;
    t.ingest_rows("V_0000.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'executing'",
        1,
    )
    .await;
    t.ingest_rows("V_0030.TXT", 10_000_000_000_000, 1, "Not detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        2,
    )
    .await;
    assert_eq!(
        versions_sent(&server.received_requests().await.unwrap()),
        vec![1, 2]
    );
}

#[actix_rt::test]
async fn a_burst_of_401s_pauses_the_sink_and_nothing_goes_dead() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/records"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let t = app_with(&server, "pause_threshold = 3").await;
    t.ingest_rows("P_0000.TXT", 10_000_000_000_000, 30, "Detected")
        .await;
    let hook = t.delivery("hook");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !hook
        .send(sluice::delivery::DumpDelivery)
        .await
        .unwrap()
        .paused
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sink never paused"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
            .await,
        0
    );
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state = 'available'")
            .await,
        30
    );
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    hook.send(sluice::delivery::Resume).await.unwrap();
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        30,
    )
    .await;
    let keys: BTreeSet<String> = idempotency_keys(&server.received_requests().await.unwrap())
        .into_iter()
        .collect();
    assert_eq!(keys.len(), 30);
}

/// Ingest first (docs/ARCHITECTURE.md): while a snapshot is written in many transactions, delivery claims nothing;
/// the end of the snapshot wakes it, and every change is delivered.
#[actix_rt::test]
async fn delivery_waits_for_the_snapshot_being_written_then_delivers_all_of_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let t = spawn_app(Options {
        // Twenty transactions: the first commits well before the file is done.
        writer_batch: 1_000,
        sinks: Some(webhook(&server.uri(), "concurrency = 16")),
        ..Options::default()
    })
    .await;
    let (s0, _) = t.generate(crate::app::gen_args(&t.path("g0"), 20_000, 17, None));
    let row = t.ingest(&s0, "S0.TXT").await;
    assert_eq!(row.status, "done", "{row:?}");
    let events = t.count("SELECT count(*) FROM events").await;
    assert!(events > 19_000, "{events} events");
    assert_eq!(t.wait_delivered().await, events);
    let early = t
        .count(&format!(
            "SELECT count(*) FROM delivery_attempts a, files f
              WHERE f.id = {} AND a.started_at < f.finished_at",
            row.id
        ))
        .await;
    assert_eq!(
        early, 0,
        "attempts started while the snapshot was being written"
    );
}
