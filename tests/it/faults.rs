//! SPEC §7 under process-level faults: the process killed with SIGKILL at random moments, PostgreSQL going away
//! mid-snapshot, the downstream API refusing connections. Each test checks what an operator would: every committed
//! change delivered, none applied twice downstream, every ledger balanced, nothing dead.

use crate::app::{
    assert_ledger, expected_events, gen_args, spawn_app, spawn_app_on, Options, TestApp,
};
use crate::harness::{PrivateCluster, TestDb};
use crate::operate::status;
use crate::service::{for_child, tail, Sluice};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::fake_api::{FakeApi, FakeApiArgs};
use sluice::gen::GroundTruth;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PROCESSING: &str = "SELECT count(*) FROM files WHERE status = 'processing'";
const EVENTS: &str = "SELECT count(*) FROM events";
const COMPLETED: &str = "SELECT count(*) FROM deliveries WHERE state = 'completed'";
const OPEN: &str =
    "SELECT count(*) FROM deliveries WHERE state IN ('available', 'retryable', 'executing')";

/// A webhook sink to the fake API, quick to retry.
pub fn webhook_sink(api: &FakeApi, concurrency: usize) -> String {
    format!(
        "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nconcurrency = {concurrency}\n\
         timeout = \"5s\"\nbackoff_base = \"100ms\"\nbackoff_cap = \"1s\"\n",
        api.webhook_url()
    )
}

/// The (text, bigint) rows of `sql`, by their text.
async fn named_counts(c: &tokio_postgres::Client, sql: &str) -> BTreeMap<String, i64> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Asserts what downstream saw against the event log: every event whose delivery completed was accepted under
/// its own id as idempotency key, nothing else was accepted, and no change (key, version) was applied under two
/// keys. Every delivery is closed: completed, or superseded by a newer version of its key that completed.
async fn assert_delivered_once(db: &TestDb, api: &FakeApi) {
    let c = db.client().await;
    let states = named_counts(&c, "SELECT state, count(*) FROM deliveries GROUP BY state").await;
    assert!(
        states.keys().all(|s| s == "completed" || s == "superseded"),
        "deliveries by state: {states:?}"
    );
    let unsent_without_successor = c
        .query_one(
            "SELECT count(*) FROM deliveries d WHERE d.state = 'superseded' AND NOT EXISTS (
                 SELECT 1 FROM deliveries n WHERE n.sink = d.sink AND n.source = d.source
                    AND n.key_hash = d.key_hash AND n.version > d.version AND n.state = 'completed')",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        unsent_without_successor, 0,
        "a superseded change whose newer version was not sent"
    );
    assert_eq!(
        c.query_one(
            "SELECT count(*) FROM events e
               FULL JOIN (SELECT event_id, count(*) AS n FROM deliveries GROUP BY event_id) d ON d.event_id = e.id
              WHERE e.id IS NULL OR d.n IS DISTINCT FROM 1",
            &[]
        )
        .await
        .unwrap()
        .get::<_, i64>(0),
        0,
        "every event has exactly one delivery to the one sink, and every delivery an event"
    );

    // Event id → (key, version) of every change whose delivery completed.
    let completed: BTreeMap<String, (Vec<String>, i64)> = c
        .query(
            "SELECT e.id, e.key, e.version, d.idempotency_key FROM events e
               JOIN deliveries d ON d.event_id = e.id WHERE d.state = 'completed'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let id: uuid::Uuid = r.get(0);
            let key: uuid::Uuid = r.get(3);
            assert_eq!(id, key, "the idempotency key is the event id");
            let version: i32 = r.get(2);
            (id.to_string(), (r.get(1), i64::from(version)))
        })
        .collect();
    let received = api.received();
    assert_eq!(received.changes_not_kept, 0);
    let accepted: BTreeMap<String, (Vec<String>, i64)> = received
        .changes
        .iter()
        .map(|ch| (ch.idempotency_key.clone(), (ch.key.clone(), ch.version)))
        .collect();
    assert_eq!(
        accepted.len(),
        received.changes.len(),
        "the fake keeps one change per key"
    );
    let missing = completed
        .keys()
        .filter(|k| !accepted.contains_key(*k))
        .count();
    let unknown = accepted
        .keys()
        .filter(|k| !completed.contains_key(*k))
        .count();
    assert_eq!(
        (missing, unknown),
        (0, 0),
        "completed deliveries never accepted downstream / accepted changes not recorded completed"
    );
    for (id, change) in &accepted {
        assert_eq!(
            &completed[id], change,
            "the change sent under {id} is its event's"
        );
    }
    assert_eq!(
        received.changes_applied_twice(),
        0,
        "a change applied under two idempotency keys"
    );
}

