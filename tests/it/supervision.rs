//! Supervision under injected faults: a panic in any actor kind costs nothing, a stuck message is restarted, an
//! actor that always fails makes the process exit non-zero, and SIGTERM drains and exits 0.

use crate::app::{assert_ledger, expected_events, gen_args, spawn_app, Options, TestApp};
use crate::faults::webhook_sink;
use crate::service::{for_child, tail, Sluice};
use sluice::fake_api::{FakeApi, FakeApiArgs};
use sluice::faults::Faults;
use sluice::supervisor::{DumpTree, TreeNode};
use std::time::{Duration, Instant};

/// Every actor (leaf) of the tree, depth first.
fn actors(node: &TreeNode) -> Vec<&TreeNode> {
    if node.children.is_empty() && node.kind != "supervisor" {
        return vec![node];
    }
    node.children.iter().flat_map(actors).collect()
}

fn group<'a>(node: &'a TreeNode, name: &str) -> &'a TreeNode {
    node.children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in the tree"))
}

async fn tree(t: &TestApp) -> TreeNode {
    t.app
        .as_ref()
        .expect("running")
        .supervisor
        .send(DumpTree)
        .await
        .expect("supervisor answers")
}

/// Ingests a 50k-row snapshot and its successor with a panic injected once into `point` at its `at`-th batch;
/// asserts the events, the ledger and the deliveries equal the ground truth, and the restart shows in the tree.
async fn one_panic(point: &'static str, at: u64) {
    let api = FakeApi::start(FakeApiArgs::default()).expect("fake API");
    let t = spawn_app(Options {
        sinks: Some(webhook_sink(&api, 8)),
        faults: Faults::default().panic_at(point, at),
        ..Options::default()
    })
    .await;
    let (s0, truth0) = t.generate(gen_args(&t.path("g0"), 50_000, 41, None));
    let row0 = t.ingest(&s0, "S0.TXT").await;
    assert_eq!(row0.status, "done", "{row0:?}");
    assert_ledger(&row0, &truth0);
    assert_eq!(t.events_of(row0.id).await, expected_events(&truth0));
    let (s1, truth1) = t.generate(gen_args(&t.path("g1"), 50_000, 42, Some(&s0)));
    let row1 = t.ingest(&s1, "S1.TXT").await;
    assert_eq!(row1.status, "done", "{row1:?}");
    assert_ledger(&row1, &truth1);
    assert_eq!(t.events_of(row1.id).await, expected_events(&truth1));

    let events = t.count("SELECT count(*) FROM events").await;
    let completed = t.wait_delivered().await;
    // A change of S1 supersedes its key's S0 delivery when that one has not gone out yet.
    let superseded = t
        .count("SELECT count(*) FROM deliveries WHERE state = 'superseded'")
        .await;
    assert_eq!(
        completed + superseded,
        events,
        "every event's delivery closed"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state NOT IN ('completed', 'superseded')")
            .await,
        0
    );
    let received = api.received();
    assert_eq!(
        received.changes.len() as i64,
        completed,
        "the API applied every delivered change"
    );
    assert_eq!(received.changes_applied_twice(), 0);

    let tree = tree(&t).await;
    let failed: Vec<_> = actors(&tree)
        .into_iter()
        .filter(|a| a.kind == point)
        .filter(|a| {
            a.last_exit
                .as_deref()
                .is_some_and(|e| e.contains("injected fault"))
        })
        .collect();
    assert_eq!(failed.len(), 1, "one {point} failed: {tree:#?}");
    assert!(failed[0].restarts >= 1, "{tree:#?}");
    if point == "delivery" {
        // One for one: ingest did not restart.
        assert!(
            actors(group(&tree, "ingest"))
                .iter()
                .all(|a| a.restarts == 0),
            "{tree:#?}"
        );
    } else {
        // One for all: every ingest actor restarted with it; delivery did not.
        assert!(
            actors(group(&tree, "ingest"))
                .iter()
                .all(|a| a.restarts >= 1),
            "{tree:#?}"
        );
        assert!(
            actors(group(&tree, "delivery"))
                .iter()
                .all(|a| a.restarts == 0),
            "{tree:#?}"
        );
    }
}

#[actix_rt::test]
async fn a_panic_in_the_watcher_loses_nothing() {
    one_panic("watcher", 1).await;
}

#[actix_rt::test]
async fn a_panic_in_the_parser_loses_nothing() {
    one_panic("parser", 20).await;
}

#[actix_rt::test]
async fn a_panic_in_a_dedupe_shard_loses_nothing() {
    one_panic("dedupe", 40).await;
}

#[actix_rt::test]
async fn a_panic_in_the_writer_loses_nothing() {
    one_panic("writer", 12).await;
}

#[actix_rt::test]
async fn a_panic_in_delivery_loses_nothing() {
    one_panic("delivery", 3).await;
}

