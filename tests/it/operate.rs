//! The operating surface: health endpoints, and the watcher's choice among waiting files.

use crate::app::{eclrs_row, spawn_app, write_eclrs, Options};
use sluice::admin::{AdminServer, AdminState, Health};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The HTTP status of a GET (the admin server answering is part of the assertion).
pub async fn status(url: &str) -> u16 {
    sluice::tls::install_crypto_provider();
    reqwest::get(url)
        .await
        .expect("admin answers")
        .status()
        .as_u16()
}

#[actix_rt::test]
async fn readyz_is_503_until_ready_and_while_draining() {
    let health = Arc::new(Health::default());
    let mut admin = AdminServer::start(
        "127.0.0.1:0".parse().unwrap(),
        AdminState::new(health.clone()),
    )
    .unwrap();
    let base = format!("http://{}", admin.addr);
    assert_eq!(status(&format!("{base}/healthz")).await, 200);
    assert_eq!(status(&format!("{base}/readyz")).await, 503);
    health.ready.store(true, Ordering::Relaxed);
    assert_eq!(status(&format!("{base}/readyz")).await, 200);
    health.draining.store(true, Ordering::Relaxed);
    assert_eq!(status(&format!("{base}/readyz")).await, 503);
    admin.stop();
}

#[actix_rt::test]
async fn a_started_pipeline_is_ready() {
    let db = crate::harness::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::app::settings(&db, dir.path(), &Options::default());
    let app = sluice::app::App::start(settings, db.url.clone(), true)
        .await
        .unwrap();
    let addr = app.admin.as_ref().unwrap().addr;
    assert_eq!(status(&format!("http://{addr}/readyz")).await, 200);
    app.stop().await;
}

#[actix_rt::test]
async fn with_pending_latest_only_the_newest_waiting_snapshot_is_processed() {
    let t = spawn_app(Options {
        pending: "latest",
        settle: "1s",
        ..Options::default()
    })
    .await;
    std::fs::create_dir_all(&t.inbox).unwrap();
    // Three complete files appear together (written in place, so they become complete after `settle` together).
    for (i, name) in [
        "L_20260101_0000.TXT",
        "L_20260101_0100.TXT",
        "L_20260101_0030.TXT",
    ]
    .iter()
    .enumerate()
    {
        write_eclrs(
            &t.inbox.join(name),
            &[eclrs_row(&format!("1000000000000{i}"), "A", "Detected")],
        );
    }
    let newest = t.wait_file("L_20260101_0100.TXT").await;
    assert_eq!((newest.status.as_str(), newest.new), ("done", 1));
    for old in ["L_20260101_0000.TXT", "L_20260101_0030.TXT"] {
        let f = t.wait_file(old).await;
        assert_eq!(f.status, "superseded", "{old}");
        assert!(t.archive.join(old).exists());
    }
    assert_eq!(t.count("SELECT count(*) FROM events").await, 1);
}

/// SPEC §10: several instances may share a database; each source is ingested by one of them at a time, and the
/// lock passes on when its holder stops.
#[actix_rt::test]
async fn one_instance_ingests_a_source_at_a_time_and_another_takes_over() {
    let mut t = spawn_app(Options::default()).await;
    let second = sluice::app::App::start(
        crate::app::settings(&t.db, t.dir.path(), &t.options),
        t.db.url.clone(),
        false,
    )
    .await
    .unwrap();
    let (s0, truth0) = t.generate(crate::app::gen_args(&t.path("s0.TXT"), 3_000, 81, None));
    let (s1, truth1) = t.generate(crate::app::gen_args(
        &t.path("s1.TXT"),
        3_000,
        82,
        Some(&s0),
    ));
    let f0 = t.ingest(&s0, "M_0000.TXT").await;
    crate::app::assert_ledger(&f0, &truth0);
    // Stop whichever instance took the first file; the other takes the lock and goes on from the committed state.
    t.stop().await;
    let f1 = t.ingest(&s1, "M_0030.TXT").await;
    crate::app::assert_ledger(&f1, &truth1);
    assert_eq!(
        t.count("SELECT count(*) FROM files").await,
        2,
        "each file was taken once"
    );
    assert_eq!(
        t.events_of(f1.id).await,
        crate::app::expected_events(&truth1)
    );
    second.stop().await;
}