/// Asserts that the ledger row of `file_id` matches the ground truth and that its rejects and conflicts are stored
/// once each, then that its events are exactly the truth's changes.
async fn assert_file(t: &TestApp, file_id: i64, truth: &GroundTruth) {
    let pool = sluice::db::pool(&t.db.url, 1).unwrap();
    let row = sluice::ledger::get(&pool, file_id).await.unwrap().unwrap();
    assert_ledger(&row, truth);
    let stored = |table: &str| format!("SELECT count(*) FROM {table} WHERE file_id = {file_id}");
    assert_eq!(
        t.count(&stored("rejects")).await,
        row.rejected,
        "rejects stored once"
    );
    assert_eq!(
        t.count(&stored("conflicts")).await,
        row.conflict,
        "conflicts stored once"
    );
    assert_eq!(t.events_of(file_id).await, expected_events(truth));
    assert_eq!(
        t.count(&stored("events")).await,
        (truth.counts.new + truth.counts.changed) as i64,
        "one event per change"
    );
}

/// The seed of a randomised test: `SLUICE_FAULT_SEED` to replay one, else a fresh one. Printed either way.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("SLUICE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (replay with SLUICE_FAULT_SEED={seed})");
    seed
}

/// SPEC §7.1: "A `kill -9` at any instant loses nothing and double-applies nothing." The real binary is killed
/// at random moments while it ingests two snapshots and delivers their changes, and started again each time.
#[actix_rt::test]
async fn kill_9_at_random_moments_loses_nothing_and_applies_nothing_twice() {
    const MIN_KILLS: usize = 10;
    const MAX_KILLS: usize = 20;
    let seed = seed("kill -9");
    let mut rng = StdRng::seed_from_u64(seed);
    let api = FakeApi::start(FakeApiArgs::default()).expect("fake API starts");
    let options = Options {
        shards: 2,
        writer_batch: 2_000,
        settle: "200ms",
        sinks: Some(webhook_sink(&api, 8)),
        ..Options::default()
    };
    let (t, config, log) = for_child(options).await;
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 20_000, rng.random(), None));
    let (s1, truth1) = t.generate(gen_args(&t.path("s1.TXT"), 20_000, rng.random(), Some(&s0)));
    let (name0, name1) = ("ECLRS_20260101_0000.TXT", "ECLRS_20260101_0030.TXT");
    t.drop_file(&s0, name0);

    // Kill at random moments, at least a few times while a snapshot is in flight and while deliveries wait; the
    // second snapshot arrives midway.
    let (mut kills, mut in_ingest, mut in_delivery) = (0, 0, 0);
    while kills < MIN_KILLS || (kills < MAX_KILLS && (in_ingest < 3 || in_delivery < 3)) {
        let mut sluice = Sluice::spawn(&config, &log, &[("SLUICE_DELIVERY__LEASE", "2s")]);
        let delay = rng.random_range(50..=1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if let Some(status) = sluice.exited() {
            panic!("sluice exited by itself ({status}):\n{}", tail(&log));
        }
        let ingesting = t.count(PROCESSING).await > 0;
        let (events, completed) = (t.count(EVENTS).await, t.count(COMPLETED).await);
        let waiting = t.count(OPEN).await;
        sluice.kill();
        kills += 1;
        in_ingest += usize::from(ingesting);
        in_delivery += usize::from(waiting > 0);
        eprintln!(
            "kill -9 #{kills} after {delay} ms: snapshot in flight: {ingesting}, {events} events, \
             {completed} delivered, {waiting} waiting"
        );
        if kills == 3 {
            t.drop_file(&s1, name1);
        }
    }

    // Then let it finish.
    let mut sluice = Sluice::spawn(&config, &log, &[("SLUICE_DELIVERY__LEASE", "2s")]);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = sluice.exited() {
            panic!("sluice exited by itself ({status}):\n{}", tail(&log));
        }
        let closed = t
            .count(&format!(
                "SELECT count(*) FROM files WHERE name IN ('{name0}', '{name1}') AND status = 'done'"
            ))
            .await;
        if closed == 2 && t.count(OPEN).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not finished in time:\n{}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sluice.kill();

    // A kill between closing a file and archiving it makes a second ledger row for the file: a duplicate of the
    // last ingested content, which emits nothing. Anything else is a second ingestion.
    let c = t.db.client().await;
    let ledger: Vec<(String, String)> = c
        .query("SELECT name, status FROM files ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for name in [name0, name1] {
        let statuses: Vec<&str> = ledger
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(statuses[0], "done", "{name}: {statuses:?}");
        assert!(
            statuses[1..].iter().all(|s| *s == "duplicate_file"),
            "{name}: {statuses:?}"
        );
    }
    let done = named_counts(&c, "SELECT name, id FROM files WHERE status = 'done'").await;
    assert_file(&t, done[name0], &truth0).await;
    assert_file(&t, done[name1], &truth1).await;
    assert_eq!(
        t.count("SELECT count(*) FROM events").await,
        (truth0.counts.new + truth1.counts.new + truth1.counts.changed) as i64
    );
    assert_delivered_once(&t.db, &api).await;
    assert!(t.archive.join(name0).exists() && t.archive.join(name1).exists());
}