#[actix_rt::test]
async fn a_message_stuck_past_its_deadline_is_restarted() {
    let t = spawn_app(Options {
        faults: Faults::default().hang_at("writer", 3),
        extra:
            "[supervision]\nmax_restarts = 5\nrestart_period = \"60s\"\nshutdown_timeout = \"5s\"\n\
                stuck_after = \"2s\"\n"
                .into(),
        ..Options::default()
    })
    .await;
    let (s0, truth) = t.generate(gen_args(&t.path("g0"), 20_000, 43, None));
    let row = t.ingest(&s0, "S0.TXT").await;
    assert_eq!(row.status, "done", "{row:?}");
    assert_ledger(&row, &truth);
    assert_eq!(t.events_of(row.id).await, expected_events(&truth));
    let tree = tree(&t).await;
    // The writer that took the third batch (either of the two) was found stuck and restarted.
    let writer = actors(&tree)
        .into_iter()
        .filter(|a| a.kind == "writer")
        .find(|a| {
            a.last_exit
                .as_deref()
                .is_some_and(|e| e.starts_with("stuck"))
        });
    assert!(
        writer.is_some_and(|w| w.restarts >= 1),
        "no writer restarted as stuck: {tree:#?}"
    );
}

#[actix_rt::test]
async fn a_file_that_crashes_ingest_every_time_is_failed_and_the_service_stays_up() {
    let t = spawn_app(Options {
        faults: Faults::default().panic_always("writer"),
        ..Options::default()
    })
    .await;
    let (s0, _) = t.generate(gen_args(&t.path("g0"), 2_000, 46, None));
    let row = t.ingest(&s0, "S0.TXT").await;
    assert_eq!(row.status, "failed", "{row:?}");
    assert_eq!(row.reason.as_deref(), Some("crashed_ingest"));
    assert!(t.inbox.join("failed/S0.TXT").exists());
    let tree = tree(&t).await;
    let writer = actors(&tree)
        .into_iter()
        .find(|a| a.kind == "writer")
        .unwrap();
    // Batches the file had queued for the writer may crash it again after the restarts that failed the file.
    assert!(
        writer.restarts >= u64::from(sluice::watcher::MAX_CRASHES_PER_FILE),
        "{tree:#?}"
    );
    // Never escalated: the ingest group did not give up, the root restarted nothing.
    assert_eq!(group(&tree, "ingest").restarts, 0, "{tree:#?}");
    assert!(group(&tree, "ingest").last_exit.is_none(), "{tree:#?}");
}

#[actix_rt::test]
async fn an_actor_that_always_fails_makes_the_process_exit_non_zero() {
    let (t, config, log) = for_child(Options {
        extra:
            "[supervision]\nmax_restarts = 2\nrestart_period = \"60s\"\nshutdown_timeout = \"5s\"\n\
                stuck_after = \"10m\"\n"
                .into(),
        ..Options::default()
    })
    .await;
    let (s0, _) = t.generate(gen_args(&t.path("g0"), 2_000, 44, None));
    t.drop_file(&s0, "S0.TXT");

    // Delivery fails on every round with work: its restarts exhaust the delivery group's intensity, then the root's.
    let mut service = Sluice::spawn(&config, &log, &[("SLUICE_FAULTS", "delivery:panic:every")]);
    let status = service.wait(Duration::from_secs(120)).await;
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        status.code(),
        Some(sluice::supervisor::GAVE_UP_EXIT_CODE),
        "{out}"
    );
    assert!(out.contains("supervision gave up"), "{out}");
    assert!(out.contains("delivery gave up"), "{out}");
}

#[actix_rt::test]
async fn sigterm_during_a_snapshot_exits_zero_and_a_restart_completes_the_work() {
    let api = FakeApi::start(FakeApiArgs::default()).expect("fake API");
    let (t, config, log) = for_child(Options {
        sinks: Some(webhook_sink(&api, 8)),
        writer_batch: 500,
        extra:
            "[supervision]\nmax_restarts = 5\nrestart_period = \"60s\"\nshutdown_timeout = \"5s\"\n\
                stuck_after = \"10m\"\n"
                .into(),
        ..Options::default()
    })
    .await;
    let (s0, truth) = t.generate(gen_args(&t.path("g0"), 100_000, 45, None));
    t.drop_file(&s0, "S0.TXT");

    let mut service = Sluice::spawn(&config, &log, &[]);
    // Wait until the snapshot is under way: some of its events committed, not all.
    t.wait_at_least("SELECT count(*) FROM events", 1).await;
    let signalled = Instant::now();
    service.signal(libc::SIGTERM);
    let status = service.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "exit {status:?}: {}", tail(&log));
    // Every child gets 5 s at most; in practice the drain takes well under that.
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "took {:?}",
        signalled.elapsed()
    );
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state = 'executing'")
            .await,
        0,
        "nothing left leased after a drain"
    );

    let service = Sluice::spawn(&config, &log, &[]);
    let row = t.wait_file("S0.TXT").await;
    assert_eq!(row.status, "done", "{row:?}");
    assert_ledger(&row, &truth);
    let events = t.count("SELECT count(*) FROM events").await;
    assert_eq!(events as usize, expected_events(&truth).len());
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state <> 'completed'",
        0,
    )
    .await;
    let received = api.received();
    assert_eq!(received.changes.len() as i64, events);
    assert_eq!(received.changes_applied_twice(), 0);
    drop(service);
}
