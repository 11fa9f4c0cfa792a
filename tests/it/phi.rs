//! SPEC §7.3: PHI never reaches logs, metric labels or the state dump. The real binary ingests and delivers two
//! generated snapshots with debug logging on; then its whole log, `/metrics`, `/admin/actors`,
//! `/admin/deliveries` and `/admin/files` are searched for the snapshots' values.

use crate::app::{gen_args, phi_values, Options};
use crate::faults::webhook_sink;
use crate::service::{for_child, free_port, tail, Sluice};
use sluice::fake_api::{FakeApi, FakeApiArgs};
use std::time::{Duration, Instant};

#[actix_rt::test]
async fn no_record_value_reaches_the_logs_metrics_or_admin_api() {
    let api = FakeApi::start(FakeApiArgs::default()).expect("fake API");
    let (t, config, log) = for_child(Options {
        sinks: Some(webhook_sink(&api, 16)),
        ..Options::default()
    })
    .await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut service = Sluice::spawn(
        &config,
        &log,
        &[("SLUICE_ADMIN__LISTEN", &listen), ("SLUICE_LOG", "debug")],
    );

    // S0, then S1 with changed, new, duplicate, conflicting and malformed rows.
    let (s0, _) = t.generate(gen_args(&t.path("g0"), 3_000, 61, None));
    let (s1, _) = t.generate(gen_args(&t.path("g1"), 3_000, 62, Some(&s0)));
    for (i, s) in [&s0, &s1].into_iter().enumerate() {
        t.drop_file(s, &format!("P_000{i}.TXT"));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = service.exited() {
                panic!("sluice exited ({status}):\n{}", tail(&log));
            }
            let done = t
                .count("SELECT count(*) FROM files WHERE status = 'done'")
                .await;
            let open = t
                .count("SELECT count(*) FROM deliveries WHERE state NOT IN ('completed', 'superseded')")
                .await;
            if done == i as i64 + 1 && open == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not done in time:\n{}",
                tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        api.received().changes.len() > 3_000,
        "the changes were delivered"
    );

    sluice::tls::install_crypto_provider();
    let base = format!("http://{listen}");
    let mut served = String::new();
    for path in [
        "/metrics",
        "/admin/actors",
        "/admin/deliveries?limit=1000",
        "/admin/deliveries?state=completed&limit=1000",
        "/admin/files",
    ] {
        let answer = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        served.push_str(&answer.text().await.unwrap());
    }
    service.signal(libc::SIGTERM);
    assert!(service.wait(Duration::from_secs(60)).await.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("snapshot"),
        "the log is not empty:\n{}",
        tail(&log)
    );

    let mut values = phi_values(&s0, 200);
    values.extend(phi_values(&s1, 200));
    assert!(values.len() > 1_000, "{} values to look for", values.len());
    for value in &values {
        assert!(
            !logged.contains(value.as_str()),
            "the log holds a record value"
        );
        assert!(
            !served.contains(value.as_str()),
            "the admin server served a record value"
        );
    }
}