/// PostgreSQL stops for ten seconds while a snapshot is being written: `/readyz` says so, the snapshot is retried
/// (with bounded backoff, not in a loop) and ends exactly as it would have, and readiness returns.
#[actix_rt::test]
async fn postgres_away_for_ten_seconds_mid_snapshot_delays_it_and_loses_nothing() {
    let _faults = crate::app::FAULTS.lock().await;
    let cluster = PrivateCluster::start().await;
    let db = TestDb {
        url: cluster.migrated_db("sluice").await,
        name: "sluice".into(),
    };
    let mut t = spawn_app_on(
        db,
        Options {
            writer_batch: 1_000,
            ..Options::default()
        },
        true,
    )
    .await;
    let admin = format!(
        "http://{}",
        t.app.as_ref().unwrap().admin.as_ref().unwrap().addr
    );
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 50_000, 61, None));
    assert_eq!(status(&format!("{admin}/readyz")).await, 200);

    // Slow batches, so that the outage falls among them.
    sluice::faults::set_writer_delay(Duration::from_millis(100));
    t.drop_file(&s0, "P_0000.TXT");
    t.wait_at_least(
        "SELECT coalesce(max(events_written), 0) FROM files WHERE status = 'processing'",
        5_000,
    )
    .await;
    cluster.stop().await;
    let down = Instant::now();
    sluice::faults::set_writer_delay(Duration::ZERO);

    let mut saw_unready = false;
    while down.elapsed() < Duration::from_secs(10) {
        saw_unready |= status(&format!("{admin}/readyz")).await == 503;
        assert_eq!(
            status(&format!("{admin}/healthz")).await,
            200,
            "alive throughout"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        saw_unready,
        "/readyz never answered 503 while PostgreSQL was away"
    );
    assert_eq!(status(&format!("{admin}/readyz")).await, 503);
    cluster.start_again().await;

    let f = t.wait_file("P_0000.TXT").await;
    assert_file(&t, f.id, &truth0).await;
    assert_eq!(
        t.count("SELECT count(*) FROM events").await,
        truth0.counts.new as i64
    );
    assert_eq!(
        t.count("SELECT count(*) FROM files").await,
        1,
        "one ledger row"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&format!("{admin}/readyz")).await != 200 {
        assert!(Instant::now() < deadline, "/readyz did not return to 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let watcher = t.app.as_ref().unwrap().watchers[0].clone();
    let dump = watcher.send(sluice::watcher::DumpWatcher).await.unwrap();
    assert_eq!((dump.files_done, dump.files_failed), (1, 0), "{dump:?}");
    // Backoff doubles from half a second: a ten-second outage costs a handful of attempts, not a crash loop.
    assert!(
        (1..=10).contains(&dump.retries),
        "the snapshot was retried {} times",
        dump.retries
    );
    // Delivery backs off too: its failed rounds (each a warning in the log) stay few.
    let delivery = t.delivery("file");
    let rounds = delivery.send(sluice::delivery::DumpDelivery).await.unwrap();
    assert!(
        (1..=20).contains(&rounds.errors),
        "{} delivery rounds failed",
        rounds.errors
    );
    // Delivery goes on (the other tests follow it to the end).
    t.wait_at_least(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        (rounds.completed + 1).min(truth0.counts.new) as i64,
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
            .await,
        0
    );
    t.stop().await;
}

/// The API really down — its listener closed, connections refused — for thirty seconds while changes wait, some
/// mid-delivery and some committed during the outage; then up on the same port.
#[actix_rt::test]
async fn the_api_down_for_thirty_seconds_receives_everything_once_when_it_returns() {
    let api = FakeApi::start(FakeApiArgs::default()).expect("fake API starts");
    // Slow answers, so that the outage begins mid-delivery.
    api.faults().set_latency(Duration::from_millis(20));
    let t = spawn_app(Options {
        sinks: Some(webhook_sink(&api, 8)),
        ..Options::default()
    })
    .await;
    t.ingest_rows("D_0000.TXT", 10_000_000_000_000, 3_000, "Detected")
        .await;
    t.wait_at_least(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        200,
    )
    .await;
    api.faults().set_down(true);
    let down = Instant::now();
    let port = api.addr().port();
    assert!(
        t.count(OPEN).await > 0,
        "changes were waiting when the API went down"
    );
    t.ingest_rows("D_0001.TXT", 20_000_000_000_000, 1_000, "Detected")
        .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
            .await,
        0
    );
    // Behind the open circuit rows wait without spending their attempts.
    let most = t
        .count("SELECT coalesce(max(attempts), 0)::bigint FROM deliveries")
        .await;
    assert!(most <= 3, "a row gained {most} attempts during the outage");
    assert!(t.count(OPEN).await > 0);

    api.faults().set_latency(Duration::ZERO);
    api.faults().set_down(false);
    assert_eq!(api.addr().port(), port);
    assert_eq!(t.wait_delivered().await, 4_000);
    assert_delivered_once(&t.db, &api).await;
}
